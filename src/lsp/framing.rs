//! A guard between stdin and tower-lsp's reader. tower-lsp 0.23 ends its read loop at the
//! first message it cannot decode (tokio-util's `FramedRead` yields nothing more after a
//! decoder error), so one bad frame from the editor — a body that is not UTF-8, not JSON, or
//! not a JSON-RPC message, or broken headers — would end the whole session.
//!
//! The guard reads the frames itself and passes the good ones on unchanged. Each unreadable
//! one is replaced by a request for [`UNREADABLE_METHOD`] with a null id, which
//! `conformance` answers with a JSON-RPC error (`-32700` or `-32600`, id null, as JSON-RPC
//! prescribes for a message whose id cannot be known); the session goes on. No other logic
//! lives here.
//!
//! A wrong `Content-Length` costs that message only: the reader finds the framing again at
//! the next `Content-Length` header, whether it follows junk on the same line (the length was
//! too short), sits inside a body that does not parse (too long), or lies past a body too big
//! to read.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tower_lsp_server::jsonrpc::Id;

/// The method that stands for an unreadable message. Not part of any protocol.
pub(super) const UNREADABLE_METHOD: &str = "pilotfish/unreadableMessage";
/// Bodies larger than this are not read (and answered with an error).
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;
/// Header lines longer than this are not headers.
const MAX_HEADER_LINE: usize = 8 * 1024;
/// How many bytes the pipe to tower-lsp buffers.
const PIPE_BYTES: usize = 64 * 1024;
/// The one header that matters, matched case-insensitively.
const CONTENT_LENGTH: &[u8] = b"content-length:";

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;

/// A message the guard does not pass on, as the params of the [`UNREADABLE_METHOD`] request
/// that stands for it: the error to answer it with.
#[derive(Debug, serde::Serialize, Deserialize)]
pub(super) struct Unreadable {
    /// `-32700` (parse error) or `-32600` (invalid request).
    pub code: i64,
    pub message: String,
}

/// Starts the guard on `input`; returns the stream tower-lsp should read instead.
pub(super) fn guard(input: impl AsyncRead + Unpin + Send + 'static) -> impl AsyncRead {
    let (mut to_server, from_guard) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(async move {
        let mut reader = FrameReader::new(input);
        loop {
            let body = match reader.next_message().await {
                Ok(Some(Ok(body))) => body,
                Ok(Some(Err(refused))) => {
                    tracing::warn!("{}", refused.message);
                    refused.replacement()
                }
                // EOF or a broken stdin: dropping the pipe ends the session, as EOF should.
                Ok(None) | Err(_) => break,
            };
            let header = format!("Content-Length: {}\r\n\r\n", body.len());
            let written = async {
                to_server.write_all(header.as_bytes()).await?;
                to_server.write_all(&body).await?;
                to_server.flush().await
            };
            if written.await.is_err() {
                break; // The server stopped reading: it is exiting.
            }
        }
    });
    from_guard
}

/// What one frame held: a body, or why there is none to pass on.
enum Frame {
    Body(Vec<u8>),
    Bad(String),
}

impl Unreadable {
    fn new(code: i64, message: String) -> Unreadable {
        Unreadable { code, message }
    }

    /// A request with a null id that stands for the unreadable message.
    fn replacement(&self) -> Vec<u8> {
        let request = json!({
            "jsonrpc": "2.0",
            "id": null,
            "method": UNREADABLE_METHOD,
            "params": self,
        });
        serde_json::to_vec(&request).unwrap_or_default()
    }
}

/// Where `needle` (lowercase ASCII) starts in `haystack`, ignoring ASCII case.
fn find_ignoring_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

/// Reads LSP frames from a byte stream, keeping what it read ahead, so that it can find the
/// framing again after a broken frame.
struct FrameReader<R> {
    input: R,
    /// Bytes read but not consumed.
    buf: Vec<u8>,
    /// After a body too big to read: skip lines until the next `Content-Length` header.
    resyncing: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(input: R) -> Self {
        FrameReader {
            input,
            buf: Vec::new(),
            resyncing: false,
        }
    }

    /// Reads more input; false at EOF.
    async fn fill(&mut self) -> std::io::Result<bool> {
        self.buf.reserve(PIPE_BYTES);
        Ok(self.input.read_buf(&mut self.buf).await? > 0)
    }

    /// The next message: a body tower-lsp can decode, or the error that stands for it.
    /// `None` at a clean EOF.
    async fn next_message(
        &mut self,
    ) -> std::io::Result<Option<std::result::Result<Vec<u8>, Unreadable>>> {
        let body = match self.read_frame().await? {
            None => return Ok(None),
            Some(Frame::Bad(why)) => {
                return Ok(Some(Err(Unreadable::new(
                    PARSE_ERROR,
                    format!("Parse error: {why}"),
                ))));
            }
            Some(Frame::Body(body)) => body,
        };
        let checked = check(&body);
        if let Err(refused) = &checked {
            // A Content-Length longer than its body swallows the next message's header:
            // read on from there.
            let next = find_ignoring_case(&body, CONTENT_LENGTH).filter(|&at| at > 0);
            if let (PARSE_ERROR, Some(at)) = (refused.code, next) {
                self.buf.splice(0..0, body[at..].iter().copied());
            }
        }
        Ok(Some(checked.map(|()| body)))
    }

    /// The next header line without its line break; `None` at EOF. A longer line than any
    /// header is junk: it is dropped, except a `Content-Length` header at its end.
    async fn header_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(end + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_HEADER_LINE {
                let keep_from = match find_ignoring_case(&self.buf, CONTENT_LENGTH) {
                    Some(at) if at > 0 => at,
                    _ => self.buf.len() - (CONTENT_LENGTH.len() - 1),
                };
                tracing::warn!("skipped {keep_from} bytes that are no message header");
                self.buf.drain(..keep_from);
            }
            if !self.fill().await? {
                return Ok((!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf)));
            }
        }
    }

    /// Reads one frame; `None` at a clean EOF. Headers are read leniently (any lines up to
    /// the blank line; only `Content-Length` matters, even after junk on its line), so that
    /// a broken header block costs one error, not the session.
    async fn read_frame(&mut self) -> std::io::Result<Option<Frame>> {
        let mut content_length: Option<std::result::Result<usize, String>> = None;
        let mut lines = 0;
        loop {
            let Some(line) = self.header_line().await? else {
                return Ok((lines > 0).then(|| Frame::Bad("EOF inside message headers".into())));
            };
            let header = find_ignoring_case(&line, CONTENT_LENGTH);
            if self.resyncing && header.is_none() {
                continue;
            }
            self.resyncing = false;
            if line.is_empty() {
                if lines == 0 {
                    continue; // A blank line between messages.
                }
                break;
            }
            lines += 1;
            if let Some(at) = header {
                if at > 0 {
                    tracing::warn!("skipped {at} bytes before a Content-Length header");
                }
                let value = String::from_utf8_lossy(&line[at + CONTENT_LENGTH.len()..]);
                let value = value.trim();
                content_length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad Content-Length {value:?}")),
                );
            }
        }
        let length = match content_length {
            Some(Ok(length)) => length,
            Some(Err(why)) => return Ok(Some(Frame::Bad(why))),
            None => return Ok(Some(Frame::Bad("a message without Content-Length".into()))),
        };
        if length > MAX_BODY_BYTES {
            // Not read: its bytes are skipped on the way to the next header.
            self.resyncing = true;
            return Ok(Some(Frame::Bad(format!(
                "a message of {length} bytes (the limit is {MAX_BODY_BYTES})"
            ))));
        }
        self.buf.reserve(length.saturating_sub(self.buf.len()));
        while self.buf.len() < length {
            if !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let rest = self.buf.split_off(length);
        Ok(Some(Frame::Body(std::mem::replace(&mut self.buf, rest))))
    }
}

/// What tower-lsp requires of a message, read without copying the parameters: it decodes
/// a message as a response or else a request (whose fields are all optional but these), so
/// a frame that fits this decodes. `method` and `id` are checked for their types only.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    #[serde(default, borrow, rename = "method")]
    _method: Cow<'a, str>,
    #[serde(default, rename = "params")]
    _params: Option<IgnoredAny>,
    #[serde(default, rename = "id")]
    _id: Option<Id>,
}

/// Whether tower-lsp can decode `body`, or the error it gets instead.
fn check(body: &[u8]) -> std::result::Result<(), Unreadable> {
    // An empty body is skipped by tower-lsp itself.
    if body.is_empty() {
        return Ok(());
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        Unreadable::new(
            PARSE_ERROR,
            format!("Parse error: the message is not UTF-8 ({e})"),
        )
    })?;
    match serde_json::from_str::<Envelope>(text) {
        Ok(envelope) if envelope.jsonrpc != "2.0" => Err(Unreadable::new(
            INVALID_REQUEST,
            format!(
                "Invalid request: JSON-RPC version {:?}, expected \"2.0\"",
                envelope.jsonrpc
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.is_data() => Err(Unreadable::new(
            INVALID_REQUEST,
            format!("Invalid request: not a JSON-RPC 2.0 message ({e})"),
        )),
        Err(e) => Err(Unreadable::new(
            PARSE_ERROR,
            format!("Parse error: the message is not JSON ({e})"),
        )),
    }
}

/// The fuzz check of the guard (see `crate::fuzzing`): `input` read whole and read in the
/// pieces `cuts` makes (1 to 256 bytes, in turn), as a pipe delivers it, gives the same
/// messages; every stand-in for an unreadable message is itself a message tower-lsp decodes;
/// reading ends. Panics otherwise; returns the messages: each body, or the error code that
/// stands for it (0 for an I/O error, which ends them).
#[cfg(any(fuzzing, test))]
pub(crate) fn check_any_chunking(
    input: &[u8],
    cuts: &[u8],
) -> Vec<std::result::Result<Vec<u8>, i64>> {
    let whole = read_all(input, input, &[]);
    let pieces = read_all(
        input,
        Pieces {
            data: input,
            cuts,
            turn: 0,
        },
        cuts,
    );
    assert_eq!(pieces, whole, "the same input in pieces");
    whole
}

/// What the guard makes of `reader` (whose bytes are `input`).
#[cfg(any(fuzzing, test))]
fn read_all(
    input: &[u8],
    reader: impl AsyncRead + Unpin,
    cuts: &[u8],
) -> Vec<std::result::Result<Vec<u8>, i64>> {
    use futures_util::FutureExt;
    let mut reader = FrameReader::new(reader);
    let mut out = Vec::new();
    loop {
        // Every message consumes at least a byte of its own.
        assert!(
            out.len() <= input.len() + 1,
            "more messages than bytes (cuts {cuts:?})"
        );
        let next = reader
            .next_message()
            .now_or_never()
            .expect("reading from memory never waits");
        match next {
            Ok(None) => return out,
            Ok(Some(Ok(body))) => out.push(Ok(body)),
            Ok(Some(Err(refused))) => {
                assert!(
                    check(&refused.replacement()).is_ok(),
                    "the stand-in for {refused:?} does not decode"
                );
                out.push(Err(refused.code));
            }
            Err(_) => {
                out.push(Err(0));
                return out;
            }
        }
    }
}

/// Input handed out in pieces of the sizes `cuts` gives, in turn (all of it when empty).
#[cfg(any(fuzzing, test))]
struct Pieces<'a> {
    data: &'a [u8],
    cuts: &'a [u8],
    turn: usize,
}

#[cfg(any(fuzzing, test))]
impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let size = match self.cuts.get(self.turn % self.cuts.len().max(1)) {
            Some(&cut) => usize::from(cut) + 1,
            None => self.data.len(),
        };
        self.turn += 1;
        let n = size.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the guard makes of `input`: each message's body, or its error code.
    async fn messages(input: &[u8]) -> Vec<std::result::Result<String, i64>> {
        let mut reader = FrameReader::new(input);
        let mut out = Vec::new();
        while let Some(message) = reader.next_message().await.unwrap() {
            out.push(
                message
                    .map(|body| String::from_utf8(body).unwrap())
                    .map_err(|refused| refused.code),
            );
        }
        out
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(body);
        out
    }

    const GOOD: &str = r#"{"jsonrpc":"2.0","id":1,"method":"shutdown"}"#;

    #[tokio::test]
    async fn good_frames_pass_and_bad_ones_become_errors() {
        let mut input = Vec::new();
        for body in [
            GOOD.as_bytes(),
            b"{not json",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}",
            b"[1,2]",
            br#"{"jsonrpc":"1.0","method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            GOOD.as_bytes(),
        ] {
            input.extend(framed(body));
        }
        input.extend_from_slice(b"Content-Length: x\r\n\r\n");
        input.extend_from_slice(b"garbage\r\n\r\n");
        assert_eq!(
            messages(&input).await,
            vec![
                Ok(GOOD.to_string()),
                Err(PARSE_ERROR),
                Err(PARSE_ERROR),
                Err(INVALID_REQUEST),
                Err(INVALID_REQUEST),
                Err(INVALID_REQUEST),
                Ok(r#"{"jsonrpc":"2.0","id":1,"result":null}"#.to_string()),
                Ok(GOOD.to_string()),
                Err(PARSE_ERROR),
                Err(PARSE_ERROR),
            ]
        );
    }

    /// A wrong Content-Length costs its own message only: the next one is read.
    #[tokio::test]
    async fn framing_is_found_again_after_a_wrong_content_length() {
        let cases: [(&str, Vec<u8>); 5] = [
            ("too short", {
                let mut bytes = format!("Content-Length: {}\r\n\r\n", GOOD.len() - 9).into_bytes();
                bytes.extend_from_slice(GOOD.as_bytes());
                bytes
            }),
            ("too long", {
                let mut bytes = format!("Content-Length: {}\r\n\r\n", GOOD.len() + 25).into_bytes();
                bytes.extend_from_slice(GOOD.as_bytes());
                bytes
            }),
            ("missing", {
                let mut bytes = b"Content-Type: application/json\r\n\r\n".to_vec();
                bytes.extend_from_slice(GOOD.as_bytes());
                bytes
            }),
            ("past the limit", {
                let mut bytes =
                    format!("Content-Length: {}\r\n\r\n", MAX_BODY_BYTES + 1).into_bytes();
                bytes.extend_from_slice(GOOD.as_bytes());
                bytes.extend_from_slice(b"\r\n\r\nmore\n\n");
                bytes
            }),
            ("a long junk line", {
                let mut bytes = vec![b'#'; 3 * MAX_HEADER_LINE + 5];
                bytes.extend_from_slice(b"\r\n\r\n");
                bytes
            }),
        ];
        for (what, bad) in cases {
            let mut input = framed(GOOD.as_bytes());
            input.extend(bad);
            input.extend(framed(br#"{"jsonrpc":"2.0","id":2,"method":"exit"}"#));
            let got = messages(&input).await;
            assert_eq!(got.len(), 3, "{what}: {got:?}");
            assert_eq!(got[0], Ok(GOOD.to_string()), "{what}");
            assert_eq!(got[1], Err(PARSE_ERROR), "{what}");
            assert_eq!(
                got[2],
                Ok(r#"{"jsonrpc":"2.0","id":2,"method":"exit"}"#.to_string()),
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn blank_lines_between_messages_and_any_header_case_are_fine() {
        let mut input = b"\r\n\r\n".to_vec();
        input.extend_from_slice(
            format!("content-LENGTH:{}\r\nContent-Type: x\r\n\r\n", GOOD.len()).as_bytes(),
        );
        input.extend_from_slice(GOOD.as_bytes());
        assert_eq!(messages(&input).await, vec![Ok(GOOD.to_string())]);
        assert_eq!(messages(b"").await, vec![]);
    }
}
