//! The double's HTTP/1.1 server, by hand on tokio's `TcpStream`: reading requests (with
//! `Content-Length` or chunked bodies), writing responses whole or in chunks, and racing every
//! wait and write against a read of the same socket so that a client giving up is seen at
//! once. It must not know what to answer (that is `serve`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::Shared;
use super::serve::respond;

/// Largest request head (request line and headers) the double accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request body the double accepts (Pilotfish may be tested with 50 MB documents).
const MAX_BODY_BYTES: usize = 128 * 1024 * 1024;

/// Accepts connections until dropped; dropping it also drops (closes) every connection it
/// is serving.
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            // Out of file descriptors or similar: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// How one response ended.
pub(super) enum Outcome {
    /// Written in full; the connection may serve another request.
    Completed,
    /// The client closed the connection first.
    Aborted,
    /// The double reset the connection on purpose.
    Reset,
}

/// One client connection: the read half (watched for EOF while answering), the write half and
/// bytes read but not yet consumed.
pub(super) struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    shared: Arc<Shared>,
    /// The response being written answers a model call (so its completion is counted).
    pub(super) model_call: bool,
}

/// Resolves when the client has closed the connection (EOF or error). Bytes that arrive in the
/// meantime (a pipelined request) are kept in `buf`. Cancel-safe: `read` is.
async fn client_gone(reader: &mut OwnedReadHalf, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Runs `work` unless the client closes the connection first (then `None`).
async fn unless_client_gone<T>(
    reader: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        out = work => Some(out),
        () = client_gone(reader, buf) => None,
    }
}

impl Conn {
    /// Reads more bytes into `buf`; `Ok(0)` at EOF.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.reader.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next request, or `None` when the client closed the connection or sent something
    /// that is not HTTP/1.1 (the connection is then dropped).
    async fn read_request(&mut self) -> Option<Parsed> {
        let (head_len, method, target, headers) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut slots);
            match request.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let method = request.method.unwrap_or_default().to_owned();
                    let target = request.path.unwrap_or_default().to_owned();
                    let headers: Vec<(String, String)> = request
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (len, method, target, headers);
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD_BYTES => {
                    if self.fill().await.ok()? == 0 {
                        return None;
                    }
                }
                _ => return None,
            }
        };
        self.buf.drain(..head_len);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            self.read_chunked_body().await?
        } else {
            let length: usize = match header("content-length") {
                Some(v) => v.parse().ok()?,
                None => 0,
            };
            if length > MAX_BODY_BYTES {
                return None;
            }
            while self.buf.len() < length {
                if self.fill().await.ok()? == 0 {
                    return None;
                }
            }
            self.buf.drain(..length).collect()
        };
        Some(Parsed {
            method,
            target,
            headers,
            body,
        })
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Some(line);
            }
            if self.buf.len() > MAX_HEAD_BYTES || self.fill().await.ok()? == 0 {
                return None;
            }
        }
    }

    async fn read_chunked_body(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size_line = self.read_line().await?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16).ok()?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line().await?.is_empty() {}
                return Some(body);
            }
            if body.len() + size > MAX_BODY_BYTES {
                return None;
            }
            while self.buf.len() < size + 2 {
                if self.fill().await.ok()? == 0 {
                    return None;
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Writes `bytes` unless the client is gone; false when it is.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> bool {
        let Conn {
            reader,
            writer,
            buf,
            ..
        } = self;
        matches!(
            unless_client_gone(reader, buf, writer.write_all(bytes)).await,
            Some(Ok(()))
        )
    }

    /// Writes the last bytes of a response. A model call is counted as completed *before* the
    /// write, so that a client which has read the whole response always sees it counted; the
    /// count is taken back if the write fails.
    pub(super) async fn finish(&mut self, bytes: &[u8]) -> Outcome {
        if self.model_call {
            self.shared
                .counters
                .completed
                .fetch_add(1, Ordering::SeqCst);
        }
        if self.send(bytes).await {
            return Outcome::Completed;
        }
        if self.model_call {
            self.shared
                .counters
                .completed
                .fetch_sub(1, Ordering::SeqCst);
        }
        Outcome::Aborted
    }

    /// Waits `duration` unless the client leaves first; false when it does.
    pub(super) async fn pause(&mut self, duration: Duration) -> bool {
        if duration.is_zero() {
            return true;
        }
        let Conn { reader, buf, .. } = self;
        unless_client_gone(reader, buf, tokio::time::sleep(duration))
            .await
            .is_some()
    }

    /// Waits for the client to leave.
    pub(super) async fn hang(&mut self) {
        client_gone(&mut self.reader, &mut self.buf).await;
    }

    /// Closes the connection with a TCP RST (SO_LINGER 0), not a FIN.
    pub(super) fn reset(self) {
        if let Ok(stream) = self.reader.reunite(self.writer) {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    }
}

pub(super) struct Parsed {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut conn = Conn {
        reader,
        writer,
        buf: Vec::new(),
        shared: Arc::clone(&shared),
        model_call: false,
    };
    let mut answered = false;
    while let Some(parsed) = conn.read_request().await {
        if answered && shared.lock().behaviour.drops_kept_connections {
            shared.counters.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        answered = true;
        let close_after = parsed.headers.iter().any(|(name, value)| {
            name == "connection" && value.trim().eq_ignore_ascii_case("close")
        });
        match respond(&mut conn, &shared, parsed).await {
            Outcome::Completed if !close_after => {}
            Outcome::Completed | Outcome::Aborted => return,
            Outcome::Reset => {
                conn.reset();
                return;
            }
        }
    }
}

pub(super) async fn send_json(
    conn: &mut Conn,
    status: u16,
    body: &Value,
    retry_after: Option<String>,
) -> Outcome {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    send_raw(conn, status, "application/json", &bytes, retry_after).await
}

pub(super) async fn send_raw(
    conn: &mut Conn,
    status: u16,
    content_type: &str,
    body: &[u8],
    retry_after: Option<String>,
) -> Outcome {
    let mut bytes = response_head(status, content_type, Some(body.len()), retry_after).into_bytes();
    bytes.extend_from_slice(body);
    conn.finish(&bytes).await
}

pub(super) fn response_head(
    status: u16,
    content_type: &str,
    content_length: Option<usize>,
    retry_after: Option<String>,
) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Unknown",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n");
    match content_length {
        Some(length) => head.push_str(&format!("content-length: {length}\r\n")),
        None => head.push_str("transfer-encoding: chunked\r\ncache-control: no-cache\r\n"),
    }
    if let Some(secs) = retry_after {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    head.push_str("\r\n");
    head
}

pub(super) fn http_chunk(data: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}
