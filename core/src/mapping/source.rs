//! One source's compiled mapping: JMESPath expressions compiled once at load, applied to
//! each payload to produce contact changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use jmespath::{Expression, Rcvar, Variable};
use serde_json::Value;
use sha2::Digest as _;

use super::canonical::{CanonicalField, ValueKind};
use super::error::ExtractError;
use super::file::Route;
use crate::model::Vendor;
use crate::model::limits;
use crate::model::tags::{normalise_tag, normalise_tags};
use crate::model::{
    ChangeKind, Contact, ContactChange, ContactKey, Email, PhoneE164, PhoneRegion, SyncEvent,
};

/// A JMESPath expression with its source text (for error messages).
#[derive(Clone)]
pub struct Compiled {
    text: String,
    expr: Arc<Expression<'static>>,
}

impl Compiled {
    pub fn compile(text: &str) -> Result<Self, String> {
        jmespath::compile(text)
            .map(|expr| Compiled {
                text: text.to_string(),
                expr: Arc::new(expr),
            })
            .map_err(|e| format!("invalid JMESPath expression `{text}`: {}", e.reason))
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn search(&self, data: &Rcvar) -> Result<Rcvar, String> {
        self.expr.search(data).map_err(|e| e.reason.to_string())
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compiled({:?})", self.text)
    }
}

/// How an event's kind is found.
#[derive(Debug, Clone)]
pub enum KindRule {
    Fixed(ChangeKind),
    From {
        expr: Compiled,
        kinds: BTreeMap<String, ChangeKind>,
    },
}

/// A source's mapping, ready to apply.
#[derive(Debug, Clone)]
pub struct SourceMapping {
    pub name: String,
    pub route: Route,
    /// EventBridge `detail-type` for `route = "events"`.
    pub detail_type: Option<String>,
    pub vendors: Vec<Vendor>,
    /// How the sender signs (`None` for EventBridge sources, which IAM authenticates).
    pub signature: Option<crate::mapping::signature::SignatureScheme>,
    pub(crate) each: Option<Compiled>,
    pub(crate) event_id: Option<Compiled>,
    pub(crate) occurred_at: Option<Compiled>,
    pub(crate) kind: KindRule,
    pub(crate) key_namespace: String,
    pub(crate) fields: Vec<(CanonicalField, Compiled)>,
    pub(crate) phone_region: PhoneRegion,
    /// Events of one delivery for one contact key become one change ([`combine`]).
    pub(crate) combine_by_key: bool,
    /// `custom.<name>` fields that make up `full_name` when a change holds them all.
    pub(crate) full_name_from: Vec<String>,
}

/// What the caller knows when the payload does not say.
#[derive(Debug, Clone)]
pub struct EventDefaults {
    /// The delivery's id (a header such as `webhook-id`) or a hash of the body; events of a
    /// batch without their own id get `<id>-<index>`.
    pub event_id: String,
    /// When the request arrived.
    pub received_at: DateTime<Utc>,
}

impl SourceMapping {
    /// Maps one payload into its events (one, or one per item of a batch), each judged on
    /// its own: a change to sync (with the fields that were dropped), an event of a kind
    /// this source does not map, or an event that cannot be synced at all. Only a payload
    /// that is not the shape the source expects (`each` finds no list) fails as a whole.
    pub fn map(
        &self,
        payload: &Value,
        defaults: &EventDefaults,
    ) -> Result<Vec<MappedEvent>, ExtractError> {
        let root: Rcvar = Arc::new(
            Variable::try_from(payload)
                .map_err(|e| self.field_error("<payload>", "<payload>", e.to_string()))?,
        );
        let events: Vec<Rcvar> = match &self.each {
            None => vec![root],
            Some(each) => {
                let found = each.search(&root).map_err(|_| self.not_a_list(each))?;
                match found.as_array() {
                    Some(items) if items.len() > limits::MAX_EVENTS_PER_DELIVERY => {
                        return Err(ExtractError::TooManyEvents {
                            source_name: self.name.clone(),
                            count: items.len(),
                            limit: limits::MAX_EVENTS_PER_DELIVERY,
                        });
                    }
                    Some(items) => items.clone(),
                    None => return Err(self.not_a_list(each)),
                }
            }
        };
        let batch = self.each.is_some();
        let mapped: Vec<MappedEvent> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let fallback_id = if batch {
                    format!("{}-{i}", defaults.event_id)
                } else {
                    defaults.event_id.clone()
                };
                self.map_one(event, fallback_id, defaults.received_at)
            })
            .collect();
        let mut mapped = if self.combine_by_key {
            combine(mapped)
        } else {
            mapped
        };
        if !self.full_name_from.is_empty() {
            for event in &mut mapped {
                if let EventOutcome::Change(change) = &mut event.outcome
                    && compose_full_name(&mut change.change.contact, &self.full_name_from)
                {
                    // As new as its newest part (the parts of a combined change may be
                    // older than the change).
                    let change = &mut change.change;
                    let newest = self
                        .full_name_from
                        .iter()
                        .map(|part| change.version_of(&format!("custom.{part}")))
                        .max()
                        .unwrap_or_else(|| change.version());
                    if newest != change.version() {
                        change.versions.insert("full_name".into(), newest);
                    }
                }
            }
        }
        Ok(mapped)
    }

    /// Maps one payload into its contact changes, strictly: any event that is refused or
    /// of an unmapped kind is an error, and dropped fields are not reported. For tools and
    /// tests that want all or nothing (`relay plan`); ingest uses [`Self::map`].
    pub fn extract(
        &self,
        payload: &Value,
        defaults: &EventDefaults,
    ) -> Result<Vec<ContactChange>, ExtractError> {
        self.map(payload, defaults)?
            .into_iter()
            .filter_map(|event| match event.outcome {
                EventOutcome::Change(mapped) => Some(Ok(mapped.change)),
                EventOutcome::Ignored { kind } => Some(Err(self.unknown_kind(kind))),
                // A copy of an event already taken.
                EventOutcome::Repeated { .. } => None,
                EventOutcome::Refused(error) => Some(Err(error)),
            })
            .collect()
    }

    /// Sets `contact`'s full name from the `full_name_from` parts, when it has none and
    /// every part is there (as mapping does; a change completed from its source afterwards
    /// may have gained the missing part).
    pub fn compose_full_name(&self, contact: &mut Contact) {
        if !self.full_name_from.is_empty() {
            let _composed = compose_full_name(contact, &self.full_name_from);
        }
    }

    fn map_one(
        &self,
        event: &Rcvar,
        fallback_id: String,
        received_at: DateTime<Utc>,
    ) -> MappedEvent {
        let event_id = match &self.event_id {
            Some(expr) => match self.text_at("event_id", expr, event) {
                Ok(found) => found.unwrap_or(fallback_id),
                Err(error) => {
                    return MappedEvent {
                        event_id: fallback_id,
                        outcome: EventOutcome::Refused(error),
                    };
                }
            },
            None => fallback_id,
        };
        let outcome = self.outcome(event, &event_id, received_at);
        MappedEvent { event_id, outcome }
    }

    fn outcome(&self, event: &Rcvar, event_id: &str, received_at: DateTime<Utc>) -> EventOutcome {
        let kind = match &self.kind {
            KindRule::Fixed(kind) => *kind,
            KindRule::From { expr, kinds } => {
                // A kind that cannot be read is a kind this source does not map.
                let value = self
                    .text_at("kind", expr, event)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                match kinds.get(&value) {
                    Some(kind) => *kind,
                    None => return EventOutcome::Ignored { kind: value },
                }
            }
        };
        let mut warnings = Vec::new();
        let (occurred_at, occurred_at_given) = match &self.occurred_at {
            Some(expr) => match self.time_at(expr, event) {
                Ok(Some(at)) => (at, true),
                Ok(None) => (received_at, false),
                Err(_) => {
                    warnings.push(FieldWarning::new("occurred_at", "occurred_at_invalid"));
                    (received_at, false)
                }
            },
            None => (received_at, false),
        };

        let mut fields = Fields::default();
        for (field, expr) in &self.fields {
            let result = self
                .value_at(field, expr, event)
                .and_then(|found| match found {
                    Some(value) => self.set_field(&mut fields, field, expr, value),
                    None => Ok(None),
                });
            match result {
                Ok(None) => {}
                Ok(Some(cut)) => warnings.push(FieldWarning::new(field.to_string(), cut)),
                Err(_) => warnings.push(FieldWarning::new(field.to_string(), warning_code(field))),
            }
        }

        let external = fields
            .key
            .as_deref()
            .and_then(|id| ContactKey::external(&self.key_namespace, id).ok());
        let key = match (external, &fields.email, &fields.phone) {
            (Some(key), _, _) => key,
            (None, Some(email), _) => ContactKey::from_email(email),
            (None, None, Some(phone)) => ContactKey::from_phone(phone),
            (None, None, None) => {
                return EventOutcome::Refused(ExtractError::NoIdentity {
                    source_name: self.name.clone(),
                    tried: self.identity_fields(),
                });
            }
        };
        let mut contact = Contact::new(key);
        contact.email = fields.email;
        contact.phone = fields.phone;
        contact.full_name = fields.full_name;
        contact.organization = fields.organization;
        contact.tags = fields.tags;
        contact.lists = fields.lists;
        contact.consent.email = fields.consent_email;
        contact.consent.texting = fields.consent_texting;
        contact.custom = fields.custom;
        EventOutcome::Change(MappedChange {
            change: ContactChange::new(
                SyncEvent {
                    source: self.name.clone(),
                    event_id: event_id.to_string(),
                    occurred_at,
                    kind,
                },
                contact,
            ),
            warnings,
            occurred_at_given,
            combined: 0,
        })
    }

    /// Sets one field from its value. `Ok(Some(code))`: set, but shortened to the limits
    /// in [`crate::model::limits`] (the code says so); `Err`: the value is unusable and the
    /// field is left out.
    fn set_field(
        &self,
        fields: &mut Fields,
        field: &CanonicalField,
        expr: &Compiled,
        value: Value,
    ) -> Result<Option<&'static str>, ExtractError> {
        let name = field.to_string();
        let err = |problem: String| self.field_error(&name, expr.text(), problem);
        let mut cut = None;
        match field.kind() {
            ValueKind::Text | ValueKind::Email | ValueKind::Phone => {
                let Some(text) = as_text(&value).map_err(err)? else {
                    return Ok(None);
                };
                match field {
                    CanonicalField::Key => {
                        if text.chars().count() > limits::MAX_KEY_CHARS {
                            return Err(err("longer than a contact id can be".into()));
                        }
                        fields.key = Some(text)
                    }
                    CanonicalField::Email => {
                        fields.email = Some(Email::parse(&text).map_err(|e| err(e.to_string()))?)
                    }
                    CanonicalField::Phone => {
                        fields.phone = Some(
                            PhoneE164::parse(&text, self.phone_region)
                                .map_err(|e| err(e.to_string()))?,
                        )
                    }
                    CanonicalField::FullName => {
                        let (text, was_cut) = limits::cut(text, limits::MAX_NAME_CHARS);
                        cut = was_cut.then_some("full_name_truncated");
                        fields.full_name = Some(text)
                    }
                    CanonicalField::Organization => {
                        let (text, was_cut) = limits::cut(text, limits::MAX_ORGANIZATION_CHARS);
                        cut = was_cut.then_some("organization_truncated");
                        fields.organization = Some(text)
                    }
                    _ => {}
                }
            }
            ValueKind::List => {
                // Each item costs only itself: the readable ones are kept, and an item that
                // is not text (or a tag that is nothing once cleaned, or too long) makes a
                // warning.
                let (list, mut bad) = as_list(&value);
                match field {
                    CanonicalField::Tags => {
                        let usable = |t: &String| {
                            t.chars().count() <= limits::MAX_TAG_CHARS && normalise_tag(t).is_some()
                        };
                        bad |= !list.iter().all(usable);
                        let mut tags = normalise_tags(list.into_iter().filter(usable));
                        if tags.len() > limits::MAX_TAGS {
                            tags.truncate(limits::MAX_TAGS);
                            cut = Some("tags_truncated");
                        }
                        fields.tags = Some(tags);
                    }
                    CanonicalField::Lists => {
                        let mut seen = std::collections::HashSet::new();
                        let mut lists: Vec<String> = list
                            .into_iter()
                            .filter(|l| seen.insert(l.clone()))
                            .collect();
                        if lists.len() > limits::MAX_LIST_ITEMS {
                            lists.truncate(limits::MAX_LIST_ITEMS);
                            cut = Some("lists_truncated");
                        }
                        fields.lists = Some(lists);
                    }
                    _ => {}
                }
                if bad {
                    return Err(err("list item: expected text".into()));
                }
            }
            ValueKind::Bool => {
                let Some(flag) = as_bool(&value).map_err(err)? else {
                    return Ok(None);
                };
                match field {
                    CanonicalField::ConsentEmail => fields.consent_email = Some(flag),
                    CanonicalField::ConsentTexting => fields.consent_texting = Some(flag),
                    _ => {}
                }
            }
            ValueKind::Any => {
                if let CanonicalField::Custom(name) = field {
                    let (value, was_cut) = limits::cut_custom(value)
                        .ok_or_else(|| err("expected a value or a list of values".into()))?;
                    cut = was_cut.then_some("custom_truncated");
                    fields.custom.insert(name.clone(), value);
                }
            }
        }
        Ok(cut)
    }

    /// Evaluates `expr`; `None` for null, missing, or a blank string.
    fn value_at(
        &self,
        field: &CanonicalField,
        expr: &Compiled,
        event: &Rcvar,
    ) -> Result<Option<Value>, ExtractError> {
        let found = expr
            .search(event)
            .map_err(|e| self.field_error(&field.to_string(), expr.text(), e))?;
        let value = serde_json::to_value(&*found)
            .map_err(|e| self.field_error(&field.to_string(), expr.text(), e.to_string()))?;
        Ok(match value {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            other => Some(other),
        })
    }

    fn text_at(
        &self,
        name: &str,
        expr: &Compiled,
        event: &Rcvar,
    ) -> Result<Option<String>, ExtractError> {
        let found = expr
            .search(event)
            .map_err(|e| self.field_error(name, expr.text(), e))?;
        let value = serde_json::to_value(&*found)
            .map_err(|e| self.field_error(name, expr.text(), e.to_string()))?;
        as_text(&value).map_err(|p| self.field_error(name, expr.text(), p))
    }

    fn time_at(
        &self,
        expr: &Compiled,
        event: &Rcvar,
    ) -> Result<Option<DateTime<Utc>>, ExtractError> {
        let found = expr
            .search(event)
            .map_err(|e| self.field_error("occurred_at", expr.text(), e))?;
        let value = serde_json::to_value(&*found)
            .map_err(|e| self.field_error("occurred_at", expr.text(), e.to_string()))?;
        parse_time(&value).map_err(|p| self.field_error("occurred_at", expr.text(), p))
    }

    fn field_error(&self, field: &str, expression: &str, problem: String) -> ExtractError {
        ExtractError::Field {
            source_name: self.name.clone(),
            field: field.to_string(),
            expression: expression.to_string(),
            problem,
        }
    }

    fn not_a_list(&self, each: &Compiled) -> ExtractError {
        ExtractError::NotAnEventList {
            source_name: self.name.clone(),
            expression: each.text().to_string(),
        }
    }

    fn unknown_kind(&self, value: String) -> ExtractError {
        let known = match &self.kind {
            KindRule::From { kinds, .. } => kinds.keys().cloned().collect::<Vec<_>>().join(", "),
            KindRule::Fixed(_) => String::new(),
        };
        ExtractError::UnknownKind {
            source_name: self.name.clone(),
            value,
            known,
        }
    }

    fn identity_fields(&self) -> String {
        self.fields
            .iter()
            .filter(|(f, _)| matches!(f, CanonicalField::Email | CanonicalField::Phone))
            .map(|(f, e)| format!("{f}: {}", e.text()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The canonical fields this source maps, in file order.
    pub fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(|(f, _)| f.to_string()).collect()
    }
}

/// A field left out of a change because its value did not normalise. Names the field and
/// why, never the value (it is personal data).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldWarning {
    /// The canonical field (`phone`, `email`, `tags`, `custom.plan`, ...).
    pub field: String,
    /// Stable code: `phone_invalid`, `email_invalid`, `tags_invalid`, ...
    pub code: &'static str,
    /// In a combined change ([`combine`]): the id of the event the field came from (the
    /// sender knows its events, not our combined ids); `None` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl FieldWarning {
    fn new(field: impl Into<String>, code: &'static str) -> Self {
        FieldWarning {
            field: field.into(),
            code,
            event: None,
        }
    }
}

/// The warning code of a field whose value could not be used.
fn warning_code(field: &CanonicalField) -> &'static str {
    match field {
        CanonicalField::Key | CanonicalField::Person => "key_invalid",
        CanonicalField::Email => "email_invalid",
        CanonicalField::Phone => "phone_invalid",
        CanonicalField::FullName => "full_name_invalid",
        CanonicalField::Organization => "organization_invalid",
        CanonicalField::Tags => "tags_invalid",
        CanonicalField::Lists => "lists_invalid",
        CanonicalField::ConsentEmail => "consent_email_invalid",
        CanonicalField::ConsentTexting => "consent_texting_invalid",
        CanonicalField::Custom(_) => "custom_invalid",
    }
}

/// One event of a delivery, as mapped.
#[derive(Debug, Clone)]
pub struct MappedEvent {
    /// The sender's event id (or the fallback: delivery id, `-<index>` within a batch).
    pub event_id: String,
    pub outcome: EventOutcome,
}

/// What became of one event.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "most events are changes; boxing them would allocate for each one"
)]
pub enum EventOutcome {
    /// A contact change to sync.
    Change(MappedChange),
    /// An event of a kind this source does not map (HubSpot sends every subscription type
    /// of an app to one URL): nothing to do, and not an error.
    Ignored {
        /// The kind as the sender wrote it (not personal data: a subscription type).
        kind: String,
    },
    /// An event that cannot be synced: no usable identifier, or an unreadable event id.
    Refused(ExtractError),
    /// A second copy of an event the delivery carries before (the same event id), found
    /// while combining ([`combine`]): a duplicate, or a conflict when its contents differ.
    Repeated {
        /// Whether the copy means something else than the first.
        conflicting: bool,
    },
}

/// A change with what was left out of it.
#[derive(Debug, Clone)]
pub struct MappedChange {
    pub change: ContactChange,
    /// Fields dropped because their values did not normalise; the rest still syncs.
    pub warnings: Vec<FieldWarning>,
    /// Whether `occurred_at` came from the payload (else it is the time of receipt, which
    /// differs between a sender's retries).
    pub occurred_at_given: bool,
    /// Other events of the delivery combined into this change ([`combine`]); 0 for most.
    pub combined: usize,
}

/// Combines the changes of one delivery that concern the same contact key into one change
/// (HubSpot sends a contact edit of four properties as four events, usually in one
/// request), so each vendor gets one call with the whole edit instead of four.
///
/// * Each field takes its value from the newest change that sets it, and keeps that
///   change's version ([`crate::plan::coalesce`], which ranks ties as planning does).
///   Custom properties are combined one by one.
/// * A deletion is never combined: it stays where it was, and changes of the same contact
///   after it start a new combined change, so the order of "edit, delete, re-create" holds.
/// * The combined change happened when its newest member did; it is a `created` change if
///   any member was (`signup` likewise), else the newest member's kind.
/// * Its event id is the least of its members' ids, a `+` and the number of others, and a
///   hash of all the members' ids (sorted): a sender's retry of the same events, in any
///   order, carries the same id, so it is answered as a duplicate. The field warnings of every member are kept, each
///   under the combined id.
/// * Ignored and refused events are left as they are, in their places, and so is a second
///   copy of an event already in the group (the same event id): it is a duplicate.
pub fn combine(events: Vec<MappedEvent>) -> Vec<MappedEvent> {
    struct Group {
        at: usize,
        members: Vec<(String, MappedChange)>,
    }
    let mut slots: Vec<Option<MappedEvent>> = Vec::with_capacity(events.len());
    let mut groups: Vec<Group> = Vec::new();
    // The open group of each contact key (closed by a deletion of that contact).
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for event in events {
        match event.outcome {
            EventOutcome::Change(change) if change.change.event.kind != ChangeKind::Deleted => {
                let key = change.change.contact.key.as_str().to_string();
                match open.get(&key) {
                    // The same event twice in one delivery: the copy is not combined, it
                    // is the duplicate (or, meaning something else, the conflict) it is.
                    Some(&g)
                        if groups[g]
                            .members
                            .iter()
                            .any(|(id, _)| *id == event.event_id) =>
                    {
                        let conflicting = !groups[g]
                            .members
                            .iter()
                            .any(|(id, m)| *id == event.event_id && m.change == change.change);
                        slots.push(Some(MappedEvent {
                            event_id: event.event_id,
                            outcome: EventOutcome::Repeated { conflicting },
                        }));
                    }
                    Some(&g) => groups[g].members.push((event.event_id, change)),
                    None => {
                        open.insert(key, groups.len());
                        groups.push(Group {
                            at: slots.len(),
                            members: vec![(event.event_id, change)],
                        });
                        slots.push(None);
                    }
                }
            }
            EventOutcome::Change(change) => {
                open.remove(change.change.contact.key.as_str());
                slots.push(Some(MappedEvent {
                    event_id: event.event_id,
                    outcome: EventOutcome::Change(change),
                }));
            }
            outcome => slots.push(Some(MappedEvent {
                event_id: event.event_id,
                outcome,
            })),
        }
    }
    for group in groups {
        slots[group.at] = Some(merge(group.members));
    }
    slots.into_iter().flatten().collect()
}

/// One change from the changes of one contact (see [`combine`]); `members` is not empty.
fn merge(mut members: Vec<(String, MappedChange)>) -> MappedEvent {
    if members.len() == 1 {
        let (event_id, change) = members.remove(0);
        return MappedEvent {
            event_id,
            outcome: EventOutcome::Change(change),
        };
    }
    let mut ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    let first = ids[0].to_string();
    let combined = ids.len() - 1;
    let digest = sha2::Sha256::digest(ids.join("\n").as_bytes());
    let event_id = format!(
        "{first}+{}~{}",
        members.len() - 1,
        hex::encode(&digest[..6])
    );
    let occurred_at_given = members.iter().all(|(_, m)| m.occurred_at_given);
    // Oldest first, as the warnings are listed; a stable sort keeps the delivery's order
    // among equal times.
    members.sort_by_key(|(_, m)| m.change.event.occurred_at);
    // Each warning names the event it came from.
    let mut warnings: Vec<FieldWarning> = Vec::new();
    for (id, m) in &mut members {
        for mut w in std::mem::take(&mut m.warnings) {
            w.event.get_or_insert_with(|| id.clone());
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    // Not empty: more than one member (above).
    let (_, first) = members.remove(0);
    let change = crate::plan::coalesce(first.change, members.into_iter().map(|(_, m)| m.change));
    let mut out = MappedChange {
        change,
        warnings,
        occurred_at_given,
        combined,
    };
    out.change.event.event_id = event_id.clone();
    MappedEvent {
        event_id,
        outcome: EventOutcome::Change(out),
    }
}

/// Sets `full_name` from the text of the `parts` custom fields when there is no full name
/// and every part is there and not blank; a change with only some parts keeps no full name
/// (a first name alone must not replace the whole name at a vendor).
/// Answers whether it set one.
fn compose_full_name(contact: &mut Contact, parts: &[String]) -> bool {
    if contact.full_name.is_some() {
        return false;
    }
    let mut words = Vec::with_capacity(parts.len());
    for part in parts {
        match contact
            .custom
            .get(part)
            .and_then(Value::as_str)
            .map(str::trim)
        {
            Some(word) if !word.is_empty() => words.push(word),
            _ => return false,
        }
    }
    let (name, _) = limits::cut(words.join(" "), limits::MAX_NAME_CHARS);
    contact.full_name = Some(name);
    true
}

#[derive(Default)]
struct Fields {
    key: Option<String>,
    email: Option<Email>,
    phone: Option<PhoneE164>,
    full_name: Option<String>,
    organization: Option<String>,
    tags: Option<Vec<String>>,
    lists: Option<Vec<String>>,
    consent_email: Option<bool>,
    consent_texting: Option<bool>,
    custom: BTreeMap<String, Value>,
}

fn as_text(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(_) => Err("expected text, got true/false".into()),
        Value::Array(_) => Err("expected text, got a list".into()),
        Value::Object(_) => Err("expected text, got an object".into()),
    }
}

/// The text items of a list (or of a single value), and whether any item was unreadable.
fn as_list(value: &Value) -> (Vec<String>, bool) {
    let items: &[Value] = match value {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    };
    let mut bad = false;
    let mut out = Vec::new();
    for item in items {
        match as_text(item) {
            Ok(Some(text)) => out.push(text),
            Ok(None) => {}
            Err(_) => bad = true,
        }
    }
    (out, bad)
}

fn as_bool(value: &Value) -> Result<Option<bool>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(Some(true)),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(Some(false)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "on" | "checked" => Ok(Some(true)),
            "false" | "no" | "n" | "0" | "off" | "unchecked" => Ok(Some(false)),
            _ => Err("expected true/false (or yes/no, 1/0, on/off)".into()),
        },
        _ => Err("expected true/false".into()),
    }
}

/// RFC 3339 strings; numbers as epoch milliseconds (above 10^11) or seconds.
fn parse_time(value: &Value) -> Result<Option<DateTime<Utc>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| "expected an RFC 3339 time such as 2026-01-31T12:00:00Z".into()),
        Value::Number(n) => {
            let raw = n
                .as_i64()
                .ok_or("expected a whole number of seconds or milliseconds")?;
            let millis = if raw.abs() > 100_000_000_000 {
                raw
            } else {
                raw.saturating_mul(1000)
            };
            Utc.timestamp_millis_opt(millis)
                .single()
                .map(Some)
                .ok_or_else(|| "time out of range".into())
        }
        _ => Err("expected a time".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_accept_common_spellings() {
        assert_eq!(as_bool(&json!("Yes")), Ok(Some(true)));
        assert_eq!(as_bool(&json!(0)), Ok(Some(false)));
        assert_eq!(as_bool(&json!(null)), Ok(None));
        assert!(as_bool(&json!("maybe")).is_err());
    }

    #[test]
    fn times_accept_rfc3339_and_epochs() {
        let t = Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).single();
        assert_eq!(parse_time(&json!("2026-01-31T12:00:00Z")).unwrap(), t);
        assert_eq!(parse_time(&json!(1_769_860_800_000_i64)).unwrap(), t);
        assert_eq!(parse_time(&json!(1_769_860_800_i64)).unwrap(), t);
        assert!(parse_time(&json!("yesterday")).is_err());
    }

    #[test]
    fn lists_take_strings_and_numbers_and_say_when_an_item_was_unreadable() {
        assert_eq!(
            as_list(&json!(["a", 2, null])),
            (vec!["a".into(), "2".into()], false)
        );
        assert_eq!(as_list(&json!("solo")), (vec!["solo".into()], false));
        assert_eq!(
            as_list(&json!(["a", {"x": 1}, true, "b"])),
            (vec!["a".into(), "b".into()], true)
        );
    }
}
