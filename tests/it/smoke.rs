//! A first round trip: editor → pilotfish → Ollama double → suggestion.

use serde_json::json;

use crate::support::double::{Behaviour, ModelDouble};
use crate::support::lsp::{LspClient, mark};

#[test]
fn inline_completion_round_trip_against_ollama() {
    let double = ModelDouble::start(Behaviour::answer("a + b\n}"));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[models.fast]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"qwen2.5-coder:1.5b\"\nfim = \"native\"\n",
        double.base_url()
    );
    std::fs::write(dir.path().join("pilotfish.toml"), config).unwrap();
    // `--stdio` as vscode-languageclient's stdio transport adds it: accepted, ignored.
    let lsp = LspClient::spawn(&["--stdio", "--config", "pilotfish.toml"], &[], dir.path());
    let init = lsp.initialize(json!({}), serde_json::Value::Null);
    assert_eq!(
        init["capabilities"]["inlineCompletionProvider"],
        json!(true)
    );
    let (text, line, col) = mark("fn add(a: i32, b: i32) -> i32 {\n    return $0\n}\n");
    let uri = lsp.uri("add.rs");
    lsp.open(&uri, "rust", &text);
    let result = lsp
        .request_and_wait(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": col}, "context": {"triggerKind": 1}}),
        )
        .unwrap();
    assert_eq!(result["items"][0]["insertText"], json!("a + b"), "{result}");
    assert_eq!(
        result["items"][0]["command"]["command"],
        json!("pilotfish.accept")
    );
    // The request's call (a prefetch for the place after the suggestion may follow it).
    let call = double.model_calls().into_iter().next().unwrap();
    assert_eq!(call.body["suffix"], json!("\n}\n"));
    lsp.shutdown_and_exit();
}
