//! Why a request was refused. Each variant has a stable machine code, because the router
//! turns it into the `code` of a 401 answer and senders' support teams search for it.

use http::HeaderName;

/// A request failed signature verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme needs is absent.
    #[error("required header `{header}` is missing")]
    Missing {
        /// The absent header.
        header: HeaderName,
    },
    /// A header is present but cannot be parsed (bad encoding, prefix, length, timestamp).
    #[error("header `{header}` is malformed: {reason}")]
    Malformed {
        /// The unreadable header.
        header: HeaderName,
        /// What is wrong with it (never the value itself).
        reason: &'static str,
    },
    /// The signature is well formed but no configured secret produces it.
    #[error("signature does not match any configured secret")]
    Mismatch,
    /// The signature is valid but its timestamp lies outside the tolerance: a replay, or a
    /// sender whose clock is far off.
    #[error("signature timestamp is {skew_secs}s from now, beyond the {tolerance_secs}s tolerance")]
    StaleTimestamp {
        /// `now - signed_at` in seconds; negative when the timestamp is in the future.
        skew_secs: i64,
        /// The tolerance that was exceeded, in seconds.
        tolerance_secs: i64,
    },
}

impl SignatureError {
    /// Every code [`SignatureError::code`] can return.
    pub const CODES: [&'static str; 4] = [
        "signature_missing",
        "signature_malformed",
        "signature_invalid",
        "timestamp_stale",
    ];

    /// Stable machine-readable code for error responses and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "signature_missing",
            Self::Malformed { .. } => "signature_malformed",
            Self::Mismatch => "signature_invalid",
            Self::StaleTimestamp { .. } => "timestamp_stale",
        }
    }

    pub(crate) fn malformed(header: &HeaderName, reason: &'static str) -> Self {
        Self::Malformed {
            header: header.clone(),
            reason,
        }
    }
}

/// Signing a request for a sender-side tool failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// A value to be put into a header (e.g. a delivery id) is not a valid header value.
    #[error("value for header `{header}` is not a valid header value")]
    InvalidHeaderValue {
        /// The header that could not be written.
        header: HeaderName,
    },
}

/// A configured secret cannot be used with its scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No secret was configured; a verifier without one would refuse everything.
    #[error("no secret configured for scheme `{scheme}`")]
    NoSecrets {
        /// The scheme's config name.
        scheme: &'static str,
    },
    /// The secret at `index` (0-based, in configured order) is unusable.
    #[error("secret #{index} for scheme `{scheme}` is invalid: {reason}")]
    Invalid {
        /// The scheme's config name.
        scheme: &'static str,
        /// Position in the configured list.
        index: usize,
        /// What is wrong (never the secret itself).
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_listed() {
        let errors = [
            SignatureError::Missing {
                header: HeaderName::from_static("x-a"),
            },
            SignatureError::Malformed {
                header: HeaderName::from_static("x-a"),
                reason: "r",
            },
            SignatureError::Mismatch,
            SignatureError::StaleTimestamp {
                skew_secs: 301,
                tolerance_secs: 300,
            },
        ];
        let codes: Vec<_> = errors.iter().map(SignatureError::code).collect();
        assert_eq!(codes, SignatureError::CODES);
    }
}
