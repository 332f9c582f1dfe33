//! Chatwoot contact bodies on the Omnivibe host (`vendor-notes.md`):
//! `POST /api/v1/accounts/{account_id}/contacts`, `PUT .../contacts/{id}`,
//! `GET .../contacts/search?q=`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::redact::debug_fields;

/// Body of contact create and update. `email`, `phone_number` and `identifier` are unique
/// per account; a clash answers 422.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// E.164.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// The relay's stable contact key, so later events find the same contact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_attributes: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_attributes: Option<Map<String, Value>>,
}

impl ContactBody {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.email.is_none()
            && self.phone_number.is_none()
            && self.identifier.is_none()
            && self.custom_attributes.as_ref().is_none_or(Map::is_empty)
            && self
                .additional_attributes
                .as_ref()
                .is_none_or(Map::is_empty)
    }
}

impl std::fmt::Debug for ContactBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "ContactBody",
            &[
                ("name", self.name.is_some()),
                ("email", self.email.is_some()),
                ("phone_number", self.phone_number.is_some()),
                ("identifier", self.identifier.is_some()),
                ("custom_attributes", self.custom_attributes.is_some()),
                (
                    "additional_attributes",
                    self.additional_attributes.is_some(),
                ),
            ],
        )
    }
}

/// A contact as Chatwoot returns it: the id, plus the unique keys the relay compares to
/// pick the exact hit out of Chatwoot's fuzzy search. Other fields are ignored.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
}

impl Contact {
    /// True when `query` is exactly this contact's e-mail (any case), phone or identifier.
    pub fn matches_exactly(&self, query: &str) -> bool {
        self.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(query))
            || self.phone_number.as_deref() == Some(query)
            || self.identifier.as_deref() == Some(query)
    }
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
