//! See `connect::fuzzing::authorized_keys`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connect::fuzzing::authorized_keys(data));
