//! See `connect::fuzzing::share_code`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connect::fuzzing::share_code(data));
