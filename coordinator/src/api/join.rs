//! `POST /v1/join`: HTTP only; what a join does is `share_life::join`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::Extensions;
use connect_api::{JoinRequest, JoinResponse};

use super::{Agent, Body};
use crate::error::ApiError;
use crate::share_life;
use crate::state::AppState;

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

pub async fn join(
    State(state): State<AppState>,
    Agent(agent): Agent,
    ClientAddr(client): ClientAddr,
    Body(req): Body<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    let from = client.map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string());
    share_life::join(&state, &agent, &req, from).await.map(Json)
}
