//! The command line (SPEC §2): `pilotfish config`, `pilotfish complete FILE:LINE:COL`, the
//! config lookup order (`--config`, then `$PILOTFISH_CONFIG`, then `.pilotfish.toml` in the
//! workspace), and bad config files: exit code 2 and a message naming the file, the key and
//! the reason.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{calls_at, config_toml, suggestion};
use crate::support::double::{Behaviour, ModelDouble};
use crate::support::lsp::{LspClient, mark};

/// Runs the real binary in `cwd` with the same hermetic environment as [`LspClient`].
fn run(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pilotfish"));
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("HOME", cwd)
        .env("XDG_CONFIG_HOME", cwd.join(".config"))
        .env("XDG_STATE_HOME", cwd.join(".local/state"));
    for name in ["PATH", "TMPDIR", "RUST_BACKTRACE"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run pilotfish")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config whose completion budget tells the files apart.
fn config_with_budget(budget_ms: u64) -> String {
    config_toml(
        "ollama",
        "native",
        "http://127.0.0.1:9",
        &format!("budget_ms = {budget_ms}\n"),
    )
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    let text = format!(
        "{}\n[models.cloud]\nprovider = \"openai\"\nurl = \"https://api.example.com/v1\"\nmodel = \"big\"\napi_key_env = \"MY_API_KEY\"\n",
        config_with_budget(250)
    );
    std::fs::write(&path, text).unwrap();
    let output = run(
        &["--config", "mine.toml", "config"],
        &[("MY_API_KEY", "sk-very-secret-value")],
        dir.path(),
    );
    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.contains("mine.toml"), "names where it came from: {out}");
    assert!(out.contains("[models.fast]"), "{out}");
    assert!(out.contains("budget_ms = 250"), "the file's value: {out}");
    assert!(
        out.contains("debounce_ms = 25"),
        "defaults merged in: {out}"
    );
    assert!(
        out.contains("cache_entries = 512"),
        "defaults merged in: {out}"
    );
    assert!(out.contains("MY_API_KEY"), "names the key variable: {out}");
    assert!(
        !out.contains("sk-very-secret-value"),
        "never the key: {out}"
    );
    // The printed configuration is itself a valid config file.
    let printed: Result<toml::Table, _> = out.parse();
    assert!(printed.is_ok(), "{printed:?}");
}

/// Runs `pilotfish --config bad.toml config` with `text` in bad.toml; asserts exit code 2
/// and a message naming the file, `key` and `reason`.
fn check_bad_config(text: &str, key: &str, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), text).unwrap();
    let output = run(&["--config", "bad.toml", "config"], &[], dir.path());
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml"), "names the file: {err}");
    assert!(err.contains(key), "names the key {key:?}: {err}");
    assert!(err.contains(reason), "says why ({reason:?}): {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(stdout(&output), "", "nothing printed as if it worked");
}

#[test]
fn a_bad_value_names_the_file_key_and_reason() {
    let text = config_with_budget(100).replace("budget_ms = 100", "budget_ms = \"soon\"");
    check_bad_config(&text, "completion.budget_ms", "invalid type");
}

#[test]
fn an_unknown_key_is_an_error_not_ignored() {
    let text = format!("{}budgetms = 3\n", config_with_budget(100));
    check_bad_config(&text, "budgetms", "unknown field");
}

#[test]
fn an_unknown_fim_template_names_the_model() {
    let text = config_with_budget(100).replace("fim = \"native\"", "fim = \"gpt\"");
    check_bad_config(&text, "models.fast.fim", "unknown FIM mode");
}

#[test]
fn a_config_that_is_not_toml_names_the_file() {
    check_bad_config("[models.fast\nprovider = ", "", "");
}

#[test]
fn a_missing_explicit_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&["--config", "absent.toml", "config"], &[], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("absent.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn complete_prints_the_suggestion_from_the_model() {
    let double = ModelDouble::start(Behaviour::answer("a + b\n"));
    let dir = tempfile::tempdir().unwrap();
    let config = config_toml("ollama", "native", &double.base_url(), "");
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    std::fs::write(dir.path().join("add.py"), "def add(a, b):\n    return \n").unwrap();
    // 1-based: line 2, column 12 is just after "return ".
    let output = run(
        &["--config", "p.toml", "complete", "add.py:2:12"],
        &[],
        dir.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "a + b\n");
    let call = double.last_model_call().expect("a model call");
    assert_eq!(call.prompt_text(), "def add(a, b):\n    return ");
    assert_eq!(call.suffix_text().as_deref(), Some("\n"));
}

#[test]
fn complete_rejects_a_bad_spot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), config_with_budget(100)).unwrap();
    std::fs::write(dir.path().join("a.py"), "x = 1\n").unwrap();
    for spot in ["a.py:0:1", "a.py:1", "a.py:9:1", "missing.py:1:1"] {
        let output = run(&["--config", "p.toml", "complete", spot], &[], dir.path());
        assert_eq!(output.status.code(), Some(2), "{spot}: {}", stderr(&output));
        assert_eq!(stdout(&output), "", "{spot}");
    }
}

/// Which file `pilotfish config` says it read.
fn origin_of(output: &Output) -> String {
    assert!(output.status.success(), "{}", stderr(output));
    stdout(output).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn config_lookup_order_flag_then_env_then_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("flag.toml"), config_with_budget(111)).unwrap();
    std::fs::write(root.join("env.toml"), config_with_budget(222)).unwrap();
    std::fs::write(root.join(".pilotfish.toml"), config_with_budget(333)).unwrap();
    let env_path = root.join("env.toml");
    let env = [("PILOTFISH_CONFIG", env_path.to_str().unwrap())];

    let both = run(&["--config", "flag.toml", "config"], &env, root);
    assert!(origin_of(&both).contains("flag.toml"), "{}", stdout(&both));
    assert!(stdout(&both).contains("budget_ms = 111"));

    let from_env = run(&["config"], &env, root);
    assert!(
        origin_of(&from_env).contains("env.toml"),
        "{}",
        stdout(&from_env)
    );
    assert!(stdout(&from_env).contains("budget_ms = 222"));

    let from_workspace = run(&["config"], &[], root);
    assert!(
        origin_of(&from_workspace).contains(".pilotfish.toml"),
        "{}",
        stdout(&from_workspace)
    );
    assert!(stdout(&from_workspace).contains("budget_ms = 333"));

    std::fs::remove_file(root.join(".pilotfish.toml")).unwrap();
    let built_in = run(&["config"], &[], root);
    assert!(
        origin_of(&built_in).contains("built-in"),
        "{}",
        stdout(&built_in)
    );
}

/// The server reads the same lookup order, with the workspace root from `initialize`.
#[test]
fn the_server_uses_env_config_over_the_workspace_file() {
    let workspace_model = ModelDouble::start(Behaviour::answer("from_workspace"));
    let env_model = ModelDouble::start(Behaviour::answer("from_env"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join(".pilotfish.toml"),
        config_toml("ollama", "native", &workspace_model.base_url(), ""),
    )
    .unwrap();
    std::fs::write(
        root.join("env.toml"),
        config_toml("ollama", "native", &env_model.base_url(), ""),
    )
    .unwrap();
    let env_path = root.join("env.toml");
    let (text, line, col) = mark("x = $0\n");

    let ask = |env: &[(&str, &str)]| -> Option<String> {
        let lsp = LspClient::spawn(&[], env, root);
        lsp.initialize(serde_json::json!({}), Value::Null);
        let uri = lsp.uri("x.py");
        lsp.open(&uri, "python", &text);
        let result = lsp
            .request_and_wait(
                "textDocument/inlineCompletion",
                serde_json::json!({
                    "textDocument": { "uri": uri },
                    "position": { "line": line, "character": col },
                    "context": { "triggerKind": 1 }
                }),
            )
            .expect("inlineCompletion answers");
        lsp.shutdown_and_exit();
        suggestion(&result)
    };
    assert_eq!(
        ask(&[("PILOTFISH_CONFIG", env_path.to_str().unwrap())]).as_deref(),
        Some("from_env")
    );
    assert_eq!(ask(&[]).as_deref(), Some("from_workspace"));
    assert_eq!(calls_at(&env_model, "x = "), 1);
    assert_eq!(calls_at(&workspace_model, "x = "), 1);
}
