//! Fuzz target: see `pilotfish::fuzzing::fim_answer` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilotfish::fuzzing::fim_answer(data));
