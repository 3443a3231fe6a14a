//! The usage log end to end (issue 10): a session of completions and actions against model
//! doubles gives the expected lines and `stats`; two servers append to one log without tearing
//! a line; the day's budget holds across three one-shot runs; `replay` re-decides a fixture log
//! under two configurations; no key or secret reaches the log.
//!
//! Every server runs with the defaults a user gets for the log: no `[telemetry]` table, so the
//! log lands under `$XDG_STATE_HOME/pilotfish/`, which the harness points into the temp
//! workspace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::suggestion;
use crate::support::double::{Behaviour, Fault, ModelDouble};
use crate::support::lsp::{LspClient, mark};
use crate::support::wait_until;
use crate::workspace::{Workspace, cloud, ollama};

const WAIT: Duration = Duration::from_secs(10);
const SLOW: Duration = Duration::from_secs(10);

/// Where the server puts the log by default in a test workspace.
fn default_log(root: &Path) -> PathBuf {
    root.join(".local/state/pilotfish/usage.jsonl")
}

/// Every line of the log (rotated files first), parsed.
fn lines_of(log: &Path) -> Vec<Value> {
    let dir = log.parent().expect("the log has a directory");
    let name = log
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the log's directory exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with(&format!("{name}."))
        })
        .collect();
    files.sort();
    files.push(log.to_path_buf());
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|line| {
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a torn or bad line ({e}): {line}"))
        })
        .collect()
}

/// (event, task, model, cache, outcome) of a line, for comparing a log with what it should be.
fn shape(line: &Value) -> (String, String, String, String, String) {
    let s = |key: &str| line[key].as_str().unwrap_or("").to_string();
    (s("event"), s("task"), s("model"), s("cache"), s("outcome"))
}

fn row(
    event: &str,
    task: &str,
    model: &str,
    cache: &str,
    outcome: &str,
) -> (String, String, String, String, String) {
    (
        event.into(),
        task.into(),
        model.into(),
        cache.into(),
        outcome.into(),
    )
}

fn execute(lsp: &LspClient, command: &str, argument: Value) -> Value {
    lsp.request_and_wait(
        "workspace/executeCommand",
        json!({ "command": command, "arguments": [argument] }),
    )
    .unwrap_or_else(|e| lsp.fail(&format!("{command} failed: {e:?}")))
}

fn inline_request(
    lsp: &LspClient,
    uri: &str,
    line: u32,
    col: u32,
) -> crate::support::lsp::RequestId {
    lsp.request(
        "textDocument/inlineCompletion",
        json!({
            "textDocument": { "uri": uri },
            "position": { "line": line, "character": col },
            "context": { "triggerKind": 2 }
        }),
    )
}

fn inline(lsp: &LspClient, uri: &str, line: u32, col: u32) -> Value {
    let id = inline_request(lsp, uri, line, col);
    lsp.response(id)
        .unwrap_or_else(|e| lsp.fail(&format!("inlineCompletion failed: {e:?}")))
}

const CALC: &str = "def f(total):\n    return $0\n";
const REWRITE: &str = "```python\ndef f(total):\n    return total + 1\n```";
const BROKEN: &str = "```python\ndef f(total:\n    return (total +\n```";

#[test]
fn a_session_gives_the_expected_log_lines_and_stats() {
    let fast = ModelDouble::start(Behaviour::answer("total + 1"));
    let local = ModelDouble::start(Behaviour::answer("It adds one to `total`."));
    let weak = ModelDouble::start(Behaviour::answer(BROKEN));
    let big = ModelDouble::start(Behaviour::answer(REWRITE));
    let config = format!(
        "{}{}{}{}[routes]\ncomplete = [\"fast\"]\nexplain = [\"local\"]\nrefactor = [\"weak\", \"big\"]\n",
        ollama("fast", &fast.base_url(), ""),
        ollama("local", &local.base_url(), ""),
        ollama("weak", &weak.base_url(), ""),
        cloud(
            "big",
            &big.base_url(),
            "cost_input_per_mtok = 3.0\ncost_output_per_mtok = 15.0\n"
        ),
    );
    let workspace = Workspace::new(&config);
    let editor = workspace.serve();
    let lsp = &editor.lsp;

    // A model call, the same request from the cache, typed-ahead, a partial accept.
    let (text, line, col) = mark(CALC);
    let calc = lsp.uri("calc.py");
    lsp.open(&calc, "python", &text);
    let first = inline(lsp, &calc, line, col);
    assert_eq!(suggestion(&first).as_deref(), Some("total + 1"), "{first}");
    let again = inline(lsp, &calc, line, col);
    assert_eq!(suggestion(&again).as_deref(), Some("total + 1"));
    lsp.type_text(&calc, 2, (line, col), "to");
    let ahead = inline(lsp, &calc, line, col + 2);
    assert_eq!(suggestion(&ahead).as_deref(), Some("tal + 1"), "{ahead}");
    let mut accept = ahead["items"][0]["command"]["arguments"][0].clone();
    assert!(
        accept["id"].is_string(),
        "the accept names its request: {accept}"
    );
    accept["accepted_chars"] = json!(3);
    execute(lsp, "pilotfish.accept", accept);
    // Each delivered suggestion starts a prefetch (a local model), prepared off the
    // response's path: the one after the first answer is the only call (the others find it
    // in the cache). Let it land first.
    assert!(
        fast.wait_for(|d| d.requests() == 2 && d.in_flight() == 0, WAIT),
        "{}",
        fast.summary()
    );
    let calls_before = fast.requests();

    // A request the editor cancels while the model works on it.
    fast.set_behaviour(Behaviour::answer("n * 2").delay(SLOW));
    let (text, line, col) = mark("def g(n):\n    return $0\n");
    let other = lsp.uri("other.py");
    lsp.open(&other, "python", &text);
    let cancelled = inline_request(lsp, &other, line, col);
    assert!(
        fast.wait_for(|d| d.requests() == calls_before + 1, WAIT),
        "{}",
        fast.summary()
    );
    lsp.cancel(cancelled);
    assert!(
        fast.wait_for(|d| d.aborted() == 1, WAIT),
        "{}",
        fast.summary()
    );
    let _ = lsp.response(cancelled);

    // A request superseded by the next keystroke's while its model call runs.
    let superseded = inline_request(lsp, &other, line, col);
    assert!(
        fast.wait_for(|d| d.requests() == calls_before + 2, WAIT),
        "{}",
        fast.summary()
    );
    fast.set_behaviour(Behaviour::answer("2"));
    lsp.type_text(&other, 2, (line, col), "n * ");
    let newer = inline(lsp, &other, line, col + 4);
    assert_eq!(suggestion(&newer).as_deref(), Some("2"), "{newer}");
    let _ = lsp.response(superseded);
    assert!(
        fast.wait_for(|d| d.aborted() == 2, WAIT),
        "{}",
        fast.summary()
    );

    // A refactor whose cheap answer does not parse: escalated to the next model.
    let refactored = execute(
        lsp,
        "pilotfish.refactor",
        json!({ "uri": calc, "position": { "line": 1, "character": 4 } }),
    );
    assert_eq!(refactored["model"], "big", "{refactored}");
    let reason = refactored["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("escalated from weak: no edit:"),
        "{refactored}"
    );
    let explained = execute(
        lsp,
        "pilotfish.explain",
        json!({ "uri": calc, "position": { "line": 1, "character": 4 } }),
    );
    assert_eq!(explained["model"], "local", "{explained}");

    let from_editor = execute(lsp, "pilotfish.stats", json!({}));
    lsp.shutdown_and_exit();

    let log = default_log(workspace.path());
    // Prefetches (background calls after each delivered suggestion) land whenever they are
    // done: checked apart from the requests' lines.
    let (prefetches, lines): (Vec<Value>, Vec<Value>) = lines_of(&log)
        .into_iter()
        .partition(|l| l["cache"] == "prefetch");
    assert!(
        !prefetches.is_empty(),
        "a delivered suggestion starts a prefetch"
    );
    for p in &prefetches {
        assert_eq!(shape(p).0, "call", "{p}");
        assert_eq!(
            (p["task"].as_str(), p["model"].as_str()),
            (Some("complete"), Some("fast")),
            "{p}"
        );
    }
    let shapes: Vec<_> = lines.iter().map(shape).collect();
    assert_eq!(
        shapes,
        vec![
            row("call", "complete", "fast", "miss", "ok"),
            row("shown", "complete", "fast", "", ""),
            row("cache", "complete", "fast", "hit", "ok"),
            row("shown", "complete", "fast", "", ""),
            row("cache", "complete", "fast", "typed-ahead", "ok"),
            row("shown", "complete", "fast", "", ""),
            row("accepted", "complete", "fast", "", ""),
            row("call", "complete", "fast", "miss", "cancelled"),
            row("call", "complete", "fast", "miss", "superseded"),
            row("call", "complete", "fast", "miss", "ok"),
            row("shown", "complete", "fast", "", ""),
            row("call", "refactor", "weak", "miss", "check-failed"),
            row("call", "refactor", "big", "miss", "ok"),
            row("call", "explain", "local", "miss", "ok"),
        ],
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The fields of the lines.
    let first_call = &lines[0];
    assert_eq!(first_call["language"], "python");
    assert_eq!(first_call["endpoint"], fast.base_url());
    assert_eq!(first_call["route"]["source"], "routes.complete");
    assert!(
        first_call["tokens_in"].as_u64().unwrap_or(0) > 0,
        "{first_call}"
    );
    assert!(
        first_call["tokens_out"].as_u64().unwrap_or(0) > 0,
        "{first_call}"
    );
    assert!(
        first_call.get("tokens_estimated").is_none(),
        "the provider's counts: {first_call}"
    );
    assert_eq!(first_call["cost_usd"], 0.0);
    assert!(
        first_call["ttft_ms"].is_u64() && first_call["ms"].is_u64(),
        "{first_call}"
    );
    assert!(
        first_call["facts"]["path"]
            .as_str()
            .unwrap_or("")
            .ends_with("calc.py")
    );
    assert!(
        first_call.get("prompt").is_none(),
        "no prompt text by default"
    );
    let accepted = &lines[6];
    assert_eq!(
        (
            accepted["chars"].as_u64(),
            accepted["accepted_chars"].as_u64()
        ),
        (Some(7), Some(3))
    );
    assert_eq!(
        accepted["id"], lines[5]["id"],
        "the accept names the shown suggestion"
    );
    let weak_call = &lines[11];
    assert!(
        weak_call["note"]
            .as_str()
            .unwrap_or("")
            .starts_with("no edit:"),
        "{weak_call}"
    );
    let big_call = &lines[12];
    assert_eq!(big_call["id"], weak_call["id"], "one request, two calls");
    assert!(
        big_call["note"]
            .as_str()
            .unwrap_or("")
            .starts_with("escalated from weak:"),
        "{big_call}"
    );
    let (tin, tout) = (
        big_call["tokens_in"].as_u64().unwrap(),
        big_call["tokens_out"].as_u64().unwrap(),
    );
    let cost = (tin as f64 * 3.0 + tout as f64 * 15.0) / 1e6;
    assert!(
        (big_call["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{big_call}"
    );

    // stats over that log: counts, rates, costs; the editor's command says the same.
    let ran = workspace.run_configured(&["stats", "--json"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    let stats: Value = serde_json::from_str(&ran.stdout()).expect("stats --json is JSON");
    assert_eq!(
        stats, from_editor,
        "pilotfish.stats returns what stats --json prints"
    );
    let total = &stats["total"];
    assert_eq!(
        total["requests"], 9,
        "7 model calls and 2 cache answers: {total}"
    );
    assert_eq!(total["model_calls"], 7 + prefetches.len());
    assert_eq!(total["prefetches"], prefetches.len());
    assert_eq!(
        (total["cache_hits"].as_u64(), total["typed_ahead"].as_u64()),
        (Some(1), Some(1))
    );
    assert!((total["cache_hit_rate"].as_f64().unwrap() - 2.0 / 9.0).abs() < 1e-9);
    assert_eq!(
        (total["shown"].as_u64(), total["accepted"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(total["acceptance_rate"], 0.25);
    assert_eq!(total["accepted_chars"], 3);
    assert_eq!(
        (total["cancelled"].as_u64(), total["superseded"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(total["check_failed"], 1);
    assert!((total["check_failure_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!((total["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12);
    let by_model = |name: &str| {
        stats["by_model"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["key"] == name).cloned())
            .unwrap_or_else(|| panic!("no row for {name}: {stats}"))
    };
    assert_eq!(by_model("weak")["check_failure_rate"], 1.0);
    assert_eq!(by_model("fast")["acceptance_rate"], 0.25);
    assert_eq!(stats["saving"]["priciest_model"], "big");
    let (all_in, all_out) = (
        total["tokens_in"].as_u64().unwrap(),
        total["tokens_out"].as_u64().unwrap(),
    );
    let all_on_big = (all_in as f64 * 3.0 + all_out as f64 * 15.0) / 1e6;
    assert!((stats["saving"]["all_on_priciest_usd"].as_f64().unwrap() - all_on_big).abs() < 1e-12);

    let table = workspace.run_configured(&["stats", "--since", "1d"]);
    assert_eq!(table.code(), Some(0), "{}", table.both());
    for needle in ["fast", "weak", "big", "refactor", "Routing saved $"] {
        assert!(
            table.stdout().contains(needle),
            "{needle}: {}",
            table.both()
        );
    }
}

/// A Python file whose lines make long prompts: each completion at the end of a line sends
/// several kilobytes, so each logged line (with its prompt) is longer than a pipe's atomic
/// write.
fn long_file() -> String {
    (0..240)
        .map(|i| format!("value_{i:03} = compute(\"{}\", {i})\n", "x".repeat(40)))
        .collect()
}

#[test]
fn two_servers_append_to_one_log_without_tearing_a_line() {
    let model = ModelDouble::start(Behaviour::answer("1"));
    let config = format!(
        "{}[routes]\ncomplete = [\"fast\"]\n[telemetry]\nlog_prompts = true\nrotate_mb = 1.0\n",
        ollama("fast", &model.base_url(), "")
    );
    let workspace = Workspace::new(&config);
    const PER_SERVER: u32 = 120;
    let text = long_file();
    std::thread::scope(|scope| {
        for name in ["a.py", "b.py"] {
            let (workspace, text) = (&workspace, &text);
            scope.spawn(move || {
                let editor = workspace.serve();
                let uri = editor.lsp.uri(name);
                editor.lsp.open(&uri, "python", text);
                for i in 0..PER_SERVER {
                    let line = 100 + i;
                    let end = text
                        .lines()
                        .nth(line as usize)
                        .map_or(0, |l| l.len() as u32);
                    inline(&editor.lsp, &uri, line, end);
                }
                editor.lsp.shutdown_and_exit();
            });
        }
    });
    let log = default_log(workspace.path());
    let lines = lines_of(&log);
    let calls: Vec<&Value> = lines.iter().filter(|l| l["event"] == "call").collect();
    let requested = calls.iter().filter(|l| l["cache"] == "miss").count();
    assert_eq!(
        requested,
        2 * PER_SERVER as usize,
        "every request's call logged once"
    );
    let longest = calls.iter().map(|l| l.to_string().len()).max().unwrap_or(0);
    assert!(
        longest > 4096,
        "lines longer than an atomic pipe write: {longest}"
    );
    let processes: std::collections::BTreeSet<&str> = calls
        .iter()
        .filter_map(|l| l["id"].as_str()?.split('-').next())
        .collect();
    assert_eq!(processes.len(), 2, "{processes:?}");
    let rotated = std::fs::read_dir(log.parent().unwrap()).unwrap().count() - 1;
    assert!(rotated >= 1, "the log was rotated at 1 MB on the way");
}

#[test]
fn the_days_budget_holds_across_restarts() {
    let cloud_model = ModelDouble::start(Behaviour::answer("Cloud: it adds."));
    let local_model = ModelDouble::start(Behaviour::answer("Local: it adds."));
    // One explanation costs ~$0.1 on the cloud model; the day allows $0.05.
    let config = format!(
        "{}{}[routes]\ncomplete = [\"local\"]\nexplain = [\"cloud\", \"local\"]\n[budget]\ndaily_usd = 0.05\n",
        cloud(
            "cloud",
            &cloud_model.base_url(),
            "cost_input_per_mtok = 1000.0\ncost_output_per_mtok = 1000.0\n"
        ),
        ollama("local", &local_model.base_url(), ""),
    );
    let workspace = Workspace::new(&config);
    workspace.write("calc.py", "def f(total):\n    return total + 1\n");
    let runs: Vec<_> = (0..3)
        .map(|_| workspace.run_configured(&["action", "explain", "calc.py:2"]))
        .collect();
    for ran in &runs {
        assert_eq!(ran.code(), Some(0), "{}", ran.both());
    }
    assert!(
        runs[0].stdout().contains("Cloud: it adds."),
        "{}",
        runs[0].both()
    );
    for ran in &runs[1..] {
        assert!(ran.stdout().contains("Local: it adds."), "{}", ran.both());
    }
    assert_eq!((cloud_model.requests(), local_model.requests()), (1, 2));
    // The run that first finds the budget spent says so, with the spend and the limit.
    let notice = runs[1].stderr();
    assert!(
        notice.contains("spent on cloud models today, the daily budget is $0.05"),
        "{notice}"
    );
    // The server reads the same spend: its explain goes to the local model too.
    let editor = workspace.serve();
    let (text, line, col) = mark("def f(total):\n    return $0total + 1\n");
    let uri = editor.lsp.uri("calc.py");
    editor.lsp.open(&uri, "python", &text);
    let explained = execute(
        &editor.lsp,
        "pilotfish.explain",
        json!({ "uri": uri, "position": { "line": line, "character": col } }),
    );
    assert_eq!(explained["model"], "local", "{explained}");
    assert_eq!(cloud_model.requests(), 1);
    assert!(
        wait_until(WAIT, || editor
            .messages()
            .iter()
            .any(|m| m.contains("the daily budget is $0.05"))),
        "the server tells the user once: {:?}",
        editor.messages()
    );
    editor.lsp.shutdown_and_exit();
}

#[test]
fn no_key_and_no_secret_reaches_the_log() {
    const KEY: &str = "sk-proj-Zq3vT8wK2mN5pR7sX9yB4cD6fG1hJ0kL";
    const SECRET: &str = "AKIAQWERTYUIOPASDFGH";
    let cloud_model = ModelDouble::start(Behaviour::answer("It reads the key.").fail_first(
        1,
        Fault::status_with_body(
            401,
            format!("{{\"error\":{{\"message\":\"bad key {KEY}\"}}}}"),
        ),
    ));
    let config = format!(
        "{}[routes]\ncomplete = [\"cloud\"]\nexplain = [\"cloud\"]\n[telemetry]\nlog_prompts = true\n",
        cloud(
            "cloud",
            &cloud_model.base_url(),
            "api_key_env = \"PILOTFISH_TEST_KEY\"\n"
        ),
    );
    let workspace = Workspace::new(&config);
    let fixture = format!("AWS_KEY = \"{SECRET}\"\n\ndef f(total):\n    return $0\n");
    let (text, line, col) = mark(&fixture);
    let lsp = LspClient::spawn(
        &["--config", "pilotfish.toml"],
        &[("PILOTFISH_TEST_KEY", KEY)],
        workspace.path(),
    );
    lsp.initialize(json!({}), Value::Null);
    let uri = lsp.uri("keys.py");
    lsp.open(&uri, "python", &text);
    let _ = inline(&lsp, &uri, line, col);
    let _ = inline(&lsp, &uri, line, col);
    let _ = lsp.request_and_wait(
        "workspace/executeCommand",
        json!({ "command": "pilotfish.explain", "arguments": [{ "uri": uri, "position": { "line": 0, "character": 2 } }] }),
    );
    lsp.shutdown_and_exit();
    let log = std::fs::read_to_string(default_log(workspace.path())).expect("the log exists");
    assert!(
        log.contains("\"prompt\""),
        "prompts are logged when asked: {log}"
    );
    assert!(
        log.contains("bad key"),
        "the provider's error is logged: {log}"
    );
    assert!(!log.contains(KEY), "the key reached the log: {log}");
    assert!(!log.contains(SECRET), "the secret reached the log: {log}");
}

#[test]
fn replay_re_decides_a_fixture_log_under_two_configs() {
    let workspace = Workspace::empty();
    let line = |id: &str, ts: &str, task: &str, model: &str, ms: u64, lines: u32, cost: f64| {
        json!({
            "ts": ts, "event": "call", "id": id, "task": task, "language": "rust",
            "model": model, "ms": ms, "tokens_in": 40000, "tokens_out": 10000, "cost_usd": cost,
            "cache": "miss", "outcome": "ok",
            "facts": { "path": "/w/src/a.rs", "features": true, "node_kind": "function_item", "lines": lines }
        })
        .to_string()
    };
    let log = [
        line("r1", "2026-05-01T09:00:00.000Z", "explain", "cloud", 3000, 20, 0.5),
        line("r2", "2026-05-01T10:00:00.000Z", "explain", "cloud", 4000, 200, 0.5),
        line("r3", "2026-05-01T11:00:00.000Z", "explain", "local", 9000, 30, 0.0),
        r#"{"ts":"2026-05-01T11:30:00.000Z","event":"call","id":"c1","task":"complete","language":"rust","model":"local","ms":100,"tokens_in":300,"tokens_out":5,"cost_usd":0.0,"cache":"miss","outcome":"ok"}"#.to_string(),
        "not json".to_string(),
    ]
    .join("\n");
    workspace.write("usage.jsonl", &format!("{log}\n"));
    let models = "[models.local]\nprovider = \"ollama\"\nurl = \"http://127.0.0.1:11434\"\nmodel = \"m\"\nfim = \"native\"\n[models.cloud]\nprovider = \"anthropic\"\nurl = \"https://api.anthropic.com\"\nmodel = \"c\"\nlocal = false\ncost_input_per_mtok = 10.0\ncost_output_per_mtok = 10.0\n";
    workspace.write(
        "all-cloud.toml",
        &format!("{models}[routes]\ncomplete = [\"local\"]\nexplain = [\"cloud\"]\n"),
    );
    workspace.write(
        "big-only.toml",
        &format!("{models}[routes]\ncomplete = [\"local\"]\nexplain = [\"local\"]\n[[rules]]\ntask = \"explain\"\nwhen = {{ min_lines = 100 }}\nuse = [\"cloud\"]\n"),
    );
    let replay = |config: &str| -> Value {
        let ran = workspace.run(
            &["replay", "usage.jsonl", "--config", config, "--json"],
            &[],
        );
        assert_eq!(ran.code(), Some(0), "{}", ran.both());
        assert!(
            ran.stderr()
                .contains("1 lines of usage.jsonl could not be read"),
            "{}",
            ran.both()
        );
        serde_json::from_str(&ran.stdout()).expect("replay --json is JSON")
    };
    let explain = |report: &Value| -> Value {
        report["by_task"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["task"] == "explain").cloned())
            .expect("an explain row")
    };
    let all_cloud = replay("all-cloud.toml");
    assert_eq!(
        (
            all_cloud["requests"].as_u64(),
            all_cloud["partial_facts"].as_u64()
        ),
        (Some(4), Some(1))
    );
    let e = explain(&all_cloud);
    assert_eq!(e["changed"], 1);
    assert_eq!(e["moves"]["local → cloud"], 1);
    assert_eq!(e["cost_before_usd"], 1.0);
    assert_eq!(e["cost_after_usd"], 1.5);
    assert_eq!(
        e["p50_ms_after"], 3000,
        "the cloud model's recorded median: {e}"
    );
    let big_only = replay("big-only.toml");
    let e = explain(&big_only);
    assert_eq!(e["moves"]["cloud → local"], 1, "{e}");
    assert_eq!(e["cost_after_usd"], 0.5);
    assert_eq!(e["p50_ms_after"], 9000);
    let table = workspace.run(&["replay", "usage.jsonl", "--config", "big-only.toml"], &[]);
    assert!(
        table.stdout().contains("explain: cloud → local ×1"),
        "{}",
        table.both()
    );
}
