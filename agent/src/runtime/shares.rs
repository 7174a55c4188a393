//! The shares this machine made, as the running agent keeps them: in memory, read from
//! `shares.json` when another process (`connect share`) says it wrote a new one, and
//! saved atomically when a share ends. A save that fails is reported, never dropped.

use std::net::Ipv4Addr;

use time::OffsetDateTime;

use crate::config::{LocalShare, Paths};

pub(super) struct ShareBook {
    paths: Paths,
    shares: Vec<LocalShare>,
}

impl ShareBook {
    /// # Errors
    /// When `shares.json` exists but cannot be read.
    pub(super) fn load(paths: &Paths) -> anyhow::Result<Self> {
        Ok(Self {
            shares: paths.local_shares()?,
            paths: paths.clone(),
        })
    }

    /// Reads the file again (`connect share` wrote to it). An unreadable file keeps what
    /// is in memory, and says so.
    pub(super) fn reload(&mut self) {
        match self.paths.local_shares() {
            Ok(shares) => self.shares = shares,
            Err(err) => tracing::warn!("{err:#}; keeping the shares already loaded"),
        }
    }

    pub(super) fn all(&self) -> &[LocalShare] {
        &self.shares
    }

    pub(super) fn find(&self, lookup: &str) -> Option<&LocalShare> {
        self.shares.iter().find(|s| s.lookup == lookup)
    }

    /// Shares that have not expired yet.
    pub(super) fn live(&self) -> impl Iterator<Item = &LocalShare> {
        let now = OffsetDateTime::now_utc();
        self.shares.iter().filter(move |s| s.expires_at > now)
    }

    /// The tunnel addresses of the live shares, which the node's stack answers for.
    pub(super) fn live_addresses(&self) -> Vec<Ipv4Addr> {
        self.live().map(|s| s.machine_ip).collect()
    }

    /// Forgets an ended share and saves the rest; returns it, if this machine had it.
    /// The file is read first, so a share `connect share` has just written is kept.
    pub(super) fn end(&mut self, lookup: &str) -> Option<LocalShare> {
        self.reload();
        let index = self.shares.iter().position(|s| s.lookup == lookup)?;
        let ended = self.shares.remove(index);
        if let Err(err) = self.paths.save_local_shares(&self.shares) {
            tracing::error!("{err:#}");
            eprintln!(
                "[!] Cannot save {}: {err:#}. The ended share comes back when the agent restarts, until the file can be written.",
                self.paths.shares().display()
            );
        }
        Some(ended)
    }
}
