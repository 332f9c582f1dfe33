//! The queue conformance suite against the in-memory adapter used by `relay serve`. Time is
//! paused (tokio auto-advances it), so the suite's long polls cost no wall-clock time.

use std::sync::Arc;

use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::{Queue, QueueError, ReceiptHandle};
use relay_tests::queue_conformance::{self as suite, MIN_VISIBILITY};

fn fresh() -> MemoryQueue {
    MemoryQueue::new(MIN_VISIBILITY)
}

#[tokio::test(start_paused = true)]
async fn batch_of_25_is_chunked_and_received() {
    suite::batch_of_25_is_chunked_and_received(&fresh())
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn body_and_attributes_round_trip() {
    suite::body_and_attributes_round_trip(&fresh())
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn visibility_change_makes_message_reappear() {
    suite::visibility_change_makes_message_reappear(&fresh())
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn receive_count_increments() {
    suite::receive_count_increments(&fresh()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn delete_removes_the_message() {
    suite::delete_removes_the_message(&fresh()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn invalid_entries_are_reported_and_the_rest_sent() {
    suite::invalid_entries_are_reported_and_the_rest_sent(&fresh())
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn delayed_message_is_hidden_at_first() {
    suite::delayed_message_is_hidden_at_first(&fresh())
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn receive_zero_returns_nothing() {
    suite::receive_zero_returns_nothing(&fresh()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dead_letter_after_max_receives() {
    let dlq = Arc::new(MemoryQueue::new(MIN_VISIBILITY));
    let q = MemoryQueue::new(MIN_VISIBILITY).with_dead_letter(Arc::clone(&dlq), 2);
    suite::dead_letter_after_max_receives(&q, dlq.as_ref(), 2)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn deleting_with_a_made_up_receipt_is_an_invalid_receipt() {
    let err = fresh()
        .delete(&ReceiptHandle("made-up".into()))
        .await
        .expect_err("invalid");
    assert!(matches!(err, QueueError::InvalidReceipt), "{err:?}");
}
