//! One source's compiled mapping: JMESPath expressions compiled once at load, applied to
//! each payload to produce contact changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use jmespath::{Expression, Rcvar, Variable};
use serde_json::Value;

use super::canonical::{CanonicalField, ValueKind};
use super::error::ExtractError;
use super::file::Route;
use crate::model::tags::normalise_tags;
use crate::model::{
    ChangeKind, Contact, ContactChange, ContactKey, Email, PhoneE164, PhoneRegion, SyncEvent,
};
use crate::vendors::Vendor;

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
    pub signature: Option<crate::ingress::signature::SignatureScheme>,
    pub(crate) each: Option<Compiled>,
    pub(crate) event_id: Option<Compiled>,
    pub(crate) occurred_at: Option<Compiled>,
    pub(crate) kind: KindRule,
    pub(crate) key_namespace: String,
    pub(crate) fields: Vec<(CanonicalField, Compiled)>,
    pub(crate) phone_region: PhoneRegion,
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
    /// Maps one payload into its contact changes (one, or one per event of a batch).
    pub fn extract(
        &self,
        payload: &Value,
        defaults: &EventDefaults,
    ) -> Result<Vec<ContactChange>, ExtractError> {
        Ok(self
            .extract_with_raw(payload, defaults)?
            .into_iter()
            .map(|(change, _)| change)
            .collect())
    }

    /// Like [`Self::extract`], with each change's own part of the payload (the whole payload,
    /// or one item of a batch): what idempotency hashes, so a retried batch item matches.
    pub fn extract_with_raw(
        &self,
        payload: &Value,
        defaults: &EventDefaults,
    ) -> Result<Vec<(ContactChange, Value)>, ExtractError> {
        let root: Rcvar = Arc::new(
            Variable::try_from(payload)
                .map_err(|e| self.field_error("<payload>", "<payload>", e.to_string()))?,
        );
        let events: Vec<Rcvar> = match &self.each {
            None => vec![root],
            Some(each) => {
                let found = each.search(&root).map_err(|_| self.not_a_list(each))?;
                match found.as_array() {
                    Some(items) => items.clone(),
                    None => return Err(self.not_a_list(each)),
                }
            }
        };
        let batch = self.each.is_some();
        events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let fallback_id = if batch {
                    format!("{}-{i}", defaults.event_id)
                } else {
                    defaults.event_id.clone()
                };
                let change = self.extract_one(event, fallback_id, defaults.received_at)?;
                let raw = if batch {
                    serde_json::to_value(&**event)
                        .map_err(|e| self.field_error("each", "<item>", e.to_string()))?
                } else {
                    payload.clone()
                };
                Ok((change, raw))
            })
            .collect()
    }

    fn extract_one(
        &self,
        event: &Rcvar,
        fallback_id: String,
        received_at: DateTime<Utc>,
    ) -> Result<ContactChange, ExtractError> {
        let event_id = match &self.event_id {
            Some(expr) => self
                .text_at("event_id", expr, event)?
                .unwrap_or(fallback_id),
            None => fallback_id,
        };
        let occurred_at = match &self.occurred_at {
            Some(expr) => self.time_at(expr, event)?.unwrap_or(received_at),
            None => received_at,
        };
        let kind = match &self.kind {
            KindRule::Fixed(kind) => *kind,
            KindRule::From { expr, kinds } => {
                let value = self.text_at("kind", expr, event)?.unwrap_or_default();
                *kinds.get(&value).ok_or_else(|| ExtractError::UnknownKind {
                    source_name: self.name.clone(),
                    value: value.clone(),
                    known: kinds.keys().cloned().collect::<Vec<_>>().join(", "),
                })?
            }
        };

        let mut fields = Fields::default();
        for (field, expr) in &self.fields {
            let found = self.value_at(field, expr, event)?;
            if let Some(value) = found {
                self.set_field(&mut fields, field, expr, value)?;
            }
        }

        let key = match (&fields.key, &fields.email, &fields.phone) {
            (Some(external), _, _) => {
                ContactKey::external(&self.key_namespace, external).map_err(|e| {
                    self.field_error("key", self.expr_text(&CanonicalField::Key), e.to_string())
                })?
            }
            (None, Some(email), _) => ContactKey::from_email(email),
            (None, None, Some(phone)) => ContactKey::from_phone(phone),
            (None, None, None) => {
                return Err(ExtractError::NoIdentity {
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
        Ok(ContactChange {
            event: SyncEvent {
                source: self.name.clone(),
                event_id,
                occurred_at,
                kind,
            },
            contact,
        })
    }

    fn set_field(
        &self,
        fields: &mut Fields,
        field: &CanonicalField,
        expr: &Compiled,
        value: Value,
    ) -> Result<(), ExtractError> {
        let name = field.to_string();
        let err = |problem: String| self.field_error(&name, expr.text(), problem);
        match field.kind() {
            ValueKind::Text | ValueKind::Email | ValueKind::Phone => {
                let Some(text) = as_text(&value).map_err(err)? else {
                    return Ok(());
                };
                match field {
                    CanonicalField::Key => fields.key = Some(text),
                    CanonicalField::Email => {
                        fields.email = Some(Email::parse(&text).map_err(|e| err(e.to_string()))?)
                    }
                    CanonicalField::Phone => {
                        fields.phone = Some(
                            PhoneE164::parse(&text, self.phone_region)
                                .map_err(|e| err(e.to_string()))?,
                        )
                    }
                    CanonicalField::FullName => fields.full_name = Some(text),
                    CanonicalField::Organization => fields.organization = Some(text),
                    _ => {}
                }
            }
            ValueKind::List => {
                let list = as_list(&value).map_err(err)?;
                match field {
                    CanonicalField::Tags => fields.tags = Some(normalise_tags(list)),
                    CanonicalField::Lists => {
                        let mut seen = std::collections::HashSet::new();
                        fields.lists = Some(
                            list.into_iter()
                                .filter(|l| seen.insert(l.clone()))
                                .collect(),
                        );
                    }
                    _ => {}
                }
            }
            ValueKind::Bool => {
                let Some(flag) = as_bool(&value).map_err(err)? else {
                    return Ok(());
                };
                match field {
                    CanonicalField::ConsentEmail => fields.consent_email = Some(flag),
                    CanonicalField::ConsentTexting => fields.consent_texting = Some(flag),
                    _ => {}
                }
            }
            ValueKind::Any => {
                if let CanonicalField::Custom(name) = field {
                    if let Value::Object(_) = value {
                        return Err(err("expected a value or a list, got an object".into()));
                    }
                    fields.custom.insert(name.clone(), value);
                }
            }
        }
        Ok(())
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

    fn expr_text(&self, field: &CanonicalField) -> &str {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, e)| e.text())
            .unwrap_or("")
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

fn as_list(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| as_text(item).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|p| format!("list item: {p}")),
        other => Ok(as_text(other)?.into_iter().collect()),
    }
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
    fn lists_take_strings_and_numbers() {
        assert_eq!(
            as_list(&json!(["a", 2, null])),
            Ok(vec!["a".into(), "2".into()])
        );
        assert_eq!(as_list(&json!("solo")), Ok(vec!["solo".into()]));
        assert!(as_list(&json!([{"x": 1}])).is_err());
    }
}
