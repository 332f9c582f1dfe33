//! `relay demo`: the whole pipeline against sandbox vendors, from every built-in source.

/// Run the whole pipeline against sandbox vendors, from every built-in source, and print
/// what each vendor received. Exits non-zero if anything broke a vendor rule.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    demo().await
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
