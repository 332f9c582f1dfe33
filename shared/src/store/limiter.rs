//! A rate limiter per vendor account that holds across every running instance: GCRA
//! (generic cell rate algorithm) over one shared number, the theoretical arrival time `tat`.
//!
//! With emission interval `T` and tolerance `tau`, a permit at `now` is granted when
//! `tat − now ≤ tau`, and granting sets `tat = max(tat, now) + T`. So at most
//! `burst = 1 + tau / T` permits go at once, then one every `T`. A 429 from the vendor
//! (or `X-RateLimit-Remaining: 0` with a reset) *penalises* the schedule:
//! `tat = max(tat, now + retry_after + tau)`, so the next permit anywhere is no earlier
//! than `now + retry_after` and the steady rate resumes after it (no burst).
//!
//! # Limits are windows
//!
//! A vendor's limits are configured as a list of [`Window`]s (Hood: 10 per 1 s and 150 per
//! 1 min) and [`GcraParams::from_windows`] derives the one schedule that keeps every window
//! in *sliding* terms, wherever a window is placed:
//!
//! * `T = 1 / (u × minᵢ(Nᵢ / Pᵢ))`, rounded **up** to a whole millisecond, with `u` the
//!   target utilisation ([`DEFAULT_UTILISATION`]);
//! * `tau = minᵢ(Nᵢ × T − Pᵢ) − margin`, in whole milliseconds (the margin,
//!   [`DEFAULT_MARGIN`], absorbs clock skew between instances and the jitter between a
//!   slot's instant and the request reaching the vendor). Where that would be negative —
//!   a window with less slack than the margin — `T` grows to `⌈(Pᵢ + margin) / Nᵢ⌉`
//!   instead, so the margin is always there in full (not the case for any vendor's
//!   defaults).
//!
//! Why it holds: after a grant at `t₀`, each later grant adds at least `T` to `tat`, and
//! grant `k` needs `t_k ≥ tat_k − tau ≥ t₀ + k·T − tau`. So any `Nᵢ + 1` grants span at
//! least `Nᵢ·T − tau ≥ Pᵢ + margin`, and a half-open window of length `Pᵢ` (even
//! `Pᵢ + margin`) never holds more than `Nᵢ`. Rounding `T` up and `tau` down only widens the span; reservations (permits
//! booked for a later instant, one or [several at once](RateLimiter::reserve_n)) keep it,
//! since every slot is used no earlier than its own `tat − tau` and slots are handed out in
//! `tat` order. The long-run rate is `1 / T`: `u` of the tightest window, less the
//! millisecond rounding (Hood: `T = 409 ms`, 146.7 of 150 per minute = 0.978). The property
//! tests below check all of this on random windows and random contention.
//!
//! # Clock skew
//!
//! Each instance uses its own clock for `now`; DynamoDB's clock plays no part (the
//! conditions compare the stored `tat` with the caller's `now`). An instance whose clock is
//! ahead by `δ` gets permits up to `δ` early and, after an idle spell, starts the schedule
//! `δ` later for everyone; one behind by `δ` waits up to `δ` longer and may restart the
//! schedule `δ` early. The steady rate cannot drift — in the busy regime every grant adds
//! exactly `T` to the shared `tat` whatever the caller's clock — so skew only shifts
//! individual permits by at most `δ`, which the margin covers. Lambda clocks are NTP-synced
//! (Amazon Time Sync, well under a millisecond).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::StoreError;
use super::clock::{Clock, from_epoch_ms};

/// The utilisation of the tightest window a schedule derived from windows aims at.
pub const DEFAULT_UTILISATION: f64 = 0.98;

/// What [`GcraParams::from_windows`] takes off the tolerance by default: room for clock
/// skew between instances and for the jitter between a slot's instant and the request
/// reaching the vendor.
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(250);

/// One documented limit: at most `limit` calls in any period of length `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub limit: u32,
    pub per: Duration,
}

impl Window {
    pub const fn new(limit: u32, per: Duration) -> Self {
        Window { limit, per }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} per {}",
            self.limit,
            humantime::format_duration(self.per)
        )
    }
}

/// How windows become a schedule (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacing {
    /// The share of the tightest window's rate the schedule runs at, in `(0, 1]`.
    pub utilisation: f64,
    /// Taken off the tolerance: clock skew and dispatch jitter.
    pub margin: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            utilisation: DEFAULT_UTILISATION,
            margin: DEFAULT_MARGIN,
        }
    }
}

/// Why a list of windows (or the pacing) cannot become a schedule.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LimitsError {
    #[error("no windows: give at least one, e.g. [{{limit = 10, per = \"1s\"}}]")]
    NoWindows,
    #[error("window {index}: the limit is zero, so no call could ever go")]
    ZeroLimit { index: usize },
    #[error("window {index}: the period is zero")]
    ZeroPeriod { index: usize },
    #[error(
        "window {index}: `{text}` is not a duration ({reason}); write e.g. \"1s\", \"1m\", \"500ms\""
    )]
    BadPeriod {
        index: usize,
        text: String,
        reason: String,
    },
    #[error(
        "window {index}: {limit} per {per_ms} ms is more than one call per millisecond, finer than the limiter can pace"
    )]
    TooFine {
        index: usize,
        limit: u32,
        per_ms: i64,
    },
    #[error("utilisation {0} is not in (0, 1]")]
    BadUtilisation(f64),
    #[error("margin: `{text}` is not a duration ({reason})")]
    BadMargin { text: String, reason: String },
}

/// Parses a configured duration (`"1s"`, `"1m"`, `"1min"`, `"500ms"`, `"1h"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())
}

/// The schedule of one limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcraParams {
    /// `T`: the steady spacing between permits (used in whole milliseconds, rounded up).
    pub emission_interval: Duration,
    /// `tau`: how far ahead of the steady rate a permit may go (whole milliseconds,
    /// rounded down); `burst = 1 + tau / T` permits go at once after an idle spell.
    pub tolerance: Duration,
}

impl GcraParams {
    /// Ocamba Hood's documented 10 per 1 s and 150 per 1 min through
    /// [`GcraParams::from_windows`] with the default pacing: one every 409 ms, tolerance
    /// 1,100 ms (a burst of 3.7); at most 6 in any second and 150 in any minute, 0.978 of
    /// the minute's budget (checked by the tests below).
    pub const HOOD: GcraParams = GcraParams {
        emission_interval: Duration::from_millis(409),
        tolerance: Duration::from_millis(1_100),
    };

    /// Hood's documented windows.
    pub const HOOD_WINDOWS: [Window; 2] = [
        Window::new(10, Duration::from_secs(1)),
        Window::new(150, Duration::from_secs(60)),
    ];

    /// A schedule of one permit per `emission_interval` with `burst` at once.
    pub const fn new(emission_interval: Duration, burst: u32) -> Self {
        let slots = if burst == 0 { 0 } else { burst - 1 };
        let t = emission_interval.as_millis();
        let tau = t.saturating_mul(slots as u128);
        let tau = if tau > u64::MAX as u128 {
            u64::MAX
        } else {
            tau as u64
        };
        Self {
            emission_interval,
            tolerance: Duration::from_millis(tau),
        }
    }

    /// The schedule that keeps every window in sliding-window terms at `pacing`'s
    /// utilisation of the tightest one (see the module doc for the derivation).
    pub fn from_windows(windows: &[Window], pacing: Pacing) -> Result<Self, LimitsError> {
        if windows.is_empty() {
            return Err(LimitsError::NoWindows);
        }
        let u = pacing.utilisation;
        if !(u > 0.0 && u <= 1.0) {
            return Err(LimitsError::BadUtilisation(u));
        }
        let margin_ms = ceil_millis(pacing.margin);
        let mut t_ms: i64 = 1;
        let mut periods = Vec::with_capacity(windows.len());
        for (index, w) in windows.iter().enumerate() {
            if w.limit == 0 {
                return Err(LimitsError::ZeroLimit { index });
            }
            let p_ms = ceil_millis(w.per);
            if p_ms == 0 {
                return Err(LimitsError::ZeroPeriod { index });
            }
            let n = i64::from(w.limit);
            if p_ms < n {
                return Err(LimitsError::TooFine {
                    index,
                    limit: w.limit,
                    per_ms: p_ms,
                });
            }
            // `P / (u N)` rounded up; never below `⌈(P + margin) / N⌉` whatever the float
            // does, so the margin is always there in full.
            let exact = p_ms as f64 / (u * w.limit as f64);
            let spaced = if exact.is_finite() && exact < i64::MAX as f64 {
                exact.ceil() as i64
            } else {
                i64::MAX
            };
            let with_margin = p_ms.saturating_add(margin_ms).saturating_add(n - 1) / n;
            t_ms = t_ms.max(spaced).max(with_margin);
            periods.push((n, p_ms));
        }
        let tau_ms = periods
            .iter()
            .map(|&(n, p)| n.saturating_mul(t_ms).saturating_sub(p))
            .min()
            .unwrap_or(0)
            .saturating_sub(margin_ms)
            .max(0);
        Ok(Self {
            emission_interval: Duration::from_millis(t_ms.unsigned_abs()),
            tolerance: Duration::from_millis(tau_ms.unsigned_abs()),
        })
    }

    /// The same schedule with `tau` reduced by `margin`.
    pub fn with_skew_margin(self, margin: Duration) -> Self {
        Self {
            tolerance: Duration::from_millis(
                self.tau_ms()
                    .saturating_sub(ceil_millis(margin))
                    .max(0)
                    .unsigned_abs(),
            ),
            ..self
        }
    }

    /// The same schedule `factor` times faster (tests that compress time).
    pub fn faster(self, factor: u32) -> Self {
        let factor = factor.max(1);
        Self {
            emission_interval: self.emission_interval / factor,
            tolerance: self.tolerance / factor,
        }
    }

    /// `T` in milliseconds, rounded up (at least 1 when `T` is not zero).
    pub fn t_ms(&self) -> i64 {
        ceil_millis(self.emission_interval)
    }

    /// `tau` in milliseconds, rounded down.
    pub fn tau_ms(&self) -> i64 {
        millis(self.tolerance)
    }

    /// Permits that may go at once after an idle spell: `1 + tau / T`.
    pub fn burst(&self) -> f64 {
        let t = self.t_ms();
        if t == 0 {
            return f64::INFINITY;
        }
        1.0 + self.tau_ms() as f64 / t as f64
    }

    /// The most permits any half-open window of `window_ms` can hold (permits go at whole
    /// milliseconds): `⌊(W − 1 + tau) / T⌋ + 1`.
    pub fn max_in(&self, window_ms: i64) -> i64 {
        let t = self.t_ms().max(1);
        (window_ms
            .saturating_sub(1)
            .max(0)
            .saturating_add(self.tau_ms()))
            / t
            + 1
    }

    /// The GCRA decision for a permit at `now_ms` given the stored `tat` (none yet: idle).
    pub fn decide(&self, tat: Option<i64>, now_ms: i64) -> Decision {
        self.decide_within(tat, now_ms, 0)
    }

    /// The GCRA decision for a permit at most `max_wait_ms` from `now_ms`: granted for the
    /// instant the schedule allows it (a reservation), or refused with that instant.
    pub fn decide_within(&self, tat: Option<i64>, now_ms: i64, max_wait_ms: i64) -> Decision {
        match self.book(tat, now_ms, 1, max_wait_ms) {
            Booked::Slots { new_tat, .. } => Decision::Grant { new_tat },
            Booked::Deny { retry_at } => Decision::Deny { retry_at },
        }
    }

    /// How many of `n` consecutive slots fit within `max_wait_ms` of `now_ms` (0: none;
    /// the first is too far), given the stored `tat`.
    pub fn fitting(&self, tat: Option<i64>, now_ms: i64, n: u32, max_wait_ms: i64) -> u32 {
        let start = tat.map_or(now_ms, |t| t.max(now_ms));
        let room = now_ms
            .saturating_add(max_wait_ms.max(0))
            .saturating_add(self.tau_ms())
            .saturating_sub(start);
        if room < 0 {
            return 0;
        }
        let t = self.t_ms();
        let fit = if t == 0 { i64::MAX } else { room / t + 1 };
        u32::try_from(fit).unwrap_or(u32::MAX).min(n)
    }

    /// Books up to `n` consecutive slots (at least one, all within `max_wait_ms` of
    /// `now_ms`) as one change of `tat`: `new_tat = max(tat, now) + count × T`. Slot `k`
    /// may be used at [`Self::slot_at`]`(start, k, now)`.
    pub fn book(&self, tat: Option<i64>, now_ms: i64, n: u32, max_wait_ms: i64) -> Booked {
        let start = tat.map_or(now_ms, |t| t.max(now_ms));
        match self.fitting(tat, now_ms, n.max(1), max_wait_ms) {
            0 => Booked::Deny {
                retry_at: (start - self.tau_ms()).max(now_ms),
            },
            count => Booked::Slots {
                start,
                count,
                new_tat: start.saturating_add(self.t_ms().saturating_mul(i64::from(count))),
            },
        }
    }

    /// The instant slot `k` of a booking that started at `start` may be used.
    pub fn slot_at(&self, start: i64, k: u32, now_ms: i64) -> i64 {
        start
            .saturating_add(self.t_ms().saturating_mul(i64::from(k)))
            .saturating_sub(self.tau_ms())
            .max(now_ms)
    }

    /// The instants of the `count` slots of a booking that started at `start`.
    pub fn slots(&self, start: i64, count: u32, now_ms: i64) -> Vec<DateTime<Utc>> {
        (0..count)
            .map(|k| from_epoch_ms(self.slot_at(start, k, now_ms)))
            .collect()
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

/// Outcome of [`GcraParams::book`], in epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Booked {
    /// `count` slots booked from `start` (the `tat` they were booked at); store `new_tat`.
    Slots {
        start: i64,
        count: u32,
        new_tat: i64,
    },
    /// Not even the first slot is within the wait.
    Deny { retry_at: i64 },
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

/// Answer to a reservation of several slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Booking {
    /// Consecutive slots booked, in order (at least one, at most as many as asked, all
    /// within the allowed wait): each the instant one call may start. Every slot is taken
    /// whether or not its call is made.
    Slots(Vec<DateTime<Utc>>),
    /// The next free slot is later than the allowed wait; nothing was booked.
    TooFar(DateTime<Utc>),
}

/// A shared rate limiter for one vendor account.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Books up to `n` consecutive slots (at least one) that fall within `max_wait`, in one
    /// backend write in the common case (at most three when this instance's view of the
    /// schedule was out of date): `tat` grows by `count × T` at once. Fewer than `n` when
    /// not all fit within `max_wait`. A refusal this instance can tell from the schedule
    /// it last saw costs no backend call (`tat` never moves back).
    async fn reserve_n(&self, n: u32, max_wait: Duration) -> Result<Booking, StoreError>;

    /// Asks for one permit now.
    async fn acquire(&self) -> Result<Permit, StoreError> {
        Ok(match self.reserve(Duration::ZERO).await? {
            Reservation::At(_) => Permit::Granted,
            Reservation::TooFar(at) => Permit::RetryAt(at),
        })
    }

    /// Books the next permit if it falls within `max_wait`. Callers that would otherwise
    /// sleep and ask again book their slot instead, so concurrent waiters take consecutive
    /// slots with one write each rather than all retrying at the same instant.
    async fn reserve(&self, max_wait: Duration) -> Result<Reservation, StoreError> {
        Ok(match self.reserve_n(1, max_wait).await? {
            Booking::Slots(slots) => match slots.first() {
                Some(at) => Reservation::At(*at),
                // Never empty; an empty booking took nothing: ask again.
                None => Reservation::TooFar(DateTime::UNIX_EPOCH),
            },
            Booking::TooFar(at) => Reservation::TooFar(at),
        })
    }

    /// After a 429: no permit anywhere before `now + retry_after`, then the steady rate.
    async fn penalise(&self, retry_after: Duration) -> Result<(), StoreError>;

    /// When this instance already knows, from the schedule it last saw and without asking
    /// the backend, that no slot falls within `max_wait`: the instant one may (`tat` never
    /// moves back, so the stored schedule is no earlier). `None` when a slot may be free
    /// sooner, or this instance has not seen the schedule (the default).
    fn known_too_far(&self, max_wait: Duration) -> Option<DateTime<Utc>> {
        let _ = max_wait;
        None
    }

    /// When the next permit is free, without taking it: `None` when one is free now (or
    /// the backend does not say). For dashboards; writes nothing.
    async fn next_free(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(None)
    }
}

/// Milliseconds of a wait, saturating.
pub(crate) fn wait_ms(d: Duration) -> i64 {
    millis(d)
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

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whole milliseconds, rounded up.
fn ceil_millis(d: Duration) -> i64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The schedule before limits were windows: five at once, then one every 430 ms.
    const FIVE_THEN_430: GcraParams = GcraParams::new(Duration::from_millis(430), 5);

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

    /// The most of the sorted instants any half-open window `[s, s + len)` holds, over
    /// every position `s` (a busiest window can always be moved to start at an instant).
    pub(crate) fn max_in_window(sorted: &[i64], len: i64) -> usize {
        let mut best = 0;
        let mut end = 0;
        for (start, &t) in sorted.iter().enumerate() {
            end = end.max(start);
            while end < sorted.len() && sorted[end] < t.saturating_add(len) {
                end += 1;
            }
            best = best.max(end - start);
        }
        best
    }

    fn window_ms(limit: u32, per_ms: u64) -> Window {
        Window::new(limit, Duration::from_millis(per_ms))
    }

    #[test]
    fn hood_schedule_is_derived_from_its_windows_and_keeps_both_in_sliding_terms() {
        let derived = GcraParams::from_windows(&GcraParams::HOOD_WINDOWS, Pacing::default());
        assert_eq!(derived, Ok(GcraParams::HOOD));
        let p = GcraParams::HOOD;
        // T = ⌈60 000 / (0.98 × 150)⌉ = 409; tau = min(10·409 − 1000, 150·409 − 60 000) − 250.
        assert_eq!((p.t_ms(), p.tau_ms()), (409, 1_100));
        let grants = greedy(p, 600_000);
        assert_eq!(&grants[..6], &[0, 0, 0, 127, 536, 945]);
        assert_eq!(max_in_window(&grants, 1_000), 6);
        assert_eq!(max_in_window(&grants, 60_000), 150);
        assert_eq!((p.max_in(1_000), p.max_in(60_000)), (6, 150));
        // The margin is kept: no 150 + 1 within 60 s + 250 ms.
        assert_eq!(max_in_window(&grants, 60_250), 150);
        // Ten minutes at full demand: 0.978 of 150 per minute.
        let utilisation = grants.len() as f64 / (150.0 * 10.0);
        assert!(utilisation >= 0.97, "{utilisation}");
        assert!(utilisation < 0.99, "{utilisation}");
        // The old fixed schedule, for comparison: 7 per second, 144 per minute (0.93).
        let old = greedy(FIVE_THEN_430, 180_000);
        assert_eq!(max_in_window(&old, 1_000), 7);
        assert_eq!(max_in_window(&old, 60_000), 144);
        assert_eq!(
            (FIVE_THEN_430.max_in(1_000), FIVE_THEN_430.max_in(60_000)),
            (7, 144)
        );
    }

    #[test]
    fn windows_are_checked_with_clear_errors() {
        let pacing = Pacing::default();
        assert_eq!(
            GcraParams::from_windows(&[], pacing),
            Err(LimitsError::NoWindows)
        );
        assert_eq!(
            GcraParams::from_windows(&[window_ms(10, 1_000), window_ms(0, 60_000)], pacing),
            Err(LimitsError::ZeroLimit { index: 1 })
        );
        assert_eq!(
            GcraParams::from_windows(&[window_ms(10, 0)], pacing),
            Err(LimitsError::ZeroPeriod { index: 0 })
        );
        let err = GcraParams::from_windows(&[window_ms(5_000, 1_000)], pacing).unwrap_err();
        assert!(
            matches!(err, LimitsError::TooFine { index: 0, .. }),
            "{err}"
        );
        for u in [0.0, -0.5, 1.01, f64::NAN] {
            let pacing = Pacing {
                utilisation: u,
                ..pacing
            };
            assert!(matches!(
                GcraParams::from_windows(&GcraParams::HOOD_WINDOWS, pacing),
                Err(LimitsError::BadUtilisation(_))
            ));
        }
        assert!(parse_duration("1 fortnight").is_err());
        assert_eq!(parse_duration(" 1m "), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1min"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(
            LimitsError::ZeroLimit { index: 1 }.to_string(),
            "window 1: the limit is zero, so no call could ever go"
        );
    }

    #[test]
    fn rounding_is_conservative_t_up_tau_down() {
        let exact = Pacing {
            utilisation: 1.0,
            margin: Duration::ZERO,
        };
        // 3 per second: T = ⌈333.3⌉ = 334, tau = 3 × 334 − 1000 = 2.
        let p = GcraParams::from_windows(&[window_ms(3, 1_000)], exact).unwrap();
        assert_eq!((p.t_ms(), p.tau_ms()), (334, 2));
        // A period of 1.5 ms counts as 2 ms, a margin of 0.5 ms as 1 ms: T = 2 + 1.
        let p = GcraParams::from_windows(
            &[Window::new(1, Duration::from_micros(1_500))],
            Pacing {
                utilisation: 1.0,
                margin: Duration::from_micros(500),
            },
        )
        .unwrap();
        assert_eq!((p.t_ms(), p.tau_ms()), (3, 0));
        // A margin beyond a window's slack slows the schedule instead of being lost:
        // 150 per (60 s + 1.5 s) needs T = ⌈61 500 / 150⌉ = 410, and leaves no burst.
        let p = GcraParams::from_windows(
            &GcraParams::HOOD_WINDOWS,
            Pacing {
                margin: Duration::from_millis(1_500),
                ..Pacing::default()
            },
        )
        .unwrap();
        assert_eq!((p.t_ms(), p.tau_ms(), p.burst()), (410, 0, 1.0));
        // Where the slack suffices the margin only takes from the burst.
        let p = GcraParams::from_windows(
            &GcraParams::HOOD_WINDOWS,
            Pacing {
                margin: Duration::from_millis(1_350),
                ..Pacing::default()
            },
        )
        .unwrap();
        assert_eq!((p.t_ms(), p.tau_ms()), (409, 0));
        // The room for the margin is every window's, not only the tightest one's: with
        // 198 per 106.227 s (T = ⌈547.4⌉ alone) and 1 per 100 ms, a 500 ms margin needs
        // 600 ms between calls, so the long window is used at 0.894, not 0.98.
        let windows = [window_ms(198, 106_227), window_ms(1, 100)];
        let p = GcraParams::from_windows(
            &windows,
            Pacing {
                margin: Duration::from_millis(500),
                ..Pacing::default()
            },
        )
        .unwrap();
        assert_eq!((p.t_ms(), p.tau_ms()), (600, 0));
        let grants = greedy(p, 240_000);
        assert_eq!(max_in_window(&grants, 100 + 500), 1);
        assert_eq!(max_in_window(&grants, 106_227 + 500), 178);
        // A sub-millisecond T is used as a whole millisecond, never as zero.
        let p = GcraParams::new(Duration::from_micros(1_500), 1);
        assert_eq!(p.t_ms(), 2);
        assert_eq!(GcraParams::HOOD.faster(6).t_ms(), 69);
    }

    #[test]
    fn tau_and_decisions() {
        let p = FIVE_THEN_430;
        assert_eq!(p.t_ms(), 430);
        assert_eq!(p.tau_ms(), 1_720);
        assert_eq!(p.burst(), 5.0);
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
    fn several_slots_are_one_change_of_tat_and_the_same_slots_as_one_by_one() {
        let p = FIVE_THEN_430;
        // Idle: three slots at once, all usable now; tat grows by 3 T.
        assert_eq!(
            p.book(None, 1_000, 3, 0),
            Booked::Slots {
                start: 1_000,
                count: 3,
                new_tat: 2_290
            }
        );
        assert_eq!(
            p.slots(1_000, 3, 1_000),
            vec![from_epoch_ms(1_000); 3],
            "within the burst"
        );
        // Busy (five used): of three asked within 900 ms, two fit.
        let busy = Some(1_000 + 5 * 430);
        assert_eq!(
            p.book(busy, 1_000, 3, 900),
            Booked::Slots {
                start: 3_150,
                count: 2,
                new_tat: 4_010
            }
        );
        assert_eq!(
            p.slots(3_150, 2, 1_000),
            vec![from_epoch_ms(1_430), from_epoch_ms(1_860)]
        );
        assert_eq!(
            p.book(busy, 1_000, 3, 429),
            Booked::Deny { retry_at: 1_430 }
        );
        assert_eq!(p.fitting(busy, 1_000, 9, 430), 1);
        // The same slots as asking one at a time at the same instant.
        let mut tat = busy;
        let mut one_by_one = Vec::new();
        while let Decision::Grant { new_tat } = p.decide_within(tat, 1_000, 900) {
            one_by_one.push(from_epoch_ms(p.go_at(new_tat, 1_000)));
            tat = Some(new_tat);
        }
        assert_eq!(one_by_one, p.slots(3_150, 2, 1_000));
        assert_eq!(tat, Some(4_010));
    }

    #[test]
    fn penalty_blocks_until_retry_after_then_resumes_steady_rate() {
        let p = FIVE_THEN_430;
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

    /// A small deterministic generator (splitmix64) for the contention simulations.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in `0..=max`.
        pub(crate) fn upto(&mut self, max: i64) -> i64 {
            let span = max.max(0).unsigned_abs().saturating_add(1);
            i64::try_from(self.next() % span).unwrap_or(0)
        }
    }

    /// `contenders` instances share one schedule from `0` to `horizon` ms; each asks for
    /// 1–4 slots within a random wait (0–3 s), uses them, and asks again after a random
    /// pause (`think_ms` at most), or — refused — at a random instant up to the one it was
    /// told (early tries are refused again). Answers the instants the slots were used.
    fn contend(
        params: GcraParams,
        contenders: usize,
        think_ms: i64,
        horizon: i64,
        seed: u64,
    ) -> Vec<i64> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut rng = Rng(seed);
        let mut tat = None;
        let mut used = Vec::new();
        let mut queue: BinaryHeap<Reverse<(i64, usize)>> = (0..contenders)
            .map(|c| Reverse((rng.upto(think_ms), c)))
            .collect();
        while let Some(Reverse((now, c))) = queue.pop() {
            if now >= horizon {
                continue;
            }
            let n = u32::try_from(1 + rng.upto(3)).unwrap_or(1);
            let max_wait = rng.upto(3_000);
            let next = match params.book(tat, now, n, max_wait) {
                Booked::Slots {
                    start,
                    count,
                    new_tat,
                } => {
                    tat = Some(new_tat);
                    let slots: Vec<i64> =
                        (0..count).map(|k| params.slot_at(start, k, now)).collect();
                    for &at in &slots {
                        assert!(at - now <= max_wait, "a slot beyond the wait asked");
                    }
                    used.extend(&slots);
                    slots.last().copied().unwrap_or(now) + rng.upto(think_ms)
                }
                Booked::Deny { retry_at } => {
                    assert!(retry_at > now);
                    now + 1 + rng.upto(retry_at - now - 1)
                }
            };
            queue.push(Reverse((next, c)));
        }
        used.sort_unstable();
        used
    }

    #[test]
    fn hood_under_contention_keeps_both_windows_and_uses_at_least_097_of_the_minute() {
        for seed in 0..8 {
            let used = contend(GcraParams::HOOD, 32, 2_000, 600_000, seed);
            assert!(max_in_window(&used, 1_000) <= 10, "seed {seed}");
            assert!(max_in_window(&used, 60_000) <= 150, "seed {seed}");
            // Ten minutes: utilisation of 150 per minute.
            let utilisation = used.len() as f64 / 1_500.0;
            assert!(utilisation >= 0.97, "seed {seed}: {utilisation}");
        }
    }

    fn windows() -> impl Strategy<Value = Vec<Window>> {
        prop::collection::vec((1u32..=200, 20u64..=120_000), 1..=3).prop_map(|ws| {
            ws.into_iter()
                .map(|(limit, per_ms)| window_ms(limit, per_ms.max(u64::from(limit))))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the windows, pacing and arrivals: no window of any configured length,
        /// wherever placed, holds more than its limit; at full demand the tightest window
        /// is used at the target utilisation less the millisecond rounding of `T`.
        #[test]
        fn every_window_holds_in_sliding_terms_under_random_contention(
            windows in windows(),
            utilisation in 0.9f64..=1.0,
            margin_ms in 0u64..=500,
            contenders in 1usize..=40,
            think_ms in 0i64..=3_000,
            seed in any::<u64>(),
        ) {
            let pacing = Pacing { utilisation, margin: Duration::from_millis(margin_ms) };
            let params = GcraParams::from_windows(&windows, pacing).unwrap();
            let longest = windows.iter().map(|w| ceil_millis(w.per)).max().unwrap_or(1);
            let horizon = (3 * longest).clamp(5_000, 240_000);
            let used = contend(params, contenders, think_ms, horizon, seed);
            for w in &windows {
                let most = max_in_window(&used, ceil_millis(w.per));
                prop_assert!(
                    most <= w.limit as usize,
                    "{most} in a window of {w} ({params:?}, {contenders} contenders)"
                );
                // The margin is room too: nothing over the limit in P + margin either.
                let most = max_in_window(&used, ceil_millis(w.per) + i64::try_from(margin_ms).unwrap());
                prop_assert!(most <= w.limit as usize);
            }
            // Full demand: greedy asking every millisecond.
            let greedy = greedy(params, horizon);
            for w in &windows {
                prop_assert!(max_in_window(&greedy, ceil_millis(w.per)) <= w.limit as usize);
            }
            let tight = windows
                .iter()
                .min_by(|a, b| {
                    (f64::from(a.limit) / a.per.as_secs_f64())
                        .total_cmp(&(f64::from(b.limit) / b.per.as_secs_f64()))
                })
                .unwrap();
            let (p_tight, n_tight) = (ceil_millis(tight.per) as f64, f64::from(tight.limit));
            // `T` is the larger of the tightest window's `P / (u N)` and every window's
            // `(P + margin) / N` (a short window with few calls can need more room for
            // the margin than the tightest one), plus rounding.
            let t_exact = windows.iter().fold(p_tight / (utilisation * n_tight), |t, w| {
                t.max((ceil_millis(w.per) as f64 + margin_ms as f64) / f64::from(w.limit))
            });
            let expected = p_tight / (n_tight * (t_exact + 1.0));
            let rate = greedy.len() as f64 / horizon as f64;
            let used_share = rate * ceil_millis(tight.per) as f64 / f64::from(tight.limit);
            prop_assert!(
                used_share >= expected - 0.01,
                "greedy used {used_share} of {tight}, expected at least {expected}"
            );
        }
    }
}
