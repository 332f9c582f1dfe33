//! Start-up of the Lambda functions, once per cold start: configuration from the
//! environment, one SDK configuration shared by every AWS client, then the adapters and the
//! use case. Endpoints can be pointed at local servers with the SDK's own
//! `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL_SSM` variables.
//!
//! Mappings: `RELAY_MAPPINGS_PARAMETER` names an SSM parameter holding the mapping file's
//! TOML (optionally pinned to a version, `/name:3`), read at start-up with the loader
//! `relay check-config --mappings FILE` uses; else `RELAY_MAPPINGS`, a path (tests, local
//! runs); else the built-in mappings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;

use crate::ingress::ingest::SetupError;
use crate::ingress::verifiers::{VerifierSet, Verifiers};
use crate::ingress::{Ingest, SourceSecrets};
use crate::mapping::{LoadError, Mappings, Route};
use crate::queue::sqs::SqsQueue;
use crate::secrets::{
    ParameterSource, RefreshPolicy, RefreshingParameter, SecretsError, SsmParameter,
    parse_source_secrets, read_parameter, source_secrets_from_env,
};
use crate::store::SystemClock;
use crate::store::dynamo::DynamoStore;

/// Environment variable names (the contract with `template.yaml`).
pub mod env {
    pub const TABLE: &str = "RELAY_TABLE";
    pub const QUEUE_URL: &str = "RELAY_QUEUE_URL";
    pub const DLQ_URL: &str = "RELAY_DLQ_URL";
    pub const MAPPINGS: &str = "RELAY_MAPPINGS";
    pub const MAPPINGS_PARAMETER: &str = "RELAY_MAPPINGS_PARAMETER";
    /// Seconds between re-reads of a secrets parameter (default 300).
    pub const SECRETS_REFRESH_SECS: &str = "RELAY_SECRETS_REFRESH_SECS";
    /// Least seconds between re-reads forced by a failure (default 30).
    pub const SECRETS_MIN_REFRESH_SECS: &str = "RELAY_SECRETS_MIN_REFRESH_SECS";
    /// The account part of the worker's limiter keys (default `default`).
    pub const LIMITER_ACCOUNT: &str = "RELAY_LIMITER_ACCOUNT";
    /// The worker's vendor limits as JSON (`crate::vendors::LimitsConfig`, e.g.
    /// `{"hood": [{"limit": 10, "per": "1s"}, {"limit": 150, "per": "1m"}]}`); empty or
    /// unset: the vendors' documented limits.
    pub const LIMITS: &str = "RELAY_LIMITS";
    pub const HOOD_BASE_URL: &str = "RELAY_HOOD_BASE_URL";
    pub const CHANNELIO_BASE_URL: &str = "RELAY_CHANNELIO_BASE_URL";
    /// Omnivibe's, also used for Chatwoot (on the Omnivibe host).
    pub const OMNIVIBE_BASE_URL: &str = "RELAY_OMNIVIBE_BASE_URL";

    /// Every variable the functions read.
    pub const ALL: &[&str] = &[
        TABLE,
        QUEUE_URL,
        DLQ_URL,
        MAPPINGS,
        MAPPINGS_PARAMETER,
        INGEST_SECRETS,
        VENDOR_SECRETS,
        SECRETS_REFRESH_SECS,
        SECRETS_MIN_REFRESH_SECS,
        LIMITER_ACCOUNT,
        LIMITS,
        HOOD_BASE_URL,
        CHANNELIO_BASE_URL,
        OMNIVIBE_BASE_URL,
        RAW_KEY,
        RAW_KEY_PARAMETER,
        IDENTITY_KEY,
        IDENTITY_KEY_PARAMETER,
        JOURNAL_TTL_DAYS,
    ];
    pub const INGEST_SECRETS: &str = "RELAY_INGEST_SECRETS";
    pub const VENDOR_SECRETS: &str = "RELAY_VENDOR_SECRETS";
    /// The raw-event key itself (base64 of 32 bytes): local runs and the CLI.
    pub const RAW_KEY: &str = "RELAY_RAW_KEY";
    /// The SecureString SSM parameter holding the raw-event key (Lambda).
    pub const RAW_KEY_PARAMETER: &str = "RELAY_RAW_KEY_PARAMETER";
    /// The identity key itself (base64 of 32+ bytes): local runs and the CLI.
    pub const IDENTITY_KEY: &str = "RELAY_IDENTITY_KEY";
    /// The SecureString SSM parameter holding the identity key (Lambda).
    pub const IDENTITY_KEY_PARAMETER: &str = "RELAY_IDENTITY_KEY_PARAMETER";
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

/// The identity key (`store::identity`) from `RELAY_IDENTITY_KEY`, else from the SSM
/// parameter named by `RELAY_IDENTITY_KEY_PARAMETER`. Required: without it no ingest could
/// agree with another on who a contact is.
pub async fn identity_key_from_env(
    sdk: &aws_config::SdkConfig,
) -> Result<crate::store::IdentityKey, StartupError> {
    let text = match (
        optional(env::IDENTITY_KEY),
        optional(env::IDENTITY_KEY_PARAMETER),
    ) {
        (Some(key), _) => secrecy::SecretString::from(key),
        (None, Some(name)) => read_parameter(&aws_sdk_ssm::Client::new(sdk), &name).await?,
        (None, None) => return Err(StartupError::MissingEnv(env::IDENTITY_KEY_PARAMETER)),
    };
    crate::store::IdentityKey::from_base64(&text).map_err(|e| StartupError::Invalid(e.to_string()))
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

/// The mappings in the SSM parameter `RELAY_MAPPINGS_PARAMETER`, else the file named by
/// `RELAY_MAPPINGS`, else the built-in ones.
pub async fn mappings_from_env(ssm: &aws_sdk_ssm::Client) -> Result<Arc<Mappings>, StartupError> {
    if let Some(name) = optional(env::MAPPINGS_PARAMETER) {
        return Ok(Arc::new(mappings_from_parameter(ssm, &name).await?));
    }
    let path = optional(env::MAPPINGS).map(PathBuf::from);
    Ok(Arc::new(crate::assembly::load_mappings(path.as_deref())?))
}

/// The mapping file held by the SSM parameter `name` (`/path/name` or `/path/name:version`),
/// checked by the same loader as a file (`relay check-config --mappings-parameter` uses this).
pub async fn mappings_from_parameter(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<Mappings, StartupError> {
    let text = read_parameter(ssm, name).await?;
    Ok(Mappings::from_toml(
        &format!("ssm:{name}"),
        secrecy::ExposeSecret::expose_secret(&text),
    )?)
}

/// The largest value of an SSM parameter of the standard tier.
pub const SSM_STANDARD_MAX_BYTES: usize = 4 * 1024;
/// The largest value of an SSM parameter of the advanced tier.
pub const SSM_ADVANCED_MAX_BYTES: usize = 8 * 1024;

/// The SSM tier a value of `len` bytes needs: `Some("Standard")`, `Some("Advanced")`, or
/// `None` when it fits neither.
pub fn ssm_tier_for(len: usize) -> Option<&'static str> {
    if len <= SSM_STANDARD_MAX_BYTES {
        Some("Standard")
    } else if len <= SSM_ADVANCED_MAX_BYTES {
        Some("Advanced")
    } else {
        None
    }
}

/// The refresh policy of secrets parameters: `RELAY_SECRETS_REFRESH_SECS` (default 300) and
/// `RELAY_SECRETS_MIN_REFRESH_SECS` (default 30).
pub fn refresh_policy_from_env() -> Result<RefreshPolicy, StartupError> {
    let secs = |name: &'static str, default: Duration| match optional(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| StartupError::Invalid(format!("{name} must be a number of seconds"))),
    };
    Ok(RefreshPolicy {
        interval: secs(env::SECRETS_REFRESH_SECS, RefreshPolicy::DEFAULT.interval)?,
        min_forced_gap: secs(
            env::SECRETS_MIN_REFRESH_SECS,
            RefreshPolicy::DEFAULT.min_forced_gap,
        )?,
        read_timeout: RefreshPolicy::DEFAULT.read_timeout,
    })
}

/// The ingest secrets parameter, re-read per `policy`, as the verifiers of the sources on
/// `routes` (a function keeps no other source's secrets).
pub async fn refreshing_verifiers(
    source: Arc<dyn ParameterSource>,
    policy: RefreshPolicy,
    mappings: Arc<Mappings>,
    routes: &'static [Route],
) -> Result<Arc<RefreshingParameter<VerifierSet>>, StartupError> {
    let parameter = RefreshingParameter::load(source, policy, move |name, text| {
        let all = parse_source_secrets(name, text)?;
        VerifierSet::build(&mappings, &own_secrets(&mappings, routes, all)).map_err(|e| {
            SecretsError::Unusable {
                name: name.to_string(),
                message: e.to_string(),
            }
        })
    })
    .await?;
    Ok(Arc::new(parameter))
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
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mappings = mappings_from_env(&ssm).await?;
    // In Lambda the secrets parameter is re-read while running (rotation); locally, the
    // secrets come from the environment once.
    let mut refreshing = None;
    let secrets: SourceSecrets = match (function, optional(env::INGEST_SECRETS)) {
        (IngestFunction::Events, _) => SourceSecrets::new(),
        (IngestFunction::Webhooks(routes), Some(name)) => {
            refreshing = Some(
                refreshing_verifiers(
                    Arc::new(SsmParameter::new(ssm.clone(), name)),
                    refresh_policy_from_env()?,
                    mappings.clone(),
                    routes,
                )
                .await?,
            );
            SourceSecrets::new()
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
    let identity = crate::ingress::Identity {
        store: store.clone(),
        key: identity_key_from_env(&sdk).await?,
    };
    let queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url));
    let (mut ingest, mut disabled) = crate::assembly::build_ingest(
        mappings,
        &secrets,
        store.clone(),
        identity,
        queue,
        clock,
        Arc::new(crate::ingress::IngestMetrics::emf()),
    )?;
    if let Some(parameter) = refreshing {
        disabled = parameter.current().disabled.clone();
        ingest = ingest.with_verifiers(Verifiers::refreshing(parameter));
    }
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
/// `RELAY_<VENDOR>_BASE_URL` (each vendor's `VendorAdapter::BASE_URL_ENV`), the shared limiters and links in the table, and the queues.
pub async fn worker_from_env() -> Result<Arc<crate::worker::Worker>, StartupError> {
    use crate::worker::{Metrics, MetricsOutput, RetryPolicy};

    let table = required(env::TABLE)?;
    let queue_url = required(env::QUEUE_URL)?;
    let dlq_url = required(env::DLQ_URL)?;
    let secrets_name = required(env::VENDOR_SECRETS)?;
    let limiter_account = optional(env::LIMITER_ACCOUNT).unwrap_or_else(|| "default".into());
    let limits = limits_from(optional(env::LIMITS).as_deref())?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mappings = mappings_from_env(&ssm).await?;
    // Re-read on an interval and after a refused credential: a rotated vendor token is
    // used without a cold start.
    let settings = Arc::new(
        RefreshingParameter::load(
            Arc::new(SsmParameter::new(ssm.clone(), secrets_name)),
            refresh_policy_from_env()?,
            parse_vendor_settings,
        )
        .await?,
    );
    let configs = settings.current();

    let clock: Arc<dyn crate::store::Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, clock.clone())
        .with_journal_ttl(journal_ttl_from_env()?);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // Completing HubSpot changes from the CRM resolves persons as ingest does: with the
    // same table and identity key (read only when a reader is configured).
    let identity = match configs.hubspot_crm {
        Some(_) => Some(crate::store::identity::Identity {
            store: Arc::new(store.clone()),
            key: identity_key_from_env(&sdk).await?,
        }),
        None => None,
    };
    let enrichment =
        crate::assembly::build_enrichment(&mappings, &configs, identity, &store, &limiter_account)
            .map_err(|e| StartupError::Invalid(e.to_string()))?;
    let worker = crate::assembly::build_rotating_worker(
        crate::assembly::WorkerParts {
            mappings,
            vendors: &configs,
            links: Arc::new(store.clone()),
            limiter_store: &store,
            limiter_account: &limiter_account,
            limits: &|vendor| limits.params(vendor),
            queue: Arc::new(SqsQueue::new(sqs.clone(), queue_url)),
            dead_letters: Arc::new(SqsQueue::new(sqs, dlq_url)),
            clock,
            policy: RetryPolicy::default(),
            metrics: Arc::new(Metrics::new(MetricsOutput::Emf)),
        },
        settings,
    )
    .map_err(|e| StartupError::Invalid(e.to_string()))?
    .with_journal(Arc::new(store));
    let worker = match enrichment {
        Some(enrichment) => worker.with_enrichment(enrichment),
        None => worker,
    };
    Ok(Arc::new(worker))
}

/// The worker's limits from `RELAY_LIMITS` (JSON of [`crate::vendors::LimitsConfig`]);
/// unset or blank: the vendors' documented ones. Errors name the vendor and window.
pub fn limits_from(json: Option<&str>) -> Result<crate::vendors::Limits, StartupError> {
    let config = match json.map(str::trim).filter(|j| !j.is_empty()) {
        None => crate::vendors::LimitsConfig::default(),
        Some(json) => serde_json::from_str(json)
            .map_err(|e| StartupError::Invalid(format!("{}: {e}", env::LIMITS)))?,
    };
    config
        .resolve()
        .map_err(|e| StartupError::Invalid(format!("{}: {e}", env::LIMITS)))
}

/// The vendor settings parameter's JSON, with base URLs overridden from the environment
/// (`RELAY_<VENDOR>_BASE_URL`). Errors name the position, never the value.
pub fn parse_vendor_settings(
    name: &str,
    text: &str,
) -> Result<crate::worker::setup::VendorConfigs, SecretsError> {
    let mut configs: crate::worker::setup::VendorConfigs =
        serde_json::from_str(text).map_err(|e| SecretsError::Malformed {
            name: name.to_string(),
            position: format!("line {} column {}", e.line(), e.column()),
        })?;
    configs.override_base_urls(optional);
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendor_settings_may_hold_a_hubspot_crm_token_which_debug_output_hides() {
        let text = r#"{"hood": {"token": "hood-token"},
                       "hubspot_crm": {"token": "pat-na1-0e1b7c2d", "limits": [{"limit": 150, "per": "10s"}]}}"#;
        let configs = parse_vendor_settings("/relay/vendors", text).unwrap();
        let crm = configs.hubspot_crm.as_ref().unwrap();
        assert_eq!(crm.base_url, crate::enrich::hubspot::DEFAULT_BASE_URL);
        assert_eq!(crm.properties.len(), 7);
        assert_eq!(
            crm.windows().unwrap(),
            [crate::store::Window::new(
                150,
                std::time::Duration::from_secs(10)
            )]
        );
        assert!(!format!("{configs:?}").contains("pat-na1"));
        assert_eq!(
            configs.vendors(),
            [crate::vendors::Vendor::Hood],
            "not a vendor"
        );
        // A misspelt field is refused, as for the vendors.
        let typo = r#"{"hubspot_crm": {"token": "t", "propertys": ["email"]}}"#;
        assert!(parse_vendor_settings("/relay/vendors", typo).is_err());
    }

    #[test]
    fn the_worker_reads_its_limits_from_relay_limits_as_json() {
        use crate::store::GcraParams;
        use crate::vendors::{Limits, Vendor};
        assert_eq!(limits_from(None).unwrap(), Limits::default());
        assert_eq!(limits_from(Some("  ")).unwrap(), Limits::default());
        let limits = limits_from(Some(
            r#"{"hood": [{"limit": 10, "per": "1s"}, {"limit": 150, "per": "1m"}], "utilisation": 0.98}"#,
        ))
        .unwrap();
        assert_eq!(limits.params(Vendor::Hood), GcraParams::HOOD);
        let error = |json: &str| limits_from(Some(json)).unwrap_err().to_string();
        assert_eq!(
            error(r#"{"hood": [{"limit": 150, "per": "0m"}]}"#),
            "invalid configuration: RELAY_LIMITS: limits.hood: window 0: the period is zero"
        );
        assert!(
            error(r#"{"hood": 3}"#)
                .starts_with("invalid configuration: RELAY_LIMITS: invalid type")
        );
        assert!(error("{hood").starts_with("invalid configuration: RELAY_LIMITS:"));
    }

    #[test]
    fn the_base_url_variables_are_the_vendors_own() {
        use crate::vendors::VendorAdapter;
        use relay_core::vendors::omnivibe::Omnivibe;
        use relay_core::vendors::{channelio::Channelio, chatwoot::Chatwoot, hood::Hood};
        assert_eq!(env::HOOD_BASE_URL, Hood::BASE_URL_ENV);
        assert_eq!(env::CHANNELIO_BASE_URL, Channelio::BASE_URL_ENV);
        assert_eq!(env::OMNIVIBE_BASE_URL, Omnivibe::BASE_URL_ENV);
        assert_eq!(env::OMNIVIBE_BASE_URL, Chatwoot::BASE_URL_ENV);
    }
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
