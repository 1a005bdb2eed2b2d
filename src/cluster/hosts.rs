//! Simulated swarm hosts on this machine, for trying the swarm backend without
//! other machines: `zkmq cluster hosts up --count 3` starts three containers from
//! [`HOST_IMAGE`](super::HOST_IMAGE) (Debian's docker.io, built here like the
//! ZooKeeper images), each running its own Docker engine (`cluster/host-start.sh`),
//! on a labelled bridge network, and joins them into a swarm (the first is the
//! manager).
//!
//! The harness talks only to ports published on 127.0.0.1, so each host publishes,
//! at the same numbers inside and out, a block of ports fixed when it starts: its
//! engine's API, then [`HostsSpec::ports`] ports its members may publish (recorded
//! as the swarm node label `zkmq.ports`). A member's client port, published by
//! its host's engine on the host container's own interfaces, is thereby reachable
//! at the same number on the machine's 127.0.0.1.
//!
//! A set of hosts is a run like a cluster: labelled `zkmq.run=<id>`
//! (`zkmq.role=host`), removed by label (`hosts down`, `cluster down --run`), and
//! reaped when its owner dies. Removing a host container removes everything inside
//! it: its engine's containers, volumes and images live in the host's own volume.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::docker::{ContainerPlan, Docker};
use super::ensemble::{labels, UpGuard};
use super::swarm::LABEL_PORTS;
use super::{
    ensure_host_image, names, ClusterError, Owner, HOST_IMAGE, LABEL_NODE, LABEL_ROLE, LABEL_RUN,
    LABEL_SPEC,
};

const START_SCRIPT: &str = include_str!("../../cluster/host-start.sh");
/// How long a host's engine may take to answer after its container starts.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(60);

/// What `hosts up` starts. Stored on every host container (label `zkmq.spec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostsSpec {
    /// Names and labels the hosts' objects (`zkmq.run=<run_id>`, containers
    /// `zkmq-<run_id>-h<N>`): the unit of cleanup.
    pub run_id: String,
    /// How many hosts (1 to 9); the first is the swarm's manager.
    pub count: usize,
    /// Ports each host lends its members (each a docker-proxy process on this
    /// machine): 5 members, a gateway and a second cluster fit in the default.
    pub ports: u16,
    /// The process the hosts live and die with; its reaper removes them if it dies
    /// first. `None`: left running on purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl Default for HostsSpec {
    fn default() -> Self {
        HostsSpec { run_id: String::new(), count: 3, ports: 8, owner: None }
    }
}

/// A set of simulated hosts forming one swarm.
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedHosts {
    pub run_id: String,
    /// Manager first.
    pub hosts: Vec<SimulatedHost>,
    pub owner: Option<Owner>,
}

/// One simulated host.
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedHost {
    /// `h1`, `h2`, ...: its host name, and its swarm node's.
    pub name: String,
    /// Its container on this machine's engine.
    pub container: String,
    /// Its engine's API, published on 127.0.0.1.
    pub endpoint: String,
    /// The ports its members may publish (inclusive), also on 127.0.0.1.
    pub ports: (u16, u16),
    /// Docker's state of its container.
    pub state: String,
}

impl SimulatedHosts {
    /// The engine endpoints, manager first: what `[cluster.swarm] hosts` takes.
    pub fn endpoints(&self) -> Vec<String> {
        self.hosts.iter().map(|host| host.endpoint.clone()).collect()
    }
}

const LABEL_ENDPOINT: &str = "zkmq.endpoint";

/// A block of `count` consecutive ports free on 127.0.0.1 right now; Docker's bind
/// may still lose a race for one, which [`hosts_up`] reports.
fn free_port_block(count: u16) -> Result<u16, ClusterError> {
    for _ in 0..50 {
        let base = rand::random_range(20_000..60_000 - count);
        let held: Result<Vec<_>, _> = (base..base + count)
            .map(|port| std::net::TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if held.is_ok() {
            return Ok(base);
        }
    }
    Err(ClusterError::Io {
        context: format!("finding {count} consecutive free ports on 127.0.0.1"),
        source: std::io::Error::other("50 tries failed"),
    })
}

fn host_plan(spec: &HostsSpec, index: usize, base: u16) -> ContainerPlan {
    let name = format!("h{index}");
    let api = base;
    let ports = (base + 1, base + spec.ports);
    let mut labels = labels(&spec.run_id, "host", Some(index));
    labels.insert(LABEL_SPEC.to_owned(), serde_json::to_string(spec).expect("a spec serializes"));
    labels.insert(LABEL_ENDPOINT.to_owned(), format!("tcp://127.0.0.1:{api}"));
    labels.insert(LABEL_PORTS.to_owned(), format!("{}-{}", ports.0, ports.1));
    ContainerPlan {
        name: names::host(&spec.run_id, index),
        image: HOST_IMAGE.to_owned(),
        hostname: name.clone(),
        entrypoint: Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
        cmd: vec![START_SCRIPT.to_owned()],
        env: vec![format!("ZKMQ_API_PORT={api}")],
        labels,
        network: names::network(&spec.run_id),
        aliases: vec![name],
        volume: Some((names::host_volume(&spec.run_id, index), "/var/lib/docker".to_owned())),
        publish_same: (api..=ports.1).collect(),
        // What an engine inside needs where --privileged is refused (see host-start.sh).
        cap_add: vec!["ALL".to_owned()],
        cap_drop: vec!["SYS_RESOURCE".to_owned()],
        security_opt: vec!["seccomp=unconfined".to_owned(), "apparmor=unconfined".to_owned()],
        unmask_system_paths: true,
        cgroupns_host: true,
        binds_rw: vec![("/sys/fs/cgroup".to_owned(), "/sys/fs/cgroup".to_owned())],
        tmpfs: vec!["/run".to_owned()],
        ..Default::default()
    }
}

/// Starts `spec.count` hosts, joins them into a swarm and returns them once every
/// engine answers and every node is ready. On failure, or if dropped, removes
/// everything started.
pub async fn hosts_up(
    spec: HostsSpec,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<SimulatedHosts, ClusterError> {
    super::validate_run_id(&spec.run_id)?;
    if !(1..=9).contains(&spec.count) {
        return Err(ClusterError::InvalidSpec(format!("{} hosts: use 1 to 9", spec.count)));
    }
    if !(1..=100).contains(&spec.ports) {
        return Err(ClusterError::InvalidSpec(format!(
            "{} ports per host: use 1 to 100",
            spec.ports
        )));
    }
    ensure_host_image(false, progress).await?;
    let docker = Docker::connect().await?;
    if !docker.list_containers(&[(LABEL_RUN, spec.run_id.as_str())]).await?.is_empty() {
        return Err(ClusterError::InvalidSpec(format!(
            "run id {} is in use; `zkmq cluster hosts down --run {}` removes it",
            spec.run_id, spec.run_id
        )));
    }
    let started = Instant::now();
    let run_id = spec.run_id.clone();
    let mut guard = UpGuard::new(async move { super::local::down_local(&run_id).await });
    progress(&format!("{}: starting {} simulated host(s)", spec.run_id, spec.count));
    docker
        .create_network(&names::network(&spec.run_id), labels(&spec.run_id, "network", None), None)
        .await?;
    for index in 1..=spec.count {
        docker
            .create_volume(
                &names::host_volume(&spec.run_id, index),
                labels(&spec.run_id, "host-data", Some(index)),
                HashMap::new(),
            )
            .await?;
        let plan = host_plan(&spec, index, free_port_block(spec.ports + 1)?);
        docker.create_container(&plan).await?;
        docker.start_container(&plan.name).await?;
    }
    let found = find(&spec.run_id)
        .await?
        .ok_or_else(|| ClusterError::NotFound { run_id: spec.run_id.clone() })?;
    let mut engines = Vec::new();
    for host in &found.hosts {
        engines.push(wait_for_engine(host, &docker).await?);
    }
    progress(&format!(
        "{}: {} engine(s) answer after {:.1} s; forming the swarm",
        spec.run_id,
        engines.len(),
        started.elapsed().as_secs_f64()
    ));
    form_swarm(&found, &engines).await?;
    progress(&format!(
        "{}: swarm of {} host(s) ready after {:.1} s: {}",
        spec.run_id,
        found.hosts.len(),
        started.elapsed().as_secs_f64(),
        found.endpoints().join(",")
    ));
    guard.disarm();
    Ok(found)
}

/// Waits until a host's engine answers on its published API port.
async fn wait_for_engine(host: &SimulatedHost, outer: &Docker) -> Result<Docker, ClusterError> {
    let deadline = Instant::now() + ENGINE_TIMEOUT;
    loop {
        match Docker::connect_to(&host.endpoint).await {
            Ok(engine) => return Ok(engine),
            Err(err) if Instant::now() >= deadline => {
                let logs = outer.logs(&host.container, Some(20)).await.unwrap_or_default();
                return Err(ClusterError::Timeout {
                    waited_for: format!(
                        "the engine of host {} at {} ({ENGINE_TIMEOUT:?}; last error: {err}); its last log lines:\n{logs}",
                        host.name, host.endpoint
                    ),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The first host initialises the swarm, the others join it as workers, and each
/// node is labelled with the ports it lends; returns once every node is ready.
async fn form_swarm(hosts: &SimulatedHosts, engines: &[Docker]) -> Result<(), ClusterError> {
    let manager = &engines[0];
    // eth0: the host container's address on the hosts' network, where the other
    // hosts' engines reach the manager (the harness never connects to it).
    manager.init_swarm("eth0").await?;
    let token = manager.worker_join_token().await?;
    let address = manager.engine().await?.managers.into_iter().next().ok_or_else(|| {
        ClusterError::InvalidSpec("the new swarm names no manager address".to_owned())
    })?;
    for engine in &engines[1..] {
        engine.join_swarm(&address, &token, "eth0").await?;
    }
    let deadline = Instant::now() + ENGINE_TIMEOUT;
    loop {
        let nodes = manager.list_nodes().await?;
        let ready = nodes.iter().filter(|node| node.state == "ready").count();
        if ready == hosts.hosts.len() {
            for host in &hosts.hosts {
                let node =
                    nodes.iter().find(|node| node.hostname == host.name).ok_or_else(|| {
                        ClusterError::InvalidSpec(format!("no swarm node is named {}", host.name))
                    })?;
                let label = (LABEL_PORTS.to_owned(), format!("{}-{}", host.ports.0, host.ports.1));
                manager.label_node(&node.id, HashMap::from([label])).await?;
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                waited_for: format!(
                    "{} swarm node(s) to be ready; {ready} are ({ENGINE_TIMEOUT:?})",
                    hosts.hosts.len()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every set of simulated hosts on this machine's engine.
pub async fn list_hosts() -> Result<Vec<SimulatedHosts>, ClusterError> {
    let docker = Docker::connect().await?;
    let mut sets: std::collections::BTreeMap<String, SimulatedHosts> = Default::default();
    for (container, labels) in docker.list_containers_labelled(&[(LABEL_ROLE, "host")]).await? {
        let Some(run_id) = labels.get(LABEL_RUN) else {
            continue;
        };
        let spec: Option<HostsSpec> =
            labels.get(LABEL_SPEC).and_then(|json| serde_json::from_str(json).ok());
        let set = sets.entry(run_id.clone()).or_insert_with(|| SimulatedHosts {
            run_id: run_id.clone(),
            hosts: Vec::new(),
            owner: spec.and_then(|spec| spec.owner),
        });
        let state = docker
            .inspect_container(&container)
            .await?
            .map_or_else(|| "missing".to_owned(), |facts| facts.state);
        let index = labels.get(LABEL_NODE).cloned().unwrap_or_default();
        set.hosts.push(SimulatedHost {
            name: format!("h{index}"),
            container,
            endpoint: labels.get(LABEL_ENDPOINT).cloned().unwrap_or_default(),
            ports: labels
                .get(LABEL_PORTS)
                .and_then(|range| super::swarm::parse_ports(range))
                .unwrap_or((0, 0)),
            state,
        });
    }
    let mut sets: Vec<SimulatedHosts> = sets.into_values().collect();
    for set in &mut sets {
        set.hosts.sort_by_key(|host| host.name[1..].parse::<usize>().unwrap_or(0));
    }
    Ok(sets)
}

/// The set of hosts with this run id, if any.
pub async fn find(run_id: &str) -> Result<Option<SimulatedHosts>, ClusterError> {
    Ok(list_hosts().await?.into_iter().find(|set| set.run_id == run_id))
}

/// The hosts swarm runs use by default: those `hosts up` made current, else the
/// only set on this machine. `None` when there are none; an error when several
/// could be meant.
pub async fn current_hosts() -> Result<Option<SimulatedHosts>, ClusterError> {
    let sets = list_hosts().await?;
    if let Some(current) = super::state::current_hosts_id() {
        if let Some(set) = sets.iter().find(|set| set.run_id == current) {
            return Ok(Some(set.clone()));
        }
    }
    match sets.len() {
        0 => Ok(None),
        1 => Ok(sets.into_iter().next()),
        _ => Err(ClusterError::InvalidSpec(format!(
            "several sets of simulated hosts run here ({}); name the engines in [cluster.swarm] hosts or ZKMQ_SWARM_HOSTS",
            sets.iter().map(|set| set.run_id.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Removes a set of hosts, and with them everything running inside them.
pub async fn hosts_down(run_id: &str) -> Result<usize, ClusterError> {
    super::local::down_local(run_id).await
}
