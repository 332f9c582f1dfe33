//! `relay`: runs profile-relay on one machine. Subcommands land with their issues.

use clap::Parser;

/// profile-relay on one machine.
#[derive(Debug, Parser)]
#[command(name = "relay", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    relay_shared::telemetry::init(relay_shared::telemetry::LogFormat::Pretty);
    let _cli = Cli::parse();
    Ok(())
}
