//! Identity resolution's items on disk: [`IdentityStore`] for [`DiskStore`], over the
//! `identifiers` (`pk` = `idn#<hash>`, `person`) and `persons` (`pk` = `per#<person id>`,
//! `ids` a JSON list of hashes, `version`, `merged_into`) tables. Each method is one
//! SQLite transaction on the database thread: a write checks every condition before it
//! changes anything and commits only when all held, so it is all-or-nothing and nothing
//! interleaves with it. Only hashes and person ids are stored.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use relay_shared::model::PersonId;
use relay_shared::store::identity::person_pk;
use relay_shared::store::{IdentifierHash, IdentityStore, PersonRecord, StoreError, Written};

use super::store::{DiskStore, sql};

fn malformed(pk: &str, reason: &str) -> StoreError {
    StoreError::Malformed {
        pk: pk.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Where the identifier points, if anywhere.
fn pointed_at(tx: &Transaction<'_>, id: &IdentifierHash) -> Result<Option<PersonId>, StoreError> {
    let pk = id.pk();
    let person: Option<String> = tx
        .prepare_cached("SELECT person FROM identifiers WHERE pk = ?1")
        .and_then(|mut q| q.query_row([&pk], |r| r.get(0)).optional())
        .map_err(sql("find identifiers"))?;
    person
        .map(|p| PersonId::parse(&p).map_err(|_| malformed(&pk, "person is not a person id")))
        .transpose()
}

fn read_person(
    tx: &Transaction<'_>,
    person: &PersonId,
) -> Result<Option<PersonRecord>, StoreError> {
    let pk = person_pk(person);
    let row: Option<(String, i64, Option<String>)> = tx
        .query_row(
            "SELECT ids, version, merged_into FROM persons WHERE pk = ?1",
            [&pk],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql("read person"))?;
    let Some((ids, version, merged_into)) = row else {
        return Ok(None);
    };
    let ids: Vec<String> =
        serde_json::from_str(&ids).map_err(|_| malformed(&pk, "ids is not a JSON list"))?;
    let ids = ids
        .iter()
        .map(|h| {
            IdentifierHash::from_stored(h)
                .ok_or_else(|| malformed(&pk, "ids holds a value that is not a hash"))
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let version = u64::try_from(version).map_err(|_| malformed(&pk, "version is negative"))?;
    let merged_into = merged_into
        .map(|p| PersonId::parse(&p).map_err(|_| malformed(&pk, "merged_into is not a person id")))
        .transpose()?;
    Ok(Some(PersonRecord {
        ids,
        version,
        merged_into,
    }))
}

fn write_person(
    tx: &Transaction<'_>,
    person: &PersonId,
    record: &PersonRecord,
) -> Result<(), StoreError> {
    let ids: Vec<&str> = record.ids.iter().map(IdentifierHash::as_hex).collect();
    let ids = serde_json::to_string(&ids).map_err(|_| malformed("persons", "ids do not encode"))?;
    let version = i64::try_from(record.version)
        .map_err(|_| malformed(&person_pk(person), "version is out of range"))?;
    tx.execute(
        "INSERT INTO persons (pk, ids, version, merged_into) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (pk) DO UPDATE SET
             ids = excluded.ids, version = excluded.version, merged_into = excluded.merged_into",
        params![
            person_pk(person),
            ids,
            version,
            record.merged_into.as_ref().map(PersonId::as_str),
        ],
    )
    .map_err(sql("write person"))?;
    Ok(())
}

fn point(tx: &Transaction<'_>, id: &IdentifierHash, person: &PersonId) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO identifiers (pk, person) VALUES (?1, ?2)
         ON CONFLICT (pk) DO UPDATE SET person = excluded.person",
    )
    .and_then(|mut q| q.execute(params![id.pk(), person.as_str()]))
    .map_err(sql("point identifier"))?;
    Ok(())
}

#[async_trait]
impl IdentityStore for DiskStore {
    async fn find(
        &self,
        ids: &[IdentifierHash],
    ) -> Result<BTreeMap<IdentifierHash, PersonId>, StoreError> {
        let ids = ids.to_vec();
        self.db
            .read("find identifiers", move |tx| {
                let mut found = BTreeMap::new();
                for id in ids {
                    if let Some(person) = pointed_at(tx, &id)? {
                        found.insert(id, person);
                    }
                }
                Ok(found)
            })
            .await
    }

    async fn person(&self, person: &PersonId) -> Result<Option<PersonRecord>, StoreError> {
        let person = person.clone();
        self.db
            .read("read person", move |tx| read_person(tx, &person))
            .await
    }

    async fn attach(
        &self,
        person: &PersonId,
        ids: &[IdentifierHash],
        create: bool,
    ) -> Result<Written, StoreError> {
        let person = person.clone();
        let ids: BTreeSet<IdentifierHash> = ids.iter().cloned().collect();
        self.db
            .write("attach identifiers", move |tx| {
                let mut record = match (read_person(tx, &person)?, create) {
                    (None, true) => PersonRecord::default(),
                    (Some(record), false) if record.merged_into.is_none() => record,
                    _ => return Ok(Written::Conflict),
                };
                for id in &ids {
                    if pointed_at(tx, id)?.is_some() {
                        return Ok(Written::Conflict);
                    }
                }
                for id in &ids {
                    point(tx, id, &person)?;
                }
                record.ids.extend(ids);
                record.version += 1;
                write_person(tx, &person, &record)?;
                Ok(Written::Done)
            })
            .await
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
        let (loser, survivor) = (loser.clone(), survivor.clone());
        let (version, ids) = (loser_record.version, loser_record.ids.clone());
        self.db
            .write("merge persons", move |tx| {
                let Some(mut lost) = read_person(tx, &loser)?
                    .filter(|r| r.version == version && r.merged_into.is_none())
                else {
                    return Ok(Written::Conflict);
                };
                let Some(mut kept) =
                    read_person(tx, &survivor)?.filter(|r| r.merged_into.is_none())
                else {
                    return Ok(Written::Conflict);
                };
                for id in &ids {
                    if pointed_at(tx, id)?.as_ref() != Some(&loser) {
                        return Ok(Written::Conflict);
                    }
                }
                for id in &ids {
                    point(tx, id, &survivor)?;
                }
                kept.ids.extend(ids);
                kept.version += 1;
                write_person(tx, &survivor, &kept)?;
                lost.merged_into = Some(survivor.clone());
                write_person(tx, &loser, &lost)?;
                Ok(Written::Done)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeDelta;
    use relay_shared::store::identity::new_person_id;
    use relay_shared::store::{
        ClaimOutcome, Clock, IdempotencyKey, IdempotencyStore, IdentityKey, PayloadHash,
        SystemClock,
    };

    use super::*;
    use crate::disk::testing::reopen;
    use crate::disk::{Db, DiskError};

    async fn set_version(db: &Db, sql: &'static str) {
        db.write("test", move |tx| {
            tx.execute_batch(sql).map_err(DiskError::sqlite("test"))
        })
        .await
        .unwrap();
    }

    /// A data directory written before identity resolution (schema version 2) gains the
    /// two tables at the next start and keeps what it had; one that has them already (at
    /// version 2 again) keeps the identities too.
    #[tokio::test]
    async fn a_data_directory_from_before_identities_gains_the_tables_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let db = Db::open(dir.path()).unwrap();
        let store = DiskStore::new(db.clone(), Arc::clone(&clock));
        let key = IdempotencyKey::inbound("typeform", "ev-1").unwrap();
        let hash = PayloadHash::of(b"{}");
        let lease = clock.now() + TimeDelta::seconds(60);
        let claimed = store.claim(&key, &hash, lease).await.unwrap();
        assert!(matches!(claimed, ClaimOutcome::Claimed(_)));
        set_version(
            &db,
            "DROP TABLE identifiers; DROP TABLE persons; PRAGMA user_version = 2;",
        )
        .await;
        drop((store, db));

        let db = reopen(dir.path());
        let store = DiskStore::new(db.clone(), Arc::clone(&clock));
        assert!(matches!(
            store.claim(&key, &hash, lease).await.unwrap(),
            ClaimOutcome::InProgress { .. }
        ));
        let id = IdentityKey::from_bytes(&[3; 32])
            .unwrap()
            .hash("phone:+4915123456789");
        let ann = new_person_id();
        let written = store
            .attach(&ann, std::slice::from_ref(&id), true)
            .await
            .unwrap();
        assert_eq!(written, Written::Done);
        set_version(&db, "PRAGMA user_version = 2;").await;
        drop((store, db));

        let store = DiskStore::new(reopen(dir.path()), clock);
        let found = store.find(std::slice::from_ref(&id)).await.unwrap();
        assert_eq!(found.get(&id), Some(&ann));
        assert_eq!(store.person(&ann).await.unwrap().unwrap().version, 1);
    }
}
