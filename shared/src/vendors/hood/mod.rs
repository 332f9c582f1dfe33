//! Ocamba Hood: `wire` holds the bodies, `client` one method per endpoint, `sync` applies a
//! [`crate::plan::HoodPlan`].

pub mod client;
pub mod sync;
pub mod wire;

pub use client::{DEFAULT_BASE_URL, HoodClient, HoodConfig, ProfileFilter};
