//! What the sandbox saw: every request (vendor, method, path, query, parsed JSON body,
//! status answered, time) and every broken vendor rule, kept in memory for the demo's
//! table and for tests.
//!
//! A *violation* is a request that breaks a documented rule of the vendor whatever the
//! stored state (bad credentials, wrong content type, unknown field, phone not in E.164,
//! over the rate limit, a password field, ...). Answers that depend on state — an unknown
//! id (404), a uniqueness conflict (422), a custom property label that already exists —
//! are not violations: the relay meets them in normal operation and handles them.

use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use serde_json::Value;

use super::Shared;
use relay_shared::vendors::Vendor;

/// Largest request body the sandbox reads (vendor bodies are a few hundred bytes).
const MAX_BODY_BYTES: usize = 1 << 20;

/// A documented vendor rule a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Missing or wrong credentials.
    Auth,
    /// The token may not use this Chatwoot account.
    AccountAccess,
    /// A body sent without `Content-Type: application/json`.
    ContentType,
    /// The body is not JSON, or not the JSON shape the endpoint takes.
    MalformedJson,
    /// A path or method the vendor does not have.
    UnknownEndpoint,
    /// A field the endpoint does not document.
    UnknownField,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong JSON type or an impossible value.
    FieldType,
    /// A phone number not in E.164.
    PhoneFormat,
    /// An e-mail address that is not one.
    EmailFormat,
    /// Hood PATCH without any updatable field.
    EmptyUpdate,
    /// A Hood custom property used before it was defined.
    UndefinedProperty,
    /// Channel.io tags: more than 20, or a tag with `.`, `$`, `/` or a space.
    Tags,
    /// A Hood list filter not in `field=op:value` form, or a missing Chatwoot search term.
    Query,
    /// Omnivibe password fields, which the relay must never send.
    PasswordField,
    /// Over the vendor's rate limit (answered 429).
    RateLimit,
}

impl Rule {
    /// Stable code for tables and logs.
    pub fn code(self) -> &'static str {
        match self {
            Rule::Auth => "auth",
            Rule::AccountAccess => "account_access",
            Rule::ContentType => "content_type",
            Rule::MalformedJson => "malformed_json",
            Rule::UnknownEndpoint => "unknown_endpoint",
            Rule::UnknownField => "unknown_field",
            Rule::MissingField => "missing_field",
            Rule::FieldType => "field_type",
            Rule::PhoneFormat => "phone_format",
            Rule::EmailFormat => "email_format",
            Rule::EmptyUpdate => "empty_update",
            Rule::UndefinedProperty => "undefined_property",
            Rule::Tags => "tags",
            Rule::Query => "query",
            Rule::PasswordField => "password_field",
            Rule::RateLimit => "rate_limit",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// One request as the sandbox received and answered it. Holds personal data (path,
/// query and body); `Debug` shows only the route template and the status.
#[derive(Clone, PartialEq)]
pub struct RecordedRequest {
    /// Position in arrival order, from 0.
    pub seq: u64,
    pub vendor: Vendor,
    pub method: Method,
    /// The path under the vendor's base URL, exactly as the vendor would see it
    /// (still percent-encoded), e.g. `/v1/hood/profiles/2000001`.
    pub path: String,
    /// The raw query string, if any (`email=eq:ann%40example.com`).
    pub query: Option<String>,
    /// The route template that matched (`/v1/hood/profiles/{id}`); `None` when no route did.
    pub route: Option<String>,
    /// The body parsed as JSON; `None` when empty or not JSON.
    pub body: Option<Value>,
    /// Body length in bytes.
    pub body_len: usize,
    /// The status the sandbox answered.
    pub status: u16,
    /// The rule the request broke, if it broke one.
    pub violation: Option<Rule>,
    /// When it arrived (the sandbox clock).
    pub at: DateTime<Utc>,
}

impl std::fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("seq", &self.seq)
            .field("vendor", &self.vendor)
            .field("method", &self.method)
            .field("route", &self.route)
            .field("has_body", &self.body.is_some())
            .field("status", &self.status)
            .field("violation", &self.violation)
            .finish_non_exhaustive()
    }
}

/// A broken rule, with what the vendor answered about it (messages never hold values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The [`RecordedRequest::seq`] of the offending request.
    pub seq: u64,
    pub vendor: Vendor,
    pub rule: Rule,
    pub method: Method,
    /// The route template, or `None` for an unknown path.
    pub route: Option<String>,
    pub status: u16,
    /// Why the request was refused, naming fields, never their values.
    pub message: String,
    pub at: DateTime<Utc>,
}

/// Put into a response's extensions by a handler that refused a request for breaking a
/// rule; the recorder turns it into a [`Violation`].
#[derive(Debug, Clone)]
pub(crate) struct Broke {
    pub rule: Rule,
    pub message: String,
}

/// The in-memory log of requests and violations.
#[derive(Default)]
pub(crate) struct Journal {
    requests: Mutex<Vec<RecordedRequest>>,
    violations: Mutex<Vec<Violation>>,
}

/// Locks a mutex, also after a panic elsewhere (the sandbox's data stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Journal {
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub fn violations(&self) -> Vec<Violation> {
        lock(&self.violations).clone()
    }

    pub fn len(&self) -> usize {
        lock(&self.requests).len()
    }

    pub fn violation_count(&self) -> usize {
        lock(&self.violations).len()
    }

    fn push(&self, mut request: RecordedRequest, broke: Option<Broke>) {
        let mut requests = lock(&self.requests);
        request.seq = requests.len() as u64;
        if let Some(b) = broke {
            lock(&self.violations).push(Violation {
                seq: request.seq,
                vendor: request.vendor,
                rule: b.rule,
                method: request.method.clone(),
                route: request.route.clone(),
                status: request.status,
                message: b.message,
                at: request.at,
            });
        }
        requests.push(request);
    }
}

/// The base path each vendor is served under, and the vendor of a full request path.
pub(crate) fn vendor_of(full_path: &str) -> Option<(Vendor, &str)> {
    let under = |prefix: &str| {
        full_path
            .strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if let Some(rest) = under(super::HOOD_PREFIX) {
        return Some((Vendor::Hood, rest));
    }
    if let Some(rest) = under(super::CHANNELIO_PREFIX) {
        return Some((Vendor::Channelio, rest));
    }
    // Omnivibe and its Chatwoot contacts share one host, as in production.
    let rest = under(super::OMNIVIBE_PREFIX)?;
    let vendor = if rest.starts_with("/api/v1/accounts") {
        Vendor::Chatwoot
    } else {
        Vendor::Omnivibe
    };
    Some((vendor, rest))
}

/// The route that matched, copied by [`tag_route`] from the request to the response.
#[derive(Debug, Clone)]
pub(crate) struct RouteTemplate(pub String);

/// Inner middleware (runs after routing): remembers which route matched.
pub(crate) async fn tag_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(r) = route {
        response.extensions_mut().insert(RouteTemplate(r));
    }
    response
}

/// Outer middleware: buffers the body, lets the vendor answer, records both.
pub(crate) async fn record(
    State(shared): State<std::sync::Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some((vendor, inner)) = vendor_of(parts.uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let inner = inner.to_owned();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let json = serde_json::from_slice::<Value>(&bytes).ok();
    let method = parts.method.clone();
    let query = parts.uri.query().map(str::to_owned);
    let at = shared.clock.now();
    let body_len = bytes.len();
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let prefix = super::prefix_of(vendor);
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map(|r| r.0.strip_prefix(prefix).unwrap_or(&r.0).to_owned());
    let broke = response.extensions().get::<Broke>().cloned();
    let status = response.status().as_u16();
    tracing::debug!(
        vendor = %vendor,
        method = %method,
        route = route.as_deref().unwrap_or("(none)"),
        status,
        violation = broke.as_ref().map(|b| b.rule.code()),
        "sandbox request"
    );
    shared.journal.push(
        RecordedRequest {
            seq: 0,
            vendor,
            method,
            path: inner,
            query,
            route,
            body: json,
            body_len,
            status,
            violation: broke.as_ref().map(|b| b.rule),
            at,
        },
        broke,
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_by_prefix() {
        assert_eq!(
            vendor_of("/hood/v1/hood/profiles"),
            Some((Vendor::Hood, "/v1/hood/profiles"))
        );
        assert_eq!(
            vendor_of("/channelio/open/v5/users/@x"),
            Some((Vendor::Channelio, "/open/v5/users/@x"))
        );
        assert_eq!(
            vendor_of("/omnivibe/api/v1/profile"),
            Some((Vendor::Omnivibe, "/api/v1/profile"))
        );
        assert_eq!(
            vendor_of("/omnivibe/api/v1/accounts/1/contacts"),
            Some((Vendor::Chatwoot, "/api/v1/accounts/1/contacts"))
        );
        assert_eq!(vendor_of("/hoodie/v1"), None);
        assert_eq!(vendor_of("/other"), None);
    }

    #[test]
    fn debug_of_a_record_hides_path_query_and_body() {
        let r = RecordedRequest {
            seq: 3,
            vendor: Vendor::Hood,
            method: Method::GET,
            path: "/v1/hood/profiles".into(),
            query: Some("email=eq:ann%40example.com".into()),
            route: Some("/v1/hood/profiles".into()),
            body: Some(serde_json::json!({"email": "ann@example.com"})),
            body_len: 27,
            status: 200,
            violation: None,
            at: DateTime::UNIX_EPOCH,
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("ann"), "{shown}");
        assert!(shown.contains("status: 200"), "{shown}");
    }
}
