//! Omnivibe client: the agent profile endpoint of `vendor-docs/omnivibe-update-profile.txt`.

use std::collections::BTreeMap;
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

/// Omnivibe connection settings: the agents whose own profiles are kept, each by staff id
/// with its own `api_access_token` (checked by [`OmnivibeConfig::problems`]).
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

/// One agent: the staff id as your app's events carry it (the value of the mapping's
/// `[vendors.omnivibe] staff_id` field, built in `custom.staff_id` from `detail.staffId`,
/// e.g. `s_7`) and that agent's own API access token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmnivibeAgent {
    pub staff_id: String,
    pub api_access_token: SecretString,
}

impl std::fmt::Debug for OmnivibeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmnivibeAgent")
            .field("staff_id", &self.staff_id)
            .finish_non_exhaustive()
    }
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

/// What to write instead of a lone `api_access_token`, in both setting formats.
const AGENTS_EXAMPLE: &str = "list each agent instead: `agents = [{ staff_id = \"s_7\", api_access_token = \"...\" }]` in relay.toml, `\"agents\": [{\"staff_id\": \"s_7\", \"api_access_token\": \"...\"}]` in the vendor secrets JSON";

impl OmnivibeConfig {
    /// Why these settings cannot be used, each problem naming the agent by its position and
    /// staff id, never by its token: a lone `api_access_token` (it would change its owner's
    /// profile for every staff id), no agent at all, an empty staff id or token, a staff id
    /// listed twice, or one token given to two staff ids (both would change one profile).
    pub fn problems(&self) -> Vec<String> {
        use secrecy::ExposeSecret;

        let mut problems = Vec::new();
        if self.api_access_token.is_some() {
            problems.push(format!(
                "`api_access_token` alone would change the profile of its owner for every staff id; {AGENTS_EXAMPLE}"
            ));
        } else if self.agents.is_empty() {
            problems.push(format!(
                "no agents: every staff change would be skipped; {AGENTS_EXAMPLE}"
            ));
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut tokens: BTreeMap<&str, &str> = BTreeMap::new();
        for (index, agent) in self.agents.iter().enumerate() {
            let staff_id = agent.staff_id.trim();
            let token = agent.api_access_token.expose_secret().trim();
            if staff_id.is_empty() {
                problems.push(format!("agents[{index}]: `staff_id` is empty"));
            } else if let Some(first) = seen.insert(staff_id, index) {
                problems.push(format!(
                    "agents[{index}]: staff id `{staff_id}` is already listed at agents[{first}]; each staff id has one agent"
                ));
            }
            if token.is_empty() {
                problems.push(format!(
                    "agents[{index}] (staff id `{staff_id}`): `api_access_token` is empty"
                ));
            } else if let Some(other) = tokens.insert(token, staff_id) {
                problems.push(format!(
                    "agents[{index}] (staff id `{staff_id}`) has the same token as staff id `{other}`: `PUT /api/v1/profile` changes the token owner's profile, so each agent needs its own token"
                ));
            }
        }
        problems
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

    /// One client per configured agent, by staff id (trimmed). The settings are refused
    /// with every problem at once (see [`OmnivibeConfig::problems`]).
    pub fn agents(config: &OmnivibeConfig) -> Result<Vec<(String, Self)>, ClientBuildError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(ClientBuildError::Config {
                vendor: Vendor::Omnivibe,
                problem: problems.join("; "),
            });
        }
        config
            .agents
            .iter()
            .map(|agent| {
                Ok((
                    agent.staff_id.trim().to_string(),
                    Self::for_agent(config, agent)?,
                ))
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(agents: &[(&str, &str)]) -> OmnivibeConfig {
        let mut c = OmnivibeConfig::new(DEFAULT_BASE_URL, "x", SecretString::from("x"));
        c.agents = agents
            .iter()
            .map(|(staff_id, token)| OmnivibeAgent {
                staff_id: (*staff_id).into(),
                api_access_token: SecretString::from(*token),
            })
            .collect();
        c
    }

    #[test]
    fn staff_ids_are_trimmed_before_they_are_compared_and_used() {
        let problems = config(&[("s_7", "tok-a"), (" s_7 ", "tok-b")]).problems();
        assert_eq!(
            problems,
            ["agents[1]: staff id `s_7` is already listed at agents[0]; each staff id has one agent"]
        );
        let agents = OmnivibeClient::agents(&config(&[(" s_7 ", "tok-a"), ("s_9", "tok-b")]))
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>();
        assert_eq!(agents, ["s_7", "s_9"]);
    }

    #[test]
    fn no_agents_or_a_lone_token_is_refused_saying_what_to_write_in_both_formats() {
        let none = config(&[]).problems();
        assert_eq!(none.len(), 1);
        assert!(none[0].starts_with("no agents"), "{none:?}");
        let mut lone = config(&[]);
        lone.api_access_token = Some(SecretString::from("tok-lone"));
        let error = OmnivibeClient::agents(&lone).unwrap_err().to_string();
        assert!(error.starts_with("omnivibe: `api_access_token` alone"), "{error}");
        assert!(error.contains("in relay.toml") && error.contains("in the vendor secrets JSON"));
        assert!(!error.contains("tok-lone"), "{error}");
        let shown = format!("{lone:?} {:?}", lone.agents);
        assert!(!shown.contains("tok-lone"), "{shown}");
    }

    #[test]
    fn problems_name_agents_by_position_and_staff_id_never_by_token() {
        let problems = config(&[("s_7", "tok-same"), ("s_9", "tok-same"), ("s_11", " ")]).problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("agents[1] (staff id `s_9`) has the same token as staff id `s_7`"));
        assert_eq!(problems[1], "agents[2] (staff id `s_11`): `api_access_token` is empty");
        assert!(problems.iter().all(|p| !p.contains("tok-same")));
    }
}
