//! One error type for every store adapter, so callers handle DynamoDB and memory alike.

use std::error::Error as StdError;

use super::idempotency::MAX_RESULT_BYTES;

/// Why a store operation failed. Expected duplicates and stale updates are *outcomes*
/// (`ClaimOutcome`, `LinkPut`), not errors; errors are what the caller cannot route on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A key part was empty, too long or contained a character that would make the
    /// partition key ambiguous.
    #[error("invalid store key: {0}")]
    InvalidKey(&'static str),
    /// `complete` was given a result larger than the item budget allows.
    #[error("result is {len} bytes; at most {MAX_RESULT_BYTES} are stored")]
    ResultTooLarge {
        /// Size of the rejected result in bytes.
        len: usize,
    },
    /// `complete` or `release` by a claimant whose claim is no longer current: its lease
    /// expired and another invocation claimed the key, or it already finished. The caller
    /// must not assume its outcome was recorded.
    #[error("claim on `{key}` is no longer held by this claimant")]
    ClaimLost {
        /// The partition key of the claim (contains no personal data).
        key: String,
    },
    /// An item in the table does not have the shape this code writes.
    #[error("malformed item `{pk}`: {reason}")]
    Malformed {
        /// The item's partition key.
        pk: String,
        /// What was wrong.
        reason: String,
    },
    /// The backend (DynamoDB or the network to it; the local relay's SQLite file) failed;
    /// usually worth retrying later.
    #[error("store backend {operation} failed: {message}")]
    Backend {
        /// The API operation, e.g. `PutItem`.
        operation: &'static str,
        /// The SDK's full error context.
        message: String,
        /// The SDK error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl StoreError {
    /// True when retrying the same call later may succeed (backend and network failures).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Backend { .. })
    }
}
