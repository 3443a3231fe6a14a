//! Ollama: `POST {url}/api/generate` with `suffix` (native FIM) or `raw` (a rendered
//! template). Asks for one JSON object, and reads NDJSON too (a stream of partial answers).
//! Chat: `POST {url}/api/chat` streamed as NDJSON, one `message.content` piece a line, the
//! last line `done: true` with `prompt_eval_count`/`eval_count`.

use serde_json::{Value, json};

use super::stream::{ChatWire, NdjsonDecoder, WireError};
use super::{
    ChatCall, Cut, FimCall, ModelAnswer, PromptRead, ProviderError, Thinking, chat_messages,
    error_text, one_line, post_json, with_key,
};
use crate::config::ModelConfig;

/// The streaming chat request and the decoder of its answer, for `stream_chat`.
pub(super) fn chat(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    call: &ChatCall<'_>,
) -> (reqwest::RequestBuilder, Box<dyn ChatWire>) {
    let request = with_key(http.post(url), model).json(&chat_body(model, call));
    (request, Box::<ChatStream>::default())
}

/// The `/api/chat` request. A thinking model (Qwen3, DeepSeek-R1…) thinks by default, apart
/// from the answer and within `num_predict`; `think: false` stops it where the call asks
/// (Ollama refuses only `think: true` for a model that cannot think; versions before the
/// field ignore it).
fn chat_body(model: &ModelConfig, call: &ChatCall<'_>) -> Value {
    let messages = chat_messages(call, true);
    let mut body = json!({
        "model": model.model,
        "messages": messages,
        "stream": true,
        "keep_alive": "30m",
        "options": {
            "num_predict": call.max_tokens,
            "temperature": call.temperature,
        },
    });
    if call.thinking == Thinking::Off {
        body["think"] = json!(false);
    }
    body
}

/// The NDJSON stream of `/api/chat` (a single JSON object, when not streamed, reads the same),
/// and of `/api/generate`, whose lines carry `response`.
#[derive(Debug, Default)]
pub(super) struct ChatStream {
    lines: NdjsonDecoder,
    seen: usize,
    done: bool,
    /// The `done_reason` was `length`: cut at `num_predict`.
    cut_at_limit: bool,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    prompt_read: Option<PromptRead>,
}

impl ChatStream {
    fn line(&mut self, line: &str, text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        self.seen += 1;
        let obj: Value = serde_json::from_str(line)
            .map_err(|e| WireError::Malformed(format!("bad line ({e}): {}", one_line(line))))?;
        if let Some(error) = obj.get("error").filter(|e| !e.is_null()) {
            return Err(WireError::Model {
                status: None,
                message: one_line(&error_text(error)),
            });
        }
        let piece = obj
            .pointer("/message/content")
            .or_else(|| obj.get("response"))
            .and_then(Value::as_str);
        if let Some(piece) = piece {
            text(piece);
        }
        if obj.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            self.cut_at_limit = cut_at_limit(&obj);
            self.tokens_in = obj.get("prompt_eval_count").and_then(Value::as_u64);
            self.tokens_out = obj.get("eval_count").and_then(Value::as_u64);
            self.prompt_read = PromptRead::of(&obj);
        }
        Ok(())
    }
}

impl ChatWire for ChatStream {
    fn feed(&mut self, bytes: &[u8], text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        for line in self.lines.push(bytes).map_err(WireError::Malformed)? {
            if self.done {
                break;
            }
            self.line(&line, text)?;
        }
        Ok(())
    }

    fn finish(&mut self, text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        for line in self.lines.finish().map_err(WireError::Malformed)? {
            if self.done {
                break;
            }
            self.line(&line, text)?;
        }
        if self.done {
            Ok(())
        } else if self.seen == 0 {
            Err(WireError::Malformed("an empty answer".into()))
        } else {
            Err(WireError::Truncated)
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        (self.tokens_in, self.tokens_out)
    }

    fn prompt_read(&self) -> Option<PromptRead> {
        self.prompt_read
    }

    fn cut_at_limit(&self) -> bool {
        self.cut_at_limit
    }
}

/// The last object of an answer says it stopped at `num_predict`.
fn cut_at_limit(done: &Value) -> bool {
    done.get("done_reason").and_then(Value::as_str) == Some("length")
}

pub(super) async fn fim(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    call: FimCall<'_>,
) -> Result<ModelAnswer, ProviderError> {
    let body = generate_body(model, &call, false);
    let text = post_json(http, model, url, &body).await?;
    parse_generate(&text).map_err(|detail| ProviderError::Malformed {
        url: url.to_string(),
        detail,
    })
}

/// The streamed `/api/generate` request and the decoder of its answer (the chat decoder:
/// its lines carry `response` where chat's carry `message.content`).
pub(super) fn fim_streamed(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    call: &FimCall<'_>,
) -> (reqwest::RequestBuilder, Box<dyn ChatWire>) {
    let body = generate_body(model, call, true);
    let request = with_key(http.post(url), model).json(&body);
    (request, Box::<ChatStream>::default())
}

fn generate_body(model: &ModelConfig, call: &FimCall<'_>, stream: bool) -> Value {
    let mut body = json!({
        "model": model.model,
        "prompt": call.prompt.prompt,
        "stream": stream,
        "keep_alive": "30m",
        "options": {
            "num_predict": call.max_tokens.max(1),
            "temperature": 0.0,
            "stop": call.prompt.stop,
        },
    });
    match &call.prompt.suffix {
        Some(suffix) => body["suffix"] = json!(suffix),
        None => body["raw"] = json!(true),
    }
    body
}

/// Reads `/api/generate`: one object, or NDJSON lines each carrying part of `response`;
/// the last one (`done: true`) carries the token counts. An `error` line is an error.
fn parse_generate(body: &str) -> Result<ModelAnswer, String> {
    let mut answer = ModelAnswer::default();
    let mut saw_response = false;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let obj: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        if let Some(error) = obj.get("error") {
            return Err(format!(
                "model error: {}",
                one_line(
                    &error
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| error.to_string())
                )
            ));
        }
        if let Some(part) = obj.get("response").and_then(Value::as_str) {
            answer.text.push_str(part);
            saw_response = true;
        }
        if obj.get("done").and_then(Value::as_bool) == Some(true) {
            answer.cut = cut_at_limit(&obj).then_some(Cut::TokenLimit);
            answer.tokens_in = obj.get("prompt_eval_count").and_then(Value::as_u64);
            answer.tokens_out = obj.get("eval_count").and_then(Value::as_u64);
            answer.prompt_read = PromptRead::of(&obj);
        }
    }
    if !saw_response {
        return Err("no `response` in the answer".into());
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::stream::tests::{WireRun, run_wire};

    #[test]
    fn parses_single_object_ndjson_and_errors() {
        let one =
            r#"{"model":"m","response":"foo()","done":true,"prompt_eval_count":30,"eval_count":4}"#;
        assert_eq!(
            parse_generate(one),
            Ok(ModelAnswer {
                text: "foo()".into(),
                tokens_in: Some(30),
                tokens_out: Some(4),
                first_token: None,
                cut: None,
                prompt_read: None,
            })
        );
        let cut = r#"{"response":"foo(","done":true,"done_reason":"length","eval_count":2}"#;
        assert_eq!(parse_generate(cut).unwrap().cut, Some(Cut::TokenLimit));
        let ndjson = "{\"response\":\"fo\",\"done\":false}\n{\"response\":\"o\",\"done\":false}\n{\"response\":\"\",\"done\":true,\"eval_count\":2}\n";
        let a = parse_generate(ndjson).unwrap();
        assert_eq!((a.text.as_str(), a.tokens_out), ("foo", Some(2)));
        assert!(
            parse_generate(r#"{"error":"model \"x\" not found"}"#)
                .unwrap_err()
                .contains("not found")
        );
        assert!(parse_generate("garbage").is_err());
        assert!(parse_generate("").is_err());
    }

    fn chat_stream(body: &str) -> WireRun {
        run_wire::<ChatStream>(body)
    }

    #[test]
    fn chat_stream_pieces_and_counts() {
        let body = "{\"message\":{\"role\":\"assistant\",\"content\":\"fn \"},\"done\":false}\r\n\
                    {\"message\":{\"role\":\"assistant\",\"content\":\"main() 😀\"},\"done\":false}\n\
                    {\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"prompt_eval_count\":11,\"eval_count\":3}\n";
        let WireRun {
            pieces,
            result,
            usage,
            cut_at_limit,
        } = chat_stream(body);
        assert_eq!(pieces, vec!["fn ", "main() 😀", ""]);
        assert_eq!(result, Ok(()));
        assert_eq!(usage, (Some(11), Some(3)));
        assert!(!cut_at_limit);
        let cut = body.replace(
            "\"done\":true,",
            "\"done\":true,\"done_reason\":\"length\",",
        );
        let run = chat_stream(&cut);
        assert_eq!((run.result, run.cut_at_limit), (Ok(()), true));
    }

    #[test]
    fn chat_stream_errors() {
        let WireRun { pieces, result, .. } = chat_stream(
            "{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"error\":\"model crashed\"}\n",
        );
        assert_eq!(pieces, vec!["a"]);
        assert_eq!(
            result,
            Err(WireError::Model {
                status: None,
                message: "model crashed".into()
            })
        );
        let WireRun { result, .. } =
            chat_stream("{\"message\":{\"content\":\"a\"},\"done\":false}\n");
        assert_eq!(result, Err(WireError::Truncated));
        let WireRun { result, .. } = chat_stream("<html>oops</html>\n");
        assert!(matches!(result, Err(WireError::Malformed(d)) if d.contains("<html>oops")));
        assert!(matches!(
            chat_stream("").result,
            Err(WireError::Malformed(_))
        ));
    }
}
