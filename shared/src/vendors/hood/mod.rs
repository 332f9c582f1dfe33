//! Ocamba Hood: `wire` holds the bodies, `client` one method per endpoint, `sync` applies a
//! [`crate::plan::HoodPlan`].

pub mod client;
pub mod sync;
pub use relay_core::vendors::hood::wire;

pub use client::{DEFAULT_BASE_URL, HoodClient, HoodConfig, ProfileFilter};
