//! Secrets, read once per cold start.
//!
//! In Lambda each function reads ONE SSM SecureString parameter holding JSON (webhook
//! secrets for ingest, vendor credentials for the worker) with the SDK: a single
//! `GetParameter` round trip, on an SDK configuration the function loads anyway for
//! DynamoDB and SQS. The Parameters and Secrets Lambda extension would add a second process
//! to start in every cold start (its own init phase) plus a local HTTP hop, to serve one
//! read; its cache only pays off for repeated reads, and we read once per cold start.
//!
//! Locally, webhook secrets come from `RELAY_SECRET_<SOURCE>` environment variables
//! (comma-separated to accept several while rotating).

use std::collections::HashMap;

use secrecy::SecretString;
use serde::Deserialize;

use crate::ingress::SourceSecrets;

/// Why secrets could not be read. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("reading SSM parameter `{name}`: {message}")]
    Ssm { name: String, message: String },
    #[error("SSM parameter `{name}` has no value")]
    Empty { name: String },
    #[error("SSM parameter `{name}` is not the expected JSON ({position})")]
    Malformed { name: String, position: String },
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
    use secrecy::ExposeSecret;

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
