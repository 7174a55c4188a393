//! What running sharing agents last said about their joiners (`PUT /v1/peers`), kept in
//! this hub's memory for the dashboard. Only shown, never trusted: the agents decide who
//! is a peer. A report older than [`FRESH_MS`] means the agent stopped reporting (it went
//! away, or reports to another hub), and counts as none.

use std::collections::HashMap;
use std::sync::Mutex;

use connect_api::PeerReport;

/// Agents report every few seconds while they have joiners.
pub const FRESH_MS: i64 = 15_000;

#[derive(Default)]
pub struct LivePeers {
    by_agent: Mutex<HashMap<String, (i64, PeerReport)>>,
}

impl LivePeers {
    pub fn put(&self, agent_id: &str, report: PeerReport, now_ms: i64) {
        if let Ok(mut map) = self.by_agent.lock() {
            map.retain(|_, (at, _)| now_ms - *at < FRESH_MS);
            if report.peers.is_empty() && report.pending.is_empty() {
                map.remove(agent_id);
            } else {
                map.insert(agent_id.to_owned(), (now_ms, report));
            }
        }
    }

    /// The agent's last fresh report, or an empty one.
    pub fn of(&self, agent_id: &str, now_ms: i64) -> PeerReport {
        self.by_agent
            .lock()
            .ok()
            .and_then(|map| {
                map.get(agent_id)
                    .filter(|(at, _)| now_ms - *at < FRESH_MS)
                    .map(|(_, report)| report.clone())
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_api::ReportedPeer;

    fn report() -> PeerReport {
        PeerReport {
            peers: vec![ReportedPeer {
                lookup: "l".into(),
                agent: "bob".into(),
                path: "direct".into(),
                endpoint: None,
                rx_bytes: 1,
                tx_bytes: 2,
                handshake_secs_ago: Some(3),
            }],
            pending: Vec::new(),
        }
    }

    #[test]
    fn a_report_counts_until_it_is_stale() {
        let live = LivePeers::default();
        live.put("a", report(), 1_000);
        assert_eq!(live.of("a", 1_000 + FRESH_MS - 1), report());
        assert_eq!(live.of("a", 1_000 + FRESH_MS), PeerReport::default());
        assert_eq!(live.of("b", 1_000), PeerReport::default());
        live.put("a", PeerReport::default(), 2_000);
        assert_eq!(live.of("a", 2_000), PeerReport::default());
    }
}
