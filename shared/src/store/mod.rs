//! What must hold across every running instance: idempotency (each event takes effect
//! once), links (which vendor record a contact maps to, with a stale-update guard) and the
//! vendor rate limiters. Traits here; adapters in [`dynamo`] (production) and [`memory`]
//! (local runs and tests), held to the same behaviour by one conformance suite.
//!
//! # The table
//!
//! One DynamoDB table, partition key `pk` (string) only, on-demand billing, TTL on
//! `expires_at`. [`dynamo::create_table`] is its only definition.
//!
//! | item | `pk` | attributes |
//! |---|---|---|
//! | inbound event claim | `evt#<source>#<sender event id>` | `state`, `payload_hash`, `lease_until`, `claim_token`, `result`, `expires_at` |
//! | vendor delivery | `dlv#<vendor>#<event key>` | same as a claim |
//! | link | `lnk#<vendor>#<sha256 hex of contact key>` | `vendor_id`, `version`, `fields` |
//! | limiter | `lim#<vendor>#<account>` | `tat` |
//!
//! * `state` (S): `in_progress`, `completed` or `released`.
//! * `payload_hash` (S): sha256 hex of the payload of the first claim.
//! * `lease_until` (N, epoch ms): end of the in-progress lease; only while in progress.
//! * `claim_token` (S, uuid v4): the current claimant's fencing token; only while in progress.
//! * `result` (S, ≤ 1 KB): what the claimant recorded; only when completed.
//! * `expires_at` (N, epoch **seconds**): TTL; claims and deliveries, 7 days by default.
//! * `vendor_id` (S, optional): the vendor's id for the record, e.g. a Hood profile id.
//! * `version` (N, epoch ms): `occurred_at` of the newest change applied to the link.
//! * `fields` (M of S): per vendor field, a fingerprint of the value last sent.
//! * `tat` (N, epoch ms): the GCRA theoretical arrival time.
//!
//! Contact keys (e-mail, phone) appear only as sha256 hex: no e-mail or phone at rest.
//!
//! # Calls per operation
//!
//! claim 1 (PutItem; a duplicate learns the state from `ALL_OLD` on the failed condition),
//! complete 1, release 1, link read 1, link write 1, permit 1 in the common case (2 when
//! this instance's view of the schedule was out of date), penalty 1.

pub mod clock;
pub mod dynamo;
mod error;
pub mod idempotency;
pub mod keys;
pub mod limiter;
pub mod link;
pub mod memory;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::StoreError;
pub use idempotency::{
    Claim, ClaimOutcome, ClaimRecord, ClaimState, IdempotencyStore, MAX_RESULT_BYTES,
};
pub use keys::{ContactKeyHash, IdempotencyKey, LimiterKey, LinkKey, PayloadHash};
pub use limiter::{GcraParams, Permit, RateLimiter, wait_for_permit};
pub use link::{Link, LinkPut, LinkStore};
