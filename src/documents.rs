//! Open documents: one rope and one tree-sitter tree per document, kept in step with the
//! editor's edits. Every change set is applied atomically — a bad edit anywhere in it
//! leaves the document exactly as it was — and the tree is reparsed incrementally once per
//! change set. No I/O, no async, no LSP types: positions come in as [`LineCol`].

use std::collections::HashMap;
use std::sync::Arc;

use ropey::Rope;
use tree_sitter::{InputEdit, Parser, Point, Tree};

use crate::position::{self, LineCol, PositionEncoding, PositionError};
use crate::syntax::Language;

/// Documents larger than this are not parsed: they are served as plain text, so that a
/// 50 MB log file opened by accident costs a rope, not a syntax tree.
pub const MAX_PARSED_BYTES: usize = 8 * 1024 * 1024;

/// One edit from a `didChange`: a range replaced by text, or (no range) the whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChange {
    pub range: Option<(LineCol, LineCol)>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("document {0} is not open")]
    NotOpen(String),
    #[error("change {index} of {uri} (version {version}): {source}")]
    BadChange {
        uri: String,
        version: i32,
        index: usize,
        #[source]
        source: PositionError,
    },
}

/// A cheap, immutable copy of a document at one version (the rope and tree share their
/// storage with the live document), so a request can work without holding any lock.
#[derive(Clone)]
pub struct Snapshot {
    pub uri: Arc<str>,
    pub language: Language,
    pub version: i32,
    pub rope: Rope,
    pub tree: Option<Tree>,
}

/// A document parsed and ready to be added to [`Documents`]. Built outside any lock: the
/// first parse of a big file takes a while, and nobody else should wait for it.
pub struct Document {
    uri: Arc<str>,
    language: Language,
    version: i32,
    rope: Rope,
    tree: Option<Tree>,
    parser: Option<Parser>,
}

impl Document {
    pub fn new(uri: &str, language: Language, version: i32, text: &str) -> Document {
        let rope = Rope::from_str(text);
        let mut parser = parser_for(language);
        let tree = parser.as_mut().and_then(|p| reparse(p, &rope, None));
        Document {
            uri: uri.into(),
            language,
            version,
            rope,
            tree,
            parser,
        }
    }

    fn apply(
        &mut self,
        version: i32,
        changes: &[TextChange],
        enc: PositionEncoding,
    ) -> Result<(), DocumentError> {
        // Work on copies (O(1) for a rope and a tree) and commit only if every change fits.
        let mut rope = self.rope.clone();
        let mut tree = self.tree.clone();
        let mut full_reparse = false;
        for (index, change) in changes.iter().enumerate() {
            let bad = |source| DocumentError::BadChange {
                uri: self.uri.to_string(),
                version,
                index,
                source,
            };
            match change.range {
                None => {
                    rope = Rope::from_str(&change.text);
                    full_reparse = true;
                }
                Some((start, end)) => {
                    let (start_byte, old_end_byte) =
                        position::range_to_bytes(&rope, start, end, enc).map_err(bad)?;
                    let start_position = ts_point(&rope, start_byte);
                    let old_end_position = ts_point(&rope, old_end_byte);
                    let (start_char, end_char) = (
                        rope.byte_to_char(start_byte),
                        rope.byte_to_char(old_end_byte),
                    );
                    rope.remove(start_char..end_char);
                    rope.insert(start_char, &change.text);
                    let new_end_byte = start_byte + change.text.len();
                    if let Some(tree) = tree.as_mut() {
                        tree.edit(&InputEdit {
                            start_byte,
                            old_end_byte,
                            new_end_byte,
                            start_position,
                            old_end_position,
                            new_end_position: ts_point(&rope, new_end_byte),
                        });
                    }
                }
            }
        }
        let old_tree = if full_reparse { None } else { tree.as_ref() };
        let new_tree = match self.parser.as_mut() {
            Some(parser) if rope.len_bytes() <= MAX_PARSED_BYTES => {
                reparse(parser, &rope, old_tree)
            }
            _ => None,
        };
        self.rope = rope;
        self.tree = new_tree;
        self.version = version;
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            uri: self.uri.clone(),
            language: self.language,
            version: self.version,
            rope: self.rope.clone(),
            tree: self.tree.clone(),
        }
    }
}

fn parser_for(language: Language) -> Option<Parser> {
    let mut parser = Parser::new();
    parser.set_language(&language.grammar()?).ok()?;
    Some(parser)
}

/// Parses the rope chunk by chunk (no copy of the text), reusing `old` when given.
fn reparse(parser: &mut Parser, rope: &Rope, old: Option<&Tree>) -> Option<Tree> {
    if rope.len_bytes() > MAX_PARSED_BYTES {
        return None;
    }
    let len = rope.len_bytes();
    let mut read = |byte: usize, _: Point| -> &[u8] {
        if byte >= len {
            return &[];
        }
        let (chunk, chunk_start, _, _) = rope.chunk_at_byte(byte);
        &chunk.as_bytes()[byte - chunk_start..]
    };
    parser.parse_with_options(&mut read, old, None)
}

/// Tree-sitter's point for a byte offset: row and byte column. Rows follow the rope's line
/// breaks, which agree with tree-sitter's except for a lone `\r` (then only node rows are
/// off; byte offsets, which is what Pilotfish uses, stay exact).
fn ts_point(rope: &Rope, byte: usize) -> Point {
    let line = rope.byte_to_line(byte);
    Point {
        row: line,
        column: byte - rope.line_to_byte(line),
    }
}

/// All open documents, keyed by URI.
#[derive(Default)]
pub struct Documents {
    open: HashMap<String, Document>,
}

impl Documents {
    /// Opens (or re-opens, replacing) a document.
    pub fn open(&mut self, uri: &str, language: Language, version: i32, text: &str) {
        self.insert(Document::new(uri, language, version, text));
    }

    /// Adds a document built with [`Document::new`] (or replaces one with the same URI).
    pub fn insert(&mut self, doc: Document) {
        self.open.insert(doc.uri.to_string(), doc);
    }

    /// Applies one `didChange`: all of `changes` in order, or none of them.
    pub fn change(
        &mut self,
        uri: &str,
        version: i32,
        changes: &[TextChange],
        enc: PositionEncoding,
    ) -> Result<(), DocumentError> {
        let doc = self
            .open
            .get_mut(uri)
            .ok_or_else(|| DocumentError::NotOpen(uri.to_string()))?;
        doc.apply(version, changes, enc)
    }

    pub fn close(&mut self, uri: &str) -> bool {
        self.open.remove(uri).is_some()
    }

    pub fn snapshot(&self, uri: &str) -> Result<Snapshot, DocumentError> {
        self.open
            .get(uri)
            .map(Document::snapshot)
            .ok_or_else(|| DocumentError::NotOpen(uri.to_string()))
    }

    /// The current version of an open document.
    pub fn version(&self, uri: &str) -> Option<i32> {
        self.open.get(uri).map(|d| d.version)
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lc(line: u32, col: u32) -> LineCol {
        LineCol { line, col }
    }

    fn edit(start: (u32, u32), end: (u32, u32), text: &str) -> TextChange {
        TextChange {
            range: Some((lc(start.0, start.1), lc(end.0, end.1))),
            text: text.into(),
        }
    }

    fn text(docs: &Documents, uri: &str) -> String {
        docs.snapshot(uri)
            .map(|s| s.rope.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn incremental_edits_keep_tree_equal_to_a_fresh_parse() {
        let mut docs = Documents::default();
        let src = "fn main() {\n    let x = 1;\n}\n";
        docs.open("file:///a.rs", Language::Rust, 1, src);
        let edits = [
            edit((1, 13), (1, 13), " + 2"),
            edit((1, 8), (1, 9), "y😀"),
            edit((2, 0), (2, 1), "}\nfn other() {}"),
        ];
        for (i, e) in edits.iter().enumerate() {
            docs.change(
                "file:///a.rs",
                2 + i as i32,
                std::slice::from_ref(e),
                PositionEncoding::Utf16,
            )
            .unwrap();
        }
        let snap = docs.snapshot("file:///a.rs").unwrap();
        let now = snap.rope.to_string();
        assert_eq!(now, "fn main() {\n    let y😀 = 1 + 2;\n}\nfn other() {}\n");
        let fresh = crate::syntax::parse(Language::Rust, &now).unwrap();
        assert_eq!(
            snap.tree.unwrap().root_node().to_sexp(),
            fresh.root_node().to_sexp()
        );
        assert_eq!(snap.version, 4);
    }

    #[test]
    fn a_bad_change_leaves_the_document_untouched() {
        let mut docs = Documents::default();
        docs.open("u", Language::Python, 1, "a = 1\nb = 2\n");
        let changes = [edit((0, 0), (0, 0), "# ok\n"), edit((40, 0), (40, 1), "x")];
        let err = docs
            .change("u", 2, &changes, PositionEncoding::Utf16)
            .unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        assert_eq!(text(&docs, "u"), "a = 1\nb = 2\n");
        assert_eq!(docs.version("u"), Some(1));
        let inverted = [edit((1, 3), (0, 1), "x")];
        assert!(
            docs.change("u", 3, &inverted, PositionEncoding::Utf16)
                .is_err()
        );
        assert_eq!(text(&docs, "u"), "a = 1\nb = 2\n");
    }

    #[test]
    fn unopened_documents_are_an_error() {
        let mut docs = Documents::default();
        let err = docs.change(
            "nope",
            1,
            &[edit((0, 0), (0, 0), "x")],
            PositionEncoding::Utf16,
        );
        assert_eq!(err, Err(DocumentError::NotOpen("nope".into())));
        assert!(docs.snapshot("nope").is_err());
    }

    #[test]
    fn full_text_change_and_plain_text() {
        let mut docs = Documents::default();
        docs.open("u", Language::PlainText, 1, "hello");
        assert!(docs.snapshot("u").unwrap().tree.is_none());
        docs.change(
            "u",
            2,
            &[TextChange {
                range: None,
                text: "bye\r\nnow".into(),
            }],
            PositionEncoding::Utf8,
        )
        .unwrap();
        docs.change("u", 3, &[edit((1, 3), (1, 3), "!")], PositionEncoding::Utf8)
            .unwrap();
        assert_eq!(text(&docs, "u"), "bye\r\nnow!");
    }
}
