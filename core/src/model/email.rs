//! E-mail addresses: validated by `email_address` (RFC 5322 syntax), trimmed, lower-cased.
//!
//! Lower-casing the whole address (not only the domain) is deliberate: every vendor here
//! treats addresses case-insensitively, and one spelling keeps idempotency and lookups stable.

use email_address::{EmailAddress, Options};
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::redact::REDACTED;

/// A normalised e-mail address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Validates and normalises `raw`. Display names (`Ann <ann@x.io>`), domain literals and
    /// single-label domains are refused: no vendor here accepts them.
    pub fn parse(raw: &str) -> Result<Self, ModelError> {
        let lowered = raw.trim().to_lowercase();
        let options = Options::default()
            .with_required_tld()
            .without_domain_literal()
            .without_display_text();
        EmailAddress::parse_with_options(&lowered, options)
            .map(|_| Email(lowered))
            .map_err(|e| ModelError::InvalidEmail(e.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Email({REDACTED})")
    }
}

impl TryFrom<String> for Email {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_cases_and_trims() {
        assert_eq!(
            Email::parse("  Ann.Lee@Example.COM ").unwrap().as_str(),
            "ann.lee@example.com"
        );
    }

    #[test]
    fn refuses_what_vendors_refuse() {
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@localhost",
            "Ann <ann@example.com>",
            "ann@[10.0.0.1]",
            "a b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn debug_hides_the_address() {
        let e = Email::parse("ann@example.com").unwrap();
        assert_eq!(format!("{e:?}"), "Email(<redacted>)");
    }
}
