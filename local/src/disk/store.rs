//! Claims, links and rate limiters in the SQLite file, with the rules every store adapter
//! shares: `ClaimRecord::blocks` for claims, the link lease's "applied / busy / ours"
//! order, `GcraParams::decide_within` for the limiter. Each operation is one transaction on
//! the database thread, so a conditional write's read and write cannot interleave with
//! another's (64 concurrent claims of one key: exactly one winner).
//!
//! Rows: `claims` (`pk`, `payload_hash` hex, `state`, `lease_until` and `token` while in
//! progress, `result` when completed, `expires_at` epoch seconds), `links` (`pk`,
//! `vendor_id`, `fields` JSON `{field: {"fingerprint", "version"}}`, `recent` JSON list,
//! `lease_token`/`lease_until` while leased) and `limiters` (`pk`, `tat` epoch ms). Keys
//! are the table's partition keys: contacts appear only as SHA-256 hex.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Value, json};
use uuid::Uuid;

use relay_shared::assembly::LimiterStore;
use relay_shared::store::idempotency::{DEFAULT_RETENTION, check_result, expiry};
use relay_shared::store::limiter::Booked;
use relay_shared::store::{
    AppliedField, Booking, Claim, ClaimOutcome, ClaimRecord, ClaimState, Clock, DeliveryId,
    GcraParams, IdempotencyKey, IdempotencyStore, LeaseOutcome, LimiterKey, Link, LinkKey,
    LinkLease, LinkStore, PayloadHash, RateLimiter, StoreError,
};

use super::{Db, DiskError, from_ms};

impl From<DiskError> for StoreError {
    fn from(error: DiskError) -> Self {
        match error {
            DiskError::Malformed { what, reason } => StoreError::Malformed {
                pk: what.to_owned(),
                reason,
            },
            DiskError::Sqlite { operation, error } => StoreError::Backend {
                operation,
                message: error.to_string(),
                source: Box::new(error),
            },
            other => StoreError::Backend {
                operation: "SQLite",
                message: other.to_string(),
                source: Box::new(other),
            },
        }
    }
}

pub(super) fn sql(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |error| DiskError::Sqlite { operation, error }.into()
}

fn malformed(pk: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Malformed {
        pk: pk.to_owned(),
        reason: reason.into(),
    }
}

/// The on-disk store. Clones share the database, like instances sharing one table.
#[derive(Debug, Clone)]
pub struct DiskStore {
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) retention: TimeDelta,
    /// How long the delivery log and the raw requests are kept.
    pub(super) journal_ttl: TimeDelta,
}

impl DiskStore {
    /// The store in `db`, reading time from `clock`.
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        DiskStore {
            db,
            clock,
            retention: DEFAULT_RETENTION,
            journal_ttl: relay_shared::store::DEFAULT_JOURNAL_TTL,
        }
    }

    /// Keeps the delivery log and the raw requests for `ttl` instead of 14 days.
    #[must_use]
    pub fn with_journal_ttl(self, journal_ttl: TimeDelta) -> Self {
        DiskStore {
            journal_ttl,
            ..self
        }
    }

    /// Keeps finished claims for `retention` instead of 7 days.
    #[must_use]
    pub fn with_retention(self, retention: TimeDelta) -> Self {
        DiskStore { retention, ..self }
    }

    /// The limiter for `key`, sharing its schedule with every other limiter for `key` on
    /// this database (and with the relay's next run).
    pub fn limiter(&self, key: &LimiterKey, params: GcraParams) -> DiskRateLimiter {
        DiskRateLimiter {
            db: self.db.clone(),
            clock: Arc::clone(&self.clock),
            pk: key.as_str().to_owned(),
            params,
        }
    }

    /// Deletes claims whose `expires_at` has passed (they already count as absent; this only
    /// keeps the file small, as DynamoDB's TTL sweeper does). Answers how many went.
    pub async fn sweep_expired(&self) -> Result<usize, StoreError> {
        let now = self.clock.now().timestamp();
        self.db
            .write("sweep claims", move |tx| {
                tx.execute("DELETE FROM claims WHERE expires_at <= ?1", [now])
                    .map_err(sql("sweep claims"))
            })
            .await
    }

    /// Frees every link lease. Only for start-up, while holding the data directory's lock:
    /// the process that held them has ended, so nothing is delivering under them, and the
    /// next delivery need not wait out their time (up to a minute). Answers how many.
    pub async fn release_all_leases(&self) -> Result<usize, StoreError> {
        self.db
            .write("release leases", |tx| {
                tx.execute(
                    "UPDATE links SET lease_token = NULL, lease_until = NULL
                     WHERE lease_token IS NOT NULL",
                    [],
                )
                .map_err(sql("release leases"))
            })
            .await
    }

    /// Ends the lease of every claim still in progress now. Only for start-up, while holding
    /// the data directory's lock: the process that held them has ended. The claims stay
    /// claimed (an unconfirmed claim is never taken over, see `store::idempotency`): a
    /// sender's retry meets `InProgress` and ingest enqueues the retry's own copy, so
    /// nothing waits on them; ending the leases only stops a duplicate from being told the
    /// dead process is still at work. Another payload still meets `PayloadMismatch`.
    /// Answers how many.
    pub async fn end_claim_leases(&self) -> Result<usize, StoreError> {
        let now = self.clock.now().timestamp_millis();
        self.db
            .write("end claim leases", move |tx| {
                tx.execute(
                    "UPDATE claims SET lease_until = MIN(lease_until, ?1)
                     WHERE state = 'in_progress'",
                    [now],
                )
                .map_err(sql("end claim leases"))
            })
            .await
    }

    async fn finish(&self, claim: &Claim, state: ClaimState) -> Result<(), StoreError> {
        let now = self.clock.now();
        let expires_at = expiry(now, self.retention).timestamp();
        let claim = claim.clone();
        self.db
            .write("finish claim", move |tx| {
                let pk = claim.key().as_str();
                let held = read_claim(tx, pk)?.is_some_and(|r| r.held_by(&claim));
                if !held {
                    return Err(StoreError::ClaimLost {
                        key: claim.key().to_string(),
                    });
                }
                let (name, result) = match &state {
                    ClaimState::Completed { result } => ("completed", Some(result.as_str())),
                    ClaimState::Released => ("released", None),
                    ClaimState::InProgress { .. } => {
                        return Err(malformed(pk, "a claim is finished as in progress"));
                    }
                };
                // A logged event keeps its claim as long as its log entry; a released
                // claim (nothing was enqueued) drops out of the log.
                let logged: Option<i64> = tx
                    .query_row("SELECT expires_at FROM journal WHERE pk = ?1", [pk], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(sql("finish claim"))?;
                let expires_at = match (&state, logged) {
                    (ClaimState::Released, Some(_)) => {
                        tx.execute("DELETE FROM journal WHERE pk = ?1", [pk])
                            .map_err(sql("finish claim"))?;
                        expires_at
                    }
                    (_, Some(log)) => expires_at.max(log),
                    (_, None) => expires_at,
                };
                tx.execute(
                    "UPDATE claims SET state = ?2, result = ?3, lease_until = NULL,
                         token = NULL, expires_at = ?4
                     WHERE pk = ?1",
                    params![pk, name, result, expires_at],
                )
                .map_err(sql("finish claim"))?;
                Ok(())
            })
            .await
    }
}

/// Takes the claim of `key` inside `tx` unless a record blocks it (one claim's rules,
/// shared by [`IdempotencyStore::claim`] and the delivery log's recorded claim).
pub(super) fn claim_in(
    tx: &Transaction<'_>,
    key: &IdempotencyKey,
    payload_hash: &PayloadHash,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    retention: TimeDelta,
) -> Result<ClaimOutcome, StoreError> {
    let pk = key.as_str();
    if let Some(outcome) = read_claim(tx, pk)?.and_then(|r| r.blocks(payload_hash, now)) {
        return Ok(outcome);
    }
    let claim = Claim::new(key.clone(), lease_until);
    let record = ClaimRecord::claimed(&claim, *payload_hash, now, retention);
    tx.execute(
        "INSERT INTO claims (pk, payload_hash, state, lease_until, token, result, expires_at)
         VALUES (?1, ?2, 'in_progress', ?3, ?4, NULL, ?5)
         ON CONFLICT (pk) DO UPDATE SET
             payload_hash = excluded.payload_hash, state = excluded.state,
             lease_until = excluded.lease_until, token = excluded.token,
             result = NULL, expires_at = excluded.expires_at",
        params![
            pk,
            payload_hash.to_hex(),
            lease_until.timestamp_millis(),
            claim.token().to_string(),
            record.expires_at.timestamp(),
        ],
    )
    .map_err(sql("claim"))?;
    Ok(ClaimOutcome::Claimed(claim))
}

fn read_claim(tx: &Transaction<'_>, pk: &str) -> Result<Option<ClaimRecord>, StoreError> {
    type Row = (
        String,
        String,
        Option<i64>,
        Option<String>,
        Option<String>,
        i64,
    );
    let row: Option<Row> = tx
        .query_row(
            "SELECT payload_hash, state, lease_until, token, result, expires_at
             FROM claims WHERE pk = ?1",
            [pk],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()
        .map_err(sql("read claim"))?;
    let Some((hash, state, lease_until, token, result, expires_at)) = row else {
        return Ok(None);
    };
    let payload_hash =
        PayloadHash::from_hex(&hash).ok_or_else(|| malformed(pk, "payload_hash is not hex"))?;
    let state = match (state.as_str(), lease_until, token, result) {
        ("in_progress", Some(until), Some(token), _) => ClaimState::InProgress {
            lease_until: from_ms(until),
            token: Uuid::parse_str(&token).map_err(|_| malformed(pk, "token is not a uuid"))?,
        },
        ("completed", _, _, Some(result)) => ClaimState::Completed { result },
        ("released", _, _, _) => ClaimState::Released,
        (other, ..) => return Err(malformed(pk, format!("state `{other}` is incomplete"))),
    };
    Ok(Some(ClaimRecord {
        payload_hash,
        state,
        expires_at: DateTime::from_timestamp(expires_at, 0).unwrap_or(DateTime::UNIX_EPOCH),
    }))
}

#[async_trait]
impl IdempotencyStore for DiskStore {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = self.clock.now();
        let retention = self.retention;
        let (key, payload_hash) = (key.clone(), *payload_hash);
        self.db
            .write("claim", move |tx| {
                claim_in(tx, &key, &payload_hash, lease_until, now, retention)
            })
            .await
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

/// A stored link and the lease on it.
struct StoredLink {
    link: Link,
    lease: Option<(Uuid, i64)>,
}

fn read_link(tx: &Transaction<'_>, pk: &str) -> Result<Option<StoredLink>, StoreError> {
    type Row = (Option<String>, String, String, Option<String>, Option<i64>);
    let row: Option<Row> = tx
        .query_row(
            "SELECT vendor_id, fields, recent, lease_token, lease_until FROM links WHERE pk = ?1",
            [pk],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(sql("read link"))?;
    let Some((vendor_id, fields, recent, token, until)) = row else {
        return Ok(None);
    };
    let fields = parse_fields(pk, &fields)?;
    let recent: Vec<String> =
        serde_json::from_str(&recent).map_err(|e| malformed(pk, format!("recent: {e}")))?;
    let lease = match (token, until) {
        (Some(token), Some(until)) => Some((
            Uuid::parse_str(&token).map_err(|_| malformed(pk, "lease_token is not a uuid"))?,
            until,
        )),
        _ => None,
    };
    Ok(Some(StoredLink {
        link: Link {
            vendor_id,
            fields,
            recent: recent.into_iter().map(DeliveryId::from_stored).collect(),
        },
        lease,
    }))
}

fn parse_fields(pk: &str, text: &str) -> Result<BTreeMap<String, AppliedField>, StoreError> {
    let value: BTreeMap<String, Value> =
        serde_json::from_str(text).map_err(|e| malformed(pk, format!("fields: {e}")))?;
    value
        .into_iter()
        .map(|(name, v)| {
            let fingerprint = v["fingerprint"].as_str();
            let version = v["version"].as_i64();
            match (fingerprint, version) {
                (Some(fingerprint), Some(version)) => Ok((
                    name,
                    AppliedField {
                        fingerprint: fingerprint.to_owned(),
                        version,
                    },
                )),
                _ => Err(malformed(pk, format!("field `{name}` is incomplete"))),
            }
        })
        .collect()
}

fn fields_json(link: &Link) -> String {
    let map: serde_json::Map<String, Value> = link
        .fields
        .iter()
        .map(|(name, f)| {
            (
                name.clone(),
                json!({"fingerprint": f.fingerprint, "version": f.version}),
            )
        })
        .collect();
    Value::Object(map).to_string()
}

fn recent_json(link: &Link) -> String {
    Value::Array(
        link.recent
            .iter()
            .map(|d| Value::String(d.as_str().to_owned()))
            .collect(),
    )
    .to_string()
}

#[async_trait]
impl LinkStore for DiskStore {
    async fn lease(
        &self,
        key: &LinkKey,
        delivery: &DeliveryId,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        let now = self.clock.now().timestamp_millis();
        let (key, delivery) = (key.clone(), delivery.clone());
        self.db
            .write("lease link", move |tx| {
                let pk = key.as_str();
                let stored = read_link(tx, pk)?;
                if let Some(stored) = &stored {
                    if stored.link.recent.contains(&delivery) {
                        return Ok(LeaseOutcome::AlreadyApplied);
                    }
                    if let Some((_, held_until)) = stored.lease
                        && held_until > now
                    {
                        return Ok(LeaseOutcome::Busy {
                            until: from_ms(held_until),
                        });
                    }
                }
                let lease = LinkLease::new(key.clone(), until);
                let link = stored.map(|s| s.link).unwrap_or_default();
                tx.execute(
                    "INSERT INTO links (pk, vendor_id, fields, recent, lease_token, lease_until)
                     VALUES (?1, NULL, '{}', '[]', ?2, ?3)
                     ON CONFLICT (pk) DO UPDATE SET
                         lease_token = excluded.lease_token, lease_until = excluded.lease_until",
                    params![pk, lease.token().to_string(), until.timestamp_millis()],
                )
                .map_err(sql("lease link"))?;
                Ok(LeaseOutcome::Leased { lease, link })
            })
            .await
    }

    async fn commit(&self, lease: &LinkLease, link: &Link) -> Result<(), StoreError> {
        let lease = lease.clone();
        let (vendor_id, fields, recent) =
            (link.vendor_id.clone(), fields_json(link), recent_json(link));
        self.db
            .write("commit link", move |tx| {
                // As in DynamoDB: a link without a vendor id keeps the one it had.
                let changed = tx
                    .execute(
                        "UPDATE links SET vendor_id = COALESCE(?3, vendor_id), fields = ?4,
                             recent = ?5, lease_token = NULL, lease_until = NULL
                         WHERE pk = ?1 AND lease_token = ?2",
                        params![
                            lease.key().as_str(),
                            lease.token().to_string(),
                            vendor_id,
                            fields,
                            recent
                        ],
                    )
                    .map_err(sql("commit link"))?;
                if changed == 1 {
                    Ok(())
                } else {
                    Err(StoreError::ClaimLost {
                        key: lease.key().as_str().to_owned(),
                    })
                }
            })
            .await
    }

    async fn abandon(&self, lease: &LinkLease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.db
            .write("abandon link", move |tx| {
                let changed = tx
                    .execute(
                        "UPDATE links SET lease_token = NULL, lease_until = NULL
                         WHERE pk = ?1 AND lease_token = ?2",
                        params![lease.key().as_str(), lease.token().to_string()],
                    )
                    .map_err(sql("abandon link"))?;
                if changed == 1 {
                    Ok(())
                } else {
                    Err(StoreError::ClaimLost {
                        key: lease.key().as_str().to_owned(),
                    })
                }
            })
            .await
    }
}

/// One vendor account's limiter in the database.
#[derive(Debug, Clone)]
pub struct DiskRateLimiter {
    db: Db,
    clock: Arc<dyn Clock>,
    pk: String,
    params: GcraParams,
}

fn read_tat(tx: &Transaction<'_>, pk: &str) -> Result<Option<i64>, StoreError> {
    tx.query_row("SELECT tat FROM limiters WHERE pk = ?1", [pk], |r| r.get(0))
        .optional()
        .map_err(sql("read limiter"))
}

fn write_tat(tx: &Transaction<'_>, pk: &str, tat: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO limiters (pk, tat) VALUES (?1, ?2)
         ON CONFLICT (pk) DO UPDATE SET tat = excluded.tat",
        params![pk, tat],
    )
    .map_err(sql("write limiter"))?;
    Ok(())
}

#[async_trait]
impl RateLimiter for DiskRateLimiter {
    async fn reserve_n(&self, n: u32, max_wait: Duration) -> Result<Booking, StoreError> {
        let now = self.clock.now().timestamp_millis();
        let max_wait_ms = i64::try_from(max_wait.as_millis()).unwrap_or(i64::MAX);
        let (pk, params) = (self.pk.clone(), self.params);
        self.db
            .write("reserve permits", move |tx| {
                match params.book(read_tat(tx, &pk)?, now, n, max_wait_ms) {
                    Booked::Slots {
                        start,
                        count,
                        new_tat,
                    } => {
                        write_tat(tx, &pk, new_tat)?;
                        Ok(Booking::Slots(params.slots(start, count, now)))
                    }
                    Booked::Deny { retry_at } => Ok(Booking::TooFar(from_ms(retry_at))),
                }
            })
            .await
    }

    async fn penalise(&self, retry_after: Duration) -> Result<(), StoreError> {
        let now = self.clock.now().timestamp_millis();
        let (pk, params) = (self.pk.clone(), self.params);
        self.db
            .write("penalise limiter", move |tx| {
                let tat = params.penalised(read_tat(tx, &pk)?, now, retry_after);
                write_tat(tx, &pk, tat)
            })
            .await
    }
}

impl LimiterStore for DiskStore {
    fn limiter_for(&self, key: &LimiterKey, params: GcraParams) -> Arc<dyn RateLimiter> {
        Arc::new(self.limiter(key, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::testing::reopen;
    use relay_shared::store::{ContactKeyHash, ManualClock, Permit};
    use relay_shared::vendors::Vendor;

    /// Five at once, then one every 430 ms.
    const FIVE_THEN_430: GcraParams = GcraParams::new(Duration::from_millis(430), 5);

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(from_ms(1_800_000_000_000)))
    }

    /// Everything written survives closing the database and opening the directory again.
    #[tokio::test]
    async fn claims_links_and_limiters_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let key = IdempotencyKey::inbound("typeform", "ev-1").unwrap();
        let hash = PayloadHash::of(b"body");
        let link_key = LinkKey::new(Vendor::Hood, &ContactKeyHash::of("email:a@example.com"));
        let limiter_key = LimiterKey::new(Vendor::Hood, "local").unwrap();
        let lease_until = clock.now() + TimeDelta::seconds(30);
        {
            let store = DiskStore::new(Db::open(dir.path()).unwrap(), clock.clone());
            let ClaimOutcome::Claimed(claim) = store.claim(&key, &hash, lease_until).await.unwrap()
            else {
                panic!("fresh key")
            };
            store.complete(&claim, "done").await.unwrap();
            let LeaseOutcome::Leased { lease, mut link } = store
                .lease(&link_key, &DeliveryId::of("typeform#ev-1"), lease_until)
                .await
                .unwrap()
            else {
                panic!("fresh link")
            };
            link.vendor_id = Some("p-1".into());
            link.fields.insert(
                "email".into(),
                AppliedField {
                    fingerprint: "fp".into(),
                    version: 7,
                },
            );
            link.remember(DeliveryId::of("typeform#ev-1"));
            store.commit(&lease, &link).await.unwrap();
            let limiter = store.limiter(&limiter_key, FIVE_THEN_430);
            for _ in 0..5 {
                assert_eq!(limiter.acquire().await.unwrap(), Permit::Granted);
            }
        }
        let db = reopen(dir.path());
        let store = DiskStore::new(db, clock.clone());
        assert_eq!(
            store.claim(&key, &hash, lease_until).await.unwrap(),
            ClaimOutcome::Completed {
                result: "done".into()
            }
        );
        assert_eq!(
            store
                .lease(&link_key, &DeliveryId::of("typeform#ev-1"), lease_until)
                .await
                .unwrap(),
            LeaseOutcome::AlreadyApplied
        );
        let LeaseOutcome::Leased { link, .. } = store
            .lease(&link_key, &DeliveryId::of("typeform#ev-2"), lease_until)
            .await
            .unwrap()
        else {
            panic!("not applied, not busy")
        };
        assert_eq!(link.vendor_id.as_deref(), Some("p-1"));
        assert_eq!(link.fields["email"].version, 7);
        // The burst was spent before the restart: the schedule goes on, no new burst.
        let limiter = store.limiter(&limiter_key, FIVE_THEN_430);
        assert_eq!(
            limiter.acquire().await.unwrap(),
            Permit::RetryAt(clock.now() + TimeDelta::milliseconds(430))
        );
    }

    #[tokio::test]
    async fn start_up_frees_the_leases_of_the_ended_process_and_sweeps_expired_claims() {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let store = DiskStore::new(Db::open(dir.path()).unwrap(), clock.clone());
        let link_key = LinkKey::new(Vendor::Chatwoot, &ContactKeyHash::of("email:b@example.com"));
        let until = clock.now() + TimeDelta::seconds(60);
        let LeaseOutcome::Leased { lease: stale, .. } = store
            .lease(&link_key, &DeliveryId::of("e#1"), until)
            .await
            .unwrap()
        else {
            panic!("fresh link")
        };
        assert_eq!(
            store
                .lease(&link_key, &DeliveryId::of("e#1"), until)
                .await
                .unwrap(),
            LeaseOutcome::Busy { until }
        );
        assert_eq!(store.release_all_leases().await.unwrap(), 1);
        assert!(matches!(
            store
                .lease(&link_key, &DeliveryId::of("e#1"), until)
                .await
                .unwrap(),
            LeaseOutcome::Leased { .. }
        ));
        // The ended process's lease is fenced off.
        assert!(matches!(
            store.commit(&stale, &Link::default()).await,
            Err(StoreError::ClaimLost { .. })
        ));

        let key = IdempotencyKey::inbound("tally", "old").unwrap();
        let ClaimOutcome::Claimed(claim) = store
            .claim(&key, &PayloadHash::of(b"x"), until)
            .await
            .unwrap()
        else {
            panic!("fresh key")
        };
        store.complete(&claim, "ok").await.unwrap();
        assert_eq!(store.sweep_expired().await.unwrap(), 0);
        clock.advance(DEFAULT_RETENTION);
        assert_eq!(store.sweep_expired().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn start_up_ends_the_claim_leases_of_the_ended_process_without_freeing_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let store = DiskStore::new(Db::open(dir.path()).unwrap(), clock.clone());
        let key = IdempotencyKey::inbound("typeform", "mid-request").unwrap();
        let (hash, other) = (PayloadHash::of(b"a"), PayloadHash::of(b"b"));
        let lease = clock.now() + TimeDelta::seconds(30);
        let ClaimOutcome::Claimed(dead) = store.claim(&key, &hash, lease).await.unwrap() else {
            panic!("fresh key")
        };
        let done = IdempotencyKey::inbound("typeform", "answered").unwrap();
        let ClaimOutcome::Claimed(answered) = store.claim(&done, &hash, lease).await.unwrap()
        else {
            panic!("fresh key")
        };
        store.complete(&answered, "ok").await.unwrap();
        assert_eq!(
            store.claim(&key, &hash, lease).await.unwrap(),
            ClaimOutcome::InProgress { until: lease }
        );

        assert_eq!(store.end_claim_leases().await.unwrap(), 1);
        assert_eq!(
            store.claim(&key, &other, lease).await.unwrap(),
            ClaimOutcome::PayloadMismatch
        );
        // The sender's retry is told the claim is unconfirmed and no longer worked on (its
        // own copy is enqueued by ingest); the key is not taken over.
        assert_eq!(
            store.claim(&key, &hash, lease).await.unwrap(),
            ClaimOutcome::InProgress { until: clock.now() }
        );
        store.release(&dead).await.unwrap();
        assert_eq!(
            store.claim(&done, &hash, lease).await.unwrap(),
            ClaimOutcome::Completed {
                result: "ok".into()
            }
        );
    }

    #[tokio::test]
    async fn a_malformed_row_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.write("test", |tx| {
            tx.execute(
                "INSERT INTO claims (pk, payload_hash, state, expires_at)
                 VALUES ('evt#typeform#bad', 'zz', 'completed', 9999999999)",
                [],
            )
            .map_err(sql("test"))
        })
        .await
        .unwrap();
        let store = DiskStore::new(db, clock());
        let err = store
            .claim(
                &IdempotencyKey::inbound("typeform", "bad").unwrap(),
                &PayloadHash::of(b"x"),
                from_ms(1_800_000_030_000),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Malformed { .. }), "{err}");
    }
}
