//! Checking a rewritten target before it is applied, and the unified diff of the change.
//! Pure: the document and the new code in, the new document (or why not) out.
//!
//! A rewrite is applied only when the new document parses no worse than the old one and the
//! new code is a well-formed stand-in for the target: when the target was one item (a
//! function, a class…), the new code must be exactly one item of a comparable kind, with no
//! syntax error inside, that ends where it should (not merged into the code around it).
//! Comments and attributes around the item are allowed. A comment that stands for code left
//! out (`// ... rest unchanged`), which the target did not have, is rejected in every
//! language: it parses, and applying it would delete code. Plain text has no grammar to
//! check against: the rewrite is accepted with a note.

use std::ops::Range;

use similar::TextDiff;
use tree_sitter::{Node, Tree};

use crate::position::clamp_str_range;
use crate::syntax::{Language, parse};

/// An accepted rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refactored {
    /// The whole document after the change.
    pub document: String,
    /// The text that replaces `range` in the original document: the new code re-indented to
    /// the target's indentation, with the document's line breaks.
    pub replacement: String,
    /// The target's byte range in the original document (clamped to it).
    pub range: Range<usize>,
    /// What the user should know although the rewrite was accepted.
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefactorError {
    #[error("the model returned no code")]
    EmptyCode,
    #[error(
        "the rewritten code has syntax errors (first at line {line}): the document would have \
         {after} syntax error(s), it has {before}"
    )]
    NewSyntaxErrors {
        before: usize,
        after: usize,
        line: usize,
    },
    #[error(
        "the rewritten code does not end where the {kind} ended: at line {line} it runs into \
         the code around it (an unbalanced bracket or quote?)"
    )]
    RunsIntoSurroundingCode { kind: String, line: usize },
    #[error("the rewrite should be one {expected}, but it is {count} items: {found}")]
    NotOneItem {
        expected: String,
        count: usize,
        found: String,
    },
    #[error("the rewritten {kind} has a syntax error at line {line}")]
    ErrorInReplacement { kind: String, line: usize },
    #[error("the rewrite turned the {from} into a {to}")]
    KindChanged { from: String, to: String },
    #[error(
        "the rewrite leaves code out (line {line}: {text:?}); applying it would delete that \
         code"
    )]
    ElidedCode { line: usize, text: String },
}

/// Splices `new_code` into `original_document` in place of `target_range` and checks the
/// result (see the module's doc). `new_code` is re-indented: its shared indentation is
/// removed and the target's line indentation is put before every line after the first.
pub fn validate_refactor(
    language: Language,
    original_document: &str,
    target_range: Range<usize>,
    new_code: &str,
) -> Result<Refactored, RefactorError> {
    let doc = original_document;
    let range = clamp_str_range(doc, target_range);
    let replacement = reindent(doc, range.clone(), new_code)?;
    let document = format!(
        "{}{}{}",
        &doc[..range.start],
        replacement,
        &doc[range.end..]
    );
    if let Some((n, text)) = elision(&replacement, &doc[range.clone()]) {
        let line = doc[..range.start].matches('\n').count() + 1 + n;
        return Err(RefactorError::ElidedCode { line, text });
    }
    let unchanged = replacement == doc[range.clone()];
    let mut refactored = Refactored {
        document,
        replacement,
        range: range.clone(),
        note: unchanged.then(|| "The model returned the code unchanged.".to_string()),
    };
    let (Some(old_tree), Some(new_tree)) =
        (parse(language, doc), parse(language, &refactored.document))
    else {
        refactored.note = Some(
            "Plain text has no grammar: the new code was applied without a syntax check."
                .to_string(),
        );
        return Ok(refactored);
    };
    let new_doc = refactored.document.as_str();
    let old_region = trimmed(doc, range.clone());
    let new_region = trimmed(
        new_doc,
        range.start..range.start + refactored.replacement.len(),
    );
    let line_of = |byte: usize| new_doc[..byte.min(new_doc.len())].matches('\n').count() + 1;

    let before = error_positions(&old_tree);
    let after = error_positions(&new_tree);
    if after.len() > before.len() {
        let first = after
            .iter()
            .find(|b| **b >= new_region.start)
            .or(after.first())
            .copied()
            .unwrap_or(0);
        return Err(RefactorError::NewSyntaxErrors {
            before: before.len(),
            after: after.len(),
            line: line_of(first),
        });
    }

    let old_nodes = region_nodes(old_tree.root_node(), old_region);
    let old_item = match &old_nodes {
        Ok(nodes) => single_item(nodes),
        Err(_) => None,
    };
    let old_kind = old_item.map(|n| n.kind().to_string());
    let kind_name = old_kind.clone().unwrap_or_else(|| "code".to_string());
    let runs_into = |at: usize| RefactorError::RunsIntoSurroundingCode {
        kind: kind_name.clone(),
        line: line_of(at),
    };
    let new_nodes = region_nodes(new_tree.root_node(), new_region.clone()).map_err(runs_into)?;
    if new_nodes.is_empty() {
        // Swallowed whole by a node around it: a comment or a string.
        return Err(runs_into(new_region.start));
    }
    let old_clean = old_nodes
        .as_ref()
        .is_ok_and(|nodes| nodes.iter().all(|n| !n.has_error()));
    if old_clean && let Some(bad) = new_nodes.iter().find(|n| n.has_error()) {
        return Err(RefactorError::ErrorInReplacement {
            kind: kind_name,
            line: line_of(first_error(*bad)),
        });
    }
    let Some(old_item) = old_item.filter(|n| !n.has_error()) else {
        return Ok(refactored);
    };
    let items: Vec<Node> = new_nodes.iter().copied().filter(is_item).collect();
    if items.len() != 1 {
        return Err(RefactorError::NotOneItem {
            expected: old_item.kind().to_string(),
            count: items.len(),
            found: items
                .iter()
                .map(|n| n.kind())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let (from, to) = (effective_kind(old_item), effective_kind(items[0]));
    if from != to && !(group(from).is_some() && group(from) == group(to)) {
        return Err(RefactorError::KindChanged {
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    Ok(refactored)
}

/// The unified diff of `old` → `new` with three lines of context and `--- a/PATH` /
/// `+++ b/PATH` headers (a leading `/` of `path` is dropped); empty when they are equal.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let path = path.trim_start_matches('/');
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

/// The new code as it goes into the document: dedented, then indented like the target's
/// line, with a line break at the end when the target had one, in the document's line
/// breaks.
fn reindent(doc: &str, range: Range<usize>, new_code: &str) -> Result<String, RefactorError> {
    let code = super::dedent(&new_code.replace("\r\n", "\n"));
    if code.trim().is_empty() {
        return Err(RefactorError::EmptyCode);
    }
    let line_start = doc[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let line = &doc[line_start..];
    let base = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
    let lead = &doc[line_start..range.start];
    // The first line goes where the target started: after the indentation when the target
    // starts after it, with what is missing of it when the target starts inside it.
    let first_prefix = base.strip_prefix(lead).unwrap_or_default();
    let mut out = String::with_capacity(code.len() + 64);
    for (i, l) in code.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if !l.is_empty() {
            out.push_str(if i == 0 { first_prefix } else { base });
            out.push_str(l);
        }
    }
    if doc[range].ends_with('\n') {
        out.push('\n');
    }
    let crlf = doc
        .find('\n')
        .is_some_and(|i| i > 0 && doc.as_bytes()[i - 1] == b'\r');
    if crlf {
        out = out.replace('\n', "\r\n");
    }
    Ok(out)
}

/// The first comment line of `replacement` that stands for code left out — dots and words
/// like "unchanged", "existing", "rest of" — and that `original` does not have, with its
/// 0-based line.
fn elision(replacement: &str, original: &str) -> Option<(usize, String)> {
    const MARKERS: &[&str] = &["//", "#", "/*", "*", "--", "<!--"];
    const WORDS: &[&str] = &[
        "unchanged",
        "existing",
        "rest of",
        "remaining",
        "omitted",
        "same as",
        "as before",
        "previous",
        "other ",
    ];
    replacement.lines().enumerate().find_map(|(i, line)| {
        let t = line.trim();
        let body = MARKERS
            .iter()
            .find_map(|m| t.strip_prefix(m))?
            .to_lowercase();
        let dots = body.contains("...") || body.contains('…');
        let elides = dots && WORDS.iter().any(|w| body.contains(w));
        (elides && !original.lines().any(|l| l.trim() == t)).then(|| (i, t.to_string()))
    })
}

/// `range` without the whitespace at its ends.
fn trimmed(doc: &str, range: Range<usize>) -> Range<usize> {
    let text = &doc[range.clone()];
    let start = range.start + (text.len() - text.trim_start().len());
    let end = range.start + text.trim_end().len();
    start..end.max(start)
}

/// Start bytes of the ERROR and MISSING nodes, in order.
fn error_positions(tree: &Tree) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            out.push(node.start_byte());
        }
        if node.has_error() {
            let mut walk = node.walk();
            let children: Vec<Node> = node.children(&mut walk).collect();
            stack.extend(children.into_iter().rev());
        }
    }
    out
}

fn first_error(node: Node) -> usize {
    let tree_errors = {
        let mut stack = vec![node];
        let mut found = None;
        while let Some(n) = stack.pop() {
            if n.is_error() || n.is_missing() {
                found = Some(n.start_byte());
                break;
            }
            let mut walk = n.walk();
            let children: Vec<Node> = n.children(&mut walk).filter(|c| c.has_error()).collect();
            stack.extend(children.into_iter().rev());
        }
        found
    };
    tree_errors.unwrap_or(node.start_byte())
}

/// The top-level nodes of `region`: the nodes inside it whose parent is not, in order.
/// `Err(byte)` when a node crosses one of its ends: the region is not a run of whole nodes.
fn region_nodes(root: Node, region: Range<usize>) -> Result<Vec<Node>, usize> {
    let mut out = Vec::new();
    let mut container = Some(root);
    while let Some(parent) = container.take() {
        let mut walk = parent.walk();
        for child in parent.children(&mut walk) {
            let (s, e) = (child.start_byte(), child.end_byte());
            if e <= region.start || s >= region.end {
                continue;
            }
            if s >= region.start && e <= region.end {
                out.push(child);
            } else if s <= region.start && e >= region.end {
                container = Some(child);
            } else {
                return Err(if s < region.start {
                    region.start
                } else {
                    region.end
                });
            }
        }
    }
    Ok(out)
}

/// The one item a region holds, when it holds exactly one.
fn single_item<'t>(nodes: &[Node<'t>]) -> Option<Node<'t>> {
    let mut items = nodes.iter().copied().filter(is_item);
    let first = items.next()?;
    items.next().is_none().then_some(first)
}

/// A node that counts as an item of the region: named, not a comment or attribute.
fn is_item(node: &Node) -> bool {
    node.is_named()
        && !node.is_extra()
        && !node.kind().contains("comment")
        && !matches!(node.kind(), "attribute_item" | "inner_attribute_item")
}

/// The kind of the definition inside a wrapper (`@decorator def`, `export function`,
/// `template<…> class`).
fn effective_kind<'t>(node: Node<'t>) -> &'t str {
    let inner = match node.kind() {
        "decorated_definition" => node.child_by_field_name("definition"),
        "export_statement" => node.child_by_field_name("declaration"),
        "template_declaration" => node.named_child(node.named_child_count().saturating_sub(1)),
        _ => None,
    };
    inner.map_or(node.kind(), |n| n.kind())
}

/// Kinds that may replace one another: callables, and types.
fn group(kind: &str) -> Option<u8> {
    match kind {
        "function_item"
        | "function_signature_item"
        | "function_definition"
        | "function_declaration"
        | "generator_function_declaration"
        | "method_definition"
        | "method_declaration"
        | "constructor_declaration"
        | "lexical_declaration"
        | "variable_declaration"
        | "arrow_function"
        | "function_expression" => Some(0),
        "struct_item"
        | "enum_item"
        | "union_item"
        | "trait_item"
        | "impl_item"
        | "type_item"
        | "class_definition"
        | "class_declaration"
        | "abstract_class_declaration"
        | "class_specifier"
        | "struct_specifier"
        | "union_specifier"
        | "enum_specifier"
        | "interface_declaration"
        | "enum_declaration"
        | "record_declaration"
        | "type_declaration"
        | "type_alias_declaration" => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the check on a fixture whose target is marked `$0…$0`.
    fn check(
        language: Language,
        fixture: &str,
        new_code: &str,
    ) -> Result<Refactored, RefactorError> {
        let parts: Vec<&str> = fixture.split("$0").collect();
        assert_eq!(parts.len(), 3, "fixture needs two $0 markers");
        let doc = parts.concat();
        let start = parts[0].len();
        validate_refactor(language, &doc, start..start + parts[1].len(), new_code)
    }

    /// Name, language, fixture, the model's code, the new document or part of the error.
    type Case<'a> = (
        &'a str,
        Language,
        &'a str,
        &'a str,
        Result<&'a str, &'a str>,
    );

    #[test]
    fn refactor_table() {
        use Language::*;
        let cases: &[Case] = &[
            // Rust
            (
                "rust: valid",
                Rust,
                "use a;\n\n$0fn f(x: u32) -> u32 {\n    x + 1\n}$0\n\nfn g() {}\n",
                "fn f(x: u32) -> u32 {\n    x.saturating_add(1)\n}",
                Ok("use a;\n\nfn f(x: u32) -> u32 {\n    x.saturating_add(1)\n}\n\nfn g() {}\n"),
            ),
            (
                "rust: indentation restored in an impl",
                Rust,
                "impl A {\n    $0fn f(&self) -> u32 {\n        1\n    }$0\n}\n",
                "fn f(&self) -> u32 {\n    let one = 1;\n    one\n}",
                Ok(
                    "impl A {\n    fn f(&self) -> u32 {\n        let one = 1;\n        one\n    }\n}\n",
                ),
            ),
            (
                "rust: model kept the indentation",
                Rust,
                "impl A {\n    $0fn f(&self) -> u32 {\n        1\n    }$0\n}\n",
                "    fn f(&self) -> u32 {\n        2\n    }\n",
                Ok("impl A {\n    fn f(&self) -> u32 {\n        2\n    }\n}\n"),
            ),
            (
                "rust: attribute and doc comment allowed",
                Rust,
                "$0fn f() {}$0\n",
                "/// Does nothing.\n#[inline]\nfn f() {}",
                Ok("/// Does nothing.\n#[inline]\nfn f() {}\n"),
            ),
            (
                "rust: syntax error introduced",
                Rust,
                "$0fn f() -> u32 {\n    1\n}$0\n",
                "fn f() -> u32 {\n    let x = ;\n    x\n}",
                Err("the rewritten code has syntax errors (first at line 2)"),
            ),
            (
                "rust: unbalanced brace swallows what follows",
                Rust,
                "$0fn f() {\n    g();\n}$0\n\nfn h() {}\n}\n",
                "fn f() {\n    if x {\n        g();\n}",
                Err("does not end where the function_item ended"),
            ),
            (
                "rust: two functions instead of one",
                Rust,
                "$0fn f() {\n    a();\n    b();\n}$0\n",
                "fn f() {\n    a_then_b();\n}\n\nfn a_then_b() {\n    a();\n    b();\n}",
                Err("should be one function_item, but it is 2 items: function_item, function_item"),
            ),
            (
                "rust: a function turned into a struct",
                Rust,
                "$0fn f() {}$0\n",
                "struct F;",
                Err("turned the function_item into a struct_item"),
            ),
            // Python
            (
                "python: method re-indented",
                Python,
                "class A:\n    $0def f(self):\n        return 1$0\n\n    def g(self):\n        pass\n",
                "def f(self):\n    value = 1\n    return value",
                Ok(
                    "class A:\n    def f(self):\n        value = 1\n        return value\n\n    def g(self):\n        pass\n",
                ),
            ),
            (
                "python: decorator added is still a function",
                Python,
                "$0def f(x):\n    return x$0\n",
                "@cache\ndef f(x):\n    return x",
                Ok("@cache\ndef f(x):\n    return x\n"),
            ),
            (
                "python: syntax error",
                Python,
                "$0def f(x):\n    return x$0\n",
                "def f(x)\n    return x",
                Err("syntax errors"),
            ),
            (
                "python: two functions",
                Python,
                "$0def f(x):\n    return x$0\n",
                "def f(x):\n    return g(x)\n\ndef g(x):\n    return x",
                Err("should be one function_definition, but it is 2 items"),
            ),
            // JavaScript / TypeScript
            (
                "js: valid",
                JavaScript,
                "$0function f(a) {\n  return a + 1;\n}$0\n",
                "function f(a) {\n  const b = a + 1;\n  return b;\n}",
                Ok("function f(a) {\n  const b = a + 1;\n  return b;\n}\n"),
            ),
            (
                "js: declaration to arrow const is still a function",
                JavaScript,
                "$0function f(a) {\n  return a + 1;\n}$0\nf(1);\n",
                "const f = (a) => a + 1;",
                Ok("const f = (a) => a + 1;\nf(1);\n"),
            ),
            (
                "ts: method in a class, indentation restored",
                TypeScript,
                "class A {\n  $0f(x: number): number {\n    return x;\n  }$0\n}\n",
                "f(x: number): number {\n  return x * 2;\n}",
                Ok("class A {\n  f(x: number): number {\n    return x * 2;\n  }\n}\n"),
            ),
            (
                "ts: type error is not a syntax error, a missing paren is",
                TypeScript,
                "$0function f(x: number): number {\n  return x;\n}$0\n",
                "function f(x: number: number {\n  return x;\n}",
                Err("syntax errors"),
            ),
            (
                "tsx: two functions",
                Tsx,
                "$0function A() {\n  return <div />;\n}$0\n",
                "function A() {\n  return <B />;\n}\nfunction B() {\n  return <div />;\n}",
                Err("but it is 2 items"),
            ),
            // Go
            (
                "go: valid with tabs",
                Go,
                "package main\n\n$0func f(x int) int {\n\treturn x + 1\n}$0\n",
                "func f(x int) int {\n\ty := x + 1\n\treturn y\n}",
                Ok("package main\n\nfunc f(x int) int {\n\ty := x + 1\n\treturn y\n}\n"),
            ),
            (
                "go: syntax error",
                Go,
                "package main\n\n$0func f() {\n}$0\n",
                "func f() {\n\tif {\n}",
                Err("syntax errors"),
            ),
            // C / C++
            (
                "c: valid",
                C,
                "#include <stdio.h>\n\n$0int add(int a, int b) {\n  return a + b;\n}$0\n",
                "int add(int a, int b) {\n  int sum = a + b;\n  return sum;\n}",
                Ok(
                    "#include <stdio.h>\n\nint add(int a, int b) {\n  int sum = a + b;\n  return sum;\n}\n",
                ),
            ),
            (
                "c: missing semicolon",
                C,
                "$0int f(void) {\n  return 0;\n}$0\n",
                "int f(void) {\n  return 0\n}",
                Err("syntax errors"),
            ),
            (
                "cpp: method in a namespace re-indented",
                Cpp,
                "namespace n {\n  $0int f() {\n    return 1;\n  }$0\n}\n",
                "int f() {\n  return 2;\n}",
                Ok("namespace n {\n  int f() {\n    return 2;\n  }\n}\n"),
            ),
            (
                "cpp: two functions",
                Cpp,
                "$0int f() { return 1; }$0\n",
                "int g() { return 1; }\nint f() { return g(); }",
                Err("should be one function_definition, but it is 2 items"),
            ),
            // Java
            (
                "java: method re-indented",
                Java,
                "class A {\n    $0int f() {\n        return 1;\n    }$0\n}\n",
                "int f() {\n    return 2;\n}",
                Ok("class A {\n    int f() {\n        return 2;\n    }\n}\n"),
            ),
            (
                "java: annotation added",
                Java,
                "class A {\n    $0int f() {\n        return 1;\n    }$0\n}\n",
                "@Override\nint f() {\n    return 2;\n}",
                Ok("class A {\n    @Override\n    int f() {\n        return 2;\n    }\n}\n"),
            ),
            (
                "java: syntax error",
                Java,
                "class A {\n    $0int f() {\n        return 1;\n    }$0\n}\n",
                "int f() {\n    return 2\n}",
                Err("syntax errors"),
            ),
            (
                "java: two methods",
                Java,
                "class A {\n    $0int f() {\n        return 1;\n    }$0\n}\n",
                "int f() {\n    return g();\n}\n\nint g() {\n    return 1;\n}",
                Err("should be one method_declaration, but it is 2 items"),
            ),
            // Code left out
            (
                "rust: elided code",
                Rust,
                "impl A {\n    fn g() {}\n\n    $0fn f() {\n        a();\n        b();\n    }$0\n}\n",
                "fn f() {\n    // ... rest of the code unchanged ...\n    b();\n}",
                Err("leaves code out (line 5: \"// ... rest of the code unchanged ...\")"),
            ),
            (
                "python: elided code",
                Python,
                "$0def f():\n    a()\n    b()$0\n",
                "def f():\n    # … existing code …\n    c()",
                Err("leaves code out (line 2"),
            ),
            (
                "java: elided methods",
                Java,
                "$0class A {\n    void f() {}\n    void g() {}\n}$0\n",
                "class A {\n    /* ... other methods ... */\n    void h() {}\n}",
                Err("leaves code out"),
            ),
            (
                "an elision comment the target already had is kept",
                Go,
                "package p\n\n$0func f() {\n\t// ... existing behaviour kept for callers ...\n\tg()\n}$0\n",
                "func f() {\n\t// ... existing behaviour kept for callers ...\n\th()\n}",
                Ok(
                    "package p\n\nfunc f() {\n\t// ... existing behaviour kept for callers ...\n\th()\n}\n",
                ),
            ),
            (
                "dots without an elision word are code comments",
                C,
                "$0int f(void) {\n  return 0;\n}$0\n",
                "int f(void) {\n  /* wait... really */\n  return 1;\n}",
                Ok("int f(void) {\n  /* wait... really */\n  return 1;\n}\n"),
            ),
            // Selections and odd cases
            (
                "statements selection may become several statements",
                Rust,
                "fn f() {\n    $0a();\n    b();$0\n}\n",
                "a();\nb();\nc();",
                Ok("fn f() {\n    a();\n    b();\n    c();\n}\n"),
            ),
            (
                "whole-line selection keeps its indentation and line break",
                Python,
                "def f():\n$0    x = 1\n    return x\n$0",
                "x = 2\nreturn x\n",
                Ok("def f():\n    x = 2\n    return x\n"),
            ),
            (
                "empty code",
                Rust,
                "$0fn f() {}$0\n",
                "  \n\n",
                Err("the model returned no code"),
            ),
            (
                "an already broken file: no new errors is enough",
                Rust,
                "fn broken( {\n\n$0fn f() {}$0\n",
                "fn f() {\n    g();\n}",
                Ok("fn broken( {\n\nfn f() {\n    g();\n}\n"),
            ),
        ];
        for (name, language, fixture, new_code, want) in cases {
            let got = check(*language, fixture, new_code);
            match (want, &got) {
                (Ok(doc), Ok(got)) => assert_eq!(got.document, *doc, "{name}"),
                (Err(msg), Err(e)) => {
                    assert!(e.to_string().contains(msg), "{name}: {e} lacks {msg:?}")
                }
                _ => panic!("{name}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn replacement_and_range_for_the_edit() {
        let got = check(
            Language::Rust,
            "impl A {\n    $0fn f() {}$0\n}\n",
            "fn f() {\n    g();\n}",
        )
        .unwrap();
        assert_eq!(got.replacement, "fn f() {\n        g();\n    }");
        assert_eq!(got.range, 13..22);
        assert_eq!(got.note, None);
    }

    #[test]
    fn crlf_documents_get_crlf_code() {
        let got = check(
            Language::Rust,
            "mod m {\r\n    $0fn f() {}$0\r\n}\r\n",
            "fn f() {\n    g();\n}",
        )
        .unwrap();
        assert_eq!(
            got.document,
            "mod m {\r\n    fn f() {\r\n        g();\r\n    }\r\n}\r\n"
        );
    }

    #[test]
    fn notes() {
        let got = check(Language::Rust, "$0fn f() {}$0\n", "fn f() {}").unwrap();
        assert_eq!(
            got.note.as_deref(),
            Some("The model returned the code unchanged.")
        );
        let got = check(Language::PlainText, "a\n$0b c$0\nd\n", "B (\n  C").unwrap();
        assert_eq!(got.document, "a\nB (\n  C\nd\n");
        assert!(got.note.unwrap().contains("without a syntax check"));
    }

    #[test]
    fn out_of_range_targets_are_clamped() {
        let cases = [
            (10..usize::MAX, "fn f() {}\nfn g() {}"),
            (usize::MAX..usize::MAX, "fn f() {}\nfn g() {}"),
        ];
        for (range, want) in cases {
            let got = validate_refactor(Language::Rust, "fn f() {}\n", range.clone(), "fn g() {}");
            assert_eq!(got.map(|r| r.document).as_deref(), Ok(want), "{range:?}");
        }
        // Inside a multi-byte character: rounded down to its start.
        let doc = "// é\nfn f() {}\n";
        let got = validate_refactor(Language::Rust, doc, 4..doc.len() - 1, "x").unwrap_err();
        assert!(
            matches!(got, RefactorError::RunsIntoSurroundingCode { line: 1, .. }),
            "{got}"
        );
    }

    #[test]
    fn unified_diff_table() {
        let cases = [
            ("src/a.rs", "a\nb\nc\n", "a\nb\nc\n", ""),
            (
                "src/a.rs",
                "a\nb\nc\n",
                "a\nB\nc\n",
                "--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
            ),
            (
                "/abs/x.py",
                "x\n",
                "x\ny\n",
                "--- a/abs/x.py\n+++ b/abs/x.py\n@@ -1 +1,2 @@\n x\n+y\n",
            ),
            (
                "n.txt",
                "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n",
                "1\n2\n3\n4\n5\nsix\n7\n8\n9\n10\n",
                "--- a/n.txt\n+++ b/n.txt\n@@ -3,7 +3,7 @@\n 3\n 4\n 5\n-6\n+six\n 7\n 8\n 9\n",
            ),
            (
                "e.rs",
                "a",
                "b",
                "--- a/e.rs\n+++ b/e.rs\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n",
            ),
        ];
        for (path, old, new, want) in cases {
            assert_eq!(
                unified_diff(path, old, new),
                want,
                "{path}: {old:?} -> {new:?}"
            );
        }
    }
}
