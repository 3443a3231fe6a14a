//! An action's prompt again, for a model server that refused it as longer than the model's
//! context: `context_window` may say more than the server runs with (llama-server's `-c`,
//! vLLM's `--max-model-len`), and this crate's four-characters-a-token estimate may count fewer
//! tokens than the model's vocabulary does (digits, for one, are a token each in Qwen's).
//! What the refusal says of both sizes decides how much smaller the next prompt is.
//! Pure: sizes in, a prompt budget and a note out.

use crate::providers::too_long::Sizes;

use super::ModelLimits;

/// The limits to build the prompt again with, for a server that refused a prompt estimated
/// at `estimated` tokens, built for `limits`, saying `sizes`. The answer keeps its room;
/// the prompt gets what the server takes ([`Sizes::prompt_room`]). A refusal that does not
/// say the server's context halves the prompt.
pub fn limits_after(limits: ModelLimits, estimated: u32, sizes: Sizes) -> ModelLimits {
    let budget = sizes
        .prompt_room(estimated, limits.max_output_tokens)
        .unwrap_or(estimated / 2);
    ModelLimits {
        context_window: budget.saturating_add(limits.max_output_tokens),
        max_output_tokens: limits.max_output_tokens,
    }
}

/// What the user is told: the code was cut for `model`'s server, and how to have prompts
/// built for it from the start.
pub fn note(model: &str, configured: u32, sizes: Sizes) -> String {
    match sizes.context {
        Some(context) => format!(
            "{model}'s server runs a context of {context} tokens, fewer than context_window = \
             {configured}: the code was cut to fit it. Set context_window = {context} under \
             [models.{model}], or give the server a longer context (llama-server's -c, vLLM's \
             --max-model-len)."
        ),
        None => format!(
            "{model}'s server took no prompt this long (context_window = {configured}): the \
             code was cut to fit. Set context_window under [models.{model}] to the context the \
             server runs with."
        ),
    }
}

/// Why a prompt cut for `model`'s server still does not fit, in the server's words.
pub fn server_context(model: &str, sizes: Sizes) -> String {
    match sizes.context {
        Some(context) => format!("{model}'s server runs a context of {context} tokens"),
        None => format!("{model}'s server took no longer prompt"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_much_smaller_the_prompt_gets() {
        let limits = ModelLimits {
            context_window: 8192,
            max_output_tokens: 1024,
        };
        let sized = |context, prompt| Sizes {
            context: Some(context),
            prompt: Some(prompt),
        };
        // (estimated tokens of the refused prompt, what the server said, the new prompt budget)
        let cases = [
            // llama-server counted 9,627 where the estimate said 5,200: its 3,072 free
            // tokens are ~1,660 estimated ones, less the margin.
            (5_200, sized(4096, 9_627), 1_493),
            // It counts as the estimate does: what its context leaves, less the margin.
            (6_000, sized(4096, 6_000), 2_764),
            // A context that the refused prompt nearly fitted: still a tenth smaller.
            (6_000, sized(8_000, 6_100), 5_400),
            // The context alone (no prompt size): taken as counted like the estimate.
            (
                7_000,
                Sizes {
                    context: Some(4096),
                    prompt: None,
                },
                2_764,
            ),
            // Nothing said: half.
            (7_000, Sizes::default(), 3_500),
            // A context the answer alone fills: nothing left for a prompt.
            (7_000, sized(1_000, 7_700), 0),
        ];
        for (estimated, sizes, budget) in cases {
            let after = limits_after(limits, estimated, sizes);
            assert_eq!(after.max_output_tokens, 1024, "{sizes:?}");
            assert_eq!(after.prompt_budget(), budget, "{estimated} {sizes:?}");
        }
    }
}
