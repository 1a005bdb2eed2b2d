//! See the crate's `# Layout`.
//!
//! Suites over runs: `zkmq qualify` ([`qualify`]) and `zkmq bench catch`
//! ([`catch`]) compose ordinary chaos runs and judge across them. They add no second
//! run loop: every run is [`chaos::run`] on a scenario moved to another ZooKeeper
//! ([`on_version`]), writing a normal run directory inside the suite's directory,
//! and what each run concluded is read back from its `results.json`. This module
//! holds what both share: the seed each run derives ([`derive_seed`]), and the
//! [`Runner`] that runs a list one at a time with its progress (run k of n, time
//! left) and stops cleanly on Ctrl-C.

pub mod catch;
pub mod file;
pub mod qualify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::chaos::{self, ChaosError, RunOptions, Say, Scenario};
use crate::report::qualify::{RunEnd, RunStatus, Side};
use crate::report::{self, Results};

/// Seconds a run takes beyond its workload (start-up, heal, quorum, drain,
/// reports) until one has been measured: a 5-node ensemble on 2 cores.
const OVERHEAD_GUESS: Duration = Duration::from_secs(90);

/// Where the scenarios as run are written, inside a suite's directory, so each
/// run's repeat command names a file that says exactly what it ran.
pub const SCENARIOS_DIR: &str = "scenarios";

/// Run `index` of `group` in a suite seeded `suite_seed`: FNV-1a of the group
/// name, mixed with the seed and the index by SplitMix64. The same group and index
/// give the same seed on every side, so a scenario's baseline and candidate runs
/// face the same faults.
pub fn derive_seed(suite_seed: u64, group: &str, index: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in group.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = suite_seed ^ hash ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The scenario on another ZooKeeper (`side`), renamed (`name` names its run
/// directories and cluster).
pub fn on_version(scenario: &Scenario, side: &Side, name: String) -> Scenario {
    let mut moved = scenario.clone();
    moved.name = name;
    moved.cluster.zk_version = side.version.clone();
    moved.cluster.image = side.image.clone();
    moved
}

/// `3.9.6` as a name part (`.` kept: scenario names allow it).
pub fn version_slug(version: &str) -> String {
    version.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect()
}

/// One run of a suite.
#[derive(Debug, Clone)]
pub struct SuiteRun {
    /// What the console calls it: `smoke on 3.8.0 (baseline) #1`.
    pub label: String,
    /// The scenario exactly as it runs (version, duration), without its seed.
    pub scenario: Scenario,
    pub seed: u64,
}

/// How one run ended.
#[derive(Debug)]
pub enum Ran {
    /// It got to a verdict; its results as `results.json` says them.
    Finished { dir: PathBuf, results: Box<Results>, repeat: String, wall: Duration },
    /// The harness or its environment failed.
    Failed { dir: Option<PathBuf>, error: String, repeat: String, wall: Duration },
    /// Ctrl-C or SIGTERM: this run and the rest did not happen.
    Interrupted { dir: Option<PathBuf> },
}

impl Ran {
    /// How the run ended, its directory relative to the suite's; and for a run
    /// that finished, its directory and results.
    pub fn end(self, suite_dir: &Path) -> (RunEnd, Option<(PathBuf, Box<Results>)>) {
        let dir_of = |dir: &Option<PathBuf>| dir.as_ref().map(|dir| relative(suite_dir, dir));
        match self {
            Ran::Finished { dir, results, repeat, wall } => {
                let valid = results.valid;
                let end = RunEnd {
                    dir: Some(relative(suite_dir, &dir)),
                    repeat,
                    status: if valid { RunStatus::Valid } else { RunStatus::Violated },
                    error: None,
                    wall_s: wall.as_secs_f64(),
                };
                (end, Some((dir, results)))
            }
            Ran::Failed { dir, error, repeat, wall } => {
                let end = RunEnd {
                    dir: dir_of(&dir),
                    repeat,
                    status: RunStatus::Failed,
                    error: Some(error),
                    wall_s: wall.as_secs_f64(),
                };
                (end, None)
            }
            Ran::Interrupted { dir } => {
                let mut end = RunEnd::not_run();
                end.dir = dir_of(&dir);
                end.error = Some("interrupted".into());
                (end, None)
            }
        }
    }
}

/// How a suite differs from its file (or the command's defaults), and where it goes.
#[derive(Clone)]
pub struct SuiteOptions {
    /// Runs of each scenario on each version.
    pub runs: Option<u32>,
    /// Overrides every run's workload duration.
    pub duration: Option<Duration>,
    /// The seed every run's seed derives from; without it the suite's, or a fresh
    /// one (printed).
    pub seed: Option<u64>,
    /// Parent of the suite's directory (as for chaos runs: `reports`).
    pub out: PathBuf,
    /// Where progress lines go.
    pub say: Say,
    /// The zkmq binary each run starts as its reaper.
    pub reaper: Option<PathBuf>,
}

/// Runs a suite's runs one at a time inside one directory.
pub struct Runner {
    dir: PathBuf,
    say: Say,
    reaper: Option<PathBuf>,
    started: Instant,
    /// Extra wall time per run beyond its workload, as measured so far.
    overheads: Vec<Duration>,
    stop: Arc<AtomicBool>,
    signals: JoinHandle<()>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.signals.abort();
    }
}

impl Runner {
    /// Runs go into `dir` (created). `reaper`: the zkmq binary each run starts as
    /// its cluster's reaper (see [`RunOptions::reaper`]).
    pub fn new(dir: &Path, say: Say, reaper: Option<PathBuf>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        // Each chaos run watches the signals while it goes; this one covers the
        // moments between runs, so Ctrl-C there stops the suite too.
        let signals = tokio::spawn({
            let stop = stop.clone();
            async move {
                chaos::wait_for_signal().await;
                stop.store(true, Ordering::SeqCst);
            }
        });
        Self {
            dir: dir.to_owned(),
            say,
            reaper,
            started: Instant::now(),
            overheads: Vec::new(),
            stop,
            signals,
        }
    }

    /// Whether Ctrl-C or SIGTERM arrived.
    pub fn interrupted(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Wall time since the runner started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `runs[index]`, saying run k of n and the time left before it and how it
    /// ended after; `None` when interrupted before it started.
    pub async fn run_at(&mut self, runs: &[SuiteRun], index: usize) -> Option<Ran> {
        if self.interrupted() {
            return None;
        }
        (self.say)(&self.progress_line(index, runs));
        let outcome = self.run_one(&runs[index]).await;
        (self.say)(&format!("=== run {} of {} {}", index + 1, runs.len(), describe(&outcome)));
        Some(outcome)
    }

    fn overhead(&self) -> Duration {
        if self.overheads.is_empty() {
            return OVERHEAD_GUESS;
        }
        self.overheads.iter().sum::<Duration>() / self.overheads.len() as u32
    }

    fn progress_line(&self, index: usize, runs: &[SuiteRun]) -> String {
        let left: Duration =
            runs[index..].iter().map(|run| run.scenario.duration + self.overhead()).sum();
        let run = &runs[index];
        format!(
            "=== run {} of {}: {}, seed {} ({} elapsed, about {} left)",
            index + 1,
            runs.len(),
            run.label,
            run.seed,
            minutes(self.elapsed()),
            minutes(left)
        )
    }

    /// Writes the scenario as run, then runs it.
    async fn run_one(&mut self, run: &SuiteRun) -> Ran {
        let scenarios = self.dir.join(SCENARIOS_DIR);
        let path = scenarios.join(format!("{}.toml", run.scenario.name));
        let repeat = format!("zkmq chaos run {} --seed {}", path.display(), run.seed);
        let written = std::fs::create_dir_all(&scenarios)
            .and_then(|()| std::fs::write(&path, run.scenario.to_toml()));
        if let Err(err) = written {
            let error = format!("cannot write {}: {err}", path.display());
            return Ran::Failed { dir: None, error, repeat, wall: Duration::ZERO };
        }
        let before = run_dirs(&self.dir);
        let say = self.say.clone();
        let options = RunOptions {
            seed: Some(run.seed),
            out: Some(self.dir.clone()),
            scenario_path: Some(path),
            say: Some(Arc::new(move |line: &str| say(&format!("  {line}")))),
            reaper: self.reaper.clone(),
            ..RunOptions::default()
        };
        let t0 = Instant::now();
        let outcome = chaos::run(run.scenario.clone(), options).await;
        let wall = t0.elapsed();
        // A run that failed early still made its directory; find it by what is new.
        let made = run_dirs(&self.dir).into_iter().find(|dir| !before.contains(dir));
        match outcome {
            Ok(outcome) => {
                self.overheads.push(wall.saturating_sub(run.scenario.duration));
                let dir = outcome.run_dir;
                match report::load_results(&dir) {
                    Ok(results) => Ran::Finished { dir, results: Box::new(results), repeat, wall },
                    Err(err) => Ran::Failed {
                        dir: Some(dir),
                        error: format!("cannot read its results: {err}"),
                        repeat,
                        wall,
                    },
                }
            }
            Err(ChaosError::Interrupted { .. }) => {
                self.stop.store(true, Ordering::SeqCst);
                Ran::Interrupted { dir: made }
            }
            Err(err) => Ran::Failed { dir: made, error: err.to_string(), repeat, wall },
        }
    }
}

fn describe(ran: &Ran) -> String {
    match ran {
        Ran::Finished { results, wall, .. } => {
            format!("done: {} ({})", results.verdict, minutes(*wall))
        }
        Ran::Failed { error, wall, .. } => format!("FAILED after {}: {error}", minutes(*wall)),
        Ran::Interrupted { .. } => "interrupted: the runs left are not started".to_owned(),
    }
}

/// `3 min`, `1 h 05 min`: for the progress lines.
fn minutes(duration: Duration) -> String {
    let minutes = (duration.as_secs_f64() / 60.0).round() as u64;
    if minutes >= 60 {
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    } else {
        format!("{minutes} min")
    }
}

/// The directories directly inside `dir`.
fn run_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// A path relative to the suite's directory, as its reports name run directories.
pub fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// `<out>/<UTC time>-<kind>-<name>`, created (with `-2`, ... when taken).
pub fn create_suite_dir(out: &Path, kind: &str, name: &str) -> std::io::Result<PathBuf> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .expect("a fixed format");
    std::fs::create_dir_all(out)?;
    for attempt in 1..100 {
        let suffix = if attempt == 1 { String::new() } else { format!("-{attempt}") };
        let dir = out.join(format!("{stamp}-{kind}-{name}{suffix}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "99 suites in one second"))
}

/// Now as RFC 3339, UTC, to the second.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .expect("a fixed format")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_by_group_and_index_and_repeat_for_the_same_ones() {
        let a1 = derive_seed(7, "smoke", 1);
        assert_eq!(a1, derive_seed(7, "smoke", 1), "a seed names its runs");
        let others = [
            derive_seed(7, "smoke", 2),
            derive_seed(7, "leader-kill", 1),
            derive_seed(8, "smoke", 1),
        ];
        assert!(others.iter().all(|&s| s != a1), "{a1} {others:?}");
    }

    #[test]
    fn time_reads_in_minutes_then_hours() {
        assert_eq!(minutes(Duration::from_secs(170)), "3 min");
        assert_eq!(minutes(Duration::from_secs(3900)), "1 h 05 min");
    }
}
