//! Webflow: `x-webflow-signature = hex(HMAC-SHA256(secret, "{timestamp}:{body}"))` with
//! `x-webflow-timestamp` in Unix milliseconds, signed as the literal header text.

use chrono::{DateTime, TimeDelta, Utc};
use http::HeaderName;

use super::encoding::{Encoding, TagEncoding};
use super::mac::{MacKey, first_match};
use super::timestamp::{self, Unit};
use super::{InboundRequest, SignatureError, Verified};

/// Hex HMAC-SHA256.
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-webflow-signature");
/// Unix milliseconds at signing.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-webflow-timestamp");

/// The `x-webflow-signature` value.
#[must_use]
pub fn sign(key: &MacKey, timestamp_ms: i64, body: &[u8]) -> String {
    let ts = timestamp_ms.to_string();
    Encoding::Hex.encode(&key.tag(&[ts.as_bytes(), b":", body]))
}

pub(crate) fn verify(
    keys: &[MacKey],
    req: &InboundRequest<'_>,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
) -> Result<Verified, SignatureError> {
    let signature = req.header(&SIGNATURE)?;
    let ts_text = req.header(&TIMESTAMP)?;
    let signed_at = timestamp::parse(&TIMESTAMP, ts_text, Unit::Millis)?;
    let presented = Encoding::Hex.decode_tag(&SIGNATURE, signature)?;
    let key_index = first_match(keys, &[ts_text.as_bytes(), b":", req.body], &[presented])
        .ok_or(SignatureError::Mismatch)?;
    timestamp::check_fresh(signed_at, now, tolerance)?;
    Ok(Verified {
        delivery_id: None,
        signed_at: Some(signed_at),
        key_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently with Python's hmac module.
    #[test]
    fn known_answer() {
        let key = MacKey::from_text("webflow-secret");
        assert_eq!(
            sign(
                &key,
                1_700_000_000_000,
                br#"{"triggerType":"form_submission"}"#
            ),
            "b3555385655f1b504d8a121f400a825219995dff805af24210462d0f771474ae"
        );
    }
}
