//! See `connect::fuzzing::config_files`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connect::fuzzing::config_files(data));
