//! What the four wire formats share (token estimates, splitting an answer into stream pieces,
//! SSE and NDJSON framing) and the switch from an endpoint or dialect to its wire module. It
//! must not know HTTP or faults: it only renders bodies and events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::behaviour::Context;
use super::request::{Dialect, Endpoint, RecordedRequest};
use super::{anthropic, llamacpp, ollama, openai};

/// What an answer's last event reports: the token counts of its usage fields, and why
/// generation stopped.
#[derive(Clone, Copy)]
pub(super) struct Usage {
    pub input: u64,
    pub output: u64,
    pub finish: Finish,
    /// How long the server took to read the input ([`super::Behaviour::reads_per_token`]).
    pub reading: Duration,
}

impl Usage {
    /// Estimated from the request's input text and the answer text.
    pub(super) fn estimate(request: &RecordedRequest, answer: &str, finish: Finish) -> Self {
        Usage {
            input: estimate_tokens(&request.all_input_text()),
            output: estimate_tokens(answer),
            finish,
            reading: Duration::ZERO,
        }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Finish {
    /// The model ended its answer (OpenAI `stop`, Anthropic `end_turn`, Ollama `stop`,
    /// llama.cpp `eos`).
    Stop,
    /// The request's output-token limit ended it (OpenAI and Ollama `length`, Anthropic
    /// `max_tokens`, llama.cpp `limit`).
    Length,
}

/// The answer as a server bound by the request's output-token limit (`max_tokens`,
/// `num_predict`, `n_predict`) gives it after `reasoning` tokens of hidden thinking: cut at
/// what the thinking left of the limit (four characters a token, as the usage estimate
/// counts), and why it stopped.
pub(super) fn within_limit(
    request: &RecordedRequest,
    text: String,
    reasoning: u64,
) -> (String, Finish) {
    let Some(limit) = request.max_output_tokens() else {
        return (text, Finish::Stop);
    };
    let Some(limit) = limit.checked_sub(reasoning).filter(|&left| left > 0) else {
        return (String::new(), Finish::Length);
    };
    let max_chars = usize::try_from(limit.saturating_mul(4)).unwrap_or(usize::MAX);
    if text.chars().count() <= max_chars {
        return (text, Finish::Stop);
    }
    (text.chars().take(max_chars).collect(), Finish::Length)
}

/// How a server whose model has `context` refuses `request`, when its input is longer: as
/// llama-server on the OpenAI-compatible and llama.cpp paths (its body as b11669 sends it),
/// as Anthropic on its own; None when the input fits, and on Ollama's paths (Ollama cuts a
/// prompt to its context unasked).
pub(super) fn context_refusal(
    dialect: Dialect,
    request: &RecordedRequest,
    context: Context,
) -> Option<Value> {
    let chars = request.all_input_text().chars().count() as u64;
    let tokens = chars.div_ceil(context.chars_per_token.max(1));
    if tokens < context.tokens {
        return None;
    }
    let n_ctx = context.tokens;
    match dialect {
        Dialect::Ollama => None,
        Dialect::Anthropic => Some(json!({
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": format!("prompt is too long: {tokens} tokens > {n_ctx} maximum"),
            },
        })),
        Dialect::OpenAi | Dialect::LlamaCpp => Some(json!({
            "error": {
                "code": 400,
                "message": format!("request ({tokens} tokens) exceeds the available context size ({n_ctx} tokens), try increasing it"),
                "type": "exceed_context_size_error",
                "n_prompt_tokens": tokens,
                "n_ctx": n_ctx,
            },
        })),
    }
}

/// About four characters a token, at least one.
fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// Splits `text` into at most `n` non-empty pieces on char boundaries (one empty piece for "").
pub(super) fn split_pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(n.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The model the request named, or `test-model`.
pub(super) fn request_model(request: &RecordedRequest) -> String {
    request.model().unwrap_or("test-model").to_owned()
}

/// A streamed answer: events before the content, one event per content piece, events after.
/// Each event is the exact text of one SSE event or NDJSON line.
pub(super) struct StreamEvents {
    pub content_type: &'static str,
    pub preamble: Vec<String>,
    pub content: Vec<String>,
    pub epilogue: Vec<String>,
}

pub(super) fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

pub(super) fn sse_event(name: &str, value: &Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

pub(super) fn ndjson(value: &Value) -> String {
    format!("{value}\n")
}

/// The whole (non-streamed) answer in the endpoint's format.
pub(super) fn full_body(request: &RecordedRequest, text: &str, usage: Usage) -> Value {
    match request.endpoint.dialect() {
        Dialect::OpenAi => openai::full_body(request, text, usage),
        Dialect::Ollama => ollama::full_body(request, text, usage),
        Dialect::LlamaCpp => llamacpp::full_body(request, text, usage),
        Dialect::Anthropic => anthropic::full_body(request, text, usage),
    }
}

/// The streamed answer in the endpoint's format, `pieces` being its content.
pub(super) fn stream_events(
    request: &RecordedRequest,
    pieces: &[String],
    usage: Usage,
) -> StreamEvents {
    match request.endpoint.dialect() {
        Dialect::OpenAi => openai::stream_events(request, pieces, usage),
        Dialect::Ollama => ollama::stream_events(request, pieces, usage),
        Dialect::LlamaCpp => llamacpp::stream_events(request, pieces, usage),
        Dialect::Anthropic => anthropic::stream_events(request, pieces, usage),
    }
}

/// The message of an error body when the test scripted none.
pub(super) fn default_message(status: u16) -> &'static str {
    match status {
        400 => "invalid request",
        401 => "invalid api key",
        404 => "model not found",
        429 => "rate limit exceeded",
        503 => "service unavailable",
        529 => "Overloaded",
        _ => "internal server error",
    }
}

/// An error body in the provider's format.
pub(super) fn error_body(dialect: Dialect, status: u16, message: &str) -> Value {
    match dialect {
        Dialect::OpenAi => openai::error_body(status, message),
        Dialect::Ollama => ollama::error_body(message),
        Dialect::LlamaCpp => llamacpp::error_body(status, message),
        Dialect::Anthropic => anthropic::error_body(status, message),
    }
}

/// The in-band error a provider sends when generation fails after the stream began.
pub(super) fn stream_error_event(dialect: Dialect) -> String {
    match dialect {
        Dialect::OpenAi => openai::stream_error_event(),
        Dialect::Ollama => ollama::stream_error_event(),
        Dialect::LlamaCpp => llamacpp::stream_error_event(),
        Dialect::Anthropic => anthropic::stream_error_event(),
    }
}

/// The body of a healthy probe of `endpoint`, or `None` for Ollama's plain-text `GET /`.
pub(super) fn probe_body(endpoint: Endpoint, models: &[String]) -> Option<Value> {
    match endpoint {
        Endpoint::LlamaHealth => Some(llamacpp::health()),
        Endpoint::OllamaRoot => None,
        Endpoint::OllamaTags => Some(ollama::tags(models)),
        _ => Some(openai::models_list(models)),
    }
}
