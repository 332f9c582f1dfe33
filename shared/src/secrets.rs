//! Secrets: read at start-up, re-read while running.
//!
//! In Lambda each function reads ONE SSM SecureString parameter holding JSON (webhook
//! secrets for ingest, vendor credentials for the worker) with the SDK: a single
//! `GetParameter` round trip, on an SDK configuration the function loads anyway for
//! DynamoDB and SQS. The Parameters and Secrets Lambda extension would add a second process
//! to start in every cold start (its own init phase) plus a local HTTP hop, to serve reads
//! that are a few per hour.
//!
//! A rotated secret must work without recycling instances: [`RefreshingParameter`] keeps
//! the parsed value of one parameter and re-reads it when it is older than
//! [`RefreshPolicy::interval`] (checked when the value is used: a frozen Lambda instance
//! runs no timers) and, on demand, after a failure that a newer value could cure (a
//! signature that matches no secret, a vendor refusing a token), at most once per
//! [`RefreshPolicy::min_forced_gap`] so a flood of bad requests costs few SSM calls. A
//! re-read that fails or does not parse keeps the value in use. Where the parameter comes
//! from is the [`ParameterSource`] seam: [`SsmParameter`] in production, [`MemoryParameter`]
//! in tests.
//!
//! Locally, webhook secrets come from `RELAY_SECRET_<SOURCE>` environment variables
//! (comma-separated to accept several while rotating).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use secrecy::SecretString;
use serde::Deserialize;

/// Signing secrets per source name; several per source while rotating (current first).
pub type SourceSecrets = std::collections::HashMap<String, Vec<SecretString>>;

/// Why secrets could not be read. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("reading SSM parameter `{name}`: {message}")]
    Ssm { name: String, message: String },
    #[error("SSM parameter `{name}` has no value")]
    Empty { name: String },
    #[error("SSM parameter `{name}` is not the expected JSON ({position})")]
    Malformed { name: String, position: String },
    #[error("SSM parameter `{name}`: {message}")]
    Unusable { name: String, message: String },
}

/// One secret or several (rotation), as written in the JSON.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(SecretString),
    Many(Vec<SecretString>),
}

/// Parses `{"<source>": "secret" | ["current", "previous"], ...}`.
pub fn parse_source_secrets(name: &str, json: &str) -> Result<SourceSecrets, SecretsError> {
    let raw: HashMap<String, OneOrMany> =
        serde_json::from_str(json).map_err(|e| SecretsError::Malformed {
            name: name.to_string(),
            position: format!("line {} column {}", e.line(), e.column()),
        })?;
    Ok(raw
        .into_iter()
        .map(|(source, s)| {
            let list = match s {
                OneOrMany::One(one) => vec![one],
                OneOrMany::Many(many) => many,
            };
            (source, list)
        })
        .collect())
}

/// Reads a SecureString parameter's decrypted value.
pub async fn read_parameter(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<SecretString, SecretsError> {
    let out = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| SecretsError::Ssm {
            name: name.to_string(),
            message: aws_sdk_ssm::error::DisplayErrorContext(&e).to_string(),
        })?;
    out.parameter
        .and_then(|p| p.value)
        .map(SecretString::from)
        .ok_or_else(|| SecretsError::Empty {
            name: name.to_string(),
        })
}

/// Where a parameter's current value is read from.
#[async_trait]
pub trait ParameterSource: Send + Sync {
    /// The parameter's name, for errors and logs.
    fn name(&self) -> &str;
    /// Reads the current value.
    async fn read(&self) -> Result<SecretString, SecretsError>;
}

/// A SecureString (or String) parameter in SSM Parameter Store.
pub struct SsmParameter {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl SsmParameter {
    pub fn new(client: aws_sdk_ssm::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }
}

#[async_trait]
impl ParameterSource for SsmParameter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self) -> Result<SecretString, SecretsError> {
        read_parameter(&self.client, &self.name).await
    }
}

/// A parameter held in memory (tests, and callers that already hold the value); `set`
/// replaces it as `aws ssm put-parameter --overwrite` would.
pub struct MemoryParameter {
    name: String,
    value: Mutex<SecretString>,
    reads: std::sync::atomic::AtomicUsize,
}

impl MemoryParameter {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Mutex::new(SecretString::from(value.into())),
            reads: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Replaces the stored value.
    pub fn set(&self, value: impl Into<String>) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) =
            SecretString::from(value.into());
    }

    /// How many times the value was read.
    pub fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl ParameterSource for MemoryParameter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self) -> Result<SecretString, SecretsError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }
}

/// How often a [`RefreshingParameter`] re-reads its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// A value older than this is re-read before it is used.
    pub interval: Duration,
    /// An on-demand re-read (after a failure) happens at most once per this.
    pub min_forced_gap: Duration,
    /// How long one re-read may take before the value in use is kept.
    pub read_timeout: Duration,
}

impl RefreshPolicy {
    /// Re-read every 5 minutes, on demand at most every 30 s, a read bounded at 2 s.
    pub const DEFAULT: RefreshPolicy = RefreshPolicy {
        interval: Duration::from_secs(300),
        min_forced_gap: Duration::from_secs(30),
        read_timeout: Duration::from_secs(2),
    };

    /// Never re-read (a value fixed for the process's life, e.g. from a local config file).
    pub const NEVER: RefreshPolicy = RefreshPolicy {
        interval: Duration::MAX,
        min_forced_gap: Duration::MAX,
        read_timeout: Duration::from_secs(2),
    };
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a refresh attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Not read: the value is fresh enough, the on-demand budget is spent, or another
    /// caller is reading it right now.
    Skipped,
    /// Read; the value is the one in use.
    Unchanged,
    /// Read; a new value is in use.
    Updated,
    /// The read or the parse failed; the value in use is kept (logged, without the value).
    Failed,
}

type Parse<T> = dyn Fn(&str, &str) -> Result<T, SecretsError> + Send + Sync;

struct Current<T> {
    raw: SecretString,
    parsed: Arc<T>,
}

struct Timing {
    read_at: Instant,
    /// The wall-clock time of the same read: a frozen Lambda instance's monotonic clock may
    /// not advance while it is frozen, the wall clock is set right again when it thaws.
    read_at_wall: std::time::SystemTime,
    forced_at: Option<Instant>,
}

impl Timing {
    fn age_at_least(&self, interval: Duration) -> bool {
        let wall = std::time::SystemTime::now()
            .duration_since(self.read_at_wall)
            .unwrap_or(Duration::ZERO);
        Instant::now().saturating_duration_since(self.read_at) >= interval || wall >= interval
    }
}

/// One parameter's parsed value, re-read on an interval and on demand (see the module
/// docs). Cheap to read from many tasks at once: [`current`](Self::current) clones an `Arc`.
pub struct RefreshingParameter<T> {
    source: Arc<dyn ParameterSource>,
    parse: Box<Parse<T>>,
    policy: RefreshPolicy,
    current: RwLock<Current<T>>,
    timing: Mutex<Timing>,
    /// Held while a read is in flight, so concurrent callers do not read it again.
    reading: tokio::sync::Mutex<()>,
}

impl<T: Send + Sync + 'static> RefreshingParameter<T> {
    /// Reads and parses the parameter once (start-up: an error here stops the function).
    /// `parse` gets the parameter's name and its value; its error must not contain the value.
    pub async fn load(
        source: Arc<dyn ParameterSource>,
        policy: RefreshPolicy,
        parse: impl Fn(&str, &str) -> Result<T, SecretsError> + Send + Sync + 'static,
    ) -> Result<Self, SecretsError> {
        let raw = source.read().await?;
        let parsed = Arc::new(parse(source.name(), raw.expose_secret())?);
        Ok(Self {
            source,
            parse: Box::new(parse),
            policy,
            current: RwLock::new(Current { raw, parsed }),
            timing: Mutex::new(Timing {
                read_at: Instant::now(),
                read_at_wall: std::time::SystemTime::now(),
                forced_at: None,
            }),
            reading: tokio::sync::Mutex::new(()),
        })
    }

    /// The parameter's name.
    pub fn name(&self) -> &str {
        self.source.name()
    }

    /// The value in use.
    pub fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .parsed
            .clone()
    }

    /// Re-reads the parameter if the value in use is older than the interval.
    pub async fn refresh_if_due(&self) -> Refresh {
        let due = {
            let t = self.timing.lock().unwrap_or_else(PoisonError::into_inner);
            t.age_at_least(self.policy.interval)
        };
        if !due {
            return Refresh::Skipped;
        }
        self.read_now(false).await
    }

    /// Re-reads the parameter now, because something failed that a newer value could
    /// cure; at most once per [`RefreshPolicy::min_forced_gap`].
    pub async fn refresh_after_failure(&self) -> Refresh {
        let allowed = {
            let t = self.timing.lock().unwrap_or_else(PoisonError::into_inner);
            t.forced_at.is_none_or(|at| {
                Instant::now().saturating_duration_since(at) >= self.policy.min_forced_gap
            })
        };
        if !allowed {
            return Refresh::Skipped;
        }
        self.read_now(true).await
    }

    async fn read_now(&self, forced: bool) -> Refresh {
        // One read at a time; a caller arriving meanwhile uses the value in use.
        let Ok(_reading) = self.reading.try_lock() else {
            return Refresh::Skipped;
        };
        {
            let mut t = self.timing.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            // Counted as an attempt even if it fails: a failing SSM is not asked again
            // before the next interval (or on-demand gap).
            t.read_at = now;
            t.read_at_wall = std::time::SystemTime::now();
            if forced {
                t.forced_at = Some(now);
            }
        }
        let name = self.source.name();
        let raw = match tokio::time::timeout(self.policy.read_timeout, self.source.read()).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(error)) => {
                tracing::warn!(parameter = name, %error, "re-reading the parameter failed; keeping the value in use");
                return Refresh::Failed;
            }
            Err(_) => {
                tracing::warn!(
                    parameter = name,
                    "re-reading the parameter timed out; keeping the value in use"
                );
                return Refresh::Failed;
            }
        };
        let same = {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            current.raw.expose_secret() == raw.expose_secret()
        };
        if same {
            return Refresh::Unchanged;
        }
        match (self.parse)(name, raw.expose_secret()) {
            Ok(parsed) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Current {
                    raw,
                    parsed: Arc::new(parsed),
                };
                tracing::info!(
                    parameter = name,
                    forced,
                    "parameter changed; the new value is in use"
                );
                Refresh::Updated
            }
            Err(error) => {
                tracing::error!(parameter = name, %error, "the parameter's new value is unusable; keeping the value in use");
                Refresh::Failed
            }
        }
    }
}

/// Webhook secrets from `RELAY_SECRET_<SOURCE>` variables (source upper-cased, `-` → `_`).
pub fn source_secrets_from_env<'a>(sources: impl IntoIterator<Item = &'a str>) -> SourceSecrets {
    sources
        .into_iter()
        .filter_map(|source| {
            let var = format!(
                "RELAY_SECRET_{}",
                source.to_ascii_uppercase().replace('-', "_")
            );
            let value = std::env::var(&var).ok()?;
            let list: Vec<SecretString> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| SecretString::from(s.to_string()))
                .collect();
            (!list.is_empty()).then(|| (source.to_string(), list))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_several_secrets_per_source() {
        let s = parse_source_secrets("p", r#"{"typeform": "a", "tally": ["b", "c"]}"#).unwrap();
        assert_eq!(
            s["typeform"]
                .iter()
                .map(|x| x.expose_secret())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(
            s["tally"]
                .iter()
                .map(|x| x.expose_secret())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    fn parse_list(name: &str, text: &str) -> Result<Vec<String>, SecretsError> {
        let secrets = parse_source_secrets(name, text)?;
        Ok(secrets
            .get("typeform")
            .map(|l| l.iter().map(|s| s.expose_secret().to_string()).collect())
            .unwrap_or_default())
    }

    fn policy(interval: u64, gap: u64) -> RefreshPolicy {
        RefreshPolicy {
            interval: Duration::from_secs(interval),
            min_forced_gap: Duration::from_secs(gap),
            read_timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn re_reads_after_the_interval_only() {
        let source = Arc::new(MemoryParameter::new("/p", r#"{"typeform": "old"}"#));
        let p = RefreshingParameter::load(source.clone(), policy(300, 30), parse_list)
            .await
            .unwrap();
        assert_eq!(*p.current(), ["old"]);
        source.set(r#"{"typeform": ["old", "new"]}"#);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(p.refresh_if_due().await, Refresh::Skipped);
        assert_eq!(*p.current(), ["old"], "not re-read before the interval");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.refresh_if_due().await, Refresh::Updated);
        assert_eq!(*p.current(), ["old", "new"]);
        assert_eq!(p.refresh_if_due().await, Refresh::Skipped);
        assert_eq!(source.reads(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn on_demand_re_reads_are_rate_limited() {
        let source = Arc::new(MemoryParameter::new("/p", r#"{"typeform": "a"}"#));
        let p = RefreshingParameter::load(source.clone(), policy(300, 30), parse_list)
            .await
            .unwrap();
        assert_eq!(p.refresh_after_failure().await, Refresh::Unchanged);
        source.set(r#"{"typeform": "b"}"#);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(p.refresh_after_failure().await, Refresh::Skipped);
        assert_eq!(*p.current(), ["a"]);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.refresh_after_failure().await, Refresh::Updated);
        assert_eq!(*p.current(), ["b"]);
        assert_eq!(source.reads(), 3, "start-up, then two on-demand reads");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unusable_new_value_keeps_the_one_in_use() {
        let source = Arc::new(MemoryParameter::new("/p", r#"{"typeform": "a"}"#));
        let p = RefreshingParameter::load(source.clone(), policy(0, 0), parse_list)
            .await
            .unwrap();
        source.set(r#"{"typeform": "#);
        assert_eq!(p.refresh_if_due().await, Refresh::Failed);
        assert_eq!(*p.current(), ["a"]);
        source.set(r#"{"typeform": "c"}"#);
        assert_eq!(p.refresh_if_due().await, Refresh::Updated);
        assert_eq!(*p.current(), ["c"]);
    }

    #[tokio::test]
    async fn a_start_up_read_that_does_not_parse_is_an_error_without_the_value() {
        let source = Arc::new(MemoryParameter::new("/p", r#"{"typeform": "sekrit""#));
        let err = RefreshingParameter::load(source, RefreshPolicy::DEFAULT, parse_list)
            .await
            .err()
            .unwrap();
        assert!(!err.to_string().contains("sekrit"), "{err}");
    }

    #[test]
    fn malformed_json_names_the_parameter_not_the_content() {
        let err = parse_source_secrets("/relay/ingest", r#"{"typeform": "sekrit""#).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("/relay/ingest") && !shown.contains("sekrit"),
            "{shown}"
        );
    }
}
