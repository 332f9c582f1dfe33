//! `relay`: profile-relay on one machine.
//!
//! - `relay demo` runs the whole pipeline against built-in sandbox vendors and prints what
//!   each vendor received.
//! - `relay serve --config relay.toml` runs the webhook routes, an embedded store and queue
//!   and the worker in one process, against the vendors in the config.
//! - `relay send --source NAME --url URL` signs and posts a sample event, e.g. to a
//!   deployed stack.
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
use relay_sandbox::samples;
use relay_shared::mapping::{EventDefaults, Mappings};
use relay_shared::plan::{
    PlannedRequest, VendorState, plan_channelio, plan_chatwoot, plan_hood, plan_omnivibe,
};
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
    /// Run the whole pipeline against sandbox vendors, from every built-in source, and
    /// print what each vendor received. Exits non-zero if anything broke a vendor rule.
    Demo,
    /// Serve the webhook routes and deliver to the vendors of a config file, in one process.
    Serve {
        /// The relay config (see relay.example.toml).
        #[arg(long, default_value = "relay.toml")]
        config: PathBuf,
    },
    /// Validate a relay config (with its mappings and secrets) or a mapping file; with
    /// neither, the built-in mappings.
    CheckConfig {
        /// A relay config file (TOML).
        config: Option<PathBuf>,
        /// A mapping file (TOML) instead of a relay config.
        #[arg(long, conflicts_with = "config")]
        mappings: Option<PathBuf>,
    },
    /// Sign a sample event as its sender would and post it.
    Send {
        /// Source name, e.g. typeform, hubspot, standard, app-contact.
        #[arg(long)]
        source: String,
        /// Base URL of the relay (the stack's WebhookBaseUrl output, or http://127.0.0.1:8787).
        #[arg(long)]
        url: String,
        /// Signing secret; default: the environment variable RELAY_SECRET_<SOURCE>.
        #[arg(long)]
        secret: Option<String>,
        /// Payload file (JSON); omit for the source's built-in sample.
        #[arg(long)]
        payload: Option<PathBuf>,
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
    relay_shared::assembly::load_mappings(path.map(PathBuf::as_path))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Reports (demo, plan, check-config) stay readable; `serve` logs every delivery.
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    relay_shared::telemetry::init_with_default(
        relay_shared::telemetry::LogFormat::Pretty,
        default_level,
    );
    let result = match cli.command {
        Command::Demo => runtime().and_then(|rt| rt.block_on(demo())),
        Command::Serve { config } => runtime().and_then(|rt| rt.block_on(serve(&config))),
        Command::CheckConfig {
            config: Some(config),
            ..
        } => check_relay_config(&config),
        Command::CheckConfig {
            config: None,
            mappings,
        } => check_config(mappings.as_ref()),
        Command::Send {
            source,
            url,
            secret,
            payload,
        } => runtime().and_then(|rt| rt.block_on(send(&source, &url, secret, payload.as_ref()))),
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

async fn demo() -> anyhow::Result<()> {
    use relay_shared::worker::Counter;

    println!(
        "relay demo: sandbox vendors, a local relay, every built-in source (each sent 4 times)…"
    );
    let report = relay_local::demo::run().await?;
    println!();
    println!(
        "{:<12} {:<22} {:>8} {:>10}",
        "source", "answers", "accepted", "duplicates"
    );
    for s in &report.sent {
        let answers = s
            .statuses
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<12} {:<22} {:>8} {:>10}",
            s.source, answers, s.accepted, s.duplicates
        );
    }
    println!();
    println!(
        "{:<10} {:<52} {:>6} {:>5}",
        "vendor", "request", "status", "count"
    );
    for ((vendor, route, status), count) in &report.vendor_requests {
        println!(
            "{:<10} {:<52} {:>6} {:>5}",
            vendor.as_str(),
            route,
            status,
            count
        );
    }
    println!();
    println!(
        "{:<10} {:>7} {:>9} {:>9} {:>8} {:>13}",
        "vendor", "synced", "duplicate", "throttled", "retried", "dead-lettered"
    );
    for vendor in relay_shared::vendors::Vendor::ALL {
        let n = |c| report.deliveries.get(&(vendor, c)).copied().unwrap_or(0);
        println!(
            "{:<10} {:>7} {:>9} {:>9} {:>8} {:>13}",
            vendor.as_str(),
            n(Counter::Synced),
            n(Counter::Duplicate),
            n(Counter::Throttled),
            n(Counter::Retried),
            n(Counter::DeadLettered)
        );
    }
    println!();
    let accepted: u64 = report.sent.iter().map(|s| s.accepted).sum();
    let duplicates: u64 = report.sent.iter().map(|s| s.duplicates).sum();
    println!(
        "idempotency: {accepted} events accepted, {duplicates} duplicate deliveries answered without enqueueing"
    );
    println!(
        "hood limiter: at most {} requests in any 1 s (limit 10), {} in any 60 s (limit 150), {} over the limits",
        report.hood_max_per_second, report.hood_max_per_minute, report.rate_limit_violations
    );
    println!(
        "vendors now hold: {} Hood profiles, {} Channel.io users, {} Chatwoot contacts; agent profile updated {} time(s)",
        report.hood_profiles,
        report.channelio_users,
        report.chatwoot_contacts,
        report.agent_updates
    );
    println!(
        "rule violations: {}; dead letters: {}; undelivered: {}; took {:.1} s",
        report.violations,
        report.dead_letters,
        report.undelivered,
        report.elapsed.as_secs_f64()
    );
    if report.ok() {
        println!("demo OK");
        Ok(())
    } else {
        anyhow::bail!("demo found problems (see above)")
    }
}

async fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = relay_local::LocalConfig::load(path)?;
    let relay = relay_local::LocalRelay::start(config).await?;
    println!("relay listening on http://{}", relay.addr());
    println!(
        "  POST /hooks/forms/{{source}}, POST /hooks/crm/{{source}}, POST /events (EventBridge events), GET /health"
    );
    for source in &relay.disabled_sources {
        println!("  source {source}: no signing secret configured (answers 404)");
    }
    println!("Ctrl-C stops accepting requests, delivers what is queued, then exits.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("stopping: delivering what is queued…");
    let stopped = relay.shutdown().await;
    println!(
        "stopped; {} undelivered, {} dead-lettered",
        stopped.undelivered, stopped.dead_letters
    );
    if stopped.undelivered > 0 {
        anyhow::bail!(
            "{} deliveries were still queued when the drain timeout ran out",
            stopped.undelivered
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

async fn send(
    source: &str,
    url: &str,
    secret: Option<String>,
    payload: Option<&PathBuf>,
) -> anyhow::Result<()> {
    use relay_shared::ingress::signature::{SignRequest, Verifier};
    use relay_shared::mapping::Route;

    let mappings = Mappings::builtin().map_err(|e| anyhow!("{e}"))?;
    let mapping = mappings
        .source(source)
        .with_context(|| format!("no source named `{source}`"))?;
    let body = match payload {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => samples::sample(source)
            .with_context(|| format!("no built-in sample for `{source}`"))?
            .body
            .to_string(),
    };
    let base = url.trim_end_matches('/');
    let (target, headers) = match (&mapping.signature, mapping.route) {
        (None, _) => (format!("{base}/events"), http::HeaderMap::new()),
        (Some(scheme), route) => {
            let target = format!(
                "{base}/hooks/{}/{source}",
                if route == Route::Forms {
                    "forms"
                } else {
                    "crm"
                }
            );
            let var = format!(
                "RELAY_SECRET_{}",
                source.to_ascii_uppercase().replace('-', "_")
            );
            let secret = secret
                .or_else(|| std::env::var(&var).ok())
                .with_context(|| format!("no secret: pass --secret or set {var}"))?;
            let verifier = Verifier::new(scheme, &[secrecy::SecretString::from(secret)])?;
            let request = SignRequest {
                method: &http::Method::POST,
                uri: &target,
                body: body.as_bytes(),
                now: chrono::Utc::now(),
                delivery_id: None,
            };
            (target.clone(), verifier.sign(&request)?)
        }
    };
    let response = reqwest::Client::new()
        .post(&target)
        .headers(headers)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting to {target}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("POST {target} → {status}");
    println!("{text}");
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("the relay answered {status}")
    }
}
