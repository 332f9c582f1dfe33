//! Exactly-once acceptance as a typed state machine over one record per key:
//!
//! ```text
//!  absent ──claim──▶ InProgress{lease_until, token} ──complete──▶ Completed{result}
//!                      │    ▲
//!              release │    │ claim (any payload)
//!                      ▼    │
//!                     Released        any state ── expires_at passed ──▶ absent
//! ```
//!
//! A claim is one conditional write; a duplicate learns the current state from the failed
//! condition (DynamoDB `ALL_OLD`), so it also costs one call. Every claim gets a fresh token
//! and `complete`/`release` are conditional on it (fencing). Records carry `expires_at` and
//! count as absent once it has passed (DynamoDB TTL deletes them lazily, so the rule is
//! enforced in the condition, not left to the TTL sweeper).
//!
//! **An in-progress claim is never taken over**, not even after its lease: ingest claims
//! once and does not confirm (see `ingress::ingest`), so `InProgress` means *claimed and
//! not confirmed* — the claimant may still be enqueueing, may have enqueued long ago, or
//! may have died before enqueueing, and no record written before the enqueue can tell
//! these apart. A caller meeting it must therefore do the work itself if the work must not
//! be lost (ingest enqueues its own copy; the worker recognises the second copy). Taking
//! the record over instead would buy nothing and would overwrite what the first claimant
//! recorded (the delivery log rides on the claim's item). The lease is what the claimant
//! promised (its invocation's deadline) and what a duplicate is told; `Completed` remains
//! for a caller that can afford the confirming write (and for records written before
//! ingest stopped confirming).

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{IdempotencyKey, PayloadHash, StoreError};

/// Largest `complete` result stored, in bytes: enough for a vendor id or a small JSON
/// summary, small enough that a claim item stays one write unit plus change.
pub const MAX_RESULT_BYTES: usize = 1024;

/// How long finished records are kept by default: senders retry for hours or days, not
/// weeks.
pub const DEFAULT_RETENTION: TimeDelta = TimeDelta::days(7);

/// A claim held by this invocation. Pass it to `complete` or `release`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    key: IdempotencyKey,
    token: Uuid,
    lease_until: DateTime<Utc>,
}

impl Claim {
    /// A fresh claim with a new fencing token, as an adapter returns it from a successful
    /// claim (public for adapters outside this crate, such as relay-local's disk store).
    pub fn new(key: IdempotencyKey, lease_until: DateTime<Utc>) -> Self {
        Self {
            key,
            token: Uuid::new_v4(),
            lease_until,
        }
    }

    /// The claimed key.
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// The fencing token, unique per successful claim.
    pub fn token(&self) -> Uuid {
        self.token
    }

    /// When the claimant promised to be done (what a duplicate is told).
    pub fn lease_until(&self) -> DateTime<Utc> {
        self.lease_until
    }
}

/// What a claim attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key is ours: do the work, then `release` it if the work failed (or `complete`
    /// it, when confirming is worth a write).
    Claimed(Claim),
    /// Another request claimed the key with the same payload and has not confirmed: it may
    /// still be at work (until `until`, its lease), be done, or have died before doing the
    /// work. Never taken over: a caller that must not lose the work does it itself.
    InProgress {
        /// End of the other claimant's lease.
        until: DateTime<Utc>,
    },
    /// The work was done already; `result` is what the first claimant recorded.
    Completed {
        /// The stored result.
        result: String,
    },
    /// The key was used with a different payload: not a retry but a conflicting request.
    PayloadMismatch,
}

/// The state part of a stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimState {
    /// Claimed by the claimant with `token`, who promised to be done by `lease_until`.
    InProgress {
        /// End of the claimant's lease (reported to duplicates; the key stays claimed).
        lease_until: DateTime<Utc>,
        /// The current claimant's fencing token.
        token: Uuid,
    },
    /// Finished; duplicates get `result`.
    Completed {
        /// The claimant's result.
        result: String,
    },
    /// Given back after a failure; claimable again with the same payload.
    Released,
}

/// A stored idempotency record, as both adapters hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRecord {
    /// Hash of the payload of the first claim.
    pub payload_hash: PayloadHash,
    /// Where the record is in the state machine.
    pub state: ClaimState,
    /// When the record logically disappears (whole seconds: the TTL attribute's unit).
    pub expires_at: DateTime<Utc>,
}

impl ClaimRecord {
    /// What a claim for `payload_hash` at `now` meets: `None` when it may take the key,
    /// otherwise the outcome to report. Both adapters use this rule; the DynamoDB claim
    /// condition is its translation.
    pub fn blocks(&self, payload_hash: &PayloadHash, now: DateTime<Utc>) -> Option<ClaimOutcome> {
        if self.expires_at.timestamp() <= now.timestamp() {
            return None;
        }
        // A released key was given back with nothing enqueued: whatever the new request
        // carries, taking it cannot duplicate or contradict anything.
        if self.state == ClaimState::Released {
            return None;
        }
        if self.payload_hash != *payload_hash {
            return Some(ClaimOutcome::PayloadMismatch);
        }
        match &self.state {
            ClaimState::Released => None,
            // Not taken over after the lease either: see the module docs.
            ClaimState::InProgress { lease_until, .. } => Some(ClaimOutcome::InProgress {
                until: *lease_until,
            }),
            ClaimState::Completed { result } => Some(ClaimOutcome::Completed {
                result: result.clone(),
            }),
        }
    }

    /// The record a successful claim writes.
    pub fn claimed(
        claim: &Claim,
        payload_hash: PayloadHash,
        now: DateTime<Utc>,
        retention: TimeDelta,
    ) -> Self {
        Self {
            payload_hash,
            state: ClaimState::InProgress {
                lease_until: claim.lease_until,
                token: claim.token,
            },
            expires_at: expiry(now.max(claim.lease_until), retention),
        }
    }

    /// True while `claim` is the current claimant (the fencing check).
    pub fn held_by(&self, claim: &Claim) -> bool {
        matches!(&self.state, ClaimState::InProgress { token, .. } if *token == claim.token)
    }
}

/// `from + retention`, truncated to whole seconds (the TTL attribute's unit).
pub fn expiry(from: DateTime<Utc>, retention: TimeDelta) -> DateTime<Utc> {
    let at = from + retention;
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// Checks the result budget before any call is made.
pub fn check_result(result: &str) -> Result<(), StoreError> {
    if result.len() > MAX_RESULT_BYTES {
        Err(StoreError::ResultTooLarge { len: result.len() })
    } else {
        Ok(())
    }
}

/// Claims, completes and releases idempotency keys.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Tries to take `key`, promising to be done by `lease_until` (normally the
    /// invocation's deadline). One backend call whatever the outcome.
    async fn claim(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Records success with a small result (≤ [`MAX_RESULT_BYTES`]) that duplicates will
    /// see. Fails with [`StoreError::ClaimLost`] if `claim` is no longer current.
    async fn complete(&self, claim: &Claim, result: &str) -> Result<(), StoreError>;

    /// Gives the key back after a failure (nothing was done under it) so a retry claims it
    /// afresh. Fails with [`StoreError::ClaimLost`] if `claim` is no longer
    /// current.
    async fn release(&self, claim: &Claim) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::clock::from_epoch_ms;

    fn record(state: ClaimState) -> ClaimRecord {
        ClaimRecord {
            payload_hash: PayloadHash::of(b"a"),
            state,
            expires_at: from_epoch_ms(1_000_000_000),
        }
    }

    #[test]
    fn blocking_rules() {
        let a = PayloadHash::of(b"a");
        let b = PayloadHash::of(b"b");
        let now = from_epoch_ms(500_000);
        let lease = from_epoch_ms(500_001);
        let held = record(ClaimState::InProgress {
            lease_until: lease,
            token: Uuid::new_v4(),
        });
        assert_eq!(
            held.blocks(&a, now),
            Some(ClaimOutcome::InProgress { until: lease })
        );
        assert_eq!(held.blocks(&b, now), Some(ClaimOutcome::PayloadMismatch));
        // Not taken over when the lease has ended: the claim was never confirmed, so the
        // claimant may have done the work.
        assert_eq!(
            held.blocks(&a, from_epoch_ms(600_000)),
            Some(ClaimOutcome::InProgress { until: lease })
        );
        assert_eq!(held.blocks(&b, lease), Some(ClaimOutcome::PayloadMismatch));

        let done = record(ClaimState::Completed { result: "r".into() });
        assert_eq!(
            done.blocks(&a, now),
            Some(ClaimOutcome::Completed { result: "r".into() })
        );
        assert_eq!(done.blocks(&b, now), Some(ClaimOutcome::PayloadMismatch));

        // Released: nothing was enqueued, so any payload may take the key.
        let released = record(ClaimState::Released);
        assert_eq!(released.blocks(&a, now), None);
        assert_eq!(released.blocks(&b, now), None);

        // Past `expires_at` the record counts as absent, whatever the payload.
        let expired_at = from_epoch_ms(1_000_000_000);
        assert_eq!(done.blocks(&b, expired_at), None);
        assert_eq!(
            done.blocks(&a, from_epoch_ms(999_999_999)),
            Some(ClaimOutcome::Completed { result: "r".into() })
        );
    }

    #[test]
    fn expiry_is_whole_seconds_after_the_later_of_now_and_lease() {
        let now = from_epoch_ms(10_500);
        let claim = Claim::new(
            IdempotencyKey::inbound("tally", "e").unwrap(),
            from_epoch_ms(20_700),
        );
        let rec = ClaimRecord::claimed(&claim, PayloadHash::of(b""), now, TimeDelta::seconds(100));
        assert_eq!(rec.expires_at, from_epoch_ms(120_000));
        assert!(rec.held_by(&claim));
        let other = Claim::new(claim.key().clone(), claim.lease_until());
        assert!(!rec.held_by(&other));
    }

    #[test]
    fn result_budget() {
        assert!(check_result(&"x".repeat(MAX_RESULT_BYTES)).is_ok());
        assert!(matches!(
            check_result(&"x".repeat(MAX_RESULT_BYTES + 1)),
            Err(StoreError::ResultTooLarge { len: 1025 })
        ));
    }
}
