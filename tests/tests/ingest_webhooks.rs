//! The webhook functions end to end as Lambda runs them: API Gateway HTTP API v2 events,
//! signed with known secrets, through `lambda_http` and the shared router, claiming on a
//! real DynamoDB Local and enqueueing to a queue the test can read.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use http::{HeaderMap, HeaderValue, StatusCode};
use relay_sandbox::samples::sample;
use relay_shared::lambda::webhook_service;
use relay_shared::queue::{OutboundMessage, Queue, QueueError, ReceiptHandle, ReceivedMessage};
use relay_shared::vendors::Vendor;
use relay_tests::webhooks::{IngestHarness, apigw_event, secret, signed, signed_with, to_request};
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

type Harness = IngestHarness;

async fn harness() -> Harness {
    IngestHarness::start().await
}

fn body(source: &str) -> &'static str {
    sample(source).unwrap().body
}

#[tokio::test]
async fn a_signed_signup_is_claimed_once_and_enqueued_once_per_vendor() {
    let h = harness().await;
    let (status, answer) = h
        .send(signed("typeform", body("typeform"), Utc::now()))
        .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 1, "duplicates": 0})
        )
    );
    assert_eq!(
        h.table.calls.take(),
        ["TransactWriteItems"],
        "one write: the claim (nothing confirms it) and, in the same transaction, Ann's new \
         person with her identifiers — nothing is read first"
    );

    let messages = h.drain().await;
    let vendors: Vec<Vendor> = messages.iter().map(|m| m.vendor).collect();
    assert_eq!(vendors, [Vendor::Hood, Vendor::Channelio, Vendor::Chatwoot]);
    for m in &messages {
        assert_eq!(m.event_key(), "typeform#01JD8Z9K3M4N5P6Q7R8S9T0V1W");
        assert_eq!(
            m.change.contact.email.as_ref().unwrap().as_str(),
            "ann.lee@example.com"
        );
    }
}

#[tokio::test]
async fn every_built_in_webhook_source_is_accepted() {
    let h = harness().await;
    for (source, events) in [
        ("typeform", 1),
        ("tally", 1),
        ("webflow", 1),
        ("hubspot", 2),
        ("pipedrive", 1),
        ("standard", 1),
    ] {
        let (status, answer) = h.send(signed(source, body(source), Utc::now())).await;
        // HubSpot's sample: contact 901's four events are one change, 902's deletion another.
        let expected = if source == "hubspot" {
            json!({"accepted": events, "combined": 3, "duplicates": 0})
        } else {
            json!({"accepted": events, "duplicates": 0})
        };
        assert_eq!(
            (status, &answer),
            (StatusCode::ACCEPTED, &expected),
            "{source}"
        );
        assert_eq!(
            h.drain().await.len(),
            events * 3,
            "{source}: one message per event and vendor"
        );
    }
}

#[tokio::test]
async fn a_hubspot_batch_costs_one_write_per_contact_change_and_answers_duplicates_per_change() {
    let h = harness().await;
    let (status, answer) = h.send(signed("hubspot", body("hubspot"), Utc::now())).await;
    // Five events: contact 901's four are one change, 902's deletion another.
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 2, "combined": 3, "duplicates": 0})
        )
    );
    assert_eq!(
        h.table.calls.take(),
        ["TransactWriteItems", "TransactWriteItems"],
        "two changes of two new persons: one write each (claim and person together)"
    );
    h.drain().await;

    // HubSpot retries with a batch that overlaps the first one.
    let mut events: Vec<Value> = serde_json::from_str(body("hubspot")).unwrap();
    events.push(json!({"eventId": 3817289299_u64, "subscriptionId": 1, "portalId": 62515, "appId": 1, "occurredAt": 1763647203000_u64,
                       "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 903,
                       "propertyName": "email", "propertyValue": "new@example.com"}));
    let (status, answer) = h
        .send(signed(
            "hubspot",
            &serde_json::to_string(&events).unwrap(),
            Utc::now(),
        ))
        .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 1, "combined": 3, "duplicates": 2})
        )
    );
    assert_eq!(
        h.table.calls.take(),
        [
            "TransactWriteItems",
            "TransactWriteItems",
            "TransactWriteItems"
        ],
        "one write each: 901's and 902's are refused (duplicates; the refusal says whose \
         the identifiers are), 903's claims the change and creates the person"
    );
    // The two duplicates' claims were never confirmed, so they go again (the worker
    // recognises them); the new event once.
    let messages = h.drain().await;
    assert_eq!(messages.len(), 3 * 3);
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.change.event.event_id.ends_with("3817289299"))
            .count(),
        3
    );
}

#[tokio::test]
async fn a_duplicate_delivery_answers_2xx_for_one_write_and_goes_again_to_the_queue() {
    let h = harness().await;
    h.send(signed("typeform", body("typeform"), Utc::now()))
        .await;
    h.drain().await;
    h.table.calls.take();
    let (status, answer) = h
        .send(signed("typeform", body("typeform"), Utc::now()))
        .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 0, "duplicates": 1})
        )
    );
    assert_eq!(
        h.table.calls.take(),
        ["TransactWriteItems"],
        "a duplicate costs one conditional write, refused; what it met (the claim, the \
         person its identifiers point to) needs no read"
    );
    // Its claim was never confirmed: the duplicate is enqueued again, as it was.
    let again = h.drain().await;
    assert_eq!(again.len(), 3);
    assert!(
        again
            .iter()
            .all(|m| m.event_key() == "typeform#01JD8Z9K3M4N5P6Q7R8S9T0V1W")
    );
}

#[tokio::test]
async fn a_duplicate_of_a_confirmed_claim_enqueues_nothing() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let h = harness().await;
    let (status, _) = h.send(signed("tally", body("tally"), Utc::now())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let first = h.drain().await;
    assert_eq!(first.len(), 3);
    // Confirm the claim as ingest did before it wrote once (records of that time, or of
    // another caller of `complete`, are met after a deploy).
    let pk = relay_shared::store::IdempotencyKey::inbound("tally", &first[0].change.event.event_id)
        .unwrap()
        .as_str()
        .to_owned();
    h.table
        .client
        .update_item()
        .table_name(&h.table.name)
        .key("pk", AttributeValue::S(pk))
        .update_expression("SET #s = :c, #r = :r REMOVE lease_until, claim_token")
        .expression_attribute_names("#s", "state")
        .expression_attribute_names("#r", "result")
        .expression_attribute_values(":c", AttributeValue::S("completed".into()))
        .expression_attribute_values(":r", AttributeValue::S("enqueued".into()))
        .condition_expression("attribute_exists(pk)")
        .send()
        .await
        .unwrap();
    h.table.calls.take();
    let (status, answer) = h.send(signed("tally", body("tally"), Utc::now())).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 0, "duplicates": 1})
        )
    );
    assert_eq!(h.table.calls.take(), ["TransactWriteItems"]);
    assert!(
        h.drain().await.is_empty(),
        "a confirmed claim is not enqueued again"
    );
}

#[tokio::test]
async fn concurrent_duplicates_are_all_answered_2xx_without_waiting() {
    let h = harness().await;
    let now = Utc::now();
    let started = std::time::Instant::now();
    let answers =
        futures::future::join_all((0..16).map(|_| h.send(signed("tally", body("tally"), now))))
            .await;
    let accepted: usize = answers
        .iter()
        .map(|(_, a)| a["accepted"].as_u64().unwrap_or(0) as usize)
        .sum();
    assert_eq!(accepted, 1, "{answers:?}");
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::ACCEPTED, "{answer}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nobody waits for another request's claim"
    );
    let calls = h.table.calls.take();
    let single = calls.iter().filter(|c| *c == "TransactWriteItems").count();
    assert!(single >= 16, "each starts with its single write: {calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| ["PutItem", "BatchGetItem", "TransactWriteItems"].contains(&c.as_str())),
        "the rest is the step-by-step path of writes that met a transaction in progress: \
         {calls:?}"
    );
    // One claim; the fifteen duplicates each enqueued their own copy (the worker keeps the
    // first and recognises the others: `worker_reliability.rs`).
    let messages = h.drain().await;
    assert_eq!(messages.len(), 16 * 3);
    assert!(
        messages
            .iter()
            .all(|m| m.event_key() == messages[0].event_key())
    );
    let (status, answer) = h.send(signed("tally", body("tally"), Utc::now())).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 0, "duplicates": 1})
        )
    );
}

async fn assert_refused(
    h: &Harness,
    request: lambda_http::Request,
    status: StatusCode,
    code: &str,
) -> Value {
    let (got, answer) = h.send(request).await;
    assert_eq!(
        (got, answer["code"].as_str().unwrap()),
        (status, code),
        "{answer}"
    );
    assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(h.table.calls.take().is_empty(), "nothing claimed");
    assert!(h.drain().await.is_empty(), "nothing enqueued");
    answer
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let h = harness().await;
    let headers = relay_tests::webhooks::signature_headers(
        "typeform",
        &secret("typeform"),
        body("typeform").as_bytes(),
        Utc::now(),
        None,
    );
    let tampered = body("typeform").replace("Ann Lee", "Eve Lee");
    assert_refused(
        &h,
        to_request(&apigw_event("typeform", "forms", &headers, &tampered)),
        StatusCode::UNAUTHORIZED,
        "signature_invalid",
    )
    .await;
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_with_its_own_code() {
    let h = harness().await;
    let ten_minutes_ago = Utc::now() - TimeDelta::minutes(10);
    let answer = assert_refused(
        &h,
        signed("standard", body("standard"), ten_minutes_ago),
        StatusCode::UNAUTHORIZED,
        "timestamp_stale",
    )
    .await;
    assert!(
        answer["message"].as_str().unwrap().contains("timestamp"),
        "{answer}"
    );
    assert_refused(
        &h,
        signed("webflow", body("webflow"), ten_minutes_ago),
        StatusCode::UNAUTHORIZED,
        "timestamp_stale",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_secret_or_a_missing_signature_is_refused() {
    let h = harness().await;
    let wrong = SecretString::from("not-the-secret");
    assert_refused(
        &h,
        signed_with("tally", &wrong, body("tally"), Utc::now(), None),
        StatusCode::UNAUTHORIZED,
        "signature_invalid",
    )
    .await;
    let wrong_basic = SecretString::from("relay:guess");
    assert_refused(
        &h,
        signed_with(
            "pipedrive",
            &wrong_basic,
            body("pipedrive"),
            Utc::now(),
            None,
        ),
        StatusCode::UNAUTHORIZED,
        "signature_invalid",
    )
    .await;
    let unsigned = to_request(&apigw_event(
        "hubspot",
        "crm",
        &HeaderMap::new(),
        body("hubspot"),
    ));
    assert_refused(&h, unsigned, StatusCode::UNAUTHORIZED, "signature_missing").await;
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let h = harness().await;
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(300 * 1024));
    let answer = assert_refused(
        &h,
        signed("standard", &big, Utc::now()),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_eq!(answer["message"], "the body is larger than 262144 bytes");
}

#[tokio::test]
async fn malformed_json_and_non_json_are_refused() {
    let h = harness().await;
    assert_refused(
        &h,
        signed("typeform", "{\"event_id\": ", Utc::now()),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    let mut headers = relay_tests::webhooks::signature_headers(
        "tally",
        &secret("tally"),
        b"a=1",
        Utc::now(),
        None,
    );
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    assert_refused(
        &h,
        to_request(&apigw_event("tally", "forms", &headers, "a=1")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn an_unmappable_payload_is_refused_naming_the_fields() {
    let h = harness().await;
    let mut payload: Value = serde_json::from_str(body("typeform")).unwrap();
    payload["form_response"]["answers"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["type"] == "text");
    let answer = assert_refused(
        &h,
        signed("typeform", &payload.to_string(), Utc::now()),
        StatusCode::UNPROCESSABLE_ENTITY,
        "contact_unidentifiable",
    )
    .await;
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("email: form_response.answers[?type=='email'].email | [0]"),
        "{message}"
    );
    assert!(message.contains("phone: "), "{message}");
}

#[tokio::test]
async fn unknown_sources_and_wrong_routes_are_404() {
    let h = harness().await;
    assert_refused(
        &h,
        to_request(&apigw_event("mailchimp", "forms", &HeaderMap::new(), "{}")),
        StatusCode::NOT_FOUND,
        "unknown_source",
    )
    .await;
    // typeform is a form source: not served under /hooks/crm.
    let headers = relay_tests::webhooks::signature_headers(
        "typeform",
        &secret("typeform"),
        body("typeform").as_bytes(),
        Utc::now(),
        None,
    );
    assert_refused(
        &h,
        to_request(&apigw_event("typeform", "crm", &headers, body("typeform"))),
        StatusCode::NOT_FOUND,
        "unknown_source",
    )
    .await;
}

#[tokio::test]
async fn the_same_event_id_with_another_payload_is_a_conflict() {
    let h = harness().await;
    h.send(signed("typeform", body("typeform"), Utc::now()))
        .await;
    h.drain().await;
    h.table.calls.take();
    let changed = body("typeform").replace("Acme Inc", "Acme GmbH");
    let (status, answer) = h.send(signed("typeform", &changed, Utc::now())).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::CONFLICT, Some("event_id_reused"))
    );
    assert!(h.drain().await.is_empty());
}

/// A queue that refuses everything, like SQS during an outage.
struct DownQueue;

#[async_trait::async_trait]
impl Queue for DownQueue {
    async fn send_batch(&self, _: &[OutboundMessage]) -> Result<(), QueueError> {
        Err(QueueError::Service {
            operation: "SendMessageBatch",
            message: "unavailable".into(),
        })
    }
    async fn receive(&self, _: u16, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _: &ReceiptHandle) -> Result<(), QueueError> {
        Ok(())
    }
    async fn change_visibility(&self, _: &ReceiptHandle, _: Duration) -> Result<(), QueueError> {
        Ok(())
    }
}

#[tokio::test]
async fn when_enqueueing_fails_the_claim_is_released_so_the_retry_succeeds() {
    let h = harness().await;
    let down = h.another_instance(Arc::new(DownQueue));
    let response = webhook_service(down)
        .oneshot(signed("webflow", body("webflow"), Utc::now()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(
        h.table.calls.take(),
        ["TransactWriteItems", "UpdateItem"],
        "one write for the claim and the new person (the person stays: the retry finds it), \
         one release"
    );

    let (status, answer) = h.send(signed("webflow", body("webflow"), Utc::now())).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 1, "duplicates": 0})
        ),
        "the released claim is claimable at once"
    );
    assert_eq!(h.drain().await.len(), 3);
}

/// The same person submitting again: the instance that resolved them guesses their person
/// and the claim's one write checks it (1 call); a fresh instance learns it from its
/// refused write (2 calls); a guess that no longer holds — the identifiers point elsewhere
/// now, as after a merge — is refused by the write and never used.
#[tokio::test]
async fn a_known_person_costs_one_write_where_the_instance_has_seen_them_and_a_stale_guess_is_refused()
 {
    use aws_sdk_dynamodb::types::AttributeValue;
    let h = harness().await;
    let resubmitted = |n: u32| {
        body("typeform").replace(
            "01JD8Z9K3M4N5P6Q7R8S9T0V1W",
            &format!("01JD8Z9K3M4N5P6Q7R8S9T0V{n:02}"),
        )
    };
    let (status, _) = h
        .send(signed("typeform", body("typeform"), Utc::now()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let ann = h.drain().await[0].change.contact.person.clone().unwrap();
    h.table.calls.take();

    // Warm: this instance resolved Ann; its guess is checked in the claim's write.
    let (status, answer) = h
        .send(signed("typeform", &resubmitted(1), Utc::now()))
        .await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(1))
    );
    assert_eq!(h.table.calls.take(), ["TransactWriteItems"]);
    let messages = h.drain().await;
    assert_eq!(messages.len(), 3);
    assert!(
        messages
            .iter()
            .all(|m| m.change.contact.person.as_ref() == Some(&ann))
    );

    // Cold: another instance, same table. Its new-person write is refused, the refusal
    // names Ann's person, and the claim follows.
    let queue = Arc::new(relay_shared::queue::memory::MemoryQueue::new(
        Duration::from_secs(30),
    ));
    let cold = h.another_instance(queue.clone());
    let response = webhook_service(cold)
        .oneshot(signed("typeform", &resubmitted(2), Utc::now()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(h.table.calls.take(), ["TransactWriteItems", "PutItem"]);
    let messages = relay_tests::webhooks::drain(queue.as_ref()).await;
    assert!(
        messages
            .iter()
            .all(|m| m.change.contact.person.as_ref() == Some(&ann))
    );

    // Stale: Ann's identifiers now point to another person (what a merge into an older
    // person does). The warm instance's guess is refused in the write; the person used is
    // the one the table says.
    let other = "p0190a1b2c3d4e5f60718293a4b5c6d7e";
    let scan = h
        .table
        .client
        .scan()
        .table_name(&h.table.name)
        .send()
        .await
        .unwrap();
    let mut repointed = 0;
    for item in scan.items() {
        let pk = item["pk"].as_s().unwrap();
        if pk.starts_with("idn#") && item["person"].as_s().unwrap() == ann.as_str() {
            h.table
                .client
                .update_item()
                .table_name(&h.table.name)
                .key("pk", AttributeValue::S(pk.clone()))
                .update_expression("SET #p = :o")
                .expression_attribute_names("#p", "person")
                .expression_attribute_values(":o", AttributeValue::S(other.into()))
                .send()
                .await
                .unwrap();
            repointed += 1;
        }
    }
    assert_eq!(repointed, 2, "Ann's e-mail and phone");
    h.table.calls.take();
    let (status, _) = h
        .send(signed("typeform", &resubmitted(3), Utc::now()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(h.table.calls.take(), ["TransactWriteItems", "PutItem"]);
    let messages = h.drain().await;
    assert_eq!(messages.len(), 3);
    assert!(
        messages
            .iter()
            .all(|m| m.change.contact.person.as_ref().map(|p| p.as_str()) == Some(other)),
        "the table's person, not the cached guess"
    );
}

/// Many first events of one person at once, through four ingest instances on one table,
/// each carrying some of the person's identifiers (three of their app's ids, the e-mail,
/// the phone): every event is accepted (a sender retries a 503, as Standard Webhooks
/// senders do), and in the end every identifier points to one person and exactly one
/// person is not merged — the single writes, their refusals and the merges never make a
/// third.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_events_of_one_person_through_four_instances_end_as_one_person() {
    const EVENTS: usize = 32;
    let h = harness().await;
    let queue = Arc::new(relay_shared::queue::memory::MemoryQueue::new(
        Duration::from_secs(60),
    ));
    let instances: Vec<axum::Router> = (0..4).map(|_| h.another_instance(queue.clone())).collect();
    let variants: [(&str, bool, bool); 5] = [
        ("usr_8812", true, false),
        ("usr_8813", false, true),
        ("usr_8814", true, true),
        ("usr_8812", false, true),
        ("usr_8813", true, false),
    ];
    let barrier = Arc::new(tokio::sync::Barrier::new(EVENTS));
    let tasks: Vec<_> = (0..EVENTS)
        .map(|i| {
            let (id, email, phone) = variants[i % variants.len()];
            let mut event: Value = serde_json::from_str(body("standard")).unwrap();
            event["data"]["id"] = id.into();
            if !email {
                event["data"].as_object_mut().unwrap().remove("email");
            }
            if !phone {
                event["data"].as_object_mut().unwrap().remove("phone");
            }
            let body = event.to_string();
            let app = instances[i % instances.len()].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..5 {
                    let request = signed_with(
                        "standard",
                        &secret("standard"),
                        &body,
                        Utc::now(),
                        Some(&format!("msg_concurrent_{i}")),
                    );
                    let response = webhook_service(app.clone()).oneshot(request).await.unwrap();
                    match response.status() {
                        StatusCode::ACCEPTED => return,
                        StatusCode::SERVICE_UNAVAILABLE => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        other => panic!("event {i}: {other}"),
                    }
                }
                panic!("event {i}: still 503 after 5 tries");
            })
        })
        .collect();
    futures::future::try_join_all(tasks).await.unwrap();

    let scan = h
        .table
        .client
        .scan()
        .table_name(&h.table.name)
        .send()
        .await
        .unwrap();
    let mut pointed = std::collections::BTreeSet::new();
    let mut identifiers = 0;
    let mut unmerged = Vec::new();
    for item in scan.items() {
        let pk = item["pk"].as_s().unwrap();
        if pk.starts_with("idn#") {
            identifiers += 1;
            pointed.insert(item["person"].as_s().unwrap().clone());
        } else if pk.starts_with("per#") && !item.contains_key("merged_into") {
            unmerged.push(pk.clone());
        }
    }
    assert_eq!(identifiers, 5, "three app ids, the e-mail and the phone");
    assert_eq!(
        pointed.len(),
        1,
        "every identifier points to one person: {pointed:?}"
    );
    assert_eq!(unmerged.len(), 1, "one person is not merged: {unmerged:?}");
    assert_eq!(unmerged[0], format!("per#{}", pointed.first().unwrap()));
    let messages = relay_tests::webhooks::drain(queue.as_ref()).await;
    assert_eq!(
        messages.len(),
        EVENTS * 3,
        "every event enqueued once per vendor"
    );
}
