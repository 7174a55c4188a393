//! The user-space joiner's SOCKS5 proxy (protocol by fast-socks5): CONNECT to the shared
//! machine's address (any port the share allows) goes through the tunnel; anything else is
//! refused, so the proxy never becomes a way out to other hosts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use connect_netstack::io::Netstack;
use fast_socks5::server::{Socks5ServerProtocol, SocksServerError, run_udp_proxy_custom};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::net::{TcpListener, TcpStream};

/// Binds the proxy: `wanted`, else 127.0.0.1:1080, else the share's own loopback address
/// on 1080, else any free port there.
pub async fn bind(
    wanted: Option<SocketAddr>,
    share_loopback: Ipv4Addr,
) -> std::io::Result<TcpListener> {
    if let Some(addr) = wanted {
        return TcpListener::bind(addr).await;
    }
    for addr in [
        SocketAddr::from((Ipv4Addr::LOCALHOST, 1080)),
        SocketAddr::from((share_loopback, 1080)),
        SocketAddr::from((share_loopback, 0)),
    ] {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return Ok(listener);
        }
    }
    TcpListener::bind((share_loopback, 0)).await
}

/// UDP ASSOCIATE: datagrams the client addresses to the shared machine (or the share's
/// loopback alias) go through the tunnel, one tunnel flow per port; answers come back
/// with the SOCKS5 UDP header. Anything addressed elsewhere is dropped.
async fn relay_udp<S: Into<std::net::UdpSocket>>(
    inbound: S,
    net: Arc<Netstack>,
    machine: Ipv4Addr,
    share_loopback: Ipv4Addr,
) -> Result<(), SocksServerError> {
    let io = |source, context| SocksServerError::Io { source, context };
    let socket = tokio::net::UdpSocket::from_std(inbound.into())
        .map_err(|e| io(e, "adopting the UDP socket"))?;
    let (answers_tx, mut answers) = tokio::sync::mpsc::channel::<(u16, bytes::Bytes)>(256);
    // One tunnel flow per destination port, each in a task of its own.
    let mut flows: std::collections::HashMap<u16, tokio::sync::mpsc::Sender<Vec<u8>>> =
        Default::default();
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, from) = received.map_err(|e| io(e, "receiving from the client"))?;
                client = Some(from);
                let Ok((0, target, payload)) = fast_socks5::parse_udp_request(&buf[..len]).await else {
                    continue;
                };
                let port = match target {
                    TargetAddr::Ip(SocketAddr::V4(addr)) if *addr.ip() == machine || *addr.ip() == share_loopback => addr.port(),
                    TargetAddr::Ip(_) | TargetAddr::Domain(..) => continue,
                };
                if let std::collections::hash_map::Entry::Vacant(slot) = flows.entry(port) {
                    let answers_tx = answers_tx.clone();
                    let tag_with_port = move |answer| {
                        let answers_tx = answers_tx.clone();
                        async move { answers_tx.send((port, answer)).await.is_ok() }
                    };
                    let Some(tx) = crate::udp_flow::spawn(&net, SocketAddrV4::new(machine, port), tag_with_port).await else {
                        continue;
                    };
                    slot.insert(tx);
                }
                if let Some(flow) = flows.get(&port) {
                    let _ = flow.try_send(payload.to_vec());
                }
            }
            answer = answers.recv() => {
                let (Some((port, bytes)), Some(client)) = (answer, client) else { continue };
                let Ok(mut datagram) = fast_socks5::new_udp_header(SocketAddr::from((machine, port))) else {
                    continue;
                };
                datagram.extend_from_slice(&bytes);
                let _ = socket.send_to(&datagram, client).await;
            }
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    net: Arc<Netstack>,
    machine: Ipv4Addr,
    share_loopback: Ipv4Addr,
) {
    while let Ok((client, _)) = listener.accept().await {
        let net = net.clone();
        tokio::spawn(async move {
            if let Err(err) = handle(client, &net, machine, share_loopback).await {
                tracing::debug!(%err, "socks request failed");
            }
        });
    }
}

async fn handle(
    client: TcpStream,
    net: &Arc<Netstack>,
    machine: Ipv4Addr,
    share_loopback: Ipv4Addr,
) -> anyhow::Result<()> {
    let local = client.local_addr()?.ip();
    let (proto, command, target) = Socks5ServerProtocol::accept_no_auth(client)
        .await?
        .read_command()
        .await?;
    match command {
        Socks5Command::TCPConnect => {}
        Socks5Command::UDPAssociate => {
            let net = net.clone();
            run_udp_proxy_custom(proto, &target, Some(local), local, move |inbound| {
                relay_udp(inbound, net, machine, share_loopback)
            })
            .await?;
            return Ok(());
        }
        Socks5Command::TCPBind => {
            proto.reply_error(&ReplyError::CommandNotSupported).await?;
            return Ok(());
        }
    }
    // The machine's tunnel address, or the share's loopback alias for it.
    let port = match target {
        TargetAddr::Ip(SocketAddr::V4(addr))
            if *addr.ip() == machine || *addr.ip() == share_loopback =>
        {
            addr.port()
        }
        TargetAddr::Ip(_) | TargetAddr::Domain(..) => {
            proto.reply_error(&ReplyError::ConnectionNotAllowed).await?;
            return Ok(());
        }
    };
    match net.connect_tcp(SocketAddrV4::new(machine, port)).await {
        Ok(mut tunnel) => {
            let mut client = proto
                .reply_success(SocketAddr::new(IpAddr::V4(machine), port))
                .await?;
            let _ = client.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut tunnel).await;
        }
        Err(_) => proto.reply_error(&ReplyError::ConnectionRefused).await?,
    }
    Ok(())
}
