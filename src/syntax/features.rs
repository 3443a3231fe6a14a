//! What tree-sitter tells about the target of a request — the code a code action works on,
//! or the spot of a completion: the target itself (enclosing function/method/class, else
//! the file), its size, branchiness, nesting, calls to security-sensitive APIs and syntax
//! errors. These features drive routing. Pure and synchronous.
//!
//! STUB — to be completed.

use std::ops::Range;

use ropey::Rope;
use tree_sitter::Tree;

use super::Language;
use super::context::CHARS_PER_TOKEN;

/// The code a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Byte range in the document.
    pub range: Range<usize>,
    /// The tree-sitter node kind (`function_item`, `class_definition`, …), `"selection"` for
    /// a user selection, or `"file"`.
    pub kind: String,
    /// The function/class name, when it has one.
    pub name: Option<String>,
}

/// A call to an API whose misuse is a classic vulnerability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SensitiveKind {
    /// Running programs or shell commands (exec, system, subprocess, Command::new …).
    Exec,
    /// Evaluating code from data (eval, exec of strings, Function(), pickle-like loaders excluded).
    Eval,
    /// SQL built from strings (format/concatenation into execute/query).
    Sql,
    /// Cryptography (hashing passwords, ciphers, random for keys …).
    Crypto,
    /// Deserialisation of untrusted data (pickle, yaml.load, ObjectInputStream, serde from input …).
    Deserialize,
    /// File paths built from input (open/read/write with a computed path).
    PathFromInput,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveCall {
    pub kind: SensitiveKind,
    /// Zero-based line in the document.
    pub line: u32,
    /// The call's source text, trimmed to one line.
    pub text: String,
}

/// The routing features of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    pub language: Language,
    pub node_kind: String,
    pub lines: u32,
    /// Estimated tokens of the target's text.
    pub tokens: u32,
    /// Branch points: if/else-if, loops, match/switch arms, catch, ternaries, `&&`/`||`.
    pub branches: u32,
    /// Deepest nesting of blocks/branches inside the target.
    pub max_nesting: u32,
    pub sensitive_calls: Vec<SensitiveCall>,
    /// ERROR or MISSING nodes inside the target.
    pub syntax_errors: u32,
}

impl Features {
    /// The features of a completion spot when no rule needs the target's: just the language.
    pub fn at_cursor(language: Language) -> Features {
        Features {
            language,
            node_kind: "cursor".into(),
            lines: 0,
            tokens: 0,
            branches: 0,
            max_nesting: 0,
            sensitive_calls: Vec::new(),
            syntax_errors: 0,
        }
    }

    /// Cyclomatic-style complexity: branch points + 1.
    pub fn complexity(&self) -> u32 {
        self.branches + 1
    }

    pub fn is_sensitive(&self) -> bool {
        !self.sensitive_calls.is_empty()
    }
}

/// The target at `cursor`: the innermost enclosing function/method/class (for a small file
/// with none, the whole file).
pub fn enclosing_target(
    rope: &Rope,
    tree: Option<&Tree>,
    language: Language,
    cursor: usize,
) -> Target {
    let _ = (tree, language, cursor);
    Target {
        range: 0..rope.len_bytes(),
        kind: "file".into(),
        name: None,
    }
}

/// Computes the features of `range` in the document.
pub fn features(rope: &Rope, tree: Option<&Tree>, language: Language, target: &Target) -> Features {
    let _ = tree;
    let range = target.range.start.min(rope.len_bytes())..target.range.end.min(rope.len_bytes());
    let lines = (rope.byte_to_line(range.end) - rope.byte_to_line(range.start) + 1) as u32;
    Features {
        language,
        node_kind: target.kind.clone(),
        lines,
        tokens: ((range.end - range.start) / CHARS_PER_TOKEN) as u32,
        branches: 0,
        max_nesting: 0,
        sensitive_calls: Vec::new(),
        syntax_errors: 0,
    }
}
