//! The one error classification, exercised over real HTTP against wiremock: permanent,
//! auth, rate limited (Retry-After seconds, Hood's -1, reset only), transient (5xx, 408,
//! timeout, refused connection) and unexpected bodies; rate-limit headers on error answers;
//! no personal data in error text.

use std::time::Duration;

use relay_shared::vendors::hood::wire::PatchProfile;
use relay_shared::vendors::{
    ChatwootClient, ErrorClass, HoodClient, HoodConfig, RateLimitInfo, Reset, RetryAfter,
    TransientCause, Vendor, VendorError, rate_limit::CONCURRENCY_LIMIT_RETRY,
};
use relay_tests::vendors::{HOOD_TOKEN, channel, chatwoot_config, hood, hood_config, settings};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EMAIL: &str = "john.doe@example.com";

fn patch() -> PatchProfile {
    PatchProfile {
        email: Some(EMAIL.into()),
        full_name: Some("John Doe".into()),
        ..PatchProfile::default()
    }
}

async fn hood_answering(template: ResponseTemplate) -> (MockServer, HoodClient) {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/v1/hood/profiles/1"))
        .respond_with(template)
        .expect(1)
        .mount(&server)
        .await;
    let client = hood(&server);
    (server, client)
}

fn hood_error(code: u16, message: &str) -> serde_json::Value {
    json!({"code": code, "title": "Bad request.", "message": message, "trace_id": format!("trace-{code}")})
}

#[tokio::test]
async fn client_errors_are_permanent_with_message_trace_id_and_rate_limit() {
    for status in [400_u16, 404, 409, 422] {
        let (_server, client) = hood_answering(
            ResponseTemplate::new(status)
                .set_body_json(hood_error(status, "The request is not valid."))
                .insert_header("X-RateLimit-Limit", "150")
                .insert_header("X-RateLimit-Remaining", "140")
                .insert_header("X-RateLimit-Reset", "12"),
        )
        .await;
        let err = client
            .patch_profile("1", &patch())
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            VendorError::Permanent {
                vendor: Vendor::Hood,
                op: "hood.patch_profile",
                status,
                message: Some("The request is not valid.".into()),
                trace_id: Some(format!("trace-{status}")),
                rate_limit: RateLimitInfo {
                    limit: Some(150),
                    remaining: Some(140),
                    reset: Some(Reset::InSeconds(12)),
                    retry_after: None,
                },
            },
            "status {status}"
        );
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            !text.contains(EMAIL) && !text.contains("John Doe"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn personal_data_echoed_by_the_vendor_is_scrubbed() {
    let (_server, client) = hood_answering(ResponseTemplate::new(400).set_body_json(hood_error(
        400,
        "Email john.doe@example.com or +49658245684 is invalid",
    )))
    .await;
    let err = client
        .patch_profile("1", &patch())
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "hood hood.patch_profile: HTTP 400 (permanent): Email <redacted> or <redacted> is invalid [trace_id trace-400]"
    );
}

#[tokio::test]
async fn unauthorised_and_forbidden_are_auth_errors() {
    for status in [401_u16, 403] {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(path("/open/v5/users/@m"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(json!({"type": "unauthorized", "errors": [{"message": "invalid access key"}]}))
                    .insert_header("x-ratelimit-remaining", "50"),
            )
            .expect(1)
            .mount(&server)
            .await;
        let err = channel(&server)
            .upsert_user("m", &Default::default())
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            VendorError::Auth {
                vendor: Vendor::Channelio,
                op: "channelio.upsert_user",
                status,
                message: Some("invalid access key".into()),
                trace_id: None,
                rate_limit: RateLimitInfo {
                    remaining: Some(50),
                    ..RateLimitInfo::default()
                },
            }
        );
        assert_eq!(
            (err.class(), err.status()),
            (ErrorClass::Auth, Some(status))
        );
    }
}

#[tokio::test]
async fn server_errors_and_408_are_transient() {
    for status in [408_u16, 500, 502, 503, 504] {
        let (_server, client) = hood_answering(ResponseTemplate::new(status).set_body_json(
            json!({"code": status, "title": "Internal server error.", "trace_id": "t-5xx"}),
        ))
        .await;
        let err = client
            .patch_profile("1", &patch())
            .await
            .expect_err("failed");
        assert_eq!(
            err,
            VendorError::Transient {
                vendor: Vendor::Hood,
                op: "hood.patch_profile",
                cause: TransientCause::Status(status),
                message: Some("Internal server error.".into()),
                trace_id: Some("t-5xx".into()),
                rate_limit: Some(RateLimitInfo::default()),
            },
            "status {status}"
        );
        assert!(err.is_retryable());
    }
}

#[tokio::test]
async fn rate_limited_with_retry_after_seconds() {
    let (_server, client) = hood_answering(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "7")
            .insert_header("X-RateLimit-Limit", "10")
            .insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-Reset", "1")
            .set_body_json(
                json!({"code": 429, "title": "Too many requests.", "trace_id": "t-429"}),
            ),
    )
    .await;
    let err = client.patch_profile("1", &patch()).await.expect_err("429");
    assert_eq!(
        err,
        VendorError::RateLimited {
            vendor: Vendor::Hood,
            op: "hood.patch_profile",
            retry_after: Duration::from_secs(7),
            concurrency_limit: false,
            trace_id: Some("t-429".into()),
            rate_limit: RateLimitInfo {
                limit: Some(10),
                remaining: Some(0),
                reset: Some(Reset::InSeconds(1)),
                retry_after: Some(RetryAfter::Seconds(7)),
            },
        }
    );
    assert_eq!(
        (err.class(), err.retry_after()),
        (ErrorClass::RateLimited, Some(Duration::from_secs(7)))
    );
}

#[tokio::test]
async fn hood_retry_after_minus_one_is_a_concurrency_limit_with_a_short_retry() {
    let (_server, client) =
        hood_answering(ResponseTemplate::new(429).insert_header("Retry-After", "-1")).await;
    let err = client.patch_profile("1", &patch()).await.expect_err("429");
    assert_eq!(
        err,
        VendorError::RateLimited {
            vendor: Vendor::Hood,
            op: "hood.patch_profile",
            retry_after: CONCURRENCY_LIMIT_RETRY,
            concurrency_limit: true,
            trace_id: None,
            rate_limit: RateLimitInfo {
                retry_after: Some(RetryAfter::ConcurrencyLimit),
                ..RateLimitInfo::default()
            },
        }
    );
    assert_eq!(CONCURRENCY_LIMIT_RETRY, Duration::from_secs(1));
}

#[tokio::test]
async fn rate_limited_without_retry_after_waits_for_the_reset() {
    let (_server, client) = hood_answering(
        ResponseTemplate::new(429)
            .insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-Reset", "3"),
    )
    .await;
    let err = client.patch_profile("1", &patch()).await.expect_err("429");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_a_transient_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/accounts/7/contacts/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"payload": []}))
                .set_delay(Duration::from_secs(1)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut config = chatwoot_config(&server);
    config.http = settings(Some(200));
    let client = ChatwootClient::new(&config).expect("valid config");
    let err = client.search_contacts(EMAIL).await.expect_err("timed out");
    assert_eq!(
        err,
        VendorError::Transient {
            vendor: Vendor::Chatwoot,
            op: "chatwoot.search_contacts",
            cause: TransientCause::Timeout,
            message: None,
            trace_id: None,
            rate_limit: None,
        }
    );
    // The URL (with the e-mail in its query) is not in the error.
    assert!(!err.to_string().contains("example.com"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_a_transient_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // listener dropped: nothing listens on `port` now
    let client = HoodClient::new(&HoodConfig::new(
        format!("http://127.0.0.1:{port}"),
        SecretString::from(HOOD_TOKEN),
    ))
    .expect("valid config");
    let err = client
        .patch_profile("1", &patch())
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            VendorError::Transient {
                cause: TransientCause::Connect,
                rate_limit: None,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_success_with_an_unreadable_body_is_an_unexpected_response_without_its_content() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/open/v5/users/@m"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"user": {"id": 12345, "email": "leak@example.com"}}))
                .insert_header("x-ratelimit-remaining", "8"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = channel(&server)
        .upsert_user("m", &Default::default())
        .await
        .expect_err("id is a number, the wire type wants a string");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(err.rate_limit().and_then(|r| r.remaining), Some(8));
    let VendorError::UnexpectedResponse {
        status, ref detail, ..
    } = err
    else {
        panic!("expected UnexpectedResponse, got {err:?}")
    };
    assert_eq!(status, 200);
    assert!(detail.starts_with("Data error at line 1"), "{detail}");
    assert!(
        !err.to_string().contains("leak@") && !err.to_string().contains("12345"),
        "{err}"
    );
}

#[tokio::test]
async fn chatwoot_errors_take_the_request_id_header_as_trace_id() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/api/v1/accounts/7/contacts/9"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": "Resource could not be found"}))
                .insert_header("x-request-id", "req-abc"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = ChatwootClient::new(&chatwoot_config(&server)).expect("valid config");
    let err = client
        .update_contact(9, &Default::default())
        .await
        .expect_err("404");
    assert_eq!(
        err,
        VendorError::Permanent {
            vendor: Vendor::Chatwoot,
            op: "chatwoot.update_contact",
            status: 404,
            message: Some("Resource could not be found".into()),
            trace_id: Some("req-abc".into()),
            rate_limit: RateLimitInfo::default(),
        }
    );
}

#[tokio::test]
async fn hood_config_with_a_bad_base_url_is_refused() {
    let mut config = hood_config(&MockServer::start().await);
    config.base_url = "not a url".into();
    let err = HoodClient::new(&config).expect_err("bad url");
    assert_eq!(
        err.to_string(),
        "hood: base_url must be an absolute https URL (http only to 127.0.0.1, [::1] or localhost)"
    );
    // Credentials travel in headers: plain http to another host is refused too.
    config.base_url = "http://api.ocamba.com".into();
    assert!(HoodClient::new(&config).is_err());
}
