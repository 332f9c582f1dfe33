//! `relay dlq list`: the dead letters by vendor and reason, with counts and age — no
//! personal data, and none taken from the queue (each is made visible again at once).

use chrono::{DateTime, SecondsFormat, Utc};
use relay_shared::queue::sqs::SqsQueue;
use relay_shared::replay::{DeadLetterFilter, ReasonCount};
use relay_shared::vendors::Vendor;

/// Inspect a failure queue.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Count the dead letters by vendor and reason (oldest, newest); takes none.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// URL of the queue (stack output DeadLetterQueueUrl, or EventSyncFailureQueueUrl).
    #[arg(long, env = "RELAY_DLQ_URL")]
    pub dead_letter_queue: String,
    /// Only deliveries to this vendor.
    #[arg(long)]
    pub vendor: Option<Vendor>,
    /// Only letters whose reason contains this text.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only letters dead-lettered since: `30m`, `6h`, `2d` back, or an RFC 3339 time.
    #[arg(long, value_parser = super::events::parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// JSON for scripts instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let Command::List(args) = args.command;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        args.dead_letter_queue.clone(),
    );
    let filter = DeadLetterFilter {
        vendor: args.vendor,
        reason: args.reason.clone(),
        since: args.since,
        message_id: None,
    };
    let counts = relay_shared::replay::list(&queue, &filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&counts)?);
    } else {
        print!("{}", describe(&counts, chrono::Utc::now()));
    }
    Ok(())
}

/// The listing for people.
pub fn describe(counts: &[ReasonCount], now: DateTime<Utc>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if counts.is_empty() {
        out.push_str("no dead letters\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:>5}  {:<10} {:>10} {:<20} {:<20} reason",
        "count", "vendor", "remappable", "oldest", "newest"
    );
    let total: usize = counts.iter().map(|c| c.count).sum();
    for c in counts {
        let when = |at: Option<DateTime<Utc>>| {
            at.map_or("-".to_owned(), |at| {
                let mins = (now - at).num_minutes().max(0);
                format!(
                    "{} ({})",
                    at.to_rfc3339_opts(SecondsFormat::Secs, true)
                        .get(11..19)
                        .unwrap_or(""),
                    if mins < 120 {
                        format!("{mins} min ago")
                    } else {
                        format!("{} h ago", mins / 60)
                    }
                )
            })
        };
        let _ = writeln!(
            out,
            "{:>5}  {:<10} {:>10} {:<20} {:<20} {}",
            c.count,
            c.vendor.map_or("-".to_owned(), |v| v.to_string()),
            c.remappable,
            when(c.oldest),
            when(c.newest),
            c.reason
        );
    }
    let _ = writeln!(
        out,
        "{total} dead letter(s); none were taken from the queue"
    );
    out
}
