//! `zkmq bench catch SCENARIO --versions 3.8.0,3.9.6 --runs N`: the harness's power
//! to find ZooKeeper's own loss bugs, as a benchmark. The scenario runs N times on
//! each version (run k with one seed on every version, back to back), and each run
//! counts as caught when it was violated or when ZooKeeper truncated away writes a
//! majority had logged (`report::zk_log::committed_loss`): a committed write lost
//! by the ensemble, whether or not the workload happened to read it back.
//!
//! Per version it gives the runs caught, the rate, and the median time to the first
//! violation the live checker would have seen (the history replayed through the
//! checker, as `--stop-on-violation` watches it). A loss is only known after the
//! drain, so a run caught by losses or truncations alone has no such time and is
//! counted apart.
//!
//! The runs, `catch.json` and `catch.md` go into one directory
//! (`<out>/<UTC time>-catch-<scenario>/`).

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    create_suite_dir, derive_seed, on_version, version_slug, Ran, Runner, SuiteOptions, SuiteRun,
};
use crate::chaos::{parse_scenario, Scenario, ScenarioError};
use crate::checker::{self, median, CheckError, Checker};
use crate::report::qualify::{RunEnd, RunStatus, Side};
use crate::report::trend::{self, Violations};
use crate::report::zk_log::{self, CommittedLoss};
use crate::rundir::RunDir;

/// The summary for other tools, in the catch directory.
pub const CATCH_JSON: &str = "catch.json";
/// The table and every run, in Markdown.
pub const CATCH_MD: &str = "catch.md";
/// Version of the `catch.json` layout; bumped only on incompatible changes.
pub const CATCH_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CatchError {
    /// The scenario cannot run on one of the versions.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("name at least one version and one run")]
    Nothing,
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// One run, as measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatchRun {
    pub version: String,
    /// 1-based; run k has one seed on every version.
    pub index: u32,
    pub seed: u64,
    /// Where it is and how it ended.
    #[serde(flatten)]
    pub end: RunEnd,
    /// Violated, or ZooKeeper lost committed writes.
    pub caught: bool,
    pub violations: Violations,
    /// History time (seconds since the workload started) of the event that made
    /// the first violation known to a live checker; none for a run whose only
    /// violations are losses (known after the drain), or that had none.
    pub first_violation_s: Option<f64>,
    /// Truncations that dropped transactions, committed or not.
    pub truncations: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_loss: Option<CommittedLoss>,
}

/// One version's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionTally {
    pub version: String,
    pub runs: u64,
    /// Runs that got to a verdict (the rate's denominator).
    pub finished: u64,
    pub caught: u64,
    /// `caught / finished`, 0 to 1; none without a finished run.
    pub rate: Option<f64>,
    /// Runs violated (any must-be-zero invariant).
    pub violated: u64,
    /// Runs caught only by a committed write lost in ZooKeeper's logs.
    pub truncation_only: u64,
    /// Runs whose first violation a live checker saw, and the median of when.
    pub seen_live: u64,
    pub median_first_violation_s: Option<f64>,
}

/// `catch.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catch {
    pub schema_version: u32,
    pub scenario: String,
    pub scenario_file: String,
    pub seed: u64,
    pub runs_per_version: u32,
    /// The workload duration of every run.
    pub duration_s: f64,
    /// Stopped by Ctrl-C or SIGTERM before every run was done.
    pub interrupted: bool,
    pub wall_s: f64,
    pub versions: Vec<VersionTally>,
    pub runs: Vec<CatchRun>,
}

impl Catch {
    /// Every run finished (0) or not (2: the harness failed, or interrupted).
    pub fn exit_code(&self) -> u8 {
        if self.interrupted || self.runs.iter().any(|r| !r.end.finished()) {
            2
        } else {
            0
        }
    }
}

/// Runs the scenario on every version and tallies what was caught. Returns the
/// tally and its directory.
pub async fn catch(
    scenario_path: &Path,
    scenario: &Scenario,
    versions: &[String],
    options: SuiteOptions,
) -> Result<(Catch, PathBuf), CatchError> {
    let runs_each = options.runs.unwrap_or(1);
    if versions.is_empty() || runs_each == 0 {
        return Err(CatchError::Nothing);
    }
    let say = options.say.clone();
    let seed = options.seed.unwrap_or_else(rand::random);
    let duration = options.duration.unwrap_or(scenario.duration);
    let mut moved = Vec::new();
    for version in versions {
        let side = Side { version: version.clone(), image: None };
        let mut on =
            on_version(scenario, &side, format!("{}-{}", scenario.name, version_slug(version)));
        on.duration = duration;
        let as_run = PathBuf::from(format!("{} (on {version})", scenario_path.display()));
        moved.push(parse_scenario(&on.to_toml(), &as_run)?);
    }
    let mut runs = Vec::new();
    let mut records = Vec::new();
    for index in 1..=runs_each {
        let seed = derive_seed(seed, &scenario.name, index);
        for (version, on) in versions.iter().zip(&moved) {
            runs.push(SuiteRun {
                label: format!("{} on {version} #{index}", scenario.name),
                scenario: on.clone(),
                seed,
            });
            records.push(CatchRun {
                version: version.clone(),
                index,
                seed,
                end: RunEnd::not_run(),
                caught: false,
                violations: Violations::default(),
                first_violation_s: None,
                truncations: 0,
                committed_loss: None,
            });
        }
    }
    let dir = create_suite_dir(&options.out, "catch", &scenario.name)
        .map_err(|source| CatchError::Write { path: options.out.clone(), source })?;
    say(&format!(
        "bench catch {}: {} runs on each of {}, {} each, seed {seed} (repeat with: zkmq bench catch {} --versions {} --runs {} --duration {} --seed {seed})",
        scenario.name,
        runs_each,
        versions.join(", "),
        humantime::format_duration(duration),
        scenario_path.display(),
        versions.join(","),
        runs_each,
        humantime::format_duration(duration),
    ));
    say(&format!("catch directory {}", dir.display()));
    let mut runner = Runner::new(&dir, say.clone(), options.reaper.clone());
    let tally_all = |records: &[CatchRun], runner: &Runner| Catch {
        schema_version: CATCH_SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        scenario_file: scenario_path.display().to_string(),
        seed,
        runs_per_version: runs_each,
        duration_s: duration.as_secs_f64(),
        interrupted: runner.interrupted(),
        wall_s: runner.elapsed().as_secs_f64(),
        versions: versions.iter().map(|v| tally(v, records)).collect(),
        runs: records.to_vec(),
    };
    // Written again after each run, so a measurement cut short keeps its figures.
    for index in 0..runs.len() {
        let Some(ran) = runner.run_at(&runs, index).await else { break };
        measure(&mut records[index], &dir, ran);
        write_catch(&dir, &tally_all(&records, &runner))?;
    }
    let catch = tally_all(&records, &runner);
    write_catch(&dir, &catch)?;
    Ok((catch, dir))
}

fn write_catch(dir: &Path, catch: &Catch) -> Result<(), CatchError> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| CatchError::Write { path, source })
    };
    write(CATCH_JSON, serde_json::to_string_pretty(catch).expect("a catch always serializes"))?;
    write(CATCH_MD, catch.to_string())
}

/// What a run's end says, into its record.
fn measure(record: &mut CatchRun, catch_dir: &Path, ran: Ran) {
    let (end, finished) = ran.end(catch_dir);
    record.end = end;
    let Some((dir, results)) = finished else { return };
    record.violations = trend::figures(&results).violations;
    record.truncations = results.zookeeper_truncations.len();
    let members = results.run.as_ref().map_or(0, |run| run.nodes);
    record.committed_loss = zk_log::committed_loss(&results.zookeeper_truncations, members);
    record.caught = !results.valid || record.committed_loss.is_some();
    match first_violation(&RunDir::new(&dir)) {
        Ok(at) => record.first_violation_s = at,
        Err(err) => tracing::warn!("{}: cannot replay the history: {err}", dir.display()),
    }
}

/// When a live checker would have seen the run's first violation: the history
/// replayed through one, as the run's progress view does.
pub fn first_violation(run_dir: &RunDir) -> Result<Option<f64>, CheckError> {
    let mut checker = Checker::new();
    let mut first = None;
    checker::for_each_line(&run_dir.history_path(), |event| {
        checker.observe_view(event);
        if first.is_none() && checker.violations_so_far() > 0 {
            first = Some(event.t);
        }
    })?;
    Ok(first)
}

fn tally(version: &str, runs: &[CatchRun]) -> VersionTally {
    let of: Vec<&CatchRun> = runs.iter().filter(|r| r.version == version).collect();
    let finished: Vec<&&CatchRun> = of.iter().filter(|r| r.end.finished()).collect();
    let caught = finished.iter().filter(|r| r.caught).count() as u64;
    let mut times: Vec<f64> = finished.iter().filter_map(|r| r.first_violation_s).collect();
    VersionTally {
        version: version.to_owned(),
        runs: of.len() as u64,
        finished: finished.len() as u64,
        caught,
        rate: (!finished.is_empty()).then(|| caught as f64 / finished.len() as f64),
        violated: finished.iter().filter(|r| r.end.status == RunStatus::Violated).count() as u64,
        truncation_only: finished
            .iter()
            .filter(|r| r.end.status == RunStatus::Valid && r.committed_loss.is_some())
            .count() as u64,
        seen_live: times.len() as u64,
        median_first_violation_s: median(&mut times),
    }
}

fn violation_text(run: &CatchRun) -> String {
    let counts: Vec<String> = run
        .violations
        .counts()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {}", name.replace('_', " ")))
        .collect();
    if counts.is_empty() {
        "none".into()
    } else {
        counts.join(", ")
    }
}

impl fmt::Display for Catch {
    /// The Markdown table per version, then every run.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "## bench catch: {} ({} runs per version, {} of workload each, seed {})\n",
            self.scenario,
            self.runs_per_version,
            humantime::format_duration(Duration::from_secs_f64(self.duration_s.round())),
            self.seed
        )?;
        writeln!(f, "| version | runs finished | caught | rate | violated | committed writes lost only | median time to first violation (live) |")?;
        writeln!(f, "|---|---|---|---|---|---|---|")?;
        for v in &self.versions {
            let rate = v.rate.map_or_else(|| "–".into(), |r| format!("{:.0}%", r * 100.0));
            let first = match v.median_first_violation_s {
                Some(s) => format!("{s:.0} s ({} runs)", v.seen_live),
                None => "–".into(),
            };
            writeln!(
                f,
                "| {} | {} of {} | {} | {rate} | {} | {} | {first} |",
                v.version, v.finished, v.runs, v.caught, v.violated, v.truncation_only
            )?;
        }
        writeln!(f, "\n| run | seed | verdict | violations | first violation (live) | truncations | committed writes lost | repeat with |")?;
        writeln!(f, "|---|---|---|---|---|---|---|---|")?;
        for run in &self.runs {
            let verdict = run.end.describe();
            let mut lost = String::new();
            if let Some(loss) = &run.committed_loss {
                let _ = write!(lost, "{} by {}", loss.zxid, loss.nodes.join(", "));
            }
            writeln!(
                f,
                "| {} #{} | {} | {verdict} | {} | {} | {} | {} | `{}` |",
                run.version,
                run.index,
                run.seed,
                violation_text(run),
                run.first_violation_s.map_or_else(|| "–".into(), |s| format!("{s:.1} s")),
                run.truncations,
                if lost.is_empty() { "–".into() } else { lost },
                run.end.repeat
            )?;
        }
        if self.interrupted {
            writeln!(f, "\nInterrupted: the runs not run are not counted.")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(version: &str, status: RunStatus, committed: bool, first: Option<f64>) -> CatchRun {
        CatchRun {
            version: version.into(),
            index: 1,
            seed: 1,
            end: RunEnd { status, ..RunEnd::not_run() },
            caught: status == RunStatus::Violated || committed,
            violations: Violations::default(),
            first_violation_s: first,
            truncations: usize::from(committed),
            committed_loss: committed.then(|| CommittedLoss {
                zxid: "0x1".into(),
                nodes: vec!["zk1".into(), "zk2".into()],
            }),
        }
    }

    #[test]
    fn the_rate_counts_finished_runs_and_the_median_the_ones_seen_live() {
        let runs = [
            run("3.8.0", RunStatus::Violated, true, Some(30.0)),
            run("3.8.0", RunStatus::Violated, false, Some(90.0)),
            run("3.8.0", RunStatus::Violated, false, None),
            run("3.8.0", RunStatus::Valid, true, None),
            run("3.8.0", RunStatus::Valid, false, None),
            run("3.8.0", RunStatus::Failed, false, None),
            run("3.9.6", RunStatus::Valid, false, None),
        ];
        let old = tally("3.8.0", &runs);
        assert_eq!((old.runs, old.finished, old.caught, old.violated), (6, 5, 4, 3));
        assert_eq!(old.rate, Some(0.8));
        assert_eq!(old.truncation_only, 1);
        assert_eq!((old.seen_live, old.median_first_violation_s), (2, Some(60.0)));
        let new = tally("3.9.6", &runs);
        assert_eq!((new.caught, new.rate, new.median_first_violation_s), (0, Some(0.0), None));
    }

    #[test]
    fn the_first_violation_is_when_a_live_checker_would_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let line = |t: f64, process: &str, op: &str, phase: &str, msg: Option<&str>| {
            let msg = msg.map(|m| format!(",\"msg\":\"{m}\",\"checksum\":7")).unwrap_or_default();
            format!("{{\"t\":{t},\"process\":\"{process}\",\"op\":\"{op}\",\"phase\":\"{phase}\"{msg}}}\n")
        };
        let mut history = String::new();
        history += &line(1.0, "p", "produce", "invoke", Some("a"));
        history += &line(1.1, "p", "produce", "ok", Some("a"));
        history += &line(1.2, "c", "take", "invoke", None);
        history += &line(1.3, "c", "take", "ok", Some("a"));
        std::fs::write(dir.path().join("history.jsonl"), &history).unwrap();
        assert_eq!(first_violation(&RunDir::new(dir.path())).unwrap(), None);
        // A delivery of a message nobody produced: known at once.
        history += &line(2.0, "c", "take", "invoke", None);
        history += &line(2.5, "c", "take", "ok", Some("ghost"));
        std::fs::write(dir.path().join("history.jsonl"), &history).unwrap();
        assert_eq!(first_violation(&RunDir::new(dir.path())).unwrap(), Some(2.5));
    }
}
