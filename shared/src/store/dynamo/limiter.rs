//! GCRA on DynamoDB: one conditional UpdateItem per reservation (of one slot or several)
//! in the common case.
//!
//! Two request shapes for `n` slots within a wait `w`, chosen from the last `tat` this
//! instance saw:
//!
//! * busy (`tat ≥ now`): `SET tat = tat + n·T` if `now ≤ tat ≤ now + tau + w − (n−1)·T`.
//!   The increment is applied by DynamoDB to whatever `tat` is stored, so concurrent
//!   instances never race on a read-modify-write: each success is `n` slots of the schedule.
//! * idle (`tat < now` or absent): `SET tat = now + n·T` if `tat` is absent or `< now`.
//!
//! The union of the two conditions is exactly GCRA's "the last slot is within the wait".
//! When the condition fails, `ALL_OLD` carries the current `tat`: either the first slot is
//! too far ahead (answer `TooFar(tat − tau)`, no further call), or fewer slots fit (ask
//! for those), or the other shape applies (switch). At most three requests; more than one
//! only when this instance's view was out of date. `tat` only grows, so a refusal this
//! instance can already tell from the `tat` it saw last costs no request at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::backend;
use super::item::{self, n as n_value};
use crate::store::clock::from_epoch_ms;
use crate::store::limiter::{Booked, wait_ms};
use crate::store::{Booking, Clock, GcraParams, LimiterKey, RateLimiter, StoreError};

/// `seen_tat` before this instance has seen any.
const UNSEEN: i64 = i64::MIN;

/// One instance's handle on a shared limiter.
#[derive(Debug)]
pub struct DynamoRateLimiter {
    client: Client,
    table: String,
    pk: String,
    params: GcraParams,
    clock: Arc<dyn Clock>,
    /// The newest `tat` this instance saw (only to choose the request shape).
    seen_tat: AtomicI64,
    /// Held while a reservation of this handle is in flight: concurrent callers of one
    /// instance (the deliveries of one batch) book one after another, each from the
    /// schedule the one before saw, instead of guessing from the same stale view and
    /// spending a refused write each (a refusal the view foresees costs none).
    booking: tokio::sync::Mutex<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Busy,
    Idle,
}

impl Shape {
    fn for_tat(tat: Option<i64>, now: i64) -> Self {
        match tat {
            Some(tat) if tat >= now => Shape::Busy,
            _ => Shape::Idle,
        }
    }
}

impl DynamoRateLimiter {
    pub(super) fn new(
        client: Client,
        table: String,
        key: &LimiterKey,
        params: GcraParams,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            table,
            pk: key.as_str().to_owned(),
            params,
            clock,
            seen_tat: AtomicI64::new(UNSEEN),
            booking: tokio::sync::Mutex::new(()),
        }
    }

    fn seen(&self, tat: Option<i64>) {
        if let Some(tat) = tat {
            self.seen_tat.fetch_max(tat, Ordering::Relaxed);
        }
    }

    /// One UpdateItem of the given shape for `n` slots: `Ok(new tat)` when granted,
    /// `Err(current tat)` when the condition failed.
    async fn attempt(
        &self,
        shape: Shape,
        now: i64,
        n: u32,
        max_wait_ms: i64,
    ) -> Result<Result<i64, Option<i64>>, StoreError> {
        let t = self.params.t_ms();
        let booked = t.saturating_mul(i64::from(n));
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(&self.pk)))
            .expression_attribute_names("#tat", item::TAT)
            .expression_attribute_values(":now", n_value(now))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match shape {
            Shape::Busy => request
                .update_expression("SET #tat = #tat + :t")
                .condition_expression("#tat >= :now AND #tat <= :latest")
                .expression_attribute_values(":t", n_value(booked))
                .expression_attribute_values(
                    ":latest",
                    n_value(
                        now.saturating_add(self.params.tau_ms())
                            .saturating_add(max_wait_ms)
                            .saturating_sub(t.saturating_mul(i64::from(n.saturating_sub(1)))),
                    ),
                ),
            Shape::Idle => request
                .update_expression("SET #tat = :now_plus_t")
                .condition_expression("attribute_not_exists(#tat) OR #tat < :now")
                .expression_attribute_values(":now_plus_t", n_value(now.saturating_add(booked))),
        };
        match request.send().await {
            Ok(out) => {
                let new = out.attributes().map(item::tat).transpose()?.flatten();
                let new = new.ok_or_else(|| StoreError::Malformed {
                    pk: self.pk.clone(),
                    reason: "UpdateItem returned no tat".into(),
                })?;
                Ok(Ok(new))
            }
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    Ok(Err(e.item().map(item::tat).transpose()?.flatten()))
                }
                _ => Err(backend("UpdateItem")(err)),
            },
        }
    }
}

/// Requests one reservation may make (the first, then a correction of the slot count or
/// the shape after each refusal that still leaves a slot).
const MAX_ATTEMPTS: usize = 3;

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    fn known_too_far(&self, max_wait: Duration) -> Option<chrono::DateTime<chrono::Utc>> {
        let seen = Some(self.seen_tat.load(Ordering::Relaxed)).filter(|&t| t != UNSEEN)?;
        let now = self.clock.now().timestamp_millis();
        match self.params.book(Some(seen), now, 1, wait_ms(max_wait)) {
            Booked::Deny { retry_at } => Some(from_epoch_ms(retry_at)),
            Booked::Slots { .. } => None,
        }
    }

    async fn reserve_n(&self, n: u32, max_wait: Duration) -> Result<Booking, StoreError> {
        let _one_at_a_time = self.booking.lock().await;
        let now = self.clock.now().timestamp_millis();
        let max_wait_ms = wait_ms(max_wait);
        let n = n.max(1);
        let seen = Some(self.seen_tat.load(Ordering::Relaxed)).filter(|&t| t != UNSEEN);
        // `tat` never moves back: what this instance saw is a lower bound of what is stored.
        let (mut shape, mut count) = match self.params.book(seen, now, n, max_wait_ms) {
            Booked::Deny { retry_at: at } => return Ok(Booking::TooFar(from_epoch_ms(at))),
            Booked::Slots { count, .. } => (Shape::for_tat(seen, now), count),
        };
        for _ in 0..MAX_ATTEMPTS {
            let current = match self.attempt(shape, now, count, max_wait_ms).await? {
                Ok(new_tat) => {
                    self.seen(Some(new_tat));
                    let start =
                        new_tat.saturating_sub(self.params.t_ms().saturating_mul(i64::from(count)));
                    return Ok(Booking::Slots(self.params.slots(start, count, now)));
                }
                Err(current) => current,
            };
            self.seen(current);
            match self.params.book(current, now, n, max_wait_ms) {
                Booked::Deny { retry_at: at } => return Ok(Booking::TooFar(from_epoch_ms(at))),
                Booked::Slots { count: fit, .. } => {
                    shape = Shape::for_tat(current, now);
                    count = fit;
                }
            }
        }
        // Grantable by the stored value yet refused each time: the schedule kept moving
        // between our requests. Let the caller ask again straight away.
        Ok(Booking::TooFar(from_epoch_ms(now)))
    }

    async fn penalise(&self, retry_after: Duration) -> Result<(), StoreError> {
        let now = self.clock.now().timestamp_millis();
        let pushed = self.params.penalised(None, now, retry_after);
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(&self.pk)))
            .update_expression("SET #tat = :pushed")
            .condition_expression("attribute_not_exists(#tat) OR #tat < :pushed")
            .expression_attribute_names("#tat", item::TAT)
            .expression_attribute_values(":pushed", n_value(pushed))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(_) => self.seen(Some(pushed)),
            // Already later than the penalty: nothing to push.
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    self.seen(e.item().map(item::tat).transpose()?.flatten());
                }
                _ => return Err(backend("UpdateItem")(err)),
            },
        }
        Ok(())
    }
}
