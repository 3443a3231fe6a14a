//! Anthropic's Messages API: `POST {url}/v1/messages` with `x-api-key` and
//! `anthropic-version`, streamed as SSE: `message_start` (input tokens), `content_block_delta`
//! text pieces, `message_delta` (output tokens), `message_stop`; `ping` and unknown events
//! are ignored (the API may add events), an `error` event is the model's error.
//!
//! The key is read from the model's `api_key_env` at call time and marked sensitive in the
//! header; without a key no request is sent.

use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use super::stream::{ChatWire, SseAnswer, SseWire, WireError, event_json};
use super::{ChatCall, ProviderError, chat_messages, error_text, input_output_tokens, one_line};
use crate::config::ModelConfig;

/// The API version this module speaks.
const API_VERSION: &str = "2023-06-01";

/// The streaming chat request and the decoder of its answer, for `stream_chat`.
pub(super) fn chat(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    call: &ChatCall<'_>,
) -> Result<(reqwest::RequestBuilder, Box<dyn ChatWire>), ProviderError> {
    let request = with_headers(http.post(url), model)?.json(&chat_body(model, call));
    Ok((request, Box::<SseWire<ChatStream>>::default()))
}

/// Adds `x-api-key` (from the environment) and `anthropic-version`; fails without a key.
pub(super) fn with_headers(
    request: reqwest::RequestBuilder,
    model: &ModelConfig,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    let missing = || ProviderError::MissingKey {
        model: model.model.clone(),
        env: model.api_key_env.clone(),
    };
    let key = model.api_key().ok_or_else(missing)?;
    let mut key = HeaderValue::from_str(key.trim()).map_err(|_| {
        ProviderError::Unsupported(format!(
            "model {:?}: the API key in {} is not a valid HTTP header value",
            model.model,
            model.api_key_env.as_deref().unwrap_or("its variable"),
        ))
    })?;
    key.set_sensitive(true);
    Ok(request
        .header("x-api-key", key)
        .header("anthropic-version", API_VERSION))
}

fn chat_body(model: &ModelConfig, call: &ChatCall<'_>) -> Value {
    // Anthropic takes the system prompt as its own field, not as a message.
    let messages = chat_messages(call, false);
    let mut body = json!({
        "model": model.model,
        "max_tokens": call.max_tokens,
        "messages": messages,
        // Anthropic accepts 0..=1 (OpenAI-style callers may pass up to 2).
        "temperature": call.temperature.clamp(0.0, 1.0),
        "stream": true,
    });
    if !call.system.is_empty() {
        body["system"] = json!(call.system);
    }
    body
}

/// The HTTP status an Anthropic error type stands for, so that an in-stream
/// `overloaded_error` is handled like an HTTP 529 and `rate_limit_error` like a 429.
fn status_of(error_type: &str) -> Option<u16> {
    Some(match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

#[derive(Debug, Default)]
pub(super) struct ChatStream {
    stopped: bool,
    /// The `stop_reason` was `max_tokens`.
    cut_at_limit: bool,
    done: bool,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
}

impl SseAnswer for ChatStream {
    fn event(
        &mut self,
        name: &str,
        data: &str,
        text: &mut dyn FnMut(&str),
    ) -> Result<(), WireError> {
        let obj = event_json(name, data)?;
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or(name);
        match kind {
            "message_start" => {
                let usage = obj.pointer("/message/usage");
                self.tokens_in = usage
                    .and_then(|u| u.get("input_tokens"))
                    .and_then(Value::as_u64);
            }
            "content_block_delta" => {
                let delta = obj.get("delta");
                let is_text =
                    delta.and_then(|d| d.get("type")).and_then(Value::as_str) == Some("text_delta");
                if let Some(piece) = delta
                    .filter(|_| is_text)
                    .and_then(|d| d.get("text"))
                    .and_then(Value::as_str)
                {
                    text(piece);
                }
            }
            "message_delta" => {
                if let Some(usage) = obj.get("usage") {
                    if let Some(out) = usage.get("output_tokens").and_then(Value::as_u64) {
                        self.tokens_out = Some(out);
                    }
                    // Newer API versions repeat the (cumulative) input count here.
                    if let Some(input) = usage.get("input_tokens").and_then(Value::as_u64) {
                        self.tokens_in = Some(input);
                    }
                }
                if let Some(reason) = obj.pointer("/delta/stop_reason").filter(|r| !r.is_null()) {
                    self.stopped = true;
                    self.cut_at_limit = reason.as_str() == Some("max_tokens");
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let error = obj.get("error").unwrap_or(&obj);
                let error_type = error.get("type").and_then(Value::as_str).unwrap_or("");
                return Err(WireError::Model {
                    status: status_of(error_type),
                    message: one_line(&error_text(error)),
                });
            }
            // ping, content_block_start/stop, and whatever the API adds later.
            _ => {}
        }
        Ok(())
    }

    /// A whole Messages answer: `{"type": "message", "content": [text blocks…], "stop_reason",
    /// "usage"}`; anything else (an `error`) reads as an event.
    fn whole(&mut self, body: &str, text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        let obj: Value = serde_json::from_str(body)
            .map_err(|e| WireError::Malformed(format!("bad answer ({e}): {}", one_line(body))))?;
        if obj.get("type").and_then(Value::as_str) != Some("message") {
            return self.event("", body, text);
        }
        let blocks = obj.get("content").and_then(Value::as_array);
        for block in blocks.into_iter().flatten() {
            if block.get("type").and_then(Value::as_str) == Some("text") {
                if let Some(piece) = block.get("text").and_then(Value::as_str) {
                    text(piece);
                }
            }
        }
        (self.tokens_in, self.tokens_out) = input_output_tokens(obj.get("usage"));
        if let Some(reason) = obj.get("stop_reason").filter(|r| !r.is_null()) {
            self.stopped = true;
            self.cut_at_limit = reason.as_str() == Some("max_tokens");
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn is_complete(&self) -> bool {
        self.done || self.stopped
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        (self.tokens_in, self.tokens_out)
    }

    fn cut_at_limit(&self) -> bool {
        self.cut_at_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Thinking;
    use crate::providers::stream::tests::{WireRun, run_wire};

    fn chat_stream(body: &str) -> WireRun {
        run_wire::<SseWire<ChatStream>>(body)
    }

    const START: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n\
        event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n\
        event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n";

    fn delta(text: &str) -> String {
        format!(
            "event: content_block_delta\ndata: {}\n\n",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
        )
    }

    #[test]
    fn chat_stream_pieces_usage_and_stop() {
        let body = format!(
            "{START}{}{}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{{}}\"}}}}\n\n\
             event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
             event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":15}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
            delta("Hello"),
            delta(", wörld 😀"),
        );
        let WireRun {
            pieces,
            result,
            usage,
            cut_at_limit,
        } = chat_stream(&body);
        assert_eq!(pieces, vec!["Hello", ", wörld 😀"]);
        assert_eq!(result, Ok(()));
        assert_eq!(usage, (Some(25), Some(15)));
        assert!(!cut_at_limit);
        // Stopped by `max_tokens`: complete, and cut at the limit.
        let cut = body.replace("end_turn", "max_tokens");
        let run = chat_stream(&cut);
        assert_eq!((run.result, run.cut_at_limit), (Ok(()), true));
    }

    #[test]
    fn overloaded_event_is_a_529() {
        let body = format!(
            "{START}{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n",
            delta("par")
        );
        let WireRun { pieces, result, .. } = chat_stream(&body);
        assert_eq!(pieces, vec!["par"]);
        assert_eq!(
            result,
            Err(WireError::Model {
                status: Some(529),
                message: "Overloaded".into()
            })
        );
        assert_eq!(status_of("rate_limit_error"), Some(429));
        assert_eq!(status_of("something_new"), None);
    }

    #[test]
    fn truncated_and_garbage_streams() {
        let WireRun { result, .. } = chat_stream(&format!("{START}{}", delta("a")));
        assert_eq!(result, Err(WireError::Truncated));
        let WireRun { result, .. } = chat_stream("<html>oops</html>");
        assert!(
            matches!(result, Err(WireError::Malformed(d)) if d.contains("not an event stream"))
        );
    }

    #[test]
    fn chat_body_and_headers() {
        let model: ModelConfig = toml::from_str(
            "provider = \"anthropic\"\nurl = \"https://api.anthropic.com\"\nmodel = \"claude\"\n\
             api_key_env = \"PILOTFISH_UNIT_ANTHROPIC_KEY_UNSET\"",
        )
        .unwrap();
        let messages = [
            crate::providers::ChatMessage::user("q"),
            crate::providers::ChatMessage::assistant("a"),
            crate::providers::ChatMessage::user("q2"),
        ];
        let call = ChatCall {
            system: "sys",
            messages: &messages,
            max_tokens: 100,
            temperature: 1.5,
            thinking: Thinking::ModelDefault,
            begin_within: None,
        };
        let body = chat_body(&model, &call);
        assert_eq!(body["system"], json!("sys"));
        assert_eq!(
            body["messages"][1],
            json!({"role": "assistant", "content": "a"})
        );
        assert_eq!(body["temperature"], json!(1.0));
        assert_eq!(body["stream"], json!(true));
        assert!(
            chat_body(&model, &ChatCall { system: "", ..call })
                .get("system")
                .is_none()
        );
        let e = with_headers(reqwest::Client::new().get("http://h"), &model).unwrap_err();
        assert!(
            e.to_string().contains("PILOTFISH_UNIT_ANTHROPIC_KEY_UNSET"),
            "{e}"
        );
    }
}
