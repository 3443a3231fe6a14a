//! A slow model's block, next line or rest of a line, streamed so that its first line
//! reaches the user the moment it is written, and closed one line later — or later, while
//! the user keeps up.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ModelConfig;
use crate::position::lf_line_breaks;
use crate::postprocess::first_line_end;
use crate::providers::{FimCall, ModelAnswer, ProviderError, Providers};
use crate::sync::lock;
use crate::syntax::context::SuggestionShape;

/// A first line longer than this is not shown before the answer ends: no suggestion line is
/// that long, and a model writing one line without end is not read twice over.
const EARLY_LINE_MAX_BYTES: usize = 4096;

/// How long a slow model's stream may wait for each line after its first one: one line more
/// (a block's second line, or the line after a next line), which serves the user typing
/// along or accepting the first; past that line, or this long, the stream is closed: the
/// model is not held from the next place the user pauses at for lines they may never
/// reach. (llama.vim caps its generation after the first line the same way,
/// `t_max_predict_ms`.) Measured against the one second of lines a block used to get:
/// BENCHMARKS.md, stop 17. A stream reads on while the user keeps up with it
/// ([`keeps_up`]).
const LINE_AFTER_LIMIT: Duration = Duration::from_secs(1);

/// How far the user has come along a call's answer: the text they typed or accepted after
/// the call's prompt since it started (empty once a request asks at a prefetch's own place,
/// the suggestion before it accepted); None while no request follows the call.
pub(super) type Followed = Mutex<Option<String>>;

/// Streams a fill-in-the-middle answer and hands `publish` the raw text of its first line
/// once that line is complete (for a block, once `show_from` has passed too: a model that
/// turns out fast finishes the whole block before the budget, and the user gets the block,
/// not its first line); the stream goes on to the end of one line more, for at most
/// [`LINE_AFTER_LIMIT`], and more while the user keeps up with it (`followed`, if the model
/// may read ahead; [`keeps_up`]); each time `publish` gets the whole lines so far. It stops
/// there, which stops the model. For a block the whole lines are the answer; for the next line after a
/// statement, or the rest of the cursor's line, its first line is the suggestion, and the
/// lines after it the suggestions after accepting it. A first line `publish` keeps nothing
/// of (the model has nothing to add, or writes the line that already follows) ends the
/// stream there.
pub(super) async fn fim_first_line_first(
    providers: &Providers,
    model: &ModelConfig,
    call: FimCall<'_>,
    (shape, followed): (&SuggestionShape, Option<&Followed>),
    show_from: Instant,
    publish: &(dyn Fn(&str) -> bool + Send + Sync),
) -> Result<ModelAnswer, ProviderError> {
    let text = Mutex::new(String::new());
    // Where each whole line written so far ends (its line break); a line starts after any
    // blank lines before it.
    let line_ends = Mutex::new(Vec::<usize>::new());
    let line_done = tokio::sync::Notify::new();
    // The rest of the cursor's line ends at the first line break, even at once (the model
    // has nothing to add to the line); a block or next line after any leading ones.
    let rest_of_line = !shape.multiline && !shape.next_line;
    let mut looking = true;
    let mut on_text = |piece: &str| {
        let mut text = lock(&text);
        text.push_str(piece);
        if !looking || !piece.contains('\n') {
            return;
        }
        if text.len() > EARLY_LINE_MAX_BYTES {
            // One endless line: not shown early (looking for its end on every piece would
            // cost the runtime thread time quadratic in its length).
            looking = false;
            return;
        }
        let mut ends = lock(&line_ends);
        if ends.is_empty() && rest_of_line {
            let Some(end) = text.find('\n') else {
                return;
            };
            ends.push(end);
            line_done.notify_one();
        }
        let mut from = ends.last().map_or(0, |&end| end);
        while let Some(end) = first_line_end(&text[from..]) {
            from += end;
            ends.push(from);
            line_done.notify_one();
        }
    };
    let shown = async {
        line_done.notified().await;
        // The text up to the end of the `n`th line (with its line break if `whole`).
        let through = |n: usize, whole: bool| {
            let end = lock(&line_ends)[n - 1] + usize::from(whole);
            lock(&text)[..end].to_owned()
        };
        if shape.multiline {
            tokio::time::sleep_until(show_from.into()).await;
        }
        if !publish(&through(1, false)) {
            // No suggestion (nothing to add, or what already follows): nothing to read on for.
            return through(1, false);
        }
        let mut lines = 1;
        loop {
            let more = async {
                loop {
                    let written = lock(&line_ends).len();
                    if written > lines {
                        return written;
                    }
                    line_done.notified().await;
                }
            };
            let Ok(written) = tokio::time::timeout(LINE_AFTER_LIMIT, more).await else {
                return through(lines, lines > 1);
            };
            lines = written;
            let answer = through(lines, true);
            if !followed.is_some_and(|f| keeps_up(&answer, &lock(&line_ends), lines, f)) {
                return answer;
            }
            publish(&answer);
        }
    };
    tokio::select! {
        answer = providers.fim_streamed(model, call, &mut on_text) => answer,
        text = shown => Ok(ModelAnswer {
            text,
            ..ModelAnswer::default()
        }),
    }
}

/// Whether a stream, `lines` lines written (`answer`, the lines ending at `ends`), reads
/// one line more: while the user keeps up with it — they follow the call (typed along its
/// first line, or asked at a prefetch's place, accepting the suggestion before it) and have
/// come, along what it wrote, to within one line of its last: a user accepting line after
/// line finds the next one written. The line after the first is always read.
fn keeps_up(answer: &str, ends: &[usize], lines: usize, followed: &Followed) -> bool {
    let Some(followed) = lock(followed).clone() else {
        return false;
    };
    // Line breaks compared as `\n` on both sides: the user's are the file's (`\r\n` in a
    // CRLF file), the model's its own.
    let followed = lf_line_breaks(&followed);
    // The end of the line before the last, without the whitespace a suggestion drops.
    let needed = match lines.checked_sub(2) {
        Some(0) | None => 0,
        Some(line) => lf_line_breaks(&answer[..ends[line - 1]]).trim_end().len(),
    };
    lf_line_breaks(answer).starts_with(followed.as_str()) && followed.len() >= needed
}
