//! A temp workspace whose config names several models (each usually a model double), and the
//! two ways of driving the real binary in it: the command line ([`Workspace::run`]) and the
//! language server ([`Workspace::serve`]). Used by the routing, resilience, privacy and CLI
//! tests of issue 3, which need chains of two or more models where `harness` has one.
//!
//! Configs are written as TOML text so that a test reads like the file a user would write.

use std::process::{Command, Output};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::{calls_at, suggestion};
use crate::support::double::ModelDouble;
use crate::support::lsp::{LspClient, mark};

/// `[models.NAME]`: Ollama with native FIM at `url`, local, plus `extra` lines.
pub fn ollama(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[models.{name}]\nprovider = \"ollama\"\nurl = \"{url}\"\nmodel = \"test-model\"\nfim = \"native\"\n{extra}\n"
    )
}

/// `[models.NAME]` marked as a cloud model (`local = false`) although its double listens on
/// 127.0.0.1: what privacy and redaction rules apply to.
pub fn cloud(name: &str, url: &str, extra: &str) -> String {
    ollama(name, url, &format!("local = false\n{extra}"))
}

/// `[routes] complete = [..]`.
pub fn complete_route(chain: &[&str]) -> String {
    let names: Vec<String> = chain.iter().map(|n| format!("\"{n}\"")).collect();
    format!("[routes]\ncomplete = [{}]\n", names.join(", "))
}

/// Model calls `double` received for the requests `0..n` of a test whose n-th request asks
/// at the end of `value_{n} = ` — not for the prefetches that follow a shown suggestion,
/// which ask about the place after it.
pub fn request_calls(double: &ModelDouble, n: usize) -> usize {
    (0..n)
        .map(|i| calls_at(double, &format!("value_{i} = ")))
        .sum()
}

/// A temp directory holding `pilotfish.toml` (unless empty) and the files of a test.
pub struct Workspace {
    dir: TempDir,
}

impl Workspace {
    /// A workspace whose `pilotfish.toml` is `config`: with no `[completion]` table, the
    /// completion settings a user gets (the 100 ms budget).
    pub fn new(config: &str) -> Workspace {
        let workspace = Workspace::empty();
        workspace.write("pilotfish.toml", config);
        workspace
    }

    /// A workspace with no config file at all (the built-in default applies).
    pub fn empty() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp workspace"),
        }
    }

    /// The workspace's directory.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes `text` to `relative`, creating its directories.
    pub fn write(&self, relative: &str, text: &str) {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the file's directory");
        }
        std::fs::write(path, text).expect("write a workspace file");
    }

    /// Runs `pilotfish ARGS` here with the hermetic environment of [`LspClient`] plus `env`.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let cwd = self.dir.path();
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
        Ran(command.output().expect("run pilotfish"))
    }

    /// `pilotfish --config pilotfish.toml ARGS`.
    pub fn run_configured(&self, args: &[&str]) -> Ran {
        let mut all = vec!["--config", "pilotfish.toml"];
        all.extend_from_slice(args);
        self.run(&all, &[])
    }

    /// The language server on `pilotfish.toml`, initialized with this workspace as root.
    pub fn serve(&self) -> Editor {
        self.serve_with_env(&[])
    }

    /// [`Workspace::serve`], with `env` set for the server.
    pub fn serve_with_env(&self, env: &[(&str, &str)]) -> Editor {
        let lsp = LspClient::spawn(&["--config", "pilotfish.toml"], env, self.dir.path());
        lsp.initialize(json!({}), Value::Null);
        Editor { lsp }
    }
}

/// What a finished command printed.
pub struct Ran(pub Output);

impl Ran {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    /// Both streams, for assertion messages.
    pub fn both(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }
}

/// The server seen from an editor.
pub struct Editor {
    pub lsp: LspClient,
}

impl Editor {
    /// Opens `relative` (under the workspace root) with the `$0`-marked `fixture`, asks for an
    /// inline completion at the marker, and returns the suggestion's text.
    pub fn suggest(&self, relative: &str, language_id: &str, fixture: &str) -> Option<String> {
        let (text, line, col) = mark(fixture);
        let uri = self.lsp.uri(relative);
        self.lsp.open(&uri, language_id, &text);
        self.suggest_at(&uri, line, col)
    }

    /// Asks for an inline completion at (`line`, `col`) of the open document `uri`, and
    /// returns the suggestion's text.
    pub fn suggest_at(&self, uri: &str, line: u32, col: u32) -> Option<String> {
        let result = self
            .lsp
            .request_and_wait(
                "textDocument/inlineCompletion",
                json!({
                    "textDocument": { "uri": uri },
                    "position": { "line": line, "character": col },
                    "context": { "triggerKind": 2 }
                }),
            )
            .unwrap_or_else(|e| self.lsp.fail(&format!("inlineCompletion failed: {e:?}")));
        suggestion(&result)
    }

    /// Runs `pilotfish.explain` at (`line`, `col`) of the open document `uri` and returns
    /// its result; fails the test when the server answers an error.
    pub fn explain_at(&self, uri: &str, line: u32, col: u32) -> Value {
        self.lsp
            .request_and_wait(
                "workspace/executeCommand",
                json!({
                    "command": "pilotfish.explain",
                    "arguments": [{ "uri": uri, "position": { "line": line, "character": col } }]
                }),
            )
            .unwrap_or_else(|e| self.lsp.fail(&format!("explain failed: {e:?}")))
    }

    /// Every `window/showMessage` text so far.
    pub fn messages(&self) -> Vec<String> {
        self.lsp
            .notifications_of("window/showMessage")
            .iter()
            .filter_map(|p| p["message"].as_str().map(str::to_owned))
            .collect()
    }
}
