//! Tally: `Tally-Signature: <base64 HMAC-SHA256(secret, body)>`, no prefix, no timestamp;
//! replays are caught by deduplicating on the body's `eventId`.

use http::HeaderName;

use super::encoding::Encoding;
use super::generic_hmac::BodyHmac;
use super::mac::MacKey;

/// The signature header.
pub const SIGNATURE: HeaderName = HeaderName::from_static("tally-signature");

/// Tally's scheme as a [`BodyHmac`].
#[must_use]
pub fn scheme() -> BodyHmac {
    BodyHmac {
        header: SIGNATURE,
        encoding: Encoding::Base64,
        prefix: None,
    }
}

/// The `Tally-Signature` value.
#[must_use]
pub fn sign(key: &MacKey, body: &[u8]) -> String {
    scheme().sign(key, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently with Python's hmac module.
    #[test]
    fn known_answer() {
        let key = MacKey::from_text("tally-secret");
        assert_eq!(
            sign(&key, br#"{"eventId":"a1","eventType":"FORM_RESPONSE"}"#),
            "69+ZYJ15q/2Iw540nstB1EHxXo4aPm4hQ2C3Xw3SD40="
        );
    }
}
