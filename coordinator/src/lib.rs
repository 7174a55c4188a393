//! `connect-coordinator`, the hub: enrollment, services and shares in a database, a
//! stream of peer changes to each agent, and a UDP relay for WireGuard datagrams.
//!
//! [`app`] is the HTTP API as an axum router over [`AppState`]; [`run`] serves it with
//! the expiry timer and the relay until a shutdown future completes. `main.rs` only
//! parses the command line and reports errors.

mod access_log;
mod addresses;
mod api;
mod basic_auth;
pub mod cli;
mod client;
pub mod clock;
mod dashboard;
mod error;
pub mod events;
mod front;
mod housekeeping;
pub mod hub_peer;
pub mod ids;
mod keys;
pub mod limits;
mod live_peers;
pub mod metrics;
pub mod own_thread;
mod probe;
mod proxy;
pub mod public_shares;
pub mod public_url;
pub mod relay;
pub mod relay_stream;
pub mod secrets;
mod serve;
mod share_life;
mod share_views;
pub use share_life::run_expiry;
pub mod state;
pub mod store;
mod upstream;
mod upstream_tls;
mod validate;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, SystemClock};
pub use connect_api as wire;
pub use events::Subscribers;
pub use front::Front;
pub use ids::{Ids, RandomIds};
pub use keys::run_key_command;
pub use metrics::Metrics;
pub use serve::{ServeError, serve_main};
pub use state::{AppState, Settings};

/// `connect-coordinator admin-link`: a one-time dashboard login link for the admin.
///
/// # Errors
/// A failing database.
pub async fn admin_link(
    store: &store::Store,
    base: &public_url::PublicUrl,
    now_ms: i64,
) -> Result<String, store::StoreError> {
    dashboard::links::create(store, &RandomIds, base, None, now_ms).await
}

/// Request bodies above this are refused with 413: nothing in the API is larger.
const BODY_LIMIT: usize = 64 * 1024;

/// The hub's HTTP service: public shares by their host, then the API and the dashboard.
pub fn app(state: AppState) -> front::Front {
    let api = api::router()
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(api::uniform_errors))
        // The dashboard answers in HTML, errors included.
        .merge(dashboard::router().layer(DefaultBodyLimit::max(BODY_LIMIT)))
        .with_state(state.clone());
    front::Front::new(state, api)
}

/// What [`run`] takes from the state's queues: the relay's updates and streams, and the
/// access log's rows.
pub struct Inbox {
    pub relay: relay::Inbox,
    access_log: mpsc::Receiver<access_log::LogRow>,
}

/// Builds the shared state; the receiving ends of its queues go to [`run`].
pub fn state(
    store: store::Store,
    settings: Settings,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
) -> (AppState, Inbox) {
    let (relay, updates) = mpsc::channel(4096);
    let (streams, stream_inbox) = relay_stream::Streams::new();
    let public = Arc::new(public_shares::PublicShares::default());
    let metrics = Arc::new(Metrics::default());
    let (access_log, log_rows) = access_log::AccessLog::new(metrics.clone());
    let state = AppState {
        store: store.clone(),
        clock,
        ids,
        settings: Arc::new(settings),
        events: Arc::new(events::Events::new(store.clone(), relay, public.clone())),
        metrics,
        access_log,
        expiry: Arc::new(Notify::new()),
        hub_peer: None,
        upstream: None,
        relay_streams: Arc::new(streams),
        limits: Arc::default(),
        passwords: Arc::default(),
        live_peers: Arc::default(),
        public,
    };
    let inbox = Inbox {
        relay: relay::Inbox {
            updates,
            streams: stream_inbox,
        },
        access_log: log_rows,
    };
    (state, inbox)
}

/// Serves the API on `listener` (plain HTTP, or TLS when `tls` is given), the relay on
/// `udp` (on the packet thread `packets`) and the expiry timer, until `shutdown`
/// completes.
///
/// # Errors
/// When serving fails.
pub async fn run(
    packets: &tokio::runtime::Handle,
    listener: TcpListener,
    udp: UdpSocket,
    state: AppState,
    inbox: Inbox,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cancel = CancellationToken::new();
    let relay = relay::spawn(
        packets,
        udp.into_std()?,
        state.hub_peer.as_ref().map(|hub| hub.slot()),
        state.store.clone(),
        state.clock.clone(),
        inbox.relay,
        state.metrics.clone(),
        cancel.clone(),
    );
    let expiry = tokio::spawn(share_life::run_expiry(state.clone(), cancel.clone()));
    let others = tokio::spawn(state.events.clone().listen(cancel.clone()));
    let housekeeping = tokio::spawn(housekeeping::run(state.clone(), cancel.clone()));
    let public = tokio::spawn(public_shares::keep_current(state.clone(), cancel.clone()));
    let log_writer = tokio::spawn(access_log::write(
        state.store.clone(),
        inbox.access_log,
        cancel.clone(),
    ));
    let served = serve::serve_http(listener, app(state), tls, shutdown).await;
    cancel.cancel();
    let _ = relay.await;
    let _ = expiry.await;
    let _ = others.await;
    let _ = housekeeping.await;
    let _ = public.await;
    let _ = log_writer.await;
    served
}
