//! Chatwoot contacts: `wire` holds the bodies, `client` one method per endpoint, `sync`
//! applies a [`crate::plan::ChatwootPlan`].

pub mod client;
pub mod sync;
pub use relay_core::vendors::chatwoot::wire;

pub use client::{ChatwootClient, ChatwootConfig, DEFAULT_BASE_URL};

/// Chatwoot's settings, pacing and client.
impl crate::vendors::registry::VendorAdapter for relay_core::vendors::chatwoot::Chatwoot {
    type Config = ChatwootConfig;
    const BASE_URL_ENV: &'static str = "RELAY_OMNIVIBE_BASE_URL";

    fn base_url(config: &mut ChatwootConfig) -> &mut String {
        &mut config.base_url
    }

    fn http(config: &ChatwootConfig) -> &crate::vendors::HttpSettings {
        &config.http
    }

    /// Chatwoot's default throttle is about 3000 requests per minute per IP, shared with
    /// the Omnivibe profile on the same host (its own limiter): each keeps the earlier fixed
    /// schedule's meaning, about 20 per second with bursts (it allowed 29 in a sliding
    /// second), so the two stay well under 3000 together.
    fn default_limits() -> &'static [crate::store::Window] {
        &crate::vendors::registry::OMNIVIBE_HOST_WINDOWS
    }

    fn build(
        config: &ChatwootConfig,
        gate: std::sync::Arc<dyn crate::vendors::CallGate>,
    ) -> Result<
        std::sync::Arc<dyn crate::vendors::deliver::Deliver>,
        crate::vendors::ClientBuildError,
    > {
        let sync = std::sync::Arc::new(ChatwootClient::new(config)?.with_gate(gate));
        Ok(std::sync::Arc::new(
            crate::vendors::deliver::Synced::<Self>::new(sync),
        ))
    }
}
