//! Phone numbers: parsed by `phonenumber` (a port of Google's libphonenumber) and kept in
//! E.164, the only format Hood, Channel.io and Chatwoot all accept. Numbers written without
//! a country code are read in the configured default region.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ModelError;
use super::redact::REDACTED;

/// The region national-format numbers are read in (ISO 3166-1 alpha-2, e.g. `US`, `DE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PhoneRegion(phonenumber::country::Id);

impl PhoneRegion {
    /// Parses an ISO 3166-1 alpha-2 code, case-insensitively.
    pub fn parse(code: &str) -> Result<Self, ModelError> {
        phonenumber::country::Id::from_str(&code.trim().to_uppercase())
            .map(PhoneRegion)
            .map_err(|_| ModelError::UnknownRegion(code.to_string()))
    }
}

impl std::fmt::Debug for PhoneRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneRegion({:?})", self.0)
    }
}

impl Default for PhoneRegion {
    fn default() -> Self {
        PhoneRegion(phonenumber::country::Id::US)
    }
}

/// A valid phone number in E.164 (`+` and up to 15 digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneE164(String);

impl PhoneE164 {
    /// Parses `raw` (any common notation: spaces, dashes, brackets, `00` or `+` prefixes)
    /// and keeps it only when libphonenumber's metadata says the number is valid.
    pub fn parse(raw: &str, default_region: PhoneRegion) -> Result<Self, ModelError> {
        let number = phonenumber::parse(Some(default_region.0), raw.trim())
            .map_err(|e| ModelError::InvalidPhone(e.to_string()))?;
        if !phonenumber::is_valid(&number) {
            return Err(ModelError::InvalidPhone(
                "not a valid number for its region".into(),
            ));
        }
        Ok(PhoneE164(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    /// Checks the E.164 shape: `+`, a non-zero first digit, 8 to 15 digits in all.
    pub fn is_e164(s: &str) -> bool {
        let Some(digits) = s.strip_prefix('+') else {
            return false;
        };
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PhoneE164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneE164({REDACTED})")
    }
}

impl TryFrom<String> for PhoneE164 {
    type Error = ModelError;
    /// Deserialising accepts only numbers already in E.164 (stored or queued values).
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if PhoneE164::is_e164(&s) {
            Ok(PhoneE164(s))
        } else {
            Err(ModelError::InvalidPhone("not in E.164".into()))
        }
    }
}

impl From<PhoneE164> for String {
    fn from(p: PhoneE164) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(c: &str) -> PhoneRegion {
        PhoneRegion::parse(c).unwrap()
    }

    #[test]
    fn national_numbers_use_the_default_region() {
        assert_eq!(
            PhoneE164::parse("(415) 555-2671", region("US"))
                .unwrap()
                .as_str(),
            "+14155552671"
        );
        assert_eq!(
            PhoneE164::parse("030 901820", region("de"))
                .unwrap()
                .as_str(),
            "+4930901820"
        );
    }

    #[test]
    fn international_numbers_ignore_the_default_region() {
        assert_eq!(
            PhoneE164::parse("+44 20 7946 0958", region("US"))
                .unwrap()
                .as_str(),
            "+442079460958"
        );
        assert_eq!(
            PhoneE164::parse("0044 20 7946 0958", region("DE"))
                .unwrap()
                .as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn refuses_invalid_numbers() {
        for bad in ["", "abc", "12", "+1 555", "+999 1234567"] {
            assert!(
                PhoneE164::parse(bad, region("US")).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn unknown_region_is_an_error() {
        assert_eq!(
            PhoneRegion::parse("XX").unwrap_err(),
            ModelError::UnknownRegion("XX".into())
        );
    }

    #[test]
    fn e164_shape() {
        assert!(PhoneE164::is_e164("+14155552671"));
        assert!(!PhoneE164::is_e164("14155552671"));
        assert!(!PhoneE164::is_e164("+0123456789"));
        assert!(!PhoneE164::is_e164("+1415555267112345"));
    }
}
