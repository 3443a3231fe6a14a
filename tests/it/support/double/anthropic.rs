//! Anthropic's Messages wire: `POST /v1/messages` (requires `x-api-key` and
//! `anthropic-version`), whole or streamed as named SSE events (`message_start`,
//! `content_block_start`, `ping`, `content_block_delta` pieces, `content_block_stop`,
//! `message_delta` with the output tokens, `message_stop`; `error` when overloaded).
//! It must not decide what to answer: the text, usage and faults come from `serve`.

use serde_json::{Value, json};

use super::request::RecordedRequest;
use super::wire::{Finish, StreamEvents, Usage, request_model, sse_event};

/// Why a request is refused before any generation (a missing header), as (status, message).
pub(super) fn refusal(request: &RecordedRequest) -> Option<(u16, &'static str)> {
    if request.header("x-api-key").is_none() {
        return Some((401, "x-api-key header is required"));
    }
    if request.header("anthropic-version").is_none() {
        return Some((400, "anthropic-version: header is required"));
    }
    None
}

/// `stop_reason`.
fn stop_reason(usage: Usage) -> &'static str {
    match usage.finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    }
}

/// The whole answer of `/v1/messages`.
pub(super) fn full_body(request: &RecordedRequest, text: &str, usage: Usage) -> Value {
    json!({
        "id": format!("msg_double_{}", request.seq),
        "type": "message",
        "role": "assistant",
        "model": request_model(request),
        "content": [{ "type": "text", "text": text }],
        "stop_reason": stop_reason(usage),
        "stop_sequence": null,
        "usage": { "input_tokens": usage.input, "output_tokens": usage.output }
    })
}

/// The SSE events of a streamed `/v1/messages` answer.
pub(super) fn stream_events(
    request: &RecordedRequest,
    pieces: &[String],
    usage: Usage,
) -> StreamEvents {
    StreamEvents {
        content_type: "text/event-stream",
        preamble: vec![
            sse_event(
                "message_start",
                &json!({
                    "type": "message_start",
                    "message": {
                        "id": format!("msg_double_{}", request.seq),
                        "type": "message",
                        "role": "assistant",
                        "model": request_model(request),
                        "content": [],
                        "stop_reason": null,
                        "stop_sequence": null,
                        "usage": { "input_tokens": usage.input, "output_tokens": 1 }
                    }
                }),
            ),
            sse_event(
                "content_block_start",
                &json!({
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": { "type": "text", "text": "" }
                }),
            ),
            sse_event("ping", &json!({ "type": "ping" })),
        ],
        content: pieces
            .iter()
            .map(|p| {
                sse_event(
                    "content_block_delta",
                    &json!({
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": { "type": "text_delta", "text": p }
                    }),
                )
            })
            .collect(),
        epilogue: vec![
            sse_event(
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": 0 }),
            ),
            sse_event(
                "message_delta",
                &json!({
                    "type": "message_delta",
                    "delta": { "stop_reason": stop_reason(usage), "stop_sequence": null },
                    "usage": { "output_tokens": usage.output }
                }),
            ),
            sse_event("message_stop", &json!({ "type": "message_stop" })),
        ],
    }
}

/// `{"type":"error","error":{"type","message"}}`.
pub(super) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 405 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

/// What Anthropic sends in-band when it is overloaded mid-stream.
pub(super) fn stream_error_event() -> String {
    sse_event(
        "error",
        &json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
    )
}
