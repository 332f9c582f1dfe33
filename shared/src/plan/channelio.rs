//! Planning for Channel.io users.

use crate::vendors::channelio::wire::UserBody;

use super::SkipReason;

/// What to send Channel.io for one contact change.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelPlan {
    /// The mapping yields a memberId: `PUT /open/v5/users/@{memberId}` creates or updates.
    Upsert { member_id: String, body: UserBody },
    /// No memberId but a known Channel.io user id: `PATCH /open/v5/users/{userId}`.
    Patch { user_id: String, body: UserBody },
    /// No request.
    Skip(SkipReason),
}
