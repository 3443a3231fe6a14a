//! A slow model's block or next line, streamed so that its first line reaches the user the
//! moment it is written, and closed one line later.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ModelConfig;
use crate::postprocess::first_line_end;
use crate::providers::{FimCall, ModelAnswer, ProviderError, Providers};
use crate::sync::lock;
use crate::syntax::context::SuggestionShape;

/// A first line longer than this is not shown before the answer ends: no suggestion line is
/// that long, and a model writing one line without end is not read twice over.
const EARLY_LINE_MAX_BYTES: usize = 4096;

/// How long a slow model's stream may go on once its first line is shown, for one line more
/// (a block's second line, or the line after a next line), which serves the user typing
/// along or accepting the first; past that line, or this long, the stream is closed: the
/// model is not held from the next place the user pauses at for lines they may never
/// reach. (llama.vim caps its generation after the first line the same way,
/// `t_max_predict_ms`.) Measured against the one second of lines a block used to get:
/// BENCHMARKS.md, stop 17.
const LINE_AFTER_LIMIT: Duration = Duration::from_secs(1);

/// Streams a fill-in-the-middle answer and hands `publish` the raw text of its first line
/// once that line is complete and `show_from` has passed; the stream goes on to the end of
/// one line more, for at most [`LINE_AFTER_LIMIT`], and stops there, which stops the model.
/// For a block, `publish` then gets the whole lines so far, and they are the answer. A
/// model that turns out fast finishes the whole block before `show_from` (the budget), and
/// the user gets the block, not its first line. For the next line after a statement that
/// line is the whole suggestion, shown at once, and the line after it is the suggestion
/// after accepting it.
pub(super) async fn fim_first_line_first(
    providers: &Providers,
    model: &ModelConfig,
    call: FimCall<'_>,
    shape: &SuggestionShape,
    show_from: Instant,
    publish: &(dyn Fn(&str) + Send + Sync),
) -> Result<ModelAnswer, ProviderError> {
    let text = Mutex::new(String::new());
    let line_end = std::sync::OnceLock::new();
    let line_done = tokio::sync::Notify::new();
    // For a block: a line after the first is complete.
    let more_lines = tokio::sync::Notify::new();
    // For a next line: where the line after it ends.
    let then_end = std::sync::OnceLock::new();
    let then_done = tokio::sync::Notify::new();
    let next_line = shape.next_line;
    let mut looking = true;
    let mut on_text = |piece: &str| {
        let mut text = lock(&text);
        text.push_str(piece);
        if !next_line && line_end.get().is_some() && piece.contains('\n') {
            more_lines.notify_one();
        }
        if !looking {
            return;
        }
        if text.len() > EARLY_LINE_MAX_BYTES {
            // One endless line: not shown early (looking for its end on every piece would
            // cost the runtime thread time quadratic in its length).
            looking = false;
            return;
        }
        if !piece.contains('\n') {
            return;
        }
        match line_end.get() {
            None => {
                if let Some(end) = first_line_end(&text) {
                    looking = next_line;
                    let _ = line_end.set(end);
                    line_done.notify_one();
                }
            }
            Some(&end) => {
                if let Some(then) = first_line_end(&text[end..]) {
                    looking = false;
                    let _ = then_end.set(end + then);
                    then_done.notify_one();
                }
            }
        }
    };
    let shown = async {
        line_done.notified().await;
        let line = || {
            let end = *line_end.get().expect("set before the notification");
            lock(&text)[..end].to_owned()
        };
        if next_line {
            publish(&line());
            if tokio::time::timeout(LINE_AFTER_LIMIT, then_done.notified())
                .await
                .is_err()
            {
                return line();
            }
            let end = *then_end.get().expect("set before the notification");
            // With the line break that ends it: the line after is whole.
            return lock(&text)[..=end].to_owned();
        }
        tokio::time::sleep_until(show_from.into()).await;
        publish(&line());
        // With the line break that ends the last: that line is whole.
        let whole_lines = || {
            let text = lock(&text);
            let end = text.rfind('\n').map_or(text.len(), |i| i + 1);
            text[..end].to_owned()
        };
        // One line more (or already more, written before `show_from`).
        if tokio::time::timeout(LINE_AFTER_LIMIT, more_lines.notified())
            .await
            .is_ok()
        {
            publish(&whole_lines());
        }
        whole_lines()
    };
    tokio::select! {
        answer = providers.fim_streamed(model, call, &mut on_text) => answer,
        text = shown => Ok(ModelAnswer {
            text,
            ..ModelAnswer::default()
        }),
    }
}
