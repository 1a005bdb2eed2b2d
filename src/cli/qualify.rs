//! `zkmq qualify ...`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use zkmq::report::qualify::{CheckStatus, Verdict};
use zkmq::suite::file::load_suite;
use zkmq::suite::qualify::{plan, qualify};
use zkmq::suite::SuiteOptions;

use super::{EXIT_HARNESS_ERROR, EXIT_OK};

#[derive(Args)]
#[command(
    about = "Qualify a candidate ZooKeeper against a baseline: every scenario on both, a rolling upgrade and a rollback",
    long_about = "Release qualification: is it safe to move the queue from ZooKeeper X (the baseline) \
to Y (the candidate), and to roll back? A suite file (scenarios/suites/) names both, the scenarios, \
the runs per scenario and the thresholds. Every scenario runs on the baseline and on the candidate \
(run k of a scenario with one seed on both, printed, so each run can be repeated alone), then a \
rolling upgrade baseline → candidate and a rolling downgrade candidate → baseline under the suite's \
load. Each run is an ordinary chaos run with its own directory.\n\n\
The candidate qualifies when no run of either version violates an invariant, when its \
unavailability after each fault kind on each access path (median and max) stays within the \
suite's factor of the baseline's, when its throughput is at least the suite's share of the \
baseline's, when the upgrade completes, and (if the suite requires it) when the rollback does. \
A rollback the baseline refuses (it cannot start from the data the candidate wrote) is reported \
as a finding, never a crash.\n\n\
Writes <out>/<UTC time>-qualify-<suite>/: suite.toml (as run, seed included), scenarios/ (each \
scenario as run), every run directory, qualify.html, qualify.md, qualify.json and junit.xml (one \
test case per scenario × version, per upgrade direction and per threshold), rewritten after each \
run.\n\n\
Examples:\n  zkmq qualify                                     the default suite: 3.8.0 → 3.9.6\n  \
zkmq qualify scenarios/suites/upgrade.toml --plan  the runs and their seeds, without running\n  \
zkmq qualify --runs 1 --duration 45s             a quick qualification\n  \
zkmq qualify --seed 7                            repeat a qualification's runs\n\n\
Exit codes: 0 qualified, 1 not qualified (a violation, or a threshold not met), 2 the harness \
failed (a bad suite, Docker, a run that did not finish, interrupted)."
)]
pub struct QualifyArgs {
    /// The suite file.
    #[arg(default_value = "scenarios/suites/upgrade.toml")]
    pub suite: PathBuf,
    /// Runs of each scenario on each version (and of each upgrade direction),
    /// instead of the suite's.
    #[arg(long)]
    pub runs: Option<u32>,
    /// Every run's workload lasts this long (e.g. 45s, 2m) instead of the suite's
    /// or the scenario's.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The seed every run's seed derives from, instead of the suite's (or a fresh
    /// one).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Parent directory of the qualification directory.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Print the runs (with their seeds) and an estimate of the time, run nothing.
    #[arg(long)]
    pub plan: bool,
}

pub async fn run(args: QualifyArgs) -> anyhow::Result<u8> {
    let loaded = match load_suite(&args.suite) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(EXIT_HARNESS_ERROR);
        }
    };
    if args.plan {
        let seed = args.seed.or(loaded.suite.seed).unwrap_or_else(rand::random);
        let runs = args.runs.unwrap_or(loaded.suite.runs);
        let duration = args.duration.or(loaded.suite.duration);
        let planned = match plan(&loaded, seed, runs, duration) {
            Ok(planned) => planned,
            Err(err) => {
                eprintln!("error: {err}");
                return Ok(EXIT_HARNESS_ERROR);
            }
        };
        println!("suite seed {seed}: {} runs", planned.len());
        let mut workload = Duration::ZERO;
        for (index, p) in planned.iter().enumerate() {
            workload += p.run.scenario.duration;
            println!(
                "{:>3}. {:<40} seed {:<20} {}",
                index + 1,
                p.run.label,
                p.run.seed,
                humantime::format_duration(p.run.scenario.duration)
            );
        }
        println!(
            "{} of workload; with start-up, heal and drain, about {} min",
            humantime::format_duration(workload),
            (workload.as_secs() + 90 * planned.len() as u64) / 60
        );
        return Ok(EXIT_OK);
    }
    let options = SuiteOptions {
        runs: args.runs,
        duration: args.duration,
        seed: args.seed,
        out: args.out,
        say: Arc::new(|line: &str| println!("{line}")),
        reaper: Some(std::env::current_exe().context("finding the zkmq binary for the reaper")?),
    };
    let qualified = match qualify(&loaded, options).await {
        Ok(qualified) => qualified,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(EXIT_HARNESS_ERROR);
        }
    };
    let q = &qualified.qualification;
    println!();
    for finding in &q.findings {
        println!("finding: {finding}");
    }
    for check in q.checks.iter().filter(|c| c.status != CheckStatus::Passed) {
        let word = if check.status == CheckStatus::Failed { "FAILED" } else { "not judged" };
        println!("{word}: {}: {}", check.name, check.message);
        for detail in &check.details {
            println!("    {detail}");
        }
    }
    let passed = q.checks.iter().filter(|c| c.status == CheckStatus::Passed).count();
    let verdict = match q.verdict {
        Verdict::Qualified => "QUALIFIED",
        Verdict::NotQualified => "NOT QUALIFIED",
        Verdict::Incomplete => "INCOMPLETE",
    };
    println!(
        "{verdict}: ZooKeeper {} against {}, {passed} of {} checks passed",
        q.candidate,
        q.baseline,
        q.checks.len()
    );
    println!("report: {}", qualified.files.html.display());
    Ok(q.verdict.exit_code())
}
