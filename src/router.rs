//! Routing: (task, features of the target, privacy, model states, the day's spend, config)
//! → a decision: the candidate chain in order, each candidate kept or dropped with the
//! reason. Pure: no I/O, no clock, no async; everything it needs comes in as data.
//!
//! The algorithm, in two steps:
//! 1. **Pick a chain.** `[[rules]]` in order, first match wins: a rule matches when its
//!    `task` (if any) is the request's task and every `when` key holds. Otherwise
//!    `routes.TASK`; otherwise (a user action with no route of its own) `routes.explain`.
//! 2. **Filter it**, candidate by candidate, keeping the order. A candidate is dropped for
//!    the first of these that applies: listed earlier in the chain (duplicate), not defined,
//!    privacy (a cloud model while the path matches `privacy.local_only` or secrets were
//!    found), budget (a cloud model once `budget.daily_usd` is spent), health (every
//!    endpoint's circuit open, cooling after 429/529, or probe failing), context-window fit.
//!    Policy comes before live state because it holds for the rest of the day, so it is the
//!    more useful reason.
//! 3. **For completion, prefer the models expected inside the budget.** A kept model whose
//!    average time to the answer exceeds `completion.budget_ms` is tried after the kept
//!    models that may make it (measured inside it, not measured yet, or measured long ago:
//!    a stale average is measured again). With one model, or when none may make it, the
//!    configured order stands.
//!
//! A model may have several endpoints (`url = [..]`). Each has its own state and latency
//! averages; [`endpoint_order`] says which to try first, and a model is healthy when one of
//! its endpoints is. The verdicts list each endpoint in the order it would be tried.
//!
//! Globs are compiled once, in [`Router::new`] (called when a session is compiled); a
//! decision allocates little beyond its verdict strings. This module knows nothing of LSP,
//! HTTP or the clock: [`crate::route_input`] gathers the request's facts, each model's
//! [`ModelLive`] (from the resilience layer: per endpoint its state and latency averages)
//! and the day's spend (from the providers).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::config::Config;
use crate::providers::too_long::Sizes;
use crate::syntax::Language;
use crate::syntax::features::{Features, SensitiveKind};

/// The live state of an endpoint as the resilience layer sees it, or of a model (the best
/// of its endpoints', [`model_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelState {
    #[default]
    Healthy,
    /// Consecutive failures opened the circuit; closed again (half-open) after `for_ms`.
    CircuitOpen { for_ms: u64 },
    /// The provider said 429/529; retry after `for_ms`.
    Cooling { for_ms: u64 },
    /// A health probe failed (local endpoints are probed in the background).
    Down,
}

/// Averages of an endpoint's successful calls, exponentially weighted so that recent calls
/// count most: time to the first token (for an answer that is not streamed, the whole
/// answer) and time to the whole answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub first_token_ms: u64,
    pub answer_ms: u64,
    /// Successful calls averaged.
    pub calls: u32,
    /// The last of them was long ago ([`crate::resilience::STALE_AVERAGE`]): a model put
    /// last for being slow is rarely called again, so its average would never improve. A
    /// stale average orders and demotes nothing; the next call measures afresh.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

impl Latency {
    /// The time to the whole answer, unless the average is stale.
    pub fn current_answer_ms(&self) -> Option<u64> {
        (!self.stale).then_some(self.answer_ms)
    }
}

/// What the resilience layer knows of one endpoint now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointLive {
    pub state: ModelState,
    /// `None` until a call to it has succeeded.
    pub latency: Option<Latency>,
    /// The last prompt its server refused as longer than its context: this crate's estimate
    /// of its tokens, and what the server said of the sizes.
    pub refused: Option<(u32, Sizes)>,
}

/// The context a model's servers take, in this crate's estimate of tokens: its
/// `context_window`, or less where each of its endpoints refused a longer prompt (the most
/// any of them takes, [`Sizes::prompt_room`] beside an answer of `max_output_tokens`); and
/// what the server said, when that is less.
pub fn window_taken(
    context_window: u32,
    max_output_tokens: u32,
    live: &[EndpointLive],
) -> (u32, Option<Sizes>) {
    let taken = |e: &EndpointLive| {
        e.refused.and_then(|(estimated, sizes)| {
            let room = sizes.prompt_room(estimated, max_output_tokens)?;
            let window = room.saturating_add(max_output_tokens);
            (window < context_window).then_some((window, sizes))
        })
    };
    live.iter()
        .map(|e| taken(e).map_or((context_window, None), |(w, s)| (w, Some(s))))
        .max_by_key(|(window, _)| *window)
        .unwrap_or((context_window, None))
}

/// What the resilience layer knows of a model now: its endpoints, by URL. An endpoint
/// absent from the map is healthy and not measured yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelLive {
    pub endpoints: HashMap<String, EndpointLive>,
}

impl ModelLive {
    /// Each of `urls` as this knows it, in the same order.
    pub fn of<'u>(&self, urls: impl IntoIterator<Item = &'u str>) -> Vec<EndpointLive> {
        urls.into_iter()
            .map(|url| self.endpoints.get(url).copied().unwrap_or_default())
            .collect()
    }
}

/// The order in which to try a model's endpoints (indexes into `endpoints`, which are in
/// the configured order). Those that can take a call now come first: an endpoint with no
/// measurement yet before the measured ones (so that each gets measured), then the fastest
/// on average to the whole answer; ties keep the configured order. Those that cannot take
/// a call (circuit open, cooling, probe failing) come last, in the configured order.
pub fn endpoint_order(endpoints: &[EndpointLive]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..endpoints.len()).collect();
    order.sort_by_key(|&i| {
        let e = &endpoints[i];
        (
            e.state != ModelState::Healthy,
            e.latency.and_then(|l| l.current_answer_ms()),
        )
    });
    order
}

/// A model's state from its endpoints': healthy when one of them is; otherwise the problem
/// that ends soonest (a failing probe has no known end, so it comes last).
pub fn model_state(endpoints: &[EndpointLive]) -> ModelState {
    endpoints
        .iter()
        .map(|e| e.state)
        .min_by_key(|s| match s {
            ModelState::Healthy => (0, 0),
            ModelState::CircuitOpen { for_ms } | ModelState::Cooling { for_ms } => (1, *for_ms),
            ModelState::Down => (2, 0),
        })
        .unwrap_or_default()
}

/// What the router is asked.
#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    /// `complete`, `explain`, `refactor`, `review`, or an `[actions.*]` name.
    pub task: &'a str,
    pub features: &'a Features,
    /// The document's file-system path (for `privacy.local_only` and rules' `paths`); the
    /// caller turns `file://` URIs into paths.
    pub path: &'a str,
    /// The workspace root, when known: globs are matched against the path relative to it
    /// as well as against `path` itself, so that `src/legacy/**` works.
    pub workspace_root: Option<&'a str>,
    /// Secrets found in what would be sent.
    pub secrets_found: usize,
    /// Estimated prompt tokens (for context-window fit).
    pub prompt_tokens: u32,
}

impl<'a> RouteRequest<'a> {
    /// A request with no workspace root, no secrets and an empty prompt; set the rest with
    /// the public fields.
    pub fn new(task: &'a str, features: &'a Features, path: &'a str) -> RouteRequest<'a> {
        RouteRequest {
            task,
            features,
            path,
            workspace_root: None,
            secrets_found: 0,
            prompt_tokens: 0,
        }
    }
}

/// The routing task name of completion.
pub const COMPLETE: &str = "complete";

/// The world the decision is made in.
#[derive(Debug, Clone, Default)]
pub struct RouteState {
    /// Models absent from the map are taken as healthy and not measured yet.
    pub models: HashMap<String, ModelLive>,
    pub spent_today_usd: f64,
}

/// Which filter dropped a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Listed earlier in the same chain.
    Duplicate,
    /// Not defined under `[models]` (only possible with a hand-built config).
    Unknown,
    /// A cloud model for a `local_only` path or code with secrets.
    Privacy,
    /// A cloud model once the day's budget is spent.
    Budget,
    /// Circuit open, cooling after 429/529, or health probe failing.
    Health,
    /// The prompt plus the answer do not fit the context window.
    Fit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub model: String,
    pub kept: bool,
    /// Why it was kept or dropped, in a few words (`"circuit open for another 20 s"`).
    pub reason: String,
    /// The filter that dropped it; `None` when kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_by: Option<Filter>,
    /// Kept, but tried after the kept models expected to answer inside the completion
    /// budget (its average is over it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub demoted: bool,
    /// Its endpoints in the order they would be tried, with their state and averages (for
    /// a model kept or dropped for its health; empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointVerdict>,
    /// The context window it was judged by: its `context_window`, or for an action less,
    /// where its servers were seen to take less ([`window_taken`]), with what the server
    /// said. An action's prompt is built for it. 0 for a model listed twice or not defined.
    #[serde(skip)]
    pub window: Window,
}

/// The context window, in this crate's estimate of tokens, a model was judged by, and what
/// its server said of its context when that made the window less than configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub tokens: u32,
    pub refused: Option<Sizes>,
}

/// One endpoint of a candidate, as the router saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointVerdict {
    pub url: String,
    /// `"healthy"`, or what keeps it from taking a call (`"circuit open for another 8 s"`).
    pub status: String,
    /// `None`: no successful call measured yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

impl EndpointVerdict {
    /// `"http://gpu-box:8080  healthy, ~340 ms to the answer (first token ~120 ms, 5 calls)"`.
    fn line(&self, url_width: usize) -> String {
        let averages = match self.latency {
            Some(l) => format!(
                ", ~{} to the answer (first token ~{}, {} call{}{})",
                latency_words(l.answer_ms),
                latency_words(l.first_token_ms),
                l.calls,
                plural(l.calls as usize),
                if l.stale {
                    "; long ago: the next call measures again"
                } else {
                    ""
                }
            ),
            None => ", no call measured yet".into(),
        };
        format!("{:url_width$}  {}{averages}", self.url, self.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub task: String,
    /// Where the chain came from: `"rules[2]"` or `"routes.explain"`.
    pub chain_source: String,
    /// Why that source, in plain words (`"task refactor, language rust, 120 lines ≥ 80"`).
    pub why: String,
    pub candidates: Vec<Verdict>,
    /// True when the budget dropped a cloud model (the caller tells the user once).
    pub budget_exhausted: bool,
}

impl Decision {
    /// The models to try, in order: the kept candidates, those demoted for their speed last.
    pub fn chain(&self) -> impl Iterator<Item = &str> {
        let kept = |demoted: bool| {
            self.candidates
                .iter()
                .filter(move |v| v.kept && v.demoted == demoted)
                .map(|v| v.model.as_str())
        };
        kept(false).chain(kept(true))
    }

    /// The window `model` was judged by ([`Verdict::window`]); `None` for a model this
    /// decision did not judge.
    pub fn window_of(&self, model: &str) -> Option<Window> {
        let verdict = self.candidates.iter().find(|v| v.model == model)?;
        Some(verdict.window)
    }

    /// When no model is left: one line for the user saying why. `None` when the chain has
    /// a model to try.
    pub fn unavailable(&self) -> Option<String> {
        if self.candidates.iter().any(|v| v.kept) {
            return None;
        }
        if self.candidates.is_empty() {
            return Some(format!(
                "no model for {}: {} lists no models ({})",
                self.task, self.chain_source, self.why
            ));
        }
        let mut line = format!("no model for {}: ", self.task);
        for (i, v) in self.candidates.iter().enumerate() {
            if i > 0 {
                line.push_str("; ");
            }
            let _ = write!(line, "{}: {}", v.model, v.reason);
        }
        Some(line)
    }

    /// A multi-line summary for people (`pilotfish route`): where the chain came from, each
    /// candidate with its verdict, and what will be tried.
    pub fn explain(&self) -> String {
        let mut out = format!(
            "task {}: chain from {} ({})\n",
            self.task, self.chain_source, self.why
        );
        let width = self
            .candidates
            .iter()
            .map(|v| v.model.chars().count())
            .max()
            .unwrap_or(0);
        for (i, v) in self.candidates.iter().enumerate() {
            let verdict = if v.kept { "kept   " } else { "dropped" };
            let _ = writeln!(
                out,
                "  {}. {:width$}  {verdict}  {}",
                i + 1,
                v.model,
                v.reason
            );
            let url_width = v
                .endpoints
                .iter()
                .map(|e| e.url.chars().count())
                .max()
                .unwrap_or(0);
            for endpoint in &v.endpoints {
                let _ = writeln!(out, "       {}", endpoint.line(url_width));
            }
        }
        match self.unavailable() {
            Some(line) => out.push_str(&line),
            None => {
                out.push_str("try: ");
                out.push_str(&self.chain().collect::<Vec<_>>().join(" → "));
            }
        }
        if self.budget_exhausted {
            out.push_str("\nthe daily budget is spent: cloud models are skipped until tomorrow");
        }
        out.push('\n');
        out
    }
}

impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct DecisionJson<'a> {
            task: &'a str,
            chain_source: &'a str,
            why: &'a str,
            /// The kept models, in order: what the caller will try.
            chain: Vec<&'a str>,
            candidates: &'a [Verdict],
            budget_exhausted: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            unavailable: Option<String>,
        }
        DecisionJson {
            task: &self.task,
            chain_source: &self.chain_source,
            why: &self.why,
            chain: self.chain().collect(),
            candidates: &self.candidates,
            budget_exhausted: self.budget_exhausted,
            unavailable: self.unavailable(),
        }
        .serialize(serializer)
    }
}

/// A routing setting that cannot be compiled, named by its config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct RouterError {
    /// `privacy.local_only[2]`, `rules[0].when.paths[1]`, `rules[1].when.languages[0]`.
    pub key: String,
    pub reason: String,
}

/// The routing part of a configuration, compiled once (globs, language names, which models
/// are local) and then asked for any number of decisions.
#[derive(Debug, Clone)]
pub struct Router {
    models: BTreeMap<String, ModelFacts>,
    routes: BTreeMap<String, Vec<String>>,
    actions: BTreeSet<String>,
    rules: Vec<Rule>,
    local_only: PathGlobs,
    daily_usd: Option<f64>,
    /// `completion.budget_ms`: completion prefers the models expected inside it.
    completion_budget_ms: u64,
}

/// What routing needs to know of a model; `local` is worked out once (it may parse a URL).
#[derive(Debug, Clone)]
struct ModelFacts {
    local: bool,
    context_window: u32,
    max_output_tokens: u32,
    /// Its endpoints, in the configured order.
    urls: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    task: Option<String>,
    languages: Option<Vec<Language>>,
    min_lines: Option<u32>,
    max_lines: Option<u32>,
    min_tokens: Option<u32>,
    max_tokens: Option<u32>,
    min_complexity: Option<u32>,
    sensitive: Option<bool>,
    paths: Option<PathGlobs>,
    use_models: Vec<String>,
}

/// Globs with the patterns as the user wrote them (for reasons). A pattern with no `/`
/// matches the file name anywhere (as in `.gitignore`); `*` never crosses a `/`, `**` does.
#[derive(Debug, Clone)]
struct PathGlobs {
    set: GlobSet,
    patterns: Vec<String>,
}

impl PathGlobs {
    fn compile(key: &str, patterns: &[String]) -> Result<PathGlobs, RouterError> {
        let mut builder = GlobSetBuilder::new();
        for (i, pattern) in patterns.iter().enumerate() {
            let error = |reason: String| RouterError {
                key: format!("{key}[{i}]"),
                reason,
            };
            if pattern.is_empty() {
                return Err(error("empty glob".into()));
            }
            let anchored = if pattern.contains('/') {
                pattern.clone()
            } else {
                format!("**/{pattern}")
            };
            let glob = GlobBuilder::new(&anchored)
                .literal_separator(true)
                .build()
                .map_err(|e| error(format!("invalid glob {pattern:?}: {}", e.kind())))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| RouterError {
            key: key.to_string(),
            reason: format!("cannot compile globs: {e}"),
        })?;
        Ok(PathGlobs {
            set,
            patterns: patterns.to_vec(),
        })
    }

    fn is_match(&self, path: &DocPath<'_>) -> bool {
        !self.set.is_empty()
            && (self.set.is_match_candidate(&path.absolute)
                || path
                    .relative
                    .as_ref()
                    .is_some_and(|r| self.set.is_match_candidate(r)))
    }

    /// The first pattern (as written) that matches, for reasons.
    fn first_match(&self, path: &DocPath<'_>) -> Option<&str> {
        if !self.is_match(path) {
            return None;
        }
        let mut hits = self.set.matches_candidate(&path.absolute);
        if let Some(relative) = &path.relative {
            hits.extend(self.set.matches_candidate(relative));
        }
        hits.into_iter().min().map(|i| self.patterns[i].as_str())
    }
}

/// The document path in the two forms globs are matched against.
struct DocPath<'a> {
    absolute: Candidate<'a>,
    relative: Option<Candidate<'a>>,
}

impl<'a> DocPath<'a> {
    fn new(path: &'a str, root: Option<&'a str>) -> DocPath<'a> {
        let relative = root
            .filter(|r| !r.is_empty())
            .and_then(|r| Path::new(path).strip_prefix(r).ok())
            .filter(|r| !r.as_os_str().is_empty())
            .map(Candidate::new);
        DocPath {
            absolute: Candidate::new(path),
            relative,
        }
    }
}

impl Router {
    /// Compiles the routing settings of `config`: `privacy.local_only` and every rule's
    /// `paths` globs, every rule's `languages`. The error names the key.
    pub fn new(config: &Config) -> Result<Router, RouterError> {
        let local_only = PathGlobs::compile("privacy.local_only", &config.privacy.local_only)?;
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let when = &rule.when;
            let languages = match &when.languages {
                None => None,
                Some(names) => Some(
                    names
                        .iter()
                        .enumerate()
                        .map(|(j, name)| {
                            Language::named(name).ok_or_else(|| RouterError {
                                key: format!("rules[{i}].when.languages[{j}]"),
                                reason: format!(
                                    "unknown language {name:?} (expected {})",
                                    Language::names_for_humans()
                                ),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let paths = match &when.paths {
                None => None,
                Some(p) => Some(PathGlobs::compile(&format!("rules[{i}].when.paths"), p)?),
            };
            rules.push(Rule {
                task: rule.task.clone(),
                languages,
                min_lines: when.min_lines,
                max_lines: when.max_lines,
                min_tokens: when.min_tokens,
                max_tokens: when.max_tokens,
                min_complexity: when.min_complexity,
                sensitive: when.sensitive,
                paths,
                use_models: rule.use_models.clone(),
            });
        }
        let models = config
            .models
            .iter()
            .map(|(name, m)| {
                let facts = ModelFacts {
                    local: m.is_local(),
                    context_window: m.context_window,
                    max_output_tokens: m.max_output_tokens,
                    urls: m.url.iter().map(String::from).collect(),
                };
                (name.clone(), facts)
            })
            .collect();
        Ok(Router {
            models,
            routes: config.routes.clone(),
            actions: config.actions.keys().cloned().collect(),
            rules,
            local_only,
            daily_usd: config.budget.daily_usd,
            completion_budget_ms: config.completion.budget_ms,
        })
    }

    /// Decides the chain for `request` in `state`.
    pub fn decide(&self, request: &RouteRequest<'_>, state: &RouteState) -> Decision {
        let path = DocPath::new(request.path, request.workspace_root);
        let (chain_source, why, chain) = self.select_chain(request, &path);
        // Computed once, used for every candidate.
        let asked = Asked {
            task: request.task,
            needs: u64::from(request.prompt_tokens),
            private_pattern: self.local_only.first_match(&path),
            secrets: request.secrets_found,
            budget_spent: self
                .daily_usd
                .filter(|daily| state.spent_today_usd >= *daily)
                .map(|daily| (state.spent_today_usd, daily)),
        };
        let mut candidates: Vec<Verdict> = Vec::with_capacity(chain.len());
        // Per kept candidate: its expected time to the answer, when measured.
        let mut expected_ms: Vec<Option<u64>> = Vec::with_capacity(chain.len());
        for (position, model) in chain.iter().enumerate() {
            let duplicate = chain[..position].iter().position(|m| m == model);
            let (verdict, expected) = match (duplicate, self.models.get(model)) {
                (Some(first), _) => (
                    Verdict::dropped(
                        model,
                        Filter::Duplicate,
                        format!("listed twice; kept at position {}", first + 1),
                    ),
                    None,
                ),
                (None, Some(facts)) => judge(model, facts, state, &asked),
                (None, None) => (
                    Verdict::dropped(model, Filter::Unknown, "not defined under [models]".into()),
                    None,
                ),
            };
            expected_ms.push(expected.filter(|_| verdict.kept));
            candidates.push(verdict);
        }
        let budget_exhausted = candidates
            .iter()
            .any(|v| v.dropped_by == Some(Filter::Budget));
        Self::keep_the_largest_window_when_none_fits(&mut candidates);
        if request.task == COMPLETE {
            self.prefer_inside_the_budget(&mut candidates, &expected_ms);
        }
        Decision {
            task: request.task.to_string(),
            chain_source,
            why,
            candidates,
            budget_exhausted,
        }
    }

    /// When no candidate is kept and some were dropped only because the request does not
    /// fit their window, the one with the largest window (the first of equals) serves after
    /// all: its prompt is cut to fit it (an explanation or a review of the lines that fit; a
    /// rewrite refuses with its size). A request no model holds whole is still answered.
    fn keep_the_largest_window_when_none_fits(candidates: &mut [Verdict]) {
        let nothing_kept = !candidates.iter().any(|v| v.kept);
        let mut serving = None;
        for (i, verdict) in candidates.iter().enumerate() {
            if nothing_kept
                && verdict.dropped_by == Some(Filter::Fit)
                && serving
                    .is_none_or(|s: usize| verdict.window.tokens > candidates[s].window.tokens)
            {
                serving = Some(i);
            }
        }
        for (i, verdict) in candidates.iter_mut().enumerate() {
            if serving == Some(i) {
                verdict.kept = true;
                verdict.dropped_by = None;
                verdict.reason.push_str(
                    ": no model holds it whole, so the largest window serves, the code cut to fit",
                );
            } else if verdict.dropped_by == Some(Filter::Fit) {
                verdict.endpoints.clear();
            }
        }
    }

    /// Step 3, for completion: the kept candidates expected to take longer than the budget
    /// are tried after those that may make it, when there is one that may.
    fn prefer_inside_the_budget(&self, candidates: &mut [Verdict], expected_ms: &[Option<u64>]) {
        let budget = self.completion_budget_ms;
        let slow = |i: usize| expected_ms[i].is_some_and(|ms| ms > budget);
        let may_make_it = (0..candidates.len()).any(|i| candidates[i].kept && !slow(i));
        if !may_make_it {
            return;
        }
        for (i, verdict) in candidates.iter_mut().enumerate() {
            if let (true, Some(ms)) = (verdict.kept && slow(i), expected_ms[i]) {
                verdict.demoted = true;
                let _ = write!(
                    verdict.reason,
                    "; expected {} > budget {}: tried after the models that may answer inside it",
                    latency_words(ms),
                    latency_words(budget)
                );
            }
        }
    }

    /// Step 1: the first matching rule, else the task's route, else the explain route.
    fn select_chain(
        &self,
        request: &RouteRequest<'_>,
        path: &DocPath<'_>,
    ) -> (String, String, &[String]) {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.holds(request, path) {
                return (
                    format!("rules[{i}]"),
                    rule.describe(request, path),
                    &rule.use_models,
                );
            }
        }
        if let Some(chain) = self.routes.get(request.task) {
            return (
                format!("routes.{}", request.task),
                format!("default chain for {}; no rule matched", request.task),
                chain,
            );
        }
        let what = if self.actions.contains(request.task) {
            "action"
        } else {
            "unknown task"
        };
        let why = format!(
            "{what} {} has no route of its own; using the explain chain",
            request.task
        );
        let chain = self.routes.get("explain").map_or(&[][..], Vec::as_slice);
        ("routes.explain".into(), why, chain)
    }
}

impl Rule {
    /// Whether every condition holds. Allocation-free: runs for every rule on every request.
    fn holds(&self, request: &RouteRequest<'_>, path: &DocPath<'_>) -> bool {
        let f = request.features;
        self.task.as_deref().is_none_or(|t| t == request.task)
            && self
                .languages
                .as_ref()
                .is_none_or(|l| l.contains(&f.language))
            && self.min_lines.is_none_or(|n| f.lines >= n)
            && self.max_lines.is_none_or(|n| f.lines <= n)
            && self.min_tokens.is_none_or(|n| f.tokens >= n)
            && self.max_tokens.is_none_or(|n| f.tokens <= n)
            && self.min_complexity.is_none_or(|n| f.complexity() >= n)
            && self.sensitive.is_none_or(|s| f.is_sensitive() == s)
            && self.paths.as_ref().is_none_or(|p| p.is_match(path))
    }

    /// The conditions that held, in words: `"task refactor, language rust, 120 lines ≥ 80"`.
    fn describe(&self, request: &RouteRequest<'_>, path: &DocPath<'_>) -> String {
        let f = request.features;
        let mut parts: Vec<String> = Vec::new();
        if let Some(task) = &self.task {
            parts.push(format!("task {task}"));
        }
        if self.languages.is_some() {
            parts.push(format!("language {}", f.language.name()));
        }
        if let Some(n) = self.min_lines {
            parts.push(format!("{} lines ≥ {}", thousands(f.lines), thousands(n)));
        }
        if let Some(n) = self.max_lines {
            parts.push(format!("{} lines ≤ {}", thousands(f.lines), thousands(n)));
        }
        if let Some(n) = self.min_tokens {
            parts.push(format!("{} tokens ≥ {}", thousands(f.tokens), thousands(n)));
        }
        if let Some(n) = self.max_tokens {
            parts.push(format!("{} tokens ≤ {}", thousands(f.tokens), thousands(n)));
        }
        if let Some(n) = self.min_complexity {
            parts.push(format!("complexity {} ≥ {n}", f.complexity()));
        }
        match self.sensitive {
            Some(true) => {
                let mut kinds: Vec<&str> = f
                    .sensitive_calls
                    .iter()
                    .map(|c| sensitive_kind_name(c.kind))
                    .collect();
                kinds.sort_unstable();
                kinds.dedup();
                parts.push(format!("sensitive calls: {}", kinds.join(", ")));
            }
            Some(false) => parts.push("no sensitive calls".into()),
            None => {}
        }
        if let Some(pattern) = self.paths.as_ref().and_then(|p| p.first_match(path)) {
            parts.push(format!("path matches {pattern}"));
        }
        if parts.is_empty() {
            "rule without conditions".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What a decision asks of every candidate, computed once.
struct Asked<'a> {
    task: &'a str,
    /// The prompt's estimated tokens.
    needs: u64,
    /// The `privacy.local_only` pattern the document's path matches.
    private_pattern: Option<&'a str>,
    secrets: usize,
    /// The day's spend and the daily budget, once the spend has reached it.
    budget_spent: Option<(f64, f64)>,
}

impl Verdict {
    fn dropped(model: &str, filter: Filter, reason: String) -> Verdict {
        Verdict {
            model: model.to_owned(),
            kept: false,
            reason,
            dropped_by: Some(filter),
            demoted: false,
            endpoints: Vec::new(),
            window: Window::default(),
        }
    }
}

/// The verdict on `model`, defined under `[models]` as `facts`, in `state`, and its expected
/// time to the answer when measured: the filters in order — privacy, budget, health, fit —
/// the first that drops it saying why.
fn judge(
    model: &str,
    facts: &ModelFacts,
    state: &RouteState,
    asked: &Asked<'_>,
) -> (Verdict, Option<u64>) {
    let live = match state.models.get(model) {
        Some(known) => known.of(facts.urls.iter().map(String::as_str)),
        None => vec![EndpointLive::default(); facts.urls.len()],
    };
    let total = asked.needs + u64::from(facts.max_output_tokens);
    let order = endpoint_order(&live);
    // Completion sizes its prompts apart and asks for short answers: what an action's
    // refusal said of a server is not held against its completions.
    let (tokens, refused) = if asked.task == COMPLETE {
        (facts.context_window, None)
    } else {
        window_taken(facts.context_window, facts.max_output_tokens, &live)
    };
    // A window smaller than configured is what its server was seen to take.
    let taken = if refused.is_some() {
        " (what its server takes)"
    } else {
        ""
    };
    let expected = order
        .first()
        .map(|&i| live[i])
        .filter(|e| e.state == ModelState::Healthy)
        .and_then(|e| e.latency)
        .and_then(|l| l.current_answer_ms());
    let drop = |filter: Filter, reason: String| (false, reason, Some(filter));
    let (kept, reason, dropped_by) =
        if !facts.local && (asked.private_pattern.is_some() || asked.secrets > 0) {
            let reason = match asked.private_pattern {
                Some(pattern) => format!("cloud model skipped: path matches {pattern}"),
                None => format!(
                    "cloud model skipped: {} secret{} found in the code",
                    asked.secrets,
                    plural(asked.secrets)
                ),
            };
            drop(Filter::Privacy, reason)
        } else if let (false, Some((spent, daily))) = (facts.local, asked.budget_spent) {
            drop(
                Filter::Budget,
                format!("daily budget reached: ${spent:.2} of ${daily:.2} spent"),
            )
        } else if let Some(reason) = health_problem(model_state(&live)) {
            drop(Filter::Health, reason)
        } else if total > u64::from(tokens) {
            drop(
                Filter::Fit,
                format!(
                    "needs ~{} tokens, window is {}{taken}",
                    thousands(total),
                    thousands(u64::from(tokens))
                ),
            )
        } else {
            let kind = if facts.local { "local" } else { "cloud" };
            (
                true,
                format!(
                    "{kind}, healthy, ~{} of {} tokens{taken}",
                    thousands(total),
                    thousands(u64::from(tokens))
                ),
                None,
            )
        };
    // Its endpoints are shown where they say why it was kept or dropped.
    let endpoints = match dropped_by {
        None | Some(Filter::Health | Filter::Fit) => order
            .iter()
            .map(|&i| EndpointVerdict {
                url: facts.urls[i].clone(),
                status: health_problem(live[i].state).unwrap_or_else(|| "healthy".into()),
                latency: live[i].latency,
            })
            .collect(),
        Some(_) => Vec::new(),
    };
    let verdict = Verdict {
        model: model.to_owned(),
        kept,
        reason,
        dropped_by,
        demoted: false,
        endpoints,
        window: Window { tokens, refused },
    };
    (verdict, expected)
}

/// Why a model in `state` cannot be tried now; `None` when it is healthy.
fn health_problem(state: ModelState) -> Option<String> {
    match state {
        ModelState::Healthy => None,
        ModelState::CircuitOpen { for_ms } => Some(format!(
            "circuit open for another {}",
            duration_words(for_ms)
        )),
        ModelState::Cooling { for_ms } => {
            Some(format!("rate-limited, retry in {}", duration_words(for_ms)))
        }
        ModelState::Down => Some("health probe failing".into()),
    }
}

fn sensitive_kind_name(kind: SensitiveKind) -> &'static str {
    match kind {
        SensitiveKind::Exec => "exec",
        SensitiveKind::Eval => "eval",
        SensitiveKind::Sql => "sql",
        SensitiveKind::Crypto => "crypto",
        SensitiveKind::Deserialize => "deserialize",
        SensitiveKind::PathFromInput => "path from input",
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `40000` → `"40,000"`.
fn thousands(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A measured time: `"340 ms"` under a second, `"1.8 s"` above.
fn latency_words(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1_000.0)
    }
}

/// `450` → `"450 ms"`, `12_000` → `"12 s"`, `300_000` → `"5 min"` (rounded up).
fn duration_words(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{} s", ms.div_ceil(1_000))
    } else {
        format!("{} min", ms.div_ceil(60_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadedConfig, Origin};
    use crate::syntax::features::SensitiveCall;

    /// Models shared by every case: two local, two cloud (`cheap` is cloud by its URL).
    const MODELS: &str = r#"
[models.fast]
provider = "ollama"
url = "http://127.0.0.1:11434"
model = "qwen2.5-coder:1.5b"
fim = "native"
local = true
context_window = 8192
max_output_tokens = 256

[models.mid]
provider = "ollama"
url = "http://127.0.0.1:11434"
model = "qwen2.5-coder:14b"
local = true
context_window = 32768
max_output_tokens = 1024

[models.cloud]
provider = "anthropic"
url = "https://api.anthropic.com"
model = "claude"
local = false
context_window = 200000
max_output_tokens = 4096

[models.cheap]
provider = "openai"
url = "https://api.example.com/v1"
model = "mini"
context_window = 128000
max_output_tokens = 4096
"#;

    const ROUTES: &str = r#"
[routes]
complete = ["fast"]
explain = ["mid", "cloud"]
refactor = ["cloud", "mid"]
review = ["cloud", "cheap", "mid"]
"#;

    fn config(routes_extra: &str, rest: &str) -> Config {
        let text = format!("{MODELS}{ROUTES}{routes_extra}\n{rest}");
        LoadedConfig::from_toml_str(&text, Origin::BuiltIn)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
            .config
    }

    fn sensitive(kind: SensitiveKind) -> SensitiveCall {
        SensitiveCall {
            kind,
            line: 3,
            text: "call()".into(),
        }
    }

    /// One table row: the inputs with defaults, then what is expected.
    struct Case {
        name: &'static str,
        routes_extra: &'static str,
        rest: &'static str,
        task: &'static str,
        features: Features,
        path: &'static str,
        root: Option<&'static str>,
        secrets: usize,
        prompt_tokens: u32,
        states: Vec<(&'static str, ModelState)>,
        endpoints: Vec<(&'static str, &'static str, EndpointLive)>,
        spent: f64,
        // expected
        chain: &'static [&'static str],
        source: &'static str,
        why: &'static str,
        dropped: Vec<(&'static str, &'static str)>,
        /// (model, words its verdict's reason must contain), kept or not.
        reasons: Vec<(&'static str, &'static str)>,
        /// (model, its endpoints in the order they would be tried).
        orders: Vec<(&'static str, &'static [&'static str])>,
        budget_exhausted: bool,
    }

    fn case(name: &'static str) -> Case {
        Case {
            name,
            routes_extra: "",
            rest: "",
            task: "explain",
            features: Features {
                language: Language::Rust,
                node_kind: "function_item".into(),
                lines: 20,
                tokens: 200,
                branches: 2,
                max_nesting: 1,
                sensitive_calls: Vec::new(),
                syntax_errors: 0,
            },
            path: "/ws/src/lib.rs",
            root: Some("/ws"),
            secrets: 0,
            prompt_tokens: 1_000,
            states: Vec::new(),
            endpoints: Vec::new(),
            spent: 0.0,
            chain: &[],
            source: "",
            why: "",
            dropped: Vec::new(),
            reasons: Vec::new(),
            orders: Vec::new(),
            budget_exhausted: false,
        }
    }

    impl Case {
        fn rules(mut self, rest: &'static str) -> Self {
            self.rest = rest;
            self
        }
        fn routes(mut self, extra: &'static str) -> Self {
            self.routes_extra = extra;
            self
        }
        fn task(mut self, task: &'static str) -> Self {
            self.task = task;
            self
        }
        fn lang(mut self, language: Language) -> Self {
            self.features.language = language;
            self
        }
        fn lines(mut self, lines: u32) -> Self {
            self.features.lines = lines;
            self
        }
        fn tokens(mut self, tokens: u32) -> Self {
            self.features.tokens = tokens;
            self
        }
        fn branches(mut self, branches: u32) -> Self {
            self.features.branches = branches;
            self
        }
        fn calls(mut self, kinds: &[SensitiveKind]) -> Self {
            self.features.sensitive_calls = kinds.iter().map(|k| sensitive(*k)).collect();
            self
        }
        fn path(mut self, path: &'static str, root: Option<&'static str>) -> Self {
            self.path = path;
            self.root = root;
            self
        }
        fn secrets(mut self, n: usize) -> Self {
            self.secrets = n;
            self
        }
        fn prompt(mut self, tokens: u32) -> Self {
            self.prompt_tokens = tokens;
            self
        }
        fn state(mut self, model: &'static str, state: ModelState) -> Self {
            self.states.push((model, state));
            self
        }
        /// One endpoint's live state and averages (`answer_ms`, when some call succeeded).
        fn endpoint(
            mut self,
            model: &'static str,
            url: &'static str,
            state: ModelState,
            answer_ms: Option<u64>,
        ) -> Self {
            let latency = answer_ms.map(|ms| Latency {
                first_token_ms: ms,
                answer_ms: ms,
                calls: 4,
                stale: false,
            });
            self.endpoints.push((
                model,
                url,
                EndpointLive {
                    state,
                    latency,
                    refused: None,
                },
            ));
            self
        }
        /// `model`'s server at `url` refused a prompt estimated at `estimated` tokens,
        /// saying its context and how many tokens it counted.
        fn refused(
            mut self,
            model: &'static str,
            url: &'static str,
            estimated: u32,
            (context, prompt): (u32, u32),
        ) -> Self {
            let sizes = Sizes {
                context: Some(context),
                prompt: Some(prompt),
            };
            let live = EndpointLive {
                refused: Some((estimated, sizes)),
                ..EndpointLive::default()
            };
            self.endpoints.push((model, url, live));
            self
        }
        /// Marks the averages of the endpoints given so far for `model` as stale.
        fn stale(mut self, model: &'static str) -> Self {
            for (m, _, live) in &mut self.endpoints {
                if *m == model {
                    if let Some(latency) = live.latency.as_mut() {
                        latency.stale = true;
                    }
                }
            }
            self
        }
        fn spent(mut self, usd: f64) -> Self {
            self.spent = usd;
            self
        }
        fn expect(
            mut self,
            chain: &'static [&'static str],
            source: &'static str,
            why: &'static str,
        ) -> Self {
            self.chain = chain;
            self.source = source;
            self.why = why;
            self
        }
        fn dropped(mut self, model: &'static str, reason: &'static str) -> Self {
            self.dropped.push((model, reason));
            self
        }
        fn reason(mut self, model: &'static str, reason: &'static str) -> Self {
            self.reasons.push((model, reason));
            self
        }
        fn order(mut self, model: &'static str, urls: &'static [&'static str]) -> Self {
            self.orders.push((model, urls));
            self
        }
        fn budget_exhausted(mut self) -> Self {
            self.budget_exhausted = true;
            self
        }

        fn run(&self) {
            let config = config(self.routes_extra, self.rest);
            let router = Router::new(&config).unwrap_or_else(|e| panic!("{}: {e}", self.name));
            let request = RouteRequest {
                task: self.task,
                features: &self.features,
                path: self.path,
                workspace_root: self.root,
                secrets_found: self.secrets,
                prompt_tokens: self.prompt_tokens,
            };
            let mut state = RouteState {
                spent_today_usd: self.spent,
                ..RouteState::default()
            };
            for (model, s) in &self.states {
                state
                    .models
                    .insert(model.to_string(), uniform(&config, model, *s));
            }
            for (model, url, endpoint) in &self.endpoints {
                let live = state.models.entry(model.to_string()).or_default();
                live.endpoints.insert(url.to_string(), *endpoint);
            }
            let d = router.decide(&request, &state);
            let ctx = format!("case {:?}:\n{}", self.name, d.explain());
            assert_eq!(d.chain().collect::<Vec<_>>(), self.chain, "{ctx}");
            assert_eq!(d.chain_source, self.source, "{ctx}");
            assert!(d.why.contains(self.why), "want why {:?}; {ctx}", self.why);
            let dropped: Vec<&Verdict> = d.candidates.iter().filter(|v| !v.kept).collect();
            assert_eq!(dropped.len(), self.dropped.len(), "dropped count; {ctx}");
            for (v, (model, reason)) in dropped.iter().zip(&self.dropped) {
                assert_eq!(v.model, *model, "{ctx}");
                assert!(v.reason.contains(reason), "want {reason:?}; {ctx}");
                assert!(v.dropped_by.is_some(), "{ctx}");
            }
            for (model, reason) in &self.reasons {
                let v = d.candidates.iter().find(|v| v.model == *model);
                let v = v.unwrap_or_else(|| panic!("no verdict for {model}; {ctx}"));
                assert!(v.reason.contains(reason), "want {reason:?}; {ctx}");
            }
            for (model, urls) in &self.orders {
                let v = d
                    .candidates
                    .iter()
                    .find(|v| v.model == *model && !v.endpoints.is_empty());
                let v = v.unwrap_or_else(|| panic!("no endpoints for {model}; {ctx}"));
                let got: Vec<&str> = v.endpoints.iter().map(|e| e.url.as_str()).collect();
                assert_eq!(got, *urls, "{ctx}");
            }
            assert_eq!(d.budget_exhausted, self.budget_exhausted, "{ctx}");
            assert_eq!(d.unavailable().is_some(), self.chain.is_empty(), "{ctx}");
        }
    }

    /// A model whose every endpoint is in `state`, with no measurement.
    fn uniform(config: &Config, model: &str, state: ModelState) -> ModelLive {
        let urls = config
            .models
            .get(model)
            .map(|m| m.url.iter())
            .into_iter()
            .flatten();
        ModelLive {
            endpoints: urls
                .map(|url| {
                    (
                        url.to_string(),
                        EndpointLive {
                            state,
                            latency: None,
                            refused: None,
                        },
                    )
                })
                .collect(),
        }
    }

    const OLLAMA: &str = "http://127.0.0.1:11434";
    const GPU: &str = "http://gpu-box:8080";
    const LAPTOP: &str = "http://127.0.0.1:8080";

    /// A local model on two machines, and a rule sending refactors to it.
    const DUO: &str = r#"
[models.duo]
provider = "llamacpp"
url = ["http://gpu-box:8080", "http://127.0.0.1:8080"]
model = "qwen"
fim = "native"
local = true

[[rules]]
task = "refactor"
use = ["duo"]
"#;

    /// Completion on `mid`, then `fast`.
    const COMPLETE_MID_FAST: &str = "[[rules]]\ntask = \"complete\"\nuse = [\"mid\", \"fast\"]\n";

    const RUST_BIG_REFACTOR: &str = r#"
[[rules]]
task = "refactor"
when = { min_lines = 80, languages = ["rust", "cpp"] }
use = ["mid"]
"#;

    fn cases() -> Vec<Case> {
        use ModelState::*;
        use SensitiveKind::*;
        vec![
            // --- chain selection: defaults ---
            case("default route for explain")
                .expect(&["mid", "cloud"], "routes.explain", "default chain for explain"),
            case("default route for completion")
                .task("complete")
                .expect(&["fast"], "routes.complete", "no rule matched"),
            case("action without a route uses the explain chain")
                .rules("[actions.tests]\ntitle = \"Tests\"\nprompt = \"{code}\"\n")
                .task("tests")
                .expect(&["mid", "cloud"], "routes.explain", "action tests has no route"),
            case("action with its own route")
                .routes("tests = [\"cheap\"]")
                .rules("[actions.tests]\ntitle = \"Tests\"\nprompt = \"{code}\"\n")
                .task("tests")
                .expect(&["cheap"], "routes.tests", "default chain for tests"),
            case("unknown task falls back to explain")
                .task("frobnicate")
                .expect(&["mid", "cloud"], "routes.explain", "unknown task frobnicate"),
            // --- rule keys ---
            case("languages + min_lines match")
                .rules(RUST_BIG_REFACTOR)
                .task("refactor")
                .lines(120)
                .expect(&["mid"], "rules[0]", "task refactor, language rust, 120 lines ≥ 80"),
            case("languages: other language does not match")
                .rules(RUST_BIG_REFACTOR)
                .task("refactor")
                .lines(120)
                .lang(Language::Python)
                .expect(&["cloud", "mid"], "routes.refactor", "no rule matched"),
            case("languages: LSP id alias c++ matches cpp")
                .rules("[[rules]]\nwhen = { languages = [\"C++\"] }\nuse = [\"cheap\"]\n")
                .lang(Language::Cpp)
                .expect(&["cheap"], "rules[0]", "language cpp"),
            case("min_lines: below the bound does not match")
                .rules(RUST_BIG_REFACTOR)
                .task("refactor")
                .lines(79)
                .expect(&["cloud", "mid"], "routes.refactor", ""),
            case("min_lines: the bound itself matches")
                .rules(RUST_BIG_REFACTOR)
                .task("refactor")
                .lines(80)
                .expect(&["mid"], "rules[0]", "80 lines ≥ 80"),
            case("max_lines matches small targets")
                .rules("[[rules]]\nwhen = { max_lines = 10 }\nuse = [\"fast\"]\n")
                .lines(10)
                .expect(&["fast"], "rules[0]", "10 lines ≤ 10"),
            case("max_lines: larger target does not match")
                .rules("[[rules]]\nwhen = { max_lines = 10 }\nuse = [\"fast\"]\n")
                .lines(11)
                .expect(&["mid", "cloud"], "routes.explain", ""),
            case("min_tokens")
                .rules("[[rules]]\nwhen = { min_tokens = 1000 }\nuse = [\"cloud\"]\n")
                .tokens(1500)
                .expect(&["cloud"], "rules[0]", "1,500 tokens ≥ 1,000"),
            case("min_tokens: below does not match")
                .rules("[[rules]]\nwhen = { min_tokens = 1000 }\nuse = [\"cloud\"]\n")
                .tokens(999)
                .expect(&["mid", "cloud"], "routes.explain", ""),
            case("max_tokens")
                .rules("[[rules]]\nwhen = { max_tokens = 500 }\nuse = [\"mid\"]\n")
                .tokens(200)
                .expect(&["mid"], "rules[0]", "200 tokens ≤ 500"),
            case("max_tokens: above does not match")
                .rules("[[rules]]\nwhen = { max_tokens = 500 }\nuse = [\"mid\"]\n")
                .tokens(501)
                .expect(&["mid", "cloud"], "routes.explain", ""),
            case("min_complexity is branches + 1")
                .rules("[[rules]]\nwhen = { min_complexity = 10 }\nuse = [\"cloud\"]\n")
                .branches(9)
                .expect(&["cloud"], "rules[0]", "complexity 10 ≥ 10"),
            case("min_complexity: simpler code does not match")
                .rules("[[rules]]\nwhen = { min_complexity = 10 }\nuse = [\"cloud\"]\n")
                .branches(8)
                .expect(&["mid", "cloud"], "routes.explain", ""),
            case("sensitive = true matches code with sensitive calls")
                .rules("[[rules]]\ntask = \"review\"\nwhen = { sensitive = true }\nuse = [\"cloud\"]\n")
                .task("review")
                .calls(&[Sql, Exec, Sql])
                .expect(&["cloud"], "rules[0]", "sensitive calls: exec, sql"),
            case("sensitive = true: no sensitive calls, no match")
                .rules("[[rules]]\ntask = \"review\"\nwhen = { sensitive = true }\nuse = [\"cloud\"]\n")
                .task("review")
                .expect(&["cloud", "cheap", "mid"], "routes.review", ""),
            case("sensitive = false matches code without sensitive calls")
                .rules("[[rules]]\nwhen = { sensitive = false }\nuse = [\"fast\"]\n")
                .expect(&["fast"], "rules[0]", "no sensitive calls"),
            case("sensitive = false: code with sensitive calls does not match")
                .rules("[[rules]]\nwhen = { sensitive = false }\nuse = [\"fast\"]\n")
                .calls(&[Crypto])
                .expect(&["mid", "cloud"], "routes.explain", ""),
            case("paths: relative to the workspace root")
                .rules("[[rules]]\nwhen = { paths = [\"src/legacy/**\"] }\nuse = [\"cloud\"]\n")
                .path("/ws/src/legacy/old.rs", Some("/ws"))
                .expect(&["cloud"], "rules[0]", "path matches src/legacy/**"),
            case("paths: absolute glob, no root")
                .rules("[[rules]]\nwhen = { paths = [\"/ws/gen/**\"] }\nuse = [\"fast\"]\n")
                .path("/ws/gen/a/b.rs", None)
                .expect(&["fast"], "rules[0]", "path matches /ws/gen/**"),
            case("paths: a glob without / matches the file name anywhere")
                .rules("[[rules]]\nwhen = { paths = [\"*_test.go\"] }\nuse = [\"fast\"]\n")
                .path("/ws/pkg/a/b_test.go", Some("/ws"))
                .lang(Language::Go)
                .expect(&["fast"], "rules[0]", "path matches *_test.go"),
            case("paths: * does not cross directories")
                .rules("[[rules]]\nwhen = { paths = [\"src/*.rs\"] }\nuse = [\"fast\"]\n")
                .path("/ws/src/deep/x.rs", Some("/ws"))
                .expect(&["mid", "cloud"], "routes.explain", ""),
            case("all when keys must hold")
                .rules("[[rules]]\nwhen = { languages = [\"rust\"], min_lines = 50, sensitive = true }\nuse = [\"cloud\"]\n")
                .lines(60)
                .expect(&["mid", "cloud"], "routes.explain", ""),
            // --- rule order and task-less rules ---
            case("first matching rule wins")
                .rules("[[rules]]\nwhen = { min_lines = 500 }\nuse = [\"cheap\"]\n[[rules]]\nwhen = { min_lines = 100 }\nuse = [\"cloud\"]\n[[rules]]\nwhen = { min_lines = 10 }\nuse = [\"mid\"]\n")
                .lines(150)
                .expect(&["cloud"], "rules[1]", "150 lines ≥ 100"),
            case("a rule for another task is skipped")
                .rules("[[rules]]\ntask = \"review\"\nuse = [\"cheap\"]\n[[rules]]\nuse = [\"mid\"]\n")
                .expect(&["mid"], "rules[1]", "rule without conditions"),
            case("a task-less rule applies to completion too")
                .rules("[[rules]]\nwhen = { languages = [\"python\"] }\nuse = [\"mid\"]\n")
                .task("complete")
                .lang(Language::Python)
                .expect(&["mid"], "rules[0]", "language python"),
            // --- privacy ---
            case("privacy: local_only path keeps only local models")
                .task("review")
                .path("/ws/.env.production", Some("/ws"))
                .expect(&["mid"], "routes.review", "")
                .dropped("cloud", "cloud model skipped: path matches **/.env*")
                .dropped("cheap", "path matches **/.env*"),
            case("privacy: user glob with no / (file name)")
                .rules("[privacy]\nlocal_only = [\"*.key\", \"internal/**\"]\n")
                .path("/ws/src/internal/a.rs", Some("/ws/src"))
                .expect(&["mid"], "routes.explain", "")
                .dropped("cloud", "path matches internal/**"),
            case("privacy: secrets found")
                .task("refactor")
                .secrets(2)
                .expect(&["mid"], "routes.refactor", "")
                .dropped("cloud", "cloud model skipped: 2 secrets found in the code"),
            case("privacy: one secret, singular")
                .secrets(1)
                .expect(&["mid"], "routes.explain", "")
                .dropped("cloud", "1 secret found"),
            case("privacy: no cloud model in the chain, nothing dropped")
                .task("complete")
                .secrets(3)
                .path("/ws/secrets/x.rs", Some("/ws"))
                .expect(&["fast"], "routes.complete", ""),
            // --- health ---
            case("health: circuit open")
                .state("mid", CircuitOpen { for_ms: 11_200 })
                .expect(&["cloud"], "routes.explain", "")
                .dropped("mid", "circuit open for another 12 s"),
            case("health: cooling after 429")
                .task("refactor")
                .state("cloud", Cooling { for_ms: 30_000 })
                .expect(&["mid"], "routes.refactor", "")
                .dropped("cloud", "rate-limited, retry in 30 s"),
            case("health: cooling, sub-second and minutes")
                .task("review")
                .state("cloud", Cooling { for_ms: 400 })
                .state("cheap", CircuitOpen { for_ms: 300_000 })
                .expect(&["mid"], "routes.review", "")
                .dropped("cloud", "retry in 400 ms")
                .dropped("cheap", "for another 5 min"),
            case("health: probe failing")
                .task("complete")
                .state("fast", Down)
                .expect(&[], "routes.complete", "")
                .dropped("fast", "health probe failing"),
            case("health: explicit Healthy is kept")
                .state("mid", Healthy)
                .expect(&["mid", "cloud"], "routes.explain", ""),
            // --- context-window fit ---
            case("fit: prompt plus answer over the window")
                .prompt(39_000)
                .expect(&["cloud"], "routes.explain", "")
                .dropped("mid", "needs ~40,024 tokens, window is 32,768"),
            case("fit: exactly the window fits")
                .prompt(32_768 - 1_024)
                .expect(&["mid", "cloud"], "routes.explain", ""),
            case("fit: none holds it whole, the largest window serves it cut")
                .task("review")
                .prompt(300_000)
                .expect(&["cloud"], "routes.review", "")
                .reason("cloud", "window is 200,000: no model holds it whole, so the largest window serves")
                .dropped("cheap", "window is 128,000")
                .dropped("mid", "window is 32,768"),
            // mid's server refused 20,000 tokens it counted as 40,000, saying its context is
            // 8,192: (8,192 - 1,024) × ½ × 0.9 = 3,225 of the estimate's tokens, and the
            // answer's 1,024.
            case("fit: a server that refused a longer prompt takes what it said")
                .prompt(5_000)
                .refused("mid", "http://127.0.0.1:11434", 20_000, (8_192, 40_000))
                .expect(&["cloud"], "routes.explain", "")
                .dropped("mid", "needs ~6,024 tokens, window is 4,249 (what its server takes)"),
            case("fit: a prompt that fits what the server takes")
                .prompt(3_000)
                .refused("mid", "http://127.0.0.1:11434", 20_000, (8_192, 40_000))
                .expect(&["mid", "cloud"], "routes.explain", "")
                .reason("mid", "~4,024 of 4,249 tokens (what its server takes)"),
            case("fit: completion is not held to what an action's refusal said")
                .rules(COMPLETE_MID_FAST)
                .task("complete")
                .prompt(3_500)
                .refused("mid", OLLAMA, 20_000, (8_192, 40_000))
                .expect(&["mid", "fast"], "rules[0]", "")
                .reason("mid", "~4,524 of 32,768 tokens"),
            case("fit: none holds what the servers take, the largest of them serves")
                .task("review")
                .prompt(150_000)
                .refused("cloud", "https://api.anthropic.com", 160_000, (100_000, 160_000))
                .expect(&["cheap"], "routes.review", "")
                .reason("cheap", "window is 128,000: no model holds it whole")
                .dropped("cloud", "window is 90,409 (what its server takes)")
                .dropped("mid", "window is 32,768"),
            // --- budget ---
            case("budget reached: cloud skipped, local stays")
                .task("review")
                .rules("[budget]\ndaily_usd = 2.0\n")
                .spent(2.0)
                .expect(&["mid"], "routes.review", "")
                .dropped("cloud", "daily budget reached: $2.00 of $2.00 spent")
                .dropped("cheap", "daily budget reached")
                .budget_exhausted(),
            case("budget not reached")
                .task("review")
                .rules("[budget]\ndaily_usd = 2.0\n")
                .spent(1.99)
                .expect(&["cloud", "cheap", "mid"], "routes.review", ""),
            case("budget unset: any spend is fine")
                .task("review")
                .spent(1_000.0)
                .expect(&["cloud", "cheap", "mid"], "routes.review", ""),
            case("budget: privacy is the reason when both apply")
                .rules("[budget]\ndaily_usd = 1.0\n")
                .spent(5.0)
                .secrets(1)
                .expect(&["mid"], "routes.explain", "")
                .dropped("cloud", "secret found"),
            // --- duplicates ---
            case("duplicate keeps its first place")
                .rules("[[rules]]\nuse = [\"cloud\", \"mid\", \"cloud\", \"mid\"]\n")
                .expect(&["cloud", "mid"], "rules[0]", "")
                .dropped("cloud", "listed twice; kept at position 1")
                .dropped("mid", "kept at position 2"),
            case("a dropped first copy does not resurrect the duplicate")
                .rules("[[rules]]\nuse = [\"cloud\", \"mid\", \"cloud\"]\n")
                .state("cloud", Down)
                .expect(&["mid"], "rules[0]", "")
                .dropped("cloud", "health probe failing")
                .dropped("cloud", "listed twice"),
            // --- several endpoints for one model ---
            case("endpoints: a model is kept while one endpoint can take a call")
                .rules(DUO)
                .task("refactor")
                .endpoint("duo", GPU, CircuitOpen { for_ms: 8_000 }, Some(90))
                .expect(&["duo"], "rules[0]", "")
                .order("duo", &[LAPTOP, GPU]),
            case("endpoints: every endpoint out, the problem that ends soonest")
                .rules(DUO)
                .task("refactor")
                .endpoint("duo", GPU, Cooling { for_ms: 30_000 }, None)
                .endpoint("duo", LAPTOP, CircuitOpen { for_ms: 4_500 }, None)
                .expect(&[], "rules[0]", "")
                .dropped("duo", "circuit open for another 5 s")
                .order("duo", &[GPU, LAPTOP]),
            case("endpoints: a failing probe is the last reason")
                .rules(DUO)
                .task("refactor")
                .endpoint("duo", GPU, Down, None)
                .endpoint("duo", LAPTOP, Cooling { for_ms: 400 }, None)
                .expect(&[], "rules[0]", "")
                .dropped("duo", "retry in 400 ms"),
            case("endpoints: the faster on average first")
                .rules(DUO)
                .task("refactor")
                .endpoint("duo", GPU, Healthy, Some(400))
                .endpoint("duo", LAPTOP, Healthy, Some(90))
                .expect(&["duo"], "rules[0]", "")
                .order("duo", &[LAPTOP, GPU]),
            case("endpoints: one not measured yet is tried first, to measure it")
                .rules(DUO)
                .task("refactor")
                .endpoint("duo", GPU, Healthy, Some(90))
                .expect(&["duo"], "rules[0]", "")
                .order("duo", &[LAPTOP, GPU]),
            case("endpoints: none measured keeps the configured order")
                .rules(DUO)
                .task("refactor")
                .expect(&["duo"], "rules[0]", "")
                .order("duo", &[GPU, LAPTOP]),
            // --- completion prefers the models expected inside its budget (100 ms) ---
            case("budget: the first model's average is over the budget, the second is chosen")
                .rules(COMPLETE_MID_FAST)
                .task("complete")
                .endpoint("mid", OLLAMA, Healthy, Some(1_800))
                .endpoint("fast", OLLAMA, Healthy, Some(60))
                .expect(&["fast", "mid"], "rules[0]", "")
                .reason("mid", "expected 1.8 s > budget 100 ms"),
            case("budget: a model not measured yet may make it")
                .rules(COMPLETE_MID_FAST)
                .task("complete")
                .endpoint("mid", OLLAMA, Healthy, Some(250))
                .expect(&["fast", "mid"], "rules[0]", "")
                .reason("mid", "expected 250 ms > budget 100 ms"),
            case("budget: a stale slow average puts nothing last: the next call measures again")
                .rules(COMPLETE_MID_FAST)
                .task("complete")
                .endpoint("mid", OLLAMA, Healthy, Some(1_800))
                .stale("mid")
                .endpoint("fast", OLLAMA, Healthy, Some(60))
                .expect(&["mid", "fast"], "rules[0]", ""),
            case("endpoints: a stale average is measured again first")
                .rules(DUO)
                .task("refactor")
                .endpoint("duo", GPU, Healthy, Some(900))
                .stale("duo")
                .endpoint("duo", LAPTOP, Healthy, Some(300))
                .expect(&["duo"], "rules[0]", "")
                .order("duo", &[GPU, LAPTOP]),
            case("budget: no average yet keeps the configured order")
                .rules(COMPLETE_MID_FAST)
                .task("complete")
                .expect(&["mid", "fast"], "rules[0]", ""),
            case("budget: inside the budget keeps its place")
                .rules(COMPLETE_MID_FAST)
                .task("complete")
                .endpoint("mid", OLLAMA, Healthy, Some(80))
                .endpoint("fast", OLLAMA, Healthy, Some(20))
                .expect(&["mid", "fast"], "rules[0]", ""),
            case("budget: one model is used whatever its speed")
                .task("complete")
                .endpoint("fast", OLLAMA, Healthy, Some(1_800))
                .expect(&["fast"], "routes.complete", ""),
            case("budget: when none may make it, the configured order stands")
                .rules(COMPLETE_MID_FAST)
                .task("complete")
                .endpoint("mid", OLLAMA, Healthy, Some(1_800))
                .endpoint("fast", OLLAMA, Healthy, Some(300))
                .expect(&["mid", "fast"], "rules[0]", ""),
            case("budget: a model dropped for its health does not count as making it")
                .rules(COMPLETE_MID_FAST)
                .task("complete")
                .endpoint("mid", OLLAMA, Healthy, Some(1_800))
                .endpoint("fast", OLLAMA, CircuitOpen { for_ms: 5_000 }, Some(20))
                .expect(&["mid"], "rules[0]", "")
                .dropped("fast", "circuit open"),
            case("budget: only completion has one")
                .rules("[[rules]]\nuse = [\"mid\", \"fast\"]\n")
                .endpoint("mid", OLLAMA, Healthy, Some(1_800))
                .expect(&["mid", "fast"], "rules[0]", ""),
            // --- all dropped ---
            case("every candidate dropped, each for its own reason")
                .task("review")
                .rules("[budget]\ndaily_usd = 0.5\n")
                .spent(0.75)
                .state("mid", Down)
                .expect(&[], "routes.review", "")
                .dropped("cloud", "$0.75 of $0.50")
                .dropped("cheap", "daily budget reached")
                .dropped("mid", "health probe failing")
                .budget_exhausted(),
            case("private file, local model too small: it serves, the code cut to fit")
                .path("/ws/certs/server.pem", Some("/ws"))
                .prompt(40_000)
                .expect(&["mid"], "routes.explain", "")
                .reason("mid", "the largest window serves")
                .dropped("cloud", "path matches **/*.pem"),
        ]
    }

    #[test]
    fn router_table() {
        let cases = cases();
        assert!(cases.len() >= 30);
        for c in &cases {
            c.run();
        }
    }

    #[test]
    fn router_invalid_globs_and_languages_name_the_key() {
        let bad = [
            (
                "[privacy]\nlocal_only = [\"**/.env*\", \"a/[b\"]\n",
                "`privacy.local_only[1]`: invalid glob \"a/[b\"",
            ),
            (
                "[[rules]]\nwhen = { paths = [\"{a,b\"] }\nuse = [\"mid\"]\n",
                "`rules[0].when.paths[0]`: invalid glob",
            ),
            (
                "[[rules]]\nuse = [\"mid\"]\n[[rules]]\nwhen = { languages = [\"rust\", \"rsut\"] }\nuse = [\"mid\"]\n",
                "`rules[1].when.languages[1]`: unknown language \"rsut\"",
            ),
            (
                "[privacy]\nlocal_only = [\"\"]\n",
                "`privacy.local_only[0]`: empty glob",
            ),
        ];
        for (rest, want) in bad {
            // Compiling the session compiles the router, so the error names the file too.
            let text = format!("{MODELS}{ROUTES}\n{rest}");
            let loaded = LoadedConfig::from_toml_str(&text, Origin::File("p.toml".into()))
                .expect("the rest of the config is valid");
            let err = crate::session::Session::compile(loaded, None)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("p.toml: "), "{err}");
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }

    #[test]
    fn router_explain_and_json() {
        let c = config("", "[budget]\ndaily_usd = 1.0\n");
        let router = Router::new(&c).unwrap();
        let features = case("").features;
        let mut request = RouteRequest::new("review", &features, "/ws/src/lib.rs");
        request.prompt_tokens = 2_000;
        let mut state = RouteState {
            spent_today_usd: 0.25,
            ..RouteState::default()
        };
        state.models.insert(
            "cheap".into(),
            uniform(&c, "cheap", ModelState::Cooling { for_ms: 9_000 }),
        );
        let d = router.decide(&request, &state);
        let text = d.explain();
        assert!(
            text.starts_with("task review: chain from routes.review (default chain for review"),
            "{text}"
        );
        assert!(
            text.contains("1. cloud  kept     cloud, healthy, ~6,096 of 200,000 tokens"),
            "{text}"
        );
        assert!(
            text.contains("2. cheap  dropped  rate-limited, retry in 9 s"),
            "{text}"
        );
        assert!(text.contains("try: cloud → mid"), "{text}");

        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["chain"], serde_json::json!(["cloud", "mid"]));
        assert_eq!(json["chain_source"], "routes.review");
        assert_eq!(json["candidates"][1]["dropped_by"], "health");
        assert_eq!(json["candidates"][1]["kept"], false);
        assert!(json["candidates"][0].get("dropped_by").is_none());
        assert!(json.get("unavailable").is_none());

        state.spent_today_usd = 1.0;
        state
            .models
            .insert("mid".into(), uniform(&c, "mid", ModelState::Down));
        let d = router.decide(&request, &state);
        let line = d.unavailable().unwrap();
        assert_eq!(
            line,
            "no model for review: cloud: daily budget reached: $1.00 of $1.00 spent; \
             cheap: daily budget reached: $1.00 of $1.00 spent; mid: health probe failing"
        );
        assert!(d.explain().contains("the daily budget is spent"));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["budget_exhausted"], true);
        assert_eq!(json["unavailable"], line);
    }

    #[test]
    fn router_explains_endpoints_averages_and_the_budget_preference() {
        let c = config("", COMPLETE_MID_FAST);
        let router = Router::new(&c).unwrap();
        let features = case("").features;
        let request = RouteRequest::new("complete", &features, "/ws/src/lib.rs");
        let mut state = RouteState::default();
        let measured = |answer_ms, first_token_ms| EndpointLive {
            state: ModelState::Healthy,
            latency: Some(Latency {
                first_token_ms,
                answer_ms,
                calls: 1,
                stale: false,
            }),
            refused: None,
        };
        let live = |e: EndpointLive| ModelLive {
            endpoints: [(OLLAMA.to_string(), e)].into(),
        };
        state
            .models
            .insert("mid".into(), live(measured(1_800, 1_750)));
        state.models.insert("fast".into(), live(measured(60, 60)));
        let d = router.decide(&request, &state);
        let text = d.explain();
        assert!(
            text.contains("expected 1.8 s > budget 100 ms: tried after the models"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{OLLAMA}  healthy, ~1.8 s to the answer (first token ~1.8 s, 1 call)"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("{OLLAMA}  healthy, ~60 ms to the answer")),
            "{text}"
        );
        assert!(text.contains("try: fast → mid"), "{text}");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["chain"], serde_json::json!(["fast", "mid"]));
        assert_eq!(json["candidates"][0]["model"], "mid");
        assert_eq!(json["candidates"][0]["demoted"], true);
        assert_eq!(
            json["candidates"][0]["endpoints"][0]["latency"]["answer_ms"],
            1_800
        );
        assert!(json["candidates"][1].get("demoted").is_none());
    }

    #[test]
    fn endpoints_order_and_model_state() {
        use ModelState::*;
        let e = |state, answer_ms: Option<u64>| EndpointLive {
            state,
            latency: answer_ms.map(|answer_ms| Latency {
                first_token_ms: answer_ms,
                answer_ms,
                calls: 1,
                stale: false,
            }),
            refused: None,
        };
        let open = CircuitOpen { for_ms: 3_000 };
        // (endpoints in config order, order to try, the model's state)
        let table: Vec<(Vec<EndpointLive>, Vec<usize>, ModelState)> = vec![
            (vec![], vec![], Healthy),
            (vec![e(Healthy, None)], vec![0], Healthy),
            (
                vec![e(Healthy, Some(90)), e(Healthy, Some(30))],
                vec![1, 0],
                Healthy,
            ),
            (
                vec![e(Healthy, Some(30)), e(Healthy, None)],
                vec![1, 0],
                Healthy,
            ),
            (
                vec![e(Healthy, Some(30)), e(Healthy, Some(30))],
                vec![0, 1],
                Healthy,
            ),
            (
                vec![e(open, Some(5)), e(Healthy, Some(900))],
                vec![1, 0],
                Healthy,
            ),
            (vec![e(Down, None), e(open, None)], vec![0, 1], open),
            (
                vec![
                    e(Cooling { for_ms: 9_000 }, None),
                    e(open, None),
                    e(Down, None),
                ],
                vec![0, 1, 2],
                open,
            ),
            (vec![e(Down, None)], vec![0], Down),
        ];
        for (endpoints, order, state) in table {
            assert_eq!(endpoint_order(&endpoints), order, "{endpoints:?}");
            assert_eq!(model_state(&endpoints), state, "{endpoints:?}");
        }
    }

    #[test]
    fn router_empty_route_says_so() {
        let c = config(
            "tests = []",
            "[actions.tests]\ntitle = \"T\"\nprompt = \"{code}\"\n",
        );
        let features = case("").features;
        let d = Router::new(&c).unwrap().decide(
            &RouteRequest::new("tests", &features, "/a.rs"),
            &RouteState::default(),
        );
        assert!(d.candidates.is_empty());
        assert_eq!(
            d.unavailable().unwrap(),
            "no model for tests: routes.tests lists no models (default chain for tests; no rule matched)"
        );
    }

    #[test]
    fn router_number_and_duration_words() {
        assert_eq!(thousands(0u32), "0");
        assert_eq!(thousands(999u32), "999");
        assert_eq!(thousands(1_000u32), "1,000");
        assert_eq!(thousands(32_768u32), "32,768");
        assert_eq!(thousands(1_234_567u64), "1,234,567");
        assert_eq!(duration_words(0), "0 ms");
        assert_eq!(duration_words(1_000), "1 s");
        assert_eq!(duration_words(1_001), "2 s");
        assert_eq!(duration_words(119_000), "119 s");
        assert_eq!(duration_words(120_000), "2 min");
    }
}
