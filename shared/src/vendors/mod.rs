//! The vendor APIs (Ocamba Hood, Channel.io, Omnivibe with its Chatwoot contacts).
//!
//! Each vendor has, here, a `client` with one typed method per endpoint, a `sync` that
//! applies the vendor's plan through [`VendorSync`], and in its `mod.rs` the
//! [`VendorAdapter`] (settings, limits, how its deliverer is built); its `wire` bodies and
//! its planning live in `relay-core` (`relay_core::vendors::<vendor>`), re-exported as
//! `wire`. `registry` turns the one list of vendors into [`VendorConfigs`] and
//! [`Targets`]; `deliver` is how one change reaches one vendor.
//! Shared by all: `http` (one reqwest client per vendor, auth headers marked sensitive),
//! `error` (one classification, [`VendorError`]), `rate_limit` (headers parsed on every
//! answer), and `sync` (outcome, error, the [`CallGate`] pacing hook).

pub mod deliver;
pub mod error;
pub mod http;
pub mod rate_limit;
pub mod registry;
pub mod sync;

pub use channelio::{ChannelClient, ChannelConfig};
pub use chatwoot::{ChatwootClient, ChatwootConfig};
pub use deliver::{Deliver, Delivered, DeliveryError, Targets};
pub use error::{ErrorClass, TransientCause, VendorError};
pub use hood::{HoodClient, HoodConfig};
pub use http::{ClientBuildError, HttpSettings, USER_AGENT, VendorResponse};
pub use omnivibe::{OmnivibeAgent, OmnivibeAgents, OmnivibeClient, OmnivibeConfig};
pub use rate_limit::{RateLimitInfo, Reset, RetryAfter};
pub use registry::{
    Limits, LimitsConfig, LimitsConfigError, VendorAdapter, VendorConfigs, VendorLimits,
    WindowConfig, default_limits, default_windows,
};
pub use sync::{CallGate, OpenGate, SyncError, SyncOutcome, VendorSync};

pub use relay_core::vendors::{Vendor, wire_id};

/// One folder per vendor, from the one list (`relay_core::for_each_vendor`).
macro_rules! vendor_modules {
    ($($(#[$doc:meta])* $variant:ident($module:ident),)+) => {
        $(pub mod $module;)+
    };
}

relay_core::for_each_vendor!(vendor_modules);
