//! The properties the fuzz targets (`fuzz/`, run by `cargo fuzz`) check, one function per
//! target, each taking the fuzzer's bytes and panicking when a property breaks:
//!
//! - [`document_edits`]: edit sequences on a document — after every change set the rope is
//!   the plain string the edits make, the byte edits reported are the ones made, the tree
//!   covers the text and matches a fresh parse; a change set with a bad change leaves the
//!   document as it was;
//! - [`positions`]: LSP position ⇄ byte offset in each encoding, against a plain converter;
//! - [`framing`]: the JSON-RPC frame reader, for junk and for valid frames, in any chunking;
//! - [`fim_answer`]: post-processing a raw FIM answer into a suggestion;
//! - [`review_answer`]: reading a review's JSON findings and a rewrite's code;
//! - [`chat_stream`]: the streamed chat decoders (SSE, NDJSON), in any chunking.
//!
//! Compiled only under `cargo fuzz` (`--cfg fuzzing`) and for the unit tests, which replay
//! every input in `fuzz/regressions/<target>/` (crashes the fuzzer found, kept as files) and
//! a few seeds. Not part of the product: no I/O beyond reading those files in tests.

use ropey::Rope;
use tree_sitter::{Node, Tree};

use crate::actions::answer::{extract_code, parse_findings};
use crate::documents::{ByteEdit, Documents, TextChange};
use crate::position::{self, LineCol, PositionEncoding, PositionError};
use crate::postprocess::{MAX_LINES, postprocess};
use crate::syntax::context::{ContextBudget, MultilinePolicy, extract};
use crate::syntax::{Language, parse};

const ENCODINGS: [PositionEncoding; 3] = [
    PositionEncoding::Utf8,
    PositionEncoding::Utf16,
    PositionEncoding::Utf32,
];
/// Pieces of text the generators build documents and edits from: code tokens of several
/// languages, every kind of line break, multi-byte characters (2, 3 and 4 bytes; 4 bytes are
/// two UTF-16 units), and brackets left open.
const FRAGMENTS: [&str; 32] = [
    "a",
    "x = 1",
    "é",
    "日本",
    "😀",
    "\n",
    "\r\n",
    "\r",
    " ",
    "    ",
    "\t",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    ";",
    ":",
    "#",
    "//",
    "/*",
    "*/",
    "def f(a):\n",
    "fn f() {",
    "if x:",
    "return ",
    "int main(void) {",
    "```",
    "\u{feff}",
];

/// The fuzzer's bytes, read as a sequence of choices; past the end every choice is 0.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A number below `n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        let value = usize::from(self.byte()) | usize::from(self.byte()) << 8;
        value % n
    }

    /// A number, often small, sometimes huge (a column or a line an editor may send).
    fn number(&mut self) -> u32 {
        match self.byte() % 8 {
            0 => u32::MAX,
            1 => u32::MAX / 2 + u32::from(self.byte()),
            _ => u32::from(self.byte() % 64),
        }
    }

    /// Some text: fragments, or the next bytes as (lossy) UTF-8.
    fn text(&mut self, max_parts: usize) -> String {
        let parts = self.below(max_parts + 1);
        let mut out = String::new();
        for _ in 0..parts {
            if self.byte() % 4 == 0 {
                let len = self.below(8);
                let raw: Vec<u8> = (0..len).map(|_| self.byte()).collect();
                out.push_str(&String::from_utf8_lossy(&raw));
            } else {
                out.push_str(FRAGMENTS[self.below(FRAGMENTS.len())]);
            }
        }
        out
    }

    /// The rest as (lossy) UTF-8.
    fn rest(&mut self) -> String {
        let rest = String::from_utf8_lossy(self.0).into_owned();
        self.0 = &[];
        rest
    }
}

// --- the plain converter the position code is checked against -----------------------------

/// Byte offsets where the lines of `text` start: after each `\n`, `\r\n` and lone `\r`.
fn line_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    for (i, &b) in bytes.iter().enumerate() {
        let ends_line = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
        if ends_line {
            starts.push(i + 1);
        }
    }
    starts
}

/// Where the content of the line starting at `start` ends (before its line break).
fn content_end(text: &str, start: usize) -> usize {
    text[start..]
        .find(['\r', '\n'])
        .map_or(text.len(), |i| start + i)
}

/// The width of `s` in `enc`'s units.
fn width(s: &str, enc: PositionEncoding) -> usize {
    match enc {
        PositionEncoding::Utf8 => s.len(),
        PositionEncoding::Utf16 => s.encode_utf16().count(),
        PositionEncoding::Utf32 => s.chars().count(),
    }
}

/// The position of byte `at` (a char boundary, not between `\r` and `\n`).
fn plain_position(text: &str, starts: &[usize], at: usize, enc: PositionEncoding) -> LineCol {
    let line = starts.partition_point(|&s| s <= at) - 1;
    LineCol {
        line: line as u32,
        col: width(&text[starts[line]..at], enc) as u32,
    }
}

/// Whether byte `at` is a place LSP can name: a char boundary not inside a `\r\n`.
fn nameable(text: &str, at: usize) -> bool {
    text.is_char_boundary(at)
        && !(at > 0 && text.as_bytes()[at - 1] == b'\r' && text.as_bytes().get(at) == Some(&b'\n'))
}

/// The nameable byte at or before `at`.
fn nameable_floor(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !nameable(text, at) {
        at -= 1;
    }
    at
}

// --- documents ------------------------------------------------------------------------------

/// Checks the tree of a document whose text is `text`: every node lies inside the text on
/// char boundaries, and when a fresh parse of the text has no error (and the text does not
/// start with a byte order mark), the tree is that parse.
fn check_tree(tree: &Tree, text: &str, language: Language, after: &str) {
    let mut stack: Vec<Node> = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        let (start, end) = (node.start_byte(), node.end_byte());
        assert!(
            start <= end && end <= text.len(),
            "{after}: node {node:?} outside the text of {} bytes",
            text.len()
        );
        assert!(
            text.is_char_boundary(start) && text.is_char_boundary(end),
            "{after}: node {node:?} splits a character of {text:?}"
        );
        let mut cursor = node.walk();
        stack.extend(node.children(&mut cursor));
    }
    // A byte order mark that an edit makes the first character is skipped by a fresh parse
    // only: tree-sitter reuses the token it was in. Seen with Lua: parse "{\u{feff}", delete
    // the "{" (InputEdit 0..1 → 0) and reparse, and the tree holds an ERROR the fresh parse
    // has not — tree-sitter's doing, with no Pilotfish code involved.
    if text.starts_with('\u{feff}') {
        return;
    }
    if let Some(fresh) = parse(language, text)
        && !fresh.root_node().has_error()
    {
        assert_eq!(
            tree.root_node().to_sexp(),
            fresh.root_node().to_sexp(),
            "{after}: the tree is not the parse of {text:?}"
        );
    }
}

/// Edit sequences on one document (see the module docs).
pub fn document_edits(data: &[u8]) {
    let mut choices = Choices(data);
    let language = Language::ALL[choices.below(Language::ALL.len())];
    let enc = ENCODINGS[choices.below(ENCODINGS.len())];
    let mut text = choices.text(12);
    let mut docs = Documents::default();
    let uri = "file:///fuzz";
    docs.open_parsed(uri, language, 1, &text);
    let mut version = 1;
    while !choices.is_empty() {
        let mut changes = Vec::new();
        let mut byte_edits = Vec::new();
        let mut expected = text.clone();
        let mut bad = false;
        for _ in 0..1 + choices.below(3) {
            let starts = line_starts(&expected);
            let change = match choices.byte() % 16 {
                // The whole text replaced.
                0 => {
                    let old_end = expected.len();
                    expected = choices.text(6);
                    byte_edits.push(ByteEdit {
                        start: 0,
                        old_end,
                        new_end: expected.len(),
                    });
                    TextChange {
                        range: None,
                        text: expected.clone(),
                    }
                }
                // A change no document can take: a line past the end, or a reversed range.
                1 => {
                    bad = true;
                    let past = LineCol {
                        line: (starts.len() as u32).saturating_add(choices.number()),
                        col: choices.number(),
                    };
                    let (start, end) = if choices.byte() % 2 == 0 {
                        (LineCol::default(), past)
                    } else {
                        let end = plain_position(&expected, &starts, 0, enc);
                        let start = LineCol {
                            col: end.col + 1,
                            ..end
                        };
                        (start, end)
                    };
                    TextChange {
                        range: Some((start, end)),
                        text: choices.text(2),
                    }
                }
                _ => {
                    let a = nameable_floor(&expected, choices.below(expected.len() + 1));
                    let b = nameable_floor(&expected, a + choices.below(9));
                    let (from, to) = (a.min(b), a.max(b));
                    let inserted = choices.text(3);
                    let range = (
                        plain_position(&expected, &starts, from, enc),
                        plain_position(&expected, &starts, to, enc),
                    );
                    expected.replace_range(from..to, &inserted);
                    byte_edits.push(ByteEdit {
                        start: from,
                        old_end: to,
                        new_end: from + inserted.len(),
                    });
                    TextChange {
                        range: Some(range),
                        text: inserted,
                    }
                }
            };
            changes.push(change);
        }
        version += 1;
        let applied = docs.change(uri, version, &changes, enc);
        let snapshot = docs.snapshot(uri).expect("the document is open");
        let held = snapshot.rope.to_string();
        if bad {
            assert!(
                applied.is_err(),
                "a bad change set was applied: {changes:?}"
            );
            assert_eq!(held, text, "a refused change set changed the text");
            assert_eq!(docs.version(uri), Some(version - 1));
            version -= 1;
        } else {
            let changed = applied.unwrap_or_else(|e| panic!("{changes:?}: {e}"));
            assert_eq!(held, expected, "after {changes:?}");
            assert_eq!(changed.edits, byte_edits, "the byte edits of {changes:?}");
            text = expected;
        }
        if let Some(tree) = &snapshot.tree {
            check_tree(tree, &text, language, &format!("after {changes:?}"));
        }
        // As when a suggestion is accepted here: the copy the prefetch works on.
        let at = nameable_floor(&text, choices.below(text.len() + 1));
        let inserted = choices.text(2);
        if let Some(accepted) = snapshot.with_insertion(at, &inserted) {
            let mut expected = text.clone();
            expected.insert_str(at, &inserted);
            assert_eq!(accepted.rope.to_string(), expected);
            if let Some(tree) = &accepted.tree {
                check_tree(tree, &expected, language, "with an insertion");
            }
        }
    }
}

// --- positions ------------------------------------------------------------------------------

/// LSP positions ⇄ byte offsets in each encoding (see the module docs).
pub fn positions(data: &[u8]) {
    let mut choices = Choices(data);
    let enc = ENCODINGS[choices.below(ENCODINGS.len())];
    let text = choices.text(16);
    let rope = Rope::from_str(&text);
    let starts = line_starts(&text);
    assert_eq!(rope.len_lines(), starts.len(), "lines of {text:?}");
    for at in 0..=text.len() {
        let from = position::from_byte(&rope, at, enc);
        if !nameable(&text, at) {
            continue;
        }
        let expected = plain_position(&text, &starts, at, enc);
        assert_eq!(from, expected, "from_byte({at}) in {text:?}");
        assert_eq!(
            position::to_byte(&rope, from, enc),
            Ok(at),
            "round trip of byte {at} in {text:?}"
        );
    }
    // Any position an editor may send: a byte on a char boundary of its line, or an error.
    while !choices.is_empty() {
        let pos = LineCol {
            line: choices.number(),
            col: choices.number(),
        };
        let Some(&start) = starts.get(pos.line as usize) else {
            assert!(
                matches!(
                    position::to_byte(&rope, pos, enc),
                    Err(PositionError::LinePastEnd { .. })
                ),
                "{pos:?} past the end of {text:?}"
            );
            continue;
        };
        let byte = position::to_byte(&rope, pos, enc).expect("a line of the document");
        assert!(
            (start..=content_end(&text, start)).contains(&byte) && text.is_char_boundary(byte),
            "{pos:?} in {text:?} gave byte {byte}"
        );
        let back = position::from_byte(&rope, byte, enc);
        assert!(
            back.line == pos.line && back.col <= pos.col,
            "{pos:?} clamps forward to {back:?} in {text:?}"
        );
        let end = LineCol {
            line: choices.number(),
            col: choices.number(),
        };
        if let Ok((a, b)) = position::range_to_bytes(&rope, pos, end, enc) {
            assert!(a <= b, "{pos:?}..{end:?} gave bytes {a}..{b} in {text:?}");
        }
        // Any byte offset at all, on a boundary or not, past the end or not.
        let _ = position::from_byte(&rope, choices.below(text.len() + 8), enc);
    }
}

// --- framing --------------------------------------------------------------------------------

/// The JSON-RPC frame reader (see the module docs). The first byte picks the input: the
/// bytes as they are, or valid frames whose bodies carry the bytes; the next byte says how
/// many of the following are chunk sizes.
pub fn framing(data: &[u8]) {
    let mut choices = Choices(data);
    let valid = choices.byte() % 2 == 0;
    let cuts_len = usize::from(choices.byte() % 16).min(choices.0.len());
    let (cuts, rest) = choices.0.split_at(cuts_len);
    if !valid {
        crate::lsp::check_framing(rest, cuts);
        return;
    }
    // Valid frames, whatever their bodies hold (a Content-Length header, a line break, junk
    // escaped into a JSON string), come out exactly as they went in.
    let bodies: Vec<Vec<u8>> = rest
        .split(|&b| b == 0)
        .map(|part| {
            let params = String::from_utf8_lossy(part);
            serde_json::to_vec(&serde_json::json!({
                "jsonrpc": "2.0", "method": "fuzz/echo", "params": params
            }))
            .expect("a JSON value")
        })
        .collect();
    let mut input = Vec::new();
    for body in &bodies {
        input.extend(format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes());
        input.extend(body);
    }
    let read: Vec<Vec<u8>> = crate::lsp::check_framing(&input, cuts)
        .into_iter()
        .map(|message| message.expect("a valid frame is read"))
        .collect();
    assert_eq!(read, bodies);
}

// --- answers --------------------------------------------------------------------------------

/// Leaked special tokens a suggestion never shows.
const SPECIAL_TOKENS: [&str; 4] = [
    "<|endoftext|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|im_end|>",
];

/// Post-processing a raw FIM answer (see the module docs): a suggestion is never blank,
/// never carries a special token or a stop sequence, is one line when the place wants one
/// (maybe the next line, at the end of a line), and is at most `MAX_LINES` lines.
pub fn fim_answer(data: &[u8]) {
    let mut choices = Choices(data);
    let language = Language::ALL[choices.below(Language::ALL.len())];
    let multiline = [
        MultilinePolicy::Auto,
        MultilinePolicy::Always,
        MultilinePolicy::Never,
    ][choices.below(3)];
    let text = choices.text(12);
    let cursor = nameable_floor(&text, choices.below(text.len() + 1));
    let rope = Rope::from_str(&text);
    let tree = parse(language, &text);
    let ctx = extract(
        &rope,
        tree.as_ref(),
        language,
        cursor,
        ContextBudget::default(),
        multiline,
    );
    let stop: Vec<String> = (0..choices.below(3)).map(|_| choices.text(1)).collect();
    let mut raw = choices.text(8);
    if choices.byte() % 4 == 0 {
        raw.push_str(SPECIAL_TOKENS[choices.below(SPECIAL_TOKENS.len())]);
    }
    raw.push_str(&choices.rest());
    let Some(suggestion) = postprocess(&raw, &ctx, &stop) else {
        return;
    };
    let why = format!("{raw:?} at {cursor} of {text:?} ({language:?}, stop {stop:?})");
    assert!(
        !suggestion.trim().is_empty(),
        "a blank suggestion from {why}"
    );
    for token in SPECIAL_TOKENS {
        assert!(
            !suggestion.contains(token),
            "{token} in {suggestion:?} from {why}"
        );
    }
    for stop in stop
        .iter()
        .filter(|s| !s.is_empty() && !s.contains(['\n', '\r']))
    {
        assert!(
            !suggestion.contains(stop.as_str()),
            "stop {stop:?} in {suggestion:?} from {why}"
        );
    }
    let lines = suggestion.lines().count();
    assert!(lines <= MAX_LINES, "{lines} lines from {why}");
    if !ctx.shape.multiline {
        // One line; at the end of a line it may start the next line (up to three line
        // breaks first: two blank lines between, as Python's before a top-level `def`).
        let mut line = suggestion.as_str();
        for _ in 0..3 {
            if ctx.shape.next_line {
                line = line
                    .strip_prefix("\r\n")
                    .or_else(|| line.strip_prefix('\n'))
                    .unwrap_or(line);
            }
        }
        assert!(
            !line.contains(['\n', '\r']),
            "{suggestion:?}: several lines where one is wanted, from {why}"
        );
    }
}

/// Reading a review's findings and a rewrite's code (see the module docs): findings lie in
/// the lines reviewed, in order, with a message and a well-formed CWE id; code has LF line
/// breaks and no trailing one.
pub fn review_answer(data: &[u8]) {
    let mut choices = Choices(data);
    let language = Language::ALL[choices.below(Language::ALL.len())];
    let lines = 1 + choices.below(200) as u32;
    let answer = if choices.byte() % 2 == 0 {
        choices.rest()
    } else {
        // Something shaped like an answer, with the fuzzer's values in its fields.
        let field = |choices: &mut Choices| match choices.byte() % 5 {
            0 => serde_json::Value::from(choices.number()),
            1 => serde_json::Value::from(choices.text(2)),
            2 => serde_json::Value::Null,
            3 => serde_json::Value::from(format!("CWE-{}", choices.number())),
            _ => serde_json::Value::from(["error", "Warning", "INFO"][choices.below(3)]),
        };
        let findings: Vec<serde_json::Value> = (0..choices.below(4))
            .map(|_| {
                serde_json::json!({
                    "severity": field(&mut choices), "cwe": field(&mut choices),
                    "line_start": field(&mut choices), "line_end": field(&mut choices),
                    "message": field(&mut choices),
                })
            })
            .collect();
        let json = serde_json::json!({ "findings": findings }).to_string();
        format!("{}```json\n{json}\n```{}", choices.text(2), choices.rest())
    };
    if let Ok(findings) = parse_findings(&answer, lines) {
        for f in findings {
            assert!(
                1 <= f.line_start && f.line_start <= f.line_end && f.line_end <= lines,
                "{f:?} outside lines 1-{lines} of {answer:?}"
            );
            assert!(!f.message.trim().is_empty(), "{f:?} from {answer:?}");
            if let Some(cwe) = &f.cwe {
                let digits = cwe.strip_prefix("CWE-").unwrap_or("");
                assert!(
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                    "{f:?} from {answer:?}"
                );
            }
        }
    }
    if let Ok(code) = extract_code(&answer, language) {
        assert!(
            !code.contains("\r\n") && !code.ends_with('\n'),
            "{code:?} from {answer:?}"
        );
    }
}

/// The streamed chat decoders (see the module docs). The first byte picks the provider, the
/// next how many of the following bytes are chunk sizes; the rest is the body.
pub fn chat_stream(data: &[u8]) {
    let mut choices = Choices(data);
    let provider = choices.byte();
    let cuts_len = usize::from(choices.byte() % 16).min(choices.0.len());
    let (cuts, body) = choices.0.split_at(cuts_len);
    crate::providers::fuzz::check_chat_stream(provider, body, cuts);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `fuzz/regressions/<target>/`: inputs the fuzzer once found failing.
    fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions")
            .join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<(String, Vec<u8>)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let bytes = std::fs::read(e.path()).ok()?;
                Some((e.file_name().to_string_lossy().into_owned(), bytes))
            })
            .collect();
        files.sort();
        files
    }

    /// Runs `check` on each regression of `target` and on `seeds` (and on every prefix of
    /// each seed: a shorter input is another case).
    fn replay(target: &str, check: fn(&[u8]), seeds: &[&[u8]]) {
        for (name, bytes) in regressions(target) {
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(
                outcome.is_ok(),
                "fuzz/regressions/{target}/{name} fails again"
            );
        }
        for seed in seeds {
            for end in 0..=seed.len() {
                check(&seed[..end]);
            }
        }
    }

    #[test]
    fn document_edits_hold() {
        replay(
            "document_edits",
            document_edits,
            &[
                b"\x01\x00\x01\x00\x07\x19\x03\x00\x05\x05\x02\x07\x00\x01\x00\x02\x05",
                b"\x00\x00\x02\x00\x04\x02\x00\x08\x00\x07\x00\x00\x03\x0a\x01\x00\x05\xff",
                b"\x03\x00\x01\x00\x09\x1b\x00\x1c\x00\x1e\x00\x05\x00\x06\x00\x07\x00",
            ],
        );
    }

    #[test]
    fn positions_hold() {
        replay(
            "positions",
            positions,
            &[
                b"\x01\x00\x0a\x00\x02\x02\x00\x07\x00\x04\x00\x06\x00\x05\x00\x02\x00\x03",
                b"\x00\x00\x08\x00\x01\x04\x00\x03\x00\x05\x00\x01\x00\x0a\x00\x00\x01\x09",
            ],
        );
    }

    #[test]
    fn framing_holds() {
        replay(
            "framing",
            framing,
            &[
                b"\x01\x03\x01\x02\x05Content-Length: 2\r\n\r\n{}Content-Length: 5\r\n\r\n{\"a\"}",
                b"\x00\x02\x00\x07Content-Length: 9\x00\xff\x00",
                b"\x01\x00content-length:   1\r\nX: y\r\n\r\n]\r\n\r\nContent-Length: x\r\n\r\n",
            ],
        );
    }

    #[test]
    fn fim_answers_hold() {
        replay(
            "fim_answer",
            fim_answer,
            &[
                b"\x01\x00\x00\x05\x00\x19\x00\x05\x00\x1c\x00\x20\x00\x00\x01\x01\x00    return a\n<|endoftext|>",
                b"\x00\x00\x01\x05\x00\x1a\x00\x0e\x00\x1e\x00\x40\x00\x00\x02```rust\nlet x = 1;\n```",
            ],
        );
    }

    #[test]
    fn review_answers_hold() {
        replay(
            "review_answer",
            review_answer,
            &[
                b"\x00\x00\x0a\x00\x00{\"findings\": [{\"severity\": \"error\", \"cwe\": \"CWE-89\", \"line_start\": 2, \"line_end\": 3, \"message\": \"SQL\"}]}",
                b"\x01\x00\x05\x00\x01\x02\x03\x02\x04\x00\x03\x05\x03\x06\x01\x01\x00",
                b"\x00\x00\x03\x00\x00```rust\nfn f() {}\n```\r\n",
            ],
        );
    }

    #[test]
    fn chat_streams_hold() {
        replay(
            "chat_stream",
            chat_stream,
            &[
                b"\x00\x02\x03\x00data: {\"choices\":[{\"delta\":{\"content\":\"a\xc3\xa9\"}}]}\r\n\r\ndata: [DONE]\n\n",
                b"\x01\x01\x04{\"message\":{\"content\":\"x\"},\"done\":false}\n{\"done\":true,\"eval_count\":3}\n",
                b"\x02\x00event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                // Whole answers where a stream was asked for.
                b"\x00\x02\x05{\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n",
                b"\x02\x01\x03{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"b\"}],\"stop_reason\":\"end_turn\"}",
                b"\x03\x00{\"content\":\"c\",\"stop\":true}",
                b"\x04\x02\x07event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"d\"}\n\nevent: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\n",
                b"\x04\x00{\"object\":\"response\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"e\"}]}],\"usage\":{\"output_tokens\":1}}",
            ],
        );
    }
}
