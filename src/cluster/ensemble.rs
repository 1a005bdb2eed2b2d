//! Bringing an ensemble up, finding it again, reading its state, taking it down:
//! what every backend shares (the zoo.cfg, the labels, `srvr` polling, logs),
//! with the backend only deciding where each member runs.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::docker::{ContainerPlan, Docker};
use super::fault::Member;
use super::fourlw::{four_letter_word, parse_srvr};
use super::{
    names, Backend, BackendKind, Cluster, ClusterError, ClusterSpec, NodeMode, NodeStatus,
    LABEL_NODE, LABEL_ROLE, LABEL_RUN,
};

const ZOO_CFG_TEMPLATE: &str = include_str!("../../cluster/zoo.cfg.template");
pub(super) const START_SCRIPT: &str = include_str!("../../cluster/zk-start.sh");

/// The gateway listens here inside its container.
pub(super) const GATEWAY_PORT: u16 = 9998;
/// Where a node's data volume is mounted (`dataDir` in zoo.cfg.template).
pub(super) const DATA_MOUNT: &str = "/data";
/// Where the gateway's container finds the zkmq binary.
pub(super) const BINARY_DIR: &str = "/opt/zkmq";
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

pub(super) fn render_zoo_cfg(spec: &ClusterSpec) -> String {
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

impl Cluster {
    /// Starts the ensemble `spec` describes and returns once every node serves
    /// (one leader, the rest followers), building a missing image first. On failure,
    /// or if this future is dropped, everything created so far is removed.
    pub async fn up(
        spec: ClusterSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Cluster, ClusterError> {
        match spec.backend {
            BackendKind::Local => Cluster::up_local(spec, progress).await,
            BackendKind::Swarm => Cluster::up_swarm(spec, progress).await,
        }
    }

    /// Finds a running cluster by its run id (labels and published ports): on
    /// this machine's engine, else on the default swarm ([`SwarmSpec::hosts`]).
    ///
    /// [`SwarmSpec::hosts`]: super::SwarmSpec::hosts
    pub async fn attach(run_id: &str) -> Result<Cluster, ClusterError> {
        match Cluster::attach_local(run_id).await {
            Err(ClusterError::NotFound { .. }) => {}
            found => return found,
        }
        let Ok(hosts) = super::swarm::resolve_hosts(&[]).await else {
            return Err(ClusterError::NotFound { run_id: run_id.to_owned() });
        };
        Cluster::attach_on(run_id, &hosts).await
    }

    /// Finds run `run_id` on the swarm of these engines (manager first).
    pub async fn attach_on(run_id: &str, swarm_hosts: &[String]) -> Result<Cluster, ClusterError> {
        Cluster::attach_swarm(run_id, swarm_hosts)
            .await?
            .ok_or_else(|| ClusterError::NotFound { run_id: run_id.to_owned() })
    }

    /// Every node as Docker and `srvr` see it now.
    pub async fn status(&self) -> Result<Vec<NodeStatus>, ClusterError> {
        let members: Vec<Member> = self.node_ids().into_iter().map(Member::Node).collect();
        let mut statuses = Vec::new();
        for (node, place) in self.node_ids().into_iter().zip(self.whereabouts_of(&members).await?) {
            let facts = place.docker.inspect_container(&place.container).await?;
            let container =
                facts.as_ref().map_or_else(|| "missing".to_owned(), |facts| facts.state.clone());
            let image = facts.map(|facts| facts.image).unwrap_or_default();
            statuses.push((node, container, image, place.host));
        }
        let probes = statuses.iter().map(|(node, container, _, _)| {
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
            .map(|((node, container, image, host), info)| NodeStatus {
                node,
                container,
                mode: info.mode,
                address: self.node_address(node),
                host,
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

    /// Waits until every node of a new ensemble serves, then says since when
    /// (`started`: when `up` began) and where.
    pub(super) async fn quorum_serves(
        &self,
        started: Instant,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), ClusterError> {
        self.wait_all_serving(self.spec.up_timeout).await?;
        progress(&format!(
            "{}: quorum serving after {:.1} s: {}",
            self.spec.run_id,
            started.elapsed().as_secs_f64(),
            self.connect_string()
        ));
        Ok(())
    }

    /// Waits until the new gateway answers, then says where.
    pub(super) async fn gateway_serves(
        &self,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), ClusterError> {
        self.wait_gateway(Duration::from_secs(30)).await?;
        let url = self.rest_url().unwrap_or_default();
        progress(&format!("{}: REST gateway at {url}", self.spec.run_id));
        Ok(())
    }

    async fn wait_gateway(&self, timeout: Duration) -> Result<(), ClusterError> {
        let Some(address) = self.rest_address.clone() else {
            return Ok(());
        };
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
        self.member_logs(Member::Node(node), tail).await
    }

    /// The gateway's container log.
    pub async fn rest_logs(&self, tail: Option<usize>) -> Result<String, ClusterError> {
        self.member_logs(Member::Gateway, tail).await
    }

    /// A member's log: with `tail`, the last lines of its current container's;
    /// without, the whole of every container it had (a swarm member has one per
    /// start), oldest first.
    async fn member_logs(
        &self,
        member: Member,
        tail: Option<usize>,
    ) -> Result<String, ClusterError> {
        let sources = match tail {
            Some(_) => vec![self.whereabouts(member).await?],
            None => self.log_sources(member).await?,
        };
        let mut text = String::new();
        for place in sources {
            text.push_str(&place.docker.logs(&place.container, tail).await?);
        }
        Ok(text)
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
        let (mut copied, mut first_error) = (Vec::new(), None);
        for node in self.node_ids() {
            let into = dir.join(names::alias(node));
            let copy = async {
                let place = self.whereabouts(Member::Node(node)).await?;
                place.docker.download(&place.container, DATA_MOUNT, &into).await
            };
            match copy.await {
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

    /// Removes every container, volume and network labelled with this run id (and,
    /// on a swarm, every service), wherever the backend put them.
    pub async fn down(&self) -> Result<(), ClusterError> {
        match &self.backend {
            Backend::Local { .. } => super::local::down_local(&self.spec.run_id).await.map(drop),
            Backend::Swarm(_) => {
                super::swarm::down(&self.spec.run_id, &self.spec.swarm.hosts).await.map(drop)
            }
        }
    }
}

/// The gateway's command line after the binary: serve REST on [`GATEWAY_PORT`],
/// talk to every member by its name on the cluster network.
pub(super) fn gateway_args(cluster: &Cluster) -> Vec<String> {
    vec![
        "rest".to_owned(),
        "serve".to_owned(),
        "--listen".to_owned(),
        format!("0.0.0.0:{GATEWAY_PORT}"),
        "--endpoint".to_owned(),
        format!("/;{}", cluster.internal_connect_string()),
    ]
}

/// Plain text in `docker logs` and the saved rest.log.
pub(super) fn gateway_env() -> Vec<String> {
    vec!["RUST_LOG=info".to_owned(), "NO_COLOR=1".to_owned()]
}

/// The zkmq binary the gateway runs: the spec's, else this one.
pub(super) fn gateway_binary(spec: &ClusterSpec) -> Result<std::path::PathBuf, ClusterError> {
    match &spec.zkmq_binary {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe().map_err(ClusterError::io("finding the zkmq binary")),
    }
}

/// Copies `binary` into a labelled volume on `docker`'s engine (which may run on
/// another machine), through a helper container that is created but never
/// started. Returns the volume's name, to mount at [`BINARY_DIR`].
pub(super) async fn ship_binary(
    docker: &Docker,
    run_id: &str,
    binary: &Path,
    image: &str,
) -> Result<String, ClusterError> {
    let binary = binary
        .canonicalize()
        .map_err(ClusterError::io(format!("finding the zkmq binary {}", binary.display())))?;
    let volume = names::binary_volume(run_id);
    docker.create_volume(&volume, labels(run_id, "binary", None), HashMap::new()).await?;
    let helper = names::binary_helper(run_id);
    docker.remove_container(&helper).await?;
    docker
        .create_container(&ContainerPlan {
            name: helper.clone(),
            image: image.to_owned(),
            hostname: "ship".to_owned(),
            entrypoint: Some(vec!["/bin/true".to_owned()]),
            labels: labels(run_id, "helper", None),
            network: "none".to_owned(),
            volume: Some((volume.clone(), BINARY_DIR.to_owned())),
            ..Default::default()
        })
        .await?;
    let tar =
        super::images::tar_stream(move |builder| builder.append_path_with_name(&binary, "zkmq"));
    let uploaded = docker.upload(&helper, BINARY_DIR, tar).await;
    docker.remove_container(&helper).await?;
    uploaded.map(|()| volume)
}

/// Removes what an `up` created if it fails or its future is dropped (Ctrl-C in
/// the CLI selects the signal over `up`), unless disarmed on success.
pub(super) struct UpGuard {
    removal: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl UpGuard {
    pub(super) fn new<F>(removal: F) -> UpGuard
    where
        F: std::future::Future<Output = Result<usize, ClusterError>> + Send + 'static,
    {
        UpGuard {
            removal: Some(Box::pin(async move {
                if let Err(err) = removal.await {
                    tracing::warn!("removing what a failed `up` started: {err}");
                }
            })),
        }
    }

    /// `up` succeeded: keep everything.
    pub(super) fn disarm(&mut self) {
        self.removal = None;
    }
}

impl Drop for UpGuard {
    fn drop(&mut self) {
        if let Some(removal) = self.removal.take() {
            // Drop cannot await; a thread with its own runtime can, and joining it
            // means nothing is left behind when the process exits right after.
            let _ = std::thread::spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(removal);
                Some(())
            })
            .join();
        }
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
    fn image_names() {
        assert_eq!(super::super::image_for_version("3.9.3"), "zkmq/zookeeper:3.9.3");
    }
}
