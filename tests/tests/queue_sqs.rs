//! The queue conformance suite against a real SQS API (moto's server; see `relay_tests::moto`),
//! plus what only the SQS adapter does: failures of whole calls.

use std::time::Duration;

use aws_sdk_sqs::Client;
use relay_shared::queue::sqs::SqsQueue;
use relay_shared::queue::{OutboundMessage, Queue, QueueError};
use relay_tests::moto;
use relay_tests::queue_conformance::{self as suite, MIN_VISIBILITY};

async fn fresh() -> (Client, SqsQueue) {
    let client = moto::sqs_client().await.expect("local SQS");
    let url = moto::create_queue(&client, MIN_VISIBILITY)
        .await
        .expect("queue");
    (client.clone(), SqsQueue::new(client, url))
}

#[tokio::test]
async fn batch_of_25_is_chunked_and_received() {
    suite::batch_of_25_is_chunked_and_received(&fresh().await.1)
        .await
        .unwrap();
}

#[tokio::test]
async fn body_and_attributes_round_trip() {
    suite::body_and_attributes_round_trip(&fresh().await.1)
        .await
        .unwrap();
}

#[tokio::test]
async fn visibility_change_makes_message_reappear() {
    suite::visibility_change_makes_message_reappear(&fresh().await.1)
        .await
        .unwrap();
}

#[tokio::test]
async fn receive_count_increments() {
    suite::receive_count_increments(&fresh().await.1)
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_removes_the_message() {
    suite::delete_removes_the_message(&fresh().await.1)
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_entries_are_reported_and_the_rest_sent() {
    suite::invalid_entries_are_reported_and_the_rest_sent(&fresh().await.1)
        .await
        .unwrap();
}

#[tokio::test]
async fn delayed_message_is_hidden_at_first() {
    suite::delayed_message_is_hidden_at_first(&fresh().await.1)
        .await
        .unwrap();
}

#[tokio::test]
async fn receive_zero_returns_nothing() {
    suite::receive_zero_returns_nothing(&fresh().await.1)
        .await
        .unwrap();
}

#[tokio::test]
async fn dead_letter_after_max_receives() {
    let client = moto::sqs_client().await.expect("local SQS");
    let (url, dlq_url) = moto::create_queue_with_dlq(&client, MIN_VISIBILITY, 2)
        .await
        .expect("queues");
    let (q, dlq) = (
        SqsQueue::new(client.clone(), url),
        SqsQueue::new(client, dlq_url),
    );
    suite::dead_letter_after_max_receives(&q, &dlq, 2)
        .await
        .unwrap();
}

#[tokio::test]
async fn failed_call_reports_every_entry_of_that_chunk_only() {
    // A queue whose size limit is 1 KiB: moto refuses the whole SendMessageBatch call that
    // carries the oversized entry, so its chunk (entries 10-19) fails and the other two
    // chunks are enqueued.
    let client = moto::sqs_client().await.expect("local SQS");
    let url = moto::create_queue(&client, MIN_VISIBILITY)
        .await
        .expect("queue");
    client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize,
            "1024",
        )
        .send()
        .await
        .expect("set size limit");
    let q = SqsQueue::new(client, url);
    let mut batch: Vec<_> = (0..25)
        .map(|i| OutboundMessage::new(format!("e{i}"), format!("body-{i}")))
        .collect();
    batch[15].body = "x".repeat(2000);

    let err = q.send_batch(&batch).await.expect_err("oversized entry");
    let QueueError::BatchFailed { failed, total } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*total, 25);
    let ids: Vec<&str> = failed.iter().map(|f| f.id.as_str()).collect();
    let expected: Vec<String> = (10..20).map(|i| format!("e{i}")).collect();
    assert_eq!(ids, expected);
    assert!(
        failed
            .iter()
            .all(|f| !f.sender_fault && f.code == "InvalidParameterValue"),
        "{failed:?}"
    );

    let mut bodies = Vec::new();
    for _ in 0..5 {
        bodies.extend(
            q.receive(10, Duration::from_secs(1))
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.body),
        );
    }
    bodies.sort();
    let mut expected: Vec<String> = (0..10).chain(20..25).map(|i| format!("body-{i}")).collect();
    expected.sort();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn missing_queue_fails_every_entry() {
    let client = moto::sqs_client().await.expect("local SQS");
    let endpoint = tokio::task::spawn_blocking(moto::sqs_endpoint)
        .await
        .unwrap()
        .unwrap();
    let q = SqsQueue::new(
        client,
        format!("{endpoint}/123456789012/relay-test-does-not-exist"),
    );
    let batch: Vec<_> = (0..12)
        .map(|i| OutboundMessage::new(format!("e{i}"), "x"))
        .collect();
    let err = q.send_batch(&batch).await.expect_err("no such queue");
    assert_eq!(err.failed_ids().len(), 12);
    let receive = q
        .receive(1, Duration::ZERO)
        .await
        .expect_err("no such queue");
    assert!(
        matches!(
            receive,
            QueueError::Service {
                operation: "ReceiveMessage",
                ..
            }
        ),
        "{receive:?}"
    );
}

#[tokio::test]
async fn deleting_with_a_made_up_receipt_is_an_invalid_receipt() {
    let (_, q) = fresh().await;
    let err = q
        .delete(&relay_shared::queue::ReceiptHandle("made-up".into()))
        .await
        .expect_err("invalid");
    assert!(matches!(err, QueueError::InvalidReceipt), "{err:?}");
}

/// moto's server answers on several threads, and its queues' message operations are not
/// atomic: a message sent while two deletes overlap is lost (the storm test lost one
/// delivery of 500 this way). The launcher the harness starts moto with serialises them;
/// its self-check replays the interleaving step by step on moto's own `Queue`, first as
/// released (the send is lost), then serialised (it is kept).
#[test]
fn the_moto_launcher_keeps_a_message_sent_while_two_deletes_overlap() {
    let out = std::process::Command::new("python3")
        .arg(moto::launcher().unwrap())
        .arg("--self-check")
        .output()
        .expect("python3 runs the launcher");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("serialised: the concurrent send survived, the other delete held"),
        "{stdout}"
    );
    println!("{stdout}");
}

/// The server the tests share is the launcher's, not a bare `moto_server` (which would
/// lose messages under the pipeline harness's concurrency).
#[test]
fn the_shared_moto_server_is_the_serialised_one() {
    let endpoint = moto::sqs_endpoint().expect("local SQS");
    let pidfile = moto::cache_dir().unwrap().join("moto.pid");
    let started_here = endpoint.starts_with("http://127.0.0.1:") && pidfile.exists();
    if !started_here {
        // SQS_ENDPOINT points at a server this workspace did not start (LocalStack, a CI
        // service): nothing to check here.
        println!("{endpoint} was not started by this workspace; not checked");
        return;
    }
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("moto_server.py"),
        "the moto server on {endpoint} (pid {}) runs `{cmdline}`, not scripts/moto_server.py: \
         stop it (scripts/moto.sh stop) and run the tests again",
        pid.trim()
    );
}
