//! The completion path seen from the editor, with the settings a new user has (the 100 ms
//! budget): cancellation drops the model's connection, superseded requests cost no model
//! call, the cache and typed-ahead answer without one, a model slower than the budget still
//! gets its suggestion to an editor that waits (and none to one that typed on), a slow
//! model's call is kept while the user types along it, the suggestion after the shown one
//! is prefetched (accepting brings it from the cache; typing something else aborts it), and
//! `textDocument/completion` offers the same suggestion as a menu item.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Options, Server, assert_empty, items, suggestion};
use crate::support::double::{Behaviour, Health};
use crate::support::lsp::range;

/// Upper bound for asynchronous effects; tests wait on conditions, not on this time.
const WAIT: Duration = Duration::from_secs(10);
/// A model slow enough that a test can act while its call is in flight.
const SLOW: Duration = Duration::from_secs(10);

const FIXTURE: &str = "fn add(a: i32, b: i32) -> i32 {\n    return $0\n}\n";

/// A request cancelled with `$/cancelRequest` is answered once. The call of a model measured
/// inside the budget is aborted with it: the connection is closed, which stops the model.
#[test]
fn cancelling_a_fast_models_call_drops_its_connection_and_answers_once() {
    let server = Server::start(Behaviour::answer("a + b"));
    // One answer measures the model as fast (the double answers at once).
    let (other, line, col) = server.open("other.rs", "rust", FIXTURE);
    assert_eq!(
        suggestion(&server.inline(&other, line, col)).as_deref(),
        Some("a + b")
    );
    assert!(
        server.wait_calls_at("return a + b", 1),
        "{}",
        server.double.summary()
    );
    server
        .double
        .set_behaviour(Behaviour::answer("a + b").delay(SLOW));
    let calls = server.double.requests();

    let (uri, line, col) = server.open(
        "add.rs",
        "rust",
        "fn add(a: i32, b: i32) -> i32 {\n    a + $0\n}\n",
    );
    let id = server.inline_request(&uri, line, col);
    assert!(
        server.double.wait_for(|d| d.requests() == calls + 1, WAIT),
        "the model call starts: {}",
        server.double.summary()
    );
    server.lsp.cancel(id);
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "the HTTP connection is closed: {}",
        server.double.summary()
    );
    match server.lsp.response(id) {
        Err(error) => assert_eq!(error.code, -32800, "RequestCancelled: {error:?}"),
        Ok(result) => assert_empty(&result),
    }
    server.lsp.shutdown_and_exit();
    // A second response to the cancelled request would be recorded here.
    assert_eq!(server.lsp.protocol_errors(), Vec::<String>::new());
}

/// VS Code cancels the pending request at every keystroke, then asks again. A slow model's
/// call (or one not measured yet) outlives the cancel while the user types along it: the
/// next keystroke's request joins it, and its answer serves through typed-ahead reuse.
#[test]
fn a_slow_models_call_outlives_the_cancels_of_typing_along_it() {
    let server = Server::start(Behaviour::answer("total(items)").delay(Duration::from_millis(800)));
    let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    return $0\n");
    let first = server.inline_request(&uri, line, col);
    assert!(server.double.wait_for(|d| d.requests() == 1, WAIT));
    let mut pending = first;
    for (i, ch) in ["t", "o"].into_iter().enumerate() {
        let typed = i as u32;
        server
            .lsp
            .type_text(&uri, 2 + typed as i32, (line, col + typed), ch);
        server.lsp.cancel(pending);
        match server.lsp.response(pending) {
            Err(error) => assert_eq!(error.code, -32800, "RequestCancelled: {error:?}"),
            Ok(result) => assert_empty(&result),
        }
        pending = server.inline_request(&uri, line, col + typed + 1);
    }
    let result = server.inline_result(pending);
    assert_eq!(
        suggestion(&result).as_deref(),
        Some("tal(items)"),
        "{result}"
    );
    assert_eq!(server.double.aborted(), 0, "{}", server.double.summary());
    assert_eq!(server.calls_at("return "), 1);
    assert_eq!(server.calls_at("return to"), 0);
    server.lsp.shutdown_and_exit();
    assert_eq!(server.lsp.protocol_errors(), Vec::<String>::new());
}

/// A call that outlived its request's cancel is aborted as soon as an edit leaves it
/// nothing to serve: here the user deletes a character instead of typing on.
#[test]
fn an_edit_it_cannot_serve_drops_a_call_nobody_waits_for() {
    let server = Server::start(Behaviour::answer("a + b").delay(SLOW));
    let (uri, line, col) = server.open("add.rs", "rust", FIXTURE);
    let id = server.inline_request(&uri, line, col);
    assert!(server.double.wait_for(|d| d.requests() == 1, WAIT));
    server.lsp.cancel(id);
    match server.lsp.response(id) {
        Err(error) => assert_eq!(error.code, -32800, "RequestCancelled: {error:?}"),
        Ok(result) => assert_empty(&result),
    }
    assert_eq!(server.double.aborted(), 0, "a slow model's call runs on");
    server.lsp.change(
        &uri,
        2,
        json!([{ "range": range((line, col - 1), (line, col)), "text": "" }]),
    );
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "the HTTP connection is closed: {}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

#[test]
fn superseded_requests_are_answered_empty_without_a_model_call() {
    let delay = Duration::from_millis(1500);
    let server = Server::start(Behaviour::answer("c + 1;").delay(delay));
    let (uri, line, col) = server.open("main.rs", "rust", "fn main() {\n    let total = $0\n}\n");
    // Typing "ab" with a request after each keystroke, none waiting for its answer.
    let first = server.inline_request(&uri, line, col);
    server.lsp.type_text(&uri, 2, (line, col), "a");
    let second = server.inline_request(&uri, line, col + 1);
    server.lsp.type_text(&uri, 3, (line, col + 1), "b");
    let last = server.inline_request(&uri, line, col + 2);

    // The older requests are answered empty while the model is still working.
    assert_empty(&server.inline_result(first));
    assert_empty(&server.inline_result(second));
    assert_eq!(
        server.double.completed(),
        0,
        "superseded requests do not wait for the model: {}",
        server.double.summary()
    );
    let result = server.inline_result(last);
    assert_eq!(suggestion(&result).as_deref(), Some("c + 1;"), "{result}");
    // The requests' calls (not the prefetch after the suggestion, which asks after it).
    let calls: Vec<_> = server
        .double
        .model_calls()
        .into_iter()
        .filter(|c| !c.fim_prefix_text().ends_with("c + 1;"))
        .collect();
    assert!(
        calls.len() <= 2,
        "at most the first and the last request reach the model: {}",
        server.double.summary()
    );
    let newest = calls.last().expect("a model call");
    assert!(
        newest.prompt_text().ends_with("let total = ab"),
        "the last call carries the newest text: {:?}",
        newest.prompt_text()
    );
    server.lsp.shutdown_and_exit();
}

#[test]
fn the_same_request_twice_is_answered_from_the_cache() {
    let server = Server::start(Behaviour::answer("a + b"));
    let (uri, line, col) = server.open("add.rs", "rust", FIXTURE);
    let first = server.inline(&uri, line, col);
    assert_eq!(suggestion(&first).as_deref(), Some("a + b"));
    // The request's call, and the prefetch for the place after the suggestion.
    assert!(
        server.wait_calls_at("return a + b", 1),
        "{}",
        server.double.summary()
    );
    let second = server.inline(&uri, line, col);
    assert_eq!(suggestion(&second).as_deref(), Some("a + b"));
    assert_eq!(server.double.requests(), 2, "no new model call");
    server.lsp.shutdown_and_exit();
}

#[test]
fn typing_the_start_of_a_suggestion_is_answered_without_a_model_call() {
    let server = Server::start(Behaviour::answer("foo(bar)"));
    let (uri, line, col) = server.open("f.py", "python", "def f(bar):\n    return $0\n");
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown).as_deref(), Some("foo(bar)"));
    server.lsp.type_text(&uri, 2, (line, col), "fo");
    let rest = server.inline(&uri, line, col + 2);
    assert_eq!(suggestion(&rest).as_deref(), Some("o(bar)"), "{rest}");
    assert_eq!(
        rest["items"][0]["range"]["start"]["character"],
        json!(col + 2)
    );
    assert!(
        server.wait_calls_at("return foo(bar)", 1),
        "the prefetch after the suggestion: {}",
        server.double.summary()
    );
    assert_eq!(
        server.double.requests(),
        2,
        "typed-ahead: no model call for the new place: {}",
        server.double.summary()
    );
    assert_eq!(
        server.double.aborted(),
        0,
        "typing along the suggestion does not abort the prefetch after it"
    );
    server.lsp.shutdown_and_exit();
}

/// A model twelve times slower than the 100 ms budget: the editor that waits gets its
/// suggestion when it exists.
#[test]
fn a_model_slower_than_the_budget_still_gets_its_suggestion_to_the_editor() {
    let server = Server::start(Behaviour::answer("a + b").delay(Duration::from_millis(1200)));
    let (uri, line, col) = server.open("add.rs", "rust", FIXTURE);
    let late = server.inline(&uri, line, col);
    assert_eq!(suggestion(&late).as_deref(), Some("a + b"), "{late}");
    assert_eq!(server.double.aborted(), 0);
    assert!(
        server.wait_calls_at("return a + b", 1),
        "{}",
        server.double.summary()
    );
    let cached = server.inline(&uri, line, col);
    assert_eq!(suggestion(&cached).as_deref(), Some("a + b"), "{cached}");
    assert_eq!(server.calls_at("return "), 1, "the second from the cache");
    server.lsp.shutdown_and_exit();
}

/// The user typed something the slow model's answer does not start with: the request they
/// left is answered empty at once, the one at the new place gets the next answer, and the
/// late answer for the old place never reaches the editor.
#[test]
fn an_editor_that_typed_on_gets_no_late_answer_for_the_old_place() {
    let server = Server::start(
        Behaviour::answer_at("return x", " * 2", "a + b").delay(Duration::from_millis(800)),
    );
    let (uri, line, col) = server.open("add.rs", "rust", FIXTURE);
    let old = server.inline_request(&uri, line, col);
    assert!(server.double.wait_for(|d| d.requests() == 1, WAIT));
    server.lsp.type_text(&uri, 2, (line, col), "x");
    let new = server.inline_request(&uri, line, col + 1);
    assert_empty(&server.inline_result(old));
    let result = server.inline_result(new);
    assert_eq!(suggestion(&result).as_deref(), Some(" * 2"), "{result}");
    server.lsp.shutdown_and_exit();
}

/// A slow model's call is kept while the user types along it: typing the first characters
/// of what it is about to answer costs no second call, and the answer serves the newest
/// request through typed-ahead reuse.
#[test]
fn a_slow_models_call_is_kept_while_the_user_types_along_it() {
    let server = Server::start(Behaviour::answer("total(items)").delay(Duration::from_millis(800)));
    let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    return $0\n");
    let first = server.inline_request(&uri, line, col);
    assert!(server.double.wait_for(|d| d.requests() == 1, WAIT));
    server.lsp.type_text(&uri, 2, (line, col), "t");
    let second = server.inline_request(&uri, line, col + 1);
    server.lsp.type_text(&uri, 3, (line, col + 1), "o");
    let third = server.inline_request(&uri, line, col + 2);
    assert_empty(&server.inline_result(first));
    assert_empty(&server.inline_result(second));
    let result = server.inline_result(third);
    assert_eq!(
        suggestion(&result).as_deref(),
        Some("tal(items)"),
        "{result}"
    );
    assert_eq!(server.double.aborted(), 0, "{}", server.double.summary());
    assert_eq!(server.calls_at("return "), 1);
    assert_eq!(server.calls_at("return t"), 0);
    assert_eq!(server.calls_at("return to"), 0);
    server.lsp.shutdown_and_exit();
}

/// Accepting a suggestion brings the next one from the cache: it was computed in the
/// background while the first was shown, with one model call.
#[test]
fn accepting_a_suggestion_brings_the_next_one_from_the_cache() {
    let server = Server::start(Behaviour::answer_at(
        "total = 0\n    ",
        "for item in items:",
        "total += item",
    ));
    let fixture = "def f(items):\n    total = 0\n    $0\n";
    let (uri, line, col) = server.open("sum.py", "python", fixture);
    let shown = server.inline(&uri, line, col);
    assert_eq!(
        suggestion(&shown).as_deref(),
        Some("for item in items:"),
        "{shown}"
    );
    assert!(
        server.wait_calls_at("for item in items:", 1),
        "the prefetch: {}",
        server.double.summary()
    );
    // The editor inserts the suggestion, reports the acceptance, and asks at the new place.
    let accepted = "for item in items:";
    server.lsp.type_text(&uri, 2, (line, col), accepted);
    let command = &items(&shown)[0]["command"];
    server
        .lsp
        .request_and_wait(
            "workspace/executeCommand",
            json!({ "command": command["command"], "arguments": command["arguments"] }),
        )
        .expect("accept");
    let next = server.inline(&uri, line, col + accepted.len() as u32);
    assert_eq!(
        suggestion(&next).as_deref(),
        Some("total += item"),
        "{next}"
    );
    // From the cache: no call for the new place but the prefetch made while the first
    // was shown (delivering this one starts the prefetch after it in turn).
    assert_eq!(source_of(&next), "cache", "{next}");
    assert_eq!(
        server.calls_at("for item in items:"),
        1,
        "{}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

/// Where a delivered suggestion came from, as its accept command says (`model`, `cache`,
/// `typed-ahead`).
fn source_of(result: &serde_json::Value) -> String {
    items(result)[0]["command"]["arguments"][0]["source"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Accepting a whole line leaves the cursor at the end of a line: the next suggestion is the
/// next line (a line break, then the line), computed in the background while the first was
/// shown — after a complete statement, and as much after a line the statement goes on from
/// (a trailing comma, a signature whose `where` comes below) or a comment.
#[test]
fn accepting_a_whole_line_brings_the_next_line_from_the_cache() {
    let cases = [
        (
            "python",
            "def f(items):\n    $0\n",
            "total = 0",
            "\n    for item in items:",
        ),
        (
            "python",
            "def f(items):\n    $0\n",
            "total = sum(items,",
            "\n                start=0)",
        ),
        (
            "rust",
            "$0\n",
            "fn split<R>(reader: R) -> Split<R>",
            "\nwhere",
        ),
        (
            "rust",
            "$0\nfn f() {}\n",
            "/// Adds one.",
            "\n/// Panics on overflow.",
        ),
    ];
    for (language, fixture, first, next_line) in cases {
        accept_a_whole_line(language, fixture, first, next_line);
    }
}

fn accept_a_whole_line(language: &str, fixture: &str, first: &str, next_line: &str) {
    let (first_answer, next_answer) = (first.to_owned(), format!("{next_line}\n    x\n"));
    let server = Server::start(Behaviour::answer_with(move |call| {
        if call.fim_prefix_text().ends_with(&first_answer) {
            next_answer.clone()
        } else {
            first_answer.clone()
        }
    }));
    let name = if language == "rust" { "f.rs" } else { "f.py" };
    let (uri, line, col) = server.open(name, language, fixture);
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown).as_deref(), Some(first), "{shown}");
    assert!(
        server.wait_calls_at(first, 1),
        "the prefetch after {first:?}: {}",
        server.double.summary()
    );
    server.lsp.type_text(&uri, 2, (line, col), first);
    let next = server.inline(&uri, line, col + first.len() as u32);
    assert_eq!(
        suggestion(&next).as_deref(),
        Some(next_line),
        "after {first:?}: {next}"
    );
    assert_eq!(source_of(&next), "cache", "after {first:?}: {next}");
    assert_eq!(
        server.calls_at(first),
        1,
        "after {first:?}: {}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

/// Typing something other than the shown suggestion aborts the prefetch for the place
/// after it: background work never keeps the model from the user's next request.
#[test]
fn typing_something_else_aborts_the_prefetch() {
    // The request's call answers at once; the prefetch after it would take long.
    let server = Server::start(Behaviour::answer("a + b").delay_after(1, SLOW));
    let (uri, line, col) = server.open("add.rs", "rust", FIXTURE);
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown).as_deref(), Some("a + b"));
    assert!(
        server
            .double
            .wait_for(|d| d.requests() == 2 && d.in_flight() == 1, WAIT),
        "the prefetch is in flight: {}",
        server.double.summary()
    );
    assert_eq!(server.calls_at("return a + b"), 1);
    server.lsp.type_text(&uri, 2, (line, col), "z");
    let _ = server.inline_request(&uri, line, col + 1);
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "the prefetch's connection is closed: {}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

/// A slow model's suggestion shown as a keystroke's answer (here from the cache) starts
/// the prefetch for the place after it only once the user has stopped typing: typed past
/// at once, as a suggestion shown between keystrokes most often is, it costs no model call.
#[test]
fn a_slow_models_prefetch_waits_for_the_user_to_stop_typing() {
    for types_on in [true, false] {
        let server = Server::start(
            Behaviour::answer_with(|call| {
                let prefix = call.fim_prefix_text();
                if prefix.ends_with("return ") {
                    "a + b"
                } else if prefix.ends_with("a + b") {
                    " + c"
                } else {
                    " + d"
                }
                .to_owned()
            })
            .delay(Duration::from_millis(300)),
        );
        let (uri, line, col) =
            server.open("add.py", "python", "def f(a, b, c, d):\n    return $0\n");
        // The first answer measures the model slower than the budget; shown after a pause,
        // its suggestion is prefetched after at once.
        let first = server.inline(&uri, line, col);
        assert_eq!(suggestion(&first).as_deref(), Some("a + b"), "{first}");
        assert!(
            server.wait_calls_at("return a + b", 1),
            "the prefetch after a pause: {}",
            server.double.summary()
        );
        // The user types the suggestion; the keystroke's answer comes from the cache.
        server.lsp.type_text(&uri, 2, (line, col), "a + b");
        let second = server.inline(&uri, line, col + 5);
        assert_eq!(suggestion(&second).as_deref(), Some(" + c"), "{second}");
        assert_eq!(source_of(&second), "cache", "{second}");
        if types_on {
            server.lsp.type_text(&uri, 3, (line, col + 5), "#");
            let _ = server.inline_request(&uri, line, col + 6);
            std::thread::sleep(Duration::from_secs(1));
            assert_eq!(
                server.calls_at("a + b + c"),
                0,
                "typed past within the wait: {}",
                server.double.summary()
            );
        } else {
            assert!(
                server.wait_calls_at("a + b + c", 1),
                "the prefetch once the user stopped: {}",
                server.double.summary()
            );
        }
        server.lsp.shutdown_and_exit();
    }
}

#[test]
fn completion_menu_item_carries_the_same_suggestion() {
    let server = Server::start(Behaviour::answer("o(bar)"));
    let (uri, line, col) = server.open("f.py", "python", "def f(bar):\n    return fo$0\n");
    let inline = server.inline(&uri, line, col);
    assert_eq!(suggestion(&inline).as_deref(), Some("o(bar)"));

    let menu = server
        .lsp
        .request_and_wait(
            "textDocument/completion",
            json!({
                "textDocument": { "uri": uri },
                "position": { "line": line, "character": col }
            }),
        )
        .expect("completion answers");
    let items = menu["items"].as_array().expect("a completion list");
    assert_eq!(items.len(), 1, "{menu}");
    let item = &items[0];
    // The edit replaces the word before the cursor ("fo") with word + suggestion, so that
    // the menu's filter keeps it.
    assert_eq!(item["label"], json!("foo(bar)"));
    assert_eq!(item["textEdit"]["newText"], json!("foo(bar)"));
    assert_eq!(
        item["textEdit"]["range"],
        json!({
            "start": { "line": line, "character": col - 2 },
            "end": { "line": line, "character": col }
        })
    );
    assert_eq!(item["command"]["command"], json!("pilotfish.accept"));
    assert_eq!(
        server.calls_at("return fo"),
        1,
        "the same suggestion, from the cache: {}",
        server.double.summary()
    );

    let accepted = server.lsp.request_and_wait(
        "workspace/executeCommand",
        json!({
            "command": "pilotfish.accept",
            "arguments": item["command"]["arguments"].clone()
        }),
    );
    assert!(accepted.is_ok(), "{accepted:?}");
    let unknown = server.lsp.request_and_wait(
        "workspace/executeCommand",
        json!({ "command": "pilotfish.nope", "arguments": [] }),
    );
    assert!(
        unknown.is_err(),
        "an unknown command is an error: {unknown:?}"
    );
    server.lsp.shutdown_and_exit();
}

#[test]
fn requests_for_two_documents_do_not_supersede_each_other() {
    let server = Server::start(
        Behaviour::answer_with(|request| {
            if request.prompt_text().contains("fn one") {
                "1".to_owned()
            } else {
                "2".to_owned()
            }
        })
        .delay(Duration::from_millis(300)),
    );
    let (one, line, col) = server.open("one.rs", "rust", "fn one() -> u32 {\n    $0\n}\n");
    let (two, _, _) = server.open("two.rs", "rust", "fn two() -> u32 {\n    $0\n}\n");
    let first = server.inline_request(&one, line, col);
    let second = server.inline_request(&two, line, col);
    assert_eq!(
        suggestion(&server.inline_result(first)).as_deref(),
        Some("1")
    );
    assert_eq!(
        suggestion(&server.inline_result(second)).as_deref(),
        Some("2")
    );
    assert!(server.wait_calls_at("fn one() -> u32 {\n    1", 1));
    assert!(server.wait_calls_at("fn two() -> u32 {\n    2", 1));
    assert_eq!(
        server.calls_at("fn one() -> u32 {\n    "),
        1,
        "one call per document"
    );
    assert_eq!(
        server.calls_at("fn two() -> u32 {\n    "),
        1,
        "one call per document"
    );
    assert_eq!(server.double.aborted(), 0);
    server.lsp.shutdown_and_exit();
}

#[test]
fn closing_a_document_aborts_its_model_call() {
    let server = Server::start(Behaviour::answer("a + b").delay(SLOW));
    let (uri, line, col) = server.open("add.rs", "rust", FIXTURE);
    let id = server.inline_request(&uri, line, col);
    assert!(server.double.wait_for(|d| d.requests() == 1, WAIT));
    server.lsp.close(&uri);
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "the HTTP connection is closed: {}",
        server.double.summary()
    );
    assert_empty(&server.inline_result(id));
    server.lsp.shutdown_and_exit();
}

/// A function body that the model writes as a block: three lines in 8 pieces.
const SUM_BLOCK: &str = "for x in xs:\n        total += x\n    return total";

/// A server whose model writes [`SUM_BLOCK`] a piece every `delay_ms`, and the place in an
/// open Python file where it goes.
fn serve_sum_block(delay_ms: u64) -> (Server, String, u32, u32) {
    let server = Server::start(
        Behaviour::answer(SUM_BLOCK)
            .chunks(8)
            .chunk_delay(Duration::from_millis(delay_ms)),
    );
    let (uri, line, col) = server.open("sum.py", "python", "def f(xs):\n    total = 0\n    $0\n");
    (server, uri, line, col)
}

/// The first two lines of [`SUM_BLOCK`].
const SUM_BLOCK_TWO_LINES: &str = "for x in xs:\n        total += x";

/// A block from a slow model (here one not measured yet) is streamed: its first line reaches
/// the editor as soon as it is written, the model writes one line more, and the stream is
/// closed, which stops the model; the two lines then answer from the cache.
#[test]
fn a_slow_models_block_shows_its_first_line_first() {
    let (server, uri, line, col) = serve_sum_block(150);
    let first = server.inline(&uri, line, col);
    assert_eq!(
        suggestion(&first).as_deref(),
        Some("for x in xs:"),
        "{first}"
    );
    assert_eq!(
        server.double.completed(),
        0,
        "shown while the model still writes: {}",
        server.double.summary()
    );
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "the stream is closed after one line more: {}",
        server.double.summary()
    );
    let two = server.inline(&uri, line, col);
    assert_eq!(
        suggestion(&two).as_deref(),
        Some(SUM_BLOCK_TWO_LINES),
        "{two}"
    );
    assert_eq!(source_of(&two), "cache");
    assert_eq!(server.double.completed(), 0, "{}", server.double.summary());
    server.lsp.shutdown_and_exit();
}

/// Typing along a shown first line keeps the call: the lines after it are still to come.
#[test]
fn typing_along_a_shown_first_line_keeps_the_call() {
    let (server, uri, line, col) = serve_sum_block(120);
    let first = server.inline(&uri, line, col);
    assert_eq!(
        suggestion(&first).as_deref(),
        Some("for x in xs:"),
        "{first}"
    );
    server.lsp.type_text(&uri, 2, (line, col), "for");
    let along = server.inline(&uri, line, col + 3);
    assert!(
        suggestion(&along).is_some_and(|s| s.starts_with(" x in xs:")),
        "{along}"
    );
    // The call wrote on (the typing did not abort it; typing along, the user keeps up with
    // it, so it read past its second line, here to the answer's end), and it was the only
    // call. (Checked before asking again: the suggestion shown then starts a prefetch for
    // the place after it.)
    assert!(
        server
            .double
            .wait_for(|d| d.completed() == 1 && d.aborted() == 0, WAIT),
        "{}",
        server.double.summary()
    );
    assert_eq!(server.double.requests(), 1, "{}", server.double.summary());
    // Asked again at the same place, the answer has the lines written since.
    let later = server.inline(&uri, line, col + 3);
    assert_eq!(
        suggestion(&later).as_deref(),
        SUM_BLOCK.strip_prefix("for"),
        "{later}"
    );
    server.lsp.shutdown_and_exit();
}

/// A model not measured yet that turns out fast writes its whole block inside the budget:
/// the user gets the block, not its first line.
#[test]
fn a_fast_models_block_is_shown_whole() {
    let (server, uri, line, col) = serve_sum_block(5);
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown).as_deref(), Some(SUM_BLOCK), "{shown}");
    server.lsp.shutdown_and_exit();
}

/// The next line after a statement is the whole answer: once it is written the stream is
/// closed, which stops the model.
#[test]
fn the_next_line_stops_the_model_once_written() {
    let server = Server::start(
        Behaviour::answer("\n    for x in xs:\n        total += x\n    return total\n")
            .chunks(8)
            .chunk_delay(Duration::from_millis(300)),
    );
    let (uri, line, col) = server.open("sum.py", "python", "def f(xs):\n    total = 0$0\n");
    let next = server.inline(&uri, line, col);
    assert_eq!(
        suggestion(&next).as_deref(),
        Some("\n    for x in xs:"),
        "{next}"
    );
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "the stream is closed after the line: {}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

/// A model measured well past the budget (a CPU model) reads a compact prefix window: the
/// first prompt at each new place costs it a third of the default's. So does a model not
/// measured yet; a fast one reads the default window.
#[test]
fn a_slow_model_reads_a_compact_window() {
    let long_file = |name: &str| {
        let body = |from: usize| -> String {
            (from..from + 200)
                .map(|i| format!("def {name}_{i}(x):\n    return x + {i}\n\n"))
                .collect()
        };
        format!("{}value = $0\n{}", body(0), body(200))
    };
    let server = Server::start(Behaviour::answer("1"));
    // The characters of prefix and suffix a request sends.
    let window = |name: &str| {
        let (uri, line, col) =
            server.open(name, "python", &long_file(name.trim_end_matches(".py")));
        let (result, call) = server.inline_and_call(&uri, line, col);
        assert!(suggestion(&result).is_some(), "{result}");
        let call = call.expect("a model call");
        let suffix = call.suffix_text().expect("a native suffix");
        (call.fim_prefix_text().len(), suffix.len())
    };
    // Files of their own text, so that no answer comes from the cache.
    let some_calls = |phase: &str| {
        for n in 0..8 {
            let (uri, line, col) = server.open(
                &format!("{phase}{n}.py"),
                "python",
                &format!("{phase}{n} = $0\n"),
            );
            assert!(suggestion(&server.inline(&uri, line, col)).is_some());
        }
    };
    let unmeasured = window("first.py");
    some_calls("fast");
    let fast = window("second.py");
    server
        .double
        .set_behaviour(Behaviour::answer("1").delay(Duration::from_millis(400)));
    some_calls("slow");
    let slow = window("third.py");
    let compact = |(prefix, suffix): (usize, usize)| prefix < 2500 && suffix <= 150;
    assert!(
        compact(unmeasured) && fast.0 > 5000 && fast.1 > 250 && compact(slow),
        "(prefix, suffix) window in characters: {unmeasured:?} before the model was \
         measured, {fast:?} once it answered at once, {slow:?} once it took 400 ms"
    );
    server.lsp.shutdown_and_exit();
}

/// A slow model's block goes on for a second once its first line is shown, then its call is
/// closed: the whole lines written by then are cached for typing along, and the model is
/// free for the next place the user pauses at.
#[test]
fn a_slow_models_block_stops_a_second_after_its_first_line() {
    for (provider, fim) in [
        ("ollama", "native"),
        ("openai", "qwen"),
        ("llamacpp", "native"),
    ] {
        a_slow_block_stops_a_second_after_its_first_line(
            Options::default().provider(provider, fim),
        );
    }
}

fn a_slow_block_stops_a_second_after_its_first_line(options: Options) {
    let block: String = (0..30).map(|i| format!("total += {i}\n    ")).collect();
    let server = Server::start_with(
        Behaviour::answer(&block)
            .chunks(30)
            .chunk_delay(Duration::from_millis(150)),
        options,
    );
    let (uri, line, col) = server.open("sum.py", "python", "def f(xs):\n    total = 0\n    $0\n");
    let first = server.inline(&uri, line, col);
    assert_eq!(suggestion(&first).as_deref(), Some("total += 0"), "{first}");
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "closed after the second: {}",
        server.double.summary()
    );
    let cached = server.inline(&uri, line, col);
    let lines = suggestion(&cached).unwrap_or_default();
    assert_eq!(source_of(&cached), "cache", "{cached}");
    assert!(
        lines.starts_with("total += 0\n    total += 1") && lines.lines().count() < 30,
        "whole lines, not all of them: {lines:?}"
    );
    assert!(!lines.ends_with(' '), "{lines:?}");
    server.lsp.shutdown_and_exit();
}

/// At a line's end a slow model's answer is streamed: its first line is shown at once, and
/// the stream goes on to the end of the line after it, which is the suggestion after
/// accepting the first — so accepting brings it from the cache with no model call for that
/// place (no prefetch, no request), on every wire. So after a name being typed (where the
/// next line would be offered too) and after a space (the rest of the line: the user goes
/// on with it).
#[test]
fn the_line_after_a_suggestion_comes_with_it() {
    for (provider, fim) in WIRES {
        for (typed, suggested) in [("sum(it", "ems)"), ("", "sum(items)")] {
            the_line_after_comes_with_it(
                Options::default().provider(provider, fim),
                typed,
                suggested,
            );
        }
    }
}

/// A model server or proxy that answers a request for a stream with one JSON object (it
/// buffers, or does not stream) still suggests, on every wire: the answer is read whole, and
/// the line after the suggestion comes with it as from a stream.
#[test]
fn a_model_that_never_streams_still_suggests() {
    for wire in WIRES {
        let answer = Behaviour::answer("ems)\n    return total\n").never_streams();
        accepting_brings_the_line_after(answer, wire, "never streams");
    }
}

/// A model that ends its answer at the end of the line after the suggestion, without a line
/// break (a fill-in-the-middle answer leaves that to the suffix, here a line break): that
/// line is whole, and accepting the suggestion brings it from the cache — streamed or not,
/// on every wire. It used to be dropped as unfinished, and the place after the accept cost
/// a model call of its own.
#[test]
fn the_line_after_comes_with_it_when_the_answer_ends_there() {
    for wire in WIRES {
        let answer = || Behaviour::answer("ems)\n    return total");
        let streamed = answer().chunks(4).chunk_delay(Duration::from_millis(40));
        accepting_brings_the_line_after(streamed, wire, "ends, streamed");
        accepting_brings_the_line_after(answer().never_streams(), wire, "ends, whole");
    }
}

/// A model server that closes a kept connection without saying so (llama-server does, after
/// each streamed answer): the request that went out on it is sent again — the user sees the
/// suggestion and no warning that the model does not answer. On the old code it failed
/// (against a real llama-server one request in five to ten did), and the editor said "no
/// completion model answers … Start your model server".
#[test]
fn a_model_server_that_closes_kept_connections_still_suggests() {
    // The line after comes with the suggestion: no prefetch call goes between the two
    // requests.
    let answer = Behaviour::answer("ems)\n    return total\n");
    let server = Server::start(answer.drops_kept_connections());
    let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    total = sum(it$0\n");
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown).as_deref(), Some("ems)"), "{shown}");
    let typed = "\n    count = sum(it";
    server.lsp.type_text(&uri, 2, (line, col), typed);
    let shown = server.inline(&uri, line + 1, 18);
    assert_eq!(suggestion(&shown).as_deref(), Some("ems)"), "{shown}");
    assert!(server.double.dropped() >= 1, "{}", server.double.summary());
    let warnings = server.lsp.notifications_of("window/showMessage");
    assert!(warnings.is_empty(), "{warnings:?}");
    server.lsp.shutdown_and_exit();
}

/// An OpenAI-compatible server that lists no models (`GET /v1/models` is a 404) is up: the
/// request that opens the connection at the start does not make the editor say that no
/// completion model answers, and the model suggests.
#[test]
fn a_server_that_lists_no_models_is_up() {
    let server = Server::start_with(
        Behaviour::answer("ems)").health(Health::Unlisted),
        Options::default().provider("openai", "qwen"),
    );
    let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    total = sum(it$0\n");
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown).as_deref(), Some("ems)"), "{shown}");
    assert!(server.double.probes() >= 1, "{}", server.double.summary());
    let warnings = server.lsp.notifications_of("window/showMessage");
    assert!(warnings.is_empty(), "{warnings:?}");
    server.lsp.shutdown_and_exit();
}

/// The provider and FIM mode of each wire a completion model speaks.
const WIRES: [(&str, &str); 3] = [
    ("ollama", "native"),
    ("openai", "qwen"),
    ("llamacpp", "native"),
];

/// `def f(items):` with `    total = sum(it` and the cursor after it, and a model answering
/// `behaviour` (`ems)`, then `return total`) on `wire`: the suggestion is `ems)`, a stream
/// was asked for, and once the call ended and the user typed the suggestion, the next one is
/// the line after it with no model call for that place.
fn accepting_brings_the_line_after(
    behaviour: Behaviour,
    (provider, fim): (&'static str, &'static str),
    case: &str,
) {
    let server = Server::start_with(behaviour, Options::default().provider(provider, fim));
    let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    total = sum(it$0\n");
    let shown = server.inline(&uri, line, col);
    assert_eq!(
        suggestion(&shown).as_deref(),
        Some("ems)"),
        "{provider}, {case}: {shown}"
    );
    let call = server.double.last_model_call().expect("a model call");
    assert_ne!(
        call.body["stream"],
        json!(false),
        "{provider}, {case}: a stream was asked for"
    );
    assert!(
        server.double.wait_for(|d| d.completed() == 1, WAIT),
        "{provider}, {case}: {}",
        server.double.summary()
    );
    server.lsp.type_text(&uri, 2, (line, col), "ems)");
    let next = server.inline(&uri, line, col + 4);
    assert_eq!(
        suggestion(&next).as_deref(),
        Some("\n    return total"),
        "{provider}, {case}: {next}"
    );
    // No call for the place after the first suggestion (showing the second may start the
    // prefetch after it).
    assert_eq!(
        server.calls_at("sum(items)"),
        0,
        "{provider}, {case}: {}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

/// `def f(items):` with `    total = {typed}` and the cursor after it; the model suggests
/// `suggested`, then writes `return total` and more.
fn the_line_after_comes_with_it(options: Options, typed: &str, suggested: &str) {
    let server = Server::start_with(
        Behaviour::answer(format!(
            "{suggested}\n    return total\n    print(total)\n    # and more\n"
        ))
        .chunks(6)
        .chunk_delay(Duration::from_millis(60)),
        options,
    );
    let fixture = format!("def f(items):\n    total = {typed}$0\n");
    let (uri, line, col) = server.open("sum.py", "python", &fixture);
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown).as_deref(), Some(suggested), "{shown}");
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "closed at the end of the line after it: {}",
        server.double.summary()
    );
    server.lsp.type_text(&uri, 2, (line, col), suggested);
    let next = server.inline(&uri, line, col + suggested.len() as u32);
    assert_eq!(
        suggestion(&next).as_deref(),
        Some("\n    return total"),
        "{suggested}: {next}"
    );
    assert_eq!(source_of(&next), "typed-ahead", "{next}");
    // No call for the place after the first suggestion: neither a prefetch when it was
    // shown nor the request there. (Showing the second starts the prefetch after it.)
    assert_eq!(
        server.calls_at("sum(items)"),
        0,
        "{suggested}: {}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

/// A user accepting line after line of a slow model's answer finds each next line written:
/// while they keep up with the call (within a line of what it wrote), it reads on past the
/// line after, and each accept brings the next line; one model call in all. (A user who
/// does not follow the call gets the line after and no more: above.) The same in a CRLF
/// file, whose suggestions come with its line breaks.
#[test]
fn accepting_line_after_line_keeps_the_call_reading() {
    let answer = "ems)\n    total += 1\n    total *= 2\n    return total\n    # done\n";
    for eol in ["\n", "\r\n"] {
        let server = Server::start(
            Behaviour::answer(answer)
                .chunks(6)
                .chunk_delay(Duration::from_millis(120)),
        );
        let text = format!("def f(items):{eol}    total = sum(it$0{eol}");
        let (uri, line, col) = server.open("sum.py", "python", &text);
        let shown = server.inline(&uri, line, col);
        assert_eq!(suggestion(&shown).as_deref(), Some("ems)"), "{shown}");
        // Accepted at once, while the model writes the line after; then each line as it
        // comes.
        server.lsp.type_text(&uri, 2, (line, col), "ems)");
        accept_line_after_line(
            &server,
            (&uri, (line, col + 4), 3),
            eol,
            &["\n    total += 1", "\n    total *= 2", "\n    return total"],
        );
        for place in ["sum(items)", "total += 1", "total *= 2"] {
            assert_eq!(
                server.calls_at(place),
                0,
                "{eol:?}, {place}: {}",
                server.double.summary()
            );
        }
        assert_eq!(server.double.requests(), 1, "{}", server.double.summary());
        server.lsp.shutdown_and_exit();
    }
}

/// The same when the first of those lines comes from a prefetch: the user accepting the
/// suggestion before it asks at the prefetch's place, and follows it — in a CRLF file too.
#[test]
fn accepting_into_a_prefetch_keeps_it_reading() {
    for eol in ["\n", "\r\n"] {
        let server = Server::start(
            Behaviour::answer_at(
                "sum(it",
                "ems)\n    total += 1\n",
                "\n    total *= 2\n    total -= 3\n    return total\n    # done\n",
            )
            .chunks(6)
            .chunk_delay(Duration::from_millis(120)),
        );
        let text = format!("def f(items):{eol}    total = sum(it$0{eol}");
        let (uri, line, col) = server.open("sum.py", "python", &text);
        let shown = server.inline(&uri, line, col);
        assert_eq!(suggestion(&shown).as_deref(), Some("ems)"), "{shown}");
        assert!(server.double.wait_for(|d| d.in_flight() == 0, WAIT));
        server.lsp.type_text(&uri, 2, (line, col), "ems)");
        // Shown from the first call; its prefetch starts.
        let then = server.inline(&uri, line, col + 4);
        let first = format!("{eol}    total += 1");
        assert_eq!(suggestion(&then), Some(first.clone()), "{eol:?}: {then}");
        assert!(server.double.wait_for(|d| d.requests() == 2, WAIT));
        server.lsp.type_text(&uri, 3, (line, col + 4), &first);
        accept_line_after_line(
            &server,
            (&uri, (line + 1, 14), 4),
            eol,
            &["\n    total *= 2", "\n    total -= 3", "\n    return total"],
        );
        assert_eq!(server.double.requests(), 2, "{}", server.double.summary());
        server.lsp.shutdown_and_exit();
    }
}

/// Accepts `lines` one after another (each a line break, then the line) from `at`, the
/// document at `version` before the first, as an editor inserts them in a file whose line
/// break is `eol`; each must be the suggestion shown there.
fn accept_line_after_line(
    server: &Server,
    (uri, mut at, mut version): (&str, (u32, u32), i32),
    eol: &str,
    lines: &[&str],
) {
    for want in lines {
        let want = want.replace('\n', eol);
        let next = server.inline(uri, at.0, at.1);
        assert_eq!(suggestion(&next), Some(want.clone()), "{eol:?}: {next}");
        server.lsp.type_text(uri, version, at, &want);
        version += 1;
        at = (at.0 + 1, (want.len() - eol.len()) as u32);
    }
}

/// Reading ahead is background work: a model `completion.prefetch` does not allow (a cloud
/// model by default; here the setting is off) is asked for the rest of the line only — its
/// call keeps the line-break stop — where a model that may read ahead is not.
#[test]
fn only_a_model_allowed_to_read_ahead_writes_past_the_line() {
    for (prefetch, stops_at_the_line_end) in [("off", true), ("local", false)] {
        let server = Server::start_with(
            Behaviour::answer("sum(items)"),
            Options::default()
                .provider("openai", "qwen")
                .completion(&format!("prefetch = \"{prefetch}\"\n")),
        );
        let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    total = $0\n");
        let shown = server.inline(&uri, line, col);
        assert_eq!(suggestion(&shown).as_deref(), Some("sum(items)"), "{shown}");
        let call = server.double.last_model_call().expect("a model call");
        let stops = call.body["stop"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            stops.contains(&json!("\n")),
            stops_at_the_line_end,
            "prefetch = {prefetch}: {stops:?}"
        );
        server.lsp.shutdown_and_exit();
    }
}

/// A user who types on past the line's end while the rest of the line is being written: on
/// a model that reads ahead, the call writes the line after too, so the request there waits
/// for it and is served from it (one call); on one that may not read ahead (stopped at the
/// line break) the call cannot serve it, so it gives way at once to a call of its own
/// rather than hold the request until it ends.
#[test]
fn typing_past_the_line_joins_only_a_call_that_reads_past_it() {
    for prefetch in ["local", "off"] {
        let server = Server::start_with(
            Behaviour::answer("sum(items)\n    return total\n")
                .chunks(4)
                .chunk_delay(Duration::from_millis(300)),
            Options::default()
                .provider("openai", "qwen")
                .completion(&format!("prefetch = \"{prefetch}\"\n")),
        );
        let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    total = $0\n");
        let first = server.inline_request(&uri, line, col);
        assert!(
            server.double.wait_for(|d| d.requests() == 1, WAIT),
            "{}",
            server.double.summary()
        );
        server
            .lsp
            .type_text(&uri, 2, (line, col), "sum(items)\n    ");
        let next = server.inline_request(&uri, line + 1, 4);
        if prefetch == "local" {
            let next = server.inline_result(next);
            assert_eq!(suggestion(&next).as_deref(), Some("return total"), "{next}");
            assert_eq!(
                server.calls_at("sum(items)\n    "),
                0,
                "served from the first call: {}",
                server.double.summary()
            );
        } else {
            assert!(
                server.double.wait_for(|d| d.requests() == 2, WAIT),
                "{}",
                server.double.summary()
            );
            assert_eq!(
                server.double.completed(),
                0,
                "the first call was dropped, not waited for: {}",
                server.double.summary()
            );
            server.inline_result(next);
        }
        server.lsp.response(first).expect("the first request ends");
        server.lsp.shutdown_and_exit();
    }
}

/// A model with nothing to add to the line (its answer starts with a line break) shows
/// nothing, and its stream is closed at that line break, not read on to the lines after.
#[test]
fn nothing_to_add_to_a_line_closes_the_stream_at_once() {
    let server = Server::start_with(
        Behaviour::answer("\n    return total\n    print(total)\n")
            .chunks(4)
            .chunk_delay(Duration::from_millis(100)),
        Options::default(),
    );
    let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    total = $0\n");
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown), None, "{shown}");
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "{}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
}

/// A block keeps the line the model wrote after it too: here post-processing ends the block
/// before a line that leaves it, and accepting the block brings that line from the cache —
/// even when the user accepts while the model is still writing it: the request waits for the
/// call rather than replace it, and has the line as soon as it is written; the stream is
/// closed there, long before the model's 40 more lines.
#[test]
fn the_line_after_a_block_comes_with_it() {
    let answer = format!("y = x + 1\n    return y\n{}", "# more\n".repeat(40));
    let server = Server::start_with(
        Behaviour::answer(&answer)
            .chunks(60)
            .chunk_delay(Duration::from_millis(100)),
        Options::default(),
    );
    let (uri, line, col) = server.open(
        "f.py",
        "python",
        "def f(x):\n    if x:\n        $0\n    print(x)\n",
    );
    let shown = server.inline(&uri, line, col);
    assert_eq!(suggestion(&shown).as_deref(), Some("y = x + 1"), "{shown}");
    assert_eq!(server.double.completed(), 0, "still writing");
    server.lsp.type_text(&uri, 2, (line, col), "y = x + 1");
    let next = server.inline(&uri, line, col + 9);
    assert_eq!(
        suggestion(&next).as_deref(),
        Some("\n    return y"),
        "{next}"
    );
    assert_eq!(source_of(&next), "typed-ahead", "{next}");
    assert_eq!(
        server.calls_at("y = x + 1"),
        0,
        "{}",
        server.double.summary()
    );
    assert!(
        server.double.wait_for(|d| d.aborted() == 1, WAIT),
        "{}",
        server.double.summary()
    );
    assert_eq!(server.double.completed(), 0, "{}", server.double.summary());
    server.lsp.shutdown_and_exit();
}

/// The user types past a slow model's suggestion with something else: its call, still
/// writing the line after, can serve nothing more and is given up at once — not read on for
/// up to a second (`LINE_AFTER_LIMIT`) while the request at the next pause waits for it.
/// Whether the user typed on after the suggestion was shown (the edit gives the call up) or
/// while it was still being written (the request waiting on the call gives up on it when
/// it publishes a suggestion that is not what was typed), the call is closed as its first
/// line is written, and the request at the pause gets its suggestion from a call of its own.
#[test]
fn typing_past_a_suggestion_with_something_else_gives_up_its_call() {
    // Three pieces, one every `PIECE`: the first line is written with the second, the line
    // after it with the third.
    const PIECE: Duration = Duration::from_millis(1500);
    for typed_before_the_first_line in [false, true] {
        let server = Server::start_with(
            Behaviour::answer_at("len(", "items)\n", "sum(items)\n    return total\n")
                .chunks(3)
                .chunk_delay(PIECE),
            Options::default().provider("openai", "qwen"),
        );
        let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    total = $0\n");
        let first = server.inline_request(&uri, line, col);
        assert!(
            server.double.wait_for(|d| d.requests() == 1, WAIT),
            "{}",
            server.double.summary()
        );
        let asked = std::time::Instant::now();
        if !typed_before_the_first_line {
            let shown = server.inline_result(first);
            assert_eq!(suggestion(&shown).as_deref(), Some("sum(items)"), "{shown}");
        }
        server.lsp.type_text(&uri, 2, (line, col), "len(");
        let next = server.inline_request(&uri, line, col + 4);
        // The first call closed: no call in flight but the one for the request at `len(`.
        // (A warm-up of the place, which the first edit of a document may send, is given up
        // by that call: it may close at the same moment, so the count can pass 1 at once.)
        assert!(
            server
                .double
                .wait_for(|d| d.aborted() >= 1 && d.in_flight() <= 1, WAIT),
            "{}",
            server.double.summary()
        );
        let closed = asked.elapsed();
        assert!(
            closed < PIECE + Duration::from_millis(600),
            "closed {closed:?} after it was asked, its first line written after {PIECE:?}: {}",
            server.double.summary()
        );
        let next = server.inline_result(next);
        assert_eq!(suggestion(&next).as_deref(), Some("items)"), "{next}");
        assert_eq!(server.calls_at("len("), 1, "{}", server.double.summary());
        if typed_before_the_first_line {
            server.lsp.response(first).expect("the first request ends");
        }
        server.lsp.shutdown_and_exit();
    }
}
