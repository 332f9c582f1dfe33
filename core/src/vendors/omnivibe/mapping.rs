//! Omnivibe's `[vendors.omnivibe]` section: which agent profile fields a mapping may set
//! (never a password).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::mapping::vendor::{TEXT, Target};
use crate::mapping::{FieldMap, SectionContext};

/// `[vendors.omnivibe]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmnivibeSection {
    pub fields: BTreeMap<String, String>,
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
pub fn compile(section: OmnivibeSection, cx: &mut SectionContext<'_, '_>) -> FieldMap {
    cx.field_map(section.fields, check_target)
}
