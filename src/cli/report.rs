//! `zkmq check ...` and `zkmq report ...`

use std::path::PathBuf;

use anyhow::Context;
use zkmq::checker::{self, synthetic};
use zkmq::report;
use zkmq::rundir::RunDir;

use super::{EXIT_HARNESS_ERROR, EXIT_OK, EXIT_VIOLATION};

#[derive(clap::Args)]
#[command(
    about = "Write the reports of saved runs, compare two, or line many up in a trend",
    long_about = "Write the reports of a saved run directory: results.json, summary.md, report.html, \
junit.xml, latency-<kind>.hlog (HdrHistogram interval logs) and plots/*.png|svg. They are written \
from the run directory's files alone, so a report can be regenerated at any time.\n\n\
Examples:\n  zkmq report reports/20260101-120000-smoke\n  \
zkmq report --compare reports/<run on 3.8.0> reports/<run on 3.9.3>\n  \
zkmq report --trend reports/ --out public/     every run in reports/, oldest first\n  \
zkmq report --example /tmp/example-run     a synthetic run (no cluster) and its reports\n  \
zkmq report --qualify reports/<time>-qualify-upgrade   a qualification's pages again\n\n\
--trend writes trend.html, trend.md and trend.json: per run its verdict, throughput, \
availability, unavailability per fault kind (and per access path), faults applied and \
violations, plots over the runs, and the regressions of each run against the median of the \
runs before it (listed first). A run directory without results.json is listed as crashed.\n\n\
Exit codes: 0 the run is valid (--trend: the newest run did not regress), 1 a delivery \
invariant is violated (--trend: the newest run regressed, so a nightly job can fail on it), \
2 the runs could not be read.",
    group = clap::ArgGroup::new("what").required(true).args(["run", "compare", "trend", "example", "qualify"]),
    group = clap::ArgGroup::new("writes_out").args(["compare", "trend"])
)]
pub struct ReportArgs {
    /// A saved run directory (reports/<timestamp>-<scenario>)
    pub run: Option<PathBuf>,
    /// Put two runs side by side: throughput, latencies, unavailability, invariant counts
    #[arg(long, num_args = 2, value_names = ["RUN_A", "RUN_B"])]
    pub compare: Option<Vec<PathBuf>>,
    /// A trend across runs: run directories, or directories of them (such as reports/)
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub trend: Option<Vec<PathBuf>>,
    /// Where --compare writes its Markdown (default: compare.md in RUN_B); with
    /// --trend, the directory for trend.html, trend.md and trend.json (default: .)
    #[arg(long, requires = "writes_out")]
    pub out: Option<PathBuf>,
    /// Write a synthetic run (no cluster needed) into this directory, then its reports
    #[arg(long, value_name = "DIR")]
    pub example: Option<PathBuf>,
    /// Judge a qualification directory (zkmq qualify's) again from its qualify.json
    /// and write its qualify.html, qualify.md, qualify.json and junit.xml again
    #[arg(long, value_name = "QUALIFICATION_DIR")]
    pub qualify: Option<PathBuf>,
    /// With --example: inject this many lost messages (the report then shows a violation)
    #[arg(long, default_value_t = 0, requires = "example")]
    pub inject_lost: usize,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<u8> {
    if let Some(dir) = args.qualify {
        let (q, files) =
            tokio::task::spawn_blocking(move || report::qualify::rewrite(&dir)).await??;
        print!("{}", std::fs::read_to_string(&files.markdown).unwrap_or_default());
        eprintln!("written to {}", files.html.display());
        return Ok(q.verdict.exit_code());
    }
    if let Some(dirs) = args.trend {
        let out = args.out.unwrap_or_else(|| PathBuf::from("."));
        return trend(dirs, out).await;
    }
    if let Some(runs) = args.compare {
        let (a, b) = (&runs[0], &runs[1]);
        let markdown = tokio::task::spawn_blocking({
            let (a, b) = (a.clone(), b.clone());
            move || report::compare(&a, &b)
        })
        .await??;
        let out = args.out.unwrap_or_else(|| RunDir::new(b).compare_md_path());
        std::fs::write(&out, &markdown)
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("{markdown}");
        eprintln!("written to {}", out.display());
        return Ok(EXIT_OK);
    }
    let dir = match (args.run, args.example) {
        (_, Some(dir)) => {
            let options =
                synthetic::SyntheticOptions { lose: args.inject_lost, ..Default::default() };
            synthetic::write_run_dir(&dir, &options)
                .with_context(|| format!("cannot write a synthetic run into {}", dir.display()))?;
            dir
        }
        (Some(dir), None) => dir,
        (None, None) => unreachable!("clap requires one of RUN, --compare, --trend, --example"),
    };
    let reports = tokio::task::spawn_blocking(move || report::write_reports(&dir)).await??;
    print!("{}", std::fs::read_to_string(&reports.summary_md).unwrap_or_default());
    println!("\nreport: {}", reports.report_html.display());
    Ok(if reports.results.valid { EXIT_OK } else { EXIT_VIOLATION })
}

/// `--trend`: writes the three files, prints the Markdown and says where they went.
async fn trend(dirs: Vec<PathBuf>, out: PathBuf) -> anyhow::Result<u8> {
    let files = tokio::task::spawn_blocking(move || report::write_trend(&dirs, &out)).await??;
    print!("{}", std::fs::read_to_string(&files.markdown).unwrap_or_default());
    for path in [&files.html, &files.markdown, &files.json] {
        eprintln!("written to {}", path.display());
    }
    Ok(if files.trend.newest_regressed { EXIT_VIOLATION } else { EXIT_OK })
}

#[derive(clap::Args)]
#[command(
    about = "Re-check a saved run's history against the delivery invariants",
    long_about = "Re-check a saved run's history against the delivery invariants: nothing \
acknowledged lost, nothing delivered again after its ack, nothing delivered that was never \
produced, no corrupt payload. Streams the history, plain or gzip (a truncated last line, or \
a gzip stream cut short, left by a crashed harness, is ignored). A schedule.json beside the history gives the fault windows for the \
unavailability figures.\n\n\
Exit codes: 0 valid, 1 an invariant is violated, 2 the history could not be read."
)]
pub struct CheckArgs {
    /// A run directory, or its history.jsonl or history.jsonl.gz
    pub run: PathBuf,
    /// Print the full result as JSON instead of a summary
    #[arg(long)]
    pub json: bool,
}

pub async fn check(args: CheckArgs) -> anyhow::Result<u8> {
    let path = args.run.clone();
    let started = std::time::Instant::now();
    let result = match tokio::task::spawn_blocking(move || checker::check_history(&path)).await? {
        Ok(result) => result,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(EXIT_HARNESS_ERROR);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        let verdict = if result.valid { "VALID" } else { "VIOLATED" };
        println!(
            "{verdict}: {} ({} events, {:.1} s)",
            result.history.display(),
            result.events,
            result.duration_s
        );
        // The same lines `zkmq chaos run` ended with, from the run directory alone.
        let truncations = RunDir::locate_history(&args.run)
            .map(|(run_dir, _)| report::zk_log::scan_dir(&run_dir.logs_dir()))
            .unwrap_or_default();
        for line in report::console_summary(&result, &truncations) {
            println!("  {line}");
        }
        eprintln!(
            "checked {} events in {:.2} s{}",
            result.events,
            started.elapsed().as_secs_f64(),
            peak_memory().map(|m| format!(", peak memory {m}")).unwrap_or_default()
        );
    }
    Ok(if result.valid { EXIT_OK } else { EXIT_VIOLATION })
}

/// This process's peak resident memory (Linux), to show what checking cost.
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.0} MiB", kib / 1024.0))
}
