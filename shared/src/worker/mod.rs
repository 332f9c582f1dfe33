//! The sync worker: turns queued deliveries — one contact change for one vendor — into
//! vendor calls, exactly once in effect.
//!
//! For each message:
//! 1. take the lease on the contact's link at that vendor (one conditional write that also
//!    returns what was applied before, and recognises a redelivered message);
//! 2. plan from the link (fields already applied, or newer at the vendor, are left out);
//! 3. make the calls, each behind a slot of the vendor's shared rate limiter;
//! 4. commit the new link and release the lease in one write.
//!
//! Failures decide what becomes of the message: a 429 pushes the shared schedule back
//! for every instance and retries after `Retry-After`; transient failures retry with
//! exponential back-off and full jitter, up to a bound; permanent failures and plans the
//! vendor would refuse go to the dead-letter queue with the reason; refused credentials
//! pause the vendor (logged, counted) instead of burning through the queue.

pub mod gate;
pub mod metrics;
pub mod retry;
pub mod setup;
pub mod targets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;

pub use gate::LimiterGate;
pub use metrics::{Counter, Metrics, MetricsOutput};
pub use retry::RetryPolicy;
pub use targets::{Delivered, DeliveryError, Targets};

use crate::delivery::DeliveryMessage;
use crate::mapping::Mappings;
use crate::plan::VendorState;
use crate::queue::{OutboundMessage, Queue, ReceivedMessage};
use crate::store::{
    Clock, ContactKeyHash, DeliveryId, LeaseOutcome, Link, LinkKey, LinkLease, LinkStore,
    RateLimiter,
};
use crate::vendors::{ErrorClass, Vendor, VendorError};

/// Longest a link lease is held when the caller's deadline is further away.
pub const MAX_LEASE: Duration = Duration::from_secs(60);

/// Longest a delivery waits for another delivery to the same record to finish: the holder
/// usually needs a second or two, far less than its lease allows.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);

/// What to do with a message after processing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Finished: delete it.
    Done,
    /// Leave it in the queue, visible again after the delay.
    RetryAfter(Duration),
    /// Move it to the dead-letter queue with the reason, then delete it.
    DeadLetter(String),
}

/// What happened to one delivery (for the log line and the counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Synced {
        calls: u32,
    },
    Skipped {
        reason: &'static str,
    },
    Duplicate,
    /// The record is being written by another delivery, or the next rate-limit slot is
    /// further away than a call may wait.
    Deferred,
    Throttled,
    Retried,
    DeadLettered,
    AuthFailed,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Synced { .. } => "synced",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Duplicate => "duplicate",
            Outcome::Deferred => "deferred",
            Outcome::Throttled => "throttled",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::AuthFailed => "auth_failed",
        }
    }

    fn counter(&self) -> Counter {
        match self {
            Outcome::Synced { .. } | Outcome::Skipped { .. } => Counter::Synced,
            Outcome::Duplicate => Counter::Duplicate,
            Outcome::Deferred | Outcome::Retried => Counter::Retried,
            Outcome::Throttled => Counter::Throttled,
            Outcome::DeadLettered => Counter::DeadLettered,
            Outcome::AuthFailed => Counter::AuthFailed,
        }
    }
}

/// How one message was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Removed from the queue (done or dead-lettered).
    Removed,
    /// Still in the queue, to be received again.
    Returned,
}

/// Everything a worker needs, built once per cold start.
pub struct Worker {
    pub mappings: Arc<Mappings>,
    pub links: Arc<dyn LinkStore>,
    pub targets: Targets,
    /// Limiters to penalise after a vendor's 429 (the same ones the call gate books from).
    pub limiters: HashMap<Vendor, Arc<dyn RateLimiter>>,
    /// The queue the messages came from (visibility changes; deletes outside Lambda).
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub policy: RetryPolicy,
    pub metrics: Arc<Metrics>,
    /// Vendors whose credentials were refused, until when.
    paused: Mutex<HashMap<Vendor, DateTime<Utc>>>,
}

impl Worker {
    #[allow(
        clippy::too_many_arguments,
        reason = "assembled once at start-up from named parts"
    )]
    pub fn new(
        mappings: Arc<Mappings>,
        links: Arc<dyn LinkStore>,
        targets: Targets,
        limiters: HashMap<Vendor, Arc<dyn RateLimiter>>,
        queue: Arc<dyn Queue>,
        dead_letters: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Worker {
            mappings,
            links,
            targets,
            limiters,
            queue,
            dead_letters,
            clock,
            policy,
            metrics,
            paused: Mutex::default(),
        }
    }

    /// Processes a batch concurrently and settles each message. `delete_done` is false in
    /// Lambda, where SQS deletes every message not reported as failed; the ids returned are
    /// the messages left in the queue (Lambda's `batchItemFailures`).
    pub async fn handle_batch(
        &self,
        messages: &[ReceivedMessage],
        deadline: DateTime<Utc>,
        delete_done: bool,
    ) -> Vec<String> {
        let settled = join_all(
            messages
                .iter()
                .map(|m| self.handle(m, deadline, delete_done)),
        )
        .await;
        messages
            .iter()
            .zip(settled)
            .filter(|(_, s)| *s == Settled::Returned)
            .map(|(m, _)| m.message_id.clone())
            .collect()
    }

    /// Processes one message and settles it in the queue.
    pub async fn handle(
        &self,
        message: &ReceivedMessage,
        deadline: DateTime<Utc>,
        delete_done: bool,
    ) -> Settled {
        match self.process(message, deadline).await {
            Disposition::Done => self.remove(message, delete_done).await,
            Disposition::RetryAfter(delay) => {
                if let Err(error) = self.queue.change_visibility(&message.receipt, delay).await {
                    // The message reappears after the queue's own visibility timeout instead.
                    tracing::warn!(message_id = %message.message_id, %error, "could not reschedule");
                }
                Settled::Returned
            }
            Disposition::DeadLetter(reason) => {
                let mut entry = OutboundMessage::new("dead-letter", message.body.clone());
                entry
                    .attributes
                    .insert("reason".into(), truncate(&reason, 1000));
                entry
                    .attributes
                    .insert("receive_count".into(), message.receive_count.to_string());
                entry
                    .attributes
                    .insert("dead_lettered_at".into(), self.clock.now().to_rfc3339());
                match self.dead_letters.send_batch(&[entry]).await {
                    Ok(()) => self.remove(message, delete_done).await,
                    Err(error) => {
                        tracing::error!(message_id = %message.message_id, %error, "could not dead-letter; retrying later");
                        let _ = self
                            .queue
                            .change_visibility(&message.receipt, Duration::from_secs(30))
                            .await;
                        Settled::Returned
                    }
                }
            }
        }
    }

    async fn remove(&self, message: &ReceivedMessage, delete: bool) -> Settled {
        if delete && let Err(error) = self.queue.delete(&message.receipt).await {
            tracing::warn!(message_id = %message.message_id, %error, "could not delete; it will be received again and recognised");
        }
        Settled::Removed
    }

    /// Decides and performs one delivery; says what to do with its message. Logs one line
    /// and counts one outcome per call.
    pub async fn process(&self, message: &ReceivedMessage, deadline: DateTime<Utc>) -> Disposition {
        let started = Instant::now();
        let parsed = match DeliveryMessage::from_body(&message.body) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!(message_id = %message.message_id, %error, "unreadable message");
                self.metrics.count_unattributed(Counter::DeadLettered);
                return Disposition::DeadLetter(format!("unreadable message: {error}"));
            }
        };
        let (disposition, outcome) = self.deliver(&parsed, message.receive_count, deadline).await;
        let calls = match outcome {
            Outcome::Synced { calls } => calls,
            _ => 0,
        };
        let skipped = match &outcome {
            Outcome::Skipped { reason } => *reason,
            _ => "",
        };
        let retry_in_ms = match &disposition {
            Disposition::RetryAfter(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            _ => 0,
        };
        tracing::info!(
            event = %parsed.event_key(),
            vendor = %parsed.vendor,
            outcome = outcome.label(),
            skipped,
            attempt = message.receive_count,
            calls,
            retry_in_ms,
            latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "delivery"
        );
        self.metrics.count(parsed.vendor, outcome.counter());
        disposition
    }

    async fn deliver(
        &self,
        message: &DeliveryMessage,
        attempt: u32,
        deadline: DateTime<Utc>,
    ) -> (Disposition, Outcome) {
        let vendor = message.vendor;
        let now = self.clock.now();
        if let Some(until) = self.paused_until(vendor, now) {
            return (
                Disposition::RetryAfter(retry::with_jitter(to_std(until - now))),
                Outcome::AuthFailed,
            );
        }
        if !self.targets.has(vendor) || !self.mappings.vendors.has(vendor) {
            return (
                Disposition::DeadLetter(format!(
                    "vendor `{vendor}` is not configured on this worker"
                )),
                Outcome::DeadLettered,
            );
        }
        let key = LinkKey::new(
            vendor,
            &ContactKeyHash::of(message.change.contact.key.as_str()),
        );
        let delivery = DeliveryId::of(&message.event_key());
        let lease_until = deadline.min(now + TimeDelta::from_std(MAX_LEASE).unwrap_or_default());
        let (lease, link) = match self.links.lease(&key, &delivery, lease_until).await {
            Ok(LeaseOutcome::Leased { lease, link }) => (lease, link),
            Ok(LeaseOutcome::AlreadyApplied) => return (Disposition::Done, Outcome::Duplicate),
            Ok(LeaseOutcome::Busy { until }) => {
                let wait = to_std(until - now).min(BUSY_RETRY);
                return (
                    Disposition::RetryAfter(retry::with_jitter(wait)),
                    Outcome::Deferred,
                );
            }
            Err(error) => {
                tracing::warn!(%vendor, %error, "link store unavailable");
                return (
                    Disposition::RetryAfter(self.policy.backoff(attempt)),
                    Outcome::Retried,
                );
            }
        };

        let version = message.change.event.occurred_at.timestamp_millis();
        let mut state = VendorState {
            vendor_id: link.vendor_id.clone(),
            applied: link.fields.clone(),
        };
        let mut result = self
            .targets
            .deliver(&self.mappings, vendor, &message.change, &state)
            .await;
        // A stored id the vendor no longer knows (record deleted there): resolve afresh once.
        if state.vendor_id.is_some() && is_not_found(&result) {
            tracing::info!(%vendor, "stored vendor id not found; resolving the record again");
            state = VendorState::default();
            result = self
                .targets
                .deliver(&self.mappings, vendor, &message.change, &state)
                .await;
        }
        let Some(result) = result else {
            self.abandon(&lease).await;
            return (
                Disposition::DeadLetter(format!(
                    "vendor `{vendor}` is not configured on this worker"
                )),
                Outcome::DeadLettered,
            );
        };
        match result {
            Ok(delivered) => {
                // Committed on a skip too: a skip may confirm fields at this newer version.
                // From `state`, what the plan was made from (empty after a re-resolve).
                let mut next = Link {
                    vendor_id: delivered.vendor_id.clone().or(state.vendor_id),
                    fields: crate::plan::record_applied(
                        &state.applied,
                        &delivered.applied,
                        version,
                    ),
                    ..link
                };
                next.remember(delivery);
                if let Err(error) = self.links.commit(&lease, &next).await {
                    // The vendor has the change; only our record of it was lost (the lease
                    // expired during a slow call). A later change re-plans from the old record.
                    tracing::warn!(%vendor, %error, "applied but could not record it");
                }
                let outcome = match delivered.skipped {
                    Some(reason) => Outcome::Skipped {
                        reason: reason.code(),
                    },
                    None => Outcome::Synced {
                        calls: delivered.calls,
                    },
                };
                (Disposition::Done, outcome)
            }
            Err(DeliveryError::Plan(error)) => {
                self.abandon(&lease).await;
                (
                    Disposition::DeadLetter(error.to_string()),
                    Outcome::DeadLettered,
                )
            }
            Err(DeliveryError::Sync(error)) => {
                match &error.vendor_id {
                    // Keep an id learned before the failure (a created profile) so the retry
                    // patches it instead of looking it up again; the delivery stays unapplied.
                    Some(id) => {
                        let next = Link {
                            vendor_id: Some(id.clone()),
                            ..link
                        };
                        if let Err(e) = self.links.commit(&lease, &next).await {
                            tracing::warn!(%vendor, error = %e, "could not record the id learned before a failure");
                        }
                    }
                    None => self.abandon(&lease).await,
                }
                self.after_failure(vendor, &error.error, attempt).await
            }
        }
    }

    async fn after_failure(
        &self,
        vendor: Vendor,
        error: &VendorError,
        attempt: u32,
    ) -> (Disposition, Outcome) {
        match error.class() {
            ErrorClass::RateLimited => {
                let wait = error.retry_after().unwrap_or(Duration::from_secs(1));
                if let VendorError::RateLimited { op, .. } = error
                    && *op == gate::PERMIT_OP
                {
                    return (
                        Disposition::RetryAfter(retry::with_jitter(wait)),
                        Outcome::Deferred,
                    );
                }
                tracing::warn!(%vendor, retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "vendor answered 429; holding every instance back");
                if let Some(limiter) = self.limiters.get(&vendor)
                    && let Err(e) = limiter.penalise(wait).await
                {
                    tracing::warn!(%vendor, error = %e, "could not penalise the shared schedule");
                }
                (
                    Disposition::RetryAfter(retry::with_jitter(wait)),
                    Outcome::Throttled,
                )
            }
            ErrorClass::Transient if self.policy.retries_left(attempt) => {
                tracing::warn!(%vendor, %error, attempt, "transient failure; retrying with back-off");
                (
                    Disposition::RetryAfter(self.policy.backoff(attempt)),
                    Outcome::Retried,
                )
            }
            ErrorClass::Transient => (
                Disposition::DeadLetter(format!("gave up after {attempt} attempts: {error}")),
                Outcome::DeadLettered,
            ),
            ErrorClass::Permanent => (
                Disposition::DeadLetter(error.to_string()),
                Outcome::DeadLettered,
            ),
            ErrorClass::Auth => {
                let until = self.clock.now()
                    + TimeDelta::from_std(self.policy.auth_pause).unwrap_or_default();
                if let Ok(mut paused) = self.paused.lock() {
                    paused.insert(vendor, until);
                }
                tracing::error!(%vendor, %error, pause_s = self.policy.auth_pause.as_secs(), "vendor refused our credentials; pausing deliveries to it");
                (
                    Disposition::RetryAfter(self.policy.auth_pause),
                    Outcome::AuthFailed,
                )
            }
        }
    }

    fn paused_until(&self, vendor: Vendor, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let paused = self.paused.lock().ok()?;
        paused.get(&vendor).copied().filter(|until| *until > now)
    }

    async fn abandon(&self, lease: &LinkLease) {
        if let Err(error) = self.links.abandon(lease).await {
            tracing::warn!(%error, "could not release a link lease; it expires on its own");
        }
    }
}

fn is_not_found(result: &Option<Result<Delivered, DeliveryError>>) -> bool {
    matches!(result, Some(Err(DeliveryError::Sync(e))) if e.error.status() == Some(404))
}

fn to_std(delta: TimeDelta) -> Duration {
    delta.to_std().unwrap_or_default()
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
