//! The queue conformance suite against the local relay's on-disk (SQLite) queue, on the
//! real clock as with SQS (its times are stored, so tokio's paused time cannot drive them).

use relay_shared::queue::{Queue, QueueError, ReceiptHandle};
use relay_tests::queue_conformance::{self as suite, DiskQueues};

fn fresh() -> DiskQueues {
    DiskQueues::fresh(None)
}

#[tokio::test]
async fn batch_of_25_is_chunked_and_received() {
    suite::batch_of_25_is_chunked_and_received(&fresh().queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn body_and_attributes_round_trip() {
    suite::body_and_attributes_round_trip(&fresh().queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn visibility_change_makes_message_reappear() {
    suite::visibility_change_makes_message_reappear(&fresh().queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn receive_count_increments() {
    suite::receive_count_increments(&fresh().queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_removes_the_message() {
    suite::delete_removes_the_message(&fresh().queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_entries_are_reported_and_the_rest_sent() {
    suite::invalid_entries_are_reported_and_the_rest_sent(&fresh().queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn delayed_message_is_hidden_at_first() {
    suite::delayed_message_is_hidden_at_first(&fresh().queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn receive_zero_returns_nothing() {
    suite::receive_zero_returns_nothing(&fresh().queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn dead_letter_after_max_receives() {
    let q = DiskQueues::fresh(Some(2));
    suite::dead_letter_after_max_receives(&q.queue, &q.dead_letters, 2)
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_with_a_made_up_receipt_is_an_invalid_receipt() {
    let err = fresh()
        .queue
        .delete(&ReceiptHandle("made-up".into()))
        .await
        .expect_err("invalid");
    assert!(matches!(err, QueueError::InvalidReceipt), "{err:?}");
}
