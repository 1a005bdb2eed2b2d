//! The local backend: every member a container on one Docker engine (the one
//! DOCKER_HOST names, else the local socket), on a labelled bridge network with
//! fixed addresses, client ports published on 127.0.0.1 (on every interface of a
//! remote engine's machine, whose address clients then use). Also what finds and
//! removes a run's objects on that engine by label.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::docker::{ContainerPlan, Docker};
use super::ensemble::{
    gateway_args, gateway_binary, gateway_env, labels, render_zoo_cfg, UpGuard, BINARY_DIR,
    DATA_MOUNT, GATEWAY_PORT, START_SCRIPT,
};
use super::fault::Member;
use super::{
    ensure_images, names, Backend, Cluster, ClusterError, ClusterSpec, Owner, Whereabouts,
    LABEL_NODE, LABEL_ROLE, LABEL_RUN, LABEL_SPEC,
};

/// Where clients reach ports the local backend's engine publishes: 127.0.0.1, or
/// the host of a remote `DOCKER_HOST` (`tcp://10.0.0.5:2375`).
fn client_host() -> String {
    std::env::var("DOCKER_HOST")
        .map_or_else(|_| "127.0.0.1".to_owned(), |host| super::swarm::endpoint_address(&host))
}

/// The engine runs on another machine: ports are published on its every interface
/// (127.0.0.1 there is out of reach), and the gateway's binary is copied to it.
fn engine_is_remote() -> bool {
    client_host() != "127.0.0.1"
}

/// Node N's fixed address: the subnet's base + 10 + N (the gateway: + 100).
fn address_in(subnet: &str, offset: u32) -> Result<String, ClusterError> {
    let base = subnet
        .split('/')
        .next()
        .and_then(|base| base.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| ClusterError::InvalidSpec(format!("cannot read subnet {subnet:?}")))?;
    Ok(Ipv4Addr::from(u32::from(base) + offset).to_string())
}

pub(super) fn node_ip(subnet: &str, node: usize) -> Result<String, ClusterError> {
    address_in(subnet, 10 + node as u32)
}

/// A free port on 127.0.0.1 right now. We choose host ports ourselves instead of
/// publishing port 0, because Docker picks a new port at every start of a
/// container published as 0, and a node must keep its address across restarts.
fn free_port() -> Result<u16, ClusterError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(ClusterError::io("finding a free port on 127.0.0.1"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(ClusterError::io("finding a free port on 127.0.0.1"))
}

pub(super) fn node_plan(
    spec: &ClusterSpec,
    node: usize,
    image: &str,
    zk_version: &str,
    port: u16,
    ip: &str,
) -> ContainerPlan {
    let mut labels = labels(&spec.run_id, "zookeeper", Some(node));
    labels.insert(LABEL_SPEC.to_owned(), serde_json::to_string(spec).expect("a spec serializes"));
    labels.insert("zkmq.zk_version".to_owned(), zk_version.to_owned());
    labels.insert("zkmq.ip".to_owned(), ip.to_owned());
    ContainerPlan {
        name: names::container(&spec.run_id, node),
        image: image.to_owned(),
        hostname: names::alias(node),
        entrypoint: Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
        cmd: vec![START_SCRIPT.to_owned()],
        env: vec![
            format!("ZKMQ_ZOO_CFG={}", render_zoo_cfg(spec)),
            format!("ZKMQ_MYID={node}"),
            format!("ZKMQ_HEAP_MB={}", spec.heap_mb),
            format!("ZKMQ_CLOCK_FAULTS={}", u8::from(spec.clock_faults)),
        ],
        labels,
        network: names::network(&spec.run_id),
        aliases: vec![names::alias(node)],
        volume: Some((names::volume(&spec.run_id, node), DATA_MOUNT.to_owned())),
        binds_ro: Vec::new(),
        ipv4: Some(ip.to_owned()),
        publish: Some((2181, port)),
        publish_everywhere: engine_is_remote(),
        cap_add: vec!["NET_ADMIN".to_owned()],
        ..Default::default()
    }
}

/// Creates and starts a container on a port of our choosing, retrying with another
/// port when something took it between our probe and Docker's bind.
pub(super) async fn create_and_start(
    docker: &Docker,
    mut plan: ContainerPlan,
) -> Result<u16, ClusterError> {
    let fixed = plan.publish.is_some_and(|(_, port)| port != 0);
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some((container_port, 0)) = plan.publish {
            plan.publish = Some((container_port, free_port()?));
        }
        docker.create_container(&plan).await?;
        match docker.start_container(&plan.name).await {
            Ok(()) => return Ok(plan.publish.map_or(0, |(_, port)| port)),
            Err(err) => {
                if !is_port_taken(&err) || fixed || attempt >= 5 {
                    return Err(err);
                }
                docker.remove_container(&plan.name).await?;
                if let Some((container_port, _)) = plan.publish {
                    plan.publish = Some((container_port, 0));
                }
            }
        }
    }
}

fn is_port_taken(err: &ClusterError) -> bool {
    let text = err.to_string();
    text.contains("port is already allocated") || text.contains("address already in use")
}

impl Cluster {
    /// Where a member runs on the local engine: its container, by name.
    pub(super) async fn local_whereabouts(
        &self,
        member: Member,
        host: &str,
    ) -> Result<Whereabouts, ClusterError> {
        let container = match member {
            Member::Node(node) => {
                self.check_node(node)?;
                self.container_name(node)
            }
            Member::Gateway if !self.spec.rest => {
                return Err(ClusterError::NoGateway { run_id: self.spec.run_id.clone() })
            }
            Member::Gateway => names::gateway(&self.spec.run_id),
        };
        Ok(Whereabouts { docker: Docker::connect().await?, container, host: host.to_owned() })
    }

    /// Each node's fixed address on the run's network (see [`node_ip`]).
    pub(super) async fn local_node_ips(&self) -> Result<Vec<Vec<String>>, ClusterError> {
        let network = names::network(&self.spec.run_id);
        let subnet = Docker::connect().await?.network_subnet(&network).await?.ok_or_else(|| {
            ClusterError::InvalidSpec(format!("network {network} has no IPv4 subnet"))
        })?;
        self.node_ids().into_iter().map(|node| Ok(vec![node_ip(&subnet, node)?])).collect()
    }

    /// Starts the ensemble `spec` describes and returns once every node serves
    /// (one leader, the rest followers), building a missing image first. On failure,
    /// or if this future is dropped, everything created so far is removed.
    pub(super) async fn up_local(
        spec: ClusterSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Cluster, ClusterError> {
        spec.validate()?;
        let docker = Docker::connect().await?;
        let image = spec.image_for(&spec.zk_version);
        if spec.image.is_none() {
            ensure_images(&[spec.zk_version.as_str()], false, progress).await?;
        } else if !docker.image_exists(&image).await? {
            return Err(ClusterError::InvalidSpec(format!(
                "image {image} is not present; fetch it first (docker pull {image})"
            )));
        }
        if !docker.list_containers(&[(LABEL_RUN, spec.run_id.as_str())]).await?.is_empty() {
            return Err(ClusterError::InvalidSpec(format!(
                "run id {} is in use (containers labelled {LABEL_RUN}={}); take it down with `zkmq cluster down --run {}` or pick another",
                spec.run_id, spec.run_id, spec.run_id
            )));
        }
        let started = Instant::now();
        let run_id = spec.run_id.clone();
        let mut guard = UpGuard::new(async move { sweep(&run_id).await });
        progress(&format!(
            "{}: starting {} ZooKeeper {} node(s) from {image}",
            spec.run_id, spec.nodes, spec.zk_version
        ));
        let subnet = create_network(&docker, &spec.run_id).await?;
        // Create every container first, then start them all at once: nodes that
        // boot seconds apart elect partial quorums that time out (initLimit) and
        // elect again, which made a 5-node `up` take 18 s instead of a few.
        let mut plans = Vec::new();
        for node in 1..=spec.nodes {
            docker
                .create_volume(
                    &names::volume(&spec.run_id, node),
                    labels(&spec.run_id, "data", Some(node)),
                    super::disk::volume_options(&spec),
                )
                .await?;
            super::disk::start_holder(&docker, &spec, node, &image).await?;
            let mut plan =
                node_plan(&spec, node, &image, &spec.zk_version, 0, &node_ip(&subnet, node)?);
            plan.publish = Some((2181, free_port()?));
            docker.create_container(&plan).await?;
            plans.push(plan);
        }
        let starts = plans.iter().map(|plan| docker.start_container(&plan.name));
        let results = futures::future::join_all(starts).await;
        let mut ports = Vec::new();
        for (mut plan, result) in plans.into_iter().zip(results) {
            let port = match result {
                Ok(()) => plan.publish.map_or(0, |(_, port)| port),
                // Someone took the port since we probed it: another one, the slow way.
                Err(err) if is_port_taken(&err) => {
                    docker.remove_container(&plan.name).await?;
                    plan.publish = Some((2181, 0));
                    create_and_start(&docker, plan).await?
                }
                Err(err) => return Err(err),
            };
            ports.push(port);
        }
        let host = client_host();
        let addresses = ports.iter().map(|port| format!("{host}:{port}")).collect();
        let engine = docker.engine().await?.name;
        let mut cluster = Cluster {
            spec: spec.clone(),
            addresses,
            rest_address: None,
            backend: Backend::Local { host: engine },
        };
        cluster.quorum_serves(started, progress).await?;
        if spec.rest {
            let port = start_gateway(&docker, &cluster, &subnet).await?;
            cluster.rest_address = Some(format!("{host}:{port}"));
            cluster.gateway_serves(progress).await?;
        }
        guard.disarm();
        Ok(cluster)
    }

    /// Finds a running cluster by its run id (labels and published ports).
    pub(super) async fn attach_local(run_id: &str) -> Result<Cluster, ClusterError> {
        let docker = Docker::connect().await?;
        let containers =
            docker.list_containers(&[(LABEL_RUN, run_id), (LABEL_ROLE, "zookeeper")]).await?;
        let mut spec: Option<ClusterSpec> = None;
        let mut ports = HashMap::new();
        for name in &containers {
            let Some(facts) = docker.inspect_container(name).await? else {
                continue;
            };
            if spec.is_none() {
                spec =
                    facts.labels.get(LABEL_SPEC).and_then(|json| serde_json::from_str(json).ok());
            }
            if let (Some(node), Some(port)) = (
                facts.labels.get(LABEL_NODE).and_then(|node| node.parse::<usize>().ok()),
                facts.host_port,
            ) {
                ports.insert(node, port);
            }
        }
        let spec = spec.ok_or_else(|| ClusterError::NotFound { run_id: run_id.to_owned() })?;
        let host = client_host();
        let addresses = (1..=spec.nodes)
            .map(|node| format!("{host}:{}", ports.get(&node).copied().unwrap_or(0)))
            .collect();
        let rest_address = match docker.inspect_container(&names::gateway(run_id)).await? {
            Some(facts) => facts.host_port.map(|port| format!("{host}:{port}")),
            None => None,
        };
        let engine = docker.engine().await?.name;
        Ok(Cluster { spec, addresses, rest_address, backend: Backend::Local { host: engine } })
    }
}

/// The run's network with a subnet we configured, because Docker only gives fixed
/// container addresses on such networks. We let Docker choose a free subnet first,
/// then re-create the network claiming that subnet explicitly.
async fn create_network(docker: &Docker, run_id: &str) -> Result<String, ClusterError> {
    let name = names::network(run_id);
    let mut last_error = None;
    for _ in 0..5 {
        docker.create_network(&name, labels(run_id, "network", None), None).await?;
        let subnet = docker.network_subnet(&name).await?;
        docker.remove_network(&name).await?;
        let Some(subnet) = subnet else {
            return Err(ClusterError::InvalidSpec(format!(
                "Docker gave network {name} no IPv4 subnet"
            )));
        };
        // Another process may grab the subnet in between; then try again.
        match docker.create_network(&name, labels(run_id, "network", None), Some(&subnet)).await {
            Ok(()) => return Ok(subnet),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.expect("the loop ran"))
}

async fn start_gateway(
    docker: &Docker,
    cluster: &Cluster,
    subnet: &str,
) -> Result<u16, ClusterError> {
    let spec = &cluster.spec;
    let binary = gateway_binary(spec)?;
    let image = spec.image_for(&spec.zk_version);
    // A remote engine's machine lacks our binary: it gets a copy in a volume.
    let (volume, binds_ro) = if engine_is_remote() {
        let volume = super::ensemble::ship_binary(docker, &spec.run_id, &binary, &image).await?;
        (Some((volume, BINARY_DIR.to_owned())), Vec::new())
    } else {
        let binary = binary
            .canonicalize()
            .map_err(ClusterError::io(format!("finding the zkmq binary {}", binary.display())))?;
        (None, vec![(binary.to_string_lossy().into_owned(), format!("{BINARY_DIR}/zkmq"))])
    };
    let plan = ContainerPlan {
        name: names::gateway(&spec.run_id),
        image,
        hostname: "rest".to_owned(),
        entrypoint: Some(vec![format!("{BINARY_DIR}/zkmq")]),
        cmd: gateway_args(cluster),
        env: gateway_env(),
        labels: labels(&spec.run_id, "rest", None),
        network: names::network(&spec.run_id),
        aliases: vec!["rest".to_owned()],
        volume,
        binds_ro,
        ipv4: Some(address_in(subnet, 100)?),
        publish: Some((GATEWAY_PORT, 0)),
        publish_everywhere: engine_is_remote(),
        cap_add: vec!["NET_ADMIN".to_owned()],
        ..Default::default()
    };
    create_and_start(docker, plan).await
}

/// The run ids that have containers on this Docker daemon (simulated swarm
/// hosts included), then those on the default swarm when one is known, with their
/// ZooKeeper node count, whether a gateway runs, and their owner.
pub async fn list_runs() -> Result<Vec<RunSummary>, ClusterError> {
    let docker = Docker::connect().await?;
    let mut runs: std::collections::BTreeMap<String, RunSummary> = Default::default();
    for (_, labels) in docker.list_containers_labelled(&[(LABEL_RUN, "")]).await? {
        let Some(run_id) = labels.get(LABEL_RUN) else {
            continue;
        };
        runs.entry(run_id.clone()).or_insert_with(|| RunSummary::new(run_id)).note(&labels);
    }
    let mut runs: Vec<RunSummary> = runs.into_values().collect();
    if let Ok(hosts) = super::swarm::resolve_hosts(&[]).await {
        match super::swarm::list_runs(&hosts).await {
            Ok(swarm_runs) => runs.extend(swarm_runs),
            Err(err) => tracing::warn!("listing the runs on swarm {}: {err}", hosts.join(",")),
        }
    }
    Ok(runs)
}

/// One run found by [`list_runs`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub zookeeper_containers: usize,
    pub rest: bool,
    /// The process the run belongs to; `None`: left running on purpose (`zkmq
    /// cluster up`, `--keep-cluster`), or made by a zkmq that did not record it.
    pub owner: Option<Owner>,
    /// Whether that process still runs; `Some(false)`: the run is stale (its
    /// owner died and no reaper removed it).
    pub owner_alive: Option<bool>,
    /// The swarm it runs on (its engines, manager first); empty: this machine's
    /// engine.
    pub swarm_hosts: Vec<String>,
    /// Simulated swarm hosts (a set of `zkmq cluster hosts up`), not a cluster.
    pub hosts: usize,
}

impl RunSummary {
    /// Counts one of the run's labelled objects (a container here, a service on a
    /// swarm), and reads the run's owner from its spec label.
    pub(super) fn note(&mut self, labels: &HashMap<String, String>) {
        let role = labels.get(LABEL_ROLE).map(String::as_str);
        match role {
            Some("zookeeper") => self.zookeeper_containers += 1,
            Some("rest") => self.rest = true,
            Some("host") => self.hosts += 1,
            _ => {}
        }
        let spec = labels.get(LABEL_SPEC);
        let owner = match role {
            Some("host") => spec
                .and_then(|json| serde_json::from_str::<super::HostsSpec>(json).ok())
                .and_then(|spec| spec.owner),
            _ => spec
                .and_then(|json| serde_json::from_str::<ClusterSpec>(json).ok())
                .and_then(|spec| spec.owner),
        };
        if let Some(owner) = owner {
            self.owner = Some(owner);
            self.owner_alive = Some(owner.alive());
        }
    }

    pub(super) fn new(run_id: &str) -> RunSummary {
        RunSummary {
            run_id: run_id.to_owned(),
            zookeeper_containers: 0,
            rest: false,
            owner: None,
            owner_alive: None,
            swarm_hosts: Vec::new(),
            hosts: 0,
        }
    }

    /// Its owner is gone and nobody removed it.
    pub fn stale(&self) -> bool {
        self.owner_alive == Some(false)
    }
}

/// Removes every run whose owner is gone. Returns the run ids removed.
pub async fn down_stale() -> Result<Vec<String>, ClusterError> {
    let mut removed = Vec::new();
    for run in list_runs().await?.into_iter().filter(RunSummary::stale) {
        super::down_run_on(&run.run_id, &run.swarm_hosts).await?;
        removed.push(run.run_id);
    }
    Ok(removed)
}

/// Removes every container, volume and network labelled `zkmq.run=<run_id>` on
/// this machine's engine (what a crashed run left, too). Returns how many objects
/// it removed.
pub(super) async fn down_local(run_id: &str) -> Result<usize, ClusterError> {
    super::validate_run_id(run_id)?;
    remove_labelled(&[(LABEL_RUN, run_id)]).await
}

/// Removes a run that may still be growing: when `up` is dropped mid-request, the
/// daemon finishes that request after our first removal pass. So: repeat until a
/// pass finds nothing, at least twice, half a second apart (bounded: 10 passes).
async fn sweep(run_id: &str) -> Result<usize, ClusterError> {
    let mut removed = 0;
    let mut last_error = None;
    for pass in 0..10 {
        // A pass can also fail on the half-made objects (a network still in use by
        // a container being created): that too means "not settled yet".
        match down_local(run_id).await {
            Ok(0) if pass >= 1 => return Ok(removed),
            Ok(found) => {
                removed += found;
                last_error = None;
            }
            Err(err) => last_error = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    match last_error {
        Some(err) => Err(err),
        None => Ok(removed),
    }
}

/// Removes every object of every zkmq run on this Docker daemon. Other people's
/// runs too: not for use while others work.
pub async fn down_all() -> Result<usize, ClusterError> {
    remove_labelled(&[(LABEL_RUN, "")]).await
}

async fn remove_labelled(labels: &[(&str, &str)]) -> Result<usize, ClusterError> {
    let docker = Docker::connect().await?;
    let mut removed = 0;
    // Keep going past a failure so one stubborn object does not shield the rest;
    // report the first failure at the end.
    let mut first_error = None;
    let mut note = |result: Result<(), ClusterError>| match result {
        Ok(()) => removed += 1,
        Err(err) => {
            first_error.get_or_insert(err);
        }
    };
    for container in docker.list_containers(labels).await? {
        note(docker.remove_container(&container).await);
    }
    for volume in docker.list_volumes(labels).await? {
        note(docker.remove_volume(&volume).await);
    }
    for network in docker.list_networks(labels).await? {
        note(docker.remove_network(&network).await);
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(removed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_addresses() {
        assert_eq!(node_ip("172.19.0.0/16", 1).unwrap(), "172.19.0.11");
        assert_eq!(address_in("192.168.16.0/20", 100).unwrap(), "192.168.16.100");
    }
}
