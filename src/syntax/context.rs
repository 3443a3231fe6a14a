//! The completion context: the prefix/suffix windows cut around a cursor, the imports and
//! enclosing scopes, and the shape of the wanted suggestion (single- or multi-line, where it
//! must stop). Pure and synchronous; reads a rope and an optional tree-sitter tree.
//!
//! STUB — to be replaced by the syntax-aware implementation (see `extract`).

use ropey::Rope;
use tree_sitter::Tree;

use super::Language;

/// How many characters of document text one token stands for, when estimating.
pub const CHARS_PER_TOKEN: usize = 4;

/// Size limits for the windows, in estimated tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextBudget {
    pub prefix_tokens: usize,
    pub suffix_tokens: usize,
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
    /// Text on the cursor's line before the cursor.
    pub line_before: String,
    /// Text on the cursor's line after the cursor (without the line break).
    pub line_after: String,
    /// For a multi-line suggestion: the indentation width (in columns, a tab counting as 4)
    /// of the enclosing block's body. A suggested line indented less than this leaves the
    /// block, so the suggestion stops before it.
    pub block_indent: Option<usize>,
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

/// Cuts the completion context around `cursor` (a byte offset into `rope`, already clamped
/// to a char boundary by the caller).
pub fn extract(
    rope: &Rope,
    tree: Option<&Tree>,
    language: Language,
    cursor: usize,
    budget: ContextBudget,
    policy: MultilinePolicy,
) -> CompletionContext {
    let _ = tree;
    let cursor_char = rope.byte_to_char(cursor);
    let start_char = cursor_char.saturating_sub(budget.prefix_tokens * CHARS_PER_TOKEN);
    let end_char = (cursor_char + budget.suffix_tokens * CHARS_PER_TOKEN).min(rope.len_chars());
    let line = rope.char_to_line(cursor_char);
    let line_start = rope.line_to_char(line);
    let line_after: String = rope
        .line(line)
        .chars()
        .skip(cursor_char - line_start)
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    let line_before = rope.slice(line_start..cursor_char).to_string();
    let multiline = match policy {
        MultilinePolicy::Always => true,
        MultilinePolicy::Never => false,
        MultilinePolicy::Auto => line_before.trim().is_empty() && line_after.trim().is_empty(),
    };
    CompletionContext {
        language,
        imports: Vec::new(),
        prefix_start: rope.char_to_byte(start_char),
        prefix: rope.slice(start_char..cursor_char).to_string(),
        suffix: rope.slice(cursor_char..end_char).to_string(),
        scope_chain: Vec::new(),
        shape: SuggestionShape {
            multiline,
            line_before,
            line_after,
            block_indent: None,
        },
    }
}
