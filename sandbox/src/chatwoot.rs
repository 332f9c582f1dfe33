//! Sandbox Chatwoot contacts on the Omnivibe host (`vendor-notes.md`, and Chatwoot's own
//! controller and views): `POST /api/v1/accounts/{account_id}/contacts`,
//! `PUT|PATCH|GET .../contacts/{id}`, `GET .../contacts/search?q=`.
//!
//! `email`, `phone_number` and `identifier` are unique per account (e-mail without regard
//! to case); a clash answers 422 `{"message": "Email has already been taken",
//! "attributes": ["email"]}`, as do Chatwoot's format checks (`phone_number` must match
//! `\+[1-9]\d{1,14}`). Answers use Chatwoot's wrapped shapes: create
//! `{"payload": {"contact", "contact_inbox"}}`, update `{"payload": contact}`, search
//! `{"meta", "payload": [...]}`. Update merges `custom_attributes` and
//! `additional_attributes` into the stored ones, as Chatwoot does.
//!
//! Stricter than Chatwoot on purpose: a field outside the documented six is refused (400)
//! instead of silently dropped, so a typo in the relay shows up.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::Shared;
use super::checks::{Refusal, is_chatwoot_e164, is_email, json_object, only_fields, opt_object};
use super::host;
use super::record::{Rule, lock};

/// The contact fields the relay may send (`vendor-notes.md`).
const CONTACT_FIELDS: [&str; 6] = [
    "name",
    "email",
    "phone_number",
    "identifier",
    "custom_attributes",
    "additional_attributes",
];

/// Chatwoot's search page size.
const RESULTS_PER_PAGE: usize = 15;

/// A Chatwoot contact as the sandbox stores it. `Debug` shows the id only.
#[derive(Clone, PartialEq)]
pub struct ChatwootContact {
    pub id: u64,
    pub name: Option<String>,
    /// Stored lowercased, as Chatwoot does.
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub identifier: Option<String>,
    pub custom_attributes: Map<String, Value>,
    pub additional_attributes: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for ChatwootContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatwootContact")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ChatwootContact {
    /// The contact as Chatwoot's `_contact.json.jbuilder` renders it.
    pub fn to_json(&self) -> Value {
        json!({
            "additional_attributes": self.additional_attributes,
            "availability_status": "offline",
            "email": self.email,
            "id": self.id,
            "name": self.name,
            "phone_number": self.phone_number,
            "identifier": self.identifier,
            "thumbnail": "",
            "custom_attributes": self.custom_attributes,
            "last_activity_at": Value::Null,
            "created_at": self.created_at.timestamp(),
            "updated_at": self.updated_at.timestamp(),
            "contact_inboxes": [],
        })
    }
}

#[derive(Default)]
struct Store {
    contacts: Vec<ChatwootContact>,
    next_id: u64,
}

/// The Chatwoot account the sandbox serves.
pub(crate) struct Chatwoot {
    account_id: u64,
    store: Mutex<Store>,
}

impl Chatwoot {
    pub fn new(account_id: u64) -> Self {
        Chatwoot {
            account_id,
            store: Mutex::new(Store {
                next_id: 1,
                ..Store::default()
            }),
        }
    }

    pub fn contacts(&self) -> Vec<ChatwootContact> {
        lock(&self.store).contacts.clone()
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/accounts/{account_id}/contacts", post(create))
        .route("/api/v1/accounts/{account_id}/contacts/search", get(search))
        .route(
            "/api/v1/accounts/{account_id}/contacts/{id}",
            get(show).put(update).patch(update),
        )
}

/// Token, then account membership.
fn admit(s: &Shared, headers: &HeaderMap, account: &str) -> Result<(), Refusal> {
    host::authorize(headers, &s.credentials.chatwoot_token)?;
    match account.parse::<u64>() {
        Ok(id) if id == s.chatwoot.account_id => Ok(()),
        Ok(_) => Err(Refusal::broke(
            StatusCode::UNAUTHORIZED,
            Rule::AccountAccess,
            "You are not authorized to access this account",
        )),
        Err(_) => Err(Refusal::broke(
            StatusCode::NOT_FOUND,
            Rule::AccountAccess,
            "Resource could not be found",
        )),
    }
}

fn not_found() -> Refusal {
    Refusal::state(StatusCode::NOT_FOUND, "Resource could not be found")
}

/// A string field that may also be `null` (clears it): `None` when absent.
fn nullable_string(map: &Map<String, Value>, key: &str) -> Result<Option<Option<String>>, Refusal> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(Refusal::bad(
            Rule::FieldType,
            format!("Field `{key}` must be a string or null."),
        )),
    }
}

/// A checked contact body.
struct ContactInput {
    name: Option<Option<String>>,
    email: Option<Option<String>>,
    phone_number: Option<Option<String>>,
    identifier: Option<Option<String>>,
    custom_attributes: Option<Map<String, Value>>,
    additional_attributes: Option<Map<String, Value>>,
}

fn invalid(rule: Rule, message: &str, attribute: &str) -> Refusal {
    Refusal::broke(StatusCode::UNPROCESSABLE_ENTITY, rule, message).with_attributes(&[attribute])
}

fn parse_contact(headers: &HeaderMap, body: &[u8]) -> Result<ContactInput, Refusal> {
    let map = json_object(headers, body)?;
    only_fields(&map, &CONTACT_FIELDS)?;
    let input = ContactInput {
        name: nullable_string(&map, "name")?,
        email: nullable_string(&map, "email")?
            .map(|e| e.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty())),
        phone_number: nullable_string(&map, "phone_number")?,
        identifier: nullable_string(&map, "identifier")?,
        custom_attributes: opt_object(&map, "custom_attributes")?.cloned(),
        additional_attributes: opt_object(&map, "additional_attributes")?.cloned(),
    };
    if let Some(Some(e)) = &input.email
        && !is_email(e)
    {
        return Err(invalid(Rule::EmailFormat, "Email Invalid email", "email"));
    }
    if let Some(Some(p)) = &input.phone_number
        && !p.is_empty()
        && !is_chatwoot_e164(p)
    {
        return Err(invalid(
            Rule::PhoneFormat,
            "Phone number should be in e164 format",
            "phone_number",
        ));
    }
    Ok(input)
}

/// The unique keys of `candidate` already held by another contact → 422 (a state answer).
fn check_unique(contacts: &[ChatwootContact], candidate: &ChatwootContact) -> Result<(), Refusal> {
    let others = || contacts.iter().filter(|c| c.id != candidate.id);
    let taken = |get: fn(&ChatwootContact) -> Option<&str>| {
        get(candidate)
            .filter(|v| !v.is_empty())
            .is_some_and(|v| others().any(|c| get(c) == Some(v)))
    };
    let mut messages = Vec::new();
    let mut attributes = Vec::new();
    for (attribute, message, get) in [
        (
            "email",
            "Email has already been taken",
            (|c: &ChatwootContact| c.email.as_deref()) as fn(&ChatwootContact) -> Option<&str>,
        ),
        ("phone_number", "Phone number has already been taken", |c| {
            c.phone_number.as_deref()
        }),
        ("identifier", "Identifier has already been taken", |c| {
            c.identifier.as_deref()
        }),
    ] {
        if taken(get) {
            messages.push(message);
            attributes.push(attribute);
        }
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(
            Refusal::state(StatusCode::UNPROCESSABLE_ENTITY, messages.join(", "))
                .with_attributes(&attributes),
        )
    }
}

fn apply(contact: &mut ChatwootContact, input: ContactInput, now: DateTime<Utc>) {
    if let Some(v) = input.name {
        contact.name = v;
    }
    if let Some(v) = input.email {
        contact.email = v;
    }
    if let Some(v) = input.phone_number {
        contact.phone_number = v.filter(|p| !p.is_empty());
    }
    if let Some(v) = input.identifier {
        contact.identifier = v.filter(|i| !i.is_empty());
    }
    if let Some(v) = input.custom_attributes {
        contact.custom_attributes.extend(v);
    }
    if let Some(v) = input.additional_attributes {
        contact.additional_attributes.extend(v);
    }
    contact.updated_at = now;
}

/// `POST /api/v1/accounts/{account_id}/contacts` → 200 `{"payload": {"contact", "contact_inbox"}}`.
async fn create(
    State(s): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = s.clock.now();
    let result = admit(&s, &headers, &account)
        .and_then(|()| parse_contact(&headers, &body))
        .and_then(|input| {
            let mut store = lock(&s.chatwoot.store);
            let mut contact = ChatwootContact {
                id: store.next_id,
                name: None,
                email: None,
                phone_number: None,
                identifier: None,
                custom_attributes: Map::new(),
                additional_attributes: Map::new(),
                created_at: now,
                updated_at: now,
            };
            apply(&mut contact, input, now);
            check_unique(&store.contacts, &contact)?;
            store.next_id += 1;
            let answer = json!({"payload": {
                "contact": contact.to_json(),
                "contact_inbox": {"inbox": Value::Null, "source_id": Value::Null},
            }});
            store.contacts.push(contact);
            Ok(Json(answer).into_response())
        });
    result.unwrap_or_else(host::render)
}

/// `PUT|PATCH /api/v1/accounts/{account_id}/contacts/{id}` → 200 `{"payload": contact}`.
async fn update(
    State(s): State<Arc<Shared>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = s.clock.now();
    let result = admit(&s, &headers, &account)
        .and_then(|()| parse_contact(&headers, &body))
        .and_then(|input| {
            let mut store = lock(&s.chatwoot.store);
            let id = id.parse::<u64>().map_err(|_| not_found())?;
            let index = store
                .contacts
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(not_found)?;
            let mut changed = store.contacts[index].clone();
            apply(&mut changed, input, now);
            check_unique(&store.contacts, &changed)?;
            let answer = json!({"payload": changed.to_json()});
            store.contacts[index] = changed;
            Ok(Json(answer).into_response())
        });
    result.unwrap_or_else(host::render)
}

/// `GET /api/v1/accounts/{account_id}/contacts/{id}` → 200 `{"payload": contact}`.
async fn show(
    State(s): State<Arc<Shared>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = admit(&s, &headers, &account).and_then(|()| {
        let store = lock(&s.chatwoot.store);
        let id = id.parse::<u64>().map_err(|_| not_found())?;
        let contact = store
            .contacts
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(not_found)?;
        Ok(Json(json!({"payload": contact.to_json()})).into_response())
    });
    result.unwrap_or_else(host::render)
}

/// Chatwoot's search: `ILIKE %q%` on name, e-mail and phone, `LIKE %q%` on the
/// identifier, and the id itself when `q` is a number.
fn search_matches(c: &ChatwootContact, q: &str) -> bool {
    let q_lower = q.to_lowercase();
    let ilike = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|v| v.to_lowercase().contains(&q_lower))
    };
    ilike(&c.name)
        || ilike(&c.email)
        || ilike(&c.phone_number)
        || c.identifier.as_deref().is_some_and(|i| i.contains(q))
        || q.parse::<u64>().is_ok_and(|id| id == c.id)
}

/// `GET /api/v1/accounts/{account_id}/contacts/search?q=` → `{"meta", "payload": [...]}`.
async fn search(
    State(s): State<Arc<Shared>>,
    Path(account): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = admit(&s, &headers, &account).and_then(|()| {
        let mut q = None;
        let mut page = 1usize;
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "q" => q = Some(v.trim().to_owned()),
                "page" => page = v.parse().unwrap_or(1).max(1),
                _ => {}
            }
        }
        let q = q.filter(|q| !q.is_empty()).ok_or_else(|| {
            Refusal::broke(
                StatusCode::UNPROCESSABLE_ENTITY,
                Rule::Query,
                "Specify search string with parameter q",
            )
        })?;
        let store = lock(&s.chatwoot.store);
        let hits: Vec<&ChatwootContact> = store
            .contacts
            .iter()
            .filter(|c| search_matches(c, &q))
            .skip((page - 1) * RESULTS_PER_PAGE)
            .collect();
        let has_more = hits.len() > RESULTS_PER_PAGE;
        let payload: Vec<Value> = hits
            .iter()
            .take(RESULTS_PER_PAGE)
            .map(|c| c.to_json())
            .collect();
        Ok(Json(json!({
            "meta": {"count": payload.len(), "current_page": page, "has_more": has_more},
            "payload": payload,
        }))
        .into_response())
    });
    result.unwrap_or_else(host::render)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: u64, email: &str, phone: &str, identifier: &str) -> ChatwootContact {
        ChatwootContact {
            id,
            name: Some("Ann Lee".into()),
            email: Some(email.into()),
            phone_number: Some(phone.into()),
            identifier: Some(identifier.into()),
            custom_attributes: Map::new(),
            additional_attributes: Map::new(),
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn uniqueness_lists_every_clashing_attribute() {
        let existing = vec![contact(1, "a@x.io", "+14155552671", "k1")];
        let clash = contact(2, "a@x.io", "+14155552671", "k2");
        let err = check_unique(&existing, &clash).expect_err("clash");
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            err.message,
            "Email has already been taken, Phone number has already been taken"
        );
        assert_eq!(err.attributes, vec!["email", "phone_number"]);
        assert_eq!(err.rule, None);
        // A contact never clashes with itself.
        assert!(check_unique(&existing, &existing[0]).is_ok());
    }

    #[test]
    fn search_is_substring_and_case_insensitive_except_identifier() {
        let c = contact(12, "ann.lee@example.com", "+14155552671", "Email:Ann");
        assert!(search_matches(&c, "ANN.LEE@"));
        assert!(search_matches(&c, "+1415"));
        assert!(search_matches(&c, "Email:Ann"));
        assert!(search_matches(&c, "12"));
        assert!(!search_matches(&c, "email:ann.x"));
        assert!(!search_matches(&c, "bob"));
    }
}
