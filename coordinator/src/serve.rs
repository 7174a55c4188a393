//! Serving: binding, the plain-HTTP-only-on-loopback rule, TLS with rustls, and
//! shutdown on Ctrl-C or SIGTERM.

use crate::front::Front;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::cli::{Cli, ServeArgs};
use crate::clock::SystemClock;
use crate::ids::RandomIds;
use crate::state::Settings;
use crate::store::Store;

/// Open streams (server-sent events) never finish by themselves: after a shutdown
/// request they get this long, then the hub exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Time for a client to send a request's headers, and to start the next one.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEADER_BYTES: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing plain HTTP on {0}: give --tls-cert/--tls-key, or --insecure")]
    PlainHttpExposed(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load TLS {what} from {path}: {reason}")]
    Tls {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    HubPeer(#[from] crate::hub_peer::HubPeerError),
    #[error("cannot set up TLS to HTTPS upstreams: {0}")]
    UpstreamTls(#[from] rustls::Error),
    #[error("--public-url: {0}")]
    PublicUrl(crate::public_url::BadPublicUrl),
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

pub async fn serve_main(cli: Cli) -> Result<(), ServeError> {
    let args: ServeArgs = cli.serve;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.insecure {
        return Err(ServeError::PlainHttpExposed(args.listen));
    }
    let store = Store::open(cli.store.database.as_deref(), &cli.store.data_dir).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: args.listen,
            source,
        })?;
    let udp_addr = args.udp.unwrap_or(args.listen);
    let udp = UdpSocket::bind(udp_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: udp_addr,
            source,
        })?;
    let listen = listener.local_addr()?;
    let udp_local = udp.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = match args.public_url.clone() {
        Some(url) => url,
        None => format!("{scheme}://{listen}")
            .parse()
            .map_err(ServeError::PublicUrl)?,
    };
    // Agents dial the relay at the public host, on the UDP port.
    let public_host = public_url.host();
    let relay_host = if udp_local.ip().is_unspecified() {
        public_host.to_owned()
    } else {
        match udp_local {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        }
    };
    let probe = bind_probe(args.probe_udp, udp_local).await?;
    let probe_port = probe
        .as_ref()
        .and_then(|p| p.local_addr().ok())
        .map(|a| a.port());
    if let Some(probe) = probe {
        tokio::spawn(crate::probe::serve(probe));
    }
    let settings = Settings {
        domain: args.domain.clone(),
        public_url: public_url.clone(),
        relay: format!("{relay_host}:{}", udp_local.port()),
        probe: probe_port.map(|port| format!("{relay_host}:{port}")),
        open_registration: args.open_registration,
        metrics_token: args.metrics_token.clone(),
    };
    tracing::info!(%listen, relay = %settings.relay, %public_url, database = if store.is_postgres() { "postgres" } else { "sqlite" }, "hub listening");
    let (mut state, inbox) =
        crate::state(store, settings, Arc::new(SystemClock), Arc::new(RandomIds));
    state.limits = Arc::new(crate::limits::Limits::exempting(
        args.rate_limit_exempt.clone(),
    ));
    let packets = crate::own_thread::runtime("packets")?;
    let hub_peer = crate::hub_peer::HubPeer::start(
        &packets,
        &state.store,
        &cli.store.data_dir,
        state.relay_streams.clone(),
        &RandomIds,
    )
    .await?;
    let hub_peer = Arc::new(hub_peer);
    state.upstream = Some(Arc::new(crate::upstream::Upstream::new(
        hub_peer.clone(),
        args.proxy_timeout,
    )?));
    state.hub_peer = Some(hub_peer);
    crate::run(
        &packets,
        listener,
        udp,
        state,
        inbox,
        tls,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let tls_err = |what, path: &Path, reason: String| ServeError::Tls {
        what,
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| tls_err("certificate", cert, e.to_string()))?;
    let key_pem = std::fs::read(key).map_err(|e| tls_err("key", key, e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "certificate",
            cert,
            "no PEM certificate found".into(),
        ));
    }
    let private = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| tls_err("key", key, e.to_string()))?
        .ok_or_else(|| tls_err("key", key, "no PEM private key found".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err("configuration", cert, e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, private)
    .map_err(|e| tls_err("certificate", cert, e.to_string()))?;
    // HTTP/2 for visitors (and agents) that offer it; HTTP/1.1 for the rest.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `front` until `shutdown`, then gives open connections a short grace.
///
/// Every connection, plain or TLS, gets the same limits: request headers must arrive
/// within [`HEADER_TIMEOUT`] (which also closes keep-alive connections idle that long)
/// and fit in [`MAX_HEADER_BYTES`]; larger gets 431.
pub async fn serve_http(
    listener: TcpListener,
    front: Front,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    // No extended CONNECT (RFC 8441) is advertised, so browsers open their WebSockets on
    // HTTP/1.1 connections, where the upgrade is bridged as it always was.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    continue;
                }
            },
            () = stopped(&mut stop_rx) => break,
        };
        let _ = stream.set_nodelay(true);
        let service = front.connection(peer, acceptor.is_some());
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let serve = async {
                match acceptor {
                    None => serve_one(&builder, stream, service).await,
                    Some(acceptor) => {
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            serve_one(&builder, stream, service).await;
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => {}
                () = stopped(&mut stop) => {
                    // Open streams never end by themselves: a short grace, then close.
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                }
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await;
    Ok(())
}

/// Serves HTTP on one accepted connection, plain or TLS, until it closes.
async fn serve_one<S>(
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    stream: S,
    service: Front,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(service);
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

/// The netcheck probe port: `--probe-udp`, else the relay's port + 1. A hub without one
/// still works; `connect netcheck` then cannot tell the NAT kind.
async fn bind_probe(
    asked: Option<SocketAddr>,
    relay: SocketAddr,
) -> Result<Option<UdpSocket>, ServeError> {
    if let Some(addr) = asked {
        return UdpSocket::bind(addr)
            .await
            .map(Some)
            .map_err(|source| ServeError::Bind { addr, source });
    }
    let Some(port) = relay.port().checked_add(1).filter(|_| relay.port() != 0) else {
        return Ok(None);
    };
    let addr = SocketAddr::new(relay.ip(), port);
    match UdpSocket::bind(addr).await {
        Ok(socket) => Ok(Some(socket)),
        Err(err) => {
            tracing::warn!(%addr, %err, "no netcheck probe port");
            Ok(None)
        }
    }
}

/// Resolves once shutdown was asked for (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
