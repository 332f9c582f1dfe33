//! Omnivibe agent profile: `wire` holds the body, `client` the endpoint, `sync` applies an
//! [`crate::plan::OmnivibePlan`].

pub mod client;
pub mod sync;
pub use relay_core::vendors::omnivibe::wire;

pub use client::{DEFAULT_BASE_URL, OmnivibeAgent, OmnivibeClient, OmnivibeConfig};

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use relay_core::vendors::omnivibe::Omnivibe;

use crate::mapping::Mappings;
use crate::model::{ContactChange, ContactKey};
use crate::plan::{SkipReason, VendorState};
use crate::vendors::deliver::{Deliver, Delivered, DeliveryError, apply};
use crate::vendors::registry::VendorAdapter;
use crate::vendors::{CallGate, ClientBuildError, HttpSettings, VendorSync};

/// Omnivibe's adapters by staff id: `PUT /api/v1/profile` changes the token owner's
/// profile, so each agent's changes go through that agent's own token only, and a change
/// for a staff id with no agent is skipped (`agent_not_configured`).
#[derive(Clone, Default)]
pub struct OmnivibeAgents {
    by_staff_id: BTreeMap<String, Arc<dyn VendorSync<Plan = relay_core::plans::OmnivibePlan>>>,
}

impl OmnivibeAgents {
    /// Adds the adapter of the agent `staff_id`.
    pub fn insert(
        &mut self,
        staff_id: impl Into<String>,
        sync: Arc<dyn VendorSync<Plan = relay_core::plans::OmnivibePlan>>,
    ) {
        self.by_staff_id.insert(staff_id.into(), sync);
    }

    /// The agent of the staff member `key` names: the configured staff id is the key's id
    /// (`s_7` of `app-staff:s_7`), or the whole key.
    fn agent_for(
        &self,
        key: &ContactKey,
    ) -> Option<&Arc<dyn VendorSync<Plan = relay_core::plans::OmnivibePlan>>> {
        let whole = key.as_str();
        let id = whole.split_once(':').map_or(whole, |(_, id)| id);
        self.by_staff_id
            .get(id)
            .or_else(|| self.by_staff_id.get(whole))
    }
}

#[async_trait]
impl Deliver for OmnivibeAgents {
    async fn deliver(
        &self,
        mappings: &Mappings,
        change: &ContactChange,
        state: &VendorState,
    ) -> Option<Result<Delivered, DeliveryError>> {
        let mapping = mappings.vendors.get::<Omnivibe>()?;
        let Some(sync) = self.agent_for(&change.contact.key) else {
            tracing::info!(staff = ?change.contact.key, "no Omnivibe agent is configured for this staff id; skipped");
            return Some(Ok(Delivered::skipped(
                state,
                SkipReason::AgentNotConfigured,
            )));
        };
        let planned = <Omnivibe as relay_core::vendors::VendorModel>::plan(change, state, mapping);
        Some(apply::<Omnivibe>(sync.as_ref(), planned, state).await)
    }
}

/// Omnivibe's settings, pacing and agents.
impl VendorAdapter for Omnivibe {
    type Config = OmnivibeConfig;
    const BASE_URL_ENV: &'static str = "RELAY_OMNIVIBE_BASE_URL";

    fn base_url(config: &mut OmnivibeConfig) -> &mut String {
        &mut config.base_url
    }

    fn http(config: &OmnivibeConfig) -> &HttpSettings {
        &config.http
    }

    /// The Omnivibe host's throttle (about 3000 per minute per IP, shared with Chatwoot):
    /// the earlier fixed schedule's meaning, well under it (see Chatwoot's).
    fn default_limits() -> &'static [crate::store::Window] {
        &crate::vendors::registry::OMNIVIBE_HOST_WINDOWS
    }

    fn build(
        config: &OmnivibeConfig,
        gate: Arc<dyn CallGate>,
    ) -> Result<Arc<dyn Deliver>, ClientBuildError> {
        let mut agents = OmnivibeAgents::default();
        for (staff_id, client) in OmnivibeClient::agents(config)? {
            agents.insert(staff_id, Arc::new(client.with_gate(gate.clone())));
        }
        Ok(Arc::new(agents))
    }
}
