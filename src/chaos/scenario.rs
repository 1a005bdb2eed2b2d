//! The scenario file: what a chaos run does, as TOML.
//!
//! A scenario is data: it is parsed with unknown keys rejected (a typo must not
//! silently turn a fault off), checked for values that cannot work (a 4-node
//! ensemble, a zombie that never outlives its session), and written back into the
//! run directory as `scenario.toml`, so a run says exactly what it ran.
//!
//! Errors name the file, the line and the key, e.g.
//! `scenarios/x.toml:7: unknown key `foo` in [workload]`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::{BackendKind, SwarmSpec};
use crate::history::HistoryFormat;

pub use crate::cluster::fault::{ClockOffset, FaultKind, PartitionShape, Target, ALL_FAULTS};

/// Largest payload a scenario may ask for: ZooKeeper's default `jute.maxbuffer` is
/// about 1 MB and the envelope needs room of its own.
pub const MAX_PAYLOAD_BYTES: usize = 1_000_000;
/// The most messages a scenario may batch per call.
pub const MAX_BATCH: usize = 256;

/// ZooKeeper versions the harness builds images for (an `image` override lifts this).
pub const KNOWN_ZK_VERSIONS: &[&str] = &["3.8.0", "3.9.3", "3.9.6"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Names the run directory and the reports.
    pub name: String,
    /// What the scenario is for, shown in reports.
    #[serde(default)]
    pub description: String,
    /// How long the workload and the nemesis run (heal and drain come after).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Fixes the fault schedule and the workload's random choices; `--seed` overrides,
    /// and without either a fresh seed is drawn (and printed first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop the workload at the first violation the live checker sees (duplicated
    /// past ack, unexpected, corrupt: a loss is only known after the drain, so it
    /// never stops a run early), then heal, drain, check as usual and also copy
    /// every member's data directory into the run directory. For CI soaks that
    /// should fail fast and keep the evidence; `--stop-on-violation` overrides.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_on_violation: bool,
    /// `plain` (`history.jsonl`, the default) or `gzip` (`history.jsonl.gz`,
    /// streamed and flushed every second): for soaks whose history would run to
    /// gigabytes. `zkmq check`, `report` and `compare` read either.
    #[serde(default, skip_serializing_if = "is_plain")]
    pub history: HistoryFormat,
    pub cluster: ClusterSection,
    pub workload: WorkloadSection,
    #[serde(default)]
    pub nemesis: NemesisSection,
    #[serde(default, rename = "final")]
    pub finish: FinalSection,
    /// What the run is expected to conclude; `expect.valid = false` documents a
    /// scenario built to be caught (legacy).
    #[serde(default)]
    pub expect: ExpectSection,
}

fn is_plain(format: &HistoryFormat) -> bool {
    *format == HistoryFormat::Plain
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Ensemble size: 1, 3, 5 or 7 (an even size adds no fault tolerance).
    pub nodes: usize,
    /// `3.8.0` or `3.9.3`: the image every node starts with.
    #[serde(default = "default_zk_version")]
    pub zk_version: String,
    /// Use this image instead of the harness-built one (e.g. the official `zookeeper:3.9`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Start the REST gateway container; needed by REST workers and gateway faults.
    #[serde(default)]
    pub rest: bool,
    /// ZooKeeper's tickTime: shorter ticks make elections and session expiry faster.
    #[serde(with = "humantime_serde", default = "default_tick")]
    pub tick_time: Duration,
    /// Java heap of each node (`-Xmx`), like `96m` or `1g`: every waiting message
    /// costs heap on every node (README: depth and heap).
    #[serde(default = "default_heap")]
    pub heap: String,
    /// Where the members run: `local` (containers on one Docker engine, the
    /// default) or `swarm` (services spread over the hosts of a Docker Swarm). The
    /// workload, faults, checker and reports are the same on both.
    #[serde(default, skip_serializing_if = "BackendKind::is_local")]
    pub backend: BackendKind,
    /// `[cluster.swarm] hosts = [...]`: the swarm's engine endpoints, a manager
    /// first (default: `$ZKMQ_SWARM_HOSTS`, else `zkmq cluster hosts up`'s).
    #[serde(default, skip_serializing_if = "SwarmSpec::is_empty")]
    pub swarm: SwarmSpec,
    /// Each node's data on a RAM-backed volume of this size (`256m`), so that a
    /// `disk-full` fault can fill it; needed by that fault, unused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_limit: Option<String>,
}

impl ClusterSection {
    /// [`ClusterSection::heap`] in MiB, as the cluster takes it (validated on load).
    pub fn heap_mb(&self) -> u32 {
        crate::cluster::parse_heap_mb(&self.heap).unwrap_or(crate::cluster::DEFAULT_HEAP_MB)
    }

    /// [`ClusterSection::data_limit`] in MiB (validated on load).
    pub fn data_limit_mb(&self) -> Option<u32> {
        self.data_limit.as_deref().and_then(|text| crate::cluster::parse_data_limit_mb(text).ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmChoice {
    /// The protocol of DESIGN.md.
    Safe,
    /// The faithful port of the 2011 code, with its races: the checker must catch it.
    Legacy,
}

impl fmt::Display for AlgorithmChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Safe => "safe",
            Self::Legacy => "legacy",
        })
    }
}

impl std::str::FromStr for AlgorithmChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "safe" => Ok(Self::Safe),
            "legacy" => Ok(Self::Legacy),
            other => Err(format!("unknown algorithm `{other}`: use safe or legacy")),
        }
    }
}

/// Messages per second per producer, or as fast as the queue accepts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a rate in messages per second per producer, or \"unlimited\"")]
pub enum Rate {
    PerSecond(f64),
    Unlimited(UnlimitedWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnlimitedWord {
    Unlimited,
}

impl Rate {
    /// The pause between two sends of one producer; `None` when unlimited.
    pub fn interval(&self) -> Option<Duration> {
        match self {
            Rate::PerSecond(rate) => Some(Duration::from_secs_f64(1.0 / rate)),
            Rate::Unlimited(_) => None,
        }
    }
}

/// How many workers use one access path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    #[serde(default)]
    pub producers: usize,
    #[serde(default)]
    pub consumers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    /// Producers and consumers over ZooKeeper's binary protocol.
    #[serde(default)]
    pub native: Workers,
    /// Producers and consumers through the REST gateway (needs `cluster.rest`).
    #[serde(default)]
    pub rest: Workers,
    /// Per producer.
    #[serde(default = "default_rate")]
    pub rate: Rate,
    /// Payload sizes are drawn uniformly from this range, so small and large znodes mix.
    #[serde(default = "default_payload_min")]
    pub payload_min: usize,
    #[serde(default = "default_payload_max")]
    pub payload_max: usize,
    /// How long a consumer "works" on a message between take and ack: the window in
    /// which a crash leaves a message held.
    #[serde(with = "humantime_serde", default = "default_processing")]
    pub processing_time: Duration,
    /// `safe` or `legacy`; `--algorithm` overrides.
    #[serde(default = "default_algorithm")]
    pub algorithm: AlgorithmChoice,
    /// Every queue operation is bounded by this; past it the outcome is unknown.
    #[serde(with = "humantime_serde", default = "default_op_timeout")]
    pub op_timeout: Duration,
    /// ZooKeeper session timeout of every worker: how long a dead consumer keeps its
    /// message before the janitor may take it back.
    #[serde(with = "humantime_serde", default = "default_session_timeout")]
    pub session_timeout: Duration,
    /// Empty produce orphans older than this are deleted.
    #[serde(with = "humantime_serde", default = "default_orphan_grace")]
    pub orphan_grace: Duration,
    /// REST consumers poll (the gateway has no watches).
    #[serde(with = "humantime_serde", default = "default_poll")]
    pub poll_interval: Duration,
    /// How long a worker keeps retrying an operation whose outcome is unknown
    /// (reconnecting, renewing its session) before reporting it unknown.
    #[serde(with = "humantime_serde", default = "default_retry_budget")]
    pub retry_budget: Duration,
    /// How often an idle consumer runs the janitor, which takes back the messages
    /// of consumers whose session expired.
    #[serde(with = "humantime_serde", default = "default_recovery_interval")]
    pub recovery_interval: Duration,
    /// Messages a producer sends per call (`Producer::send_batch`: two
    /// transactions per batch on the native path); 1 sends one at a time.
    #[serde(default = "default_batch")]
    pub send_batch: usize,
    /// Messages a consumer takes per call (`take_batch`: one transaction native,
    /// as many claims at once on REST), acking them with the next call; 1 takes
    /// one at a time.
    #[serde(default = "default_batch")]
    pub take_batch: usize,
    /// Which REST protocol the REST workers run: `multi` (the native protocols
    /// through the gateway's `multi` extension, what a REST client gets by default),
    /// `v1` (ZooKeeper's v1 interface alone: the claim protocol, what a client of the
    /// contrib gateway gets), or `mixed`: REST workers alternate, the first on `v1`,
    /// so that one run proves both on one queue.
    #[serde(default)]
    pub rest_protocol: RestProtocol,
}

/// See [`WorkloadSection::rest_protocol`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestProtocol {
    #[default]
    Mixed,
    Multi,
    V1,
}

impl RestProtocol {
    /// Whether the `n`th REST worker (from 0, producers first) uses `multi`.
    pub fn uses_multi(self, n: usize) -> bool {
        match self {
            Self::Multi => true,
            Self::V1 => false,
            Self::Mixed => n % 2 == 1,
        }
    }
}

/// One kind of fault the nemesis may draw, with its weight and knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub fault: FaultKind,
    /// Defaults to the verb's natural target (see `FaultKind::default_target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Relative frequency among the scenario's faults.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// How long the fault stays applied; defaults to `nemesis.fault_duration`.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Partitions only: how the network is cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<PartitionShape>,
    /// Loss only: share of packets dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Slow only: bandwidth limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kbit: Option<u32>,
    /// Delay only: added latency.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// Rolling upgrade only: the version every node moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
    /// new-leader-kill, syncing-follower-kill, leader-churn: the kill comes a delay
    /// drawn from 0 to this after the moment the fault waits for (an election; a
    /// follower adopting a new epoch).
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
    /// syncing-follower-kill only: how long the follower stays down first.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub stale: Option<Duration>,
    /// leader-churn only: how many newly elected leaders are killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u32>,
    /// clock-skew only: how far the wall clock steps, like "-2m" or "+90s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<ClockOffset>,
}

impl FaultSpec {
    pub fn target(&self) -> Target {
        self.target.unwrap_or_else(|| self.fault.default_target())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NemesisSection {
    /// The faults to draw from; empty means a fault-free run (a baseline).
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// `random`: each fault drawn by weight; `in-turn`: the listed faults one after
    /// another, round and round (targets still drawn from the seed), so a short run
    /// is sure to see each of them.
    #[serde(default)]
    pub order: FaultOrder,
    /// Quiet time after the workload starts before the first fault.
    #[serde(with = "humantime_serde", default = "default_start_after")]
    pub start_after: Duration,
    /// Minimum time from one fault's start to the next one's start.
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    /// How long each fault stays applied unless its entry says otherwise.
    #[serde(with = "humantime_serde", default = "default_fault_duration")]
    pub fault_duration: Duration,
    /// Quiet recovery window after a fault is undone before the next may start, so
    /// unavailability is measured per fault and the queue gets to recover.
    #[serde(with = "humantime_serde", default = "default_quiet")]
    pub quiet: Duration,
}

/// How the nemesis picks the next fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultOrder {
    #[default]
    Random,
    InTurn,
}

impl Default for NemesisSection {
    fn default() -> Self {
        Self {
            faults: Vec::new(),
            order: FaultOrder::Random,
            start_after: default_start_after(),
            interval: default_interval(),
            fault_duration: default_fault_duration(),
            quiet: default_quiet(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalSection {
    /// After every fault is undone: how long the ensemble may take to regain quorum.
    #[serde(with = "humantime_serde", default = "default_quorum_wait")]
    pub quorum_timeout: Duration,
    /// How long draining `messages` and `partial` may take (it includes waiting for
    /// dead consumers' sessions to expire so the janitor can take their messages back).
    #[serde(with = "humantime_serde", default = "default_drain")]
    pub drain_timeout: Duration,
}

impl Default for FinalSection {
    fn default() -> Self {
        Self { quorum_timeout: default_quorum_wait(), drain_timeout: default_drain() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSection {
    /// Whether the checker should find the run valid. Documentation for people and
    /// tests; the exit code always reports what the checker found.
    #[serde(default = "default_true")]
    pub valid: bool,
    /// Messages may be left in the tree where nothing can move them (the drain
    /// lists them as stuck): reported, not a violation. Default: a violation.
    #[serde(default)]
    pub stuck: bool,
}

impl Default for ExpectSection {
    fn default() -> Self {
        Self { valid: true, stuck: false }
    }
}

fn default_zk_version() -> String {
    "3.8.0".into()
}
fn default_heap() -> String {
    format!("{}m", crate::cluster::DEFAULT_HEAP_MB)
}
fn default_tick() -> Duration {
    Duration::from_millis(500)
}
fn default_rate() -> Rate {
    Rate::PerSecond(20.0)
}
fn default_payload_min() -> usize {
    16
}
fn default_payload_max() -> usize {
    1024
}
fn default_processing() -> Duration {
    Duration::from_millis(20)
}
fn default_algorithm() -> AlgorithmChoice {
    AlgorithmChoice::Safe
}
fn default_op_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(6)
}
fn default_orphan_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_poll() -> Duration {
    Duration::from_millis(100)
}
fn default_retry_budget() -> Duration {
    Duration::from_secs(20)
}
fn default_batch() -> usize {
    1
}
fn default_recovery_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_weight() -> u32 {
    1
}
fn default_start_after() -> Duration {
    Duration::from_secs(5)
}
fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_fault_duration() -> Duration {
    Duration::from_secs(5)
}
fn default_quiet() -> Duration {
    Duration::from_secs(5)
}
fn default_quorum_wait() -> Duration {
    Duration::from_secs(90)
}
fn default_drain() -> Duration {
    Duration::from_secs(90)
}
fn default_true() -> bool {
    true
}

/// A scenario that cannot be read or cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    /// Well-formed but unworkable (a 4-node ensemble, REST workers without a gateway).
    #[error("{path}:{}: {message}", line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Invalid { path: PathBuf, line: Option<usize>, key: String, message: String },
}

/// Reads, parses and validates a scenario file.
pub fn load_scenario(path: &Path) -> Result<Scenario, ScenarioError> {
    let source = std::fs::read_to_string(path)
        .map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
    parse_scenario(&source, path)
}

/// Parses and validates scenario text; `path` only names the file in errors.
pub fn parse_scenario(source: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let scenario: Scenario = toml::from_str(source).map_err(|err| {
        let (line, message) = describe_toml_error(source, &err);
        ScenarioError::Parse { path: path.to_owned(), line, message }
    })?;
    if let Err(problem) = validate(&scenario) {
        let line = locate_key(source, &problem.table, problem.index, &problem.key);
        let table = render_table(&problem.table);
        return Err(ScenarioError::Invalid {
            path: path.to_owned(),
            line,
            key: problem.key.clone(),
            message: format!("bad value for `{}` in {table}: {}", problem.key, problem.message),
        });
    }
    Ok(scenario)
}

impl Scenario {
    /// The scenario as TOML, as written into the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Scenario always serializes")
    }

    /// How many consumers the workload runs, over both access paths.
    pub fn consumer_count(&self) -> usize {
        self.workload.native.consumers + self.workload.rest.consumers
    }
}

/// 1-based line of a byte offset.
fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The `[table]` or `[[table]]` header in force at a byte offset, without brackets.
fn table_at(source: &str, offset: usize) -> Option<String> {
    let before = &source[..offset.min(source.len())];
    before.lines().rev().find_map(|line| {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            Some(line.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        } else {
            None
        }
    })
}

/// The line and a sentence for a TOML error: an unknown key with its table, a bad
/// value with its key. Shared with the suite file (`suite::file`), which reports
/// its errors the same way.
pub(crate) fn describe_toml_error(source: &str, err: &toml::de::Error) -> (usize, String) {
    let raw = err.message().trim().to_string();
    let Some(span) = err.span() else {
        return (1, raw);
    };
    let line = line_of(source, span.start);
    let table = match table_at(source, span.start) {
        Some(table) => format!("[{table}]"),
        None => "the top level".to_string(),
    };
    let message = if let Some(rest) = raw.strip_prefix("unknown field ") {
        // "unknown field `foo`, expected one of `a`, `b`"
        let (key, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
        let expected = expected.trim();
        if expected.is_empty() {
            format!("unknown key {key} in {table}")
        } else {
            format!("unknown key {key} in {table} (expected {expected})")
        }
    } else if let Some(key) = key_of_line(source, &span) {
        format!("bad value for `{key}` in {table}: {raw}")
    } else {
        format!("{raw} (in {table})")
    };
    (line, message)
}

/// The key assigned on the line where a value's span starts (`key = value`).
fn key_of_line(source: &str, span: &Range<usize>) -> Option<String> {
    let start = source[..span.start.min(source.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = &source[start..];
    let line = line.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

pub(crate) fn render_table(table: &str) -> String {
    if table.is_empty() {
        "the top level".into()
    } else {
        format!("[{table}]")
    }
}

/// The line of `key` inside `[table]` (the `index`-th `[[table]]` for arrays of tables).
pub(crate) fn locate_key(
    source: &str,
    table: &str,
    index: Option<usize>,
    key: &str,
) -> Option<usize> {
    let mut current = String::new();
    let mut seen_array_entries: usize = 0;
    let mut header_line = None;
    for (number, line) in source.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            let is_array = trimmed.starts_with("[[");
            current = trimmed.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if current == table {
                if is_array {
                    seen_array_entries += 1;
                }
                let wanted = index.is_none_or(|i| i + 1 == seen_array_entries);
                if wanted && header_line.is_none() {
                    header_line = Some(number + 1);
                }
            }
            continue;
        }
        let in_wanted = current == table && index.is_none_or(|i| i + 1 == seen_array_entries);
        if in_wanted {
            if let Some((k, _)) = trimmed.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return Some(number + 1);
                }
            }
        }
    }
    header_line
}

/// A value that cannot work, and where it is.
struct Problem {
    table: String,
    /// For arrays of tables (`[[nemesis.faults]]`): which entry.
    index: Option<usize>,
    key: String,
    message: String,
}

fn problem(table: &str, index: Option<usize>, key: &str, message: impl Into<String>) -> Problem {
    Problem { table: table.into(), index, key: key.into(), message: message.into() }
}

/// Every section's checks, in file order; the first problem found is reported.
fn validate(s: &Scenario) -> Result<(), Problem> {
    validate_top_level(s)?;
    validate_cluster(&s.cluster)?;
    validate_workload(&s.workload, &s.cluster)?;
    validate_nemesis(s)?;
    validate_final(s)
}

fn validate_top_level(s: &Scenario) -> Result<(), Problem> {
    if s.name.trim().is_empty()
        || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(problem(
            "",
            None,
            "name",
            "use letters, digits, `-`, `_` and `.` (it names the run directory)",
        ));
    }
    if s.duration.is_zero() {
        return Err(problem("", None, "duration", "must be longer than 0s"));
    }
    Ok(())
}

fn validate_cluster(c: &ClusterSection) -> Result<(), Problem> {
    if ![1, 3, 5, 7].contains(&c.nodes) {
        return Err(problem("cluster", None, "nodes", format!("{} nodes: use 1, 3, 5 or 7 (an even ensemble tolerates no more failures than the odd one below it)", c.nodes)));
    }
    if c.image.is_none() && !KNOWN_ZK_VERSIONS.contains(&c.zk_version.as_str()) {
        return Err(problem(
            "cluster",
            None,
            "zk_version",
            format!(
                "`{}`: the harness builds {} (or name an `image`)",
                c.zk_version,
                KNOWN_ZK_VERSIONS.join(", ")
            ),
        ));
    }
    if c.tick_time < Duration::from_millis(100) || c.tick_time > Duration::from_secs(10) {
        return Err(problem("cluster", None, "tick_time", "use 100ms to 10s"));
    }
    if let Err(message) = crate::cluster::parse_heap_mb(&c.heap) {
        return Err(problem("cluster", None, "heap", message));
    }
    if c.backend.is_local() && !c.swarm.is_empty() {
        return Err(problem(
            "cluster.swarm",
            None,
            "hosts",
            "swarm hosts are given but the backend is local: add `backend = \"swarm\"` to [cluster]",
        ));
    }
    if let Some(host) = c.swarm.hosts.iter().find(|host| {
        !["unix://", "tcp://", "http://"].iter().any(|scheme| host.starts_with(scheme))
    }) {
        return Err(problem(
            "cluster.swarm",
            None,
            "hosts",
            format!("`{host}`: name an engine endpoint, like tcp://10.0.0.5:2375 or unix:///var/run/docker.sock"),
        ));
    }
    if let Some(Err(message)) = c.data_limit.as_deref().map(crate::cluster::parse_data_limit_mb) {
        return Err(problem("cluster", None, "data_limit", message));
    }
    if c.data_limit.is_some() && !c.backend.is_local() {
        return Err(problem(
            "cluster",
            None,
            "data_limit",
            "a data limit (for disk-full) needs the local backend: the swarm backend has no size-limited member volumes yet",
        ));
    }
    Ok(())
}

fn validate_workload(w: &WorkloadSection, c: &ClusterSection) -> Result<(), Problem> {
    if w.native.producers + w.rest.producers == 0 {
        return Err(problem(
            "workload",
            None,
            "producers",
            "at least one producer (native or rest) is needed, or nothing is checked",
        ));
    }
    if w.native.consumers + w.rest.consumers == 0 {
        return Err(problem(
            "workload",
            None,
            "consumers",
            "at least one consumer (native or rest) is needed",
        ));
    }
    if (w.rest.producers + w.rest.consumers) > 0 && !c.rest {
        return Err(problem(
            "workload.rest",
            None,
            "producers",
            "REST workers need the gateway: set `rest = true` in [cluster]",
        ));
    }
    if let Rate::PerSecond(rate) = w.rate {
        if !(rate > 0.0 && rate <= 10_000.0) {
            return Err(problem(
                "workload",
                None,
                "rate",
                "messages per second per producer: more than 0 and at most 10000, or \"unlimited\"",
            ));
        }
    }
    if w.payload_min == 0 {
        return Err(problem("workload", None, "payload_min", "at least 1 byte"));
    }
    if w.payload_max < w.payload_min {
        return Err(problem(
            "workload",
            None,
            "payload_max",
            format!("{} is smaller than payload_min {}", w.payload_max, w.payload_min),
        ));
    }
    if w.payload_max > MAX_PAYLOAD_BYTES {
        return Err(problem(
            "workload",
            None,
            "payload_max",
            format!(
                "{} bytes: ZooKeeper's znode limit is about 1 MB (at most {MAX_PAYLOAD_BYTES})",
                w.payload_max
            ),
        ));
    }
    for (key, value) in [("send_batch", w.send_batch), ("take_batch", w.take_batch)] {
        if !(1..=MAX_BATCH).contains(&value) {
            return Err(problem(
                "workload",
                None,
                key,
                format!("{value}: messages per call, from 1 (one at a time) to {MAX_BATCH}"),
            ));
        }
    }
    if w.retry_budget < w.op_timeout {
        return Err(problem("workload", None, "retry_budget", "at least one op_timeout"));
    }
    if w.op_timeout < Duration::from_millis(100) {
        return Err(problem("workload", None, "op_timeout", "at least 100ms"));
    }
    if w.session_timeout < c.tick_time * 2 || w.session_timeout > c.tick_time * 20 {
        return Err(problem(
            "workload",
            None,
            "session_timeout",
            format!(
                "ZooKeeper grants 2 to 20 ticks ({:?} to {:?} with tick_time {:?})",
                c.tick_time * 2,
                c.tick_time * 20,
                c.tick_time
            ),
        ));
    }
    Ok(())
}

fn validate_nemesis(s: &Scenario) -> Result<(), Problem> {
    let n = &s.nemesis;
    if n.interval.is_zero() {
        return Err(problem("nemesis", None, "interval", "must be longer than 0s"));
    }
    if !n.faults.is_empty() && n.faults.iter().all(|f| f.weight == 0) {
        return Err(problem(
            "nemesis.faults",
            Some(0),
            "weight",
            "at least one fault needs a weight above 0",
        ));
    }
    for (i, f) in n.faults.iter().enumerate() {
        validate_fault_aim(s, i, f)?;
        validate_fault_knobs(s, i, f)?;
        validate_no_stray_knobs(i, f)?;
    }
    Ok(())
}

/// A fault entry's target and duration.
fn validate_fault_aim(s: &Scenario, i: usize, f: &FaultSpec) -> Result<(), Problem> {
    let c = &s.cluster;
    let n = &s.nemesis;
    let at = Some(i);
    let target = f.target();
    if !f.fault.allowed_targets().contains(&target) {
        let allowed: Vec<_> = f.fault.allowed_targets().iter().map(|t| t.name()).collect();
        return Err(problem(
            "nemesis.faults",
            at,
            "target",
            format!(
                "`{}` cannot target `{}` (use {})",
                f.fault.name(),
                target.name(),
                allowed.join(", ")
            ),
        ));
    }
    if target == Target::Majority && c.nodes < 2 && f.fault != FaultKind::QuorumLoss {
        return Err(problem(
            "nemesis.faults",
            at,
            "target",
            "a 1-node ensemble has no majority to pick",
        ));
    }
    let duration = f.duration.unwrap_or(n.fault_duration);
    if !f.fault.is_instant() && duration.is_zero() {
        return Err(problem("nemesis.faults", at, "duration", "must be longer than 0s"));
    }
    Ok(())
}

/// The knobs a fault kind needs, and what the scenario must offer it.
fn validate_fault_knobs(s: &Scenario, i: usize, f: &FaultSpec) -> Result<(), Problem> {
    let (c, w) = (&s.cluster, &s.workload);
    let at = Some(i);
    let duration = f.duration.unwrap_or(s.nemesis.fault_duration);
    match f.fault {
        FaultKind::Partition => {
            let Some(shape) = f.shape else {
                return Err(problem("nemesis.faults", at, "fault", "a partition needs `shape`: isolate-one, isolate-leader, halves, majorities-ring or bridge"));
            };
            if c.nodes < 3 {
                return Err(problem(
                    "nemesis.faults",
                    at,
                    "shape",
                    "partitions need at least 3 nodes",
                ));
            }
            if matches!(shape, PartitionShape::MajoritiesRing | PartitionShape::Bridge)
                && c.nodes < 5
            {
                return Err(problem(
                    "nemesis.faults",
                    at,
                    "shape",
                    format!("`{}` needs at least 5 nodes", shape.name()),
                ));
            }
        }
        FaultKind::Loss => match f.percent {
            Some(p) if (1..=100).contains(&p) => {}
            _ => {
                return Err(problem(
                    "nemesis.faults",
                    at,
                    "percent",
                    "loss needs `percent` from 1 to 100",
                ))
            }
        },
        FaultKind::Slow => match f.kbit {
            Some(k) if k >= 8 => {}
            _ => {
                return Err(problem(
                    "nemesis.faults",
                    at,
                    "kbit",
                    "slow needs `kbit` of at least 8",
                ))
            }
        },
        FaultKind::Delay => match f.delay {
            Some(d) if !d.is_zero() => {}
            _ => {
                return Err(problem(
                    "nemesis.faults",
                    at,
                    "delay",
                    "delay needs `delay`, e.g. \"200ms\"",
                ))
            }
        },
        FaultKind::RollingUpgrade => match &f.to_version {
            Some(v) if KNOWN_ZK_VERSIONS.contains(&v.as_str()) && *v != c.zk_version => {}
            Some(v) if *v == c.zk_version => {
                return Err(problem(
                    "nemesis.faults",
                    at,
                    "to_version",
                    format!("the ensemble already runs {v}"),
                ))
            }
            _ => {
                return Err(problem(
                    "nemesis.faults",
                    at,
                    "to_version",
                    format!(
                        "rolling-upgrade needs `to_version`, one of {}",
                        KNOWN_ZK_VERSIONS.join(", ")
                    ),
                ))
            }
        },
        FaultKind::RestKill | FaultKind::RestRestart | FaultKind::RestPause if !c.rest => {
            return Err(problem(
                "nemesis.faults",
                at,
                "fault",
                "gateway faults need `rest = true` in [cluster]",
            ));
        }
        FaultKind::ConsumerCrash | FaultKind::ConsumerZombie if s.consumer_count() == 0 => {
            return Err(problem("nemesis.faults", at, "fault", "consumer faults need consumers"));
        }
        FaultKind::ConsumerZombie if duration <= w.session_timeout => {
            return Err(problem(
                "nemesis.faults",
                at,
                "duration",
                format!(
                    "a zombie must stall longer than the session timeout ({:?}) or it is no zombie",
                    w.session_timeout
                ),
            ));
        }
        FaultKind::QuorumLoss if c.nodes < 3 => {
            return Err(problem(
                "nemesis.faults",
                at,
                "fault",
                "quorum loss needs at least 3 nodes",
            ));
        }
        FaultKind::NewLeaderKill | FaultKind::SyncingFollowerKill | FaultKind::LeaderChurn => {
            validate_window_knobs(s, i, f)?
        }
        FaultKind::DiskFull if c.data_limit.is_none() => {
            return Err(problem(
                "nemesis.faults",
                at,
                "fault",
                "disk-full needs `data_limit` in [cluster], e.g. \"256m\": each node's data \
                 then lives on a RAM-backed volume of that size, which the fault fills",
            ));
        }
        FaultKind::ClockSkew => match f.offset {
            Some(offset) if offset.is_zero() => {
                return Err(problem("nemesis.faults", at, "offset", "a zero offset skews nothing"))
            }
            Some(offset) if offset.millis.unsigned_abs() > MAX_CLOCK_OFFSET.as_millis() as u64 => {
                return Err(problem(
                    "nemesis.faults",
                    at,
                    "offset",
                    format!("at most {} either way", humantime::format_duration(MAX_CLOCK_OFFSET)),
                ))
            }
            _ => {}
        },
        _ => {}
    }
    Ok(())
}

/// How far a clock-skew fault may step a clock: a week covers any NTP mishap.
pub const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most newly elected leaders one leader-churn may kill.
pub const MAX_ROUNDS: u32 = 20;

/// The knobs of the faults aimed at ZooKeeper's weak windows.
fn validate_window_knobs(s: &Scenario, i: usize, f: &FaultSpec) -> Result<(), Problem> {
    let at = Some(i);
    if s.cluster.nodes < 3 {
        return Err(problem(
            "nemesis.faults",
            at,
            "fault",
            format!("`{}` needs at least 3 nodes (an election among survivors)", f.fault.name()),
        ));
    }
    if f.within.is_some_and(|within| within > Duration::from_secs(10)) {
        return Err(problem(
            "nemesis.faults",
            at,
            "within",
            "at most 10s: the window is the first moments after an election",
        ));
    }
    if f.stale.is_some_and(|stale| stale.is_zero() || stale > Duration::from_secs(120)) {
        return Err(problem(
            "nemesis.faults",
            at,
            "stale",
            "from just over 0s to 2m: the follower's backlog is what it syncs",
        ));
    }
    if f.rounds.is_some_and(|rounds| !(1..=MAX_ROUNDS).contains(&rounds)) {
        return Err(problem("nemesis.faults", at, "rounds", format!("1 to {MAX_ROUNDS}")));
    }
    Ok(())
}

/// A knob set on a fault kind it means nothing to.
fn validate_no_stray_knobs(i: usize, f: &FaultSpec) -> Result<(), Problem> {
    let at = Some(i);
    let stray = [
        ("shape", f.shape.is_some() && f.fault != FaultKind::Partition),
        ("percent", f.percent.is_some() && f.fault != FaultKind::Loss),
        ("kbit", f.kbit.is_some() && f.fault != FaultKind::Slow),
        ("delay", f.delay.is_some() && f.fault != FaultKind::Delay),
        ("to_version", f.to_version.is_some() && f.fault != FaultKind::RollingUpgrade),
        (
            "within",
            f.within.is_some()
                && !matches!(
                    f.fault,
                    FaultKind::NewLeaderKill
                        | FaultKind::SyncingFollowerKill
                        | FaultKind::LeaderChurn
                ),
        ),
        ("stale", f.stale.is_some() && f.fault != FaultKind::SyncingFollowerKill),
        ("rounds", f.rounds.is_some() && f.fault != FaultKind::LeaderChurn),
        ("offset", f.offset.is_some() && f.fault != FaultKind::ClockSkew),
    ];
    if let Some((key, _)) = stray.iter().find(|(_, bad)| *bad) {
        return Err(problem(
            "nemesis.faults",
            at,
            key,
            format!("`{key}` means nothing to `{}`", f.fault.name()),
        ));
    }
    Ok(())
}

fn validate_final(s: &Scenario) -> Result<(), Problem> {
    let w = &s.workload;
    if s.finish.quorum_timeout.is_zero() || s.finish.drain_timeout.is_zero() {
        return Err(problem("final", None, "drain_timeout", "timeouts must be longer than 0s"));
    }
    if s.finish.drain_timeout <= w.session_timeout {
        return Err(problem("final", None, "drain_timeout", format!("must exceed the session timeout ({:?}): dead consumers' messages come back only after it", w.session_timeout)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "unit"
description = "a test"
duration = "90s"
seed = 7

[cluster]
nodes = 5
rest = true
tick_time = "500ms"

[workload]
rate = "unlimited"
payload_min = 10
payload_max = 100
processing_time = "5ms"
session_timeout = "4s"

[workload.native]
producers = 2
consumers = 2

[workload.rest]
producers = 1
consumers = 1

[nemesis]
interval = "10s"
fault_duration = "2m"

[[nemesis.faults]]
fault = "kill"
target = "leader"
weight = 2

[[nemesis.faults]]
fault = "partition"
shape = "majorities-ring"

[[nemesis.faults]]
fault = "loss"
percent = 20
duration = "3s"

[final]
drain_timeout = "1m"
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        parse_scenario(text, Path::new("scenarios/x.toml"))
    }

    #[test]
    fn a_good_scenario_parses_and_round_trips() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.duration, Duration::from_secs(90));
        assert_eq!(s.nemesis.fault_duration, Duration::from_secs(120));
        assert_eq!(s.workload.rate, Rate::Unlimited(UnlimitedWord::Unlimited));
        assert_eq!(s.nemesis.faults[0].target(), Target::Leader);
        assert_eq!(s.nemesis.faults[1].shape, Some(PartitionShape::MajoritiesRing));
        assert_eq!(s.seed, Some(7));
        let again = parse(&s.to_toml()).unwrap();
        assert_eq!(s, again);
        assert!(s.to_toml().contains("duration = \"1m 30s\""), "{}", s.to_toml());
    }

    #[test]
    fn stop_on_violation_is_a_top_level_key_that_round_trips() {
        assert!(!parse(GOOD).unwrap().stop_on_violation, "off unless asked");
        let text = GOOD.replace("seed = 7\n", "seed = 7\nstop_on_violation = true\n");
        let s = parse(&text).unwrap();
        assert!(s.stop_on_violation);
        assert!(s.to_toml().contains("stop_on_violation = true"), "{}", s.to_toml());
        assert_eq!(parse(&s.to_toml()).unwrap(), s);
        // Only at the top level: in a table it is an unknown key, with its line.
        let text = GOOD.replace("nodes = 5", "nodes = 5\nstop_on_violation = true");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("scenarios/x.toml:9: unknown key `stop_on_violation` in [cluster]"),
            "{err}"
        );
    }

    #[test]
    fn a_numeric_rate_parses() {
        let s = parse(&GOOD.replace("rate = \"unlimited\"", "rate = 12.5")).unwrap();
        assert_eq!(s.workload.rate.interval(), Some(Duration::from_millis(80)));
    }

    #[test]
    fn an_unknown_key_names_file_line_key_and_table() {
        let text = GOOD.replace("payload_min = 10", "payload_min = 10\nfoo = 3");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("scenarios/x.toml:15: unknown key `foo` in [workload]"), "{err}");
    }

    #[test]
    fn an_unknown_key_in_a_fault_entry_is_rejected() {
        let text = GOOD.replace("percent = 20", "percnt = 20");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown key `percnt` in [nemesis.faults]"), "{err}");
        assert!(err.starts_with("scenarios/x.toml:42:"), "{err}");
    }

    #[test]
    fn a_mistyped_duration_names_the_key() {
        let text = GOOD.replace("processing_time = \"5ms\"", "processing_time = \"soon\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("scenarios/x.toml:16: bad value for `processing_time` in [workload]"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_fault_verb_is_rejected() {
        let text = GOOD.replace("fault = \"kill\"", "fault = \"explode\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("scenarios/x.toml:32: bad value for `fault` in [nemesis.faults]"),
            "{err}"
        );
    }

    #[test]
    fn the_backend_defaults_to_local_and_swarm_hosts_need_the_swarm_backend() {
        let scenario = parse(GOOD).unwrap();
        assert_eq!(scenario.cluster.backend, BackendKind::Local);
        assert!(!scenario.to_toml().contains("backend"), "the default is not written back");
        let swarm = format!(
            "{}\n[cluster.swarm]\nhosts = [\"tcp://10.0.0.5:2375\", \"unix:///var/run/docker.sock\"]\n",
            GOOD.replace("[cluster]\n", "[cluster]\nbackend = \"swarm\"\n")
        );
        let parsed = parse(&swarm).unwrap();
        assert_eq!(parsed.cluster.backend, BackendKind::Swarm);
        assert_eq!(parsed.cluster.swarm.hosts.len(), 2);
        assert_eq!(parse(&parsed.to_toml()).unwrap(), parsed, "written back as read");
        let local_with_hosts =
            format!("{GOOD}\n[cluster.swarm]\nhosts = [\"tcp://10.0.0.5:2375\"]\n");
        let err = parse(&local_with_hosts).unwrap_err().to_string();
        assert!(err.contains("backend = \"swarm\""), "{err}");
        let bad_host = format!(
            "{}\n[cluster.swarm]\nhosts = [\"10.0.0.5\"]\n",
            GOOD.replace("[cluster]\n", "[cluster]\nbackend = \"swarm\"\n")
        );
        let err = parse(&bad_host).unwrap_err().to_string();
        assert!(err.contains("`10.0.0.5`") && err.contains("tcp://"), "{err}");
        let bad_backend = GOOD.replace("[cluster]\n", "[cluster]\nbackend = \"k8s\"\n");
        let err = parse(&bad_backend).unwrap_err().to_string();
        assert!(err.contains("backend"), "{err}");
    }

    #[test]
    fn the_heap_defaults_to_the_clusters_and_a_bad_one_names_the_key() {
        assert_eq!(parse(GOOD).unwrap().cluster.heap_mb(), crate::cluster::DEFAULT_HEAP_MB);
        let big = GOOD.replace("tick_time = \"500ms\"", "tick_time = \"500ms\"\nheap = \"1g\"");
        assert_eq!(parse(&big).unwrap().cluster.heap_mb(), 1024);
        let small = GOOD.replace("tick_time = \"500ms\"", "tick_time = \"500ms\"\nheap = \"8m\"");
        let err = parse(&small).unwrap_err().to_string();
        assert!(err.contains("bad value for `heap` in [cluster]"), "{err}");
    }

    #[test]
    fn four_nodes_is_a_bad_value_with_its_line() {
        let text = GOOD.replace("nodes = 5", "nodes = 4");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("scenarios/x.toml:8: bad value for `nodes` in [cluster]: 4 nodes"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_in_the_second_fault_entry_points_at_that_entry() {
        let text = GOOD.replace("percent = 20", "percent = 200");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("scenarios/x.toml:42: bad value for `percent` in [nemesis.faults]"),
            "{err}"
        );
    }

    #[test]
    fn rest_workers_alternate_protocols_unless_one_is_named() {
        let mixed = parse(GOOD).unwrap().workload.rest_protocol;
        assert_eq!(mixed, RestProtocol::Mixed);
        let firsts: Vec<bool> = (0..4).map(|n| mixed.uses_multi(n)).collect();
        assert_eq!(firsts, [false, true, false, true], "v1 first, then multi, in turn");
        let text = GOOD.replace(
            "session_timeout = \"4s\"",
            "session_timeout = \"4s\"\nrest_protocol = \"v1\"",
        );
        let v1 = parse(&text).unwrap().workload.rest_protocol;
        assert!((0..4).all(|n| !v1.uses_multi(n)));
        let err = parse(&text.replace("\"v1\"", "\"v2\"")).unwrap_err().to_string();
        assert!(err.contains("rest_protocol"), "{err}");
    }

    #[test]
    fn rest_workers_without_a_gateway_are_refused() {
        let text = GOOD.replace("rest = true", "rest = false");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("REST workers need the gateway"), "{err}");
    }

    #[test]
    fn a_partition_without_shape_and_a_stray_knob_are_refused() {
        let err =
            parse(&GOOD.replace("shape = \"majorities-ring\"\n", "")).unwrap_err().to_string();
        assert!(err.contains("needs `shape`"), "{err}");
        let err = parse(&GOOD.replace("target = \"leader\"", "target = \"leader\"\nkbit = 5"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`kbit` means nothing to `kill`"), "{err}");
    }

    /// GOOD with its third fault entry (the loss) replaced by `entry`.
    fn with_fault(entry: &str) -> String {
        GOOD.replace("fault = \"loss\"\npercent = 20\nduration = \"3s\"", entry)
    }

    #[test]
    fn the_window_faults_parse_with_their_knobs_and_round_trip() {
        for entry in [
            "fault = \"syncing-follower-kill\"\nstale = \"3s\"\nwithin = \"5ms\"",
            "fault = \"new-leader-kill\"\nwithin = \"200ms\"",
            "fault = \"leader-churn\"\nrounds = 3\nwithin = \"300ms\"",
        ] {
            let s = parse(&with_fault(entry)).unwrap_or_else(|e| panic!("{entry}: {e}"));
            assert_eq!(parse(&s.to_toml()).unwrap(), s, "{}", s.to_toml());
        }
        let s = parse(&with_fault("fault = \"syncing-follower-kill\"\nstale = \"3s\"")).unwrap();
        assert_eq!(s.nemesis.faults[2].target(), Target::Follower);
        assert_eq!(s.nemesis.faults[2].stale, Some(Duration::from_secs(3)));
        let s = parse(&with_fault("fault = \"leader-churn\"")).unwrap();
        assert_eq!(s.nemesis.faults[2].target(), Target::Leader);
    }

    #[test]
    fn window_faults_refuse_bad_knobs_targets_and_small_ensembles() {
        let cases = [
            ("fault = \"leader-churn\"\nrounds = 0", "bad value for `rounds`", "1 to 20"),
            (
                "fault = \"new-leader-kill\"\nwithin = \"1m\"",
                "bad value for `within`",
                "at most 10s",
            ),
            (
                "fault = \"syncing-follower-kill\"\nstale = \"0s\"",
                "bad value for `stale`",
                "backlog",
            ),
            ("fault = \"new-leader-kill\"\nstale = \"1s\"", "`stale` means nothing", ""),
            ("fault = \"kill\"\nwithin = \"1s\"", "`within` means nothing to `kill`", ""),
            (
                "fault = \"leader-churn\"\ntarget = \"random\"",
                "cannot target `random`",
                "use leader",
            ),
            (
                "fault = \"syncing-follower-kill\"\ntarget = \"leader\"",
                "cannot target `leader`",
                "use follower",
            ),
        ];
        for (entry, said, also) in cases {
            let err = parse(&with_fault(entry)).unwrap_err().to_string();
            assert!(err.contains(said) && err.contains(also), "{entry}: {err}");
            assert!(err.starts_with("scenarios/x.toml:4"), "names the entry's line: {err}");
        }
        let one =
            with_fault("fault = \"new-leader-kill\"").replace("nodes = 5", "nodes = 1").replace(
                "[[nemesis.faults]]\nfault = \"partition\"\nshape = \"majorities-ring\"\n",
                "",
            );
        let err = parse(&one).unwrap_err().to_string();
        assert!(err.contains("needs at least 3 nodes"), "{err}");
    }

    #[test]
    fn disk_full_needs_a_data_limit_and_clock_skew_a_nonzero_offset() {
        let err = parse(&with_fault("fault = \"disk-full\"")).unwrap_err().to_string();
        assert!(err.contains("disk-full needs `data_limit` in [cluster]"), "{err}");
        let limited = with_fault("fault = \"disk-full\"\nduration = \"5s\"")
            .replace("tick_time = \"500ms\"", "tick_time = \"500ms\"\ndata_limit = \"256m\"");
        let s = parse(&limited).unwrap();
        assert_eq!(s.cluster.data_limit_mb(), Some(256));
        assert_eq!(parse(&s.to_toml()).unwrap(), s);
        let err = parse(&limited.replace("\"256m\"", "\"4m\"")).unwrap_err().to_string();
        assert!(
            err.contains("bad value for `data_limit` in [cluster]") && err.contains("32m"),
            "{err}"
        );

        let s = parse(&with_fault("fault = \"clock-skew\"\noffset = \"-90s\"")).unwrap();
        assert_eq!(s.nemesis.faults[2].offset, Some(ClockOffset { millis: -90_000 }));
        assert!(s.to_toml().contains("offset = \"-1m 30s\""), "{}", s.to_toml());
        assert_eq!(parse(&s.to_toml()).unwrap(), s);
        let err =
            parse(&with_fault("fault = \"clock-skew\"\noffset = \"0s\"")).unwrap_err().to_string();
        assert!(err.contains("a zero offset skews nothing"), "{err}");
        let err =
            parse(&with_fault("fault = \"clock-skew\"\noffset = \"-9d\"")).unwrap_err().to_string();
        assert!(err.contains("at most 7days"), "{err}");
        let err = parse(&with_fault("fault = \"clock-skew\"\noffset = \"soon\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad value for `offset`") && err.contains("\"+90s\""), "{err}");
        let err =
            parse(&with_fault("fault = \"clock-skew\"\ntarget = \"all\"")).unwrap_err().to_string();
        assert!(err.contains("cannot target `all`"), "{err}");
    }

    #[test]
    fn the_shipped_sync_bugs_scenario_is_valid_and_plans_its_window_faults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/zk-sync-bugs.toml");
        let s = load_scenario(&path).unwrap();
        assert_eq!((s.cluster.nodes, s.duration), (3, Duration::from_secs(300)));
        let plan = crate::chaos::schedule::plan(&s, 1, s.duration);
        let kinds: std::collections::BTreeSet<&str> = plan.iter().map(|p| p.fault.name()).collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["leader-churn", "new-leader-kill", "syncing-follower-kill"]
        );
        assert!(plan.len() >= 15, "{} faults in 5 minutes", plan.len());
        let sync = plan.iter().find(|p| p.fault == FaultKind::SyncingFollowerKill).unwrap();
        assert_eq!(sync.stale_ms, Some(3000));
    }

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                load_scenario(&path).unwrap_or_else(|err| panic!("{err}"));
                loaded += 1;
            }
        }
        assert!(loaded >= 19, "{loaded} scenarios in {}", dir.display());
    }

    #[test]
    fn a_zombie_shorter_than_the_session_is_refused() {
        let text = GOOD.replace("fault = \"loss\"\npercent = 20", "fault = \"consumer-zombie\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("zombie must stall longer"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("name = \"x\"\nduration = \n").unwrap_err().to_string();
        assert!(err.starts_with("scenarios/x.toml:2:"), "{err}");
    }
}
