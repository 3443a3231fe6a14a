//! Answers that are too big or never end (`Fault::Huge`, `Fault::Endless`, `Fault::Trickle`),
//! in each wire's own format: the body is written piece by piece as the client reads it, so
//! the double never holds it whole, and stops as soon as the client leaves. It must not
//! decide when to use them (that is `serve`).

use std::time::Duration;

use super::http::{Conn, Outcome, http_chunk, response_head};
use super::request::RecordedRequest;
use super::wire::{self, Finish, Usage};

/// The filler written at a time.
const PIECE_BYTES: usize = 64 * 1024;
/// Stands for the answer text in a rendered body, to split it around the filler.
const MARKER: &str = "@@FILLER@@";
/// Content events batched into one HTTP chunk by an endless stream.
const EVENTS_PER_WRITE: usize = 64;

/// The whole (non-streamed) body split around its text: (before, after).
fn body_around_text(request: &RecordedRequest, usage: Usage) -> (String, String) {
    let body = wire::full_body(request, MARKER, usage).to_string();
    match body.split_once(MARKER) {
        Some((before, after)) => (before.to_owned(), after.to_owned()),
        None => (body, String::new()),
    }
}

fn content_type(request: &RecordedRequest, streaming: bool) -> &'static str {
    if streaming {
        wire::stream_events(
            request,
            &[String::new()],
            Usage::estimate(request, "", Finish::Stop),
        )
        .content_type
    } else {
        "application/json"
    }
}

/// Sends each event of `events` as its own HTTP chunk; false when the client left.
async fn send_events(conn: &mut Conn, events: &[String]) -> bool {
    for event in events {
        if !conn.send(&http_chunk(event)).await {
            return false;
        }
    }
    true
}

/// A well-formed answer of about `bytes` bytes whose text is filler.
pub(super) async fn huge(
    conn: &mut Conn,
    request: &RecordedRequest,
    usage: Usage,
    streaming: bool,
    bytes: usize,
) -> Outcome {
    let filler = "a".repeat(PIECE_BYTES);
    if !streaming {
        let (before, after) = body_around_text(request, usage);
        let total = bytes.max(before.len() + after.len());
        let head = response_head(200, "application/json", Some(total), None);
        if !conn.send(head.as_bytes()).await || !conn.send(before.as_bytes()).await {
            return Outcome::Aborted;
        }
        let mut left = total - before.len() - after.len();
        while left > 0 {
            let n = left.min(PIECE_BYTES);
            if !conn.send(&filler.as_bytes()[..n]).await {
                return Outcome::Aborted;
            }
            left -= n;
        }
        return conn.finish(after.as_bytes()).await;
    }
    let events = wire::stream_events(request, &[filler], usage);
    let head = response_head(200, events.content_type, None, None);
    if !conn.send(head.as_bytes()).await || !send_events(conn, &events.preamble).await {
        return Outcome::Aborted;
    }
    let piece = http_chunk(&events.content[0]);
    for _ in 0..bytes.div_ceil(piece.len()) {
        if !conn.send(&piece).await {
            return Outcome::Aborted;
        }
    }
    if !send_events(conn, &events.epilogue).await {
        return Outcome::Aborted;
    }
    conn.finish(b"0\r\n\r\n").await
}

/// An answer that never ends, until the client leaves: written as fast as the client reads
/// when `every` is zero, otherwise one small piece (an event, a byte of text) every `every`.
pub(super) async fn endless(
    conn: &mut Conn,
    request: &RecordedRequest,
    usage: Usage,
    streaming: bool,
    every: Duration,
) -> Outcome {
    let head = response_head(200, content_type(request, streaming), None, None);
    if !conn.send(head.as_bytes()).await {
        return Outcome::Aborted;
    }
    let flood = every.is_zero();
    let piece = if streaming {
        let events = wire::stream_events(request, &["tok ".to_owned()], usage);
        if !send_events(conn, &events.preamble).await {
            return Outcome::Aborted;
        }
        let batch = if flood { EVENTS_PER_WRITE } else { 1 };
        http_chunk(&events.content[0].repeat(batch))
    } else {
        let (before, _) = body_around_text(request, usage);
        if !conn.send(&http_chunk(&before)).await {
            return Outcome::Aborted;
        }
        http_chunk(&"a".repeat(if flood { PIECE_BYTES } else { 1 }))
    };
    loop {
        if !conn.pause(every).await || !conn.send(&piece).await {
            return Outcome::Aborted;
        }
    }
}
