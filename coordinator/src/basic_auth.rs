//! Public-URL passwords (`share --http-auth USER:PASS`): stored as an Argon2id hash, so a
//! leaked database row gives no password away quickly; checked off the async workers, at
//! a rate limited per address (see `limits`); and remembered once good, so a visitor's
//! browser, which sends the same header with every request, pays the slow hash once.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::limits::Limits;

/// Good credentials remembered at once; past this the memory starts again.
const REMEMBERED: usize = 4_096;

/// `USER:PASS` as the database keeps it: an Argon2id hash with a random salt.
pub fn hash(pair: &str) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|_| ApiError::Invalid("cannot salt the password".into()))?;
    Argon2::default()
        .hash_password(pair.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| ApiError::Invalid("cannot hash the password".into()))
}

/// Credentials already found good: digests of (stored hash, `Authorization` value).
#[derive(Default)]
pub struct Checked {
    good: Mutex<HashSet<[u8; 32]>>,
}

impl Checked {
    /// Whether `header` (the request's `Authorization` value) carries the credentials
    /// whose hash is `stored`. A check that needs the slow hash counts against `from`'s
    /// limit: past it, [`ApiError::RateLimited`].
    pub async fn check(
        &self,
        limits: &Limits,
        from: Option<IpAddr>,
        stored: &str,
        header: Option<&str>,
    ) -> Result<bool, ApiError> {
        let Some(given) = header.and_then(|v| v.strip_prefix("Basic ")) else {
            return Ok(false);
        };
        let digest: [u8; 32] = Sha256::new()
            .chain_update(stored)
            .chain_update([0])
            .chain_update(given)
            .finalize()
            .into();
        if self.good.lock().is_ok_and(|good| good.contains(&digest)) {
            return Ok(true);
        }
        if let Some(from) = from {
            limits.password(from)?;
        }
        let Some(pair) = base64::engine::general_purpose::STANDARD
            .decode(given.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
        else {
            return Ok(false);
        };
        let stored_owned = stored.to_owned();
        let good = tokio::task::spawn_blocking(move || verify(&stored_owned, &pair))
            .await
            .unwrap_or(false);
        if good && let Ok(mut remembered) = self.good.lock() {
            if remembered.len() >= REMEMBERED {
                remembered.clear();
            }
            remembered.insert(digest);
        }
        Ok(good)
    }
}

fn verify(stored: &str, pair: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(pair.as_bytes(), &hash)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pair: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    #[tokio::test]
    async fn right_passwords_pass_wrong_ones_run_into_the_limit() {
        let stored = hash("ann:secret").unwrap_or_default();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        let (checked, limits) = (Checked::default(), Limits::default());
        let from = Some(IpAddr::from([198, 51, 100, 7]));
        let right = basic("ann:secret");
        assert!(matches!(
            checked.check(&limits, from, &stored, Some(&right)).await,
            Ok(true)
        ));
        assert!(matches!(
            checked.check(&limits, from, &stored, None).await,
            Ok(false)
        ));
        let mut refused = 0;
        for n in 0..20 {
            let wrong = basic(&format!("ann:guess{n}"));
            match checked.check(&limits, from, &stored, Some(&wrong)).await {
                Ok(good) => assert!(!good),
                Err(ApiError::RateLimited) => refused += 1,
                Err(other) => panic!("{other}"),
            }
        }
        assert!(refused >= 9, "only {refused} of 20 guesses refused");
        // Known-good credentials need no new check, so the limit does not lock them out.
        assert!(matches!(
            checked.check(&limits, from, &stored, Some(&right)).await,
            Ok(true)
        ));
    }
}
