//! `zkmq qualify SUITE`: every scenario of the suite on the baseline and on the
//! candidate (run k of a scenario with one seed on both, the two runs back to
//! back so that the machine's load drifts alike), then the rolling upgrade
//! baseline → candidate and the rollback candidate → baseline under the suite's
//! load, then the verdict ([`crate::report::qualify`]).
//!
//! Everything goes into one qualification directory: `suite.toml` (the suite as
//! run, its seed filled in), `scenarios/` (each scenario as run: the repeat
//! command of a run names its file), every run directory, and the reports, which
//! are written again after each run so a qualification cut short still leaves
//! them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{LoadedSuite, SuiteError};
use super::{
    create_suite_dir, derive_seed, on_version, version_slug, Ran, Runner, SuiteOptions, SuiteRun,
};
use crate::chaos::scenario::FaultKind;
use crate::chaos::{parse_scenario, schedule, Scenario};
use crate::report::qualify::{
    judge, write_qualification, Qualification, QualifyFiles, QualifyRun, Role, Side, SuiteInfo,
};
use crate::report::ReportError;

#[derive(Debug, thiserror::Error)]
pub enum QualifyError {
    #[error(transparent)]
    Suite(#[from] SuiteError),
    #[error("cannot create the qualification directory under {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// A planned run: its record (filled in as it ends) and what to run.
#[derive(Debug, Clone)]
pub struct Planned {
    pub record: QualifyRun,
    pub run: SuiteRun,
}

/// What a qualification concluded and wrote.
#[derive(Debug)]
pub struct Qualified {
    pub dir: PathBuf,
    pub qualification: Qualification,
    pub files: QualifyFiles,
}

/// Every run of a suite, in the order they run: per scenario, run k on the
/// baseline then on the candidate; then upgrade k and rollback k.
pub fn plan(
    loaded: &LoadedSuite,
    seed: u64,
    runs: u32,
    duration: Option<Duration>,
) -> Result<Vec<Planned>, SuiteError> {
    let suite = &loaded.suite;
    let (baseline, candidate) = (&suite.baseline, &suite.candidate);
    let mut planned = Vec::new();
    for (path, scenario) in &loaded.scenarios {
        for index in 1..=runs {
            let seed = derive_seed(seed, &scenario.name, index);
            for (role, side) in [(Role::Baseline, baseline), (Role::Candidate, candidate)] {
                let name = format!(
                    "{}-{}-{}",
                    scenario.name,
                    role_slug(role),
                    version_slug(&side.version)
                );
                let moved =
                    checked(path, with_duration(on_version(scenario, side, name), duration))?;
                let record = QualifyRun::planned(&scenario.name, role, &side.version, index, seed);
                let label = record.label();
                planned.push(Planned { record, run: SuiteRun { label, scenario: moved, seed } });
            }
        }
    }
    let Some((path, load)) = &loaded.upgrade else { return Ok(planned) };
    let downgrade = suite.upgrade.as_ref().is_some_and(|u| u.downgrade);
    for index in 1..=runs {
        let seed = derive_seed(seed, "upgrade", index);
        let mut directions = vec![(Role::Upgrade, baseline, candidate)];
        if downgrade {
            directions.push((Role::Downgrade, candidate, baseline));
        }
        for (role, from, to) in directions {
            let group = role_slug(role);
            let name =
                format!("{group}-{}-to-{}", version_slug(&from.version), version_slug(&to.version));
            let moved = checked(path, upgrade_to(load, from, to, name, duration)?)?;
            aimed_in_time(path, &moved, seed)?;
            let mut record = QualifyRun::planned(group, role, &from.version, index, seed);
            record.to_version = Some(to.version.clone());
            let label = record.label();
            planned.push(Planned { record, run: SuiteRun { label, scenario: moved, seed } });
        }
    }
    Ok(planned)
}

fn role_slug(role: Role) -> &'static str {
    match role {
        Role::Baseline => "baseline",
        Role::Candidate => "candidate",
        Role::Upgrade => "upgrade",
        Role::Downgrade => "downgrade",
    }
}

fn with_duration(mut scenario: Scenario, duration: Option<Duration>) -> Scenario {
    if let Some(duration) = duration {
        scenario.duration = duration;
    }
    scenario
}

/// The upgrade load starting on `from`, its rolling upgrades aimed at `to`. The
/// rolling upgrade moves nodes to a harness-built version, so `to` cannot be an
/// image of its own.
fn upgrade_to(
    load: &Scenario,
    from: &Side,
    to: &Side,
    name: String,
    duration: Option<Duration>,
) -> Result<Scenario, SuiteError> {
    if let Some(image) = &to.image {
        return Err(SuiteError::Unworkable {
            message: format!(
                "the rolling upgrade moves nodes to harness-built versions, not to the image {image}: \
                 name {} without `image`, or drop [upgrade]",
                to.version
            ),
        });
    }
    let mut moved = with_duration(on_version(load, from, name), duration);
    // The load's own description names the versions it was written for.
    moved.description = format!(
        "rolling move from ZooKeeper {} to {}, one node at a time keeping its data, under the \
         load of `{}`",
        from.version, to.version, load.name
    );
    for fault in &mut moved.nemesis.faults {
        if fault.fault == FaultKind::RollingUpgrade {
            fault.to_version = Some(to.version.clone());
        }
    }
    Ok(moved)
}

/// The scenario as it will run passes the scenario checks (a version the harness
/// cannot build, a duration its faults do not fit).
fn checked(path: &Path, scenario: Scenario) -> Result<Scenario, SuiteError> {
    let as_run = PathBuf::from(format!("{} (as `{}`)", path.display(), scenario.name));
    parse_scenario(&scenario.to_toml(), &as_run)
        .map_err(|err| SuiteError::Unworkable { message: err.to_string() })
}

/// The upgrade must happen while the workload runs: a duration shorter than the
/// nemesis's start would plan no fault at all.
fn aimed_in_time(path: &Path, scenario: &Scenario, seed: u64) -> Result<(), SuiteError> {
    let planned = schedule::plan(scenario, seed, scenario.duration);
    if planned.iter().any(|f| f.fault == FaultKind::RollingUpgrade) {
        return Ok(());
    }
    Err(SuiteError::Unworkable {
        message: format!(
            "{}: no rolling upgrade starts within {} of workload (its nemesis starts after {}): use a longer --duration",
            path.display(),
            humantime::format_duration(scenario.duration),
            humantime::format_duration(scenario.nemesis.start_after)
        ),
    })
}

/// Runs a suite to its verdict and writes the qualification directory.
pub async fn qualify(
    loaded: &LoadedSuite,
    options: SuiteOptions,
) -> Result<Qualified, QualifyError> {
    let suite = &loaded.suite;
    let say = options.say.clone();
    let seed = options.seed.or(suite.seed).unwrap_or_else(rand::random);
    let runs = options.runs.unwrap_or(suite.runs);
    let duration = options.duration.or(suite.duration);
    let mut planned = plan(loaded, seed, runs, duration)?;

    let dir = create_suite_dir(&options.out, "qualify", &suite.name)
        .map_err(|source| QualifyError::Create { path: options.out.clone(), source })?;
    let mut as_run = suite.clone();
    (as_run.seed, as_run.runs, as_run.duration) = (Some(seed), runs, duration);
    std::fs::write(dir.join("suite.toml"), as_run.to_toml())
        .map_err(|source| QualifyError::Create { path: dir.clone(), source })?;
    let mut repeat = format!("zkmq qualify {} --seed {seed}", loaded.path.display());
    if options.runs.is_some() {
        repeat.push_str(&format!(" --runs {runs}"));
    }
    if let Some(d) = options.duration {
        repeat.push_str(&format!(" --duration {}", humantime::format_duration(d)));
    }
    say(&format!(
        "qualifying ZooKeeper {} against {}: {} runs, suite seed {seed} (repeat with: {repeat})",
        suite.candidate,
        suite.baseline,
        planned.len()
    ));
    say(&format!("qualification directory {}", dir.display()));

    let info = SuiteInfo {
        name: suite.name.clone(),
        description: suite.description.clone(),
        file: loaded.path.display().to_string(),
        seed,
        runs,
        duration_s: duration.map(|d| d.as_secs_f64()),
        scenarios: loaded.scenarios.iter().map(|(_, s)| s.name.clone()).collect(),
        started_at: super::now_rfc3339(),
        wall_s: 0.0,
        interrupted: false,
    };
    let mut runner = Runner::new(&dir, say.clone(), options.reaper.clone());
    let to_run: Vec<SuiteRun> = planned.iter().map(|p| p.run.clone()).collect();
    // The reports are written after each run (a qualification cut short keeps
    // them), and once more at the end with the whole wall time and whether it was
    // interrupted (between two runs, too).
    let judged = |planned: &[Planned], runner: &Runner| {
        let mut info = info.clone();
        info.wall_s = runner.elapsed().as_secs_f64();
        info.interrupted = runner.interrupted();
        judge_planned(info, loaded, planned)
    };
    for index in 0..to_run.len() {
        let Some(ran) = runner.run_at(&to_run, index).await else { break };
        record(&mut planned[index].record, &dir, ran);
        write_qualification(&judged(&planned, &runner), &dir)?;
    }
    let qualification = judged(&planned, &runner);
    let files = write_qualification(&qualification, &dir)?;
    Ok(Qualified { dir, qualification, files })
}

fn judge_planned(info: SuiteInfo, loaded: &LoadedSuite, planned: &[Planned]) -> Qualification {
    let suite = &loaded.suite;
    judge(
        info,
        suite.baseline.clone(),
        suite.candidate.clone(),
        suite.thresholds,
        planned.iter().map(|p| p.record.clone()).collect(),
    )
}

/// What a run's end says about it, into its record.
fn record(record: &mut QualifyRun, suite_dir: &Path, ran: Ran) {
    let (end, finished) = ran.end(suite_dir);
    record.end = end;
    if let Some((dir, results)) = finished {
        record.finish(&dir, &results);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::file::parse_suite;

    fn loaded(runs: u32, downgrade: bool) -> (tempfile::TempDir, LoadedSuite) {
        let dir = tempfile::tempdir().unwrap();
        let scenario = |name: &str, faults: &str| {
            format!(
                "name = \"{name}\"\nduration = \"2m\"\n[cluster]\nnodes = 3\n[workload.native]\nproducers = 1\nconsumers = 1\n[nemesis]\nstart_after = \"10s\"\ninterval = \"1h\"\n{faults}"
            )
        };
        std::fs::write(
            dir.path().join("a.toml"),
            scenario("a", "[[nemesis.faults]]\nfault = \"kill\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("up.toml"),
            scenario(
                "up",
                "[[nemesis.faults]]\nfault = \"rolling-upgrade\"\nto_version = \"3.9.3\"\n",
            ),
        )
        .unwrap();
        let text = format!(
            "name = \"unit\"\nruns = {runs}\nscenarios = [\"a.toml\"]\n[baseline]\nversion = \"3.8.0\"\n[candidate]\nversion = \"3.9.6\"\n[upgrade]\nscenario = \"up.toml\"\ndowngrade = {downgrade}\n[thresholds]\nunavailability_factor = 1.5\nunavailability_slack = \"250ms\"\nthroughput_share = 0.8\nrollback_required = true\n"
        );
        let loaded = parse_suite(&text, &dir.path().join("suite.toml")).unwrap();
        (dir, loaded)
    }

    #[test]
    fn pairs_run_back_to_back_with_one_seed_and_the_upgrade_is_aimed_both_ways() {
        let (_dir, loaded) = loaded(2, true);
        let planned = plan(&loaded, 42, 2, Some(Duration::from_secs(30))).unwrap();
        let labels: Vec<String> = planned.iter().map(|p| p.run.label.clone()).collect();
        assert_eq!(
            labels,
            [
                "a on 3.8.0 (baseline) #1",
                "a on 3.9.6 (candidate) #1",
                "a on 3.8.0 (baseline) #2",
                "a on 3.9.6 (candidate) #2",
                "upgrade 3.8.0 → 3.9.6 #1",
                "downgrade 3.9.6 → 3.8.0 #1",
                "upgrade 3.8.0 → 3.9.6 #2",
                "downgrade 3.9.6 → 3.8.0 #2",
            ]
        );
        assert_eq!(planned[0].run.seed, planned[1].run.seed, "a pair shares its seed");
        assert_ne!(planned[0].run.seed, planned[2].run.seed, "runs of a scenario do not");
        let (baseline, candidate) = (&planned[0].run.scenario, &planned[1].run.scenario);
        assert_eq!(
            (baseline.cluster.zk_version.as_str(), baseline.name.as_str()),
            ("3.8.0", "a-baseline-3.8.0")
        );
        assert_eq!(candidate.cluster.zk_version, "3.9.6");
        assert_eq!(candidate.duration, Duration::from_secs(30), "the duration override");
        let downgrade = &planned[5].run.scenario;
        assert_eq!(downgrade.cluster.zk_version, "3.9.6");
        assert_eq!(downgrade.nemesis.faults[0].to_version.as_deref(), Some("3.8.0"));
        assert_eq!(planned[4].run.scenario.nemesis.faults[0].to_version.as_deref(), Some("3.9.6"));
    }

    #[test]
    fn without_a_rollback_only_the_upgrade_runs() {
        let (_dir, loaded) = loaded(1, false);
        let roles: Vec<Role> =
            plan(&loaded, 1, 1, None).unwrap().iter().map(|p| p.record.role).collect();
        assert_eq!(roles, [Role::Baseline, Role::Candidate, Role::Upgrade]);
    }

    #[test]
    fn a_duration_too_short_for_the_upgrade_to_start_is_refused() {
        let (_dir, loaded) = loaded(1, true);
        let err = plan(&loaded, 1, 1, Some(Duration::from_secs(5))).unwrap_err().to_string();
        assert!(err.contains("no rolling upgrade starts within 5s"), "{err}");
    }
}
