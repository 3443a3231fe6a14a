//! The OpenAI-compatible wire: `POST /v1/completions` (FIM with `suffix`) and `POST
//! /v1/chat/completions`, whole or streamed as SSE (`data: {..}` chunks, usage when
//! `stream_options.include_usage`, then `data: [DONE]`); OpenAI's `POST /v1/responses`
//! (`response.*` events); `GET /v1/models` lists the models; the refusals OpenAI sends some
//! of its models' requests. Sent to Mistral's API (by its `Host`), it is Mistral's:
//! fill-in-the-middle at `POST /v1/fim/completions` answered as a chat, usage in the last
//! chunk unasked, no `/v1/completions`, and a 422 for any field Mistral does not know.
//! It must not decide what to answer: the text, usage and faults come from `serve`.

use serde_json::{Value, json};

use super::request::{Endpoint, RecordedRequest};
use super::wire::{Finish, StreamEvents, Usage, request_model, sse_data, sse_event, unix_now};

/// Models OpenAI serves only through its Responses API.
const RESPONSES_ONLY: [&str; 4] = ["o1-pro", "o3-pro", "gpt-5-pro", "gpt-5-codex"];

/// What OpenAI answers (status, body) a request that a model cannot take: a chat
/// (`/v1/chat/completions`) for a model it serves only through the Responses API (404); a
/// Responses API request for fewer than 16 output tokens (400); and
/// for its reasoning models (o1, o3, o4-mini, GPT-5…), `max_tokens` (their limit counts
/// reasoning tokens too, and is named `max_completion_tokens`) or a temperature other than
/// their default 1 (400) — the first such parameter, as OpenAI reports one at a time. Other
/// models take all of these.
pub(super) fn refusal(request: &RecordedRequest) -> Option<(u16, Value)> {
    if request.to_mistral() {
        return mistral_refusal(request);
    }
    let model = request.model()?;
    if request.endpoint == Endpoint::OpenAiChat
        && RESPONSES_ONLY.iter().any(|only| model.starts_with(only))
    {
        return Some((
            404,
            invalid_request(
                "This model is only supported in v1/responses and not in v1/chat/completions."
                    .into(),
                "model",
                Value::Null,
            ),
        ));
    }
    if request.endpoint == Endpoint::OpenAiResponses
        && let Some(n) = request
            .body
            .get("max_output_tokens")
            .and_then(Value::as_u64)
            .filter(|&n| n < 16)
    {
        return Some((
            400,
            invalid_request(
                format!(
                    "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {n} instead."
                ),
                "max_output_tokens",
                json!("integer_below_min_value"),
            ),
        ));
    }
    if !["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|family| model.starts_with(family))
    {
        return None;
    }
    if request.body.get("max_tokens").is_some() {
        return Some((400, invalid_request(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.".into(),
            "max_tokens",
            json!("unsupported_parameter"),
        )));
    }
    match request.body.get("temperature").and_then(Value::as_f64) {
        Some(t) if t != 1.0 => Some((
            400,
            invalid_request(
                format!(
                    "Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported."
                ),
                "temperature",
                json!("unsupported_value"),
            ),
        )),
        _ => None,
    }
}

/// The fields Mistral's API takes, by endpoint; None for a path it does not serve.
fn mistral_fields(endpoint: Endpoint) -> Option<&'static [&'static str]> {
    match endpoint {
        Endpoint::OpenAiChat => Some(&[
            "model",
            "messages",
            "temperature",
            "top_p",
            "max_tokens",
            "stream",
            "stop",
            "random_seed",
            "response_format",
            "tools",
            "tool_choice",
            "presence_penalty",
            "frequency_penalty",
            "n",
            "safe_prompt",
        ]),
        Endpoint::MistralFim => Some(&[
            "model",
            "prompt",
            "suffix",
            "temperature",
            "top_p",
            "max_tokens",
            "min_tokens",
            "stream",
            "stop",
            "random_seed",
        ]),
        _ => None,
    }
}

/// What Mistral's API answers a request it cannot take: 404 at a path it does not serve
/// (`/v1/completions`, `/v1/responses`), 422 naming each field it does not know (it
/// validates strictly: `extra_forbidden`).
fn mistral_refusal(request: &RecordedRequest) -> Option<(u16, Value)> {
    let Some(fields) = mistral_fields(request.endpoint) else {
        return Some((
            404,
            json!({ "message": "no Route matched with those values" }),
        ));
    };
    let extra: Vec<Value> = request
        .body
        .as_object()?
        .iter()
        .filter(|(key, _)| !fields.contains(&key.as_str()))
        .map(|(key, value)| {
            json!({
                "type": "extra_forbidden",
                "loc": ["body", key],
                "msg": "Extra inputs are not permitted",
                "input": value,
            })
        })
        .collect();
    (!extra.is_empty()).then(|| {
        (
            422,
            json!({
                "object": "error",
                "message": { "detail": extra },
                "type": "invalid_request_error",
                "param": null,
                "code": null,
            }),
        )
    })
}

/// OpenAI's `invalid_request_error` body, naming the parameter at fault and its code.
fn invalid_request(message: String, param: &str, code: Value) -> Value {
    json!({ "error": {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    } })
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

/// The `response` object of `/v1/responses`: a reasoning item, then the message with the
/// text; `incomplete` at the output limit.
fn response_object(request: &RecordedRequest, text: &str, usage: Usage) -> Value {
    let cut = usage.finish == Finish::Length;
    json!({
        "id": format!("resp_double_{}", request.seq),
        "object": "response",
        "created_at": unix_now(),
        "status": if cut { "incomplete" } else { "completed" },
        "incomplete_details": if cut { json!({ "reason": "max_output_tokens" }) } else { Value::Null },
        "error": null,
        "model": request_model(request),
        "output": [
            { "id": "rs_double", "type": "reasoning", "summary": [] },
            {
                "id": "msg_double",
                "type": "message",
                "status": if cut { "incomplete" } else { "completed" },
                "role": "assistant",
                "content": [{ "type": "output_text", "text": text, "annotations": [] }]
            }
        ],
        "usage": {
            "input_tokens": usage.input,
            "output_tokens": usage.output,
            "total_tokens": usage.input + usage.output
        }
    })
}

/// The SSE events of a streamed `/v1/responses` answer: `response.created`, the output
/// items' bookkeeping, a `response.output_text.delta` per piece, then `response.completed`
/// (or `response.incomplete`) with the whole response and its usage.
fn responses_stream_events(
    request: &RecordedRequest,
    pieces: &[String],
    usage: Usage,
) -> StreamEvents {
    let created = json!({
        "id": format!("resp_double_{}", request.seq),
        "object": "response",
        "status": "in_progress",
        "output": []
    });
    let whole = response_object(request, &pieces.concat(), usage);
    let last = if usage.finish == Finish::Length {
        "response.incomplete"
    } else {
        "response.completed"
    };
    let event = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        sse_event(name, &data)
    };
    let text_part = |extra: Value| {
        let mut part = json!({ "item_id": "msg_double", "output_index": 1, "content_index": 0 });
        for (key, value) in extra.as_object().into_iter().flatten() {
            part[key] = value.clone();
        }
        part
    };
    StreamEvents {
        content_type: "text/event-stream",
        preamble: vec![
            event("response.created", json!({ "response": created })),
            event(
                "response.output_item.added",
                json!({ "output_index": 1, "item": { "id": "msg_double", "type": "message", "content": [] } }),
            ),
        ],
        content: pieces
            .iter()
            .map(|p| {
                event(
                    "response.output_text.delta",
                    text_part(json!({ "delta": p })),
                )
            })
            .collect(),
        epilogue: vec![
            event(
                "response.output_text.done",
                text_part(json!({ "text": pieces.concat() })),
            ),
            event(last, json!({ "response": whole })),
        ],
    }
}

/// What llama-server says of its reads beside its OpenAI-compatible answers, for a double
/// that reads at a rate ([`super::Behaviour::reads_per_token`]); others say nothing.
fn timings(usage: Usage) -> Option<Value> {
    (!usage.reading.is_zero()).then(|| {
        json!({
            "prompt_n": usage.input,
            "prompt_ms": usage.reading.as_secs_f64() * 1_000.0,
            "predicted_n": usage.output
        })
    })
}

/// The whole answer of `/v1/completions`, `/v1/chat/completions` or `/v1/responses`.
pub(super) fn full_body(request: &RecordedRequest, text: &str, usage: Usage) -> Value {
    if request.endpoint == Endpoint::OpenAiResponses {
        return response_object(request, text, usage);
    }
    let model = request_model(request);
    let id = request.seq;
    let mut body = if request.endpoint == Endpoint::OpenAiCompletions {
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
    };
    if let Some(timings) = timings(usage) {
        body["timings"] = timings;
    }
    body
}

/// The SSE events of a streamed `/v1/completions`, `/v1/chat/completions` or `/v1/responses`
/// answer.
pub(super) fn stream_events(
    request: &RecordedRequest,
    pieces: &[String],
    usage: Usage,
) -> StreamEvents {
    if request.endpoint == Endpoint::OpenAiResponses {
        return responses_stream_events(request, pieces, usage);
    }
    let model = request_model(request);
    let created = unix_now();
    let include_usage = request
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chat = matches!(
        request.endpoint,
        Endpoint::OpenAiChat | Endpoint::MistralFim
    );
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
        json!({
            "id": id,
            "object": object,
            "created": created,
            "model": model,
            "choices": [choice]
        })
    };
    let mut finish = chunk(Some(""), json!({}), json!(finish_reason(usage)));
    if let Some(timings) = timings(usage) {
        finish["timings"] = timings;
    }
    if request.to_mistral() {
        // Mistral's last chunk carries the usage with the finish reason, unasked.
        finish["usage"] = usage_json(usage);
    }
    let mut epilogue = vec![sse_data(&finish)];
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
        vec![sse_data(&chunk(
            None,
            json!({ "role": "assistant", "content": "" }),
            Value::Null,
        ))]
    } else {
        Vec::new()
    };
    StreamEvents {
        content_type: "text/event-stream",
        preamble,
        content: pieces
            .iter()
            .map(|p| sse_data(&chunk(Some(p), json!({ "content": p }), Value::Null)))
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
