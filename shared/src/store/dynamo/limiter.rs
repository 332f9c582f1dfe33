//! GCRA on DynamoDB: one conditional UpdateItem per permit in the common case.
//!
//! Two request shapes, chosen from the last `tat` this instance saw:
//!
//! * busy (`tat ≥ now`): `SET tat = tat + T` if `now ≤ tat ≤ now + tau`. The increment is
//!   applied by DynamoDB to whatever `tat` is stored, so concurrent instances never race on
//!   a read-modify-write: each success is one slot of the schedule.
//! * idle (`tat < now` or absent): `SET tat = now + T` if `tat` is absent or `< now`.
//!
//! The union of the two conditions is exactly GCRA's `tat − now ≤ tau`. When the condition
//! fails, `ALL_OLD` carries the current `tat`: either it is too far ahead (answer
//! `RetryAt(tat − tau)`, no further call) or the other shape applies (switch once). `tat`
//! only grows, so after a switch to busy the second request can only fail by being too
//! early; a permit costs two calls only when this instance's view was out of date.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::backend;
use super::item::{self, n};
use crate::store::clock::from_epoch_ms;
use crate::store::limiter::{Decision, retry_at};
use crate::store::{Clock, GcraParams, LimiterKey, Permit, RateLimiter, Reservation, StoreError};

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
        }
    }

    fn seen(&self, tat: Option<i64>) {
        if let Some(tat) = tat {
            self.seen_tat.fetch_max(tat, Ordering::Relaxed);
        }
    }

    /// One UpdateItem of the given shape: `Ok(new tat)` when granted, `Err(current tat)`
    /// when the condition failed.
    async fn attempt(
        &self,
        shape: Shape,
        now: i64,
        max_wait_ms: i64,
    ) -> Result<Result<i64, Option<i64>>, StoreError> {
        let t = self.params.t_ms();
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(&self.pk)))
            .expression_attribute_names("#tat", item::TAT)
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match shape {
            Shape::Busy => request
                .update_expression("SET #tat = #tat + :t")
                .condition_expression("#tat >= :now AND #tat <= :now_plus_tau")
                .expression_attribute_values(":t", n(t))
                .expression_attribute_values(
                    ":now_plus_tau",
                    n(now
                        .saturating_add(self.params.tau_ms())
                        .saturating_add(max_wait_ms)),
                ),
            Shape::Idle => request
                .update_expression("SET #tat = :now_plus_t")
                .condition_expression("attribute_not_exists(#tat) OR #tat < :now")
                .expression_attribute_values(":now_plus_t", n(now.saturating_add(t))),
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

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    async fn acquire(&self) -> Result<Permit, StoreError> {
        Ok(match self.reserve(Duration::ZERO).await? {
            Reservation::At(_) => Permit::Granted,
            Reservation::TooFar(at) => retry_at(at.timestamp_millis()),
        })
    }

    async fn reserve(&self, max_wait: Duration) -> Result<Reservation, StoreError> {
        let now = self.clock.now().timestamp_millis();
        let max_wait_ms = i64::try_from(max_wait.as_millis()).unwrap_or(i64::MAX);
        let seen = Some(self.seen_tat.load(Ordering::Relaxed)).filter(|&t| t != UNSEEN);
        let mut shape = Shape::for_tat(seen, now);
        let mut switched = false;
        loop {
            let current = match self.attempt(shape, now, max_wait_ms).await? {
                Ok(new_tat) => {
                    self.seen(Some(new_tat));
                    return Ok(Reservation::At(from_epoch_ms(
                        self.params.go_at(new_tat, now),
                    )));
                }
                Err(current) => current,
            };
            self.seen(current);
            if let Decision::Deny { retry_at: at } =
                self.params.decide_within(current, now, max_wait_ms)
            {
                return Ok(Reservation::TooFar(from_epoch_ms(at)));
            }
            let other = Shape::for_tat(current, now);
            if switched || other == shape {
                // Grantable by the stored value yet refused: the schedule moved between
                // our two requests. Let the caller ask again straight away.
                return Ok(Reservation::TooFar(from_epoch_ms(now)));
            }
            shape = other;
            switched = true;
        }
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
            .expression_attribute_values(":pushed", n(pushed))
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
