//! Canonical field names, as mapping files write them.

use std::fmt;

/// A field of [`crate::model::Contact`], addressable from a mapping file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanonicalField {
    Key,
    /// The person id the relay resolved the contact's identifiers to (vendor side only: a
    /// source cannot set it).
    Person,
    Email,
    Phone,
    FullName,
    Organization,
    Tags,
    Lists,
    ConsentEmail,
    ConsentTexting,
    /// `custom.<name>`.
    Custom(String),
}

/// What kind of value a canonical field holds; vendor fields accept some kinds only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Email,
    Phone,
    List,
    Bool,
    /// A custom property: any JSON scalar (or list) the source sends.
    Any,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Text => "text",
            ValueKind::Email => "an e-mail address",
            ValueKind::Phone => "a phone number",
            ValueKind::List => "a list",
            ValueKind::Bool => "true/false",
            ValueKind::Any => "a custom value",
        })
    }
}

/// The names a mapping file may use, for error messages.
pub const NAMES: &str = "key, person (vendors only), email, phone, full_name, organization, tags, lists, consent_email, consent_texting, custom.<name>";

impl CanonicalField {
    /// Parses a name as written in a mapping file.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "key" => CanonicalField::Key,
            "person" => CanonicalField::Person,
            "email" => CanonicalField::Email,
            "phone" => CanonicalField::Phone,
            "full_name" => CanonicalField::FullName,
            "organization" => CanonicalField::Organization,
            "tags" => CanonicalField::Tags,
            "lists" => CanonicalField::Lists,
            "consent_email" => CanonicalField::ConsentEmail,
            "consent_texting" => CanonicalField::ConsentTexting,
            other => {
                let custom = other.strip_prefix("custom.")?;
                if !is_identifier(custom) {
                    return None;
                }
                CanonicalField::Custom(custom.to_string())
            }
        })
    }

    pub fn kind(&self) -> ValueKind {
        match self {
            CanonicalField::Key
            | CanonicalField::Person
            | CanonicalField::FullName
            | CanonicalField::Organization => ValueKind::Text,
            CanonicalField::Email => ValueKind::Email,
            CanonicalField::Phone => ValueKind::Phone,
            CanonicalField::Tags | CanonicalField::Lists => ValueKind::List,
            CanonicalField::ConsentEmail | CanonicalField::ConsentTexting => ValueKind::Bool,
            CanonicalField::Custom(_) => ValueKind::Any,
        }
    }
}

impl fmt::Display for CanonicalField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanonicalField::Key => f.write_str("key"),
            CanonicalField::Person => f.write_str("person"),
            CanonicalField::Email => f.write_str("email"),
            CanonicalField::Phone => f.write_str("phone"),
            CanonicalField::FullName => f.write_str("full_name"),
            CanonicalField::Organization => f.write_str("organization"),
            CanonicalField::Tags => f.write_str("tags"),
            CanonicalField::Lists => f.write_str("lists"),
            CanonicalField::ConsentEmail => f.write_str("consent_email"),
            CanonicalField::ConsentTexting => f.write_str("consent_texting"),
            CanonicalField::Custom(name) => write!(f, "custom.{name}"),
        }
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters: safe as a JSON key at every vendor.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}
