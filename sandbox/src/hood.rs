//! Sandbox Ocamba Hood (`vendor-docs/hood-*.txt`, `vendor-notes.md`): profiles, custom
//! profile properties, the list filter `field=op:value`, and the account-wide rate limit
//! (fixed windows of 10 per second and 150 per minute, shared by every endpoint) with
//! `X-RateLimit-*` headers on every authenticated answer and `Retry-After` on a 429.
//!
//! Errors answer Hood's `{code, title, message, trace_id}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use super::Shared;
use super::checks::{
    Refusal, check_e164, check_email, credential_matches, header_text, json_object, only_fields,
    opt_object, opt_string, opt_strings, printable,
};
use super::record::{Broke, Rule, lock, tag_route};
use super::window::{Budget, FixedWindows, Window};
use relay_shared::vendors::hood::wire::{CREATE_FIELDS, UPDATABLE_FIELDS};

/// Hood's burst limit: requests per fixed 1 s window, per account.
pub const BURST_PER_SECOND: u32 = 10;
/// Hood's steady limit: requests per fixed 60 s window, per account.
pub const STEADY_PER_MINUTE: u32 = 150;

/// The fields `POST /v1/hood/profile-properties` takes (the docs' example body).
const PROPERTY_FIELDS: [&str; 8] = [
    "label",
    "data_type",
    "example",
    "description",
    "export_alias",
    "pi_data",
    "importable",
    "exportable",
];

/// Property data types the sandbox accepts; the relay only ever defines `text`.
const DATA_TYPES: [&str; 4] = ["text", "number", "boolean", "date"];

/// The `company_id` the sandbox's account has.
const COMPANY_ID: &str = "7196310";

/// A Hood profile as the sandbox stores it. `Debug` shows the id and which fields are set.
#[derive(Clone, PartialEq, Eq)]
pub struct HoodProfile {
    /// Numeric string, as Hood's ids are.
    pub id: String,
    pub email: Option<String>,
    pub mobile_phone_number: Option<String>,
    pub full_name: Option<String>,
    pub organization_id: Option<String>,
    pub lists: Vec<String>,
    pub comment: Option<String>,
    pub custom_properties: BTreeMap<String, String>,
    /// ISO 3166-1 alpha-2, derived from the phone number as Hood does.
    pub country: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for HoodProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoodProfile")
            .field("id", &self.id)
            .field("has_email", &self.email.is_some())
            .field(
                "has_mobile_phone_number",
                &self.mobile_phone_number.is_some(),
            )
            .field("has_full_name", &self.full_name.is_some())
            .field("lists", &self.lists.len())
            .field(
                "custom_properties",
                &self.custom_properties.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HoodProfile {
    /// The profile as Hood's API returns it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "company_id": COMPANY_ID,
            "email": self.email,
            "mobile_phone_number": self.mobile_phone_number,
            "full_name": self.full_name,
            "country": self.country,
            "organization_id": self.organization_id,
            "lists": self.lists,
            "comment": self.comment,
            "custom_properties": self.custom_properties,
            "create_time": hood_time(self.created_at),
            "update_time": hood_time(self.updated_at),
        })
    }
}

/// A custom profile property as the sandbox stores it (no personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoodProperty {
    pub id: String,
    pub label: String,
    pub data_type: String,
    pub example: String,
    pub description: String,
    pub export_alias: String,
    pub pi_data: u8,
    pub importable: u8,
    pub exportable: u8,
    pub created_at: DateTime<Utc>,
}

impl HoodProperty {
    /// The property as Hood's API returns it (`vendor-docs/hood-create-profile-property.txt`).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "company_id": COMPANY_ID,
            "target": self.label,
            "label": self.label,
            "data_type": self.data_type,
            "example": self.example,
            "description": self.description,
            "import_aliases": if self.export_alias.is_empty() { vec![] } else { vec![self.export_alias.clone()] },
            "export_alias": self.export_alias,
            "pi_data": self.pi_data,
            "system": 0,
            "importable": self.importable,
            "exportable": self.exportable,
            "create_time": hood_time(self.created_at),
            "update_time": hood_time(self.created_at),
        })
    }
}

/// Hood's timestamp format, `2025-01-29 12:47:00`.
fn hood_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[derive(Default)]
struct Store {
    profiles: Vec<HoodProfile>,
    properties: Vec<HoodProperty>,
    next_profile: u64,
    next_property: u64,
}

/// The Hood account the sandbox serves.
pub(crate) struct Hood {
    store: Mutex<Store>,
    limits: Mutex<FixedWindows>,
    answer_created_profile: bool,
}

impl Hood {
    pub fn new(
        answer_created_profile: bool,
        predefined: &[String],
        limits: (u32, u32),
        now: DateTime<Utc>,
    ) -> Self {
        let mut store = Store {
            next_profile: 2_000_001,
            next_property: 1_000_101,
            ..Store::default()
        };
        for label in predefined {
            let id = store.next_property.to_string();
            store.next_property += 1;
            store.properties.push(HoodProperty {
                id,
                label: label.clone(),
                data_type: "text".into(),
                example: String::new(),
                description: String::new(),
                export_alias: label.clone(),
                pi_data: 0,
                importable: 1,
                exportable: 1,
                created_at: now,
            });
        }
        Hood {
            store: Mutex::new(store),
            limits: Mutex::new(FixedWindows::new(vec![
                Window::new(1_000, limits.0),
                Window::new(60_000, limits.1),
            ])),
            answer_created_profile,
        }
    }

    pub fn profiles(&self) -> Vec<HoodProfile> {
        lock(&self.store).profiles.clone()
    }

    pub fn properties(&self) -> Vec<HoodProperty> {
        lock(&self.store).properties.clone()
    }
}

/// The Hood routes, with auth and the rate limit in front of every one.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/hood/profiles", get(list_profiles).post(create_profile))
        .route("/v1/hood/profiles/{id}", patch(patch_profile))
        .route(
            "/v1/hood/profile-properties",
            get(list_properties).post(create_property),
        )
        .fallback(unknown_path)
        .method_not_allowed_fallback(unknown_method)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .layer(middleware::from_fn(tag_route))
        .with_state(shared)
}

/// Hood's error body, with the violation (if any) attached for the recorder.
fn render(r: Refusal) -> Response {
    let title = match r.status.as_u16() {
        400 => "Bad request.",
        401 => "Unauthorized.",
        404 => "Not found.",
        405 => "Method not allowed.",
        415 => "Unsupported media type.",
        429 => "Too many requests.",
        _ => "Error.",
    };
    let body = json!({
        "code": r.status.as_u16(),
        "title": title,
        "message": r.message,
        "trace_id": uuid::Uuid::new_v4().to_string(),
    });
    let mut response = (r.status, Json(body)).into_response();
    if let Some(rule) = r.rule {
        response.extensions_mut().insert(Broke {
            rule,
            message: r.message,
        });
    }
    response
}

fn set_rate_headers(response: &mut Response, budget: Budget, now_ms: i64) {
    let h = response.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(budget.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(budget.remaining));
    h.insert(
        "x-ratelimit-reset",
        HeaderValue::from(budget.reset_in_secs(now_ms)),
    );
}

/// Auth, then the account's rate limit (only authenticated requests count).
async fn gate(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let presented = header_text(request.headers(), header::AUTHORIZATION.as_str()).and_then(|v| {
        v.split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
    });
    if !credential_matches(presented, &s.credentials.hood_token) {
        return render(Refusal::broke(
            StatusCode::UNAUTHORIZED,
            Rule::Auth,
            "Missing or invalid bearer token.",
        ));
    }
    let now_ms = s.clock.now().timestamp_millis();
    let admitted = lock(&s.hood.limits).admit(now_ms);
    match admitted {
        Ok(budget) => {
            let mut response = next.run(request).await;
            set_rate_headers(&mut response, budget, now_ms);
            response
        }
        Err(exceeded) => {
            let mut response = render(Refusal::broke(
                StatusCode::TOO_MANY_REQUESTS,
                Rule::RateLimit,
                format!(
                    "Rate limit exceeded ({BURST_PER_SECOND}/s, {STEADY_PER_MINUTE}/min per account)."
                ),
            ));
            set_rate_headers(&mut response, exceeded.budget, now_ms);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(exceeded.retry_after_secs),
            );
            response
        }
    }
}

async fn unknown_path() -> Response {
    render(Refusal::broke(
        StatusCode::NOT_FOUND,
        Rule::UnknownEndpoint,
        "No such endpoint.",
    ))
}

async fn unknown_method() -> Response {
    render(Refusal::broke(
        StatusCode::METHOD_NOT_ALLOWED,
        Rule::UnknownEndpoint,
        "Method not allowed on this endpoint.",
    ))
}

/// Country of an E.164 number, as Hood derives it (none for non-geographic numbers such as
/// `+800`).
fn country_of(phone: &str) -> Option<String> {
    use rlibphonenumber::PHONE_NUMBER_UTIL;
    use rlibphonenumber::enums::Region;
    let number = PHONE_NUMBER_UTIL.parse(phone, None).ok()?;
    PHONE_NUMBER_UTIL
        .get_region_for_number(&number)
        .filter(|r| *r != Region::World)
        .map(|r| r.to_string())
}

/// `POST /v1/hood/profiles`.
async fn create_profile(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = s.clock.now();
    create(&s.hood, now, &headers, &body).unwrap_or_else(render)
}

fn create(
    hood: &Hood,
    now: DateTime<Utc>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let map = json_object(headers, body)?;
    only_fields(&map, &CREATE_FIELDS)?;
    let email = opt_string(&map, "email")?;
    let phone = opt_string(&map, "mobile_phone_number")?;
    let full_name = opt_string(&map, "full_name")?;
    if email.is_none() && phone.is_none() {
        return Err(Refusal::bad(
            Rule::MissingField,
            "To create a profile, provide an email or a mobile_phone_number.",
        ));
    }
    if let Some(e) = &email {
        check_email("email", e)?;
    }
    if let Some(p) = &phone {
        check_e164("mobile_phone_number", p)?;
    }
    let mut store = lock(&hood.store);
    let id = store.next_profile.to_string();
    store.next_profile += 1;
    let profile = HoodProfile {
        id,
        country: phone.as_deref().and_then(country_of),
        email,
        mobile_phone_number: phone,
        full_name,
        organization_id: None,
        lists: Vec::new(),
        comment: None,
        custom_properties: BTreeMap::new(),
        created_at: now,
        updated_at: now,
    };
    let answer = profile.to_json();
    store.profiles.push(profile);
    Ok(if hood.answer_created_profile {
        (StatusCode::CREATED, Json(answer)).into_response()
    } else {
        // The older docs: 201 with a JSON content type and no body.
        (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
        )
            .into_response()
    })
}

/// A checked PATCH body.
struct Update {
    email: Option<String>,
    phone: Option<String>,
    full_name: Option<String>,
    organization_id: Option<String>,
    lists: Option<Vec<String>>,
    comment: Option<String>,
    custom: Option<BTreeMap<String, String>>,
}

fn parse_update(map: &Map<String, Value>) -> Result<Update, Refusal> {
    only_fields(map, &UPDATABLE_FIELDS)?;
    let custom = match opt_object(map, "custom_properties")? {
        None => None,
        Some(o) => Some(
            o.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(Refusal::bad(
                        Rule::FieldType,
                        format!(
                            "Custom property `{}` of data type text takes a string.",
                            printable(k)
                        ),
                    )),
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?,
        ),
    };
    let update = Update {
        email: opt_string(map, "email")?,
        phone: opt_string(map, "mobile_phone_number")?,
        full_name: opt_string(map, "full_name")?,
        organization_id: opt_string(map, "organization_id")?,
        lists: opt_strings(map, "lists")?,
        comment: opt_string(map, "comment")?,
        custom,
    };
    let empty = update.email.is_none()
        && update.phone.is_none()
        && update.full_name.is_none()
        && update.organization_id.is_none()
        && update.lists.is_none()
        && update.comment.is_none()
        && update.custom.as_ref().is_none_or(BTreeMap::is_empty);
    if empty {
        return Err(Refusal::bad(
            Rule::EmptyUpdate,
            "At least one of the updatable fields (email, mobile_phone_number, full_name, organization_id, lists, comment, custom_properties) must be sent.",
        ));
    }
    if let Some(e) = &update.email {
        check_email("email", e)?;
    }
    if let Some(p) = &update.phone {
        check_e164("mobile_phone_number", p)?;
    }
    Ok(update)
}

/// `PATCH /v1/hood/profiles/{id}` → 204.
async fn patch_profile(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = s.clock.now();
    apply_patch(&s.hood, now, &id, &headers, &body).unwrap_or_else(render)
}

fn apply_patch(
    hood: &Hood,
    now: DateTime<Utc>,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let map = json_object(headers, body)?;
    let update = parse_update(&map)?;
    let mut store = lock(&hood.store);
    if let Some(custom) = &update.custom
        && let Some(undefined) = custom
            .keys()
            .find(|k| !store.properties.iter().any(|p| &p.label == *k))
    {
        return Err(Refusal::bad(
            Rule::UndefinedProperty,
            format!(
                "Custom property `{}` is not defined; create it with POST /v1/hood/profile-properties first.",
                printable(undefined)
            ),
        ));
    }
    let Some(profile) = store.profiles.iter_mut().find(|p| p.id == id) else {
        return Err(Refusal::state(StatusCode::NOT_FOUND, "Profile not found."));
    };
    if let Some(v) = update.email {
        profile.email = Some(v);
    }
    if let Some(v) = update.phone {
        profile.country = country_of(&v);
        profile.mobile_phone_number = Some(v);
    }
    if let Some(v) = update.full_name {
        profile.full_name = Some(v);
    }
    if let Some(v) = update.organization_id {
        profile.organization_id = Some(v);
    }
    if let Some(v) = update.lists {
        profile.lists = v;
    }
    if let Some(v) = update.comment {
        profile.comment = Some(v);
    }
    if let Some(v) = update.custom {
        profile.custom_properties.extend(v);
    }
    profile.updated_at = now;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A profile field the list filter can search.
#[derive(Clone, Copy)]
enum Field {
    Id,
    Email,
    Phone,
    FullName,
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Field::Id,
            "email" => Field::Email,
            "mobile_phone_number" => Field::Phone,
            "full_name" => Field::FullName,
            _ => return None,
        })
    }

    fn value(self, p: &HoodProfile) -> Option<&str> {
        match self {
            Field::Id => Some(&p.id),
            Field::Email => p.email.as_deref(),
            Field::Phone => p.mobile_phone_number.as_deref(),
            Field::FullName => p.full_name.as_deref(),
        }
    }

    fn matches(self, stored: &str, wanted: &str) -> bool {
        match self {
            // Addresses compare without regard to case.
            Field::Email => stored.eq_ignore_ascii_case(wanted),
            _ => stored == wanted,
        }
    }
}

/// The query of `GET /v1/hood/profiles`: filters plus paging.
struct ListQuery {
    filters: Vec<(Field, Vec<String>)>,
    limit: Option<usize>,
    offset: usize,
}

fn parse_list_query(raw: Option<&str>) -> Result<ListQuery, Refusal> {
    let mut q = ListQuery {
        filters: Vec::new(),
        limit: None,
        offset: 0,
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let number = || {
            value.parse::<usize>().map_err(|_| {
                Refusal::bad(
                    Rule::Query,
                    format!("`{key}` must be a non-negative integer."),
                )
            })
        };
        match key.as_ref() {
            "limit" => q.limit = Some(number()?),
            "offset" => q.offset = number()?,
            name => {
                let field = Field::parse(name).ok_or_else(|| {
                    Refusal::bad(
                        Rule::Query,
                        format!("Unknown filter field `{}`.", printable(name)),
                    )
                })?;
                let values = match value.split_once(':') {
                    Some(("eq", v)) => vec![v.to_owned()],
                    Some(("in", v)) => v.split(',').map(str::to_owned).collect(),
                    _ => {
                        return Err(Refusal::bad(
                            Rule::Query,
                            format!(
                                "Filter `{name}` must be written {name}=op:value with op `eq` or `in`."
                            ),
                        ));
                    }
                };
                q.filters.push((field, values));
            }
        }
    }
    Ok(q)
}

/// `GET /v1/hood/profiles?email=eq:<v>` → JSON array.
async fn list_profiles(State(s): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_list_query(raw.as_deref()) {
        Ok(q) => q,
        Err(r) => return render(r),
    };
    let store = lock(&s.hood.store);
    let found: Vec<Value> = store
        .profiles
        .iter()
        .filter(|p| {
            q.filters.iter().all(|(field, wanted)| {
                field
                    .value(p)
                    .is_some_and(|v| wanted.iter().any(|w| field.matches(v, w)))
            })
        })
        .skip(q.offset)
        .take(q.limit.unwrap_or(usize::MAX))
        .map(HoodProfile::to_json)
        .collect();
    Json(Value::Array(found)).into_response()
}

/// `POST /v1/hood/profile-properties` → 201 with the property.
async fn create_property(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = s.clock.now();
    define(&s.hood, now, &headers, &body).unwrap_or_else(render)
}

fn flag(map: &Map<String, Value>, key: &str) -> Result<u8, Refusal> {
    match map.get(key) {
        None => Ok(0),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(0),
            Some(1) => Ok(1),
            _ => Err(Refusal::bad(
                Rule::FieldType,
                format!("Field `{key}` must be 0 or 1."),
            )),
        },
    }
}

fn define(
    hood: &Hood,
    now: DateTime<Utc>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let map = json_object(headers, body)?;
    only_fields(&map, &PROPERTY_FIELDS)?;
    let label = opt_string(&map, "label")?
        .ok_or_else(|| Refusal::bad(Rule::MissingField, "Field `label` is required."))?;
    let label_ok = !label.is_empty()
        && label.len() <= 64
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !label_ok {
        return Err(Refusal::bad(
            Rule::FieldType,
            "Field `label` must be 1 to 64 letters, digits or `_`.",
        ));
    }
    let data_type = opt_string(&map, "data_type")?
        .ok_or_else(|| Refusal::bad(Rule::MissingField, "Field `data_type` is required."))?;
    if !DATA_TYPES.contains(&data_type.as_str()) {
        return Err(Refusal::bad(
            Rule::FieldType,
            "Field `data_type` must be one of text, number, boolean, date.",
        ));
    }
    let property = HoodProperty {
        id: String::new(),
        example: opt_string(&map, "example")?.unwrap_or_default(),
        description: opt_string(&map, "description")?.unwrap_or_default(),
        export_alias: opt_string(&map, "export_alias")?.unwrap_or_default(),
        pi_data: flag(&map, "pi_data")?,
        importable: flag(&map, "importable")?,
        exportable: flag(&map, "exportable")?,
        label,
        data_type,
        created_at: now,
    };
    let mut store = lock(&hood.store);
    if store.properties.iter().any(|p| p.label == property.label) {
        return Err(Refusal::state(
            StatusCode::BAD_REQUEST,
            "A profile property with this label already exists.",
        ));
    }
    let property = HoodProperty {
        id: store.next_property.to_string(),
        ..property
    };
    store.next_property += 1;
    let answer = property.to_json();
    store.properties.push(property);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/hood/profile-properties` → JSON array.
async fn list_properties(State(s): State<Arc<Shared>>) -> Response {
    let store = lock(&s.hood.store);
    Json(Value::Array(
        store.properties.iter().map(HoodProperty::to_json).collect(),
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_syntax() {
        let q = parse_list_query(Some("email=eq:ann%2Bx%40example.com&limit=5")).expect("valid");
        assert_eq!(q.filters.len(), 1);
        assert_eq!(q.filters[0].1, vec!["ann+x@example.com".to_owned()]);
        assert_eq!(q.limit, Some(5));
        let q = parse_list_query(Some("id=in:1,2")).expect("valid");
        assert_eq!(q.filters[0].1, vec!["1".to_owned(), "2".to_owned()]);
        for bad in [
            "email=ann@example.com",
            "email=like:ann",
            "nickname=eq:x",
            "limit=-1",
        ] {
            let err = parse_list_query(Some(bad)).err().expect("refused");
            assert_eq!(err.rule, Some(Rule::Query), "{bad}");
        }
        assert!(
            parse_list_query(None)
                .expect("no filter")
                .filters
                .is_empty()
        );
    }

    #[test]
    fn country_comes_from_the_number() {
        assert_eq!(country_of("+14155552671").as_deref(), Some("US"));
        assert_eq!(country_of("+442079460958").as_deref(), Some("GB"));
        assert_eq!(country_of("+16135550123").as_deref(), Some("CA"));
        assert_eq!(country_of("+4915123456789").as_deref(), Some("DE"));
        assert_eq!(country_of("+80012345678"), None);
        assert_eq!(country_of("not a number"), None);
    }

    #[test]
    fn profile_debug_hides_personal_data() {
        let p = HoodProfile {
            id: "2000001".into(),
            email: Some("ann@example.com".into()),
            mobile_phone_number: Some("+14155552671".into()),
            full_name: Some("Ann Lee".into()),
            organization_id: None,
            lists: vec![],
            comment: None,
            custom_properties: BTreeMap::from([("company_name".into(), "Acme".into())]),
            country: Some("US".into()),
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        };
        let shown = format!("{p:?}");
        for secret in ["ann@", "4155552671", "Ann Lee", "Acme"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("2000001"));
    }
}
