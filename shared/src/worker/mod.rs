//! The sync worker: turns queued deliveries — one contact change for one vendor — into
//! vendor calls, exactly once in effect.
//!
//! For each message:
//! 1. take the lease on the contact's link at that vendor (one conditional write that also
//!    returns what was applied before, and recognises a redelivered message);
//! 2. plan from the link (fields already applied, or newer at the vendor, are left out) —
//!    unless the vendor has no record of the person and the change no e-mail or phone
//!    while its source can be read: then the change is completed first ([`crate::enrich`]);
//! 3. make the calls, each behind a slot of the vendor's shared rate limiter, and none that
//!    could not finish before the invocation's deadline;
//! 4. commit the new link and release the lease in one write.
//!
//! What becomes of a message that cannot be delivered now (see [`retry`]):
//! * **waiting** — the record is busy, the next rate-limit slot is far away, the vendor
//!   said 429 (the shared schedule is pushed back for every instance), the vendor refused
//!   our credentials (the shared schedule is paused for every instance), or the invocation
//!   is nearly out of time. No failure is counted;
//! * **failing** — transient failures retry with capped exponential back-off and full
//!   jitter for a time horizon from the first failure, then dead-letter with the reason;
//! * permanent failures and plans the vendor would refuse dead-letter at once.
//!
//! A message handed on is **sent again** with the wait as its `DelaySeconds` and its attempt
//! state in the body ([`RetryState`]), and this copy removed: it costs no SQS receive, so the
//! queue's redrive (`maxReceiveCount`) never mistakes waiting for failing. It is sent first
//! and removed after, so a crash in between leaves a duplicate, which the link lease
//! recognises once the delivery is applied. Waits longer than SQS's 15-minute delay are
//! chained (`retry_not_before`). Only when the send fails is the message left in the queue
//! with its visibility changed instead.

mod coalesce;
pub mod gate;
pub mod metrics;
pub mod retry;
pub mod setup;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;

pub use crate::vendors::{Delivered, DeliveryError, OmnivibeAgents, Targets};
pub use gate::{DeadlineGate, LimiterGate};
pub use metrics::{Counter, Metrics, MetricsOutput};
pub use retry::RetryPolicy;

use crate::delivery::DeliveryMessage;
pub use crate::delivery::RetryState;
use crate::enrich::{Enrichment, ReadError};
use crate::mapping::Mappings;
use crate::plan::VendorState;
use crate::queue::{MAX_DELAY, MAX_VISIBILITY, OutboundMessage, Queue, ReceivedMessage};
use crate::store::{
    Clock, ContactKeyHash, DeliveryEntry, DeliveryId, DeliveryStatus, IdempotencyKey, Journal,
    LeaseOutcome, Link, LinkKey, LinkLease, LinkStore, LogRecord, RateLimiter, Reservation,
};
use crate::vendors::{ErrorClass, Vendor, VendorError};

/// Longest a link lease is held when the caller's deadline is further away.
pub const MAX_LEASE: Duration = Duration::from_secs(60);

/// Longest a delivery waits for another delivery to the same record to finish: the holder
/// usually needs a second or two, far less than its lease allows.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);

/// How early a message may arrive before its `retry_not_before` and still be tried (clock
/// differences between instances, SQS's whole seconds).
const NOT_BEFORE_TOLERANCE: TimeDelta = TimeDelta::seconds(1);

/// Longest last error kept in a message body, in characters (bodies must stay within SQS's
/// size limit, which ingest leaves 1 KiB of room under).
const MAX_LAST_ERROR_CHARS: usize = 300;

/// What to do with a message after processing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Finished: delete it.
    Done,
    /// Try it again after `delay` (at most SQS's 15 minutes; longer waits are chained with
    /// `retry.retry_not_before`): sent again with `retry` as its attempt state and this
    /// copy removed, or — when sending fails — left in the queue, visible after `delay`.
    RetryAfter { delay: Duration, retry: RetryState },
    /// Move it to the dead-letter queue with the reason, then delete it.
    DeadLetter(String),
}

/// Why a delivery waits (nothing failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Another delivery holds the record's lease.
    LeaseBusy,
    /// The next slot of the vendor's shared schedule is further away than a call may wait
    /// (also while the vendor is paused after a 429 or refused credentials).
    RateLimitSlot,
    /// The invocation has too little time left for the next call.
    Deadline,
    /// A chained wait longer than SQS's longest delay is not over yet.
    NotYet,
    /// The vendor cannot take the change yet: the person is new to it and the change has
    /// no identifier it can create a record from (a HubSpot property change for a contact
    /// whose e-mail arrives in a later request). Retried until an event that brings one has
    /// made the record, for at most `RetryPolicy::identity_wait`.
    IdentityIncomplete,
}

impl Wait {
    fn code(self) -> &'static str {
        match self {
            Wait::LeaseBusy => "lease_busy",
            Wait::RateLimitSlot => "rate_limit_slot",
            Wait::Deadline => "deadline",
            Wait::NotYet => "not_yet",
            Wait::IdentityIncomplete => "identity_incomplete",
        }
    }
}

/// The skip reason of a delivery to a vendor the worker has no settings for.
pub const VENDOR_NOT_CONFIGURED: &str = "vendor_not_configured";

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
    /// Handed on to wait; no failure counted.
    Deferred {
        wait: Wait,
    },
    /// The vendor answered 429: handed on for its `Retry-After`; no failure counted.
    Throttled,
    /// A transient failure: handed on to retry after a back-off.
    Retried,
    DeadLettered,
    /// The vendor refused our credentials: every instance pauses it; no failure counted.
    AuthFailed,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Synced { .. } => "synced",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Duplicate => "duplicate",
            Outcome::Deferred { .. } => "deferred",
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
            Outcome::Deferred { .. } => Counter::Deferred,
            Outcome::Retried => Counter::Retried,
            Outcome::Throttled => Counter::Throttled,
            Outcome::DeadLettered => Counter::DeadLettered,
            Outcome::AuthFailed => Counter::AuthFailed,
        }
    }
}

/// How one message was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Removed from the queue: done, dead-lettered, or sent again for later. (In Lambda the
    /// event source deletes it, as it is not reported as failed.)
    Removed,
    /// Still in the queue, to be received again.
    Returned,
}

/// What a delivery attempt came to, before the attempt state decides the disposition.
#[derive(Clone)]
enum Next {
    Done(Outcome),
    /// Try again after this wait; nothing failed.
    Wait(Duration, Outcome),
    /// A chained wait is not over: send on for the rest of it, up to this instant.
    NotYet(DateTime<Utc>),
    /// A transient failure (its description, without personal data).
    Failed(String),
    DeadLetter(String),
    /// The vendor has no record of the person and the change no identifier to make one
    /// from, but its source can be read: complete the change ([`crate::enrich`]) and
    /// deliver it again.
    Enrich,
    /// Some of the messages a coalesced attempt stands for were applied before (their ids
    /// are among the link's recent ones): nothing was sent; they are duplicates, and the
    /// rest are delivered without them.
    PartlyApplied(Vec<DeliveryId>),
}

/// The delivery ids one attempt stands for in the link: the one its lease is taken with
/// (a message's own, or a coalesced group's) and the others it applies too, all
/// remembered on commit so a redelivery of any of them is recognised.
struct Deliveries {
    lease: DeliveryId,
    also: Vec<DeliveryId>,
}

impl Deliveries {
    fn one(message: &DeliveryMessage) -> Self {
        Deliveries {
            lease: DeliveryId::of(&message.event_key()),
            also: Vec::new(),
        }
    }
}

/// What an attempt learned and leaves to its conclusion: the vendor's record id, and the
/// link it applied, committed by [`Worker::conclude`] together with the attempt's log
/// record (one write on DynamoDB instead of two).
#[derive(Default)]
struct Learned {
    vendor_id: Option<String>,
    commit: Option<(LinkLease, Link)>,
}

/// Whose an attempt was, for the log line and the counts.
#[derive(Clone, Copy)]
struct Share {
    /// Messages delivered by the attempt (1: alone).
    with: usize,
    /// This message's log line and delivery-log entry carry the attempt's vendor calls.
    counts_calls: bool,
}

impl Share {
    const ALONE: Share = Share {
        with: 1,
        counts_calls: true,
    };
}

/// Everything a worker needs, built once per cold start.
pub struct Worker {
    pub mappings: Arc<Mappings>,
    pub links: Arc<dyn LinkStore>,
    pub targets: Targets,
    /// Limiters to penalise after a vendor's 429 or refused credentials (the same ones the
    /// call gate books from), so every instance holds back.
    pub limiters: HashMap<Vendor, Arc<dyn RateLimiter>>,
    /// The queue the messages came from: messages handed on are sent to it again (deletes
    /// and visibility changes outside Lambda too).
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub policy: RetryPolicy,
    pub metrics: Arc<Metrics>,
    /// The delivery log each attempt's outcome is recorded in (one write per attempt that
    /// reached the delivery step; waits for a slot or a lease are not recorded).
    pub journal: Option<Arc<dyn Journal>>,
    /// Readers of the sources changes come from, to complete a change for a person the
    /// relay does not know yet (none: such changes wait for an identifier).
    pub enrichment: Option<Arc<Enrichment>>,
    /// Whether the messages of a batch for one person at one vendor are delivered as one.
    pub coalesce: bool,
}

impl Worker {
    /// Completes changes for persons new to a vendor from their source, where it can be
    /// read ([`crate::enrich`]).
    pub fn with_enrichment(mut self, enrichment: Enrichment) -> Self {
        self.enrichment = Some(Arc::new(enrichment));
        self
    }

    /// Turns coalescing on or off ([`coalesce`]); on by default.
    pub fn coalescing(mut self, on: bool) -> Self {
        self.coalesce = on;
        self
    }

    /// Records each delivery attempt in `journal`.
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

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
            journal: None,
            enrichment: None,
            coalesce: true,
        }
    }

    /// Processes a batch concurrently and settles each message. Messages of the batch for
    /// the same person at the same vendor are delivered together, as one change
    /// ([`coalesce`]), when [`Self::coalescing`] is on. `delete_done` is false in
    /// Lambda, where SQS deletes every message not reported as failed; the ids returned are
    /// the messages left in the queue (Lambda's `batchItemFailures`).
    pub async fn handle_batch(
        &self,
        messages: &[ReceivedMessage],
        deadline: DateTime<Utc>,
        delete_done: bool,
    ) -> Vec<String> {
        let settled = join_all(self.units(messages).into_iter().map(|unit| async move {
            match unit {
                coalesce::Unit::Together(members) => {
                    self.handle_together(members, deadline, delete_done).await
                }
                coalesce::Unit::Alone(message) => {
                    vec![(message, self.handle(message, deadline, delete_done).await)]
                }
            }
        }))
        .await;
        settled
            .into_iter()
            .flatten()
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
        let (disposition, parsed) = self.decide(message, deadline).await;
        self.settle(message, disposition, parsed, delete_done).await
    }

    /// Does with `message` what its disposition says.
    async fn settle(
        &self,
        message: &ReceivedMessage,
        disposition: Disposition,
        parsed: Option<DeliveryMessage>,
        delete_done: bool,
    ) -> Settled {
        match disposition {
            Disposition::Done => self.remove(message, delete_done).await,
            Disposition::RetryAfter { delay, retry } => {
                self.hand_on(message, parsed, delay, retry, delete_done)
                    .await
            }
            Disposition::DeadLetter(reason) => {
                self.dead_letter(message, parsed, &reason, delete_done)
                    .await
            }
        }
    }

    /// Sends the delivery again for later, then removes this copy; when the send fails,
    /// leaves this copy in the queue, visible after `delay` (its attempt state cannot
    /// travel then, and it costs a receive).
    async fn hand_on(
        &self,
        message: &ReceivedMessage,
        parsed: Option<DeliveryMessage>,
        delay: Duration,
        retry: RetryState,
        delete_done: bool,
    ) -> Settled {
        if let Some(parsed) = parsed {
            let mut again =
                OutboundMessage::new("later", DeliveryMessage { retry, ..parsed }.to_body());
            again.delay = Some(delay.min(MAX_DELAY));
            again.attributes = message.attributes.clone();
            match self.queue.send_batch(&[again]).await {
                Ok(()) => return self.remove(message, delete_done).await,
                Err(error) => {
                    tracing::warn!(message_id = %message.message_id, %error, "could not send the delivery again; leaving it in the queue instead");
                }
            }
        }
        if let Err(error) = self
            .queue
            .change_visibility(&message.receipt, delay.min(MAX_VISIBILITY))
            .await
        {
            // The message reappears after the queue's own visibility timeout instead.
            tracing::warn!(message_id = %message.message_id, %error, "could not reschedule");
        }
        Settled::Returned
    }

    async fn dead_letter(
        &self,
        message: &ReceivedMessage,
        parsed: Option<DeliveryMessage>,
        reason: &str,
        delete_done: bool,
    ) -> Settled {
        // The attempts are in the reason and the attributes; the body goes without them, so
        // a replay after a fix starts afresh instead of past its horizon.
        let earlier = parsed.as_ref().map_or(0, |p| p.retry.failures);
        let body = match parsed {
            Some(parsed) => DeliveryMessage {
                retry: RetryState::default(),
                ..parsed
            }
            .to_body(),
            None => message.body.clone(),
        };
        let mut entry = OutboundMessage::new("dead-letter", body);
        entry
            .attributes
            .insert("reason".into(), truncate(reason, 1000));
        entry
            .attributes
            .insert("receive_count".into(), message.receive_count.to_string());
        entry
            .attributes
            .insert("earlier_failures".into(), earlier.to_string());
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

    async fn remove(&self, message: &ReceivedMessage, delete: bool) -> Settled {
        if delete && let Err(error) = self.queue.delete(&message.receipt).await {
            tracing::warn!(message_id = %message.message_id, %error, "could not delete; it will be received again and recognised");
        }
        Settled::Removed
    }

    /// Decides and performs one delivery; says what to do with its message. Logs one line
    /// and counts one outcome per call.
    pub async fn process(&self, message: &ReceivedMessage, deadline: DateTime<Utc>) -> Disposition {
        self.decide(message, deadline).await.0
    }

    /// [`Self::process`], also answering the parsed message (none when unreadable).
    async fn decide(
        &self,
        message: &ReceivedMessage,
        deadline: DateTime<Utc>,
    ) -> (Disposition, Option<DeliveryMessage>) {
        let started = Instant::now();
        let mut parsed = match DeliveryMessage::from_body(&message.body) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!(message_id = %message.message_id, %error, "unreadable message");
                self.metrics.count_unattributed(Counter::DeadLettered);
                return (
                    Disposition::DeadLetter(format!("unreadable message: {error}")),
                    None,
                );
            }
        };
        let now = self.clock.now();
        let mut learned = Learned::default();
        let next = match parsed.retry.retry_not_before {
            Some(at) if at - NOT_BEFORE_TOLERANCE > now => Next::NotYet(at),
            _ => {
                let ids = Deliveries::one(&parsed);
                self.attempt(&mut parsed, &ids, deadline, &mut learned)
                    .await
            }
        };
        let disposition = self
            .conclude(
                message,
                &parsed,
                next,
                learned.vendor_id,
                learned.commit,
                started,
                Share::ALONE,
            )
            .await;
        (disposition, Some(parsed))
    }

    /// Delivers `parsed`, completing it from its source first where it needs that.
    async fn attempt(
        &self,
        parsed: &mut DeliveryMessage,
        ids: &Deliveries,
        deadline: DateTime<Utc>,
        learned: &mut Learned,
    ) -> Next {
        let next = self.deliver(parsed, ids, deadline, learned).await;
        if !matches!(next, Next::Enrich) {
            return next;
        }
        // Completed, then delivered as any change; a message handed on from here on
        // carries the completed change, so the source is read once per delivery.
        match self.enrich(parsed, deadline).await {
            None => self.deliver(parsed, ids, deadline, learned).await,
            Some(next) => next,
        }
    }

    /// Turns what the attempt of `message` came to into its disposition; logs one line,
    /// counts one outcome, commits the link the attempt applied (`commit`) and records the
    /// attempt in the delivery log — both in one write where the store can. `share` says
    /// whether the attempt was this message's alone or a coalesced one's (its calls are
    /// counted once, on the group's first message).
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        message: &ReceivedMessage,
        parsed: &DeliveryMessage,
        next: Next,
        vendor_id: Option<String>,
        mut commit: Option<(LinkLease, Link)>,
        started: Instant,
        share: Share,
    ) -> Disposition {
        let (mut disposition, outcome) = self.dispose(next, &parsed.retry);
        let attempted = matches!(
            outcome,
            Outcome::Synced { .. }
                | Outcome::Skipped { .. }
                | Outcome::Retried
                | Outcome::Throttled
                | Outcome::AuthFailed
                | Outcome::DeadLettered
        );
        let attempts = parsed.retry.attempts + u32::from(attempted);
        if let Disposition::RetryAfter { retry, .. } = &mut disposition {
            retry.attempts = attempts;
        }
        let calls = match outcome {
            Outcome::Synced { calls } if share.counts_calls => calls,
            _ => 0,
        };
        let skipped = match &outcome {
            Outcome::Skipped { reason } => *reason,
            _ => "",
        };
        let wait = match &outcome {
            Outcome::Deferred { wait } => wait.code(),
            _ => "",
        };
        let (retry_in_ms, failures) = match &disposition {
            Disposition::RetryAfter { delay, retry } => (
                retry
                    .retry_not_before
                    .map_or(*delay, |at| to_std(at - self.clock.now()).max(*delay)),
                retry.failures,
            ),
            _ => (Duration::ZERO, parsed.retry.failures),
        };
        tracing::info!(
            event = %parsed.event_key(),
            vendor = %parsed.vendor,
            outcome = outcome.label(),
            skipped,
            wait,
            failures,
            receive_count = message.receive_count,
            calls,
            coalesced = share.with,
            retry_in_ms = millis(retry_in_ms),
            latency_ms = millis(started.elapsed()),
            "delivery"
        );
        self.metrics.count(parsed.vendor, outcome.counter());
        if matches!(outcome, Outcome::Synced { .. }) {
            let lag = (self.clock.now() - parsed.change.event.occurred_at).num_milliseconds();
            self.metrics
                .lag(parsed.vendor, u64::try_from(lag).unwrap_or(0));
        }
        if attempted && let Some(journal) = &self.journal {
            let entry = DeliveryEntry {
                status: match (&outcome, &disposition) {
                    (Outcome::Synced { .. }, _) => DeliveryStatus::Synced,
                    (Outcome::Skipped { .. }, _) => DeliveryStatus::Skipped,
                    (_, Disposition::DeadLetter(_)) => DeliveryStatus::DeadLettered,
                    _ => DeliveryStatus::Retrying,
                },
                reason: match (&outcome, &disposition) {
                    (Outcome::Skipped { reason }, _) => Some((*reason).to_owned()),
                    (_, Disposition::DeadLetter(reason)) => {
                        Some(crate::store::journal::cut_reason(reason))
                    }
                    (Outcome::Throttled, _) => Some("vendor answered 429".to_owned()),
                    (Outcome::AuthFailed, _) => Some("vendor refused our credentials".to_owned()),
                    (_, Disposition::RetryAfter { retry, .. }) => retry
                        .last_error
                        .as_deref()
                        .map(crate::store::journal::cut_reason),
                    _ => None,
                },
                next_attempt_at: match &disposition {
                    Disposition::RetryAfter { .. } => Some(
                        self.clock.now() + TimeDelta::from_std(retry_in_ms).unwrap_or_default(),
                    ),
                    _ => None,
                },
                vendor_id,
                attempts,
                calls,
                latency_ms: millis(started.elapsed()),
                at: self.clock.now(),
            };
            let event = &parsed.change.event;
            match IdempotencyKey::inbound(&event.source, &event.event_id) {
                Ok(key) => {
                    let logged = match commit.take() {
                        Some((lease, link)) => {
                            let log = LogRecord {
                                event: &key,
                                vendor: parsed.vendor,
                                entry: &entry,
                            };
                            match self.links.commit_logged(&lease, &link, &log).await {
                                Ok(settled) => settled,
                                Err(error) => {
                                    tracing::warn!(vendor = %parsed.vendor, %error, "applied but could not record it");
                                    false
                                }
                            }
                        }
                        None => false,
                    };
                    if !logged
                        && let Err(error) =
                            journal.record_delivery(&key, parsed.vendor, &entry).await
                    {
                        tracing::warn!(vendor = %parsed.vendor, %error, "could not record the delivery in the log");
                    }
                }
                Err(error) => tracing::warn!(%error, "no log key for the delivery"),
            }
        }
        if let Some((lease, link)) = commit {
            self.commit_applied(parsed.vendor, &lease, &link).await;
        }
        disposition
    }

    /// Turns what an attempt came to into the message's disposition: waits keep the
    /// failure count, failures add one, and both are bounded by time.
    fn dispose(&self, next: Next, before: &RetryState) -> (Disposition, Outcome) {
        let now = self.clock.now();
        let mut retry = before.clone();
        retry.retry_not_before = None;
        let (wait, outcome) = match next {
            Next::Done(outcome) => return (Disposition::Done, outcome),
            // Settled member by member in `handle_together`, never disposed as a whole.
            Next::PartlyApplied(_) => return (Disposition::Done, Outcome::Duplicate),
            // `decide` completes the change and delivers it again before disposing; asked
            // for once more, it is handled as a wait for an identifier.
            Next::Enrich => (
                self.policy.identity_retry,
                Outcome::Deferred {
                    wait: Wait::IdentityIncomplete,
                },
            ),
            Next::DeadLetter(reason) => {
                return (Disposition::DeadLetter(reason), Outcome::DeadLettered);
            }
            Next::NotYet(at) => {
                retry.retry_not_before = Some(at);
                let delay = to_std(at - now).min(MAX_DELAY);
                let outcome = Outcome::Deferred { wait: Wait::NotYet };
                return (Disposition::RetryAfter { delay, retry }, outcome);
            }
            // Jittered in whole seconds, then capped (the cap includes the jitter).
            Next::Wait(wait, outcome) => {
                (self.policy.capped(retry::jittered_seconds(wait)), outcome)
            }
            Next::Failed(error) => {
                retry.failures = retry.failures.saturating_add(1);
                let first = *retry.first_failed_at.get_or_insert(now);
                if !self.policy.within_horizon(first, now) {
                    return (
                        Disposition::DeadLetter(format!(
                            "gave up after {} failures in {}: {error}",
                            retry.failures,
                            span(now - first)
                        )),
                        Outcome::DeadLettered,
                    );
                }
                retry.last_error = Some(truncate(&error, MAX_LAST_ERROR_CHARS));
                (
                    self.policy
                        .backoff_within_horizon(retry.failures, first, now),
                    Outcome::Retried,
                )
            }
        };
        let since = *retry.waiting_since.get_or_insert(now);
        if now - since >= TimeDelta::from_std(self.policy.give_up_after).unwrap_or(TimeDelta::MAX) {
            return (
                Disposition::DeadLetter(format!(
                    "not delivered in {} ({}, {} failures{})",
                    span(now - since),
                    outcome.label(),
                    retry.failures,
                    retry
                        .last_error
                        .as_deref()
                        .map(|e| format!(", last: {e}"))
                        .unwrap_or_default()
                )),
                Outcome::DeadLettered,
            );
        }
        let delay = if wait > MAX_DELAY {
            retry.retry_not_before =
                Some(now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX));
            MAX_DELAY
        } else {
            wait
        };
        (Disposition::RetryAfter { delay, retry }, outcome)
    }

    async fn deliver(
        &self,
        message: &DeliveryMessage,
        ids: &Deliveries,
        deadline: DateTime<Utc>,
        learned: &mut Learned,
    ) -> Next {
        let vendor = message.vendor;
        let now = self.clock.now();
        // A vendor left out of the settings is not synced into, for every source (said
        // once at start-up by `assembly::build_worker`): its deliveries are skipped.
        if !self.targets.has(vendor) {
            return Next::Done(Outcome::Skipped {
                reason: VENDOR_NOT_CONFIGURED,
            });
        }
        if !self.mappings.vendors.has(vendor) {
            return Next::DeadLetter(format!(
                "the mappings have no [vendors.{vendor}] section (the message predates a mapping change)"
            ));
        }
        // Every call must be over this long before the deadline, to record and settle.
        let finish_by =
            deadline - TimeDelta::from_std(self.policy.deadline_margin).unwrap_or_default();
        if now >= finish_by {
            return Next::Wait(
                Duration::from_secs(1),
                Outcome::Deferred {
                    wait: Wait::Deadline,
                },
            );
        }
        // The vendor's next rate-limit slot already known to be too far for this
        // invocation (this instance saw the shared schedule that far ahead): handed on as
        // the gate would, but before the link is leased — a wait that writes nothing.
        if let Some(at) = self.limiters.get(&vendor).and_then(|limiter| {
            limiter.known_too_far(to_std(finish_by - now).min(setup::MAX_SLOT_WAIT))
        }) {
            return Next::Wait(
                to_std(at - now),
                Outcome::Deferred {
                    wait: Wait::RateLimitSlot,
                },
            );
        }
        let key = link_key(vendor, &message.change.contact);
        let delivery = ids.lease.clone();
        let lease_until = deadline.min(now + TimeDelta::from_std(MAX_LEASE).unwrap_or_default());
        let (lease, mut link) = match self.links.lease(&key, &delivery, lease_until).await {
            Ok(LeaseOutcome::Leased { lease, link }) => (lease, link),
            Ok(LeaseOutcome::AlreadyApplied) => return Next::Done(Outcome::Duplicate),
            Ok(LeaseOutcome::Busy { until }) => {
                return Next::Wait(
                    to_std(until - now).min(BUSY_RETRY),
                    Outcome::Deferred {
                        wait: Wait::LeaseBusy,
                    },
                );
            }
            Err(error) => {
                tracing::warn!(%vendor, %error, "link store unavailable");
                return Next::Failed(format!("link store unavailable: {error}"));
            }
        };
        // A coalesced attempt is leased with its group's id: a member applied before (alone,
        // or in another group) is recognised here, and the group delivered without it.
        let applied: Vec<DeliveryId> = ids
            .also
            .iter()
            .filter(|id| link.recent.contains(id))
            .cloned()
            .collect();
        if !applied.is_empty() {
            self.abandon(&lease).await;
            return Next::PartlyApplied(applied);
        }

        // Persons merged into this one by the identity step: their links at this vendor are
        // folded in (record id, field versions), so nothing applied is forgotten and a record
        // only the merged person had is adopted instead of created again.
        for merged in &message.merged {
            let merged_key = LinkKey::for_person(vendor, merged);
            match self.links.lease(&merged_key, &delivery, lease_until).await {
                Ok(LeaseOutcome::Leased {
                    lease: merged_lease,
                    link: merged_link,
                }) => {
                    link = fold_links(link, merged_link);
                    self.abandon(&merged_lease).await;
                }
                Ok(LeaseOutcome::AlreadyApplied) => {}
                Ok(LeaseOutcome::Busy { until }) => {
                    self.abandon(&lease).await;
                    return Next::Wait(
                        to_std(until - now).min(BUSY_RETRY),
                        Outcome::Deferred {
                            wait: Wait::LeaseBusy,
                        },
                    );
                }
                Err(error) => {
                    self.abandon(&lease).await;
                    tracing::warn!(%vendor, %error, "link store unavailable");
                    return Next::Failed(format!("link store unavailable: {error}"));
                }
            }
        }

        // A person new to this vendor whose change cannot make the record: read the source.
        if !message.enriched
            && link.vendor_id.is_none()
            && link.fields.is_empty()
            && self
                .enrichment
                .as_ref()
                .is_some_and(|e| e.wants(&message.change).is_some())
        {
            self.abandon(&lease).await;
            return Next::Enrich;
        }

        let mut state = VendorState {
            vendor_id: link.vendor_id.clone(),
            applied: link.fields.clone(),
        };
        let mut result = gate::calls_finish_by(
            finish_by,
            self.clock.clone(),
            self.targets
                .deliver(&self.mappings, vendor, &message.change, &state),
        )
        .await;
        // A stored id the vendor no longer knows (record deleted there): resolve afresh once.
        if state.vendor_id.is_some() && is_not_found(&result) {
            tracing::info!(%vendor, "stored vendor id not found; resolving the record again");
            state = VendorState::default();
            result = gate::calls_finish_by(
                finish_by,
                self.clock.clone(),
                self.targets
                    .deliver(&self.mappings, vendor, &message.change, &state),
            )
            .await;
        }
        let Some(result) = result else {
            self.abandon(&lease).await;
            return Next::DeadLetter(format!("the mappings have no [vendors.{vendor}] section"));
        };
        match result {
            Ok(delivered) => {
                // Committed on a skip too: a skip may confirm fields at this newer version.
                // From `state`, what the plan was made from (empty after a re-resolve).
                let mut next = Link {
                    vendor_id: delivered.vendor_id.clone().or(state.vendor_id),
                    fields: crate::plan::record_applied(&state.applied, &delivered.applied),
                    ..link
                };
                next.remember(delivery);
                for applied in &ids.also {
                    next.remember(applied.clone());
                }
                learned.vendor_id.clone_from(&next.vendor_id);
                // Committed when the attempt is concluded, with its log record.
                learned.commit = Some((lease, next));
                Next::Done(match delivered.skipped {
                    Some(reason) => Outcome::Skipped {
                        reason: reason.code(),
                    },
                    None => Outcome::Synced {
                        calls: delivered.calls,
                    },
                })
            }
            Err(DeliveryError::Plan(error)) if error.awaits_identity() => {
                self.abandon(&lease).await;
                let since = message.retry.waiting_since.unwrap_or(now);
                let waited = to_std(now - since);
                if waited < self.policy.identity_wait {
                    tracing::info!(%vendor, reason = Wait::IdentityIncomplete.code(), waited_s = waited.as_secs(), "the change has no identifier this vendor can create the person's record from; waiting for an event that brings one");
                    Next::Wait(
                        self.policy.identity_retry,
                        Outcome::Deferred {
                            wait: Wait::IdentityIncomplete,
                        },
                    )
                } else {
                    Next::DeadLetter(format!(
                        "{error}; waited {} for an event that brings one",
                        span(now - since)
                    ))
                }
            }
            Err(DeliveryError::Plan(error)) => {
                self.abandon(&lease).await;
                Next::DeadLetter(error.to_string())
            }
            Err(DeliveryError::Sync(error)) => {
                match &error.vendor_id {
                    // Keep an id learned before the failure (a created profile) so the retry
                    // patches it instead of looking it up again; the delivery stays unapplied.
                    Some(id) => {
                        learned.vendor_id = Some(id.clone());
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
                self.after_failure(vendor, &error.error).await
            }
        }
    }

    async fn after_failure(&self, vendor: Vendor, error: &VendorError) -> Next {
        match error.class() {
            ErrorClass::RateLimited => {
                let wait = error.retry_after().unwrap_or(Duration::from_secs(1));
                if let VendorError::RateLimited { op, .. } = error {
                    match *op {
                        gate::PERMIT_OP => {
                            return Next::Wait(
                                wait,
                                Outcome::Deferred {
                                    wait: Wait::RateLimitSlot,
                                },
                            );
                        }
                        gate::DEADLINE_OP => {
                            return Next::Wait(
                                Duration::from_secs(1),
                                Outcome::Deferred {
                                    wait: Wait::Deadline,
                                },
                            );
                        }
                        gate::LIMITER_DOWN_OP => {
                            return Next::Failed(format!("{vendor} rate limiter unavailable"));
                        }
                        _ => {}
                    }
                }
                let wait = self.policy.capped(wait);
                tracing::warn!(%vendor, retry_after_ms = millis(wait), "vendor answered 429; holding every instance back");
                self.pause(vendor, wait).await;
                Next::Wait(wait, Outcome::Throttled)
            }
            ErrorClass::Transient => {
                tracing::warn!(%vendor, %error, "transient failure; retrying with back-off");
                Next::Failed(error.to_string())
            }
            ErrorClass::Permanent => Next::DeadLetter(error.to_string()),
            ErrorClass::Auth => {
                let pause = self.policy.capped(self.policy.auth_pause);
                tracing::error!(%vendor, %error, pause_s = pause.as_secs(), "vendor refused our credentials; pausing deliveries to it on every instance");
                self.pause(vendor, pause).await;
                Next::Wait(pause, Outcome::AuthFailed)
            }
        }
    }

    /// No call to `vendor` from any instance for `wait`: a penalty on its shared schedule.
    async fn pause(&self, vendor: Vendor, wait: Duration) {
        match self.limiters.get(&vendor) {
            Some(limiter) => {
                if let Err(error) = limiter.penalise(wait).await {
                    tracing::warn!(%vendor, %error, "could not penalise the shared schedule");
                }
            }
            None => {
                tracing::warn!(%vendor, "no shared schedule to hold back; only this delivery waits");
            }
        }
    }

    /// Commits an applied link on its own (no log record rides on it).
    async fn commit_applied(&self, vendor: Vendor, lease: &LinkLease, link: &Link) {
        if let Err(error) = self.links.commit(lease, link).await {
            // The vendor has the change; only our record of it was lost (the lease
            // expired during a slow call). A later change re-plans from the old record.
            tracing::warn!(%vendor, %error, "applied but could not record it");
        }
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Worker {
    /// Completes `message`'s change from its source and resolves its person again (the
    /// identifiers read may be a known person's: merged, and its links folded in on
    /// delivery). `None` when it is done and the change is to be delivered; otherwise what
    /// to do with the message instead.
    async fn enrich(&self, message: &mut DeliveryMessage, deadline: DateTime<Utc>) -> Option<Next> {
        let (Some(enrichment), Some(source)) = (
            self.enrichment.clone(),
            self.mappings.source(&message.change.event.source),
        ) else {
            message.enriched = true;
            return None;
        };
        let Some(read) = enrichment.wants(&message.change).cloned() else {
            message.enriched = true;
            return None;
        };
        let vendor = message.vendor;
        let reader = read.reader.name();
        // The id the source knows the contact by: its key without the namespace.
        let key = message.change.contact.key.as_str().to_owned();
        let id = key.split_once(':').map_or(key.as_str(), |(_, id)| id);
        let read_key = format!("{}#{id}", message.change.event.source);
        // The deliveries of this change to the other vendors wait for this read, then reuse it.
        let _turn = enrichment.reads.turn(&read_key).await;
        let answer = match enrichment.reads.get(&read_key) {
            Some(answer) => answer,
            None => match self.read_source(&read, id, vendor, deadline).await {
                Ok(answer) => {
                    enrichment.reads.put(&read_key, answer.clone());
                    answer
                }
                Err(next) => return Some(next),
            },
        };
        match answer {
            Some(payload) => {
                if let Some(found) = crate::enrich::read_contact(source, &message.change, &payload)
                {
                    crate::enrich::complete(source, &mut message.change.contact, found);
                }
            }
            None => {
                tracing::info!(%vendor, reader, "the source no longer has the contact; not synced");
                return Some(Next::Done(Outcome::Skipped {
                    reason: SOURCE_RECORD_GONE,
                }));
            }
        }
        match enrichment
            .identity
            .resolve_contact(&message.change.contact)
            .await
        {
            Ok(resolved) => {
                let before = message
                    .change
                    .contact
                    .person
                    .replace(resolved.person.clone());
                let earlier = before.filter(|p| *p != resolved.person);
                for person in resolved.merged.into_iter().chain(earlier) {
                    if person != resolved.person && !message.merged.contains(&person) {
                        message.merged.push(person);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%vendor, %error, "identity store unavailable");
                return Some(Next::Failed(format!("identity store unavailable: {error}")));
            }
        }
        tracing::info!(%vendor, reader, email = message.change.contact.email.is_some(), phone = message.change.contact.phone.is_some(), "change completed from its source");
        message.enriched = true;
        None
    }

    /// One read of the contact `id` from its source, behind a slot of the source's shared
    /// limiter: the answer (`None`: gone), or what to do with the message instead.
    async fn read_source(
        &self,
        read: &crate::enrich::SourceRead,
        id: &str,
        vendor: Vendor,
        deadline: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>, Next> {
        let reader = read.reader.name();
        let now = self.clock.now();
        let finish_by =
            deadline - TimeDelta::from_std(self.policy.deadline_margin).unwrap_or_default();
        let allowed = to_std(finish_by - now).min(setup::MAX_SLOT_WAIT);
        match read.limiter.reserve(allowed).await {
            Ok(Reservation::At(at)) => {
                let wait = to_std(at - self.clock.now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            Ok(Reservation::TooFar(at)) => {
                return Err(Next::Wait(
                    to_std(at - now),
                    Outcome::Deferred {
                        wait: Wait::RateLimitSlot,
                    },
                ));
            }
            Err(error) => {
                tracing::warn!(%vendor, reader, %error, "rate limiter unavailable");
                return Err(Next::Failed(format!(
                    "{reader} limiter unavailable: {error}"
                )));
            }
        }
        // No read starts that could not finish before the deadline (as for vendor calls).
        let read_by =
            self.clock.now() + TimeDelta::from_std(read.reader.timeout()).unwrap_or_default();
        if read_by > finish_by {
            return Err(Next::Wait(
                Duration::from_secs(1),
                Outcome::Deferred {
                    wait: Wait::Deadline,
                },
            ));
        }
        match read.reader.read(id).await {
            Ok(answer) => Ok(answer),
            Err(ReadError::RateLimited { retry_after }) => {
                let wait = retry_after
                    .unwrap_or(Duration::from_secs(10))
                    .min(self.policy.max_wait);
                if let Err(error) = read.limiter.penalise(wait).await {
                    tracing::warn!(reader, %error, "could not push the shared schedule back");
                }
                Err(Next::Wait(wait, Outcome::Throttled))
            }
            Err(error @ (ReadError::Auth(_) | ReadError::Permanent(_))) => {
                tracing::error!(%vendor, reader, %error, "reading the contact from its source failed");
                Err(Next::Failed(format!("{reader}: {error}")))
            }
            Err(ReadError::Transient(error)) => {
                tracing::warn!(%vendor, reader, %error, "reading the contact from its source failed");
                Err(Next::Failed(format!("{reader}: {error}")))
            }
        }
    }
}

/// The skip reason of a delivery whose contact its source no longer has (read to complete
/// the change, the source answered 404).
pub const SOURCE_RECORD_GONE: &str = "source_record_gone";

/// A time span for a reason text: `42 s`, `17 min`, `6 h 3 min`.
fn span(delta: TimeDelta) -> String {
    let secs = delta.num_seconds().max(0);
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The link of `contact` at `vendor`: its person's (set by ingest's identity step), or for a
/// message written before persons existed, the hash of its contact key.
fn link_key(vendor: Vendor, contact: &crate::model::Contact) -> LinkKey {
    match &contact.person {
        Some(person) => LinkKey::for_person(vendor, person),
        None => LinkKey::new(vendor, &ContactKeyHash::of(contact.key.as_str())),
    }
}

/// `survivor`'s link with what `merged`'s knows: the survivor's record id, else the merged
/// person's; per field the newer applied version (a tie keeps the survivor's); the recent
/// deliveries of both.
fn fold_links(survivor: Link, merged: Link) -> Link {
    let mut out = survivor;
    if out.vendor_id.is_none() {
        out.vendor_id = merged.vendor_id;
    }
    for (field, applied) in merged.fields {
        match out.fields.get(&field) {
            Some(kept) if kept.version >= applied.version => {}
            _ => {
                out.fields.insert(field, applied);
            }
        }
    }
    let mut recent = merged.recent;
    recent.extend(std::mem::take(&mut out.recent));
    for delivery in recent {
        out.remember(delivery);
    }
    out
}

#[cfg(test)]
mod tests {
    //! Each kind of wait re-sends the message with the right delay and its failures
    //! unchanged; transient failures count in the body and dead-letter only past the
    //! horizon. Time is a manual clock; the queue records what the worker does with it.

    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::model::{ChangeKind, Contact, ContactChange, ContactKey, SyncEvent};
    use crate::plan::ChannelPlan;
    use crate::queue::{QueueError, ReceiptHandle};
    use crate::store::memory::MemoryStore;
    use crate::store::{GcraParams, LimiterKey, ManualClock, Reservation};
    use crate::vendors::rate_limit::RateLimitInfo;
    use crate::vendors::{CallGate, SyncError, SyncOutcome, TransientCause, VendorSync};

    const START_MS: i64 = 1_800_000_000_000;

    /// A queue that records what is done to it.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<OutboundMessage>>,
        deleted: Mutex<Vec<String>>,
        visibility: Mutex<Vec<(String, Duration)>>,
        refuse_sends: AtomicBool,
    }

    #[async_trait]
    impl Queue for Recorder {
        async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<(), QueueError> {
            if self.refuse_sends.load(Ordering::SeqCst) {
                return Err(QueueError::Service {
                    operation: "SendMessageBatch",
                    message: "refused by the test".into(),
                });
            }
            self.sent.lock().unwrap().extend_from_slice(messages);
            Ok(())
        }
        async fn receive(&self, _: u16, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
            Ok(Vec::new())
        }
        async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
            self.deleted.lock().unwrap().push(receipt.0.clone());
            Ok(())
        }
        async fn change_visibility(
            &self,
            receipt: &ReceiptHandle,
            delay: Duration,
        ) -> Result<(), QueueError> {
            self.visibility
                .lock()
                .unwrap()
                .push((receipt.0.clone(), delay));
            Ok(())
        }
    }

    impl Recorder {
        /// The only message sent since the last call.
        fn take_one(&self) -> OutboundMessage {
            let mut sent = self.sent.lock().unwrap();
            assert_eq!(sent.len(), 1, "one message sent: {sent:?}");
            sent.remove(0)
        }
    }

    /// A Channel.io adapter that, like the real client, passes its gate before each call,
    /// then answers from a script (success once the script is used up).
    struct Channel {
        gate: Arc<dyn CallGate>,
        script: Mutex<VecDeque<VendorError>>,
        calls: Mutex<u32>,
        plans: Mutex<Vec<ChannelPlan>>,
    }

    #[async_trait]
    impl VendorSync for Channel {
        type Plan = ChannelPlan;
        fn vendor(&self) -> Vendor {
            Vendor::Channelio
        }
        async fn sync(&self, plan: &ChannelPlan) -> Result<SyncOutcome, SyncError> {
            self.plans.lock().unwrap().push(plan.clone());
            let failed = |error: VendorError, calls| SyncError {
                error: Box::new(error),
                calls,
                vendor_id: None,
                rate_limit: None,
            };
            self.gate
                .acquire(Vendor::Channelio)
                .await
                .map_err(|e| failed(e, 0))?;
            *self.calls.lock().unwrap() += 1;
            match self.script.lock().unwrap().pop_front() {
                Some(error) => Err(failed(error, 1)),
                None => Ok(SyncOutcome {
                    vendor_id: Some("u-1".into()),
                    calls: 1,
                    rate_limit: None,
                }),
            }
        }
    }

    /// One instance of the worker, over a store (links and limiters) instances share.
    struct Instance {
        worker: Worker,
        queue: Arc<Recorder>,
        dead_letters: Arc<Recorder>,
        channel: Arc<Channel>,
        limiter: Arc<dyn RateLimiter>,
    }

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(
            DateTime::from_timestamp_millis(START_MS).unwrap(),
        ))
    }

    fn instance(
        store: &MemoryStore,
        clock: &Arc<ManualClock>,
        schedule: GcraParams,
        policy: RetryPolicy,
    ) -> Instance {
        let clock: Arc<dyn Clock> = clock.clone();
        let limiter: Arc<dyn RateLimiter> = Arc::new(store.limiter(
            &LimiterKey::new(Vendor::Channelio, "test").unwrap(),
            schedule,
        ));
        let limiters = HashMap::from([(Vendor::Channelio, limiter.clone())]);
        // As `setup::build_targets` wires a client with a 10 s timeout.
        let gate: Arc<dyn CallGate> = Arc::new(DeadlineGate::new(
            Arc::new(LimiterGate::new(
                limiters.clone(),
                clock.clone(),
                setup::MAX_SLOT_WAIT,
            )),
            Duration::from_secs(10),
        ));
        let channel = Arc::new(Channel {
            gate,
            script: Mutex::default(),
            calls: Mutex::default(),
            plans: Mutex::default(),
        });
        let queue = Arc::new(Recorder::default());
        let dead_letters = Arc::new(Recorder::default());
        let worker = Worker::new(
            Arc::new(Mappings::builtin().unwrap()),
            Arc::new(store.clone()),
            Targets::default().with::<relay_core::vendors::channelio::Channelio>(channel.clone()),
            limiters,
            queue.clone(),
            dead_letters.clone(),
            clock,
            policy,
            Arc::new(Metrics::new(MetricsOutput::Memory)),
        );
        Instance {
            worker,
            queue,
            dead_letters,
            channel,
            limiter,
        }
    }

    /// A fast schedule, for tests where the limiter is not what is waited for.
    const FAST: GcraParams = GcraParams::new(Duration::from_millis(1), 100);

    fn delivery(contact: &str, event: &str, retry: RetryState) -> DeliveryMessage {
        let mut c = Contact::new(ContactKey::external("standard", contact).unwrap());
        c.full_name = Some("Ann Example".into());
        // Ingest's identity step gives every change its person; one per contact here.
        c.person = Some(person_of(contact));
        let mut m = DeliveryMessage::new(
            Vendor::Channelio,
            ContactChange {
                event: SyncEvent {
                    source: "standard".into(),
                    event_id: event.into(),
                    occurred_at: DateTime::from_timestamp_millis(START_MS - 60_000).unwrap(),
                    kind: ChangeKind::Updated,
                },
                contact: c,
                versions: Default::default(),
            },
        );
        m.retry = retry;
        m
    }

    /// The person `delivery(contact, …)` carries.
    fn person_of(contact: &str) -> relay_core::model::PersonId {
        let mut person = [0u8; 16];
        for (slot, byte) in person.iter_mut().zip(contact.bytes()) {
            *slot = byte;
        }
        relay_core::model::PersonId::from_uuid_bytes(person)
    }

    /// The record (person, Channel.io) of `delivery(contact, …)`, as the worker leases it.
    fn link_of(contact: &str) -> LinkKey {
        LinkKey::for_person(Vendor::Channelio, &person_of(contact))
    }

    fn received(body: String, n: u32) -> ReceivedMessage {
        ReceivedMessage {
            message_id: format!("m{n}"),
            receipt: ReceiptHandle(format!("r{n}")),
            body,
            receive_count: 1,
            attributes: Default::default(),
        }
    }

    fn state_of(sent: &OutboundMessage) -> RetryState {
        DeliveryMessage::from_body(&sent.body).unwrap().retry
    }

    fn in_a_minute(clock: &ManualClock) -> DateTime<Utc> {
        clock.now() + TimeDelta::seconds(60)
    }

    fn secs(d: Option<Duration>) -> u64 {
        d.unwrap().as_secs()
    }

    fn earlier_failures(clock: &ManualClock) -> RetryState {
        RetryState {
            failures: 2,
            attempts: 2,
            first_failed_at: Some(clock.now() - TimeDelta::minutes(3)),
            last_error: Some("channelio upsert_user: HTTP 503 (transient)".into()),
            waiting_since: Some(clock.now() - TimeDelta::minutes(3)),
            retry_not_before: None,
        }
    }

    /// An instance over a fresh store, with coalescing `on` or off.
    fn coalescing_instance(on: bool) -> (Arc<ManualClock>, MemoryStore, Instance) {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let mut one = instance(&store, &clock, FAST, RetryPolicy::default());
        one.worker = one.worker.coalescing(on);
        (clock, store, one)
    }

    /// Three changes of one person (Ann) and one of another (Bo), in one batch.
    fn mixed_batch() -> Vec<ReceivedMessage> {
        let at = |s: i64| DateTime::from_timestamp_millis(START_MS - s * 1000).unwrap();
        let mut name = delivery("ann", "e1", RetryState::default());
        name.change.event.occurred_at = at(30);
        name.change.event.kind = ChangeKind::Signup;
        let mut email = delivery("ann", "e2", RetryState::default());
        email.change.contact.full_name = None;
        email.change.contact.email =
            Some(crate::model::Email::parse("Ann.Example+CRM@Example.org").unwrap());
        email.change.event.occurred_at = at(20);
        let mut plan = delivery("ann", "e3", RetryState::default());
        plan.change.contact.full_name = None;
        plan.change
            .contact
            .custom
            .insert("plan".into(), serde_json::json!("pro"));
        plan.change.event.occurred_at = at(10);
        let bo = delivery("bo", "e4", RetryState::default());
        [plan, bo, name, email]
            .into_iter()
            .enumerate()
            .map(|(i, m)| received(m.to_body(), u32::try_from(i).unwrap()))
            .collect()
    }

    /// Handles `batch` (of [`mixed_batch`]) and checks that every message of it was done:
    /// none left in the queue, each deleted.
    async fn every_message_done(one: &Instance, batch: &[ReceivedMessage], clock: &ManualClock) {
        let failed = one
            .worker
            .handle_batch(batch, in_a_minute(clock), true)
            .await;
        assert!(failed.is_empty(), "{failed:?}");
        let mut deleted = one.queue.deleted.lock().unwrap().clone();
        deleted.sort();
        assert_eq!(deleted, ["r0", "r1", "r2", "r3"], "every message done");
    }

    #[tokio::test]
    async fn changes_of_one_person_in_a_batch_are_one_call_and_each_message_is_done() {
        let (clock, store, one) = coalescing_instance(true);
        let batch = mixed_batch();
        every_message_done(&one, &batch, &clock).await;
        assert_eq!(
            *one.channel.calls.lock().unwrap(),
            2,
            "one call for Ann, one for Bo"
        );
        let plans = one.channel.plans.lock().unwrap().clone();
        let ann = plans
            .iter()
            .find_map(|p| match p {
                ChannelPlan::Upsert { member_id, body }
                    if *member_id == person_of("ann").as_str() =>
                {
                    Some(body.clone())
                }
                _ => None,
            })
            .expect("Ann upserted");
        let profile = ann.profile.unwrap();
        assert_eq!(profile["name"], "Ann Example");
        assert_eq!(profile["email"], "ann.example+crm@example.org");
        assert_eq!(profile["plan"], "pro");
        assert!(one.queue.sent.lock().unwrap().is_empty(), "none waits");

        // Each member's own redelivery is recognised: no call.
        let again = one.worker.process(&batch[2], in_a_minute(&clock)).await;
        assert_eq!(again, Disposition::Done);
        assert_eq!(*one.channel.calls.lock().unwrap(), 2);
        // Each field at the version of the change that set it: e1's name at e1's time.
        let LeaseOutcome::Leased { link, .. } = store
            .lease(
                &link_of("ann"),
                &DeliveryId::of("peek#1"),
                in_a_minute(&clock),
            )
            .await
            .unwrap()
        else {
            panic!("the link is free")
        };
        let name = &link.fields["profile.name"];
        assert_eq!(name.version, START_MS - 30_000);
        assert_eq!(link.fields["profile.plan"].version, START_MS - 10_000);
    }

    #[tokio::test]
    async fn a_member_applied_before_is_a_duplicate_and_the_rest_are_one_call() {
        let (clock, _store, one) = coalescing_instance(true);
        let batch = mixed_batch();
        // Ann's e1 (batch[2]) delivered alone first, then all four again together (the
        // queue's redelivery of e1 with Ann's other two and Bo's).
        assert_eq!(
            one.worker.process(&batch[2], in_a_minute(&clock)).await,
            Disposition::Done
        );
        assert_eq!(*one.channel.calls.lock().unwrap(), 1);
        every_message_done(&one, &batch, &clock).await;
        assert_eq!(
            *one.channel.calls.lock().unwrap(),
            3,
            "one more call for Ann's e2 and e3 together, one for Bo"
        );
        let counts = one.worker.metrics.snapshot();
        let count = |c: Counter| counts.get(&(Vendor::Channelio, c)).copied().unwrap_or(0);
        assert_eq!(
            (count(Counter::Synced), count(Counter::Duplicate)),
            (4, 1),
            "e1 synced once (alone) and recognised once; e2, e3 and e4 synced once"
        );
    }

    #[tokio::test]
    async fn without_coalescing_each_change_of_one_person_is_its_own_delivery() {
        let (clock, _store, one) = coalescing_instance(false);
        one.worker
            .handle_batch(&mixed_batch(), in_a_minute(&clock), true)
            .await;
        // Each of Ann's three is a call of its own, or waits for the lease of another.
        let calls = *one.channel.calls.lock().unwrap();
        let waiting = one.queue.sent.lock().unwrap().len();
        assert_eq!(
            (calls + u32::try_from(waiting).unwrap(), calls > 2),
            (4, true)
        );
    }

    #[tokio::test]
    async fn a_failure_of_a_coalesced_delivery_counts_for_each_message_in_its_own_body() {
        let (clock, _store, one) = coalescing_instance(true);
        one.channel
            .script
            .lock()
            .unwrap()
            .push_back(VendorError::Transient {
                vendor: Vendor::Channelio,
                op: "channelio.upsert_user",
                cause: TransientCause::Status(503),
                message: None,
                trace_id: None,
                rate_limit: None,
            });
        let mut batch = mixed_batch();
        batch.remove(1); // Ann's three only.
        // One of them had failed before.
        let mut earlier = DeliveryMessage::from_body(&batch[0].body).unwrap();
        earlier.retry = earlier_failures(&clock);
        batch[0].body = earlier.to_body();
        one.worker
            .handle_batch(&batch, in_a_minute(&clock), true)
            .await;
        assert_eq!(
            *one.channel.calls.lock().unwrap(),
            1,
            "one attempt for the three"
        );
        let sent = one.queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 3, "each handed on");
        let mut by_event: Vec<(String, u32)> = sent
            .iter()
            .map(|m| {
                let m = DeliveryMessage::from_body(&m.body).unwrap();
                (m.change.event.event_id.clone(), m.retry.failures)
            })
            .collect();
        by_event.sort();
        let before = earlier.retry.failures;
        assert_eq!(
            by_event,
            [
                ("e1".into(), 1),
                ("e2".into(), 1),
                ("e3".into(), before + 1)
            ]
        );
        // Each goes on with its own change, not the coalesced one.
        for m in &sent {
            let m = DeliveryMessage::from_body(&m.body).unwrap();
            assert!(m.change.versions.is_empty());
        }
    }

    #[tokio::test]
    async fn a_busy_record_is_waited_for_by_sending_the_message_again() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let i = instance(&store, &clock, FAST, RetryPolicy::default());
        // Another delivery holds the record for 1.5 s more.
        let key = link_of("u1");
        store
            .lease(
                &key,
                &DeliveryId::of("other#1"),
                clock.now() + TimeDelta::milliseconds(1_500),
            )
            .await
            .unwrap();
        let before = earlier_failures(&clock);
        let m = received(delivery("u1", "e1", before.clone()).to_body(), 1);
        // As in Lambda: the original is not deleted here; it is reported as done.
        let left = i
            .worker
            .handle_batch(&[m], in_a_minute(&clock), false)
            .await;
        assert!(left.is_empty(), "reported as done: {left:?}");
        let again = i.queue.take_one();
        assert_eq!(
            secs(again.delay),
            2,
            "the rest of the lease, in whole seconds"
        );
        assert_eq!(state_of(&again), before, "no failure counted");
        assert!(i.queue.deleted.lock().unwrap().is_empty());
        assert!(i.queue.visibility.lock().unwrap().is_empty());
        assert_eq!(*i.channel.calls.lock().unwrap(), 0);
        assert_eq!(i.worker.metrics.total(Counter::Deferred), 1);

        // Outside Lambda the worker deletes the original itself, after sending.
        let m = received(delivery("u1", "e1", before.clone()).to_body(), 2);
        assert_eq!(
            i.worker.handle(&m, in_a_minute(&clock), true).await,
            Settled::Removed
        );
        assert_eq!(state_of(&i.queue.take_one()), before);
        assert_eq!(*i.queue.deleted.lock().unwrap(), ["r2"]);
    }

    #[tokio::test]
    async fn a_far_rate_limit_slot_is_waited_for_without_a_failure() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        // One call per 20 s, no burst: the second delivery's slot is 20 s away, further
        // than a call may wait for it.
        let schedule = GcraParams::new(Duration::from_secs(20), 1);
        let i = instance(&store, &clock, schedule, RetryPolicy::default());
        let first = received(delivery("u1", "e1", RetryState::default()).to_body(), 1);
        assert_eq!(
            i.worker.process(&first, in_a_minute(&clock)).await,
            Disposition::Done
        );
        let before = earlier_failures(&clock);
        let second = received(delivery("u2", "e2", before.clone()).to_body(), 2);
        assert_eq!(
            i.worker.handle(&second, in_a_minute(&clock), true).await,
            Settled::Removed
        );
        let again = i.queue.take_one();
        assert!((20..=24).contains(&secs(again.delay)), "{:?}", again.delay);
        assert_eq!(state_of(&again), before);
        assert_eq!(*i.channel.calls.lock().unwrap(), 1, "only the first called");
        assert_eq!(i.worker.metrics.total(Counter::Deferred), 1);
    }

    #[tokio::test]
    async fn a_429_holds_every_instance_back_and_waits_for_retry_after_capped() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let i = instance(&store, &clock, FAST, RetryPolicy::default());
        let throttled = |retry_after| VendorError::RateLimited {
            vendor: Vendor::Channelio,
            op: "channelio.upsert_user",
            retry_after,
            concurrency_limit: false,
            trace_id: None,
            rate_limit: RateLimitInfo::default(),
        };
        i.channel
            .script
            .lock()
            .unwrap()
            .push_back(throttled(Duration::from_secs(30)));
        let before = earlier_failures(&clock);
        let m = received(delivery("u1", "e1", before.clone()).to_body(), 1);
        assert_eq!(
            i.worker.handle(&m, in_a_minute(&clock), true).await,
            Settled::Removed
        );
        let again = i.queue.take_one();
        assert!((30..=36).contains(&secs(again.delay)), "{:?}", again.delay);
        // An attempt (the vendor was called), but no failure.
        let expected = RetryState {
            attempts: before.attempts + 1,
            ..before.clone()
        };
        assert_eq!(state_of(&again), expected, "a 429 is no failure");
        assert_eq!(i.worker.metrics.total(Counter::Throttled), 1);
        // The shared schedule: no permit for anyone before Retry-After.
        let Reservation::TooFar(at) = i.limiter.reserve(Duration::from_secs(29)).await.unwrap()
        else {
            panic!("the schedule was penalised")
        };
        assert_eq!(at, clock.now() + TimeDelta::seconds(30));

        // Retry-After of two hours: capped at 15 minutes, the penalty too.
        clock.advance(TimeDelta::seconds(31));
        i.channel
            .script
            .lock()
            .unwrap()
            .push_back(throttled(Duration::from_secs(7_200)));
        let m = received(delivery("u1", "e1", before.clone()).to_body(), 2);
        i.worker.handle(&m, in_a_minute(&clock), true).await;
        let again = i.queue.take_one();
        assert_eq!(secs(again.delay), 900);
        assert_eq!(state_of(&again), expected);
        let Reservation::TooFar(at) = i.limiter.reserve(Duration::ZERO).await.unwrap() else {
            panic!("penalised")
        };
        assert_eq!(at, clock.now() + TimeDelta::seconds(900));
    }

    #[tokio::test]
    async fn refused_credentials_pause_the_vendor_on_every_instance() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let a = instance(&store, &clock, FAST, RetryPolicy::default());
        let b = instance(&store, &clock, FAST, RetryPolicy::default());
        a.channel
            .script
            .lock()
            .unwrap()
            .push_back(VendorError::Auth {
                vendor: Vendor::Channelio,
                op: "channelio.upsert_user",
                status: 401,
                message: None,
                trace_id: None,
                rate_limit: RateLimitInfo::default(),
            });
        let before = earlier_failures(&clock);
        let m = received(delivery("u1", "e1", before.clone()).to_body(), 1);
        assert_eq!(
            a.worker.handle(&m, in_a_minute(&clock), true).await,
            Settled::Removed
        );
        let again = a.queue.take_one();
        assert!(
            (300..=360).contains(&secs(again.delay)),
            "{:?}",
            again.delay
        );
        assert_eq!(
            state_of(&again),
            RetryState {
                attempts: before.attempts + 1,
                ..before.clone()
            },
            "not the message's fault: no failure (one attempt more)"
        );
        assert_eq!(a.worker.metrics.total(Counter::AuthFailed), 1);

        // Another instance, a minute later: it makes no call and waits out the pause.
        clock.advance(TimeDelta::seconds(60));
        let m = received(delivery("u2", "e2", RetryState::default()).to_body(), 2);
        assert_eq!(
            b.worker.handle(&m, in_a_minute(&clock), true).await,
            Settled::Removed
        );
        let again = b.queue.take_one();
        assert!(
            (240..=288).contains(&secs(again.delay)),
            "{:?}",
            again.delay
        );
        assert_eq!(state_of(&again).failures, 0);
        assert_eq!(
            *b.channel.calls.lock().unwrap(),
            0,
            "no call during the pause"
        );
        assert_eq!(b.worker.metrics.total(Counter::Deferred), 1);
    }

    #[tokio::test]
    async fn no_call_starts_that_could_not_finish_before_the_deadline() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let i = instance(&store, &clock, FAST, RetryPolicy::default());
        let before = earlier_failures(&clock);
        // 8 s left: less than the client's 10 s timeout plus the 2 s margin.
        let m = received(delivery("u1", "e1", before.clone()).to_body(), 1);
        let deadline = clock.now() + TimeDelta::seconds(8);
        assert_eq!(i.worker.handle(&m, deadline, true).await, Settled::Removed);
        let again = i.queue.take_one();
        assert_eq!(secs(again.delay), 1);
        assert_eq!(
            state_of(&again),
            before,
            "running out of time is no failure"
        );
        assert_eq!(*i.channel.calls.lock().unwrap(), 0, "no call started");
        // 1 s left: handed on before even taking the lease.
        let m = received(delivery("u1", "e1", before.clone()).to_body(), 2);
        i.worker
            .handle(&m, clock.now() + TimeDelta::seconds(1), true)
            .await;
        assert_eq!(state_of(&i.queue.take_one()), before);
        // The lease was released: with time enough, the delivery goes through at once.
        let m = received(delivery("u1", "e1", before).to_body(), 3);
        assert_eq!(
            i.worker
                .process(&m, clock.now() + TimeDelta::seconds(13))
                .await,
            Disposition::Done
        );
        assert_eq!(*i.channel.calls.lock().unwrap(), 1);
        assert_eq!(i.worker.metrics.total(Counter::Deferred), 2);
    }

    #[tokio::test]
    async fn transient_failures_count_in_the_body_and_dead_letter_only_past_the_horizon() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let policy = RetryPolicy {
            horizon: Duration::from_secs(3_600),
            ..RetryPolicy::default()
        };
        let i = instance(&store, &clock, FAST, policy);
        let started = clock.now();
        let unavailable = || VendorError::Transient {
            vendor: Vendor::Channelio,
            op: "channelio.upsert_user",
            cause: TransientCause::Status(503),
            message: None,
            trace_id: None,
            rate_limit: None,
        };
        let mut body = delivery("u1", "e1", RetryState::default()).to_body();
        for n in 1..=6 {
            i.channel.script.lock().unwrap().push_back(unavailable());
            let m = received(body, n);
            assert_eq!(
                i.worker.handle(&m, in_a_minute(&clock), true).await,
                Settled::Removed
            );
            let again = i.queue.take_one();
            let state = state_of(&again);
            assert_eq!(state.failures, n, "one failure more");
            assert_eq!(state.first_failed_at, Some(started));
            assert_eq!(
                state.last_error.as_deref(),
                Some("channelio channelio.upsert_user: HTTP 503 (transient)")
            );
            let ceiling = (policy.base * 2u32.pow(n - 1)).max(policy.floor);
            assert!(again.delay.unwrap() <= ceiling, "{n}: {:?}", again.delay);
            body = again.body;
            clock.advance(TimeDelta::minutes(10));
        }
        assert_eq!(i.worker.metrics.total(Counter::Retried), 6);
        assert!(i.dead_letters.sent.lock().unwrap().is_empty());

        // An hour after the first failure: the next one dead-letters, with the reason.
        i.channel.script.lock().unwrap().push_back(unavailable());
        let m = received(body, 7);
        assert_eq!(
            i.worker.handle(&m, in_a_minute(&clock), true).await,
            Settled::Removed
        );
        assert!(i.queue.sent.lock().unwrap().is_empty());
        let dead = i.dead_letters.take_one();
        assert_eq!(
            dead.attributes["reason"],
            "gave up after 7 failures in 60 min: channelio channelio.upsert_user: HTTP 503 (transient)"
        );
        assert_eq!(dead.attributes["earlier_failures"], "6");
        assert_eq!(
            state_of(&dead),
            RetryState::default(),
            "a replay starts afresh"
        );
        assert_eq!(*i.queue.deleted.lock().unwrap().last().unwrap(), "r7");
    }

    #[tokio::test]
    async fn a_change_without_a_person_waits_for_one_then_dead_letters_with_the_reason() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let policy = RetryPolicy::default();
        let i = instance(&store, &clock, FAST, policy);
        // Channel.io's memberId is the person id: a message enqueued before ingest had an
        // identity step has none, and no record to patch.
        let mut message = delivery("u1", "e1", RetryState::default());
        message.change.contact.person = None;
        let mut body = message.to_body();
        let started = clock.now();
        let mut waits = 0;
        while clock.now() - started < TimeDelta::from_std(policy.identity_wait).unwrap() {
            let m = received(body, waits + 1);
            assert_eq!(
                i.worker.handle(&m, in_a_minute(&clock), true).await,
                Settled::Removed
            );
            let again = i.queue.take_one();
            // A minute, plus up to 20% jitter so a burst of such changes spreads out.
            let delay = secs(again.delay);
            assert!((60..=72).contains(&delay), "{delay} s");
            let state = state_of(&again);
            assert_eq!((state.failures, state.waiting_since), (0, Some(started)));
            body = again.body;
            waits += 1;
            clock.advance(TimeDelta::seconds(i64::try_from(delay).unwrap()));
        }
        assert!(
            (50..=60).contains(&waits),
            "an hour of one-minute waits: {waits}"
        );
        assert_eq!(
            i.worker.metrics.total(Counter::Deferred),
            u64::from(waits),
            "each wait is visible in the metrics"
        );
        assert_eq!(*i.channel.calls.lock().unwrap(), 0, "no vendor call");
        assert!(i.dead_letters.sent.lock().unwrap().is_empty());

        let m = received(body, 99);
        assert_eq!(
            i.worker.handle(&m, in_a_minute(&clock), true).await,
            Settled::Removed
        );
        assert!(i.queue.sent.lock().unwrap().is_empty());
        let dead = i.dead_letters.take_one();
        let reason = &dead.attributes["reason"];
        let waited: u64 = reason
            .split("; waited ")
            .nth(1)
            .and_then(|rest| rest.strip_suffix(" min for an event that brings one"))
            .and_then(|minutes| minutes.parse().ok())
            .unwrap_or_else(|| panic!("the reason says how long it waited: {reason}"));
        assert!((60..=61).contains(&waited), "{reason}");
    }

    #[tokio::test]
    async fn waits_longer_than_sqs_allows_are_chained() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        // Back-offs of exactly an hour.
        let policy = RetryPolicy {
            base: Duration::from_secs(3_600),
            cap: Duration::from_secs(3_600),
            floor: Duration::from_secs(3_600),
            horizon: Duration::from_secs(24 * 3_600),
            ..RetryPolicy::default()
        };
        let i = instance(&store, &clock, FAST, policy);
        i.channel
            .script
            .lock()
            .unwrap()
            .push_back(VendorError::Transient {
                vendor: Vendor::Channelio,
                op: "channelio.upsert_user",
                cause: TransientCause::Timeout,
                message: None,
                trace_id: None,
                rate_limit: None,
            });
        let due = clock.now() + TimeDelta::hours(1);
        let m = received(delivery("u1", "e1", RetryState::default()).to_body(), 1);
        i.worker.handle(&m, in_a_minute(&clock), true).await;
        let again = i.queue.take_one();
        assert_eq!(secs(again.delay), 900, "SQS's longest delay");
        assert_eq!(state_of(&again).retry_not_before, Some(due));
        assert_eq!(state_of(&again).failures, 1);

        // Received after 15 min, then after 59.5 min: sent on for the rest, no call.
        let mut body = again.body;
        for (at_secs, rest) in [(900, 900), (3_570, 30)] {
            clock.set(due - TimeDelta::seconds(3_600 - at_secs));
            let m = received(body, 2);
            i.worker.handle(&m, in_a_minute(&clock), true).await;
            let again = i.queue.take_one();
            assert_eq!(secs(again.delay), rest);
            let state = state_of(&again);
            assert_eq!((state.failures, state.retry_not_before), (1, Some(due)));
            body = again.body;
        }
        assert_eq!(*i.channel.calls.lock().unwrap(), 1);
        assert_eq!(i.worker.metrics.total(Counter::Deferred), 2);

        // On time: delivered.
        clock.set(due);
        let m = received(body, 3);
        assert_eq!(
            i.worker.process(&m, in_a_minute(&clock)).await,
            Disposition::Done
        );
        assert_eq!(*i.channel.calls.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn when_sending_again_fails_the_message_stays_in_the_queue_for_later() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let i = instance(&store, &clock, FAST, RetryPolicy::default());
        i.queue.refuse_sends.store(true, Ordering::SeqCst);
        let key = link_of("u1");
        store
            .lease(
                &key,
                &DeliveryId::of("other#1"),
                clock.now() + TimeDelta::seconds(2),
            )
            .await
            .unwrap();
        let m = received(delivery("u1", "e1", RetryState::default()).to_body(), 1);
        let left = i
            .worker
            .handle_batch(&[m], in_a_minute(&clock), false)
            .await;
        assert_eq!(left, ["m1"], "reported as failed: SQS keeps it");
        let visibility = i.queue.visibility.lock().unwrap().clone();
        assert_eq!(visibility, [("r1".to_string(), Duration::from_secs(2))]);
        assert!(i.queue.deleted.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_delivery_handed_back_for_longer_than_give_up_after_is_dead_lettered() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let i = instance(&store, &clock, FAST, RetryPolicy::default());
        let key = link_of("u1");
        store
            .lease(
                &key,
                &DeliveryId::of("other#1"),
                clock.now() + TimeDelta::seconds(30),
            )
            .await
            .unwrap();
        let retry = RetryState {
            waiting_since: Some(clock.now() - TimeDelta::days(3)),
            ..RetryState::default()
        };
        let m = received(delivery("u1", "e1", retry).to_body(), 1);
        assert_eq!(
            i.worker.handle(&m, in_a_minute(&clock), true).await,
            Settled::Removed
        );
        let dead = i.dead_letters.take_one();
        assert_eq!(
            dead.attributes["reason"],
            "not delivered in 72 h 0 min (deferred, 0 failures)"
        );
    }
    /// A source reader answering a contact with an e-mail, counting its reads.
    struct Crm {
        reads: Mutex<u32>,
        timeout: Duration,
    }

    #[async_trait]
    impl crate::enrich::SourceReader for Crm {
        fn name(&self) -> &'static str {
            "test_crm"
        }
        fn timeout(&self) -> Duration {
            self.timeout
        }
        async fn read(
            &self,
            id: &str,
        ) -> Result<Option<serde_json::Value>, crate::enrich::ReadError> {
            *self.reads.lock().unwrap() += 1;
            Ok(Some(serde_json::json!([{
                "eventId": "crm-1", "subscriptionType": "contact.propertyChange",
                "objectId": id.parse::<u64>().unwrap(), "propertyName": "email",
                "propertyValue": "Dana.OBrien+work@Example.com", "occurredAt": START_MS
            }])))
        }
    }

    #[tokio::test]
    async fn a_source_read_starts_only_when_it_can_finish_before_the_deadline() {
        let clock = clock();
        let store = MemoryStore::new(clock.clone());
        let i = instance(&store, &clock, FAST, RetryPolicy::default());
        let crm = Arc::new(Crm {
            reads: Mutex::default(),
            timeout: Duration::from_secs(10),
        });
        let limiter: Arc<dyn RateLimiter> =
            Arc::new(store.limiter(&LimiterKey::for_source("test_crm", "test").unwrap(), FAST));
        let worker = i.worker.with_enrichment(crate::enrich::Enrichment {
            readers: [(
                "hubspot".to_owned(),
                crate::enrich::SourceRead {
                    reader: crm.clone(),
                    limiter,
                },
            )]
            .into(),
            identity: crate::store::identity::Identity {
                store: Arc::new(store.clone()),
                key: crate::store::IdentityKey::from_bytes(&[7; 32]).unwrap(),
            },
            reads: Arc::default(),
        });
        // A HubSpot property change of a contact never seen: no e-mail, no phone.
        let mut message = delivery("u9", "3999000101", RetryState::default());
        message.change.event.source = "hubspot".into();
        message.change.contact.key = ContactKey::external("hubspot", "901").unwrap();
        let body = message.to_body();

        // 5 s left: the read (up to 10 s) could not finish; it waits, nothing is read.
        let soon = clock.now() + TimeDelta::seconds(5);
        assert_eq!(
            worker.handle(&received(body.clone(), 1), soon, true).await,
            Settled::Removed
        );
        assert_eq!(*crm.reads.lock().unwrap(), 0);
        assert_eq!(*i.channel.calls.lock().unwrap(), 0);
        let again = i.queue.take_one();
        assert!(!DeliveryMessage::from_body(&again.body).unwrap().enriched);

        // A minute left: read once, completed, delivered.
        assert_eq!(
            worker
                .handle(&received(body, 2), in_a_minute(&clock), true)
                .await,
            Settled::Removed
        );
        assert_eq!(*crm.reads.lock().unwrap(), 1);
        assert_eq!(
            *i.channel.calls.lock().unwrap(),
            1,
            "delivered after the read"
        );
        assert!(i.queue.sent.lock().unwrap().is_empty());
    }
}
