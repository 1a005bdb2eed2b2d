//! A ZooKeeper ensemble in Docker, and the faults the chaos harness injects into it.
//!
//! - [`ensure_images`] builds `zkmq/zookeeper:<version>` from Debian packages (the
//!   recipe is `cluster/build-rootfs.sh`; no registry needed).
//! - [`Cluster::up`] starts a labelled ensemble (plus, optionally, the REST gateway)
//!   and returns once a quorum serves; [`Cluster::attach`] finds a running one.
//! - Node operations ([`Cluster::kill`], [`Cluster::partition`], [`Cluster::upgrade`],
//!   ...) are idempotent and return what they did as data ([`outcome`]), whose
//!   `Display` is the one line the CLI prints.
//! - [`fault`] is the one list of fault kinds, and the verbs that carry them out
//!   ([`Cluster::inflict`]): the scenario schema, the nemesis, `zkmq cluster <verb>`
//!   and `zkmq cluster fail` all use it.
//! - [`down_run`] / [`down_all`] remove what a run (or a crashed run) left, by label.
//! - Two backends decide where members run ([`BackendKind`]): `local` (containers
//!   on one engine, `local.rs`) and `swarm` (services pinned to the hosts of a
//!   Docker Swarm, `swarm.rs`); [`hosts_up`] simulates swarm hosts on this machine.
//!   Every node fault asks the backend which engine runs the member's container
//!   now, then uses the same container verbs and `exec` on either.
//!
//! Everything Docker goes through the private `docker` module. The harness reaches
//! containers only through ports published on 127.0.0.1 (of the engine's machine,
//! for a remote engine); container IPs are read (to write iptables rules inside
//! other containers) but never connected to.

mod clock;
mod disk;
mod docker;
mod ensemble;
mod fail;
pub mod fault;
mod fourlw;
mod hosts;
mod images;
mod local;
mod network;
mod nodes;
pub mod outcome;
mod owner;
mod state;
mod swarm;
mod window;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use fail::{fail_loop, FailOptions};
pub use fourlw::{four_letter_word, parse_srvr, SrvrInfo};
pub use hosts::{
    current_hosts, hosts_down, hosts_up, list_hosts, HostsSpec, SimulatedHost, SimulatedHosts,
};
pub use images::{
    ensure_host_image, ensure_images, image_for_version, HOST_IMAGE, SUPPORTED_VERSIONS,
};
pub use local::{down_all, down_stale, list_runs, RunSummary};
pub use owner::{reap, spawn_reaper, Owner, ReapPolicy};
pub use state::{
    current_hosts_id, current_run_id, forget_current_hosts, forget_current_run,
    remember_current_hosts, remember_current_run, state_file,
};

/// Label every object we create carries; cleanup removes by it and nothing else.
pub const LABEL_RUN: &str = "zkmq.run";
/// `zookeeper`, `rest`, `network`, `data`, `helper`.
pub const LABEL_ROLE: &str = "zkmq.role";
/// The node's myid (on ZooKeeper containers and their volumes).
pub const LABEL_NODE: &str = "zkmq.node";
/// The [`ClusterSpec`] as JSON, on every ZooKeeper container, so [`Cluster::attach`]
/// can rebuild the handle from Docker alone.
pub const LABEL_SPEC: &str = "zkmq.spec";

/// What to start. Configuration is data: it is stored on the containers (label
/// [`LABEL_SPEC`]) and can be written into a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    /// Names and labels every object (`zkmq.run=<run_id>`, containers
    /// `zkmq-<run_id>-zk<N>`): the unit of cleanup.
    pub run_id: String,
    /// Ensemble size: 1, 3, 5 or 7 (odd, so a majority is well defined).
    pub nodes: usize,
    /// "3.8.0" or "3.9.3": selects the image `zkmq/zookeeper:<version>`.
    pub zk_version: String,
    /// Another image to run instead of ours (e.g. the official `zookeeper:3.9`);
    /// it must have `java` and either Debian's `/usr/share/java/zookeeper.jar` or
    /// `zkServer.sh` on its PATH. Network faults need `iptables`/`tc` inside it.
    pub image: Option<String>,
    /// Also start the REST gateway container (runs the host's zkmq binary).
    pub rest: bool,
    /// The zkmq binary bind-mounted into the gateway container; default: the
    /// running executable (the gateway must speak the same protocol as the tests).
    pub zkmq_binary: Option<PathBuf>,
    /// ZooKeeper's tickTime: session timeouts, election and sync limits scale with
    /// it, so tests shorten it to make faults resolve quickly.
    pub tick_time_ms: u32,
    /// initLimit, in ticks: how long a follower may take to sync with a leader.
    pub init_limit: u32,
    /// syncLimit, in ticks: how far a follower may fall behind before it is dropped.
    pub sync_limit: u32,
    /// Java heap per node (`-Xmx`), in MiB; small so that 5 nodes and the tests fit
    /// on 2 cores. Every waiting message costs heap on every node: see the queue's
    /// `max_depth` and README's sizing rule before raising a queue's depth.
    pub heap_mb: u32,
    /// How long `up` waits for a serving quorum before failing with the logs.
    #[serde(with = "humantime_serde")]
    pub up_timeout: Duration,
    /// Each node's data on a RAM-backed volume of this many MiB, so that the
    /// disk-full fault can fill it (`disk.rs`); `None`: plain volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_limit_mb: Option<u32>,
    /// Preload the clock shim into every node's JVM, so that the clock-skew fault
    /// can step its wall clock (`clock.rs`); off, the JVM runs exactly as shipped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clock_faults: bool,
    /// The process the cluster lives and dies with (a chaos run), whose reaper
    /// removes it if the process dies first; `None`: left running on purpose.
    /// `zkmq cluster list` reads it to mark runs whose owner is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Where the members run: `local` (containers on one Docker engine) or
    /// `swarm` (services on the hosts of a Docker Swarm).
    #[serde(skip_serializing_if = "BackendKind::is_local")]
    pub backend: BackendKind,
    /// The swarm's engines (swarm backend only).
    #[serde(skip_serializing_if = "SwarmSpec::is_empty")]
    pub swarm: SwarmSpec,
}

/// Where a cluster's members run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// One container per member on one Docker engine: the local one, or the one
    /// `DOCKER_HOST` names.
    #[default]
    Local,
    /// One service per member, each pinned to a host of a Docker Swarm; node
    /// faults go through the engine of the host that runs the member.
    Swarm,
}

impl BackendKind {
    pub fn is_local(&self) -> bool {
        *self == BackendKind::Local
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Swarm => "swarm",
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "local" => Ok(BackendKind::Local),
            "swarm" => Ok(BackendKind::Swarm),
            other => Err(format!("backend `{other}`: use local or swarm")),
        }
    }
}

/// The Docker Swarm a cluster runs on (`[cluster.swarm]` in a scenario).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwarmSpec {
    /// Engine endpoints of the swarm's hosts (`tcp://10.0.0.5:2375`,
    /// `unix:///var/run/docker.sock`), a manager first; members are spread over
    /// them in this order. Empty: `$ZKMQ_SWARM_HOSTS` (comma-separated), else the
    /// simulated hosts of `zkmq cluster hosts up`.
    pub hosts: Vec<String>,
}

impl SwarmSpec {
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            run_id: String::new(),
            nodes: 3,
            zk_version: "3.8.0".to_owned(),
            image: None,
            rest: false,
            zkmq_binary: None,
            tick_time_ms: 500,
            init_limit: 10,
            sync_limit: 4,
            heap_mb: DEFAULT_HEAP_MB,
            up_timeout: Duration::from_secs(90),
            owner: None,
            backend: BackendKind::Local,
            swarm: SwarmSpec::default(),
            data_limit_mb: None,
            clock_faults: false,
        }
    }
}

impl ClusterSpec {
    pub fn new(run_id: impl Into<String>, nodes: usize) -> Self {
        ClusterSpec { run_id: run_id.into(), nodes, ..Default::default() }
    }

    /// The image the ZooKeeper containers run for `zk_version`.
    pub fn image_for(&self, zk_version: &str) -> String {
        match &self.image {
            Some(image) if zk_version == self.zk_version => image.clone(),
            _ => image_for_version(zk_version),
        }
    }

    fn validate(&self) -> Result<(), ClusterError> {
        if !matches!(self.nodes, 1 | 3 | 5 | 7) {
            return Err(ClusterError::InvalidSpec(format!(
                "nodes = {}: an ensemble has 1, 3, 5 or 7 nodes",
                self.nodes
            )));
        }
        validate_run_id(&self.run_id)?;
        if !(MIN_HEAP_MB..=MAX_HEAP_MB).contains(&self.heap_mb) {
            return Err(ClusterError::InvalidSpec(format!(
                "heap_mb = {}: use {MIN_HEAP_MB} to {MAX_HEAP_MB} MiB",
                self.heap_mb
            )));
        }
        if let Some(mb) =
            self.data_limit_mb.filter(|mb| !(MIN_DATA_LIMIT_MB..=MAX_DATA_LIMIT_MB).contains(mb))
        {
            return Err(ClusterError::InvalidSpec(format!(
                "data_limit_mb = {mb}: use {MIN_DATA_LIMIT_MB} to {MAX_DATA_LIMIT_MB} MiB (it is RAM)"
            )));
        }
        if self.tick_time_ms < 50 {
            return Err(ClusterError::InvalidSpec(format!(
                "tick_time_ms = {}: below 50 ms elections never settle",
                self.tick_time_ms
            )));
        }
        if self.backend == BackendKind::Local && !self.swarm.is_empty() {
            return Err(ClusterError::InvalidSpec(
                "swarm hosts are given but the backend is local; choose backend = \"swarm\""
                    .to_owned(),
            ));
        }
        swarm::validate_endpoints(&self.swarm.hosts)
    }
}

/// [`ClusterSpec::heap_mb`]'s default: 5 nodes, a gateway and the tests share 2
/// cores. It holds [`crate::queue::DEFAULT_MAX_DEPTH`] small messages with room
/// to spare (README: depth and heap).
pub const DEFAULT_HEAP_MB: u32 = 96;

/// Below this ZooKeeper does not start reliably; above it a node no longer fits
/// beside four others on a developer machine.
pub const MIN_HEAP_MB: u32 = 32;
pub const MAX_HEAP_MB: u32 = 16 * 1024;

/// A data volume smaller than this cannot hold ZooKeeper's first snapshot and
/// log; one larger than this is a lot of RAM per node.
pub const MIN_DATA_LIMIT_MB: u32 = 32;
pub const MAX_DATA_LIMIT_MB: u32 = 8 * 1024;

/// Parses a JVM heap size as `-Xmx` takes it (`96m`, `1g`, `512M`; a bare number
/// is MiB) into MiB, within [`MIN_HEAP_MB`]..=[`MAX_HEAP_MB`].
pub fn parse_heap_mb(text: &str) -> Result<u32, String> {
    parse_mib(text, "heap", MIN_HEAP_MB..=MAX_HEAP_MB)
}

/// Parses a data volume's size limit like a heap size (`256m`, `1g`), within
/// [`MIN_DATA_LIMIT_MB`]..=[`MAX_DATA_LIMIT_MB`].
pub fn parse_data_limit_mb(text: &str) -> Result<u32, String> {
    parse_mib(text, "data limit", MIN_DATA_LIMIT_MB..=MAX_DATA_LIMIT_MB)
}

fn parse_mib(text: &str, what: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, String> {
    let text = text.trim();
    let (digits, scale) = match text.char_indices().last() {
        Some((at, 'm' | 'M')) => (&text[..at], 1),
        Some((at, 'g' | 'G')) => (&text[..at], 1024),
        _ => (text, 1),
    };
    let invalid = || format!("{what} `{text}`: use a size like 96m or 1g");
    let mib =
        digits.parse::<u32>().map_err(|_| invalid())?.checked_mul(scale).ok_or_else(invalid)?;
    if !range.contains(&mib) {
        let max = *range.end();
        let max =
            if max.is_multiple_of(1024) { format!("{}g", max / 1024) } else { format!("{max}m") };
        return Err(format!("{what} `{text}`: use {}m to {max}", range.start()));
    }
    Ok(mib)
}

/// A run id names Docker objects, so it must be a valid part of a container name.
pub fn validate_run_id(run_id: &str) -> Result<(), ClusterError> {
    let valid = !run_id.is_empty()
        && run_id.len() <= 40
        && run_id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && run_id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(ClusterError::InvalidSpec(format!(
            "run id {run_id:?}: use 1-40 characters from a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}

/// A fresh run id: `<prefix>-<8 hex digits>`.
pub fn new_run_id(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A node's role as `srvr` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeMode {
    Leader,
    Follower,
    Observer,
    Standalone,
    /// The process answers but does not serve requests (no quorum, syncing).
    NotServing,
    /// Nothing answers on the client port (container stopped, paused, or the JVM
    /// not up yet).
    Down,
}

impl NodeMode {
    /// The node answers client requests.
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            NodeMode::Leader | NodeMode::Follower | NodeMode::Observer | NodeMode::Standalone
        )
    }
}

impl std::fmt::Display for NodeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeMode::Leader => "leader",
            NodeMode::Follower => "follower",
            NodeMode::Observer => "observer",
            NodeMode::Standalone => "standalone",
            NodeMode::NotServing => "not serving",
            NodeMode::Down => "down",
        })
    }
}

/// One node as seen now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// ZooKeeper myid, 1-based.
    pub node: usize,
    /// Docker's view: running, exited, paused, created, missing, ...
    pub container: String,
    /// ZooKeeper's own view, from `srvr`.
    pub mode: NodeMode,
    /// Where clients reach it: `127.0.0.1:<published port>`.
    pub address: String,
    /// The machine whose engine runs it: the engine's host name (locally), the
    /// swarm node's (on a swarm).
    pub host: String,
    /// ZooKeeper's version as `srvr` reports it ("" when down).
    pub version: String,
    /// The image the container runs (changes on upgrade).
    pub image: String,
    /// Last zxid the node has seen, hex ("" when down): shows who lags.
    pub zxid: String,
}

/// Everything that can go wrong controlling the cluster. Docker failures have one
/// variant per verb, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start the reaper ({} cluster reap): {source}", binary.display())]
    SpawnReaper { binary: PathBuf, source: std::io::Error },
    #[error("cannot talk to the Docker daemon; is it running? (./cluster/setup-host.sh starts it; DOCKER_HOST selects another): {source}")]
    Connect { source: Box<dyn std::error::Error + Send + Sync> },
    #[error(
        "cannot talk to the Docker engine at {endpoint}; is it running and reachable? {source}"
    )]
    ConnectTo { endpoint: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: reading the engine's info failed: {source}")]
    Info { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: initialising a swarm failed: {source}")]
    InitSwarm { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: inspecting the swarm failed (is this engine a swarm manager?): {source}")]
    InspectSwarm { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: joining the swarm of manager {manager} failed: {source}")]
    JoinSwarm { manager: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: listing the swarm's nodes failed: {source}")]
    ListNodes { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: updating swarm node {node} failed: {source}")]
    UpdateNode { node: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: creating service {service} failed: {source}")]
    CreateService { service: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: updating service {service} failed: {source}")]
    UpdateService { service: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: removing service {service} failed: {source}")]
    RemoveService { service: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: listing services failed: {source}")]
    ListServices { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: listing tasks failed: {source}")]
    ListTasks { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: loading image {image} (docker save | docker load) failed: {source}")]
    LoadImage { image: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: copying into {path} of {container} failed: {source}")]
    Upload { container: String, path: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: inspecting image {image} failed: {source}")]
    InspectImage { image: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: importing image {image} failed: {source}")]
    ImportImage { image: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: creating network {network} failed: {source}")]
    CreateNetwork { network: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: removing network {network} failed: {source}")]
    RemoveNetwork { network: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: inspecting network {network} failed: {source}")]
    InspectNetwork { network: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: listing networks failed: {source}")]
    ListNetworks { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: creating volume {volume} failed: {source}")]
    CreateVolume { volume: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: removing volume {volume} failed: {source}")]
    RemoveVolume { volume: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: listing volumes failed: {source}")]
    ListVolumes { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: creating container {container} failed: {source}")]
    CreateContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: starting container {container} failed: {source}")]
    StartContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: stopping container {container} failed: {source}")]
    StopContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: killing container {container} failed: {source}")]
    KillContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: pausing container {container} failed: {source}")]
    PauseContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: unpausing container {container} failed: {source}")]
    UnpauseContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: removing container {container} failed: {source}")]
    RemoveContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: renaming container {container} failed: {source}")]
    RenameContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: inspecting container {container} failed: {source}")]
    InspectContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: waiting for container {container} failed: {source}")]
    WaitContainer { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: listing containers failed: {source}")]
    ListContainers { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: running `{command}` in {container} failed: {source}")]
    Exec { container: String, command: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("`{command}` in {container} exited with {exit_code}: {output}")]
    CommandFailed { container: String, command: String, exit_code: i64, output: String },
    #[error("docker: copying {path} out of {container} failed: {source}")]
    Download { container: String, path: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("docker: reading the logs of {container} failed: {source}")]
    Logs { container: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{tool} is missing; install it: {install}")]
    MissingTool { tool: String, install: String },
    #[error("building image {image} failed: {message}")]
    ImageBuild { image: String, message: String },
    #[error("not supported here: {0}")]
    Unsupported(String),
    #[error("{member}'s new swarm task ended {state}: {message}")]
    TaskFailed { member: String, state: String, message: String },
    #[error("timed out waiting for {waited_for}")]
    Timeout { waited_for: String },
    #[error("no serving quorum after {waited:?} ({detail}); the nodes' last log lines:\n{logs}")]
    NoQuorum { waited: Duration, detail: String, logs: String },
    #[error("no cluster with run id {run_id} (no container labelled {LABEL_RUN}={run_id}); `zkmq cluster list` shows the runs there are")]
    NotFound { run_id: String },
    #[error("cluster {run_id} has no node {node} (nodes are 1..={nodes})")]
    UnknownNode { run_id: String, node: usize, nodes: usize },
    #[error("{member} is not running ({state})")]
    NotRunning { member: fault::Member, state: String },
    #[error("the REST gateway supports kill, stop, start, restart, pause and unpause")]
    NotForGateway,
    #[error("cluster {run_id} was started without the REST gateway (start it with rest = true / --rest)")]
    NoGateway { run_id: String },
    #[error("invalid cluster spec: {0}")]
    InvalidSpec(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl ClusterError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
        let context = context.into();
        move |source| ClusterError::Io { context, source }
    }
}

/// A handle to a running ensemble. Plain data (names and addresses): cheap to
/// clone, usable from any tokio runtime, and rebuilt from Docker by
/// [`Cluster::attach`].
#[derive(Debug, Clone)]
pub struct Cluster {
    spec: ClusterSpec,
    /// where clients reach each node's client port (`127.0.0.1:<port>`), index =
    /// myid - 1; fixed at creation so that a node keeps its address across
    /// restarts and upgrades
    addresses: Vec<String>,
    /// where clients reach the gateway, when there is one
    rest_address: Option<String>,
    backend: Backend,
}

/// What a backend needs to find a member's container.
#[derive(Debug, Clone)]
enum Backend {
    /// The engine `DOCKER_HOST` names (else the local socket), and its host name.
    Local {
        host: String,
    },
    Swarm(swarm::Swarm),
}

impl Cluster {
    pub fn run_id(&self) -> &str {
        &self.spec.run_id
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn node_ids(&self) -> Vec<usize> {
        (1..=self.spec.nodes).collect()
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,...` for clients on the host.
    pub fn connect_string(&self) -> String {
        self.addresses.join(",")
    }

    /// `127.0.0.1:<port>` of one node (myid). Panics on a node id outside 1..=nodes:
    /// that is a bug in the caller, not a runtime condition.
    pub fn node_address(&self, node: usize) -> String {
        self.addresses[node - 1].clone()
    }

    /// `http://127.0.0.1:<port>`: the gateway's root endpoint, when it runs.
    pub fn rest_url(&self) -> Option<String> {
        self.rest_address.as_ref().map(|address| format!("http://{address}"))
    }

    /// The backend the members run on.
    pub fn backend(&self) -> BackendKind {
        match self.backend {
            Backend::Local { .. } => BackendKind::Local,
            Backend::Swarm(_) => BackendKind::Swarm,
        }
    }

    /// The connect string the gateway container uses (Docker network names).
    pub fn internal_connect_string(&self) -> String {
        self.node_ids().iter().map(|node| format!("zk{node}:2181")).collect::<Vec<_>>().join(",")
    }

    fn check_node(&self, node: usize) -> Result<(), ClusterError> {
        if node == 0 || node > self.spec.nodes {
            return Err(ClusterError::UnknownNode {
                run_id: self.spec.run_id.clone(),
                node,
                nodes: self.spec.nodes,
            });
        }
        Ok(())
    }

    fn container_name(&self, node: usize) -> String {
        names::container(&self.spec.run_id, node)
    }

    /// Which engine runs `member` right now, and as which container: every node
    /// fault goes through these, whatever the backend.
    async fn whereabouts(&self, member: fault::Member) -> Result<Whereabouts, ClusterError> {
        Ok(self.whereabouts_of(&[member]).await?.remove(0))
    }

    /// [`Cluster::whereabouts`] of several members at once (one look at the
    /// swarm's task list).
    async fn whereabouts_of(
        &self,
        members: &[fault::Member],
    ) -> Result<Vec<Whereabouts>, ClusterError> {
        match &self.backend {
            Backend::Local { host } => {
                let mut found = Vec::new();
                for member in members {
                    found.push(self.local_whereabouts(*member, host).await?);
                }
                Ok(found)
            }
            Backend::Swarm(swarm) => {
                for member in members {
                    if let fault::Member::Node(node) = member {
                        self.check_node(*node)?;
                    } else if !self.spec.rest {
                        return Err(ClusterError::NoGateway { run_id: self.spec.run_id.clone() });
                    }
                }
                self.swarm_whereabouts(swarm, members).await
            }
        }
    }

    /// Every container whose log is part of the member's: the one it has locally;
    /// each of its tasks' on a swarm, oldest first.
    async fn log_sources(&self, member: fault::Member) -> Result<Vec<Whereabouts>, ClusterError> {
        match &self.backend {
            Backend::Local { .. } => self.local_log_sources(member).await,
            Backend::Swarm(swarm) => self.swarm_log_sources(swarm, member).await,
        }
    }

    /// A node's containers on the local engine, oldest first: those an upgrade
    /// replaced (kept stopped, named `<name>-replaced-<ms>`), then the current one.
    async fn local_log_sources(
        &self,
        member: fault::Member,
    ) -> Result<Vec<Whereabouts>, ClusterError> {
        let current = self.whereabouts(member).await?;
        let fault::Member::Node(node) = member else { return Ok(vec![current]) };
        let node = node.to_string();
        let labels = [(LABEL_RUN, self.run_id()), (LABEL_ROLE, "zookeeper"), (LABEL_NODE, &node)];
        let mut replaced: Vec<String> = current
            .docker
            .list_containers(&labels)
            .await?
            .into_iter()
            .filter(|name| *name != current.container)
            .collect();
        // Their names end in the same number of digits of milliseconds: sorted is oldest first.
        replaced.sort();
        let mut sources: Vec<Whereabouts> = replaced
            .into_iter()
            .map(|container| Whereabouts {
                docker: current.docker.clone(),
                container,
                host: current.host.clone(),
            })
            .collect();
        sources.push(current);
        Ok(sources)
    }

    /// Starts a member whose container is not running: the container again
    /// locally; a new task on a swarm (which waits until it runs).
    async fn start_member(
        &self,
        member: fault::Member,
        place: &Whereabouts,
    ) -> Result<(), ClusterError> {
        match &self.backend {
            Backend::Local { .. } => place.docker.start_container(&place.container).await,
            Backend::Swarm(swarm) => self.swarm_start(swarm, member, None).await,
        }
    }
}

/// Where a member runs right now: the Docker engine that runs its container, the
/// container (a name or an id), and that engine's host. Looked up anew for each
/// operation, because a member's container changes under the swarm backend, which
/// replaces it on every start.
struct Whereabouts {
    docker: docker::Docker,
    container: String,
    host: String,
}

/// Removes every object labelled `zkmq.run=<run_id>` on this machine's engine
/// and, when one is known, on the default swarm (`$ZKMQ_SWARM_HOSTS`, else the
/// current simulated hosts): what a crashed run left, too. Returns how many
/// objects it removed.
pub async fn down_run(run_id: &str) -> Result<usize, ClusterError> {
    down_run_on(run_id, &[]).await
}

/// [`down_run`], on the swarm of `swarm_hosts` when given.
pub async fn down_run_on(run_id: &str, swarm_hosts: &[String]) -> Result<usize, ClusterError> {
    let removed = local::down_local(run_id).await?;
    let hosts = if swarm_hosts.is_empty() {
        // A default swarm that cannot be found or reached holds nothing to remove.
        match swarm::resolve_hosts(&[]).await {
            Ok(hosts) => hosts,
            Err(_) => return Ok(removed),
        }
    } else {
        swarm_hosts.to_vec()
    };
    match swarm::down(run_id, &hosts).await {
        Ok(more) => Ok(removed + more),
        Err(err) if swarm_hosts.is_empty() => {
            tracing::debug!("the default swarm ({}): {err}", hosts.join(","));
            Ok(removed)
        }
        Err(err) => Err(err),
    }
}

/// Names of the Docker objects of a run, in one place.
mod names {
    pub fn network(run_id: &str) -> String {
        format!("zkmq-{run_id}")
    }
    pub fn container(run_id: &str, node: usize) -> String {
        format!("zkmq-{run_id}-zk{node}")
    }
    pub fn volume(run_id: &str, node: usize) -> String {
        format!("zkmq-{run_id}-zk{node}-data")
    }
    pub fn gateway(run_id: &str) -> String {
        format!("zkmq-{run_id}-rest")
    }
    pub fn helper(run_id: &str, node: usize) -> String {
        format!("zkmq-{run_id}-zk{node}-wipe")
    }
    /// Holds the gateway's binary on a swarm host.
    pub fn binary_volume(run_id: &str) -> String {
        format!("zkmq-{run_id}-rest-bin")
    }
    pub fn binary_helper(run_id: &str) -> String {
        format!("zkmq-{run_id}-rest-ship")
    }
    /// A simulated swarm host.
    pub fn host(run_id: &str, index: usize) -> String {
        format!("zkmq-{run_id}-h{index}")
    }
    /// Its engine's state (/var/lib/docker).
    pub fn host_volume(run_id: &str, index: usize) -> String {
        format!("zkmq-{run_id}-h{index}-docker")
    }
    /// The container that keeps a size-limited data volume mounted (`disk.rs`).
    pub fn holder(run_id: &str, node: usize) -> String {
        format!("zkmq-{run_id}-zk{node}-disk")
    }
    /// The node's name on the cluster network (what zoo.cfg and the gateway use).
    pub fn alias(node: usize) -> String {
        format!("zk{node}")
    }
}

#[cfg(test)]
mod tests {
    use super::parse_heap_mb;

    #[test]
    fn heap_sizes_parse_as_xmx_takes_them() {
        assert_eq!(parse_heap_mb("96m"), Ok(96));
        assert_eq!(parse_heap_mb("256M"), Ok(256));
        assert_eq!(parse_heap_mb("1g"), Ok(1024));
        assert_eq!(parse_heap_mb("128"), Ok(128));
        assert!(parse_heap_mb("16m").is_err(), "below the minimum");
        assert!(parse_heap_mb("96k").is_err());
        assert!(parse_heap_mb("lots").is_err());
        assert!(parse_heap_mb("99999999g").is_err());
        assert_eq!(super::parse_data_limit_mb("256m"), Ok(256));
        let small = super::parse_data_limit_mb("8m").unwrap_err();
        assert_eq!(small, "data limit `8m`: use 32m to 8g");
    }
}
