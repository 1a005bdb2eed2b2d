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
//! [`Progress`] is the live view of a run in progress (fed by the chaos run loop).

mod compare;
mod plots;
mod progress;
mod render;
pub mod series;
pub mod zk_log;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checker::{self, CheckError, CheckResult};
use crate::history::{files, FaultRecord, RunMeta};

pub use compare::compare;
pub use plots::PLOTS;
pub use progress::{Progress, ProgressSnapshot};

/// Version of the `results.json` layout; bumped only on incompatible changes.
pub const RESULTS_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot draw {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("{path} is not a run directory (it has no {history})", history = files::HISTORY)]
    NotARun { path: PathBuf },
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

fn read_optional(path: &Path) -> Result<Option<String>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReportError::Read { path: path.to_owned(), source }),
    }
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, contents)
        .map_err(|source| ReportError::Write { path: path.to_owned(), source })
}

/// Reads `run.json` if present.
pub fn read_run_meta(run_dir: &Path) -> Result<Option<RunMeta>, ReportError> {
    let path = run_dir.join(files::RUN);
    read_optional(&path)?
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|err| ReportError::Parse { path, message: err.to_string() })
        })
        .transpose()
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
    if !run_dir.join(files::HISTORY).is_file() {
        return Err(ReportError::NotARun { path: run_dir.to_owned() });
    }
    let check = checker::check_history(run_dir)?;
    let run = read_run_meta(run_dir)?;
    let scenario = read_optional(&run_dir.join(files::SCENARIO))?;
    let schedule = series::read_schedule(run_dir)?;

    let started = run.as_ref().and_then(|run| series::parse_rfc3339(&run.started_at));
    let (series, hdr_logs) = series::collect(run_dir, check.duration_s, started)?;
    let plots = plots::write_plots(run_dir, &series)?;

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
    let relative = |path: &Path| path.strip_prefix(run_dir).unwrap_or(path).display().to_string();
    let mut file_names: Vec<String> = ["results.json", "summary.md", "report.html", "junit.xml"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    file_names.extend(hdr_logs.iter().map(|p| relative(p)));
    file_names.extend(plots.iter().map(|p| relative(p)));

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
        zookeeper_truncations: zk_log::scan_dir(&run_dir.join(files::LOGS_DIR)),
    };

    let results_json = run_dir.join(files::RESULTS);
    let json = serde_json::to_vec_pretty(&results).expect("results always serialize");
    write_file(&results_json, &json)?;
    let summary_md = run_dir.join("summary.md");
    write_file(&summary_md, render::summary_markdown(&results).as_bytes())?;
    let junit_xml = run_dir.join("junit.xml");
    write_file(&junit_xml, render::junit(&results).as_bytes())?;
    let report_html = run_dir.join("report.html");
    let html = render::html(&results, scenario.as_deref(), run_dir)?;
    write_file(&report_html, html.as_bytes())?;

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

/// Reads a run's `results.json`, writing the reports first if it has none.
pub fn load_results(run_dir: &Path) -> Result<Results, ReportError> {
    let path = run_dir.join(files::RESULTS);
    match read_optional(&path)? {
        Some(text) => serde_json::from_str(&text).map_err(|err| ReportError::Parse {
            path,
            message: format!("{err} (regenerate it with `zkmq report {}`)", run_dir.display()),
        }),
        None => Ok(write_reports(run_dir)?.results),
    }
}
