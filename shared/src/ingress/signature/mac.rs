//! The one HMAC-SHA256 routine every scheme uses, for signing and for verifying, so a test
//! that signs with it exercises exactly the code that verifies.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use std::fmt;
use subtle::{Choice, ConstantTimeEq};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes; a presented tag of another length cannot match.
pub const TAG_LEN: usize = 32;

/// An HMAC key. Held in a `SecretSlice` (zeroised on drop) and printed as `<redacted>`.
#[derive(Clone)]
pub struct MacKey(SecretSlice<u8>);

impl MacKey {
    /// Wraps raw key bytes (e.g. the base64-decoded part of a `whsec_` secret).
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    /// Uses the UTF-8 bytes of a shared secret as the key, as Typeform, Tally, Webflow and
    /// HubSpot do.
    #[must_use]
    pub fn from_text(text: &str) -> Self {
        Self::from_bytes(text.as_bytes().to_vec())
    }

    /// The tag over the concatenation of `parts`: the signing half.
    #[must_use]
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret())
            .expect("invariant: HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

/// Constant-time equality of two byte strings (length differences are not hidden; MAC
/// lengths are public).
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// The verifying half: the index of the first key whose tag over `parts` equals any of the
/// `presented` tags. Every key and every presented tag is compared, so the time taken does
/// not depend on which (if any) matched.
#[must_use]
pub fn first_match(keys: &[MacKey], parts: &[&[u8]], presented: &[Vec<u8>]) -> Option<usize> {
    let mut found: Option<usize> = None;
    for (index, key) in keys.iter().enumerate() {
        let expected = key.tag(parts);
        let hit = presented.iter().fold(Choice::from(0), |acc, tag| {
            acc | tag.as_slice().ct_eq(&expected)
        });
        if bool::from(hit) && found.is_none() {
            found = Some(index);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn rfc4231_case_2() {
        let key = MacKey::from_text("Jefe");
        let tag = key.tag(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn first_match_reports_the_matching_key() {
        let keys = [MacKey::from_text("old"), MacKey::from_text("new")];
        let tag = keys[1].tag(&[b"body"]);
        assert_eq!(
            first_match(&keys, &[b"body"], &[vec![0; TAG_LEN], tag.to_vec()]),
            Some(1)
        );
        assert_eq!(first_match(&keys, &[b"other"], &[tag.to_vec()]), None);
        assert_eq!(first_match(&keys, &[b"body"], &[tag[..31].to_vec()]), None);
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", MacKey::from_text("hunter2")),
            "MacKey(<redacted>)"
        );
    }
}
