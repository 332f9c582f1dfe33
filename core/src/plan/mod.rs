//! Request planning: pure functions from a contact change and what is known of the vendor
//! side to the exact vendor requests (`../shared/vendor-docs/`). No I/O here, so every rule
//! the vendors impose (no empty PATCH, no create without e-mail or phone, at most 20 tags,
//! E.164 phones, no password fields) is enforced where it can be tested exhaustively.

mod coalesce;

use std::collections::BTreeMap;

pub use coalesce::coalesce;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One applied vendor field: a fingerprint of the value (never the value) and the version
/// of the change that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedField {
    pub fingerprint: String,
    /// `occurred_at` of the newest change that set or confirmed the value, epoch ms.
    pub version: i64,
}

/// What the relay knows of a contact's record at one vendor (from its stored link).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VendorState {
    /// The vendor's id for the contact (Hood profile id, Channel.io user id, Chatwoot
    /// contact id), once known.
    pub vendor_id: Option<String>,
    /// Per vendor field, the fingerprint of the value last applied and the version of the
    /// newest change that set it (the rule is on this module's `changed`): a field is sent
    /// only when the change is newer than the one applied and its value differs, so an
    /// older change arriving late never overwrites a newer value, and re-sent events and
    /// unchanged fields cost no request.
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
    /// Fields to send.
    pub values: Vec<(&'a str, Value)>,
    /// The fields this change is now the newest to have set, as the link records them
    /// (each at the version of the change it came from): those sent, and those left out
    /// because they hold the value already applied, set by an older change (`confirmed`).
    /// The link must record a confirmed field even when nothing is sent, or a change older
    /// than this one but newer than the applied one would overwrite the value.
    pub applied: BTreeMap<String, AppliedField>,
    /// Fields left out because a newer change set them.
    pub stale: usize,
    /// Fields left out because they hold the value already applied.
    pub unchanged: usize,
}

impl Changed<'_> {
    /// The fields left out that this change confirms (see [`Self::applied`]).
    pub fn confirmed(&self) -> BTreeMap<String, AppliedField> {
        let mut confirmed = self.applied.clone();
        for (target, _) in &self.values {
            confirmed.remove(*target);
        }
        confirmed
    }

    /// The skip reason when this change sends nothing.
    pub fn skip_reason(&self) -> SkipReason {
        if self.stale > 0 {
            SkipReason::OlderThanApplied
        } else if self.unchanged > 0 {
            SkipReason::NothingChanged
        } else {
            SkipReason::NoMappedFields
        }
    }
}

/// Newest value wins, per vendor field. A projected field `(target, value, version)` — the
/// version of the change that set it ([`crate::model::ContactChange::version_of`]) — whose
/// value has fingerprint `f` is ranked by `(version, f)` against the applied field's
/// `(version, fingerprint)`:
///
/// - lower: a newer change set the field (or, at an equal version, one with a greater
///   fingerprint): left out (`stale`);
/// - equal: the same change again, or an equal one: nothing to do (`unchanged`);
/// - higher with the applied value: nothing to send, but the field is confirmed: the
///   link records this (newer) version, so a change between the two that arrives late
///   still loses;
/// - higher with another value, or never applied: sent.
///
/// Ties (equal versions, different values) go to the greater fingerprint: an arbitrary
/// but fixed order, so the vendor ends with the same value whatever order the changes
/// arrive in and however often each is redelivered. Channel.io's `profileOnce.*` fields
/// follow the same rule, but the vendor sets them only where empty: it keeps the first
/// value it received, and a later one sent this way changes nothing there.
///
/// Versions are per field, not per change, so a change coalesced from several
/// ([`coalesce`]) ends at the vendor exactly as its members delivered one by one would.
pub(crate) fn changed<'a>(
    projected: Vec<(&'a str, Value, i64)>,
    state: &VendorState,
) -> Changed<'a> {
    use std::cmp::Ordering;
    let mut out = Changed {
        values: Vec::new(),
        applied: BTreeMap::new(),
        stale: 0,
        unchanged: 0,
    };
    for (target, value, version) in projected {
        let fingerprint = fingerprint(&value);
        let rank = (version, fingerprint.as_str());
        let sent = match state.applied.get(target) {
            None => true,
            Some(applied) => match rank.cmp(&(applied.version, applied.fingerprint.as_str())) {
                Ordering::Less => {
                    out.stale += 1;
                    continue;
                }
                Ordering::Equal => {
                    out.unchanged += 1;
                    continue;
                }
                Ordering::Greater if fingerprint == applied.fingerprint => {
                    out.unchanged += 1;
                    false
                }
                Ordering::Greater => true,
            },
        };
        out.applied.insert(
            target.to_string(),
            AppliedField {
                fingerprint,
                version,
            },
        );
        if sent {
            out.values.push((target, value));
        }
    }
    out
}

/// A JSON value as the text vendors store (strings as they are, others as JSON).
pub(crate) fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The link's applied fields after a change was delivered, sent or skipped: `stored`
/// (what the plan was made from) with every field of `applied` (the plan's
/// [`Planned::applied`]: the fields sent and those confirmed, each at the version of the
/// change that set it). The worker commits exactly this, so the rule is tested here.
pub fn record_applied(
    stored: &BTreeMap<String, AppliedField>,
    applied: &BTreeMap<String, AppliedField>,
) -> BTreeMap<String, AppliedField> {
    let mut next = stored.clone();
    next.extend(applied.iter().map(|(t, a)| (t.clone(), a.clone())));
    next
}

/// A plan with the fields the change is now the newest to have set: stored in the
/// contact's link (with [`record_applied`]) once the vendor accepted the request, or when
/// the plan is a skip, so the next change sends only what differs and an older one never
/// overwrites.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned<P> {
    pub plan: P,
    /// The fields sent, and those holding the applied value that this newer change
    /// confirms (see this module's `changed`), each with its fingerprint and the version of
    /// the change that set it; empty for a deletion.
    pub applied: BTreeMap<String, AppliedField>,
}

impl<P> Planned<P> {
    /// A skip that records nothing (a deletion).
    pub(crate) fn skip(plan: P) -> Self {
        Planned {
            plan,
            applied: BTreeMap::new(),
        }
    }

    /// A skip because `changed` has nothing to send; the fields it confirms are recorded.
    pub(crate) fn nothing_to_send(
        changed: &Changed<'_>,
        plan: impl FnOnce(SkipReason) -> P,
    ) -> Self {
        Planned {
            plan: plan(changed.skip_reason()),
            applied: changed.confirmed(),
        }
    }

    /// A plan sending `changed`.
    pub(crate) fn sending(plan: P, changed: &Changed<'_>) -> Self {
        Planned {
            plan,
            applied: changed.applied.clone(),
        }
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
    /// Omnivibe: no agent is configured for this staff id, and another agent's token would
    /// change that other agent's profile.
    AgentNotConfigured,
}

impl SkipReason {
    /// Stable code for logs and delivery records.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NothingChanged => "nothing_changed",
            SkipReason::OlderThanApplied => "older_than_applied",
            SkipReason::NoMappedFields => "no_mapped_fields",
            SkipReason::DeletionNotSupported => "deletion_not_supported",
            SkipReason::AgentNotConfigured => "agent_not_configured",
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

impl PlanError {
    /// True when the change lacks only an identifier the vendor could create the record
    /// from: a later event for the same person may bring one (or create the record), after
    /// which the same change plans.
    pub fn awaits_identity(&self) -> bool {
        matches!(
            self,
            PlanError::HoodCreateNeedsEmailOrPhone
                | PlanError::ChannelNeedsUserIdentity
                | PlanError::ChatwootNeedsIdentity
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn state(value: &Value, version: i64) -> VendorState {
        VendorState {
            vendor_id: None,
            applied: BTreeMap::from([(
                "name".to_string(),
                AppliedField {
                    fingerprint: fingerprint(value),
                    version,
                },
            )]),
        }
    }

    /// (sent, confirmed, stale, unchanged) for a change of `version` setting `value`.
    fn classify(stored: &VendorState, value: &Value, version: i64) -> (bool, bool, usize, usize) {
        let c = changed(vec![("name", value.clone(), version)], stored);
        (
            !c.values.is_empty(),
            c.confirmed().contains_key("name"),
            c.stale,
            c.unchanged,
        )
    }

    #[test]
    fn a_field_is_ranked_by_version_then_fingerprint() {
        let (ann, anne) = (json!("Ann"), json!("Anne"));
        let stored = state(&ann, 5);
        assert_eq!(
            classify(&stored, &anne, 6),
            (true, false, 0, 0),
            "newer, other value"
        );
        assert_eq!(
            classify(&stored, &ann, 6),
            (false, true, 0, 1),
            "newer, same value"
        );
        assert_eq!(
            classify(&stored, &ann, 5),
            (false, false, 0, 1),
            "the same change"
        );
        assert_eq!(classify(&stored, &anne, 4), (false, false, 1, 0), "older");
        assert_eq!(
            classify(&stored, &ann, 4),
            (false, false, 1, 0),
            "older, same value"
        );
        // A tie goes to the greater fingerprint, whichever was applied first.
        let (low, high) = if fingerprint(&ann) < fingerprint(&anne) {
            (ann, anne)
        } else {
            (anne, ann)
        };
        assert_eq!(classify(&state(&low, 5), &high, 5), (true, false, 0, 0));
        assert_eq!(classify(&state(&high, 5), &low, 5), (false, false, 1, 0));
    }

    #[test]
    fn recording_sets_the_fields_given_and_keeps_the_others() {
        let stored = BTreeMap::from([
            (
                "name".to_string(),
                AppliedField {
                    fingerprint: "a".into(),
                    version: 1,
                },
            ),
            (
                "email".to_string(),
                AppliedField {
                    fingerprint: "b".into(),
                    version: 2,
                },
            ),
        ]);
        let applied = AppliedField {
            fingerprint: "a".into(),
            version: 3,
        };
        let next = record_applied(&stored, &BTreeMap::from([("name".into(), applied)]));
        assert_eq!(
            next["name"],
            AppliedField {
                fingerprint: "a".into(),
                version: 3
            }
        );
        assert_eq!(next["email"], stored["email"]);
        assert_eq!(next.len(), 2);
    }
}
