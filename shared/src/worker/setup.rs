//! Assembling a worker from vendor connection settings: the same code for Lambda (settings
//! from an SSM parameter and the environment) and for `relay serve` (settings from its
//! config file), so both run one worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::gate::DeadlineGate;
use super::{LimiterGate, Targets};
use crate::store::{Clock, RateLimiter};
use crate::vendors::{CallGate, ClientBuildError, Vendor};

/// Longest one vendor call waits for its rate-limit slot before its message is handed back
/// to the queue for later.
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(3);

pub use crate::vendors::{VendorConfigs, default_limits};

/// Builds the vendor clients, every call behind `gate` and held to the delivery's deadline
/// by the client's own request timeout (see [`DeadlineGate`]).
pub fn build_targets(
    configs: &VendorConfigs,
    gate: &Arc<dyn CallGate>,
) -> Result<Targets, ClientBuildError> {
    configs.build_targets(&|timeout| -> Arc<dyn CallGate> {
        Arc::new(DeadlineGate::new(gate.clone(), timeout))
    })
}

/// The call gate over the given limiters (a spent budget in a vendor's headers pauses its
/// schedule for at most the default policy's cap on `Retry-After`).
pub fn gate(
    limiters: &HashMap<Vendor, Arc<dyn RateLimiter>>,
    clock: Arc<dyn Clock>,
) -> Arc<dyn CallGate> {
    gate_with_max_pause(limiters, clock, super::RetryPolicy::default().max_wait)
}

/// [`gate`] whose pauses from a vendor's headers last at most `max_pause` (the worker's cap
/// on `Retry-After`, `RetryPolicy::max_wait`).
pub fn gate_with_max_pause(
    limiters: &HashMap<Vendor, Arc<dyn RateLimiter>>,
    clock: Arc<dyn Clock>,
    max_pause: Duration,
) -> Arc<dyn CallGate> {
    Arc::new(LimiterGate::new(limiters.clone(), clock, MAX_SLOT_WAIT).with_max_pause(max_pause))
}
