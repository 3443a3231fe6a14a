//! Ollama's wire: `POST /api/generate` (FIM with `suffix`, or `raw`) and `POST /api/chat`,
//! whole or streamed as NDJSON (one partial object a line, the last with `done: true` and the
//! eval counts); `GET /api/tags` lists the models, `GET /` says "Ollama is running".
//! It must not decide what to answer: the text, usage and faults come from `serve`.

use serde_json::{Value, json};

use super::request::{Endpoint, RecordedRequest};
use super::wire::{Finish, StreamEvents, Usage, ndjson, request_model};

/// Ollama's `created_at`: RFC 3339 in UTC. The double does not need the real date.
const CREATED_AT: &str = "2025-01-01T00:00:00.000000Z";

fn stats(usage: Usage) -> Value {
    json!({
        "total_duration": 5_000_000u64,
        "load_duration": 1_000_000u64,
        "prompt_eval_count": usage.input,
        "prompt_eval_duration": (usage.reading.as_nanos() as u64).max(1_000_000),
        "eval_count": usage.output,
        "eval_duration": 3_000_000u64
    })
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// One object of a `/api/generate` or `/api/chat` answer carrying `text`, not yet done.
fn partial(request: &RecordedRequest, text: &str) -> Value {
    let model = request_model(request);
    if request.endpoint == Endpoint::OllamaGenerate {
        json!({ "model": model, "created_at": CREATED_AT, "response": text, "done": false })
    } else {
        json!({
            "model": model,
            "created_at": CREATED_AT,
            "message": { "role": "assistant", "content": text },
            "done": false
        })
    }
}

/// The last object of an answer: `done`, the reason and the eval counts.
fn done(request: &RecordedRequest, text: &str, usage: Usage) -> Value {
    let mut last = merge(partial(request, text), stats(usage));
    last["done"] = json!(true);
    last["done_reason"] = json!(match usage.finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    });
    if request.endpoint == Endpoint::OllamaGenerate {
        last["context"] = json!([1, 2, 3]);
    }
    last
}

/// The whole answer of `/api/generate` or `/api/chat` (`"stream": false`).
pub(super) fn full_body(request: &RecordedRequest, text: &str, usage: Usage) -> Value {
    done(request, text, usage)
}

/// The NDJSON lines of a streamed `/api/generate` or `/api/chat` answer.
pub(super) fn stream_events(
    request: &RecordedRequest,
    pieces: &[String],
    usage: Usage,
) -> StreamEvents {
    StreamEvents {
        content_type: "application/x-ndjson",
        preamble: Vec::new(),
        content: pieces
            .iter()
            .map(|p| ndjson(&partial(request, p)))
            .collect(),
        epilogue: vec![ndjson(&done(request, "", usage))],
    }
}

/// `{"error": message}`.
pub(super) fn error_body(message: &str) -> Value {
    json!({ "error": message })
}

/// What Ollama sends in-band when generation fails mid-stream.
pub(super) fn stream_error_event() -> String {
    ndjson(&json!({ "error": "an error was encountered while running the model" }))
}

/// `GET /api/tags`.
pub(super) fn tags(models: &[String]) -> Value {
    json!({
        "models": models.iter().map(|name| json!({
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 986_061_892u64,
            "digest": "d0c0b3a5d5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b",
            "details": {
                "format": "gguf",
                "family": "qwen2",
                "families": ["qwen2"],
                "parameter_size": "1.5B",
                "quantization_level": "Q4_K_M"
            }
        })).collect::<Vec<_>>()
    })
}
