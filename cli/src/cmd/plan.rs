//! `relay plan`: map a payload and print the vendor requests it would cause.

use std::path::PathBuf;

use anyhow::Context;
use relay_shared::mapping::{EventDefaults, Mappings};
use relay_shared::plan::{PreviewContext, VendorState, preview};

use super::{MappingsArgs, payload};

/// Map a payload and print the vendor requests it would cause (nothing is sent).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source name, e.g. typeform, hubspot, app-contact.
    #[arg(long)]
    pub source: String,
    /// Payload file (JSON); omit for the source's built-in sample.
    #[arg(long)]
    pub payload: Option<PathBuf>,
    #[command(flatten)]
    pub mappings: MappingsArgs,
    /// Chatwoot account id used in request paths.
    #[arg(long, default_value_t = 1)]
    pub chatwoot_account: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mappings = args.mappings.load()?.mappings;
    plan(
        &mappings,
        &args.source,
        args.payload.as_deref(),
        args.chatwoot_account,
    )
}

fn plan(
    mappings: &Mappings,
    source: &str,
    payload_path: Option<&std::path::Path>,
    chatwoot_account: u64,
) -> anyhow::Result<()> {
    let mapping = mappings
        .source(source)
        .with_context(|| format!("no source named `{source}` in the mappings"))?;
    let text = payload(source, payload_path)?;
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
    // A preview resolves no identity: every change stands for a new person, shown with a
    // placeholder id (the running relay's ids are UUIDv7s).
    let preview_person = relay_shared::model::PersonId::from_uuid_bytes([0; 16]);
    for change in &changes {
        let mut change = change.clone();
        change.contact.person = Some(preview_person.clone());
        let change = &change;
        println!(
            "event {} ({:?}) contact #{}",
            change.event.key(),
            change.event.kind,
            &change.contact.key.hashed()[..12]
        );
        for vendor in &mapping.vendors {
            let requests = preview(*vendor, mappings, change, &none, &cx).unwrap_or(Ok(Vec::new()));
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
