//! Pooled HTTP/1 connections from the hub to sharing machines, through the hub's own
//! WireGuard peer: hyper-util's client with a connector that dials the tunnel. A page with
//! forty assets costs one tunnel connection (or a few), not forty handshakes.

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::hub_peer::Shared;

/// How long a public request waits for the tunnel to the sharing machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle tunnel connections kept per sharing machine and port, and for how long.
const IDLE_PER_HOST: usize = 16;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Upstream {
    client: Client<TunnelConnector, Body>,
}

impl Upstream {
    pub fn new(hub: Shared) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .build(TunnelConnector(hub));
        Self { client }
    }

    /// Sends `request` to `machine:port` of share `public_name`, on an idle pooled
    /// connection when there is one. The request keeps its own `Host`.
    ///
    /// The pool is keyed by share as well as address: an address block freed by an ended
    /// share is reused by the next one, and must never get the old share's connections.
    pub async fn send(
        &self,
        public_name: &str,
        machine: Ipv4Addr,
        port: u16,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let [a, b, c, d] = machine.octets();
        if let Ok(uri) =
            format!("http://m{a}-{b}-{c}-{d}.{public_name}:{port}{path}").parse::<Uri>()
        {
            *request.uri_mut() = uri;
        }
        self.client.request(request).await
    }
}

/// The machine address in a pool host `mA-B-C-D.NAME`.
fn machine_of(host: &str) -> Option<Ipv4Addr> {
    let label = host.split('.').next()?.strip_prefix('m')?;
    label.replace('-', ".").parse().ok()
}

/// Dials `http://mA-B-C-D.NAME:PORT` through the tunnel to A.B.C.D:PORT.
#[derive(Clone)]
struct TunnelConnector(Shared);

impl tower::Service<Uri> for TunnelConnector {
    type Response = TokioIo<TunnelStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let hub = self.0.clone();
        Box::pin(async move {
            let invalid =
                || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a tunnel address");
            let machine = uri.host().and_then(machine_of).ok_or_else(invalid)?;
            let port = uri.port_u16().ok_or_else(invalid)?;
            match tokio::time::timeout(CONNECT_TIMEOUT, hub.connect(machine, port)).await {
                Ok(Ok(stream)) => Ok(TokioIo::new(TunnelStream(stream))),
                Ok(Err(err)) => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    err.to_string(),
                )),
                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            }
        })
    }
}

/// A tunnel TCP connection, as hyper-util's pool wants it.
struct TunnelStream(DuplexStream);

impl Connection for TunnelStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hosts_carry_the_machine() {
        assert_eq!(
            machine_of("m172-16-0-2.frosty-weasel-0857"),
            Some(Ipv4Addr::new(172, 16, 0, 2))
        );
        assert_eq!(machine_of("172-16-0-2.x"), None);
        assert_eq!(machine_of("m172-16-0.x"), None);
    }
}
