//! The HTTP client every call shares and what its failures mean: the system's certificate
//! store beside the built-in roots, the environment's proxies (never for this machine), a
//! request sent again when it went out on a connection the server had closed unannounced,
//! and a transport failure as a [`ProviderError`] (an untrusted certificate apart).

use std::time::{Duration, Instant};

use crate::config::ModelConfig;

use super::{ProviderError, one_line};

/// Idle connections kept per host.
const POOL_MAX_IDLE_PER_HOST: usize = 8;
/// How many times a request is sent while it goes out on pooled connections the server had
/// closed (see `send`): each failed send takes one out of the pool, so the last goes out on a
/// new connection.
const SENDS_ON_CLOSED_CONNECTIONS: usize = POOL_MAX_IDLE_PER_HOST + 1;
/// A connection that closes unanswered later than this after the request went out was not one
/// the server had closed before it (that fails within a round trip): the server may have
/// read the request and worked on it — a crash mid-answer, a proxy's timeout — and a model
/// call is not made twice, which for a cloud model would be paid twice.
const CLOSED_BEFORE_REQUEST_WITHIN: Duration = Duration::from_secs(1);

/// The proxies the environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, in upper or
/// lower case) for every host but those in `NO_PROXY` and the loopback ones: a model server
/// on this machine is reached directly, since a proxy elsewhere cannot reach it (a user
/// behind a company proxy need not list it in `NO_PROXY`).
fn env_proxies() -> Vec<reqwest::Proxy> {
    let var = |name: &str| {
        std::env::var(name)
            .or_else(|_| std::env::var(name.to_ascii_lowercase()))
            .ok()
            .filter(|value| !value.trim().is_empty())
    };
    let mut exempt = String::from("localhost,127.0.0.0/8,::1");
    if let Some(listed) = var("NO_PROXY") {
        exempt.push(',');
        exempt.push_str(&listed);
    }
    let exempt = reqwest::NoProxy::from_string(&exempt);
    type ProxyFor = fn(String) -> reqwest::Result<reqwest::Proxy>;
    let kinds: [(&str, ProxyFor); 3] = [
        ("HTTPS_PROXY", reqwest::Proxy::https),
        ("HTTP_PROXY", reqwest::Proxy::http),
        ("ALL_PROXY", reqwest::Proxy::all),
    ];
    kinds
        .into_iter()
        .filter_map(|(name, proxy)| {
            let url = var(name)?;
            match proxy(url) {
                Ok(proxy) => Some(proxy.no_proxy(exempt.clone())),
                Err(_) => {
                    // Not the value: a proxy URL may carry a password.
                    tracing::warn!("ignoring ${name}: not a proxy URL");
                    None
                }
            }
        })
        .collect()
}

/// The HTTP client every call shares. It trusts the public roots built in and, with
/// `system_roots`, the system's certificate store (or the PEM files `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` name instead): where a company's own CA signs its model server's
/// certificate, or its proxy's.
pub(super) fn http_client(system_roots: bool) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().no_proxy();
    for proxy in env_proxies() {
        builder = builder.proxy(proxy);
    }
    builder
        .tls_built_in_native_certs(system_roots)
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("pilotfish/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `request`, and again when the pooled connection it went out on turns out to have
/// been closed by the server before any answer. llama-server closes the connection after each
/// streamed answer without saying so (no `Connection: close`); a request sent at once after
/// one can go out on it before the close is seen, and fails at once with nothing read. The
/// server never saw it, so it is sent again, up to [`SENDS_ON_CLOSED_CONNECTIONS`] times in
/// all (the pool may hold more than one such connection); a close that comes later
/// ([`CLOSED_BEFORE_REQUEST_WITHIN`]) is the request's failure.
pub(super) async fn send(
    mut request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    for _ in 1..SENDS_ON_CLOSED_CONNECTIONS {
        let Some(again) = request.try_clone() else {
            break;
        };
        let sent = Instant::now();
        match request.send().await {
            Err(e) if closed_before_answer(&e) && sent.elapsed() < CLOSED_BEFORE_REQUEST_WITHIN => {
                tracing::debug!("the server had closed the pooled connection: sending again");
                request = again;
            }
            answered => return answered,
        }
    }
    request.send().await
}

/// The connection closed before the answer's head arrived (hyper's "connection closed before
/// message completed").
fn closed_before_answer(e: &reqwest::Error) -> bool {
    causes(e).any(|cause| {
        cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
    })
}

/// `e` and the errors under it, outermost first.
fn causes<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |cause| cause.source())
}

pub(super) fn transport_error(url: &str, model: &ModelConfig, e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout {
            url: url.to_string(),
            ms: model.timeout_ms,
        }
    } else if e.is_connect() && untrusted_issuer(&e) {
        ProviderError::Untrusted {
            url: url.to_string(),
            detail: one_line(&root_cause(&e)),
        }
    } else if e.is_connect() {
        ProviderError::Unreachable {
            url: url.to_string(),
            detail: one_line(&root_cause(&e)),
        }
    } else {
        ProviderError::Malformed {
            url: url.to_string(),
            detail: one_line(&root_cause(&e)),
        }
    }
}

/// TLS failed because the server's certificate chains to no root this client trusts (a
/// company's own CA, or its TLS-inspecting proxy's).
fn untrusted_issuer(e: &reqwest::Error) -> bool {
    causes(e).any(|cause| {
        // The TLS error travels inside `io::Error`s (two, today), whose `source` skips
        // what they wrap.
        let mut cause: &(dyn std::error::Error + 'static) = cause;
        while let Some(inner) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            cause = inner;
        }
        matches!(
            cause.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        )
    })
}

pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    causes(e)
        .last()
        .map(ToString::to_string)
        .unwrap_or_default()
}
