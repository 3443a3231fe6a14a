//! Code actions over LSP: `textDocument/codeAction` offers them (instantly — offering never
//! calls a model), `workspace/executeCommand` runs them through [`crate::actions::run`] and
//! delivers the result where the editor shows it:
//!
//! - explain (and `output = "document"`): the markdown is the command's result (field
//!   `markdown`), is written to `$TMPDIR/pilotfish/explain/…md` — the OS temp dir, so that
//!   nothing lands in the user's repository — and opened with `window/showDocument` when the
//!   client supports it, else sent as `window/showMessage`.
//! - refactor (and `output = "edit"`): one `workspace/applyEdit` replacing the target, sent
//!   only when the rewrite passed the syntax checks and the document did not change
//!   meanwhile; otherwise a `window/showMessage` error and no edit. The edit names the
//!   document version it was made for (`documentChanges`), so the editor refuses it if the
//!   document moved on; only a client without `documentChanges` support gets plain `changes`.
//! - review (and `output = "diagnostics"`): `textDocument/publishDiagnostics` (source
//!   `pilotfish`, code = CWE id, the reviewed version) replacing the previous ones for the
//!   document, published only while the document is still at the reviewed version; cleared
//!   on `didClose`; the findings are also the command's result.
//!
//! Every result carries `model`, `reason` and `attempts`. A failure is a `window/showMessage`
//! error plus an error response (RequestFailed) with the same line. `$/progress` begin /
//! report / end is sent on the client's `workDoneToken`, or on one made with
//! `window/workDoneProgress/create` when the client supports it. Cancelling
//! (`$/cancelRequest` drops the handler; `window/workDoneProgress/cancel` wakes it) drops the
//! model call, which closes its connection.
//!
//! The handler takes a snapshot under the documents lock and the current session, and holds
//! no lock across an await; the action's document-sized steps run on the blocking pool (see
//! [`crate::actions::run`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;
use tower_lsp_server::Client;
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp_server::ls_types::notification::Progress as ProgressNotification;
use tower_lsp_server::ls_types::*;

use super::{Backend, contained, invalid_params, lock, to_line_col, to_position};
use crate::actions::ActionKind;
use crate::actions::run::{
    ActionEnv, ActionError, ActionInput, ActionOutcome, ActionResult, Progress, Provenance, Spot,
    output_of, run_action,
};
use crate::config::ActionOutput;
use crate::documents::path_of_uri;
use crate::position::{self, PositionEncoding};

pub const EXPLAIN_COMMAND: &str = "pilotfish.explain";
pub const REFACTOR_COMMAND: &str = "pilotfish.refactor";
pub const REVIEW_COMMAND: &str = "pilotfish.review";
pub const ACTION_COMMAND: &str = "pilotfish.action";
/// The commands `workspace/executeCommand` runs here.
pub const COMMANDS: [&str; 4] = [
    EXPLAIN_COMMAND,
    REFACTOR_COMMAND,
    REVIEW_COMMAND,
    ACTION_COMMAND,
];
/// Progress reports while streaming are sent at most this often.
const REPORT_EVERY: Duration = Duration::from_millis(200);
/// The longest explanation sent in a `window/showMessage` (the file has all of it).
const MAX_MESSAGE_CHARS: usize = 4000;

/// Per-server state of the actions: what the client can do, running actions' cancel
/// switches by progress token, and which documents have review diagnostics.
#[derive(Default)]
pub struct ActionState {
    work_done_progress: AtomicBool,
    show_document: AtomicBool,
    /// Whether `workspace/applyEdit` may carry versioned `documentChanges`.
    document_changes: AtomicBool,
    next_token: AtomicU64,
    cancels: Mutex<HashMap<String, Arc<Notify>>>,
    diagnosed: Mutex<HashSet<String>>,
}

impl ActionState {
    /// Records what the client supports (at `initialize`).
    pub fn set_client_capabilities(&self, capabilities: &ClientCapabilities) {
        let window = capabilities.window.as_ref();
        let progress = window.and_then(|w| w.work_done_progress).unwrap_or(false);
        let show = window
            .and_then(|w| w.show_document.as_ref())
            .is_some_and(|s| s.support);
        let document_changes = capabilities
            .workspace
            .as_ref()
            .and_then(|w| w.workspace_edit.as_ref())
            .and_then(|e| e.document_changes)
            .unwrap_or(false);
        self.work_done_progress.store(progress, Ordering::SeqCst);
        self.show_document.store(show, Ordering::SeqCst);
        self.document_changes
            .store(document_changes, Ordering::SeqCst);
    }
}

/// The code-action capability to advertise.
pub fn code_action_capability() -> CodeActionProviderCapability {
    CodeActionProviderCapability::Options(CodeActionOptions {
        code_action_kinds: Some(vec![
            CodeActionKind::new("source.pilotfish"),
            CodeActionKind::REFACTOR_REWRITE,
        ]),
        resolve_provider: Some(false),
        work_done_progress_options: Default::default(),
    })
}

fn token_key(token: &ProgressToken) -> String {
    match token {
        NumberOrString::Number(n) => format!("n{n}"),
        NumberOrString::String(s) => format!("s{s}"),
    }
}

fn command_for(kind: &ActionKind) -> &'static str {
    match kind {
        ActionKind::Explain => EXPLAIN_COMMAND,
        ActionKind::Refactor => REFACTOR_COMMAND,
        ActionKind::Review => REVIEW_COMMAND,
        ActionKind::Custom(_) => ACTION_COMMAND,
    }
}

fn code_action_kind(kind: &ActionKind) -> CodeActionKind {
    match kind {
        ActionKind::Refactor => CodeActionKind::REFACTOR_REWRITE,
        other => CodeActionKind::from(format!("source.pilotfish.{}", other.name())),
    }
}

fn failed(message: String, data: Option<Value>) -> Error {
    Error {
        code: ErrorCode::ServerError(-32803), // RequestFailed
        message: message.into(),
        data,
    }
}

fn provenance_json(p: &Provenance) -> Value {
    json!({ "model": p.model, "reason": p.reason, "attempts": p.attempts })
}

/// Sends `$/progress` for one running action; ends it (as cancelled) if dropped unfinished.
struct ProgressReporter {
    client: Client,
    token: Option<ProgressToken>,
    ended: bool,
}

impl ProgressReporter {
    async fn send(&self, value: WorkDoneProgress) {
        if let Some(token) = &self.token {
            send_progress(&self.client, token.clone(), value).await;
        }
    }

    async fn end(&mut self, message: String) {
        self.ended = true;
        self.send(WorkDoneProgress::End(WorkDoneProgressEnd {
            message: Some(message),
        }))
        .await;
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        if let (false, Some(token)) = (self.ended, self.token.take()) {
            let client = self.client.clone();
            let end = WorkDoneProgress::End(WorkDoneProgressEnd {
                message: Some("cancelled".into()),
            });
            tokio::spawn(async move { send_progress(&client, token, end).await });
        }
    }
}

/// The command's kind: by the command id, or for `pilotfish.action` by its `action` argument.
fn action_kind(command: &str, args: &CommandArgs) -> Result<ActionKind> {
    Ok(match command {
        EXPLAIN_COMMAND => ActionKind::Explain,
        REFACTOR_COMMAND => ActionKind::Refactor,
        REVIEW_COMMAND => ActionKind::Review,
        _ => match args.action.as_deref() {
            Some(name) => ActionKind::from_name(name),
            None => {
                return Err(invalid_params(
                    "pilotfish.action needs the action's name in \"action\"",
                ));
            }
        },
    })
}

/// Sends the progress events of a running action as `$/progress` reports on `token` (none
/// without one) until the action drops its sender: each model asked, and the characters
/// streamed so far at most every [`REPORT_EVERY`].
async fn forward_progress(
    client: Client,
    token: Option<ProgressToken>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Progress>,
) {
    let mut last: Option<Instant> = None;
    let mut last_model: Option<Arc<str>> = None;
    while let Some(event) = events.recv().await {
        let Some(token) = &token else { continue };
        let message = match &event {
            Progress::Asking { model } => {
                last_model = Some(model.clone());
                format!("asking {model}")
            }
            Progress::Streaming { model, chars } => {
                let fresh = last_model.as_ref() != Some(model);
                if !fresh && last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
                    continue;
                }
                last_model = Some(model.clone());
                format!("{model}: {chars} characters")
            }
        };
        last = Some(Instant::now());
        let report = WorkDoneProgress::Report(WorkDoneProgressReport {
            cancellable: Some(true),
            message: Some(message),
            percentage: None,
        });
        send_progress(&client, token.clone(), report).await;
    }
}

async fn send_progress(client: &Client, token: ProgressToken, value: WorkDoneProgress) {
    client
        .send_notification::<ProgressNotification>(ProgressParams {
            token,
            value: ProgressParamsValue::WorkDone(value),
        })
        .await;
}

/// Removes a cancel switch when the action ends, however it ends.
struct CancelRegistration<'a> {
    state: &'a ActionState,
    key: Option<String>,
}

impl Drop for CancelRegistration<'_> {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            lock(&self.state.cancels).remove(key);
        }
    }
}

/// The arguments of an action command: `{ "uri", "range" | "position", "action"? }`.
struct CommandArgs {
    uri: Uri,
    range: Range,
    action: Option<String>,
}

fn parse_args(arguments: &[Value]) -> std::result::Result<CommandArgs, String> {
    let Some(arg) = arguments.first() else {
        return Err("expected one argument {uri, range | position, action?}".into());
    };
    let uri: Uri = arg
        .get("uri")
        .cloned()
        .ok_or("the argument has no \"uri\"")
        .and_then(|v| serde_json::from_value(v).map_err(|_| "\"uri\" is not a URI"))?;
    let range = match (arg.get("range"), arg.get("position")) {
        (Some(r), _) => serde_json::from_value::<Range>(r.clone())
            .map_err(|e| format!("\"range\" is not an LSP range: {e}"))?,
        (None, Some(p)) => {
            let p = serde_json::from_value::<Position>(p.clone())
                .map_err(|e| format!("\"position\" is not an LSP position: {e}"))?;
            Range { start: p, end: p }
        }
        (None, None) => return Err("the argument needs a \"range\" or a \"position\"".into()),
    };
    let action = arg
        .get("action")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(CommandArgs { uri, range, action })
}

impl Backend {
    /// `textDocument/codeAction`: the built-in actions and one per `[actions.*]`, each a
    /// command with `{uri, range}`. Never calls a model.
    pub(super) fn offer_code_actions(
        &self,
        params: CodeActionParams,
    ) -> Result<Option<CodeActionResponse>> {
        if lock(&self.documents)
            .version(params.text_document.uri.as_str())
            .is_none()
        {
            return Ok(Some(Vec::new()));
        }
        let custom: Vec<(String, String)> = {
            let session = self.session();
            session
                .config()
                .actions
                .iter()
                .map(|(name, a)| {
                    (
                        name.clone(),
                        ActionKind::Custom(name.clone()).title(Some(a)),
                    )
                })
                .collect()
        };
        let builtin = [
            ActionKind::Explain,
            ActionKind::Refactor,
            ActionKind::Review,
        ]
        .map(|k| (k.title(None), k));
        let all = builtin
            .into_iter()
            .chain(custom.into_iter().filter_map(|(name, title)| {
                // The built-in names win over an `[actions.*]` table of the same name.
                match ActionKind::from_name(&name) {
                    ActionKind::Custom(_) => Some((title, ActionKind::Custom(name))),
                    _ => None,
                }
            }));
        let only = params.context.only.as_deref();
        let uri = params.text_document.uri;
        let offers = all
            .filter(|(_, kind)| {
                let ours = code_action_kind(kind);
                only.is_none_or(|only| {
                    only.iter().any(|o| {
                        ours.as_str() == o.as_str()
                            || ours.as_str().starts_with(&format!("{}.", o.as_str()))
                    })
                })
            })
            .map(|(title, kind)| {
                let mut argument = json!({ "uri": uri, "range": params.range });
                if let ActionKind::Custom(name) = &kind {
                    argument["action"] = json!(name);
                }
                CodeActionOrCommand::CodeAction(CodeAction {
                    title: title.clone(),
                    kind: Some(code_action_kind(&kind)),
                    command: Some(Command {
                        title,
                        command: command_for(&kind).into(),
                        arguments: Some(vec![argument]),
                    }),
                    ..Default::default()
                })
            })
            .collect();
        Ok(Some(offers))
    }

    /// `window/workDoneProgress/cancel`: stops the action running on that token.
    pub async fn work_done_progress_cancel(&self, params: WorkDoneProgressCancelParams) {
        contained("workDoneProgress/cancel", async {
            let switch = lock(&self.actions.cancels)
                .get(&token_key(&params.token))
                .cloned();
            match switch {
                Some(notify) => notify.notify_one(),
                None => tracing::debug!(?params.token, "cancel for no running action"),
            }
        })
        .await
    }

    /// `didClose`: the document's review diagnostics go with it.
    pub(super) async fn clear_action_diagnostics(&self, uri: &Uri) {
        if lock(&self.actions.diagnosed).remove(uri.as_str()) {
            self.client
                .publish_diagnostics(uri.clone(), Vec::new(), None)
                .await;
        }
    }

    /// `workspace/executeCommand` for the action commands.
    pub(super) async fn execute_action(
        &self,
        command: &str,
        arguments: &[Value],
        work_done_token: Option<ProgressToken>,
    ) -> Result<Option<Value>> {
        let args = parse_args(arguments).map_err(invalid_params)?;
        let kind = action_kind(command, &args)?;
        let encoding = self.encoding();
        let snapshot = lock(&self.documents)
            .snapshot(args.uri.as_str())
            .map_err(invalid_params)?;
        let (start, end) = position::range_to_bytes(
            &snapshot.rope,
            to_line_col(args.range.start),
            to_line_col(args.range.end),
            encoding,
        )
        .map_err(invalid_params)?;
        let session = self.session();
        let display_path = session.display_path(&path_of_uri(args.uri.as_str()));
        let title = kind.title(match &kind {
            ActionKind::Custom(name) => session.config().actions.get(name),
            _ => None,
        });

        let token = self.progress_token(work_done_token).await;
        let cancel = Arc::new(Notify::new());
        let _registration = CancelRegistration {
            state: &self.actions,
            key: token.as_ref().map(|t| {
                let key = token_key(t);
                lock(&self.actions.cancels).insert(key.clone(), cancel.clone());
                key
            }),
        };
        let mut reporter = ProgressReporter {
            client: self.client.clone(),
            token,
            ended: false,
        };
        reporter
            .send(WorkDoneProgress::Begin(WorkDoneProgressBegin {
                title: title.clone(),
                cancellable: Some(true),
                message: Some("routing".into()),
                percentage: None,
            }))
            .await;

        // Progress events come from inside the model call; a task forwards them.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let forwarder = tokio::spawn(forward_progress(
            self.client.clone(),
            reporter.token.clone(),
            rx,
        ));
        let on_progress = move |event: Progress| {
            let _ = tx.send(event);
        };
        let input = ActionInput {
            snapshot: snapshot.clone(),
            spot: Spot::from_range(start.min(end)..start.max(end)),
            kind: kind.clone(),
        };
        let env = ActionEnv {
            session: session.clone(),
            health: self.health.clone(),
            providers: self.providers.clone(),
            usage: self.usage.clone(),
        };
        let outcome = {
            let run = run_action(input, env, &on_progress);
            tokio::select! {
                outcome = run => Some(outcome),
                () = cancel.notified() => None,
            }
        };
        drop(on_progress);
        let _ = forwarder.await;
        let Some(outcome) = outcome else {
            reporter.end("cancelled".into()).await;
            tracing::info!(task = kind.name(), "action cancelled");
            return Err(Error::request_cancelled());
        };
        let decision = match &outcome {
            Ok(outcome) => outcome.provenance.decision.as_ref(),
            Err(e) => e.provenance.decision.as_ref(),
        };
        if decision.is_some_and(|d| d.budget_exhausted) {
            self.tell_budget_spent(&session).await;
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                reporter.end(format!("failed: {}", e.message)).await;
                return Err(self.action_failed(&title, e).await);
            }
        };
        let model = outcome.provenance.model.clone().unwrap_or_default();
        reporter.end(format!("answered by {model}")).await;
        let delivered = match output_of(&kind, session.config()) {
            ActionOutput::Document => self.deliver_document(&title, &display_path, &outcome).await,
            ActionOutput::Edit => {
                self.deliver_edit(&title, &args.uri, &snapshot, &outcome, encoding)
                    .await
            }
            ActionOutput::Diagnostics => {
                self.deliver_diagnostics(&title, &args.uri, &snapshot, &outcome, encoding)
                    .await
            }
        };
        let mut result = delivered?;
        result["kind"] = json!(kind.name());
        result["model"] = json!(model);
        result["reason"] = json!(outcome.provenance.reason);
        result["attempts"] = json!(outcome.provenance.attempts);
        result["notes"] = json!(outcome.notes);
        Ok(Some(result))
    }

    /// The progress token of an action: the client's, or one made for it when the client
    /// supports that; None when there is none to report on.
    async fn progress_token(&self, given: Option<ProgressToken>) -> Option<ProgressToken> {
        if given.is_some() || !self.actions.work_done_progress.load(Ordering::SeqCst) {
            return given;
        }
        let n = self.actions.next_token.fetch_add(1, Ordering::SeqCst);
        let token = NumberOrString::String(format!("pilotfish/action/{n}"));
        match self.client.create_work_done_progress(token.clone()).await {
            Ok(()) => Some(token),
            Err(e) => {
                tracing::debug!("the client refused a progress token: {e}");
                None
            }
        }
    }

    async fn action_failed(&self, title: &str, e: ActionError) -> Error {
        let line = format!("{title}: {}", e.message);
        tracing::warn!("{line}");
        self.client.show_message(MessageType::ERROR, &line).await;
        failed(line, Some(provenance_json(&e.provenance)))
    }

    async fn deliver_document(
        &self,
        title: &str,
        display_path: &str,
        outcome: &ActionOutcome,
    ) -> Result<Value> {
        let ActionResult::Document { markdown } = &outcome.result else {
            return Err(failed("internal: not a document result".into(), None));
        };
        let (first, last) = (outcome.first_line, outcome.last_line);
        let model = outcome.provenance.model.as_deref().unwrap_or("?");
        let mut page = format!(
            "# {title}: {display_path}, lines {}-{}\n\n{markdown}\n\n---\n_Answered by {model}: {}_\n",
            first + 1,
            last + 1,
            outcome.provenance.reason
        );
        for note in &outcome.notes {
            page.push_str(&format!("\n_{note}_\n"));
        }
        let file = write_explanation(outcome, display_path, &page);
        let file_uri = file.as_ref().ok().and_then(Uri::from_file_path);
        if let Err(e) = &file {
            tracing::warn!("cannot write the explanation: {e}");
        }
        let shown = match &file_uri {
            Some(uri) if self.actions.show_document.load(Ordering::SeqCst) => self
                .client
                .show_document(ShowDocumentParams {
                    uri: uri.clone(),
                    external: Some(false),
                    take_focus: Some(true),
                    selection: None,
                })
                .await
                .unwrap_or(false),
            _ => false,
        };
        if !shown {
            let mut text: String = page.chars().take(MAX_MESSAGE_CHARS).collect();
            if text.len() < page.len() {
                text.push('…');
                if let Ok(path) = &file {
                    text.push_str(&format!("\n(the whole text: {})", path.display()));
                }
            }
            self.client.show_message(MessageType::INFO, text).await;
        }
        Ok(json!({
            "markdown": markdown,
            "uri": file_uri,
        }))
    }

    async fn deliver_edit(
        &self,
        title: &str,
        uri: &Uri,
        snapshot: &crate::documents::Snapshot,
        outcome: &ActionOutcome,
        encoding: PositionEncoding,
    ) -> Result<Value> {
        let ActionResult::Edit { edit: done, diff } = &outcome.result else {
            return Err(failed("internal: not an edit result".into(), None));
        };
        let current = lock(&self.documents).version(uri.as_str());
        if current != Some(snapshot.version) {
            let e = ActionError {
                message: "no edit: the document changed while the model was working; run it again"
                    .into(),
                provenance: outcome.provenance.clone(),
            };
            return Err(self.action_failed(title, e).await);
        }
        let range = Range {
            start: to_position(position::from_byte(
                &snapshot.rope,
                done.range.start,
                encoding,
            )),
            end: to_position(position::from_byte(
                &snapshot.rope,
                done.range.end,
                encoding,
            )),
        };
        let text_edit = TextEdit {
            range,
            new_text: done.replacement.clone(),
        };
        let edit = if self.actions.document_changes.load(Ordering::SeqCst) {
            // Versioned: the editor applies it only to the version the rewrite was made for.
            WorkspaceEdit {
                document_changes: Some(DocumentChanges::Edits(vec![TextDocumentEdit {
                    text_document: OptionalVersionedTextDocumentIdentifier {
                        uri: uri.clone(),
                        version: Some(snapshot.version),
                    },
                    edits: vec![OneOf::Left(text_edit)],
                }])),
                ..Default::default()
            }
        } else {
            WorkspaceEdit {
                changes: Some(HashMap::from([(uri.clone(), vec![text_edit])])),
                ..Default::default()
            }
        };
        let applied = match self.client.apply_edit(edit).await {
            Ok(response) if response.applied => true,
            Ok(response) => {
                let why = response.failure_reason.unwrap_or_default();
                self.client
                    .show_message(
                        MessageType::ERROR,
                        format!("{title}: the editor did not apply the edit. {why}"),
                    )
                    .await;
                false
            }
            Err(e) => {
                self.client
                    .show_message(
                        MessageType::ERROR,
                        format!("{title}: the editor did not apply the edit: {e}"),
                    )
                    .await;
                false
            }
        };
        for note in &outcome.notes {
            self.client
                .show_message(MessageType::INFO, format!("{title}: {note}"))
                .await;
        }
        Ok(json!({ "applied": applied, "diff": diff, "range": range }))
    }

    async fn deliver_diagnostics(
        &self,
        title: &str,
        uri: &Uri,
        snapshot: &crate::documents::Snapshot,
        outcome: &ActionOutcome,
        encoding: PositionEncoding,
    ) -> Result<Value> {
        let ActionResult::Diagnostics(findings) = &outcome.result else {
            return Err(failed("internal: not a diagnostics result".into(), None));
        };
        let model = outcome.provenance.model.clone().unwrap_or_default();
        let mut diagnostics = Vec::with_capacity(findings.len());
        let mut listed = Vec::with_capacity(findings.len());
        for f in findings {
            let range = Range {
                start: to_position(position::from_byte(&snapshot.rope, f.range.start, encoding)),
                end: to_position(position::from_byte(&snapshot.rope, f.range.end, encoding)),
            };
            let severity = match f.finding.severity {
                crate::actions::Severity::Error => DiagnosticSeverity::ERROR,
                crate::actions::Severity::Warning => DiagnosticSeverity::WARNING,
                crate::actions::Severity::Info => DiagnosticSeverity::INFORMATION,
            };
            diagnostics.push(Diagnostic {
                range,
                severity: Some(severity),
                code: f.finding.cwe.clone().map(NumberOrString::String),
                source: Some("pilotfish".into()),
                message: f.finding.message.clone(),
                data: Some(json!({ "model": model })),
                ..Default::default()
            });
            listed.push(json!({
                "severity": f.finding.severity,
                "cwe": f.finding.cwe,
                "message": f.finding.message,
                "range": range,
            }));
        }
        // Findings are placed by the reviewed text: published (with that version) only while
        // the document is still at it.
        let current = lock(&self.documents).version(uri.as_str());
        let published = current == Some(snapshot.version);
        if published {
            lock(&self.actions.diagnosed).insert(uri.as_str().to_string());
            self.client
                .publish_diagnostics(uri.clone(), diagnostics, Some(snapshot.version))
                .await;
        } else {
            let line = format!(
                "{title}: the document changed while the model was working, so the {} finding(s) are not shown in place; run it again",
                listed.len()
            );
            tracing::info!("{line}");
            self.client.show_message(MessageType::WARNING, line).await;
        }
        Ok(json!({ "findings": listed, "published": published, "version": snapshot.version }))
    }
}

/// Writes an explanation page to `$TMPDIR/pilotfish/explain/`, named after the file, the
/// target's first line and the action, so that running it again overwrites the old page.
fn write_explanation(
    outcome: &ActionOutcome,
    display_path: &str,
    page: &str,
) -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join("pilotfish").join("explain");
    std::fs::create_dir_all(&dir)?;
    let stem: String = display_path
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = stem.trim_start_matches('_');
    let name = format!(
        "{stem}-L{}-{}.md",
        outcome.first_line + 1,
        outcome.kind.name()
    );
    let path = dir.join(name);
    std::fs::write(&path, page)?;
    Ok(path)
}
