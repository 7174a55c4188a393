//! The relay with real UDP sockets on loopback: forwarding between agents with a live
//! join, refusal between strangers, and 10,000 random datagrams leave it serving.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use connect_coordinator::clock::{Clock, SystemClock};
use connect_coordinator::metrics::Metrics;
use connect_coordinator::relay::{self, RelayUpdate};
use connect_coordinator::relay_stream;
use connect_coordinator::store::{AgentRow, Store};
use connect_netstack::relay as wire;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Agent {
    socket: UdpSocket,
    slot: u64,
    key: [u8; 32],
}

async fn agent(store: &Store, name: &str, slot: u64) -> Agent {
    let token = format!("token-of-{name}");
    let key = wire::relay_key(&token);
    let row = AgentRow {
        id: format!("ag_{name}"),
        name: name.into(),
        public_key: "AAAA".into(),
        relay_key: connect_coordinator::secrets::relay_key_hex(&token),
        relay_id: slot,
        guest: false,
        home_relay: None,
    };
    store
        .insert_agent(&row, &format!("hash-{name}"), 0)
        .await
        .unwrap();
    Agent {
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        slot,
        key,
    }
}

fn now_ms() -> u64 {
    u64::try_from(SystemClock.now().unix_timestamp_nanos() / 1_000_000).unwrap()
}

async fn recv(socket: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await {
        Ok(Ok(len)) => Some(buf[..len].to_vec()),
        _ => None,
    }
}

impl Agent {
    async fn bind(&self, relay: SocketAddr) {
        let bind = wire::write_bind(&self.key, self.slot, now_ms());
        self.socket.send_to(&bind, relay).await.unwrap();
        let ack = recv(&self.socket).await.expect("no bind answer");
        let Some(wire::Frame::BindAck { observed, .. }) = wire::parse(&ack) else {
            panic!("not a bind answer");
        };
        assert_eq!(
            observed,
            self.socket.local_addr().unwrap(),
            "relay saw another address"
        );
    }

    async fn send(&self, relay: SocketAddr, to: u64, payload: &[u8]) {
        let mut frame = vec![0u8; wire::DATA_HEADER];
        wire::write_data_header(&mut frame, to);
        frame.extend_from_slice(payload);
        self.socket.send_to(&frame, relay).await.unwrap();
    }
}

#[tokio::test]
async fn relays_between_joined_agents_only_and_survives_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let (alice, bob, mallory) = (
        agent(&store, "alice", 11).await,
        agent(&store, "bob", 22).await,
        agent(&store, "mallory", 33).await,
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let (updates, receiver) = mpsc::channel(16);
    let metrics = Arc::new(Metrics::default());
    let cancel = CancellationToken::new();
    let packets = connect_coordinator::own_thread::runtime("relay").unwrap();
    let relay = relay::spawn(
        &packets,
        socket,
        None,
        store.clone(),
        Arc::new(SystemClock),
        relay::Inbox {
            updates: receiver,
            streams: mpsc::channel(1).1,
        },
        metrics.clone(),
        cancel.clone(),
    );
    for agent in [&alice, &bob, &mallory] {
        agent.bind(addr).await;
    }

    // Strangers: nothing passes.
    alice.send(addr, bob.slot, b"before the join").await;
    assert_eq!(recv(&bob.socket).await, None);

    updates
        .send(RelayUpdate::Allow(alice.slot, bob.slot))
        .await
        .unwrap();
    mallory.bind(addr).await;
    alice.send(addr, bob.slot, b"hello bob").await;
    let got = recv(&bob.socket).await.expect("not forwarded");
    assert_eq!(
        wire::parse(&got),
        Some(wire::Frame::Data {
            slot: alice.slot,
            payload: b"hello bob"
        })
    );
    bob.send(addr, alice.slot, b"hello alice").await;
    assert!(recv(&alice.socket).await.is_some());
    // ...and, once both have talked through it, where the other agent is, to both at
    // once, for a direct path.
    let told = recv(&bob.socket).await.expect("no introduction");
    assert_eq!(
        wire::parse(&told),
        Some(wire::Frame::PeerAt {
            slot: alice.slot,
            addr: alice.socket.local_addr().unwrap()
        })
    );
    let told = recv(&alice.socket).await.expect("no introduction");
    assert!(
        matches!(wire::parse(&told), Some(wire::Frame::PeerAt { slot, .. }) if slot == bob.slot)
    );
    // Mallory has no join with either.
    mallory.send(addr, bob.slot, b"let me in").await;
    assert_eq!(recv(&bob.socket).await, None);

    // 10,000 random datagrams from a stranger's socket.
    let noise = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..10_000u32 {
        let len = (i % 200) as usize;
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        // Some look like relay frames, to reach the parsing paths.
        if i % 3 == 0 && len >= 12 {
            bytes[..4].copy_from_slice(if i % 2 == 0 { b"CND1" } else { b"CNB1" });
        }
        noise.send_to(&bytes, addr).await.unwrap();
        // Paced so a receive buffer capped by net.core.rmem_max (no root) holds it.
        if i % 200 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    // Still serving.
    alice.send(addr, bob.slot, b"still here").await;
    let mut delivered = false;
    for _ in 0..20 {
        match recv(&bob.socket).await {
            Some(frame) if frame.ends_with(b"still here") => {
                delivered = true;
                break;
            }
            Some(_) => {}
            None => alice.send(addr, bob.slot, b"still here").await,
        }
    }
    assert!(delivered, "relay stopped serving after the garbage");
    assert!(
        metrics
            .relay_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 9_000
    );

    // A revoked join closes the path.
    updates
        .send(RelayUpdate::Disallow(alice.slot, bob.slot))
        .await
        .unwrap();
    // The relay applies queued updates before reading datagrams: one answered bind
    // proves the revoke is in force.
    mallory.bind(addr).await;
    alice.send(addr, bob.slot, b"after").await;
    assert_eq!(recv(&bob.socket).await, None);

    // A new agent's first bind waits for its key from the store; what it sends right
    // behind the bind (its first WireGuard initiation) is held and forwarded after it,
    // not dropped.
    let carol = agent(&store, "carol", 44).await;
    updates
        .send(RelayUpdate::Allow(carol.slot, bob.slot))
        .await
        .unwrap();
    mallory.bind(addr).await;
    let bind = wire::write_bind(&carol.key, carol.slot, now_ms());
    carol.socket.send_to(&bind, addr).await.unwrap();
    carol.send(addr, bob.slot, b"right behind the bind").await;
    let got = recv(&bob.socket)
        .await
        .expect("the first datagram was dropped");
    assert_eq!(
        wire::parse(&got),
        Some(wire::Frame::Data {
            slot: carol.slot,
            payload: b"right behind the bind"
        })
    );
    cancel.cancel();
    relay.await.unwrap();
}

/// One end of a relay stream, as an agent without UDP holds it.
struct StreamAgent {
    reader: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    writer: tokio::io::WriteHalf<tokio::io::DuplexStream>,
}

impl StreamAgent {
    fn open(streams: &Arc<relay_stream::Streams>) -> Self {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let streams = streams.clone();
        tokio::spawn(async move { streams.serve(theirs).await });
        let (reader, writer) = tokio::io::split(ours);
        Self { reader, writer }
    }

    async fn send(&mut self, frame: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        connect_netstack::io::relay_stream::put_frame(&mut out, frame);
        self.writer.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Vec<u8>> {
        let read = connect_netstack::io::relay_stream::read_frame(&mut self.reader);
        match tokio::time::timeout(Duration::from_millis(500), read).await {
            Ok(Ok(Some(frame))) => Some(frame.to_vec()),
            _ => None,
        }
    }
}

#[tokio::test]
async fn stream_clients_and_udp_clients_relay_to_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let alice = agent(&store, "alice", 11).await;
    let bob = agent(&store, "bob", 22).await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let (updates, receiver) = mpsc::channel(16);
    let (streams, stream_inbox) = relay_stream::Streams::new();
    let streams = Arc::new(streams);
    let cancel = CancellationToken::new();
    let packets = connect_coordinator::own_thread::runtime("relay").unwrap();
    let relay = relay::spawn(
        &packets,
        socket,
        None,
        store.clone(),
        Arc::new(SystemClock),
        relay::Inbox {
            updates: receiver,
            streams: stream_inbox,
        },
        Arc::new(Metrics::default()),
        cancel.clone(),
    );
    alice.bind(addr).await;
    let mut bob_stream = StreamAgent::open(&streams);
    // A bind with another agent's key moves nothing and gets no answer.
    bob_stream
        .send(&wire::write_bind(&alice.key, bob.slot, now_ms()))
        .await;
    assert_eq!(bob_stream.recv().await, None);
    bob_stream
        .send(&wire::write_bind(&bob.key, bob.slot, now_ms()))
        .await;
    let ack = bob_stream
        .recv()
        .await
        .expect("no bind answer on the stream");
    assert!(matches!(
        wire::parse(&ack),
        Some(wire::Frame::BindAck { id: 22, .. })
    ));

    // Strangers still: nothing passes either way.
    alice.send(addr, bob.slot, b"before the join").await;
    assert_eq!(bob_stream.recv().await, None);
    updates
        .send(RelayUpdate::Allow(alice.slot, bob.slot))
        .await
        .unwrap();
    alice.bind(addr).await;
    alice.send(addr, bob.slot, b"hello bob").await;
    let got = bob_stream
        .recv()
        .await
        .expect("not forwarded to the stream");
    assert_eq!(
        wire::parse(&got),
        Some(wire::Frame::Data {
            slot: alice.slot,
            payload: b"hello bob"
        })
    );
    let mut frame = vec![0u8; wire::DATA_HEADER];
    wire::write_data_header(&mut frame, alice.slot);
    frame.extend_from_slice(b"hello alice");
    bob_stream.send(&frame).await;
    let got = recv(&alice.socket)
        .await
        .expect("not forwarded from the stream");
    assert_eq!(
        wire::parse(&got),
        Some(wire::Frame::Data {
            slot: bob.slot,
            payload: b"hello alice"
        })
    );
    // Neither is told where the other is: a stream client has no UDP address.
    assert_eq!(recv(&alice.socket).await, None);
    assert_eq!(bob_stream.recv().await, None);

    // Bob's stream goes away and he binds over UDP: frames follow him there.
    drop(bob_stream);
    bob.bind(addr).await;
    alice.send(addr, bob.slot, b"over udp").await;
    let got = recv(&bob.socket)
        .await
        .expect("not forwarded after the move");
    assert!(got.ends_with(b"over udp"));
    cancel.cancel();
    relay.await.unwrap();
}
