//! What goes over the wire to each provider in each FIM mode, and what comes back to the
//! editor: the request body the model server receives (prompt layout, suffix, stop list,
//! provider-specific fields) and the post-processed suggestion.

use serde_json::{Value, json};

use crate::harness::{Options, Server, calls_not_after, suggestion};
use crate::support::double::{Behaviour, Endpoint, ModelDouble, RecordedRequest};
use crate::workspace::{Workspace, complete_route};

/// A single-line spot: the rest of a `return` statement.
const FIXTURE: &str = "fn add(a: i32, b: i32) -> i32 {\n    return $0\n}\n";
const PREFIX: &str = "fn add(a: i32, b: i32) -> i32 {\n    return ";
const SUFFIX: &str = "\n}\n";

/// Starts a server for `provider`/`fim` whose model answers `answer`, asks for one inline
/// completion at the fixture's cursor, and returns the suggestion and the model call.
fn complete_once(
    provider: &'static str,
    fim: &'static str,
    answer: &str,
) -> (Option<String>, RecordedRequest) {
    let server = Server::start_with(
        Behaviour::answer(answer),
        Options::default().provider(provider, fim),
    );
    let (uri, line, col) = server.open("add.rs", "rust", FIXTURE);
    let (result, call) = server.inline_and_call(&uri, line, col);
    let text = suggestion(&result);
    assert_eq!(
        calls_not_after(&server.double, &[text.as_deref().unwrap_or("\u{0}")]),
        1,
        "one model call for the request: {}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
    (text, call.expect("a model call"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// The template layout as each model family's reference code writes it.
fn rendered(template: &str) -> String {
    let (p, s) = (PREFIX, SUFFIX);
    match template {
        "qwen" => format!("<|fim_prefix|>{p}<|fim_suffix|>{s}<|fim_middle|>"),
        "starcoder" => format!("<fim_prefix>{p}<fim_suffix>{s}<fim_middle>"),
        "codellama" => format!("<PRE> {p} <SUF>{s} <MID>"),
        "deepseek" => format!("<｜fim▁begin｜>{p}<｜fim▁hole｜>{s}<｜fim▁end｜>"),
        "codestral" => format!("[SUFFIX]{s}[PREFIX] {p}"),
        other => panic!("no such template {other}"),
    }
}

/// Every special token of the template (end of text first).
fn template_tokens(template: &str) -> &'static [&'static str] {
    match template {
        "qwen" => &[
            "<|endoftext|>",
            "<|fim_prefix|>",
            "<|fim_suffix|>",
            "<|fim_middle|>",
            "<|fim_pad|>",
            "<|file_sep|>",
            "<|repo_name|>",
            "<|im_end|>",
        ],
        "starcoder" => &[
            "<|endoftext|>",
            "<fim_prefix>",
            "<fim_suffix>",
            "<fim_middle>",
            "<fim_pad>",
            "<file_sep>",
        ],
        "codellama" => &["<EOT>", "<PRE>", "<SUF>", "<MID>"],
        "deepseek" => &[
            "<｜end▁of▁sentence｜>",
            "<|EOT|>",
            "<｜fim▁begin｜>",
            "<｜fim▁hole｜>",
            "<｜fim▁end｜>",
        ],
        "codestral" => &["</s>", "[PREFIX]", "[SUFFIX]", "[MIDDLE]"],
        other => panic!("no such template {other}"),
    }
}

#[test]
fn openai_native_fim_sends_prompt_and_suffix() {
    let (text, call) = complete_once("openai", "native", "a + b\n}");
    assert_eq!(call.endpoint, Endpoint::OpenAiCompletions);
    assert_eq!(call.path, "/v1/completions");
    let body = &call.body;
    assert_eq!(body["model"], json!("test-model"));
    assert_eq!(body["prompt"], json!(PREFIX));
    assert_eq!(body["suffix"], json!(SUFFIX));
    assert_eq!(strings(&body["stop"]), vec!["\n"], "single line: {body}");
    assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0), "{body}");
    // A single-line answer stops at the line break.
    assert_eq!(text.as_deref(), Some("a + b"));
}

/// OpenAI-compatible `/completions` with a rendered template: the prompt carries the
/// template's tokens in the template's order, there is no `suffix` field, and the stop list
/// (capped at four by the API) leads with the line break, then the template's tokens.
fn check_openai_template(template: &'static str) {
    let tokens = template_tokens(template);
    let leaked = format!("a + b{}fn other() {{}}", tokens[0]);
    let (text, call) = complete_once("openai", template, &leaked);
    let body = &call.body;
    assert_eq!(call.endpoint, Endpoint::OpenAiCompletions);
    assert_eq!(body["prompt"], json!(rendered(template)), "{template}");
    assert!(body.get("suffix").is_none(), "{template}: {body}");
    let stop = strings(&body["stop"]);
    assert_eq!(
        stop[0], "\n",
        "{template}: single line stops at the line break"
    );
    assert!(
        stop.len() <= 4,
        "{template}: OpenAI takes at most 4 stops: {stop:?}"
    );
    assert!(
        stop.len() > 1,
        "{template}: the template's tokens: {stop:?}"
    );
    for token in &stop[1..] {
        assert!(tokens.contains(&token.as_str()), "{template}: {token:?}");
    }
    assert!(
        stop.iter().any(|s| s == tokens[0]),
        "{template}: the end-of-text token {:?} is a stop: {stop:?}",
        tokens[0]
    );
    // A leaked end-of-text token and what follows it are cut.
    assert_eq!(text.as_deref(), Some("a + b"), "{template}");
}

#[test]
fn openai_qwen_template() {
    check_openai_template("qwen");
}

#[test]
fn openai_starcoder_template() {
    check_openai_template("starcoder");
}

#[test]
fn openai_codellama_template() {
    check_openai_template("codellama");
}

#[test]
fn openai_deepseek_template() {
    check_openai_template("deepseek");
}

#[test]
fn openai_codestral_template() {
    check_openai_template("codestral");
}

#[test]
fn ollama_native_fim_sends_suffix_without_raw() {
    let (text, call) = complete_once("ollama", "native", "a + b\n}");
    assert_eq!(call.endpoint, Endpoint::OllamaGenerate);
    let body = &call.body;
    assert_eq!(body["model"], json!("test-model"));
    assert_eq!(body["prompt"], json!(PREFIX));
    assert_eq!(body["suffix"], json!(SUFFIX));
    assert!(body.get("raw").is_none(), "native FIM is not raw: {body}");
    assert_eq!(strings(&body["options"]["stop"]), vec!["\n"]);
    assert_eq!(text.as_deref(), Some("a + b"));
}

#[test]
fn ollama_template_fim_is_raw_with_every_template_token_as_stop() {
    let (text, call) = complete_once("ollama", "qwen", "a + b<|endoftext|>\n}");
    assert_eq!(call.endpoint, Endpoint::OllamaGenerate);
    let body = &call.body;
    assert_eq!(body["prompt"], json!(rendered("qwen")));
    assert_eq!(body["raw"], json!(true));
    assert!(body.get("suffix").is_none(), "{body}");
    let stop = strings(&body["options"]["stop"]);
    for token in template_tokens("qwen") {
        assert!(stop.iter().any(|s| s == token), "{token:?} in {stop:?}");
    }
    assert!(stop.iter().any(|s| s == "\n"), "single line: {stop:?}");
    assert_eq!(text.as_deref(), Some("a + b"));
}

#[test]
fn llamacpp_infill_sends_prefix_suffix_and_time_limit() {
    let (text, call) = complete_once("llamacpp", "native", "a + b\n}");
    assert_eq!(call.endpoint, Endpoint::LlamaInfill);
    let body = &call.body;
    assert_eq!(body["input_prefix"], json!(PREFIX));
    assert_eq!(body["input_suffix"], json!(SUFFIX));
    // After its first line, the model may go on generating for the completion budget
    // (llama.cpp's `t_max_predict_ms`; 100 ms by default).
    assert_eq!(body["t_max_predict_ms"], json!(100));
    assert!(body["n_predict"].as_u64().is_some_and(|n| n > 0), "{body}");
    assert!(strings(&body["stop"]).iter().any(|s| s == "\n"), "{body}");
    assert_eq!(text.as_deref(), Some("a + b"));
}

/// Context from other files (issue 5, llama.cpp's `input_extra`): the outlines of the other
/// open files of the language family, most recently opened first, named relative to the
/// workspace; never a file of another language, never the file being completed. A model
/// marked `local = false` gets none of it.
#[test]
fn llamacpp_input_extra_carries_the_outlines_of_other_open_files() {
    let sent = |local: &str| {
        let double = ModelDouble::start(Behaviour::answer("parse_config(path)"));
        let workspace = Workspace::new(&format!(
            "[models.m]\nprovider = \"llamacpp\"\nurl = \"{}\"\nmodel = \"test-model\"\nfim = \"native\"\n{local}\n{}",
            double.base_url(),
            complete_route(&["m"])
        ));
        let editor = workspace.serve();
        let files = [
            (
                "util.py",
                "python",
                "import os\n\ndef parse_config(path):\n    return {}\n",
            ),
            (
                "models/store.py",
                "python",
                "class Store:\n    def get(self, key):\n        return None\n",
            ),
            ("notes.rs", "rust", "fn unrelated() {}\n"),
        ];
        for (name, language_id, text) in files {
            editor.lsp.open(&editor.lsp.uri(name), language_id, text);
        }
        let got = editor.suggest("main.py", "python", "def main(path):\n    config = $0\n");
        assert_eq!(
            got.as_deref(),
            Some("parse_config(path)"),
            "{}",
            double.summary()
        );
        // The request's call (a prefetch for the place after the suggestion may follow).
        let shown = ["parse_config(path)"];
        assert_eq!(calls_not_after(&double, &shown), 1, "{}", double.summary());
        double.model_calls()[0].body["input_extra"].clone()
    };
    assert_eq!(
        sent(""),
        json!([
            { "filename": "models/store.py", "text": "class Store:\n    def get(self, key):\n" },
            { "filename": "util.py", "text": "def parse_config(path):\n" },
        ])
    );
    assert_eq!(sent("local = false"), json!([]));
}

/// How many tokens completion asks for: 64 for a single line, 256 for a block, under the
/// model's `max_output_tokens` (1024 by default, sized for actions).
#[test]
fn completion_asks_for_few_tokens_whatever_the_models_output_limit() {
    let asked = |multiline: &str| {
        let server = Server::start_with(
            Behaviour::answer("x"),
            Options::default()
                .provider("llamacpp", "native")
                .completion(&format!("multiline = \"{multiline}\"\n")),
        );
        let (uri, line, col) = server.open("add.rs", "rust", FIXTURE);
        server.inline(&uri, line, col);
        let calls = server.double.model_calls();
        server.lsp.shutdown_and_exit();
        calls[0].body["n_predict"].clone()
    };
    assert_eq!(asked("never"), json!(64));
    assert_eq!(asked("always"), json!(256));
}
