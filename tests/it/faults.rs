//! The fault battery (issue 11): every way a model server misbehaves, for each task — an
//! inline completion and a code action — on fresh servers with a new user's settings (the
//! default completion budget, the default 30 s model timeout). For each pair:
//!
//! - a model that *fails* (refuses, 500, 429, 529, resets, floods, garbage, 100 MB): the
//!   completion is answered empty after one call — no retry, not held — and with a next model
//!   in the chain the editor gets that model's suggestion instead;
//! - a model that *hangs* (before the headers, mid-stream, trickling forever): the completion
//!   is held while it is the document's newest request, up to the model's timeout, then
//!   answered empty with the model's connection dropped; a newer request or `$/cancelRequest`
//!   ends it at once, and (for a model that was answering fast) drops its call;
//! - an action gets a clear one-line error naming what went wrong, within its deadline (or,
//!   where a stream stopped or trickled after some text, that text marked cut where the
//!   stream went quiet, or at the time the model had to write its answer);
//! - the server keeps serving, its memory stays bounded (peak RSS, from /proc), and once the
//!   model is healthy the next request works (waiting only as long as the fault asked:
//!   Retry-After, the 2 s probe of a local server that was down, or the breaker's cooldown once
//!   an action's retries opened it).
//!
//! Completion goes to Ollama's `/api/generate` (the built-in default's wire), actions to an
//! OpenAI-compatible `/v1/chat/completions` (llama.cpp, vLLM): the same double serves both.
//!
//! One exception to the defaults: where a request can only end by hitting a limit (a hang,
//! for the completion held to the model's timeout and for an action), the model's
//! `timeout_ms` is [`HIT_TIMEOUT_MS`] instead of 30 s and the action model's
//! `max_output_tokens` is [`HIT_MAX_TOKENS`] instead of 1,024 (a model that writes is given a
//! quarter second a token it was asked for), so the test hits them in a second or two. The
//! newer-request and cancel checks run on the default timeout.
//!
//! Counts and contents are asserted; times only where a fault makes the difference seconds
//! wide (held to the timeout or not). `cargo test --test it faults:: -- --nocapture` prints
//! the tables of figures (the README's "Reliability" section).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pilotfish::resilience::OPEN_COOLDOWN;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::{assert_empty, calls_not_after, peak_rss_kb, suggestion};
use crate::support::double::{Behaviour, Fault, ModelDouble};
use crate::support::lsp::{LspClient, RequestId, mark, position};

/// The default model timeout (`timeout_ms`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The model's timeout where a request can only end by hitting it (see the header).
const HIT_TIMEOUT_MS: u64 = 1_500;
/// The action model's output-token limit there: room for [`EXPLANATION`] (the double counts
/// four characters a token), and a stream that trickles forever is cut 1.5 s after its time
/// to begin.
const HIT_MAX_TOKENS: u32 = 6;
/// What the client may add to the server's deadline: pipes, JSON, a shared machine. It only
/// has to tell "ended at the deadline" from "waited for something else" (seconds).
const CLIENT_SLACK: Duration = Duration::from_secs(3);
/// Peak resident memory the server may reach in any case. The server idles at ~20 MB; an
/// answer is read to 8 MB at most. Without that limit the 100 MB answer alone costs 300 MB.
const RSS_BOUND_KB: u64 = 96 * 1024;
/// How long recovery may take beyond what the fault asked for.
const RECOVERY_SLACK: Duration = Duration::from_secs(4);
/// Upper bound for asynchronous effects; tests wait on conditions, not on this time.
const WAIT: Duration = Duration::from_secs(10);
/// Cases run at once (each has its own servers and doubles).
const PARALLEL: usize = 3;

const ANSWER: &str = "a + b";
const BACKUP_ANSWER: &str = "b + a";
const EXPLANATION: &str = "Adds two numbers.";

/// How the model server misbehaves.
#[derive(Clone, Debug)]
enum Misbehaviour {
    /// Nothing listens: the server went down (its open connections are closed too).
    Refuse,
    Fault(Fault),
}

/// How a faulty model call ends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    /// With an error, at once: nothing to wait for.
    Fails,
    /// Never by itself: the model's timeout, a newer request or a cancel ends it.
    Hangs,
}

/// One row of the battery.
struct Case {
    name: &'static str,
    misbehaviour: Misbehaviour,
    ends: Ends,
    /// Words of which one must be in the action's error (what went wrong, in one line).
    action_error: &'static [&'static str],
    /// How long the fault keeps the endpoint out after a completion request and after an
    /// action (Retry-After, the probe of a local server found down, the breaker's cooldown),
    /// before the next request can work.
    stays_away: [Duration; 2],
}

impl Case {
    fn stays_away(&self, task: Task) -> Duration {
        self.stays_away[task as usize]
    }
}

/// A model that completes with [`ANSWER`] and explains with [`EXPLANATION`].
fn healthy() -> Behaviour {
    Behaviour::answer_with(|request| {
        if request.path.ends_with("/chat/completions") {
            EXPLANATION.to_owned()
        } else {
            ANSWER.to_owned()
        }
    })
}

fn fault(fault: Fault) -> Misbehaviour {
    Misbehaviour::Fault(fault)
}

fn cases() -> Vec<Case> {
    const NOW: Duration = Duration::ZERO;
    let hundred_mb = 100 << 20;
    // While a local model is down it is probed every 2 s.
    let probe = Duration::from_secs(2);
    let retry_after = Duration::from_secs(1);
    let fails = |name, misbehaviour, action_error, stays_away| Case {
        name,
        misbehaviour,
        ends: Ends::Fails,
        action_error,
        stays_away,
    };
    let hangs = |name, fault, action_error| Case {
        name,
        misbehaviour: Misbehaviour::Fault(fault),
        ends: Ends::Hangs,
        action_error,
        stays_away: [NOW, NOW],
    };
    vec![
        fails(
            "refuses connections",
            Misbehaviour::Refuse,
            // Found by the call, or by the health probe before it.
            &["cannot reach", "health probe failing"],
            [probe, probe],
        ),
        // An action retries a server error; its third failed call opens the breaker.
        fails(
            "HTTP 500",
            fault(Fault::status(500)),
            &["HTTP 500"],
            [NOW, OPEN_COOLDOWN],
        ),
        fails(
            "429 + Retry-After: 1",
            fault(Fault::rate_limited(1)),
            &["HTTP 429"],
            [retry_after, retry_after],
        ),
        fails(
            "529 overloaded + Retry-After: 1",
            fault(Fault::Status {
                status: 529,
                body: None,
                retry_after_secs: Some(1),
            }),
            &["HTTP 529"],
            [retry_after, retry_after],
        ),
        hangs("hangs before the headers", Fault::Hang, &["no answer from"]),
        hangs(
            "hangs mid-stream",
            Fault::HangMidStream { after_chunks: 1 },
            &["stalled", "no answer from"],
        ),
        hangs(
            "trickles forever (a token every 50 ms)",
            Fault::Trickle {
                every: Duration::from_millis(50),
            },
            &["no answer from"],
        ),
        fails(
            "resets mid-stream",
            fault(Fault::ResetMidStream { after_chunks: 1 }),
            &["broke off", "unreadable answer"],
            [NOW, NOW],
        ),
        fails(
            "streams forever, flat out",
            fault(Fault::Endless),
            &["larger than 8 MB"],
            [NOW, NOW],
        ),
        fails(
            "garbage body",
            fault(Fault::Garbage),
            &["unreadable answer"],
            [NOW, NOW],
        ),
        fails(
            "answers 100 MB",
            fault(Fault::Huge { bytes: hundred_mb }),
            &["larger than 8 MB"],
            [NOW, NOW],
        ),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Task {
    Completion = 0,
    Action = 1,
}

/// What one (fault, task) pair showed.
#[derive(Default)]
struct Figures {
    /// Time from the request to its (empty or error) answer.
    answered_in: Duration,
    /// The action's error, or what the completion got.
    answer: String,
    /// Model calls the faulty double received for that request.
    calls: usize,
    /// Completion: what a next model in the chain, or a newer request and a cancel, did.
    second: String,
    /// Requests until the healthy model served one, and how long that took.
    recovery: (usize, Duration),
    peak_rss_kb: u64,
}

/// A server whose completion and action models are both served by `double`, with the
/// defaults a new user gets except the limits where a case must hit them. Python completes on
/// that model alone; Rust falls back to `backup`, a healthy model on another double.
struct Bench {
    double: ModelDouble,
    backup: ModelDouble,
    lsp: LspClient,
    _dir: TempDir,
}

impl Bench {
    fn start(timeout_ms: Option<u64>) -> Bench {
        let double = ModelDouble::start(healthy());
        let backup = ModelDouble::start(Behaviour::answer(BACKUP_ANSWER));
        let dir = tempfile::tempdir().expect("temp workspace");
        let timeout = timeout_ms.map_or(String::new(), |ms| format!("timeout_ms = {ms}\n"));
        let limits = timeout_ms.map_or(String::new(), |ms| {
            format!("timeout_ms = {ms}\nmax_output_tokens = {HIT_MAX_TOKENS}\n")
        });
        let config = format!(
            "[models.local]\nprovider = \"ollama\"\nurl = \"{url}\"\nmodel = \"test-model\"\nfim = \"native\"\n{timeout}\n\
             [models.backup]\nprovider = \"ollama\"\nurl = \"{backup}\"\nmodel = \"test-model\"\nfim = \"native\"\n\n\
             [models.chat]\nprovider = \"openai\"\nurl = \"{url}/v1\"\nmodel = \"test-model\"\n{limits}\n\
             [routes]\ncomplete = [\"local\"]\nexplain = [\"chat\"]\nrefactor = [\"chat\"]\nreview = [\"chat\"]\n\n\
             [[rules]]\ntask = \"complete\"\nwhen = {{ languages = [\"rust\"] }}\nuse = [\"local\", \"backup\"]\n",
            url = double.base_url(),
            backup = backup.base_url(),
        );
        std::fs::write(dir.path().join("pilotfish.toml"), config).expect("write the config");
        let lsp = LspClient::spawn(&["--config", "pilotfish.toml"], &[], dir.path())
            .with_timeout(Duration::from_secs(40));
        lsp.initialize(json!({}), Value::Null);
        // The warm-up probe has opened a pooled connection: the fault meets a running server.
        assert!(
            double.wait_for(|d| d.probes() >= 1, WAIT),
            "{}",
            double.summary()
        );
        Bench {
            double,
            backup,
            lsp,
            _dir: dir,
        }
    }

    fn break_model(&self, misbehaviour: &Misbehaviour) {
        match misbehaviour {
            Misbehaviour::Refuse => self.double.stop_listening(),
            Misbehaviour::Fault(fault) => self.double.set_behaviour(healthy().fault(fault.clone())),
        }
    }

    fn heal(&self, misbehaviour: &Misbehaviour) {
        match misbehaviour {
            Misbehaviour::Refuse => self.double.resume_listening(),
            Misbehaviour::Fault(_) => self.double.set_behaviour(healthy()),
        }
    }

    /// Opens the `$0`-marked `fixture` as `name`; the URI and the cursor.
    fn open(&self, name: &str, language: &str, fixture: &str) -> (String, u32, u32) {
        let (text, line, col) = mark(fixture);
        let uri = self.lsp.uri(name);
        self.lsp.open(&uri, language, &text);
        (uri, line, col)
    }

    /// Sends an inline completion request at (line, col) of `uri` without waiting.
    fn ask(&self, uri: &str, line: u32, col: u32) -> RequestId {
        self.lsp.request(
            "textDocument/inlineCompletion",
            json!({
                "textDocument": { "uri": uri },
                "position": position(line, col),
                "context": { "triggerKind": 2 }
            }),
        )
    }

    /// The successful answer to an inline completion request.
    fn answer(&self, id: RequestId) -> Value {
        self.lsp
            .response(id)
            .unwrap_or_else(|e| self.lsp.fail(&format!("inlineCompletion failed: {e:?}")))
    }

    /// Opens a new document `n` (Python: the faulty model alone; Rust: then the backup) and
    /// asks for a completion at its end; the answer and how long it took.
    fn complete(&self, n: usize, language: &str) -> (Value, Duration) {
        let (uri, line, col) = if language == "rust" {
            self.open(
                &format!("add_{n}.rs"),
                "rust",
                &format!("fn add_{n}(a: i32, b: i32) -> i32 {{\n    $0\n}}\n"),
            )
        } else {
            self.open(
                &format!("add_{n}.py"),
                "python",
                &format!("def add_{n}(a, b):\n    return $0\n"),
            )
        };
        let started = Instant::now();
        let result = self.answer(self.ask(&uri, line, col));
        (result, started.elapsed())
    }

    /// Runs Explain on a new document `n`; its result or error and how long it took.
    fn explain(&self, n: usize) -> (Result<Value, String>, Duration) {
        let (uri, line, col) = self.open(
            &format!("add_{n}.rs"),
            "rust",
            &format!("fn add_{n}(a: i32, b: i32) -> i32 {{\n    a + b$0\n}}\n"),
        );
        let started = Instant::now();
        let result = self
            .lsp
            .request_and_wait(
                "workspace/executeCommand",
                json!({
                    "command": "pilotfish.explain",
                    "arguments": [{ "uri": uri, "position": position(line, col) }]
                }),
            )
            .map_err(|e| e.message);
        (result, started.elapsed())
    }

    /// Asks until the healthy model serves a request (or `within` passes): the number of
    /// requests and the time it took. Each request is on a new document, as a user moving on.
    fn recover(&self, task: Task, within: Duration) -> Option<(usize, Duration)> {
        let started = Instant::now();
        for n in 1.. {
            let served = match task {
                Task::Completion => {
                    suggestion(&self.complete(100 + n, "python").0).as_deref() == Some(ANSWER)
                }
                Task::Action => self
                    .explain(100 + n)
                    .0
                    .is_ok_and(|result| result["markdown"] == EXPLANATION),
            };
            if served {
                return Some((n, started.elapsed()));
            }
            if started.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Heals the model and checks the server recovers, within memory; adds what it found to
    /// `figures` and `problems`. Shuts the server down when all went well.
    fn finish(&self, case: &Case, task: Task, figures: &mut Figures, problems: &mut Vec<String>) {
        if !self.lsp.is_running() {
            problems.push("the server exited".to_owned());
            return;
        }
        self.heal(&case.misbehaviour);
        let within = case.stays_away(task) + RECOVERY_SLACK;
        match self.recover(task, within) {
            Some(recovery) => figures.recovery = figures.recovery.max(recovery),
            None => problems.push(format!(
                "the healthy model was not served within {within:?}: {}",
                self.double.summary()
            )),
        }
        let peak = peak_rss_kb(self.lsp.pid());
        figures.peak_rss_kb = figures.peak_rss_kb.max(peak);
        if peak > RSS_BOUND_KB {
            problems.push(format!("peak RSS {peak} KB > {RSS_BOUND_KB} KB"));
        }
        if problems.is_empty() {
            self.lsp.shutdown_and_exit();
        }
    }
}

/// A completion against a model that fails: empty after one call, not held; with a next
/// model, that model's suggestion.
fn completion_fails(case: &Case, figures: &mut Figures, problems: &mut Vec<String>) {
    let bench = Bench::start(None);
    bench.break_model(&case.misbehaviour);
    let (result, took) = bench.complete(0, "python");
    figures.answered_in = took;
    figures.calls = bench.double.requests();
    figures.answer = "empty".to_owned();
    if suggestion(&result).is_some() {
        problems.push(format!("the completion answered {result}"));
    }
    if figures.calls > 1 {
        problems.push(format!("{} calls: the completion retried", figures.calls));
    }
    if took >= DEFAULT_TIMEOUT {
        problems.push(format!("the empty completion was held for {took:?}"));
    }
    bench.finish(case, Task::Completion, figures, problems);

    // The same fault with a next model in the chain (a fresh server: nothing learnt).
    let bench = Bench::start(None);
    bench.break_model(&case.misbehaviour);
    let (result, _) = bench.complete(0, "rust");
    // The faulty model's calls for the request, not the prefetch after the suggestion.
    let calls = calls_not_after(&bench.double, &[BACKUP_ANSWER]);
    match suggestion(&result) {
        Some(text) if text == BACKUP_ANSWER && calls <= 1 => {
            let plural = if calls == 1 { "" } else { "s" };
            figures.second =
                format!("the next model's suggestion ({calls} call{plural} to this one)");
        }
        _ => problems.push(format!(
            "with a next model: {result} after {calls} calls to the faulty one; backup: {}",
            bench.backup.summary()
        )),
    }
    if problems.is_empty() {
        bench.lsp.shutdown_and_exit();
    }
}

/// A completion against a model that hangs: held until the model's timeout (short here:
/// hitting it is the point), then empty, the connection dropped; on the default timeout, a
/// newer request ends it at once, and `$/cancelRequest` ends the newer one at once.
fn completion_hangs(case: &Case, figures: &mut Figures, problems: &mut Vec<String>) {
    let hit = Duration::from_millis(HIT_TIMEOUT_MS);
    let bench = Bench::start(Some(HIT_TIMEOUT_MS));
    bench.break_model(&case.misbehaviour);
    let (result, took) = bench.complete(0, "python");
    figures.answered_in = took;
    figures.calls = bench.double.requests();
    figures.answer = format!("held, then empty at timeout_ms = {HIT_TIMEOUT_MS}");
    assert_empty(&result);
    if took < hit {
        problems.push(format!(
            "answered after {took:?}, before the model's timeout"
        ));
    }
    if took > hit + CLIENT_SLACK {
        problems.push(format!(
            "answered after {took:?}, long past the model's timeout"
        ));
    }
    if figures.calls != 1 {
        problems.push(format!("{} calls for one request", figures.calls));
    }
    if !bench.double.wait_for(|d| d.aborted() == 1, WAIT) {
        problems.push(format!(
            "the connection was not dropped at the timeout: {}",
            bench.double.summary()
        ));
    }
    bench.finish(case, Task::Completion, figures, problems);

    // With the default timeout, on a model that answered fast until it hung: a newer request
    // elsewhere ends the held one, then a cancel ends the newer one; each drops its model
    // call. (The call of a model measured slow, or not measured yet, outlives a cancel for
    // the user typing along it, until an edit leaves it nothing to serve: completion.rs.)
    let bench = Bench::start(None);
    let (measured, _) = bench.complete(50, "python");
    let after_it = format!("return {ANSWER}");
    let settled = bench.double.wait_for(
        |d| d.in_flight() == 0 && crate::harness::calls_at(d, &after_it) == 1,
        WAIT,
    );
    if suggestion(&measured).as_deref() != Some(ANSWER) || !settled {
        problems.push(format!("the model was not measured: {measured}"));
    }
    let (calls, aborted) = (bench.double.requests(), bench.double.aborted());
    bench.break_model(&case.misbehaviour);
    let (text, line, col) =
        mark("def add(a, b):\n    return $0\n\n\ndef sub(a, b):\n    return \n");
    let uri = bench.lsp.uri("two.py");
    bench.lsp.open(&uri, "python", &text);
    let held = bench.ask(&uri, line, col);
    let in_flight = |n| {
        bench
            .double
            .wait_for(|d| d.requests() == calls + n && d.in_flight() == 1, WAIT)
    };
    if !in_flight(1) {
        problems.push(format!("no model call: {}", bench.double.summary()));
    }
    let started = Instant::now();
    let newer = bench.ask(&uri, line + 4, col);
    let superseded = bench.answer(held);
    let superseded_in = started.elapsed();
    if suggestion(&superseded).is_some() {
        problems.push(format!("the superseded request answered {superseded}"));
    }
    let dropped = |n| bench.double.wait_for(|d| d.aborted() == aborted + n, WAIT);
    if !dropped(1) || !in_flight(2) {
        problems.push(format!(
            "a newer request: the held call was not dropped, or the newer one not made: {}",
            bench.double.summary()
        ));
    }
    let started = Instant::now();
    bench.lsp.cancel(newer);
    let cancelled = bench.lsp.response(newer);
    let cancelled_in = started.elapsed();
    match &cancelled {
        Err(error) if error.code == -32800 => {}
        Ok(result) if suggestion(result).is_none() => {}
        other => problems.push(format!("the cancelled request answered {other:?}")),
    }
    if !dropped(2) {
        problems.push(format!(
            "the cancelled request's call was not dropped: {}",
            bench.double.summary()
        ));
    }
    if bench.double.completed() != calls || superseded_in.max(cancelled_in) >= DEFAULT_TIMEOUT {
        problems.push("the newer request or the cancel waited for the model".to_owned());
    }
    figures.second = format!(
        "newer request: empty in {} ms; $/cancelRequest: in {} ms; both calls dropped",
        superseded_in.as_millis(),
        cancelled_in.as_millis()
    );
    bench.finish(case, Task::Completion, figures, problems);
}

/// An action: a clear one-line error within its deadline (the model's timeout, short where
/// the fault can end nowhere else) — or, where a stream stopped or trickled after some text,
/// that text, marked cut where it went quiet or at the time the model had to write it.
fn action(case: &Case, figures: &mut Figures, problems: &mut Vec<String>) {
    let timeout_ms = (case.ends == Ends::Hangs).then_some(HIT_TIMEOUT_MS);
    let bench = Bench::start(timeout_ms);
    bench.break_model(&case.misbehaviour);
    let (result, took) = bench.explain(0);
    figures.answered_in = took;
    figures.calls = bench.double.requests();
    let timeout = timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    // A model that has begun writes on, a quarter second a token it was asked for.
    let deadline = match timeout_ms {
        Some(_) => timeout + Duration::from_millis(250) * HIT_MAX_TOKENS,
        None => timeout,
    };
    if took > deadline + CLIENT_SLACK {
        problems.push(format!("the action took {took:?} (deadline {deadline:?})"));
    }
    match result {
        Ok(result) => {
            let markdown = result["markdown"].as_str().unwrap_or_default();
            let quiet = format!(
                "answer cut where the model server went quiet: nothing came for {} s",
                timeout.as_secs_f64()
            );
            let writing = format!(
                "answer cut at the {} s time limit, still being written",
                deadline.as_secs_f64()
            );
            let cut = [quiet, writing]
                .into_iter()
                .find(|note| markdown.contains(note));
            if let Some(note) =
                cut.filter(|_| case.ends == Ends::Hangs && !markdown.starts_with("\n"))
            {
                figures.answer = format!("the text that arrived, marked \"{note}\"");
            } else {
                problems.push(format!("the action answered {result}"));
            }
        }
        Err(message) => {
            if !message.contains("no model")
                || !case.action_error.iter().any(|w| message.contains(w))
            {
                problems.push(format!("unclear action error: {message}"));
            }
            if message.contains('\n') {
                problems.push(format!("the error is not one line: {message:?}"));
            }
            figures.answer = message;
        }
    }
    bench.finish(case, Task::Action, figures, problems);
}

/// Runs one (fault, task) pair; a list of what went wrong, or the figures.
fn run_case(case: &Case, task: Task) -> Result<Figures, String> {
    let mut figures = Figures::default();
    let mut problems = Vec::new();
    match (task, case.ends) {
        (Task::Completion, Ends::Fails) => completion_fails(case, &mut figures, &mut problems),
        (Task::Completion, Ends::Hangs) => completion_hangs(case, &mut figures, &mut problems),
        (Task::Action, _) => action(case, &mut figures, &mut problems),
    }
    if problems.is_empty() {
        Ok(figures)
    } else {
        Err(problems.join("; "))
    }
}

/// `text` with every `http://…` address shortened to `URL`, for the table.
fn without_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.starts_with("http://") {
                "URL"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every case for `task`, `PARALLEL` at a time; prints the table and fails with every
/// problem found.
fn battery(task: Task) {
    let cases = cases();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Figures, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_case(case, task)
                    }))
                    .unwrap_or_else(|_| Err("panicked (see above)".to_owned()));
                    results.lock().unwrap().push((i, outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut table = match task {
        Task::Completion => format!(
            "\nCompletion × fault (default budget, default timeout {DEFAULT_TIMEOUT:?}):\n\
             | fault | model calls | the request | answered in | next model / newer request, cancel | next healthy request | peak RSS |\n\
             |---|---|---|---|---|---|---|\n"
        ),
        Task::Action => format!(
            "\nAction × fault (default timeout {DEFAULT_TIMEOUT:?}):\n\
             | fault | model calls | answered in | the error | next healthy request | peak RSS |\n\
             |---|---|---|---|---|---|\n"
        ),
    };
    let mut failures = Vec::new();
    for (i, outcome) in &results {
        let case = &cases[*i];
        let f = match outcome {
            Ok(f) => f,
            Err(problem) => {
                failures.push(format!("{}: {problem}", case.name));
                continue;
            }
        };
        let recovery = format!("#{} after {} ms", f.recovery.0, f.recovery.1.as_millis());
        let _ = match task {
            Task::Completion => writeln!(
                table,
                "| {} | {} | {} | {} ms | {} | {recovery} | {} MB |",
                case.name,
                f.calls,
                f.answer,
                f.answered_in.as_millis(),
                f.second,
                f.peak_rss_kb / 1024
            ),
            Task::Action => writeln!(
                table,
                "| {} | {} | {} ms | {} | {recovery} | {} MB |",
                case.name,
                f.calls,
                f.answered_in.as_millis(),
                without_urls(&f.answer),
                f.peak_rss_kb / 1024
            ),
        };
    }
    println!("{table}");
    assert!(failures.is_empty(), "{task:?}:\n{}", failures.join("\n"));
}

#[test]
fn every_fault_gives_an_empty_or_next_completion_and_the_server_recovers() {
    battery(Task::Completion);
}

#[test]
fn every_fault_gives_a_clear_action_error_within_its_deadline_and_the_server_recovers() {
    battery(Task::Action);
}
