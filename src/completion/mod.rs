//! The completion path, from a snapshot and a cursor to a suggestion: context → cache
//! (exact, then typed-ahead) → debounce → one model call in flight per document → post-
//! processing → cache. Knows nothing of LSP.
//!
//! - A newer request for the same document supersedes the older ones, which are answered
//!   empty at once. The newest waits for its model as long as it takes (up to the model's
//!   timeout): a model slower than `completion.budget_ms` still gets its suggestion to the
//!   user, unless they type on or move away.
//! - The budget is what the path aims for: the router prefers models measured inside it, and
//!   the debounce never pushes a model that can make it past it ([`policy`]).
//! - A model call is joined by identical requests, and — when the model is slower than the
//!   budget — by requests that only typed on at its end, whose answer it may give through
//!   typed-ahead reuse; otherwise it is aborted as soon as no request wants it.
//! - After a suggestion is shown, the one for the place after accepting it is computed in
//!   the background ([`CompletionEngine::delivered`]), on local models only unless the
//!   config says otherwise; it gives way to any request for something else.
//! - A local model server's prompt cache is warmed where the user is about to ask
//!   ([`warm_up`]); a slow model's block or next line is streamed so that its first line
//!   shows the moment it is written ([`first_line`]).
//!
//! Every request reads the session it is given (models, settings, router) and routes
//! through [`RouteInput`]; the engine keeps no configuration of its own.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cache::{CacheKey, CachedSuggestion, CompletionCache};
use crate::config::{ModelConfig, PrefetchSetting};
use crate::documents::{ByteEdit, RelatedFile, Snapshot, path_of_uri};
use crate::postprocess::{lines_after, postprocess};
use crate::prompt::{
    Fim, FimPrompt, Repo, build_fim_in_repo, chat_completion_messages, fit_other_files,
};
use crate::providers::{
    ChatCall, ChatMessage, FimCall, ModelAnswer, OtherFile, ProviderError, Providers, Thinking,
};
use crate::reasoning::after_reasoning;
use crate::redact::redact;
use crate::resilience::{ChainOutcome, Deadline, Health, Timed, Work, run_chain};
use crate::route_input::RouteInput;
use crate::router::{COMPLETE, Decision, EndpointVerdict, Latency};
use crate::session::{Model, Session};
use crate::sync::lock;
use crate::syntax::Language;
use crate::syntax::context::{CompletionContext, ContextBudget, extract};
use crate::telemetry::{
    CacheUse, Outcome as Logged, PendingCall, RouteFacts, RouteNote, Usage, UsageEvent, UsageLog,
};

mod first_line;
mod policy;
mod warm_up;

use first_line::{Followed, fim_first_line_first};
pub use warm_up::CursorRest;
use warm_up::{ReadAt, WarmUp};

use policy::{Serves, Speed};

/// Single-line suggestions need few tokens; asking for fewer bounds the worst case. The
/// next line after a statement gets as many: its call has no line-break stop (a line break
/// starts it), so a slow model's is streamed and closed once the line is out.
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
    /// Requests answered by the model after the budget.
    pub late: AtomicU64,
    /// Requests that waited on a call they typed along (a slow model's).
    pub typed_along: AtomicU64,
    /// Model calls made in the background for the place after accepting a suggestion.
    pub prefetches: AtomicU64,
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
    /// The text typed along the call in flight: from the byte offset where typing keeps it
    /// useful (where it was asked, or where the suggestion a prefetch follows was shown) to
    /// where typing there has come since ([`CompletionEngine::edited`]).
    typed_along: Range<usize>,
    /// Where the last edit was: the start of its enclosing definition (or of the file).
    last_place: Option<usize>,
    /// Where the cursor last rested ([`CompletionEngine::cursor_rests`]), the same way.
    cursor_place: Option<usize>,
    /// Bumped by every edit and every cursor report: a cursor rest is over when it moves.
    cursor_moves: u64,
    /// A cursor rest at a new place waits to settle ([`CompletionEngine::cursor_rests`]): a
    /// report of the cursor at the same place meanwhile takes it over.
    rest_pending: bool,
    /// The last suggestion delivered, to recognise its acceptance.
    shown: Option<Shown>,
}

impl DocState {
    /// Whether a model call for the document is running.
    fn busy(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|f| !f.abort.is_finished())
    }

    fn new() -> DocState {
        DocState {
            latest: watch::channel(0).0,
            last_request: None,
            rhythm: None,
            inflight: None,
            typed_along: 0..0,
            last_place: None,
            cursor_place: None,
            cursor_moves: 0,
            rest_pending: false,
            shown: None,
        }
    }
}

/// A suggestion delivered to the editor.
#[derive(Debug, Clone)]
struct Shown {
    version: i32,
    /// Byte offset of the cursor it was shown at.
    cursor: usize,
    text: Arc<str>,
}

/// One model call in flight, shared by every request it can serve.
struct Flight {
    key: CacheKey,
    result: watch::Receiver<Published>,
    abort: tokio::task::AbortHandle,
    /// Requests waiting on it; guarded by the `docs` lock.
    waiters: std::sync::atomic::AtomicUsize,
    /// Whether it runs on when its last request lets go (cancelled, or superseded before the
    /// next request joins it): for a model slower than the budget (or not measured yet),
    /// whose call the next keystroke's request may join. It is aborted instead by an edit
    /// it cannot serve, or by the next call the document needs.
    runs_on: bool,
    /// Why the call was aborted ([`ABORT_CANCELLED`] or [`ABORT_SUPERSEDED`]), for its line
    /// in the usage log; set before the abort.
    abort_reason: Arc<AtomicU8>,
    /// Whether its answer may span lines (a block, or the next line after a statement).
    spans_lines: bool,
    /// How far the user has come along its answer ([`Flight::followed_by`]): a slow model's
    /// stream reads on while the user keeps up.
    followed: Arc<Followed>,
    purpose: Purpose,
    /// What its prompt has past the place typing along it starts: the suggestion a prefetch
    /// follows, accepted in its prompt (empty for a request's call).
    ahead: Arc<str>,
}

/// The editor cancelled the request, or closed the document.
const ABORT_CANCELLED: u8 = 0;
/// A newer request (or call) for the document took the call's place.
const ABORT_SUPERSEDED: u8 = 1;

impl Flight {
    fn abort(&self, reason: u8) {
        self.abort_reason.store(reason, Ordering::Relaxed);
        self.abort.abort();
    }

    /// Notes a request for `key` (joining the call or answered from the cache) that follows
    /// the call: typed along it, or asked at the place it was made for in the background.
    fn followed_by(&self, key: &CacheKey) {
        let typed = match policy::serves(&self.key, self.spans_lines, key) {
            Serves::TypedAlong => &key.prefix[self.key.prefix.len()..],
            Serves::Same if self.purpose == Purpose::Prefetch => "",
            _ => return,
        };
        let mut followed = lock(&self.followed);
        if followed.as_ref().is_none_or(|f| f.len() <= typed.len()) {
            *followed = Some(typed.to_owned());
        }
    }

    /// Whether `typed`, the text typed along the call, agrees with what the call expects
    /// there: what its prompt has past that place, then what it has written so far (its
    /// suggestion and the lines after) — [`policy::agrees`].
    fn agrees_with(&self, typed: impl IntoIterator<Item = u8>) -> bool {
        let published = self.result.borrow();
        let (text, then) = match &*published {
            Some(Ok(hit)) => (hit.text.as_deref(), hit.then.as_deref()),
            _ => (None, None),
        };
        policy::agrees(
            typed,
            [&*self.ahead, text.unwrap_or(""), then.unwrap_or("")],
        )
    }
}

/// A model call to start: for `key`, from the context and other files, on `route`.
struct NewCall {
    key: CacheKey,
    input: (CompletionContext, Vec<OtherFile>),
    route: Route,
    purpose: Purpose,
    /// The byte offset, in the live document, where typing keeps the call useful.
    typing_point: usize,
    /// What the prompt has past `typing_point` ([`Flight::ahead`]).
    ahead: Arc<str>,
    runs_on: bool,
    /// Its id in the usage log.
    id: Arc<str>,
}

/// What a flight has published: nothing yet, its answer (a first line first, for a slow
/// model's block), or why no model answered.
type Published = Option<Result<CachedSuggestion, String>>;

/// Why a model call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// For a request: aborted when no request waits on it any more.
    Request,
    /// In the background, for the place after accepting a shown suggestion: runs with no
    /// request waiting, and gives way to the next call the document needs.
    Prefetch,
}

struct Shared {
    providers: Providers,
    health: Arc<Health>,
    cache: Mutex<CompletionCache>,
    docs: Mutex<HashMap<Arc<str>, DocState>>,
    counters: Counters,
    /// Every model call and cache answer gets a line; the day's spend comes from here.
    usage: UsageLog,
    /// Set when a routing decision found the daily budget spent (a cloud model was kept
    /// out); taken by the caller, who tells the user.
    budget_exhausted: AtomicBool,
    /// The warm-up in flight, if any (at most one, for any document).
    warm_up: Mutex<Option<WarmUp>>,
    /// Per model: where the last prompt sent to it (a call's or a warm-up's) was read. A
    /// model server keeps the prompt it read last (llama-server's one slot, the default):
    /// a prompt in another document, read since, has taken its place.
    last_read: Mutex<HashMap<Arc<str>, ReadAt>>,
    /// The document the user last edited or rested the cursor in: coming to another is
    /// a new place for the warm-ups, whatever place in it the cursor had before.
    focus: Mutex<Option<Arc<str>>>,
}

/// Who a request is, for its lines in the usage log.
struct Req {
    id: Arc<str>,
    language: Language,
    started: Instant,
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
        usage: UsageLog,
    ) -> CompletionEngine {
        CompletionEngine {
            shared: Arc::new(Shared {
                providers,
                health,
                cache: Mutex::new(CompletionCache::new(cache_entries)),
                docs: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                usage,
                budget_exhausted: AtomicBool::new(false),
                warm_up: Mutex::new(None),
                last_read: Mutex::new(HashMap::new()),
                focus: Mutex::new(None),
            }),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Opens pooled connections to the session's completion models, at each of their
    /// endpoints; returns the models none of whose endpoints answered, with the first error.
    pub async fn warm(&self, session: &Session) -> Vec<(Arc<str>, ProviderError)> {
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
                        first_error.get_or_insert(e);
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

    /// Tells the engine that `snapshot`'s document was just edited (`edits` in byte offsets,
    /// in order). The document's model call in flight goes on only while the edits are text
    /// inserted where it was asked (the user typing along it, or accepting the suggestion a
    /// prefetch follows) that agrees with what the call has written so far; any other edit
    /// leaves it nothing to serve, and it is aborted — a call whose suggestion the user
    /// typed past with something else would otherwise write on into its line after, and
    /// the next request at the pause would wait for it.
    ///
    /// Returns where to warm the model server's prompt cache ([`CompletionEngine::warm_up`]),
    /// when the edit is the first at a new place (another definition, the first edit of the
    /// document, or the first since the user came from another document), warm-ups are on
    /// and no call is in flight for the document.
    pub fn edited(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        edits: &[ByteEdit],
    ) -> Option<usize> {
        let at = edits.last()?.new_end;
        self.user_at(snapshot, at, |state, place, came| {
            let moved = state.last_place.replace(place) != Some(place) || came;
            state.cursor_place = Some(place);
            state.rest_pending = false;
            if let Some(flight) = state.inflight.as_ref().filter(|f| !f.abort.is_finished()) {
                let along = edits.iter().all(|edit| {
                    let along = edit.is_insertion() && edit.start == state.typed_along.end;
                    if along {
                        state.typed_along.end = edit.new_end;
                    }
                    along
                });
                if along
                    && snapshot
                        .rope
                        .get_byte_slice(state.typed_along.clone())
                        .is_some_and(|typed| flight.agrees_with(typed.bytes()))
                {
                    return None;
                }
                flight.abort(ABORT_SUPERSEDED);
                self.shared
                    .counters
                    .aborted_calls
                    .fetch_add(1, Ordering::Relaxed);
                state.inflight = None;
            }
            (moved && session.completion().warm_up).then_some(at)
        })
    }

    /// Forgets a closed document: its waiting requests end, its model call is aborted.
    pub fn close(&self, uri: &str) {
        if let Some(state) = lock(&self.shared.docs).remove(uri) {
            if let Some(flight) = state.inflight {
                flight.abort(ABORT_CANCELLED);
            }
        }
    }

    /// The context window at `cursor`, the other files' context that goes with it, and the
    /// route a request there takes: the default window with `related`, or, when the route's
    /// first model is slow to answer ([`policy::compact_window`]), the compact window and no
    /// other files — such a model reads each prompt token the user waits for (~12 ms for the
    /// 1.5B on 2 cores), and other files' context buys a hole of 66 at most (BENCHMARKS.md).
    /// Requests, prefetches and warm-ups all shape their prompt here, so that they send the
    /// same prompt for a place.
    fn place(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        cursor: usize,
        related: &[RelatedFile],
    ) -> Placed {
        let window = |budget| {
            extract(
                &snapshot.rope,
                snapshot.tree.as_ref(),
                snapshot.language,
                cursor,
                budget,
                session.completion().multiline,
            )
        };
        let ctx = window(ContextBudget::default());
        let route = self.route(session, snapshot, cursor, &ctx);
        if policy::compact_window(route.average_answer(), session.completion().budget) {
            return Placed {
                ctx: window(ContextBudget::compact()),
                other_files: Vec::new(),
                route,
            };
        }
        Placed {
            ctx,
            other_files: other_files(related, session),
            route,
        }
    }

    /// Answers one completion request at `cursor` (a byte offset into the snapshot).
    /// `related` is context from the user's other open files: it goes to local models that
    /// have a place for it (llama.cpp's `input_extra`) and are measured fast (see
    /// `place`), never to a cloud model.
    ///
    /// The request waits for its model as long as it is the document's newest: a model
    /// slower than the budget still gets its suggestion to the user, and a newer request
    /// (the user typed on or moved) ends it at once, empty.
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
        let req = Req {
            id: self.shared.usage.next_id().into(),
            language: snapshot.language,
            started,
        };
        let settings = session.completion();
        let Placed {
            ctx,
            other_files,
            route,
        } = self.place(session, snapshot, cursor, related);
        let Some(primary) = route.chain.first() else {
            self.begin(&snapshot.uri, started, Claim::None);
            return Err(NoSuggestion::Failed(route.why_empty()));
        };
        let key = cache_key(&primary.name, &ctx);
        let speed = Speed::of(route.expected_answer(), settings.budget);

        lock(&self.shared.cache).resize(settings.cache_entries);
        if let Some(hit) = self.lookup(&key, &req) {
            self.begin(&snapshot.uri, started, Claim::Answered(&key));
            return hit;
        }
        let begun = self.begin(&snapshot.uri, started, Claim::Join(&key, speed));
        let (seq, mut latest) = (begun.seq, begun.latest);
        let debounce = policy::debounce(
            begun.gap,
            begun.rhythm,
            settings.debounce_floor,
            settings.budget,
            speed,
        );
        let call_at = tokio::time::Instant::from_std(started + debounce);
        let call = NewCall {
            key: key.clone(),
            input: (ctx, other_files),
            route,
            purpose: Purpose::Request,
            typing_point: cursor,
            ahead: Arc::from(""),
            runs_on: policy::keep_typed_along(speed),
            id: req.id.clone(),
        };

        let waiter = match begun.joined {
            Some((waiter, Serves::Same)) => waiter,
            Some((waiter, _)) => {
                // A call this request typed along: its answer may serve what was typed
                // since, through typed-ahead reuse. Wait for it rather than replace it.
                counters.typed_along.fetch_add(1, Ordering::Relaxed);
                // A call that showed its first line writes on (one line more, for at most
                // `LINE_AFTER_LIMIT`), and what it writes may be what this
                // request wants (the line after a suggestion just accepted): once it answers,
                // look again at each line it publishes, until it ends — or until what it
                // wrote disagrees with what the request typed (the user typed on, past its
                // suggestion, while it was still writing that). `typed` is what was typed
                // past the call's prompt, which for a prefetch has the suggestion it follows
                // (`ahead`) already.
                let flight = waiter.flight.clone();
                let typed = flight
                    .as_ref()
                    .and_then(|f| key.prefix.get(f.key.prefix.len()..))
                    .unwrap_or_default();
                let served = async {
                    waiter.result().await;
                    let mut more = waiter.changes();
                    loop {
                        if let Some(hit) = self.lookup(&key, &req) {
                            return Some(hit);
                        }
                        let flight = flight.as_ref()?;
                        if !flight.agrees_with(flight.ahead.bytes().chain(typed.bytes())) {
                            return None;
                        }
                        let more = more.as_mut()?;
                        more.changed().await.ok()?;
                    }
                };
                tokio::select! {
                    served = served => if let Some(hit) = served { return hit },
                    _ = superseded(&mut latest, seq) => {
                        counters.superseded.fetch_add(1, Ordering::Relaxed);
                        waiter.superseded();
                        return Err(NoSuggestion::Superseded);
                    }
                }
                drop(waiter);
                self.call_after((call_at, &mut latest, seq), &snapshot.uri, call, session)
                    .await?
            }
            None => {
                self.call_after((call_at, &mut latest, seq), &snapshot.uri, call, session)
                    .await?
            }
        };
        let outcome = tokio::select! {
            result = waiter.result() => match result {
                Some(Ok(hit)) => into_outcome(hit, Source::Model, req.id.clone()),
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
        };
        if outcome.is_ok() && started.elapsed() > settings.budget {
            counters.late.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Tells the engine that `suggestion` reached the editor for `cursor` of `snapshot`: it
    /// remembers it (to recognise its acceptance) and computes, in the background, the
    /// suggestion for the place after accepting it, so that accepting brings the next one
    /// from the cache. For a local llama.cpp-style server this is nearly free: the prompt is
    /// the one just read plus the accepted text. A slow model's prefetch waits for the user
    /// to stop typing ([`policy::prefetch_wait`]), and none is made if they type on meanwhile.
    pub fn delivered(
        &self,
        session: &Arc<Session>,
        snapshot: &Snapshot,
        cursor: usize,
        suggestion: &str,
        related: &[RelatedFile],
    ) {
        let asked = {
            let mut docs = lock(&self.shared.docs);
            let Some(state) = docs.get_mut(&snapshot.uri) else {
                return;
            };
            state.shown = Some(Shown {
                version: snapshot.version,
                cursor,
                text: suggestion.into(),
            });
            (*state.latest.borrow(), state.last_request, state.rhythm)
        };
        if session.completion().prefetch == PrefetchSetting::Off {
            return;
        }
        let (engine, session, snapshot) = (self.clone(), session.clone(), snapshot.clone());
        let (suggestion, related) = (suggestion.to_string(), related.to_vec());
        tokio::spawn(async move {
            let uri = snapshot.uri.clone();
            // Off the response's path: the document with the suggestion in it is reparsed
            // (a copy), which takes milliseconds on a big file.
            let prepared = tokio::task::spawn_blocking({
                let (engine, session) = (engine.clone(), session.clone());
                move || {
                    let accepted = snapshot.with_insertion(cursor, &suggestion)?;
                    let after = cursor + suggestion.len();
                    engine.prefetch_call(&session, &accepted, (after, cursor), &related)
                }
            });
            let Ok(Some((call, speed))) = prepared.await else {
                return;
            };
            let (seq, last_request, rhythm) = asked;
            let since = last_request.map_or(Duration::MAX, |t| t.elapsed());
            let floor = session.completion().debounce_floor;
            let wait = policy::prefetch_wait(since, rhythm, floor, speed);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                // A request came meanwhile: it is answered, and its suggestion shown, on its
                // own.
                let latest = lock(&engine.shared.docs)
                    .get(&uri)
                    .map(|state| *state.latest.borrow());
                if latest != Some(seq) {
                    return;
                }
            }
            engine.start(&uri, call, &session);
        });
    }

    /// Tells the engine that the user accepted a suggestion (`pilotfish.accept`), with the
    /// document as it is now. If the last suggestion delivered now stands in the text where
    /// it was shown, the one after it is computed if it is not already (the prefetch made at
    /// delivery may have given way to another call).
    pub fn accepted(&self, session: &Arc<Session>, snapshot: &Snapshot, related: &[RelatedFile]) {
        let shown = lock(&self.shared.docs)
            .get(&snapshot.uri)
            .and_then(|s| s.shown.clone());
        let Some(shown) = shown.filter(|s| s.version < snapshot.version) else {
            return;
        };
        let end = shown.cursor + shown.text.len();
        let stands = end <= snapshot.rope.len_bytes()
            && snapshot.rope.try_byte_to_char(shown.cursor).is_ok()
            && snapshot.rope.try_byte_to_char(end).is_ok()
            && snapshot.rope.byte_slice(shown.cursor..end) == *shown.text;
        if stands {
            if let Some((call, _)) = self.prefetch_call(session, snapshot, (end, end), related) {
                self.start(&snapshot.uri, call, session);
            }
        }
    }

    /// The call that computes the suggestion at `cursor` of `snapshot` in the background,
    /// and the speed of its model; None on a model `completion.prefetch` does not allow
    /// (local ones by default: a cloud model would charge for it). Started, it never runs
    /// while the document has a model call in flight (background work never delays a
    /// request) or for a place the cache answers ([`CompletionEngine::start`] checks both),
    /// and gives way to the next call the document needs: the user typing something else
    /// aborts it; typing along the suggestion does not. `typing_point`: where, in the live
    /// document, typing keeps it useful (the shown suggestion's place, or the accepted
    /// one's end).
    fn prefetch_call(
        &self,
        session: &Arc<Session>,
        snapshot: &Snapshot,
        (cursor, typing_point): (usize, usize),
        related: &[RelatedFile],
    ) -> Option<(NewCall, Speed)> {
        let Placed {
            ctx,
            other_files,
            mut route,
        } = self.place(session, snapshot, cursor, related);
        let allowed = session.completion().prefetch;
        // Only when the model a request there would ask may be asked in the background
        // (a prefetch from another model would be cached under a key no request uses);
        // and a failing prefetch falls back only to models that may be asked too.
        if !route.first_may_read_ahead(allowed) {
            return None;
        }
        route.chain.retain(|c| allowed.allows(&c.config));
        let key = cache_key(&route.chain[0].name, &ctx);
        let speed = Speed::of(route.expected_answer(), session.completion().budget);
        let call = NewCall {
            key,
            input: (ctx, other_files),
            route,
            purpose: Purpose::Prefetch,
            typing_point,
            // The suggestion shown at `typing_point`, accepted in this snapshot.
            ahead: snapshot
                .rope
                .get_byte_slice(typing_point..cursor)
                .map_or_else(|| Arc::from(""), |s| Arc::from(s.to_string())),
            runs_on: policy::keep_typed_along(speed),
            id: self.shared.usage.next_id().into(),
        };
        Some((call, speed))
    }

    /// Whether the cache has the answer for `key`, exact or typed ahead (the model wrote the
    /// line after a suggestion with it).
    fn knows(&self, key: &CacheKey) -> bool {
        let cache = lock(&self.shared.cache);
        cache.contains(key) || cache.has_typed_ahead(key)
    }

    /// The cached answer for `key`, exact or typed-ahead, as an outcome; its line goes to the
    /// usage log.
    fn lookup(&self, key: &CacheKey, req: &Req) -> Option<Outcome> {
        let counters = &self.shared.counters;
        let (hit, source) = {
            let mut cache = lock(&self.shared.cache);
            match cache.lookup(key) {
                Some(hit) => (hit, Source::Cache),
                None => (cache.lookup_typed_ahead(key)?, Source::TypedAhead),
            }
        };
        let (counter, cache) = match source {
            Source::Cache => (&counters.cache_hits, CacheUse::Hit),
            _ => (&counters.typed_ahead_hits, CacheUse::TypedAhead),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let outcome = if hit.text.is_some() {
            Logged::Ok
        } else {
            Logged::Empty
        };
        self.shared.usage.record(UsageEvent::cache(
            &req.id,
            COMPLETE,
            req.language,
            &hit.answered_by,
            cache,
            outcome,
            req.started.elapsed().as_millis() as u64,
        ));
        Some(into_outcome(hit, source, req.id.clone()))
    }

    /// Waits out the debounce (until `call_at`), then starts `call`, unless a newer request
    /// came meanwhile.
    async fn call_after(
        &self,
        (call_at, latest, seq): (tokio::time::Instant, &mut watch::Receiver<u64>, u64),
        uri: &Arc<str>,
        call: NewCall,
        session: &Arc<Session>,
    ) -> Result<Waiter, NoSuggestion> {
        if call_at > tokio::time::Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(call_at) => {}
                _ = superseded(latest, seq) => {
                    self.shared.counters.superseded.fetch_add(1, Ordering::Relaxed);
                    return Err(NoSuggestion::Superseded);
                }
            }
        }
        Ok(self.start(uri, call, session))
    }

    /// Registers a request: supersedes the older ones for the document, measures the typing
    /// rhythm, tells the document's model call in flight how far the user has come along it,
    /// and — for [`Claim::Join`] — joins that call if it can serve the request (the same
    /// prompt, or one the request typed along while the model is slow). Joining here, before
    /// the superseded request lets go of the call, keeps the call alive across the hand-over.
    fn begin(&self, uri: &Arc<str>, now: Instant, claim: Claim) -> Begun {
        let mut docs = lock(&self.shared.docs);
        let state = docs.entry(uri.clone()).or_insert_with(DocState::new);
        let seq = *state.latest.borrow() + 1;
        state.latest.send_replace(seq);
        let gap = state.last_request.map(|t| now.saturating_duration_since(t));
        state.last_request = Some(now);
        state.rhythm = match gap {
            Some(gap) if gap < policy::PAUSE => Some(state.rhythm.map_or(gap, |r| (r + gap) / 2)),
            _ => None,
        };
        if let (Some(key), Some(flight)) = (claim.key(), &state.inflight) {
            flight.followed_by(key);
        }
        let Claim::Join(key, speed) = claim else {
            return Begun::at(seq, state, gap, None);
        };
        let joined = state.inflight.as_ref().and_then(|flight| {
            let serves = policy::serves(&flight.key, flight.spans_lines, key);
            let join = match serves {
                Serves::Same => true,
                Serves::TypedAlong => policy::keep_typed_along(speed),
                Serves::No => false,
            };
            if !join || flight.abort.is_finished() {
                return None;
            }
            flight.waiters.fetch_add(1, Ordering::Relaxed);
            let waiter = Waiter {
                flight: Some(flight.clone()),
                engine: self.clone(),
                uri: uri.clone(),
                superseded: false,
            };
            Some((waiter, serves))
        });
        Begun::at(seq, state, gap, joined)
    }

    /// Starts the document's model call for `key`, aborting the call in flight (its
    /// requests are gone or superseded; a prefetch gives way to any request).
    fn start(&self, uri: &Arc<str>, call: NewCall, session: &Arc<Session>) -> Waiter {
        let NewCall {
            key,
            input: prompt_input,
            route,
            purpose,
            typing_point,
            ahead,
            runs_on,
            id,
        } = call;
        let shape = &prompt_input.0.shape;
        // The rest of a line reads on past the line only on a model that may read ahead
        // (`Ask::read_ahead`); elsewhere it stops at the line break.
        let reads_past_line = policy::streams_first_line(shape, runs_on)
            && route.first_may_read_ahead(session.completion().prefetch);
        let spans_lines = shape.multiline || shape.next_line || reads_past_line;
        let read = ReadAt::of(uri, &prompt_input.0);
        let model = key.model.clone();
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
        // Background work never takes the model from a call in flight, nor asks what the
        // cache has: checked here, after the call in flight (a call fills the cache before
        // it ends), for the cache may have filled since the prefetch was prepared.
        if purpose == Purpose::Prefetch && (state.busy() || self.knows(&key)) {
            return Waiter {
                flight: None,
                engine: self.clone(),
                uri: uri.clone(),
                superseded: false,
            };
        }
        if let Some(old) = state.inflight.take() {
            if old.key == key && !old.abort.is_finished() {
                // The same call is already running (a prefetch the user caught up with).
                old.waiters.fetch_add(1, Ordering::Relaxed);
                state.inflight = Some(old.clone());
                return Waiter {
                    flight: Some(old),
                    engine: self.clone(),
                    uri: uri.clone(),
                    superseded: false,
                };
            }
            if !old.abort.is_finished() {
                old.abort(ABORT_SUPERSEDED);
                self.shared
                    .counters
                    .aborted_calls
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if purpose == Purpose::Request {
            // A request's call comes before the warm-up of another place; one of its own
            // window reads the start of its prompt, and reads on.
            let mut warm_up = lock(&self.shared.warm_up);
            if warm_up.as_ref().is_some_and(|w| !w.read.covers(&read)) {
                if let Some(other) = warm_up.take() {
                    other.task.abort();
                }
            }
        }
        let (tx, rx) = watch::channel(None);
        self.shared
            .counters
            .model_calls
            .fetch_add(1, Ordering::Relaxed);
        if purpose == Purpose::Prefetch {
            self.shared
                .counters
                .prefetches
                .fetch_add(1, Ordering::Relaxed);
        }
        let abort_reason = Arc::new(AtomicU8::new(ABORT_CANCELLED));
        let followed = Arc::new(Followed::default());
        let log = call_log(
            &self.shared.usage,
            &id,
            &route,
            purpose,
            abort_reason.clone(),
        );
        let task = tokio::spawn(run_flight(
            self.clone(),
            (uri.clone(), key.clone()),
            prompt_input,
            route,
            session.clone(),
            (purpose, tx, log),
            (runs_on, followed.clone()),
        ));
        let waiters = usize::from(purpose == Purpose::Request);
        let flight = Arc::new(Flight {
            key,
            result: rx,
            abort: task.abort_handle(),
            waiters: waiters.into(),
            runs_on,
            abort_reason,
            spans_lines,
            followed,
            purpose,
            ahead,
        });
        state.typed_along = typing_point..typing_point;
        state.inflight = Some(flight.clone());
        lock(&self.shared.last_read).insert(model, read);
        Waiter {
            flight: (purpose == Purpose::Request).then_some(flight),
            engine: self.clone(),
            uri: uri.clone(),
            superseded: false,
        }
    }
}

/// What a request registered by [`CompletionEngine::begin`] has: its key, if a model was
/// routed to, and whether it was answered from the cache or may join the call in flight.
enum Claim<'a> {
    None,
    Answered(&'a CacheKey),
    Join(&'a CacheKey, Speed),
}

impl Claim<'_> {
    fn key(&self) -> Option<&CacheKey> {
        match self {
            Claim::None => None,
            Claim::Answered(key) | Claim::Join(key, _) => Some(key),
        }
    }
}

/// What [`CompletionEngine::begin`] found.
struct Begun {
    seq: u64,
    latest: watch::Receiver<u64>,
    /// Time since the document's previous request (None: the first).
    gap: Option<Duration>,
    /// The smoothed gap between requests in the current burst (None: not in a burst).
    rhythm: Option<Duration>,
    /// The call in flight this request joined, and how it serves the request.
    joined: Option<(Waiter, Serves)>,
}

impl Begun {
    fn at(
        seq: u64,
        state: &DocState,
        gap: Option<Duration>,
        joined: Option<(Waiter, Serves)>,
    ) -> Begun {
        Begun {
            seq,
            latest: state.latest.subscribe(),
            gap,
            rhythm: state.rhythm,
            joined,
        }
    }
}

/// The most tokens a completion asks `model` for.
fn max_tokens_for(model: &ModelConfig, ctx: &CompletionContext) -> u32 {
    model.max_output_tokens.min(if ctx.shape.multiline {
        MULTILINE_MAX_TOKENS
    } else {
        SINGLE_LINE_MAX_TOKENS
    })
}

/// The FIM prompt a request at `ctx` sends `model` (a warm-up sends the same), and the other
/// files of `repo` that fit beside it in the model's context window: in the repository
/// layout of a template that has one, else for the provider to send (llama.cpp's
/// `input_extra`). The caller gives a cloud model no other files.
fn fim_prompt<'a>(
    fim: Fim,
    ctx: &CompletionContext,
    model: &ModelConfig,
    repo: &Repo<'a>,
    max_tokens: u32,
) -> (FimPrompt, &'a [OtherFile]) {
    let files = fit_other_files(repo.files, ctx, model.context_window, max_tokens);
    let prompt = build_fim_in_repo(fim, ctx, &Repo { files, ..*repo });
    (prompt, files)
}

/// Other files' context as the providers take it: paths relative to the workspace.
fn other_files(related: &[RelatedFile], session: &Session) -> Vec<OtherFile> {
    related
        .iter()
        .map(|f| OtherFile {
            name: session.display_path(&path_of_uri(&f.uri)),
            text: Arc::clone(&f.text),
        })
        .collect()
}

/// The suggestion in a model's raw answer, and the ones after accepting it from what the
/// model wrote after it ([`lines_after`]). `ended`: the model ended the answer itself (not
/// cut at its token limit, not a stream still being written), so its last line is whole
/// even without a line break — a fill-in-the-middle answer leaves that to the suffix, which
/// usually starts with one; the suggestion after accepting the line before it was lost.
fn kept_and_then(
    raw: &str,
    ctx: &CompletionContext,
    stop: &[String],
    ended: bool,
) -> (Option<String>, Option<String>) {
    let kept = postprocess(raw, ctx, stop);
    let then = kept.as_deref().and_then(|k| {
        if ended && !raw.ends_with('\n') {
            lines_after(&format!("{raw}\n"), k, ctx)
        } else {
            lines_after(raw, k, ctx)
        }
    });
    (kept, then)
}

/// What a request, prefetch or warm-up at a place sends, and the route it takes
/// ([`CompletionEngine::place`]).
struct Placed {
    ctx: CompletionContext,
    other_files: Vec<OtherFile>,
    route: Route,
}

/// The models one request will try, and why.
struct Route {
    chain: Vec<Model>,
    decision: Decision,
    /// What the decision read, for the usage log.
    facts: RouteFacts,
    language: Language,
}

impl Route {
    /// The first model's measured latency at the endpoint it will be asked at; None before
    /// its first answer there.
    fn first_latency(&self) -> Option<Latency> {
        self.first_endpoint()?.latency
    }

    /// The endpoint the first model will be asked at first, as the decision found it.
    fn first_endpoint(&self) -> Option<&EndpointVerdict> {
        let first = self.chain.first()?;
        let verdict = self
            .decision
            .candidates
            .iter()
            .find(|v| v.kept && v.model == *first.name)?;
        verdict.endpoints.first()
    }

    /// How long the first model is expected to take for the whole answer: its measured
    /// average, unless that is stale.
    fn expected_answer(&self) -> Option<Duration> {
        let ms = self.first_latency()?.current_answer_ms()?;
        Some(Duration::from_millis(ms))
    }

    /// The first model's average time to the whole answer however old (for what its
    /// hardware can do).
    fn average_answer(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.first_latency()?.answer_ms))
    }

    /// Whether `setting` (`completion.prefetch`) lets the first model work unasked: a
    /// prefetch, or a stream reading past the suggestion's line.
    fn first_may_read_ahead(&self, setting: PrefetchSetting) -> bool {
        self.chain
            .first()
            .is_some_and(|m| setting.allows(&m.config))
    }

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
        let decision = input.decide(session, &self.shared.health, &self.shared.usage);
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
            facts: RouteFacts::of(&input.request(session)),
            decision,
            language: snapshot.language,
        }
    }

    /// The routing decision a completion request at `cursor` would get now, without calling
    /// a model: the same context window, prompt size, secrets check and filters as
    /// [`CompletionEngine::complete`] (for `pilotfish route --task complete`).
    pub fn decide(&self, session: &Session, snapshot: &Snapshot, cursor: usize) -> Decision {
        self.place(session, snapshot, cursor, &[]).route.decision
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
    /// The suggestion after accepting `kept`, from what the model wrote after it.
    then: Option<String>,
    answer: ModelAnswer,
    usage: Usage,
    prompt: Option<String>,
}

impl Timed for FlightAnswer {
    fn first_token(&self) -> Option<Duration> {
        self.answer.first_token
    }

    fn prompt_read(&self) -> Option<crate::providers::PromptRead> {
        self.answer.prompt_read
    }
}

/// The usage-log line of a flight's model call (`prefetch` for a background one): an
/// aborted call is logged with the reason its aborter left.
fn call_log(
    usage: &UsageLog,
    id: &str,
    route: &Route,
    purpose: Purpose,
    abort_reason: Arc<AtomicU8>,
) -> PendingCall {
    let mut event = UsageEvent::call(id, COMPLETE, route.language)
        .by(route.chain.first().map(|m| &*m.name), None);
    if purpose == Purpose::Prefetch {
        event.cache = Some(CacheUse::Prefetch);
    }
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
async fn run_flight(
    engine: CompletionEngine,
    (uri, key): (Arc<str>, CacheKey),
    (ctx, other_files): (CompletionContext, Vec<OtherFile>),
    route: Route,
    session: Arc<Session>,
    (purpose, tx, log): (Purpose, watch::Sender<Published>, PendingCall),
    (slow, followed): (bool, Arc<Followed>),
) {
    let chain: Vec<_> = route
        .chain
        .iter()
        .map(|m| (m.name.clone(), m.config.clone()))
        .collect();
    let budget = session.completion().budget;
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
    let file_path = session.display_path(&path_of_uri(&uri));
    let ask = Ask {
        providers: &engine.shared.providers,
        ctx: &ctx,
        other_files: &other_files,
        repo_name: session.repo_name(),
        file_path: &file_path,
        log_prompts: engine.shared.usage.log_prompts(),
        redact_before_cloud: session.config().privacy.redact_secrets,
        budget,
        // A slow model's block, next line or rest of a line is streamed, and its first line
        // shown as soon as it is written, while the rest fills the cache for typed-ahead
        // reuse.
        first_line_first: policy::streams_first_line(&ctx.shape, slow),
        read_ahead: session.completion().prefetch,
        show_from: started + budget,
        early: (&key, &engine.shared.cache, &tx),
        followed: &followed,
    };
    let run = run_chain(
        &engine.shared.health,
        &chain,
        Work::Completion,
        None,
        &Deadline::at(hard_deadline),
        |name, model| {
            let fim = route
                .chain
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| m.fim);
            ask.model(name, model, fim)
        },
    )
    .await;
    let outcome = record_flight(run, &route.decision, purpose, started, log);
    if let Ok(hit) = &outcome {
        lock(&engine.shared.cache).insert(key.clone(), hit.clone());
    }
    tx.send_replace(Some(outcome));
    let mut docs = lock(&engine.shared.docs);
    if let Some(state) = docs.get_mut(&uri) {
        if state.inflight.as_ref().is_some_and(|f| f.key == key) {
            state.inflight = None;
        }
    }
}

/// What a flight asks each model of its chain: one place and its context, whichever model
/// answers.
struct Ask<'a> {
    providers: &'a Providers,
    ctx: &'a CompletionContext,
    /// For local models only.
    other_files: &'a [OtherFile],
    repo_name: &'a str,
    file_path: &'a str,
    log_prompts: bool,
    redact_before_cloud: bool,
    budget: Duration,
    /// Stream the answer and publish its first line once written ([`fim_first_line_first`]).
    first_line_first: bool,
    /// When a streamed first line may be shown: a model that turns out fast gets to finish.
    show_from: Instant,
    /// Where an early first line goes: the cache, and the requests waiting on the flight.
    early: (
        &'a CacheKey,
        &'a Mutex<CompletionCache>,
        &'a watch::Sender<Published>,
    ),
    /// How far the user has come along the answer.
    followed: &'a Followed,
    /// Which models may write, unasked, what the user may take next (the line after the
    /// rest of a line; lines past the line after, while the user keeps up): those
    /// `completion.prefetch` lets work in the background. Others (cloud models by default)
    /// write the suggestion and, for a block or next line, the line after it.
    read_ahead: PrefetchSetting,
}

impl Ask<'_> {
    async fn model(
        &self,
        name: Arc<str>,
        model: Arc<ModelConfig>,
        fim: Option<Fim>,
    ) -> Result<FlightAnswer, ProviderError> {
        match fim {
            Some(fim) => self.fim(name, &model, fim).await,
            None => self.chat(&model).await,
        }
    }

    /// A chat-only model that a rule sent completion to: a chat prompt, and post-processing
    /// strips the fences and prose chat models add.
    async fn chat(&self, model: &ModelConfig) -> Result<FlightAnswer, ProviderError> {
        let (system, user) = chat_completion_messages(self.ctx);
        let (system, user) = if self.cloud(model) {
            (redact(&system).0, redact(&user).0)
        } else {
            (system, user)
        };
        let messages = [ChatMessage::user(user)];
        let call = ChatCall {
            system: &system,
            messages: &messages,
            max_tokens: max_tokens_for(model, self.ctx),
            temperature: 0.0,
            thinking: Thinking::Off,
            begin_within: None,
        };
        let answer = self.providers.chat(model, call, &mut |_| {}).await?;
        let sent = system.len() + messages.iter().map(|m| m.content.len()).sum::<usize>();
        let usage = Usage::of(
            model,
            (answer.tokens_in, answer.tokens_out),
            sent,
            answer.text.len(),
        );
        // A thinking model's reasoning is not the suggestion (nor the line breaks after it),
        // and one cut while it was still thinking has none.
        let suggestion = after_reasoning(&answer.text).map_or("", |after| {
            if after.len() < answer.text.len() {
                after.trim_start_matches(['\r', '\n'])
            } else {
                after
            }
        });
        Ok(FlightAnswer {
            kept: postprocess(suggestion, self.ctx, &[]),
            then: None,
            prompt: self.log_prompts.then(|| messages[0].content.clone()),
            answer,
            usage,
        })
    }

    async fn fim(
        &self,
        name: Arc<str>,
        model: &ModelConfig,
        fim: Fim,
    ) -> Result<FlightAnswer, ProviderError> {
        let ctx = self.ctx;
        let max_tokens = max_tokens_for(model, ctx);
        let repo = Repo {
            name: self.repo_name,
            path: self.file_path,
            files: if model.is_local() {
                self.other_files
            } else {
                &[]
            },
        };
        let (mut prompt, other_files) = fim_prompt(fim, ctx, model, &repo, max_tokens);
        let read_ahead = self.read_ahead.allows(model);
        if self.first_line_first && read_ahead {
            // The rest of a line streamed goes on into the line after, the suggestion after
            // accepting it; the stream is closed there.
            prompt.stop.retain(|s| s != "\n");
        }
        if self.cloud(model) {
            prompt.prompt = redact(&prompt.prompt).0;
            prompt.suffix = prompt.suffix.map(|s| redact(&s).0);
        }
        let call = FimCall {
            prompt: &prompt,
            max_tokens,
            // llama.cpp ends generation this long after its first token once a line break
            // is out: for the next line that break comes first, and a streamed block
            // already shows its first line while the rest comes.
            time_budget: (!ctx.shape.next_line && !self.first_line_first).then_some(self.budget),
            other_files,
        };
        let answer = if self.first_line_first {
            let (key, cache, tx) = self.early;
            let publish = |raw: &str| {
                let (Some(kept), then) = kept_and_then(raw, ctx, &prompt.stop, false) else {
                    return false;
                };
                let hit = CachedSuggestion {
                    text: Some(kept.into()),
                    answered_by: name.clone(),
                    then: then.map(Into::into),
                };
                lock(cache).insert(key.clone(), hit.clone());
                tx.send_replace(Some(Ok(hit)));
                true
            };
            fim_first_line_first(
                self.providers,
                model,
                call,
                (&ctx.shape, read_ahead.then_some(self.followed)),
                self.show_from,
                &publish,
            )
            .await?
        } else {
            self.providers.fim(model, call).await?
        };
        let sent = prompt.prompt.len() + prompt.suffix.as_ref().map_or(0, String::len);
        let usage = Usage::of(
            model,
            (answer.tokens_in, answer.tokens_out),
            sent,
            answer.text.len(),
        );
        // A streamed call closed by Pilotfish ends at a whole line (`fim_first_line_first`),
        // and says nothing is cut either: a line break after it changes nothing.
        let (kept, then) = kept_and_then(&answer.text, ctx, &prompt.stop, answer.cut.is_none());
        Ok(FlightAnswer {
            kept,
            then,
            prompt: self.log_prompts.then(|| match &prompt.suffix {
                Some(suffix) => format!("{}<suffix>{suffix}", prompt.prompt),
                None => prompt.prompt.clone(),
            }),
            answer,
            usage,
        })
    }

    /// Whether what goes to this model is redacted first.
    fn cloud(&self, model: &ModelConfig) -> bool {
        self.redact_before_cloud && !model.is_local()
    }
}

/// Logs a flight's end (the log line and the usage record) and turns it into what the
/// cache keeps and the waiting requests get.
fn record_flight(
    run: ChainOutcome<FlightAnswer>,
    decision: &Decision,
    purpose: Purpose,
    started: Instant,
    mut log: PendingCall,
) -> Result<CachedSuggestion, String> {
    let endpoint = run.endpoint().unwrap_or_default().to_string();
    let note = RouteNote::of(decision, &run.attempts);
    match run.answer {
        Ok((name, answered)) => {
            // The model call, where it went (the request's own line, `suggestion`, follows
            // from lsp.rs when the answer is still wanted).
            tracing::info!(
                model = %name,
                endpoint,
                ?purpose,
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
            Ok(CachedSuggestion {
                text: answered.kept.map(Into::into),
                answered_by: name,
                then: answered.then.map(Into::into),
            })
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
    }
}

/// A request's hold on a flight. Dropping the last hold aborts the model call: nobody wants
/// its answer (superseded by a request it cannot serve, or `$/cancelRequest`). A prefetch
/// starts with no hold, and runs until it ends or gives way.
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
    async fn result(&self) -> Published {
        let mut rx = self.flight.as_ref()?.result.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return Some(r);
            }
            rx.changed().await.ok()?;
        }
    }

    /// The flight's answers from now on: `changed()` returns when the call publishes more
    /// (the lines after a first line shown early), and fails once the call has ended (its
    /// sender goes with its task).
    fn changes(&self) -> Option<watch::Receiver<Published>> {
        let mut rx = self.flight.as_ref()?.result.clone();
        rx.borrow_and_update();
        Some(rx)
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
        if last && !flight.runs_on && !flight.abort.is_finished() {
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
