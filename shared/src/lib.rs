//! profile-relay's library: everything the Lambda functions and the local `relay` CLI share.
//!
//! Dependencies point inward: `ingress`, `queue`, `vendors` and `store` do I/O; `model`,
//! `mapping` and `plan` are pure, so the rules that decide *what* is sent can be tested
//! without any server.

pub mod delivery;
pub mod ingress;
pub mod lambda;
pub mod local;
pub mod mapping;
pub mod model;
pub mod plan;
pub mod queue;
pub mod replay;
pub mod runtime;
pub mod samples;
pub mod sandbox;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod vendors;
pub mod worker;
