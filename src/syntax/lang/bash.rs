//! Bash (and POSIX sh): keyword blocks (`then … fi`, `do … done`, `in … esac`), commands
//! whose arguments are words, `$var` expansions in double-quoted strings. Every command runs
//! a program, so the sensitive calls are the ones that run *text*: `eval`, `source` of a
//! computed path, `sh -c "$cmd"`, SQL clients given a built query.

use super::SensitiveKind::{Crypto, Eval, Exec, PathFromInput, Sql};
use super::{
    Args::{AnyBuilt, FirstNotConstant},
    ArgumentsAt, BRACE, Blocks, CallShape,
    Callee::Exact,
    CalleeAt, Comments, Def, Import, Language, LanguageSpec, Opener, Quote,
    Role::*,
    Rule, Strings, rule, rule_if,
};

pub const SPEC: LanguageSpec = LanguageSpec {
    language: Language::Bash,
    name: "bash",
    display_name: "Bash",
    language_ids: &["shellscript", "sh", "zsh"],
    extensions: &["sh", "bash", "zsh", "ksh"],
    file_names: &[
        ".bashrc",
        ".bash_profile",
        ".bash_aliases",
        ".profile",
        ".zshrc",
        "PKGBUILD",
    ],
    fence_tags: &["bash", "sh", "shell", "zsh", "shellscript"],
    family: Language::Bash,
    grammar: Some(|| tree_sitter_bash::LANGUAGE.into()),
    definitions: &[Def::function("function_definition", "function")],
    assigned: &[],
    imports: &[Import::call("command", &["source", "."])],
    blocks: Blocks {
        openers: &[
            BRACE,
            Opener::token("then"),
            Opener::token("do"),
            Opener::token("else"),
            Opener {
                token: "in",
                parents: &["case_statement"],
            },
        ],
        headers: &[],
        header_end: None,
        closers: &["fi", "done", "esac"],
        by_indent: false,
        kinds: &["do_group", "if_statement", "elif_clause", "else_clause"],
    },
    strings: Strings {
        literals: &[
            "string",
            "raw_string",
            "ansi_c_string",
            "heredoc_body",
            "translated_string",
        ],
        interpolations: &["simple_expansion", "expansion", "command_substitution"],
        concat: &[],
        quotes: &[
            Quote::escaped('"', true),
            Quote::raw('\'', true),
            Quote::escaped('`', true),
        ],
    },
    comments: Comments {
        line: &["#"],
        block: &[],
        line_at_word_start: true,
    },
    roles: &[
        ("if_statement", If),
        ("for_statement", BranchNest),
        ("c_style_for_statement", BranchNest),
        ("while_statement", BranchNest),
        ("case_statement", Nest),
        ("elif_clause", Branch),
        // `a && b`, `a || b`: a `list` is always one of them.
        ("list", Branch),
        ("case_item", Arm),
        ("compound_statement", Block),
    ],
    calls: &[(
        "command",
        CallShape {
            callee: CalleeAt::Field("name"),
            arguments: ArgumentsAt::Rest,
            is_new: false,
        },
    )],
    sensitive: &[RULES],
};

const RULES: &[Rule] = &[
    rule(Eval, Exact("eval")),
    rule_if(Eval, Exact("source"), FirstNotConstant),
    rule_if(Eval, Exact("."), FirstNotConstant),
    rule_if(Exec, Exact("sh"), AnyBuilt),
    rule_if(Exec, Exact("bash"), AnyBuilt),
    rule_if(Exec, Exact("zsh"), AnyBuilt),
    rule_if(Exec, Exact("su"), AnyBuilt),
    rule_if(Exec, Exact("ssh"), AnyBuilt),
    rule_if(Sql, Exact("mysql"), AnyBuilt),
    rule_if(Sql, Exact("psql"), AnyBuilt),
    rule_if(Sql, Exact("sqlite3"), AnyBuilt),
    rule(Crypto, Exact("openssl")),
    rule(Crypto, Exact("gpg")),
    rule(Crypto, Exact("md5sum")),
    rule(Crypto, Exact("sha1sum")),
    rule_if(PathFromInput, Exact("rm"), AnyBuilt),
];
