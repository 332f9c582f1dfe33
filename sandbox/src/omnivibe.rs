//! Sandbox Omnivibe agent profile (`vendor-docs/omnivibe-update-profile.txt`):
//! `PUT /api/v1/profile` with `{"profile": {...}}` → 200 agent JSON (and `GET` of the same).
//!
//! The password fields the page documents (`current_password`, `password`,
//! `password_confirmation`) are refused with 400 and counted as a violation: the relay must
//! never send them. Errors answer Chatwoot's shapes: `{"error": ...}`, and
//! `{"message": ..., "attributes": [...]}` for 422 validation failures.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::Shared;
use super::checks::{Refusal, is_email, json_object, only_fields, opt_object, opt_string};
use super::host;
use super::record::{Rule, lock};
use relay_shared::vendors::omnivibe::wire::PROFILE_FIELDS;

/// The password fields of the documented body.
pub const PASSWORD_FIELDS: [&str; 3] = ["current_password", "password", "password_confirmation"];

/// The agent who owns the sandbox's Omnivibe token. `Debug` shows the id only.
#[derive(Clone, PartialEq)]
pub struct Agent {
    pub id: u64,
    pub account_id: u64,
    pub name: String,
    pub display_name: Option<String>,
    pub email: String,
    pub message_signature: Option<String>,
    pub phone_number: Option<String>,
    pub ui_settings: Map<String, Value>,
    pub updated_at: DateTime<Utc>,
    /// Successful profile updates so far.
    pub updates: u64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("updates", &self.updates)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// The agent JSON the PUT answers with (the documented fields, tokens left out).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "account_id": self.account_id,
            "available_name": self.display_name.clone().unwrap_or_else(|| self.name.clone()),
            "avatar_url": "",
            "confirmed": true,
            "display_name": self.display_name,
            "message_signature": self.message_signature,
            "email": self.email,
            "name": self.name,
            "phone_number": self.phone_number,
            "provider": "email",
            "role": "agent",
            "ui_settings": self.ui_settings,
            "uid": self.email,
            "type": "user",
            "custom_attributes": {},
            "accounts": [{
                "id": self.account_id,
                "name": "Sandbox",
                "status": "active",
                "role": "agent",
                "permissions": [],
                "availability": "online",
                "availability_status": "online",
                "auto_offline": true,
            }],
        })
    }
}

/// The agent profile the sandbox serves.
pub(crate) struct Omnivibe {
    agent: Mutex<Agent>,
}

impl Omnivibe {
    pub fn new(account_id: u64, now: DateTime<Utc>) -> Self {
        Omnivibe {
            agent: Mutex::new(Agent {
                id: 1,
                account_id,
                name: "Sandbox Agent".into(),
                display_name: None,
                email: "agent@sandbox.invalid".into(),
                message_signature: None,
                phone_number: None,
                ui_settings: Map::new(),
                updated_at: now,
                updates: 0,
            }),
        }
    }

    pub fn agent(&self) -> Agent {
        lock(&self.agent).clone()
    }
}

/// The agent profile routes (auth by the Omnivibe token, checked here).
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/api/v1/profile", get(show).put(update))
}

fn authorized(s: &Shared, headers: &HeaderMap) -> Result<(), Refusal> {
    host::authorize(headers, &s.credentials.omnivibe_token)
}

/// `GET /api/v1/profile`.
async fn show(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authorized(&s, &headers) {
        Ok(()) => Json(s.omnivibe.agent().to_json()).into_response(),
        Err(r) => host::render(r),
    }
}

/// `PUT /api/v1/profile` → 200 agent JSON.
async fn update(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = s.clock.now();
    authorized(&s, &headers)
        .and_then(|()| apply(&s.omnivibe, now, &headers, &body))
        .unwrap_or_else(host::render)
}

fn apply(
    omnivibe: &Omnivibe,
    now: DateTime<Utc>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let map = json_object(headers, body)?;
    only_fields(&map, &["profile"])?;
    let missing = || {
        Refusal::bad(
            Rule::MissingField,
            "param is missing or the value is empty: profile",
        )
    };
    let profile = opt_object(&map, "profile")?.ok_or_else(missing)?;
    if profile.is_empty() {
        return Err(missing());
    }
    if let Some(field) = PASSWORD_FIELDS.iter().find(|f| profile.contains_key(**f)) {
        return Err(Refusal::bad(
            Rule::PasswordField,
            format!("Field `{field}` must never be sent by the relay: passwords are not synced."),
        ));
    }
    only_fields(profile, &PROFILE_FIELDS)?;
    let name = opt_string(profile, "name")?;
    let email = opt_string(profile, "email")?;
    let display_name = opt_string(profile, "display_name")?;
    let signature = opt_string(profile, "message_signature")?;
    let phone = opt_string(profile, "phone_number")?;
    let ui_settings = opt_object(profile, "ui_settings")?.cloned();
    if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(Refusal::broke(
            StatusCode::UNPROCESSABLE_ENTITY,
            Rule::FieldType,
            "Name can't be blank",
        )
        .with_attributes(&["name"]));
    }
    if email.as_deref().is_some_and(|e| !is_email(e)) {
        return Err(Refusal::broke(
            StatusCode::UNPROCESSABLE_ENTITY,
            Rule::EmailFormat,
            "Email is invalid",
        )
        .with_attributes(&["email"]));
    }
    let mut agent = lock(&omnivibe.agent);
    if let Some(v) = name {
        agent.name = v;
    }
    if let Some(v) = email {
        agent.email = v.to_lowercase();
    }
    if let Some(v) = display_name {
        agent.display_name = Some(v);
    }
    if let Some(v) = signature {
        agent.message_signature = Some(v);
    }
    if let Some(v) = phone {
        agent.phone_number = Some(v);
    }
    if let Some(v) = ui_settings {
        agent.ui_settings = v;
    }
    agent.updated_at = now;
    agent.updates += 1;
    Ok(Json(agent.to_json()).into_response())
}
