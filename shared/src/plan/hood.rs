//! Planning for Ocamba Hood profiles and custom profile properties.

use crate::vendors::hood::wire::{CreateProfile, CreateProfileProperty, PatchProfile};

use super::SkipReason;

/// What to send Hood for one contact change.
#[derive(Debug, Clone, PartialEq)]
pub struct HoodPlan {
    /// Custom properties the profile write uses that are not known to exist yet; Hood
    /// refuses values for undefined properties, so these are created first.
    pub properties: Vec<CreateProfileProperty>,
    pub profile: HoodProfileOp,
}

/// The profile write. Hood has no upsert, so without a known id the sync looks it up.
#[derive(Debug, Clone, PartialEq)]
pub enum HoodProfileOp {
    /// The profile id is known (a stored link): one `PATCH /v1/hood/profiles/{id}`.
    Patch {
        profile_id: String,
        body: PatchProfile,
    },
    /// The id is unknown: look it up (e-mail first, then phone). Found → PATCH `patch`
    /// (skipped when empty). Not found → POST `create`, then PATCH `after_create` with the
    /// fields the create page does not document, when there are any.
    Resolve {
        lookup: HoodLookup,
        patch: PatchProfile,
        create: CreateProfile,
        after_create: PatchProfile,
    },
    /// No request.
    Skip(SkipReason),
}

/// The values Hood's list filter searches by (`GET /v1/hood/profiles?email=eq:<value>`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HoodLookup {
    pub email: Option<String>,
    /// E.164.
    pub mobile_phone_number: Option<String>,
}

impl std::fmt::Debug for HoodLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::model::redact::debug_fields(
            f,
            "HoodLookup",
            &[
                ("email", self.email.is_some()),
                ("mobile_phone_number", self.mobile_phone_number.is_some()),
            ],
        )
    }
}
