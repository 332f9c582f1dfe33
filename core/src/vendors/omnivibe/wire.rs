//! Omnivibe `PUT /api/v1/profile` body, as `vendor-docs/omnivibe-update-profile.txt`
//! defines it, minus the password fields: the relay never syncs passwords, so the type
//! cannot carry them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::redact::debug_fields;

/// The profile fields the relay may send (the documented ones without password fields).
pub const PROFILE_FIELDS: [&str; 6] = [
    "name",
    "email",
    "display_name",
    "message_signature",
    "phone_number",
    "ui_settings",
];

/// Body of `PUT /api/v1/profile`: `{"profile": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateProfile {
    pub profile: AgentProfile,
}

/// The agent's own profile fields.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_settings: Option<Map<String, Value>>,
}

impl AgentProfile {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.email.is_none()
            && self.display_name.is_none()
            && self.message_signature.is_none()
            && self.phone_number.is_none()
            && self.ui_settings.is_none()
    }
}

impl std::fmt::Debug for AgentProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "AgentProfile",
            &[
                ("name", self.name.is_some()),
                ("email", self.email.is_some()),
                ("display_name", self.display_name.is_some()),
                ("message_signature", self.message_signature.is_some()),
                ("phone_number", self.phone_number.is_some()),
                ("ui_settings", self.ui_settings.is_some()),
            ],
        )
    }
}

/// The agent JSON the PUT answers with; only `id` is read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: u64,
}
