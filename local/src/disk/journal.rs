//! The delivery log on disk: [`Journal`] for [`DiskStore`], over the `journal` and
//! `raw_requests` tables — the same rules as the memory and DynamoDB adapters (the
//! conformance suite `relay_tests::journal_conformance` runs against it).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use relay_shared::store::idempotency::expiry;
use relay_shared::store::journal::MAX_LIST;
use relay_shared::store::{
    ClaimOutcome, DeliveryEntry, EventEntry, EventFilter, EventJourney, IdempotencyKey, Journal,
    PayloadHash, RawId, RawRecord, StoreError,
};
use relay_shared::vendors::Vendor;

use super::from_ms;
use super::store::{DiskStore, claim_in, sql};

fn json_error(pk: &str, e: &serde_json::Error) -> StoreError {
    StoreError::Malformed {
        pk: pk.to_owned(),
        reason: e.to_string(),
    }
}

fn read_journey(
    tx: &Transaction<'_>,
    pk: &str,
    now: DateTime<Utc>,
) -> Result<Option<EventJourney>, StoreError> {
    let row: Option<(String, String, i64)> = tx
        .query_row(
            "SELECT entry, deliveries, expires_at FROM journal WHERE pk = ?1 AND expires_at > ?2",
            params![pk, now.timestamp()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql("read journal"))?;
    row.map(|(entry, deliveries, expires_at)| journey(pk, &entry, &deliveries, expires_at))
        .transpose()
}

fn journey(
    pk: &str,
    entry: &str,
    deliveries: &str,
    expires_at: i64,
) -> Result<EventJourney, StoreError> {
    Ok(EventJourney {
        event: serde_json::from_str(entry).map_err(|e| json_error(pk, &e))?,
        deliveries: serde_json::from_str(deliveries).map_err(|e| json_error(pk, &e))?,
        expires_at: DateTime::from_timestamp(expires_at, 0).unwrap_or(DateTime::UNIX_EPOCH),
    })
}

#[async_trait]
impl Journal for DiskStore {
    async fn claim_recorded(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
        entry: &EventEntry,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = self.clock.now();
        let lifetime = self.retention.max(self.journal_ttl);
        let (key, payload_hash) = (key.clone(), *payload_hash);
        let text = serde_json::to_string(entry).map_err(|e| json_error(key.as_str(), &e))?;
        let received_at = entry.received_at.timestamp_millis();
        self.db
            .write("claim recorded", move |tx| {
                let outcome = claim_in(tx, &key, &payload_hash, lease_until, now, lifetime)?;
                if matches!(outcome, ClaimOutcome::Claimed(_)) {
                    tx.execute(
                        "INSERT INTO journal (pk, entry, deliveries, received_at, expires_at)
                         VALUES (?1, ?2, '{}', ?3, ?4)
                         ON CONFLICT (pk) DO UPDATE SET entry = excluded.entry,
                             deliveries = '{}', received_at = excluded.received_at,
                             expires_at = excluded.expires_at",
                        params![
                            key.as_str(),
                            text,
                            received_at,
                            // As the claim's own expiry: from the end of its lease.
                            expiry(now.max(lease_until), lifetime).timestamp()
                        ],
                    )
                    .map_err(sql("claim recorded"))?;
                }
                Ok(outcome)
            })
            .await
    }

    async fn record_delivery(
        &self,
        key: &IdempotencyKey,
        vendor: Vendor,
        entry: &DeliveryEntry,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let (pk, entry) = (key.as_str().to_owned(), entry.clone());
        self.db
            .write("record delivery", move |tx| {
                let Some(mut journey) = read_journey(tx, &pk, now)? else {
                    return Ok(false);
                };
                // An attempt older than the one recorded (a slow instance) is ignored.
                let newer = journey
                    .deliveries
                    .get(&vendor)
                    .is_none_or(|old| old.at <= entry.at);
                if newer {
                    journey.deliveries.insert(vendor, entry);
                    let text = serde_json::to_string(&journey.deliveries)
                        .map_err(|e| json_error(&pk, &e))?;
                    tx.execute(
                        "UPDATE journal SET deliveries = ?2 WHERE pk = ?1",
                        params![pk, text],
                    )
                    .map_err(sql("record delivery"))?;
                }
                Ok(true)
            })
            .await
    }

    async fn event(&self, key: &IdempotencyKey) -> Result<Option<EventJourney>, StoreError> {
        let now = self.clock.now();
        let pk = key.as_str().to_owned();
        self.db
            .read("read event", move |tx| read_journey(tx, &pk, now))
            .await
    }

    async fn recent(&self, filter: &EventFilter) -> Result<Vec<EventJourney>, StoreError> {
        let now = self.clock.now();
        let filter = filter.clone();
        self.db
            .read("recent events", move |tx| {
                let mut stmt = tx
                    .prepare(
                        "SELECT pk, entry, deliveries, expires_at FROM journal
                         WHERE received_at >= ?1 AND expires_at > ?2
                         ORDER BY received_at DESC",
                    )
                    .map_err(sql("recent events"))?;
                let rows = stmt
                    .query_map(
                        params![filter.since.timestamp_millis(), now.timestamp()],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, i64>(3)?,
                            ))
                        },
                    )
                    .map_err(sql("recent events"))?;
                let mut found = Vec::new();
                for row in rows {
                    let (pk, entry, deliveries, expires_at) = row.map_err(sql("recent events"))?;
                    let j = journey(&pk, &entry, &deliveries, expires_at)?;
                    if j.matches(&filter) {
                        found.push(j);
                    }
                }
                found.sort_by(|a, b| {
                    (b.event.received_at, &b.event.source, &b.event.event_id).cmp(&(
                        a.event.received_at,
                        &a.event.source,
                        &a.event.event_id,
                    ))
                });
                found.truncate(filter.limit.min(MAX_LIST));
                Ok(found)
            })
            .await
    }

    async fn put_raw(&self, raw: &RawRecord) -> Result<(), StoreError> {
        let raw = raw.clone();
        self.db
            .write("put raw", move |tx| {
                tx.execute(
                    "INSERT INTO raw_requests (pk, source, fallback_event_id, received_at, sealed, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (pk) DO UPDATE SET source = excluded.source,
                         fallback_event_id = excluded.fallback_event_id,
                         received_at = excluded.received_at, sealed = excluded.sealed,
                         expires_at = excluded.expires_at",
                    params![
                        raw.id.as_str(),
                        raw.source,
                        raw.fallback_event_id,
                        raw.received_at.timestamp_millis(),
                        raw.sealed,
                        raw.expires_at.timestamp()
                    ],
                )
                .map_err(sql("put raw"))?;
                Ok(())
            })
            .await
    }

    async fn raw(&self, id: &RawId) -> Result<Option<RawRecord>, StoreError> {
        let now = self.clock.now();
        let id = id.clone();
        self.db
            .read("read raw", move |tx| {
                let row: Option<(String, String, i64, Vec<u8>, i64)> = tx
                    .query_row(
                        "SELECT source, fallback_event_id, received_at, sealed, expires_at
                         FROM raw_requests WHERE pk = ?1 AND expires_at > ?2",
                        params![id.as_str(), now.timestamp()],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                    )
                    .optional()
                    .map_err(sql("read raw"))?;
                Ok(row.map(
                    |(source, fallback_event_id, received_at, sealed, expires_at)| RawRecord {
                        id: id.clone(),
                        source,
                        fallback_event_id,
                        received_at: from_ms(received_at),
                        sealed,
                        expires_at: DateTime::from_timestamp(expires_at, 0)
                            .unwrap_or(DateTime::UNIX_EPOCH),
                    },
                ))
            })
            .await
    }
}
