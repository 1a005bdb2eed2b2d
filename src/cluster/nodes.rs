//! Node operations: kill, stop, start, restart, pause, unpause, wipe, upgrade, and
//! the same container verbs on the REST gateway. Each looks at the container's
//! state first, so repeating an operation is harmless, and says what it did.

use super::docker::{ContainerPlan, Docker};
use super::ensemble::{create_and_start, labels, node_plan};
use super::{ensure_images, names, Cluster, ClusterError, SUPPORTED_VERSIONS};

/// Seconds a graceful stop waits for the JVM before Docker sends SIGKILL.
const STOP_GRACE_S: i32 = 10;

/// Container verbs shared by ZooKeeper nodes and the gateway.
struct Target {
    /// container name
    container: String,
    /// how the message names it: "zk2", "the REST gateway"
    label: String,
}

async fn state_of(docker: &Docker, target: &Target) -> Result<String, ClusterError> {
    Ok(docker
        .inspect_container(&target.container)
        .await?
        .map_or_else(|| "missing".to_owned(), |facts| facts.state))
}

fn missing(target: &Target) -> ClusterError {
    ClusterError::InvalidSpec(format!(
        "{} has no container ({}); was the cluster taken down?",
        target.label, target.container
    ))
}

async fn kill(target: &Target) -> Result<String, ClusterError> {
    let docker = Docker::connect().await?;
    match state_of(&docker, target).await?.as_str() {
        "missing" => Err(missing(target)),
        "running" => {
            docker.kill_container(&target.container).await?;
            Ok(format!("killed {} (SIGKILL)", target.label))
        }
        "paused" => {
            // Docker refuses to kill a paused container; thawing first lets
            // SIGKILL land before the process runs any meaningful code.
            docker.unpause_container(&target.container).await?;
            docker.kill_container(&target.container).await?;
            Ok(format!("killed {} (SIGKILL; it was paused)", target.label))
        }
        state => Ok(format!("{} was not running ({state}); nothing to kill", target.label)),
    }
}

async fn stop(target: &Target) -> Result<String, ClusterError> {
    let docker = Docker::connect().await?;
    match state_of(&docker, target).await?.as_str() {
        "missing" => Err(missing(target)),
        "running" => {
            docker.stop_container(&target.container, STOP_GRACE_S).await?;
            Ok(format!("stopped {} (SIGTERM)", target.label))
        }
        "paused" => {
            docker.unpause_container(&target.container).await?;
            docker.stop_container(&target.container, STOP_GRACE_S).await?;
            Ok(format!("stopped {} (SIGTERM; it was paused)", target.label))
        }
        state => Ok(format!("{} was already stopped ({state})", target.label)),
    }
}

async fn start(target: &Target) -> Result<String, ClusterError> {
    let docker = Docker::connect().await?;
    match state_of(&docker, target).await?.as_str() {
        "missing" => Err(missing(target)),
        "running" => Ok(format!("{} was already running", target.label)),
        "paused" => {
            docker.unpause_container(&target.container).await?;
            Ok(format!("unpaused {} (it was paused, not stopped)", target.label))
        }
        _ => {
            docker.start_container(&target.container).await?;
            Ok(format!("started {}", target.label))
        }
    }
}

async fn restart(target: &Target) -> Result<String, ClusterError> {
    let stopped = stop(target).await?;
    let started = start(target).await?;
    Ok(format!("restarted {}: {stopped}, {started}", target.label))
}

async fn pause(target: &Target) -> Result<String, ClusterError> {
    let docker = Docker::connect().await?;
    match state_of(&docker, target).await?.as_str() {
        "missing" => Err(missing(target)),
        "running" => {
            docker.pause_container(&target.container).await?;
            Ok(format!("paused {} (cgroup freezer: every process stopped)", target.label))
        }
        "paused" => Ok(format!("{} was already paused", target.label)),
        state => Ok(format!("{} is not running ({state}); nothing to pause", target.label)),
    }
}

async fn unpause(target: &Target) -> Result<String, ClusterError> {
    let docker = Docker::connect().await?;
    match state_of(&docker, target).await?.as_str() {
        "missing" => Err(missing(target)),
        "paused" => {
            docker.unpause_container(&target.container).await?;
            Ok(format!("unpaused {}", target.label))
        }
        state => Ok(format!("{} was not paused ({state})", target.label)),
    }
}

impl Cluster {
    fn node_target(&self, node: usize) -> Result<Target, ClusterError> {
        self.check_node(node)?;
        Ok(Target { container: self.container_name(node), label: format!("zk{node}") })
    }

    fn gateway_target(&self) -> Result<Target, ClusterError> {
        if !self.spec.rest {
            return Err(ClusterError::NoGateway { run_id: self.spec.run_id.clone() });
        }
        Ok(Target {
            container: names::gateway(&self.spec.run_id),
            label: "the REST gateway".to_owned(),
        })
    }

    /// SIGKILL: no shutdown, the node's data as it was on disk.
    pub async fn kill(&self, node: usize) -> Result<String, ClusterError> {
        kill(&self.node_target(node)?).await
    }

    /// Graceful: SIGTERM, SIGKILL after 10 s.
    pub async fn stop(&self, node: usize) -> Result<String, ClusterError> {
        stop(&self.node_target(node)?).await
    }

    /// Starts a stopped node (unpauses a paused one). Returns at once; use
    /// [`Cluster::wait_serving`] to wait for it to rejoin.
    pub async fn start(&self, node: usize) -> Result<String, ClusterError> {
        start(&self.node_target(node)?).await
    }

    pub async fn restart(&self, node: usize) -> Result<String, ClusterError> {
        restart(&self.node_target(node)?).await
    }

    /// Freezes every process of the node (cgroup freezer): its peers and clients
    /// see a node that stopped answering but keeps its connections open.
    pub async fn pause(&self, node: usize) -> Result<String, ClusterError> {
        pause(&self.node_target(node)?).await
    }

    pub async fn unpause(&self, node: usize) -> Result<String, ClusterError> {
        unpause(&self.node_target(node)?).await
    }

    /// Stops the node, deletes its data directory except `myid`, starts it again:
    /// it must resync everything from the leader.
    pub async fn wipe(&self, node: usize) -> Result<String, ClusterError> {
        let target = self.node_target(node)?;
        let docker = Docker::connect().await?;
        let Some(facts) = docker.inspect_container(&target.container).await? else {
            return Err(missing(&target));
        };
        let stopped = stop(&target).await?;
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
        let started = start(&target).await?;
        Ok(format!(
            "wiped zk{node}: {stopped}, cleared its data directory (kept: {}), {started}",
            left.split_whitespace().collect::<Vec<_>>().join(" ")
        ))
    }

    /// Replaces the node's container with one running ZooKeeper `zk_version`, on
    /// the same data volume, address and port: a rolling-upgrade step.
    pub async fn upgrade(&self, node: usize, zk_version: &str) -> Result<String, ClusterError> {
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
        let docker = Docker::connect().await?;
        let Some(facts) = docker.inspect_container(&target.container).await? else {
            return Err(missing(&target));
        };
        if facts.image == image {
            let started = start(&target).await?;
            return Ok(format!("zk{node} already runs {image}; {started}"));
        }
        let port = facts
            .host_port
            .ok_or_else(|| ClusterError::InvalidSpec(format!("zk{node} has no published port")))?;
        let ip =
            facts.labels.get("zkmq.ip").cloned().ok_or_else(|| {
                ClusterError::InvalidSpec(format!("zk{node} has no zkmq.ip label"))
            })?;
        let stopped = stop(&target).await?;
        docker.remove_container(&target.container).await?;
        let plan = node_plan(&self.spec, node, &image, zk_version, port, &ip);
        create_and_start(&docker, plan).await?;
        Ok(format!(
            "upgraded zk{node} from {} to {image} ({stopped}; same data volume and address 127.0.0.1:{port})",
            facts.image
        ))
    }

    pub async fn rest_kill(&self) -> Result<String, ClusterError> {
        kill(&self.gateway_target()?).await
    }

    pub async fn rest_stop(&self) -> Result<String, ClusterError> {
        stop(&self.gateway_target()?).await
    }

    pub async fn rest_start(&self) -> Result<String, ClusterError> {
        start(&self.gateway_target()?).await
    }

    pub async fn rest_restart(&self) -> Result<String, ClusterError> {
        restart(&self.gateway_target()?).await
    }

    pub async fn rest_pause(&self) -> Result<String, ClusterError> {
        pause(&self.gateway_target()?).await
    }

    pub async fn rest_unpause(&self) -> Result<String, ClusterError> {
        unpause(&self.gateway_target()?).await
    }
}
