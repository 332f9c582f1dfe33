//! Chatwoot's `[vendors.chatwoot]` section: contact fields and attribute keys.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::mapping::canonical::{ValueKind, is_identifier};
use crate::mapping::vendor::{TEXT, Target};
use crate::mapping::{FieldMap, SectionContext};

/// `[vendors.chatwoot]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatwootSection {
    pub fields: BTreeMap<String, String>,
}

/// Which Chatwoot contact fields a canonical field may go to.
pub fn check_target(t: Target<'_>) -> Result<(), String> {
    match t.target {
        "name" => t.needs(&TEXT, "text"),
        "identifier" => t.needs(
            &[ValueKind::Text, ValueKind::Any],
            "text (usually canonical `key`)",
        ),
        "email" => t.needs_email(),
        "phone_number" => t.needs_phone(),
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
    }
}

/// Checks `[vendors.chatwoot]`.
pub fn compile(section: ChatwootSection, cx: &mut SectionContext<'_, '_>) -> FieldMap {
    cx.field_map(section.fields, check_target)
}
