//! Pilotfish: an AI sidecar language server. See ARCHITECTURE.md for the codemap.

pub mod postprocess;
pub mod prompt;
pub mod syntax;
