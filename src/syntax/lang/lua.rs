//! Lua: keyword blocks (`function … end`, `if … then … end`, `for … do … end`), `--`
//! comments, `..` concatenation.

use super::SensitiveKind::{Crypto, Eval, Exec, PathFromInput, Sql};
use super::{
    Args::FirstNotConstant,
    BRACE, Blocks, CallShape,
    Callee::{Exact, Method, Path, Prefix},
    Comments, Def, Import, Language, LanguageSpec, Opener, Quote,
    Role::*,
    Rule, SQL, Strings, rule, rule_if,
};

pub const SPEC: LanguageSpec = LanguageSpec {
    language: Language::Lua,
    name: "lua",
    display_name: "Lua",
    language_ids: &[],
    extensions: &["lua"],
    file_names: &[".luacheckrc"],
    fence_tags: &["lua"],
    family: Language::Lua,
    grammar: Some(|| tree_sitter_lua::LANGUAGE.into()),
    definitions: &[
        // `function M.run(x)`, `local function helper()`, `function M:method()`.
        Def::function("function_declaration", "function"),
        Def::anonymous("function_definition", "function"),
    ],
    assigned: &[],
    // `local json = require("json")`, a bare `require("x")`.
    imports: &[
        Import::call("variable_declaration", &["require"]),
        Import::call("function_call", &["require"]),
    ],
    blocks: Blocks {
        openers: &[
            BRACE,
            Opener::token("then"),
            Opener::token("do"),
            Opener::token("else"),
            Opener::token("repeat"),
            // The `)` of a function's parameters: `local f = function(a, b)`.
            Opener {
                token: ")",
                parents: &["parameters"],
            },
        ],
        headers: &["function", "local function"],
        header_end: None,
        closers: &["end"],
        by_indent: false,
        kinds: &["block"],
    },
    strings: Strings {
        literals: &["string"],
        interpolations: &[],
        concat: &[".."],
        quotes: &[Quote::escaped('"', false), Quote::escaped('\'', false)],
    },
    comments: Comments {
        line: &["--"],
        block: &[("--[[", "]]")],
        line_at_word_start: false,
    },
    roles: &[
        ("if_statement", If),
        ("for_statement", BranchNest),
        ("while_statement", BranchNest),
        ("repeat_statement", BranchNest),
        ("elseif_statement", Branch),
        ("binary_expression", Logical),
        ("function_definition", Closure),
        ("do_statement", Block),
    ],
    calls: &[("function_call", CallShape::call("name", "arguments"))],
    sensitive: &[RULES],
};

const RULES: &[Rule] = &[
    rule(Exec, Path("os.execute")),
    rule(Exec, Path("io.popen")),
    rule(Eval, Exact("loadstring")),
    rule(Eval, Exact("load")),
    rule_if(Eval, Exact("dofile"), FirstNotConstant),
    rule_if(Eval, Exact("loadfile"), FirstNotConstant),
    rule_if(Sql, Method("execute"), SQL),
    rule_if(Sql, Method("query"), SQL),
    rule(Crypto, Prefix("crypto.")),
    rule(Crypto, Prefix("openssl.")),
    rule(Crypto, Prefix("md5.")),
    rule(Crypto, Prefix("sha1.")),
    rule(Crypto, Prefix("sha2.")),
    rule(Crypto, Prefix("resty.aes")),
    rule_if(PathFromInput, Path("io.open"), FirstNotConstant),
    rule_if(PathFromInput, Path("io.lines"), FirstNotConstant),
    rule_if(PathFromInput, Path("io.input"), FirstNotConstant),
    rule_if(PathFromInput, Path("io.output"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.remove"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.rename"), FirstNotConstant),
];
