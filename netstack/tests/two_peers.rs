//! Two nodes in one process over a simulated link: the sharer serves its policy, the
//! joiner dials through it. Deterministic: fixed keys, seeds and virtual time (except
//! boringtun's own handshake timers, see `handshake_is_retried_after_loss`).
#![allow(clippy::unwrap_used, clippy::wildcard_enum_match_arm)]

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use common::*;
use connect_netstack::{CloseReason, Event, FlowId, Protocol, PublicKey};
use rand::{Rng, SeedableRng};

const MB: usize = 1024 * 1024;

#[test]
fn bulk_50_mb_arrives_intact_without_loss() {
    let mut pair = Pair::new(LinkConfig::default());
    let (sent, received) = bulk(&mut pair, 50 * MB, 2_000_000);
    assert_eq!(sent, received);
    assert_eq!(
        pair.sharer.node.flow_usage(),
        (0, 0),
        "flow state left behind"
    );
}

#[test]
fn bulk_50_mb_arrives_intact_at_5_percent_loss_with_duplicates_and_reordering() {
    let mut pair = Pair::new(LinkConfig {
        seed: 11,
        latency: Duration::from_millis(2),
        jitter: Duration::from_micros(300),
        loss: 0.05,
        duplicate: 0.01,
    });
    let (sent, received) = bulk(&mut pair, 50 * MB, 20_000_000);
    assert_eq!(sent, received);
}

#[test]
fn two_hundred_concurrent_flows_echo() {
    const FLOWS: usize = 200;
    const BYTES: usize = 20_000;
    let mut pair = Pair::new(LinkConfig::default());
    let mut expected: HashMap<FlowId, Vec<u8>> = HashMap::new();
    let mut got: HashMap<FlowId, Vec<u8>> = HashMap::new();
    let mut pending: HashMap<FlowId, usize> = HashMap::new();
    for i in 0..FLOWS {
        let flow = pair
            .joiner
            .node
            .connect_tcp(sharer_socket(ECHO_PORT), pair.now)
            .unwrap();
        let mut data = vec![0u8; BYTES];
        pattern(i * 7919, &mut data);
        expected.insert(flow, data);
        got.insert(flow, Vec::new());
    }
    let mut echo: HashMap<FlowId, Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    pair.drive_until(200_000, |p| {
        for event in p.accept_all() {
            if let Event::Accepted { flow, .. } = event {
                echo.insert(flow, Vec::new());
            }
        }
        // The sharer echoes whatever arrives on each flow.
        for (flow, backlog) in echo.iter_mut() {
            while let Ok(Some(n)) = p.sharer.node.recv(*flow, &mut buf) {
                backlog.extend_from_slice(&buf[..n]);
            }
            let n = p.sharer.node.send(*flow, backlog, p.now).unwrap_or(0);
            backlog.drain(..n);
        }
        while let Some(event) = p.joiner.events.pop_front() {
            if let Event::Connected { flow } = event {
                pending.insert(flow, 0);
            }
        }
        for (flow, offset) in pending.iter_mut() {
            let data = &expected[flow];
            if *offset < data.len() {
                *offset += p
                    .joiner
                    .node
                    .send(*flow, &data[*offset..], p.now)
                    .unwrap_or(0);
            }
            while let Ok(Some(n)) = p.joiner.node.recv(*flow, &mut buf) {
                got.get_mut(flow).unwrap().extend_from_slice(&buf[..n]);
            }
        }
        got.values().all(|g| g.len() == BYTES)
    });
    assert_eq!(got, expected);
    assert_eq!(pair.sharer.node.flow_usage().0, FLOWS);
}

#[test]
fn udp_round_trips() {
    let mut pair = Pair::new(LinkConfig::default());
    let flow = pair
        .joiner
        .node
        .open_udp(sharer_socket(DNS_PORT), pair.now)
        .unwrap();
    let mut served = None;
    let mut answers = Vec::new();
    let mut buf = [0u8; 1500];
    for i in 0u32..100 {
        let question = i.to_be_bytes();
        pair.joiner.node.send(flow, &question, pair.now).unwrap();
        pair.drive_until(10_000, |p| {
            while let Some(event) = p.sharer.events.pop_front() {
                if let Event::Accepted {
                    flow,
                    protocol,
                    target,
                    ..
                } = event
                {
                    assert_eq!(protocol, Protocol::Udp);
                    assert_eq!(target.port, 5353);
                    served = Some(flow);
                }
            }
            if let Some(s) = served {
                while let Ok(Some(n)) = p.sharer.node.recv(s, &mut buf) {
                    let mut answer = buf[..n].to_vec();
                    answer.reverse();
                    p.sharer.node.send(s, &answer, p.now).unwrap();
                }
            }
            if let Ok(Some(n)) = p.joiner.node.recv(flow, &mut buf) {
                answers.push(buf[..n].to_vec());
                return true;
            }
            false
        });
        let mut expected = question.to_vec();
        expected.reverse();
        assert_eq!(answers.last(), Some(&expected));
    }
    assert_eq!(answers.len(), 100);
    assert_eq!(
        pair.sharer.node.flow_usage().0,
        1,
        "one UDP flow for one conversation"
    );
}

#[test]
fn udp_flows_expire_when_idle() {
    let mut pair = Pair::new(LinkConfig::default());
    let flow = pair
        .joiner
        .node
        .open_udp(sharer_socket(DNS_PORT), pair.now)
        .unwrap();
    pair.joiner.node.send(flow, b"ping", pair.now).unwrap();
    let mut served = None;
    pair.drive_until(10_000, |p| {
        if let Some(Event::Accepted { flow, .. }) = p.sharer.events.front().cloned() {
            served = Some(flow);
        }
        served.is_some()
    });
    let started = pair.now;
    let mut reason = None;
    pair.drive_until(100_000, |p| {
        while let Some(event) = p.sharer.events.pop_front() {
            if let Event::Closed { flow, reason: r } = event {
                assert_eq!(Some(flow), served);
                reason = Some(r);
            }
        }
        reason.is_some()
    });
    assert_eq!(reason, Some(CloseReason::TimedOut));
    assert!(pair.now - started >= Duration::from_secs(120));
    assert_eq!(pair.sharer.node.flow_usage(), (0, 0));
}

#[test]
fn policy_refuses_ports_it_does_not_list() {
    let mut pair = Pair::new(LinkConfig::default());
    let ssh = pair
        .joiner
        .node
        .connect_tcp(sharer_socket(22), pair.now)
        .unwrap();
    let mut closed = None;
    pair.drive_until(10_000, |p| {
        while let Some(event) = p.joiner.events.pop_front() {
            if let Event::Closed { flow, reason } = event {
                assert_eq!(flow, ssh);
                closed = Some(reason);
            }
        }
        closed.is_some()
    });
    assert_eq!(
        closed,
        Some(CloseReason::Reset),
        "refused TCP must be reset, not hang"
    );

    let udp = pair
        .joiner
        .node
        .open_udp(sharer_socket(9999), pair.now)
        .unwrap();
    pair.joiner.node.send(udp, b"nope", pair.now).unwrap();
    pair.run(200);
    assert!(
        !pair
            .sharer
            .events
            .iter()
            .any(|e| matches!(e, Event::Accepted { .. })),
        "a refused flow was accepted: {:?}",
        pair.sharer.events
    );
    assert_eq!(pair.sharer.node.stats().policy_refused, 2);
    assert_eq!(pair.sharer.node.flow_usage(), (0, 0));
}

#[test]
fn target_refusal_resets_the_joiners_connection() {
    let mut pair = Pair::new(LinkConfig::default());
    let flow = pair
        .joiner
        .node
        .connect_tcp(sharer_socket(BULK_PORT), pair.now)
        .unwrap();
    let mut closed = None;
    pair.drive_until(10_000, |p| {
        while let Some(event) = p.sharer.events.pop_front() {
            if let Event::Accepted { flow, .. } = event {
                // The real target refused: the joiner must see RST, never a SYN-ACK.
                p.sharer.node.abort(flow, p.now).unwrap();
            }
        }
        while let Some(event) = p.joiner.events.pop_front() {
            assert!(
                !matches!(event, Event::Connected { .. }),
                "connected to a refusing target"
            );
            if let Event::Closed { flow: f, reason } = event {
                assert_eq!(f, flow);
                closed = Some(reason);
            }
        }
        closed.is_some()
    });
    assert_eq!(closed, Some(CloseReason::Reset));
}

fn established_echo(pair: &mut Pair) -> (FlowId, FlowId) {
    let flow = pair
        .joiner
        .node
        .connect_tcp(sharer_socket(ECHO_PORT), pair.now)
        .unwrap();
    let mut served = None;
    let mut connected = false;
    pair.drive_until(10_000, |p| {
        for event in p.accept_all() {
            if let Event::Accepted { flow, .. } = event {
                served = Some(flow);
            }
        }
        connected |= p
            .joiner
            .events
            .drain(..)
            .any(|e| e == Event::Connected { flow });
        connected && served.is_some()
    });
    (flow, served.unwrap())
}

/// Sends `data` joiner → sharer on an established flow and checks it arrives.
fn exchange(pair: &mut Pair, (flow, served): (FlowId, FlowId), data: &[u8]) {
    assert_eq!(
        pair.joiner.node.send(flow, data, pair.now).unwrap(),
        data.len()
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    pair.drive_until(10_000, |p| {
        while let Ok(Some(n)) = p.sharer.node.recv(served, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got.len() >= data.len()
    });
    assert_eq!(got, data);
    pair.sharer.events.clear();
    pair.joiner.events.clear();
}

#[test]
fn malformed_and_replayed_datagrams_are_dropped_and_counted() {
    let mut pair = Pair::new(LinkConfig::default());
    pair.capture = Some(Vec::new());
    let flows = established_echo(&mut pair);
    exchange(&mut pair, flows, b"before");

    let captured = pair.capture.take().unwrap();
    let joiner_addr = pair.joiner.addr;
    let to_sharer: Vec<Vec<u8>> = captured
        .into_iter()
        .filter(|(to, _, _)| *to == To::Sharer)
        .map(|(_, _, bytes)| bytes)
        .collect();
    let before = pair.sharer.node.stats();
    // Replays of everything the joiner sent, handshake included.
    for bytes in &to_sharer {
        pair.inject(To::Sharer, joiner_addr, bytes.clone());
    }
    // Malformed: truncated, bit-flipped, and wrong-type datagrams.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for bytes in &to_sharer {
        let cut = rng.random_range(0..bytes.len());
        pair.inject(To::Sharer, joiner_addr, bytes[..cut].to_vec());
        let mut flipped = bytes.clone();
        let at = rng.random_range(0..flipped.len());
        flipped[at] ^= 0x40;
        pair.inject(To::Sharer, joiner_addr, flipped);
    }
    pair.inject(To::Sharer, joiner_addr, vec![9, 0, 0, 0, 1, 2, 3]);
    pair.run(50);
    let after = pair.sharer.node.stats();
    assert!(after.rx_replayed > before.rx_replayed, "{after:?}");
    assert!(after.rx_invalid > before.rx_invalid, "{after:?}");
    assert!(
        pair.sharer
            .events
            .iter()
            .all(|e| !matches!(e, Event::Accepted { .. }))
    );
    // The session survives all of it.
    exchange(&mut pair, flows, b"after");
}

#[test]
fn random_datagrams_never_panic_either_node() {
    let mut pair = Pair::new(LinkConfig::default());
    let flows = established_echo(&mut pair);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let from = pair.joiner.addr;
    for i in 0..10_000 {
        // Sizes WireGuard parses specially, with the message types it knows.
        let len = [0, 3, 4, 32, 64, 92, 148, 200, 1452][i % 9];
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        if len >= 4 {
            bytes[..4].copy_from_slice(&(rng.random_range(1u32..=4)).to_le_bytes());
        }
        let to = if i % 2 == 0 { To::Sharer } else { To::Joiner };
        let now = pair.now;
        pair.side(to).node.handle_datagram(from, &bytes, now);
        pair.step();
        if let Some(e) = pair
            .joiner
            .events
            .iter()
            .find(|e| matches!(e, Event::Closed { .. }))
        {
            panic!(
                "closed at {i}: {e:?} {:?} {:?}",
                pair.joiner.node.stats(),
                pair.sharer.node.stats()
            );
        }
    }
    exchange(&mut pair, flows, b"still here");
}

#[test]
fn handshake_is_retried_after_loss() {
    let mut pair = Pair::new(LinkConfig::default());
    let mut dropped = 0;
    pair.filter = Some(Box::new(move |to, bytes| {
        // Drop the first handshake initiation the joiner sends.
        if to == To::Sharer && bytes.first() == Some(&1) && dropped < 1 {
            dropped += 1;
            return true;
        }
        false
    }));
    let flow = pair
        .joiner
        .node
        .connect_tcp(sharer_socket(ECHO_PORT), pair.now)
        .unwrap();
    // boringtun retries a handshake after REKEY_TIMEOUT (5 s) of its own, real clock, so
    // this test follows real time and waits for that timer; there is nothing to wait on.
    let started = Instant::now();
    let mut connected = false;
    while !connected {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no retry after 30 s"
        );
        pair.now = pair.now.max(Instant::now());
        pair.step_without_jumping();
        pair.accept_all();
        connected = pair
            .joiner
            .events
            .drain(..)
            .any(|e| e == Event::Connected { flow });
        if !connected {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[test]
fn removing_a_peer_ends_its_flows_at_once() {
    let mut pair = Pair::new(LinkConfig::default());
    let flows = established_echo(&mut pair);
    exchange(&mut pair, flows, b"hello");
    let joiner_key = PublicKey::from(&key(2));
    pair.sharer.node.remove_peer(&joiner_key).unwrap();
    let event = pair.sharer.node.poll_event();
    assert_eq!(
        event,
        Some(Event::Closed {
            flow: flows.1,
            reason: CloseReason::PeerRemoved
        })
    );
    assert_eq!(pair.sharer.node.flow_usage(), (0, 0));
    // Nothing the joiner sends gets through any more.
    pair.joiner
        .node
        .send(flows.0, b"anyone?", pair.now)
        .unwrap();
    let before = pair.sharer.node.stats().rx_unknown_peer;
    pair.run(100);
    assert!(pair.sharer.node.stats().rx_unknown_peer > before);
    assert!(pair.sharer.events.is_empty(), "{:?}", pair.sharer.events);
}

#[test]
fn removing_a_peer_mid_transfer() {
    let mut pair = Pair::new(LinkConfig::default());
    let flow = pair
        .joiner
        .node
        .connect_tcp(sharer_socket(BULK_PORT), pair.now)
        .unwrap();
    let mut served = None;
    let mut received = 0;
    let mut buf = vec![0u8; 65536];
    let chunk = vec![7u8; 65536];
    pair.drive_until(100_000, |p| {
        for event in p.accept_all() {
            if let Event::Accepted { flow, .. } = event {
                served = Some(flow);
            }
        }
        if let Some(s) = served {
            while p.sharer.node.send(s, &chunk, p.now).unwrap_or(0) > 0 {}
        }
        while let Ok(Some(n)) = p.joiner.node.recv(flow, &mut buf) {
            received += n;
        }
        received > 4 * MB
    });
    pair.sharer
        .node
        .remove_peer(&PublicKey::from(&key(2)))
        .unwrap();
    let closed: Vec<_> = std::iter::from_fn(|| pair.sharer.node.poll_event()).collect();
    assert!(closed.contains(&Event::Closed {
        flow: served.unwrap(),
        reason: CloseReason::PeerRemoved
    }));
    assert_eq!(pair.sharer.node.flow_usage(), (0, 0));
    // The joiner hears an RST, sealed before the session went, rather than silence.
    let mut reset = false;
    pair.drive_until(1_000, |p| {
        while let Ok(Some(_)) = p.joiner.node.recv(flow, &mut buf) {}
        reset |= p.joiner.events.drain(..).any(|e| {
            e == Event::Closed {
                flow,
                reason: CloseReason::Reset,
            }
        });
        reset
    });
    // After that nothing more arrives.
    let settled = pair.joiner.node.stats().rx_datagrams;
    pair.run(500);
    assert_eq!(pair.joiner.node.stats().rx_datagrams, settled);
}

#[test]
fn spoofed_sources_and_peer_to_peer_packets_are_dropped() {
    let mut pair = Pair::new(LinkConfig::default());
    // Let the joiner route the whole range to the sharer, as a TUN joiner could be
    // configured by a hostile hub, to show the sharer itself refuses to forward.
    let sharer_key = PublicKey::from(&key(1));
    pair.joiner.node.remove_peer(&sharer_key).unwrap();
    let mut wide = peer(
        &key(1),
        SHARER_IP,
        Some(pair.sharer.addr),
        Default::default(),
    );
    wide.allowed_ips = vec!["172.16.0.0/12".parse().unwrap()];
    pair.joiner.node.add_peer(wide).unwrap();
    let flows = established_echo(&mut pair);
    exchange(&mut pair, flows, b"x");
    let mut packet = Vec::new();
    // A UDP packet claiming another source, then one for another joiner's address.
    for (src, dst) in [
        (Ipv4Addr::new(172, 16, 0, 99), SHARER_IP),
        (JOINER_IP, Ipv4Addr::new(172, 16, 0, 4)),
    ] {
        packet.clear();
        write_udp_packet(
            &mut packet,
            SocketAddrV4::new(src, 1000),
            SocketAddrV4::new(dst, DNS_PORT),
        );
        pair.joiner.node.handle_ip_packet(&packet, pair.now);
    }
    pair.run(20);
    let stats = pair.sharer.node.stats();
    assert_eq!(stats.rx_spoofed, 1, "{stats:?}");
    assert_eq!(
        stats.no_route, 1,
        "the sharer forwarded between peers: {stats:?}"
    );
    assert!(pair.sharer.events.is_empty());
}

/// A minimal IPv4/UDP packet with a zero checksum, built by hand so the test does not
/// lean on the code under test.
fn write_udp_packet(out: &mut Vec<u8>, src: SocketAddrV4, dst: SocketAddrV4) {
    let payload = b"spoof";
    let total = (20 + 8 + payload.len()) as u16;
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&src.ip().octets());
    out.extend_from_slice(&dst.ip().octets());
    let mut sum: u32 = 0;
    for pair in out[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    out[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

#[test]
fn the_flow_memory_cap_holds_under_ten_thousand_flows() {
    const CAP: usize = 64 * MB;
    let mut pair = Pair::with_config(LinkConfig::default(), |config| {
        config.flow_memory_cap = CAP;
    });
    let mut opened = 0;
    let mut refused = 0;
    for _ in 0..10_000 {
        match pair
            .joiner
            .node
            .connect_tcp(sharer_socket(ECHO_PORT), pair.now)
        {
            Ok(_) => opened += 1,
            Err(connect_netstack::Error::MemoryCap { used, cap }) => {
                assert!(used <= cap);
                refused += 1;
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    let (flows, memory) = pair.joiner.node.flow_usage();
    assert_eq!(flows, opened);
    assert!(memory <= CAP, "{memory} > {CAP}");
    // 16 full-size flows, then smaller buffers: about 800 fit in 64 MiB.
    assert!(opened > 500, "only {opened} flows fit in 64 MiB");
    assert!(refused > 0, "the cap never bit");
    // The sharer, under the same cap, refuses what does not fit and stays within it.
    pair.run(2_000);
    pair.accept_all();
    let (_, sharer_memory) = pair.sharer.node.flow_usage();
    assert!(sharer_memory <= CAP);
}

#[test]
fn an_idle_connection_survives_ten_quiet_minutes() {
    let mut pair = Pair::new(LinkConfig::default());
    let flows = established_echo(&mut pair);
    let started = pair.now;
    pair.drive_until(1_000_000, |p| p.now - started > Duration::from_secs(600));
    assert!(
        !pair
            .joiner
            .events
            .iter()
            .chain(pair.sharer.events.iter())
            .any(|e| matches!(e, Event::Closed { .. })),
        "idle flow closed"
    );
    exchange(&mut pair, flows, b"still open");
}

/// The joiner as a TUN joiner (no stack of its own; its "kernel" is the test), having
/// sent one UDP packet from its port 5000 to the sharer's DNS port.
fn raw_joiner_that_spoke() -> Pair {
    let mut pair = Pair::with_config(LinkConfig::default(), |config| {
        if config.addresses == [JOINER_IP] {
            config.addresses.clear();
            config.raw = true;
        }
    });
    let mut packet = Vec::new();
    write_udp_packet(
        &mut packet,
        SocketAddrV4::new(JOINER_IP, 5000),
        SocketAddrV4::new(SHARER_IP, DNS_PORT),
    );
    pair.joiner.node.handle_ip_packet(&packet, pair.now);
    pair
}

#[test]
fn raw_mode_carries_whole_ip_packets() {
    let mut pair = raw_joiner_that_spoke();
    let mut served = None;
    let mut reply = vec![0u8; 2048];
    let mut got = None;
    pair.drive_until(10_000, |p| {
        while let Some(event) = p.sharer.events.pop_front() {
            if let Event::Accepted { flow, source, .. } = event {
                assert_eq!(source, SocketAddrV4::new(JOINER_IP, 5000));
                served = Some(flow);
            }
        }
        if let Some(s) = served {
            let mut buf = [0u8; 64];
            if let Ok(Some(n)) = p.sharer.node.recv(s, &mut buf) {
                assert_eq!(&buf[..n], b"spoof");
                p.sharer.node.send(s, b"answer", p.now).unwrap();
            }
        }
        if let Some(n) = p.joiner.node.poll_ip_packet(&mut reply) {
            got = Some(reply[..n].to_vec());
        }
        got.is_some()
    });
    let got = got.unwrap();
    // An IPv4/UDP packet from the shared machine's port 53 to the joiner's port 5000.
    assert_eq!(got[9], 17);
    assert_eq!(&got[12..16], &SHARER_IP.octets());
    assert_eq!(&got[16..20], &JOINER_IP.octets());
    assert_eq!(u16::from_be_bytes([got[20], got[21]]), DNS_PORT);
    assert_eq!(u16::from_be_bytes([got[22], got[23]]), 5000);
    assert_eq!(&got[28..], b"answer");
}

/// The sharer's answer to a SYN from the TUN joiner's kernel, as the kernel would get it.
fn syn_ack_to_raw_joiner(needs_checksums: bool) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};

    let mut pair = raw_joiner_that_spoke();
    let joiner_key = PublicKey::from(&key(2));
    pair.sharer.node.remove_peer(&joiner_key).unwrap();
    let mut config = peer(&key(2), JOINER_IP, None, sharer_policy());
    config.needs_checksums = needs_checksums;
    pair.sharer.node.add_peer(config).unwrap();

    let (src, dst) = (
        SocketAddrV4::new(JOINER_IP, 40000),
        sharer_socket(ECHO_PORT),
    );
    let syn = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 64000,
        window_scale: None,
        max_seg_size: Some(1360),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0];
    packet[2..4].copy_from_slice(&((20 + syn.buffer_len()) as u16).to_be_bytes());
    packet.extend_from_slice(&src.ip().octets());
    packet.extend_from_slice(&dst.ip().octets());
    packet.resize(20 + syn.buffer_len(), 0);
    smoltcp::wire::Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
    syn.emit(
        &mut TcpPacket::new_unchecked(&mut packet[20..]),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        &ChecksumCapabilities::default(),
    );
    pair.joiner.node.handle_ip_packet(&packet, pair.now);

    let mut reply = vec![0u8; 2048];
    let mut got = None;
    pair.drive_until(10_000, |p| {
        p.accept_all();
        while let Some(n) = p.joiner.node.poll_ip_packet(&mut reply) {
            if reply[9] == 6 {
                got = Some(reply[..n].to_vec());
            }
        }
        got.is_some()
    });
    got.unwrap()
}

#[test]
fn tcp_checksums_are_filled_in_only_for_peers_whose_kernel_checks_them() {
    use smoltcp::wire::{IpAddress, TcpPacket};

    let (joiner, sharer) = (IpAddress::Ipv4(JOINER_IP), IpAddress::Ipv4(SHARER_IP));
    let kernel = syn_ack_to_raw_joiner(true);
    let segment = TcpPacket::new_checked(&kernel[20..]).unwrap();
    assert!(segment.syn() && segment.ack(), "not the SYN-ACK");
    assert!(
        segment.verify_checksum(&sharer, &joiner),
        "a TUN joiner's kernel would drop this segment"
    );

    // A peer running this userspace stack (the hub's) is spared the pass over each payload.
    let userspace = syn_ack_to_raw_joiner(false);
    let segment = TcpPacket::new_checked(&userspace[20..]).unwrap();
    assert!(segment.syn() && segment.ack(), "not the SYN-ACK");
    assert_eq!(segment.checksum(), 0);
}

#[test]
fn a_raw_joiner_admits_answers_only_never_the_sharers_own_connections() {
    // The joiner talks first (the sharer learns where it is), as a joiner does.
    let mut pair = raw_joiner_that_spoke();
    pair.drive_until(10_000, |p| {
        p.sharer
            .events
            .iter()
            .any(|e| matches!(e, Event::Accepted { .. }))
    });
    // The joiner's kernel has sshd on 22 and a resolver on 5353; the sharer tries both.
    let now = pair.now;
    let ssh = pair
        .sharer
        .node
        .connect_tcp(SocketAddrV4::new(JOINER_IP, 22), now)
        .unwrap();
    let dns = pair
        .sharer
        .node
        .open_udp(SocketAddrV4::new(JOINER_IP, 5353), now)
        .unwrap();
    pair.sharer.node.send(dns, b"query", now).unwrap();
    let mut delivered = Vec::new();
    let mut buf = vec![0u8; 2048];
    pair.drive_until(3_000, |p| {
        while let Some(n) = p.joiner.node.poll_ip_packet(&mut buf) {
            delivered.push(buf[..n].to_vec());
        }
        p.joiner.node.stats().rx_unsolicited >= 2
    });
    pair.run(500);
    while let Some(n) = pair.joiner.node.poll_ip_packet(&mut buf) {
        delivered.push(buf[..n].to_vec());
    }
    assert!(
        delivered.is_empty(),
        "the joiner's kernel got {delivered:?}"
    );
    assert!(pair.joiner.node.stats().rx_unsolicited >= 2);
    assert!(
        !pair
            .sharer
            .events
            .iter()
            .any(|e| matches!(e, Event::Connected { flow } if *flow == ssh)),
        "the sharer connected to the joiner's sshd"
    );
}

#[test]
fn one_joiner_cannot_take_every_socket_of_the_sharer() {
    let mut pair = Pair::with_config(LinkConfig::default(), |config| {
        config.max_flows_per_peer = 8;
    });
    let mut dialed = Vec::new();
    for _ in 0..20 {
        dialed.push(
            pair.joiner
                .node
                .connect_tcp(sharer_socket(ECHO_PORT), pair.now)
                .unwrap(),
        );
    }
    pair.run(2_000);
    let accepted = pair
        .accept_all()
        .iter()
        .filter(|e| matches!(e, Event::Accepted { .. }))
        .count();
    assert_eq!(accepted, 8);
    assert_eq!(pair.sharer.node.stats().peer_cap_refused, 12);
    assert_eq!(pair.sharer.node.flow_usage().0, 8);
}
