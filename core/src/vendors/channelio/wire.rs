//! Channel.io Open API v5 user bodies, exactly as `vendor-docs/channelio-update-user.txt`
//! defines them. The same body serves `PATCH /open/v5/users/{userId}` and the upsert
//! `PUT /open/v5/users/@{memberId}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::redact::debug_fields;
pub use crate::model::tags::{FORBIDDEN_TAG_CHARS, MAX_TAGS};

/// Body of the user PATCH / upsert.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserBody {
    /// Properties to set (`name`, `email`, `mobileNumber` in E.164, custom keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Map<String, Value>>,
    /// Properties to set only where the user has none yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_once: Option<Map<String, Value>>,
    /// Replaces all of the user's tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe_email: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe_texting: Option<bool>,
}

impl UserBody {
    /// True when the body would change nothing.
    pub fn is_empty(&self) -> bool {
        self.profile.as_ref().is_none_or(Map::is_empty)
            && self.profile_once.as_ref().is_none_or(Map::is_empty)
            && self.tags.is_none()
            && self.unsubscribe_email.is_none()
            && self.unsubscribe_texting.is_none()
    }
}

impl std::fmt::Debug for UserBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "UserBody",
            &[
                ("profile", self.profile.is_some()),
                ("profileOnce", self.profile_once.is_some()),
                ("tags", self.tags.is_some()),
                ("unsubscribeEmail", self.unsubscribe_email.is_some()),
                ("unsubscribeTexting", self.unsubscribe_texting.is_some()),
            ],
        )
    }
}

/// The part of Channel.io's user object the relay reads; the rest is ignored.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub member_id: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Response of PATCH, upsert and GET: `{user, online}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserResponse {
    pub user: User,
    #[serde(default)]
    pub online: Option<Value>,
}
