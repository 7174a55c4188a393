//! The live public shares by name, in memory, so the proxy never asks the database on a
//! request. The database stays the truth: the whole list is reloaded whenever a share
//! with a public URL starts or ends, here or on another hub (whose share events arrive
//! through PostgreSQL), and once a minute besides. A share this hub creates or ends is
//! put in or taken out at once as well, so its URL works (or stops) before the answer
//! reaches the sharer. The same reload keeps the hub's own tunnel peers in line.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::access_log::Allowance;
use crate::store::HttpShare;
use crate::upstream::Target;

/// A safety net under the events: a missed one is repaired this long after.
const RELOAD_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct PublicShares {
    by_name: RwLock<HashMap<String, Arc<PublicShare>>>,
    changed: Notify,
}

/// A live public share as the proxy serves it: the stored row, and what each of its
/// requests needs without allocating or locking.
pub struct PublicShare {
    pub row: HttpShare,
    /// `row.lookup`, for the access-log rows that name it.
    pub lookup: Arc<str>,
    pub log_allowance: Allowance,
    /// Where its requests go through the tunnel.
    pub target: Option<Target>,
}

impl PublicShare {
    fn new(row: HttpShare) -> Arc<Self> {
        Arc::new(Self {
            lookup: row.lookup.as_str().into(),
            target: Target::of(&row),
            row,
            log_allowance: Allowance::default(),
        })
    }
}

impl PublicShares {
    /// The live share called `name`, as last loaded (its deadline is the caller's to check).
    pub fn get(&self, name: &str) -> Option<Arc<PublicShare>> {
        self.by_name.read().ok()?.get(name).cloned()
    }

    /// A share this hub just created: served at once, before the reload confirms it.
    pub fn insert(&self, share: HttpShare) {
        if let Ok(mut map) = self.by_name.write() {
            map.insert(share.public_name.clone(), PublicShare::new(share));
        }
        self.changed.notify_one();
    }

    /// A share this hub just ended: refused at once.
    pub fn remove(&self, public_name: &str) {
        if let Ok(mut map) = self.by_name.write() {
            map.remove(public_name);
        }
        self.changed.notify_one();
    }

    /// Something changed elsewhere (another hub): reload soon.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Makes `shares` the live ones. A share whose row is unchanged keeps its entry, and
    /// with it what it has logged this second.
    fn replace(&self, shares: &[HttpShare]) {
        let Ok(mut current) = self.by_name.write() else {
            return;
        };
        let map = shares
            .iter()
            .map(|share| {
                let entry = match current.get(&share.public_name) {
                    Some(kept) if kept.row == *share => kept.clone(),
                    _ => PublicShare::new(share.clone()),
                };
                (share.public_name.clone(), entry)
            })
            .collect();
        *current = map;
    }
}

/// Reloads the public shares (and the hub's tunnel peers) at start, on every change and
/// every [`RELOAD_EVERY`], until cancelled. Changes that come in a burst cost one reload.
pub async fn keep_current(state: crate::state::AppState, cancel: CancellationToken) {
    loop {
        match state.store.live_http_shares().await {
            Ok(shares) => {
                state.public.replace(&shares);
                if let Some(hub) = &state.hub_peer {
                    hub.sync(&shares).await;
                }
            }
            Err(err) => tracing::error!(%err, "cannot load the public shares"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = state.public.changed.notified() => {}
            () = tokio::time::sleep(RELOAD_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(name: &str) -> HttpShare {
        HttpShare {
            lookup: format!("lookup-{name}"),
            agent_id: "agt_1".into(),
            public_name: name.into(),
            block: 1,
            http_port: 80,
            https: false,
            http_auth: None,
            expires_at: i64::MAX,
            sharer_key: String::new(),
            sharer_slot: 1,
        }
    }

    #[test]
    fn a_reload_replaces_what_was_put_in_by_hand() {
        let shares = PublicShares::default();
        shares.insert(share("a"));
        assert!(shares.get("a").is_some());
        shares.replace(&[share("b")]);
        assert!(shares.get("a").is_none());
        assert_eq!(
            shares.get("b").map(|s| s.row.lookup.clone()).as_deref(),
            Some("lookup-b")
        );
        shares.remove("b");
        assert!(shares.get("b").is_none());
    }

    #[test]
    fn a_reload_keeps_an_unchanged_share_and_renews_a_changed_one() {
        let shares = PublicShares::default();
        shares.insert(share("a"));
        shares.insert(share("b"));
        let (a, b) = (shares.get("a"), shares.get("b"));
        let mut later = share("b");
        later.expires_at = 1;
        shares.replace(&[share("a"), later]);
        let same = |x: &Option<Arc<PublicShare>>, y: &Option<Arc<PublicShare>>| matches!((x, y), (Some(x), Some(y)) if Arc::ptr_eq(x, y));
        assert!(same(&a, &shares.get("a")), "unchanged: the same entry");
        assert!(!same(&b, &shares.get("b")), "changed: a new entry");
        assert_eq!(shares.get("b").map(|s| s.row.expires_at), Some(1));
    }
}
