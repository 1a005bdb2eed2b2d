//! A trend across runs (`zkmq report --trend DIR...`): the page a nightly CI job
//! publishes. Each run's headline figures, read from its `results.json`, oldest
//! first, with the regressions of each run against the runs before it.
//!
//! Only `results.json` is read, never the history: a trend over months of nights
//! must stay quick, and a run without `results.json` (a crashed run) is listed as
//! crashed rather than checked again here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{series, trend_render, ReportError, Results};
use crate::checker::{UnavailabilitySummary, UnavailabilityWindow};
use crate::rundir::{RunDir, RunDirError};

/// The trend page, written into `--out`.
pub const TREND_HTML: &str = "trend.html";
/// The trend in Markdown, for a CI log or a pull request.
pub const TREND_MD: &str = "trend.md";
/// Every figure of the trend ([`Trend`]), for other tools.
pub const TREND_JSON: &str = "trend.json";
/// Version of the `trend.json` layout; bumped only on incompatible changes.
pub const TREND_SCHEMA_VERSION: u32 = 1;

/// When a run counts as regressed against the median of the runs before it (of the
/// same scenario). The one
/// place these numbers live: trend.json carries them, and the pages state them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Throughput (operations/s, acknowledged messages/s) below this fraction of the
    /// earlier median: a fifth slower is beyond night-to-night noise on one machine.
    pub throughput_floor: f64,
    /// Unavailability median (overall, and per access path) above this multiple of
    /// the earlier median.
    pub unavailability_ceiling: f64,
    /// ... and by more than this many seconds: medians of a few tenths of a second
    /// vary by half from night to night without meaning anything.
    pub unavailability_slack_s: f64,
}

/// The thresholds `zkmq report --trend` applies. Any violation of a must-be-zero
/// invariant, and a crashed run, are regressions whatever the earlier runs did.
pub const THRESHOLDS: Thresholds =
    Thresholds { throughput_floor: 0.8, unavailability_ceiling: 1.5, unavailability_slack_s: 0.25 };

/// `trend.json`: every run, oldest first, and what regressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub schema_version: u32,
    pub thresholds: Thresholds,
    /// Sorted by run start (runs without a known start first, in the order given).
    pub runs: Vec<TrendRun>,
    /// Every run's regressions, oldest run first (each run also lists its own).
    pub regressions: Vec<Regression>,
    /// The newest run regressed: `zkmq report --trend` exits 1.
    pub newest_regressed: bool,
}

/// One run of the trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendRun {
    /// The run directory, as given or found.
    pub dir: PathBuf,
    /// Its last path component (`20260101-020000-soak`): how the pages name it.
    pub name: String,
    /// `run.json`'s start (RFC 3339), if known.
    pub started_at: Option<String>,
    pub scenario: Option<String>,
    pub seed: Option<u64>,
    pub zk_version: Option<String>,
    /// `valid`, `violated`, or `crashed` (no `results.json`).
    pub verdict: String,
    /// `None` for a crashed run.
    pub figures: Option<RunFigures>,
    pub regressions: Vec<Regression>,
}

/// A finished run's headline figures, from its `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFigures {
    pub duration_s: f64,
    /// Completed queue operations per second.
    pub ops_per_s: f64,
    /// Distinct messages acknowledged per second.
    pub acknowledged_per_s: f64,
    /// Queue operations answered ok, 0 to 1.
    pub availability: f64,
    /// Over both access paths.
    pub unavailability: Unavailability,
    /// Each access path on its own (`native`, `rest`), when the run measured them.
    pub unavailability_by_access: BTreeMap<String, Unavailability>,
    /// Faults applied, by kind.
    pub faults_applied: BTreeMap<String, u64>,
    pub faults_not_applied: u64,
    pub violations: Violations,
}

/// Unavailability after a fault: overall figures, and per fault kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Unavailability {
    pub median_s: Option<f64>,
    pub max_s: Option<f64>,
    /// Windows that never closed.
    pub unresolved: u64,
    pub by_fault: BTreeMap<String, FaultUnavailability>,
}

/// One fault kind's unavailability (closed windows only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultUnavailability {
    pub median_s: Option<f64>,
    pub max_s: Option<f64>,
}

/// The must-be-zero invariants' counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Violations {
    pub lost: u64,
    pub duplicated_past_ack: u64,
    pub unexpected: u64,
    pub corrupt: u64,
    /// Left in the tree by the drain (0 where the scenario allows stuck messages).
    #[serde(default)]
    pub stuck: u64,
    /// Znodes the members disagree on after the final heal (0 when unchecked).
    #[serde(default)]
    pub divergent: u64,
    /// Members that never served again (0 when unchecked).
    #[serde(default)]
    pub not_rejoined: u64,
}

impl Violations {
    /// Name (as in reports and JUnit) and count of each, in the checker's order.
    pub fn counts(&self) -> [(&'static str, u64); 7] {
        [
            ("lost", self.lost),
            ("duplicated_past_ack", self.duplicated_past_ack),
            ("unexpected", self.unexpected),
            ("corrupt", self.corrupt),
            ("stuck", self.stuck),
            ("divergent", self.divergent),
            ("not_rejoined", self.not_rejoined),
        ]
    }
}

/// A figure of a run that is worse than the runs before it allow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// [`TrendRun::name`].
    pub run: String,
    /// `crashed`, `lost`, ..., `ops_per_s`, `acknowledged_per_s`,
    /// `unavailability_median`, `unavailability_median_<path>`.
    pub metric: String,
    pub value: Option<f64>,
    /// The median of the earlier runs, for a figure compared with them.
    pub baseline: Option<f64>,
    /// One sentence for the pages.
    pub message: String,
}

/// What [`write_trend`] wrote.
#[derive(Debug, Clone)]
pub struct TrendFiles {
    pub trend: Trend,
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub json: PathBuf,
}

/// The run directories that `dirs` name: each is a run directory, or a directory of
/// run directories (such as `reports/`), which stands for the runs inside it.
/// Anything else is an error naming it.
pub fn find_runs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    let mut runs = Vec::new();
    for dir in dirs {
        if RunDir::new(dir).is_run() {
            runs.push(dir.clone());
            continue;
        }
        let entries =
            std::fs::read_dir(dir).map_err(|_| ReportError::NotARunOrRuns { path: dir.clone() })?;
        let mut inside: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_dir() && RunDir::new(path).is_run())
            .collect();
        if inside.is_empty() {
            return Err(ReportError::NotARunOrRuns { path: dir.clone() });
        }
        inside.sort();
        runs.extend(inside);
    }
    let mut seen = std::collections::HashSet::new();
    runs.retain(|run| seen.insert(run.clone()));
    Ok(runs)
}

/// Reads each run's `run.json` and `results.json` (none: crashed), sorts the runs by
/// their start and flags each one's regressions against the earlier runs of the same
/// scenario.
pub fn trend(dirs: &[PathBuf]) -> Result<Trend, ReportError> {
    let mut dated = Vec::new();
    for dir in find_runs(dirs)? {
        let (run, start) = read_run(&dir)?;
        dated.push((start, run));
    }
    // Stable: runs of one start keep the order they were given or found in.
    dated.sort_by_key(|(start, _)| *start);
    let mut runs: Vec<TrendRun> = dated.into_iter().map(|(_, run)| run).collect();
    for index in 0..runs.len() {
        // A smoke run among the soak nights says nothing about the soak's figures.
        let scenario = &runs[index].scenario;
        let earlier: Vec<&RunFigures> = runs[..index]
            .iter()
            .filter(|run| &run.scenario == scenario)
            .filter_map(|run| run.figures.as_ref())
            .collect();
        runs[index].regressions = regressions(&runs[index], &earlier, &THRESHOLDS);
    }
    let regressions: Vec<Regression> =
        runs.iter().flat_map(|run| run.regressions.iter().cloned()).collect();
    let newest_regressed = runs.last().is_some_and(|run| !run.regressions.is_empty());
    Ok(Trend {
        schema_version: TREND_SCHEMA_VERSION,
        thresholds: THRESHOLDS,
        runs,
        regressions,
        newest_regressed,
    })
}

/// Writes `trend.html`, `trend.md` and `trend.json` into `out_dir` (created if
/// missing).
pub fn write_trend(dirs: &[PathBuf], out_dir: &Path) -> Result<TrendFiles, ReportError> {
    let trend = trend(dirs)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|source| ReportError::Write { path: out_dir.to_owned(), source })?;
    let write = |name: &str, text: &str| {
        let path = out_dir.join(name);
        std::fs::write(&path, text)
            .map_err(|source| ReportError::Write { path: path.clone(), source })?;
        Ok::<_, ReportError>(path)
    };
    let json = serde_json::to_string_pretty(&trend).expect("a trend always serializes");
    Ok(TrendFiles {
        json: write(TREND_JSON, &json)?,
        markdown: write(TREND_MD, &trend_render::markdown(&trend))?,
        html: write(TREND_HTML, &trend_render::html(&trend)?)?,
        trend,
    })
}

/// One run as the trend lists it, and its start for sorting.
fn read_run(dir: &Path) -> Result<(TrendRun, Option<SystemTime>), ReportError> {
    let run_dir = RunDir::new(dir);
    let results: Option<Results> = match run_dir.read_results() {
        Ok(results) => results,
        Err(source @ RunDirError::Parse { .. }) => {
            return Err(ReportError::StaleResults { run_dir: dir.to_owned(), source })
        }
        Err(other) => return Err(other.into()),
    };
    let meta = match results.as_ref().and_then(|r| r.run.clone()) {
        Some(meta) => Some(meta),
        None => run_dir.read_run_meta()?,
    };
    let start = meta.as_ref().and_then(|m| series::parse_rfc3339(&m.started_at));
    let name = dir
        .file_name()
        .map_or_else(|| dir.display().to_string(), |name| name.to_string_lossy().into_owned());
    let run = TrendRun {
        dir: dir.to_owned(),
        name,
        started_at: meta.as_ref().map(|m| m.started_at.clone()),
        scenario: meta.as_ref().map(|m| m.scenario.clone()),
        seed: meta.as_ref().map(|m| m.seed),
        zk_version: meta.as_ref().map(|m| m.zk_version.clone()),
        verdict: results.as_ref().map_or_else(|| "crashed".to_owned(), |r| r.verdict.clone()),
        figures: results.as_ref().map(figures),
        regressions: Vec::new(),
    };
    Ok((run, start))
}

/// A finished run's headline figures (also what a qualification keeps of each run).
pub(crate) fn figures(results: &Results) -> RunFigures {
    let check = &results.check;
    let summary = &check.unavailability_summary;
    let windows = &check.unavailability;
    let overall = unavailability(summary, windows.iter().map(|w| (w.fault.as_str(), w.duration_s)));
    let unavailability_by_access = summary
        .by_access
        .iter()
        .map(|(path, own)| {
            let durations = windows.iter().map(|w| window_on(w, path));
            (path.clone(), unavailability(own, durations))
        })
        .collect();
    let mut faults_applied = BTreeMap::new();
    for fault in results.faults.iter().filter(|f| f.applied) {
        *faults_applied.entry(fault.fault.clone()).or_insert(0) += 1;
    }
    let invariants = &check.invariants;
    RunFigures {
        duration_s: results.throughput.duration_s,
        ops_per_s: results.throughput.ops_per_s,
        acknowledged_per_s: results.throughput.acknowledged_per_s,
        availability: check.availability,
        unavailability: overall,
        unavailability_by_access,
        faults_not_applied: results.faults.iter().filter(|f| !f.applied).count() as u64,
        faults_applied,
        violations: Violations {
            lost: invariants.lost.count,
            duplicated_past_ack: invariants.duplicated_past_ack.count,
            unexpected: invariants.unexpected.count,
            corrupt: invariants.corrupt.count,
            stuck: if check.stuck_allowed { 0 } else { invariants.stuck.count },
            divergent: invariants.divergent.as_ref().map_or(0, |f| f.count),
            not_rejoined: invariants.not_rejoined.as_ref().map_or(0, |f| f.count),
        },
    }
}

/// A window's fault kind and its duration on one access path.
fn window_on<'a>(window: &'a UnavailabilityWindow, path: &str) -> (&'a str, Option<f64>) {
    (window.fault.as_str(), window.by_access.get(path).copied().flatten())
}

/// The checker's medians, and each fault kind's max from the windows (`durations`:
/// kind and closed duration of each window, on the summary's path).
fn unavailability<'a>(
    summary: &UnavailabilitySummary,
    durations: impl Iterator<Item = (&'a str, Option<f64>)>,
) -> Unavailability {
    let mut by_fault: BTreeMap<String, FaultUnavailability> = summary
        .median_by_fault
        .iter()
        .map(|(fault, median)| {
            (fault.clone(), FaultUnavailability { median_s: Some(*median), max_s: None })
        })
        .collect();
    for (fault, duration) in durations {
        if let Some(duration) = duration {
            let max = &mut by_fault.entry(fault.to_owned()).or_default().max_s;
            *max = Some(max.map_or(duration, |max: f64| max.max(duration)));
        }
    }
    Unavailability {
        median_s: summary.median_s,
        max_s: summary.max_s,
        unresolved: summary.unresolved,
        by_fault,
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    crate::checker::median(&mut values.collect::<Vec<f64>>())
}

/// A run's regressions against `earlier` (the finished runs before it).
fn regressions(run: &TrendRun, earlier: &[&RunFigures], limits: &Thresholds) -> Vec<Regression> {
    let flag = |metric: &str, value: Option<f64>, baseline: Option<f64>, message: String| {
        Regression { run: run.name.clone(), metric: metric.to_owned(), value, baseline, message }
    };
    let Some(figures) = &run.figures else {
        let message = "no results.json: the run crashed or never finished".to_owned();
        return vec![flag("crashed", None, None, message)];
    };
    let mut found = Vec::new();
    for (name, count) in figures.violations.counts() {
        if count > 0 {
            let message = format!("{count} {} (must be 0)", name.replace('_', " "));
            found.push(flag(name, Some(count as f64), Some(0.0), message));
        }
    }
    type Pick = fn(&RunFigures) -> f64;
    let rates: [(&str, &str, Pick); 2] = [
        ("ops_per_s", "operations/s", |f| f.ops_per_s),
        ("acknowledged_per_s", "acknowledged messages/s", |f| f.acknowledged_per_s),
    ];
    for (metric, label, pick) in rates {
        let (value, baseline) = (pick(figures), median_of(earlier.iter().map(|f| pick(f))));
        if let Some(baseline) = baseline.filter(|b| value < limits.throughput_floor * b) {
            let message = format!(
                "{label} {value:.1}, below {:.0}% of the earlier median {baseline:.1}",
                limits.throughput_floor * 100.0
            );
            found.push(flag(metric, Some(value), Some(baseline), message));
        }
    }
    let mut medians: Vec<(String, String, Option<f64>, Vec<f64>)> = vec![(
        "unavailability_median".into(),
        String::new(),
        figures.unavailability.median_s,
        earlier.iter().filter_map(|f| f.unavailability.median_s).collect(),
    )];
    for (path, own) in &figures.unavailability_by_access {
        medians.push((
            format!("unavailability_median_{path}"),
            format!(" on {path}"),
            own.median_s,
            earlier.iter().filter_map(|f| f.unavailability_by_access.get(path)?.median_s).collect(),
        ));
    }
    for (metric, on, value, earlier) in medians {
        let (Some(value), Some(baseline)) = (value, median_of(earlier.into_iter())) else {
            continue;
        };
        if value > limits.unavailability_ceiling * baseline
            && value - baseline > limits.unavailability_slack_s
        {
            let message = format!(
                "unavailability median{on} {value:.2} s, above {}x the earlier median {baseline:.2} s",
                limits.unavailability_ceiling
            );
            found.push(flag(&metric, Some(value), Some(baseline), message));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, ops_per_s: f64, median_s: f64, lost: u64) -> TrendRun {
        TrendRun {
            dir: PathBuf::from(name),
            name: name.into(),
            started_at: None,
            scenario: None,
            seed: None,
            zk_version: None,
            verdict: if lost > 0 { "violated" } else { "valid" }.into(),
            figures: Some(RunFigures {
                duration_s: 60.0,
                ops_per_s,
                acknowledged_per_s: ops_per_s / 3.0,
                availability: 0.99,
                unavailability: Unavailability { median_s: Some(median_s), ..Default::default() },
                unavailability_by_access: BTreeMap::new(),
                faults_applied: BTreeMap::new(),
                faults_not_applied: 0,
                violations: Violations { lost, ..Default::default() },
            }),
            regressions: Vec::new(),
        }
    }

    fn metrics(run: &TrendRun, earlier: &[&TrendRun]) -> Vec<String> {
        let earlier: Vec<&RunFigures> = earlier.iter().filter_map(|r| r.figures.as_ref()).collect();
        regressions(run, &earlier, &THRESHOLDS).into_iter().map(|r| r.metric).collect()
    }

    #[test]
    fn a_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median_of([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median_of([4.0, 1.0, 2.0, 3.0].into_iter()), Some(2.5));
        assert_eq!(median_of(std::iter::empty()), None);
    }

    /// The baseline is the median, so one odd night before does not move it.
    #[test]
    fn throughput_and_unavailability_are_flagged_against_the_earlier_median() {
        let nights = [run("a", 100.0, 1.0, 0), run("b", 1000.0, 1.0, 0), run("c", 110.0, 9.0, 0)];
        let earlier: Vec<&TrendRun> = nights.iter().collect();
        assert!(metrics(&run("d", 90.0, 1.4, 0), &earlier).is_empty(), "within the limits");
        assert_eq!(
            metrics(&run("e", 80.0, 1.6, 0), &earlier),
            ["ops_per_s", "acknowledged_per_s", "unavailability_median"]
        );
        assert!(metrics(&run("first", 1.0, 99.0, 0), &[]).is_empty(), "nothing to compare with");
    }

    #[test]
    fn small_unavailability_changes_stay_within_the_slack() {
        let earlier = run("a", 100.0, 0.1, 0);
        assert!(metrics(&run("b", 100.0, 0.3, 0), &[&earlier]).is_empty());
    }

    #[test]
    fn a_violation_or_a_crash_is_a_regression_with_no_earlier_run() {
        assert_eq!(metrics(&run("a", 100.0, 1.0, 2), &[]), ["lost"]);
        let mut crashed = run("b", 0.0, 0.0, 0);
        crashed.figures = None;
        assert_eq!(metrics(&crashed, &[]), ["crashed"]);
    }
}
