//! The port the worker drives: "apply this plan to the vendor". One small trait with the
//! plan type as a parameter, implemented by each vendor client and by [`super::fake`]
//! for unit tests; plus [`CallGate`], the hook that paces every single HTTP call.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Vendor;
use super::error::VendorError;
use super::http::VendorResponse;
use super::rate_limit::RateLimitInfo;

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncOutcome {
    /// The vendor's id of the record (Hood profile id, Channel.io user id, Omnivibe agent
    /// id, Chatwoot contact id), for the caller to store as a link. `None` when the plan
    /// was a skip without a known id.
    pub vendor_id: Option<String>,
    /// HTTP calls made (attempted), for limiter accounting.
    pub calls: u32,
    /// The last rate-limit headers seen that carried any value.
    pub rate_limit: Option<RateLimitInfo>,
}

/// A failed sync: the error of the call that failed plus what was done before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} (after {calls} call(s))")]
pub struct SyncError {
    /// Boxed to keep `Result<SyncOutcome, SyncError>` small.
    #[source]
    pub error: Box<VendorError>,
    /// Calls made, including the failed one.
    pub calls: u32,
    /// An id learned before the failure (e.g. a Hood profile created before its PATCH
    /// failed): worth storing so the retry patches instead of searching again.
    pub vendor_id: Option<String>,
    pub rate_limit: Option<RateLimitInfo>,
}

/// Applies one vendor's plan. `Plan` is `HoodPlan`, `ChannelPlan`, `OmnivibePlan` or
/// `ChatwootPlan`.
#[async_trait]
pub trait VendorSync: Send + Sync {
    type Plan: Send + Sync;

    /// The vendor this adapter talks to.
    fn vendor(&self) -> Vendor;

    /// Sends the requests `plan` describes, resolving ids where the plan asks to.
    async fn sync(&self, plan: &Self::Plan) -> Result<SyncOutcome, SyncError>;
}

/// Paces every HTTP call a sync makes (a Hood sync can need several), so a shared limiter
/// sees each call, not each sync. Production plugs in the GCRA limiter; the default lets
/// everything through.
#[async_trait]
pub trait CallGate: Send + Sync {
    /// Waits for (or refuses, with `VendorError::RateLimited`) a permit for one call.
    async fn acquire(&self, vendor: Vendor) -> Result<(), VendorError>;

    /// Books permits for the next `calls` calls of one sync at once (one write to a shared
    /// schedule instead of one per call), waits for the first, and answers the instants
    /// the others may start, in order, each to be waited for with [`Self::wait_booked`].
    /// Fewer than `calls − 1` when not all fit in the allowed wait: the caller acquires
    /// the rest one by one. A gate without a schedule answers none (the default).
    async fn acquire_many(
        &self,
        vendor: Vendor,
        calls: u32,
    ) -> Result<Vec<DateTime<Utc>>, VendorError> {
        let _ = calls;
        self.acquire(vendor).await.map(|()| Vec::new())
    }

    /// Waits until `at`, an instant [`Self::acquire_many`] answered, or refuses when the
    /// call may no longer start (e.g. the delivery's deadline is too close now). Gates
    /// that book several slots implement it; the default lets the call go.
    async fn wait_booked(&self, vendor: Vendor, at: DateTime<Utc>) -> Result<(), VendorError> {
        let _ = (vendor, at);
        Ok(())
    }

    /// Sees the rate-limit headers of every answer, and the error of every failed call;
    /// may write (an exhausted budget pauses the shared schedule) before the sync goes on.
    /// Absent headers say nothing: never "no budget left".
    async fn observe(
        &self,
        vendor: Vendor,
        rate_limit: &RateLimitInfo,
        error: Option<&VendorError>,
    );
}

/// A gate that never waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenGate;

#[async_trait]
impl CallGate for OpenGate {
    async fn acquire(&self, _vendor: Vendor) -> Result<(), VendorError> {
        Ok(())
    }
    async fn observe(
        &self,
        _vendor: Vendor,
        _rate_limit: &RateLimitInfo,
        _error: Option<&VendorError>,
    ) {
    }
}

/// The default gate.
pub fn open_gate() -> Arc<dyn CallGate> {
    Arc::new(OpenGate)
}

/// Bookkeeping of one sync: calls, last rate-limit info, id learned so far, and the
/// permits booked ahead for calls the sync is sure to make.
pub(crate) struct Run<'a> {
    vendor: Vendor,
    gate: &'a dyn CallGate,
    calls: u32,
    rate_limit: Option<RateLimitInfo>,
    pub vendor_id: Option<String>,
    /// Calls from the next one on that the sync is sure to make ([`Run::expect`]).
    ahead: u32,
    /// Instants of permits booked ahead, for the next calls in order.
    booked: VecDeque<DateTime<Utc>>,
}

impl<'a> Run<'a> {
    pub fn new(vendor: Vendor, gate: &'a dyn CallGate) -> Self {
        Run {
            vendor,
            gate,
            calls: 0,
            rate_limit: None,
            vendor_id: None,
            ahead: 0,
            booked: VecDeque::new(),
        }
    }

    /// Says the sync will make at least `calls` more calls from the next one on: the next
    /// call books permits for all of them in one go ([`CallGate::acquire_many`]). A slot
    /// booked but not used (the sync failed, or ended earlier than it said) is lost to
    /// the schedule: say only what is certain.
    pub fn expect(&mut self, calls: u32) {
        let booked = u32::try_from(self.booked.len()).unwrap_or(u32::MAX);
        self.ahead = self.ahead.max(calls.saturating_sub(booked));
    }

    /// Waits for a permit (booked ahead, or one now), then runs one call (`call` is lazy
    /// until awaited here), counting it and keeping its rate-limit headers.
    pub async fn step<T>(
        &mut self,
        call: impl Future<Output = Result<VendorResponse<T>, VendorError>>,
    ) -> Result<T, VendorError> {
        if let Some(at) = self.booked.pop_front() {
            self.gate.wait_booked(self.vendor, at).await?;
        } else if self.ahead > 1 {
            let more = self.gate.acquire_many(self.vendor, self.ahead).await?;
            self.ahead = self.ahead.saturating_sub(1);
            // The booked slots cover the calls said ahead; what did not fit is asked for
            // one by one.
            self.ahead = self
                .ahead
                .saturating_sub(u32::try_from(more.len()).unwrap_or(u32::MAX));
            self.booked.extend(more);
        } else {
            self.gate.acquire(self.vendor).await?;
            self.ahead = self.ahead.saturating_sub(1);
        }
        self.calls += 1;
        match call.await {
            Ok(r) => {
                self.gate.observe(self.vendor, &r.rate_limit, None).await;
                self.remember(r.rate_limit);
                Ok(r.value)
            }
            Err(e) => {
                let rl = e.rate_limit().copied().unwrap_or_default();
                self.gate.observe(self.vendor, &rl, Some(&e)).await;
                self.remember(rl);
                Err(e)
            }
        }
    }

    fn remember(&mut self, rl: RateLimitInfo) {
        if !rl.is_empty() {
            self.rate_limit = Some(rl);
        }
    }

    /// The outcome, or the error wrapped with what this run did before it.
    pub fn finish(self, result: Result<(), VendorError>) -> Result<SyncOutcome, SyncError> {
        match result {
            Ok(()) => Ok(SyncOutcome {
                vendor_id: self.vendor_id,
                calls: self.calls,
                rate_limit: self.rate_limit,
            }),
            Err(error) => Err(SyncError {
                error: Box::new(error),
                calls: self.calls,
                vendor_id: self.vendor_id,
                rate_limit: self.rate_limit,
            }),
        }
    }
}
