//! Creating a share: the sharer's request checked, the row inserted with a free address
//! block and public name, then the sharer's stream told, the expiry timer woken, and for
//! a public share the relay pair to the hub's own peer opened and the proxy resynced.

use connect_api::{CreateShareRequest, Protocol, StreamEvent};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::relay::RelayUpdate;
use crate::state::AppState;
use crate::store::{AgentRow, CreateShareError, HttpShare, NewShare, ShareRow};
use crate::validate::{is_hex_64, validate_route, validate_ssh};

const MAX_EXPIRY_SECS: u64 = 365 * 24 * 3600;
const MAX_ROUTES: usize = 256;
/// Public names are random; a clash with a live share's is retried this often.
const NAME_TRIES: usize = 8;

/// # Errors
/// A guest, an invalid request, a code already used, no free address or name.
pub async fn create(
    state: &AppState,
    agent: &AgentRow,
    req: CreateShareRequest,
) -> Result<ShareRow, ApiError> {
    if agent.guest {
        return Err(ApiError::Forbidden(
            "guests can join shares but not create them; run `connect up`",
        ));
    }
    let chosen = req.public_name.clone();
    let (name, template) = validate(state, agent, req)?;
    let mut last = None;
    for _ in 0..NAME_TRIES {
        let public_name = chosen.clone().unwrap_or_else(|| state.ids.public_name());
        let share = NewShare {
            name: name.clone().unwrap_or_else(|| public_name.clone()),
            public_name,
            ..template.clone()
        };
        match state.store.insert_share(&share).await {
            Ok(row) => {
                announce(state, agent, &row).await;
                return Ok(row);
            }
            Err(CreateShareError::NameTaken) => match chosen {
                Some(taken) => return Err(ApiError::NameTaken(taken)),
                None => last = Some(CreateShareError::NameTaken),
            },
            Err(CreateShareError::DuplicateCode) => {
                return Err(ApiError::Conflict("a share with this code already exists"));
            }
            Err(CreateShareError::NoBlock) => {
                return Err(ApiError::Unavailable("every share address is in use"));
            }
            Err(CreateShareError::Store(err)) => return Err(err.into()),
        }
    }
    tracing::warn!(?last, "no free public name after {NAME_TRIES} tries");
    Err(ApiError::Unavailable(
        "could not find a free public name; try again",
    ))
}

/// What a new share tells the rest of the hub.
async fn announce(state: &AppState, agent: &AgentRow, row: &ShareRow) {
    Metrics::add(&state.metrics.shares_created, 1);
    state.expiry.notify_one();
    let event = StreamEvent::ShareCreated {
        lookup: row.lookup.clone(),
    };
    state.events.publish(&agent.id, &event).await;
    if row.http_port.is_some()
        && let Some(hub) = &state.hub_peer
    {
        state
            .events
            .relay(RelayUpdate::Allow(agent.relay_id, hub.slot()))
            .await;
    }
    if let Some(http_port) = row.http_port {
        state.public.insert(HttpShare {
            lookup: row.lookup.clone(),
            agent_id: agent.id.clone(),
            public_name: row.public_name.clone(),
            block: row.block,
            http_port,
            https: row.https,
            http_auth: row.http_auth.clone(),
            expires_at: row.expires_at,
            sharer_key: agent.public_key.clone(),
            sharer_slot: agent.relay_id,
        });
    }
    tracing::info!(share = %row.public_name, agent = %agent.id, "share created");
}

/// The share to insert but for its public name, and the name the sharer chose (`None`:
/// the public name).
fn validate(
    state: &AppState,
    agent: &AgentRow,
    req: CreateShareRequest,
) -> Result<(Option<String>, NewShare), ApiError> {
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
    check_routes(&req)?;
    if let Some(problem) = req
        .public_name
        .as_deref()
        .and_then(connect_api::public_name_problem)
    {
        return Err(ApiError::Invalid(problem.into()));
    }
    if req.https && req.http_port.is_none() {
        return Err(ApiError::Invalid(
            "an HTTPS upstream needs an HTTP port".into(),
        ));
    }
    let http_auth = check_http(&req)?;
    let ssh = req.ssh.as_ref().map(validate_ssh).transpose()?;
    let name = req.name.as_deref().map(str::trim).unwrap_or_default();
    if name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "share name must be at most 64 printable characters".into(),
        ));
    }
    let name = (!name.is_empty()).then(|| name.to_owned());
    let now = state.now_ms();
    let expires_at = now.saturating_add(
        i64::try_from(req.expires_in_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    let share = NewShare {
        lookup: req.lookup,
        agent_id: agent.id.clone(),
        name: String::new(),
        public_name: String::new(),
        routes: req.routes,
        all_ports: req.all_ports,
        http_port: req.http_port,
        https: req.https,
        http_auth,
        key_mac: req.key_mac,
        ssh,
        created_at: now,
        expires_at,
        max_joins: req.max_joins,
        approve: req.approve,
    };
    Ok((name, share))
}

/// At most [`MAX_ROUTES`] valid routes, no port twice, and `all_ports` a host name.
fn check_routes(req: &CreateShareRequest) -> Result<(), ApiError> {
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
    Ok(())
}

/// The public URL's port must be shared; its basic auth is stored only hashed.
fn check_http(req: &CreateShareRequest) -> Result<Option<String>, ApiError> {
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
    let Some(pair) = &req.http_auth else {
        return Ok(None);
    };
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
    crate::basic_auth::hash(pair).map(Some)
}
