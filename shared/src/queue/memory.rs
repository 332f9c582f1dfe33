//! In-process queue with SQS's delivery semantics (visibility timeout, receive count,
//! per-message delay, long polling, dead-letter queue after N receives), for `relay serve`
//! and tests. Time is `tokio::time`, so tests can pause and advance it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    MAX_RECEIVE, MAX_VISIBILITY, MAX_WAIT, OutboundMessage, Queue, QueueError, ReceiptHandle,
    ReceivedMessage, batch,
};

/// SQS's default visibility timeout.
pub const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Stored {
    message_id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    visible_at: Instant,
    receive_count: u32,
    /// The receipt of the latest receive; earlier ones no longer work.
    receipt: Option<String>,
}

#[derive(Debug)]
struct DeadLetter {
    queue: Arc<MemoryQueue>,
    max_receives: u32,
}

/// An in-memory [`Queue`].
#[derive(Debug)]
pub struct MemoryQueue {
    messages: Mutex<VecDeque<Stored>>,
    arrived: Notify,
    visibility_timeout: Duration,
    dead_letter: Option<DeadLetter>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(DEFAULT_VISIBILITY)
    }
}

impl MemoryQueue {
    /// A queue whose received messages stay hidden for `visibility_timeout`.
    #[must_use]
    pub fn new(visibility_timeout: Duration) -> Self {
        Self {
            messages: Mutex::default(),
            arrived: Notify::new(),
            visibility_timeout,
            dead_letter: None,
        }
    }

    /// Like SQS's redrive policy: a message already received `max_receives` times is moved
    /// to `queue` the next time it would be delivered, instead of being delivered.
    #[must_use]
    pub fn with_dead_letter(mut self, queue: Arc<MemoryQueue>, max_receives: u32) -> Self {
        self.dead_letter = Some(DeadLetter {
            queue,
            max_receives: max_receives.max(1),
        });
        self
    }

    /// Messages held, visible or not (SQS's visible + in-flight + delayed).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no message is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Stored>> {
        // A panic elsewhere while holding the lock leaves the queue consistent (every
        // mutation is a single push/remove/field write), so the poison is ignored.
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, stored: Stored) {
        self.lock().push_back(stored);
        self.arrived.notify_waiters();
    }

    /// One pass over the queue: delivers what is visible, dead-letters what is spent, and
    /// says when the next hidden message becomes visible.
    fn take(&self, max: usize, now: Instant) -> (Vec<ReceivedMessage>, Option<Instant>) {
        let mut out = Vec::new();
        let mut next_visible: Option<Instant> = None;
        let mut spent = Vec::new();
        {
            let mut messages = self.lock();
            let mut i = 0;
            while i < messages.len() && out.len() < max {
                let m = &mut messages[i];
                if m.visible_at > now {
                    next_visible = Some(next_visible.map_or(m.visible_at, |t| t.min(m.visible_at)));
                    i += 1;
                    continue;
                }
                if let Some(dl) = &self.dead_letter
                    && m.receive_count >= dl.max_receives
                {
                    if let Some(moved) = messages.remove(i) {
                        spent.push(moved);
                    }
                    continue;
                }
                m.receive_count += 1;
                let receipt = uuid::Uuid::new_v4().to_string();
                m.receipt = Some(receipt.clone());
                m.visible_at = now + self.visibility_timeout;
                out.push(ReceivedMessage {
                    message_id: m.message_id.clone(),
                    receipt: ReceiptHandle(receipt),
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                    attributes: m.attributes.clone(),
                });
                i += 1;
            }
        }
        if let Some(dl) = &self.dead_letter {
            for mut moved in spent {
                moved.visible_at = now;
                moved.receipt = None;
                dl.queue.push(moved);
            }
        }
        (out, next_visible)
    }

    fn find_in_flight(messages: &VecDeque<Stored>, receipt: &ReceiptHandle) -> Option<usize> {
        messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt.as_str()))
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<(), QueueError> {
        let plan = batch::plan(messages);
        let now = Instant::now();
        for m in plan.chunks.iter().flatten() {
            self.push(Stored {
                message_id: uuid::Uuid::new_v4().to_string(),
                body: m.body.clone(),
                attributes: m.attributes.clone(),
                visible_at: now + m.delay.unwrap_or_default(),
                receive_count: 0,
                receipt: None,
            });
        }
        if plan.refused.is_empty() {
            Ok(())
        } else {
            Err(QueueError::BatchFailed {
                failed: plan.refused,
                total: messages.len(),
            })
        }
    }

    async fn receive(&self, max: u16, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = usize::from(max.min(MAX_RECEIVE));
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Register interest before looking, so a send between the look and the wait
            // still wakes us.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();

            let now = Instant::now();
            let (found, next_visible) = self.take(max, now);
            if !found.is_empty() || now >= deadline {
                return Ok(found);
            }
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
        let mut messages = self.lock();
        let index = Self::find_in_flight(&messages, receipt).ok_or(QueueError::InvalidReceipt)?;
        messages.remove(index);
        Ok(())
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
        {
            let mut messages = self.lock();
            let index =
                Self::find_in_flight(&messages, receipt).ok_or(QueueError::InvalidReceipt)?;
            messages[index].visible_at = Instant::now() + delay;
        }
        if delay.is_zero() {
            self.arrived.notify_waiters();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(id: &str) -> Vec<OutboundMessage> {
        vec![OutboundMessage::new(id, format!("body-{id}"))]
    }

    #[tokio::test(start_paused = true)]
    async fn message_reappears_when_visibility_expires() {
        let q = MemoryQueue::new(Duration::from_secs(30));
        q.send_batch(&one("a")).await.unwrap();
        let first = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        let again = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(again[0].receive_count, 2);
        // The first receipt was superseded.
        assert!(matches!(
            q.delete(&first[0].receipt).await,
            Err(QueueError::InvalidReceipt)
        ));
        q.delete(&again[0].receipt).await.unwrap();
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_returns_when_a_message_arrives() {
        let q = Arc::new(MemoryQueue::default());
        let sender = Arc::clone(&q);
        let start = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            sender.send_batch(&one("late")).await.unwrap();
        });
        let got = q.receive(10, Duration::from_secs(20)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_gives_up_at_the_wait_and_clamps_it_to_20s() {
        let q = MemoryQueue::default();
        let start = Instant::now();
        assert!(
            q.receive(10, Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(start.elapsed(), MAX_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_message_becomes_visible_after_its_delay() {
        let q = MemoryQueue::default();
        let mut m = OutboundMessage::new("d", "later");
        m.delay = Some(Duration::from_secs(5));
        q.send_batch(&[m]).await.unwrap();
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        let start = Instant::now();
        let got = q.receive(10, Duration::from_secs(10)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn visibility_longer_than_12h_is_refused() {
        let q = MemoryQueue::default();
        q.send_batch(&one("a")).await.unwrap();
        let got = q.receive(1, Duration::ZERO).await.unwrap();
        let err = q
            .change_visibility(&got[0].receipt, MAX_VISIBILITY + Duration::from_secs(1))
            .await;
        assert!(matches!(err, Err(QueueError::InvalidArgument(_))));
        q.change_visibility(&got[0].receipt, MAX_VISIBILITY)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn refused_entries_are_reported_and_the_rest_enqueued() {
        let q = MemoryQueue::default();
        let messages = vec![
            OutboundMessage::new("ok", "x"),
            OutboundMessage::new("bad id", "x"),
        ];
        let err = q.send_batch(&messages).await.unwrap_err();
        assert_eq!(err.failed_ids(), ["bad id"]);
        assert!(matches!(err, QueueError::BatchFailed { total: 2, .. }));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn debug_hides_bodies() {
        let m = OutboundMessage::new("a", "someone@example.com");
        assert!(!format!("{m:?}").contains("someone"));
    }
}
