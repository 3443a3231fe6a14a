//! JavaScript, and the tables of its family: TypeScript and TSX (`typescript.rs`) use the
//! same ones, so kinds that only TypeScript's grammar has (`interface_declaration`,
//! `abstract_class_declaration`, …) are listed here too.

use super::SensitiveKind::{Crypto, Deserialize, Eval, Exec, PathFromInput, Sql};
use super::{
    Args::{FirstIsString, FirstNotConstant},
    Assigned, BRACED, C_COMMENTS, CallShape,
    Callee::{Exact, Method, New, Path, Prefix},
    Def, Import, Language, LanguageSpec, Quote, Role,
    Role::*,
    Rule, SQL, Strings, rule, rule_if,
};

pub const SPEC: LanguageSpec = LanguageSpec {
    language: Language::JavaScript,
    name: "javascript",
    display_name: "JavaScript",
    language_ids: &["javascriptreact", "jsx"],
    extensions: &["js", "mjs", "cjs", "jsx"],
    file_names: &[],
    fence_tags: &["javascript", "js", "jsx", "mjs", "cjs", "node"],
    family: Language::JavaScript,
    grammar: Some(|| tree_sitter_javascript::LANGUAGE.into()),
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

pub(super) const DEFINITIONS: &[Def] = &[
    Def::function("function_declaration", "function"),
    Def::function("generator_function_declaration", "function"),
    Def::function("method_definition", "method"),
    Def::container("class_declaration", "class").body_required(),
    Def::container("abstract_class_declaration", "class").body_required(),
    Def::container("interface_declaration", "interface").body_required(),
    Def::container("enum_declaration", "enum").body_required(),
    Def::anonymous("arrow_function", "function"),
    Def::anonymous("function_expression", "function"),
    Def::anonymous("generator_function", "function"),
    Def::anonymous("class", "class"),
    Def::signature("type_alias_declaration"),
    Def::signature("abstract_method_signature"),
    Def::namespace("internal_module"),
    Def::holder("export_statement"),
    Def::holder("class_body"),
    Def::holder("interface_body"),
    Def::holder("enum_body"),
    Def::holder("statement_block"),
];

/// `const f = () => {…}`, `let g = function () {…}`, a class field `h = () => {…}`.
pub(super) const ASSIGNED: &[Assigned] = &[
    Assigned {
        outer: "lexical_declaration",
        declarator: Some("variable_declarator"),
        name_field: "name",
    },
    Assigned {
        outer: "variable_declaration",
        declarator: Some("variable_declarator"),
        name_field: "name",
    },
    Assigned {
        outer: "field_definition",
        declarator: None,
        name_field: "property",
    },
    Assigned {
        outer: "public_field_definition",
        declarator: None,
        name_field: "name",
    },
];

pub(super) const IMPORTS: &[Import] = &[Import::kind("import_statement")];

pub(super) const STRINGS: Strings = Strings {
    literals: &["string", "template_string"],
    interpolations: &["template_substitution"],
    concat: &["+"],
    quotes: &[
        Quote::escaped('"', false),
        Quote::escaped('\'', false),
        Quote::escaped('`', true),
    ],
};

pub(super) const ROLES: &[(&str, Role)] = &[
    ("if_statement", If),
    ("for_statement", BranchNest),
    ("for_in_statement", BranchNest),
    ("while_statement", BranchNest),
    ("do_statement", BranchNest),
    ("switch_statement", Nest),
    ("try_statement", Nest),
    ("switch_case", Branch),
    ("catch_clause", Branch),
    ("ternary_expression", Branch),
    ("binary_expression", Logical),
    ("arrow_function", Closure),
    ("function_expression", Closure),
    ("generator_function", Closure),
    ("statement_block", Block),
];

pub(super) const CALLS: &[(&str, CallShape)] = &[
    ("call_expression", CallShape::call("function", "arguments")),
    ("new_expression", CallShape::new("constructor", "arguments")),
];

/// JavaScript, TypeScript and TSX.
pub(super) const RULES: &[Rule] = &[
    rule(Exec, Prefix("child_process.")),
    rule(Exec, Exact("exec")),
    rule(Exec, Exact("execSync")),
    rule(Exec, Exact("execFile")),
    rule(Exec, Exact("execFileSync")),
    rule(Exec, Exact("spawn")),
    rule(Exec, Exact("spawnSync")),
    rule(Exec, Path("shell.exec")),
    rule(Exec, Exact("execa")),
    rule(Eval, Path("eval")),
    rule(Eval, Exact("Function")),
    rule(Eval, New("Function")),
    rule_if(Eval, Path("setTimeout"), FirstIsString),
    rule_if(Eval, Path("setInterval"), FirstIsString),
    rule(Eval, Prefix("vm.run")),
    rule(Eval, New("vm.Script")),
    rule(Sql, Method("$queryRawUnsafe")),
    rule(Sql, Method("$executeRawUnsafe")),
    rule_if(Sql, Method("query"), SQL),
    rule_if(Sql, Method("execute"), SQL),
    rule_if(Sql, Method("raw"), SQL),
    rule_if(Sql, Method("prepare"), SQL),
    rule_if(Sql, Method("exec"), SQL),
    rule(Crypto, Prefix("crypto.")),
    rule(Crypto, Prefix("CryptoJS.")),
    rule(Crypto, Exact("md5")),
    rule(Crypto, Exact("sha1")),
    rule(Deserialize, Path("unserialize")),
    rule(Deserialize, Path("deserialize")),
    rule_if(PathFromInput, Prefix("fs."), FirstNotConstant),
    rule_if(PathFromInput, Prefix("fsPromises."), FirstNotConstant),
    rule_if(PathFromInput, Path("readFile"), FirstNotConstant),
    rule_if(PathFromInput, Path("readFileSync"), FirstNotConstant),
    rule_if(PathFromInput, Path("writeFile"), FirstNotConstant),
    rule_if(PathFromInput, Path("writeFileSync"), FirstNotConstant),
    rule_if(PathFromInput, Path("createReadStream"), FirstNotConstant),
    rule_if(PathFromInput, Path("createWriteStream"), FirstNotConstant),
    rule_if(PathFromInput, Method("sendFile"), FirstNotConstant),
];
