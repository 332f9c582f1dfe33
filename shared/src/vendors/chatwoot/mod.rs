//! Chatwoot contacts: `wire` holds the bodies, `client` one method per endpoint, `sync`
//! applies a [`crate::plan::ChatwootPlan`].

pub mod client;
pub mod sync;
pub use relay_core::vendors::chatwoot::wire;

pub use client::{ChatwootClient, ChatwootConfig, DEFAULT_BASE_URL};
