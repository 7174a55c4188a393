//! Datagrams off the wire into a node with a live WireGuard session: each input is split
//! into several datagrams (two-byte lengths), sent to the sharer as from the joiner's
//! address and from a stranger's. Nothing panics, loops or grows without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connect_netstack::fuzzing::wireguard_datagram(data));
