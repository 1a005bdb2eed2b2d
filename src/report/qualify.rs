//! A release qualification's verdict (`zkmq qualify`): a candidate ZooKeeper judged
//! against a baseline across many ordinary chaos runs, by the thresholds its suite
//! writes down, and the files that say so (`qualify.html`, `qualify.md`,
//! `qualify.json`, `junit.xml`).
//!
//! Like [`super::trend`], this reads only what each run's `results.json` says (kept
//! per run as a [`QualifyRun`]), never a history, and the judgment ([`judge`]) is a
//! pure function of those records, so it is tested on hand-made ones. Running the
//! suite is `crate::suite`'s business.
//!
//! Runs are compared scenario by scenario, baseline against candidate, with the
//! runs of one scenario pooled: unavailability windows by fault kind and access path
//! (median and max of all the windows of all its runs), throughput as the median of
//! its runs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::trend::{self, RunFigures};
use super::zk_log::{self, CommittedLoss, Truncation};
use super::{qualify_render, ReportError, Results};
use crate::checker::{median, UnavailabilityWindow};
use crate::rundir::{RunDir, RunDirError};

/// The qualification page, in the qualification directory.
pub const QUALIFY_HTML: &str = "qualify.html";
/// The verdict, checks and tables in Markdown, for a CI log or a pull request.
pub const QUALIFY_MD: &str = "qualify.md";
/// Every figure of the qualification ([`Qualification`]), for other tools.
pub const QUALIFY_JSON: &str = "qualify.json";
/// One test case per scenario × version, per upgrade direction and per threshold.
pub const QUALIFY_JUNIT: &str = "junit.xml";
/// Version of the `qualify.json` layout; bumped only on incompatible changes.
pub const QUALIFY_SCHEMA_VERSION: u32 = 1;

/// What the candidate must do to qualify beyond zero violations in every run.
/// Written in the suite file (`[thresholds]`), carried into `qualify.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// The candidate's unavailability after each fault kind, on each access path
    /// (median and max over the windows of its runs of a scenario), may be at most
    /// this multiple of the baseline's ...
    pub unavailability_factor: f64,
    /// ... or above it by at most this much: a few tenths of a second come and go
    /// between two runs of one version.
    #[serde(with = "humantime_serde")]
    pub unavailability_slack: Duration,
    /// The candidate's operations/s and acknowledged messages/s (median of its runs
    /// of a scenario) must be at least this share of the baseline's.
    pub throughput_share: f64,
    /// Whether a rollback that cannot be done (the baseline refusing to start from
    /// the data the candidate wrote) fails the qualification. Either way the
    /// report says so plainly.
    pub rollback_required: bool,
}

/// A ZooKeeper a qualification runs: a version the harness builds, or an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Side {
    /// The ZooKeeper version (`3.8.0`): it names the runs and, without `image`,
    /// selects the harness-built image `zkmq/zookeeper:<version>`.
    pub version: String,
    /// Another image to run instead (it must run that version; see the scenario's
    /// `[cluster] image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.image {
            Some(image) => write!(f, "{} (image {image})", self.version),
            None => f.write_str(&self.version),
        }
    }
}

/// What a run of a qualification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A scenario on the baseline.
    Baseline,
    /// The same scenario, with the same seed, on the candidate.
    Candidate,
    /// A rolling upgrade from the baseline to the candidate under load.
    Upgrade,
    /// A rolling downgrade from the candidate back to the baseline (the rollback).
    Downgrade,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Valid,
    /// A must-be-zero invariant was violated.
    Violated,
    /// The harness or its environment failed: the run says nothing of ZooKeeper.
    Failed,
    /// Never started: the qualification was interrupted first.
    NotRun,
}

/// One run of a qualification: what it was, and what its `results.json` said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualifyRun {
    /// The scenario's name as in the suite, or `upgrade` / `downgrade`.
    pub group: String,
    pub role: Role,
    /// The ZooKeeper the run started on.
    pub version: String,
    /// Upgrade and downgrade runs: the version every node was moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
    /// 1-based, within the group and role.
    pub index: u32,
    /// The run's own seed, derived from the suite's: the candidate's run k of a
    /// scenario has the baseline's seed, so both face the same faults.
    pub seed: u64,
    /// Where it is and how it ended.
    #[serde(flatten)]
    pub end: RunEnd,
    /// The run's headline figures (none unless it finished).
    pub figures: Option<RunFigures>,
    /// Its unavailability windows, kept whole so that the runs of a scenario pool.
    #[serde(default)]
    pub windows: Vec<UnavailabilityWindow>,
    /// Servers that dropped transactions to follow a leader.
    #[serde(default)]
    pub truncations: Vec<Truncation>,
    /// Of those, transactions a majority had logged: committed writes lost by
    /// ZooKeeper itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_loss: Option<CommittedLoss>,
    /// Upgrade and downgrade runs: whether every node moved, and if not, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<Rolling>,
}

/// Where a suite's run is and how it ended (a qualification's, or `bench catch`'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    /// The run directory, relative to the suite's directory (none when the run
    /// never created one).
    pub dir: Option<String>,
    /// The command that repeats this run alone.
    pub repeat: String,
    pub status: RunStatus,
    /// Why a run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time of the whole run (start-up, workload, heal, drain, reports).
    pub wall_s: f64,
}

impl RunEnd {
    /// A run not started yet.
    pub fn not_run() -> Self {
        Self {
            dir: None,
            repeat: String::new(),
            status: RunStatus::NotRun,
            error: None,
            wall_s: 0.0,
        }
    }

    /// Whether the run got as far as a verdict.
    pub fn finished(&self) -> bool {
        matches!(self.status, RunStatus::Valid | RunStatus::Violated)
    }

    /// `valid`, `violated`, `failed: <why>`, `not run`.
    pub fn describe(&self) -> String {
        match self.status {
            RunStatus::Valid => "valid".into(),
            RunStatus::Violated => "violated".into(),
            RunStatus::Failed => format!("failed: {}", self.error.as_deref().unwrap_or("?")),
            RunStatus::NotRun => "not run".into(),
        }
    }
}

/// A rolling upgrade or downgrade, as the run's schedule recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rolling {
    /// Every node moved to the target version and served again.
    pub completed: bool,
    /// What happened, in the nemesis's words when it failed.
    pub detail: String,
    /// The node that did not come back (`zk1`), when one did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_node: Option<String>,
    /// That node's last error line, from its saved log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

impl QualifyRun {
    /// A planned run, not started yet.
    pub fn planned(group: &str, role: Role, version: &str, index: u32, seed: u64) -> Self {
        Self {
            group: group.to_owned(),
            role,
            version: version.to_owned(),
            to_version: None,
            index,
            seed,
            end: RunEnd::not_run(),
            figures: None,
            windows: Vec::new(),
            truncations: Vec::new(),
            committed_loss: None,
            rolling: None,
        }
    }

    /// `smoke on 3.8.0 (baseline) #1`, `upgrade 3.8.0 → 3.9.6 #1`.
    pub fn label(&self) -> String {
        match (&self.to_version, self.role) {
            (Some(to), _) => format!("{} {} → {to} #{}", self.group, self.version, self.index),
            (None, role) => {
                format!("{} on {} ({}) #{}", self.group, self.version, role_name(role), self.index)
            }
        }
    }

    /// Fills in what a finished run's directory says.
    pub fn finish(&mut self, run_dir: &Path, results: &Results) {
        self.end.status = if results.valid { RunStatus::Valid } else { RunStatus::Violated };
        self.figures = Some(trend::figures(results));
        self.windows = results.check.unavailability.clone();
        self.truncations = results.zookeeper_truncations.clone();
        let members = results.run.as_ref().map_or(0, |run| run.nodes);
        self.committed_loss = zk_log::committed_loss(&self.truncations, members);
        if let Some(to) = &self.to_version {
            self.rolling = Some(rolling(results, to, &RunDir::new(run_dir)));
        }
    }

    /// Whether the run got as far as a verdict.
    pub fn finished(&self) -> bool {
        self.end.finished()
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Baseline => "baseline",
        Role::Candidate => "candidate",
        Role::Upgrade => "upgrade",
        Role::Downgrade => "downgrade",
    }
}

/// The rolling upgrade of a run, from its schedule: completed when every
/// `rolling-upgrade` fault applied (each waits for every node to serve again).
fn rolling(results: &Results, to: &str, run_dir: &RunDir) -> Rolling {
    let records: Vec<_> = results.faults.iter().filter(|f| f.fault == "rolling-upgrade").collect();
    let Some(failed) = records.iter().find(|f| !f.applied) else {
        let detail = if records.is_empty() {
            "no rolling upgrade ran: the workload ended before the nemesis started it".to_owned()
        } else {
            format!("every node moved to {to} and served again")
        };
        return Rolling { completed: !records.is_empty(), detail, stuck_node: None, log: None };
    };
    let detail = failed.error.clone().unwrap_or_else(|| "not applied".to_owned());
    // The nemesis says `zk2 upgraded but timed out waiting for zk2` of the node
    // that did not come back.
    let stuck_node = detail.split("; ").find_map(|step| {
        let (node, rest) = step.split_once(' ')?;
        (node.starts_with("zk") && rest.starts_with("upgraded but")).then(|| node.to_owned())
    });
    let log = stuck_node.as_ref().and_then(|node| {
        let text = std::fs::read_to_string(run_dir.logs_dir().join(format!("{node}.log"))).ok()?;
        zk_log::last_error(&text)
    });
    Rolling { completed: false, detail, stuck_node, log }
}

/// What the suite was and how it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteInfo {
    pub name: String,
    pub description: String,
    /// The suite file as given.
    pub file: String,
    /// The suite's seed, from which every run's seed derives.
    pub seed: u64,
    /// Runs of each scenario on each side, and of each upgrade direction.
    pub runs: u32,
    /// Every run's workload duration when the suite (or `--duration`) set one.
    pub duration_s: Option<f64>,
    /// The scenarios' names, in suite order.
    pub scenarios: Vec<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Wall time of the whole qualification.
    pub wall_s: f64,
    /// Stopped by Ctrl-C or SIGTERM before every run was done.
    pub interrupted: bool,
}

/// The qualification's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check passed.
    Qualified,
    /// A check failed: a violation, or a threshold the candidate did not meet.
    NotQualified,
    /// No check failed but some could not be judged: runs failed or never ran.
    Incomplete,
}

impl Verdict {
    /// `zkmq qualify`'s exit code: 0, 1, or 2 (the harness failed).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Qualified => 0,
            Verdict::NotQualified => 1,
            Verdict::Incomplete => 2,
        }
    }
}

/// The outcome of one check (a JUnit test case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passed,
    Failed,
    /// Not judged: the runs it needs did not finish.
    Error,
}

/// One thing the qualification judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `qualify.scenarios`, `qualify.upgrade` or `qualify.thresholds` (JUnit's
    /// classname).
    pub kind: String,
    pub name: String,
    pub status: CheckStatus,
    /// One sentence.
    pub message: String,
    /// What failed, one line each.
    #[serde(default)]
    pub details: Vec<String>,
}

/// One side's runs of a scenario, summed up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideSummary {
    pub runs: u64,
    pub valid: u64,
    pub violated: u64,
    /// Failed or never run.
    pub unfinished: u64,
    /// Medians over the finished runs.
    pub ops_per_s: Option<f64>,
    pub acknowledged_per_s: Option<f64>,
    pub availability: Option<f64>,
}

/// Every window of one fault kind on one access path, over one side's runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub windows: u64,
    /// Windows that never closed.
    pub unresolved: u64,
    pub median_s: Option<f64>,
    pub max_s: Option<f64>,
}

/// Baseline against candidate for one fault kind on one access path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnavailabilityRow {
    pub fault: String,
    /// `any` (until an ok on any path), `native` or `rest`.
    pub path: String,
    pub baseline: Pool,
    pub candidate: Pool,
    /// `None`: not compared (the fault was applied on one side only).
    pub within: Option<bool>,
    /// Why it failed or was not compared.
    pub note: String,
}

/// Baseline against candidate for one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub scenario: String,
    pub baseline: SideSummary,
    pub candidate: SideSummary,
    pub unavailability: Vec<UnavailabilityRow>,
}

/// `qualify.json`: the suite, the verdict, every check, the comparisons and every
/// run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qualification {
    pub schema_version: u32,
    pub suite: SuiteInfo,
    pub baseline: Side,
    pub candidate: Side,
    pub thresholds: Thresholds,
    pub verdict: Verdict,
    /// Plain sentences a reader must not miss (a rollback that cannot be done,
    /// committed writes ZooKeeper lost, runs that failed).
    pub findings: Vec<String>,
    pub checks: Vec<Check>,
    pub comparisons: Vec<Comparison>,
    pub runs: Vec<QualifyRun>,
}

/// Judges the runs: every check, the comparisons, the findings and the verdict.
pub fn judge(
    suite: SuiteInfo,
    baseline: Side,
    candidate: Side,
    thresholds: Thresholds,
    runs: Vec<QualifyRun>,
) -> Qualification {
    let mut checks = Vec::new();
    let mut comparisons = Vec::new();
    for scenario in &suite.scenarios {
        for (role, side) in [(Role::Baseline, &baseline), (Role::Candidate, &candidate)] {
            let of: Vec<&QualifyRun> =
                runs.iter().filter(|r| &r.group == scenario && r.role == role).collect();
            let name = format!("{scenario} on {side} ({})", role_name(role));
            checks.push(runs_check("qualify.scenarios", name, &of));
        }
        let comparison = compare(scenario, &runs, &thresholds);
        checks.push(unavailability_check(&comparison, &thresholds));
        checks.push(throughput_check(&comparison, &thresholds));
        comparisons.push(comparison);
    }
    let mut findings = Vec::new();
    for (role, from, to) in
        [(Role::Upgrade, &baseline, &candidate), (Role::Downgrade, &candidate, &baseline)]
    {
        let of: Vec<&QualifyRun> = runs.iter().filter(|r| r.role == role).collect();
        if !of.is_empty() {
            checks.push(rolling_check(role, from, to, &of, &thresholds, &mut findings));
        }
    }
    checks.insert(0, zero_violations(&runs));
    findings.extend(run_findings(&runs));
    let verdict = if checks.iter().any(|c| c.status == CheckStatus::Failed) {
        Verdict::NotQualified
    } else if checks.iter().any(|c| c.status == CheckStatus::Error) || suite.interrupted {
        Verdict::Incomplete
    } else {
        Verdict::Qualified
    };
    Qualification {
        schema_version: QUALIFY_SCHEMA_VERSION,
        suite,
        baseline,
        candidate,
        thresholds,
        verdict,
        findings,
        checks,
        comparisons,
        runs,
    }
}

fn check(kind: &str, name: String, status: CheckStatus, message: String) -> Check {
    Check { kind: kind.to_owned(), name, status, message, details: Vec::new() }
}

/// `3 lost, 1 duplicated past ack`: a violated run's must-be-zero counts.
fn violation_counts(run: &QualifyRun) -> String {
    let Some(figures) = &run.figures else { return "no figures".to_owned() };
    let counts: Vec<String> = figures
        .violations
        .counts()
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{count} {}", name.replace('_', " ")))
        .collect();
    if counts.is_empty() {
        "violated".to_owned()
    } else {
        counts.join(", ")
    }
}

/// Every run of a group valid: failed on a violation, not judged when a run did
/// not finish.
fn runs_check(kind: &str, name: String, runs: &[&QualifyRun]) -> Check {
    let violated: Vec<String> = runs
        .iter()
        .filter(|r| r.end.status == RunStatus::Violated)
        .map(|r| format!("{} (seed {}): {}", r.label(), r.seed, violation_counts(r)))
        .collect();
    let unfinished: Vec<String> = runs
        .iter()
        .filter(|r| !r.finished())
        .map(|r| format!("{}: {}", r.label(), r.end.error.as_deref().unwrap_or("not run")))
        .collect();
    let mut check = if !violated.is_empty() {
        let message = format!("{} of {} runs violated an invariant", violated.len(), runs.len());
        let mut check = check(kind, name, CheckStatus::Failed, message);
        check.details = violated;
        check
    } else if runs.is_empty() || !unfinished.is_empty() {
        let message = format!("{} of {} runs did not finish", unfinished.len(), runs.len());
        check(kind, name, CheckStatus::Error, message)
    } else {
        let message = format!("{} of {} runs valid", runs.len(), runs.len());
        check(kind, name, CheckStatus::Passed, message)
    };
    if check.status != CheckStatus::Failed {
        check.details = unfinished;
    }
    check
}

/// Zero violations in every run, whichever side.
fn zero_violations(runs: &[QualifyRun]) -> Check {
    let all: Vec<&QualifyRun> = runs.iter().collect();
    let mut check = runs_check("qualify.thresholds", "zero violations everywhere".into(), &all);
    if check.status == CheckStatus::Passed {
        check.message = format!("no violation in {} runs", runs.len());
    }
    check
}

/// The upgrade or the rollback: valid runs in which every node moved.
fn rolling_check(
    role: Role,
    from: &Side,
    to: &Side,
    runs: &[&QualifyRun],
    thresholds: &Thresholds,
    findings: &mut Vec<String>,
) -> Check {
    let what =
        if role == Role::Upgrade { "rolling upgrade" } else { "rollback (rolling downgrade)" };
    let name = format!("{what} {} → {}", from.version, to.version);
    let mut check = runs_check("qualify.upgrade", name, runs);
    let stuck: Vec<&QualifyRun> =
        runs.iter().copied().filter(|r| r.rolling.as_ref().is_some_and(|r| !r.completed)).collect();
    if check.status == CheckStatus::Failed {
        return check;
    }
    if stuck.is_empty() {
        if check.status == CheckStatus::Passed {
            check
                .message
                .push_str(&format!("; every node moved to {} and served again", to.version));
        }
        return check;
    }
    let finished = runs.iter().filter(|r| r.finished()).count();
    let impossible = role == Role::Downgrade;
    let mut sentence = if impossible {
        format!(
            "Rollback from {} to {} is impossible: in {} of {finished} runs the ensemble could not be moved back.",
            from.version,
            to.version,
            stuck.len()
        )
    } else {
        format!(
            "The rolling upgrade from {} to {} did not complete in {} of {finished} runs.",
            from.version,
            to.version,
            stuck.len()
        )
    };
    let first = stuck[0].rolling.as_ref().expect("stuck runs have a rolling outcome");
    if let Some(node) = &first.stuck_node {
        sentence.push_str(&format!(
            " {node}, moved to {} with the data {} had written, did not serve again",
            to.version, from.version
        ));
        match &first.log {
            Some(log) => sentence.push_str(&format!("; its log: {log}")),
            None => sentence.push('.'),
        }
    } else {
        sentence.push_str(&format!(" {}.", first.detail));
    }
    findings.push(sentence.clone());
    check.details = stuck.iter().map(|r| format!("{}: {}", r.label(), rolling_detail(r))).collect();
    if impossible && !thresholds.rollback_required {
        check.status = CheckStatus::Passed;
        check.message = format!("{sentence} The suite allows it (rollback_required = false).");
    } else {
        check.status = CheckStatus::Failed;
        check.message = sentence;
    }
    check
}

fn rolling_detail(run: &QualifyRun) -> String {
    run.rolling.as_ref().map_or_else(String::new, |r| r.detail.clone())
}

/// Sentences about single runs: violations, committed writes ZooKeeper lost, runs
/// that failed.
fn run_findings(runs: &[QualifyRun]) -> Vec<String> {
    let mut findings = Vec::new();
    for run in runs {
        if run.end.status == RunStatus::Violated {
            findings.push(format!(
                "{} (seed {}) violated: {}. Repeat it with: {}",
                run.label(),
                run.seed,
                violation_counts(run),
                run.end.repeat
            ));
        }
        if let Some(loss) = &run.committed_loss {
            findings.push(format!(
                "ZooKeeper {} itself lost committed writes in {} (seed {}): {} dropped {} from their logs, which a majority had logged.",
                run.version,
                run.label(),
                run.seed,
                loss.nodes.join(", "),
                loss.zxid
            ));
        }
        if run.end.status == RunStatus::Failed {
            findings.push(format!(
                "{} did not finish: {}",
                run.label(),
                run.end.error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    findings
}

fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    median(&mut values.collect::<Vec<f64>>())
}

fn summarise(runs: &[&QualifyRun]) -> SideSummary {
    let figures: Vec<&RunFigures> = runs.iter().filter_map(|r| r.figures.as_ref()).collect();
    SideSummary {
        runs: runs.len() as u64,
        valid: runs.iter().filter(|r| r.end.status == RunStatus::Valid).count() as u64,
        violated: runs.iter().filter(|r| r.end.status == RunStatus::Violated).count() as u64,
        unfinished: runs.iter().filter(|r| !r.finished()).count() as u64,
        ops_per_s: median_of(figures.iter().map(|f| f.ops_per_s)),
        acknowledged_per_s: median_of(figures.iter().map(|f| f.acknowledged_per_s)),
        availability: median_of(figures.iter().map(|f| f.availability)),
    }
}

/// The windows of `fault` on `path` over `runs`: `any` is a window's overall
/// duration; a path's is its own (a window without that path is not counted).
fn pool(runs: &[&QualifyRun], fault: &str, path: &str) -> Pool {
    let mut closed = Vec::new();
    let mut pool = Pool::default();
    for window in runs.iter().flat_map(|r| &r.windows).filter(|w| w.fault == fault) {
        let duration = if path == "any" {
            window.duration_s
        } else {
            match window.by_access.get(path) {
                Some(duration) => *duration,
                None => continue,
            }
        };
        pool.windows += 1;
        match duration {
            Some(duration) => closed.push(duration),
            None => pool.unresolved += 1,
        }
    }
    pool.max_s = closed.iter().copied().reduce(f64::max);
    pool.median_s = median(&mut closed);
    pool
}

/// Whether the candidate's figure is within the thresholds of the baseline's.
fn within(candidate: f64, baseline: f64, thresholds: &Thresholds) -> bool {
    candidate <= thresholds.unavailability_factor * baseline
        || candidate - baseline <= thresholds.unavailability_slack.as_secs_f64()
}

/// One fault kind on one path, judged.
fn judge_row(
    fault: &str,
    path: &str,
    baseline: Pool,
    candidate: Pool,
    t: &Thresholds,
) -> UnavailabilityRow {
    let mut problems = Vec::new();
    let within = if baseline.windows == 0 || candidate.windows == 0 {
        let side = if baseline.windows == 0 { "baseline" } else { "candidate" };
        problems.push(format!("not compared: no {fault} window on the {side}"));
        None
    } else {
        if candidate.unresolved > baseline.unresolved {
            problems.push(format!(
                "never recovered in {} of {} windows (baseline: {} of {})",
                candidate.unresolved, candidate.windows, baseline.unresolved, baseline.windows
            ));
        }
        let stats = [
            ("median", candidate.median_s, baseline.median_s),
            ("max", candidate.max_s, baseline.max_s),
        ];
        for (stat, c, b) in stats {
            if let (Some(c), Some(b)) = (c, b) {
                if !self::within(c, b, t) {
                    problems.push(format!(
                        "{stat} {c:.2} s against the baseline's {b:.2} s (limit {:.2} s)",
                        (t.unavailability_factor * b).max(b + t.unavailability_slack.as_secs_f64())
                    ));
                }
            }
        }
        Some(problems.is_empty())
    };
    UnavailabilityRow {
        fault: fault.to_owned(),
        path: path.to_owned(),
        baseline,
        candidate,
        within,
        note: problems.join("; "),
    }
}

/// A scenario's baseline runs against its candidate runs.
fn compare(scenario: &str, runs: &[QualifyRun], thresholds: &Thresholds) -> Comparison {
    let side = |role| -> Vec<&QualifyRun> {
        runs.iter().filter(|r| r.group == scenario && r.role == role && r.finished()).collect()
    };
    let (baseline, candidate) = (side(Role::Baseline), side(Role::Candidate));
    let both: Vec<&QualifyRun> = baseline.iter().chain(&candidate).copied().collect();
    let faults: BTreeSet<&str> =
        both.iter().flat_map(|r| &r.windows).map(|w| w.fault.as_str()).collect();
    // Per path only where a run had two or more: with one, its figures are `any`'s.
    let mut paths = vec!["any".to_owned()];
    let several = both.iter().flat_map(|r| &r.windows).any(|w| w.by_access.len() > 1);
    if several {
        let named: BTreeSet<&String> =
            both.iter().flat_map(|r| &r.windows).flat_map(|w| w.by_access.keys()).collect();
        paths.extend(named.into_iter().cloned());
    }
    let mut rows = Vec::new();
    for fault in &faults {
        for path in &paths {
            let (b, c) = (pool(&baseline, fault, path), pool(&candidate, fault, path));
            if b.windows + c.windows > 0 {
                rows.push(judge_row(fault, path, b, c, thresholds));
            }
        }
    }
    let all = |role| -> Vec<&QualifyRun> {
        runs.iter().filter(|r| r.group == scenario && r.role == role).collect()
    };
    Comparison {
        scenario: scenario.to_owned(),
        baseline: summarise(&all(Role::Baseline)),
        candidate: summarise(&all(Role::Candidate)),
        unavailability: rows,
    }
}

fn unavailability_check(comparison: &Comparison, t: &Thresholds) -> Check {
    let name = format!(
        "{}: unavailability within {}x of the baseline's (or {:.2} s above it)",
        comparison.scenario,
        t.unavailability_factor,
        t.unavailability_slack.as_secs_f64()
    );
    let kind = "qualify.thresholds";
    if comparison.baseline.valid + comparison.baseline.violated == 0
        || comparison.candidate.valid + comparison.candidate.violated == 0
    {
        return check(
            kind,
            name,
            CheckStatus::Error,
            "not measured: a side has no finished run".into(),
        );
    }
    let failed: Vec<String> = comparison
        .unavailability
        .iter()
        .filter(|row| row.within == Some(false))
        .map(|row| format!("{} on {} path: {}", row.fault, row.path, row.note))
        .collect();
    let compared = comparison.unavailability.iter().filter(|row| row.within.is_some()).count();
    if failed.is_empty() {
        let message = if compared == 0 {
            "no fault window to compare".to_owned()
        } else {
            format!("within the limits for every fault kind on every access path ({compared} compared, median and max)")
        };
        return check(kind, name, CheckStatus::Passed, message);
    }
    let message =
        format!("over the limits for {} of {compared} fault kinds on access paths", failed.len());
    let mut check = check(kind, name, CheckStatus::Failed, message);
    check.details = failed;
    check
}

fn throughput_check(comparison: &Comparison, t: &Thresholds) -> Check {
    let name = format!(
        "{}: throughput at least {:.0}% of the baseline's",
        comparison.scenario,
        t.throughput_share * 100.0
    );
    let kind = "qualify.thresholds";
    let (b, c) = (&comparison.baseline, &comparison.candidate);
    let figures = [
        ("operations/s", b.ops_per_s, c.ops_per_s),
        ("acknowledged messages/s", b.acknowledged_per_s, c.acknowledged_per_s),
    ];
    let mut failed = Vec::new();
    let mut said = Vec::new();
    for (label, baseline, candidate) in figures {
        let (Some(baseline), Some(candidate)) = (baseline, candidate) else {
            return check(
                kind,
                name,
                CheckStatus::Error,
                "not measured: a side has no finished run".into(),
            );
        };
        let share = if baseline > 0.0 { candidate / baseline } else { 1.0 };
        said.push(format!("{label} {candidate:.1} against {baseline:.1} ({:.0}%)", share * 100.0));
        if candidate < t.throughput_share * baseline {
            failed.push(format!(
                "{label}: {candidate:.1}, below {:.0}% of the baseline's {baseline:.1}",
                t.throughput_share * 100.0
            ));
        }
    }
    let status = if failed.is_empty() { CheckStatus::Passed } else { CheckStatus::Failed };
    let mut check = check(kind, name, status, said.join("; "));
    check.details = failed;
    check
}

/// What [`write_qualification`] wrote.
#[derive(Debug, Clone)]
pub struct QualifyFiles {
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub junit: PathBuf,
}

/// Judges a qualification directory's runs again from its `qualify.json` and
/// writes its files again (`zkmq report --qualify DIR`): the pages of an older
/// version, or of a qualification cut short, brought up to date.
pub fn rewrite(dir: &Path) -> Result<(Qualification, QualifyFiles), ReportError> {
    let path = dir.join(QUALIFY_JSON);
    let text = std::fs::read_to_string(&path)
        .map_err(|source| RunDirError::Read { path: path.clone(), source })?;
    let old: Qualification = serde_json::from_str(&text).map_err(|source| RunDirError::Parse {
        path: path.clone(),
        file: QUALIFY_JSON,
        line: None,
        source,
    })?;
    let q = judge(old.suite, old.baseline, old.candidate, old.thresholds, old.runs);
    let files = write_qualification(&q, dir)?;
    Ok((q, files))
}

/// Writes `qualify.html`, `qualify.md`, `qualify.json` and `junit.xml` into the
/// qualification directory.
pub fn write_qualification(q: &Qualification, dir: &Path) -> Result<QualifyFiles, ReportError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| ReportError::Write { path: dir.to_owned(), source })?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|source| ReportError::Write { path: path.clone(), source })?;
        Ok::<_, ReportError>(path)
    };
    let json = serde_json::to_string_pretty(q).expect("a qualification always serializes");
    Ok(QualifyFiles {
        json: write(QUALIFY_JSON, &json)?,
        markdown: write(QUALIFY_MD, &qualify_render::markdown(q))?,
        junit: write(QUALIFY_JUNIT, &qualify_render::junit(q))?,
        html: write(QUALIFY_HTML, &qualify_render::html(q)?)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::trend::{Unavailability, Violations};

    const THRESHOLDS: Thresholds = Thresholds {
        unavailability_factor: 1.5,
        unavailability_slack: Duration::from_millis(250),
        throughput_share: 0.8,
        rollback_required: true,
    };

    fn side(version: &str) -> Side {
        Side { version: version.into(), image: None }
    }

    fn window(fault: &str, native: Option<f64>, rest: Option<f64>) -> UnavailabilityWindow {
        let overall = match (native, rest) {
            (Some(n), Some(r)) => Some(n.min(r)),
            (n, r) => n.or(r),
        };
        UnavailabilityWindow {
            fault: fault.into(),
            target: "leader".into(),
            start: 10.0,
            end: overall.map(|d| 10.0 + d),
            duration_s: overall,
            by_access: [("native".to_owned(), native), ("rest".to_owned(), rest)].into(),
        }
    }

    /// A finished run of `group` with these windows and operations/s.
    fn run(
        group: &str,
        role: Role,
        ops_per_s: f64,
        windows: Vec<UnavailabilityWindow>,
    ) -> QualifyRun {
        let version = if role == Role::Baseline { "3.8.0" } else { "3.9.6" };
        let mut run = QualifyRun::planned(group, role, version, 1, 7);
        run.end.status = RunStatus::Valid;
        run.figures = Some(RunFigures {
            duration_s: 60.0,
            ops_per_s,
            acknowledged_per_s: ops_per_s / 3.0,
            availability: 0.99,
            unavailability: Unavailability::default(),
            unavailability_by_access: BTreeMap::new(),
            faults_applied: BTreeMap::new(),
            faults_not_applied: 0,
            violations: Violations::default(),
        });
        run.windows = windows;
        run
    }

    fn rolling_run(role: Role, completed: bool) -> QualifyRun {
        let (from, to) =
            if role == Role::Upgrade { ("3.8.0", "3.9.6") } else { ("3.9.6", "3.8.0") };
        let mut run =
            run(if role == Role::Upgrade { "upgrade" } else { "downgrade" }, role, 20.0, vec![]);
        run.version = from.into();
        run.to_version = Some(to.into());
        run.rolling = Some(if completed {
            Rolling {
                completed: true,
                detail: "every node moved".into(),
                stuck_node: None,
                log: None,
            }
        } else {
            Rolling {
                completed: false,
                detail:
                    "zk2 -> 3.8.0, rejoined in 1.0s; zk1 upgraded but timed out waiting for zk1"
                        .into(),
                stuck_node: Some("zk1".into()),
                log: Some("ERROR o.a.z.s.q.QuorumPeer - Unable to load database on disk".into()),
            }
        });
        run
    }

    fn info() -> SuiteInfo {
        SuiteInfo {
            name: "unit".into(),
            description: String::new(),
            file: "suite.toml".into(),
            seed: 1,
            runs: 2,
            duration_s: None,
            scenarios: vec!["smoke".into()],
            started_at: "2026-12-07T00:00:00Z".into(),
            wall_s: 600.0,
            interrupted: false,
        }
    }

    fn judged(runs: Vec<QualifyRun>, thresholds: Thresholds) -> Qualification {
        judge(info(), side("3.8.0"), side("3.9.6"), thresholds, runs)
    }

    fn status_of(q: &Qualification, name_starts: &str) -> CheckStatus {
        q.checks.iter().find(|c| c.name.starts_with(name_starts)).map(|c| c.status).unwrap_or_else(
            || {
                panic!(
                    "no check {name_starts}: {:?}",
                    q.checks.iter().map(|c| &c.name).collect::<Vec<_>>()
                )
            },
        )
    }

    /// Two runs a side; the candidate's kills take 0.6 s median on native (the
    /// baseline's 0.5 s: within 1.5x) and its REST path recovers in time too.
    fn healthy() -> Vec<QualifyRun> {
        let kills = |n: f64, r: f64| {
            vec![window("kill", Some(n), Some(r)), window("kill", Some(n + 0.2), Some(r))]
        };
        vec![
            run("smoke", Role::Baseline, 100.0, kills(0.5, 1.0)),
            run("smoke", Role::Candidate, 95.0, kills(0.6, 1.1)),
            run("smoke", Role::Baseline, 104.0, kills(0.4, 1.0)),
            run("smoke", Role::Candidate, 99.0, kills(0.5, 1.2)),
            rolling_run(Role::Upgrade, true),
            rolling_run(Role::Downgrade, true),
        ]
    }

    #[test]
    fn thresholds_met_everywhere_qualify_the_candidate() {
        let q = judged(healthy(), THRESHOLDS);
        let failed: Vec<&Check> =
            q.checks.iter().filter(|c| c.status != CheckStatus::Passed).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert_eq!(q.verdict, Verdict::Qualified);
        assert_eq!(q.verdict.exit_code(), 0);
        // Scenario × version, the two directions, and the thresholds.
        let kinds: Vec<&str> = q.checks.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "qualify.scenarios").count(), 2);
        assert_eq!(kinds.iter().filter(|k| **k == "qualify.upgrade").count(), 2);
        assert_eq!(kinds.iter().filter(|k| **k == "qualify.thresholds").count(), 3);
        let rows = &q.comparisons[0].unavailability;
        let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["any", "native", "rest"], "per access path, each pooled over both runs");
        assert_eq!(rows[1].baseline.windows, 4);
        assert_eq!(rows[1].baseline.median_s, Some(0.55));
    }

    #[test]
    fn a_slower_recovery_on_one_access_path_fails_unavailability_and_says_where() {
        let mut runs = healthy();
        // The candidate's REST path: 1.1 s and 3.0 s against the baseline's 1.0 s.
        runs[3].windows =
            vec![window("kill", Some(0.5), Some(3.0)), window("kill", Some(0.7), Some(3.0))];
        let q = judged(runs, THRESHOLDS);
        assert_eq!(status_of(&q, "smoke: unavailability"), CheckStatus::Failed);
        let check = q.checks.iter().find(|c| c.name.starts_with("smoke: unavailability")).unwrap();
        assert!(
            check
                .details
                .iter()
                .any(|d| d
                    .starts_with("kill on rest path: median 2.05 s against the baseline's 1.00 s")),
            "{:?}",
            check.details
        );
        assert!(check.details.iter().all(|d| !d.contains("native path")), "{:?}", check.details);
        assert_eq!(q.verdict, Verdict::NotQualified);
        assert_eq!(q.verdict.exit_code(), 1);
    }

    #[test]
    fn within_the_slack_a_larger_factor_is_noise_and_a_never_recovered_window_is_not() {
        let mut runs = healthy();
        // 0.2 s against 0.1 s: twice the baseline but only 0.1 s above it.
        runs[0].windows = vec![window("pause", Some(0.1), None)];
        runs[2].windows = vec![window("pause", Some(0.1), None)];
        runs[1].windows = vec![window("pause", Some(0.2), None)];
        runs[3].windows = vec![window("pause", None, None)];
        let q = judged(runs, THRESHOLDS);
        let row = &q.comparisons[0].unavailability[0];
        assert_eq!(row.within, Some(false), "{row:?}");
        assert!(
            row.note.starts_with("never recovered in 1 of 2 windows (baseline: 0 of 2)"),
            "{}",
            row.note
        );
        assert!(!row.note.contains("median"), "0.2 s is within the slack: {}", row.note);
    }

    #[test]
    fn throughput_below_the_share_fails() {
        let mut runs = healthy();
        for run in runs.iter_mut().filter(|r| r.role == Role::Candidate) {
            run.figures.as_mut().unwrap().ops_per_s = 70.0;
        }
        let q = judged(runs, THRESHOLDS);
        assert_eq!(status_of(&q, "smoke: throughput"), CheckStatus::Failed);
        assert_eq!(q.verdict, Verdict::NotQualified);
    }

    #[test]
    fn a_violation_anywhere_fails_even_on_the_baseline() {
        let mut runs = healthy();
        runs[2].end.status = RunStatus::Violated;
        runs[2].figures.as_mut().unwrap().violations.lost = 3;
        let q = judged(runs, THRESHOLDS);
        assert_eq!(status_of(&q, "zero violations"), CheckStatus::Failed);
        assert_eq!(status_of(&q, "smoke on 3.8.0 (baseline)"), CheckStatus::Failed);
        assert_eq!(status_of(&q, "smoke on 3.9.6 (candidate)"), CheckStatus::Passed);
        let check = q.checks.iter().find(|c| c.name == "zero violations everywhere").unwrap();
        assert_eq!(check.details, ["smoke on 3.8.0 (baseline) #1 (seed 7): 3 lost"]);
        assert!(
            q.findings
                .iter()
                .any(|f| f.starts_with("smoke on 3.8.0 (baseline) #1 (seed 7) violated: 3 lost")),
            "{:?}",
            q.findings
        );
    }

    #[test]
    fn an_impossible_rollback_is_a_finding_that_fails_only_when_required() {
        let mut runs = healthy();
        runs[5] = rolling_run(Role::Downgrade, false);
        let q = judged(runs.clone(), THRESHOLDS);
        assert_eq!(status_of(&q, "rollback"), CheckStatus::Failed);
        assert_eq!(q.verdict, Verdict::NotQualified);
        let finding = q.findings.iter().find(|f| f.starts_with("Rollback")).expect("a finding");
        assert!(finding.starts_with("Rollback from 3.9.6 to 3.8.0 is impossible"), "{finding}");
        assert!(
            finding.contains(
                "zk1, moved to 3.8.0 with the data 3.9.6 had written, did not serve again"
            ),
            "{finding}"
        );
        assert!(finding.contains("Unable to load database on disk"), "{finding}");

        let allowed = Thresholds { rollback_required: false, ..THRESHOLDS };
        let q = judged(runs, allowed);
        assert_eq!(status_of(&q, "rollback"), CheckStatus::Passed);
        assert!(q
            .findings
            .iter()
            .any(|f| f.starts_with("Rollback from 3.9.6 to 3.8.0 is impossible")));
        assert_eq!(q.verdict, Verdict::Qualified);
    }

    #[test]
    fn an_upgrade_that_does_not_complete_fails() {
        let mut runs = healthy();
        runs[4] = rolling_run(Role::Upgrade, false);
        let q = judged(runs, THRESHOLDS);
        assert_eq!(status_of(&q, "rolling upgrade 3.8.0 → 3.9.6"), CheckStatus::Failed);
    }

    #[test]
    fn runs_that_did_not_finish_leave_the_verdict_incomplete() {
        let mut runs = healthy();
        runs[1].end = RunEnd {
            status: RunStatus::Failed,
            error: Some("the cluster failed: no quorum".into()),
            ..RunEnd::not_run()
        };
        runs[1].figures = None;
        runs[3].end = RunEnd::not_run();
        runs[3].figures = None;
        let q = judged(runs, THRESHOLDS);
        assert_eq!(status_of(&q, "smoke on 3.9.6 (candidate)"), CheckStatus::Error);
        assert_eq!(status_of(&q, "smoke: throughput"), CheckStatus::Error);
        assert_eq!(q.verdict, Verdict::Incomplete);
        assert_eq!(q.verdict.exit_code(), 2);
        assert!(
            q.findings.iter().any(|f| f.contains("did not finish: the cluster failed")),
            "{:?}",
            q.findings
        );
    }

    #[test]
    fn junit_has_a_case_per_check_and_fails_or_errors_as_judged() {
        let mut runs = healthy();
        runs[5] = rolling_run(Role::Downgrade, false);
        runs[3].end = RunEnd::not_run();
        runs[3].figures = None;
        let q = judged(runs, THRESHOLDS);
        let xml = qualify_render::junit(&q);
        let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
        let cases: Vec<roxmltree::Node> =
            doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(cases.len(), q.checks.len());
        let outcome = |name: &str| {
            let case = cases
                .iter()
                .find(|c| c.attribute("name").is_some_and(|n| n.starts_with(name)))
                .unwrap();
            ["failure", "error"]
                .into_iter()
                .find(|tag| case.children().any(|c| c.has_tag_name(*tag)))
        };
        assert_eq!(outcome("rollback"), Some("failure"));
        assert_eq!(outcome("smoke on 3.9.6 (candidate)"), Some("error"));
        assert_eq!(outcome("smoke on 3.8.0 (baseline)"), None);
        let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
        assert_eq!(suite.attribute("tests"), Some(q.checks.len().to_string().as_str()));
        assert_eq!(suite.attribute("failures"), Some("1"));
    }
}
