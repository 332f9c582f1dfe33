//! What the worker does with failures that retrying cannot fix, and how it answers Lambda:
//! permanent refusals go to the dead-letter queue with the reason (and replay after a fix),
//! refused credentials pause the vendor on every instance without burning through the
//! queue, and an SQS batch reports exactly the messages left in the queue.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use relay_shared::delivery::DeliveryMessage;
use relay_shared::queue::{Queue, ReceivedMessage};
use relay_shared::store::{DeliveryId, LinkKey};
use relay_shared::vendors::Vendor;
use relay_shared::worker::{Counter, Settled};
use relay_tests::pipeline::{Pipeline, contact_event};
use relay_tests::stateful_vendors::Faults;
use serde_json::json;

async fn received(p: &Pipeline) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = p
            .queue
            .receive(10, Duration::from_millis(100))
            .await
            .unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusals_are_dead_lettered_with_the_reason_and_replay_after_a_fix() {
    let p = Pipeline::start(
        Faults {
            refuse_status: 400,
            ..Faults::default()
        },
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        p.post("msg_perm", &contact_event(1, "User 1", Utc::now()))
            .await,
        StatusCode::ACCEPTED
    );
    assert!(p.drain(Duration::from_secs(30)).await);
    assert_eq!(
        p.metrics.total(Counter::DeadLettered),
        3,
        "one per vendor, on the first attempt"
    );
    let dead = p
        .dead_letters
        .receive(10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(dead.len(), 3);
    for m in &dead {
        let reason = &m.attributes["reason"];
        assert!(reason.contains("HTTP 400 (permanent)"), "{reason}");
        assert!(
            !reason.contains("user1@example.com"),
            "no personal data in the reason: {reason}"
        );
        assert_eq!(m.attributes["receive_count"], "1");
        p.dead_letters
            .change_visibility(&m.receipt, Duration::ZERO)
            .await
            .unwrap();
    }

    // The vendors are fixed; replaying delivers every message once.
    p.vendors.set_faults(Faults::default());
    let report =
        relay_shared::replay::redrive(p.dead_letters.as_ref(), p.queue.as_ref(), None, |_| {})
            .await
            .unwrap();
    assert_eq!(report.moved, 3);
    assert!(p.drain(Duration::from_secs(30)).await);
    let w = p.vendors.world();
    assert_eq!(
        (
            w.hood_profiles.len(),
            w.channel_users.len(),
            w.chatwoot_contacts.len()
        ),
        (1, 1, 1)
    );
    assert!(p.dead_letters.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_pause_the_vendor_instead_of_burning_through_the_queue() {
    let p = Pipeline::start(
        Faults {
            refuse_status: 401,
            ..Faults::default()
        },
        Duration::from_secs(5),
    )
    .await;
    for i in 0..3 {
        assert_eq!(
            p.post(&format!("msg_auth_{i}"), &contact_event(i, "U", Utc::now()))
                .await,
            StatusCode::ACCEPTED
        );
    }
    let messages = received(&p).await;
    assert_eq!(messages.len(), 9);
    let deadline = Utc::now() + TimeDelta::seconds(30);
    for m in &messages {
        assert_eq!(
            p.worker.handle(m, deadline, true).await,
            Settled::Removed,
            "sent again for after the pause, this copy removed"
        );
    }
    let w = p.vendors.world();
    assert_eq!(
        w.requests, 3,
        "one refused call per vendor; the other deliveries waited without calling"
    );
    // The pause is on each vendor's shared schedule: the refused call counts, the other
    // deliveries find the schedule paused and wait for it.
    assert_eq!(p.metrics.total(Counter::AuthFailed), 3);
    assert_eq!(p.metrics.total(Counter::Deferred), 6);
    assert!(
        p.dead_letters.is_empty(),
        "credentials problems are not the messages' fault"
    );
    assert_eq!(p.queue.len(), 9, "every delivery waits in the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_reports_exactly_the_messages_left_in_the_queue() {
    let p = Pipeline::start(Faults::default(), Duration::from_secs(5)).await;
    assert_eq!(
        p.post("msg_batch", &contact_event(5, "User 5", Utc::now()))
            .await,
        StatusCode::ACCEPTED
    );
    let messages = received(&p).await;
    // Another delivery holds the contact's Channel.io record: that message must wait.
    let busy = messages
        .iter()
        .find(|m| DeliveryMessage::from_body(&m.body).unwrap().vendor == Vendor::Channelio)
        .unwrap();
    let person = DeliveryMessage::from_body(&busy.body)
        .unwrap()
        .change
        .contact
        .person
        .expect("ingest gave the change its person");
    let key = LinkKey::for_person(Vendor::Channelio, &person);
    p.worker
        .links
        .lease(
            &key,
            &DeliveryId::of("other#1"),
            Utc::now() + TimeDelta::seconds(30),
        )
        .await
        .unwrap();

    let mut records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            json!({"messageId": m.message_id, "receiptHandle": m.receipt.as_str(), "body": m.body,
                   "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                   "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:relay-queue",
                   "awsRegion": "eu-west-1"})
        })
        .collect();
    records.push(
        json!({"messageId": "m-garbage", "receiptHandle": "r-garbage", "body": "not a delivery",
                        "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}),
    );
    // A record without a body cannot be processed: it is left to SQS.
    records.push(
        json!({"messageId": "m-no-body", "receiptHandle": "r-no-body",
                        "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}),
    );
    let event = serde_json::from_value(json!({"Records": records})).unwrap();
    // A Lambda context always carries the invocation's deadline.
    let mut context = Context::default();
    context.deadline =
        u64::try_from((Utc::now() + TimeDelta::seconds(60)).timestamp_millis()).unwrap();
    let response = relay_shared::lambda::handle_sqs(&p.worker, LambdaEvent::new(event, context))
        .await
        .unwrap();
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["m-no-body"],
        "synced, dead-lettered and re-sent messages are done; only the unprocessable one stays"
    );
    // As the event source mapping does: delete every message not reported as failed.
    for m in &messages {
        p.queue.delete(&m.receipt).await.unwrap();
    }
    assert_eq!(
        p.queue.len(),
        1,
        "the busy delivery waits as a new message (the original was reported done)"
    );
    let waiting = p.queue.receive(10, Duration::from_secs(3)).await.unwrap();
    assert_eq!(waiting.len(), 1);
    let (again, before) = (
        DeliveryMessage::from_body(&waiting[0].body).unwrap(),
        DeliveryMessage::from_body(&busy.body).unwrap(),
    );
    assert_eq!(
        (again.vendor, again.change, again.retry.failures),
        (before.vendor, before.change, 0),
        "the same delivery, no failure counted"
    );
    assert_eq!(p.metrics.total(Counter::Deferred), 1);
    let w = p.vendors.world();
    assert_eq!(
        (
            w.hood_profiles.len(),
            w.chatwoot_contacts.len(),
            w.channel_users.len()
        ),
        (1, 1, 0)
    );
    assert_eq!(
        p.metrics.total(Counter::DeadLettered),
        1,
        "the unreadable record went to the dead-letter queue"
    );
}
