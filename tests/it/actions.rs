//! Code actions end to end (SPEC §4, issue 4): the real binary over stdio, a chat double for a
//! local model (Ollama) and, where a test is about privacy or fallback, a second double
//! configured as a cloud model (OpenAI-compatible, `local = false`). Counts and contents are
//! asserted, never timings.

use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::double::{Behaviour, Fault, ModelDouble};
use crate::support::lsp::{LspClient, RequestId, mark, position, range};
use crate::workspace::{Editor, Workspace};

/// The client capabilities of an editor with progress and showDocument support.
fn full_capabilities() -> Value {
    json!({
        "window": { "workDoneProgress": true, "showDocument": { "support": true } }
    })
}

const USER_ACTIONS: &str = r#"
[actions.tests]
title = "Write unit tests"
prompt = "Write unit tests for this {language} code in {path}:\n{code}"
output = "document"

[actions.tidy]
title = "Tidy up"
prompt = "Tidy this {language} code:\n{code}"
output = "edit"

[actions.lint]
title = "Lint"
prompt = "Lint this {language} code:\n{code}"
output = "diagnostics"
"#;

/// A server with a local chat double and optionally a cloud one first in every chain.
struct Actions {
    local: ModelDouble,
    cloud: Option<ModelDouble>,
    lsp: LspClient,
    _dir: TempDir,
}

impl Actions {
    fn start(local: Behaviour) -> Actions {
        Actions::start_with(local, None, "", full_capabilities())
    }

    fn start_with(local: Behaviour, cloud: Option<Behaviour>, extra: &str, caps: Value) -> Actions {
        let local = ModelDouble::start(local);
        let cloud = cloud.map(ModelDouble::start);
        let dir = tempfile::tempdir().expect("temp workspace");
        let chain = if cloud.is_some() {
            r#"["cloud", "local"]"#
        } else {
            r#"["local"]"#
        };
        let mut config = format!(
            "[models.local]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"test-model\"\nlocal = true\ntimeout_ms = 20000\n\n",
            local.base_url()
        );
        if let Some(cloud) = &cloud {
            config.push_str(&format!(
                "[models.cloud]\nprovider = \"openai\"\nurl = \"{}/v1\"\nmodel = \"test-model\"\nlocal = false\ntimeout_ms = 20000\n\n",
                cloud.base_url()
            ));
        }
        config.push_str(&format!(
            "[routes]\ncomplete = [\"local\"]\nexplain = {chain}\nrefactor = {chain}\nreview = {chain}\n{USER_ACTIONS}\n{extra}\n"
        ));
        std::fs::write(dir.path().join("pilotfish.toml"), config).expect("write the config");
        let lsp = LspClient::spawn(&["--config", "pilotfish.toml"], &[], dir.path());
        lsp.initialize(caps, Value::Null);
        Actions {
            local,
            cloud,
            lsp,
            _dir: dir,
        }
    }

    /// Opens `name` with `$0`-marked text; returns the URI, the text and the cursor.
    fn open(&self, name: &str, language_id: &str, fixture: &str) -> (String, String, (u32, u32)) {
        let (text, line, col) = mark(fixture);
        if let Some(dir) = std::path::Path::new(name).parent() {
            std::fs::create_dir_all(self.lsp.root().join(dir)).expect("make the file's dir");
        }
        let uri = self.lsp.uri(name);
        self.lsp.open(&uri, language_id, &text);
        (uri, text, (line, col))
    }

    fn run(&self, command: &str, argument: Value) -> Result<Value, String> {
        self.lsp
            .request_and_wait(
                "workspace/executeCommand",
                json!({ "command": command, "arguments": [argument] }),
            )
            .map_err(|e| format!("{e:?}"))
    }

    /// Starts `command` at `cursor` and, once the answer streams in, inserts `line` at the
    /// top of the document (version 2); returns the command's request id.
    fn edit_while_streaming(
        &self,
        command: &str,
        uri: &str,
        cursor: (u32, u32),
        line: &str,
    ) -> RequestId {
        let id = self.lsp.request(
            "workspace/executeCommand",
            json!({ "command": command, "arguments": [at(uri, cursor)] }),
        );
        self.lsp.wait_for_notification("$/progress", |p| {
            p["value"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("characters"))
        });
        self.lsp.type_text(uri, 2, (0, 0), line);
        id
    }

    fn total_model_calls(&self) -> usize {
        self.local.requests() + self.cloud.as_ref().map_or(0, ModelDouble::requests)
    }
}

fn at(uri: &str, (line, col): (u32, u32)) -> Value {
    json!({ "uri": uri, "position": position(line, col) })
}

const RUST_FN: &str = "use std::fmt;\n\nfn add(a: i32, b: i32) -> i32 {\n    let s = a + b;$0\n    s\n}\n\nfn other() {}\n";

#[test]
fn code_actions_are_offered_at_a_function_and_for_a_selection_without_a_model_call() {
    let s = Actions::start(Behaviour::answer("unused"));
    let model_calls = {
        let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
        let offered = s
            .lsp
            .request_and_wait(
                "textDocument/codeAction",
                json!({
                    "textDocument": { "uri": uri },
                    "range": range(cursor, cursor),
                    "context": { "diagnostics": [] }
                }),
            )
            .expect("codeAction answers");
        let titles: Vec<&str> = offered
            .as_array()
            .expect("a list")
            .iter()
            .map(|a| a["title"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            titles,
            [
                "Pilotfish: Explain",
                "Pilotfish: Refactor",
                "Pilotfish: Security review",
                "Pilotfish: Lint",
                "Pilotfish: Write unit tests",
                "Pilotfish: Tidy up",
            ]
        );
        let commands: Vec<&str> = offered
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["command"]["command"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            commands,
            [
                "pilotfish.explain",
                "pilotfish.refactor",
                "pilotfish.review",
                "pilotfish.action",
                "pilotfish.action",
                "pilotfish.action",
            ]
        );
        let first = &offered[0]["command"]["arguments"][0];
        assert_eq!(first["uri"], json!(uri));
        assert_eq!(first["range"], range(cursor, cursor));
        assert_eq!(offered[3]["command"]["arguments"][0]["action"], "lint");

        // A selection travels in the arguments as it was.
        let selection = range((3, 4), (3, 18));
        let offered = s
            .lsp
            .request_and_wait(
                "textDocument/codeAction",
                json!({
                    "textDocument": { "uri": uri },
                    "range": selection,
                    "context": { "diagnostics": [] }
                }),
            )
            .expect("codeAction answers");
        assert_eq!(offered.as_array().unwrap().len(), 6);
        for action in offered.as_array().unwrap() {
            assert_eq!(action["command"]["arguments"][0]["range"], selection);
        }
        // `only` filters by kind.
        let only_refactor = s
            .lsp
            .request_and_wait(
                "textDocument/codeAction",
                json!({
                    "textDocument": { "uri": uri },
                    "range": selection,
                    "context": { "diagnostics": [], "only": ["refactor"] }
                }),
            )
            .expect("codeAction answers");
        assert_eq!(only_refactor.as_array().unwrap().len(), 1);
        assert_eq!(only_refactor[0]["title"], "Pilotfish: Refactor");
        s.total_model_calls()
    };
    assert_eq!(model_calls, 0, "offering actions never calls a model");
}

#[test]
fn initialize_advertises_code_actions_and_the_commands() {
    let local = ModelDouble::start(Behaviour::answer(""));
    let dir = dir_with_config(&format!(
        "[models.local]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"m\"\n",
        local.base_url()
    ));
    let lsp = LspClient::spawn(&["--config", "pilotfish.toml"], &[], dir.path());
    let init = lsp.initialize(json!({}), Value::Null);
    let caps = &init["capabilities"];
    assert!(caps["codeActionProvider"].is_object(), "{caps}");
    let commands = caps["executeCommandProvider"]["commands"].clone();
    for c in [
        "pilotfish.accept",
        "pilotfish.explain",
        "pilotfish.refactor",
        "pilotfish.review",
        "pilotfish.action",
    ] {
        assert!(
            commands.as_array().unwrap().contains(&json!(c)),
            "{commands}"
        );
    }
}

#[test]
fn explain_streams_with_progress_writes_a_file_and_opens_it() {
    let answer = "`add` returns the sum of its two arguments.";
    let s = Actions::start(Behaviour::answer(answer).chunks(4));
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let result = s
        .run("pilotfish.explain", at(&uri, cursor))
        .expect("explain succeeds");
    assert_eq!(result["markdown"], answer);
    assert_eq!(result["model"], "local");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("routes.explain"),
        "{result}"
    );
    assert_eq!(result["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(s.local.requests(), 1);
    let sent = s.local.last_model_call().unwrap().all_input_text();
    assert!(sent.contains("fn add(a: i32, b: i32) -> i32 {"), "{sent}");
    assert!(!sent.contains("fn other"), "only the target: {sent}");

    // Progress: created, then begin → report(s) → end on that token.
    let created = s.lsp.server_requests_of("window/workDoneProgress/create");
    assert_eq!(created.len(), 1);
    let token = created[0]["token"].clone();
    let progress: Vec<Value> = s
        .lsp
        .notifications_of("$/progress")
        .into_iter()
        .filter(|p| p["token"] == token)
        .collect();
    let kinds: Vec<&str> = progress
        .iter()
        .map(|p| p["value"]["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds.first(), Some(&"begin"), "{progress:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{progress:?}");
    assert!(kinds.contains(&"report"), "{progress:?}");
    assert_eq!(progress[0]["value"]["title"], "Pilotfish: Explain");

    // The page was written and opened.
    let shown = s.lsp.server_requests_of("window/showDocument");
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["uri"], result["uri"]);
    let file = shown[0]["uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("file://");
    let page = std::fs::read_to_string(file).expect("the explanation file");
    assert!(page.contains(answer), "{page}");
    assert!(page.contains("Answered by local"), "{page}");
}

/// A thinking model whose reasoning comes in its text (`<think>…</think>`, as llama-server
/// with `--reasoning-format none` passes it on): the Explain page shows only the answer, a
/// rewrite drafted in the reasoning is not the one applied, a draft of findings is not the
/// review, and an answer cut while the model still reasoned says so.
#[test]
fn a_thinking_models_reasoning_is_not_read_as_its_answer() {
    let explanation = "`add` returns the sum of its two arguments.";
    let s = Actions::start(Behaviour::answer(format!(
        "<think>\nThe user wants the purpose first.\n</think>\n\n{explanation}"
    )));
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let result = s.run("pilotfish.explain", at(&uri, cursor)).unwrap();
    assert_eq!(result["markdown"], explanation);

    s.local.set_behaviour(Behaviour::answer(
        "<think>Maybe\n```rust\nfn add(a: i32, b: i32) -> i32 {\n    let total = a + b + 0;\n    total\n}\n```\nNo, simpler.</think>\n```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```",
    ));
    let result = s.run("pilotfish.refactor", at(&uri, cursor)).unwrap();
    assert_eq!(result["applied"], true, "{result}");
    let edits = s.lsp.server_requests_of("workspace/applyEdit");
    assert_eq!(
        edits[0]["edit"]["changes"][&uri][0]["newText"],
        "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"
    );

    // A template that opened the block itself leaves only its end in the answer.
    s.local.set_behaviour(Behaviour::answer(
        "Line 3 looks risky: {\"findings\":[{\"severity\":\"error\",\"line_start\":3,\"line_end\":3,\"message\":\"draft\"}]}\nNo, it is fine.\n</think>\n{\"findings\": []}",
    ));
    let (review_uri, _, review_cursor) = s.open("app/run.py", "python", PY_REVIEW);
    let result = s
        .run("pilotfish.review", at(&review_uri, review_cursor))
        .unwrap();
    assert_eq!(result["findings"], json!([]), "{result}");

    s.local
        .set_behaviour(Behaviour::answer("<think>\nFirst, the loop adds"));
    let error = s.run("pilotfish.explain", at(&uri, cursor)).unwrap_err();
    assert!(error.contains("still reasoning"), "{error}");
}

/// A model server or proxy that answers a request for a stream with one JSON object (it
/// buffers, or does not stream) still explains: the answer is read whole.
#[test]
fn explain_from_a_server_that_never_streams() {
    let answer = "`add` returns the sum.";
    let s = Actions::start_with(
        Behaviour::answer("unused").never_streams(),
        Some(Behaviour::answer(answer).never_streams()),
        "",
        full_capabilities(),
    );
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let result = s
        .run("pilotfish.explain", at(&uri, cursor))
        .expect("explain succeeds");
    assert_eq!(result["markdown"], answer);
    assert_eq!(result["model"], "cloud");
    let cloud = s.cloud.as_ref().unwrap();
    let call = cloud.last_model_call().expect("a call");
    assert_eq!(call.body["stream"], json!(true), "a stream was asked for");
}

#[test]
fn explain_without_show_document_support_shows_a_message() {
    let answer = "It adds.";
    let s = Actions::start_with(Behaviour::answer(answer), None, "", json!({}));
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let result = s.run("pilotfish.explain", at(&uri, cursor)).unwrap();
    assert_eq!(result["markdown"], answer);
    assert!(s.lsp.server_requests_of("window/showDocument").is_empty());
    assert!(
        s.lsp
            .server_requests_of("window/workDoneProgress/create")
            .is_empty()
    );
    let message = s.lsp.wait_for_notification("window/showMessage", |p| {
        p["message"].as_str().unwrap_or("").contains(answer)
    });
    assert_eq!(message["type"], 3);
}

#[test]
fn refactor_applies_the_checked_rewrite_as_one_edit() {
    let answer = "Simpler:\n\n```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```\n";
    let s = Actions::start(Behaviour::answer(answer));
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let result = s.run("pilotfish.refactor", at(&uri, cursor)).unwrap();
    assert_eq!(result["applied"], true, "{result}");
    assert_eq!(result["model"], "local");
    let diff = result["diff"].as_str().unwrap();
    assert!(diff.contains("-    let s = a + b;"), "{diff}");
    assert!(diff.contains("+    a + b"), "{diff}");
    let edits = s.lsp.server_requests_of("workspace/applyEdit");
    assert_eq!(edits.len(), 1);
    let changes = &edits[0]["edit"]["changes"][&uri];
    assert_eq!(changes.as_array().unwrap().len(), 1);
    assert_eq!(changes[0]["range"], range((2, 0), (5, 1)));
    assert_eq!(
        changes[0]["newText"],
        "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"
    );
}

#[test]
fn a_refactor_answer_that_does_not_parse_makes_no_edit() {
    let answer = "```rust\nfn add(a: i32, b: i32 -> i32 {\n    a + b\n}\n```";
    let s = Actions::start(Behaviour::answer(answer));
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let error = s.run("pilotfish.refactor", at(&uri, cursor)).unwrap_err();
    assert!(error.contains("no edit"), "{error}");
    assert!(s.lsp.server_requests_of("workspace/applyEdit").is_empty());
    let message = s
        .lsp
        .wait_for_notification("window/showMessage", |p| p["type"] == 1);
    let text = message["message"].as_str().unwrap();
    assert!(text.contains("Pilotfish: Refactor: no edit"), "{text}");
    assert!(text.contains("syntax error"), "{text}");

    // Prose without code is no edit either.
    s.local
        .set_behaviour(Behaviour::answer("I would simplify it."));
    let error = s.run("pilotfish.refactor", at(&uri, cursor)).unwrap_err();
    assert!(error.contains("no edit"), "{error}");
    assert!(s.lsp.server_requests_of("workspace/applyEdit").is_empty());
}

#[test]
fn a_refactor_of_a_document_edited_meanwhile_is_not_applied() {
    let answer = "```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```";
    let slow = Behaviour::answer(answer)
        .chunks(6)
        .chunk_delay(Duration::from_millis(150));
    let s = Actions::start(slow);
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let id = s.edit_while_streaming("pilotfish.refactor", &uri, cursor, "// edited\n");
    let error = s.lsp.response(id).unwrap_err();
    assert!(error.message.contains("the document changed"), "{error:?}");
    assert!(s.lsp.server_requests_of("workspace/applyEdit").is_empty());
}

#[test]
fn a_refactor_edit_names_the_document_version_it_was_made_for() {
    let answer = "```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```";
    let mut caps = full_capabilities();
    caps["workspace"] = json!({ "workspaceEdit": { "documentChanges": true } });
    let s = Actions::start_with(Behaviour::answer(answer), None, "", caps);
    let (uri, _, (line, col)) = s.open("src/lib.rs", "rust", RUST_FN);
    // Version 2: a line above the function.
    s.lsp.type_text(&uri, 2, (0, 0), "// v2\n");
    let result = s
        .run("pilotfish.refactor", at(&uri, (line + 1, col)))
        .unwrap();
    assert_eq!(result["applied"], true, "{result}");
    let edits = s.lsp.server_requests_of("workspace/applyEdit");
    assert_eq!(edits.len(), 1);
    let edit = &edits[0]["edit"];
    assert!(edit.get("changes").is_none_or(Value::is_null), "{edit}");
    let changes = edit["documentChanges"].as_array().expect("documentChanges");
    assert_eq!(changes.len(), 1, "{edit}");
    assert_eq!(changes[0]["textDocument"]["uri"], json!(uri));
    assert_eq!(changes[0]["textDocument"]["version"], 2, "{edit}");
    assert_eq!(changes[0]["edits"][0]["range"], range((3, 0), (6, 1)));
    assert_eq!(
        changes[0]["edits"][0]["newText"],
        "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"
    );
}

const PY_REVIEW: &str = "import os\n\n\ndef run(cmd, name):\n    q = \"SELECT * FROM t WHERE n = '%s'\" % name$0\n    os.system(cmd)\n    return q\n";

#[test]
fn review_publishes_diagnostics_replaces_them_and_close_clears_them() {
    let answer = "Findings:\n```json\n{\"findings\":[{\"severity\":\"error\",\"cwe\":\"CWE-78\",\"line_start\":3,\"line_end\":3,\"message\":\"Shell command from input.\"},{\"severity\":\"warning\",\"cwe\":\"CWE-89\",\"line_start\":2,\"line_end\":2,\"message\":\"SQL built with %.\"}]}\n```";
    let s = Actions::start(Behaviour::answer(answer));
    let (uri, _, cursor) = s.open("app/run.py", "python", PY_REVIEW);
    let result = s.run("pilotfish.review", at(&uri, cursor)).unwrap();
    assert_eq!(result["model"], "local");
    let findings = result["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[0]["cwe"], "CWE-78");
    let sent = s.local.last_model_call().unwrap().all_input_text();
    assert!(
        sent.contains("3 |     os.system(cmd)"),
        "numbered lines: {sent}"
    );

    let published = s
        .lsp
        .wait_for_notification("textDocument/publishDiagnostics", |p| {
            p["uri"] == json!(uri)
        });
    let diags = published["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 2);
    assert_eq!(diags[0]["source"], "pilotfish");
    assert_eq!(diags[0]["code"], "CWE-78");
    assert_eq!(diags[0]["severity"], 1);
    assert_eq!(diags[0]["range"], range((5, 4), (5, 18)), "os.system(cmd)");
    assert_eq!(diags[1]["code"], "CWE-89");
    assert_eq!(diags[1]["severity"], 2);
    assert_eq!(
        diags[1]["range"],
        range((4, 4), (4, 47)),
        "the whole q = … line"
    );
    assert_eq!(findings[1]["range"], diags[1]["range"]);

    // A second review replaces the first's diagnostics.
    s.local.set_behaviour(Behaviour::answer(
        "{\"findings\":[{\"severity\":\"info\",\"cwe\":null,\"line_start\":4,\"line_end\":4,\"message\":\"Returns the query.\"}]}",
    ));
    let before = s.lsp.notification_count();
    s.run("pilotfish.review", at(&uri, cursor)).unwrap();
    let replaced =
        s.lsp
            .wait_for_notification_after(before, "textDocument/publishDiagnostics", |p| {
                p["uri"] == json!(uri)
            });
    let diags = replaced["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0]["severity"], 3);
    assert!(diags[0].get("code").is_none_or(Value::is_null));

    // Closing the file clears them.
    let before = s.lsp.notification_count();
    s.lsp.close(&uri);
    let cleared =
        s.lsp
            .wait_for_notification_after(before, "textDocument/publishDiagnostics", |p| {
                p["uri"] == json!(uri)
            });
    assert_eq!(cleared["diagnostics"], json!([]));
}

#[test]
fn a_review_of_a_document_edited_meanwhile_publishes_no_diagnostics() {
    let answer = "{\"findings\":[{\"severity\":\"error\",\"cwe\":\"CWE-78\",\"line_start\":3,\"line_end\":3,\"message\":\"Shell command from input.\"}]}";
    let slow = Behaviour::answer(answer)
        .chunks(6)
        .chunk_delay(Duration::from_millis(150));
    let s = Actions::start(slow);
    let (uri, _, cursor) = s.open("app/run.py", "python", PY_REVIEW);
    // The findings' lines would be one off after this edit.
    let id = s.edit_while_streaming("pilotfish.review", &uri, cursor, "# edited\n");
    let result = s
        .lsp
        .response(id)
        .expect("the findings are still the result");
    assert_eq!(result["published"], false, "{result}");
    assert_eq!(result["version"], 1, "{result}");
    assert_eq!(result["findings"].as_array().map(Vec::len), Some(1));
    let warned = s
        .lsp
        .wait_for_notification("window/showMessage", |p| p["type"] == 2);
    assert!(
        warned["message"]
            .as_str()
            .is_some_and(|m| m.contains("document changed")),
        "{warned}"
    );
    assert!(
        s.lsp
            .notifications_of("textDocument/publishDiagnostics")
            .is_empty(),
        "nothing published for a version that is gone"
    );
}

#[test]
fn a_malformed_review_answer_is_an_error_and_publishes_nothing() {
    let answers = [
        "Looks fine to me!",
        "{\"findings\":[{\"severity\":\"critical\",\"line_start\":1,\"line_end\":1,\"message\":\"x\"}]}",
        "{\"findings\":[{\"severity\":\"error\",\"line_start\":40,\"line_end\":41,\"message\":\"out of range\"}]}",
    ];
    let s = Actions::start(Behaviour::answer(answers[0]));
    let (uri, _, cursor) = s.open("app/run.py", "python", PY_REVIEW);
    for answer in answers {
        s.local.set_behaviour(Behaviour::answer(answer));
        let error = s.run("pilotfish.review", at(&uri, cursor)).unwrap_err();
        assert!(error.contains("no findings"), "{answer}: {error}");
    }
    assert!(
        s.lsp
            .notifications_of("textDocument/publishDiagnostics")
            .is_empty(),
        "no diagnostics invented"
    );
    let errors: Vec<Value> = s
        .lsp
        .notifications_of("window/showMessage")
        .into_iter()
        .filter(|m| m["type"] == 1)
        .collect();
    assert_eq!(errors.len(), 3);
}

/// Cancel while the answer streams: the model call's connection is dropped.
fn cancel_during_streaming(by_progress_token: bool) {
    let slow = Behaviour::answer("word ".repeat(40))
        .chunks(40)
        .chunk_delay(Duration::from_millis(150));
    let s = Actions::start(slow);
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let id = s.lsp.request(
        "workspace/executeCommand",
        json!({ "command": "pilotfish.explain", "arguments": [at(&uri, cursor)] }),
    );
    // Streaming has begun: a report with characters arrived.
    let report = s.lsp.wait_for_notification("$/progress", |p| {
        p["value"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("characters"))
    });
    if by_progress_token {
        s.lsp.notify(
            "window/workDoneProgress/cancel",
            json!({ "token": report["token"] }),
        );
    } else {
        s.lsp.cancel(id);
    }
    let error = s.lsp.response(id).unwrap_err();
    assert_eq!(error.code, -32800, "{error:?}");
    assert!(
        s.local
            .wait_for(|d| d.aborted() == 1, Duration::from_secs(10)),
        "the model call was dropped: {}",
        s.local.summary()
    );
    assert_eq!(s.local.requests(), 1);
    assert_eq!(s.local.completed(), 0);
    s.lsp.wait_for_notification("$/progress", |p| {
        p["token"] == report["token"] && p["value"]["kind"] == "end"
    });
}

#[test]
fn cancel_request_during_streaming_stops_the_model_call() {
    cancel_during_streaming(false);
}

#[test]
fn work_done_progress_cancel_during_streaming_stops_the_model_call() {
    cancel_during_streaming(true);
}

#[test]
fn user_actions_with_each_output_kind() {
    let s = Actions::start(Behaviour::answer(
        "## Tests\n\n```rust\n#[test]\nfn t() {}\n```",
    ));
    let (uri, text, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let arg = |name: &str| json!({ "uri": uri, "position": position(cursor.0, cursor.1), "action": name });

    // document
    let result = s.run("pilotfish.action", arg("tests")).unwrap();
    assert_eq!(result["kind"], "tests");
    assert!(result["markdown"].as_str().unwrap().starts_with("## Tests"));
    let sent = s.local.last_model_call().unwrap().all_input_text();
    assert!(
        sent.contains(
            "Write unit tests for this rust code in src/lib.rs:\nfn add(a: i32, b: i32) -> i32 {"
        ),
        "the template is filled: {sent}"
    );
    assert_eq!(s.lsp.server_requests_of("window/showDocument").len(), 1);

    // edit
    s.local.set_behaviour(Behaviour::answer(
        "```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```",
    ));
    let result = s.run("pilotfish.action", arg("tidy")).unwrap();
    assert_eq!(result["applied"], true);
    let edits = s.lsp.server_requests_of("workspace/applyEdit");
    assert_eq!(edits.len(), 1);
    assert_eq!(
        edits[0]["edit"]["changes"][&uri][0]["newText"],
        "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"
    );

    // diagnostics
    s.local.set_behaviour(Behaviour::answer(
        "{\"findings\":[{\"severity\":\"warning\",\"cwe\":null,\"line_start\":2,\"line_end\":2,\"message\":\"Needless binding.\"}]}",
    ));
    let result = s.run("pilotfish.action", arg("lint")).unwrap();
    assert_eq!(result["findings"].as_array().unwrap().len(), 1);
    let published = s
        .lsp
        .wait_for_notification("textDocument/publishDiagnostics", |p| {
            p["uri"] == json!(uri)
        });
    assert_eq!(published["diagnostics"][0]["range"], range((3, 4), (3, 18)));
    assert_eq!(published["diagnostics"][0]["source"], "pilotfish");
    assert!(text.contains("let s = a + b;"));

    // An unknown action is a clear error and calls nothing.
    let calls = s.local.requests();
    let error = s.run("pilotfish.action", arg("nope")).unwrap_err();
    assert!(error.contains("[actions.nope]"), "{error}");
    assert_eq!(s.local.requests(), calls);
}

const RUST_SECRET: &str = "fn connect() -> Client {\n    let key = \"sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c\";$0\n    let aws = \"AKIAZ7Q3R5T7V9X2B4D6\";\n    Client::new(key, aws)\n}\n";

#[test]
fn a_secret_in_the_file_never_reaches_the_cloud_model() {
    let s = Actions::start_with(
        Behaviour::answer("local answer"),
        Some(Behaviour::answer("It connects.")),
        "",
        full_capabilities(),
    );
    let (uri, _, cursor) = s.open("src/net.rs", "rust", RUST_SECRET);
    let result = s.run("pilotfish.explain", at(&uri, cursor)).unwrap();
    assert_eq!(
        result["model"], "cloud",
        "redaction keeps the cloud eligible"
    );
    let cloud = s.cloud.as_ref().unwrap();
    assert_eq!(cloud.requests(), 1);
    let sent = cloud.last_model_call().unwrap().all_input_text();
    assert!(sent.contains("fn connect()"), "{sent}");
    assert!(!sent.contains("sk-proj-4f9a8b7c"), "{sent}");
    assert!(!sent.contains("AKIAZ7Q3R5T7V9X2B4D6"), "{sent}");
    assert!(sent.contains("[REDACTED]"), "{sent}");
    assert_eq!(s.local.requests(), 0);
}

#[test]
fn with_redaction_off_a_secret_keeps_the_request_local() {
    let s = Actions::start_with(
        Behaviour::answer("local answer"),
        Some(Behaviour::answer("cloud answer")),
        "[privacy]\nredact_secrets = false\n",
        full_capabilities(),
    );
    let (uri, _, cursor) = s.open("src/net.rs", "rust", RUST_SECRET);
    let result = s.run("pilotfish.explain", at(&uri, cursor)).unwrap();
    assert_eq!(result["model"], "local");
    assert_eq!(s.cloud.as_ref().unwrap().requests(), 0);
    assert_eq!(s.local.requests(), 1);
}

#[test]
fn a_local_only_file_makes_no_call_to_the_cloud_model() {
    let s = Actions::start_with(
        Behaviour::answer("local answer"),
        Some(Behaviour::answer("cloud answer")),
        "",
        full_capabilities(),
    );
    let (uri, _, cursor) = s.open("secrets/lib.rs", "rust", RUST_FN);
    let result = s.run("pilotfish.explain", at(&uri, cursor)).unwrap();
    assert_eq!(result["model"], "local");
    assert_eq!(result["markdown"], "local answer");
    assert_eq!(s.cloud.as_ref().unwrap().requests(), 0);
    assert_eq!(s.local.requests(), 1);
}

#[test]
fn a_failing_cloud_model_falls_through_to_the_local_one() {
    let faults = [
        Fault::status(500),
        Fault::rate_limited(30),
        Fault::ResetMidStream { after_chunks: 1 },
    ];
    for fault in faults {
        let s = Actions::start_with(
            Behaviour::answer("local answer"),
            Some(Behaviour::failing(fault.clone())),
            "",
            full_capabilities(),
        );
        let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
        let result = s
            .run("pilotfish.explain", at(&uri, cursor))
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(result["model"], "local", "{fault:?}");
        assert_eq!(result["markdown"], "local answer");
        let reason = result["reason"].as_str().unwrap();
        assert!(reason.contains("after cloud failed"), "{fault:?}: {reason}");
        let attempts = result["attempts"].as_array().unwrap();
        assert_eq!(attempts.last().unwrap()["model"], "local");
        assert!(attempts[0]["error"].is_string(), "{attempts:?}");
        assert!(s.cloud.as_ref().unwrap().requests() >= 1);
        assert_eq!(s.local.requests(), 1);
    }
}

#[test]
fn when_every_model_fails_the_command_fails_with_one_clear_line() {
    let s = Actions::start(Behaviour::failing(Fault::status_with_body(
        404,
        "{\"error\":\"model 'test-model' not found\"}",
    )));
    let (uri, _, cursor) = s.open("src/lib.rs", "rust", RUST_FN);
    let error = s.run("pilotfish.explain", at(&uri, cursor)).unwrap_err();
    assert!(error.contains("no model answered"), "{error}");
    assert!(error.contains("not found"), "{error}");
    let progress = s.lsp.notifications_of("$/progress");
    assert_eq!(progress.last().unwrap()["value"]["kind"], "end");
}

// --- the command line -------------------------------------------------------------------

/// A temporary directory holding `config` as `pilotfish.toml`.
fn dir_with_config(config: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pilotfish.toml"), config).expect("write the config");
    dir
}

/// `pilotfish --config pilotfish.toml action ACTION SPOT` in `dir`, with a clean environment
/// but for the key that cloud models in these tests name (`PILOTFISH_TEST_KEY`).
fn cli_action(dir: &std::path::Path, action: &str, spot: &str) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pilotfish"));
    command
        .args(["--config", "pilotfish.toml", "action", action, spot])
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("PILOTFISH_TEST_KEY", "test-key");
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.output().expect("run pilotfish")
}

fn cli_setup(behaviour: Behaviour) -> (ModelDouble, TempDir) {
    let local = ModelDouble::start(behaviour);
    let dir = dir_with_config(&format!(
        "[models.local]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"test-model\"\nlocal = true\n\n[routes]\ncomplete = [\"local\"]\nexplain = [\"local\"]\nrefactor = [\"local\"]\nreview = [\"local\"]\n{USER_ACTIONS}",
        local.base_url()
    ));
    let (text, _, _) = mark(RUST_FN);
    std::fs::write(dir.path().join("lib.rs"), text).unwrap();
    (local, dir)
}

#[test]
fn cli_action_explain_refactor_review_and_a_user_action() {
    let (local, dir) = cli_setup(Behaviour::answer("It adds two numbers."));
    let out = cli_action(dir.path(), "explain", "lib.rs:4");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "It adds two numbers.");
    assert!(stderr.contains("answered by local"), "{stderr}");
    assert!(stderr.contains("routes.explain"), "{stderr}");

    local.set_behaviour(Behaviour::answer(
        "```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```",
    ));
    let out = cli_action(dir.path(), "refactor", "lib.rs:4:5");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("--- a/lib.rs\n+++ b/lib.rs\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-    let s = a + b;\n-    s\n+    a + b\n"),
        "{stdout}"
    );

    local.set_behaviour(Behaviour::answer(
        "{\"findings\":[{\"severity\":\"warning\",\"cwe\":\"CWE-190\",\"line_start\":2,\"line_end\":2,\"message\":\"May overflow.\"}]}",
    ));
    let out = cli_action(dir.path(), "review", "lib.rs:4");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "lib.rs:4: warning [CWE-190]: May overflow.");

    local.set_behaviour(Behaviour::answer("Some tests."));
    let out = cli_action(dir.path(), "tests", "lib.rs:4");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Some tests.");
    assert_eq!(local.requests(), 4);
}

#[test]
fn cli_action_exits_non_zero_when_every_model_fails_or_the_answer_is_unusable() {
    let (local, dir) = cli_setup(Behaviour::failing(Fault::status(500)));
    let out = cli_action(dir.path(), "explain", "lib.rs:4");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("explain: no model answered"), "{stderr}");
    assert!(out.stdout.is_empty());

    local.set_behaviour(Behaviour::answer("Not JSON at all."));
    let out = cli_action(dir.path(), "review", "lib.rs:4");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("review: no findings"), "{stderr}");

    let out = cli_action(dir.path(), "explain", "lib.rs");
    assert_eq!(out.status.code(), Some(2));
}

// --- answers cut at the token limit (issue 12, item 10) ----------------------------------

/// A config whose one model speaks `provider` to `double`; `settings` are more of its keys.
fn one_model_config(provider: &str, double: &ModelDouble, settings: &str) -> String {
    let (url, key) = match provider {
        "openai" => (format!("{}/v1", double.base_url()), ""),
        "anthropic" => (double.base_url(), "api_key_env = \"PILOTFISH_TEST_KEY\"\n"),
        _ => (double.base_url(), ""),
    };
    format!(
        "[models.local]\nprovider = \"{provider}\"\nurl = \"{url}\"\nmodel = \"test-model\"\nlocal = true\n{settings}{key}\n[routes]\ncomplete = [\"local\"]\nexplain = [\"local\"]\nrefactor = [\"local\"]\nreview = [\"local\"]\n"
    )
}

/// `pilotfish action ACTION lib.rs:4` on RUST_FN against `double` through `provider`, whose
/// model has the keys `settings`.
fn cli_action_through(
    provider: &str,
    double: &ModelDouble,
    settings: &str,
    action: &str,
) -> std::process::Output {
    let dir = dir_with_config(&one_model_config(provider, double, settings));
    std::fs::write(dir.path().join("lib.rs"), mark(RUST_FN).0).unwrap();
    cli_action(dir.path(), action, "lib.rs:4")
}

const EIGHT_TOKENS: &str = "max_output_tokens = 8\n";
const CUT_NOTE: &str =
    "answer cut at the 8-token limit; raise max_output_tokens in [models.local] for longer answers";

#[test]
fn an_explanation_cut_at_the_token_limit_says_so_on_every_wire() {
    // Eight tokens are 32 characters to the double, which stops there and reports why, as
    // each API does: finish_reason "length", stop_reason "max_tokens", done_reason "length".
    let long = "`add` returns the sum of its two arguments, and it never overflows silently.";
    let short = "`add` adds.";
    for provider in ["ollama", "openai", "llamacpp", "anthropic"] {
        let double = ModelDouble::start(Behaviour::answer(long));
        let out = cli_action_through(provider, &double, EIGHT_TOKENS, "explain");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{provider}: {stderr}");
        let head: String = long.chars().take(32).collect();
        assert_eq!(
            stdout.trim_end(),
            format!("{}\n\n_… {CUT_NOTE}._", head.trim_end()),
            "{provider}"
        );

        double.set_behaviour(Behaviour::answer(short));
        let out = cli_action_through(provider, &double, EIGHT_TOKENS, "explain");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim_end(),
            short,
            "{provider}: a whole answer gets no note"
        );
    }
}

/// A reasoning model (OpenAI's o-series, GPT-5) thinks unseen, and its thinking counts
/// towards the output limit: one that thinks past the limit answers nothing, and every
/// action says so and what to raise, not "empty explanation".
#[test]
fn a_model_that_thinks_past_its_limit_says_what_to_raise() {
    let double = ModelDouble::start(Behaviour::answer("`add` adds.").hidden_reasoning(2_000));
    for action in ["explain", "refactor", "review"] {
        let out = cli_action_through("openai", &double, "", action);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{action}: {stderr}");
        assert!(
            stderr.contains("no answer: the model spent its whole output limit before writing one")
                && stderr.contains(
                    "answer cut at the 1024-token limit; raise max_output_tokens in [models.local]"
                ),
            "{action}: {stderr}"
        );
    }
    // With room to think and answer, it answers.
    let out = cli_action_through("openai", &double, "max_output_tokens = 4096\n", "explain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "`add` adds."
    );
}

#[test]
fn a_review_cut_at_the_token_limit_says_why_it_is_unusable() {
    let findings = "{\"findings\":[{\"severity\":\"warning\",\"cwe\":\"CWE-190\",\"line_start\":2,\"line_end\":2,\"message\":\"May overflow.\"}]}";
    let double = ModelDouble::start(Behaviour::answer(findings));
    let out = cli_action_through("openai", &double, EIGHT_TOKENS, "review");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("review: no findings"), "{stderr}");
    assert!(stderr.contains(CUT_NOTE), "{stderr}");
}

#[test]
fn an_explanation_cut_at_the_token_limit_says_so_in_the_editor() {
    let double = ModelDouble::start(Behaviour::answer("word ".repeat(40)).chunks(5));
    let dir = dir_with_config(&one_model_config("ollama", &double, EIGHT_TOKENS));
    let lsp = LspClient::spawn(&["--config", "pilotfish.toml"], &[], dir.path());
    lsp.initialize(full_capabilities(), Value::Null);
    let (text, line, col) = mark(RUST_FN);
    let uri = lsp.uri("lib.rs");
    lsp.open(&uri, "rust", &text);
    let result = lsp
        .request_and_wait(
            "workspace/executeCommand",
            json!({ "command": "pilotfish.explain", "arguments": [at(&uri, (line, col))] }),
        )
        .expect("explain succeeds");
    let markdown = result["markdown"].as_str().unwrap_or_default();
    assert!(markdown.starts_with("word word"), "{result}");
    assert!(markdown.ends_with(&format!("_… {CUT_NOTE}._")), "{result}");
    let file = result["uri"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("file://")
        .to_string();
    let page = std::fs::read_to_string(&file).expect("the explanation page");
    assert!(page.contains(CUT_NOTE), "{page}");
}

/// A slow local model (a CPU writes an explanation for a minute) is given `timeout_ms` to
/// begin, not to finish: once it writes, it writes on (up to a quarter second a token it
/// was asked for); a model still writing at that limit, or whose stream goes quiet, gives the
/// text that came, with a note; one that sent nothing by its timeout is a failure.
#[test]
fn a_slow_model_that_has_begun_its_explanation_is_read_to_the_end() {
    // 20 pieces, 300 ms apart: 6 s of writing against a 1.5 s timeout.
    let slow = Behaviour::answer("word ".repeat(40))
        .chunks(20)
        .chunk_delay(Duration::from_millis(300));
    let double = ModelDouble::start(slow);
    let timeout = "timeout_ms = 1500\n";
    let out = cli_action_through("openai", &double, timeout, "explain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.matches("word").count(),
        40,
        "the whole answer: {stdout}"
    );
    assert!(!stdout.contains("answer cut"), "{stdout}");

    // Four tokens asked for: 1.5 s to begin and 1 s to write them; the model writes its
    // 16 characters in 8 pieces 600 ms apart.
    double.set_behaviour(
        Behaviour::answer("word ".repeat(40))
            .chunks(8)
            .chunk_delay(Duration::from_millis(600)),
    );
    let out = cli_action_through(
        "openai",
        &double,
        &format!("{timeout}max_output_tokens = 4\n"),
        "explain",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("wo"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with(
            "_… answer cut at the 2.5 s time limit, still being written (its time to begin, \
             then a quarter second a token of its 4); raise timeout_ms in [models.local] for a \
             model this slow._"
        ),
        "{stdout}"
    );
    assert_eq!(
        double.aborted(),
        1,
        "the stream was dropped: {}",
        double.summary()
    );

    // A stream that stops after two pieces: what came, once it has been quiet for the
    // timeout (at most 30 s).
    double.set_behaviour(
        Behaviour::answer("word ".repeat(40))
            .chunks(20)
            .fault(Fault::HangMidStream { after_chunks: 2 }),
    );
    let out = cli_action_through("openai", &double, timeout, "explain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("word word"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with("_… answer cut where the model server went quiet: nothing came for 1.5 s._"),
        "{stdout}"
    );

    // Nothing arrived in time: still an error, naming the timeout.
    double.set_behaviour(Behaviour::answer("late").delay(Duration::from_millis(2500)));
    let out = cli_action_through("openai", &double, timeout, "explain");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("within 1500 ms")
            && stderr.contains("needs more time: raise timeout_ms in [models.local]"),
        "{stderr}"
    );
}

/// A server that reads prompts slowly (a CPU's llama-server reads ~50 tokens a second) is
/// given, for an action's long prompt, twice the time it is expected to take to read it,
/// from what the server said of its earlier reads (`timings` of a completion): not cut at
/// `timeout_ms` while it still reads, which on a CPU a long function's prompt outlasts.
#[test]
fn a_server_measured_reading_slowly_is_given_the_time_a_long_prompt_takes() {
    let double = ModelDouble::start(
        Behaviour::answer("It totals the records.").reads_at(Duration::from_millis(4)),
    );
    let workspace = Workspace::new(&format!(
        "[models.local]\nprovider = \"llamacpp\"\nurl = \"{}\"\nmodel = \"test-model\"\nfim = \"native\"\ntimeout_ms = 2000\n\n[routes]\ncomplete = [\"local\"]\nexplain = [\"local\"]\n",
        double.base_url()
    ));
    let editor = workspace.serve();
    // A completion first: the server reads its prompt (~170 tokens) and says how long that
    // took.
    let mut small = String::new();
    for i in 0..12 {
        small.push_str(&format!(
            "def helper_{i}(values):\n    return sorted(values)[{i}]\n\n\n"
        ));
    }
    small.push_str("def first(values):\n    return $0\n");
    assert_eq!(
        editor.suggest("small.py", "python", &small).as_deref(),
        Some("It totals the records.")
    );
    // Explain on a function whose prompt takes the server ~3 s to read, past the timeout.
    let mut code = String::from("def process(records):\n    total = 0$0\n");
    for i in 0..120 {
        code.push_str(&format!(
            "    total += records[{i}] * weight_of(records, {i})\n"
        ));
    }
    code.push_str("    return total\n");
    let (text, line, col) = mark(&code);
    let uri = editor.lsp.uri("big.py");
    editor.lsp.open(&uri, "python", &text);
    let started = std::time::Instant::now();
    let result = editor.explain_at(&uri, line, col);
    assert_eq!(result["markdown"], "It totals the records.", "{result}");
    let explain = double
        .model_calls()
        .into_iter()
        .rfind(|c| c.path.ends_with("/chat/completions"))
        .expect("the explain call");
    let read = Duration::from_millis(4) * (explain.all_input_text().chars().count() as u32 / 4);
    assert!(
        read > Duration::from_millis(2000) && started.elapsed() >= read,
        "the server read for {read:?}, past the 2 s timeout"
    );
    editor.lsp.shutdown_and_exit();
}

/// `pilotfish action explain big.py:2` on a 120-line function, one model whose config
/// lines are `model`, against `double` (OpenAI-compatible): what it printed, and how long
/// it took.
fn cli_explain_long_function(
    double: &ModelDouble,
    model: &str,
) -> (std::process::Output, Duration) {
    let dir = dir_with_config(&format!(
        "[models.m]\nprovider = \"openai\"\nurl = \"{}/v1\"\nmodel = \"test-model\"\n{model}\n[routes]\ncomplete = [\"m\"]\nexplain = [\"m\"]\n",
        double.base_url()
    ));
    let mut code = String::from("def process(records):\n    total = 0\n");
    for i in 0..120 {
        code.push_str(&format!(
            "    total += records[{i}] * weight_of(records, {i})\n"
        ));
    }
    code.push_str("    return total\n");
    std::fs::write(dir.path().join("big.py"), code).unwrap();
    let started = std::time::Instant::now();
    let out = cli_action(dir.path(), "explain", "big.py:2");
    (out, started.elapsed())
}

/// A local server not measured yet (a one-shot `pilotfish action`, or an editor's first
/// action) is first asked to read the start of the prompt, answering one token: what it
/// says of that read gives the call the time the rest takes, and what it read stays in its
/// cache. A cloud model is never sent such a read, and keeps its timeout. The action's
/// deadline, planned before that read, moves by what the read showed the call needs: with
/// `max_output_tokens = 8` the plan (2 s to begin, 2 s to write, a second over) ends
/// before the server has read the prompt.
#[test]
fn a_local_server_not_measured_yet_first_reads_the_prompts_start() {
    let double = ModelDouble::start(
        Behaviour::answer("It totals the records.").reads_at(Duration::from_millis(4)),
    );
    let (out, took) = cli_explain_long_function(
        &double,
        "local = true\ntimeout_ms = 2000\nmax_output_tokens = 8\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "It totals the records.");
    let calls = double.model_calls();
    assert_eq!(calls.len(), 2, "{}", double.summary());
    let (measure, explain) = (&calls[0], &calls[1]);
    assert_eq!(measure.max_output_tokens(), Some(1));
    let (start, whole) = (measure.all_input_text(), explain.all_input_text());
    assert!(
        start.len() < whole.len() / 2,
        "the start only: {} of {} characters",
        start.len(),
        whole.len()
    );
    // The double reads 4 ms a token (four characters): past the 2 s timeout.
    let read = Duration::from_millis(whole.chars().count() as u64);
    assert!(
        read > Duration::from_secs(2) && took >= read,
        "{read:?} {took:?}"
    );

    // A server that sends nothing: the measuring read's timeout is the attempt's, not
    // waited out twice.
    let hung = ModelDouble::start(Behaviour::failing(Fault::Hang));
    let (out, took) = cli_explain_long_function(&hung, "local = true\ntimeout_ms = 1500\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("within 1500 ms"), "{stderr}");
    assert_eq!(hung.model_calls().len(), 1, "{}", hung.summary());
    assert!(took < Duration::from_millis(2_900), "{took:?}");

    // A cloud model: one call, cut at its timeout while the server still reads.
    let cloud = ModelDouble::start(
        Behaviour::answer("It totals the records.").reads_at(Duration::from_millis(4)),
    );
    let (out, _) = cli_explain_long_function(
        &cloud,
        "local = false\napi_key_env = \"PILOTFISH_TEST_KEY\"\ntimeout_ms = 2000\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("within 2000 ms"), "{stderr}");
    assert_eq!(cloud.model_calls().len(), 1, "{}", cloud.summary());
    assert_eq!(cloud.model_calls()[0].max_output_tokens(), Some(1024));
}

/// Opens `big.py`, a 203-line Python function (its 200 middle lines full of digits, which
/// Qwen reads as a token each): its URI, and the position inside it.
fn open_big_function(editor: &Editor) -> (String, u32, u32) {
    let mut code = String::from("def process(records):\n    total = 0$0\n");
    for i in 0..200 {
        code.push_str(&format!("    total += records[{i}] * {i}\n"));
    }
    code.push_str("    return total\n");
    let (text, line, col) = mark(&code);
    let uri = editor.lsp.uri("big.py");
    editor.lsp.open(&uri, "python", &text);
    (uri, line, col)
}

/// A model server that runs a shorter context than `context_window` says (llama-server's
/// `-c 4096` under the default 8192; here 2,048) and counts more tokens than the estimate
/// (Qwen reads each digit as one; here two characters a token): Explain on a big function is
/// refused once, then asked again with the code cut to what the refusal said the server
/// takes, and answered, with a note on how to have prompts fit at once; the next action is
/// built to fit at once. A rewrite too big for it says so, with the server's context.
#[test]
fn an_action_longer_than_the_servers_context_is_asked_again_cut_to_fit() {
    let double = ModelDouble::start(Behaviour::answer("It totals the records.").context(2048, 2));
    let workspace = Workspace::new(&format!(
        "[models.local]\nprovider = \"llamacpp\"\nurl = \"{}\"\nmodel = \"test-model\"\nfim = \"native\"\n\n[routes]\ncomplete = [\"local\"]\nexplain = [\"local\"]\nrefactor = [\"local\"]\n",
        double.base_url()
    ));
    let editor = workspace.serve();
    let (uri, line, col) = open_big_function(&editor);

    let result = editor.explain_at(&uri, line, col);
    assert_eq!(result["markdown"], "It totals the records.", "{result}");
    let notes = result["notes"].to_string();
    assert!(
        notes.contains("The code was truncated after line")
            && notes.contains(
                "local's server runs a context of 2048 tokens, fewer than context_window = 8192"
            )
            && notes.contains("Set context_window = 2048 under [models.local]"),
        "{notes}"
    );
    // First a read of the prompt's start to learn how fast the server reads (this local
    // server says nothing of it in its chat answers, so that is the only one).
    let mut calls = double.model_calls();
    assert_eq!(
        calls[0].max_output_tokens(),
        Some(1),
        "{}",
        double.summary()
    );
    calls.remove(0);
    assert_eq!(
        calls.len(),
        2,
        "refused, then asked cut: {}",
        double.summary()
    );
    let sent = |i: usize| calls[i].all_input_text().chars().count() as u64;
    assert!(sent(0) / 2 >= 2048, "the first was too long: {}", sent(0));
    assert!(sent(1) / 2 < 2048, "the second fits: {}", sent(1));

    // The server's context is remembered: the next action is built to fit at once, with the
    // same notes, and not refused first.
    let again = editor.explain_at(&uri, line, col);
    assert_eq!(again["markdown"], "It totals the records.", "{again}");
    assert_eq!(again["notes"], result["notes"], "{again}");
    let calls = double.model_calls();
    assert_eq!(calls.len(), 4, "one call more: {}", double.summary());
    assert!(calls[3].all_input_text().chars().count() / 2 < 2048);

    // A rewrite cannot be cut: it says why, with what the server runs, before any model
    // call (the server's context is known), as many times as it is asked, and completion
    // still answers after them.
    for _ in 0..3 {
        let refactor = editor.lsp.request_and_wait(
            "workspace/executeCommand",
            json!({
                "command": "pilotfish.refactor",
                "arguments": [{ "uri": uri, "position": { "line": line, "character": col } }]
            }),
        );
        let error = format!("{refactor:?}");
        assert!(
            error.contains("a rewrite of only part of it would delete the rest")
                && error.contains("local's server runs a context of 2048 tokens"),
            "{error}"
        );
    }
    assert_eq!(double.model_calls().len(), 4, "{}", double.summary());
    assert_eq!(
        editor
            .suggest("small.py", "python", "def one():\n    return $0\n")
            .as_deref(),
        Some("It totals the records.")
    );
    editor.lsp.shutdown_and_exit();
}

/// With a model after it in the chain, a server that refused a long prompt passes it on
/// whole to that model; and once its context is known, routing does not ask it again for
/// what it does not take: the next action goes to the model that holds the code whole, not
/// to it cut.
#[test]
fn a_server_known_to_take_less_passes_long_prompts_to_the_next_model() {
    let local = ModelDouble::start(Behaviour::answer("It totals the records.").context(2048, 2));
    let cloud = ModelDouble::start(Behaviour::answer("The whole function, explained."));
    let workspace = Workspace::new(&format!(
        "[models.local]\nprovider = \"llamacpp\"\nurl = \"{}\"\nmodel = \"test-model\"\nfim = \"native\"\n\n\
         [models.cloud]\nprovider = \"openai\"\nurl = \"{}/v1\"\nmodel = \"big\"\nlocal = false\n\
         api_key_env = \"PILOTFISH_TEST_KEY\"\ncontext_window = 128000\n\n\
         [routes]\ncomplete = [\"local\"]\nexplain = [\"local\", \"cloud\"]\n",
        local.base_url(),
        cloud.base_url()
    ));
    let editor = workspace.serve_with_env(&[("PILOTFISH_TEST_KEY", "test-key")]);
    let (uri, line, col) = open_big_function(&editor);

    for round in 1..=2 {
        let result = editor.explain_at(&uri, line, col);
        assert_eq!(
            result["markdown"], "The whole function, explained.",
            "round {round}: {result}"
        );
        let sent = cloud.model_calls()[round - 1].all_input_text();
        assert!(
            sent.contains("    return total"),
            "round {round}: the code whole"
        );
    }
    // The first round: a measuring read, then the prompt, refused. The second: none.
    assert_eq!(local.model_calls().len(), 2, "{}", local.summary());
    assert_eq!(cloud.model_calls().len(), 2, "{}", cloud.summary());
    editor.lsp.shutdown_and_exit();
}
