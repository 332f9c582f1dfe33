//! The gates in front of every vendor call.
//!
//! * [`LimiterGate`]: each HTTP call a sync makes books a slot on its vendor's shared GCRA
//!   schedule and waits for it, so the vendor's limit holds across all instances call by
//!   call (a Hood sync can make several calls). A sync that knows it will make several
//!   calls books them in one reservation ([`CallGate::acquire_many`]). An answer saying
//!   the vendor's budget is spent (`X-RateLimit-Remaining: 0` with a reset) pauses the
//!   shared schedule until the reset, for every instance, as a 429 does.
//! * [`DeadlineGate`]: no call starts that could not finish before the invocation's
//!   deadline (see [`calls_finish_by`]): a Lambda invocation that ran out of time hands the
//!   delivery on instead of being killed in the middle of a call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::store::{Booking, Clock, RateLimiter};
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::rate_limit::RateLimitInfo;
use crate::vendors::sync::CallGate;

/// The `op` of the error the gate answers when the next slot is too far away; the worker
/// then defers the message without penalising the schedule (no vendor said 429).
pub const PERMIT_OP: &str = "limiter.permit";

/// The `op` of the error the gate answers when the shared schedule cannot be read (the
/// store failed): no call may go, and the worker counts it as a transient failure.
pub const LIMITER_DOWN_OP: &str = "limiter.unavailable";

/// The `op` of the error [`DeadlineGate`] answers when a call could not finish before the
/// invocation's deadline; the worker hands the delivery on without counting a failure.
pub const DEADLINE_OP: &str = "worker.deadline";

tokio::task_local! {
    /// The instant every vendor call of the current delivery must have finished by.
    static FINISH_BY: Window;
    /// The latest instant the current call may start (its deadline less its timeout).
    static LATEST_START: DateTime<Utc>;
}

#[derive(Clone)]
struct Window {
    finish_by: DateTime<Utc>,
    clock: Arc<dyn Clock>,
}

/// Runs `delivery` with every vendor call it makes held to finishing by `finish_by`
/// (calls behind a [`DeadlineGate`]; outside this scope they are not held to any).
pub async fn calls_finish_by<F: Future>(
    finish_by: DateTime<Utc>,
    clock: Arc<dyn Clock>,
    delivery: F,
) -> F::Output {
    FINISH_BY.scope(Window { finish_by, clock }, delivery).await
}

fn deferred(vendor: Vendor, op: &'static str, retry_after: Duration) -> VendorError {
    VendorError::RateLimited {
        vendor,
        op,
        retry_after,
        concurrency_limit: false,
        trace_id: None,
        rate_limit: RateLimitInfo::default(),
    }
}

/// A [`CallGate`] over one shared limiter per vendor.
pub struct LimiterGate {
    limiters: HashMap<Vendor, Arc<dyn RateLimiter>>,
    clock: Arc<dyn Clock>,
    /// Longest a call waits for its slot; beyond it the message is handed back to the queue.
    max_wait: Duration,
    /// Longest pause an exhausted budget puts on the shared schedule (the worker's cap on
    /// `Retry-After` and penalties, `RetryPolicy::max_wait`).
    max_pause: Duration,
}

impl LimiterGate {
    pub fn new(
        limiters: HashMap<Vendor, Arc<dyn RateLimiter>>,
        clock: Arc<dyn Clock>,
        max_wait: Duration,
    ) -> Self {
        LimiterGate {
            limiters,
            clock,
            max_wait,
            max_pause: crate::worker::RetryPolicy::default().max_wait,
        }
    }

    /// The same gate with pauses from rate-limit headers capped at `max_pause`.
    pub fn with_max_pause(self, max_pause: Duration) -> Self {
        LimiterGate { max_pause, ..self }
    }

    /// The limiter of `vendor`, for penalising after a 429.
    pub fn limiter(&self, vendor: Vendor) -> Option<&Arc<dyn RateLimiter>> {
        self.limiters.get(&vendor)
    }

    /// The wait a slot may be booked within: the gate's, and no later than the latest
    /// start the delivery's deadline allows (a slot after it is of no use: not booked).
    fn allowed_wait(&self) -> Duration {
        let now = self.clock.now();
        match LATEST_START.try_with(|t| *t) {
            Ok(latest) => self
                .max_wait
                .min((latest - now).to_std().unwrap_or_default()),
            Err(_) => self.max_wait,
        }
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let wait = (at - self.clock.now()).to_std().unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Books up to `calls` slots and waits for the first; answers the others' instants.
    async fn book(&self, vendor: Vendor, calls: u32) -> Result<Vec<DateTime<Utc>>, VendorError> {
        let Some(limiter) = self.limiters.get(&vendor) else {
            return Ok(Vec::new());
        };
        match limiter.reserve_n(calls.max(1), self.allowed_wait()).await {
            Ok(Booking::Slots(slots)) => {
                let mut slots = slots.into_iter();
                if let Some(first) = slots.next() {
                    self.sleep_until(first).await;
                }
                Ok(slots.collect())
            }
            Ok(Booking::TooFar(at)) => Err(deferred(
                vendor,
                PERMIT_OP,
                (at - self.clock.now()).to_std().unwrap_or_default(),
            )),
            Err(error) => {
                // Without the shared schedule no call may go: fail closed, retry soon.
                tracing::warn!(%vendor, %error, "rate limiter unavailable");
                Err(deferred(vendor, LIMITER_DOWN_OP, Duration::from_secs(5)))
            }
        }
    }
}

#[async_trait]
impl CallGate for LimiterGate {
    async fn acquire(&self, vendor: Vendor) -> Result<(), VendorError> {
        self.book(vendor, 1).await.map(|_| ())
    }

    async fn acquire_many(
        &self,
        vendor: Vendor,
        calls: u32,
    ) -> Result<Vec<DateTime<Utc>>, VendorError> {
        self.book(vendor, calls).await
    }

    async fn wait_booked(&self, _vendor: Vendor, at: DateTime<Utc>) -> Result<(), VendorError> {
        self.sleep_until(at).await;
        Ok(())
    }

    /// `X-RateLimit-Remaining: 0` with a reset pauses `vendor`'s shared schedule until the
    /// reset (capped), for every instance. A 429 is left to the worker, which penalises the
    /// schedule by its `Retry-After`; headers that are absent, or say budget is left, or
    /// give no reset, change nothing.
    async fn observe(
        &self,
        vendor: Vendor,
        rate_limit: &RateLimitInfo,
        error: Option<&VendorError>,
    ) {
        if matches!(error, Some(VendorError::RateLimited { .. })) {
            return;
        }
        let Some(pause) = exhausted_until_reset(rate_limit, self.clock.now()) else {
            return;
        };
        let Some(limiter) = self.limiters.get(&vendor) else {
            return;
        };
        let pause = pause.min(self.max_pause);
        tracing::warn!(%vendor, pause_ms = pause.as_millis() as u64, "vendor says its rate-limit budget is spent; holding every instance back until the reset");
        if let Err(error) = limiter.penalise(pause).await {
            tracing::warn!(%vendor, %error, "could not pause the shared schedule");
        }
    }
}

/// The wait until the vendor's window resets when it said none of its budget is left.
fn exhausted_until_reset(rate_limit: &RateLimitInfo, now: DateTime<Utc>) -> Option<Duration> {
    if rate_limit.remaining != Some(0) {
        return None;
    }
    let wait = rate_limit.reset?.delay_from(SystemTime::from(now));
    (!wait.is_zero()).then_some(wait)
}

/// Lets a call through `inner` only when it can finish before the current delivery's
/// deadline: there must be `call_timeout` (the client's whole-request timeout) left, and
/// the rate-limit slot it waits for must leave as much.
pub struct DeadlineGate {
    inner: Arc<dyn CallGate>,
    call_timeout: Duration,
}

impl DeadlineGate {
    pub fn new(inner: Arc<dyn CallGate>, call_timeout: Duration) -> Self {
        DeadlineGate {
            inner,
            call_timeout,
        }
    }
}

impl DeadlineGate {
    /// The latest instant a call of the current delivery may start, when there is one;
    /// `Err` (a deferral) when that instant has passed.
    fn latest_start(&self, vendor: Vendor) -> Result<Option<DateTime<Utc>>, VendorError> {
        let Ok(window) = FINISH_BY.try_with(Clone::clone) else {
            return Ok(None);
        };
        let latest_start =
            window.finish_by - TimeDelta::from_std(self.call_timeout).unwrap_or(TimeDelta::MAX);
        if window.clock.now() > latest_start {
            return Err(deferred(vendor, DEADLINE_OP, Duration::ZERO));
        }
        Ok(Some(latest_start))
    }
}

#[async_trait]
impl CallGate for DeadlineGate {
    async fn acquire(&self, vendor: Vendor) -> Result<(), VendorError> {
        match self.latest_start(vendor)? {
            None => self.inner.acquire(vendor).await,
            Some(latest) => LATEST_START.scope(latest, self.inner.acquire(vendor)).await,
        }
    }

    async fn acquire_many(
        &self,
        vendor: Vendor,
        calls: u32,
    ) -> Result<Vec<DateTime<Utc>>, VendorError> {
        match self.latest_start(vendor)? {
            None => self.inner.acquire_many(vendor, calls).await,
            Some(latest) => {
                LATEST_START
                    .scope(latest, self.inner.acquire_many(vendor, calls))
                    .await
            }
        }
    }

    /// A slot booked ahead is used only while the call can still finish in time (an
    /// earlier call may have taken long); otherwise the delivery is handed on.
    async fn wait_booked(&self, vendor: Vendor, at: DateTime<Utc>) -> Result<(), VendorError> {
        if let Some(latest) = self.latest_start(vendor)?
            && at > latest
        {
            return Err(deferred(vendor, DEADLINE_OP, Duration::ZERO));
        }
        self.inner.wait_booked(vendor, at).await
    }

    async fn observe(
        &self,
        vendor: Vendor,
        rate_limit: &RateLimitInfo,
        error: Option<&VendorError>,
    ) {
        self.inner.observe(vendor, rate_limit, error).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{GcraParams, LimiterKey, ManualClock, Reservation, StoreError};
    use crate::vendors::http::VendorResponse;
    use crate::vendors::rate_limit::Reset;
    use crate::vendors::sync::Run;

    /// Counts the reservations (backend writes) made through a limiter.
    struct Counting {
        inner: Arc<dyn RateLimiter>,
        reservations: AtomicU32,
        penalties: AtomicU32,
    }

    #[async_trait]
    impl RateLimiter for Counting {
        async fn reserve_n(&self, n: u32, max_wait: Duration) -> Result<Booking, StoreError> {
            self.reservations.fetch_add(1, Ordering::SeqCst);
            self.inner.reserve_n(n, max_wait).await
        }
        async fn penalise(&self, retry_after: Duration) -> Result<(), StoreError> {
            self.penalties.fetch_add(1, Ordering::SeqCst);
            self.inner.penalise(retry_after).await
        }
    }

    fn hood_key() -> LimiterKey {
        LimiterKey::new(Vendor::Hood, "t").unwrap()
    }

    fn ok() -> Result<VendorResponse<()>, VendorError> {
        Ok(VendorResponse {
            value: (),
            status: 200,
            rate_limit: RateLimitInfo::default(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn calls_a_sync_is_sure_to_make_are_booked_in_one_reservation() {
        let clock = Arc::new(ManualClock::new(DateTime::UNIX_EPOCH + TimeDelta::days(1)));
        let store = MemoryStore::new(clock.clone());
        // One call per second, no burst: the booked slots are a second apart.
        let schedule = GcraParams::new(Duration::from_secs(1), 1);
        let counting = Arc::new(Counting {
            inner: Arc::new(store.limiter(&hood_key(), schedule)),
            reservations: AtomicU32::new(0),
            penalties: AtomicU32::new(0),
        });
        let limiters = HashMap::from([(Vendor::Hood, counting.clone() as Arc<dyn RateLimiter>)]);
        let gate = LimiterGate::new(limiters, clock.clone(), Duration::from_secs(10));
        let mut run = Run::new(Vendor::Hood, &gate);
        run.expect(3);
        for _ in 0..3 {
            run.step(async { ok() }).await.unwrap();
        }
        assert_eq!(
            counting.reservations.load(Ordering::SeqCst),
            1,
            "one write for three calls"
        );
        // The schedule moved by three slots: another instance's next slot is 3 s away.
        let other = store.limiter(&hood_key(), schedule);
        let now = clock.now();
        assert_eq!(
            other.reserve(Duration::ZERO).await.unwrap(),
            Reservation::TooFar(now + TimeDelta::seconds(3))
        );
        // Unknown call counts keep one reservation per call.
        clock.advance(TimeDelta::seconds(10));
        let mut run = Run::new(Vendor::Hood, &gate);
        run.step(async { ok() }).await.unwrap();
        run.step(async { ok() }).await.unwrap();
        assert_eq!(counting.reservations.load(Ordering::SeqCst), 3);
        // Of more than fit in the wait, those that fit are booked, the rest one by one.
        clock.advance(TimeDelta::seconds(60));
        let gate = LimiterGate::new(
            HashMap::from([(Vendor::Hood, counting.clone() as Arc<dyn RateLimiter>)]),
            clock.clone(),
            Duration::from_secs(1),
        );
        let mut run = Run::new(Vendor::Hood, &gate);
        run.expect(3);
        run.step(async { ok() }).await.unwrap();
        assert_eq!(
            counting.reservations.load(Ordering::SeqCst),
            4,
            "two slots fit in 1 s"
        );
        run.step(async { ok() }).await.unwrap();
        assert_eq!(
            counting.reservations.load(Ordering::SeqCst),
            4,
            "the second was booked"
        );
        clock.advance(TimeDelta::seconds(2));
        run.step(async { ok() }).await.unwrap();
        assert_eq!(
            counting.reservations.load(Ordering::SeqCst),
            5,
            "the third on its own"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_booked_ahead_is_not_used_past_the_deadline() {
        let clock = Arc::new(ManualClock::new(DateTime::UNIX_EPOCH + TimeDelta::days(1)));
        let store = MemoryStore::new(clock.clone());
        let limiter = store.limiter(&hood_key(), GcraParams::new(Duration::from_secs(1), 2));
        let limiters = HashMap::from([(Vendor::Hood, Arc::new(limiter) as Arc<dyn RateLimiter>)]);
        let limiter_gate: Arc<dyn CallGate> = Arc::new(LimiterGate::new(
            limiters,
            clock.clone(),
            Duration::from_secs(10),
        ));
        let gate = DeadlineGate::new(limiter_gate, Duration::from_secs(10));
        let finish_by = clock.now() + TimeDelta::seconds(15);
        let result = calls_finish_by(finish_by, clock.clone(), async {
            let mut run = Run::new(Vendor::Hood, &gate);
            run.expect(2);
            run.step(async { ok() }).await.unwrap();
            // The first call took 6 s: its booked successor could not finish in time.
            clock.advance(TimeDelta::seconds(6));
            run.step(async { ok() }).await
        })
        .await;
        assert_eq!(op(result), Some(DEADLINE_OP));
    }

    fn spent(reset: Option<Reset>) -> RateLimitInfo {
        RateLimitInfo {
            limit: Some(150),
            remaining: Some(0),
            reset,
            retry_after: None,
        }
    }

    #[tokio::test]
    async fn a_spent_budget_pauses_every_instance_until_the_reset_capped() {
        let clock = Arc::new(ManualClock::new(DateTime::UNIX_EPOCH + TimeDelta::days(1)));
        let store = MemoryStore::new(clock.clone());
        let schedule = GcraParams::new(Duration::from_millis(100), 1);
        let counting = Arc::new(Counting {
            inner: Arc::new(store.limiter(&hood_key(), schedule)),
            reservations: AtomicU32::new(0),
            penalties: AtomicU32::new(0),
        });
        let gate = LimiterGate::new(
            HashMap::from([(Vendor::Hood, counting.clone() as Arc<dyn RateLimiter>)]),
            clock.clone(),
            Duration::ZERO,
        )
        .with_max_pause(Duration::from_secs(900));
        // Another instance's handle on the same schedule.
        let other = store.limiter(&hood_key(), schedule);
        let next_slot = || async { other.reserve(Duration::ZERO).await.unwrap() };

        // Headers that say nothing, or that budget is left, or give no reset: no pause.
        let unknown = [
            RateLimitInfo::default(),
            RateLimitInfo {
                remaining: Some(3),
                reset: Some(Reset::InSeconds(30)),
                ..RateLimitInfo::default()
            },
            spent(None),
            spent(Some(Reset::InSeconds(0))),
        ];
        for info in unknown {
            gate.observe(Vendor::Hood, &info, None).await;
        }
        assert_eq!(counting.penalties.load(Ordering::SeqCst), 0);
        assert_eq!(next_slot().await, Reservation::At(clock.now()));

        // Spent, resets in 30 s: nobody calls before then.
        clock.advance(TimeDelta::seconds(1));
        let now = clock.now();
        gate.observe(Vendor::Hood, &spent(Some(Reset::InSeconds(30))), None)
            .await;
        assert_eq!(counting.penalties.load(Ordering::SeqCst), 1);
        assert_eq!(
            next_slot().await,
            Reservation::TooFar(now + TimeDelta::seconds(30))
        );
        // A reset as a Unix time works the same.
        let at = (now + TimeDelta::seconds(45)).timestamp().unsigned_abs();
        gate.observe(Vendor::Hood, &spent(Some(Reset::EpochSeconds(at))), None)
            .await;
        assert_eq!(
            next_slot().await,
            Reservation::TooFar(now + TimeDelta::seconds(45))
        );
        // A 429 is the worker's to penalise (by its Retry-After): not paused twice.
        let throttled = VendorError::RateLimited {
            vendor: Vendor::Hood,
            op: "hood.create_profile",
            retry_after: Duration::from_secs(1),
            concurrency_limit: false,
            trace_id: None,
            rate_limit: spent(Some(Reset::InSeconds(600))),
        };
        gate.observe(
            Vendor::Hood,
            &spent(Some(Reset::InSeconds(600))),
            Some(&throttled),
        )
        .await;
        assert_eq!(counting.penalties.load(Ordering::SeqCst), 2);
        // A reset two hours away pauses for the cap (15 minutes), no longer.
        gate.observe(Vendor::Hood, &spent(Some(Reset::InSeconds(7_200))), None)
            .await;
        assert_eq!(
            next_slot().await,
            Reservation::TooFar(now + TimeDelta::seconds(900))
        );
    }

    fn op(result: Result<(), VendorError>) -> Option<&'static str> {
        match result {
            Err(VendorError::RateLimited { op, .. }) => Some(op),
            Err(other) => panic!("{other}"),
            Ok(()) => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_call_starts_that_could_not_finish_before_the_deadline() {
        let clock = Arc::new(ManualClock::new(DateTime::UNIX_EPOCH + TimeDelta::days(1)));
        let store = MemoryStore::new(clock.clone());
        // One call per 5 s, no burst.
        let limiter = store.limiter(
            &LimiterKey::new(Vendor::Hood, "t").unwrap(),
            GcraParams::new(Duration::from_secs(5), 1),
        );
        let limiters = HashMap::from([(Vendor::Hood, Arc::new(limiter) as Arc<dyn RateLimiter>)]);
        let limiter_gate: Arc<dyn CallGate> = Arc::new(LimiterGate::new(
            limiters,
            clock.clone(),
            Duration::from_secs(10),
        ));
        let gate = DeadlineGate::new(limiter_gate, Duration::from_secs(10));
        let now = clock.now();
        let within = |secs: i64| {
            calls_finish_by(
                now + TimeDelta::seconds(secs),
                clock.clone(),
                gate.acquire(Vendor::Hood),
            )
        };
        assert_eq!(
            op(within(9).await),
            Some(DEADLINE_OP),
            "9 s left < 10 s timeout"
        );
        assert_eq!(op(within(12).await), None, "12 s left: the call goes");
        // The next slot is 5 s away: 12 s left would leave 7 s for a 10 s call.
        assert_eq!(
            op(within(12).await),
            Some(PERMIT_OP),
            "the slot is too late"
        );
        assert_eq!(
            op(within(16).await),
            None,
            "16 s left: the slot in 5 s leaves 11 s"
        );
        // Outside a delivery's scope only the limiter decides.
        clock.advance(TimeDelta::seconds(10));
        assert_eq!(op(gate.acquire(Vendor::Hood).await), None);
    }
}
