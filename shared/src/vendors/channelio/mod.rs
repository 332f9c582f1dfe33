//! Channel.io: `wire` holds the bodies, `client` one method per endpoint, `sync` applies a
//! [`crate::plan::ChannelPlan`].

pub mod client;
pub mod sync;
pub use relay_core::vendors::channelio::wire;

pub use client::{ChannelClient, ChannelConfig, DEFAULT_BASE_URL};
