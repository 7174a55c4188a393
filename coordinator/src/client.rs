//! What the server knows of the connection a request came on: the client's address and
//! whether it spoke TLS. Set by `serve`, read by the API and the proxy.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::Extensions;

/// Marks requests that arrived over TLS, for `X-Forwarded-Proto`.
#[derive(Debug, Clone, Copy)]
pub struct Tls;

/// The peer address of the request's connection, when the server recorded one.
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_addr(&parts.extensions)))
    }
}

pub fn client_addr(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}
