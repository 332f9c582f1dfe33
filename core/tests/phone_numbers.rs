//! Phone numbers against libphonenumber's own metadata: every example number of every
//! supported region and number type, written as E.164, in international format, after
//! `00` and in national format, normalises to the same E.164 — international forms with
//! unrelated default regions too. Then the formats people type, and well-known
//! libphonenumber results for tricky national rules.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use relay_core::model::{ModelError, PhoneE164, PhoneRegion};
use rlibphonenumber::enums::Region;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumber, PhoneNumberFormat, PhoneNumberType};

/// Every number type. The match below stops compiling when the library adds one.
const ALL_TYPES: [PhoneNumberType; 12] = [
    PhoneNumberType::FixedLine,
    PhoneNumberType::Mobile,
    PhoneNumberType::FixedLineOrMobile,
    PhoneNumberType::TollFree,
    PhoneNumberType::PremiumRate,
    PhoneNumberType::SharedCost,
    PhoneNumberType::VoIP,
    PhoneNumberType::PersonalNumber,
    PhoneNumberType::Pager,
    PhoneNumberType::UAN,
    PhoneNumberType::VoiceMail,
    PhoneNumberType::Unknown,
];

#[allow(dead_code)]
fn all_types_are_listed(t: PhoneNumberType) {
    match t {
        PhoneNumberType::FixedLine
        | PhoneNumberType::Mobile
        | PhoneNumberType::FixedLineOrMobile
        | PhoneNumberType::TollFree
        | PhoneNumberType::PremiumRate
        | PhoneNumberType::SharedCost
        | PhoneNumberType::VoIP
        | PhoneNumberType::PersonalNumber
        | PhoneNumberType::Pager
        | PhoneNumberType::UAN
        | PhoneNumberType::VoiceMail
        | PhoneNumberType::Unknown => {}
    }
}

/// Valid example numbers whose E.164 has fewer than 8 digits, so below the relay's E.164
/// rule ([`PhoneE164::is_e164`]): refused in every form, never stored in a shape that
/// could not be read back.
const SHORTER_THAN_E164_RULE: [(&str, PhoneNumberType); 11] = [
    ("IR", PhoneNumberType::UAN),
    ("NL", PhoneNumberType::UAN),
    ("NO", PhoneNumberType::UAN),
    ("NU", PhoneNumberType::FixedLine),
    ("NU", PhoneNumberType::FixedLineOrMobile),
    ("SJ", PhoneNumberType::UAN),
    ("TA", PhoneNumberType::FixedLine),
    ("TA", PhoneNumberType::FixedLineOrMobile),
    ("TK", PhoneNumberType::FixedLine),
    ("TK", PhoneNumberType::Mobile),
    ("TK", PhoneNumberType::FixedLineOrMobile),
];

fn region(code: &str) -> PhoneRegion {
    PhoneRegion::parse(code).unwrap()
}

fn format(n: &PhoneNumber, f: PhoneNumberFormat) -> String {
    PHONE_NUMBER_UTIL.format(n, f).into_owned()
}

/// Parses example numbers in all their written forms, collecting every mismatch.
struct Checker {
    failures: Vec<String>,
    parses: usize,
}

impl Checker {
    fn expect(&mut self, what: &str, raw: &str, default: &str, want: Option<&str>) {
        self.parses += 1;
        let got = PhoneE164::parse(raw, region(default));
        let ok = match (&got, want) {
            (Ok(p), Some(w)) => p.as_str() == w,
            (Err(ModelError::InvalidPhone(_)), None) => true,
            _ => false,
        };
        if !ok {
            let got = got.map(|p| p.as_str().to_owned());
            self.failures.push(format!(
                "{what}: {raw:?} in {default}: {got:?}, want {want:?}"
            ));
        }
    }

    /// `n` as E.164, in international format and after `00`, in its own and unrelated
    /// default regions, and in national format in `home`, its region (none for
    /// non-geographic numbers such as `+800`).
    fn check(&mut self, what: &str, n: &PhoneNumber, home: Option<&str>, want: Option<&str>) {
        let e164 = format(n, PhoneNumberFormat::E164);
        let international = format(n, PhoneNumberFormat::International);
        let after_00 = format!("00{}", &e164[1..]);
        let own = home.unwrap_or("US");
        for default in [own, "US", "DE", "KR", "TH"] {
            self.expect(what, &e164, default, want);
            self.expect(what, &international, default, want);
            self.expect(what, &after_00, default, want);
        }
        if let Some(home) = home {
            let national = format(n, PhoneNumberFormat::National);
            self.expect(what, &national, home, want);
        }
    }
}

#[test]
fn every_example_number_normalises_in_every_form() {
    let mut regions: Vec<Region> = PHONE_NUMBER_UTIL.get_supported_regions().collect();
    regions.sort();
    let mut checker = Checker {
        failures: Vec::new(),
        parses: 0,
    };
    let mut pairs = 0;
    let mut distinct = BTreeSet::new();
    let mut short = BTreeSet::new();
    for r in &regions {
        let code = r.to_string();
        for t in ALL_TYPES {
            let Ok(n) = PHONE_NUMBER_UTIL.get_example_number_for_type_and_region(*r, t) else {
                continue;
            };
            pairs += 1;
            assert!(
                PHONE_NUMBER_UTIL.is_valid_number(&n),
                "{code} {t:?}: the library's own example is invalid"
            );
            let e164 = format(&n, PhoneNumberFormat::E164);
            distinct.insert(e164.clone());
            let want = if PhoneE164::is_e164(&e164) {
                Some(e164.as_str())
            } else {
                short.insert((code.clone(), format!("{t:?}")));
                None
            };
            checker.check(&format!("{code} {t:?}"), &n, Some(&code), want);
        }
    }
    let mut non_geographic = 0;
    for cc in PHONE_NUMBER_UTIL.get_supported_global_network_calling_codes() {
        let Ok(n) = PHONE_NUMBER_UTIL.get_example_number_for_non_geo_entity(cc) else {
            continue;
        };
        non_geographic += 1;
        let e164 = format(&n, PhoneNumberFormat::E164);
        checker.check(&format!("+{cc}"), &n, None, Some(&e164));
    }

    println!(
        "{} regions, {pairs} (region, type) example numbers ({} distinct), {non_geographic} \
         non-geographic; {} parses; {} refused as shorter than 8 digits",
        regions.len(),
        distinct.len(),
        checker.parses,
        short.len()
    );
    assert!(
        checker.failures.is_empty(),
        "{} of {} parses wrong:\n{}",
        checker.failures.len(),
        checker.parses,
        checker.failures.join("\n")
    );
    assert!(regions.len() > 240, "{} regions", regions.len());
    assert!(pairs > 1000, "only {pairs} example numbers");
    assert!(non_geographic >= 8, "{non_geographic} non-geographic");
    let expected: BTreeSet<(String, String)> = SHORTER_THAN_E164_RULE
        .iter()
        .map(|(r, t)| (r.to_string(), format!("{t:?}")))
        .collect();
    assert_eq!(short, expected, "example numbers below the E.164 rule");
}

#[test]
fn formats_people_type() {
    for (raw, default, want) in [
        ("+49 151 1234 5678", "US", "+4915112345678"),
        ("0049 151 12345678", "US", "+4915112345678"),
        ("(030) 1234567", "DE", "+49301234567"),
        ("010-1234-5678", "KR", "+821012345678"),
        ("+55 (11) 98765-4321", "US", "+5511987654321"),
        ("+4915123456789", "US", "+4915123456789"),
        ("+4915892184011", "US", "+4915892184011"),
        ("+821012345678", "US", "+821012345678"),
        ("+5511987654321", "US", "+5511987654321"),
        ("090-1234-5678", "JP", "+819012345678"),
        ("+81 90 1234 5678", "US", "+819012345678"),
        ("07400 123456", "GB", "+447400123456"),
        ("+44 7400 123456", "US", "+447400123456"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("+1 (415) 555-2671", "DE", "+14155552671"),
        ("001 415 555 2671", "DE", "+14155552671"),
        ("  +49 151 1234 5678  ", "US", "+4915112345678"),
        ("tel:+49-151-12345678", "US", "+4915112345678"),
    ] {
        match PhoneE164::parse(raw, region(default)) {
            Ok(p) => assert_eq!(p.as_str(), want, "{raw:?} in {default}"),
            Err(e) => panic!("{raw:?} in {default}: {e}"),
        }
    }
}

#[test]
fn invalid_numbers_are_refused() {
    for (raw, default) in [
        ("+49 151", "US"),
        ("0049", "US"),
        ("+999 1234567", "US"),
        ("(030) 1234567", "US"),
        ("010-1234-5678", "US"),
        ("+1 415 555 267", "US"),
        ("+1 415 555 26711", "US"),
        ("+44 7400 12345", "US"),
        ("000 49 151 12345678", "US"),
        ("call me", "DE"),
        ("", "DE"),
    ] {
        let got = PhoneE164::parse(raw, region(default));
        assert!(
            matches!(got, Err(ModelError::InvalidPhone(_))),
            "{raw:?} in {default}: {got:?}"
        );
    }
}

/// Results of Google's libphonenumber for rules the metadata encodes (national prefixes
/// other than `0`, mobile tokens, Italian leading zeros, carrier codes, shared country
/// codes), checked against the Python port of the Java library at the same metadata
/// version.
#[test]
fn known_libphonenumber_results() {
    for (raw, default, want) in [
        ("8 (912) 345-67-89", "RU", "+79123456789"),
        ("0343 15 555 1212", "AR", "+5493435551212"),
        ("011 15 2345-6789", "AR", "+5491123456789"),
        ("044 668 18 00", "CH", "+41446681800"),
        ("06 1 234 5678", "HU", "+3612345678"),
        ("02 1234 5678", "IT", "+390212345678"),
        ("+39 02 1234 5678", "US", "+390212345678"),
        ("1-800-FLOWERS", "US", "+18003569377"),
        ("+44 (0)20 7946 0958", "US", "+442079460958"),
        ("+49 (0)30 1234567", "US", "+49301234567"),
        ("0 21 11 98765-4321", "BR", "+5511987654321"),
        ("+447624123456", "US", "+447624123456"),
        ("+262 269 61 23 45", "US", "+262269612345"),
        ("+1 613 555 0123", "US", "+16135550123"),
    ] {
        match PhoneE164::parse(raw, region(default)) {
            Ok(p) => assert_eq!(p.as_str(), want, "{raw:?} in {default}"),
            Err(e) => panic!("{raw:?} in {default}: {e}"),
        }
    }
    let region_of = |e164: &str| {
        let n = PHONE_NUMBER_UTIL.parse(e164, None).unwrap();
        PHONE_NUMBER_UTIL
            .get_region_for_number(&n)
            .map(|r| r.to_string())
    };
    assert_eq!(region_of("+447624123456").as_deref(), Some("IM"));
    assert_eq!(region_of("+262269612345").as_deref(), Some("YT"));
    assert_eq!(region_of("+16135550123").as_deref(), Some("CA"));
    // Since 2019 Mexican numbers have no mobile `1`; the library refuses it.
    assert!(PhoneE164::parse("+52 1 55 1234 5678", region("US")).is_err());
    assert_eq!(
        PhoneE164::parse("+52 55 1234 5678", region("US"))
            .unwrap()
            .as_str(),
        "+525512345678"
    );
}

#[test]
fn every_region_the_metadata_knows_can_be_the_default() {
    let mut n = 0;
    for r in PHONE_NUMBER_UTIL.get_supported_regions() {
        let code = r.to_string();
        assert_eq!(
            PhoneRegion::parse(&code.to_lowercase()),
            PhoneRegion::parse(&code),
            "{code}"
        );
        assert!(PhoneRegion::parse(&code).is_ok(), "{code}");
        n += 1;
    }
    assert!(n > 240);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the input, parsing does not panic, and what it accepts is E.164 that
    /// parses back to itself from any default region.
    #[test]
    fn parsing_never_panics_and_accepted_numbers_are_stable(
        raw in prop_oneof![
            "\\PC{0,40}",
            "[+(]?[0０-９ ()./-]{0,24}",
            "(\\+|00)[1-9][0-9 -]{6,16}",
        ],
        default in prop::sample::select(vec!["US", "DE", "KR", "TH", "AU", "BR", "JP", "GB", "IT"]),
    ) {
        if let Ok(p) = PhoneE164::parse(&raw, region(default)) {
            prop_assert!(PhoneE164::is_e164(p.as_str()));
            for again in ["US", "DE", default] {
                let back = PhoneE164::parse(p.as_str(), region(again)).unwrap();
                prop_assert_eq!(back.as_str(), p.as_str());
            }
        }
    }
}
