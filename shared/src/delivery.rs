//! The delivery message: what ingest enqueues and the worker consumes — one contact change
//! for one vendor. Fanning out per vendor at ingest lets each vendor wait on its own rate
//! limit and retry on its own, without holding the others back.

use serde::{Deserialize, Serialize};

use crate::model::ContactChange;
use crate::vendors::Vendor;

/// Format version, so a worker can refuse messages from a newer ingest during a deploy.
pub const MESSAGE_VERSION: u8 = 1;

/// One (event, vendor) delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub v: u8,
    pub vendor: Vendor,
    pub change: ContactChange,
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
            },
        );
        let body = message.to_body();
        assert!(sqs_accepts(&body), "{body:?}");
        assert_eq!(DeliveryMessage::from_body(&body).unwrap(), message);
    }
}
