//! The dashboard's pages (GET).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use connect_api::ShareState;
use serde::Deserialize;

use super::render::{Problem, render};
use super::session::Viewer;
use super::views::{JoinLine, LogLine, Nav, PeerLine, PendingLine, ShareLine, who_may_join};
use crate::share_views;
use crate::state::AppState;
use crate::store::{LogPage, ShareRow};

/// Access-log rows per page.
const LOG_PAGE_ROWS: i64 = 50;
/// A joiner whose last handshake is older than this is not connected (WireGuard
/// rekeys every 2 minutes on a live session).
const CONNECTED_SECS: u64 = 180;

pub fn nav(viewer: &Viewer) -> Option<Nav> {
    Some(Nav {
        name: viewer.name().to_owned(),
        admin: viewer.is_admin(),
        csrf: viewer.csrf.clone(),
    })
}

#[derive(Template)]
#[template(path = "shares.html")]
struct SharesPage {
    nav: Option<Nav>,
    owners: bool,
    active: Vec<ShareLine>,
    past: Vec<ShareLine>,
}

/// The agents' names by id, for the admin's owner column.
async fn owner_names(
    state: &AppState,
    viewer: &Viewer,
) -> Result<HashMap<String, String>, Problem> {
    Ok(match &viewer.agent {
        Some(agent) => HashMap::from([(agent.id.clone(), agent.name.clone())]),
        None => state
            .store
            .agents()
            .await?
            .into_iter()
            .map(|(agent, _)| (agent.id, agent.name))
            .collect(),
    })
}

/// `/`: the viewer's shares, active then past; a signed-out visitor is told how to sign in.
pub async fn home(
    State(state): State<AppState>,
    viewer: Result<Viewer, Problem>,
) -> Result<Response, Problem> {
    let viewer = viewer?;
    let owners = owner_names(&state, &viewer).await?;
    let (mut active, mut past) = (Vec::new(), Vec::new());
    for (share, row) in share_views::list(&state, viewer.scope()).await? {
        let owner = owners.get(&row.agent_id).cloned().unwrap_or_default();
        let line = ShareLine::new(&share, owner);
        if share.state == ShareState::Active {
            active.push(line);
        } else {
            past.push(line);
        }
    }
    Ok(render(&SharesPage {
        nav: nav(&viewer),
        owners: viewer.is_admin(),
        active,
        past,
    }))
}

#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    status: Option<String>,
    /// Text, so a page that is not a number shows the first rather than an error.
    #[serde(default)]
    page: Option<String>,
    /// What a form just did, said once at the top.
    #[serde(default)]
    done: Option<String>,
}

const STATUS_CHOICES: [&str; 5] = ["all", "2xx", "3xx", "4xx", "5xx"];

fn status_range(choice: &str) -> (u16, u16) {
    match choice.as_bytes() {
        [digit @ b'1'..=b'5', b'x', b'x'] => {
            let low = u16::from(digit - b'0') * 100;
            (low, low + 100)
        }
        _ => (0, 1000),
    }
}

#[derive(Template)]
#[template(path = "share.html")]
struct SharePage {
    nav: Option<Nav>,
    csrf: String,
    owners: bool,
    share: ShareLine,
    machine_ip: String,
    who_may_join: String,
    active: bool,
    notice: Option<String>,
    pending: Vec<PendingLine>,
    joins: Vec<JoinLine>,
    peers: Vec<PeerLine>,
    log: Vec<LogLine>,
    status_choices: [&'static str; 5],
    status: String,
    page: i64,
    has_older: bool,
}

/// `/shares/{id}`: one share, its joins, live peers and a page of its access log.
pub async fn share(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, Problem> {
    let share_views::Details {
        row,
        share: shown,
        joins: join_records,
    } = share_views::details(&state, viewer.scope(), &id).await?;
    let owners = owner_names(&state, &viewer).await?;
    let report = state.live_peers.of(&row.agent_id, state.now_ms());
    let peers: Vec<_> = report.peers.iter().filter(|p| p.lookup == id).collect();
    let joins = join_records
        .iter()
        .map(|join| JoinLine {
            agent: join.agent.clone(),
            at: super::views::rfc3339(join.at),
            from: join.from.clone(),
            connected: peers.iter().any(|p| {
                p.agent == join.agent && p.handshake_secs_ago.is_some_and(|s| s < CONNECTED_SECS)
            }),
        })
        .collect();
    let status = query
        .status
        .filter(|s| STATUS_CHOICES.contains(&s.as_str()))
        .unwrap_or_else(|| "all".to_owned());
    let page = query
        .page
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 100_000);
    let (log, has_older) = log_lines(&state, &row, &status, page).await?;
    let notice = notice(query.done.as_deref());
    let share = ShareLine::new(
        &shown,
        owners.get(&row.agent_id).cloned().unwrap_or_default(),
    );
    Ok(render(&SharePage {
        nav: nav(&viewer),
        csrf: viewer.csrf.clone(),
        owners: viewer.is_admin(),
        machine_ip: shown.machine_ip.to_string(),
        who_may_join: who_may_join(&row),
        active: shown.state == ShareState::Active,
        notice,
        pending: report
            .pending
            .iter()
            .filter(|p| p.lookup == id)
            .map(|p| PendingLine {
                agent: p.agent.clone(),
                key: p.public_key.clone(),
                key_short: p.public_key.chars().take(12).collect(),
            })
            .collect(),
        joins,
        peers: peers.into_iter().map(PeerLine::new).collect(),
        log,
        status_choices: STATUS_CHOICES,
        status,
        page,
        has_older,
        share,
    }))
}

/// One page of the access log with statuses of the `status` choice, and whether there
/// is an older page.
async fn log_lines(
    state: &AppState,
    row: &ShareRow,
    status: &str,
    page: i64,
) -> Result<(Vec<LogLine>, bool), Problem> {
    let rows = usize::try_from(LOG_PAGE_ROWS).unwrap_or(usize::MAX);
    let entries = share_views::log_page(
        state,
        row,
        &LogPage {
            statuses: status_range(status),
            limit: LOG_PAGE_ROWS + 1,
            offset: (page - 1) * LOG_PAGE_ROWS,
        },
    )
    .await?;
    let has_older = entries.len() > rows;
    Ok((
        entries.iter().take(rows).map(LogLine::new).collect(),
        has_older,
    ))
}

/// What a form just did, said once at the top of the page it lands on.
fn notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "revoked" => "Revoked: its joiners are being cut off.",
        "extended" => "The share's deadline was moved.",
        "approved" => "Approved: the joiner gets in.",
        "denied" => "Denied: the joiner stays out.",
        _ => return None,
    };
    Some(text.to_owned())
}

#[derive(Template)]
#[template(path = "peers.html")]
struct PeersFragment {
    peers: Vec<PeerLine>,
}

/// `/shares/{id}/live`: the live-peers rows, which the page's script swaps in.
pub async fn live(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let row = share_views::owned(&state, viewer.scope(), &id).await?;
    let report = state.live_peers.of(&row.agent_id, state.now_ms());
    let peers = report
        .peers
        .iter()
        .filter(|p| p.lookup == id)
        .map(PeerLine::new)
        .collect();
    Ok(render(&PeersFragment { peers }))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    token: String,
}

/// `/login/{token}`: a button that signs in. The link is taken only by the button's POST,
/// so a link preview fetching the page does not use it up.
pub async fn login(Path(token): Path<String>) -> Response {
    render(&LoginPage { nav: None, token })
}
