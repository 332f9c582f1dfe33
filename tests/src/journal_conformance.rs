//! One behaviour suite for every delivery-log ([`Journal`]) adapter, like
//! [`store_conformance`](crate::store_conformance): each check is an async function over a
//! [`Fixture`], and [`journal_conformance_tests!`](crate::journal_conformance_tests) turns
//! the list into `#[tokio::test]`s (`tests/journal_memory.rs`, `tests/journal_dynamodb.rs`).
//! Another backend (the local relay's on-disk store) builds a `Fixture` over itself and
//! invokes the macro. Time is a [`ManualClock`]; where the fixture records backend calls
//! (DynamoDB), the checks assert the exact calls, which is the log's cost.

#![allow(
    clippy::unwrap_used,
    reason = "a test suite: a panic is how a check reports failure"
)]

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{
    ClaimOutcome, Clock, DEFAULT_JOURNAL_TTL, DeliveryEntry, DeliveryId, DeliveryStatus,
    EventEntry, EventFilter, IdempotencyKey, IdempotencyStore, Journal, LeaseOutcome, Link,
    LinkKey, LinkStore, LogRecord, ManualClock, PayloadHash, RawId, RawRecord, StoreError,
    mask_contact,
};
use relay_shared::vendors::Vendor;

use crate::dynamodb_local::{CallLog, fresh_table};

/// An adapter under test: its journal and its claims (the same store).
pub struct Fixture {
    pub journal: Arc<dyn Journal>,
    pub claims: Arc<dyn IdempotencyStore>,
    /// Its links (the same store): a commit may carry the attempt's record.
    pub links: Arc<dyn LinkStore>,
    pub clock: Arc<ManualClock>,
    /// Backend calls, when the adapter has a backend.
    pub calls: Option<CallLog>,
    /// What the adapter needs kept alive (the disk adapter's data directory).
    pub keep: Option<tempfile::TempDir>,
}

impl Fixture {
    /// The in-memory adapter.
    pub async fn memory() -> Fixture {
        let clock = start_clock();
        let store = MemoryStore::new(clock.clone());
        Fixture {
            journal: Arc::new(store.clone()),
            claims: Arc::new(store.clone()),
            links: Arc::new(store),
            clock,
            calls: None,
            keep: None,
        }
    }

    /// The local relay's on-disk adapter (SQLite) in a fresh data directory.
    pub async fn disk() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let clock = start_clock();
        let db = relay_local::disk::Db::open(dir.path()).expect("the data directory opens");
        let store = relay_local::disk::DiskStore::new(db, clock.clone());
        Fixture {
            journal: Arc::new(store.clone()),
            claims: Arc::new(store.clone()),
            links: Arc::new(store),
            clock,
            calls: None,
            keep: Some(dir),
        }
    }

    /// The DynamoDB adapter on a fresh table in DynamoDB Local.
    pub async fn dynamodb() -> Fixture {
        let table = fresh_table().await.expect("DynamoDB Local table");
        let clock = start_clock();
        let store = DynamoStore::new(table.client, table.name, clock.clone());
        Fixture {
            journal: Arc::new(store.clone()),
            claims: Arc::new(store.clone()),
            links: Arc::new(store),
            clock,
            calls: Some(table.calls),
            keep: None,
        }
    }

    /// Asserts the backend calls since the last check (no-op without a backend).
    pub fn expect_calls(&self, expected: &[&str]) {
        if let Some(calls) = &self.calls {
            assert_eq!(calls.take(), expected, "backend calls");
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

fn start_clock() -> Arc<ManualClock> {
    let now = Utc::now().timestamp();
    Arc::new(ManualClock::new(
        DateTime::from_timestamp(now, 0).expect("current time is in range"),
    ))
}

/// Generates one `#[tokio::test]` per check, each with a fresh fixture from the given
/// async expression.
#[macro_export]
macro_rules! journal_conformance_tests {
    ($fixture:expr) => {
        $crate::journal_conformance_tests!(@each $fixture;
            a_claim_records_the_event_in_the_same_write,
            a_duplicate_records_nothing,
            deliveries_are_one_write_each_and_older_ones_do_not_win,
            a_released_event_leaves_the_log,
            the_log_outlives_the_claim_retention_and_then_expires,
            recent_lists_newest_first_and_filters,
            delivery_for_an_unlogged_event_writes_nothing,
            a_commit_carries_the_attempts_record,
            raw_requests_round_trip_and_expire,
        );
    };
    (@each $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture.await;
                $crate::journal_conformance::$name(&fixture).await;
            }
        )*
    };
}

fn entry(f: &Fixture, source: &str, id: &str, vendors: &[Vendor]) -> EventEntry {
    EventEntry {
        source: source.into(),
        event_id: id.into(),
        received_at: f.now(),
        occurred_at: f.now() - TimeDelta::seconds(5),
        kind: "created".into(),
        contact: mask_contact("email:ann@example.com"),
        warnings: vec!["phone: invalid_phone".into()],
        vendors: vendors.to_vec(),
        raw: Some(RawId::of(source, b"{}")),
    }
}

fn delivery(f: &Fixture, status: DeliveryStatus, attempts: u32) -> DeliveryEntry {
    DeliveryEntry {
        status,
        reason: (status != DeliveryStatus::Synced).then(|| "hood upsert: HTTP 503".into()),
        next_attempt_at: (status == DeliveryStatus::Retrying)
            .then(|| f.now() + TimeDelta::seconds(30)),
        vendor_id: (status == DeliveryStatus::Synced).then(|| "p-1".into()),
        attempts,
        calls: 2,
        latency_ms: 120,
        at: f.now(),
    }
}

async fn claim(f: &Fixture, e: &EventEntry) -> ClaimOutcome {
    let key = IdempotencyKey::inbound(&e.source, &e.event_id).unwrap();
    f.journal
        .claim_recorded(
            &key,
            &PayloadHash::of(e.event_id.as_bytes()),
            f.now() + TimeDelta::seconds(30),
            e,
        )
        .await
        .unwrap()
}

fn key(e: &EventEntry) -> IdempotencyKey {
    IdempotencyKey::inbound(&e.source, &e.event_id).unwrap()
}

async fn complete(f: &Fixture, outcome: ClaimOutcome) {
    let ClaimOutcome::Claimed(c) = outcome else {
        panic!("expected a claim, got {outcome:?}");
    };
    f.claims.complete(&c, "enqueued").await.unwrap();
}

pub async fn a_claim_records_the_event_in_the_same_write(f: &Fixture) {
    let e = entry(f, "typeform", "evt-1", &[Vendor::Hood, Vendor::Channelio]);
    let outcome = claim(f, &e).await;
    f.expect_calls(&["PutItem"]);
    complete(f, outcome).await;
    f.expect_calls(&["UpdateItem"]);
    let journey = f.journal.event(&key(&e)).await.unwrap().unwrap();
    assert_eq!(journey.event, e);
    assert!(journey.deliveries.is_empty());
    assert_eq!(journey.status(Vendor::Hood), DeliveryStatus::Pending);
    assert_eq!(
        journey.expires_at,
        DateTime::from_timestamp(
            (f.now() + TimeDelta::seconds(30) + DEFAULT_JOURNAL_TTL).timestamp(),
            0
        )
        .unwrap()
    );
}

pub async fn a_duplicate_records_nothing(f: &Fixture) {
    let e = entry(f, "typeform", "evt-1", &[Vendor::Hood]);
    complete(f, claim(f, &e).await).await;
    f.expect_calls(&["PutItem", "UpdateItem"]);
    f.clock.advance(TimeDelta::seconds(10));
    let mut again = e.clone();
    again.received_at = f.now();
    assert_eq!(
        claim(f, &again).await,
        ClaimOutcome::Completed {
            result: "enqueued".into()
        }
    );
    f.expect_calls(&["PutItem"]);
    // The first receipt is what the log shows.
    assert_eq!(
        f.journal
            .event(&key(&e))
            .await
            .unwrap()
            .unwrap()
            .event
            .received_at,
        e.received_at
    );
}

pub async fn deliveries_are_one_write_each_and_older_ones_do_not_win(f: &Fixture) {
    let e = entry(f, "tally", "evt-2", &[Vendor::Hood, Vendor::Channelio]);
    complete(f, claim(f, &e).await).await;
    let _ = f.calls.as_ref().map(CallLog::take);
    let k = key(&e);

    let retrying = delivery(f, DeliveryStatus::Retrying, 1);
    assert!(
        f.journal
            .record_delivery(&k, Vendor::Hood, &retrying)
            .await
            .unwrap()
    );
    f.expect_calls(&["UpdateItem"]);
    f.clock.advance(TimeDelta::seconds(31));
    let synced = delivery(f, DeliveryStatus::Synced, 2);
    assert!(
        f.journal
            .record_delivery(&k, Vendor::Hood, &synced)
            .await
            .unwrap()
    );
    f.expect_calls(&["UpdateItem"]);
    // A late write of the earlier attempt (a slow instance) does not overwrite it.
    assert!(
        f.journal
            .record_delivery(&k, Vendor::Hood, &retrying)
            .await
            .unwrap()
    );
    f.expect_calls(&["UpdateItem"]);
    let dead = delivery(f, DeliveryStatus::DeadLettered, 1);
    assert!(
        f.journal
            .record_delivery(&k, Vendor::Channelio, &dead)
            .await
            .unwrap()
    );

    let journey = f.journal.event(&k).await.unwrap().unwrap();
    assert_eq!(journey.deliveries[&Vendor::Hood], synced);
    assert_eq!(journey.deliveries[&Vendor::Channelio], dead);
    assert_eq!(
        journey.status(Vendor::Channelio),
        DeliveryStatus::DeadLettered
    );
}

pub async fn a_released_event_leaves_the_log(f: &Fixture) {
    let e = entry(f, "tally", "evt-3", &[Vendor::Hood]);
    let ClaimOutcome::Claimed(c) = claim(f, &e).await else {
        panic!("not claimed");
    };
    assert!(f.journal.event(&key(&e)).await.unwrap().is_some());
    f.claims.release(&c).await.unwrap();
    assert_eq!(f.journal.event(&key(&e)).await.unwrap(), None);
    let all = EventFilter {
        since: f.now() - TimeDelta::hours(1),
        source: None,
        vendor: None,
        status: None,
        limit: 10,
    };
    assert!(f.journal.recent(&all).await.unwrap().is_empty());
    let _ = f.calls.as_ref().map(CallLog::take);
    assert!(
        !f.journal
            .record_delivery(
                &key(&e),
                Vendor::Hood,
                &delivery(f, DeliveryStatus::Synced, 1)
            )
            .await
            .unwrap()
    );
    f.expect_calls(&["UpdateItem"]);
    assert_eq!(f.journal.event(&key(&e)).await.unwrap(), None);
    // Claimable again (nothing was enqueued), and logged again when claimed.
    let outcome = claim(f, &e).await;
    assert!(matches!(outcome, ClaimOutcome::Claimed(_)));
    assert!(f.journal.event(&key(&e)).await.unwrap().is_some());
}

pub async fn the_log_outlives_the_claim_retention_and_then_expires(f: &Fixture) {
    let e = entry(f, "tally", "evt-4", &[Vendor::Hood]);
    complete(f, claim(f, &e).await).await;
    // Past the claims' 7 days, the logged event is still there and still a duplicate.
    f.clock.advance(TimeDelta::days(10));
    assert!(f.journal.event(&key(&e)).await.unwrap().is_some());
    assert!(matches!(claim(f, &e).await, ClaimOutcome::Completed { .. }));
    f.clock.advance(TimeDelta::days(4) + TimeDelta::seconds(31));
    assert_eq!(f.journal.event(&key(&e)).await.unwrap(), None);
    assert!(
        !f.journal
            .record_delivery(
                &key(&e),
                Vendor::Hood,
                &delivery(f, DeliveryStatus::Synced, 1)
            )
            .await
            .unwrap()
    );
}

pub async fn recent_lists_newest_first_and_filters(f: &Fixture) {
    let a = entry(f, "typeform", "a", &[Vendor::Hood, Vendor::Channelio]);
    complete(f, claim(f, &a).await).await;
    f.clock.advance(TimeDelta::seconds(2));
    let b = entry(f, "tally", "b", &[Vendor::Hood]);
    complete(f, claim(f, &b).await).await;
    f.clock.advance(TimeDelta::seconds(2));
    let c = entry(f, "typeform", "c", &[Vendor::Channelio]);
    complete(f, claim(f, &c).await).await;
    let dead = delivery(f, DeliveryStatus::DeadLettered, 3);
    f.journal
        .record_delivery(&key(&a), Vendor::Channelio, &dead)
        .await
        .unwrap();
    f.journal
        .record_delivery(
            &key(&c),
            Vendor::Channelio,
            &delivery(f, DeliveryStatus::Synced, 1),
        )
        .await
        .unwrap();

    let filter = EventFilter {
        since: f.now() - TimeDelta::minutes(5),
        source: None,
        vendor: None,
        status: None,
        limit: 50,
    };
    let ids = |list: Vec<relay_shared::store::EventJourney>| -> Vec<String> {
        list.into_iter().map(|j| j.event.event_id).collect()
    };
    assert_eq!(
        ids(f.journal.recent(&filter).await.unwrap()),
        ["c", "b", "a"]
    );
    let limited = EventFilter {
        limit: 2,
        ..filter.clone()
    };
    assert_eq!(ids(f.journal.recent(&limited).await.unwrap()), ["c", "b"]);
    let typeform = EventFilter {
        source: Some("typeform".into()),
        ..filter.clone()
    };
    assert_eq!(ids(f.journal.recent(&typeform).await.unwrap()), ["c", "a"]);
    let hood = EventFilter {
        vendor: Some(Vendor::Hood),
        ..filter.clone()
    };
    assert_eq!(ids(f.journal.recent(&hood).await.unwrap()), ["b", "a"]);
    let dead_letters = EventFilter {
        status: Some(DeliveryStatus::DeadLettered),
        ..filter.clone()
    };
    assert_eq!(ids(f.journal.recent(&dead_letters).await.unwrap()), ["a"]);
    // Pending: a has Hood pending, b has Hood pending; c is synced.
    let pending = EventFilter {
        status: Some(DeliveryStatus::Pending),
        ..filter.clone()
    };
    assert_eq!(ids(f.journal.recent(&pending).await.unwrap()), ["b", "a"]);
    let hood_dead = EventFilter {
        vendor: Some(Vendor::Hood),
        status: Some(DeliveryStatus::DeadLettered),
        ..filter.clone()
    };
    assert!(f.journal.recent(&hood_dead).await.unwrap().is_empty());
    let since = EventFilter {
        since: f.now() - TimeDelta::seconds(3),
        ..filter
    };
    assert_eq!(ids(f.journal.recent(&since).await.unwrap()), ["c", "b"]);
}

pub async fn delivery_for_an_unlogged_event_writes_nothing(f: &Fixture) {
    // Claimed without the log (a plain claim): the worker's record is refused.
    let k = IdempotencyKey::inbound("tally", "plain").unwrap();
    let ClaimOutcome::Claimed(c) = f
        .claims
        .claim(&k, &PayloadHash::of(b"x"), f.now() + TimeDelta::seconds(30))
        .await
        .unwrap()
    else {
        panic!("not claimed");
    };
    f.claims.complete(&c, "enqueued").await.unwrap();
    assert!(
        !f.journal
            .record_delivery(&k, Vendor::Hood, &delivery(f, DeliveryStatus::Synced, 1))
            .await
            .unwrap()
    );
    assert_eq!(f.journal.event(&k).await.unwrap(), None);
    // And an event never seen at all: nothing is created.
    let never = IdempotencyKey::inbound("tally", "never").unwrap();
    assert!(
        !f.journal
            .record_delivery(
                &never,
                Vendor::Hood,
                &delivery(f, DeliveryStatus::Synced, 1)
            )
            .await
            .unwrap()
    );
    assert_eq!(f.journal.event(&never).await.unwrap(), None);
    // The plain claim still behaves as a claim.
    assert!(matches!(
        f.claims
            .claim(&k, &PayloadHash::of(b"x"), f.now())
            .await
            .unwrap(),
        ClaimOutcome::Completed { .. }
    ));
}

/// The worker's commit of an applied link carries the attempt's log record: on DynamoDB
/// one TransactWriteItems instead of an UpdateItem each; elsewhere the commit alone, and
/// the worker records the attempt (`false`). A lost lease writes neither; an event that
/// is not in the log still gets its link committed.
pub async fn a_commit_carries_the_attempts_record(f: &Fixture) {
    let e = entry(f, "tally", "evt-commit", &[Vendor::Hood]);
    let _ = claim(f, &e).await;
    let k = key(&e);
    let link_key = LinkKey::for_person(
        Vendor::Hood,
        &relay_shared::model::PersonId::parse("p0190a1b2c3d4e5f60718293a4b5c6d7e").unwrap(),
    );
    let lease = |id: &'static str| {
        let (links, link_key, until) = (&f.links, &link_key, f.now() + TimeDelta::seconds(30));
        async move {
            match links
                .lease(link_key, &DeliveryId::of(id), until)
                .await
                .unwrap()
            {
                LeaseOutcome::Leased { lease, link } => (lease, link),
                other => panic!("not leased: {other:?}"),
            }
        }
    };
    let (held, mut link) = lease("tally#evt-commit").await;
    link.vendor_id = Some("p-1".into());
    link.remember(DeliveryId::of("tally#evt-commit"));
    let synced = delivery(f, DeliveryStatus::Synced, 1);
    let _ = f.calls.as_ref().map(CallLog::take);
    let record = LogRecord {
        event: &k,
        vendor: Vendor::Hood,
        entry: &synced,
    };
    let settled = f.links.commit_logged(&held, &link, &record).await.unwrap();
    if f.calls.is_some() {
        assert!(settled, "DynamoDB writes both at once");
        f.expect_calls(&["TransactWriteItems"]);
    } else if !settled {
        f.journal
            .record_delivery(&k, Vendor::Hood, &synced)
            .await
            .unwrap();
    }
    let journey = f.journal.event(&k).await.unwrap().unwrap();
    assert_eq!(journey.deliveries[&Vendor::Hood], synced);
    // Committed: the delivery is remembered, the lease is free, the record id kept.
    assert!(matches!(
        f.links
            .lease(&link_key, &DeliveryId::of("tally#evt-commit"), f.now())
            .await
            .unwrap(),
        LeaseOutcome::AlreadyApplied
    ));
    let (next, stored) = lease("tally#evt-later").await;
    assert_eq!(stored.vendor_id.as_deref(), Some("p-1"));

    // A lease lost to another delivery: neither the link nor the record is written.
    f.clock.advance(TimeDelta::seconds(31));
    let (_, _) = lease("tally#evt-third").await;
    f.clock.advance(TimeDelta::seconds(1));
    let later = DeliveryEntry {
        at: f.now(),
        ..delivery(f, DeliveryStatus::Synced, 2)
    };
    let stale = Link {
        vendor_id: Some("p-2".into()),
        ..stored.clone()
    };
    let record = LogRecord {
        event: &k,
        vendor: Vendor::Hood,
        entry: &later,
    };
    let lost = f.links.commit_logged(&next, &stale, &record).await;
    assert!(
        matches!(lost, Err(StoreError::ClaimLost { .. })),
        "{lost:?}"
    );
    let journey = f.journal.event(&k).await.unwrap().unwrap();
    assert_eq!(journey.deliveries[&Vendor::Hood], synced, "not recorded");

    // An event not in the log: the link is still committed.
    f.clock.advance(TimeDelta::seconds(31));
    let (held, mut link) = lease("tally#evt-unlogged").await;
    link.remember(DeliveryId::of("tally#evt-unlogged"));
    let never = IdempotencyKey::inbound("tally", "never-logged").unwrap();
    let record = LogRecord {
        event: &never,
        vendor: Vendor::Hood,
        entry: &later,
    };
    let _ = f.calls.as_ref().map(CallLog::take);
    let settled = f.links.commit_logged(&held, &link, &record).await.unwrap();
    if f.calls.is_some() {
        assert!(settled, "nothing to record: settled");
        f.expect_calls(&["TransactWriteItems", "UpdateItem"]);
    }
    assert!(f.journal.event(&never).await.unwrap().is_none());
    assert!(matches!(
        f.links
            .lease(&link_key, &DeliveryId::of("tally#evt-unlogged"), f.now())
            .await
            .unwrap(),
        LeaseOutcome::AlreadyApplied
    ));
}

pub async fn raw_requests_round_trip_and_expire(f: &Fixture) {
    let id = RawId::of("typeform", b"{\"a\":1}");
    let raw = RawRecord {
        id: id.clone(),
        source: "typeform".into(),
        fallback_event_id: "sha-of-body".into(),
        received_at: f.now(),
        sealed: vec![0, 1, 2, 255, 254],
        expires_at: f.now() + TimeDelta::days(14),
    };
    f.journal.put_raw(&raw).await.unwrap();
    f.expect_calls(&["PutItem"]);
    assert_eq!(f.journal.raw(&id).await.unwrap(), Some(raw.clone()));
    // The same request again overwrites its item.
    let again = RawRecord {
        sealed: vec![9; 40],
        ..raw.clone()
    };
    f.journal.put_raw(&again).await.unwrap();
    assert_eq!(f.journal.raw(&id).await.unwrap(), Some(again));
    assert_eq!(
        f.journal.raw(&RawId::of("tally", b"{}")).await.unwrap(),
        None
    );
    f.clock.advance(TimeDelta::days(14));
    assert_eq!(f.journal.raw(&id).await.unwrap(), None);
}
