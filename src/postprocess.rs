//! Post-processing of a raw model answer into a suggestion that fits the cursor: special
//! tokens and fences stripped, cut to one line or to the enclosing block, text that already
//! follows the cursor trimmed, brackets balanced against the suffix, and useless answers
//! (empty, repeating the code around) dropped. Pure: no I/O, no model, no LSP types.
//!
//! Invariant: every rule removes only what is certainly wrong. A benchmark of exact first-line
//! matches punishes a rule that cuts a correct answer far more than it rewards a tidy one, so
//! each rule asks for positive evidence (a bracket the document would close twice, a line the
//! suffix already holds) and keeps the model's text when in doubt. Rules that only touch lines
//! after the first may be bolder than rules that touch the first.
//!
//! The pipeline, in order — one small function each:
//! 1. [`cut_at_stop`]: the first stop sequence or leaked special token ends the answer.
//! 2. [`strip_fences`], [`strip_echo`]: chat wrappers and a repeat of the typed line go.
//! 3. single-line: [`first_line`]; at the end of a line of code or a comment, the model may
//!    start the next line instead: [`next_line`].
//! 4. multi-line: [`fit_block`] — indentation, block end, repeats, length.
//! 5. [`trim_line_after`]: the rest of the cursor line, when the model wrote it again.
//! 6. [`balance_against_suffix`]: closers that the suffix already supplies.
//! 7. [`already_follows`], [`repeats_neighbour`], [`tidy_whitespace`].

use crate::position::lf_line_breaks;
use crate::syntax::context::{CompletionContext, SuggestionShape};
use crate::syntax::lang::Quote;
use crate::syntax::{Language, LanguageSpec};

/// The most lines a multi-line suggestion may have.
pub const MAX_LINES: usize = 40;

/// Columns a tab counts for in indentation.
const TAB_WIDTH: usize = 4;

/// A line must have at least this many non-blank characters (and a letter or digit) before
/// "it repeats a neighbouring line" counts as evidence: `}` or `i++;` twice is normal code.
const MIN_REPEAT_CHARS: usize = 8;

/// The typed text before the cursor must be at least this long before a suggestion that
/// starts with it counts as an echo: `foo(` + `foo(x)` can be real code.
const MIN_ECHO_CHARS: usize = 8;

/// Special tokens of the FIM families that never occur in real code, cut wherever they leak,
/// whatever the template. Tokens that can be code (`</s>` in HTML, `<PRE>`, `arr[PREFIX]`)
/// are cut only when the request's own stop list names them.
const LEAKED_TOKENS: &[&str] = &[
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|file_sep|>",
    "<|repo_name|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    "<fim_pad>",
    "<file_sep>",
    "<｜end▁of▁sentence｜>",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
    "<|EOT|>",
    "<EOT>",
];

/// Turns the model's raw text into the suggestion to show, or `None` to show nothing.
pub fn postprocess(raw: &str, ctx: &CompletionContext, stop: &[String]) -> Option<String> {
    // A lone `\r` is a line break too (an editor shows it as one): the rules see every line.
    let text = lf_line_breaks(raw);
    let text = cut_at_stop(&text, stop);
    let text = strip_fences(text, ctx);
    let text = strip_echo(&text, &ctx.shape.line_before);

    let after_prefix = {
        let mut scanner = Scanner::new(ctx.language);
        scanner.scan(&ctx.prefix);
        scanner
    };

    let text = if ctx.shape.multiline {
        fit_block(text, ctx, &after_prefix)
    } else if ctx.shape.next_line && text.starts_with('\n') {
        next_line(text, ctx)?
    } else {
        first_line(text)?.to_string()
    };
    let text = trim_line_after(&text, ctx, &after_prefix);
    let text = balance_against_suffix(&text, &after_prefix, &ctx.suffix);
    let text = tidy_whitespace(&text, ctx);

    if text.trim().is_empty()
        || already_follows(&text, &ctx.suffix)
        || repeats_neighbour(&text, ctx)
    {
        return None;
    }
    if uses_crlf(ctx) {
        Some(text.replace('\n', "\r\n"))
    } else {
        Some(text)
    }
}

/// For an answer streamed while it is generated: how much of `raw` makes the suggestion's
/// first line, once that line is complete — the text up to the first line break that
/// follows some code (so for a next line, or a block that starts on the next line, the line
/// break that ends the line after the leading ones). `None` while the first line is still
/// being written.
pub fn first_line_end(raw: &str) -> Option<usize> {
    let mut seen_code = false;
    for (i, c) in raw.char_indices() {
        match c {
            '\n' if seen_code => return Some(i),
            c if !c.is_whitespace() => seen_code = true,
            _ => {}
        }
    }
    None
}

/// For a suggestion that ends a line — one at a line's end ([`SuggestionShape::next_line`])
/// or a block — the suggestions at the places after accepting it, from what the model wrote
/// after it: `raw` is the model's whole answer and `kept` the suggestion made of its first
/// lines. Each line after is one suggestion, by the rules of a request there (a line break,
/// then one line; not blank, not the line already following, not a repeat), and whole (a
/// line break after it); they are returned together, the first up to the first that fails
/// a rule or is not what the model wrote. None unless the answer's lines end where the
/// suggestion's do and the first line after qualifies.
pub fn lines_after(raw: &str, kept: &str, ctx: &CompletionContext) -> Option<String> {
    let text = lf_line_breaks(raw);
    let (mut lines, mut rest, mut after) = line_after(&text, kept, ctx)?;
    let mut last = lines.clone();
    while let Some((line, more, next)) = line_after(rest, &last, &after) {
        let written = &more[..first_line_end(more).unwrap_or(more.len())];
        if written.trim() != lf_line_breaks(&line).trim() {
            break;
        }
        lines.push_str(&line);
        (last, rest, after) = (line, more, next);
    }
    Some(lines)
}

/// One step of [`lines_after`]: the line after `kept` in `text` (the answer, its line breaks
/// `\n`), the text from that line on, and the context after accepting `kept`.
fn line_after<'a>(
    text: &'a str,
    kept: &str,
    ctx: &CompletionContext,
) -> Option<(String, &'a str, CompletionContext)> {
    let shape = &ctx.shape;
    if !shape.ends_line() {
        return None;
    }
    let kept_lf = lf_line_breaks(kept);
    let end = if shape.multiline {
        // The block's lines are the answer's first lines, re-indented at most.
        let lines = kept_lf.split('\n').count();
        let end = text.match_indices('\n').nth(lines - 1)?.0;
        let last = text[..end].rsplit('\n').next().unwrap_or_default();
        (last.trim() == kept_lf.rsplit('\n').next().unwrap_or_default().trim()).then_some(end)?
    } else {
        first_line_end(text)?
    };
    let rest = &text[end..];
    first_line_end(rest)?;
    let line = format!("{}{kept_lf}", shape.line_before);
    let mut after = ctx.clone();
    after.prefix.push_str(kept);
    after.shape = SuggestionShape {
        line_before: line.rsplit('\n').next().unwrap_or_default().to_string(),
        line_after: shape.line_after.clone(),
        next_line: true,
        ..SuggestionShape::default()
    };
    let line = postprocess(rest, &after, &[]).filter(|line| line.starts_with(['\n', '\r']))?;
    Some((line, rest, after))
}

/// Step 1: cuts at the earliest stop sequence or leaked special token. A bare line break in
/// `stop` is left to the single-line rule, which runs after fences are stripped.
pub fn cut_at_stop<'a>(text: &'a str, stop: &[String]) -> &'a str {
    let tokens = stop
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty() && *s != "\n" && *s != "\r\n")
        .chain(LEAKED_TOKENS.iter().copied());
    let end = tokens
        .filter_map(|s| text.find(s))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// Step 2a: an answer wrapped in a markdown fence (chat models do this), optionally after one
/// line of prose ending in `:`, keeps only the inside. Left alone when fences can be content:
/// the code around the cursor has fences, or the cursor sits in a comment.
pub fn strip_fences<'a>(text: &'a str, ctx: &CompletionContext) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    if ctx.prefix.contains("```")
        || ctx.suffix.contains("```")
        || ends_with_comment_marker(&ctx.shape.line_before)
    {
        return Cow::Borrowed(text);
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(mut open) = lines.iter().position(|l| !l.trim().is_empty()) else {
        return Cow::Borrowed(text);
    };
    if !is_fence_opener(lines[open]) {
        match lines.get(open + 1) {
            Some(next) if lines[open].trim_end().ends_with(':') && is_fence_opener(next) => {
                open += 1
            }
            _ => return Cow::Borrowed(text),
        }
    }
    let body = &lines[open + 1..];
    let end = body
        .iter()
        .position(|l| l.trim() == "```")
        .unwrap_or(body.len());
    Cow::Owned(body[..end].join("\n"))
}

fn is_fence_opener(line: &str) -> bool {
    line.trim()
        .strip_prefix("```")
        .is_some_and(|tag| !tag.contains('`') && !tag.contains(char::is_whitespace))
}

fn ends_with_comment_marker(line_before: &str) -> bool {
    let t = line_before.trim_end();
    ["//", "#", "*", "--", "<!--", "\"\"\"", "'''"]
        .iter()
        .any(|m| t.ends_with(m))
}

/// Step 2b: drops a repeat of the text typed before the cursor on its line, when it clearly
/// is one: the typed text is long enough that starting with it again is never real code.
pub fn strip_echo<'a>(text: &'a str, line_before: &str) -> &'a str {
    let typed = line_before.trim_start();
    let significant = typed.trim_end().chars().count() >= MIN_ECHO_CHARS
        && typed.chars().any(char::is_alphanumeric);
    if !significant {
        return text;
    }
    text.strip_prefix(line_before)
        .or_else(|| text.trim_start().strip_prefix(typed))
        .unwrap_or(text)
}

/// Step 3: a single-line suggestion ends at the first line break; nothing before it (the
/// model started with a newline) means nothing to show.
pub fn first_line(text: &str) -> Option<&str> {
    let line = text.split('\n').next().unwrap_or("");
    if line.trim().is_empty() {
        None
    } else {
        Some(line)
    }
}

/// Step 3, at the end of a line of code or a comment ([`SuggestionShape::next_line`]),
/// when the model started a new line: the line break (with up to two blank lines between,
/// as PEP 8 puts before a top-level definition) and the one line after it. Nothing when
/// that line is blank or repeats the line just written.
///
/// [`SuggestionShape::next_line`]: crate::syntax::context::SuggestionShape::next_line
pub fn next_line(text: &str, ctx: &CompletionContext) -> Option<String> {
    let body = text.trim_start_matches('\n');
    let breaks = (text.len() - body.len()).min(3);
    let line = body.split('\n').next().unwrap_or("");
    if line.trim().is_empty() || line.trim() == ctx.shape.line_before.trim() {
        return None;
    }
    Some(format!("{}{line}", "\n".repeat(breaks)))
}

/// Step 4: keeps the lines of a multi-line suggestion that belong to the cursor's block.
pub fn fit_block(text: &str, ctx: &CompletionContext, after_prefix: &Scanner) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    dedupe_typed_indent(&mut lines, &ctx.shape.line_before);

    let joined = lines.join("\n");
    let end = [
        leaves_block(&lines, ctx),
        closes_suffix_block(&joined, &lines, after_prefix, &ctx.suffix),
        reproduces_suffix(&lines, &ctx.suffix),
        repeat_run(&lines),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(lines.len())
    .min(MAX_LINES);
    lines.truncate(end);
    while lines.len() > 1 && lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// On a blank line where the user already typed the indentation, a model that writes the
/// block with absolute indentation repeats it on the first line. Dropped only when the next
/// line shows the indentation is absolute: a sibling at the same depth, or a child that
/// would otherwise not be deeper than its parent.
fn dedupe_typed_indent(lines: &mut [String], line_before: &str) {
    if line_before.is_empty() || !line_before.chars().all(|c| c == ' ' || c == '\t') {
        return;
    }
    let Some(first) = lines.first() else { return };
    if !first.starts_with(line_before) {
        return;
    }
    let lead = indent_width(first);
    let Some(next) = lines[1..].iter().find(|l| !l.trim().is_empty()) else {
        return;
    };
    let next = indent_width(next);
    let opens = first.trim_end().ends_with([':', '{', '(', '[']);
    let absolute =
        next == lead || (opens && next > lead && next <= indent_width(line_before) + lead);
    if absolute {
        lines[0] = lines[0][line_before.len()..].to_string();
    }
}

/// The first line (after the first) indented less than the block's body: it leaves the
/// block. Without `block_indent`, the indentation of the cursor's line stands for it.
fn leaves_block(lines: &[String], ctx: &CompletionContext) -> Option<usize> {
    let floor = ctx
        .shape
        .block_indent
        .unwrap_or_else(|| indent_width(&ctx.shape.line_before));
    (1..lines.len()).find(|&i| !lines[i].trim().is_empty() && indent_width(&lines[i]) < floor)
}

/// The first line (after the first) that starts by closing a bracket opened before the
/// cursor, when the suffix starts by closing the same bracket: the suffix already ends the
/// block, and whatever the model writes past it belongs outside.
fn closes_suffix_block(
    joined: &str,
    lines: &[String],
    after_prefix: &Scanner,
    suffix: &str,
) -> Option<usize> {
    let first_closer = *leading_closers(suffix).first()?;
    let mut scanner = after_prefix.clone();
    let events = scanner.scan(joined);
    if scanner.confused {
        return None;
    }
    let mut start = 0;
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let at = start + indent;
        start += line.len() + 1;
        if i == 0 || !line.trim_start().starts_with(first_closer) {
            continue;
        }
        if events
            .iter()
            .any(|e| e.at == at && matches!(e.kind, Close::Outer))
        {
            return Some(i);
        }
    }
    None
}

/// The first line (after the first) from which the suggestion writes again the lines that
/// follow the cursor: two lines in a row, or one substantial last line.
fn reproduces_suffix(lines: &[String], suffix: &str) -> Option<usize> {
    let following: Vec<&str> = suffix
        .split('\n')
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    (1..lines.len()).find(|&i| {
        let rest: Vec<&str> = lines[i..]
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        if rest.is_empty() || lines[i].trim().is_empty() {
            return false;
        }
        let same = rest
            .iter()
            .zip(&following)
            .take_while(|(a, b)| a == b)
            .count();
        same >= 2 || (same == 1 && rest.len() == 1 && substantial(rest[0]))
    })
}

/// Where a line repeats for the third time in a row: the model is looping. The first
/// occurrence stays.
fn repeat_run(lines: &[String]) -> Option<usize> {
    lines
        .windows(3)
        .position(|w| {
            !w[0].trim().is_empty() && w[0].trim() == w[1].trim() && w[1].trim() == w[2].trim()
        })
        .map(|i| i + 1)
}

/// Step 5: when the suggestion ends with the rest of the cursor line (the model wrote it
/// again), that tail goes. A tail that closes brackets goes only when the document would
/// otherwise close them twice; a tail that is one identifier never goes (`ma` + `x`).
pub fn trim_line_after(text: &str, ctx: &CompletionContext, after_prefix: &Scanner) -> String {
    let tail = ctx.shape.line_after.trim();
    let body = text.trim_end();
    let Some(kept) = body.strip_suffix(tail) else {
        return text.to_string();
    };
    if tail.is_empty() || kept.trim().is_empty() || !tail.chars().any(|c| !is_word(c)) {
        return text.to_string();
    }
    let fits_kept = suffix_fits(after_prefix, kept, &ctx.suffix);
    let strip = if closes_outside(tail, ctx.language) {
        suffix_fits(after_prefix, body, &ctx.suffix) == Some(false) && fits_kept == Some(true)
    } else {
        fits_kept != Some(false)
    };
    if strip {
        kept.to_string()
    } else {
        text.to_string()
    }
}

/// Step 6: closing brackets at the end of the suggestion that close what was opened before
/// the cursor are dropped when the suffix starts with the same closers and the document
/// would otherwise close them twice. `foo(bar(x` + `)` + `)` keeps its `)`; `foo(` + `x)` +
/// `)` loses it.
pub fn balance_against_suffix(text: &str, after_prefix: &Scanner, suffix: &str) -> String {
    if suffix_fits(after_prefix, text, suffix) != Some(false) {
        return text.to_string();
    }
    let body = text.trim_end();
    let mut scanner = after_prefix.clone();
    let events = scanner.scan(body);
    let mut cuts = Vec::new();
    let mut end = body.len();
    while let Some(c) = body[..end].chars().next_back() {
        let at = end - c.len_utf8();
        if !events
            .iter()
            .any(|e| e.at == at && matches!(e.kind, Close::Outer))
        {
            break;
        }
        end = at;
        cuts.push(end);
    }
    let closers = leading_closers(suffix);
    for &cut in cuts.iter().rev() {
        let removed: Vec<char> = body[cut..].chars().collect();
        if closers.starts_with(&removed)
            && suffix_fits(after_prefix, &body[..cut], suffix) == Some(true)
        {
            return body[..cut].to_string();
        }
    }
    text.to_string()
}

/// Step 7a: the suggestion is already the text after the cursor, so it would insert nothing
/// new. Closers alone are left to the bracket balance (`foo(bar(x` + `)` before `)`). A
/// suggestion that is only the start of what follows is the model writing it again, cut
/// short — except a blank comment line (` *` before ` * @param x`), a line of its own.
pub fn already_follows(text: &str, suffix: &str) -> bool {
    let t = text.trim_end();
    let content = t.chars().any(char::is_alphanumeric) || !t.chars().any(is_bracket);
    if t.trim().is_empty() || !content || !suffix.starts_with(t) {
        return false;
    }
    let last_line = t.rsplit('\n').next().unwrap_or(t);
    if t.contains('\n') && is_blank_comment_line(last_line) {
        let rest_of_line = suffix[t.len()..].split('\n').next().unwrap_or("");
        return rest_of_line.trim().is_empty();
    }
    true
}

/// A comment line with no text: ` *` in a block comment, `//`, `///`, `#`, `--`.
fn is_blank_comment_line(line: &str) -> bool {
    matches!(line.trim(), "*" | "//" | "///" | "//!" | "#" | "--")
}

/// Step 7b: the line the suggestion would produce is the nearest non-blank line above or
/// below the cursor — the model repeating its context. Short lines (`}`, `i++;`) are exempt.
pub fn repeats_neighbour(text: &str, ctx: &CompletionContext) -> bool {
    if text.contains('\n') {
        return false;
    }
    let full = format!("{}{}{}", ctx.shape.line_before, text, ctx.shape.line_after);
    let full = full.trim();
    if !substantial(full) {
        return false;
    }
    let mut above = ctx
        .prefix
        .rsplit('\n')
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let mut below = ctx
        .suffix
        .split('\n')
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty());
    above.next() == Some(full) || below.next() == Some(full)
}

/// Step 7c: trailing whitespace goes from every line that ends in a line break, and from
/// the last line when nothing follows the cursor on its line; leading whitespace of the
/// first line stays (the cursor may be mid-line: ` + 1`).
pub fn tidy_whitespace(text: &str, ctx: &CompletionContext) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len() - 1;
    let at_line_end = ctx.shape.line_after.trim().is_empty();
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i < last || at_line_end {
                l.trim_end()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn uses_crlf(ctx: &CompletionContext) -> bool {
    ctx.prefix.contains("\r\n") || ctx.suffix.contains("\r\n")
}

fn substantial(line: &str) -> bool {
    line.chars().filter(|c| !c.is_whitespace()).count() >= MIN_REPEAT_CHARS
        && line.chars().any(char::is_alphanumeric)
}

/// Indentation width of `line`: spaces count 1, tabs [`TAB_WIDTH`].
fn indent_width(line: &str) -> usize {
    line.chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .map(|c| if c == '\t' { TAB_WIDTH } else { 1 })
        .sum()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_bracket(c: char) -> bool {
    matches!(c, '(' | ')' | '[' | ']' | '{' | '}')
}

fn opener_of(closer: char) -> char {
    match closer {
        ')' => '(',
        ']' => '[',
        _ => '{',
    }
}

/// The closing brackets the suffix starts with, whitespace and line breaks between them
/// skipped: `)\n}` gives `[')', '}']`.
fn leading_closers(suffix: &str) -> Vec<char> {
    suffix
        .chars()
        .filter(|c| !c.is_whitespace())
        .take_while(|c| matches!(c, ')' | ']' | '}'))
        .collect()
}

/// True when `tail` closes a bracket it did not open itself.
fn closes_outside(tail: &str, language: Language) -> bool {
    let mut scanner = Scanner::new(language);
    scanner.scan(tail).iter().any(|e| e.kind == Close::Orphan)
}

/// The text after the cursor up to the end of its first non-blank line.
fn suffix_head(suffix: &str) -> &str {
    let mut end = 0;
    for line in suffix.split_inclusive('\n') {
        end += line.len();
        if !line.trim().is_empty() {
            break;
        }
    }
    &suffix[..end]
}

/// Whether, after prefix + `suggestion`, the head of the suffix closes only brackets that are
/// open. `None` when the scan lost track (a closer met an opener of another kind earlier).
fn suffix_fits(after_prefix: &Scanner, suggestion: &str, suffix: &str) -> Option<bool> {
    if after_prefix.confused {
        return None;
    }
    let mut scanner = after_prefix.clone();
    scanner.scan(suggestion);
    if scanner.confused {
        return None;
    }
    let events = scanner.scan(suffix_head(suffix));
    Some(
        events
            .iter()
            .all(|e| matches!(e.kind, Close::Own | Close::Outer)),
    )
}

/// What a closing bracket did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// Closed an opener from the same scanned text.
    Own,
    /// Closed an opener from earlier text (for a suggestion: from the prefix).
    Outer,
    /// Nothing was open.
    Orphan,
    /// An opener of another kind was open: the scanner lost track.
    Mismatch,
}

#[derive(Debug, Clone, Copy)]
struct CloseEvent {
    /// Byte offset of the closer in the scanned text.
    at: usize,
    kind: Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    LineComment,
    /// A block comment, and the text that ends it.
    BlockComment(&'static str),
    /// A string literal: its closing quote, whether it is triple-quoted, whether a backslash
    /// escapes, whether a line break leaves it open, and for Rust raw strings the number of
    /// `#` that end it.
    Str {
        quote: char,
        triple: bool,
        escapes: bool,
        multiline: bool,
        hashes: Option<usize>,
    },
}

/// A cheap bracket scanner that skips string literals and comments (as the language's spec
/// describes them), resumable across the prefix, the suggestion and the suffix. Not a
/// parser: it errs towards "lost track", which turns the bracket rules off.
#[derive(Debug, Clone)]
pub struct Scanner {
    spec: &'static LanguageSpec,
    lex: Lex,
    escaped: bool,
    /// Open brackets, each with the number of the scan that opened it.
    stack: Vec<(char, u32)>,
    pass: u32,
    confused: bool,
}

impl Scanner {
    pub fn new(language: Language) -> Scanner {
        Scanner {
            spec: language.spec(),
            lex: Lex::Code,
            escaped: false,
            stack: Vec::new(),
            pass: 0,
            confused: false,
        }
    }

    /// Scans `text` as the continuation of what was scanned before; returns what each
    /// closing bracket outside strings and comments did.
    fn scan(&mut self, text: &str) -> Vec<CloseEvent> {
        self.pass += 1;
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let at = |i: usize| chars.get(i).map(|p| p.1);
        let starts =
            |i: usize, token: &str| token.chars().enumerate().all(|(k, c)| at(i + k) == Some(c));
        let mut events = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let (offset, c) = chars[i];
            match self.lex {
                Lex::LineComment => {
                    if c == '\n' {
                        self.lex = Lex::Code;
                    }
                }
                Lex::BlockComment(end) => {
                    if starts(i, end) {
                        self.lex = Lex::Code;
                        i += end.chars().count() - 1;
                    }
                }
                Lex::Str {
                    quote,
                    triple,
                    escapes,
                    multiline,
                    hashes,
                } => {
                    if self.escaped {
                        self.escaped = false;
                    } else if c == '\\' && escapes {
                        self.escaped = true;
                    } else if c == '\n' && !multiline {
                        self.lex = Lex::Code;
                    } else if c == quote {
                        if triple {
                            if at(i + 1) == Some(quote) && at(i + 2) == Some(quote) {
                                self.lex = Lex::Code;
                                i += 2;
                            }
                        } else if let Some(hashes) = hashes {
                            if (1..=hashes).all(|k| at(i + k) == Some('#')) {
                                self.lex = Lex::Code;
                                i += hashes;
                            }
                        } else {
                            self.lex = Lex::Code;
                        }
                    }
                }
                Lex::Code => match c {
                    '(' | '[' | '{' => self.stack.push((c, self.pass)),
                    ')' | ']' | '}' => events.push(CloseEvent {
                        at: offset,
                        kind: self.close(c),
                    }),
                    _ => i = self.code(&chars, i, &starts),
                },
            }
            i += 1;
        }
        events
    }

    /// Handles a char in code at `chars[i]` that is no bracket: a comment or a string may
    /// start there. Returns the index of the last character consumed.
    fn code(
        &mut self,
        chars: &[(usize, char)],
        i: usize,
        starts: &dyn Fn(usize, &str) -> bool,
    ) -> usize {
        let comments = &self.spec.comments;
        if let Some((open, close)) = comments.block.iter().find(|(open, _)| starts(i, open)) {
            self.lex = Lex::BlockComment(close);
            return i + open.chars().count() - 1;
        }
        let word_start = !comments.line_at_word_start
            || i.checked_sub(1).is_none_or(|p| chars[p].1.is_whitespace());
        if word_start && comments.line.iter().any(|l| starts(i, l)) {
            self.lex = Lex::LineComment;
            return i;
        }
        self.open_quote(chars, i)
    }

    fn close(&mut self, closer: char) -> Close {
        match self.stack.last() {
            None => Close::Orphan,
            Some(&(open, pass)) if open == opener_of(closer) => {
                self.stack.pop();
                if pass == self.pass {
                    Close::Own
                } else {
                    Close::Outer
                }
            }
            Some(_) => {
                self.confused = true;
                Close::Mismatch
            }
        }
    }

    /// Handles a possible string start in code at `chars[i]`; returns the index of the last
    /// character consumed.
    fn open_quote(&mut self, chars: &[(usize, char)], i: usize) -> usize {
        let c = chars[i].1;
        let at = |k: usize| chars.get(k).map(|p| p.1);
        let string = |quote, triple, escapes, multiline, hashes| Lex::Str {
            quote,
            triple,
            escapes,
            multiline,
            hashes,
        };
        for &quote in self.spec.strings.quotes {
            match quote {
                Quote::Triple(q) if c == q && at(i + 1) == Some(q) && at(i + 2) == Some(q) => {
                    self.lex = string(q, true, true, true, None);
                    return i + 2;
                }
                Quote::Str {
                    quote: q,
                    escapes,
                    multiline,
                } if c == q => {
                    self.lex = string(q, false, escapes, multiline, None);
                    return i;
                }
                // `r"…"`, `r#"…"#`, `br"…"` — not the `r` ending an identifier.
                Quote::HashedRaw if c == 'r' => {
                    let before = i.checked_sub(1).and_then(at);
                    let starts = before.is_none_or(|b| !is_word(b) || b == 'b');
                    let hashes = (i + 1..).take_while(|&k| at(k) == Some('#')).count();
                    if starts && at(i + 1 + hashes) == Some('"') {
                        self.lex = string('"', false, false, true, Some(hashes));
                        return i + 1 + hashes;
                    }
                }
                // A char literal ('x', '\n', '\u{1F600}') — or a Rust lifetime, a C++ digit
                // separator: those have no closing quote nearby and are skipped.
                Quote::Char(q) if c == q => {
                    let close = if at(i + 1) == Some('\\') {
                        (i + 2..i + 12).find(|&k| at(k) == Some(q) || at(k) == Some('\n'))
                    } else {
                        Some(i + 2)
                    };
                    return match close {
                        Some(k) if at(k) == Some(q) && at(i + 1) != Some('\n') => k,
                        _ => i,
                    };
                }
                _ => {}
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::context::SuggestionShape;

    /// A context from a fixture with a `$0` cursor; the window is the whole fixture.
    fn ctx(
        fixture: &str,
        language: Language,
        multiline: bool,
        block_indent: Option<usize>,
    ) -> CompletionContext {
        let (prefix, suffix) = fixture.split_once("$0").expect("fixture needs a $0 cursor");
        let line_before = prefix.rsplit('\n').next().unwrap_or("").to_string();
        let line_after = suffix
            .split('\n')
            .next()
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string();
        CompletionContext {
            language,
            imports: Vec::new(),
            prefix_start: 0,
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            scope_chain: Vec::new(),
            shape: SuggestionShape {
                multiline,
                line_before,
                line_after,
                block_indent,
                next_line: false,
            },
        }
    }

    use Language::{C, Go, JavaScript, PlainText, Python, Rust};

    #[test]
    fn where_a_streamed_first_line_ends() {
        // (raw so far, end)
        let cases: &[(&str, Option<usize>)] = &[
            ("total = 0", None),
            ("total = 0\n", Some(9)),
            ("total = 0\n    for x", Some(9)),
            // A block or a next line that starts with a line break: the line after it.
            ("\n    return 1", None),
            ("\n    return 1\n", Some(13)),
            ("  \n", None),
            ("\n    for x in y:", None),
            ("\n\n    for x in y:\n", Some(17)),
            ("\r\n    for x in y:\r\n", Some(18)),
            // Going on with the line instead.
            ("  # sum\n", Some(7)),
        ];
        for (raw, want) in cases {
            assert_eq!(first_line_end(raw), *want, "{raw:?}");
        }
    }

    /// At the end of a line (here a complete statement), the model may start the next line: the
    /// suggestion is the line break and that one line; or it may add to the line.
    #[test]
    fn next_line_after_a_complete_statement() {
        let fixture = "def f(items):\n    total = 0$0\n    return total\n";
        // (raw answer, expected)
        let cases: &[(&str, Option<&str>)] = &[
            (
                "\n    for item in items:\n        total += item\n",
                Some("\n    for item in items:"),
            ),
            // Blank lines between are kept (up to two), more are not.
            ("\n\n    print(total)\n", Some("\n\n    print(total)")),
            ("\n\n\n    print(total)\n", Some("\n\n\n    print(total)")),
            (
                "\n\n\n\n\n    print(total)\n",
                Some("\n\n\n    print(total)"),
            ),
            // Adding to the line is still a suggestion.
            ("  # the sum\n    for x in items:", Some("  # the sum")),
            // The line that already follows, a blank line, the line just written: nothing.
            ("\n    return total\n", None),
            ("\n\n", None),
            ("\n    total = 0\n", None),
        ];
        for (raw, want) in cases {
            let mut c = ctx(fixture, Python, false, None);
            c.shape.next_line = true;
            assert_eq!(postprocess(raw, &c, &[]).as_deref(), *want, "{raw:?}");
        }
        // Without the shape (mid-expression), a model that starts a new line gives nothing.
        let c = ctx(fixture, Python, false, None);
        assert_eq!(postprocess("\n    for item in items:", &c, &[]), None);
    }

    /// A blank comment line before a comment line with text is a suggestion of its own; the
    /// same blank line already there is not.
    #[test]
    fn a_blank_comment_line_before_the_next_one() {
        // (fixture, language, raw answer, expected)
        let cases: &[(&str, Language, &str, Option<&str>)] = &[
            (
                "/**\n * Sums.$0\n * @param x\n */\nfunction f(x) {}\n",
                JavaScript,
                "\n *\n * @param x\n",
                Some("\n *"),
            ),
            (
                "/**\n * Sums.$0\n * @param x\n */\nfunction f(x) {}\n",
                JavaScript,
                "\n * @param x\n",
                None,
            ),
            (
                "/**\n * Sums.$0\n *\n * @param x\n */\n",
                JavaScript,
                "\n *\n",
                None,
            ),
            (
                "    /// Makes one.$0\n    /// # Examples\n",
                Rust,
                "\n    ///\n",
                Some("\n    ///"),
            ),
            ("# Totals.$0\n# Of all.\n", Python, "\n#\n", Some("\n#")),
            // Code cut short is still the line that follows, written again.
            (
                "def f(items):\n    total = 0$0\n    return total\n",
                Python,
                "\n    return\n",
                None,
            ),
        ];
        for (fixture, language, raw, want) in cases {
            let mut c = ctx(fixture, *language, false, None);
            c.shape.next_line = true;
            assert_eq!(
                postprocess(raw, &c, &[]).as_deref(),
                *want,
                "{fixture:?} {raw:?}"
            );
        }
    }

    /// What the model wrote after a suggestion at a line's end is the suggestion after
    /// accepting it, under the rules a request there would follow.
    #[test]
    fn the_lines_after_the_suggestion() {
        // (raw answer, the suggestion, the lines after it)
        type LineAfter<'a> = (&'a str, Option<&'a str>, Option<&'a str>);
        let check = |c: &CompletionContext, cases: &[LineAfter]| {
            for (raw, want, want_after) in cases {
                let kept = postprocess(raw, c, &[]);
                assert_eq!(kept.as_deref(), *want, "{raw:?}");
                let after = kept.as_deref().and_then(|k| lines_after(raw, k, c));
                assert_eq!(after.as_deref(), *want_after, "{raw:?}");
            }
        };
        let fixture = "def f(items):\n    total = sum(it$0\n    print(1)\n";
        let mut c = ctx(fixture, Python, false, None);
        c.shape.next_line = true;
        let cases: &[LineAfter] = &[
            (
                "ems)\n    return total\n",
                Some("ems)"),
                Some("\n    return total"),
            ),
            // Not whole yet (the stream was closed in it), blank, or already there.
            ("ems)\n    return tot", Some("ems)"), None),
            ("ems)\n\n", Some("ems)"), None),
            ("ems)\n    print(1)\n", Some("ems)"), None),
            ("ems)", Some("ems)"), None),
            // The suggestion is itself the next line: the line after that.
            (
                "\n    for x in items:\n        total += x\n",
                Some("\n    for x in items:"),
                Some("\n        total += x"),
            ),
            // A Windows answer.
            (
                "ems)\r\n    return total\r\n",
                Some("ems)"),
                Some("\n    return total"),
            ),
            // Every whole line after, up to one that is not whole, blank or already there.
            (
                "ems)\n    total += 1\n    return total\n",
                Some("ems)"),
                Some("\n    total += 1\n    return total"),
            ),
            (
                "ems)\n    total += 1\n    return tot",
                Some("ems)"),
                Some("\n    total += 1"),
            ),
            (
                "ems)\n    total += 1\n\n",
                Some("ems)"),
                Some("\n    total += 1"),
            ),
            (
                "ems)\n    total += 1\n    print(1)\n    return total\n",
                Some("ems)"),
                Some("\n    total += 1"),
            ),
        ];
        check(&c, cases);
        // A block: the line after its kept lines, where post-processing ended it (here the
        // line that leaves the block).
        let block = "def f(x):\n    if x:\n        $0\n    print(1)\n";
        let cases: &[LineAfter] = &[
            (
                "y = 1\n        z = 2\n    return y\n",
                Some("y = 1\n        z = 2"),
                Some("\n    return y"),
            ),
            (
                "y = 1\n    return y\n",
                Some("y = 1"),
                Some("\n    return y"),
            ),
            // Not whole, or the line already there.
            ("y = 1\n    return y", Some("y = 1"), None),
            ("y = 1\n    print(1)\n", Some("y = 1"), None),
        ];
        check(&ctx(block, Python, true, Some(8)), cases);
        // The rest of a line (here after a space, where the next line is not offered): the
        // lines after it too.
        let c = ctx(
            "def f(items):\n    total = $0\n    print(1)\n",
            Python,
            false,
            None,
        );
        assert_eq!(
            lines_after("sum(items)\n    return total\n", "sum(items)", &c).as_deref(),
            Some("\n    return total")
        );
        // Only at a line's end: mid-line, the rest of the line follows the suggestion.
        let c = ctx(
            "def f(items):\n    total = sum(it$0)\n",
            Python,
            false,
            None,
        );
        assert_eq!(lines_after("ems)\n    return total\n", "ems", &c), None);
    }

    /// (name, raw answer, fixture, language, multiline, block_indent, stop, expected)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Language,
        bool,
        Option<usize>,
        &'static [&'static str],
        Option<&'static str>,
    );

    const QWEN_STOP: &[&str] = &["<|endoftext|>", "<|fim_prefix|>", "<|file_sep|>", "\n"];
    const NONE: &[&str] = &[];

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // 1. stops and leaked tokens
        ("plain single line", "a + b", "def f(a, b):\n    return $0\n", Python, false, None, QWEN_STOP, Some("a + b")),
        ("stop sequence ends it", "a + b<|endoftext|>junk", "def f(a, b):\n    return $0\n", Python, false, None, QWEN_STOP, Some("a + b")),
        ("leaked token of another family", "a + b<file_sep>x.py", "def f(a, b):\n    return $0\n", Python, false, None, NONE, Some("a + b")),
        ("leaked EOT", "x + 1 <EOT>", "let y = $0", Rust, false, None, NONE, Some("x + 1")),
        ("leaked deepseek token", "x + 1<｜end▁of▁sentence｜>", "let y = $0", Rust, false, None, NONE, Some("x + 1")),
        ("</s> only when the stop list names it", "\"<s>a</s>\";", "let html = $0", JavaScript, false, None, NONE, Some("\"<s>a</s>\";")),
        ("</s> named by the stop list", "1;</s>", "let x = $0", JavaScript, false, None, &["</s>"], Some("1;")),
        ("leaked token first means nothing", "<|fim_middle|>foo", "x = $0", Python, false, None, NONE, None),
        // 2. fences and echo
        ("fence with language", "```python\nreturn a + b\n```\nThis adds.", "def f(a, b):\n    $0\n", Python, true, Some(4), NONE, Some("return a + b")),
        ("fence without language", "```\nreturn a + b\n```", "def f(a, b):\n    $0\n", Python, true, Some(4), NONE, Some("return a + b")),
        ("prose line then fence", "Here is the code:\n```js\nreturn 1;\n```", "function f() {\n  $0\n}", JavaScript, true, Some(2), NONE, Some("return 1;")),
        ("fence in single-line mode", "```rust\nx + 1\n```", "let y = $0;", Rust, false, None, &["\n"], Some("x + 1")),
        ("fence kept inside a doc comment", "```\n/// let x = 1;", "/// Example:\n/// $0\nfn f() {}", Rust, true, None, NONE, Some("```\n/// let x = 1;")),
        ("fence kept when the file has fences", "```\n", "# Title\n\n```sh\nls\n```\n$0", PlainText, false, None, NONE, Some("```")),
        ("echo of the typed line", "let total = a + b;", "fn f() {\n    let total = $0\n}", Rust, false, None, NONE, Some("a + b;")),
        ("short typed text is not an echo", "foo(x))", "y = foo($0)", Python, false, None, NONE, Some("foo(x)")),
        // 3. single line
        ("single line cut", "a + b\n    c = 1", "def f(a, b):\n    return $0\n", Python, false, None, NONE, Some("a + b")),
        ("starts with a newline", "\n    c = 1", "def f(a, b):\n    return $0\n", Python, false, None, NONE, None),
        ("only whitespace", "   \t ", "x = $0", Python, false, None, NONE, None),
        ("crlf single line", "a + b\r\nc", "x = 1\r\ny = $0\r\n", Python, false, None, NONE, Some("a + b")),
        // Found by fuzzing (fuzz/regressions/fim_answer): a lone CR is a line break too.
        ("lone cr single line", "a + b\rc", "x = $0\n", Python, false, None, NONE, Some("a + b")),
        ("lone cr first means nothing", "\rx = 1<|endoftext|>", "$0", Rust, false, None, NONE, None),
        // 4. multi-line block
        ("python dedent ends the block", "x = 1\n    return x\ndef g():\n    pass", "def f():\n    $0\n", Python, true, Some(4), NONE, Some("x = 1\n    return x")),
        ("python dedent without block_indent", "x = 1\n        y = 2\n    z = 3", "def f():\n    if a:\n        $0\n", Python, true, None, NONE, Some("x = 1\n        y = 2")),
        ("closing brace below the block", "let a = 1;\n    a + 1\n}\n\nfn g() {}", "fn f() -> i32 {\n    $0\n}", Rust, true, Some(4), NONE, Some("let a = 1;\n    a + 1")),
        ("closing brace the suffix has, no block_indent", "a();\n}\nfn g() {}", "fn f() {\n$0\n}", Rust, true, None, NONE, Some("a();")),
        ("own block kept", "if x {\n        y();\n    }", "fn f() {\n    $0\n}", Rust, true, Some(4), NONE, Some("if x {\n        y();\n    }")),
        ("tabs count as four", "a();\n\t\tb();\n\tc();", "void f() {\n\t\tif (x) {\n\t\t$0\n\t}\n}", C, true, Some(8), NONE, Some("a();\n\t\tb();")),
        ("trailing blank lines dropped", "a = 1\n    b = 2\n\n\n", "def f():\n    $0", Python, true, Some(4), NONE, Some("a = 1\n    b = 2")),
        ("repeated line loop cut", "x += 1\n    x += 1\n    x += 1\n    x += 1", "def f():\n    $0", Python, true, Some(4), NONE, Some("x += 1")),
        ("typed indentation not doubled", "    let a = 1;\n    let b = 2;", "fn f() {\n    $0\n}", Rust, true, Some(4), NONE, Some("let a = 1;\n    let b = 2;")),
        ("typed indentation kept when relative", "    return x", "def f():\n    if a:\n    $0\n", Python, true, None, NONE, Some("    return x")),
        ("stops where it rewrites the suffix", "a = 1\n    b = compute(a)\n    return b", "def f():\n    $0\n    b = compute(a)\n    return b\n", Python, true, Some(4), NONE, Some("a = 1")),
        ("crlf multi-line keeps the document's line ending", "a = 1\r\n    b = 2", "def f():\r\n    $0\r\n", Python, true, Some(4), NONE, Some("a = 1\r\n    b = 2")),
        ("line limit", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\np\nq\nr\ns\nt\nu\nv\nw\nx\ny\nz\naa\nbb\ncc\ndd\nee\nff\ngg\nhh\nii\njj\nkk\nll\nmm\nnn\noo\npp", "$0", PlainText, true, None, NONE, Some("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\np\nq\nr\ns\nt\nu\nv\nw\nx\ny\nz\naa\nbb\ncc\ndd\nee\nff\ngg\nhh\nii\njj\nkk\nll\nmm\nnn")),
        // 5. text that already follows the cursor
        ("tail of the line written again", "a, b)", "print($0)", Python, false, None, NONE, Some("a, b")),
        ("tail with semicolon", "x + 1);", "foo($0);", Rust, false, None, NONE, Some("x + 1")),
        ("tail without brackets", "compute();", "let v = $0;", Rust, false, None, NONE, Some("compute()")),
        ("tail closed by own opener stays", "bar(a)", "foo($0)", Rust, false, None, NONE, Some("bar(a)")),
        ("identifier tail stays", "max", "let m = $0x;", Rust, false, None, NONE, Some("max")),
        ("tail with brace", "x > 0) {", "if ($0) {\n}", C, false, None, NONE, Some("x > 0")),
        ("suggestion is what follows", "compute()", "let v = $0compute();", Rust, false, None, NONE, None),
        ("suggestion is a prefix of what follows", "comp", "let v = $0compute();", Rust, false, None, NONE, None),
        // 6. brackets
        ("unmatched closer supplied by the suffix", "x))", "foo(bar($0))", Rust, false, None, NONE, Some("x")),
        ("one of two closers supplied", "x))", "f(g($0)", Rust, false, None, NONE, Some("x)")),
        ("needed closer kept", ")", "foo(bar(x$0)", Rust, false, None, NONE, Some(")")),
        ("matched closer kept", "g(x))", "f($0)", Rust, false, None, NONE, Some("g(x)")),
        ("closer of another kind kept", "x]", "f($0)", Rust, false, None, NONE, Some("x]")),
        ("bracket in a string is not counted", "\")\")", "print($0)", Python, false, None, NONE, Some("\")\"")),
        ("bracket in the prefix's string ignored", "x)", "s = \"(\"\nf($0)", Python, false, None, NONE, Some("x")),
        ("rust lifetime does not open a string", "x)", "fn f<'a>(s: &'a str) { g($0) }", Rust, false, None, NONE, Some("x")),
        ("go raw string", "x)", "s := `(`\nf($0)", Go, false, None, NONE, Some("x")),
        ("lost track in the prefix: closers kept", "x)", "v = f(a]\ng($0)", Python, false, None, NONE, Some("x)")),
        ("template string brackets ignored", "`${a})`)", "log($0)", JavaScript, false, None, NONE, Some("`${a})`")),
        ("else past the suffix's brace", "a();\n} else {\n    b();", "if (x) {\n    $0\n}", C, true, None, NONE, Some("a();")),
        ("crlf fence", "```py\r\nreturn 1\r\n```", "def f():\n    $0\n", Python, true, Some(4), NONE, Some("return 1")),
        ("square and curly", "1, 2]}", "let v = {a: [$0]};", JavaScript, false, None, NONE, Some("1, 2")),
        // 7. repeats and whitespace
        ("repeats the line above", "let total = a + b;", "fn f() {\n    let total = a + b;\n    $0\n}", Rust, false, None, NONE, None),
        ("repeats the line below", "return compute(x)", "def f(x):\n    $0\n    return compute(x)\n", Python, false, None, NONE, None),
        ("short repeated line kept", "}", "fn f() {\n    if x {\n        y();\n    }\n$0\n", Rust, false, None, NONE, Some("}")),
        ("leading space kept, trailing dropped", " + 1   ", "let x = a$0", Rust, false, None, NONE, Some(" + 1")),
        ("trailing space before text kept", "a, ", "f($0b)", Rust, false, None, NONE, Some("a, ")),
        ("emoji and CJK", "\"héllo 🌍 世界\")", "print($0)", Python, false, None, NONE, Some("\"héllo 🌍 世界\"")),
        ("CJK identifier echo", "変数名 = 値 + 1", "変数名 = $0", Python, false, None, NONE, Some("変数名 = 値 + 1")),
    ];

    #[test]
    fn postprocess_table() {
        let mut failures = Vec::new();
        for &(name, raw, fixture, language, multiline, block_indent, stop, want) in CASES {
            let c = ctx(fixture, language, multiline, block_indent);
            let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
            let got = postprocess(raw, &c, &stop);
            if got.as_deref() != want {
                failures.push(format!("{name}: got {got:?}, want {want:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            CASES.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn cut_at_stop_takes_the_earliest() {
        let stop = vec!["END".to_string(), "\n".to_string()];
        assert_eq!(cut_at_stop("a<|file_sep|>bEND", &stop), "a");
        assert_eq!(cut_at_stop("aENDb<|file_sep|>", &stop), "a");
        assert_eq!(
            cut_at_stop("a\nb", &stop),
            "a\nb",
            "line breaks are the shape's business"
        );
        assert_eq!(cut_at_stop("arr[PREFIX]", &[]), "arr[PREFIX]");
    }

    #[test]
    fn indent_width_counts_tabs_as_four() {
        assert_eq!(indent_width("\t  x"), 6);
        assert_eq!(indent_width("x"), 0);
        assert_eq!(indent_width("  　x"), 2, "only spaces and tabs indent");
    }

    #[test]
    fn scanner_tracks_strings_comments_and_passes() {
        let mut s = Scanner::new(Rust);
        s.scan("fn f() { let c = '('; // )\n /* ] */ let s = r#\"}\"#; g(");
        assert_eq!(s.stack.iter().map(|p| p.0).collect::<String>(), "{(");
        let events = s.scan("x))");
        let kinds: Vec<Close> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [Close::Outer, Close::Mismatch]);
        assert!(s.confused);

        // (language, text, the brackets left open)
        let cases: &[(Language, &str, &str)] = &[
            (Python, "x = '''(\n[''' + f\"{a}\" # (\ny = (", "("),
            (Language::Ruby, "x = \"(\" + '[' # (\ny = [", "["),
            (
                Language::Php,
                "$a = '(' . \"[\"; # {\n// {\n/* ( */ f(",
                "(",
            ),
            (Language::Lua, "x = \"(\" -- (\n--[[ ( ]] y = {", "{"),
            (Language::Bash, "n=$# (\necho \"(\" '[' # {\nf() {", "({"),
            (PlainText, "\"(\" // (", "(("),
        ];
        for &(language, text, open) in cases {
            let mut s = Scanner::new(language);
            s.scan(text);
            let got: String = s.stack.iter().map(|p| p.0).collect();
            assert_eq!(got, open, "{language:?}: {text:?}");
        }
    }
}
