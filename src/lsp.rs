//! The protocol layer — the only module that names LSP types. It negotiates capabilities
//! and the position encoding, keeps documents in step (each `didChange` applied before any
//! `.await`), compiles the configuration into the session (and swaps it whole when the editor
//! changes it), turns requests into calls on the completion engine and answers back. Every
//! handler — request or notification — runs behind a panic guard: a bug in one becomes an
//! error response or a log line, never a dead server.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use futures_util::FutureExt;
use serde_json::{Value, json};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use crate::completion::{CompletionEngine, NoSuggestion, Suggestion};
use crate::documents::{Documents, Reparse, TextChange};
use crate::position::{self, LineCol, PositionEncoding};
use crate::providers::Providers;
use crate::resilience::{Health, Remedy, probe_endpoints};
use crate::session::{Session, SharedSession};
use crate::sync::{lock, read, write};
use crate::syntax::Language;
use crate::telemetry::UsageLog;
use crate::test_hooks;

mod actions;
mod conformance;
mod framing;

/// The fuzz check of the framing guard (`crate::fuzzing`).
#[cfg(any(fuzzing, test))]
pub(crate) use framing::check_any_chunking as check_framing;

/// The command attached to every suggestion, so the editor reports acceptance.
pub const ACCEPT_COMMAND: &str = "pilotfish.accept";
/// The usage summary of `pilotfish stats --json`, for the editors.
pub const STATS_COMMAND: &str = "pilotfish.stats";
/// How long `shutdown` and `pilotfish.stats` wait for queued usage lines to be written.
const USAGE_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);
/// How many requests the server works on at once. Completion handlers wait on models;
/// a generous limit keeps `didChange` and `$/cancelRequest` flowing behind them.
const MAX_CONCURRENT_REQUESTS: usize = 32;

/// How the server was started: what it needs before `initialize` arrives.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `--config FILE`: overrides every other config location.
    pub config_path: Option<PathBuf>,
}

/// Serves LSP on stdin/stdout until `exit` (or the editor closes stdin). Returns the exit
/// code LSP asks for: 0 after `shutdown`, 1 otherwise.
pub async fn serve_stdio(options: ServeOptions) -> i32 {
    let shutdown_seen = Arc::new(AtomicBool::new(false));
    let flag = shutdown_seen.clone();
    let (service, socket) = LspService::build(move |client| Backend::new(client, options, flag))
        .custom_method("textDocument/inlineCompletion", Backend::inline_completion)
        .custom_method(
            "window/workDoneProgress/cancel",
            Backend::work_done_progress_cancel,
        )
        .finish();
    // tower-lsp stops reading at the first frame it cannot decode; the guard keeps it going.
    let (input, output) = stdio();
    let stdin = framing::guard(input);
    Server::new(stdin, output, socket)
        .concurrency_level(MAX_CONCURRENT_REQUESTS)
        .serve(conformance::Conformant::new(service))
        .await;
    if shutdown_seen.load(Ordering::SeqCst) {
        0
    } else {
        1
    }
}

type Input = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// stdin and stdout for the server. When they are pipes or sockets (as when an editor
/// starts us: VS Code uses pipes, libuv-based editors like Neovim socket pairs) they are
/// read and written through the event loop; tokio's `Stdin`/`Stdout` hand every read and
/// write to a blocking thread, which costs a thread wake-up per message.
fn stdio() -> (Input, Output) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let input = event_loop_fd(std::io::stdin().as_fd())
            .map(|fd| -> Input {
                match fd {
                    EventLoopFd::Pipe(file) => {
                        match tokio::net::unix::pipe::Receiver::from_file(file) {
                            Ok(pipe) => Box::new(pipe),
                            Err(_) => Box::new(tokio::io::stdin()),
                        }
                    }
                    EventLoopFd::Socket(stream) => Box::new(stream),
                }
            })
            .unwrap_or_else(|| Box::new(tokio::io::stdin()));
        let output = event_loop_fd(std::io::stdout().as_fd())
            .map(|fd| -> Output {
                match fd {
                    EventLoopFd::Pipe(file) => {
                        match tokio::net::unix::pipe::Sender::from_file(file) {
                            Ok(pipe) => Box::new(pipe),
                            Err(_) => Box::new(tokio::io::stdout()),
                        }
                    }
                    EventLoopFd::Socket(stream) => Box::new(stream),
                }
            })
            .unwrap_or_else(|| Box::new(tokio::io::stdout()));
        (input, output)
    }
    #[cfg(not(unix))]
    (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout()))
}

#[cfg(unix)]
enum EventLoopFd {
    Pipe(std::fs::File),
    Socket(tokio::net::UnixStream),
}

/// A duplicate of `fd`, if it is a pipe or a Unix socket (else None: a terminal or a file).
#[cfg(unix)]
fn event_loop_fd(fd: std::os::fd::BorrowedFd<'_>) -> Option<EventLoopFd> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    let kind = file.metadata().ok()?.file_type();
    if kind.is_fifo() {
        Some(EventLoopFd::Pipe(file))
    } else if kind.is_socket() {
        let stream = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
        stream.set_nonblocking(true).ok()?;
        tokio::net::UnixStream::from_std(stream)
            .ok()
            .map(EventLoopFd::Socket)
    } else {
        None
    }
}

pub struct Backend {
    client: Client,
    options: ServeOptions,
    documents: Arc<Mutex<Documents>>,
    encoding: RwLock<PositionEncoding>,
    /// The compiled configuration (with the workspace root: the first workspace folder),
    /// read per request and swapped whole on reconfiguration.
    session: Arc<SharedSession>,
    engine: CompletionEngine,
    providers: Providers,
    health: Arc<Health>,
    /// The usage log (and the day's spend), opened when the configuration is known.
    usage: UsageLog,
    /// Whether the user has been told that no completion model answers; reset on success.
    told_unreachable: AtomicBool,
    shutdown_seen: Arc<AtomicBool>,
    /// Code actions: client capabilities, cancel switches, documents with diagnostics.
    actions: actions::ActionState,
    /// Bumped after every applied `didChange` and every `didClose`, so that a request can end
    /// when its document moves on ([`Backend::moved_on`]).
    edits: tokio::sync::watch::Sender<u64>,
}

/// The message a panic carried.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs a request handler, turning a panic into an internal-error response.
async fn guarded<T>(what: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic_message(&*panic);
            tracing::error!("{what} panicked: {msg}");
            Err(Error {
                code: tower_lsp_server::jsonrpc::ErrorCode::InternalError,
                message: format!("pilotfish: {what} failed: {msg}").into(),
                data: None,
            })
        }
    }
}

/// Runs a notification handler, logging a panic instead of letting it unwind out of the
/// runtime. Polling starts at once, so a handler's work before its first `.await` (applying
/// a `didChange`) still happens before the next message is read.
async fn contained(what: &str, fut: impl std::future::Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
        tracing::error!(
            "{what} panicked: {}; the server goes on",
            panic_message(&*panic)
        );
    }
}

fn invalid_params(e: impl std::fmt::Display) -> Error {
    Error::invalid_params(e.to_string())
}

fn to_line_col(p: Position) -> LineCol {
    LineCol {
        line: p.line,
        col: p.character,
    }
}

fn to_position(p: LineCol) -> Position {
    Position {
        line: p.line,
        character: p.col,
    }
}

impl Backend {
    fn new(client: Client, options: ServeOptions, shutdown_seen: Arc<AtomicBool>) -> Backend {
        // The real configuration is loaded at `initialize`, when the workspace is known.
        let session = Session::built_in(None);
        let providers = Providers::new();
        let health = Arc::new(Health::new());
        let usage = UsageLog::off();
        let engine = CompletionEngine::new(
            session.completion().cache_entries,
            providers.clone(),
            health.clone(),
            usage.clone(),
        );
        Backend {
            client,
            options,
            documents: Arc::new(Mutex::new(Documents::default())),
            encoding: RwLock::new(PositionEncoding::default()),
            session: Arc::new(SharedSession::new(session)),
            engine,
            providers,
            health,
            usage,
            told_unreachable: AtomicBool::new(false),
            shutdown_seen,
            actions: actions::ActionState::default(),
            edits: tokio::sync::watch::channel(0).0,
        }
    }

    /// Resolves once `uri` is at another version than it is now (edited, or closed).
    fn moved_on(&self, uri: &Uri) -> impl std::future::Future<Output = ()> + use<> {
        let mut edits = self.edits.subscribe();
        let documents = Arc::clone(&self.documents);
        let uri = uri.as_str().to_string();
        let now = lock(&documents).version(&uri);
        async move {
            while edits.changed().await.is_ok() {
                if lock(&documents).version(&uri) != now {
                    return;
                }
            }
            std::future::pending().await
        }
    }

    /// The current session: read once per request, and kept for the whole request.
    fn session(&self) -> Arc<Session> {
        self.session.get()
    }

    /// Runs the background work a document change left: the reparse of a big file, and
    /// (`warm_features`) filling its features memo once its tree is fresh.
    fn schedule(&self, reparse: Reparse, uri: &str, warm_features: bool) {
        if reparse == Reparse::Done && !warm_features {
            return;
        }
        let (store, uri) = (self.documents.clone(), uri.to_string());
        tokio::task::spawn_blocking(move || {
            if reparse == Reparse::Deferred {
                Documents::reparse_deferred(&store, &uri);
            }
            if warm_features {
                let snapshot = lock(&store).snapshot(&uri);
                if let Some(snapshot) = snapshot.ok().filter(|s| s.tree_is_fresh) {
                    snapshot.warm_features();
                }
            }
        });
    }

    fn encoding(&self) -> PositionEncoding {
        *read(&self.encoding)
    }

    /// Loads and compiles the configuration for `workspace`, then applies the editor's
    /// overrides, and makes the result the session. A bad file is reported and replaced by
    /// the built-in default; bad overrides are reported and ignored.
    async fn load_session(&self, workspace: Option<PathBuf>, overrides: Option<Value>) {
        let explicit = self.options.config_path.as_deref();
        let mut session = match Session::load(explicit, workspace.as_deref()) {
            Ok(session) => session,
            Err(e) => {
                self.show(
                    MessageType::ERROR,
                    format!("Pilotfish: bad configuration, using the built-in default. {e}"),
                )
                .await;
                Session::built_in(workspace.map(|w| w.to_string_lossy().into_owned()))
            }
        };
        if let Some(overrides) = overrides {
            match session.with_overrides(&overrides) {
                Ok(with) => session = with,
                Err(e) => {
                    self.show(
                        MessageType::ERROR,
                        format!("Pilotfish: ignoring editor settings. {e}"),
                    )
                    .await
                }
            }
        }
        tracing::info!(origin = %session.origin(), root = ?session.workspace_root(), "configuration loaded");
        self.set_session(session);
    }

    /// Makes `session` the current one; the usage log follows its `[telemetry]`.
    fn set_session(&self, session: Session) {
        self.usage.configure(&session.config().telemetry);
        self.session.replace(session);
    }

    async fn show(&self, kind: MessageType, message: String) {
        tracing::warn!("{message}");
        self.client.show_message(kind, message).await;
    }

    /// Tells the user, once a day, that the day's budget keeps cloud models out, with the
    /// spend (of every Pilotfish process of the user) and the limit.
    async fn tell_budget_spent(&self, session: &Session) {
        let limit = session.config().budget.daily_usd.unwrap_or_default();
        if let Some(message) = self.usage.budget_notice(limit) {
            self.show(MessageType::INFO, message).await;
        }
    }

    /// What the user can do when no completion model can be expected to answer now
    /// ([`Health::chain_remedy`]).
    fn completion_down_remedy(&self, session: &Session) -> Option<Remedy> {
        let chain = session.completion_chain();
        let endpoints = chain
            .iter()
            .flat_map(|model| model.config.url.iter().map(|url| (&*model.name, url)));
        self.health.chain_remedy(endpoints, Instant::now())
    }

    /// Tells the user, once until a model answers again, that completion has no model, why,
    /// and what they can do.
    async fn tell_unreachable(&self, why: &str, remedy: Remedy) {
        if !self.told_unreachable.swap(true, Ordering::SeqCst) {
            let message = format!(
                "Pilotfish: no completion model answers ({why}). {} `pilotfish check` tries every configured model.",
                remedy.advice()
            );
            self.show(MessageType::WARNING, message).await;
        }
    }

    /// The shared core of both completion methods: the suggestion at `pos` and the
    /// position of the cursor, or None.
    async fn suggest(&self, uri: &Uri, pos: Position) -> Result<Option<(Suggestion, Position)>> {
        let started = Instant::now();
        // Each request ends in a line of its own (a suggestion, none and why, the document
        // changed, the failure) or an error to the editor: one logged here and never ended
        // is waiting on something.
        tracing::debug!(
            uri = uri.as_str(),
            line = pos.line,
            character = pos.character,
            "completion requested"
        );
        let session = self.session();
        let wanted = session.completion().other_files;
        let (snapshot, related) = lock(&self.documents)
            .for_completion(uri.as_str(), Some(pos.line), &wanted)
            .map_err(invalid_params)?;
        let cursor = position::to_byte(&snapshot.rope, to_line_col(pos), self.encoding())
            .map_err(invalid_params)?;
        let outcome = self
            .engine
            .complete(&session, &snapshot, cursor, &related)
            .await;
        if self.engine.take_budget_exhausted() {
            self.tell_budget_spent(&session).await;
        }
        let current = lock(&self.documents).version(uri.as_str());
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Ok(s) if current == Some(snapshot.version) => {
                tracing::info!(uri = uri.as_str(), line = pos.line, model = %s.model, source = s.source.name(), ms, "suggestion");
                if s.source == crate::completion::Source::Model {
                    self.told_unreachable.store(false, Ordering::SeqCst);
                }
                let chars = s.text.chars().count() as u64;
                let language = snapshot.language.name();
                self.usage
                    .shown(&s.id, "complete", &s.model, language, chars);
                self.engine
                    .delivered(&session, &snapshot, cursor, &s.text, &related);
                Ok(Some((s, pos)))
            }
            Ok(_) => {
                tracing::debug!(
                    uri = uri.as_str(),
                    "document changed while completing: answering empty"
                );
                Ok(None)
            }
            Err(NoSuggestion::Failed(why)) => {
                // The failure itself is logged where it happened (`completion failed`).
                if let Some(remedy) = self.completion_down_remedy(&session) {
                    self.tell_unreachable(&why, remedy).await;
                }
                Ok(None)
            }
            Err(why) => {
                tracing::debug!(
                    uri = uri.as_str(),
                    line = pos.line,
                    ?why,
                    ms,
                    "no suggestion"
                );
                Ok(None)
            }
        }
    }

    /// The user accepted a suggestion (`pilotfish.accept` with the suggestion's argument
    /// `{uri, id, model, source, chars}`, plus `accepted_chars` — or `acceptedLength` — when the
    /// editor accepted part of it): the usage log records it, and the engine makes sure the
    /// next suggestion is on its way.
    fn accepted(&self, args: &Value) {
        let text = |key: &str| args.pointer(&format!("/0/{key}")).and_then(Value::as_str);
        let number = |key: &str| args.pointer(&format!("/0/{key}")).and_then(Value::as_u64);
        if let Some(id) = text("id") {
            let accepted = number("accepted_chars").or_else(|| number("acceptedLength"));
            self.usage.accepted(id, accepted, text("model"));
        }
        let Some(uri) = args.pointer("/0/uri").and_then(Value::as_str) else {
            return;
        };
        let session = self.session();
        let wanted = session.completion().other_files;
        let Ok((snapshot, related)) = lock(&self.documents).for_completion(uri, None, &wanted)
        else {
            return;
        };
        self.engine.accepted(&session, &snapshot, &related);
    }

    /// `initialize`: negotiates the position encoding, records the client's capabilities,
    /// compiles the session for the workspace and answers with the server's capabilities.
    async fn initialize_guarded(&self, params: InitializeParams) -> Result<InitializeResult> {
        test_hooks::panic_if_marked("initialize", |m| {
            params
                .initialization_options
                .as_ref()
                .is_some_and(|o| o.to_string().contains(m))
        });
        let offered = params
            .capabilities
            .general
            .as_ref()
            .and_then(|g| g.position_encodings.as_ref())
            .map(|list| {
                list.iter()
                    .map(|k| k.as_str().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let encoding = PositionEncoding::negotiate(offered.iter().map(String::as_str));
        *write(&self.encoding) = encoding;

        #[allow(deprecated)]
        let root = params
            .workspace_folders
            .as_ref()
            .and_then(|f| f.first())
            .map(|f| f.uri.clone())
            .or(params.root_uri.clone())
            .and_then(|uri| uri.to_file_path().map(|p| p.into_owned()));
        self.actions.set_client_capabilities(&params.capabilities);
        self.load_session(root, params.initialization_options).await;
        let client = params
            .client_info
            .as_ref()
            .map(|c| format!("{} {}", c.name, c.version.as_deref().unwrap_or("")))
            .unwrap_or_default();
        tracing::info!(client, encoding = encoding.name(), "initialize");

        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                position_encoding: Some(PositionEncodingKind::from(encoding.name())),
                text_document_sync: Some(TextDocumentSyncCapability::Options(
                    TextDocumentSyncOptions {
                        open_close: Some(true),
                        change: Some(TextDocumentSyncKind::INCREMENTAL),
                        ..Default::default()
                    },
                )),
                inline_completion_provider: Some(OneOf::Left(true)),
                completion_provider: Some(CompletionOptions {
                    resolve_provider: Some(false),
                    ..Default::default()
                }),
                code_action_provider: Some(actions::code_action_capability()),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: [ACCEPT_COMMAND, STATS_COMMAND]
                        .into_iter()
                        .chain(actions::COMMANDS)
                        .map(String::from)
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            server_info: Some(ServerInfo {
                name: "pilotfish".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            ..Default::default()
        })
    }

    /// Tells the completion engine about an edit just applied to `uri`, and warms the model
    /// server's prompt cache when the engine asks for it (the first edit at a new place).
    fn after_edit(&self, uri: &str, edits: &[crate::documents::ByteEdit]) {
        let session = self.session();
        let Ok(snapshot) = lock(&self.documents).snapshot(uri) else {
            return;
        };
        if let Some(at) = self.engine.edited(&session, &snapshot, edits) {
            let wanted = session.completion().other_files;
            let Ok((_, related)) = lock(&self.documents).for_completion(uri, None, &wanted) else {
                return;
            };
            self.engine.warm_up(&session, &snapshot, at, &related);
        }
    }

    /// The cursor rests at `pos` in `uri` (an automatic code-action request at a cursor):
    /// the engine warms the model server's prompt cache there if that is a new place and the
    /// cursor stays.
    fn cursor_rests(&self, uri: &Uri, pos: Position) {
        let session = self.session();
        let Ok(snapshot) = lock(&self.documents).snapshot(uri.as_str()) else {
            return;
        };
        let Ok(at) = position::to_byte(&snapshot.rope, to_line_col(pos), self.encoding()) else {
            return;
        };
        let Some(rest) = self.engine.cursor_rests(&session, &snapshot, at) else {
            return;
        };
        tracing::debug!(
            uri = uri.as_str(),
            line = pos.line,
            "cursor rests at a new place"
        );
        let wanted = session.completion().other_files;
        let Ok((snapshot, related)) =
            lock(&self.documents).for_completion(uri.as_str(), Some(pos.line), &wanted)
        else {
            return;
        };
        self.engine
            .warm_up_when_settled(rest, session, (snapshot, at), related);
    }

    /// `textDocument/inlineCompletion` (LSP 3.18).
    pub async fn inline_completion(
        &self,
        params: InlineCompletionParams,
    ) -> Result<Option<InlineCompletionResponse>> {
        guarded("inlineCompletion", async {
            let tdp = params.text_document_position;
            let Some((s, pos)) = self.suggest(&tdp.text_document.uri, tdp.position).await? else {
                return Ok(Some(InlineCompletionResponse::List(InlineCompletionList {
                    items: vec![],
                })));
            };
            let item = InlineCompletionItem {
                insert_text: s.text.to_string(),
                filter_text: None,
                range: Some(Range {
                    start: pos,
                    end: pos,
                }),
                command: Some(accept_command(&tdp.text_document.uri, &s)),
                insert_text_format: Some(InsertTextFormat::PLAIN_TEXT),
            };
            Ok(Some(InlineCompletionResponse::List(InlineCompletionList {
                items: vec![item],
            })))
        })
        .await
    }
}

impl Backend {
    /// `pilotfish.stats` with an optional `{since: "7d"}`: what `pilotfish stats --json`
    /// prints, over this process's lines too (written first).
    async fn stats(&self, arguments: &[Value]) -> Result<Value> {
        let since = arguments
            .first()
            .and_then(|a| a.get("since"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let session = self.session();
        let usage = self.usage.clone();
        let report = tokio::task::spawn_blocking(move || {
            usage.flush(USAGE_FLUSH);
            let path = usage
                .path()
                .ok_or_else(|| "the usage log is off (telemetry.usage_log = \"\")".to_string())?;
            crate::telemetry::stats_of_log(&path, since.as_deref(), session.config())
        })
        .await
        .map_err(|e| Error {
            code: tower_lsp_server::jsonrpc::ErrorCode::InternalError,
            message: format!("pilotfish: stats failed: {e}").into(),
            data: None,
        })?;
        match report {
            Ok(report) => Ok(serde_json::to_value(report).unwrap_or(Value::Null)),
            Err(message) => Err(Error {
                code: tower_lsp_server::jsonrpc::ErrorCode::ServerError(-32803),
                message: message.into(),
                data: None,
            }),
        }
    }
}

fn accept_command(uri: &Uri, s: &Suggestion) -> Command {
    Command {
        title: "Pilotfish: accept suggestion".into(),
        command: ACCEPT_COMMAND.into(),
        arguments: Some(vec![json!({
            "uri": uri.as_str(),
            "id": &*s.id,
            "model": &*s.model,
            "source": s.source.name(),
            "chars": s.text.chars().count(),
        })]),
    }
}

/// The identifier characters just before `cursor` on its line: completion menus filter
/// items by this word, so the item must start with it.
fn word_before(rope: &ropey::Rope, cursor: usize) -> usize {
    let cursor_char = rope.byte_to_char(cursor);
    let line_start = rope.line_to_char(rope.char_to_line(cursor_char));
    let mut start = cursor_char;
    while start > line_start {
        let c = rope.char(start - 1);
        if c.is_alphanumeric() || c == '_' {
            start -= 1;
        } else {
            break;
        }
    }
    rope.char_to_byte(start)
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        guarded("initialize", self.initialize_guarded(params)).await
    }

    async fn initialized(&self, _: InitializedParams) {
        contained("initialized", async {
            let shared = self.session.clone();
            tokio::spawn(probe_endpoints(
                move || shared.get().routed_local_endpoints(),
                self.providers.clone(),
                self.health.clone(),
            ));
            // Open pooled connections now, so the first suggestion does not pay for them.
            let session = self.session();
            let failed = self.engine.warm(&session).await;
            if let Some((name, error)) = failed.first() {
                if failed.len() == session.completion_chain().len() {
                    let remedy = Remedy::lasting(error).unwrap_or(Remedy::ServerFails);
                    self.tell_unreachable(&format!("{name}: {error}"), remedy)
                        .await;
                }
            }
        })
        .await
    }

    async fn shutdown(&self) -> Result<()> {
        self.shutdown_seen.store(true, Ordering::SeqCst);
        let usage = self.usage.clone();
        let _ = tokio::task::spawn_blocking(move || usage.flush(USAGE_FLUSH)).await;
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        contained("didOpen", async {
            let doc = params.text_document;
            let language = Language::detect(&doc.language_id, doc.uri.path().as_str());
            let reparse = {
                let mut docs = lock(&self.documents);
                test_hooks::panic_if_marked("didOpen", |m| doc.text.contains(m));
                docs.open(doc.uri.as_str(), language, doc.version, &doc.text)
            };
            // Completion routing that reads features: walk the file once now, in the
            // background, so that no keystroke pays for a function's first walk.
            let warm = self.session().completion().rules_apply;
            self.schedule(reparse, doc.uri.as_str(), warm);
            tracing::debug!(uri = doc.uri.as_str(), language = language.name(), "opened");
        })
        .await
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        contained("didChange", async {
            let uri = params.text_document.uri;
            let changes: Vec<TextChange> = params
                .content_changes
                .into_iter()
                .map(|c| TextChange {
                    range: c.range.map(|r| (to_line_col(r.start), to_line_col(r.end))),
                    text: c.text,
                })
                .collect();
            // Applied before any await: later requests must see this edit.
            let applied = {
                let mut docs = lock(&self.documents);
                test_hooks::panic_if_marked("didChange", |m| {
                    changes.iter().any(|c| c.text.contains(m))
                });
                docs.change(
                    uri.as_str(),
                    params.text_document.version,
                    &changes,
                    self.encoding(),
                )
            };
            match applied {
                Ok(changed) => {
                    self.after_edit(uri.as_str(), &changed.edits);
                    self.edits.send_modify(|n| *n += 1);
                    self.schedule(changed.reparse, uri.as_str(), false)
                }
                Err(e) => {
                    let message = format!(
                        "Pilotfish ignored an edit it cannot apply; the document is unchanged: {e}"
                    );
                    tracing::error!("{message}");
                    self.client.log_message(MessageType::ERROR, message).await;
                }
            }
        })
        .await
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        contained("didClose", async {
            let uri = params.text_document.uri;
            test_hooks::panic_if_marked("didClose", |m| uri.as_str().contains(m));
            lock(&self.documents).close(uri.as_str());
            self.engine.close(uri.as_str());
            self.edits.send_modify(|n| *n += 1);
            self.clear_action_diagnostics(&uri).await;
        })
        .await
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        contained("didChangeConfiguration", async {
            let overrides = match params.settings {
                // Editors often nest the settings under the server's name.
                Value::Object(mut map) if map.contains_key("pilotfish") => {
                    map.remove("pilotfish").unwrap_or(Value::Null)
                }
                other => other,
            };
            test_hooks::panic_if_marked("didChangeConfiguration", |m| {
                overrides.to_string().contains(m)
            });
            match self.session().with_overrides(&overrides) {
                Ok(session) => self.set_session(session),
                Err(e) => {
                    self.show(
                        MessageType::ERROR,
                        format!("Pilotfish: ignoring new settings. {e}"),
                    )
                    .await
                }
            }
        })
        .await
    }

    /// `textDocument/completion`: as the inline request, but it ends (empty, incomplete) as
    /// soon as its document is edited. A menu request is not superseded by the next
    /// keystroke the way an inline one is (Helix sends no newer request while one is in
    /// flight, and no `$/cancelRequest`; it starts no automatic completion in the document
    /// until the request ends), so waiting on a slow model past an edit would hold up the
    /// menu of every server. A slow model's call runs on for the next request.
    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        guarded("completion", async {
            let tdp = params.text_document_position;
            let uri = tdp.text_document.uri;
            let moved_on = self.moved_on(&uri);
            let answer = tokio::select! {
                answer = self.suggest(&uri, tdp.position) => answer?,
                () = moved_on => {
                    tracing::debug!(uri = uri.as_str(), "document edited while completing: answering the menu empty");
                    None
                }
            };
            let Some((s, pos)) = answer else {
                return Ok(Some(CompletionResponse::List(CompletionList {
                    is_incomplete: true,
                    items: vec![],
                })));
            };
            // The item replaces the word before the cursor with word + suggestion, so that
            // the menu's filtering (by that word) keeps it.
            let (word, start) = {
                let docs = lock(&self.documents);
                let snap = docs.snapshot(uri.as_str()).map_err(invalid_params)?;
                let enc = self.encoding();
                let cursor =
                    position::to_byte(&snap.rope, to_line_col(pos), enc).map_err(invalid_params)?;
                let start = word_before(&snap.rope, cursor);
                (
                    snap.rope.byte_slice(start..cursor).to_string(),
                    position::from_byte(&snap.rope, start, enc),
                )
            };
            let full = format!("{word}{}", s.text);
            let first_line = full.lines().next().unwrap_or("").trim_end();
            let label: String = if first_line.chars().count() > 60 {
                first_line
                    .chars()
                    .take(59)
                    .chain(std::iter::once('…'))
                    .collect()
            } else {
                first_line.to_string()
            };
            let item = CompletionItem {
                label,
                kind: Some(CompletionItemKind::TEXT),
                detail: Some(format!("pilotfish · {}", s.model)),
                documentation: Some(Documentation::MarkupContent(MarkupContent {
                    kind: MarkupKind::Markdown,
                    value: format!("```\n{full}\n```"),
                })),
                filter_text: Some(full.clone()),
                sort_text: Some("0".into()),
                preselect: Some(true),
                insert_text_format: Some(InsertTextFormat::PLAIN_TEXT),
                text_edit: Some(CompletionTextEdit::Edit(TextEdit {
                    range: Range {
                        start: to_position(start),
                        end: pos,
                    },
                    new_text: full,
                })),
                command: Some(accept_command(&uri, &s)),
                ..Default::default()
            };
            Ok(Some(CompletionResponse::List(CompletionList {
                is_incomplete: true,
                items: vec![item],
            })))
        })
        .await
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        guarded("codeAction", async {
            // VS Code asks at every cursor move, for its light bulb: where the cursor rests.
            let automatic = params.context.trigger_kind == Some(CodeActionTriggerKind::AUTOMATIC);
            if automatic && params.range.start == params.range.end {
                self.cursor_rests(&params.text_document.uri, params.range.start);
            }
            self.offer_code_actions(params)
        })
        .await
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        guarded("executeCommand", async {
            match params.command.as_str() {
                ACCEPT_COMMAND => {
                    let args = Value::Array(params.arguments);
                    tracing::info!(%args, "suggestion accepted");
                    self.accepted(&args);
                    Ok(None)
                }
                STATS_COMMAND => self.stats(&params.arguments).await.map(Some),
                action if actions::COMMANDS.contains(&action) => {
                    let token = params.work_done_progress_params.work_done_token;
                    self.execute_action(action, &params.arguments, token).await
                }
                other => Err(Error::invalid_params(format!("unknown command {other:?}"))),
            }
        })
        .await
    }
}
