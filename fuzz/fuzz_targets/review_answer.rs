//! Fuzz target: see `pilotfish::fuzzing::review_answer` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilotfish::fuzzing::review_answer(data));
