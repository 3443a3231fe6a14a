//! Positions on the wire: emoji (two UTF-16 units, four UTF-8 bytes), CJK (one unit, three
//! bytes) and CRLF files, in the default UTF-16 and in negotiated UTF-8. The proof is what the
//! model double receives: the prompt is cut exactly at the cursor, and edits land exactly
//! where the editor meant them.

use serde_json::{Value, json};

use crate::harness::{Options, Server, suggestion};
use crate::support::double::Behaviour;
use crate::support::lsp::{Encoding, mark_in, position_at, range};

fn utf8_client() -> Value {
    json!({ "general": { "positionEncodings": ["utf-8"] } })
}

fn start(encoding: Encoding) -> Server {
    let capabilities = match encoding {
        Encoding::Utf8 => utf8_client(),
        _ => json!({}),
    };
    Server::start_with(
        Behaviour::answer("str(n)"),
        Options::default().capabilities(capabilities),
    )
}

fn negotiated(server: &Server) -> Value {
    server.init["capabilities"]["positionEncoding"].clone()
}

/// Opens the fixture, asks at its cursor (columns in `encoding`) and checks the prompt the
/// model got is cut exactly at the cursor and the answer's range sits at the cursor.
fn check_cut_at_cursor(encoding: Encoding, name: &str, language: &str, fixture: &str) {
    let server = start(encoding);
    let (text, line, col) = mark_in(fixture, encoding);
    let cut = fixture.find("$0").expect("a cursor");
    let uri = server.lsp.uri(name);
    server.lsp.open(&uri, language, &text);
    let (result, call) = server.inline_and_call(&uri, line, col);
    let call = call.expect("a model call");
    assert_eq!(call.prompt_text(), text[..cut], "{encoding:?} {fixture:?}");
    assert_eq!(
        call.suffix_text().as_deref(),
        Some(&text[cut..]),
        "{encoding:?} {fixture:?}"
    );
    if let Some(item) = result["items"].as_array().and_then(|items| items.first()) {
        assert_eq!(
            item["range"],
            range((line, col), (line, col)),
            "{encoding:?} {fixture:?}"
        );
    }
    server.lsp.shutdown_and_exit();
}

#[test]
fn utf16_is_the_default_encoding() {
    let server = start(Encoding::Utf16);
    assert_eq!(negotiated(&server), json!("utf-16"));
    server.lsp.shutdown_and_exit();
}

#[test]
fn utf8_is_negotiated_when_the_client_offers_it() {
    let server = start(Encoding::Utf8);
    assert_eq!(negotiated(&server), json!("utf-8"));
    server.lsp.shutdown_and_exit();
}

const EMOJI_CJK_END: &str = "n = 1\nlabel = \"😀 世界\" + $0\nprint(label)\n";
const EMOJI_CJK_MIDDLE: &str = "n = 1\nlabel = \"😀$0世界🦀\"\n";
const CRLF: &str = "fn main() {\r\n    let s = \"🦀 世界\";\r\n    let n = $0\r\n}\r\n";

#[test]
fn utf16_cursor_after_emoji_and_cjk() {
    check_cut_at_cursor(Encoding::Utf16, "label.py", "python", EMOJI_CJK_END);
}

#[test]
fn utf16_cursor_between_emoji_and_cjk() {
    check_cut_at_cursor(Encoding::Utf16, "label.py", "python", EMOJI_CJK_MIDDLE);
}

#[test]
fn utf16_crlf_file() {
    check_cut_at_cursor(Encoding::Utf16, "main.rs", "rust", CRLF);
}

#[test]
fn utf8_cursor_after_emoji_and_cjk() {
    check_cut_at_cursor(Encoding::Utf8, "label.py", "python", EMOJI_CJK_END);
}

#[test]
fn utf8_cursor_between_emoji_and_cjk() {
    check_cut_at_cursor(Encoding::Utf8, "label.py", "python", EMOJI_CJK_MIDDLE);
}

#[test]
fn utf8_crlf_file() {
    check_cut_at_cursor(Encoding::Utf8, "main.rs", "rust", CRLF);
}

#[test]
fn the_suggestion_range_is_at_the_cursor_after_emoji() {
    for encoding in [Encoding::Utf16, Encoding::Utf8] {
        let server = start(encoding);
        let (text, line, col) = mark_in("n = 2\nlabel = \"😀世\" + $0\n", encoding);
        let uri = server.lsp.uri("label.py");
        server.lsp.open(&uri, "python", &text);
        let result = server.inline(&uri, line, col);
        assert_eq!(
            suggestion(&result).as_deref(),
            Some("str(n)"),
            "{encoding:?}"
        );
        // "label = \"😀世\" + " is 16 UTF-16 units and 20 UTF-8 bytes.
        let expected = if encoding == Encoding::Utf8 { 20 } else { 16 };
        assert_eq!(col, expected);
        assert_eq!(
            result["items"][0]["range"],
            range((1, expected), (1, expected))
        );
        server.lsp.shutdown_and_exit();
    }
}

/// A range-replacing change computed from byte offsets into the current `text`.
fn edit(text: &str, start: usize, end: usize, new: &str, encoding: Encoding) -> Value {
    json!({
        "range": range(
            position_at(text, start, encoding),
            position_at(text, end, encoding)
        ),
        "text": new
    })
}

/// Applies the same edit to a local copy, so the test knows the expected text.
fn apply(text: &mut String, start: usize, end: usize, new: &str) {
    text.replace_range(start..end, new);
}

fn check_incremental_edits(encoding: Encoding) {
    let server = start(encoding);
    let uri = server.lsp.uri("edits.py");
    let mut text = String::from("a = \"😀😀\"\nb = 1\n");
    server.lsp.open(&uri, "python", &text);

    // One didChange with two changes, applied in order: "世" between the emoji, then the
    // second emoji replaced by "x".
    let between = text.find('😀').unwrap() + '😀'.len_utf8();
    let first = edit(&text, between, between, "世", encoding);
    apply(&mut text, between, between, "世");
    let second_emoji = text.rfind('😀').unwrap();
    let second = edit(
        &text,
        second_emoji,
        second_emoji + '😀'.len_utf8(),
        "x",
        encoding,
    );
    apply(&mut text, second_emoji, second_emoji + '😀'.len_utf8(), "x");
    server.lsp.change(&uri, 2, json!([first, second]));

    // A line break inserted after an emoji, then text after CJK on the new line.
    let header = "# 🦀 header\n";
    let at_start = edit(&text, 0, 0, header, encoding);
    apply(&mut text, 0, 0, header);
    server.lsp.change(&uri, 3, json!([at_start]));
    let after_cjk = text.find('世').unwrap() + '世'.len_utf8();
    let cjk = edit(&text, after_cjk, after_cjk, "界🦀", encoding);
    apply(&mut text, after_cjk, after_cjk, "界🦀");
    server.lsp.change(&uri, 4, json!([cjk]));
    // A deletion spanning an emoji and a line break.
    let crab = text.rfind('🦀').unwrap();
    let line_end = text[crab..].find('\n').unwrap() + crab + 1;
    let joined = edit(&text, crab, line_end, "", encoding);
    apply(&mut text, crab, line_end, "");
    server.lsp.change(&uri, 5, json!([joined]));

    assert_eq!(text, "# 🦀 header\na = \"😀世界b = 1\n");
    let cursor = text.find("= 1").unwrap() + 3;
    let (line, col) = position_at(&text, cursor, encoding);
    let (_, call) = server.inline_and_call(&uri, line, col);
    let call = call.expect("a model call");
    assert_eq!(call.prompt_text(), text[..cursor], "{encoding:?}");
    assert_eq!(
        call.suffix_text().as_deref(),
        Some(&text[cursor..]),
        "{encoding:?}"
    );
    server.lsp.shutdown_and_exit();
}

#[test]
fn utf16_incremental_edits_around_emoji() {
    check_incremental_edits(Encoding::Utf16);
}

#[test]
fn utf8_incremental_edits_around_emoji() {
    check_incremental_edits(Encoding::Utf8);
}

#[test]
fn utf32_is_negotiated_in_the_clients_order_of_preference() {
    let server = Server::start_with(
        Behaviour::answer("str(n)"),
        Options::default()
            .capabilities(json!({ "general": { "positionEncodings": ["utf-32", "utf-16"] } })),
    );
    assert_eq!(negotiated(&server), json!("utf-32"));
    let (text, line, col) = mark_in(EMOJI_CJK_MIDDLE, Encoding::Utf32);
    let uri = server.lsp.uri("label.py");
    server.lsp.open(&uri, "python", &text);
    let (_, call) = server.inline_and_call(&uri, line, col);
    let cut = EMOJI_CJK_MIDDLE.find("$0").unwrap();
    let call = call.expect("a model call");
    assert_eq!(call.prompt_text(), text[..cut]);
    server.lsp.shutdown_and_exit();
}

#[test]
fn a_column_inside_a_surrogate_pair_clamps_to_the_start_of_the_emoji() {
    let server = start(Encoding::Utf16);
    let (text, line, col) = mark_in("n = 1\nlabel = \"$0😀世\"\n", Encoding::Utf16);
    let uri = server.lsp.uri("label.py");
    server.lsp.open(&uri, "python", &text);
    // One UTF-16 unit into the emoji: half a surrogate pair.
    let (_, call) = server.inline_and_call(&uri, line, col + 1);
    let call = call.expect("a model call");
    assert_eq!(call.prompt_text(), "n = 1\nlabel = \"");
    assert_eq!(call.suffix_text().as_deref(), Some("😀世\"\n"));
    server.lsp.shutdown_and_exit();
}

#[test]
fn the_completion_item_edit_starts_at_the_word_after_emoji_and_cjk() {
    for encoding in [Encoding::Utf16, Encoding::Utf8] {
        let server = Server::start_with(
            Behaviour::answer("o(bar)"),
            Options::default().capabilities(match encoding {
                Encoding::Utf8 => utf8_client(),
                _ => json!({}),
            }),
        );
        let fixture = "def f(bar):\n    s = \"😀世\"; 世界fo$0\n";
        let (text, line, col) = mark_in(fixture, encoding);
        let uri = server.lsp.uri("f.py");
        server.lsp.open(&uri, "python", &text);
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
        let item = &menu["items"][0];
        // The word before the cursor is "世界fo" (CJK letters are word characters).
        let word_start = text.find("世界fo").unwrap();
        assert_eq!(
            item["textEdit"]["range"],
            range(position_at(&text, word_start, encoding), (line, col)),
            "{encoding:?}: {menu}"
        );
        assert_eq!(
            item["textEdit"]["newText"],
            json!("世界foo(bar)"),
            "{encoding:?}"
        );
        server.lsp.shutdown_and_exit();
    }
}
