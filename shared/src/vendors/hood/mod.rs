//! Ocamba Hood: `wire` holds the bodies, `client` one method per endpoint, `sync` applies a
//! [`crate::plan::HoodPlan`].

pub mod client;
pub mod lookup;
pub mod sync;
pub use relay_core::vendors::hood::wire;

pub use client::{DEFAULT_BASE_URL, HoodClient, HoodConfig, ProfileFilter};

/// Hood's settings, pacing and client.
impl crate::vendors::registry::VendorAdapter for relay_core::vendors::hood::Hood {
    type Config = HoodConfig;
    const BASE_URL_ENV: &'static str = "RELAY_HOOD_BASE_URL";

    fn base_url(config: &mut HoodConfig) -> &mut String {
        &mut config.base_url
    }

    fn http(config: &HoodConfig) -> &crate::vendors::HttpSettings {
        &config.http
    }

    /// Hood documents its limits: 10 per second and 150 per minute per account (burst
    /// 10/s, steady 150/m on its create, update and property pages).
    fn default_limits() -> &'static [crate::store::Window] {
        &crate::store::GcraParams::HOOD_WINDOWS
    }

    fn build(
        config: &HoodConfig,
        gate: std::sync::Arc<dyn crate::vendors::CallGate>,
    ) -> Result<
        std::sync::Arc<dyn crate::vendors::deliver::Deliver>,
        crate::vendors::ClientBuildError,
    > {
        let sync = std::sync::Arc::new(HoodClient::new(config)?.with_gate(gate));
        Ok(std::sync::Arc::new(
            crate::vendors::deliver::Synced::<Self>::new(sync),
        ))
    }
}
