//! The compiled session and the one routing input (issue 9, items 1 and 2): every routing
//! decision — completion, code actions, the one-shot commands — reads the day's spend and
//! the workspace root through the same builder. Shown with doubles: a priced cloud double
//! that spends the day's budget on the first action, and `pilotfish complete` in a workspace
//! whose `local_only` glob is relative to it. Counts and contents, never timings.

use serde_json::json;

use crate::harness::config_toml;
use crate::support::double::{Behaviour, ModelDouble};
use crate::support::lsp::{LspClient, mark, position};
use crate::workspace::{Workspace, cloud, complete_route, ollama};

/// A chat model pair for actions: `cloud` (OpenAI-compatible, priced so that one answer
/// costs more than the day's budget of $1) first, then the free local one.
const PRICED_CLOUD: &str = "cost_input_per_mtok = 100000.0\ncost_output_per_mtok = 100000.0\n";

#[test]
fn actions_past_the_days_budget_fall_back_to_the_free_model() {
    let cloud_double = ModelDouble::start(Behaviour::answer("From the cloud."));
    let local = ModelDouble::start(Behaviour::answer("From the local model."));
    let config = format!(
        "[models.local]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"test-model\"\nlocal = true\n\n\
         [models.cloud]\nprovider = \"openai\"\nurl = \"{}/v1\"\nmodel = \"test-model\"\nlocal = false\n{PRICED_CLOUD}\n\
         [routes]\ncomplete = [\"local\"]\nexplain = [\"cloud\", \"local\"]\n\n\
         [budget]\ndaily_usd = 1.0\n",
        local.base_url(),
        cloud_double.base_url(),
    );
    let workspace = Workspace::new(&config);
    let editor = workspace.serve();
    let (text, line, col) = mark("fn add(a: i32, b: i32) -> i32 {\n    a + b$0\n}\n");
    let uri = editor.lsp.uri("src/lib.rs");
    editor.lsp.open(&uri, "rust", &text);
    let explain = || editor.explain_at(&uri, line, col);

    let first = explain();
    assert_eq!(first["model"], "cloud", "{first:#}");
    assert_eq!(cloud_double.requests(), 1, "{}", cloud_double.summary());
    // That answer cost more than $1: the budget is spent, the cloud model is skipped.
    for n in 2..=3 {
        let next = explain();
        assert_eq!(next["model"], "local", "explain #{n}: {next:#}");
        assert_eq!(next["markdown"], "From the local model.");
    }
    assert_eq!(cloud_double.requests(), 1, "{}", cloud_double.summary());
    assert_eq!(local.requests(), 2, "{}", local.summary());
    let told: Vec<String> = editor
        .messages()
        .into_iter()
        .filter(|m| m.contains("budget"))
        .collect();
    assert_eq!(
        told.len(),
        1,
        "the user is told once that the budget is spent: {told:?}"
    );
    assert!(told[0].contains("$1.00"), "{told:?}");
}

#[test]
fn complete_on_the_command_line_honours_a_workspace_relative_local_only_glob() {
    let cloud_double = ModelDouble::start(Behaviour::answer("from_cloud"));
    let local = ModelDouble::start(Behaviour::answer("from_local"));
    let config = format!(
        "{}{}{}\n[privacy]\nlocal_only = [\"private/**\"]\n",
        cloud("cloud", &cloud_double.base_url(), ""),
        ollama("local", &local.base_url(), ""),
        complete_route(&["cloud", "local"]),
    );
    let workspace = Workspace::new(&config);
    let text = "def add(a, b):\n    return \n";
    workspace.write("private/calc.py", text);
    workspace.write("public/calc.py", text);

    let ran = workspace.run_configured(&["complete", "private/calc.py:2:12"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    assert_eq!(ran.stdout(), "from_local\n", "{}", ran.both());
    assert_eq!(cloud_double.requests(), 0, "{}", cloud_double.summary());

    // The same file outside the glob goes to the first model of the route: the glob, not
    // something else, kept the private one local.
    let ran = workspace.run_configured(&["complete", "public/calc.py:2:12"]);
    assert_eq!(ran.stdout(), "from_cloud\n", "{}", ran.both());
    assert_eq!(cloud_double.requests(), 1, "{}", cloud_double.summary());
    assert_eq!(local.requests(), 1, "{}", local.summary());

    // And the dry run agrees with the real call.
    let ran = workspace.run_configured(&["route", "private/calc.py:2:12", "--task", "complete"]);
    assert!(
        ran.stdout().contains("path matches private/**"),
        "{}",
        ran.both()
    );
}

#[test]
fn an_empty_array_of_settings_is_no_settings() {
    // Neovim encodes an empty Lua table as `[]`.
    let double = ModelDouble::start(Behaviour::answer("unused"));
    let dir = tempfile::tempdir().expect("temp workspace");
    let config = config_toml("ollama", "native", &double.base_url(), "");
    std::fs::write(dir.path().join("pilotfish.toml"), config).expect("write the config");
    let lsp = LspClient::spawn(&["--config", "pilotfish.toml"], &[], dir.path());
    lsp.initialize(json!({}), json!([]));
    lsp.notify(
        "workspace/didChangeConfiguration",
        json!({ "settings": [] }),
    );
    // A request after both: any message they caused has arrived before its answer.
    let _ = lsp.request_and_wait(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": "file:///never-opened.rs" },
            "range": { "start": position(0, 0), "end": position(0, 0) },
            "context": { "diagnostics": [] }
        }),
    );
    let shown = lsp.notifications_of("window/showMessage");
    assert!(shown.is_empty(), "no warning about the settings: {shown:?}");
}
