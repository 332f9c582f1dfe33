//! One error classification for every vendor, so the worker decides retry, back-off or
//! dead-letter the same way whichever vendor answered.
//!
//! | answer | class |
//! |---|---|
//! | 401, 403 | [`VendorError::Auth`]: credentials are wrong; retrying will not help |
//! | 429 | [`VendorError::RateLimited`]: wait `retry_after`, penalise the limiter |
//! | 408, 5xx, timeout, connection error | [`VendorError::Transient`]: retry later |
//! | other 4xx (400, 404, 409, 422, ...) and 1xx/3xx | [`VendorError::Permanent`] |
//! | 2xx whose body is not the documented shape | [`VendorError::UnexpectedResponse`] (permanent) |
//!
//! Messages never contain request bodies, URLs (query strings carry e-mail addresses) or
//! personal data: the vendor's own message is kept (it helps support) but scrubbed of
//! anything that looks like an e-mail address or a phone number.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::Vendor;
use super::rate_limit::RateLimitInfo;
use crate::model::redact::REDACTED;

/// Longest vendor message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// The four classes the worker acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Will fail again with the same request: dead-letter.
    Permanent,
    /// Credentials refused: dead-letter and alert.
    Auth,
    /// Over the vendor's limit: retry after the given delay.
    RateLimited,
    /// May work later: retry with back-off.
    Transient,
}

/// Why a transient failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TransientCause {
    /// The vendor answered 408 or 5xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// No answer within the client's timeout.
    #[error("timed out")]
    Timeout,
    /// Could not connect (DNS, TCP, TLS).
    #[error("connection failed")]
    Connect,
    /// The connection broke while sending or reading.
    #[error("network error")]
    Network,
}

/// A failed vendor call. `op` names the endpoint (e.g. `hood.patch_profile`), never its URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VendorError {
    /// The vendor refused the request for a reason retrying will not fix.
    #[error("{vendor} {op}: HTTP {status} (permanent){}", detail(.message, .trace_id))]
    Permanent {
        vendor: Vendor,
        op: &'static str,
        status: u16,
        /// The vendor's message (Hood `message`/`title`, Chatwoot `message` + `attributes`).
        message: Option<String>,
        /// Hood's `trace_id`, or an `x-request-id`/`x-trace-id` response header.
        trace_id: Option<String>,
        rate_limit: RateLimitInfo,
    },
    /// 401 or 403.
    #[error("{vendor} {op}: HTTP {status}, credentials refused{}", detail(.message, .trace_id))]
    Auth {
        vendor: Vendor,
        op: &'static str,
        status: u16,
        message: Option<String>,
        trace_id: Option<String>,
        rate_limit: RateLimitInfo,
    },
    /// HTTP 429. `retry_after` is already resolved (see `RateLimitInfo::retry_delay`);
    /// with `concurrency_limit` Hood said `Retry-After: -1`.
    #[error("{vendor} {op}: rate limited, retry after {} ms{}", .retry_after.as_millis(), detail(&None, .trace_id))]
    RateLimited {
        vendor: Vendor,
        op: &'static str,
        retry_after: Duration,
        concurrency_limit: bool,
        trace_id: Option<String>,
        rate_limit: RateLimitInfo,
    },
    /// 408, 5xx, timeout or a connection problem.
    #[error("{vendor} {op}: {cause} (transient){}", detail(.message, .trace_id))]
    Transient {
        vendor: Vendor,
        op: &'static str,
        cause: TransientCause,
        message: Option<String>,
        trace_id: Option<String>,
        /// Present when the vendor answered (5xx); absent for timeouts and network errors.
        rate_limit: Option<RateLimitInfo>,
    },
    /// A success status with a body that is not the documented shape. `detail` says where
    /// parsing stopped, never what the body held.
    #[error("{vendor} {op}: HTTP {status} with an unexpected body ({detail})")]
    UnexpectedResponse {
        vendor: Vendor,
        op: &'static str,
        status: u16,
        detail: String,
        rate_limit: RateLimitInfo,
    },
}

fn detail(message: &Option<String>, trace_id: &Option<String>) -> String {
    let mut out = String::new();
    if let Some(m) = message {
        out.push_str(": ");
        out.push_str(m);
    }
    if let Some(t) = trace_id {
        out.push_str(" [trace_id ");
        out.push_str(t);
        out.push(']');
    }
    out
}

impl VendorError {
    /// The class the worker acts on.
    pub fn class(&self) -> ErrorClass {
        match self {
            VendorError::Permanent { .. } | VendorError::UnexpectedResponse { .. } => {
                ErrorClass::Permanent
            }
            VendorError::Auth { .. } => ErrorClass::Auth,
            VendorError::RateLimited { .. } => ErrorClass::RateLimited,
            VendorError::Transient { .. } => ErrorClass::Transient,
        }
    }

    /// True for the classes worth retrying (rate limited, transient).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::RateLimited | ErrorClass::Transient
        )
    }

    /// The vendor that failed.
    pub fn vendor(&self) -> Vendor {
        match self {
            VendorError::Permanent { vendor, .. }
            | VendorError::Auth { vendor, .. }
            | VendorError::RateLimited { vendor, .. }
            | VendorError::Transient { vendor, .. }
            | VendorError::UnexpectedResponse { vendor, .. } => *vendor,
        }
    }

    /// The HTTP status, when the vendor answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            VendorError::Permanent { status, .. }
            | VendorError::Auth { status, .. }
            | VendorError::UnexpectedResponse { status, .. } => Some(*status),
            VendorError::RateLimited { .. } => Some(429),
            VendorError::Transient { cause, .. } => match cause {
                TransientCause::Status(s) => Some(*s),
                _ => None,
            },
        }
    }

    /// The rate-limit headers of the failed response, when there was one.
    pub fn rate_limit(&self) -> Option<&RateLimitInfo> {
        match self {
            VendorError::Permanent { rate_limit, .. }
            | VendorError::Auth { rate_limit, .. }
            | VendorError::RateLimited { rate_limit, .. }
            | VendorError::UnexpectedResponse { rate_limit, .. } => Some(rate_limit),
            VendorError::Transient { rate_limit, .. } => rate_limit.as_ref(),
        }
    }

    /// How long to wait before retrying, for 429s.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VendorError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Classifies a non-success answer from its status, headers and body.
    pub fn from_response(
        vendor: Vendor,
        op: &'static str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let rate_limit = RateLimitInfo::from_headers(headers);
        let (message, body_trace) = message_and_trace(body);
        let trace_id = body_trace.or_else(|| header_trace_id(headers));
        let code = status.as_u16();
        match code {
            401 | 403 => VendorError::Auth {
                vendor,
                op,
                status: code,
                message,
                trace_id,
                rate_limit,
            },
            429 => VendorError::RateLimited {
                vendor,
                op,
                retry_after: rate_limit.retry_delay(SystemTime::now()),
                concurrency_limit: rate_limit.is_concurrency_limit(),
                trace_id,
                rate_limit,
            },
            408 | 500..=599 => VendorError::Transient {
                vendor,
                op,
                cause: TransientCause::Status(code),
                message,
                trace_id,
                rate_limit: Some(rate_limit),
            },
            _ => VendorError::Permanent {
                vendor,
                op,
                status: code,
                message,
                trace_id,
                rate_limit,
            },
        }
    }

    /// Classifies a transport failure. The reqwest error is not kept: its text can carry the
    /// URL, whose query holds e-mail addresses.
    pub fn from_transport(vendor: Vendor, op: &'static str, err: &reqwest::Error) -> Self {
        let cause = if err.is_timeout() {
            TransientCause::Timeout
        } else if err.is_connect() {
            TransientCause::Connect
        } else {
            TransientCause::Network
        };
        VendorError::Transient {
            vendor,
            op,
            cause,
            message: None,
            trace_id: None,
            rate_limit: None,
        }
    }

    /// A success answer whose body could not be read as documented.
    pub fn unexpected_body(
        vendor: Vendor,
        op: &'static str,
        status: StatusCode,
        err: &serde_json::Error,
        rate_limit: RateLimitInfo,
    ) -> Self {
        // serde_json's Display quotes offending values; keep only the category and position.
        VendorError::UnexpectedResponse {
            vendor,
            op,
            status: status.as_u16(),
            detail: format!(
                "{:?} error at line {} column {}",
                err.classify(),
                err.line(),
                err.column()
            ),
            rate_limit,
        }
    }
}

/// Trace id headers vendors send when the body has none.
fn header_trace_id(headers: &HeaderMap) -> Option<String> {
    ["x-trace-id", "x-request-id", "x-amzn-trace-id"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok())
        .map(|s| truncate(s, 100))
}

/// Picks the vendor's message and trace id from any of the documented error shapes:
/// Hood `{code, title, message, trace_id}`, Chatwoot `{message, attributes}` or
/// `{error}`, Channel.io `{errors: [{message}]}`.
fn message_and_trace(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let text = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let first_error = obj
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .or_else(|| e.as_str())
        });
    let mut message = text("message")
        .or_else(|| text("title"))
        .or_else(|| text("error"))
        .or(first_error)
        .map(scrub);
    if let Some(attrs) = obj.get("attributes").and_then(Value::as_array) {
        let names: Vec<&str> = attrs.iter().filter_map(Value::as_str).collect();
        if !names.is_empty() {
            let joined = scrub(&names.join(", "));
            message = Some(match message {
                Some(m) => format!("{m} (attributes: {joined})"),
                None => format!("attributes: {joined}"),
            });
        }
    }
    let trace_id = text("trace_id").map(|t| truncate(t, 100));
    (message.map(|m| truncate(&m, MAX_MESSAGE_CHARS)), trace_id)
}

/// Replaces words that look like an e-mail address or a phone number with `<redacted>`.
pub(crate) fn scrub(message: &str) -> String {
    message
        .split(' ')
        .map(|word| {
            let digits = word.chars().filter(char::is_ascii_digit).count();
            let phone_like = digits >= 7
                && word
                    .chars()
                    .all(|c| c.is_ascii_digit() || "+-().,/:;'\"".contains(c));
            if word.contains('@') || phone_like {
                REDACTED
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((idx, _)) => format!("{}…", &s[..idx]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn classify(status: u16, body: &str) -> VendorError {
        VendorError::from_response(
            Vendor::Hood,
            "hood.test",
            StatusCode::from_u16(status).expect("valid status"),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn statuses_map_to_classes() {
        for (status, class) in [
            (400, ErrorClass::Permanent),
            (404, ErrorClass::Permanent),
            (409, ErrorClass::Permanent),
            (422, ErrorClass::Permanent),
            (401, ErrorClass::Auth),
            (403, ErrorClass::Auth),
            (429, ErrorClass::RateLimited),
            (408, ErrorClass::Transient),
            (500, ErrorClass::Transient),
            (503, ErrorClass::Transient),
            (302, ErrorClass::Permanent),
        ] {
            assert_eq!(classify(status, "").class(), class, "status {status}");
        }
    }

    #[test]
    fn hood_error_body_keeps_message_and_trace_id() {
        let e = classify(
            400,
            r#"{"code":400,"title":"Bad request.","message":"The request is not valid.","trace_id":"99a8"}"#,
        );
        assert_eq!(
            e,
            VendorError::Permanent {
                vendor: Vendor::Hood,
                op: "hood.test",
                status: 400,
                message: Some("The request is not valid.".into()),
                trace_id: Some("99a8".into()),
                rate_limit: RateLimitInfo::default(),
            }
        );
        assert_eq!(
            e.to_string(),
            "hood hood.test: HTTP 400 (permanent): The request is not valid. [trace_id 99a8]"
        );
    }

    #[test]
    fn chatwoot_attributes_are_appended() {
        let e = classify(
            422,
            r#"{"message":"Email has already been taken","attributes":["email"]}"#,
        );
        assert!(matches!(e, VendorError::Permanent { ref message, .. }
            if message.as_deref() == Some("Email has already been taken (attributes: email)")));
    }

    #[test]
    fn personal_data_in_vendor_messages_is_scrubbed() {
        assert_eq!(
            scrub("Email jane.doe@example.com is invalid, phone +4915112345678 too"),
            "Email <redacted> is invalid, phone <redacted> too"
        );
        assert_eq!(scrub("Profile 42 not found"), "Profile 42 not found");
    }

    #[test]
    fn trace_id_falls_back_to_request_id_header() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req-1"));
        let e = VendorError::from_response(
            Vendor::Chatwoot,
            "op",
            StatusCode::NOT_FOUND,
            &h,
            b"not json",
        );
        assert!(
            matches!(e, VendorError::Permanent { ref trace_id, ref message, .. }
            if trace_id.as_deref() == Some("req-1") && message.is_none())
        );
    }

    #[test]
    fn long_messages_are_truncated() {
        let long = "x".repeat(1000);
        let e = classify(400, &format!(r#"{{"message":"{long}"}}"#));
        let VendorError::Permanent {
            message: Some(m), ..
        } = e
        else {
            panic!("expected permanent with message")
        };
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
