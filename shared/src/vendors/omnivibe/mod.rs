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
use crate::model::ContactChange;
use crate::plan::{SkipReason, VendorState};
use crate::vendors::deliver::{Deliver, Delivered, DeliveryError, apply};
use crate::vendors::registry::VendorAdapter;
use crate::vendors::{CallGate, ClientBuildError, HttpSettings, VendorSync};

/// Omnivibe's adapters by staff id: `PUT /api/v1/profile` changes the token owner's
/// profile, so each agent's changes go through that agent's own token only, and a change
/// for a staff id with no agent (or none in the change) is skipped
/// (`agent_not_configured`, logged with the staff id's hash prefix only). The staff id is
/// read from the change by the mapping ([`relay_core::vendors::omnivibe::OmnivibeMapping::staff_id`]).
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

    /// The agent configured for `staff_id` (exactly, after trimming).
    fn agent_for(
        &self,
        staff_id: &str,
    ) -> Option<&Arc<dyn VendorSync<Plan = relay_core::plans::OmnivibePlan>>> {
        self.by_staff_id.get(staff_id)
    }

    /// The configured staff ids.
    pub fn staff_ids(&self) -> impl Iterator<Item = &str> {
        self.by_staff_id.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for OmnivibeAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmnivibeAgents")
            .field("agents", &self.by_staff_id.len())
            .finish_non_exhaustive()
    }
}

/// A short SHA-256 prefix of a staff id, for logs: enough to confirm which configured id
/// an operator expected, without the id itself in the logs.
fn staff_hash(staff_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(staff_id.as_bytes())[..6])
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
        let staff_id = mapping.staff_id(&change.contact);
        let Some(sync) = staff_id.as_deref().and_then(|id| self.agent_for(id)) else {
            let reason = SkipReason::AgentNotConfigured;
            tracing::info!(
                vendor = "omnivibe",
                reason = reason.code(),
                staff_field = %mapping.staff_id,
                staff_hash = staff_id.as_deref().map(staff_hash),
                event = %change.event.key(),
                "no Omnivibe agent is configured for this staff id; skipped (another agent's token would change that agent's profile)"
            );
            return Some(Ok(Delivered::skipped(state, reason)));
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
