//! Channel.io's `[vendors.channelio]` section: the memberId field and the field map
//! (`profile.<key>`, `profileOnce.<key>`, tags, unsubscribe flags).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::mapping::canonical::{ValueKind, is_identifier};
use crate::mapping::vendor::Target;
use crate::mapping::{CanonicalField, FieldMap, SectionContext};

/// `[vendors.channelio]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelioSection {
    /// Canonical field whose value is the memberId; present → upsert by memberId.
    #[serde(default)]
    pub member_id: Option<String>,
    pub fields: BTreeMap<String, String>,
}

/// Channel.io's mapping.
#[derive(Debug, Clone)]
pub struct ChannelMapping {
    /// Canonical field whose value is the memberId (upsert); `None` → PATCH by known userId.
    pub member_id: Option<CanonicalField>,
    pub fields: FieldMap,
}

/// Which Channel.io fields a canonical field may go to.
pub fn check_target(t: Target<'_>) -> Result<(), String> {
    match t.target {
        "tags" => t.needs(&[ValueKind::List], "a list of tags"),
        "unsubscribeEmail" | "unsubscribeTexting" => t.needs(
            &[ValueKind::Bool],
            "a consent flag (canonical `consent_email` or `consent_texting`, sent inverted)",
        ),
        other => {
            let key = other
                .strip_prefix("profile.")
                .or_else(|| other.strip_prefix("profileOnce."));
            match key {
                Some(key) if is_identifier(key) => match key {
                    "mobileNumber" => t.needs(
                        &[ValueKind::Phone],
                        "a phone number in E.164 (canonical `phone`)",
                    ),
                    "email" => t.needs_email(),
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
    }
}

/// Checks `[vendors.channelio]`.
pub fn compile(section: ChannelioSection, cx: &mut SectionContext<'_, '_>) -> ChannelMapping {
    let member_id = section
        .member_id
        .and_then(|m| match CanonicalField::parse(&m) {
            // The memberId is part of the URL (`PUT /open/v5/users/@{memberId}`): only ids
            // that hold no personal data — the person id, or an app's own id.
            Some(f @ (CanonicalField::Person | CanonicalField::Custom(_))) => Some(f),
            Some(CanonicalField::Key | CanonicalField::Email | CanonicalField::Phone) => {
                cx.error(
                    "field \"member_id\"",
                    format!("`{m}` cannot be a memberId: the memberId goes into the request URL, and `{m}` may be an e-mail address or phone number (use `person`, the relay's person id, or an app id in custom.<name>)"),
                );
                None
            }
            _ => {
                cx.error(
                    "field \"member_id\"",
                    format!("`{m}` cannot be a memberId (use person or custom.<name>)"),
                );
                None
            }
        });
    ChannelMapping {
        member_id,
        fields: cx.field_map(section.fields, check_target),
    }
}
