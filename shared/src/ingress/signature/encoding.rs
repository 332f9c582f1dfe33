//! How a MAC tag is written into a header: hex or standard base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderName;
pub use relay_core::mapping::signature::Encoding;

use super::SignatureError;
use super::mac::TAG_LEN;

/// Writing and reading MAC tags in an [`Encoding`].
pub trait TagEncoding {
    /// Writes a tag.
    fn encode(self, tag: &[u8]) -> String;
    /// Reads a presented HMAC-SHA256 tag; anything that is not 32 bytes is malformed.
    fn decode_tag(self, header: &HeaderName, text: &str) -> Result<Vec<u8>, SignatureError>;
}

impl TagEncoding for Encoding {
    fn encode(self, tag: &[u8]) -> String {
        match self {
            Self::Hex => hex::encode(tag),
            Self::Base64 => STANDARD.encode(tag),
        }
    }

    fn decode_tag(self, header: &HeaderName, text: &str) -> Result<Vec<u8>, SignatureError> {
        let bytes = match self {
            Self::Hex => {
                hex::decode(text).map_err(|_| SignatureError::malformed(header, "not hex"))?
            }
            Self::Base64 => STANDARD
                .decode(text)
                .map_err(|_| SignatureError::malformed(header, "not base64"))?,
        };
        if bytes.len() != TAG_LEN {
            return Err(SignatureError::malformed(
                header,
                "not a SHA-256 MAC (wrong length)",
            ));
        }
        Ok(bytes)
    }
}

/// Decodes standard base64 (for secrets and Basic credentials).
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// Encodes standard base64.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: HeaderName = HeaderName::from_static("x-sig");

    #[test]
    fn hex_accepts_either_case_and_checks_length() {
        let tag = [0xabu8; 32];
        let upper = Encoding::Hex.encode(&tag).to_uppercase();
        assert_eq!(Encoding::Hex.decode_tag(&H, &upper).unwrap(), tag.to_vec());
        assert_eq!(
            Encoding::Hex.decode_tag(&H, "abcd").unwrap_err().code(),
            "signature_malformed"
        );
        assert_eq!(
            Encoding::Hex.decode_tag(&H, "zz").unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn base64_round_trips_and_checks_length() {
        let tag = [7u8; 32];
        let text = Encoding::Base64.encode(&tag);
        assert_eq!(text, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
        assert_eq!(
            Encoding::Base64.decode_tag(&H, &text).unwrap(),
            tag.to_vec()
        );
        assert!(Encoding::Base64.decode_tag(&H, "AAAA").is_err());
        assert!(Encoding::Base64.decode_tag(&H, "%%%").is_err());
    }
}
