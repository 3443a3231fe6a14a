//! Pilotfish: an AI sidecar language server. See ARCHITECTURE.md for the codemap.

pub mod actions;
pub mod cache;
pub mod check;
pub mod completion;
pub mod config;
pub mod documents;
/// The fuzz targets' properties (`fuzz/`): built only under `cargo fuzz` and for tests.
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod lsp;
pub mod position;
pub mod postprocess;
pub mod prompt;
pub mod providers;
pub mod reasoning;
pub mod recent;
pub mod redact;
pub mod resilience;
pub mod route_input;
pub mod router;
pub mod session;
pub mod sync;
pub mod syntax;
pub mod telemetry;
pub mod test_hooks;
pub mod tokens;
