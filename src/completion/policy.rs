//! The completion path's timing decisions, as pure functions of what the engine measured:
//! how long a request waits before it calls the model (the debounce), whether a model is
//! slow against the budget, and whether a model call in flight can still serve a newer
//! request. No clock, no I/O: durations come in, decisions go out, and the tables below are
//! the specification.

use std::time::Duration;

use crate::cache::CacheKey;
use crate::syntax::context::SuggestionShape;

/// A gap between two requests longer than this ends a typing burst.
pub const PAUSE: Duration = Duration::from_millis(400);
/// The debounce of a fast model never waits longer than this, however slow the rhythm.
pub const MAX_DEBOUNCE: Duration = Duration::from_millis(150);
/// A model slower than the budget is called only once the user has stopped typing for this
/// long (or for 1.5 × their rhythm, if that is longer, up to [`PAUSE`]): its answer takes
/// seconds, so a call made between two keystrokes is most likely a call for a place the
/// user has already typed past.
pub const SLOW_MODEL_DEBOUNCE: Duration = Duration::from_millis(250);

/// What the engine knows of the model a request will call first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    /// Expected to answer inside the budget (its measured average).
    Fast(Duration),
    /// Expected to answer after the budget.
    Slow,
    /// No call to it answered yet.
    Unknown,
}

impl Speed {
    /// The speed of a model whose average time to the whole answer is `expected` (None: not
    /// measured yet), against the completion budget.
    pub fn of(expected: Option<Duration>, budget: Duration) -> Speed {
        match expected {
            Some(e) if e <= budget => Speed::Fast(e),
            Some(_) => Speed::Slow,
            None => Speed::Unknown,
        }
    }
}

/// How long a request waits before calling the model.
///
/// - A fast model: nothing after a pause (`gap` ≥ [`PAUSE`] or the first request); inside a
///   burst, 1.5 × the smoothed `rhythm` (floored at `floor`, capped at [`MAX_DEBOUNCE`]) —
///   but never so long that the debounce and the model's expected time together overrun
///   the budget: the request the user pauses on is answered inside it.
/// - A slow model: always [`SLOW_MODEL_DEBOUNCE`], or 1.5 × the rhythm when longer (capped
///   at [`PAUSE`]): the call starts once the user has paused, and keystrokes inside a burst
///   start none.
/// - A model not measured yet: as a fast one, without the budget's cap; its first answer
///   tells which it is.
pub fn debounce(
    gap: Option<Duration>,
    rhythm: Option<Duration>,
    floor: Duration,
    budget: Duration,
    speed: Speed,
) -> Duration {
    let in_burst = gap.is_some_and(|g| g < PAUSE);
    let burst = rhythm.map_or(floor, |r| r * 3 / 2);
    let wanted = burst.clamp(floor, MAX_DEBOUNCE.max(floor));
    match speed {
        Speed::Slow => slow_model_quiet(rhythm, floor),
        _ if !in_burst => Duration::ZERO,
        // A quarter of the expected time as margin for the model's variation.
        Speed::Fast(expected) => wanted.min(budget.saturating_sub(expected + expected / 4)),
        Speed::Unknown => wanted,
    }
}

/// How long the user must have stopped typing before a slow model is called:
/// [`SLOW_MODEL_DEBOUNCE`], or 1.5 × their `rhythm` (`floor` out of a burst) when longer, up
/// to [`PAUSE`].
fn slow_model_quiet(rhythm: Option<Duration>, floor: Duration) -> Duration {
    rhythm
        .map_or(floor, |r| r * 3 / 2)
        .clamp(SLOW_MODEL_DEBOUNCE, PAUSE)
}

/// How long the prefetch made when a suggestion is shown waits before it calls the model,
/// `since_request` after the request the suggestion answers. A slow model's waits until the
/// user has stopped typing as long as its requests' calls do: a suggestion shown between
/// keystrokes (from the cache, or typed ahead) is most often typed past by the next one, and
/// the prefetch would be given up as soon as it started. Any other model's starts at once:
/// it answers before the next keystroke.
pub fn prefetch_wait(
    since_request: Duration,
    rhythm: Option<Duration>,
    floor: Duration,
    speed: Speed,
) -> Duration {
    match speed {
        Speed::Slow => slow_model_quiet(rhythm, floor).saturating_sub(since_request),
        Speed::Fast(_) | Speed::Unknown => Duration::ZERO,
    }
}

/// How a model call in flight relates to a newer request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The same prompt: the request waits on the call.
    Same,
    /// The request's prompt is the call's with only text typed at its end (same model,
    /// same suffix), and that text could begin the call's answer (a line break only if the
    /// answer may span lines): it may serve the request through typed-ahead reuse.
    TypedAlong,
    /// Anything else: the call cannot serve the request.
    No,
}

/// Whether a model call streams its answer, shows the suggestion's first line as soon as it
/// is written and reads on at least one line more ([`fim_first_line_first`]): a slow model's
/// call whose suggestion ends the cursor's line — a block, the next line, or the rest of the
/// line. The line after is the suggestion after accepting it.
///
/// [`fim_first_line_first`]: super::first_line::fim_first_line_first
pub fn streams_first_line(shape: &SuggestionShape, slow: bool) -> bool {
    slow && shape.ends_line()
}

/// Whether the call for `flight` (whose answer may span lines when `spans_lines`: a block,
/// or the next line at the end of a line) can serve a request for `request`.
pub fn serves(flight: &CacheKey, spans_lines: bool, request: &CacheKey) -> Serves {
    if flight == request {
        return Serves::Same;
    }
    let typed = (flight.model == request.model && flight.suffix == request.suffix)
        .then(|| request.prefix.strip_prefix(flight.prefix.as_str()))
        .flatten()
        .filter(|typed| !typed.is_empty());
    match typed {
        Some(typed) if spans_lines || !typed.contains('\n') => Serves::TypedAlong,
        _ => Serves::No,
    }
}

/// Whether the text typed along a model call agrees with what the call expects there
/// (`expected`, in pieces: what its prompt has past the place typing started, then what it
/// has written so far): one is the start of the other. The user typing a suggestion, or
/// typing while the model has written nothing yet, agrees; once they disagree, nothing the
/// call writes can serve them (it writes on only at the end, and typed-ahead reuse takes a
/// suggestion only as far as it matches what was typed), and it is given up.
pub fn agrees(typed: impl IntoIterator<Item = u8>, expected: [&str; 3]) -> bool {
    typed
        .into_iter()
        .zip(expected.iter().flat_map(|piece| piece.bytes()))
        .all(|(typed, expected)| typed == expected)
}

/// A model whose average answer takes more than this many budgets reads a compact prefix
/// window ([`ContextBudget::compact`]). Well above the budget, so that a fast model whose
/// average a cold prompt pushes past the budget now and then keeps one window (each switch of
/// window is a cold prompt of its own).
///
/// [`ContextBudget::compact`]: crate::syntax::context::ContextBudget::compact
pub const COMPACT_WINDOW_BUDGETS: u32 = 3;

/// Whether the prompt's prefix window is the compact one: for a model measured (however long
/// ago: its hardware has not changed) to answer in more than [`COMPACT_WINDOW_BUDGETS`]
/// budgets — a CPU model, for which the first prompt at a new place costs seconds per
/// thousand tokens — and for a model not measured yet: its first prompt is read in a third
/// of the time if it is slow, and a fast one reads the default window from its next request.
pub fn compact_window(average_answer: Option<Duration>, budget: Duration) -> bool {
    average_answer.is_none_or(|a| a > budget * COMPACT_WINDOW_BUDGETS)
}

/// Whether a request keeps (and waits on) a call it typed along rather than replace it
/// with a call of its own. A fast model's call is replaced: the new one answers within the
/// budget, and aborting the old keeps a burst to a few calls. A slow model's call is kept:
/// replacing it at every keystroke would mean that no call ever finishes while the user
/// types, and its answer often serves what they typed since. So is a call to a model not
/// measured yet: were it slow, aborting would keep it from ever being measured.
pub fn keep_typed_along(speed: Speed) -> bool {
    !matches!(speed, Speed::Fast(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn compact_window_for_models_well_past_the_budget() {
        let budget = ms(100);
        let cases = [
            (None, true),
            (Some(ms(20)), false),
            (Some(ms(150)), false),
            (Some(ms(300)), false),
            (Some(ms(301)), true),
            (Some(ms(900)), true),
        ];
        for (average, compact) in cases {
            assert_eq!(compact_window(average, budget), compact, "{average:?}");
        }
    }

    #[test]
    fn debounce_table() {
        let budget = ms(100);
        let floor = ms(25);
        // (gap, rhythm, speed, want)
        let cases = [
            // A fast model after a pause or at the first request: at once.
            (None, None, Speed::Fast(ms(20)), ms(0)),
            (Some(ms(900)), None, Speed::Fast(ms(20)), ms(0)),
            // In a burst at 70 ms a key: 105 ms wanted, but the 20 ms model must still make
            // the budget: 100 - 25 = 75 ms.
            (Some(ms(70)), Some(ms(70)), Speed::Fast(ms(20)), ms(75)),
            // A fast typist: 1.5 × 30 = 45 ms fits.
            (Some(ms(30)), Some(ms(30)), Speed::Fast(ms(20)), ms(45)),
            // The floor holds when the budget leaves room.
            (Some(ms(10)), Some(ms(10)), Speed::Fast(ms(20)), ms(25)),
            // A model that takes the whole budget: no debounce at all.
            (Some(ms(70)), Some(ms(70)), Speed::Fast(ms(95)), ms(0)),
            // A model not measured yet: the fast rule without the budget's cap.
            (None, None, Speed::Unknown, ms(0)),
            (Some(ms(70)), Some(ms(70)), Speed::Unknown, ms(105)),
            (Some(ms(200)), Some(ms(200)), Speed::Unknown, ms(150)),
            // A slow model: always the slow debounce, longer for a slow rhythm, capped.
            (None, None, Speed::Slow, ms(250)),
            (Some(ms(900)), Some(ms(70)), Speed::Slow, ms(250)),
            (Some(ms(70)), Some(ms(70)), Speed::Slow, ms(250)),
            (Some(ms(220)), Some(ms(220)), Speed::Slow, ms(330)),
            (Some(ms(390)), Some(ms(390)), Speed::Slow, ms(400)),
        ];
        for (gap, rhythm, speed, want) in cases {
            assert_eq!(
                debounce(gap, rhythm, floor, budget, speed),
                want,
                "gap {gap:?} rhythm {rhythm:?} {speed:?}"
            );
        }
        // A configured floor above the slow debounce holds for a slow model out of a burst.
        assert_eq!(debounce(None, None, ms(300), budget, Speed::Slow), ms(300));
    }

    #[test]
    fn prefetch_wait_table() {
        let floor = ms(25);
        // (since the request, rhythm, speed, want)
        let cases = [
            // A suggestion shown between two keystrokes of a slow model: the slow debounce.
            (ms(3), Some(ms(70)), Speed::Slow, ms(247)),
            (ms(3), None, Speed::Slow, ms(247)),
            (ms(3), Some(ms(220)), Speed::Slow, ms(327)),
            // Shown once the user had paused that long (the answer of a call): at once.
            (ms(250), Some(ms(70)), Speed::Slow, ms(0)),
            (ms(1400), None, Speed::Slow, ms(0)),
            // A fast model's, or one not measured yet: at once.
            (ms(3), Some(ms(70)), Speed::Fast(ms(20)), ms(0)),
            (ms(3), None, Speed::Unknown, ms(0)),
        ];
        for (since, rhythm, speed, want) in cases {
            assert_eq!(
                prefetch_wait(since, rhythm, floor, speed),
                want,
                "since {since:?} rhythm {rhythm:?} {speed:?}"
            );
        }
        // The same wait as the request's call: a configured floor above the slow debounce.
        assert_eq!(prefetch_wait(ms(3), None, ms(300), Speed::Slow), ms(297));
    }

    #[test]
    fn speed_against_the_budget() {
        assert_eq!(Speed::of(None, ms(100)), Speed::Unknown);
        assert_eq!(Speed::of(Some(ms(100)), ms(100)), Speed::Fast(ms(100)));
        assert_eq!(Speed::of(Some(ms(101)), ms(100)), Speed::Slow);
        assert!(keep_typed_along(Speed::Slow));
        assert!(keep_typed_along(Speed::Unknown));
        assert!(!keep_typed_along(Speed::Fast(ms(20))));
    }

    #[test]
    fn which_calls_serve_a_request() {
        let key = |model: &str, prefix: &str, suffix: &str, multiline: bool| CacheKey {
            model: model.into(),
            prefix: prefix.into(),
            suffix: suffix.into(),
            multiline,
        };
        let flight = key("m", "fn main() { let x", "\n}", false);
        // (the call's answer may span lines, request, want)
        let cases = [
            (
                false,
                key("m", "fn main() { let x", "\n}", false),
                Serves::Same,
            ),
            (
                false,
                key("m", "fn main() { let x =", "\n}", false),
                Serves::TypedAlong,
            ),
            // Another shape: the cached answer decides, by what was typed.
            (
                false,
                key("m", "fn main() { let x =", "\n}", true),
                Serves::TypedAlong,
            ),
            // A line break typed: only an answer that may span lines can hold it.
            (
                false,
                key("m", "fn main() { let x\n    ", "\n}", true),
                Serves::No,
            ),
            (
                true,
                key("m", "fn main() { let x\n    ", "\n}", true),
                Serves::TypedAlong,
            ),
            // Deleted, moved, another suffix or model: cannot serve.
            (
                false,
                key("m", "fn main() { let ", "\n}", false),
                Serves::No,
            ),
            (
                false,
                key("m", "fn main() { let y", "\n}", false),
                Serves::No,
            ),
            (
                false,
                key("m", "fn main() { let x =", "\n}\n", false),
                Serves::No,
            ),
            (
                false,
                key("n", "fn main() { let x =", "\n}", false),
                Serves::No,
            ),
        ];
        for (spans_lines, request, want) in cases {
            assert_eq!(serves(&flight, spans_lines, &request), want, "{request:?}");
        }
    }

    #[test]
    fn what_typing_along_a_call_agrees_with() {
        // (typed, [ahead, written suggestion, lines written after it], agrees)
        let cases = [
            // Nothing written yet: any typing may still be what the model writes.
            ("", ["", "", ""], true),
            ("total", ["", "", ""], true),
            // Typing the suggestion, all of it, into the line after, past what is written.
            ("su", ["", "sum(items)", ""], true),
            ("sum(items)", ["", "sum(items)", "\n    return"], true),
            (
                "sum(items)\n    ret",
                ["", "sum(items)", "\n    return"],
                true,
            ),
            (
                "sum(items)\n    return total",
                ["", "sum(items)", "\n    return"],
                true,
            ),
            // Past the suggestion with something else, or into a line the model did not write.
            ("len(", ["", "sum(items)", ""], false),
            ("sum(x", ["", "sum(items)", "\n    return"], false),
            ("sum(items) ", ["", "sum(items)", "\n    return"], false),
            (
                "sum(items)\n    print",
                ["", "sum(items)", "\n    return"],
                false,
            ),
            // A prefetch: the suggestion it follows first, accepted or typed.
            ("", ["sum(items)", "", ""], true),
            ("sum(", ["sum(items)", "", ""], true),
            (
                "sum(items)\n    re",
                ["sum(items)", "\n    return", ""],
                true,
            ),
            ("len(", ["sum(items)", "\n    return", ""], false),
            (
                "sum(items)\n    pr",
                ["sum(items)", "\n    return", ""],
                false,
            ),
            // Bytes, not characters: a character cut short disagrees only where it differs.
            ("é", ["", "é = 1", ""], true),
            ("è", ["", "é = 1", ""], false),
        ];
        for (typed, expected, want) in cases {
            assert_eq!(
                agrees(typed.bytes(), expected),
                want,
                "{typed:?} along {expected:?}"
            );
        }
    }
}
