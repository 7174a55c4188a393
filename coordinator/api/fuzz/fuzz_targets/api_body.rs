//! Every body the hub and agents read from each other: the first byte picks the type,
//! the rest is the JSON. Decoding never panics; what decodes survives a round trip; the
//! checks both sides apply (routes, account names, durations) never panic either.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connect_api::fuzzing::api_body(data));
