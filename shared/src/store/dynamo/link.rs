//! Links on DynamoDB. Taking a lease is one UpdateItem that sets the lease, creates the item
//! if needed and returns it (`ALL_NEW`); when its condition fails — lease held, or the
//! delivery already applied — `ALL_OLD` says which. Commit and abandon are one UpdateItem
//! each, fenced by the lease token.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use super::item::{self, Item, n, s};
use super::{DynamoStore, backend};
use crate::store::clock::from_epoch_ms;
use crate::store::{DeliveryId, LeaseOutcome, Link, LinkKey, LinkLease, LinkStore, StoreError};

#[async_trait]
impl LinkStore for DynamoStore {
    async fn lease(
        &self,
        key: &LinkKey,
        delivery: &DeliveryId,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        let lease = LinkLease::new(key.clone(), until);
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(key.as_str())))
            .update_expression("SET #token = :token, #until = :until")
            .condition_expression(
                "(attribute_not_exists(#until) OR #until <= :now) \
                 AND (attribute_not_exists(#recent) OR NOT contains(#recent, :delivery))",
            )
            .expression_attribute_names("#token", item::LEASE_TOKEN)
            .expression_attribute_names("#until", item::LEASE_UNTIL)
            .expression_attribute_names("#recent", item::RECENT)
            .expression_attribute_values(":token", s(lease.token().to_string()))
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .expression_attribute_values(":now", n(self.clock.now().timestamp_millis()))
            .expression_attribute_values(":delivery", s(delivery.as_str()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(out) => {
                let link = out
                    .attributes()
                    .map(item::link)
                    .transpose()?
                    .unwrap_or_default();
                Ok(LeaseOutcome::Leased { lease, link })
            }
            Err(err) => match update_condition_failure(&err) {
                Some(Some(old)) => {
                    let link = item::link(old)?;
                    if link.recent.contains(delivery) {
                        Ok(LeaseOutcome::AlreadyApplied)
                    } else {
                        let until = item::lease_until(old)?.map_or(until, from_epoch_ms);
                        Ok(LeaseOutcome::Busy { until })
                    }
                }
                Some(None) => Err(StoreError::Malformed {
                    pk: key.as_str().to_owned(),
                    reason: "condition failed without an item".into(),
                }),
                None => Err(backend("UpdateItem")(err)),
            },
        }
    }

    async fn commit(&self, lease: &LinkLease, link: &Link) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(lease.key().as_str())))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", item::LEASE_TOKEN)
            .expression_attribute_names("#until", item::LEASE_UNTIL)
            .expression_attribute_names("#fields", item::FIELDS)
            .expression_attribute_names("#recent", item::RECENT)
            .expression_attribute_values(":token", s(lease.token().to_string()))
            .expression_attribute_values(":fields", item::fields(link))
            .expression_attribute_values(":recent", item::recent(link));
        let set = "SET #fields = :fields, #recent = :recent";
        update = match &link.vendor_id {
            Some(id) => update
                .update_expression(format!("{set}, #vendor = :vendor REMOVE #token, #until"))
                .expression_attribute_names("#vendor", item::VENDOR_ID)
                .expression_attribute_values(":vendor", s(id.as_str())),
            None => update.update_expression(format!("{set} REMOVE #token, #until")),
        };
        fenced(update.send().await, lease)
    }

    async fn abandon(&self, lease: &LinkLease) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(lease.key().as_str())))
            .update_expression("REMOVE #token, #until")
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", item::LEASE_TOKEN)
            .expression_attribute_names("#until", item::LEASE_UNTIL)
            .expression_attribute_values(":token", s(lease.token().to_string()))
            .send()
            .await;
        fenced(sent, lease)
    }
}

/// Maps a token-conditioned write's failed condition to [`StoreError::ClaimLost`].
fn fenced<T, R>(
    sent: Result<T, SdkError<UpdateItemError, R>>,
    lease: &LinkLease,
) -> Result<(), StoreError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match sent {
        Ok(_) => Ok(()),
        Err(err) if update_condition_failure(&err).is_some() => Err(StoreError::ClaimLost {
            key: lease.key().as_str().to_owned(),
        }),
        Err(err) => Err(backend("UpdateItem")(err)),
    }
}

/// `Some(old item)` when an UpdateItem failed its condition.
fn update_condition_failure<R>(err: &SdkError<UpdateItemError, R>) -> Option<Option<&Item>> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(e)) => Some(e.item()),
        _ => None,
    }
}
