//! Disk full on one member: its data directory lives on a size-limited volume,
//! which the fault fills to the last byte and frees at its end.
//!
//! The volume is a tmpfs volume of Docker's local driver (`size=<N>m`), asked for
//! with [`super::ClusterSpec::data_limit_mb`]. Measured here: such a volume is
//! mounted when a container uses it and unmounted (its data gone) when none does,
//! so a plain kill would wipe the node. Each node therefore has a *holder*, a
//! container that only sleeps with the volume mounted, for as long as the cluster
//! lives: the data survives kills, restarts and upgrades as on a plain volume, and
//! the fill is written and removed from inside the holder, whether ZooKeeper runs
//! or not. A loop-mounted file system would need privileges on the host; a
//! tmpfs needs none, at the price of RAM (the volume's size at most, per node)
//! and of `fsync` costing nothing (a SIGKILL loses what a process had not
//! written either way, so the kill faults mean the same on it).

use std::collections::HashMap;

use super::docker::{ContainerPlan, Docker};
use super::ensemble::labels;
use super::outcome::{ContainerVerb, DiskChange};
use super::{names, Cluster, ClusterError, ClusterSpec};

/// The fill, beside ZooKeeper's `version-2/` (ZooKeeper ignores other files).
const FILL: &str = "/data/zkmq-disk-fill";

/// The local driver's options for a node's data volume: tmpfs of the limit, or
/// none (a plain directory volume) without one.
pub(super) fn volume_options(spec: &ClusterSpec) -> HashMap<String, String> {
    match spec.data_limit_mb {
        Some(mb) => HashMap::from([
            ("type".to_owned(), "tmpfs".to_owned()),
            ("device".to_owned(), "tmpfs".to_owned()),
            ("o".to_owned(), format!("size={mb}m")),
        ]),
        None => HashMap::new(),
    }
}

/// Creates and starts node `node`'s holder, when the cluster's volumes need one.
pub(super) async fn start_holder(
    docker: &Docker,
    spec: &ClusterSpec,
    node: usize,
    image: &str,
) -> Result<(), ClusterError> {
    if spec.data_limit_mb.is_none() {
        return Ok(());
    }
    let plan = ContainerPlan {
        name: names::holder(&spec.run_id, node),
        image: image.to_owned(),
        hostname: "holder".to_owned(),
        entrypoint: Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
        cmd: vec!["exec sleep infinity".to_owned()],
        labels: labels(&spec.run_id, "holder", Some(node)),
        network: "none".to_owned(),
        volume: Some((names::volume(&spec.run_id, node), "/data".to_owned())),
        ..Default::default()
    };
    docker.create_container(&plan).await?;
    docker.start_container(&plan.name).await
}

impl Cluster {
    /// Runs `script` in node `node`'s holder; the cluster must have one.
    async fn in_holder(&self, node: usize, script: &str) -> Result<String, ClusterError> {
        self.check_node(node)?;
        let Some(_) = self.spec.data_limit_mb else {
            return Err(ClusterError::Unsupported(format!(
                "zk{node}'s data is not on a size-limited volume: give the cluster a data \
                 limit (`data_limit = \"256m\"` in the scenario's [cluster], or \
                 `zkmq cluster up --data-limit 256m`) to fill its disk"
            )));
        };
        let holder = names::holder(&self.spec.run_id, node);
        let docker = Docker::connect().await?;
        let out = docker.exec(&holder, &["/bin/sh", "-c", script]).await?;
        if out.exit_code != 0 {
            return Err(ClusterError::CommandFailed {
                container: holder,
                command: script.trim().replace('\n', "; "),
                exit_code: out.exit_code,
                output: out.output.trim().to_owned(),
            });
        }
        Ok(out.output)
    }

    /// Fills node `node`'s data volume to the last byte: ZooKeeper's next write
    /// to its transaction log fails.
    pub async fn disk_fill(&self, node: usize) -> Result<DiskChange, ClusterError> {
        // dd stops at ENOSPC, having written what fitted; the second pass fills
        // the last partial megabyte.
        let script = format!(
            "dd if=/dev/zero of={FILL} bs=1M 2>/dev/null; \
             dd if=/dev/zero of={FILL} bs=4k oflag=append conv=notrunc 2>/dev/null; \
             sync; stat -c %s {FILL}; df -B1 --output=avail,size /data | tail -n 1"
        );
        let said = self.in_holder(node, &script).await?;
        let numbers: Vec<u64> =
            said.split_whitespace().filter_map(|word| word.parse().ok()).collect();
        let [filled, free, size] = numbers[..] else {
            return Err(ClusterError::CommandFailed {
                container: names::holder(&self.spec.run_id, node),
                command: "fill /data".to_owned(),
                exit_code: 0,
                output: said,
            });
        };
        Ok(DiskChange::Filled { node, filled, free, size })
    }

    /// Removes the fill; starts the node if ZooKeeper stopped on the full disk.
    pub async fn disk_free(&self, node: usize) -> Result<DiskChange, ClusterError> {
        let script = format!("stat -c %s {FILL} 2>/dev/null || echo 0; rm -f {FILL}");
        let said = self.in_holder(node, &script).await?;
        let freed = said.split_whitespace().find_map(|word| word.parse().ok()).unwrap_or(0);
        let change = self.container_target(super::fault::Member::Node(node))?;
        let started = change.run(ContainerVerb::Start).await?;
        Ok(DiskChange::Freed { node, freed, started: Some(started) })
    }
}
