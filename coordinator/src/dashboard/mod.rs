//! The hub's web dashboard, on the API listener at `/` of the hub's own host name (public
//! share names are routed to the proxy before anything here sees them).
//!
//! Server-rendered HTML from askama templates compiled into the binary (`templates/`),
//! one stylesheet and a small progressive script (`assets/`), embedded too: nothing to
//! build or ship beside the hub. People sign in with one-time links (`links`) into
//! cookie sessions (`session`); pages read through the same query layer as the CLI
//! (`share_views`), and forms act through the same code as the API (`share_life`).

mod actions;
mod admin;
mod assets;
pub mod links;
mod pages;
mod render;
mod session;
mod views;

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::Response;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login/{token}", get(pages::login))
        .route("/login", post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/shares/{id}", get(pages::share))
        .route("/shares/{id}/live", get(pages::live))
        .route("/shares/{id}/revoke", post(actions::revoke))
        .route("/shares/{id}/extend", post(actions::extend))
        .route("/shares/{id}/decide", post(actions::decide))
        .route("/admin", get(admin::admin))
        .route("/admin/keys", post(admin::create_key))
        .route("/admin/keys/{id}/revoke", post(admin::revoke_key))
        .route("/assets/dashboard.css", get(assets::css))
        .route("/assets/dashboard.js", get(assets::js))
        .layer(axum::middleware::map_response(page_headers))
}

/// No framing (clickjacking a Revoke button), no referrer (a login link's token must not
/// leak to a share's page), scripts and forms from the hub only, pages not cached.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
