//! The webhook routes as one axum `Router`: run in Lambda through `lambda_http` and by
//! `relay serve` locally — the same code, not a copy.
//!
//! - `POST /hooks/forms/{source}` — form tools (form-signup function)
//! - `POST /hooks/crm/{source}`   — CRMs and Standard Webhooks senders (crm-change function)
//! - `GET /health`                — liveness for local runs and load balancers

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use super::error::IngestError;
use super::ingest::{Ingest, MAX_BODY_BYTES, WebhookDelivery};
use super::signature::InboundRequest;
use crate::mapping::Route;

/// The invocation's deadline, put into request extensions by the Lambda binary.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub DateTime<Utc>);

/// Settings of the HTTP front.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Scheme of the public URL when no `X-Forwarded-Proto` says (HubSpot signs the URL):
    /// `https` behind API Gateway, `http` for `relay serve`.
    pub default_scheme: &'static str,
}

#[derive(Clone)]
struct AppState {
    ingest: Arc<Ingest>,
    config: Arc<RouterConfig>,
}

/// Every webhook route (`relay serve`, tests).
pub fn router(ingest: Arc<Ingest>, config: RouterConfig) -> Router {
    router_for(ingest, config, &[Route::Forms, Route::Crm])
}

/// The webhook routes of `routes` only: each Lambda function serves its own
/// (form-signup `/hooks/forms/{source}`, crm-change `/hooks/crm/{source}`), as the template
/// routes them; any other path answers 404 `not_found`.
pub fn router_for(ingest: Arc<Ingest>, config: RouterConfig, routes: &[Route]) -> Router {
    let state = AppState {
        ingest,
        config: Arc::new(config),
    };
    let mut app = Router::new();
    for route in routes {
        app = match (route, route.path()) {
            (Route::Forms, Some(path)) => app.route(path, post(forms)),
            (Route::Crm, Some(path)) => app.route(path, post(crm)),
            _ => app,
        };
    }
    app.route(
        "/health",
        get(|| async { json(StatusCode::OK, &serde_json::json!({"status": "ok"})) }),
    )
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    // One byte over the limit is enough to know it is too large.
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
    .with_state(state)
}

async fn forms(
    state: State<AppState>,
    source: Result<Path<String>, PathRejection>,
    request: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(state, Route::Forms, source, request, body).await
}

async fn crm(
    state: State<AppState>,
    source: Result<Path<String>, PathRejection>,
    request: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(state, Route::Crm, source, request, body).await
}

/// The request parts a webhook handler needs.
struct Parts {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    deadline: Option<DateTime<Utc>>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Parts {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Parts {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            deadline: parts.extensions.get::<Deadline>().map(|d| d.0),
        })
    }
}

async fn handle(
    State(state): State<AppState>,
    route: Route,
    source: Result<Path<String>, PathRejection>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A source segment that is not UTF-8 once decoded names no source.
    let Ok(Path(source)) = source else {
        return error(&IngestError::UnknownSource {
            source_name: "<not UTF-8>".into(),
        });
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(&IngestError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        Err(rejection) => {
            tracing::warn!(%rejection, "could not read the request body");
            return error(&IngestError::InvalidJson { line: 0, column: 0 });
        }
    };
    let uri = public_uri(&parts.headers, &parts.uri, state.config.default_scheme);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let delivery = WebhookDelivery {
        route,
        source: &source,
        request: InboundRequest::new(&parts.method, &uri, &parts.headers, &body),
        content_type,
        deadline: parts.deadline,
    };
    match state.ingest.accept_webhook(delivery).await {
        Ok(accepted) => json(StatusCode::ACCEPTED, &accepted),
        Err(e) => {
            tracing::info!(source = %source, code = e.code(), status = e.status().as_u16(), "delivery refused");
            error(&e)
        }
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = super::error::ErrorBody {
        code: "method_not_allowed".into(),
        message: format!(
            "{method} is not accepted on {} (webhooks are POST)",
            uri.path()
        ),
    };
    json(StatusCode::METHOD_NOT_ALLOWED, &body)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let body = super::error::ErrorBody {
        code: "not_found".into(),
        message: format!(
            "no route for {method} {} (webhooks: POST /hooks/forms/{{source}}, POST /hooks/crm/{{source}})",
            uri.path()
        ),
    };
    json(StatusCode::NOT_FOUND, &body)
}

/// The URL the sender called, as HubSpot signs it: scheme from `X-Forwarded-Proto` (API
/// Gateway sets it), host from `Host`, then path and query as received.
fn public_uri(headers: &HeaderMap, uri: &Uri, default_scheme: &str) -> String {
    if uri.scheme().is_some() && uri.authority().is_some() {
        return uri.to_string();
    }
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .unwrap_or(default_scheme);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{host}{path}")
}

fn error(e: &IngestError) -> Response {
    let mut response = json(e.status(), &e.body());
    if let Some(secs) = e.retry_after()
        && let Ok(value) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_uri_follows_the_proxy_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("abc.execute-api.eu-west-1.amazonaws.com"),
        );
        let uri: Uri = "/hooks/crm/hubspot?x=1".parse().unwrap();
        assert_eq!(
            public_uri(&headers, &uri, "https"),
            "https://abc.execute-api.eu-west-1.amazonaws.com/hooks/crm/hubspot?x=1"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert_eq!(
            public_uri(&headers, &uri, "https"),
            "http://abc.execute-api.eu-west-1.amazonaws.com/hooks/crm/hubspot?x=1"
        );
    }
}
