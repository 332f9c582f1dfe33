//! Claims and deliveries on DynamoDB: a claim is one conditional PutItem; `complete` and
//! `release` are one UpdateItem each, conditional on the claim token (fencing).

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};

use super::item::{self, Item, n, s};
use super::{DynamoStore, backend};
use crate::store::idempotency::{check_result, expiry};
use crate::store::{
    Claim, ClaimOutcome, ClaimRecord, IdempotencyKey, IdempotencyStore, PayloadHash, StoreError,
};

/// `ClaimRecord::blocks` as a condition: the key is absent, expired or released (an
/// in-progress claim is never taken over, see `store::idempotency`).
const CLAIMABLE: &str = "attribute_not_exists(#pk) OR #exp <= :now_s OR #state = :released";

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        self.put_claim(key, payload_hash, lease_until, self.retention, Item::new())
            .await
    }

    async fn complete(&self, claim: &Claim, result: &str) -> Result<(), StoreError> {
        check_result(result)?;
        let update = self
            .finish(
                claim,
                "SET #state = :completed, #result = :result, #exp = if_not_exists(#jexp, :exp) \
                 REMOVE #lease, #token",
            )
            .expression_attribute_names("#result", item::RESULT)
            .expression_attribute_values(":completed", s(item::COMPLETED))
            .expression_attribute_values(":result", s(result));
        self.fenced(claim, update).await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        // A released event leaves the delivery log (and its index) too.
        let update = self
            .finish(
                claim,
                "SET #state = :released, #exp = if_not_exists(#jexp, :exp) \
                 REMOVE #lease, #token, #jday, #d",
            )
            .expression_attribute_names("#jday", super::journal::J_DAY)
            .expression_attribute_names("#d", super::journal::DELIVERIES)
            .expression_attribute_values(":released", s(item::RELEASED));
        self.fenced(claim, update).await
    }
}

impl DynamoStore {
    /// The claim's conditional PutItem, with `extra` attributes (the journal entry) in the
    /// same item.
    pub(super) async fn put_claim(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
        retention: chrono::TimeDelta,
        extra: Item,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = self.clock.now();
        let (claim, put) = claim_with(key, payload_hash, lease_until, now, retention, extra);
        // A duplicate's claim may meet the first claim's transaction (with its person).
        let (names, values) = claimable(now);
        let sent = super::conflict_retry(|| {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(put.clone()))
                .condition_expression(CLAIMABLE)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
        })
        .await;
        let err = match sent {
            Ok(_) => return Ok(ClaimOutcome::Claimed(claim)),
            Err(err) => err,
        };
        let Some(old) = conditional_failure(&err) else {
            return Err(backend("PutItem")(err));
        };
        standing(key, old, payload_hash, now)
    }

    /// The claim's Put for a transaction: the same item and condition as [`Self::put_claim`].
    pub(super) fn claim_put(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
        retention: chrono::TimeDelta,
        extra: Item,
    ) -> Result<(Claim, aws_sdk_dynamodb::types::Put), StoreError> {
        let (claim, put) = claim_with(key, payload_hash, lease_until, now, retention, extra);
        let (names, values) = claimable(now);
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(put))
            .condition_expression(CLAIMABLE)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(backend("TransactWriteItems"))?;
        Ok((claim, put))
    }
}

/// The names and values [`CLAIMABLE`] uses, at `now`.
fn claimable(now: DateTime<Utc>) -> (std::collections::HashMap<String, String>, Item) {
    let names = [
        ("#pk", item::PK),
        ("#exp", item::EXPIRES_AT),
        ("#state", item::STATE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let values = [
        (":now_s".to_owned(), n(now.timestamp())),
        (":released".to_owned(), s(item::RELEASED)),
    ]
    .into_iter()
    .collect();
    (names, values)
}

/// A new claim on `key` and its item.
fn claim_with(
    key: &IdempotencyKey,
    payload_hash: &PayloadHash,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    retention: chrono::TimeDelta,
    extra: Item,
) -> (Claim, Item) {
    let claim = Claim::new(key.clone(), lease_until);
    let record = ClaimRecord::claimed(&claim, *payload_hash, now, retention);
    let mut put = item::claim_item(key.as_str(), &record);
    put.extend(extra);
    (claim, put)
}

/// What a claim that could not be taken met: the stored record (`old`, returned by the
/// failed condition) against this claim's payload hash.
pub(super) fn standing(
    key: &IdempotencyKey,
    old: Option<&Item>,
    payload_hash: &PayloadHash,
    now: DateTime<Utc>,
) -> Result<ClaimOutcome, StoreError> {
    let malformed = |reason: &str| StoreError::Malformed {
        pk: key.to_string(),
        reason: reason.to_owned(),
    };
    let old =
        item::claim_record(old.ok_or_else(|| malformed("condition failed without an item"))?)?;
    old.blocks(payload_hash, now)
        .ok_or_else(|| malformed("condition failed on a claimable record"))
}

type UpdateBuilder = aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;

impl DynamoStore {
    /// An UpdateItem ending an in-progress claim, conditional on its token.
    fn finish(&self, claim: &Claim, update: &str) -> UpdateBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(claim.key().as_str())))
            .update_expression(update)
            .condition_expression("#token = :token")
            .expression_attribute_names("#state", item::STATE)
            .expression_attribute_names("#exp", item::EXPIRES_AT)
            .expression_attribute_names("#lease", item::LEASE_UNTIL)
            .expression_attribute_names("#token", item::CLAIM_TOKEN)
            .expression_attribute_names("#jexp", super::journal::J_EXPIRES)
            .expression_attribute_values(
                ":exp",
                n(expiry(self.clock.now(), self.retention).timestamp()),
            )
            .expression_attribute_values(":token", s(claim.token().to_string()))
    }

    /// Sends a fenced update; a failed condition means the claim was lost.
    async fn fenced(&self, claim: &Claim, update: UpdateBuilder) -> Result<(), StoreError> {
        match update.send().await {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ClaimLost {
                    key: claim.key().to_string(),
                })
            }
            Err(err) => Err(backend("UpdateItem")(err)),
        }
    }
}

/// `Some(old item)` when a PutItem failed its condition.
pub(super) fn conditional_failure<R>(err: &SdkError<PutItemError, R>) -> Option<Option<&Item>> {
    match err.as_service_error() {
        Some(PutItemError::ConditionalCheckFailedException(e)) => Some(e.item()),
        _ => None,
    }
}
