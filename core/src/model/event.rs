//! Sync events: which change happened, where and when.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Contact;

/// What happened to the contact at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A form submission.
    Signup,
    Created,
    Updated,
    Deleted,
}

impl std::str::FromStr for ChangeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "signup" => Ok(ChangeKind::Signup),
            "created" => Ok(ChangeKind::Created),
            "updated" => Ok(ChangeKind::Updated),
            "deleted" => Ok(ChangeKind::Deleted),
            other => Err(format!(
                "unknown change kind `{other}` (expected signup, created, updated or deleted)"
            )),
        }
    }
}

/// One event as the sender described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEvent {
    /// The configured source name (`typeform`, `hubspot`, ...).
    pub source: String,
    /// The sender's own event id, or a hash of the body when it has none.
    pub event_id: String,
    /// When the change happened at the source; orders changes of one contact.
    pub occurred_at: DateTime<Utc>,
    pub kind: ChangeKind,
}

impl SyncEvent {
    /// `<source>#<event id>`: unique across sources, used in idempotency and delivery keys.
    pub fn key(&self) -> String {
        format!("{}#{}", self.source, self.event_id)
    }
}

/// A contact change: the unit that is queued, planned and delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactChange {
    pub event: SyncEvent,
    pub contact: Contact,
}
