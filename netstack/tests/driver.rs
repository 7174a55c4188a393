//! The tokio driver with real sockets on loopback: a sharer node bridges tunnel flows to
//! real TCP and UDP servers, a joiner node dials them as streams.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use common::{JOINER_IP, SHARER_IP, key, peer};
use connect_netstack::io::{Changes, DriverError, Netstack, PeerSet};
use connect_netstack::{NodeConfig, Policy, Protocol, PublicKey, Route, Target};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

struct Servers {
    echo: SocketAddr,
    speaks_first: SocketAddr,
    half_close: SocketAddr,
    refused: SocketAddr,
    udp_echo: SocketAddr,
}

async fn start_servers() -> Servers {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    let banner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let banner_addr = banner.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = banner.accept().await {
            let _ = stream.write_all(b"SSH-2.0-connect-test\r\n").await;
        }
    });
    let half = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let half_addr = half.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = half.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.unwrap();
                stream
                    .write_all(format!("got {} bytes", got.len()).as_bytes())
                    .await
                    .unwrap();
                stream.shutdown().await.unwrap();
            });
        }
    });
    // A port with nothing listening: bind, read the port, close.
    let refused = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = udp.recv_from(&mut buf).await {
            buf[..len].reverse();
            let _ = udp.send_to(&buf[..len], from).await;
        }
    });
    Servers {
        echo: echo_addr,
        speaks_first: banner_addr,
        half_close: half_addr,
        refused,
        udp_echo: udp_addr,
    }
}

fn route(protocol: Protocol, port: u16, target: SocketAddr) -> Route {
    Route {
        protocol,
        port,
        target: Target::new(target.ip().to_string(), target.port()),
    }
}

/// A sharer serving `servers` and a joiner that may dial it, both on loopback UDP.
async fn pair() -> (Netstack, Netstack) {
    let (sharer, joiner, _) = pair_with_set().await;
    (sharer, joiner)
}

/// As [`pair`], with the sharer's joiner added through a [`PeerSet`].
async fn pair_with_set() -> (Netstack, Netstack, PeerSet) {
    let servers = start_servers().await;
    let policy = Policy {
        routes: vec![
            route(Protocol::Tcp, 7, servers.echo),
            route(Protocol::Tcp, 22, servers.speaks_first),
            route(Protocol::Tcp, 80, servers.half_close),
            route(Protocol::Tcp, 81, servers.refused),
            route(Protocol::Udp, 53, servers.udp_echo),
        ],
        all_ports: None,
        closed_tcp: Vec::new(),
    };
    let mut sharer_config = NodeConfig::new(key(1));
    sharer_config.addresses = vec![SHARER_IP];
    let sharer =
        Netstack::spawn(sharer_config, UdpSocket::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let mut joiner_config = NodeConfig::new(key(2));
    joiner_config.addresses = vec![JOINER_IP];
    let joiner =
        Netstack::spawn(joiner_config, UdpSocket::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let mut joiners = PeerSet::new();
    joiners
        .set(&sharer, [peer(&key(2), JOINER_IP, None, policy)])
        .await
        .unwrap();
    joiner
        .add_peer(peer(
            &key(1),
            SHARER_IP,
            Some(sharer.local_addr()),
            Policy::default(),
        ))
        .await
        .unwrap();
    (sharer, joiner, joiners)
}

fn at(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(SHARER_IP, port)
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in 30 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_echo_through_real_sockets() {
    let (_sharer, joiner) = pair().await;
    let stream = within("connect", joiner.connect_tcp(at(7))).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    const TOTAL: usize = 10 * 1024 * 1024;
    let writing = tokio::spawn(async move {
        let mut hash = Sha256::new();
        let mut chunk = vec![0u8; 50_000];
        let mut sent = 0;
        while sent < TOTAL {
            let len = chunk.len().min(TOTAL - sent);
            common::pattern(sent, &mut chunk[..len]);
            writer.write_all(&chunk[..len]).await.unwrap();
            hash.update(&chunk[..len]);
            sent += len;
        }
        writer.shutdown().await.unwrap();
        hash.finalize()
    });
    let mut hash = Sha256::new();
    let mut received = 0;
    let mut buf = vec![0u8; 65536];
    within("echo", async {
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            received += n;
        }
    })
    .await;
    assert_eq!(received, TOTAL);
    assert_eq!(hash.finalize(), writing.await.unwrap());
}

#[tokio::test]
async fn half_close_passes_both_ways() {
    let (_sharer, joiner) = pair().await;
    let mut stream = within("connect", joiner.connect_tcp(at(80))).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    within("answer", stream.read_to_string(&mut answer))
        .await
        .unwrap();
    assert_eq!(answer, "got 5 bytes");
}

/// A reader that lags lets the node's queue for it fill, so the node stops reading the
/// flow; once the reader goes on, it says so and gets the rest.
#[tokio::test]
async fn a_reader_that_lags_gets_everything_once_it_reads_again() {
    const LEN: usize = 600 * 1024;
    let (_sharer, joiner) = pair().await;
    let stream = within("connect", joiner.connect_tcp(at(7))).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = tokio::spawn(async move {
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        writer.write_all(&data).await.unwrap();
        writer
    });
    // The reader lags: the echo fills the node's queue for it (four chunks) and more.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut got = vec![0; LEN];
    within("echo after the lag", reader.read_exact(&mut got))
        .await
        .unwrap();
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    drop(writing.await.unwrap());
}

/// A dropped stream ends its flow as a dropped socket does: the target reads EOF, and
/// its answer, which nobody will read, is refused; no flow is left on either side.
#[tokio::test]
async fn a_dropped_stream_frees_its_flow_on_both_sides() {
    let (sharer, joiner) = pair().await;
    for port in [7, 80] {
        let mut stream = within("connect", joiner.connect_tcp(at(port)))
            .await
            .unwrap();
        stream.write_all(b"hello").await.unwrap();
        stream.flush().await.unwrap();
        drop(stream);
    }
    within("flows freed", async {
        loop {
            let (near, far) = (joiner.stats().await.unwrap(), sharer.stats().await.unwrap());
            if near.flows == 0 && far.flows == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_target_that_speaks_first_is_heard() {
    let (_sharer, joiner) = pair().await;
    let mut stream = within("connect", joiner.connect_tcp(at(22))).await.unwrap();
    let mut banner = [0u8; 22];
    within("banner", stream.read_exact(&mut banner))
        .await
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-connect-test\r\n");
}

#[tokio::test]
async fn refused_target_and_unexposed_port_are_refused() {
    let (sharer, joiner) = pair().await;
    let refused = within("connect", joiner.connect_tcp(at(81))).await;
    assert!(matches!(refused, Err(DriverError::Refused)), "{refused:?}");
    let unexposed = within("connect", joiner.connect_tcp(at(5432))).await;
    assert!(
        matches!(unexposed, Err(DriverError::Refused)),
        "{unexposed:?}"
    );
    let stats = sharer.stats().await.unwrap();
    assert_eq!(stats.stats.policy_refused, 1);
    assert_eq!(stats.flows, 0);
}

#[tokio::test]
async fn udp_round_trips_through_a_real_socket() {
    let (_sharer, joiner) = pair().await;
    let mut flow = joiner.open_udp(at(53)).await.unwrap();
    for i in 0u32..20 {
        flow.send(&i.to_be_bytes()).await.unwrap();
        let answer = within("udp answer", flow.recv()).await.unwrap();
        let mut expected = i.to_be_bytes();
        expected.reverse();
        assert_eq!(&answer[..], &expected);
    }
}

#[tokio::test]
async fn removing_the_peer_cuts_a_live_connection() {
    let (sharer, joiner) = pair().await;
    let mut stream = within("connect", joiner.connect_tcp(at(7))).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    within("echo", stream.read_exact(&mut pong)).await.unwrap();
    sharer.remove_peer(PublicKey::from(&key(2))).await.unwrap();
    assert_eq!(sharer.stats().await.unwrap().flows, 0);
    // The joiner's side is reset at once, not left waiting on a silent connection.
    let read = within("reset", stream.read(&mut pong)).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "data after the peer was removed: {read:?}"
    );
}

/// A peer set changes only what changed: an unchanged joiner keeps its open connection
/// while others come and go; a changed one is replaced, which ends its flows.
#[tokio::test]
async fn a_peer_set_leaves_unchanged_peers_and_their_flows_alone() {
    let (sharer, joiner, mut joiners) = pair_with_set().await;
    let mut stream = within("connect", joiner.connect_tcp(at(7))).await.unwrap();
    let echo = async |stream: &mut connect_netstack::io::FlowStream, text: &[u8]| {
        stream.write_all(text).await?;
        let mut got = vec![0; text.len()];
        stream.read_exact(&mut got).await?;
        std::io::Result::Ok(got)
    };
    assert_eq!(
        within("echo", echo(&mut stream, b"one")).await.unwrap(),
        b"one"
    );

    let current: Vec<_> = joiners.configs().cloned().collect();
    let other = peer(
        &key(3),
        std::net::Ipv4Addr::new(172, 16, 0, 4),
        None,
        Policy::default(),
    );
    let mut wanted = current.clone();
    wanted.push(other.clone());
    let changes = joiners.set(&sharer, wanted.clone()).await.unwrap();
    assert_eq!(
        changes,
        Changes {
            removed: vec![],
            added: vec![other.public_key]
        }
    );
    assert_eq!(
        joiners.set(&sharer, wanted).await.unwrap(),
        Changes::default()
    );
    let changes = joiners.set(&sharer, current.clone()).await.unwrap();
    assert_eq!(
        changes,
        Changes {
            removed: vec![other.public_key],
            added: vec![]
        }
    );
    assert_eq!(
        within("echo", echo(&mut stream, b"two")).await.unwrap(),
        b"two"
    );
    let peers = sharer.stats().await.unwrap().peers;
    assert_eq!(peers.len(), 1, "only the joiner is configured");

    let mut narrower = current[0].clone();
    narrower.policy.routes.retain(|route| route.port != 7);
    let key = narrower.public_key;
    let changes = joiners.set(&sharer, [narrower]).await.unwrap();
    assert_eq!(
        changes,
        Changes {
            removed: vec![key],
            added: vec![key]
        }
    );
    assert!(
        within("echo after the change", echo(&mut stream, b"three"))
            .await
            .is_err(),
        "a connection the new policy does not allow survived the change"
    );
}
