//! Command-line definitions. Each area owns one file; each handler parses nothing
//! further and calls into the library.

mod bench;
mod chaos;
mod cluster;
mod qualify;
mod queue;
mod report;
mod rest;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

/// The run was valid (or the command succeeded).
pub const EXIT_OK: u8 = 0;
/// A delivery invariant was violated.
pub const EXIT_VIOLATION: u8 = 1;
/// The harness or its environment failed (Docker missing, bad scenario, ...).
pub const EXIT_HARNESS_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "zkmq",
    version,
    about = "A message queue on Apache ZooKeeper, and the chaos harness that proves it",
    long_about = "A message queue on Apache ZooKeeper that loses no message and delivers none \
again after its ack, and a chaos harness that proves it: a real ZooKeeper ensemble in Docker, \
producers and consumers over the binary protocol and over REST, injected faults, a recorded \
history, a delivery checker and a report.\n\n\
Start here:\n  zkmq chaos run scenarios/smoke.toml   a one-minute chaos run (builds images on first use)\n  \
zkmq cluster up                      a 5-node ensemble plus the REST gateway\n  \
zkmq queue send hello                use the queue on the running cluster"
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build images, start and stop the ZooKeeper ensemble, inject node faults
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Send, take, acknowledge and inspect messages
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Serve ZooKeeper's REST interface (znodes/v1, sessions/v1)
    #[command(subcommand)]
    Rest(rest::RestCommand),
    /// Run chaos scenarios: workload, seeded faults, history, checker, report
    #[command(subcommand)]
    Chaos(chaos::ChaosCommand),
    // No doc comments here: they would replace the about and long_about (examples,
    // exit codes) that CheckArgs and ReportArgs carry.
    Check(report::CheckArgs),
    Report(report::ReportArgs),
    /// Measure the queue's throughput and latency, or how often a scenario catches
    /// ZooKeeper's own loss bugs
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    // No doc comment: it would replace QualifyArgs' about and long_about.
    Qualify(qualify::QualifyArgs),
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,zkmq=info,zookeeper_client=error",
        1 => "info,zkmq=debug,zookeeper_client=warn",
        _ => "debug,zkmq=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes are for a person at a terminal; in a CI log or a redirected
    // file they are noise that breaks grep.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Runs one subcommand; returns the process exit code.
pub async fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Cluster(command) => cluster::run(command).await,
        Command::Queue(command) => queue::run(command).await,
        Command::Rest(command) => rest::run(command).await,
        Command::Chaos(command) => chaos::run(command).await,
        Command::Check(args) => report::check(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Bench(command) => bench::run(command).await,
        Command::Qualify(args) => qualify::run(args).await,
    }
}
