//! Coalescing the deliveries of one batch: messages for the same person at the same vendor
//! that the queue hands over together are delivered as one change
//! ([`crate::plan::coalesce`]), so the vendor gets one call (or one lookup and create)
//! for all of them, instead of one after another behind the record's lease.
//!
//! How long changes may wait to be coalesced is bounded by the queue: in Lambda the event
//! source mapping's batching window (`WorkerBatchingWindowSeconds` in `template.yaml`),
//! locally the worker's receive wait. Nothing is held back beyond it.
//!
//! The coalesced change keeps each field at the version of the change it came from, so it
//! ends at the vendor exactly as its members delivered one by one would (tested as a
//! property in `shared/tests/plan_newest_wins.rs`). Each message keeps its own attempt
//! state: the outcome of the one attempt is disposed for every member on its own — done,
//! handed on with its own failures and waits, or dead-lettered — and each is logged and
//! recorded in the delivery log as its own delivery, the attempt's vendor calls on the
//! first.
//!
//! The group's lease is taken with an id of the whole group, and every member's own id is
//! remembered on commit. A member whose id the link already remembers (applied alone
//! before, or in another group: a redelivery) is settled as the duplicate it is, and the
//! others are delivered again without it — never counted or sent twice.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{
    Deliveries, Learned, NOT_BEFORE_TOLERANCE, Next, Outcome, Settled, Share, Worker, link_key,
};
use crate::delivery::{DeliveryMessage, MESSAGE_VERSION, RetryState};
use crate::model::ChangeKind;
use crate::queue::ReceivedMessage;
use crate::store::DeliveryId;

/// The messages of a batch in the order to handle them: groups of parsed messages for one
/// person at one vendor that can be coalesced, and the rest alone (unreadable, deletions,
/// waits not over, vendors without settings or mappings: their own paths decide them).
pub(super) enum Unit<'a> {
    Alone(&'a ReceivedMessage),
    Together(Vec<(&'a ReceivedMessage, DeliveryMessage)>),
}

impl Worker {
    /// Splits a batch into [`Unit`]s, keeping the batch's order (of each group's first).
    pub(super) fn units<'a>(&self, messages: &'a [ReceivedMessage]) -> Vec<Unit<'a>> {
        if !self.coalesce {
            return messages.iter().map(Unit::Alone).collect();
        }
        let now = self.clock.now();
        let mut units: Vec<Unit<'a>> = Vec::with_capacity(messages.len());
        let mut open: BTreeMap<(crate::vendors::Vendor, String), usize> = BTreeMap::new();
        for message in messages {
            let Some(parsed) = DeliveryMessage::from_body(&message.body)
                .ok()
                .filter(|p| self.can_coalesce(p, now))
            else {
                units.push(Unit::Alone(message));
                continue;
            };
            let key = (
                parsed.vendor,
                link_key(parsed.vendor, &parsed.change.contact)
                    .as_str()
                    .to_string(),
            );
            match open.get(&key).and_then(|&i| units.get_mut(i)) {
                // A second copy of a change in the group (a redelivery) is not part of it:
                // alone, it is recognised as the duplicate it is once the group is applied.
                Some(Unit::Together(members))
                    if members
                        .iter()
                        .any(|(_, m)| m.event_key() == parsed.event_key()) =>
                {
                    units.push(Unit::Alone(message));
                }
                Some(Unit::Together(members)) => members.push((message, parsed)),
                _ => {
                    open.insert(key, units.len());
                    units.push(Unit::Together(vec![(message, parsed)]));
                }
            }
        }
        units
    }

    fn can_coalesce(&self, parsed: &DeliveryMessage, now: DateTime<Utc>) -> bool {
        parsed.change.event.kind != ChangeKind::Deleted
            && parsed.change.contact.person.is_some()
            && parsed
                .retry
                .retry_not_before
                .is_none_or(|at| at - NOT_BEFORE_TOLERANCE <= now)
            && self.targets.has(parsed.vendor)
            && self.mappings.vendors.has(parsed.vendor)
    }

    /// Delivers `members` (messages for one person at one vendor, parsed once) as one
    /// change, then settles each message; a single member is delivered as it is. Members the link shows applied before are settled
    /// as duplicates and the rest delivered again without them (alone when one is left).
    pub(super) async fn handle_together<'a>(
        &self,
        mut members: Vec<(&'a ReceivedMessage, DeliveryMessage)>,
        deadline: DateTime<Utc>,
        delete_done: bool,
    ) -> Vec<(&'a ReceivedMessage, Settled)> {
        let started = Instant::now();
        let mut settled = Vec::with_capacity(members.len());
        loop {
            let (mut together, ids) = match members.as_slice() {
                [] => return settled,
                [(_, only)] => {
                    let ids = Deliveries::one(only);
                    (only.clone(), ids)
                }
                _ => match together(&members) {
                    Some(group) => group,
                    None => return settled,
                },
            };
            let mut learned = Learned::default();
            let next = self
                .attempt(&mut together, &ids, deadline, &mut learned)
                .await;
            let Learned {
                vendor_id,
                mut commit,
            } = learned;
            let (now, later): (Vec<_>, Vec<_>) = match &next {
                Next::PartlyApplied(applied) => members
                    .into_iter()
                    .partition(|(_, m)| applied.contains(&DeliveryId::of(&m.event_key()))),
                _ => (std::mem::take(&mut members), Vec::new()),
            };
            let outcome = match &next {
                Next::PartlyApplied(_) => Next::Done(Outcome::Duplicate),
                _ => next,
            };
            // Alone, the message carries what its attempt learned (a completed change).
            let alone = now.len() == 1 && ids.also.is_empty();
            let with = now.len();
            for (i, (message, parsed)) in now.into_iter().enumerate() {
                let parsed = if alone { together.clone() } else { parsed };
                let share = Share {
                    with,
                    counts_calls: i == 0,
                };
                let disposition = self
                    .conclude(
                        message,
                        &parsed,
                        outcome.clone(),
                        vendor_id.clone(),
                        // The group's link, committed with its first member's log record.
                        commit.take(),
                        started,
                        share,
                    )
                    .await;
                let outcome = self
                    .settle(message, disposition, Some(parsed), delete_done)
                    .await;
                settled.push((message, outcome));
            }
            if let Some((lease, link)) = commit.take() {
                self.commit_applied(together.vendor, &lease, &link).await;
            }
            members = later;
        }
    }
}

/// The one message the members are delivered as, and the delivery ids it stands for: its
/// lease is taken with an id of the group (so a redelivery of exactly this group is
/// recognised), and every member's own id is remembered with it.
fn together(
    members: &[(&ReceivedMessage, DeliveryMessage)],
) -> Option<(DeliveryMessage, Deliveries)> {
    let ((_, lead), rest) = members.split_first()?;
    let mut keys: Vec<String> = members.iter().map(|(_, m)| m.event_key()).collect();
    keys.sort_unstable();
    keys.dedup();
    let ids = Deliveries {
        lease: DeliveryId::of(&format!("coalesced\n{}", keys.join("\n"))),
        also: keys.iter().map(|k| DeliveryId::of(k)).collect(),
    };
    let change = crate::plan::coalesce(
        lead.change.clone(),
        rest.iter().map(|(_, m)| m.change.clone()),
    );
    let mut merged: Vec<_> = members
        .iter()
        .flat_map(|(_, m)| m.merged.iter().cloned())
        .collect();
    merged.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    merged.dedup();
    let message = DeliveryMessage {
        v: MESSAGE_VERSION,
        vendor: lead.vendor,
        change,
        raw: None,
        merged,
        enriched: members.iter().all(|(_, m)| m.enriched),
        // How long the group has waited for an identifier: as long as its longest waiting
        // member (the bound of that wait).
        retry: RetryState {
            waiting_since: members
                .iter()
                .filter_map(|(_, m)| m.retry.waiting_since)
                .min(),
            ..RetryState::default()
        },
    };
    Some((message, ids))
}
