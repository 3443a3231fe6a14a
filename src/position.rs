//! Positions: conversion between an LSP position (line, column in the negotiated encoding)
//! and a byte offset into a rope, and back. Lines end at `\n`, `\r\n` or `\r`, as LSP says.
//! Columns past the end of a line clamp to the line end (LSP's rule); a column inside a
//! character (half a surrogate pair, a byte inside a multi-byte character) clamps to the
//! start of that character; a line past the end of the document is an error. No LSP types.
//!
//! Also the clamping of byte offsets and ranges that come from elsewhere (a cursor, a node
//! of a possibly stale tree, a target) to a rope: [`floor`], [`clamp_range`],
//! [`for_each_chunk`]. Everyone clamps through these.

use std::ops::Range;

use ropey::{Rope, RopeSlice};

/// How LSP columns are counted: negotiated at `initialize`, UTF-16 unless both sides agree
/// on something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PositionEncoding {
    Utf8,
    #[default]
    Utf16,
    Utf32,
}

impl PositionEncoding {
    /// The LSP name (`"utf-8"`, `"utf-16"`, `"utf-32"`).
    pub fn name(self) -> &'static str {
        match self {
            PositionEncoding::Utf8 => "utf-8",
            PositionEncoding::Utf16 => "utf-16",
            PositionEncoding::Utf32 => "utf-32",
        }
    }

    /// Chooses from the client's list, in the client's order of preference. UTF-8 columns
    /// are cheapest for us, but the client's preference decides; with no list, UTF-16.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> PositionEncoding {
        offered
            .into_iter()
            .find_map(|name| match name {
                "utf-8" => Some(PositionEncoding::Utf8),
                "utf-16" => Some(PositionEncoding::Utf16),
                "utf-32" => Some(PositionEncoding::Utf32),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// `text` with every line break LSP knows (`\r\n`, a lone `\r`) written as `\n`: for text
/// from outside (a model's answer) that the rules after it read line by line.
pub fn lf_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// A zero-based line and a column counted in some [`PositionEncoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct LineCol {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("line {line} is past the end of the document ({line_count} lines)")]
    LinePastEnd { line: u32, line_count: usize },
    #[error("range start {start:?} is after its end {end:?}")]
    InvertedRange { start: LineCol, end: LineCol },
}

/// The line's text without its line break.
fn line_content(line: RopeSlice<'_>) -> RopeSlice<'_> {
    let len = line.len_chars();
    let mut end = len;
    if end > 0 && line.char(end - 1) == '\n' {
        end -= 1;
    }
    if end > 0 && line.char(end - 1) == '\r' {
        end -= 1;
    }
    line.slice(..end)
}

/// Converts a position to a byte offset into `rope`.
pub fn to_byte(rope: &Rope, pos: LineCol, enc: PositionEncoding) -> Result<usize, PositionError> {
    let line_idx = pos.line as usize;
    if line_idx >= rope.len_lines() {
        return Err(PositionError::LinePastEnd {
            line: pos.line,
            line_count: rope.len_lines(),
        });
    }
    let line_start = rope.line_to_byte(line_idx);
    let content = line_content(rope.line(line_idx));
    let col = pos.col as usize;
    let char_in_line = match enc {
        PositionEncoding::Utf8 => content.byte_to_char(col.min(content.len_bytes())),
        PositionEncoding::Utf16 => content.utf16_cu_to_char(col.min(content.len_utf16_cu())),
        PositionEncoding::Utf32 => col.min(content.len_chars()),
    };
    Ok(line_start + content.char_to_byte(char_in_line))
}

/// Converts a byte offset (clamped to the document) to a position.
pub fn from_byte(rope: &Rope, byte: usize, enc: PositionEncoding) -> LineCol {
    let byte = byte.min(rope.len_bytes());
    // Snap back to a char boundary.
    let char_idx = rope.byte_to_char(byte);
    let line_idx = rope.char_to_line(char_idx);
    let line_start_char = rope.line_to_char(line_idx);
    let before = rope.slice(line_start_char..char_idx);
    let col = match enc {
        PositionEncoding::Utf8 => before.len_bytes(),
        PositionEncoding::Utf16 => before.len_utf16_cu(),
        PositionEncoding::Utf32 => before.len_chars(),
    };
    LineCol {
        line: line_idx as u32,
        col: col as u32,
    }
}

/// Converts a range to byte offsets; an inverted range is an error.
pub fn range_to_bytes(
    rope: &Rope,
    start: LineCol,
    end: LineCol,
    enc: PositionEncoding,
) -> Result<(usize, usize), PositionError> {
    if start > end {
        return Err(PositionError::InvertedRange { start, end });
    }
    Ok((to_byte(rope, start, enc)?, to_byte(rope, end, enc)?))
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

/// `range` clamped to the rope, both ends rounded down to char boundaries. A reversed range
/// is empty (at its clamped end): it comes from a stale tree or a bug, and guessing what it
/// meant could turn it into the whole document.
pub fn clamp_range(rope: &Rope, range: Range<usize>) -> Range<usize> {
    let end = floor(rope, range.end);
    floor(rope, range.start).min(end)..end
}

/// [`clamp_range`] for a string.
pub fn clamp_str_range(text: &str, range: Range<usize>) -> Range<usize> {
    let floor = |b: usize| {
        let mut b = b.min(text.len());
        while !text.is_char_boundary(b) {
            b -= 1;
        }
        b
    };
    let end = floor(range.end);
    floor(range.start).min(end)..end
}

/// Calls `f` with the pieces of text of `range` (clamped as by [`clamp_range`]), in order,
/// straight from the rope's chunks: no `RopeSlice`, no copy.
pub fn for_each_chunk(rope: &Rope, range: Range<usize>, mut f: impl FnMut(&str)) {
    let range = clamp_range(rope, range);
    if range.is_empty() {
        return;
    }
    let (start, end) = (range.start, range.end);
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
    use PositionEncoding::*;

    fn lc(line: u32, col: u32) -> LineCol {
        LineCol { line, col }
    }

    #[test]
    fn to_byte_table() {
        // (text, position, encoding, expected byte offset or None for an error)
        let cases: &[(&str, LineCol, PositionEncoding, Option<usize>)] = &[
            ("abc", lc(0, 2), Utf16, Some(2)),
            ("abc", lc(0, 99), Utf16, Some(3)),
            ("abc", lc(0, u32::MAX), Utf8, Some(3)),
            ("abc", lc(1, 0), Utf16, None),
            ("abc\n", lc(1, 0), Utf16, Some(4)),
            ("abc\n", lc(u32::MAX, 0), Utf16, None),
            // emoji: 4 bytes, 2 UTF-16 units, 1 char
            ("a😀b", lc(0, 3), Utf16, Some(5)),
            ("a😀b", lc(0, 2), Utf16, Some(1)), // inside the surrogate pair: start of the char
            ("a😀b", lc(0, 5), Utf8, Some(5)),
            ("a😀b", lc(0, 3), Utf8, Some(1)), // inside the char's bytes
            ("a😀b", lc(0, 2), Utf32, Some(5)),
            // CJK: 3 bytes, 1 UTF-16 unit
            ("日本語x", lc(0, 2), Utf16, Some(6)),
            ("日本語x", lc(0, 6), Utf8, Some(6)),
            // CRLF: the column clamps before the \r\n, the next line starts after it
            ("ab\r\ncd", lc(0, 10), Utf16, Some(2)),
            ("ab\r\ncd", lc(1, 1), Utf16, Some(5)),
            // lone CR is a line break too
            ("ab\rcd", lc(1, 1), Utf16, Some(4)),
            ("", lc(0, 0), Utf16, Some(0)),
            ("", lc(0, 5), Utf16, Some(0)),
        ];
        for (text, pos, enc, want) in cases {
            let rope = Rope::from_str(text);
            let got = to_byte(&rope, *pos, *enc).ok();
            assert_eq!(got, *want, "{text:?} {pos:?} {enc:?}");
        }
    }

    #[test]
    fn round_trips_every_char_boundary() {
        let text = "fn 😀() {\r\n    let s = \"日本\";\n}\rend";
        let rope = Rope::from_str(text);
        for enc in [Utf8, Utf16, Utf32] {
            for (byte, _) in text.char_indices() {
                let pos = from_byte(&rope, byte, enc);
                // a position inside a line break is not a boundary LSP can express
                if text[byte..].starts_with('\n') && byte > 0 && text.as_bytes()[byte - 1] == b'\r'
                {
                    continue;
                }
                assert_eq!(to_byte(&rope, pos, enc), Ok(byte), "{enc:?} byte {byte}");
            }
        }
    }

    #[test]
    fn inverted_range_is_an_error() {
        let rope = Rope::from_str("abc\ndef");
        assert!(range_to_bytes(&rope, lc(1, 0), lc(0, 1), Utf16).is_err());
        assert_eq!(range_to_bytes(&rope, lc(0, 1), lc(1, 1), Utf16), Ok((1, 5)));
    }

    #[test]
    fn negotiates_in_client_order() {
        assert_eq!(PositionEncoding::negotiate(["utf-32", "utf-8"]), Utf32);
        assert_eq!(PositionEncoding::negotiate(["latin-1", "utf-8"]), Utf8);
        assert_eq!(PositionEncoding::negotiate([]), Utf16);
    }

    #[test]
    fn clamp_range_table() {
        // "aé\nb": a (0), é (1..3), \n (3), b (4); 5 bytes.
        let text = "aé\nb";
        let rope = Rope::from_str(text);
        let cases = [
            (0..2, 0..1),
            (0..usize::MAX, 0..5),
            (usize::MAX..usize::MAX, 5..5),
            (2..4, 1..4),
            // Reversed: empty, at the clamped end.
            (Range { start: 4, end: 1 }, 1..1),
            (
                Range {
                    start: usize::MAX,
                    end: 0,
                },
                0..0,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(clamp_range(&rope, input.clone()), want, "{input:?}");
            assert_eq!(clamp_str_range(text, input.clone()), want, "{input:?}");
            let mut pieces = String::new();
            for_each_chunk(&rope, input.clone(), |p| pieces.push_str(p));
            assert_eq!(pieces, text[want.clone()], "{input:?}");
        }
    }
}
