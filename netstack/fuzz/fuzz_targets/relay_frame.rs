//! Relay frames as agents and the hub read them off UDP or a relay stream: parsing never
//! panics, and what parses writes back to the same frame.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connect_netstack::fuzzing::relay_frame(data));
