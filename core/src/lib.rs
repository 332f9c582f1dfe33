//! profile-relay's pure core: the canonical contact (`model`), the declarative mappings that
//! turn senders' payloads into contact changes (`mapping`), and planning — a change and what
//! is known of the vendor side → the exact vendor requests (`plan`, with each vendor's wire
//! bodies and planning rules in `vendors/<vendor>/`).
//!
//! Nothing here does I/O: no network, no clock reads, no files (callers read the mapping
//! file and hand over its text). Dependencies point one way — `model` ← `mapping` ← `plan`
//! ← `vendors/<vendor>` (each vendor's wire bodies and planning) — and the adapters in
//! `relay-shared` depend on this crate, never the other way.

pub mod mapping;
#[macro_use]
pub mod model;
pub mod plan;
pub mod vendors;

/// Every vendor's plan beside the rules they share (`plan`), for callers that want one
/// path: `relay_core::plans::{plan_hood, HoodPlan, VendorState, ...}`.
pub mod plans {
    pub use crate::plan::*;
    pub use crate::vendors::channelio::{ChannelMapping, ChannelPlan, plan_channelio};
    pub use crate::vendors::chatwoot::plan::{ChatwootPlan, plan_chatwoot};
    pub use crate::vendors::hood::{
        HoodLookup, HoodMapping, HoodPlan, HoodProfileOp, PropertyDefinition, plan_hood,
    };
    pub use crate::vendors::omnivibe::plan::{OmnivibePlan, plan_omnivibe};
    pub use crate::vendors::{PreviewContext, preview};
}
