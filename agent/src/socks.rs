//! The user-space joiner's SOCKS5 proxy (protocol by fast-socks5): CONNECT to the shared
//! machine's address (any port the share allows) goes through the tunnel; anything else is
//! refused, so the proxy never becomes a way out to other hosts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use connect_netstack::driver::Netstack;
use fast_socks5::server::Socks5ServerProtocol;
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
    net: &Netstack,
    machine: Ipv4Addr,
    share_loopback: Ipv4Addr,
) -> anyhow::Result<()> {
    let (proto, command, target) = Socks5ServerProtocol::accept_no_auth(client)
        .await?
        .read_command()
        .await?;
    if command != Socks5Command::TCPConnect {
        proto.reply_error(&ReplyError::CommandNotSupported).await?;
        return Ok(());
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
