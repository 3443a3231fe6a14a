//! Prompt building: fill-in-the-middle prompts for each supported template, for APIs with a
//! native `suffix` field, and a chat prompt for models without FIM. Pure: text in, text out —
//! no I/O, no tokenizer, no knowledge of which provider sends the prompt.
//!
//! Each template renders the layout its model family was trained on, checked against the
//! family's own reference code (see the comment on each arm of [`render_template`]). The
//! order of the parts matters more than anything else here: a model given a suffix-first
//! layout it was not trained on produces nothing useful.
//!
//! Invariant: the rendered prompt starts with the same bytes for successive requests in the
//! same region (imports, then the window from its stable `prefix_start`), so the model
//! server's prompt cache is reused. Nothing variable (time, the cursor's position) goes first.
//! Context from other files goes first only in the repository layout a model was trained on
//! (Qwen2.5-Coder, StarCoder2), and it changes only when the user touches another file.

use std::sync::Arc;

use crate::syntax::context::CompletionContext;
use crate::tokens::estimate_tokens;

/// Another file's context for a FIM prompt: its path (relative to the workspace) and a text
/// from it (an outline, or a chunk the user touched), ending with a line break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherFile {
    pub name: String,
    pub text: Arc<str>,
}

/// Where a completion's file sits, for a template's repository layout: the repository's name,
/// the file's path in it, and context from other files.
#[derive(Debug, Clone, Copy)]
pub struct Repo<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub files: &'a [OtherFile],
}

/// A FIM layout that a model was trained on. The order of the parts must follow the
/// model's training: the same model given the wrong layout produces nothing useful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FimTemplate {
    Qwen,
    StarCoder,
    CodeLlama,
    DeepSeek,
    Codestral,
}

/// How a model is asked to fill in the middle (`fim` in `[models.*]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fim {
    /// The API's own `suffix` field; the server applies the model's template.
    Native,
    /// Pilotfish renders the template into a raw prompt.
    Template(FimTemplate),
}

impl Fim {
    /// Parses the config value (`"native"`, `"qwen"`, …).
    pub fn parse(name: &str) -> Option<Fim> {
        Some(match name {
            "native" => Fim::Native,
            "qwen" => Fim::Template(FimTemplate::Qwen),
            "starcoder" => Fim::Template(FimTemplate::StarCoder),
            "codellama" => Fim::Template(FimTemplate::CodeLlama),
            "deepseek" => Fim::Template(FimTemplate::DeepSeek),
            "codestral" => Fim::Template(FimTemplate::Codestral),
            _ => return None,
        })
    }
}

/// What is sent to a completion endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FimPrompt {
    /// The prompt: the rendered template, or (native) the prefix alone.
    pub prompt: String,
    /// The suffix for the API's `suffix` field (native only).
    pub suffix: Option<String>,
    /// Stop sequences: the template's special tokens, plus a line break for single-line.
    pub stop: Vec<String>,
}

impl FimTemplate {
    /// Whether the family was trained on a repository layout (other files before the one with
    /// the hole), so that other files' context has a place in its prompt.
    pub fn has_repo_layout(self) -> bool {
        matches!(self, FimTemplate::Qwen | FimTemplate::StarCoder)
    }

    /// The special tokens that end the middle or start another section: generation stops at
    /// any of them. Includes the end-of-text token of the family.
    pub fn stop_tokens(self) -> &'static [&'static str] {
        match self {
            // Qwen2.5-Coder README: generation ends at any of these ids (151643..151664).
            FimTemplate::Qwen => &[
                "<|endoftext|>",
                "<|fim_prefix|>",
                "<|fim_suffix|>",
                "<|fim_middle|>",
                "<|fim_pad|>",
                "<|file_sep|>",
                "<|repo_name|>",
                "<|im_end|>",
            ],
            // StarCoder: `<|endoftext|>`; StarCoder2 adds `<file_sep>` between files.
            FimTemplate::StarCoder => &[
                "<|endoftext|>",
                "<fim_prefix>",
                "<fim_suffix>",
                "<fim_middle>",
                "<fim_pad>",
                "<file_sep>",
            ],
            FimTemplate::CodeLlama => &["<EOT>", "<PRE>", "<SUF>", "<MID>"],
            // `<｜end▁of▁sentence｜>` is the base model's EOS; `<|EOT|>` the instruct model's.
            FimTemplate::DeepSeek => &[
                "<｜end▁of▁sentence｜>",
                "<|EOT|>",
                "<｜fim▁begin｜>",
                "<｜fim▁hole｜>",
                "<｜fim▁end｜>",
            ],
            FimTemplate::Codestral => &["</s>", "[PREFIX]", "[SUFFIX]", "[MIDDLE]"],
        }
    }
}

/// The text that precedes the cursor in the prompt: the imports that lie outside the window
/// (in file order), a blank line, then the window. Deterministic, so that successive prompts
/// share their start.
pub fn prompt_prefix(ctx: &CompletionContext) -> String {
    if ctx.imports.is_empty() {
        return ctx.prefix.clone();
    }
    let mut out = ctx.imports.join("\n");
    out.push_str("\n\n");
    out.push_str(&ctx.prefix);
    out
}

/// Renders `template` around `prefix` and `suffix`.
pub fn render_template(template: FimTemplate, prefix: &str, suffix: &str) -> String {
    match template {
        // Qwen2.5-Coder README ("prefix_code + suffix_code" example): prefix-suffix-middle.
        FimTemplate::Qwen => format!("<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"),
        // bigcode/starcoder model card: `<fim_prefix>…<fim_suffix>…<fim_middle>`.
        FimTemplate::StarCoder => format!("<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"),
        // Meta's codellama generation.py: `"<PRE> {pre} <SUF>{suf} <MID>"`. The spaces are
        // part of the trained layout: the special tokens are `▁<SUF>`/`▁<MID>` and the prefix
        // is encoded with SentencePiece's leading space, the suffix without.
        FimTemplate::CodeLlama => format!("<PRE> {prefix} <SUF>{suffix} <MID>"),
        // DeepSeek-Coder README ("Code Insertion"): fullwidth bars `｜` and `▁`, not ASCII.
        FimTemplate::DeepSeek => {
            format!("<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>")
        }
        // Suffix first. mistral-common's encode_fim test renders
        // `<s>[SUFFIX]return▁a▁+▁b[PREFIX]▁def▁f(`: the prefix carries SentencePiece's
        // leading space, the suffix does not; Ollama's codestral template writes the same
        // layout as `[SUFFIX]{{ .Suffix }}[PREFIX] {{ .Prompt }}`. The server adds `<s>`.
        FimTemplate::Codestral => format!("[SUFFIX]{suffix}[PREFIX] {prefix}"),
    }
}

/// Builds the FIM prompt for `ctx`.
pub fn build_fim(fim: Fim, ctx: &CompletionContext) -> FimPrompt {
    let prefix = prompt_prefix(ctx);
    let mut stop: Vec<String> = match fim {
        Fim::Native => Vec::new(),
        Fim::Template(t) => t.stop_tokens().iter().map(|s| s.to_string()).collect(),
    };
    // A single line ends at the line break; at the end of a line the suggestion may
    // be the next line, which starts with one.
    if !ctx.shape.multiline && !ctx.shape.next_line {
        stop.push("\n".to_string());
    }
    match fim {
        Fim::Native => FimPrompt {
            prompt: prefix,
            suffix: Some(ctx.suffix.clone()),
            stop,
        },
        Fim::Template(t) => FimPrompt {
            prompt: render_template(t, &prefix, &ctx.suffix),
            suffix: None,
            stop,
        },
    }
}

/// Builds the FIM prompt for `ctx` in a file of `repo`: for a template with a repository
/// layout and context from other files, the layout the family was trained on — each other
/// file under its path, then the file with the hole under its own; otherwise (no other files,
/// or a template or API without such a layout) the prompt of [`build_fim`].
pub fn build_fim_in_repo(fim: Fim, ctx: &CompletionContext, repo: &Repo) -> FimPrompt {
    let mut built = build_fim(fim, ctx);
    let Fim::Template(template) = fim else {
        return built;
    };
    if repo.files.is_empty() || !template.has_repo_layout() {
        return built;
    }
    let prefix = prompt_prefix(ctx);
    let suffix = &ctx.suffix;
    let mut out = String::with_capacity(
        built.prompt.len()
            + repo
                .files
                .iter()
                .map(|f| f.name.len() + f.text.len() + 16)
                .sum::<usize>()
            + 64,
    );
    let (path, files) = (repo.path, repo.files);
    match template {
        // Qwen2.5-Coder technical report, figure 4 ("Repo-Level FIM format"):
        // `<|repo_name|>{repo}\n<|file_sep|>{path1}\n{content1}\n<|file_sep|>{path2}\n…
        // <|file_sep|>{path}\n<|fim_prefix|>{pre}<|fim_suffix|>{suf}<|fim_middle|>`.
        FimTemplate::Qwen => {
            out.push_str(&format!("<|repo_name|>{}\n", repo.name));
            push_files(&mut out, "<|file_sep|>", files);
            out.push_str(&format!(
                "<|file_sep|>{path}\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
            ));
        }
        // StarCoder2 paper, section 5.1: `<repo_name>reponame<file_sep>filepath0\ncode0
        // <file_sep><fim_prefix>filepath1\ncode1_pre<fim_suffix>code1_suf<fim_middle>` — no
        // line break after the name, and the hole's file path inside the FIM prefix.
        FimTemplate::StarCoder => {
            out.push_str(&format!("<repo_name>{}", repo.name));
            push_files(&mut out, "<file_sep>", files);
            out.push_str(&format!(
                "<file_sep><fim_prefix>{path}\n{prefix}<fim_suffix>{suffix}<fim_middle>"
            ));
        }
        _ => return built,
    }
    built.prompt = out;
    built
}

/// Each file after `separator`: its path, a line break, its text (ending with a line break).
fn push_files(out: &mut String, separator: &str, files: &[OtherFile]) {
    for f in files {
        out.push_str(&format!("{separator}{}\n{}", f.name, f.text));
        if !f.text.ends_with('\n') {
            out.push('\n');
        }
    }
}

/// The other files that fit beside the prompt in a model's context window: the newest (the
/// last ones) whose estimated tokens, with a quarter kept spare (code often takes more tokens
/// than the estimate), fit in what `ctx`'s prompt and `max_tokens` of answer leave free.
pub fn fit_other_files<'a>(
    files: &'a [OtherFile],
    ctx: &CompletionContext,
    context_window: u32,
    max_tokens: u32,
) -> &'a [OtherFile] {
    let prompt = estimate_tokens(&prompt_prefix(ctx)) + estimate_tokens(&ctx.suffix);
    let free = (context_window as usize).saturating_sub(prompt + max_tokens as usize);
    let room = free * 3 / 4;
    let mut used = 0;
    let mut first = files.len();
    for (i, f) in files.iter().enumerate().rev() {
        used += estimate_tokens(&f.name) + estimate_tokens(&f.text) + 2;
        if used > room {
            break;
        }
        first = i;
    }
    &files[first..]
}

/// The marker that stands for the cursor in a chat prompt.
pub const CURSOR_MARKER: &str = "<CURSOR>";

/// A `(system, user)` message pair for a chat-only model. The answer is expected to be the
/// bare code for the cursor; post-processing still copes with fences and prose around it.
pub fn chat_completion_messages(ctx: &CompletionContext) -> (String, String) {
    let scope = if ctx.shape.multiline {
        "Complete the code at the cursor; you may write several lines, but stop at the end of \
         the enclosing block."
    } else {
        "Complete only the rest of the line at the cursor."
    };
    let system = format!(
        "You are a code completion engine. The user shows a {} file with {CURSOR_MARKER} \
         marking the cursor. Reply with only the code to insert at {CURSOR_MARKER}: no \
         explanation, no markdown fences, and do not repeat the code before or after the \
         cursor. {scope} If nothing should be inserted, reply with nothing.",
        ctx.language.name()
    );
    let user = format!("{}{CURSOR_MARKER}{}", prompt_prefix(ctx), ctx.suffix);
    (system, user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::Language;
    use crate::syntax::context::SuggestionShape;

    /// Builds a context from a fixture with a `$0` cursor; the window is the whole fixture.
    fn ctx(fixture: &str, multiline: bool, imports: &[&str]) -> CompletionContext {
        let (prefix, suffix) = fixture.split_once("$0").expect("fixture needs a $0 cursor");
        let line_before = prefix.rsplit('\n').next().unwrap_or("").to_string();
        let line_after = suffix
            .split('\n')
            .next()
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string();
        CompletionContext {
            language: Language::Python,
            imports: imports.iter().map(|s| s.to_string()).collect(),
            prefix_start: 0,
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            scope_chain: Vec::new(),
            shape: SuggestionShape {
                multiline,
                line_before,
                line_after,
                block_indent: None,
                next_line: false,
            },
        }
    }

    const FIXTURE: &str = "def add(a, b):\n    return $0\n\nprint(add(1, 2))\n";

    #[test]
    fn parses_every_config_name() {
        let cases = [
            ("native", Some(Fim::Native)),
            ("qwen", Some(Fim::Template(FimTemplate::Qwen))),
            ("starcoder", Some(Fim::Template(FimTemplate::StarCoder))),
            ("codellama", Some(Fim::Template(FimTemplate::CodeLlama))),
            ("deepseek", Some(Fim::Template(FimTemplate::DeepSeek))),
            ("codestral", Some(Fim::Template(FimTemplate::Codestral))),
            ("Qwen", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(Fim::parse(name), want, "{name:?}");
        }
    }

    #[test]
    fn every_template_renders_its_trained_layout() {
        let p = "def add(a, b):\n    return ";
        let s = "\n\nprint(add(1, 2))\n";
        let cases: [(FimTemplate, String, &[&str]); 5] = [
            (
                FimTemplate::Qwen,
                format!("<|fim_prefix|>{p}<|fim_suffix|>{s}<|fim_middle|>"),
                &[
                    "<|endoftext|>",
                    "<|fim_prefix|>",
                    "<|fim_suffix|>",
                    "<|fim_middle|>",
                    "<|fim_pad|>",
                    "<|file_sep|>",
                    "<|repo_name|>",
                    "<|im_end|>",
                ],
            ),
            (
                FimTemplate::StarCoder,
                format!("<fim_prefix>{p}<fim_suffix>{s}<fim_middle>"),
                &[
                    "<|endoftext|>",
                    "<fim_prefix>",
                    "<fim_suffix>",
                    "<fim_middle>",
                    "<fim_pad>",
                    "<file_sep>",
                ],
            ),
            (
                FimTemplate::CodeLlama,
                format!("<PRE> {p} <SUF>{s} <MID>"),
                &["<EOT>", "<PRE>", "<SUF>", "<MID>"],
            ),
            (
                FimTemplate::DeepSeek,
                format!("<｜fim▁begin｜>{p}<｜fim▁hole｜>{s}<｜fim▁end｜>"),
                &[
                    "<｜end▁of▁sentence｜>",
                    "<|EOT|>",
                    "<｜fim▁begin｜>",
                    "<｜fim▁hole｜>",
                    "<｜fim▁end｜>",
                ],
            ),
            (
                FimTemplate::Codestral,
                format!("[SUFFIX]{s}[PREFIX] {p}"),
                &["</s>", "[PREFIX]", "[SUFFIX]", "[MIDDLE]"],
            ),
        ];
        for (template, want_prompt, want_stop) in cases {
            let got = build_fim(Fim::Template(template), &ctx(FIXTURE, true, &[]));
            assert_eq!(got.prompt, want_prompt, "{template:?}");
            assert_eq!(got.suffix, None, "{template:?}");
            assert_eq!(got.stop, want_stop, "{template:?}");
        }
    }

    #[test]
    fn literal_expected_prompts() {
        // The same data as above written out by hand, so a change to a template cannot be
        // mirrored by a change to the test's own format strings.
        let c = ctx("fn f() {\n    $0\n}", true, &[]);
        let cases = [
            (
                FimTemplate::Qwen,
                "<|fim_prefix|>fn f() {\n    <|fim_suffix|>\n}<|fim_middle|>",
            ),
            (
                FimTemplate::StarCoder,
                "<fim_prefix>fn f() {\n    <fim_suffix>\n}<fim_middle>",
            ),
            (
                FimTemplate::CodeLlama,
                "<PRE> fn f() {\n     <SUF>\n} <MID>",
            ),
            (
                FimTemplate::DeepSeek,
                "<｜fim▁begin｜>fn f() {\n    <｜fim▁hole｜>\n}<｜fim▁end｜>",
            ),
            (FimTemplate::Codestral, "[SUFFIX]\n}[PREFIX] fn f() {\n    "),
        ];
        for (template, want) in cases {
            assert_eq!(
                build_fim(Fim::Template(template), &c).prompt,
                want,
                "{template:?}"
            );
        }
    }

    #[test]
    fn native_sends_prefix_and_suffix_separately() {
        let got = build_fim(Fim::Native, &ctx(FIXTURE, true, &[]));
        assert_eq!(
            got,
            FimPrompt {
                prompt: "def add(a, b):\n    return ".to_string(),
                suffix: Some("\n\nprint(add(1, 2))\n".to_string()),
                stop: vec![],
            }
        );
    }

    #[test]
    fn imports_come_first_then_a_blank_line() {
        let c = ctx(
            "    return $0\n",
            true,
            &["import os", "from sys import argv"],
        );
        let native = build_fim(Fim::Native, &c);
        assert_eq!(
            native.prompt,
            "import os\nfrom sys import argv\n\n    return "
        );
        let qwen = build_fim(Fim::Template(FimTemplate::Qwen), &c);
        assert_eq!(
            qwen.prompt,
            "<|fim_prefix|>import os\nfrom sys import argv\n\n    return <|fim_suffix|>\n<|fim_middle|>"
        );
        let codestral = build_fim(Fim::Template(FimTemplate::Codestral), &c);
        assert_eq!(
            codestral.prompt,
            "[SUFFIX]\n[PREFIX] import os\nfrom sys import argv\n\n    return "
        );
    }

    #[test]
    fn single_line_adds_a_line_break_stop() {
        let single = ctx(FIXTURE, false, &[]);
        let multi = ctx(FIXTURE, true, &[]);
        assert_eq!(build_fim(Fim::Native, &single).stop, vec!["\n".to_string()]);
        assert!(build_fim(Fim::Native, &multi).stop.is_empty());
        let stop = build_fim(Fim::Template(FimTemplate::CodeLlama), &single).stop;
        assert_eq!(stop, ["<EOT>", "<PRE>", "<SUF>", "<MID>", "\n"]);
        let stop = build_fim(Fim::Template(FimTemplate::CodeLlama), &multi).stop;
        assert_eq!(stop, ["<EOT>", "<PRE>", "<SUF>", "<MID>"]);
    }

    #[test]
    fn successive_prompts_in_a_region_share_their_start() {
        let a = build_fim(
            Fim::Template(FimTemplate::Qwen),
            &ctx("x = 1\ny = $0\n", false, &["import os"]),
        );
        let b = build_fim(
            Fim::Template(FimTemplate::Qwen),
            &ctx("x = 1\ny = 2$0\n", false, &["import os"]),
        );
        assert!(
            b.prompt
                .starts_with(&a.prompt[..a.prompt.find("<|fim_suffix|>").unwrap()])
        );
    }

    fn other(name: &str, text: &str) -> OtherFile {
        OtherFile {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Qwen2.5-Coder's and StarCoder2's repository layouts, written out by hand from their
    /// references; every other template and the native API ignore other files, and without
    /// other files the layout is the plain one.
    #[test]
    fn repository_layouts_put_other_files_before_the_hole() {
        let c = ctx("fn f() {\n    $0\n}", true, &[]);
        let files = [
            other("src/util.rs", "fn parse(s: &str) -> u32;\n"),
            other("src/lib.rs", "fn g() {\n    parse(\"1\")\n}"),
        ];
        let repo = Repo {
            name: "proj",
            path: "src/main.rs",
            files: &files,
        };
        let cases = [
            (
                Fim::Template(FimTemplate::Qwen),
                "<|repo_name|>proj\n<|file_sep|>src/util.rs\nfn parse(s: &str) -> u32;\n<|file_sep|>src/lib.rs\nfn g() {\n    parse(\"1\")\n}\n<|file_sep|>src/main.rs\n<|fim_prefix|>fn f() {\n    <|fim_suffix|>\n}<|fim_middle|>",
            ),
            (
                Fim::Template(FimTemplate::StarCoder),
                "<repo_name>proj<file_sep>src/util.rs\nfn parse(s: &str) -> u32;\n<file_sep>src/lib.rs\nfn g() {\n    parse(\"1\")\n}\n<file_sep><fim_prefix>src/main.rs\nfn f() {\n    <fim_suffix>\n}<fim_middle>",
            ),
        ];
        for (fim, want) in cases {
            let got = build_fim_in_repo(fim, &c, &repo);
            assert_eq!(got.prompt, want, "{fim:?}");
            assert_eq!(got.stop, build_fim(fim, &c).stop, "{fim:?}");
        }
        let plain = [
            Fim::Native,
            Fim::Template(FimTemplate::CodeLlama),
            Fim::Template(FimTemplate::DeepSeek),
            Fim::Template(FimTemplate::Codestral),
        ];
        for fim in plain {
            assert_eq!(
                build_fim_in_repo(fim, &c, &repo),
                build_fim(fim, &c),
                "{fim:?}"
            );
        }
        let alone = Repo { files: &[], ..repo };
        for fim in [
            Fim::Template(FimTemplate::Qwen),
            Fim::Template(FimTemplate::StarCoder),
        ] {
            assert_eq!(
                build_fim_in_repo(fim, &c, &alone),
                build_fim(fim, &c),
                "{fim:?}"
            );
        }
    }

    /// Other files fit beside the prompt and the answer in the context window, with a quarter
    /// spare; the newest (last) are kept.
    #[test]
    fn other_files_that_fit_the_context_window() {
        let c = ctx(&format!("{}$0", "x".repeat(400)), false, &[]); // 100 tokens
        let files: Vec<OtherFile> = (0..4)
            .map(|i| other(&format!("f{i}.py"), &"y".repeat(396))) // 2 + 99 + 2 tokens
            .collect();
        let kept = |window| fit_other_files(&files, &c, window, 64).len();
        let cases = [
            (8192, 4),
            // 100 + 64 of prompt and answer; room = 3/4 of what is left.
            (164 + 4 * 103 * 4 / 3 + 1, 4),
            (164 + 4 * 103 * 4 / 3 - 4, 3),
            (164 + 103 * 4 / 3 + 2, 1),
            (164 + 100, 0),
            (100, 0),
        ];
        for (window, want) in cases {
            assert_eq!(kept(window), want, "window {window}");
        }
        let newest = fit_other_files(&files, &c, 164 + 2 * 103 * 4 / 3 + 2, 64);
        assert_eq!(
            newest.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["f2.py", "f3.py"]
        );
    }

    #[test]
    fn chat_messages_mark_the_cursor() {
        let (system, user) = chat_completion_messages(&ctx(FIXTURE, false, &["import math"]));
        assert!(system.contains("<CURSOR>"), "{system}");
        assert!(system.contains("python"), "{system}");
        assert!(system.contains("rest of the line"), "{system}");
        assert_eq!(
            user,
            "import math\n\ndef add(a, b):\n    return <CURSOR>\n\nprint(add(1, 2))\n"
        );
        let (system, _) = chat_completion_messages(&ctx(FIXTURE, true, &[]));
        assert!(system.contains("several lines"), "{system}");
    }
}
