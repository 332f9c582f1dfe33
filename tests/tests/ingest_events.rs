//! The event-sync function: EventBridge events from the user's own apps, claimed on a real
//! DynamoDB Local and fanned out per vendor.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Context, LambdaEvent};
use relay_sandbox::samples::sample;
use relay_shared::delivery::DeliveryMessage;
use relay_shared::ingress::outcome::IdentityCounts;
use relay_shared::ingress::{Accepted, Ingest, SourceSecrets};
use relay_shared::lambda::handle_event;
use relay_shared::queue::Queue;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::store::SystemClock;
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::vendors::Vendor;
use relay_tests::dynamodb_local::fresh_table;
use relay_tests::webhooks::mappings;
use serde_json::Value;

fn event(name: &str) -> Value {
    serde_json::from_str(sample(name).unwrap().body).unwrap()
}

#[tokio::test]
async fn app_events_are_accepted_once_and_routed_by_detail_type() {
    let table = fresh_table().await.unwrap();
    let clock = Arc::new(SystemClock);
    let store = Arc::new(DynamoStore::new(
        table.client.clone(),
        table.name.clone(),
        clock.clone(),
    ));
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let (ingest, _) = Ingest::new(
        mappings(),
        &SourceSecrets::new(),
        store.clone(),
        relay_tests::webhooks::identity(store),
        queue.clone(),
        clock,
    )
    .unwrap();

    // EventBridge delivers the typed event; the fixtures are what EventBridge sends.
    let invoke = |payload: Value| {
        let typed = serde_json::from_value(payload).expect("an EventBridge event");
        handle_event(&ingest, LambdaEvent::new(typed, Context::default()))
    };
    let first = invoke(event("app-contact")).await.unwrap();
    assert_eq!(
        first,
        Accepted {
            accepted: 1,
            duplicates: 0,
            // A person new to the relay: one write claims the event and creates them
            // (DynamoDB: one TransactWriteItems, nothing read first).
            identity: IdentityCounts {
                created: 1,
                merged: 0,
                calls: 1,
            },
            ..Accepted::default()
        }
    );
    let staff = invoke(event("app-staff")).await.unwrap();
    assert_eq!(staff.accepted, 1);
    // EventBridge delivers at least once: the same event again is a duplicate. Its claim
    // was never confirmed, so it is enqueued again (the worker recognises the copy).
    assert_eq!(
        invoke(event("app-contact")).await.unwrap(),
        Accepted {
            accepted: 0,
            duplicates: 1,
            enqueued_again: 1,
            // The copy goes to the queue again with its person: the refused write says
            // where the identifiers point, so no identity call follows.
            identity: IdentityCounts {
                created: 0,
                merged: 0,
                calls: 0,
            },
            ..Accepted::default()
        }
    );

    let received = queue.receive(10, Duration::ZERO).await.unwrap();
    let mut routed: Vec<(String, Vendor)> = received
        .iter()
        .map(|m| DeliveryMessage::from_body(&m.body).unwrap())
        .map(|d| (d.event_key(), d.vendor))
        .collect();
    routed.sort();
    let contact = "app-contact#7bf73129-1428-4cd3-a780-95db273d1602".to_string();
    let staff = "app-staff#c1b2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e".to_string();
    let mut expected = vec![
        (contact.clone(), Vendor::Hood),
        (contact.clone(), Vendor::Channelio),
        (contact.clone(), Vendor::Chatwoot),
        (staff, Vendor::Omnivibe),
        // The duplicate's copy.
        (contact.clone(), Vendor::Hood),
        (contact.clone(), Vendor::Channelio),
        (contact, Vendor::Chatwoot),
    ];
    expected.sort();
    assert_eq!(routed, expected);

    // An event no mapping handles is an error (Lambda retries, then its on-failure
    // destination keeps it): never silently dropped.
    let mut unknown = event("app-contact");
    unknown["detail-type"] = "OrderPlaced".into();
    let err = invoke(unknown).await.unwrap_err();
    assert!(err.to_string().contains("OrderPlaced"), "{err}");
}
