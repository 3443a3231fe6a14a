//! Per-endpoint resilience: a circuit breaker that counts failed calls (consecutive, per
//! endpoint) and opens for a cooldown that doubles each time it opens again without a
//! success in between (after the cooldown one probe call half-opens it), cooling after
//! 429/529 for as long as `Retry-After` says, background health probes, latency
//! averages of successful calls, and running a fallback chain: each model's endpoints in
//! [`endpoint_order`], then the next model. Retries with exponential backoff and jitter are
//! for callers that give a retry window (actions); completion gives none, so a failed call
//! falls through to the next endpoint or model at once. Time is always passed in, so every
//! rule is tested without sleeping.
//!
//! Knows no wire format: a provider's error is classified by its kind and status only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::future::Future;
use std::sync::Arc;

use crate::config::ModelConfig;
use crate::providers::too_long::Sizes;
use crate::providers::{ModelAnswer, PromptRead, ProviderError, Providers};
use crate::router::{COMPLETE, EndpointLive, Latency, ModelLive, ModelState, endpoint_order};
use crate::sync::lock;

/// Consecutive failed calls that open an endpoint's circuit.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long a circuit stays open the first time; each reopening without a success in
/// between doubles it, up to [`MAX_OPEN_COOLDOWN`].
pub const OPEN_COOLDOWN: Duration = Duration::from_secs(10);
pub const MAX_OPEN_COOLDOWN: Duration = Duration::from_secs(300);
/// Cooling after a 429/529 that carried no Retry-After.
pub const DEFAULT_COOLING: Duration = Duration::from_secs(10);
/// Calls to one endpoint in one request, when the caller allows retries.
pub const MAX_ATTEMPTS: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The error of an attempt cut off by the chain's deadline.
pub const DEADLINE_REACHED: &str = "deadline reached";
/// Weight of the newest call in the latency averages.
const LATENCY_WEIGHT: f64 = 0.3;
/// An average whose last call is older than this is stale: it no longer orders endpoints
/// nor puts a model last for being slow, so that a model measured slow once (a cold first
/// call, a busy machine) is measured again instead of being avoided for good.
pub const STALE_AVERAGE: Duration = Duration::from_secs(120);
/// A prompt read shorter than this says little of how fast the server reads one: a few
/// dozen tokens cost the server's fixed overhead as much as their reading.
const MIN_TOKENS_READ: u64 = 64;

/// What is known of one endpoint of one model.
#[derive(Debug, Default, Clone)]
struct EndpointHealth {
    consecutive_failures: u32,
    /// Times the circuit opened since the last success: the cooldown doubles with each.
    openings: u32,
    open_until: Option<Instant>,
    /// After the cooldown, one call is let through; others wait for its verdict.
    probe_in_flight: bool,
    cooling_until: Option<Instant>,
    /// The last background health probe failed.
    probe_down: bool,
    /// The averages of completion calls and of action calls, by [`Work::index`].
    latency: [Option<Averages>; 2],
    /// What the server said of itself: it outlives a call's success or failure.
    said: Said,
    /// Calls admitted and not reported yet.
    in_flight: u32,
    /// The last call failed in a way that does not pass by itself, and what the user can do
    /// about it ([`Remedy::lasting`]).
    lasting_failure: Option<Remedy>,
}

/// What a server said of itself, beside its answers and refusals.
#[derive(Debug, Default, Clone, Copy)]
struct Said {
    /// How fast it reads a prompt.
    reading: Reading,
    /// The last prompt it refused as longer than its context.
    refused: Option<Refusal>,
}

/// A prompt a server refused as longer than its context: this crate's estimate of its tokens,
/// what the server said of the sizes, and when.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    estimated: u32,
    sizes: Sizes,
    at: Instant,
}

/// How long a refusal decides the window a server is counted to take
/// ([`crate::router::window_taken`]): a user who restarts the server with a longer context
/// has it counted again after this, at the cost of one prompt refused (in milliseconds).
pub const REFUSAL_KEPT: Duration = Duration::from_secs(600);

/// What a server said of how fast it reads prompts ([`PromptRead`]).
#[derive(Debug, Default, Clone, Copy)]
struct Reading {
    /// Milliseconds a prompt token takes it to read: an exponentially weighted average.
    ms_per_token: Option<f64>,
    /// A read of enough tokens came with nothing said of it: the server does not say.
    says_nothing: bool,
}

/// What the user can do when an endpoint cannot be expected to answer
/// ([`Health::remedy`]), for the message that says completion has no model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Nothing listens at its url (a refused connection, an unknown host, a failed probe).
    StartServer,
    /// The server's certificate is signed by a CA this machine does not trust.
    TrustCa,
    /// The server refused the API key (401, 403).
    CheckKey,
    /// The server refused the request otherwise (another 4xx): most often a model it does
    /// not have, or a url that is not the API's.
    CheckModel,
    /// The failure's own words say what to set or change (an unset key variable, a setting
    /// the provider does not support).
    AsSaid,
    /// It asked to be left alone for a while (429, 529).
    Wait,
    /// Failures that may pass (5xx, timeouts, garbage, dropped connections) kept coming
    /// until the circuit opened.
    ServerFails,
}

impl Remedy {
    /// What to do about a failure that does not pass by itself (see [`Health::remedy`]); None
    /// for one that may.
    pub fn lasting(error: &ProviderError) -> Option<Remedy> {
        match error {
            ProviderError::Status {
                status: 401 | 403, ..
            } => Some(Remedy::CheckKey),
            ProviderError::Status { status, .. }
                if (400..500).contains(status) && !matches!(status, 408 | 429) =>
            {
                Some(Remedy::CheckModel)
            }
            ProviderError::Unreachable { .. } => Some(Remedy::StartServer),
            ProviderError::Untrusted { .. } => Some(Remedy::TrustCa),
            ProviderError::MissingKey { .. } | ProviderError::Unsupported(_) => {
                Some(Remedy::AsSaid)
            }
            ProviderError::Status { .. }
            | ProviderError::TooLong { .. }
            | ProviderError::Malformed { .. }
            | ProviderError::Timeout { .. }
            | ProviderError::Stream { .. } => None,
        }
    }

    /// The advice, one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            Remedy::StartServer => {
                "Start your model server (e.g. `ollama serve`) or point [models] in .pilotfish.toml at one."
            }
            Remedy::TrustCa => {
                "Add the CA that signed the server's certificate to the system's certificate store, or name its PEM file in SSL_CERT_FILE."
            }
            Remedy::CheckKey => {
                "Check the API key in the environment variable the model's `api_key_env` names."
            }
            Remedy::CheckModel => {
                "Check the model's `model` and `url` in .pilotfish.toml (with Ollama, `ollama pull` the model)."
            }
            Remedy::AsSaid => "Set or change what it says.",
            Remedy::Wait => "It asked to wait; completion resumes after the wait.",
            Remedy::ServerFails => "The model server keeps failing; its own log may say why.",
        }
    }
}

/// What a call was for. Calls of one kind are averaged apart from the other's: a completion
/// (a few dozen tokens) and an action (an explanation of hundreds) take times that say
/// nothing of each other, and a model that completes in 50 ms and explains in 5 s must still
/// be a 50 ms model to completion after an Explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Completion,
    Action,
}

impl Work {
    /// The kind of work a routing task is.
    pub fn of_task(task: &str) -> Work {
        if task == COMPLETE {
            Work::Completion
        } else {
            Work::Action
        }
    }

    fn index(self) -> usize {
        match self {
            Work::Completion => 0,
            Work::Action => 1,
        }
    }
}

/// Exponentially weighted averages of successful calls, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Averages {
    first_token_ms: f64,
    answer_ms: f64,
    calls: u32,
    /// When the last of them ended.
    at: Instant,
}

impl Averages {
    fn add(
        previous: Option<Averages>,
        took: Duration,
        first_token: Option<Duration>,
        at: Instant,
    ) -> Averages {
        let answer = took.as_secs_f64() * 1_000.0;
        // An answer that is not streamed arrives whole: its first token comes with it.
        let first = first_token.map_or(answer, |d| d.as_secs_f64() * 1_000.0);
        match previous {
            None => Averages {
                first_token_ms: first,
                answer_ms: answer,
                calls: 1,
                at,
            },
            Some(p) => {
                let mix = |old: f64, new: f64| old + LATENCY_WEIGHT * (new - old);
                Averages {
                    first_token_ms: mix(p.first_token_ms, first),
                    answer_ms: mix(p.answer_ms, answer),
                    calls: p.calls.saturating_add(1),
                    at,
                }
            }
        }
    }

    fn latency(&self, now: Instant) -> Latency {
        Latency {
            first_token_ms: self.first_token_ms.round() as u64,
            answer_ms: self.answer_ms.round() as u64,
            calls: self.calls,
            stale: now.saturating_duration_since(self.at) > STALE_AVERAGE,
        }
    }
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try the same endpoint again after this delay.
    Retry(Duration),
    /// Give up on this endpoint for this request; try the next endpoint or model.
    Next,
}

/// (model name, endpoint URL).
type EndpointKey = (String, String);

/// Health of every endpoint, shared by all requests.
#[derive(Debug, Default)]
pub struct Health {
    endpoints: Mutex<HashMap<EndpointKey, EndpointHealth>>,
    jitter: AtomicU64,
}

impl Health {
    pub fn new() -> Health {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Health {
            endpoints: Mutex::new(HashMap::new()),
            jitter: AtomicU64::new(seed | 1),
        }
    }

    fn with<R>(&self, model: &str, url: &str, f: impl FnOnce(&mut EndpointHealth) -> R) -> R {
        let mut endpoints = lock(&self.endpoints);
        let key = (model.to_string(), url.to_string());
        f(endpoints.entry(key).or_default())
    }

    /// One endpoint as the router sees it for `work`.
    pub fn endpoint(&self, model: &str, url: &str, work: Work, now: Instant) -> EndpointLive {
        let endpoints = lock(&self.endpoints);
        endpoints
            .get(&(model.to_string(), url.to_string()))
            .map(|h| live_of(h, work, now))
            .unwrap_or_default()
    }

    /// Whether an endpoint can take a call now, and if not why.
    pub fn state(&self, model: &str, url: &str, now: Instant) -> ModelState {
        let endpoints = lock(&self.endpoints);
        endpoints
            .get(&(model.to_string(), url.to_string()))
            .map(|h| state_of(h, now))
            .unwrap_or_default()
    }

    /// Every endpoint this has heard of, by model: what the router reads for `work`.
    pub fn snapshot(&self, work: Work, now: Instant) -> HashMap<String, ModelLive> {
        let endpoints = lock(&self.endpoints);
        let mut models: HashMap<String, ModelLive> = HashMap::new();
        for ((model, url), h) in endpoints.iter() {
            models
                .entry(model.clone())
                .or_default()
                .endpoints
                .insert(url.clone(), live_of(h, work, now));
        }
        models
    }

    /// Whether a call to `model` at `url` may go out now; an admitted call must be reported
    /// (success, failure or abandoned). After an open circuit's cooldown, exactly one call
    /// is admitted (half-open) until it succeeds or fails; an endpoint whose last call
    /// failed takes one call at a time, so that calls made side by side (two documents, a
    /// background prefetch) cannot take a dead endpoint past its breaker threshold.
    pub fn admit(&self, model: &str, url: &str, now: Instant) -> bool {
        self.with(model, url, |h| {
            if h.cooling_until.is_some_and(|t| now < t) {
                return false;
            }
            let admitted = match h.open_until {
                None => h.consecutive_failures == 0 || h.in_flight == 0,
                Some(t) if now < t => false,
                Some(_) if h.probe_in_flight => false,
                Some(_) => {
                    h.probe_in_flight = true;
                    true
                }
            };
            if admitted {
                h.in_flight += 1;
            }
            admitted
        })
    }

    /// A call for `work` answered after `took` (its first token after `first_token`, when
    /// streamed): the circuit closes and that work's averages take the call in.
    pub fn record_success(
        &self,
        (model, url): (&str, &str),
        work: Work,
        took: Duration,
        first_token: Option<Duration>,
    ) {
        self.with(model, url, |h| {
            let mut latency = h.latency;
            let averages = &mut latency[work.index()];
            *averages = Some(Averages::add(*averages, took, first_token, Instant::now()));
            *h = EndpointHealth {
                latency,
                said: h.said,
                in_flight: h.in_flight.saturating_sub(1),
                ..EndpointHealth::default()
            };
        });
    }

    /// The server said how it read a prompt (after a call, or a warm-up of its cache): the
    /// reading speed averages take it in when it read enough to tell.
    pub fn record_reading(&self, (model, url): (&str, &str), read: PromptRead) {
        if read.tokens < MIN_TOKENS_READ {
            return;
        }
        let ms_per_token = read.took.as_secs_f64() * 1_000.0 / read.tokens as f64;
        self.with(model, url, |h| {
            h.said.reading.ms_per_token = Some(match h.said.reading.ms_per_token {
                None => ms_per_token,
                Some(old) => old + LATENCY_WEIGHT * (ms_per_token - old),
            });
        });
    }

    /// The server answered a read of enough tokens to tell, and said nothing of it (vLLM,
    /// LM Studio, a cloud API): [`Health::says_how_it_reads`] is false from now on.
    pub fn record_no_reading(&self, (model, url): (&str, &str)) {
        self.with(model, url, |h| h.said.reading.says_nothing = true);
    }

    /// Whether the endpoint may yet say how fast it reads: it has, or it was never seen to
    /// answer without saying.
    pub fn says_how_it_reads(&self, model: &str, url: &str) -> bool {
        let endpoints = lock(&self.endpoints);
        endpoints
            .get(&(model.to_string(), url.to_string()))
            .is_none_or(|h| {
                let reading = h.said.reading;
                reading.ms_per_token.is_some() || !reading.says_nothing
            })
    }

    /// How long the endpoint is expected to take to read a prompt of `tokens` it holds none
    /// of, from what it said of its reads; `None` before it said anything.
    pub fn reading_time(&self, model: &str, url: &str, tokens: u64) -> Option<Duration> {
        let endpoints = lock(&self.endpoints);
        let ms = endpoints
            .get(&(model.to_string(), url.to_string()))?
            .said
            .reading
            .ms_per_token?;
        Some(Duration::from_secs_f64(ms * tokens as f64 / 1_000.0))
    }

    /// The server refused a prompt estimated at `estimated` tokens as longer than its
    /// context, saying `sizes`, at `at`: for [`REFUSAL_KEPT`], prompts for it are built to
    /// fit at once, and routing counts its window as what it said it takes.
    pub fn record_too_long(
        &self,
        (model, url): (&str, &str),
        (estimated, sizes): (u32, Sizes),
        at: Instant,
    ) {
        let refusal = Refusal {
            estimated,
            sizes,
            at,
        };
        self.with(model, url, |h| h.said.refused = Some(refusal));
    }

    /// A call that was cancelled or abandoned says nothing about the endpoint (nor how long
    /// it takes to answer); a half-open probe that was abandoned frees the slot.
    pub fn record_abandoned(&self, model: &str, url: &str) {
        self.with(model, url, |h| {
            h.probe_in_flight = false;
            h.in_flight = h.in_flight.saturating_sub(1);
        });
    }

    /// Records a failed call and says whether to retry the same endpoint or move on. Every
    /// failed call counts towards the breaker except a rate limit (which cools the endpoint
    /// instead) and a prompt refused as too long (the endpoint answered: it is up); a retry
    /// is offered only inside `retry_until` (`None`: never), for a server error or a
    /// Retry-After that fits, and while the circuit stays closed.
    pub fn record_failure(
        &self,
        (model, url): (&str, &str),
        error: &ProviderError,
        attempt: u32,
        now: Instant,
        retry_until: Option<Instant>,
    ) -> AfterFailure {
        let jitter = self.next_jitter();
        let fits = |delay: Duration| {
            attempt < MAX_ATTEMPTS && retry_until.is_some_and(|until| now + delay < until)
        };
        self.with(model, url, |h| {
            h.probe_in_flight = false;
            // The call is over; a retry is admitted again.
            h.in_flight = h.in_flight.saturating_sub(1);
            record_failure(h, error, now, fits, jitter, attempt)
        })
    }

    /// None while a call to the endpoint can be expected to answer now: it is healthy
    /// (circuit closed, not cooling, not found down) and its last call did not fail in a way
    /// that does not pass by itself ([`Remedy::lasting`]: nothing listens, a model it does
    /// not have, a bad or missing key). A 500 or a dropped connection now and then leaves it
    /// expected. Otherwise what the user can do about it.
    pub fn remedy(&self, model: &str, url: &str, now: Instant) -> Option<Remedy> {
        let endpoints = lock(&self.endpoints);
        let h = endpoints.get(&(model.to_string(), url.to_string()))?;
        match state_of(h, now) {
            ModelState::Cooling { .. } => Some(Remedy::Wait),
            _ if h.lasting_failure.is_some() => h.lasting_failure,
            ModelState::Healthy => None,
            ModelState::Down => Some(Remedy::StartServer),
            ModelState::CircuitOpen { .. } => Some(Remedy::ServerFails),
        }
    }

    /// What the user can do when no endpoint of a chain (`endpoints`: (model, url) in the
    /// chain's order) can be expected to answer now: the first endpoint's remedy (the one
    /// they prefer); None while one can; [`Remedy::AsSaid`] for an empty chain (the reason
    /// says what to configure). A failed call or two that may pass (a 500, a dropped
    /// connection) are not worth a message; failures that go on open the circuit
    /// ([`FAILURES_TO_OPEN`]) and are told.
    pub fn chain_remedy<'a>(
        &self,
        endpoints: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: Instant,
    ) -> Option<Remedy> {
        let mut remedies = endpoints
            .into_iter()
            .map(|(model, url)| self.remedy(model, url, now));
        let Some(first) = remedies.next() else {
            return Some(Remedy::AsSaid);
        };
        let first = first?;
        remedies.all(|r| r.is_some()).then_some(first)
    }

    /// Records a background health probe. A probe that succeeds after a failed one means the
    /// server came back: an open circuit's cooldown ends, and the next call decides.
    pub fn record_probe(&self, model: &str, url: &str, ok: bool, now: Instant) {
        self.with(model, url, |h| {
            if ok && h.probe_down {
                h.open_until = h.open_until.map(|t| t.min(now));
            }
            h.probe_down = !ok;
        });
    }

    /// xorshift64*: cheap jitter, no dependency.
    fn next_jitter(&self) -> u64 {
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.jitter.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The breaker's and the cooling's verdict on one failed call of `h` (see
/// [`Health::record_failure`]).
fn record_failure(
    h: &mut EndpointHealth,
    error: &ProviderError,
    now: Instant,
    fits: impl Fn(Duration) -> bool,
    jitter: u64,
    attempt: u32,
) -> AfterFailure {
    if let ProviderError::TooLong { .. } = error {
        // The endpoint answered, so it is up; the prompt was at fault, and a shorter one
        // is served as before.
        *h = EndpointHealth {
            latency: h.latency,
            said: h.said,
            in_flight: h.in_flight,
            ..EndpointHealth::default()
        };
        return AfterFailure::Next;
    }
    h.lasting_failure = Remedy::lasting(error);
    if let Some(retry_after) = rate_limit(error) {
        let cooling = retry_after.unwrap_or(DEFAULT_COOLING);
        if fits(cooling) {
            return AfterFailure::Retry(cooling);
        }
        h.cooling_until = Some(now + cooling);
        return AfterFailure::Next;
    }
    h.consecutive_failures += 1;
    let reopen = match h.open_until {
        // Already open: a call that went out before it opened.
        Some(until) if now < until => return AfterFailure::Next,
        // The half-open probe failed.
        Some(_) => true,
        None => h.consecutive_failures >= FAILURES_TO_OPEN,
    };
    if reopen {
        h.openings = h.openings.saturating_add(1);
        h.open_until = Some(now + open_cooldown(h.openings));
        return AfterFailure::Next;
    }
    let delay = backoff(attempt, jitter);
    if is_transient(error) && fits(delay) {
        AfterFailure::Retry(delay)
    } else {
        AfterFailure::Next
    }
}

/// The cooldown of the circuit's `openings`-th opening since the last success.
pub fn open_cooldown(openings: u32) -> Duration {
    OPEN_COOLDOWN
        .saturating_mul(1 << openings.saturating_sub(1).min(16))
        .min(MAX_OPEN_COOLDOWN)
}

fn live_of(h: &EndpointHealth, work: Work, now: Instant) -> EndpointLive {
    EndpointLive {
        state: state_of(h, now),
        latency: h.latency[work.index()].map(|a| a.latency(now)),
        refused: (h.said.refused)
            .filter(|r| now.saturating_duration_since(r.at) < REFUSAL_KEPT)
            .map(|r| (r.estimated, r.sizes)),
    }
}

fn state_of(h: &EndpointHealth, now: Instant) -> ModelState {
    let ms = |t: Instant| t.saturating_duration_since(now).as_millis() as u64;
    if let Some(t) = h.cooling_until.filter(|t| now < *t) {
        return ModelState::Cooling { for_ms: ms(t) };
    }
    if let Some(t) = h.open_until {
        if now < t || h.probe_in_flight {
            return ModelState::CircuitOpen { for_ms: ms(t) };
        }
        // Cooldown over: half-open, one call may go through.
        return ModelState::Healthy;
    }
    if h.probe_down {
        return ModelState::Down;
    }
    ModelState::Healthy
}

/// `Some(retry_after)` for a rate-limit or overload answer (429, 529, 503 with Retry-After).
fn rate_limit(error: &ProviderError) -> Option<Option<Duration>> {
    match error {
        ProviderError::Status {
            status: 429 | 529,
            retry_after,
            ..
        } => Some(*retry_after),
        ProviderError::Status {
            status: 503,
            retry_after: Some(d),
            ..
        } => Some(Some(*d)),
        _ => None,
    }
}

/// Worth retrying on the same endpoint: server errors (5xx). Not: a refused connection
/// (nothing listens), a timeout (the time is gone), garbage or a stream that broke midway
/// (the next endpoint is the better bet), bad requests, a missing key.
fn is_transient(error: &ProviderError) -> bool {
    match error {
        ProviderError::Status { status, .. } => matches!(status, 500 | 502 | 503 | 504),
        ProviderError::Malformed { .. }
        | ProviderError::Unreachable { .. }
        | ProviderError::Untrusted { .. }
        | ProviderError::TooLong { .. }
        | ProviderError::Timeout { .. }
        | ProviderError::Stream { .. }
        | ProviderError::MissingKey { .. }
        | ProviderError::Unsupported(_) => false,
    }
}

/// How often local model servers are probed in the background: every 15 s while all
/// answer, every 2 s while one is down, so that a model server started after the editor
/// serves completions within a couple of seconds (a probe of a local port that nothing
/// listens on costs nothing).
const PROBE_INTERVAL: Duration = Duration::from_secs(15);
const PROBE_INTERVAL_WHILE_DOWN: Duration = Duration::from_secs(2);

/// Background health probes, for as long as the server runs, of the endpoints `endpoints`
/// names at each round (the session's: the local endpoints of the models some route uses,
/// each endpoint of a model with several; never a cloud one, it would cost the user): a
/// model server that went down is skipped before a request waits on it, and one that came
/// back is used again.
pub async fn probe_endpoints(
    endpoints: impl Fn() -> Vec<(Arc<str>, ModelConfig)>,
    providers: Providers,
    health: Arc<Health>,
) {
    loop {
        let mut any_down = false;
        for (name, endpoint) in endpoints() {
            let ok = providers.warm(&endpoint).await;
            if let Err(e) = &ok {
                tracing::debug!(model = %name, endpoint = &*endpoint.url, "health probe failed: {e}");
                any_down = true;
            }
            health.record_probe(&name, &endpoint.url, ok.is_ok(), Instant::now());
        }
        tokio::time::sleep(if any_down {
            PROBE_INTERVAL_WHILE_DOWN
        } else {
            PROBE_INTERVAL
        })
        .await;
    }
}

/// Exponential backoff with full jitter: a random delay in [base·2^(attempt-1) / 2, base·2^(attempt-1)].
pub fn backoff(attempt: u32, jitter: u64) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(BACKOFF_MAX);
    let half = exp / 2;
    let spread = half.as_micros() as u64;
    half + Duration::from_micros(if spread == 0 {
        0
    } else {
        jitter % (spread + 1)
    })
}

/// What a successful call's answer says of its timing, for the latency averages.
pub trait Timed {
    /// When the first piece of text arrived, for a streamed answer; `None` when the answer
    /// came whole (its first token then counts as arriving with it).
    fn first_token(&self) -> Option<Duration> {
        None
    }

    /// What the server said of reading the prompt.
    fn prompt_read(&self) -> Option<PromptRead> {
        None
    }
}

impl Timed for ModelAnswer {
    fn first_token(&self) -> Option<Duration> {
        self.first_token
    }

    fn prompt_read(&self) -> Option<PromptRead> {
        self.prompt_read
    }
}

/// One try of one endpoint, for logs and for telling the user what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub model: Arc<str>,
    /// The endpoint's URL.
    pub endpoint: Arc<str>,
    /// `None` on success; else the one-line reason.
    pub error: Option<String>,
    /// The call ran out of time (the model's timeout, or the request's deadline).
    pub timed_out: bool,
    pub ms: u64,
}

/// What a chain run produced: the first answer and who gave it, or why nobody did.
#[derive(Debug)]
pub struct ChainOutcome<T> {
    pub answer: Result<(Arc<str>, T), String>,
    pub attempts: Vec<Attempt>,
}

impl<T> ChainOutcome<T> {
    /// The endpoint that answered, if one did.
    pub fn endpoint(&self) -> Option<&str> {
        self.attempts
            .iter()
            .rfind(|a| a.error.is_none())
            .map(|a| &*a.endpoint)
    }
}

/// Frees a half-open probe slot if the call is dropped before it reports.
struct ProbeGuard<'a> {
    health: &'a Health,
    model: &'a str,
    url: &'a str,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.health.record_abandoned(self.model, self.url);
        }
    }
}

/// Why an endpoint is skipped without a call, or `None` when it is admitted (which takes
/// the half-open slot of a circuit whose cooldown is over).
fn skip_reason(health: &Health, model: &str, url: &str, now: Instant) -> Option<String> {
    if health.state(model, url, now) == ModelState::Down {
        return Some("health probe failing".into());
    }
    if health.admit(model, url, now) {
        return None;
    }
    Some(match health.state(model, url, now) {
        ModelState::Cooling { for_ms } => {
            format!("rate-limited, retry in {} s", for_ms.div_ceil(1000))
        }
        ModelState::Healthy => "its last call failed and another call to it is out".into(),
        _ => "circuit open".to_string(),
    })
}

/// When a chain of calls stops, which a call may move later once it learns it was given
/// longer than planned (an action's local server measured reading slowly, before the call).
#[derive(Debug)]
pub struct Deadline(Mutex<Instant>);

impl Deadline {
    pub fn at(at: Instant) -> Self {
        Deadline(Mutex::new(at))
    }

    pub fn get(&self) -> Instant {
        *lock(&self.0)
    }

    pub fn extend(&self, by: Duration) {
        *lock(&self.0) += by;
    }

    /// Resolves when the deadline is reached, however often it was moved meanwhile.
    async fn reached(&self) {
        loop {
            let at = self.get();
            tokio::time::sleep_until(at.into()).await;
            if self.get() <= at {
                return;
            }
        }
    }
}

/// Tries each model of `chain` in order until one answers, and within a model each of its
/// endpoints in [`endpoint_order`] before the next model. Skips endpoints whose circuit is
/// open, that are cooling or whose probe fails; retries a server error on the same endpoint
/// with backoff only while the retry fits before `retry_until` (`None`: no retries, a failed
/// call falls through at once); stops everything at `deadline`. Health and latency averages
/// are updated as it goes, `work`'s averages taking in each answer's timing. `call` gets the
/// model at one endpoint.
pub async fn run_chain<T, F, Fut>(
    health: &Health,
    chain: &[(Arc<str>, Arc<ModelConfig>)],
    work: Work,
    retry_until: Option<Instant>,
    deadline: &Deadline,
    mut call: F,
) -> ChainOutcome<T>
where
    T: Timed,
    F: FnMut(Arc<str>, Arc<ModelConfig>) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let retry_until = retry_until.map(|t| t.min(deadline.get()));
    let mut attempts = Vec::new();
    let mut errors = Vec::new();
    'models: for (name, model) in chain {
        let urls: Vec<&str> = model.url.iter().collect();
        let now = Instant::now();
        let live: Vec<EndpointLive> = urls
            .iter()
            .map(|u| health.endpoint(name, u, work, now))
            .collect();
        'endpoints: for i in endpoint_order(&live) {
            let url = urls[i];
            // Errors name the model, and the endpoint when the model has several.
            let who = if urls.len() > 1 {
                format!("{name} at {url}")
            } else {
                name.to_string()
            };
            if let Some(why) = skip_reason(health, name, url, Instant::now()) {
                errors.push(format!("{who}: skipped ({why})"));
                continue;
            }
            let mut guard = ProbeGuard {
                health,
                model: name,
                url,
                armed: true,
            };
            let at_endpoint = if urls.len() > 1 {
                Arc::new(model.at_endpoint(url))
            } else {
                model.clone()
            };
            let endpoint: Arc<str> = url.into();
            let mut attempt = 0;
            loop {
                attempt += 1;
                // tokio's clock: real time in the server, paused time in tests.
                let t0 = tokio::time::Instant::now();
                let result = tokio::select! {
                    biased;
                    result = call(name.clone(), at_endpoint.clone()) => Some(result),
                    () = deadline.reached() => None,
                };
                let took = t0.elapsed();
                let mut record = |error: Option<String>, timed_out: bool| {
                    attempts.push(Attempt {
                        model: name.clone(),
                        endpoint: endpoint.clone(),
                        error,
                        timed_out,
                        ms: took.as_millis() as u64,
                    })
                };
                match result {
                    Some(Ok(answer)) => {
                        guard.armed = false;
                        health.record_success((name, url), work, took, answer.first_token());
                        if let Some(read) = answer.prompt_read() {
                            health.record_reading((name, url), read);
                        }
                        record(None, false);
                        return ChainOutcome {
                            answer: Ok((name.clone(), answer)),
                            attempts,
                        };
                    }
                    Some(Err(e)) => {
                        guard.armed = false;
                        let line = e.to_string();
                        record(
                            Some(line.clone()),
                            matches!(e, ProviderError::Timeout { .. }),
                        );
                        let after = health.record_failure(
                            (name, url),
                            &e,
                            attempt,
                            Instant::now(),
                            retry_until,
                        );
                        let AfterFailure::Retry(delay) = after else {
                            errors.push(format!("{who}: {line}"));
                            continue 'endpoints;
                        };
                        tracing::info!(model = %name, endpoint = url, attempt, ?delay, "retrying: {line}");
                        tokio::time::sleep(delay).await;
                        // Another request may have opened the circuit meanwhile.
                        if let Some(why) = skip_reason(health, name, url, Instant::now()) {
                            errors.push(format!("{who}: {line}; then skipped ({why})"));
                            continue 'endpoints;
                        }
                        guard.armed = true;
                    }
                    None => {
                        // Out of time: this says nothing certain about the endpoint.
                        record(Some(DEADLINE_REACHED.into()), true);
                        errors.push(format!("{who}: no answer before the deadline"));
                        break 'models;
                    }
                }
            }
        }
    }
    if chain.is_empty() {
        errors.push("no model to try".into());
    }
    ChainOutcome {
        answer: Err(errors.join("; ")),
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:1";

    fn status(code: u16, retry_after: Option<u64>) -> ProviderError {
        ProviderError::Status {
            url: "u".into(),
            status: code,
            retry_after: retry_after.map(Duration::from_secs),
            message: "m".into(),
        }
    }

    fn refused() -> ProviderError {
        ProviderError::Unreachable {
            url: "u".into(),
            detail: "refused".into(),
        }
    }

    /// One failed call to `model` at [`URL`], with no retry window.
    fn fail(h: &Health, model: &str, error: &ProviderError, now: Instant) -> AfterFailure {
        h.record_failure((model, URL), error, 1, now, None)
    }

    fn state(h: &Health, model: &str, now: Instant) -> ModelState {
        h.state(model, URL, now)
    }

    /// Which failures are told to the user at once (they do not pass by themselves), until
    /// a call succeeds, and what they are told to do.
    #[test]
    fn which_failures_last() {
        let malformed = ProviderError::Malformed {
            url: "u".into(),
            detail: "connection closed before message completed".into(),
        };
        let timeout = ProviderError::Timeout {
            url: "u".into(),
            ms: 100,
        };
        let missing_key = ProviderError::MissingKey {
            model: "m".into(),
            env: None,
        };
        let unsupported = ProviderError::Unsupported("set fim = \"native\"".into());
        let untrusted = ProviderError::Untrusted {
            url: "u".into(),
            detail: "invalid peer certificate: UnknownIssuer".into(),
        };
        let table = [
            (refused(), Some(Remedy::StartServer)),
            (untrusted, Some(Remedy::TrustCa)),
            (status(404, None), Some(Remedy::CheckModel)),
            (status(400, None), Some(Remedy::CheckModel)),
            (status(401, None), Some(Remedy::CheckKey)),
            (status(403, None), Some(Remedy::CheckKey)),
            (missing_key, Some(Remedy::AsSaid)),
            (unsupported, Some(Remedy::AsSaid)),
            (status(429, Some(1)), None),
            (status(408, None), None),
            (status(500, None), None),
            (status(503, None), None),
            (malformed, None),
            (timeout, None),
        ];
        let t0 = Instant::now();
        for (error, lasting) in table {
            assert_eq!(Remedy::lasting(&error), lasting, "{error}");
            let h = Health::new();
            fail(&h, "m", &error, t0);
            if lasting.is_some() {
                assert_eq!(h.remedy("m", URL, t0), lasting, "{error}");
            }
            h.record_success(
                ("m", URL),
                Work::Completion,
                Duration::from_millis(20),
                None,
            );
            assert_eq!(h.remedy("m", URL, t0), None, "a success ends it: {error}");
        }
    }

    /// Failures that may pass are told once they go on (the circuit opens) or the server
    /// asks to wait; a probe that finds nothing listening says to start the server.
    #[test]
    fn what_an_endpoint_that_does_not_answer_needs() {
        let t0 = Instant::now();
        let h = Health::new();
        assert_eq!(h.remedy("m", URL, t0), None, "never called");
        fail(&h, "m", &status(500, None), t0);
        assert_eq!(h.remedy("m", URL, t0), None, "one 500 may pass");
        for _ in 1..FAILURES_TO_OPEN {
            fail(&h, "m", &status(500, None), t0);
        }
        assert_eq!(h.remedy("m", URL, t0), Some(Remedy::ServerFails));
        let cooling = Health::new();
        fail(&cooling, "m", &status(429, Some(5)), t0);
        assert_eq!(cooling.remedy("m", URL, t0), Some(Remedy::Wait));
        let probed = Health::new();
        probed.record_probe("m", URL, false, t0);
        assert_eq!(probed.remedy("m", URL, t0), Some(Remedy::StartServer));
    }

    /// A chain needs the user only when none of its endpoints can be expected to answer,
    /// and then what the first (preferred) one needs.
    #[test]
    fn what_a_chain_that_does_not_answer_needs() {
        let t0 = Instant::now();
        let h = Health::new();
        let other = "http://127.0.0.1:2";
        h.record_probe("a", URL, false, t0);
        for _ in 0..FAILURES_TO_OPEN {
            h.record_failure(("b", other), &status(500, None), 1, t0, None);
        }
        type Chain<'a> = &'a [(&'a str, &'a str)];
        let table: [(Chain, Option<Remedy>); 5] = [
            (&[], Some(Remedy::AsSaid)),
            (&[("a", URL)], Some(Remedy::StartServer)),
            (&[("a", URL), ("b", other)], Some(Remedy::StartServer)),
            (&[("b", other), ("a", URL)], Some(Remedy::ServerFails)),
            (&[("a", URL), ("c", URL)], None),
        ];
        for (chain, remedy) in table {
            assert_eq!(
                h.chain_remedy(chain.iter().copied(), t0),
                remedy,
                "{chain:?}"
            );
        }
    }

    /// Calls made side by side (two documents, a request and a background prefetch) cannot
    /// take a failing endpoint past its threshold: once a call to it failed, it takes one
    /// call at a time until one succeeds.
    #[test]
    fn a_failing_endpoint_takes_one_call_at_a_time() {
        let h = Health::new();
        let t0 = Instant::now();
        assert!(h.admit("m", URL, t0));
        assert!(
            h.admit("m", URL, t0),
            "a healthy endpoint takes calls side by side"
        );
        fail(&h, "m", &status(500, None), t0);
        assert!(!h.admit("m", URL, t0), "the other call is still out");
        h.record_abandoned("m", URL);
        assert!(h.admit("m", URL, t0), "one at a time");
        assert!(!h.admit("m", URL, t0));
        h.record_success(
            ("m", URL),
            Work::Completion,
            Duration::from_millis(20),
            None,
        );
        assert!(h.admit("m", URL, t0), "a success ends it");
        assert!(h.admit("m", URL, t0));
    }

    #[test]
    fn the_breaker_counts_failed_calls_and_half_opens_once() {
        let h = Health::new();
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert!(h.admit("m", URL, t0));
            assert_eq!(fail(&h, "m", &status(500, None), t0), AfterFailure::Next);
        }
        assert_eq!(state(&h, "m", t0), ModelState::Healthy);
        fail(&h, "m", &refused(), t0);
        assert_eq!(
            state(&h, "m", t0),
            ModelState::CircuitOpen {
                for_ms: OPEN_COOLDOWN.as_millis() as u64
            }
        );
        assert!(!h.admit("m", URL, t0 + Duration::from_secs(1)));
        let later = t0 + OPEN_COOLDOWN;
        assert!(h.admit("m", URL, later), "one probe after the cooldown");
        assert!(!h.admit("m", URL, later), "only one");
        assert!(matches!(
            state(&h, "m", later),
            ModelState::CircuitOpen { .. }
        ));
        // The probe fails: open again, for twice as long.
        fail(&h, "m", &refused(), later);
        assert_eq!(
            state(&h, "m", later),
            ModelState::CircuitOpen {
                for_ms: 2 * OPEN_COOLDOWN.as_millis() as u64
            }
        );
        let again = later + 2 * OPEN_COOLDOWN;
        assert!(h.admit("m", URL, again));
        h.record_success(
            ("m", URL),
            Work::Completion,
            Duration::from_millis(40),
            None,
        );
        assert!(h.admit("m", URL, again) && h.admit("m", URL, again));
        assert_eq!(state(&h, "m", again), ModelState::Healthy);
        // A success starts the cooldowns over.
        for _ in 0..FAILURES_TO_OPEN {
            fail(&h, "m", &refused(), again);
        }
        assert_eq!(
            state(&h, "m", again),
            ModelState::CircuitOpen {
                for_ms: OPEN_COOLDOWN.as_millis() as u64
            }
        );
    }

    #[test]
    fn cooldowns_double_up_to_a_cap() {
        let table = [(1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (40, 300)];
        for (openings, secs) in table {
            assert_eq!(
                open_cooldown(openings),
                Duration::from_secs(secs),
                "{openings}"
            );
        }
    }

    #[test]
    fn a_call_that_fails_after_the_circuit_opened_does_not_lengthen_it() {
        let h = Health::new();
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN + 3 {
            fail(&h, "m", &refused(), t0);
        }
        assert_eq!(
            state(&h, "m", t0),
            ModelState::CircuitOpen {
                for_ms: OPEN_COOLDOWN.as_millis() as u64
            }
        );
    }

    #[test]
    fn endpoints_of_a_model_have_their_own_breakers() {
        let h = Health::new();
        let t0 = Instant::now();
        let other = "http://127.0.0.1:2";
        for _ in 0..FAILURES_TO_OPEN {
            fail(&h, "m", &refused(), t0);
        }
        assert!(!h.admit("m", URL, t0));
        assert!(h.admit("m", other, t0));
        assert!(h.admit("n", URL, t0), "another model at the same URL");
        let snapshot = h.snapshot(Work::Completion, t0);
        assert!(matches!(
            snapshot["m"].endpoints[URL].state,
            ModelState::CircuitOpen { .. }
        ));
        assert_eq!(snapshot["m"].endpoints[other].state, ModelState::Healthy);
    }

    #[test]
    fn a_success_resets_the_count() {
        let h = Health::new();
        let t0 = Instant::now();
        for _ in 0..10 {
            fail(&h, "m", &refused(), t0);
            fail(&h, "m", &refused(), t0);
            h.record_success(("m", URL), Work::Completion, Duration::from_millis(5), None);
        }
        assert!(h.admit("m", URL, t0));
    }

    /// A prompt refused as longer than the model's context is the request's fault: however
    /// often it comes, the circuit stays closed, no remedy is asked of the user, and an
    /// endpoint it answered is up again.
    #[test]
    fn a_prompt_too_long_is_not_held_against_the_endpoint() {
        let h = Health::new();
        let t0 = Instant::now();
        let too_long = ProviderError::TooLong {
            url: "u".into(),
            message: "request (9627 tokens) exceeds the available context size (4096 tokens)"
                .into(),
            sizes: crate::providers::too_long::Sizes::default(),
        };
        for _ in 0..FAILURES_TO_OPEN + 2 {
            assert!(h.admit("m", URL, t0));
            assert_eq!(fail(&h, "m", &too_long, t0), AfterFailure::Next);
        }
        assert_eq!(state(&h, "m", t0), ModelState::Healthy);
        assert_eq!(h.remedy("m", URL, t0), None);
        // Two failures that count, then a too-long answer: the count starts again.
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert!(h.admit("n", URL, t0));
            fail(&h, "n", &refused(), t0);
        }
        assert!(h.admit("n", URL, t0));
        fail(&h, "n", &too_long, t0);
        assert!(h.admit("n", URL, t0));
        fail(&h, "n", &refused(), t0);
        assert_eq!(state(&h, "n", t0), ModelState::Healthy);
    }

    #[test]
    fn a_refusal_decides_the_servers_window_for_a_while() {
        let h = Health::new();
        let t0 = Instant::now();
        let sizes = Sizes {
            context: Some(4096),
            prompt: Some(9_180),
        };
        h.record_too_long(("m", URL), (5_395, sizes), t0);
        h.record_success(("m", URL), Work::Action, Duration::from_secs(90), None);
        let refused = |after: Duration| h.endpoint("m", URL, Work::Action, t0 + after).refused;
        assert_eq!(
            refused(Duration::ZERO),
            Some((5_395, sizes)),
            "outlives a success"
        );
        assert_eq!(
            refused(REFUSAL_KEPT - Duration::from_secs(1)),
            Some((5_395, sizes))
        );
        assert_eq!(refused(REFUSAL_KEPT), None, "counted anew after");
    }

    #[test]
    fn a_servers_reading_speed_is_averaged_from_what_it_said_of_long_enough_reads() {
        let h = Health::new();
        let at = ("m", "u");
        let read = |tokens, ms| PromptRead {
            tokens,
            took: Duration::from_millis(ms),
        };
        assert_eq!(h.reading_time("m", "u", 1_000), None, "nothing said yet");
        // A warm-up's or a completion's few dozen tokens tell nothing of a long prompt.
        h.record_reading(at, read(30, 3_000));
        assert_eq!(h.reading_time("m", "u", 1_000), None);
        h.record_reading(at, read(200, 4_000));
        assert_eq!(
            h.reading_time("m", "u", 1_000),
            Some(Duration::from_secs(20))
        );
        // Averaged: 20 ms, then 10 ms a token at weight 0.3.
        h.record_reading(at, read(400, 4_000));
        assert_eq!(
            h.reading_time("m", "u", 1_000),
            Some(Duration::from_secs(17))
        );
        // A success or a failure keeps it; other endpoints know nothing of it.
        h.record_success(at, Work::Action, Duration::from_secs(1), None);
        assert!(h.reading_time("m", "u", 1_000).is_some());
        assert_eq!(h.reading_time("m", "other", 1_000), None);
    }

    #[test]
    fn rate_limits_cool_the_endpoint_for_retry_after() {
        let h = Health::new();
        let t0 = Instant::now();
        // Retry-After 2 s, no retry window (completion): move on, and cool for 2 s.
        assert_eq!(fail(&h, "m", &status(429, Some(2)), t0), AfterFailure::Next);
        assert_eq!(state(&h, "m", t0), ModelState::Cooling { for_ms: 2_000 });
        assert!(!h.admit("m", URL, t0 + Duration::from_secs(1)));
        assert!(h.admit("m", URL, t0 + Duration::from_secs(2)));
        // 529 without Retry-After: the default cooling.
        assert_eq!(fail(&h, "o", &status(529, None), t0), AfterFailure::Next);
        assert_eq!(
            state(&h, "o", t0),
            ModelState::Cooling {
                for_ms: DEFAULT_COOLING.as_millis() as u64
            }
        );
        // An action with 10 s left waits out Retry-After 1 s on the same endpoint.
        let after = h.record_failure(
            ("n", URL),
            &status(529, Some(1)),
            1,
            t0,
            Some(t0 + Duration::from_secs(10)),
        );
        assert_eq!(after, AfterFailure::Retry(Duration::from_secs(1)));
        assert!(h.admit("n", URL, t0));
        // ...but not when it does not fit.
        let after = h.record_failure(
            ("p", URL),
            &status(429, Some(2)),
            1,
            t0,
            Some(t0 + Duration::from_secs(1)),
        );
        assert_eq!(after, AfterFailure::Next);
        // Rate limits do not count towards the breaker.
        for _ in 0..5 {
            fail(&h, "k", &status(429, None), t0);
        }
        assert!(h.admit("k", URL, t0 + DEFAULT_COOLING));
    }

    #[test]
    fn retries_only_inside_a_retry_window_and_only_for_server_errors() {
        let h = Health::new();
        let t0 = Instant::now();
        let far = Some(t0 + Duration::from_secs(60));
        // (error, attempt, retry window, expected: retried?)
        let table: [(ProviderError, u32, Option<Instant>, bool); 7] = [
            (status(500, None), 1, far, true),
            (status(503, None), 2, far, true),
            (status(500, None), 1, None, false),
            (
                status(500, None),
                1,
                Some(t0 + Duration::from_millis(10)),
                false,
            ),
            (refused(), 1, far, false),
            (status(400, None), 1, far, false),
            (status(502, None), MAX_ATTEMPTS, far, false),
        ];
        for (i, (error, attempt, window, retried)) in table.into_iter().enumerate() {
            let model = format!("m{i}");
            let after = h.record_failure((&model, URL), &error, attempt, t0, window);
            match after {
                AfterFailure::Retry(d) => {
                    assert!(retried, "case {i}: {error}");
                    let full = BACKOFF_BASE * (1 << (attempt - 1));
                    assert!(d >= full / 2 && d <= full, "case {i}: {d:?}");
                }
                AfterFailure::Next => assert!(!retried, "case {i}: {error}"),
            }
        }
        // The failure that opens the circuit is never retried.
        for _ in 0..FAILURES_TO_OPEN - 1 {
            fail(&h, "z", &status(500, None), t0);
        }
        assert_eq!(
            h.record_failure(("z", URL), &status(500, None), 1, t0, far),
            AfterFailure::Next
        );
    }

    #[test]
    fn each_work_has_its_own_averages_and_either_closes_the_circuit() {
        let h = Health::new();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        h.record_success(("m", URL), Work::Completion, ms(50), None);
        h.record_success(("m", URL), Work::Action, ms(5_000), Some(ms(300)));
        let answer_ms = |work| h.endpoint("m", URL, work, t0).latency.map(|l| l.answer_ms);
        assert_eq!(answer_ms(Work::Completion), Some(50));
        assert_eq!(answer_ms(Work::Action), Some(5_000));
        assert_eq!(Work::of_task(COMPLETE), Work::Completion);
        assert_eq!(Work::of_task("explain"), Work::Action);

        for _ in 0..FAILURES_TO_OPEN {
            fail(&h, "m", &status(500, None), t0);
        }
        assert!(matches!(
            h.state("m", URL, t0),
            ModelState::CircuitOpen { .. }
        ));
        h.record_success(("m", URL), Work::Action, ms(4_000), None);
        assert_eq!(h.state("m", URL, t0), ModelState::Healthy);
        assert_eq!(
            answer_ms(Work::Completion),
            Some(50),
            "kept through the failures"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for (attempt, lo, hi) in [(1, 50, 100), (2, 100, 200), (3, 200, 400), (30, 2500, 5000)] {
            for jitter in [0, 1, 12345, u64::MAX] {
                let d = backoff(attempt, jitter).as_millis() as u64;
                assert!((lo..=hi).contains(&d), "attempt {attempt}: {d}");
            }
        }
    }

    #[test]
    fn latency_averages_weigh_recent_calls_most() {
        let h = Health::new();
        let t0 = Instant::now();
        assert_eq!(h.endpoint("m", URL, Work::Completion, t0).latency, None);
        let ms = Duration::from_millis;
        // (answer, first token, expected answer average, expected first-token average)
        let table = [
            (ms(1_000), Some(ms(200)), 1_000, 200),
            (ms(2_000), Some(ms(400)), 1_300, 260),
            // Not streamed: the first token comes with the answer.
            (ms(100), None, 940, 212),
        ];
        for (calls, (took, first, answer_ms, first_token_ms)) in table.into_iter().enumerate() {
            h.record_success(("m", URL), Work::Completion, took, first);
            assert_eq!(
                h.endpoint("m", URL, Work::Completion, t0).latency,
                Some(Latency {
                    first_token_ms,
                    answer_ms,
                    calls: calls as u32 + 1,
                    stale: false,
                })
            );
        }
        // Failures and abandoned calls say nothing about speed.
        fail(&h, "m", &refused(), t0);
        h.record_abandoned("m", URL);
        assert_eq!(
            h.endpoint("m", URL, Work::Completion, t0)
                .latency
                .map(|l| l.calls),
            Some(3)
        );
    }

    #[test]
    fn failed_probes_mark_the_endpoint_down_and_recovery_ends_a_cooldown() {
        let h = Health::new();
        let t0 = Instant::now();
        h.record_probe("m", URL, false, t0);
        assert_eq!(state(&h, "m", t0), ModelState::Down);
        h.record_probe("m", URL, true, t0);
        assert_eq!(state(&h, "m", t0), ModelState::Healthy);
        // An open circuit whose server went down and came back: the next call decides.
        for _ in 0..FAILURES_TO_OPEN {
            fail(&h, "m", &refused(), t0);
        }
        h.record_probe("m", URL, true, t0);
        assert!(
            !h.admit("m", URL, t0),
            "a probe that was never down changes nothing"
        );
        h.record_probe("m", URL, false, t0);
        h.record_probe("m", URL, true, t0 + Duration::from_secs(2));
        assert!(
            h.admit("m", URL, t0 + Duration::from_secs(2)),
            "came back: half-open"
        );
    }

    fn model(name: &str) -> (Arc<str>, Arc<ModelConfig>) {
        model_at(name, &[URL])
    }

    fn model_at(name: &str, urls: &[&str]) -> (Arc<str>, Arc<ModelConfig>) {
        let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
        let toml = format!(
            "provider = \"openai\"\nurl = [{}]\nmodel = \"{name}\"\n",
            urls.join(", ")
        );
        (name.into(), Arc::new(toml::from_str(&toml).unwrap()))
    }

    impl Timed for usize {}
    impl Timed for () {}

    /// [`run_chain`] on completion work with a minute to go (retrying within it if `retry`).
    async fn within_a_minute<T, F, Fut>(
        h: &Health,
        chain: &[(Arc<str>, Arc<ModelConfig>)],
        retry: bool,
        call: F,
    ) -> ChainOutcome<T>
    where
        T: Timed,
        F: FnMut(Arc<str>, Arc<ModelConfig>) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let far = tokio::time::Instant::now().into_std() + Duration::from_secs(60);
        let deadline = Deadline::at(far);
        run_chain(
            h,
            chain,
            Work::Completion,
            retry.then_some(far),
            &deadline,
            call,
        )
        .await
    }

    /// Who was called, in order: "model@url".
    type Calls = std::cell::RefCell<Vec<String>>;

    fn called(calls: &Calls, name: &str, model: &ModelConfig) {
        calls.borrow_mut().push(format!("{name}@{}", &*model.url));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_retry_window_a_failed_call_falls_through_at_once() {
        let h = Health::new();
        let chain = [model("a"), model("b")];
        let calls = Calls::default();
        let out = within_a_minute(&h, &chain, false, |name, m| {
            called(&calls, &name, &m);
            let first = &*name == "a";
            async move { if first { Err(status(500, None)) } else { Ok(1) } }
        })
        .await;
        assert_eq!(out.answer.unwrap().0.as_ref(), "b");
        assert_eq!(*calls.borrow(), [format!("a@{URL}"), format!("b@{URL}")]);
        assert_eq!(out.attempts.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_retry_window_server_errors_are_retried() {
        let h = Health::new();
        let chain = [model("a"), model("b")];
        let calls = Calls::default();
        // a: 500 twice then ok; b never needed.
        let out = within_a_minute(&h, &chain, true, |name, m| {
            called(&calls, &name, &m);
            let n = calls.borrow().len();
            async move {
                if n <= 2 {
                    Err(status(500, None))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.answer.unwrap().0.as_ref(), "a");
        assert_eq!(calls.borrow().len(), 3);
        assert_eq!(out.attempts.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_endpoint_costs_its_threshold_in_calls_then_none() {
        let h = Health::new();
        let chain = [model("a")];
        let calls = std::cell::Cell::new(0);
        for _ in 0..5 {
            let out: ChainOutcome<()> = within_a_minute(&h, &chain, true, |_, _| {
                calls.set(calls.get() + 1);
                async { Err(status(500, None)) }
            })
            .await;
            assert!(out.answer.is_err());
        }
        assert_eq!(calls.get(), FAILURES_TO_OPEN as usize, "retries count too");
        let out: ChainOutcome<()> =
            within_a_minute(&h, &chain, false, |_, _| async { Err(refused()) }).await;
        assert!(out.answer.unwrap_err().contains("circuit open"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_model_fails_over_to_its_next_endpoint_before_the_next_model() {
        let h = Health::new();
        let (gpu, laptop) = ("http://127.0.0.1:11", "http://127.0.0.1:12");
        let chain = [model_at("m", &[gpu, laptop]), model("b")];
        let calls = Calls::default();
        let out = within_a_minute(&h, &chain, false, |name, m| {
            called(&calls, &name, &m);
            let dead = &*m.url == gpu;
            async move { if dead { Err(refused()) } else { Ok(7) } }
        })
        .await;
        assert_eq!(out.endpoint(), Some(laptop));
        assert_eq!(out.answer.unwrap(), ("m".into(), 7));
        assert_eq!(*calls.borrow(), [format!("m@{gpu}"), format!("m@{laptop}")]);
        // Both endpoints out: the next model.
        calls.borrow_mut().clear();
        let out = within_a_minute(&h, &chain, false, |name, m| {
            called(&calls, &name, &m);
            let model_b = &*name == "b";
            async move {
                if model_b {
                    Ok(1)
                } else {
                    Err(status(500, None))
                }
            }
        })
        .await;
        assert_eq!(out.answer.unwrap().0.as_ref(), "b");
        // The laptop answered last time and is measured; the gpu is not: it goes first.
        assert_eq!(
            *calls.borrow(),
            [
                format!("m@{gpu}"),
                format!("m@{laptop}"),
                format!("b@{URL}")
            ]
        );
        let error = within_a_minute(&h, &[model_at("m", &[gpu, laptop])], false, |_, _| async {
            Err::<(), _>(refused())
        })
        .await
        .answer
        .unwrap_err();
        assert!(error.contains(&format!("m at {gpu}:")), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_faster_endpoint_on_average_is_tried_first() {
        let h = Health::new();
        let (slow, fast) = ("http://127.0.0.1:11", "http://127.0.0.1:12");
        h.record_success(
            ("m", slow),
            Work::Completion,
            Duration::from_millis(900),
            None,
        );
        h.record_success(
            ("m", fast),
            Work::Completion,
            Duration::from_millis(60),
            None,
        );
        let chain = [model_at("m", &[slow, fast])];
        let out = within_a_minute(&h, &chain, false, |_, _| async { Ok(()) }).await;
        assert_eq!(out.endpoint(), Some(fast));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_the_chain_and_says_nothing_about_the_model() {
        let h = Health::new();
        let chain = [model("slow"), model("b")];
        let deadline = Instant::now() + Duration::from_millis(100);
        let out = run_chain(
            &h,
            &chain,
            Work::Completion,
            Some(deadline),
            &Deadline::at(deadline),
            |_, m| async move {
                if m.model == "slow" {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                Ok(())
            },
        )
        .await;
        assert!(out.answer.unwrap_err().contains("before the deadline"));
        let slow = h.endpoint("slow", URL, Work::Completion, Instant::now());
        assert_eq!(slow.state, ModelState::Healthy, "not the model's fault");
        assert_eq!(slow.latency, None, "an abandoned call measures nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_moves_the_deadline_is_cut_at_the_moved_one_only() {
        let ms = Duration::from_millis;
        // A deadline 100 ms away, which the call moves after `after` ms by `by`, then runs
        // `then` ms more: whether it answered, and when the chain was done.
        let cases = [((50, 500, 300), true, 350), ((0, 200, 10_000), false, 300)];
        for ((after, by, then), answered, done) in cases {
            let h = Health::new();
            let started = tokio::time::Instant::now();
            let deadline = Deadline::at(started.into_std() + ms(100));
            let out = run_chain(
                &h,
                &[model("m")],
                Work::Action,
                None,
                &deadline,
                |_, _| async {
                    tokio::time::sleep(ms(after)).await;
                    deadline.extend(ms(by));
                    tokio::time::sleep(ms(then)).await;
                    Ok(())
                },
            )
            .await;
            assert_eq!(out.answer.is_ok(), answered, "{:?}", out.answer);
            assert_eq!(started.elapsed(), ms(done), "{after} {by} {then}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_average_goes_stale_when_no_call_refreshes_it() {
        let h = Health::new();
        let out = within_a_minute(&h, &[model("m")], false, |_, _| async { Ok(()) }).await;
        assert!(out.answer.is_ok());
        let now = Instant::now();
        let fresh = h.endpoint("m", URL, Work::Completion, now).latency.unwrap();
        assert!(!fresh.stale);
        assert_eq!(fresh.current_answer_ms(), Some(fresh.answer_ms));
        let later = h
            .endpoint(
                "m",
                URL,
                Work::Completion,
                now + STALE_AVERAGE + Duration::from_secs(1),
            )
            .latency
            .unwrap();
        assert!(later.stale);
        assert_eq!(later.current_answer_ms(), None);
        assert_eq!(later.calls, 1, "the figures stay, for `pilotfish route`");
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_call_is_measured() {
        let h = Health::new();
        let out = within_a_minute(&h, &[model("m")], false, |_, _| async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok(())
        })
        .await;
        assert!(out.answer.is_ok());
        let latency = h
            .endpoint("m", URL, Work::Completion, Instant::now())
            .latency
            .unwrap();
        assert_eq!((latency.answer_ms, latency.calls), (250, 1));
    }
}
