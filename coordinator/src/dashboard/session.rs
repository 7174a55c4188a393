//! Dashboard sessions: an HttpOnly, SameSite=Strict cookie (`Secure` under TLS) holding a
//! random token whose hash names a `sessions` row; the row holds whose session it is and
//! the CSRF token every form carries. A session whose agent is gone has ended.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use cookie::{Cookie, SameSite};

use super::render::Problem;
use crate::secrets::hash_secret;
use crate::share_views::Scope;
use crate::state::AppState;
use crate::store::{AgentRow, SessionRow};

pub const COOKIE_NAME: &str = "connect_session";
/// A session lasts this long from sign-in.
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;

/// Who is looking at the dashboard.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// `None`: the admin.
    pub agent: Option<AgentRow>,
    pub csrf: String,
    /// The hash of the session's token, to sign out.
    pub session: String,
}

impl Viewer {
    pub fn scope(&self) -> Scope<'_> {
        match &self.agent {
            Some(agent) => Scope::Agent(&agent.id),
            None => Scope::Admin,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.agent.is_none()
    }

    pub fn name(&self) -> &str {
        self.agent.as_ref().map_or("admin", |a| a.name.as_str())
    }

    /// Whether a form's CSRF token is this session's. Compared as hashes, so the time
    /// taken says nothing about the token.
    pub fn csrf_ok(&self, given: &str) -> bool {
        !given.is_empty() && hash_secret(given) == hash_secret(&self.csrf)
    }
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE_NAME)
        .map(|c| c.value().to_owned())
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = session_token(&parts.headers).ok_or(Problem::SignedOut)?;
        let hash = hash_secret(&token);
        let SessionRow { agent_id, csrf } = state
            .store
            .session(&hash, state.now_ms())
            .await?
            .ok_or(Problem::SignedOut)?;
        let agent = match agent_id {
            Some(id) => Some(state.store.agent(&id).await?.ok_or(Problem::SignedOut)?),
            None => None,
        };
        Ok(Viewer {
            agent,
            csrf,
            session: hash,
        })
    }
}

/// A posted form; one that does not parse (no body, another content type) is refused as
/// a form without its CSRF token would be, with the page that says so.
pub struct Posted<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<AppState> for Posted<T> {
    type Rejection = Problem;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Problem> {
        axum::Form::<T>::from_request(request, state)
            .await
            .map(|axum::Form(form)| Posted(form))
            .map_err(|_| Problem::Csrf)
    }
}

/// A form that carries the session's CSRF token.
pub trait CsrfForm {
    fn csrf(&self) -> &str;
}

/// A signed-in visitor's form whose CSRF token is the session's: every dashboard action.
/// A form without it, with another, or that does not parse is refused before the handler
/// runs.
pub struct Action<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T: serde::de::DeserializeOwned + CsrfForm + Send> axum::extract::FromRequest<AppState>
    for Action<T>
{
    type Rejection = Problem;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Problem> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let request = axum::extract::Request::from_parts(parts, body);
        let Posted(form) = Posted::<T>::from_request(request, state).await?;
        if !viewer.csrf_ok(form.csrf()) {
            return Err(Problem::Csrf);
        }
        Ok(Action { viewer, form })
    }
}

/// The session cookie for `token`; `None` clears it.
pub fn cookie(token: Option<&str>, secure: bool) -> String {
    let mut cookie = Cookie::build((COOKIE_NAME, token.unwrap_or_default().to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure);
    if token.is_none() {
        cookie = cookie.max_age(cookie::time::Duration::ZERO);
    }
    cookie.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_are_http_only_strict_and_secure_under_tls() {
        let tls = cookie(Some("t"), true);
        for part in [
            "connect_session=t",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
        ] {
            assert!(tls.contains(part), "{part} missing from {tls}");
        }
        assert!(!cookie(Some("t"), false).contains("Secure"));
        assert!(cookie(None, true).contains("Max-Age=0"));
    }
}
