//! End-to-end benchmarks: the real `pilotfish` binary driven over stdio by the test editor
//! (`tests/it/support/lsp.rs`) against the Ollama model double (`tests/it/support/double/`)
//! with a fixed delay, and the in-process document store for the edit path. Every figure is a
//! distribution over many runs (p50/p95/p99), never one timing; the machine is shared, so
//! single timings mean little.
//!
//! Run: `cargo bench --bench e2e`. `PILOTFISH_BENCH_QUICK=1` runs small sizes (for CI);
//! arguments that are not flags pick scenarios by name (`miss`, `hit`, `burst`, `edit`, `rss`),
//! e.g. `cargo bench --bench e2e -- burst`. `PILOTFISH_LOG=debug` is passed to the server, whose
//! stderr is kept and shown when a check fails. The usage log is on, as a user gets it (in the
//! temp workspace's state dir); `PILOTFISH_BENCH_USAGE_LOG=off` turns it off, to measure what it
//! costs. See BENCHMARKS.md for what each scenario
//! measures and the targets.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pilotfish::documents::{Documents, Reparse, TextChange};
use pilotfish::position::{LineCol, PositionEncoding};
use pilotfish::syntax::Language;
use serde_json::{Value, json};
use support::double::{Behaviour, ModelDouble};
use support::lsp::LspClient;
use tempfile::TempDir;

/// The model's fixed delay in the cache-miss scenario.
const MISS_MODEL_DELAY: Duration = Duration::from_millis(20);
/// The model's fixed delay in the typing-burst scenario.
const BURST_MODEL_DELAY: Duration = Duration::from_millis(150);
/// Gap between keystrokes in a burst.
const KEYSTROKE_GAP: Duration = Duration::from_millis(30);
/// The engine treats requests to one document less than 400 ms apart as a burst; the
/// isolated-request scenario keeps a margin above that.
const ISOLATION_GAP: Duration = Duration::from_millis(450);
/// What the model double answers at the end of a `total` line in the generated source.
const MISS_ANSWER: &str = " * 2.0";
/// What the burst user types, one character per keystroke (20 characters).
const BURST_TYPED: &str = "let sum: f64 = items";
const BURST_ANSWER: &str = ".iter().map(|i| i.id as f64).sum();";

/// Whether the server writes its usage log (the default); `PILOTFISH_BENCH_USAGE_LOG=off`
/// turns it off.
fn usage_log_on() -> bool {
    std::env::var("PILOTFISH_BENCH_USAGE_LOG").map_or(true, |v| v != "off")
}

/// How much each scenario does; `PILOTFISH_BENCH_QUICK=1` shrinks everything.
struct Sizes {
    miss_requests: usize,
    miss_docs: usize,
    hit_requests: usize,
    bursts: usize,
    edits: usize,
    binary_edits: usize,
    rss_files: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        if std::env::var_os("PILOTFISH_BENCH_QUICK").is_some_and(|v| v != "0") {
            Sizes {
                miss_requests: 40,
                miss_docs: 40,
                hit_requests: 100,
                bursts: 3,
                edits: 200,
                binary_edits: 100,
                rss_files: 50,
            }
        } else {
            Sizes {
                miss_requests: 240,
                miss_docs: 40,
                hit_requests: 1_000,
                bursts: 15,
                edits: 4_000,
                binary_edits: 1_000,
                rss_files: 50,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report

/// A sorted sample of durations.
struct Sample(Vec<Duration>);

impl Sample {
    fn new(mut values: Vec<Duration>) -> Sample {
        assert!(!values.is_empty(), "an empty sample");
        values.sort();
        Sample(values)
    }

    /// Nearest-rank percentile.
    fn pct(&self, p: f64) -> Duration {
        let n = self.0.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.0[rank.clamp(1, n) - 1]
    }

    fn describe(&self) -> String {
        format!(
            "n={} p50={} p95={} p99={} max={}",
            self.0.len(),
            ms(self.pct(50.0)),
            ms(self.pct(95.0)),
            ms(self.pct(99.0)),
            ms(self.pct(100.0))
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// One line of the final table.
struct Row {
    scenario: &'static str,
    metric: String,
    target: String,
    measured: String,
    /// None when there is no target.
    met: Option<bool>,
}

#[derive(Default)]
struct Report(Vec<Row>);

impl Report {
    fn row(&mut self, scenario: &'static str, metric: impl Into<String>, measured: String) {
        self.0.push(Row {
            scenario,
            metric: metric.into(),
            target: "—".into(),
            measured,
            met: None,
        });
    }

    fn check(
        &mut self,
        scenario: &'static str,
        metric: impl Into<String>,
        target: impl Into<String>,
        measured: String,
        met: bool,
    ) {
        self.0.push(Row {
            scenario,
            metric: metric.into(),
            target: target.into(),
            measured,
            met: Some(met),
        });
    }

    fn print(&self) {
        let mut out = String::from(
            "\n| scenario | metric | target | measured | verdict |\n|---|---|---|---|---|\n",
        );
        for r in &self.0 {
            let verdict = match r.met {
                Some(true) => "met",
                Some(false) => "**MISSED**",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.scenario, r.metric, r.target, r.measured, verdict
            );
        }
        println!("{out}");
        let missed = self.0.iter().filter(|r| r.met == Some(false)).count();
        println!("{missed} target(s) missed");
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A Rust file of about `lines` lines (structs, impls, functions with bodies), as in
/// `benches/core.rs`. Item numbers start at `seed * 100_000`, so files with different seeds
/// differ near every cursor and never share a cache entry.
fn rust_source(lines: usize, seed: usize) -> String {
    let mut out = String::from("use std::collections::HashMap;\nuse std::fmt;\n\n");
    let mut i = seed * 100_000;
    let mut count = 3;
    while count < lines {
        out.push_str(&format!(
            "pub struct Item{i} {{\n    id: u64,\n    name: String,\n}}\n\n\
             impl Item{i} {{\n    pub fn score(&self, weights: &HashMap<String, f64>) -> f64 {{\n        \
             let mut total = 0.0;\n        for (key, w) in weights {{\n            if self.name.contains(key.as_str()) {{\n                \
             total += w * (self.id as f64);\n            }}\n        }}\n        total\n    }}\n}}\n\n"
        ));
        count += 17;
        i += 1;
    }
    out
}

/// The 0-based numbers of the lines that are exactly `line`.
fn lines_equal(text: &str, line: &str) -> Vec<u32> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| *l == line)
        .map(|(n, _)| n as u32)
        .collect()
}

fn completion_params(uri: &str, line: u32, character: u32) -> Value {
    json!({
        "textDocument": { "uri": uri },
        "position": { "line": line, "character": character },
        "context": { "triggerKind": 2 }
    })
}

/// The suggestion in an `InlineCompletionList`, if any.
fn suggestion(result: &Value) -> Option<&str> {
    result["items"][0]["insertText"].as_str()
}

/// A temp workspace with a config pointing at `double`, and the server running in it.
struct Server {
    lsp: LspClient,
    _dir: TempDir,
}

impl Server {
    fn start(double: &ModelDouble, budget_ms: u64) -> Server {
        let dir = tempfile::tempdir().expect("temp workspace");
        // Every scenario counts one model call per request: the background calls a local
        // model gets by default — the prefetch after a delivered suggestion, the warm-up at
        // a new place — would add others (the typing bench, benches/typing.py, measures
        // what they give).
        let mut config = format!(
            "[models.fast]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"qwen2.5-coder:1.5b\"\nfim = \"native\"\n\
             [completion]\nbudget_ms = {budget_ms}\nprefetch = \"off\"\nwarm_up = false\n",
            double.base_url()
        );
        if !usage_log_on() {
            config.push_str("[telemetry]\nusage_log = \"\"\n");
        }
        std::fs::write(dir.path().join("pilotfish.toml"), config).expect("write the config");
        let log = std::env::var("PILOTFISH_LOG").unwrap_or_else(|_| "warn".into());
        let lsp = LspClient::spawn(
            &["--config", "pilotfish.toml"],
            &[("PILOTFISH_LOG", log.as_str())],
            dir.path(),
        )
        .with_timeout(Duration::from_secs(30));
        lsp.initialize(json!({}), Value::Null);
        // `initialized` warms the pooled connection with a probe; let it land before timing.
        double.wait_for(|d| d.probes() >= 1, Duration::from_secs(5));
        Server { lsp, _dir: dir }
    }

    /// A request the server answers without touching documents or models (method not
    /// found), used to know that everything sent before it has been read.
    fn ping(&self) {
        let _ = self
            .lsp
            .request_and_wait("pilotfish/benchPing", Value::Null);
    }
}

/// With `PILOTFISH_BENCH_LOG_DIR` set, saves the server's stderr there (its log, at the level
/// `PILOTFISH_LOG` asks for), for finding out where the time goes.
fn keep_log(lsp: &LspClient, scenario: &str) {
    if let Some(dir) = std::env::var_os("PILOTFISH_BENCH_LOG_DIR") {
        let path = Path::new(&dir).join(format!("{scenario}.log"));
        if let Err(e) = std::fs::write(&path, lsp.stderr()) {
            eprintln!("could not write {}: {e}", path.display());
        }
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: an isolated request that misses the cache, then one that hits it

/// When the double received one model call and when its fixed delay ended.
#[derive(Clone, Copy)]
struct ModelTiming {
    arrived: Instant,
    answered: Instant,
}

fn miss_and_hit(sizes: &Sizes, report: &mut Report, run_miss: bool, run_hit: bool) {
    // The double's delay is done inside the answer closure, so the double itself records when
    // each model call arrived and when its 20 ms ended: "what Pilotfish adds" is measured, not
    // inferred. (Blocking the double's thread is harmless here: one call at a time.)
    let timings: Arc<Mutex<Vec<ModelTiming>>> = Arc::default();
    let recorder = Arc::clone(&timings);
    let double = ModelDouble::start(Behaviour::answer_with(move |_| {
        let arrived = Instant::now();
        std::thread::sleep(MISS_MODEL_DELAY);
        let answered = Instant::now();
        recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ModelTiming { arrived, answered });
        MISS_ANSWER.to_owned()
    }));
    let server = Server::start(&double, 1_000);
    let lsp = &server.lsp;

    // Distinct documents (and item numbers) so that every request is a cache miss, visited
    // round-robin so that no document sees two requests within the 400 ms burst window.
    let docs: Vec<(String, Vec<u32>)> = (0..sizes.miss_docs)
        .map(|d| {
            let text = rust_source(3_000, d + 1);
            let uri = lsp.uri(&format!("miss{d}.rs"));
            lsp.open(&uri, "rust", &text);
            (uri, lines_equal(&text, "        total"))
        })
        .collect();
    server.ping();

    let mut last_at: HashMap<usize, Instant> = HashMap::new();
    let mut round_trips = Vec::new();
    let mut added = Vec::new();
    let mut minus_delay = Vec::new();
    let mut model_times = Vec::new();
    let mut inbound = Vec::new();
    let mut outbound = Vec::new();
    let mut empty = 0;
    let warmup = 5.min(sizes.miss_requests);
    let calls_before = double.requests();
    for i in 0..sizes.miss_requests + warmup {
        let d = i % docs.len();
        let (uri, lines) = &docs[d];
        let line = lines[(i / docs.len()) % lines.len()];
        if let Some(at) = last_at.get(&d) {
            let since = at.elapsed();
            if since < ISOLATION_GAP {
                std::thread::sleep(ISOLATION_GAP - since);
            }
        }
        let recorded = timings.lock().unwrap_or_else(|p| p.into_inner()).len();
        let t0 = Instant::now();
        last_at.insert(d, t0);
        let id = lsp.request(
            "textDocument/inlineCompletion",
            completion_params(uri, line, 13),
        );
        let result = lsp.response(id).expect("inlineCompletion answers");
        let t1 = Instant::now();
        let timing = {
            let all = timings.lock().unwrap_or_else(|p| p.into_inner());
            assert_eq!(
                all.len(),
                recorded + 1,
                "request {i} should have made exactly one model call"
            );
            all[recorded]
        };
        if i < warmup {
            continue;
        }
        if suggestion(&result) != Some(MISS_ANSWER) {
            empty += 1;
        }
        round_trips.push(t1 - t0);
        added.push((timing.arrived - t0) + (t1 - timing.answered));
        inbound.push(timing.arrived - t0);
        outbound.push(t1 - timing.answered);
        minus_delay.push((t1 - t0).saturating_sub(MISS_MODEL_DELAY));
        model_times.push(timing.answered - timing.arrived);
    }
    let calls = double.requests() - calls_before;
    keep_log(lsp, "miss");
    if run_miss {
        let n = round_trips.len();
        let rt = Sample::new(round_trips);
        let add = Sample::new(added);
        let md = Sample::new(minus_delay);
        let model = Sample::new(model_times);
        let inbound = Sample::new(inbound);
        let outbound = Sample::new(outbound);
        println!("miss: round trip      {}", rt.describe());
        println!("miss: model (double)  {}", model.describe());
        println!("miss: added, measured {}", add.describe());
        println!("miss: round trip - 20 {}", md.describe());
        println!(
            "miss: in  (editor sends → model call read) {}",
            inbound.describe()
        );
        println!(
            "miss: out (model answered → editor has it) {}",
            outbound.describe()
        );
        println!("miss: model calls {calls} for {} requests", n + warmup);
        report.row(
            "1 miss",
            format!("round trip p50 / p95 / p99 (n={n}, 3,000-line files, model 20 ms)"),
            format!(
                "{} / {} / {}",
                ms(rt.pct(50.0)),
                ms(rt.pct(95.0)),
                ms(rt.pct(99.0))
            ),
        );
        report.check(
            "1 miss",
            "added p50 (round trip − model time measured at the double)",
            "≤ 1 ms",
            ms(add.pct(50.0)),
            add.pct(50.0) <= Duration::from_millis(1),
        );
        report.check(
            "1 miss",
            "added p95 (same)",
            "≤ 2 ms",
            ms(add.pct(95.0)),
            add.pct(95.0) <= Duration::from_millis(2),
        );
        report.row("1 miss", "added p99 (same)", ms(add.pct(99.0)));
        report.row(
            "1 miss",
            "of which in: editor sends → double has read the model call, p50 / p95",
            format!("{} / {}", ms(inbound.pct(50.0)), ms(inbound.pct(95.0))),
        );
        report.row(
            "1 miss",
            "of which out: model answered → editor has the response, p50 / p95",
            format!("{} / {}", ms(outbound.pct(50.0)), ms(outbound.pct(95.0))),
        );
        report.row(
            "1 miss",
            "round trip − 20 ms, p50 / p95 / p99",
            format!(
                "{} / {} / {}",
                ms(md.pct(50.0)),
                ms(md.pct(95.0)),
                ms(md.pct(99.0))
            ),
        );
        report.check(
            "1 miss",
            "every request a model call, answered with the suggestion",
            "all",
            format!(
                "{calls} calls / {} requests, {empty} without the suggestion",
                n + warmup
            ),
            calls == n + warmup && empty == 0,
        );
    }
    if !run_hit {
        return;
    }

    // 2: the first request of the run, repeated: its answer is cached.
    let (uri, lines) = &docs[0];
    let params = completion_params(uri, lines[0], 13);
    let calls_before = double.requests();
    let mut round_trips = Vec::new();
    let mut wrong = 0;
    for i in 0..sizes.hit_requests + 50 {
        let t0 = Instant::now();
        let id = lsp.request("textDocument/inlineCompletion", params.clone());
        let result = lsp.response(id).expect("inlineCompletion answers");
        let t1 = Instant::now();
        if i < 50 {
            continue;
        }
        if suggestion(&result) != Some(MISS_ANSWER) {
            wrong += 1;
        }
        round_trips.push(t1 - t0);
    }
    let calls = double.requests() - calls_before;
    let n = round_trips.len();
    let rt = Sample::new(round_trips);
    println!("hit: round trip {}", rt.describe());
    report.check(
        "2 hit",
        format!("round trip p50 (n={n}, same request repeated)"),
        "≤ 0.5 ms",
        ms(rt.pct(50.0)),
        rt.pct(50.0) <= Duration::from_micros(500),
    );
    report.row(
        "2 hit",
        "round trip p95 / p99",
        format!("{} / {}", ms(rt.pct(95.0)), ms(rt.pct(99.0))),
    );
    report.check(
        "2 hit",
        "model calls during the hits; answers without the suggestion",
        "0; 0",
        format!("{calls}; {wrong}"),
        calls == 0 && wrong == 0,
    );
}

// ---------------------------------------------------------------------------------------------
// 3: a typing burst

struct BurstResult {
    started: usize,
    aborted: usize,
    last_answered: bool,
    /// From the last keystroke's request to its answer.
    last_latency: Duration,
    /// Superseded requests answered empty, and answered with a cancellation error.
    empty: usize,
    cancelled: usize,
}

fn measure_the_model(server: &Server) {
    let lsp = &server.lsp;
    let uri = lsp.uri("measure.rs");
    lsp.open(&uri, "rust", "fn first() -> u32 {\n    \n}\n");
    let answer = lsp.request_and_wait(
        "textDocument/inlineCompletion",
        completion_params(&uri, 1, 4),
    );
    assert!(answer.is_ok(), "the first answer: {answer:?}");
}

fn one_burst(server: &Server, double: &ModelDouble, n: usize, cancel: bool) -> BurstResult {
    let lsp = &server.lsp;
    let mut text = rust_source(300, 500 + n + if cancel { 0 } else { 100 });
    text.push_str("\nfn burst_target(items: &[Item0]) -> f64 {\n    \n}\n");
    let line = text.lines().count() as u32 - 2;
    let uri = lsp.uri(&format!("burst{n}-{cancel}.rs"));
    lsp.open(&uri, "rust", &text);
    server.ping();
    double.wait_for(|d| d.in_flight() == 0, Duration::from_secs(5));
    let (requests0, aborted0) = (double.requests(), double.aborted());

    let start = Instant::now();
    let mut ids = Vec::new();
    let mut last_sent = start;
    for (k, ch) in BURST_TYPED.chars().enumerate() {
        let due = start + KEYSTROKE_GAP * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if cancel {
            if let Some(&previous) = ids.last() {
                lsp.cancel(previous);
            }
        }
        let col = 4 + k as u32;
        lsp.type_text(&uri, 2 + k as i32, (line, col), &ch.to_string());
        last_sent = Instant::now();
        ids.push(lsp.request(
            "textDocument/inlineCompletion",
            completion_params(&uri, line, col + 1),
        ));
    }
    let last = lsp.response(*ids.last().expect("20 requests"));
    let last_latency = last_sent.elapsed();
    let last_answered = last
        .as_ref()
        .ok()
        .and_then(suggestion)
        .is_some_and(|s| !s.is_empty());
    let (mut empty, mut cancelled) = (0, 0);
    for &id in &ids[..ids.len() - 1] {
        match lsp.response(id) {
            Ok(result) if suggestion(&result).is_none() => empty += 1,
            Ok(_) => {}
            Err(_) => cancelled += 1,
        }
    }
    double.wait_for(|d| d.in_flight() == 0, Duration::from_secs(5));
    lsp.close(&uri);
    BurstResult {
        started: double.requests() - requests0,
        aborted: double.aborted() - aborted0,
        last_answered,
        last_latency,
        empty,
        cancelled,
    }
}

fn bursts(sizes: &Sizes, report: &mut Report) {
    let double = ModelDouble::start(Behaviour::answer(BURST_ANSWER).delay(BURST_MODEL_DELAY));
    let server = Server::start(&double, 2_000);
    // One answer first, so that the engine knows the model's speed (fast against this
    // budget): a model not measured yet has the calls typed along it kept, not aborted.
    measure_the_model(&server);
    for (cancel, label) in [(true, "3 burst"), (false, "3 burst, no cancel")] {
        let results: Vec<BurstResult> = (0..sizes.bursts)
            .map(|n| one_burst(&server, &double, n, cancel))
            .collect();
        let started: Vec<usize> = results.iter().map(|r| r.started).collect();
        let aborted: Vec<usize> = results.iter().map(|r| r.aborted).collect();
        let unaborted_superseded: usize = results
            .iter()
            .map(|r| r.started.saturating_sub(1).saturating_sub(r.aborted))
            .sum();
        let answered = results.iter().filter(|r| r.last_answered).count();
        let latency = Sample::new(results.iter().map(|r| r.last_latency).collect());
        let empty: usize = results.iter().map(|r| r.empty).sum();
        let cancelled: usize = results.iter().map(|r| r.cancelled).sum();
        let max_started = started.iter().copied().max().unwrap_or(0);
        println!(
            "{label}: started {started:?} aborted {aborted:?} last answered {answered}/{} \
             superseded answered empty {empty}, cancelled {cancelled}; last latency {}",
            results.len(),
            latency.describe()
        );
        let n = results.len();
        report.check(
            label,
            format!("model calls started per burst (n={n} bursts of 20 keys, 30 ms apart)"),
            "≤ 3",
            format!("{} (max {max_started})", histogram(&started)),
            max_started <= 3,
        );
        report.check(
            label,
            "superseded model calls not aborted (all bursts)",
            "0",
            format!(
                "{unaborted_superseded} (aborted per burst: {})",
                histogram(&aborted)
            ),
            unaborted_superseded == 0,
        );
        report.check(
            label,
            "last request answered with a suggestion",
            "every burst",
            format!("{answered}/{n}"),
            answered == n,
        );
        report.row(
            label,
            "last keystroke → suggestion (debounce + 150 ms model), p50 / p95",
            format!("{} / {}", ms(latency.pct(50.0)), ms(latency.pct(95.0))),
        );
        report.row(
            label,
            "earlier requests: answered empty / cancelled (all bursts)",
            format!("{empty} / {cancelled}"),
        );
    }
}

/// `{value: count}` as "2 ×14, 3 ×1".
fn histogram(values: &[usize]) -> String {
    let mut counts: Vec<(usize, usize)> = Vec::new();
    for &v in values {
        match counts.iter_mut().find(|(value, _)| *value == v) {
            Some((_, c)) => *c += 1,
            None => counts.push((v, 1)),
        }
    }
    counts.sort();
    counts
        .iter()
        .map(|(v, c)| format!("{v} ×{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// 4: a one-character edit on a 20,000-line file

/// Lines at least 9 characters long, spread over the file: a character typed at column 8 is
/// typed inside code, as a user would.
fn edit_lines(text: &str) -> Vec<u32> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.len() >= 9)
        .map(|(n, _)| n as u32)
        .collect()
}

/// The `i`-th edit: type an `x` at column 8 of a line, then (next edit) delete it, so the
/// document does not grow; each pair on another line.
fn nth_edit(lines: &[u32], i: usize) -> (LineCol, LineCol, &'static str) {
    let line = lines[(i / 2 * 7_919) % lines.len()];
    let at = LineCol { line, col: 8 };
    if i % 2 == 0 {
        (at, at, "x")
    } else {
        (at, LineCol { line, col: 9 }, "")
    }
}

fn edits(sizes: &Sizes, report: &mut Report) {
    let text = rust_source(20_000, 900);
    let lines = edit_lines(&text);
    let store = Mutex::new(Documents::default());
    store
        .lock()
        .unwrap()
        .open_parsed("file:///big.rs", Language::Rust, 0, &text);
    let mut times = Vec::new();
    let mut reparse_times = Vec::new();
    for i in 0..sizes.edits + 100 {
        let (start, end, inserted) = nth_edit(&lines, i);
        let change = TextChange {
            range: Some((start, end)),
            text: inserted.into(),
        };
        let t0 = Instant::now();
        let reparse = store
            .lock()
            .unwrap()
            .change(
                "file:///big.rs",
                i as i32 + 1,
                &[change],
                PositionEncoding::Utf16,
            )
            .expect("the edit applies")
            .reparse;
        let elapsed = t0.elapsed();
        // The server runs this on a blocking thread after didChange; time it separately.
        let t1 = Instant::now();
        if reparse == Reparse::Deferred {
            Documents::reparse_deferred(&store, "file:///big.rs");
        }
        let reparse_elapsed = t1.elapsed();
        if i >= 100 {
            times.push(elapsed);
            reparse_times.push(reparse_elapsed);
        }
    }
    let n = times.len();
    let s = Sample::new(times);
    let r = Sample::new(reparse_times);
    println!("edit, in process: {}", s.describe());
    println!("edit, background reparse: {}", r.describe());
    report.row(
        "4 edit",
        format!("in process: didChange 1 char (reparse deferred), 20k lines, p50 (n={n})"),
        ms(s.pct(50.0)),
    );
    report.check(
        "4 edit",
        "in process: didChange p99",
        "≤ 1 ms",
        ms(s.pct(99.0)),
        s.pct(99.0) <= Duration::from_millis(1),
    );
    report.row(
        "4 edit",
        "background incremental reparse after each edit, p50 / p99 (off the request path)"
            .to_string(),
        format!("{} / {}", ms(r.pct(50.0)), ms(r.pct(99.0))),
    );

    // Through the binary: (didChange + ping) − ping, both as distributions.
    let double = ModelDouble::start(Behaviour::answer(""));
    let server = Server::start(&double, 1_000);
    let lsp = &server.lsp;
    let uri = lsp.uri("big.rs");
    lsp.open(&uri, "rust", &text);
    server.ping();
    let mut ping_only = Vec::new();
    let mut change_and_ping = Vec::new();
    for i in 0..sizes.binary_edits + 50 {
        let t0 = Instant::now();
        server.ping();
        let ping = t0.elapsed();
        let (start, end, inserted) = nth_edit(&lines, i);
        let t0 = Instant::now();
        lsp.change(
            &uri,
            i as i32 + 2,
            json!([{
                "range": {
                    "start": { "line": start.line, "character": start.col },
                    "end": { "line": end.line, "character": end.col }
                },
                "text": inserted
            }]),
        );
        server.ping();
        let both = t0.elapsed();
        if i >= 50 {
            ping_only.push(ping);
            change_and_ping.push(both);
        }
    }
    let ping = Sample::new(ping_only);
    let both = Sample::new(change_and_ping);
    println!("edit, binary: ping {}", ping.describe());
    println!("edit, binary: didChange + ping {}", both.describe());
    let diff = |p: f64| both.pct(p).saturating_sub(ping.pct(p));
    report.row(
        "4 edit",
        "through the binary: ping alone p50 / p99",
        format!("{} / {}", ms(ping.pct(50.0)), ms(ping.pct(99.0))),
    );
    report.row(
        "4 edit",
        "through the binary: didChange + ping p50 / p99",
        format!("{} / {}", ms(both.pct(50.0)), ms(both.pct(99.0))),
    );
    report.row(
        "4 edit",
        "through the binary: difference of those percentiles, p50 / p99 (estimate)",
        format!("{} / {}", ms(diff(50.0)), ms(diff(99.0))),
    );
}

// ---------------------------------------------------------------------------------------------
// 5: memory

fn rss(sizes: &Sizes, report: &mut Report) {
    let double = ModelDouble::start(Behaviour::answer(""));
    let server = Server::start(&double, 1_000);
    let lsp = &server.lsp;
    server.ping();
    std::thread::sleep(Duration::from_millis(200));
    let pid = lsp.pid();
    let baseline = rss_kib(pid, "VmRSS:");
    for f in 0..sizes.rss_files {
        let text = rust_source(2_000, 2_000 + f);
        lsp.open(&lsp.uri(&format!("rss{f}.rs")), "rust", &text);
    }
    server.ping();
    std::thread::sleep(Duration::from_millis(200));
    let loaded = rss_kib(pid, "VmRSS:");
    let peak = rss_kib(pid, "VmHWM:");
    println!(
        "rss: baseline {} with {} files {} (peak {})",
        mib(baseline),
        sizes.rss_files,
        mib(loaded),
        mib(peak)
    );
    report.row("5 rss", "VmRSS after initialize", mib(baseline));
    report.row(
        "5 rss",
        format!(
            "VmRSS with {} open 2,000-line Rust files (peak VmHWM)",
            sizes.rss_files
        ),
        format!("{} ({})", mib(loaded), mib(peak)),
    );
    report.row(
        "5 rss",
        "per open file",
        format!(
            "{:.0} KiB",
            loaded.saturating_sub(baseline) as f64 / sizes.rss_files as f64
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// 0: the machine

/// How long one thread takes to wake another that has been idle for 20 ms (as the server's
/// threads are while the model thinks). A request crosses several such hand-offs (editor →
/// stdin thread → runtime worker → model server → worker → stdout thread → editor), so on a
/// busy machine this, not CPU work, is most of what the isolated request adds.
fn wake_latency(sizes: &Sizes, report: &mut Report) {
    let (to_sleeper, rx) = std::sync::mpsc::channel::<Instant>();
    let (tx, from_sleeper) = std::sync::mpsc::channel::<Duration>();
    let sleeper = std::thread::spawn(move || {
        while let Ok(sent) = rx.recv() {
            let _ = tx.send(sent.elapsed());
        }
    });
    let mut latencies = Vec::new();
    for _ in 0..sizes.miss_requests {
        std::thread::sleep(MISS_MODEL_DELAY);
        to_sleeper.send(Instant::now()).expect("the sleeper runs");
        latencies.push(from_sleeper.recv().expect("the sleeper answers"));
    }
    drop(to_sleeper);
    let _ = sleeper.join();
    let s = Sample::new(latencies);
    println!("machine: thread wake after 20 ms idle {}", s.describe());
    report.row(
        "0 machine",
        "one thread wakes another idle for 20 ms, p50 / p95 / p99",
        format!(
            "{} / {} / {}",
            ms(s.pct(50.0)),
            ms(s.pct(95.0)),
            ms(s.pct(99.0))
        ),
    );
}

// ---------------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; other arguments name the scenarios to run.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| name.contains(w.as_str()));
    let sizes = Sizes::from_env();
    let binary = Path::new(env!("CARGO_BIN_EXE_pilotfish"));
    println!(
        "pilotfish e2e bench: {} (usage log {})",
        binary.display(),
        if usage_log_on() { "on" } else { "off" }
    );
    let mut report = Report::default();
    wake_latency(&sizes, &mut report);
    if run("miss") || run("hit") {
        miss_and_hit(&sizes, &mut report, run("miss"), run("hit"));
    }
    if run("burst") {
        bursts(&sizes, &mut report);
    }
    if run("edit") {
        edits(&sizes, &mut report);
    }
    if run("rss") {
        rss(&sizes, &mut report);
    }
    report.print();
}
