//! C++: C's tables (`c.rs` lists the C++-only node kinds too) over C++'s grammar, with
//! `using` as an import and the method-call rules C++ adds to C's sensitive calls.

use super::SensitiveKind::{PathFromInput, Sql};
use super::c::{CALLS, DEFINITIONS, ROLES, RULES as C_RULES, STRINGS};
use super::{
    Args::FirstNotConstant, BRACED, C_COMMENTS, Callee::Method, Import, Language, LanguageSpec,
    Rule, SQL, rule_if,
};

pub const SPEC: LanguageSpec = LanguageSpec {
    language: Language::Cpp,
    name: "cpp",
    display_name: "C++",
    language_ids: &["c++"],
    extensions: &["cc", "cpp", "cxx", "hpp", "hh", "hxx"],
    file_names: &[],
    fence_tags: &["cpp", "c++", "cc", "cxx", "hpp", "hh", "hxx", "cplusplus"],
    family: Language::C,
    grammar: Some(|| tree_sitter_cpp::LANGUAGE.into()),
    definitions: DEFINITIONS,
    assigned: &[],
    imports: &[
        Import::kind("preproc_include"),
        Import::kind("using_declaration"),
    ],
    blocks: BRACED,
    strings: STRINGS,
    comments: C_COMMENTS,
    roles: ROLES,
    calls: CALLS,
    sensitive: &[C_RULES, RULES],
};

/// What C++ adds to C.
const RULES: &[Rule] = &[
    rule_if(Sql, Method("exec"), SQL),
    rule_if(Sql, Method("execute"), SQL),
    rule_if(Sql, Method("executeQuery"), SQL),
    rule_if(PathFromInput, Method("open"), FirstNotConstant),
];
