//! Languages and everything Pilotfish reads from tree-sitter trees: what it knows of each
//! language (`lang/`, one file per language), the completion context cut around a cursor
//! (`context.rs`), targets and routing features (`features.rs`), sensitive calls
//! (`sensitive.rs`), file outlines (`outline.rs`), and the one rule for a definition's
//! header line (here). Pure: no I/O, no LSP types, no async.

pub mod context;
pub mod features;
pub mod lang;
pub mod outline;
pub mod sensitive;

use ropey::Rope;
use tree_sitter::{Node, ParseOptions, ParseState, Parser, Point, Tree};

pub use lang::{Language, LanguageSpec};

/// Parses `text` from scratch; `None` for plain text and for a parse that runs away (see
/// [`parse_within_bounds`]).
pub fn parse(language: Language, text: &str) -> Option<Tree> {
    let mut parser = Parser::new();
    parser.set_language(&language.grammar()?).ok()?;
    let bytes = text.as_bytes();
    parse_within_bounds(
        &mut parser,
        bytes.len(),
        &mut |at, _| bytes.get(at..).unwrap_or_default(),
        None,
    )
}

/// How much work a parse may do, in tree-sitter's progress check-ins (one per ~100 parse
/// operations): a base plus so many per KB of text. Real files, and files or 0.4–4 KB pieces
/// of one language parsed as another (errors everywhere), take at most 33 per KB at 400
/// bytes, 22 at 1 KB, 19 at 4 KB and 11 at 100 KB and more, in all 13 grammars: the bound is
/// 2.5–6 times that. Some text sends a grammar's error recovery into a blow-up instead: 385
/// bytes of a garbled answer parsed as TSX took 145 s and 2.7 GB (the `review_answer` fuzz
/// target found it); under this bound it is given up after ~0.1 s.
const PARSE_CHECK_INS: usize = 64;
const PARSE_CHECK_INS_PER_KB: usize = 48;

/// Parses the `len` bytes that `read` hands out (reusing `old`, edited to match), or gives
/// up with `None` once the parse has done more work than [`PARSE_CHECK_INS`] allows for its
/// size. The parser is reset after giving up, ready for other text.
pub fn parse_within_bounds<T: AsRef<[u8]>>(
    parser: &mut Parser,
    len: usize,
    read: &mut impl FnMut(usize, Point) -> T,
    old: Option<&Tree>,
) -> Option<Tree> {
    let allowed = PARSE_CHECK_INS + len * PARSE_CHECK_INS_PER_KB / 1024;
    let mut check_ins = 0;
    let mut give_up = |_: &ParseState| {
        check_ins += 1;
        check_ins > allowed
    };
    let options = ParseOptions::new().progress_callback(&mut give_up);
    let tree = parser.parse_with_options(read, old, Some(options));
    if tree.is_none() {
        parser.reset();
    }
    tree
}

/// Cap on one header line (scope chain, outlines, the actions' signatures), in characters.
pub const MAX_HEADER_CHARS: usize = 200;
/// How many lines from a definition's start are looked at for its header line.
const HEADER_SCAN_LINES: usize = 5;

/// A line that decorates the definition below it rather than starting it: an attribute
/// (`#[inline]`, PHP `#[Route]`) or a decorator/annotation (`@cache`, `@Override`).
pub fn is_attribute_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with('@') || line.starts_with("#[")
}

/// The header line of a scope or definition: the first of its first lines (whole, from the
/// line start) that is neither blank nor an attribute, trimmed and capped at
/// [`MAX_HEADER_CHARS`]; else its first line. Shared by the scope chain and file outlines;
/// the actions' signatures start from the same line.
pub fn header_line(rope: &Rope, node: Node) -> String {
    let len = rope.len_bytes();
    let first = rope.byte_to_line(node.start_byte().min(len));
    let last = rope
        .byte_to_line(node.end_byte().min(len))
        .min(first + HEADER_SCAN_LINES - 1);
    let head = |line: usize| line_head(rope, line).trim().to_string();
    (first..=last)
        .map(head)
        .find(|text| !text.is_empty() && !is_attribute_line(text))
        .unwrap_or_else(|| head(first))
}

/// Up to `MAX_HEADER_CHARS` characters from the start of `line`, without the line break.
fn line_head(rope: &Rope, line: usize) -> String {
    if line >= rope.len_lines() {
        return String::new();
    }
    let slice = rope.line(line);
    let mut out: String = slice.chars().take(MAX_HEADER_CHARS).collect();
    let content = out.trim_end_matches(['\n', '\r']).len();
    out.truncate(content);
    out
}

/// Fixtures shared by the syntax modules' table tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Language;

    pub(crate) fn language(name: &str) -> Language {
        Language::named(name).unwrap_or_else(|| panic!("no language {name}"))
    }

    /// Splits a fixture at its `$0` marker: (text, cursor byte).
    pub(crate) fn fixture(src: &str) -> (String, usize) {
        let cursor = src.find("$0").unwrap_or_else(|| panic!("no $0 in {src:?}"));
        (src.replacen("$0", "", 1), cursor)
    }

    /// An unclosed template string, line breaks and a bracket: TSX error recovery takes under
    /// 100 parse operations with 18 line breaks and runs away from 20 on (the fuzzed answer
    /// of this shape took 145 s and 2.7 GB).
    pub(crate) fn runaway_tsx() -> String {
        format!("(``{}]", "\n".repeat(40))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grammar_loads_and_parses() {
        let cases = [
            (Language::Rust, "fn main() {}"),
            (Language::Python, "def f():\n    pass\n"),
            (Language::JavaScript, "function f() {}"),
            (Language::TypeScript, "function f(x: number) {}"),
            (Language::Tsx, "const a = <div />;"),
            (Language::Go, "package main\nfunc f() {}\n"),
            (Language::C, "int f(void) { return 0; }"),
            (Language::Cpp, "int f() { return 0; }"),
            (Language::Java, "class A { void f() {} }"),
            (Language::Ruby, "def f(x)\n  x + 1\nend\n"),
            (Language::Php, "<?php\nfunction f($x) { return $x; }\n"),
            (Language::Lua, "local function f(x)\n  return x\nend\n"),
            (Language::Bash, "f() {\n  echo \"$1\"\n}\n"),
        ];
        for language in Language::ALL {
            let Some((_, src)) = cases.iter().find(|(l, _)| *l == language) else {
                assert!(parse(language, "hello").is_none(), "{language:?}");
                continue;
            };
            let tree = parse(language, src).unwrap_or_else(|| panic!("{language:?} did not parse"));
            assert!(
                !tree.root_node().has_error(),
                "{language:?}: {}",
                tree.root_node().to_sexp()
            );
        }
    }

    #[test]
    fn a_parse_that_runs_away_is_given_up() {
        assert!(parse(Language::Tsx, &test_support::runaway_tsx()).is_none());
        let mut parser = Parser::new();
        parser
            .set_language(&Language::Tsx.grammar().unwrap())
            .unwrap();
        let text = test_support::runaway_tsx();
        let bytes = text.as_bytes();
        let mut read = |at: usize, _| bytes.get(at..).unwrap_or_default();
        assert!(parse_within_bounds(&mut parser, bytes.len(), &mut read, None).is_none());
        // The same parser, reset, parses the next text from scratch.
        let ok = b"const a = <div />;";
        let mut read = |at: usize, _| ok.get(at..).unwrap_or_default();
        let tree = parse_within_bounds(&mut parser, ok.len(), &mut read, None).unwrap();
        assert!(
            !tree.root_node().has_error(),
            "{}",
            tree.root_node().to_sexp()
        );
    }

    #[test]
    fn header_lines_skip_attributes_and_are_capped() {
        let long = format!("fn f({}) {{}}", "a".repeat(300));
        let cases: &[(Language, &str, &str)] = &[
            (
                Language::Rust,
                "#[inline]\npub fn f() {}\n",
                "pub fn f() {}",
            ),
            (
                Language::Php,
                "<?php\nclass A {\n    #[Route]\n    public function f() {}\n}\n",
                "class A {",
            ),
            (Language::Python, "@cache\ndef f():\n    pass\n", "def f():"),
            (
                Language::Java,
                "class A {\n  @Override\n  void f() {}\n}",
                "class A {",
            ),
            (Language::Rust, &long, &long[..MAX_HEADER_CHARS]),
        ];
        for &(language, src, want) in cases {
            let rope = Rope::from_str(src);
            let tree = parse(language, src).expect("parses");
            let root = tree.root_node();
            let node = root
                .named_child(root.named_child_count() - 1)
                .expect("a definition");
            assert_eq!(header_line(&rope, node), want, "{src:?}");
        }
    }
}
