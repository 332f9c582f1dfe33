//! Omnivibe (the agent profile of the token's owner): `mapping` reads its section, `wire`
//! holds the bodies, `plan` decides the requests.

pub mod mapping;
pub mod plan;
pub mod wire;

pub use mapping::OmnivibeMapping;
pub use plan::{OmnivibePlan, plan_omnivibe};

use crate::mapping::SectionContext;
use crate::model::ContactChange;
use crate::plan::{PlanError, Planned, PlannedRequest, SkipReason, VendorState};
use crate::vendors::{PreviewContext, Vendor, VendorModel};

/// Omnivibe (agent profiles).
#[derive(Debug, Clone, Copy)]
pub struct Omnivibe;

impl VendorModel for Omnivibe {
    const VENDOR: Vendor = Vendor::Omnivibe;
    type Section = mapping::OmnivibeSection;
    type Mapping = OmnivibeMapping;
    type Plan = OmnivibePlan;

    fn compile(section: Self::Section, cx: &mut SectionContext<'_, '_>) -> OmnivibeMapping {
        mapping::compile(section, cx)
    }

    fn plan(
        change: &ContactChange,
        state: &VendorState,
        mapping: &OmnivibeMapping,
    ) -> Result<Planned<OmnivibePlan>, PlanError> {
        plan_omnivibe(change, state, mapping)
    }

    fn skip_reason(plan: &OmnivibePlan) -> Option<SkipReason> {
        match plan {
            OmnivibePlan::Skip(r) => Some(r.clone()),
            _ => None,
        }
    }

    fn requests(plan: &OmnivibePlan, _cx: &PreviewContext) -> Vec<PlannedRequest> {
        plan.requests()
    }
}
