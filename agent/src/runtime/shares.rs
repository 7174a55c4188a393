//! The shares this machine made, as the running agent and `connect share` keep them: in
//! memory, read from `shares.json` again when another process says it wrote to it, and
//! saved atomically when a share ends. Ended shares stay (with their codes) for
//! `share --list`. A save that fails is reported, never dropped.

use std::net::Ipv4Addr;

use time::OffsetDateTime;

use connect_api::ShareState;

use crate::config::{Ended, LocalShare, Paths, Verdict};

pub(crate) struct ShareBook {
    paths: Paths,
    shares: Vec<LocalShare>,
}

impl ShareBook {
    /// # Errors
    /// When `shares.json` exists but cannot be read.
    pub(crate) fn load(paths: &Paths) -> anyhow::Result<Self> {
        Ok(Self {
            shares: paths.local_shares()?,
            paths: paths.clone(),
        })
    }

    /// Reads the file again (`connect share` wrote to it). An unreadable file keeps what
    /// is in memory, and says so.
    pub(crate) fn reload(&mut self) {
        match self.paths.local_shares() {
            Ok(shares) => self.shares = shares,
            Err(err) => tracing::warn!("{err:#}; keeping the shares already loaded"),
        }
    }

    pub(crate) fn all(&self) -> &[LocalShare] {
        &self.shares
    }

    /// A live share: only those vouch for joiners.
    pub(crate) fn find_live(&self, lookup: &str) -> Option<&LocalShare> {
        self.live().find(|s| s.lookup == lookup)
    }

    /// Shares that have not ended nor reached their deadline.
    pub(crate) fn live(&self) -> impl Iterator<Item = &LocalShare> {
        let now = OffsetDateTime::now_utc();
        self.shares.iter().filter(move |s| s.is_live(now))
    }

    /// Shares past their own deadline that have not been ended yet.
    pub(crate) fn due(&self, now: OffsetDateTime) -> Vec<String> {
        self.shares
            .iter()
            .filter(|s| s.ended.is_none() && s.expires_at <= now)
            .map(|s| s.lookup.clone())
            .collect()
    }

    /// The next deadline of a live share.
    pub(crate) fn next_deadline(&self) -> Option<OffsetDateTime> {
        self.live().map(|s| s.expires_at).min()
    }

    /// Revokes made here that the hub has not heard of yet.
    pub(crate) fn untold(&self) -> Vec<String> {
        self.shares
            .iter()
            .filter(|s| s.ended.is_some_and(|e| !e.hub_told))
            .map(|s| s.lookup.clone())
            .collect()
    }

    /// The tunnel addresses of the live shares, which the node's stack answers for.
    pub(crate) fn live_addresses(&self) -> Vec<Ipv4Addr> {
        self.live().map(|s| s.machine_ip).collect()
    }

    /// Ends a share: marks it and saves. Returns it when it had not ended before. The file
    /// is read first, so a share another process has just written is kept.
    pub(crate) fn end(
        &mut self,
        lookup: &str,
        state: ShareState,
        hub_told: bool,
    ) -> Option<LocalShare> {
        self.reload();
        let share = self
            .shares
            .iter_mut()
            .find(|s| s.lookup == lookup && s.ended.is_none())?;
        share.ended = Some(Ended { state, hub_told });
        let ended = share.clone();
        self.save();
        Some(ended)
    }

    /// Moves a live share's deadline later (its owner extended it from the dashboard; an
    /// earlier one is ignored). Returns whether it moved.
    pub(crate) fn extend(&mut self, lookup: &str, expires_at: OffsetDateTime) -> bool {
        self.reload();
        let now = OffsetDateTime::now_utc();
        let Some(share) = self
            .shares
            .iter_mut()
            .find(|s| s.lookup == lookup && s.is_live(now) && s.expires_at < expires_at)
        else {
            return false;
        };
        share.expires_at = expires_at;
        self.save();
        true
    }

    /// The share's rules on a joiner the code vouches for (`None`: no live share); what
    /// they decide is saved before the joiner is let in.
    pub(crate) fn judge(&mut self, lookup: &str, key: &str) -> Option<Verdict> {
        self.reload();
        let now = OffsetDateTime::now_utc();
        let share = self
            .shares
            .iter_mut()
            .find(|s| s.lookup == lookup && s.is_live(now))?;
        let before = share.joiners.clone();
        let verdict = share.joiners.admit(key);
        if share.joiners != before {
            self.save();
        }
        Some(verdict)
    }

    /// Records the sharer's word on a waiting joiner.
    pub(crate) fn decide(&mut self, lookup: &str, key: &str, approved: bool) {
        self.reload();
        if let Some(share) = self.shares.iter_mut().find(|s| s.lookup == lookup) {
            share.joiners.decide(key, approved);
            self.save();
        }
    }

    /// The hub now knows the share ended.
    pub(crate) fn told(&mut self, lookup: &str) {
        self.reload();
        if let Some(ended) = self
            .shares
            .iter_mut()
            .filter(|s| s.lookup == lookup)
            .find_map(|s| s.ended.as_mut())
        {
            ended.hub_told = true;
            self.save();
        }
    }

    fn save(&self) {
        if let Err(err) = self.paths.save_local_shares(&self.shares) {
            tracing::error!("{err:#}");
            eprintln!(
                "[!] Cannot save {}: {err:#}. The ended share comes back when the agent restarts, until the file can be written.",
                self.paths.shares().display()
            );
        }
    }
}
