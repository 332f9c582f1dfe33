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

    /// The JSON body sent to the queue.
    pub fn to_body(&self) -> String {
        // A struct of strings, numbers and maps with string keys: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
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
