//! The store conformance suite against DynamoDB Local, plus what only the real table can
//! show: its definition, what is at rest, and the limiter under real concurrency.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, KeyType, ScalarAttributeType, TimeToLiveStatus,
};
use chrono::{TimeDelta, Utc};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{
    AppliedField, ClaimOutcome, Clock, ContactKeyHash, DeliveryId, GcraParams, IdempotencyKey,
    IdempotencyStore, LeaseOutcome, LimiterKey, LinkKey, LinkStore, ManualClock, PayloadHash,
    SystemClock, wait_for_permit,
};
use relay_shared::vendors::Vendor;
use relay_tests::dynamodb_local::fresh_table;
use relay_tests::store_conformance::Fixture;

relay_tests::store_conformance_tests!(Fixture::dynamodb());

#[tokio::test]
async fn create_table_defines_key_billing_and_ttl() {
    let table = fresh_table().await.unwrap();
    let described = table
        .client
        .describe_table()
        .table_name(&table.name)
        .send()
        .await
        .unwrap();
    let t = described.table().unwrap();
    let keys: Vec<_> = t
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().clone()))
        .collect();
    assert_eq!(keys, [("pk", KeyType::Hash)]);
    let attrs: Vec<_> = t
        .attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name(), a.attribute_type().clone()))
        .collect();
    assert_eq!(
        attrs,
        [
            ("pk", ScalarAttributeType::S),
            ("j_day", ScalarAttributeType::S),
            ("j_received", ScalarAttributeType::N)
        ]
    );
    assert_eq!(
        t.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );

    let ttl = table
        .client
        .describe_time_to_live()
        .table_name(&table.name)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("expires_at"));

    // Creating it again is harmless (the local CLI runs it at every start).
    relay_shared::store::dynamo::create_table(&table.client, &table.name)
        .await
        .unwrap();
}

#[tokio::test]
async fn items_carry_ttl_and_no_contact_data() {
    let table = fresh_table().await.unwrap();
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap(),
    ));
    let store = DynamoStore::new(table.client.clone(), &table.name, clock.clone());

    let key = IdempotencyKey::inbound("typeform", "ev-pii").unwrap();
    let payload = br#"{"email":"alice@example.com","phone":"+14155550100"}"#;
    let ClaimOutcome::Claimed(claim) = store
        .claim(
            &key,
            &PayloadHash::of(payload),
            clock.now() + TimeDelta::seconds(30),
        )
        .await
        .unwrap()
    else {
        panic!("fresh key")
    };
    clock.advance(TimeDelta::seconds(5));
    store.complete(&claim, "p-1").await.unwrap();
    for contact in ["email:alice@example.com", "phone:+14155550100"] {
        let key = LinkKey::new(Vendor::Hood, &ContactKeyHash::of(contact));
        let until = clock.now() + TimeDelta::seconds(30);
        let LeaseOutcome::Leased { lease, mut link } = store
            .lease(&key, &DeliveryId::of("typeform#ev-pii"), until)
            .await
            .unwrap()
        else {
            panic!("fresh link")
        };
        link.vendor_id = Some("p-1".into());
        link.fields.insert(
            "email".into(),
            AppliedField {
                fingerprint: "fp".into(),
                version: 1,
            },
        );
        link.remember(DeliveryId::of("typeform#ev-pii"));
        store.commit(&lease, &link).await.unwrap();
    }

    let item = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", AttributeValue::S(key.to_string()))
        .send()
        .await;
    let item = item.unwrap().item().cloned().unwrap();
    let expected_expiry = clock.now().timestamp() + 7 * 24 * 3600;
    assert_eq!(
        item["expires_at"],
        AttributeValue::N(expected_expiry.to_string())
    );
    assert_eq!(item["state"], AttributeValue::S("completed".into()));
    assert_eq!(
        item["payload_hash"],
        AttributeValue::S(PayloadHash::of(payload).to_hex())
    );
    assert!(!item.contains_key("claim_token") && !item.contains_key("lease_until"));

    let scan = table
        .client
        .scan()
        .table_name(&table.name)
        .send()
        .await
        .unwrap();
    assert_eq!(scan.count(), 3);
    let at_rest = format!("{:?}", scan.items());
    for personal in ["alice", "example.com", "4155550100"] {
        assert!(
            !at_rest.contains(personal),
            "{personal} found at rest: {at_rest}"
        );
    }
    assert!(at_rest.contains(ContactKeyHash::of("email:alice@example.com").as_hex()));
}

/// 32 instances (own handles, shared table) ask for Hood permits as fast as they are
/// offered for 15 s on the real clock. No 1 s window may exceed Hood's 10, and the grants
/// must reach 90% of the schedule's capacity (burst + elapsed / T).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limiter_holds_hood_limits_across_32_instances() {
    const TASKS: usize = 32;
    const RUN: TimeDelta = TimeDelta::seconds(15);
    let table = fresh_table().await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(table.client.clone(), &table.name, clock);
    let key = LimiterKey::new(Vendor::Hood, "main").unwrap();
    let params = GcraParams::HOOD;

    let start = Utc::now();
    let end = start + RUN;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let limiter = store.limiter(&key, params);
            tokio::spawn(async move {
                let mut grants = Vec::new();
                while wait_for_permit(&limiter, &SystemClock, end).await.unwrap() {
                    grants.push((Utc::now() - start).num_milliseconds());
                }
                grants
            })
        })
        .collect();
    let mut grants: Vec<i64> = futures::future::try_join_all(tasks)
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    grants.sort_unstable();

    let max_in_1s = grants
        .iter()
        .enumerate()
        .map(|(i, &t)| grants[i..].iter().take_while(|&&u| u < t + 1_000).count())
        .max();
    let max_in_1s = max_in_1s.unwrap_or(0);
    let capacity = params.burst().floor() + RUN.num_milliseconds() as f64 / params.t_ms() as f64;
    let utilisation = grants.len() as f64 / capacity;
    let calls = table.calls.take().len();
    println!(
        "limiter: {} grants in {} s by {TASKS} instances, capacity {capacity:.1}, utilisation {:.1}%, \
         max in any 1 s window {max_in_1s}, {calls} UpdateItem calls ({:.2} per grant)",
        grants.len(),
        RUN.num_seconds(),
        utilisation * 100.0,
        calls as f64 / grants.len() as f64,
    );
    assert!(
        max_in_1s <= 10,
        "{max_in_1s} permits in one second: {grants:?}"
    );
    assert!(
        utilisation >= 0.9,
        "only {} of {capacity:.1} permits granted",
        grants.len()
    );
    assert!(
        grants.len() as f64 <= capacity + 1.0,
        "more permits than the schedule allows: {}",
        grants.len()
    );
    // No permit earlier than the schedule: the i-th (from 0) needs now >= first + i * T - tau,
    // and every grant is recorded after the `now` it was granted at.
    let (t, tau) = (params.t_ms(), params.tau_ms());
    for (i, &at) in grants.iter().enumerate() {
        assert!(
            at >= i as i64 * t - tau,
            "permit {i} at {at} ms is ahead of the schedule"
        );
    }
}

/// A limiter handle that booked the schedule past the wait knows, without asking DynamoDB,
/// that no slot is near (the worker then hands a delivery on before leasing its link); a
/// handle that has not seen the schedule does not claim to know, and neither does one
/// whose slot fits the wait.
#[tokio::test]
async fn a_limiter_knows_a_far_slot_from_the_schedule_it_saw_without_a_call() {
    use relay_shared::store::{Booking, RateLimiter};
    use std::time::Duration;
    let table = fresh_table().await.unwrap();
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = DynamoStore::new(table.client.clone(), &table.name, clock.clone());
    let key = LimiterKey::new(Vendor::Hood, "main").unwrap();
    // One permit per second, no burst.
    let params = GcraParams::new(Duration::from_secs(1), 1);
    let here = store.limiter(&key, params);
    let elsewhere = store.limiter(&key, params);
    assert_eq!(
        here.known_too_far(Duration::from_secs(3)),
        None,
        "not seen yet"
    );
    let Booking::Slots(slots) = here.reserve_n(5, Duration::from_secs(10)).await.unwrap() else {
        panic!("five slots fit in 10 s");
    };
    assert_eq!(slots.len(), 5);
    table.calls.take();
    let far = here
        .known_too_far(Duration::from_secs(3))
        .expect("booked 5 s ahead");
    assert!(
        far > clock.now() + TimeDelta::seconds(3),
        "{far} is the first free slot"
    );
    assert_eq!(
        here.known_too_far(Duration::from_secs(6)),
        None,
        "within 6 s"
    );
    assert_eq!(elsewhere.known_too_far(Duration::from_secs(3)), None);
    assert!(
        table.calls.take().is_empty(),
        "answered from what the handle saw"
    );
    // The table agrees: a reservation within 3 s is refused.
    assert!(matches!(
        elsewhere.reserve(Duration::from_secs(3)).await.unwrap(),
        relay_shared::store::Reservation::TooFar(_)
    ));
}
