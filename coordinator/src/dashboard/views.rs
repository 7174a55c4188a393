//! What the templates show: the query layer's shares, joins and log rows turned into
//! display strings (times as RFC 3339 for the page's script to localise, sizes humanised).

use connect_api::{HttpLogEntry, Protocol, ReportedPeer, Share};

use crate::store::ShareRow;

/// The header's signed-in part.
pub struct Nav {
    pub name: String,
    pub admin: bool,
    pub csrf: String,
}

pub struct ShareLine {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub routes: String,
    pub state: String,
    pub created: String,
    pub expires: String,
    pub joins: u32,
    pub url: Option<String>,
}

impl ShareLine {
    pub fn new(share: &Share, owner: String) -> Self {
        let mut routes: Vec<String> = share
            .routes
            .iter()
            .map(|r| {
                let udp = if r.protocol == Protocol::Udp {
                    "/udp"
                } else {
                    ""
                };
                format!("{} → {}{udp}", r.name, r.target)
            })
            .collect();
        if let Some(host) = &share.all_ports {
            routes.push(format!("every port → {host}"));
        }
        Self {
            id: share.lookup.clone(),
            name: share.name.clone(),
            owner,
            routes: if routes.is_empty() {
                "(none)".to_owned()
            } else {
                routes.join(", ")
            },
            state: share.state.to_string(),
            created: rfc3339(share.created_at),
            expires: rfc3339(share.expires_at),
            joins: share.joined,
            url: share.url.clone(),
        }
    }
}

pub struct JoinLine {
    pub agent: String,
    pub at: String,
    pub from: String,
    pub connected: bool,
}

pub struct PeerLine {
    pub agent: String,
    pub path: String,
    pub endpoint: String,
    pub rx: String,
    pub tx: String,
    pub handshake: String,
}

impl PeerLine {
    pub fn new(peer: &ReportedPeer) -> Self {
        Self {
            agent: peer.agent.clone(),
            path: peer.path.clone(),
            endpoint: peer.endpoint.clone().unwrap_or_else(|| "–".to_owned()),
            rx: bytes(peer.rx_bytes),
            tx: bytes(peer.tx_bytes),
            handshake: peer
                .handshake_secs_ago
                .map_or_else(|| "never".to_owned(), |s| format!("{s} s ago")),
        }
    }
}

pub struct PendingLine {
    pub agent: String,
    pub key: String,
    pub key_short: String,
}

pub struct LogLine {
    pub at: String,
    pub client: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The status's first digit, for its colour.
    pub class: u16,
    pub bytes: String,
    pub duration_ms: u64,
}

impl LogLine {
    pub fn new(entry: &HttpLogEntry) -> Self {
        Self {
            at: rfc3339(entry.at),
            client: entry.client.clone(),
            method: entry.method.clone(),
            path: entry.path.clone(),
            status: entry.status,
            class: entry.status / 100,
            bytes: bytes(entry.bytes),
            duration_ms: entry.duration_ms,
        }
    }
}

/// "anyone with the code", "at most 3 joiners, each approved by the sharer", …
pub fn who_may_join(row: &ShareRow) -> String {
    let limit = row.max_joins.map(|n| {
        if n == 1 {
            "one joiner".to_owned()
        } else {
            format!("at most {n} joiners")
        }
    });
    match (limit, row.approve) {
        (None, false) => "anyone with the code".to_owned(),
        (None, true) => "anyone with the code, once the sharer approves".to_owned(),
        (Some(limit), false) => limit,
        (Some(limit), true) => format!("{limit}, each approved by the sharer"),
    }
}

pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// 1.5 MB, 320 kB, 12 B: decimal units, as network figures go.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// 3d 4h, 5h 12m, 42s.
pub fn uptime(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1_500_000), "1.5 MB");
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
    }
}
