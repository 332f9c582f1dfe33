//! Replay: moving dead-lettered deliveries back to the delivery queue after a fix.
//!
//! Each message is sent to the queue first and deleted from the dead-letter queue only
//! after, so a crash never loses one; a message sent twice is harmless, because the worker
//! recognises a delivery already applied. The dead-letter reason travels along as
//! `replayed_reason`, for the log.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::queue::{OutboundMessage, Queue, QueueError};

/// What a replay moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub moved: usize,
    /// How many messages carried each dead-letter reason.
    pub reasons: BTreeMap<String, usize>,
}

/// Moves up to `max` messages (all when `None`) from `dead_letters` to `queue`, calling
/// `progress` after each batch with the number moved so far.
pub async fn redrive(
    dead_letters: &dyn Queue,
    queue: &dyn Queue,
    max: Option<usize>,
    mut progress: impl FnMut(usize),
) -> Result<ReplayReport, QueueError> {
    let mut report = ReplayReport::default();
    loop {
        let room = max.map_or(10, |m| m.saturating_sub(report.moved).min(10));
        if room == 0 {
            return Ok(report);
        }
        let batch = dead_letters
            .receive(u16::try_from(room).unwrap_or(10), Duration::from_secs(1))
            .await?;
        if batch.is_empty() {
            return Ok(report);
        }
        let outbound: Vec<OutboundMessage> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut out = OutboundMessage::new(format!("r{i}"), m.body.clone());
                if let Some(reason) = m.attributes.get("reason") {
                    out.attributes
                        .insert("replayed_reason".into(), reason.clone());
                }
                out
            })
            .collect();
        queue.send_batch(&outbound).await?;
        for m in &batch {
            dead_letters.delete(&m.receipt).await?;
            let reason = m
                .attributes
                .get("reason")
                .cloned()
                .unwrap_or_else(|| "(no reason recorded)".into());
            *report.reasons.entry(reason).or_default() += 1;
        }
        report.moved += batch.len();
        progress(report.moved);
    }
}
