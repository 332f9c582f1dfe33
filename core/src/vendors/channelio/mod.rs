//! Channel.io (Open API v5 users): `mapping` reads its section, `wire` holds the bodies,
//! `plan` decides the requests.

pub mod mapping;
pub mod plan;
pub mod wire;

pub use mapping::ChannelMapping;
pub use plan::{ChannelPlan, plan_channelio};

use crate::mapping::SectionContext;
use crate::model::ContactChange;
use crate::plan::{PlanError, Planned, PlannedRequest, SkipReason, VendorState};
use crate::vendors::{PreviewContext, Vendor, VendorModel};

/// Channel.io (users).
#[derive(Debug, Clone, Copy)]
pub struct Channelio;

impl VendorModel for Channelio {
    const VENDOR: Vendor = Vendor::Channelio;
    type Section = mapping::ChannelioSection;
    type Mapping = ChannelMapping;
    type Plan = ChannelPlan;

    fn compile(section: Self::Section, cx: &mut SectionContext<'_, '_>) -> ChannelMapping {
        mapping::compile(section, cx)
    }

    fn plan(
        change: &ContactChange,
        state: &VendorState,
        mapping: &ChannelMapping,
    ) -> Result<Planned<ChannelPlan>, PlanError> {
        plan_channelio(change, state, mapping)
    }

    fn skip_reason(plan: &ChannelPlan) -> Option<SkipReason> {
        match plan {
            ChannelPlan::Skip(r) => Some(r.clone()),
            _ => None,
        }
    }

    fn requests(plan: &ChannelPlan, _cx: &PreviewContext) -> Vec<PlannedRequest> {
        plan.requests()
    }
}
