//! Secret redaction: API keys of the common providers, private key blocks, JWTs, bearer
//! tokens, passwords in URLs and password/secret/token/api-key assignments are masked before
//! any text leaves for a cloud model. Pure: text in, text out; no I/O, no configuration.
//!
//! Only the secret VALUE is replaced, by [`MASK`]; quotes, keys, operators, PEM armour lines
//! and line structure stay, so a model can still reason about the code
//! (`password = "[REDACTED]"` still shows a hard-coded credential to a security review).
//!
//! What is found:
//! - provider keys anywhere (code, comments, prose): OpenAI `sk-…`/`sk-proj-…`, Anthropic
//!   `sk-ant-…`, AWS access key ids `AKIA…`/`ASIA…`, GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`
//!   and `github_pat_`, Slack `xox[abprs]-`, Google `AIza…`, Stripe `sk_live_`/`rk_live_`
//!   (and `_test_`), JWTs (`eyJ…`, three base64url parts);
//! - PEM private key blocks (`-----BEGIN … PRIVATE KEY-----` to `-----END …`, or to the end
//!   of the text when the block is cut off): the body is masked, the armour lines stay. A
//!   block cut off at the START (a prompt window that begins inside it) is found by its END
//!   line: when every line from the start of the text to the END line looks like key
//!   material (base64, possibly quoted or `\n`-escaped, PEM headers, blank lines), all of it
//!   is masked;
//! - `Bearer <token>`, `Authorization: Basic <credentials>`, and `scheme://user:PASSWORD@host`;
//! - assignments and key/value pairs whose key NAMES a secret: the last word of the key is
//!   password/passwd/passphrase/pass/pwd/secret (a "password-like" key, any non-empty value),
//!   or token/apikey/authorization or `<api|access|secret|private|auth|…>_key` (a
//!   "token-like" key, values of 8+ characters without spaces, so that a lexer's
//!   `token = "("` is left alone). Quoted values after `=`, `:`, `:=`, `=>` (and `==`/`!=`
//!   for password-like keys) in any language; unquoted values only at the start of a line
//!   (`.env`, YAML, INI): `KEY=value` with no spaces always, otherwise only a value that
//!   looks generated (6+ characters with letters and digits).
//!
//! What is deliberately left alone (documented choices):
//! - code, not data: `password = input()`, `token = next_token()`, `api_key = os.getenv(…)`,
//!   `let key = map.key()`, `password: String`, `password = user.password`;
//! - empty strings, references and templates (`$VAR`, `${VAR}`, `{{ var }}`, `<your-key>`,
//!   `%(pw)s`), and obvious placeholders: `changeme`, `password`, `secret`, `xxxx`, `***`,
//!   `your-api-key-here`, anything with `example` (AWS's documented `AKIAIOSFODNN7EXAMPLE`),
//!   and the mask itself — so redaction is idempotent and a review can still flag a
//!   hard-coded default like `"changeme"`;
//! - UI labels for password-like keys (`"password": "Enter your password"`);
//! - secrets passed as call arguments (`login("hunter2")`) or high-entropy strings with no
//!   telling key or prefix: there is nothing to recognise them by without false alarms.

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a secret value is replaced with.
pub const MASK: &str = "[REDACTED]";

/// The text with every secret masked, and how many were masked.
pub fn redact(text: &str) -> (String, usize) {
    let spans = find_secrets(text);
    if spans.is_empty() {
        return (text.to_string(), 0);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in &spans {
        out.push_str(&text[at..span.start]);
        out.push_str(MASK);
        at = span.end;
    }
    out.push_str(&text[at..]);
    (out, spans.len())
}

/// How many secrets `text` holds (what [`redact`] would mask), without building the
/// redacted text.
pub fn contains_secrets(text: &str) -> usize {
    find_secrets(text).len()
}

/// Provider keys and JWTs: recognisable by their prefix alone, so found anywhere.
static PROVIDER_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
          \bsk-ant-[A-Za-z0-9_\-]{20,}
        | \bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}
        | \b(?:AKIA|ASIA)[0-9A-Z]{16}\b
        | \bgh[pousr]_[A-Za-z0-9]{36,}\b
        | \bgithub_pat_[A-Za-z0-9_]{22,}
        | \bxox[abprs]-[A-Za-z0-9\-]{10,}
        | \bAIza[0-9A-Za-z_\-]{35}
        | \b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}
        | \beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}
        ",
    )
    .expect("provider key regex")
});

/// A PEM private key block; the body runs to the END line or, when cut off, to the end.
static PEM_PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----(?P<body>.*?)(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\z)",
    )
    .expect("PEM regex")
});

/// The END line of a PEM private key block, for blocks whose BEGIN line was cut off.
static PEM_PRIVATE_KEY_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----").expect("PEM END regex")
});

/// `Bearer <token>` anywhere; `Authorization: Basic <credentials>`.
static AUTH_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?xi)
          \bbearer\s+(?P<bearer>[A-Za-z0-9\-._~+/]{8,}=*)
        | \bauthorization["']?\s*[:=]\s*["']?basic\s+(?P<basic>[A-Za-z0-9+/]{8,}={0,2})
        "#,
    )
    .expect("authorization regex")
});

/// The password of `scheme://user:password@host`.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@"'<>]+:(?P<value>[^\s@/"'<>]+)@"#)
        .expect("URL password regex")
});

/// `KEY <op> "value"` in most languages and config formats: the key may be quoted or
/// subscripted (`"api_key": "…"`, `env["TOKEN"] = "…"`) and typed (`let pw: &str = "…"`).
static QUOTED_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?x)
        (?P<key>[A-Za-z_][A-Za-z0-9_.\-]*) ["']? \]?
        (?:
            \s* (?: : \s* &? (?:'static \s+)? [A-Za-z_][A-Za-z0-9_<>:]* \s* )?
            (?P<op> ===? | !==? | := | => | = )
          | \s* :
        )
        \s*
        (?:
            "(?P<dq>(?:[^"\\\n]|\\.)*)"
          | '(?P<sq>(?:[^'\\\n]|\\.)*)'
          | `(?P<bq>(?:[^`\\]|\\.)*)`
        )
        "#,
    )
    .expect("quoted assignment regex")
});

/// `KEY=value` / `key: value` at the start of a line (`.env`, YAML, INI, properties).
static LINE_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?m)^[ \t]*(?:export[ \t]+|-[ \t]+)?(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>[ \t]*[=:][ \t]*)(?P<value>[^\s"'`=:\#][^\s"'`]*)"#,
    )
    .expect("line assignment regex")
});

/// The byte ranges to mask, sorted, overlapping finds merged into one.
fn find_secrets(text: &str) -> Vec<Range<usize>> {
    let mut spans: Vec<Range<usize>> = Vec::new();

    for m in PROVIDER_KEY.find_iter(text) {
        if provider_key_is_real(m.as_str()) {
            spans.push(m.range());
        }
    }
    let mut whole_blocks: Vec<Range<usize>> = Vec::new();
    for c in PEM_PRIVATE_KEY.captures_iter(text) {
        if let Some(whole) = c.get(0) {
            whole_blocks.push(whole.range());
        }
        if let Some(body) = c.name("body") {
            let range = trim_pem_body(text, body.range());
            if !range.is_empty() && &text[range.clone()] != MASK {
                spans.push(range);
            }
        }
    }
    for end in PEM_PRIVATE_KEY_END.find_iter(text) {
        let in_a_whole_block = whole_blocks
            .iter()
            .any(|b| b.start <= end.start() && end.end() <= b.end);
        if !in_a_whole_block {
            if let Some(range) = cut_off_pem_body(text, end.start()) {
                spans.push(range);
            }
        }
    }
    for c in AUTH_HEADER.captures_iter(text) {
        if let Some(m) = c.name("bearer") {
            if looks_generated(m.as_str(), 8) && !is_placeholder(m.as_str()) {
                spans.push(m.range());
            }
        } else if let Some(m) = c.name("basic") {
            if !is_placeholder(m.as_str()) {
                spans.push(m.range());
            }
        }
    }
    for c in URL_PASSWORD.captures_iter(text) {
        if let Some(m) = c.name("value") {
            if !is_placeholder(m.as_str()) && !is_reference(m.as_str()) {
                spans.push(m.range());
            }
        }
    }
    for c in QUOTED_ASSIGNMENT.captures_iter(text) {
        if let Some(range) = quoted_assignment_value(&c) {
            spans.push(range);
        }
    }
    for c in LINE_ASSIGNMENT.captures_iter(text) {
        if let Some(range) = line_assignment_value(&c) {
            spans.push(range);
        }
    }

    spans.sort_unstable_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start < last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// Rules out prefix look-alikes: `sk-learn-model-selection` (no digit), documentation
/// examples (`AKIAIOSFODNN7EXAMPLE`, `ghp_xxxx…`).
fn provider_key_is_real(key: &str) -> bool {
    if key.starts_with("sk-")
        && !key.starts_with("sk-ant-")
        && !key.bytes().any(|b| b.is_ascii_digit())
    {
        return false;
    }
    let upper = key.to_ascii_uppercase();
    !(upper.contains("EXAMPLE") || upper.contains("XXXXX") || upper.contains("YOUR"))
}

/// The body of a PEM private key block whose BEGIN line is not in `text` (a window that
/// starts inside the block), ending at the END armour at `end_armour`: the key material
/// from the start of the text up to that line. `None` unless every line before the END
/// line, back to the start of the text, looks like key material: a window cut inside a
/// block holds nothing else, and an END line quoted in ordinary code is left alone.
fn cut_off_pem_body(text: &str, end_armour: usize) -> Option<Range<usize>> {
    let before = &text[..end_armour];
    if !before.split('\n').all(looks_like_key_material) {
        return None;
    }
    let mut range = trim_pem_body(text, 0..end_armour);
    // A key cut inside a string literal: its opening quote is code, not key.
    while text[range.clone()].starts_with(['"', '\'', '`']) {
        range.start += 1;
    }
    let body = &text[range.clone()];
    (body.chars().any(|c| c.is_ascii_alphanumeric()) && body != MASK).then_some(range)
}

/// A line (or the part of one) of a PEM body as it may sit in a file or in code: base64
/// characters, PEM headers (`Proc-Type:`, `DEK-Info:`), or nothing, possibly quoted,
/// concatenated or with `\n` escapes.
fn looks_like_key_material(line: &str) -> bool {
    let line = line.replace("\\n", "").replace("\\r", "");
    let core = line.trim_matches(|c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '+' | ',' | ';' | '(' | ')')
    });
    core.is_empty()
        || core.starts_with("Proc-Type:")
        || core.starts_with("DEK-Info:")
        || core == MASK
        || core
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
}

/// The PEM body without the whitespace and `\n` escapes around it.
fn trim_pem_body(text: &str, mut range: Range<usize>) -> Range<usize> {
    loop {
        let s = &text[range.clone()];
        if let Some(c) = s.chars().next().filter(|c| c.is_whitespace()) {
            range.start += c.len_utf8();
        } else if s.starts_with("\\n") || s.starts_with("\\r") {
            range.start += 2;
        } else if let Some(c) = s.chars().next_back().filter(|c| c.is_whitespace()) {
            range.end -= c.len_utf8();
        } else if s.ends_with("\\n") || s.ends_with("\\r") {
            range.end -= 2;
        } else {
            return range;
        }
    }
}

/// How strongly a key name says its value is a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretKey {
    /// password, passwd, passphrase, pass, pwd, secret: any non-empty value.
    Password,
    /// token, api key, access key, authorization…: values of 8+ characters, no spaces.
    Token,
}

/// Classifies a key by its last word(s): `DB_PASSWORD`, `self.password`, `apiKey`,
/// `x-api-key`, `client_secret`, `GITHUB_TOKEN`, `aws_secret_access_key`. Not: `tokenizer`,
/// `max_tokens`, `password_hint`, `key`, `token_url`.
fn secret_key(key: &str) -> Option<SecretKey> {
    let mut last: Option<&str> = None;
    let mut prev: Option<&str> = None;
    for w in Words::new(key) {
        prev = last;
        last = Some(w);
    }
    let last = last?.to_ascii_lowercase();
    let prev = prev.map(str::to_ascii_lowercase);
    match last.as_str() {
        "password" | "passwd" | "passphrase" | "secret" => Some(SecretKey::Password),
        "pass" => Some(SecretKey::Password),
        // `PWD` alone is the shell's working directory; `DB_PWD` is a password.
        "pwd" if prev.is_some() => Some(SecretKey::Password),
        "token" | "apikey" | "authorization" => Some(SecretKey::Token),
        "key"
            if prev.as_deref().is_some_and(|p| {
                matches!(
                    p,
                    "api"
                        | "access"
                        | "secret"
                        | "private"
                        | "auth"
                        | "encryption"
                        | "signing"
                        | "master"
                        | "client"
                        | "app"
                        | "consumer"
                        | "hmac"
                        | "jwt"
                        | "license"
                        | "subscription"
                )
            }) =>
        {
            Some(SecretKey::Token)
        }
        _ => None,
    }
}

/// Words of an identifier: split at `_`, `-`, `.`, and camelCase / `APIKey` boundaries.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(s: &'a str) -> Words<'a> {
        Words { rest: s }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self
            .rest
            .trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let b = s.as_bytes();
        let mut end = 1;
        while end < b.len() {
            let (p, c) = (b[end - 1], b[end]);
            let next_lower = b.get(end + 1).is_some_and(u8::is_ascii_lowercase);
            let boundary = !c.is_ascii_alphanumeric()
                || (c.is_ascii_uppercase() && (p.is_ascii_lowercase() || p.is_ascii_digit()))
                || (c.is_ascii_uppercase() && p.is_ascii_uppercase() && next_lower);
            if boundary {
                break;
            }
            end += 1;
        }
        self.rest = &s[end..];
        Some(&s[..end])
    }
}

fn quoted_assignment_value(c: &Captures<'_>) -> Option<Range<usize>> {
    let kind = secret_key(c.name("key")?.as_str())?;
    let op = c.name("op").map_or(":", |m| m.as_str());
    let comparison = matches!(op, "==" | "===" | "!=" | "!==");
    if comparison && kind != SecretKey::Password {
        return None;
    }
    let value = c
        .name("dq")
        .or_else(|| c.name("sq"))
        .or_else(|| c.name("bq"))?;
    let range = strip_auth_scheme(value.as_str(), value.range());
    let value = &value.as_str()[range.start - value.start()..range.end - value.start()];
    value_is_secret(value, kind).then_some(range)
}

fn line_assignment_value(c: &Captures<'_>) -> Option<Range<usize>> {
    let kind = secret_key(c.name("key")?.as_str())?;
    let m = c.name("value")?;
    let value = m.as_str().trim_end_matches([',', ';']);
    let range = m.start()..m.start() + value.len();
    let code_like = value.contains(['(', ')', '[', ']', '{', '}', '<', '>'])
        || value.starts_with(['$', '%', '&', '*', '!', '@', '|', '>']);
    if code_like || !value_is_secret(value, kind) {
        return None;
    }
    let env_style = c.name("sep").is_some_and(|s| s.as_str() == "=");
    (env_style || looks_generated(value, 6)).then_some(range)
}

/// For `Authorization` values: the credentials after `Bearer `/`Basic `/`token `.
fn strip_auth_scheme(value: &str, range: Range<usize>) -> Range<usize> {
    for scheme in ["bearer ", "basic ", "token ", "digest "] {
        let starts = value
            .get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme));
        if starts {
            let credentials = value[scheme.len()..].trim_start();
            return range.end - credentials.len()..range.end;
        }
    }
    range
}

/// Whether the value of a secret-named key is a real secret rather than empty, a
/// reference, a placeholder or a UI label.
fn value_is_secret(value: &str, kind: SecretKey) -> bool {
    if value.is_empty() || is_reference(value) || is_placeholder(value) {
        return false;
    }
    match kind {
        SecretKey::Password => !is_label(value),
        SecretKey::Token => value.len() >= 8 && !value.contains(char::is_whitespace),
    }
}

/// `$VAR`, `${VAR}`, `{{ var }}`, `<your-key>`, `%(pw)s`, `%s`, `{}`, `#{x}`.
fn is_reference(value: &str) -> bool {
    value.starts_with('$')
        || value.contains("${")
        || value.contains("{{")
        || value.contains("#{")
        || value.contains("%(")
        || value == "%s"
        || value == "{}"
        || (value.starts_with('<') && value.ends_with('>'))
}

/// Obvious placeholders and the mask itself.
fn is_placeholder(value: &str) -> bool {
    let normal: String = value
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if normal.is_empty() || all_same_char(&normal) {
        return true;
    }
    const WORDS: &[&str] = &[
        "changeme",
        "password",
        "passwd",
        "pass",
        "secret",
        "token",
        "apikey",
        "key",
        "sample",
        "dummy",
        "fake",
        "redacted",
        "todo",
        "fixme",
        "none",
        "null",
        "nil",
        "undefined",
        "test",
        "foo",
        "bar",
        "foobar",
        "bearer",
        "basic",
        "string",
        "value",
        "required",
        "empty",
    ];
    WORDS.contains(&normal.as_str())
        || normal.starts_with("your")
        || normal.ends_with("here")
        || normal.contains("example")
        || normal.contains("placeholder")
        || normal.contains("changeme")
        || normal.contains("redacted")
}

/// A sentence or UI label rather than a password: `"Enter your password"`, `"Mot de passe"`.
fn is_label(value: &str) -> bool {
    let mut chars = value.chars();
    value.contains(' ')
        && chars.next().is_some_and(|c| c.is_uppercase())
        && chars.next().is_some_and(|c| c.is_lowercase())
}

/// Machine-made: at least `min_len` characters with both letters and digits.
fn looks_generated(value: &str, min_len: usize) -> bool {
    value.len() >= min_len
        && value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().any(|b| b.is_ascii_alphabetic())
}

fn all_same_char(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|first| chars.all(|c| c == first))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made-up keys with the real shapes (none is, or was, a live credential).
    const OPENAI: &str = "sk-proj-4fQ9vR2LmX8tBz1KcWn7Yh3JdP6sAe0U_gT5iHo-Vb";
    const OPENAI_OLD: &str = "sk-Tq3mZ8xW1vB6nK9pL2rD7fG4hJ0sA5cE1uY3iO8tR6wQ2zX";
    const ANTHROPIC: &str = "sk-ant-api03-Zk8Qw2Ln5Rt9Yb3Xc7Vm1Hs4Jd6Gf0Pa-Ue2Io8Ty_5Wq";
    const AWS_ID: &str = "AKIAZ3MHQ7WDBN2EFGH4";
    const AWS_SECRET: &str = "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";
    const GITHUB: &str = "ghp_R7tY2uI9oP4aS6dF1gH8jK3lZ5xC0vB7nM2q";
    const GITHUB_PAT: &str = "github_pat_11ABCDEFG0abcdefghij_klmnopqrstuvwxyzABCDEFGHIJKLMNOP1234";
    const SLACK: &str = "xoxb-2048151642-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
    const GOOGLE: &str = "AIzaSyD8x7Kq2Lm9Wn4Rt6Yb1Vc3Hs5Jd0GfPaU";
    const STRIPE: &str = "sk_live_51Hx7QkLmN2pR8tV4wY6zB9cD";
    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    /// (input, expected output, expected count). `{K}` in the input stands for `key` and in
    /// the output for the mask, so that each row reads once.
    fn cases() -> Vec<(String, String, usize)> {
        let m = MASK;
        let row = |input: String, output: String, n: usize| (input, output, n);
        vec![
            // --- provider keys anywhere ---
            row(format!("client = OpenAI(api_key=\"{OPENAI}\")"), format!("client = OpenAI(api_key=\"{m}\")"), 1),
            row(format!("# old key: {OPENAI_OLD}"), format!("# old key: {m}"), 1),
            row(format!("ANTHROPIC_API_KEY={ANTHROPIC}\n"), format!("ANTHROPIC_API_KEY={m}\n"), 1),
            row(format!("creds = ('{AWS_ID}', x)"), format!("creds = ('{m}', x)"), 1),
            row(format!("aws_secret_access_key = {AWS_SECRET}\n"), format!("aws_secret_access_key = {m}\n"), 1),
            row(format!("aws_secret_access_key: \"{AWS_SECRET}\""), format!("aws_secret_access_key: \"{m}\""), 1),
            row(format!("git clone https://{GITHUB}@github.com/o/r"), format!("git clone https://{m}@github.com/o/r"), 1),
            row(format!("gh = Github(\"{GITHUB_PAT}\")"), format!("gh = Github(\"{m}\")"), 1),
            row(format!("const slack = new WebClient('{SLACK}');"), format!("const slack = new WebClient('{m}');"), 1),
            row(format!("url = f\"https://maps.googleapis.com/x?key={GOOGLE}\""), format!("url = f\"https://maps.googleapis.com/x?key={m}\""), 1),
            row(format!("stripe.api_key = \"{STRIPE}\""), format!("stripe.api_key = \"{m}\""), 1),
            row(format!("let session = \"{JWT}\";"), format!("let session = \"{m}\";"), 1),
            // --- PEM ---
            row(
                "let k = \"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nq9Zs+Xk=\n-----END RSA PRIVATE KEY-----\";".into(),
                format!("let k = \"-----BEGIN RSA PRIVATE KEY-----\n{m}\n-----END RSA PRIVATE KEY-----\";"),
                1,
            ),
            row(
                "KEY = \"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjE=\\n-----END OPENSSH PRIVATE KEY-----\\n\"".into(),
                format!("KEY = \"-----BEGIN OPENSSH PRIVATE KEY-----\\n{m}\\n-----END OPENSSH PRIVATE KEY-----\\n\""),
                1,
            ),
            row(
                "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC".into(),
                format!("-----BEGIN PRIVATE KEY-----\n{m}"),
                1,
            ),
            row("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----".into(), "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----".into(), 0),
            // A window that starts inside a block: its BEGIN line is cut off.
            row(
                "Bgkqhkig9w0BAQEFAASC\nMIIEowIBAAKCAQEA7+q9Zs/Xk=\n-----END PRIVATE KEY-----\nnext step".into(),
                format!("{m}\n-----END PRIVATE KEY-----\nnext step"),
                1,
            ),
            row(
                "    \"MIIEowIBAAKCAQEA7\\n\" +\n    \"q9Zs+Xk=\\n-----END RSA PRIVATE KEY-----\";".into(),
                format!("    \"{m}\\n-----END RSA PRIVATE KEY-----\";"),
                1,
            ),
            row(
                "if line == \"-----END RSA PRIVATE KEY-----\":".into(),
                "if line == \"-----END RSA PRIVATE KEY-----\":".into(),
                0,
            ),
            row(
                "fn end() {\n    \"-----END PRIVATE KEY-----\"\n}".into(),
                "fn end() {\n    \"-----END PRIVATE KEY-----\"\n}".into(),
                0,
            ),
            // --- assignments, every syntax ---
            row("password = \"hunter2\"".into(), format!("password = \"{m}\""), 1),
            row("db.connect(host, password='s3cr3t!')".into(), format!("db.connect(host, password='{m}')"), 1),
            row("{\"api_key\": \"a1b2c3d4e5f6g7h8\", \"user\": \"bob\"}".into(), format!("{{\"api_key\": \"{m}\", \"user\": \"bob\"}}"), 1),
            row("SECRET_TOKEN=abcdefghijklmnop\nDEBUG=true\n".into(), format!("SECRET_TOKEN={m}\nDEBUG=true\n"), 1),
            row("export DB_PASS=pa55word\n".into(), format!("export DB_PASS={m}\n"), 1),
            row("let db_password: &str = \"correct horse\";".into(), format!("let db_password: &str = \"{m}\";"), 1),
            row("const apiKey: string = `k9x8c7v6b5n4`;".into(), format!("const apiKey: string = `{m}`;"), 1),
            row("clientSecret := \"0a1b2c3d\"".into(), format!("clientSecret := \"{m}\""), 1),
            row("env[\"GITHUB_TOKEN\"] = \"tok_9f8e7d6c5b4a\"".into(), format!("env[\"GITHUB_TOKEN\"] = \"{m}\""), 1),
            row("database:\n  password: hunter22\n  user: app\n".into(), format!("database:\n  password: {m}\n  user: app\n"), 1),
            row("spring.datasource.password=Tr0ub4dor\n".into(), format!("spring.datasource.password={m}\n"), 1),
            row("if password == \"letmein\":".into(), format!("if password == \"{m}\":"), 1),
            // --- authorization and URLs ---
            row("curl -H 'Authorization: Bearer 4f9a8b7c6d5e4f3a2b1c'".into(), format!("curl -H 'Authorization: Bearer {m}'"), 1),
            row("headers = {\"Authorization\": \"Bearer 4f9a8b7c6d5e4f3a2b1c\"}".into(), format!("headers = {{\"Authorization\": \"Bearer {m}\"}}"), 1),
            row("Authorization: Basic dXNlcjpwYXNzd29yZA==".into(), format!("Authorization: Basic {m}"), 1),
            row("DATABASE_URL = \"postgres://app:Zx9!kq2@db:5432/app\"".into(), format!("DATABASE_URL = \"postgres://app:{m}@db:5432/app\""), 1),
            // --- several in one text ---
            row(
                format!("OPENAI_API_KEY={OPENAI}\nGITHUB_TOKEN={GITHUB}\npassword = \"pw1\"\n"),
                format!("OPENAI_API_KEY={m}\nGITHUB_TOKEN={m}\npassword = \"{m}\"\n"),
                3,
            ),
            // --- ordinary code and placeholders: untouched ---
            row("password = input(\"Password: \")".into(), "password = input(\"Password: \")".into(), 0),
            row("token = next_token()\nif token == \"(\": depth += 1".into(), "token = next_token()\nif token == \"(\": depth += 1".into(), 0),
            row("let key = map.key();\nlet value = \"abcdefghijk\";".into(), "let key = map.key();\nlet value = \"abcdefghijk\";".into(), 0),
            row("password = \"\"\napi_key = ''".into(), "password = \"\"\napi_key = ''".into(), 0),
            row("password = \"changeme\"\nAPI_KEY=your-api-key-here\nSECRET=${SECRET}\ntoken: \"{{ vault_token }}\"".into(), "password = \"changeme\"\nAPI_KEY=your-api-key-here\nSECRET=${SECRET}\ntoken: \"{{ vault_token }}\"".into(), 0),
            row("pub struct Login { password: String, token: Option<String> }".into(), "pub struct Login { password: String, token: Option<String> }".into(), 0),
            row("password = user.password\napi_key = os.environ[\"API_KEY\"]\nPWD=/home/me".into(), "password = user.password\napi_key = os.environ[\"API_KEY\"]\nPWD=/home/me".into(), 0),
            row("tokenizer = \"bert-base-uncased\"\nmax_tokens = 256\npassword_hint = \"your pet\"".into(), "tokenizer = \"bert-base-uncased\"\nmax_tokens = 256\npassword_hint = \"your pet\"".into(), 0),
            row("label = {\"password\": \"Enter your password\"}".into(), "label = {\"password\": \"Enter your password\"}".into(), 0),
            row("from sklearn import svm  # sk-learn-model-selection-helpers".into(), "from sklearn import svm  # sk-learn-model-selection-helpers".into(), 0),
            row("aws = \"AKIAIOSFODNN7EXAMPLE\"  # from the AWS docs".into(), "aws = \"AKIAIOSFODNN7EXAMPLE\"  # from the AWS docs".into(), 0),
            row("req.header(\"Authorization\", format!(\"Bearer {token}\"))".into(), "req.header(\"Authorization\", format!(\"Bearer {token}\"))".into(), 0),
            row("postgres://user:password@localhost/db".into(), "postgres://user:password@localhost/db".into(), 0),
        ]
    }

    #[test]
    fn redact_table() {
        let cases = cases();
        assert!(cases.len() >= 20);
        for (input, want, n) in &cases {
            let (got, count) = redact(input);
            assert_eq!(&got, want, "input: {input}");
            assert_eq!(count, *n, "count for input: {input}");
            assert_eq!(contains_secrets(input), *n, "contains_secrets: {input}");
            // Idempotent: the mask is never a secret.
            assert_eq!(redact(&got), (got.clone(), 0), "second pass over: {got}");
        }
    }

    #[test]
    fn redact_key_words() {
        for (key, want) in [
            ("password", Some(SecretKey::Password)),
            ("DB_PASSWORD", Some(SecretKey::Password)),
            ("self.password", Some(SecretKey::Password)),
            ("client_secret", Some(SecretKey::Password)),
            ("DB_PWD", Some(SecretKey::Password)),
            ("PWD", None),
            ("OLDPWD", None),
            ("apiKey", Some(SecretKey::Token)),
            ("APIKey", Some(SecretKey::Token)),
            ("x-api-key", Some(SecretKey::Token)),
            ("aws_secret_access_key", Some(SecretKey::Token)),
            ("GITHUB_TOKEN", Some(SecretKey::Token)),
            ("accessToken", Some(SecretKey::Token)),
            ("Authorization", Some(SecretKey::Token)),
            ("key", None),
            ("tokenizer", None),
            ("max_tokens", None),
            ("token_url", None),
            ("password_hint", None),
            ("primary_key", None),
        ] {
            assert_eq!(secret_key(key), want, "{key}");
        }
        assert_eq!(
            Words::new("parseHTTPResponse_v2").collect::<Vec<_>>(),
            ["parse", "HTTP", "Response", "v2"]
        );
    }

    /// Printed, not asserted: redaction runs once per cloud call, on the prompt.
    #[test]
    fn redact_timing_for_a_300_line_file() {
        let mut source = String::new();
        for i in 0..300 {
            source.push_str(&format!(
                "    let value_{i} = compute(\"arg{i}\", token_count + {i});\n"
            ));
        }
        source.push_str(&format!("    let api_key = \"{OPENAI}\";\n"));
        let start = std::time::Instant::now();
        for _ in 0..20 {
            assert_eq!(std::hint::black_box(redact(&source)).1, 1);
        }
        eprintln!("redact: {:?} for 300 lines", start.elapsed() / 20);
    }

    #[test]
    fn redact_handles_odd_text() {
        assert_eq!(redact(""), (String::new(), 0));
        let cjk = "密码 = \"秘密の値\" // password = \"日本語のパスワード\"";
        let (out, n) = redact(cjk);
        assert_eq!(n, 1, "{out}");
        assert!(out.ends_with(&format!("password = \"{MASK}\"")), "{out}");
        let crlf = "SECRET_KEY=x8f7g6h5j4\r\nNAME=app\r\n";
        assert_eq!(
            redact(crlf),
            (format!("SECRET_KEY={MASK}\r\nNAME=app\r\n"), 1)
        );
    }
}
