//! The vendors a worker delivers to: for each, plan the change (pure) and apply the plan
//! through that vendor's sync adapter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::mapping::Mappings;
use crate::model::ContactChange;
use crate::plan::{
    ChannelPlan, ChatwootPlan, HoodPlan, HoodProfileOp, OmnivibePlan, PlanError, Planned,
    SkipReason, VendorState, plan_channelio, plan_chatwoot, plan_hood, plan_omnivibe,
};
use crate::vendors::{SyncError, Vendor, VendorSync};

/// What a delivery did at the vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The vendor's id of the record, when known.
    pub vendor_id: Option<String>,
    /// Fingerprints of the fields this change is now the newest to have set (those sent,
    /// and on a skip too those already holding its value), to record in the link with
    /// [`crate::plan::record_applied`].
    pub applied: BTreeMap<String, String>,
    /// HTTP calls made.
    pub calls: u32,
    /// Why nothing was sent, when nothing was.
    pub skipped: Option<SkipReason>,
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The change cannot be expressed as requests this vendor accepts.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// The vendor call failed.
    #[error("{0}")]
    Sync(#[from] SyncError),
}

/// Omnivibe's adapters by staff id (`PUT /api/v1/profile` changes the token owner's
/// profile, so there is one per agent).
pub type OmnivibeAgents = BTreeMap<String, Arc<dyn VendorSync<Plan = OmnivibePlan>>>;

/// The agent of the staff member `key` names: the configured staff id is the key's id
/// (`s_7` of `app-staff:s_7`), or the whole key.
fn agent_for<'a>(
    agents: &'a OmnivibeAgents,
    key: &crate::model::ContactKey,
) -> Option<&'a Arc<dyn VendorSync<Plan = OmnivibePlan>>> {
    let whole = key.as_str();
    let id = whole.split_once(':').map_or(whole, |(_, id)| id);
    agents.get(id).or_else(|| agents.get(whole))
}

/// One sync adapter per configured vendor.
#[derive(Clone, Default)]
pub struct Targets {
    pub hood: Option<Arc<dyn VendorSync<Plan = HoodPlan>>>,
    pub channelio: Option<Arc<dyn VendorSync<Plan = ChannelPlan>>>,
    /// By staff id: each agent's changes go through that agent's own token only.
    pub omnivibe: OmnivibeAgents,
    pub chatwoot: Option<Arc<dyn VendorSync<Plan = ChatwootPlan>>>,
}

impl Targets {
    /// Plans `change` for `vendor` from `state` and applies the plan. `None` when the
    /// vendor has no adapter or no mapping here.
    pub async fn deliver(
        &self,
        mappings: &Mappings,
        vendor: Vendor,
        change: &ContactChange,
        state: &VendorState,
    ) -> Option<Result<Delivered, DeliveryError>> {
        let v = &mappings.vendors;
        Some(match vendor {
            Vendor::Hood => {
                let (sync, mapping) = (self.hood.as_ref()?, v.hood.as_ref()?);
                // The Hood client knows which custom properties exist and creates only the
                // missing ones, so planning lists every property the change uses.
                run(
                    sync.as_ref(),
                    plan_hood(change, state, mapping, &BTreeSet::new()),
                    state,
                    |p| match &p.profile {
                        HoodProfileOp::Skip(r) if p.properties.is_empty() => Some(r.clone()),
                        _ => None,
                    },
                )
                .await
            }
            Vendor::Channelio => {
                let (sync, mapping) = (self.channelio.as_ref()?, v.channelio.as_ref()?);
                run(
                    sync.as_ref(),
                    plan_channelio(change, state, mapping),
                    state,
                    |p| match p {
                        ChannelPlan::Skip(r) => Some(r.clone()),
                        _ => None,
                    },
                )
                .await
            }
            Vendor::Omnivibe => {
                let mapping = v.omnivibe.as_ref()?;
                if self.omnivibe.is_empty() {
                    return None;
                }
                let Some(sync) = agent_for(&self.omnivibe, &change.contact.key) else {
                    tracing::info!(staff = ?change.contact.key, "no Omnivibe agent is configured for this staff id; skipped");
                    return Some(Ok(Delivered {
                        vendor_id: state.vendor_id.clone(),
                        applied: BTreeMap::new(),
                        calls: 0,
                        skipped: Some(SkipReason::AgentNotConfigured),
                    }));
                };
                run(
                    sync.as_ref(),
                    plan_omnivibe(change, state, mapping),
                    state,
                    |p| match p {
                        OmnivibePlan::Skip(r) => Some(r.clone()),
                        _ => None,
                    },
                )
                .await
            }
            Vendor::Chatwoot => {
                let (sync, mapping) = (self.chatwoot.as_ref()?, v.chatwoot.as_ref()?);
                run(
                    sync.as_ref(),
                    plan_chatwoot(change, state, mapping),
                    state,
                    |p| match p {
                        ChatwootPlan::Skip(r) => Some(r.clone()),
                        _ => None,
                    },
                )
                .await
            }
        })
    }

    /// Whether `vendor` has an adapter.
    pub fn has(&self, vendor: Vendor) -> bool {
        match vendor {
            Vendor::Hood => self.hood.is_some(),
            Vendor::Channelio => self.channelio.is_some(),
            Vendor::Omnivibe => !self.omnivibe.is_empty(),
            Vendor::Chatwoot => self.chatwoot.is_some(),
        }
    }
}

async fn run<P: Send + Sync>(
    sync: &dyn VendorSync<Plan = P>,
    planned: Result<Planned<P>, PlanError>,
    state: &VendorState,
    skip_reason: impl Fn(&P) -> Option<SkipReason>,
) -> Result<Delivered, DeliveryError> {
    let planned = planned?;
    if let Some(reason) = skip_reason(&planned.plan) {
        return Ok(Delivered {
            vendor_id: state.vendor_id.clone(),
            applied: planned.applied,
            calls: 0,
            skipped: Some(reason),
        });
    }
    let outcome = sync.sync(&planned.plan).await?;
    Ok(Delivered {
        vendor_id: outcome.vendor_id.or_else(|| state.vendor_id.clone()),
        applied: planned.applied,
        calls: outcome.calls,
        skipped: None,
    })
}
