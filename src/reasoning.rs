//! What a thinking model writes before its answer inside `<think>…</think>` is not the
//! answer — drafts of code and findings may be in it, and a completion's reasoning is not
//! ghost text — and is dropped before the answer is read (an Explain page does not show
//! it either).

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// The answer a thinking model gives after its reasoning, when the reasoning is in the text
/// (DeepSeek-R1, Qwen3, QwQ and their distills behind llama-server with
/// `--reasoning-format none`, or a server that passes the text through): a `<think>` block
/// at the start is dropped, and so is the text before a first `</think>` on a line of its
/// own with no `<think>` and no code fence before it — a chat template that opens the block
/// itself (R1's ends the prompt with `<think>`) leaves only its end in the answer; a
/// `</think>` within a line is an explanation's word. Other answers are returned
/// whole; servers that send the reasoning in a field of its own (`reasoning_content`,
/// Ollama's `thinking`) already leave it out. None: the reasoning never ended (the answer
/// was cut while the model was still thinking).
pub fn after_reasoning(answer: &str) -> Option<&str> {
    let start = answer.trim_start();
    if let Some(reasoning) = start.strip_prefix(THINK_OPEN) {
        let end = reasoning.find(THINK_CLOSE)?;
        return Some(&reasoning[end + THINK_CLOSE.len()..]);
    }
    let Some(end) = answer.find(THINK_CLOSE) else {
        return Some(answer);
    };
    let (before, after) = (&answer[..end], &answer[end + THINK_CLOSE.len()..]);
    let own_line = (before.is_empty() || before.ends_with('\n'))
        && after
            .lines()
            .next()
            .is_none_or(|rest| rest.trim().is_empty());
    if own_line && !before.contains(THINK_OPEN) && !before.contains("```") {
        Some(after)
    } else {
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_follows_the_reasoning() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "no reasoning",
                "## What it does\n\nAdds.",
                Some("## What it does\n\nAdds."),
            ),
            (
                "a think block, then the answer",
                "<think>\nThe user wants a summary.\n</think>\n\n## What it does",
                Some("\n\n## What it does"),
            ),
            (
                "a think block after blank lines",
                "\n\n<think>hm</think>answer",
                Some("answer"),
            ),
            (
                "a draft of the code inside the block is not the answer",
                "<think>Maybe\n```rust\nfn f() { 1 }\n```\nno.</think>\n```rust\nfn f() {}\n```",
                Some("\n```rust\nfn f() {}\n```"),
            ),
            (
                "opened by the chat template: only the end is in the answer",
                "Okay, the user wants a review.\n</think>\n\n{\"findings\": []}",
                Some("\n\n{\"findings\": []}"),
            ),
            ("cut while still thinking", "<think>\nFirst, the loop", None),
            (
                "</think> inside the answer's code is the answer's",
                "```html\n<p></think></p>\n```",
                Some("```html\n<p></think></p>\n```"),
            ),
            (
                "a </think> within a line is an explanation's word",
                "It strips `</think>` and what came before it.\n",
                Some("It strips `</think>` and what came before it.\n"),
            ),
            (
                "a think tag further on is the answer's",
                "The tag <think> opens it, and </think> closes it.",
                Some("The tag <think> opens it, and </think> closes it."),
            ),
            ("empty", "", Some("")),
        ];
        for (name, answer, want) in cases {
            assert_eq!(after_reasoning(answer), *want, "{name}");
        }
    }
}
