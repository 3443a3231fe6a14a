//! Model providers: the only code that does network I/O. One shared, pooled HTTP client
//! (keep-alive, rustls, a timeout on every call); one module per wire format. A provider
//! turns a request into an answer or a [`ProviderError`] whose text is one clear line fit to
//! show the user. Dropping a call's future drops its connection, which stops the model.

mod llamacpp;
mod ollama;
mod openai;
mod probe;

pub use probe::model_listed;

use std::time::Duration;

use crate::config::{ModelConfig, Provider};
use crate::prompt::FimPrompt;

/// What a model answered, with the token counts when the provider reported them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelAnswer {
    pub text: String,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("no answer from {url} within {ms} ms")]
    Timeout { url: String, ms: u64 },
    #[error("{url} answered HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("unreadable answer from {url}: {detail}")]
    Malformed { url: String, detail: String },
    #[error("{0}")]
    Unsupported(String),
}

/// Parameters of one fill-in-the-middle call.
#[derive(Debug, Clone, Copy)]
pub struct FimCall<'a> {
    pub prompt: &'a FimPrompt,
    pub max_tokens: u32,
    /// How long the model may spend generating (llama.cpp's `t_max_predict_ms`).
    pub time_budget: Option<Duration>,
}

/// The shared HTTP client and the per-provider request code.
#[derive(Clone)]
pub struct Providers {
    http: reqwest::Client,
}

impl Default for Providers {
    fn default() -> Self {
        Providers::new()
    }
}

impl Providers {
    pub fn new() -> Providers {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("pilotfish/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Providers { http }
    }

    /// Asks `model` to fill in the middle.
    pub async fn fim(
        &self,
        model: &ModelConfig,
        call: FimCall<'_>,
    ) -> Result<ModelAnswer, ProviderError> {
        match model.provider {
            Provider::Openai => openai::fim(&self.http, model, call).await,
            Provider::Ollama => ollama::fim(&self.http, model, call).await,
            Provider::Llamacpp => llamacpp::fim(&self.http, model, call).await,
            Provider::Anthropic => Err(ProviderError::Unsupported(format!(
                "model {:?} is an Anthropic chat model; it cannot serve fill-in-the-middle completion",
                model.model
            ))),
        }
    }

    /// A cheap request that opens a pooled connection to the model server (and tells
    /// whether it is up), so the first completion does not pay for the TCP handshake.
    pub async fn warm(&self, model: &ModelConfig) -> Result<(), ProviderError> {
        let url = match model.provider {
            Provider::Openai => join(&model.url, "models"),
            Provider::Ollama => join(&model.url, "api/tags"),
            Provider::Llamacpp => join(&model.url, "health"),
            Provider::Anthropic => return Ok(()),
        };
        let request = self
            .http
            .get(&url)
            .timeout(Duration::from_millis(model.timeout_ms.min(5_000)));
        let response = with_key(request, model)
            .send()
            .await
            .map_err(|e| transport_error(&url, model, e))?;
        check_status(&url, response).await.map(drop)
    }
}

/// `base` + `/` + `path`, with exactly one slash between.
fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Adds the bearer key from the environment, when the model names one.
fn with_key(request: reqwest::RequestBuilder, model: &ModelConfig) -> reqwest::RequestBuilder {
    match model.api_key() {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
}

fn transport_error(url: &str, model: &ModelConfig, e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout {
            url: url.to_string(),
            ms: model.timeout_ms,
        }
    } else if e.is_connect() {
        ProviderError::Unreachable {
            url: url.to_string(),
            detail: one_line(&root_cause(&e)),
        }
    } else {
        ProviderError::Malformed {
            url: url.to_string(),
            detail: one_line(&root_cause(&e)),
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Passes a 2xx response through; turns anything else into a `Status` error carrying the
/// server's own message (OpenAI `{"error":{"message"}}`, Ollama `{"error"}`, or the text).
async fn check_status(
    url: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, ProviderError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let body = response.text().await.unwrap_or_default();
    Err(ProviderError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        retry_after,
        message: error_message(&body),
    })
}

/// The error text inside a provider's error body, on one line.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.as_str()
            .map(String::from)
            .or_else(|| e.get("message").and_then(|m| m.as_str()).map(String::from))
    });
    let text = message.unwrap_or_else(|| body.to_string());
    let text = one_line(&text);
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// Collapses whitespace to single spaces and caps the length, for messages to the user.
fn one_line(text: &str) -> String {
    let mut out: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Reads a whole body, mapping transport failures (including a reset mid-body).
async fn read_body(
    url: &str,
    model: &ModelConfig,
    response: reqwest::Response,
) -> Result<String, ProviderError> {
    response
        .text()
        .await
        .map_err(|e| transport_error(url, model, e))
}

/// The data payloads of a server-sent-events body (`data: …` lines), without `[DONE]`.
fn sse_data(body: &str) -> impl Iterator<Item = &str> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|data| !data.is_empty() && *data != "[DONE]")
}

/// Stop sequences for an API that accepts at most `max` of them: a line break first (it
/// ends single-line suggestions early, which saves the most time), then the rest in order.
fn stops_for_api(stop: &[String], max: usize) -> Vec<&str> {
    let mut out: Vec<&str> = stop
        .iter()
        .map(String::as_str)
        .filter(|s| *s == "\n")
        .collect();
    out.extend(stop.iter().map(String::as_str).filter(|s| *s != "\n"));
    out.truncate(max);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_one_clear_line() {
        assert_eq!(
            error_message(r#"{"error":{"message":"model not found","type":"x"}}"#),
            "model not found"
        );
        assert_eq!(
            error_message(r#"{"error":"model 'q' not found, try pulling it first"}"#),
            "model 'q' not found, try pulling it first"
        );
        assert_eq!(error_message("Bad\n  Gateway\n"), "Bad Gateway");
        assert_eq!(error_message(""), "(empty body)");
        assert!(error_message(&"é".repeat(400)).ends_with('…'));
    }

    #[test]
    fn stops_put_the_line_break_first_and_cap() {
        let stop: Vec<String> = ["<a>", "<b>", "<c>", "<d>", "\n"]
            .map(String::from)
            .to_vec();
        assert_eq!(stops_for_api(&stop, 4), vec!["\n", "<a>", "<b>", "<c>"]);
    }

    #[test]
    fn sse_payloads() {
        let body = "data: {\"a\":1}\n\n: comment\ndata: [DONE]\n";
        assert_eq!(sse_data(body).collect::<Vec<_>>(), vec!["{\"a\":1}"]);
        assert_eq!(
            join("http://h/v1/", "/completions"),
            "http://h/v1/completions"
        );
    }
}
