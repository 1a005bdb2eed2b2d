//! A run directory, `reports/<timestamp>-<scenario>/`: the one place that names its
//! files and reads and writes each of them.
//!
//! The files are a stable contract (README.md, "The history format" and "Reports"),
//! so other tools can read them, and they are the only input of `zkmq check` and
//! `zkmq report`. Knowing every name and encoding here keeps the writer (the chaos
//! run, or a synthetic run) and the readers (checker, reports, a replay) from
//! drifting apart.
//!
//! This module is plain files and serde types: it knows nothing of ZooKeeper,
//! Docker or the queue, so the checker and the reports can use it without crossing
//! their walls. Where a file's type belongs to a module above this one, rundir owns
//! the name and the encoding and takes the type as a parameter:
//!
//! - `history.jsonl`'s line type and its streaming readers are [`crate::history`]'s
//!   (the checker reads it in its own zero-copy pass); rundir only opens it;
//! - `schedule.json`'s shared part ([`Schedule`]) is here, but the nemesis's plan
//!   beside it is made of scenario types (fault kinds, targets, partition shapes)
//!   that only chaos knows and only a replay reads, so [`ScheduleFile`] is generic
//!   over it;
//! - `results.json` is the report's [`crate::report::Results`], which embeds the
//!   checker's result: rundir writes and reads it as any serde type;
//! - `scenario.toml` is carried as text: chaos writes its own scenario type, and the
//!   report reads only its `[expect]` table.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::history::{HistoryError, HistoryFormat, HistoryWriter};

/// The operation log ([`crate::history`]).
pub const HISTORY: &str = "history.jsonl";
/// The operation log as a gzip stream (`history = "gzip"` in the scenario): a run
/// directory holds this or [`HISTORY`], and every reader takes either.
pub const HISTORY_GZ: &str = "history.jsonl.gz";
/// The faults as they ran ([`ScheduleFile`]).
pub const SCHEDULE: &str = "schedule.json";
/// What the run was ([`RunMeta`]).
pub const RUN: &str = "run.json";
/// The scenario as run.
pub const SCENARIO: &str = "scenario.toml";
/// Periodic observations ([`Sample`]).
pub const SAMPLES: &str = "samples.jsonl";
/// Every figure of the report.
pub const RESULTS: &str = "results.json";
/// The server and gateway logs saved at the end of a run.
pub const LOGS_DIR: &str = "logs";
/// Each member's ZooKeeper data directory (`data/zk<n>/version-2/...`), copied only
/// when a run stopped at its first violation (data directories are big).
pub const DATA_DIR: &str = "data";
/// Each member's own view of the queue tree after the final heal and drain
/// ([`MemberViews`]), from which the checker judges divergence and members that
/// never came back.
pub const MEMBERS: &str = "members.json";
/// Why and when a run stopped before its planned end ([`Stopped`]); absent when it
/// ran its course.
pub const STOPPED: &str = "stopped.json";
/// The verdict and counts in Markdown.
pub const SUMMARY_MD: &str = "summary.md";
/// The self-contained HTML page.
pub const REPORT_HTML: &str = "report.html";
/// One test case per invariant and expectation.
pub const JUNIT_XML: &str = "junit.xml";
/// `plots/<name>.png` and `plots/<name>.svg`.
pub const PLOTS_DIR: &str = "plots";
/// Where `zkmq report --compare` writes by default, in the second run's directory.
pub const COMPARE_MD: &str = "compare.md";

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("cannot create the run directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}{}: not a valid {file}: {source}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        /// Which of the run's files it was meant to be, for a path that does not say
        /// (a `--replay` file can have any name).
        file: &'static str,
        /// 1-based, for files of one JSON object per line.
        line: Option<usize>,
        source: serde_json::Error,
    },
    #[error("{path} has no {HISTORY}: give a run directory or a {HISTORY} file")]
    NoHistory { path: PathBuf },
}

/// `run.json`: what a run was, so a report can say it and a person can repeat it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub scenario: String,
    pub seed: u64,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Planned workload duration in seconds (without heal and drain).
    pub duration_s: f64,
    pub nodes: usize,
    pub zk_version: String,
    /// `safe` or `legacy`.
    pub algorithm: String,
    pub zkmq_version: String,
    /// The exact command that repeats this run (scenario, seed, replayed schedule).
    pub replay_command: String,
}

/// `stopped.json`: a run that stopped its workload before the planned duration
/// because the live checker saw a violation (`--stop-on-violation`). A file of its
/// own, written when it happens, so `zkmq report` can say so from the directory
/// alone and `run.json` stays what was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    /// `first violation`.
    pub reason: String,
    /// Seconds since the run started (the history's clock) of the event that made
    /// the first violation known.
    pub at_s: f64,
    /// The same moment as RFC 3339, UTC.
    pub at: String,
    /// Violations known when the workload was told to stop (duplicated past ack,
    /// unexpected, corrupt; losses are only known after the drain).
    pub violations: u64,
    /// The planned workload duration in seconds, for "stopped at 12 s of 300 s".
    pub planned_s: f64,
}

/// What every reader of `schedule.json` needs: the faults as they actually ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub seed: u64,
    pub faults: Vec<FaultRecord>,
}

/// One fault of the schedule: when it started and ended, and whether it applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Fault verb: `kill`, `partition`, `pause`, `upgrade`, ...
    pub fault: String,
    /// What it was aimed at as scheduled: `leader`, `random`, `minority`, `zk3`, `rest`.
    pub target: String,
    /// What it actually hit (`zk3`, `zk1,zk2`), known once applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// Seconds since the run started: when the nemesis began it (plots shade from here).
    pub start: f64,
    /// When it had fully taken effect (killing three nodes takes a second or two).
    /// Unavailability is measured from here: operations that still succeed while
    /// the fault is being applied say nothing about the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<f64>,
    /// When it was undone; `None` if it never was (the run crashed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<f64>,
    /// False when applying failed or was refused (e.g. netem missing).
    pub applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `schedule.json` as a whole: the shared [`Schedule`] and, beside it under `plan`,
/// what a replay needs (the nemesis's plan, whose type is chaos's). Readers of the
/// shared part alone use [`RunDir::read_schedule`], which ignores the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleFile<Plan> {
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Absent in a schedule nobody can replay (a synthetic run's).
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

// serde's plain `default` would ask `Plan: Default` for no reason.
fn none<T>() -> Option<T> {
    None
}

impl<Plan: Serialize> ScheduleFile<Plan> {
    /// Replaces the file whole (write aside, then rename), so a run that crashes
    /// while writing still leaves the previous, readable schedule.
    pub fn write(&self, path: &Path) -> Result<(), RunDirError> {
        let text = serde_json::to_string_pretty(self).expect("a schedule always serializes");
        let aside = path.with_extension("json.tmp");
        std::fs::write(&aside, text)
            .and_then(|()| std::fs::rename(&aside, path))
            .map_err(|source| RunDirError::Write { path: path.to_owned(), source })
    }
}

impl<Plan: DeserializeOwned> ScheduleFile<Plan> {
    /// Reads a schedule from anywhere (`--replay` names any file).
    pub fn read(path: &Path) -> Result<Self, RunDirError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RunDirError::Read { path: path.to_owned(), source })?;
        parse_json(path, SCHEDULE, &text)
    }
}

/// `members.json`: what each ZooKeeper member held of the queue's tree at the end
/// of a run, each read through that member alone (after a `sync`), so that the
/// checker can tell whether the ensemble converged on one tree and whether every
/// member came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberViews {
    /// The subtree that was read (the queue's root: `<chroot>/queue`); the views'
    /// paths are below it.
    pub root: String,
    /// Seconds since the run started when the last reading began.
    pub t: f64,
    /// How many times the members were read: again while their views differed
    /// (a session expiring between two readings changes the tree), up to a bound.
    pub readings: u32,
    /// How long the capture waited for every member to serve, in seconds.
    pub waited_s: f64,
    pub members: Vec<MemberView>,
}

/// One member as the capture found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// `zk1`, ...
    pub node: String,
    /// What `srvr` said: `leader`, `follower`, `not serving`, `down`, ...
    pub mode: String,
    /// Docker's state of its container: `running`, `exited`, ...
    pub container: String,
    /// Its last zxid, as `srvr` said it (empty when it did not answer).
    #[serde(default)]
    pub zxid: String,
    /// Why its tree could not be read (it did not serve, the read failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every znode under the root, sorted by path; `None` when it was not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub znodes: Option<Vec<ZnodeView>>,
}

/// One znode as a member holds it: enough to tell two copies apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZnodeView {
    /// Below [`MemberViews::root`], e.g. `/messages/message-0000000012`.
    pub path: String,
    /// The zxid that created it (hex): a node deleted and created again differs.
    pub czxid: String,
    /// Its data version.
    pub version: i32,
    /// CRC-32 of its data, and the data's length.
    pub crc: u32,
    pub len: u32,
    /// Bound to a session (a consumer's `status`, the janitor's lock).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

/// One line of `samples.jsonl`: periodic observations for the time plots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sample {
    /// Queue depth: waiting, in `partial`, held by consumers.
    Depth { t: f64, messages: u64, partial: u64, in_flight: u64 },
    /// A node's (or the gateway's, `node: "rest"`) state:
    /// `leader`, `follower`, `standalone`, `down`, `paused`, `partitioned`, `not-serving`.
    Node { t: f64, node: String, state: String, version: String },
    /// The harness itself: its resident memory and the history's size on disk, so
    /// a soak shows both stay bounded.
    Harness { t: f64, rss_mib: f64, history_bytes: u64 },
}

/// Appends samples to `samples.jsonl`, one JSON object per line.
pub struct SamplesWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl SamplesWriter {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers one line; [`Self::flush`] makes it durable.
    pub fn append(&mut self, sample: &Sample) -> Result<(), RunDirError> {
        let mut line = serde_json::to_vec(sample).expect("a Sample always serializes");
        line.push(b'\n');
        self.out.write_all(&line).map_err(|source| self.write_error(source))
    }

    /// Writes what is buffered, so a crashed harness still leaves the samples taken.
    pub fn flush(&mut self) -> Result<(), RunDirError> {
        self.out.flush().map_err(|source| self.write_error(source))
    }

    fn write_error(&self, source: std::io::Error) -> RunDirError {
        RunDirError::Write { path: self.path.clone(), source }
    }
}

/// A run directory: where each of its files is, and their typed read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// An existing (or about to be written) run directory; nothing is checked.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates `<parent>/<name>` (or `<name>-2`, ... when a run of the same scenario
    /// started in the same second) with its `logs/`.
    pub fn create_unique(parent: &Path, name: &str) -> Result<Self, RunDirError> {
        std::fs::create_dir_all(parent)
            .map_err(|source| RunDirError::Create { path: parent.to_owned(), source })?;
        for attempt in 1..100 {
            let root = if attempt == 1 {
                parent.join(name)
            } else {
                parent.join(format!("{name}-{attempt}"))
            };
            match std::fs::create_dir(&root) {
                Ok(()) => {
                    std::fs::create_dir(root.join(LOGS_DIR))
                        .map_err(|source| RunDirError::Create { path: root.clone(), source })?;
                    return Ok(Self { root });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(RunDirError::Create { path: root, source }),
            }
        }
        Err(RunDirError::Create {
            path: parent.join(name),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "99 runs in one second"),
        })
    }

    /// What `zkmq check` accepts: a run directory, or a history file of any name
    /// (whose directory holds the rest of the run). Returns the directory and the
    /// history to read.
    pub fn locate_history(path: &Path) -> Result<(Self, PathBuf), RunDirError> {
        let history = if path.is_dir() { Self::new(path).history_path() } else { path.to_owned() };
        if !history.is_file() {
            return Err(RunDirError::NoHistory { path: path.to_owned() });
        }
        let root = history.parent().map(Path::to_owned).unwrap_or_default();
        Ok((Self { root }, history))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the directory as the reports list it (`plots/depth.svg`).
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }

    /// The history: `history.jsonl.gz` when the run wrote one, else `history.jsonl`.
    pub fn history_path(&self) -> PathBuf {
        let compressed = self.root.join(HISTORY_GZ);
        if compressed.is_file() {
            compressed
        } else {
            self.root.join(HISTORY)
        }
    }

    pub fn has_history(&self) -> bool {
        self.history_path().is_file()
    }

    /// Whether the directory holds a run, finished or not: a run writes `run.json`
    /// first, so a crashed one has at least that (a synthetic or older run may have
    /// only a history, a copied one only its results).
    pub fn is_run(&self) -> bool {
        [RUN, HISTORY, HISTORY_GZ, RESULTS].iter().any(|name| self.root.join(name).is_file())
    }

    /// The run loop's history writer, named after its format.
    pub fn create_history(&self, format: HistoryFormat) -> Result<HistoryWriter, HistoryError> {
        let name = match format {
            HistoryFormat::Plain => HISTORY,
            HistoryFormat::Gzip => HISTORY_GZ,
        };
        HistoryWriter::create(&self.root.join(name), format)
    }

    pub fn scenario_path(&self) -> PathBuf {
        self.root.join(SCENARIO)
    }

    pub fn write_scenario(&self, toml: &str) -> Result<(), RunDirError> {
        write_bytes(&self.scenario_path(), toml.as_bytes())
    }

    pub fn read_scenario(&self) -> Result<Option<String>, RunDirError> {
        read_optional(&self.scenario_path())
    }

    pub fn run_meta_path(&self) -> PathBuf {
        self.root.join(RUN)
    }

    pub fn write_run_meta(&self, meta: &RunMeta) -> Result<(), RunDirError> {
        write_json(&self.run_meta_path(), meta)
    }

    pub fn read_run_meta(&self) -> Result<Option<RunMeta>, RunDirError> {
        let path = self.run_meta_path();
        read_optional(&path)?.map(|text| parse_json(&path, RUN, &text)).transpose()
    }

    pub fn schedule_path(&self) -> PathBuf {
        self.root.join(SCHEDULE)
    }

    pub fn write_schedule<Plan: Serialize>(
        &self,
        file: &ScheduleFile<Plan>,
    ) -> Result<(), RunDirError> {
        file.write(&self.schedule_path())
    }

    /// The shared part of `schedule.json`, if the run has one.
    pub fn read_schedule(&self) -> Result<Option<Schedule>, RunDirError> {
        let path = self.schedule_path();
        read_optional(&path)?.map(|text| parse_json(&path, SCHEDULE, &text)).transpose()
    }

    pub fn samples_path(&self) -> PathBuf {
        self.root.join(SAMPLES)
    }

    /// Starts `samples.jsonl` empty: a chaos run's directory is new, and a synthetic
    /// run written again into the same directory must not keep the old samples.
    pub fn create_samples(&self) -> Result<SamplesWriter, RunDirError> {
        let path = self.samples_path();
        let file = File::create(&path)
            .map_err(|source| RunDirError::Write { path: path.clone(), source })?;
        Ok(SamplesWriter { path, out: BufWriter::new(file) })
    }

    /// Every sample, in file order (none without the file). Like the history, a
    /// sampler killed mid-line leaves a truncated last line: it is ignored.
    pub fn read_samples(&self) -> Result<Vec<Sample>, RunDirError> {
        let path = self.samples_path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RunDirError::Read { path, source }),
        };
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|source| RunDirError::Read { path: path.clone(), source })?;
        let last = lines.iter().rposition(|line| !line.trim().is_empty());
        let mut samples = Vec::with_capacity(lines.len());
        for (index, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(sample) => samples.push(sample),
                Err(_) if Some(index) == last => break,
                Err(source) => {
                    return Err(RunDirError::Parse {
                        path,
                        file: SAMPLES,
                        line: Some(index + 1),
                        source,
                    })
                }
            }
        }
        Ok(samples)
    }

    pub fn results_path(&self) -> PathBuf {
        self.root.join(RESULTS)
    }

    pub fn write_results(&self, results: &impl Serialize) -> Result<PathBuf, RunDirError> {
        let path = self.results_path();
        write_json(&path, results)?;
        Ok(path)
    }

    /// `results.json`, if the reports were written.
    pub fn read_results<Results: DeserializeOwned>(&self) -> Result<Option<Results>, RunDirError> {
        let path = self.results_path();
        read_optional(&path)?.map(|text| parse_json(&path, RESULTS, &text)).transpose()
    }

    /// Where a person looks first when a run is violated.
    pub fn summary_md_path(&self) -> PathBuf {
        self.root.join(SUMMARY_MD)
    }

    pub fn write_summary_md(&self, markdown: &str) -> Result<PathBuf, RunDirError> {
        self.write_text(SUMMARY_MD, markdown)
    }

    pub fn write_junit_xml(&self, xml: &str) -> Result<PathBuf, RunDirError> {
        self.write_text(JUNIT_XML, xml)
    }

    pub fn write_report_html(&self, html: &str) -> Result<PathBuf, RunDirError> {
        self.write_text(REPORT_HTML, html)
    }

    fn write_text(&self, name: &str, text: &str) -> Result<PathBuf, RunDirError> {
        let path = self.root.join(name);
        write_bytes(&path, text.as_bytes())?;
        Ok(path)
    }

    /// `latency-<kind>.hlog`, created empty for the report's HdrHistogram writer.
    pub fn create_latency_log(&self, kind: &str) -> Result<(File, PathBuf), RunDirError> {
        let path = self.root.join(format!("latency-{kind}.hlog"));
        let file = File::create(&path)
            .map_err(|source| RunDirError::Write { path: path.clone(), source })?;
        Ok((file, path))
    }

    /// Creates `plots/` for the plot writer.
    pub fn create_plots_dir(&self) -> Result<(), RunDirError> {
        let dir = self.root.join(PLOTS_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| RunDirError::Write { path: dir, source })
    }

    /// `plots/<stem>.<extension>`: the plot backends write the file themselves.
    pub fn plot_path(&self, stem: &str, extension: &str) -> PathBuf {
        self.root.join(PLOTS_DIR).join(format!("{stem}.{extension}"))
    }

    pub fn read_plot_svg(&self, stem: &str) -> Result<String, RunDirError> {
        let path = self.plot_path(stem, "svg");
        std::fs::read_to_string(&path).map_err(|source| RunDirError::Read { path, source })
    }

    /// The saved server logs (`zk<n>.log`, `rest.log`, named by the cluster that
    /// writes them).
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join(LOGS_DIR)
    }

    pub fn compare_md_path(&self) -> PathBuf {
        self.root.join(COMPARE_MD)
    }

    /// Where the members' data directories are copied (`data/zk<n>/`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join(DATA_DIR)
    }

    pub fn members_path(&self) -> PathBuf {
        self.root.join(MEMBERS)
    }

    pub fn write_members(&self, views: &MemberViews) -> Result<(), RunDirError> {
        write_json(&self.members_path(), views)
    }

    /// `None` for a run that captured no member views (older runs, synthetic ones,
    /// a run interrupted before its end).
    pub fn read_members(&self) -> Result<Option<MemberViews>, RunDirError> {
        let path = self.members_path();
        read_optional(&path)?.map(|text| parse_json(&path, MEMBERS, &text)).transpose()
    }

    pub fn stopped_path(&self) -> PathBuf {
        self.root.join(STOPPED)
    }

    pub fn write_stopped(&self, stopped: &Stopped) -> Result<(), RunDirError> {
        write_json(&self.stopped_path(), stopped)
    }

    /// `None` for a run that was not stopped early.
    pub fn read_stopped(&self) -> Result<Option<Stopped>, RunDirError> {
        let path = self.stopped_path();
        read_optional(&path)?.map(|text| parse_json(&path, STOPPED, &text)).transpose()
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, RunDirError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RunDirError::Read { path: path.to_owned(), source }),
    }
}

fn parse_json<T: DeserializeOwned>(
    path: &Path,
    file: &'static str,
    text: &str,
) -> Result<T, RunDirError> {
    serde_json::from_str(text).map_err(|source| RunDirError::Parse {
        path: path.to_owned(),
        file,
        line: None,
        source,
    })
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RunDirError> {
    let json = serde_json::to_vec_pretty(value).expect("run files always serialize");
    write_bytes(path, &json)
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
    std::fs::write(path, bytes)
        .map_err(|source| RunDirError::Write { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            seed: 7,
            // One that never applied: its optional fields stay out of the file.
            faults: vec![FaultRecord {
                fault: "delay".into(),
                target: "random".into(),
                resolved: None,
                start: 12.5,
                applied_at: None,
                end: None,
                applied: false,
                error: Some("netem is not available".into()),
            }],
        }
    }

    #[test]
    fn a_schedule_without_a_plan_is_written_as_the_plain_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        run.write_schedule(&ScheduleFile::<()> { schedule: schedule(), plan: None }).unwrap();
        let text = std::fs::read_to_string(run.schedule_path()).unwrap();
        assert_eq!(text, serde_json::to_string_pretty(&schedule()).unwrap());
        let file = ScheduleFile::<Vec<u32>>::read(&run.schedule_path()).unwrap();
        assert_eq!(file.plan, None);
    }

    #[test]
    fn a_plan_sits_beside_the_schedule_and_plain_readers_ignore_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let file = ScheduleFile { schedule: schedule(), plan: Some(vec![1u32, 2]) };
        run.write_schedule(&file).unwrap();
        let text = std::fs::read_to_string(run.schedule_path()).unwrap();
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<_, _>>(&text).unwrap().keys().cloned().collect();
        assert_eq!(keys, ["faults", "plan", "seed"], "{text}");
        assert_eq!(ScheduleFile::read(&run.schedule_path()).unwrap(), file);
        assert_eq!(run.read_schedule().unwrap(), Some(schedule()));
    }

    #[test]
    fn missing_optional_files_read_as_none_and_a_missing_history_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(run.read_schedule().unwrap(), None);
        assert_eq!(run.read_run_meta().unwrap(), None);
        assert_eq!(run.read_scenario().unwrap(), None);
        assert!(run.read_samples().unwrap().is_empty());
        assert!(matches!(RunDir::locate_history(dir.path()), Err(RunDirError::NoHistory { .. })));
    }

    #[test]
    fn a_truncated_last_sample_is_ignored_and_damage_before_it_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let mut samples = run.create_samples().unwrap();
        let depth = Sample::Depth { t: 1.0, messages: 3, partial: 0, in_flight: 1 };
        samples.append(&depth).unwrap();
        samples.flush().unwrap();
        let text = std::fs::read_to_string(run.samples_path()).unwrap();
        std::fs::write(run.samples_path(), format!("{text}{{\"kind\":\"de")).unwrap();
        assert_eq!(run.read_samples().unwrap(), [depth]);
        std::fs::write(run.samples_path(), format!("not json\n{text}")).unwrap();
        assert!(matches!(run.read_samples(), Err(RunDirError::Parse { line: Some(1), .. })));
    }

    #[test]
    fn runs_of_one_name_in_one_second_get_their_own_directories() {
        let parent = tempfile::tempdir().unwrap();
        let first = RunDir::create_unique(parent.path(), "smoke").unwrap();
        let second = RunDir::create_unique(parent.path(), "smoke").unwrap();
        assert_eq!(first.root(), parent.path().join("smoke"));
        assert_eq!(second.root(), parent.path().join("smoke-2"));
        assert!(second.logs_dir().is_dir());
    }
}
