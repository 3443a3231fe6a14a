//! The code actions — Explain, Refactor, Security review and the user's `[actions.*]` — as
//! plain data in and out: what is sent to the chat model ([`prompt`]), how its answer is read
//! ([`answer`]), and how a rewritten target is checked and spliced back ([`refactor`]).
//!
//! Architecture invariant: everything here but [`run`] is pure — no LSP types, no network,
//! no async, no clock, no file system. [`run`] is the one async piece: for the LSP layer and
//! `pilotfish action` alike it builds an [`ActionRequest`] from a document snapshot
//! ([`ActionRequest::from_document`]), routes it, asks the chain of models with the messages
//! from [`build_messages`], and hands the answer to [`extract_code`] + [`validate_refactor`]
//! or to [`parse_findings`] — and still knows no LSP and touches no file. Everything that can
//! go wrong with a model's answer comes back as an error with a message fit to show the
//! user; nothing here panics on a model's output.
//!
//! Line numbers: the code of a request is the target's lines, dedented, and its line 1 is
//! the document line [`ActionRequest::first_line`] (0-based). Review findings are relative
//! to that line; [`Finding::document_lines`] maps them back.

pub mod answer;
pub mod gather;
pub mod prompt;
pub mod refactor;
mod refit;
pub mod run;

use ropey::Rope;
use tree_sitter::Tree;

use crate::config::{ActionConfig, ActionOutput};
use crate::position::clamp_range;
use crate::syntax::Language;
use crate::syntax::features::Target;

pub use answer::{Finding, ParseError, Severity, extract_code, parse_findings};
pub use gather::{Gathered, gather};
pub use prompt::{ActionMessages, PromptError, Trim, build_messages, fill_template};
pub use refactor::{RefactorError, Refactored, unified_diff, validate_refactor};

/// Which action is asked for. `Custom` carries the `NAME` of `[actions.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActionKind {
    Explain,
    Refactor,
    Review,
    Custom(String),
}

impl ActionKind {
    /// The kind named on the command line (`pilotfish action explain|refactor|review|NAME`).
    /// The built-in names win over an `[actions.*]` table of the same name.
    pub fn from_name(name: &str) -> ActionKind {
        match name {
            "explain" => ActionKind::Explain,
            "refactor" => ActionKind::Refactor,
            "review" => ActionKind::Review,
            other => ActionKind::Custom(other.to_string()),
        }
    }

    /// The name used on the command line, in logs and in the usage log's `task`.
    pub fn name(&self) -> &str {
        match self {
            ActionKind::Explain => "explain",
            ActionKind::Refactor => "refactor",
            ActionKind::Review => "review",
            ActionKind::Custom(name) => name,
        }
    }

    /// The title offered in the editor's code-action menu.
    pub fn title(&self, config_action: Option<&ActionConfig>) -> String {
        match self {
            ActionKind::Explain => "Pilotfish: Explain".to_string(),
            ActionKind::Refactor => "Pilotfish: Refactor".to_string(),
            ActionKind::Review => "Pilotfish: Security review".to_string(),
            ActionKind::Custom(name) => match config_action {
                Some(c) => format!("Pilotfish: {}", c.title),
                None => format!("Pilotfish: {name}"),
            },
        }
    }

    /// What becomes of the answer: shown (explain), applied as an edit (refactor), published
    /// as diagnostics (review), or what `[actions.NAME].output` says.
    pub fn output(&self, config_action: Option<&ActionConfig>) -> ActionOutput {
        match self {
            ActionKind::Explain => ActionOutput::Document,
            ActionKind::Refactor => ActionOutput::Edit,
            ActionKind::Review => ActionOutput::Diagnostics,
            ActionKind::Custom(_) => config_action.map(|c| c.output).unwrap_or_default(),
        }
    }
}

/// The size limits of the model that will answer, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    pub context_window: u32,
    /// Reserved for the answer: the prompt may use `context_window - max_output_tokens`.
    pub max_output_tokens: u32,
}

impl ModelLimits {
    /// The tokens a prompt may use.
    pub fn prompt_budget(self) -> u32 {
        self.context_window.saturating_sub(self.max_output_tokens)
    }
}

/// Everything an action's prompt is built from, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub language: Language,
    /// The document's path as shown to the model and in diff headers (workspace-relative
    /// when the caller can).
    pub path: String,
    /// The target's code: whole lines from the target's first line, with the indentation
    /// they share removed, LF line breaks.
    pub code: String,
    /// 0-based document line of the code's first line.
    pub first_line: u32,
    /// The target's node kind (`function_item`, …), `"selection"` or `"file"`.
    pub target_kind: String,
    pub target_name: Option<String>,
    /// The user's selection, when there is one.
    pub selection: Option<String>,
    /// Import/use/include lines of the file, in file order.
    pub imports: Vec<String>,
    /// Header lines of same-file functions and types whose names the code uses.
    pub signatures: Vec<String>,
    /// 0-based lines of `code` where a statement or item starts: where the code may be cut
    /// when it does not fit. Empty: any line boundary.
    pub cut_lines: Vec<u32>,
    pub limits: ModelLimits,
}

impl ActionRequest {
    /// Builds the request for `target` in a document snapshot. `tree` is the document's
    /// tree (`None` for plain text); offsets are clamped to the rope.
    pub fn from_document(
        rope: &Rope,
        tree: Option<&Tree>,
        language: Language,
        path: &str,
        target: &Target,
        selection: Option<&str>,
        limits: ModelLimits,
    ) -> ActionRequest {
        let range = clamp_range(rope, target.range.clone());
        let first_line = rope.byte_to_line(range.start);
        let line_start = rope.line_to_byte(first_line);
        let lead = rope.byte_slice(line_start..range.start).to_string();
        // Whole lines: the indentation before the target belongs to its first line, so that
        // dedenting treats every line alike. Text before it on the line is not the target's.
        let mut code = if lead.chars().all(char::is_whitespace) {
            lead
        } else {
            String::new()
        };
        code.push_str(&rope.byte_slice(range.clone()).to_string());
        let code = dedent(&code.replace("\r\n", "\n"));
        let gathered = gather(rope, tree, language, range);
        ActionRequest {
            language,
            path: path.to_string(),
            code,
            first_line: first_line as u32,
            target_kind: target.kind.clone(),
            target_name: target.name.clone(),
            selection: selection.map(str::to_string),
            imports: gathered.imports,
            signatures: gathered.signatures,
            cut_lines: gathered.cut_lines,
            limits,
        }
    }
}

/// Removes the leading whitespace that all non-blank lines share (compared as text, so tabs
/// and spaces are never mixed up), turns blank lines into empty ones and drops blank lines at
/// both ends. Works on LF text.
pub(crate) fn dedent(code: &str) -> String {
    let lines: Vec<&str> = code.split('\n').collect();
    let first = lines.iter().position(|l| !l.trim().is_empty());
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return String::new();
    };
    let lines = &lines[first..=last];
    let common = common_indent(lines);
    let out: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                ""
            } else {
                l[common.len()..].trim_end()
            }
        })
        .collect();
    out.join("\n")
}

/// The longest whitespace prefix shared by all non-blank lines.
pub(crate) fn common_indent<'a>(lines: &[&'a str]) -> &'a str {
    let mut common: Option<&str> = None;
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let indent = &line[..line.len() - line.trim_start().len()];
        common = Some(match common {
            None => indent,
            Some(c) => {
                let shared = c
                    .char_indices()
                    .zip(indent.chars())
                    .find(|((_, a), b)| a != b)
                    .map(|((i, _), _)| i)
                    .unwrap_or(c.len().min(indent.len()));
                &c[..shared]
            }
        });
    }
    common.unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name_title_and_output() {
        let tests = ActionConfig {
            title: "Write unit tests".into(),
            prompt: "Tests for {code}".into(),
            output: ActionOutput::Edit,
        };
        let cases: [(&str, ActionKind, &str, ActionOutput); 4] = [
            (
                "explain",
                ActionKind::Explain,
                "Pilotfish: Explain",
                ActionOutput::Document,
            ),
            (
                "refactor",
                ActionKind::Refactor,
                "Pilotfish: Refactor",
                ActionOutput::Edit,
            ),
            (
                "review",
                ActionKind::Review,
                "Pilotfish: Security review",
                ActionOutput::Diagnostics,
            ),
            (
                "tests",
                ActionKind::Custom("tests".into()),
                "Pilotfish: Write unit tests",
                ActionOutput::Edit,
            ),
        ];
        for (name, kind, title, output) in cases {
            let got = ActionKind::from_name(name);
            assert_eq!(got, kind);
            assert_eq!(got.name(), name);
            assert_eq!(got.title(Some(&tests)), title);
            assert_eq!(got.output(Some(&tests)), output);
        }
        let unknown = ActionKind::Custom("doc".into());
        assert_eq!(unknown.title(None), "Pilotfish: doc");
        assert_eq!(unknown.output(None), ActionOutput::Document);
    }

    #[test]
    fn dedent_table() {
        let cases = [
            ("fn f() {\n    x\n}", "fn f() {\n    x\n}"),
            ("    fn f() {\n        x\n    }", "fn f() {\n    x\n}"),
            ("\n\n    a\n\n      b  \n", "a\n\n  b"),
            ("\tif x:\n\t\ty", "if x:\n\ty"),
            // Mixed tabs and spaces share nothing: nothing is removed.
            ("\ta\n    b", "\ta\n    b"),
            ("   \n  ", ""),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(dedent(input), want, "{input:?}");
        }
    }

    #[test]
    fn request_from_document_takes_whole_dedented_lines() {
        let doc = "use std::fmt;\n\nimpl A {\n    fn helper(&self) -> u32 { 1 }\n\n    fn run(&self) -> u32 {\n        self.helper() + 1\n    }\n}\n";
        let rope = Rope::from_str(doc);
        let tree = crate::syntax::parse(Language::Rust, doc);
        let start = doc.find("fn run").unwrap();
        let end = doc.rfind("    }").unwrap() + 5;
        let target = Target {
            range: start..end,
            kind: "function_item".into(),
            name: Some("run".into()),
        };
        let limits = ModelLimits {
            context_window: 8192,
            max_output_tokens: 512,
        };
        let req = ActionRequest::from_document(
            &rope,
            tree.as_ref(),
            Language::Rust,
            "src/a.rs",
            &target,
            None,
            limits,
        );
        assert_eq!(req.code, "fn run(&self) -> u32 {\n    self.helper() + 1\n}");
        assert_eq!(req.first_line, 5);
        assert_eq!(req.imports, ["use std::fmt;"]);
        assert_eq!(req.signatures, ["fn helper(&self) -> u32"]);
        assert_eq!(req.cut_lines, [1]);
        assert_eq!(limits.prompt_budget(), 7680);
    }

    /// The refactor path end to end, as the LSP layer runs it: request, messages, answer,
    /// code, checked document, diff; and the review path down to document lines.
    #[test]
    fn refactor_and_review_paths_end_to_end() {
        let doc = "class Repo:\n    def find(self, name):\n        q = \"SELECT * FROM t WHERE n = '%s'\" % name\n        return self.db.execute(q)\n";
        let rope = Rope::from_str(doc);
        let tree = crate::syntax::parse(Language::Python, doc);
        let start = doc.find("def find").unwrap();
        let target = Target {
            range: start..doc.len() - 1,
            kind: "function_definition".into(),
            name: Some("find".into()),
        };
        let limits = ModelLimits {
            context_window: 4096,
            max_output_tokens: 512,
        };
        let req = ActionRequest::from_document(
            &rope,
            tree.as_ref(),
            Language::Python,
            "repo.py",
            &target,
            None,
            limits,
        );
        let messages = build_messages(&req, &ActionKind::Refactor, None).unwrap();
        assert!(messages.user.contains("def find(self, name):\n    q = "));

        let answer = "Use a parameterised query:\r\n\r\n```python\r\ndef find(self, name):\r\n    return self.db.execute(\"SELECT * FROM t WHERE n = ?\", (name,))\r\n```\r\n";
        let code = extract_code(answer, req.language).unwrap();
        let done = validate_refactor(req.language, doc, target.range.clone(), &code).unwrap();
        assert_eq!(
            unified_diff(&req.path, doc, &done.document),
            "--- a/repo.py\n+++ b/repo.py\n@@ -1,4 +1,3 @@\n class Repo:\n     def find(self, name):\n-        q = \"SELECT * FROM t WHERE n = '%s'\" % name\n-        return self.db.execute(q)\n+        return self.db.execute(\"SELECT * FROM t WHERE n = ?\", (name,))\n"
        );

        let review = build_messages(&req, &ActionKind::Review, None).unwrap();
        let answer = r#"{"findings":[{"severity":"error","cwe":"CWE-89","line_start":2,"line_end":3,"message":"SQL built with %."}]}"#;
        let findings = parse_findings(answer, review.shown_lines).unwrap();
        assert_eq!(findings[0].document_lines(req.first_line), 2..=3);
    }

    /// Whatever a model answers and whatever range a stale target has, nothing panics.
    #[test]
    fn hostile_inputs_never_panic() {
        let answers = [
            "",
            "`",
            "```",
            "````\n```",
            "~~~\n",
            "```rust\n```\n```",
            "{",
            "{{{{{{{{",
            "{\"findings\":",
            "{\"findings\":[{\"severity\":\"error\",\"line_start\":18446744073709551615}]}",
            "\u{3000}```\n\u{3000}\u{3000}x\n\u{3000}```",
            "é```é\n```",
            "\r\r\n\n\r",
            "\u{feff}fn f() {}",
            "```\u{0}\n\u{0}\n```",
        ];
        let languages = [
            Language::Rust,
            Language::Python,
            Language::Tsx,
            Language::Cpp,
            Language::PlainText,
        ];
        let doc = "fn é() {\r\n    \u{3000}x();\n}\n😀";
        for answer in answers {
            for language in languages {
                let _ = extract_code(answer, language);
                for (start, end) in [(0, usize::MAX), (4, 5), (usize::MAX, 0), (7, 7), (3, 30)] {
                    let _ = validate_refactor(language, doc, start..end, answer);
                }
            }
            for lines in [0, 1, u32::MAX] {
                let _ = parse_findings(answer, lines);
            }
            let _ = fill_template(answer, &[("code", answer)]);
            let _ = unified_diff(answer, answer, doc);
        }
        let rope = Rope::from_str(doc);
        let tree = crate::syntax::parse(Language::Rust, doc);
        for (start, end) in [(0, usize::MAX), (4, 5), (usize::MAX, 0), (7, 7), (3, 30)] {
            let target = Target {
                range: start..end,
                kind: "selection".into(),
                name: None,
            };
            let limits = ModelLimits {
                context_window: u32::MAX,
                max_output_tokens: u32::MAX,
            };
            let req = ActionRequest::from_document(
                &rope,
                tree.as_ref(),
                Language::Rust,
                "",
                &target,
                Some(""),
                limits,
            );
            for kind in [
                ActionKind::Explain,
                ActionKind::Refactor,
                ActionKind::Review,
            ] {
                let _ = build_messages(&req, &kind, None);
            }
        }
    }
}
