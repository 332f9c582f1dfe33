//! In-memory adapter: one process's worth of the table, for `relay serve` and tests.
//! Same rules as the DynamoDB adapter (the shared `ClaimRecord::blocks`, link leases
//! and `GcraParams::decide`), including expiry, payload mismatch and fencing.
//! Clones share state, like instances sharing one table. Identity writes check every
//! condition before changing anything, under the table's lock, so each is all-or-nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Mutex;

use super::clock::from_epoch_ms;
use super::idempotency::{DEFAULT_RETENTION, check_result, expiry};
use super::identity::{IdentifierHash, IdentityStore, PersonRecord, Written};
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
use crate::model::{PersonId, Vendor};

#[derive(Debug, Default)]
struct Table {
    claims: HashMap<String, ClaimRecord>,
    /// The delivery log, by claim key (the DynamoDB adapter keeps it in the claim's item).
    journal: HashMap<String, EventJourney>,
    raws: HashMap<String, RawRecord>,
    links: HashMap<String, StoredLink>,
    tats: HashMap<String, i64>,
    /// `idn#…` items: which person each identifier hash points at.
    identifiers: HashMap<IdentifierHash, PersonId>,
    /// `per#…` items.
    persons: HashMap<PersonId, PersonRecord>,
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

#[async_trait]
impl IdentityStore for MemoryStore {
    async fn find(
        &self,
        ids: &[IdentifierHash],
    ) -> Result<BTreeMap<IdentifierHash, PersonId>, StoreError> {
        let table = self.table.lock().await;
        Ok(ids
            .iter()
            .filter_map(|id| {
                let person = table.identifiers.get(id)?;
                Some((id.clone(), person.clone()))
            })
            .collect())
    }

    async fn person(&self, person: &PersonId) -> Result<Option<PersonRecord>, StoreError> {
        let table = self.table.lock().await;
        Ok(table.persons.get(person).cloned())
    }

    async fn attach(
        &self,
        person: &PersonId,
        ids: &[IdentifierHash],
        create: bool,
    ) -> Result<Written, StoreError> {
        let ids: BTreeSet<&IdentifierHash> = ids.iter().collect();
        let mut table = self.table.lock().await;
        let table = &mut *table;
        let person_ok = match table.persons.get(person) {
            None => create,
            Some(record) => !create && record.merged_into.is_none(),
        };
        if !person_ok || ids.iter().any(|id| table.identifiers.contains_key(*id)) {
            return Ok(Written::Conflict);
        }
        let record = table.persons.entry(person.clone()).or_default();
        record.version += 1;
        for id in ids {
            record.ids.insert(id.clone());
            table.identifiers.insert(id.clone(), person.clone());
        }
        Ok(Written::Done)
    }

    async fn merge(
        &self,
        loser: &PersonId,
        loser_record: &PersonRecord,
        survivor: &PersonId,
    ) -> Result<Written, StoreError> {
        if loser == survivor {
            return Err(StoreError::InvalidKey(
                "a person cannot be merged into itself",
            ));
        }
        let mut table = self.table.lock().await;
        let table = &mut *table;
        let loser_ok = table
            .persons
            .get(loser)
            .is_some_and(|r| r.version == loser_record.version && r.merged_into.is_none());
        let survivor_ok = table
            .persons
            .get(survivor)
            .is_some_and(|r| r.merged_into.is_none());
        let ids_ok = loser_record
            .ids
            .iter()
            .all(|id| table.identifiers.get(id) == Some(loser));
        if !(loser_ok && survivor_ok && ids_ok) {
            return Ok(Written::Conflict);
        }
        for id in &loser_record.ids {
            table.identifiers.insert(id.clone(), survivor.clone());
        }
        if let Some(record) = table.persons.get_mut(survivor) {
            record.ids.extend(loser_record.ids.iter().cloned());
            record.version += 1;
        }
        if let Some(record) = table.persons.get_mut(loser) {
            record.merged_into = Some(survivor.clone());
        }
        Ok(Written::Done)
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

    #[tokio::test]
    async fn identity_writes_are_all_or_nothing_and_resolve_merges_into_the_older() {
        use crate::store::identity::{IdentityKey, resolve};
        let (_, store) = setup();
        let key = IdentityKey::from_bytes(&[0x5a; 32]).unwrap();
        let email = "email:ann.o'neil+news@example.co.uk".to_string();
        let phone = "phone:+4915123456789".to_string();
        let crm = "hubspot:901".to_string();
        let (e, p, c) = (key.hash(&email), key.hash(&phone), key.hash(&crm));

        let first = resolve(&store, &key, std::slice::from_ref(&email))
            .await
            .unwrap();
        assert!(first.created);
        assert_eq!(first.calls, 2);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let second = resolve(&store, &key, &[phone.clone(), crm.clone()])
            .await
            .unwrap();
        assert!(second.created && second.person > first.person);

        // An attach that names a taken id writes nothing, not even its free ids.
        let stranger = crate::store::identity::new_person_id();
        let free = key.hash("standard:ct_7f3a");
        assert_eq!(
            store
                .attach(&stranger, &[free.clone(), e.clone()], true)
                .await
                .unwrap(),
            Written::Conflict
        );
        assert!(
            store
                .find(std::slice::from_ref(&free))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.person(&stranger).await.unwrap(), None);

        // A merge fenced by a stale version writes nothing.
        let mut stale = store.person(&second.person).await.unwrap().unwrap();
        stale.version -= 1;
        assert_eq!(
            store
                .merge(&second.person, &stale, &first.person)
                .await
                .unwrap(),
            Written::Conflict
        );
        assert_eq!(
            store.find(std::slice::from_ref(&p)).await.unwrap()[&p],
            second.person
        );

        let both = resolve(&store, &key, &[email, phone]).await.unwrap();
        assert_eq!(both.person, first.person);
        assert_eq!(both.merged, vec![second.person.clone()]);
        assert_eq!(both.calls, 3);
        let found = store
            .find(&[e.clone(), p.clone(), c.clone()])
            .await
            .unwrap();
        assert!(
            found.values().all(|person| *person == first.person),
            "{found:?}"
        );
        let survivor = store.person(&first.person).await.unwrap().unwrap();
        assert_eq!(survivor.ids, [e, p, c].into_iter().collect());
        assert_eq!((survivor.version, survivor.merged_into), (2, None));
        let loser = store.person(&second.person).await.unwrap().unwrap();
        assert_eq!(loser.merged_into, Some(first.person.clone()));
        // A merged person takes no more identifiers.
        assert_eq!(
            store.attach(&second.person, &[free], false).await.unwrap(),
            Written::Conflict
        );
    }
}
