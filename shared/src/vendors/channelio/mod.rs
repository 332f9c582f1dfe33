//! Channel.io: `wire` holds the bodies, `client` one method per endpoint, `sync` applies a
//! [`crate::plan::ChannelPlan`].

pub mod client;
pub mod sync;
pub use relay_core::vendors::channelio::wire;

pub use client::{ChannelClient, ChannelConfig, DEFAULT_BASE_URL};

/// Channelio's settings, pacing and client.
impl crate::vendors::registry::VendorAdapter for relay_core::vendors::channelio::Channelio {
    type Config = ChannelConfig;
    const BASE_URL_ENV: &'static str = "RELAY_CHANNELIO_BASE_URL";

    fn base_url(config: &mut ChannelConfig) -> &mut String {
        &mut config.base_url
    }

    fn http(config: &ChannelConfig) -> &crate::vendors::HttpSettings {
        &config.http
    }

    /// Channel.io documents no number (only its `x-ratelimit-*` headers and 429s): the
    /// earlier fixed schedule's meaning, about 10 per second with bursts of about 10 (it
    /// allowed 19 in a sliding second and 609 in a minute), as windows.
    fn default_limits() -> &'static [crate::store::Window] {
        const WINDOWS: [crate::store::Window; 2] = [
            crate::store::Window::new(20, std::time::Duration::from_secs(1)),
            crate::store::Window::new(600, std::time::Duration::from_secs(60)),
        ];
        &WINDOWS
    }

    fn build(
        config: &ChannelConfig,
        gate: std::sync::Arc<dyn crate::vendors::CallGate>,
    ) -> Result<
        std::sync::Arc<dyn crate::vendors::deliver::Deliver>,
        crate::vendors::ClientBuildError,
    > {
        let sync = std::sync::Arc::new(ChannelClient::new(config)?.with_gate(gate));
        Ok(std::sync::Arc::new(
            crate::vendors::deliver::Synced::<Self>::new(sync),
        ))
    }
}
