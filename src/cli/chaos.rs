//! `zkmq chaos ...`

use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use zkmq::chaos::{self, AlgorithmChoice, RunOptions};
use zkmq::rundir::RunDir;

use super::{EXIT_HARNESS_ERROR, EXIT_OK, EXIT_VIOLATION};

#[derive(Subcommand)]
pub enum ChaosCommand {
    /// Run a scenario: start a cluster, drive producers and consumers, inject faults,
    /// then heal, drain, check and report.
    ///
    /// Prints the seed first. Writes reports/<UTC time>-<scenario>/ (scenario.toml,
    /// run.json, history.jsonl (history.jsonl.gz with `history = "gzip"`),
    /// schedule.json, samples.jsonl, logs/, results.json and the reports). Exit code: 0 every invariant held, 1 an invariant was violated
    /// (lost, duplicated past ack, unexpected or corrupt messages), 2 the harness or
    /// its environment failed (bad scenario, Docker, interrupted).
    ///
    /// Examples:
    ///   zkmq chaos run scenarios/smoke.toml
    ///   zkmq chaos run scenarios/legacy.toml --seed 7
    ///   zkmq chaos run scenarios/smoke.toml --replay reports/<run>/schedule.json
    ///   zkmq chaos run scenarios/soak.toml --stop-on-violation
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Print the fault schedule a scenario and seed give, without running anything.
    Plan(PlanArgs),
    /// Check a scenario file (unknown keys, bad values) without running it.
    Validate {
        /// The scenario file.
        scenario: PathBuf,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The scenario file (see scenarios/).
    pub scenario: PathBuf,
    /// Seed of the fault schedule and the workload; the same seed gives the same faults.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run the workload this long instead of the scenario's duration (e.g. 30s, 2m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Parent directory of the run directory.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Use this running cluster (its run id, see `zkmq cluster list`) instead of
    /// starting one; it is left running.
    #[arg(long, value_name = "RUN_ID")]
    pub reuse_cluster: Option<String>,
    /// Leave the cluster running at the end, to look at it.
    #[arg(long)]
    pub keep_cluster: bool,
    /// Repeat the faults of a recorded run (same offsets, same targets).
    #[arg(long, value_name = "SCHEDULE_JSON")]
    pub replay: Option<PathBuf>,
    /// Queue algorithm: safe, or legacy (the unsafe 2011 port the checker must catch).
    #[arg(long)]
    pub algorithm: Option<AlgorithmChoice>,
    /// Stop the workload at the first violation the live checker sees (duplicated
    /// past ack, unexpected, corrupt; a loss is only known after the drain), then
    /// heal, drain, check, and copy every member's data directory into data/.
    /// Overrides the scenario's `stop_on_violation`; `=false` turns it off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub stop_on_violation: Option<bool>,
}

#[derive(Args)]
pub struct PlanArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

pub async fn run(command: ChaosCommand) -> anyhow::Result<u8> {
    match command {
        ChaosCommand::Run(args) => run_scenario(args).await,
        ChaosCommand::Plan(args) => {
            let scenario = match chaos::load_scenario(&args.scenario) {
                Ok(s) => s,
                Err(err) => return Ok(scenario_error(&err)),
            };
            let seed = args.seed.or(scenario.seed).unwrap_or_else(rand::random);
            let duration = args.duration.unwrap_or(scenario.duration);
            println!("seed {seed}");
            for fault in chaos::schedule::plan(&scenario, seed, duration) {
                let shape = fault.shape.map(|s| format!(" {}", s.name())).unwrap_or_default();
                println!(
                    "{:>8.1}s  {:<16} {:<9}{shape}  for {:.1}s  draw {:?}",
                    fault.at,
                    fault.fault.name(),
                    fault.target.name(),
                    fault.duration,
                    fault.draw
                );
            }
            Ok(EXIT_OK)
        }
        ChaosCommand::Validate { scenario } => match chaos::load_scenario(&scenario) {
            Ok(s) => {
                println!(
                    "{}: ok ({} fault kinds, {})",
                    scenario.display(),
                    s.nemesis.faults.len(),
                    humantime::format_duration(s.duration)
                );
                Ok(EXIT_OK)
            }
            Err(err) => Ok(scenario_error(&err)),
        },
    }
}

fn scenario_error(err: &chaos::ScenarioError) -> u8 {
    eprintln!("error: {err}");
    EXIT_HARNESS_ERROR
}

async fn run_scenario(args: RunArgs) -> anyhow::Result<u8> {
    let scenario = match chaos::load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(err) => return Ok(scenario_error(&err)),
    };
    let options = RunOptions {
        seed: args.seed,
        duration: args.duration,
        out: Some(args.out),
        reuse_cluster: args.reuse_cluster,
        keep_cluster: args.keep_cluster,
        replay: args.replay,
        algorithm: args.algorithm,
        stop_on_violation: args.stop_on_violation,
        scenario_path: Some(args.scenario.clone()),
        say: Some(Arc::new(|line: &str| println!("{line}"))),
        reaper: Some(std::env::current_exe().context("finding the zkmq binary for the reaper")?),
    };
    match chaos::run(scenario, options).await {
        Ok(outcome) => {
            for line in &outcome.summary {
                println!("  {line}");
            }
            println!("reports in {}", outcome.run_dir.display());
            if let Some(stopped) = &outcome.stopped {
                println!("{}", zkmq::report::stopped_line(stopped));
                let data = RunDir::new(&outcome.run_dir).data_dir();
                println!(
                    "server logs in logs/, each member's data directory in {}",
                    data.display()
                );
            }
            if outcome.valid {
                println!("VALID: no message lost, none delivered again after its ack");
                Ok(EXIT_OK)
            } else {
                let summary = RunDir::new(&outcome.run_dir).summary_md_path();
                println!("VIOLATED: see {}", summary.display());
                println!("re-run the same faults with: {}", outcome.replay_command);
                Ok(EXIT_VIOLATION)
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(EXIT_HARNESS_ERROR)
        }
    }
}
