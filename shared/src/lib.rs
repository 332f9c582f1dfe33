//! profile-relay's production library: the adapters and handlers the Lambda functions run.
//!
//! `ingress` (signature schemes, the ingest use case, the HTTP routes), `vendors` (one HTTP
//! client and sync per vendor), `store` (claims, links, limiter: DynamoDB and in-memory),
//! `queue` (SQS and in-memory), `worker` (the delivery loop), `lambda`/`runtime`/`secrets`
//! (the Lambda shells and start-up) — all built on the pure core, `relay-core`, whose
//! `model`, `mapping` and `plan` are re-exported here. No mock vendors, samples, demo or
//! local-serve code: those live in `relay-sandbox` and `relay-local`.

pub mod assembly;
pub mod delivery;
pub mod enrich;
pub mod ingress;
pub mod lambda;
pub mod queue;
pub mod replay;
pub mod runtime;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod vendors;
pub mod worker;

pub use relay_core::plans as plan;
pub use relay_core::{mapping, model};
