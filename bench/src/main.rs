//! `relay-bench`: measures the relay on this machine and prints the numbers — ingest
//! latency and DynamoDB calls per event, the DynamoDB cost of a synced event, the shared
//! rate limiter against Hood's limits, and the Lambda binaries' cold starts.
//!
//! ```sh
//! cargo run --release -p relay-bench -- --json > bench.json   # table on stderr
//! cargo run --release -p relay-bench -- --only limiter --limiter-seconds 30
//! ```
//!
//! Numbers, not assertions: the run never fails because a goal is missed; the report says
//! which goals were met. See `docs/performance.md`.

mod coldstart;
mod dynamo;
mod ingest;
mod limiter;
mod report;
mod stats;
mod sync;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, ValueEnum};

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Ingest latency and DynamoDB calls, and the DynamoDB cost of a synced event.
    Ingest,
    /// The shared rate limiter under contention, against Hood's limits.
    Limiter,
    /// Cold starts of the four Lambda binaries.
    Coldstart,
}

#[derive(Debug, Parser)]
#[command(
    name = "relay-bench",
    about = "Benchmarks of profile-relay (numbers, not tests)"
)]
struct Cli {
    /// Print one JSON document on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Run only these parts (repeat or comma-separate); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Events per ingest phase (first deliveries, then the same again as duplicates).
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Ingest requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Untimed warm-up events before the ingest phases.
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    /// Contacts synced through the worker to count a synced event's DynamoDB calls.
    #[arg(long, default_value_t = 10)]
    sync_contacts: usize,
    /// How long the limiter workers run.
    #[arg(long, default_value_t = 130)]
    limiter_seconds: u64,
    /// Concurrent limiter workers (each its own limiter handle, as separate instances).
    #[arg(long, default_value_t = 32)]
    limiter_workers: usize,
    /// Longest a limiter worker books a permit ahead, in ms (default: the worker's
    /// `MAX_SLOT_WAIT`); to explore how it trades DynamoDB writes against waiting.
    #[arg(long)]
    limiter_slot_wait_ms: Option<u64>,
    /// Starts of each Lambda binary.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where the release Lambda binaries are (default: beside this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Do not run `cargo build --release` for the Lambda binaries first.
    #[arg(long)]
    no_build: bool,
}

impl Cli {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(report) => {
            let table = report::render(&report);
            let written = if cli.json {
                eprint!("{table}");
                serde_json::to_string_pretty(&report)
                    .context("serialising the report")
                    .and_then(|json| Ok(writeln!(std::io::stdout(), "{json}")?))
            } else {
                write!(std::io::stdout(), "{table}").map_err(anyhow::Error::from)
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("relay-bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("relay-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<report::Report> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let load_start = load_average();
    let bin_dir = match &cli.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .parent()
            .context("this executable has no directory")?
            .to_path_buf(),
    };

    let local = tokio::task::spawn_blocking(dynamo::Local::start)
        .await
        .context("starting DynamoDB Local")??;
    let endpoint = local.endpoint.clone();
    eprintln!(
        "DynamoDB: {endpoint}{}",
        if local.owned() {
            " (DynamoDB Local, in memory, started for this run)"
        } else {
            " (DYNAMODB_ENDPOINT)"
        }
    );

    let mut durations = std::collections::BTreeMap::new();
    let mut ingest = None;
    let mut sync = None;
    if cli.runs(Part::Ingest) {
        let part = Instant::now();
        eprintln!(
            "ingest: {} warm-up + 2 × {} events, {} in flight …",
            cli.warmup, cli.events, cli.concurrency
        );
        ingest = Some(
            ingest::run(
                &endpoint,
                ingest::Options {
                    events: cli.events,
                    concurrency: cli.concurrency,
                    warmup: cli.warmup,
                },
            )
            .await
            .context("ingest bench")?,
        );
        eprintln!(
            "sync: {} contacts through the worker (Hood at its production schedule) …",
            cli.sync_contacts
        );
        sync = Some(
            sync::run(&endpoint, cli.sync_contacts)
                .await
                .context("sync bench")?,
        );
        durations.insert("ingest", stats::round(part.elapsed().as_secs_f64(), 1));
    }
    let mut limiter = None;
    if cli.runs(Part::Limiter) {
        let part = Instant::now();
        eprintln!(
            "limiter: {} workers for {} s …",
            cli.limiter_workers, cli.limiter_seconds
        );
        limiter = Some(
            limiter::run(
                &endpoint,
                limiter::Options {
                    workers: cli.limiter_workers,
                    seconds: cli.limiter_seconds,
                    slot_wait: cli.limiter_slot_wait_ms.map_or(
                        relay_shared::worker::setup::MAX_SLOT_WAIT,
                        std::time::Duration::from_millis,
                    ),
                },
            )
            .await
            .context("limiter bench")?,
        );
        durations.insert("limiter", stats::round(part.elapsed().as_secs_f64(), 1));
    }
    let mut coldstart = None;
    if cli.runs(Part::Coldstart) {
        let part = Instant::now();
        eprintln!("cold start: {} runs of each Lambda binary …", cli.runs);
        coldstart = Some(
            coldstart::run(
                &endpoint,
                &coldstart::Options {
                    runs: cli.runs.max(1),
                    bin_dir,
                    build: !cli.no_build,
                },
            )
            .await
            .context("cold-start bench")?,
        );
        durations.insert("coldstart", stats::round(part.elapsed().as_secs_f64(), 1));
    }
    let dynamodb = if local.owned() {
        "DynamoDB Local (in memory, started by the bench)".to_string()
    } else {
        format!("{endpoint} (DYNAMODB_ENDPOINT)")
    };
    drop(local);

    let mut report = report::Report {
        started_at,
        duration_s: stats::round(started.elapsed().as_secs_f64(), 1),
        part_durations_s: durations,
        machine: report::Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_average_start: load_start,
            load_average_end: load_average(),
            git_commit: git_commit(),
            dynamodb,
        },
        ingest,
        sync,
        limiter,
        coldstart,
        goals: Vec::new(),
    };
    report.goals = report::goals(&report);
    Ok(report)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(dynamo::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
