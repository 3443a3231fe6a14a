//! Warming a local model server's prompt cache (`n_predict: 0`) where the user is about to
//! ask: the first edit at a new place, the cursor resting in another definition, coming back
//! to a document; what each model last read, so that a place it holds is not read again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CompletionEngine, DocState, Placed, cache_key, fim_prompt, max_tokens_for};
use crate::config::Provider;
use crate::documents::{RelatedFile, Snapshot, path_of_uri};
use crate::prompt::{Fim, FimTemplate, Repo};
use crate::providers::FimCall;
use crate::session::Session;
use crate::sync::lock;
use crate::syntax::Language;
use crate::syntax::context::CompletionContext;
use crate::syntax::features::enclosing_target;

/// Where a prompt was read: its document, the start of its prefix window and its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReadAt {
    uri: Arc<str>,
    window_start: usize,
    cursor: usize,
}

impl ReadAt {
    pub(super) fn of(uri: &Arc<str>, ctx: &CompletionContext) -> ReadAt {
        ReadAt {
            uri: uri.clone(),
            window_start: ctx.prefix_start,
            cursor: ctx.prefix_start + ctx.prefix.len(),
        }
    }

    /// Whether a model server whose last prompt was read at `self` holds most of the prompt
    /// for `next`: the same document and window start, and a cursor at most
    /// [`WARM_DISTANCE`] bytes further on (what a request there re-reads is what lies
    /// between, and the suffix). A warm-up for `next` would win little, and would take the
    /// model from the request the user pauses on.
    pub(super) fn covers(&self, next: &ReadAt) -> bool {
        self.uri == next.uri
            && self.window_start == next.window_start
            && next.cursor <= self.cursor + WARM_DISTANCE
    }
}

/// How far past the last prompt read a place may be and still need no warm-up of its own:
/// about a hundred tokens, what a CPU model reads in a second.
const WARM_DISTANCE: usize = 400;

/// Whether a request after typing reads the prompt's suffix again whatever the model server
/// holds — the suffix comes after the prefix, where the typed text goes (every template but
/// Codestral's, which puts it first; llama.cpp's `/infill`) — so that a warm-up leaves it
/// out: 18–34 of the ~230 tokens of a compact window's prompt would be read for nothing
/// (on two cores, 0.3–0.6 s before the request the user pauses on; BENCHMARKS.md, stop 23).
/// Ollama applies a model's fill-in-the-middle template only to a request with a suffix, so
/// it gets its own.
fn suffix_read_again(fim: Fim, provider: Provider) -> bool {
    match fim {
        Fim::Template(template) => template != FimTemplate::Codestral,
        Fim::Native => provider == Provider::Llamacpp,
    }
}

/// How long the cursor rests at a new place before the prompt there is read into the model
/// server's cache: moving through a file (arrow keys, clicks on the way) warms nothing.
const CURSOR_SETTLE: Duration = Duration::from_millis(500);

/// Where `at` is, as the warm-ups tell places apart: the start of its enclosing definition
/// (or of the file).
fn place_of(snapshot: &Snapshot, at: usize) -> usize {
    enclosing_target(
        &snapshot.rope,
        snapshot.tree.as_ref(),
        snapshot.language,
        at,
    )
    .range
    .start
}

/// The cursor at rest in a new place ([`CompletionEngine::cursor_rests`]).
pub struct CursorRest {
    uri: Arc<str>,
    /// The document's [`DocState::cursor_moves`] then.
    moves: u64,
}

/// A warm-up in flight, and the prompt it reads.
pub(super) struct WarmUp {
    pub(super) task: tokio::task::AbortHandle,
    pub(super) read: ReadAt,
}

impl CompletionEngine {
    /// Tells the engine the cursor rests at `at` in `snapshot`'s document, without an edit (an
    /// editor's automatic code-action request at a cursor: VS Code asks at every cursor move,
    /// for its light bulb). Returns a [`CursorRest`] when that is a place in code the cursor
    /// was not at before (another definition, or any place in a document the user comes to
    /// from another) or the place a rest still waits to settle at (reported again: the new
    /// rest replaces it), warm-ups are on and no call is in flight for the document: hand it
    /// to [`CompletionEngine::warm_up_when_settled`].
    pub fn cursor_rests(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        at: usize,
    ) -> Option<CursorRest> {
        // Code only: a cursor resting in plain text (a README, the Explain page Pilotfish
        // just opened) is someone reading; the first edit there still warms.
        if !session.completion().warm_up || snapshot.language == Language::PlainText {
            return None;
        }
        self.user_at(snapshot, at, |state, place, came| {
            let moved = state.cursor_place.replace(place) != Some(place) || came;
            // VS Code asks again at the same place (when a tab's editor comes back, and again
            // once it restores the cursor): the rest goes on from the latest report.
            state.rest_pending = (moved || state.rest_pending) && !state.busy();
            state.rest_pending.then(|| CursorRest {
                uri: snapshot.uri.clone(),
                moves: state.cursor_moves,
            })
        })
    }

    /// Runs `f` on the state of `snapshot`'s document with the user at `at` (an edit or a
    /// cursor rest, counted in [`DocState::cursor_moves`]), under the documents' lock: `f`
    /// gets the place `at` is in and whether the user came to the document from another
    /// (its first edit or cursor rest since they were elsewhere).
    pub(super) fn user_at<T>(
        &self,
        snapshot: &Snapshot,
        at: usize,
        f: impl FnOnce(&mut DocState, usize, bool) -> T,
    ) -> T {
        let place = place_of(snapshot, at);
        let came = lock(&self.shared.focus)
            .replace(snapshot.uri.clone())
            .as_ref()
            != Some(&snapshot.uri);
        let mut docs = lock(&self.shared.docs);
        let state = docs
            .entry(snapshot.uri.clone())
            .or_insert_with(DocState::new);
        state.cursor_moves += 1;
        f(state, place, came)
    }

    /// Warms the model server's prompt cache at `at` ([`CompletionEngine::warm_up`]) if the
    /// cursor is still where `rest` found it [`CURSOR_SETTLE`] later (no edit and no cursor
    /// report in its document since, no call in flight): the first request at a place the
    /// user went to read before typing finds its prompt read. `snapshot` and `related` are
    /// the document and other files at the rest.
    pub fn warm_up_when_settled(
        &self,
        rest: CursorRest,
        session: Arc<Session>,
        (snapshot, at): (Snapshot, usize),
        related: Vec<RelatedFile>,
    ) {
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CURSOR_SETTLE).await;
            let settled = match lock(&engine.shared.docs).get_mut(&rest.uri) {
                Some(state) if state.cursor_moves == rest.moves => {
                    state.rest_pending = false;
                    !state.busy()
                }
                _ => false,
            };
            if settled {
                engine.warm_up(&session, &snapshot, at, &related);
            }
        });
    }

    /// Reads the prompt a request at `cursor` would send into the model server's cache, up
    /// to its prefix where the suffix comes after it ([`suffix_read_again`]), generating
    /// nothing (llama.cpp's `n_predict: 0`), so that the request the user pauses on reads
    /// only what they typed since, and the suffix. Only for a local fill-in-the-middle model,
    /// never a cloud one; at most one warm-up in flight (a newer one replaces it). A request's
    /// model call aborts it unless it reads the request's own window (then the warm-up is
    /// the start of that call's work: llama.cpp reads a closed call's prompt on anyway).
    pub fn warm_up(
        &self,
        session: &Arc<Session>,
        snapshot: &Snapshot,
        cursor: usize,
        related: &[RelatedFile],
    ) {
        let Placed {
            ctx,
            other_files: related,
            route,
        } = self.place(session, snapshot, cursor, related);
        let Some(primary) = route.chain.first() else {
            return;
        };
        let (Some(fim), true) = (primary.fim, primary.config.is_local()) else {
            return;
        };
        let key = cache_key(&primary.name, &ctx);
        if self.knows(&key) {
            // The request there will be answered without the model (the user accepted, or is
            // typing along, a suggestion).
            return;
        }
        if !lock(&self.shared.docs).contains_key(&snapshot.uri) {
            // Closed meanwhile.
            return;
        }
        let read = ReadAt::of(&snapshot.uri, &ctx);
        {
            let mut reads = lock(&self.shared.last_read);
            if reads
                .get(&primary.name)
                .is_some_and(|last| last.covers(&read))
            {
                // Typing on near the last prompt read (the place only looks new while the
                // parse of half-typed code changes): the server holds the start already.
                return;
            }
            reads.insert(primary.name.clone(), read.clone());
        }
        // The endpoint a request would try first.
        let url = route
            .first_endpoint()
            .map_or_else(|| primary.config.url.to_string(), |e| e.url.clone());
        let model = primary.config.at_endpoint(&url);
        let path = session.display_path(&path_of_uri(&snapshot.uri));
        let repo = Repo {
            name: session.repo_name(),
            path: &path,
            files: &related,
        };
        let max_tokens = max_tokens_for(&model, &ctx);
        let mut ctx = ctx;
        if suffix_read_again(fim, model.provider) {
            ctx.suffix.clear();
        }
        let (prompt, fitted) = fim_prompt(fim, &ctx, &model, &repo, max_tokens);
        let other_files = fitted.to_vec();
        let providers = self.shared.providers.clone();
        let health = self.shared.health.clone();
        let name = primary.name.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let call = FimCall {
                prompt: &prompt,
                max_tokens: 0,
                time_budget: None,
                other_files: &other_files,
            };
            let read = providers.fim(&model, call).await;
            tracing::debug!(
                model = %name,
                endpoint = url,
                ms = started.elapsed().as_millis() as u64,
                ok = read.is_ok(),
                "prompt cache warmed"
            );
            // What it read is the first measure of how fast the server reads a prompt, before
            // any action asks it to read a long one.
            if let Some(read) = read.ok().and_then(|answer| answer.prompt_read) {
                health.record_reading((&name, &url), read);
            }
        });
        let warm_up = WarmUp {
            task: task.abort_handle(),
            read,
        };
        if let Some(old) = lock(&self.shared.warm_up).replace(warm_up) {
            old.task.abort();
        }
    }
}
