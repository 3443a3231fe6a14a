//! The chat messages of each action: a system message that states the task and the exact
//! shape of the answer, and a user message with the file's context and the target's code.
//! Pure: text in, text out; tokens are estimated, not counted.
//!
//! Trimming: when the messages do not fit the model's window less the tokens reserved for
//! the answer, the signatures go first, then the imports, then the code is cut after a whole
//! line — at a statement start when one is near — and a `… (truncated: N more lines not
//! shown)` line takes the place of the rest. The result says what was dropped. A rewrite
//! (refactor, or a custom action whose output is an edit) is never cut: applying a rewrite
//! of half a function would delete the other half, so that is an error instead.

use crate::config::{ActionConfig, ActionOutput};
use crate::tokens::estimate_tokens;

use super::{ActionKind, ActionRequest};

/// Tokens a chat template adds around the two messages (role markers, separators).
const MESSAGE_OVERHEAD_TOKENS: usize = 16;
/// A cut at a statement start is preferred when it keeps at least this share of the lines
/// that would fit (in percent); otherwise the code is cut at the last line that fits.
const MIN_SYNTAX_CUT_PERCENT: usize = 50;

/// The messages for one action, and what had to be left out to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionMessages {
    pub system: String,
    pub user: String,
    /// Lines of the code shown to the model (all of them unless truncated). Review findings
    /// must lie within `1..=shown_lines`.
    pub shown_lines: u32,
    /// Lines of the code in the request.
    pub total_lines: u32,
    pub trim: Trim,
    /// Estimated tokens of both messages.
    pub estimated_tokens: u32,
}

/// What was left out of the prompt to fit the model's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trim {
    pub dropped_signatures: bool,
    pub dropped_imports: bool,
    /// True when only the first `shown_lines` lines of the code were sent.
    pub truncated: bool,
}

impl ActionMessages {
    /// One sentence for the user (and the log) when something was left out.
    pub fn trim_note(&self) -> Option<String> {
        let mut dropped = Vec::new();
        if self.trim.dropped_signatures {
            dropped.push("the signatures of the items it uses");
        }
        if self.trim.dropped_imports {
            dropped.push("the file's imports");
        }
        let dropped = dropped.join(" and ");
        match (self.trim.truncated, dropped.is_empty()) {
            (false, true) => None,
            (false, false) => Some(format!(
                "To fit the model's context window, {dropped} were left out."
            )),
            (true, true) => Some(format!(
                "The code was truncated after line {} of {} to fit the model's context window.",
                self.shown_lines, self.total_lines
            )),
            (true, false) => Some(format!(
                "The code was truncated after line {} of {} to fit the model's context window, \
                 and {dropped} were left out.",
                self.shown_lines, self.total_lines
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("no [actions.{0}] in the configuration")]
    UnknownAction(String),
    #[error(
        "the code ({lines} lines, about {tokens} tokens) does not fit the model's context window \
         ({budget} tokens for the prompt), and a rewrite of only part of it would delete the \
         rest: select a smaller part, or route the action to a model with a larger window"
    )]
    TooLargeToRewrite {
        lines: u32,
        tokens: u32,
        budget: u32,
    },
    #[error(
        "the model's context window is too small for this action: the prompt needs about \
         {needed} tokens with a single line of code, {budget} are available"
    )]
    ContextTooSmall { needed: u32, budget: u32 },
}

/// Builds the `(system, user)` messages of `action` for `request`, trimmed to the model's
/// window. `config_action` is the `[actions.NAME]` table of a custom action; the built-in
/// actions ignore it.
pub fn build_messages(
    request: &ActionRequest,
    action: &ActionKind,
    config_action: Option<&ActionConfig>,
) -> Result<ActionMessages, PromptError> {
    let mode = match action {
        ActionKind::Explain => Mode::Explain,
        ActionKind::Refactor => Mode::Refactor,
        ActionKind::Review => Mode::Review,
        ActionKind::Custom(name) => {
            let config = config_action.ok_or_else(|| PromptError::UnknownAction(name.clone()))?;
            Mode::Custom {
                template: &config.prompt,
                output: config.output,
            }
        }
    };
    let code = request.code.replace("\r\n", "\n");
    let lines: Vec<&str> = code.trim_end_matches('\n').split('\n').collect();
    let total = lines.len();
    let budget = request.limits.prompt_budget() as usize;
    let renderer = Renderer {
        request,
        mode,
        lines: &lines,
    };
    let mut trim = Trim::default();
    let mut context = Context {
        signatures: !request.signatures.is_empty(),
        imports: !request.imports.is_empty(),
    };
    let done = |(system, user): (String, String), shown: usize, trim: Trim| {
        let estimated_tokens = estimate(&system, &user) as u32;
        Ok(ActionMessages {
            system,
            user,
            shown_lines: shown as u32,
            total_lines: total as u32,
            trim,
            estimated_tokens,
        })
    };

    let full = renderer.render(context, total);
    if estimate(&full.0, &full.1) <= budget {
        return done(full, total, trim);
    }
    for drop_imports in [false, true] {
        if drop_imports {
            if !context.imports {
                continue;
            }
            context.imports = false;
            trim.dropped_imports = true;
        } else {
            if !context.signatures {
                continue;
            }
            context.signatures = false;
            trim.dropped_signatures = true;
        }
        let messages = renderer.render(context, total);
        if estimate(&messages.0, &messages.1) <= budget {
            return done(messages, total, trim);
        }
    }

    if mode.rewrites() {
        return Err(PromptError::TooLargeToRewrite {
            lines: total as u32,
            tokens: estimate_tokens(&code) as u32,
            budget: budget as u32,
        });
    }
    let fits = |shown: usize| {
        let (system, user) = renderer.render(context, shown);
        estimate(&system, &user) <= budget
    };
    if total <= 1 || !fits(1) {
        let (system, user) = renderer.render(context, 1);
        return Err(PromptError::ContextTooSmall {
            needed: estimate(&system, &user) as u32,
            budget: budget as u32,
        });
    }
    // The largest number of whole lines that fits: `lo` fits, `hi` does not.
    let (mut lo, mut hi) = (1, total);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    // Prefer ending just before a statement that starts on its own line.
    let syntax_cut = request
        .cut_lines
        .iter()
        .map(|c| *c as usize)
        .filter(|c| *c >= 1 && *c <= lo && c * 100 >= lo * MIN_SYNTAX_CUT_PERCENT)
        .max();
    let shown = syntax_cut.unwrap_or(lo);
    trim.truncated = true;
    done(renderer.render(context, shown), shown, trim)
}

fn estimate(system: &str, user: &str) -> usize {
    estimate_tokens(system) + estimate_tokens(user) + MESSAGE_OVERHEAD_TOKENS
}

/// Fills `{code}`, `{language}`, `{path}` and `{selection}` in a user's prompt template, in
/// one pass from left to right: the values put in are never scanned again, so braces in the
/// code stay as they are. Any other `{…}` is left as is.
pub fn fill_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let hit = values
            .iter()
            .find(|(key, _)| after.starts_with(key) && after[key.len()..].starts_with('}'));
        match hit {
            Some((key, value)) => {
                out.push_str(value);
                rest = &after[key.len() + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, Copy)]
enum Mode<'a> {
    Explain,
    Refactor,
    Review,
    Custom {
        template: &'a str,
        output: ActionOutput,
    },
}

impl Mode<'_> {
    /// True when the answer replaces the code: it must see all of it.
    fn rewrites(self) -> bool {
        matches!(
            self,
            Mode::Refactor
                | Mode::Custom {
                    output: ActionOutput::Edit,
                    ..
                }
        )
    }

    /// True when the answer names lines: the code is shown with line numbers.
    fn numbers_lines(self) -> bool {
        matches!(
            self,
            Mode::Review
                | Mode::Custom {
                    output: ActionOutput::Diagnostics,
                    ..
                }
        )
    }
}

/// Which context sections are in the prompt.
#[derive(Debug, Clone, Copy)]
struct Context {
    signatures: bool,
    imports: bool,
}

struct Renderer<'a> {
    request: &'a ActionRequest,
    mode: Mode<'a>,
    lines: &'a [&'a str],
}

impl Renderer<'_> {
    fn render(&self, context: Context, shown: usize) -> (String, String) {
        let req = self.request;
        let spec = req.language.spec();
        let lang = spec.display_name;
        let tag = spec.fence_tag();
        let code = self.code(shown);
        let system = match self.mode {
            Mode::Explain => explain_system(lang),
            Mode::Refactor => rewrite_system(lang, tag, spec.describe(&req.target_kind)),
            Mode::Review => review_system(lang, shown),
            Mode::Custom { output, .. } => match output {
                ActionOutput::Document => document_system(lang),
                ActionOutput::Edit => rewrite_system(lang, tag, spec.describe(&req.target_kind)),
                ActionOutput::Diagnostics => diagnostics_system(lang, shown),
            },
        };
        let truncated = (shown < self.lines.len()).then(|| {
            format!(
                "Only lines 1-{shown} of {} are shown: the code was truncated to fit the \
                 context window. Do not guess what follows.",
                self.lines.len()
            )
        });
        let user = match self.mode {
            Mode::Custom { template, .. } => {
                let selection = req.selection.as_deref().unwrap_or(&code);
                let mut user = fill_template(
                    template,
                    &[
                        ("code", &code),
                        ("language", req.language.name()),
                        ("path", &req.path),
                        ("selection", selection),
                    ],
                );
                if !template.contains("{code}") && !template.contains("{selection}") {
                    user.push_str("\n\n");
                    user.push_str(&fenced(tag, &code));
                }
                if let Some(note) = truncated {
                    user.push_str("\n\n");
                    user.push_str(&note);
                }
                user
            }
            _ => {
                let mut parts = vec![self.header()];
                if context.imports {
                    parts.push(format!(
                        "Imports of the file, for context:\n{}",
                        fenced(tag, &req.imports.join("\n"))
                    ));
                }
                if context.signatures {
                    parts.push(format!(
                        "Signatures of items in the same file that the code uses, for \
                         context:\n{}",
                        fenced(tag, &req.signatures.join("\n"))
                    ));
                }
                let what = match self.mode {
                    Mode::Explain => "The code to explain:",
                    Mode::Refactor => "The code to refactor:",
                    _ => "The code to review, with line numbers:",
                };
                parts.push(format!("{what}\n{}", fenced(tag, &code)));
                if let Some(note) = truncated {
                    parts.push(note);
                }
                if let Some(selection) = req
                    .selection
                    .as_deref()
                    .filter(|s| !s.trim().is_empty() && s.trim() != req.code.trim())
                {
                    parts.push(format!(
                        "The user selected this part of it; focus on it:\n{}",
                        fenced(tag, selection)
                    ));
                }
                parts.join("\n\n")
            }
        };
        (system, user)
    }

    /// `File: src/db.rs (Rust), lines 12-40` and the target's kind and name.
    fn header(&self) -> String {
        let req = self.request;
        let first = req.first_line as usize + 1;
        let last = first + self.lines.len() - 1;
        let mut out = format!(
            "File: {} ({}), lines {first}-{last}",
            req.path,
            req.language.spec().display_name
        );
        let kind = req.language.spec().describe(&req.target_kind);
        out.push_str(&format!("\nTarget: {kind}"));
        if let Some(name) = &req.target_name {
            out.push_str(&format!(" `{name}`"));
        }
        out
    }

    /// The first `shown` lines of the code (numbered `N | ` when the answer names lines),
    /// then the truncation marker when lines were left out.
    fn code(&self, shown: usize) -> String {
        let shown = shown.min(self.lines.len());
        let width = shown.to_string().len();
        let mut out: Vec<String> = self.lines[..shown]
            .iter()
            .enumerate()
            .map(|(i, line)| {
                if self.mode.numbers_lines() {
                    format!("{:>width$} | {line}", i + 1).trim_end().to_string()
                } else {
                    line.to_string()
                }
            })
            .collect();
        if shown < self.lines.len() {
            out.push(format!(
                "… (truncated: {} more lines not shown)",
                self.lines.len() - shown
            ));
        }
        out.join("\n")
    }
}

/// A fenced block whose fence is longer than any backtick run inside (CommonMark), so code
/// that holds a fence of its own cannot close it.
fn fenced(tag: &str, content: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in content.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{tag}\n{content}\n{fence}")
}

fn explain_system(lang: &str) -> String {
    format!(
        "You are an expert {lang} programmer explaining code to a colleague in their editor. \
         Explain the code under \"The code to explain\": what it does (purpose, inputs, \
         outputs, side effects), how it does it (the main steps, in order), and its pitfalls \
         (edge cases, error handling, performance, security, concurrency) — only those that \
         apply. The imports and signatures are context, not code to explain. Answer in \
         GitHub-flavoured Markdown with short sections and bullet points; put identifiers in \
         backticks; quote only the few lines you discuss, never the whole code."
    )
}

fn document_system(lang: &str) -> String {
    format!(
        "You are an expert {lang} programmer helping a colleague in their editor. Do what \
         the user asks about their code. Answer in GitHub-flavoured Markdown; put code in \
         fenced blocks tagged with their language."
    )
}

fn rewrite_system(lang: &str, tag: &str, kind: &str) -> String {
    format!(
        "You are an expert {lang} programmer refactoring code in the user's editor. Rewrite \
         the code the user shows to be clearer and more idiomatic {lang}: better names and \
         structure, less duplication, the same behaviour. Keep the same public signature \
         (name, parameters, return type, visibility) unless the user asks otherwise. Return \
         ONLY the complete rewritten code in one fenced code block tagged `{tag}`: the whole \
         {kind}, from its first line to its last, in {lang} — not a diff, not an excerpt, \
         nothing elided with comments like \"rest unchanged\". No other code block: do not \
         repeat the imports or signatures shown for context; if the rewrite needs a new \
         import, say so in a comment inside the code."
    )
}

/// The answer contract that `parse_findings` enforces.
fn findings_contract(shown: usize) -> String {
    format!(
        "The code is shown with a line number before each line (`N | code`). Answer with ONLY \
         a JSON object, no Markdown fence, no text before or after it, of exactly this \
         shape:\n\
         {{\"findings\":[{{\"severity\":\"error\",\"cwe\":\"CWE-89\",\"line_start\":3,\
         \"line_end\":4,\"message\":\"...\"}}]}}\n\
         Rules: \"severity\" is \"error\", \"warning\" or \"info\"; \"cwe\" is the most \
         specific CWE id as \"CWE-<number>\", or null when none fits; \"line_start\" and \
         \"line_end\" are the numbers shown on the left (1 is the first line of the code shown, \
         not of the file), with 1 <= line_start <= line_end <= {shown}; \"message\" is one or \
         two sentences: the problem and how to fix it. Report only real problems, each once. \
         If there are none, answer {{\"findings\":[]}}."
    )
}

fn review_system(lang: &str, shown: usize) -> String {
    format!(
        "You are a security reviewer of {lang} code. Review the code under \"The code to \
         review\" for vulnerabilities and security-relevant bugs: injection (SQL, command, \
         path), unsafe deserialisation, weak or misused cryptography, secrets in code, missing \
         input validation, integer overflow, memory safety, races, and error handling that \
         leaks information. The imports and signatures are context only. {}",
        findings_contract(shown)
    )
}

fn diagnostics_system(lang: &str, shown: usize) -> String {
    format!(
        "You are an expert {lang} programmer reviewing code in the user's editor. Do what the \
         user asks and report each problem you find as a finding. {}",
        findings_contract(shown)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::ModelLimits;
    use crate::syntax::Language;

    const BIG: ModelLimits = ModelLimits {
        context_window: 32768,
        max_output_tokens: 1024,
    };

    /// A request for a function of `language` (its first function kind).
    fn request(language: Language, code: &str) -> ActionRequest {
        let function = language
            .spec()
            .definitions
            .iter()
            .find(|d| d.item == crate::syntax::lang::Item::Function)
            .map_or("", |d| d.kind);
        ActionRequest {
            language,
            path: "src/db.rs".into(),
            code: code.into(),
            first_line: 9,
            target_kind: function.into(),
            target_name: Some("find_user".into()),
            selection: None,
            imports: vec!["use std::fmt;".into()],
            signatures: vec!["fn helper(x: u32) -> u32".into()],
            cut_lines: Vec::new(),
            limits: BIG,
        }
    }

    fn custom(prompt: &str, output: ActionOutput) -> ActionConfig {
        ActionConfig {
            title: "Custom".into(),
            prompt: prompt.into(),
            output,
        }
    }

    const CODE: &str = "fn find_user(id: u32) -> String {\n    helper(id).to_string()\n}";

    #[test]
    fn explain_user_message_literal() {
        let m = build_messages(&request(Language::Rust, CODE), &ActionKind::Explain, None).unwrap();
        assert_eq!(
            m.user,
            "File: src/db.rs (Rust), lines 10-12\nTarget: function `find_user`\n\n\
             Imports of the file, for context:\n```rust\nuse std::fmt;\n```\n\n\
             Signatures of items in the same file that the code uses, for context:\n\
             ```rust\nfn helper(x: u32) -> u32\n```\n\n\
             The code to explain:\n```rust\nfn find_user(id: u32) -> String {\n    \
             helper(id).to_string()\n}\n```"
        );
        assert!(m.system.contains("what it does"), "{}", m.system);
        assert!(m.system.contains("pitfalls"), "{}", m.system);
        assert!(m.system.contains("Markdown"), "{}", m.system);
        assert_eq!((m.shown_lines, m.total_lines), (3, 3));
        assert_eq!(m.trim, Trim::default());
        assert_eq!(m.trim_note(), None);
    }

    /// The action, its config, what the system message and the user message must contain.
    type ShapeCase = (
        ActionKind,
        Option<ActionConfig>,
        &'static [&'static str],
        &'static [&'static str],
    );

    #[test]
    fn each_action_states_its_answer_shape() {
        let req = request(Language::Python, "def f(x):\n    return x\n");
        let cases: [ShapeCase; 6] = [
            (
                ActionKind::Explain,
                None,
                &["Python programmer", "how it does it", "Markdown"],
                &["```python\ndef f(x):\n    return x\n```"],
            ),
            (
                ActionKind::Refactor,
                None,
                &[
                    "ONLY the complete rewritten code in one fenced code block tagged `python`",
                    "same public signature",
                    "No other code block",
                    "the whole function, from its first line",
                ],
                &["The code to refactor:\n```python\ndef f(x):"],
            ),
            (
                ActionKind::Review,
                None,
                &[
                    "ONLY a JSON object",
                    r#"{"findings":[{"severity":"error","cwe":"CWE-89","line_start":3,"line_end":4,"message":"..."}]}"#,
                    "1 <= line_start <= line_end <= 2",
                    r#"If there are none, answer {"findings":[]}."#,
                    "null when none fits",
                ],
                &[
                    "The code to review, with line numbers:\n```python\n1 | def f(x):\n2 |     return x\n```",
                ],
            ),
            (
                ActionKind::Custom("doc".into()),
                Some(custom("Document {code}", ActionOutput::Document)),
                &["Markdown"],
                &["Document def f(x):\n    return x"],
            ),
            (
                ActionKind::Custom("fix".into()),
                Some(custom("Fix:\n{code}", ActionOutput::Edit)),
                &["ONLY the complete rewritten code"],
                &["Fix:\ndef f(x):"],
            ),
            (
                ActionKind::Custom("lint".into()),
                Some(custom(
                    "Lint this {language}:\n{code}",
                    ActionOutput::Diagnostics,
                )),
                &["ONLY a JSON object", "<= 2"],
                &["Lint this python:\n1 | def f(x):\n2 |     return x"],
            ),
        ];
        for (kind, config, system_has, user_has) in cases {
            let m = build_messages(&req, &kind, config.as_ref()).unwrap();
            for want in system_has {
                assert!(
                    m.system.contains(want),
                    "{kind:?} system lacks {want:?}:\n{}",
                    m.system
                );
            }
            for want in user_has {
                assert!(
                    m.user.contains(want),
                    "{kind:?} user lacks {want:?}:\n{}",
                    m.user
                );
            }
        }
    }

    #[test]
    fn templates_fill_known_placeholders_once() {
        let values: &[(&str, &str)] = &[
            ("code", "fn f() { let s = \"{language}\"; {x} }"),
            ("language", "rust"),
            ("path", "src/a.rs"),
            ("selection", "{code}"),
        ];
        let cases = [
            ("{code}", "fn f() { let s = \"{language}\"; {x} }"),
            (
                "Test this {language} code in {path}",
                "Test this rust code in src/a.rs",
            ),
            ("{selection}", "{code}"),
            ("{unknown} {code", "{unknown} {code"),
            ("{{language}}", "{rust}"),
            ("{language}{language}", "rustrust"),
            ("no placeholders {}", "no placeholders {}"),
            ("{", "{"),
            ("}{path}{", "}src/a.rs{"),
            ("é{language}ü", "érustü"),
        ];
        for (template, want) in cases {
            assert_eq!(fill_template(template, values), want, "{template:?}");
        }
    }

    #[test]
    fn custom_prompt_with_braces_in_code_and_selection() {
        let mut req = request(Language::Rust, "fn f() { format!(\"{path}\") }");
        req.selection = Some("format!(\"{path}\")".into());
        let config = custom(
            "In {path} ({language}), explain {selection} within:\n{code}\nKeep {tone}.",
            ActionOutput::Document,
        );
        let m = build_messages(&req, &ActionKind::Custom("x".into()), Some(&config)).unwrap();
        assert_eq!(
            m.user,
            "In src/db.rs (rust), explain format!(\"{path}\") within:\nfn f() { \
             format!(\"{path}\") }\nKeep {tone}."
        );
        // Without a selection, `{selection}` is the target's code.
        req.selection = None;
        let config = custom("[{selection}]", ActionOutput::Document);
        let m = build_messages(&req, &ActionKind::Custom("x".into()), Some(&config)).unwrap();
        assert_eq!(m.user, "[fn f() { format!(\"{path}\") }]");
        // A template that never names the code gets it appended.
        let config = custom("Write tests.", ActionOutput::Document);
        let m = build_messages(&req, &ActionKind::Custom("x".into()), Some(&config)).unwrap();
        assert_eq!(
            m.user,
            "Write tests.\n\n```rust\nfn f() { format!(\"{path}\") }\n```"
        );
    }

    #[test]
    fn unknown_custom_action_is_an_error() {
        let err = build_messages(
            &request(Language::Rust, CODE),
            &ActionKind::Custom("nope".into()),
            None,
        )
        .unwrap_err();
        assert_eq!(err, PromptError::UnknownAction("nope".into()));
        assert_eq!(err.to_string(), "no [actions.nope] in the configuration");
    }

    #[test]
    fn selection_inside_the_target_is_pointed_out() {
        let mut req = request(Language::Rust, CODE);
        req.selection = Some("helper(id)".into());
        let m = build_messages(&req, &ActionKind::Explain, None).unwrap();
        assert!(
            m.user.ends_with(
                "The user selected this part of it; focus on it:\n```rust\nhelper(id)\n```"
            ),
            "{}",
            m.user
        );
        // A selection that is the target is not repeated.
        req.selection = Some(CODE.into());
        let m = build_messages(&req, &ActionKind::Explain, None).unwrap();
        assert!(!m.user.contains("selected"), "{}", m.user);
    }

    #[test]
    fn fences_outgrow_backticks_in_the_code() {
        let cases = [
            ("plain", "```rust\nplain\n```"),
            (
                "/// ```\n/// x\n/// ```",
                "````rust\n/// ```\n/// x\n/// ```\n````",
            ),
            ("a `b` ``c``", "```rust\na `b` ``c``\n```"),
            ("`````", "``````rust\n`````\n``````"),
        ];
        for (content, want) in cases {
            assert_eq!(fenced("rust", content), want, "{content:?}");
        }
    }

    /// A 40-line Python function; statements start on lines 0, 1, 5, 6, … (0-based).
    fn long_function() -> (String, Vec<u32>) {
        let mut code =
            String::from("def long():\n    data = call(\n        1,\n        2,\n    )\n");
        let mut cut_lines = vec![1];
        for i in 0..35 {
            code.push_str(&format!(
                "    value_{i} = compute(data, {i}) + offset_{i}\n"
            ));
            cut_lines.push(5 + i);
        }
        (code, cut_lines)
    }

    #[test]
    fn trimming_drops_signatures_then_imports_then_cuts_the_code() {
        let (code, cut_lines) = long_function();
        let mut req = request(Language::Python, &code);
        req.cut_lines = cut_lines;
        req.imports = vec!["import os".into(); 40];
        req.signatures = vec!["def compute(data, n):".into(); 40];
        let tokens = |r: &ActionRequest| {
            build_messages(r, &ActionKind::Explain, None)
                .unwrap()
                .estimated_tokens
        };
        let full = tokens(&req);
        let mut r = req.clone();
        r.signatures.clear();
        let no_signatures = tokens(&r);
        r.imports.clear();
        let no_context = tokens(&r);
        assert!(full > no_signatures && no_signatures > no_context);

        let at = |window: u32| {
            let mut r = req.clone();
            r.limits = ModelLimits {
                context_window: window,
                max_output_tokens: 100,
            };
            build_messages(&r, &ActionKind::Explain, None).unwrap()
        };
        let trim = |signatures, imports, truncated| Trim {
            dropped_signatures: signatures,
            dropped_imports: imports,
            truncated,
        };
        let m = at(full + 100);
        assert_eq!(m.trim, Trim::default());

        let m = at(full + 99);
        assert_eq!(m.trim, trim(true, false, false));
        assert!(!m.user.contains("Signatures"), "{}", m.user);
        assert!(m.user.contains("import os"), "{}", m.user);
        assert_eq!(
            m.trim_note().unwrap(),
            "To fit the model's context window, the signatures of the items it uses were left out."
        );

        let m = at(no_signatures + 99);
        assert_eq!(m.trim, trim(true, true, false));
        assert!(!m.user.contains("import os"), "{}", m.user);

        let m = at(no_context + 99 - 60);
        assert_eq!(m.trim, trim(true, true, true));
        assert!(
            m.estimated_tokens <= no_context - 60,
            "{}",
            m.estimated_tokens
        );
        assert!(m.shown_lines < 40 && m.shown_lines > 1, "{}", m.shown_lines);
        assert_eq!(m.total_lines, 40);
        let note = m.trim_note().unwrap();
        assert!(
            note.starts_with(&format!(
                "The code was truncated after line {} of 40",
                m.shown_lines
            )),
            "{note}"
        );
        assert!(m.user.contains(&format!(
            "… (truncated: {} more lines not shown)",
            40 - m.shown_lines
        )));
        assert!(
            m.user
                .contains(&format!("Only lines 1-{} of 40 are shown", m.shown_lines))
        );
        // Never mid-line: the shown code is the first lines, whole.
        let kept: Vec<&str> = code.lines().take(m.shown_lines as usize).collect();
        assert!(
            m.user
                .contains(&format!("{}\n… (truncated", kept.join("\n")))
        );
    }

    #[test]
    fn truncation_prefers_a_statement_start() {
        let (code, _) = long_function();
        let mut req = request(Language::Python, &code);
        req.imports.clear();
        req.signatures.clear();
        // Find a window where exactly 4 whole lines fit.
        let mut cut_at = None;
        for window in 200..2000 {
            req.limits = ModelLimits {
                context_window: window,
                max_output_tokens: 0,
            };
            req.cut_lines = Vec::new();
            let Ok(plain) = build_messages(&req, &ActionKind::Explain, None) else {
                continue;
            };
            if plain.shown_lines == 4 {
                cut_at = Some(window);
                break;
            }
        }
        let window = cut_at.expect("some window fits exactly four lines");
        req.limits.context_window = window;
        // Statement starts at lines 1 and 3 (0-based): 3 keeps 3 lines of the 4 that fit.
        req.cut_lines = vec![1, 3];
        let m = build_messages(&req, &ActionKind::Explain, None).unwrap();
        assert_eq!(m.shown_lines, 3);
        // A statement start that keeps less than half is not worth it.
        req.cut_lines = vec![1];
        let m = build_messages(&req, &ActionKind::Explain, None).unwrap();
        assert_eq!(m.shown_lines, 4);
    }

    #[test]
    fn review_of_truncated_code_numbers_only_the_lines_shown() {
        let (code, cut_lines) = long_function();
        let mut req = request(Language::Python, &code);
        req.cut_lines = cut_lines;
        req.limits = ModelLimits {
            context_window: 900,
            max_output_tokens: 300,
        };
        let m = build_messages(&req, &ActionKind::Review, None).unwrap();
        assert!(m.trim.truncated);
        let n = m.shown_lines;
        assert!(
            m.system.contains(&format!("<= line_end <= {n}")),
            "{}",
            m.system
        );
        assert!(m.user.contains(&format!("{n} | ")), "{}", m.user);
        assert!(!m.user.contains(&format!("{} | ", n + 1)), "{}", m.user);
    }

    #[test]
    fn rewrites_are_never_cut() {
        let (code, _) = long_function();
        let mut req = request(Language::Python, &code);
        req.limits = ModelLimits {
            context_window: 600,
            max_output_tokens: 200,
        };
        let err = build_messages(&req, &ActionKind::Refactor, None).unwrap_err();
        assert!(matches!(
            err,
            PromptError::TooLargeToRewrite {
                lines: 40,
                budget: 400,
                ..
            }
        ));
        assert!(err.to_string().contains("delete the rest"), "{err}");
        let edit = custom("Fix {code}", ActionOutput::Edit);
        let err = build_messages(&req, &ActionKind::Custom("fix".into()), Some(&edit)).unwrap_err();
        assert!(matches!(err, PromptError::TooLargeToRewrite { .. }));
    }

    #[test]
    fn a_window_too_small_for_one_line_is_an_error() {
        let cases = [(0, 0), (100, 99), (150, 0), (1000, 2000)];
        for (window, reserve) in cases {
            let mut req = request(Language::Rust, CODE);
            req.limits = ModelLimits {
                context_window: window,
                max_output_tokens: reserve,
            };
            let err = build_messages(&req, &ActionKind::Explain, None).unwrap_err();
            assert!(
                matches!(err, PromptError::ContextTooSmall { budget, .. } if budget == window.saturating_sub(reserve)),
                "{window}/{reserve}: {err:?}"
            );
        }
    }

    #[test]
    fn crlf_code_is_shown_with_lf() {
        let req = request(Language::Rust, "fn f() {\r\n    g();\r\n}\r\n");
        let m = build_messages(&req, &ActionKind::Review, None).unwrap();
        assert!(
            m.user.contains("1 | fn f() {\n2 |     g();\n3 | }\n```"),
            "{}",
            m.user
        );
        assert!(!m.user.contains('\r'));
        assert_eq!(m.total_lines, 3);
    }

    #[test]
    fn target_kinds_in_words() {
        let cases = [
            (Language::Rust, "function_item", "function"),
            (Language::Rust, "impl_item", "impl block"),
            (Language::Java, "method_declaration", "method"),
            (Language::Cpp, "class_specifier", "class"),
            (Language::Ruby, "singleton_method", "method"),
            (Language::Php, "trait_declaration", "trait"),
            (Language::Lua, "function_declaration", "function"),
            (Language::Bash, "function_definition", "function"),
            (Language::Rust, "selection", "selected code"),
            (Language::Python, "file", "file"),
            (Language::Go, "", "code"),
            (Language::Python, "lambda", "lambda"),
        ];
        for (language, kind, want) in cases {
            assert_eq!(language.spec().describe(kind), want, "{kind:?}");
        }
    }

    #[test]
    fn plain_text_uses_a_text_fence() {
        let mut req = request(Language::PlainText, "hello");
        req.imports.clear();
        req.signatures.clear();
        let m = build_messages(&req, &ActionKind::Explain, None).unwrap();
        assert!(m.user.contains("(plain text)"), "{}", m.user);
        assert!(m.user.ends_with("```text\nhello\n```"), "{}", m.user);
    }
}
