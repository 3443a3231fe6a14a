//! The context an action's prompt carries besides the target's code: the file's imports, the
//! header lines of same-file functions and types that the target refers to by name, and the
//! lines where the target may be cut when it is too long. Pure; reads a rope and a tree.
//!
//! Cost: one walk of the tree that enters only the target, the nodes that contain it, and
//! containers of items (impl/class bodies, namespaces, export statements, preprocessor
//! blocks) — never the bodies of other functions. Offsets of a possibly stale tree are
//! clamped to the rope. What a definition, an import or a header is comes from the
//! language's spec (`syntax/lang/`).

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;

use ropey::Rope;
use tree_sitter::{Node, Tree};

use crate::position::clamp_range;
use crate::syntax::context::{MAX_IMPORT_CHARS, MAX_IMPORT_LINES, is_import};
use crate::syntax::lang::{Item, LanguageSpec, Name};
use crate::syntax::{Language, MAX_HEADER_CHARS, is_attribute_line};

/// Caps on the signatures: how many, and how many characters in all.
pub const MAX_SIGNATURES: usize = 40;
pub const MAX_SIGNATURE_CHARS: usize = 4000;
/// How far into a definition its header is looked for.
const MAX_HEADER_SCAN_BYTES: usize = 1000;
/// Caps on the identifiers collected inside the target.
const MAX_IDENTIFIERS: usize = 8192;
const MAX_IDENTIFIER_BYTES: usize = 128;

/// What [`gather`] finds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gathered {
    /// Import/use/include lines of the file (outside the target), in file order, capped.
    pub imports: Vec<String>,
    /// Headers of same-file functions/types named inside the target, in file order, one
    /// line each, without duplicates; the target itself and what contains it excluded.
    pub signatures: Vec<String>,
    /// Lines (0-based, relative to the target's first line) where a statement or item of
    /// the target starts on its own line, after the first line.
    pub cut_lines: Vec<u32>,
}

/// Collects the imports, the signatures the target refers to and the cut lines, in one walk
/// of `tree`. Plain text (no tree) has none of them.
pub fn gather(
    rope: &Rope,
    tree: Option<&Tree>,
    language: Language,
    target: Range<usize>,
) -> Gathered {
    let Some(tree) = tree else {
        return Gathered::default();
    };
    let target = clamp_range(rope, target);
    let mut walk = Walk {
        rope,
        spec: language.spec(),
        target_first_line: rope.byte_to_line(target.start),
        target,
        imports: Vec::new(),
        import_lines: 0,
        import_chars: 0,
        imports_full: false,
        definitions: Vec::new(),
        identifiers: HashSet::new(),
        cut_lines: BTreeSet::new(),
    };
    walk.run(tree.root_node());
    let signatures = walk.signatures();
    Gathered {
        imports: walk.imports,
        signatures,
        cut_lines: walk.cut_lines.into_iter().collect(),
    }
}

/// A definition seen on the walk; its header is read only if the target names it.
struct Definition<'t> {
    name: String,
    node: Node<'t>,
    body: Option<Node<'t>>,
}

struct Walk<'a, 't> {
    rope: &'a Rope,
    spec: &'static LanguageSpec,
    target: Range<usize>,
    target_first_line: usize,
    imports: Vec<String>,
    import_lines: usize,
    import_chars: usize,
    imports_full: bool,
    definitions: Vec<Definition<'t>>,
    identifiers: HashSet<String>,
    cut_lines: BTreeSet<u32>,
}

impl<'t> Walk<'_, 't> {
    /// Depth-first over the tree with a cursor; `visit` says whether to enter a node.
    fn run(&mut self, root: Node<'t>) {
        let mut cursor = root.walk();
        loop {
            let enter = self.visit(cursor.node());
            if enter && cursor.goto_first_child() {
                continue;
            }
            loop {
                if cursor.goto_next_sibling() {
                    break;
                }
                if !cursor.goto_parent() {
                    return;
                }
            }
        }
    }

    fn visit(&mut self, node: Node<'t>) -> bool {
        let (start, end) = self.clamped(node);
        let t = &self.target;
        if start >= t.start && end <= t.end && node.parent().is_some() {
            self.inside_target(node, start);
            return true;
        }
        if start < t.end && end > t.start || node.parent().is_none() {
            // Contains (or crosses) the target: its other children may be siblings worth
            // knowing, e.g. the other methods of the target's class.
            return true;
        }
        if is_import(self.spec, self.rope, node) {
            self.push_import(start, end);
            return false;
        }
        if let Some(definition) = self.definition(node) {
            self.definitions.push(definition);
        }
        // Members of types, and what holders, wrappers and namespaces hold, are definitions
        // too; function bodies are not walked.
        matches!(
            self.spec.item(node.kind()),
            Some(Item::Container | Item::Holder | Item::Wrapper | Item::Namespace)
        )
    }

    fn inside_target(&mut self, node: Node, start: usize) {
        if node.child_count() == 0 && is_identifier(node.kind()) {
            let end = self.clamped(node).1;
            if end - start <= MAX_IDENTIFIER_BYTES && self.identifiers.len() < MAX_IDENTIFIERS {
                self.identifiers.insert(self.text(start, end));
            }
        }
        if !node.is_named() || start == self.target.start {
            return;
        }
        let starts_statement = node.parent().is_some_and(|p| {
            let (ps, pe) = self.clamped(p);
            is_statement_list(self.spec, p) || (ps <= self.target.start && pe >= self.target.end)
        });
        let line = self.rope.byte_to_line(start);
        let line_start = self.rope.line_to_byte(line);
        let on_own_line = self.text(line_start, start).trim().is_empty();
        if starts_statement && on_own_line && line > self.target_first_line {
            self.cut_lines
                .insert((line - self.target_first_line) as u32);
        }
    }

    fn push_import(&mut self, start: usize, end: usize) {
        if self.imports_full {
            return;
        }
        let text = self.text(start, end);
        let text = text.trim_end();
        let lines = text.lines().count().max(1);
        let chars = text.chars().count();
        if self.import_lines + lines > MAX_IMPORT_LINES
            || self.import_chars + chars > MAX_IMPORT_CHARS
        {
            self.imports_full = true;
            return;
        }
        self.import_lines += lines;
        self.import_chars += chars;
        self.imports.push(text.to_string());
    }

    /// The name and body of a function or type definition, or of an anonymous function
    /// assigned to a name (`const f = (…) => {…}`).
    fn definition(&self, node: Node<'t>) -> Option<Definition<'t>> {
        let kind = node.kind();
        let (name_node, body) = if let Some(def) = self.spec.def(kind) {
            if !matches!(def.item, Item::Function | Item::Container | Item::Signature) {
                return None;
            }
            let body = node.child_by_field_name("body");
            match def.name {
                Name::Field => (last_name(node.child_by_field_name("name")?), body),
                // An impl names no identifier of its own; its members are walked.
                Name::Impl => return None,
                Name::Spec => {
                    // Go: `type Point struct {…}`.
                    let mut walk = node.walk();
                    let spec = node
                        .named_children(&mut walk)
                        .find(|c| matches!(c.kind(), "type_spec" | "type_alias"))?;
                    (spec.child_by_field_name("name")?, None)
                }
                Name::Declarator | Name::FunctionDeclarator => {
                    let declarator = node.child_by_field_name("declarator")?;
                    if def.name == Name::FunctionDeclarator && !has_function_declarator(declarator)
                    {
                        return None;
                    }
                    (declarator_name(declarator)?, body)
                }
            }
        } else {
            self.assigned_function(node)?
        };
        let (ns, ne) = self.clamped(name_node);
        let name = self.text(ns, ne);
        (!name.is_empty()).then_some(Definition { name, node, body })
    }

    /// `const f = (…) => {…}`, `var C = class {…}`: the declarator's name, and the body of
    /// the function (none for a class).
    fn assigned_function(&self, node: Node<'t>) -> Option<(Node<'t>, Option<Node<'t>>)> {
        let kind = node.kind();
        let assigned = self.spec.assigned.iter().find(|a| a.outer == kind)?;
        let is_anonymous = |v: &Node| self.spec.item(v.kind()) == Some(Item::Anonymous);
        let holder = match assigned.declarator {
            Some(declarator) => {
                let mut walk = node.walk();
                node.named_children(&mut walk)
                    .filter(|d| d.kind() == declarator)
                    .find(|d| {
                        d.child_by_field_name("value")
                            .is_some_and(|v| is_anonymous(&v))
                    })?
            }
            None => node,
        };
        let value = holder
            .child_by_field_name("value")
            .or_else(|| holder.child_by_field_name("right"))
            .filter(is_anonymous)?;
        let name = holder.child_by_field_name(assigned.name_field)?;
        Some((name, value.child_by_field_name("body")))
    }

    /// The definition's header on one line: its text up to the body (or its first line when
    /// the body is not known), cut before `{`, attribute/annotation lines skipped,
    /// whitespace collapsed, capped. The name is appended when the header does not show it
    /// (`typedef struct … Point`).
    fn header(&self, node: Node, body: Option<Node>, name: &str) -> String {
        let (start, end) = self.clamped(node);
        let stop = body
            .map(|b| self.clamped(b).0)
            .filter(|b| *b > start)
            .unwrap_or(end)
            .min(start + MAX_HEADER_SCAN_BYTES);
        let stop = self
            .rope
            .char_to_byte(self.rope.byte_to_char(stop.min(end)));
        let text = self.text(start, stop);
        let mut lines: Vec<&str> = text.lines().collect();
        while lines.len() > 1 && (lines[0].trim().is_empty() || is_attribute_line(lines[0])) {
            lines.remove(0);
        }
        if body.is_none() {
            lines.truncate(1);
        }
        let mut header = lines.join(" ");
        // In a braced language a header ends at its `{`; elsewhere a `{` is a dict or a hash.
        let braced = !self.spec.blocks.by_indent && self.spec.blocks.closers.is_empty();
        if braced && let Some(brace) = header.find('{') {
            header.truncate(brace);
        }
        let mut header = header
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("( ", "(")
            .replace(", )", ")")
            .replace(" )", ")");
        if !header.is_empty() && !header.contains(name) {
            header.push_str(" … ");
            header.push_str(name);
        }
        if header.chars().count() > MAX_HEADER_CHARS {
            header = header.chars().take(MAX_HEADER_CHARS).collect();
            header.push('…');
        }
        header
    }

    fn signatures(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut chars = 0;
        for d in &self.definitions {
            if !self.identifiers.contains(&d.name) {
                continue;
            }
            let header = self.header(d.node, d.body, &d.name);
            if header.is_empty() || out.contains(&header) {
                continue;
            }
            chars += header.chars().count();
            if out.len() == MAX_SIGNATURES || chars > MAX_SIGNATURE_CHARS {
                break;
            }
            out.push(header);
        }
        out
    }

    fn clamped(&self, node: Node) -> (usize, usize) {
        let len = self.rope.len_bytes();
        let end = node.end_byte().min(len);
        (node.start_byte().min(end), end)
    }

    fn text(&self, start: usize, end: usize) -> String {
        let floor = |b: usize| self.rope.char_to_byte(self.rope.byte_to_char(b));
        self.rope.byte_slice(floor(start)..floor(end)).to_string()
    }
}

/// A leaf that names something: `identifier` and its kin, PHP's `name`, Ruby's `constant`
/// (a class), a shell `word` (a function called as a command).
fn is_identifier(kind: &str) -> bool {
    kind.ends_with("identifier") || matches!(kind, "name" | "constant" | "word")
}

/// True when a C/C++ declarator declares a function (possibly behind pointers/references).
fn has_function_declarator(mut node: Node) -> bool {
    for _ in 0..16 {
        if node.kind() == "function_declarator" {
            return true;
        }
        match node.child_by_field_name("declarator") {
            Some(inner) => node = inner,
            None => return false,
        }
    }
    false
}

/// The identifier at the bottom of a C/C++ declarator chain (`*f(int)`, `Foo::bar()`).
fn declarator_name(mut node: Node) -> Option<Node> {
    for _ in 0..16 {
        match node.kind() {
            "identifier" | "field_identifier" | "type_identifier" | "destructor_name"
            | "operator_name" => return Some(node),
            "qualified_identifier" => node = node.child_by_field_name("name")?,
            _ => node = node.child_by_field_name("declarator")?,
        }
    }
    None
}

/// The last name of a dotted or qualified name (`M.run` → `run`, `A::B` → `B`): what a
/// call inside the target names.
fn last_name(mut node: Node) -> Node {
    for _ in 0..8 {
        let count = node.named_child_count();
        match count.checked_sub(1).and_then(|last| node.named_child(last)) {
            Some(child) => node = child,
            None => break,
        }
    }
    node
}

/// Nodes whose children are statements or items, one after the other.
fn is_statement_list(spec: &LanguageSpec, node: Node) -> bool {
    let kind = node.kind();
    node.parent().is_none()
        || spec.blocks.kinds.contains(&kind)
        || kind.contains("block")
        || kind.ends_with("body")
        || matches!(
            kind,
            "compound_statement"
                | "declaration_list"
                | "field_declaration_list"
                | "enum_body_declarations"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gathers for the target marked `$0…$0` in `fixture`.
    fn check(language: Language, fixture: &str) -> Gathered {
        let parts: Vec<&str> = fixture.split("$0").collect();
        assert_eq!(parts.len(), 3, "fixture needs two $0 markers");
        let doc = parts.concat();
        let start = parts[0].len();
        let end = start + parts[1].len();
        let rope = Rope::from_str(&doc);
        let tree = crate::syntax::parse(language, &doc);
        gather(&rope, tree.as_ref(), language, start..end)
    }

    #[test]
    fn signatures_of_names_used_in_the_target() {
        let cases: &[(Language, &str, &[&str], &[&str])] = &[
            (
                Language::Rust,
                "use std::fmt;\nuse crate::db::{Pool, Row};\n\n/// Doc.\n#[inline]\npub fn helper(\n    a: u32,\n    b: u32,\n) -> u32 {\n    a + b\n}\n\nfn unused() {}\n\npub struct Point { x: u32 }\n\nimpl Point {\n    pub fn norm(&self) -> u32 { self.x }\n}\n\n$0fn target(p: &Point) -> u32 {\n    helper(p.norm(), 1)\n}$0\n",
                &["use std::fmt;", "use crate::db::{Pool, Row};"],
                &[
                    "pub fn helper(a: u32, b: u32) -> u32",
                    "pub struct Point",
                    "pub fn norm(&self) -> u32",
                ],
            ),
            (
                Language::Python,
                "import os\nfrom sys import argv\n\n@cache\ndef load(path: str) -> bytes:\n    return b''\n\nclass Store(Base):\n    def get(self, k):\n        return 1\n\n    $0def run(self):\n        return load(self.get('k'))$0\n",
                &["import os", "from sys import argv"],
                &["def load(path: str) -> bytes:", "def get(self, k):"],
            ),
            (
                Language::JavaScript,
                "import { a } from './a.js';\nconst add = (x, y) => { return x + y; };\nexport function mul(x, y) { return x * y; }\nfunction other() {}\n$0function target() {\n  return add(1, mul(2, 3));\n}$0\n",
                &["import { a } from './a.js';"],
                &["const add = (x, y) =>", "function mul(x, y)"],
            ),
            (
                Language::TypeScript,
                "interface Shape { area(): number }\ntype Id = string;\nclass Sq implements Shape { area(): number { return 1; } }\n$0function total(s: Shape[], id: Id): number {\n  return s.length;\n}$0\n",
                &[],
                &["interface Shape", "type Id = string;"],
            ),
            (
                Language::Go,
                "package main\n\nimport \"fmt\"\n\ntype Point struct {\n\tX int\n}\n\nfunc (p Point) Norm() int { return p.X }\n\nfunc helper() {}\n\n$0func run(p Point) {\n\tfmt.Println(p.Norm())\n}$0\n",
                &["package main", "import \"fmt\""],
                &["type Point struct", "func (p Point) Norm() int"],
            ),
            (
                Language::C,
                "#include <stdio.h>\n#include \"db.h\"\n\ntypedef struct {\n  int x;\n} point;\n\nstatic int *lookup(const char *key);\n\nint add(int a, int b) { return a + b; }\n\n$0int run(point p) {\n  return add(p.x, *lookup(\"k\"));\n}$0\n",
                &["#include <stdio.h>", "#include \"db.h\""],
                &[
                    "typedef struct … point",
                    "static int *lookup(const char *key);",
                    "int add(int a, int b)",
                ],
            ),
            (
                Language::Cpp,
                "#include <vector>\nnamespace geo {\nclass Shape {\n public:\n  double area() const;\n};\ndouble Shape::area() const { return 0; }\n}\n$0double total(const geo::Shape& s) {\n  return s.area();\n}$0\n",
                &["#include <vector>"],
                &[
                    "class Shape",
                    "double area() const;",
                    "double Shape::area() const",
                ],
            ),
            (
                Language::Java,
                "package a.b;\nimport java.util.List;\nclass Repo {\n  @Override\n  public String find(int id) { return null; }\n  private int count() { return 0; }\n  $0public String run() {\n    return find(count());\n  }$0\n}\n",
                &["package a.b;", "import java.util.List;"],
                &["public String find(int id)", "private int count()"],
            ),
            (
                Language::Ruby,
                "require \"json\"\n\nclass Store\n  def get(k)\n    1\n  end\n\n  $0def run\n    get(:k) + Helper.new.x\n  end$0\nend\n\nclass Helper\nend\n\ndef unused(x)\n  x\nend\n",
                &["require \"json\""],
                &["def get(k)", "class Helper"],
            ),
            (
                Language::Php,
                "<?php\nuse Foo\\Bar;\n\nfunction helper($x) { return $x; }\n\nclass Repo {\n    private function count(): int { return 0; }\n    $0public function run() {\n        return helper($this->count());\n    }$0\n}\n",
                &["use Foo\\Bar;"],
                &["function helper($x)", "private function count(): int"],
            ),
            (
                Language::Lua,
                "local json = require(\"json\")\n\nlocal function helper(a)\n  return a\nend\n\nfunction M.get(k)\n  return k\nend\n\n$0function M.run()\n  return helper(M.get(1))\nend$0\n",
                &["local json = require(\"json\")"],
                &["local function helper(a)", "function M.get(k)"],
            ),
            (
                Language::Bash,
                "#!/bin/bash\nsource ./lib.sh\n\nhelper() {\n  echo hi\n}\n\n$0run() {\n  helper \"$1\"\n}$0\n",
                &["source ./lib.sh"],
                &["helper()"],
            ),
        ];
        for (language, fixture, imports, signatures) in cases {
            let got = check(*language, fixture);
            assert_eq!(got.imports, *imports, "{language:?} imports");
            assert_eq!(got.signatures, *signatures, "{language:?} signatures");
        }
    }

    #[test]
    fn the_target_and_its_containers_are_not_signatures() {
        // Recursion names the target itself; the enclosing class is named by `Counter()`.
        let got = check(
            Language::Python,
            "class Counter:\n    $0def count(self, n):\n        return count(n - 1) + Counter()$0\n",
        );
        assert_eq!(got.signatures, Vec::<String>::new());
        // The whole file as the target: nothing lies outside it.
        let got = check(Language::Rust, "$0fn a() { b() }\nfn b() {}\n$0");
        assert!(got.signatures.is_empty(), "{:?}", got.signatures);
    }

    #[test]
    fn cut_lines_are_statement_starts() {
        let got = check(
            Language::Rust,
            "$0fn f() {\n    let a = call(\n        1,\n        2,\n    );\n    if a {\n        g();\n    }\n}$0\n",
        );
        assert_eq!(got.cut_lines, [1, 5, 6]);
        let got = check(
            Language::Python,
            "$0def f():\n    x = [\n        1,\n    ]\n    return x$0\n",
        );
        assert_eq!(got.cut_lines, [1, 4]);
    }

    #[test]
    fn plain_text_gathers_nothing() {
        let rope = Rope::from_str("hello\nworld\n");
        assert_eq!(
            gather(&rope, None, Language::PlainText, 0..5),
            Gathered::default()
        );
    }

    #[test]
    fn stale_ranges_are_clamped() {
        let doc = "use a;\nfn f() {}\n";
        let rope = Rope::from_str(doc);
        let tree = crate::syntax::parse(Language::Rust, doc);
        let got = gather(&rope, tree.as_ref(), Language::Rust, 7..usize::MAX);
        assert_eq!(got.imports, ["use a;"]);
    }
}
