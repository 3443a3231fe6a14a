//! A model-server double: one HTTP/1.1 server on 127.0.0.1 that speaks the real wire formats of
//! OpenAI-compatible servers, Ollama, llama.cpp's `llama-server` and Anthropic, so that the real
//! Pilotfish binary can be tested and benchmarked without knowing it talks to a double.
//!
//! It owns the wire formats, the scripted behaviour (answer, delays, faults), the record of every
//! request and the counters that tests assert on. It must not depend on the test harness, and it
//! must not share a runtime with its caller: it runs its own single-threaded tokio runtime on its
//! own thread, so it works the same from `#[test]`, `#[tokio::test]` and a bench's `fn main`.
//!
//! HTTP is written by hand on `tokio::net::TcpStream` instead of going through hyper, because the
//! double must see the exact moment a *client* gives up: every wait (the delay before answering,
//! the pause between stream chunks, a hang) and every write is raced against a read of the same
//! socket, and a read that returns 0 bytes (EOF) or an error means the client closed the
//! connection. That is counted in [`ModelDouble::aborted`], and is how tests prove that a
//! cancelled completion really dropped its HTTP connection.
//!
//! Counters count *model calls* only (generation endpoints). Health and listing endpoints
//! (`/health`, `/api/tags`, `/v1/models`, `GET /`) are counted in [`ModelDouble::probes`], never
//! receive faults or delays, and never consume a fault script, so background health probes cannot
//! disturb a test's counts.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Largest request head (request line and headers) the double accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request body the double accepts (Pilotfish may be tested with 50 MB documents).
const MAX_BODY_BYTES: usize = 128 * 1024 * 1024;

/// Computes the answer text from the request (for tests that answer per prompt).
pub type AnswerFn = Arc<dyn Fn(&RecordedRequest) -> String + Send + Sync>;

/// What the model "generates".
#[derive(Clone)]
pub enum Answer {
    /// The same text for every request.
    Text(String),
    /// Text computed from each request.
    With(AnswerFn),
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Text(text) => f.debug_tuple("Text").field(text).finish(),
            Answer::With(_) => f.write_str("With(<closure>)"),
        }
    }
}

/// A way for a model server to misbehave. Faults apply to model calls only, never to probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status. `body: None` means an error body in the provider's own
    /// format (e.g. Anthropic's `{"type":"error","error":{"type":"overloaded_error",..}}`).
    Status {
        status: u16,
        body: Option<String>,
        retry_after_secs: Option<u64>,
    },
    /// Never answer; wait until the client gives up (which then counts as an abort).
    Hang,
    /// `200 OK` with a body that is not JSON (nor SSE/NDJSON of JSON).
    Garbage,
    /// Send the head and `after_chunks` content chunks (a prefix of the body when not streaming),
    /// then reset the connection (TCP RST) without finishing the response.
    ResetMidStream { after_chunks: usize },
    /// Streaming: send `after_chunks` content chunks, then an in-band error in the provider's
    /// format (Anthropic `event: error` with `overloaded_error`, OpenAI/llama.cpp `data:
    /// {"error":..}`, Ollama `{"error":..}`) and end the stream. Not streaming: answer 529 for
    /// Anthropic, 500 for the others.
    StreamError { after_chunks: usize },
}

impl Fault {
    /// This status with the provider's own error body.
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status,
            body: None,
            retry_after_secs: None,
        }
    }

    /// This status with exactly this body.
    pub fn status_with_body(status: u16, body: impl Into<String>) -> Self {
        Fault::Status {
            status,
            body: Some(body.into()),
            retry_after_secs: None,
        }
    }

    /// `429 Too Many Requests` with `Retry-After: secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Fault::Status {
            status: 429,
            body: None,
            retry_after_secs: Some(retry_after_secs),
        }
    }

    /// Anthropic's `529` overloaded (its body is `overloaded_error` on the Anthropic endpoint).
    pub fn overloaded() -> Self {
        Fault::status(529)
    }
}

/// Whether probes (`/health`, `/api/tags`, `/v1/models`, `GET /`) report the server as up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Probes answer `503` in the provider's format (llama.cpp's "Loading model").
    Down,
}

/// Everything the double does, settable at start and replaceable while it runs
/// ([`ModelDouble::set_behaviour`]). Build it with the chained methods.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub answer: Answer,
    /// Wait before the response head is written (time to first byte).
    pub delay: Duration,
    /// Wait between content chunks when streaming.
    pub chunk_delay: Duration,
    /// How many content chunks a streamed answer is split into (at least 1).
    pub chunks: usize,
    /// Applied to every model call not covered by `script`.
    pub fault: Option<Fault>,
    /// Applied to the next model calls, one each, in order; then `fault` (or a normal answer).
    pub script: Vec<Fault>,
    /// Model names listed by `/api/tags` and `/v1/models`.
    pub models: Vec<String>,
    pub health: Health,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            answer: Answer::Text(String::new()),
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunks: 3,
            fault: None,
            script: Vec::new(),
            models: vec!["test-model".to_owned()],
            health: Health::Up,
        }
    }
}

impl Behaviour {
    /// Answer every model call with `text`.
    pub fn answer(text: impl Into<String>) -> Self {
        Behaviour {
            answer: Answer::Text(text.into()),
            ..Behaviour::default()
        }
    }

    /// Answer each model call with `f(request)`.
    pub fn answer_with(f: impl Fn(&RecordedRequest) -> String + Send + Sync + 'static) -> Self {
        Behaviour {
            answer: Answer::With(Arc::new(f)),
            ..Behaviour::default()
        }
    }

    /// Every model call gets `fault`.
    pub fn failing(fault: Fault) -> Self {
        Behaviour::default().fault(fault)
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    pub fn chunks(mut self, chunks: usize) -> Self {
        self.chunks = chunks.max(1);
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// The first `n` model calls get `fault`, the later ones the normal answer.
    pub fn fail_first(mut self, n: usize, fault: Fault) -> Self {
        self.script.extend(std::iter::repeat_n(fault, n));
        self
    }

    /// The next model calls get these faults, one each, in order.
    pub fn script(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.script.extend(faults);
        self
    }

    pub fn models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    pub fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }
}

/// The endpoints the double serves, by provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/completions`
    OpenAiCompletions,
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `GET /v1/models` (probe)
    OpenAiModels,
    /// `POST /api/generate`
    OllamaGenerate,
    /// `POST /api/chat`
    OllamaChat,
    /// `GET /api/tags` (probe)
    OllamaTags,
    /// `GET /` — "Ollama is running" (probe)
    OllamaRoot,
    /// `POST /infill`
    LlamaInfill,
    /// `GET /health` (probe)
    LlamaHealth,
    /// `POST /v1/messages`
    AnthropicMessages,
    /// Anything else: `404`.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Ollama,
    LlamaCpp,
    Anthropic,
}

impl Endpoint {
    fn classify(path: &str) -> Self {
        match path {
            "/v1/completions" => Endpoint::OpenAiCompletions,
            "/v1/chat/completions" => Endpoint::OpenAiChat,
            "/v1/models" => Endpoint::OpenAiModels,
            "/api/generate" => Endpoint::OllamaGenerate,
            "/api/chat" => Endpoint::OllamaChat,
            "/api/tags" => Endpoint::OllamaTags,
            "/" => Endpoint::OllamaRoot,
            "/infill" => Endpoint::LlamaInfill,
            "/health" => Endpoint::LlamaHealth,
            "/v1/messages" => Endpoint::AnthropicMessages,
            _ => Endpoint::Unknown,
        }
    }

    /// A generation request (counted in `requests()`), as opposed to a probe.
    pub fn is_model_call(self) -> bool {
        matches!(
            self,
            Endpoint::OpenAiCompletions
                | Endpoint::OpenAiChat
                | Endpoint::OllamaGenerate
                | Endpoint::OllamaChat
                | Endpoint::LlamaInfill
                | Endpoint::AnthropicMessages
        )
    }

    pub fn is_probe(self) -> bool {
        !self.is_model_call() && self != Endpoint::Unknown
    }

    fn method(self) -> &'static str {
        if self.is_model_call() { "POST" } else { "GET" }
    }

    fn dialect(self) -> Dialect {
        match self {
            Endpoint::OpenAiCompletions | Endpoint::OpenAiChat | Endpoint::OpenAiModels => {
                Dialect::OpenAi
            }
            Endpoint::OllamaGenerate
            | Endpoint::OllamaChat
            | Endpoint::OllamaTags
            | Endpoint::OllamaRoot => Dialect::Ollama,
            Endpoint::LlamaInfill | Endpoint::LlamaHealth | Endpoint::Unknown => Dialect::LlamaCpp,
            Endpoint::AnthropicMessages => Dialect::Anthropic,
        }
    }
}

/// One request as the double received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// 0-based arrival order among all requests (probes included).
    pub seq: usize,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Option<String>,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
    pub raw_body: Vec<u8>,
    pub endpoint: Endpoint,
}

impl RecordedRequest {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_model_call(&self) -> bool {
        self.endpoint.is_model_call()
    }

    /// `body.model` when present.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Whether the client asked for a streamed answer, with each API's default: Ollama streams
    /// unless `"stream": false`; the others stream only with `"stream": true`.
    pub fn wants_stream(&self) -> bool {
        let stream = self.body.get("stream").and_then(Value::as_bool);
        match self.endpoint.dialect() {
            Dialect::Ollama => stream.unwrap_or(true),
            _ => stream.unwrap_or(false),
        }
    }

    /// The text before the cursor for FIM endpoints (`prompt`, `input_prefix`), or the last
    /// message's text for chat endpoints. Empty when absent.
    pub fn prompt_text(&self) -> String {
        let body = &self.body;
        match self.endpoint {
            Endpoint::LlamaInfill => str_field(body, "input_prefix"),
            Endpoint::OpenAiChat | Endpoint::OllamaChat | Endpoint::AnthropicMessages => body
                .get("messages")
                .and_then(Value::as_array)
                .and_then(|messages| messages.last())
                .map(|message| content_text(message.get("content")))
                .unwrap_or_default(),
            _ => match body.get("prompt") {
                Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect(),
                other => other.and_then(Value::as_str).unwrap_or_default().to_owned(),
            },
        }
    }

    /// The text after the cursor for FIM endpoints (`suffix`, `input_suffix`).
    pub fn suffix_text(&self) -> Option<String> {
        let key = if self.endpoint == Endpoint::LlamaInfill {
            "input_suffix"
        } else {
            "suffix"
        };
        self.body
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Every piece of input text in the request (prompt, suffix, system, messages, extra
    /// context), for token estimates.
    pub fn all_input_text(&self) -> String {
        let body = &self.body;
        let mut out = String::new();
        for key in ["prompt", "suffix", "system", "input_prefix", "input_suffix"] {
            match body.get(key) {
                Some(Value::String(s)) => out.push_str(s),
                Some(other @ Value::Array(_)) => out.push_str(&content_text(Some(other))),
                _ => {}
            }
        }
        if let Some(messages) = body.get("messages").and_then(Value::as_array) {
            for message in messages {
                out.push_str(&content_text(message.get("content")));
            }
        }
        if let Some(extra) = body.get("input_extra").and_then(Value::as_array) {
            for chunk in extra {
                out.push_str(&str_field(chunk, "text"));
            }
        }
        out
    }
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Message content as text: a string, or an array of `{"type":"text","text":..}` parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match part {
                Value::String(s) => s.clone(),
                other => str_field(other, "text"),
            })
            .collect(),
        _ => String::new(),
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicUsize,
    completed: AtomicUsize,
    aborted: AtomicUsize,
    faulted: AtomicUsize,
    resets: AtomicUsize,
    probes: AtomicUsize,
}

struct State {
    behaviour: Behaviour,
    script: VecDeque<Fault>,
    log: Vec<RecordedRequest>,
}

struct Shared {
    state: Mutex<State>,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking answer closure must not wedge every later request.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running model double. Dropping it stops the server.
pub struct ModelDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ModelDouble {
    /// Binds 127.0.0.1 on a free port and serves on a thread of its own. Callable from sync
    /// and async code alike; the port is bound when this returns.
    pub fn start(behaviour: Behaviour) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set the listener non-blocking");
        let addr = listener.local_addr().expect("listener address");
        let script = behaviour.script.iter().cloned().collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                behaviour,
                script,
                log: Vec::new(),
            }),
            counters: Counters::default(),
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("model-double-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("model double runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, server_shared) => {}
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })
            .expect("spawn the model double thread");
        ModelDouble {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the behaviour for the requests that arrive from now on; its `script` replaces
    /// whatever remained of the previous one. Requests already being answered are unaffected.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        let mut state = self.shared.lock();
        state.script = behaviour.script.iter().cloned().collect();
        state.behaviour = behaviour;
    }

    /// Appends faults for the next model calls (after any still scripted).
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().script.extend(faults);
    }

    /// Model calls received (the request was read in full), whatever became of them.
    pub fn requests(&self) -> usize {
        self.shared.counters.requests.load(Ordering::SeqCst)
    }

    /// Model calls whose whole response was written (any status, faults included).
    pub fn completed(&self) -> usize {
        self.shared.counters.completed.load(Ordering::SeqCst)
    }

    /// Model calls the client gave up on: it closed the connection before the response was
    /// complete (during the delay, a hang, or mid-stream).
    pub fn aborted(&self) -> usize {
        self.shared.counters.aborted.load(Ordering::SeqCst)
    }

    /// Model calls answered with a fault (status, garbage, hang, reset, stream error).
    pub fn faulted(&self) -> usize {
        self.shared.counters.faulted.load(Ordering::SeqCst)
    }

    /// Model calls cut short by the double itself (`Fault::ResetMidStream`).
    pub fn resets(&self) -> usize {
        self.shared.counters.resets.load(Ordering::SeqCst)
    }

    /// Model calls neither completed, aborted nor reset yet.
    pub fn in_flight(&self) -> usize {
        let finished = self.completed() + self.aborted() + self.resets();
        self.requests().saturating_sub(finished)
    }

    /// Probe requests (`/health`, `/api/tags`, `/v1/models`, `GET /`).
    pub fn probes(&self) -> usize {
        self.shared.counters.probes.load(Ordering::SeqCst)
    }

    /// Every request so far (probes and unknown paths included), in arrival order.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.lock().log.clone()
    }

    /// The model calls so far, in arrival order.
    pub fn model_calls(&self) -> Vec<RecordedRequest> {
        let state = self.shared.lock();
        state
            .log
            .iter()
            .filter(|r| r.is_model_call())
            .cloned()
            .collect()
    }

    pub fn last_model_call(&self) -> Option<RecordedRequest> {
        let state = self.shared.lock();
        state.log.iter().rev().find(|r| r.is_model_call()).cloned()
    }

    /// How many requests (of any kind) hit `path`.
    pub fn requests_to(&self, path: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Forgets the record and zeroes the counters (e.g. between bench iterations). Requests in
    /// flight still update the counters when they finish.
    pub fn clear(&self) {
        self.shared.lock().log.clear();
        let counters = &self.shared.counters;
        for counter in [
            &counters.requests,
            &counters.completed,
            &counters.aborted,
            &counters.faulted,
            &counters.resets,
            &counters.probes,
        ] {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// Polls `condition` until it holds (true) or `timeout` passes (false). Blocks the thread;
    /// the double keeps serving because it runs on its own thread. Do not call it from a
    /// current-thread tokio runtime that also drives the HTTP client being observed (it would
    /// stop that client from closing its connection); use [`ModelDouble::wait_for_async`].
    pub fn wait_for(&self, condition: impl Fn(&Self) -> bool, timeout: Duration) -> bool {
        super::wait_until(timeout, || condition(self))
    }

    /// [`ModelDouble::wait_for`] for async callers: sleeps with tokio between polls.
    pub async fn wait_for_async(
        &self,
        condition: impl Fn(&Self) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(super::POLL_INTERVAL).await;
        }
    }

    /// A one-line summary of the counters, for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "requests={} completed={} aborted={} faulted={} resets={} probes={}",
            self.requests(),
            self.completed(),
            self.aborted(),
            self.faulted(),
            self.resets(),
            self.probes()
        )
    }
}

impl fmt::Debug for ModelDouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelDouble({}, {})", self.base_url(), self.summary())
    }
}

impl Drop for ModelDouble {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            // Out of file descriptors or similar: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// How one response ended.
enum Outcome {
    /// Written in full; the connection may serve another request.
    Completed,
    /// The client closed the connection first.
    Aborted,
    /// The double reset the connection on purpose.
    Reset,
}

/// One client connection: the read half (watched for EOF while answering), the write half and
/// bytes read but not yet consumed.
struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    shared: Arc<Shared>,
    /// The response being written answers a model call (so its completion is counted).
    model_call: bool,
}

/// Resolves when the client has closed the connection (EOF or error). Bytes that arrive in the
/// meantime (a pipelined request) are kept in `buf`. Cancel-safe: `read` is.
async fn client_gone(reader: &mut OwnedReadHalf, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Runs `work` unless the client closes the connection first (then `None`).
async fn unless_client_gone<T>(
    reader: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        out = work => Some(out),
        () = client_gone(reader, buf) => None,
    }
}

impl Conn {
    /// Reads more bytes into `buf`; `Ok(0)` at EOF.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.reader.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next request, or `None` when the client closed the connection or sent something
    /// that is not HTTP/1.1 (the connection is then dropped).
    async fn read_request(&mut self) -> Option<Parsed> {
        let (head_len, method, target, headers) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut slots);
            match request.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let method = request.method.unwrap_or_default().to_owned();
                    let target = request.path.unwrap_or_default().to_owned();
                    let headers: Vec<(String, String)> = request
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (len, method, target, headers);
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD_BYTES => {
                    if self.fill().await.ok()? == 0 {
                        return None;
                    }
                }
                _ => return None,
            }
        };
        self.buf.drain(..head_len);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            self.read_chunked_body().await?
        } else {
            let length: usize = match header("content-length") {
                Some(v) => v.parse().ok()?,
                None => 0,
            };
            if length > MAX_BODY_BYTES {
                return None;
            }
            while self.buf.len() < length {
                if self.fill().await.ok()? == 0 {
                    return None;
                }
            }
            self.buf.drain(..length).collect()
        };
        Some(Parsed {
            method,
            target,
            headers,
            body,
        })
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Some(line);
            }
            if self.buf.len() > MAX_HEAD_BYTES || self.fill().await.ok()? == 0 {
                return None;
            }
        }
    }

    async fn read_chunked_body(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size_line = self.read_line().await?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16).ok()?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line().await?.is_empty() {}
                return Some(body);
            }
            if body.len() + size > MAX_BODY_BYTES {
                return None;
            }
            while self.buf.len() < size + 2 {
                if self.fill().await.ok()? == 0 {
                    return None;
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Writes `bytes` unless the client is gone; false when it is.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        let Conn {
            reader,
            writer,
            buf,
            ..
        } = self;
        matches!(
            unless_client_gone(reader, buf, writer.write_all(bytes)).await,
            Some(Ok(()))
        )
    }

    /// Writes the last bytes of a response. A model call is counted as completed *before* the
    /// write, so that a client which has read the whole response always sees it counted; the
    /// count is taken back if the write fails.
    async fn finish(&mut self, bytes: &[u8]) -> Outcome {
        if self.model_call {
            self.shared
                .counters
                .completed
                .fetch_add(1, Ordering::SeqCst);
        }
        if self.send(bytes).await {
            return Outcome::Completed;
        }
        if self.model_call {
            self.shared
                .counters
                .completed
                .fetch_sub(1, Ordering::SeqCst);
        }
        Outcome::Aborted
    }

    /// Waits `duration` unless the client leaves first; false when it does.
    async fn pause(&mut self, duration: Duration) -> bool {
        if duration.is_zero() {
            return true;
        }
        let Conn { reader, buf, .. } = self;
        unless_client_gone(reader, buf, tokio::time::sleep(duration))
            .await
            .is_some()
    }

    /// Waits for the client to leave.
    async fn hang(&mut self) {
        client_gone(&mut self.reader, &mut self.buf).await;
    }

    /// Closes the connection with a TCP RST (SO_LINGER 0), not a FIN.
    fn reset(self) {
        if let Ok(stream) = self.reader.reunite(self.writer) {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    }
}

struct Parsed {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut conn = Conn {
        reader,
        writer,
        buf: Vec::new(),
        shared: Arc::clone(&shared),
        model_call: false,
    };
    while let Some(parsed) = conn.read_request().await {
        let close_after = parsed.headers.iter().any(|(name, value)| {
            name == "connection" && value.trim().eq_ignore_ascii_case("close")
        });
        match respond(&mut conn, &shared, parsed).await {
            Outcome::Completed if !close_after => {}
            Outcome::Completed | Outcome::Aborted => return,
            Outcome::Reset => {
                conn.reset();
                return;
            }
        }
    }
}

/// What the double will do for one model call, decided when it arrives.
struct Plan {
    text: String,
    delay: Duration,
    chunk_delay: Duration,
    chunks: usize,
    fault: Option<Fault>,
}

async fn respond(conn: &mut Conn, shared: &Shared, parsed: Parsed) -> Outcome {
    let (path, query) = match parsed.target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (parsed.target.clone(), None),
    };
    let endpoint = Endpoint::classify(&path);
    let body = serde_json::from_slice(&parsed.body).unwrap_or(Value::Null);
    let counters = &shared.counters;
    conn.model_call = false;

    // Record, and take what this request needs from the behaviour, under one short lock.
    let (request, answer, plan, models, health) = {
        let mut state = shared.lock();
        let request = RecordedRequest {
            seq: state.log.len(),
            method: parsed.method,
            path,
            query,
            headers: parsed.headers,
            body,
            raw_body: parsed.body,
            endpoint,
        };
        state.log.push(request.clone());
        let behaviour = &state.behaviour;
        let (answer, models, health) = (
            behaviour.answer.clone(),
            behaviour.models.clone(),
            behaviour.health,
        );
        let mut plan = Plan {
            text: String::new(),
            delay: behaviour.delay,
            chunk_delay: behaviour.chunk_delay,
            chunks: behaviour.chunks.max(1),
            fault: None,
        };
        if endpoint.is_model_call() && request.method == "POST" {
            plan.fault = state
                .script
                .pop_front()
                .or_else(|| state.behaviour.fault.clone());
        }
        (request, answer, plan, models, health)
    };

    if endpoint == Endpoint::Unknown {
        let body = error_body(
            Dialect::OpenAi,
            404,
            &format!("no route for {}", request.path),
        );
        return send_json(conn, 404, &body, None).await;
    }
    if request.method == "HEAD" && endpoint.is_probe() {
        // Ollama's own client checks `HEAD /`; answer like GET, without a body.
        counters.probes.fetch_add(1, Ordering::SeqCst);
        let status = if health == Health::Up { 200 } else { 503 };
        let head = response_head(status, "text/plain; charset=utf-8", Some(0), None);
        return if conn.send(head.as_bytes()).await {
            Outcome::Completed
        } else {
            Outcome::Aborted
        };
    }
    if request.method != endpoint.method() {
        let body = error_body(endpoint.dialect(), 405, "method not allowed");
        return send_json(conn, 405, &body, None).await;
    }
    if endpoint.is_probe() {
        counters.probes.fetch_add(1, Ordering::SeqCst);
        return answer_probe(conn, endpoint, &models, health).await;
    }

    counters.requests.fetch_add(1, Ordering::SeqCst);
    conn.model_call = true;
    let mut plan = plan;
    plan.text = match &answer {
        Answer::Text(text) => text.clone(),
        Answer::With(f) => f(&request),
    };
    if plan.fault.is_some() {
        counters.faulted.fetch_add(1, Ordering::SeqCst);
    }
    let outcome = answer_model_call(conn, &request, plan).await;
    match outcome {
        // Counted by `Conn::finish`, before the client could see the end of the response.
        Outcome::Completed => {}
        Outcome::Aborted => {
            counters.aborted.fetch_add(1, Ordering::SeqCst);
        }
        // Counted before `serve_connection` resets the connection.
        Outcome::Reset => {
            counters.resets.fetch_add(1, Ordering::SeqCst);
        }
    }
    outcome
}

async fn answer_probe(
    conn: &mut Conn,
    endpoint: Endpoint,
    models: &[String],
    health: Health,
) -> Outcome {
    if health == Health::Down {
        let body = error_body(endpoint.dialect(), 503, "Loading model");
        return send_json(conn, 503, &body, None).await;
    }
    let body = match endpoint {
        Endpoint::LlamaHealth => json!({ "status": "ok" }),
        Endpoint::OllamaRoot => {
            return send_raw(
                conn,
                200,
                "text/plain; charset=utf-8",
                b"Ollama is running",
                None,
            )
            .await;
        }
        Endpoint::OllamaTags => json!({
            "models": models.iter().map(|name| json!({
                "name": name,
                "model": name,
                "modified_at": "2025-01-01T00:00:00Z",
                "size": 986_061_892u64,
                "digest": "d0c0b3a5d5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b",
                "details": {
                    "format": "gguf",
                    "family": "qwen2",
                    "families": ["qwen2"],
                    "parameter_size": "1.5B",
                    "quantization_level": "Q4_K_M"
                }
            })).collect::<Vec<_>>()
        }),
        _ => json!({
            "object": "list",
            "data": models.iter().map(|name| json!({
                "id": name,
                "object": "model",
                "created": 1_700_000_000u64,
                "owned_by": "pilotfish-double"
            })).collect::<Vec<_>>()
        }),
    };
    send_json(conn, 200, &body, None).await
}

async fn answer_model_call(conn: &mut Conn, request: &RecordedRequest, plan: Plan) -> Outcome {
    let dialect = request.endpoint.dialect();
    if !conn.pause(plan.delay).await {
        return Outcome::Aborted;
    }
    if request.body.is_null() {
        let body = error_body(dialect, 400, "request body is not valid JSON");
        return send_json(conn, 400, &body, None).await;
    }
    if dialect == Dialect::Anthropic {
        if request.header("x-api-key").is_none() {
            let body = error_body(dialect, 401, "x-api-key header is required");
            return send_json(conn, 401, &body, None).await;
        }
        if request.header("anthropic-version").is_none() {
            let body = error_body(dialect, 400, "anthropic-version: header is required");
            return send_json(conn, 400, &body, None).await;
        }
    }
    let streaming = request.wants_stream();
    let usage = Usage {
        input: estimate_tokens(&request.all_input_text()),
        output: estimate_tokens(&plan.text),
    };
    match plan.fault.clone() {
        Some(Fault::Status {
            status,
            body,
            retry_after_secs,
        }) => {
            let retry_after = retry_after_secs.map(|secs| secs.to_string());
            match body {
                Some(body) => {
                    let content_type = if serde_json::from_str::<Value>(&body).is_ok() {
                        "application/json"
                    } else {
                        "text/plain; charset=utf-8"
                    };
                    send_raw(conn, status, content_type, body.as_bytes(), retry_after).await
                }
                None => {
                    let body = error_body(dialect, status, default_message(status));
                    send_json(conn, status, &body, retry_after).await
                }
            }
        }
        Some(Fault::Hang) => {
            conn.hang().await;
            Outcome::Aborted
        }
        Some(Fault::Garbage) => {
            let content_type = if !streaming {
                "application/json"
            } else if dialect == Dialect::Ollama {
                "application/x-ndjson"
            } else {
                "text/event-stream"
            };
            let garbage = b"<html><body>502 Bad Gateway \xff\xfe not json {{{</body></html>\n";
            send_raw(conn, 200, content_type, garbage, None).await
        }
        Some(Fault::StreamError { .. }) if !streaming => {
            let status = if dialect == Dialect::Anthropic {
                529
            } else {
                500
            };
            let body = error_body(dialect, status, default_message(status));
            send_json(conn, status, &body, None).await
        }
        Some(Fault::ResetMidStream { after_chunks }) if !streaming => {
            let body =
                serde_json::to_vec(&full_body(request, &plan.text, usage)).unwrap_or_default();
            let head = response_head(200, "application/json", Some(body.len()), None);
            let cut = if after_chunks == 0 { 0 } else { body.len() / 2 };
            if !conn.send(head.as_bytes()).await || !conn.send(&body[..cut]).await {
                return Outcome::Aborted;
            }
            Outcome::Reset
        }
        fault if streaming => stream_answer(conn, request, &plan, usage, fault).await,
        _ => send_json(conn, 200, &full_body(request, &plan.text, usage), None).await,
    }
}

/// Streams the answer as SSE or NDJSON in HTTP chunked encoding; `fault` may cut it short.
async fn stream_answer(
    conn: &mut Conn,
    request: &RecordedRequest,
    plan: &Plan,
    usage: Usage,
    fault: Option<Fault>,
) -> Outcome {
    let pieces = split_pieces(&plan.text, plan.chunks);
    let events = stream_events(request, &pieces, usage);
    let head = response_head(200, events.content_type, None, None);
    if !conn.send(head.as_bytes()).await {
        return Outcome::Aborted;
    }
    for event in &events.preamble {
        if !conn.send(&http_chunk(event)).await {
            return Outcome::Aborted;
        }
    }
    let cut_after = match fault {
        Some(Fault::ResetMidStream { after_chunks } | Fault::StreamError { after_chunks }) => {
            Some(after_chunks)
        }
        _ => None,
    };
    for (index, event) in events.content.iter().enumerate() {
        if cut_after == Some(index) {
            break;
        }
        if index > 0 && !conn.pause(plan.chunk_delay).await {
            return Outcome::Aborted;
        }
        if !conn.send(&http_chunk(event)).await {
            return Outcome::Aborted;
        }
    }
    match fault {
        Some(Fault::ResetMidStream { .. }) => return Outcome::Reset,
        Some(Fault::StreamError { .. }) => {
            let event = stream_error_event(request.endpoint.dialect());
            if !conn.send(&http_chunk(&event)).await {
                return Outcome::Aborted;
            }
        }
        _ => {
            if !conn.pause(plan.chunk_delay).await {
                return Outcome::Aborted;
            }
            for event in &events.epilogue {
                if !conn.send(&http_chunk(event)).await {
                    return Outcome::Aborted;
                }
            }
        }
    }
    conn.finish(b"0\r\n\r\n").await
}

async fn send_json(
    conn: &mut Conn,
    status: u16,
    body: &Value,
    retry_after: Option<String>,
) -> Outcome {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    send_raw(conn, status, "application/json", &bytes, retry_after).await
}

async fn send_raw(
    conn: &mut Conn,
    status: u16,
    content_type: &str,
    body: &[u8],
    retry_after: Option<String>,
) -> Outcome {
    let mut bytes = response_head(status, content_type, Some(body.len()), retry_after).into_bytes();
    bytes.extend_from_slice(body);
    conn.finish(&bytes).await
}

fn response_head(
    status: u16,
    content_type: &str,
    content_length: Option<usize>,
    retry_after: Option<String>,
) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Unknown",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n");
    match content_length {
        Some(length) => head.push_str(&format!("content-length: {length}\r\n")),
        None => head.push_str("transfer-encoding: chunked\r\ncache-control: no-cache\r\n"),
    }
    if let Some(secs) = retry_after {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn http_chunk(data: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

#[derive(Clone, Copy)]
struct Usage {
    input: u64,
    output: u64,
}

/// About four characters a token, at least one.
fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// Splits `text` into at most `n` non-empty pieces on char boundaries (one empty piece for "").
fn split_pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(n.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Ollama's `created_at`: RFC 3339 in UTC. The double does not need the real date.
fn created_at() -> &'static str {
    "2025-01-01T00:00:00.000000Z"
}

fn request_model(request: &RecordedRequest) -> String {
    request.model().unwrap_or("test-model").to_owned()
}

fn openai_usage(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output
    })
}

fn ollama_stats(usage: Usage) -> Value {
    json!({
        "total_duration": 5_000_000u64,
        "load_duration": 1_000_000u64,
        "prompt_eval_count": usage.input,
        "prompt_eval_duration": 1_000_000u64,
        "eval_count": usage.output,
        "eval_duration": 3_000_000u64
    })
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

fn llama_final(request: &RecordedRequest, content: &str, usage: Usage) -> Value {
    json!({
        "index": 0,
        "content": content,
        "tokens": [],
        "id_slot": 0,
        "stop": true,
        "model": request_model(request),
        "tokens_predicted": usage.output,
        "tokens_evaluated": usage.input,
        "generation_settings": {
            "n_predict": request.body.get("n_predict").cloned().unwrap_or(json!(-1))
        },
        "prompt": "",
        "has_new_line": content.contains('\n'),
        "truncated": false,
        "stop_type": "eos",
        "stopping_word": "",
        "tokens_cached": usage.input,
        "timings": {
            "prompt_n": usage.input,
            "prompt_ms": 1.0,
            "predicted_n": usage.output,
            "predicted_ms": 3.0
        }
    })
}

/// The whole (non-streamed) answer in the endpoint's format.
fn full_body(request: &RecordedRequest, text: &str, usage: Usage) -> Value {
    let model = request_model(request);
    let id = request.seq;
    match request.endpoint {
        Endpoint::OpenAiCompletions => json!({
            "id": format!("cmpl-double-{id}"),
            "object": "text_completion",
            "created": unix_now(),
            "model": model,
            "choices": [{ "text": text, "index": 0, "logprobs": null, "finish_reason": "stop" }],
            "usage": openai_usage(usage)
        }),
        Endpoint::OpenAiChat => json!({
            "id": format!("chatcmpl-double-{id}"),
            "object": "chat.completion",
            "created": unix_now(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": openai_usage(usage)
        }),
        Endpoint::OllamaGenerate => merge(
            json!({
                "model": model,
                "created_at": created_at(),
                "response": text,
                "done": true,
                "done_reason": "stop",
                "context": [1, 2, 3]
            }),
            ollama_stats(usage),
        ),
        Endpoint::OllamaChat => merge(
            json!({
                "model": model,
                "created_at": created_at(),
                "message": { "role": "assistant", "content": text },
                "done": true,
                "done_reason": "stop"
            }),
            ollama_stats(usage),
        ),
        Endpoint::LlamaInfill => llama_final(request, text, usage),
        _ => json!({
            "id": format!("msg_double_{id}"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{ "type": "text", "text": text }],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": { "input_tokens": usage.input, "output_tokens": usage.output }
        }),
    }
}

/// A streamed answer: events before the content, one event per content piece, events after.
/// Each event is the exact text of one SSE event or NDJSON line.
struct StreamEvents {
    content_type: &'static str,
    preamble: Vec<String>,
    content: Vec<String>,
    epilogue: Vec<String>,
}

fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn sse_event(name: &str, value: &Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

fn ndjson(value: &Value) -> String {
    format!("{value}\n")
}

fn stream_events(request: &RecordedRequest, pieces: &[String], usage: Usage) -> StreamEvents {
    let model = request_model(request);
    let id = request.seq;
    let created = unix_now();
    let include_usage = request
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match request.endpoint {
        Endpoint::OpenAiCompletions => {
            let chunk = |text: &str, finish: Value| {
                sse_data(&json!({
                    "id": format!("cmpl-double-{id}"),
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish }]
                }))
            };
            let mut epilogue = vec![chunk("", json!("stop"))];
            if include_usage {
                epilogue.push(sse_data(&json!({
                    "id": format!("cmpl-double-{id}"),
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": openai_usage(usage)
                })));
            }
            epilogue.push("data: [DONE]\n\n".to_owned());
            StreamEvents {
                content_type: "text/event-stream",
                preamble: Vec::new(),
                content: pieces.iter().map(|p| chunk(p, Value::Null)).collect(),
                epilogue,
            }
        }
        Endpoint::OpenAiChat => {
            let chunk = |delta: Value, finish: Value| {
                sse_data(&json!({
                    "id": format!("chatcmpl-double-{id}"),
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]
                }))
            };
            let mut epilogue = vec![chunk(json!({}), json!("stop"))];
            if include_usage {
                epilogue.push(sse_data(&json!({
                    "id": format!("chatcmpl-double-{id}"),
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": openai_usage(usage)
                })));
            }
            epilogue.push("data: [DONE]\n\n".to_owned());
            StreamEvents {
                content_type: "text/event-stream",
                preamble: vec![chunk(
                    json!({ "role": "assistant", "content": "" }),
                    Value::Null,
                )],
                content: pieces
                    .iter()
                    .map(|p| chunk(json!({ "content": p }), Value::Null))
                    .collect(),
                epilogue,
            }
        }
        Endpoint::OllamaGenerate | Endpoint::OllamaChat => {
            let generate = request.endpoint == Endpoint::OllamaGenerate;
            let line = |text: &str| {
                if generate {
                    json!({ "model": model, "created_at": created_at(), "response": text, "done": false })
                } else {
                    json!({
                        "model": model,
                        "created_at": created_at(),
                        "message": { "role": "assistant", "content": text },
                        "done": false
                    })
                }
            };
            let mut last = merge(line(""), ollama_stats(usage));
            last["done"] = json!(true);
            last["done_reason"] = json!("stop");
            if generate {
                last["context"] = json!([1, 2, 3]);
            }
            StreamEvents {
                content_type: "application/x-ndjson",
                preamble: Vec::new(),
                content: pieces.iter().map(|p| ndjson(&line(p))).collect(),
                epilogue: vec![ndjson(&last)],
            }
        }
        Endpoint::LlamaInfill => StreamEvents {
            content_type: "text/event-stream",
            preamble: Vec::new(),
            content: pieces
                .iter()
                .enumerate()
                .map(|(n, p)| {
                    sse_data(&json!({
                        "index": 0,
                        "content": p,
                        "tokens": [],
                        "stop": false,
                        "id_slot": -1,
                        "tokens_predicted": n + 1,
                        "tokens_evaluated": usage.input
                    }))
                })
                .collect(),
            epilogue: vec![sse_data(&llama_final(request, "", usage))],
        },
        _ => StreamEvents {
            content_type: "text/event-stream",
            preamble: vec![
                sse_event(
                    "message_start",
                    &json!({
                        "type": "message_start",
                        "message": {
                            "id": format!("msg_double_{id}"),
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [],
                            "stop_reason": null,
                            "stop_sequence": null,
                            "usage": { "input_tokens": usage.input, "output_tokens": 1 }
                        }
                    }),
                ),
                sse_event(
                    "content_block_start",
                    &json!({
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": { "type": "text", "text": "" }
                    }),
                ),
                sse_event("ping", &json!({ "type": "ping" })),
            ],
            content: pieces
                .iter()
                .map(|p| {
                    sse_event(
                        "content_block_delta",
                        &json!({
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": { "type": "text_delta", "text": p }
                        }),
                    )
                })
                .collect(),
            epilogue: vec![
                sse_event(
                    "content_block_stop",
                    &json!({ "type": "content_block_stop", "index": 0 }),
                ),
                sse_event(
                    "message_delta",
                    &json!({
                        "type": "message_delta",
                        "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                        "usage": { "output_tokens": usage.output }
                    }),
                ),
                sse_event("message_stop", &json!({ "type": "message_stop" })),
            ],
        },
    }
}

fn default_message(status: u16) -> &'static str {
    match status {
        400 => "invalid request",
        401 => "invalid api key",
        404 => "model not found",
        429 => "rate limit exceeded",
        503 => "service unavailable",
        529 => "Overloaded",
        _ => "internal server error",
    }
}

/// An error body in the provider's format.
fn error_body(dialect: Dialect, status: u16, message: &str) -> Value {
    match dialect {
        Dialect::OpenAi => {
            let kind = match status {
                400 | 404 | 405 => "invalid_request_error",
                401 => "authentication_error",
                429 => "rate_limit_exceeded",
                _ => "server_error",
            };
            json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })
        }
        Dialect::Ollama => json!({ "error": message }),
        Dialect::LlamaCpp => {
            let kind = match status {
                400 | 404 | 405 => "invalid_request_error",
                401 => "authentication_error",
                503 => "unavailable_error",
                _ => "server_error",
            };
            json!({ "error": { "code": status, "message": message, "type": kind } })
        }
        Dialect::Anthropic => {
            let kind = match status {
                400 | 405 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({ "type": "error", "error": { "type": kind, "message": message } })
        }
    }
}

/// The in-band error a provider sends when generation fails after the stream began.
fn stream_error_event(dialect: Dialect) -> String {
    match dialect {
        Dialect::Anthropic => sse_event(
            "error",
            &json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
        ),
        Dialect::Ollama => {
            ndjson(&json!({ "error": "an error was encountered while running the model" }))
        }
        Dialect::OpenAi => sse_data(
            &json!({ "error": { "message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null } }),
        ),
        Dialect::LlamaCpp => sse_data(
            &json!({ "error": { "code": 500, "message": "generation failed", "type": "server_error" } }),
        ),
    }
}
