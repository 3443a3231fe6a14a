//! The completion menu (`textDocument/completion`: Helix, Neovim 0.11) with a model slower
//! than the default 100 ms budget. An editor's explicit ask (Helix's `C-x`, the Neovim
//! plugin's `<C-l>`) gets the model's suggestion however late, unless the user edits the
//! document meanwhile: then the request ends at once, empty — Helix sends no newer request
//! and no `$/cancelRequest` while one is in flight, and starts no automatic completion in
//! the document until it ends — while the slow model's call runs on for the next request.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Server;
use crate::support::double::Behaviour;
use crate::support::lsp::RequestId;

/// Upper bound for asynchronous effects; tests wait on conditions, not on this time.
const WAIT: Duration = Duration::from_secs(10);

fn menu_request(server: &Server, uri: &str, line: u32, col: u32) -> RequestId {
    server.lsp.request(
        "textDocument/completion",
        json!({
            "textDocument": { "uri": uri },
            "position": { "line": line, "character": col },
            "context": { "triggerKind": 1 }
        }),
    )
}

/// The texts the menu items would insert.
fn menu_texts(result: &Value) -> Vec<String> {
    result["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["textEdit"]["newText"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_first_ask_shows_a_slow_models_suggestion() {
    let server = Server::start(Behaviour::answer("a + b").delay(Duration::from_millis(1200)));
    let (uri, line, col) = server.open("add.py", "python", "def add(a, b):\n    return $0\n");
    let id = menu_request(&server, &uri, line, col);
    let menu = server.lsp.response(id).expect("completion answers");
    assert_eq!(menu_texts(&menu), ["a + b"], "{menu}");
    server.lsp.shutdown_and_exit();
}

#[test]
fn an_edit_ends_a_menu_request_at_once_and_the_slow_call_serves_the_next() {
    let delay = Duration::from_secs(3);
    let server = Server::start(Behaviour::answer("total(items)").delay(delay));
    let (uri, line, col) = server.open("sum.py", "python", "def f(items):\n    return $0\n");
    let first = menu_request(&server, &uri, line, col);
    assert!(server.double.wait_for(|d| d.requests() == 1, WAIT));
    let typed = Instant::now();
    server.lsp.type_text(&uri, 2, (line, col), "t");
    let ended = server.lsp.response(first).expect("completion answers");
    assert_eq!(menu_texts(&ended), Vec::<String>::new(), "{ended}");
    assert_eq!(ended["isIncomplete"], json!(true), "{ended}");
    assert!(
        typed.elapsed() < delay / 2 && server.double.completed() == 0,
        "answered before the model, {:?} after the edit: {}",
        typed.elapsed(),
        server.double.summary()
    );
    // The call runs on; the next ask, after the typed "t", is served by it (typed-ahead).
    let next = menu_request(&server, &uri, line, col + 1);
    let menu = server.lsp.response(next).expect("completion answers");
    assert_eq!(menu_texts(&menu), ["total(items)"], "{menu}");
    assert_eq!(server.double.aborted(), 0, "{}", server.double.summary());
    assert_eq!(
        server.calls_at("return t"),
        0,
        "{}",
        server.double.summary()
    );
    server.lsp.shutdown_and_exit();
    assert_eq!(server.lsp.protocol_errors(), Vec::<String>::new());
}
