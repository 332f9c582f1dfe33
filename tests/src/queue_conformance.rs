//! One behaviour suite for every `Queue` adapter: each function takes fresh queues and
//! fails (returns `Err`) when the adapter deviates. `tests/queue_sqs.rs` runs it against
//! moto's SQS, `tests/queue_memory.rs` against `MemoryQueue`.
//!
//! Queues passed in must have a visibility timeout of at least [`MIN_VISIBILITY`], so that
//! "still hidden" checks do not depend on timing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, ensure};
use relay_shared::queue::{OutboundMessage, Queue, QueueError, ReceivedMessage};

/// The local relay's on-disk queues in a fresh data directory (removed when dropped): a
/// queue with the suite's visibility and, with `max_receives`, a redrive policy to the
/// dead-letter queue beside it in the same file.
pub struct DiskQueues {
    pub queue: relay_local::disk::DiskQueue,
    pub dead_letters: relay_local::disk::DiskQueue,
    _dir: tempfile::TempDir,
}

impl DiskQueues {
    pub fn fresh(max_receives: Option<u32>) -> DiskQueues {
        use std::sync::Arc;

        use relay_local::disk::{Db, DiskQueue};
        use relay_shared::store::SystemClock;

        let dir = tempfile::tempdir().expect("a temporary data directory");
        let db = Db::open(dir.path()).expect("the data directory opens");
        let clock = Arc::new(SystemClock);
        let dead_letters =
            DiskQueue::new(db.clone(), "dead-letters", MIN_VISIBILITY, clock.clone());
        let mut queue = DiskQueue::new(db, "deliveries", MIN_VISIBILITY, clock);
        if let Some(max) = max_receives {
            queue = queue.with_dead_letter(&dead_letters, max);
        }
        DiskQueues {
            queue,
            dead_letters,
            _dir: dir,
        }
    }
}

/// Shortest visibility timeout the suite's queues may have.
pub const MIN_VISIBILITY: Duration = Duration::from_secs(60);

/// Long-poll used where a message is expected.
const WAIT: Duration = Duration::from_secs(1);

fn messages(n: usize) -> Vec<OutboundMessage> {
    (0..n)
        .map(|i| OutboundMessage::new(format!("entry-{i}"), format!(r#"{{"n":{i}}}"#)))
        .collect()
}

/// Receives until `expected` messages arrived or `rounds` receives came back empty.
async fn receive_n(
    q: &dyn Queue,
    expected: usize,
    rounds: usize,
) -> anyhow::Result<Vec<ReceivedMessage>> {
    let mut got = Vec::new();
    let mut empty = 0;
    while got.len() < expected && empty < rounds {
        let batch = q.receive(10, WAIT).await?;
        ensure!(
            batch.len() <= 10,
            "receive returned {} > 10 messages",
            batch.len()
        );
        if batch.is_empty() {
            empty += 1;
        }
        got.extend(batch);
    }
    Ok(got)
}

async fn receive_one(q: &dyn Queue) -> anyhow::Result<ReceivedMessage> {
    let mut got = receive_n(q, 1, 5).await?;
    ensure!(
        got.len() == 1,
        "expected exactly one message, got {}",
        got.len()
    );
    got.pop().context("one message")
}

async fn nothing_visible(q: &dyn Queue) -> anyhow::Result<()> {
    let got = q.receive(10, Duration::ZERO).await?;
    ensure!(
        got.is_empty(),
        "expected no visible message, got {}",
        got.len()
    );
    Ok(())
}

/// 25 messages go out in chunks (10+10+5) and every one arrives once, first receive.
pub async fn batch_of_25_is_chunked_and_received(q: &dyn Queue) -> anyhow::Result<()> {
    let sent = messages(25);
    q.send_batch(&sent).await?;
    let got = receive_n(q, 25, 5).await?;
    let bodies: BTreeSet<&str> = got.iter().map(|m| m.body.as_str()).collect();
    let expected: BTreeSet<&str> = sent.iter().map(|m| m.body.as_str()).collect();
    ensure!(got.len() == 25, "received {} of 25", got.len());
    ensure!(bodies == expected, "bodies differ from what was sent");
    ensure!(
        got.iter().all(|m| m.receive_count == 1),
        "first receive must count 1"
    );
    let ids: BTreeSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    ensure!(ids.len() == 25, "message ids are not distinct");
    nothing_visible(q).await
}

/// Attributes and bodies (incl. non-ASCII) come back unchanged.
pub async fn body_and_attributes_round_trip(q: &dyn Queue) -> anyhow::Result<()> {
    let mut m = OutboundMessage::new("a", r#"{"name":"Zoë Ñandú","emoji":"📨"}"#);
    m.attributes = BTreeMap::from([
        ("vendor".to_owned(), "hood".to_owned()),
        ("event".to_owned(), "e-1".to_owned()),
    ]);
    q.send_batch(std::slice::from_ref(&m)).await?;
    let got = receive_one(q).await?;
    ensure!(got.body == m.body, "body changed");
    ensure!(
        got.attributes == m.attributes,
        "attributes changed: {:?}",
        got.attributes
    );
    Ok(())
}

/// A received message stays hidden; `change_visibility(0)` brings it back with a higher
/// receive count and a new receipt; a long visibility hides it again.
pub async fn visibility_change_makes_message_reappear(q: &dyn Queue) -> anyhow::Result<()> {
    q.send_batch(&messages(1)).await?;
    let first = receive_one(q).await?;
    nothing_visible(q)
        .await
        .context("in flight after receive")?;

    q.change_visibility(&first.receipt, Duration::ZERO).await?;
    let second = receive_one(q).await?;
    ensure!(
        second.message_id == first.message_id,
        "a different message reappeared"
    );
    ensure!(
        second.receipt != first.receipt,
        "a new receive must issue a new receipt"
    );
    ensure!(
        second.receive_count == 2,
        "receive count {} after second receive",
        second.receive_count
    );

    q.change_visibility(&second.receipt, MIN_VISIBILITY).await?;
    nothing_visible(q)
        .await
        .context("hidden again after extending visibility")
}

/// Receive count goes 1, 2, 3 over three receives.
pub async fn receive_count_increments(q: &dyn Queue) -> anyhow::Result<()> {
    q.send_batch(&messages(1)).await?;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let m = receive_one(q).await?;
        counts.push(m.receive_count);
        q.change_visibility(&m.receipt, Duration::ZERO).await?;
    }
    ensure!(counts == [1, 2, 3], "receive counts {counts:?}");
    Ok(())
}

/// A deleted message does not come back, even once its visibility would have run out.
pub async fn delete_removes_the_message(q: &dyn Queue) -> anyhow::Result<()> {
    q.send_batch(&messages(2)).await?;
    let got = receive_n(q, 2, 5).await?;
    ensure!(got.len() == 2, "received {} of 2", got.len());
    // Make both visible again, then delete one with its (still latest) receipt.
    for m in &got {
        q.change_visibility(&m.receipt, Duration::ZERO).await?;
    }
    q.delete(&got[0].receipt).await?;
    let again = receive_n(q, 2, 2).await?;
    let ids: Vec<&str> = again.iter().map(|m| m.message_id.as_str()).collect();
    ensure!(
        ids == [got[1].message_id.as_str()],
        "after delete, received {ids:?}"
    );
    Ok(())
}

/// With a redrive policy of `max_receives`, the message is delivered that many times, then
/// moved to the dead-letter queue instead of being delivered again.
pub async fn dead_letter_after_max_receives(
    q: &dyn Queue,
    dlq: &dyn Queue,
    max_receives: u32,
) -> anyhow::Result<()> {
    let sent = messages(1);
    q.send_batch(&sent).await?;
    let mut message_id = None;
    for expected in 1..=max_receives {
        let m = receive_one(q).await?;
        ensure!(
            m.receive_count == expected,
            "receive {expected} counted {}",
            m.receive_count
        );
        message_id = Some(m.message_id.clone());
        q.change_visibility(&m.receipt, Duration::ZERO).await?;
    }
    nothing_visible(q)
        .await
        .context("message should have moved to the DLQ")?;
    let dead = receive_one(dlq).await?;
    ensure!(
        Some(&dead.message_id) == message_id.as_ref(),
        "DLQ holds a different message"
    );
    ensure!(dead.body == sent[0].body, "DLQ body differs");
    ensure!(
        dead.receive_count == max_receives + 1,
        "DLQ receive count {}",
        dead.receive_count
    );
    Ok(())
}

/// Entries SQS would refuse are reported by id; the others are enqueued.
pub async fn invalid_entries_are_reported_and_the_rest_sent(q: &dyn Queue) -> anyhow::Result<()> {
    let mut batch = messages(12);
    batch[3].id = "not valid!".into();
    batch[7].delay = Some(Duration::from_secs(16 * 60));
    let err = q
        .send_batch(&batch)
        .await
        .err()
        .context("batch with invalid entries must fail")?;
    let mut failed = err.failed_ids();
    failed.sort_unstable();
    ensure!(failed == ["entry-7", "not valid!"], "failed ids {failed:?}");
    ensure!(
        matches!(err, QueueError::BatchFailed { total: 12, .. }),
        "{err:?}"
    );
    let got = receive_n(q, 10, 3).await?;
    let mut bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    let mut expected: Vec<&str> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 7)
        .map(|(_, m)| m.body.as_str())
        .collect();
    expected.sort_unstable();
    ensure!(
        bodies == expected,
        "received {} messages, not the 10 valid ones",
        got.len()
    );
    Ok(())
}

/// A delayed message is not delivered before its delay.
pub async fn delayed_message_is_hidden_at_first(q: &dyn Queue) -> anyhow::Result<()> {
    let mut m = OutboundMessage::new("later", "later");
    m.delay = Some(Duration::from_secs(600));
    q.send_batch(&[m, OutboundMessage::new("now", "now")])
        .await?;
    let got = receive_n(q, 2, 2).await?;
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    ensure!(bodies == ["now"], "received {bodies:?}");
    Ok(())
}

/// Asking for zero messages returns none without error.
pub async fn receive_zero_returns_nothing(q: &dyn Queue) -> anyhow::Result<()> {
    q.send_batch(&messages(1)).await?;
    ensure!(
        q.receive(0, Duration::ZERO).await?.is_empty(),
        "receive(0) returned messages"
    );
    let got = receive_one(q).await?;
    ensure!(
        got.receive_count == 1,
        "receive(0) must not count as a receive"
    );
    Ok(())
}
