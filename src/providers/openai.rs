//! OpenAI-compatible servers (llama.cpp, vLLM, LM Studio, OpenRouter, …): `POST
//! {url}/completions` with `prompt` (+ `suffix` for native FIM), and `POST
//! {url}/chat/completions` streamed as SSE (`choices[0].delta.content` pieces, usage in the
//! last chunk, `data: [DONE]`). A model OpenAI serves only through its Responses API (o1-pro,
//! o3-pro, GPT-5-Codex…) is asked at `POST {url}/responses` once it says so
//! (`response.output_text.delta` pieces, usage in `response.completed`). Mistral's API
//! (a url at mistral.ai) fills in the middle at `POST {url}/fim/completions` and answers it
//! as a chat (`delta.content`); it refuses fields it does not know, `stream_options` among
//! them, and reports usage in its last chunk unasked. llama-server's chat is told a
//! completion's model is not to think (`chat_template_kwargs`).

use serde_json::{Value, json};

use super::stream::{ChatWire, SseAnswer, SseWire, WireError, event_json};
use super::{
    ChatCall, Cut, FimCall, ModelAnswer, PromptRead, ProviderError, Thinking, chat_messages,
    error_text, input_output_tokens, one_line, post_json, sse_data, stops_for_api, with_key,
};
use crate::config::{ModelConfig, Provider};

/// The streaming chat request and the decoder of its answer, for `stream_chat`.
pub(super) fn chat(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    (call, params): (&ChatCall<'_>, ChatParams),
) -> (reqwest::RequestBuilder, Box<dyn ChatWire>) {
    let request = with_key(http.post(url), model).json(&chat_body(model, call, params));
    (request, Box::<SseWire<ChatStream>>::default())
}

/// How a server wants a chat request's output limit and temperature said. OpenAI's reasoning
/// models (o1, o3, GPT-5…, on OpenAI and Azure) refuse `max_tokens` ("Use
/// 'max_completion_tokens' instead") and any temperature but their default, with a 400;
/// other OpenAI-compatible servers may not know `max_completion_tokens` and would ignore
/// the limit. So a request starts the common way and says it as the refusal asks
/// ([`ChatParams::learn`]), and the caller remembers it for the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ChatParams {
    /// The output limit goes as `max_completion_tokens`.
    completion_tokens: bool,
    /// No temperature is sent: the model's default.
    default_temperature: bool,
    /// The model is served only through the Responses API (`{url}/responses`).
    pub(super) responses_api: bool,
}

impl ChatParams {
    /// The parameters a refusal asks for (a 400 saying `'max_tokens'` or `'temperature'` is
    /// unsupported, a 400 or 404 saying the model is only served at `v1/responses`); None
    /// when it asks for nothing these do not already do.
    pub(super) fn learn(self, error: &ProviderError) -> Option<ChatParams> {
        let ProviderError::Status {
            status: status @ (400 | 404),
            message,
            ..
        } = error
        else {
            return None;
        };
        let unsupported = *status == 400 && message.to_ascii_lowercase().contains("unsupported");
        let learnt = ChatParams {
            completion_tokens: self.completion_tokens
                || (unsupported && message.contains("'max_tokens'")),
            default_temperature: self.default_temperature
                || (unsupported && message.contains("'temperature'")),
            responses_api: self.responses_api || message.contains("v1/responses"),
        };
        (learnt != self).then_some(learnt)
    }
}

/// Whether `model` is served by Mistral's API (`api.mistral.ai`, `codestral.mistral.ai`).
fn at_mistral(model: &ModelConfig) -> bool {
    reqwest::Url::parse(&model.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|host| host == "mistral.ai" || host.ends_with(".mistral.ai"))
}

/// Where `model` fills in the middle, relative to its url.
pub(super) fn fim_path(model: &ModelConfig) -> &'static str {
    if at_mistral(model) {
        "fim/completions"
    } else {
        "completions"
    }
}

/// Asks a streamed answer to end with its usage (`stream_options.include_usage`), except of
/// Mistral's API, which refuses the field and sends usage unasked.
fn ask_for_usage(model: &ModelConfig, body: &mut Value) {
    if !at_mistral(model) {
        body["stream_options"] = json!({ "include_usage": true });
    }
}

/// The `/chat/completions` request: the system prompt as the first message.
fn chat_body(model: &ModelConfig, call: &ChatCall<'_>, params: ChatParams) -> Value {
    let messages = chat_messages(call, true);
    let mut body = json!({
        "model": model.model,
        "messages": messages,
        "stream": true,
    });
    ask_for_usage(model, &mut body);
    let limit = if params.completion_tokens {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    body[limit] = json!(call.max_tokens);
    if !params.default_temperature {
        body["temperature"] = json!(call.temperature);
    }
    tell_not_to_think(model, call, &mut body);
    body
}

/// Tells llama-server not to let a thinking model think, when the call says so: it hands
/// `chat_template_kwargs` to the model's chat template (with `--jinja`), where Qwen3's and
/// others' read it; a template without it ignores it. Not sent to other OpenAI-compatible
/// servers: OpenAI refuses a field it does not know.
fn tell_not_to_think(model: &ModelConfig, call: &ChatCall<'_>, body: &mut Value) {
    if model.provider == Provider::Llamacpp && call.thinking == Thinking::Off {
        body["chat_template_kwargs"] = json!({ "enable_thinking": false });
    }
}

/// The SSE stream of `/chat/completions` (and of `/completions`, whose chunks carry `text`).
/// Complete at `data: [DONE]`, or at the end of the body once a `finish_reason` was seen
/// (servers that omit `[DONE]`). A whole answer (`choices[0].message` or `.text`) reads as
/// its one event ([`SseAnswer::whole`]).
#[derive(Debug, Default)]
pub(super) struct ChatStream {
    finished: bool,
    /// The `finish_reason` was `length`: cut at `max_tokens`.
    cut_at_limit: bool,
    done: bool,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    /// llama-server's `timings`.
    prompt_read: Option<PromptRead>,
    /// The body is one whole answer, not a stream ([`SseAnswer::whole`]).
    whole: bool,
}

impl SseAnswer for ChatStream {
    fn event(
        &mut self,
        _name: &str,
        data: &str,
        text: &mut dyn FnMut(&str),
    ) -> Result<(), WireError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let obj = event_json("", data)?;
        if let Some(error) = obj.get("error").filter(|e| !e.is_null()) {
            // OpenRouter and some proxies put the HTTP status in `code`.
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .filter(|c| (400..=599).contains(c))
                .map(|c| c as u16);
            return Err(WireError::Model {
                status,
                message: one_line(&error_text(error)),
            });
        }
        if let Some(choice) = obj.pointer("/choices/0") {
            let piece = choice
                .pointer("/delta/content")
                .or_else(|| choice.get("text"))
                .or_else(|| {
                    // A whole chat answer's; never read from a stream's chunks, where it
                    // would repeat what the deltas gave.
                    self.whole.then(|| choice.pointer("/message/content"))?
                })
                .and_then(Value::as_str);
            if let Some(piece) = piece {
                text(piece);
            }
            if let Some(reason) = choice.get("finish_reason").filter(|f| !f.is_null()) {
                self.finished = true;
                self.cut_at_limit = is_length(reason);
            }
        }
        if let Some(usage) = obj.get("usage").filter(|u| u.is_object()) {
            self.tokens_in = usage.get("prompt_tokens").and_then(Value::as_u64);
            self.tokens_out = usage.get("completion_tokens").and_then(Value::as_u64);
        }
        // llama-server's, beside the finish reason and the usage.
        if let Some(read) = PromptRead::of(&obj) {
            self.prompt_read = Some(read);
        }
        Ok(())
    }

    /// A whole `/chat/completions` answer carries `choices[0].message`, a whole
    /// `/completions` answer `choices[0].text`: one event, read with `message` allowed.
    fn whole(&mut self, body: &str, text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        self.whole = true;
        self.event("", body, text)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn is_complete(&self) -> bool {
        self.done || self.finished
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

/// The streaming Responses API request (`POST {url}/responses`) and the decoder of its
/// answer, for `stream_chat`: for a model OpenAI serves only there ([`ChatParams::learn`]).
pub(super) fn responses(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    (call, params): (&ChatCall<'_>, ChatParams),
) -> (reqwest::RequestBuilder, Box<dyn ChatWire>) {
    let request = with_key(http.post(url), model).json(&responses_body(model, call, params));
    (request, Box::<SseWire<ResponsesStream>>::default())
}

/// The fewest output tokens the Responses API takes (a one-token probe asks for more).
const RESPONSES_MIN_OUTPUT_TOKENS: u32 = 16;

/// The `/responses` request: the system prompt as `instructions`, the conversation as
/// `input`, the output limit as `max_output_tokens`.
fn responses_body(model: &ModelConfig, call: &ChatCall<'_>, params: ChatParams) -> Value {
    let mut body = json!({
        "model": model.model,
        "input": chat_messages(call, false),
        "max_output_tokens": call.max_tokens.max(RESPONSES_MIN_OUTPUT_TOKENS),
        "stream": true,
    });
    if !call.system.is_empty() {
        body["instructions"] = json!(call.system);
    }
    if !params.default_temperature {
        body["temperature"] = json!(call.temperature);
    }
    tell_not_to_think(model, call, &mut body);
    body
}

/// The SSE stream of `/responses`: `response.output_text.delta` pieces; the answer ends with
/// `response.completed`, or `response.incomplete` (cut: `max_output_tokens`); a
/// `response.failed` or `error` event is the model's error; every other event (the output
/// items' bookkeeping, reasoning summaries) is ignored. A whole answer (a `response` object)
/// reads its `output_text` parts.
#[derive(Debug, Default)]
pub(super) struct ResponsesStream {
    done: bool,
    cut_at_limit: bool,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
}

impl ResponsesStream {
    /// The final `response` object's usage and why it is incomplete.
    fn ended(&mut self, response: &Value) -> Result<(), WireError> {
        if let Some(error) = response.get("error").filter(|e| !e.is_null()) {
            return Err(WireError::Model {
                status: None,
                message: one_line(&error_text(error)),
            });
        }
        self.done = true;
        (self.tokens_in, self.tokens_out) = input_output_tokens(response.get("usage"));
        self.cut_at_limit = response
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str)
            == Some("max_output_tokens");
        Ok(())
    }
}

impl SseAnswer for ResponsesStream {
    fn event(
        &mut self,
        name: &str,
        data: &str,
        text: &mut dyn FnMut(&str),
    ) -> Result<(), WireError> {
        let obj = event_json(name, data)?;
        match obj.get("type").and_then(Value::as_str).unwrap_or(name) {
            "response.output_text.delta" => {
                if let Some(piece) = obj.get("delta").and_then(Value::as_str) {
                    text(piece);
                }
            }
            "response.completed" | "response.incomplete" => {
                self.ended(obj.get("response").unwrap_or(&Value::Null))?;
            }
            "response.failed" => {
                self.ended(obj.get("response").unwrap_or(&Value::Null))?;
                return Err(WireError::Model {
                    status: None,
                    message: "the response failed".into(),
                });
            }
            // The `error` event; a proxy's `{"error": {..}}` as the Chat API sends it.
            "error" => {
                return Err(WireError::Model {
                    status: None,
                    message: one_line(&error_text(obj.get("error").unwrap_or(&obj))),
                });
            }
            _ => {
                if let Some(error) = obj.get("error").filter(|e| e.is_object()) {
                    return Err(WireError::Model {
                        status: None,
                        message: one_line(&error_text(error)),
                    });
                }
            }
        }
        Ok(())
    }

    fn whole(&mut self, body: &str, text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        let response: Value = serde_json::from_str(body.trim())
            .map_err(|e| WireError::Malformed(format!("not JSON ({e}): {}", one_line(body))))?;
        let parts = response
            .get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|item| item.get("type").and_then(Value::as_str) == Some("message"))
            .filter_map(|item| item.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text"));
        for part in parts {
            if let Some(piece) = part.get("text").and_then(Value::as_str) {
                text(piece);
            }
        }
        self.ended(&response)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        (self.tokens_in, self.tokens_out)
    }

    fn cut_at_limit(&self) -> bool {
        self.cut_at_limit
    }
}

/// A `finish_reason` saying the answer stopped at `max_tokens`.
fn is_length(reason: &Value) -> bool {
    reason.as_str() == Some("length")
}

pub(super) async fn fim(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    call: FimCall<'_>,
) -> Result<ModelAnswer, ProviderError> {
    let body = completion_body(model, &call, false);
    let text = post_json(http, model, url, &body).await?;
    parse_completion(&text).map_err(|detail| ProviderError::Malformed {
        url: url.to_string(),
        detail,
    })
}

/// The streamed `/completions` request and the decoder of its answer (the chat decoder:
/// its chunks carry `choices[0].text` where chat's carry `delta.content`).
pub(super) fn fim_streamed(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    call: &FimCall<'_>,
) -> (reqwest::RequestBuilder, Box<dyn ChatWire>) {
    let body = completion_body(model, call, true);
    let request = with_key(http.post(url), model).json(&body);
    (request, Box::<SseWire<ChatStream>>::default())
}

fn completion_body(model: &ModelConfig, call: &FimCall<'_>, stream: bool) -> Value {
    let mut body = json!({
        "model": model.model,
        "prompt": call.prompt.prompt,
        "max_tokens": call.max_tokens.max(1),
        "temperature": 0.0,
        "stream": stream,
        "stop": stops_for_api(&call.prompt.stop, 4),
    });
    if stream {
        ask_for_usage(model, &mut body);
    }
    if let Some(suffix) = &call.prompt.suffix {
        body["suffix"] = json!(suffix);
    }
    body
}

/// Reads a `/completions` answer: one JSON object, or (some servers stream regardless) SSE.
fn parse_completion(body: &str) -> Result<ModelAnswer, String> {
    let trimmed = body.trim_start();
    let objects: Vec<Value> = if trimmed.starts_with("data:") {
        sse_data(body)
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad SSE event: {e}"))?
    } else {
        vec![serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?]
    };
    let mut answer = ModelAnswer::default();
    let mut saw_choice = false;
    for obj in &objects {
        if let Some(choice) = obj.get("choices").and_then(|c| c.get(0)) {
            // Mistral answers fill-in-the-middle as a chat: `message.content`.
            let text = choice
                .get("text")
                .or_else(|| choice.pointer("/message/content"))
                .and_then(Value::as_str)
                .ok_or("a choice without `text`")?;
            answer.text.push_str(text);
            saw_choice = true;
            if choice.get("finish_reason").is_some_and(is_length) {
                answer.cut = Some(Cut::TokenLimit);
            }
        }
        if let Some(usage) = obj.get("usage").filter(|u| u.is_object()) {
            answer.tokens_in = usage.get("prompt_tokens").and_then(Value::as_u64);
            answer.tokens_out = usage.get("completion_tokens").and_then(Value::as_u64);
        }
        if let Some(read) = PromptRead::of(obj) {
            answer.prompt_read = Some(read);
        }
    }
    if !saw_choice {
        return Err("no `choices` in the answer".into());
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Thinking;
    use crate::providers::stream::tests::{WireRun, run_wire};

    #[test]
    fn parses_json_sse_and_rejects_garbage() {
        let json = r#"{"choices":[{"text":"x + 1","index":0}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#;
        assert_eq!(
            parse_completion(json),
            Ok(ModelAnswer {
                text: "x + 1".into(),
                tokens_in: Some(12),
                tokens_out: Some(3),
                first_token: None,
                cut: None,
                prompt_read: None,
            })
        );
        let cut = r#"{"choices":[{"text":"x +","index":0,"finish_reason":"length"}]}"#;
        assert_eq!(parse_completion(cut).unwrap().cut, Some(Cut::TokenLimit));
        let sse = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(parse_completion(sse).unwrap().text, "ab");
        // Mistral's fill-in-the-middle answer is a chat's.
        let mistral = r#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"x + 1"},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_completion(mistral).unwrap().text, "x + 1");
        assert!(parse_completion("<html>oops</html>").is_err());
        assert!(parse_completion(r#"{"object":"error"}"#).is_err());
        assert!(parse_completion(r#"{"choices":[{"index":0}]}"#).is_err());
    }

    /// Runs a whole body through a fresh `ChatStream` in every chunking; the pieces and
    /// the final state must not depend on it.
    fn chat_stream(body: &str) -> WireRun {
        run_wire::<SseWire<ChatStream>>(body)
    }

    #[test]
    fn chat_stream_pieces_usage_and_done() {
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n\
                    : keep-alive\r\n\r\n\
                    data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                    data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo ✓\"}}]}\n\n\
                    data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
                    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
                    data: [DONE]\n\n";
        let WireRun {
            pieces,
            result,
            usage,
            cut_at_limit,
        } = chat_stream(body);
        assert_eq!(pieces, vec!["", "Hel", "lo ✓"]);
        assert_eq!(result, Ok(()));
        assert_eq!(usage, (Some(9), Some(2)));
        assert!(!cut_at_limit);
    }

    /// A stream's last chunk that repeats the whole `message` (as some servers add) gives no
    /// text twice: only a whole answer's `message` is read.
    #[test]
    fn chat_stream_reads_no_message_from_its_chunks() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\n\
                    data: {\"choices\":[{\"message\":{\"content\":\"ab\"},\"finish_reason\":\"stop\"}]}\n\n\
                    data: [DONE]\n\n";
        let run = chat_stream(body);
        assert_eq!((run.pieces, run.result), (vec!["ab".to_owned()], Ok(())));
    }

    #[test]
    fn chat_stream_without_done_is_complete_after_a_finish_reason() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"length\"}]}\n\n";
        let run = chat_stream(body);
        assert_eq!((run.result, run.cut_at_limit), (Ok(()), true));
        let cut = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        assert_eq!(chat_stream(cut).result, Err(WireError::Truncated));
    }

    #[test]
    fn chat_stream_errors() {
        let WireRun { result, .. } = chat_stream(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\\nagain\",\"type\":\"server_error\"}}\n\n",
        );
        assert_eq!(
            result,
            Err(WireError::Model {
                status: None,
                message: "boom again".into()
            })
        );
        let WireRun { result, .. } =
            chat_stream("data: {\"error\":{\"message\":\"slow down\",\"code\":429}}\n\n");
        assert!(matches!(
            result,
            Err(WireError::Model {
                status: Some(429),
                ..
            })
        ));
        let WireRun { result, .. } = chat_stream("<html>502 Bad Gateway</html>\n");
        assert_eq!(
            result,
            Err(WireError::Malformed(
                "not an event stream: <html>502 Bad Gateway</html>".into()
            ))
        );
        let WireRun { result, .. } =
            chat_stream("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {oops\n\n");
        assert!(matches!(result, Err(WireError::Malformed(d)) if d.starts_with("bad event")));
    }

    #[test]
    fn what_a_refusal_teaches() {
        let status = |status: u16, message: &str| ProviderError::Status {
            url: "u".into(),
            status,
            retry_after: None,
            message: message.into(),
        };
        let common = ChatParams::default();
        let completion_tokens = ChatParams {
            completion_tokens: true,
            ..common
        };
        let both = ChatParams {
            completion_tokens: true,
            default_temperature: true,
            ..common
        };
        let max_tokens = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.";
        let temperature = "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.";
        let responses_only =
            "This model is only supported in v1/responses and not in v1/chat/completions.";
        let responses = ChatParams {
            responses_api: true,
            ..common
        };
        let cases = [
            (common, status(404, responses_only), Some(responses)),
            (common, status(400, responses_only), Some(responses)),
            (responses, status(404, responses_only), None),
            (common, status(400, max_tokens), Some(completion_tokens)),
            (completion_tokens, status(400, temperature), Some(both)),
            // Already sent that way: nothing new, the call's failure.
            (completion_tokens, status(400, max_tokens), None),
            (both, status(400, temperature), None),
            // Not a refusal of these parameters.
            (
                common,
                status(400, "'max_tokens' must be at most 4096"),
                None,
            ),
            (common, status(404, max_tokens), None),
            (
                common,
                status(400, "Unsupported value: 'messages[0].role'"),
                None,
            ),
        ];
        for (params, error, want) in cases {
            assert_eq!(params.learn(&error), want, "{params:?} {error}");
        }
    }

    #[test]
    fn chat_body_has_the_system_prompt_first_and_asks_for_usage() {
        let model: ModelConfig =
            toml::from_str("provider = \"openai\"\nurl = \"http://h/v1\"\nmodel = \"m\"").unwrap();
        let messages = [crate::providers::ChatMessage::user("hi")];
        let call = ChatCall {
            system: "be brief",
            messages: &messages,
            max_tokens: 64,
            temperature: 0.25,
            thinking: Thinking::ModelDefault,
            begin_within: None,
        };
        let body = chat_body(&model, &call, ChatParams::default());
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "hi"})
        );
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
        assert_eq!(body["temperature"], json!(0.25));
        let call = ChatCall { system: "", ..call };
        assert_eq!(
            chat_body(&model, &call, ChatParams::default())["messages"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    /// Only llama-server is told not to think, and only when asked: OpenAI refuses a field
    /// it does not know.
    #[test]
    fn who_is_told_not_to_think() {
        let messages = [crate::providers::ChatMessage::user("hi")];
        let cases = [
            ("llamacpp", Thinking::Off, true),
            ("llamacpp", Thinking::ModelDefault, false),
            ("openai", Thinking::Off, false),
        ];
        for (provider, thinking, told) in cases {
            let model: ModelConfig = toml::from_str(&format!(
                "provider = \"{provider}\"\nurl = \"http://h/v1\"\nmodel = \"m\""
            ))
            .unwrap();
            let call = ChatCall {
                system: "",
                messages: &messages,
                max_tokens: 64,
                temperature: 0.2,
                thinking,
                begin_within: None,
            };
            let body = chat_body(&model, &call, ChatParams::default());
            assert_eq!(
                body["chat_template_kwargs"] == json!({ "enable_thinking": false }),
                told,
                "{provider} {thinking:?}: {body}"
            );
            assert_eq!(body.get("chat_template_kwargs").is_some(), told, "{body}");
        }
    }

    /// Mistral's API (by its host) fills in the middle at `fim/completions` and is never
    /// sent `stream_options`, which it refuses; any other server keeps the OpenAI way.
    #[test]
    fn what_mistrals_api_is_sent() {
        let messages = [crate::providers::ChatMessage::user("hi")];
        let chat = ChatCall {
            system: "",
            messages: &messages,
            max_tokens: 64,
            temperature: 0.2,
            thinking: Thinking::ModelDefault,
            begin_within: None,
        };
        let prompt = crate::prompt::FimPrompt {
            prompt: "def f(".into(),
            suffix: Some(")".into()),
            stop: Vec::new(),
        };
        let fim = FimCall {
            prompt: &prompt,
            max_tokens: 32,
            time_budget: None,
            other_files: &[],
        };
        for (url, path, usage_asked) in [
            ("https://codestral.mistral.ai/v1", "fim/completions", false),
            ("https://api.mistral.ai/v1", "fim/completions", false),
            ("https://API.Mistral.AI:443/v1", "fim/completions", false),
            ("http://127.0.0.1:8012/v1", "completions", true),
            ("https://notmistral.ai/v1", "completions", true),
            ("https://mistral.ai.example.com/v1", "completions", true),
        ] {
            let model: ModelConfig = toml::from_str(&format!(
                "provider = \"openai\"\nurl = \"{url}\"\nmodel = \"m\"\nfim = \"native\""
            ))
            .unwrap();
            assert_eq!(fim_path(&model), path, "{url}");
            let chat = chat_body(&model, &chat, ChatParams::default());
            let completion = completion_body(&model, &fim, true);
            for body in [chat, completion] {
                assert_eq!(
                    body.get("stream_options").is_some(),
                    usage_asked,
                    "{url}: {body}"
                );
            }
        }
    }
}
