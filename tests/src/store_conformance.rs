//! One behaviour suite for every store adapter. Each check is an async function over a
//! [`Fixture`]; [`store_conformance_tests!`](crate::store_conformance_tests) turns the list
//! into `#[tokio::test]`s for an adapter (`tests/store_memory.rs`, `tests/store_dynamodb.rs`).
//! Time is a [`ManualClock`], so every expected instant is exact. Where the fixture records
//! backend calls (DynamoDB), the checks also assert the exact calls each operation made.

#![allow(
    clippy::unwrap_used,
    reason = "a test suite: a panic is how a check reports failure"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{
    AppliedField, Claim, ClaimOutcome, Clock, ContactKeyHash, DeliveryId, GcraParams,
    IdempotencyKey, IdempotencyStore, LeaseOutcome, LimiterKey, Link, LinkKey, LinkLease,
    LinkStore, MAX_RESULT_BYTES, ManualClock, PayloadHash, Permit, RateLimiter, StoreError,
};
use relay_shared::store::{Booking, Reservation};
use relay_shared::vendors::Vendor;

use crate::dynamodb_local::{CallLog, fresh_table};

/// Makes a limiter handle (one per simulated instance) for a key and schedule.
pub type LimiterFactory =
    Box<dyn Fn(&LimiterKey, GcraParams) -> Arc<dyn RateLimiter> + Send + Sync>;

/// An adapter under test.
pub struct Fixture {
    /// The idempotency side of the store.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The link side of the store.
    pub links: Arc<dyn LinkStore>,
    /// New limiter handles sharing the store's schedules.
    pub limiter: LimiterFactory,
    /// The clock every handle reads.
    pub clock: Arc<ManualClock>,
    /// Backend calls, when the adapter has a backend.
    pub calls: Option<CallLog>,
}

impl Fixture {
    /// The in-memory adapter.
    pub async fn memory() -> Fixture {
        let clock = start_clock();
        let store = MemoryStore::new(clock.clone());
        let limiters = store.clone();
        Fixture {
            idempotency: Arc::new(store.clone()),
            links: Arc::new(store),
            limiter: Box::new(move |key, params| Arc::new(limiters.limiter(key, params))),
            clock,
            calls: None,
        }
    }

    /// The local relay's on-disk (SQLite) adapter in a fresh data directory, removed when
    /// the fixture is dropped. No backend calls are recorded: each operation is one SQLite
    /// transaction on the store's own thread.
    pub async fn disk() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let clock = start_clock();
        let db = relay_local::disk::Db::open(dir.path()).expect("the data directory opens");
        let store = relay_local::disk::DiskStore::new(db, clock.clone());
        let limiters = store.clone();
        Fixture {
            idempotency: Arc::new(store.clone()),
            links: Arc::new(store),
            // The closure owns the directory, so it lives exactly as long as the fixture.
            limiter: Box::new(move |key, params| {
                let _dir = &dir;
                Arc::new(limiters.limiter(key, params))
            }),
            clock,
            calls: None,
        }
    }

    /// The DynamoDB adapter on a fresh table in DynamoDB Local.
    pub async fn dynamodb() -> Fixture {
        let table = fresh_table().await.expect("DynamoDB Local table");
        let clock = start_clock();
        let store = DynamoStore::new(table.client, table.name, clock.clone());
        let limiters = store.clone();
        Fixture {
            idempotency: Arc::new(store.clone()),
            links: Arc::new(store),
            limiter: Box::new(move |key, params| Arc::new(limiters.limiter(key, params))),
            clock,
            calls: Some(table.calls),
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

    fn advance_ms(&self, ms: i64) {
        self.clock.advance(TimeDelta::milliseconds(ms));
    }
}

/// The real time truncated to the second: realistic for DynamoDB Local's TTL, and whole
/// seconds keep `expires_at` arithmetic exact.
fn start_clock() -> Arc<ManualClock> {
    let now = Utc::now().timestamp();
    Arc::new(ManualClock::new(
        DateTime::from_timestamp(now, 0).expect("current time is in range"),
    ))
}

/// Generates one `#[tokio::test]` per conformance check, each with a fresh fixture from
/// the given async expression.
#[macro_export]
macro_rules! store_conformance_tests {
    ($fixture:expr) => {
        $crate::store_conformance_tests!(@each $fixture;
            claim_is_one_call_and_duplicates_learn_the_state,
            an_unconfirmed_claim_is_never_taken_over,
            release_frees_the_key_for_any_payload,
            payload_mismatch_in_every_state,
            records_expire_after_retention,
            result_size_is_bounded,
            inbound_keys_are_per_source,
            concurrent_claims_have_exactly_one_winner,
            a_link_lease_returns_the_link_and_commit_stores_it,
            a_held_lease_keeps_others_out_until_it_ends,
            an_applied_delivery_is_recognised_in_the_lease_call,
            concurrent_leases_have_one_holder,
            links_are_per_vendor_and_contact,
            limiter_bursts_then_keeps_the_steady_rate,
            limiter_schedule_is_shared_between_instances,
            penalty_holds_every_instance_back,
            reservations_take_consecutive_slots,
            several_slots_are_booked_in_one_write,
            random_contention_keeps_every_window_in_sliding_terms,
        );
    };
    (@each $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture.await;
                $crate::store_conformance::$name(&fixture).await;
            }
        )*
    };
}

fn key(id: &str) -> IdempotencyKey {
    IdempotencyKey::inbound("typeform", id).expect("valid key")
}

fn claimed(outcome: ClaimOutcome) -> relay_shared::store::Claim {
    match outcome {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

/// Claim, duplicate while in progress, complete, duplicate after completion: one call each.
pub async fn claim_is_one_call_and_duplicates_learn_the_state(fx: &Fixture) {
    let store = &fx.idempotency;
    let hash = PayloadHash::of(b"{\"event_id\":\"ev-1\"}");
    let lease = fx.now() + TimeDelta::seconds(30);

    let claim = claimed(store.claim(&key("ev-1"), &hash, lease).await.unwrap());
    fx.expect_calls(&["PutItem"]);
    assert_eq!(claim.key(), &key("ev-1"));
    assert_eq!(claim.lease_until(), lease);
    assert_eq!(claim.token().get_version_num(), 4);

    assert_eq!(
        store.claim(&key("ev-1"), &hash, lease).await.unwrap(),
        ClaimOutcome::InProgress { until: lease }
    );
    fx.expect_calls(&["PutItem"]);

    store
        .complete(&claim, "{\"hood_id\":\"p-1\"}")
        .await
        .unwrap();
    fx.expect_calls(&["UpdateItem"]);

    let done = ClaimOutcome::Completed {
        result: "{\"hood_id\":\"p-1\"}".into(),
    };
    assert_eq!(store.claim(&key("ev-1"), &hash, lease).await.unwrap(), done);
    fx.expect_calls(&["PutItem"]);
    // Completing twice is refused: the token was consumed.
    assert!(matches!(
        store.complete(&claim, "again").await,
        Err(StoreError::ClaimLost { .. })
    ));
    fx.expect_calls(&["UpdateItem"]);
    assert_eq!(store.claim(&key("ev-1"), &hash, lease).await.unwrap(), done);
}

/// An unconfirmed claim is never taken over, not even after its lease: its claimant may
/// have done the work, so a duplicate is told `InProgress` (and must do the work itself if
/// it must not be lost). The claimant can still release or complete it, fenced by its token.
pub async fn an_unconfirmed_claim_is_never_taken_over(fx: &Fixture) {
    let store = &fx.idempotency;
    let hash = PayloadHash::of(b"body");
    let lease = fx.now() + TimeDelta::seconds(30);
    let first = claimed(store.claim(&key("ev-2"), &hash, lease).await.unwrap());

    fx.advance_ms(29_999);
    assert_eq!(
        store.claim(&key("ev-2"), &hash, lease).await.unwrap(),
        ClaimOutcome::InProgress { until: lease }
    );
    fx.advance_ms(60_000);
    let later = fx.now() + TimeDelta::seconds(30);
    assert_eq!(
        store.claim(&key("ev-2"), &hash, later).await.unwrap(),
        ClaimOutcome::InProgress { until: lease },
        "past the lease the claim is still the first claimant's"
    );
    fx.expect_calls(&["PutItem", "PutItem", "PutItem"]);

    // A stranger's token is fenced off; the claimant's own still works.
    let stranger = Claim::new(key("ev-2"), later);
    assert!(matches!(
        store.complete(&stranger, "stale").await,
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(matches!(
        store.release(&stranger).await,
        Err(StoreError::ClaimLost { .. })
    ));
    store.release(&first).await.unwrap();
    let retry = claimed(store.claim(&key("ev-2"), &hash, later).await.unwrap());
    assert_ne!(retry.token(), first.token());
    assert!(matches!(
        store.complete(&first, "stale").await,
        Err(StoreError::ClaimLost { .. })
    ));
    store.complete(&retry, "fresh").await.unwrap();
    assert_eq!(
        store.claim(&key("ev-2"), &hash, lease).await.unwrap(),
        ClaimOutcome::Completed {
            result: "fresh".into()
        }
    );
}

/// Release lets the key be claimed again at once, with the same payload or another: nothing
/// was enqueued under it, so taking it cannot duplicate or contradict anything.
pub async fn release_frees_the_key_for_any_payload(fx: &Fixture) {
    let store = &fx.idempotency;
    let hash = PayloadHash::of(b"a");
    let lease = fx.now() + TimeDelta::seconds(30);
    let first = claimed(store.claim(&key("ev-3"), &hash, lease).await.unwrap());
    fx.expect_calls(&["PutItem"]);
    store.release(&first).await.unwrap();
    fx.expect_calls(&["UpdateItem"]);

    let second = claimed(
        store
            .claim(&key("ev-3"), &PayloadHash::of(b"b"), lease)
            .await
            .unwrap(),
    );
    fx.expect_calls(&["PutItem"]);
    // Held now by the second claimant, with its payload.
    assert_eq!(
        store.claim(&key("ev-3"), &hash, lease).await.unwrap(),
        ClaimOutcome::PayloadMismatch
    );
    fx.expect_calls(&["PutItem"]);
    assert_ne!(first.token(), second.token());
    assert!(matches!(
        store.release(&first).await,
        Err(StoreError::ClaimLost { .. })
    ));
    store.release(&second).await.unwrap();
    assert!(matches!(
        store.release(&second).await,
        Err(StoreError::ClaimLost { .. })
    ));
}

/// Same key, different payload: reported as a mismatch whether in progress or completed.
pub async fn payload_mismatch_in_every_state(fx: &Fixture) {
    let store = &fx.idempotency;
    let (a, b) = (PayloadHash::of(b"a"), PayloadHash::of(b"b"));
    let lease = fx.now() + TimeDelta::seconds(30);
    let claim = claimed(store.claim(&key("ev-4"), &a, lease).await.unwrap());
    assert_eq!(
        store.claim(&key("ev-4"), &b, lease).await.unwrap(),
        ClaimOutcome::PayloadMismatch
    );
    fx.expect_calls(&["PutItem", "PutItem"]);
    // Even after the lease ends, another payload cannot take the key.
    fx.advance_ms(30_000);
    assert_eq!(
        store.claim(&key("ev-4"), &b, lease).await.unwrap(),
        ClaimOutcome::PayloadMismatch
    );
    store.complete(&claim, "ok").await.unwrap();
    assert_eq!(
        store.claim(&key("ev-4"), &b, lease).await.unwrap(),
        ClaimOutcome::PayloadMismatch
    );
    assert_eq!(
        store.claim(&key("ev-4"), &a, lease).await.unwrap(),
        ClaimOutcome::Completed {
            result: "ok".into()
        }
    );
}

/// Finished records count as absent once `expires_at` (7 days) has passed, even before the
/// TTL sweeper deletes them.
pub async fn records_expire_after_retention(fx: &Fixture) {
    let store = &fx.idempotency;
    let hash = PayloadHash::of(b"a");
    let claim = claimed(
        store
            .claim(&key("ev-5"), &hash, fx.now() + TimeDelta::seconds(30))
            .await
            .unwrap(),
    );
    store.complete(&claim, "done").await.unwrap();
    fx.clock.advance(TimeDelta::days(7) - TimeDelta::seconds(1));
    let lease = fx.now() + TimeDelta::seconds(30);
    assert_eq!(
        store.claim(&key("ev-5"), &hash, lease).await.unwrap(),
        ClaimOutcome::Completed {
            result: "done".into()
        }
    );
    fx.clock.advance(TimeDelta::seconds(1));
    claimed(
        store
            .claim(&key("ev-5"), &PayloadHash::of(b"other"), lease)
            .await
            .unwrap(),
    );
}

/// Results over 1 KB are refused before any call; exactly 1 KB is stored and returned.
pub async fn result_size_is_bounded(fx: &Fixture) {
    let store = &fx.idempotency;
    let hash = PayloadHash::of(b"a");
    let lease = fx.now() + TimeDelta::seconds(30);
    let claim = claimed(store.claim(&key("ev-6"), &hash, lease).await.unwrap());
    fx.expect_calls(&["PutItem"]);
    let too_big = "x".repeat(MAX_RESULT_BYTES + 1);
    assert!(matches!(
        store.complete(&claim, &too_big).await,
        Err(StoreError::ResultTooLarge { len: 1025 })
    ));
    fx.expect_calls(&[]);
    let max = "y".repeat(MAX_RESULT_BYTES);
    store.complete(&claim, &max).await.unwrap();
    fx.expect_calls(&["UpdateItem"]);
    assert_eq!(
        store.claim(&key("ev-6"), &hash, lease).await.unwrap(),
        ClaimOutcome::Completed { result: max }
    );
}

/// The same sender event id from two sources is two events.
pub async fn inbound_keys_are_per_source(fx: &Fixture) {
    let store = &fx.idempotency;
    let hash = PayloadHash::of(b"a");
    let lease = fx.now() + TimeDelta::seconds(30);
    for k in [
        IdempotencyKey::inbound("typeform", "e1").unwrap(),
        IdempotencyKey::inbound("tally", "e1").unwrap(),
    ] {
        claimed(store.claim(&k, &hash, lease).await.unwrap());
    }
    fx.expect_calls(&["PutItem"; 2]);
}

/// 64 concurrent claims of one key: exactly one wins; the rest see it in progress or
/// completed. 64 PutItems and one UpdateItem in all.
pub async fn concurrent_claims_have_exactly_one_winner(fx: &Fixture) {
    const TASKS: usize = 64;
    let hash = PayloadHash::of(b"same body");
    let lease = fx.now() + TimeDelta::seconds(30);
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&fx.idempotency);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let outcome = store.claim(&key("ev-hot"), &hash, lease).await.unwrap();
                if let ClaimOutcome::Claimed(claim) = &outcome {
                    store.complete(claim, "winner").await.unwrap();
                }
                outcome
            })
        })
        .collect();
    let outcomes: Vec<ClaimOutcome> = futures::future::try_join_all(tasks).await.unwrap();

    let winners = outcomes
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Claimed(_)))
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
    for outcome in &outcomes {
        match outcome {
            ClaimOutcome::Claimed(_) => {}
            ClaimOutcome::InProgress { until } => assert_eq!(*until, lease),
            ClaimOutcome::Completed { result } => assert_eq!(result, "winner"),
            ClaimOutcome::PayloadMismatch => panic!("same payload reported as mismatch"),
        }
    }
    if let Some(calls) = &fx.calls {
        let calls = calls.take();
        assert_eq!(calls.iter().filter(|c| *c == "PutItem").count(), TASKS);
        assert_eq!(calls.iter().filter(|c| *c == "UpdateItem").count(), 1);
        assert_eq!(calls.len(), TASKS + 1);
    }
}

fn alice(vendor: Vendor) -> LinkKey {
    LinkKey::new(vendor, &ContactKeyHash::of("email:alice@example.com"))
}

fn leased(outcome: LeaseOutcome) -> (LinkLease, Link) {
    match outcome {
        LeaseOutcome::Leased { lease, link } => (lease, link),
        other => panic!("expected Leased, got {other:?}"),
    }
}

fn applied(vendor_id: &str, fields: &[(&str, &str, i64)], delivery: &str) -> Link {
    let mut link = Link {
        vendor_id: Some(vendor_id.to_owned()),
        fields: fields
            .iter()
            .map(|(k, fp, v)| {
                (
                    (*k).to_owned(),
                    AppliedField {
                        fingerprint: (*fp).to_owned(),
                        version: *v,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        recent: Vec::new(),
    };
    link.remember(DeliveryId::of(delivery));
    link
}

/// A first lease creates the link and returns it empty; commit stores the new state and
/// frees the lease; the next lease returns what was committed. One call each.
pub async fn a_link_lease_returns_the_link_and_commit_stores_it(fx: &Fixture) {
    let links = &fx.links;
    let until = fx.now() + TimeDelta::seconds(30);
    let (lease, link) = leased(
        links
            .lease(&alice(Vendor::Hood), &DeliveryId::of("typeform#1"), until)
            .await
            .unwrap(),
    );
    assert_eq!(link, Link::default());
    assert_eq!(lease.until(), until);
    fx.expect_calls(&["UpdateItem"]);

    let first = applied(
        "p-1",
        &[("email", "fp-a", 1_000), ("full_name", "fp-b", 1_000)],
        "typeform#1",
    );
    links.commit(&lease, &first).await.unwrap();
    fx.expect_calls(&["UpdateItem"]);

    let (lease, link) = leased(
        links
            .lease(&alice(Vendor::Hood), &DeliveryId::of("hubspot#2"), until)
            .await
            .unwrap(),
    );
    assert_eq!(link, first);
    links.abandon(&lease).await.unwrap();
    fx.expect_calls(&["UpdateItem", "UpdateItem"]);
    // Abandoning left the link as it was and freed the lease.
    let (_, link) = leased(
        links
            .lease(&alice(Vendor::Hood), &DeliveryId::of("hubspot#2"), until)
            .await
            .unwrap(),
    );
    assert_eq!(link, first);
}

/// While a lease is held, other deliveries are told until when; after it ends the next one
/// takes it, and the old holder can neither commit nor abandon (fencing).
pub async fn a_held_lease_keeps_others_out_until_it_ends(fx: &Fixture) {
    let links = &fx.links;
    let key = alice(Vendor::Channelio);
    let until = fx.now() + TimeDelta::seconds(10);
    let (old, _) = leased(
        links
            .lease(&key, &DeliveryId::of("a#1"), until)
            .await
            .unwrap(),
    );
    assert_eq!(
        links
            .lease(&key, &DeliveryId::of("a#2"), until)
            .await
            .unwrap(),
        LeaseOutcome::Busy { until }
    );
    fx.advance_ms(10_000);
    let (new, _) = leased(
        links
            .lease(
                &key,
                &DeliveryId::of("a#2"),
                fx.now() + TimeDelta::seconds(10),
            )
            .await
            .unwrap(),
    );
    fx.expect_calls(&["UpdateItem"; 3]);
    for lost in [
        links.commit(&old, &applied("u", &[], "a#1")).await,
        links.abandon(&old).await,
    ] {
        assert!(
            matches!(lost, Err(StoreError::ClaimLost { .. })),
            "{lost:?}"
        );
    }
    links
        .commit(&new, &applied("u-2", &[], "a#2"))
        .await
        .unwrap();
}

/// A delivery committed before is refused by the lease call itself: a redelivered message
/// costs one call and never reaches the vendor.
pub async fn an_applied_delivery_is_recognised_in_the_lease_call(fx: &Fixture) {
    let links = &fx.links;
    let key = alice(Vendor::Hood);
    let until = fx.now() + TimeDelta::seconds(30);
    let (lease, _) = leased(
        links
            .lease(&key, &DeliveryId::of("typeform#1"), until)
            .await
            .unwrap(),
    );
    links
        .commit(&lease, &applied("p-1", &[], "typeform#1"))
        .await
        .unwrap();
    fx.expect_calls(&["UpdateItem", "UpdateItem"]);
    assert_eq!(
        links
            .lease(&key, &DeliveryId::of("typeform#1"), until)
            .await
            .unwrap(),
        LeaseOutcome::AlreadyApplied
    );
    fx.expect_calls(&["UpdateItem"]);
}

/// 32 deliveries racing for one link: exactly one holds the lease.
pub async fn concurrent_leases_have_one_holder(fx: &Fixture) {
    let until = fx.now() + TimeDelta::seconds(30);
    let key = alice(Vendor::Chatwoot);
    let attempts = futures::future::join_all((0..32).map(|i| {
        let links = Arc::clone(&fx.links);
        let key = key.clone();
        async move {
            links
                .lease(&key, &DeliveryId::of(&format!("e#{i}")), until)
                .await
                .unwrap()
        }
    }))
    .await;
    let holders = attempts
        .iter()
        .filter(|o| matches!(o, LeaseOutcome::Leased { .. }))
        .count();
    assert_eq!(holders, 1, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|o| matches!(o, LeaseOutcome::Leased { .. } | LeaseOutcome::Busy { .. }))
    );
}

/// A contact's links at different vendors, and different contacts, are independent.
pub async fn links_are_per_vendor_and_contact(fx: &Fixture) {
    let links = &fx.links;
    let until = fx.now() + TimeDelta::seconds(30);
    let bob = LinkKey::new(Vendor::Hood, &ContactKeyHash::of("email:bob@example.com"));
    let (hood, _) = leased(
        links
            .lease(&alice(Vendor::Hood), &DeliveryId::of("e#1"), until)
            .await
            .unwrap(),
    );
    // Same delivery, other vendor and other contact: not busy, not applied.
    let (channel, _) = leased(
        links
            .lease(&alice(Vendor::Channelio), &DeliveryId::of("e#1"), until)
            .await
            .unwrap(),
    );
    let (other, link) = leased(
        links
            .lease(&bob, &DeliveryId::of("e#1"), until)
            .await
            .unwrap(),
    );
    assert_eq!(link, Link::default());
    links
        .commit(&hood, &applied("h-1", &[], "e#1"))
        .await
        .unwrap();
    links
        .commit(&channel, &applied("c-1", &[], "e#1"))
        .await
        .unwrap();
    links.abandon(&other).await.unwrap();
    let (_, link) = leased(
        links
            .lease(&bob, &DeliveryId::of("e#2"), until)
            .await
            .unwrap(),
    );
    assert_eq!(link, Link::default());
}

fn hood_key() -> LimiterKey {
    LimiterKey::new(Vendor::Hood, "main").unwrap()
}

/// The schedule the exact-instant checks use: five at once, then one every 430 ms.
const FIVE_THEN_430: GcraParams = GcraParams::new(Duration::from_millis(430), 5);

/// Five at once, then one every 430 ms. One UpdateItem per permit; a refusal this handle
/// can tell from the schedule it last saw costs none.
pub async fn limiter_bursts_then_keeps_the_steady_rate(fx: &Fixture) {
    let limiter = (fx.limiter)(&hood_key(), FIVE_THEN_430);
    let t0 = fx.now();
    for _ in 0..5 {
        assert_eq!(limiter.acquire().await.unwrap(), Permit::Granted);
        fx.expect_calls(&["UpdateItem"]);
    }
    let next = t0 + TimeDelta::milliseconds(430);
    assert_eq!(limiter.acquire().await.unwrap(), Permit::RetryAt(next));
    fx.expect_calls(&[]);
    fx.advance_ms(429);
    assert_eq!(limiter.acquire().await.unwrap(), Permit::RetryAt(next));
    fx.expect_calls(&[]);
    fx.advance_ms(1);
    assert_eq!(limiter.acquire().await.unwrap(), Permit::Granted);
    assert_eq!(
        limiter.acquire().await.unwrap(),
        Permit::RetryAt(t0 + TimeDelta::milliseconds(860))
    );
    fx.expect_calls(&["UpdateItem"]);

    // After a long idle spell the burst is back, but no more than the burst.
    fx.advance_ms(60_000);
    for _ in 0..5 {
        assert_eq!(limiter.acquire().await.unwrap(), Permit::Granted);
    }
    assert_eq!(
        limiter.acquire().await.unwrap(),
        Permit::RetryAt(fx.now() + TimeDelta::milliseconds(430))
    );
    fx.expect_calls(&["UpdateItem"; 5]);

    // Another account has its own schedule.
    let other = (fx.limiter)(
        &LimiterKey::new(Vendor::Hood, "second").unwrap(),
        FIVE_THEN_430,
    );
    assert_eq!(other.acquire().await.unwrap(), Permit::Granted);
}

/// Two instances (separate handles) draw from one schedule. A handle whose view is out of
/// date pays one extra call, never more.
pub async fn limiter_schedule_is_shared_between_instances(fx: &Fixture) {
    let a = (fx.limiter)(&hood_key(), FIVE_THEN_430);
    let b = (fx.limiter)(&hood_key(), FIVE_THEN_430);
    let t0 = fx.now();
    for _ in 0..5 {
        assert_eq!(a.acquire().await.unwrap(), Permit::Granted);
    }
    fx.expect_calls(&["UpdateItem"; 5]);
    // b has never looked: one refused call tells it when.
    assert_eq!(
        b.acquire().await.unwrap(),
        Permit::RetryAt(t0 + TimeDelta::milliseconds(430))
    );
    fx.expect_calls(&["UpdateItem"]);
    fx.advance_ms(430);
    assert_eq!(b.acquire().await.unwrap(), Permit::Granted);
    fx.expect_calls(&["UpdateItem"]);
    // a has not seen b's permit; its one call is refused with the right time.
    assert_eq!(
        a.acquire().await.unwrap(),
        Permit::RetryAt(t0 + TimeDelta::milliseconds(860))
    );
    fx.expect_calls(&["UpdateItem"]);

    // Idle spell: a restarts the schedule; b, whose view says idle, switches once.
    fx.advance_ms(10_000);
    assert_eq!(a.acquire().await.unwrap(), Permit::Granted);
    fx.expect_calls(&["UpdateItem"]);
    assert_eq!(b.acquire().await.unwrap(), Permit::Granted);
    fx.expect_calls(&["UpdateItem", "UpdateItem"]);
    assert_eq!(b.acquire().await.unwrap(), Permit::Granted);
    fx.expect_calls(&["UpdateItem"]);
}

/// A 429 seen by one instance holds every instance back until `retry_after`, then the
/// steady rate resumes (no burst). A shorter penalty never pulls the schedule back.
pub async fn penalty_holds_every_instance_back(fx: &Fixture) {
    let a = (fx.limiter)(&hood_key(), FIVE_THEN_430);
    let b = (fx.limiter)(&hood_key(), FIVE_THEN_430);
    assert_eq!(a.acquire().await.unwrap(), Permit::Granted);
    fx.expect_calls(&["UpdateItem"]);

    b.penalise(Duration::from_secs(2)).await.unwrap();
    fx.expect_calls(&["UpdateItem"]);
    let resume = fx.now() + TimeDelta::seconds(2);
    // a learns of the penalty with one refused call; b knows it already (no call).
    assert_eq!(a.acquire().await.unwrap(), Permit::RetryAt(resume));
    fx.expect_calls(&["UpdateItem"]);
    assert_eq!(b.acquire().await.unwrap(), Permit::RetryAt(resume));
    fx.expect_calls(&[]);

    fx.advance_ms(2_000);
    assert_eq!(a.acquire().await.unwrap(), Permit::Granted);
    assert_eq!(
        b.acquire().await.unwrap(),
        Permit::RetryAt(resume + TimeDelta::milliseconds(430))
    );
    fx.expect_calls(&["UpdateItem"; 2]);

    b.penalise(Duration::ZERO).await.unwrap();
    fx.expect_calls(&["UpdateItem"]);
    assert_eq!(
        a.acquire().await.unwrap(),
        Permit::RetryAt(resume + TimeDelta::milliseconds(430))
    );
}

/// Waiters book consecutive slots instead of retrying together: at one instant, the burst
/// of five goes now, then one every 430 ms; a slot beyond the allowed wait is refused with
/// its instant and not booked. One UpdateItem per reservation.
pub async fn reservations_take_consecutive_slots(fx: &Fixture) {
    let limiter = (fx.limiter)(&hood_key(), FIVE_THEN_430);
    let now = fx.now();
    let wait = Duration::from_millis(900);
    let mut slots = Vec::new();
    for _ in 0..7 {
        match limiter.reserve(wait).await.unwrap() {
            Reservation::At(at) => slots.push((at - now).num_milliseconds()),
            other => panic!("expected a slot, got {other:?}"),
        }
    }
    fx.expect_calls(&["UpdateItem"; 7]);
    assert_eq!(slots, [0, 0, 0, 0, 0, 430, 860]);
    assert_eq!(
        limiter.reserve(wait).await.unwrap(),
        Reservation::TooFar(now + TimeDelta::milliseconds(1290))
    );
    fx.expect_calls(&[]);
    // Nothing was booked by the refusal: after 390 ms the same slot is within reach.
    fx.advance_ms(390);
    assert_eq!(
        limiter.reserve(wait).await.unwrap(),
        Reservation::At(now + TimeDelta::milliseconds(1290))
    );
    fx.expect_calls(&["UpdateItem"]);
}

/// Several slots in one write: `tat` grows by `n·T` at once and each slot is usable at its
/// own instant — the same slots as `n` reservations one after the other. Of more than fit
/// in the wait, those that fit are booked; a handle whose view was stale corrects the
/// count with one more call.
pub async fn several_slots_are_booked_in_one_write(fx: &Fixture) {
    let a = (fx.limiter)(&hood_key(), FIVE_THEN_430);
    let b = (fx.limiter)(&hood_key(), FIVE_THEN_430);
    let t0 = fx.now();
    let at = |ms: i64| t0 + TimeDelta::milliseconds(ms);
    let wait = Duration::from_millis(900);
    assert_eq!(
        a.reserve_n(7, wait).await.unwrap(),
        Booking::Slots(vec![at(0), at(0), at(0), at(0), at(0), at(430), at(860)])
    );
    fx.expect_calls(&["UpdateItem"]);
    // b has never looked: one refused call; then it knows (no call).
    assert_eq!(
        b.reserve_n(3, wait).await.unwrap(),
        Booking::TooFar(at(1290))
    );
    fx.expect_calls(&["UpdateItem"]);
    assert_eq!(
        b.reserve_n(3, wait).await.unwrap(),
        Booking::TooFar(at(1290))
    );
    fx.expect_calls(&[]);
    // 390 ms on, one of the three fits in the wait.
    fx.advance_ms(390);
    assert_eq!(
        b.reserve_n(3, wait).await.unwrap(),
        Booking::Slots(vec![at(1290)])
    );
    fx.expect_calls(&["UpdateItem"]);
    // a's view misses b's slot but the two it asks for still fit: one call.
    assert_eq!(
        a.reserve_n(2, Duration::from_millis(2_000)).await.unwrap(),
        Booking::Slots(vec![at(1720), at(2150)])
    );
    fx.expect_calls(&["UpdateItem"]);
    // b's view (tat at 3 440) says all three fit in 2.2 s, the stored tat (4 300) says
    // one: refused once, then that one.
    assert_eq!(
        b.reserve_n(3, Duration::from_millis(2_200)).await.unwrap(),
        Booking::Slots(vec![at(2580)])
    );
    fx.expect_calls(&["UpdateItem", "UpdateItem"]);
}

/// Many instances with random demand (1–3 slots at a time, random waits, random pauses,
/// early retries) on the production Hood schedule and an injected clock: no 1 s or 60 s
/// window, wherever placed, over Hood's limits, and the minute's budget used at ≥ 0.97.
pub async fn random_contention_keeps_every_window_in_sliding_terms(fx: &Fixture) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    const INSTANCES: usize = 8;
    const HORIZON_MS: i64 = 150_000;
    let params = GcraParams::HOOD;
    let handles: Vec<_> = (0..INSTANCES)
        .map(|_| (fx.limiter)(&hood_key(), params))
        .collect();
    let t0 = fx.now();
    let mut rng = 0x5EED_u64;
    let mut random = move |max: i64| {
        // splitmix64
        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        i64::try_from((z ^ (z >> 31)) % (max.max(0).unsigned_abs() + 1)).unwrap()
    };
    let mut queue: BinaryHeap<Reverse<(i64, usize)>> =
        (0..INSTANCES).map(|i| Reverse((random(500), i))).collect();
    let mut used: Vec<i64> = Vec::new();
    let mut asked = 0u32;
    while let Some(Reverse((at, i))) = queue.pop() {
        if at >= HORIZON_MS {
            continue;
        }
        fx.clock.set(t0 + TimeDelta::milliseconds(at));
        let n = u32::try_from(1 + random(2)).unwrap();
        let wait = random(3_000);
        asked += 1;
        let next = match handles[i]
            .reserve_n(n, Duration::from_millis(wait.unsigned_abs()))
            .await
            .unwrap()
        {
            Booking::Slots(slots) => {
                assert!(!slots.is_empty() && slots.len() <= n as usize);
                let slots: Vec<i64> = slots.iter().map(|s| (*s - t0).num_milliseconds()).collect();
                assert!(
                    slots.iter().all(|&s| s >= at && s <= at + wait),
                    "{slots:?}"
                );
                used.extend(&slots);
                slots.last().copied().unwrap_or(at) + random(300)
            }
            Booking::TooFar(retry) => {
                let retry = (retry - t0).num_milliseconds();
                assert!(retry > at - 1);
                // Back at the instant told, or a little early (refused again, cheaply).
                (retry - random(200)).max(at + 1)
            }
        };
        queue.push(Reverse((next, i)));
    }
    used.sort_unstable();
    let most = |len: i64| {
        let mut best = 0;
        let mut end = 0;
        for (start, &t) in used.iter().enumerate() {
            end = end.max(start);
            while end < used.len() && used[end] < t + len {
                end += 1;
            }
            best = best.max(end - start);
        }
        best
    };
    assert!(most(1_000) <= 10, "{} in a second", most(1_000));
    assert!(most(60_000) <= 150, "{} in a minute", most(60_000));
    let utilisation = used.len() as f64 / (150.0 * HORIZON_MS as f64 / 60_000.0);
    assert!(utilisation >= 0.97, "utilisation {utilisation}");
    if let Some(calls) = &fx.calls {
        let calls = calls.take();
        assert!(calls.iter().all(|c| c == "UpdateItem"), "{calls:?}");
        // Writes per reservation asked: refusals known locally cost none, a stale view
        // at most two more.
        assert!(
            calls.len() as u32 <= 2 * asked,
            "{} calls for {asked} reservations",
            calls.len()
        );
    }
}
