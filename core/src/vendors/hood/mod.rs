//! Ocamba Hood: `mapping` reads its section, `wire` holds the bodies, `plan` decides the
//! requests.

pub mod mapping;
pub mod plan;
pub mod wire;

use std::collections::BTreeSet;

pub use mapping::{HoodMapping, PropertyDefinition};
pub use plan::{HoodLookup, HoodPlan, HoodProfileOp, plan_hood};

use crate::mapping::SectionContext;
use crate::model::ContactChange;
use crate::plan::{PlanError, Planned, PlannedRequest, SkipReason, VendorState};
use crate::vendors::{PreviewContext, Vendor, VendorModel};

/// Ocamba Hood (profiles, custom profile properties).
#[derive(Debug, Clone, Copy)]
pub struct Hood;

impl VendorModel for Hood {
    const VENDOR: Vendor = Vendor::Hood;
    type Section = mapping::HoodSection;
    type Mapping = HoodMapping;
    type Plan = HoodPlan;

    fn compile(section: Self::Section, cx: &mut SectionContext<'_, '_>) -> HoodMapping {
        mapping::compile(section, cx)
    }

    /// Lists every custom property the change uses: the Hood client knows which exist and
    /// creates only the missing ones.
    fn plan(
        change: &ContactChange,
        state: &VendorState,
        mapping: &HoodMapping,
    ) -> Result<Planned<HoodPlan>, PlanError> {
        plan_hood(change, state, mapping, &BTreeSet::new())
    }

    fn skip_reason(plan: &HoodPlan) -> Option<SkipReason> {
        match &plan.profile {
            HoodProfileOp::Skip(r) if plan.properties.is_empty() => Some(r.clone()),
            _ => None,
        }
    }

    fn requests(plan: &HoodPlan, _cx: &PreviewContext) -> Vec<PlannedRequest> {
        plan.requests()
    }
}
