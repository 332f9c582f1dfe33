//! `relay events` and `relay event <id>`: the delivery log of a deployed stack's table or of
//! a local relay's data directory.
//!
//! Both read through the [`Journal`] trait object [`open`] answers, so another backend
//! (the local relay's on-disk store) plugs in with one more arm there.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{
    DeliveryStatus, EventFilter, EventJourney, IdempotencyKey, Journal, SystemClock,
};
use relay_shared::vendors::Vendor;

/// Where the log is read from.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The stack's DynamoDB table (stack output TableName). Credentials come from the usual
    /// AWS chain; `DYNAMODB_ENDPOINT` or `AWS_ENDPOINT_URL_DYNAMODB` point at DynamoDB Local.
    #[arg(long, env = "RELAY_TABLE", required_unless_present = "data_dir")]
    pub table: Option<String>,
    /// The data directory of a local relay (`relay serve`'s `[server] data_dir`, `.relay`
    /// beside its config by default), read while it runs.
    #[arg(long, conflicts_with = "table")]
    pub data_dir: Option<std::path::PathBuf>,
}

/// List recent events and where each delivery stands.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only events from this source (e.g. `typeform`).
    #[arg(long)]
    pub source: Option<String>,
    /// Only events delivered to this vendor (hood, channelio, omnivibe, chatwoot).
    #[arg(long)]
    pub vendor: Option<Vendor>,
    /// Only events with a delivery in this status (pending, synced, skipped, retrying,
    /// dead_lettered).
    #[arg(long)]
    pub status: Option<DeliveryStatus>,
    /// Received since: a duration back from now (`30m`, `6h`, `2d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h", value_parser = parse_since)]
    pub since: DateTime<Utc>,
    /// At most this many (newest first; at most 500).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// One JSON document for scripts instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Show one event's journey: received, mapped, and each vendor's delivery.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The sender's event id (as `relay events` lists it).
    pub id: String,
    /// The event's source; without it the log of the last 14 days is searched for the id.
    #[arg(long)]
    pub source: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `30m`, `6h`, `2d`, `90s` back from now, or an RFC 3339 instant.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| {
        format!("`{text}` is neither a duration like 30m, 6h, 2d nor an RFC 3339 time")
    })?;
    let back = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        _ => None,
    }
    .ok_or_else(|| format!("`{text}`: the unit must be s, m, h or d"))?;
    Ok(Utc::now() - back)
}

/// The DynamoDB client of the usual AWS chain, pointed at `DYNAMODB_ENDPOINT` when set.
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk);
    if let Some(endpoint) = std::env::var("DYNAMODB_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
    {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_dynamodb::Client::from_conf(config.build())
}

/// The log behind `args`: a local relay's data directory, or a stack's table.
pub async fn open(args: &StoreArgs) -> anyhow::Result<Arc<dyn Journal>> {
    if let Some(dir) = &args.data_dir {
        let db = relay_local::disk::Db::open_read_only(dir)?;
        return Ok(Arc::new(relay_local::disk::DiskStore::new(
            db,
            Arc::new(SystemClock),
        )));
    }
    let table = args
        .table
        .clone()
        .ok_or_else(|| anyhow::anyhow!("give --table or --data-dir"))?;
    Ok(Arc::new(DynamoStore::new(
        dynamodb_client().await,
        table,
        Arc::new(SystemClock),
    )))
}

pub async fn run_list(args: ListArgs) -> anyhow::Result<()> {
    let journal = open(&args.store).await?;
    print!("{}", list(journal.as_ref(), &args).await?);
    Ok(())
}

pub async fn run_show(args: ShowArgs) -> anyhow::Result<()> {
    let journal = open(&args.store).await?;
    print!("{}", show(journal.as_ref(), &args).await?);
    Ok(())
}

/// What `relay events` prints.
pub async fn list(journal: &dyn Journal, args: &ListArgs) -> anyhow::Result<String> {
    let filter = EventFilter {
        since: args.since,
        source: args.source.clone(),
        vendor: args.vendor,
        status: args.status,
        limit: args.limit,
    };
    let events = journal
        .recent(&filter)
        .await
        .context("reading the delivery log")?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&events)? + "\n");
    }
    let mut out = String::new();
    if events.is_empty() {
        let _ = writeln!(out, "no events since {}", time(args.since));
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<20}  {:<10}  {:<36}  {:<24}  deliveries",
        "received", "source", "event id", "contact"
    );
    for j in &events {
        let deliveries: Vec<String> = j
            .event
            .vendors
            .iter()
            .map(|v| format!("{v}:{}", j.status(*v)))
            .collect();
        let _ = writeln!(
            out,
            "{:<20}  {:<10}  {:<36}  {:<24}  {}",
            time(j.event.received_at),
            j.event.source,
            j.event.event_id,
            j.event.contact,
            deliveries.join(" ")
        );
    }
    let _ = writeln!(out, "{} event(s)", events.len());
    Ok(out)
}

/// What `relay event <id>` prints.
pub async fn show(journal: &dyn Journal, args: &ShowArgs) -> anyhow::Result<String> {
    let journey = match &args.source {
        Some(source) => {
            let key = IdempotencyKey::inbound(source, &args.id)?;
            journal
                .event(&key)
                .await
                .context("reading the delivery log")?
        }
        None => {
            let filter = EventFilter {
                since: Utc::now() - relay_shared::store::DEFAULT_JOURNAL_TTL,
                source: None,
                vendor: None,
                status: None,
                limit: 500,
            };
            let found: Vec<EventJourney> = journal
                .recent(&filter)
                .await
                .context("reading the delivery log")?
                .into_iter()
                .filter(|j| j.event.event_id == args.id)
                .collect();
            if found.len() > 1 {
                let sources: Vec<&str> = found.iter().map(|j| j.event.source.as_str()).collect();
                bail!(
                    "event id `{}` is in the log of several sources ({}); pass --source",
                    args.id,
                    sources.join(", ")
                );
            }
            found.into_iter().next()
        }
    };
    let Some(j) = journey else {
        bail!(
            "event `{}` is not in the delivery log (never accepted, released, or older than the log's TTL)",
            args.id
        );
    };
    if args.json {
        return Ok(serde_json::to_string_pretty(&j)? + "\n");
    }
    Ok(describe(&j))
}

/// A journey for people.
pub fn describe(j: &EventJourney) -> String {
    let e = &j.event;
    let mut out = String::new();
    let _ = writeln!(out, "event     {} / {}", e.source, e.event_id);
    let _ = writeln!(out, "kind      {}", e.kind);
    let _ = writeln!(out, "contact   {}", e.contact);
    let _ = writeln!(out, "occurred  {}", time(e.occurred_at));
    let _ = writeln!(
        out,
        "received  {} (+{} after it occurred)",
        time(e.received_at),
        span(e.received_at - e.occurred_at)
    );
    if e.warnings.is_empty() {
        let _ = writeln!(out, "warnings  none");
    } else {
        let _ = writeln!(out, "warnings  {}", e.warnings.join(", "));
    }
    let _ = writeln!(
        out,
        "raw       {}",
        match &e.raw {
            Some(id) => format!("kept, sealed ({id}); `relay replay --remap` can map it again"),
            None => "not kept".to_owned(),
        }
    );
    let _ = writeln!(out, "kept until {}", time(j.expires_at));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<10} {:<14} {:>8} {:>5} {:>9}  {:<14} {:<22} reason",
        "vendor", "status", "attempts", "calls", "latency", "vendor id", "at"
    );
    for vendor in &e.vendors {
        match j.deliveries.get(vendor) {
            None => {
                let _ = writeln!(out, "{:<10} {:<14}", vendor.as_str(), "pending");
            }
            Some(d) => {
                let when = match d.next_attempt_at {
                    Some(next) => format!("next {}", time(next)),
                    None => time(d.at),
                };
                let lag = match d.status {
                    DeliveryStatus::Synced => {
                        format!(" (+{} after it occurred)", span(d.at - e.occurred_at))
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{:<10} {:<14} {:>8} {:>5} {:>6} ms  {:<14} {:<22} {}{lag}",
                    vendor.as_str(),
                    d.status.as_str(),
                    d.attempts,
                    d.calls,
                    d.latency_ms,
                    d.vendor_id.as_deref().unwrap_or("-"),
                    when,
                    d.reason.as_deref().unwrap_or("")
                );
            }
        }
    }
    out
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn span(delta: TimeDelta) -> String {
    let ms = delta.num_milliseconds().max(0);
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min", ms / 60_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = Utc::now();
        let back = now - parse_since("6h").unwrap();
        assert!((back - TimeDelta::hours(6)).num_seconds().abs() <= 2);
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z").unwrap(),
            DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap()
        );
        assert!(parse_since("6x").is_err());
        assert!(parse_since("yesterday").is_err());
    }
}
