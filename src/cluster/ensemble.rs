//! Bringing an ensemble up, finding it again, reading its state, taking it down.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::docker::{ContainerPlan, Docker};
use super::fourlw::{four_letter_word, parse_srvr};
use super::{
    ensure_images, names, Cluster, ClusterError, ClusterSpec, NodeMode, NodeStatus, Owner,
    LABEL_NODE, LABEL_ROLE, LABEL_RUN, LABEL_SPEC,
};

const ZOO_CFG_TEMPLATE: &str = include_str!("../../cluster/zoo.cfg.template");
const START_SCRIPT: &str = include_str!("../../cluster/zk-start.sh");

/// The gateway listens here inside its container.
pub(super) const GATEWAY_PORT: u16 = 9998;
/// Where a node's data volume is mounted (`dataDir` in zoo.cfg.template).
const DATA_MOUNT: &str = "/data";
/// How long one `srvr` may take before the node counts as down.
const SRVR_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(200);

pub(super) fn labels(run_id: &str, role: &str, node: Option<usize>) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_RUN.to_owned(), run_id.to_owned()),
        (LABEL_ROLE.to_owned(), role.to_owned()),
    ]);
    if let Some(node) = node {
        labels.insert(LABEL_NODE.to_owned(), node.to_string());
    }
    labels
}

fn render_zoo_cfg(spec: &ClusterSpec) -> String {
    let servers = if spec.nodes == 1 {
        // One node runs standalone: a quorum of one would still elect itself, but
        // standalone is what people run for development.
        String::new()
    } else {
        (1..=spec.nodes)
            .map(|node| format!("server.{node}={}:2888:3888;2181", names::alias(node)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    ZOO_CFG_TEMPLATE
        .replace("{{tick_time_ms}}", &spec.tick_time_ms.to_string())
        .replace("{{init_limit}}", &spec.init_limit.to_string())
        .replace("{{sync_limit}}", &spec.sync_limit.to_string())
        .replace("{{servers}}", &servers)
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
        ],
        labels,
        network: names::network(&spec.run_id),
        aliases: vec![names::alias(node)],
        volume: Some((names::volume(&spec.run_id, node), DATA_MOUNT.to_owned())),
        binds_ro: Vec::new(),
        ipv4: Some(ip.to_owned()),
        publish: Some((2181, port)),
        cap_add: vec!["NET_ADMIN".to_owned()],
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

/// Removes what `up` created if `up` fails or its future is dropped (Ctrl-C in the
/// CLI selects the signal over `up`), unless disarmed on success.
struct UpGuard {
    run_id: Option<String>,
}

impl Drop for UpGuard {
    fn drop(&mut self) {
        if let Some(run_id) = self.run_id.take() {
            // Drop cannot await; a thread with its own runtime can, and joining it
            // means nothing is left behind when the process exits right after.
            let _ = std::thread::spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(sweep(&run_id)).ok()
            })
            .join();
        }
    }
}

impl Cluster {
    /// Starts the ensemble `spec` describes and returns once every node serves
    /// (one leader, the rest followers), building a missing image first. On failure,
    /// or if this future is dropped, everything created so far is removed.
    pub async fn up(
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
        let mut guard = UpGuard { run_id: Some(spec.run_id.clone()) };
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
                )
                .await?;
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
        let mut cluster = Cluster { spec: spec.clone(), ports, rest_port: None };
        cluster.wait_all_serving(spec.up_timeout).await?;
        progress(&format!(
            "{}: quorum serving after {:.1} s: {}",
            spec.run_id,
            started.elapsed().as_secs_f64(),
            cluster.connect_string()
        ));
        if spec.rest {
            let port = start_gateway(&docker, &cluster, &subnet).await?;
            cluster.rest_port = Some(port);
            cluster.wait_gateway(Duration::from_secs(30)).await?;
            progress(&format!(
                "{}: REST gateway at {}",
                spec.run_id,
                cluster.rest_url().unwrap_or_default()
            ));
        }
        guard.run_id = None;
        Ok(cluster)
    }

    /// Finds a running cluster by its run id (labels and published ports).
    pub async fn attach(run_id: &str) -> Result<Cluster, ClusterError> {
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
        let ports = (1..=spec.nodes).map(|node| ports.get(&node).copied().unwrap_or(0)).collect();
        let rest_port = match docker.inspect_container(&names::gateway(run_id)).await? {
            Some(facts) => facts.host_port,
            None => None,
        };
        Ok(Cluster { spec, ports, rest_port })
    }

    /// Every node as Docker and `srvr` see it now.
    pub async fn status(&self) -> Result<Vec<NodeStatus>, ClusterError> {
        let docker = Docker::connect().await?;
        let mut statuses = Vec::new();
        for node in self.node_ids() {
            let facts = docker.inspect_container(&self.container_name(node)).await?;
            let container =
                facts.as_ref().map_or_else(|| "missing".to_owned(), |facts| facts.state.clone());
            let image = facts.map(|facts| facts.image).unwrap_or_default();
            statuses.push((node, container, image));
        }
        let probes = statuses.iter().map(|(node, container, _)| {
            let address = self.node_address(*node);
            let running = container == "running";
            async move {
                if running {
                    parse_srvr(four_letter_word(&address, "srvr", SRVR_TIMEOUT).await.as_deref())
                } else {
                    parse_srvr(None)
                }
            }
        });
        let infos = futures::future::join_all(probes).await;
        Ok(statuses
            .into_iter()
            .zip(infos)
            .map(|((node, container, image), info)| NodeStatus {
                node,
                container,
                mode: info.mode,
                address: self.node_address(node),
                version: info.version,
                image,
                zxid: info.zxid,
            })
            .collect())
    }

    /// The node `srvr` calls leader, if any answers so.
    pub async fn leader(&self) -> Result<Option<usize>, ClusterError> {
        Ok(self
            .status()
            .await?
            .into_iter()
            .find(|status| status.mode == NodeMode::Leader)
            .map(|status| status.node))
    }

    /// Waits until a majority serves, one of them the leader.
    pub async fn wait_for_quorum(&self, timeout: Duration) -> Result<(), ClusterError> {
        let majority = self.spec.nodes / 2 + 1;
        self.wait_until(timeout, "a serving quorum", |statuses| {
            let serving = statuses.iter().filter(|s| s.mode.is_serving()).count();
            let leader =
                statuses.iter().any(|s| matches!(s.mode, NodeMode::Leader | NodeMode::Standalone));
            serving >= majority && leader
        })
        .await
    }

    /// Waits until every node serves and exactly one leads.
    pub async fn wait_all_serving(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.wait_until(timeout, "every node serving with one leader", |statuses| {
            let leaders = statuses
                .iter()
                .filter(|s| matches!(s.mode, NodeMode::Leader | NodeMode::Standalone))
                .count();
            statuses.iter().all(|s| s.mode.is_serving()) && leaders == 1
        })
        .await
    }

    /// Waits until one node serves (leader or follower).
    pub async fn wait_serving(&self, node: usize, timeout: Duration) -> Result<(), ClusterError> {
        self.check_node(node)?;
        let address = self.node_address(node);
        let deadline = Instant::now() + timeout;
        loop {
            let info =
                parse_srvr(four_letter_word(&address, "srvr", SRVR_TIMEOUT).await.as_deref());
            if info.mode.is_serving() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    waited_for: format!(
                        "zk{node} ({address}) to serve, {timeout:?}; it says: {}",
                        info.mode
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[NodeStatus]) -> bool,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.status().await?;
            if done(&statuses) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let detail = statuses
                    .iter()
                    .map(|s| format!("zk{}: {} ({})", s.node, s.mode, s.container))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut logs = String::new();
                for node in self.node_ids() {
                    let tail = self.logs(node, Some(15)).await.unwrap_or_default();
                    logs.push_str(&format!("--- zk{node}\n{}\n", tail.trim_end()));
                }
                return Err(ClusterError::NoQuorum {
                    waited: timeout,
                    detail: format!("waited for {what}; {detail}"),
                    logs,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_gateway(&self, timeout: Duration) -> Result<(), ClusterError> {
        let Some(port) = self.rest_port else {
            return Ok(());
        };
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + timeout;
        loop {
            // The port is published by docker-proxy even before the process
            // listens, so a connect is not enough: ask for something.
            if let Some(reply) = four_letter_word(
                &address,
                "GET /znodes/v1/ HTTP/1.0\r\nHost: localhost\r\n\r\n",
                SRVR_TIMEOUT,
            )
            .await
            {
                if reply.starts_with("HTTP/") {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let logs = self.rest_logs(Some(20)).await.unwrap_or_default();
                return Err(ClusterError::Timeout {
                    waited_for: format!(
                        "the REST gateway on {address} to answer HTTP ({timeout:?}); its last log lines:\n{logs}"
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A node's container log (stdout and stderr), the last `tail` lines.
    pub async fn logs(&self, node: usize, tail: Option<usize>) -> Result<String, ClusterError> {
        self.check_node(node)?;
        Docker::connect().await?.logs(&self.container_name(node), tail).await
    }

    /// The gateway's container log.
    pub async fn rest_logs(&self, tail: Option<usize>) -> Result<String, ClusterError> {
        Docker::connect().await?.logs(&names::gateway(&self.spec.run_id), tail).await
    }

    /// Writes `zk<N>.log` per node and `rest.log` into `dir`.
    pub async fn save_logs(&self, dir: &Path) -> Result<(), ClusterError> {
        std::fs::create_dir_all(dir)
            .map_err(ClusterError::io(format!("creating {}", dir.display())))?;
        for node in self.node_ids() {
            let text = match self.logs(node, None).await {
                Ok(text) => text,
                Err(err) => format!("(no log: {err})\n"),
            };
            let path = dir.join(format!("zk{node}.log"));
            std::fs::write(&path, text)
                .map_err(ClusterError::io(format!("writing {}", path.display())))?;
        }
        if self.spec.rest {
            let text = match self.rest_logs(None).await {
                Ok(text) => text,
                Err(err) => format!("(no log: {err})\n"),
            };
            let path = dir.join("rest.log");
            std::fs::write(&path, text)
                .map_err(ClusterError::io(format!("writing {}", path.display())))?;
        }
        Ok(())
    }

    /// Copies each member's data directory (`myid`, and `version-2/` with its
    /// snapshots and transaction logs) into `dir/zk<N>/`: what a post-mortem of a
    /// violation reads, and gone once the cluster is removed. Every member is tried
    /// (a failed one leaves the others useful); returns the files copied per node
    /// and the first failure.
    pub async fn save_data_dirs(&self, dir: &Path) -> Result<Vec<(usize, u64)>, ClusterError> {
        let docker = Docker::connect().await?;
        let (mut copied, mut first_error) = (Vec::new(), None);
        for node in self.node_ids() {
            let into = dir.join(names::alias(node));
            match docker.download(&self.container_name(node), DATA_MOUNT, &into).await {
                Ok(files) => copied.push((node, files)),
                Err(err) => {
                    tracing::warn!("copying the data of zk{node}: {err}");
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(copied),
        }
    }

    /// Removes every container, volume and network labelled with this run id.
    pub async fn down(&self) -> Result<(), ClusterError> {
        down_run(&self.spec.run_id).await.map(|_| ())
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
    let binary = match &spec.zkmq_binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(ClusterError::io("finding the zkmq binary"))?,
    };
    let binary = binary
        .canonicalize()
        .map_err(ClusterError::io(format!("finding the zkmq binary {}", binary.display())))?;
    let plan = ContainerPlan {
        name: names::gateway(&spec.run_id),
        image: spec.image_for(&spec.zk_version),
        hostname: "rest".to_owned(),
        entrypoint: Some(vec!["/usr/local/bin/zkmq".to_owned()]),
        cmd: vec![
            "rest".to_owned(),
            "serve".to_owned(),
            "--listen".to_owned(),
            format!("0.0.0.0:{GATEWAY_PORT}"),
            "--endpoint".to_owned(),
            format!("/;{}", cluster.internal_connect_string()),
        ],
        // plain text in `docker logs` and the saved rest.log
        env: vec!["RUST_LOG=info".to_owned(), "NO_COLOR=1".to_owned()],
        labels: labels(&spec.run_id, "rest", None),
        network: names::network(&spec.run_id),
        aliases: vec!["rest".to_owned()],
        volume: None,
        binds_ro: vec![(binary.to_string_lossy().into_owned(), "/usr/local/bin/zkmq".to_owned())],
        ipv4: Some(address_in(subnet, 100)?),
        publish: Some((GATEWAY_PORT, 0)),
        cap_add: vec!["NET_ADMIN".to_owned()],
    };
    create_and_start(docker, plan).await
}

/// The run ids that have containers on this Docker daemon, with their ZooKeeper
/// node count, how many containers run, and their owner.
pub async fn list_runs() -> Result<Vec<RunSummary>, ClusterError> {
    let docker = Docker::connect().await?;
    let mut runs: std::collections::BTreeMap<String, RunSummary> = Default::default();
    for (_, labels) in docker.list_containers_labelled(&[(LABEL_RUN, "")]).await? {
        let Some(run_id) = labels.get(LABEL_RUN) else {
            continue;
        };
        let run = runs.entry(run_id.clone()).or_insert_with(|| RunSummary {
            run_id: run_id.clone(),
            zookeeper_containers: 0,
            rest: false,
            owner: None,
            owner_alive: None,
        });
        match labels.get(LABEL_ROLE).map(String::as_str) {
            Some("zookeeper") => run.zookeeper_containers += 1,
            Some("rest") => run.rest = true,
            _ => {}
        }
        let spec: Option<ClusterSpec> =
            labels.get(LABEL_SPEC).and_then(|json| serde_json::from_str(json).ok());
        if let Some(owner) = spec.and_then(|spec| spec.owner) {
            run.owner = Some(owner);
            run.owner_alive = Some(owner.alive());
        }
    }
    Ok(runs.into_values().collect())
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
}

impl RunSummary {
    /// Its owner is gone and nobody removed it.
    pub fn stale(&self) -> bool {
        self.owner_alive == Some(false)
    }
}

/// Removes every run whose owner is gone. Returns the run ids removed.
pub async fn down_stale() -> Result<Vec<String>, ClusterError> {
    let mut removed = Vec::new();
    for run in list_runs().await?.into_iter().filter(RunSummary::stale) {
        down_run(&run.run_id).await?;
        removed.push(run.run_id);
    }
    Ok(removed)
}

/// Removes every container, volume and network labelled `zkmq.run=<run_id>`
/// (what a crashed run left, too). Returns how many objects it removed.
pub async fn down_run(run_id: &str) -> Result<usize, ClusterError> {
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
        match down_run(run_id).await {
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
    fn zoo_cfg_lists_every_server() {
        let spec = ClusterSpec::new("t", 3);
        let cfg = render_zoo_cfg(&spec);
        assert!(cfg.contains("tickTime=500\n"));
        assert!(cfg.contains("server.3=zk3:2888:3888;2181"));
        assert!(cfg.contains("4lw.commands.whitelist=*"));
        assert!(!cfg.contains("{{"));
    }

    #[test]
    fn fixed_addresses() {
        assert_eq!(node_ip("172.19.0.0/16", 1).unwrap(), "172.19.0.11");
        assert_eq!(address_in("192.168.16.0/20", 100).unwrap(), "192.168.16.100");
    }

    #[test]
    fn image_names() {
        assert_eq!(super::super::image_for_version("3.9.3"), "zkmq/zookeeper:3.9.3");
    }
}
