//! The endpoints the double serves and the record of one request, with the readers tests use
//! (`prompt_text`, `suffix_text`, `all_input_text`). It must not decide what to answer.

use serde_json::Value;

/// The endpoints the double serves, by provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/completions`
    OpenAiCompletions,
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/responses` (OpenAI's Responses API)
    OpenAiResponses,
    /// `POST /v1/fim/completions` (Mistral's fill-in-the-middle, answered as a chat)
    MistralFim,
    /// `GET /v1/models` (probe)
    OpenAiModels,
    /// `POST /api/generate`
    OllamaGenerate,
    /// `POST /api/chat`
    OllamaChat,
    /// `GET /api/tags` (probe)
    OllamaTags,
    /// `GET /` — "Ollama is running" (probe)
    OllamaRoot,
    /// `POST /infill`
    LlamaInfill,
    /// `GET /health` (probe)
    LlamaHealth,
    /// `POST /v1/messages`
    AnthropicMessages,
    /// Anything else: `404`.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialect {
    OpenAi,
    Ollama,
    LlamaCpp,
    Anthropic,
}

impl Endpoint {
    pub(super) fn classify(path: &str) -> Self {
        match path {
            "/v1/completions" => Endpoint::OpenAiCompletions,
            "/v1/chat/completions" => Endpoint::OpenAiChat,
            "/v1/responses" => Endpoint::OpenAiResponses,
            "/v1/fim/completions" => Endpoint::MistralFim,
            "/v1/models" => Endpoint::OpenAiModels,
            "/api/generate" => Endpoint::OllamaGenerate,
            "/api/chat" => Endpoint::OllamaChat,
            "/api/tags" => Endpoint::OllamaTags,
            "/" => Endpoint::OllamaRoot,
            "/infill" => Endpoint::LlamaInfill,
            "/health" => Endpoint::LlamaHealth,
            "/v1/messages" => Endpoint::AnthropicMessages,
            _ => Endpoint::Unknown,
        }
    }

    /// A generation request (counted in `requests()`), as opposed to a probe.
    pub fn is_model_call(self) -> bool {
        matches!(
            self,
            Endpoint::OpenAiCompletions
                | Endpoint::OpenAiChat
                | Endpoint::OpenAiResponses
                | Endpoint::MistralFim
                | Endpoint::OllamaGenerate
                | Endpoint::OllamaChat
                | Endpoint::LlamaInfill
                | Endpoint::AnthropicMessages
        )
    }

    pub fn is_probe(self) -> bool {
        !self.is_model_call() && self != Endpoint::Unknown
    }

    pub(super) fn method(self) -> &'static str {
        if self.is_model_call() { "POST" } else { "GET" }
    }

    pub(super) fn dialect(self) -> Dialect {
        match self {
            Endpoint::OpenAiCompletions
            | Endpoint::OpenAiChat
            | Endpoint::OpenAiResponses
            | Endpoint::MistralFim
            | Endpoint::OpenAiModels => Dialect::OpenAi,
            Endpoint::OllamaGenerate
            | Endpoint::OllamaChat
            | Endpoint::OllamaTags
            | Endpoint::OllamaRoot => Dialect::Ollama,
            Endpoint::LlamaInfill | Endpoint::LlamaHealth | Endpoint::Unknown => Dialect::LlamaCpp,
            Endpoint::AnthropicMessages => Dialect::Anthropic,
        }
    }
}

/// One request as the double received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// 0-based arrival order among all requests (probes included).
    pub seq: usize,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Option<String>,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
    pub raw_body: Vec<u8>,
    pub endpoint: Endpoint,
}

impl RecordedRequest {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_model_call(&self) -> bool {
        self.endpoint.is_model_call()
    }

    /// Sent to Mistral's API: its `Host` is at mistral.ai (through a proxy, as a client
    /// configured with `HTTP_PROXY` sends it; the double is that proxy).
    pub fn to_mistral(&self) -> bool {
        self.header("host")
            .map(|host| {
                host.split(':')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase()
            })
            .is_some_and(|host| host == "mistral.ai" || host.ends_with(".mistral.ai"))
    }

    /// `body.model` when present.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// The output-token limit the request set (OpenAI and Anthropic `max_tokens`, OpenAI's
    /// `max_completion_tokens` or, for its Responses API, `max_output_tokens`, Ollama
    /// `options.num_predict`, llama.cpp `n_predict`); None
    /// when absent or not positive (unlimited).
    pub fn max_output_tokens(&self) -> Option<u64> {
        let body = &self.body;
        let limit = match self.endpoint.dialect() {
            Dialect::OpenAi | Dialect::Anthropic => body
                .get("max_tokens")
                .or_else(|| body.get("max_completion_tokens"))
                .or_else(|| body.get("max_output_tokens")),
            Dialect::Ollama => body.pointer("/options/num_predict"),
            Dialect::LlamaCpp => body.get("n_predict"),
        };
        limit
            .and_then(Value::as_i64)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0)
    }

    /// Whether the client asked for a streamed answer, with each API's default: Ollama streams
    /// unless `"stream": false`; the others stream only with `"stream": true`.
    pub fn wants_stream(&self) -> bool {
        let stream = self.body.get("stream").and_then(Value::as_bool);
        match self.endpoint.dialect() {
            Dialect::Ollama => stream.unwrap_or(true),
            _ => stream.unwrap_or(false),
        }
    }

    /// The text before the cursor for FIM endpoints (`prompt`, `input_prefix`), or the last
    /// message's text for chat endpoints. Empty when absent.
    pub fn prompt_text(&self) -> String {
        let body = &self.body;
        match self.endpoint {
            Endpoint::LlamaInfill => str_field(body, "input_prefix"),
            Endpoint::OpenAiChat | Endpoint::OllamaChat | Endpoint::AnthropicMessages => body
                .get("messages")
                .and_then(Value::as_array)
                .and_then(|messages| messages.last())
                .map(|message| content_text(message.get("content")))
                .unwrap_or_default(),
            Endpoint::OpenAiResponses => body
                .get("input")
                .and_then(Value::as_array)
                .and_then(|messages| messages.last())
                .map(|message| content_text(message.get("content")))
                .unwrap_or_default(),
            _ => match body.get("prompt") {
                Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect(),
                other => other.and_then(Value::as_str).unwrap_or_default().to_owned(),
            },
        }
    }

    /// A call that asks for (almost) no generation: the server is only to read the prompt
    /// into its cache. llama.cpp's `n_predict: 0`; Ollama's `num_predict: 1` and
    /// OpenAI-compatible `max_tokens: 1`, which no completion asks for.
    pub fn is_warm_up(&self) -> bool {
        let body = &self.body;
        body.get("n_predict").and_then(Value::as_u64) == Some(0)
            || body.pointer("/options/num_predict").and_then(Value::as_u64) == Some(1)
            || body.get("max_tokens").and_then(Value::as_u64) == Some(1)
    }

    /// For a fill-in-the-middle call, the text before the cursor as sent: llama.cpp's
    /// `input_prefix`, a native prompt, or the prefix part of a rendered FIM template.
    pub fn fim_prefix_text(&self) -> String {
        let prompt = self.prompt_text();
        let templates = [
            ("<|fim_prefix|>", "<|fim_suffix|>"),
            ("<fim_prefix>", "<fim_suffix>"),
            ("<PRE> ", " <SUF>"),
            ("<｜fim▁begin｜>", "<｜fim▁hole｜>"),
        ];
        for (open, close) in templates {
            if let (Some(start), Some(end)) = (prompt.rfind(open), prompt.rfind(close)) {
                if start + open.len() <= end {
                    return prompt[start + open.len()..end].to_owned();
                }
            }
        }
        if let Some(start) = prompt.rfind("[PREFIX] ") {
            return prompt[start + "[PREFIX] ".len()..].to_owned();
        }
        prompt
    }

    /// The text after the cursor for FIM endpoints (`suffix`, `input_suffix`).
    pub fn suffix_text(&self) -> Option<String> {
        let key = if self.endpoint == Endpoint::LlamaInfill {
            "input_suffix"
        } else {
            "suffix"
        };
        self.body
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Every piece of input text in the request (prompt, suffix, system, messages, extra
    /// context), for token estimates.
    pub fn all_input_text(&self) -> String {
        let body = &self.body;
        let mut out = String::new();
        for key in ["prompt", "suffix", "system", "input_prefix", "input_suffix"] {
            match body.get(key) {
                Some(Value::String(s)) => out.push_str(s),
                Some(other @ Value::Array(_)) => out.push_str(&content_text(Some(other))),
                _ => {}
            }
        }
        if let Some(messages) = body.get("messages").and_then(Value::as_array) {
            for message in messages {
                out.push_str(&content_text(message.get("content")));
            }
        }
        if let Some(extra) = body.get("input_extra").and_then(Value::as_array) {
            for chunk in extra {
                out.push_str(&str_field(chunk, "text"));
            }
        }
        out
    }
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Message content as text: a string, or an array of `{"type":"text","text":..}` parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match part {
                Value::String(s) => s.clone(),
                other => str_field(other, "text"),
            })
            .collect(),
        _ => String::new(),
    }
}
