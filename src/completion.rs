//! The completion path, from a snapshot and a cursor to a suggestion, within a deadline:
//! context → cache (exact, then typed-ahead) → adaptive debounce → one model call in flight
//! per document (joined by identical requests, aborted when no request wants it any more)
//! → post-processing → cache. A newer request for the same document supersedes the older
//! ones, which are answered empty at once. Past the budget the answer is empty, and the
//! model call goes on to fill the cache. Every request reads the session it is given (models,
//! settings, router) and routes through [`RouteInput`]; the engine keeps no configuration of
//! its own. Knows nothing of LSP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cache::{CacheKey, CachedSuggestion, CompletionCache};
use crate::documents::{RelatedFile, Snapshot, path_of_uri};
use crate::postprocess::postprocess;
use crate::prompt::{build_fim, chat_completion_messages};
use crate::providers::{ChatCall, ChatMessage, FimCall, OtherFile, Providers};
use crate::redact::redact;
use crate::resilience::{Health, run_chain};
use crate::route_input::RouteInput;
use crate::router::Decision;
use crate::session::{Model, Session};
use crate::sync::lock;
use crate::syntax::context::{CompletionContext, ContextBudget, extract};

/// A gap between two requests longer than this ends a typing burst: the next request goes
/// to the model at once.
const PAUSE: Duration = Duration::from_millis(400);
/// The debounce never waits longer than this, however slow the rhythm.
const MAX_DEBOUNCE: Duration = Duration::from_millis(150);
/// Single-line suggestions need few tokens; asking for fewer bounds the worst case.
const SINGLE_LINE_MAX_TOKENS: u32 = 64;
/// A multi-line suggestion is a block, not a file: longer ones are rarely kept and, on a
/// local model, cost seconds. A model's `max_output_tokens` (sized for the explanations
/// and rewrites of actions) caps it further.
const MULTILINE_MAX_TOKENS: u32 = 256;

/// Where a suggestion came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Model,
    Cache,
    TypedAhead,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Model => "model",
            Source::Cache => "cache",
            Source::TypedAhead => "typed-ahead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub text: Arc<str>,
    /// The configured name of the model that produced it.
    pub model: Arc<str>,
    pub source: Source,
}

/// Why a request is answered with nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSuggestion {
    /// A newer request for the same document arrived.
    Superseded,
    /// The budget ran out before the model answered (its answer will still be cached).
    Deadline,
    /// The model answered, but nothing worth showing.
    Nothing,
    /// Every model in the chain failed; one clear line saying why.
    Failed(String),
}

pub type Outcome = Result<Suggestion, NoSuggestion>;

/// Counters of what the path did, for logs and benchmarks.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub model_calls: AtomicU64,
    pub aborted_calls: AtomicU64,
    pub cache_hits: AtomicU64,
    pub typed_ahead_hits: AtomicU64,
    pub superseded: AtomicU64,
    pub deadline_exceeded: AtomicU64,
}

/// Per-document request state.
struct DocState {
    /// The sequence number of the newest request; older ones watch it to learn they are
    /// superseded.
    latest: watch::Sender<u64>,
    last_request: Option<Instant>,
    /// Smoothed gap between requests during the current burst.
    rhythm: Option<Duration>,
    inflight: Option<Arc<Flight>>,
}

/// One model call in flight, shared by every request with the same key.
struct Flight {
    key: CacheKey,
    result: watch::Receiver<Option<Result<CachedSuggestion, String>>>,
    abort: tokio::task::AbortHandle,
    /// Requests waiting on it; guarded by the `docs` lock.
    waiters: std::sync::atomic::AtomicUsize,
    /// Set when a request gave up at its deadline: the call then runs on to fill the cache.
    detached: std::sync::atomic::AtomicBool,
}

struct Shared {
    providers: Providers,
    health: Arc<Health>,
    cache: Mutex<CompletionCache>,
    docs: Mutex<HashMap<Arc<str>, DocState>>,
    counters: Counters,
    /// Set when a routing decision found the daily budget spent (a cloud model was kept
    /// out); taken by the caller, who tells the user.
    budget_exhausted: AtomicBool,
}

/// The completion engine. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct CompletionEngine {
    shared: Arc<Shared>,
}

impl CompletionEngine {
    /// An engine whose cache holds `cache_entries` suggestions (a session with another size
    /// resizes it on its first request).
    pub fn new(
        cache_entries: usize,
        providers: Providers,
        health: Arc<Health>,
    ) -> CompletionEngine {
        CompletionEngine {
            shared: Arc::new(Shared {
                providers,
                health,
                cache: Mutex::new(CompletionCache::new(cache_entries)),
                docs: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                budget_exhausted: AtomicBool::new(false),
            }),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Opens pooled connections to the session's completion models, at each of their
    /// endpoints; returns the models none of whose endpoints answered, with the first error.
    pub async fn warm(&self, session: &Session) -> Vec<(Arc<str>, String)> {
        let mut failed = Vec::new();
        for model in session.completion_chain() {
            let mut first_error = None;
            let mut any_up = false;
            for url in model.config.url.iter() {
                match self
                    .shared
                    .providers
                    .warm(&model.config.at_endpoint(url))
                    .await
                {
                    Ok(()) => any_up = true,
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            if let (false, Some(e)) = (any_up, first_error) {
                failed.push((model.name.clone(), e));
            }
        }
        failed
    }

    /// Whether a routing decision since the last call found the daily budget spent.
    pub fn take_budget_exhausted(&self) -> bool {
        self.shared.budget_exhausted.swap(false, Ordering::Relaxed)
    }

    /// Forgets a closed document: its waiting requests end, its model call is aborted.
    pub fn close(&self, uri: &str) {
        if let Some(state) = lock(&self.shared.docs).remove(uri) {
            if let Some(flight) = state.inflight {
                flight.abort.abort();
            }
        }
    }

    /// The context window at `cursor`, as the session shapes it.
    fn context(session: &Session, snapshot: &Snapshot, cursor: usize) -> CompletionContext {
        extract(
            &snapshot.rope,
            snapshot.tree.as_ref(),
            snapshot.language,
            cursor,
            ContextBudget::default(),
            session.completion().multiline,
        )
    }

    /// Answers one completion request at `cursor` (a byte offset into the snapshot).
    /// `related` is context from the user's other open files: it goes to local models that
    /// have a place for it (llama.cpp's `input_extra`), never to a cloud model.
    pub async fn complete(
        &self,
        session: &Arc<Session>,
        snapshot: &Snapshot,
        cursor: usize,
        related: &[RelatedFile],
    ) -> Outcome {
        let started = Instant::now();
        let counters = &self.shared.counters;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let settings = session.completion();
        let (seq, mut latest, debounce) =
            self.begin(&snapshot.uri, started, settings.debounce_floor);

        let ctx = Self::context(session, snapshot, cursor);
        let route = self.route(session, snapshot, cursor, &ctx);
        let Some(primary) = route.chain.first() else {
            return Err(NoSuggestion::Failed(route.why_empty()));
        };
        let key = cache_key(&primary.name, &ctx);

        let cached = {
            let mut cache = lock(&self.shared.cache);
            cache.resize(settings.cache_entries);
            match cache.lookup(&key) {
                Some(hit) => Some((hit, Source::Cache)),
                None => cache
                    .lookup_typed_ahead(&key)
                    .map(|hit| (hit, Source::TypedAhead)),
            }
        };
        if let Some((hit, source)) = cached {
            let counter = if source == Source::Cache {
                &counters.cache_hits
            } else {
                &counters.typed_ahead_hits
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return into_outcome(hit, source);
        }

        if !debounce.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(debounce) => {}
                _ = superseded(&mut latest, seq) => {
                    counters.superseded.fetch_add(1, Ordering::Relaxed);
                    return Err(NoSuggestion::Superseded);
                }
            }
        }

        let other_files = related
            .iter()
            .map(|f| OtherFile {
                name: session.display_path(&path_of_uri(&f.uri)),
                text: Arc::clone(&f.outline),
            })
            .collect();
        let waiter = self.join_or_start(&snapshot.uri, key, (ctx, other_files), route, session);
        let deadline = tokio::time::Instant::from_std(started + settings.budget);
        tokio::select! {
            result = waiter.result() => match result {
                Some(Ok(hit)) => into_outcome(hit, Source::Model),
                Some(Err(message)) => Err(NoSuggestion::Failed(message)),
                None => {
                    counters.superseded.fetch_add(1, Ordering::Relaxed);
                    Err(NoSuggestion::Superseded)
                }
            },
            _ = superseded(&mut latest, seq) => {
                counters.superseded.fetch_add(1, Ordering::Relaxed);
                Err(NoSuggestion::Superseded)
            }
            _ = tokio::time::sleep_until(deadline) => {
                waiter.detach();
                counters.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
                Err(NoSuggestion::Deadline)
            }
        }
    }

    /// Registers a request: supersedes the older ones for the document and decides how long
    /// to debounce (nothing after a pause; during a burst, a bit more than the rhythm).
    fn begin(
        &self,
        uri: &Arc<str>,
        now: Instant,
        floor: Duration,
    ) -> (u64, watch::Receiver<u64>, Duration) {
        let mut docs = lock(&self.shared.docs);
        let state = docs.entry(uri.clone()).or_insert_with(|| DocState {
            latest: watch::channel(0).0,
            last_request: None,
            rhythm: None,
            inflight: None,
        });
        let seq = *state.latest.borrow() + 1;
        state.latest.send_replace(seq);
        let gap = state.last_request.map(|t| now.saturating_duration_since(t));
        state.last_request = Some(now);
        let debounce = match gap {
            Some(gap) if gap < PAUSE => {
                let rhythm = state.rhythm.map_or(gap, |r| (r + gap) / 2);
                state.rhythm = Some(rhythm);
                (rhythm * 3 / 2).clamp(floor, MAX_DEBOUNCE.max(floor))
            }
            _ => {
                state.rhythm = None;
                Duration::ZERO
            }
        };
        (seq, state.latest.subscribe(), debounce)
    }

    /// Waits on the document's model call for `key`, starting one (and aborting any other
    /// call for the document) if none is in flight.
    fn join_or_start(
        &self,
        uri: &Arc<str>,
        key: CacheKey,
        prompt_input: (CompletionContext, Vec<OtherFile>),
        route: Route,
        session: &Arc<Session>,
    ) -> Waiter {
        let mut docs = lock(&self.shared.docs);
        let Some(state) = docs.get_mut(uri) else {
            // The document was closed meanwhile: a flight nobody can join.
            return Waiter {
                flight: None,
                engine: self.clone(),
                uri: uri.clone(),
            };
        };
        if let Some(flight) = state.inflight.as_ref().filter(|f| f.key == key) {
            flight.waiters.fetch_add(1, Ordering::Relaxed);
            return Waiter {
                flight: Some(flight.clone()),
                engine: self.clone(),
                uri: uri.clone(),
            };
        }
        if let Some(old) = state.inflight.take() {
            if !old.abort.is_finished() {
                old.abort.abort();
                self.shared
                    .counters
                    .aborted_calls
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        let (tx, rx) = watch::channel(None);
        self.shared
            .counters
            .model_calls
            .fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(run_flight(
            self.clone(),
            uri.clone(),
            key.clone(),
            prompt_input,
            route,
            session.clone(),
            tx,
        ));
        let flight = Arc::new(Flight {
            key,
            result: rx,
            abort: task.abort_handle(),
            waiters: 1.into(),
            detached: false.into(),
        });
        state.inflight = Some(flight.clone());
        Waiter {
            flight: Some(flight),
            engine: self.clone(),
            uri: uri.clone(),
        }
    }
}

/// The models one request will try, and why.
struct Route {
    chain: Vec<Model>,
    decision: Decision,
}

impl Route {
    /// One line saying why no model can serve this request.
    fn why_empty(&self) -> String {
        let dropped: Vec<String> = self
            .decision
            .candidates
            .iter()
            .map(|v| format!("{}: {}", v.model, v.reason))
            .collect();
        if dropped.is_empty() {
            format!(
                "no model routed for completion ({})",
                self.decision.chain_source
            )
        } else {
            format!(
                "no model can serve completion here ({})",
                dropped.join("; ")
            )
        }
    }
}

impl CompletionEngine {
    /// Routes one completion request through the one routing input: rules (when some apply
    /// to completion, on the features of the enclosing target), privacy, budget, health,
    /// context-window fit.
    fn route(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        cursor: usize,
        ctx: &CompletionContext,
    ) -> Route {
        let input = RouteInput::for_completion(session, snapshot, cursor, ctx);
        let decision = input.decide(session, &self.shared.health, &self.shared.providers);
        if decision.candidates.iter().any(|v| v.demoted) {
            tracing::debug!(
                "completion routed by speed: {}",
                decision.explain().trim_end()
            );
        }
        if decision.budget_exhausted {
            self.shared.budget_exhausted.store(true, Ordering::Relaxed);
        }
        Route {
            chain: session.chain(&decision),
            decision,
        }
    }

    /// The routing decision a completion request at `cursor` would get now, without calling
    /// a model: the same context window, prompt size, secrets check and filters as
    /// [`CompletionEngine::complete`] (for `pilotfish route --task complete`).
    pub fn decide(&self, session: &Session, snapshot: &Snapshot, cursor: usize) -> Decision {
        let ctx = Self::context(session, snapshot, cursor);
        self.route(session, snapshot, cursor, &ctx).decision
    }
}

/// Resolves once a request newer than `seq` exists (or the document is gone).
async fn superseded(latest: &mut watch::Receiver<u64>, seq: u64) {
    while *latest.borrow_and_update() == seq {
        if latest.changed().await.is_err() {
            return;
        }
    }
}

fn cache_key(model: &Arc<str>, ctx: &CompletionContext) -> CacheKey {
    let mut prefix = String::with_capacity(ctx.prefix.len() + 256);
    for line in &ctx.imports {
        prefix.push_str(line);
        prefix.push('\n');
    }
    prefix.push_str(&ctx.prefix);
    CacheKey {
        model: model.clone(),
        prefix,
        suffix: ctx.suffix.clone(),
        multiline: ctx.shape.multiline,
    }
}

fn into_outcome(hit: CachedSuggestion, source: Source) -> Outcome {
    match hit.text {
        Some(text) => Ok(Suggestion {
            text,
            model: hit.answered_by,
            source,
        }),
        None => Err(NoSuggestion::Nothing),
    }
}

/// The model call: tries each candidate in turn, post-processes the first answer, caches
/// it and publishes it to the waiters.
async fn run_flight(
    engine: CompletionEngine,
    uri: Arc<str>,
    key: CacheKey,
    (ctx, other_files): (CompletionContext, Vec<OtherFile>),
    route: Route,
    session: Arc<Session>,
    tx: watch::Sender<Option<Result<CachedSuggestion, String>>>,
) {
    let chain: Vec<_> = route
        .chain
        .iter()
        .map(|m| (m.name.clone(), m.config.clone()))
        .collect();
    let fim_of = |name: &str| {
        route
            .chain
            .iter()
            .find(|m| &*m.name == name)
            .and_then(|m| m.fim)
    };
    let budget = session.completion().budget;
    let redact_before_cloud = session.config().privacy.redact_secrets;
    let started = Instant::now();
    // A completion never waits for a retry: a failed call falls through to the next
    // endpoint or model at once. A call may run on past the budget (up to the model's
    // timeout) to fill the cache.
    let hard_deadline = started
        + route
            .chain
            .iter()
            .map(|m| Duration::from_millis(m.config.timeout_ms))
            .max()
            .unwrap_or(budget);
    let providers = &engine.shared.providers;
    let run = run_chain(
        &engine.shared.health,
        &chain,
        None,
        hard_deadline,
        |name, model| {
            let ctx = &ctx;
            let other_files: &[OtherFile] = if model.is_local() { &other_files } else { &[] };
            let fim = fim_of(&name);
            async move {
                let cloud = redact_before_cloud && !model.is_local();
                let max_tokens = model.max_output_tokens.min(if ctx.shape.multiline {
                    MULTILINE_MAX_TOKENS
                } else {
                    SINGLE_LINE_MAX_TOKENS
                });
                let Some(fim) = fim else {
                    // A chat-only model that a rule sent completion to: a chat prompt, and
                    // post-processing strips the fences and prose chat models add.
                    let (system, user) = chat_completion_messages(ctx);
                    let (system, user) = if cloud {
                        (redact(&system).0, redact(&user).0)
                    } else {
                        (system, user)
                    };
                    let messages = [ChatMessage::user(user)];
                    let call = ChatCall {
                        system: &system,
                        messages: &messages,
                        max_tokens,
                        temperature: 0.0,
                    };
                    let answer = providers.chat(&model, call, &mut |_| {}).await?;
                    return Ok(postprocess(&answer.text, ctx, &[]).map(|kept| (kept, answer)));
                };
                let mut prompt = build_fim(fim, ctx);
                if cloud {
                    prompt.prompt = redact(&prompt.prompt).0;
                    prompt.suffix = prompt.suffix.map(|s| redact(&s).0);
                }
                let call = FimCall {
                    prompt: &prompt,
                    max_tokens,
                    time_budget: Some(budget),
                    other_files,
                };
                let answer = providers.fim(&model, call).await?;
                Ok(postprocess(&answer.text, ctx, &prompt.stop).map(|kept| (kept, answer)))
            }
        },
    )
    .await;
    let endpoint = run.endpoint().unwrap_or_default().to_string();
    let outcome = match run.answer {
        Ok((name, kept)) => {
            // The model call, where it went (the request's own line, `suggestion`, follows
            // from lsp.rs when the answer is still wanted).
            tracing::info!(
                model = %name,
                endpoint,
                calls = run.attempts.len(),
                ms = started.elapsed().as_millis() as u64,
                raw = kept.as_ref().map_or(0, |(_, a)| a.text.len()),
                kept = kept.as_ref().map_or(0, |(k, _)| k.len()),
                "completion answered"
            );
            let hit = CachedSuggestion {
                text: kept.map(|(k, _)| k.into()),
                answered_by: name,
            };
            lock(&engine.shared.cache).insert(key.clone(), hit.clone());
            Ok(hit)
        }
        Err(why) => {
            tracing::warn!("completion failed: {why}");
            Err(why)
        }
    };
    tx.send_replace(Some(outcome));
    let mut docs = lock(&engine.shared.docs);
    if let Some(state) = docs.get_mut(&uri) {
        if state.inflight.as_ref().is_some_and(|f| f.key == key) {
            state.inflight = None;
        }
    }
}

/// A request's hold on a flight. Dropping the last hold on a flight that is not detached
/// aborts the model call: nobody wants its answer (superseded, or `$/cancelRequest`).
struct Waiter {
    flight: Option<Arc<Flight>>,
    engine: CompletionEngine,
    uri: Arc<str>,
}

impl Waiter {
    /// The flight's outcome; None if it was aborted.
    async fn result(&self) -> Option<Result<CachedSuggestion, String>> {
        let mut rx = self.flight.as_ref()?.result.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return Some(r);
            }
            rx.changed().await.ok()?;
        }
    }

    fn detach(&self) {
        if let Some(f) = &self.flight {
            f.detached.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        let mut docs = lock(&self.engine.shared.docs);
        let last = flight.waiters.fetch_sub(1, Ordering::Relaxed) == 1;
        if last && !flight.detached.load(Ordering::Relaxed) && !flight.abort.is_finished() {
            flight.abort.abort();
            self.engine
                .shared
                .counters
                .aborted_calls
                .fetch_add(1, Ordering::Relaxed);
            if let Some(state) = docs.get_mut(&self.uri) {
                if state
                    .inflight
                    .as_ref()
                    .is_some_and(|f| Arc::ptr_eq(f, &flight))
                {
                    state.inflight = None;
                }
            }
        }
    }
}
