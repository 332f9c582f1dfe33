//! Signed webhook requests as API Gateway HTTP API (payload v2.0) delivers them to Lambda,
//! for every built-in source, with known test secrets.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::{HeaderMap, Method};
use relay_shared::ingress::signature::{SignRequest, Verifier};
use relay_shared::ingress::{Identity, Ingest, RouterConfig, SourceSecrets, router};
use relay_shared::mapping::{Mappings, Route};
use relay_shared::queue::Queue;
use relay_shared::store::{Clock, IdempotencyStore, IdentityKey, IdentityStore};
use secrecy::SecretString;
use serde_json::Value;

/// The host API Gateway reports (and HubSpot signs).
pub const HOST: &str = "r3pmxmplak.execute-api.eu-west-1.amazonaws.com";

/// Test signing secrets of the built-in sources.
pub const SECRETS: [(&str, &str); 6] = [
    ("typeform", "tf_3c1e8b2d0a9f"),
    ("tally", "tally_7d2f4a61"),
    ("webflow", "wf_8e3b1c55d2"),
    ("hubspot", "hs-app-secret-0f1e2d3c"),
    ("pipedrive", "relay:pd-basic-pass-91"),
    ("standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
];

pub fn secret(source: &str) -> SecretString {
    let (_, s) = SECRETS
        .iter()
        .find(|(name, _)| *name == source)
        .expect("a test secret for the source");
    SecretString::from(*s)
}

pub fn source_secrets() -> SourceSecrets {
    SECRETS
        .iter()
        .map(|(name, s)| (name.to_string(), vec![SecretString::from(*s)]))
        .collect()
}

/// The tests' identity key (`store::identity`).
pub fn identity_key() -> IdentityKey {
    IdentityKey::from_bytes(b"profile-relay test identity key!").expect("32 bytes")
}

/// Ingest's identity step over `store` with the tests' key.
pub fn identity<S: IdentityStore + 'static>(store: Arc<S>) -> Identity {
    Identity {
        store,
        key: identity_key(),
    }
}

pub fn mappings() -> Arc<Mappings> {
    Arc::new(Mappings::builtin().expect("built-in mappings"))
}

/// The ingest router over the given adapters, with the test secrets.
pub fn app<S: IdempotencyStore + IdentityStore + 'static>(
    store: Arc<S>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
) -> axum::Router {
    let identity = Identity {
        store: store.clone(),
        key: identity_key(),
    };
    let (ingest, disabled) =
        Ingest::new(mappings(), &source_secrets(), store, identity, queue, clock)
            .expect("secrets are valid");
    assert!(
        disabled.is_empty(),
        "every built-in webhook source has a test secret: {disabled:?}"
    );
    router(
        Arc::new(ingest),
        RouterConfig {
            default_scheme: "https",
        },
    )
}

/// `forms` or `crm`, as in the path.
pub fn route_segment(source: &str) -> &'static str {
    match mappings().source(source).expect("built-in source").route {
        Route::Forms => "forms",
        Route::Crm => "crm",
        Route::Events => panic!("{source} is not a webhook source"),
    }
}

/// Headers `source` signs `body` with at `now`, using `secret`.
pub fn signature_headers(
    source: &str,
    secret: &SecretString,
    body: &[u8],
    now: DateTime<Utc>,
    delivery_id: Option<&str>,
) -> HeaderMap {
    let m = mappings();
    let scheme = m
        .source(source)
        .and_then(|s| s.signature.clone())
        .expect("a webhook source");
    let verifier = Verifier::new(&scheme, std::slice::from_ref(secret)).expect("valid secret");
    let uri = format!("https://{HOST}/hooks/{}/{source}", route_segment(source));
    verifier
        .sign(&SignRequest {
            method: &Method::POST,
            uri: &uri,
            body,
            now,
            delivery_id,
        })
        .expect("signable")
}

/// An API Gateway v2 request event (as JSON) for `POST /hooks/<route>/<source>`.
pub fn apigw_event(source: &str, segment: &str, extra_headers: &HeaderMap, body: &str) -> Value {
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/apigw-v2-request.json")).expect("fixture");
    let path = format!("/hooks/{segment}/{source}");
    event["rawPath"] = path.clone().into();
    event["requestContext"]["http"]["path"] = path.into();
    event["routeKey"] = format!("POST /hooks/{segment}/{{source}}").into();
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["pathParameters"]["source"] = source.into();
    event["headers"]["content-length"] = body.len().to_string().into();
    for (name, value) in extra_headers {
        event["headers"][name.as_str()] = value.to_str().expect("ascii header").into();
    }
    event["body"] = body.into();
    event
}

/// A Lambda HTTP request for a delivery of `body` by `source`, signed at `now`.
pub fn signed(source: &str, body: &str, now: DateTime<Utc>) -> lambda_http::Request {
    signed_with(source, &secret(source), body, now, None)
}

/// Like [`signed`], with a chosen secret and delivery id.
pub fn signed_with(
    source: &str,
    secret: &SecretString,
    body: &str,
    now: DateTime<Utc>,
    delivery_id: Option<&str>,
) -> lambda_http::Request {
    let headers = signature_headers(source, secret, body.as_bytes(), now, delivery_id);
    to_request(&apigw_event(source, route_segment(source), &headers, body))
}

/// Parses an API Gateway event as `lambda_http` does in Lambda.
pub fn to_request(event: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway v2 event")
}

/// Sends `request` through the webhook Lambda service over `app` and reads the answer,
/// which must be JSON whatever the status.
pub async fn answer(
    app: &axum::Router,
    request: lambda_http::Request,
) -> (http::StatusCode, Value) {
    use tower::ServiceExt;
    let Ok(response) = relay_shared::lambda::webhook_service(app.clone())
        .oneshot(request)
        .await;
    let status = response.status();
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..]),
        "every answer is JSON ({status})"
    );
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body is read");
    (
        status,
        serde_json::from_slice(&body).expect("the answer is JSON"),
    )
}

/// Every delivery message enqueued so far, removed from `queue`.
pub async fn drain(queue: &dyn Queue) -> Vec<relay_shared::delivery::DeliveryMessage> {
    let mut out = Vec::new();
    loop {
        let batch = queue
            .receive(10, std::time::Duration::ZERO)
            .await
            .expect("the queue answers");
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            out.push(
                relay_shared::delivery::DeliveryMessage::from_body(&m.body)
                    .expect("a delivery message"),
            );
            queue.delete(&m.receipt).await.expect("deleted");
        }
    }
}

/// The webhook functions over a fresh DynamoDB Local table and a memory queue the test
/// reads, with the test secrets.
pub struct IngestHarness {
    pub table: crate::dynamodb_local::LocalTable,
    pub queue: Arc<relay_shared::queue::memory::MemoryQueue>,
    pub app: axum::Router,
}

impl IngestHarness {
    pub async fn start() -> IngestHarness {
        let table = crate::dynamodb_local::fresh_table()
            .await
            .expect("DynamoDB Local table");
        let queue = Arc::new(relay_shared::queue::memory::MemoryQueue::new(
            std::time::Duration::from_secs(30),
        ));
        let clock = Arc::new(relay_shared::store::SystemClock);
        let store = Arc::new(relay_shared::store::dynamo::DynamoStore::new(
            table.client.clone(),
            table.name.clone(),
            clock.clone(),
        ));
        let app = app(store, queue.clone(), clock);
        IngestHarness { table, queue, app }
    }

    pub async fn send(&self, request: lambda_http::Request) -> (http::StatusCode, Value) {
        answer(&self.app, request).await
    }

    /// Another ingest instance over the same table (its own person cache), enqueueing to
    /// `queue`: what a second Lambda instance is.
    pub fn another_instance(&self, queue: Arc<dyn Queue>) -> axum::Router {
        let clock = Arc::new(relay_shared::store::SystemClock);
        let store = Arc::new(relay_shared::store::dynamo::DynamoStore::new(
            self.table.client.clone(),
            self.table.name.clone(),
            clock.clone(),
        ));
        app(store, queue, clock)
    }

    /// Everything enqueued so far (removes it from the queue).
    pub async fn drain(&self) -> Vec<relay_shared::delivery::DeliveryMessage> {
        drain(self.queue.as_ref()).await
    }
}
