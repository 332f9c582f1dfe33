//! Explicit limits and the 503 paths. Over-limit values cost only themselves (cut or
//! dropped with a warning); permanent faults get 4xx (or 500 for a fault of our own), and
//! only a genuinely unavailable DynamoDB or SQS gets the retryable 503.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use http::StatusCode;
use relay_sandbox::samples::sample;
use relay_shared::delivery::DeliveryMessage;
use relay_shared::ingress::{Ingest, RouterConfig, router};
use relay_shared::mapping::{BUILTIN_MAPPINGS, Mappings};
use relay_shared::model::limits;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::sqs::SqsQueue;
use relay_shared::queue::{Queue, QueueError};
use relay_shared::store::SystemClock;
use relay_shared::store::dynamo::DynamoStore;
use relay_tests::dynamodb_local::fresh_table;
use relay_tests::moto;
use relay_tests::webhooks::{IngestHarness, app, secret, signed, signed_with, source_secrets};
use serde_json::{Value, json};

async fn send(app: &axum::Router, request: lambda_http::Request) -> (StatusCode, Value) {
    relay_tests::webhooks::answer(app, request).await
}

type Harness = IngestHarness;

async fn harness() -> Harness {
    IngestHarness::start().await
}

async fn drain(queue: &dyn Queue) -> Vec<DeliveryMessage> {
    relay_tests::webhooks::drain(queue).await
}

fn standard() -> Value {
    serde_json::from_str(sample("standard").unwrap().body).unwrap()
}

#[tokio::test]
async fn a_40_kb_name_is_cut_and_a_long_tag_dropped_while_the_contact_syncs() {
    let h = harness().await;
    let mut body = standard();
    body["data"]["name"] = json!("Zoë ".repeat(10_000));
    body["data"]["organization"] = json!("株式会社".repeat(100));
    body["data"]["tags"] = json!(["vip", "x".repeat(51)]);
    body["data"]["properties"]["plan"] = json!("p".repeat(5_000));
    let (status, answer) = send(
        &h.app,
        signed_with(
            "standard",
            &secret("standard"),
            &body.to_string(),
            Utc::now(),
            Some("msg_big_1"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let mut codes: Vec<(&str, &str)> = answer["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["field"].as_str().unwrap(), w["code"].as_str().unwrap()))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            ("custom.plan", "custom_truncated"),
            ("full_name", "full_name_truncated"),
            ("organization", "organization_truncated"),
            ("tags", "tags_invalid"),
        ]
    );
    let messages = drain(h.queue.as_ref()).await;
    assert_eq!(messages.len(), 3);
    let c = &messages[0].change.contact;
    assert_eq!(
        c.full_name.as_ref().unwrap().chars().count(),
        limits::MAX_NAME_CHARS
    );
    assert!(c.full_name.as_ref().unwrap().starts_with("Zoë Zoë"));
    assert_eq!(
        c.organization.as_ref().unwrap().chars().count(),
        limits::MAX_ORGANIZATION_CHARS
    );
    assert_eq!(c.tags, Some(vec!["vip".to_string()]));
    assert_eq!(c.email.as_ref().unwrap().as_str(), "fay@example.com");
}

fn hubspot_batch(n: usize) -> String {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"eventId": 7_000_000 + i, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452,
                   "occurredAt": 1_763_647_200_000_i64 + i as i64, "subscriptionType": "contact.propertyChange",
                   "attemptNumber": 0, "objectId": 8000 + i, "propertyName": "email",
                   "propertyValue": format!("user{i}@example.com"), "changeSource": "CRM_UI", "sourceId": "userId:100"})
        })
        .collect();
    Value::from(events).to_string()
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_before_any_call_and_one_at_it_is_accepted() {
    let h = harness().await;
    h.table.calls.take();
    let (status, answer) = send(
        &h.app,
        signed(
            "hubspot",
            &hubspot_batch(limits::MAX_EVENTS_PER_DELIVERY + 1),
            Utc::now(),
        ),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("batch_too_large"))
    );
    assert!(h.table.calls.take().is_empty(), "no DynamoDB call");
    let (status, answer) = send(
        &h.app,
        signed(
            "hubspot",
            &hubspot_batch(limits::MAX_EVENTS_PER_DELIVERY),
            Utc::now(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], limits::MAX_EVENTS_PER_DELIVERY);
    assert_eq!(
        drain(h.queue.as_ref()).await.len(),
        limits::MAX_EVENTS_PER_DELIVERY * 3
    );
}

#[tokio::test]
async fn an_event_whose_mapping_outgrows_a_queue_message_is_refused_with_413_not_503() {
    // A mapping that copies one large list into several custom fields.
    let text = BUILTIN_MAPPINGS.replace(
        "\"custom.plan\" = \"data.properties.plan\"\n",
        "\"custom.plan\" = \"data.properties.plan\"\n\"custom.a\" = \"data.properties.blob\"\n\"custom.b\" = \"data.properties.blob\"\n\"custom.c\" = \"data.properties.blob\"\n",
    );
    let mappings = Arc::new(Mappings::from_toml("big.toml", &text).unwrap());
    let table = fresh_table().await.unwrap();
    let clock = Arc::new(SystemClock);
    let store = Arc::new(DynamoStore::new(
        table.client.clone(),
        table.name.clone(),
        clock.clone(),
    ));
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let (ingest, _) = Ingest::new(
        mappings,
        &source_secrets(),
        store.clone(),
        relay_tests::webhooks::identity(store),
        queue.clone(),
        clock,
    )
    .unwrap();
    let app = router(
        Arc::new(ingest),
        RouterConfig {
            default_scheme: "https",
        },
    );
    let mut body = standard();
    body["data"]["properties"]["blob"] = json!(vec!["b".repeat(900); 100]);
    let (status, answer) = send(
        &app,
        signed_with(
            "standard",
            &secret("standard"),
            &body.to_string(),
            Utc::now(),
            Some("msg_blob"),
        ),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("event_too_large")),
        "{answer}"
    );
    assert!(drain(queue.as_ref()).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_the_503_path_and_nothing_is_enqueued() {
    // Nothing listens on port 9: the SDK's connection fails, as in a regional outage.
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let clock = Arc::new(SystemClock);
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        "relay",
        clock.clone(),
    ));
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let down = app(store, queue.clone(), clock);
    let (status, answer) = send(
        &down,
        signed("tally", sample("tally").unwrap().body, Utc::now()),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        )
    );
    assert!(drain(queue.as_ref()).await.is_empty());
}

#[tokio::test]
async fn a_malformed_claim_item_is_our_fault_500_not_a_retryable_503() {
    let h = harness().await;
    // An item under the claim's key that this code did not write.
    h.table
        .client
        .put_item()
        .table_name(&h.table.name)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("evt#tally#wOAMy5B8YqdZN3V6CGFi4Ja".into()),
        )
        .item(
            "state",
            aws_sdk_dynamodb::types::AttributeValue::N("7".into()),
        )
        .send()
        .await
        .unwrap();
    let mut body: Value = serde_json::from_str(sample("tally").unwrap().body).unwrap();
    body["eventId"] = json!("wOAMy5B8YqdZN3V6CGFi4Ja");
    let (status, answer) = send(&h.app, signed("tally", &body.to_string(), Utc::now())).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("internal_error")),
        "{answer}"
    );
}

/// SQS refuses bodies with U+FFFE/U+FFFF (its documented character set; moto does not
/// enforce it, so `delivery::tests` checks the body against the set itself): here the
/// escaped body makes the round trip through an SQS API unchanged in meaning.
#[tokio::test]
async fn a_delivery_whose_text_holds_noncharacters_round_trips_through_sqs() {
    let client = moto::sqs_client().await.unwrap();
    let url = moto::create_queue(&client, Duration::from_secs(30))
        .await
        .unwrap();
    let queue = SqsQueue::new(client, url);
    let mut body = standard();
    body["data"]["name"] = json!("Fay\u{FFFF} Ito\u{FFFE}");
    let h = harness().await;
    let (status, _) = send(
        &h.app,
        signed_with(
            "standard",
            &secret("standard"),
            &body.to_string(),
            Utc::now(),
            Some("msg_nonchar"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let messages = drain(h.queue.as_ref()).await;
    let outbound: Vec<_> = messages
        .iter()
        .map(|m| relay_shared::queue::OutboundMessage::new("m", m.to_body()))
        .take(1)
        .collect();
    let sent: Result<(), QueueError> = queue.send_batch(&outbound).await;
    assert!(sent.is_ok(), "{sent:?}");
    let received = queue.receive(1, Duration::from_secs(1)).await.unwrap();
    let back = DeliveryMessage::from_body(&received[0].body).unwrap();
    assert_eq!(
        back.change.contact.full_name.as_deref(),
        Some("Fay\u{FFFF} Ito\u{FFFE}")
    );
}
