//! Ingest errors and the JSON error body senders see: `{"code": "...", "message": "..."}`
//! with a stable `code` per cause and the HTTP status that tells the sender whether a retry
//! can help (4xx: no, except 409 in progress; 5xx: yes).

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::signature::SignatureError;
use crate::mapping::ExtractError;

/// The error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// Why a delivery was not accepted. Nothing stays claimed for any of these (a claim taken
/// before the failure is released).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no source named `{source_name}` on this route")]
    UnknownSource { source_name: String },
    #[error("source `{source_name}` is not enabled: no signing secret is configured for it")]
    SourceNotConfigured { source_name: String },
    #[error("no mapping handles EventBridge detail-type `{detail_type}`")]
    UnknownDetailType { detail_type: String },
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type `{content_type}` is not JSON (send application/json)")]
    UnsupportedMediaType { content_type: String },
    #[error("the body is not valid JSON (line {line}, column {column})")]
    InvalidJson { line: usize, column: usize },
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    Unmappable(#[from] ExtractError),
    #[error("the event, as mapped, is larger than the {limit} bytes a queue message may hold")]
    EventTooLarge { limit: usize },
    #[error("this event id was already used with a different payload")]
    EventIdReused,
    #[error("the {what} is unavailable; nothing was accepted, retry later")]
    Unavailable { what: &'static str },
    /// A fault of the relay's own (a malformed item in its table): nothing was accepted,
    /// and a retry will meet the same fault until an operator fixes it.
    #[error("the {what} failed; nothing was accepted")]
    Internal { what: &'static str },
}

impl IngestError {
    /// A backing store's failure: only a store that is genuinely unavailable is worth the
    /// sender's retry (503); anything else is our fault and stays so on every retry (500).
    pub fn of_store(what: &'static str, retryable: bool) -> Self {
        if retryable {
            IngestError::Unavailable { what }
        } else {
            IngestError::Internal { what }
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::UnknownSource { .. }
            | IngestError::SourceNotConfigured { .. }
            | IngestError::UnknownDetailType { .. } => StatusCode::NOT_FOUND,
            IngestError::PayloadTooLarge { .. } | IngestError::EventTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::InvalidJson { .. } => StatusCode::BAD_REQUEST,
            IngestError::Signature(_) => StatusCode::UNAUTHORIZED,
            IngestError::Unmappable(ExtractError::TooManyEvents { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::Unmappable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::EventIdReused => StatusCode::CONFLICT,
            IngestError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::UnknownSource { .. } => "unknown_source",
            IngestError::SourceNotConfigured { .. } => "source_not_configured",
            IngestError::UnknownDetailType { .. } => "unknown_detail_type",
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::EventTooLarge { .. } => "event_too_large",
            IngestError::UnsupportedMediaType { .. } => "unsupported_media_type",
            IngestError::InvalidJson { .. } => "invalid_json",
            IngestError::Signature(e) => e.code(),
            IngestError::Unmappable(e) => e.code(),
            IngestError::EventIdReused => "event_id_reused",
            IngestError::Unavailable { .. } => "temporarily_unavailable",
            IngestError::Internal { .. } => "internal_error",
        }
    }

    /// Seconds the sender should wait before retrying, where a retry will help.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            IngestError::Unavailable { .. } => Some(5),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }
}
