//! Which calls are security-sensitive: one const table of rules per language, and the few
//! syntactic checks the rules need (is this argument a constant string? is it SQL built from
//! strings?). Used by the feature walk in `features.rs`, once per call node.
//!
//! Invariants:
//! - Recognition is by the callee as written (`os.system`, `Command::new`, `x.executeQuery`),
//!   not by types: a method merely named `execute` on an unrelated object whose argument is
//!   built from strings is flagged too. Cheap and predictable beats clever here: the result
//!   routes a request to a bigger model; it is not a vulnerability report.
//! - Cheap: the callee is copied (at most `MAX_CALLEE_BYTES`, whitespace dropped) into a
//!   buffer the caller reuses; argument checks run only for calls whose callee matched.
//! - No data flow: `q = f"… {x}"; cur.execute(q)` is not flagged as SQL (only an argument
//!   built in place is), and imports under another name (`import subprocess as sp`) are
//!   not followed.
//! - Never panics on stale trees: node ranges are clamped to the rope and char boundaries.
//!
//! To recognise another API, add one line to its language's table; `Callee` says how the
//! callee is matched and `Args` what the arguments must look like.

use ropey::Rope;
use tree_sitter::Node;

use super::Language;
use super::features::SensitiveKind;

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
    /// The argument at this index is SQL built from strings: an f-string, `%`/`+`
    /// concatenation with a string, `format!`, a template literal with substitutions,
    /// `String.format`, `fmt.Sprintf`, `"…".format(…)`. A constant string, or a variable
    /// (no data flow is followed), is not.
    BuiltAt(usize),
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

const fn rule(kind: SensitiveKind, callee: Callee) -> Rule {
    Rule {
        kind,
        callee,
        args: Args::Any,
    }
}

const fn rule_if(kind: SensitiveKind, callee: Callee, args: Args) -> Rule {
    Rule { kind, callee, args }
}

use Args::{BuiltAt, FirstIsString, FirstNotConstant, NoSafeLoader};
use Callee::{Exact, Method, New, Path, Prefix};
use SensitiveKind::{Crypto, Deserialize, Eval, Exec, PathFromInput, Sql};

const SQL: Args = BuiltAt(0);

/// Rust. Chosen: `serde_json::from_str` and friends are not flagged (typed serde
/// deserialisation of text formats); binary formats that allocate from length prefixes
/// (`bincode`, `rmp_serde`) and `serde_pickle` are.
const RUST: &[Rule] = &[
    rule(Exec, Path("Command::new")),
    rule(Exec, Exact("cmd!")),
    rule(Exec, Path("xshell::cmd!")),
    rule(Exec, Path("duct::cmd")),
    rule_if(Sql, Path("sqlx::query"), SQL),
    rule_if(Sql, Path("sqlx::query_as"), SQL),
    rule_if(Sql, Exact("query"), SQL),
    rule_if(Sql, Exact("query_as"), SQL),
    rule_if(Sql, Path("sql_query"), SQL),
    rule_if(Sql, Method("execute"), SQL),
    rule_if(Sql, Method("query"), SQL),
    rule_if(Sql, Method("query_row"), SQL),
    rule_if(Sql, Method("query_map"), SQL),
    rule_if(Sql, Method("prepare"), SQL),
    rule_if(Sql, Method("batch_execute"), SQL),
    rule_if(Sql, Method("simple_query"), SQL),
    rule(Crypto, Prefix("ring::")),
    rule(Crypto, Prefix("aes::")),
    rule(Crypto, Prefix("aes_gcm::")),
    rule(Crypto, Prefix("sha2::")),
    rule(Crypto, Prefix("sha1::")),
    rule(Crypto, Prefix("md5::")),
    rule(Crypto, Prefix("openssl::")),
    rule(Crypto, Prefix("Sha1::")),
    rule(Crypto, Prefix("Sha256::")),
    rule(Crypto, Prefix("Sha512::")),
    rule(Crypto, Prefix("Md5::")),
    rule(Crypto, Prefix("Aes128Gcm::")),
    rule(Crypto, Prefix("Aes256Gcm::")),
    rule(Crypto, Prefix("Hmac::")),
    rule(Deserialize, Path("bincode::deserialize")),
    rule(Deserialize, Path("bincode::deserialize_from")),
    rule(Deserialize, Prefix("bincode::decode_from")),
    rule(Deserialize, Prefix("rmp_serde::from_")),
    rule(Deserialize, Prefix("serde_pickle::from_")),
    rule_if(PathFromInput, Path("File::open"), FirstNotConstant),
    rule_if(PathFromInput, Path("File::create"), FirstNotConstant),
    rule_if(PathFromInput, Prefix("fs::"), FirstNotConstant),
];

const PYTHON: &[Rule] = &[
    rule(Exec, Path("os.system")),
    rule(Exec, Path("os.popen")),
    rule(Exec, Prefix("os.exec")),
    rule(Exec, Prefix("os.spawn")),
    rule(Exec, Path("os.posix_spawn")),
    rule(Exec, Prefix("subprocess.")),
    rule(Exec, Path("pty.spawn")),
    rule(Eval, Exact("eval")),
    rule(Eval, Exact("exec")),
    rule(Eval, Exact("compile")),
    rule(Eval, Path("builtins.eval")),
    rule(Eval, Path("builtins.exec")),
    rule_if(Sql, Method("execute"), SQL),
    rule_if(Sql, Method("executemany"), SQL),
    rule_if(Sql, Method("executescript"), SQL),
    rule_if(Sql, Method("raw"), SQL),
    rule_if(Sql, Method("extra"), SQL),
    rule_if(Sql, Method("read_sql"), SQL),
    rule_if(Sql, Exact("text"), SQL),
    rule_if(Sql, Path("sqlalchemy.text"), SQL),
    rule(Crypto, Prefix("hashlib.")),
    rule(Crypto, Prefix("Crypto.")),
    rule(Crypto, Prefix("Cryptodome.")),
    rule(Crypto, Path("AES.new")),
    rule(Crypto, Path("DES.new")),
    rule(Crypto, Path("ARC4.new")),
    rule(Crypto, Path("hmac.new")),
    rule(Crypto, Exact("Fernet")),
    rule(Crypto, Exact("Cipher")),
    rule(Deserialize, Prefix("pickle.load")),
    rule(Deserialize, Prefix("cPickle.load")),
    rule(Deserialize, Path("pickle.Unpickler")),
    rule_if(Deserialize, Path("yaml.load"), NoSafeLoader),
    rule_if(Deserialize, Path("yaml.load_all"), NoSafeLoader),
    rule(Deserialize, Path("yaml.unsafe_load")),
    rule(Deserialize, Prefix("marshal.load")),
    rule(Deserialize, Path("shelve.open")),
    rule(Deserialize, Path("jsonpickle.decode")),
    rule(Deserialize, Prefix("dill.load")),
    rule_if(PathFromInput, Exact("open"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.open"), FirstNotConstant),
    rule_if(PathFromInput, Path("io.open"), FirstNotConstant),
    rule_if(PathFromInput, Path("codecs.open"), FirstNotConstant),
    rule_if(PathFromInput, Path("send_file"), FirstNotConstant),
];

/// JavaScript, TypeScript and TSX.
const JS: &[Rule] = &[
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

/// Go. Package names stand for their import paths (`md5.` is `crypto/md5`); imports under
/// another name are not followed.
const GO: &[Rule] = &[
    rule(Exec, Path("exec.Command")),
    rule(Exec, Path("exec.CommandContext")),
    rule(Exec, Path("syscall.Exec")),
    rule(Exec, Path("os.StartProcess")),
    rule_if(Sql, Method("Query"), SQL),
    rule_if(Sql, Method("QueryRow"), SQL),
    rule_if(Sql, Method("Exec"), SQL),
    rule_if(Sql, Method("Prepare"), SQL),
    rule_if(Sql, Method("Raw"), SQL),
    rule_if(Sql, Method("QueryContext"), BuiltAt(1)),
    rule_if(Sql, Method("QueryRowContext"), BuiltAt(1)),
    rule_if(Sql, Method("ExecContext"), BuiltAt(1)),
    rule_if(Sql, Method("PrepareContext"), BuiltAt(1)),
    rule(Crypto, Prefix("md5.")),
    rule(Crypto, Prefix("sha1.")),
    rule(Crypto, Prefix("sha256.")),
    rule(Crypto, Prefix("sha512.")),
    rule(Crypto, Prefix("aes.")),
    rule(Crypto, Prefix("des.")),
    rule(Crypto, Prefix("rc4.")),
    rule(Crypto, Prefix("cipher.")),
    rule(Crypto, Prefix("rsa.")),
    rule(Crypto, Prefix("ecdsa.")),
    rule(Crypto, Prefix("ed25519.")),
    rule(Crypto, Prefix("hmac.")),
    rule(Crypto, Prefix("bcrypt.")),
    rule(Crypto, Prefix("pbkdf2.")),
    rule(Deserialize, Path("gob.NewDecoder")),
    rule_if(PathFromInput, Path("os.Open"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.OpenFile"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.ReadFile"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.WriteFile"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.Create"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.Remove"), FirstNotConstant),
    rule_if(PathFromInput, Path("os.RemoveAll"), FirstNotConstant),
    rule_if(PathFromInput, Path("ioutil.ReadFile"), FirstNotConstant),
    rule_if(PathFromInput, Path("ioutil.WriteFile"), FirstNotConstant),
];

/// C, and the base of C++. `rand()` is not flagged (too common outside cryptography).
const C: &[Rule] = &[
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

/// What C++ adds to C.
const CPP: &[Rule] = &[
    rule_if(Sql, Method("exec"), SQL),
    rule_if(Sql, Method("execute"), SQL),
    rule_if(Sql, Method("executeQuery"), SQL),
    rule_if(PathFromInput, Method("open"), FirstNotConstant),
];

const JAVA: &[Rule] = &[
    rule(Exec, Path("Runtime.getRuntime().exec")),
    rule(Exec, Method("exec")),
    rule(Exec, New("ProcessBuilder")),
    rule(Eval, Method("eval")),
    rule(Eval, Method("evaluate")),
    rule(Eval, Method("parseExpression")),
    rule_if(Sql, Method("executeQuery"), SQL),
    rule_if(Sql, Method("executeUpdate"), SQL),
    rule_if(Sql, Method("executeLargeUpdate"), SQL),
    rule_if(Sql, Method("execute"), SQL),
    rule_if(Sql, Method("addBatch"), SQL),
    rule_if(Sql, Method("prepareStatement"), SQL),
    rule_if(Sql, Method("prepareCall"), SQL),
    rule_if(Sql, Method("createQuery"), SQL),
    rule_if(Sql, Method("createNativeQuery"), SQL),
    rule_if(Sql, Method("query"), SQL),
    rule_if(Sql, Method("queryForObject"), SQL),
    rule_if(Sql, Method("queryForList"), SQL),
    rule_if(Sql, Method("update"), SQL),
    rule(Crypto, Path("Cipher.getInstance")),
    rule(Crypto, Path("MessageDigest.getInstance")),
    rule(Crypto, Path("Mac.getInstance")),
    rule(Crypto, Path("KeyGenerator.getInstance")),
    rule(Crypto, Path("KeyPairGenerator.getInstance")),
    rule(Crypto, Path("SecretKeyFactory.getInstance")),
    rule(Crypto, Path("Signature.getInstance")),
    rule(Crypto, New("SecretKeySpec")),
    rule(Crypto, Prefix("DigestUtils.")),
    rule(Deserialize, Method("readObject")),
    rule(Deserialize, Method("readUnshared")),
    rule(Deserialize, New("ObjectInputStream")),
    rule(Deserialize, New("XMLDecoder")),
    rule(Deserialize, Method("fromXML")),
    rule_if(PathFromInput, New("File"), FirstNotConstant),
    rule_if(PathFromInput, New("FileInputStream"), FirstNotConstant),
    rule_if(PathFromInput, New("FileOutputStream"), FirstNotConstant),
    rule_if(PathFromInput, New("FileReader"), FirstNotConstant),
    rule_if(PathFromInput, New("FileWriter"), FirstNotConstant),
    rule_if(PathFromInput, New("RandomAccessFile"), FirstNotConstant),
    rule_if(PathFromInput, Path("Paths.get"), FirstNotConstant),
    rule_if(PathFromInput, Path("Path.of"), FirstNotConstant),
];

/// The rule tables that apply to `language`, tried in order; the first match wins.
pub fn rules(language: Language) -> &'static [&'static [Rule]] {
    match language {
        Language::Rust => &[RUST],
        Language::Python => &[PYTHON],
        Language::JavaScript | Language::TypeScript | Language::Tsx => &[JS],
        Language::Go => &[GO],
        Language::C => &[C],
        Language::Cpp => &[C, CPP],
        Language::Java => &[JAVA],
        Language::PlainText => &[],
    }
}

/// Whether `node` is a call, and which of its fields hold the callee and the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallShape {
    /// `function(arguments)`.
    Call,
    /// `new constructor(arguments)` (JS `new_expression`).
    New,
    /// Rust `name!(…)`.
    Macro,
    /// Java `object.name(arguments)`.
    JavaInvocation,
    /// Java `new Type(arguments)`.
    JavaNew,
}

/// The shape of a call node, for the node kinds that are calls in `language`.
pub fn call_shape(language: Language, kind: &str) -> Option<CallShape> {
    match (language, kind) {
        (Language::Rust, "call_expression") => Some(CallShape::Call),
        (Language::Rust, "macro_invocation") => Some(CallShape::Macro),
        (Language::Python, "call") => Some(CallShape::Call),
        (Language::JavaScript | Language::TypeScript | Language::Tsx, "call_expression") => {
            Some(CallShape::Call)
        }
        (Language::JavaScript | Language::TypeScript | Language::Tsx, "new_expression") => {
            Some(CallShape::New)
        }
        (Language::Go | Language::C | Language::Cpp, "call_expression") => Some(CallShape::Call),
        (Language::Java, "method_invocation") => Some(CallShape::JavaInvocation),
        (Language::Java, "object_creation_expression") => Some(CallShape::JavaNew),
        _ => None,
    }
}

/// At most this many bytes of a callee are kept (its tail): enough for any pattern, and
/// bounded for long builder chains whose callee spans the whole chain.
pub const MAX_CALLEE_BYTES: usize = 160;
/// Bound on the recursion of the argument checks.
const MAX_ARG_DEPTH: usize = 6;

/// Matches call nodes against a language's rules. Holds the callee buffer, reused across
/// calls so that the walk allocates nothing per call.
pub struct Matcher<'r> {
    rope: &'r Rope,
    tables: &'static [&'static [Rule]],
    callee: String,
}

impl<'r> Matcher<'r> {
    pub fn new(rope: &'r Rope, language: Language) -> Matcher<'r> {
        Matcher {
            rope,
            tables: rules(language),
            callee: String::with_capacity(MAX_CALLEE_BYTES + 8),
        }
    }

    /// The kind of sensitive call `node` (of shape `shape`) is, if any.
    pub fn classify(&mut self, node: Node, shape: CallShape) -> Option<SensitiveKind> {
        let (callee_range, args) = match shape {
            CallShape::Call => (
                node.child_by_field_name("function")?.byte_range(),
                node.child_by_field_name("arguments"),
            ),
            CallShape::New => (
                node.child_by_field_name("constructor")?.byte_range(),
                node.child_by_field_name("arguments"),
            ),
            CallShape::Macro => (node.child_by_field_name("macro")?.byte_range(), None),
            CallShape::JavaInvocation => {
                let name = node.child_by_field_name("name")?;
                (
                    node.start_byte()..name.end_byte(),
                    node.child_by_field_name("arguments"),
                )
            }
            CallShape::JavaNew => (
                node.child_by_field_name("type")?.byte_range(),
                node.child_by_field_name("arguments"),
            ),
        };
        let truncated = self.load_callee(callee_range);
        if shape == CallShape::Macro {
            self.callee.push('!');
        }
        let is_new = matches!(shape, CallShape::New | CallShape::JavaNew);
        let callee = CalleeText::new(&self.callee, truncated, is_new);
        let tables = self.tables;
        let hit = tables
            .iter()
            .flat_map(|table| table.iter())
            .filter(|rule| callee.matches(rule.callee))
            .find(|rule| self.args_match(rule.args, args))?;
        Some(hit.kind)
    }

    /// Copies the callee's text (its last `MAX_CALLEE_BYTES` bytes, whitespace dropped) into
    /// the buffer; true when it was cut.
    fn load_callee(&mut self, range: std::ops::Range<usize>) -> bool {
        self.callee.clear();
        let truncated = range.end.saturating_sub(range.start) > MAX_CALLEE_BYTES;
        let start = if truncated {
            range.end - MAX_CALLEE_BYTES
        } else {
            range.start
        };
        for_each_chunk(self.rope, start..range.end, |piece| {
            self.callee
                .extend(piece.chars().filter(|c| !c.is_whitespace()));
        });
        truncated
    }

    fn args_match(&self, args: Args, list: Option<Node>) -> bool {
        match args {
            Args::Any => true,
            Args::BuiltAt(index) => list
                .and_then(|l| argument(l, index))
                .is_some_and(|a| self.is_built_string(a, 0)),
            Args::FirstNotConstant => list
                .and_then(|l| argument(l, 0))
                .is_some_and(|a| !self.is_constant(a, 0)),
            Args::FirstIsString => list
                .and_then(|l| argument(l, 0))
                .is_some_and(|a| self.is_string_like(a, 0)),
            Args::NoSafeLoader => list.is_none_or(|l| {
                let mut cursor = l.walk();
                let safe = l
                    .named_children(&mut cursor)
                    .any(|a| self.text(a).contains("SafeLoader"));
                !safe
            }),
        }
    }

    /// An expression that builds a string from parts: interpolation, concatenation with a
    /// string, or a formatting call.
    fn is_built_string(&self, node: Node, depth: usize) -> bool {
        if depth > MAX_ARG_DEPTH {
            return false;
        }
        let inner = |n: Option<Node>| n.is_some_and(|n| self.is_built_string(n, depth + 1));
        match node.kind() {
            // Python f-strings; JS template literals with substitutions.
            "string" | "template_string" => {
                has_child_kind(node, &["interpolation", "template_substitution"])
            }
            "concatenated_string" => {
                let mut cursor = node.walk();
                let parts: Vec<Node> = node.named_children(&mut cursor).collect();
                parts
                    .into_iter()
                    .any(|p| self.is_built_string(p, depth + 1))
            }
            "binary_expression" | "binary_operator" => {
                let op = node
                    .child_by_field_name("operator")
                    .map(|o| o.kind())
                    .unwrap_or("");
                let (left, right) = (
                    node.child_by_field_name("left"),
                    node.child_by_field_name("right"),
                );
                let stringy =
                    |n: Option<Node>| n.is_some_and(|n| self.is_string_like(n, depth + 1));
                let constant = |n: Option<Node>| n.is_some_and(|n| self.is_constant(n, depth + 1));
                match op {
                    // `"SELECT " + "1"` is still a constant.
                    "+" => {
                        (stringy(left) || stringy(right)) && !(constant(left) && constant(right))
                    }
                    // Python `"… %s" % x`.
                    "%" => node.kind() == "binary_operator" && stringy(left),
                    _ => false,
                }
            }
            "parenthesized_expression" | "reference_expression" | "keyword_argument" => {
                let mut cursor = node.walk();
                let last = node.named_children(&mut cursor).last();
                inner(last)
            }
            "macro_invocation" => node
                .child_by_field_name("macro")
                .is_some_and(|m| matches!(last_segment(&self.text(m)), "format" | "format_args")),
            "call_expression" | "call" | "method_invocation" => {
                self.is_formatting_call(node, depth)
            }
            _ => false,
        }
    }

    /// `fmt.Sprintf(…)`, `String.format(…)`, `std::format(…)`, `x.format(…)`,
    /// `x.formatted(…)`, or a conversion (`.as_str()`, `.c_str()`, `.toString()`…) of a
    /// built string.
    fn is_formatting_call(&self, node: Node, depth: usize) -> bool {
        let (name, receiver) = if node.kind() == "method_invocation" {
            (
                node.child_by_field_name("name"),
                node.child_by_field_name("object"),
            )
        } else {
            let Some(function) = node.child_by_field_name("function") else {
                return false;
            };
            let receiver = ["value", "object", "operand", "argument"]
                .iter()
                .find_map(|f| function.child_by_field_name(f));
            let name = ["field", "attribute", "property", "name"]
                .iter()
                .find_map(|f| function.child_by_field_name(f))
                .or(Some(function));
            (name, receiver)
        };
        let Some(name) = name else { return false };
        let name_text = self.text(name);
        match last_segment(&name_text) {
            // `fmt.Sprintf`, `String.format`, `std::format`, and `.format(…)`/`.formatted(…)`
            // on anything: in an SQL argument position these are string formatting.
            "Sprintf" | "format" | "formatted" => true,
            "as_str" | "to_string" | "to_owned" | "into" | "c_str" | "toString" | "data" => {
                receiver.is_some_and(|r| self.is_built_string(r, depth + 1))
            }
            _ => false,
        }
    }

    /// A string literal, or a string built from parts.
    fn is_string_like(&self, node: Node, depth: usize) -> bool {
        is_string_literal(node.kind()) || self.is_built_string(node, depth)
    }

    /// A value that cannot come from input: a string or number literal, a SCREAMING_CASE
    /// name, `&"…"`, or a call whose arguments are all constants.
    fn is_constant(&self, node: Node, depth: usize) -> bool {
        if depth > MAX_ARG_DEPTH {
            return false;
        }
        let kind = node.kind();
        if is_string_literal(kind) {
            return !has_child_kind(node, &["interpolation", "template_substitution"]);
        }
        match kind {
            "identifier" | "constant" => is_screaming_case(&self.text(node)),
            "reference_expression" | "parenthesized_expression" => {
                let mut cursor = node.walk();
                let last = node.named_children(&mut cursor).last();
                last.is_some_and(|n| self.is_constant(n, depth + 1))
            }
            "binary_expression" | "binary_operator" => {
                let part = |f: &str| {
                    node.child_by_field_name(f)
                        .is_some_and(|n| self.is_constant(n, depth + 1))
                };
                node.child_by_field_name("operator")
                    .is_some_and(|o| o.kind() == "+")
                    && part("left")
                    && part("right")
            }
            "call_expression" | "call" | "method_invocation" | "object_creation_expression" => {
                let Some(list) = node.child_by_field_name("arguments") else {
                    return false;
                };
                let mut cursor = list.walk();
                let args: Vec<Node> = list
                    .named_children(&mut cursor)
                    .filter(|a| !a.kind().contains("comment"))
                    .collect();
                !args.is_empty() && args.into_iter().all(|a| self.is_constant(a, depth + 1))
            }
            _ => kind.ends_with("integer_literal") || kind == "number_literal",
        }
    }

    /// A node's text, clamped, at most `MAX_CALLEE_BYTES` bytes (a short excerpt is all the
    /// checks need).
    fn text(&self, node: Node) -> String {
        let start = node.start_byte();
        let end = node.end_byte().min(start.saturating_add(MAX_CALLEE_BYTES));
        let mut out = String::new();
        for_each_chunk(self.rope, start..end, |piece| out.push_str(piece));
        out
    }
}

/// A callee as written (whitespace removed), with where its segments start, computed once
/// per call and shared by all rules.
pub struct CalleeText<'a> {
    text: &'a str,
    /// Only the tail of a longer callee was kept.
    truncated: bool,
    /// A constructor call.
    is_new: bool,
    /// Byte offsets right after each boundary (`.`, `:`, `>`), at most `MAX_SEGMENTS`.
    segment_starts: [usize; MAX_SEGMENTS],
    segments: usize,
}

const MAX_SEGMENTS: usize = 12;

impl<'a> CalleeText<'a> {
    pub fn new(text: &'a str, truncated: bool, is_new: bool) -> CalleeText<'a> {
        let mut segment_starts = [0; MAX_SEGMENTS];
        let mut segments = 0;
        for (i, b) in text.bytes().enumerate() {
            if is_boundary(b) && segments < MAX_SEGMENTS {
                segment_starts[segments] = i + 1;
                segments += 1;
            }
        }
        CalleeText {
            text,
            truncated,
            is_new,
            segment_starts,
            segments,
        }
    }

    pub fn matches(&self, pattern: Callee) -> bool {
        let text = self.text;
        match pattern {
            Exact(p) => !self.is_new && !self.truncated && text == p,
            Path(p) => !self.is_new && self.ends_at_boundary(p),
            Method(m) => {
                !self.is_new
                    && text.len() > m.len()
                    && text.ends_with(m)
                    && is_boundary(text.as_bytes()[text.len() - m.len() - 1])
            }
            Prefix(p) => {
                !self.is_new
                    && ((!self.truncated && text.starts_with(p))
                        || self.segment_starts[..self.segments]
                            .iter()
                            .any(|&i| text[i..].starts_with(p)))
            }
            New(t) => self.is_new && self.ends_at_boundary(t),
        }
    }

    /// The text is `p`, or ends with `p` right after a boundary.
    fn ends_at_boundary(&self, p: &str) -> bool {
        let text = self.text;
        if !text.ends_with(p) {
            return false;
        }
        if text.len() == p.len() {
            return !self.truncated;
        }
        is_boundary(text.as_bytes()[text.len() - p.len() - 1])
    }
}

fn is_boundary(b: u8) -> bool {
    matches!(b, b'.' | b':' | b'>')
}

/// The argument at `index` of an argument list, comments skipped.
fn argument(list: Node, index: usize) -> Option<Node> {
    let mut cursor = list.walk();
    list.named_children(&mut cursor)
        .filter(|a| !a.kind().contains("comment"))
        .nth(index)
}

fn has_child_kind(node: Node, kinds: &[&str]) -> bool {
    let mut cursor = node.walk();
    node.named_children(&mut cursor)
        .any(|c| kinds.contains(&c.kind()))
}

fn is_string_literal(kind: &str) -> bool {
    matches!(
        kind,
        "string"
            | "string_literal"
            | "raw_string_literal"
            | "interpreted_string_literal"
            | "template_string"
            | "concatenated_string"
            | "text_block"
    )
}

fn is_screaming_case(name: &str) -> bool {
    name.bytes().any(|b| b.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The part after the last `.`, `::` or `->`.
fn last_segment(path: &str) -> &str {
    path.rsplit(['.', ':', '>']).next().unwrap_or(path).trim()
}

/// The start of the char containing `byte`, clamped to the rope. Works inside one chunk:
/// no char counting, unlike `byte_to_char`.
pub fn floor(rope: &Rope, byte: usize) -> usize {
    let byte = byte.min(rope.len_bytes());
    let (chunk, chunk_start, _, _) = rope.chunk_at_byte(byte);
    let mut i = byte - chunk_start;
    while i > 0 && !chunk.is_char_boundary(i) {
        i -= 1;
    }
    chunk_start + i
}

/// Calls `f` with the pieces of text of `range` (clamped to the rope and to char
/// boundaries), in order, straight from the rope's chunks: no `RopeSlice`, no copy.
pub fn for_each_chunk(rope: &Rope, range: std::ops::Range<usize>, mut f: impl FnMut(&str)) {
    let end = floor(rope, range.end);
    let start = floor(rope, range.start).min(end);
    if start == end {
        return;
    }
    let (chunks, mut chunk_start, _, _) = rope.chunks_at_byte(start);
    for chunk in chunks {
        if chunk_start >= end {
            break;
        }
        // Chunks are split on char boundaries, so both cuts are char boundaries.
        let a = start.saturating_sub(chunk_start).min(chunk.len());
        let b = (end - chunk_start).min(chunk.len());
        if a < b {
            f(&chunk[a..b]);
        }
        chunk_start += chunk.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callee_patterns_respect_boundaries() {
        let cases = [
            (Exact("eval"), "eval", false, false, true),
            (Exact("eval"), "x.eval", false, false, false),
            (Exact("eval"), "eval", true, false, false),
            (
                Path("Command::new"),
                "std::process::Command::new",
                false,
                false,
                true,
            ),
            (Path("Command::new"), "MyCommand::new", false, false, false),
            (Path("yaml.load"), "yaml.safe_load", false, false, false),
            (Path("os.system"), "os.system", false, false, true),
            (Prefix("subprocess."), "subprocess.run", false, false, true),
            (Prefix("fs::"), "std::fs::read", false, false, true),
            (Prefix("fs::"), "xfs::read", false, false, false),
            (
                Prefix("crypto."),
                "window.crypto.getRandomValues",
                false,
                false,
                true,
            ),
            (
                Method("exec"),
                "Runtime.getRuntime().exec",
                false,
                false,
                true,
            ),
            (Method("exec"), "exec", false, false, false),
            (Method("execute"), "cur->execute", false, false, true),
            (New("File"), "java.io.File", false, true, true),
            (New("File"), "File", false, false, false),
            (Path("File"), "File", false, true, false),
        ];
        for (pattern, callee, truncated, is_new, want) in cases {
            assert_eq!(
                CalleeText::new(callee, truncated, is_new).matches(pattern),
                want,
                "{pattern:?} on {callee:?}"
            );
        }
    }

    #[test]
    fn every_language_with_a_grammar_has_rules() {
        use Language::*;
        for lang in [Rust, Python, JavaScript, TypeScript, Tsx, Go, C, Cpp, Java] {
            assert!(!rules(lang).is_empty(), "{lang:?}");
        }
        assert!(rules(PlainText).is_empty());
    }
}
