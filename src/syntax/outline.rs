//! A file's outline: the header lines of its definitions (functions, methods, classes,
//! structs, impls, traits …), indented by nesting, in file order. Completion sends the
//! outlines of the user's other open files as context from other files (llama.cpp's
//! `input_extra`), so the model sees the names and signatures it may call.
//!
//! Invariants:
//! - Only containers are descended into (a class body, an impl, a namespace), never a
//!   function body or an expression, and at most `MAX_NODES` nodes are looked at: the cost
//!   is bounded whatever the file.
//! - Stable: the outline depends on the file's definitions only, so it does not change
//!   while the user types inside a function body, and the model server's prompt cache,
//!   which holds it at the start of the prompt, survives.

use ropey::Rope;
use tree_sitter::{Node, Tree};

use super::lang::{Item, LanguageSpec};
use super::{Language, header_line};

/// Cap on the nodes looked at.
const MAX_NODES: usize = 4096;
/// Containers nest at most this deep in an outline.
const MAX_LEVEL: usize = 4;

/// The outline of a parsed document, at most `max_chars` long (whole lines only); empty
/// without a tree or for plain text.
pub fn outline(rope: &Rope, tree: Option<&Tree>, language: Language, max_chars: usize) -> String {
    let spec = language.spec();
    let Some(tree) = tree.filter(|_| spec.grammar.is_some()) else {
        return String::new();
    };
    let mut out = Outline {
        rope,
        spec,
        text: String::new(),
        max_chars,
        seen: 0,
        full: false,
    };
    out.children(tree.root_node(), 0);
    out.text
}

struct Outline<'r> {
    rope: &'r Rope,
    spec: &'static LanguageSpec,
    text: String,
    max_chars: usize,
    seen: usize,
    full: bool,
}

impl Outline<'_> {
    fn children(&mut self, node: Node, level: usize) {
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            if self.full || self.seen >= MAX_NODES {
                return;
            }
            self.seen += 1;
            self.node(child, level);
        }
    }

    fn node(&mut self, node: Node, level: usize) {
        match self.spec.item(node.kind()) {
            Some(Item::Function) => self.header(node, level),
            Some(Item::Container) => {
                self.header(node, level);
                if level < MAX_LEVEL {
                    if let Some(body) = node.child_by_field_name("body") {
                        self.children(body, level + 1);
                    } else {
                        self.children(node, level + 1);
                    }
                }
            }
            // Decorators, `export`, namespaces, `#ifdef`: what they hold is at this level.
            Some(Item::Wrapper | Item::Holder | Item::Namespace) => self.children(node, level),
            _ => {}
        }
    }

    /// The definition's header line (whole, with an `export` before it), indented by `level`.
    fn header(&mut self, node: Node, level: usize) {
        let first = header_line(self.rope, node);
        if first.is_empty() {
            return;
        }
        let needed = level * 4 + first.len() + 1;
        if self.text.len() + needed > self.max_chars {
            self.full = true;
            return;
        }
        for _ in 0..level {
            self.text.push_str("    ");
        }
        self.text.push_str(&first);
        self.text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;
    use crate::syntax::test_support::language;

    fn check(lang: &str, src: &str, want: &str) {
        let lang = language(lang);
        let rope = Rope::from_str(src);
        let tree = parse(lang, src);
        assert_eq!(outline(&rope, tree.as_ref(), lang, 4096), want, "{lang:?}");
    }

    #[test]
    fn outlines_per_language() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str)] = &[
            ("python",
             "import os\n\n@dataclass\nclass Point:\n    x: int\n\n    def norm(self) -> float:\n        def inner():\n            pass\n        return 0.0\n\ndef parse(text: str,\n          strict=False):\n    return Point()\n",
             "class Point:\n    def norm(self) -> float:\ndef parse(text: str,\n"),
            ("rust",
             "use std::io;\n\n#[derive(Debug)]\npub struct Config {\n    path: String,\n}\n\nimpl Config {\n    pub fn load(path: &str) -> io::Result<Config> {\n        todo!()\n    }\n}\n\nmod util {\n    pub fn helper() {}\n}\n",
             "pub struct Config {\nimpl Config {\n    pub fn load(path: &str) -> io::Result<Config> {\npub fn helper() {}\n"),
            ("typescript",
             "export class Store {\n  get(key: string): number { return 1; }\n}\nexport function make(): Store {\n  return new Store();\n}\nconst x = 1;\n",
             "export class Store {\n    get(key: string): number { return 1; }\nexport function make(): Store {\n"),
            ("go",
             "package main\n\ntype Server struct {\n\tport int\n}\n\nfunc (s *Server) Run() error {\n\treturn nil\n}\n",
             "type Server struct {\nfunc (s *Server) Run() error {\n"),
            ("cpp",
             "namespace net {\nclass Socket {\n public:\n  int send(const char* data);\n};\nint open(int port) { return 0; }\n}\n",
             "class Socket {\nint open(int port) { return 0; }\n"),
            ("ruby",
             "require \"json\"\n\nmodule M\n  class Foo < Bar\n    def run(x)\n      x\n    end\n  end\nend\n",
             "class Foo < Bar\n    def run(x)\n"),
            ("php",
             "<?php\nclass A {\n    public function m(): void {}\n}\nfunction f($x) {\n    return $x;\n}\n",
             "class A {\n    public function m(): void {}\nfunction f($x) {\n"),
            ("lua",
             "local M = {}\nfunction M.run(x)\n  return x\nend\nlocal function helper()\nend\nreturn M\n",
             "function M.run(x)\nlocal function helper()\n"),
            ("bash", "foo() {\n  echo\n}\nfunction bar {\n  :\n}\n", "foo() {\nfunction bar {\n"),
            ("plaintext", "def f():\n    pass\n", ""),
        ];
        for &(lang, src, want) in cases {
            check(lang, src, want);
        }
    }

    #[test]
    fn outline_stops_at_the_budget_on_a_whole_line() {
        let src: String = (0..100)
            .map(|i| format!("def f{i}(x):\n    return x\n"))
            .collect();
        let rope = Rope::from_str(&src);
        let tree = parse(Language::Python, &src);
        let got = outline(&rope, tree.as_ref(), Language::Python, 50);
        assert_eq!(got, "def f0(x):\ndef f1(x):\ndef f2(x):\ndef f3(x):\n");
    }
}
