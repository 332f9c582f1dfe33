//! Request planning: pure functions from a contact change and what is known of the vendor
//! side to the exact vendor requests (`../shared/vendor-docs/`). No I/O here, so every rule
//! the vendors impose (no empty PATCH, no create without e-mail or phone, at most 20 tags,
//! E.164 phones, no password fields) is enforced where it can be tested exhaustively.

pub mod channelio;
pub mod chatwoot;
pub mod hood;
pub mod omnivibe;

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::store::AppliedField;

pub use channelio::{ChannelPlan, plan_channelio};
pub use chatwoot::{ChatwootPlan, plan_chatwoot};
pub use hood::{HoodLookup, HoodPlan, HoodProfileOp, plan_hood};
pub use omnivibe::{OmnivibePlan, plan_omnivibe};

/// What the relay knows of a contact's record at one vendor (from its stored link).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VendorState {
    /// The vendor's id for the contact (Hood profile id, Channel.io user id, Chatwoot
    /// contact id), once known.
    pub vendor_id: Option<String>,
    /// Per vendor field, the fingerprint of the value last applied and the version of the
    /// change that set it: a field is sent only when its value differs and the change is
    /// not older than the one applied (an older change arriving late never overwrites a
    /// newer value), so re-sent events and unchanged fields cost no request.
    pub applied: BTreeMap<String, AppliedField>,
}

/// A short, stable fingerprint of a JSON value (hex of SHA-256, 16 characters): lets the
/// store remember what was applied without keeping the personal value itself.
pub fn fingerprint(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// The vendor fields a change sets, minus those already applied or newer at the vendor.
pub(crate) struct Changed<'a> {
    pub values: Vec<(&'a str, Value)>,
    /// Fields left out because a newer change set them.
    pub stale: usize,
    /// Fields left out because they hold the value already applied.
    pub unchanged: usize,
}

pub(crate) fn changed<'a>(
    projected: Vec<(&'a str, Value)>,
    state: &VendorState,
    version: i64,
) -> Changed<'a> {
    let mut out = Changed {
        values: Vec::new(),
        stale: 0,
        unchanged: 0,
    };
    for (target, value) in projected {
        match state.applied.get(target) {
            Some(applied) if applied.version > version => out.stale += 1,
            Some(applied) if applied.fingerprint == fingerprint(&value) => out.unchanged += 1,
            _ => out.values.push((target, value)),
        }
    }
    out
}

/// The fingerprints of the fields a plan sends, to store after success.
pub fn fingerprints<'a>(
    values: impl IntoIterator<Item = &'a (&'a str, Value)>,
) -> BTreeMap<String, String> {
    values
        .into_iter()
        .map(|(t, v)| ((*t).to_string(), fingerprint(v)))
        .collect()
}

/// A JSON value as the text vendors store (strings as they are, others as JSON).
pub(crate) fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Fingerprints of fields sent, as the link records them for a change of `version`.
pub fn applied_at(
    fingerprints: &BTreeMap<String, String>,
    version: i64,
) -> BTreeMap<String, AppliedField> {
    fingerprints
        .iter()
        .map(|(t, fp)| {
            (
                t.clone(),
                AppliedField {
                    fingerprint: fp.clone(),
                    version,
                },
            )
        })
        .collect()
}

/// A plan with the fingerprints of the fields it sends: stored in the contact's link once
/// the vendor accepted the request, so the next change sends only what differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned<P> {
    pub plan: P,
    pub applied: BTreeMap<String, String>,
}

impl<P> Planned<P> {
    pub(crate) fn skip(plan: P) -> Self {
        Planned {
            plan,
            applied: BTreeMap::new(),
        }
    }

    /// The fields sent, as the link records them for a change of `version`.
    pub fn applied_at(&self, version: i64) -> BTreeMap<String, AppliedField> {
        self.applied
            .iter()
            .map(|(t, fp)| {
                (
                    t.clone(),
                    AppliedField {
                        fingerprint: fp.clone(),
                        version,
                    },
                )
            })
            .collect()
    }
}

/// The skip reason when a change sends nothing.
pub(crate) fn nothing_to_send(changed: &Changed<'_>) -> SkipReason {
    if changed.stale > 0 {
        SkipReason::OlderThanApplied
    } else if changed.unchanged > 0 {
        SkipReason::NothingChanged
    } else {
        SkipReason::NoMappedFields
    }
}

/// A wire body as JSON. Wire bodies are plain structs of strings, maps and flags, which
/// always serialise.
pub(crate) fn body_json<T: serde::Serialize>(body: &T) -> Option<Value> {
    serde_json::to_value(body).ok()
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a URL path segment must escape: the set the `url` crate (and so the vendor
/// clients) uses, so planned paths are byte for byte what goes on the wire. `:` and `@`
/// are allowed in a segment (RFC 3986 `pchar`) and stay as they are.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

/// Percent-encodes one URL path segment (ids and memberIds may hold `/` or `?`).
pub fn encode_path_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

/// Percent-encodes one query value (`+` in phone numbers becomes `%2B`).
pub fn encode_query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, NOT_UNRESERVED).to_string()
}

/// Why a plan makes no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Every mapped field already has the value last applied: nothing to send.
    NothingChanged,
    /// Every field this change would send was set at the vendor by a newer change.
    OlderThanApplied,
    /// The change maps to no field of this vendor.
    NoMappedFields,
    /// A deletion; the vendor pages document no delete endpoint, so the relay leaves the
    /// vendor record as it is (and says so in the delivery outcome).
    DeletionNotSupported,
}

impl SkipReason {
    /// Stable code for logs and delivery records.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NothingChanged => "nothing_changed",
            SkipReason::OlderThanApplied => "older_than_applied",
            SkipReason::NoMappedFields => "no_mapped_fields",
            SkipReason::DeletionNotSupported => "deletion_not_supported",
        }
    }
}

/// One HTTP request exactly as the vendor will receive it (method, path, JSON body).
/// Used by golden tests, the sandbox vendors and dry runs; clients send the typed bodies.
#[derive(Clone, PartialEq)]
pub struct PlannedRequest {
    pub method: http::Method,
    /// Path and query, starting with `/`.
    pub path: String,
    pub body: Option<Value>,
}

impl std::fmt::Debug for PlannedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Paths may hold ids, bodies hold personal data: show only the shape.
        f.debug_struct("PlannedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("has_body", &self.body.is_some())
            .finish()
    }
}

/// Why a change cannot be planned for a vendor. Messages name fields, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Hood creates a profile only with an e-mail or a mobile phone number.
    #[error("hood: cannot create a profile without an e-mail address or a mobile phone number")]
    HoodCreateNeedsEmailOrPhone,
    /// Channel.io needs a memberId (upsert) or a known userId (PATCH).
    #[error("channelio: no memberId from the mapping and no known Channel.io user id")]
    ChannelNeedsUserIdentity,
    /// Chatwoot needs something to search or create by.
    #[error("chatwoot: no e-mail, phone number or identifier to find or create the contact by")]
    ChatwootNeedsIdentity,
}
