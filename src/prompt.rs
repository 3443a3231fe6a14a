//! Prompt building: fill-in-the-middle prompts for each supported template and for APIs with
//! a native `suffix` field. Pure: text in, text out.
//!
//! STUB — to be completed.

use crate::syntax::context::CompletionContext;

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

/// Builds the FIM prompt for `ctx`.
pub fn build_fim(fim: Fim, ctx: &CompletionContext) -> FimPrompt {
    let prefix = ctx.prefix.clone();
    let mut stop = Vec::new();
    if !ctx.shape.multiline {
        stop.push("\n".to_string());
    }
    match fim {
        Fim::Native => FimPrompt {
            prompt: prefix,
            suffix: Some(ctx.suffix.clone()),
            stop,
        },
        Fim::Template(_) => FimPrompt {
            prompt: format!(
                "<|fim_prefix|>{prefix}<|fim_suffix|>{}<|fim_middle|>",
                ctx.suffix
            ),
            suffix: None,
            stop,
        },
    }
}
