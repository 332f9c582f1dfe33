//! Links: which vendor record one of our contacts maps to, and what was last sent there.
//!
//! The version is the `occurred_at` (epoch ms) of the newest change applied. A write is
//! conditional on the stored version not being newer (stale-update guard): an older change
//! that arrives late — queue retries reorder events — never overwrites a newer one. An
//! equal version is accepted: a replay of the same change is harmless, and senders emit
//! several changes with one timestamp (HubSpot sends one event per property with the same
//! `occurredAt`), which must all apply.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{LinkKey, StoreError};

/// What we know about a contact at one vendor.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Link {
    /// The vendor's id for the record (e.g. Hood profile id), once known.
    pub vendor_id: Option<String>,
    /// `occurred_at` of the newest change applied, epoch milliseconds.
    pub version: i64,
    /// Fingerprint of the value last sent, per vendor field, so unchanged fields are not
    /// sent again. Fingerprints are hashes, never the values.
    pub fields: BTreeMap<String, String>,
}

impl Link {
    /// The stale-update rule: may a write of `self` replace `stored`?
    pub fn may_replace(&self, stored: &Link) -> bool {
        self.version >= stored.version
    }
}

/// Result of a conditional link write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkPut {
    /// Written.
    Applied,
    /// Not written: the stored link is newer. Carries the stored link.
    Stale {
        /// The link as stored.
        current: Link,
    },
}

/// Reads and writes links.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// The link, if one was written (strongly consistent read).
    async fn get_link(&self, key: &LinkKey) -> Result<Option<Link>, StoreError>;

    /// Writes the whole link unless the stored one is newer. One backend call.
    async fn put_link(&self, key: &LinkKey, link: &Link) -> Result<LinkPut, StoreError>;
}
