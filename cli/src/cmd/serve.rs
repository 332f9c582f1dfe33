//! `relay serve`: the webhook routes, the embedded store and queue and the worker in one
//! process.

use std::path::PathBuf;

use anyhow::Context;
use relay_local::Storage;
use relay_local::config::DEFAULT_DATA_DIR;

/// Serve the webhook routes and deliver to the vendors of a config file, in one process.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay config (see relay.example.toml).
    #[arg(long, default_value = "relay.toml")]
    pub config: PathBuf,
    /// Keep claims, links, limiters, the queue and dead letters in memory only (lost when
    /// the relay stops) instead of in the config's `data_dir`.
    #[arg(long)]
    pub memory: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    serve(&args.config, args.memory).await
}

async fn serve(path: &std::path::Path, memory: bool) -> anyhow::Result<()> {
    let config = relay_local::LocalConfig::load(path)?;
    let storage = match (&config.server.data_dir, memory) {
        (Some(dir), false) => Storage::Disk(dir.clone()),
        (None, false) => Storage::Disk(PathBuf::from(DEFAULT_DATA_DIR)),
        (_, true) => Storage::Memory,
    };
    let relay = relay_local::LocalRelay::start(config, storage).await?;
    println!("relay listening on http://{}", relay.addr());
    println!(
        "  POST /hooks/forms/{{source}}, POST /hooks/crm/{{source}}, POST /events (EventBridge events), GET /health"
    );
    println!(
        "  dashboard: http://{}/ui (events, dead letters with replay, request rates and limiters)",
        relay.addr()
    );
    match &relay.resumed {
        Some(resumed) => println!(
            "  store: {} ({} deliveries queued, {} of them taken by the previous run and resumed; {} dead letters)",
            resumed.file.display(),
            resumed.queued,
            resumed.recovered,
            resumed.dead_letters
        ),
        None => println!("  store: in memory (--memory): queued deliveries are lost when it stops"),
    }
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
        if stopped.persistent {
            println!(
                "the {} undelivered deliveries stay queued in the data directory for the next start",
                stopped.undelivered
            );
        } else {
            anyhow::bail!(
                "{} deliveries were still queued when the drain timeout ran out",
                stopped.undelivered
            );
        }
    }
    Ok(())
}
