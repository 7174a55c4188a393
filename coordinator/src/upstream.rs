//! Pooled HTTP/1 connections from the hub to sharing machines, through the hub's own
//! WireGuard peer: hyper-util's client with a connector that dials the tunnel, and speaks
//! TLS over it to a share served from a local HTTPS server (`share --https-port`). A page
//! with forty assets costs one tunnel connection (or a few), not forty handshakes.

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::uri::{self, Authority, PathAndQuery, Scheme};
use axum::http::{Request, Response, Uri};
use connect_netstack::io::FlowStream;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::addresses::machine_ip;
use crate::hub_peer::Shared;
use crate::store::HttpShare;

/// How long a public request waits for the tunnel to the sharing machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle tunnel connections kept per sharing machine and port, and for how long.
const IDLE_PER_HOST: usize = 16;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Upstream {
    client: Client<TunnelConnector, Body>,
    answer_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("the sharing machine did not answer within {0:?}")]
    Timeout(Duration),
}

impl Upstream {
    /// # Errors
    /// When TLS cannot be set up for HTTPS upstreams.
    pub fn new(hub: Shared, answer_timeout: Duration) -> Result<Self, rustls::Error> {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .build(TunnelConnector {
                hub,
                tls: tokio_rustls::TlsConnector::from(crate::upstream_tls::config()?),
            });
        Ok(Self {
            client,
            answer_timeout,
        })
    }

    /// Sends `request` to the sharing machine of the share `target` was made for, on an
    /// idle pooled connection when there is one. The request keeps its own `Host`.
    pub async fn send(
        &self,
        target: &Target,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        if let Some(uri) = target.uri(request.uri().path_and_query()) {
            *request.uri_mut() = uri;
        }
        // Visitors may speak HTTP/2 to the hub; the sharing machine is always asked in
        // HTTP/1.1.
        *request.version_mut() = axum::http::Version::HTTP_11;
        match tokio::time::timeout(self.answer_timeout, self.client.request(request)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(UpstreamError::Timeout(self.answer_timeout)),
        }
    }
}

/// Where a public share's requests go: `SCHEME://mA-B-C-D.KEY:PORT`, the pool's key for
/// it, made once per share rather than formatted and parsed on every request.
///
/// The pool is keyed by the share itself (its lookup), not only the address: an address
/// block and a chosen name freed by an ended share are reused by later ones, which must
/// never get the old share's connections.
#[derive(Debug, Clone)]
pub struct Target {
    scheme: Scheme,
    authority: Authority,
}

impl Target {
    /// None only for a share whose pool host would not parse (never for a stored one).
    pub fn of(share: &HttpShare) -> Option<Self> {
        let [a, b, c, d] = machine_ip(share.block).octets();
        let key = share.lookup.get(..32).unwrap_or(&share.lookup);
        let port = share.http_port;
        Some(Self {
            scheme: if share.https {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            },
            authority: format!("m{a}-{b}-{c}-{d}.{key}:{port}").parse().ok()?,
        })
    }

    /// The pool URI of a request for `path` (a visitor's path and query, shared, not
    /// copied).
    fn uri(&self, path: Option<&PathAndQuery>) -> Option<Uri> {
        let mut parts = uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            path.cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).ok()
    }
}

/// The machine address in a pool host `mA-B-C-D.KEY`.
fn machine_of(host: &str) -> Option<Ipv4Addr> {
    let label = host.split('.').next()?.strip_prefix('m')?;
    label.replace('-', ".").parse().ok()
}

/// Dials `SCHEME://mA-B-C-D.KEY:PORT` through the tunnel to A.B.C.D:PORT, with TLS on top
/// for `https`.
#[derive(Clone)]
struct TunnelConnector {
    hub: Shared,
    tls: tokio_rustls::TlsConnector,
}

impl tower::Service<Uri> for TunnelConnector {
    type Response = TokioIo<TunnelStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let hub = self.hub.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let invalid =
                || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a tunnel address");
            let machine = uri.host().and_then(machine_of).ok_or_else(invalid)?;
            let port = uri.port_u16().ok_or_else(invalid)?;
            let dial = async {
                let stream = hub.connect(machine, port).await.map_err(|err| {
                    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, err.to_string())
                })?;
                if uri.scheme_str() == Some("https") {
                    let name = rustls::pki_types::ServerName::try_from("localhost")
                        .map_err(|_| invalid())?;
                    let stream = tls.connect(name, stream).await?;
                    Ok(TunnelStream::Tls(Box::new(stream)))
                } else {
                    Ok(TunnelStream::Plain(stream))
                }
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, dial).await {
                Ok(Ok(stream)) => Ok(TokioIo::new(stream)),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            }
        })
    }
}

/// A tunnel TCP connection, as hyper-util's pool wants it: plain, or TLS over it.
enum TunnelStream {
    Plain(FlowStream),
    Tls(Box<tokio_rustls::client::TlsStream<FlowStream>>),
}

impl Connection for TunnelStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            TunnelStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            TunnelStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            TunnelStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Plain(s) => Pin::new(s).poll_flush(cx),
            TunnelStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            TunnelStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hosts_carry_the_machine() {
        assert_eq!(
            machine_of("m172-16-0-2.0123456789abcdef"),
            Some(Ipv4Addr::new(172, 16, 0, 2))
        );
        assert_eq!(machine_of("172-16-0-2.x"), None);
        assert_eq!(machine_of("m172-16-0.x"), None);
    }

    #[test]
    fn a_target_names_its_share_and_keeps_the_visitors_path() {
        let share = HttpShare {
            lookup: "ab".repeat(32),
            agent_id: "agt_1".into(),
            public_name: "name".into(),
            block: 3,
            http_port: 8443,
            https: true,
            http_auth: None,
            expires_at: i64::MAX,
            sharer_key: String::new(),
            sharer_slot: 1,
        };
        let target = Target::of(&share).unwrap_or_else(|| panic!("no target"));
        let path = PathAndQuery::from_static("/a/b?c=1");
        let uri = target.uri(Some(&path)).unwrap_or_default();
        let machine = machine_ip(3);
        let [a, b, c, d] = machine.octets();
        assert_eq!(
            uri.to_string(),
            format!("https://m{a}-{b}-{c}-{d}.{}:8443/a/b?c=1", "ab".repeat(16))
        );
        assert_eq!(uri.host().and_then(machine_of), Some(machine));
        let bare = target.uri(None).unwrap_or_default();
        assert_eq!(bare.path(), "/");
    }
}
