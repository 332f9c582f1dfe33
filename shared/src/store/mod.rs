//! What must hold across every running instance: idempotency (each event takes effect
//! once), links (which vendor record a contact maps to, with a stale-update guard) and the
//! vendor rate limiters. Traits here; adapters in [`dynamo`] (production) and [`memory`]
//! (local runs and tests), held to the same behaviour by one conformance suite.
//!
//! # The table
//!
//! One DynamoDB table, partition key `pk` (string) only, on-demand billing, TTL on
//! `expires_at`, and the keys-only index `recent` listing the delivery log. [`dynamo::create_table`] is its only definition.
//!
//! | item | `pk` | attributes |
//! |---|---|---|
//! | inbound event claim (+ its delivery-log entry, `j_*` and `d`, see [`journal`]) | `evt#<source>#<sender event id>` | `state`, `payload_hash`, `lease_until`, `claim_token`, `result`, `expires_at` |
//! | kept raw request (sealed, see [`sealed`]) | `raw#<id>` | `r_source`, `r_event`, `r_received`, `r_body`, `expires_at` |
//! | identifier (see [`identity`]) | `idn#<HMAC-SHA256 hex of the identifier>` | `person` |
//! | person | `per#<person id>` | `ids`, `version`, `merged_into` |
//! | link (per vendor and person) | `lnk#<vendor>#<person id>` (a message from before identity resolution: `lnk#<vendor>#<sha256 hex of contact key>`) | `vendor_id`, `fields`, `recent`, `lease_token`, `lease_until` |
//! | limiter | `lim#<vendor>#<account>` | `tat` |
//!
//! * `state` (S): `in_progress`, `completed` or `released`.
//! * `payload_hash` (S): sha256 hex of the payload of the first claim.
//! * `lease_until` (N, epoch ms): end of the in-progress lease (claims) or of a delivery's
//!   lease (links); only while held.
//! * `claim_token` / `lease_token` (S, uuid v4): the holder's fencing token; only while held.
//! * `result` (S, ≤ 1 KB): what the claimant recorded; only when completed.
//! * `expires_at` (N, epoch **seconds**): TTL; inbound claims, 7 days by default. Links do
//!   not expire.
//! * `vendor_id` (S, optional): the vendor's id for the record, e.g. a Hood profile id.
//! * `fields` (M of S): per vendor field, `<fingerprint>@<version>`: a hash of the value last
//!   applied and the `occurred_at` (epoch ms) of the change that set it.
//! * `recent` (L of S): ids (16 hex) of the last 32 deliveries applied to the link.
//! * `tat` (N, epoch ms): the GCRA theoretical arrival time.
//!
//! * `person` (S): the person id an identifier points to (`p` + 32 hex of a UUIDv7).
//! * `ids` (L of S): the identifier hashes pointing at the person; `version` (N) its fencing
//!   counter; `merged_into` (S) the survivor once merged.
//!
//! Identifiers (e-mail, phone, a source's key) appear only as keyed hashes (HMAC under the
//! deployment's identity key), older contact keys only as sha256 hex: no e-mail or phone at
//! rest.
//!
//! # Calls per operation
//!
//! claim 1 (PutItem; a duplicate learns the state from `ALL_OLD` on the failed condition),
//! complete 1, release 1; link lease 1 (UpdateItem returning the link; a redelivery or a
//! busy link learns it from `ALL_OLD`), commit 1, abandon 1; permit 1 in the common case
//! (2 when this instance's view of the schedule was out of date), penalty 1; identity
//! resolution 1 for a known person (BatchGetItem), 2 for a new person or a new identifier
//! (+ TransactWriteItems), 3–4 for a merge (+ GetItem of the loser).

pub mod clock;
pub mod dynamo;
mod error;
pub mod idempotency;
pub mod identity;
pub mod journal;
pub mod keys;
pub mod limiter;
pub mod link;
pub mod memory;
pub mod sealed;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::StoreError;
pub use idempotency::{
    Claim, ClaimOutcome, ClaimRecord, ClaimState, IdempotencyStore, MAX_RESULT_BYTES,
};
pub use identity::{
    BadIdentityKey, ClaimedWithPerson, IdentifierHash, IdentityError, IdentityKey, IdentityStore,
    PERSON_CACHE_CAPACITY, PersonCache, PersonClaim, PersonGuess, PersonRecord, Resolved, Written,
};
pub use journal::{
    DEFAULT_JOURNAL_TTL, DeliveryEntry, DeliveryStatus, EventEntry, EventFilter, EventJourney,
    Journal, RawId, RawRecord, mask_contact,
};
pub use keys::{ContactKeyHash, IdempotencyKey, LimiterKey, LinkKey, PayloadHash};
pub use limiter::{
    Booking, GcraParams, LimitsError, Pacing, Permit, RateLimiter, Reservation, Window,
    wait_for_permit,
};
pub use link::{
    AppliedField, DeliveryId, LeaseOutcome, Link, LinkLease, LinkStore, LogRecord, RECENT_LIMIT,
};
pub use sealed::{RawKey, SealError};
