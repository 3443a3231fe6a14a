//! The completion path, from a snapshot and a cursor to a suggestion, within a deadline:
//! context → cache (exact, then typed-ahead) → adaptive debounce → one model call in flight
//! per document (joined by identical requests, aborted when no request wants it any more)
//! → post-processing → cache. A newer request for the same document supersedes the older
//! ones, which are answered empty at once. Past the budget the answer is empty, and the
//! model call goes on to fill the cache. Knows nothing of LSP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cache::{CacheKey, CachedSuggestion, CompletionCache};
use crate::config::{Config, ModelConfig, Provider};
use crate::documents::{RelatedFile, Snapshot};
use crate::postprocess::postprocess;
use crate::prompt::{Fim, build_fim, chat_completion_messages};
use crate::providers::{ChatCall, ChatMessage, FimCall, ModelAnswer, OtherFile, Providers};
use crate::redact::{contains_secrets, redact};
use crate::resilience::{Health, Timed, run_chain};
use crate::router::{Decision, RouteRequest, RouteState, Router, secrets_to_route};
use crate::sync::lock;
use crate::syntax::Language;
use crate::syntax::context::{CHARS_PER_TOKEN, CompletionContext, ContextBudget, extract};
use crate::syntax::features::{Features, enclosing_target};
use crate::telemetry::{
    CacheUse, Outcome as Logged, PendingCall, RouteFacts, RouteNote, Usage, UsageEvent, UsageLog,
};

/// The routing task name of completion.
const TASK: &str = "complete";

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
    /// The request's id in the usage log (the editor's accept names it).
    pub id: Arc<str>,
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

/// A model that can serve completion, with its FIM mode resolved; `None` for a chat-only
/// model, which serves completion through a chat prompt when a rule or route sends
/// completion to it.
#[derive(Clone)]
struct Candidate {
    name: Arc<str>,
    model: Arc<ModelConfig>,
    /// None: a chat-only model, asked through a chat prompt.
    fim: Option<Fim>,
}

/// The settings the path reads on every request; replaced whole on reconfiguration.
struct Settings {
    /// Every configured model, by name.
    candidates: HashMap<String, Candidate>,
    /// Whether some `[[rules]]` entry may apply to completion (then the target's features
    /// are computed for each request; otherwise they are not needed).
    rules_apply: bool,
    /// The rules and privacy globs, compiled once per configuration.
    router: Router,
    /// Whether some model that completion may use is a cloud model (then the prompt is
    /// checked for secrets).
    any_cloud: bool,
    /// Whether some model takes other files' context (a local llama.cpp `/infill`): only
    /// then is it gathered.
    takes_other_files: bool,
    workspace_root: Option<String>,
    budget: Duration,
    debounce_floor: Duration,
    config: Arc<Config>,
}

impl Settings {
    fn from_config(config: Arc<Config>, workspace_root: Option<String>) -> Settings {
        let candidates: HashMap<String, Candidate> = config
            .models
            .iter()
            .map(|(name, model)| {
                let candidate = Candidate {
                    name: name.as_str().into(),
                    model: Arc::new(model.clone()),
                    fim: model.fim(),
                };
                (name.clone(), candidate)
            })
            .collect();
        let rules_apply = config
            .rules
            .iter()
            .any(|r| r.task.as_deref().is_none_or(|t| t == TASK));
        let any_cloud = candidates.values().any(|c: &Candidate| !c.model.is_local());
        let takes_other_files = candidates
            .values()
            .any(|c| c.model.provider == Provider::Llamacpp && c.model.is_local());
        let router = Router::new(&config).unwrap_or_else(|e| {
            // Config loading compiles the router too, so this is unreachable for a loaded
            // config; fall back to a router without rules rather than panic.
            tracing::error!("routing rules unusable: `{}`: {}", e.key, e.reason);
            let mut bare = (*config).clone();
            bare.rules.clear();
            bare.privacy.local_only.clear();
            Router::new(&bare).expect("a config without rules or globs compiles")
        });
        Settings {
            candidates,
            rules_apply,
            router,
            any_cloud,
            takes_other_files,
            workspace_root,
            budget: Duration::from_millis(config.completion.budget_ms),
            debounce_floor: Duration::from_millis(config.completion.debounce_ms),
            config,
        }
    }
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
    /// Why the call was aborted ([`ABORT_CANCELLED`] or [`ABORT_SUPERSEDED`]), for its line
    /// in the usage log; set before the abort.
    abort_reason: Arc<AtomicU8>,
}

/// The editor cancelled the request, or closed the document.
const ABORT_CANCELLED: u8 = 0;
/// A newer request for the document took the call's place.
const ABORT_SUPERSEDED: u8 = 1;

impl Flight {
    fn abort(&self, reason: u8) {
        self.abort_reason.store(reason, Ordering::Relaxed);
        self.abort.abort();
    }
}

struct Shared {
    providers: Providers,
    health: Arc<Health>,
    settings: RwLock<Arc<Settings>>,
    cache: Mutex<CompletionCache>,
    docs: Mutex<HashMap<Arc<str>, DocState>>,
    counters: Counters,
    /// Every model call and cache answer gets a line; the day's spend comes from here.
    usage: UsageLog,
    /// Set when the daily budget keeps a cloud model out and the user has not been told
    /// today; taken by the caller, who tells the user.
    budget_notice: Mutex<Option<String>>,
}

/// The completion engine. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct CompletionEngine {
    shared: Arc<Shared>,
}

impl CompletionEngine {
    pub fn new(
        config: Arc<Config>,
        providers: Providers,
        health: Arc<Health>,
        usage: UsageLog,
    ) -> CompletionEngine {
        let cache = CompletionCache::new(config.completion.cache_entries);
        CompletionEngine {
            shared: Arc::new(Shared {
                providers,
                health,
                settings: RwLock::new(Arc::new(Settings::from_config(config, None))),
                cache: Mutex::new(cache),
                docs: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                usage,
                budget_notice: Mutex::new(None),
            }),
        }
    }

    /// Takes a new configuration and workspace root; the cache is kept (its keys name the
    /// model).
    pub fn reconfigure(&self, config: Arc<Config>, workspace_root: Option<String>) {
        lock(&self.shared.cache).resize(config.completion.cache_entries);
        *self
            .shared
            .settings
            .write()
            .unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Settings::from_config(config, workspace_root));
    }

    fn settings(&self) -> Arc<Settings> {
        self.shared
            .settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The models of the default completion route, in order.
    pub fn default_chain(&self) -> Vec<(Arc<str>, Arc<ModelConfig>)> {
        let settings = self.settings();
        let route = settings
            .config
            .routes
            .get(TASK)
            .cloned()
            .unwrap_or_default();
        route
            .iter()
            .filter_map(|name| settings.candidates.get(name))
            .filter(|c| c.fim.is_some())
            .map(|c| (c.name.clone(), c.model.clone()))
            .collect()
    }

    /// Opens pooled connections to the completion models, at each of their endpoints;
    /// returns the models none of whose endpoints answered, with the first error.
    pub async fn warm(&self) -> Vec<(Arc<str>, String)> {
        let mut failed = Vec::new();
        for (name, model) in self.default_chain() {
            let mut first_error = None;
            let mut any_up = false;
            for url in model.url.iter() {
                match self.shared.providers.warm(&model.at_endpoint(url)).await {
                    Ok(()) => any_up = true,
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            if let (false, Some(e)) = (any_up, first_error) {
                failed.push((name, e));
            }
        }
        failed
    }

    /// The one-time notice that the daily budget keeps cloud models out, if it is due.
    pub fn take_budget_notice(&self) -> Option<String> {
        lock(&self.shared.budget_notice).take()
    }

    /// Forgets a closed document: its waiting requests end, its model call is aborted.
    pub fn close(&self, uri: &str) {
        if let Some(state) = lock(&self.shared.docs).remove(uri) {
            if let Some(flight) = state.inflight {
                flight.abort(ABORT_CANCELLED);
            }
        }
    }

    /// Whether completion routing reads the target's features (some rule may apply to
    /// completion): then it is worth filling a document's features memo when it opens.
    pub fn routes_on_features(&self) -> bool {
        self.settings().rules_apply
    }

    /// Whether some completion model takes context from other files: then the caller
    /// passes it to [`CompletionEngine::complete`]; otherwise it need not gather it.
    pub fn takes_other_files(&self) -> bool {
        self.settings().takes_other_files
    }

    /// The context window at `cursor`, as the settings shape it.
    fn context(settings: &Settings, snapshot: &Snapshot, cursor: usize) -> CompletionContext {
        extract(
            &snapshot.rope,
            snapshot.tree.as_ref(),
            snapshot.language,
            cursor,
            ContextBudget::default(),
            settings.config.completion.multiline.into(),
        )
    }

    /// Answers one completion request at `cursor` (a byte offset into the snapshot).
    /// `related` is context from the user's other open files: it goes to local models that
    /// have a place for it (llama.cpp's `input_extra`), never to a cloud model.
    pub async fn complete(
        &self,
        snapshot: &Snapshot,
        cursor: usize,
        related: &[RelatedFile],
    ) -> Outcome {
        let started = Instant::now();
        let counters = &self.shared.counters;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = self.shared.usage.next_id().into();
        let settings = self.settings();
        let (seq, mut latest, debounce) =
            self.begin(&snapshot.uri, started, settings.debounce_floor);

        let ctx = Self::context(&settings, snapshot, cursor);
        let route = self.route(&settings, snapshot, cursor, &ctx);
        let Some(primary) = route.chain.first() else {
            return Err(NoSuggestion::Failed(route.why_empty()));
        };
        let key = cache_key(&primary.name, &ctx);

        let cached = {
            let mut cache = lock(&self.shared.cache);
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
            let (cache, outcome) = match (source, hit.text.is_some()) {
                (Source::Cache, true) => (CacheUse::Hit, Logged::Ok),
                (Source::Cache, false) => (CacheUse::Hit, Logged::Empty),
                (_, true) => (CacheUse::TypedAhead, Logged::Ok),
                (_, false) => (CacheUse::TypedAhead, Logged::Empty),
            };
            self.shared.usage.record(UsageEvent::cache(
                &id,
                TASK,
                snapshot.language,
                &hit.answered_by,
                cache,
                outcome,
                started.elapsed().as_millis() as u64,
            ));
            return into_outcome(hit, source, id);
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
                name: relative_path(&f.uri, settings.workspace_root.as_deref()),
                text: Arc::clone(&f.outline),
            })
            .collect();
        let waiter = self.join_or_start(
            &snapshot.uri,
            key,
            (ctx, other_files),
            route,
            &settings,
            &id,
        );
        let deadline = tokio::time::Instant::from_std(started + settings.budget);
        tokio::select! {
            result = waiter.result() => match result {
                Some(Ok(hit)) => into_outcome(hit, Source::Model, id),
                Some(Err(message)) => Err(NoSuggestion::Failed(message)),
                None => {
                    counters.superseded.fetch_add(1, Ordering::Relaxed);
                    Err(NoSuggestion::Superseded)
                }
            },
            _ = superseded(&mut latest, seq) => {
                counters.superseded.fetch_add(1, Ordering::Relaxed);
                waiter.superseded();
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
        settings: &Arc<Settings>,
        id: &Arc<str>,
    ) -> Waiter {
        let mut docs = lock(&self.shared.docs);
        let Some(state) = docs.get_mut(uri) else {
            // The document was closed meanwhile: a flight nobody can join.
            return Waiter {
                flight: None,
                engine: self.clone(),
                uri: uri.clone(),
                superseded: false,
            };
        };
        if let Some(flight) = state.inflight.as_ref().filter(|f| f.key == key) {
            flight.waiters.fetch_add(1, Ordering::Relaxed);
            return Waiter {
                flight: Some(flight.clone()),
                engine: self.clone(),
                uri: uri.clone(),
                superseded: false,
            };
        }
        if let Some(old) = state.inflight.take() {
            if !old.abort.is_finished() {
                old.abort(ABORT_SUPERSEDED);
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
        let abort_reason = Arc::new(AtomicU8::new(ABORT_CANCELLED));
        let log = call_log(&self.shared.usage, id, &route, abort_reason.clone());
        let task = tokio::spawn(run_flight(
            self.clone(),
            uri.clone(),
            key.clone(),
            prompt_input,
            route,
            settings.clone(),
            tx,
            log,
        ));
        let flight = Arc::new(Flight {
            key,
            result: rx,
            abort: task.abort_handle(),
            waiters: 1.into(),
            detached: false.into(),
            abort_reason,
        });
        state.inflight = Some(flight.clone());
        Waiter {
            flight: Some(flight),
            engine: self.clone(),
            uri: uri.clone(),
            superseded: false,
        }
    }
}

/// The models one request will try, and why.
struct Route {
    chain: Vec<Candidate>,
    decision: Decision,
    /// What the decision read, for the usage log.
    facts: RouteFacts,
    language: Language,
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
    /// Routes one completion request: rules (when some apply to completion, on the
    /// features of the enclosing target), privacy, health, context-window fit.
    fn route(
        &self,
        settings: &Settings,
        snapshot: &Snapshot,
        cursor: usize,
        ctx: &CompletionContext,
    ) -> Route {
        let features = if settings.rules_apply {
            let target = enclosing_target(
                &snapshot.rope,
                snapshot.tree.as_ref(),
                snapshot.language,
                cursor,
            );
            snapshot.features(&target)
        } else {
            Features::at_cursor(snapshot.language)
        };
        let path = path_of_uri(&snapshot.uri);
        let prompt_chars = ctx.prefix.len()
            + ctx.suffix.len()
            + ctx.imports.iter().map(|l| l.len() + 1).sum::<usize>();
        let prompt_tokens = (prompt_chars / CHARS_PER_TOKEN) as u32;
        // With redaction on, secrets are masked before a cloud call; with it off, finding
        // any keeps the request on local models.
        let secrets_found = if settings.any_cloud {
            secrets_to_route(&settings.config.privacy, || {
                ctx.imports
                    .iter()
                    .map(|l| contains_secrets(l))
                    .sum::<usize>()
                    + contains_secrets(&ctx.prefix)
                    + contains_secrets(&ctx.suffix)
            })
        } else {
            0
        };
        let request = RouteRequest {
            task: TASK,
            features: &features,
            path: &path,
            workspace_root: settings.workspace_root.as_deref(),
            secrets_found,
            prompt_tokens,
        };
        let state = RouteState {
            models: self.shared.health.snapshot(Instant::now()),
            spent_today_usd: self.shared.usage.spent_today_usd(),
        };
        let decision = settings.router.decide(&request, &state);
        let facts = RouteFacts::of(&request);
        if decision.candidates.iter().any(|v| v.demoted) {
            tracing::debug!(
                "completion routed by speed: {}",
                decision.explain().trim_end()
            );
        }
        if decision.budget_exhausted {
            let limit = settings.config.budget.daily_usd.unwrap_or_default();
            if let Some(notice) = self.shared.usage.budget_notice(limit) {
                *lock(&self.shared.budget_notice) = Some(notice);
            }
        }
        let chain = decision
            .chain()
            .filter_map(|name| settings.candidates.get(name).cloned())
            .collect();
        Route {
            chain,
            decision,
            facts,
            language: snapshot.language,
        }
    }
}

impl CompletionEngine {
    /// The routing decision a completion request at `cursor` would get now, without calling
    /// a model: the same context window, prompt size, secrets check and filters as
    /// [`CompletionEngine::complete`] (for `pilotfish route --task complete`).
    pub fn decide(&self, snapshot: &Snapshot, cursor: usize) -> Decision {
        let settings = self.settings();
        let ctx = Self::context(&settings, snapshot, cursor);
        self.route(&settings, snapshot, cursor, &ctx).decision
    }
}

/// The file path inside a `file://` URI (percent-decoded); other URIs are returned as is.
pub fn path_of_uri(uri: &str) -> String {
    let Some(rest) = uri.strip_prefix("file://") else {
        return uri.to_string();
    };
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A document's path for the model: relative to the workspace root when inside it.
fn relative_path(uri: &str, workspace_root: Option<&str>) -> String {
    let path = path_of_uri(uri);
    workspace_root
        .and_then(|root| path.strip_prefix(root))
        .and_then(|rest| rest.strip_prefix('/'))
        .map_or_else(|| path.clone(), str::to_string)
}

/// The length of a chat call's messages.
fn user_len(messages: &[ChatMessage]) -> usize {
    messages.iter().map(|m| m.content.len()).sum()
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

fn into_outcome(hit: CachedSuggestion, source: Source, id: Arc<str>) -> Outcome {
    match hit.text {
        Some(text) => Ok(Suggestion {
            id,
            text,
            model: hit.answered_by,
            source,
        }),
        None => Err(NoSuggestion::Nothing),
    }
}

/// One model's answer to a flight: the post-processed suggestion (if any was kept), the raw
/// answer, what it cost and, with `telemetry.log_prompts`, the prompt.
struct FlightAnswer {
    kept: Option<String>,
    answer: ModelAnswer,
    usage: Usage,
    prompt: Option<String>,
}

impl Timed for FlightAnswer {
    fn first_token(&self) -> Option<Duration> {
        self.answer.first_token
    }
}

/// The usage-log line of a flight's model call: an aborted call is logged with the reason
/// its aborter left.
fn call_log(usage: &UsageLog, id: &str, route: &Route, abort_reason: Arc<AtomicU8>) -> PendingCall {
    let mut event =
        UsageEvent::call(id, TASK, route.language).by(route.chain.first().map(|c| &*c.name), None);
    event.facts = Some(route.facts.clone());
    event.route = Some(RouteNote::of(&route.decision, &[]));
    PendingCall::start(usage, event, move || {
        match abort_reason.load(Ordering::Relaxed) {
            ABORT_SUPERSEDED => Logged::Superseded,
            _ => Logged::Cancelled,
        }
    })
}

/// The model call: tries each candidate in turn, post-processes the first answer, caches
/// it and publishes it to the waiters; its line goes to the usage log.
#[allow(clippy::too_many_arguments)]
async fn run_flight(
    engine: CompletionEngine,
    uri: Arc<str>,
    key: CacheKey,
    (ctx, other_files): (CompletionContext, Vec<OtherFile>),
    route: Route,
    settings: Arc<Settings>,
    tx: watch::Sender<Option<Result<CachedSuggestion, String>>>,
    mut log: PendingCall,
) {
    let log_prompts = engine.shared.usage.log_prompts();
    let chain: Vec<_> = route
        .chain
        .iter()
        .map(|c| (c.name.clone(), c.model.clone()))
        .collect();
    let fim_of = |name: &str| {
        route
            .chain
            .iter()
            .find(|c| &*c.name == name)
            .and_then(|c| c.fim)
    };
    let budget = settings.budget;
    let redact_before_cloud = settings.config.privacy.redact_secrets;
    let started = Instant::now();
    // A completion never waits for a retry: a failed call falls through to the next
    // endpoint or model at once. A call may run on past the budget (up to the model's
    // timeout) to fill the cache.
    let hard_deadline = started
        + route
            .chain
            .iter()
            .map(|c| Duration::from_millis(c.model.timeout_ms))
            .max()
            .unwrap_or(settings.budget);
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
                    let sent = system.len() + user_len(&messages);
                    let usage = Usage::of(
                        &model,
                        (answer.tokens_in, answer.tokens_out),
                        sent,
                        answer.text.len(),
                    );
                    return Ok(FlightAnswer {
                        kept: postprocess(&answer.text, ctx, &[]),
                        prompt: log_prompts.then(|| messages[0].content.clone()),
                        answer,
                        usage,
                    });
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
                let sent = prompt.prompt.len() + prompt.suffix.as_ref().map_or(0, String::len);
                let usage = Usage::of(
                    &model,
                    (answer.tokens_in, answer.tokens_out),
                    sent,
                    answer.text.len(),
                );
                Ok(FlightAnswer {
                    kept: postprocess(&answer.text, ctx, &prompt.stop),
                    prompt: log_prompts.then(|| match &prompt.suffix {
                        Some(suffix) => format!("{}<suffix>{suffix}", prompt.prompt),
                        None => prompt.prompt.clone(),
                    }),
                    answer,
                    usage,
                })
            }
        },
    )
    .await;
    let endpoint = run.endpoint().unwrap_or_default().to_string();
    let note = RouteNote::of(&route.decision, &run.attempts);
    let outcome = match run.answer {
        Ok((name, answered)) => {
            // The model call, where it went (the request's own line, `suggestion`, follows
            // from lsp.rs when the answer is still wanted).
            tracing::info!(
                model = %name,
                endpoint,
                calls = run.attempts.len(),
                ms = started.elapsed().as_millis() as u64,
                raw = answered.answer.text.len(),
                kept = answered.kept.as_ref().map_or(0, String::len),
                "completion answered"
            );
            let answered_ms = run.attempts.last().map_or(0, |a| a.ms);
            log.finish(|e| {
                let mut e = e.by(Some(&name), Some(&endpoint)).usage(answered.usage);
                e.route = Some(note);
                // A FIM answer arrives whole: its first token comes with it.
                e.ttft_ms = Some(
                    answered
                        .answer
                        .first_token
                        .map_or(answered_ms, |t| t.as_millis() as u64),
                );
                e.outcome = Some(if answered.kept.is_some() {
                    Logged::Ok
                } else {
                    Logged::Empty
                });
                e.prompt = answered.prompt;
                e
            });
            let hit = CachedSuggestion {
                text: answered.kept.map(Into::into),
                answered_by: name,
            };
            lock(&engine.shared.cache).insert(key.clone(), hit.clone());
            Ok(hit)
        }
        Err(why) => {
            tracing::warn!("completion failed: {why}");
            let last = run.attempts.last().map(|a| a.model.clone());
            log.finish(|e| {
                let mut e = match last {
                    Some(model) => e.by(Some(&model), None),
                    None => e,
                };
                e.outcome = Some(Logged::of_failed_chain(&run.attempts));
                e.note = Some(why.clone());
                e.route = Some(note);
                e
            });
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
    /// The request gave up because a newer one arrived (else, when it drops its hold
    /// unanswered, it was cancelled).
    superseded: bool,
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

    /// A newer request took this one's place: if the call is dropped, that is why.
    fn superseded(mut self) {
        self.superseded = true;
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
            flight.abort(if self.superseded {
                ABORT_SUPERSEDED
            } else {
                ABORT_CANCELLED
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_uris() {
        assert_eq!(path_of_uri("file:///home/a%20b/x.rs"), "/home/a b/x.rs");
        assert_eq!(path_of_uri("file:///t/%E6%97%A5.py"), "/t/日.py");
        assert_eq!(path_of_uri("file:///t/100%"), "/t/100%");
        assert_eq!(path_of_uri("file:///t/%zz"), "/t/%zz");
        assert_eq!(path_of_uri("untitled:1"), "untitled:1");
    }
}
