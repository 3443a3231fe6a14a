//! Post-processing of a raw model answer into a suggestion that fits the cursor: special
//! tokens and fences stripped, cut to one line or to the enclosing block, text that already
//! follows the cursor trimmed, brackets balanced against the suffix, and useless answers
//! (empty, repeating the code around) dropped. Pure.
//!
//! STUB — to be completed.

use crate::syntax::context::CompletionContext;

/// Turns the model's raw text into the suggestion to show, or `None` to show nothing.
pub fn postprocess(raw: &str, ctx: &CompletionContext, stop: &[String]) -> Option<String> {
    let mut text = raw.to_string();
    for s in stop {
        if let Some(i) = text.find(s.as_str()) {
            text.truncate(i);
        }
    }
    if !ctx.shape.multiline {
        if let Some(i) = text.find('\n') {
            text.truncate(i);
        }
    }
    let text = text.trim_end().to_string();
    if text.trim().is_empty() {
        None
    } else {
        Some(text)
    }
}
