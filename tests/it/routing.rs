//! Routing seen from the editor (issue 3, SPEC §6): `[[rules]]` for completion pick the model
//! by language, by path and by the size of the enclosing function, and anything else takes
//! `[routes] complete`; a model whose context window cannot hold the prompt is skipped. Each
//! model is a double answering its own name, and the doubles' counts prove who was asked
//! (counting the requests' calls, not the prefetches that follow a shown suggestion).

use serde_json::{Value, json};

use crate::harness::calls_not_after;
use crate::support::double::{Behaviour, ModelDouble};
use crate::support::lsp::mark;
use crate::workspace::{Editor, Workspace, complete_route, ollama};

/// Two doubles, `a` (the default route) and `b` (what the rule picks), answering "from_a"
/// and "from_b", and a server whose config adds `rule` (a `[[rules]]` table).
struct TwoModels {
    a: ModelDouble,
    b: ModelDouble,
    editor: Editor,
    _workspace: Workspace,
}

impl TwoModels {
    fn with_rule(rule: &str) -> TwoModels {
        let a = ModelDouble::start(Behaviour::answer("from_a"));
        let b = ModelDouble::start(Behaviour::answer("from_b"));
        let workspace = Workspace::new(&format!(
            "{}{}{}\n{rule}\n",
            ollama("a", &a.base_url(), ""),
            ollama("b", &b.base_url(), ""),
            complete_route(&["a"])
        ));
        let editor = workspace.serve();
        TwoModels {
            a,
            b,
            editor,
            _workspace: workspace,
        }
    }

    /// Calls to `a` and `b` for the requests.
    fn counts(&self) -> (usize, usize) {
        let shown = ["from_a", "from_b"];
        (
            calls_not_after(&self.a, &shown),
            calls_not_after(&self.b, &shown),
        )
    }
}

#[test]
fn a_language_rule_sends_python_to_its_model_and_rust_to_the_default_route() {
    let setup = TwoModels::with_rule(
        "[[rules]]\ntask = \"complete\"\nwhen = { languages = [\"python\"] }\nuse = [\"b\"]",
    );
    let editor = &setup.editor;
    assert_eq!(
        editor
            .suggest("calc.py", "python", "def total(xs):\n    return $0\n")
            .as_deref(),
        Some("from_b")
    );
    assert_eq!(setup.counts(), (0, 1));
    assert_eq!(
        editor
            .suggest(
                "calc.rs",
                "rust",
                "fn total(xs: &[u32]) -> u32 {\n    let sum = $0\n}\n"
            )
            .as_deref(),
        Some("from_a")
    );
    assert_eq!(setup.counts(), (1, 1));
    editor.lsp.shutdown_and_exit();
}

#[test]
fn a_rule_for_another_task_does_not_apply_to_completion() {
    let setup = TwoModels::with_rule(
        "[[rules]]\ntask = \"review\"\nwhen = { languages = [\"python\"] }\nuse = [\"b\"]",
    );
    assert_eq!(
        setup
            .editor
            .suggest("calc.py", "python", "x = $0\n")
            .as_deref(),
        Some("from_a")
    );
    assert_eq!(setup.counts(), (1, 0));
    setup.editor.lsp.shutdown_and_exit();
}

#[test]
fn a_paths_rule_sends_matching_files_to_its_model() {
    let setup = TwoModels::with_rule(
        "[[rules]]\ntask = \"complete\"\nwhen = { paths = [\"legacy/**\"] }\nuse = [\"b\"]",
    );
    let editor = &setup.editor;
    assert_eq!(
        editor
            .suggest("legacy/billing/old.py", "python", "old = $0\n")
            .as_deref(),
        Some("from_b")
    );
    assert_eq!(
        editor
            .suggest("src/billing/new.py", "python", "new = $0\n")
            .as_deref(),
        Some("from_a")
    );
    assert_eq!(setup.counts(), (1, 1));
    editor.lsp.shutdown_and_exit();
}

/// A Python function of `lines` lines with the cursor on its last line.
fn function_of(lines: usize) -> String {
    let mut text = String::from("def compute(x):\n");
    for i in 0..lines.saturating_sub(2) {
        text.push_str(&format!("    x = x + {i}\n"));
    }
    text.push_str("    return $0\n");
    text
}

#[test]
fn a_min_lines_rule_sends_long_functions_to_its_model() {
    let setup = TwoModels::with_rule(
        "[[rules]]\ntask = \"complete\"\nwhen = { min_lines = 20 }\nuse = [\"b\"]",
    );
    let editor = &setup.editor;
    assert_eq!(
        editor
            .suggest("long.py", "python", &function_of(30))
            .as_deref(),
        Some("from_b")
    );
    assert_eq!(setup.counts(), (0, 1));
    assert_eq!(
        editor
            .suggest("short.py", "python", &function_of(5))
            .as_deref(),
        Some("from_a")
    );
    assert_eq!(setup.counts(), (1, 1));
    editor.lsp.shutdown_and_exit();
}

#[test]
fn the_first_matching_rule_wins() {
    let setup = TwoModels::with_rule(concat!(
        "[[rules]]\ntask = \"complete\"\nwhen = { paths = [\"tools/**\"] }\nuse = [\"a\"]\n\n",
        "[[rules]]\ntask = \"complete\"\nwhen = { languages = [\"python\"] }\nuse = [\"b\"]\n",
    ));
    let editor = &setup.editor;
    assert_eq!(
        editor
            .suggest("tools/gen.py", "python", "gen = $0\n")
            .as_deref(),
        Some("from_a")
    );
    assert_eq!(
        editor
            .suggest("app/main.py", "python", "main = $0\n")
            .as_deref(),
        Some("from_b")
    );
    assert_eq!(setup.counts(), (1, 1));
    editor.lsp.shutdown_and_exit();
}

#[test]
fn a_model_whose_context_window_is_too_small_is_skipped_for_a_big_prompt() {
    // `tiny` holds 300 tokens: its 256 output tokens leave ~44 for the prompt.
    let tiny = ModelDouble::start(Behaviour::answer("from_tiny"));
    let big = ModelDouble::start(Behaviour::answer("from_big"));
    let workspace = Workspace::new(&format!(
        "{}{}{}",
        ollama(
            "tiny",
            &tiny.base_url(),
            "context_window = 300\nmax_output_tokens = 256\n"
        ),
        ollama("big", &big.base_url(), ""),
        complete_route(&["tiny", "big"])
    ));
    let editor = workspace.serve();
    let mut long = String::new();
    for i in 0..40 {
        long.push_str(&format!("setting_{i:02} = compute_setting({i})\n"));
    }
    long.push_str("last = $0\n");
    assert_eq!(
        editor.suggest("big.py", "python", &long).as_deref(),
        Some("from_big")
    );
    let shown = ["from_tiny", "from_big"];
    let counts = || {
        (
            calls_not_after(&tiny, &shown),
            calls_not_after(&big, &shown),
        )
    };
    assert_eq!(counts(), (0, 1));
    // A prompt that fits still goes to the first model.
    assert_eq!(
        editor.suggest("small.py", "python", "x = $0\n").as_deref(),
        Some("from_tiny")
    );
    assert_eq!(counts(), (1, 1));
    editor.lsp.shutdown_and_exit();
}

#[test]
fn a_rule_can_send_completion_to_a_chat_only_model() {
    // Issue 3: "Chat-only models can serve completion through a chat prompt when a rule
    // sends completion to them."
    let fim = ModelDouble::start(Behaviour::answer("from_fim"));
    let chat = ModelDouble::start(Behaviour::answer("from_chat"));
    let workspace = Workspace::new(&format!(
        "{}[models.chat]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"chat-model\"\n\n{}\n{}",
        ollama("fim", &fim.base_url(), ""),
        chat.base_url(),
        complete_route(&["fim"]),
        "[[rules]]\ntask = \"complete\"\nwhen = { languages = [\"python\"] }\nuse = [\"chat\"]\n"
    ));
    let editor = workspace.serve();
    assert_eq!(
        editor
            .suggest("calc.py", "python", "def total(xs):\n    return $0\n")
            .as_deref(),
        Some("from_chat")
    );
    // The request's chat call (a prefetch for the place after the suggestion may follow).
    let calls: Vec<_> = chat
        .model_calls()
        .into_iter()
        .filter(|c| c.path == "/api/chat" && !c.all_input_text().contains("from_chat"))
        .collect();
    assert_eq!(calls.len(), 1, "{}", chat.summary());
    let call = &calls[0];
    assert!(
        call.all_input_text()
            .contains("def total(xs):\n    return "),
        "the code before the cursor is in the chat prompt: {}",
        call.all_input_text()
    );
    assert_eq!(fim.requests(), 0, "{}", fim.summary());
    // Rust files keep the FIM route.
    assert_eq!(
        editor
            .suggest("calc.rs", "rust", "fn total() -> u32 {\n    $0\n}\n")
            .as_deref(),
        Some("from_fim")
    );
    editor.lsp.shutdown_and_exit();
}

/// A thinking model (Qwen3, DeepSeek-R1) on Ollama or llama-server thinks by default within
/// its output limit, which for a completion is a few dozen tokens: sent completion by a rule,
/// it is asked not to think (Ollama's `think: false`, llama-server's
/// `chat_template_kwargs.enable_thinking: false`) and suggests; an Explain leaves it to think.
#[test]
fn a_thinking_model_sent_completion_is_asked_not_to_think() {
    let not_thinking = |body: &Value, provider: &str| match provider {
        "ollama" => body["think"] == json!(false),
        _ => body["chat_template_kwargs"]["enable_thinking"] == json!(false),
    };
    for provider in ["ollama", "llamacpp"] {
        let chat = ModelDouble::start(Behaviour::answer("sum(xs)").hidden_reasoning(2_000));
        let workspace = Workspace::new(&format!(
            "[models.chat]\nprovider = \"{provider}\"\nurl = \"{}\"\nmodel = \"qwen3:4b\"\nmax_output_tokens = 4096\n\n{}explain = [\"chat\"]\n",
            chat.base_url(),
            complete_route(&["chat"]),
        ));
        let editor = workspace.serve();
        assert_eq!(
            editor
                .suggest("sum.py", "python", "def total(xs):\n    return $0\n")
                .as_deref(),
            Some("sum(xs)"),
            "{provider}: {}",
            chat.summary()
        );
        let completion = chat.last_model_call().expect("a model call");
        assert!(
            not_thinking(&completion.body, provider),
            "{provider}: {}",
            completion.body
        );

        let (text, line, col) = mark("def total(xs):\n    return sum(xs)$0\n");
        let uri = editor.lsp.uri("explained.py");
        editor.lsp.open(&uri, "python", &text);
        editor.explain_at(&uri, line, col);
        // The Explain is the one call left to think (prefetches are completions too).
        let thinking: Vec<_> = chat
            .model_calls()
            .into_iter()
            .filter(|c| !not_thinking(&c.body, provider))
            .collect();
        assert_eq!(thinking.len(), 1, "{provider}: {}", chat.summary());
        assert!(
            thinking[0].all_input_text().contains("explained.py"),
            "{provider}: {}",
            thinking[0].all_input_text()
        );
        editor.lsp.shutdown_and_exit();
    }
}

#[test]
fn a_thinking_chat_models_reasoning_is_never_ghost_text() {
    // A reasoning model (R1, Qwen3, QwQ behind a server that passes `<think>` through) that a
    // rule sends completion to: the suggestion is what follows its reasoning, and an answer
    // cut at the token limit while it was still thinking suggests nothing.
    let thinks = |prompt: &str| {
        if prompt.contains("def total(") {
            "<think>\nThe user sums the list.\n</think>\nsum(xs)".to_owned()
        } else {
            "<think>\nFirst, what does the loop".to_owned()
        }
    };
    let chat = ModelDouble::start(Behaviour::answer_with(move |call| {
        thinks(&call.all_input_text())
    }));
    let workspace = Workspace::new(&format!(
        "[models.chat]\nprovider = \"openai\"\nurl = \"{}/v1\"\nmodel = \"chat-model\"\n\n{}",
        chat.base_url(),
        complete_route(&["chat"]),
    ));
    let editor = workspace.serve();
    assert_eq!(
        editor
            .suggest("done.py", "python", "def total(xs):\n    return $0\n")
            .as_deref(),
        Some("sum(xs)"),
        "{}",
        chat.summary()
    );
    assert_eq!(
        editor.suggest("cut.py", "python", "def count(xs):\n    return $0\n"),
        None,
        "{}",
        chat.summary()
    );
    editor.lsp.shutdown_and_exit();
}
