//! Shares: create (with the sharer's snapshot of routes), list, info and revoke.
//! Shares are addressed by the lookup value the agent derives from the code; the hub
//! never sees or stores the code itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use connect_api::{
    CreateShareRequest, JoinRecord, Protocol, Share, ShareInfo, ShareList, ShareState,
};
use time::OffsetDateTime;

use super::services::validate_route;
use super::{Agent, Body};
use crate::addresses::machine_ip;
use crate::error::ApiError;
use crate::lifecycle;
use crate::state::{AppState, Metrics};
use crate::store::{CreateShareError, NewShare, ShareRow};

const MAX_EXPIRY_SECS: u64 = 365 * 24 * 3600;
const MAX_ROUTES: usize = 256;

pub fn is_hex_64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn time_of(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `http://NAME.DOMAIN[:PORT]`, following the hub's public URL's scheme and port.
pub fn share_url(state: &AppState, public_name: &str) -> String {
    let public = &state.settings.public_url;
    let (scheme, rest) = public.split_once("://").unwrap_or(("http", public));
    let authority = rest.split('/').next().unwrap_or_default();
    // The port after the last ':' unless that colon is inside an IPv6 literal.
    let port = authority
        .rsplit_once(':')
        .filter(|(host, _)| !host.contains(':') || host.ends_with(']'))
        .map(|(_, port)| port);
    let port = match (scheme, port) {
        (_, None) | ("http", Some("80")) | ("https", Some("443")) => String::new(),
        (_, Some(port)) => format!(":{port}"),
    };
    format!("{scheme}://{public_name}.{}{port}", state.settings.domain)
}

pub fn to_share(state: &AppState, row: &ShareRow, joined: usize) -> Share {
    Share {
        lookup: row.lookup.clone(),
        name: row.name.clone(),
        public_name: row.public_name.clone(),
        url: row.http_port.map(|_| share_url(state, &row.public_name)),
        machine_ip: machine_ip(row.block),
        created_at: time_of(row.created_at),
        expires_at: time_of(row.expires_at),
        state: row.state_at(state.now_ms()),
        routes: row.routes.clone(),
        all_ports: row.all_ports.clone(),
        joined: u32::try_from(joined).unwrap_or(u32::MAX),
        ssh_user: row.ssh_user.clone(),
    }
}

pub async fn create(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Body(req): Body<CreateShareRequest>,
) -> Result<(StatusCode, Json<Share>), ApiError> {
    if agent.guest {
        return Err(ApiError::Forbidden(
            "guests can join shares but not create them; run `connect up`",
        ));
    }
    if !is_hex_64(&req.lookup) || !is_hex_64(&req.key_mac) {
        return Err(ApiError::Invalid(
            "lookup and key_mac must be 64 hex digits".into(),
        ));
    }
    if req.expires_in_secs == 0 || req.expires_in_secs > MAX_EXPIRY_SECS {
        return Err(ApiError::Invalid(
            "expiry must be between 1 second and 365 days".into(),
        ));
    }
    if req.routes.len() > MAX_ROUTES {
        return Err(ApiError::Invalid(format!(
            "at most {MAX_ROUTES} routes per share"
        )));
    }
    for (i, route) in req.routes.iter().enumerate() {
        validate_route(route)?;
        if req.routes[..i]
            .iter()
            .any(|r| r.protocol == route.protocol && r.port == route.port)
        {
            return Err(ApiError::Invalid(format!(
                "two routes use {}/{}",
                route.protocol, route.port
            )));
        }
    }
    if let Some(host) = &req.all_ports
        && (host.is_empty()
            || host.len() > 253
            || host.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ApiError::Invalid("all_ports must name a host".into()));
    }
    if let Some(port) = req.http_port {
        let served = req.all_ports.is_some()
            || req
                .routes
                .iter()
                .any(|r| r.protocol == Protocol::Tcp && r.port == port);
        if !served {
            return Err(ApiError::Invalid(format!(
                "http_port {port} is not one of the shared TCP ports"
            )));
        }
    }
    let http_auth = match &req.http_auth {
        None => None,
        Some(pair) => {
            let valid = pair
                .split_once(':')
                .is_some_and(|(user, pass)| !user.is_empty() && !pass.is_empty())
                && pair.len() <= 256
                && !pair.chars().any(char::is_control);
            if !valid || req.http_port.is_none() {
                return Err(ApiError::Invalid(
                    "http_auth must be USER:PASS on a share with a public URL".into(),
                ));
            }
            Some(crate::proxy::auth_hash(&req.lookup, pair))
        }
    };
    let ssh = req.ssh.as_ref().map(super::ssh::validate).transpose()?;
    let name = req.name.as_deref().map(str::trim).unwrap_or_default();
    if name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "share name must be at most 64 printable characters".into(),
        ));
    }
    let now = state.now_ms();
    let expires_at = now.saturating_add(
        i64::try_from(req.expires_in_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    let mut last = None;
    for _ in 0..8 {
        let public_name = state.ids.public_name();
        let share = NewShare {
            lookup: req.lookup.clone(),
            agent_id: agent.id.clone(),
            name: if name.is_empty() {
                public_name.clone()
            } else {
                name.to_owned()
            },
            public_name,
            routes: req.routes.clone(),
            all_ports: req.all_ports.clone(),
            http_port: req.http_port,
            http_auth: http_auth.clone(),
            key_mac: req.key_mac.clone(),
            ssh: ssh.clone(),
            created_at: now,
            expires_at,
        };
        match state.store.insert_share(&share).await {
            Ok(row) => {
                Metrics::add(&state.metrics.shares_created, 1);
                state.expiry.notify_one();
                state
                    .events
                    .publish(
                        &agent.id,
                        &connect_api::StreamEvent::ShareCreated {
                            lookup: row.lookup.clone(),
                        },
                    )
                    .await;
                if row.http_port.is_some()
                    && let Some(hub) = &state.hub_peer
                {
                    state
                        .events
                        .relay(crate::relay::RelayUpdate::Allow(agent.relay_id, hub.slot()))
                        .await;
                    crate::proxy::resync(&state);
                }
                tracing::info!(share = %row.public_name, agent = %agent.id, "share created");
                return Ok((StatusCode::CREATED, Json(to_share(&state, &row, 0))));
            }
            Err(CreateShareError::NameTaken) => last = Some(CreateShareError::NameTaken),
            Err(CreateShareError::DuplicateCode) => {
                return Err(ApiError::Conflict("a share with this code already exists"));
            }
            Err(CreateShareError::NoBlock) => {
                return Err(ApiError::Unavailable("every share address is in use"));
            }
            Err(CreateShareError::Store(err)) => return Err(err.into()),
        }
    }
    tracing::warn!(?last, "no free public name after 8 tries");
    Err(ApiError::Unavailable(
        "could not find a free public name; try again",
    ))
}

pub async fn list(
    State(state): State<AppState>,
    Agent(agent): Agent,
) -> Result<Json<ShareList>, ApiError> {
    let mut shares = Vec::new();
    for row in state.store.shares_of(&agent.id).await? {
        let joined = state.store.joins_of(&row.lookup).await?.len();
        shares.push(to_share(&state, &row, joined));
    }
    Ok(Json(ShareList { shares }))
}

/// A share of the calling agent, or 404 (never 403: others' shares are not revealed).
async fn own_share(state: &AppState, agent_id: &str, lookup: &str) -> Result<ShareRow, ApiError> {
    match state.store.share(lookup).await? {
        Some(row) if row.agent_id == agent_id => Ok(row),
        _ => Err(ApiError::ShareNotFound),
    }
}

pub async fn info(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
) -> Result<Json<ShareInfo>, ApiError> {
    let row = own_share(&state, &agent.id, &lookup).await?;
    let joins = state.store.joins_of(&lookup).await?;
    Ok(Json(ShareInfo {
        share: to_share(&state, &row, joins.len()),
        joins: joins
            .into_iter()
            .map(|j| JoinRecord {
                agent: j.agent_name,
                at: time_of(j.at),
                from: j.from_addr,
            })
            .collect(),
        http_log: state.store.http_log(&lookup).await?,
    }))
}

pub async fn revoke(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
) -> Result<Json<Share>, ApiError> {
    let row = own_share(&state, &agent.id, &lookup).await?;
    if row.state_at(state.now_ms()) != ShareState::Active {
        return Err(ApiError::ShareEnded);
    }
    lifecycle::end_share(&state, &lookup, ShareState::Revoked).await?;
    let row = own_share(&state, &agent.id, &lookup).await?;
    let joined = state.store.joins_of(&lookup).await?.len();
    Ok(Json(to_share(&state, &row, joined)))
}
