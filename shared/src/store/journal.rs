//! The delivery log: what happened to each accepted event, kept for a TTL (14 days by
//! default) so `relay events` / `relay event <id>` can answer "what became of this
//! submission at Hood?".
//!
//! It costs (almost) no extra writes: the event's entry rides on the claim write that
//! already happens at ingest ([`Journal::claim_recorded`] is the claim, with the entry in
//! the same item), and the worker records each delivery attempt's outcome with one update
//! of that item ([`Journal::record_delivery`]) — for an applied delivery, in the same write
//! as the link's commit where the store can ([`super::LinkStore::commit_logged`]). A released claim (nothing enqueued) drops
//! out of the log. The raw request, sealed with the deployment key ([`super::sealed`]), is
//! kept as one item per accepted request ([`Journal::put_raw`]) so a replay can map it
//! again with corrected mappings.
//!
//! No e-mail address or phone number is recorded: the contact appears as
//! [`mask_contact`] — its key's namespace and the first 12 hex of its sha256.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ClaimOutcome, IdempotencyKey, PayloadHash, StoreError};
use crate::model::Vendor;

/// How long the log (and the raw events) are kept by default.
pub const DEFAULT_JOURNAL_TTL: TimeDelta = TimeDelta::days(14);

/// Longest reason kept per delivery, in characters.
pub const MAX_REASON_CHARS: usize = 300;

/// Most events one [`Journal::recent`] call answers.
pub const MAX_LIST: usize = 500;

/// A contact key as the log shows it: `email:#3f2a9c01b2d4` — its namespace and the first
/// 12 hex of the sha256 of the whole key (the link key's hash starts the same), never the
/// address or number.
pub fn mask_contact(contact_key: &str) -> String {
    let namespace = contact_key.split_once(':').map_or("key", |(ns, _)| ns);
    let digest = hex::encode(Sha256::digest(contact_key.as_bytes()));
    format!("{namespace}:#{}", &digest[..12])
}

/// What ingest records of an accepted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEntry {
    pub source: String,
    /// The sender's event id (or the body's hash when it has none).
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    pub occurred_at: DateTime<Utc>,
    /// `created`, `updated`, …
    pub kind: String,
    /// [`mask_contact`] of the contact key.
    pub contact: String,
    /// Fields dropped at mapping, as `<field>: <code>` (never the value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The vendors a delivery was enqueued for.
    pub vendors: Vec<Vendor>,
    /// The sealed raw request this event came from, when it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawId>,
}

/// Where one (event, vendor) delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Enqueued; no attempt recorded yet.
    Pending,
    Synced,
    /// Done without a change at the vendor (the reason says why).
    Skipped,
    /// Failed or had to wait; tried again at `next_attempt_at`.
    Retrying,
    DeadLettered,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Synced,
        DeliveryStatus::Skipped,
        DeliveryStatus::Retrying,
        DeliveryStatus::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Synced => "synced",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::DeadLettered => "dead_lettered",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.replace('-', "_");
        DeliveryStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status `{s}` (known: pending, synced, skipped, retrying, dead_lettered)"
                )
            })
    }
}

/// The last recorded attempt of one (event, vendor) delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEntry {
    pub status: DeliveryStatus,
    /// Why it was skipped, is retrying or was dead-lettered (no personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When a retrying delivery is tried next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The vendor's id for the record (e.g. the Hood profile id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// Attempts that reached the vendor (or failed before it), this one included.
    pub attempts: u32,
    /// Vendor calls made by this attempt.
    pub calls: u32,
    /// How long this attempt took.
    pub latency_ms: u64,
    /// When this attempt ended.
    pub at: DateTime<Utc>,
}

/// One event's journey: the ingest entry and each vendor's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJourney {
    #[serde(flatten)]
    pub event: EventEntry,
    /// Per vendor in `event.vendors`; `Pending` until the worker records an attempt.
    pub deliveries: BTreeMap<Vendor, DeliveryEntry>,
    pub expires_at: DateTime<Utc>,
}

impl EventJourney {
    /// The status of `vendor`'s delivery (`Pending` while none is recorded).
    pub fn status(&self, vendor: Vendor) -> DeliveryStatus {
        self.deliveries
            .get(&vendor)
            .map_or(DeliveryStatus::Pending, |d| d.status)
    }

    /// True when the journey passes `filter` (its time bound aside).
    pub fn matches(&self, filter: &EventFilter) -> bool {
        if filter
            .source
            .as_ref()
            .is_some_and(|s| *s != self.event.source)
        {
            return false;
        }
        let vendors: Vec<Vendor> = match filter.vendor {
            Some(v) if !self.event.vendors.contains(&v) => return false,
            Some(v) => vec![v],
            None => self.event.vendors.clone(),
        };
        match filter.status {
            Some(status) => vendors.iter().any(|v| self.status(*v) == status),
            None => true,
        }
    }
}

/// Which events [`Journal::recent`] answers: received at or after `since`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub since: DateTime<Utc>,
    pub source: Option<String>,
    pub vendor: Option<Vendor>,
    /// Any of the (matching) vendors' deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// At most this many (capped at [`MAX_LIST`]).
    pub limit: usize,
}

/// The id of a kept raw request: 32 hex of sha256 of `<source>\n<body>`, so a sender's
/// retry of the same request overwrites the same item.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawId(String);

impl RawId {
    pub fn of(source: &str, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(source.as_bytes());
        hasher.update(b"\n");
        hasher.update(body);
        RawId(hex::encode(hasher.finalize())[..32].to_owned())
    }

    /// A stored id (32 lowercase hex).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| RawId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The item's partition key, `raw#<id>`.
    pub fn pk(&self) -> String {
        format!("raw#{}", self.0)
    }
}

impl fmt::Debug for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawId({})", self.0)
    }
}

impl fmt::Display for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A kept raw request: what mapping it again needs. The body is sealed
/// ([`super::sealed::RawKey`]); the rest holds no personal data.
#[derive(Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub id: RawId,
    pub source: String,
    /// The event id used when the payload gives none (the signature's delivery id, or the
    /// body's hash), as ingest used it.
    pub fallback_event_id: String,
    pub received_at: DateTime<Utc>,
    /// `nonce ‖ ciphertext ‖ tag` of the body as received.
    pub sealed: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for RawRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRecord")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("received_at", &self.received_at)
            .field("sealed_bytes", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

impl RawRecord {
    /// What the seal is bound to: the item's id and source.
    pub fn aad(id: &RawId, source: &str) -> Vec<u8> {
        format!("{}\n{source}", id.pk()).into_bytes()
    }
}

/// The delivery log. Both store adapters implement it over the same items as their
/// claims; the conformance suite (`relay_tests::journal_conformance`) holds them to it.
#[async_trait]
pub trait Journal: Send + Sync {
    /// [`super::IdempotencyStore::claim`], recording `entry` in the same write when the
    /// claim is taken (a duplicate records nothing). The claim then lives as long as the
    /// log (the longer of the claim retention and the log's TTL).
    async fn claim_recorded(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
        entry: &EventEntry,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Records the outcome of an attempt of the event `key`'s delivery to `vendor`: one
    /// write. An entry older than the one recorded is ignored; answers false when the
    /// event has no entry (not logged, released or expired), in which case nothing is
    /// written.
    async fn record_delivery(
        &self,
        key: &IdempotencyKey,
        vendor: Vendor,
        entry: &DeliveryEntry,
    ) -> Result<bool, StoreError>;

    /// One event's journey (one read).
    async fn event(&self, key: &IdempotencyKey) -> Result<Option<EventJourney>, StoreError>;

    /// Events received since `filter.since`, newest first, that pass the filter.
    async fn recent(&self, filter: &EventFilter) -> Result<Vec<EventJourney>, StoreError>;

    /// Keeps a raw request (one write; the same id overwrites).
    async fn put_raw(&self, raw: &RawRecord) -> Result<(), StoreError>;

    /// A kept raw request, unless expired.
    async fn raw(&self, id: &RawId) -> Result<Option<RawRecord>, StoreError>;
}

/// `text` cut to [`MAX_REASON_CHARS`].
pub fn cut_reason(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_contacts_keep_the_namespace_and_a_hash_prefix_only() {
        let masked = mask_contact("email:ann@example.com");
        assert!(masked.starts_with("email:#"), "{masked}");
        assert_eq!(masked.len(), "email:#".len() + 12);
        assert!(!masked.contains("ann") && !masked.contains("example"));
        let link_hash = super::super::ContactKeyHash::of("email:ann@example.com");
        assert_eq!(&masked[7..], &link_hash.as_hex()[..12]);
        assert!(mask_contact("no namespace").starts_with("key:#"));
    }

    #[test]
    fn raw_ids_are_stable_hex_and_parse_back() {
        let a = RawId::of("typeform", b"{}");
        assert_eq!(a, RawId::of("typeform", b"{}"));
        assert_ne!(a, RawId::of("tally", b"{}"));
        assert_eq!(RawId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(RawId::parse("xyz"), None);
        assert!(a.pk().starts_with("raw#"));
    }

    #[test]
    fn statuses_parse_from_their_names() {
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>().unwrap(), s);
        }
        assert_eq!(
            "dead-lettered".parse::<DeliveryStatus>().unwrap(),
            DeliveryStatus::DeadLettered
        );
        assert!("lost".parse::<DeliveryStatus>().is_err());
    }
}
