//! What goes over the wire to each provider in each FIM mode, and what comes back to the
//! editor: the request body the model server receives (prompt layout, suffix, stop list,
//! provider-specific fields) and the post-processed suggestion.

use serde_json::{Value, json};

use crate::harness::{Options, Server, calls_not_after, suggestion};
use crate::support::double::{Behaviour, Endpoint, Health, ModelDouble, RecordedRequest};
use crate::workspace::{Editor, Workspace, complete_route};

/// A single-line spot: the rest of a `return` statement before its `;` (at a line's end a
/// model not measured yet streams the line and the one after it; that wire is
/// `completion::the_line_after_*`).
const FIXTURE: &str = "fn add(a: i32, b: i32) -> i32 {\n    return $0;\n}\n";
const PREFIX: &str = "fn add(a: i32, b: i32) -> i32 {\n    return ";
const SUFFIX: &str = ";\n}\n";

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

/// Mistral's Codestral, configured as an OpenAI-compatible model at Mistral's API with
/// native FIM, reached through the user's HTTP proxy (the double, which answers as Mistral
/// does a request to mistral.ai): completion fills in the middle at `/v1/fim/completions`
/// and Explain chats at `/v1/chat/completions`; neither is sent `stream_options`, which
/// Mistral refuses with a 422, and the usage of Mistral's last chunk is read.
#[test]
fn mistrals_codestral_fills_in_the_middle_at_its_own_path() {
    // Codestral's endpoint need not list its models: a 404 there is not a failure.
    let mistral = ModelDouble::start(Behaviour::answer("a + b").health(Health::Unlisted));
    let workspace = Workspace::new(&format!(
        "[models.codestral]\nprovider = \"openai\"\nurl = \"http://codestral.mistral.ai/v1\"\nmodel = \"codestral-latest\"\nfim = \"native\"\nlocal = false\napi_key_env = \"MISTRAL_API_KEY\"\n\n{}explain = [\"codestral\"]\n",
        complete_route(&["codestral"])
    ));
    let proxy = mistral.base_url();
    let editor = workspace.serve_with_env(&[
        ("HTTP_PROXY", proxy.as_str()),
        ("MISTRAL_API_KEY", "k-mistral"),
    ]);
    let (text, line, col) = crate::support::lsp::mark(FIXTURE);
    let uri = editor.lsp.uri("add.rs");
    editor.lsp.open(&uri, "rust", &text);
    assert_eq!(
        editor.suggest_at(&uri, line, col).as_deref(),
        Some("a + b"),
        "{}",
        mistral.summary()
    );
    let calls = |endpoint| -> Vec<RecordedRequest> {
        mistral
            .recorded()
            .into_iter()
            .filter(|r| r.endpoint == endpoint)
            .collect()
    };
    let fim = calls(Endpoint::MistralFim);
    assert_eq!(fim.len(), 1, "{}", mistral.summary());
    let call = &fim[0];
    assert_eq!(call.header("host"), Some("codestral.mistral.ai"));
    assert_eq!(call.header("authorization"), Some("Bearer k-mistral"));
    assert_eq!(call.body["prompt"], json!(PREFIX));
    assert_eq!(call.body["suffix"], json!(SUFFIX));
    assert!(call.body.get("stream_options").is_none(), "{}", call.body);

    mistral.set_behaviour(Behaviour::answer("`add` returns the sum of its arguments."));
    let explained = editor.explain_at(&uri, line, col);
    assert_eq!(
        explained["markdown"], "`add` returns the sum of its arguments.",
        "{explained}"
    );
    let chat = calls(Endpoint::OpenAiChat);
    assert_eq!(chat.len(), 1, "{}", mistral.summary());
    assert!(
        chat[0].body.get("stream_options").is_none(),
        "{}",
        chat[0].body
    );
    // Besides them, only the model list that opened the connection at the start (free).
    assert_eq!(
        (mistral.requests(), mistral.probes()),
        (2, 1),
        "{}",
        mistral.summary()
    );
    // (The editor shows the explanation as a message: it cannot open documents.)
    let warnings = editor.messages();
    assert!(
        warnings.iter().all(|m| !m.contains("no completion model")),
        "{warnings:?}"
    );
    editor.lsp.shutdown_and_exit();

    let env = [
        ("HTTP_PROXY", proxy.as_str()),
        ("MISTRAL_API_KEY", "k-mistral"),
    ];
    let ran = workspace.run(&["--config", "pilotfish.toml", "check"], &env);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    assert!(ran.stdout().contains("ok (codestral"), "{}", ran.both());
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
/// open files of the language family, in the order they were opened (so that touching one
/// does not reorder the prompt's start), named relative to the workspace; never a file of
/// another language, never the file being completed. A model marked `local = false` gets
/// none of it, nor does one not measured yet (it reads the compact window: see
/// [`measure_the_model`]).
#[test]
fn llamacpp_input_extra_carries_the_outlines_of_other_open_files() {
    let sent = |local: &str, measured: bool| {
        let double = ModelDouble::start(Behaviour::answer("parse_config(path)"));
        let workspace = Workspace::new(&format!(
            "[models.m]\nprovider = \"llamacpp\"\nurl = \"{}\"\nmodel = \"test-model\"\nfim = \"native\"\n{local}\n{}",
            double.base_url(),
            complete_route(&["m"])
        ));
        let editor = workspace.serve();
        if measured {
            measure_the_model(&editor, &double);
        }
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
        let fixture = "def main(path):\n    config = $0\n";
        parse_config_call(&editor, &double, fixture).body["input_extra"].clone()
    };
    assert_eq!(
        sent("", true),
        json!([
            { "filename": "util.py", "text": "def parse_config(path):\n" },
            { "filename": "models/store.py", "text": "class Store:\n    def get(self, key):\n" },
        ])
    );
    assert_eq!(sent("local = false", true), json!([]));
    assert_eq!(sent("", false), json!([]));
}

/// Other files' context goes only to a model measured to answer well inside the budget: a
/// slow one, or one not measured yet, reads the compact window without it (each prompt
/// token is time the user waits). One request in a Rust file (no Python outline) measures
/// the double; then it forgets the calls (a prefetch after that request may still come:
/// find calls by their place).
fn measure_the_model(editor: &Editor, double: &ModelDouble) {
    let uri = editor.lsp.uri("measure.rs");
    editor.lsp.open(&uri, "rust", "fn f() -> u32 {\n    \n}\n");
    assert!(
        editor.suggest_at(&uri, 1, 4).is_some(),
        "{}",
        double.summary()
    );
    editor.lsp.close(&uri);
    let settled = double.wait_for(|d| d.in_flight() == 0, std::time::Duration::from_secs(5));
    assert!(settled, "{}", double.summary());
    double.clear();
}

/// A function the user edited in another file, before the cursor went elsewhere.
const UTIL: &str = "import os\n\n\ndef parse_config(path):\n    with open(path) as f:\n        text = f.read()\n    return dict(line.split('=') for line in text.splitlines())\n";
const UTIL_EDITED: &str = "def parse_config(path):\n    with open(path) as f:\n        text = f.read()  # edited\n    return dict(line.split('=') for line in text.splitlines())\n";
/// A file much like the one being completed: what the user touched there would make the
/// model repeat it.
const TWIN: &str = "def main(path):\n    config = load(path)\n    return config\n";
const MAIN: &str = "def main(path):\n    config = $0\n    return config\n";

/// The user edits `util.py`, then `twin.py`, then asks for a completion in `main.py`, with
/// `model` (a `[models.m]` body) at a double answering `parse_config(path)`. Returns the
/// request's model call and the workspace folder's name.
fn touched_then_suggest(model: &str) -> (RecordedRequest, String) {
    let double = ModelDouble::start(Behaviour::answer("parse_config(path)"));
    let url = match model.contains("\"openai\"") {
        true => format!("{}/v1", double.base_url()),
        false => double.base_url(),
    };
    let workspace = Workspace::new(&format!(
        "[models.m]\nurl = \"{url}\"\nmodel = \"test-model\"\n{model}\n{}",
        complete_route(&["m"])
    ));
    let editor = workspace.serve();
    measure_the_model(&editor, &double);
    let lsp = &editor.lsp;
    let (util, twin) = (lsp.uri("util.py"), lsp.uri("twin.py"));
    lsp.open(&util, "python", UTIL);
    lsp.type_text(&util, 2, (5, 23), "  # edited");
    lsp.open(&twin, "python", TWIN);
    lsp.type_text(&twin, 2, (1, 17), "");
    let call = parse_config_call(&editor, &double, MAIN);
    let name = lsp
        .root()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (call, name)
}

/// Asks for a completion at `fixture` in `main.py` of a double answering
/// `parse_config(path)`, and returns the request's model call (a prefetch for the place after
/// the suggestion may follow it).
fn parse_config_call(editor: &Editor, double: &ModelDouble, fixture: &str) -> RecordedRequest {
    let got = editor.suggest("main.py", "python", fixture);
    assert_eq!(
        got.as_deref(),
        Some("parse_config(path)"),
        "{}",
        double.summary()
    );
    let shown = ["parse_config(path)"];
    assert_eq!(calls_not_after(double, &shown), 1, "{}", double.summary());
    let prefix = fixture.split_once("$0").map_or(fixture, |(p, _)| p);
    double
        .model_calls()
        .into_iter()
        .find(|c| !c.is_warm_up() && c.fim_prefix_text().ends_with(prefix))
        .unwrap_or_else(|| panic!("no call at the fixture: {}", double.summary()))
}

/// Context from what the user just touched (issue 12, item 8), for llama.cpp: after the
/// outlines, the function the user edited in another file, as it is now; not the chunk of a
/// file much like the one at the cursor (it would make the model repeat it). None of it for a
/// model marked `local = false`, and no chunks with `recent_chunks = 0`.
#[test]
fn llamacpp_input_extra_carries_the_chunks_the_user_just_touched() {
    let llamacpp = "provider = \"llamacpp\"\nfim = \"native\"";
    let (call, _) = touched_then_suggest(llamacpp);
    assert_eq!(
        call.body["input_extra"],
        json!([
            { "filename": "util.py", "text": "def parse_config(path):\n" },
            { "filename": "twin.py", "text": "def main(path):\n" },
            { "filename": "util.py", "text": UTIL_EDITED },
        ])
    );
    let (call, _) = touched_then_suggest(&format!("{llamacpp}\nlocal = false"));
    assert_eq!(call.body["input_extra"], json!([]));
    let (call, _) = touched_then_suggest(&format!("{llamacpp}\n[completion]\nrecent_chunks = 0"));
    assert_eq!(call.body["input_extra"].as_array().map(Vec::len), Some(2));
}

/// The same context in the repository layout Qwen2.5-Coder was trained on, for a local model
/// behind an OpenAI-compatible server with `fim = "qwen"`: the workspace's name, each other
/// file under its path, then the file with the hole. A cloud model gets the plain template.
#[test]
fn qwen_template_carries_other_files_in_its_repository_layout() {
    let qwen = "provider = \"openai\"\nfim = \"qwen\"";
    let (call, repo) = touched_then_suggest(qwen);
    let (prefix, suffix) = MAIN.split_once("$0").unwrap();
    assert_eq!(
        call.body["prompt"].as_str(),
        Some(
            format!(
                "<|repo_name|>{repo}\n\
                 <|file_sep|>util.py\ndef parse_config(path):\n\
                 <|file_sep|>twin.py\ndef main(path):\n\
                 <|file_sep|>util.py\n{UTIL_EDITED}\
                 <|file_sep|>main.py\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
            )
            .as_str()
        ),
    );
    let (call, _) = touched_then_suggest(&format!("{qwen}\nlocal = false"));
    assert_eq!(
        call.body["prompt"].as_str(),
        Some(format!("<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>").as_str()),
    );
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

/// A warm-up (the first edit at a new place, issue 12 item 6) reads the prompt that the
/// request there sends, other files' context included: for llama.cpp the same `input_extra`,
/// for the qwen template the same repository layout before the file being completed.
#[test]
fn a_warm_up_reads_the_other_files_the_request_sends() {
    let cases = [
        ("provider = \"llamacpp\"\nfim = \"native\"", "n_predict", 0),
        ("provider = \"openai\"\nfim = \"qwen\"", "max_tokens", 1),
    ];
    for (model, field, warm) in cases {
        let double = ModelDouble::start(Behaviour::answer("parse_config(path)"));
        let url = match field {
            "max_tokens" => format!("{}/v1", double.base_url()),
            _ => double.base_url(),
        };
        let workspace = Workspace::new(&format!(
            "[models.m]\nurl = \"{url}\"\nmodel = \"test-model\"\n{model}\n{}",
            complete_route(&["m"])
        ));
        let editor = workspace.serve();
        measure_the_model(&editor, &double);
        let lsp = &editor.lsp;
        let (util, main) = (lsp.uri("util.py"), lsp.uri("main.py"));
        lsp.open(&util, "python", UTIL);
        lsp.type_text(&util, 2, (5, 23), "  # edited");
        lsp.open(&main, "python", &MAIN.replace("$0", ""));
        lsp.type_text(&main, 2, (1, 13), "p");
        let is_warm = |c: &RecordedRequest| c.body[field] == json!(warm);
        let warmed = double.wait_for(
            |d| d.model_calls().iter().any(is_warm),
            std::time::Duration::from_secs(10),
        );
        assert!(warmed, "{model}: {}", double.summary());
        assert_eq!(
            editor.suggest_at(&main, 1, 14).as_deref(),
            Some("parse_config(path)")
        );
        let calls = double.model_calls();
        let in_main = |c: &&RecordedRequest| c.fim_prefix_text().starts_with("def main(path):");
        let warm_up = calls
            .iter()
            .filter(in_main)
            .find(|c| is_warm(c))
            .expect("the warm-up");
        let request = calls
            .iter()
            .filter(in_main)
            .find(|c| !is_warm(c))
            .expect("the request's call");
        let sent = |c: &RecordedRequest| match field {
            "n_predict" => c.body["input_extra"].to_string(),
            _ => c.prompt_text()[..c.prompt_text().find("<|fim_prefix|>").unwrap()].to_string(),
        };
        assert!(
            sent(request).contains("# edited"),
            "{model}: {}",
            sent(request)
        );
        assert_eq!(sent(warm_up), sent(request), "{model}");
    }
}
