//! What tower-lsp leaves undone of JSON-RPC and LSP's lifecycle, as a service wrapped around
//! its own. It answers the framing guard's stand-ins for unreadable messages with their error
//! (id null, never queued behind another request); it answers the requests tower-lsp would
//! leave unanswered (a `$/` method it does not know: LSP says MethodNotFound); it gives an
//! unknown request ServerNotInitialized (-32002) before `initialize` and InvalidRequest after
//! `shutdown`, as it does for known ones; and it logs every notification it ignores (unknown,
//! before `initialize`, after `shutdown`, or with params that do not fit — tower-lsp drops
//! those silently, and a dropped `didChange` is a lost edit).
//!
//! It must not handle anything the server itself answers: every other message passes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Request, Response};
use tower_lsp_server::ls_types::{
    CancelParams, DidChangeConfigurationParams, DidChangeTextDocumentParams,
    DidCloseTextDocumentParams, InitializedParams, Uri, WorkDoneProgressCancelParams,
};
use tower_service::Service;

use super::framing::{UNREADABLE_METHOD, Unreadable};

/// The standard notifications tower-lsp answers itself when the server does not implement
/// them (with its own "not implemented" log line).
const STANDARD_NOTIFICATIONS: &[&str] = &[
    "textDocument/willSave",
    "textDocument/didSave",
    "notebookDocument/didOpen",
    "notebookDocument/didChange",
    "notebookDocument/didSave",
    "notebookDocument/didClose",
    "workspace/didChangeWorkspaceFolders",
    "workspace/didCreateFiles",
    "workspace/didRenameFiles",
    "workspace/didDeleteFiles",
    "workspace/didChangeWatchedFiles",
];

/// LSP's ServerNotInitialized error code.
const SERVER_NOT_INITIALIZED: i64 = -32002;

/// Where the session is, as the answers to `initialize` and `shutdown` say.
#[derive(Debug, Default)]
struct Lifecycle {
    initialized: AtomicBool,
    shut_down: AtomicBool,
}

impl Lifecycle {
    /// Why a notification other than `exit` is dropped now, if it is.
    fn dropping(&self) -> Option<&'static str> {
        if !self.initialized.load(Ordering::SeqCst) {
            Some("the server is not initialized")
        } else if self.shut_down.load(Ordering::SeqCst) {
            Some("the server is shut down")
        } else {
            None
        }
    }

    /// The error an unknown request gets now.
    fn unknown_request(&self, method: &str) -> Error {
        if !self.initialized.load(Ordering::SeqCst) {
            Error {
                code: ErrorCode::ServerError(SERVER_NOT_INITIALIZED),
                message: "Server not initialized".into(),
                data: None,
            }
        } else if self.shut_down.load(Ordering::SeqCst) {
            Error::invalid_request()
        } else {
            Error {
                code: ErrorCode::MethodNotFound,
                message: format!("Method not found: {method}").into(),
                data: None,
            }
        }
    }
}

/// tower-lsp's service with the gaps above filled.
pub(super) struct Conformant<S> {
    inner: S,
    lifecycle: Arc<Lifecycle>,
}

impl<S> Conformant<S> {
    pub(super) fn new(inner: S) -> Self {
        Conformant {
            inner,
            lifecycle: Arc::default(),
        }
    }
}

impl<S> Service<Request> for Conformant<S>
where
    S: Service<Request, Response = Option<Response>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Option<Response>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Option<Response>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == UNREADABLE_METHOD {
            return std::future::ready(Ok(answer_unreadable(request))).boxed();
        }
        let method = request.method().to_owned();
        // Each message as it is handed to a handler, and each request's answer (debug): what
        // the editor sent and when, and a handler that holds one of tower-lsp's slots (it
        // reads no message while all `lsp::MAX_CONCURRENT_REQUESTS` are taken) as a request
        // received and not answered.
        tracing::debug!(method = %method, id = ?request.id(), "received");
        let Some(id) = request.id().cloned() else {
            log_if_ignored(&method, request.params(), &self.lifecycle);
            return self.inner.call(request).boxed();
        };
        let lifecycle = Arc::clone(&self.lifecycle);
        let answer = self.inner.call(request);
        let received = std::time::Instant::now();
        async move {
            let response = answer.await?;
            tracing::debug!(
                method = %method,
                id = ?id,
                ms = received.elapsed().as_millis() as u64,
                "answered"
            );
            let Some(response) = response else {
                // tower-lsp drops the MethodNotFound answer of every `$/` method.
                return Ok(Some(Response::from_error(
                    id,
                    lifecycle.unknown_request(&method),
                )));
            };
            let flag = match method.as_str() {
                "initialize" => Some(&lifecycle.initialized),
                "shutdown" => Some(&lifecycle.shut_down),
                _ => None,
            };
            if let Some(flag) = flag.filter(|_| response.is_ok()) {
                flag.store(true, Ordering::SeqCst);
            }
            let unknown = response
                .error()
                .is_some_and(|e| e.code == ErrorCode::MethodNotFound);
            Ok(Some(if unknown {
                Response::from_error(id, lifecycle.unknown_request(&method))
            } else {
                response
            }))
        }
        .boxed()
    }
}

/// The error response to a stand-in for an unreadable message.
fn answer_unreadable(request: Request) -> Option<Response> {
    let (_, id, params) = request.into_parts();
    let unreadable = params
        .and_then(|p| Unreadable::deserialize(p).ok())
        .unwrap_or(Unreadable {
            code: ErrorCode::ParseError.code(),
            message: "Parse error".into(),
        });
    tracing::error!("unreadable message from the editor: {}", unreadable.message);
    id.map(|id| {
        Response::from_error(
            id,
            Error {
                code: ErrorCode::from(unreadable.code),
                message: unreadable.message.into(),
                data: None,
            },
        )
    })
}

/// A `didOpen` as tower-lsp reads it, with the text borrowed: checking a 50 MB document's
/// params must not copy it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DidOpenShape<'a> {
    #[serde(borrow, rename = "textDocument")]
    _text_document: OpenedDocument<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenedDocument<'a> {
    #[serde(rename = "uri")]
    _uri: Uri,
    #[serde(rename = "languageId")]
    _language_id: &'a str,
    #[serde(rename = "version")]
    _version: i32,
    #[serde(rename = "text")]
    _text: &'a str,
}

/// Whether `params` fit the notification `method` as the server reads it; `None` when the
/// server does not handle that notification itself.
fn params_fit(method: &str, params: Option<&Value>) -> Option<Result<(), String>> {
    fn fit<'a, T: Deserialize<'a>>(params: Option<&'a Value>) -> Result<(), String> {
        let params = params.ok_or("no params")?;
        T::deserialize(params).map(drop).map_err(|e| e.to_string())
    }
    Some(match method {
        "exit" => Ok(()),
        "initialized" => fit::<InitializedParams>(params),
        "textDocument/didOpen" => fit::<DidOpenShape>(params),
        "textDocument/didChange" => fit::<DidChangeTextDocumentParams>(params),
        "textDocument/didClose" => fit::<DidCloseTextDocumentParams>(params),
        "workspace/didChangeConfiguration" => fit::<DidChangeConfigurationParams>(params),
        "$/cancelRequest" => fit::<CancelParams>(params),
        "window/workDoneProgress/cancel" => fit::<WorkDoneProgressCancelParams>(params),
        _ => return None,
    })
}

/// Logs a notification that nothing will act on.
fn log_if_ignored(method: &str, params: Option<&Value>, lifecycle: &Lifecycle) {
    if method == "exit" {
        return;
    }
    if let Some(why) = lifecycle.dropping() {
        tracing::warn!("ignored the notification {method}: {why}");
        return;
    }
    match params_fit(method, params) {
        Some(Ok(())) => {}
        Some(Err(why)) => tracing::error!("ignored the notification {method}: bad params: {why}"),
        None if STANDARD_NOTIFICATIONS.contains(&method) => {}
        None => tracing::warn!("ignored the notification {method}: unknown method"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_checked_for_the_notifications_the_server_handles() {
        let uri = "file:///a.py";
        let open = json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": "x" } });
        assert_eq!(
            params_fit("textDocument/didOpen", Some(&open)),
            Some(Ok(()))
        );
        let bad_open = json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": 7 } });
        assert!(matches!(
            params_fit("textDocument/didOpen", Some(&bad_open)),
            Some(Err(_))
        ));
        let bad_change =
            json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": "oops" });
        assert!(matches!(
            params_fit("textDocument/didChange", Some(&bad_change)),
            Some(Err(_))
        ));
        assert!(matches!(
            params_fit("textDocument/didClose", None),
            Some(Err(_))
        ));
        assert_eq!(params_fit("exit", None), Some(Ok(())));
        assert_eq!(params_fit("pilotfish/unknown", None), None);
    }

    #[test]
    fn unknown_requests_get_the_lifecycles_error() {
        let lifecycle = Lifecycle::default();
        assert_eq!(
            lifecycle.unknown_request("x").code,
            ErrorCode::ServerError(SERVER_NOT_INITIALIZED)
        );
        lifecycle.initialized.store(true, Ordering::SeqCst);
        assert_eq!(
            lifecycle.unknown_request("x").code,
            ErrorCode::MethodNotFound
        );
        lifecycle.shut_down.store(true, Ordering::SeqCst);
        assert_eq!(
            lifecycle.unknown_request("x").code,
            ErrorCode::InvalidRequest
        );
    }
}
