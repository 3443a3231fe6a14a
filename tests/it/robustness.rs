//! SPEC §9 from the editor's side: unknown languages, malformed edits and positions,
//! malformed JSON-RPC, huge files, model servers that are down or answer garbage, and a
//! clean exit. Each gets a clear error or an empty answer; the server stays up and no
//! document state is lost.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Options, Server, assert_empty, dead_url, suggestion};
use crate::support::double::{Behaviour, Fault, RecordedRequest};
use crate::support::lsp::{EXIT_TIMEOUT, mark, range};

const WAIT: Duration = Duration::from_secs(10);

/// LSP's `MessageType.Error`.
const ERROR: i64 = 1;

#[test]
fn an_unknown_language_still_gets_completions_as_plain_text() {
    let server = Server::start(Behaviour::answer("x + 1"));
    let (uri, line, col) = server.open(
        "lib/m.ex",
        "elixir",
        "defmodule M do\n  def f(x), do: $0\nend\n",
    );
    let (result, call) = server.inline_and_call(&uri, line, col);
    assert_eq!(suggestion(&result).as_deref(), Some("x + 1"), "{result}");
    let call = call.expect("a model call");
    assert_eq!(call.prompt_text(), "defmodule M do\n  def f(x), do: ");
    server.lsp.shutdown_and_exit();
}

/// The text of the whole document as the model saw it in `call`: prompt + suffix.
fn seen_by_model(call: &RecordedRequest) -> String {
    call.prompt_text() + &call.suffix_text().unwrap_or_default()
}

fn error_logs(server: &Server) -> Vec<Value> {
    server
        .lsp
        .notifications_of("window/logMessage")
        .into_iter()
        .filter(|params| params["type"] == json!(ERROR))
        .collect()
}

fn wait_for_error_logs(server: &Server, count: usize) {
    let reported = crate::support::wait_until(WAIT, || error_logs(server).len() >= count);
    assert!(
        reported,
        "expected {count} error logs, got {:#?}",
        server.lsp.notifications()
    );
}

#[test]
fn bad_edits_are_reported_and_leave_the_document_intact() {
    let server = Server::start(Behaviour::answer("a + b"));
    let original = "def add(a, b):\n    return \n";
    let uri = server.lsp.uri("add.py");
    server.lsp.open(&uri, "python", original);

    // An edit to a document that was never opened.
    let unopened = server.lsp.uri("never-opened.py");
    server.lsp.type_text(&unopened, 2, (0, 0), "import os\n");
    wait_for_error_logs(&server, 1);
    // A range past the end of the document.
    server.lsp.change(
        &uri,
        2,
        json!([{ "range": range((40, 0), (41, 0)), "text": "x" }]),
    );
    wait_for_error_logs(&server, 2);
    // An inverted range.
    server.lsp.change(
        &uri,
        3,
        json!([{ "range": range((1, 4), (0, 2)), "text": "x" }]),
    );
    wait_for_error_logs(&server, 3);
    // A good change followed by a bad one in the same set: all or nothing.
    server.lsp.change(
        &uri,
        4,
        json!([
            { "range": range((0, 0), (0, 0)), "text": "# edited\n" },
            { "range": range((90, 0), (90, 1)), "text": "x" }
        ]),
    );
    wait_for_error_logs(&server, 4);
    assert!(server.lsp.is_running());

    let (result, call) = server.inline_and_call(&uri, 1, 11);
    assert_eq!(suggestion(&result).as_deref(), Some("a + b"), "{result}");
    let call = call.expect("a model call");
    assert_eq!(seen_by_model(&call), original, "the document is unchanged");
    assert!(call.prompt_text().ends_with("return "));
    server.lsp.shutdown_and_exit();
}

#[test]
fn a_completion_past_the_last_line_is_a_clear_error() {
    let server = Server::start(Behaviour::answer("a + b"));
    let (uri, _, _) = server.open("add.py", "python", "def add(a, b):\n    return $0\n");
    let past_end = server.lsp.request_and_wait(
        "textDocument/inlineCompletion",
        json!({
            "textDocument": { "uri": uri },
            "position": { "line": 99, "character": 0 },
            "context": { "triggerKind": 1 }
        }),
    );
    match past_end {
        Err(error) => {
            assert_eq!(error.code, -32602, "InvalidParams: {error:?}");
            assert!(
                error.message.contains("line 99"),
                "names the line: {error:?}"
            );
        }
        Ok(result) => assert_empty(&result),
    }
    assert_eq!(
        server.double.requests(),
        0,
        "no model call for a bad position"
    );
    server.assert_alive();
    server.lsp.shutdown_and_exit();
}

#[test]
fn a_column_past_the_end_of_the_line_clamps_to_the_line_end() {
    let server = Server::start(Behaviour::answer("a + b"));
    let (uri, line, _) = server.open("add.py", "python", "def add(a, b):\n    return $0\n");
    let (result, call) = server.inline_and_call(&uri, line, u32::MAX);
    assert_eq!(suggestion(&result).as_deref(), Some("a + b"), "{result}");
    let call = call.expect("a model call");
    assert_eq!(call.prompt_text(), "def add(a, b):\n    return ");
    // In a CRLF file the line ends before the `\r`.
    let (crlf, line, _) = server.open("crlf.py", "python", "def add(a, b):\r\n    return $0\r\n");
    let (_, call) = server.inline_and_call(&crlf, line, 500);
    let call = call.expect("a model call");
    assert_eq!(call.prompt_text(), "def add(a, b):\r\n    return ");
    assert_eq!(call.suffix_text().as_deref(), Some("\r\n"));
    server.lsp.shutdown_and_exit();
}

#[test]
fn a_completion_for_an_unopened_document_is_an_error() {
    let server = Server::start(Behaviour::answer("a + b"));
    let answer = server.lsp.request_and_wait(
        "textDocument/inlineCompletion",
        json!({
            "textDocument": { "uri": server.lsp.uri("nowhere.py") },
            "position": { "line": 0, "character": 0 },
            "context": { "triggerKind": 1 }
        }),
    );
    match answer {
        Err(error) => assert!(error.message.contains("not open"), "{error:?}"),
        Ok(result) => assert_empty(&result),
    }
    server.assert_alive();
    server.lsp.shutdown_and_exit();
}

/// After whatever the test sent, a normal completion still works.
fn assert_still_completes(server: &Server) {
    let (text, line, col) = mark("def add(a, b):\n    return $0\n");
    let uri = server.lsp.uri("after.py");
    server.lsp.open(&uri, "python", &text);
    let result = server.inline(&uri, line, col);
    assert_eq!(suggestion(&result).as_deref(), Some("a + b"), "{result}");
}

#[test]
fn a_body_that_is_not_json_is_a_parse_error_and_the_server_stays_up() {
    let server = Server::start(Behaviour::answer("a + b"));
    server
        .lsp
        .send_raw_frame(b"{\"jsonrpc\": \"2.0\", \"id\": 7, \"method\": ");
    let responses = server.lsp.wait_for_null_id_responses(1);
    assert_eq!(
        responses[0]["error"]["code"],
        json!(-32700),
        "{responses:?}"
    );
    assert!(server.lsp.is_running());
    assert_still_completes(&server);
    server.lsp.shutdown_and_exit();
    assert_eq!(server.lsp.protocol_errors(), Vec::<String>::new());
}

#[test]
fn a_body_that_is_not_utf8_is_a_parse_error_and_the_server_stays_up() {
    let server = Server::start(Behaviour::answer("a + b"));
    server
        .lsp
        .send_raw_frame(b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"\xff\xfe\"}");
    let responses = server.lsp.wait_for_null_id_responses(1);
    assert_eq!(
        responses[0]["error"]["code"],
        json!(-32700),
        "{responses:?}"
    );
    assert!(server.lsp.is_running());
    assert_still_completes(&server);
    server.lsp.shutdown_and_exit();
}

/// Several unreadable messages back to back: each gets its own parse error (they are answered
/// before tower-lsp's queue of requests in flight, where their shared null id would clash),
/// and the server stays up.
#[test]
fn unreadable_messages_back_to_back_each_get_an_error() {
    let server = Server::start(Behaviour::answer("a + b"));
    for _ in 0..5 {
        server.lsp.send_raw_frame(b"{oops");
    }
    let responses = server.lsp.wait_for_null_id_responses(5);
    for response in &responses {
        assert_eq!(response["error"]["code"], json!(-32700), "{responses:?}");
    }
    assert_still_completes(&server);
    server.lsp.shutdown_and_exit();
    assert_eq!(server.lsp.null_id_responses().len(), 5);
}

#[test]
fn json_that_is_not_a_message_is_an_error_and_the_server_stays_up() {
    let server = Server::start(Behaviour::answer("a + b"));
    server.lsp.send_raw_frame(b"[1, 2, 3]");
    let responses = server.lsp.wait_for_null_id_responses(1);
    let code = responses[0]["error"]["code"].as_i64();
    assert!(
        matches!(code, Some(-32600 | -32700)),
        "InvalidRequest or ParseError: {responses:?}"
    );
    assert_still_completes(&server);
    server.lsp.shutdown_and_exit();
}

#[test]
fn an_unknown_method_is_method_not_found_and_the_server_stays_up() {
    let server = Server::start(Behaviour::answer("a + b"));
    let unknown = server
        .lsp
        .request_and_wait("pilotfish/noSuchMethod", json!({}));
    assert_eq!(unknown.map_err(|e| e.code), Err(-32601), "MethodNotFound");
    // Unknown notifications are ignored.
    server.lsp.notify("pilotfish/noSuchNotification", json!({}));
    server.lsp.notify("$/noSuchThing", json!({}));
    assert_still_completes(&server);
    server.lsp.shutdown_and_exit();
    assert_eq!(server.lsp.protocol_errors(), Vec::<String>::new());
}

/// Past the parse limit (8 MB) a file is served as plain text; just past it here. (Below it, a debug build
/// spends ~15 s parsing 5 MB of Rust, so the parsed case is left to the benches.)
#[test]
fn a_file_past_the_parse_limit_opens_and_completes() {
    let server = Server::start(Behaviour::answer("a + b"));
    let mut text = String::with_capacity(9 << 20);
    let mut i = 0;
    while text.len() <= pilotfish::documents::MAX_PARSED_BYTES {
        text.push_str(&format!(
            "fn f{i}(x: u32) -> u32 {{\n    let y = x * {i};\n    y + 1\n}}\n\n"
        ));
        i += 1;
    }
    let fixture = format!("{text}fn add(a: i32, b: i32) -> i32 {{\n    return $0\n}}\n");
    let (uri, line, col) = server.open("big.rs", "rust", &fixture);
    let (result, call) = server.inline_and_call(&uri, line, col);
    assert_eq!(suggestion(&result).as_deref(), Some("a + b"), "{result}");
    let call = call.expect("a model call");
    assert!(call.prompt_text().ends_with("{\n    return "));
    assert!(call.prompt_text().len() < 64 << 10, "only a window is sent");
    server.lsp.shutdown_and_exit();
}

#[test]
fn a_model_server_that_is_down_gives_empty_answers_and_one_message() {
    let url = dead_url();
    let server = Server::start_with(
        Behaviour::answer("unused"),
        Options::default().url(url.clone()),
    );
    let (uri, line, col) = server.open("add.py", "python", "def add(a, b):\n    return $0\n");
    for n in 0..3 {
        let result = server.inline(&uri, line, col);
        assert_empty(&result);
        if n == 0 {
            server
                .lsp
                .wait_for_notification("window/showMessage", |_| true);
        }
    }
    let messages = server.lsp.notifications_of("window/showMessage");
    assert_eq!(
        messages.len(),
        1,
        "told once, not per request: {messages:#?}"
    );
    let text = messages[0]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("ollama serve") || text.to_lowercase().contains("start"),
        "says what to start: {text}"
    );
    let host_port = url.trim_start_matches("http://");
    assert!(
        text.contains(host_port),
        "names the server it tried: {text}"
    );
    server.assert_alive();
    server.lsp.shutdown_and_exit();
}

#[test]
fn a_model_answering_garbage_or_500_gives_empty_answers() {
    let server = Server::start(Behaviour::failing(Fault::Garbage));
    let (uri, line, col) = server.open("add.py", "python", "def add(a, b):\n    return $0\n");
    assert_empty(&server.inline(&uri, line, col));
    assert_eq!(server.double.requests(), 1);

    server
        .double
        .set_behaviour(Behaviour::failing(Fault::status(500)));
    assert_empty(&server.inline(&uri, line, col));
    // A completion never waits for a retry: one call.
    assert_eq!(server.double.requests(), 2, "a failure is not cached");

    server.double.set_behaviour(Behaviour::answer("a + b"));
    let result = server.inline(&uri, line, col);
    assert_eq!(suggestion(&result).as_deref(), Some("a + b"), "{result}");
    server.lsp.shutdown_and_exit();
}

#[test]
fn shutdown_and_exit_with_a_model_call_in_flight_exits_zero() {
    let server = Server::start(Behaviour::answer("a + b").delay(Duration::from_secs(30)));
    let (uri, line, col) = server.open("add.py", "python", "def add(a, b):\n    return $0\n");
    let _pending = server.inline_request(&uri, line, col);
    assert!(server.double.wait_for(|d| d.requests() == 1, WAIT));
    // Asserts status 0 within EXIT_TIMEOUT.
    server.lsp.shutdown_and_exit();
    assert_eq!(server.lsp.protocol_errors(), Vec::<String>::new());
}

#[test]
fn exit_without_shutdown_exits_one() {
    let server = Server::start(Behaviour::answer("a + b"));
    server.lsp.notify("exit", Value::Null);
    let status = server
        .lsp
        .wait_exit(EXIT_TIMEOUT)
        .expect("the server exits");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn broken_headers_are_a_parse_error_and_the_server_stays_up() {
    let server = Server::start(Behaviour::answer("a + b"));
    server.lsp.send_raw(b"Content-Type: text/plain\r\n\r\n");
    server.lsp.wait_for_null_id_responses(1);
    server.lsp.send_raw(b"Content-Length: many\r\n\r\n");
    let responses = server.lsp.wait_for_null_id_responses(2);
    for response in &responses {
        assert_eq!(response["error"]["code"], json!(-32700), "{responses:?}");
    }
    assert!(
        responses[1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Content-Length")),
        "says what was wrong: {responses:?}"
    );
    assert_still_completes(&server);
    server.lsp.shutdown_and_exit();
}

/// A failed call now and then that may pass (a 500, a dropped connection) gives an empty
/// answer and no message; failures that go on open the circuit, and then the user is told,
/// once. The message used to come with the first failed call, telling the user of a model
/// that had answered a second before to start their model server. (A failure that does not
/// pass by itself, as a 404 for the model, is told at once: `resilience.rs`'s
/// `a_models_error_text_reaches_the_user_once_in_one_line`.)
#[test]
fn a_failed_call_is_not_told_failures_that_go_on_are() {
    let server = Server::start(Behaviour::failing(Fault::status(500)));
    let (uri, line, col) = server.open("add.py", "python", "def add(a, b):\n    return $0\n");
    assert_empty(&server.inline(&uri, line, col));
    server.double.set_behaviour(Behaviour::answer("a + b"));
    let (uri2, line2, col2) = server.open("sub.py", "python", "def sub(a, b):\n    return $0\n");
    let answered = server.inline(&uri2, line2, col2);
    assert_eq!(
        suggestion(&answered).as_deref(),
        Some("a + b"),
        "{answered}"
    );
    let told = || server.lsp.notifications_of("window/showMessage");
    assert!(told().is_empty(), "{:#?}", told());

    server
        .double
        .set_behaviour(Behaviour::failing(Fault::status(500)));
    // A request whose call is not let through (the endpoint takes one call at a time while
    // failing) fails without a call: the circuit may take more requests than calls.
    let mut requests = 0;
    for (version, typed) in (2..).zip("xyzwvutsrq".chars().map(String::from)) {
        server
            .lsp
            .type_text(&uri2, version, (line2, col2 + version as u32 - 2), &typed);
        assert_empty(&server.inline(&uri2, line2, col2 + version as u32 - 1));
        requests += 1;
        if !told().is_empty() {
            break;
        }
    }
    assert_eq!(
        told().len(),
        1,
        "told once the circuit opened: {:#?}",
        told()
    );
    assert!(requests >= 2, "not at the first failure");
    let text = told()[0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("HTTP 500"), "says why: {text}");
    assert!(
        text.contains("keeps failing") && !text.contains("Start your model"),
        "the server runs and fails: {text}"
    );
    server.lsp.shutdown_and_exit();
}

#[test]
fn a_bad_config_file_is_reported_and_the_server_still_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".pilotfish.toml"),
        "[completion]\nbudget_ms = \"soon\"\n",
    )
    .unwrap();
    let lsp = crate::support::lsp::LspClient::spawn(&[], &[], dir.path());
    let init = lsp.initialize(json!({}), Value::Null);
    assert_eq!(
        init["capabilities"]["inlineCompletionProvider"],
        json!(true)
    );
    let shown = lsp.wait_for_notification("window/showMessage", |params| {
        params["type"] == json!(ERROR)
    });
    let text = shown["message"].as_str().unwrap_or_default();
    for part in [".pilotfish.toml", "completion.budget_ms", "invalid type"] {
        assert!(text.contains(part), "names {part:?}: {text}");
    }
    lsp.shutdown_and_exit();
}
