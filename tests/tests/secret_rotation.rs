//! Rotating a sender's signing secret in the SSM parameter takes effect in a running ingest
//! function without a cold start: moto serves SSM (the same server as the tests' SQS), the
//! function's verifiers come from `runtime::refreshing_verifiers` over `SsmParameter`, as
//! `ingest_from_env` builds them in Lambda.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ssm::types::ParameterType;
use http::StatusCode;
use relay_shared::ingress::verifiers::Verifiers;
use relay_shared::ingress::{Ingest, RouterConfig, SourceSecrets, router};
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::runtime::{FORM_SIGNUP_ROUTES, refreshing_verifiers};
use relay_shared::secrets::{RefreshPolicy, SsmParameter};
use relay_shared::store::SystemClock;
use relay_shared::store::memory::MemoryStore;
use relay_tests::webhooks::{answer, mappings, signed_with};
use secrecy::SecretString;

const OLD: &str = "tf_old_5e1d9c";
const NEW: &str = "tf_new_77ab30";

async fn ssm() -> aws_sdk_ssm::Client {
    let endpoint = tokio::task::spawn_blocking(relay_tests::moto::sqs_endpoint)
        .await
        .unwrap()
        .unwrap();
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "relay-tests"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

async fn put(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .r#type(ParameterType::SecureString)
        .value(value)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

/// The form-signup function over the parameter `name`, re-read per `policy`.
async fn form_signup(ssm: &aws_sdk_ssm::Client, name: &str, policy: RefreshPolicy) -> axum::Router {
    let mappings = mappings();
    let verifiers = refreshing_verifiers(
        Arc::new(SsmParameter::new(ssm.clone(), name)),
        policy,
        mappings.clone(),
        FORM_SIGNUP_ROUTES,
    )
    .await
    .unwrap();
    let (ingest, _) = Ingest::new(
        mappings,
        &SourceSecrets::new(),
        Arc::new(MemoryStore::new(Arc::new(SystemClock))),
        relay_tests::webhooks::identity(Arc::new(MemoryStore::new(Arc::new(SystemClock)))),
        Arc::new(MemoryQueue::new(Duration::from_secs(30))),
        Arc::new(SystemClock),
    )
    .unwrap();
    router(
        Arc::new(ingest.with_verifiers(Verifiers::refreshing(verifiers))),
        RouterConfig {
            default_scheme: "https",
        },
    )
}

/// A Typeform delivery (a fresh event id each time) signed with `secret`.
async fn deliver(app: &axum::Router, source: &str, secret: &str) -> (StatusCode, String) {
    let mut body: serde_json::Value =
        serde_json::from_str(relay_sandbox::samples::sample(source).unwrap().body).unwrap();
    if source == "typeform" {
        body["event_id"] = uuid::Uuid::new_v4().to_string().into();
    }
    let body = body.to_string();
    let request = signed_with(
        source,
        &SecretString::from(secret),
        &body,
        chrono::Utc::now(),
        None,
    );
    let (status, answer) = answer(app, request).await;
    (status, answer.to_string())
}

fn parameter_name() -> String {
    format!(
        "/relay-tests/{}/ingest-secrets",
        uuid::Uuid::new_v4().simple()
    )
}

/// Re-read at most once an hour by the clock, at once after a refusal: every change in this
/// test is picked up by a signature failure, none by the interval.
const ON_FAILURE_ONLY: RefreshPolicy = RefreshPolicy {
    interval: Duration::from_secs(3600),
    min_forced_gap: Duration::ZERO,
    read_timeout: Duration::from_secs(5),
};

#[tokio::test]
async fn typeform_rotation_in_the_documented_order_loses_no_delivery() {
    let ssm = ssm().await;
    let name = parameter_name();
    put(&ssm, &name, &format!(r#"{{"typeform": ["{OLD}"]}}"#)).await;
    let app = form_signup(&ssm, &name, ON_FAILURE_ONLY).await;

    let (status, body) = deliver(&app, "typeform", OLD).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = deliver(&app, "typeform", NEW).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "not configured yet: {body}"
    );
    assert!(body.contains("signature_invalid"), "{body}");

    // 1. The new secret is added to the parameter as a second secret.
    put(
        &ssm,
        &name,
        &format!(r#"{{"typeform": ["{OLD}", "{NEW}"]}}"#),
    )
    .await;
    // Typeform still signs with the old one meanwhile.
    let (status, body) = deliver(&app, "typeform", OLD).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // 2. The secret is changed at Typeform: the first delivery signed with it fails against
    // the secrets in use, which makes the function re-read the parameter and check again.
    let (status, body) = deliver(&app, "typeform", NEW).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (status, body) = deliver(&app, "typeform", NEW).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn a_dropped_secret_is_refused_from_the_next_re_read() {
    let ssm = ssm().await;
    let name = parameter_name();
    put(
        &ssm,
        &name,
        &format!(r#"{{"typeform": ["{OLD}", "{NEW}"]}}"#),
    )
    .await;
    let interval = Duration::from_secs(1);
    let app = form_signup(
        &ssm,
        &name,
        RefreshPolicy {
            interval,
            min_forced_gap: Duration::ZERO,
            read_timeout: Duration::from_secs(5),
        },
    )
    .await;
    let (status, body) = deliver(&app, "typeform", OLD).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // 3. The old secret is dropped from the parameter. A delivery it signs still matches
    // the secrets in use (nothing fails, so nothing forces a re-read) until the interval
    // has passed; from the next re-read on it is refused.
    put(&ssm, &name, &format!(r#"{{"typeform": ["{NEW}"]}}"#)).await;
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let (status, body) = deliver(&app, "typeform", OLD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = deliver(&app, "typeform", NEW).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn a_source_given_its_first_secret_is_enabled_without_a_restart() {
    let ssm = ssm().await;
    let name = parameter_name();
    put(&ssm, &name, &format!(r#"{{"typeform": ["{OLD}"]}}"#)).await;
    let app = form_signup(&ssm, &name, ON_FAILURE_ONLY).await;
    let (status, body) = deliver(&app, "tally", "tally_secret_1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("source_not_configured"), "{body}");

    put(
        &ssm,
        &name,
        &format!(r#"{{"typeform": ["{OLD}"], "tally": "tally_secret_1"}}"#),
    )
    .await;
    let (status, body) = deliver(&app, "tally", "tally_secret_1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn refusals_re_read_the_parameter_at_most_once_per_gap() {
    let ssm = ssm().await;
    let name = parameter_name();
    put(&ssm, &name, &format!(r#"{{"typeform": ["{OLD}"]}}"#)).await;
    let app = form_signup(
        &ssm,
        &name,
        RefreshPolicy {
            interval: Duration::from_secs(3600),
            min_forced_gap: Duration::from_secs(3600),
            read_timeout: Duration::from_secs(5),
        },
    )
    .await;
    // A forged delivery spends the on-demand re-read of this hour...
    let (status, _) = deliver(&app, "typeform", "forged").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // ...so a rotation now waits for the interval instead of costing an SSM call per request.
    put(
        &ssm,
        &name,
        &format!(r#"{{"typeform": ["{OLD}", "{NEW}"]}}"#),
    )
    .await;
    for _ in 0..3 {
        let (status, body) = deliver(&app, "typeform", NEW).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, body) = deliver(&app, "typeform", OLD).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn an_unusable_new_value_keeps_the_secrets_in_use() {
    let ssm = ssm().await;
    let name = parameter_name();
    put(&ssm, &name, &format!(r#"{{"typeform": ["{OLD}"]}}"#)).await;
    let app = form_signup(&ssm, &name, ON_FAILURE_ONLY).await;
    // Not JSON: the function keeps checking with the secrets it has.
    put(&ssm, &name, r#"{"typeform": ["#).await;
    let (status, body) = deliver(&app, "typeform", NEW).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = deliver(&app, "typeform", OLD).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}
