//! Phone numbers: parsed by `rlibphonenumber` (a port of Google's libphonenumber and its
//! metadata) and kept in E.164, the only format Hood, Channel.io and Chatwoot all accept.
//!
//! A number written in international form (`+49 …`, or `0049 …`, the international prefix
//! most of the world dials) never depends on the default region; only numbers written
//! without a country code (`(030) 1234567`) are read in the configured default region.

use std::sync::LazyLock;

use rlibphonenumber::enums::Region;
use rlibphonenumber::{
    CountryCodeSource, PHONE_NUMBER_UTIL, ParseError, PhoneNumber, PhoneNumberFormat,
};
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::redact::REDACTED;

/// Loads libphonenumber's metadata now instead of during the first parse (about 10 ms of a
/// release build's first parse). Parsing a [`PhoneRegion`] loads it too. Idempotent and
/// cheap once done.
pub fn warm_up() {
    LazyLock::force(&PHONE_NUMBER_UTIL);
}

/// The region national-format numbers are read in (ISO 3166-1 alpha-2, e.g. `US`, `DE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PhoneRegion(Region);

impl PhoneRegion {
    /// Parses an ISO 3166-1 alpha-2 code, case-insensitively. Only regions libphonenumber
    /// has metadata for are accepted.
    pub fn parse(code: &str) -> Result<Self, ModelError> {
        let unknown = || ModelError::UnknownRegion(code.to_string());
        let trimmed = code.trim();
        // `from_code` maps any two letters (and `001`, the non-geographic "world") to a
        // variant; a region is known when its metadata has a country calling code.
        if trimmed.len() != 2 {
            return Err(unknown());
        }
        let region = Region::from_code(trimmed).map_err(|_| unknown())?;
        if PHONE_NUMBER_UTIL
            .get_country_code_for_region(region)
            .is_none()
        {
            return Err(unknown());
        }
        Ok(PhoneRegion(region))
    }
}

impl std::fmt::Debug for PhoneRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneRegion({:?})", self.0)
    }
}

impl Default for PhoneRegion {
    fn default() -> Self {
        PhoneRegion(Region::US)
    }
}

/// A valid phone number in E.164 (`+` and up to 15 digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneE164(String);

impl PhoneE164 {
    /// The warning code of a phone number that could not be used.
    pub const INVALID_CODE: &'static str = "phone_invalid";

    /// Parses `raw` (any common notation: spaces, dashes, brackets, `00` or `+` prefixes)
    /// and keeps it only when libphonenumber's metadata says the number is valid.
    ///
    /// `+…` and `00…` are international whatever `default_region` is (libphonenumber alone
    /// would read `0049…` with region US as a US number, and with region TH as `004` + an
    /// Indian number). `default_region` applies only to numbers without a country code,
    /// and to its own international prefix: `011 49…` in the US, and `0011 49…` in
    /// Australia, which is read so only when `+11 49…` is not a valid number.
    ///
    /// A valid number whose E.164 has fewer than 8 digits (a few Niue, Tokelau and
    /// Tristan da Cunha lines and short service numbers) is refused: it would not pass
    /// [`PhoneE164::is_e164`], so it could not be stored or queued.
    pub fn parse(raw: &str, default_region: PhoneRegion) -> Result<Self, ModelError> {
        let raw = raw.trim();
        let region = default_region.0;
        let number = match international_prefix_as_plus(raw) {
            Some(plus) => match parse_valid(&plus, region) {
                Ok(number) => number,
                Err(e) => via_own_international_prefix(raw, region).ok_or(e)?,
            },
            None => parse_valid(raw, region)?,
        };
        let e164 = PHONE_NUMBER_UTIL
            .format(&number, PhoneNumberFormat::E164)
            .into_owned();
        if !PhoneE164::is_e164(&e164) {
            return Err(ModelError::InvalidPhone(
                "too short for the E.164 rule the relay keeps".into(),
            ));
        }
        Ok(PhoneE164(e164))
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

/// A number libphonenumber parses and says is valid.
fn parse_valid(raw: &str, region: Region) -> Result<PhoneNumber, ModelError> {
    let number = PHONE_NUMBER_UTIL
        .parse(raw, Some(region))
        .map_err(|e| ModelError::InvalidPhone(parse_error_reason(&e).into()))?;
    if PHONE_NUMBER_UTIL.is_valid_number(&number) {
        Ok(number)
    } else {
        Err(ModelError::InvalidPhone(
            "not a valid number for its region".into(),
        ))
    }
}

/// `raw` read with the region's own international prefix when that is longer than `00`
/// (AU `0011`, KR `001`, BR `0021`, …): only a valid number whose country code followed
/// that prefix.
fn via_own_international_prefix(raw: &str, region: Region) -> Option<PhoneNumber> {
    let number = PHONE_NUMBER_UTIL
        .parse_and_keep_raw_input(raw, Some(region))
        .ok()?;
    let after_idd = number.country_code_source == Some(CountryCodeSource::FromNumberWithIdd as i32);
    (after_idd && PHONE_NUMBER_UTIL.is_valid_number(&number)).then_some(number)
}

/// `raw` with a leading `00` replaced by `+` when a country code (first digit 1–9,
/// separators allowed in between) follows, so the number is international whatever the
/// default region. Leading spaces and brackets are kept (`(0049) …` becomes `(+49) …`);
/// digits may be any Unicode decimal digits, as libphonenumber accepts them.
fn international_prefix_as_plus(raw: &str) -> Option<String> {
    let start = raw
        .find(|c: char| !(c.is_whitespace() || matches!(c, '(' | '[')))
        .unwrap_or(raw.len());
    let mut chars = raw[start..].char_indices();
    let (Some((_, first)), Some((second_at, second))) = (chars.next(), chars.next()) else {
        return None;
    };
    if digit(first) != Some(0) || digit(second) != Some(0) {
        return None;
    }
    let rest = &raw[start + second_at + second.len_utf8()..];
    let country_code_starts = rest
        .chars()
        .find(|c| !(c.is_whitespace() || matches!(c, '-' | '.' | '/' | '(' | ')')))
        .and_then(digit)
        .is_some_and(|d| d != 0);
    country_code_starts.then(|| format!("{}+{rest}", &raw[..start]))
}

/// The value of a decimal digit in any script (what libphonenumber normalises), else `None`.
fn digit(c: char) -> Option<u32> {
    let mut buf = [0u8; 4];
    let normalised = PHONE_NUMBER_UTIL.normalize_digits_only(c.encode_utf8(&mut buf));
    normalised.chars().next().and_then(|d| d.to_digit(10))
}

/// Why libphonenumber refused a number, in words of our own (never containing the input).
fn parse_error_reason(e: &ParseError) -> &'static str {
    match e {
        ParseError::InvalidCountryCode => "unknown country calling code",
        ParseError::NotANumber(_) => "not a phone number",
        ParseError::TooShortAfterIdd => "too short after the international prefix",
        ParseError::TooShortNsn => "too short",
        ParseError::TooLongNsn => "too long",
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

    fn e164(raw: &str, r: &str) -> String {
        match PhoneE164::parse(raw, region(r)) {
            Ok(p) => p.as_str().to_owned(),
            Err(e) => panic!("{raw:?} in {r}: {e}"),
        }
    }

    #[test]
    fn national_numbers_use_the_default_region() {
        assert_eq!(e164("(415) 555-2671", "US"), "+14155552671");
        assert_eq!(e164("030 901820", "de"), "+4930901820");
        assert_eq!(e164("(030) 1234567", "DE"), "+49301234567");
        assert_eq!(e164("010-1234-5678", "KR"), "+821012345678");
        assert_eq!(e164("090-1234-5678", "JP"), "+819012345678");
        assert_eq!(e164("07400 123456", "GB"), "+447400123456");
        assert_eq!(e164("06 12 34 56 78", "FR"), "+33612345678");
    }

    /// Issue 13: the previous library stripped the default region's national prefix (US:
    /// `1`) from international numbers, corrupting or refusing them.
    #[test]
    fn international_numbers_keep_every_digit_with_region_us() {
        for (raw, want) in [
            ("+4915123456789", "+4915123456789"),
            ("+4915892184011", "+4915892184011"),
            ("+821012345678", "+821012345678"),
            ("+5511987654321", "+5511987654321"),
            ("+49 151 1234 5678", "+4915112345678"),
            ("0049 151 12345678", "+4915112345678"),
            ("+55 (11) 98765-4321", "+5511987654321"),
            ("+81 90 1234 5678", "+819012345678"),
            ("+44 7400 123456", "+447400123456"),
            ("+33 6 12 34 56 78", "+33612345678"),
        ] {
            assert_eq!(e164(raw, "US"), want, "{raw:?}");
        }
    }

    #[test]
    fn international_numbers_ignore_the_default_region() {
        assert_eq!(e164("+44 20 7946 0958", "US"), "+442079460958");
        assert_eq!(e164("0044 20 7946 0958", "DE"), "+442079460958");
        // TH's international prefix is `00[1-9]`: libphonenumber alone reads `004` as the
        // prefix and `9 151…` as a valid Indian number.
        for r in ["US", "DE", "KR", "TH", "JP", "BR", "AU"] {
            assert_eq!(e164("0049 151 12345678", r), "+4915112345678", "{r}");
            assert_eq!(e164("(0049) 151-12345678", r), "+4915112345678", "{r}");
            assert_eq!(e164("+49 151 12345678", r), "+4915112345678", "{r}");
        }
    }

    #[test]
    fn the_default_regions_own_international_prefix_still_works() {
        assert_eq!(e164("011 49 151 12345678", "US"), "+4915112345678");
        // `+11 49…` is not valid, so AU's `0011` is the prefix; the same for KR's `001`.
        assert_eq!(e164("0011 49 151 12345678", "AU"), "+4915112345678");
        assert_eq!(e164("001 49 151 12345678", "KR"), "+4915112345678");
        // Elsewhere `0011…` stays `+11…`, which is not a number.
        assert!(PhoneE164::parse("0011 49 151 12345678", region("DE")).is_err());
    }

    #[test]
    fn other_digits_and_plus_signs_are_understood() {
        assert_eq!(
            e164("＋４９ １５１ １２３４ ５６７８", "US"),
            "+4915112345678"
        );
        assert_eq!(
            e164("００４９ １５１ １２３４ ５６７８", "US"),
            "+4915112345678"
        );
    }

    #[test]
    fn only_00_and_a_country_code_is_rewritten() {
        let plus = |s| international_prefix_as_plus(s);
        assert_eq!(plus("0049 1").as_deref(), Some("+49 1"));
        assert_eq!(plus(" (00 49) 1").as_deref(), Some(" (+ 49) 1"));
        assert_eq!(plus("００４９").as_deref(), Some("+４９"));
        for kept in ["000 1", "0 049", "00", "00-", "030 1234", "+49", "", "  "] {
            assert_eq!(plus(kept), None, "{kept:?}");
        }
    }

    #[test]
    fn refuses_invalid_numbers() {
        for bad in [
            "",
            "abc",
            "12",
            "+1 555",
            "+999 1234567",
            "00",
            "0049",
            "+49 151",
            "+0049 151 12345678",
            "555-2671",
            "+1 415 555 26711",
        ] {
            assert!(
                PhoneE164::parse(bad, region("US")).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn errors_never_contain_the_number() {
        for bad in [
            "+999 1234567",
            "+4915",
            "+49 151 1234 5678 9999 9999 9999",
            "+1 555 1234",
            "0049",
            "+6837012", // valid Niue number, shorter than 8 digits
        ] {
            let err = PhoneE164::parse(bad, region("US")).unwrap_err();
            let ModelError::InvalidPhone(reason) = &err else {
                panic!("{bad:?}: {err:?}");
            };
            for shown in [err.to_string(), format!("{err:?}")] {
                // No run of more than 3 digits (`E.164` is one of 3): no part of a number.
                let longest_run = shown
                    .split(|c: char| !c.is_ascii_digit())
                    .map(str::len)
                    .max();
                assert!(longest_run <= Some(3), "{bad:?} leaks into {shown:?}");
            }
            assert!(!reason.is_empty());
            assert_eq!(err.code(), PhoneE164::INVALID_CODE);
        }
    }

    #[test]
    fn unknown_region_is_an_error() {
        for code in ["XX", "001", "", "USA", "U", "ZZ", "AA", "1A"] {
            assert_eq!(
                PhoneRegion::parse(code).unwrap_err(),
                ModelError::UnknownRegion(code.into()),
                "{code:?}"
            );
        }
        assert_eq!(region(" gb "), region("GB"));
        assert_eq!(PhoneRegion::default(), region("US"));
        assert_eq!(format!("{:?}", region("de")), "PhoneRegion(DE)");
    }

    #[test]
    fn debug_is_redacted_and_serde_keeps_e164() {
        let p = PhoneE164::parse("+49 151 1234 5678", region("US")).unwrap();
        assert_eq!(format!("{p:?}"), format!("PhoneE164({REDACTED})"));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"+4915112345678\"");
        assert_eq!(serde_json::from_str::<PhoneE164>(&json).unwrap(), p);
        assert!(serde_json::from_str::<PhoneE164>("\"+49 151 1234 5678\"").is_err());
    }

    #[test]
    fn warm_up_is_idempotent() {
        warm_up();
        warm_up();
        assert_eq!(e164("+14155552671", "US"), "+14155552671");
    }

    #[test]
    fn e164_shape() {
        assert!(PhoneE164::is_e164("+14155552671"));
        assert!(!PhoneE164::is_e164("14155552671"));
        assert!(!PhoneE164::is_e164("+0123456789"));
        assert!(!PhoneE164::is_e164("+1415555267112345"));
    }
}
