//! Omnivibe agent profile: `wire` holds the body, `client` the endpoint, `sync` applies an
//! [`crate::plan::OmnivibePlan`].

pub mod client;
pub mod sync;
pub use relay_core::vendors::omnivibe::wire;

pub use client::{DEFAULT_BASE_URL, OmnivibeAgent, OmnivibeClient, OmnivibeConfig};
