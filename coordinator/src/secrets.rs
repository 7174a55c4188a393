//! Every secret the hub keeps, it keeps only as a hash made here: API tokens and
//! enrollment keys (SHA-256 of high-entropy random values), a public share's basic-auth
//! pair (salted with the share's lookup), and an agent's relay key (derived from its
//! token, hex for the database).

use sha2::{Digest, Sha256};

/// Tokens and enrollment keys are stored only as this hash.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The key that authenticates an agent's relay binds, as the database keeps it.
pub fn relay_key_hex(token: &str) -> Secret {
    Secret(hex::encode(connect_netstack::relay::relay_key(token)))
}

/// A secret the hub must hold in clear (an agent's relay key, a share's encrypted SSH
/// key): never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}
