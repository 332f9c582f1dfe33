//! `relay check-config`: validate a relay config or a mapping file.

use std::path::PathBuf;

use anyhow::anyhow;

use super::load_mappings;

/// Validate a relay config (with its mappings and secrets) or a mapping file; with
/// neither, the built-in mappings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A relay config file (TOML).
    pub config: Option<PathBuf>,
    /// A mapping file (TOML) instead of a relay config.
    #[arg(long, conflicts_with = "config")]
    pub mappings: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.config {
        Some(config) => check_relay_config(config),
        None => check_config(args.mappings.as_ref()),
    }
}

fn check_config(path: Option<&PathBuf>) -> anyhow::Result<()> {
    let mappings = load_mappings(path).map_err(|e| anyhow!("{e}"))?;
    let name = path.map_or_else(
        || relay_shared::mapping::BUILTIN_NAME.to_string(),
        |p| p.display().to_string(),
    );
    println!("{name}: OK");
    for s in mappings.sources() {
        let vendors: Vec<&str> = s.vendors.iter().map(|v| v.as_str()).collect();
        let route = match (&s.route, &s.detail_type) {
            (_, Some(dt)) => format!("EventBridge detail-type {dt}"),
            (r, None) => format!(
                "POST /hooks/{}/{}",
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                s.name
            ),
        };
        println!(
            "  source {:<12} {:<40} -> {}",
            s.name,
            route,
            vendors.join(", ")
        );
    }
    Ok(())
}

fn check_relay_config(path: &std::path::Path) -> anyhow::Result<()> {
    use relay_shared::ingress::signature::Verifier;

    let config = relay_local::LocalConfig::load(path)?;
    let mappings = load_mappings(config.mappings.as_ref()).map_err(|e| anyhow!("{e}"))?;
    let mut problems = Vec::new();
    for (name, section) in &config.sources {
        match mappings.source(name).and_then(|s| s.signature.as_ref()) {
            Some(scheme) => {
                if let Err(e) = Verifier::new(scheme, &section.secrets) {
                    problems.push(format!("source `{name}`: {e}"));
                }
            }
            None => problems.push(format!(
                "source `{name}`: no webhook source of that name in the mappings"
            )),
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "{}: {} problem(s):\n  {}",
            path.display(),
            problems.len(),
            problems.join("\n  ")
        );
    }
    println!("{}: OK", path.display());
    let vendors: Vec<&str> = config
        .vendors
        .vendors()
        .iter()
        .map(|v| v.as_str())
        .collect();
    println!(
        "  listens on {}; vendors: {}",
        config.server.listen,
        vendors.join(", ")
    );
    for s in mappings.sources() {
        let state = if s.signature.is_none() {
            "EventBridge"
        } else if config.sources.contains_key(&s.name) {
            "enabled"
        } else {
            "no secret: disabled"
        };
        println!("  source {:<12} {state}", s.name);
    }
    Ok(())
}
