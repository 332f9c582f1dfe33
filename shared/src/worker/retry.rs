//! When to try a delivery again.
//!
//! Two kinds of "later", kept apart:
//!
//! * **Waiting** — for another delivery's lease on the record, a rate-limit slot, a vendor's
//!   `Retry-After`, the end of a credentials pause, or an invocation with more time left.
//!   Nothing failed, so waiting costs nothing: no failure is counted. Each wait is capped
//!   ([`RetryPolicy::max_wait`]) and the whole time a delivery may spend handed back is
//!   bounded ([`RetryPolicy::give_up_after`]), so no message circles forever.
//! * **Failing** — a transient failure (5xx, timeout, connection error, a store outage).
//!   Retried with capped exponential back-off and full jitter (so retries from many messages
//!   spread out instead of arriving together) for a time horizon counted from the first
//!   failure ([`RetryPolicy::horizon`]), then dead-lettered with the reason.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Retry settings of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long transient failures are retried, counted from the first one; a failure after
    /// it dead-letters the delivery with the reason.
    pub horizon: Duration,
    /// First back-off ceiling; doubles per failure.
    pub base: Duration,
    /// Largest back-off (longer than SQS's 15-minute delay is fine: the wait is chained).
    pub cap: Duration,
    /// Shortest back-off, so a retry never spins.
    pub floor: Duration,
    /// Longest single wait: caps a vendor's `Retry-After`, the penalty it puts on the shared
    /// schedule, and a rate-limit slot far away.
    pub max_wait: Duration,
    /// How long a vendor is left alone, by every instance, after refusing our credentials.
    pub auth_pause: Duration,
    /// Time an invocation keeps after its last vendor call (for recording the result and
    /// settling the message): no call starts that could not finish this long before the
    /// deadline.
    pub deadline_margin: Duration,
    /// Longest a delivery may be handed back in all (waits included) before it is
    /// dead-lettered: below the queue's 4-day retention, which a re-sent message no longer
    /// runs into.
    pub give_up_after: Duration,
    /// How long a change a vendor cannot create the person's record from (no e-mail or
    /// phone for a person new to Hood) waits for another event that brings one.
    pub identity_wait: Duration,
    /// How often such a change is tried again meanwhile.
    pub identity_retry: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            horizon: Duration::from_secs(6 * 60 * 60),
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60 * 60),
            floor: Duration::from_secs(1),
            max_wait: Duration::from_secs(15 * 60),
            auth_pause: Duration::from_secs(5 * 60),
            deadline_margin: Duration::from_secs(2),
            give_up_after: Duration::from_secs(3 * 24 * 60 * 60),
            identity_wait: Duration::from_secs(60 * 60),
            identity_retry: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The back-off after failure number `failures` (counting from 1): a uniformly random
    /// delay between zero and `min(cap, base × 2^(failures − 1))`, at least `floor`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis)).max(self.floor)
    }

    /// Whether a transient failure at `now` of a delivery that first failed at
    /// `first_failed_at` is still inside the horizon.
    pub fn within_horizon(&self, first_failed_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - first_failed_at < delta(self.horizon)
    }

    /// The back-off after failure number `failures`, ending no later than the horizon, so
    /// the last try happens at it.
    pub fn backoff_within_horizon(
        &self,
        failures: u32,
        first_failed_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Duration {
        let left = (first_failed_at + delta(self.horizon) - now)
            .to_std()
            .unwrap_or_default();
        self.backoff(failures).min(left)
    }

    /// `wait` capped to [`Self::max_wait`].
    pub fn capped(&self, wait: Duration) -> Duration {
        wait.min(self.max_wait)
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `delay` plus up to 20% (at least 50 ms) of random spread, so messages deferred to the
/// same instant (a busy lease, a rate-limit slot) do not all come back together.
pub fn with_jitter(delay: Duration) -> Duration {
    let spread = (delay / 5).max(Duration::from_millis(50));
    let millis = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    delay + Duration::from_millis(rand::random_range(0..=millis))
}

/// A wait of at least `wait`, jittered, in whole seconds — SQS delays are whole seconds, and
/// rounding a jittered 1 s up would double it: the jitter only adds the seconds it fills.
pub fn jittered_seconds(wait: Duration) -> Duration {
    let at_least = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(at_least.max(with_jitter(wait).as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_stays_random_below_it() {
        let p = RetryPolicy::default();
        for failures in 1..=14 {
            let ceiling = (p.base * 2u32.pow(failures - 1))
                .min(p.cap)
                .max(Duration::from_secs(1));
            for _ in 0..50 {
                let d = p.backoff(failures);
                assert!(
                    d >= Duration::from_secs(1) && d <= ceiling,
                    "failure {failures}: {d:?} > {ceiling:?}"
                );
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(10)).collect();
        assert!(spread.len() > 10, "full jitter spreads retries");
        assert!(
            (0..200).any(|_| p.backoff(30) > Duration::from_secs(15 * 60)),
            "the cap is above SQS's longest delay: long back-offs are chained"
        );
    }

    #[test]
    fn failures_are_bounded_by_time_and_the_last_try_is_at_the_horizon() {
        let p = RetryPolicy {
            horizon: Duration::from_secs(600),
            ..RetryPolicy::default()
        };
        let first = DateTime::UNIX_EPOCH;
        assert!(p.within_horizon(first, first + TimeDelta::seconds(599)));
        assert!(!p.within_horizon(first, first + TimeDelta::seconds(600)));
        for _ in 0..50 {
            let d = p.backoff_within_horizon(20, first, first + TimeDelta::seconds(590));
            assert!(d <= Duration::from_secs(10), "{d:?}");
        }
    }

    #[test]
    fn jitter_adds_a_little() {
        for _ in 0..50 {
            let d = with_jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(12));
        }
    }

    #[test]
    fn jittered_seconds_are_whole_never_shorter_and_spread_long_waits() {
        assert_eq!(jittered_seconds(Duration::ZERO), Duration::ZERO);
        for _ in 0..50 {
            assert_eq!(
                jittered_seconds(Duration::from_secs(1)),
                Duration::from_secs(1)
            );
            assert_eq!(
                jittered_seconds(Duration::from_millis(1_300)),
                Duration::from_secs(2)
            );
            let d = jittered_seconds(Duration::from_secs(60));
            assert!(d >= Duration::from_secs(60) && d <= Duration::from_secs(72));
            assert_eq!(d.subsec_nanos(), 0);
        }
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|_| jittered_seconds(Duration::from_secs(60)))
            .collect();
        assert!(spread.len() > 3, "{spread:?}");
    }
}
