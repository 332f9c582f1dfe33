//! Chatwoot contacts (on the Omnivibe host): `mapping` reads its section, `wire` holds the
//! bodies, `plan` decides the requests.

pub mod mapping;
pub mod plan;
pub mod wire;

pub use plan::{ChatwootPlan, plan_chatwoot};

use crate::mapping::{FieldMap, SectionContext};
use crate::model::ContactChange;
use crate::plan::{PlanError, Planned, PlannedRequest, SkipReason, VendorState};
use crate::vendors::{PreviewContext, Vendor, VendorModel};

/// Chatwoot (contacts of one account).
#[derive(Debug, Clone, Copy)]
pub struct Chatwoot;

impl VendorModel for Chatwoot {
    const VENDOR: Vendor = Vendor::Chatwoot;
    type Section = mapping::ChatwootSection;
    type Mapping = FieldMap;
    type Plan = ChatwootPlan;

    fn compile(section: Self::Section, cx: &mut SectionContext<'_, '_>) -> FieldMap {
        mapping::compile(section, cx)
    }

    fn plan(
        change: &ContactChange,
        state: &VendorState,
        mapping: &FieldMap,
    ) -> Result<Planned<ChatwootPlan>, PlanError> {
        plan_chatwoot(change, state, mapping)
    }

    fn skip_reason(plan: &ChatwootPlan) -> Option<SkipReason> {
        match plan {
            ChatwootPlan::Skip(r) => Some(r.clone()),
            _ => None,
        }
    }

    fn requests(plan: &ChatwootPlan, cx: &PreviewContext) -> Vec<PlannedRequest> {
        plan.requests(cx.account_id)
    }
}
