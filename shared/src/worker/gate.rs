//! The limiter in front of every vendor call: each HTTP call a sync makes books a slot on
//! its vendor's shared GCRA schedule and waits for it, so the vendor's limit holds across
//! all instances call by call (a Hood sync can make several calls).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::{Clock, RateLimiter, Reservation};
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::rate_limit::RateLimitInfo;
use crate::vendors::sync::CallGate;

/// The `op` of the error the gate answers when the next slot is too far away; the worker
/// then defers the message without penalising the schedule (no vendor said 429).
pub const PERMIT_OP: &str = "limiter.permit";

/// A [`CallGate`] over one shared limiter per vendor.
pub struct LimiterGate {
    limiters: HashMap<Vendor, Arc<dyn RateLimiter>>,
    clock: Arc<dyn Clock>,
    /// Longest a call waits for its slot; beyond it the message is handed back to the queue.
    max_wait: Duration,
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
        }
    }

    /// The limiter of `vendor`, for penalising after a 429.
    pub fn limiter(&self, vendor: Vendor) -> Option<&Arc<dyn RateLimiter>> {
        self.limiters.get(&vendor)
    }

    fn deferred(&self, vendor: Vendor, retry_after: Duration) -> VendorError {
        VendorError::RateLimited {
            vendor,
            op: PERMIT_OP,
            retry_after,
            concurrency_limit: false,
            trace_id: None,
            rate_limit: RateLimitInfo::default(),
        }
    }
}

#[async_trait]
impl CallGate for LimiterGate {
    async fn acquire(&self, vendor: Vendor) -> Result<(), VendorError> {
        let Some(limiter) = self.limiters.get(&vendor) else {
            return Ok(());
        };
        match limiter.reserve(self.max_wait).await {
            Ok(Reservation::At(at)) => {
                let wait = (at - self.clock.now()).to_std().unwrap_or_default();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
            Ok(Reservation::TooFar(at)) => {
                Err(self.deferred(vendor, (at - self.clock.now()).to_std().unwrap_or_default()))
            }
            Err(error) => {
                // Without the shared schedule no call may go: fail closed, retry soon.
                tracing::warn!(%vendor, %error, "rate limiter unavailable");
                Err(self.deferred(vendor, Duration::from_secs(5)))
            }
        }
    }

    fn observe(&self, _vendor: Vendor, _rate_limit: &RateLimitInfo, _error: Option<&VendorError>) {}
}
