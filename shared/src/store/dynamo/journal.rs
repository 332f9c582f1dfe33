//! The delivery log on DynamoDB, in the claim items themselves: the ingest entry is part of
//! the claim's PutItem, each delivery attempt is one UpdateItem of the item's `d` map, and
//! the GSI `recent` (partition `j_day`, the UTC day of receipt; sort `j_received`; keys
//! only, so the completion and the delivery updates do not write the index) lists recent
//! events, read with BatchGetItem. Raw requests are items `raw#<id>`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};
use chrono::{DateTime, TimeDelta, Utc};

use super::item::{self, Item, n, s};
use super::{DynamoStore, backend};
use crate::model::Vendor;
use crate::store::clock::from_epoch_ms;
use crate::store::idempotency::expiry;
use crate::store::journal::{
    DeliveryEntry, DeliveryStatus, EventEntry, EventFilter, EventJourney, Journal, MAX_LIST, RawId,
    RawRecord,
};
use crate::store::{ClaimOutcome, IdempotencyKey, PayloadHash, StoreError};

/// The GSI listing recent events.
pub const RECENT_INDEX: &str = "recent";
pub(super) const J_DAY: &str = "j_day";
pub(super) const J_RECEIVED: &str = "j_received";
pub(super) const J_EXPIRES: &str = "j_expires_at";
pub(super) const DELIVERIES: &str = "d";
const J_SOURCE: &str = "j_source";
const J_EVENT: &str = "j_event";
const J_OCCURRED: &str = "j_occurred";
const J_KIND: &str = "j_kind";
const J_CONTACT: &str = "j_contact";
const J_WARNINGS: &str = "j_warnings";
const J_VENDORS: &str = "j_vendors";
const J_RAW: &str = "j_raw";
const R_SOURCE: &str = "r_source";
const R_EVENT: &str = "r_event";
const R_RECEIVED: &str = "r_received";
const R_BODY: &str = "r_body";

/// The UTC day of `at`, the index's partition (`2026-12-02`).
fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// The journal attributes of a claim item.
pub(super) fn entry_attributes(entry: &EventEntry, expires_at: DateTime<Utc>) -> Item {
    let mut item: Item = HashMap::new();
    item.insert(J_SOURCE.into(), s(&entry.source));
    item.insert(J_EVENT.into(), s(&entry.event_id));
    item.insert(J_RECEIVED.into(), n(entry.received_at.timestamp_millis()));
    item.insert(J_OCCURRED.into(), n(entry.occurred_at.timestamp_millis()));
    item.insert(J_KIND.into(), s(&entry.kind));
    item.insert(J_CONTACT.into(), s(&entry.contact));
    item.insert(
        J_WARNINGS.into(),
        AttributeValue::L(entry.warnings.iter().map(s).collect()),
    );
    item.insert(
        J_VENDORS.into(),
        AttributeValue::L(entry.vendors.iter().map(|v| s(v.as_str())).collect()),
    );
    if let Some(raw) = &entry.raw {
        item.insert(J_RAW.into(), s(raw.as_str()));
    }
    item.insert(J_EXPIRES.into(), n(expires_at.timestamp()));
    item.insert(J_DAY.into(), s(day(entry.received_at)));
    item.insert(DELIVERIES.into(), AttributeValue::M(HashMap::new()));
    item
}

fn delivery_attribute(entry: &DeliveryEntry) -> AttributeValue {
    let mut m: Item = HashMap::new();
    m.insert("st".into(), s(entry.status.as_str()));
    if let Some(reason) = &entry.reason {
        m.insert("rs".into(), s(reason));
    }
    if let Some(next) = entry.next_attempt_at {
        m.insert("nx".into(), n(next.timestamp_millis()));
    }
    if let Some(id) = &entry.vendor_id {
        m.insert("vid".into(), s(id));
    }
    m.insert("att".into(), n(i64::from(entry.attempts)));
    m.insert("calls".into(), n(i64::from(entry.calls)));
    m.insert(
        "lat".into(),
        n(i64::try_from(entry.latency_ms).unwrap_or(i64::MAX)),
    );
    m.insert("at".into(), n(entry.at.timestamp_millis()));
    AttributeValue::M(m)
}

/// A delivery attempt's record: one entry of the event item's `d` map, per vendor.
const DELIVERY_UPDATE: &str = "SET #d.#v = :e";
/// Only while the event is in the log, and never over a newer attempt's record.
const DELIVERY_CONDITION: &str = "attribute_exists(#d) AND #exp > :now_s \
     AND (attribute_not_exists(#d.#v) OR #d.#v.#at <= :at)";

fn delivery_parts(
    vendor: Vendor,
    entry: &DeliveryEntry,
    now: DateTime<Utc>,
) -> (HashMap<String, String>, Item) {
    let names = [
        ("#d", DELIVERIES),
        ("#v", vendor.as_str()),
        ("#exp", item::EXPIRES_AT),
        ("#at", "at"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let values = [
        (":e".to_owned(), delivery_attribute(entry)),
        (":now_s".to_owned(), n(now.timestamp())),
        (":at".to_owned(), n(entry.at.timestamp_millis())),
    ]
    .into_iter()
    .collect();
    (names, values)
}

/// The record of `log` as an update for a transaction (with a link's commit).
pub(super) fn delivery_update(
    table: &str,
    log: &crate::store::LogRecord<'_>,
    now: DateTime<Utc>,
) -> Result<aws_sdk_dynamodb::types::Update, StoreError> {
    let (names, values) = delivery_parts(log.vendor, log.entry, now);
    aws_sdk_dynamodb::types::Update::builder()
        .table_name(table)
        .set_key(Some(item::key(log.event.as_str())))
        .update_expression(DELIVERY_UPDATE)
        .condition_expression(DELIVERY_CONDITION)
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(backend("TransactWriteItems"))
}

fn malformed(pk: &str, reason: &str) -> StoreError {
    StoreError::Malformed {
        pk: pk.to_owned(),
        reason: reason.to_owned(),
    }
}

fn get_s<'a>(item: &'a Item, pk: &str, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(malformed(pk, &format!("{name} is not a string"))),
    }
}

fn get_n(item: &Item, pk: &str, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| malformed(pk, &format!("{name} is not an integer"))),
        _ => Err(malformed(pk, &format!("{name} is not a number"))),
    }
}

fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn opt_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn strings(item: &Item, name: &str) -> Vec<String> {
    match item.get(name) {
        Some(AttributeValue::L(list)) => {
            list.iter().filter_map(|v| v.as_s().ok().cloned()).collect()
        }
        _ => Vec::new(),
    }
}

/// Reads a claim item's journey; `None` when it holds no (live) entry.
fn journey(item: &Item, now: DateTime<Utc>) -> Result<Option<EventJourney>, StoreError> {
    let pk = opt_s(item, item::PK).unwrap_or_default();
    if !item.contains_key(J_DAY) || !item.contains_key(J_SOURCE) {
        return Ok(None);
    }
    let expires_s = get_n(item, &pk, item::EXPIRES_AT)?;
    if expires_s <= now.timestamp() {
        return Ok(None);
    }
    let vendors = strings(item, J_VENDORS)
        .iter()
        .map(|v| v.parse::<Vendor>().map_err(|e| malformed(&pk, &e)))
        .collect::<Result<Vec<_>, _>>()?;
    let event = EventEntry {
        source: get_s(item, &pk, J_SOURCE)?.to_owned(),
        event_id: get_s(item, &pk, J_EVENT)?.to_owned(),
        received_at: from_epoch_ms(get_n(item, &pk, J_RECEIVED)?),
        occurred_at: from_epoch_ms(get_n(item, &pk, J_OCCURRED)?),
        kind: get_s(item, &pk, J_KIND)?.to_owned(),
        contact: get_s(item, &pk, J_CONTACT)?.to_owned(),
        warnings: strings(item, J_WARNINGS),
        vendors,
        raw: opt_s(item, J_RAW).as_deref().and_then(RawId::parse),
    };
    let mut deliveries = BTreeMap::new();
    if let Some(AttributeValue::M(map)) = item.get(DELIVERIES) {
        for (vendor, value) in map {
            let vendor: Vendor = vendor.parse().map_err(|e: String| malformed(&pk, &e))?;
            let AttributeValue::M(d) = value else {
                return Err(malformed(&pk, "a delivery is not a map"));
            };
            let status: DeliveryStatus = get_s(d, &pk, "st")?
                .parse()
                .map_err(|e: String| malformed(&pk, &e))?;
            deliveries.insert(
                vendor,
                DeliveryEntry {
                    status,
                    reason: opt_s(d, "rs"),
                    next_attempt_at: opt_n(d, "nx").map(from_epoch_ms),
                    vendor_id: opt_s(d, "vid"),
                    attempts: u32::try_from(get_n(d, &pk, "att")?).unwrap_or(u32::MAX),
                    calls: u32::try_from(get_n(d, &pk, "calls")?).unwrap_or(u32::MAX),
                    latency_ms: u64::try_from(get_n(d, &pk, "lat")?).unwrap_or(0),
                    at: from_epoch_ms(get_n(d, &pk, "at")?),
                },
            );
        }
    }
    Ok(Some(EventJourney {
        event,
        deliveries,
        expires_at: DateTime::from_timestamp(expires_s, 0).unwrap_or(now),
    }))
}

impl DynamoStore {
    /// The items of `keys` (at most 100 per call; unprocessed keys are asked for again).
    async fn batch_get(&self, mut keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut rounds = 0;
        while !keys.is_empty() {
            let chunk: Vec<Item> = keys.drain(..keys.len().min(100)).collect();
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk))
                .build()
                .map_err(backend("BatchGetItem"))?;
            let got = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(backend("BatchGetItem"))?;
            if let Some(items) = got.responses().and_then(|r| r.get(&self.table)) {
                out.extend(items.iter().cloned());
            }
            if let Some(left) = got
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .map(|k| k.keys().to_vec())
                .filter(|k| !k.is_empty())
            {
                rounds += 1;
                if rounds > 10 {
                    return Err(StoreError::Malformed {
                        pk: self.table.clone(),
                        reason: "BatchGetItem kept answering unprocessed keys".into(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 * rounds)).await;
                keys.extend(left);
            }
        }
        Ok(out)
    }
}

impl DynamoStore {
    /// How long a claim is kept, and the attributes it carries besides the claim: with a
    /// log entry, the entry and the log's retention (from the lease's end); without, none
    /// and the claims' own retention.
    pub(super) fn claim_extra(
        &self,
        entry: Option<&EventEntry>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> (TimeDelta, Item) {
        match entry {
            Some(entry) => {
                let retention = self.retention.max(self.journal_ttl);
                let expires_at = expiry(now.max(lease_until), retention);
                (retention, entry_attributes(entry, expires_at))
            }
            None => (self.retention, Item::new()),
        }
    }
}

#[async_trait]
impl Journal for DynamoStore {
    async fn claim_recorded(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
        entry: &EventEntry,
    ) -> Result<ClaimOutcome, StoreError> {
        let (retention, extra) = self.claim_extra(Some(entry), self.clock.now(), lease_until);
        self.put_claim(key, payload_hash, lease_until, retention, extra)
            .await
    }

    async fn record_delivery(
        &self,
        key: &IdempotencyKey,
        vendor: Vendor,
        entry: &DeliveryEntry,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let (names, values) = delivery_parts(vendor, entry, now);
        let sent = super::conflict_retry(|| {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(item::key(key.as_str())))
                .update_expression(DELIVERY_UPDATE)
                .condition_expression(DELIVERY_CONDITION)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
        })
        .await;
        match sent {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(e),
                ) => {
                    // Logged, but a newer attempt is already recorded: still an entry.
                    let logged = e.item().is_some_and(|old| {
                        old.contains_key(DELIVERIES)
                            && opt_n(old, item::EXPIRES_AT).is_some_and(|x| x > now.timestamp())
                    });
                    Ok(logged)
                }
                _ => Err(backend("UpdateItem")(err)),
            },
        }
    }

    async fn event(&self, key: &IdempotencyKey) -> Result<Option<EventJourney>, StoreError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item::key(key.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend("GetItem"))?;
        match got.item() {
            Some(item) => journey(item, self.clock.now()),
            None => Ok(None),
        }
    }

    async fn recent(&self, filter: &EventFilter) -> Result<Vec<EventJourney>, StoreError> {
        let now = self.clock.now();
        let limit = filter.limit.min(MAX_LIST);
        let mut found = Vec::new();
        // Newest day first; no further back than the log is kept.
        let oldest = filter
            .since
            .max(now - self.journal_ttl.max(self.retention) - TimeDelta::days(1));
        let mut at = now;
        while found.len() < limit && day(at) >= day(oldest) {
            let mut start: Option<Item> = None;
            let mut day_found = Vec::new();
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(RECENT_INDEX)
                    .key_condition_expression("#day = :day AND #rcv >= :since")
                    .expression_attribute_names("#day", J_DAY)
                    .expression_attribute_names("#rcv", J_RECEIVED)
                    .expression_attribute_values(":day", s(day(at)))
                    .expression_attribute_values(":since", n(filter.since.timestamp_millis()))
                    .scan_index_forward(false)
                    .limit(100)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(backend("Query"))?;
                let keys: Vec<Item> = page
                    .items()
                    .iter()
                    .filter_map(|k| k.get(item::PK).cloned())
                    .map(|pk| HashMap::from([(item::PK.to_owned(), pk)]))
                    .collect();
                for item in self.batch_get(keys).await? {
                    if let Some(j) = journey(&item, now)?
                        && j.matches(filter)
                    {
                        day_found.push(j);
                    }
                }
                match page.last_evaluated_key() {
                    Some(key) if found.len() + day_found.len() < limit => {
                        start = Some(key.clone());
                    }
                    _ => break,
                }
            }
            // BatchGetItem answers in any order: newest first again.
            day_found.sort_by(|a, b| {
                (b.event.received_at, &b.event.source, &b.event.event_id).cmp(&(
                    a.event.received_at,
                    &a.event.source,
                    &a.event.event_id,
                ))
            });
            found.extend(day_found.into_iter().take(limit - found.len()));
            at -= TimeDelta::days(1);
        }
        Ok(found)
    }

    async fn put_raw(&self, raw: &RawRecord) -> Result<(), StoreError> {
        let mut item = item::key(&raw.id.pk());
        item.insert(R_SOURCE.into(), s(&raw.source));
        item.insert(R_EVENT.into(), s(&raw.fallback_event_id));
        item.insert(R_RECEIVED.into(), n(raw.received_at.timestamp_millis()));
        item.insert(
            R_BODY.into(),
            AttributeValue::B(Blob::new(raw.sealed.clone())),
        );
        item.insert(item::EXPIRES_AT.into(), n(raw.expires_at.timestamp()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend("PutItem"))?;
        Ok(())
    }

    async fn raw(&self, id: &RawId) -> Result<Option<RawRecord>, StoreError> {
        let pk = id.pk();
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item::key(&pk)))
            .send()
            .await
            .map_err(backend("GetItem"))?;
        let Some(item) = got.item() else {
            return Ok(None);
        };
        let expires_s = get_n(item, &pk, item::EXPIRES_AT)?;
        if expires_s <= self.clock.now().timestamp() {
            return Ok(None);
        }
        let sealed = match item.get(R_BODY) {
            Some(AttributeValue::B(b)) => b.as_ref().to_vec(),
            _ => return Err(malformed(&pk, "r_body is not binary")),
        };
        Ok(Some(RawRecord {
            id: id.clone(),
            source: get_s(item, &pk, R_SOURCE)?.to_owned(),
            fallback_event_id: get_s(item, &pk, R_EVENT)?.to_owned(),
            received_at: from_epoch_ms(get_n(item, &pk, R_RECEIVED)?),
            sealed,
            expires_at: DateTime::from_timestamp(expires_s, 0).unwrap_or_default(),
        }))
    }
}
