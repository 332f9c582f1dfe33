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
    /// The agents whose profiles follow their staff records. `PUT /api/v1/profile` changes
    /// the profile of the token's owner, so each staff id has its own agent token; a change
    /// for a staff id not listed here is skipped (logged), never sent with another agent's
    /// token.
    #[serde(default)]
    pub agents: Vec<OmnivibeAgent>,
    /// Refused when set: one token without a staff id would let every staff member's
    /// changes overwrite that one agent's profile. Kept so the error can say what to write.
    #[serde(default)]
    pub api_access_token: Option<SecretString>,
    #[serde(default)]
    pub http: HttpSettings,
}

/// One agent: the staff id as your app's events carry it (the mapping's `key`, without the
/// source's namespace, e.g. `s_7`) and that agent's own API access token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmnivibeAgent {
    pub staff_id: String,
    pub api_access_token: SecretString,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

impl OmnivibeConfig {
    /// A config with one agent.
    pub fn new(
        base_url: impl Into<String>,
        staff_id: impl Into<String>,
        api_access_token: SecretString,
    ) -> Self {
        OmnivibeConfig {
            base_url: base_url.into(),
            agents: vec![OmnivibeAgent {
                staff_id: staff_id.into(),
                api_access_token,
            }],
            api_access_token: None,
            http: HttpSettings::default(),
        }
    }
}

impl std::fmt::Debug for OmnivibeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let staff: Vec<&str> = self.agents.iter().map(|a| a.staff_id.as_str()).collect();
        f.debug_struct("OmnivibeConfig")
            .field("base_url", &self.base_url)
            .field("agents (staff ids)", &staff)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

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
    /// The client of the config's only agent (tests and tools); see [`Self::for_agent`].
    pub fn new(config: &OmnivibeConfig) -> Result<Self, ClientBuildError> {
        match config.agents.as_slice() {
            [agent] => Self::for_agent(config, agent),
            _ => Err(ClientBuildError::Config {
                vendor: Vendor::Omnivibe,
                problem: "expected exactly one agent".into(),
            }),
        }
    }

    /// The client that changes `agent`'s own profile.
    pub fn for_agent(
        config: &OmnivibeConfig,
        agent: &OmnivibeAgent,
    ) -> Result<Self, ClientBuildError> {
        let auth = auth_headers(
            Vendor::Omnivibe,
            &[("api_access_token", &agent.api_access_token, None)],
        )?;
        Ok(OmnivibeClient {
            core: HttpCore::new(Vendor::Omnivibe, &config.base_url, auth, config.http)?,
            gate: open_gate(),
        })
    }

    /// One client per configured agent, by staff id. A lone `api_access_token` (which
    /// would let every staff member overwrite its owner's profile) is refused with what
    /// to write instead.
    pub fn agents(config: &OmnivibeConfig) -> Result<Vec<(String, Self)>, ClientBuildError> {
        if config.api_access_token.is_some() {
            return Err(ClientBuildError::Config {
                vendor: Vendor::Omnivibe,
                problem: "`api_access_token` alone changes the profile of its owner for every staff id; \
                          list each agent instead: agents = [{ staff_id = \"s_7\", api_access_token = \"...\" }]"
                    .into(),
            });
        }
        config
            .agents
            .iter()
            .map(|agent| Ok((agent.staff_id.clone(), Self::for_agent(config, agent)?)))
            .collect()
    }

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
