//! Planning for Channel.io users.

use crate::vendors::channelio::wire::UserBody;

use crate::plan::SkipReason;

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

use serde_json::Map;

use crate::mapping::vendor::canonical_value;
use crate::model::{ChangeKind, ChannelTags, ContactChange};
use crate::plan::{
    PlanError, Planned, PlannedRequest, VendorState, as_text, body_json, changed,
    encode_path_segment,
};
use crate::vendors::channelio::mapping::ChannelMapping;

/// Plans the Channel.io request for `change`: an upsert by memberId when the mapping
/// yields one, else a PATCH of the known user.
pub fn plan_channelio(
    change: &ContactChange,
    state: &VendorState,
    mapping: &ChannelMapping,
) -> Result<Planned<ChannelPlan>, PlanError> {
    if change.event.kind == ChangeKind::Deleted {
        return Ok(Planned::skip(ChannelPlan::Skip(
            SkipReason::DeletionNotSupported,
        )));
    }
    let changed = changed(mapping.fields.project_change(change), state);
    let mut body = UserBody::default();
    for (target, value) in &changed.values {
        match *target {
            "tags" => {
                let raw: Vec<String> = value
                    .as_array()
                    .map(|a| a.iter().map(as_text).collect())
                    .unwrap_or_default();
                // Mapping already cut the list to Channel.io's 20 with a `tags_truncated`
                // warning; this keeps the rule for changes built any other way.
                body.tags = Some(ChannelTags::from_raw(raw).kept);
            }
            // Canonical consent is an opt-in; Channel.io stores the opt-out.
            "unsubscribeEmail" => body.unsubscribe_email = value.as_bool().map(|consent| !consent),
            "unsubscribeTexting" => {
                body.unsubscribe_texting = value.as_bool().map(|consent| !consent)
            }
            other => {
                if let Some(key) = other.strip_prefix("profile.") {
                    body.profile
                        .get_or_insert_with(Map::new)
                        .insert(key.to_string(), value.clone());
                } else if let Some(key) = other.strip_prefix("profileOnce.") {
                    body.profile_once
                        .get_or_insert_with(Map::new)
                        .insert(key.to_string(), value.clone());
                }
            }
        }
    }
    if body.is_empty() {
        return Ok(Planned::nothing_to_send(&changed, ChannelPlan::Skip));
    }
    let member_id = mapping
        .member_id
        .as_ref()
        .and_then(|field| canonical_value(&change.contact, field))
        .map(|v| as_text(&v))
        .filter(|m| !m.is_empty());
    let plan = match (member_id, &state.vendor_id) {
        (Some(member_id), _) => ChannelPlan::Upsert { member_id, body },
        (None, Some(user_id)) => ChannelPlan::Patch {
            user_id: user_id.clone(),
            body,
        },
        (None, None) => return Err(PlanError::ChannelNeedsUserIdentity),
    };
    Ok(Planned::sending(plan, &changed))
}

impl ChannelPlan {
    /// The request, exactly as Channel.io receives it.
    pub fn requests(&self) -> Vec<PlannedRequest> {
        match self {
            ChannelPlan::Upsert { member_id, body } => vec![PlannedRequest {
                method: http::Method::PUT,
                path: format!("/open/v5/users/@{}", encode_path_segment(member_id)),
                body: body_json(body),
            }],
            ChannelPlan::Patch { user_id, body } => vec![PlannedRequest {
                method: http::Method::PATCH,
                path: format!("/open/v5/users/{}", encode_path_segment(user_id)),
                body: body_json(body),
            }],
            ChannelPlan::Skip(_) => Vec::new(),
        }
    }
}
