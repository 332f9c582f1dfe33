//! In-memory adapter: one process's worth of the table, for `relay serve` and tests.
//! Same rules as the DynamoDB adapter (the shared `ClaimRecord::blocks`, link leases
//! and `GcraParams::decide`), including expiry, payload mismatch and fencing.
//! Clones share state, like instances sharing one table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Mutex;

use super::clock::from_epoch_ms;
use super::idempotency::{DEFAULT_RETENTION, check_result, expiry};
use super::journal::{
    DEFAULT_JOURNAL_TTL, DeliveryEntry, EventEntry, EventFilter, EventJourney, Journal, MAX_LIST,
    RawId, RawRecord,
};
use super::limiter::{Booked, Booking, Decision, wait_ms};
use super::{
    Claim, ClaimOutcome, ClaimRecord, ClaimState, Clock, DeliveryId, GcraParams, IdempotencyKey,
    IdempotencyStore, LeaseOutcome, LimiterKey, Link, LinkKey, LinkLease, LinkStore, PayloadHash,
    RateLimiter, StoreError,
};
use crate::model::Vendor;

#[derive(Debug, Default)]
struct Table {
    claims: HashMap<String, ClaimRecord>,
    /// The delivery log, by claim key (the DynamoDB adapter keeps it in the claim's item).
    journal: HashMap<String, EventJourney>,
    raws: HashMap<String, RawRecord>,
    links: HashMap<String, StoredLink>,
    tats: HashMap<String, i64>,
}

/// A link and the lease on it, if any.
#[derive(Debug, Default)]
struct StoredLink {
    link: Link,
    lease: Option<(uuid::Uuid, DateTime<Utc>)>,
}

/// The in-memory store.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    table: Arc<Mutex<Table>>,
    clock: Arc<dyn Clock>,
    retention: TimeDelta,
    journal_ttl: TimeDelta,
}

impl MemoryStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            table: Arc::default(),
            clock,
            retention: DEFAULT_RETENTION,
            journal_ttl: DEFAULT_JOURNAL_TTL,
        }
    }

    /// Keeps the delivery log and raw events for `ttl` instead of 14 days.
    pub fn with_journal_ttl(self, journal_ttl: TimeDelta) -> Self {
        Self {
            journal_ttl,
            ..self
        }
    }

    /// Keeps finished records for `retention` instead of 7 days.
    pub fn with_retention(self, retention: TimeDelta) -> Self {
        Self { retention, ..self }
    }

    /// The limiter for `key`, sharing its schedule with every other limiter for `key`
    /// made from this store or its clones.
    pub fn limiter(&self, key: &LimiterKey, params: GcraParams) -> MemoryRateLimiter {
        MemoryRateLimiter {
            table: Arc::clone(&self.table),
            clock: Arc::clone(&self.clock),
            pk: key.as_str().to_owned(),
            params,
        }
    }

    /// Moves a claim to a terminal state if `claim` still holds it.
    async fn finish(&self, claim: &Claim, state: ClaimState) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut table = self.table.lock().await;
        let table = &mut *table;
        let pk = claim.key().as_str();
        match table.claims.get_mut(pk) {
            Some(record) if record.held_by(claim) => {
                let released = state == ClaimState::Released;
                record.state = state;
                // A logged event keeps the log's expiry; a released one leaves the log.
                record.expires_at = match table.journal.get(pk) {
                    Some(journey) => journey.expires_at,
                    None => expiry(now, self.retention),
                };
                if released {
                    table.journal.remove(pk);
                }
                Ok(())
            }
            _ => Err(StoreError::ClaimLost {
                key: claim.key().to_string(),
            }),
        }
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = self.clock.now();
        let mut table = self.table.lock().await;
        if let Some(outcome) = table
            .claims
            .get(key.as_str())
            .and_then(|r| r.blocks(payload_hash, now))
        {
            return Ok(outcome);
        }
        let claim = Claim::new(key.clone(), lease_until);
        table.claims.insert(
            key.as_str().to_owned(),
            ClaimRecord::claimed(&claim, *payload_hash, now, self.retention),
        );
        Ok(ClaimOutcome::Claimed(claim))
    }

    async fn complete(&self, claim: &Claim, result: &str) -> Result<(), StoreError> {
        check_result(result)?;
        self.finish(
            claim,
            ClaimState::Completed {
                result: result.to_owned(),
            },
        )
        .await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.finish(claim, ClaimState::Released).await
    }
}

#[async_trait]
impl Journal for MemoryStore {
    async fn claim_recorded(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
        entry: &EventEntry,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = self.clock.now();
        let mut table = self.table.lock().await;
        if let Some(outcome) = table
            .claims
            .get(key.as_str())
            .and_then(|r| r.blocks(payload_hash, now))
        {
            return Ok(outcome);
        }
        let claim = Claim::new(key.clone(), lease_until);
        let record = ClaimRecord::claimed(
            &claim,
            *payload_hash,
            now,
            self.retention.max(self.journal_ttl),
        );
        table.journal.insert(
            key.as_str().to_owned(),
            EventJourney {
                event: entry.clone(),
                deliveries: BTreeMap::new(),
                expires_at: record.expires_at,
            },
        );
        table.claims.insert(key.as_str().to_owned(), record);
        Ok(ClaimOutcome::Claimed(claim))
    }

    async fn record_delivery(
        &self,
        key: &IdempotencyKey,
        vendor: Vendor,
        entry: &DeliveryEntry,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut table = self.table.lock().await;
        let Some(journey) = table
            .journal
            .get_mut(key.as_str())
            .filter(|j| j.expires_at.timestamp() > now.timestamp())
        else {
            return Ok(false);
        };
        let newer = journey
            .deliveries
            .get(&vendor)
            .is_none_or(|old| old.at <= entry.at);
        if newer {
            journey.deliveries.insert(vendor, entry.clone());
        }
        Ok(true)
    }

    async fn event(&self, key: &IdempotencyKey) -> Result<Option<EventJourney>, StoreError> {
        let now = self.clock.now();
        let table = self.table.lock().await;
        Ok(table
            .journal
            .get(key.as_str())
            .filter(|j| j.expires_at.timestamp() > now.timestamp())
            .cloned())
    }

    async fn recent(&self, filter: &EventFilter) -> Result<Vec<EventJourney>, StoreError> {
        let now = self.clock.now();
        let table = self.table.lock().await;
        let mut found: Vec<EventJourney> = table
            .journal
            .values()
            .filter(|j| j.expires_at.timestamp() > now.timestamp())
            .filter(|j| j.event.received_at >= filter.since && j.matches(filter))
            .cloned()
            .collect();
        found.sort_by(|a, b| {
            (b.event.received_at, &b.event.source, &b.event.event_id).cmp(&(
                a.event.received_at,
                &a.event.source,
                &a.event.event_id,
            ))
        });
        found.truncate(filter.limit.min(MAX_LIST));
        Ok(found)
    }

    async fn put_raw(&self, raw: &RawRecord) -> Result<(), StoreError> {
        let mut table = self.table.lock().await;
        table.raws.insert(raw.id.pk(), raw.clone());
        Ok(())
    }

    async fn raw(&self, id: &RawId) -> Result<Option<RawRecord>, StoreError> {
        let now = self.clock.now();
        let table = self.table.lock().await;
        Ok(table
            .raws
            .get(&id.pk())
            .filter(|r| r.expires_at.timestamp() > now.timestamp())
            .cloned())
    }
}

#[async_trait]
impl LinkStore for MemoryStore {
    async fn lease(
        &self,
        key: &LinkKey,
        delivery: &DeliveryId,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        let now = self.clock.now();
        let mut table = self.table.lock().await;
        let stored = table.links.entry(key.as_str().to_owned()).or_default();
        if stored.link.recent.contains(delivery) {
            return Ok(LeaseOutcome::AlreadyApplied);
        }
        if let Some((_, held_until)) = stored.lease
            && held_until > now
        {
            return Ok(LeaseOutcome::Busy { until: held_until });
        }
        let lease = LinkLease::new(key.clone(), until);
        stored.lease = Some((lease.token(), until));
        Ok(LeaseOutcome::Leased {
            lease,
            link: stored.link.clone(),
        })
    }

    async fn commit(&self, lease: &LinkLease, link: &Link) -> Result<(), StoreError> {
        let mut table = self.table.lock().await;
        let stored = held(&mut table, lease)?;
        stored.link = link.clone();
        stored.lease = None;
        Ok(())
    }

    async fn abandon(&self, lease: &LinkLease) -> Result<(), StoreError> {
        let mut table = self.table.lock().await;
        held(&mut table, lease)?.lease = None;
        Ok(())
    }
}

/// The stored link if `lease` is still its holder (the fencing check).
fn held<'a>(table: &'a mut Table, lease: &LinkLease) -> Result<&'a mut StoredLink, StoreError> {
    let lost = || StoreError::ClaimLost {
        key: lease.key().as_str().to_owned(),
    };
    let stored = table.links.get_mut(lease.key().as_str()).ok_or_else(lost)?;
    match stored.lease {
        Some((token, _)) if token == lease.token() => Ok(stored),
        _ => Err(lost()),
    }
}

/// One vendor account's limiter over the in-memory table.
#[derive(Debug, Clone)]
pub struct MemoryRateLimiter {
    table: Arc<Mutex<Table>>,
    clock: Arc<dyn Clock>,
    pk: String,
    params: GcraParams,
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn reserve_n(&self, n: u32, max_wait: Duration) -> Result<Booking, StoreError> {
        let now = self.clock.now().timestamp_millis();
        let max_wait_ms = wait_ms(max_wait);
        let mut table = self.table.lock().await;
        match self
            .params
            .book(table.tats.get(&self.pk).copied(), now, n, max_wait_ms)
        {
            Booked::Slots {
                start,
                count,
                new_tat,
            } => {
                table.tats.insert(self.pk.clone(), new_tat);
                Ok(Booking::Slots(self.params.slots(start, count, now)))
            }
            Booked::Deny { retry_at: at } => Ok(Booking::TooFar(from_epoch_ms(at))),
        }
    }

    async fn next_free(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = self.clock.now().timestamp_millis();
        let table = self.table.lock().await;
        Ok(
            match self.params.decide(table.tats.get(&self.pk).copied(), now) {
                Decision::Grant { .. } => None,
                Decision::Deny { retry_at: at } => Some(from_epoch_ms(at)),
            },
        )
    }

    async fn penalise(&self, retry_after: Duration) -> Result<(), StoreError> {
        let now = self.clock.now().timestamp_millis();
        let mut table = self.table.lock().await;
        let tat = self
            .params
            .penalised(table.tats.get(&self.pk).copied(), now, retry_after);
        table.tats.insert(self.pk.clone(), tat);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Vendor;
    use crate::store::clock::from_epoch_ms;
    use crate::store::{ManualClock, Permit};

    fn setup() -> (Arc<ManualClock>, MemoryStore) {
        let clock = Arc::new(ManualClock::new(from_epoch_ms(1_800_000_000_000)));
        (clock.clone(), MemoryStore::new(clock))
    }

    #[tokio::test]
    async fn state_machine_walk() {
        let (clock, store) = setup();
        let key = IdempotencyKey::inbound("typeform", "ev-1").unwrap();
        let hash = PayloadHash::of(b"body");
        let lease = clock.now() + TimeDelta::seconds(30);

        let ClaimOutcome::Claimed(first) = store.claim(&key, &hash, lease).await.unwrap() else {
            panic!("fresh key")
        };
        assert_eq!(
            store.claim(&key, &hash, lease).await.unwrap(),
            ClaimOutcome::InProgress { until: lease }
        );
        assert_eq!(
            store
                .claim(&key, &PayloadHash::of(b"other"), lease)
                .await
                .unwrap(),
            ClaimOutcome::PayloadMismatch
        );

        store.release(&first).await.unwrap();
        let ClaimOutcome::Claimed(second) = store.claim(&key, &hash, lease).await.unwrap() else {
            panic!("released")
        };
        assert_ne!(first.token(), second.token());
        assert!(matches!(
            store.complete(&first, "late").await,
            Err(StoreError::ClaimLost { .. })
        ));

        store.complete(&second, "profile-42").await.unwrap();
        let done = ClaimOutcome::Completed {
            result: "profile-42".into(),
        };
        assert_eq!(store.claim(&key, &hash, lease).await.unwrap(), done);
        assert!(matches!(
            store.release(&second).await,
            Err(StoreError::ClaimLost { .. })
        ));

        // Seven days on, the record has expired and the key is new again.
        clock.advance(DEFAULT_RETENTION);
        assert!(matches!(
            store
                .claim(&key, &PayloadHash::of(b"x"), lease)
                .await
                .unwrap(),
            ClaimOutcome::Claimed(_)
        ));
    }

    #[tokio::test]
    async fn an_unconfirmed_claim_is_not_taken_over_after_its_lease() {
        let (clock, store) = setup();
        let key = IdempotencyKey::inbound("tally", "ev-2").unwrap();
        let hash = PayloadHash::of(b"p");
        let lease = clock.now() + TimeDelta::seconds(10);
        let ClaimOutcome::Claimed(first) = store.claim(&key, &hash, lease).await.unwrap() else {
            panic!()
        };
        clock.advance(TimeDelta::seconds(60));
        // The claimant may have done the work: the key stays its own.
        assert_eq!(
            store
                .claim(&key, &hash, lease + TimeDelta::seconds(60))
                .await
                .unwrap(),
            ClaimOutcome::InProgress { until: lease }
        );
        store.complete(&first, "done").await.unwrap();
        assert_eq!(
            store.claim(&key, &hash, lease).await.unwrap(),
            ClaimOutcome::Completed {
                result: "done".into()
            }
        );
    }

    #[tokio::test]
    async fn limiter_shares_schedule_between_clones() {
        let (clock, store) = setup();
        let key = LimiterKey::new(Vendor::Hood, "main").unwrap();
        let five_then_430 = GcraParams::new(Duration::from_millis(430), 5);
        let a = store.limiter(&key, five_then_430);
        let b = store.clone().limiter(&key, five_then_430);
        for _ in 0..5 {
            assert_eq!(a.acquire().await.unwrap(), Permit::Granted);
        }
        let next = clock.now() + TimeDelta::milliseconds(430);
        assert_eq!(b.acquire().await.unwrap(), Permit::RetryAt(next));
        b.penalise(Duration::from_secs(3)).await.unwrap();
        assert_eq!(
            a.acquire().await.unwrap(),
            Permit::RetryAt(clock.now() + TimeDelta::seconds(3))
        );
    }
}
