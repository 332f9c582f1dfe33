//! Omnivibe client: the agent profile endpoint of `vendor-docs/omnivibe-update-profile.txt`.

use std::sync::Arc;

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;

use super::wire::{Agent, UpdateProfile};
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::http::{
    ClientBuildError, HttpCore, HttpSettings, VendorResponse, auth_headers,
};
use crate::vendors::sync::{CallGate, open_gate};

/// Omnivibe's production host.
pub const DEFAULT_BASE_URL: &str = "https://app.omnivibe.com.br";

/// Omnivibe connection settings (`api_access_token` of the agent whose profile is kept).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmnivibeConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub api_access_token: SecretString,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

impl OmnivibeConfig {
    /// Settings with the default timeouts.
    pub fn new(base_url: impl Into<String>, api_access_token: SecretString) -> Self {
        OmnivibeConfig {
            base_url: base_url.into(),
            api_access_token,
            http: HttpSettings::default(),
        }
    }
}

impl std::fmt::Debug for OmnivibeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmnivibeConfig")
            .field("base_url", &self.base_url)
            .field("api_access_token", &crate::model::redact::REDACTED)
            .field("http", &self.http)
            .finish()
    }
}

/// Omnivibe. Built once per process.
pub struct OmnivibeClient {
    pub(super) core: HttpCore,
    pub(super) gate: Arc<dyn CallGate>,
}

impl std::fmt::Debug for OmnivibeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmnivibeClient")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl OmnivibeClient {
    pub fn new(config: &OmnivibeConfig) -> Result<Self, ClientBuildError> {
        let auth = auth_headers(
            Vendor::Omnivibe,
            &[("api_access_token", &config.api_access_token, None)],
        )?;
        Ok(OmnivibeClient {
            core: HttpCore::new(Vendor::Omnivibe, &config.base_url, auth, config.http)?,
            gate: open_gate(),
        })
    }

    /// Paces every call of [`crate::vendors::VendorSync::sync`] through `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn CallGate>) -> Self {
        self.gate = gate;
        self
    }

    /// `PUT /api/v1/profile` → 200 with the agent.
    pub async fn update_profile(
        &self,
        body: &UpdateProfile,
    ) -> Result<VendorResponse<Agent>, VendorError> {
        const OP: &str = "omnivibe.update_profile";
        let url = self.core.url(&["api", "v1", "profile"]);
        let reply = self.core.call(OP, Method::PUT, url, Some(body)).await?;
        let agent = reply.json(Vendor::Omnivibe, OP)?;
        Ok(reply.with(agent))
    }
}
