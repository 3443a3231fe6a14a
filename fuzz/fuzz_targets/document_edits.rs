//! Fuzz target: see `pilotfish::fuzzing::document_edits` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilotfish::fuzzing::document_edits(data));
