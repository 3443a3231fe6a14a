//! The completion context: the prefix/suffix windows cut around a cursor, the imports and
//! enclosing scopes, and the shape of the wanted suggestion (single- or multi-line, where it
//! must stop). Pure and synchronous; reads a rope and an optional tree-sitter tree.
//!
//! Invariants:
//! - Cost does not grow with the document: everything is read near the cursor through
//!   O(log n) rope lookups, one walk from the root of the tree down to the cursor, and scans
//!   bounded by constants (a few dozen lines, a few hundred top-level nodes). The document is
//!   never copied or scanned as a whole.
//! - The prefix window starts on a syntax boundary that does not move while the user types at
//!   the cursor, so that the model server can reuse its prompt cache between keystrokes.
//! - Never panics: the cursor, and the node ranges of a tree that may be stale, are clamped
//!   to the rope and to char boundaries.

use ropey::Rope;
use tree_sitter::{Node, Tree};

use super::lang::{Blocks, Import, LanguageSpec};
use super::{Language, header_line};
use crate::position::floor;
use crate::tokens::chars_for_tokens;

/// Size limits for the windows, in estimated tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextBudget {
    pub prefix_tokens: usize,
    pub suffix_tokens: usize,
}

impl ContextBudget {
    /// The window for a model slow to read prompts (a CPU model): ~1 KB of prefix, so that
    /// the first prompt at a new place — which such a model reads at ~90 tokens a second on
    /// two cores — is mostly read by the first pause after the user starts typing there
    /// (with 2 KB, the first one or two pauses in a new file showed nothing; the typing bench
    /// with the real Qwen2.5-Coder-1.5B: ghost text in 90% of pauses instead of 73%, 28% of
    /// the characters accepted instead of 22%, BENCHMARKS.md stop 21 — for 3 holes of 66 of
    /// exact match on `benches/quality.py`'s long holes, stop 16); and a ~120-character
    /// suffix, which it re-reads at every request (the prefix changed just before it) in a
    /// third of a second rather than a second (the 66 holes lose no exact match to it: 59.1%
    /// at 120 characters, 56.1% at 300, 50.0% at 40). The imports before the window still go.
    pub fn compact() -> Self {
        ContextBudget {
            prefix_tokens: 256,
            suffix_tokens: 30,
        }
    }
}

impl Default for ContextBudget {
    fn default() -> Self {
        // A ~300-character suffix keeps what llama.cpp must re-read per keystroke small.
        ContextBudget {
            prefix_tokens: 1536,
            suffix_tokens: 75,
        }
    }
}

/// Whether a suggestion may span lines: decided by the syntax (`Auto`) or forced by config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultilinePolicy {
    #[default]
    Auto,
    Always,
    Never,
}

/// The shape of the suggestion wanted at the cursor; post-processing enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SuggestionShape {
    /// True when the suggestion may span several lines.
    pub multiline: bool,
    /// Text on the cursor's line before the cursor (at most `MAX_LINE_CHARS` characters,
    /// the ones nearest the cursor).
    pub line_before: String,
    /// Text on the cursor's line after the cursor (without the line break; at most
    /// `MAX_LINE_CHARS` characters).
    pub line_after: String,
    /// For a multi-line suggestion: the indentation width (in columns, a tab counting as 4)
    /// of the enclosing block's body. A suggested line indented less than this leaves the
    /// block, so the suggestion stops before it.
    pub block_indent: Option<usize>,
    /// For a single-line suggestion: the cursor ends a line of code or a comment, so the
    /// suggestion may add to the line or be the next line (a line break, then one line): the
    /// model says which. This is where a whole accepted line leaves the cursor.
    pub next_line: bool,
}

impl SuggestionShape {
    /// Whether the suggestion ends the cursor's line — a block, or nothing but whitespace
    /// after the cursor (the place of a next line among them) — so that what the model
    /// writes after it is the suggestion after accepting it.
    pub fn ends_line(&self) -> bool {
        self.multiline || self.line_after.trim().is_empty()
    }
}

/// Everything a prompt is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionContext {
    pub language: Language,
    /// Import/use/include lines of the file that lie before `prefix_start` (outside the
    /// window), in file order; the prompt puts them before the window.
    pub imports: Vec<String>,
    /// Byte offset where the prefix window starts. It sits on a syntax boundary and stays put
    /// while the user types inside the same region, so successive prompts share their start
    /// and the model server's prompt cache is reused.
    pub prefix_start: usize,
    /// Document text from `prefix_start` to the cursor.
    pub prefix: String,
    /// Document text from the cursor to the end of the suffix window.
    pub suffix: String,
    /// Header lines of the enclosing scopes, outermost first (e.g. `impl Parser {`,
    /// `fn parse(&mut self) -> Result<Ast> {`).
    pub scope_chain: Vec<String>,
    pub shape: SuggestionShape,
}

/// The window's lower bound is rounded up to a multiple of this many bytes (at most a quarter
/// of the budget), so that the start moves once per ~1 KB typed rather than at every
/// keystroke or every statement.
const QUANTUM_BYTES: usize = 1024;
/// A boundary whose line starts further than this before it (minified code) is used as is,
/// mid-line, instead of at its line start.
const LONG_LINE_BYTES: usize = 1024;
/// Cap on `line_before`/`line_after` and on the part of the cursor's own line kept in the
/// suffix, so that a single 50 MB line cannot blow the prompt.
pub const MAX_LINE_CHARS: usize = 4096;
/// Caps on the imports put before the window.
pub const MAX_IMPORT_LINES: usize = 40;
pub const MAX_IMPORT_CHARS: usize = 1500;
/// How many top-level nodes are looked at when collecting imports, in all and after the
/// last import found (imports sit at the top; a long file is not walked to its end).
const MAX_TOPLEVEL_SCAN: usize = 256;
const MAX_SCAN_AFTER_IMPORT: usize = 64;
/// Bound on tree walks (nesting depth).
const MAX_DEPTH: usize = 256;
/// How many lines above/below the cursor are looked at for openers and indentation.
const NEARBY_LINES: usize = 50;
/// How many characters at a line's end are looked at for an opener.
const LINE_TAIL_CHARS: usize = 256;
/// One indentation level where the document shows none, and the width of a tab, in columns.
const INDENT_UNIT: usize = 4;
const TAB_WIDTH: usize = 4;
/// How many lines up to the cursor's the document's indentation step is learnt from.
const INDENT_SAMPLE_LINES: usize = 200;
/// Cap on the scope chain.
const MAX_SCOPES: usize = 16;

/// What may follow the cursor on its line while a multi-line suggestion still makes sense.
const CLOSERS: &[char] = &[')', ']', '}', '"', '\'', '`', ';', ','];

/// Cuts the completion context around `cursor` (a byte offset into `rope`, already clamped
/// to a char boundary by the caller; clamped again here).
pub fn extract(
    rope: &Rope,
    tree: Option<&Tree>,
    language: Language,
    cursor: usize,
    budget: ContextBudget,
    policy: MultilinePolicy,
) -> CompletionContext {
    let doc = Doc {
        rope,
        len: rope.len_bytes(),
    };
    let cursor = doc.clamp_cursor(cursor);
    let spec = language.spec();
    let root = tree.map(|t| t.root_node());
    let syntax = root.map(|root| Syntax { doc, root, spec });

    let prefix_start = prefix_start(doc, syntax, cursor, chars_for_tokens(budget.prefix_tokens));
    let suffix_end = suffix_end(doc, cursor, chars_for_tokens(budget.suffix_tokens));
    let line = CursorLine::new(doc, cursor);
    let imports = syntax
        .map(|s| s.imports_before(prefix_start))
        .unwrap_or_default();
    let scope_chain = syntax.map(|s| s.scope_chain(&line)).unwrap_or_default();

    let multiline = match policy {
        MultilinePolicy::Always => true,
        MultilinePolicy::Never => false,
        MultilinePolicy::Auto => auto_multiline(doc, syntax, &spec.blocks, &line),
    };
    let block_indent = multiline.then(|| block_indent(doc, syntax, &spec.blocks, &line));
    let next_line = !multiline
        && policy != MultilinePolicy::Never
        && syntax.is_some_and(|s| s.may_start_next_line(&line));

    CompletionContext {
        language,
        imports,
        prefix_start,
        prefix: doc.text(prefix_start, cursor),
        suffix: doc.text(cursor, suffix_end),
        scope_chain,
        shape: SuggestionShape {
            multiline,
            line_before: line.before,
            line_after: line.after,
            block_indent,
            next_line,
        },
    }
}

// ---------------------------------------------------------------------------------------
// Windows

/// Where the prefix window starts: on the first syntax boundary at or after the window's
/// lower bound `cursor - budget_chars` rounded up to a multiple of the quantum (or on a
/// line start after it without a tree); never after the cursor.
///
/// Rounding first means the start moves once per quantum (~1 KB) typed, not at every item
/// or statement the lower bound crosses: with short statements that would re-send the whole
/// prompt every few keystrokes. The window is at most one quantum (plus one skipped node)
/// smaller than the budget.
fn prefix_start(doc: Doc, syntax: Option<Syntax>, cursor: usize, budget_chars: usize) -> usize {
    let cursor_char = doc.rope.byte_to_char(cursor);
    if cursor_char <= budget_chars {
        return 0;
    }
    let lower = doc.rope.char_to_byte(cursor_char - budget_chars);
    let quantum = (budget_chars / 4).clamp(1, QUANTUM_BYTES);
    let lower_q = lower.div_ceil(quantum).saturating_mul(quantum).min(cursor);
    let boundary = syntax.and_then(|s| s.boundary_after(lower_q, cursor, cursor - lower));
    match boundary {
        Some(b) => {
            let line_start = doc.line_start_of(b);
            if b - line_start > LONG_LINE_BYTES {
                b
            } else {
                line_start
            }
        }
        None => quantized_line_start(doc, lower, lower_q, cursor),
    }
}

/// The line-based window start: the quantized lower bound `q` moved to the next line start,
/// else the cursor's line start, else `q` itself (inside a line longer than the budget).
fn quantized_line_start(doc: Doc, lower: usize, q: usize, cursor: usize) -> usize {
    let line = doc.line_of(q);
    let next = if doc.line_start(line) == q {
        q
    } else {
        doc.line_start(line + 1)
    };
    if next <= cursor {
        return next;
    }
    let cursor_line_start = doc.line_start_of(cursor);
    if cursor_line_start >= lower {
        return cursor_line_start;
    }
    doc.ceil(q).min(cursor)
}

/// Where the suffix window ends: at a line end (line break included) within the budget, but
/// never before the end of the cursor's own line (unless that line is absurdly long).
fn suffix_end(doc: Doc, cursor: usize, budget_chars: usize) -> usize {
    let cursor_char = doc.rope.byte_to_char(cursor);
    let line = doc.line_of(cursor);
    let own_line_end = doc.line_start(line + 1);
    let own_line_chars = doc.rope.byte_to_char(own_line_end) - cursor_char;
    let line_cap = budget_chars.max(MAX_LINE_CHARS);
    if own_line_chars > line_cap {
        return doc.rope.char_to_byte(cursor_char + line_cap);
    }
    let limit_char = cursor_char.saturating_add(budget_chars);
    if limit_char >= doc.rope.len_chars() {
        return doc.len;
    }
    let limit_line = doc.rope.char_to_line(limit_char);
    doc.line_start(limit_line).max(own_line_end)
}

// ---------------------------------------------------------------------------------------
// The cursor's line

/// The cursor and the text of its line around it.
struct CursorLine {
    cursor: usize,
    line: usize,
    before: String,
    after: String,
    /// Nothing but whitespace before the cursor on its line.
    blank_before: bool,
    /// Nothing but whitespace on the whole line.
    blank: bool,
    /// The column of the cursor when `blank_before`, else the indentation of the line.
    indent: usize,
}

impl CursorLine {
    fn new(doc: Doc, cursor: usize) -> CursorLine {
        let line = doc.line_of(cursor);
        let start = doc.line_start(line);
        let end = doc.line_content_end(line).max(cursor);
        let cursor_char = doc.rope.byte_to_char(cursor);
        let start_char = doc
            .rope
            .byte_to_char(start)
            .max(cursor_char.saturating_sub(MAX_LINE_CHARS));
        let end_char = doc.rope.byte_to_char(end).min(cursor_char + MAX_LINE_CHARS);
        let before = doc.rope.slice(start_char..cursor_char).to_string();
        let after = doc.rope.slice(cursor_char..end_char).to_string();
        let blank_before = before.trim().is_empty();
        let blank = blank_before && after.trim().is_empty();
        let indent = if blank_before {
            indent_width(&before)
        } else {
            doc.leading_indent(line)
        };
        CursorLine {
            cursor,
            line,
            before,
            after,
            blank_before,
            blank,
            indent,
        }
    }
}

/// The width in columns of a run of indentation (tab = 4 columns).
fn indent_width(s: &str) -> usize {
    s.chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .map(|c| if c == '\t' { TAB_WIDTH } else { 1 })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Shape

/// `MultilinePolicy::Auto`: multi-line only where a block body is being written.
fn auto_multiline(doc: Doc, syntax: Option<Syntax>, blocks: &Blocks, line: &CursorLine) -> bool {
    if syntax.is_some_and(|s| s.in_comment_or_string(line.cursor)) {
        return false;
    }
    if !line
        .after
        .chars()
        .all(|c| c.is_whitespace() || CLOSERS.contains(&c))
    {
        return false;
    }
    if line.blank_before {
        return true;
    }
    let start = doc.line_start(line.line);
    opens_block(doc, syntax, blocks, start, line.cursor)
}

/// The indentation of the body of the block that encloses the cursor (see `SuggestionShape`).
fn block_indent(doc: Doc, syntax: Option<Syntax>, blocks: &Blocks, line: &CursorLine) -> usize {
    let line_start = doc.line_start(line.line);
    if !line.blank_before {
        if opens_block(doc, syntax, blocks, line_start, line.cursor) {
            return opener_body_indent(doc, line.line, doc.leading_indent(line.line), None);
        }
        return line.indent;
    }
    if let Some(prev) = doc.prev_non_blank_line(line.line) {
        let (start, end) = (doc.line_start(prev), doc.line_content_end(prev));
        if opens_block(doc, syntax, blocks, start, end) {
            return opener_body_indent(doc, line.line, doc.leading_indent(prev), Some(line.indent));
        }
    }
    syntax
        .and_then(|s| s.enclosing_block_indent(line))
        .unwrap_or(line.indent)
}

/// The body indentation of a block whose opener line has `opener_indent`: the cursor's
/// column if the user indented, else the next non-blank line's indentation if it is inside,
/// else one level more than the opener.
fn opener_body_indent(doc: Doc, line: usize, opener_indent: usize, cursor: Option<usize>) -> usize {
    if let Some(c) = cursor.filter(|c| *c > opener_indent) {
        return c;
    }
    doc.next_non_blank_line(line)
        .map(|next| doc.leading_indent(next))
        .filter(|i| *i > opener_indent)
        .unwrap_or(opener_indent + doc.indent_unit(line))
}

/// True when the text in `start..end` (a line, or its part before the cursor) opens a
/// block: it ends (ignoring whitespace) with one of the language's openers (`{`, `do`,
/// `then`, Python's `:`) that the tree confirms is that token (not text in a string) under
/// the right parent, or it is a header line (`def f(x)` in Ruby, `if x:` in Python while
/// the tree is broken).
fn opens_block(
    doc: Doc,
    syntax: Option<Syntax>,
    blocks: &Blocks,
    start: usize,
    end: usize,
) -> bool {
    let Some((at, ch)) = doc.last_non_ws(start, end) else {
        return false;
    };
    let last = at + ch.len_utf8();
    let opener = blocks.openers.iter().find(|o| {
        o.token.len() <= last - start
            && o.token.ends_with(ch)
            && doc.text(last - o.token.len(), last) == o.token
            && (o.token.len() == 1 || !doc.text(start, last - o.token.len()).ends_with(is_word))
    });
    if let Some(opener) = opener {
        let node = syntax.and_then(|s| s.root.descendant_for_byte_range(at, last));
        let by_tree = node.is_none_or(|n| {
            n.kind() == opener.token
                && (opener.parents.is_empty()
                    || n.parent().is_some_and(|p| {
                        let kind = p.kind();
                        opener.parents.iter().any(|suffix| kind.ends_with(suffix))
                    }))
        });
        if by_tree {
            return true;
        }
    }
    let text = doc.text(start, last);
    blocks
        .header_end
        .is_none_or(|end| text.trim_end().ends_with(end))
        && is_header_line(blocks, &text)
}

/// A line that starts with one of the language's block header words, leaves no bracket open
/// and holds no word that closes a block (`def f; end` is whole).
fn is_header_line(blocks: &Blocks, text: &str) -> bool {
    let head = text.trim_start();
    let starts = blocks.headers.iter().any(|h| {
        head.strip_prefix(h)
            .is_some_and(|rest| !rest.starts_with(is_word))
    });
    if !starts {
        return false;
    }
    let mut depth: i64 = 0;
    for c in head.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    depth <= 0
        && !head
            .split(|c: char| !is_word(c))
            .any(|word| blocks.closers.contains(&word))
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

// ---------------------------------------------------------------------------------------
// Tree queries

/// What the cursor can be inside of that is not code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    Comment,
    String,
}

/// A tree with the rope it was (hopefully) parsed from, and its language.
#[derive(Clone, Copy)]
struct Syntax<'a> {
    doc: Doc<'a>,
    root: Node<'a>,
    spec: &'static LanguageSpec,
}

impl<'a> Syntax<'a> {
    /// The first syntax boundary at or after `lower` and not after `cursor`: walking down
    /// from the root, the start of the sibling that follows the node spanning `lower`. The
    /// outermost such sibling is taken unless it would waste more than half of `budget`
    /// (bytes); then the walk descends for a finer one. Depends only on `lower` and the text
    /// before the cursor, so it does not move while the user types at the cursor.
    fn boundary_after(self, lower: usize, cursor: usize, budget: usize) -> Option<usize> {
        let mut node = self.root;
        let mut wasteful = None;
        for _ in 0..MAX_DEPTH {
            let Some(child) = node.first_child_for_byte(lower) else {
                break;
            };
            let start = child.start_byte();
            if start >= lower {
                return if start <= cursor {
                    Some(start)
                } else {
                    wasteful
                };
            }
            let next = node
                .first_child_for_byte(child.end_byte())
                .map(|n| n.start_byte())
                .filter(|s| *s >= child.end_byte() && *s <= cursor);
            if let Some(s) = next {
                if s - lower <= budget / 2 {
                    return Some(s);
                }
                wasteful = Some(s);
            }
            node = child;
        }
        wasteful
    }

    /// The import lines among the top-level nodes that end before `before`, in file order.
    fn imports_before(self, before: usize) -> Vec<String> {
        if self.spec.imports.is_empty() {
            return Vec::new();
        }
        let mut scan = ImportScan {
            syntax: self,
            before,
            out: Vec::new(),
            lines: 0,
            chars: 0,
            scanned: 0,
            since_import: 0,
            done: false,
        };
        scan.children(self.root, 0);
        scan.out
    }

    /// True when the suggestion at the cursor may be the next line: the cursor ends its line
    /// (nothing but whitespace follows it there) after code or a comment, the user has not
    /// typed a space to go on with the line (`return |`), and it is not inside a string.
    /// Whether the line is complete the model says, by adding to it or by breaking it: after
    /// `total = 0`, a trailing comma, a comment, or a signature whose `where` comes below,
    /// the next line is what the user writes next. A whole accepted line leaves the cursor
    /// here.
    fn may_start_next_line(self, line: &CursorLine) -> bool {
        !(line.blank_before
            || line.before.ends_with(char::is_whitespace)
            || !line.after.trim().is_empty()
            || self.cursor_in(line.cursor) == Some(Literal::String))
    }

    /// True when the cursor is inside a comment or a string literal.
    fn in_comment_or_string(self, cursor: usize) -> bool {
        self.cursor_in(cursor).is_some()
    }

    /// The comment or string literal the cursor is inside, if any (a line comment counts
    /// up to its end; a closed string or block comment does not at its end).
    fn cursor_in(self, cursor: usize) -> Option<Literal> {
        if cursor == 0 {
            return None;
        }
        let before = self.doc.floor(cursor - 1);
        let node = self.root.descendant_for_byte_range(before, cursor)?;
        let strings = &self.spec.strings;
        for n in ancestors(node) {
            let kind = n.kind();
            if strings.interpolations.contains(&kind) {
                return None;
            }
            let (start, end) = (n.start_byte(), n.end_byte().min(self.doc.len));
            if kind.contains("comment") {
                if start >= cursor {
                    return None;
                }
                if cursor < end {
                    return Some(Literal::Comment);
                }
                // At the end: inside a line comment, outside a block comment (closed).
                let text = self.doc.text(start, (start + 8).min(end));
                let comments = &self.spec.comments;
                let block = comments
                    .block
                    .iter()
                    .any(|(open, _)| text.starts_with(open));
                let line_comment = !block && comments.line.iter().any(|l| text.starts_with(l));
                let open = cursor == end && line_comment && self.doc.byte(end - 1) != Some(b'\n');
                return open.then_some(Literal::Comment);
            }
            if strings.literals.contains(&kind) {
                return (start < cursor && cursor < end).then_some(Literal::String);
            }
        }
        None
    }

    /// Header lines of the scopes enclosing the cursor, outermost first.
    fn scope_chain(self, line: &CursorLine) -> Vec<String> {
        let cursor = line.cursor;
        // On a blank line of a language whose blocks end by indentation (Python), the cursor
        // belongs to the blocks that the indentation says, even past the end of their last
        // statement: probe from the last code above.
        let by_indent = self.spec.blocks.by_indent && line.blank;
        let probe = if by_indent {
            self.doc.last_code_before(line.line)
        } else {
            None
        };
        let Some(node) = self.node_before(probe.unwrap_or(cursor)) else {
            return Vec::new();
        };
        let mut chain: Vec<String> = ancestors(node)
            .filter(|n| self.is_scope(*n))
            .filter(|n| {
                self.encloses(*n, cursor)
                    || (probe.is_some()
                        && n.start_byte() < cursor
                        && n.end_byte() <= cursor
                        && self.doc.leading_indent(self.doc.line_of(n.start_byte())) < line.indent)
            })
            .map(|n| header_line(self.doc.rope, n))
            .collect();
        chain.truncate(MAX_SCOPES);
        chain.reverse();
        chain
    }

    /// For a cursor on a blank line strictly inside a block: the block's body indentation.
    fn enclosing_block_indent(self, line: &CursorLine) -> Option<usize> {
        let cursor = line.cursor;
        let probe = if self.spec.blocks.by_indent {
            self.doc.last_code_before(line.line).unwrap_or(cursor)
        } else {
            cursor
        };
        let node = self.node_before(probe)?;
        let block = ancestors(node)
            .find(|n| is_block(&self.spec.blocks, *n) && self.encloses(*n, cursor))?;
        // A block that starts with its own token (`{`, `do`, `else`) opens on its line; one
        // that starts with a statement (a Python or Lua body) opens on its parent's line.
        let own_opener = block.child(0).is_some_and(|c| !c.is_named());
        let opener_at = if own_opener {
            block.start_byte()
        } else {
            block.parent().unwrap_or(block).start_byte()
        };
        let opener_line = self.doc.line_of(opener_at);
        let opener_indent = self.doc.leading_indent(opener_line);
        if line.indent > opener_indent {
            return Some(line.indent);
        }
        let mut walk = block.walk();
        let mut statement_indent = None;
        if walk.goto_first_child() {
            for _ in 0..16 {
                let child = walk.node();
                let child_line = self.doc.line_of(child.start_byte());
                if child.is_named() && child_line > opener_line {
                    statement_indent = Some(self.doc.leading_indent(child_line));
                    break;
                }
                if !walk.goto_next_sibling() {
                    break;
                }
            }
        }
        Some(
            statement_indent
                .filter(|i| *i > opener_indent)
                .unwrap_or(opener_indent + self.doc.indent_unit(line.line)),
        )
    }

    /// The smallest node spanning the character just before `at` (the root at 0).
    fn node_before(self, at: usize) -> Option<Node<'a>> {
        let at = self.doc.floor(at);
        let from = if at == 0 { 0 } else { self.doc.floor(at - 1) };
        self.root.descendant_for_byte_range(from, at)
    }

    /// True when `node` contains the cursor: strictly inside, or at its very end when the
    /// node is not closed by a bracket or `;` (an unfinished block, a Python body).
    fn encloses(self, node: Node, cursor: usize) -> bool {
        let (start, end) = (node.start_byte(), node.end_byte());
        start < cursor && (cursor < end || (cursor == end && !self.is_closed(node)))
    }

    fn is_closed(self, node: Node) -> bool {
        if self.spec.blocks.by_indent {
            return false;
        }
        let mut last = node;
        for _ in 0..MAX_DEPTH {
            match last
                .child_count()
                .checked_sub(1)
                .and_then(|i| last.child(i))
            {
                Some(child) => last = child,
                None => break,
            }
        }
        !last.is_missing()
            && (matches!(last.kind(), "}" | ")" | "]" | ";")
                || self.spec.blocks.closers.contains(&last.kind()))
    }

    /// A node whose header line belongs in the scope chain: a definition, closure or
    /// namespace.
    fn is_scope(self, node: Node) -> bool {
        use super::lang::Item::*;
        matches!(
            self.spec.item(node.kind()),
            Some(Function | Container | Anonymous | Namespace)
        )
    }
}

/// A node and its ancestors, innermost first (bounded).
fn ancestors(node: Node) -> impl Iterator<Item = Node> {
    std::iter::successors(Some(node), |n| n.parent()).take(MAX_DEPTH)
}

/// A block whose body is indented: braces, or one of the language's block kinds (a
/// Python `block`, a Ruby `body_statement`, a Bash `do_group`).
fn is_block(blocks: &Blocks, node: Node) -> bool {
    blocks.kinds.contains(&node.kind()) || node.child(0).is_some_and(|c| c.kind() == "{")
}

/// Collects import nodes in file order, with the caps.
struct ImportScan<'a> {
    syntax: Syntax<'a>,
    before: usize,
    out: Vec<String>,
    lines: usize,
    chars: usize,
    scanned: usize,
    since_import: usize,
    done: bool,
}

impl ImportScan<'_> {
    /// Visits the children of `parent`; at depth 0 enters nodes that hold definitions
    /// (C header guards wrap the includes).
    fn children(&mut self, parent: Node, depth: usize) {
        let mut walk = parent.walk();
        if !walk.goto_first_child() {
            return;
        }
        while !self.done {
            let node = walk.node();
            self.scanned += 1;
            self.since_import += 1;
            if self.scanned > MAX_TOPLEVEL_SCAN
                || self.since_import > MAX_SCAN_AFTER_IMPORT
                || node.start_byte() >= self.before
            {
                self.done = true;
                return;
            }
            let spec = self.syntax.spec;
            if is_import(spec, self.syntax.doc.rope, node) {
                if node.end_byte() <= self.before {
                    self.push(node);
                }
            } else if depth == 0
                && (node.is_error() || spec.item(node.kind()) == Some(super::lang::Item::Holder))
            {
                // An unclosed bracket at the cursor can make the parser wrap the top of the
                // file in an ERROR node: its imports are still there, and dropping them would
                // change the prompt's first bytes (and the model server's cache) mid-word.
                self.children(node, depth + 1);
            }
            if !walk.goto_next_sibling() {
                return;
            }
        }
    }

    fn push(&mut self, node: Node) {
        let text = self.syntax.doc.text(node.start_byte(), node.end_byte());
        let text = text.trim_end_matches(['\n', '\r']);
        let lines = text.lines().count().max(1);
        let chars = text.chars().count();
        if self.lines + lines > MAX_IMPORT_LINES || self.chars + chars > MAX_IMPORT_CHARS {
            self.done = true;
            return;
        }
        self.lines += lines;
        self.chars += chars;
        self.since_import = 0;
        self.out.push(text.to_string());
    }
}

/// Whether `node` is an import of the language (also used by the code actions): a node of
/// an import kind, and for call-like imports (`require "x"`, `source x`) one whose first
/// line — or what follows its first `=`, as in `local json = require("json")` — starts
/// with one of the import's words.
pub(crate) fn is_import(spec: &LanguageSpec, rope: &Rope, node: Node) -> bool {
    let kind = node.kind();
    let Some(import) = spec.imports.iter().find(|i| i.kind == kind) else {
        return false;
    };
    import.calls.is_empty() || starts_with_import_word(import, rope, node)
}

fn starts_with_import_word(import: &Import, rope: &Rope, node: Node) -> bool {
    const HEAD_BYTES: usize = 160;
    let start = node.start_byte();
    let mut head = String::new();
    crate::position::for_each_chunk(rope, start..node.end_byte().min(start + HEAD_BYTES), |p| {
        head.push_str(p)
    });
    let line = head.lines().next().unwrap_or("");
    // `local json = require(…)`, `$config = require …`: the value of an assignment.
    let value = match line.split_once('=') {
        Some((target, value))
            if !value.starts_with('=')
                && target.chars().all(|c| {
                    c.is_alphanumeric()
                        || matches!(c, '_' | '$' | ',' | '.' | ':')
                        || c.is_whitespace()
                }) =>
        {
            value
        }
        _ => line,
    };
    let value = value.trim_start();
    import.calls.iter().any(|word| {
        value.strip_prefix(word).is_some_and(|rest| {
            rest.is_empty()
                || rest.starts_with(|c: char| c.is_whitespace() || matches!(c, '(' | '"' | '\''))
        })
    })
}

// ---------------------------------------------------------------------------------------
// Rope access, clamped

/// The rope with clamping accessors: every byte offset that comes in (the cursor, a node
/// range from a possibly stale tree) is clamped to the text and to a char boundary.
#[derive(Clone, Copy)]
struct Doc<'a> {
    rope: &'a Rope,
    len: usize,
}

impl Doc<'_> {
    /// Clamps the cursor to the text and a char boundary, and out of the middle of a `\r\n`.
    fn clamp_cursor(self, cursor: usize) -> usize {
        let cursor = self.floor(cursor);
        if cursor > 0 && self.byte(cursor - 1) == Some(b'\r') && self.byte(cursor) == Some(b'\n') {
            cursor - 1
        } else {
            cursor
        }
    }

    /// The start of the char containing `byte` (clamped to the text).
    fn floor(self, byte: usize) -> usize {
        floor(self.rope, byte)
    }

    /// The first char boundary at or after `byte` (clamped to the text).
    fn ceil(self, byte: usize) -> usize {
        let byte = byte.min(self.len);
        let c = self.rope.byte_to_char(byte);
        let f = self.rope.char_to_byte(c);
        if f < byte {
            self.rope.char_to_byte(c + 1)
        } else {
            f
        }
    }

    fn byte(self, at: usize) -> Option<u8> {
        (at < self.len).then(|| self.rope.byte(at))
    }

    /// The text between two byte offsets (clamped, ordered).
    fn text(self, start: usize, end: usize) -> String {
        let (start, end) = (self.floor(start), self.floor(end));
        if start >= end {
            String::new()
        } else {
            self.rope.byte_slice(start..end).to_string()
        }
    }

    fn line_of(self, byte: usize) -> usize {
        self.rope.byte_to_line(byte.min(self.len))
    }

    /// The byte where `line` starts (the end of the text past the last line).
    fn line_start(self, line: usize) -> usize {
        if line >= self.rope.len_lines() {
            self.len
        } else {
            self.rope.line_to_byte(line)
        }
    }

    fn line_start_of(self, byte: usize) -> usize {
        self.line_start(self.line_of(byte))
    }

    /// The byte where `line`'s content ends (before its line break).
    fn line_content_end(self, line: usize) -> usize {
        let start = self.line_start(line);
        let mut end = self.line_start(line + 1);
        if end > start && self.byte(end - 1) == Some(b'\n') {
            end -= 1;
        }
        if end > start && self.byte(end - 1) == Some(b'\r') {
            end -= 1;
        }
        end
    }

    /// The indentation width of `line`'s leading whitespace (blank lines count it too).
    fn leading_indent(self, line: usize) -> usize {
        if line >= self.rope.len_lines() {
            return 0;
        }
        self.rope
            .line(line)
            .chars()
            .take(LINE_TAIL_CHARS)
            .take_while(|c| *c == ' ' || *c == '\t')
            .map(|c| if c == '\t' { TAB_WIDTH } else { 1 })
            .sum()
    }

    /// True when `line` holds only whitespace (looks at a bounded head of it).
    fn is_blank_line(self, line: usize) -> bool {
        line < self.rope.len_lines()
            && self
                .rope
                .line(line)
                .chars()
                .take(LINE_TAIL_CHARS)
                .all(char::is_whitespace)
    }

    /// The document's indentation step, learnt from `line` and the lines above: the most common
    /// increase of indentation from one line of code to the next (the smaller on a tie), or
    /// [`INDENT_UNIT`] where no line is deeper than the one before it. Blank lines and a block
    /// comment's ` * ` lines (one column in from their `/**`) are not code.
    fn indent_unit(self, line: usize) -> usize {
        let mut steps = [0usize; 2 * INDENT_UNIT + 1];
        let mut below: Option<usize> = None;
        let lines = line.saturating_sub(INDENT_SAMPLE_LINES)..(line + 1).min(self.rope.len_lines());
        for l in lines.rev() {
            let first = self
                .rope
                .line(l)
                .chars()
                .take(LINE_TAIL_CHARS)
                .find(|c| !c.is_whitespace());
            if matches!(first, None | Some('*')) {
                continue;
            }
            let indent = self.leading_indent(l);
            if let Some(step) = below.and_then(|b| b.checked_sub(indent)) {
                if let Some(count) = steps.get_mut(step).filter(|_| step > 0) {
                    *count += 1;
                }
            }
            below = Some(indent);
        }
        (1..steps.len())
            .rev()
            .max_by_key(|&step| steps[step])
            .filter(|&step| steps[step] > 0)
            .unwrap_or(INDENT_UNIT)
    }

    fn prev_non_blank_line(self, line: usize) -> Option<usize> {
        (line.saturating_sub(NEARBY_LINES)..line)
            .rev()
            .find(|l| !self.is_blank_line(*l))
    }

    fn next_non_blank_line(self, line: usize) -> Option<usize> {
        let last = self.rope.len_lines().min(line + 1 + NEARBY_LINES);
        (line + 1..last).find(|l| !self.is_blank_line(*l))
    }

    /// The last non-whitespace char in `start..end` (looking at most `LINE_TAIL_CHARS`
    /// chars back), with its byte offset.
    fn last_non_ws(self, start: usize, end: usize) -> Option<(usize, char)> {
        let (start, end) = (self.floor(start), self.floor(end));
        if start >= end {
            return None;
        }
        let end_char = self.rope.byte_to_char(end);
        let start_char = self
            .rope
            .byte_to_char(start)
            .max(end_char.saturating_sub(LINE_TAIL_CHARS));
        let mut at = end_char;
        for ch in self.rope.chars_at(end_char).reversed() {
            if at <= start_char {
                break;
            }
            at -= 1;
            if !ch.is_whitespace() {
                return Some((self.rope.char_to_byte(at), ch));
            }
        }
        None
    }

    /// The end of the last code (non-whitespace) on the non-blank line above `line`.
    fn last_code_before(self, line: usize) -> Option<usize> {
        let prev = self.prev_non_blank_line(line)?;
        let (at, ch) = self.last_non_ws(self.line_start(prev), self.line_content_end(prev))?;
        Some(at + ch.len_utf8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    use crate::syntax::test_support::{fixture, language};

    use crate::tokens::CHARS_PER_TOKEN;

    const ALL: [Language; 14] = Language::ALL;

    fn run(
        lang: &str,
        src: &str,
        budget: ContextBudget,
        policy: MultilinePolicy,
    ) -> CompletionContext {
        let lang = language(lang);
        let (text, cursor) = fixture(src);
        let tree = parse(lang, &text);
        extract(
            &Rope::from_str(&text),
            tree.as_ref(),
            lang,
            cursor,
            budget,
            policy,
        )
    }

    fn check_shape(lang: &str, src: &str, multiline: bool, block_indent: Option<usize>) {
        let ctx = run(lang, src, ContextBudget::default(), MultilinePolicy::Auto);
        let got = (ctx.shape.multiline, ctx.shape.block_indent);
        assert_eq!(
            got,
            (multiline, block_indent),
            "{lang}: {src:?}\n{:#?}",
            ctx.shape
        );
    }

    /// Where the cursor ends a line of code or a comment, the suggestion may be the next line
    /// (this is where accepting a whole line leaves the cursor); the model says whether it
    /// adds to the line instead.
    #[test]
    fn next_line_at_the_end_of_a_line() {
        let cases: &[(&str, &str, bool)] = &[
            ("python", "def f(items):\n    total = 0$0\n", true),
            ("python", "def f(items):\n    total = 0$0", true),
            // A space typed after the code: the user goes on with the line.
            (
                "python",
                "def f(items):\n    total = 0  $0\n    return total\n",
                false,
            ),
            ("python", "def f():\n    return $0\n", false),
            ("rust", "fn f() -> u8 {\n    return $0\n}\n", false),
            (
                "python",
                "def f(items):\n    for i in items:\n        total += i$0\n",
                true,
            ),
            // The last line of a function: the definition ends there.
            ("python", "def f():\n    return 1$0\n\nx = 2\n", true),
            // Not complete, but the line may end here: the rest of a call's arguments, a
            // statement or signature that goes on below (the model adds to the line or not).
            ("python", "def f(items):\n    total = sum(items,$0\n", true),
            ("rust", "fn f() {\n    let x = 1$0\n}\n", true),
            (
                "rust",
                "fn split<R>(reader: R) -> Split<R>$0\nwhere\n    R: Read,\n{}\n",
                true,
            ),
            ("python", "x = foo(a,$0\n        b)\n", true),
            // After a comment, its next line (the code it describes, or more comment).
            ("python", "def f():\n    # total = 0$0\n", true),
            ("rust", "/// Creates a slice$0\nfn f() {}\n", true),
            // Mid-line, a blank line, a string: not this shape.
            ("python", "def f():\n    x = 1$0 + 2\n", false),
            ("python", "x = foo(a$0\n        , b)\n", true),
            ("python", "def f():\n    $0\n", false),
            ("python", "s = \"\"\"\ntotal = 0$0\n\"\"\"\n", false),
            ("rust", "fn f() {\n    let x = 1;$0\n}\n", true),
            (
                "javascript",
                "function f() {\n  const x = g(1);$0\n}\n",
                true,
            ),
            ("go", "func f() {\n\tx := 1$0\n}\n", true),
            ("rust", "fn f() {\n    g();\n}$0\n", true),
            ("ruby", "def f\n  x = 1$0\nend\n", true),
            ("lua", "function f()\n  local x = 1$0\nend\n", true),
            ("bash", "f() {\n  x=1$0\n}\n", true),
            ("php", "<?php\nfunction f() {\n  $x = 1;$0\n}\n", true),
        ];
        for (lang, src, next_line) in cases {
            let ctx = run(lang, src, ContextBudget::default(), MultilinePolicy::Auto);
            assert_eq!(
                ctx.shape.next_line, *next_line,
                "{lang}: {src:?}\n{:#?}",
                ctx.shape
            );
            assert!(!(ctx.shape.next_line && ctx.shape.multiline), "{src:?}");
        }
        let never = run(
            "python",
            "def f(items):\n    total = 0$0\n",
            ContextBudget::default(),
            MultilinePolicy::Never,
        );
        assert!(
            !never.shape.next_line,
            "multiline = \"never\" keeps to the line"
        );
    }

    #[test]
    fn multiline_decision_and_block_indent() {
        let cases: &[(&str, &str, bool, Option<usize>)] = &[
            // Empty block right after an opener: multi-line, body one level in.
            ("rust", "fn f() {\n    $0\n}", true, Some(4)),
            ("rust", "fn f() {$0}", true, Some(4)),
            ("rust", "fn f() {\n    if x {$0\n}", true, Some(8)),
            ("rust", "fn f() {\n$0\n}", true, Some(4)),
            (
                "rust",
                "impl A {\n    fn f(&self) {\n        $0\n    }\n}",
                true,
                Some(8),
            ),
            // Blank line inside a non-empty block: multi-line, the statements' indentation.
            (
                "rust",
                "fn f() {\n    a();\n    $0\n    b();\n}",
                true,
                Some(4),
            ),
            ("rust", "fn f() {\n    a();\n$0\n    b();\n}", true, Some(4)),
            ("rust", "fn f() {$0\n        a();\n}", true, Some(8)),
            // Top level, blank line: multi-line, nothing bounds it but column 0.
            ("rust", "use std::io;\n\n$0", true, Some(0)),
            // Comments and strings: single-line.
            ("rust", "fn f() {\n    // todo {$0\n}", false, None),
            ("rust", "fn f() {\n    /* a\n    $0\n    */\n}", false, None),
            ("rust", "fn f() {\n    let s = \"{$0\";\n}", false, None),
            ("rust", "fn f() {\n    let s = \"a\"$0;\n}", false, None),
            // Mid-expression / mid-statement: single-line.
            ("rust", "fn f() {\n    let x = $0\n}", false, None),
            ("rust", "fn f() {\n    foo($0)\n}", false, None),
            ("rust", "fn f() {\n    let v = vec![$0];\n}", false, None),
            // Code after the cursor: single-line; closers only: still multi-line.
            ("rust", "fn f() {\n    $0a();\n}", false, None),
            ("rust", "fn f() {\n    if x {$0 }\n}", true, Some(8)),
            ("rust", "fn f() {\n    if x {$0});\n}", true, Some(8)),
            ("rust", "fn f() {\n    if x {$0 y }\n}", false, None),
            // Python: `:` openers, dedent ends the block.
            ("python", "def f():\n    $0", true, Some(4)),
            ("python", "def f():$0", true, Some(4)),
            ("python", "def f():\n$0", true, Some(4)),
            (
                "python",
                "class A:\n    def f(self):\n        $0",
                true,
                Some(8),
            ),
            ("python", "def f():\n    x = 1\n    $0", true, Some(4)),
            ("python", "def f():\n    x = 1\n$0", true, Some(0)),
            (
                "python",
                "def f():\n    x = 1\n$0\n    y = 2\n",
                true,
                Some(4),
            ),
            ("python", "if x:$0\n        y()\n", true, Some(8)),
            ("python", "def f(\n    a,\n):$0", true, Some(4)),
            ("python", "x = d[1:$0]", false, None),
            ("python", "def f(a:$0", false, None),
            ("python", "def f():\n    # note:$0\n", false, None),
            (
                "python",
                "def f():\n    s = \"\"\"\n    $0\n    \"\"\"\n",
                false,
                None,
            ),
            ("python", "def f():\n    return g($0)\n", false, None),
            // JavaScript / TypeScript / TSX.
            ("javascript", "function f() {\n  $0\n}", true, Some(2)),
            ("javascript", "it(\"works\", () => {$0});", true, Some(4)),
            // An empty body: one step in, the step the document indents by (4 where no
            // line above shows one; a tab is 4 columns).
            (
                "javascript",
                "function f(x) {\n  if (x) {$0\n\n  } else {\n  }\n}",
                true,
                Some(4),
            ),
            (
                "javascript",
                "/**\n * A.\n */\nfunction f(x) {\n  /**\n   * B.\n   */\n  if (x) {$0\n  }\n}",
                true,
                Some(4),
            ),
            (
                "typescript",
                "class A {\n  m(): void {\n    if (x) {\n      y();\n    }\n    for (;;) {\n$0\n    }\n  }\n}",
                true,
                Some(6),
            ),
            (
                "rust",
                "fn f() {\n\tif x {\n\t\ty();\n\t}\n\tif z {$0\n\t}\n}",
                true,
                Some(8),
            ),
            ("javascript", "const s = `a ${$0}`;", false, None),
            ("javascript", "const s = `{$0`;", false, None),
            ("javascript", "const x = foo($0);", false, None),
            (
                "typescript",
                "class A {\n  m(): void {\n    $0\n  }\n}",
                true,
                Some(4),
            ),
            (
                "typescript",
                "function f(x: number) {\n  return x + $0\n}",
                false,
                None,
            ),
            ("typescript", "// {$0", false, None),
            (
                "tsx",
                "function C() {\n  const a = 1;\n  $0\n  return <div />;\n}",
                true,
                Some(2),
            ),
            (
                "tsx",
                "function C() {\n  return <div>{$0}</div>;\n}",
                false,
                None,
            ),
            ("tsx", "const a = <div className=\"x$0\" />;", false, None),
            // Go.
            ("go", "package main\n\nfunc f() {\n\t$0\n}\n", true, Some(4)),
            ("go", "package main\n\nfunc f() {$0\n}\n", true, Some(4)),
            (
                "go",
                "package main\n\nfunc f() {\n\ts := `{$0`\n}\n",
                false,
                None,
            ),
            (
                "go",
                "package main\n\nfunc f() {\n\tx := g($0)\n}\n",
                false,
                None,
            ),
            // C / C++.
            ("c", "int main(void) {\n    $0\n}", true, Some(4)),
            ("c", "#include <std$0>\n", false, None),
            ("c", "int main(void) {\n    return $0;\n}", false, None),
            (
                "cpp",
                "namespace n {\nclass A {\n  void f() {$0}\n};\n}",
                true,
                Some(4),
            ),
            ("cpp", "int f() {\n  // {$0\n}", false, None),
            // Java.
            (
                "java",
                "class A {\n    void f() {\n        $0\n    }\n}",
                true,
                Some(8),
            ),
            (
                "java",
                "class A {\n    void f() {\n        String s = \"{$0\";\n    }\n}",
                false,
                None,
            ),
            (
                "java",
                "class A {\n    void f() {\n        g($0);\n    }\n}",
                false,
                None,
            ),
            // Ruby: `do`, `|x|` after it, and header lines open blocks; `end` closes them.
            ("ruby", "def f(x)\n  $0\nend\n", true, Some(2)),
            ("ruby", "def f(x)$0\n  y = 1\nend\n", true, Some(2)),
            ("ruby", "xs.each do$0\nend\n", true, Some(4)),
            ("ruby", "xs.each do |x|$0\nend\n", true, Some(4)),
            (
                "ruby",
                "class A\n  def f\n    a\n    $0\n    b\n  end\nend\n",
                true,
                Some(4),
            ),
            ("ruby", "def f; end$0\n", false, None),
            ("ruby", "def f\n  x = \"do$0\"\nend\n", false, None),
            ("ruby", "def f\n  # then do$0\nend\n", false, None),
            ("ruby", "def f\n  g($0)\nend\n", false, None),
            // PHP.
            ("php", "<?php\nfunction f($x) {\n    $0\n}\n", true, Some(4)),
            (
                "php",
                "<?php\nfunction f($x) {\n    $s = \"{$0\";\n}\n",
                false,
                None,
            ),
            (
                "php",
                "<?php\nfunction f($x) {\n    # note {$0\n}\n",
                false,
                None,
            ),
            (
                "php",
                "<?php\nfunction f($x) {\n    g($0);\n}\n",
                false,
                None,
            ),
            // Lua.
            ("lua", "function f(x)\n  $0\nend\n", true, Some(2)),
            (
                "lua",
                "local function g(a)$0\n  return a\nend\n",
                true,
                Some(2),
            ),
            ("lua", "if x then$0\nend\n", true, Some(4)),
            ("lua", "for i = 1, 10 do$0\nend\n", true, Some(4)),
            ("lua", "local s = \"then$0\"\n", false, None),
            ("lua", "-- do$0\n", false, None),
            ("lua", "local t = f($0)\n", false, None),
            // Bash.
            ("bash", "if [ -f a ]; then$0\nfi\n", true, Some(4)),
            ("bash", "for f in *.txt; do\n  $0\ndone\n", true, Some(2)),
            ("bash", "f() {\n  $0\n}\n", true, Some(2)),
            ("bash", "case \"$x\" in$0\nesac\n", true, Some(4)),
            ("bash", "echo \"then$0\"\n", false, None),
            ("bash", "echo $# # do$0\n", false, None),
            // Plain text: line-based (blank line or `{` at end: multi-line).
            ("plaintext", "hello\n$0", true, Some(0)),
            ("plaintext", "hello $0", false, None),
            ("plaintext", "  section {$0", true, Some(6)),
            // Tabs count 4 columns.
            (
                "go",
                "package main\n\nfunc f() {\n\tif x {\n\t\t$0\n\t}\n}\n",
                true,
                Some(8),
            ),
        ];
        for (lang, src, multiline, indent) in cases {
            check_shape(lang, src, *multiline, *indent);
        }
    }

    #[test]
    fn policy_forces_multiline() {
        let src = "fn f() {\n    let x = $0\n}";
        let always = run(
            "rust",
            src,
            ContextBudget::default(),
            MultilinePolicy::Always,
        );
        assert_eq!(
            (always.shape.multiline, always.shape.block_indent),
            (true, Some(4))
        );
        let never = run(
            "rust",
            "fn f() {\n    $0\n}",
            ContextBudget::default(),
            MultilinePolicy::Never,
        );
        assert_eq!(
            (never.shape.multiline, never.shape.block_indent),
            (false, None)
        );
    }

    #[test]
    fn line_before_and_after() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "rust",
                "fn f() {\r\n    let x$0 = 1;\r\n}\r\n",
                "    let x",
                " = 1;",
            ),
            (
                "rust",
                "fn f() {\r\n    let x = 1;$0\r\n}\r\n",
                "    let x = 1;",
                "",
            ),
            (
                "rust",
                "let a = \"héllo 🦀$0 世界\";\n",
                "let a = \"héllo 🦀",
                " 世界\";",
            ),
            ("python", "x = '日本語$0'\r\ny = 2", "x = '日本語", "'"),
            ("plaintext", "one\rtwo$0\rthree", "two", ""),
            ("plaintext", "$0", "", ""),
            ("plaintext", "abc\n$0", "", ""),
        ];
        for (lang, src, before, after) in cases {
            let ctx = run(lang, src, ContextBudget::default(), MultilinePolicy::Auto);
            assert_eq!(
                (
                    ctx.shape.line_before.as_str(),
                    ctx.shape.line_after.as_str()
                ),
                (*before, *after),
                "{src:?}"
            );
        }
    }

    #[test]
    fn scope_chain_outermost_first() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "rust",
                "mod m {\n    impl A {\n        #[inline]\n        pub fn f(&self) -> u8 {\n            $0\n        }\n    }\n}",
                &["mod m {", "impl A {", "pub fn f(&self) -> u8 {"],
            ),
            (
                "rust",
                "trait T {\n    fn f() {\n        let x = 1;$0\n    }\n}",
                &["trait T {", "fn f() {"],
            ),
            ("rust", "fn f() {}\n$0", &[]),
            ("rust", "fn f() {}$0", &[]),
            ("rust", "fn f() {\n    let x = ;\n    $0\n}", &["fn f() {"]),
            (
                "python",
                "class A:\n    @staticmethod\n    def f():\n        x = 1\n        $0",
                &["class A:", "def f():"],
            ),
            (
                "python",
                "class A:\n    def f(self):\n        x = 1\n    $0",
                &["class A:"],
            ),
            (
                "python",
                "class A:\n    def f(self):\n        x = 1\n$0",
                &[],
            ),
            ("python", "def f():\n    return x$0", &["def f():"]),
            (
                "javascript",
                "class A {\n  m() {\n    it('x', () => {\n      $0\n    });\n  }\n}",
                &["class A {", "m() {", "it('x', () => {"],
            ),
            (
                "typescript",
                "interface I {\n  a: number;$0\n}",
                &["interface I {"],
            ),
            (
                "typescript",
                "namespace N {\n  function f(): void {\n    $0\n  }\n}",
                &["namespace N {", "function f(): void {"],
            ),
            (
                "tsx",
                "export function App() {\n  return <div>$0</div>;\n}",
                &["export function App() {"],
            ),
            (
                "go",
                "package main\n\nfunc (s *S) Run() error {\n\t$0\n}\n",
                &["func (s *S) Run() error {"],
            ),
            ("c", "int main(void) {\n    $0\n}", &["int main(void) {"]),
            (
                "cpp",
                "namespace n {\nclass A {\n  void f() {\n    $0\n  }\n};\n}",
                &["namespace n {", "class A {", "void f() {"],
            ),
            (
                "java",
                "class A {\n    @Override\n    public void f() {\n        $0\n    }\n}",
                &["class A {", "public void f() {"],
            ),
            (
                "ruby",
                "module M\n  class A\n    def f(x)\n      $0\n    end\n  end\nend\n",
                &["module M", "class A", "def f(x)"],
            ),
            (
                "ruby",
                "describe \"x\" do\n  it \"works\" do\n    $0\n  end\nend\n",
                &["describe \"x\" do", "it \"works\" do"],
            ),
            (
                "php",
                "<?php\nclass A {\n    public function m() {\n        $0\n    }\n}\n",
                &["class A {", "public function m() {"],
            ),
            (
                "lua",
                "function M.run(x)\n  local g = function()\n    $0\n  end\nend\n",
                &["function M.run(x)", "local g = function()"],
            ),
            ("bash", "foo() {\n  $0\n}\n", &["foo() {"]),
            ("plaintext", "fn f() {\n    $0\n}", &[]),
        ];
        for (lang, src, chain) in cases {
            let ctx = run(lang, src, ContextBudget::default(), MultilinePolicy::Auto);
            assert_eq!(ctx.scope_chain, *chain, "{lang}: {src:?}");
        }
    }

    /// A body of `n` filler lines, to push the cursor past a small window.
    fn filler(line: &str, n: usize) -> String {
        line.repeat(n)
    }

    #[test]
    fn imports_outside_the_window_only() {
        let small = ContextBudget {
            prefix_tokens: 25,
            suffix_tokens: 10,
        }; // 100 chars
        let rust_body = filler("fn g() {}\n", 20);
        let py_body = filler("x = 1\n", 30);
        let js_body = filler("let a = 1;\n", 20);
        let go_body = filler("var a = 1\n", 20);
        let c_body = filler("int a;\n", 30);
        let java_body = filler("  int a;\n", 20);
        let rb_body = filler("x = 1\n", 30);
        let php_body = filler("$a = 1;\n", 30);
        let lua_body = filler("local a = 1\n", 20);
        let sh_body = filler("a=1\n", 40);
        let cases: Vec<(&str, String, ContextBudget, Vec<&str>)> = vec![
            (
                "rust",
                format!(
                    "use std::io;\nextern crate foo;\nuse a::{{\n    b,\n    c,\n}};\n{rust_body}fn f() {{\n    $0\n}}\n"
                ),
                small,
                vec![
                    "use std::io;",
                    "extern crate foo;",
                    "use a::{\n    b,\n    c,\n};",
                ],
            ),
            // Everything inside the window: nothing repeated.
            (
                "rust",
                "use std::io;\nfn f() {\n    $0\n}\n".to_string(),
                ContextBudget::default(),
                vec![],
            ),
            (
                "python",
                format!(
                    "from __future__ import annotations\nimport os\nfrom a import (b,\n    c)\n{py_body}def f():\n    $0\n"
                ),
                small,
                vec![
                    "from __future__ import annotations",
                    "import os",
                    "from a import (b,\n    c)",
                ],
            ),
            // An unclosed bracket at the cursor can make the parser wrap the top of the file
            // in an ERROR node (reduced from CPython's http/server.py, where typing `read(`
            // did it): the imports stay, so that typing `(` does not change the prompt's
            // first bytes (and the model server's cache, and the typed-ahead key).
            (
                "python",
                "import urllib.parse\n                data = self.rfile.read($0\n                data = None\n        handler_class = SimpleHTTPRequestHandler\n    # ensure dual-stack is not disabled; ref #38907\n    class DualStackServer(ThreadingHTTPServer):\n    test(\n    )\n".to_string(),
                ContextBudget {
                    prefix_tokens: 5,
                    suffix_tokens: 5,
                },
                vec!["import urllib.parse"],
            ),
            (
                "javascript",
                format!(
                    "import fs from 'fs';\nimport {{ a }} from './a.js';\n{js_body}function f() {{\n  $0\n}}\n"
                ),
                small,
                vec!["import fs from 'fs';", "import { a } from './a.js';"],
            ),
            (
                "typescript",
                format!("import type {{ T }} from './t';\n{js_body}$0"),
                small,
                vec!["import type { T } from './t';"],
            ),
            (
                "tsx",
                format!("import React from 'react';\n{js_body}$0"),
                small,
                vec!["import React from 'react';"],
            ),
            (
                "go",
                format!(
                    "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\n{go_body}func f() {{\n\t$0\n}}\n"
                ),
                small,
                vec!["package main", "import (\n\t\"fmt\"\n\t\"os\"\n)"],
            ),
            (
                "c",
                format!(
                    "#ifndef A_H\n#define A_H\n#include <stdio.h>\n#include \"a.h\"\n{c_body}$0\n#endif\n"
                ),
                small,
                vec!["#include <stdio.h>", "#include \"a.h\""],
            ),
            (
                "cpp",
                format!("#include <vector>\nusing namespace std;\n{c_body}$0"),
                small,
                vec!["#include <vector>", "using namespace std;"],
            ),
            (
                "java",
                format!("package a.b;\nimport java.util.List;\nclass A {{\n{java_body}  $0\n}}\n"),
                small,
                vec!["package a.b;", "import java.util.List;"],
            ),
            (
                "ruby",
                format!("require \"json\"\nrequire_relative \"a\"\n{rb_body}def f\n  $0\nend\n"),
                small,
                vec!["require \"json\"", "require_relative \"a\""],
            ),
            (
                "php",
                format!(
                    "<?php\nnamespace App;\nuse Foo\\Bar;\nrequire_once \"x.php\";\n{php_body}$0"
                ),
                small,
                vec!["namespace App;", "use Foo\\Bar;", "require_once \"x.php\";"],
            ),
            (
                "lua",
                format!("local json = require(\"json\")\nrequire(\"x\")\n{lua_body}$0"),
                small,
                vec!["local json = require(\"json\")", "require(\"x\")"],
            ),
            (
                "bash",
                format!("#!/bin/bash\nsource ./lib.sh\n. \"$DIR/x.sh\"\n./run.sh\n{sh_body}$0"),
                small,
                vec!["source ./lib.sh", ". \"$DIR/x.sh\""],
            ),
            (
                "plaintext",
                format!("import os\n{py_body}$0"),
                small,
                vec![],
            ),
        ];
        for (lang, src, budget, imports) in cases {
            let ctx = run(lang, &src, budget, MultilinePolicy::Auto);
            assert_eq!(
                ctx.imports, imports,
                "{lang}: {src:?}\nprefix_start={}",
                ctx.prefix_start
            );
            for import in &ctx.imports {
                assert!(
                    !ctx.prefix.contains(import.as_str()),
                    "{lang}: {import:?} is also in the window"
                );
            }
        }
    }

    #[test]
    fn imports_are_capped() {
        let mut src: String = (0..200)
            .map(|i| format!("use crate::m{i}::Thing{i};\n"))
            .collect();
        src.push_str(&filler("fn g() {}\n", 50));
        src.push_str("fn f() {\n    $0\n}\n");
        let ctx = run(
            "rust",
            &src,
            ContextBudget {
                prefix_tokens: 50,
                suffix_tokens: 10,
            },
            MultilinePolicy::Auto,
        );
        assert!(!ctx.imports.is_empty());
        assert!(ctx.imports.len() <= MAX_IMPORT_LINES);
        assert!(ctx.imports.iter().map(|i| i.len()).sum::<usize>() <= MAX_IMPORT_CHARS);
        assert_eq!(ctx.imports[0], "use crate::m0::Thing0;");
    }

    /// True when `at` is a line start where an item or statement (a named child of the root
    /// or of a block — braced, or a Python `block`) begins, after the line's indentation.
    fn is_syntax_boundary(text: &str, tree: &Tree, at: usize) -> bool {
        if at != 0 && text.as_bytes()[at - 1] != b'\n' {
            return false;
        }
        let code = at + text[at..].len() - text[at..].trim_start().len();
        let Some(leaf) = tree.root_node().descendant_for_byte_range(code, code) else {
            return false;
        };
        ancestors(leaf).any(|n| {
            n.start_byte() == code
                && n.is_named()
                && n.parent().is_some_and(|p| {
                    p.parent().is_none() || is_block(&Language::Python.spec().blocks, p)
                })
        })
    }

    /// Types `typed` one char at a time at the `$0` of `src`, re-parsing each time; returns
    /// every context.
    fn type_at(
        lang: Language,
        src: &str,
        typed: &str,
        budget: ContextBudget,
    ) -> Vec<(String, Option<Tree>, CompletionContext)> {
        let (text, cursor) = fixture(src);
        let mut out = Vec::new();
        for n in 0..=typed.chars().count() {
            let piece: String = typed.chars().take(n).collect();
            let now = format!("{}{}{}", &text[..cursor], piece, &text[cursor..]);
            let tree = parse(lang, &now);
            let ctx = extract(
                &Rope::from_str(&now),
                tree.as_ref(),
                lang,
                cursor + piece.len(),
                budget,
                MultilinePolicy::Auto,
            );
            out.push((now, tree, ctx));
        }
        out
    }

    fn changes(runs: &[(String, Option<Tree>, CompletionContext)]) -> usize {
        runs.windows(2)
            .filter(|w| w[0].2.prefix_start != w[1].2.prefix_start)
            .count()
    }

    fn assert_within_budget(
        runs: &[(String, Option<Tree>, CompletionContext)],
        budget_chars: usize,
    ) {
        for (text, _, ctx) in runs {
            let first_line = text[ctx.prefix_start..]
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .count()
                + 1;
            let prefix_chars = ctx.prefix.chars().count();
            assert!(
                prefix_chars <= budget_chars + first_line,
                "prefix {prefix_chars} > {budget_chars} + {first_line}"
            );
            assert_eq!(
                &text[ctx.prefix_start..ctx.prefix_start + ctx.prefix.len()],
                ctx.prefix
            );
        }
    }

    #[test]
    fn prefix_start_is_stable_while_typing() {
        // Debug-built tree-sitter parses slowly: a small budget keeps the file (and the test)
        // small while the cursor still lies far past the budget.
        let mut src: String = (0..100)
            .map(|i| format!("fn f{i}(x: i32) -> i32 {{\n    let y = x + {i};\n    y * 2\n}}\n\n"))
            .collect();
        let at = src.find("fn f80(").unwrap_or(0);
        let at = at + src[at..].find("    y * 2").unwrap_or(0);
        src.insert_str(at, "    $0\n");
        let budget = ContextBudget {
            prefix_tokens: 512,
            suffix_tokens: 75,
        };
        let runs = type_at(
            Language::Rust,
            &src,
            "let total = helper(x, y) + 1;",
            budget,
        );
        assert!(
            changes(&runs) <= 1,
            "prefix_start moved {} times",
            changes(&runs)
        );
        for (text, tree, ctx) in &runs {
            let tree = tree.as_ref().expect("rust parses");
            assert!(
                is_syntax_boundary(text, tree, ctx.prefix_start),
                "not a boundary: {:?}",
                &text[ctx.prefix_start..][..40]
            );
            assert!(
                ctx.prefix.len() > budget.prefix_tokens * CHARS_PER_TOKEN / 2,
                "window wasted"
            );
        }
        assert_within_budget(&runs, budget.prefix_tokens * CHARS_PER_TOKEN);
    }

    #[test]
    fn prefix_start_is_stable_inside_one_long_function() {
        // One item larger than the budget: the window starts at a statement inside it. The
        // statements are short: a start that followed each one would move every few keys.
        let body: String = (0..250).map(|i| format!("    v{i} += 1;\n")).collect();
        let src = format!("use std::io;\n\nfn big() {{\n{body}    $0\n}}\n");
        let budget = ContextBudget {
            prefix_tokens: 512,
            suffix_tokens: 75,
        };
        for (lang, src) in [(Language::Rust, src.clone()), (Language::PlainText, src)] {
            let runs = type_at(lang, &src, "let answer = v1 + v2 + v3 + v4;", budget);
            assert!(
                changes(&runs) <= 1,
                "{lang:?}: prefix_start moved {} times",
                changes(&runs)
            );
            for (text, tree, ctx) in &runs {
                if let Some(tree) = tree {
                    assert!(is_syntax_boundary(text, tree, ctx.prefix_start));
                    assert_eq!(ctx.imports, ["use std::io;"]);
                    assert_eq!(ctx.scope_chain, ["fn big() {"]);
                } else {
                    assert!(
                        ctx.prefix_start == 0 || text.as_bytes()[ctx.prefix_start - 1] == b'\n'
                    );
                }
            }
            assert_within_budget(&runs, budget.prefix_tokens * CHARS_PER_TOKEN);
        }
    }

    #[test]
    fn python_window_starts_at_a_definition() {
        let src: String = (0..80)
            .map(|i| format!("def f{i}(x):\n    y = x + {i}\n    return y\n\n\n"))
            .collect();
        let src = format!("{src}def g():\n    $0\n");
        let budget = ContextBudget {
            prefix_tokens: 512,
            suffix_tokens: 75,
        };
        let runs = type_at(Language::Python, &src, "return compute(1, 2)", budget);
        assert!(changes(&runs) <= 1);
        for (text, tree, ctx) in &runs {
            assert!(
                text[ctx.prefix_start..].starts_with("def f"),
                "{:?}",
                &text[ctx.prefix_start..][..20]
            );
            assert!(is_syntax_boundary(
                text,
                tree.as_ref().expect("parses"),
                ctx.prefix_start
            ));
        }
    }

    #[test]
    fn suffix_ends_at_a_line_end() {
        let rest = filler("    let a = 1;\n", 100);
        let src = format!("fn f() {{\n    let x$0 = 2;\n{rest}}}\n");
        let ctx = run(
            "rust",
            &src,
            ContextBudget::default(),
            MultilinePolicy::Auto,
        );
        assert!(ctx.suffix.starts_with(" = 2;\n"));
        assert!(ctx.suffix.ends_with('\n'));
        assert!(ctx.suffix.chars().count() <= 75 * CHARS_PER_TOKEN);
        // A tiny budget still keeps the rest of the cursor's line.
        let tiny = ContextBudget {
            prefix_tokens: 1,
            suffix_tokens: 1,
        };
        let ctx = run(
            "rust",
            "let s = \"a long line after the cursor\"$0; // and more\nnext();\n",
            tiny,
            MultilinePolicy::Auto,
        );
        assert_eq!(ctx.suffix, "; // and more\n");
        // CRLF: the line break travels whole.
        let ctx = run("rust", "a$0b\r\nc\r\n", tiny, MultilinePolicy::Auto);
        assert_eq!(ctx.suffix, "b\r\n");
    }

    #[test]
    fn windows_on_crlf_and_multibyte_text() {
        let budget = ContextBudget {
            prefix_tokens: 25,
            suffix_tokens: 10,
        }; // 100 / 40 chars
        let body: String = (0..40)
            .map(|i| format!("    let s{i} = \"🦀 世界 {i}\";\r\n"))
            .collect();
        let src = format!("fn f() {{\r\n{body}    $0\r\n{body}}}\r\n");
        for lang in [Language::Rust, Language::PlainText] {
            let ctx = run(lang.name(), &src, budget, MultilinePolicy::Auto);
            let (text, cursor) = fixture(&src);
            assert!(
                text[..ctx.prefix_start].ends_with("\r\n"),
                "{lang:?}: not a line start"
            );
            assert_eq!(text[ctx.prefix_start..cursor], ctx.prefix);
            let first_line = ctx.prefix.lines().next().unwrap_or("").chars().count() + 2;
            assert!(
                ctx.prefix.chars().count() <= 100 + first_line,
                "{lang:?}: {:?}",
                ctx.prefix
            );
            assert!(ctx.suffix.ends_with("\r\n"), "{lang:?}: {:?}", ctx.suffix);
            assert!(
                ctx.suffix.chars().count() <= 40,
                "{lang:?}: {:?}",
                ctx.suffix
            );
            assert_eq!(
                (ctx.shape.multiline, ctx.shape.block_indent),
                (true, Some(4))
            );
        }
    }

    #[test]
    fn long_single_line_is_cut_on_a_char_boundary() {
        // Minified code: one line far longer than the budget. The window starts mid-line (at
        // a node start, or a char boundary without a tree) and the suffix is capped.
        let line = "a(\"é🦀\");".repeat(3000);
        let src = format!("{line}$0{line}");
        let budget = ContextBudget {
            prefix_tokens: 250,
            suffix_tokens: 75,
        };
        for lang in [Language::JavaScript, Language::PlainText] {
            let ctx = run(lang.name(), &src, budget, MultilinePolicy::Auto);
            let (text, _) = fixture(&src);
            assert!(text.is_char_boundary(ctx.prefix_start));
            assert!(ctx.prefix_start > 0);
            assert!(
                ctx.prefix.chars().count() <= 1000,
                "{lang:?}: {}",
                ctx.prefix.len()
            );
            assert!(
                ctx.prefix.chars().count() >= 500,
                "{lang:?}: {}",
                ctx.prefix.len()
            );
            assert!(ctx.suffix.chars().count() <= MAX_LINE_CHARS);
            assert!(ctx.shape.line_before.chars().count() <= MAX_LINE_CHARS);
            assert!(ctx.shape.line_after.chars().count() <= MAX_LINE_CHARS);
            assert!(!ctx.shape.multiline);
        }
    }

    #[test]
    fn edge_cursors() {
        for lang in ALL {
            for src in [
                "$0",
                "$0fn f() {}",
                "fn f() {}\n$0",
                "x$0",
                "\r\n$0\r\n",
                "🦀$0世界",
            ] {
                let ctx = run(
                    lang.name(),
                    src,
                    ContextBudget::default(),
                    MultilinePolicy::Auto,
                );
                let (text, cursor) = fixture(src);
                assert_eq!(ctx.prefix, &text[..cursor]);
                assert_eq!(ctx.prefix_start, 0);
                assert_eq!(ctx.suffix, &text[cursor..]);
            }
        }
    }

    #[test]
    fn never_panics() {
        let texts = [
            "",
            "\n",
            "\r\n\r\n",
            "\r\r\r",
            "fn f() {\r\n    let s = \"🦀 世界\";\r\n    // コメント\r\n}\r\n",
            "def f(:\n\t\"\"\"unterminated\n    )))}}}\n",
            "}}}{{{ ((( \"' ` /* ",
            "function (((( { { { => => class",
            "#include <\n#if\nint main( {",
            "package\nimport (\nfunc {",
            "class { void f( { \"\\",
            "emoji 👩‍👩‍👧‍👦 and CJK 漢字 and \u{feff}bom",
        ];
        let budgets = [
            ContextBudget::default(),
            ContextBudget {
                prefix_tokens: 0,
                suffix_tokens: 0,
            },
            ContextBudget {
                prefix_tokens: 1,
                suffix_tokens: 1,
            },
            ContextBudget {
                prefix_tokens: usize::MAX / 64,
                suffix_tokens: usize::MAX / 64,
            },
        ];
        let policies = [
            MultilinePolicy::Auto,
            MultilinePolicy::Always,
            MultilinePolicy::Never,
        ];
        for (l, &lang) in ALL.iter().enumerate() {
            for text in texts {
                let rope = Rope::from_str(text);
                let tree = parse(lang, text);
                // A stale tree: parsed from another text.
                let stale = parse(lang, texts[4]);
                // Every third cursor per language (all of them across languages), also past
                // the end and inside UTF-8 chars, rotating through the budgets, policies and
                // trees (current, stale, none) to stay fast.
                let cursors = (0..=text.len() + 2)
                    .skip(l % 3)
                    .step_by(3)
                    .chain([usize::MAX]);
                for (i, cursor) in cursors.enumerate() {
                    let t = [tree.as_ref(), stale.as_ref(), None][i % 3];
                    let ctx = extract(&rope, t, lang, cursor, budgets[i % 4], policies[i % 3]);
                    assert!(ctx.prefix_start <= text.len());
                    assert!(text[ctx.prefix_start..].starts_with(&ctx.prefix));
                    assert!(text.contains(&ctx.suffix));
                }
            }
        }
    }
}
