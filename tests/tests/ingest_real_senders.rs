//! Ingest as real senders use it, on DynamoDB Local: one bad field costs that field, a
//! batch judges each event alone, senders' real retries (re-signed, attempt counters bumped)
//! are duplicates — also after a first attempt answered 503 — and a duplicate arriving while
//! the first copy is still being enqueued is answered 2xx at once, with its own copy
//! enqueued (the claim is never confirmed; the worker recognises the copy).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use http::StatusCode;
use relay_sandbox::samples::sample;
use relay_shared::delivery::DeliveryMessage;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::{OutboundMessage, Queue, QueueError, ReceiptHandle, ReceivedMessage};
use relay_shared::store::SystemClock;
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::vendors::Vendor;
use relay_tests::dynamodb_local::{LocalTable, fresh_table};
use relay_tests::webhooks::{app, secret, signed, signed_with};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A queue in front of the memory queue that can refuse or slow down sends, like SQS
/// during an outage or under a slow network.
struct ControlledQueue {
    inner: MemoryQueue,
    down: std::sync::atomic::AtomicBool,
    delay: std::sync::Mutex<Duration>,
}

impl ControlledQueue {
    fn new() -> Self {
        ControlledQueue {
            inner: MemoryQueue::new(Duration::from_secs(30)),
            down: false.into(),
            delay: std::sync::Mutex::new(Duration::ZERO),
        }
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
    fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }
}

#[async_trait::async_trait]
impl Queue for ControlledQueue {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<(), QueueError> {
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError::Service {
                operation: "SendMessageBatch",
                message: "unavailable".into(),
            });
        }
        self.inner.send_batch(messages).await
    }
    async fn receive(&self, n: u16, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(n, wait).await
    }
    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
    async fn change_visibility(&self, r: &ReceiptHandle, d: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(r, d).await
    }
}

struct Harness {
    _table: LocalTable,
    queue: Arc<ControlledQueue>,
    app: axum::Router,
}

async fn harness() -> Harness {
    let table = fresh_table().await.unwrap();
    let queue = Arc::new(ControlledQueue::new());
    let clock = Arc::new(SystemClock);
    let store = Arc::new(DynamoStore::new(
        table.client.clone(),
        table.name.clone(),
        clock.clone(),
    ));
    let app = app(store, queue.clone(), clock);
    Harness {
        _table: table,
        queue,
        app,
    }
}

impl Harness {
    async fn send(&self, request: lambda_http::Request) -> (StatusCode, Value) {
        relay_tests::webhooks::answer(&self.app, request).await
    }

    async fn drain(&self) -> Vec<DeliveryMessage> {
        relay_tests::webhooks::drain(self.queue.as_ref()).await
    }
}

fn fixture(source: &str) -> Value {
    serde_json::from_str(sample(source).unwrap().body).unwrap()
}

/// A HubSpot v3 batch as HubSpot sends it: every subscription type of the app to one URL.
/// A HubSpot delivery of events that occurred just now.
fn hubspot_batch(attempt: u64) -> Value {
    hubspot_batch_at(attempt, Utc::now().timestamp_millis())
}

/// A HubSpot delivery of events that occurred at `at` (ms) and the next milliseconds: a
/// retry of it carries the same `occurredAt`s, only `attemptNumber` grows.
fn hubspot_batch_at(attempt: u64, at: i64) -> Value {
    json!([
        {"eventId": 4100001, "subscriptionId": 2200412, "portalId": 62515, "appId": 1160452, "occurredAt": at, "subscriptionType": "contact.creation", "attemptNumber": attempt, "objectId": 5101, "changeFlag": "CREATED", "changeSource": "CRM_UI", "sourceId": "userId:100"},
        {"eventId": 4100002, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452, "occurredAt": at + 1, "subscriptionType": "contact.propertyChange", "attemptNumber": attempt, "objectId": 5101, "propertyName": "email", "propertyValue": "Jonas.Weber+crm@Example.DE", "changeSource": "CRM_UI", "sourceId": "userId:100"},
        {"eventId": 4100003, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452, "occurredAt": at + 2, "subscriptionType": "contact.propertyChange", "attemptNumber": attempt, "objectId": 5101, "propertyName": "phone", "propertyValue": "+49 151 2345 6789", "changeSource": "CRM_UI", "sourceId": "userId:100"},
        {"eventId": 4100004, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452, "occurredAt": at + 3, "subscriptionType": "contact.propertyChange", "attemptNumber": attempt, "objectId": 5102, "propertyName": "mobilephone", "propertyValue": "ask at reception", "changeSource": "CRM_UI", "sourceId": "userId:100"},
        {"eventId": 4100005, "subscriptionId": 2200999, "portalId": 62515, "appId": 1160452, "occurredAt": at + 4, "subscriptionType": "deal.creation", "attemptNumber": attempt, "objectId": 88001, "changeFlag": "CREATED", "changeSource": "CRM_UI", "sourceId": "userId:100"},
        {"eventId": 4100006, "subscriptionId": 2201000, "portalId": 62515, "appId": 1160452, "occurredAt": at + 5, "subscriptionType": "company.propertyChange", "attemptNumber": attempt, "objectId": 99001, "propertyName": "domain", "propertyValue": "example.de", "changeSource": "CRM_UI", "sourceId": "userId:100"}
    ])
}

#[tokio::test]
async fn a_bad_phone_costs_the_phone_and_the_rest_of_the_contact_is_enqueued() {
    let h = harness().await;
    let mut payload = fixture("webflow");
    payload["payload"]["data"]["Phone"] = json!("+49 123");
    payload["payload"]["data"]["Email"] = json!("Cy.Diaz+News@Example.NET");
    let (status, answer) = h
        .send(signed("webflow", &payload.to_string(), Utc::now()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        answer,
        json!({"accepted": 1, "duplicates": 0, "warnings": [
            {"event": "6321ca84df3949bfc6752327", "field": "phone", "code": "phone_invalid"}
        ]})
    );
    assert!(!answer.to_string().contains("+49 123"));
    let messages = h.drain().await;
    assert_eq!(messages.len(), 3);
    for m in &messages {
        let c = &m.change.contact;
        assert_eq!(c.phone, None);
        assert_eq!(
            c.email.as_ref().unwrap().as_str(),
            "cy.diaz+news@example.net"
        );
        assert_eq!(c.full_name.as_deref(), Some("Cy Diaz"));
    }
}

#[tokio::test]
async fn a_hubspot_batch_accepts_what_it_can_ignores_other_kinds_and_lists_what_it_refused() {
    let h = harness().await;
    let mut batch = hubspot_batch(0);
    // An event whose id is unreadable cannot be deduplicated: refused on its own.
    batch
        .as_array_mut()
        .unwrap()
        .push(json!({"eventId": {"id": 1}, "subscriptionType": "contact.creation", "objectId": 5103, "occurredAt": 1, "attemptNumber": 0}));
    let (status, answer) = h
        .send(signed("hubspot", &batch.to_string(), Utc::now()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    // Contact 5101's three events are one change, 5102's one another.
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["combined"], 2);
    assert_eq!(answer["duplicates"], 0);
    assert_eq!(answer["ignored"], 2);
    assert_eq!(
        answer["warnings"],
        json!([{"event": "4100004", "field": "phone", "code": "phone_invalid"}])
    );
    assert_eq!(answer["refused"][0]["code"], "field_invalid");
    assert_eq!(answer["refused"].as_array().unwrap().len(), 1);
    let messages = h.drain().await;
    assert_eq!(messages.len(), 2 * 3, "two contacts, three vendors each");
    let phones: Vec<_> = messages
        .iter()
        .filter(|m| m.vendor == Vendor::Hood)
        .filter_map(|m| {
            m.change
                .contact
                .phone
                .as_ref()
                .map(|p| p.as_str().to_string())
        })
        .collect();
    assert_eq!(phones, ["+4915123456789"]);
}

#[tokio::test]
async fn a_delivery_with_nothing_usable_is_refused_and_one_with_only_other_kinds_is_ignored() {
    let h = harness().await;
    let mut payload = fixture("webflow");
    payload["payload"]["data"]["Email"] = json!("cy(at)example.net");
    payload["payload"]["data"]["Phone"] = json!("n/a");
    let (status, answer) = h
        .send(signed("webflow", &payload.to_string(), Utc::now()))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("contact_unidentifiable")
        )
    );

    let others: Vec<Value> = hubspot_batch(0)
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            !e["subscriptionType"]
                .as_str()
                .unwrap()
                .starts_with("contact.")
        })
        .cloned()
        .collect();
    let (status, answer) = h
        .send(signed(
            "hubspot",
            &Value::from(others).to_string(),
            Utc::now(),
        ))
        .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 0, "duplicates": 0, "ignored": 2})
        )
    );
    assert!(h.drain().await.is_empty());
}

/// One sender's first delivery and its real retry.
struct Retry {
    source: &'static str,
    first: String,
    retry: String,
    delivery_id: Option<&'static str>,
    events: usize,
}

fn real_retries() -> Vec<Retry> {
    // The sender's retry repeats the events as they were: one instant for both copies
    // (two calls of `Utc::now()` a millisecond apart would make the retry mean otherwise).
    let hubspot_at = Utc::now().timestamp_millis();
    let mut pipedrive = fixture("pipedrive");
    pipedrive["meta"]["attempt"] = json!(1);
    let first_pd = pipedrive.to_string();
    pipedrive["meta"]["attempt"] = json!(2);
    let standard = fixture("standard").to_string();
    vec![
        Retry {
            source: "hubspot",
            first: hubspot_batch_at(0, hubspot_at).to_string(),
            retry: hubspot_batch_at(1, hubspot_at).to_string(),
            delivery_id: None,
            // Six events: three of contact 5101 (one change), one of 5102, two of other kinds.
            events: 2,
        },
        Retry {
            source: "pipedrive",
            first: first_pd,
            retry: pipedrive.to_string(),
            delivery_id: None,
            events: 1,
        },
        Retry {
            source: "standard",
            first: standard.clone(),
            retry: standard,
            delivery_id: Some("msg_2Lh9Ka1rQf8sT3vW"),
            events: 1,
        },
    ]
}

fn sign(
    source: &str,
    body: &str,
    at: chrono::DateTime<Utc>,
    id: Option<&str>,
) -> lambda_http::Request {
    signed_with(source, &secret(source), body, at, id)
}

#[tokio::test]
async fn a_real_retry_after_a_503_is_accepted_and_enqueued_once() {
    for r in real_retries() {
        let h = harness().await;
        h.queue.set_down(true);
        let (status, answer) = h
            .send(sign(r.source, &r.first, Utc::now(), r.delivery_id))
            .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable")
            ),
            "{}",
            r.source
        );
        h.queue.set_down(false);
        // The sender retries later: attempt counter bumped, signed anew.
        let later = Utc::now() + TimeDelta::seconds(3);
        let (status, answer) = h.send(sign(r.source, &r.retry, later, r.delivery_id)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {answer}", r.source);
        assert_eq!(answer["accepted"], r.events, "{}: {answer}", r.source);
        assert_eq!(answer["duplicates"], 0, "{}: {answer}", r.source);
        assert_eq!(h.drain().await.len(), r.events * 3, "{}", r.source);
        // And once more: now a duplicate, enqueued again as it was (its claim was never
        // confirmed; the worker recognises the copy).
        let (status, answer) = h
            .send(sign(r.source, &r.retry, Utc::now(), r.delivery_id))
            .await;
        assert_eq!(
            (status, &answer["accepted"], &answer["duplicates"]),
            (StatusCode::ACCEPTED, &json!(0), &json!(r.events)),
            "{}",
            r.source
        );
        assert_eq!(h.drain().await.len(), r.events * 3, "{}", r.source);
    }
}

#[tokio::test]
async fn a_real_retry_after_a_success_is_a_2xx_duplicate() {
    for r in real_retries() {
        let h = harness().await;
        let (status, answer) = h
            .send(sign(r.source, &r.first, Utc::now(), r.delivery_id))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {answer}", r.source);
        assert_eq!(h.drain().await.len(), r.events * 3);
        let later = Utc::now() + TimeDelta::seconds(2);
        let (status, answer) = h.send(sign(r.source, &r.retry, later, r.delivery_id)).await;
        assert_eq!(
            (status, &answer["accepted"], &answer["duplicates"]),
            (StatusCode::ACCEPTED, &json!(0), &json!(r.events)),
            "{}: {answer}",
            r.source
        );
        let again = h.drain().await;
        assert_eq!(again.len(), r.events * 3, "{}: enqueued again", r.source);
    }
}

#[tokio::test]
async fn the_same_id_with_a_different_meaning_is_still_a_conflict() {
    let h = harness().await;
    let first = fixture("standard").to_string();
    let id = Some("msg_conflict_1");
    assert_eq!(
        h.send(sign("standard", &first, Utc::now(), id)).await.0,
        StatusCode::ACCEPTED
    );
    let mut other = fixture("standard");
    other["data"]["name"] = json!("Fay Itō-Berg");
    let (status, answer) = h
        .send(sign("standard", &other.to_string(), Utc::now(), id))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::CONFLICT, Some("event_id_reused"))
    );
}

#[tokio::test]
async fn a_duplicate_arriving_while_the_first_is_enqueued_gets_2xx_without_waiting() {
    let h = harness().await;
    h.queue.set_delay(Duration::from_millis(2_500));
    let body = fixture("tally").to_string();
    let now = Utc::now();
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(h.send(signed("tally", &body, now)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = h.send(signed("tally", &body, now)).await;
        (answer, started.elapsed())
    });
    let ((status, answer), answered_after) = b;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 0, "duplicates": 1})
        ),
        "never 409: the duplicate enqueued its own copy"
    );
    // It waited for its own enqueue (2.5 s here), not for the first request's.
    assert!(
        answered_after < Duration::from_millis(4_500),
        "{answered_after:?}"
    );
    assert_eq!(
        a,
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 1, "duplicates": 0})
        )
    );
    assert_eq!(h.drain().await.len(), 2 * 3, "both copies are on the queue");
}

#[tokio::test]
async fn a_huge_sender_event_id_is_accepted_not_answered_503() {
    let h = harness().await;
    let id = format!("msg_{}", "x".repeat(5_000));
    let body = fixture("standard").to_string();
    let (status, answer) = h.send(sign("standard", &body, Utc::now(), Some(&id))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let (status, answer) = h.send(sign("standard", &body, Utc::now(), Some(&id))).await;
    assert_eq!(
        (status, &answer["duplicates"]),
        (StatusCode::ACCEPTED, &json!(1))
    );
}

#[tokio::test]
async fn a_batch_carrying_one_event_twice_counts_the_copy_as_a_duplicate() {
    let h = harness().await;
    let batch = hubspot_batch(0);
    let first = batch[1].clone();
    let mut twice = batch.as_array().unwrap()[..3].to_vec();
    twice.push(first.clone());
    let (status, answer) = h
        .send(signed(
            "hubspot",
            &Value::from(twice).to_string(),
            Utc::now(),
        ))
        .await;
    // The three events of contact 5101 are one change; the copy is a duplicate.
    assert_eq!(
        (
            status,
            &answer["accepted"],
            &answer["combined"],
            &answer["duplicates"]
        ),
        (StatusCode::ACCEPTED, &json!(1), &json!(2), &json!(1)),
        "{answer}"
    );
    assert_eq!(h.drain().await.len(), 3);

    // The same id with other contents in one delivery is a conflict, not a second change.
    let mut other = first.clone();
    other["eventId"] = json!(4200002);
    let mut changed = other.clone();
    changed["propertyValue"] = json!("someone.else@example.de");
    let (status, answer) = h
        .send(signed(
            "hubspot",
            &json!([other, changed]).to_string(),
            Utc::now(),
        ))
        .await;
    assert_eq!(
        (status, &answer["accepted"], &answer["conflicts"]),
        (StatusCode::ACCEPTED, &json!(1), &json!(1)),
        "{answer}"
    );
}

async fn raw(h: &Harness, method: &str, path: &str) -> (StatusCode, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn a_wrong_method_and_a_source_name_that_is_not_utf8_get_json_errors() {
    let h = harness().await;
    let (status, answer) = raw(&h, "GET", "/hooks/forms/typeform").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (status, answer) = raw(&h, "POST", "/health").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");
    let (status, answer) = raw(&h, "POST", "/hooks/forms/%FF%FE").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_source"))
    );
}
