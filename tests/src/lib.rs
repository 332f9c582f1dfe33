//! Helpers shared by the workspace integration tests (servers the harness starts, fixtures).

pub mod moto;
pub mod queue_conformance;
pub mod vendors;
pub mod webhooks;
