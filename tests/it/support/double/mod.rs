//! A model-server double: one HTTP/1.1 server on 127.0.0.1 that speaks the real wire formats of
//! OpenAI-compatible servers, Ollama, llama.cpp's `llama-server` and Anthropic, so that the real
//! Pilotfish binary can be tested and benchmarked without knowing it talks to a double.
//!
//! It owns the wire formats, the scripted behaviour (answer, delays, faults), the record of every
//! request and the counters that tests assert on. It must not depend on the test harness, and it
//! must not share a runtime with its caller: it runs its own single-threaded tokio runtime on its
//! own thread, so it works the same from `#[test]`, `#[tokio::test]` and a bench's `fn main`.
//!
//! The rooms, like `src/providers`: [`behaviour`] (what a test scripts: answer, delays, faults),
//! [`request`] (endpoints and the record of a request), `http` (the hand-written HTTP/1.1
//! server), `serve` (one request: probe or model call, faults applied), `flood` (answers
//! too big or endless), `wire` (what the wire
//! formats share, and the switch between them), and one file per wire format: `openai`,
//! `ollama`, `llamacpp`, `anthropic`.
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

mod anthropic;
pub mod behaviour;
mod flood;
mod http;
mod llamacpp;
mod ollama;
mod openai;
pub mod request;
mod serve;
mod wire;

// The bench (through `#[path]`) uses only part of this API, like the rest of `support`.
#[allow(unused_imports)]
pub use behaviour::{Behaviour, Fault, Health};
#[allow(unused_imports)]
pub use request::{Endpoint, RecordedRequest};

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Default)]
struct Counters {
    requests: AtomicUsize,
    completed: AtomicUsize,
    aborted: AtomicUsize,
    faulted: AtomicUsize,
    resets: AtomicUsize,
    probes: AtomicUsize,
    dropped: AtomicUsize,
}

struct State {
    behaviour: Behaviour,
    script: VecDeque<Fault>,
    log: Vec<RecordedRequest>,
}

struct Shared {
    state: Mutex<State>,
    counters: Counters,
    /// The port is open (set by the double's thread).
    listening: AtomicBool,
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
    control: watch::Sender<Listening>,
    thread: Option<JoinHandle<()>>,
}

/// What the double's thread should do with its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listening {
    Serve,
    /// Closed: connecting is refused.
    Refuse,
    Stop,
}

/// Binds `addr` again after the double stopped listening (the port stays free meanwhile:
/// it was ours, and the kernel hands out ports in sequence).
fn rebind(addr: SocketAddr) -> Option<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).ok()?;
    listener.set_nonblocking(true).ok()?;
    Some(listener)
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
            listening: AtomicBool::new(false),
        });
        let (control, mut wanted) = watch::channel(Listening::Serve);
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("model-double-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("model double runtime");
                runtime.block_on(async move {
                    let mut listener = Some(listener);
                    loop {
                        let state = *wanted.borrow_and_update();
                        match state {
                            Listening::Stop => return,
                            Listening::Refuse => drop(listener.take()),
                            Listening::Serve => {
                                let bound = listener.take().or_else(|| rebind(addr));
                                let Some(bound) = bound else { return };
                                let bound = TcpListener::from_std(bound).expect("tokio listener");
                                server_shared.listening.store(true, Ordering::SeqCst);
                                tokio::select! {
                                    _ = wanted.changed() => {}
                                    () = http::accept_loop(bound, Arc::clone(&server_shared)) => {}
                                }
                                // The accept loop and every connection it served are gone.
                                server_shared.listening.store(false, Ordering::SeqCst);
                                continue;
                            }
                        }
                        if wanted.changed().await.is_err() {
                            return;
                        }
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })
            .expect("spawn the model double thread");
        let double = ModelDouble {
            addr,
            shared,
            control,
            thread: Some(thread),
        };
        double.wait_listening(true);
        double
    }

    /// Stops listening and closes every connection, like a model server that went down:
    /// connecting is refused until [`ModelDouble::resume_listening`]. Returns once it holds.
    pub fn stop_listening(&self) {
        let _ = self.control.send(Listening::Refuse);
        self.wait_listening(false);
    }

    /// Listens again on the same port (after [`ModelDouble::stop_listening`]).
    pub fn resume_listening(&self) {
        let _ = self.control.send(Listening::Serve);
        self.wait_listening(true);
    }

    fn wait_listening(&self, listening: bool) {
        let reached = super::wait_until(Duration::from_secs(5), || {
            self.shared.listening.load(Ordering::SeqCst) == listening
        });
        assert!(
            reached,
            "the model double did not switch to listening={listening}"
        );
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

    /// Requests dropped unanswered on a kept connection (`Behaviour::drops_kept_connections`):
    /// neither recorded nor counted as requests.
    pub fn dropped(&self) -> usize {
        self.shared.counters.dropped.load(Ordering::SeqCst)
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
            &counters.dropped,
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
        let _ = self.control.send(Listening::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
