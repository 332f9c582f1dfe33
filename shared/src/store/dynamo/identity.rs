//! Identity items on DynamoDB (see [`identity`](crate::store::identity)): `idn#<hash>`
//! items with `person` (S), `per#<person id>` items with `ids` (SS of hashes), `version`
//! (N) and, once merged, `merged_into` (S). Only hashes and person ids are stored.
//!
//! Calls: `find` one BatchGetItem per 100 identifiers (ConsistentRead; keys DynamoDB
//! leaves unprocessed are asked for again, a few times, after a short pause), `person`
//! one GetItem (ConsistentRead), `attach` and `merge` one TransactWriteItems each, whose
//! failed condition (`ConditionalCheckFailed`, or `TransactionConflict` with another
//! transaction on the same items) is [`Written::Conflict`]: a cancelled transaction wrote
//! nothing. Each transaction carries a fresh `ClientRequestToken`, so an SDK retry of one
//! that did succeed answers success instead of a failed condition. `claim_with_person` is
//! one TransactWriteItems too, with the event's claim in it (ingest's single write).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::item::{self, Item, s};
use super::{DynamoStore, backend};
use crate::model::PersonId;
use crate::store::StoreError;
use crate::store::identity::{
    ClaimedWithPerson, IdentifierHash, IdentityStore, PersonClaim, PersonGuess, PersonRecord,
    Written, person_pk,
};

/// `idn#…`: the person the identifier points at.
const PERSON: &str = "person";
/// `per#…`: the identifier hashes pointing at the person (SS; a list of S is read too).
const IDS: &str = "ids";
/// `per#…`: bumped by every change to `ids`.
const VERSION: &str = "version";
/// `per#…`: the person this one was merged into.
const MERGED_INTO: &str = "merged_into";

/// Keys per BatchGetItem (DynamoDB's limit).
const BATCH_GET_LIMIT: usize = 100;
/// Items per TransactWriteItems (DynamoDB's limit).
const TRANSACTION_LIMIT: usize = 100;
/// BatchGetItem calls per chunk before unprocessed keys are an error.
const BATCH_GET_ATTEMPTS: u32 = 5;
/// The first pause before asking again for unprocessed keys (doubled each time).
const UNPROCESSED_BACKOFF: Duration = Duration::from_millis(20);

/// DynamoDB kept leaving keys unprocessed (throttling).
#[derive(Debug, thiserror::Error)]
#[error("{keys} identifier keys were still unprocessed after {BATCH_GET_ATTEMPTS} attempts")]
struct StillUnprocessed {
    keys: usize,
}

#[async_trait]
impl IdentityStore for DynamoStore {
    /// One TransactWriteItems: the claim's Put (its usual condition) and, for a new
    /// person, a Put per identifier (`attribute_not_exists`) and the person's item, or for
    /// a known one a ConditionCheck per identifier (`person = :p`); every condition returns
    /// the item it failed on. Cancelled, its reasons say what the write met — the claim's
    /// standing and where the known identifiers point — so ingest reads nothing again.
    async fn claim_with_person(
        &self,
        claim: &PersonClaim<'_>,
    ) -> Result<Option<ClaimedWithPerson>, StoreError> {
        if claim.ids.is_empty() || claim.ids.len() + 2 > TRANSACTION_LIMIT {
            return Ok(Some(ClaimedWithPerson::Conflict));
        }
        let now = self.clock.now();
        let (retention, extra) = self.claim_extra(claim.entry, now, claim.lease_until);
        let (taken, claim_put) = self.claim_put(
            claim.key,
            claim.payload_hash,
            claim.lease_until,
            now,
            retention,
            extra,
        )?;
        let mut writes = Vec::with_capacity(claim.ids.len() + 2);
        writes.push(TransactWriteItem::builder().put(claim_put).build());
        let person_value = s(claim.person.as_str());
        for id in claim.ids {
            let write = match claim.guess {
                PersonGuess::New => self.new_identifier(id, claim.person)?,
                PersonGuess::Known => {
                    let check = ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(item::key(&id.pk())))
                        .condition_expression("#person = :person")
                        .expression_attribute_names("#person", PERSON)
                        .expression_attribute_values(":person", person_value.clone())
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build()
                        .map_err(backend("TransactWriteItems"))?;
                    TransactWriteItem::builder().condition_check(check).build()
                }
            };
            writes.push(write);
        }
        if claim.guess == PersonGuess::New {
            writes.push(self.person_update(claim.person, claim.ids.iter(), true)?);
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(Some(ClaimedWithPerson::Claimed(taken))),
            Err(err) => err,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        else {
            return Err(backend("TransactWriteItems")(err));
        };
        let reasons = cancelled.cancellation_reasons();
        if reasons.len() != claim.ids.len() + 1 + usize::from(claim.guess == PersonGuess::New) {
            return Ok(Some(ClaimedWithPerson::Conflict));
        }
        let mut known = BTreeMap::new();
        let mut standing = None;
        let mut failed_any = false;
        for (i, reason) in reasons.iter().enumerate() {
            let failed = match reason.code() {
                None | Some("None") => false,
                Some("ConditionalCheckFailed") => true,
                // A conflicting transaction, throttling, …: nothing learnt.
                Some(_) => return Ok(Some(ClaimedWithPerson::Conflict)),
            };
            failed_any |= failed;
            let id = claim.ids.get(i.wrapping_sub(1)).filter(|_| i > 0);
            match (i, id, failed, reason.item()) {
                (0, _, false, _) => {}
                (0, _, true, Some(old)) => {
                    standing = Some(super::idempotency::standing(
                        claim.key,
                        Some(old),
                        claim.payload_hash,
                        now,
                    )?);
                }
                // A failed condition without its item: nothing learnt.
                (0, _, true, None) => return Ok(Some(ClaimedWithPerson::Conflict)),
                // A checked identifier that held points to the guessed person.
                (_, Some(id), false, _) if claim.guess == PersonGuess::Known => {
                    known.insert(id.clone(), claim.person.clone());
                }
                (_, Some(_), false, _) => {}
                (_, Some(_), true, Some(old)) => {
                    let (id, person) = identifier(old)?;
                    known.insert(id, person);
                }
                // A checked identifier that does not exist: unknown.
                (_, Some(_), true, None) if claim.guess == PersonGuess::Known => {}
                // The new person's own item, or a failure without its item: a race.
                (_, _, true, _) => return Ok(Some(ClaimedWithPerson::Conflict)),
                (_, None, false, _) => {}
            }
        }
        if !failed_any {
            // Cancelled, yet no condition failed: nothing learnt.
            return Ok(Some(ClaimedWithPerson::Conflict));
        }
        Ok(Some(ClaimedWithPerson::Refused {
            claim: standing,
            known,
        }))
    }

    async fn find(
        &self,
        ids: &[IdentifierHash],
    ) -> Result<BTreeMap<IdentifierHash, PersonId>, StoreError> {
        let ids: BTreeSet<&IdentifierHash> = ids.iter().collect();
        let ids: Vec<&IdentifierHash> = ids.into_iter().collect();
        let mut found = BTreeMap::new();
        for chunk in ids.chunks(BATCH_GET_LIMIT) {
            let mut keys: Vec<Item> = chunk.iter().map(|id| item::key(&id.pk())).collect();
            let mut attempt = 0;
            while !keys.is_empty() {
                if attempt == BATCH_GET_ATTEMPTS {
                    return Err(backend("BatchGetItem")(StillUnprocessed {
                        keys: keys.len(),
                    }));
                }
                if attempt > 0 {
                    tokio::time::sleep(UNPROCESSED_BACKOFF * 2u32.pow(attempt - 1)).await;
                }
                attempt += 1;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .projection_expression("#pk, #person")
                    .expression_attribute_names("#pk", item::PK)
                    .expression_attribute_names("#person", PERSON)
                    .build()
                    .map_err(backend("BatchGetItem"))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(backend("BatchGetItem"))?;
                for found_item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let (id, person) = identifier(found_item)?;
                    found.insert(id, person);
                }
                if let Some(left) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    keys = left.keys().to_vec();
                }
            }
        }
        Ok(found)
    }

    async fn person(&self, person: &PersonId) -> Result<Option<PersonRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item::key(&person_pk(person))))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend("GetItem"))?;
        out.item().map(person_record).transpose()
    }

    async fn attach(
        &self,
        person: &PersonId,
        ids: &[IdentifierHash],
        create: bool,
    ) -> Result<Written, StoreError> {
        let ids: BTreeSet<&IdentifierHash> = ids.iter().collect();
        if ids.len() + 1 > TRANSACTION_LIMIT {
            return Err(StoreError::InvalidKey(
                "at most 99 identifiers can be attached in one write",
            ));
        }
        let mut writes = Vec::with_capacity(ids.len() + 1);
        for id in &ids {
            writes.push(self.new_identifier(id, person)?);
        }
        writes.push(self.person_update(person, ids.iter().copied(), create)?);
        self.transact(writes).await
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
        if loser_record.ids.len() + 2 > TRANSACTION_LIMIT {
            return Err(StoreError::InvalidKey(
                "a person with more than 98 identifiers cannot be merged in one write",
            ));
        }
        let loser_value = s(loser.as_str());
        let survivor_value = s(survivor.as_str());
        let mut writes = Vec::with_capacity(loser_record.ids.len() + 2);
        for id in &loser_record.ids {
            let repoint = Update::builder()
                .table_name(&self.table)
                .set_key(Some(item::key(&id.pk())))
                .update_expression("SET #person = :survivor")
                .condition_expression("#person = :loser")
                .expression_attribute_names("#person", PERSON)
                .expression_attribute_values(":survivor", survivor_value.clone())
                .expression_attribute_values(":loser", loser_value.clone())
                .build()
                .map_err(backend("TransactWriteItems"))?;
            writes.push(TransactWriteItem::builder().update(repoint).build());
        }
        let mark = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item::key(&person_pk(loser))))
            .update_expression("SET #merged = :survivor")
            .condition_expression("#version = :version AND attribute_not_exists(#merged)")
            .expression_attribute_names("#merged", MERGED_INTO)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":survivor", survivor_value)
            .expression_attribute_values(":version", version_value(loser_record.version))
            .build()
            .map_err(backend("TransactWriteItems"))?;
        writes.push(TransactWriteItem::builder().update(mark).build());
        let grow = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item::key(&person_pk(survivor))))
            .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#merged)")
            .expression_attribute_names("#pk", item::PK)
            .expression_attribute_names("#merged", MERGED_INTO)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":one", item::n(1));
        let grow = add_ids(grow, loser_record.ids.iter())
            .build()
            .map_err(backend("TransactWriteItems"))?;
        writes.push(TransactWriteItem::builder().update(grow).build());
        self.transact(writes).await
    }
}

impl DynamoStore {
    /// A new identifier item pointing at `person`, only if the identifier is unknown
    /// (`attribute_not_exists`); a failure returns the item that exists.
    fn new_identifier(
        &self,
        id: &IdentifierHash,
        person: &PersonId,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut new = item::key(&id.pk());
        new.insert(PERSON.into(), s(person.as_str()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(new))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", item::PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(backend("TransactWriteItems"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The person's item gaining `ids` (`version` bumped): created when `create` (it must
    /// not exist yet), else it must exist and not be merged.
    fn person_update<'a>(
        &self,
        person: &PersonId,
        ids: impl Iterator<Item = &'a IdentifierHash>,
        create: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let condition = if create {
            "attribute_not_exists(#pk)"
        } else {
            "attribute_exists(#pk) AND attribute_not_exists(#merged)"
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item::key(&person_pk(person))))
            .condition_expression(condition)
            .expression_attribute_names("#pk", item::PK)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":one", item::n(1));
        if !create {
            update = update.expression_attribute_names("#merged", MERGED_INTO);
        }
        let update = add_ids(update, ids)
            .build()
            .map_err(backend("TransactWriteItems"))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// One TransactWriteItems; a cancelled one whose reasons name a failed condition or a
    /// conflicting transaction is [`Written::Conflict`].
    async fn transact(&self, writes: Vec<TransactWriteItem>) -> Result<Written, StoreError> {
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Written::Done),
            Err(err) => {
                let lost_race = match err.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                        e.cancellation_reasons().iter().any(|r| {
                            matches!(
                                r.code(),
                                Some("ConditionalCheckFailed" | "TransactionConflict")
                            )
                        })
                    }
                    _ => false,
                };
                if lost_race {
                    Ok(Written::Conflict)
                } else {
                    Err(backend("TransactWriteItems")(err))
                }
            }
        }
    }
}

/// `ADD version 1` and, when there are any, `ADD ids <the hashes>` (`:one` must be bound).
fn add_ids<'a>(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    ids: impl Iterator<Item = &'a IdentifierHash>,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    let ids: Vec<String> = ids.map(|id| id.as_hex().to_owned()).collect();
    if ids.is_empty() {
        update.update_expression("ADD #version :one")
    } else {
        update
            .update_expression("ADD #version :one, #ids :ids")
            .expression_attribute_names("#ids", IDS)
            .expression_attribute_values(":ids", AttributeValue::Ss(ids))
    }
}

fn version_value(version: u64) -> AttributeValue {
    AttributeValue::N(version.to_string())
}

fn malformed(item: &Item, reason: &str) -> StoreError {
    StoreError::Malformed {
        pk: item
            .get(item::PK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default(),
        reason: reason.to_owned(),
    }
}

/// Reads an `idn#…` item.
fn identifier(found: &Item) -> Result<(IdentifierHash, PersonId), StoreError> {
    let id = found
        .get(item::PK)
        .and_then(|v| v.as_s().ok())
        .and_then(|pk| pk.strip_prefix("idn#"))
        .and_then(IdentifierHash::from_stored)
        .ok_or_else(|| malformed(found, "pk is not idn#<identifier hash>"))?;
    let person = found
        .get(PERSON)
        .and_then(|v| v.as_s().ok())
        .and_then(|p| PersonId::parse(p).ok())
        .ok_or_else(|| malformed(found, "person is not a person id"))?;
    Ok((id, person))
}

/// Reads a `per#…` item.
fn person_record(found: &Item) -> Result<PersonRecord, StoreError> {
    let hashes: Vec<&String> = match found.get(IDS) {
        None => Vec::new(),
        Some(AttributeValue::Ss(set)) => set.iter().collect(),
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| {
                v.as_s()
                    .map_err(|_| malformed(found, "ids holds a non-string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed(found, "ids is not a string set or list")),
    };
    let ids = hashes
        .into_iter()
        .map(|h| {
            IdentifierHash::from_stored(h)
                .ok_or_else(|| malformed(found, "ids holds a value that is not a hash"))
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let version = match found.get(VERSION) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| malformed(found, "version is not a whole number"))?,
        _ => return Err(malformed(found, "version is missing or not a number")),
    };
    let merged_into = match found.get(MERGED_INTO) {
        None => None,
        Some(v) => Some(
            v.as_s()
                .ok()
                .and_then(|p| PersonId::parse(p).ok())
                .ok_or_else(|| malformed(found, "merged_into is not a person id"))?,
        ),
    };
    Ok(PersonRecord {
        ids,
        version,
        merged_into,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_items_read_from_a_set_or_a_list_and_bad_ones_are_named() {
        let h = IdentifierHash::from_stored(&"ab".repeat(32)).unwrap();
        let mut found = item::key("per#p0190a1b2c3d4e5f60718293a4b5c6d7e");
        found.insert(VERSION.into(), item::n(3));
        found.insert(IDS.into(), AttributeValue::Ss(vec!["ab".repeat(32)]));
        let record = person_record(&found).unwrap();
        assert_eq!(record.ids, [h.clone()].into_iter().collect());
        assert_eq!((record.version, record.merged_into), (3, None));
        found.insert(IDS.into(), AttributeValue::L(vec![s("ab".repeat(32))]));
        assert_eq!(person_record(&found).unwrap().ids.len(), 1);

        found.insert(MERGED_INTO.into(), s("ann@example.com"));
        let err = person_record(&found).unwrap_err().to_string();
        assert!(err.contains("merged_into is not a person id"), "{err}");
        assert!(!err.contains("ann@"), "{err}");

        let mut idn = item::key(&h.pk());
        idn.insert(PERSON.into(), s("p0190a1b2c3d4e5f60718293a4b5c6d7e"));
        assert_eq!(identifier(&idn).unwrap().0, h);
        idn.insert(PERSON.into(), s("nobody"));
        assert!(identifier(&idn).is_err());
    }
}
