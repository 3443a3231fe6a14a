//! Fuzz target: see `pilotfish::fuzzing::chat_stream` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilotfish::fuzzing::chat_stream(data));
