//! Everything Pilotfish knows about each language, one file per language, read through one
//! interface: [`Language::spec`] gives a [`LanguageSpec`], a table of plain data — how the
//! language is named and recognised, its grammar, what a definition, scope, import, block,
//! comment and string is, how its branches nest, which calls are security-sensitive, how its
//! code is fenced and named in prompts. The rest of the crate (context, features, outlines,
//! the actions' prompts and answers, post-processing, the router's error messages) asks the
//! spec and names no language.
//!
//! Must not: hold logic beyond data and the tiny lookups below; do I/O. Each language file
//! holds one `pub const SPEC` and the tables it is built from.
//!
//! Adding a language: a file here with its `SPEC` (copy the closest one), its variant in
//! [`Language`] and a line in [`Language::spec`] and [`Language::ALL`], its grammar crate in
//! `Cargo.toml`, and fixture rows in the syntax tests (`context.rs`, `features.rs`).

pub mod bash;
pub mod c;
pub mod cpp;
pub mod go;
pub mod java;
pub mod javascript;
pub mod lua;
pub mod php;
pub mod plaintext;
pub mod python;
pub mod ruby;
pub mod rust;
pub mod typescript;

use std::path::Path;

/// A language Pilotfish knows. Anything else is `PlainText`: completion still works on it,
/// with line-based windows instead of syntax-based ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    C,
    Cpp,
    Java,
    Ruby,
    Php,
    Lua,
    Bash,
    /// Last: `Language::ALL` ends with it.
    PlainText,
}

impl Language {
    /// Every language, in this order everywhere (lists of names, per-language tables).
    pub const ALL: [Language; 14] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Go,
        Language::C,
        Language::Cpp,
        Language::Java,
        Language::Ruby,
        Language::Php,
        Language::Lua,
        Language::Bash,
        Language::PlainText,
    ];

    /// What Pilotfish knows about the language.
    pub fn spec(self) -> &'static LanguageSpec {
        match self {
            Language::Rust => &rust::SPEC,
            Language::Python => &python::SPEC,
            Language::JavaScript => &javascript::SPEC,
            Language::TypeScript => &typescript::SPEC,
            Language::Tsx => &typescript::TSX,
            Language::Go => &go::SPEC,
            Language::C => &c::SPEC,
            Language::Cpp => &cpp::SPEC,
            Language::Java => &java::SPEC,
            Language::Ruby => &ruby::SPEC,
            Language::Php => &php::SPEC,
            Language::Lua => &lua::SPEC,
            Language::Bash => &bash::SPEC,
            Language::PlainText => &plaintext::SPEC,
        }
    }

    /// The language's position in [`Language::ALL`], for tables indexed by language.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Picks the language from the LSP `languageId`, falling back to the file name.
    pub fn detect(language_id: &str, path: &str) -> Language {
        Language::ALL
            .into_iter()
            .find(|l| {
                let spec = l.spec();
                spec.grammar.is_some()
                    && (spec.name == language_id || spec.language_ids.contains(&language_id))
            })
            .unwrap_or_else(|| Language::from_path(path))
    }

    /// Picks the language from a file's extension (or, for extensionless files such as
    /// `Gemfile`, its name).
    pub fn from_path(path: &str) -> Language {
        let path = Path::new(path);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
        Language::ALL
            .into_iter()
            .find(|l| {
                let spec = l.spec();
                (!ext.is_empty() && spec.extensions.contains(&ext.as_str()))
                    || spec.file_names.contains(&file)
            })
            .unwrap_or(Language::PlainText)
    }

    /// The language named in config (`languages = [...]`): its name or one of its LSP
    /// language ids, in any case.
    pub fn named(name: &str) -> Option<Language> {
        let lower = name.to_ascii_lowercase();
        Language::ALL.into_iter().find(|l| {
            let spec = l.spec();
            spec.name == lower || spec.language_ids.contains(&lower.as_str())
        })
    }

    /// The names of all languages, for messages: `rust, python, … or plaintext`.
    pub fn names_for_humans() -> String {
        let names: Vec<&str> = Language::ALL.iter().map(|l| l.name()).collect();
        match names.split_last() {
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// Languages whose files use each other's code (JavaScript with TypeScript and TSX, C
    /// with C++ headers) share a family, named by one of its members.
    pub fn family(self) -> Language {
        self.spec().family
    }

    /// The tree-sitter grammar, or `None` for plain text.
    pub fn grammar(self) -> Option<tree_sitter::Language> {
        self.spec().grammar.map(|grammar| grammar())
    }

    /// The name used in config (`languages = [...]`), logs and `{language}` in prompts.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

/// Everything Pilotfish knows about one language. Node kinds are tree-sitter's names in the
/// language's grammar.
#[derive(Debug)]
pub struct LanguageSpec {
    pub language: Language,
    /// The name in config, logs and `{language}`.
    pub name: &'static str,
    /// The name in prompts ("C++").
    pub display_name: &'static str,
    /// LSP `languageId`s besides `name` (lowercase).
    pub language_ids: &'static [&'static str],
    /// File extensions, lowercase, without the dot.
    pub extensions: &'static [&'static str],
    /// Whole file names for files without a telling extension (`Gemfile`, `.bashrc`).
    pub file_names: &'static [&'static str],
    /// Tags of a fenced code block that mean this language; the first is the one prompts
    /// write.
    pub fence_tags: &'static [&'static str],
    /// The family (see [`Language::family`]); the language itself when it has none.
    pub family: Language,
    /// The tree-sitter grammar; `None` for plain text.
    pub grammar: Option<fn() -> tree_sitter::Language>,
    /// What the language's definitions and the nodes around them are: one table for
    /// targets, scopes, outlines and the actions' signatures.
    pub definitions: &'static [Def],
    /// Anonymous functions that take the name of what they are assigned to.
    pub assigned: &'static [Assigned],
    /// Imports, collected before the completion window and into the actions' prompts.
    pub imports: &'static [Import],
    pub blocks: Blocks,
    pub strings: Strings,
    pub comments: Comments,
    /// What node kinds mean to the routing features (branches, nesting); others count as
    /// nothing.
    pub roles: &'static [(&'static str, Role)],
    /// Node kinds that are calls, and where their callee and arguments are.
    pub calls: &'static [(&'static str, CallShape)],
    /// Security-sensitive calls: rule tables tried in order, the first match wins.
    pub sensitive: &'static [&'static [Rule]],
}

impl LanguageSpec {
    /// The definitions-table row for a node kind.
    pub fn def(&self, kind: &str) -> Option<&'static Def> {
        self.definitions.iter().find(|d| d.kind == kind)
    }

    /// What a node kind is, in the definitions table.
    pub fn item(&self, kind: &str) -> Option<Item> {
        self.def(kind).map(|d| d.item)
    }

    /// The tag prompts put on fenced code blocks.
    pub fn fence_tag(&self) -> &'static str {
        self.fence_tags.first().copied().unwrap_or("text")
    }

    /// A node kind in words for prompts: `function_item` → `function`; `selection` and
    /// anything the table does not name stay as they are.
    pub fn describe<'a>(&self, kind: &'a str) -> &'a str {
        match self.def(kind) {
            Some(d) if !d.noun.is_empty() => d.noun,
            _ => match kind {
                "selection" => "selected code",
                "" => "code",
                other => other,
            },
        }
    }

    /// True for a node kind that is a string literal.
    pub fn is_string(&self, kind: &str) -> bool {
        self.strings.literals.contains(&kind)
    }
}

// ---------------------------------------------------------------------------------------
// Definitions

/// What a node is to Pilotfish's readers of structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// Function, method, constructor: a target; a scope; a line of the outline; a signature.
    Function,
    /// Class, struct, impl, trait, interface, enum, module-as-type: a target when not inside a
    /// function; a scope; an outline line whose members follow; a signature.
    Container,
    /// Arrow function, lambda, function expression: a target when assigned (see
    /// [`Assigned`]), otherwise a closure inside its function; a scope.
    Anonymous,
    /// A declaration the actions show as a signature when the target names it (a type
    /// alias, a constant, a prototype), not a target or scope.
    Signature,
    /// A namespace or module that holds whole files: a scope, walked through for outlines
    /// and signatures, never a target.
    Namespace,
    /// Wraps a definition and belongs to it (decorators, `template <…>`): the definition's
    /// target includes it.
    Wrapper,
    /// Holds definitions without being one (a class body, `export`, `#ifdef`): walked
    /// through.
    Holder,
}

/// Where a definition's name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// The `name` field.
    Field,
    /// A Rust `impl`: `Type`, or `Trait for Type`. It names no identifier of its own.
    Impl,
    /// A Go `type` declaration: the name of its `type_spec`.
    Spec,
    /// C/C++: the name at the bottom of the `declarator` chain (`Class::method` as shown).
    Declarator,
    /// Like `Declarator`, and the node is a definition only when it declares a function
    /// (a prototype, not a variable).
    FunctionDeclarator,
}

/// One row of the definitions table.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub kind: &'static str,
    pub item: Item,
    pub name: Name,
    /// The definition may be written without a body (a prototype, an abstract method, a C
    /// struct named in a declaration): only with its `body` is it a target.
    pub body_required: bool,
    /// The kind in words for prompts ("method"); empty: the kind as it is.
    pub noun: &'static str,
}

impl Def {
    const fn new(kind: &'static str, item: Item, noun: &'static str) -> Def {
        Def {
            kind,
            item,
            name: Name::Field,
            body_required: false,
            noun,
        }
    }

    pub const fn function(kind: &'static str, noun: &'static str) -> Def {
        Def::new(kind, Item::Function, noun)
    }

    pub const fn container(kind: &'static str, noun: &'static str) -> Def {
        Def::new(kind, Item::Container, noun)
    }

    pub const fn anonymous(kind: &'static str, noun: &'static str) -> Def {
        Def::new(kind, Item::Anonymous, noun)
    }

    pub const fn signature(kind: &'static str) -> Def {
        Def::new(kind, Item::Signature, "")
    }

    pub const fn namespace(kind: &'static str) -> Def {
        Def::new(kind, Item::Namespace, "")
    }

    pub const fn wrapper(kind: &'static str) -> Def {
        Def::new(kind, Item::Wrapper, "")
    }

    pub const fn holder(kind: &'static str) -> Def {
        Def::new(kind, Item::Holder, "")
    }

    pub const fn named(self, name: Name) -> Def {
        Def { name, ..self }
    }

    pub const fn body_required(self) -> Def {
        Def {
            body_required: true,
            ..self
        }
    }
}

/// `const f = () => {…}`: an anonymous function assigned in a node of kind `outer` — the
/// target, named by its `name_field` — directly or through a `declarator` child.
#[derive(Debug, Clone, Copy)]
pub struct Assigned {
    pub outer: &'static str,
    /// The child of `outer` that holds the name and the value (`variable_declarator`), or
    /// `None` when `outer` holds them itself (a class field).
    pub declarator: Option<&'static str>,
    pub name_field: &'static str,
}

/// An import-like node.
#[derive(Debug, Clone, Copy)]
pub struct Import {
    pub kind: &'static str,
    /// Empty: every node of `kind`. Otherwise the node must be, or hold near its start, a
    /// call to one of these (`require`, `source`).
    pub calls: &'static [&'static str],
}

impl Import {
    pub const fn kind(kind: &'static str) -> Import {
        Import { kind, calls: &[] }
    }

    pub const fn call(kind: &'static str, calls: &'static [&'static str]) -> Import {
        Import { kind, calls }
    }
}

// ---------------------------------------------------------------------------------------
// Blocks, strings, comments

/// How blocks open and close, for the single/multi-line decision, block indentation and the
/// scope chain.
#[derive(Debug, Clone, Copy)]
pub struct Blocks {
    /// Tokens that open a block when they end a line (`{`, `do`, `then`, Python's `:`).
    pub openers: &'static [Opener],
    /// A line starting with one of these words opens a block when it leaves no bracket
    /// open and holds no closer (Ruby `def f(x)`, Lua `function f()`), and, with
    /// `header_end`, ends with it (Python `if x:` while the tree is broken).
    pub headers: &'static [&'static str],
    pub header_end: Option<&'static str>,
    /// Words that close keyword blocks (`end`, `fi`, `done`): a scope ending in one is
    /// closed, and a header line holding one opens nothing.
    pub closers: &'static [&'static str],
    /// Blocks end where the indentation does (Python): no token closes a scope, and a blank
    /// line belongs to the blocks its indentation says.
    pub by_indent: bool,
    /// Node kinds of blocks whose statements are indented, besides `{ … }`.
    pub kinds: &'static [&'static str],
}

/// A block opener at a line's end.
#[derive(Debug, Clone, Copy)]
pub struct Opener {
    pub token: &'static str,
    /// With a tree, the token's parent kind must end with one of these (empty: any).
    pub parents: &'static [&'static str],
}

impl Opener {
    pub const fn token(token: &'static str) -> Opener {
        Opener {
            token,
            parents: &[],
        }
    }
}

/// `{` at a line's end opens a block.
pub const BRACE: Opener = Opener::token("{");

/// The blocks of a braced language: `{` opens them, `}` closes them.
pub const BRACED: Blocks = Blocks {
    openers: &[BRACE],
    headers: &[],
    header_end: None,
    closers: &[],
    by_indent: false,
    kinds: &[],
};

/// What a string is.
#[derive(Debug, Clone, Copy)]
pub struct Strings {
    /// Node kinds of string and char literals.
    pub literals: &'static [&'static str],
    /// Node kinds inside a string literal that hold code (`{x}` of an f-string, `${x}`,
    /// `#{x}`, `$x`): text there is code, and a string holding one is built, not constant.
    pub interpolations: &'static [&'static str],
    /// Binary operators that concatenate strings.
    pub concat: &'static [&'static str],
    /// How literals look as text, for the bracket scanner of post-processing.
    pub quotes: &'static [Quote],
}

/// A kind of string literal, as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// Opens and closes with this char; `escapes`: a backslash escapes the next char;
    /// `multiline`: a line break does not end it.
    Str {
        quote: char,
        escapes: bool,
        multiline: bool,
    },
    /// Three of this char open it and three close it (`"""`).
    Triple(char),
    /// Rust raw strings: `r`, some `#`, `"` … `"` and as many `#`.
    HashedRaw,
    /// A char literal (`'x'`, `'\n'`), skipped only when it closes nearby: a lone `'` (a
    /// Rust lifetime) is no quote.
    Char(char),
}

impl Quote {
    /// A string in which a backslash escapes.
    pub const fn escaped(quote: char, multiline: bool) -> Quote {
        Quote::Str {
            quote,
            escapes: true,
            multiline,
        }
    }

    /// A string without escapes (Go's backticks, shell `'…'`).
    pub const fn raw(quote: char, multiline: bool) -> Quote {
        Quote::Str {
            quote,
            escapes: false,
            multiline,
        }
    }
}

/// What a comment is, as text (tree-sitter names every comment node `…comment…`).
#[derive(Debug, Clone, Copy)]
pub struct Comments {
    pub line: &'static [&'static str],
    /// (opener, closer), longest openers first.
    pub block: &'static [(&'static str, &'static str)],
    /// A line comment starts only at a word's start (Bash: `$#` and `${#a}` are not).
    pub line_at_word_start: bool,
}

/// `//` and `/* */`.
pub const C_COMMENTS: Comments = Comments {
    line: &["//"],
    block: &[("/*", "*/")],
    line_at_word_start: false,
};

/// `#` to the end of the line.
pub const HASH_COMMENTS: Comments = Comments {
    line: &["#"],
    block: &[],
    line_at_word_start: false,
};

// ---------------------------------------------------------------------------------------
// Routing features

/// What a node kind contributes to the routing features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Other,
    /// A branch point that does not nest (`elif`, `catch`, `?:`, `case`).
    Branch,
    /// A branch point that nests (loops).
    BranchNest,
    /// `if`: a branch point that nests, except as the `else if` of another `if`.
    If,
    /// Nests without being a branch point itself (match/switch, try, with).
    Nest,
    /// A match arm or switch label: a branch point unless it is the wildcard/`default`.
    Arm,
    /// A binary expression: a branch point when its operator is `&&`, `||`, `??`, `and`, `or`.
    Logical,
    /// A closure/lambda/function expression: nests, unless it is a definition assigned to a
    /// variable or field (then it is a named function, like a nested `def`).
    Closure,
    /// A block: nests when it stands bare inside another block.
    Block,
}

/// A call to an API whose misuse is a classic vulnerability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SensitiveKind {
    /// Running programs or shell commands (exec, system, subprocess, Command::new …).
    Exec,
    /// Evaluating code from data (eval, exec of strings, Function(), pickle-like loaders excluded).
    Eval,
    /// SQL built from strings (format/concatenation into execute/query).
    Sql,
    /// Cryptography (hashing passwords, ciphers, random for keys …).
    Crypto,
    /// Deserialisation of untrusted data (pickle, yaml.load, ObjectInputStream, serde from input …).
    Deserialize,
    /// File paths built from input (open/read/write with a computed path).
    PathFromInput,
}

/// Where a call node keeps its callee and its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallShape {
    pub callee: CalleeAt,
    pub arguments: ArgumentsAt,
    /// A constructor call (`new T(…)`): only `Callee::New` rules match it.
    pub is_new: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalleeAt {
    /// This field (`function(args)`).
    Field(&'static str),
    /// From the node's start to the end of this field: a method on a receiver
    /// (`obj.name(args)`, `$db->query(…)`).
    UpTo(&'static str),
    /// Rust `name!(…)`: this field, then `!`.
    Macro(&'static str),
    /// The node's first token: the node itself runs a command (`` `ls` ``, `%x(ls)`).
    FirstToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgumentsAt {
    /// The named children of this field.
    Field(&'static str),
    /// The node's own named children after the first (a shell command's words).
    Rest,
    None,
}

impl CallShape {
    /// `function(arguments)` with these two fields.
    pub const fn call(callee: &'static str, arguments: &'static str) -> CallShape {
        CallShape {
            callee: CalleeAt::Field(callee),
            arguments: ArgumentsAt::Field(arguments),
            is_new: false,
        }
    }

    /// `receiver.name(arguments)`: the callee runs to the end of `name`.
    pub const fn method(name: &'static str, arguments: &'static str) -> CallShape {
        CallShape {
            callee: CalleeAt::UpTo(name),
            arguments: ArgumentsAt::Field(arguments),
            is_new: false,
        }
    }

    /// A node that runs its text as a shell command (`` `ls` ``, `%x(ls)`): its "callee" is
    /// its opening token.
    pub const SHELL: CallShape = CallShape {
        callee: CalleeAt::FirstToken,
        arguments: ArgumentsAt::None,
        is_new: false,
    };

    /// `new Type(arguments)`.
    pub const fn new(callee: &'static str, arguments: &'static str) -> CallShape {
        CallShape {
            callee: CalleeAt::Field(callee),
            arguments: ArgumentsAt::Field(arguments),
            is_new: true,
        }
    }
}

/// How a rule recognises the callee, as written in the source with whitespace removed.
/// A "boundary" is the start of the callee or a position right after `.`, `:` or `>` (of `->`).
#[derive(Debug, Clone, Copy)]
pub enum Callee {
    /// The whole callee is exactly this (`eval`, not `x.eval`).
    Exact(&'static str),
    /// The callee is this, or ends with it at a boundary (`Command::new` matches
    /// `std::process::Command::new`).
    Path(&'static str),
    /// The callee has this prefix at a boundary (`subprocess.` matches `subprocess.run`,
    /// `fs::` matches `std::fs::read`).
    Prefix(&'static str),
    /// A method with this name called on any receiver (`x.executeQuery`), not a bare call.
    Method(&'static str),
    /// A constructor call (`new ProcessBuilder(…)`, `new Function(…)`): the constructed type
    /// is this, or ends with it at a boundary (`new java.io.File`).
    New(&'static str),
}

/// What the arguments must look like for the call to count.
#[derive(Debug, Clone, Copy)]
pub enum Args {
    Any,
    /// The argument at this index is SQL built from strings: an interpolated string,
    /// concatenation with a string, `format!`, `String.format`, `fmt.Sprintf`, `"…" % x`. A
    /// constant string, or a variable (no data flow is followed), is not.
    BuiltAt(usize),
    /// Some argument is a string built from parts (a shell command's `-e "… $x"`).
    AnyBuilt,
    /// The first argument is not a constant (a string literal, a SCREAMING_CASE name, or a
    /// call whose arguments are all constants, like `os.path.join(BASE, "a.txt")`).
    FirstNotConstant,
    /// The first argument is string-like (`setTimeout("code", 10)`), not a function.
    FirstIsString,
    /// No argument mentions a `SafeLoader` (`yaml.load(s, Loader=yaml.SafeLoader)` is safe).
    NoSafeLoader,
}

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub kind: SensitiveKind,
    pub callee: Callee,
    pub args: Args,
}

pub const fn rule(kind: SensitiveKind, callee: Callee) -> Rule {
    Rule {
        kind,
        callee,
        args: Args::Any,
    }
}

pub const fn rule_if(kind: SensitiveKind, callee: Callee, args: Args) -> Rule {
    Rule { kind, callee, args }
}

/// SQL built at the first argument.
pub const SQL: Args = Args::BuiltAt(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_consistent() {
        assert_eq!(Language::ALL.len(), Language::PlainText.index() + 1);
        let mut names = std::collections::HashSet::new();
        for (i, language) in Language::ALL.into_iter().enumerate() {
            let spec = language.spec();
            assert_eq!(language.index(), i);
            assert_eq!(spec.language, language, "{}", spec.name);
            assert!(names.insert(spec.name), "two languages named {}", spec.name);
            assert_eq!(spec.family.family(), spec.family, "{}", spec.name);
            assert_eq!(Language::named(spec.name), Some(language));
            for kind in spec.definitions.iter().map(|d| d.kind) {
                assert_eq!(
                    spec.definitions.iter().filter(|d| d.kind == kind).count(),
                    1,
                    "{}: {kind} twice",
                    spec.name
                );
            }
        }
    }

    /// Every node kind a spec names exists in its grammar (or, for tables a family shares,
    /// in a sibling's): a typo would silently never match.
    #[test]
    fn every_named_kind_is_in_the_grammar() {
        for language in Language::ALL {
            let spec = language.spec();
            if spec.grammar.is_none() {
                continue;
            }
            let grammars = Language::ALL
                .into_iter()
                .filter(|l| l.family() == language.family())
                .filter_map(|l| l.grammar());
            let mut kinds = std::collections::HashSet::new();
            for grammar in grammars {
                kinds.extend(
                    (0..grammar.node_kind_count())
                        .filter_map(|id| grammar.node_kind_for_id(u16::try_from(id).ok()?)),
                );
            }
            let named = spec
                .definitions
                .iter()
                .map(|d| d.kind)
                .chain(spec.assigned.iter().map(|a| a.outer))
                .chain(spec.assigned.iter().filter_map(|a| a.declarator))
                .chain(spec.imports.iter().map(|i| i.kind))
                .chain(spec.blocks.kinds.iter().copied())
                .chain(spec.strings.literals.iter().copied())
                .chain(spec.strings.interpolations.iter().copied())
                .chain(spec.roles.iter().map(|r| r.0))
                .chain(spec.calls.iter().map(|c| c.0));
            for kind in named {
                assert!(kinds.contains(kind), "{}: no node kind {kind:?}", spec.name);
            }
        }
    }

    #[test]
    fn detects_by_id_then_file_name() {
        let cases = [
            ("rust", "x.txt", Language::Rust),
            ("", "/a/b.tsx", Language::Tsx),
            ("plaintext", "/a/b.PY", Language::Python),
            ("markdown", "/a/README.md", Language::PlainText),
            ("ruby", "x", Language::Ruby),
            ("", "/w/Gemfile", Language::Ruby),
            ("", "/w/lib/a.rb", Language::Ruby),
            ("php", "", Language::Php),
            ("", "/w/index.php", Language::Php),
            ("lua", "", Language::Lua),
            ("", "/w/init.lua", Language::Lua),
            ("shellscript", "", Language::Bash),
            ("sh", "", Language::Bash),
            ("", "/w/run.sh", Language::Bash),
            ("", "/home/u/.bashrc", Language::Bash),
            ("", "/w/no_extension", Language::PlainText),
        ];
        for (id, path, want) in cases {
            assert_eq!(Language::detect(id, path), want, "{id:?} {path:?}");
        }
        assert_eq!(Language::named("C++"), Some(Language::Cpp));
        assert_eq!(Language::named("rsut"), None);
        assert!(Language::names_for_humans().ends_with(", bash or plaintext"));
    }
}
