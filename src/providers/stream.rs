//! Streamed chat answers: incremental decoders for server-sent events (OpenAI-compatible,
//! Anthropic) and newline-delimited JSON (Ollama), and [`read_chat`], the one loop that pulls
//! a response body through a provider's [`ChatWire`].
//!
//! The decoders are sans-I/O: bytes in, whole events out, for any chunking of the body (an
//! event, a line, a CRLF pair or a UTF-8 sequence may be split across network reads). They
//! never see an API key. [`read_chat`] owns the stream's failure modes: a body that stops
//! arriving (idle limit), breaks off (reset), carries an error or garbage part-way, or grows
//! past [`MAX_ANSWER_BYTES`] (an answer that never ends).

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{
    Cut, MAX_ANSWER_BYTES, ModelAnswer, PromptRead, ProviderError, one_line, root_cause, too_large,
};
use crate::config::ModelConfig;

/// A longer line than this is not a stream we understand (it guards memory, not correctness).
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
/// The longest a stream may go without a single byte, whatever the model's `timeout_ms`.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// How long to wait for the end of a body after its last event, so that the connection
/// returns to the pool instead of being dropped.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Splits bytes into lines ended by LF, CRLF or a lone CR (as SSE allows), across chunks.
#[derive(Debug, Default)]
struct LineSplitter {
    partial: Vec<u8>,
    /// The last chunk ended with CR: a LF opening the next chunk belongs to it.
    after_cr: bool,
}

impl LineSplitter {
    fn push(
        &mut self,
        bytes: &[u8],
        mut line: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            self.after_cr = false;
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            if self.partial.is_empty() {
                line(&rest[..end])?;
            } else {
                self.partial.extend_from_slice(&rest[..end]);
                line(&self.partial)?;
                self.partial.clear();
            }
            let cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.partial.len() + rest.len() > MAX_LINE_BYTES {
            return Err(format!("a line longer than {MAX_LINE_BYTES} bytes"));
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// The end of the body: a last line without its line break still counts.
    fn finish(&mut self, mut line: impl FnMut(&[u8]) -> Result<(), String>) -> Result<(), String> {
        self.after_cr = false;
        if self.partial.is_empty() {
            return Ok(());
        }
        let last = std::mem::take(&mut self.partial);
        line(&last)
    }
}

/// One server-sent event: its `event:` name (empty when absent) and its `data:` lines joined
/// with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// An incremental SSE decoder (the WHATWG event-stream rules): comments (`:` lines) and
/// keep-alives are skipped, multi-line `data:` is joined, `id`/`retry` are ignored, and an
/// event without data is not dispatched. At the end of the body an event that lacks its
/// closing blank line is still delivered (some servers omit it).
#[derive(Debug, Default)]
pub(super) struct SseDecoder {
    lines: LineSplitter,
    fields: SseFields,
}

#[derive(Debug, Default)]
struct SseFields {
    event: String,
    data: String,
    has_data: bool,
    started: bool,
    /// The first line that is no SSE field at all, to say what a garbage body looked like.
    stray: Option<String>,
    ready: Vec<SseEvent>,
}

impl SseFields {
    fn line(&mut self, raw: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(raw);
        let mut text: &str = &text;
        if !self.started {
            self.started = true;
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        if text.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if text.starts_with(':') {
            return Ok(());
        }
        let (name, value) = match text.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (text, ""),
        };
        match name {
            "data" => {
                if self.data.len() + value.len() > MAX_LINE_BYTES {
                    return Err(format!("an event longer than {MAX_LINE_BYTES} bytes"));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            "id" | "retry" => {}
            _ => {
                if self.stray.is_none() {
                    self.stray = Some(one_line(text));
                }
            }
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        if self.has_data {
            self.has_data = false;
            self.ready.push(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
    }
}

impl SseDecoder {
    /// The events completed by `bytes`.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        let SseDecoder { lines, fields } = self;
        lines.push(bytes, |line| fields.line(line))?;
        Ok(std::mem::take(&mut fields.ready))
    }

    /// The end of the body: whatever event was still open.
    pub fn finish(&mut self) -> Result<Vec<SseEvent>, String> {
        let SseDecoder { lines, fields } = self;
        lines.finish(|line| fields.line(line))?;
        fields.dispatch();
        Ok(std::mem::take(&mut fields.ready))
    }

    /// Why a body with no events is not an event stream, for the error message.
    pub fn not_a_stream(&self) -> String {
        match &self.fields.stray {
            Some(line) => format!("not an event stream: {line}"),
            None => "an empty event stream".into(),
        }
    }
}

/// An incremental NDJSON decoder: one JSON text per line; blank lines are skipped.
#[derive(Debug, Default)]
pub(super) struct NdjsonDecoder {
    lines: LineSplitter,
    ready: Vec<String>,
}

impl NdjsonDecoder {
    /// The lines completed by `bytes`.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let NdjsonDecoder { lines, ready } = self;
        lines.push(bytes, |line| {
            keep_line(ready, line);
            Ok(())
        })?;
        Ok(std::mem::take(ready))
    }

    /// The end of the body: a last line without its line break.
    pub fn finish(&mut self) -> Result<Vec<String>, String> {
        let NdjsonDecoder { lines, ready } = self;
        lines.finish(|line| {
            keep_line(ready, line);
            Ok(())
        })?;
        Ok(std::mem::take(ready))
    }
}

fn keep_line(ready: &mut Vec<String>, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if !text.is_empty() {
        ready.push(text.to_string());
    }
}

/// Why a stream could not be read to a complete answer, before it is tied to a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WireError {
    /// The bytes are not the provider's format.
    Malformed(String),
    /// The model reported an error inside the stream; `status` when it names an HTTP status
    /// (Anthropic's `overloaded_error` is 529).
    Model {
        status: Option<u16>,
        message: String,
    },
    /// The body ended before the answer's last event.
    Truncated,
}

/// One provider's streamed chat format: bytes in, text pieces out through `text`.
pub(super) trait ChatWire: Send {
    /// Decodes the next bytes of the body, passing each text piece to `text` in order.
    fn feed(&mut self, bytes: &[u8], text: &mut dyn FnMut(&str)) -> Result<(), WireError>;
    /// The body ended: decodes what was left, and says whether the answer was complete.
    fn finish(&mut self, text: &mut dyn FnMut(&str)) -> Result<(), WireError>;
    /// The answer's last event has arrived (nothing after it matters).
    fn is_done(&self) -> bool;
    /// Tokens in and out, when the provider reported them.
    fn usage(&self) -> (Option<u64>, Option<u64>);
    /// The provider said the answer stopped at the output-token limit.
    fn cut_at_limit(&self) -> bool;
    /// What the server said of reading the prompt.
    fn prompt_read(&self) -> Option<PromptRead> {
        None
    }
}

/// One provider's SSE answer format, event by event; [`SseWire`] feeds it the events and
/// judges the end of the body.
pub(super) trait SseAnswer: Send {
    /// One event (its `event:` name and `data:`), passing its text pieces to `text`.
    fn event(
        &mut self,
        name: &str,
        data: &str,
        text: &mut dyn FnMut(&str),
    ) -> Result<(), WireError>;
    /// The answer's last event has arrived (nothing after it matters).
    fn is_done(&self) -> bool;
    /// The answer is whole if the body ends now (its last event, or a stop reason, seen).
    fn is_complete(&self) -> bool {
        self.is_done()
    }
    /// Tokens in and out, when the provider reported them.
    fn usage(&self) -> (Option<u64>, Option<u64>);
    /// The provider said the answer stopped at the output-token limit.
    fn cut_at_limit(&self) -> bool;
    /// What the server said of reading the prompt.
    fn prompt_read(&self) -> Option<PromptRead> {
        None
    }
    /// A whole answer, one JSON object, where a stream was asked for: what a proxy or a
    /// server that does not stream sends. Its text pieces go to `text`. By default it reads
    /// as one event (the formats whose events carry the whole answer's fields).
    fn whole(&mut self, body: &str, text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        self.event("", body, text)
    }
}

/// The [`ChatWire`] of an SSE answer format: decodes the events and hands them over until
/// the answer's last one; an incomplete answer at the end of the body is an error. A body
/// with no event that is one JSON object is read as the whole answer ([`SseAnswer::whole`]).
#[derive(Debug, Default)]
pub(super) struct SseWire<A> {
    sse: SseDecoder,
    events: usize,
    /// The body as it came, until its first event (then the body is a stream).
    before_events: Vec<u8>,
    answer: A,
}

impl<A: SseAnswer> SseWire<A> {
    fn events(
        &mut self,
        events: Vec<SseEvent>,
        text: &mut dyn FnMut(&str),
    ) -> Result<(), WireError> {
        for event in events {
            if self.answer.is_done() {
                break;
            }
            self.events += 1;
            self.answer.event(&event.event, &event.data, text)?;
        }
        Ok(())
    }
}

impl<A: SseAnswer> ChatWire for SseWire<A> {
    fn feed(&mut self, bytes: &[u8], text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        if self.events == 0 {
            self.before_events.extend_from_slice(bytes);
        }
        let events = self.sse.push(bytes).map_err(WireError::Malformed)?;
        self.events(events, text)?;
        if self.events > 0 && !self.before_events.is_empty() {
            self.before_events = Vec::new();
        }
        Ok(())
    }

    fn finish(&mut self, text: &mut dyn FnMut(&str)) -> Result<(), WireError> {
        let events = self.sse.finish().map_err(WireError::Malformed)?;
        self.events(events, text)?;
        if self.answer.is_complete() {
            Ok(())
        } else if self.events > 0 {
            Err(WireError::Truncated)
        } else if let Some(body) = json_object(&self.before_events) {
            let mut gave_text = false;
            self.answer.whole(body, &mut |piece| {
                gave_text = true;
                text(piece)
            })?;
            if self.answer.is_complete() || gave_text {
                Ok(())
            } else {
                Err(WireError::Malformed(format!(
                    "neither an event stream nor an answer: {}",
                    one_line(body)
                )))
            }
        } else {
            Err(WireError::Malformed(self.sse.not_a_stream()))
        }
    }

    fn is_done(&self) -> bool {
        self.answer.is_done()
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        self.answer.usage()
    }

    fn cut_at_limit(&self) -> bool {
        self.answer.cut_at_limit()
    }

    fn prompt_read(&self) -> Option<PromptRead> {
        self.answer.prompt_read()
    }
}

/// `body` when it is one JSON object (a whole answer sent where a stream was asked for).
fn json_object(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).trim();
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .filter(serde_json::Value::is_object)
        .map(|_| text)
}

/// The text received so far, and when its first piece came.
struct Received<'a> {
    text: String,
    chars: usize,
    first_token: Option<Duration>,
    started: Instant,
    on_text: &'a mut (dyn FnMut(&str) + Send),
}

impl Received<'_> {
    fn piece(&mut self, piece: &str) {
        if piece.is_empty() {
            return;
        }
        if self.first_token.is_none() {
            self.first_token = Some(self.started.elapsed());
        }
        self.text.push_str(piece);
        self.chars += piece.chars().count();
        (self.on_text)(piece);
    }
}

/// The JSON of one event's data (`name` when the event has one, for the message).
pub(super) fn event_json(name: &str, data: &str) -> Result<serde_json::Value, WireError> {
    serde_json::from_str(data.trim()).map_err(|e| {
        let event = if name.is_empty() {
            "event".to_owned()
        } else {
            format!("{name:?} event")
        };
        WireError::Malformed(format!("bad {event} ({e}): {}", one_line(data)))
    })
}

/// How long a stream may go without a byte once text has arrived: the model's whole
/// timeout, at most [`MAX_IDLE`] (a model writing never pauses that long between tokens).
pub(super) fn idle_limit(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms).min(MAX_IDLE)
}

/// The times a streamed call keeps: when it began (for the time to its first token), when a
/// call that has sent no text yet times out — until its first word a model may be silent
/// (a local model on a CPU reads a long prompt first, sending nothing, or only
/// llama-server's empty first event) — and what a stream gone quiet after some text means.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub started: Instant,
    pub begin_by: Instant,
    pub quiet: Quiet,
}

impl Clock {
    /// The failure of a call to `url` that sent no text by [`Clock::begin_by`].
    pub(super) fn timed_out(&self, url: &str) -> ProviderError {
        ProviderError::Timeout {
            url: url.to_string(),
            ms: self
                .begin_by
                .saturating_duration_since(self.started)
                .as_millis() as u64,
        }
    }
}

/// What a stream that goes quiet for [`idle_limit`] after some text means to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quiet {
    /// A failure: the text so far is dropped (a completion asks again at the next pause).
    Fails,
    /// The end of the answer: the text so far is kept, marked [`Cut::Stalled`] (half an
    /// explanation is worth reading).
    EndsTheAnswer,
}

/// Reads a streamed chat body through `wire`, passing text pieces to `on_text` as they
/// arrive, the first word by `clock.begin_by`; after the first word each wait for bytes is
/// bounded by [`idle_limit`], and `clock.quiet` says what running out of it means. The
/// caller bounds the whole call.
pub(super) async fn read_chat(
    url: &str,
    model: &ModelConfig,
    response: reqwest::Response,
    wire: &mut dyn ChatWire,
    clock: Clock,
    on_text: &mut (dyn FnMut(&str) + Send),
) -> Result<ModelAnswer, ProviderError> {
    let Clock {
        started,
        begin_by,
        quiet,
    } = clock;
    let idle = idle_limit(model.timeout_ms);
    let begin_by = tokio::time::Instant::from_std(begin_by);
    let mut body = response.bytes_stream();
    let mut got = Received {
        text: String::new(),
        chars: 0,
        first_token: None,
        started,
        on_text,
    };
    let mut read = 0usize;
    loop {
        let next = if got.chars == 0 {
            tokio::time::timeout_at(begin_by, body.next()).await
        } else {
            tokio::time::timeout(idle, body.next()).await
        };
        let bytes = match next {
            Err(_) if got.chars == 0 => return Err(clock.timed_out(url)),
            Err(_) if quiet == Quiet::EndsTheAnswer => {
                let (tokens_in, tokens_out) = wire.usage();
                return Ok(ModelAnswer {
                    text: got.text,
                    tokens_in,
                    tokens_out,
                    first_token: got.first_token,
                    cut: Some(Cut::Stalled {
                        ms: idle.as_millis() as u64,
                    }),
                    prompt_read: wire.prompt_read(),
                });
            }
            Err(_) => {
                return Err(stream_error(
                    url,
                    format!("stalled: no data for {} ms", idle.as_millis()),
                    got.chars,
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) if e.is_timeout() => {
                return Err(ProviderError::Timeout {
                    url: url.to_string(),
                    ms: model.timeout_ms,
                });
            }
            Ok(Some(Err(e))) => {
                return Err(stream_error(url, one_line(&root_cause(&e)), got.chars));
            }
            Ok(Some(Ok(bytes))) => bytes,
        };
        read += bytes.len();
        if read > MAX_ANSWER_BYTES {
            return Err(wire_error(
                url,
                WireError::Malformed(too_large()),
                got.chars,
            ));
        }
        wire.feed(&bytes, &mut |piece| got.piece(piece))
            .map_err(|e| wire_error(url, e, got.chars))?;
        if wire.is_done() {
            // Read the body's end so the connection goes back to the pool; a server that
            // keeps it open past its last event only loses that connection.
            let _ = tokio::time::timeout(DRAIN_LIMIT, async {
                while let Some(Ok(_)) = body.next().await {}
            })
            .await;
            break;
        }
    }
    if !wire.is_done() {
        wire.finish(&mut |piece| got.piece(piece))
            .map_err(|e| wire_error(url, e, got.chars))?;
    }
    let (tokens_in, tokens_out) = wire.usage();
    Ok(ModelAnswer {
        text: got.text,
        tokens_in,
        tokens_out,
        first_token: got.first_token,
        cut: wire.cut_at_limit().then_some(Cut::TokenLimit),
        prompt_read: wire.prompt_read(),
    })
}

fn stream_error(url: &str, detail: String, partial_chars: usize) -> ProviderError {
    ProviderError::Stream {
        url: url.to_string(),
        detail,
        partial_chars,
    }
}

/// A decoding failure as the caller sees it: garbage before any text is `Malformed`, after
/// some text a broken `Stream`; an in-band error naming a status is `Status`.
fn wire_error(url: &str, error: WireError, partial_chars: usize) -> ProviderError {
    match error {
        WireError::Malformed(detail) if partial_chars == 0 => ProviderError::Malformed {
            url: url.to_string(),
            detail,
        },
        WireError::Malformed(detail) => stream_error(url, detail, partial_chars),
        WireError::Model {
            status: Some(status),
            message,
        } => ProviderError::Status {
            url: url.to_string(),
            status,
            retry_after: None,
            message: if partial_chars == 0 {
                format!("{message} (in the stream)")
            } else {
                format!("{message} (in the stream, after {partial_chars} characters)")
            },
        },
        WireError::Model {
            status: None,
            message,
        } => stream_error(url, format!("model error: {message}"), partial_chars),
        WireError::Truncated => stream_error(
            url,
            "the stream ended before the answer was complete".into(),
            partial_chars,
        ),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Feeds `body` to `push` in every two-piece split, and byte by byte, and checks each
    /// gives the same result as feeding it whole.
    pub(crate) fn every_split<T: PartialEq + std::fmt::Debug, D: Default>(
        body: &[u8],
        mut push: impl FnMut(&mut D, &[u8]) -> Vec<T>,
        mut finish: impl FnMut(&mut D) -> Vec<T>,
    ) -> Vec<T> {
        let mut whole = D::default();
        let mut expected = push(&mut whole, body);
        expected.extend(finish(&mut whole));
        for cut in 0..=body.len() {
            let mut d = D::default();
            let mut got = push(&mut d, &body[..cut]);
            got.extend(push(&mut d, &body[cut..]));
            got.extend(finish(&mut d));
            assert_eq!(got, expected, "split at byte {cut}");
        }
        let mut d = D::default();
        let mut got: Vec<T> = body.iter().flat_map(|b| push(&mut d, &[*b])).collect();
        got.extend(finish(&mut d));
        assert_eq!(got, expected, "byte by byte");
        expected
    }

    /// What a whole body yields through a fresh wire: its pieces (checked to be the same in
    /// every chunking), how it ended, and the usage it reported.
    #[derive(Debug)]
    pub(crate) struct WireRun {
        pub pieces: Vec<String>,
        pub result: Result<(), WireError>,
        pub usage: (Option<u64>, Option<u64>),
        pub cut_at_limit: bool,
    }

    pub(crate) fn run_wire<W: ChatWire + Default>(body: &str) -> WireRun {
        let pieces = every_split(
            body.as_bytes(),
            |w: &mut W, b| {
                let mut out = Vec::new();
                let _ = w.feed(b, &mut |p| out.push(p.to_string()));
                out
            },
            |w| {
                let mut out = Vec::new();
                if !w.is_done() {
                    let _ = w.finish(&mut |p| out.push(p.to_string()));
                }
                out
            },
        );
        let mut w = W::default();
        let mut ignore = |_: &str| {};
        let mut result = w.feed(body.as_bytes(), &mut ignore);
        if result.is_ok() && !w.is_done() {
            result = w.finish(&mut ignore);
        }
        WireRun {
            pieces,
            result,
            usage: w.usage(),
            cut_at_limit: w.cut_at_limit(),
        }
    }

    fn sse(body: &str) -> Vec<SseEvent> {
        every_split(
            body.as_bytes(),
            |d: &mut SseDecoder, b| d.push(b).unwrap(),
            |d| d.finish().unwrap(),
        )
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn sse_events_survive_any_chunking() {
        let body = "\u{feff}: keep-alive\n\nevent: message_start\ndata: {\"a\":1}\n\n\
                    data: first\ndata:second\nid: 7\nretry: 10\n\n\
                    : comment\n\ndata: é€😀\n\n";
        assert_eq!(
            sse(body),
            vec![
                ev("message_start", "{\"a\":1}"),
                ev("", "first\nsecond"),
                ev("", "é€😀")
            ]
        );
    }

    #[test]
    fn sse_line_endings_crlf_cr_and_lf() {
        let want = vec![ev("ping", "x"), ev("", "y\nz")];
        assert_eq!(
            sse("event: ping\r\ndata: x\r\n\r\ndata: y\r\ndata: z\r\n\r\n"),
            want
        );
        assert_eq!(sse("event: ping\rdata: x\r\rdata: y\rdata: z\r\r"), want);
        assert_eq!(
            sse("event: ping\ndata: x\n\ndata: y\r\ndata: z\r\r\n"),
            want
        );
    }

    #[test]
    fn sse_edge_cases() {
        // An event name without data is not dispatched, and does not leak into the next.
        assert_eq!(sse("event: a\n\ndata: b\n\n"), vec![ev("", "b")]);
        // The last event may lack its blank line; only one leading space is stripped.
        assert_eq!(sse("data:  two spaces"), vec![ev("", " two spaces")]);
        // Empty data lines count.
        assert_eq!(sse("data\ndata:\n\n"), vec![ev("", "\n")]);
        assert_eq!(sse(""), vec![]);
        let mut d = SseDecoder::default();
        assert!(
            d.push(b"<html>502 Bad Gateway\xff</html>\n")
                .unwrap()
                .is_empty()
        );
        assert!(d.finish().unwrap().is_empty());
        assert!(
            d.not_a_stream()
                .starts_with("not an event stream: <html>502")
        );
        assert_eq!(
            SseDecoder::default().not_a_stream(),
            "an empty event stream"
        );
    }

    #[test]
    fn sse_refuses_endless_lines() {
        let mut d = SseDecoder::default();
        let chunk = vec![b'x'; 1024 * 1024];
        let result = (0..9).try_for_each(|_| d.push(&chunk).map(drop));
        assert!(result.unwrap_err().contains("longer than"));
    }

    #[test]
    fn ndjson_lines_survive_any_chunking() {
        let body = "{\"a\":\"é\"}\r\n\n  \n{\"b\":2}\n{\"c\":3}";
        let lines = every_split(
            body.as_bytes(),
            |d: &mut NdjsonDecoder, b| d.push(b).unwrap(),
            |d| d.finish().unwrap(),
        );
        assert_eq!(lines, vec!["{\"a\":\"é\"}", "{\"b\":2}", "{\"c\":3}"]);
    }

    /// A server or proxy that answers a streamed request with one JSON object: the whole
    /// answer, in each provider's format, reads as its text, usage and ending.
    #[test]
    fn a_whole_answer_where_a_stream_was_asked_for() {
        use super::super::{anthropic, llamacpp, ollama, openai};
        let openai = run_wire::<SseWire<openai::ChatStream>>;
        let anthropic = run_wire::<SseWire<anthropic::ChatStream>>;
        let infill = run_wire::<SseWire<llamacpp::InfillStream>>;
        let ollama = run_wire::<ollama::ChatStream>;
        let overloaded = || WireError::Model {
            status: Some(529),
            message: "Overloaded".into(),
        };
        /// Name, wire, body; then the pieces, the ending, the usage and the cut it gives.
        type Row = (
            &'static str,
            fn(&str) -> WireRun,
            &'static str,
            &'static [&'static str],
            Result<(), WireError>,
            (Option<u64>, Option<u64>),
            bool,
        );
        let rows: [Row; 10] = [
            (
                "OpenAI chat",
                openai,
                r#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"fn main() {}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#,
                &["fn main() {}"],
                Ok(()),
                (Some(12), Some(5)),
                false,
            ),
            (
                "OpenAI completions, cut at max_tokens",
                openai,
                r#"{"choices":[{"text":"x = 1","finish_reason":"length"}]}"#,
                &["x = 1"],
                Ok(()),
                (None, None),
                true,
            ),
            (
                "pretty-printed, after a byte-order mark",
                openai,
                "\u{feff}{\r\n  \"choices\": [\r\n    {\"text\": \"a 😀\", \"finish_reason\": \"stop\"}\r\n  ]\r\n}\r\n",
                &["a 😀"],
                Ok(()),
                (None, None),
                false,
            ),
            (
                "an error object",
                openai,
                r#"{"error":{"message":"Overloaded","code":529}}"#,
                &[],
                Err(overloaded()),
                (None, None),
                false,
            ),
            (
                "JSON that is no answer",
                openai,
                r#"{"status":"ok"}"#,
                &[],
                Err(WireError::Malformed(
                    r#"neither an event stream nor an answer: {"status":"ok"}"#.into(),
                )),
                (None, None),
                false,
            ),
            (
                "a JSON array",
                openai,
                r#"[{"text":"a"}]"#,
                &[],
                Err(WireError::Malformed(
                    r#"not an event stream: [{"text":"a"}]"#.into(),
                )),
                (None, None),
                false,
            ),
            (
                "llama.cpp /infill",
                infill,
                r#"{"content":"    return a + b","stop":true,"tokens_evaluated":40,"tokens_predicted":7}"#,
                &["    return a + b"],
                Ok(()),
                (Some(40), Some(7)),
                false,
            ),
            (
                "Anthropic message",
                anthropic,
                r#"{"type":"message","role":"assistant","content":[{"type":"text","text":"Explains "},{"type":"tool_use","id":"t","name":"n","input":{}},{"type":"text","text":"it."}],"stop_reason":"max_tokens","usage":{"input_tokens":30,"output_tokens":2}}"#,
                &["Explains ", "it."],
                Ok(()),
                (Some(30), Some(2)),
                true,
            ),
            (
                "Anthropic error",
                anthropic,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &[],
                Err(overloaded()),
                (None, None),
                false,
            ),
            (
                "Ollama, not streamed",
                ollama,
                r#"{"message":{"role":"assistant","content":"ok"},"done":true,"done_reason":"stop","prompt_eval_count":9,"eval_count":1}"#,
                &["ok"],
                Ok(()),
                (Some(9), Some(1)),
                false,
            ),
        ];
        for (name, run, body, pieces, result, usage, cut_at_limit) in rows {
            let got = run(body);
            assert_eq!(got.pieces, pieces, "{name}");
            assert_eq!(got.result, result, "{name}");
            assert_eq!(got.usage, usage, "{name}");
            assert_eq!(got.cut_at_limit, cut_at_limit, "{name}");
        }
    }

    #[test]
    fn idle_limit_is_the_timeout_capped_at_thirty_seconds() {
        assert_eq!(idle_limit(500), Duration::from_millis(500));
        assert_eq!(idle_limit(120_000), Duration::from_secs(30));
    }

    #[test]
    fn wire_errors_map_to_what_the_caller_needs() {
        let url = "http://h/v1/messages";
        assert!(matches!(
            wire_error(url, WireError::Malformed("x".into()), 0),
            ProviderError::Malformed { .. }
        ));
        assert!(matches!(
            wire_error(url, WireError::Malformed("x".into()), 3),
            ProviderError::Stream {
                partial_chars: 3,
                ..
            }
        ));
        let overloaded = WireError::Model {
            status: Some(529),
            message: "Overloaded".into(),
        };
        match wire_error(url, overloaded, 5) {
            ProviderError::Status {
                status, message, ..
            } => {
                assert_eq!(status, 529);
                assert_eq!(message, "Overloaded (in the stream, after 5 characters)");
            }
            other => panic!("{other:?}"),
        }
        let e = wire_error(url, WireError::Truncated, 2);
        assert!(e.to_string().contains("after 2 characters"), "{e}");
    }
}
