//! Channel.io Open API v5 client (`vendor-docs/channelio-update-user.txt`, plus the upsert
//! and read by member id from `vendor-notes.md`).

use std::sync::Arc;

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;

use super::wire::{UserBody, UserResponse};
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::http::{
    ClientBuildError, HttpCore, HttpSettings, VendorResponse, auth_headers,
};
use crate::vendors::sync::{CallGate, open_gate};

/// Channel.io's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.channel.io";

/// Channel.io connection settings (`x-access-key` + `x-access-secret`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub access_key: SecretString,
    pub access_secret: SecretString,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

impl ChannelConfig {
    /// Settings with the default timeouts.
    pub fn new(
        base_url: impl Into<String>,
        access_key: SecretString,
        access_secret: SecretString,
    ) -> Self {
        ChannelConfig {
            base_url: base_url.into(),
            access_key,
            access_secret,
            http: HttpSettings::default(),
        }
    }
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("base_url", &self.base_url)
            .field("access_key", &crate::model::redact::REDACTED)
            .field("access_secret", &crate::model::redact::REDACTED)
            .field("http", &self.http)
            .finish()
    }
}

/// Channel.io. Built once per process.
pub struct ChannelClient {
    pub(super) core: HttpCore,
    pub(super) gate: Arc<dyn CallGate>,
}

impl std::fmt::Debug for ChannelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelClient")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl ChannelClient {
    pub fn new(config: &ChannelConfig) -> Result<Self, ClientBuildError> {
        let auth = auth_headers(
            Vendor::Channelio,
            &[
                ("x-access-key", &config.access_key, None),
                ("x-access-secret", &config.access_secret, None),
            ],
        )?;
        Ok(ChannelClient {
            core: HttpCore::new(Vendor::Channelio, &config.base_url, auth, config.http)?,
            gate: open_gate(),
        })
    }

    /// Paces every call of [`crate::vendors::VendorSync::sync`] through `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn CallGate>) -> Self {
        self.gate = gate;
        self
    }

    /// `PATCH /open/v5/users/{userId}` → 200 `{user, online}`.
    pub async fn patch_user(
        &self,
        user_id: &str,
        body: &UserBody,
    ) -> Result<VendorResponse<UserResponse>, VendorError> {
        const OP: &str = "channelio.patch_user";
        let url = self.core.url(&["open", "v5", "users", user_id]);
        let reply = self.core.call(OP, Method::PATCH, url, Some(body)).await?;
        let user = reply.json(Vendor::Channelio, OP)?;
        Ok(reply.with(user))
    }

    /// `PUT /open/v5/users/@{memberId}`: creates or updates the user with that member id.
    pub async fn upsert_user(
        &self,
        member_id: &str,
        body: &UserBody,
    ) -> Result<VendorResponse<UserResponse>, VendorError> {
        const OP: &str = "channelio.upsert_user";
        let url = self
            .core
            .url(&["open", "v5", "users", &format!("@{member_id}")]);
        let reply = self.core.call(OP, Method::PUT, url, Some(body)).await?;
        let user = reply.json(Vendor::Channelio, OP)?;
        Ok(reply.with(user))
    }

    /// `GET /open/v5/users/@{memberId}`; `None` on 404.
    pub async fn get_user_by_member_id(
        &self,
        member_id: &str,
    ) -> Result<VendorResponse<Option<UserResponse>>, VendorError> {
        const OP: &str = "channelio.get_user";
        let url = self
            .core
            .url(&["open", "v5", "users", &format!("@{member_id}")]);
        match self.core.call::<()>(OP, Method::GET, url, None).await {
            Ok(reply) => {
                let user = reply.json(Vendor::Channelio, OP)?;
                Ok(reply.with(Some(user)))
            }
            Err(VendorError::Permanent {
                status: 404,
                rate_limit,
                ..
            }) => Ok(VendorResponse {
                value: None,
                status: 404,
                rate_limit,
            }),
            Err(e) => Err(e),
        }
    }
}
