//! Model providers: the only code that does network I/O. One shared, pooled HTTP client
//! (keep-alive, rustls, a timeout on every call); one module per wire format. A provider
//! turns a request into an answer or a [`ProviderError`] whose text is one clear line fit to
//! show the user. Dropping a call's future drops its connection, which stops the model.
//!
//! Two kinds of call: fill-in-the-middle ([`Providers::fim`], one JSON answer) and chat
//! ([`Providers::chat`], streamed: SSE or NDJSON decoded incrementally in [`stream`], each
//! text piece handed to the caller as it arrives). API keys come from the environment at call
//! time and go only into request headers: never into a log line or an error message.

mod anthropic;
mod llamacpp;
mod ollama;
mod openai;
mod probe;

pub use probe::model_listed;
mod client;
mod stream;
use stream::{Clock, Quiet};

use client::{http_client, root_cause, send, transport_error};
pub mod too_long;

/// The fuzz check of the chat stream decoders (`crate::fuzzing`).
#[cfg(any(fuzzing, test))]
pub(crate) mod fuzz;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{ModelConfig, Provider};
use crate::prompt::FimPrompt;
use crate::sync::lock;

/// The most of a model's answer that is read, whole or streamed (bytes on the wire). An
/// answer is bounded by `max_output_tokens`: kilobytes of text, a few hundred KB with a
/// stream's framing. Past this the server is misbehaving (an answer that never ends, a
/// runaway proxy), and reading on would only grow memory: the call fails instead.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;
/// The most of an error body that is read: only its first line is shown to the user.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// Why an answer over [`MAX_ANSWER_BYTES`] was dropped.
fn too_large() -> String {
    format!(
        "the answer is larger than {} MB (the limit)",
        MAX_ANSWER_BYTES >> 20
    )
}

/// What a model answered, with the token counts when the provider reported them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelAnswer {
    pub text: String,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// Time from the start of the call to the first piece of text (streamed calls).
    pub first_token: Option<Duration>,
    /// Set when the text ends before the model finished it: it may stop mid-sentence.
    pub cut: Option<Cut>,
    /// What the server said of reading the prompt, when it says.
    pub prompt_read: Option<PromptRead>,
}

/// What a model server said of reading a prompt: the tokens it read (not those its cache
/// held) and how long that took — llama-server's `timings` (`prompt_n`, `prompt_ms`),
/// Ollama's `prompt_eval_count` and `prompt_eval_duration`. Other servers do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptRead {
    pub tokens: u64,
    pub took: Duration,
}

impl PromptRead {
    /// Read from an answer's (last) object, where the server put it.
    fn of(obj: &serde_json::Value) -> Option<PromptRead> {
        if let Some(timings) = obj.get("timings") {
            let tokens = timings.get("prompt_n")?.as_u64()?;
            let ms = timings.get("prompt_ms")?.as_f64()?;
            return (ms.is_finite() && ms >= 0.0).then(|| PromptRead {
                tokens,
                took: Duration::from_secs_f64(ms / 1_000.0),
            });
        }
        let tokens = obj.get("prompt_eval_count")?.as_u64()?;
        let ns = obj.get("prompt_eval_duration")?.as_u64()?;
        Some(PromptRead {
            tokens,
            took: Duration::from_nanos(ns),
        })
    }
}

/// Why an answer's text ends before the model finished it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The provider stopped at the output-token limit (OpenAI `finish_reason: "length"`,
    /// Anthropic `stop_reason: "max_tokens"`, Ollama `done_reason: "length"`, llama.cpp
    /// `stop_type: "limit"` or `truncated`).
    TokenLimit,
    /// The model was still writing when the answer's time ran out, `ms` after the call
    /// began ([`answer_limit`]): the text is what had arrived.
    Timeout { ms: u64 },
    /// The model server sent nothing for `ms` after some text (a stream that stalled): the
    /// text is what had arrived.
    Stalled { ms: u64 },
}

/// The time a model is given to write each token it was asked for, once it has begun: 4
/// tokens a second, slower than any model a user waits on (the 1.5B writes 20 a second on
/// two CPU cores, a 7B some 3–10 on a laptop's).
pub const WRITING_TIME_PER_TOKEN: Duration = Duration::from_millis(250);

/// The longest a streamed chat answer of at most `max_tokens` may take: `begin`, the time
/// the model has to send its first word (a model that has sent none by then has timed out:
/// [`ChatCall::begin_within`], else its `timeout_ms`), then [`WRITING_TIME_PER_TOKEN`] for
/// each token. A model that writes is not cut by `timeout_ms` alone: on a CPU an
/// explanation takes longer than the wait for its first word.
pub fn answer_limit(begin: Duration, max_tokens: u32) -> Duration {
    begin + WRITING_TIME_PER_TOKEN * max_tokens
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// TLS failed: no root this client trusts signed the server's certificate (a company's
    /// own CA, or its TLS-inspecting proxy's).
    #[error("cannot trust {url}: {detail}")]
    Untrusted { url: String, detail: String },
    /// The server refused the prompt as longer than the model's context, saying what it
    /// could of both sizes: the request's fault, not the server's.
    #[error("{url} takes no prompt this long: {message}")]
    TooLong {
        url: String,
        message: String,
        sizes: too_long::Sizes,
    },
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
    /// The stream broke off (reset, stall, garbage or an error event) after the response
    /// began; `partial_chars` characters of text had already been passed on.
    #[error("the answer from {url} broke off after {partial_chars} characters: {detail}")]
    Stream {
        url: String,
        detail: String,
        partial_chars: usize,
    },
    /// The model needs an API key and its environment variable is unset or empty. No request
    /// was sent.
    #[error("{}", missing_key_message(model, env.as_deref()))]
    MissingKey { model: String, env: Option<String> },
    #[error("{0}")]
    Unsupported(String),
}

impl ProviderError {
    /// The error with the model's API key masked wherever it occurs: a server may echo the
    /// key it was sent in its error text (the user sees it, the log keeps it).
    fn without_key(self, model: &ModelConfig) -> ProviderError {
        let Some(key) = model.api_key().filter(|k| !k.is_empty()) else {
            return self;
        };
        let scrub = |text: String| text.replace(&key, crate::redact::MASK);
        match self {
            ProviderError::Unreachable { url, detail } => ProviderError::Unreachable {
                url,
                detail: scrub(detail),
            },
            ProviderError::Untrusted { url, detail } => ProviderError::Untrusted {
                url,
                detail: scrub(detail),
            },
            ProviderError::TooLong {
                url,
                message,
                sizes,
            } => ProviderError::TooLong {
                url,
                message: scrub(message),
                sizes,
            },
            ProviderError::Status {
                url,
                status,
                retry_after,
                message,
            } => ProviderError::Status {
                url,
                status,
                retry_after,
                message: scrub(message),
            },
            ProviderError::Malformed { url, detail } => ProviderError::Malformed {
                url,
                detail: scrub(detail),
            },
            ProviderError::Stream {
                url,
                detail,
                partial_chars,
            } => ProviderError::Stream {
                url,
                detail: scrub(detail),
                partial_chars,
            },
            other @ (ProviderError::Timeout { .. }
            | ProviderError::MissingKey { .. }
            | ProviderError::Unsupported(_)) => other,
        }
    }
}

fn missing_key_message(model: &str, env: Option<&str>) -> String {
    match env {
        Some(var) => {
            format!("model {model:?} needs an API key: set the environment variable {var}")
        }
        None => format!(
            "model {model:?} needs an API key: name its environment variable with api_key_env"
        ),
    }
}

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    /// The role's name in every supported API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Parameters of one chat call. An empty `system` sends no system prompt.
#[derive(Debug, Clone, Copy)]
pub struct ChatCall<'a> {
    pub system: &'a str,
    pub messages: &'a [ChatMessage],
    pub max_tokens: u32,
    pub temperature: f64,
    pub thinking: Thinking,
    /// The time the model has to send its first word, if not its `timeout_ms` (never less):
    /// an action gives a server it has measured the time the prompt takes it to read.
    pub begin_within: Option<Duration>,
}

impl ChatCall<'_> {
    /// The time `model` has to send this call's first word.
    pub fn begin_within(&self, model: &ModelConfig) -> Duration {
        let timeout = Duration::from_millis(model.timeout_ms);
        self.begin_within.map_or(timeout, |wait| wait.max(timeout))
    }
}

/// Whether a model that can think before it answers (Qwen3, DeepSeek-R1…) is to, where its
/// API lets a request say so (Ollama's `think`, llama-server's
/// `chat_template_kwargs.enable_thinking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thinking {
    /// As the model and its server do by default (Ollama thinks, apart from the answer).
    ModelDefault,
    /// Not at all: a completion's few dozen tokens are for the suggestion.
    Off,
}

/// Parameters of one fill-in-the-middle call.
#[derive(Debug, Clone, Copy)]
pub struct FimCall<'a> {
    pub prompt: &'a FimPrompt,
    /// 0 asks the server only to read the prompt into its cache (a warm-up): llama.cpp's
    /// `n_predict: 0`; OpenAI-compatible and Ollama servers get 1 token (some refuse 0).
    pub max_tokens: u32,
    /// How long the model may spend generating (llama.cpp's `t_max_predict_ms`).
    pub time_budget: Option<Duration>,
    /// Context from other files, for the providers with a place for it (llama.cpp's
    /// `input_extra`); the others leave it out.
    pub other_files: &'a [OtherFile],
}

pub use crate::prompt::OtherFile;

/// Where `model` fills in the middle, whole or streamed; None for an Anthropic model, which
/// cannot.
fn fim_url(model: &ModelConfig) -> Option<String> {
    let path = match model.provider {
        Provider::Openai => openai::fim_path(model),
        Provider::Llamacpp => "infill",
        Provider::Ollama => "api/generate",
        Provider::Anthropic => return None,
    };
    Some(join(&model.url, path))
}

/// The shared HTTP client and the per-provider request code. What calls cost is counted by
/// their callers, in the usage log (`crate::telemetry`).
#[derive(Clone)]
pub struct Providers {
    http: reqwest::Client,
    /// How each OpenAI-compatible chat model (by url and model name) wants its limits said,
    /// once a refusal taught it ([`openai::ChatParams`]).
    chat_params: Arc<Mutex<HashMap<(String, String), openai::ChatParams>>>,
}

impl Default for Providers {
    fn default() -> Self {
        Providers::new()
    }
}

impl Providers {
    pub fn new() -> Providers {
        let http = http_client(true).unwrap_or_else(|e| {
            // A store (or SSL_CERT_FILE) holding certificates of which rustls can read none.
            tracing::warn!(
                "not trusting the system's certificate store: {}",
                one_line(&root_cause(&e))
            );
            http_client(false).expect("the HTTP client builds with static settings")
        });
        Providers {
            http,
            chat_params: Arc::default(),
        }
    }

    /// Asks `model` to fill in the middle.
    pub async fn fim(
        &self,
        model: &ModelConfig,
        call: FimCall<'_>,
    ) -> Result<ModelAnswer, ProviderError> {
        let Some(url) = fim_url(model) else {
            return Err(ProviderError::Unsupported(format!(
                "model {:?} is an Anthropic chat model; it cannot serve fill-in-the-middle completion",
                model.model
            )));
        };
        match model.provider {
            Provider::Openai => openai::fim(&self.http, model, &url, call).await,
            Provider::Ollama => ollama::fim(&self.http, model, &url, call).await,
            Provider::Llamacpp | Provider::Anthropic => {
                llamacpp::fim(&self.http, model, &url, call).await
            }
        }
        .map_err(|e| e.without_key(model))
    }

    /// Asks `model` to fill in the middle, streamed: `on_text` gets each piece of text as it
    /// arrives (the caller may show a first line before the rest; dropping the future stops
    /// the model); the returned answer holds the whole text and the time to its first token.
    /// Failures as for [`Providers::chat`].
    pub async fn fim_streamed(
        &self,
        model: &ModelConfig,
        call: FimCall<'_>,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ModelAnswer, ProviderError> {
        let started = Instant::now();
        let Some(url) = fim_url(model) else {
            return self.fim(model, call).await;
        };
        let work = async {
            let (request, mut wire) = match model.provider {
                Provider::Openai => openai::fim_streamed(&self.http, model, &url, &call),
                Provider::Ollama => ollama::fim_streamed(&self.http, model, &url, &call),
                Provider::Llamacpp | Provider::Anthropic => {
                    llamacpp::fim_streamed(&self.http, model, &url, &call)?
                }
            };
            let clock = Clock {
                started,
                begin_by: started + Duration::from_millis(model.timeout_ms),
                quiet: Quiet::Fails,
            };
            stream_chat(&url, model, request, wire.as_mut(), clock, on_text).await
        };
        let limit = Duration::from_millis(model.timeout_ms);
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout {
                url,
                ms: model.timeout_ms,
            }),
        }
        .map_err(|e| e.without_key(model))
    }

    /// Streams a chat answer from `model`, calling `on_text` with each piece of text as it
    /// arrives; the returned answer holds the whole text. A model that sends no text within
    /// its `timeout_ms` has timed out ([`ProviderError::Timeout`]); one that has begun writes
    /// on for up to [`answer_limit`], and when that runs out, or the stream goes quiet for
    /// [`stream::idle_limit`], the text that arrived is the answer, marked [`Cut::Timeout`] or
    /// [`Cut::Stalled`] (a slow local model still explains, in part). Dropping the future
    /// drops the connection, which stops the model.
    ///
    /// After some text has been passed on, a failure is a [`ProviderError::Stream`] (or a
    /// `Status` for an in-band error that names one, like Anthropic's `overloaded_error` as
    /// 529): the caller discards the partial text and may try the next model.
    pub async fn chat(
        &self,
        model: &ModelConfig,
        call: ChatCall<'_>,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ModelAnswer, ProviderError> {
        let started = Instant::now();
        let begin = call.begin_within(model);
        let url = match model.provider {
            Provider::Openai => join(&model.url, "chat/completions"),
            // llama-server serves the OpenAI chat API beside its own /infill.
            Provider::Llamacpp => join(&model.url, "v1/chat/completions"),
            Provider::Ollama => join(&model.url, "api/chat"),
            Provider::Anthropic => join(&model.url, "v1/messages"),
        };
        // What arrived, kept here so that a call whose time runs out still has it.
        let mut arrived = String::new();
        let mut first_token = None;
        let mut keep = |piece: &str| {
            if first_token.is_none() && !piece.is_empty() {
                first_token = Some(started.elapsed());
            }
            arrived.push_str(piece);
            on_text(piece);
        };
        let work = async {
            let remembered = (url.clone(), model.model.clone());
            loop {
                let params = lock(&self.chat_params)
                    .get(&remembered)
                    .copied()
                    .unwrap_or_default();
                let url = match (model.provider, params.responses_api) {
                    (Provider::Openai, true) => join(&model.url, "responses"),
                    (Provider::Llamacpp, true) => join(&model.url, "v1/responses"),
                    _ => url.clone(),
                };
                let (request, mut wire) = match model.provider {
                    Provider::Openai | Provider::Llamacpp if params.responses_api => {
                        openai::responses(&self.http, model, &url, (&call, params))
                    }
                    Provider::Openai | Provider::Llamacpp => {
                        openai::chat(&self.http, model, &url, (&call, params))
                    }
                    Provider::Ollama => ollama::chat(&self.http, model, &url, &call),
                    Provider::Anthropic => anthropic::chat(&self.http, model, &url, &call)?,
                };
                let clock = Clock {
                    started,
                    begin_by: started + begin,
                    quiet: Quiet::EndsTheAnswer,
                };
                let answer =
                    stream_chat(&url, model, request, wire.as_mut(), clock, &mut keep).await;
                let learnt = match &answer {
                    Err(e) if matches!(model.provider, Provider::Openai | Provider::Llamacpp) => {
                        params.learn(e)
                    }
                    _ => None,
                };
                let Some(learnt) = learnt else {
                    return answer;
                };
                tracing::info!(model = %model.model, url, ?learnt, "the model refused the request as sent: sending it as the refusal asks");
                lock(&self.chat_params).insert(remembered.clone(), learnt);
            }
        };
        let limit = answer_limit(begin, call.max_tokens);
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) if !arrived.is_empty() => Ok(ModelAnswer {
                text: arrived,
                first_token,
                cut: Some(Cut::Timeout {
                    ms: limit.as_millis() as u64,
                }),
                ..ModelAnswer::default()
            }),
            Err(_) => Err(ProviderError::Timeout {
                url,
                ms: begin.as_millis() as u64,
            }),
        }
        .map_err(|e| e.without_key(model))
    }

    /// A cheap request that opens a pooled connection to the model server (and tells
    /// whether it is up), so the first completion does not pay for the TCP handshake: an
    /// OpenAI-compatible server's model list (free, for a cloud API too).
    /// Anthropic has no unauthenticated probe: its free, authenticated `GET /v1/models`
    /// opens the TLS connection and also proves the key works; without a key it fails at
    /// once with [`ProviderError::MissingKey`], sending nothing.
    pub async fn warm(&self, model: &ModelConfig) -> Result<(), ProviderError> {
        let timeout = Duration::from_millis(model.timeout_ms.min(5_000));
        let (url, request) = match model.provider {
            Provider::Openai => {
                let url = join(&model.url, "models");
                let request = with_key(self.http.get(&url), model);
                (url, request)
            }
            Provider::Ollama => {
                let url = join(&model.url, "api/tags");
                let request = with_key(self.http.get(&url), model);
                (url, request)
            }
            Provider::Llamacpp => {
                let url = join(&model.url, "health");
                let request = with_key(self.http.get(&url), model);
                (url, request)
            }
            Provider::Anthropic => {
                let url = join(&model.url, "v1/models");
                let request =
                    anthropic::with_headers(self.http.get(&url), model)?.query(&[("limit", "1")]);
                (url, request)
            }
        };
        let response = send(request.timeout(timeout))
            .await
            .map_err(|e| transport_error(&url, model, e))?;
        match check_status(&url, response).await {
            Err(e) if probe::lists_no_models(model, &e) => Ok(()),
            answered => answered.map(drop).map_err(|e| e.without_key(model)),
        }
    }
}

/// POSTs `body` as JSON (with the model's key and timeout) and returns the answer's text;
/// transport failures and non-2xx answers become [`ProviderError`]s.
async fn post_json(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    body: &serde_json::Value,
) -> Result<String, ProviderError> {
    let request = http
        .post(url)
        .timeout(Duration::from_millis(model.timeout_ms))
        .json(body);
    let response = send(with_key(request, model))
        .await
        .map_err(|e| transport_error(url, model, e))?;
    let response = check_status(url, response).await?;
    read_body(url, model, response).await
}

/// Sends a chat request and reads its streamed answer through `wire` (`clock` as for
/// [`stream::read_chat`]). The answer's head, like its first word, comes by
/// `clock.begin_by`.
async fn stream_chat(
    url: &str,
    model: &ModelConfig,
    request: reqwest::RequestBuilder,
    wire: &mut dyn stream::ChatWire,
    clock: Clock,
    on_text: &mut (dyn FnMut(&str) + Send),
) -> Result<ModelAnswer, ProviderError> {
    let begin_by = tokio::time::Instant::from_std(clock.begin_by);
    let response = tokio::time::timeout_at(begin_by, send(request))
        .await
        .map_err(|_| clock.timed_out(url))?
        .map_err(|e| transport_error(url, model, e))?;
    let response = tokio::time::timeout_at(begin_by, check_status(url, response))
        .await
        .map_err(|_| clock.timed_out(url))??;
    stream::read_chat(url, model, response, wire, clock, on_text).await
}

/// The conversation as `{role, content}` objects; the system prompt first when
/// `with_system` (OpenAI, Ollama) and it is not empty.
fn chat_messages(call: &ChatCall<'_>, with_system: bool) -> Vec<serde_json::Value> {
    let system = (with_system && !call.system.is_empty())
        .then(|| serde_json::json!({ "role": "system", "content": call.system }));
    system
        .into_iter()
        .chain(
            call.messages
                .iter()
                .map(|m| serde_json::json!({ "role": m.role.as_str(), "content": m.content })),
        )
        .collect()
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
    let retry_after = retry_after(response.headers(), std::time::SystemTime::now());
    let body = read_capped(response, MAX_ERROR_BODY_BYTES)
        .await
        .map(|(body, _)| body)
        .unwrap_or_default();
    let message = error_message(&body);
    let parsed = serde_json::from_str(&body).ok();
    if let Some(sizes) = too_long::sizes(status.as_u16(), parsed.as_ref(), &message) {
        return Err(ProviderError::TooLong {
            url: url.to_string(),
            message,
            sizes,
        });
    }
    Err(ProviderError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        retry_after,
        message,
    })
}

/// How long the server asks to be left alone, read as the OpenAI and Anthropic SDKs read
/// it: `retry-after-ms` (Azure OpenAI sends it, in milliseconds), else `Retry-After` in
/// seconds or as an HTTP date (RFC 9110 §10.2.3; a date already past is no wait).
fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let span = |number: &str, unit: f64| {
        number
            .parse::<f64>()
            .ok()
            .map(|n| n * unit)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| span(v, 0.001)) {
        return Some(ms);
    }
    let value = header(reqwest::header::RETRY_AFTER.as_str())?;
    span(value, 1.0).or_else(|| {
        let at = httpdate::parse_http_date(value).ok()?;
        Some(at.duration_since(now).unwrap_or_default())
    })
}

/// The error text inside a provider's error body (OpenAI and Anthropic
/// `{"error":{"message"}}`, Ollama `{"error"}`), or the body itself, on one line.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.get("error").map(error_text).or_else(|| {
            // Mistral's and other FastAPI servers': a top-level `message` (a string, or an
            // object of validation `detail`s) or `detail`.
            let message = v.get("message");
            message
                .and_then(serde_json::Value::as_str)
                .map(String::from)
                .or_else(|| message.and_then(|m| m.get("detail")).and_then(detail_text))
                .or_else(|| v.get("detail").and_then(detail_text))
        })
    });
    let text = message.unwrap_or_else(|| body.to_string());
    let text = one_line(&text);
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// `input_tokens` and `output_tokens` of a `usage` object (Anthropic's, OpenAI's Responses
/// API's).
fn input_output_tokens(usage: Option<&serde_json::Value>) -> (Option<u64>, Option<u64>) {
    let count = |name: &str| {
        usage
            .and_then(|u| u.get(name))
            .and_then(serde_json::Value::as_u64)
    };
    (count("input_tokens"), count("output_tokens"))
}

/// The text of a JSON `error` value: a string, or an object's `message`, else its JSON.
fn error_text(error: &serde_json::Value) -> String {
    error
        .as_str()
        .or_else(|| error.get("message").and_then(serde_json::Value::as_str))
        .map(String::from)
        .unwrap_or_else(|| error.to_string())
}

/// A FastAPI `detail`: a string, or validation errors as `body.field: what is wrong`.
fn detail_text(detail: &serde_json::Value) -> Option<String> {
    if let Some(text) = detail.as_str() {
        return Some(text.to_string());
    }
    let errors: Vec<String> = detail
        .as_array()?
        .iter()
        .filter_map(|e| {
            let msg = e.get("msg")?.as_str()?;
            let at: Vec<String> = e
                .get("loc")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .map(|part| part.as_str().map_or_else(|| part.to_string(), String::from))
                .collect();
            Some(if at.is_empty() {
                msg.to_string()
            } else {
                format!("{}: {msg}", at.join("."))
            })
        })
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
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

/// Reads a whole body, mapping transport failures (including a reset mid-body); a body
/// larger than [`MAX_ANSWER_BYTES`] is `Malformed`, and is not read past the limit.
async fn read_body(
    url: &str,
    model: &ModelConfig,
    response: reqwest::Response,
) -> Result<String, ProviderError> {
    let malformed = |detail| ProviderError::Malformed {
        url: url.to_string(),
        detail,
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(malformed(too_large()));
    }
    match read_capped(response, MAX_ANSWER_BYTES).await {
        Ok((body, false)) => Ok(body),
        Ok((_, true)) => Err(malformed(too_large())),
        Err(e) => Err(transport_error(url, model, e)),
    }
}

/// Reads at most `limit` bytes of a body as text (invalid UTF-8 replaced); the flag says
/// whether the body went on past the limit (what was read then stops at it).
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(String, bool), reqwest::Error> {
    let mut body = Vec::new();
    let mut over = false;
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            over = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok((text, over))
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
    fn what_a_server_says_of_reading_the_prompt() {
        let read = |json: &str| PromptRead::of(&serde_json::from_str(json).unwrap());
        let ms = |tokens, ms| {
            Some(PromptRead {
                tokens,
                took: Duration::from_millis(ms),
            })
        };
        // llama-server: the tokens it read (not those its cache held) and their time.
        assert_eq!(
            read(
                r#"{"choices":[],"timings":{"cache_n":600,"prompt_n":358,"prompt_ms":6872.5,"predicted_n":612}}"#
            ),
            Some(PromptRead {
                tokens: 358,
                took: Duration::from_secs_f64(6.8725)
            })
        );
        // Ollama: nanoseconds.
        assert_eq!(
            read(r#"{"done":true,"prompt_eval_count":206,"prompt_eval_duration":4100000000}"#),
            ms(206, 4_100)
        );
        assert_eq!(read(r#"{"usage":{"prompt_tokens":12}}"#), None);
        assert_eq!(read(r#"{"timings":{"prompt_n":5}}"#), None);
        assert_eq!(read(r#"{"done":true,"prompt_eval_count":9}"#), None);
    }

    #[test]
    fn how_long_a_server_asks_to_be_left_alone() {
        let now = httpdate::parse_http_date("Sun, 06 Dec 2026 20:00:00 GMT").unwrap();
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(Headers, Option<u64>)] = &[
            (&[("retry-after", "2")], Some(2_000)),
            (&[("retry-after", " 1.5 ")], Some(1_500)),
            (
                &[("retry-after", "Sun, 06 Dec 2026 20:00:30 GMT")],
                Some(30_000),
            ),
            // RFC 850 and asctime dates, as HTTP allows.
            (
                &[("retry-after", "Sunday, 06-Dec-26 20:01:00 GMT")],
                Some(60_000),
            ),
            (&[("retry-after", "Sun Dec  6 20:00:05 2026")], Some(5_000)),
            (&[("retry-after", "Sun, 06 Dec 2026 19:59:00 GMT")], Some(0)),
            (
                &[("retry-after-ms", "250"), ("retry-after", "1")],
                Some(250),
            ),
            (
                &[("retry-after-ms", "soon"), ("retry-after", "1")],
                Some(1_000),
            ),
            (&[("retry-after", "-3")], None),
            (&[("retry-after", "later")], None),
            (&[], None),
        ];
        for (headers, expected) in cases {
            let mut map = reqwest::header::HeaderMap::new();
            for (name, value) in *headers {
                map.insert(
                    reqwest::header::HeaderName::from_static(name),
                    value.parse().unwrap(),
                );
            }
            assert_eq!(
                retry_after(&map, now).map(|d| d.as_millis() as u64),
                *expected,
                "{headers:?}"
            );
        }
    }

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
        // Mistral's refusal of a field it does not know, and FastAPI's plain detail.
        assert_eq!(
            error_message(
                r#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","stream_options"],"msg":"Extra inputs are not permitted","input":{"include_usage":true}}]},"type":"invalid_request_error","param":null,"code":null}"#
            ),
            "body.stream_options: Extra inputs are not permitted"
        );
        assert_eq!(
            error_message(r#"{"message":"Unauthorized","request_id":"abc"}"#),
            "Unauthorized"
        );
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#), "Not Found");
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
