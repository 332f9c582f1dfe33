//! Ocamba Hood request and response bodies, exactly as `vendor-docs/hood-*.txt` define them.
//!
//! `Debug` shows which fields are set, never their values: profiles carry personal data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::redact::debug_fields;

/// The fields `PATCH /v1/hood/profiles/{id}` accepts ("updatable fields").
pub const UPDATABLE_FIELDS: [&str; 7] = [
    "email",
    "mobile_phone_number",
    "full_name",
    "organization_id",
    "lists",
    "comment",
    "custom_properties",
];

/// The fields the create page documents for `POST /v1/hood/profiles`.
pub const CREATE_FIELDS: [&str; 3] = ["email", "mobile_phone_number", "full_name"];

/// Body of `POST /v1/hood/profiles`. Hood requires `email` or `mobile_phone_number`;
/// `plan` never builds one without.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
}

impl std::fmt::Debug for CreateProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "CreateProfile",
            &[
                ("mobile_phone_number", self.mobile_phone_number.is_some()),
                ("email", self.email.is_some()),
                ("full_name", self.full_name.is_some()),
            ],
        )
    }
}

/// Body of `PATCH /v1/hood/profiles/{id}`: a partial update, absent fields unchanged.
/// Hood wants at least one field; `plan` sends no PATCH when this is empty.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lists: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_properties: Option<BTreeMap<String, String>>,
}

impl PatchProfile {
    /// True when no updatable field is set (Hood would refuse it).
    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.mobile_phone_number.is_none()
            && self.full_name.is_none()
            && self.organization_id.is_none()
            && self.lists.is_none()
            && self.comment.is_none()
            && self
                .custom_properties
                .as_ref()
                .is_none_or(BTreeMap::is_empty)
    }
}

impl std::fmt::Debug for PatchProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "PatchProfile",
            &[
                ("email", self.email.is_some()),
                ("mobile_phone_number", self.mobile_phone_number.is_some()),
                ("full_name", self.full_name.is_some()),
                ("organization_id", self.organization_id.is_some()),
                ("lists", self.lists.is_some()),
                ("comment", self.comment.is_some()),
                ("custom_properties", self.custom_properties.is_some()),
            ],
        )
    }
}

/// A profile as `POST /v1/hood/profiles` (newer docs) and `GET /v1/hood/profiles?...`
/// return it. Only `id` is needed; unknown fields are ignored.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Hood's profile id; a string in the docs, accepted as a number too.
    #[serde(deserialize_with = "crate::vendors::wire_id::string_or_number")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone_number: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Hood's 0/1 flags (`pi_data`, `importable`, `exportable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Flag {
    No,
    Yes,
}

impl From<Flag> for u8 {
    fn from(f: Flag) -> u8 {
        match f {
            Flag::No => 0,
            Flag::Yes => 1,
        }
    }
}

impl TryFrom<u8> for Flag {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        match v {
            0 => Ok(Flag::No),
            1 => Ok(Flag::Yes),
            other => Err(format!("expected 0 or 1, got {other}")),
        }
    }
}

impl From<bool> for Flag {
    fn from(b: bool) -> Self {
        if b { Flag::Yes } else { Flag::No }
    }
}

/// Body of `POST /v1/hood/profile-properties`: defines a custom property, which must exist
/// before any profile carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateProfileProperty {
    pub label: String,
    /// Always `"text"`: the relay sends custom property values as strings.
    pub data_type: String,
    pub example: String,
    pub description: String,
    pub export_alias: String,
    pub pi_data: Flag,
    pub importable: Flag,
    pub exportable: Flag,
}

/// A custom property as Hood returns it (201 of create, items of the list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileProperty {
    #[serde(deserialize_with = "crate::vendors::wire_id::string_or_number")]
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub data_type: Option<String>,
}

/// Hood's error body `{code, title, message, trace_id}`; every field optional in practice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
}
