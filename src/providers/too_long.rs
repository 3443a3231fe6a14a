//! A refusal that says the prompt is longer than the model's context, and what it says of
//! the two sizes. Each server words it its own way: llama-server (`exceed_context_size_error`
//! with `n_ctx` and `n_prompt_tokens`), OpenAI (`context_length_exceeded`), vLLM, Anthropic
//! ("prompt is too long"), Mistral. Pure: a status and a body in, sizes out.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// What a too-long refusal says, in the server's own tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    /// The model's context as the server runs it.
    pub context: Option<u32>,
    /// The prompt it refused.
    pub prompt: Option<u32>,
}

/// Kept free below what a server says it takes, for what the estimate misjudges.
const MARGIN: f64 = 0.9;

impl Sizes {
    /// The tokens of a prompt, in this crate's estimate, that the server takes beside an
    /// answer of `answer_tokens`, from these sizes said of a prompt estimated at `estimated`:
    /// what its context leaves, scaled by how it counted the refused prompt, less a margin,
    /// and never more than nine tenths of the refused prompt. None when it did not say its
    /// context.
    pub fn prompt_room(self, estimated: u32, answer_tokens: u32) -> Option<u32> {
        let context = self.context?;
        let estimated = f64::from(estimated);
        let estimate_per_server_token = match self.prompt {
            Some(prompt) if prompt > 0 => estimated / f64::from(prompt),
            _ => 1.0,
        };
        let room = f64::from(context.saturating_sub(answer_tokens));
        Some((room * estimate_per_server_token * MARGIN).min(estimated * MARGIN) as u32)
    }
}

/// The context, as each server's message words it.
static CONTEXT: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // OpenAI, vLLM: "This model's maximum context length is 4096 tokens."
        r"(?i)maximum context length is (\d+)",
        // llama-server: "exceeds the available context size (4096 tokens)"
        r"(?i)context size \((\d+) tokens\)",
        // Anthropic: "prompt is too long: 208310 tokens > 200000 maximum"
        r"(?i)tokens > (\d+) maximum",
        // Mistral: "too large for model with 32768 maximum context length"
        r"(?i)model with (\d+) maximum context length",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("context-size pattern"))
    .collect()
});

/// The refused prompt, likewise.
static PROMPT: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // OpenAI: "However, your messages resulted in 130000 tokens."
        r"(?i)resulted in (\d+) tokens",
        // vLLM: "However, you requested 5000 tokens (4000 in the messages, 1000 in the completion)."
        r"(?i)\((\d+) in the messages",
        // Anthropic
        r"(?i)prompt is too long: (\d+) tokens",
        // Mistral: "Prompt contains 40000 tokens"
        r"(?i)prompt contains (\d+) tokens",
        // llama-server: "request (9627 tokens) exceeds"
        r"(?i)request \((\d+) tokens\)",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("prompt-size pattern"))
    .collect()
});

/// Words a too-long refusal uses, and no other 400 does.
const SAYS_TOO_LONG: [&str; 6] = [
    "context length",
    "context size",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
];

/// The sizes a refusal (`status`, its JSON `body`, its `message` as read) says, if it says
/// the prompt is longer than the model's context; None for any other failure.
pub fn sizes(status: u16, body: Option<&Value>, message: &str) -> Option<Sizes> {
    if !matches!(status, 400 | 413 | 422) {
        return None;
    }
    let error = body.and_then(|b| b.get("error"));
    let field = |name: &str| error.and_then(|e| e.get(name));
    let typed = field("type").and_then(Value::as_str) == Some("exceed_context_size_error")
        || field("code").and_then(Value::as_str) == Some("context_length_exceeded");
    let lower = message.to_ascii_lowercase();
    if !typed && !SAYS_TOO_LONG.iter().any(|words| lower.contains(words)) {
        return None;
    }
    let number = |name: &str| field(name).and_then(Value::as_u64).map(saturate);
    let said = |patterns: &[Regex]| {
        patterns.iter().find_map(|p| {
            p.captures(message)
                .and_then(|c| c[1].parse::<u64>().ok())
                .map(saturate)
        })
    };
    Some(Sizes {
        context: number("n_ctx").or_else(|| said(&CONTEXT)),
        prompt: number("n_prompt_tokens").or_else(|| said(&PROMPT)),
    })
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Each server's refusal as it sends it, and an ordinary 400 or 500 beside them.
    #[test]
    fn what_each_server_says() {
        let sized = |context, prompt| {
            Some(Sizes {
                context: Some(context),
                prompt: Some(prompt),
            })
        };
        let cases = [
            (
                "llama-server (b11669)",
                400,
                json!({"error": {"code": 400, "message": "request (9627 tokens) exceeds the available context size (4096 tokens), try increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 9627, "n_ctx": 4096}}),
                sized(4096, 9627),
            ),
            (
                "llama-server, older: no sizes in fields",
                400,
                json!({"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it", "type": "exceed_context_size_error"}}),
                Some(Sizes::default()),
            ),
            (
                "OpenAI",
                400,
                json!({"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens. Please reduce the length of the messages.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
                sized(128_000, 130_412),
            ),
            (
                "vLLM",
                400,
                json!({"object": "error", "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.", "type": "BadRequestError", "code": 400}),
                sized(4096, 4000),
            ),
            (
                "Anthropic",
                400,
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"}}),
                sized(200_000, 208_310),
            ),
            (
                "Mistral",
                400,
                json!({"object": "error", "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length", "type": "invalid_request_error"}),
                sized(32_768, 40_000),
            ),
            (
                "another 400",
                400,
                json!({"error": {"message": "Unsupported parameter: 'max_tokens'", "type": "invalid_request_error"}}),
                None,
            ),
            (
                "a 500 that names the context",
                500,
                json!({"error": {"message": "context size exceeded while decoding"}}),
                None,
            ),
        ];
        for (server, status, body, want) in cases {
            let message = super::super::error_message(&body.to_string());
            assert_eq!(sizes(status, Some(&body), &message), want, "{server}");
        }
    }
}
