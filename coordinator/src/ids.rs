//! Tokens, ids, relay slots and public names, from one place, so tests can control them.

/// Tokens, relay slots and public names, from one place, so tests can control them.
pub trait Ids: Send + Sync {
    /// A secret of at least 128 bits, URL-safe.
    fn secret(&self, prefix: &str) -> String;
    fn id(&self, prefix: &str) -> String;
    fn relay_slot(&self) -> u64;
    /// adjective-animal-NNNN
    fn public_name(&self) -> String;
}

pub struct RandomIds;

impl Ids for RandomIds {
    fn secret(&self, prefix: &str) -> String {
        use base64::Engine;
        let bytes: [u8; 24] = rand::random();
        format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}", hex::encode(rand::random::<[u8; 8]>()))
    }

    fn relay_slot(&self) -> u64 {
        // Positive in an i64 column on both databases.
        rand::random::<u64>() >> 2
    }

    fn public_name(&self) -> String {
        let name = petname::petname(2, "-").unwrap_or_else(|| "quiet-otter".to_owned());
        format!("{name}-{:04}", rand::random::<u16>() % 10_000)
    }
}
