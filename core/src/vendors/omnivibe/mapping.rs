//! Omnivibe's `[vendors.omnivibe]` section: which canonical field carries the staff id the
//! agents are configured by, and which agent profile fields a mapping may set (never a
//! password).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::mapping::canonical::ValueKind;
use crate::mapping::vendor::{TEXT, Target, canonical_value};
use crate::mapping::{CanonicalField, FieldMap, SectionContext};
use crate::model::Contact;

/// `[vendors.omnivibe]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmnivibeSection {
    /// Canonical field whose value is the staff id (the `staff_id` of each configured
    /// agent); `key` when absent.
    #[serde(default)]
    pub staff_id: Option<String>,
    pub fields: BTreeMap<String, String>,
}

/// Omnivibe's mapping.
#[derive(Debug, Clone)]
pub struct OmnivibeMapping {
    /// Canonical field whose value is the staff id that picks the agent (and its token).
    /// `key` means the contact key's id without its namespace (`s_7` of `app-staff:s_7`);
    /// any other field is used as it is.
    pub staff_id: CanonicalField,
    pub fields: FieldMap,
}

impl OmnivibeMapping {
    /// The staff id `contact` names (trimmed), if any: what the configured agents are
    /// looked up by. `None` when the field is absent or empty.
    pub fn staff_id(&self, contact: &Contact) -> Option<String> {
        let id = match &self.staff_id {
            CanonicalField::Key => {
                let key = contact.key.as_str();
                key.split_once(':').map_or(key, |(_, id)| id).to_string()
            }
            other => crate::plan::as_text(&canonical_value(contact, other)?),
        };
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    }
}

/// Which agent profile fields a canonical field may go to.
pub fn check_target(t: Target<'_>) -> Result<(), String> {
    match t.target {
        "name" | "display_name" | "message_signature" => t.needs(&TEXT, "text"),
        "email" => t.needs_email(),
        "phone_number" => t.needs_phone(),
        "current_password" | "password" | "password_confirmation" => Err(format!(
            "`{}` is a password field; profile-relay never syncs passwords",
            t.target
        )),
        other => Err(format!(
            "unknown Omnivibe profile field `{other}` (fields: name, email, display_name, message_signature, phone_number)"
        )),
    }
}

/// Checks `[vendors.omnivibe]`.
pub fn compile(section: OmnivibeSection, cx: &mut SectionContext<'_, '_>) -> OmnivibeMapping {
    let staff_id = match section.staff_id.as_deref() {
        None => CanonicalField::Key,
        Some(name) => match CanonicalField::parse(name) {
            Some(f) if !matches!(f.kind(), ValueKind::List | ValueKind::Bool) => f,
            _ => {
                cx.error(
                    "field \"staff_id\"",
                    format!(
                        "`{name}` cannot be a staff id (use key, email, phone or custom.<name>)"
                    ),
                );
                CanonicalField::Key
            }
        },
    };
    OmnivibeMapping {
        staff_id,
        fields: cx.field_map(section.fields, check_target),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::mapping::Mappings;
    use crate::model::{Contact, ContactKey};

    fn omnivibe_section(section: &str) -> String {
        crate::mapping::BUILTIN_MAPPINGS.replace(
            "[vendors.omnivibe]\nstaff_id = \"custom.staff_id\"\n",
            section,
        )
    }

    fn staff(key: &str, custom_staff_id: Option<serde_json::Value>) -> Contact {
        let mut contact = Contact::new(ContactKey::try_from(key.to_string()).unwrap());
        if let Some(id) = custom_staff_id {
            contact.custom.insert("staff_id".into(), id);
        }
        contact
    }

    #[test]
    fn the_builtin_mapping_carries_the_staff_id_whatever_the_contact_key_is() {
        let m = Mappings::builtin().unwrap();
        let o = m.vendors.omnivibe().unwrap();
        // The key may name a person (identity resolution) rather than the staff record.
        let c = staff("person:01JE0000000000000000000000", Some(json!(" s_7 ")));
        assert_eq!(o.staff_id(&c).as_deref(), Some("s_7"));
        // A numeric staff id, as some apps send it.
        let c = staff("app-staff:42", Some(json!(42)));
        assert_eq!(o.staff_id(&c).as_deref(), Some("42"));
        // No staff id in the event: none (the change is skipped, never sent to some agent).
        assert_eq!(o.staff_id(&staff("app-staff:s_7", None)), None);
        assert_eq!(o.staff_id(&staff("app-staff:s_7", Some(json!("  ")))), None);
    }

    #[test]
    fn without_a_staff_id_field_the_key_without_its_namespace_is_the_staff_id() {
        let text = omnivibe_section("");
        assert_ne!(text, crate::mapping::BUILTIN_MAPPINGS);
        let m = Mappings::from_toml("m.toml", &text).unwrap();
        let o = m.vendors.omnivibe().unwrap();
        let c = staff("app-staff:s_7", Some(json!("s_9")));
        assert_eq!(o.staff_id(&c).as_deref(), Some("s_7"));
    }

    #[test]
    fn a_list_or_a_flag_cannot_be_a_staff_id() {
        for field in ["tags", "consent_email", "nonsense"] {
            let text = omnivibe_section(&format!("[vendors.omnivibe]\nstaff_id = \"{field}\"\n"));
            let err = Mappings::from_toml("m.toml", &text).unwrap_err().to_string();
            assert!(
                err.contains("vendor \"omnivibe\", field \"staff_id\"")
                    && err.contains(&format!("`{field}` cannot be a staff id")),
                "{err}"
            );
        }
    }
}
