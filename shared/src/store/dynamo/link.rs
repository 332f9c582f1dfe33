//! Links on DynamoDB. Taking a lease is one UpdateItem that sets the lease, creates the item
//! if needed and returns it (`ALL_NEW`); when its condition fails — lease held, or the
//! delivery already applied — `ALL_OLD` says which. Commit and abandon are one UpdateItem
//! each, fenced by the lease token.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::item::{self, Item, n, s};
use super::{DynamoStore, backend, conflict_retry, is_transaction_conflict};
use crate::store::clock::from_epoch_ms;
use crate::store::{
    DeliveryId, LeaseOutcome, Link, LinkKey, LinkLease, LinkStore, LogRecord, StoreError,
};

#[async_trait]
impl LinkStore for DynamoStore {
    async fn lease(
        &self,
        key: &LinkKey,
        delivery: &DeliveryId,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        let lease = LinkLease::new(key.clone(), until);
        // The holder's commit may be a transaction this moment: it is over in milliseconds.
        let sent = conflict_retry(|| {
            self.client
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
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
        })
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
            // Still held by a transaction after the short retries: busy, briefly.
            Err(err) if is_transaction_conflict(&err) => Ok(LeaseOutcome::Busy {
                until: self.clock.now() + chrono::TimeDelta::milliseconds(50),
            }),
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
        let parts = Commit::of(lease, link);
        let sent = conflict_retry(|| {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(item::key(lease.key().as_str())))
                .condition_expression(Commit::CONDITION)
                .update_expression(parts.update.clone())
                .set_expression_attribute_names(Some(parts.names.clone()))
                .set_expression_attribute_values(Some(parts.values.clone()))
                .send()
        })
        .await;
        fenced(sent, lease)
    }

    /// One TransactWriteItems: the commit's update of the link and the log's update of the
    /// event's item, each with its own condition. A lost lease is [`StoreError::ClaimLost`];
    /// a log record the event's item does not take (the event left the log, or a newer
    /// attempt is recorded) commits the link alone; a conflicting transaction on either item
    /// commits the link alone and leaves the record to the caller.
    async fn commit_logged(
        &self,
        lease: &LinkLease,
        link: &Link,
        log: &LogRecord<'_>,
    ) -> Result<bool, StoreError> {
        let parts = Commit::of(lease, link);
        let commit = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item::key(lease.key().as_str())))
            .condition_expression(Commit::CONDITION)
            .update_expression(parts.update)
            .set_expression_attribute_names(Some(parts.names))
            .set_expression_attribute_values(Some(parts.values))
            .build()
            .map_err(backend("TransactWriteItems"))?;
        let record = super::journal::delivery_update(&self.table, log, self.clock.now())?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(commit).build())
            .transact_items(TransactWriteItem::builder().update(record).build())
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(true),
            Err(err) => err,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        else {
            return Err(backend("TransactWriteItems")(err));
        };
        let codes: Vec<Option<&str>> = cancelled
            .cancellation_reasons()
            .iter()
            .map(|r| r.code())
            .collect();
        match codes.as_slice() {
            [Some("ConditionalCheckFailed"), _] => Err(StoreError::ClaimLost {
                key: lease.key().as_str().to_owned(),
            }),
            [None | Some("None"), Some("ConditionalCheckFailed")] => {
                self.commit(lease, link).await.map(|()| true)
            }
            _ => self.commit(lease, link).await.map(|()| false),
        }
    }

    async fn abandon(&self, lease: &LinkLease) -> Result<(), StoreError> {
        let sent = conflict_retry(|| {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(item::key(lease.key().as_str())))
                .update_expression("REMOVE #token, #until")
                .condition_expression("#token = :token")
                .expression_attribute_names("#token", item::LEASE_TOKEN)
                .expression_attribute_names("#until", item::LEASE_UNTIL)
                .expression_attribute_values(":token", s(lease.token().to_string()))
                .send()
        })
        .await;
        fenced(sent, lease)
    }
}

/// The link commit's expression, names and values (for an UpdateItem or a transaction).
struct Commit {
    update: String,
    names: std::collections::HashMap<String, String>,
    values: Item,
}

impl Commit {
    const CONDITION: &'static str = "#token = :token";

    fn of(lease: &LinkLease, link: &Link) -> Commit {
        let mut names: std::collections::HashMap<String, String> = [
            ("#token", item::LEASE_TOKEN),
            ("#until", item::LEASE_UNTIL),
            ("#fields", item::FIELDS),
            ("#recent", item::RECENT),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut values: Item = [
            (":token".to_owned(), s(lease.token().to_string())),
            (":fields".to_owned(), item::fields(link)),
            (":recent".to_owned(), item::recent(link)),
        ]
        .into_iter()
        .collect();
        let set = "SET #fields = :fields, #recent = :recent";
        let update = match &link.vendor_id {
            Some(id) => {
                names.insert("#vendor".into(), item::VENDOR_ID.into());
                values.insert(":vendor".into(), s(id.as_str()));
                format!("{set}, #vendor = :vendor REMOVE #token, #until")
            }
            None => format!("{set} REMOVE #token, #until"),
        };
        Commit {
            update,
            names,
            values,
        }
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
