//! The OpenAI-compatible wire: `POST /v1/completions` (FIM with `suffix`) and `POST
//! /v1/chat/completions`, whole or streamed as SSE (`data: {..}` chunks, usage when
//! `stream_options.include_usage`, then `data: [DONE]`); `GET /v1/models` lists the models.
//! It must not decide what to answer: the text, usage and faults come from `serve`.

use serde_json::{Value, json};

use super::request::{Endpoint, RecordedRequest};
use super::wire::{Finish, StreamEvents, Usage, request_model, sse_data, unix_now};

/// What OpenAI answers (400) a chat request that its reasoning models (o1, o3, o4-mini,
/// GPT-5…) cannot take: `max_tokens` (their limit counts reasoning tokens too, and is named
/// `max_completion_tokens`), or a temperature other than their default 1 — the first such
/// parameter, as OpenAI reports one at a time. Other models take both.
pub(super) fn refusal(request: &RecordedRequest) -> Option<Value> {
    let model = request.model()?;
    if !["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|family| model.starts_with(family))
    {
        return None;
    }
    let error = |message: String, param: &str, code: &str| {
        json!({ "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        } })
    };
    if request.body.get("max_tokens").is_some() {
        return Some(error(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.".into(),
            "max_tokens",
            "unsupported_parameter",
        ));
    }
    match request.body.get("temperature").and_then(Value::as_f64) {
        Some(t) if t != 1.0 => Some(error(
            format!(
                "Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported."
            ),
            "temperature",
            "unsupported_value",
        )),
        _ => None,
    }
}

/// `finish_reason`.
fn finish_reason(usage: Usage) -> &'static str {
    match usage.finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output
    })
}

/// The whole answer of `/v1/completions` or `/v1/chat/completions`.
pub(super) fn full_body(request: &RecordedRequest, text: &str, usage: Usage) -> Value {
    let model = request_model(request);
    let id = request.seq;
    if request.endpoint == Endpoint::OpenAiCompletions {
        json!({
            "id": format!("cmpl-double-{id}"),
            "object": "text_completion",
            "created": unix_now(),
            "model": model,
            "choices": [{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish_reason(usage) }],
            "usage": usage_json(usage)
        })
    } else {
        json!({
            "id": format!("chatcmpl-double-{id}"),
            "object": "chat.completion",
            "created": unix_now(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": finish_reason(usage)
            }],
            "usage": usage_json(usage)
        })
    }
}

/// The SSE events of a streamed `/v1/completions` or `/v1/chat/completions` answer.
pub(super) fn stream_events(
    request: &RecordedRequest,
    pieces: &[String],
    usage: Usage,
) -> StreamEvents {
    let model = request_model(request);
    let created = unix_now();
    let include_usage = request
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chat = request.endpoint == Endpoint::OpenAiChat;
    let (id, object) = if chat {
        (
            format!("chatcmpl-double-{}", request.seq),
            "chat.completion.chunk",
        )
    } else {
        (format!("cmpl-double-{}", request.seq), "text_completion")
    };
    let chunk = |text: Option<&str>, delta: Value, finish: Value| {
        let choice = if chat {
            json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish })
        } else {
            json!({ "text": text.unwrap_or_default(), "index": 0, "logprobs": null, "finish_reason": finish })
        };
        sse_data(&json!({
            "id": id,
            "object": object,
            "created": created,
            "model": model,
            "choices": [choice]
        }))
    };
    let mut epilogue = vec![chunk(Some(""), json!({}), json!(finish_reason(usage)))];
    if include_usage {
        epilogue.push(sse_data(&json!({
            "id": id,
            "object": object,
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage_json(usage)
        })));
    }
    epilogue.push("data: [DONE]\n\n".to_owned());
    let preamble = if chat {
        vec![chunk(
            None,
            json!({ "role": "assistant", "content": "" }),
            Value::Null,
        )]
    } else {
        Vec::new()
    };
    StreamEvents {
        content_type: "text/event-stream",
        preamble,
        content: pieces
            .iter()
            .map(|p| chunk(Some(p), json!({ "content": p }), Value::Null))
            .collect(),
        epilogue,
    }
}

/// `{"error":{"message","type","param","code"}}`.
pub(super) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 404 | 405 => "invalid_request_error",
        401 => "authentication_error",
        429 => "rate_limit_exceeded",
        _ => "server_error",
    };
    json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })
}

/// What an OpenAI-compatible server sends in-band when generation fails mid-stream.
pub(super) fn stream_error_event() -> String {
    sse_data(
        &json!({ "error": { "message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null } }),
    )
}

/// `GET /v1/models`.
pub(super) fn models_list(models: &[String]) -> Value {
    json!({
        "object": "list",
        "data": models.iter().map(|name| json!({
            "id": name,
            "object": "model",
            "created": 1_700_000_000u64,
            "owned_by": "pilotfish-double"
        })).collect::<Vec<_>>()
    })
}
