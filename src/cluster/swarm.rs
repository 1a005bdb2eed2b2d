//! The swarm backend: every member a Docker Swarm service of one replica, pinned
//! to one host by a placement constraint, never restarted by the swarm (restart
//! policy `none`: the nemesis decides restarts), with its own named volume on that
//! host, on an attachable overlay network, and its client port published on its
//! host (host mode). The gateway is a service too, on the manager.
//!
//! What differs from the local backend, and why:
//!
//! - A member's container is its service's current task's container, on the engine
//!   of the host that runs the task (found from the swarm's task list). Node faults
//!   go through that engine with the same container verbs and `exec` as locally.
//! - Starting a stopped member makes the swarm replace its task (a forced service
//!   update): a task's container cannot simply be started again, because the
//!   swarm took its name out of the network's DNS when the task died. The new
//!   container keeps the volume, the host and the published port.
//! - Members find each other by name (`zk3`), not by fixed addresses: Swarm gives
//!   no task a fixed IP, and its virtual-IP load balancing needs IPVS, which not
//!   every kernel has. So services resolve by DNS round robin (`dnsrr`) and the
//!   JVM caches names for a second only; zoo.cfg is the same as locally.
//! - Partitions name the peers' current task addresses. A member restarted while
//!   a partition holds comes back with a new address its peers' rules do not name,
//!   so a start reads the partition in force back from the rules, has the new task
//!   apply its own side before ZooKeeper starts, and rewrites its peers' rules.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::docker::{Docker, ServicePlan, TaskFacts, VolumeMount};
use super::ensemble::{
    gateway_args, gateway_binary, gateway_env, labels, render_zoo_cfg, UpGuard, BINARY_DIR,
    DATA_MOUNT, GATEWAY_PORT, START_SCRIPT,
};
use super::fault::Member;
use super::{
    ensure_images, names, Backend, Cluster, ClusterError, ClusterSpec, Whereabouts, LABEL_RUN,
    LABEL_SPEC,
};

/// Swarm node label: the ports members may publish on that node (`30000-30999`);
/// `zkmq cluster hosts up` sets it on each simulated host.
pub const LABEL_PORTS: &str = "zkmq.ports";
/// Swarm node label: where clients reach ports published on that node, when not
/// at the host of its engine endpoint.
pub const LABEL_ADDRESS: &str = "zkmq.address";
/// The ports a node without [`LABEL_PORTS`] lends.
const DEFAULT_PORTS: (u16, u16) = (30000, 30999);
/// Seconds a graceful stop waits before SIGKILL, as locally.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// A member's service's variable holding the iptables script `zk-start.sh` runs
/// before ZooKeeper: its side of the partition in force when it was started.
const NET_SETUP: &str = "ZKMQ_NET_SETUP";
/// How long a member's new task may take to run.
const TASK_START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// The engines of a swarm, manager first, as found when a cluster is brought up
/// or attached to.
#[derive(Debug, Clone)]
pub(super) struct Swarm {
    hosts: Vec<SwarmHost>,
}

/// One engine of the swarm.
#[derive(Debug, Clone)]
pub(super) struct SwarmHost {
    /// How the harness reaches its engine.
    pub endpoint: String,
    /// Its swarm node id (placement constraints name it).
    pub node_id: String,
    /// Its host name, as `cluster status` shows it.
    pub hostname: String,
    /// Where clients reach the ports it publishes.
    pub address: String,
    /// The ports members may publish on it.
    pub ports: (u16, u16),
}

impl Swarm {
    /// The swarm these engines belong to. The first must be a manager; every one
    /// must be a node of that swarm.
    pub(super) async fn find(endpoints: &[String]) -> Result<Swarm, ClusterError> {
        let Some(first) = endpoints.first() else {
            return Err(no_hosts());
        };
        let manager = Docker::connect_to(first).await?;
        let facts = manager.engine().await?;
        if !facts.manager {
            return Err(ClusterError::InvalidSpec(format!(
                "{first} is not a swarm manager (swarm state: {}); list a manager first in [cluster.swarm] hosts",
                facts.swarm_state
            )));
        }
        let nodes = manager.list_nodes().await?;
        let mut hosts = Vec::new();
        for endpoint in endpoints {
            let engine = Docker::connect_to(endpoint).await?.engine().await?;
            let Some(node) = nodes.iter().find(|node| node.id == engine.node_id) else {
                return Err(ClusterError::InvalidSpec(format!(
                    "{endpoint} is not a node of the swarm {first} manages (its swarm state: {})",
                    engine.swarm_state
                )));
            };
            let ports = match node.labels.get(LABEL_PORTS) {
                Some(range) => parse_ports(range).ok_or_else(|| {
                    ClusterError::InvalidSpec(format!(
                        "swarm node {} has label {LABEL_PORTS}={range:?}; use a range like 30000-30999",
                        node.hostname
                    ))
                })?,
                None => DEFAULT_PORTS,
            };
            let address = node
                .labels
                .get(LABEL_ADDRESS)
                .cloned()
                .unwrap_or_else(|| endpoint_address(endpoint));
            hosts.push(SwarmHost {
                endpoint: endpoint.clone(),
                node_id: node.id.clone(),
                hostname: node.hostname.clone(),
                address,
                ports,
            });
        }
        Ok(Swarm { hosts })
    }

    pub(super) fn hosts(&self) -> &[SwarmHost] {
        &self.hosts
    }

    fn manager(&self) -> &SwarmHost {
        &self.hosts[0]
    }

    async fn manager_engine(&self) -> Result<Docker, ClusterError> {
        Docker::connect_to(&self.manager().endpoint).await
    }

    fn host_of(&self, node_id: &str) -> Option<&SwarmHost> {
        self.hosts.iter().find(|host| host.node_id == node_id)
    }

    /// The host member `index` (0-based) runs on: round robin, manager first.
    fn host_for(&self, index: usize) -> &SwarmHost {
        &self.hosts[index % self.hosts.len()]
    }
}

impl SwarmHost {
    /// The first port of this host's range that no service publishes.
    fn free_port(&self, used: &HashSet<u16>) -> Result<u16, ClusterError> {
        (self.ports.0..=self.ports.1).find(|port| !used.contains(port)).ok_or_else(|| {
            ClusterError::InvalidSpec(format!(
                "host {} has no free port left in {}-{}: take other runs down, or give it more ports \
                 (`zkmq cluster hosts up --ports`, or the swarm node label {LABEL_PORTS})",
                self.hostname, self.ports.0, self.ports.1
            ))
        })
    }
}

fn no_hosts() -> ClusterError {
    ClusterError::InvalidSpec(
        "the swarm backend needs its engines: list them in [cluster.swarm] hosts (manager first), \
         in ZKMQ_SWARM_HOSTS (comma-separated), or simulate some with `zkmq cluster hosts up`"
            .to_owned(),
    )
}

/// `30000-30999` as a range.
pub(super) fn parse_ports(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-')?;
    let (low, high) = (low.trim().parse().ok()?, high.trim().parse().ok()?);
    (low <= high).then_some((low, high))
}

/// Where clients reach ports an engine publishes: the host of a `tcp://` endpoint,
/// 127.0.0.1 for a local socket.
pub(super) fn endpoint_address(endpoint: &str) -> String {
    let Some(rest) = endpoint.strip_prefix("tcp://").or_else(|| endpoint.strip_prefix("http://"))
    else {
        return "127.0.0.1".to_owned();
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    match host.trim_matches(['[', ']']) {
        "" | "localhost" | "0.0.0.0" => "127.0.0.1".to_owned(),
        host => host.to_owned(),
    }
}

/// The engines a swarm run uses: those given, else `$ZKMQ_SWARM_HOSTS`
/// (comma-separated), else the simulated hosts of `zkmq cluster hosts up`.
pub(super) async fn resolve_hosts(given: &[String]) -> Result<Vec<String>, ClusterError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    if let Some(hosts) = std::env::var("ZKMQ_SWARM_HOSTS").ok().filter(|v| !v.trim().is_empty()) {
        return Ok(hosts
            .split(',')
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect());
    }
    match super::hosts::current_hosts().await? {
        Some(hosts) => Ok(hosts.endpoints()),
        None => Err(no_hosts()),
    }
}

/// Engine endpoints must say how to reach them.
pub(super) fn validate_endpoints(hosts: &[String]) -> Result<(), ClusterError> {
    for host in hosts {
        if !["unix://", "tcp://", "http://"].iter().any(|scheme| host.starts_with(scheme)) {
            return Err(ClusterError::InvalidSpec(format!(
                "swarm host {host:?}: name an engine endpoint, like tcp://10.0.0.5:2375 or unix:///var/run/docker.sock"
            )));
        }
    }
    Ok(())
}

fn service_name(run_id: &str, member: Member) -> String {
    match member {
        Member::Node(node) => names::container(run_id, node),
        Member::Gateway => names::gateway(run_id),
    }
}

/// Makes sure every host has `image`, loading it from this machine's engine
/// (`docker save | docker load`, streamed) where it lacks it.
async fn ship_image(
    hosts: &[SwarmHost],
    image: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ClusterError> {
    let loads = hosts.iter().map(|host| async move {
        let engine = Docker::connect_to(&host.endpoint).await?;
        if engine.image_exists(image).await? {
            return Ok(());
        }
        let local = Docker::connect().await?;
        if !local.image_exists(image).await? {
            return Err(ClusterError::InvalidSpec(format!(
                "image {image} is on neither host {} nor this machine's engine; build or pull it here first",
                host.hostname
            )));
        }
        let started = Instant::now();
        engine.load_image_from(&local, image).await?;
        progress(&format!(
            "{image}: loaded into host {} in {:.1} s",
            host.hostname,
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    });
    futures::future::join_all(loads).await.into_iter().collect()
}

fn member_plan(
    spec: &ClusterSpec,
    node: usize,
    host: &SwarmHost,
    port: u16,
    image: &str,
) -> ServicePlan {
    let mut labels = labels(&spec.run_id, "zookeeper", Some(node));
    labels.insert(LABEL_SPEC.to_owned(), serde_json::to_string(spec).expect("a spec serializes"));
    labels.insert("zkmq.zk_version".to_owned(), spec.zk_version.clone());
    ServicePlan {
        name: names::container(&spec.run_id, node),
        image: image.to_owned(),
        hostname: names::alias(node),
        command: vec!["/bin/sh".to_owned(), "-c".to_owned()],
        args: vec![START_SCRIPT.to_owned()],
        env: vec![
            format!("ZKMQ_ZOO_CFG={}", render_zoo_cfg(spec)),
            format!("ZKMQ_MYID={node}"),
            format!("ZKMQ_HEAP_MB={}", spec.heap_mb),
            format!("ZKMQ_CLOCK_FAULTS={}", u8::from(spec.clock_faults)),
            // A peer's address changes with each of its tasks: look names up again
            // within a second, not after the JVM's default 30 s.
            "JAVA_TOOL_OPTIONS=-Dsun.net.inetaddr.ttl=1 -Dsun.net.inetaddr.negative.ttl=0"
                .to_owned(),
        ],
        labels,
        network: names::network(&spec.run_id),
        aliases: vec![names::alias(node)],
        volumes: vec![VolumeMount {
            volume: names::volume(&spec.run_id, node),
            target: DATA_MOUNT.to_owned(),
            read_only: false,
            labels: super::ensemble::labels(&spec.run_id, "data", Some(node)),
        }],
        node_id: host.node_id.clone(),
        publish: (2181, port),
        cap_add: vec!["NET_ADMIN".to_owned()],
        stop_grace: STOP_GRACE,
    }
}

impl Cluster {
    /// [`Cluster::up`] on a swarm: one service per member, spread round robin over
    /// the hosts (manager first), the gateway on the manager.
    pub(super) async fn up_swarm(
        mut spec: ClusterSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Cluster, ClusterError> {
        spec.validate()?;
        if let Some(limit) = spec.data_limit_mb {
            // The size-limited volume lives as long as a holder container keeps it
            // mounted (disk.rs), which the swarm backend does not place yet.
            return Err(ClusterError::Unsupported(format!(
                "a data limit ({limit} MiB, for disk-full) needs the local backend: the \
                 swarm backend has no size-limited member volumes yet"
            )));
        }
        spec.swarm.hosts = resolve_hosts(&spec.swarm.hosts).await?;
        let swarm = Swarm::find(&spec.swarm.hosts).await?;
        let manager = swarm.manager_engine().await?;
        let image = spec.image_for(&spec.zk_version);
        if spec.image.is_none() {
            ensure_images(&[spec.zk_version.as_str()], false, progress).await?;
        }
        if !manager.list_services(&[(LABEL_RUN, spec.run_id.as_str())]).await?.is_empty() {
            return Err(ClusterError::InvalidSpec(format!(
                "run id {} is in use (services labelled {LABEL_RUN}={}); take it down with `zkmq cluster down --run {}` or pick another",
                spec.run_id, spec.run_id, spec.run_id
            )));
        }
        let started = Instant::now();
        let (run_id, hosts) = (spec.run_id.clone(), spec.swarm.hosts.clone());
        let mut guard = UpGuard::new(async move { down(&run_id, &hosts).await });
        ship_image(swarm.hosts(), &image, progress).await?;
        progress(&format!(
            "{}: starting {} ZooKeeper {} member(s) from {image} on {} swarm host(s): {}",
            spec.run_id,
            spec.nodes,
            spec.zk_version,
            swarm.hosts().len(),
            swarm.hosts().iter().map(|h| h.hostname.as_str()).collect::<Vec<_>>().join(", ")
        ));
        manager
            .create_overlay_network(
                &names::network(&spec.run_id),
                labels(&spec.run_id, "network", None),
            )
            .await?;
        let mut used: HashSet<u16> = manager
            .list_services(&[])
            .await?
            .into_iter()
            .flat_map(|service| service.published)
            .collect();
        let mut addresses = Vec::new();
        for node in 1..=spec.nodes {
            let host = swarm.host_for(node - 1);
            let port = host.free_port(&used)?;
            used.insert(port);
            manager.create_service(&member_plan(&spec, node, host, port, &image)).await?;
            addresses.push(format!("{}:{port}", host.address));
        }
        let mut cluster = Cluster {
            spec: spec.clone(),
            addresses,
            rest_address: None,
            backend: Backend::Swarm(swarm.clone()),
        };
        let members: Vec<Member> = cluster.node_ids().into_iter().map(Member::Node).collect();
        cluster.wait_tasks_running(&swarm, &members, &HashSet::new(), spec.up_timeout).await?;
        cluster.quorum_serves(started, progress).await?;
        if spec.rest {
            let host = swarm.manager();
            let port = host.free_port(&used)?;
            start_gateway(&cluster, &swarm, port, &image).await?;
            cluster.rest_address = Some(format!("{}:{port}", host.address));
            cluster
                .wait_tasks_running(&swarm, &[Member::Gateway], &HashSet::new(), spec.up_timeout)
                .await?;
            cluster.gateway_serves(progress).await?;
        }
        guard.disarm();
        Ok(cluster)
    }

    /// [`Cluster::attach`] on the swarm these engines form; `None` when it has no
    /// run `run_id`.
    pub(super) async fn attach_swarm(
        run_id: &str,
        endpoints: &[String],
    ) -> Result<Option<Cluster>, ClusterError> {
        let swarm = Swarm::find(endpoints).await?;
        let services = swarm.manager_engine().await?.list_services(&[(LABEL_RUN, run_id)]).await?;
        let Some(mut spec) = services.iter().find_map(|service| {
            service
                .labels
                .get(LABEL_SPEC)
                .and_then(|json| serde_json::from_str::<ClusterSpec>(json).ok())
        }) else {
            return Ok(None);
        };
        spec.swarm.hosts = endpoints.to_vec();
        let address = |service: &super::docker::ServiceFacts| {
            let host = service.node_id.as_deref().and_then(|id| swarm.host_of(id));
            match (host, service.published.first()) {
                (Some(host), Some(port)) => format!("{}:{port}", host.address),
                _ => "127.0.0.1:0".to_owned(),
            }
        };
        let find = |member| services.iter().find(|s| s.name == service_name(run_id, member));
        let addresses = (1..=spec.nodes)
            .map(|node| find(Member::Node(node)).map_or_else(|| "127.0.0.1:0".to_owned(), address))
            .collect();
        let rest_address = find(Member::Gateway).map(address);
        Ok(Some(Cluster { spec, addresses, rest_address, backend: Backend::Swarm(swarm) }))
    }

    /// Where each member runs now: its service's current task (the one the swarm
    /// wants running, else the newest), on the engine of that task's host.
    pub(super) async fn swarm_whereabouts(
        &self,
        swarm: &Swarm,
        members: &[Member],
    ) -> Result<Vec<Whereabouts>, ClusterError> {
        let run_id = &self.spec.run_id;
        let tasks = self.member_tasks(swarm, members).await?;
        let mut engines: HashMap<String, Docker> = HashMap::new();
        let mut found = Vec::new();
        for (member, (service, tasks)) in members.iter().zip(tasks) {
            let current = current_task(&tasks);
            let host = current
                .and_then(|task| swarm.host_of(&task.node_id))
                .or_else(|| service.as_ref().and_then(|s| swarm.host_of(s.node_id.as_deref()?)))
                .unwrap_or_else(|| swarm.manager());
            let docker = match engines.get(&host.endpoint) {
                Some(docker) => docker.clone(),
                None => {
                    let docker = Docker::connect_to(&host.endpoint).await?;
                    engines.insert(host.endpoint.clone(), docker.clone());
                    docker
                }
            };
            // Before the swarm made the container, the name it will give it.
            let container = match current {
                Some(task) => task.container_id.clone().unwrap_or_else(|| {
                    format!("{}.{}.{}", service_name(run_id, *member), task.slot, task.id)
                }),
                None => service_name(run_id, *member),
            };
            found.push(Whereabouts { docker, container, host: host.hostname.clone() });
        }
        Ok(found)
    }

    /// Every container a member's tasks left (oldest first): its logs span them.
    pub(super) async fn swarm_log_sources(
        &self,
        swarm: &Swarm,
        member: Member,
    ) -> Result<Vec<Whereabouts>, ClusterError> {
        let (_, mut tasks) = self.member_tasks(swarm, &[member]).await?.remove(0);
        tasks.sort_by_key(created);
        let mut sources = Vec::new();
        for task in tasks {
            let (Some(container), Some(host)) = (task.container_id, swarm.host_of(&task.node_id))
            else {
                continue;
            };
            let docker = Docker::connect_to(&host.endpoint).await?;
            sources.push(Whereabouts { docker, container, host: host.hostname.clone() });
        }
        Ok(sources)
    }

    /// Each member's service (if it exists) and all its tasks.
    async fn member_tasks(
        &self,
        swarm: &Swarm,
        members: &[Member],
    ) -> Result<Vec<(Option<super::docker::ServiceFacts>, Vec<TaskFacts>)>, ClusterError> {
        let run_id = &self.spec.run_id;
        let manager = swarm.manager_engine().await?;
        let services = manager.list_services(&[(LABEL_RUN, run_id)]).await?;
        let names: Vec<String> = members.iter().map(|m| service_name(run_id, *m)).collect();
        let tasks = manager.list_tasks(&names).await?;
        Ok(names
            .iter()
            .map(|name| {
                let service = services.iter().find(|s| &s.name == name).cloned();
                let id = service.as_ref().map(|s| s.id.clone()).unwrap_or_default();
                let tasks = tasks.iter().filter(|t| t.service_id == id).cloned().collect();
                (service, tasks)
            })
            .collect())
    }

    /// Starts a member whose container is not running (or not there): the swarm
    /// replaces its task, running `image` if given. Returns once the new task's
    /// container runs; a task already on its way is waited for, not replaced.
    ///
    /// A partition in force holds for the new task from its first packet: it runs
    /// its own side of the cuts before ZooKeeper starts (`ZKMQ_NET_SETUP`), and its
    /// peers' rules are then rewritten to name its new address.
    pub(super) async fn swarm_start(
        &self,
        swarm: &Swarm,
        member: Member,
        image: Option<&str>,
    ) -> Result<(), ClusterError> {
        let (_, tasks) = self.member_tasks(swarm, &[member]).await?.remove(0);
        let before: HashSet<String> = tasks.iter().map(|task| task.id.clone()).collect();
        let on_its_way = current_task(&tasks).is_some_and(|task| {
            task.desired == "running" && !is_terminal(&task.state) && task.state != "running"
        });
        let cuts = match member {
            Member::Node(_) => self.cuts_in_force().await?,
            Member::Gateway => Default::default(),
        };
        if image.is_some() || !on_its_way {
            let setup = match member {
                Member::Node(node) => self.own_cuts_script(node, &cuts).await?,
                Member::Gateway => String::new(),
            };
            let manager = swarm.manager_engine().await?;
            let env = (NET_SETUP, setup.as_str());
            manager.redeploy_service(&service_name(&self.spec.run_id, member), image, env).await?;
        }
        let waiting_for = if on_its_way && image.is_none() { HashSet::new() } else { before };
        self.wait_tasks_running(swarm, &[member], &waiting_for, TASK_START_TIMEOUT).await?;
        if !cuts.is_empty() {
            self.write_cuts(&cuts).await?;
        }
        Ok(())
    }

    /// Waits until each member's current task runs, ignoring the tasks in
    /// `older` (those that existed before a redeploy). A new task that fails
    /// (port taken, image missing, no such node) is an error naming why.
    async fn wait_tasks_running(
        &self,
        swarm: &Swarm,
        members: &[Member],
        older: &HashSet<String>,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for (member, (_, tasks)) in members.iter().zip(self.member_tasks(swarm, members).await?)
            {
                let fresh: Vec<TaskFacts> =
                    tasks.into_iter().filter(|task| !older.contains(&task.id)).collect();
                match current_task(&fresh) {
                    Some(task) if task.state == "running" => {}
                    Some(task) if is_terminal(&task.state) => {
                        return Err(ClusterError::TaskFailed {
                            member: member.to_string(),
                            state: task.state.clone(),
                            message: task.message.clone(),
                        })
                    }
                    Some(task) => waiting.push(format!("{member} ({})", task.state)),
                    None => waiting.push(format!("{member} (no task yet)")),
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    waited_for: format!("the swarm to run {} ({timeout:?})", waiting.join(", ")),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Each node's address on the overlay network: its current task's.
    pub(super) async fn swarm_node_ips(&self) -> Result<Vec<Vec<String>>, ClusterError> {
        let network = names::network(&self.spec.run_id);
        let members: Vec<Member> = self.node_ids().into_iter().map(Member::Node).collect();
        let mut ips = Vec::new();
        for place in self.whereabouts_of(&members).await? {
            let facts = place.docker.inspect_container(&place.container).await?;
            ips.push(
                facts.and_then(|facts| facts.ips.get(&network).cloned()).into_iter().collect(),
            );
        }
        Ok(ips)
    }

    /// A rolling-upgrade step on a swarm: the image shipped to the member's host,
    /// then the service moved to it (a new task, same volume, host and port).
    pub(super) async fn swarm_upgrade(
        &self,
        swarm: &Swarm,
        node: usize,
        image: &str,
    ) -> Result<(), ClusterError> {
        let manager = swarm.manager_engine().await?;
        let service = names::container(&self.spec.run_id, node);
        let facts = manager.list_services(&[(LABEL_RUN, self.spec.run_id.as_str())]).await?;
        let host = facts
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| swarm.host_of(s.node_id.as_deref()?))
            .ok_or_else(|| {
                ClusterError::InvalidSpec(format!(
                    "zk{node} has no service pinned to a host ({service})"
                ))
            })?;
        ship_image(std::slice::from_ref(host), image, &|line| tracing::info!("{line}")).await?;
        self.swarm_start(swarm, Member::Node(node), Some(image)).await
    }
}

/// The task that is the member now: the newest the swarm wants running, else the
/// newest of all.
fn current_task(tasks: &[TaskFacts]) -> Option<&TaskFacts> {
    let newest = |wanted: bool| {
        tasks
            .iter()
            .filter(|task| !wanted || task.desired == "running")
            .max_by_key(|task| created(task))
    };
    newest(true).or_else(|| newest(false))
}

fn created(task: &TaskFacts) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(&task.created_at, &time::format_description::well_known::Rfc3339)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "complete" | "shutdown" | "failed" | "rejected" | "remove" | "orphaned")
}

/// The gateway: the zkmq binary, copied into a volume on the manager (it may be
/// another machine), run by a service on the cluster's image.
async fn start_gateway(
    cluster: &Cluster,
    swarm: &Swarm,
    port: u16,
    image: &str,
) -> Result<(), ClusterError> {
    let (spec, host) = (&cluster.spec, swarm.manager());
    let binary = gateway_binary(spec)?;
    let docker = Docker::connect_to(&host.endpoint).await?;
    let volume = super::ensemble::ship_binary(&docker, &spec.run_id, &binary, image).await?;
    let plan = ServicePlan {
        name: names::gateway(&spec.run_id),
        image: image.to_owned(),
        hostname: "rest".to_owned(),
        command: vec![format!("{BINARY_DIR}/zkmq")],
        args: gateway_args(cluster),
        env: gateway_env(),
        labels: labels(&spec.run_id, "rest", None),
        network: names::network(&spec.run_id),
        aliases: vec!["rest".to_owned()],
        volumes: vec![VolumeMount {
            volume,
            target: BINARY_DIR.to_owned(),
            read_only: true,
            labels: labels(&spec.run_id, "binary", None),
        }],
        node_id: host.node_id.clone(),
        publish: (GATEWAY_PORT, port),
        cap_add: vec!["NET_ADMIN".to_owned()],
        stop_grace: STOP_GRACE,
    };
    docker.create_service(&plan).await
}

/// Removes run `run_id` from the swarm these engines form: its services (the
/// swarm then removes their containers), whatever containers and volumes carry its
/// label on any host, and its network. Returns how many objects it removed.
pub(super) async fn down(run_id: &str, endpoints: &[String]) -> Result<usize, ClusterError> {
    let swarm = Swarm::find(endpoints).await?;
    let manager = swarm.manager_engine().await?;
    let labelled = [(LABEL_RUN, run_id)];
    let mut removed = 0;
    for service in manager.list_services(&labelled).await? {
        manager.remove_service(&service.name).await?;
        removed += 1;
    }
    let mut first_error = None;
    for host in swarm.hosts() {
        match remove_from_host(&host.endpoint, &labelled).await {
            Ok(count) => removed += count,
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    // The network goes once no task uses it any more, on any host.
    let deadline = Instant::now() + Duration::from_secs(30);
    for network in manager.list_networks(&labelled).await? {
        loop {
            match manager.remove_network(&network).await {
                Ok(()) => {
                    removed += 1;
                    break;
                }
                Err(err) if Instant::now() >= deadline => {
                    first_error.get_or_insert(err);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(removed),
    }
}

/// On one host: waits (bounded) for the swarm to remove the run's task
/// containers, then removes whatever containers and volumes still carry its label.
async fn remove_from_host(
    endpoint: &str,
    labelled: &[(&str, &str)],
) -> Result<usize, ClusterError> {
    let docker = Docker::connect_to(endpoint).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = docker
            .list_containers_labelled(labelled)
            .await?
            .into_iter()
            .filter(|(_, labels)| labels.contains_key("com.docker.swarm.task.id"))
            .count();
        if tasks == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut removed = 0;
    for container in docker.list_containers(labelled).await? {
        docker.remove_container(&container).await?;
        removed += 1;
    }
    // A volume is in use a moment longer than its container lives.
    let deadline = Instant::now() + Duration::from_secs(10);
    for volume in docker.list_volumes(labelled).await? {
        loop {
            match docker.remove_volume(&volume).await {
                Ok(()) => break,
                Err(err) if Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        removed += 1;
    }
    Ok(removed)
}

/// The runs on a swarm: run id and whether its services include the gateway,
/// with each run's ZooKeeper service count and owner (from the spec label).
pub(super) async fn list_runs(
    endpoints: &[String],
) -> Result<Vec<super::RunSummary>, ClusterError> {
    let swarm = Swarm::find(endpoints).await?;
    let services = swarm.manager_engine().await?.list_services(&[(LABEL_RUN, "")]).await?;
    let mut runs: std::collections::BTreeMap<String, super::RunSummary> = Default::default();
    for service in services {
        let Some(run_id) = service.labels.get(LABEL_RUN) else {
            continue;
        };
        let run = runs.entry(run_id.clone()).or_insert_with(|| super::RunSummary {
            swarm_hosts: endpoints.to_vec(),
            ..super::RunSummary::new(run_id)
        });
        run.note(&service.labels);
    }
    Ok(runs.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_reach_a_tcp_engines_host_and_a_sockets_machine() {
        assert_eq!(endpoint_address("tcp://10.0.0.5:2375"), "10.0.0.5");
        assert_eq!(endpoint_address("tcp://127.0.0.1:31000"), "127.0.0.1");
        assert_eq!(endpoint_address("tcp://docker-b.example:2376"), "docker-b.example");
        assert_eq!(endpoint_address("tcp://localhost:2375"), "127.0.0.1");
        assert_eq!(endpoint_address("unix:///var/run/docker.sock"), "127.0.0.1");
    }

    #[test]
    fn port_ranges_parse_and_a_full_host_says_what_to_do() {
        assert_eq!(parse_ports("31000-31008"), Some((31000, 31008)));
        assert_eq!(parse_ports("31008-31000"), None);
        assert_eq!(parse_ports("many"), None);
        let host = SwarmHost {
            endpoint: "tcp://127.0.0.1:31000".into(),
            node_id: "n1".into(),
            hostname: "h1".into(),
            address: "127.0.0.1".into(),
            ports: (31001, 31002),
        };
        let mut used = HashSet::from([31001]);
        assert_eq!(host.free_port(&used).unwrap(), 31002);
        used.insert(31002);
        let err = host.free_port(&used).unwrap_err().to_string();
        assert!(err.contains("h1") && err.contains("--ports"), "{err}");
    }

    fn task(id: &str, desired: &str, created_at: &str) -> TaskFacts {
        TaskFacts {
            id: id.into(),
            service_id: "s".into(),
            slot: 1,
            node_id: "n".into(),
            desired: desired.into(),
            state: "running".into(),
            message: String::new(),
            container_id: None,
            created_at: created_at.into(),
        }
    }

    #[test]
    fn the_current_task_is_the_newest_wanted_running_else_the_newest() {
        let killed = task("killed", "shutdown", "2026-12-07T14:36:16.1Z");
        // Go trims the fraction's trailing zeros: compared as text, .1Z > .12Z
        let restarted = task("restarted", "shutdown", "2026-12-07T14:36:16.12Z");
        assert_eq!(current_task(&[killed.clone(), restarted.clone()]).unwrap().id, "restarted");
        // a task the swarm wants running is the member, even if an older one died later
        let wanted = task("wanted", "running", "2026-12-07T14:36:15Z");
        assert_eq!(current_task(&[killed, wanted, restarted]).unwrap().id, "wanted");
        assert!(current_task(&[]).is_none());
    }
}
