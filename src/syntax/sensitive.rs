//! Which calls are security-sensitive: each language's rule tables (in its file under
//! `lang/`) matched against call nodes, and the few syntactic checks the rules need (is this
//! argument a constant string? is it SQL built from strings?), read from the language's
//! description of its strings. Used by the feature walk in `features.rs`, once per call
//! node.
//!
//! Invariants:
//! - Recognition is by the callee as written (`os.system`, `Command::new`, `x.executeQuery`),
//!   not by types: a method merely named `execute` on an unrelated object whose argument is
//!   built from strings is flagged too. Cheap and predictable beats clever here: the result
//!   routes a request to a bigger model; it is not a vulnerability report.
//! - Cheap: the callee is copied (at most `MAX_CALLEE_BYTES`, whitespace dropped) into a
//!   buffer the caller reuses; argument checks run only for calls whose callee matched.
//! - No data flow: `q = f"… {x}"; cur.execute(q)` is not flagged as SQL (only an argument
//!   built in place is), and imports under another name (`import subprocess as sp`) are
//!   not followed.
//! - Never panics on stale trees: node ranges are clamped to the rope and char boundaries.
//!
//! To recognise another API, add one line to its language's table; `Callee` says how the
//! callee is matched and `Args` what the arguments must look like.

use ropey::Rope;
use tree_sitter::Node;

use super::Language;
use super::lang::{Args, ArgumentsAt, CallShape, Callee, CalleeAt, Rule, SensitiveKind, Strings};
use crate::position::for_each_chunk;

use Callee::{Exact, Method, New, Path, Prefix};

/// At most this many bytes of a callee are kept (its tail): enough for any pattern, and
/// bounded for long builder chains whose callee spans the whole chain.
pub const MAX_CALLEE_BYTES: usize = 160;
/// Bound on the recursion of the argument checks.
const MAX_ARG_DEPTH: usize = 6;

/// Matches call nodes against a language's rules. Holds the callee buffer, reused across
/// calls so that the walk allocates nothing per call.
pub struct Matcher<'r> {
    rope: &'r Rope,
    tables: &'static [&'static [Rule]],
    strings: &'static Strings,
    callee: String,
}

impl<'r> Matcher<'r> {
    pub fn new(rope: &'r Rope, language: Language) -> Matcher<'r> {
        let spec = language.spec();
        Matcher {
            rope,
            tables: spec.sensitive,
            strings: &spec.strings,
            callee: String::with_capacity(MAX_CALLEE_BYTES + 8),
        }
    }

    /// The kind of sensitive call `node` (of shape `shape`) is, if any.
    pub fn classify(&mut self, node: Node, shape: CallShape) -> Option<SensitiveKind> {
        let callee_range = match shape.callee {
            CalleeAt::Field(field) | CalleeAt::Macro(field) => {
                node.child_by_field_name(field)?.byte_range()
            }
            CalleeAt::UpTo(field) => node.start_byte()..node.child_by_field_name(field)?.end_byte(),
            CalleeAt::FirstToken => node.child(0)?.byte_range(),
        };
        let args = match shape.arguments {
            ArgumentsAt::Field(field) => node.child_by_field_name(field).map(|l| (l, 0)),
            ArgumentsAt::Rest => Some((node, 1)),
            ArgumentsAt::None => None,
        };
        let truncated = self.load_callee(callee_range);
        if matches!(shape.callee, CalleeAt::Macro(_)) {
            self.callee.push('!');
        }
        let callee = CalleeText::new(&self.callee, truncated, shape.is_new);
        let tables = self.tables;
        let hit = tables
            .iter()
            .flat_map(|table| table.iter())
            .filter(|rule| callee.matches(rule.callee))
            .find(|rule| self.args_match(rule.args, args))?;
        Some(hit.kind)
    }

    /// Copies the callee's text (its last `MAX_CALLEE_BYTES` bytes, whitespace dropped) into
    /// the buffer; true when it was cut.
    fn load_callee(&mut self, range: std::ops::Range<usize>) -> bool {
        self.callee.clear();
        let truncated = range.end.saturating_sub(range.start) > MAX_CALLEE_BYTES;
        let start = if truncated {
            range.end - MAX_CALLEE_BYTES
        } else {
            range.start
        };
        for_each_chunk(self.rope, start..range.end, |piece| {
            self.callee
                .extend(piece.chars().filter(|c| !c.is_whitespace()));
        });
        truncated
    }

    /// `list` is the node holding the arguments, and how many of its named children come
    /// before them (a shell command's name).
    fn args_match(&self, args: Args, list: Option<(Node, usize)>) -> bool {
        let nth = |index: usize| list.and_then(|(l, skip)| argument(l, skip + index));
        match args {
            Args::Any => true,
            Args::BuiltAt(index) => nth(index).is_some_and(|a| self.is_built_string(a, 0)),
            Args::AnyBuilt => list.is_some_and(|(l, skip)| {
                let mut cursor = l.walk();
                l.named_children(&mut cursor)
                    .skip(skip)
                    .any(|a| self.is_built_string(a, 0))
            }),
            Args::FirstNotConstant => nth(0).is_some_and(|a| !self.is_constant(a, 0)),
            Args::FirstIsString => nth(0).is_some_and(|a| self.is_string_like(a, 0)),
            Args::NoSafeLoader => list.is_none_or(|(l, _)| {
                let mut cursor = l.walk();
                let safe = l
                    .named_children(&mut cursor)
                    .any(|a| self.text(a).contains("SafeLoader"));
                !safe
            }),
        }
    }

    /// An expression that builds a string from parts: interpolation, concatenation with a
    /// string, or a formatting call.
    fn is_built_string(&self, node: Node, depth: usize) -> bool {
        if depth > MAX_ARG_DEPTH {
            return false;
        }
        let inner = |n: Option<Node>| n.is_some_and(|n| self.is_built_string(n, depth + 1));
        let kind = node.kind();
        // Interpolated strings: f-strings, template literals, `"#{x}"`, `"$x"`.
        if self.strings.literals.contains(&kind) && kind != "concatenated_string" {
            return has_child_kind(node, self.strings.interpolations);
        }
        match kind {
            // Adjacent literals (`"a" f"{b}"`), a shell word glued to an expansion (`$d/*`).
            "concatenated_string" | "concatenation" => {
                let mut cursor = node.walk();
                let parts: Vec<Node> = node.named_children(&mut cursor).collect();
                parts.into_iter().any(|p| {
                    self.strings.interpolations.contains(&p.kind())
                        || self.is_built_string(p, depth + 1)
                })
            }
            _ if kind.starts_with("binary") => {
                let op = node
                    .child_by_field_name("operator")
                    .map(|o| o.kind())
                    .unwrap_or("");
                let (left, right) = (
                    node.child_by_field_name("left"),
                    node.child_by_field_name("right"),
                );
                let stringy =
                    |n: Option<Node>| n.is_some_and(|n| self.is_string_like(n, depth + 1));
                let constant = |n: Option<Node>| n.is_some_and(|n| self.is_constant(n, depth + 1));
                match op {
                    // `"SELECT " + "1"` is still a constant.
                    _ if self.strings.concat.contains(&op) => {
                        (stringy(left) || stringy(right)) && !(constant(left) && constant(right))
                    }
                    // `"… %s" % x` (Python, Ruby).
                    "%" => stringy(left),
                    _ => false,
                }
            }
            "parenthesized_expression"
            | "reference_expression"
            | "keyword_argument"
            | "argument" => {
                let mut cursor = node.walk();
                let last = node.named_children(&mut cursor).last();
                inner(last)
            }
            "macro_invocation" => node
                .child_by_field_name("macro")
                .is_some_and(|m| matches!(last_segment(&self.text(m)), "format" | "format_args")),
            "call_expression" | "call" | "method_invocation" | "function_call_expression" => {
                self.is_formatting_call(node, depth)
            }
            _ => false,
        }
    }

    /// `fmt.Sprintf(…)`, `String.format(…)`, `std::format(…)`, `x.format(…)`,
    /// `x.formatted(…)`, or a conversion (`.as_str()`, `.c_str()`, `.toString()`…) of a
    /// built string.
    fn is_formatting_call(&self, node: Node, depth: usize) -> bool {
        let (name, receiver) = if node.kind() == "method_invocation" {
            (
                node.child_by_field_name("name"),
                node.child_by_field_name("object"),
            )
        } else {
            let Some(function) = node.child_by_field_name("function") else {
                return false;
            };
            let receiver = ["value", "object", "operand", "argument"]
                .iter()
                .find_map(|f| function.child_by_field_name(f));
            let name = ["field", "attribute", "property", "name"]
                .iter()
                .find_map(|f| function.child_by_field_name(f))
                .or(Some(function));
            (name, receiver)
        };
        let Some(name) = name else { return false };
        let name_text = self.text(name);
        match last_segment(&name_text) {
            // `fmt.Sprintf`, `String.format`, `std::format`, PHP `sprintf`, and
            // `.format(…)`/`.formatted(…)` on anything: in an SQL argument position these are
            // string formatting.
            "Sprintf" | "sprintf" | "format" | "formatted" => true,
            "as_str" | "to_string" | "to_owned" | "into" | "c_str" | "toString" | "data" => {
                receiver.is_some_and(|r| self.is_built_string(r, depth + 1))
            }
            _ => false,
        }
    }

    /// A string literal, or a string built from parts.
    fn is_string_like(&self, node: Node, depth: usize) -> bool {
        self.strings.literals.contains(&node.kind()) || self.is_built_string(node, depth)
    }

    /// A value that cannot come from input: a string or number literal, a SCREAMING_CASE
    /// name, `&"…"`, or a call whose arguments are all constants.
    fn is_constant(&self, node: Node, depth: usize) -> bool {
        if depth > MAX_ARG_DEPTH {
            return false;
        }
        let kind = node.kind();
        if self.strings.literals.contains(&kind) {
            return !has_child_kind(node, self.strings.interpolations);
        }
        match kind {
            "identifier" | "constant" | "name" => is_screaming_case(&self.text(node)),
            // A shell word (`./lib.sh`, `-rf`): literal text; expansions are other nodes.
            "word" | "integer" | "float" | "number" => true,
            "reference_expression" | "parenthesized_expression" | "argument" => {
                let mut cursor = node.walk();
                let last = node.named_children(&mut cursor).last();
                last.is_some_and(|n| self.is_constant(n, depth + 1))
            }
            _ if kind.starts_with("binary") => {
                let part = |f: &str| {
                    node.child_by_field_name(f)
                        .is_some_and(|n| self.is_constant(n, depth + 1))
                };
                node.child_by_field_name("operator")
                    .is_some_and(|o| self.strings.concat.contains(&o.kind()))
                    && part("left")
                    && part("right")
            }
            "call_expression"
            | "call"
            | "method_invocation"
            | "object_creation_expression"
            | "function_call_expression"
            | "function_call" => {
                let Some(list) = node.child_by_field_name("arguments") else {
                    return false;
                };
                let mut cursor = list.walk();
                let args: Vec<Node> = list
                    .named_children(&mut cursor)
                    .filter(|a| !a.kind().contains("comment"))
                    .collect();
                !args.is_empty() && args.into_iter().all(|a| self.is_constant(a, depth + 1))
            }
            _ => kind.ends_with("integer_literal") || kind == "number_literal",
        }
    }

    /// A node's text, clamped, at most `MAX_CALLEE_BYTES` bytes (a short excerpt is all the
    /// checks need).
    fn text(&self, node: Node) -> String {
        let start = node.start_byte();
        let end = node.end_byte().min(start.saturating_add(MAX_CALLEE_BYTES));
        let mut out = String::new();
        for_each_chunk(self.rope, start..end, |piece| out.push_str(piece));
        out
    }
}

/// A callee as written (whitespace removed), with where its segments start, computed once
/// per call and shared by all rules.
pub struct CalleeText<'a> {
    text: &'a str,
    /// Only the tail of a longer callee was kept.
    truncated: bool,
    /// A constructor call.
    is_new: bool,
    /// Byte offsets right after each boundary (`.`, `:`, `>`), at most `MAX_SEGMENTS`.
    segment_starts: [usize; MAX_SEGMENTS],
    segments: usize,
}

const MAX_SEGMENTS: usize = 12;

impl<'a> CalleeText<'a> {
    pub fn new(text: &'a str, truncated: bool, is_new: bool) -> CalleeText<'a> {
        let mut segment_starts = [0; MAX_SEGMENTS];
        let mut segments = 0;
        for (i, b) in text.bytes().enumerate() {
            if is_boundary(b) && segments < MAX_SEGMENTS {
                segment_starts[segments] = i + 1;
                segments += 1;
            }
        }
        CalleeText {
            text,
            truncated,
            is_new,
            segment_starts,
            segments,
        }
    }

    pub fn matches(&self, pattern: Callee) -> bool {
        let text = self.text;
        match pattern {
            Exact(p) => !self.is_new && !self.truncated && text == p,
            Path(p) => !self.is_new && self.ends_at_boundary(p),
            Method(m) => {
                !self.is_new
                    && text.len() > m.len()
                    && text.ends_with(m)
                    && is_boundary(text.as_bytes()[text.len() - m.len() - 1])
            }
            Prefix(p) => {
                !self.is_new
                    && ((!self.truncated && text.starts_with(p))
                        || self.segment_starts[..self.segments]
                            .iter()
                            .any(|&i| text[i..].starts_with(p)))
            }
            New(t) => self.is_new && self.ends_at_boundary(t),
        }
    }

    /// The text is `p`, or ends with `p` right after a boundary.
    fn ends_at_boundary(&self, p: &str) -> bool {
        let text = self.text;
        if !text.ends_with(p) {
            return false;
        }
        if text.len() == p.len() {
            return !self.truncated;
        }
        is_boundary(text.as_bytes()[text.len() - p.len() - 1])
    }
}

fn is_boundary(b: u8) -> bool {
    matches!(b, b'.' | b':' | b'>')
}

/// The argument at `index` of an argument list, comments skipped.
fn argument(list: Node, index: usize) -> Option<Node> {
    let mut cursor = list.walk();
    list.named_children(&mut cursor)
        .filter(|a| !a.kind().contains("comment"))
        .nth(index)
}

fn has_child_kind(node: Node, kinds: &[&str]) -> bool {
    let mut cursor = node.walk();
    node.named_children(&mut cursor)
        .any(|c| kinds.contains(&c.kind()))
}

fn is_screaming_case(name: &str) -> bool {
    name.bytes().any(|b| b.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The part after the last `.`, `::` or `->`.
fn last_segment(path: &str) -> &str {
    path.rsplit(['.', ':', '>']).next().unwrap_or(path).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callee_patterns_respect_boundaries() {
        let cases = [
            (Exact("eval"), "eval", false, false, true),
            (Exact("eval"), "x.eval", false, false, false),
            (Exact("eval"), "eval", true, false, false),
            (
                Path("Command::new"),
                "std::process::Command::new",
                false,
                false,
                true,
            ),
            (Path("Command::new"), "MyCommand::new", false, false, false),
            (Path("yaml.load"), "yaml.safe_load", false, false, false),
            (Path("os.system"), "os.system", false, false, true),
            (Prefix("subprocess."), "subprocess.run", false, false, true),
            (Prefix("fs::"), "std::fs::read", false, false, true),
            (Prefix("fs::"), "xfs::read", false, false, false),
            (
                Prefix("crypto."),
                "window.crypto.getRandomValues",
                false,
                false,
                true,
            ),
            (
                Method("exec"),
                "Runtime.getRuntime().exec",
                false,
                false,
                true,
            ),
            (Method("exec"), "exec", false, false, false),
            (Method("execute"), "cur->execute", false, false, true),
            (New("File"), "java.io.File", false, true, true),
            (New("File"), "File", false, false, false),
            (Path("File"), "File", false, true, false),
        ];
        for (pattern, callee, truncated, is_new, want) in cases {
            assert_eq!(
                CalleeText::new(callee, truncated, is_new).matches(pattern),
                want,
                "{pattern:?} on {callee:?}"
            );
        }
    }

    #[test]
    fn every_language_with_a_grammar_has_rules() {
        for language in Language::ALL {
            let spec = language.spec();
            assert_eq!(
                spec.sensitive.is_empty(),
                spec.grammar.is_none(),
                "{language:?}"
            );
        }
    }
}
