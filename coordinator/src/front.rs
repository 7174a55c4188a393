//! What every HTTP request meets first: share hosts go to the proxy, everything else to
//! the API's router. The proxy comes before the router, not as its middleware, so a
//! public request costs no route matching, no state clone and no middleware futures.
//! The connection's facts (client address, TLS) are put on each request here.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use tower::ServiceExt;

use crate::client::Tls;
use crate::state::AppState;

/// The hub's HTTP service: [`crate::app`] makes it, `serve` gives each connection one.
#[derive(Clone)]
pub struct Front {
    state: Arc<AppState>,
    api: Router,
    peer: Option<SocketAddr>,
    tls: bool,
}

impl Front {
    pub(crate) fn new(state: AppState, api: Router) -> Self {
        Self {
            state: Arc::new(state),
            api,
            peer: None,
            tls: false,
        }
    }

    /// The service for one connection from `peer`.
    pub(crate) fn connection(&self, peer: SocketAddr, tls: bool) -> Self {
        Self {
            peer: Some(peer),
            tls,
            ..self.clone()
        }
    }
}

impl<B> tower::Service<Request<B>> for Front
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut request = request.map(Body::new);
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        if self.tls {
            request.extensions_mut().insert(Tls);
        }
        match crate::proxy::share_of(&self.state, &request) {
            Some((name, host)) => {
                let state = self.state.clone();
                Box::pin(
                    async move { Ok(crate::proxy::proxy(&state, &name, &host, request).await) },
                )
            }
            None => Box::pin(self.api.clone().oneshot(request)),
        }
    }
}
