//! Languages and everything Pilotfish reads from tree-sitter trees: which grammar a document
//! uses, and the completion context cut around a cursor. Pure: no I/O, no LSP types, no async.

pub mod context;
pub mod features;
pub mod outline;
pub mod sensitive;

use std::path::Path;

/// A language Pilotfish parses. Anything else is `PlainText`: completion still works on it,
/// with line-based windows instead of syntax-based ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    C,
    Cpp,
    Java,
    PlainText,
}

impl Language {
    /// Picks the language from the LSP `languageId`, falling back to the file extension.
    pub fn detect(language_id: &str, path: &str) -> Language {
        let by_id = match language_id {
            "rust" => Some(Language::Rust),
            "python" => Some(Language::Python),
            "javascript" | "javascriptreact" | "jsx" => Some(Language::JavaScript),
            "typescript" => Some(Language::TypeScript),
            "typescriptreact" | "tsx" => Some(Language::Tsx),
            "go" => Some(Language::Go),
            "c" => Some(Language::C),
            "cpp" | "c++" => Some(Language::Cpp),
            "java" => Some(Language::Java),
            _ => None,
        };
        by_id.unwrap_or_else(|| Language::from_path(path))
    }

    /// Picks the language from a file name's extension.
    pub fn from_path(path: &str) -> Language {
        let ext = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "rs" => Language::Rust,
            "py" | "pyi" => Language::Python,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "go" => Language::Go,
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => Language::Cpp,
            "java" => Language::Java,
            _ => Language::PlainText,
        }
    }

    /// Languages whose files use each other's code: JavaScript with TypeScript and TSX, C
    /// with C++ (headers). Each family is named by one of its members.
    pub fn family(self) -> Language {
        match self {
            Language::TypeScript | Language::Tsx => Language::JavaScript,
            Language::Cpp => Language::C,
            other => other,
        }
    }

    /// The tree-sitter grammar, or `None` for plain text.
    pub fn grammar(self) -> Option<tree_sitter::Language> {
        let lang: tree_sitter::Language = match self {
            Language::Rust => tree_sitter_rust::LANGUAGE.into(),
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Language::Go => tree_sitter_go::LANGUAGE.into(),
            Language::C => tree_sitter_c::LANGUAGE.into(),
            Language::Cpp => tree_sitter_cpp::LANGUAGE.into(),
            Language::Java => tree_sitter_java::LANGUAGE.into(),
            Language::PlainText => return None,
        };
        Some(lang)
    }

    /// The name used in config (`languages = [...]`), logs and prompts.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::Go => "go",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Java => "java",
            Language::PlainText => "plaintext",
        }
    }
}

/// Parses `text` from scratch; `None` for plain text.
pub fn parse(language: Language, text: &str) -> Option<tree_sitter::Tree> {
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&language.grammar()?).ok()?;
    parser.parse(text, None)
}

/// Fixtures shared by the syntax modules' table tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Language;

    pub(crate) const ALL: [Language; 10] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Go,
        Language::C,
        Language::Cpp,
        Language::Java,
        Language::PlainText,
    ];

    pub(crate) fn language(name: &str) -> Language {
        *ALL.iter()
            .find(|l| l.name() == name)
            .unwrap_or_else(|| panic!("no language {name}"))
    }

    /// Splits a fixture at its `$0` marker: (text, cursor byte).
    pub(crate) fn fixture(src: &str) -> (String, usize) {
        let cursor = src.find("$0").unwrap_or_else(|| panic!("no $0 in {src:?}"));
        (src.replacen("$0", "", 1), cursor)
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
        ];
        for (lang, src) in cases {
            let tree = parse(lang, src).unwrap_or_else(|| panic!("{lang:?} did not parse"));
            assert!(
                !tree.root_node().has_error(),
                "{lang:?}: {}",
                tree.root_node().to_sexp()
            );
        }
        assert!(parse(Language::PlainText, "hello").is_none());
    }

    #[test]
    fn detects_by_id_then_extension() {
        assert_eq!(Language::detect("rust", "x.txt"), Language::Rust);
        assert_eq!(Language::detect("", "/a/b.tsx"), Language::Tsx);
        assert_eq!(Language::detect("plaintext", "/a/b.PY"), Language::Python);
        assert_eq!(
            Language::detect("markdown", "/a/README.md"),
            Language::PlainText
        );
    }
}
