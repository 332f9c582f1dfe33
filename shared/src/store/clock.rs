//! Where "now" comes from. Lease expiry, TTL and the rate limiter all read the time through
//! this trait so tests can drive time by hand and stay deterministic.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock (NTP-synced on Lambda).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to, with millisecond resolution (the store's
/// resolution), for deterministic tests.
#[derive(Debug)]
pub struct ManualClock {
    epoch_ms: AtomicI64,
}

impl ManualClock {
    /// A clock showing `start`, truncated to whole milliseconds.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            epoch_ms: AtomicI64::new(start.timestamp_millis()),
        }
    }

    /// Moves the clock forward (or backward, for a negative delta).
    pub fn advance(&self, by: TimeDelta) {
        self.epoch_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        self.epoch_ms.store(to.timestamp_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        from_epoch_ms(self.epoch_ms.load(Ordering::SeqCst))
    }
}

/// Epoch milliseconds to an instant; out-of-range values clamp to the epoch, which only
/// a corrupted item could produce.
pub(crate) fn from_epoch_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = from_epoch_ms(1_700_000_000_123);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(TimeDelta::milliseconds(430));
        assert_eq!(clock.now().timestamp_millis(), 1_700_000_000_553);
        clock.set(from_epoch_ms(5));
        assert_eq!(clock.now().timestamp_millis(), 5);
    }
}
