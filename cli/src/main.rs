//! `relay`: profile-relay on one machine.
//!
//! - `relay check-config [--mappings FILE]` validates a mapping file and lists its sources.
//! - `relay plan --source NAME [--payload FILE]` maps a payload (the built-in sample of the
//!   source by default) and prints the exact vendor requests it would cause.
//! - `relay replay --dead-letter-queue URL --queue URL` moves dead-lettered deliveries back
//!   after a fix, with a progress bar.

// A command-line tool: printing to stdout is its job.
#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use relay_shared::mapping::{EventDefaults, Mappings};
use relay_shared::plan::{
    PlannedRequest, VendorState, plan_channelio, plan_chatwoot, plan_hood, plan_omnivibe,
};
use relay_shared::samples;
use relay_shared::vendors::Vendor;

/// profile-relay on one machine.
#[derive(Debug, Parser)]
#[command(name = "relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a mapping file (the built-in one by default) and list its sources.
    CheckConfig {
        /// Mapping file (TOML); omit for the built-in mappings.
        #[arg(long)]
        mappings: Option<PathBuf>,
    },
    /// Map a payload and print the vendor requests it would cause (nothing is sent).
    Plan {
        /// Source name, e.g. typeform, hubspot, app-contact.
        #[arg(long)]
        source: String,
        /// Payload file (JSON); omit for the source's built-in sample.
        #[arg(long)]
        payload: Option<PathBuf>,
        /// Mapping file (TOML); omit for the built-in mappings.
        #[arg(long)]
        mappings: Option<PathBuf>,
        /// Chatwoot account id used in request paths.
        #[arg(long, default_value_t = 1)]
        chatwoot_account: u64,
    },
    /// Move dead-lettered deliveries back to the delivery queue (after fixing their cause).
    /// Safe to repeat: a delivery already applied is recognised by the worker.
    Replay {
        /// URL of the dead-letter queue (stack output DeadLetterQueueUrl).
        #[arg(long, env = "RELAY_DLQ_URL")]
        dead_letter_queue: String,
        /// URL of the delivery queue (stack output DeliveryQueueUrl).
        #[arg(long, env = "RELAY_QUEUE_URL")]
        queue: String,
        /// Move at most this many.
        #[arg(long)]
        max: Option<usize>,
    },
}

fn load_mappings(path: Option<&PathBuf>) -> Result<Mappings, relay_shared::mapping::LoadError> {
    match path {
        Some(p) => Mappings::load(p),
        None => Mappings::builtin(),
    }
}

fn main() -> ExitCode {
    relay_shared::telemetry::init(relay_shared::telemetry::LogFormat::Pretty);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { mappings } => check_config(mappings.as_ref()),
        Command::Plan {
            source,
            payload,
            mappings,
            chatwoot_account,
        } => plan(
            &source,
            payload.as_ref(),
            mappings.as_ref(),
            chatwoot_account,
        ),
        Command::Replay {
            dead_letter_queue,
            queue,
            max,
        } => runtime().and_then(|rt| rt.block_on(replay(dead_letter_queue, queue, max))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
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
    for change in &changes {
        println!(
            "event {} ({:?}) contact #{}",
            change.event.key(),
            change.event.kind,
            &change.contact.key.hashed()[..12]
        );
        for vendor in &mapping.vendors {
            let requests: Result<Vec<PlannedRequest>, _> = match vendor {
                Vendor::Hood => mappings.vendors.hood.as_ref().map(|m| {
                    plan_hood(change, &none, m, &BTreeSet::new()).map(|p| p.plan.requests())
                }),
                Vendor::Channelio => mappings
                    .vendors
                    .channelio
                    .as_ref()
                    .map(|m| plan_channelio(change, &none, m).map(|p| p.plan.requests())),
                Vendor::Omnivibe => mappings
                    .vendors
                    .omnivibe
                    .as_ref()
                    .map(|m| plan_omnivibe(change, &none, m).map(|p| p.plan.requests())),
                Vendor::Chatwoot => mappings.vendors.chatwoot.as_ref().map(|m| {
                    plan_chatwoot(change, &none, m).map(|p| p.plan.requests(chatwoot_account))
                }),
            }
            .unwrap_or(Ok(Vec::new()));
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn replay(
    dead_letter_queue: String,
    queue: String,
    max: Option<usize>,
) -> anyhow::Result<()> {
    use relay_shared::queue::sqs::SqsQueue;

    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (from, to) = (
        SqsQueue::new(sqs.clone(), dead_letter_queue),
        SqsQueue::new(sqs, queue),
    );
    let bar = match max {
        Some(n) => indicatif::ProgressBar::new(u64::try_from(n).unwrap_or(u64::MAX)),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} replayed {wide_bar} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = relay_shared::replay::redrive(&from, &to, max, |moved| {
        bar.set_position(u64::try_from(moved).unwrap_or(u64::MAX));
    })
    .await?;
    bar.finish_and_clear();
    println!("replayed {} message(s)", report.moved);
    for (reason, count) in &report.reasons {
        println!("  {count:>5}  {reason}");
    }
    Ok(())
}
