//! An editor over stdio: runs the real `pilotfish` binary (or any program) with piped
//! stdin/stdout, frames JSON-RPC with `Content-Length` both ways, and keeps everything the
//! server said — responses by id, notifications in order, server→client requests (answered
//! automatically, like an editor would) and protocol errors (anything on stdout that is not a
//! well-formed LSP message: stdout must carry LSP only).
//!
//! Plain std threads, no async: usable from `#[test]`, from `#[tokio::test(flavor =
//! "multi_thread")]` next to a model double, and from a bench's `fn main`. Every wait has a
//! generous timeout and then panics with the tail of the server's stderr, which is captured to a
//! temp file. This module must not know what Pilotfish answers; it only carries messages.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Default wait for a response or a notification before a test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `shutdown_and_exit` gives the process to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Stderr lines shown when a wait fails.
const STDERR_TAIL_LINES: usize = 40;

pub type RequestId = i64;

/// A JSON-RPC error response.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl ErrorObject {
    fn from_json(error: &Value) -> Self {
        ErrorObject {
            code: error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            data: error.get("data").cloned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Framing

/// Writes one message: `Content-Length: N\r\n\r\n` then `body` (any bytes, valid JSON or not).
pub fn write_frame(out: &mut impl Write, body: &[u8]) -> io::Result<()> {
    write!(out, "Content-Length: {}\r\n\r\n", body.len())?;
    out.write_all(body)?;
    out.flush()
}

/// Reads one message body. `Ok(None)` on a clean EOF before a message starts; an
/// `InvalidData` error when the headers are not LSP headers (e.g. a stray `println!` on stdout).
pub fn read_frame(input: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut content_length: Option<usize> = None;
    let mut first = true;
    loop {
        let mut line = Vec::new();
        let n = input.read_until(b'\n', &mut line)?;
        if n == 0 {
            return if first {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside message headers",
                ))
            };
        }
        first = false;
        let Some(line) = line.strip_suffix(b"\r\n") else {
            return Err(invalid_data(format!(
                "header line not ended by CRLF: {:?}",
                String::from_utf8_lossy(&line)
            )));
        };
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| invalid_data("header line is not UTF-8".to_owned()))?;
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid_data(format!("not a header line: {line:?}")));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let length = value
                .trim()
                .parse()
                .map_err(|_| invalid_data(format!("bad Content-Length: {value:?}")))?;
            content_length = Some(length);
        }
    }
    let length =
        content_length.ok_or_else(|| invalid_data("message without Content-Length".to_owned()))?;
    let mut body = vec![0; length];
    input.read_exact(&mut body)?;
    Ok(Some(body))
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

// ---------------------------------------------------------------------------------------------
// Fixtures and positions

/// How LSP columns are counted (`general.positionEncodings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

/// Removes the one `$0` cursor marker from `fixture` and returns the text with the cursor's LSP
/// position (line, UTF-16 column).
pub fn mark(fixture: &str) -> (String, u32, u32) {
    mark_in(fixture, Encoding::Utf16)
}

/// [`mark`] with the column in UTF-8 bytes.
pub fn mark_utf8(fixture: &str) -> (String, u32, u32) {
    mark_in(fixture, Encoding::Utf8)
}

/// [`mark`] with the column in the given encoding.
pub fn mark_in(fixture: &str, encoding: Encoding) -> (String, u32, u32) {
    let offset = fixture
        .find("$0")
        .expect("fixture has no `$0` cursor marker");
    assert!(
        !fixture[offset + 2..].contains("$0"),
        "fixture has more than one `$0` cursor marker"
    );
    let text = format!("{}{}", &fixture[..offset], &fixture[offset + 2..]);
    let (line, character) = position_at(&text, offset, encoding);
    (text, line, character)
}

/// The LSP position of a byte offset. Lines end at `\n`, `\r\n` or a lone `\r`.
pub fn position_at(text: &str, byte_offset: usize, encoding: Encoding) -> (u32, u32) {
    let bytes = text.as_bytes();
    let mut line = 0u32;
    let mut line_start = 0;
    for (i, &byte) in bytes[..byte_offset].iter().enumerate() {
        let ends_line = match byte {
            b'\n' => true,
            // A lone `\r` ends a line; in `\r\n` the `\n` does.
            b'\r' => bytes.get(i + 1) != Some(&b'\n'),
            _ => false,
        };
        if ends_line {
            line += 1;
            line_start = i + 1;
        }
    }
    let column_text = &text[line_start..byte_offset];
    let character = match encoding {
        Encoding::Utf8 => column_text.len(),
        Encoding::Utf16 => column_text.encode_utf16().count(),
        Encoding::Utf32 => column_text.chars().count(),
    };
    (line, u32::try_from(character).unwrap_or(u32::MAX))
}

/// `{"line":..,"character":..}`
pub fn position(line: u32, character: u32) -> Value {
    json!({ "line": line, "character": character })
}

/// `{"start":..,"end":..}`
pub fn range(start: (u32, u32), end: (u32, u32)) -> Value {
    json!({ "start": position(start.0, start.1), "end": position(end.0, end.1) })
}

/// A `file://` URI for an absolute path (percent-encoding what a URI path may not hold).
pub fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(byte as char)
            }
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri
}

// ---------------------------------------------------------------------------------------------
// The client

#[derive(Default)]
struct InboxState {
    /// Responses keyed by their id as JSON text (`1`, `"a"`).
    responses: HashMap<String, Value>,
    /// Responses with `"id": null`: the answers to messages the server could not read (a
    /// parse error has no id to answer). There may be many, so they are not keyed.
    null_id_responses: Vec<Value>,
    notifications: Vec<Value>,
    server_requests: Vec<Value>,
    protocol_errors: Vec<String>,
    /// The server closed its stdout.
    closed: bool,
}

#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
    changed: Condvar,
}

enum WaitError {
    Timeout,
    Closed,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut InboxState)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// Waits until `found` returns something, the server closes stdout, or `timeout` passes.
    fn wait<T>(
        &self,
        timeout: Duration,
        mut found: impl FnMut(&InboxState) -> Option<T>,
    ) -> Result<T, WaitError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(value) = found(&state) {
                return Ok(value);
            }
            if state.closed {
                return Err(WaitError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

type SharedStdin = Arc<Mutex<Option<ChildStdin>>>;

/// A running language server driven like an editor would. Dropping it kills the process if it
/// is still running (and prints the stderr tail when the test is failing).
pub struct LspClient {
    child: Mutex<Child>,
    stdin: SharedStdin,
    inbox: Arc<Inbox>,
    next_id: AtomicI64,
    stderr: tempfile::NamedTempFile,
    reader: Option<JoinHandle<()>>,
    root: PathBuf,
    timeout: Duration,
}

impl LspClient {
    /// Runs the real `pilotfish` binary with `args`, in `cwd` (also the workspace root).
    /// See [`LspClient::spawn_program`] for the environment.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Self {
        Self::spawn_program(Path::new(env!("CARGO_BIN_EXE_pilotfish")), args, env, cwd)
    }

    /// Runs any program as the server. The environment is hermetic: only `PATH`, `TMPDIR` and
    /// the Rust debugging variables (`RUST_LOG`, `RUST_BACKTRACE`, `LLVM_PROFILE_FILE`) pass
    /// through; `HOME` is `cwd`, `XDG_CONFIG_HOME` is `cwd/.config`, `XDG_STATE_HOME` is
    /// `cwd/.local/state` (so no user config is read and no usage log leaves the temp dir, and
    /// no API key leaks in); then `env` is applied on top.
    pub fn spawn_program(program: &Path, args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Self {
        let stderr = tempfile::NamedTempFile::new().expect("temp file for the server's stderr");
        let stderr_handle = stderr.reopen().expect("reopen the stderr temp file");
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("HOME", cwd)
            .env("XDG_CONFIG_HOME", cwd.join(".config"))
            .env("XDG_STATE_HOME", cwd.join(".local/state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_handle));
        for name in [
            "PATH",
            "TMPDIR",
            "RUST_LOG",
            "RUST_BACKTRACE",
            "LLVM_PROFILE_FILE",
        ] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin: SharedStdin = Arc::new(Mutex::new(child.stdin.take()));
        let inbox = Arc::new(Inbox::default());
        let reader = {
            let (inbox, stdin) = (Arc::clone(&inbox), Arc::clone(&stdin));
            std::thread::Builder::new()
                .name("lsp-client-reader".to_owned())
                .spawn(move || read_loop(BufReader::new(stdout), &inbox, &stdin))
                .expect("spawn the LSP reader thread")
        };
        LspClient {
            child: Mutex::new(child),
            stdin,
            inbox,
            next_id: AtomicI64::new(1),
            stderr,
            reader: Some(reader),
            root: cwd.to_path_buf(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Changes how long waits last before failing (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The workspace root (the server's working directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `file://` URI of a path relative to the workspace root.
    pub fn uri(&self, relative: &str) -> String {
        file_uri(&self.root.join(relative))
    }

    // --- sending -------------------------------------------------------------------------

    /// Sends a request and returns its id without waiting. `Value::Null` params are omitted.
    pub fn request(&self, method: &str, params: Value) -> RequestId {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({ "jsonrpc": "2.0", "id": id, "method": method });
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message);
        id
    }

    /// Sends a notification. `Value::Null` params are omitted.
    pub fn notify(&self, method: &str, params: Value) {
        let mut message = json!({ "jsonrpc": "2.0", "method": method });
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message);
    }

    /// Sends `$/cancelRequest` for `id`.
    pub fn cancel(&self, id: RequestId) {
        self.notify("$/cancelRequest", json!({ "id": id }));
    }

    /// Sends one framed message.
    pub fn send(&self, message: &Value) {
        let body = serde_json::to_vec(message).expect("serialise a JSON-RPC message");
        self.send_raw_frame(&body);
    }

    /// Sends `body` framed with a correct `Content-Length`, whatever it holds (malformed JSON,
    /// invalid UTF-8).
    pub fn send_raw_frame(&self, body: &[u8]) {
        let mut bytes = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes);
    }

    /// Sends bytes exactly as given (broken headers, partial frames…).
    pub fn send_raw(&self, bytes: &[u8]) {
        let written = {
            let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
            match stdin.as_mut() {
                Some(stdin) => stdin.write_all(bytes).and_then(|()| stdin.flush()),
                None => Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "stdin already closed",
                )),
            }
        };
        if let Err(e) = written {
            self.fail(&format!(
                "could not write to the server's stdin ({e}); did it exit?"
            ));
        }
    }

    /// Closes the server's stdin (an editor that went away).
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    // --- receiving -----------------------------------------------------------------------

    /// Waits for the response to `id`; panics with the stderr tail after the timeout or when the
    /// server closes stdout without answering.
    pub fn response(&self, id: RequestId) -> Result<Value, ErrorObject> {
        let key = id.to_string();
        let message = match self
            .inbox
            .wait(self.timeout, |state| state.responses.get(&key).cloned())
        {
            Ok(message) => message,
            Err(WaitError::Timeout) => self.fail(&format!(
                "no response to request {id} within {:?}",
                self.timeout
            )),
            Err(WaitError::Closed) => self.fail(&format!(
                "the server closed stdout without answering request {id}"
            )),
        };
        match message.get("error") {
            Some(error) => Err(ErrorObject::from_json(error)),
            None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// The response to `id` if it has arrived, without waiting.
    pub fn try_response(&self, id: RequestId) -> Option<Result<Value, ErrorObject>> {
        let message = self.inbox.lock().responses.get(&id.to_string()).cloned()?;
        Some(match message.get("error") {
            Some(error) => Err(ErrorObject::from_json(error)),
            None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
        })
    }

    /// Every response with `"id": null` so far (whole messages), in arrival order: the
    /// error responses to messages the server could not parse.
    pub fn null_id_responses(&self) -> Vec<Value> {
        self.inbox.lock().null_id_responses.clone()
    }

    /// Waits until at least `count` responses with `"id": null` have arrived; returns them.
    pub fn wait_for_null_id_responses(&self, count: usize) -> Vec<Value> {
        let found = self.inbox.wait(self.timeout, |state| {
            (state.null_id_responses.len() >= count).then(|| state.null_id_responses.clone())
        });
        match found {
            Ok(responses) => responses,
            Err(_) => self.fail(&format!(
                "expected {count} responses with a null id, got {:?}",
                self.null_id_responses()
            )),
        }
    }

    /// `request` then `response`.
    pub fn request_and_wait(&self, method: &str, params: Value) -> Result<Value, ErrorObject> {
        let id = self.request(method, params);
        self.response(id)
    }

    /// Every notification so far (whole messages), in arrival order.
    pub fn notifications(&self) -> Vec<Value> {
        self.inbox.lock().notifications.clone()
    }

    /// The params of every notification of `method` so far.
    pub fn notifications_of(&self, method: &str) -> Vec<Value> {
        params_of(&self.inbox.lock().notifications, method, 0)
    }

    /// How many notifications have arrived; pass it to
    /// [`LspClient::wait_for_notification_after`] to wait for a new one only.
    pub fn notification_count(&self) -> usize {
        self.inbox.lock().notifications.len()
    }

    /// Waits for a notification of `method` whose params satisfy `matches` (already received
    /// ones count) and returns its params.
    pub fn wait_for_notification(&self, method: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_notification_after(0, method, matches)
    }

    /// [`LspClient::wait_for_notification`] among notifications number `from` onwards.
    pub fn wait_for_notification_after(
        &self,
        from: usize,
        method: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let found = self.inbox.wait(self.timeout, |state| {
            params_of(&state.notifications, method, from)
                .into_iter()
                .find(|params| matches(params))
        });
        match found {
            Ok(params) => params,
            Err(_) => self.fail(&format!(
                "no matching `{method}` notification within {:?}; received: {:#?}",
                self.timeout,
                self.notifications()
            )),
        }
    }

    /// Every server→client request so far (whole messages), in arrival order. Each one was
    /// answered automatically (see `auto_reply`).
    pub fn server_requests(&self) -> Vec<Value> {
        self.inbox.lock().server_requests.clone()
    }

    /// The params of every server→client request of `method` so far.
    pub fn server_requests_of(&self, method: &str) -> Vec<Value> {
        params_of(&self.inbox.lock().server_requests, method, 0)
    }

    /// Waits for a server→client request of `method` whose params satisfy `matches`.
    pub fn wait_for_server_request(&self, method: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let found = self.inbox.wait(self.timeout, |state| {
            params_of(&state.server_requests, method, 0)
                .into_iter()
                .find(|params| matches(params))
        });
        match found {
            Ok(params) => params,
            Err(_) => self.fail(&format!(
                "no matching `{method}` request from the server within {:?}",
                self.timeout
            )),
        }
    }

    /// Everything the server said on stdout so far, as text: responses, notifications, its
    /// requests and anything malformed (for searching every output, e.g. for a leaked key).
    pub fn transcript(&self) -> String {
        let state = self.inbox.lock();
        let mut out: Vec<String> = state.responses.values().map(Value::to_string).collect();
        for messages in [
            &state.null_id_responses,
            &state.notifications,
            &state.server_requests,
        ] {
            out.extend(messages.iter().map(Value::to_string));
        }
        out.extend(state.protocol_errors.iter().cloned());
        out.join("\n")
    }

    /// Everything on the server's stdout that was not a well-formed LSP message, plus duplicate
    /// responses. Should stay empty.
    pub fn protocol_errors(&self) -> Vec<String> {
        self.inbox.lock().protocol_errors.clone()
    }

    // --- LSP helpers ---------------------------------------------------------------------

    /// `initialize` (with the workspace root as `rootUri` and only folder) then `initialized`;
    /// returns the `InitializeResult`. `initialization_options` is omitted when null.
    pub fn initialize(&self, capabilities: Value, initialization_options: Value) -> Value {
        let root_uri = file_uri(&self.root);
        let mut params = json!({
            "processId": std::process::id(),
            "clientInfo": { "name": "pilotfish-tests", "version": "0" },
            "rootUri": root_uri,
            "workspaceFolders": [{ "uri": root_uri, "name": "workspace" }],
            "capabilities": capabilities,
        });
        if !initialization_options.is_null() {
            params["initializationOptions"] = initialization_options;
        }
        let result = match self.request_and_wait("initialize", params) {
            Ok(result) => result,
            Err(error) => self.fail(&format!("initialize failed: {error:?}")),
        };
        self.notify("initialized", json!({}));
        result
    }

    /// `textDocument/didOpen` at version 1.
    pub fn open(&self, uri: &str, language_id: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({
                "textDocument": { "uri": uri, "languageId": language_id, "version": 1, "text": text }
            }),
        );
    }

    /// `textDocument/didChange` with these `contentChanges` (an array of
    /// `{"range":..,"text":..}` or `{"text":..}`).
    pub fn change(&self, uri: &str, version: i32, changes: Value) {
        self.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri, "version": version },
                "contentChanges": changes
            }),
        );
    }

    /// `textDocument/didChange` inserting `text` at one position (UTF-16 columns by default).
    pub fn type_text(&self, uri: &str, version: i32, at: (u32, u32), text: &str) {
        self.change(
            uri,
            version,
            json!([{ "range": range(at, at), "text": text }]),
        );
    }

    /// `textDocument/didClose`.
    pub fn close(&self, uri: &str) {
        self.notify(
            "textDocument/didClose",
            json!({ "textDocument": { "uri": uri } }),
        );
    }

    /// `shutdown` (must succeed), `exit`, then asserts the process exits with status 0 within
    /// 5 s.
    pub fn shutdown_and_exit(&self) {
        if let Err(error) = self.request_and_wait("shutdown", Value::Null) {
            self.fail(&format!("shutdown failed: {error:?}"));
        }
        self.notify("exit", Value::Null);
        self.close_stdin();
        match self.wait_exit(EXIT_TIMEOUT) {
            Some(status) if status.success() => {}
            Some(status) => self.fail(&format!("the server exited with {status} after exit")),
            None => self.fail(&format!("the server did not exit within {EXIT_TIMEOUT:?}")),
        }
    }

    // --- the process ---------------------------------------------------------------------

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The exit status if the process has exited.
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    pub fn is_running(&self) -> bool {
        self.try_exit_status().is_none()
    }

    /// The OS process id (e.g. to inspect its resources).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).id()
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read(self.stderr.path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let all = self.stderr();
        let kept: Vec<&str> = all.lines().rev().take(lines).collect();
        kept.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Panics with `message` and the stderr tail.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n--- server stderr (last {STDERR_TAIL_LINES} lines) ---\n{}\n---",
            self.stderr_tail(STDERR_TAIL_LINES)
        )
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        self.close_stdin();
        {
            let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server stderr (last {STDERR_TAIL_LINES} lines) ---\n{}\n---",
                self.stderr_tail(STDERR_TAIL_LINES)
            );
        }
    }
}

fn params_of(messages: &[Value], method: &str, from: usize) -> Vec<Value> {
    messages
        .iter()
        .skip(from)
        .filter(|m| m.get("method").and_then(Value::as_str) == Some(method))
        .map(|m| m.get("params").cloned().unwrap_or(Value::Null))
        .collect()
}

/// Reads the server's stdout until EOF, sorting messages and answering server requests.
fn read_loop(mut stdout: impl BufRead, inbox: &Inbox, stdin: &SharedStdin) {
    loop {
        match read_frame(&mut stdout) {
            Ok(Some(body)) => match serde_json::from_slice::<Value>(&body) {
                Ok(message) => dispatch(message, inbox, stdin),
                Err(e) => inbox.update(|state| {
                    state.protocol_errors.push(format!(
                        "message is not JSON ({e}): {:?}",
                        String::from_utf8_lossy(&body)
                    ))
                }),
            },
            Ok(None) => break,
            Err(e) => {
                // Framing is lost; nothing after this can be trusted. Drain so the server does
                // not block on a full pipe.
                inbox.update(|state| state.protocol_errors.push(format!("bad frame: {e}")));
                let _ = io::copy(&mut stdout, &mut io::sink());
                break;
            }
        }
    }
    inbox.update(|state| state.closed = true);
}

fn dispatch(message: Value, inbox: &Inbox, stdin: &SharedStdin) {
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = message.get("id").cloned();
    match (method, id) {
        (Some(method), Some(id)) => {
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            inbox.update(|state| state.server_requests.push(message));
            let reply = match auto_reply(&method, &params) {
                Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
                Err((code, text)) => json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": { "code": code, "message": text }
                }),
            };
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            if let Some(stdin) = stdin.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                // A server that exited cannot be answered; the test sees that elsewhere.
                let _ = write_frame(stdin, &body);
            }
        }
        (Some(_), None) => inbox.update(|state| state.notifications.push(message)),
        (None, Some(Value::Null)) => {
            inbox.update(|state| state.null_id_responses.push(message));
        }
        (None, Some(id)) => inbox.update(|state| {
            let key = id.to_string();
            match state.responses.entry(key) {
                Entry::Occupied(first) => {
                    let error = format!("second response for id {}: {message}", first.key());
                    state.protocol_errors.push(error);
                }
                Entry::Vacant(slot) => {
                    slot.insert(message);
                }
            }
        }),
        (None, None) => inbox.update(|state| {
            state
                .protocol_errors
                .push(format!("message with neither method nor id: {message}"))
        }),
    }
}

/// What an obliging editor answers to a server→client request.
fn auto_reply(method: &str, params: &Value) -> Result<Value, (i64, String)> {
    match method {
        "workspace/applyEdit" => Ok(json!({ "applied": true })),
        "window/showDocument" => Ok(json!({ "success": true })),
        "workspace/configuration" => {
            let items = params
                .get("items")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            Ok(Value::Array(vec![Value::Null; items]))
        }
        "window/workDoneProgress/create"
        | "client/registerCapability"
        | "client/unregisterCapability"
        | "window/showMessageRequest"
        | "workspace/workspaceFolders"
        | "workspace/inlayHint/refresh"
        | "workspace/codeLens/refresh"
        | "workspace/semanticTokens/refresh"
        | "workspace/diagnostic/refresh"
        | "workspace/inlineValue/refresh" => Ok(Value::Null),
        other => Err((-32601, format!("the test client does not handle {other}"))),
    }
}
