//! The files a person or a CI system reads after a run, all written into the run
//! directory from that directory alone (`history.jsonl`, `run.json`, `schedule.json`,
//! `samples.jsonl`, `scenario.toml`), so `zkmq report` can regenerate them anytime:
//!
//! - `results.json`: every figure ([`Results`]; schema in README.md "Reports");
//! - `summary.md`: the verdict and counts, to paste in a pull request or a CI log;
//! - `report.html`: one self-contained page, verdict first, plots inline;
//! - `junit.xml`: one test case per must-hold invariant and per scenario expectation;
//! - `latency-<kind>.hlog`: HdrHistogram interval logs per operation kind;
//! - `plots/*.png`, `plots/*.svg`: throughput, latency, queue depth, node states.
//!
//! Across runs: [`compare`] puts two side by side, [`trend`] lines up many (the
//! nightly page: `trend.html`, `trend.md`, `trend.json`, written where the caller says,
//! not into a run directory), and [`qualify`] judges a candidate ZooKeeper against a
//! baseline over a suite's runs (`qualify.html`, `qualify.md`, `qualify.json`,
//! `junit.xml`, in the qualification directory).
//!
//! [`Progress`] is the live view of a run in progress (fed by the chaos run loop).

mod compare;
mod plots;
mod progress;
pub mod qualify;
mod qualify_plots;
mod qualify_render;
mod render;
pub mod series;
pub mod trend;
mod trend_plots;
mod trend_render;
pub mod zk_log;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checker::{self, CheckError, CheckResult};
use crate::rundir::{self, FaultRecord, RunDir, RunDirError, RunMeta, Stopped};

pub use compare::compare;
pub use plots::PLOTS;
pub use progress::{Progress, ProgressSnapshot, LIVE_MESSAGES};
pub use render::console_summary;
pub use trend::{write_trend, Trend};

/// Version of the `results.json` layout; bumped only on incompatible changes.
pub const RESULTS_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// A `results.json` this version cannot read: older reports can be written again.
    #[error("{source} (regenerate it with `zkmq report {}`)", run_dir.display())]
    StaleResults { run_dir: PathBuf, source: RunDirError },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot draw {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("{path} is not a run directory (it has no {history})", history = rundir::HISTORY)]
    NotARun { path: PathBuf },
    /// `--trend` takes run directories and directories of them.
    #[error(
        "{path} is neither a run directory (no {run}, {history} or {results}) nor a directory of run directories",
        run = rundir::RUN, history = rundir::HISTORY, results = rundir::RESULTS
    )]
    NotARunOrRuns { path: PathBuf },
}

/// `results.json`: the run's verdict and every figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema_version: u32,
    /// `valid` or `violated`: the checker's verdict.
    pub verdict: String,
    pub valid: bool,
    /// `run.json`, when the run directory has one.
    pub run: Option<RunMeta>,
    pub throughput: Throughput,
    /// `schedule.json`'s faults, applied or not.
    pub faults: Vec<FaultRecord>,
    /// One per key of the scenario's `[expect]` table.
    pub expectations: Vec<Expectation>,
    /// The checker's full result.
    pub check: CheckResult,
    /// Report files, relative to the run directory.
    pub files: Vec<String>,
    /// Servers that dropped transactions from their log to follow a leader (from
    /// `logs/zk*.log`): where the ensemble itself may have lost writes.
    #[serde(default)]
    pub zookeeper_truncations: Vec<zk_log::Truncation>,
    /// `stopped.json`: the run stopped its workload at the first violation the live
    /// checker saw (`--stop-on-violation`), and when; absent for a run that ran its
    /// planned duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// The harness's own cost: memory, history size, check time. Absent for a run
    /// without harness samples (synthetic or older runs) apart from the check time.
    #[serde(default)]
    pub harness: HarnessFigures,
}

/// What the harness itself cost, so a soak shows its memory and history stay
/// bounded and its checking stays cheap (README, "A soak at CI scale").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HarnessFigures {
    /// Resident memory of the chaos run's process at its first and last sample,
    /// and the largest sampled, in MiB.
    pub rss_start_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    pub rss_max_mib: Option<f64>,
    /// The history file as the report read it, and its size on disk.
    pub history_file: String,
    pub history_bytes: u64,
    /// Wall time of this report's checker pass over the history.
    pub check_s: f64,
}

impl HarnessFigures {
    fn new(series: &series::Series, history: &Path, check_s: f64) -> Self {
        let rss = series.harness.iter().map(|h| h.1).filter(|rss| *rss > 0.0);
        Self {
            rss_start_mib: rss.clone().next(),
            rss_end_mib: rss.clone().next_back(),
            rss_max_mib: rss.reduce(f64::max),
            history_file: history
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            history_bytes: std::fs::metadata(history).map(|m| m.len()).unwrap_or(0),
            check_s,
        }
    }
}

/// Rates over the recorded duration (`check.duration_s`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub duration_s: f64,
    /// Completed queue operations (any outcome) per second.
    pub ops_per_s: f64,
    /// `ok` queue operations per second.
    pub ok_ops_per_s: f64,
    /// Distinct messages produced `ok` per second.
    pub produced_per_s: f64,
    /// Distinct messages acknowledged per second: the end-to-end rate.
    pub acknowledged_per_s: f64,
}

/// A scenario expectation as checked against the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    /// `expect.<key>`.
    pub name: String,
    pub expected: String,
    pub actual: String,
    /// `None`: this version does not know how to evaluate the key.
    pub passed: Option<bool>,
}

/// What [`write_reports`] wrote.
#[derive(Debug, Clone)]
pub struct Reports {
    pub dir: PathBuf,
    pub results: Results,
    pub results_json: PathBuf,
    pub summary_md: PathBuf,
    pub report_html: PathBuf,
    pub junit_xml: PathBuf,
    pub plots: Vec<PathBuf>,
    pub hdr_logs: Vec<PathBuf>,
}

/// Evaluates the scenario's `[expect]` table; `expect.valid` defaults to true, as in
/// the scenario schema.
fn expectations(scenario: Option<&str>, check: &CheckResult) -> Vec<Expectation> {
    let table = scenario
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| table.get("expect").and_then(|e| e.as_table()).cloned())
        .unwrap_or_default();
    let mut expectations = Vec::new();
    if !table.contains_key("valid") {
        expectations.push(Expectation {
            name: "expect.valid".into(),
            expected: "true".into(),
            actual: check.valid.to_string(),
            passed: Some(check.valid),
        });
    }
    for (key, value) in &table {
        let (actual, passed) = match (key.as_str(), value) {
            ("valid", toml::Value::Boolean(expected)) => {
                (check.valid.to_string(), Some(check.valid == *expected))
            }
            // Allowing stuck messages is a rule for the checker, not a prediction.
            ("stuck", toml::Value::Boolean(_)) => {
                (format!("{} stuck", check.invariants.stuck.count), Some(true))
            }
            _ => ("(not evaluated by this version of zkmq)".to_owned(), None),
        };
        expectations.push(Expectation {
            name: format!("expect.{key}"),
            expected: value.to_string(),
            actual,
            passed,
        });
    }
    expectations
}

/// Checks the run directory's history and writes every report into the directory.
pub fn write_reports(run_dir: &Path) -> Result<Reports, ReportError> {
    let dir = RunDir::new(run_dir);
    if !dir.has_history() {
        return Err(ReportError::NotARun { path: run_dir.to_owned() });
    }
    let check_started = std::time::Instant::now();
    let check = checker::check_history(run_dir)?;
    let check_s = check_started.elapsed().as_secs_f64();
    let run = dir.read_run_meta()?;
    let scenario = dir.read_scenario()?;
    let schedule = dir.read_schedule()?;
    let stopped = dir.read_stopped()?;

    let started = run.as_ref().and_then(|run| series::parse_rfc3339(&run.started_at));
    let (series, hdr_logs) = series::collect(&dir, schedule.as_ref(), check.duration_s, started)?;
    let plots = plots::write_plots(&dir, &series)?;
    let harness = HarnessFigures::new(&series, &dir.history_path(), check_s);

    let duration = check.duration_s.max(f64::MIN_POSITIVE);
    let completed: u64 = check.operations.values().map(|o| o.ok + o.fail + o.info).sum();
    let ok: u64 = check.operations.values().map(|o| o.ok).sum();
    let throughput = Throughput {
        duration_s: check.duration_s,
        ops_per_s: completed as f64 / duration,
        ok_ops_per_s: ok as f64 / duration,
        produced_per_s: check.messages.produced_ok as f64 / duration,
        acknowledged_per_s: check.messages.acknowledged as f64 / duration,
    };
    let mut file_names: Vec<String> =
        [rundir::RESULTS, rundir::SUMMARY_MD, rundir::REPORT_HTML, rundir::JUNIT_XML]
            .iter()
            .map(|s| s.to_string())
            .collect();
    file_names.extend(hdr_logs.iter().map(|p| dir.relative(p)));
    file_names.extend(plots.iter().map(|p| dir.relative(p)));

    let results = Results {
        schema_version: RESULTS_SCHEMA_VERSION,
        verdict: if check.valid { "valid" } else { "violated" }.into(),
        valid: check.valid,
        expectations: expectations(scenario.as_deref(), &check),
        run,
        throughput,
        faults: schedule.map(|s| s.faults).unwrap_or_default(),
        check,
        files: file_names,
        zookeeper_truncations: zk_log::scan_dir(&dir.logs_dir()),
        stopped,
        harness,
    };

    let results_json = dir.write_results(&results)?;
    let summary_md = dir.write_summary_md(&with_stop_note(
        render::summary_markdown(&results),
        results.stopped.as_ref(),
    ))?;
    let junit_xml = dir.write_junit_xml(&render::junit(&results))?;
    let report_html = dir.write_report_html(&render::html(&results, scenario.as_deref(), &dir)?)?;

    Ok(Reports {
        dir: run_dir.to_owned(),
        results,
        results_json,
        summary_md,
        report_html,
        junit_xml,
        plots,
        hdr_logs,
    })
}

/// One line saying that and when the run stopped at its first violation, for the
/// console and `summary.md`.
pub fn stopped_line(stopped: &Stopped) -> String {
    format!(
        "stopped at the {} at {:.1} s of {:.0} s planned ({}), {} violation{} known then; \
         lost messages are only known after the drain",
        stopped.reason,
        stopped.at_s,
        stopped.planned_s,
        stopped.at,
        stopped.violations,
        if stopped.violations == 1 { "" } else { "s" }
    )
}

/// `summary.md` with the stop line under its heading, where a reader looks first:
/// a stopped run's figures cover a shorter workload than planned.
fn with_stop_note(summary: String, stopped: Option<&Stopped>) -> String {
    let Some(stopped) = stopped else { return summary };
    let note = format!("⏹ The run was {}.\n\n", stopped_line(stopped));
    match summary.find("\n\n") {
        Some(at) => format!("{}{note}{}", &summary[..at + 2], &summary[at + 2..]),
        None => format!("{note}{summary}"),
    }
}

/// Reads a run's `results.json`, writing the reports first if it has none.
pub fn load_results(run_dir: &Path) -> Result<Results, ReportError> {
    match RunDir::new(run_dir).read_results() {
        Ok(Some(results)) => Ok(results),
        Ok(None) => Ok(write_reports(run_dir)?.results),
        Err(source @ RunDirError::Parse { .. }) => {
            Err(ReportError::StaleResults { run_dir: run_dir.to_owned(), source })
        }
        Err(other) => Err(other.into()),
    }
}
