//! Bounded retries with jittered backoff for compare-and-swap loops.
//!
//! Jitter comes from the standard library's randomly keyed hasher, so no RNG dependency;
//! it only has to de-synchronise writers, not be unpredictable.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How often and how long a CAS loop retries.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts before giving up.
    pub attempts: u32,
    /// Backoff ceiling of the first retry; doubles per retry up to `max_backoff`.
    pub base_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 40,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1-based): uniform in [0, ceiling).
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_backoff
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX).max(1);
        Duration::from_nanos(random_u64() % nanos)
    }
}

/// A random number, good enough for jitter.
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x7769_6c6c);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let p = RetryPolicy::default();
        for retry in 1..40 {
            assert!(p.backoff(retry) < p.max_backoff);
        }
        assert!(p.backoff(1) < Duration::from_millis(4));
    }
}
