//! Exactly-once processing as a typed state machine over one record per key:
//!
//! ```text
//!  absent ──claim──▶ InProgress{lease_until, token} ──complete──▶ Completed{result}
//!                      │    ▲   └─ claim at/after lease_until: takeover, new token
//!              release │    │ claim (same payload)
//!                      ▼    │
//!                     Released        any state ── expires_at passed ──▶ absent
//! ```
//!
//! A claim is one conditional write; a duplicate learns the current state from the failed
//! condition (DynamoDB `ALL_OLD`), so it also costs one call. The lease comes from the
//! caller — the Lambda deadline — so a crashed invocation's key frees itself. Every claim
//! gets a fresh token and `complete`/`release` are conditional on it (fencing): a claimant
//! whose lease expired and was taken over cannot overwrite the newer claimant's record.
//! Records carry `expires_at` and count as absent once it has passed (DynamoDB TTL deletes
//! them lazily, so the rule is enforced in the condition, not left to the TTL sweeper).

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

    /// When the lease ends and another invocation may take the key over.
    pub fn lease_until(&self) -> DateTime<Utc> {
        self.lease_until
    }
}

/// What a claim attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key is ours until the lease ends: do the work, then `complete` or `release`.
    Claimed(Claim),
    /// Another invocation holds the key until `until` (a concurrent duplicate).
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
    /// Held by the claimant with `token` until `lease_until`.
    InProgress {
        /// End of the lease (exclusive: at this instant the key is claimable again).
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
            ClaimState::InProgress { lease_until, .. } => {
                if lease_until.timestamp_millis() <= now.timestamp_millis() {
                    None
                } else {
                    Some(ClaimOutcome::InProgress {
                        until: *lease_until,
                    })
                }
            }
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
    /// Tries to take `key` until `lease_until` (normally the invocation's deadline).
    /// One backend call whatever the outcome.
    async fn claim(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Records success with a small result (≤ [`MAX_RESULT_BYTES`]) that duplicates will
    /// see. Fails with [`StoreError::ClaimLost`] if `claim` is no longer current.
    async fn complete(&self, claim: &Claim, result: &str) -> Result<(), StoreError>;

    /// Gives the key back after a failure so a retry can claim it at once instead of
    /// waiting for the lease. Fails with [`StoreError::ClaimLost`] if `claim` is no longer
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
        // The lease end is exclusive.
        assert_eq!(held.blocks(&a, lease), None);
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
