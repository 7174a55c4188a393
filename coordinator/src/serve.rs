//! Serving: binding, the plain-HTTP-only-on-loopback rule, TLS with rustls, and
//! shutdown on Ctrl-C or SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::cli::{Cli, ServeArgs};
use crate::state::{RandomIds, Settings, SystemClock};
use crate::store::Store;

/// Open streams (server-sent events) never finish by themselves: after a shutdown
/// request they get this long, then the hub exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{listen}"));
    // Agents dial the relay at the public host, on the UDP port.
    let public_host = public_url
        .split_once("://")
        .map_or(public_url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let public_host = match public_host.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => public_host,
    };
    let relay_host = if udp_local.ip().is_unspecified() {
        public_host.to_owned()
    } else {
        match udp_local {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        }
    };
    let settings = Settings {
        domain: args.domain.clone(),
        public_url: public_url.clone(),
        relay: format!("{relay_host}:{}", udp_local.port()),
        open_registration: args.open_registration,
    };
    tracing::info!(%listen, relay = %settings.relay, %public_url, database = if store.is_postgres() { "postgres" } else { "sqlite" }, "hub listening");
    let (mut state, updates) =
        crate::state(store, settings, Arc::new(SystemClock), Arc::new(RandomIds));
    let hub_peer =
        crate::hub_peer::HubPeer::start(&state.store, &cli.store.data_dir, udp_local, &RandomIds)
            .await?;
    hub_peer.sync(&state.store).await?;
    state.hub_peer = Some(Arc::new(hub_peer));
    crate::run(listener, udp, state, updates, tls, shutdown_signal()).await?;
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
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err("configuration", cert, e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, private)
    .map_err(|e| tls_err("certificate", cert, e.to_string()))?;
    Ok(Arc::new(config))
}

/// Serves `router` until `shutdown`, then gives open connections a short grace.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut grace = stop_rx.clone();
    let grace = async move {
        let _ = grace.wait_for(|stop| *stop).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let Some(tls) = tls else {
        let mut stop = stop_rx.clone();
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        });
        return tokio::select! {
            result = serve => result,
            () = grace => Ok(()),
        };
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let accept_loop = async {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "accept failed");
                        continue;
                    }
                },
                _ = stop_rx.wait_for(|stop| *stop) => return,
            };
            let acceptor = acceptor.clone();
            let service = router.clone().layer(axum::Extension(ConnectInfo(peer)));
            tokio::spawn(async move {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                else {
                    return;
                };
                let service = TowerToHyperService::new(service);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    accept_loop.await;
    grace.await;
    Ok(())
}
