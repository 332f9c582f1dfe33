//! Queues in the SQLite file, with SQS's delivery semantics: a received message stays
//! hidden for the visibility timeout and then comes back with its receive count raised and
//! a new receipt (the earlier one stops working); per-message delay; long polling; and a
//! redrive policy that moves a message already received `max_receives` times to the
//! dead-letter queue the next time it would be delivered, keeping its id, body, attributes
//! and receive count. Every queue of the relay is rows of one `messages` table, so moving
//! a message to the dead-letter queue is one update in the receive's transaction.
//!
//! Times are epoch milliseconds from the queue's [`Clock`] (they outlive the process);
//! waiting is `tokio::time`. SQS's limits apply as in the other adapters ([`batch::plan`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Transaction, params};
use tokio::sync::Notify;

use relay_shared::queue::{
    MAX_RECEIVE, MAX_VISIBILITY, MAX_WAIT, OutboundMessage, Queue, QueueError, ReceiptHandle,
    ReceivedMessage, batch,
};
use relay_shared::store::Clock;

use super::{Db, DiskError};

impl From<DiskError> for QueueError {
    fn from(error: DiskError) -> Self {
        let operation = match &error {
            DiskError::Sqlite { operation, .. } => operation,
            _ => "SQLite",
        };
        QueueError::Service {
            operation,
            message: error.to_string(),
        }
    }
}

fn sql(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> QueueError {
    move |error| DiskError::Sqlite { operation, error }.into()
}

/// Where a queue sends messages it has delivered too often.
#[derive(Debug, Clone)]
struct Redrive {
    queue: String,
    arrived: Arc<Notify>,
    max_receives: u32,
}

/// One named queue in the database. Clones share it.
#[derive(Debug, Clone)]
pub struct DiskQueue {
    db: Db,
    name: String,
    clock: Arc<dyn Clock>,
    visibility_timeout: Duration,
    arrived: Arc<Notify>,
    redrive: Option<Redrive>,
}

impl DiskQueue {
    /// The queue `name` in `db`, whose received messages stay hidden for
    /// `visibility_timeout`. Handles for one name should be clones of one `DiskQueue`, so a
    /// send wakes their long polls at once (others see the message at their next look).
    pub fn new(db: Db, name: &str, visibility_timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        DiskQueue {
            db,
            name: name.to_owned(),
            clock,
            visibility_timeout,
            arrived: Arc::new(Notify::new()),
            redrive: None,
        }
    }

    /// Like SQS's redrive policy: a message already received `max_receives` times is moved
    /// to `dead_letters` (a queue of the same database) the next time it would be delivered.
    #[must_use]
    pub fn with_dead_letter(mut self, dead_letters: &DiskQueue, max_receives: u32) -> Self {
        self.redrive = Some(Redrive {
            queue: dead_letters.name.clone(),
            arrived: Arc::clone(&dead_letters.arrived),
            max_receives: max_receives.max(1),
        });
        self
    }

    /// Messages held, visible or not (SQS's visible + in-flight + delayed).
    pub async fn len(&self) -> Result<usize, QueueError> {
        let name = self.name.clone();
        self.db
            .read("count messages", move |tx| {
                tx.query_row(
                    "SELECT COUNT(*) FROM messages WHERE queue = ?1",
                    [&name],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| usize::try_from(n).unwrap_or(0))
                .map_err(sql("count messages"))
            })
            .await
    }

    /// True when no message is held.
    pub async fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len().await? == 0)
    }

    /// Makes every received message visible again at once and voids its receipt. Only for
    /// start-up, while holding the data directory's lock: the process that received them
    /// has ended, so nobody is working on them, and they need not wait out their
    /// visibility. Their receive counts stay, so a message that keeps crashing the relay is
    /// still dead-lettered by the redrive policy. Answers how many.
    pub async fn recover_in_flight(&self) -> Result<usize, QueueError> {
        let now = self.clock.now().timestamp_millis();
        let name = self.name.clone();
        let recovered = self
            .db
            .write("recover messages", move |tx| {
                tx.execute(
                    "UPDATE messages SET visible_at = MIN(visible_at, ?2), receipt = NULL
                     WHERE queue = ?1 AND receipt IS NOT NULL",
                    params![name, now],
                )
                .map_err(sql("recover messages"))
            })
            .await?;
        self.arrived.notify_waiters();
        Ok(recovered)
    }

    /// One look: dead-letters what is spent, delivers up to `max` visible messages, and
    /// says when the next hidden one becomes visible (epoch ms).
    async fn take(&self, max: usize) -> Result<(Vec<ReceivedMessage>, Option<i64>), QueueError> {
        let now = self.clock.now().timestamp_millis();
        let visible_again = now.saturating_add(millis(self.visibility_timeout));
        let (name, redrive) = (self.name.clone(), self.redrive.clone());
        let (found, next, moved) = self
            .db
            .write("receive", move |tx| {
                let moved = match &redrive {
                    Some(r) => tx
                        .execute(
                            "UPDATE messages SET queue = ?2, visible_at = ?3, receipt = NULL
                             WHERE queue = ?1 AND visible_at <= ?3 AND receive_count >= ?4",
                            params![name, r.queue, now, r.max_receives],
                        )
                        .map_err(sql("dead-letter"))?,
                    None => 0,
                };
                let found = receive_visible(tx, &name, now, max, visible_again)?;
                let next = if found.is_empty() {
                    tx.query_row(
                        "SELECT MIN(visible_at) FROM messages WHERE queue = ?1",
                        [&name],
                        |r| r.get::<_, Option<i64>>(0),
                    )
                    .map_err(sql("receive"))?
                } else {
                    None
                };
                Ok::<_, QueueError>((found, next, moved))
            })
            .await?;
        if moved > 0
            && let Some(r) = &self.redrive
        {
            r.arrived.notify_waiters();
        }
        Ok((found, next))
    }

    async fn set_visibility(&self, receipt: &ReceiptHandle, at: i64) -> Result<(), QueueError> {
        let (name, receipt) = (self.name.clone(), receipt.as_str().to_owned());
        let changed = self
            .db
            .write("change visibility", move |tx| {
                tx.execute(
                    "UPDATE messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
                    params![name, receipt, at],
                )
                .map_err(sql("change visibility"))
            })
            .await?;
        if changed == 1 {
            Ok(())
        } else {
            Err(QueueError::InvalidReceipt)
        }
    }
}

/// Marks up to `max` visible messages received (count + 1, a new receipt, hidden until
/// `visible_again`) and answers them, oldest visible first.
fn receive_visible(
    tx: &Transaction<'_>,
    queue: &str,
    now: i64,
    max: usize,
    visible_again: i64,
) -> Result<Vec<ReceivedMessage>, QueueError> {
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let rows: Vec<(i64, String, String, String, u32)> = {
        let mut select = tx
            .prepare_cached(
                "SELECT seq, message_id, body, attributes, receive_count FROM messages
                 WHERE queue = ?1 AND visible_at <= ?2
                 ORDER BY visible_at, seq LIMIT ?3",
            )
            .map_err(sql("receive"))?;
        let rows = select
            .query_map(params![queue, now, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(sql("receive"))?;
        rows.collect::<Result<_, _>>().map_err(sql("receive"))?
    };
    let mut out = Vec::with_capacity(rows.len());
    for (seq, message_id, body, attributes, count) in rows {
        let receipt = uuid::Uuid::new_v4().to_string();
        let receive_count = count.saturating_add(1);
        tx.execute(
            "UPDATE messages SET receive_count = ?2, receipt = ?3, visible_at = ?4 WHERE seq = ?1",
            params![seq, receive_count, receipt, visible_again],
        )
        .map_err(sql("receive"))?;
        let attributes: BTreeMap<String, String> =
            serde_json::from_str(&attributes).map_err(|e| QueueError::Service {
                operation: "receive",
                message: format!("message {message_id}: stored attributes are malformed: {e}"),
            })?;
        out.push(ReceivedMessage {
            message_id,
            receipt: ReceiptHandle(receipt),
            body,
            receive_count,
            attributes,
        });
    }
    Ok(out)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Queue for DiskQueue {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<(), QueueError> {
        let plan = batch::plan(messages);
        let now = self.clock.now().timestamp_millis();
        let rows: Vec<(String, String, String, i64)> = plan
            .chunks
            .iter()
            .flatten()
            .map(|m| {
                let attributes =
                    serde_json::to_string(&m.attributes).unwrap_or_else(|_| "{}".to_owned());
                let visible_at = now.saturating_add(millis(m.delay.unwrap_or_default()));
                (
                    uuid::Uuid::new_v4().to_string(),
                    m.body.clone(),
                    attributes,
                    visible_at,
                )
            })
            .collect();
        // All of the accepted entries in one transaction: every one is stored, or none.
        let accepted: Vec<String> = plan.chunks.iter().flatten().map(|m| m.id.clone()).collect();
        let name = self.name.clone();
        let stored = self
            .db
            .write("send", move |tx| {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO messages (queue, message_id, body, attributes, sent_at, visible_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(sql("send"))?;
                for (id, body, attributes, visible_at) in rows {
                    insert
                        .execute(params![name, id, body, attributes, now, visible_at])
                        .map_err(sql("send"))?;
                }
                Ok::<_, QueueError>(())
            })
            .await;
        let mut failed = plan.refused;
        match stored {
            Ok(()) => self.arrived.notify_waiters(),
            Err(error) => {
                let message = error.to_string();
                failed.extend(
                    accepted
                        .into_iter()
                        .map(|id| relay_shared::queue::FailedEntry {
                            id,
                            code: "LocalStoreUnavailable".into(),
                            message: message.clone(),
                            sender_fault: false,
                        }),
                );
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(QueueError::BatchFailed {
                failed,
                total: messages.len(),
            })
        }
    }

    async fn receive(&self, max: u16, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = usize::from(max.min(MAX_RECEIVE));
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Register interest before looking, so a send between the look and the wait
            // still wakes us.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();

            let (found, next_visible) = self.take(max).await?;
            let now = tokio::time::Instant::now();
            if !found.is_empty() || now >= deadline {
                return Ok(found);
            }
            let wake = next_visible.map_or(deadline, |at| {
                let ms = at
                    .saturating_sub(self.clock.now().timestamp_millis())
                    .max(1);
                let in_ = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
                now.checked_add(in_).map_or(deadline, |t| t.min(deadline))
            });
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
        let (name, receipt) = (self.name.clone(), receipt.as_str().to_owned());
        let deleted = self
            .db
            .write("delete", move |tx| {
                tx.execute(
                    "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                    params![name, receipt],
                )
                .map_err(sql("delete"))
            })
            .await?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(QueueError::InvalidReceipt)
        }
    }

    async fn change_visibility(
        &self,
        receipt: &ReceiptHandle,
        delay: Duration,
    ) -> Result<(), QueueError> {
        if delay > MAX_VISIBILITY {
            return Err(QueueError::InvalidArgument(
                "visibility longer than 12 hours",
            ));
        }
        let at = self
            .clock
            .now()
            .timestamp_millis()
            .saturating_add(millis(delay));
        self.set_visibility(receipt, at).await?;
        if delay.is_zero() {
            self.arrived.notify_waiters();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::testing::reopen;
    use relay_shared::store::ManualClock;

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(crate::disk::from_ms(1_800_000_000_000)))
    }

    fn one(id: &str) -> Vec<OutboundMessage> {
        vec![OutboundMessage::new(id, format!("body-{id}"))]
    }

    #[tokio::test]
    async fn visibility_runs_on_the_queue_clock_and_old_receipts_stop_working() {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let q = DiskQueue::new(
            Db::open(dir.path()).unwrap(),
            "q",
            Duration::from_secs(30),
            clock.clone(),
        );
        q.send_batch(&one("a")).await.unwrap();
        let first = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1);
        clock.advance(chrono::TimeDelta::seconds(29));
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        clock.advance(chrono::TimeDelta::seconds(1));
        let again = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(again[0].receive_count, 2);
        assert!(matches!(
            q.delete(&first[0].receipt).await,
            Err(QueueError::InvalidReceipt)
        ));
        assert!(matches!(
            q.change_visibility(&first[0].receipt, Duration::ZERO).await,
            Err(QueueError::InvalidReceipt)
        ));
        q.delete(&again[0].receipt).await.unwrap();
        assert!(q.is_empty().await.unwrap());
    }

    /// What a crash leaves: queued, delayed and in-flight messages and the dead letters are
    /// all there after a reopen; start-up recovery makes the in-flight ones visible at once
    /// (receive count kept, old receipt void) and leaves delayed ones hidden.
    #[tokio::test]
    async fn messages_survive_a_reopen_and_in_flight_ones_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let open = |db: Db| {
            let dlq = DiskQueue::new(db.clone(), "dlq", Duration::from_secs(60), clock.clone());
            let q = DiskQueue::new(db, "q", Duration::from_secs(60), clock.clone())
                .with_dead_letter(&dlq, 5);
            (q, dlq)
        };
        let receipt = {
            let (q, dlq) = open(Db::open(dir.path()).unwrap());
            q.send_batch(&one("taken")).await.unwrap();
            let taken = q.receive(10, Duration::ZERO).await.unwrap();
            let mut later = OutboundMessage::new("later", "body-later");
            later.delay = Some(Duration::from_secs(300));
            q.send_batch(&[later, OutboundMessage::new("waiting", "body-waiting")])
                .await
                .unwrap();
            dlq.send_batch(&one("dead")).await.unwrap();
            taken[0].receipt.clone()
        };
        let (q, dlq) = open(reopen(dir.path()));
        assert_eq!(q.len().await.unwrap(), 3);
        assert_eq!(dlq.len().await.unwrap(), 1);
        assert_eq!(q.recover_in_flight().await.unwrap(), 1);
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        let mut seen: Vec<(&str, u32)> = got
            .iter()
            .map(|m| (m.body.as_str(), m.receive_count))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, [("body-taken", 2), ("body-waiting", 1)]);
        assert!(matches!(
            q.delete(&receipt).await,
            Err(QueueError::InvalidReceipt)
        ));
        for m in &got {
            q.delete(&m.receipt).await.unwrap();
        }
        clock.advance(chrono::TimeDelta::seconds(300));
        let later = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].body, "body-later");
        assert_eq!(
            dlq.receive(10, Duration::ZERO).await.unwrap()[0].body,
            "body-dead"
        );
    }

    /// A message that crashes the relay every time it is taken (received, never settled,
    /// recovered at each start) is dead-lettered after `max_receives`, as SQS's redrive
    /// does with a consumer that keeps dying.
    #[tokio::test]
    async fn a_message_that_keeps_crashing_the_relay_is_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let db = Db::open(dir.path()).unwrap();
        let dlq = DiskQueue::new(db.clone(), "dlq", Duration::from_secs(60), clock.clone());
        let q = DiskQueue::new(db, "q", Duration::from_secs(60), clock.clone())
            .with_dead_letter(&dlq, 3);
        q.send_batch(&one("poison")).await.unwrap();
        for expected in 1..=3 {
            let got = q.receive(10, Duration::ZERO).await.unwrap();
            assert_eq!(got[0].receive_count, expected);
            q.recover_in_flight().await.unwrap();
        }
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(q.len().await.unwrap(), 0);
        let dead = dlq.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(dead[0].body, "body-poison");
        assert_eq!(dead[0].receive_count, 4);
    }
}
