//! Sync events: which change happened, where and when.

use std::collections::BTreeMap;

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
    /// Per canonical field (`email`, `full_name`, `custom.plan`, ...), the version (epoch
    /// ms) of the older change that set it, for a change made of several
    /// (`relay_core::plan::coalesce`): each field is then judged newest-wins at the vendor
    /// by the change it came from, not by the newest member. A field not listed is at
    /// `event.occurred_at`; a change from one event lists none (and the field is left out of
    /// its JSON).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, i64>,
}

impl ContactChange {
    /// A change from one event: every field at the event's time.
    pub fn new(event: SyncEvent, contact: Contact) -> Self {
        ContactChange {
            event,
            contact,
            versions: BTreeMap::new(),
        }
    }

    /// The change's version (epoch ms): when it happened.
    pub fn version(&self) -> i64 {
        self.event.occurred_at.timestamp_millis()
    }

    /// The version of the change that set the canonical field `name`.
    pub fn version_of(&self, name: &str) -> i64 {
        self.versions
            .get(name)
            .copied()
            .unwrap_or_else(|| self.version())
    }
}
