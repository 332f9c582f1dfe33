//! Behaviour every scheme shares, checked through the public [`Verifier`] for each one:
//! valid, tampered, wrong secret, rotation, time window, missing and malformed headers,
//! plus property tests for sign→verify.

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, Method};
use proptest::prelude::*;
use secrecy::SecretString;

use super::*;

const URI: &str = "https://relay.example.com/hooks/src?a=1&b=%40x";
const BODY: &[u8] = br#"{"event_id":"e-1","email":"someone@example.com"}"#;

struct Case {
    scheme: SignatureScheme,
    /// Two different valid secrets: current and previous.
    secrets: [&'static str; 2],
    /// Headers the scheme signs or needs; each one's absence is `Missing`.
    required: &'static [&'static str],
    /// The header holding the MAC/credentials.
    signature: &'static str,
    timestamped: bool,
    body_signed: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            scheme: SignatureScheme::StandardWebhooks,
            secrets: [
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            ],
            required: &["webhook-id", "webhook-timestamp", "webhook-signature"],
            signature: "webhook-signature",
            timestamped: true,
            body_signed: true,
        },
        Case {
            scheme: SignatureScheme::Hubspot,
            secrets: ["hubspot-current", "hubspot-previous"],
            required: &["x-hubspot-signature-v3", "x-hubspot-request-timestamp"],
            signature: "x-hubspot-signature-v3",
            timestamped: true,
            body_signed: true,
        },
        Case {
            scheme: SignatureScheme::Typeform,
            secrets: ["typeform-current", "typeform-previous"],
            required: &["typeform-signature"],
            signature: "typeform-signature",
            timestamped: false,
            body_signed: true,
        },
        Case {
            scheme: SignatureScheme::Tally,
            secrets: ["tally-current", "tally-previous"],
            required: &["tally-signature"],
            signature: "tally-signature",
            timestamped: false,
            body_signed: true,
        },
        Case {
            scheme: SignatureScheme::Webflow,
            secrets: ["webflow-current", "webflow-previous"],
            required: &["x-webflow-signature", "x-webflow-timestamp"],
            signature: "x-webflow-signature",
            timestamped: true,
            body_signed: true,
        },
        Case {
            scheme: SignatureScheme::HttpBasic,
            secrets: ["pipedrive:current-pass", "pipedrive:previous-pass"],
            required: &["authorization"],
            signature: "authorization",
            timestamped: false,
            body_signed: false,
        },
        Case {
            scheme: SignatureScheme::GenericHmac {
                header: HeaderName::from_static("x-signature"),
                encoding: Encoding::Hex,
                prefix: Some("sha256=".into()),
            },
            secrets: ["generic-current", "generic-previous"],
            required: &["x-signature"],
            signature: "x-signature",
            timestamped: false,
            body_signed: true,
        },
        Case {
            scheme: SignatureScheme::GenericHmac {
                header: HeaderName::from_static("x-sig-b64"),
                encoding: Encoding::Base64,
                prefix: None,
            },
            secrets: ["generic-current", "generic-previous"],
            required: &["x-sig-b64"],
            signature: "x-sig-b64",
            timestamped: false,
            body_signed: true,
        },
    ]
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 123_000_000).expect("valid instant")
}

fn verifier(scheme: &SignatureScheme, secrets: &[&str]) -> Verifier {
    let secrets: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(*s)).collect();
    Verifier::new(scheme, &secrets).expect("valid secrets")
}

fn signed(signer: &Verifier, body: &[u8]) -> HeaderMap {
    signer
        .sign(&SignRequest {
            method: &Method::POST,
            uri: URI,
            body,
            now: now(),
            delivery_id: Some("msg_1"),
        })
        .expect("signable")
}

fn check(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    at: DateTime<Utc>,
) -> Result<Verified, SignatureError> {
    v.verify(&InboundRequest::new(&Method::POST, URI, headers, body), at)
}

#[test]
fn valid_request_passes_with_current_secret() {
    for case in cases() {
        let v = verifier(&case.scheme, &case.secrets);
        let verified = check(&v, &signed(&v, BODY), BODY, now())
            .unwrap_or_else(|e| panic!("{}: {e}", v.scheme()));
        assert_eq!(verified.key_index, 0, "{}", v.scheme());
        let expected_id =
            matches!(case.scheme, SignatureScheme::StandardWebhooks).then(|| "msg_1".to_owned());
        assert_eq!(verified.delivery_id, expected_id, "{}", v.scheme());
        if case.timestamped {
            let signed_at = verified.signed_at.expect("timestamped");
            // Seconds resolution for Standard Webhooks, milliseconds for HubSpot and Webflow.
            assert!(
                signed_at <= now() && now() - signed_at < chrono::TimeDelta::seconds(1),
                "{}",
                v.scheme()
            );
        } else {
            assert_eq!(verified.signed_at, None, "{}", v.scheme());
        }
    }
}

#[test]
fn tampered_body_is_a_mismatch() {
    for case in cases().into_iter().filter(|c| c.body_signed) {
        let v = verifier(&case.scheme, &case.secrets);
        let tampered = br#"{"event_id":"e-1","email":"attacker@example.com"}"#;
        assert_eq!(
            check(&v, &signed(&v, BODY), tampered, now()),
            Err(SignatureError::Mismatch),
            "{}",
            v.scheme()
        );
    }
}

#[test]
fn basic_auth_does_not_cover_the_body() {
    let case = cases()
        .into_iter()
        .find(|c| !c.body_signed)
        .expect("basic case");
    let v = verifier(&case.scheme, &case.secrets);
    assert!(check(&v, &signed(&v, BODY), b"anything", now()).is_ok());
}

#[test]
fn wrong_secret_is_a_mismatch() {
    for case in cases() {
        let signer = verifier(&case.scheme, &case.secrets[1..]);
        let v = verifier(&case.scheme, &case.secrets[..1]);
        assert_eq!(
            check(&v, &signed(&signer, BODY), BODY, now()),
            Err(SignatureError::Mismatch),
            "{}",
            v.scheme()
        );
    }
}

#[test]
fn previous_secret_still_verifies_during_rotation() {
    for case in cases() {
        let signer = verifier(&case.scheme, &case.secrets[1..]);
        let v = verifier(&case.scheme, &case.secrets);
        let verified = check(&v, &signed(&signer, BODY), BODY, now())
            .unwrap_or_else(|e| panic!("{}: {e}", v.scheme()));
        assert_eq!(verified.key_index, 1, "{}", v.scheme());
    }
}

#[test]
fn timestamps_outside_five_minutes_are_stale_both_ways() {
    let five = chrono::TimeDelta::seconds(300);
    let over = chrono::TimeDelta::seconds(302);
    for case in cases() {
        let v = verifier(&case.scheme, &case.secrets);
        let headers = signed(&v, BODY);
        // At exactly the tolerance (minus the sub-second part of `now`) it still passes.
        assert!(
            check(
                &v,
                &headers,
                BODY,
                now() + five - chrono::TimeDelta::milliseconds(200)
            )
            .is_ok(),
            "{}",
            v.scheme()
        );
        assert!(
            check(&v, &headers, BODY, now() - five).is_ok(),
            "{}",
            v.scheme()
        );
        for at in [now() + over, now() - over] {
            let result = check(&v, &headers, BODY, at);
            if case.timestamped {
                assert_eq!(
                    result.map_err(|e| e.code()),
                    Err("timestamp_stale"),
                    "{}",
                    v.scheme()
                );
            } else {
                assert!(result.is_ok(), "{} has no timestamp", v.scheme());
            }
        }
    }
}

#[test]
fn stale_error_reports_direction_and_tolerance() {
    let v = verifier(&SignatureScheme::Webflow, &["s"]);
    let headers = signed(&v, BODY);
    let at = now() + chrono::TimeDelta::seconds(400);
    assert_eq!(
        check(&v, &headers, BODY, at),
        Err(SignatureError::StaleTimestamp {
            skew_secs: 400,
            tolerance_secs: 300
        })
    );
    let at = now() - chrono::TimeDelta::seconds(400);
    assert_eq!(
        check(&v, &headers, BODY, at),
        Err(SignatureError::StaleTimestamp {
            skew_secs: -400,
            tolerance_secs: 300
        })
    );
}

#[test]
fn tolerance_is_configurable() {
    let v = verifier(&SignatureScheme::Hubspot, &["s"])
        .with_tolerance(std::time::Duration::from_secs(10));
    let headers = signed(&v, BODY);
    assert!(check(&v, &headers, BODY, now() + chrono::TimeDelta::seconds(9)).is_ok());
    assert_eq!(
        check(&v, &headers, BODY, now() + chrono::TimeDelta::seconds(11)).map_err(|e| e.code()),
        Err("timestamp_stale")
    );
}

#[test]
fn forged_signature_with_stale_timestamp_is_a_mismatch_not_stale() {
    let v = verifier(
        &SignatureScheme::StandardWebhooks,
        &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    );
    let other = verifier(
        &SignatureScheme::StandardWebhooks,
        &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
    );
    let headers = signed(&other, BODY);
    let at = now() + chrono::TimeDelta::hours(1);
    assert_eq!(check(&v, &headers, BODY, at), Err(SignatureError::Mismatch));
}

#[test]
fn each_missing_header_is_reported_by_name() {
    for case in cases() {
        let v = verifier(&case.scheme, &case.secrets);
        for name in case.required {
            let mut headers = signed(&v, BODY);
            assert!(
                headers.remove(*name).is_some(),
                "{} signs {name}",
                v.scheme()
            );
            assert_eq!(
                check(&v, &headers, BODY, now()),
                Err(SignatureError::Missing {
                    header: HeaderName::from_static(name)
                }),
                "{}",
                v.scheme()
            );
        }
    }
}

#[test]
fn malformed_signature_headers_are_malformed() {
    for case in cases() {
        let v = verifier(&case.scheme, &case.secrets);
        for garbage in ["!!!", "sha256=", "v1,", "Bearer abc", "   "] {
            let mut headers = signed(&v, BODY);
            headers.insert(case.signature, garbage.parse().expect("ascii"));
            let result = check(&v, &headers, BODY, now());
            assert_eq!(
                result.map_err(|e| e.code()),
                Err("signature_malformed"),
                "{} {garbage:?}",
                v.scheme()
            );
        }
        let mut headers = signed(&v, BODY);
        headers.insert(
            case.signature,
            http::HeaderValue::from_bytes(b"caf\xe9").expect("obs-text"),
        );
        assert_eq!(
            check(&v, &headers, BODY, now()).map_err(|e| e.code()),
            Err("signature_malformed")
        );
    }
}

#[test]
fn malformed_timestamps_are_malformed() {
    for case in cases().into_iter().filter(|c| c.timestamped) {
        let v = verifier(&case.scheme, &case.secrets);
        let ts_header = case
            .required
            .iter()
            .find(|h| h.contains("timestamp"))
            .expect("has timestamp");
        for garbage in ["soon", "-1", "1.5e9"] {
            let mut headers = signed(&v, BODY);
            headers.insert(*ts_header, garbage.parse().expect("ascii"));
            assert_eq!(
                check(&v, &headers, BODY, now()).map_err(|e| e.code()),
                Err("signature_malformed")
            );
        }
    }
}

#[test]
fn signed_metadata_is_covered() {
    // Changing the timestamp, the delivery id, the URI or the method breaks the MAC for the
    // schemes that sign them.
    let sw = verifier(
        &SignatureScheme::StandardWebhooks,
        &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    );
    let mut headers = signed(&sw, BODY);
    headers.insert("webhook-id", "msg_2".parse().expect("ascii"));
    assert_eq!(
        check(&sw, &headers, BODY, now()),
        Err(SignatureError::Mismatch)
    );
    let mut headers = signed(&sw, BODY);
    headers.insert(
        "webhook-timestamp",
        (now().timestamp() + 1).to_string().parse().expect("ascii"),
    );
    assert_eq!(
        check(&sw, &headers, BODY, now()),
        Err(SignatureError::Mismatch)
    );

    let wf = verifier(&SignatureScheme::Webflow, &["s"]);
    let mut headers = signed(&wf, BODY);
    headers.insert(
        "x-webflow-timestamp",
        (now().timestamp_millis() + 1)
            .to_string()
            .parse()
            .expect("ascii"),
    );
    assert_eq!(
        check(&wf, &headers, BODY, now()),
        Err(SignatureError::Mismatch)
    );

    let hs = verifier(&SignatureScheme::Hubspot, &["s"]);
    let headers = signed(&hs, BODY);
    let other_uri = InboundRequest::new(
        &Method::POST,
        "https://relay.example.com/hooks/other",
        &headers,
        BODY,
    );
    assert_eq!(hs.verify(&other_uri, now()), Err(SignatureError::Mismatch));
    let other_method = InboundRequest::new(&Method::PUT, URI, &headers, BODY);
    assert_eq!(
        hs.verify(&other_method, now()),
        Err(SignatureError::Mismatch)
    );
    // HubSpot decodes `%40` before signing, so the decoded form of the URI verifies too.
    let decoded = InboundRequest::new(
        &Method::POST,
        "https://relay.example.com/hooks/src?a=1&b=@x",
        &headers,
        BODY,
    );
    assert!(hs.verify(&decoded, now()).is_ok());
}

#[test]
fn standard_webhooks_sign_generates_an_id_when_none_is_given() {
    let v = verifier(
        &SignatureScheme::StandardWebhooks,
        &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    );
    let req = SignRequest {
        method: &Method::POST,
        uri: URI,
        body: BODY,
        now: now(),
        delivery_id: None,
    };
    let headers = v.sign(&req).expect("signable");
    let id = headers["webhook-id"].to_str().expect("ascii").to_owned();
    assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
    assert_eq!(
        check(&v, &headers, BODY, now()).expect("valid").delivery_id,
        Some(id)
    );
    let bad = SignRequest {
        delivery_id: Some("a\nb"),
        ..req
    };
    assert_eq!(
        v.sign(&bad),
        Err(SignError::InvalidHeaderValue {
            header: HeaderName::from_static("webhook-id")
        })
    );
}

#[test]
fn bad_secrets_are_refused_at_construction() {
    let new = |scheme: &SignatureScheme, secrets: &[&str]| {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(*s)).collect();
        Verifier::new(scheme, &secrets).map(|_| ())
    };
    assert_eq!(
        new(&SignatureScheme::Typeform, &[]),
        Err(SecretError::NoSecrets { scheme: "typeform" })
    );
    assert!(matches!(
        new(&SignatureScheme::Tally, &["ok", ""]),
        Err(SecretError::Invalid {
            scheme: "tally",
            index: 1,
            ..
        })
    ));
    assert!(matches!(
        new(
            &SignatureScheme::StandardWebhooks,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_%%"]
        ),
        Err(SecretError::Invalid {
            scheme: "standard_webhooks",
            index: 1,
            ..
        })
    ));
    assert!(matches!(
        new(&SignatureScheme::HttpBasic, &["no-colon"]),
        Err(SecretError::Invalid {
            scheme: "http_basic",
            index: 0,
            ..
        })
    ));
}

#[test]
fn debug_output_never_contains_secrets() {
    for case in cases() {
        let v = verifier(&case.scheme, &case.secrets);
        let debug = format!("{v:?}");
        for secret in case.secrets {
            for part in secret.split(':') {
                assert!(
                    !debug.contains(part.trim_start_matches("whsec_")),
                    "{debug}"
                );
            }
        }
        assert!(debug.contains("redacted"), "{debug}");
    }
}

#[derive(Debug, serde::Deserialize)]
struct Source {
    signature: SignatureScheme,
}

fn parse(toml_text: &str) -> Result<SignatureScheme, String> {
    toml::from_str::<Source>(toml_text)
        .map(|s| s.signature)
        .map_err(|e| e.to_string())
}

#[test]
fn schemes_deserialize_from_config() {
    let expect = [
        (
            r#"signature = { scheme = "standard_webhooks" }"#,
            SignatureScheme::StandardWebhooks,
        ),
        (
            r#"signature = { scheme = "hubspot" }"#,
            SignatureScheme::Hubspot,
        ),
        (
            r#"signature = { scheme = "hubspot_v3" }"#,
            SignatureScheme::Hubspot,
        ),
        (
            r#"signature = { scheme = "typeform" }"#,
            SignatureScheme::Typeform,
        ),
        (
            r#"signature = { scheme = "tally" }"#,
            SignatureScheme::Tally,
        ),
        (
            r#"signature = { scheme = "webflow" }"#,
            SignatureScheme::Webflow,
        ),
        (
            r#"signature = { scheme = "http_basic" }"#,
            SignatureScheme::HttpBasic,
        ),
        (
            r#"signature = { scheme = "basic" }"#,
            SignatureScheme::HttpBasic,
        ),
        (
            r#"signature = { scheme = "generic_hmac", header = "X-Signature", encoding = "hex", prefix = "sha256=" }"#,
            SignatureScheme::GenericHmac {
                header: HeaderName::from_static("x-signature"),
                encoding: Encoding::Hex,
                prefix: Some("sha256=".into()),
            },
        ),
        (
            r#"signature = { scheme = "generic_hmac", header = "x-sig", encoding = "base64" }"#,
            SignatureScheme::GenericHmac {
                header: HeaderName::from_static("x-sig"),
                encoding: Encoding::Base64,
                prefix: None,
            },
        ),
    ];
    for (text, scheme) in expect {
        assert_eq!(parse(text).as_ref(), Ok(&scheme), "{text}");
    }
}

#[test]
fn config_mistakes_are_refused() {
    for text in [
        r#"signature = { scheme = "stripe" }"#,
        r#"signature = { scheme = "typeform", secret = "inline" }"#,
        r#"signature = { scheme = "generic_hmac", header = "x-sig" }"#,
        r#"signature = { scheme = "generic_hmac", header = "bad header", encoding = "hex" }"#,
        r#"signature = { scheme = "generic_hmac", header = "x-sig", encoding = "base32" }"#,
        r#"signature = { scheme = "typeform", header = "x-sig" }"#,
        r#"signature = { encoding = "hex" }"#,
    ] {
        assert!(parse(text).is_err(), "{text}");
    }
    let message = parse(r#"signature = { scheme = "stripe" }"#).unwrap_err();
    assert!(
        message.contains("unknown signature scheme `stripe`"),
        "{message}"
    );
    let message = parse(r#"signature = { scheme = "tally", prefix = "x" }"#).unwrap_err();
    assert!(
        message.contains("takes no header, encoding or prefix"),
        "{message}"
    );
}

fn schemes_strategy() -> impl Strategy<Value = usize> {
    0..cases().len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_verify_round_trips(index in schemes_strategy(), body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let case = &cases()[index];
        let v = verifier(&case.scheme, &case.secrets);
        let verified = check(&v, &signed(&v, &body), &body, now());
        prop_assert!(verified.is_ok(), "{}: {:?}", v.scheme(), verified);
    }

    #[test]
    fn any_single_byte_change_fails(
        index in schemes_strategy(),
        body in proptest::collection::vec(any::<u8>(), 1..1024),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let case = &cases()[index];
        prop_assume!(case.body_signed);
        let v = verifier(&case.scheme, &case.secrets);
        let headers = signed(&v, &body);
        let mut tampered = body;
        let i = at.index(tampered.len());
        tampered[i] ^= flip;
        prop_assert_eq!(check(&v, &headers, &tampered, now()), Err(SignatureError::Mismatch));
    }

    #[test]
    fn appending_or_truncating_fails(
        index in schemes_strategy(),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        extra in any::<u8>(),
    ) {
        let case = &cases()[index];
        prop_assume!(case.body_signed);
        let v = verifier(&case.scheme, &case.secrets);
        let headers = signed(&v, &body);
        let mut longer = body.clone();
        longer.push(extra);
        prop_assert_eq!(check(&v, &headers, &longer, now()), Err(SignatureError::Mismatch));
        prop_assert_eq!(check(&v, &headers, &body[..body.len() - 1], now()), Err(SignatureError::Mismatch));
    }
}
