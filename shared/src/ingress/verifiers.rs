//! The signature verifiers of the webhook sources, swappable while running: a rotated
//! sender secret takes effect without recycling instances.
//!
//! [`Verifiers::fixed`] never changes (local runs, most tests). [`Verifiers::refreshing`]
//! follows a [`RefreshingParameter`] (the ingest secrets parameter in SSM): the parameter
//! is re-read when its value is older than the policy's interval, and at once (rate-limited)
//! after a signature that matches no configured secret or a request for a source without
//! one, then the request is checked once more against the new secrets. Which secret matched
//! is logged by its position in the list (0 = the first), never by its value.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::error::IngestError;
use super::signature::{InboundRequest, SignatureError, Verified, Verifier};
use crate::mapping::Mappings;
use crate::secrets::{Refresh, RefreshingParameter};

pub use crate::secrets::SourceSecrets;

/// A source that could not be enabled at start-up.
#[derive(Debug, thiserror::Error)]
#[error("source `{source_name}`: {error}")]
pub struct SetupError {
    pub source_name: String,
    pub error: super::signature::SecretError,
}

/// The verifiers built from one set of secrets.
#[derive(Debug, Default)]
pub struct VerifierSet {
    verifiers: HashMap<String, Verifier>,
    /// Webhook sources of the mappings without a secret (answering 404 `source_not_configured`).
    pub disabled: Vec<String>,
}

impl VerifierSet {
    /// One verifier per webhook source of `mappings` that has secrets in `secrets`; a
    /// secret that cannot be used for its source's scheme is an error.
    pub fn build(mappings: &Mappings, secrets: &SourceSecrets) -> Result<Self, SetupError> {
        let mut set = VerifierSet::default();
        for source in mappings.sources() {
            let Some(scheme) = &source.signature else {
                continue;
            };
            match secrets.get(&source.name).filter(|s| !s.is_empty()) {
                Some(keys) => {
                    let verifier = Verifier::new(scheme, keys).map_err(|error| SetupError {
                        source_name: source.name.clone(),
                        error,
                    })?;
                    set.verifiers.insert(source.name.clone(), verifier);
                }
                None => set.disabled.push(source.name.clone()),
            }
        }
        Ok(set)
    }

    /// The verifier of `source`, if it has secrets.
    pub fn get(&self, source: &str) -> Option<&Verifier> {
        self.verifiers.get(source)
    }
}

/// The verifiers the ingest service checks requests with.
pub enum Verifiers {
    /// Built once; never changes.
    Fixed(Arc<VerifierSet>),
    /// Follows a parameter that is re-read while running.
    Refreshing(Arc<RefreshingParameter<VerifierSet>>),
}

impl Verifiers {
    pub fn fixed(set: VerifierSet) -> Self {
        Verifiers::Fixed(Arc::new(set))
    }

    pub fn refreshing(parameter: Arc<RefreshingParameter<VerifierSet>>) -> Self {
        Verifiers::Refreshing(parameter)
    }

    /// The set in use.
    pub fn current(&self) -> Arc<VerifierSet> {
        match self {
            Verifiers::Fixed(set) => set.clone(),
            Verifiers::Refreshing(p) => p.current(),
        }
    }

    /// Checks `request` for `source`: re-reads the secrets first when they are due, and once
    /// more (rate-limited) when nothing matched, then logs which secret matched by position.
    pub async fn verify(
        &self,
        source: &str,
        request: &InboundRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified, IngestError> {
        let first = match self {
            Verifiers::Fixed(set) => check(set, source, request, now),
            Verifiers::Refreshing(p) => {
                p.refresh_if_due().await;
                let first = check(&p.current(), source, request, now);
                if curable(&first) && p.refresh_after_failure().await == Refresh::Updated {
                    check(&p.current(), source, request, now)
                } else {
                    first
                }
            }
        };
        let verified = first?;
        if verified.key_index == 0 {
            tracing::debug!(source, secret_index = 0, "signature verified");
        } else {
            // A previous (or newly added) secret: the operator's sign of rotation progress.
            tracing::info!(
                source,
                secret_index = verified.key_index,
                "signature verified with a secret other than the first"
            );
        }
        Ok(verified)
    }
}

fn check(
    set: &VerifierSet,
    source: &str,
    request: &InboundRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Verified, IngestError> {
    let verifier = set
        .get(source)
        .ok_or_else(|| IngestError::SourceNotConfigured {
            source_name: source.to_string(),
        })?;
    Ok(verifier.verify(request, now)?)
}

/// Whether newer secrets could turn this refusal into an acceptance.
fn curable(result: &Result<Verified, IngestError>) -> bool {
    matches!(
        result,
        Err(IngestError::Signature(SignatureError::Mismatch)
            | IngestError::SourceNotConfigured { .. })
    )
}
