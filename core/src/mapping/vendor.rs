//! Vendor field maps: which canonical field goes to which vendor field, checked at load
//! against what each vendor's page documents.

use std::collections::BTreeMap;

use serde_json::Value;

use super::canonical::{CanonicalField, ValueKind, is_identifier};
use crate::model::Contact;
use crate::model::Vendor;

/// Canonical field → vendor field pairs, validated.
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    entries: Vec<(CanonicalField, String)>,
}

impl FieldMap {
    pub(crate) fn new(entries: Vec<(CanonicalField, String)>) -> Self {
        FieldMap { entries }
    }

    /// The vendor fields this change sets, with their canonical values (JSON), in map order.
    /// Fields absent from the change are absent here: they stay as they are at the vendor.
    pub fn project(&self, contact: &Contact) -> Vec<(&str, Value)> {
        self.entries
            .iter()
            .filter_map(|(field, target)| {
                canonical_value(contact, field).map(|v| (target.as_str(), v))
            })
            .collect()
    }

    /// The vendor field a canonical field maps to, if any.
    pub fn target_of(&self, field: &CanonicalField) -> Option<&str> {
        self.entries
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, t)| t.as_str())
    }

    pub fn entries(&self) -> &[(CanonicalField, String)] {
        &self.entries
    }
}

/// The value of one canonical field of `contact`, as JSON.
pub fn canonical_value(contact: &Contact, field: &CanonicalField) -> Option<Value> {
    match field {
        CanonicalField::Key => Some(Value::String(contact.key.as_str().to_string())),
        CanonicalField::Email => contact
            .email
            .as_ref()
            .map(|e| Value::String(e.as_str().to_string())),
        CanonicalField::Phone => contact
            .phone
            .as_ref()
            .map(|p| Value::String(p.as_str().to_string())),
        CanonicalField::FullName => contact.full_name.clone().map(Value::String),
        CanonicalField::Organization => contact.organization.clone().map(Value::String),
        CanonicalField::Tags => contact
            .tags
            .as_ref()
            .map(|t| t.iter().cloned().map(Value::String).collect()),
        CanonicalField::Lists => contact
            .lists
            .as_ref()
            .map(|t| t.iter().cloned().map(Value::String).collect()),
        CanonicalField::ConsentEmail => contact.consent.email.map(Value::Bool),
        CanonicalField::ConsentTexting => contact.consent.texting.map(Value::Bool),
        CanonicalField::Custom(name) => contact.custom.get(name).cloned(),
    }
}

/// Hood's mapping: fields plus the definitions of custom properties to create when missing.
#[derive(Debug, Clone)]
pub struct HoodMapping {
    pub fields: FieldMap,
    /// By label: how each mapped custom property is defined when Hood lacks it (the Hood
    /// plan turns it into the body of `POST /v1/hood/profile-properties`).
    pub properties: BTreeMap<String, PropertyDefinition>,
}

/// A Hood custom property's definition, as the mapping file gives it (with defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyDefinition {
    pub label: String,
    pub example: String,
    pub description: String,
    pub export_alias: String,
    /// Whether values are personal data (Hood's `pi_data`).
    pub personal_data: bool,
}

/// Channel.io's mapping.
#[derive(Debug, Clone)]
pub struct ChannelMapping {
    /// Canonical field whose value is the memberId (upsert); `None` → PATCH by known userId.
    pub member_id: Option<CanonicalField>,
    pub fields: FieldMap,
}

/// All vendor mappings of one file.
#[derive(Debug, Clone, Default)]
pub struct VendorMappings {
    pub hood: Option<HoodMapping>,
    pub channelio: Option<ChannelMapping>,
    pub omnivibe: Option<FieldMap>,
    pub chatwoot: Option<FieldMap>,
}

impl VendorMappings {
    /// Whether the file has a section for `vendor`.
    pub fn has(&self, vendor: Vendor) -> bool {
        match vendor {
            Vendor::Hood => self.hood.is_some(),
            Vendor::Channelio => self.channelio.is_some(),
            Vendor::Omnivibe => self.omnivibe.is_some(),
            Vendor::Chatwoot => self.chatwoot.is_some(),
        }
    }
}

/// Hood's built-in profile fields, which a custom property may not shadow.
const HOOD_RESERVED: [&str; 12] = [
    "id",
    "email",
    "mobile_phone_number",
    "full_name",
    "organization_id",
    "lists",
    "comment",
    "custom_properties",
    "country",
    "company_id",
    "create_time",
    "update_time",
];

/// The relay's rule for Hood custom property labels, conservative so Hood never refuses
/// one: lowercase ASCII letters, digits and `_`, starting with a letter, at most 64
/// characters, not a built-in profile field (the docs' own example is `my_region`).
pub fn check_hood_property_label(label: &str) -> Result<(), String> {
    let mut chars = label.chars();
    let well_formed = matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && label.len() <= 64;
    if !well_formed {
        return Err(format!(
            "Hood would refuse the custom property name `{label}`: use lowercase letters, digits and `_`, starting with a letter, at most 64 characters"
        ));
    }
    if HOOD_RESERVED.contains(&label) {
        return Err(format!(
            "`{label}` is a built-in Hood profile field, not a custom property name"
        ));
    }
    Ok(())
}

/// Checks that `field` may be sent to `vendor`'s field `target`.
pub(crate) fn check_target(
    vendor: Vendor,
    field: &CanonicalField,
    target: &str,
) -> Result<(), String> {
    let kind = field.kind();
    let needs = |wanted: &[ValueKind], what: &str| -> Result<(), String> {
        if wanted.contains(&kind) {
            Ok(())
        } else {
            Err(format!(
                "{vendor} field `{target}` takes {what}, but `{field}` holds {kind}"
            ))
        }
    };
    let text = [ValueKind::Text, ValueKind::Any];
    let scalar = [
        ValueKind::Text,
        ValueKind::Email,
        ValueKind::Phone,
        ValueKind::Bool,
        ValueKind::Any,
    ];
    match vendor {
        Vendor::Hood => match target {
            "email" => needs(&[ValueKind::Email], "an e-mail address (canonical `email`)"),
            "mobile_phone_number" => {
                needs(&[ValueKind::Phone], "a phone number (canonical `phone`)")
            }
            "full_name" | "organization_id" | "comment" => needs(&text, "text"),
            "lists" => needs(&[ValueKind::List], "a list of list ids"),
            other => match other.strip_prefix("custom_properties.") {
                Some(label) => {
                    check_hood_property_label(label)?;
                    needs(&scalar, "a single value")
                }
                None => Err(format!(
                    "unknown Hood field `{other}` (updatable fields: email, mobile_phone_number, full_name, organization_id, lists, comment, custom_properties.<name>)"
                )),
            },
        },
        Vendor::Channelio => match target {
            "tags" => needs(&[ValueKind::List], "a list of tags"),
            "unsubscribeEmail" | "unsubscribeTexting" => needs(
                &[ValueKind::Bool],
                "a consent flag (canonical `consent_email` or `consent_texting`, sent inverted)",
            ),
            other => {
                let key = other
                    .strip_prefix("profile.")
                    .or_else(|| other.strip_prefix("profileOnce."));
                match key {
                    Some(key) if is_identifier(key) => match key {
                        "mobileNumber" => needs(
                            &[ValueKind::Phone],
                            "a phone number in E.164 (canonical `phone`)",
                        ),
                        "email" => {
                            needs(&[ValueKind::Email], "an e-mail address (canonical `email`)")
                        }
                        _ => Ok(()),
                    },
                    Some(key) => Err(format!(
                        "`{key}` is not a usable Channel.io profile key (letters, digits, `_`)"
                    )),
                    None => Err(format!(
                        "unknown Channel.io field `{other}` (fields: profile.<key>, profileOnce.<key>, tags, unsubscribeEmail, unsubscribeTexting)"
                    )),
                }
            }
        },
        Vendor::Omnivibe => match target {
            "name" | "display_name" | "message_signature" => needs(&text, "text"),
            "email" => needs(&[ValueKind::Email], "an e-mail address (canonical `email`)"),
            "phone_number" => needs(&[ValueKind::Phone], "a phone number (canonical `phone`)"),
            "current_password" | "password" | "password_confirmation" => Err(format!(
                "`{target}` is a password field; profile-relay never syncs passwords"
            )),
            other => Err(format!(
                "unknown Omnivibe profile field `{other}` (fields: name, email, display_name, message_signature, phone_number)"
            )),
        },
        Vendor::Chatwoot => match target {
            "name" => needs(&text, "text"),
            "identifier" => needs(
                &[ValueKind::Text, ValueKind::Any],
                "text (usually canonical `key`)",
            ),
            "email" => needs(&[ValueKind::Email], "an e-mail address (canonical `email`)"),
            "phone_number" => needs(&[ValueKind::Phone], "a phone number (canonical `phone`)"),
            other => {
                let key = other
                    .strip_prefix("custom_attributes.")
                    .or_else(|| other.strip_prefix("additional_attributes."));
                match key {
                    Some(key) if is_identifier(key) => Ok(()),
                    Some(key) => Err(format!(
                        "`{key}` is not a usable Chatwoot attribute key (letters, digits, `_`)"
                    )),
                    None => Err(format!(
                        "unknown Chatwoot contact field `{other}` (fields: name, email, phone_number, identifier, custom_attributes.<key>, additional_attributes.<key>)"
                    )),
                }
            }
        },
    }
}

/// The default definition of a Hood custom property, overridable per label in the file.
pub(crate) fn hood_property(
    label: &str,
    field: &CanonicalField,
    overrides: Option<&super::file::HoodPropertySection>,
) -> PropertyDefinition {
    let o = overrides.cloned().unwrap_or_default();
    PropertyDefinition {
        label: label.to_string(),
        example: o.example.unwrap_or_else(|| "example".into()),
        description: o
            .description
            .unwrap_or_else(|| format!("Synced by profile-relay from `{field}`.")),
        export_alias: o.export_alias.unwrap_or_else(|| label.to_string()),
        personal_data: o.personal_data.unwrap_or(false),
    }
}
