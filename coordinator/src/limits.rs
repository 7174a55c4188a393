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
}

impl Default for Limits {
    fn default() -> Self {
        let second = Duration::from_secs(1);
        Self {
            register_from: RateLimiter::keyed(quota(30, 2 * second)),
            join_from: RateLimiter::keyed(quota(60, second / 2)),
            join_by: RateLimiter::keyed(quota(20, second)),
            ssh_key_by: RateLimiter::keyed(quota(10, 6 * second)),
            password_from: RateLimiter::keyed(quota(10, 6 * second)),
        }
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
        check(&self.register_from, &from)
    }

    /// A join from `from` by agent `agent`.
    pub fn join(&self, from: IpAddr, agent: &str) -> Result<(), ApiError> {
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
