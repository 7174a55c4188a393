//! Data-plane benchmarks, each beside its ceiling measured in the same run:
//!
//! - `seal/*`: ChaCha20-Poly1305 on 1420-byte packets, with ring (the machine's fastest
//!   sealing) and through boringtun (the cipher our tunnel really uses);
//! - `tcp/serve_dial`: bulk TCP through two nodes (dial → WireGuard → serve) in one
//!   process, no sockets;
//! - `rtt/64b`: a 64-byte request and its answer through the same path;
//! - a summary table at the end, and memory per idle TCP flow for 10,000 flows.
//!
//! Run with `cargo bench -p connect-netstack` (or `scripts/bench.sh`).
#![allow(clippy::unwrap_used, clippy::wildcard_enum_match_arm)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use connect_netstack::{
    Event, FlowId, Ipv4Net, Node, NodeConfig, PeerConfig, Policy, Protocol, PublicKey, Route,
    StaticSecret, Target,
};
use criterion::{Criterion, Throughput, criterion_group};

const PACKET: usize = 1420;
const SHARER_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
const JOINER_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 3);

fn ring_sealer() -> impl FnMut(&mut [u8]) {
    use ring::aead::{CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7; 32]).unwrap());
    let mut counter = 0u64;
    move |buf: &mut [u8]| {
        counter += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_le_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                buf,
            )
            .unwrap();
        let _ = std::hint::black_box(tag);
    }
}

/// Two boringtun tunnels with a finished handshake; returns the initiator.
fn boringtun_session() -> Tunn {
    let (a, b) = (StaticSecret::from([1; 32]), StaticSecret::from([2; 32]));
    let mut ta = Tunn::new(a.clone(), PublicKey::from(&b), None, None, 1, None);
    let mut tb = Tunn::new(b, PublicKey::from(&a), None, None, 2, None);
    let mut buf = vec![0u8; 2048];
    let mut buf2 = vec![0u8; 2048];
    let TunnResult::WriteToNetwork(init) = ta.format_handshake_initiation(&mut buf, false) else {
        panic!("no initiation")
    };
    let TunnResult::WriteToNetwork(resp) = tb.decapsulate(None, init, &mut buf2) else {
        panic!("no response")
    };
    let _ = ta.decapsulate(None, resp, &mut buf);
    ta
}

fn boringtun_sealer() -> impl FnMut(&mut [u8]) {
    let mut tunn = boringtun_session();
    let mut out = vec![0u8; PACKET + 64];
    move |packet: &mut [u8]| {
        std::hint::black_box(tunn.encapsulate(packet, &mut out));
    }
}

/// Two nodes wired back to back with no latency: what the stack itself costs.
struct Bench {
    sharer: Node,
    joiner: Node,
    sharer_addr: SocketAddr,
    joiner_addr: SocketAddr,
    buf: Vec<u8>,
}

impl Bench {
    fn new(tcp_buffer: usize, cap: usize) -> Self {
        let now = Instant::now();
        let (sk, jk) = (StaticSecret::from([1; 32]), StaticSecret::from([2; 32]));
        let sharer_addr: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let joiner_addr: SocketAddr = "192.0.2.2:51820".parse().unwrap();
        let config = |key: StaticSecret, ip| {
            let mut c = NodeConfig::new(key);
            c.addresses = vec![ip];
            c.tcp_buffer = tcp_buffer;
            c.flow_memory_cap = cap;
            c
        };
        let mut sharer = Node::new(config(sk.clone(), SHARER_IP), 1, now);
        let mut joiner = Node::new(config(jk.clone(), JOINER_IP), 2, now);
        // As the agents do: a sharer cannot know whether a joiner's packets end in a
        // kernel, a joiner knows its sharer runs this stack.
        let peer = |key: &StaticSecret, ip, endpoint, policy, needs_checksums| PeerConfig {
            public_key: PublicKey::from(key),
            allowed_ips: vec![Ipv4Net::new(ip, 32).unwrap()],
            endpoint,
            persistent_keepalive: None,
            policy,
            needs_checksums,
        };
        let policy = Policy {
            routes: vec![Route {
                protocol: Protocol::Tcp,
                port: 80,
                target: Target::new("127.0.0.1", 80),
            }],
            all_ports: None,
            closed_tcp: Vec::new(),
        };
        sharer
            .add_peer(peer(&jk, JOINER_IP, None, policy, true))
            .unwrap();
        joiner
            .add_peer(peer(
                &sk,
                SHARER_IP,
                Some(sharer_addr),
                Policy::default(),
                false,
            ))
            .unwrap();
        Self {
            sharer,
            joiner,
            sharer_addr,
            joiner_addr,
            buf: vec![0; 2048],
        }
    }

    /// Moves every pending datagram across, both ways, until both are quiet.
    fn pump(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let now = Instant::now();
            let mut any = false;
            while let Some(t) = self.joiner.poll_transmit(&mut self.buf) {
                self.sharer
                    .handle_datagram(self.joiner_addr, &self.buf[t.range()], now);
                any = true;
                moved += 1;
            }
            while let Some(t) = self.sharer.poll_transmit(&mut self.buf) {
                self.joiner
                    .handle_datagram(self.sharer_addr, &self.buf[t.range()], now);
                any = true;
                moved += 1;
            }
            if !any {
                return moved;
            }
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        for node in [&mut self.sharer, &mut self.joiner] {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
        }
    }

    /// Opens a flow joiner → sharer:80 and waits until both ends know it.
    fn open(&mut self) -> (FlowId, FlowId) {
        let flow = self
            .joiner
            .connect_tcp(SocketAddrV4::new(SHARER_IP, 80), Instant::now())
            .unwrap();
        let mut served = None;
        let mut connected = false;
        for _ in 0..1000 {
            self.pump();
            while let Some(event) = self.sharer.poll_event() {
                if let Event::Accepted { flow, .. } = event {
                    self.sharer
                        .handle_flow_connected(flow, Instant::now())
                        .unwrap();
                    served = Some(flow);
                }
            }
            while let Some(event) = self.joiner.poll_event() {
                connected |= event == Event::Connected { flow };
            }
            if connected && let Some(served) = served {
                return (flow, served);
            }
            self.timers();
        }
        panic!("flow did not open");
    }

    /// Sends `total` bytes sharer → joiner on `flows`; returns the elapsed time.
    fn transfer(&mut self, (flow, served): (FlowId, FlowId), total: usize) -> Duration {
        let chunk = vec![0x5au8; 256 * 1024];
        let mut sink = vec![0u8; 256 * 1024];
        let (mut sent, mut received) = (0, 0);
        let started = Instant::now();
        while received < total {
            let now = Instant::now();
            while sent < total {
                let n = self
                    .sharer
                    .send(served, &chunk[..chunk.len().min(total - sent)], now)
                    .unwrap();
                sent += n;
                if n == 0 {
                    break;
                }
            }
            self.pump();
            while let Ok(Some(n)) = self.joiner.recv(flow, &mut sink) {
                received += n;
            }
            while self.sharer.poll_event().is_some() {}
            while self.joiner.poll_event().is_some() {}
            self.timers();
        }
        started.elapsed()
    }

    /// One 64-byte request joiner → sharer and a 64-byte answer back.
    fn round_trip(&mut self, (flow, served): (FlowId, FlowId)) {
        let msg = [1u8; 64];
        let mut buf = [0u8; 64];
        let now = Instant::now();
        assert_eq!(self.joiner.send(flow, &msg, now).unwrap(), 64);
        let mut got = 0;
        while got < 64 {
            self.pump();
            while let Ok(Some(n)) = self.sharer.recv(served, &mut buf) {
                got += n;
            }
        }
        assert_eq!(self.sharer.send(served, &msg, Instant::now()).unwrap(), 64);
        let mut back = 0;
        while back < 64 {
            self.pump();
            while let Ok(Some(n)) = self.joiner.recv(flow, &mut buf) {
                back += n;
            }
        }
        while self.sharer.poll_event().is_some() {}
        while self.joiner.poll_event().is_some() {}
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Bytes(PACKET as u64));
    let mut packet = vec![0u8; PACKET];
    let mut ring = ring_sealer();
    group.bench_function("ring_chacha20poly1305_1420B", |b| {
        b.iter(|| ring(&mut packet))
    });
    let mut bt = boringtun_sealer();
    group.bench_function("boringtun_encapsulate_1420B", |b| {
        b.iter(|| bt(&mut packet))
    });
    group.finish();

    let mut group = c.benchmark_group("tcp");
    const BULK: usize = 16 * 1024 * 1024;
    group.throughput(Throughput::Bytes(BULK as u64));
    group.sample_size(10);
    let mut bench = Bench::new(512 * 1024, 1 << 30);
    let flows = bench.open();
    group.bench_function("serve_dial_bulk", |b| {
        b.iter(|| bench.transfer(flows, BULK))
    });
    group.finish();

    let mut group = c.benchmark_group("rtt");
    group.bench_function("serve_dial_64B", |b| b.iter(|| bench.round_trip(flows)));
    group.finish();
}

criterion_group!(netstack, benches);

fn gbits(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9
}

fn seal_rate(mut seal: impl FnMut(&mut [u8])) -> f64 {
    let mut packet = vec![0u8; PACKET];
    let count = 200_000;
    let started = Instant::now();
    for _ in 0..count {
        seal(&mut packet);
    }
    gbits(count * PACKET, started.elapsed())
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The figures the README quotes, measured again in this run and printed side by side.
fn summary() {
    let ring = seal_rate(ring_sealer());
    let boringtun = seal_rate(boringtun_sealer());
    let mut bench = Bench::new(512 * 1024, 1 << 30);
    let flows = bench.open();
    let bulk = 128 * 1024 * 1024;
    let tcp = gbits(bulk, bench.transfer(flows, bulk));
    let rounds = 20_000;
    let started = Instant::now();
    for _ in 0..rounds {
        bench.round_trip(flows);
    }
    let rtt = started.elapsed() / rounds;

    // 10,000 idle flows: what the cap accounts and what the process really grew by.
    let mut idle = Bench::new(512 * 1024, 1 << 30);
    let before = rss_bytes();
    let count = 10_000;
    for _ in 0..count {
        idle.open();
    }
    let grown = rss_bytes().saturating_sub(before);
    let (flows_open, accounted) = idle.joiner.flow_usage();
    assert_eq!(flows_open, count);

    println!();
    println!("| measure | figure | ceiling in this run | ratio |");
    println!("|---|---|---|---|");
    println!("| ChaCha20-Poly1305 seal, ring, 1420 B | {ring:.2} Gbit/s | - | - |");
    println!(
        "| boringtun encapsulate, 1420 B | {boringtun:.2} Gbit/s | {ring:.2} Gbit/s (ring) | {:.0}% |",
        100.0 * boringtun / ring
    );
    println!(
        "| TCP bulk, dial → serve, one flow, one core | {tcp:.2} Gbit/s | {ring:.2} Gbit/s (ring) | {:.0}% |",
        100.0 * tcp / ring
    );
    println!(
        "| 64 B request/response through both stacks | {:.1} µs | - | - |",
        rtt.as_secs_f64() * 1e6
    );
    println!(
        "| memory per idle TCP flow, 10,000 flows (both ends in one process) | {:.1} KiB RSS, {:.0} KiB reserved per end | - | - |",
        grown as f64 / count as f64 / 1024.0,
        accounted as f64 / count as f64 / 1024.0
    );
}

fn main() {
    netstack();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
