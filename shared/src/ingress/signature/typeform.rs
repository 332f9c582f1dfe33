//! Typeform: `Typeform-Signature: sha256=<base64 HMAC-SHA256(secret, body)>`. No timestamp;
//! replays are caught by deduplicating on the body's `event_id`.

use std::borrow::Cow;

use http::HeaderName;

use super::encoding::Encoding;
use super::generic_hmac::BodyHmac;
use super::mac::MacKey;

/// The signature header.
pub const SIGNATURE: HeaderName = HeaderName::from_static("typeform-signature");

/// Typeform's scheme as a [`BodyHmac`].
#[must_use]
pub fn scheme() -> BodyHmac {
    BodyHmac {
        header: SIGNATURE,
        encoding: Encoding::Base64,
        prefix: Some(Cow::Borrowed("sha256=")),
    }
}

/// The `Typeform-Signature` value.
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
        let key = MacKey::from_text("typeform-secret");
        assert_eq!(
            sign(&key, br#"{"event_id":"01HX","event_type":"form_response"}"#),
            "sha256=nTd3IdLsUTr4b/SKD0IkIW/ysoAnPCdN/8oORrT/RHQ="
        );
    }
}
