//! Fuzz target: see `pilotfish::fuzzing::framing` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilotfish::fuzzing::framing(data));
