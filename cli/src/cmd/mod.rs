//! One module per subcommand: its arguments (`Args`) and what it does (`run`).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use relay_shared::mapping::Mappings;

pub mod check_config;
pub mod demo;
pub mod dlq;
pub mod events;
pub mod plan;
pub mod replay;
pub mod send;
pub mod serve;

/// The mapping file at `path`, or the built-in mappings.
pub fn load_mappings(path: Option<&PathBuf>) -> Result<Mappings, relay_shared::mapping::LoadError> {
    relay_shared::assembly::load_mappings(path.map(PathBuf::as_path))
}

/// Which mappings a command uses: a relay config's, a mapping file, or the built-in ones.
#[derive(Debug, Clone, clap::Args)]
pub struct MappingsArgs {
    /// A relay config (TOML, as for `relay serve`): its `mappings` (and, for `send`, its
    /// secrets) are used.
    #[arg(long, conflicts_with = "mappings")]
    pub config: Option<PathBuf>,
    /// A mapping file (TOML); omit for the built-in mappings.
    #[arg(long)]
    pub mappings: Option<PathBuf>,
}

/// The mappings chosen by [`MappingsArgs`], with the config they came from (if any).
pub struct Chosen {
    pub mappings: Mappings,
    pub config: Option<relay_local::LocalConfig>,
}

impl MappingsArgs {
    pub fn load(&self) -> anyhow::Result<Chosen> {
        match (&self.config, &self.mappings) {
            (Some(path), _) => {
                let config = relay_local::LocalConfig::load(path)?;
                let mappings =
                    load_mappings(config.mappings.as_ref()).map_err(|e| anyhow!("{e}"))?;
                Ok(Chosen {
                    mappings,
                    config: Some(config),
                })
            }
            (None, path) => Ok(Chosen {
                mappings: load_mappings(path.as_ref()).map_err(|e| anyhow!("{e}"))?,
                config: None,
            }),
        }
    }
}

/// The payload in `path`, or the built-in sample of `source`.
pub fn payload(source: &str, path: Option<&Path>) -> anyhow::Result<String> {
    use anyhow::Context;
    match path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())),
        None => Ok(relay_sandbox::samples::sample(source)
            .with_context(|| format!("no built-in sample for `{source}`; pass --payload"))?
            .body
            .to_string()),
    }
}
