//! The qualification suite file (`scenarios/suites/*.toml`): the baseline and the
//! candidate ZooKeeper, the scenarios both run and how many times, the load under
//! which the rolling upgrade and the rollback run, and the thresholds of the
//! verdict.
//!
//! Parsed like a scenario: unknown keys are refused, and every error names the
//! file, the line and the key (`scenarios/suites/x.toml:7: unknown key `foo` in
//! [thresholds]`). The scenarios it names are loaded and checked with it, so a
//! broken suite fails before any cluster starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chaos::scenario::{
    describe_toml_error, locate_key, render_table, FaultKind, KNOWN_ZK_VERSIONS,
};
use crate::chaos::{load_scenario, Scenario};
use crate::report::qualify::{Side, Thresholds};

/// The most runs a suite may ask of each scenario on each side.
pub const MAX_RUNS: u32 = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Names the qualification directory and the reports.
    pub name: String,
    /// What the qualification is for, shown in its reports.
    #[serde(default)]
    pub description: String,
    /// Runs of each scenario on each side, and of the upgrade and of the rollback;
    /// `--runs` overrides.
    pub runs: u32,
    /// Every run's workload lasts this long instead of its scenario's duration;
    /// `--duration` overrides.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Every run's seed derives from this one (and from its scenario and number);
    /// `--seed` overrides, and without either a fresh one is drawn and printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Scenario files, relative to the suite file; each runs on both sides.
    pub scenarios: Vec<PathBuf>,
    /// What runs today.
    pub baseline: Side,
    /// What would replace it.
    pub candidate: Side,
    /// The rolling upgrade and the rollback; without it, neither runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeSection>,
    pub thresholds: Thresholds,
}

/// The load under which the ensemble moves from one side to the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSection {
    /// A scenario with a `rolling-upgrade` fault, relative to the suite file: its
    /// cluster and workload are the load; each run sets the versions.
    pub scenario: PathBuf,
    /// Also roll back: start on the candidate and move every node to the baseline.
    #[serde(default = "yes")]
    pub downgrade: bool,
}

fn yes() -> bool {
    true
}

/// A suite that cannot be read or cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read suite {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    /// Well-formed but unworkable (no scenario, a broken scenario file, ...).
    #[error("{path}:{}: {message}", line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Invalid { path: PathBuf, line: Option<usize>, key: String, message: String },
    /// A scenario as a run would run it (moved to a version, its duration
    /// overridden) that cannot work; the message names the file.
    #[error("{message}")]
    Unworkable { message: String },
}

/// A suite with its scenarios loaded.
#[derive(Debug, Clone)]
pub struct LoadedSuite {
    /// The suite file as given.
    pub path: PathBuf,
    pub suite: Suite,
    /// Each scenario file (as resolved) and its scenario, in suite order.
    pub scenarios: Vec<(PathBuf, Scenario)>,
    /// The upgrade load's file and scenario.
    pub upgrade: Option<(PathBuf, Scenario)>,
}

/// Reads, parses and checks a suite and every scenario it names.
pub fn load_suite(path: &Path) -> Result<LoadedSuite, SuiteError> {
    let source = std::fs::read_to_string(path)
        .map_err(|source| SuiteError::Read { path: path.to_owned(), source })?;
    parse_suite(&source, path)
}

/// Parses and checks suite text; `path` names the file in errors and is where
/// scenario paths are relative to.
pub fn parse_suite(source: &str, path: &Path) -> Result<LoadedSuite, SuiteError> {
    let suite: Suite = toml::from_str(source).map_err(|err| {
        let (line, message) = describe_toml_error(source, &err);
        SuiteError::Parse { path: path.to_owned(), line, message }
    })?;
    let invalid = |problem: Problem| {
        let line = locate_key(source, problem.table, None, problem.key);
        SuiteError::Invalid {
            path: path.to_owned(),
            line,
            key: problem.key.to_owned(),
            message: format!(
                "bad value for `{}` in {}: {}",
                problem.key,
                render_table(problem.table),
                problem.message
            ),
        }
    };
    validate(&suite).map_err(invalid)?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut scenarios = Vec::new();
    for file in &suite.scenarios {
        let resolved = base.join(file);
        let scenario = load_scenario(&resolved)
            .map_err(|err| problem("", "scenarios", err.to_string()))
            .and_then(|scenario| fits_a_suite(&resolved, scenario))
            .map_err(invalid)?;
        if scenarios.iter().any(|(_, s): &(PathBuf, Scenario)| s.name == scenario.name) {
            let message = format!("two scenarios are named `{}`", scenario.name);
            return Err(invalid(problem("", "scenarios", message)));
        }
        scenarios.push((resolved, scenario));
    }
    let upgrade = match &suite.upgrade {
        None => None,
        Some(section) => {
            let resolved = base.join(&section.scenario);
            let scenario = load_scenario(&resolved)
                .map_err(|err| problem("upgrade", "scenario", err.to_string()))
                .and_then(|scenario| an_upgrade_load(&resolved, scenario))
                .map_err(invalid)?;
            Some((resolved, scenario))
        }
    };
    Ok(LoadedSuite { path: path.to_owned(), suite, scenarios, upgrade })
}

impl Suite {
    /// The suite as TOML, as written into the qualification directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Suite always serializes")
    }
}

/// A value that cannot work, and where it is.
struct Problem {
    table: &'static str,
    key: &'static str,
    message: String,
}

fn problem(table: &'static str, key: &'static str, message: impl Into<String>) -> Problem {
    Problem { table, key, message: message.into() }
}

fn validate(suite: &Suite) -> Result<(), Problem> {
    if suite.name.trim().is_empty()
        || !suite.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(problem(
            "",
            "name",
            "use letters, digits, `-`, `_` and `.` (it names the qualification directory)",
        ));
    }
    if !(1..=MAX_RUNS).contains(&suite.runs) {
        return Err(problem("", "runs", format!("runs per scenario and version: 1 to {MAX_RUNS}")));
    }
    if suite.duration.is_some_and(|d| d.is_zero()) {
        return Err(problem("", "duration", "must be longer than 0s"));
    }
    if suite.scenarios.is_empty() {
        return Err(problem("", "scenarios", "name at least one scenario file"));
    }
    for (table, side) in [("baseline", &suite.baseline), ("candidate", &suite.candidate)] {
        if side.image.is_none() && !KNOWN_ZK_VERSIONS.contains(&side.version.as_str()) {
            return Err(problem(
                table,
                "version",
                format!(
                    "`{}`: the harness builds {} (or name an `image` running it)",
                    side.version,
                    KNOWN_ZK_VERSIONS.join(", ")
                ),
            ));
        }
    }
    if suite.baseline == suite.candidate {
        return Err(problem("candidate", "version", "the candidate is the baseline"));
    }
    if suite.upgrade.is_some() && suite.baseline.version == suite.candidate.version {
        return Err(problem(
            "candidate",
            "version",
            "a rolling upgrade moves between two versions: baseline and candidate share one",
        ));
    }
    validate_thresholds(&suite.thresholds)
}

fn validate_thresholds(t: &Thresholds) -> Result<(), Problem> {
    if !(t.unavailability_factor >= 1.0 && t.unavailability_factor <= 100.0) {
        return Err(problem(
            "thresholds",
            "unavailability_factor",
            "a multiple of the baseline's unavailability: 1 (no worse) to 100",
        ));
    }
    if !(t.throughput_share > 0.0 && t.throughput_share <= 1.0) {
        return Err(problem(
            "thresholds",
            "throughput_share",
            "a share of the baseline's throughput: more than 0, at most 1",
        ));
    }
    Ok(())
}

/// A scenario a suite can run on both sides: one that expects to stay valid and
/// does not move versions itself.
fn fits_a_suite(path: &Path, scenario: Scenario) -> Result<Scenario, Problem> {
    if !scenario.expect.valid {
        return Err(problem(
            "",
            "scenarios",
            format!(
                "{} expects a violation (`[expect] valid = false`): a qualification needs every run valid",
                path.display()
            ),
        ));
    }
    if has_rolling_upgrade(&scenario) {
        return Err(problem(
            "",
            "scenarios",
            format!(
                "{} upgrades the ensemble itself: name it in [upgrade] instead",
                path.display()
            ),
        ));
    }
    Ok(scenario)
}

/// The upgrade load must have a rolling upgrade for the suite to aim.
fn an_upgrade_load(path: &Path, scenario: Scenario) -> Result<Scenario, Problem> {
    if !has_rolling_upgrade(&scenario) {
        return Err(problem(
            "upgrade",
            "scenario",
            format!(
                "{} has no `rolling-upgrade` fault to aim at the other version",
                path.display()
            ),
        ));
    }
    if !scenario.expect.valid {
        return Err(problem(
            "upgrade",
            "scenario",
            format!(
                "{} expects a violation: a qualification needs every run valid",
                path.display()
            ),
        ));
    }
    Ok(scenario)
}

fn has_rolling_upgrade(scenario: &Scenario) -> bool {
    scenario.nemesis.faults.iter().any(|f| f.fault == FaultKind::RollingUpgrade)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A suite in a directory with the scenario files it names.
    fn suite_dir(suite: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let scenario = |name: &str, faults: &str| {
            format!(
                "name = \"{name}\"\nduration = \"30s\"\n[cluster]\nnodes = 3\n[workload.native]\nproducers = 1\nconsumers = 1\n[nemesis]\ninterval = \"1h\"\n{faults}"
            )
        };
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("a.toml", scenario("a", "[[nemesis.faults]]\nfault = \"kill\"\n"));
        write("b.toml", scenario("b", ""));
        write(
            "up.toml",
            scenario(
                "up",
                "[[nemesis.faults]]\nfault = \"rolling-upgrade\"\nto_version = \"3.9.6\"\n",
            ),
        );
        write("caught.toml", scenario("caught", "[expect]\nvalid = false\n"));
        let path = dir.path().join("suite.toml");
        std::fs::write(&path, suite).unwrap();
        (dir, path)
    }

    const GOOD: &str = r#"name = "unit"
description = "a test suite"
runs = 2
duration = "20s"
scenarios = ["a.toml", "b.toml"]

[baseline]
version = "3.8.0"

[candidate]
version = "3.9.6"

[upgrade]
scenario = "up.toml"

[thresholds]
unavailability_factor = 1.5
unavailability_slack = "250ms"
throughput_share = 0.8
rollback_required = true
"#;

    fn load(text: &str) -> Result<LoadedSuite, SuiteError> {
        let (_dir, path) = suite_dir(text);
        load_suite(&path)
    }

    fn error(text: &str) -> String {
        let (dir, path) = suite_dir(text);
        let err = load_suite(&path).unwrap_err().to_string();
        err.replace(&dir.path().display().to_string(), "DIR")
    }

    #[test]
    fn a_good_suite_loads_its_scenarios_and_round_trips() {
        let loaded = load(GOOD).unwrap();
        let names: Vec<&str> = loaded.scenarios.iter().map(|(_, s)| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(loaded.upgrade.as_ref().unwrap().1.name, "up");
        assert!(loaded.suite.upgrade.as_ref().unwrap().downgrade, "a rollback unless refused");
        assert_eq!(loaded.suite.thresholds.unavailability_slack, Duration::from_millis(250));
        let again: Suite = toml::from_str(&loaded.suite.to_toml()).unwrap();
        assert_eq!(again, loaded.suite);
    }

    #[test]
    fn an_unknown_key_names_the_file_the_line_the_key_and_the_table() {
        let text = GOOD.replace("throughput_share = 0.8", "throughput_share = 0.8\nthroughput = 1");
        assert_eq!(
            error(&text).split(" (expected").next().unwrap(),
            "DIR/suite.toml:20: unknown key `throughput` in [thresholds]"
        );
    }

    #[test]
    fn a_bad_value_names_its_key_and_line() {
        let err = error(&GOOD.replace("throughput_share = 0.8", "throughput_share = 1.5"));
        assert!(
            err.starts_with("DIR/suite.toml:19: bad value for `throughput_share` in [thresholds]"),
            "{err}"
        );
        let err = error(&GOOD.replace("version = \"3.9.6\"", "version = \"3.7.0\""));
        assert!(
            err.starts_with("DIR/suite.toml:11: bad value for `version` in [candidate]"),
            "{err}"
        );
        let err = error(&GOOD.replace("runs = 2", "runs = 0"));
        assert!(err.starts_with("DIR/suite.toml:3: bad value for `runs`"), "{err}");
        let err = error(
            &GOOD.replace("unavailability_slack = \"250ms\"", "unavailability_slack = \"soon\""),
        );
        assert!(
            err.starts_with("DIR/suite.toml:18: bad value for `unavailability_slack`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_threshold_is_named() {
        let err = error(&GOOD.replace("rollback_required = true\n", ""));
        assert!(err.contains("rollback_required"), "{err}");
    }

    #[test]
    fn a_broken_or_unfit_scenario_is_refused_at_the_scenarios_key() {
        let err = error(&GOOD.replace("\"b.toml\"", "\"missing.toml\""));
        assert!(err.starts_with("DIR/suite.toml:5: bad value for `scenarios`"), "{err}");
        assert!(err.contains("missing.toml"), "{err}");
        let err = error(&GOOD.replace("\"b.toml\"", "\"caught.toml\""));
        assert!(err.contains("expects a violation"), "{err}");
        let err = error(&GOOD.replace("\"b.toml\"", "\"up.toml\""));
        assert!(err.contains("name it in [upgrade]"), "{err}");
        let err = error(&GOOD.replace("scenario = \"up.toml\"", "scenario = \"a.toml\""));
        assert!(
            err.starts_with("DIR/suite.toml:14: bad value for `scenario` in [upgrade]"),
            "{err}"
        );
        let err = error(&GOOD.replace("\"b.toml\"", "\"a.toml\""));
        assert!(err.contains("two scenarios are named `a`"), "{err}");
    }

    #[test]
    fn the_candidate_must_differ_from_the_baseline() {
        let err = error(&GOOD.replace("version = \"3.9.6\"", "version = \"3.8.0\""));
        assert!(err.contains("the candidate is the baseline"), "{err}");
        let image =
            GOOD.replace("version = \"3.9.6\"", "version = \"3.8.0\"\nimage = \"mine:3.8\"");
        let err = error(&image);
        assert!(err.contains("share one"), "an upgrade needs two versions: {err}");
        let no_upgrade = image.replace("[upgrade]\nscenario = \"up.toml\"\n", "");
        assert!(load(&no_upgrade).is_ok(), "two images of one version, without an upgrade");
    }
}
