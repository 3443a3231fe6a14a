//! Token estimates: the one rule for how many model tokens a text costs when nobody counted
//! them (prompt budgets, routing features, context-window fit, the day's spend). A token is
//! taken as four characters — close for code and English with the BPE vocabularies of the
//! models we route to, and the same everywhere, so a prompt that fits one check fits all.
//!
//! Must not: tokenize for real (that needs each model's vocabulary), or be re-derived
//! elsewhere — call these.

/// How many characters one token stands for.
pub const CHARS_PER_TOKEN: usize = 4;

/// Estimated tokens of a text of `chars` characters (rounded up: one character costs a token).
pub fn tokens_for_chars(chars: usize) -> usize {
    chars.div_ceil(CHARS_PER_TOKEN)
}

/// Estimated tokens of `text`.
pub fn estimate_tokens(text: &str) -> usize {
    tokens_for_chars(text.chars().count())
}

/// How many characters fit in `tokens` (for windows sized in tokens).
pub fn chars_for_tokens(tokens: usize) -> usize {
    tokens.saturating_mul(CHARS_PER_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_table() {
        let cases = [
            ("", 0),
            ("a", 1),
            ("abcd", 1),
            ("abcde", 2),
            ("é🦀世界", 1),
            ("日本語です!", 2),
        ];
        for (text, want) in cases {
            assert_eq!(estimate_tokens(text), want, "{text:?}");
        }
        assert_eq!(chars_for_tokens(usize::MAX), usize::MAX);
        assert_eq!(chars_for_tokens(75), 300);
    }
}
