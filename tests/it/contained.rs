//! A bug or a big file in one handler holds up nothing else (issue 9, items 5 and 6): a
//! panicking notification or `initialize` handler is logged and the server goes on with its
//! documents intact; the refactor check of a 20,000-line file runs on the blocking pool while
//! a completion on another document is answered. The debug binary's test hooks make the
//! faults on demand (`PILOTFISH_TEST_PANIC`, `PILOTFISH_TEST_HOLD`; see `src/test_hooks.rs`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{config_toml, suggestion};
use crate::support::double::{Behaviour, Endpoint, ModelDouble};
use crate::support::lsp::{LspClient, mark, range};
use crate::support::wait_until;

/// Handler input holding this text makes the handler panic.
const MARKER: &str = "PILOTFISH-PANIC-HERE";

fn inline(lsp: &LspClient, uri: &str, (line, col): (u32, u32)) -> Result<Value, String> {
    lsp.request_and_wait(
        "textDocument/inlineCompletion",
        json!({
            "textDocument": { "uri": uri },
            "position": { "line": line, "character": col },
            "context": { "triggerKind": 2 }
        }),
    )
    .map_err(|e| format!("{e:?}"))
}

/// The prompts of the model calls made for requests, in order: not the prefetches that
/// follow a shown suggestion (which ask after "a + b").
fn request_calls(double: &ModelDouble) -> Vec<String> {
    double
        .model_calls()
        .iter()
        .map(|c| c.prompt_text())
        .filter(|p| !p.ends_with("a + b"))
        .collect()
}

#[test]
fn a_panicking_notification_handler_is_logged_and_the_documents_are_intact() {
    let double = ModelDouble::start(Behaviour::answer("a + b"));
    let dir = tempfile::tempdir().expect("temp workspace");
    let config = config_toml("ollama", "native", &double.base_url(), "");
    std::fs::write(dir.path().join("pilotfish.toml"), config).expect("write the config");
    let lsp = LspClient::spawn(
        &["--config", "pilotfish.toml"],
        &[("PILOTFISH_TEST_PANIC", MARKER)],
        dir.path(),
    );

    // `initialize` is a request: its panic is an error response, and the editor may retry.
    let init = lsp.request_and_wait(
        "initialize",
        json!({ "capabilities": {}, "initializationOptions": { "x": MARKER } }),
    );
    let error = init.expect_err("a panicking initialize answers an error");
    assert!(error.message.contains("initialize failed"), "{error:?}");
    lsp.initialize(json!({}), Value::Null);

    let (text, line, col) = mark("def add(a, b):\n    return $0\n");
    let uri = lsp.uri("calc.py");
    lsp.open(&uri, "python", &text);

    // Each of these handlers panics (didChange while it holds the documents lock).
    lsp.type_text(&uri, 2, (0, 0), &format!("# {MARKER}\n"));
    let other = lsp.uri("other.py");
    lsp.open(&other, "python", &format!("x = '{MARKER}'\n"));
    lsp.notify(
        "workspace/didChangeConfiguration",
        json!({ "settings": { "completion": { "budget_ms": MARKER } } }),
    );
    lsp.close(&lsp.uri(&format!("{MARKER}.py")));
    lsp.notify("initialized", json!({}));

    // Still answering, with the document as it was before the panicking change.
    let result = inline(&lsp, &uri, (line, col)).expect("completion answers");
    assert_eq!(suggestion(&result).as_deref(), Some("a + b"), "{result}");
    assert_eq!(
        request_calls(&double),
        ["def add(a, b):\n    return "],
        "{}",
        double.summary()
    );

    // The poisoned documents lock recovered: the next change applies.
    lsp.type_text(&uri, 2, (0, 0), "import math\n");
    let result = inline(&lsp, &uri, (line + 1, col)).expect("completion answers");
    assert_eq!(suggestion(&result).as_deref(), Some("a + b"), "{result}");
    assert_eq!(
        request_calls(&double).last().map(String::as_str),
        Some("import math\ndef add(a, b):\n    return "),
        "{}",
        double.summary()
    );
    // The panicking didOpen opened nothing.
    let error = inline(&lsp, &other, (0, 0)).expect_err("other.py is not open");
    assert!(error.contains("not open"), "{error}");

    let log = lsp.stderr();
    for handler in ["didChange", "didOpen", "didChangeConfiguration", "didClose"] {
        assert!(
            log.contains(&format!("{handler} panicked")),
            "{handler} logged: {log}"
        );
    }
    lsp.shutdown_and_exit();
}

/// A Rust file of `lines` lines: three-line functions `f0`, `f1`, …
fn big_rust_file(lines: usize) -> String {
    (0..lines / 3)
        .map(|i| format!("fn f{i}(x: i32) -> i32 {{\n    x + {i}\n}}\n"))
        .collect()
}

#[test]
fn a_refactor_check_of_a_20000_line_file_holds_up_no_completion_on_another_document() {
    let double = ModelDouble::start(Behaviour::answer_with(|request| {
        if request.endpoint == Endpoint::OllamaChat {
            "```rust\nfn f3000(x: i32) -> i32 {\n    x + 3000 + 0\n}\n```".to_owned()
        } else {
            "a + b".to_owned()
        }
    }));
    let dir = tempfile::tempdir().expect("temp workspace");
    // The completion settings a new user has (no [completion] table).
    let config = format!(
        "[models.fast]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"test-model\"\nfim = \"native\"\n\n\
         [routes]\ncomplete = [\"fast\"]\nrefactor = [\"fast\"]\n",
        double.base_url()
    );
    std::fs::write(dir.path().join("pilotfish.toml"), config).expect("write the config");
    let release = dir.path().join("release-the-check");
    let release_text = release.to_string_lossy().into_owned();
    let lsp = LspClient::spawn(
        &["--config", "pilotfish.toml"],
        &[("PILOTFISH_TEST_HOLD", &release_text)],
        dir.path(),
    )
    .with_timeout(Duration::from_secs(20));
    lsp.initialize(json!({}), Value::Null);

    let big = big_rust_file(20_000);
    let big_uri = lsp.uri("big.rs");
    lsp.open(&big_uri, "rust", &big);
    let (small, line, col) = mark("def add(a, b):\n    return $0\n");
    let small_uri = lsp.uri("calc.py");
    lsp.open(&small_uri, "python", &small);

    // Select f3000 (lines 9000..9003) and refactor it.
    let refactor = lsp.request(
        "workspace/executeCommand",
        json!({
            "command": "pilotfish.refactor",
            "arguments": [{ "uri": big_uri, "range": range((9000, 0), (9003, 0)) }]
        }),
    );
    let held = {
        let mut path = release.clone().into_os_string();
        path.push(".held");
        std::path::PathBuf::from(path)
    };
    assert!(
        wait_until(Duration::from_secs(20), || held.exists()),
        "the refactor check started: {}",
        lsp.stderr_tail(20)
    );

    // While the check of the big file is held on the blocking pool, completion answers.
    let result = inline(&lsp, &small_uri, (line, col)).expect("completion answers");
    assert!(
        lsp.try_response(refactor).is_none(),
        "the refactor is still being checked"
    );
    assert!(result["items"].is_array(), "{result}");
    // The request's call (a prefetch for the place after the suggestion may follow it).
    let fim_calls = double
        .model_calls()
        .into_iter()
        .filter(|c| c.endpoint == Endpoint::OllamaGenerate && c.prompt_text().ends_with("return "))
        .count();
    assert_eq!(fim_calls, 1, "{}", double.summary());

    std::fs::write(&release, "").expect("release the check");
    let done = lsp.response(refactor).expect("the refactor finishes");
    assert_eq!(done["applied"], true, "{done}");
    let diff = done["diff"].as_str().unwrap_or_default();
    assert!(diff.contains("+    x + 3000 + 0"), "{diff}");
}
