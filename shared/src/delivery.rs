//! The delivery message: what ingest enqueues and the worker consumes — one contact change
//! for one vendor. Fanning out per vendor at ingest lets each vendor wait on its own rate
//! limit and retry on its own, without holding the others back.
//!
//! A message also carries its attempt state ([`RetryState`]): the worker re-sends a delivery
//! that has to wait or retry as a new message with the state in its body, so waiting costs
//! no SQS receive and failures are counted by the worker, not by the queue's receive count.
//! A body without it (written by ingest, or by an older worker) is a first attempt.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{ContactChange, PersonId};
use crate::store::RawId;
use crate::vendors::Vendor;

/// Format version, so a worker can refuse messages from a newer ingest during a deploy.
pub const MESSAGE_VERSION: u8 = 1;

/// One (event, vendor) delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub v: u8,
    pub vendor: Vendor,
    pub change: ContactChange,
    /// The sealed raw request the change was mapped from (see `store::journal`), when it
    /// was kept: a replay maps it again with the current mappings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawId>,
    /// Persons the identity step merged into this change's person (`store::identity`):
    /// the worker folds their links at this vendor into the survivor's, so no field version
    /// is lost and a record the survivor lacks is adopted, not created again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<PersonId>,
    /// The change was completed from its source (`crate::enrich`): not read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enriched: bool,
    /// Its attempts so far; absent from the body while there were none.
    #[serde(flatten)]
    pub retry: RetryState,
}

/// What the worker remembers of a delivery's attempts, carried in the message body. Every
/// field is optional in the body (serde-defaulted, left out while empty), so bodies written
/// before it existed parse as first attempts, and a worker that does not know it ignores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryState {
    /// Transient failures so far (5xx, timeouts, store outages). Waits do not count.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// Attempts made so far that reached the delivery step (tries, not waits for a slot
    /// or a lease), for the delivery log.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// When the first transient failure happened: the retry horizon counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<DateTime<Utc>>,
    /// The last failure, for the dead-letter reason (vendor errors never carry personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the delivery was first handed back, for any reason: bounds how long it may wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
    /// Not to be tried before this instant: set when a wait is longer than SQS's longest
    /// delay (15 min), so a message received earlier is re-sent for the rest of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_not_before: Option<DateTime<Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A message body the worker cannot use; it goes to the dead-letter queue as it is.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not a delivery message: {0}")]
    Malformed(String),
    #[error("message format version {0} is newer than this worker understands ({MESSAGE_VERSION})")]
    UnknownVersion(u8),
}

impl DeliveryMessage {
    pub fn new(vendor: Vendor, change: ContactChange) -> Self {
        DeliveryMessage {
            v: MESSAGE_VERSION,
            vendor,
            change,
            raw: None,
            merged: Vec::new(),
            enriched: false,
            retry: RetryState::default(),
        }
    }

    /// `<source>#<event id>`: with the vendor, the delivery's idempotency key.
    pub fn event_key(&self) -> String {
        self.change.event.key()
    }

    /// The JSON body sent to the queue. SQS refuses message bodies holding characters
    /// outside XML's set (`#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-`):
    /// serde_json already escapes the control characters, and the two noncharacters U+FFFE
    /// and U+FFFF — which a sender may put in any text field — are written as JSON escapes
    /// too, so the body means the same and SQS takes it (refusing it would answer a
    /// permanent fault with a retryable 503).
    pub fn to_body(&self) -> String {
        // A struct of strings, numbers and maps with string keys: serialisation cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        if json.contains(['\u{FFFE}', '\u{FFFF}']) {
            json.replace('\u{FFFE}', "\\ufffe")
                .replace('\u{FFFF}', "\\uffff")
        } else {
            json
        }
    }

    /// Parses a queue message body.
    pub fn from_body(body: &str) -> Result<Self, MessageError> {
        // serde's messages can quote values (personal data): keep only the position.
        let message: DeliveryMessage = serde_json::from_str(body).map_err(|e| {
            MessageError::Malformed(format!("line {} column {}", e.line(), e.column()))
        })?;
        if message.v > MESSAGE_VERSION {
            return Err(MessageError::UnknownVersion(message.v));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, Contact, ContactKey, SyncEvent};

    /// SQS's allowed characters (the XML set).
    fn sqs_accepts(body: &str) -> bool {
        body.chars().all(|c| {
            matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
                || c >= '\u{10000}'
        })
    }

    #[test]
    fn bodies_hold_only_characters_sqs_accepts_and_mean_the_same() {
        let mut contact = Contact::new(ContactKey::external("standard", "u1").unwrap());
        contact.full_name = Some("Zoë\u{FFFE}\u{0}\u{1}\u{7F}\u{FFFF} 山田 🙂 \u{202E}x".into());
        contact
            .custom
            .insert("plan".into(), serde_json::json!("pro\u{FFFF}"));
        let message = DeliveryMessage::new(
            Vendor::Hood,
            ContactChange {
                event: SyncEvent {
                    source: "standard".into(),
                    event_id: "msg\u{FFFE}1".into(),
                    occurred_at: chrono::DateTime::UNIX_EPOCH,
                    kind: ChangeKind::Updated,
                },
                contact,
                versions: Default::default(),
            },
        );
        let body = message.to_body();
        assert!(sqs_accepts(&body), "{body:?}");
        assert_eq!(DeliveryMessage::from_body(&body).unwrap(), message);
    }

    fn message() -> DeliveryMessage {
        let mut contact = Contact::new(ContactKey::external("standard", "u1").unwrap());
        contact.full_name = Some("Ann".into());
        DeliveryMessage::new(
            Vendor::Channelio,
            ContactChange {
                event: SyncEvent {
                    source: "standard".into(),
                    event_id: "msg_1".into(),
                    occurred_at: chrono::DateTime::UNIX_EPOCH,
                    kind: ChangeKind::Updated,
                },
                contact,
                versions: Default::default(),
            },
        )
    }

    #[test]
    fn a_first_attempt_carries_no_retry_state_and_old_bodies_still_parse() {
        let fresh = message();
        let body = fresh.to_body();
        for field in [
            "failures",
            "attempts",
            "first_failed_at",
            "last_error",
            "waiting_since",
            "retry_not_before",
        ] {
            assert!(!body.contains(field), "{field} in {body}");
        }
        // A body as ingest wrote it before the retry state existed.
        let old = r#"{"v":1,"vendor":"channelio","change":{"event":{"source":"standard","event_id":"msg_1","occurred_at":"1970-01-01T00:00:00Z","kind":"updated"},"contact":{"key":"standard:u1","full_name":"Ann"}}}"#;
        let parsed = DeliveryMessage::from_body(old).unwrap();
        assert_eq!(parsed.retry, RetryState::default());
        assert_eq!(parsed.change, fresh.change);
    }

    #[test]
    fn the_retry_state_round_trips() {
        let at = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let mut m = message();
        m.retry = RetryState {
            failures: 3,
            attempts: 4,
            first_failed_at: Some(at),
            last_error: Some("channelio upsert_user: HTTP 503 (transient)".into()),
            waiting_since: Some(at),
            retry_not_before: Some(at + chrono::TimeDelta::minutes(20)),
        };
        let body = m.to_body();
        assert!(body.contains(r#""failures":3"#), "{body}");
        assert!(body.contains(r#""attempts":4"#), "{body}");
        assert_eq!(DeliveryMessage::from_body(&body).unwrap(), m);
    }
}
