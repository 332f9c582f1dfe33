//! Hood's `[vendors.hood]` section: fields (profile fields and `custom_properties.<label>`)
//! and optional details of custom property definitions, checked against Hood's page.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::mapping::canonical::ValueKind;
use crate::mapping::vendor::{SCALAR, TEXT, Target};
use crate::mapping::{CanonicalField, FieldMap, SectionContext};

/// `[vendors.hood]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoodSection {
    /// Canonical field → Hood field (`custom_properties.<label>` for custom properties).
    pub fields: BTreeMap<String, String>,
    /// Optional details for custom property definitions, by label.
    #[serde(default)]
    pub properties: BTreeMap<String, HoodPropertySection>,
}

/// `[vendors.hood.properties.<label>]`: how a custom property is defined when missing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoodPropertySection {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub example: Option<String>,
    #[serde(default)]
    pub export_alias: Option<String>,
    /// Whether the property holds personal data (Hood's `pi_data`).
    #[serde(default)]
    pub personal_data: Option<bool>,
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

/// Which Hood fields a canonical field may go to.
pub fn check_target(t: Target<'_>) -> Result<(), String> {
    match t.target {
        "email" => t.needs_email(),
        "mobile_phone_number" => t.needs_phone(),
        "full_name" | "organization_id" | "comment" => t.needs(&TEXT, "text"),
        "lists" => t.needs(&[ValueKind::List], "a list of list ids"),
        other => match other.strip_prefix("custom_properties.") {
            Some(label) => {
                check_hood_property_label(label)?;
                t.needs(&SCALAR, "a single value")
            }
            None => Err(format!(
                "unknown Hood field `{other}` (updatable fields: email, mobile_phone_number, full_name, organization_id, lists, comment, custom_properties.<name>)"
            )),
        },
    }
}

/// Checks `[vendors.hood]`.
pub fn compile(section: HoodSection, cx: &mut SectionContext<'_, '_>) -> HoodMapping {
    let fields = cx.field_map(section.fields, check_target);
    let mut properties = BTreeMap::new();
    for (field, target) in fields.entries() {
        if let Some(label) = target.strip_prefix("custom_properties.") {
            properties.insert(
                label.to_string(),
                property(label, field, section.properties.get(label)),
            );
        }
    }
    for label in section.properties.keys() {
        if !properties.contains_key(label) {
            cx.error(
                &format!("properties \"{label}\""),
                "defines a custom property no field maps to (`custom_properties.<label>`)",
            );
        }
    }
    HoodMapping { fields, properties }
}

/// The default definition of a Hood custom property, overridable per label in the file.
fn property(
    label: &str,
    field: &CanonicalField,
    overrides: Option<&HoodPropertySection>,
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
