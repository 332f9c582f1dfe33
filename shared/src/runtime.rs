//! Start-up of the Lambda functions, once per cold start: configuration from the
//! environment, one SDK configuration shared by every AWS client, then the adapters and the
//! use case. Endpoints can be pointed at local servers with the SDK's own
//! `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SQS` variables.

use std::path::PathBuf;
use std::sync::Arc;

use aws_config::BehaviorVersion;

use crate::ingress::ingest::SetupError;
use crate::ingress::{Ingest, SourceSecrets};
use crate::mapping::{LoadError, Mappings, Route};
use crate::queue::sqs::SqsQueue;
use crate::secrets::{SecretsError, parse_source_secrets, read_parameter, source_secrets_from_env};
use crate::store::SystemClock;
use crate::store::dynamo::DynamoStore;

/// Environment variable names (the contract with `template.yaml`).
pub mod env {
    pub const TABLE: &str = "RELAY_TABLE";
    pub const QUEUE_URL: &str = "RELAY_QUEUE_URL";
    pub const DLQ_URL: &str = "RELAY_DLQ_URL";
    pub const MAPPINGS: &str = "RELAY_MAPPINGS";
    pub const INGEST_SECRETS: &str = "RELAY_INGEST_SECRETS";
    pub const VENDOR_SECRETS: &str = "RELAY_VENDOR_SECRETS";
    /// The raw-event key itself (base64 of 32 bytes): local runs and the CLI.
    pub const RAW_KEY: &str = "RELAY_RAW_KEY";
    /// The SecureString SSM parameter holding the raw-event key (Lambda).
    pub const RAW_KEY_PARAMETER: &str = "RELAY_RAW_KEY_PARAMETER";
    /// How long the delivery log and raw events are kept, in days (default 14).
    pub const JOURNAL_TTL_DAYS: &str = "RELAY_JOURNAL_TTL_DAYS";
}

/// The raw-event key from `RELAY_RAW_KEY`, else from the SSM parameter named by
/// `RELAY_RAW_KEY_PARAMETER`; none when neither is set (raw events are then not kept).
pub async fn raw_key_from_env(
    sdk: &aws_config::SdkConfig,
) -> Result<Option<crate::store::RawKey>, StartupError> {
    let text = match (optional(env::RAW_KEY), optional(env::RAW_KEY_PARAMETER)) {
        (Some(key), _) => secrecy::SecretString::from(key),
        (None, Some(name)) => read_parameter(&aws_sdk_ssm::Client::new(sdk), &name).await?,
        (None, None) => return Ok(None),
    };
    crate::store::RawKey::from_base64(&text)
        .map(Some)
        .map_err(|e| StartupError::Invalid(e.to_string()))
}

/// The log's TTL from `RELAY_JOURNAL_TTL_DAYS` (1 to 365), else 14 days.
pub fn journal_ttl_from_env() -> Result<chrono::TimeDelta, StartupError> {
    match optional(env::JOURNAL_TTL_DAYS) {
        None => Ok(crate::store::DEFAULT_JOURNAL_TTL),
        Some(text) => match text.parse::<i64>() {
            Ok(days @ 1..=365) => Ok(chrono::TimeDelta::days(days)),
            _ => Err(StartupError::Invalid(format!(
                "{} must be a whole number of days from 1 to 365",
                env::JOURNAL_TTL_DAYS
            ))),
        },
    }
}

/// Why a function could not start. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    #[error("{0}")]
    Mappings(#[from] LoadError),
    #[error("{0}")]
    Secrets(#[from] SecretsError),
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A required environment variable.
pub fn required(name: &'static str) -> Result<String, StartupError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(StartupError::MissingEnv(name))
}

fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The mappings named by `RELAY_MAPPINGS`, else the built-in ones.
pub fn mappings_from_env() -> Result<Arc<Mappings>, StartupError> {
    let path = optional(env::MAPPINGS).map(PathBuf::from);
    Ok(Arc::new(crate::assembly::load_mappings(path.as_deref())?))
}

/// The routes form-signup serves (the template routes `POST /hooks/forms/{source}` to it).
pub const FORM_SIGNUP_ROUTES: &[Route] = &[Route::Forms];

/// The routes crm-change serves (the template routes `POST /hooks/crm/{source}` to it).
pub const CRM_CHANGE_ROUTES: &[Route] = &[Route::Crm];

/// The secrets of the sources served on `routes`: a function keeps no other source's.
fn own_secrets(mappings: &Mappings, routes: &[Route], all: SourceSecrets) -> SourceSecrets {
    all.into_iter()
        .filter(|(name, _)| {
            mappings
                .source(name)
                .is_some_and(|s| routes.contains(&s.route))
        })
        .collect()
}

/// Which ingest function is starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestFunction {
    /// form-signup, crm-change: signed webhooks on these routes; keeps only the secrets of
    /// the sources on them.
    Webhooks(&'static [Route]),
    /// event-sync: EventBridge, authenticated by IAM; reads no secret.
    Events,
}

/// Builds the ingest service from the environment.
pub async fn ingest_from_env(function: IngestFunction) -> Result<Arc<Ingest>, StartupError> {
    let table = required(env::TABLE)?;
    let queue_url = required(env::QUEUE_URL)?;
    let mappings = mappings_from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let secrets: SourceSecrets = match (function, optional(env::INGEST_SECRETS)) {
        (IngestFunction::Events, _) => SourceSecrets::new(),
        (IngestFunction::Webhooks(routes), Some(name)) => {
            let value = read_parameter(&aws_sdk_ssm::Client::new(&sdk), &name).await?;
            let all = parse_source_secrets(&name, secrecy::ExposeSecret::expose_secret(&value))?;
            own_secrets(&mappings, routes, all)
        }
        (IngestFunction::Webhooks(routes), None) => own_secrets(
            &mappings,
            routes,
            source_secrets_from_env(mappings.sources().map(|s| s.name.as_str())),
        ),
    };
    let clock = Arc::new(SystemClock);
    let ttl = journal_ttl_from_env()?;
    let store = Arc::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, clock.clone())
            .with_journal_ttl(ttl),
    );
    let raw_key = raw_key_from_env(&sdk).await?;
    let queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url));
    let (ingest, disabled) = crate::assembly::build_ingest(
        mappings,
        &secrets,
        store.clone(),
        queue,
        clock,
        Arc::new(crate::ingress::IngestMetrics::emf()),
    )?;
    let recording = crate::ingress::ingest::Recording {
        ttl,
        ..crate::ingress::ingest::Recording::new(store, raw_key)
    };
    let ingest = ingest.with_recording(recording);
    if let IngestFunction::Webhooks(routes) = function {
        let served = |name: &String| {
            ingest
                .mappings()
                .source(name)
                .is_some_and(|s| routes.contains(&s.route))
        };
        for source in disabled.iter().filter(|s| served(s)) {
            tracing::warn!(
                source,
                "no signing secret configured; the source answers 404 source_not_configured"
            );
        }
    }
    Ok(Arc::new(ingest))
}

/// Builds the sync worker from the environment: vendor settings (credentials included)
/// from the SSM parameter `RELAY_VENDOR_SECRETS`, base URLs overridable with
/// `RELAY_<VENDOR>_BASE_URL`, the shared limiters and links in the table, and the queues.
pub async fn worker_from_env() -> Result<Arc<crate::worker::Worker>, StartupError> {
    use crate::worker::setup::VendorConfigs;
    use crate::worker::{Metrics, MetricsOutput, RetryPolicy};

    let table = required(env::TABLE)?;
    let queue_url = required(env::QUEUE_URL)?;
    let dlq_url = required(env::DLQ_URL)?;
    let secrets_name = required(env::VENDOR_SECRETS)?;
    let mappings = mappings_from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let value = read_parameter(&aws_sdk_ssm::Client::new(&sdk), &secrets_name).await?;
    let mut configs: VendorConfigs =
        serde_json::from_str(secrecy::ExposeSecret::expose_secret(&value)).map_err(|e| {
            SecretsError::Malformed {
                name: secrets_name.clone(),
                position: format!("line {} column {}", e.line(), e.column()),
            }
        })?;
    override_base_urls(&mut configs);

    let clock: Arc<dyn crate::store::Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, clock.clone())
        .with_journal_ttl(journal_ttl_from_env()?);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let worker = crate::assembly::build_worker(crate::assembly::WorkerParts {
        mappings,
        vendors: &configs,
        links: Arc::new(store.clone()),
        limiter_store: &store,
        limiter_account: "default",
        limits: crate::assembly::DEFAULT_LIMITS,
        queue: Arc::new(SqsQueue::new(sqs.clone(), queue_url)),
        dead_letters: Arc::new(SqsQueue::new(sqs, dlq_url)),
        clock,
        policy: RetryPolicy::default(),
        metrics: Arc::new(Metrics::new(MetricsOutput::Emf)),
    })
    .map_err(|e| StartupError::Invalid(e.to_string()))?
    .with_journal(Arc::new(store));
    Ok(Arc::new(worker))
}

/// `RELAY_HOOD_BASE_URL`, `RELAY_CHANNELIO_BASE_URL`, `RELAY_OMNIVIBE_BASE_URL` (also used for
/// Chatwoot, which lives on the Omnivibe host) replace the configured base URLs.
fn override_base_urls(configs: &mut crate::worker::setup::VendorConfigs) {
    if let (Some(c), Some(url)) = (configs.hood.as_mut(), optional("RELAY_HOOD_BASE_URL")) {
        c.base_url = url;
    }
    if let (Some(c), Some(url)) = (
        configs.channelio.as_mut(),
        optional("RELAY_CHANNELIO_BASE_URL"),
    ) {
        c.base_url = url;
    }
    if let Some(url) = optional("RELAY_OMNIVIBE_BASE_URL") {
        if let Some(c) = configs.omnivibe.as_mut() {
            c.base_url = url.clone();
        }
        if let Some(c) = configs.chatwoot.as_mut() {
            c.base_url = url;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn each_ingest_function_keeps_only_its_own_sources_secrets() {
        let mappings = Mappings::builtin().unwrap();
        let all: SourceSecrets = mappings
            .sources()
            .map(|s| (s.name.clone(), vec![SecretString::from("s")]))
            .collect();
        let names = |routes| {
            let mut n: Vec<String> = own_secrets(&mappings, routes, all.clone())
                .into_keys()
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(FORM_SIGNUP_ROUTES), ["tally", "typeform", "webflow"]);
        assert_eq!(
            names(CRM_CHANGE_ROUTES),
            ["hubspot", "pipedrive", "standard"]
        );
    }
}
