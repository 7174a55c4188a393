//! What the dashboard's forms do (POST): sign in and out, revoke, extend, approve or
//! deny a joiner. Every form but sign-in carries the session's CSRF token; a revoke is
//! the same code path as `share --revoke`.

use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use connect_api::StreamEvent;
use serde::Deserialize;

use super::admin::Csrf;
use super::render::Problem;
use super::session::{Action, CsrfForm, Posted, SESSION_TTL_MS, cookie};
use crate::secrets::hash_secret;
use crate::share_life;
use crate::share_views;
use crate::state::AppState;
use crate::store::{LinkTaken, SessionRow};

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /login`: takes the one-time link and opens a session.
pub async fn login(
    State(state): State<AppState>,
    Posted(form): Posted<LoginForm>,
) -> Result<Response, Problem> {
    let now = state.now_ms();
    let LinkTaken::Valid(agent_id) = state
        .store
        .take_login_link(&hash_secret(&form.token), now)
        .await?
    else {
        return Err(Problem::LinkUsed);
    };
    let token = state.ids.secret("cs_");
    let session = SessionRow {
        agent_id,
        csrf: state.ids.secret(""),
    };
    state
        .store
        .insert_session(&hash_secret(&token), &session, now, now + SESSION_TTL_MS)
        .await?;
    let to = if session.agent_id.is_none() {
        "/admin"
    } else {
        "/"
    };
    tracing::info!(agent = ?session.agent_id, "dashboard sign-in");
    Ok((
        [(SET_COOKIE, cookie(Some(&token), secure(&state)))],
        Redirect::to(to),
    )
        .into_response())
}

fn secure(state: &AppState) -> bool {
    state.settings.public_url.is_https()
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<AppState>,
    Action { viewer, .. }: Action<Csrf>,
) -> Result<Response, Problem> {
    state.store.delete_session(&viewer.session).await?;
    Ok((
        [(SET_COOKIE, cookie(None, secure(&state)))],
        Redirect::to("/"),
    )
        .into_response())
}

fn back_to(id: &str, done: &str) -> Response {
    Redirect::to(&format!("/shares/{id}?done={done}")).into_response()
}

/// `POST /shares/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Action { viewer, .. }: Action<Csrf>,
) -> Result<Response, Problem> {
    share_life::revoke(&state, viewer.scope(), &id).await?;
    Ok(back_to(&id, "revoked"))
}

#[derive(Debug, Default, Deserialize)]
pub struct ExtendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    by: String,
}

impl CsrfForm for ExtendForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /shares/{id}/extend`: by a `DUR` (1h, 24h, 7d).
pub async fn extend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Action { viewer, form }: Action<ExtendForm>,
) -> Result<Response, Problem> {
    let by = connect_api::parse_duration(&form.by)
        .ok_or_else(|| Problem::Conflict("Extend by 1h, 24h or 7d.".into()))?;
    let by_ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    share_life::extend(&state, viewer.scope(), &id, by_ms).await?;
    Ok(back_to(&id, "extended"))
}

#[derive(Debug, Default, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    joiner: String,
    #[serde(default)]
    decision: String,
}

impl CsrfForm for DecideForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /shares/{id}/decide`: approve or deny a waiting joiner. The sharing agent
/// decides; this passes the owner's word on to it.
pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Action { viewer, form }: Action<DecideForm>,
) -> Result<Response, Problem> {
    let approved = match form.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Err(Problem::Conflict("Approve or deny.".into())),
    };
    let row = share_views::owned(&state, viewer.scope(), &id).await?;
    let event = StreamEvent::JoinDecided {
        lookup: row.lookup.clone(),
        public_key: form.joiner,
        approved,
    };
    state.events.publish(&row.agent_id, &event).await;
    Ok(back_to(&id, if approved { "approved" } else { "denied" }))
}
