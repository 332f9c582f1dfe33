//! What the delivery log costs at ingest, counted on DynamoDB Local: the event's entry
//! rides on its claim (no extra call per event, and nothing confirms the claim), the
//! request is kept sealed in one PutItem per request that takes a claim (a batch shares
//! it), a duplicate costs one call, and nothing personal is at rest in clear.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use http::StatusCode;
use relay_sandbox::samples::sample;
use relay_shared::ingress::ingest::Recording;
use relay_shared::ingress::{Ingest, RouterConfig, router};
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{
    DeliveryStatus, EventFilter, IdempotencyKey, Journal, RawKey, RawRecord, SystemClock,
};
use relay_tests::dynamodb_local::{LocalTable, fresh_table};
use relay_tests::webhooks::{self, answer, signed};

struct Recorded {
    table: LocalTable,
    store: DynamoStore,
    app: axum::Router,
    queue: Arc<MemoryQueue>,
}

fn key() -> RawKey {
    RawKey::from_bytes(&[3; 32]).unwrap()
}

async fn recorded() -> Recorded {
    let table = fresh_table().await.unwrap();
    let clock = Arc::new(SystemClock);
    let store = DynamoStore::new(table.client.clone(), table.name.clone(), clock.clone());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let (ingest, _) = Ingest::new(
        webhooks::mappings(),
        &webhooks::source_secrets(),
        Arc::new(store.clone()),
        webhooks::identity(Arc::new(store.clone())),
        queue.clone(),
        clock,
    )
    .unwrap();
    let ingest = ingest.with_recording(Recording::new(Arc::new(store.clone()), Some(key())));
    let app = router(
        Arc::new(ingest),
        RouterConfig {
            default_scheme: "https",
        },
    );
    Recorded {
        table,
        store,
        app,
        queue,
    }
}

#[tokio::test]
async fn one_request_costs_its_claims_plus_one_sealed_raw_item_and_a_duplicate_costs_one_call() {
    let r = recorded().await;
    let body = sample("typeform").unwrap().body;
    let (status, _) = answer(&r.app, signed("typeform", body, Utc::now())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        r.table.calls.take(),
        ["TransactWriteItems", "PutItem"],
        "one write for the claim (with the log entry) and the new person, then the sealed \
         request"
    );
    let (status, again) = answer(&r.app, signed("typeform", body, Utc::now())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        again["duplicates"], 1,
        "a sender's retry is a duplicate: {again}"
    );
    assert_eq!(
        r.table.calls.take(),
        ["TransactWriteItems"],
        "a duplicate: one refused write, which says the claim is taken and whose the \
         identifiers are"
    );

    // The log has the event, masked; the raw request opens with the key only.
    let messages = webhooks::drain(r.queue.as_ref()).await;
    let m = &messages[0];
    let event = &m.change.event;
    let key_ = IdempotencyKey::inbound(&event.source, &event.event_id).unwrap();
    let journey = r.store.event(&key_).await.unwrap().unwrap();
    assert_eq!(journey.event.vendors.len(), 3);
    assert!(
        journey.event.contact.starts_with("email:#"),
        "{}",
        journey.event.contact
    );
    assert_eq!(journey.status(m.vendor), DeliveryStatus::Pending);
    let raw_id = m.raw.clone().unwrap();
    assert_eq!(journey.event.raw.as_ref(), Some(&raw_id));
    let raw = r.store.raw(&raw_id).await.unwrap().unwrap();
    assert_eq!(
        key()
            .open(&RawRecord::aad(&raw_id, "typeform"), &raw.sealed)
            .unwrap(),
        body.as_bytes()
    );
    let scan = r
        .table
        .client
        .scan()
        .table_name(&r.table.name)
        .send()
        .await
        .unwrap();
    let at_rest = format!("{:?}", scan.items());
    let email = serde_json::to_value(&m.change.contact.email).unwrap();
    let email = email.as_str().unwrap();
    assert!(!at_rest.contains(email), "no e-mail at rest: {at_rest}");
    assert!(at_rest.contains("j_contact"), "{at_rest}");

    // The claim item with its log entry and three recorded deliveries: its size decides
    // the write units of the completion and of each delivery update (1 per KB).
    let size_after = |status: DeliveryStatus, reason: Option<String>| {
        let vendors = journey.event.vendors.clone();
        let (store, table, key_) = (&r.store, &r.table, &key_);
        async move {
            for vendor in vendors {
                let entry = relay_shared::store::DeliveryEntry {
                    status,
                    reason: reason.clone(),
                    next_attempt_at: None,
                    vendor_id: Some("1000001".into()),
                    attempts: 3,
                    calls: 5,
                    latency_ms: 1234,
                    at: Utc::now(),
                };
                store.record_delivery(key_, vendor, &entry).await.unwrap();
            }
            let got = table
                .client
                .get_item()
                .table_name(&table.name)
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(key_.as_str().into()),
                )
                .send()
                .await
                .unwrap();
            item_size(got.item().unwrap())
        }
    };
    let synced = size_after(DeliveryStatus::Synced, None).await;
    let longest = size_after(
        DeliveryStatus::DeadLettered,
        Some("x".repeat(relay_shared::store::journal::MAX_REASON_CHARS)),
    )
    .await;
    println!(
        "claim item with its log entry: 3 synced deliveries {synced} bytes; 3 dead letters with the longest reasons {longest} bytes"
    );
    assert!(synced < 1024, "one write unit while synced: {synced} bytes");
    assert!(longest < 2048, "{longest} bytes");
}

/// DynamoDB's item size: attribute names plus values (numbers counted as their digits, an
/// upper bound; lists and maps 3 bytes plus their elements).
fn item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    fn value(v: &V) -> usize {
        match v {
            V::S(s) | V::N(s) => s.len(),
            V::B(b) => b.as_ref().len(),
            V::Bool(_) | V::Null(_) => 1,
            V::L(l) => 3 + l.iter().map(|x| 1 + value(x)).sum::<usize>(),
            V::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + value(x)).sum::<usize>(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

#[tokio::test]
async fn a_batch_shares_one_raw_item_and_every_event_is_listed() {
    let r = recorded().await;
    let (status, _) = answer(
        &r.app,
        signed("hubspot", sample("hubspot").unwrap().body, Utc::now()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let calls = r.table.calls.take();
    let puts = calls.iter().filter(|c| *c == "PutItem").count();
    let single = calls.iter().filter(|c| *c == "TransactWriteItems").count();
    let updates = calls.iter().filter(|c| *c == "UpdateItem").count();
    // The sample's five events are two changes (contact 901's four events combined).
    assert_eq!(
        (single, puts, updates, calls.len()),
        (2, 1, 0, 3),
        "2 claims (each with its new person) + 1 raw item: {calls:?}"
    );
    let listed = r
        .store
        .recent(&EventFilter {
            since: Utc::now() - chrono::TimeDelta::minutes(5),
            source: Some("hubspot".into()),
            vendor: None,
            status: Some(DeliveryStatus::Pending),
            limit: 50,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    let raws: std::collections::BTreeSet<_> = listed
        .iter()
        .map(|j| j.event.raw.clone().unwrap())
        .collect();
    assert_eq!(raws.len(), 1, "one raw item for the whole batch");
}
