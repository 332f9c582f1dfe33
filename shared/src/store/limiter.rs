//! A rate limiter per vendor account that holds across every running instance: GCRA
//! (generic cell rate algorithm) over one shared number, the theoretical arrival time `tat`.
//!
//! With emission interval `T` and tolerance `tau = (burst − 1) × T`, a permit at `now` is
//! granted when `tat − now ≤ tau`, and granting sets `tat = max(tat, now) + T`. So at most
//! `burst` permits go at once, then one every `T`. A 429 from the vendor *penalises* the
//! schedule: `tat = max(tat, now + retry_after + tau)`, so the next permit anywhere is no
//! earlier than `now + retry_after` and the steady rate resumes after it (no burst).
//!
//! Hood (10 per fixed second, 150 per fixed minute): `T = 430 ms`, burst 5 gives at most 7
//! in any 1 s window and 144 in any 60 s window (checked by the tests below).
//!
//! # Clock skew
//!
//! Each instance uses its own clock for `now`; DynamoDB's clock plays no part (the
//! conditions compare the stored `tat` with the caller's `now`). An instance whose clock is
//! ahead by `δ` gets permits up to `δ` early and, after an idle spell, starts the schedule
//! `δ` later for everyone; one behind by `δ` waits up to `δ` longer and may restart the
//! schedule `δ` early. The steady rate cannot drift — in the busy regime every grant adds
//! exactly `T` to the shared `tat` whatever the caller's clock — so skew only shifts
//! individual permits by at most `δ`. Lambda clocks are NTP-synced (Amazon Time Sync, well
//! under a millisecond), against a `T` of hundreds of milliseconds; Hood's schedule leaves
//! 3 per second and 6 per minute of headroom besides. Where clocks are less trustworthy,
//! [`GcraParams::with_skew_margin`] shrinks `tau` by the worst expected skew so a fast clock
//! cannot burst beyond the configured burst.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::StoreError;
use super::clock::{Clock, from_epoch_ms};

/// The schedule of one limiter (from config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcraParams {
    /// `T`: the steady spacing between permits.
    pub emission_interval: Duration,
    /// Permits that may go at once after an idle spell (≥ 1).
    pub burst: u32,
    /// Subtracted from `tau` to absorb clock skew between instances (usually zero).
    pub skew_margin: Duration,
}

impl GcraParams {
    /// Ocamba Hood: one every 430 ms, burst 5 — inside both 10/s and 150/min.
    pub const HOOD: GcraParams = GcraParams {
        emission_interval: Duration::from_millis(430),
        burst: 5,
        skew_margin: Duration::ZERO,
    };

    /// A schedule of one permit per `emission_interval` with `burst` at once.
    pub fn new(emission_interval: Duration, burst: u32) -> Self {
        Self {
            emission_interval,
            burst,
            skew_margin: Duration::ZERO,
        }
    }

    /// The same schedule with `tau` reduced by `margin`.
    pub fn with_skew_margin(self, margin: Duration) -> Self {
        Self {
            skew_margin: margin,
            ..self
        }
    }

    /// `T` in milliseconds.
    pub fn t_ms(&self) -> i64 {
        millis(self.emission_interval)
    }

    /// `tau = (burst − 1) × T − skew_margin`, in milliseconds, never negative.
    pub fn tau_ms(&self) -> i64 {
        let slots = i64::from(self.burst.saturating_sub(1));
        self.t_ms()
            .saturating_mul(slots)
            .saturating_sub(millis(self.skew_margin))
            .max(0)
    }

    /// The GCRA decision for a permit at `now_ms` given the stored `tat` (none yet: idle).
    pub fn decide(&self, tat: Option<i64>, now_ms: i64) -> Decision {
        self.decide_within(tat, now_ms, 0)
    }

    /// The GCRA decision for a permit at most `max_wait_ms` from `now_ms`: granted for the
    /// instant the schedule allows it (a reservation), or refused with that instant.
    pub fn decide_within(&self, tat: Option<i64>, now_ms: i64, max_wait_ms: i64) -> Decision {
        let tat = tat.map_or(now_ms, |t| t.max(now_ms));
        let at = (tat - self.tau_ms()).max(now_ms);
        if at - now_ms <= max_wait_ms.max(0) {
            Decision::Grant {
                new_tat: tat.saturating_add(self.t_ms()),
            }
        } else {
            Decision::Deny { retry_at: at }
        }
    }

    /// The instant a permit granted with `new_tat` may be used, given `now_ms`.
    pub fn go_at(&self, new_tat: i64, now_ms: i64) -> i64 {
        (new_tat - self.t_ms() - self.tau_ms()).max(now_ms)
    }

    /// The `tat` after a 429 at `now_ms` asking to wait `retry_after`; never moves `tat`
    /// back.
    pub fn penalised(&self, tat: Option<i64>, now_ms: i64, retry_after: Duration) -> i64 {
        let pushed = now_ms
            .saturating_add(millis(retry_after))
            .saturating_add(self.tau_ms());
        tat.map_or(pushed, |t| t.max(pushed))
    }
}

/// Outcome of the pure GCRA rule, in epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Granted; store `new_tat`.
    Grant {
        /// The theoretical arrival time after this permit.
        new_tat: i64,
    },
    /// Refused; the earliest instant a permit can be granted.
    Deny {
        /// Epoch milliseconds.
        retry_at: i64,
    },
}

/// Answer to a permit request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Go ahead with one vendor call.
    Granted,
    /// No permit before this instant (given what this instance saw).
    RetryAt(DateTime<Utc>),
}

/// Answer to a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// A permit is booked for this instant (now, or within the allowed wait): sleep until
    /// then and make the call. The slot is taken whether or not the call is made.
    At(DateTime<Utc>),
    /// The next free slot is later than the allowed wait; nothing was booked.
    TooFar(DateTime<Utc>),
}

/// A shared rate limiter for one vendor account.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Asks for one permit now. One backend call in the common case, at most two.
    async fn acquire(&self) -> Result<Permit, StoreError>;

    /// Books the next permit if it falls within `max_wait`. Callers that would otherwise
    /// sleep and ask again book their slot instead, so concurrent waiters take consecutive
    /// slots with one write each rather than all retrying at the same instant. One backend
    /// call in the common case, at most two.
    async fn reserve(&self, max_wait: Duration) -> Result<Reservation, StoreError>;

    /// After a 429: no permit anywhere before `now + retry_after`, then the steady rate.
    async fn penalise(&self, retry_after: Duration) -> Result<(), StoreError>;

    /// When the next permit is free, without taking it: `None` when one is free now (or
    /// the backend does not say). For dashboards; writes nothing.
    async fn next_free(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(None)
    }
}

/// Acquires a permit, sleeping until each `RetryAt`; gives up (`false`) when the next
/// chance would be after `deadline` (e.g. the Lambda deadline minus the call's budget).
pub async fn wait_for_permit(
    limiter: &dyn RateLimiter,
    clock: &dyn Clock,
    deadline: DateTime<Utc>,
) -> Result<bool, StoreError> {
    loop {
        match limiter.acquire().await? {
            Permit::Granted => return Ok(true),
            Permit::RetryAt(at) if at > deadline => return Ok(false),
            Permit::RetryAt(at) => {
                let wait = (at - clock.now()).max(TimeDelta::milliseconds(1));
                tokio::time::sleep(wait.to_std().unwrap_or(Duration::from_millis(1))).await;
            }
        }
    }
}

/// The instant a denied permit may be retried.
pub(crate) fn retry_at(ms: i64) -> Permit {
    Permit::RetryAt(from_epoch_ms(ms))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks for a permit every millisecond for `ms` and returns the grant times.
    fn greedy(params: GcraParams, ms: i64) -> Vec<i64> {
        let mut tat = None;
        let mut grants = Vec::new();
        for now in 0..ms {
            while let Decision::Grant { new_tat } = params.decide(tat, now) {
                tat = Some(new_tat);
                grants.push(now);
            }
        }
        grants
    }

    fn max_in_window(grants: &[i64], window: i64) -> usize {
        grants
            .iter()
            .map(|&start| {
                grants
                    .iter()
                    .filter(|&&t| t >= start && t < start + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn hood_schedule_stays_inside_both_limits() {
        let grants = greedy(GcraParams::HOOD, 180_000);
        assert_eq!(&grants[..7], &[0, 0, 0, 0, 0, 430, 860]);
        assert_eq!(max_in_window(&grants, 1_000), 7);
        assert_eq!(max_in_window(&grants, 60_000), 144);
        // Burst, then exactly one per T.
        assert_eq!(grants.len(), 5 + (179_999 / 430) as usize);
    }

    #[test]
    fn tau_and_decisions() {
        let p = GcraParams::HOOD;
        assert_eq!(p.t_ms(), 430);
        assert_eq!(p.tau_ms(), 1_720);
        assert_eq!(p.decide(None, 1_000), Decision::Grant { new_tat: 1_430 });
        // An old tat counts as idle.
        assert_eq!(
            p.decide(Some(10), 1_000),
            Decision::Grant { new_tat: 1_430 }
        );
        // Busy: tat within tau is granted and advances by exactly T.
        assert_eq!(
            p.decide(Some(2_720), 1_000),
            Decision::Grant { new_tat: 3_150 }
        );
        assert_eq!(
            p.decide(Some(2_721), 1_000),
            Decision::Deny { retry_at: 1_001 }
        );
        assert_eq!(GcraParams::new(Duration::from_millis(100), 1).tau_ms(), 0);
        assert_eq!(GcraParams::new(Duration::from_millis(100), 0).tau_ms(), 0);
        assert_eq!(
            p.with_skew_margin(Duration::from_millis(20)).tau_ms(),
            1_700
        );
        assert_eq!(p.with_skew_margin(Duration::from_secs(10)).tau_ms(), 0);
    }

    #[test]
    fn penalty_blocks_until_retry_after_then_resumes_steady_rate() {
        let p = GcraParams::HOOD;
        let tat = p.penalised(Some(1_000), 1_000, Duration::from_secs(2));
        assert_eq!(tat, 1_000 + 2_000 + 1_720);
        assert_eq!(
            p.decide(Some(tat), 2_999),
            Decision::Deny { retry_at: 3_000 }
        );
        let Decision::Grant { new_tat } = p.decide(Some(tat), 3_000) else {
            panic!("granted at retry_after")
        };
        assert_eq!(
            p.decide(Some(new_tat), 3_000),
            Decision::Deny { retry_at: 3_430 }
        );
        // A penalty never pulls the schedule back.
        assert_eq!(
            p.penalised(Some(99_999), 1_000, Duration::from_secs(1)),
            99_999
        );
        assert_eq!(p.penalised(None, 1_000, Duration::ZERO), 2_720);
    }
}
