//! Links: one item per (vendor, contact) holding which vendor record the contact maps to,
//! what was last applied there, and — while a delivery runs — a lease.
//!
//! The lease serialises deliveries to one vendor record across every instance: two events
//! for a new contact processed at once would otherwise both look the profile up, find
//! nothing and both create it. Taking the lease is ONE conditional UpdateItem that also
//! returns the link (so planning needs no extra read) and refuses a delivery already
//! applied (its id is among the `recent` ones), so a redelivered message costs one call.
//! Committing is one more: the new state and the lease's release in a single write, fenced
//! by the lease token so an expired holder cannot overwrite its successor.
//!
//! Staleness is per field: each applied field keeps the version (`occurred_at`, epoch ms)
//! of the newest change that set it or confirmed it (a newer change carrying the same value
//! sends nothing but records its version), and planning sends a field only when the change
//! ranks above what is stored (version, then the value's fingerprint for ties; see
//! `plan::changed`) — an older change that arrives late never overwrites a newer value, yet
//! its other fields still apply.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use relay_core::plan::AppliedField;

use super::{LinkKey, StoreError};

/// How many recent delivery ids a link remembers.
pub const RECENT_LIMIT: usize = 32;

/// What we know about a contact at one vendor.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Link {
    /// The vendor's id for the record (e.g. Hood profile id), once known.
    pub vendor_id: Option<String>,
    /// Per vendor field, what was applied last.
    pub fields: BTreeMap<String, AppliedField>,
    /// Ids of the deliveries applied most recently, oldest first, at most [`RECENT_LIMIT`].
    pub recent: Vec<DeliveryId>,
}

impl Link {
    /// Records `delivery` as applied, dropping the oldest beyond [`RECENT_LIMIT`].
    pub fn remember(&mut self, delivery: DeliveryId) {
        self.recent.retain(|d| *d != delivery);
        self.recent.push(delivery);
        let excess = self.recent.len().saturating_sub(RECENT_LIMIT);
        self.recent.drain(..excess);
    }
}

/// A delivery's id in a link: 16 hex characters of SHA-256 over the event key, so links
/// stay small whatever the sender's id looks like.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn of(event_key: &str) -> Self {
        DeliveryId(hex::encode(&Sha256::digest(event_key.as_bytes())[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A delivery id as an adapter stored it (public for adapters outside this crate).
    pub fn from_stored(s: String) -> Self {
        DeliveryId(s)
    }
}

/// A held lease: pass it to [`LinkStore::commit`] or [`LinkStore::abandon`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkLease {
    key: LinkKey,
    token: Uuid,
    until: DateTime<Utc>,
}

impl LinkLease {
    /// A fresh lease with a new fencing token, as an adapter returns it from a successful
    /// lease (public for adapters outside this crate).
    pub fn new(key: LinkKey, until: DateTime<Utc>) -> Self {
        LinkLease {
            key,
            token: Uuid::new_v4(),
            until,
        }
    }

    pub fn key(&self) -> &LinkKey {
        &self.key
    }

    pub fn token(&self) -> Uuid {
        self.token
    }

    /// When the lease ends and another delivery may take it.
    pub fn until(&self) -> DateTime<Utc> {
        self.until
    }
}

/// What taking a lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Ours until the lease ends: plan from `link` (default when none existed yet), call the
    /// vendor, then commit or abandon.
    Leased { lease: LinkLease, link: Link },
    /// This delivery was applied before: nothing to do.
    AlreadyApplied,
    /// Another delivery to the same vendor record holds the lease until `until`.
    Busy { until: DateTime<Utc> },
}

/// Leases, reads and writes links.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Takes the lease on `key` until `until` for `delivery`, returning the link; refuses a
    /// delivery already among the link's recent ones. One backend call.
    async fn lease(
        &self,
        key: &LinkKey,
        delivery: &DeliveryId,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError>;

    /// Writes `link` (the new state, with the delivery remembered) and releases the lease.
    /// Fails with [`StoreError::ClaimLost`] if the lease is no longer ours. One backend call.
    async fn commit(&self, lease: &LinkLease, link: &Link) -> Result<(), StoreError>;

    /// Releases the lease without changing the link (the delivery failed or was deferred).
    /// Fails with [`StoreError::ClaimLost`] if the lease is no longer ours. One backend call.
    async fn abandon(&self, lease: &LinkLease) -> Result<(), StoreError>;

    /// [`Self::commit`] with, in the same write, the delivery-log record of the attempt
    /// (`log`), for a backend that keeps the log beside the links (DynamoDB: one
    /// TransactWriteItems instead of two UpdateItems). Answers `true` when this call settled
    /// the record — written, or nothing to write (the event left the log, or a newer
    /// attempt is recorded) — and `false` when only the link was committed and the caller
    /// records the attempt itself, as it does by default. [`StoreError::ClaimLost`] as for
    /// `commit` (the record is then not written either).
    async fn commit_logged(
        &self,
        lease: &LinkLease,
        link: &Link,
        log: &LogRecord<'_>,
    ) -> Result<bool, StoreError> {
        let _ = log;
        self.commit(lease, link).await.map(|()| false)
    }
}

/// A delivery-log record written with a link's commit ([`LinkStore::commit_logged`]): the
/// attempt of the event claimed under `event`, at `vendor`.
#[derive(Clone, Copy, Debug)]
pub struct LogRecord<'a> {
    pub event: &'a super::IdempotencyKey,
    pub vendor: crate::model::Vendor,
    pub entry: &'a super::DeliveryEntry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_deliveries_are_bounded_and_deduplicated() {
        let mut link = Link::default();
        for i in 0..40 {
            link.remember(DeliveryId::of(&format!("s#{i}")));
        }
        link.remember(DeliveryId::of("s#39"));
        assert_eq!(link.recent.len(), RECENT_LIMIT);
        assert_eq!(link.recent.first(), Some(&DeliveryId::of("s#8")));
        assert_eq!(link.recent.last(), Some(&DeliveryId::of("s#39")));
        assert_eq!(DeliveryId::of("typeform#1").as_str().len(), 16);
    }
}
