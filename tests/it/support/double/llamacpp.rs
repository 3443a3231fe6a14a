//! llama.cpp's `llama-server` wire: `POST /infill` (`input_prefix`, `input_suffix`,
//! `input_extra`), whole or streamed as SSE (`data: {"content":..,"stop":false}` pieces, then
//! a final object with `stop: true`, the counts and the timings); `GET /health`.
//! It must not decide what to answer: the text, usage and faults come from `serve`.

use serde_json::{Value, json};

use super::request::RecordedRequest;
use super::wire::{Finish, StreamEvents, Usage, request_model, sse_data};

/// The final object of an `/infill` answer (the whole answer when not streaming).
pub(super) fn full_body(request: &RecordedRequest, content: &str, usage: Usage) -> Value {
    json!({
        "index": 0,
        "content": content,
        "tokens": [],
        "id_slot": 0,
        "stop": true,
        "model": request_model(request),
        "tokens_predicted": usage.output,
        "tokens_evaluated": usage.input,
        "generation_settings": {
            "n_predict": request.body.get("n_predict").cloned().unwrap_or(json!(-1))
        },
        "prompt": "",
        "has_new_line": content.contains('\n'),
        "truncated": false,
        "stop_type": match usage.finish {
            Finish::Stop => "eos",
            Finish::Length => "limit",
        },
        "stopping_word": "",
        "tokens_cached": usage.input,
        "timings": {
            "prompt_n": usage.input,
            "prompt_ms": (usage.reading.as_secs_f64() * 1_000.0).max(1.0),
            "predicted_n": usage.output,
            "predicted_ms": 3.0
        }
    })
}

/// The SSE events of a streamed `/infill` answer.
pub(super) fn stream_events(
    request: &RecordedRequest,
    pieces: &[String],
    usage: Usage,
) -> StreamEvents {
    StreamEvents {
        content_type: "text/event-stream",
        preamble: Vec::new(),
        content: pieces
            .iter()
            .enumerate()
            .map(|(n, p)| {
                sse_data(&json!({
                    "index": 0,
                    "content": p,
                    "tokens": [],
                    "stop": false,
                    "id_slot": -1,
                    "tokens_predicted": n + 1,
                    "tokens_evaluated": usage.input
                }))
            })
            .collect(),
        epilogue: vec![sse_data(&full_body(request, "", usage))],
    }
}

/// `{"error":{"code","message","type"}}`.
pub(super) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 404 | 405 => "invalid_request_error",
        401 => "authentication_error",
        503 => "unavailable_error",
        _ => "server_error",
    };
    json!({ "error": { "code": status, "message": message, "type": kind } })
}

/// What llama-server sends in-band when generation fails mid-stream.
pub(super) fn stream_error_event() -> String {
    sse_data(
        &json!({ "error": { "code": 500, "message": "generation failed", "type": "server_error" } }),
    )
}

/// `GET /health` when the model is loaded.
pub(super) fn health() -> Value {
    json!({ "status": "ok" })
}
