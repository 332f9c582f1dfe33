//! Waiting is free, failing is bounded by time — on real SQS semantics: moto SQS with the
//! template's queue settings (visibility timeout, redrive to the dead-letter queue after
//! `maxReceiveCount` receives, batches of the event source mapping's `BatchSize`), the
//! real sync-worker handler (`lambda::handle_sqs`, partial batch responses) and a poller
//! that acts as the event source mapping: it deletes every message the handler does not
//! report as failed, and leaves the rest to SQS.
//!
//! A delivery that has to wait more often than the redrive allows receives — a vendor's
//! `Retry-After`, a record held by another delivery, a vendor outage — is still delivered
//! and never reaches the dead-letter queue.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use lambda_runtime::{Context, LambdaEvent};
use relay_shared::delivery::DeliveryMessage;
use relay_shared::model::{
    ChangeKind, Contact, ContactChange, ContactKey, Email, PersonId, SyncEvent,
};
use relay_shared::queue::sqs::SqsQueue;
use relay_shared::queue::{OutboundMessage, Queue};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{Clock, DeliveryId, LinkKey, SystemClock};
use relay_shared::vendors::Vendor;
use relay_shared::worker::{Counter, Metrics, MetricsOutput, Worker};
use relay_tests::dynamodb_local::{LocalTable, fresh_table};
use relay_tests::moto;
use relay_tests::pipeline::worker_for;
use relay_tests::stateful_vendors::{Faults, StatefulVendors};
use serde_json::json;

/// The delivery queue's settings in `template.yaml`: visibility timeout, `maxReceiveCount`
/// of its redrive policy, and the event source mapping's batch size.
fn template_queue() -> (Duration, u32, u16) {
    let template: serde_norway::Value =
        serde_norway::from_str(include_str!("../../template.yaml")).unwrap();
    let queue = &template["Resources"]["Queue"]["Properties"];
    let visibility = queue["VisibilityTimeout"].as_u64().unwrap();
    let max_receives = queue["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap();
    let batch = template["Resources"]["SyncWorkerQueueMapping"]["Properties"]["BatchSize"]
        .as_u64()
        .unwrap();
    (
        Duration::from_secs(visibility),
        u32::try_from(max_receives).unwrap(),
        u16::try_from(batch).unwrap(),
    )
}

/// The person id ingest would have given contact `i` (one per contact).
fn person(i: usize) -> PersonId {
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&(i as u64).to_be_bytes());
    PersonId::from_uuid_bytes(bytes)
}

struct Rig {
    _table: LocalTable,
    queue: SqsQueue,
    dead_letters: SqsQueue,
    worker: Worker,
    metrics: Arc<Metrics>,
    vendors: StatefulVendors,
    batch_size: u16,
}

impl Rig {
    async fn start(faults: Faults) -> Rig {
        let (visibility, max_receives, batch_size) = template_queue();
        assert_eq!(max_receives, 5, "the redrive this test was written against");
        let client = moto::sqs_client().await.unwrap();
        let (url, dlq_url) = moto::create_queue_with_dlq(&client, visibility, max_receives)
            .await
            .unwrap();
        let queue = SqsQueue::new(client.clone(), url);
        // The worker's own dead-letter queue is the one SQS redrives to, as in the template.
        let dead_letters = SqsQueue::new(client, dlq_url);
        let table = fresh_table().await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = DynamoStore::new(table.client.clone(), table.name.clone(), clock.clone());
        let vendors = StatefulVendors::start(faults).await;
        let metrics = Arc::new(Metrics::new(MetricsOutput::Memory));
        let worker = worker_for(
            &vendors,
            &store,
            Arc::new(queue.clone()),
            Arc::new(dead_letters.clone()),
            clock,
            metrics.clone(),
        );
        Rig {
            _table: table,
            queue,
            dead_letters,
            worker,
            metrics,
            vendors,
            batch_size,
        }
    }

    /// Enqueues the Channel.io delivery of contact `usr_<i>` (one vendor call when it goes
    /// through), as ingest would.
    async fn enqueue(&self, i: usize) {
        let mut contact =
            Contact::new(ContactKey::external("standard", &format!("usr_{i}")).unwrap());
        contact.email = Some(Email::parse(&format!("user{i}@example.com")).unwrap());
        contact.full_name = Some(format!("User {i}"));
        // Ingest's identity step gives every change its person.
        contact.person = Some(person(i));
        let change = ContactChange {
            event: SyncEvent {
                source: "standard".into(),
                event_id: format!("msg_{i}"),
                occurred_at: Utc::now(),
                kind: ChangeKind::Updated,
            },
            contact,
            versions: Default::default(),
        };
        let body = DeliveryMessage::new(Vendor::Channelio, change).to_body();
        self.queue
            .send_batch(&[OutboundMessage::new("e0", body)])
            .await
            .unwrap();
    }

    /// One poll of the event source mapping: a batch handed to the sync-worker handler with
    /// a minute to run, then every message it did not report as failed deleted.
    async fn poll(&self) {
        let batch = self
            .queue
            .receive(self.batch_size, Duration::from_secs(1))
            .await
            .unwrap();
        if batch.is_empty() {
            return;
        }
        let records: Vec<serde_json::Value> = batch
            .iter()
            .map(|m| {
                json!({"messageId": m.message_id, "receiptHandle": m.receipt.as_str(), "body": m.body,
                       "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()},
                       "messageAttributes": {}, "eventSource": "aws:sqs",
                       "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:relay-queue",
                       "awsRegion": "eu-west-1"})
            })
            .collect();
        let event = serde_json::from_value(json!({"Records": records})).unwrap();
        let mut context = Context::default();
        context.deadline =
            u64::try_from((Utc::now() + TimeDelta::seconds(60)).timestamp_millis()).unwrap();
        let response =
            relay_shared::lambda::handle_sqs(&self.worker, LambdaEvent::new(event, context))
                .await
                .unwrap();
        for m in &batch {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == m.message_id);
            if !failed {
                self.queue.delete(&m.receipt).await.unwrap();
            }
        }
    }

    fn synced(&self, i: usize) -> bool {
        self.vendors
            .world()
            .channel_user_by_email(&format!("user{i}@example.com"))
            .is_some()
    }

    /// Polls until contact `i` is synced or `within` passes; answers how long it took.
    async fn poll_until_synced(&self, i: usize, within: Duration) -> Option<Duration> {
        let started = tokio::time::Instant::now();
        while started.elapsed() < within {
            if self.synced(i) {
                return Some(started.elapsed());
            }
            self.poll().await;
        }
        self.synced(i).then(|| started.elapsed())
    }

    async fn dead_lettered(&self) -> usize {
        self.dead_letters
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_retry_afters_cost_no_receives_and_the_delivery_arrives() {
    // The vendor answers the first ten requests 429 with `Retry-After: 1`.
    let rig = Rig::start(Faults {
        throttle_every: 1_000_000,
        throttle_burst: 10,
        ..Faults::default()
    })
    .await;
    rig.enqueue(1).await;
    let took = rig.poll_until_synced(1, Duration::from_secs(60)).await;
    println!("synced after ten 429s in {took:?}");
    assert!(
        took.is_some(),
        "the delivery arrives; the dead-letter queue holds {}",
        rig.dead_lettered().await
    );
    assert_eq!(rig.vendors.world().injected_429, 10);
    assert_eq!(rig.metrics.total(Counter::Throttled), 10);
    assert_eq!(rig.dead_lettered().await, 0, "nothing reached the DLQ");
    assert_eq!(rig.metrics.total(Counter::DeadLettered), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_held_longer_than_the_redrive_allows_receives_is_waited_for() {
    let rig = Rig::start(Faults::default()).await;
    // Another delivery (a burst of events for one contact) holds the record for 16 s: the
    // message must wait about eight times (2 s each), more than `maxReceiveCount` allows.
    let key = LinkKey::for_person(Vendor::Channelio, &person(2));
    rig.worker
        .links
        .lease(
            &key,
            &DeliveryId::of("other#1"),
            Utc::now() + TimeDelta::seconds(16),
        )
        .await
        .unwrap();
    rig.enqueue(2).await;
    let took = rig.poll_until_synced(2, Duration::from_secs(60)).await;
    println!("synced after the lease ended, in {took:?}");
    assert!(
        took.is_some(),
        "the delivery arrives; the dead-letter queue holds {}",
        rig.dead_lettered().await
    );
    assert!(
        took.unwrap() >= Duration::from_secs(15),
        "not before the lease ended"
    );
    assert_eq!(rig.dead_lettered().await, 0, "nothing reached the DLQ");
    assert_eq!(
        rig.vendors.world().requests,
        1,
        "waiting made no vendor call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_outage_outlasting_the_redrive_is_retried_by_time_not_receives() {
    // Every call fails with 500 for 10 s, then the vendor recovers.
    let rig = Rig::start(Faults {
        refuse_status: 500,
        ..Faults::default()
    })
    .await;
    rig.enqueue(3).await;
    let recover = async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        rig.vendors.set_faults(Faults::default());
    };
    let (took, ()) = tokio::join!(rig.poll_until_synced(3, Duration::from_secs(60)), recover);
    let failed_calls = rig.vendors.world().requests - 1;
    println!("synced after {failed_calls} failed calls, in {took:?}");
    assert!(
        took.is_some(),
        "the delivery arrives; the dead-letter queue holds {}",
        rig.dead_lettered().await
    );
    assert!(
        failed_calls > 5,
        "more failures than the redrive allows receives: {failed_calls}"
    );
    assert_eq!(rig.dead_lettered().await, 0, "nothing reached the DLQ");
}
