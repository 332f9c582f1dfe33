//! Replaying dead letters: on the in-process queue and on a real local SQS (moto).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::sqs::SqsQueue;
use relay_shared::queue::{OutboundMessage, Queue};
use relay_shared::replay::redrive;

async fn fill(dlq: &dyn Queue, n: usize) {
    let messages: Vec<OutboundMessage> = (0..n)
        .map(|i| {
            let mut m = OutboundMessage::new(format!("m{i}"), format!("{{\"n\": {i}}}"));
            let reason = if i % 5 == 0 {
                "hood patch_profile: HTTP 400 (permanent)"
            } else {
                "gave up after 8 attempts"
            };
            m.attributes.insert("reason".into(), reason.into());
            m
        })
        .collect();
    dlq.send_batch(&messages).await.unwrap();
}

async fn drain(queue: &dyn Queue) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::from_millis(200)).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            out.push((m.body.clone(), m.attributes.get("replayed_reason").cloned()));
            queue.delete(&m.receipt).await.unwrap();
        }
    }
}

async fn check(dlq: &dyn Queue, queue: &dyn Queue) {
    fill(dlq, 25).await;
    let mut seen = Vec::new();
    let first = redrive(dlq, queue, Some(7), |n| seen.push(n))
        .await
        .unwrap();
    assert_eq!(first.moved, 7);
    let rest = redrive(dlq, queue, None, |n| seen.push(n)).await.unwrap();
    assert_eq!(rest.moved, 18);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1] || w[1] <= 10),
        "progress counts up: {seen:?}"
    );
    let mut reasons: BTreeMap<String, usize> = first.reasons;
    for (r, n) in rest.reasons {
        *reasons.entry(r).or_default() += n;
    }
    assert_eq!(reasons["hood patch_profile: HTTP 400 (permanent)"], 5);
    assert_eq!(reasons["gave up after 8 attempts"], 20);

    let moved = drain(queue).await;
    assert_eq!(moved.len(), 25);
    let mut bodies: Vec<String> = moved.iter().map(|(b, _)| b.clone()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 25, "each message once");
    assert!(
        moved.iter().all(|(_, reason)| reason.is_some()),
        "the reason travels along"
    );
    assert!(
        drain(dlq).await.is_empty(),
        "the dead-letter queue is empty"
    );
    assert_eq!(
        redrive(dlq, queue, None, |_| {}).await.unwrap().moved,
        0,
        "a second replay moves nothing"
    );
}

#[tokio::test]
async fn replay_moves_every_dead_letter_once_in_memory() {
    let dlq = MemoryQueue::new(Duration::from_secs(30));
    let queue = MemoryQueue::new(Duration::from_secs(30));
    check(&dlq, &queue).await;
}

#[tokio::test]
async fn replay_moves_every_dead_letter_once_on_sqs() {
    let client = relay_tests::moto::sqs_client().await.unwrap();
    let dlq_url = relay_tests::moto::create_queue(&client, Duration::from_secs(30))
        .await
        .unwrap();
    let queue_url = relay_tests::moto::create_queue(&client, Duration::from_secs(30))
        .await
        .unwrap();
    let dlq = SqsQueue::new(client.clone(), dlq_url);
    let queue = SqsQueue::new(client, queue_url);
    check(&dlq, &queue).await;
}
