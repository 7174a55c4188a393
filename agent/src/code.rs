//! Share codes: made on the sharing machine, typed by a teammate, never seen by the hub.
//!
//! A code is 80 random bits in Crockford base32 (16 characters, shown as four groups,
//! case-insensitive, dashes optional). HKDF turns it into two values: the `lookup` the hub
//! stores to find the share, and a MAC key with which the sharer and the joiner vouch for
//! their WireGuard public keys. A hub that never saw the code can compute neither, so it
//! can neither impersonate the shared machine nor let in anyone without the code.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const CODE_BYTES: usize = 10;
const ALPHABET: base32::Alphabet = base32::Alphabet::Crockford;

#[derive(Clone, PartialEq, Eq)]
pub struct ShareCode([u8; CODE_BYTES]);

impl std::fmt::Debug for ShareCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareCode(…)")
    }
}

/// Which side vouches for a key; the MAC binds the role so one cannot pose as the other.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Sharer,
    Joiner,
}

impl ShareCode {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// Reads what a user typed: any case, dashes and spaces anywhere, Crockford's
    /// look-alikes (I, L → 1; O → 0).
    pub fn parse(text: &str) -> Option<Self> {
        let cleaned: String = text
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if cleaned.len() != 16 || !cleaned.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let bytes = base32::decode(ALPHABET, &cleaned)?;
        Some(Self(bytes.try_into().ok()?))
    }

    fn derive(&self, info: &[u8]) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(b"connect share code v1"), &self.0);
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit; this cannot fail.
        let _ = hk.expand(info, &mut out);
        out
    }

    /// What the hub stores and looks the share up by.
    pub fn lookup(&self) -> String {
        hex::encode(self.derive(b"lookup"))
    }

    /// The MAC of `key` for `role`, hex.
    pub fn mac(&self, role: Role, key: &[u8; 32]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.derive(b"key mac"))
            .expect("HMAC takes any key length");
        mac.update(match role {
            Role::Sharer => b"sharer",
            Role::Joiner => b"joiner",
        });
        mac.update(key);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Constant-time check of a MAC the hub relayed.
    pub fn verify(&self, role: Role, key: &[u8; 32], mac_hex: &str) -> bool {
        let expected = self.mac(role, key);
        expected.len() == mac_hex.len()
            && expected
                .bytes()
                .zip(mac_hex.to_ascii_lowercase().bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl std::fmt::Display for ShareCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = base32::encode(ALPHABET, &self.0).to_ascii_lowercase();
        let groups: Vec<&str> = (0..4).map(|i| &text[i * 4..i * 4 + 4]).collect();
        f.write_str(&groups.join("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_typeable_and_forgiving() {
        let code = ShareCode::generate();
        let text = code.to_string();
        assert_eq!(text.len(), 19);
        assert_eq!(text.matches('-').count(), 3);
        assert_eq!(ShareCode::parse(&text), Some(code.clone()));
        assert_eq!(ShareCode::parse(&text.to_uppercase()), Some(code.clone()));
        assert_eq!(ShareCode::parse(&text.replace('-', "")), Some(code.clone()));
        assert_eq!(ShareCode::parse("abc"), None);
        assert_eq!(ShareCode::parse("uuuu-uuuu-uuuu-uuu!"), None);
    }

    #[test]
    fn macs_bind_code_role_and_key() {
        let code = ShareCode::generate();
        let other = ShareCode::generate();
        let key = [9u8; 32];
        let mac = code.mac(Role::Sharer, &key);
        assert!(code.verify(Role::Sharer, &key, &mac));
        assert!(!code.verify(Role::Joiner, &key, &mac));
        assert!(!other.verify(Role::Sharer, &key, &mac));
        assert!(!code.verify(Role::Sharer, &[8u8; 32], &mac));
        assert_ne!(code.lookup(), other.lookup());
        assert_eq!(code.lookup().len(), 64);
    }
}
