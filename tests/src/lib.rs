//! Helpers shared by the workspace integration tests (servers the harness starts, fixtures).

pub mod dynamodb_local;
pub mod store_conformance;
