//! Planning for Ocamba Hood profiles and custom profile properties.

use crate::vendors::hood::mapping::PropertyDefinition;
use crate::vendors::hood::wire::{CreateProfile, CreateProfileProperty, Flag, PatchProfile};

use crate::plan::SkipReason;

/// What to send Hood for one contact change.
#[derive(Debug, Clone, PartialEq)]
pub struct HoodPlan {
    /// Custom properties the profile write uses that are not known to exist yet; Hood
    /// refuses values for undefined properties, so these are created first.
    pub properties: Vec<CreateProfileProperty>,
    pub profile: HoodProfileOp,
}

/// The profile write. Hood has no upsert, so without a known id the sync looks it up.
// One value per delivery, moved once: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
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

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::model::{ChangeKind, ContactChange};
use crate::plan::{
    Changed, PlanError, Planned, PlannedRequest, VendorState, as_text, body_json, changed,
    encode_path_segment, encode_query_value,
};
use crate::vendors::hood::mapping::HoodMapping;

/// Plans the Hood requests for `change`. `known_properties` are the custom property labels
/// known to exist at Hood; the others the change uses are defined first.
pub fn plan_hood(
    change: &ContactChange,
    state: &VendorState,
    mapping: &HoodMapping,
    known_properties: &BTreeSet<String>,
) -> Result<Planned<HoodPlan>, PlanError> {
    let skip = |reason| HoodPlan {
        properties: Vec::new(),
        profile: HoodProfileOp::Skip(reason),
    };
    if change.event.kind == ChangeKind::Deleted {
        return Ok(Planned::skip(skip(SkipReason::DeletionNotSupported)));
    }
    let changed: Changed<'_> = changed(mapping.fields.project_change(change), state);
    let patch = patch_body(&changed.values);
    if patch.is_empty() {
        return Ok(Planned::nothing_to_send(&changed, skip));
    }
    let properties = patch
        .custom_properties
        .iter()
        .flat_map(BTreeMap::keys)
        .filter(|label| !known_properties.contains(*label))
        .filter_map(|label| mapping.properties.get(label).map(property_body))
        .collect();
    let profile = match &state.vendor_id {
        Some(id) => HoodProfileOp::Patch {
            profile_id: id.clone(),
            body: patch,
        },
        None => {
            let lookup = HoodLookup {
                email: patch.email.clone(),
                mobile_phone_number: patch.mobile_phone_number.clone(),
            };
            if lookup.email.is_none() && lookup.mobile_phone_number.is_none() {
                return Err(PlanError::HoodCreateNeedsEmailOrPhone);
            }
            let create = CreateProfile {
                mobile_phone_number: patch.mobile_phone_number.clone(),
                email: patch.email.clone(),
                full_name: patch.full_name.clone(),
            };
            let after_create = PatchProfile {
                email: None,
                mobile_phone_number: None,
                full_name: None,
                ..patch.clone()
            };
            HoodProfileOp::Resolve {
                lookup,
                patch,
                create,
                after_create,
            }
        }
    };
    Ok(Planned::sending(
        HoodPlan {
            properties,
            profile,
        },
        &changed,
    ))
}

/// The PATCH body holding every changed field.
fn patch_body(values: &[(&str, Value)]) -> PatchProfile {
    let mut body = PatchProfile::default();
    for (target, value) in values {
        match *target {
            "email" => body.email = Some(as_text(value)),
            "mobile_phone_number" => body.mobile_phone_number = Some(as_text(value)),
            "full_name" => body.full_name = Some(as_text(value)),
            "organization_id" => body.organization_id = Some(as_text(value)),
            "comment" => body.comment = Some(as_text(value)),
            "lists" => {
                body.lists = Some(
                    value
                        .as_array()
                        .map(|items| items.iter().map(as_text).collect())
                        .unwrap_or_default(),
                )
            }
            other => {
                if let Some(label) = other.strip_prefix("custom_properties.") {
                    body.custom_properties
                        .get_or_insert_with(BTreeMap::new)
                        .insert(label.to_string(), as_text(value));
                }
            }
        }
    }
    body
}

impl HoodPlan {
    /// The requests in the order the sync sends them, for a profile that is not found
    /// (`{id}` stands for the id the create answers with).
    pub fn requests(&self) -> Vec<PlannedRequest> {
        let properties = self.properties.iter().map(|p| PlannedRequest {
            method: http::Method::POST,
            path: "/v1/hood/profile-properties".into(),
            body: body_json(p),
        });
        let mut out = Vec::new();
        match &self.profile {
            HoodProfileOp::Patch { profile_id, body } => {
                out.extend(properties);
                out.push(PlannedRequest {
                    method: http::Method::PATCH,
                    path: format!("/v1/hood/profiles/{}", encode_path_segment(profile_id)),
                    body: body_json(body),
                });
            }
            HoodProfileOp::Resolve {
                lookup,
                create,
                after_create,
                ..
            } => {
                // As the sync sends them: look the profile up, define missing properties,
                // create, then PATCH what the create page does not document.
                for (field, value) in [
                    ("email", &lookup.email),
                    ("mobile_phone_number", &lookup.mobile_phone_number),
                ] {
                    if let Some(v) = value {
                        out.push(PlannedRequest {
                            method: http::Method::GET,
                            path: format!("/v1/hood/profiles?{field}=eq:{}", encode_query_value(v)),
                            body: None,
                        });
                    }
                }
                out.extend(properties);
                out.push(PlannedRequest {
                    method: http::Method::POST,
                    path: "/v1/hood/profiles".into(),
                    body: body_json(create),
                });
                if !after_create.is_empty() {
                    out.push(PlannedRequest {
                        method: http::Method::PATCH,
                        path: "/v1/hood/profiles/{id}".into(),
                        body: body_json(after_create),
                    });
                }
            }
            HoodProfileOp::Skip(_) => {}
        }
        out
    }
}

/// The body of `POST /v1/hood/profile-properties` for a mapped property: values are sent
/// as text, and every property is importable and exportable.
fn property_body(definition: &PropertyDefinition) -> CreateProfileProperty {
    CreateProfileProperty {
        label: definition.label.clone(),
        data_type: "text".into(),
        example: definition.example.clone(),
        description: definition.description.clone(),
        export_alias: definition.export_alias.clone(),
        pi_data: Flag::from(definition.personal_data),
        importable: Flag::Yes,
        exportable: Flag::Yes,
    }
}
