//! `Debug` without personal data: types that carry e-mail addresses, phone numbers or names
//! print which fields are set, never the values, so a stray `{:?}` cannot leak them.

use std::fmt;

/// Writes `Name { set: [field, ...] }` listing the fields that are present.
pub fn debug_fields(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    fields: &[(&str, bool)],
) -> fmt::Result {
    let set: Vec<&str> = fields
        .iter()
        .filter(|(_, present)| *present)
        .map(|(n, _)| *n)
        .collect();
    f.debug_struct(name).field("set", &set).finish()
}

/// Shown in place of a personal value.
pub const REDACTED: &str = "<redacted>";
