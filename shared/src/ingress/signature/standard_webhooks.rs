//! Standard Webhooks (<https://www.standardwebhooks.com>, used by Svix and others):
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")> [...]` where
//! the key is the base64-decoded part of a `whsec_` secret and the timestamp is Unix seconds.
//! The sender's `webhook-id` is its delivery id; it stays the same across retries.

use chrono::{DateTime, TimeDelta, Utc};
use http::HeaderName;

use super::encoding::{Encoding, TagEncoding, base64_decode};
use super::mac::{MacKey, first_match};
use super::timestamp::{self, Unit};
use super::{InboundRequest, SignatureError, Verified};

/// The sender's message id, stable across retries.
pub const ID: HeaderName = HeaderName::from_static("webhook-id");
/// Unix seconds at signing.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// Space-separated `version,signature` entries.
pub const SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

const SECRET_PREFIX: &str = "whsec_";
const VERSION: &str = "v1";

/// Turns a `whsec_<base64>` secret (prefix optional) into the HMAC key.
pub fn decode_secret(secret: &str) -> Result<MacKey, &'static str> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
    match base64_decode(encoded) {
        Some(bytes) if !bytes.is_empty() => Ok(MacKey::from_bytes(bytes)),
        Some(_) => Err("empty key"),
        None => Err("not whsec_ followed by base64"),
    }
}

/// The `webhook-signature` value for one key: `v1,<base64>`.
#[must_use]
pub fn sign(key: &MacKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = key.tag(&signed_parts(id, &ts, body));
    format!("{VERSION},{}", Encoding::Base64.encode(&tag))
}

fn signed_parts<'a>(id: &'a str, ts: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", ts.as_bytes(), b".", body]
}

pub(crate) fn verify(
    keys: &[MacKey],
    req: &InboundRequest<'_>,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
) -> Result<Verified, SignatureError> {
    let id = req.header(&ID)?;
    let ts_text = req.header(&TIMESTAMP)?;
    let signatures = req.header(&SIGNATURE)?;
    let signed_at = timestamp::parse(&TIMESTAMP, ts_text, Unit::Seconds)?;

    // Entries of other versions (e.g. `v1a` asymmetric) are skipped, as are undecodable
    // ones; if nothing usable remains the header is malformed.
    let presented: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .filter_map(|(_, sig)| Encoding::Base64.decode_tag(&SIGNATURE, sig).ok())
        .collect();
    if presented.is_empty() {
        return Err(SignatureError::malformed(
            &SIGNATURE,
            "no v1 HMAC-SHA256 entry",
        ));
    }

    let key_index = first_match(keys, &signed_parts(id, ts_text, req.body), &presented)
        .ok_or(SignatureError::Mismatch)?;
    timestamp::check_fresh(signed_at, now, tolerance)?;
    Ok(Verified {
        delivery_id: Some(id.to_owned()),
        signed_at: Some(signed_at),
        key_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's published example.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_example() {
        let key = decode_secret(SPEC_SECRET).unwrap();
        assert_eq!(sign(&key, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    }

    // The example in the standardwebhooks 1.0.1 crate's own tests.
    #[test]
    fn signs_the_reference_library_example() {
        let key = decode_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn verifies_the_specification_example_among_other_entries() {
        let keys = [decode_secret(SPEC_SECRET).unwrap()];
        let mut headers = http::HeaderMap::new();
        headers.insert(ID, SPEC_ID.parse().unwrap());
        headers.insert(TIMESTAMP, SPEC_TS.to_string().parse().unwrap());
        let sig = format!("v1a,AAAA v2,abc garbage v1,{} {SPEC_SIG}", "A".repeat(44));
        headers.insert(SIGNATURE, sig.parse().unwrap());
        let req = InboundRequest::new(&http::Method::POST, "https://x/y", &headers, SPEC_BODY);
        let now = DateTime::from_timestamp(SPEC_TS + 299, 0).unwrap();
        let verified = verify(&keys, &req, now, TimeDelta::seconds(300)).unwrap();
        assert_eq!(verified.delivery_id.as_deref(), Some(SPEC_ID));
        assert_eq!(verified.signed_at.unwrap().timestamp(), SPEC_TS);
        assert_eq!(verified.key_index, 0);
    }

    #[test]
    fn secret_without_prefix_is_accepted_and_garbage_is_not() {
        let with = decode_secret(SPEC_SECRET).unwrap();
        let without = decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(with.tag(&[b"x"]), without.tag(&[b"x"]));
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_").is_err());
    }
}
