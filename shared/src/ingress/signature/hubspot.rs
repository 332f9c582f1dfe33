//! HubSpot signature v3: `X-HubSpot-Signature-v3 = base64(HMAC-SHA256(app secret,
//! method + uri + body + timestamp))`, `X-HubSpot-Request-Timestamp` in Unix milliseconds.
//!
//! The URI is the one HubSpot called (the app's target URL plus any query), as sent. HubSpot
//! documents that before signing it decodes these percent-escapes in the URI, and only
//! these: `%3A :`, `%2F /`, `%3F ?`, `%40 @`, `%21 !`, `%24 $`, `%27 '`, `%28 (`, `%29 )`,
//! `%2A *`, `%2C ,`, `%3B ;`. [`signed_uri`] does the same (hex digits in either case); every
//! other escape, e.g. `%20`, stays as is. Signing and verifying both go through it.

use std::borrow::Cow;

use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderName, Method};

use super::encoding::{Encoding, TagEncoding};
use super::mac::{MacKey, first_match};
use super::timestamp::{self, Unit};
use super::{InboundRequest, SignatureError, Verified};

/// base64 HMAC-SHA256.
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-hubspot-signature-v3");
/// Unix milliseconds at signing; signed as the literal header text.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-hubspot-request-timestamp");

/// The URI as HubSpot signs it: the documented escapes decoded, everything else untouched.
#[must_use]
pub fn signed_uri(uri: &str) -> Cow<'_, str> {
    if !uri.contains('%') {
        return Cow::Borrowed(uri);
    }
    let bytes = uri.as_bytes();
    let mut out = String::with_capacity(uri.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(c) = decoded(bytes[i + 1], bytes[i + 2])
        {
            out.push(c);
            i += 3;
            continue;
        }
        // Copy one whole UTF-8 character.
        let ch_len = uri[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&uri[i..i + ch_len]);
        i += ch_len;
    }
    Cow::Owned(out)
}

fn decoded(hi: u8, lo: u8) -> Option<char> {
    let pair = [hi.to_ascii_uppercase(), lo.to_ascii_uppercase()];
    Some(match &pair {
        b"3A" => ':',
        b"2F" => '/',
        b"3F" => '?',
        b"40" => '@',
        b"21" => '!',
        b"24" => '$',
        b"27" => '\'',
        b"28" => '(',
        b"29" => ')',
        b"2A" => '*',
        b"2C" => ',',
        b"3B" => ';',
        _ => return None,
    })
}

/// The `X-HubSpot-Signature-v3` value.
#[must_use]
pub fn sign(key: &MacKey, method: &Method, uri: &str, body: &[u8], timestamp_ms: i64) -> String {
    let ts = timestamp_ms.to_string();
    let uri = signed_uri(uri);
    Encoding::Base64.encode(&key.tag(&signed_parts(method, &uri, body, &ts)))
}

fn signed_parts<'a>(
    method: &'a Method,
    uri: &'a str,
    body: &'a [u8],
    ts: &'a str,
) -> [&'a [u8]; 4] {
    [
        method.as_str().as_bytes(),
        uri.as_bytes(),
        body,
        ts.as_bytes(),
    ]
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
    let presented = Encoding::Base64.decode_tag(&SIGNATURE, signature)?;
    let uri = signed_uri(req.uri);
    let key_index = first_match(
        keys,
        &signed_parts(req.method, &uri, req.body, ts_text),
        &[presented],
    )
    .ok_or(SignatureError::Mismatch)?;
    timestamp::check_fresh(signed_at, now, tolerance)?;
    // A HubSpot request batches up to 100 events, each with its own eventId: no single
    // delivery id for the request.
    Ok(Verified {
        delivery_id: None,
        signed_at: Some(signed_at),
        key_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Secret and body from HubSpot's v1/v2 documentation examples; expected values computed
    // independently with Python's hmac module over the literal decoded source string.
    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    const TS: i64 = 1_564_113_600_000;

    #[test]
    fn known_answer_plain_uri() {
        let key = MacKey::from_text(SECRET);
        assert_eq!(
            sign(
                &key,
                &Method::POST,
                "https://www.example.com/webhook_uri",
                BODY.as_bytes(),
                TS
            ),
            "DxmVAjFNa2xfF3YgQjdZP6TNcok9k1oaH7UXombPtvw="
        );
    }

    #[test]
    fn known_answer_with_decoded_escapes() {
        // Signed source string used the URI `...?mail=a@b.c&s=x%20z!()`.
        let key = MacKey::from_text(SECRET);
        let sent = "https://www.example.com/webhook_uri?mail=a%40b.c&s=x%20z%21%28%29";
        assert_eq!(
            sign(&key, &Method::POST, sent, BODY.as_bytes(), TS),
            "TGhJyOKCinwAzIAAIHTYoC+lcosrGg1CAC+DX/cufzM="
        );
    }

    #[test]
    fn signed_uri_decodes_only_the_documented_escapes() {
        assert_eq!(
            signed_uri("https://h/p%3a%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B?q=%20%2B%25%26%3D%2"),
            "https://h/p::/?@!$'()*,;?q=%20%2B%25%26%3D%2"
        );
        assert!(matches!(signed_uri("https://h/plain"), Cow::Borrowed(_)));
        assert_eq!(signed_uri("https://h/é%40"), "https://h/é@");
    }
}
