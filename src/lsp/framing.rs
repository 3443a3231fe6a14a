//! A guard between stdin and tower-lsp's reader. tower-lsp 0.23 ends its read loop at the
//! first message it cannot decode (tokio-util's `FramedRead` yields nothing more after a
//! decoder error), so one bad frame from the editor — a body that is not UTF-8, not JSON, or
//! not a JSON-RPC message, or broken headers — would end the whole session.
//!
//! The guard reads the frames itself and passes the good ones on unchanged. Each unreadable
//! one is replaced by a request for [`UNREADABLE_METHOD`] with a null id, which the server
//! answers with a JSON-RPC error (`-32700` or `-32600`, id null, as JSON-RPC prescribes for
//! a message whose id cannot be known); the session goes on. No other logic lives here.
//!
//! Known limit: tower-lsp keys requests in flight by id, so an unreadable message that
//! arrives while the previous one is still being answered shares its null id and gets
//! tower-lsp's bare `-32600 Invalid request` instead. Still one error response each.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt};
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Id, Result};

use super::Backend;

/// The method that stands for an unreadable message. Not part of any protocol.
pub(super) const UNREADABLE_METHOD: &str = "pilotfish/unreadableMessage";
/// Bodies larger than this are skipped unread (and answered with an error).
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;
/// Header lines longer than this are not headers.
const MAX_HEADER_LINE: u64 = 8 * 1024;
/// How many bytes the pipe to tower-lsp buffers.
const PIPE_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
pub(super) struct Unreadable {
    /// `-32700` (parse error) or `-32600` (invalid request).
    code: i64,
    message: String,
}

impl Backend {
    /// Answers a message the guard could not pass on: always an error.
    pub(super) async fn unreadable_message(&self, params: Unreadable) -> Result<()> {
        super::guarded("unreadable message", async {
            tracing::error!("unreadable message from the editor: {}", params.message);
            Err(Error {
                code: ErrorCode::from(params.code),
                message: params.message.into(),
                data: None,
            })
        })
        .await
    }
}

/// Starts the guard on `input`; returns the stream tower-lsp should read instead.
pub(super) fn guard(input: impl AsyncRead + Unpin + Send + 'static) -> impl AsyncRead {
    let (mut to_server, from_guard) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(async move {
        let mut input = tokio::io::BufReader::new(input);
        loop {
            let frame = match read_frame(&mut input).await {
                Ok(Some(frame)) => frame,
                // EOF or a broken stdin: dropping the pipe ends the session, as EOF should.
                Ok(None) | Err(_) => break,
            };
            let body = match check(frame) {
                Ok(body) => body,
                Err((code, message)) => {
                    tracing::warn!("{message}");
                    replacement(code, &message)
                }
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

/// Reads one frame; `None` at a clean EOF. Headers are read leniently (any lines up to the
/// blank line; only `Content-Length` matters), so that a broken header block costs one
/// error, not the session.
async fn read_frame(input: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<Option<Frame>> {
    let mut content_length: Option<std::result::Result<usize, String>> = None;
    let mut saw_any = false;
    loop {
        let mut line = Vec::new();
        let n = (&mut *input)
            .take(MAX_HEADER_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(if saw_any {
                Some(Frame::Bad("EOF inside message headers".into()))
            } else {
                None
            });
        }
        saw_any = true;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad Content-Length {:?}", value.trim())),
                );
            }
        }
    }
    let length = match content_length {
        Some(Ok(length)) => length,
        Some(Err(why)) => return Ok(Some(Frame::Bad(why))),
        None => return Ok(Some(Frame::Bad("a message without Content-Length".into()))),
    };
    if length > MAX_BODY_BYTES {
        tokio::io::copy(
            &mut (&mut *input).take(length as u64),
            &mut tokio::io::sink(),
        )
        .await?;
        return Ok(Some(Frame::Bad(format!(
            "a message of {length} bytes (the limit is {MAX_BODY_BYTES})"
        ))));
    }
    let mut body = vec![0; length];
    input.read_exact(&mut body).await?;
    Ok(Some(Frame::Body(body)))
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

/// A body tower-lsp can decode, or the JSON-RPC error code and message for one it cannot.
fn check(frame: Frame) -> std::result::Result<Vec<u8>, (i64, String)> {
    const PARSE_ERROR: i64 = -32700;
    const INVALID_REQUEST: i64 = -32600;
    let body = match frame {
        Frame::Body(body) => body,
        Frame::Bad(why) => return Err((PARSE_ERROR, format!("Parse error: {why}"))),
    };
    // An empty body is skipped by tower-lsp itself.
    if body.is_empty() {
        return Ok(body);
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        (
            PARSE_ERROR,
            format!("Parse error: the message is not UTF-8 ({e})"),
        )
    })?;
    match serde_json::from_str::<Envelope>(text) {
        Ok(envelope) if envelope.jsonrpc == "2.0" => Ok(body),
        Ok(envelope) => Err((
            INVALID_REQUEST,
            format!(
                "Invalid request: JSON-RPC version {:?}, expected \"2.0\"",
                envelope.jsonrpc
            ),
        )),
        Err(e) if e.is_data() => Err((
            INVALID_REQUEST,
            format!("Invalid request: not a JSON-RPC 2.0 message ({e})"),
        )),
        Err(e) => Err((
            PARSE_ERROR,
            format!("Parse error: the message is not JSON ({e})"),
        )),
    }
}

/// A request with a null id that the server answers with this error.
fn replacement(code: i64, message: &str) -> Vec<u8> {
    let request = json!({
        "jsonrpc": "2.0",
        "id": null,
        "method": UNREADABLE_METHOD,
        "params": { "code": code, "message": message },
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8]) -> Vec<std::result::Result<String, i64>> {
        let mut reader = tokio::io::BufReader::new(input);
        let mut out = Vec::new();
        while let Some(frame) = read_frame(&mut reader).await.unwrap() {
            out.push(
                check(frame)
                    .map(|body| String::from_utf8(body).unwrap())
                    .map_err(|(code, _)| code),
            );
        }
        out
    }

    #[tokio::test]
    async fn good_frames_pass_and_bad_ones_become_errors() {
        let good = r#"{"jsonrpc":"2.0","id":1,"method":"shutdown"}"#;
        let mut input = Vec::new();
        for body in [
            good.as_bytes(),
            b"{not json",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}",
            b"[1,2]",
            br#"{"jsonrpc":"1.0","method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            good.as_bytes(),
        ] {
            input.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            input.extend_from_slice(body);
        }
        input.extend_from_slice(b"Content-Length: x\r\n\r\n");
        input.extend_from_slice(b"garbage\r\n\r\n");
        assert_eq!(
            frames(&input).await,
            vec![
                Ok(good.to_string()),
                Err(-32700),
                Err(-32700),
                Err(-32600),
                Err(-32600),
                Err(-32600),
                Ok(r#"{"jsonrpc":"2.0","id":1,"result":null}"#.to_string()),
                Ok(good.to_string()),
                Err(-32700),
                Err(-32700),
            ]
        );
    }
}
