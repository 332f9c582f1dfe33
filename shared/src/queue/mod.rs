//! The queue port: what ingest needs to hand work to the worker, and what the local worker
//! loop needs to take it. `sqs` is the production adapter, `memory` serves `relay serve`
//! and tests; both apply SQS's limits (see [`batch`]) so local runs fail the way AWS would.

pub mod batch;
pub mod memory;
pub mod sqs;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

/// Most entries SQS takes in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most bytes (bodies plus attributes) SQS takes in one batch, and in one message.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Longest per-message delay SQS allows.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Longest visibility timeout SQS allows.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// Most messages one receive returns.
pub const MAX_RECEIVE: u16 = 10;
/// Longest long-poll wait SQS allows.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Most message attributes SQS allows on one message.
pub const MAX_ATTRIBUTES: usize = 10;

/// A message to enqueue.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Batch-entry id, unique within one `send_batch` call: `[A-Za-z0-9_-]{1,80}`. Failures
    /// are reported by it, so callers use something that leads back to their claim.
    pub id: String,
    /// The payload (JSON for the worker).
    pub body: String,
    /// Hide the message for this long after sending (≤ 15 min).
    pub delay: Option<Duration>,
    /// String message attributes (≤ 10), e.g. the vendor, for routing and tracing.
    pub attributes: BTreeMap<String, String>,
}

impl OutboundMessage {
    /// A message with no delay and no attributes.
    #[must_use]
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            body: body.into(),
            delay: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Bytes this message counts against the batch limit: body, attribute names, the
    /// data type (`String`) and values, as SQS counts them.
    #[must_use]
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, value)| name.len() + "String".len() + value.len())
                .sum::<usize>()
    }
}

// Bodies carry personal data: Debug shows sizes, never content.
impl fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("id", &self.id)
            .field("body_bytes", &self.body.len())
            .field("delay", &self.delay)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The handle that deletes or re-times one receipt of a message. Each receive issues a new
/// one; only the latest is guaranteed to work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptHandle(pub String);

impl ReceiptHandle {
    /// The raw handle.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message taken from the queue; invisible to others until its visibility runs out.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue's id for the message, stable across receives.
    pub message_id: String,
    /// Handle for `delete` / `change_visibility`.
    pub receipt: ReceiptHandle,
    /// The payload.
    pub body: String,
    /// How many times it has been received, this time included (1 on first delivery).
    pub receive_count: u32,
    /// String message attributes.
    pub attributes: BTreeMap<String, String>,
}

impl fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("message_id", &self.message_id)
            .field("body_bytes", &self.body.len())
            .field("receive_count", &self.receive_count)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One batch entry that was not enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// The entry's [`OutboundMessage::id`].
    pub id: String,
    /// Machine-readable reason (an SQS error code, or one of ours such as `MessageTooLarge`).
    pub code: String,
    /// Human-readable detail (never the body).
    pub message: String,
    /// True when resending the same entry cannot succeed.
    pub sender_fault: bool,
}

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Some entries of a batch were not enqueued; every entry not listed was.
    #[error("{} of {total} batch entries were not enqueued", failed.len())]
    BatchFailed {
        /// The entries that were not enqueued.
        failed: Vec<FailedEntry>,
        /// How many entries the batch had.
        total: usize,
    },
    /// The receipt handle is unknown, superseded by a later receive, or its message is gone.
    #[error("receipt handle is not valid for an in-flight message")]
    InvalidReceipt,
    /// An argument outside the queue's limits.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The queue service failed or could not be reached.
    #[error("queue operation {operation} failed: {message}")]
    Service {
        /// The API operation.
        operation: &'static str,
        /// The service's error text.
        message: String,
    },
}

impl QueueError {
    /// Ids of entries that were not enqueued (empty for errors other than `BatchFailed`).
    #[must_use]
    pub fn failed_ids(&self) -> Vec<&str> {
        match self {
            Self::BatchFailed { failed, .. } => failed.iter().map(|f| f.id.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Receives as an SQS event source mapping with a batching window
/// (`MaximumBatchingWindowInSeconds`) does: long-polls up to `wait` for a first message,
/// then goes on gathering for up to `window` from then until `max` are in hand. The
/// worker delivers the messages of one batch for one person as one change, so the window
/// bounds how long a change may wait to be coalesced with those that follow it. A failed
/// receive after the first answers what is in hand (they are received, so they must be
/// handled).
pub async fn receive_gathering(
    queue: &dyn Queue,
    max: u16,
    wait: Duration,
    window: Duration,
) -> Result<Vec<ReceivedMessage>, QueueError> {
    /// Between receives that found nothing while gathering.
    const PAUSE: Duration = Duration::from_millis(50);
    let mut batch = queue.receive(max, wait).await?;
    if batch.is_empty() || window.is_zero() {
        return Ok(batch);
    }
    let until = tokio::time::Instant::now() + window;
    while batch.len() < usize::from(max) {
        let now = tokio::time::Instant::now();
        if now >= until {
            break;
        }
        let room = max.saturating_sub(u16::try_from(batch.len()).unwrap_or(max));
        match queue.receive(room, Duration::ZERO).await {
            Ok(more) if more.is_empty() => tokio::time::sleep(PAUSE.min(until - now)).await,
            Ok(more) => batch.extend(more),
            Err(error) => {
                tracing::warn!(%error, "receive failed while gathering a batch; handling those in hand");
                break;
            }
        }
    }
    Ok(batch)
}

/// What ingest and the worker need from a queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues `messages`, chunked internally to SQS's ≤10 entries / ≤256 KiB per call.
    /// `Ok` means every entry was enqueued; otherwise [`QueueError::BatchFailed`] lists the
    /// ones that were not (the rest were), so the caller can release exactly their claims.
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<(), QueueError>;

    /// Takes up to `max` (≤ 10) visible messages, long-polling up to `wait` (≤ 20 s) when
    /// none is visible. Larger arguments are clamped to those limits.
    async fn receive(&self, max: u16, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Removes a received message for good.
    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError>;

    /// Makes a received message visible again after `delay` (≤ 12 h; zero = now).
    async fn change_visibility(
        &self,
        receipt: &ReceiptHandle,
        delay: Duration,
    ) -> Result<(), QueueError>;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::memory::MemoryQueue;

    fn messages(from: usize, n: usize) -> Vec<OutboundMessage> {
        (from..from + n)
            .map(|i| OutboundMessage::new(format!("m{i}"), format!("body {i}")))
            .collect()
    }

    #[tokio::test]
    async fn a_batch_gathers_what_arrives_within_the_window() {
        let queue = Arc::new(MemoryQueue::new(Duration::from_secs(60)));
        queue.send_batch(&messages(0, 1)).await.unwrap();
        let later = queue.clone();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            later.send_batch(&messages(1, 2)).await.unwrap();
        });
        let batch = receive_gathering(
            queue.as_ref(),
            10,
            Duration::from_secs(1),
            Duration::from_secs(3),
        )
        .await
        .unwrap();
        sender.await.unwrap();
        assert_eq!(batch.len(), 3, "the first and the two sent 100 ms later");
    }

    #[tokio::test]
    async fn a_full_batch_or_no_window_is_handed_over_at_once() {
        let queue = MemoryQueue::new(Duration::from_secs(60));
        queue.send_batch(&messages(0, 12)).await.unwrap();
        let started = std::time::Instant::now();
        let full = receive_gathering(&queue, 10, Duration::ZERO, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(full.len(), 10);
        let rest = receive_gathering(&queue, 10, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(rest.len(), 2);
        // Neither waited for its 60 s window (a wide margin, not a timing goal).
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
