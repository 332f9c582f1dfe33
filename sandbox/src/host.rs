//! The Omnivibe host: the agent profile (`omnivibe`) and the Chatwoot contacts API
//! (`chatwoot`) live on one Chatwoot-based server, as in production (the crate root mounts
//! both behind [`throttle`]). This module holds what they share: `api_access_token` auth, Chatwoot's error shapes and the
//! host's default throttle (about 3000 requests per minute per client, Rack::Attack style:
//! a plain-text 429 without rate-limit headers).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use secrecy::SecretString;
use serde_json::json;

use super::Shared;
use super::checks::{Refusal, credential_matches, header_text};
use super::record::{Broke, Rule, lock};

/// Requests per minute the host admits from one client.
pub const THROTTLE_PER_MINUTE: u32 = 3000;

/// Checks the `api_access_token` header against the token this endpoint family expects.
pub(crate) fn authorize(headers: &HeaderMap, expected: &SecretString) -> Result<(), Refusal> {
    if credential_matches(header_text(headers, "api_access_token"), expected) {
        Ok(())
    } else {
        Err(Refusal::broke(
            StatusCode::UNAUTHORIZED,
            Rule::Auth,
            "Invalid Access Token",
        ))
    }
}

/// Chatwoot's error bodies: `{"message", "attributes"}` for validation failures (422 with
/// attributes), `{"error"}` for everything else.
pub(crate) fn render(r: Refusal) -> Response {
    let body = if r.attributes.is_empty() {
        json!({"error": r.message})
    } else {
        json!({"message": r.message, "attributes": r.attributes})
    };
    let mut response = (r.status, Json(body)).into_response();
    if let Some(rule) = r.rule {
        response.extensions_mut().insert(Broke {
            rule,
            message: r.message,
        });
    }
    response
}

/// The host's throttle, in front of both endpoint families.
pub(crate) async fn throttle(
    State(s): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let now_ms = s.clock.now().timestamp_millis();
    let admitted = lock(&s.host_limits).admit(now_ms);
    match admitted {
        Ok(_) => next.run(request).await,
        Err(_) => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::CONTENT_TYPE, "text/plain")],
                "Retry later\n",
            )
                .into_response();
            response.extensions_mut().insert(Broke {
                rule: Rule::RateLimit,
                message: format!("Over the host's {THROTTLE_PER_MINUTE} requests per minute."),
            });
            response
        }
    }
}

pub(crate) async fn unknown_path() -> Response {
    render(Refusal::broke(
        StatusCode::NOT_FOUND,
        Rule::UnknownEndpoint,
        "Resource could not be found",
    ))
}

pub(crate) async fn unknown_method() -> Response {
    render(Refusal::broke(
        StatusCode::METHOD_NOT_ALLOWED,
        Rule::UnknownEndpoint,
        "Method not allowed on this endpoint",
    ))
}
