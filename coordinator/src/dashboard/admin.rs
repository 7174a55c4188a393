//! The admin's page: hub health, enrollment keys (create, revoke) and agents. Agents'
//! sessions get 404 here, as for anything not theirs.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use connect_api::ShareState;
use serde::Deserialize;

use super::pages::nav;
use super::render::{Problem, render};
use super::session::{Action, CsrfForm, Viewer};
use super::views::{Nav, bytes, rfc3339, uptime};
use crate::clock::time_of;
use crate::share_views;
use crate::state::AppState;

struct KeyLine {
    id: String,
    reusable: bool,
    uses: i64,
    state: &'static str,
    expires: Option<String>,
}

struct AgentLine {
    name: String,
    kind: &'static str,
    registered: String,
    live_shares: usize,
}

struct Health {
    uptime: String,
    live_shares: usize,
    relayed: String,
    datagrams_per_s: String,
    database: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    nav: Option<Nav>,
    csrf: String,
    notice: Option<String>,
    new_key: Option<String>,
    health: Health,
    keys: Vec<KeyLine>,
    agents: Vec<AgentLine>,
}

fn admin_only(viewer: &Viewer) -> Result<(), Problem> {
    if viewer.is_admin() {
        Ok(())
    } else {
        Err(Problem::NotFound)
    }
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    new_key: Option<String>,
    notice: Option<String>,
) -> Result<Response, Problem> {
    admin_only(viewer)?;
    let now = state.now_ms();
    let shares = share_views::list(state, viewer.scope()).await?;
    let mut live_by_agent: HashMap<&str, usize> = HashMap::new();
    for (share, row) in &shares {
        if share.state == ShareState::Active {
            *live_by_agent.entry(row.agent_id.as_str()).or_default() += 1;
        }
    }
    let database_ok = state.store.agent_count().await.is_ok();
    let kind = if state.store.is_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let metrics = &state.metrics;
    let health = Health {
        uptime: uptime(metrics.started.elapsed().as_secs()),
        live_shares: live_by_agent.values().sum(),
        relayed: bytes(
            metrics
                .relay_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        datagrams_per_s: format!("{:.0}", metrics.datagram_rate()),
        database: format!(
            "{kind}, {}",
            if database_ok {
                "answering"
            } else {
                "NOT answering"
            }
        ),
    };
    let keys = state
        .store
        .keys()
        .await?
        .into_iter()
        .map(|key| KeyLine {
            state: if key.revoked {
                "revoked"
            } else if key.usable(now) {
                "usable"
            } else {
                "spent"
            },
            id: key.id,
            reusable: key.reusable,
            uses: key.uses,
            expires: key.expires_at.map(|at| rfc3339(time_of(at))),
        })
        .collect();
    let agents = state
        .store
        .agents()
        .await?
        .into_iter()
        .map(|(agent, registered)| AgentLine {
            live_shares: live_by_agent.get(agent.id.as_str()).copied().unwrap_or(0),
            name: agent.name,
            kind: if agent.guest { "guest" } else { "agent" },
            registered: rfc3339(time_of(registered)),
        })
        .collect();
    Ok(render(&AdminPage {
        nav: nav(viewer),
        csrf: viewer.csrf.clone(),
        notice,
        new_key,
        health,
        keys,
        agents,
    }))
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    done: Option<String>,
}

/// `/admin`.
pub async fn admin(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(done): Query<Done>,
) -> Result<Response, Problem> {
    let notice = (done.done.as_deref() == Some("key-revoked")).then(|| "Key revoked.".to_owned());
    page(&state, &viewer, None, notice).await
}

#[derive(Debug, Default, Deserialize)]
pub struct NewKey {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reusable: Option<String>,
    #[serde(default)]
    expires: String,
}

impl CsrfForm for NewKey {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/keys`: the new key is shown once, on the page this answers with.
pub async fn create_key(
    State(state): State<AppState>,
    Action { viewer, form }: Action<NewKey>,
) -> Result<Response, Problem> {
    admin_only(&viewer)?;
    let expires = Some(form.expires.as_str()).filter(|e| !e.is_empty());
    let key = crate::keys::create(
        &state.store,
        form.reusable.is_some(),
        expires,
        state.now_ms(),
    )
    .await
    .map_err(|err| Problem::Conflict(err.to_string()))?;
    page(&state, &viewer, Some(key), None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct Csrf {
    #[serde(default)]
    pub csrf: String,
}

impl CsrfForm for Csrf {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/keys/{id}/revoke`.
pub async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Action { viewer, .. }: Action<Csrf>,
) -> Result<Response, Problem> {
    admin_only(&viewer)?;
    if !state.store.revoke_key(&id).await? {
        return Err(Problem::NotFound);
    }
    Ok(Redirect::to("/admin?done=key-revoked").into_response())
}
