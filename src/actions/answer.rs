//! Reading a chat model's answer: the code of a rewrite ([`extract_code`]) and the findings of
//! a review ([`parse_findings`]). Pure; every line break (CRLF, a lone CR) is read as LF.
//!
//! Both are conservative: an answer that does not say clearly what it means is an error
//! with a message naming what is wrong, never a guess. A wrong edit or an invented finding
//! costs the user more than a retry.
//!
//! Code rules:
//! - Fences are lines starting (after any indentation) with three or more backticks or
//!   tildes; a block closes at a line of the same character, at least as long. The
//!   fence's indentation is removed from the block's lines. A fence that never closes means
//!   the answer was cut off: an error, even when another block is complete.
//! - Of several blocks, those tagged with the document's language win (`rs` for Rust, `py`
//!   for Python, …), then untagged or `text` blocks and blocks of a sibling language
//!   (JavaScript/TypeScript/TSX, C/C++); the longest within the best group. Blocks tagged
//!   only with other languages (```bash, ```diff, ```python for a Rust file) are an error.
//! - An answer without a fence is taken as code only when the language has a grammar, no
//!   line reads as prose (a capitalised run of plain words, like "Here is the code:"), it
//!   is more than a lone word, and it parses with no syntax error. Anything else is an error.
//!
//! Findings rules: the first JSON object holding a `"findings"` key, in a ```json (or
//! untagged) block or in the raw answer, prose around it ignored; then every finding is
//! checked and the first bad field fails the whole answer. Keys other than the five asked
//! for are ignored; `cwe` may be null or absent; `severity` is matched case-insensitively.

use std::ops::RangeInclusive;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::position::lf_line_breaks;
use crate::syntax::{Language, LanguageSpec, parse};

/// How many `{` of an answer are tried as the start of the findings object.
const MAX_JSON_STARTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the model's answer is empty")]
    Empty,
    #[error(
        "the code block that opens on line {line} of the model's answer is never closed: the \
         answer was probably cut off"
    )]
    UnterminatedFence { line: usize },
    #[error("the model's answer has only empty code blocks")]
    EmptyBlock,
    #[error("the model's answer has no {wanted} code block, only blocks tagged {found}")]
    LanguageMismatch { wanted: String, found: String },
    #[error(
        "the model's answer has no fenced code block, and it is not {wanted} code alone: {reason}"
    )]
    NoCode { wanted: String, reason: String },
    #[error("the model's answer has no JSON object with a \"findings\" array{detail}")]
    NoFindings { detail: String },
    #[error("\"findings\" in the model's answer is not an array")]
    FindingsNotArray,
    #[error("findings[{index}] in the model's answer is not a JSON object")]
    FindingNotObject { index: usize },
    #[error("findings[{index}].{field} in the model's answer: {reason}")]
    InvalidFinding {
        index: usize,
        field: &'static str,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// One problem a review found. Lines are 1-based and relative to the first line of the code
/// shown to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// `CWE-<digits>`.
    pub cwe: Option<String>,
    pub line_start: u32,
    pub line_end: u32,
    pub message: String,
}

impl Finding {
    /// The finding's lines in the document (0-based, inclusive), given the document line
    /// (0-based) of the code's first line.
    pub fn document_lines(&self, target_first_line: u32) -> RangeInclusive<u32> {
        let at = |relative: u32| target_first_line.saturating_add(relative.saturating_sub(1));
        at(self.line_start)..=at(self.line_end)
    }
}

/// The code of a rewrite answer, without fences, LF line breaks and no trailing line break.
pub fn extract_code(answer: &str, language: Language) -> Result<String, ParseError> {
    let text = lf_line_breaks(answer);
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let blocks = fenced_blocks(&text)?;
    if blocks.is_empty() {
        return bare_code(&text, language);
    }
    let candidates: Vec<&Block> = blocks
        .iter()
        .filter(|b| !b.content.trim().is_empty())
        .collect();
    let best = candidates
        .iter()
        .map(|b| tag_match(language, &b.tag))
        .max()
        .ok_or(ParseError::EmptyBlock)?;
    if best == TagMatch::Other {
        let mut found: Vec<String> = candidates.iter().map(|b| format!("`{}`", b.tag)).collect();
        found.dedup();
        return Err(ParseError::LanguageMismatch {
            wanted: language.name().to_string(),
            found: found.join(", "),
        });
    }
    let mut chosen: Option<&Block> = None;
    for block in candidates {
        if tag_match(language, &block.tag) == best
            && chosen.is_none_or(|c| block.content.len() > c.content.len())
        {
            chosen = Some(block);
        }
    }
    let code = chosen.map(|b| b.content.trim_matches('\n')).unwrap_or("");
    Ok(code.to_string())
}

/// The findings of a review answer, checked against the `target_lines` lines shown.
pub fn parse_findings(answer: &str, target_lines: u32) -> Result<Vec<Finding>, ParseError> {
    let text = lf_line_breaks(answer);
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let blocks = fenced_blocks(&text).unwrap_or_default();
    let sources = blocks
        .iter()
        .filter(|b| matches!(b.tag.as_str(), "json" | "jsonc" | "json5" | ""))
        .map(|b| b.content.as_str())
        .chain([text.as_str()]);
    let mut first_error: Option<String> = None;
    let mut object = None;
    for source in sources {
        match findings_object(source) {
            Ok(found) => {
                object = Some(found);
                break;
            }
            Err(e) => {
                first_error = first_error.or(e);
            }
        }
    }
    let Some(object) = object else {
        return Err(ParseError::NoFindings {
            detail: first_error
                .map(|e| format!(": the JSON does not parse ({e})"))
                .unwrap_or_default(),
        });
    };
    let Some(Value::Array(items)) = object.get("findings") else {
        return Err(ParseError::FindingsNotArray);
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(map) => finding(index, map, target_lines),
            _ => Err(ParseError::FindingNotObject { index }),
        })
        .collect()
}

/// The first JSON object with a `findings` key that starts at one of the first `{` of
/// `source`; else the parse error of the first `{` that looked like the start of an object.
fn findings_object(source: &str) -> Result<Map<String, Value>, Option<String>> {
    let mut first_error = None;
    for (at, _) in source.match_indices('{').take(MAX_JSON_STARTS) {
        let mut values = serde_json::Deserializer::from_str(&source[at..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(Value::Object(map))) if map.contains_key("findings") => return Ok(map),
            Some(Err(e))
                if first_error.is_none() && source[at + 1..].trim_start().starts_with('"') =>
            {
                first_error = Some(e.to_string());
            }
            _ => {}
        }
    }
    Err(first_error)
}

fn finding(index: usize, map: &Map<String, Value>, lines: u32) -> Result<Finding, ParseError> {
    let bad = |field, reason: String| ParseError::InvalidFinding {
        index,
        field,
        reason,
    };
    let severity = match map.get("severity") {
        None => return Err(bad("severity", "missing".into())),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "error" => Severity::Error,
            "warning" => Severity::Warning,
            "info" => Severity::Info,
            _ => {
                return Err(bad(
                    "severity",
                    format!("{s:?} is not one of \"error\", \"warning\", \"info\""),
                ));
            }
        },
        Some(other) => return Err(bad("severity", format!("{other} is not a string"))),
    };
    let cwe = match map.get("cwe") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_cwe(s) => Some(s.clone()),
        Some(other) => {
            return Err(bad(
                "cwe",
                format!("{other} is not a CWE id like \"CWE-89\" (or null)"),
            ));
        }
    };
    let line = |field: &'static str| -> Result<u32, ParseError> {
        let value = map.get(field).ok_or_else(|| bad(field, "missing".into()))?;
        let n = value
            .as_u64()
            .ok_or_else(|| bad(field, format!("{value} is not a line number")))?;
        if n == 0 || n > u64::from(lines) {
            return Err(bad(
                field,
                format!("{n} is outside the code reviewed (lines 1-{lines})"),
            ));
        }
        Ok(n as u32)
    };
    let line_start = line("line_start")?;
    let line_end = line("line_end")?;
    if line_end < line_start {
        return Err(bad(
            "line_end",
            format!("{line_end} is before line_start {line_start}"),
        ));
    }
    let message = match map.get("message") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        None => return Err(bad("message", "missing".into())),
        Some(other) => return Err(bad("message", format!("{other} is not a non-empty string"))),
    };
    Ok(Finding {
        severity,
        cwe,
        line_start,
        line_end,
        message,
    })
}

/// `CWE-` followed by one or more ASCII digits.
fn is_cwe(s: &str) -> bool {
    s.strip_prefix("CWE-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

// ---------------------------------------------------------------------------------------
// Fences

#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// The first word of the info string, lowercased (`""` when untagged).
    tag: String,
    content: String,
}

struct Fence {
    ch: char,
    len: usize,
    indent: usize,
    tag: String,
}

/// The fenced blocks of an LF text, in order.
fn fenced_blocks(text: &str) -> Result<Vec<Block>, ParseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(open) = fence_open(lines[i]) else {
            i += 1;
            continue;
        };
        let mut content = Vec::new();
        let mut j = i + 1;
        loop {
            let Some(line) = lines.get(j) else {
                return Err(ParseError::UnterminatedFence { line: i + 1 });
            };
            if fence_closes(line, &open) {
                break;
            }
            content.push(strip_indent(line, open.indent));
            j += 1;
        }
        blocks.push(Block {
            tag: open.tag,
            content: content.join("\n"),
        });
        i = j + 1;
    }
    Ok(blocks)
}

fn fence_open(line: &str) -> Option<Fence> {
    // Indentation is spaces and tabs only, so that it is stripped on byte boundaries.
    let trimmed = line.trim_start_matches([' ', '\t']);
    let ch = trimmed.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let len = trimmed.chars().take_while(|c| *c == ch).count();
    if len < 3 {
        return None;
    }
    let info = trimmed[len..].trim();
    if ch == '`' && info.contains('`') {
        return None;
    }
    let tag = info
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{')
        .next()
        .unwrap_or("")
        .trim_start_matches('.')
        .to_ascii_lowercase();
    Some(Fence {
        ch,
        len,
        indent: line.len() - trimmed.len(),
        tag,
    })
}

fn fence_closes(line: &str, open: &Fence) -> bool {
    let t = line.trim();
    t.len() >= open.len && t.chars().all(|c| c == open.ch)
}

/// Removes up to `indent` bytes of leading whitespace.
fn strip_indent(line: &str, indent: usize) -> &str {
    let ws = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[ws.min(indent)..]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TagMatch {
    Other,
    /// Untagged, `text`, or a sibling language.
    Compatible,
    Exact,
}

/// How well a fence tag fits the document's language: one of its own tags, an untagged or
/// plain-text block (or any block for plain text), a sibling language's tag, or another
/// language's.
fn tag_match(language: Language, tag: &str) -> TagMatch {
    let spec = language.spec();
    if matches!(tag, "" | "text" | "txt" | "plaintext" | "plain" | "code") || spec.grammar.is_none()
    {
        return TagMatch::Compatible;
    }
    if spec.fence_tags.contains(&tag) {
        return TagMatch::Exact;
    }
    let sibling = Language::ALL
        .into_iter()
        .any(|l| l.family() == language.family() && l.spec().fence_tags.contains(&tag));
    if sibling {
        TagMatch::Compatible
    } else {
        TagMatch::Other
    }
}

// ---------------------------------------------------------------------------------------
// Answers without a fence

fn bare_code(text: &str, language: Language) -> Result<String, ParseError> {
    let no_code = |reason: String| ParseError::NoCode {
        wanted: language.name().to_string(),
        reason,
    };
    let lines: Vec<&str> = text.split('\n').map(str::trim_end).collect();
    let first = lines.iter().position(|l| !l.is_empty()).unwrap_or(0);
    let last = lines.iter().rposition(|l| !l.is_empty()).unwrap_or(0);
    let code = lines[first..=last].join("\n");
    if language.grammar().is_none() {
        return Err(no_code("plain text needs a fenced block".into()));
    }
    let Some(tree) = parse(language, &code) else {
        return Err(no_code(format!(
            "tree-sitter gave up parsing it as {}",
            language.name()
        )));
    };
    let root = tree.root_node();
    let spec = language.spec();
    // Sentences in comments and strings (a docstring) are code; elsewhere they are prose.
    let mut offset = 0;
    let mut prose = None;
    for (n, line) in code.split('\n').enumerate() {
        let at = offset + (line.len() - line.trim_start().len());
        offset += line.len() + 1;
        if is_prose(line) && !in_comment_or_string(spec, root, at) {
            prose = Some((n, line));
            break;
        }
    }
    if let Some((n, line)) = prose {
        return Err(no_code(format!(
            "line {} reads as prose: {:?}",
            first + n + 1,
            line.trim()
        )));
    }
    let symbols = [
        '(', ')', '{', '}', '[', ']', ';', '=', ':', '<', '>', '"', '\'',
    ];
    if !code.contains('\n') && !code.contains(symbols) {
        return Err(no_code(format!(
            "{:?} is too short to tell from prose",
            code.trim()
        )));
    }
    if root.has_error() {
        return Err(no_code(format!("it does not parse as {}", language.name())));
    }
    Ok(code)
}

fn in_comment_or_string(spec: &LanguageSpec, root: tree_sitter::Node, at: usize) -> bool {
    let node = root.descendant_for_byte_range(at, at + 1);
    std::iter::successors(node, |n| n.parent()).any(|n| {
        let kind = n.kind();
        kind.contains("comment") || spec.is_string(kind)
    })
}

/// A line that reads as a sentence: it starts with a capital letter, is not a comment, and
/// either has four or more plain words only, or three plain words and ends like a sentence.
fn is_prose(line: &str) -> bool {
    let t = line.trim();
    if !t.starts_with(|c: char| c.is_ascii_uppercase()) {
        return false;
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let plain = |w: &&str| {
        let w = w.trim_end_matches([',', '.', ':', ';', '!', '?']);
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_alphabetic() || c == '\'' || c == '’' || c == '-')
    };
    let all_plain = words.iter().all(plain);
    let ends_like_sentence = t.ends_with(['.', ':', '!', '?']);
    (words.len() >= 4 && all_plain)
        || (words.len() >= 3 && words.iter().take(3).all(plain) && ends_like_sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_code_table() {
        use Language::*;
        let cases: &[(&str, Language, &str, Result<&str, &str>)] = &[
            (
                "one block",
                Rust,
                "```rust\nfn f() {}\n```",
                Ok("fn f() {}"),
            ),
            (
                "prose around",
                Rust,
                "Here is the refactored code:\n\n```rust\nfn f() -> u32 {\n    1\n}\n```\n\nIt is shorter.",
                Ok("fn f() -> u32 {\n    1\n}"),
            ),
            (
                "alias tag",
                Python,
                "```py\ndef f():\n    pass\n```",
                Ok("def f():\n    pass"),
            ),
            ("untagged", Go, "```\nfunc f() {}\n```", Ok("func f() {}")),
            (
                "tag with attributes",
                Rust,
                "```rust title=\"a.rs\"\nfn f() {}\n```",
                Ok("fn f() {}"),
            ),
            (
                "several blocks: the matching tag wins over a longer one",
                Rust,
                "Run:\n```bash\ncargo test --all-features --workspace --release\n```\nCode:\n```rust\nfn f() {}\n```",
                Ok("fn f() {}"),
            ),
            (
                "several matching blocks: the longest",
                Python,
                "```python\nx = 1\n```\nor better:\n```python\ndef f():\n    return 1\n```",
                Ok("def f():\n    return 1"),
            ),
            (
                "untagged beside another language",
                Java,
                "```json\n{\"a\": 1}\n```\n```\nclass A {}\n```",
                Ok("class A {}"),
            ),
            (
                "sibling language counts when nothing matches",
                TypeScript,
                "```javascript\nfunction f() {}\n```",
                Ok("function f() {}"),
            ),
            (
                "exact beats sibling",
                Cpp,
                "```c\nint f(void) { return 0; }\n```\n```cpp\nint f() {}\n```",
                Ok("int f() {}"),
            ),
            (
                "tag mismatch",
                Rust,
                "```python\ndef f():\n    pass\n```",
                Err("has no rust code block, only blocks tagged `python`"),
            ),
            (
                "diff is not code",
                Go,
                "```diff\n-a\n+b\n```",
                Err("only blocks tagged `diff`"),
            ),
            (
                "unterminated fence",
                Rust,
                "```rust\nfn f() {\n    1",
                Err("opens on line 1 of the model's answer is never closed"),
            ),
            (
                "unterminated after a good block",
                Rust,
                "```rust\nfn f() {}\n```\nAlso:\n```rust\nfn g() {",
                Err("opens on line 5"),
            ),
            (
                "CRLF",
                Rust,
                "Sure:\r\n```rust\r\nfn f() {\r\n    1\r\n}\r\n```\r\n",
                Ok("fn f() {\n    1\n}"),
            ),
            // Found by fuzzing (fuzz/regressions/review_answer): `\r\r\n` left a CRLF in the code.
            (
                "CR CRLF and a lone CR",
                Rust,
                "```rust\r\r\nfn f() {\r    1\r\n}\r\n```",
                Ok("fn f() {\n    1\n}"),
            ),
            (
                "indented fence in a list",
                Python,
                "1. Change it:\n   ```python\n   def f():\n       return 1\n   ```",
                Ok("def f():\n    return 1"),
            ),
            (
                "tilde fence with a longer closer",
                C,
                "~~~c\nint x;\n~~~~",
                Ok("int x;"),
            ),
            (
                "a shorter backtick line does not close a longer fence",
                Rust,
                "````rust\n/// ```\n/// f();\n/// ```\nfn f() {}\n````",
                Ok("/// ```\n/// f();\n/// ```\nfn f() {}"),
            ),
            (
                "inline backticks are not fences",
                Rust,
                "Use ```rust fn``` like this",
                Err("has no fenced code block"),
            ),
            (
                "empty answer",
                Rust,
                " \n ",
                Err("the model's answer is empty"),
            ),
            (
                "empty block",
                Rust,
                "```rust\n\n```",
                Err("only empty code blocks"),
            ),
            (
                "no fence, code only",
                Rust,
                "\nfn f() -> u32 {\n    1\n}\n\n",
                Ok("fn f() -> u32 {\n    1\n}"),
            ),
            (
                "no fence, Python code only",
                Python,
                "def f(items):\n    for x in items:\n        print(x)\n",
                Ok("def f(items):\n    for x in items:\n        print(x)"),
            ),
            (
                "no fence, prose first",
                Rust,
                "Here is the code:\nfn f() {}",
                Err("line 1 reads as prose: \"Here is the code:\""),
            ),
            (
                "no fence, prose after",
                JavaScript,
                "function f() {}\n\nThis version is shorter and clearer",
                Err("line 3 reads as prose"),
            ),
            (
                "no fence, a docstring is not prose",
                Python,
                "def f():\n    \"\"\"\n    Returns the answer to everything.\n    \"\"\"\n    return 42",
                Ok(
                    "def f():\n    \"\"\"\n    Returns the answer to everything.\n    \"\"\"\n    return 42",
                ),
            ),
            (
                "no fence, a block comment is not prose",
                C,
                "/*\n Adds the two numbers together.\n */\nint add(int a, int b) { return a + b; }",
                Ok(
                    "/*\n Adds the two numbers together.\n */\nint add(int a, int b) { return a + b; }",
                ),
            ),
            (
                "unicode whitespace inside an indented fence",
                Python,
                "  ```python\n  \u{3000}x = 1\n  ```",
                Ok("\u{3000}x = 1"),
            ),
            (
                "no fence, a lone word",
                Python,
                "Done",
                Err("\"Done\" is too short to tell from prose"),
            ),
            (
                "no fence, does not parse",
                Java,
                "class A { void f( }",
                Err("it does not parse as java"),
            ),
            (
                "no fence, plain text",
                PlainText,
                "hello world",
                Err("plain text needs a fenced block"),
            ),
            (
                "plain text takes any block",
                PlainText,
                "```markdown\n# Title\n```",
                Ok("# Title"),
            ),
        ];
        for (name, language, answer, want) in cases {
            let got = extract_code(answer, *language);
            match (want, &got) {
                (Ok(code), Ok(got)) => assert_eq!(got, code, "{name}"),
                (Err(msg), Err(e)) => {
                    assert!(e.to_string().contains(msg), "{name}: {e} lacks {msg:?}")
                }
                _ => panic!("{name}: want {want:?}, got {got:?}"),
            }
        }
    }

    fn finding(severity: Severity, cwe: Option<&str>, lines: (u32, u32), message: &str) -> Finding {
        Finding {
            severity,
            cwe: cwe.map(str::to_string),
            line_start: lines.0,
            line_end: lines.1,
            message: message.into(),
        }
    }

    /// Name, answer, the findings or part of the error.
    type FindingsCase<'a> = (&'a str, &'a str, Result<Vec<Finding>, &'a str>);

    #[test]
    fn parse_findings_table() {
        use Severity::*;
        let sql = r#"{"findings":[{"severity":"error","cwe":"CWE-89","line_start":2,"line_end":3,"message":"SQL built from input."}]}"#;
        let cases: &[FindingsCase] = &[
            (
                "valid",
                sql,
                Ok(vec![finding(
                    Error,
                    Some("CWE-89"),
                    (2, 3),
                    "SQL built from input.",
                )]),
            ),
            ("empty findings", r#"{"findings": []}"#, Ok(vec![])),
            (
                "several, null and absent cwe, extra keys ignored",
                r#"{"findings":[
                    {"severity":"warning","cwe":null,"line_start":1,"line_end":1,"message":"a"},
                    {"severity":"Info","line_start":10,"line_end":10,"message":" b ","fix":"x"}
                ],"summary":"ok"}"#,
                Ok(vec![
                    finding(Warning, None, (1, 1), "a"),
                    finding(Info, None, (10, 10), "b"),
                ]),
            ),
            (
                "inside a json fence with prose",
                &format!("Here are the findings:\n```json\n{sql}\n```\nLet me know."),
                Ok(vec![finding(
                    Error,
                    Some("CWE-89"),
                    (2, 3),
                    "SQL built from input.",
                )]),
            ),
            (
                "raw inside prose with braces",
                &format!("I checked {{everything}}. Result: {sql} Done {{}}."),
                Ok(vec![finding(
                    Error,
                    Some("CWE-89"),
                    (2, 3),
                    "SQL built from input.",
                )]),
            ),
            (
                "CRLF and pretty-printed",
                "{\r\n  \"findings\": [\r\n    {\"severity\": \"info\", \"cwe\": \"CWE-1\", \"line_start\": 1, \"line_end\": 2, \"message\": \"m\"}\r\n  ]\r\n}\r\n",
                Ok(vec![finding(Info, Some("CWE-1"), (1, 2), "m")]),
            ),
            (
                "bad severity",
                r#"{"findings":[{"severity":"critical","cwe":null,"line_start":1,"line_end":1,"message":"m"}]}"#,
                Err(
                    r#"findings[0].severity in the model's answer: "critical" is not one of "error", "warning", "info""#,
                ),
            ),
            (
                "severity not a string",
                r#"{"findings":[{"severity":3,"line_start":1,"line_end":1,"message":"m"}]}"#,
                Err("findings[0].severity in the model's answer: 3 is not a string"),
            ),
            (
                "missing severity in the second finding",
                r#"{"findings":[{"severity":"info","line_start":1,"line_end":1,"message":"m"},{"line_start":1,"line_end":1,"message":"m"}]}"#,
                Err("findings[1].severity in the model's answer: missing"),
            ),
            (
                "missing line_end",
                r#"{"findings":[{"severity":"info","line_start":1,"message":"m"}]}"#,
                Err("findings[0].line_end in the model's answer: missing"),
            ),
            (
                "missing message",
                r#"{"findings":[{"severity":"info","line_start":1,"line_end":1}]}"#,
                Err("findings[0].message in the model's answer: missing"),
            ),
            (
                "empty message",
                r#"{"findings":[{"severity":"info","line_start":1,"line_end":1,"message":"  "}]}"#,
                Err("findings[0].message"),
            ),
            (
                "line past the code",
                r#"{"findings":[{"severity":"info","line_start":11,"line_end":12,"message":"m"}]}"#,
                Err(
                    "findings[0].line_start in the model's answer: 11 is outside the code reviewed (lines 1-10)",
                ),
            ),
            (
                "line zero",
                r#"{"findings":[{"severity":"info","line_start":0,"line_end":1,"message":"m"}]}"#,
                Err("findings[0].line_start in the model's answer: 0 is outside"),
            ),
            (
                "negative line",
                r#"{"findings":[{"severity":"info","line_start":-1,"line_end":1,"message":"m"}]}"#,
                Err("findings[0].line_start in the model's answer: -1 is not a line number"),
            ),
            (
                "line as a string",
                r#"{"findings":[{"severity":"info","line_start":"3","line_end":3,"message":"m"}]}"#,
                Err("\"3\" is not a line number"),
            ),
            (
                "line as a float",
                r#"{"findings":[{"severity":"info","line_start":3.0,"line_end":3,"message":"m"}]}"#,
                Err("3.0 is not a line number"),
            ),
            (
                "end before start",
                r#"{"findings":[{"severity":"info","line_start":5,"line_end":4,"message":"m"}]}"#,
                Err("findings[0].line_end in the model's answer: 4 is before line_start 5"),
            ),
            (
                "bad CWE",
                r#"{"findings":[{"severity":"error","cwe":"89","line_start":1,"line_end":1,"message":"m"}]}"#,
                Err(
                    r#"findings[0].cwe in the model's answer: "89" is not a CWE id like "CWE-89" (or null)"#,
                ),
            ),
            (
                "CWE with a name",
                r#"{"findings":[{"severity":"error","cwe":"CWE-89: SQL Injection","line_start":1,"line_end":1,"message":"m"}]}"#,
                Err("findings[0].cwe"),
            ),
            (
                "CWE without digits",
                r#"{"findings":[{"severity":"error","cwe":"CWE-","line_start":1,"line_end":1,"message":"m"}]}"#,
                Err("findings[0].cwe"),
            ),
            (
                "CWE as a number",
                r#"{"findings":[{"severity":"error","cwe":89,"line_start":1,"line_end":1,"message":"m"}]}"#,
                Err("findings[0].cwe in the model's answer: 89 is not a CWE id"),
            ),
            (
                "trailing comma",
                "{\"findings\":[{\"severity\":\"info\",\"line_start\":1,\"line_end\":1,\"message\":\"m\"},]}",
                Err(
                    "no JSON object with a \"findings\" array: the JSON does not parse (trailing comma at line 1",
                ),
            ),
            (
                "trailing comma in a fence",
                "```json\n{\"findings\": [],}\n```",
                Err("the JSON does not parse (trailing comma"),
            ),
            (
                "not JSON",
                "No issues found.",
                Err("no JSON object with a \"findings\" array"),
            ),
            (
                "another object",
                r#"{"issues": []}"#,
                Err("no JSON object with a \"findings\" array"),
            ),
            (
                "findings not an array",
                r#"{"findings": {}}"#,
                Err("is not an array"),
            ),
            (
                "finding not an object",
                r#"{"findings": ["SQL injection"]}"#,
                Err("findings[0] in the model's answer is not a JSON object"),
            ),
            ("empty answer", "", Err("empty")),
            (
                "cut off",
                r#"{"findings":[{"severity":"error","cwe":"CWE-89","line_st"#,
                Err("the JSON does not parse (EOF while parsing"),
            ),
        ];
        for (name, answer, want) in cases {
            let got = parse_findings(answer, 10);
            match (want, &got) {
                (Ok(findings), Ok(got)) => assert_eq!(got, findings, "{name}"),
                (Err(msg), Err(e)) => {
                    assert!(e.to_string().contains(msg), "{name}: {e} lacks {msg:?}")
                }
                _ => panic!("{name}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn findings_map_to_document_lines() {
        let cases = [
            ((1, 1), 0, 0..=0),
            ((2, 3), 10, 11..=12),
            ((5, 5), 99, 103..=103),
            ((1, 2), u32::MAX, u32::MAX..=u32::MAX),
        ];
        for (lines, first, want) in cases {
            let f = finding(Severity::Info, None, lines, "m");
            assert_eq!(f.document_lines(first), want, "{lines:?} at {first}");
        }
    }

    #[test]
    fn findings_serialize_for_the_command_result() {
        let f = finding(Severity::Warning, Some("CWE-22"), (1, 2), "m");
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"severity":"warning","cwe":"CWE-22","line_start":1,"line_end":2,"message":"m"}"#
        );
    }

    #[test]
    fn prose_lines() {
        let cases = [
            ("Here is the refactored code:", true),
            ("Here's the refactored version", true),
            ("Sure, here it is.", true),
            (
                "This version avoids the extra allocation and is simpler",
                true,
            ),
            ("for x in items:", false),
            ("return a if b else c", false),
            ("    pub fn new() -> Self {", false),
            ("// Here is a comment about it.", false),
            // A known false positive, on the safe side: a retry, not a wrong edit.
            ("True if x else False", true),
            ("Ok(())", false),
            ("Some thing", false),
        ];
        for (line, want) in cases {
            assert_eq!(is_prose(line), want, "{line:?}");
        }
    }
}
