//! `relay plan`: map a payload and print the vendor requests it would cause.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use relay_sandbox::samples;
use relay_shared::mapping::EventDefaults;
use relay_shared::plan::{PreviewContext, VendorState, preview};

use super::load_mappings;

/// Map a payload and print the vendor requests it would cause (nothing is sent).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source name, e.g. typeform, hubspot, app-contact.
    #[arg(long)]
    pub source: String,
    /// Payload file (JSON); omit for the source's built-in sample.
    #[arg(long)]
    pub payload: Option<PathBuf>,
    /// Mapping file (TOML); omit for the built-in mappings.
    #[arg(long)]
    pub mappings: Option<PathBuf>,
    /// Chatwoot account id used in request paths.
    #[arg(long, default_value_t = 1)]
    pub chatwoot_account: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    plan(
        &args.source,
        args.payload.as_ref(),
        args.mappings.as_ref(),
        args.chatwoot_account,
    )
}

fn plan(
    source: &str,
    payload: Option<&PathBuf>,
    mappings_path: Option<&PathBuf>,
    chatwoot_account: u64,
) -> anyhow::Result<()> {
    let mappings = load_mappings(mappings_path).map_err(|e| anyhow!("{e}"))?;
    let mapping = mappings
        .source(source)
        .with_context(|| format!("no source named `{source}` in the mappings"))?;
    let text = match payload {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => samples::sample(source)
            .with_context(|| format!("no built-in sample for `{source}`; pass --payload"))?
            .body
            .to_string(),
    };
    let body: serde_json::Value = serde_json::from_str(&text).context("the payload is not JSON")?;
    let defaults = EventDefaults {
        event_id: "local".into(),
        received_at: chrono::Utc::now(),
    };
    let changes = mapping.extract(&body, &defaults)?;
    let none = VendorState::default();
    let cx = PreviewContext {
        account_id: chatwoot_account,
    };
    for change in &changes {
        println!(
            "event {} ({:?}) contact #{}",
            change.event.key(),
            change.event.kind,
            &change.contact.key.hashed()[..12]
        );
        for vendor in &mapping.vendors {
            let requests =
                preview(*vendor, &mappings, change, &none, &cx).unwrap_or(Ok(Vec::new()));
            match requests {
                Ok(rs) if rs.is_empty() => println!("  {vendor}: no request"),
                Ok(rs) => {
                    for r in rs {
                        let body = r.body.map(|b| b.to_string()).unwrap_or_default();
                        println!("  {vendor}: {} {} {body}", r.method, r.path);
                    }
                }
                Err(e) => println!("  {vendor}: cannot plan: {e}"),
            }
        }
    }
    Ok(())
}
