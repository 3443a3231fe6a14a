//! The recent-context ring: a few chunks of code the user just touched, kept as context for
//! completions in their other files (llama.cpp's `input_extra`, the repository layout of the
//! Qwen and StarCoder templates).
//!
//! The server sees no cursor moves and no buffer switches, so "touched" is approximated from
//! what it does see: an edit's position, a completion request's position, and which document
//! the latest open, edit or request was for (the *focus*). A spot is left behind — and the
//! chunk around it cut — when the focus moves to another document, when the document is
//! closed, or when activity jumps [`FAR_LINES`] or more away within the document. A file that
//! is only opened, never edited or completed in, gives no chunk (its outline still goes).
//!
//! Invariants:
//! - Bounded: at most [`CAPACITY`] chunks, each at most [`CHUNK_LINES`] lines and
//!   [`CHUNK_CHARS`] characters. Cutting a chunk copies at most that much text; nothing here
//!   reads a whole file, so it is cheap enough for the runtime thread.
//! - Stable: chunks keep the order they were added in (oldest first); touching the same place
//!   again without changing it does not move its chunk, so successive prompts share their start
//!   and the model server's prompt cache holds them. A changed version of a place replaces the
//!   old one, at the end.
//! - No duplicates: a chunk replaces any chunk of the same region of its file, and any chunk
//!   nearly the same (word similarity ≥ [`DUPLICATE`]) from anywhere.
//! - A request gets only chunks of *other* documents of its language family, and none too
//!   similar to the text around its cursor (≥ [`TOO_CLOSE`]): such chunks make models repeat
//!   code that is already there.
//!
//! Pure data: no I/O, no locks, no LSP types; `documents.rs` feeds it and asks it.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use ropey::Rope;
use tree_sitter::Tree;

use crate::syntax::Language;
use crate::syntax::features::enclosing_target;

/// Chunks kept. A request takes at most the configured `completion.recent_chunks` of them.
pub const CAPACITY: usize = 16;
/// A chunk's length in lines, at most: a function of ordinary size, or the lines around the
/// spot in a longer one.
pub const CHUNK_LINES: usize = 24;
/// A chunk's length in characters, at most (~300 tokens).
pub const CHUNK_CHARS: usize = 1200;
/// Chunks with fewer non-blank lines than this say too little to be worth their tokens.
const MIN_LINES: usize = 3;
/// Activity this many lines away from the previous spot in the same document leaves that spot
/// behind.
pub const FAR_LINES: usize = 32;
/// The text a request's chunks are compared with: this many lines on each side of the cursor.
pub const AROUND_CURSOR_LINES: usize = 16;
/// Word similarity at or above which a new chunk replaces an old one.
pub const DUPLICATE: f32 = 0.9;
/// Word similarity with the text around the cursor at or above which a chunk is left out.
pub const TOO_CLOSE: f32 = 0.5;

/// A place in a document: where the user last was in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    pub uri: Arc<str>,
    /// 0-based line.
    pub line: usize,
}

/// One chunk of a document's text, as it was when it was cut.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub uri: Arc<str>,
    pub family: Language,
    /// The 0-based lines it covers (at the time it was cut).
    pub lines: Range<usize>,
    /// Whole lines, ending with a line break.
    pub text: Arc<str>,
    words: Words,
}

impl Chunk {
    pub fn new(uri: Arc<str>, family: Language, lines: Range<usize>, text: &str) -> Chunk {
        let mut text = text.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Chunk {
            uri,
            family,
            lines,
            words: Words::of(&text),
            text: text.into(),
        }
    }
}

/// The distinct words (runs of letters, digits and `_`) of a text, as sorted hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Words(Box<[u64]>);

impl Words {
    pub fn of(text: &str) -> Words {
        let mut hashes: Vec<u64> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(|w| xxhash_rust::xxh3::xxh3_64(w.as_bytes()))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        Words(hashes.into())
    }

    /// How alike two texts are, from 0 (no word in common) to 1 (the same words): the Dice
    /// coefficient of their word sets. Two empty texts are alike.
    pub fn similarity(&self, other: &Words) -> f32 {
        let (a, b) = (&self.0, &other.0);
        if a.is_empty() && b.is_empty() {
            return 1.0;
        }
        let (mut i, mut j, mut common) = (0, 0, 0usize);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    common += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        2.0 * common as f32 / (a.len() + b.len()) as f32
    }
}

/// The ring and the focus it is fed from.
#[derive(Debug, Default)]
pub struct RecentRing {
    chunks: VecDeque<Chunk>,
    /// The document of the latest activity, and the line of its latest positioned activity
    /// (an open or a whole-text change has no position).
    focus: Option<(Arc<str>, Option<usize>)>,
}

impl RecentRing {
    /// Records activity in `uri` (at `line`, when the event has a position). Returns the spot
    /// it leaves behind, whose chunk the caller cuts and [`add`](Self::add)s: the previous
    /// document's last spot when the focus moves to another document, or this document's
    /// previous spot when `line` is [`FAR_LINES`] or more away from it.
    pub fn touch(&mut self, uri: &Arc<str>, line: Option<usize>) -> Option<Spot> {
        let (left, kept) = match self.focus.take() {
            Some((previous, Some(at))) if previous != *uri => (
                Some(Spot {
                    uri: previous,
                    line: at,
                }),
                None,
            ),
            Some((previous, at)) if previous == *uri => match (at, line) {
                (Some(at), Some(now)) if at.abs_diff(now) >= FAR_LINES => (
                    Some(Spot {
                        uri: previous,
                        line: at,
                    }),
                    None,
                ),
                (at, _) => (None, at),
            },
            _ => (None, None),
        };
        self.focus = Some((uri.clone(), line.or(kept)));
        left
    }

    /// `uri` is being closed: returns its last spot if it had the focus.
    pub fn leave(&mut self, uri: &str) -> Option<Spot> {
        match self.focus.take() {
            Some((focused, at)) if &*focused == uri => at.map(|line| Spot { uri: focused, line }),
            other => {
                self.focus = other;
                None
            }
        }
    }

    /// The line of the latest positioned activity in `uri`, if it has the focus.
    pub fn focus_line(&self, uri: &str) -> Option<usize> {
        match &self.focus {
            Some((focused, line)) if &**focused == uri => *line,
            _ => None,
        }
    }

    /// Adds a chunk at the end. The same text of the same document again changes nothing;
    /// otherwise chunks of the same region of that document and nearly identical chunks are
    /// replaced, and the oldest goes when the ring is full.
    pub fn add(&mut self, chunk: Chunk) {
        if self
            .chunks
            .iter()
            .any(|c| c.uri == chunk.uri && c.text == chunk.text)
        {
            return;
        }
        self.chunks.retain(|c| {
            let same_region = c.uri == chunk.uri && overlaps(&c.lines, &chunk.lines);
            !same_region && c.words.similarity(&chunk.words) < DUPLICATE
        });
        self.chunks.push_back(chunk);
        while self.chunks.len() > CAPACITY {
            self.chunks.pop_front();
        }
    }

    /// The chunks for a completion in `uri` (of `family`) whose cursor has `around` near it:
    /// the newest `max` chunks of other documents of the family that are not too similar to
    /// `around`, oldest first (the ring's order).
    pub fn pick(&self, uri: &str, family: Language, around: &Words, max: usize) -> Vec<&Chunk> {
        let mut picked: Vec<&Chunk> = self
            .chunks
            .iter()
            .rev()
            .filter(|c| &*c.uri != uri && c.family == family)
            .filter(|c| c.words.similarity(around) < TOO_CLOSE)
            .take(max)
            .collect();
        picked.reverse();
        picked
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The chunk of a document around `line`: its enclosing definition (function, method, class)
/// when that fits in [`CHUNK_LINES`] and [`CHUNK_CHARS`], else the lines around `line`, trimmed
/// to fit. None when there is too little text there (fewer than [`MIN_LINES`] non-blank lines)
/// or the line alone is longer than a chunk (minified code).
pub fn cut(
    rope: &Rope,
    tree: Option<&Tree>,
    language: Language,
    uri: &Arc<str>,
    line: usize,
) -> Option<Chunk> {
    let total = rope.len_lines();
    if total == 0 {
        return None;
    }
    let line = line.min(total - 1);
    let lines = definition_lines(rope, tree, language, line).unwrap_or_else(|| {
        let start = line.saturating_sub(CHUNK_LINES / 2);
        let end = (start + CHUNK_LINES).min(total);
        end.saturating_sub(CHUNK_LINES)..end
    });
    let lines = trim_to_chars(rope, lines, line, CHUNK_CHARS)?;
    let lines = trim_blank_ends(rope, lines);
    let text = rope
        .slice(rope.line_to_char(lines.start)..rope.line_to_char(lines.end))
        .to_string();
    let non_blank = text.lines().filter(|l| !l.trim().is_empty()).count();
    (non_blank >= MIN_LINES).then(|| Chunk::new(uri.clone(), language.family(), lines, &text))
}

/// The lines around `line` (up to [`AROUND_CURSOR_LINES`] each side), as words: what a
/// request's chunks must not be too close to.
pub fn words_around(rope: &Rope, line: usize) -> Words {
    let total = rope.len_lines();
    if total == 0 {
        return Words::default();
    }
    let line = line.min(total - 1);
    let start = line.saturating_sub(AROUND_CURSOR_LINES);
    let end = (line + AROUND_CURSOR_LINES + 1).min(total);
    let text = rope
        .slice(rope.line_to_char(start)..rope.line_to_char(end))
        .to_string();
    Words::of(&text)
}

/// The lines of the definition enclosing `line`, if it is small enough to be a chunk whole.
fn definition_lines(
    rope: &Rope,
    tree: Option<&Tree>,
    language: Language,
    line: usize,
) -> Option<Range<usize>> {
    tree?;
    // Just inside the line's first character: a cursor at its start counts as after the
    // blanks before it, that is in whatever precedes the line.
    let text = rope.line(line);
    let indent: usize = text
        .chars()
        .take_while(|c| c.is_whitespace())
        .map(char::len_utf8)
        .sum();
    let first = text
        .chars()
        .find(|c| !c.is_whitespace())
        .map_or(0, char::len_utf8);
    let inside = rope.line_to_byte(line) + indent + first;
    let target = enclosing_target(rope, tree, language, inside);
    let (first, last) = target.line_span(rope);
    let lines = first..last + 1;
    let fits = lines.len() <= CHUNK_LINES && target.range.len() <= CHUNK_CHARS;
    (fits && lines.contains(&line)).then_some(lines)
}

/// Drops whole lines from the end farther from `keep` until the text fits in `max_chars`.
/// None if `keep`'s line alone does not.
fn trim_to_chars(
    rope: &Rope,
    mut lines: Range<usize>,
    keep: usize,
    max_chars: usize,
) -> Option<Range<usize>> {
    let len = |l: usize| rope.line(l).len_chars();
    let mut chars: usize = lines.clone().map(len).sum();
    while chars > max_chars && lines.len() > 1 {
        let drop_last = lines.end.saturating_sub(keep + 1) >= keep.saturating_sub(lines.start);
        let dropped = if drop_last {
            lines.end -= 1;
            lines.end
        } else {
            lines.start += 1;
            lines.start - 1
        };
        chars -= len(dropped);
    }
    (chars <= max_chars).then_some(lines)
}

fn trim_blank_ends(rope: &Rope, mut lines: Range<usize>) -> Range<usize> {
    let blank = |l: usize| rope.line(l).chars().all(char::is_whitespace);
    while !lines.is_empty() && blank(lines.start) {
        lines.start += 1;
    }
    while !lines.is_empty() && blank(lines.end - 1) {
        lines.end -= 1;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(name: &str) -> Arc<str> {
        format!("file:///w/{name}").into()
    }

    fn chunk(name: &str, lines: Range<usize>, text: &str) -> Chunk {
        Chunk::new(uri(name), Language::Python, lines, text)
    }

    /// Ten distinct lines of code about `topic`, so that two topics share few words.
    fn code(topic: &str) -> String {
        (0..10)
            .map(|i| format!("    {topic}_{i} = compute_{topic}(value_{i}, {topic}_limit)\n"))
            .collect()
    }

    fn texts(ring: &RecentRing) -> Vec<String> {
        ring.chunks
            .iter()
            .map(|c| format!("{}:{}", &c.uri["file:///w/".len()..], c.lines.start))
            .collect()
    }

    #[test]
    fn similarity_is_the_dice_coefficient_of_word_sets() {
        let cases: [(&str, &str, f32); 6] = [
            ("a b c", "a b c", 1.0),
            ("a b c", "d e f", 0.0),
            ("a b", "a c", 0.5),
            ("a a a b", "a b", 1.0),
            ("", "", 1.0),
            ("x.y(z)", "x y z", 1.0),
        ];
        for (a, b, want) in cases {
            let got = Words::of(a).similarity(&Words::of(b));
            assert!((got - want).abs() < 1e-6, "{a:?} vs {b:?}: {got}");
            assert_eq!(got, Words::of(b).similarity(&Words::of(a)), "symmetric");
        }
        // Unrelated code of one language shares keywords, but stays far below the thresholds.
        let unrelated = Words::of(&code("parse")).similarity(&Words::of(&code("render")));
        assert!(unrelated < TOO_CLOSE, "{unrelated}");
    }

    /// Adding: the same text again is a no-op (the ring does not move), a changed version of a
    /// region replaces the old one at the end, a near-duplicate from another file replaces the
    /// older, and the oldest goes past the capacity.
    #[test]
    fn adding_dedups_replaces_and_bounds() {
        struct Case {
            what: &'static str,
            adds: Vec<Chunk>,
            want: Vec<&'static str>,
        }
        let edited = format!("{}    parse_9 = 0\n", code("parse"));
        let cases = [
            Case {
                what: "distinct chunks keep their order",
                adds: vec![
                    chunk("a.py", 0..10, &code("parse")),
                    chunk("b.py", 0..10, &code("render")),
                ],
                want: vec!["a.py:0", "b.py:0"],
            },
            Case {
                what: "the same chunk again does not move",
                adds: vec![
                    chunk("a.py", 0..10, &code("parse")),
                    chunk("b.py", 0..10, &code("render")),
                    chunk("a.py", 0..10, &code("parse")),
                ],
                want: vec!["a.py:0", "b.py:0"],
            },
            Case {
                what: "an edited region replaces its old version, at the end",
                adds: vec![
                    chunk("a.py", 0..10, &code("parse")),
                    chunk("b.py", 0..10, &code("render")),
                    chunk("a.py", 2..13, &edited),
                ],
                want: vec!["b.py:0", "a.py:2"],
            },
            Case {
                what: "another region of the same file is kept beside it",
                adds: vec![
                    chunk("a.py", 0..10, &code("parse")),
                    chunk("a.py", 40..50, &code("render")),
                ],
                want: vec!["a.py:0", "a.py:40"],
            },
            Case {
                what: "a near-duplicate from another file replaces the older",
                adds: vec![
                    chunk("a.py", 0..10, &code("parse")),
                    chunk("b.py", 0..10, &code("render")),
                    chunk("copy.py", 5..15, &code("parse")),
                ],
                want: vec!["b.py:0", "copy.py:5"],
            },
        ];
        for case in cases {
            let mut ring = RecentRing::default();
            for c in case.adds {
                ring.add(c);
            }
            assert_eq!(texts(&ring), case.want, "{}", case.what);
        }

        let mut ring = RecentRing::default();
        for i in 0..CAPACITY + 3 {
            ring.add(chunk(&format!("f{i}.py"), 0..10, &code(&format!("t{i}"))));
        }
        assert_eq!(ring.len(), CAPACITY);
        assert_eq!(texts(&ring)[0], "f3.py:0", "the oldest went first");
    }

    /// Picking for a request: other documents of the family only, none too close to the text
    /// around the cursor, the newest `max`, in the ring's order.
    #[test]
    fn picking_leaves_out_this_document_other_families_and_look_alikes() {
        let mut ring = RecentRing::default();
        ring.add(chunk("a.py", 0..10, &code("alpha")));
        ring.add(chunk("main.py", 0..10, &code("main")));
        ring.add(Chunk::new(
            uri("lib.rs"),
            Language::Rust,
            0..10,
            &code("rusty"),
        ));
        ring.add(chunk("b.py", 0..10, &code("beta")));
        ring.add(chunk("c.py", 0..10, &code("gamma")));
        let names = |picked: Vec<&Chunk>| -> Vec<String> {
            picked
                .iter()
                .map(|c| c.uri["file:///w/".len()..].to_string())
                .collect()
        };
        let elsewhere = Words::of("def main():\n    run()\n");
        let main = uri("main.py");
        assert_eq!(
            names(ring.pick(&main, Language::Python, &elsewhere, 8)),
            ["a.py", "b.py", "c.py"]
        );
        assert_eq!(
            names(ring.pick(&main, Language::Python, &elsewhere, 2)),
            ["b.py", "c.py"],
            "the newest two, oldest first"
        );
        // The cursor sits in code much like b.py's chunk: it is left out, and the next older
        // one takes its place.
        let like_beta = Words::of(&code("beta"));
        assert_eq!(
            names(ring.pick(&main, Language::Python, &like_beta, 2)),
            ["a.py", "c.py"]
        );
        assert_eq!(
            names(ring.pick(&main, Language::Rust, &elsewhere, 8)),
            ["lib.rs"]
        );
        assert!(ring.pick(&main, Language::Python, &elsewhere, 0).is_empty());
    }

    /// The focus: leaving a document with a known spot, jumping far within one, closing the
    /// focused one, and a document opened but never touched at a position.
    #[test]
    fn touches_leave_spots_behind() {
        let (a, b) = (uri("a.py"), uri("b.py"));
        let spot = |u: &Arc<str>, line| {
            Some(Spot {
                uri: u.clone(),
                line,
            })
        };
        let mut ring = RecentRing::default();
        assert_eq!(ring.touch(&a, None), None, "opened: no spot yet");
        assert_eq!(ring.touch(&b, None), None, "a had no spot to leave");
        assert_eq!(ring.touch(&b, Some(10)), None);
        assert_eq!(ring.touch(&b, Some(11)), None, "typing on");
        assert_eq!(
            ring.touch(&b, None),
            None,
            "a whole-text change keeps the spot"
        );
        assert_eq!(ring.focus_line(&b), Some(11));
        assert_eq!(
            ring.touch(&b, Some(11 + FAR_LINES)),
            spot(&b, 11),
            "a far jump"
        );
        assert_eq!(ring.touch(&a, Some(3)), spot(&b, 11 + FAR_LINES), "to a.py");
        assert_eq!(ring.focus_line(&b), None);
        assert_eq!(ring.leave(&b), None, "b is not focused");
        assert_eq!(ring.leave(&a), spot(&a, 3));
        assert_eq!(
            ring.touch(&b, Some(1)),
            None,
            "a was closed: nothing left behind"
        );
    }

    fn rope_of(lines: usize, f: impl Fn(usize) -> String) -> Rope {
        Rope::from_str(&(0..lines).map(f).collect::<String>())
    }

    /// The definition around the spot, whether the spot is in its body or on its header line
    /// (a method of a long class too), when it is small enough.
    #[test]
    fn a_small_enclosing_definition_is_the_chunk() {
        let text = "import os\n\n\ndef small(x):\n    y = x + 1\n    return y\n\n\ndef other():\n    pass\n";
        let rope = Rope::from_str(text);
        let tree = crate::syntax::parse(Language::Python, text);
        for line in [3, 4, 5] {
            let c = cut(&rope, tree.as_ref(), Language::Python, &uri("a.py"), line).unwrap();
            assert_eq!(
                &*c.text, "def small(x):\n    y = x + 1\n    return y\n",
                "{line}"
            );
            assert_eq!(c.lines, 3..6);
        }
        let methods: String = (0..20)
            .map(|i| format!("    def m{i}(self):\n        a = {i}\n        return a\n\n"))
            .collect();
        let class = format!("class Long:\n{methods}");
        let rope = Rope::from_str(&class);
        let tree = crate::syntax::parse(Language::Python, &class);
        let header = 1 + 4 * 7;
        for line in [header, header + 1] {
            let c = cut(&rope, tree.as_ref(), Language::Python, &uri("l.py"), line).unwrap();
            assert_eq!(
                &*c.text, "    def m7(self):\n        a = 7\n        return a\n",
                "{line}"
            );
        }
    }

    /// A longer function, or no tree: the lines around the spot, within the bounds, whole
    /// lines, blank ends trimmed; too little text or an overlong line: no chunk.
    #[test]
    fn chunks_stay_within_their_bounds() {
        let body = |i: usize| format!("    total_{i} = step(total_{i}, {i})\n");
        let long_fn = format!("def long():\n{}", (0..200).map(body).collect::<String>());
        let rope = Rope::from_str(&long_fn);
        let tree = crate::syntax::parse(Language::Python, &long_fn);
        for (tree, line) in [
            (tree.as_ref(), 100),
            (None, 100),
            (tree.as_ref(), 0),
            (None, 500),
        ] {
            let c = cut(&rope, tree, Language::Python, &uri("a.py"), line).unwrap();
            assert!(c.lines.len() <= CHUNK_LINES, "{:?}", c.lines);
            assert!(c.text.chars().count() <= CHUNK_CHARS, "{}", c.text.len());
            assert!(c.text.ends_with('\n'));
            let at = line.min(rope.len_lines() - 1);
            assert!(
                c.lines.contains(&at) || at >= rope.len_lines() - 2,
                "{line}: {:?}",
                c.lines
            );
        }
        // Wide lines: fewer of them, the spot's line kept.
        let wide = rope_of(60, |i| format!("x{i} = '{}'\n", "w".repeat(200)));
        let c = cut(&wide, None, Language::Python, &uri("w.py"), 30).unwrap();
        assert!(
            c.lines.contains(&30) && c.text.len() <= CHUNK_CHARS,
            "{:?}",
            c.lines
        );
        assert!(
            cut(
                &Rope::from_str("x = 1\n\n\n"),
                None,
                Language::Python,
                &uri("t.py"),
                0
            )
            .is_none()
        );
        let minified = Rope::from_str(&format!("var a={};\n", "1+".repeat(2000)));
        assert!(cut(&minified, None, Language::JavaScript, &uri("m.js"), 0).is_none());
        assert!(cut(&Rope::new(), None, Language::Python, &uri("e.py"), 0).is_none());
    }
}
