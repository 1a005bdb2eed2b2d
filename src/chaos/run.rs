//! The run loop: scenario → cluster + workload + nemesis → heal → drain → check.
//!
//! Whatever happens after the cluster exists (the end of the schedule, Ctrl-C,
//! SIGTERM, an internal error) goes through one exit path that undoes every fault
//! and removes the cluster unless asked to keep it, so a run leaves nothing behind.
//!
//! With `stop_on_violation` the workload also ends at the first violation the live
//! checker ([`report::Progress`]) sees; the run then heals, drains and checks as
//! usual (so its counts are exact), and before the cluster goes copies every
//! member's data directory into `data/`, next to the logs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::members;
use super::nemesis::{self, Nemesis};
use super::recorder::Recorder;
use super::sampler;
use super::scenario::{AlgorithmChoice, Scenario};
use super::schedule::{self, PlannedFault, ScheduleError};
use super::workload::{WorkerPlan, Workload, WorkloadConfig};
use crate::checker::{self, CheckError};
use crate::cluster::{self, Cluster, ClusterError, ClusterSpec, Owner, ReapPolicy};
use crate::history::{Event, HistoryError, HistoryWriter, Phase};
use crate::queue::{self, Access, Algorithm, Consumer, QueueConfig, QueueError};
use crate::report;
use crate::rundir::{RunDir, RunDirError, RunMeta, Stopped};

/// How long the workload's workers may take to finish their last operation.
const WORKER_STOP_WAIT: Duration = Duration::from_secs(60);
/// On Ctrl-C, how long the fault in progress may take to finish by itself.
const INTERRUPT_GRACE: Duration = Duration::from_secs(10);
/// How long the drain waits for one message.
const DRAIN_TAKE_WAIT: Duration = Duration::from_secs(1);

/// Where a run's console lines go.
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// How a run differs from its scenario file.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Overrides the scenario's seed; with neither, a fresh seed is drawn.
    pub seed: Option<u64>,
    /// Overrides the scenario's duration.
    pub duration: Option<Duration>,
    /// Parent of the run directory (default `reports`).
    pub out: Option<PathBuf>,
    /// Run on this running cluster (its run id) instead of starting one; it is left running.
    pub reuse_cluster: Option<String>,
    /// Leave the cluster running at the end (its run id is printed).
    pub keep_cluster: bool,
    /// Repeat the faults of a recorded `schedule.json` instead of drawing them.
    pub replay: Option<PathBuf>,
    /// Overrides the scenario's algorithm.
    pub algorithm: Option<AlgorithmChoice>,
    /// Overrides the scenario's `stop_on_violation`.
    pub stop_on_violation: Option<bool>,
    /// The scenario's file, to print the command that repeats the run.
    pub scenario_path: Option<PathBuf>,
    /// Where progress lines go (the CLI prints them); None: the log.
    pub say: Option<Say>,
    /// The zkmq binary to start as the run's reaper (`zkmq cluster reap`), which
    /// removes the cluster within seconds if this process is killed (`kill -9`, a
    /// CI timeout). `None`: no reaper (the tests start their own).
    pub reaper: Option<PathBuf>,
}

/// What a finished run concluded.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    /// The checker found every invariant held.
    pub valid: bool,
    pub seed: u64,
    /// The command that repeats this run.
    pub replay_command: String,
    /// One line per invariant, for the console.
    pub summary: Vec<String>,
    /// Set when the workload stopped at the first violation (`stopped.json`).
    pub stopped: Option<Stopped>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("the cluster failed: {0}")]
    Cluster(#[from] ClusterError),
    #[error("the replayed schedule {path} has seed {recorded} but --seed says {asked}")]
    ReplaySeed { path: PathBuf, recorded: u64, asked: u64 },
    #[error("interrupted ({signal}); every fault was undone{}", if *.kept { " and the cluster kept" } else { " and the cluster removed" })]
    Interrupted { signal: String, kept: bool },
    #[error("{what} (in {run_dir})")]
    Harness { what: String, run_dir: PathBuf },
    /// The checker's own error, kept whole so a caller can tell a damaged line
    /// (which one) from a file that cannot be read.
    #[error("cannot check the history: {0}")]
    Check(#[from] CheckError),
}

/// Runs a scenario to its verdict.
pub async fn run(scenario: Scenario, options: RunOptions) -> Result<RunOutcome, ChaosError> {
    let say = console(&options);
    let (seed, replay_plan) = choose_seed(&scenario, &options)?;
    let duration = options.duration.unwrap_or(scenario.duration);
    let algorithm = options.algorithm.unwrap_or(scenario.workload.algorithm);
    let stop_on_violation = options.stop_on_violation.unwrap_or(scenario.stop_on_violation);
    let rerun = rerun_command(&scenario, &options, seed, duration, algorithm);
    say(&format!("seed {seed}   (repeat with: {rerun})"));

    let stamp = time::OffsetDateTime::now_utc();
    let stamp_text = stamp
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .expect("a fixed format");
    let mut as_run = scenario.clone();
    as_run.seed = Some(seed);
    as_run.duration = duration;
    as_run.workload.algorithm = algorithm;
    as_run.stop_on_violation = stop_on_violation;
    let (run_dir, replay_command) = open_run_dir(&as_run, &options, stamp, &stamp_text, &rerun)?;
    say(&format!("run directory {}", run_dir.root().display()));

    let plan = replay_plan.unwrap_or_else(|| schedule::plan(&scenario, seed, duration));
    say(&format!(
        "{} faults planned over {}{}",
        plan.len(),
        humantime::format_duration(duration),
        if options.replay.is_some() { " (replayed)" } else { "" }
    ));

    // Ctrl-C and SIGTERM stop everything, wherever the run is.
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupted: Interrupted = Arc::default();
    let signals = watch_signals(&stop_tx, &interrupted);

    // The cluster: Docker names must be lowercase.
    let run_id =
        options.reuse_cluster.clone().unwrap_or_else(|| docker_run_id(&stamp_text, &scenario.name));
    let owned = options.reuse_cluster.is_none();
    let bring_up = BringUp { scenario: &scenario, options: &options, run_id: &run_id, say: &say };
    let cluster = match bring_up.cluster(&run_dir, stop_rx.clone(), &interrupted).await {
        Ok(cluster) => cluster,
        Err(err) => {
            signals.abort();
            return Err(err);
        }
    };

    let body = Body {
        scenario: &scenario,
        run_dir: &run_dir,
        cluster: cluster.clone(),
        seed,
        duration,
        algorithm,
        plan,
        run_id: &run_id,
        say: &say,
        stop_on_violation,
    };
    let body_result = body.run(stop_rx.clone()).await;

    let keep = options.keep_cluster || !owned;
    // The file, not the body's result: a run that stopped and then failed (no
    // quorum after healing) still keeps its evidence.
    let stopped = run_dir.read_stopped().ok().flatten();
    let leaving = Leave { cluster: &cluster, run_dir: &run_dir, run_id: &run_id, say: &say };
    leaving.run(scenario.cluster.rest, keep, stopped.is_some()).await;
    signals.abort();
    if interrupted.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
        return Err(interrupted_error(&interrupted, keep));
    }
    body_result?;

    let (valid, summary) = verdict(&run_dir, &say)?;
    let run_dir = run_dir.root().to_owned();
    Ok(RunOutcome { run_dir, valid, seed, replay_command, summary, stopped })
}

/// The signal that interrupted the run, once one did.
type Interrupted = Arc<std::sync::Mutex<Option<String>>>;

/// Where the run's console lines go: the caller's `say`, or the log.
fn console(options: &RunOptions) -> impl Fn(&str) + Send + Sync {
    let say = options.say.clone();
    move |line: &str| match &say {
        Some(say) => say(line),
        None => tracing::info!("{line}"),
    }
}

/// The run's seed, and the plan of a replayed schedule (whose seed wins; a
/// `--seed` that disagrees with it is an error).
fn choose_seed(
    scenario: &Scenario,
    options: &RunOptions,
) -> Result<(u64, Option<Vec<PlannedFault>>), ChaosError> {
    match &options.replay {
        Some(path) => {
            let (recorded, plan) = schedule::load_replay(path)?;
            if let Some(asked) = options.seed.filter(|&s| s != recorded) {
                return Err(ChaosError::ReplaySeed { path: path.clone(), recorded, asked });
            }
            Ok((recorded, Some(plan)))
        }
        None => Ok((options.seed.or(scenario.seed).unwrap_or_else(rand::random), None)),
    }
}

/// The command that repeats this run: the scenario, the seed and every override.
fn rerun_command(
    scenario: &Scenario,
    options: &RunOptions,
    seed: u64,
    duration: Duration,
    algorithm: AlgorithmChoice,
) -> String {
    let scenario_path = options
        .scenario_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("scenarios/{}.toml", scenario.name)));
    let mut rerun = format!("zkmq chaos run {} --seed {seed}", scenario_path.display());
    if options.duration.is_some() {
        rerun.push_str(&format!(" --duration {}", humantime::format_duration(duration)));
    }
    if options.algorithm.is_some() {
        rerun.push_str(&format!(" --algorithm {algorithm}"));
    }
    match options.stop_on_violation {
        Some(true) => rerun.push_str(" --stop-on-violation"),
        Some(false) => rerun.push_str(" --stop-on-violation=false"),
        None => {}
    }
    rerun
}

/// Creates the run directory with its fixed files (the scenario as run, with its
/// seed, duration and algorithm filled in; `run.json`). Returns it and the
/// command that replays the run.
fn open_run_dir(
    as_run: &Scenario,
    options: &RunOptions,
    stamp: time::OffsetDateTime,
    stamp_text: &str,
    rerun: &str,
) -> Result<(RunDir, String), ChaosError> {
    let run_dir = RunDir::create_unique(
        &options.out.clone().unwrap_or_else(|| PathBuf::from("reports")),
        &format!("{stamp_text}-{}", as_run.name),
    )?;
    run_dir.write_scenario(&as_run.to_toml())?;
    let replay_command = format!("{rerun} --replay {}", run_dir.schedule_path().display());
    let meta = RunMeta {
        scenario: as_run.name.clone(),
        seed: as_run.seed.expect("the seed as run"),
        started_at: stamp.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339"),
        duration_s: as_run.duration.as_secs_f64(),
        nodes: as_run.cluster.nodes,
        zk_version: as_run.cluster.zk_version.clone(),
        algorithm: as_run.workload.algorithm.to_string(),
        zkmq_version: env!("CARGO_PKG_VERSION").to_string(),
        replay_command: replay_command.clone(),
    };
    run_dir.write_run_meta(&meta)?;
    Ok((run_dir, replay_command))
}

/// Turns `stop` true on Ctrl-C or SIGTERM, noting which in `interrupted`.
fn watch_signals(stop: &watch::Sender<bool>, interrupted: &Interrupted) -> JoinHandle<()> {
    let interrupted = interrupted.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        *interrupted.lock().unwrap_or_else(|p| p.into_inner()) = Some(signal);
        let _ = stop.send(true);
    })
}

/// Getting the run's cluster: a new one, or the running one asked for.
struct BringUp<'a> {
    scenario: &'a Scenario,
    options: &'a RunOptions,
    run_id: &'a str,
    say: &'a (dyn Fn(&str) + Send + Sync),
}

impl BringUp<'_> {
    /// Starts (or attaches to) the cluster, unless interrupted first. A cluster
    /// half started is removed; a reused one that does not fit the scenario is
    /// refused.
    async fn cluster(
        &self,
        run_dir: &RunDir,
        mut stop: watch::Receiver<bool>,
        interrupted: &Interrupted,
    ) -> Result<Cluster, ChaosError> {
        let (s, say, run_id) = (&self.scenario.cluster, self.say, self.run_id);
        let bring_up = async {
            match &self.options.reuse_cluster {
                Some(id) => Cluster::attach(id).await,
                None => {
                    let mut spec = ClusterSpec::new(run_id.to_owned(), s.nodes);
                    spec.zk_version = s.zk_version.clone();
                    spec.image = s.image.clone();
                    spec.rest = s.rest;
                    spec.tick_time_ms = s.tick_time.as_millis() as u32;
                    spec.heap_mb = s.heap_mb();
                    spec.backend = s.backend;
                    spec.swarm = s.swarm.clone();
                    spec.data_limit_mb = s.data_limit_mb();
                    // Only a scenario that steps clocks gets the clock shim in its JVMs.
                    spec.clock_faults = self
                        .scenario
                        .nemesis
                        .faults
                        .iter()
                        .any(|f| f.fault == crate::cluster::fault::FaultKind::ClockSkew);
                    spec.owner = self.start_reaper()?;
                    let progress = |line: &str| say(&format!("cluster: {line}"));
                    Cluster::up(spec, &progress).await
                }
            }
        };
        say(&format!(
            "starting cluster {run_id} ({} nodes, ZooKeeper {}{}{})",
            s.nodes,
            s.zk_version,
            if s.rest { ", REST gateway" } else { "" },
            if s.backend.is_local() { "" } else { ", on a Docker Swarm" }
        ));
        let result = tokio::select! {
            result = bring_up => Some(result),
            _ = stop.wait_for(|s| *s) => None,
        };
        match result {
            Some(Ok(cluster)) if self.options.reuse_cluster.is_some() => {
                self.fits(&cluster, run_dir)?;
                Ok(cluster)
            }
            Some(Ok(cluster)) => Ok(cluster),
            failed => {
                // Whatever part of the cluster exists carries our label.
                if self.options.reuse_cluster.is_none() {
                    let swarm_hosts = &self.scenario.cluster.swarm.hosts;
                    if let Err(err) = cluster::down_run_on(run_id, swarm_hosts).await {
                        tracing::warn!("removing the half-started cluster {run_id}: {err}");
                    }
                }
                Err(match failed {
                    Some(Err(err)) => ChaosError::Cluster(err),
                    _ => interrupted_error(interrupted, false),
                })
            }
        }
    }

    /// The reaper that removes our cluster (and so every fault in it) if this
    /// process dies without doing so; none for a cluster kept on purpose. Returns
    /// the owner to record in the cluster's spec.
    fn start_reaper(&self) -> Result<Option<Owner>, ClusterError> {
        let Some(binary) = self.options.reaper.as_deref().filter(|_| !self.options.keep_cluster)
        else {
            return Ok(None);
        };
        let owner = Owner::current();
        let swarm_hosts = &self.scenario.cluster.swarm.hosts;
        cluster::spawn_reaper(
            binary,
            self.run_id,
            std::process::id(),
            ReapPolicy::Always,
            swarm_hosts,
        )?;
        Ok(owner)
    }

    /// A reused cluster must have the scenario's nodes, and a gateway if it wants one.
    fn fits(&self, cluster: &Cluster, run_dir: &RunDir) -> Result<(), ChaosError> {
        let s = &self.scenario.cluster;
        if cluster.node_ids().len() == s.nodes && (!s.rest || cluster.rest_url().is_some()) {
            return Ok(());
        }
        Err(ChaosError::Harness {
            what: format!(
                "cluster {} has {} nodes{}, the scenario wants {}{}",
                self.run_id,
                cluster.node_ids().len(),
                if cluster.rest_url().is_some() { " and a gateway" } else { " and no gateway" },
                s.nodes,
                if s.rest { " and a gateway" } else { "" }
            ),
            run_dir: run_dir.root().to_owned(),
        })
    }
}

/// The one exit path once the cluster exists.
struct Leave<'a> {
    cluster: &'a Cluster,
    run_dir: &'a RunDir,
    run_id: &'a str,
    say: &'a (dyn Fn(&str) + Send + Sync),
}

impl Leave<'_> {
    /// Undoes every fault, keeps the logs (and, for a run stopped at a violation,
    /// every member's data directory: they are big, and only then worth it),
    /// removes the cluster unless it is to be kept.
    async fn run(&self, rest: bool, keep: bool, keep_data: bool) {
        let (cluster, run_dir, say) = (self.cluster, self.run_dir, self.say);
        if let Err(problems) = nemesis::heal_everything(cluster, rest).await {
            say(&format!("warning: undoing faults at the end: {problems}"));
        }
        if let Err(err) = cluster.save_logs(&run_dir.logs_dir()).await {
            say(&format!("warning: cannot save the node logs: {err}"));
        }
        if keep_data {
            self.save_data().await;
        }
        self.remove(keep).await;
    }

    async fn save_data(&self) {
        let dir = self.run_dir.data_dir();
        match self.cluster.save_data_dirs(&dir).await {
            Ok(copied) => {
                let files: u64 = copied.iter().map(|(_, files)| files).sum();
                (self.say)(&format!(
                    "copied {} members' data directories ({files} files) into {}",
                    copied.len(),
                    dir.display()
                ));
            }
            Err(err) => (self.say)(&format!("warning: cannot copy the data directories: {err}")),
        }
    }

    async fn remove(&self, keep: bool) {
        let (cluster, run_id, say) = (self.cluster, self.run_id, self.say);
        if keep {
            say(&format!(
                "cluster {run_id} left running (remove it with: zkmq cluster down --run {run_id})"
            ));
        } else if let Err(err) = cluster.down().await {
            say(&format!("warning: removing cluster {run_id}: {err}; retrying by label"));
            let _ = cluster::down_run(run_id).await;
        }
    }
}

/// The verdict, from the run directory alone: whether it is valid, and the
/// console summary. Writes the reports on the way.
fn verdict(
    run_dir: &RunDir,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<(bool, Vec<String>), ChaosError> {
    // The reports check the history once; without them the verdict still stands.
    let (result, truncations) = match report::write_reports(run_dir.root()) {
        Ok(reports) => (reports.results.check, reports.results.zookeeper_truncations),
        Err(err) => {
            say(&format!("warning: cannot write the reports: {err}"));
            let result = checker::check_history(&run_dir.history_path())?;
            (result, report::zk_log::scan_dir(&run_dir.logs_dir()))
        }
    };
    Ok((result.valid, report::console_summary(&result, &truncations)))
}

/// A run id Docker accepts (the cluster allows 1-40 of a-z, 0-9, `-`, `_`):
/// `c<yymmddhhmmss><4 random hex>-<scenario>`, readable in `docker ps` and unique
/// even for runs of one scenario started in the same second (tests do that).
fn docker_run_id(stamp: &str, scenario: &str) -> String {
    let digits: String = stamp.chars().filter(char::is_ascii_digit).skip(2).collect();
    let name: String = scenario
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    let mut id = format!("c{digits}{:04x}-{name}", rand::random::<u16>());
    id.truncate(40);
    id.trim_end_matches(['-', '_']).to_string()
}

fn interrupted_error(interrupted: &std::sync::Mutex<Option<String>>, kept: bool) -> ChaosError {
    let signal = interrupted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| "stopped".into());
    ChaosError::Interrupted { signal, kept }
}

/// Waits for Ctrl-C or SIGTERM; returns which (suites watch between their runs too).
pub(crate) async fn wait_for_signal() -> String {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT".to_string(),
                _ = term.recv() => "SIGTERM".to_string(),
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT".to_string()
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C".to_string()
    }
}

/// The part of a run that needs the cluster.
struct Body<'a> {
    scenario: &'a Scenario,
    run_dir: &'a RunDir,
    cluster: Cluster,
    seed: u64,
    duration: Duration,
    algorithm: AlgorithmChoice,
    plan: Vec<PlannedFault>,
    run_id: &'a str,
    say: &'a (dyn Fn(&str) + Send + Sync),
    /// End the workload at the first violation the live checker sees.
    stop_on_violation: bool,
}

impl Body<'_> {
    fn queue_config(&self) -> QueueConfig {
        let w = &self.scenario.workload;
        QueueConfig {
            // A chroot of its own, so a reused cluster's old queue cannot leak in.
            chroot: format!(
                "/zkmq-chaos/{}",
                self.run_dir.root().file_name().and_then(|n| n.to_str()).unwrap_or(self.run_id)
            ),
            algorithm: match self.algorithm {
                AlgorithmChoice::Safe => Algorithm::Safe,
                AlgorithmChoice::Legacy => Algorithm::Legacy,
            },
            op_timeout: w.op_timeout,
            session_timeout: w.session_timeout,
            orphan_grace: w.orphan_grace,
            poll_interval: w.poll_interval,
            retry_budget: w.retry_budget,
            recovery_interval: w.recovery_interval,
            ..QueueConfig::default()
        }
    }

    /// Writes `stopped.json` (the reports and the exit path read it) and says so.
    fn record_stop(&self, at_s: f64, violations: u64) {
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
        let stopped = Stopped {
            reason: "first violation".into(),
            at_s,
            at,
            violations,
            planned_s: self.duration.as_secs_f64(),
        };
        (self.say)(&format!(
            "violation seen at {at_s:.1} s: stopping the workload (stop on violation)"
        ));
        if let Err(err) = self.run_dir.write_stopped(&stopped) {
            (self.say)(&format!("warning: {err}; the data directories will not be copied"));
        }
    }

    fn harness(&self, what: impl Into<String>) -> ChaosError {
        ChaosError::Harness { what: what.into(), run_dir: self.run_dir.root().to_owned() }
    }

    /// Who works over which path, and how: the scenario's workload section.
    fn workload_config(
        &self,
        native: &Access,
        queue_config: &QueueConfig,
    ) -> Result<WorkloadConfig, ChaosError> {
        let s = self.scenario;
        let mut paths = vec![WorkerPlan {
            access: native.clone(),
            path: "native",
            producers: s.workload.native.producers,
            consumers: s.workload.native.consumers,
        }];
        if s.workload.rest.producers + s.workload.rest.consumers > 0 {
            let url = self.cluster.rest_url().ok_or_else(|| {
                self.harness("the scenario has REST workers but the cluster has no gateway")
            })?;
            paths.push(WorkerPlan {
                access: Access::Rest { url },
                path: "rest",
                producers: s.workload.rest.producers,
                consumers: s.workload.rest.consumers,
            });
        }
        Ok(WorkloadConfig {
            paths,
            queue: queue_config.clone(),
            send_interval: s.workload.rate.interval(),
            payload_min: s.workload.payload_min,
            payload_max: s.workload.payload_max,
            processing_time: s.workload.processing_time,
            send_batch: s.workload.send_batch,
            take_batch: s.workload.take_batch,
            rest_protocol: s.workload.rest_protocol,
            seed: self.seed,
        })
    }

    /// Ends the workload phase: the workers finish their operation in progress,
    /// the nemesis its fault (unless interrupted: a long fault such as a rolling
    /// upgrade is not waited for), and every fault is undone.
    async fn stop_workload(
        &self,
        workload: Workload,
        nemesis: &Nemesis,
        nemesis_task: JoinHandle<()>,
        stop: &watch::Receiver<bool>,
    ) {
        let say = self.say;
        let stopped = workload.join(WORKER_STOP_WAIT).await;
        if *stop.borrow() {
            // Interrupted: what the fault in progress left is undone just below,
            // like everything else.
            let abort = nemesis_task.abort_handle();
            if tokio::time::timeout(INTERRUPT_GRACE, nemesis_task).await.is_err() {
                abort.abort();
            }
        } else {
            let _ = nemesis_task.await;
        }
        if let Err(err) = nemesis.heal_everything().await {
            say(&format!("warning: undoing faults: {err}"));
        }
        if let Err(problem) = stopped {
            say(&format!("warning: {problem}"));
        }
    }

    async fn run(self, stop: watch::Receiver<bool>) -> Result<(), ChaosError> {
        let say = self.say;
        let s = self.scenario;
        let native = Access::Native { connect: self.cluster.connect_string() };
        let queue_config = self.queue_config();
        let config = self.workload_config(&native, &queue_config)?;
        let rest_workers = s.workload.rest.producers + s.workload.rest.consumers;
        if rest_workers > 0 {
            let multi =
                (0..rest_workers).filter(|&n| s.workload.rest_protocol.uses_multi(n)).count();
            say(&format!(
                "REST workers: {} on the v1 interface (the claim protocol), {multi} through the gateway's multi extension",
                rest_workers - multi
            ));
        }

        // t = 0: the workload and the schedule start now.
        let progress = report::Progress::new(&s.name, self.duration);
        let writer = self.run_dir.create_history(s.history)?;
        // Whichever way the run ends, the history is complete before it is checked
        // (an aborted task may still hold a clone of the writer).
        let _finish = FinishHistory(writer.clone());
        let history = Recorder::new(writer, Some(progress.clone()));
        let (phase_tx, phase_rx) = watch::channel(false);
        let mut combined = combine(stop.clone(), phase_rx.clone());
        let workload = Workload::start(&config, &history, &combined);
        let nemesis = Arc::new(Nemesis::new(
            self.cluster.clone(),
            history.clone(),
            workload.consumers.clone(),
            self.seed,
            self.plan.clone(),
            self.run_dir.schedule_path(),
            s.cluster.rest,
        )?);
        let nemesis_task = tokio::spawn({
            let nemesis = nemesis.clone();
            let stop = combined.clone();
            async move { nemesis.run(stop).await }
        });
        let sampler = tokio::spawn(sampler::sample(
            self.cluster.clone(),
            native.clone(),
            queue_config.clone(),
            history.clone(),
            workload.counters.clone(),
            self.run_dir.clone(),
            stop.clone(),
        ));

        // The workload phase; the progress view prints the live line.
        let counters = workload.counters.clone();
        let violated = first_violation(&progress, self.stop_on_violation);
        tokio::select! {
            () = tokio::time::sleep(self.duration) => {}
            _ = combined.wait_for(|s| *s) => {}
            at = violated => self.record_stop(at, progress.violations_so_far()),
        }
        let _ = phase_tx.send(true);
        progress.set_phase("healing");
        say("workload done; stopping workers and undoing faults");
        self.stop_workload(workload, &nemesis, nemesis_task, &stop).await;
        if *stop.borrow() {
            sampler.abort();
            progress.finish("interrupted");
            return Ok(());
        }

        // Heal, quorum, drain.
        say(&format!(
            "waiting up to {} for quorum",
            humantime::format_duration(s.finish.quorum_timeout)
        ));
        let quorum = self.cluster.wait_for_quorum(s.finish.quorum_timeout);
        let mut stop_wait = stop.clone();
        tokio::select! {
            result = quorum => result?,
            _ = stop_wait.wait_for(|s| *s) => {
                sampler.abort();
                progress.finish("interrupted");
                return Ok(());
            }
        }
        progress.set_phase("draining");
        let drain =
            drain(&history, &native, &queue_config, s.finish.drain_timeout, stop.clone(), say);
        let drained = drain.await;
        sampler.abort();
        progress.finish(&format!("done: {}", counters.line()));
        let applied = nemesis.records();
        say(&format!(
            "faults: {} applied, {} not applied; {}",
            applied.iter().filter(|r| r.applied).count(),
            applied.iter().filter(|r| !r.applied).count(),
            counters.line()
        ));
        match drained {
            Ok(line) => say(&line),
            Err(line) => say(&format!("warning: {line}")),
        }
        self.capture_members(&queue_config, &history, &stop).await;
        Ok(())
    }

    /// Each member's own view of the queue tree, into `members.json`: the checker
    /// judges from it whether the members converged and whether each came back.
    async fn capture_members(
        &self,
        queue_config: &QueueConfig,
        history: &Recorder,
        stop: &watch::Receiver<bool>,
    ) {
        let say = self.say;
        let root = queue::Tree::new(queue_config).root().to_owned();
        let mut stop = stop.clone();
        let capture = members::capture(&self.cluster, &root, || history.now());
        let views = tokio::select! {
            views = capture => views,
            _ = stop.wait_for(|s| *s) => return,
        };
        let read: Vec<&str> =
            views.members.iter().filter(|m| m.znodes.is_some()).map(|m| m.node.as_str()).collect();
        let unread: Vec<String> = views
            .members
            .iter()
            .filter(|m| m.znodes.is_none())
            .map(|m| format!("{} ({})", m.node, m.error.as_deref().unwrap_or("not read")))
            .collect();
        say(&format!(
            "members: read {} each on its own after the final heal ({} reading{}){}",
            if read.is_empty() { "none".to_owned() } else { read.join(", ") },
            views.readings,
            if views.readings == 1 { "" } else { "s" },
            if unread.is_empty() {
                String::new()
            } else {
                format!("; not read: {}", unread.join(", "))
            }
        ));
        if let Err(err) = self.run_dir.write_members(&views) {
            say(&format!("warning: {err}; divergence will not be checked"));
        }
    }
}

/// Ends the history file when dropped (a gzip history gets its trailer).
struct FinishHistory(HistoryWriter);

impl Drop for FinishHistory {
    fn drop(&mut self) {
        if let Err(err) = self.0.finish() {
            tracing::error!("cannot finish the history: {err}");
        }
    }
}

/// The history time of the first violation the live checker sees; never, when
/// not asked to stop on one.
async fn first_violation(progress: &report::Progress, enabled: bool) -> f64 {
    let mut seen = progress.first_violation();
    if enabled {
        if let Ok(Some(at)) = seen.wait_for(Option::is_some).await.map(|at| *at) {
            return at;
        }
    }
    std::future::pending().await
}

/// A receiver that turns true when either turns true.
fn combine(a: watch::Receiver<bool>, b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let (mut a, mut b) = (a, b);
        tokio::select! {
            _ = a.wait_for(|s| *s) => {}
            _ = b.wait_for(|s| *s) => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// How many consumers drain the queue side by side: one is too slow for a queue a
/// long fault let grow.
const DRAINERS: usize = 3;

/// Takes and acknowledges everything left, running the janitor so messages held by
/// dead consumers come back, until `messages`, `partial` and held are all empty or
/// the time is up. Every take and ack is in the history as process `drain` (and
/// `drain-2`, ... for the other drainers); the drain's own outcome is op `drain`, and
/// when time runs out what is left in the tree is listed (op `leftover`) so the
/// checker calls it stuck, not lost.
async fn drain(
    history: &Recorder,
    access: &Access,
    config: &QueueConfig,
    timeout: Duration,
    stop: watch::Receiver<bool>,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<String, String> {
    say(&format!("draining the queue (up to {})", humantime::format_duration(timeout)));
    let deadline = Instant::now() + timeout;
    record(history, Event::new(history.now(), "drain", "drain", Phase::Invoke));
    let (done_tx, done_rx) = watch::channel(false);
    let finished = combine(stop.clone(), done_rx.clone());
    let mut drainers = Vec::new();
    for i in 1..=DRAINERS {
        let process = if i == 1 { "drain".to_string() } else { format!("drain-{i}") };
        drainers.push(tokio::spawn(drainer(
            process,
            history.clone(),
            access.clone(),
            config.clone(),
            deadline,
            finished.clone(),
        )));
    }
    // The coordinator: janitor and stats once a second until the tree is empty.
    let mut store = None;
    let mut last_stats = None;
    let mut empty = false;
    while Instant::now() < deadline && !*stop.borrow() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if store.is_none() {
            store = queue::connect(access, config).await.ok();
        }
        let Some(s) = &store else { continue };
        if let Err(err) = queue::recover(s.as_ref(), config).await {
            tracing::debug!("drain: janitor: {err}");
        }
        match queue::stats(s.as_ref(), config).await {
            Ok(stats) => {
                last_stats = Some(stats);
                if stats.messages + stats.partial + stats.in_flight == 0 {
                    empty = true;
                    break;
                }
            }
            Err(err) => tracing::debug!("drain: stats: {err}"),
        }
    }
    let _ = done_tx.send(true);
    let (mut taken, mut acked) = (0u64, 0u64);
    for d in drainers {
        if let Ok((t, a)) = d.await {
            taken += t;
            acked += a;
        }
    }
    let finish = |phase: Phase, detail: String| {
        let mut e = Event::new(history.now(), "drain", "drain", phase);
        e.detail = Some(detail.clone());
        if phase != Phase::Ok {
            e.error = Some(detail);
        }
        record(history, e);
    };
    if empty {
        let line = format!("drained: {taken} taken, {acked} acknowledged; the queue is empty");
        finish(Phase::Ok, line.clone());
        return Ok(line);
    }
    if store.is_none() {
        store = queue::connect(access, config).await.ok();
    }
    let mut listed = 0;
    if let Some(s) = &store {
        for leftover in queue::leftovers(s.as_ref(), config).await.messages {
            let mut e = Event::new(history.now(), "drain", "leftover", Phase::Info);
            e.msg = Some(leftover.id.to_string());
            e.node = Some(leftover.path);
            record(history, e);
            listed += 1;
        }
    }
    let left = match last_stats {
        Some(s) => {
            format!("{} waiting, {} in partial, {} held", s.messages, s.partial, s.in_flight)
        }
        None => "unknown (no stats)".into(),
    };
    let line = format!(
        "drain incomplete after {}: {taken} taken, {acked} acknowledged; left: {left} ({listed} listed as stuck)",
        humantime::format_duration(timeout)
    );
    finish(Phase::Fail, line.clone());
    Err(line)
}

fn record(history: &Recorder, mut e: Event) {
    if e.path.is_none() {
        e.path = Some("native".into());
    }
    if let Err(err) = history.record(&e) {
        tracing::error!("cannot write the history: {err}");
    }
}

/// One drain consumer: take and ack until told to finish or out of time.
async fn drainer(
    process: String,
    history: Recorder,
    access: Access,
    config: QueueConfig,
    deadline: Instant,
    finished: watch::Receiver<bool>,
) -> (u64, u64) {
    let (mut taken, mut acked) = (0u64, 0u64);
    let mut consumer: Option<Consumer> = None;
    while Instant::now() < deadline && !*finished.borrow() {
        let c = match consumer.as_mut() {
            Some(c) => c,
            None => match Consumer::register(access.clone(), config.clone()).await {
                Ok(c) => consumer.insert(c),
                Err(err) => {
                    tracing::debug!("{process}: cannot register yet: {err}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        record(&history, Event::new(history.now(), &process, "take", Phase::Invoke));
        match c.take(DRAIN_TAKE_WAIT).await {
            Ok(Some(d)) => {
                taken += 1;
                let mut e = Event::new(history.now(), &process, "take", Phase::Ok);
                e.msg = Some(d.id.to_string());
                e.checksum = Some(d.checksum);
                e.node = Some(d.source.clone());
                e.latency_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
                record(&history, e);
                let t1 = Instant::now();
                let mut e = Event::new(history.now(), &process, "ack", Phase::Invoke);
                e.msg = Some(d.id.to_string());
                record(&history, e);
                let (phase, error) = match c.ack(&d).await {
                    Ok(()) => {
                        acked += 1;
                        (Phase::Ok, None)
                    }
                    Err(QueueError::TakenBack) => (Phase::Fail, Some("taken back".to_string())),
                    Err(err) if err.is_unknown_outcome() => (Phase::Info, Some(err.to_string())),
                    Err(err) => (Phase::Fail, Some(err.to_string())),
                };
                let mut e = Event::new(history.now(), &process, "ack", phase);
                e.msg = Some(d.id.to_string());
                e.error = error;
                e.latency_ms = Some(t1.elapsed().as_secs_f64() * 1000.0);
                record(&history, e);
            }
            Ok(None) => {
                let mut e = Event::new(history.now(), &process, "take", Phase::Fail);
                e.error = Some("empty".into());
                record(&history, e);
            }
            Err(err) => {
                let unknown = err.is_unknown_outcome();
                let mut e = Event::new(
                    history.now(),
                    &process,
                    "take",
                    if unknown { Phase::Info } else { Phase::Fail },
                );
                e.error = Some(err.to_string());
                record(&history, e);
                if unknown {
                    // What it may hold comes back through the janitor.
                    if let Some(c) = consumer.take() {
                        c.crash();
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    if let Some(c) = consumer {
        c.close().await;
    }
    (taken, acked)
}
