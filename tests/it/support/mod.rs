//! Instruments for end-to-end tests and benches: a model-server double that speaks the real
//! provider wire formats ([`double`]), a TLS front for it with a CA of its own ([`tls`]), and
//! an editor that drives the real binary over stdio ([`lsp`]).
//!
//! Shared by `tests/it` and `benches/e2e.rs` (through `#[path]`), so nothing here depends on the
//! test harness: no `#[test]`, plain public API. Not every item is used by every includer.
#![allow(dead_code)]

pub mod double;
pub mod lsp;
pub mod tls;

use std::time::{Duration, Instant};

/// How often the `wait_*` helpers re-check their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Polls `condition` until it holds (true) or `timeout` passes (false), for effects that happen
/// asynchronously. Tests wait on a condition, never for a fixed time.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
