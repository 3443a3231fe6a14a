//! C, and the tables of its family: C++ (`cpp.rs`) uses the same ones, so kinds that only
//! C++'s grammar has (`class_specifier`, `template_declaration`, …) are listed here too.
//! `rand()` is not a sensitive call (too common outside cryptography).

use super::SensitiveKind::{Crypto, Exec, PathFromInput, Sql};
use super::{
    Args::{BuiltAt, FirstNotConstant},
    BRACED, C_COMMENTS, CallShape,
    Callee::{Exact, Path, Prefix},
    Def, Import, Language, LanguageSpec, Name, Quote, Role,
    Role::*,
    Rule, Strings, rule, rule_if,
};

pub const SPEC: LanguageSpec = LanguageSpec {
    language: Language::C,
    name: "c",
    display_name: "C",
    language_ids: &[],
    extensions: &["c", "h"],
    file_names: &[],
    fence_tags: &["c", "h"],
    family: Language::C,
    grammar: Some(|| tree_sitter_c::LANGUAGE.into()),
    definitions: DEFINITIONS,
    assigned: &[],
    imports: &[Import::kind("preproc_include")],
    blocks: BRACED,
    strings: STRINGS,
    comments: C_COMMENTS,
    roles: ROLES,
    calls: CALLS,
    sensitive: &[RULES],
};

pub(super) const DEFINITIONS: &[Def] = &[
    Def::function("function_definition", "function").named(Name::Declarator),
    Def::container("struct_specifier", "struct").body_required(),
    Def::container("union_specifier", "union").body_required(),
    Def::container("enum_specifier", "enum").body_required(),
    Def::container("class_specifier", "class").body_required(),
    // Prototypes (`int f(void);`, a method declared in its class) and typedefs.
    Def::signature("declaration").named(Name::FunctionDeclarator),
    Def::signature("field_declaration").named(Name::FunctionDeclarator),
    Def::signature("type_definition").named(Name::Declarator),
    Def::namespace("namespace_definition"),
    Def::namespace("linkage_specification"),
    Def::wrapper("template_declaration"),
    Def::holder("declaration_list"),
    Def::holder("field_declaration_list"),
    Def::holder("preproc_ifdef"),
    Def::holder("preproc_if"),
    Def::holder("preproc_else"),
    Def::holder("preproc_elif"),
];

pub(super) const STRINGS: Strings = Strings {
    literals: &[
        "string_literal",
        "char_literal",
        "system_lib_string",
        "concatenated_string",
        "raw_string_literal",
    ],
    interpolations: &[],
    concat: &["+"],
    quotes: &[Quote::escaped('"', false), Quote::Char('\'')],
};

pub(super) const ROLES: &[(&str, Role)] = &[
    ("if_statement", If),
    ("for_statement", BranchNest),
    ("for_range_loop", BranchNest),
    ("while_statement", BranchNest),
    ("do_statement", BranchNest),
    ("switch_statement", Nest),
    ("try_statement", Nest),
    ("case_statement", Arm),
    ("catch_clause", Branch),
    ("conditional_expression", Branch),
    ("binary_expression", Logical),
    ("lambda_expression", Closure),
    ("compound_statement", Block),
];

pub(super) const CALLS: &[(&str, CallShape)] =
    &[("call_expression", CallShape::call("function", "arguments"))];

/// C, and the base of C++.
pub(super) const RULES: &[Rule] = &[
    rule(Exec, Path("system")),
    rule(Exec, Path("popen")),
    rule(Exec, Exact("_popen")),
    rule(Exec, Exact("execl")),
    rule(Exec, Exact("execlp")),
    rule(Exec, Exact("execle")),
    rule(Exec, Exact("execv")),
    rule(Exec, Exact("execvp")),
    rule(Exec, Exact("execvpe")),
    rule(Exec, Exact("execve")),
    rule(Exec, Exact("fexecve")),
    rule(Exec, Exact("posix_spawn")),
    rule(Exec, Exact("posix_spawnp")),
    rule(Exec, Exact("WinExec")),
    rule(Exec, Prefix("ShellExecute")),
    rule(Exec, Prefix("CreateProcess")),
    rule_if(Sql, Exact("sqlite3_exec"), BuiltAt(1)),
    rule_if(Sql, Prefix("sqlite3_prepare"), BuiltAt(1)),
    rule_if(Sql, Exact("mysql_query"), BuiltAt(1)),
    rule_if(Sql, Exact("mysql_real_query"), BuiltAt(1)),
    rule_if(Sql, Exact("PQexec"), BuiltAt(1)),
    rule(Crypto, Prefix("MD5")),
    rule(Crypto, Prefix("SHA1")),
    rule(Crypto, Prefix("SHA256")),
    rule(Crypto, Prefix("SHA512")),
    rule(Crypto, Prefix("EVP_")),
    rule(Crypto, Prefix("AES_")),
    rule(Crypto, Prefix("DES_")),
    rule(Crypto, Prefix("RSA_")),
    rule(Crypto, Prefix("HMAC")),
    rule(Crypto, Prefix("RAND_")),
    rule(Crypto, Exact("crypt")),
    rule_if(PathFromInput, Path("fopen"), FirstNotConstant),
    rule_if(PathFromInput, Path("freopen"), FirstNotConstant),
    rule_if(PathFromInput, Exact("open"), FirstNotConstant),
    rule_if(PathFromInput, Exact("creat"), FirstNotConstant),
];
