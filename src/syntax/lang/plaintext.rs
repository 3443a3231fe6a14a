//! Plain text: any file of a language Pilotfish does not parse. No grammar: completion works
//! on lines, and `{` at a line's end still opens a block.

use super::{BRACED, Comments, Language, LanguageSpec, Strings};

pub const SPEC: LanguageSpec = LanguageSpec {
    language: Language::PlainText,
    name: "plaintext",
    display_name: "plain text",
    language_ids: &[],
    extensions: &[],
    file_names: &[],
    fence_tags: &["text"],
    family: Language::PlainText,
    grammar: None,
    definitions: &[],
    assigned: &[],
    imports: &[],
    blocks: BRACED,
    strings: Strings {
        literals: &[],
        interpolations: &[],
        concat: &[],
        quotes: &[],
    },
    comments: Comments {
        line: &[],
        block: &[],
        line_at_word_start: false,
    },
    roles: &[],
    calls: &[],
    sensitive: &[],
};
