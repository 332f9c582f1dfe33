//! HMAC-SHA256 of the raw body in one header, with a configurable header name, encoding and
//! optional prefix (`sha256=` as GitHub and Typeform write it). Typeform and Tally are fixed
//! instances of it; senders that sign the same way need only configuration.

use std::borrow::Cow;

use http::HeaderName;

use super::encoding::{Encoding, TagEncoding};
use super::mac::{MacKey, first_match};
use super::{InboundRequest, SignatureError, Verified};

/// Where and how the body MAC is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyHmac {
    /// Header carrying the signature.
    pub header: HeaderName,
    /// Hex or base64.
    pub encoding: Encoding,
    /// Text before the encoded tag, e.g. `sha256=`; required when set.
    pub prefix: Option<Cow<'static, str>>,
}

impl BodyHmac {
    /// The header value for `body` under `key`.
    #[must_use]
    pub fn sign(&self, key: &MacKey, body: &[u8]) -> String {
        let tag = self.encoding.encode(&key.tag(&[body]));
        match &self.prefix {
            Some(prefix) => format!("{prefix}{tag}"),
            None => tag,
        }
    }

    pub(crate) fn verify(
        &self,
        keys: &[MacKey],
        req: &InboundRequest<'_>,
    ) -> Result<Verified, SignatureError> {
        let value = req.header(&self.header)?;
        let encoded = match &self.prefix {
            Some(prefix) => value.strip_prefix(prefix.as_ref()).ok_or_else(|| {
                SignatureError::malformed(&self.header, "expected prefix missing")
            })?,
            None => value,
        };
        let presented = self.encoding.decode_tag(&self.header, encoded)?;
        let key_index =
            first_match(keys, &[req.body], &[presented]).ok_or(SignatureError::Mismatch)?;
        Ok(Verified {
            delivery_id: None,
            signed_at: None,
            key_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected tags computed independently with Python's hmac module.
    const HEX: &str = "159bd8b47da36756083c99f1c8010ab600e11f12b81c2d24b40cbde438333b27";
    const B64: &str = "FZvYtH2jZ1YIPJnxyAEKtgDhHxK4HC0ktAy95DgzOyc=";

    fn scheme(encoding: Encoding, prefix: Option<&'static str>) -> BodyHmac {
        BodyHmac {
            header: HeaderName::from_static("x-signature"),
            encoding,
            prefix: prefix.map(Cow::Borrowed),
        }
    }

    #[test]
    fn known_answers() {
        let key = MacKey::from_text("generic-secret");
        assert_eq!(scheme(Encoding::Hex, None).sign(&key, b"hello"), HEX);
        assert_eq!(scheme(Encoding::Base64, None).sign(&key, b"hello"), B64);
        assert_eq!(
            scheme(Encoding::Hex, Some("sha256=")).sign(&key, b"hello"),
            format!("sha256={HEX}")
        );
    }

    fn verify_with(s: &BodyHmac, value: &str) -> Result<Verified, SignatureError> {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-signature", value.parse().unwrap());
        let req = InboundRequest::new(&http::Method::POST, "https://h/", &headers, b"hello");
        s.verify(&[MacKey::from_text("generic-secret")], &req)
    }

    #[test]
    fn prefix_is_required_when_configured_and_hex_case_is_free() {
        let prefixed = scheme(Encoding::Hex, Some("sha256="));
        assert!(verify_with(&prefixed, &format!("sha256={}", HEX.to_uppercase())).is_ok());
        assert_eq!(
            verify_with(&prefixed, HEX).unwrap_err().code(),
            "signature_malformed"
        );
        assert_eq!(
            verify_with(&scheme(Encoding::Hex, None), B64)
                .unwrap_err()
                .code(),
            "signature_malformed"
        );
        assert!(verify_with(&scheme(Encoding::Base64, None), B64).is_ok());
    }
}
