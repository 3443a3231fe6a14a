//! Warming the model server's prompt cache (issue 12 item 6): the first edit at a new place
//! (another definition, or a document's first edit) sends a local llama.cpp server the
//! prompt a request there would send, with `n_predict: 0`, so that the request the user
//! pauses on reads only what they typed since; never a cloud model; a request's call aborts
//! a warm-up of another place still in flight, and lets one of its own window read on; the
//! cursor resting in another function (VS Code's light-bulb code-action request) warms it
//! too; `completion.warm_up = false` turns it off.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Options, Server};
use crate::support::double::{Behaviour, RecordedRequest};
use crate::support::lsp::LspClient;
use crate::workspace::{Workspace, cloud, complete_route};

const WAIT: Duration = Duration::from_secs(10);
/// Longer than the server waits for a cursor to settle (500 ms) before it warms the place:
/// a warm-up that was coming has been sent by then.
const PAST_SETTLE: Duration = Duration::from_millis(800);

const TWO_FUNCTIONS: &str =
    "def first(a):\n    return a\n\n\ndef second(b):\n    $0\n    return b\n";

fn warm_ups(server: &Server) -> Vec<RecordedRequest> {
    server
        .double
        .model_calls()
        .into_iter()
        .filter(RecordedRequest::is_warm_up)
        .collect()
}

fn llamacpp(completion: &str) -> Options {
    Options::default()
        .provider("llamacpp", "native")
        .completion(completion)
}

/// `TWO_FUNCTIONS` and, far below, a third.
fn three_functions() -> String {
    let filler = "x = 1\n".repeat(100);
    format!("{TWO_FUNCTIONS}\n\n{filler}\n\ndef third(c):\n    return c\n")
}

#[test]
fn the_first_edit_at_a_new_place_warms_the_prompt_a_request_there_sends() {
    let server = Server::start_with(Behaviour::answer("b * 2"), llamacpp(""));
    let (uri, line, col) = server.open("two.py", "python", &three_functions());
    server.lsp.type_text(&uri, 2, (line, col), "x");
    assert!(
        server.double.wait_for(|d| d.completed() == 1, WAIT),
        "{}",
        server.double.summary()
    );
    let warm = warm_ups(&server);
    assert_eq!(warm.len(), 1, "{}", server.double.summary());
    assert!(
        warm[0].prompt_text().ends_with("def second(b):\n    x"),
        "the prompt up to the edit: {:?}",
        warm[0].prompt_text()
    );
    assert_eq!(
        warm[0].suffix_text().as_deref(),
        Some(""),
        "without the suffix, which the request after typing reads again"
    );
    // Typing on at the same place warms nothing more; a request asks the model itself.
    server.lsp.type_text(&uri, 3, (line, col + 1), " =");
    let (_, call) = server.inline_and_call(&uri, line, col + 3);
    let call = call.expect("the request's call");
    assert!(!call.is_warm_up(), "{:?}", call.body);
    assert!(
        call.prompt_text()
            .ends_with("def first(a):\n    return a\n\n\ndef second(b):\n    x ="),
        "{:?}",
        call.prompt_text()
    );
    assert_eq!(warm_ups(&server).len(), 1, "{}", server.double.summary());
    // An edit in the function above: the server read its text already, and a request
    // there re-reads only the suffix, as a warm-up would.
    server.lsp.type_text(&uri, 4, (1, 12), " + 1");
    // One in the function far below is a new place with text the server has not read.
    server.lsp.type_text(&uri, 5, (112, 12), " + 1");
    assert!(
        server.double.wait_for(
            |d| d.model_calls().iter().filter(|c| c.is_warm_up()).count() == 2,
            WAIT
        ),
        "{}",
        server.double.summary()
    );
    let warm = warm_ups(&server);
    assert!(
        warm[1]
            .prompt_text()
            .ends_with("def third(c):\n    return c + 1"),
        "{:?}",
        warm[1].prompt_text()
    );
    server.lsp.shutdown_and_exit();
}

/// A warm-up leaves out the suffix where the prompt puts it after the prefix (the typed
/// text goes between them, so a request after typing reads it again whatever the server
/// holds), and keeps it where the suffix comes first (Codestral's template) or where the
/// server applies the model's template only to a request with a suffix (Ollama).
#[test]
fn a_warm_up_leaves_out_the_suffix_a_request_after_typing_reads_again() {
    let cases: &[(&str, &str, bool)] = &[
        ("llamacpp", "native", false),
        ("openai", "qwen", false),
        ("openai", "starcoder", false),
        ("openai", "codellama", false),
        ("openai", "deepseek", false),
        ("openai", "codestral", true),
        ("ollama", "native", true),
    ];
    for &(provider, fim, keeps_suffix) in cases {
        let server = Server::start_with(
            Behaviour::answer("b * 2"),
            Options::default().provider(provider, fim),
        );
        let (uri, line, col) = server.open("two.py", "python", TWO_FUNCTIONS);
        server.lsp.type_text(&uri, 2, (line, col), "x");
        assert!(
            server.double.wait_for(|d| d.completed() == 1, WAIT),
            "{provider}/{fim}: {}",
            server.double.summary()
        );
        let warm = &warm_ups(&server)[0];
        assert!(
            warm.fim_prefix_text().ends_with("def second(b):\n    x"),
            "{provider}/{fim}: the prompt up to the edit: {:?}",
            warm.prompt_text()
        );
        let sent = warm.all_input_text();
        assert_eq!(
            sent.contains("return b"),
            keeps_suffix,
            "{provider}/{fim}: the suffix `\\n    return b` in {sent:?}"
        );
        server.lsp.shutdown_and_exit();
    }
}

/// Typing a new definition keystroke by keystroke: the enclosing definition the parser sees
/// changes as the code takes shape, but the model server holds the prompt's start after the
/// first warm-up, and no other is sent.
#[test]
fn typing_a_new_definition_warms_once() {
    let server = Server::start_with(Behaviour::answer("c"), llamacpp(""));
    let (uri, _, _) = server.open("two.py", "python", TWO_FUNCTIONS);
    let typed = "\n\ndef third(c):\n    if c:\n        return c\n";
    // At the end of the file.
    let (mut line, mut col) = (7, 0);
    for (version, ch) in (2..).zip(typed.chars()) {
        server
            .lsp
            .type_text(&uri, version, (line, col), &ch.to_string());
        if ch == '\n' {
            (line, col) = (line + 1, 0);
        } else {
            col += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        server.double.wait_for(|d| d.completed() >= 1, WAIT),
        "{}",
        server.double.summary()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(warm_ups(&server).len(), 1, "{}", server.double.summary());
    server.lsp.shutdown_and_exit();
}

#[test]
fn warm_ups_can_be_turned_off() {
    let server = Server::start_with(Behaviour::answer("b * 2"), llamacpp("warm_up = false\n"));
    let (uri, line, col) = server.open("two.py", "python", TWO_FUNCTIONS);
    cursor_at(&server.lsp, &uri, (line, col), AUTOMATIC);
    std::thread::sleep(PAST_SETTLE);
    server.lsp.type_text(&uri, 2, (line, col), "x");
    server.lsp.type_text(&uri, 3, (1, 12), " + 1");
    // A request after the cursor's rest and the edits: its call is the first the model gets.
    let (_, call) = server.inline_and_call(&uri, line, col + 1);
    assert!(!call.expect("a call").is_warm_up());
    assert_eq!(warm_ups(&server).len(), 0, "{}", server.double.summary());
    server.lsp.shutdown_and_exit();
}

/// A server slow to answer, a document of `text` opened and `x` typed at its `$0`: the
/// warm-up of that place is in flight. The server, the document and where `x` went.
fn warming_slowly(text: &str) -> (Server, String, u32, u32) {
    let server = Server::start_with(
        Behaviour::answer("b * 2").delay(Duration::from_secs(10)),
        llamacpp(""),
    );
    let (uri, line, col) = server.open("two.py", "python", text);
    server.lsp.type_text(&uri, 2, (line, col), "x");
    assert!(server.double.wait_for(|d| d.requests() == 1, WAIT));
    assert_eq!(warm_ups(&server).len(), 1, "{}", server.double.summary());
    (server, uri, line, col)
}

/// A request at the place a warm-up still reads (here a server slow to answer it) lets it
/// read on: its prompt is the start of the request's own, which llama.cpp reads to the end
/// even when the call is closed.
#[test]
fn a_request_at_the_warmed_place_lets_the_warm_up_read_on() {
    let (server, uri, line, col) = warming_slowly(TWO_FUNCTIONS);
    let _ = server.inline_request(&uri, line, col + 1);
    assert!(
        server.double.wait_for(|d| d.requests() == 2, WAIT),
        "{}",
        server.double.summary()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.double.aborted(), 0, "{}", server.double.summary());
    server.lsp.shutdown_and_exit();
}

/// A request somewhere the warm-up does not read comes first: the warm-up is dropped, its
/// connection closed.
#[test]
fn a_request_elsewhere_aborts_the_warm_up_in_flight() {
    let (server, uri, _, _) = warming_slowly(&three_functions());
    // The user moved to the function far below without typing, and asked there.
    let _ = server.inline_request(&uri, 112, 12);
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "the warm-up's connection is closed: {}",
        server.double.summary()
    );
    assert!(
        server.double.wait_for(|d| d.requests() == 2, WAIT),
        "{}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

/// VS Code's light-bulb request: the code actions at a cursor, asked automatically (LSP
/// `CodeActionTriggerKind.Automatic`, 2) whenever the cursor moves; `Invoked` (1) is the
/// user's own.
fn cursor_at(lsp: &LspClient, uri: &str, (line, col): (u32, u32), trigger_kind: u8) {
    let at = json!({ "line": line, "character": col });
    lsp.request_and_wait(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": uri },
            "range": { "start": at, "end": at },
            "context": { "diagnostics": [], "triggerKind": trigger_kind },
        }),
    )
    .expect("codeAction answers");
}

const AUTOMATIC: u8 = 2;
const INVOKED: u8 = 1;

/// The cursor resting in another function (VS Code asks for the light bulb's code actions
/// there) warms the prompt a request there would send, before anything is typed: the user who
/// reads before typing finds it read. VS Code may ask twice as it gets there (a tab's editor
/// comes back at its first line, then restores the cursor): the place is warmed once, where
/// the cursor is.
#[test]
fn a_cursor_resting_in_another_function_warms_its_prompt() {
    let server = Server::start_with(Behaviour::answer("c"), llamacpp(""));
    let (uri, _, _) = server.open("two.py", "python", &three_functions());
    cursor_at(&server.lsp, &uri, (112, 0), AUTOMATIC);
    cursor_at(&server.lsp, &uri, (112, 12), AUTOMATIC);
    assert!(
        server.double.wait_for(|d| d.requests() == 1, WAIT),
        "{}",
        server.double.summary()
    );
    let warm = warm_ups(&server);
    assert_eq!(warm.len(), 1, "{}", server.double.summary());
    assert!(
        warm[0]
            .prompt_text()
            .ends_with("def third(c):\n    return c"),
        "{:?}",
        warm[0].prompt_text()
    );
    // The same place again, and the first edit there, warm nothing more.
    cursor_at(&server.lsp, &uri, (112, 5), AUTOMATIC);
    server.lsp.type_text(&uri, 2, (112, 12), " + 1");
    std::thread::sleep(PAST_SETTLE);
    assert_eq!(warm_ups(&server).len(), 1, "{}", server.double.summary());
    server.lsp.shutdown_and_exit();
}

/// A cursor on its way (another move before it settles) warms nothing on the way, only where
/// it rests; nor does the user's own request for code actions (it is for an action, which
/// the model is about to be asked), nor a cursor resting in plain text.
#[test]
fn only_a_settled_cursor_warms() {
    let server = Server::start_with(Behaviour::answer("c"), llamacpp(""));
    let (uri, line, col) = server.open("two.py", "python", &three_functions());
    cursor_at(&server.lsp, &uri, (112, 12), AUTOMATIC);
    cursor_at(&server.lsp, &uri, (line, col), AUTOMATIC);
    assert!(
        server.double.wait_for(|d| d.requests() == 1, WAIT),
        "{}",
        server.double.summary()
    );
    std::thread::sleep(PAST_SETTLE);
    let warm = warm_ups(&server);
    assert_eq!(warm.len(), 1, "{}", server.double.summary());
    assert!(
        warm[0].prompt_text().ends_with("def second(b):\n    "),
        "{:?}",
        warm[0].prompt_text()
    );
    cursor_at(&server.lsp, &uri, (112, 12), INVOKED);
    // Nor a cursor resting in plain text (a README, the Explain page Pilotfish opened).
    let (notes, _, _) = server.open("notes.md", "markdown", "# Notes\n\nSome $0text.\n");
    cursor_at(&server.lsp, &notes, (2, 5), AUTOMATIC);
    std::thread::sleep(PAST_SETTLE);
    assert_eq!(warm_ups(&server).len(), 1, "{}", server.double.summary());
    server.lsp.shutdown_and_exit();
}

/// The model server keeps the prompt it read last: back in a document after working in
/// another, the place the user returns to is read again, on the first edit there or the
/// cursor resting there, though it is the place they left.
#[test]
fn returning_to_a_document_warms_its_place_again() {
    let server = Server::start_with(Behaviour::answer("c"), llamacpp(""));
    let (a, line, col) = server.open("a.py", "python", TWO_FUNCTIONS);
    let (b, b_line, b_col) = server.open("b.py", "python", "def other(d):\n    $0\n    return d\n");
    let warmed = |n: usize| {
        assert!(
            server.double.wait_for(|d| d.completed() == n, WAIT),
            "{n} warm-ups: {}",
            server.double.summary()
        );
        let last = warm_ups(&server).pop().expect("a warm-up");
        last.prompt_text()
    };
    server.lsp.type_text(&a, 2, (line, col), "x");
    assert!(warmed(1).ends_with("def second(b):\n    x"));
    server.lsp.type_text(&b, 2, (b_line, b_col), "y");
    assert!(warmed(2).ends_with("def other(d):\n    y"));
    // Back in a.py, typing on where they left it.
    server.lsp.type_text(&a, 3, (line, col + 1), " =");
    assert!(warmed(3).ends_with("def second(b):\n    x ="));
    // Back in b.py, reading where they left it.
    cursor_at(&server.lsp, &b, (b_line, b_col + 1), AUTOMATIC);
    assert!(warmed(4).ends_with("def other(d):\n    y"));
    // Staying there warms nothing more.
    server.lsp.type_text(&b, 3, (b_line, b_col + 1), " = 1");
    cursor_at(&server.lsp, &b, (b_line, b_col + 5), AUTOMATIC);
    std::thread::sleep(PAST_SETTLE);
    assert_eq!(warm_ups(&server).len(), 4, "{}", server.double.summary());
    server.lsp.shutdown_and_exit();
}

/// A cloud model gets no warm-up: it would be billed for reading a prompt nobody asked for.
#[test]
fn a_cloud_model_gets_no_warm_up() {
    let double = crate::support::double::ModelDouble::start(Behaviour::answer("b * 2"));
    let workspace = Workspace::new(&format!(
        "{}{}",
        cloud("far", &double.base_url(), ""),
        complete_route(&["far"])
    ));
    let editor = workspace.serve();
    let (text, line, col) = crate::support::lsp::mark(TWO_FUNCTIONS);
    let uri = editor.lsp.uri("two.py");
    editor.lsp.open(&uri, "python", &text);
    editor.lsp.type_text(&uri, 2, (line, col), "x");
    editor.lsp.type_text(&uri, 3, (1, 12), " + 1");
    // The cursor resting in the other function.
    cursor_at(&editor.lsp, &uri, (line, col), AUTOMATIC);
    std::thread::sleep(PAST_SETTLE);
    // A request after the edits: the cloud model's first call is the request's.
    let _ = editor.suggest_at(&uri, line, col + 1);
    let calls = double.model_calls();
    assert_eq!(calls.len(), 1, "{}", double.summary());
    assert!(
        calls[0].prompt_text().ends_with("    x"),
        "{:?}",
        calls[0].prompt_text()
    );
    editor.lsp.shutdown_and_exit();
}
