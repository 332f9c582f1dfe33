//! Sandbox Channel.io Open API v5 users (`vendor-docs/channelio-update-user.txt`,
//! `vendor-notes.md`): `PATCH /open/v5/users/{userId}`, the upsert
//! `PUT /open/v5/users/@{memberId}` and `GET /open/v5/users/@{memberId}` (also by user id).
//!
//! Body rules: only `profile`, `profileOnce`, `tags`, `unsubscribeEmail`,
//! `unsubscribeTexting`; at most 20 tags, none holding `.`, `$`, `/` or a space;
//! `mobileNumber` in E.164; `profileOnce` sets only keys not yet present. Every answer
//! carries `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (epoch
//! seconds). The pages do not document error bodies; the sandbox answers
//! `{"type": ..., "status": ..., "errors": [{"message": ...}]}`.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};

use super::Shared;
use super::checks::{
    Refusal, check_e164, check_email, credential_matches, header_text, json_object, only_fields,
    opt_bool, opt_object, opt_strings, printable,
};
use super::record::{Broke, Rule, lock, tag_route};
use super::window::{Budget, FixedWindows, Window};
use relay_shared::vendors::channelio::wire::{FORBIDDEN_TAG_CHARS, MAX_TAGS};

/// The body fields of the user PATCH and upsert.
const BODY_FIELDS: [&str; 5] = [
    "profile",
    "profileOnce",
    "tags",
    "unsubscribeEmail",
    "unsubscribeTexting",
];

/// The sandbox channel's id.
const CHANNEL_ID: &str = "sandbox-channel";

/// A Channel.io user as the sandbox stores it. `Debug` shows the id and counts only.
#[derive(Clone, PartialEq)]
pub struct ChannelUser {
    /// 20 characters, as Channel.io's ids are.
    pub id: String,
    pub member_id: Option<String>,
    /// Every profile property (`name`, `email`, `mobileNumber`, custom keys).
    pub profile: Map<String, Value>,
    pub tags: Vec<String>,
    pub unsubscribe_email: bool,
    pub unsubscribe_texting: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Incremented on every change.
    pub version: u64,
}

impl std::fmt::Debug for ChannelUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelUser")
            .field("id", &self.id)
            .field("has_member_id", &self.member_id.is_some())
            .field("profile_keys", &self.profile.len())
            .field("tags", &self.tags.len())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ChannelUser {
    /// The user object as Channel.io returns it.
    pub fn to_json(&self) -> Value {
        let text = |k: &str| self.profile.get(k).cloned().unwrap_or(Value::Null);
        json!({
            "id": self.id,
            "channelId": CHANNEL_ID,
            "memberId": self.member_id,
            "type": if self.member_id.is_some() { "member" } else { "lead" },
            "member": self.member_id.is_some(),
            "name": text("name"),
            "email": text("email"),
            "mobileNumber": text("mobileNumber"),
            "profile": self.profile,
            "tags": self.tags,
            "unsubscribeEmail": self.unsubscribe_email,
            "unsubscribeTexting": self.unsubscribe_texting,
            "hasChat": false,
            "createdAt": self.created_at.timestamp_millis(),
            "updatedAt": self.updated_at.timestamp_millis(),
            "version": self.version,
        })
    }
}

#[derive(Default)]
struct Store {
    users: Vec<ChannelUser>,
    next_user: u64,
}

/// The Channel.io channel the sandbox serves.
pub(crate) struct Channel {
    store: Mutex<Store>,
    limits: Mutex<FixedWindows>,
}

impl Channel {
    pub fn new(per_minute: u32) -> Self {
        Channel {
            store: Mutex::new(Store {
                next_user: 1,
                ..Store::default()
            }),
            limits: Mutex::new(FixedWindows::new(vec![Window::new(60_000, per_minute)])),
        }
    }

    pub fn users(&self) -> Vec<ChannelUser> {
        lock(&self.store).users.clone()
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/open/v5/users/{user}",
            get(get_user).put(put_user).patch(patch_user),
        )
        .fallback(unknown_path)
        .method_not_allowed_fallback(unknown_method)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .layer(middleware::from_fn(tag_route))
        .with_state(shared)
}

fn render(r: Refusal) -> Response {
    let kind = match r.status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        415 => "UnsupportedMediaType",
        429 => "TooManyRequests",
        _ => "Error",
    };
    let body = json!({
        "type": kind,
        "status": r.status.as_u16(),
        "errors": [{"message": r.message}],
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

fn set_rate_headers(response: &mut Response, budget: Budget) {
    let h = response.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(budget.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(budget.remaining));
    // Channel.io sends the reset as epoch seconds.
    h.insert(
        "x-ratelimit-reset",
        HeaderValue::from((budget.reset_at_ms + 999) / 1000),
    );
}

async fn gate(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let h = request.headers();
    let key_ok = credential_matches(
        header_text(h, "x-access-key"),
        &s.credentials.channel_access_key,
    );
    let secret_ok = credential_matches(
        header_text(h, "x-access-secret"),
        &s.credentials.channel_access_secret,
    );
    if !(key_ok && secret_ok) {
        return render(Refusal::broke(
            StatusCode::UNAUTHORIZED,
            Rule::Auth,
            "Missing or invalid x-access-key / x-access-secret.",
        ));
    }
    let now_ms = s.clock.now().timestamp_millis();
    let admitted = lock(&s.channel.limits).admit(now_ms);
    match admitted {
        Ok(budget) => {
            let mut response = next.run(request).await;
            set_rate_headers(&mut response, budget);
            response
        }
        Err(exceeded) => {
            let mut response = render(Refusal::broke(
                StatusCode::TOO_MANY_REQUESTS,
                Rule::RateLimit,
                "Too many requests.",
            ));
            set_rate_headers(&mut response, exceeded.budget);
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

/// Who a path names: `@{memberId}` (already percent-decoded by the router) or a user id.
enum Who<'a> {
    Member(&'a str),
    User(&'a str),
}

fn who(segment: &str) -> Who<'_> {
    match segment.strip_prefix('@') {
        Some(member) => Who::Member(member),
        None => Who::User(segment),
    }
}

fn answer(user: &ChannelUser) -> Response {
    Json(json!({"user": user.to_json(), "online": Value::Null})).into_response()
}

fn not_found() -> Refusal {
    Refusal::state(StatusCode::NOT_FOUND, "User not found.")
}

/// A checked user body.
struct UserUpdate {
    profile: Option<Map<String, Value>>,
    profile_once: Option<Map<String, Value>>,
    tags: Option<Vec<String>>,
    unsubscribe_email: Option<bool>,
    unsubscribe_texting: Option<bool>,
}

fn check_profile(key: &str, profile: &Map<String, Value>) -> Result<(), Refusal> {
    for (name, value) in profile {
        let at = format!("{key}.{}", printable(name));
        match (name.as_str(), value) {
            (_, Value::Null) => {}
            ("mobileNumber", Value::String(p)) => check_e164(&at, p)?,
            ("email", Value::String(e)) => check_email(&at, e)?,
            ("name", Value::String(_)) => {}
            ("mobileNumber" | "email" | "name", _) => {
                return Err(Refusal::bad(
                    Rule::FieldType,
                    format!("Field `{at}` must be a string."),
                ));
            }
            (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) => {}
            (_, _) => {
                return Err(Refusal::bad(
                    Rule::FieldType,
                    format!("Profile property `{at}` must be a string, number or boolean."),
                ));
            }
        }
    }
    Ok(())
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<UserUpdate, Refusal> {
    let map = json_object(headers, body)?;
    only_fields(&map, &BODY_FIELDS)?;
    let profile = opt_object(&map, "profile")?.cloned();
    let profile_once = opt_object(&map, "profileOnce")?.cloned();
    if let Some(p) = &profile {
        check_profile("profile", p)?;
    }
    if let Some(p) = &profile_once {
        check_profile("profileOnce", p)?;
    }
    let tags = opt_strings(&map, "tags")?;
    if let Some(tags) = &tags {
        if tags.len() > MAX_TAGS {
            return Err(Refusal::bad(
                Rule::Tags,
                format!("A user may have at most {MAX_TAGS} tags."),
            ));
        }
        if tags
            .iter()
            .any(|t| t.is_empty() || t.contains(FORBIDDEN_TAG_CHARS))
        {
            return Err(Refusal::bad(
                Rule::Tags,
                "Tags must not be empty or contain `.`, `$`, `/` or a space.",
            ));
        }
    }
    Ok(UserUpdate {
        profile,
        profile_once,
        tags,
        unsubscribe_email: opt_bool(&map, "unsubscribeEmail")?,
        unsubscribe_texting: opt_bool(&map, "unsubscribeTexting")?,
    })
}

fn apply(user: &mut ChannelUser, update: UserUpdate, now: DateTime<Utc>) {
    if let Some(profile) = update.profile {
        for (k, v) in profile {
            if v.is_null() {
                user.profile.remove(&k);
            } else {
                user.profile.insert(k, v);
            }
        }
    }
    if let Some(once) = update.profile_once {
        for (k, v) in once {
            let present = user.profile.get(&k).is_some_and(|old| !old.is_null());
            if !present && !v.is_null() {
                user.profile.insert(k, v);
            }
        }
    }
    if let Some(tags) = update.tags {
        user.tags = tags;
    }
    if let Some(b) = update.unsubscribe_email {
        user.unsubscribe_email = b;
    }
    if let Some(b) = update.unsubscribe_texting {
        user.unsubscribe_texting = b;
    }
    user.updated_at = now;
    user.version += 1;
}

fn find<'a>(users: &'a mut [ChannelUser], who: &Who<'_>) -> Option<&'a mut ChannelUser> {
    users.iter_mut().find(|u| match who {
        Who::Member(m) => u.member_id.as_deref() == Some(*m),
        Who::User(id) => u.id == *id,
    })
}

/// `GET /open/v5/users/@{memberId}` (or `/{userId}`).
async fn get_user(State(s): State<Arc<Shared>>, Path(segment): Path<String>) -> Response {
    let mut store = lock(&s.channel.store);
    match find(&mut store.users, &who(&segment)) {
        Some(user) => answer(user),
        None => render(not_found()),
    }
}

/// `PATCH /open/v5/users/{userId}` (also accepted by `@{memberId}`) → 200 `{user, online}`.
async fn patch_user(
    State(s): State<Arc<Shared>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = s.clock.now();
    let result = parse_body(&headers, &body).and_then(|update| {
        let mut store = lock(&s.channel.store);
        let user = find(&mut store.users, &who(&segment)).ok_or_else(not_found)?;
        apply(user, update, now);
        Ok(answer(user))
    });
    result.unwrap_or_else(render)
}

/// `PUT /open/v5/users/@{memberId}`: creates or updates the member → 200 `{user, online}`.
async fn put_user(
    State(s): State<Arc<Shared>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Who::Member(member_id) = who(&segment) else {
        return render(Refusal::broke(
            StatusCode::METHOD_NOT_ALLOWED,
            Rule::UnknownEndpoint,
            format!(
                "{} is only defined for /open/v5/users/@{{memberId}}.",
                Method::PUT
            ),
        ));
    };
    if member_id.is_empty() {
        return render(Refusal::bad(Rule::MissingField, "The memberId is empty."));
    }
    let now = s.clock.now();
    let result = parse_body(&headers, &body).map(|update| {
        let mut store = lock(&s.channel.store);
        if find(&mut store.users, &Who::Member(member_id)).is_none() {
            let id = format!("sbx{:017x}", store.next_user);
            store.next_user += 1;
            store.users.push(ChannelUser {
                id,
                member_id: Some(member_id.to_owned()),
                profile: Map::new(),
                tags: Vec::new(),
                unsubscribe_email: false,
                unsubscribe_texting: false,
                created_at: now,
                updated_at: now,
                version: 0,
            });
        }
        match find(&mut store.users, &Who::Member(member_id)) {
            Some(user) => {
                apply(user, update, now);
                answer(user)
            }
            // Inserted just above under the same lock.
            None => render(not_found()),
        }
    });
    result.unwrap_or_else(render)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> ChannelUser {
        ChannelUser {
            id: "u".into(),
            member_id: Some("m".into()),
            profile: Map::new(),
            tags: vec![],
            unsubscribe_email: false,
            unsubscribe_texting: false,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            version: 0,
        }
    }

    fn update(v: &Value) -> UserUpdate {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parse_body(&h, v.to_string().as_bytes()).expect("valid body")
    }

    #[test]
    fn profile_once_never_overwrites() {
        let mut u = user();
        apply(
            &mut u,
            update(
                &json!({"profile": {"name": "A"}, "profileOnce": {"name": "B", "utmSource": "x"}}),
            ),
            DateTime::UNIX_EPOCH,
        );
        assert_eq!(u.profile.get("name"), Some(&json!("A")));
        assert_eq!(u.profile.get("utmSource"), Some(&json!("x")));
        apply(
            &mut u,
            update(&json!({"profileOnce": {"utmSource": "y"}})),
            DateTime::UNIX_EPOCH,
        );
        assert_eq!(u.profile.get("utmSource"), Some(&json!("x")));
        assert_eq!(u.version, 2);
    }

    #[test]
    fn null_removes_a_profile_key() {
        let mut u = user();
        apply(
            &mut u,
            update(&json!({"profile": {"plan": "pro"}})),
            DateTime::UNIX_EPOCH,
        );
        apply(
            &mut u,
            update(&json!({"profile": {"plan": null}})),
            DateTime::UNIX_EPOCH,
        );
        assert!(u.profile.is_empty());
    }
}
