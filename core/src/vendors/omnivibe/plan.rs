//! Planning for the Omnivibe agent profile (`PUT /api/v1/profile`).

use crate::vendors::omnivibe::wire::UpdateProfile;

use crate::plan::SkipReason;

/// What to send Omnivibe for one change of the agent's staff record.
#[derive(Debug, Clone, PartialEq)]
pub enum OmnivibePlan {
    /// `PUT /api/v1/profile`; never carries password fields (the type has none).
    Update(UpdateProfile),
    /// No request.
    Skip(SkipReason),
}

use crate::vendors::omnivibe::mapping::OmnivibeMapping;
use crate::model::{ChangeKind, ContactChange};
use crate::plan::{PlanError, Planned, PlannedRequest, VendorState, as_text, body_json, changed};
use crate::vendors::omnivibe::wire::AgentProfile;

/// Plans the agent profile update for a change of the staff record. Which agent's token
/// sends it is the adapter's choice, by [`OmnivibeMapping::staff_id`].
pub fn plan_omnivibe(
    change: &ContactChange,
    state: &VendorState,
    mapping: &OmnivibeMapping,
) -> Result<Planned<OmnivibePlan>, PlanError> {
    if change.event.kind == ChangeKind::Deleted {
        return Ok(Planned::skip(OmnivibePlan::Skip(
            SkipReason::DeletionNotSupported,
        )));
    }
    let changed = changed(mapping.fields.project_change(change), state);
    let mut profile = AgentProfile::default();
    for (target, value) in &changed.values {
        let text = Some(as_text(value));
        match *target {
            "name" => profile.name = text,
            "email" => profile.email = text,
            "display_name" => profile.display_name = text,
            "message_signature" => profile.message_signature = text,
            "phone_number" => profile.phone_number = text,
            // Mapping load admits no other field (and never a password field).
            _ => {}
        }
    }
    if profile.is_empty() {
        return Ok(Planned::nothing_to_send(&changed, OmnivibePlan::Skip));
    }
    Ok(Planned::sending(
        OmnivibePlan::Update(UpdateProfile { profile }),
        &changed,
    ))
}

impl OmnivibePlan {
    /// The request, exactly as Omnivibe receives it.
    pub fn requests(&self) -> Vec<PlannedRequest> {
        match self {
            OmnivibePlan::Update(body) => {
                vec![PlannedRequest {
                    method: http::Method::PUT,
                    path: "/api/v1/profile".into(),
                    body: body_json(body),
                }]
            }
            OmnivibePlan::Skip(_) => Vec::new(),
        }
    }
}
