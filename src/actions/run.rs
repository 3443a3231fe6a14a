//! Running one code action end to end, for the LSP layer and `pilotfish action` alike, in
//! three steps split where the data changes shape:
//!
//! 1. **prepare** — the target at the spot → its [`RouteInput`] (features walk, secrets scan)
//!    → the routing decision → the messages, sized for the first candidate's window;
//! 2. **ask** — redaction for cloud models, then the fallback chain ([`run_chain`]) with the
//!    answer streamed; a chain whose servers refuse the prompt as longer than they take is
//!    asked once more with the messages built again for what the refusal said ([`refit`]);
//! 3. **read** — the answer as markdown, as a rewrite checked against the whole document
//!    (two parses) with its diff, or as strictly parsed findings; an answer the provider
//!    stopped at the token limit says so (the markdown ends with a note, or the reason it is
//!    unusable names the limit).
//!
//! Steps 1 and 3 grow with the document (a whole-file selection, a 20,000-line file), so
//! they run on the blocking pool: the runtime thread, which serves every keystroke, only
//! waits on the network.
//!
//! Knows no LSP types and does no I/O of its own: the network goes through [`Providers`], the
//! caller supplies the snapshot and the session and gets plain data back. Every outcome —
//! success or failure — names the model that answered (when one did), why the router chose
//! it, and every attempt made.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{ActionOutput, Config, ModelConfig};
use crate::documents::Snapshot;
use crate::providers::too_long::Sizes;
use crate::providers::{
    ChatCall, ChatMessage, Cut, ModelAnswer, ProviderError, Providers, Thinking, answer_limit,
};
use crate::reasoning::after_reasoning;
use crate::redact::redact;
use crate::resilience::{Attempt, ChainOutcome, Deadline, Health, Work, run_chain};
use crate::route_input::RouteInput;
use crate::router::{Decision, Window};
use crate::session::{Model, Session};
use crate::sync::{lock, off_runtime};
use crate::syntax::features::{Target, enclosing_target, selection_target};
use crate::telemetry::{
    Outcome as Logged, PendingCall, RouteFacts, RouteNote, Usage, UsageEvent, UsageLog,
};

use super::{
    ActionKind, ActionMessages, ActionRequest, Finding, ModelLimits, Refactored, build_messages,
    extract_code, parse_findings, refit, unified_diff, validate_refactor,
};

/// Where the action applies: a cursor (the enclosing function/class, or the small file) or
/// the user's selection. Byte offsets into the snapshot; clamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spot {
    Cursor(usize),
    Selection(Range<usize>),
}

impl Spot {
    /// A selection when the range is not empty, else a cursor at its start.
    pub fn from_range(range: Range<usize>) -> Spot {
        if range.start == range.end {
            Spot::Cursor(range.start)
        } else {
            Spot::Selection(range)
        }
    }

    /// The action's target in the snapshot.
    pub fn target(&self, snapshot: &Snapshot) -> Target {
        match self {
            Spot::Cursor(at) => enclosing_target(
                &snapshot.rope,
                snapshot.tree.as_ref(),
                snapshot.language,
                *at,
            ),
            Spot::Selection(range) => selection_target(&snapshot.rope, range.clone()),
        }
    }
}

/// One action to run: the document as it was asked about, where, and what.
#[derive(Clone)]
pub struct ActionInput {
    pub snapshot: Snapshot,
    pub spot: Spot,
    pub kind: ActionKind,
}

/// What the runner needs of the server (or the command line): the session the action runs
/// under, the models' health, the providers, and the usage log (which also keeps the day's spend).
#[derive(Clone)]
pub struct ActionEnv {
    pub session: Arc<Session>,
    pub health: Arc<Health>,
    pub providers: Providers,
    /// Each model call gets a line; the day's spend comes from here.
    pub usage: UsageLog,
}

/// Progress of a running action, for `$/progress` (or nothing, on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A model is being asked (the first, or the next after a failure).
    Asking { model: Arc<str> },
    /// Text arrived; `chars` is the total so far from this model.
    Streaming { model: Arc<str>, chars: usize },
}

/// What an action produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// Markdown to show (explain, `output = "document"`).
    Document { markdown: String },
    /// A checked rewrite of the target (refactor, `output = "edit"`) and its unified diff
    /// against the document (workspace-relative path in the headers).
    Edit { edit: Refactored, diff: String },
    /// Findings with their document lines (review, `output = "diagnostics"`).
    Diagnostics(Vec<DocumentFinding>),
}

/// A finding placed in the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentFinding {
    #[serde(flatten)]
    pub finding: Finding,
    /// Byte range in the snapshot: from the first non-blank character of its first line to
    /// the end of the text on its last line, clipped to the target.
    #[serde(skip)]
    pub range: Range<usize>,
}

/// Who answered, and why the router chose them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// The model that answered (`None` when none did).
    pub model: Option<String>,
    /// One line: why this model (the router's verdict and where the chain came from, and
    /// which models failed before it).
    pub reason: String,
    pub attempts: Vec<AttemptSummary>,
    /// The routing decision (boxed: it is large, and errors travel by value).
    #[serde(skip)]
    pub decision: Option<Box<Decision>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptSummary {
    pub model: String,
    /// The endpoint called (the model's URL, or one of its URLs).
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

impl Provenance {
    /// Who answered (`model`; None when no model did) and why: the router's reason for it,
    /// then each escalation on the way.
    fn of(
        decision: &Decision,
        model: Option<&str>,
        attempts: &[Attempt],
        escalations: &[String],
    ) -> Provenance {
        let mut reason = match model {
            Some(model) => reason_for(decision, model, attempts),
            None => decision.why.clone(),
        };
        for step in escalations {
            reason.push_str(&format!("; {step}"));
        }
        Provenance {
            model: model.map(str::to_string),
            reason,
            attempts: attempts.iter().map(AttemptSummary::from).collect(),
            decision: Some(Box::new(decision.clone())),
        }
    }
}

impl From<&Attempt> for AttemptSummary {
    fn from(a: &Attempt) -> AttemptSummary {
        AttemptSummary {
            model: a.model.to_string(),
            endpoint: a.endpoint.to_string(),
            error: a.error.clone(),
            ms: a.ms,
        }
    }
}

/// A successful action.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    pub kind: ActionKind,
    pub target: Target,
    /// 0-based document line of the target's first line.
    pub first_line: u32,
    /// 0-based document line of the target's last line.
    pub last_line: u32,
    pub result: ActionResult,
    /// What the user should know besides the result (trimmed prompt, unchanged code…).
    pub notes: Vec<String>,
    pub provenance: Provenance,
}

/// A failed action: one clear line for the user, and who (if anyone) answered.
#[derive(Debug, Clone)]
pub struct ActionError {
    pub message: String,
    pub provenance: Provenance,
}

impl ActionError {
    /// A failure before any model was asked.
    fn before_asking(message: String, decision: Option<Decision>) -> ActionError {
        ActionError {
            message,
            provenance: Provenance {
                model: None,
                reason: String::new(),
                attempts: Vec::new(),
                decision: decision.map(Box::new),
            },
        }
    }
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The output kind of `kind` under `config`.
pub fn output_of(kind: &ActionKind, config: &Config) -> ActionOutput {
    kind.output(config_action(kind, config))
}

fn config_action<'a>(
    kind: &ActionKind,
    config: &'a Config,
) -> Option<&'a crate::config::ActionConfig> {
    match kind {
        ActionKind::Custom(name) => config.actions.get(name),
        _ => None,
    }
}

/// Runs one action. `on_progress` is called as models are asked and text streams in.
pub async fn run_action(
    input: ActionInput,
    env: ActionEnv,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<ActionOutcome, ActionError> {
    let prepared = {
        let (input, env) = (input.clone(), env.clone());
        off_runtime(move || prepare(&input, &env)).await?
    };
    let Prepared {
        target,
        route_input,
        decision,
        chain,
        request,
        messages,
        display_path,
        first_line,
        mut notes,
    } = prepared;
    let times = deadlines(&chain, &env.health, messages.estimated_tokens);
    let mut asking = Asking {
        input: &input,
        env: &env,
        messages,
        output: output_of(&input.kind, env.session.config()),
        times,
        on_progress,
        id: env.usage.next_id(),
        facts: RouteFacts::of(&route_input.request(&env.session)),
        decision: &decision,
        target: &target,
        display_path: &display_path,
        first_line,
    };
    // Ask the chain; an answer that fails its strict check escalates to the models after the
    // one that gave it, within the deadline and the budget.
    let mut remaining = chain;
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut escalations: Vec<String> = Vec::new();
    let mut refitted = false;
    let (model, (result, note)) = loop {
        let (model, read) = match asking
            .round(&remaining, escalations.last(), &mut attempts)
            .await
        {
            Round::NoAnswer {
                too_long: Some((model, sizes)),
                ..
            } if !refitted && Instant::now() < asking.times.1.get() => {
                // The chain's servers took no prompt this long: once more, cut to what the
                // first to say so takes.
                refitted = true;
                let estimated = asking.messages.estimated_tokens;
                let (messages, refit_notes) = refit_messages(
                    &request,
                    (&input.kind, &env.session),
                    estimated,
                    (&model, sizes),
                )
                .await
                .map_err(|message| ActionError {
                    message,
                    provenance: Provenance::of(&decision, None, &attempts, &escalations),
                })?;
                notes = refit_notes;
                asking.messages = messages;
                continue;
            }
            Round::NoAnswer { why, .. } => {
                let hint = timeout_hint(&attempts).unwrap_or_default();
                return Err(ActionError {
                    message: format!("no model answered: {why}{hint}"),
                    provenance: Provenance::of(&decision, None, &attempts, &escalations),
                });
            }
            Round::Answered(model, read) => (model, read),
        };
        let why = match read {
            Ok(read) => break (model, read),
            Err(why) => why,
        };
        let next = escalation_chain(&remaining, &model, &route_input, &env);
        if next.is_empty() || Instant::now() >= asking.times.1.get() {
            return Err(ActionError {
                message: format!("{why} (answer from {model})"),
                provenance: Provenance::of(&decision, Some(&model), &attempts, &escalations),
            });
        }
        tracing::info!(task = input.kind.name(), model = %model, "escalating: {why}");
        escalations.push(format!("escalated from {model}: {why}"));
        remaining = next;
    };
    let provenance = Provenance::of(&decision, Some(&model), &attempts, &escalations);
    notes.extend(note);
    notes.extend(escalations);
    let (_, last_line) = target.line_span(&input.snapshot.rope);
    Ok(ActionOutcome {
        kind: input.kind,
        first_line,
        last_line: last_line as u32,
        target,
        result,
        notes,
        provenance,
    })
}

/// The messages built again for `model`'s server, which refused a prompt estimated at
/// `estimated` tokens saying `sizes` ([`refit`]; on the blocking pool, as in step 1), and
/// the notes that replace step 1's; or why even the smallest prompt does not fit.
async fn refit_messages(
    request: &ActionRequest,
    (kind, session): (&ActionKind, &Arc<Session>),
    estimated: u32,
    (model, sizes): (&str, Sizes),
) -> Result<(ActionMessages, Vec<String>), String> {
    let smaller = ActionRequest {
        limits: refit::limits_after(request.limits, estimated, sizes),
        ..request.clone()
    };
    let (owned_kind, session) = (kind.clone(), session.clone());
    let messages = off_runtime(move || {
        build_messages(
            &smaller,
            &owned_kind,
            config_action(&owned_kind, session.config()),
        )
    })
    .await
    .map_err(|e| format!("{e} ({})", refit::server_context(model, sizes)))?;
    tracing::info!(
        task = kind.name(),
        model,
        ?sizes,
        tokens = messages.estimated_tokens,
        "the prompt was too long for the server: asking again, cut to fit"
    );
    let mut notes: Vec<String> = messages.trim_note().into_iter().collect();
    notes.push(refit::note(model, request.limits.context_window, sizes));
    Ok((messages, notes))
}

/// One deadline for the whole action, escalations included: each endpoint of each model of
/// the chain may take its [`answer_limit`] for a prompt of `tokens`; retries only within the
/// slowest model's timeout (a retry follows a failure, which comes before any text).
/// (Retry-until, deadline: moved later by a call given longer than planned, [`ask`].)
fn deadlines(chain: &[Model], health: &Health, tokens: u32) -> (Instant, Deadline) {
    let started = Instant::now();
    let longest = chain
        .iter()
        .map(|m| Duration::from_millis(m.config.timeout_ms))
        .max()
        .unwrap_or(Duration::from_secs(30));
    let total: Duration = chain
        .iter()
        .flat_map(|m| {
            m.config.url.iter().map(|url| {
                let begin = begin_within(health, (&m.name, url), &m.config, tokens);
                answer_limit(begin, m.config.max_output_tokens)
            })
        })
        .sum();
    (
        started + longest,
        Deadline::at(started + total + Duration::from_secs(1)),
    )
}

/// The time `model` at `url` has to send the first word of an answer to a prompt of
/// `tokens`: its `timeout_ms`, or, for a server that said how fast it reads prompts
/// (llama-server, Ollama), twice the time it is expected to take to read this one where
/// that is longer — on a CPU a long prompt takes more than 30 s to read, and the estimate
/// may count half the server's tokens (Qwen reads each digit as one).
fn begin_within(
    health: &Health,
    (name, url): (&str, &str),
    model: &ModelConfig,
    tokens: u32,
) -> Duration {
    let timeout = Duration::from_millis(model.timeout_ms);
    health
        .reading_time(name, url, u64::from(tokens))
        .map_or(timeout, |reading| timeout.max(reading * 2))
}

/// What every round of asking shares: the first round asks the routed chain, each
/// escalation the models after one whose answer failed its check.
struct Asking<'a> {
    input: &'a ActionInput,
    env: &'a ActionEnv,
    messages: ActionMessages,
    output: ActionOutput,
    /// Retries until the first, nothing after the second ([`deadlines`]).
    times: (Instant, Deadline),
    on_progress: &'a (dyn Fn(Progress) + Send + Sync),
    /// The action's id in the usage log.
    id: String,
    facts: RouteFacts,
    decision: &'a Decision,
    target: &'a Target,
    display_path: &'a str,
    first_line: u32,
}

/// The first model of a round whose server took no prompt this long, and what it said of
/// the sizes.
type TooLongSeen = std::sync::Mutex<Option<(Arc<str>, Sizes)>>;

/// How a round ended: no model answered (why; and the first model whose server took no
/// prompt this long, with what it said of the sizes), or one did and its answer was read (or
/// failed its check: why).
enum Round {
    NoAnswer {
        why: String,
        too_long: Option<(Arc<str>, Sizes)>,
    },
    Answered(Arc<str>, Result<(ActionResult, Vec<String>), String>),
}

impl Asking<'_> {
    /// Asks `chain` (step 2) and reads the answer (step 3); the round's attempts go to
    /// `attempts`, its line to the usage log (`escalated`: the last escalation, its note).
    async fn round(
        &self,
        chain: &[Model],
        escalated: Option<&String>,
        attempts: &mut Vec<Attempt>,
    ) -> Round {
        let (env, kind) = (self.env, &self.input.kind);
        let mut log = PendingCall::start(
            &env.usage,
            UsageEvent {
                facts: Some(self.facts.clone()),
                prompt: env.usage.log_prompts().then(|| self.messages.user.clone()),
                ..UsageEvent::call(&self.id, kind.name(), self.input.snapshot.language)
                    .by(chain.first().map(|m| &*m.name), None)
            },
            || Logged::Cancelled,
        );
        let too_long = TooLongSeen::default();
        let run = ask(
            chain,
            &self.messages,
            self.output,
            env,
            (self.times.0, &self.times.1),
            (self.on_progress, &too_long),
        )
        .await;
        attempts.extend(run.attempts.iter().cloned());
        let note = RouteNote::of(self.decision, &run.attempts);
        let endpoint = run.endpoint().unwrap_or_default().to_string();
        let (model, answer) = match run.answer {
            Ok(found) => found,
            Err(why) => {
                log.finish(|mut e| {
                    e.outcome = Some(Logged::of_failed_chain(&run.attempts));
                    e.note = Some(why.clone());
                    e.route = Some(note);
                    e
                });
                return Round::NoAnswer {
                    why,
                    too_long: too_long.into_inner().unwrap_or_else(|p| p.into_inner()),
                };
            }
        };
        tracing::info!(task = kind.name(), model = %model, endpoint, chars = answer.text.len(), "action answered");
        let sent_bytes = self.messages.system.len() + self.messages.user.len();
        let usage = chain
            .iter()
            .find(|m| m.name == model)
            .map(|m| {
                Usage::of(
                    &m.config,
                    (answer.tokens_in, answer.tokens_out),
                    sent_bytes,
                    answer.text.len(),
                )
            })
            .unwrap_or_default();
        let answered_ms = run.attempts.last().map_or(0, |a| a.ms);
        let first_token = answer.first_token;
        let cut = answer.cut;
        let cut_note = cut.and_then(|cut| cut_note(cut, chain, &model));
        let read = {
            let (snapshot, target) = (self.input.snapshot.clone(), self.target.clone());
            let (output, display_path) = (self.output, self.display_path.to_string());
            let (shown_lines, first_line) = (self.messages.shown_lines, self.first_line);
            move || {
                let answer = Answer {
                    text: &answer.text,
                    shown_lines,
                    first_line,
                    cut,
                    cut_note,
                };
                read_answer(output, &snapshot, &target, &display_path, answer)
            }
        };
        let read = off_runtime(read).await;
        let failure = read.as_ref().err().cloned();
        log.finish(|e| {
            let mut e = e.by(Some(&model), Some(&endpoint)).usage(usage);
            e.route = Some(note);
            e.ttft_ms = Some(first_token.map_or(answered_ms, |t| t.as_millis() as u64));
            e.outcome = Some(if failure.is_some() {
                Logged::CheckFailed
            } else {
                Logged::Ok
            });
            e.note = failure.or_else(|| escalated.cloned());
            e
        });
        Round::Answered(model, read)
    }
}

/// The models to ask after `failed` gave an answer that failed its check: those after it in
/// `chain` that a decision made now still keeps (the first answer may have spent the budget).
fn escalation_chain(
    chain: &[Model],
    failed: &str,
    route_input: &RouteInput,
    env: &ActionEnv,
) -> Vec<Model> {
    let now = route_input.decide(&env.session, &env.health, &env.usage);
    let kept: Vec<&str> = now.chain().collect();
    chain
        .iter()
        .skip_while(|m| &*m.name != failed)
        .skip(1)
        .filter(|m| kept.contains(&&*m.name))
        .cloned()
        .collect()
}

/// What step 1 hands on: the routed chain and the messages for it.
struct Prepared {
    target: Target,
    /// What the decision was made from (escalation decides again from it).
    route_input: RouteInput,
    decision: Decision,
    chain: Vec<Model>,
    /// What the messages were built from (built again, smaller, for a server that refuses
    /// them as too long).
    request: ActionRequest,
    messages: ActionMessages,
    /// The document's path as the model and the diff headers show it.
    display_path: String,
    /// 0-based document line of the code's first line.
    first_line: u32,
    notes: Vec<String>,
}

/// Step 1 (blocking pool): target → routing input → decision → messages.
fn prepare(input: &ActionInput, env: &ActionEnv) -> Result<Prepared, ActionError> {
    let ActionInput {
        snapshot,
        spot,
        kind,
    } = input;
    let session = &env.session;
    let config_action = config_action(kind, session.config());
    if let ActionKind::Custom(name) = kind {
        if config_action.is_none() {
            return Err(ActionError::before_asking(
                format!("no action named {name:?}: define [actions.{name}] in the configuration"),
                None,
            ));
        }
    }
    let rope = &snapshot.rope;
    let target = spot.target(snapshot);
    if rope
        .byte_slice(target.range.clone())
        .chars()
        .all(char::is_whitespace)
    {
        return Err(ActionError::before_asking(
            "nothing to work on here: the target is empty".into(),
            None,
        ));
    }
    let route_input = RouteInput::for_target(kind.name(), snapshot, &target);
    let decision = route_input.decide(session, &env.health, &env.usage);
    tracing::info!(
        task = kind.name(),
        path = route_input.path,
        source = %decision.chain_source,
        chain = %decision.chain().collect::<Vec<_>>().join(" → "),
        "action routed"
    );
    tracing::debug!("{}", decision.explain().trim_end());
    if let Some(line) = decision.unavailable() {
        return Err(ActionError::before_asking(line, Some(decision)));
    }
    let chain = session.chain(&decision);
    let Some(first) = chain.first() else {
        return Err(ActionError::before_asking(
            format!(
                "no model for {}: the chain names no defined model",
                kind.name()
            ),
            Some(decision),
        ));
    };
    let selection = match spot {
        Spot::Selection(_) => Some(rope.byte_slice(target.range.clone()).to_string()),
        Spot::Cursor(_) => None,
    };
    let display_path = session.display_path(&route_input.path);
    // The prompt is built for the window routing judged the model by: a server that
    // refused a longer prompt is not sent one again.
    let window = decision.window_of(&first.name).unwrap_or(Window {
        tokens: first.config.context_window,
        refused: None,
    });
    let limits = ModelLimits {
        context_window: window.tokens,
        max_output_tokens: first.config.max_output_tokens,
    };
    let request = ActionRequest::from_document(
        rope,
        snapshot.tree.as_ref(),
        snapshot.language,
        &display_path,
        &target,
        selection.as_deref(),
        limits,
    );
    let messages = match build_messages(&request, kind, config_action) {
        Ok(m) => m,
        Err(e) => {
            let why = match window.refused {
                Some(sizes) => format!("{e} ({})", refit::server_context(&first.name, sizes)),
                None => e.to_string(),
            };
            return Err(ActionError::before_asking(why, Some(decision)));
        }
    };
    let mut notes: Vec<String> = messages.trim_note().into_iter().collect();
    if let Some(sizes) = window.refused.filter(|_| !notes.is_empty()) {
        notes.push(refit::note(&first.name, first.config.context_window, sizes));
    }
    Ok(Prepared {
        target,
        route_input,
        decision,
        chain,
        first_line: request.first_line,
        request,
        messages,
        display_path,
        notes,
    })
}

/// The most of the user message a measuring read sends (with the system prompt ~450 tokens:
/// enough to tell the server's speed; 12.6 s on two CPU cores with the 1.5B).
const MEASURING_READ_CHARS: usize = 1_200;

/// Before a local server that has not said how fast it reads prompts is asked a long one:
/// it is asked to read the start of it (the system prompt and the user message's first
/// [`MEASURING_READ_CHARS`]), answering one token. It keeps what it read in its prompt
/// cache for the call that follows, which reads only the rest; what it says of that read
/// (llama-server's `timings`, Ollama's `prompt_eval_duration`) gives the call the time the
/// rest will take ([`begin_within`]). A server that says nothing of it is not asked again.
/// One that cannot be reached or sends nothing within its timeout fails the attempt (the
/// call would only wait as long again); other failures are left to the call itself to meet.
/// Never for a cloud model (it would be a paid request nobody asked for).
async fn measure_reading(
    env: &ActionEnv,
    (name, model): (&str, &ModelConfig),
    system: &str,
    user: &str,
) -> Result<(), ProviderError> {
    let url = &*model.url;
    if !env.health.says_how_it_reads(name, url)
        || env.health.reading_time(name, url, 1).is_some()
        || user.len() <= MEASURING_READ_CHARS
    {
        return Ok(());
    }
    let mut end = MEASURING_READ_CHARS;
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    let turns = [ChatMessage::user(&user[..end])];
    let call = ChatCall {
        system,
        messages: &turns,
        max_tokens: 1,
        temperature: 0.0,
        thinking: Thinking::ModelDefault,
        begin_within: None,
    };
    let started = Instant::now();
    let answer = env.providers.chat(model, call, &mut |_| {}).await;
    match answer.map(|a| a.prompt_read) {
        Ok(Some(read)) => {
            tracing::info!(
                model = name,
                endpoint = url,
                tokens = read.tokens,
                ms = read.took.as_millis() as u64,
                "measured how fast the server reads a prompt"
            );
            env.health.record_reading((name, url), read);
        }
        Ok(None) => env.health.record_no_reading((name, url)),
        Err(e @ (ProviderError::Timeout { .. } | ProviderError::Unreachable { .. })) => {
            return Err(e);
        }
        Err(e) => {
            tracing::debug!(
                model = name,
                endpoint = url,
                ms = started.elapsed().as_millis() as u64,
                "the measuring read failed: {e}"
            );
        }
    }
    Ok(())
}

/// Step 2 (runtime thread): the chain asked in turn, each cloud model's messages redacted
/// first, the answer streamed through `on_progress`; retries only until `retry_until`,
/// nothing after `deadline`, which a call moves by what it was given beyond the plan: the
/// time its measuring read took, and the longer time to begin that read showed it needs.
async fn ask(
    chain: &[Model],
    messages: &ActionMessages,
    output: ActionOutput,
    env: &ActionEnv,
    (retry_until, deadline): (Instant, &Deadline),
    (on_progress, too_long): (&(dyn Fn(Progress) + Send + Sync), &TooLongSeen),
) -> ChainOutcome<ModelAnswer> {
    let redact_before_cloud = env.session.config().privacy.redact_secrets;
    let temperature = match output {
        ActionOutput::Document => 0.2,
        ActionOutput::Edit | ActionOutput::Diagnostics => 0.0,
    };
    let chain: Vec<_> = chain
        .iter()
        .map(|m| (m.name.clone(), m.config.clone()))
        .collect();
    run_chain(
        &env.health,
        &chain,
        Work::Action,
        Some(retry_until),
        deadline,
        |name, model| async move {
            on_progress(Progress::Asking {
                model: name.clone(),
            });
            let cloud = !model.is_local();
            let (system, user) = if cloud && redact_before_cloud {
                let (system, masked_system) = redact(&messages.system);
                let (user, masked_user) = redact(&messages.user);
                if masked_system + masked_user > 0 {
                    tracing::info!(model = %name, masked = masked_system + masked_user, "secrets masked before a cloud call");
                }
                (system, user)
            } else {
                (messages.system.clone(), messages.user.clone())
            };
            let begin_here =
                || begin_within(&env.health, (&name, &model.url), &model, messages.estimated_tokens);
            let planned = begin_here();
            let measuring = Instant::now();
            if model.is_local() {
                measure_reading(env, (&name, &model), &system, &user).await?;
            }
            let begin = begin_here();
            deadline.extend(measuring.elapsed() + begin.saturating_sub(planned));
            let turns = [ChatMessage::user(user)];
            if begin > Duration::from_millis(model.timeout_ms) {
                tracing::info!(
                    model = %name,
                    endpoint = &*model.url,
                    tokens = messages.estimated_tokens,
                    begin_ms = begin.as_millis() as u64,
                    "the server reads prompts slowly: given longer than timeout_ms to read this one"
                );
            }
            let call = ChatCall {
                system: &system,
                messages: &turns,
                max_tokens: model.max_output_tokens,
                temperature,
                thinking: Thinking::ModelDefault,
                begin_within: Some(begin),
            };
            let mut chars = 0usize;
            let mut forward = |piece: &str| {
                chars += piece.chars().count();
                on_progress(Progress::Streaming {
                    model: name.clone(),
                    chars,
                });
            };
            let answer = env.providers.chat(&model, call, &mut forward).await;
            if let Err(ProviderError::TooLong { sizes, .. }) = &answer {
                let refused = (messages.estimated_tokens, *sizes);
                (env.health).record_too_long((&name, &model.url), refused, Instant::now());
                lock(too_long).get_or_insert((name, *sizes));
            }
            answer
        },
    )
    .await
}

/// A model's answer and how the code it was about was numbered.
struct Answer<'a> {
    text: &'a str,
    /// Lines of the code shown to the model (findings must lie within them).
    shown_lines: u32,
    /// 0-based document line of the code's line 1.
    first_line: u32,
    /// Why the answer was cut before the model finished it, if it was.
    cut: Option<Cut>,
    /// What the user is told of the cut ([`cut_note`]).
    cut_note: Option<String>,
}

/// What the user is told when `model`'s answer was cut (at its `max_output_tokens`, at the
/// time it had to write it, or by a stream that went quiet): the text may end mid-sentence,
/// and what to do about it. None for a model not in `chain`.
fn cut_note(cut: Cut, chain: &[Model], model: &str) -> Option<String> {
    let config = &chain.iter().find(|m| &*m.name == model)?.config;
    let why = match cut {
        Cut::TokenLimit => format!(
            "at the {}-token limit; raise max_output_tokens in [models.{model}] for longer \
             answers",
            config.max_output_tokens
        ),
        Cut::Timeout { ms } => format!(
            "at the {} time limit, still being written (its time to begin, then a quarter \
             second a token of its {}); raise timeout_ms in [models.{model}] for a model this \
             slow",
            seconds(ms),
            config.max_output_tokens
        ),
        Cut::Stalled { ms } => format!(
            "where the model server went quiet: nothing came for {}",
            seconds(ms)
        ),
    };
    Some(format!("… answer cut {why}"))
}

/// What to do when the last model asked sent nothing before its `timeout_ms`: on a CPU a
/// local model reads a long prompt at some 50 tokens a second, and may not have begun its
/// answer. None when the last attempt failed otherwise.
fn timeout_hint(attempts: &[Attempt]) -> Option<String> {
    let last = attempts.last().filter(|a| a.timed_out)?;
    Some(format!(
        " (a model still reading a long prompt, as one on a CPU may be, needs more time: raise \
         timeout_ms in [models.{}])",
        last.model
    ))
}

/// `30 s`, `2.5 s`.
fn seconds(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// Step 3 (blocking pool): the answer read for `output`; an edit is checked against the
/// whole document and diffed. Returns the result and notes for the user, or one line
/// saying why the answer is unusable. An answer cut at the token limit says so: at the end
/// of the markdown, in the notes, or in the reason it is unusable. A thinking model's
/// reasoning is not read ([`after_reasoning`]).
fn read_answer(
    output: ActionOutput,
    snapshot: &Snapshot,
    target: &Target,
    display_path: &str,
    answer: Answer<'_>,
) -> Result<(ActionResult, Vec<String>), String> {
    let cut = answer.cut_note;
    let unusable = |why: String| match &cut {
        Some(note) => format!("{why} ({})", note.trim_start_matches("… ")),
        None => why,
    };
    let Some(text) = after_reasoning(answer.text) else {
        return Err(unusable(
            "the model's answer ended while it was still reasoning (no `</think>`)".into(),
        ));
    };
    if text.trim().is_empty() && answer.cut == Some(Cut::TokenLimit) {
        // A reasoning model's unseen thinking counts towards its output limit (OpenAI's
        // o-series, GPT-5): it can spend the whole limit before the first word.
        return Err(unusable(
            "no answer: the model spent its whole output limit before writing one (a reasoning model's thinking counts towards it)".into(),
        ));
    }
    match output {
        ActionOutput::Document => {
            let mut markdown = text.trim().to_string();
            if markdown.is_empty() {
                return Err(unusable("empty explanation".into()));
            }
            if let Some(note) = &cut {
                markdown.push_str(&format!("\n\n_{note}._"));
            }
            Ok((ActionResult::Document { markdown }, Vec::new()))
        }
        ActionOutput::Edit => {
            let code = extract_code(text, snapshot.language)
                .map_err(|e| unusable(format!("no edit: {e}")))?;
            let document = snapshot.rope.to_string();
            crate::test_hooks::hold("refactor check");
            let edit = validate_refactor(snapshot.language, &document, target.range.clone(), &code)
                .map_err(|e| unusable(format!("no edit: {e}")))?;
            let diff = unified_diff(display_path, &document, &edit.document);
            let notes = edit.note.iter().cloned().chain(cut).collect();
            Ok((ActionResult::Edit { edit, diff }, notes))
        }
        ActionOutput::Diagnostics => {
            let findings = parse_findings(text, answer.shown_lines)
                .map_err(|e| unusable(format!("no findings: {e}")))?;
            let placed = findings
                .into_iter()
                .map(|f| place(snapshot, target, answer.first_line, f))
                .collect();
            Ok((ActionResult::Diagnostics(placed), cut.into_iter().collect()))
        }
    }
}

/// Why `model` answered: the router's verdict for it, where the chain came from, and the
/// models that failed before it.
fn reason_for(decision: &Decision, model: &str, attempts: &[Attempt]) -> String {
    let verdict = decision
        .candidates
        .iter()
        .find(|v| v.model == model)
        .map(|v| v.reason.as_str())
        .unwrap_or("in the chain");
    let mut reason = format!(
        "{verdict}; chain from {} ({})",
        decision.chain_source, decision.why
    );
    let mut failed: Vec<&str> = attempts
        .iter()
        .filter(|a| a.error.is_some() && &*a.model != model)
        .map(|a| &*a.model)
        .collect();
    failed.dedup();
    if !failed.is_empty() {
        reason.push_str(&format!("; after {} failed", failed.join(", ")));
    }
    reason
}

/// Places a finding in the document: its lines, clipped to the target, from the first
/// non-blank character of the first line to the end of the text on the last.
fn place(
    snapshot: &Snapshot,
    target: &Target,
    first_line: u32,
    finding: Finding,
) -> DocumentFinding {
    let rope = &snapshot.rope;
    let range = crate::position::clamp_range(rope, target.range.clone());
    let last_doc_line = rope.len_lines().saturating_sub(1);
    let lines = finding.document_lines(first_line);
    let (a, b) = (
        (*lines.start() as usize).min(last_doc_line),
        (*lines.end() as usize).min(last_doc_line),
    );
    let (a, b) = (a.min(b), a.max(b));
    let line_text = |l: usize| rope.line(l).to_string();
    let start_line = rope.line_to_byte(a);
    let first_text = line_text(a);
    let start = start_line + (first_text.len() - first_text.trim_start().len());
    let end_text = line_text(b);
    let end = rope.line_to_byte(b) + end_text.trim_end().len();
    let start = start.clamp(range.start, range.end);
    let end = end.clamp(start, range.end.max(start));
    DocumentFinding {
        finding,
        range: start..end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Severity;
    use crate::documents::Documents;
    use crate::syntax::Language;

    fn snapshot(text: &str) -> Snapshot {
        let mut docs = Documents::default();
        docs.open_parsed("file:///a.py", Language::Python, 1, text);
        docs.snapshot("file:///a.py").unwrap()
    }

    #[test]
    fn findings_are_placed_on_their_lines_within_the_target() {
        let text = "import os\n\ndef run(cmd):\n    x = 1\n    os.system(cmd)   \n";
        let snap = snapshot(text);
        let target = Spot::Cursor(text.find("x = 1").unwrap()).target(&snap);
        assert_eq!(target.kind, "function_definition");
        let finding = |start, end| Finding {
            severity: Severity::Error,
            cwe: Some("CWE-78".into()),
            line_start: start,
            line_end: end,
            message: "m".into(),
        };
        let placed = place(&snap, &target, 2, finding(3, 3));
        assert_eq!(&text[placed.range.clone()], "os.system(cmd)");
        let placed = place(&snap, &target, 2, finding(1, 2));
        assert_eq!(&text[placed.range.clone()], "def run(cmd):\n    x = 1");
        // Past the end of the document: clipped, never a panic.
        let placed = place(&snap, &target, 2, finding(40, 90));
        assert!(placed.range.end <= target.range.end);
    }

    #[test]
    fn spot_from_range() {
        assert_eq!(Spot::from_range(3..3), Spot::Cursor(3));
        assert_eq!(Spot::from_range(3..5), Spot::Selection(3..5));
    }
}
