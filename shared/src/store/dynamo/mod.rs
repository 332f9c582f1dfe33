//! DynamoDB adapter: every operation is one conditional request on the one table (see the
//! [`store`](super) module for the table). Conditional failures come back with the item as
//! it was (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), so the loser of a race learns
//! the current state without a second read.

mod idempotency;
mod identity;
mod item;
mod journal;
mod limiter;
mod link;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification, TimeToLiveStatus,
};
use chrono::TimeDelta;

pub use journal::RECENT_INDEX;
pub use limiter::DynamoRateLimiter;

use super::idempotency::DEFAULT_RETENTION;
use super::journal::DEFAULT_JOURNAL_TTL;
use super::{Clock, GcraParams, LimiterKey, StoreError};

/// The store over one DynamoDB table. Cheap to clone (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
    retention: TimeDelta,
    journal_ttl: TimeDelta,
}

impl DynamoStore {
    /// The store over `table`, reading time from `clock`.
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.into(),
            clock,
            retention: DEFAULT_RETENTION,
            journal_ttl: DEFAULT_JOURNAL_TTL,
        }
    }

    /// Keeps the delivery log and raw events for `ttl` instead of 14 days.
    pub fn with_journal_ttl(self, journal_ttl: TimeDelta) -> Self {
        Self {
            journal_ttl,
            ..self
        }
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Keeps finished claims for `retention` instead of 7 days.
    pub fn with_retention(self, retention: TimeDelta) -> Self {
        Self { retention, ..self }
    }

    /// The limiter for `key` with schedule `params`. Make one per instance and keep it:
    /// it remembers the last `tat` it saw to pick the right request the first time.
    pub fn limiter(&self, key: &LimiterKey, params: GcraParams) -> DynamoRateLimiter {
        DynamoRateLimiter::new(
            self.client.clone(),
            self.table.clone(),
            key,
            params,
            Arc::clone(&self.clock),
        )
    }
}

/// The table's shape: what [`create_table`] creates and what `template.yaml` must declare
/// (a test compares the two, so they cannot drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDefinition {
    /// The partition key attribute (type S); the table has no sort key.
    pub partition_key: &'static str,
    /// The TTL attribute (epoch seconds).
    pub ttl_attribute: &'static str,
    /// `PAY_PER_REQUEST` (on demand).
    pub billing_mode: &'static str,
    /// Global secondary indexes: only `recent` (the delivery log's listing), partition
    /// key `j_day` (S, the UTC day of receipt) and sort key `j_received` (N, epoch ms),
    /// keys only (the claim's PutItem writes the index once; the completion and the
    /// delivery updates change no key, so they do not). Every other access is by key.
    pub global_secondary_indexes: &'static [GlobalIndex],
}

/// A global secondary index of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalIndex {
    pub name: &'static str,
    /// Partition key (type S).
    pub partition_key: &'static str,
    /// Sort key (type N).
    pub sort_key: &'static str,
    /// `KEYS_ONLY`.
    pub projection: &'static str,
}

/// The one table.
pub const TABLE: TableDefinition = TableDefinition {
    partition_key: item::PK,
    ttl_attribute: item::EXPIRES_AT,
    billing_mode: "PAY_PER_REQUEST",
    global_secondary_indexes: &[GlobalIndex {
        name: journal::RECENT_INDEX,
        partition_key: journal::J_DAY,
        sort_key: journal::J_RECEIVED,
        projection: "KEYS_ONLY",
    }],
};

/// Creates the table ([`TABLE`]: partition key `pk` of type S, on-demand billing) and
/// enables TTL on `expires_at`; waits until it is usable. The one definition of the table, used by the
/// tests, the local CLI and the docs. An existing table is left as it is, with TTL enabled
/// if it was not.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let mut create = client
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(TABLE.partition_key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(backend("CreateTable"))?,
        );
    for index in TABLE.global_secondary_indexes {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(index.partition_key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(backend("CreateTable"))?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(index.sort_key)
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .map_err(backend("CreateTable"))?,
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index.name)
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(index.partition_key)
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(backend("CreateTable"))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(index.sort_key)
                            .key_type(KeyType::Range)
                            .build()
                            .map_err(backend("CreateTable"))?,
                    )
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(index.projection))
                            .build(),
                    )
                    .build()
                    .map_err(backend("CreateTable"))?,
            );
    }
    let created = create
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(TABLE.partition_key)
                .key_type(KeyType::Hash)
                .build()
                .map_err(backend("CreateTable"))?,
        )
        .billing_mode(BillingMode::from(TABLE.billing_mode))
        .send()
        .await;
    if let Err(err) = created {
        let exists = err
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception());
        if !exists {
            return Err(backend("CreateTable")(err));
        }
    }
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(Duration::from_secs(120))
        .await
        .map_err(backend("DescribeTable"))?;

    let ttl = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(backend("DescribeTimeToLive"))?;
    let status = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status());
    if !matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TABLE.ttl_attribute)
                    .build()
                    .map_err(backend("UpdateTimeToLive"))?,
            )
            .send()
            .await
            .map_err(backend("UpdateTimeToLive"))?;
    }
    Ok(())
}

/// Wraps an SDK error with the operation it came from.
fn backend<E: StdError + Send + Sync + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::Backend {
        operation,
        message: DisplayErrorContext(&err).to_string(),
        source: Box::new(err),
    }
}

/// Whether DynamoDB refused a plain request because a transaction held its item at that
/// moment (`TransactionConflictException`; the SDK does not retry it).
fn is_transaction_conflict<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "TransactionConflictException")
}

/// Pauses between tries of a plain write that met a transaction on its item (a
/// transaction holds an item for a few milliseconds).
const CONFLICT_PAUSES: [Duration; 3] = [
    Duration::from_millis(10),
    Duration::from_millis(30),
    Duration::from_millis(90),
];

/// Sends `op` again, after a short pause, while DynamoDB answers that a transaction holds
/// the item (a log record or a commit meeting another vendor's transaction on the same
/// event item); any other answer is returned as it is.
async fn conflict_retry<T, E, R, F, Fut>(
    mut op: F,
) -> Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>>,
{
    for pause in CONFLICT_PAUSES {
        match op().await {
            Err(err) if is_transaction_conflict(&err) => tokio::time::sleep(pause).await,
            other => return other,
        }
    }
    op().await
}
