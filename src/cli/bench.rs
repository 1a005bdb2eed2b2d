//! `zkmq bench ...`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use zkmq::bench::{bench_queue, QueueBenchConfig};
use zkmq::chaos::{self, Say};
use zkmq::suite::catch::catch;
use zkmq::suite::SuiteOptions;

use super::queue::Target;
use super::EXIT_HARNESS_ERROR;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// End-to-end messages per second (produce + take + ack) and latency percentiles,
    /// plus the raw bound: pipelined sequential creates per second
    Queue {
        #[command(flatten)]
        target: Target,
        /// Producers, each with a session of its own
        #[arg(long, default_value_t = 4)]
        producers: usize,
        /// Consumers, each with a session of its own
        #[arg(long, default_value_t = 4)]
        consumers: usize,
        /// Messages in total
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        /// Payload bytes per message (at least 8)
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages per producer batch (two transactions per batch on the native
        /// protocol; 1 sends one message at a time)
        #[arg(long, default_value_t = 32)]
        send_batch: usize,
        /// Messages a consumer takes per transaction, its acks riding in the next
        /// one (1: one message at a time, as `zkmq queue take` does by default)
        #[arg(long, default_value_t = 16)]
        take_batch: usize,
        /// Sequential creates for the raw bound (0 skips it)
        #[arg(long, default_value_t = 5000)]
        raw_creates: usize,
        /// Open loop: send this many messages per second in all, on a fixed
        /// schedule, and count latency from when each was due; prints whether the
        /// rate was held (default: closed loop, as fast as sends come back)
        #[arg(long)]
        rate: Option<f64>,
        /// Put this many messages in the queue first, then measure take and ack
        /// with the queue that deep (their own latency is not counted)
        #[arg(long, default_value_t = 0)]
        prefill: usize,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// How often a scenario catches ZooKeeper's own loss bugs, per version: runs it
    /// N times on each and counts the runs caught (violated, or committed writes
    /// truncated away by a majority of the servers), the rate, and the median time
    /// to the first violation a live checker saw.
    ///
    /// Run k has one seed on every version. Every run directory, catch.json and
    /// catch.md go into <out>/<UTC time>-catch-<scenario>/. Takes a while: each
    /// run starts its own ensemble.
    ///
    /// Examples:
    ///   zkmq bench catch scenarios/zk-sync-bugs.toml --versions 3.8.0,3.9.6 --runs 10
    ///   zkmq bench catch scenarios/leader-kill.toml --versions 3.8.0 --runs 3 --duration 2m --json
    ///
    /// Exit codes: 0 every run finished (caught or not: this measures, it does not
    /// judge), 2 a run failed, the scenario is bad, or interrupted.
    #[command(verbatim_doc_comment)]
    Catch {
        /// The scenario file.
        scenario: PathBuf,
        /// ZooKeeper versions, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "3.8.0,3.9.6")]
        versions: Vec<String>,
        /// Runs on each version.
        #[arg(long, default_value_t = 10)]
        runs: u32,
        /// Each run's workload lasts this long instead of the scenario's (e.g. 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// The seed each run's seed derives from (default: a fresh one, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Parent directory of the catch directory.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Print catch.json at the end (progress then goes to stderr).
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: BenchCommand) -> anyhow::Result<u8> {
    match command {
        BenchCommand::Catch { scenario, versions, runs, duration, seed, out, json } => {
            let loaded = match chaos::load_scenario(&scenario) {
                Ok(loaded) => loaded,
                Err(err) => {
                    eprintln!("error: {err}");
                    return Ok(EXIT_HARNESS_ERROR);
                }
            };
            let say: Say = if json {
                Arc::new(|line: &str| eprintln!("{line}"))
            } else {
                Arc::new(|line: &str| println!("{line}"))
            };
            let reaper =
                std::env::current_exe().context("finding the zkmq binary for the reaper")?;
            let options =
                SuiteOptions { runs: Some(runs), duration, seed, out, say, reaper: Some(reaper) };
            let (measured, dir) = match catch(&scenario, &loaded, &versions, options).await {
                Ok(done) => done,
                Err(err) => {
                    eprintln!("error: {err}");
                    return Ok(EXIT_HARNESS_ERROR);
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&measured)?);
            } else {
                println!("\n{measured}");
            }
            eprintln!("written to {}", dir.display());
            Ok(measured.exit_code())
        }
        BenchCommand::Queue {
            target,
            producers,
            consumers,
            messages,
            size,
            send_batch,
            take_batch,
            raw_creates,
            rate,
            prefill,
            json,
        } => {
            if prefill > 0 {
                eprintln!("prefilling the queue with {prefill} messages before the clock starts");
            }
            let config = QueueBenchConfig {
                access: target.access().await?,
                queue: target.config(),
                producers,
                consumers,
                messages,
                size,
                send_batch,
                take_batch,
                raw_creates,
                stall_timeout: Duration::from_secs(30),
                rate,
                prefill,
            };
            let result = bench_queue(config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{result}");
            }
            Ok(0)
        }
    }
}
