//! One behaviour suite for every [`IdentityStore`] adapter, like
//! [`store_conformance`](crate::store_conformance): each check is an async function over a
//! [`Fixture`], and [`identity_conformance_tests!`](crate::identity_conformance_tests)
//! turns the list into `#[tokio::test]`s (`tests/identity_memory.rs`,
//! `tests/identity_disk.rs`, `tests/identity_dynamodb.rs`). Where the fixture records
//! backend calls (DynamoDB), the checks assert the exact calls each operation made.
//!
//! The first checks hold the four store operations to the trait's contract (every failed
//! condition is `Conflict` with nothing written: each is followed by reads showing so);
//! the last ones run [`resolve`] on top, alone and with 40 resolutions of one person at
//! once.

#![allow(
    clippy::unwrap_used,
    reason = "a test suite: a panic is how a check reports failure"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use relay_shared::model::{Contact, ContactKey, Email, PersonId, PhoneE164, PhoneRegion};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::identity::{identifiers_of, new_person_id, resolve};
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{
    IdentifierHash, IdentityKey, IdentityStore, PersonRecord, Resolved, StoreError, SystemClock,
    Written,
};

use crate::dynamodb_local::{CallLog, fresh_table};

/// The identifiers the checks use, as [`identifiers_of`] spells them (checked by
/// [`resolve_creates_then_recognises_then_attaches`]).
pub const EMAIL: &str = "email:ann.o'neil+news@example.co.uk";
pub const PHONE: &str = "phone:+4915123456789";
pub const HUBSPOT: &str = "hubspot:901";
pub const STANDARD: &str = "standard:ct_7f3a";
pub const PIPEDRIVE: &str = "pipedrive:42";

/// An adapter under test.
pub struct Fixture {
    pub store: Arc<dyn IdentityStore>,
    /// The deployment's identifier key.
    pub key: IdentityKey,
    /// Backend calls, when the adapter has a backend.
    pub calls: Option<CallLog>,
    /// What the adapter needs kept alive (the disk adapter's data directory).
    pub keep: Option<tempfile::TempDir>,
}

fn test_key() -> IdentityKey {
    IdentityKey::from_bytes(b"profile-relay identity test key!").unwrap()
}

impl Fixture {
    /// The in-memory adapter.
    pub async fn memory() -> Fixture {
        Fixture {
            store: Arc::new(MemoryStore::new(Arc::new(SystemClock))),
            key: test_key(),
            calls: None,
            keep: None,
        }
    }

    /// The local relay's on-disk adapter (SQLite) in a fresh data directory.
    pub async fn disk() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let db = relay_local::disk::Db::open(dir.path()).expect("the data directory opens");
        Fixture {
            store: Arc::new(relay_local::disk::DiskStore::new(db, Arc::new(SystemClock))),
            key: test_key(),
            calls: None,
            keep: Some(dir),
        }
    }

    /// The DynamoDB adapter on a fresh table in DynamoDB Local.
    pub async fn dynamodb() -> Fixture {
        let table = fresh_table().await.expect("DynamoDB Local table");
        Fixture {
            store: Arc::new(DynamoStore::new(
                table.client,
                table.name,
                Arc::new(SystemClock),
            )),
            key: test_key(),
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

    /// The hash of one identifier.
    pub fn h(&self, identifier: &str) -> IdentifierHash {
        self.key.hash(identifier)
    }

    fn hs(&self, identifiers: &[&str]) -> Vec<IdentifierHash> {
        identifiers.iter().map(|i| self.h(i)).collect()
    }

    async fn resolve(&self, identifiers: &[&str]) -> Resolved {
        let identifiers: Vec<String> = identifiers.iter().map(|i| (*i).to_owned()).collect();
        resolve(&*self.store, &self.key, &identifiers)
            .await
            .unwrap()
    }

    async fn find(&self, identifiers: &[&str]) -> BTreeMap<IdentifierHash, PersonId> {
        let found = self.store.find(&self.hs(identifiers)).await.unwrap();
        self.calls.as_ref().map(CallLog::take);
        found
    }

    async fn person(&self, person: &PersonId) -> Option<PersonRecord> {
        let record = self.store.person(person).await.unwrap();
        self.calls.as_ref().map(CallLog::take);
        record
    }

    /// Asserts that each of `identifiers` points at `person` and the rest of `unknown`
    /// point nowhere.
    async fn expect_points(&self, identifiers: &[&str], person: &PersonId, unknown: &[&str]) {
        let all: Vec<&str> = identifiers.iter().chain(unknown).copied().collect();
        let found = self.find(&all).await;
        let expected: BTreeMap<IdentifierHash, PersonId> = identifiers
            .iter()
            .map(|i| (self.h(i), person.clone()))
            .collect();
        assert_eq!(found, expected, "where the identifiers point");
    }

    fn ids(&self, identifiers: &[&str]) -> BTreeSet<IdentifierHash> {
        self.hs(identifiers).into_iter().collect()
    }
}

/// Generates one `#[tokio::test]` per conformance check, each with a fresh fixture from
/// the given async expression.
#[macro_export]
macro_rules! identity_conformance_tests {
    ($fixture:expr) => {
        $crate::identity_conformance_tests!(@each $fixture;
            attach_creates_a_person_and_find_sees_where_its_ids_point,
            a_create_conflicts_and_writes_nothing_when_the_person_exists_or_an_id_is_taken,
            attach_to_an_existing_person_needs_it_unmerged,
            merge_moves_every_id_bumps_the_survivor_and_marks_the_loser,
            a_stale_merge_writes_nothing,
            resolve_creates_then_recognises_then_attaches,
            resolve_merges_two_known_persons_into_the_older,
            concurrent_resolutions_converge_on_one_person,
        );
    };
    (@each $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture.await;
                $crate::identity_conformance::$name(&fixture).await;
            }
        )*
    };
}

/// A create is one write; find is one read for all ids; person one read; an attach to the
/// person adds ids and bumps its version.
pub async fn attach_creates_a_person_and_find_sees_where_its_ids_point(fx: &Fixture) {
    let ann = new_person_id();
    let written = fx
        .store
        .attach(&ann, &fx.hs(&[EMAIL, PHONE]), true)
        .await
        .unwrap();
    assert_eq!(written, Written::Done);
    fx.expect_calls(&["TransactWriteItems"]);

    let found = fx
        .store
        .find(&fx.hs(&[EMAIL, PHONE, HUBSPOT]))
        .await
        .unwrap();
    fx.expect_calls(&["BatchGetItem"]);
    assert_eq!(
        found,
        BTreeMap::from([(fx.h(EMAIL), ann.clone()), (fx.h(PHONE), ann.clone())])
    );
    // Repeats are asked for once; nothing to ask is no call.
    let found = fx.store.find(&fx.hs(&[EMAIL, EMAIL])).await.unwrap();
    assert_eq!(found, BTreeMap::from([(fx.h(EMAIL), ann.clone())]));
    fx.expect_calls(&["BatchGetItem"]);
    assert!(fx.store.find(&[]).await.unwrap().is_empty());
    fx.expect_calls(&[]);
    // 150 identifiers (a BatchGetItem takes 100 keys): two reads.
    let mut many: Vec<IdentifierHash> = (0..149)
        .map(|i| fx.h(&format!("standard:ct_{i:04x}")))
        .collect();
    many.push(fx.h(PHONE));
    let found = fx.store.find(&many).await.unwrap();
    assert_eq!(found, BTreeMap::from([(fx.h(PHONE), ann.clone())]));
    fx.expect_calls(&["BatchGetItem", "BatchGetItem"]);

    let record = fx.store.person(&ann).await.unwrap();
    fx.expect_calls(&["GetItem"]);
    assert_eq!(
        record,
        Some(PersonRecord {
            ids: fx.ids(&[EMAIL, PHONE]),
            version: 1,
            merged_into: None,
        })
    );
    assert_eq!(fx.person(&new_person_id()).await, None);

    let written = fx
        .store
        .attach(&ann, &fx.hs(&[HUBSPOT]), false)
        .await
        .unwrap();
    assert_eq!(written, Written::Done);
    fx.expect_calls(&["TransactWriteItems"]);
    let record = fx.person(&ann).await.unwrap();
    assert_eq!(record.ids, fx.ids(&[EMAIL, PHONE, HUBSPOT]));
    assert_eq!(record.version, 2);
    fx.expect_points(&[EMAIL, PHONE, HUBSPOT], &ann, &[STANDARD])
        .await;
}

/// `create` needs the person new and every id free; anything else is `Conflict`, and not
/// even the free ids are written.
pub async fn a_create_conflicts_and_writes_nothing_when_the_person_exists_or_an_id_is_taken(
    fx: &Fixture,
) {
    let ann = new_person_id();
    assert_eq!(
        fx.store.attach(&ann, &fx.hs(&[EMAIL]), true).await.unwrap(),
        Written::Done
    );
    fx.expect_calls(&["TransactWriteItems"]);

    // Another person naming Ann's e-mail: nothing of it is written.
    let other = new_person_id();
    let written = fx
        .store
        .attach(&other, &fx.hs(&[STANDARD, EMAIL]), true)
        .await
        .unwrap();
    assert_eq!(written, Written::Conflict);
    fx.expect_calls(&["TransactWriteItems"]);
    assert_eq!(fx.person(&other).await, None);
    fx.expect_points(&[EMAIL], &ann, &[STANDARD]).await;

    // Creating Ann again, even with a free id.
    let written = fx.store.attach(&ann, &fx.hs(&[PHONE]), true).await.unwrap();
    assert_eq!(written, Written::Conflict);
    fx.expect_calls(&["TransactWriteItems"]);
    // An id that already points (at Ann herself) is not attached again.
    let written = fx
        .store
        .attach(&ann, &fx.hs(&[PHONE, EMAIL]), false)
        .await
        .unwrap();
    assert_eq!(written, Written::Conflict);
    fx.expect_calls(&["TransactWriteItems"]);
    assert_eq!(
        fx.person(&ann).await,
        Some(PersonRecord {
            ids: fx.ids(&[EMAIL]),
            version: 1,
            merged_into: None,
        })
    );
    fx.expect_points(&[EMAIL], &ann, &[PHONE]).await;

    // Attaching (not creating) to a person that does not exist.
    let nobody = new_person_id();
    let written = fx
        .store
        .attach(&nobody, &fx.hs(&[PHONE]), false)
        .await
        .unwrap();
    assert_eq!(written, Written::Conflict);
    assert_eq!(fx.person(&nobody).await, None);
    fx.expect_points(&[], &ann, &[PHONE]).await;
}

/// A merged person takes no identifiers and is no merge's survivor; a missing one neither.
pub async fn attach_to_an_existing_person_needs_it_unmerged(fx: &Fixture) {
    let (ann, dup, third) = (new_person_id(), new_person_id(), new_person_id());
    for (person, id) in [(&ann, EMAIL), (&dup, PHONE), (&third, STANDARD)] {
        let written = fx.store.attach(person, &[fx.h(id)], true).await.unwrap();
        assert_eq!(written, Written::Done);
    }
    let dup_record = fx.person(&dup).await.unwrap();
    assert_eq!(
        fx.store.merge(&dup, &dup_record, &ann).await.unwrap(),
        Written::Done
    );
    let merged = fx.person(&dup).await.unwrap();
    let ann_record = fx.person(&ann).await.unwrap();

    fx.calls.as_ref().map(CallLog::take);
    let written = fx
        .store
        .attach(&dup, &fx.hs(&[HUBSPOT]), false)
        .await
        .unwrap();
    assert_eq!(written, Written::Conflict);
    fx.expect_calls(&["TransactWriteItems"]);
    assert_eq!(fx.person(&dup).await.as_ref(), Some(&merged));
    assert_eq!(fx.person(&ann).await.as_ref(), Some(&ann_record));
    fx.expect_points(&[EMAIL, PHONE], &ann, &[HUBSPOT]).await;

    // Into a merged survivor, or a missing one: nothing moves.
    let third_record = fx.person(&third).await.unwrap();
    for survivor in [&dup, &new_person_id()] {
        let written = fx
            .store
            .merge(&third, &third_record, survivor)
            .await
            .unwrap();
        assert_eq!(written, Written::Conflict);
        fx.expect_calls(&["TransactWriteItems"]);
        assert_eq!(fx.person(&third).await.as_ref(), Some(&third_record));
        fx.expect_points(&[STANDARD], &third, &[]).await;
    }
    assert_eq!(fx.person(&dup).await.as_ref(), Some(&merged));
}

/// One write moves every id of the loser to the survivor, adds them to the survivor's ids
/// (version bumped) and marks the loser merged.
pub async fn merge_moves_every_id_bumps_the_survivor_and_marks_the_loser(fx: &Fixture) {
    let (survivor, loser) = (new_person_id(), new_person_id());
    let loser_ids = [PHONE, HUBSPOT, STANDARD];
    assert_eq!(
        fx.store
            .attach(&survivor, &fx.hs(&[EMAIL]), true)
            .await
            .unwrap(),
        Written::Done
    );
    assert_eq!(
        fx.store
            .attach(&loser, &fx.hs(&loser_ids), true)
            .await
            .unwrap(),
        Written::Done
    );
    assert_eq!(
        fx.store
            .attach(&loser, &fx.hs(&[PIPEDRIVE]), false)
            .await
            .unwrap(),
        Written::Done
    );
    let record = fx.person(&loser).await.unwrap();
    assert_eq!(record.version, 2);
    assert_eq!(record.ids.len(), 4);

    let written = fx.store.merge(&loser, &record, &survivor).await.unwrap();
    assert_eq!(written, Written::Done);
    fx.expect_calls(&["TransactWriteItems"]);

    let all = [EMAIL, PHONE, HUBSPOT, STANDARD, PIPEDRIVE];
    fx.expect_points(&all, &survivor, &[]).await;
    assert_eq!(
        fx.person(&survivor).await,
        Some(PersonRecord {
            ids: fx.ids(&all),
            version: 2,
            merged_into: None,
        })
    );
    let after = fx.person(&loser).await.unwrap();
    assert_eq!(after.merged_into, Some(survivor.clone()));

    // The same merge again: the loser is merged now.
    let again = fx.store.merge(&loser, &record, &survivor).await.unwrap();
    assert_eq!(again, Written::Conflict);
    assert_eq!(fx.person(&survivor).await.unwrap().version, 2);
    // A merged person with no ids left to move.
    let empty = new_person_id();
    assert_eq!(
        fx.store.attach(&empty, &[], true).await.unwrap(),
        Written::Done
    );
    let empty_record = fx.person(&empty).await.unwrap();
    assert_eq!((empty_record.version, empty_record.ids.len()), (1, 0));
    assert_eq!(
        fx.store
            .merge(&empty, &empty_record, &survivor)
            .await
            .unwrap(),
        Written::Done
    );
    assert_eq!(
        fx.person(&empty).await.unwrap().merged_into,
        Some(survivor.clone())
    );
    assert_eq!(fx.person(&survivor).await.unwrap().version, 3);
}

/// A merge from a record that is out of date — the loser gained an id since, or the record
/// lists an id that does not point at the loser — is `Conflict` and moves nothing.
pub async fn a_stale_merge_writes_nothing(fx: &Fixture) {
    let (survivor, loser) = (new_person_id(), new_person_id());
    assert_eq!(
        fx.store
            .attach(&survivor, &fx.hs(&[EMAIL]), true)
            .await
            .unwrap(),
        Written::Done
    );
    assert_eq!(
        fx.store
            .attach(&loser, &fx.hs(&[PHONE]), true)
            .await
            .unwrap(),
        Written::Done
    );
    let stale = fx.person(&loser).await.unwrap();
    assert_eq!(
        fx.store
            .attach(&loser, &fx.hs(&[HUBSPOT]), false)
            .await
            .unwrap(),
        Written::Done
    );
    let survivor_before = fx.person(&survivor).await.unwrap();
    let loser_before = fx.person(&loser).await.unwrap();
    assert_eq!(loser_before.version, 2);

    let written = fx.store.merge(&loser, &stale, &survivor).await.unwrap();
    assert_eq!(written, Written::Conflict);
    fx.expect_calls(&["TransactWriteItems"]);

    // The current version, but the record also names the survivor's id, or an unknown one.
    for extra in [EMAIL, PIPEDRIVE] {
        let mut wrong = loser_before.clone();
        wrong.ids.insert(fx.h(extra));
        let written = fx.store.merge(&loser, &wrong, &survivor).await.unwrap();
        assert_eq!(written, Written::Conflict);
        fx.expect_calls(&["TransactWriteItems"]);
    }
    assert_eq!(fx.person(&survivor).await.as_ref(), Some(&survivor_before));
    assert_eq!(fx.person(&loser).await.as_ref(), Some(&loser_before));
    fx.expect_points(&[PHONE, HUBSPOT], &loser, &[PIPEDRIVE])
        .await;
    fx.expect_points(&[EMAIL], &survivor, &[]).await;

    // With the current record it goes through.
    let written = fx
        .store
        .merge(&loser, &loser_before, &survivor)
        .await
        .unwrap();
    assert_eq!(written, Written::Done);
    fx.expect_points(&[EMAIL, PHONE, HUBSPOT], &survivor, &[])
        .await;
}

/// A contact from HubSpot as the mapping makes it: key, normalised e-mail, E.164 phone.
fn ann_from_hubspot(with_phone: bool) -> Contact {
    let mut contact = Contact::new(ContactKey::external("hubspot", "901").unwrap());
    contact.email = Some(Email::parse("  Ann.O'Neil+News@Example.CO.UK ").unwrap());
    if with_phone {
        let germany = PhoneRegion::parse("DE").unwrap();
        contact.phone = Some(PhoneE164::parse("0151 2345 6789", germany).unwrap());
    }
    contact
}

/// New person: 2 calls. The same identifiers again: 1. One more identifier: 2.
pub async fn resolve_creates_then_recognises_then_attaches(fx: &Fixture) {
    let first = identifiers_of(&ann_from_hubspot(false));
    assert_eq!(first, [HUBSPOT, EMAIL]);
    let created = resolve(&*fx.store, &fx.key, &first).await.unwrap();
    assert!(created.created);
    assert_eq!((created.calls, created.merged.len()), (2, 0));
    fx.expect_calls(&["BatchGetItem", "TransactWriteItems"]);
    let ann = created.person;

    let again = resolve(&*fx.store, &fx.key, &first).await.unwrap();
    assert_eq!(
        again,
        Resolved {
            person: ann.clone(),
            created: false,
            merged: vec![],
            calls: 1
        }
    );
    fx.expect_calls(&["BatchGetItem"]);

    let with_phone = identifiers_of(&ann_from_hubspot(true));
    assert_eq!(with_phone, [HUBSPOT, EMAIL, PHONE]);
    let attached = resolve(&*fx.store, &fx.key, &with_phone).await.unwrap();
    assert_eq!(
        attached,
        Resolved {
            person: ann.clone(),
            created: false,
            merged: vec![],
            calls: 2
        }
    );
    fx.expect_calls(&["BatchGetItem", "TransactWriteItems"]);
    fx.expect_points(&[HUBSPOT, EMAIL, PHONE], &ann, &[STANDARD])
        .await;
    let record = fx.person(&ann).await.unwrap();
    assert_eq!(
        (record.ids, record.version),
        (fx.ids(&[HUBSPOT, EMAIL, PHONE]), 2)
    );

    // The phone alone (a form with only a number) is Ann too.
    let by_phone = fx.resolve(&[PHONE]).await;
    assert_eq!((by_phone.person, by_phone.calls), (ann, 1));
    fx.expect_calls(&["BatchGetItem"]);
}

/// An event naming identifiers of two known persons merges the newer into the older (and
/// attaches its new identifier): find, the loser's record, the merge, the attach.
pub async fn resolve_merges_two_known_persons_into_the_older(fx: &Fixture) {
    let older = fx.resolve(&[EMAIL, HUBSPOT]).await;
    // UUIDv7 orders by millisecond; be sure the second is a later one.
    tokio::time::sleep(Duration::from_millis(3)).await;
    let newer = fx.resolve(&[PHONE, STANDARD]).await;
    assert!(older.created && newer.created);
    assert!(older.person < newer.person, "ids sort by age");
    fx.calls.as_ref().map(CallLog::take);

    // Our own app's record: its key, Ann's e-mail, and a Pipedrive id nobody has seen.
    let event = fx.resolve(&[STANDARD, EMAIL, PIPEDRIVE]).await;
    assert_eq!(
        event,
        Resolved {
            person: older.person.clone(),
            created: false,
            merged: vec![newer.person.clone()],
            calls: 4,
        }
    );
    fx.expect_calls(&[
        "BatchGetItem",
        "GetItem",
        "TransactWriteItems",
        "TransactWriteItems",
    ]);

    let all = [EMAIL, HUBSPOT, PHONE, STANDARD, PIPEDRIVE];
    fx.expect_points(&all, &older.person, &[]).await;
    assert_eq!(
        fx.person(&older.person).await,
        Some(PersonRecord {
            ids: fx.ids(&all),
            version: 3,
            merged_into: None,
        })
    );
    assert_eq!(
        fx.person(&newer.person).await.unwrap().merged_into,
        Some(older.person.clone())
    );

    // Afterwards each identifier alone is the older person, in one call.
    for id in [PHONE, STANDARD] {
        let again = fx.resolve(&[id]).await;
        assert_eq!((again.person, again.calls), (older.person.clone(), 1));
    }
}

/// 40 resolutions at once of one person, each with another part of its identifiers (as a
/// form, HubSpot, our app and a phone-only channel would send them). Afterwards every
/// identifier points at one person, which is not merged and lists them all; every other
/// person made on the way was merged (by exactly one resolution, which reported it) and
/// its `merged_into` chain ends at that person; every answer is that person or one merged
/// into it.
pub async fn concurrent_resolutions_converge_on_one_person(fx: &Fixture) {
    const TASKS: usize = 40;
    /// Extra attempts per task after a retryable error (the queue would redeliver).
    const REDELIVERIES: usize = 5;
    let subsets: [&[&str]; 10] = [
        &[EMAIL],
        &[PHONE],
        &[EMAIL, PHONE],
        &[HUBSPOT, EMAIL],
        &[STANDARD, PHONE],
        &[HUBSPOT],
        &[STANDARD, EMAIL, PHONE],
        &[PIPEDRIVE, PHONE],
        &[HUBSPOT, STANDARD],
        &[PIPEDRIVE],
    ];
    let all = [EMAIL, PHONE, HUBSPOT, STANDARD, PIPEDRIVE];
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let jittery: Arc<dyn IdentityStore> = Arc::new(Jitter {
        inner: Arc::clone(&fx.store),
        state: AtomicU64::new(0x5eed),
    });
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = Arc::clone(&jittery);
            let key = fx.key.clone();
            let barrier = Arc::clone(&barrier);
            let identifiers: Vec<String> = subsets[i % subsets.len()]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut redelivered = 0;
                loop {
                    match resolve(&*store, &key, &identifiers).await {
                        Ok(resolved) => return (resolved, redelivered),
                        Err(e) if e.is_retryable() && redelivered < REDELIVERIES => {
                            redelivered += 1;
                        }
                        Err(e) => panic!("task {i}: {e}"),
                    }
                }
            })
        })
        .collect();
    let results: Vec<(Resolved, usize)> = futures::future::try_join_all(tasks).await.unwrap();
    let backend_calls = fx.calls.as_ref().map(|c| c.take().len());

    let found = fx.find(&all).await;
    assert_eq!(found.len(), all.len(), "every identifier points somewhere");
    let persons: BTreeSet<&PersonId> = found.values().collect();
    assert_eq!(
        persons.len(),
        1,
        "all identifiers point at one person: {found:?}"
    );
    let survivor = (*persons.first().unwrap()).clone();
    let record = fx.person(&survivor).await.unwrap();
    assert_eq!(record.merged_into, None);
    assert_eq!(record.ids, fx.ids(&all));

    let created: BTreeSet<&PersonId> = results
        .iter()
        .filter(|(r, _)| r.created)
        .map(|(r, _)| &r.person)
        .collect();
    let merged: Vec<&PersonId> = results.iter().flat_map(|(r, _)| &r.merged).collect();
    let merged_set: BTreeSet<&PersonId> = merged.iter().copied().collect();
    assert_eq!(merged.len(), merged_set.len(), "a person is merged once");
    assert!(created.contains(&survivor));
    let mut losers = created.clone();
    losers.remove(&survivor);
    assert_eq!(merged_set, losers, "every other person made was merged");
    assert_eq!(
        results.iter().filter(|(r, _)| r.created).count(),
        created.len(),
        "each created person is one resolution's"
    );

    // Every person seen follows its `merged_into` chain to the survivor.
    let seen: BTreeSet<&PersonId> = results
        .iter()
        .flat_map(|(r, _)| std::iter::once(&r.person).chain(&r.merged))
        .collect();
    for person in seen {
        let mut at = person.clone();
        for _ in 0..=TASKS {
            match fx.person(&at).await.unwrap().merged_into {
                Some(next) => at = next,
                None => break,
            }
        }
        assert_eq!(at, survivor, "{person} does not lead to the survivor");
    }

    let calls: u32 = results.iter().map(|(r, _)| r.calls).sum();
    let redelivered: usize = results.iter().map(|(_, n)| n).sum();
    let answered_merged = results.iter().filter(|(r, _)| r.person != survivor).count();
    eprintln!(
        "identity: {TASKS} concurrent resolutions: {} persons created, {} merged, {calls} store \
         calls ({:.2} per resolution), {redelivered} redelivered after contention, {answered_merged} \
         answered a person merged since, backend requests {backend_calls:?}",
        created.len(),
        merged.len(),
        f64::from(calls) / TASKS as f64,
    );
    if let Some(requests) = backend_calls
        && redelivered == 0
    {
        assert_eq!(
            requests, calls as usize,
            "one backend request per store call"
        );
    }
}

/// Pauses 0–2 ms (pseudo-random) before each call of the store it wraps, so resolutions
/// over an adapter that answers at once (memory, disk) interleave as they would over a
/// network.
struct Jitter {
    inner: Arc<dyn IdentityStore>,
    state: AtomicU64,
}

impl Jitter {
    async fn pause(&self) {
        // SplitMix64 over a shared counter.
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        match z % 3 {
            0 => tokio::task::yield_now().await,
            n => tokio::time::sleep(Duration::from_millis(n)).await,
        }
    }
}

#[async_trait]
impl IdentityStore for Jitter {
    async fn find(
        &self,
        ids: &[IdentifierHash],
    ) -> Result<BTreeMap<IdentifierHash, PersonId>, StoreError> {
        self.pause().await;
        self.inner.find(ids).await
    }

    async fn person(&self, person: &PersonId) -> Result<Option<PersonRecord>, StoreError> {
        self.pause().await;
        self.inner.person(person).await
    }

    async fn attach(
        &self,
        person: &PersonId,
        ids: &[IdentifierHash],
        create: bool,
    ) -> Result<Written, StoreError> {
        self.pause().await;
        self.inner.attach(person, ids, create).await
    }

    async fn merge(
        &self,
        loser: &PersonId,
        loser_record: &PersonRecord,
        survivor: &PersonId,
    ) -> Result<Written, StoreError> {
        self.pause().await;
        self.inner.merge(loser, loser_record, survivor).await
    }
}
