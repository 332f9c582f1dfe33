//! Helpers shared by the workspace integration tests (servers the harness starts, fixtures).

pub mod browser;
pub mod dynamodb_local;
pub mod identity_conformance;
pub mod journal_conformance;
pub mod local;
pub mod moto;
pub mod pipeline;
pub mod queue_conformance;
pub mod sqs_pipeline;
pub mod stateful_vendors;
pub mod store_conformance;
pub mod vendors;
pub mod webhooks;
