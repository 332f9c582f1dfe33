//! Inbound signature schemes: is this request really from the sender we configured?
//!
//! A source's config names a [`SignatureScheme`] and one or more secrets; [`Verifier`] is
//! built from both once per cold start and checks requests against a caller-supplied `now`
//! (the clock is injected so tests and replays are deterministic). Several secrets may be
//! valid at once for rotation: the first is current (used by [`Verifier::sign`]), the rest
//! are still accepted. Signing and verifying share one MAC routine ([`mac`]).
//!
//! Where a scheme carries a timestamp the MAC is checked first and the time window second,
//! so [`SignatureError::StaleTimestamp`] always means "authentic but too old or too new".

mod encoding;
mod error;
pub mod generic_hmac;
pub mod http_basic;
pub mod hubspot;
pub mod mac;
mod request;
pub mod standard_webhooks;
pub mod tally;
mod timestamp;
pub mod typeform;
pub mod webflow;

#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};

pub use encoding::TagEncoding;
pub use error::{SecretError, SignError, SignatureError};
pub use generic_hmac::BodyHmac;
pub use mac::MacKey;
pub use relay_core::mapping::signature::{Encoding, SignatureScheme};
pub use request::InboundRequest;

/// Default replay window: five minutes either way, what Standard Webhooks and HubSpot ask for.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's delivery id where the scheme signs one (`webhook-id`); stable across
    /// the sender's retries, so usable as an idempotency key.
    pub delivery_id: Option<String>,
    /// When the sender signed, where the scheme has a timestamp.
    pub signed_at: Option<DateTime<Utc>>,
    /// Which configured secret matched (0 = current); tells when old secrets can go.
    pub key_index: usize,
}

/// Secrets prepared for their scheme.
#[derive(Debug, Clone)]
enum Keys {
    StandardWebhooks(Vec<MacKey>),
    Hubspot(Vec<MacKey>),
    Webflow(Vec<MacKey>),
    Body(BodyHmac, Vec<MacKey>),
    HttpBasic(Vec<http_basic::Credentials>),
}

/// Checks (and, for tools and tests, produces) one source's signatures.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: &'static str,
    keys: Keys,
    tolerance: TimeDelta,
}

/// A request to be signed as the sender would (for `relay send`, the demo and tests).
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// HTTP method (HubSpot signs it).
    pub method: &'a Method,
    /// Full URI that will be called (HubSpot signs it).
    pub uri: &'a str,
    /// Raw body.
    pub body: &'a [u8],
    /// Signing time, for schemes with a timestamp.
    pub now: DateTime<Utc>,
    /// Delivery id for Standard Webhooks; a fresh `msg_<uuid>` when `None`.
    pub delivery_id: Option<&'a str>,
}

impl Verifier {
    /// Prepares `secrets` (current first) for `scheme`, with [`DEFAULT_TOLERANCE`].
    pub fn new(scheme: &SignatureScheme, secrets: &[SecretString]) -> Result<Self, SecretError> {
        let name = scheme.name();
        if secrets.is_empty() {
            return Err(SecretError::NoSecrets { scheme: name });
        }
        let texts = || secrets.iter().map(|s| s.expose_secret());
        let plain = || texts().map(MacKey::from_text).collect::<Vec<_>>();
        let invalid = |index, reason| SecretError::Invalid {
            scheme: name,
            index,
            reason,
        };
        if let Some(index) = texts().position(str::is_empty) {
            return Err(invalid(index, "empty secret"));
        }
        let keys = match scheme {
            SignatureScheme::StandardWebhooks => Keys::StandardWebhooks(
                texts()
                    .enumerate()
                    .map(|(i, s)| standard_webhooks::decode_secret(s).map_err(|r| invalid(i, r)))
                    .collect::<Result<_, _>>()?,
            ),
            SignatureScheme::Hubspot => Keys::Hubspot(plain()),
            SignatureScheme::Webflow => Keys::Webflow(plain()),
            SignatureScheme::Typeform => Keys::Body(typeform::scheme(), plain()),
            SignatureScheme::Tally => Keys::Body(tally::scheme(), plain()),
            SignatureScheme::GenericHmac {
                header,
                encoding,
                prefix,
            } => Keys::Body(
                BodyHmac {
                    header: header.clone(),
                    encoding: *encoding,
                    prefix: prefix.clone().map(Into::into),
                },
                plain(),
            ),
            SignatureScheme::HttpBasic => Keys::HttpBasic(
                texts()
                    .enumerate()
                    .map(|(i, s)| http_basic::Credentials::parse(s).map_err(|r| invalid(i, r)))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Self {
            scheme: name,
            keys,
            tolerance: to_delta(DEFAULT_TOLERANCE),
        })
    }

    /// Replaces the replay window (applies in both directions).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = to_delta(tolerance);
        self
    }

    /// The scheme's config name.
    #[must_use]
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Verifies `req` as of `now`.
    pub fn verify(
        &self,
        req: &InboundRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified, SignatureError> {
        match &self.keys {
            Keys::StandardWebhooks(keys) => {
                standard_webhooks::verify(keys, req, now, self.tolerance)
            }
            Keys::Hubspot(keys) => hubspot::verify(keys, req, now, self.tolerance),
            Keys::Webflow(keys) => webflow::verify(keys, req, now, self.tolerance),
            Keys::Body(scheme, keys) => scheme.verify(keys, req),
            Keys::HttpBasic(accepted) => http_basic::verify(accepted, req),
        }
    }

    /// The headers a genuine sender would add to `req`, signed with the current secret.
    /// (`[0]` below cannot panic: [`Verifier::new`] refuses an empty secret list.)
    pub fn sign(&self, req: &SignRequest<'_>) -> Result<HeaderMap, SignError> {
        let mut headers = HeaderMap::new();
        let mut put = |name: HeaderName, value: String| {
            let value =
                HeaderValue::try_from(value).map_err(|_| SignError::InvalidHeaderValue {
                    header: name.clone(),
                })?;
            headers.insert(name, value);
            Ok::<_, SignError>(())
        };
        match &self.keys {
            Keys::StandardWebhooks(keys) => {
                let id = req.delivery_id.map_or_else(
                    || format!("msg_{}", uuid::Uuid::new_v4().simple()),
                    str::to_owned,
                );
                let ts = req.now.timestamp();
                let signature = standard_webhooks::sign(&keys[0], &id, ts, req.body);
                put(standard_webhooks::ID, id)?;
                put(standard_webhooks::TIMESTAMP, ts.to_string())?;
                put(standard_webhooks::SIGNATURE, signature)?;
            }
            Keys::Hubspot(keys) => {
                let ts = req.now.timestamp_millis();
                put(
                    hubspot::SIGNATURE,
                    hubspot::sign(&keys[0], req.method, req.uri, req.body, ts),
                )?;
                put(hubspot::TIMESTAMP, ts.to_string())?;
            }
            Keys::Webflow(keys) => {
                let ts = req.now.timestamp_millis();
                put(webflow::SIGNATURE, webflow::sign(&keys[0], ts, req.body))?;
                put(webflow::TIMESTAMP, ts.to_string())?;
            }
            Keys::Body(scheme, keys) => {
                put(scheme.header.clone(), scheme.sign(&keys[0], req.body))?
            }
            Keys::HttpBasic(accepted) => put(http_basic::HEADER, http_basic::sign(&accepted[0]))?,
        }
        Ok(headers)
    }
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}
