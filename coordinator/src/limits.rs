//! Rate limits on what anyone can ask for before the hub trusts them, or what costs the
//! hub or a sharer something: registering (guests above all), joining, fetching a share's
//! SSH key, and guessing a public URL's password. Keyed by source address and, once the
//! caller is known, by agent; a refusal is a 429 with the one error shape. Each key is a
//! token bucket (governor's GCRA): a burst, then a steady rate. [`Limits::prune`] drops
//! keys whose bucket is full again, so the tables hold only recent callers.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// `burst` at once, then one more every `every`.
fn quota(burst: u32, every: Duration) -> Quota {
    Quota::with_period(every)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

pub struct Limits {
    register_from: DefaultKeyedRateLimiter<IpAddr>,
    join_from: DefaultKeyedRateLimiter<IpAddr>,
    join_by: DefaultKeyedRateLimiter<String>,
    ssh_key_by: DefaultKeyedRateLimiter<String>,
    password_from: DefaultKeyedRateLimiter<IpAddr>,
    /// `--rate-limit-exempt`: addresses the admin trusts (monitoring, benchmarks). Empty
    /// by default: the hub's own host is not exempt, since behind a reverse proxy on the
    /// same machine every visitor would look like it.
    exempt: Vec<ipnet::IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::exempting(Vec::new())
    }
}

impl Limits {
    /// The limits, but none for callers in `exempt`.
    pub fn exempting(exempt: Vec<ipnet::IpNet>) -> Self {
        let second = Duration::from_secs(1);
        Self {
            exempt,
            register_from: RateLimiter::keyed(quota(30, 2 * second)),
            join_from: RateLimiter::keyed(quota(60, second / 2)),
            join_by: RateLimiter::keyed(quota(20, second)),
            ssh_key_by: RateLimiter::keyed(quota(10, 6 * second)),
            password_from: RateLimiter::keyed(quota(10, 6 * second)),
        }
    }

    fn is_exempt(&self, from: IpAddr) -> bool {
        self.exempt.iter().any(|net| net.contains(&from))
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|_| ApiError::RateLimited)
}

impl Limits {
    /// A registration (an agent's or a guest's) from `from`.
    pub fn register(&self, from: IpAddr) -> Result<(), ApiError> {
        if self.is_exempt(from) {
            return Ok(());
        }
        check(&self.register_from, &from)
    }

    /// A join from `from` by agent `agent`.
    pub fn join(&self, from: IpAddr, agent: &str) -> Result<(), ApiError> {
        if self.is_exempt(from) {
            return Ok(());
        }
        check(&self.join_from, &from)?;
        check(&self.join_by, &agent.to_owned())
    }

    /// A download of a share's encrypted SSH key by agent `agent`.
    pub fn ssh_key(&self, agent: &str) -> Result<(), ApiError> {
        check(&self.ssh_key_by, &agent.to_owned())
    }

    /// A public-URL password to check (one not already known good) from `from`. This
    /// also bounds the slow hashing a caller can make the hub do.
    pub fn password(&self, from: IpAddr) -> Result<(), ApiError> {
        if self.is_exempt(from) {
            return Ok(());
        }
        check(&self.password_from, &from)
    }

    /// Forgets callers whose buckets are full again.
    pub fn prune(&self) {
        self.register_from.retain_recent();
        self.join_from.retain_recent();
        self.join_by.retain_recent();
        self.ssh_key_by.retain_recent();
        self.password_from.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exempt_addresses_are_never_limited_and_others_are() {
        let limits = Limits::exempting(vec![
            "127.0.0.0/8".parse().unwrap_or_else(|_| unreachable!()),
        ]);
        let local = IpAddr::from([127, 0, 0, 1]);
        let remote = IpAddr::from([203, 0, 113, 9]);
        assert!((0..200).all(|_| limits.join(local, "agt_1").is_ok()));
        assert!((0..200).any(|_| limits.join(remote, "agt_2").is_err()));
        assert!((0..200).all(|_| limits.register(local).is_ok()));
    }
}
