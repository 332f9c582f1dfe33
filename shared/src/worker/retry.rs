//! When to try a delivery again: exponential back-off with full jitter for transient
//! failures (so retries from many messages spread out instead of arriving together), a
//! bounded number of attempts, and a pause after the vendor refused our credentials.

use std::time::Duration;

/// Retry settings of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Receives of one message before a transient failure dead-letters it.
    pub max_attempts: u32,
    /// First back-off ceiling; doubles per attempt.
    pub base: Duration,
    /// Largest back-off.
    pub cap: Duration,
    /// Shortest back-off, so a retry never spins.
    pub floor: Duration,
    /// How long a vendor is left alone after refusing our credentials.
    pub auth_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(15 * 60),
            floor: Duration::from_secs(1),
            auth_pause: Duration::from_secs(5 * 60),
        }
    }
}

impl RetryPolicy {
    /// The back-off before attempt `attempt + 1` (attempts count from 1): a uniformly random
    /// delay between zero and `min(cap, base × 2^(attempt − 1))`, at least `floor`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis)).max(self.floor)
    }

    /// Whether a transient failure on receive `attempt` still gets another try.
    pub fn retries_left(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

/// `delay` plus up to 20% (at least 50 ms) of random spread, so messages deferred to the
/// same instant (a busy lease, a rate-limit slot) do not all come back together.
pub fn with_jitter(delay: Duration) -> Duration {
    let spread = (delay / 5).max(Duration::from_millis(50));
    let millis = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    delay + Duration::from_millis(rand::random_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_stays_random_below_it() {
        let p = RetryPolicy::default();
        for attempt in 1..=12 {
            let ceiling = (p.base * 2u32.pow(attempt - 1))
                .min(p.cap)
                .max(Duration::from_secs(1));
            for _ in 0..50 {
                let d = p.backoff(attempt);
                assert!(
                    d >= Duration::from_secs(1) && d <= ceiling,
                    "attempt {attempt}: {d:?} > {ceiling:?}"
                );
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(10)).collect();
        assert!(spread.len() > 10, "full jitter spreads retries");
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(p.retries_left(2));
        assert!(!p.retries_left(3));
    }

    #[test]
    fn jitter_adds_a_little() {
        for _ in 0..50 {
            let d = with_jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(12));
        }
    }
}
