//! `relay replay`: move dead-lettered deliveries back to the delivery queue — as they are,
//! or (`--remap`) mapped again from the kept raw event with the current mappings, so a
//! corrected mapping reaches them; `--from events` recovers the event-sync failure queue.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use relay_shared::queue::sqs::SqsQueue;
use relay_shared::replay::{DeadLetterFilter, Mode, Remap, Replayed};
use relay_shared::store::SystemClock;
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::vendors::Vendor;

/// Which failure queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// The delivery dead-letter queue (stack output DeadLetterQueueUrl).
    Deliveries,
    /// The event-sync failure queue (EventBridge's target DLQ, stack output
    /// EventSyncFailureQueueUrl): its events are ingested again.
    Events,
}

/// Move dead-lettered deliveries back to the delivery queue (after fixing their cause).
/// Safe to repeat: a delivery already applied is recognised by the worker.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// URL of the failure queue to replay from (DeadLetterQueueUrl, or with `--from events`
    /// EventSyncFailureQueueUrl).
    #[arg(long, env = "RELAY_DLQ_URL")]
    pub dead_letter_queue: String,
    /// URL of the delivery queue (stack output QueueUrl).
    #[arg(long, env = "RELAY_QUEUE_URL")]
    pub queue: String,
    /// Which failure queue `--dead-letter-queue` is.
    #[arg(long, value_enum, default_value = "deliveries")]
    pub from: From,
    /// Map each delivery again from its kept raw event with the current mappings (needs
    /// `--table` and the raw-event key in RELAY_RAW_KEY or RELAY_RAW_KEY_PARAMETER).
    /// Letters without a kept raw event are left in the queue and counted.
    #[arg(long)]
    pub remap: bool,
    /// The mapping file to map with (`--remap`, `--from events`); default: RELAY_MAPPINGS,
    /// else the built-in mappings.
    #[arg(long, env = "RELAY_MAPPINGS")]
    pub mappings: Option<PathBuf>,
    /// The stack's table (stack output TableName), for `--remap` and `--from events`.
    #[arg(long, env = "RELAY_TABLE")]
    pub table: Option<String>,
    /// Only deliveries to this vendor.
    #[arg(long)]
    pub vendor: Option<Vendor>,
    /// Only letters whose reason contains this text (as `relay dlq list` shows it).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only letters dead-lettered since: `30m`, `6h`, `2d` back, or an RFC 3339 time.
    #[arg(long, value_parser = super::events::parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Say what would be replayed; send and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move at most this many.
    #[arg(long)]
    pub max: Option<usize>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (from, to) = (
        SqsQueue::new(sqs.clone(), args.dead_letter_queue.clone()),
        SqsQueue::new(sqs, args.queue.clone()),
    );
    let filter = DeadLetterFilter {
        vendor: args.vendor,
        reason: args.reason.clone(),
        since: args.since,
        message_id: None,
    };
    let plain = !args.remap
        && args.from == From::Deliveries
        && !args.dry_run
        && filter == DeadLetterFilter::default();
    if plain {
        return redrive(&from, &to, args.max).await;
    }
    let store = || -> anyhow::Result<DynamoStore> {
        let Some(table) = &args.table else {
            bail!("--table (or RELAY_TABLE) is needed to map events again");
        };
        Ok(DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(dynamodb_config(&sdk)),
            table.clone(),
            Arc::new(SystemClock),
        ))
    };
    let report = match (args.from, args.remap) {
        (From::Deliveries, false) => {
            relay_shared::replay::replay(
                &from,
                &to,
                &Mode::Redrive,
                &filter,
                args.max,
                args.dry_run,
            )
            .await?
        }
        (From::Deliveries, true) => {
            let mappings = super::load_mappings(args.mappings.as_ref())?;
            let key = relay_shared::runtime::raw_key_from_env(&sdk)
                .await?
                .context("the raw-event key is needed to map events again: set RELAY_RAW_KEY (base64 of 32 bytes) or RELAY_RAW_KEY_PARAMETER (its SSM parameter)")?;
            let journal = store()?;
            let mode = Mode::Remap(Remap {
                mappings: &mappings,
                journal: &journal,
                key: &key,
            });
            relay_shared::replay::replay(&from, &to, &mode, &filter, args.max, args.dry_run).await?
        }
        (From::Events, _) => {
            let mappings = Arc::new(super::load_mappings(args.mappings.as_ref())?);
            let store = Arc::new(store()?);
            let key = relay_shared::runtime::raw_key_from_env(&sdk).await?;
            let clock = Arc::new(SystemClock);
            let (ingest, _) = relay_shared::ingress::Ingest::new(
                mappings,
                &relay_shared::ingress::SourceSecrets::new(),
                store.clone(),
                relay_shared::ingress::Identity {
                    store: store.clone(),
                    key: relay_shared::runtime::identity_key_from_env(&sdk).await?,
                },
                Arc::new(to),
                clock,
            )?;
            let ingest =
                ingest.with_recording(relay_shared::ingress::ingest::Recording::new(store, key));
            relay_shared::replay::reingest_events(&from, &ingest, &filter, args.max, args.dry_run)
                .await?
        }
    };
    print!("{}", describe(&report, args.from));
    Ok(())
}

/// The DynamoDB client configuration of the usual chain, pointed at `DYNAMODB_ENDPOINT`
/// when set.
fn dynamodb_config(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Config {
    let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(endpoint) = std::env::var("DYNAMODB_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
    {
        config = config.endpoint_url(endpoint);
    }
    config.build()
}

/// The report for people.
pub fn describe(report: &Replayed, from: From) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verb = if report.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    let how = match from {
        From::Events => "ingested again with the current mappings".to_owned(),
        From::Deliveries if report.remapped > 0 => {
            format!("{} mapped again from the kept raw event", report.remapped)
        }
        From::Deliveries => "as they were".to_owned(),
    };
    let _ = writeln!(out, "{verb} {} message(s) ({how})", report.moved);
    for (reason, count) in &report.reasons {
        let _ = writeln!(out, "  {count:>5}  {reason}");
    }
    if !report.left.is_empty() {
        let _ = writeln!(out, "left in the queue:");
        for (why, count) in &report.left {
            let _ = writeln!(out, "  {count:>5}  {why}");
        }
    }
    if report.filtered_out > 0 {
        let _ = writeln!(
            out,
            "{} not matching the filters, left as they were",
            report.filtered_out
        );
    }
    out
}

async fn redrive(from: &SqsQueue, to: &SqsQueue, max: Option<usize>) -> anyhow::Result<()> {
    let bar = match max {
        Some(n) => indicatif::ProgressBar::new(u64::try_from(n).unwrap_or(u64::MAX)),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} replayed {wide_bar} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = relay_shared::replay::redrive(from, to, max, |moved| {
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
