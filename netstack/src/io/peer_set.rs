//! A group of peers kept equal to a list its owner recomputes. The hub keeps one WireGuard
//! peer per sharing machine with a live public share; a sharing agent keeps its joiners
//! (from the hub's snapshot) and the hub's own peer (from its public shares). Each
//! recomputes what it wants after a change; the diff against what is configured — drop
//! what is gone or changed, add what is new, leave the rest and their flows alone — is
//! here once.
//!
//! Several sets may share one [`Netstack`]; each touches only the peers it added.

use std::collections::HashMap;

use crate::{PeerConfig, PublicKey};

use super::handle::{DriverError, Netstack};

#[derive(Debug, Default)]
pub struct PeerSet {
    peers: HashMap<PublicKey, PeerConfig>,
}

/// What [`PeerSet::set`] changed: keys removed (their flows ended) and keys added, a
/// changed peer in both.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub removed: Vec<PublicKey>,
    pub added: Vec<PublicKey>,
}

impl PeerSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.peers.contains_key(key)
    }

    pub fn get(&self, key: &PublicKey) -> Option<&PeerConfig> {
        self.peers.get(key)
    }

    pub fn configs(&self) -> impl Iterator<Item = &PeerConfig> {
        self.peers.values()
    }

    /// Makes the set exactly `wanted` (by key; a later duplicate wins). A peer whose
    /// config changed is removed and added again, which ends its flows: its addresses
    /// or what it may reach are no longer what they were.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] when the tunnel is gone. A peer the node refuses is
    /// logged and left out, so one bad entry does not keep the others away.
    pub async fn set(
        &mut self,
        net: &Netstack,
        wanted: impl IntoIterator<Item = PeerConfig>,
    ) -> Result<Changes, DriverError> {
        let mut wanted: HashMap<PublicKey, PeerConfig> = wanted
            .into_iter()
            .map(|config| (config.public_key, config))
            .collect();
        let mut changes = Changes::default();
        let stale: Vec<PublicKey> = self
            .peers
            .iter()
            .filter(|(key, config)| wanted.get(*key) != Some(*config))
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.remove(net, key).await?;
            changes.removed.push(key);
        }
        wanted.retain(|key, _| !self.peers.contains_key(key));
        for (key, config) in wanted {
            match self.put(net, config).await {
                Ok(()) => changes.added.push(key),
                Err(DriverError::Stopped) => return Err(DriverError::Stopped),
                Err(err) => tracing::warn!(%err, peer = %crate::key_label(&key), "peer refused"),
            }
        }
        Ok(changes)
    }

    /// Adds one peer, replacing (and ending the flows of) one with the same key.
    ///
    /// # Errors
    /// As [`Netstack::add_peer`].
    pub async fn put(&mut self, net: &Netstack, config: PeerConfig) -> Result<(), DriverError> {
        let key = config.public_key;
        self.remove(net, key).await?;
        net.add_peer(config.clone()).await?;
        self.peers.insert(key, config);
        Ok(())
    }

    /// Removes one peer of this set; whether it was one.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] when the tunnel is gone.
    pub async fn remove(&mut self, net: &Netstack, key: PublicKey) -> Result<bool, DriverError> {
        if self.peers.remove(&key).is_none() {
            return Ok(false);
        }
        match net.remove_peer(key).await {
            Ok(()) | Err(DriverError::Node(crate::Error::UnknownPeer)) => Ok(true),
            Err(err) => Err(err),
        }
    }
}
