//! Replay: moving dead-lettered deliveries back to the delivery queue after a fix — as
//! they are ([`redrive`], or [`replay`] with [`Mode::Redrive`]), or mapped again from the
//! kept raw request with the current mappings ([`Mode::Remap`]), so a corrected mapping
//! reaches them. [`list`] counts them by reason without taking any; [`reingest_events`]
//! recovers the event-sync failure queue through ingest.
//!
//! Each message is sent to the queue first and deleted from the dead-letter queue only
//! after, so a crash never loses one; a message sent twice is harmless, because the worker
//! recognises a delivery already applied. The dead-letter reason travels along as
//! `replayed_reason`, for the log.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::delivery::DeliveryMessage;
use crate::mapping::{EventDefaults, EventOutcome, Mappings};
use crate::queue::{OutboundMessage, Queue, QueueError, ReceivedMessage};
use crate::store::{Journal, RawKey, RawRecord};
use crate::vendors::Vendor;

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

/// Which dead letters a replay or a listing takes; the rest are left where they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only deliveries to this vendor.
    pub vendor: Option<Vendor>,
    /// Only those whose reason contains this text.
    pub reason: Option<String>,
    /// Only those dead-lettered at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only the message with this SQS message id (the dashboard's replay button).
    pub message_id: Option<String>,
}

impl DeadLetterFilter {
    /// Whether `message` (read as `letter`) is one this filter takes.
    fn passes(&self, message: &ReceivedMessage, letter: &DeadLetter) -> bool {
        self.message_id
            .as_ref()
            .is_none_or(|id| *id == message.message_id)
            && self.takes(letter)
    }

    fn takes(&self, letter: &DeadLetter) -> bool {
        self.vendor.is_none_or(|v| letter.vendor == Some(v))
            && self
                .reason
                .as_ref()
                .is_none_or(|r| letter.reason.contains(r.as_str()))
            && self
                .since
                .is_none_or(|s| letter.dead_lettered_at.is_some_and(|at| at >= s))
    }
}

/// What a dead letter says about itself, without personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub vendor: Option<Vendor>,
    /// The reason attribute (the worker's), or the EventBridge `ERROR_CODE`.
    pub reason: String,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// Whether a kept raw request can be mapped again.
    pub has_raw: bool,
}

impl DeadLetter {
    /// Reads a message of the delivery dead-letter queue or of the event-sync failure queue.
    pub fn of(message: &ReceivedMessage) -> Self {
        let parsed = DeliveryMessage::from_body(&message.body).ok();
        let reason = message
            .attributes
            .get("reason")
            .or_else(|| message.attributes.get("ERROR_CODE"))
            .cloned()
            .unwrap_or_else(|| "(no reason recorded)".into());
        let dead_lettered_at = message
            .attributes
            .get("dead_lettered_at")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        DeadLetter {
            vendor: parsed.as_ref().map(|p| p.vendor),
            reason,
            dead_lettered_at,
            has_raw: parsed.is_some_and(|p| p.raw.is_some()),
        }
    }
}

/// Per (vendor, reason): how many, and the oldest and newest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReasonCount {
    pub vendor: Option<Vendor>,
    pub reason: String,
    pub count: usize,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
    /// How many of them can be mapped again (a raw request is kept).
    pub remappable: usize,
}

/// How long a listing or a filtered replay holds the messages it does not take: long
/// enough to see the whole queue once, after which each is made visible again at once.
pub const HOLD: Duration = Duration::from_secs(120);

/// Receives every message once (each held invisible until the end), calling `take` on
/// each: true removes it (after `take` acted on it), false gives it back at the end.
async fn sweep<F, Fut>(
    dead_letters: &dyn Queue,
    max: Option<usize>,
    mut take: F,
) -> Result<(), QueueError>
where
    F: FnMut(ReceivedMessage) -> Fut,
    Fut: std::future::Future<Output = Result<Option<ReceivedMessage>, QueueError>>,
{
    let mut seen = std::collections::HashSet::new();
    let mut held = Vec::new();
    let mut taken = 0usize;
    let result = async {
        loop {
            if max.is_some_and(|m| taken >= m) {
                return Ok(());
            }
            let batch = dead_letters.receive(10, Duration::from_secs(1)).await?;
            if batch.is_empty() {
                return Ok(());
            }
            let mut fresh = 0;
            for message in batch {
                if !seen.insert(message.message_id.clone()) {
                    // Seen already (its hold ran out): the whole queue has been seen.
                    held.push(message);
                    continue;
                }
                fresh += 1;
                // Keep it invisible while the rest is read.
                let _ = dead_letters.change_visibility(&message.receipt, HOLD).await;
                if max.is_some_and(|m| taken >= m) {
                    held.push(message);
                    continue;
                }
                match take(message).await? {
                    None => taken += 1,
                    Some(back) => held.push(back),
                }
            }
            if fresh == 0 {
                return Ok(());
            }
        }
    }
    .await;
    for message in &held {
        if let Err(error) = dead_letters
            .change_visibility(&message.receipt, Duration::ZERO)
            .await
        {
            tracing::warn!(%error, "could not make a dead letter visible again; it reappears after its hold");
        }
    }
    result
}

/// One dead letter as a listing shows it: its SQS message id (what a single replay names),
/// what it says about itself, and the event it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub message_id: String,
    pub letter: DeadLetter,
    /// The delivery log's id of the event (its idempotency key), when the body reads.
    pub event: Option<String>,
    pub source: Option<String>,
}

/// Every dead letter (up to `max`), oldest first as the queue gives them, leaving every
/// one in the queue.
pub async fn letters(dead_letters: &dyn Queue, max: usize) -> Result<Vec<Letter>, QueueError> {
    let mut out = Vec::new();
    sweep(dead_letters, None, |message| {
        if out.len() < max {
            let parsed = DeliveryMessage::from_body(&message.body).ok();
            out.push(Letter {
                message_id: message.message_id.clone(),
                letter: DeadLetter::of(&message),
                event: parsed.as_ref().map(DeliveryMessage::event_key),
                source: parsed.map(|p| p.change.event.source),
            });
        }
        async move { Ok(Some(message)) }
    })
    .await?;
    Ok(out)
}

/// Counts the dead letters by vendor and reason, leaving every one in the queue.
pub async fn list(
    dead_letters: &dyn Queue,
    filter: &DeadLetterFilter,
) -> Result<Vec<ReasonCount>, QueueError> {
    let mut counts: BTreeMap<(Option<Vendor>, String), ReasonCount> = BTreeMap::new();
    sweep(dead_letters, None, |message| {
        let letter = DeadLetter::of(&message);
        if filter.passes(&message, &letter) {
            let entry = counts
                .entry((letter.vendor, letter.reason.clone()))
                .or_insert_with(|| ReasonCount {
                    vendor: letter.vendor,
                    reason: letter.reason.clone(),
                    count: 0,
                    oldest: None,
                    newest: None,
                    remappable: 0,
                });
            entry.count += 1;
            entry.remappable += usize::from(letter.has_raw);
            if let Some(at) = letter.dead_lettered_at {
                entry.oldest = Some(entry.oldest.map_or(at, |o| o.min(at)));
                entry.newest = Some(entry.newest.map_or(at, |n| n.max(at)));
            }
        }
        async move { Ok(Some(message)) }
    })
    .await?;
    Ok(counts.into_values().collect())
}

/// What re-mapping needs: the current mappings, the log holding the raw requests, and the
/// key they are sealed with.
pub struct Remap<'a> {
    pub mappings: &'a Mappings,
    pub journal: &'a dyn Journal,
    pub key: &'a RawKey,
}

/// What to do with each dead letter taken.
pub enum Mode<'a> {
    /// Send the message back as it is (today's redrive).
    Redrive,
    /// Map its kept raw request again with the current mappings and send the new message;
    /// a letter without a kept request (or whose event no longer maps) is left.
    Remap(Remap<'a>),
}

/// Why a dead letter was left in the queue by a re-mapping replay.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Left {
    /// Not a delivery message.
    Unreadable,
    /// Ingest kept no raw request for it (no key configured then, or it failed).
    NoRawKept,
    /// The raw request expired from the table.
    RawExpired,
    /// The raw request does not open with this key.
    WrongKey,
    /// The source is no longer in the mappings.
    SourceGone(String),
    /// The event now maps to nothing (ignored or refused) — the code says why.
    NoLongerMaps(String),
    /// The table could not be read.
    Store(String),
}

impl std::fmt::Display for Left {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Left::Unreadable => f.write_str("not a delivery message"),
            Left::NoRawKept => f.write_str("no raw event kept (redrive it as it is instead)"),
            Left::RawExpired => f.write_str("its raw event expired"),
            Left::WrongKey => f.write_str("its raw event does not open with this key"),
            Left::SourceGone(s) => write!(f, "source `{s}` is not in the mappings"),
            Left::NoLongerMaps(code) => write!(f, "the event no longer maps: {code}"),
            Left::Store(e) => write!(f, "table unavailable: {e}"),
        }
    }
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Sent to the delivery queue (re-mapped or as they were) and removed.
    pub moved: usize,
    /// How many of the moved were re-mapped.
    pub remapped: usize,
    /// Per dead-letter reason, how many were moved.
    pub reasons: BTreeMap<String, usize>,
    /// Left in the queue by a re-mapping replay, per why.
    pub left: BTreeMap<String, usize>,
    /// Passed over by the filter.
    pub filtered_out: usize,
    pub dry_run: bool,
}

/// Replays the dead letters that pass `filter` (up to `max`): re-mapped or as they are,
/// sent first and removed after (a crash leaves a duplicate, which the worker recognises).
/// A dry run sends and removes nothing and answers what it would do.
pub async fn replay(
    dead_letters: &dyn Queue,
    queue: &dyn Queue,
    mode: &Mode<'_>,
    filter: &DeadLetterFilter,
    max: Option<usize>,
    dry_run: bool,
) -> Result<Replayed, QueueError> {
    let report = std::sync::Mutex::new(Replayed {
        dry_run,
        ..Replayed::default()
    });
    let note = |f: &dyn Fn(&mut Replayed)| {
        if let Ok(mut r) = report.lock() {
            f(&mut r);
        }
    };
    sweep(dead_letters, max, |message| {
        let note = &note;
        async move {
            let letter = DeadLetter::of(&message);
            if !filter.passes(&message, &letter) {
                note(&|r| r.filtered_out += 1);
                return Ok(Some(message));
            }
            let body = match mode {
                Mode::Redrive => message.body.clone(),
                Mode::Remap(remap) => match remapped(remap, &message.body).await {
                    Ok(body) => body,
                    Err(why) => {
                        note(&|r| *r.left.entry(why.to_string()).or_default() += 1);
                        return Ok(Some(message));
                    }
                },
            };
            let remap = matches!(mode, Mode::Remap(_));
            note(&|r| {
                r.moved += 1;
                r.remapped += usize::from(remap);
                *r.reasons.entry(letter.reason.clone()).or_default() += 1;
            });
            if dry_run {
                return Ok(Some(message));
            }
            let mut out = OutboundMessage::new("r0", body);
            out.attributes
                .insert("replayed_reason".into(), letter.reason.clone());
            queue.send_batch(&[out]).await?;
            dead_letters.delete(&message.receipt).await?;
            Ok(None)
        }
    })
    .await?;
    Ok(report.into_inner().unwrap_or_default())
}

/// The delivery `body` describes, mapped again from its kept raw request.
async fn remapped(remap: &Remap<'_>, body: &str) -> Result<String, Left> {
    let message = DeliveryMessage::from_body(body).map_err(|_| Left::Unreadable)?;
    let id = message.raw.clone().ok_or(Left::NoRawKept)?;
    let raw = remap
        .journal
        .raw(&id)
        .await
        .map_err(|e| Left::Store(e.to_string()))?
        .ok_or(Left::RawExpired)?;
    let plain = remap
        .key
        .open(&RawRecord::aad(&id, &raw.source), &raw.sealed)
        .map_err(|_| Left::WrongKey)?;
    let source = remap
        .mappings
        .source(&raw.source)
        .ok_or_else(|| Left::SourceGone(raw.source.clone()))?;
    let payload: serde_json::Value =
        serde_json::from_slice(&plain).map_err(|_| Left::NoLongerMaps("invalid_json".into()))?;
    let defaults = EventDefaults {
        event_id: raw.fallback_event_id.clone(),
        received_at: raw.received_at,
    };
    let events = source
        .map(&payload, &defaults)
        .map_err(|e| Left::NoLongerMaps(e.code().to_owned()))?;
    let event = events
        .into_iter()
        .find(|e| e.event_id == message.change.event.event_id)
        .ok_or_else(|| Left::NoLongerMaps("event_not_found".into()))?;
    match event.outcome {
        EventOutcome::Change(mapped) => {
            let mut again = DeliveryMessage::new(message.vendor, mapped.change);
            again.raw = Some(id);
            Ok(again.to_body())
        }
        EventOutcome::Ignored { .. } => Err(Left::NoLongerMaps("ignored".into())),
        EventOutcome::Repeated { .. } => Err(Left::NoLongerMaps("repeated".into())),
        EventOutcome::Refused(e) => Err(Left::NoLongerMaps(e.code().to_owned())),
    }
}

/// Re-ingests the events of the event-sync failure queue (EventBridge's target DLQ: each
/// body is the event as EventBridge delivered it) with the current mappings, through
/// `ingest` (claims, the log, the delivery queue), removing each once accepted. An event
/// accepted before is answered as a duplicate and removed too.
pub async fn reingest_events(
    failed_events: &dyn Queue,
    ingest: &crate::ingress::Ingest,
    filter: &DeadLetterFilter,
    max: Option<usize>,
    dry_run: bool,
) -> Result<Replayed, QueueError> {
    let report = std::sync::Mutex::new(Replayed {
        dry_run,
        ..Replayed::default()
    });
    let note = |f: &dyn Fn(&mut Replayed)| {
        if let Ok(mut r) = report.lock() {
            f(&mut r);
        }
    };
    sweep(failed_events, max, |message| {
        let note = &note;
        async move {
            let letter = DeadLetter::of(&message);
            if !filter.passes(&message, &letter) {
                note(&|r| r.filtered_out += 1);
                return Ok(Some(message));
            }
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&message.body) else {
                note(&|r| *r.left.entry("not an EventBridge event".into()).or_default() += 1);
                return Ok(Some(message));
            };
            if dry_run {
                let maps = ingest
                    .mappings()
                    .source_for_detail_type(
                        event
                            .get("detail-type")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or_default(),
                    )
                    .is_some();
                note(&|r| {
                    if maps {
                        r.moved += 1;
                        r.remapped += 1;
                        *r.reasons.entry(letter.reason.clone()).or_default() += 1;
                    } else {
                        *r.left.entry("unknown_detail_type".into()).or_default() += 1;
                    }
                });
                return Ok(Some(message));
            }
            match ingest.accept_event(&event, None).await {
                Ok(_) => {
                    note(&|r| {
                        r.moved += 1;
                        r.remapped += 1;
                        *r.reasons.entry(letter.reason.clone()).or_default() += 1;
                    });
                    failed_events.delete(&message.receipt).await?;
                    Ok(None)
                }
                Err(error) => {
                    let code = error.code().to_owned();
                    note(&|r| *r.left.entry(code.clone()).or_default() += 1);
                    Ok(Some(message))
                }
            }
        }
    })
    .await?;
    Ok(report.into_inner().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, Contact, ContactChange, ContactKey, SyncEvent};
    use crate::queue::memory::MemoryQueue;

    fn letter(vendor: Vendor, event: &str, reason: &str, at: &str) -> OutboundMessage {
        let change = ContactChange {
            event: SyncEvent {
                source: "standard".into(),
                event_id: event.into(),
                occurred_at: DateTime::UNIX_EPOCH,
                kind: ChangeKind::Updated,
            },
            contact: Contact::new(ContactKey::external("standard", "u1").unwrap()),
            versions: Default::default(),
        };
        let mut m = OutboundMessage::new(event, DeliveryMessage::new(vendor, change).to_body());
        m.attributes.insert("reason".into(), reason.into());
        m.attributes.insert("dead_lettered_at".into(), at.into());
        m
    }

    async fn queue_of_three() -> MemoryQueue {
        let q = MemoryQueue::new(Duration::from_secs(30));
        q.send_batch(&[
            letter(
                Vendor::Hood,
                "a",
                "hood: HTTP 400 (permanent)",
                "2026-12-01T10:00:00Z",
            ),
            letter(
                Vendor::Hood,
                "b",
                "hood: HTTP 400 (permanent)",
                "2026-12-02T10:00:00Z",
            ),
            letter(
                Vendor::Channelio,
                "c",
                "gave up after 9 failures",
                "2026-12-02T11:00:00Z",
            ),
        ])
        .await
        .unwrap();
        q
    }

    #[tokio::test]
    async fn listing_counts_by_vendor_and_reason_and_takes_nothing() {
        let q = queue_of_three().await;
        let counts = list(&q, &DeadLetterFilter::default()).await.unwrap();
        let got: Vec<_> = counts
            .iter()
            .map(|c| (c.vendor, c.reason.as_str(), c.count, c.remappable))
            .collect();
        assert_eq!(
            got,
            [
                (Some(Vendor::Hood), "hood: HTTP 400 (permanent)", 2, 0),
                (Some(Vendor::Channelio), "gave up after 9 failures", 1, 0),
            ]
        );
        assert_eq!(
            counts[0].oldest.unwrap().to_rfc3339(),
            "2026-12-01T10:00:00+00:00"
        );
        assert_eq!(
            counts[0].newest.unwrap().to_rfc3339(),
            "2026-12-02T10:00:00+00:00"
        );
        // All three are visible again at once.
        assert_eq!(q.receive(10, Duration::ZERO).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn filters_and_dry_runs_leave_the_rest_where_it_was() {
        let q = queue_of_three().await;
        let to = MemoryQueue::new(Duration::from_secs(30));
        let since = DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hood_since = DeadLetterFilter {
            vendor: Some(Vendor::Hood),
            reason: Some("HTTP 400".into()),
            since: Some(since),
            message_id: None,
        };
        let dry = replay(&q, &to, &Mode::Redrive, &hood_since, None, true)
            .await
            .unwrap();
        assert_eq!((dry.moved, dry.filtered_out, dry.dry_run), (1, 2, true));
        assert!(to.is_empty());
        assert_eq!(q.len(), 3);

        let done = replay(&q, &to, &Mode::Redrive, &hood_since, None, false)
            .await
            .unwrap();
        assert_eq!((done.moved, done.filtered_out), (1, 2));
        let moved = to.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(moved.len(), 1);
        assert_eq!(
            DeliveryMessage::from_body(&moved[0].body)
                .unwrap()
                .change
                .event
                .event_id,
            "b"
        );
        assert_eq!(
            moved[0].attributes["replayed_reason"],
            "hood: HTTP 400 (permanent)"
        );
        let left = q.receive(10, Duration::ZERO).await.unwrap();
        let mut ids: Vec<String> = left
            .iter()
            .map(|m| {
                DeliveryMessage::from_body(&m.body)
                    .unwrap()
                    .change
                    .event
                    .event_id
            })
            .collect();
        ids.sort();
        assert_eq!(ids, ["a", "c"]);
    }
}
