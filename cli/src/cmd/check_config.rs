//! `relay check-config`: validate a relay config or a mapping file.

use std::path::PathBuf;

use anyhow::{Context, anyhow};

use super::load_mappings;

/// Validate a relay config (with its mappings and secrets), a mapping file (with the
/// loader the Lambda functions use, and whether it fits an SSM parameter) or the mapping
/// file in a deployed SSM parameter; with none, the built-in mappings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A relay config file (TOML).
    pub config: Option<PathBuf>,
    /// A mapping file (TOML) instead of a relay config.
    #[arg(long, conflicts_with = "config")]
    pub mappings: Option<PathBuf>,
    /// The SSM parameter the stack's MappingsParameter names (`/name` or `/name:version`),
    /// read with the AWS credentials of the environment.
    #[arg(long, conflicts_with_all = ["config", "mappings"])]
    pub mappings_parameter: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match (&args.config, &args.mappings_parameter) {
        (Some(config), _) => check_relay_config(config),
        (None, Some(name)) => check_parameter(name),
        (None, None) => check_config(args.mappings.as_ref()),
    }
}

fn check_parameter(name: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mappings = rt.block_on(async {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        relay_shared::runtime::mappings_from_parameter(&aws_sdk_ssm::Client::new(&sdk), name).await
    })?;
    println!("ssm:{name}: OK");
    print_sources(&mappings);
    Ok(())
}

fn check_config(path: Option<&PathBuf>) -> anyhow::Result<()> {
    let mappings = load_mappings(path).map_err(|e| anyhow!("{e}"))?;
    let name = path.map_or_else(
        || relay_shared::mapping::BUILTIN_NAME.to_string(),
        |p| p.display().to_string(),
    );
    println!("{name}: OK");
    if let Some(path) = path {
        // What `aws ssm put-parameter --value file://...` will store (docs/mappings.md).
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        match relay_shared::runtime::ssm_tier_for(size) {
            Some("Standard") => {
                println!("  {size} bytes: fits an SSM parameter of the standard tier (4 KB)")
            }
            Some(tier) => println!(
                "  {size} bytes: needs an SSM parameter of the advanced tier (8 KB): put-parameter --tier {tier}"
            ),
            // Fine for `relay serve`; Lambda reads mappings from SSM only.
            None => eprintln!(
                "warning: {name}: {size} bytes is over the 8 KB an SSM parameter holds (advanced tier), so it cannot be deployed as MappingsParameter; remove comments or unused sources"
            ),
        }
    }
    print_sources(&mappings);
    Ok(())
}

fn print_sources(mappings: &relay_shared::mapping::Mappings) {
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
    problems.extend(vendor_problems(&config.vendors));
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
    if let Some(omnivibe) = &config.vendors.omnivibe {
        let staff: Vec<&str> = omnivibe.agents.iter().map(|a| a.staff_id.trim()).collect();
        println!(
            "  omnivibe agents (staff ids): {}; other staff ids are skipped (agent_not_configured)",
            staff.join(", ")
        );
    }
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

/// The vendor settings' problems, as the worker would refuse them at start-up: every
/// Omnivibe agent problem at once, then whatever building the other clients refuses.
fn vendor_problems(vendors: &relay_shared::vendors::VendorConfigs) -> Vec<String> {
    let mut problems: Vec<String> = vendors
        .omnivibe
        .as_ref()
        .map(|c| c.problems())
        .unwrap_or_default()
        .into_iter()
        .map(|p| format!("vendor omnivibe: {p}"))
        .collect();
    let mut others = vendors.clone();
    if !problems.is_empty() {
        others.omnivibe = None;
    }
    if let Err(e) = relay_shared::worker::setup::build_targets(
        &others,
        &relay_shared::vendors::sync::open_gate(),
    ) {
        problems.push(format!("vendor {e}"));
    }
    if let Some(crm) = &vendors.hubspot_crm {
        if let Err(e) = relay_shared::enrich::hubspot::HubspotCrm::new(crm) {
            problems.push(e.to_string());
        }
        if let Err(e) = crm.windows() {
            problems.push(e);
        }
    }
    problems
}
