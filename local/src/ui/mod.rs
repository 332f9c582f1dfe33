//! The local relay's dashboard at `/ui`: recent events and their deliveries, the
//! dead-letter list with a replay button, per-vendor request rates against their limits
//! and the limiter's state.
//!
//! One page, embedded in the binary with its script and styles (no CDN: it works offline),
//! reading two JSON endpoints every two seconds. It shows only masked identifiers: the
//! views below carry no e-mail address, phone number or name, and the contact is the short
//! keyed hash the delivery log stores.
//!
//! | route | answer |
//! |---|---|
//! | `GET /ui` | the page |
//! | `GET /ui/api/overview` | [`Overview`] as JSON |
//! | `POST /ui/api/dead-letters/{id}/replay` | `{"replayed": true}`, or 404 `not_found` |

use std::sync::Arc;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

mod data;

pub use data::RelayDashboard;

/// The page, with its script and styles inline.
const PAGE: &str = include_str!("page.html");

/// Everything the page shows, in one answer.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Overview {
    /// Newest first.
    pub events: Vec<EventView>,
    /// Oldest first.
    pub dead_letters: Vec<DeadLetterView>,
    pub vendors: Vec<VendorView>,
}

/// One accepted event and what happened to it at each vendor.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    /// The delivery log's id of the event (`relay event <id>`).
    pub id: String,
    pub source: String,
    /// The sender's own event id (an opaque id, not personal data).
    pub sender_event_id: String,
    /// The contact as a masked identifier (`#` and a keyed hash prefix).
    pub contact: String,
    /// RFC 3339.
    pub received_at: String,
    pub deliveries: Vec<DeliveryView>,
}

/// One (event, vendor) delivery.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeliveryView {
    pub vendor: String,
    /// `pending`, `synced`, `skipped`, `retrying` or `dead_lettered`.
    pub status: String,
    /// Why it was skipped, is retrying or was dead-lettered (a stable code or message
    /// without personal data).
    pub reason: Option<String>,
    pub attempts: u32,
    pub calls: u32,
}

/// One dead-lettered delivery.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetterView {
    /// What the replay button sends back.
    pub id: String,
    /// The delivery log's id of the event.
    pub event: String,
    pub vendor: String,
    pub source: String,
    pub reason: String,
    pub age_secs: u64,
}

/// One vendor's request rate and limiter.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VendorView {
    pub vendor: String,
    /// The schedule's limits, as a person reads them.
    pub per_second: u32,
    pub per_minute: u32,
    /// Calls per 10 s bucket, oldest first, the last one ending now.
    pub calls_per_10s: Vec<u32>,
    /// `open`, or `paused` while a vendor's `Retry-After` or an auth pause holds every call.
    pub limiter: String,
}

/// Why the dashboard could not answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UiError(pub String);

/// Where the dashboard's data comes from (the local relay's store, queue and log).
#[async_trait]
pub trait Dashboard: Send + Sync {
    async fn overview(&self) -> Result<Overview, UiError>;
    /// Moves the dead letter `id` back to the delivery queue; `false` when there is none.
    async fn replay(&self, id: &str) -> Result<bool, UiError>;
}

/// The dashboard's routes.
pub fn router(dashboard: Arc<dyn Dashboard>) -> Router {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/api/overview", get(overview))
        .route("/ui/api/dead-letters/{id}/replay", post(replay))
        .with_state(dashboard)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything is inline and same-origin: nothing may load from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn overview(State(d): State<Arc<dyn Dashboard>>) -> Response {
    match d.overview().await {
        Ok(o) => Json(o).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &e.to_string(),
        ),
    }
}

async fn replay(State(d): State<Arc<dyn Dashboard>>, Path(id): Path<String>) -> Response {
    match d.replay(&id).await {
        Ok(true) => Json(serde_json::json!({"replayed": true})).into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no dead letter with this id",
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &e.to_string(),
        ),
    }
}
