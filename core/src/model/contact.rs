//! The canonical contact: what every source maps into and every vendor is synced from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::redact::debug_fields;
use super::{Email, ModelError, PersonId, PhoneE164};

/// A contact's stable identity across events: the sender's own id when the source has one
/// (`hubspot:901`, `pipedrive:42`), else the normalised e-mail (`email:ann@example.com`),
/// else the phone (`phone:+14155552671`). Stored only hashed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContactKey(String);

impl ContactKey {
    /// A key from a sender's own id, namespaced so ids of different systems never collide.
    pub fn external(namespace: &str, id: &str) -> Result<Self, ModelError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(ModelError::EmptyContactKey);
        }
        Ok(ContactKey(format!("{namespace}:{id}")))
    }

    pub fn from_email(email: &Email) -> Self {
        ContactKey(format!("email:{}", email.as_str()))
    }

    pub fn from_phone(phone: &PhoneE164) -> Self {
        ContactKey(format!("phone:{}", phone.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SHA-256 hex of the key: what the store keeps, so no address or number is at rest.
    pub fn hashed(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for ContactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContactKey(#{})", &self.hashed()[..12])
    }
}

impl TryFrom<String> for ContactKey {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.trim().is_empty() {
            Err(ModelError::EmptyContactKey)
        } else {
            Ok(ContactKey(s))
        }
    }
}

impl From<ContactKey> for String {
    fn from(k: ContactKey) -> String {
        k.0
    }
}

/// Marketing consent as the sender stated it; `None` means the event said nothing, which
/// is different from a withdrawal and must not overwrite the vendor's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texting: Option<bool>,
}

/// A contact as one event describes it. Every field but the key is optional: an absent
/// field was not part of this change and is left alone at the vendors.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub key: ContactKey,
    /// The person every identifier of this contact resolved to, set by ingest's identity
    /// step (`relay_shared::store::identity`); `None` before it (mapping, previews).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<PersonId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneE164>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Labels (Channel.io tags), normalised by [`super::tags::normalise_tags`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Hood list ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<Vec<String>>,
    #[serde(default)]
    pub consent: Consent,
    /// Custom properties by canonical name (`plan`, `utm_source`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, Value>,
}

impl Contact {
    /// A contact with only its key.
    pub fn new(key: ContactKey) -> Self {
        Contact {
            key,
            person: None,
            email: None,
            phone: None,
            full_name: None,
            organization: None,
            tags: None,
            lists: None,
            consent: Consent::default(),
            custom: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "Contact",
            &[
                ("email", self.email.is_some()),
                ("phone", self.phone.is_some()),
                ("full_name", self.full_name.is_some()),
                ("organization", self.organization.is_some()),
                ("tags", self.tags.is_some()),
                ("lists", self.lists.is_some()),
                ("consent.email", self.consent.email.is_some()),
                ("consent.texting", self.consent.texting.is_some()),
                ("custom", !self.custom.is_empty()),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_hashed() {
        let k = ContactKey::external("hubspot", " 901 ").unwrap();
        assert_eq!(k.as_str(), "hubspot:901");
        assert_eq!(k.hashed().len(), 64);
        assert!(!format!("{k:?}").contains("901"));
        assert_eq!(
            ContactKey::external("hubspot", " "),
            Err(ModelError::EmptyContactKey)
        );
    }

    #[test]
    fn debug_names_fields_not_values() {
        let mut c = Contact::new(ContactKey::from_email(
            &Email::parse("ann@example.com").unwrap(),
        ));
        c.full_name = Some("Ann Lee".into());
        let shown = format!("{c:?}");
        assert!(shown.contains("full_name"));
        assert!(!shown.contains("Ann") && !shown.contains("example.com"));
    }
}
