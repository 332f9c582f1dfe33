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
//!   after a fix, with a progress bar; `--remap` maps the kept raw events again first.
//! - `relay events` / `relay event <id>` read the delivery log; `relay dlq list` counts the
//!   dead letters by reason.

// A command-line tool: printing to stdout is its job.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod cmd;

/// profile-relay on one machine.
#[derive(Debug, Parser)]
#[command(name = "relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(cmd::demo::Args),
    Serve(cmd::serve::Args),
    CheckConfig(cmd::check_config::Args),
    Send(cmd::send::Args),
    Plan(cmd::plan::Args),
    Replay(cmd::replay::Args),
    Events(cmd::events::ListArgs),
    Event(cmd::events::ShowArgs),
    Dlq(cmd::dlq::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Reports (demo, plan, check-config) stay readable; `serve` logs every delivery.
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    relay_shared::telemetry::init_with_default(
        relay_shared::telemetry::LogFormat::Pretty,
        default_level,
    );
    let result = match cli.command {
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(cmd::demo::run(args))),
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(cmd::serve::run(args))),
        Command::CheckConfig(args) => cmd::check_config::run(&args),
        Command::Send(args) => runtime().and_then(|rt| rt.block_on(cmd::send::run(args))),
        Command::Plan(args) => cmd::plan::run(&args),
        Command::Replay(args) => runtime().and_then(|rt| rt.block_on(cmd::replay::run(args))),
        Command::Events(args) => runtime().and_then(|rt| rt.block_on(cmd::events::run_list(args))),
        Command::Event(args) => runtime().and_then(|rt| rt.block_on(cmd::events::run_show(args))),
        Command::Dlq(args) => runtime().and_then(|rt| rt.block_on(cmd::dlq::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
