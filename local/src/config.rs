//! The local relay's config file (`relay.toml`; see `relay.example.toml`): where to
//! listen, which mappings, the signing secrets of each source and the vendor connections.
//! `${NAME}` anywhere in the file is replaced by the environment variable `NAME`, so secrets
//! can stay out of the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use relay_shared::ingress::SourceSecrets;
use relay_shared::vendors::{Limits, LimitsConfig};
use relay_shared::worker::setup::VendorConfigs;

/// Why a config file could not be used. Never contains a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: `${{{name}}}` is used but the environment variable {name} is not set")]
    MissingVariable { file: String, name: String },
    #[error("{file}: unterminated `${{` at line {line}")]
    Unterminated { file: String, line: usize },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    #[serde(default)]
    pub server: ServerSection,
    /// A mapping file (relative to the config file); the built-in mappings when absent.
    #[serde(default)]
    pub mappings: Option<PathBuf>,
    /// Signing secrets per source name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSection>,
    /// Vendor connections; a vendor left out is not synced.
    #[serde(default)]
    pub vendors: VendorConfigs,
    #[serde(default)]
    pub worker: WorkerSection,
    /// Each vendor's rate limits as windows, and how they become a schedule; a vendor left
    /// out keeps its documented limits.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where `relay serve` keeps its store and queue (relative to the config file);
    /// [`DEFAULT_DATA_DIR`] beside the config file when absent. Unused with `--memory`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            data_dir: None,
        }
    }
}

/// The data directory when the config names none, beside the config file.
pub const DEFAULT_DATA_DIR: &str = ".relay";

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}

/// `[sources.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// The current secret first, then any still accepted while rotating.
    pub secrets: Vec<SecretString>,
}

/// `[worker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// Batches processed at once.
    #[serde(default = "default_loops")]
    pub concurrency: usize,
    /// How long Ctrl-C waits for queued deliveries before exiting.
    #[serde(default = "default_drain")]
    pub drain_timeout_secs: u64,
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            concurrency: default_loops(),
            drain_timeout_secs: default_drain(),
        }
    }
}

fn default_loops() -> usize {
    4
}

fn default_drain() -> u64 {
    30
}

impl LocalConfig {
    /// Reads `path`, interpolating `${NAME}` from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: file.clone(),
            error,
        })?;
        let mut config = Self::parse(&file, &text, |name| std::env::var(name).ok())?;
        let dir = path.parent().unwrap_or(Path::new(""));
        if let Some(mappings) = &config.mappings
            && mappings.is_relative()
        {
            config.mappings = Some(dir.join(mappings));
        }
        let data_dir = config
            .server
            .data_dir
            .take()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        config.server.data_dir = Some(if data_dir.is_relative() {
            dir.join(data_dir)
        } else {
            data_dir
        });
        Ok(config)
    }

    /// Parses config text; `env` resolves `${NAME}`.
    pub fn parse(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = interpolate(file, text, env)?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        config.limits.resolve().map_err(|e| ConfigError::Invalid {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        Ok(config)
    }

    /// Each vendor's limits ([`Self::parse`] has checked they resolve).
    pub fn vendor_limits(&self) -> Result<Limits, relay_shared::vendors::LimitsConfigError> {
        self.limits.resolve()
    }

    /// The signing secrets, as ingest takes them.
    pub fn source_secrets(&self) -> SourceSecrets {
        self.sources
            .iter()
            .map(|(name, s)| (name.clone(), s.secrets.clone()))
            .collect()
    }
}

/// Replaces every `${NAME}` outside comment lines; `$${` stands for a literal `${`.
pub fn interpolate(
    file: &str,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(&interpolate_line(file, index + 1, line, &env)?);
        }
    }
    Ok(out)
}

fn interpolate_line(
    file: &str,
    line_number: usize,
    text: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 && rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::Unterminated {
                file: file.to_string(),
                line: line_number,
            });
        };
        let name = &after[..end];
        let value = env(name).ok_or_else(|| ConfigError::MissingVariable {
            file: file.to_string(),
            name: name.to_string(),
        })?;
        // Values land inside TOML strings: escape what would end or break them.
        out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("t0k\"en".into()),
            "KEY" => Some("k1".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_are_interpolated_and_escaped() {
        let text = "# ${NOT_SET} in a comment\na = \"${TOKEN}\"\nb = \"x-${KEY}-y\"\nc = \"$${LITERAL}\"\n";
        assert_eq!(
            interpolate("f", text, env).unwrap(),
            "# ${NOT_SET} in a comment\na = \"t0k\\\"en\"\nb = \"x-k1-y\"\nc = \"${LITERAL}\"\n"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = interpolate("relay.toml", "a = \"${HOOD_TOKEN}\"", env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "relay.toml: `${HOOD_TOKEN}` is used but the environment variable HOOD_TOKEN is not set"
        );
        assert!(matches!(
            interpolate("f", "x\ny = \"${OPEN", env),
            Err(ConfigError::Unterminated { line: 2, .. })
        ));
    }

    #[test]
    fn the_data_directory_is_beside_the_config_file_unless_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "[server]\n").unwrap();
        let config = LocalConfig::load(&file).unwrap();
        assert_eq!(config.server.data_dir, Some(dir.path().join(".relay")));
        std::fs::write(&file, "[server]\ndata_dir = \"state\"\n").unwrap();
        let config = LocalConfig::load(&file).unwrap();
        assert_eq!(config.server.data_dir, Some(dir.path().join("state")));
        std::fs::write(&file, "[server]\ndata_dir = \"/var/lib/relay\"\n").unwrap();
        let config = LocalConfig::load(&file).unwrap();
        assert_eq!(
            config.server.data_dir,
            Some(PathBuf::from("/var/lib/relay"))
        );
    }

    #[test]
    fn the_example_config_parses_with_its_variables_set() {
        let text = include_str!("../../relay.example.toml");
        let config = LocalConfig::parse("relay.example.toml", text, |name| {
            Some(format!("value-of-{name}"))
        })
        .unwrap();
        assert_eq!(config.vendors.vendors().len(), 4);
        assert_eq!(config.sources.len(), 6);
        assert_eq!(config.server.listen.port(), 8787);
        assert_eq!(config.server.data_dir, Some(PathBuf::from(".relay")));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("value-of-HOOD_TOKEN"),
            "secrets are redacted in Debug"
        );
        // The example's limits are the documented ones, spelled out.
        let limits = config.vendor_limits().unwrap();
        assert_eq!(limits, relay_shared::vendors::Limits::default());
        let uncommented = text.replace("# hood = [", "hood = [");
        let config = LocalConfig::parse("relay.example.toml", &uncommented, |name| {
            Some(format!("value-of-{name}"))
        })
        .unwrap();
        assert_eq!(config.vendor_limits().unwrap(), limits);
    }

    #[test]
    fn limits_are_windows_per_vendor_with_clear_errors() {
        use relay_shared::store::{GcraParams, Window};
        use relay_shared::vendors::Vendor;
        use std::time::Duration;
        let parse =
            |limits: &str| LocalConfig::parse("relay.toml", &format!("[limits]\n{limits}\n"), env);
        // A stricter Hood account: 5 per second, 100 per minute; the others untouched.
        let config =
            parse(r#"hood = [{ limit = 5, per = "1s" }, { limit = 100, per = "1 min" }]"#).unwrap();
        let limits = config.vendor_limits().unwrap();
        assert_eq!(
            limits.windows(Vendor::Hood),
            [
                Window::new(5, Duration::from_secs(1)),
                Window::new(100, Duration::from_secs(60))
            ]
        );
        // T = ⌈60 000 / (0.98 × 100)⌉ = 613; tau = min(5·613 − 1000, 100·613 − 60 000) − 250.
        assert_eq!(
            limits.params(Vendor::Hood),
            GcraParams {
                emission_interval: Duration::from_millis(613),
                tolerance: Duration::from_millis(1_050),
            }
        );
        assert_eq!(
            limits.params(Vendor::Chatwoot),
            relay_shared::vendors::default_limits(Vendor::Chatwoot)
        );
        let pacing = parse("utilisation = 1.0\nmargin = \"0ms\"").unwrap();
        assert_eq!(
            pacing.vendor_limits().unwrap().params(Vendor::Hood),
            GcraParams {
                emission_interval: Duration::from_millis(400),
                tolerance: Duration::from_millis(0),
            }
        );
        let error = |limits: &str| parse(limits).unwrap_err().to_string();
        assert_eq!(
            error(r#"hood = [{ limit = 0, per = "1s" }]"#),
            "relay.toml: limits.hood: window 0: the limit is zero, so no call could ever go"
        );
        assert_eq!(
            error(r#"channelio = [{ limit = 10, per = "1s" }, { limit = 5, per = "0s" }]"#),
            "relay.toml: limits.channelio: window 1: the period is zero"
        );
        let bad = error(r#"hood = [{ limit = 10, per = "a second" }]"#);
        assert!(
            bad.starts_with("relay.toml: limits.hood: window 0: `a second` is not a duration"),
            "{bad}"
        );
        assert!(error("hood = []").contains("limits.hood: no windows"));
        assert!(error("utilisation = 1.5").contains("limits: utilisation 1.5 is not in (0, 1]"));
        assert!(error("margin = \"soon\"").contains("limits: margin: `soon` is not a duration"));
        assert!(error(r#"hood = [{ limit = -1, per = "1s" }]"#).contains("limit"));
        assert!(
            error(r#"mailchimp = [{ limit = 1, per = "1s" }]"#)
                .contains("unknown field `mailchimp`")
        );
        assert!(
            error(r#"hood = [{ limit = 1, per = "1s", burst = 3 }]"#)
                .contains("unknown field `burst`")
        );
    }
}
