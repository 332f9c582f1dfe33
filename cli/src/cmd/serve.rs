//! `relay serve`: the webhook routes, the embedded store and queue and the worker in one
//! process.

use std::path::PathBuf;

use anyhow::Context;

/// Serve the webhook routes and deliver to the vendors of a config file, in one process.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay config (see relay.example.toml).
    #[arg(long, default_value = "relay.toml")]
    pub config: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    serve(&args.config).await
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
