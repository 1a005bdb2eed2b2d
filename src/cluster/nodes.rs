//! Node operations: kill, stop, start, restart, pause, unpause, wipe, upgrade, and
//! the same container verbs on the REST gateway. Each looks at the container's
//! state first, so repeating an operation is harmless, and returns what it did
//! ([`super::outcome`]).

use super::docker::ContainerPlan;
use super::ensemble::labels;
use super::fault::Member;
use super::local::{create_and_start, node_plan};
use super::outcome::{ContainerChange, ContainerVerb, Restarted, Upgraded, Wiped};
use super::{
    ensure_images, names, Backend, BackendKind, Cluster, ClusterError, Whereabouts,
    SUPPORTED_VERSIONS,
};

/// Seconds a graceful stop waits for the JVM before Docker sends SIGKILL.
const STOP_GRACE_S: i32 = 10;

/// A member the container verbs act on: a ZooKeeper node or the gateway.
pub(super) struct ContainerTarget<'a> {
    cluster: &'a Cluster,
    member: Member,
}

impl ContainerTarget<'_> {
    pub(super) fn member(&self) -> Member {
        self.member
    }

    pub(super) async fn run(&self, verb: ContainerVerb) -> Result<ContainerChange, ClusterError> {
        let place = self.cluster.whereabouts(self.member).await?;
        let (docker, container) = (&place.docker, place.container.as_str());
        let before = docker
            .inspect_container(container)
            .await?
            .map_or_else(|| "missing".to_owned(), |facts| facts.state);
        // A swarm member between two tasks has no container, and a start gives it one.
        let startable =
            verb == ContainerVerb::Start && self.cluster.backend() == BackendKind::Swarm;
        if before == "missing" && !startable {
            return Err(missing(self.member, container));
        }
        let acted = match (verb, before.as_str()) {
            (ContainerVerb::Kill, "running") => {
                docker.kill_container(container).await?;
                true
            }
            (ContainerVerb::Kill, "paused") => {
                // Docker refuses to kill a paused container; thawing first lets
                // SIGKILL land before the process runs any meaningful code.
                docker.unpause_container(container).await?;
                docker.kill_container(container).await?;
                true
            }
            (ContainerVerb::Stop, "running") => {
                docker.stop_container(container, STOP_GRACE_S).await?;
                true
            }
            (ContainerVerb::Stop, "paused") => {
                docker.unpause_container(container).await?;
                docker.stop_container(container, STOP_GRACE_S).await?;
                true
            }
            (ContainerVerb::Kill | ContainerVerb::Stop, _) => false,
            (ContainerVerb::Start, "running") => false,
            (ContainerVerb::Start, "paused") | (ContainerVerb::Unpause, "paused") => {
                docker.unpause_container(container).await?;
                true
            }
            (ContainerVerb::Start, _) => {
                self.cluster.start_member(self.member, &place).await?;
                true
            }
            (ContainerVerb::Pause, "running") => {
                docker.pause_container(container).await?;
                true
            }
            (ContainerVerb::Pause | ContainerVerb::Unpause, _) => false,
        };
        Ok(ContainerChange { member: self.member, verb, before, acted })
    }

    async fn restart(&self) -> Result<Restarted, ClusterError> {
        let stopped = self.run(ContainerVerb::Stop).await?;
        let started = self.run(ContainerVerb::Start).await?;
        Ok(Restarted { stopped, started })
    }
}

fn missing(member: Member, container: &str) -> ClusterError {
    ClusterError::InvalidSpec(format!(
        "{member} has no container ({container}); was the cluster taken down?"
    ))
}

impl Cluster {
    fn node_target(&self, node: usize) -> Result<ContainerTarget<'_>, ClusterError> {
        self.container_target(Member::Node(node))
    }

    fn gateway_target(&self) -> Result<ContainerTarget<'_>, ClusterError> {
        self.container_target(Member::Gateway)
    }

    pub(super) fn container_target(
        &self,
        member: Member,
    ) -> Result<ContainerTarget<'_>, ClusterError> {
        match member {
            Member::Node(node) => self.check_node(node)?,
            Member::Gateway if !self.spec.rest => {
                return Err(ClusterError::NoGateway { run_id: self.spec.run_id.clone() })
            }
            Member::Gateway => {}
        }
        Ok(ContainerTarget { cluster: self, member })
    }

    /// When the member's container last started, if it is running: a link fault
    /// (loss, slow, delay) lives in the container's network namespace, which a
    /// restart replaces, so the nemesis applies it again when this changes.
    pub async fn started_at(&self, member: Member) -> Result<Option<String>, ClusterError> {
        let Whereabouts { docker, container, .. } = self.whereabouts(member).await?;
        Ok(docker
            .inspect_container(&container)
            .await?
            .filter(|facts| facts.state == "running")
            .and_then(|facts| facts.started_at))
    }

    /// SIGKILL: no shutdown, the node's data as it was on disk.
    pub async fn kill(&self, node: usize) -> Result<ContainerChange, ClusterError> {
        self.node_target(node)?.run(ContainerVerb::Kill).await
    }

    /// Graceful: SIGTERM, SIGKILL after 10 s.
    pub async fn stop(&self, node: usize) -> Result<ContainerChange, ClusterError> {
        self.node_target(node)?.run(ContainerVerb::Stop).await
    }

    /// Starts a stopped node (unpauses a paused one). Returns at once; use
    /// [`Cluster::wait_serving`] to wait for it to rejoin.
    pub async fn start(&self, node: usize) -> Result<ContainerChange, ClusterError> {
        self.node_target(node)?.run(ContainerVerb::Start).await
    }

    pub async fn restart(&self, node: usize) -> Result<Restarted, ClusterError> {
        self.node_target(node)?.restart().await
    }

    /// Freezes every process of the node (cgroup freezer): its peers and clients
    /// see a node that stopped answering but keeps its connections open.
    pub async fn pause(&self, node: usize) -> Result<ContainerChange, ClusterError> {
        self.node_target(node)?.run(ContainerVerb::Pause).await
    }

    pub async fn unpause(&self, node: usize) -> Result<ContainerChange, ClusterError> {
        self.node_target(node)?.run(ContainerVerb::Unpause).await
    }

    /// Stops the node, deletes its data directory except `myid`, starts it again:
    /// it must resync everything from the leader.
    pub async fn wipe(&self, node: usize) -> Result<Wiped, ClusterError> {
        let target = self.node_target(node)?;
        let Whereabouts { docker, container, .. } = self.whereabouts(Member::Node(node)).await?;
        let Some(facts) = docker.inspect_container(&container).await? else {
            return Err(missing(Member::Node(node), &container));
        };
        let stopped = target.run(ContainerVerb::Stop).await?;
        // The container is stopped, so a short-lived helper on the same image
        // mounts the volume and clears it.
        let helper = names::helper(&self.spec.run_id, node);
        docker.remove_container(&helper).await?;
        let plan = ContainerPlan {
            name: helper.clone(),
            image: facts.image.clone(),
            hostname: "wipe".to_owned(),
            entrypoint: Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
            cmd: vec![
                "find /data -mindepth 1 -maxdepth 1 ! -name myid -exec rm -rf {} + && ls -A /data"
                    .to_owned(),
            ],
            labels: labels(&self.spec.run_id, "helper", Some(node)),
            network: "none".to_owned(),
            volume: Some((names::volume(&self.spec.run_id, node), "/data".to_owned())),
            ..Default::default()
        };
        docker.create_container(&plan).await?;
        docker.start_container(&helper).await?;
        let code = docker.wait_container(&helper).await?;
        let left = docker.logs(&helper, None).await.unwrap_or_default();
        docker.remove_container(&helper).await?;
        if code != 0 {
            return Err(ClusterError::CommandFailed {
                container: helper,
                command: "clear /data except myid".to_owned(),
                exit_code: code,
                output: left,
            });
        }
        let started = target.run(ContainerVerb::Start).await?;
        let kept = left.split_whitespace().map(str::to_owned).collect();
        Ok(Wiped { node, stopped, kept, started })
    }

    /// Replaces the node's container with one running ZooKeeper `zk_version`, on
    /// the same data volume, address and port: a rolling-upgrade step.
    pub async fn upgrade(&self, node: usize, zk_version: &str) -> Result<Upgraded, ClusterError> {
        let target = self.node_target(node)?;
        let image = self.spec.image_for(zk_version);
        if image.starts_with("zkmq/zookeeper:") {
            if !SUPPORTED_VERSIONS.iter().any(|(v, _, _)| *v == zk_version) {
                return Err(ClusterError::InvalidSpec(format!(
                    "no image for ZooKeeper {zk_version}"
                )));
            }
            ensure_images(&[zk_version], false, &|line| tracing::info!("{line}")).await?;
        }
        let Whereabouts { docker, container, .. } = self.whereabouts(Member::Node(node)).await?;
        let Some(facts) = docker.inspect_container(&container).await? else {
            return Err(missing(Member::Node(node), &container));
        };
        if facts.image == image {
            let started = target.run(ContainerVerb::Start).await?;
            return Ok(Upgraded::AlreadyRuns { node, image, started });
        }
        let (stopped, port) = match &self.backend {
            Backend::Local { .. } => {
                let port = facts.host_port.ok_or_else(|| {
                    ClusterError::InvalidSpec(format!("zk{node} has no published port"))
                })?;
                let ip = facts.labels.get("zkmq.ip").cloned().ok_or_else(|| {
                    ClusterError::InvalidSpec(format!("zk{node} has no zkmq.ip label"))
                })?;
                let stopped = target.run(ContainerVerb::Stop).await?;
                // Kept, stopped, under another name: its log is the first half of
                // the node's story, which a post-mortem of the upgrade reads. It
                // keeps the run's labels, so the run's cleanup removes it.
                let replaced = format!("{container}-replaced-{:013}", crate::queue::now_ms());
                docker.rename_container(&container, &replaced).await?;
                let plan = node_plan(&self.spec, node, &image, zk_version, port, &ip);
                create_and_start(&docker, plan).await?;
                (stopped, port)
            }
            Backend::Swarm(swarm) => {
                // Stopped first, so that the outcome says how it went down, as locally.
                let stopped = target.run(ContainerVerb::Stop).await?;
                self.swarm_upgrade(swarm, node, &image).await?;
                let address = self.node_address(node);
                let port = address.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                (stopped, port)
            }
        };
        Ok(Upgraded::Replaced { node, from: facts.image, to: image, stopped, port })
    }

    pub async fn rest_kill(&self) -> Result<ContainerChange, ClusterError> {
        self.gateway_target()?.run(ContainerVerb::Kill).await
    }

    pub async fn rest_stop(&self) -> Result<ContainerChange, ClusterError> {
        self.gateway_target()?.run(ContainerVerb::Stop).await
    }

    pub async fn rest_start(&self) -> Result<ContainerChange, ClusterError> {
        self.gateway_target()?.run(ContainerVerb::Start).await
    }

    pub async fn rest_restart(&self) -> Result<Restarted, ClusterError> {
        self.gateway_target()?.restart().await
    }

    pub async fn rest_pause(&self) -> Result<ContainerChange, ClusterError> {
        self.gateway_target()?.run(ContainerVerb::Pause).await
    }

    pub async fn rest_unpause(&self) -> Result<ContainerChange, ClusterError> {
        self.gateway_target()?.run(ContainerVerb::Unpause).await
    }
}
