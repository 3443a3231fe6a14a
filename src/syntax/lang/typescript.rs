//! TypeScript and TSX: JavaScript's tables (`javascript.rs` lists the TypeScript-only node
//! kinds too) over TypeScript's grammars.

use super::javascript::{ASSIGNED, CALLS, DEFINITIONS, IMPORTS, ROLES, RULES, STRINGS};
use super::{BRACED, C_COMMENTS, Language, LanguageSpec};

pub const SPEC: LanguageSpec = LanguageSpec {
    language: Language::TypeScript,
    name: "typescript",
    display_name: "TypeScript",
    language_ids: &[],
    extensions: &["ts", "mts", "cts"],
    file_names: &[],
    fence_tags: &["typescript", "ts", "mts", "cts"],
    family: Language::JavaScript,
    grammar: Some(|| tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into()),
    definitions: DEFINITIONS,
    assigned: ASSIGNED,
    imports: IMPORTS,
    blocks: BRACED,
    strings: STRINGS,
    comments: C_COMMENTS,
    roles: ROLES,
    calls: CALLS,
    sensitive: &[RULES],
};

pub const TSX: LanguageSpec = LanguageSpec {
    language: Language::Tsx,
    name: "tsx",
    display_name: "TSX",
    language_ids: &["typescriptreact"],
    extensions: &["tsx"],
    fence_tags: &["tsx", "typescriptreact"],
    grammar: Some(|| tree_sitter_typescript::LANGUAGE_TSX.into()),
    ..SPEC
};
