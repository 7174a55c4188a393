//! IP packets through a live tunnel into the sharer's stack and flows, and their answers
//! back through the joiner's inbound filter: each input is split into packets (two-byte
//! lengths) that the TUN joiner sends. Nothing panics, loops or grows without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connect_netstack::fuzzing::ip_packet(data));
