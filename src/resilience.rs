//! Per-model resilience: a circuit breaker (consecutive failures open it for a cooldown;
//! after the cooldown one probe call half-opens it), cooling after 429/529 for as long as
//! `Retry-After` says, background health-probe results, and retries with exponential
//! backoff and full jitter that are only attempted when they fit before the request's
//! deadline. Time is always passed in, so every rule is tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::future::Future;
use std::sync::Arc;

use crate::config::ModelConfig;
use crate::providers::ProviderError;
use crate::router::ModelState;
use crate::sync::lock;

/// Consecutive failures that open a model's circuit.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long an open circuit stays open before one probe call may go through.
pub const OPEN_COOLDOWN: Duration = Duration::from_secs(30);
/// Cooling after a 429/529 that carried no Retry-After.
pub const DEFAULT_COOLING: Duration = Duration::from_secs(10);
/// Attempts per model in one request (the first call and its retries).
pub const MAX_ATTEMPTS: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone)]
struct ModelHealth {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// After the cooldown, one call is let through; others wait for its verdict.
    probe_in_flight: bool,
    cooling_until: Option<Instant>,
    /// The last background health probe failed.
    probe_down: bool,
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try the same model again after this delay.
    Retry(Duration),
    /// Give up on this model for this request; try the next one.
    NextModel,
}

/// Health of every model, shared by all requests.
#[derive(Debug, Default)]
pub struct Health {
    models: Mutex<HashMap<String, ModelHealth>>,
    jitter: AtomicU64,
}

impl Health {
    pub fn new() -> Health {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Health {
            models: Mutex::new(HashMap::new()),
            jitter: AtomicU64::new(seed | 1),
        }
    }

    fn with<R>(&self, model: &str, f: impl FnOnce(&mut ModelHealth) -> R) -> R {
        let mut models = lock(&self.models);
        f(models.entry(model.to_string()).or_default())
    }

    /// The model's state as the router sees it.
    pub fn state(&self, model: &str, now: Instant) -> ModelState {
        self.with(model, |h| state_of(h, now))
    }

    /// The state of every model this has heard of.
    pub fn snapshot(&self, now: Instant) -> HashMap<String, ModelState> {
        let models = lock(&self.models);
        models
            .iter()
            .map(|(name, h)| (name.clone(), state_of(h, now)))
            .collect()
    }

    /// Whether a call to `model` may go out now. After an open circuit's cooldown, exactly
    /// one call is admitted (half-open) until it succeeds or fails.
    pub fn admit(&self, model: &str, now: Instant) -> bool {
        self.with(model, |h| {
            if h.cooling_until.is_some_and(|t| now < t) {
                return false;
            }
            match h.open_until {
                None => true,
                Some(t) if now < t => false,
                Some(_) if h.probe_in_flight => false,
                Some(_) => {
                    h.probe_in_flight = true;
                    true
                }
            }
        })
    }

    pub fn record_success(&self, model: &str) {
        self.with(model, |h| {
            *h = ModelHealth {
                probe_down: false,
                ..ModelHealth::default()
            };
        });
    }

    /// A call that was cancelled or abandoned says nothing about the model; a half-open
    /// probe that was abandoned frees the slot for the next one.
    pub fn record_abandoned(&self, model: &str) {
        self.with(model, |h| h.probe_in_flight = false);
    }

    /// Records a failure and says whether to retry the same model (only when the delay fits
    /// before `deadline`) or move on to the next.
    pub fn record_failure(
        &self,
        model: &str,
        error: &ProviderError,
        attempt: u32,
        now: Instant,
        deadline: Instant,
    ) -> AfterFailure {
        let jitter = self.next_jitter();
        self.with(model, |h| {
            h.probe_in_flight = false;
            if let Some(retry_after) = rate_limit(error) {
                let cooling = retry_after.unwrap_or(DEFAULT_COOLING);
                h.cooling_until = Some(now + cooling);
                // Waiting out Retry-After is worth it only if it fits in the deadline.
                return if attempt < MAX_ATTEMPTS && now + cooling < deadline {
                    h.cooling_until = None;
                    AfterFailure::Retry(cooling)
                } else {
                    AfterFailure::NextModel
                };
            }
            let delay = backoff(attempt, jitter);
            if is_transient(error) && attempt < MAX_ATTEMPTS && now + delay < deadline {
                // Retried failures do not count: only giving up on the model does.
                return AfterFailure::Retry(delay);
            }
            h.consecutive_failures += 1;
            if h.consecutive_failures >= FAILURES_TO_OPEN || h.open_until.is_some() {
                h.open_until = Some(now + OPEN_COOLDOWN);
            }
            AfterFailure::NextModel
        })
    }

    /// Records a background health probe.
    pub fn record_probe(&self, model: &str, ok: bool) {
        self.with(model, |h| h.probe_down = !ok);
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

fn state_of(h: &ModelHealth, now: Instant) -> ModelState {
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

/// Worth retrying on the same model: server errors (5xx). Not: a refused connection
/// (nothing listens), a timeout (the time is gone), garbage or a stream that broke midway
/// (the next model is the better bet), bad requests, a missing key.
fn is_transient(error: &ProviderError) -> bool {
    match error {
        ProviderError::Status { status, .. } => matches!(status, 500 | 502 | 503 | 504),
        ProviderError::Malformed { .. }
        | ProviderError::Unreachable { .. }
        | ProviderError::Timeout { .. }
        | ProviderError::Stream { .. }
        | ProviderError::MissingKey { .. }
        | ProviderError::Unsupported(_) => false,
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

/// One try of one model, for logs and for telling the user what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub model: Arc<str>,
    /// `None` on success; else the one-line reason.
    pub error: Option<String>,
    pub ms: u64,
}

/// What a chain run produced: the first answer and who gave it, or why nobody did.
#[derive(Debug)]
pub struct ChainOutcome<T> {
    pub answer: Result<(Arc<str>, T), String>,
    pub attempts: Vec<Attempt>,
}

/// Frees a half-open probe slot if the call is dropped before it reports.
struct ProbeGuard<'a> {
    health: &'a Health,
    model: &'a str,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.health.record_abandoned(self.model);
        }
    }
}

/// Tries each model of `chain` in order until one answers: skips models whose circuit is
/// open or that are cooling, retries transient failures with backoff while the retry fits
/// before `retry_until`, and stops everything at `deadline`. Health is updated as it goes.
pub async fn run_chain<T, F, Fut>(
    health: &Health,
    chain: &[(Arc<str>, Arc<ModelConfig>)],
    retry_until: Instant,
    deadline: Instant,
    mut call: F,
) -> ChainOutcome<T>
where
    F: FnMut(Arc<str>, Arc<ModelConfig>) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempts = Vec::new();
    let mut errors = Vec::new();
    'models: for (name, model) in chain {
        if !health.admit(name, Instant::now()) {
            let why = match health.state(name, Instant::now()) {
                ModelState::Cooling { for_ms } => {
                    format!("rate-limited, retry in {} s", for_ms.div_ceil(1000))
                }
                _ => "circuit open".to_string(),
            };
            errors.push(format!("{name}: skipped ({why})"));
            continue;
        }
        let mut guard = ProbeGuard {
            health,
            model: name,
            armed: true,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let t0 = Instant::now();
            let result =
                tokio::time::timeout_at(deadline.into(), call(name.clone(), model.clone())).await;
            let ms = t0.elapsed().as_millis() as u64;
            match result {
                Ok(Ok(answer)) => {
                    guard.armed = false;
                    health.record_success(name);
                    attempts.push(Attempt {
                        model: name.clone(),
                        error: None,
                        ms,
                    });
                    return ChainOutcome {
                        answer: Ok((name.clone(), answer)),
                        attempts,
                    };
                }
                Ok(Err(e)) => {
                    guard.armed = false;
                    let line = e.to_string();
                    attempts.push(Attempt {
                        model: name.clone(),
                        error: Some(line.clone()),
                        ms,
                    });
                    match health.record_failure(
                        name,
                        &e,
                        attempt,
                        Instant::now(),
                        retry_until.min(deadline),
                    ) {
                        AfterFailure::Retry(delay) => {
                            tracing::info!(model = %name, attempt, ?delay, "retrying: {line}");
                            tokio::time::sleep(delay).await;
                        }
                        AfterFailure::NextModel => {
                            errors.push(format!("{name}: {line}"));
                            continue 'models;
                        }
                    }
                }
                Err(_) => {
                    // Out of time: this says nothing certain about the model.
                    attempts.push(Attempt {
                        model: name.clone(),
                        error: Some("deadline reached".into()),
                        ms,
                    });
                    errors.push(format!("{name}: no answer before the deadline"));
                    break 'models;
                }
            }
        }
        errors.push(format!("{name}: gave up after {MAX_ATTEMPTS} attempts"));
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

    #[test]
    fn breaker_opens_after_consecutive_failures_and_half_opens_once() {
        let h = Health::new();
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(600);
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert!(h.admit("m", t0));
            h.record_failure("m", &refused(), 1, t0, far);
        }
        assert_eq!(h.state("m", t0), ModelState::Healthy);
        h.record_failure("m", &refused(), 1, t0, far);
        assert!(matches!(h.state("m", t0), ModelState::CircuitOpen { .. }));
        assert!(!h.admit("m", t0 + Duration::from_secs(1)));
        let later = t0 + OPEN_COOLDOWN + Duration::from_millis(1);
        assert!(h.admit("m", later), "one probe after the cooldown");
        assert!(!h.admit("m", later), "only one");
        // The probe fails: open again for a full cooldown.
        h.record_failure("m", &refused(), 1, later, far);
        assert!(!h.admit("m", later + Duration::from_secs(1)));
        let again = later + OPEN_COOLDOWN + Duration::from_millis(1);
        assert!(h.admit("m", again));
        h.record_success("m");
        assert!(h.admit("m", again) && h.admit("m", again));
        assert_eq!(h.state("m", again), ModelState::Healthy);
    }

    #[test]
    fn a_success_resets_the_count() {
        let h = Health::new();
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(600);
        for _ in 0..10 {
            h.record_failure("m", &refused(), 1, t0, far);
            h.record_failure("m", &refused(), 1, t0, far);
            h.record_success("m");
        }
        assert!(h.admit("m", t0));
    }

    #[test]
    fn rate_limits_cool_the_model_and_retry_only_within_the_deadline() {
        let h = Health::new();
        let t0 = Instant::now();
        // Retry-After 2 s, deadline in 1 s: move on, and the model cools for 2 s.
        let after = h.record_failure(
            "m",
            &status(429, Some(2)),
            1,
            t0,
            t0 + Duration::from_secs(1),
        );
        assert_eq!(after, AfterFailure::NextModel);
        assert!(matches!(h.state("m", t0), ModelState::Cooling { for_ms } if for_ms == 2000));
        assert!(!h.admit("m", t0 + Duration::from_secs(1)));
        assert!(h.admit("m", t0 + Duration::from_secs(3)));
        // Retry-After 1 s with 10 s left: wait it out on the same model.
        let after = h.record_failure(
            "n",
            &status(529, Some(1)),
            1,
            t0,
            t0 + Duration::from_secs(10),
        );
        assert_eq!(after, AfterFailure::Retry(Duration::from_secs(1)));
        // Rate limits do not count towards the breaker.
        for _ in 0..5 {
            h.record_failure("k", &status(429, None), 1, t0, t0);
        }
        assert!(h.admit("k", t0 + DEFAULT_COOLING + Duration::from_millis(1)));
    }

    #[test]
    fn transient_errors_retry_with_backoff_inside_the_deadline() {
        let h = Health::new();
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        match h.record_failure("m", &status(500, None), 1, t0, far) {
            AfterFailure::Retry(d) => assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            h.record_failure(
                "x",
                &status(500, None),
                1,
                t0,
                t0 + Duration::from_millis(10)
            ),
            AfterFailure::NextModel
        );
        assert_eq!(
            h.record_failure("y", &refused(), 1, t0, far),
            AfterFailure::NextModel
        );
        assert_eq!(
            h.record_failure("z", &status(400, None), 1, t0, far),
            AfterFailure::NextModel
        );
        assert_eq!(
            h.record_failure("w", &status(502, None), MAX_ATTEMPTS, t0, far),
            AfterFailure::NextModel
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

    fn model(name: &str) -> (Arc<str>, Arc<ModelConfig>) {
        let toml =
            format!("provider = \"openai\"\nurl = \"http://127.0.0.1:1/v1\"\nmodel = \"{name}\"\n");
        (name.into(), Arc::new(toml::from_str(&toml).unwrap()))
    }

    #[tokio::test(start_paused = true)]
    async fn chains_fall_through_and_retry_within_the_deadline() {
        let h = Health::new();
        let chain = [model("a"), model("b")];
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        let calls = std::cell::RefCell::new(Vec::new());
        // a: 500 twice then ok; b never needed.
        let out = run_chain(&h, &chain, far, far, |_, m| {
            calls.borrow_mut().push(m.model.clone());
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
        assert_eq!(*calls.borrow(), vec!["a", "a", "a"]);
        // a refuses: no retry, b answers.
        calls.borrow_mut().clear();
        let out = run_chain(&h, &chain, far, far, |_, m| {
            calls.borrow_mut().push(m.model.clone());
            let first = m.model == "a";
            async move { if first { Err(refused()) } else { Ok(1) } }
        })
        .await;
        assert_eq!(out.answer.unwrap().0.as_ref(), "b");
        assert_eq!(*calls.borrow(), vec!["a", "b"]);
        assert_eq!(out.attempts.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_is_skipped_and_everything_failing_says_why() {
        let h = Health::new();
        let chain = [model("a")];
        let far = Instant::now() + Duration::from_secs(60);
        let calls = std::cell::Cell::new(0);
        for _ in 0..5 {
            let out: ChainOutcome<()> = run_chain(&h, &chain, Instant::now(), far, |_, _| {
                calls.set(calls.get() + 1);
                async { Err(refused()) }
            })
            .await;
            assert!(out.answer.is_err());
        }
        assert_eq!(
            calls.get(),
            FAILURES_TO_OPEN as usize,
            "the breaker stops calls to a dead endpoint"
        );
        let out: ChainOutcome<()> = run_chain(&h, &chain, Instant::now(), far, |_, _| async {
            Err(refused())
        })
        .await;
        assert!(out.answer.unwrap_err().contains("circuit open"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_the_chain() {
        let h = Health::new();
        let chain = [model("slow"), model("b")];
        let now = Instant::now();
        let deadline = now + Duration::from_millis(100);
        let out = run_chain(&h, &chain, deadline, deadline, |_, m| async move {
            if m.model == "slow" {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok(())
        })
        .await;
        assert!(out.answer.unwrap_err().contains("before the deadline"));
        assert_eq!(
            h.state("slow", Instant::now()),
            ModelState::Healthy,
            "a deadline is not the model's fault"
        );
    }

    #[test]
    fn failed_probes_mark_the_model_down_until_one_succeeds() {
        let h = Health::new();
        let t0 = Instant::now();
        h.record_probe("m", false);
        assert_eq!(h.state("m", t0), ModelState::Down);
        assert!(
            h.admit("m", t0),
            "a down probe does not block calls; the router decides"
        );
        h.record_probe("m", true);
        assert_eq!(h.state("m", t0), ModelState::Healthy);
    }
}
