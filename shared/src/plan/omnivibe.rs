//! Planning for the Omnivibe agent profile (`PUT /api/v1/profile`).

use crate::vendors::omnivibe::wire::UpdateProfile;

use super::SkipReason;

/// What to send Omnivibe for one change of the agent's staff record.
#[derive(Debug, Clone, PartialEq)]
pub enum OmnivibePlan {
    /// `PUT /api/v1/profile`; never carries password fields (the type has none).
    Update(UpdateProfile),
    /// No request.
    Skip(SkipReason),
}
