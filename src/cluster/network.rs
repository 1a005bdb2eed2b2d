//! Network faults, applied inside the containers (they have NET_ADMIN):
//!
//! - partition: iptables DROP rules in chain `ZKMQ-PART` (hooked into INPUT and
//!   OUTPUT) naming the peers' fixed addresses. Client traffic arrives from the
//!   network's gateway address (Docker's port publishing), which no rule names, so
//!   the host keeps reaching every node. Both ends of a cut carry rules, so a node
//!   restarted during a partition (its own rules gone with its network namespace)
//!   is still cut off by its peers' rules.
//! - loss: iptables `statistic` in chain `ZKMQ-LOSS` (hooked into OUTPUT: like
//!   netem, it drops what the node sends).
//! - slow: a `tbf` qdisc on eth0; delay: a `netem` qdisc, where the kernel has it.
//!
//! heal flushes both chains and deletes the root qdisc on every running node.

use std::time::Duration;

use super::docker::Docker;
use super::ensemble::node_ip;
use super::outcome::{Healed, Partitioned, Shaped, Shaping};
use super::{names, Cluster, ClusterError};

const SETUP_CHAINS: &str = "\
iptables -N ZKMQ-PART 2>/dev/null || true
iptables -N ZKMQ-LOSS 2>/dev/null || true
iptables -C INPUT -j ZKMQ-PART 2>/dev/null || iptables -I INPUT -j ZKMQ-PART
iptables -C OUTPUT -j ZKMQ-PART 2>/dev/null || iptables -I OUTPUT -j ZKMQ-PART
iptables -C OUTPUT -j ZKMQ-LOSS 2>/dev/null || iptables -I OUTPUT -j ZKMQ-LOSS
";

impl Cluster {
    /// Runs a shell script inside a node; a missing tool becomes
    /// [`ClusterError::MissingTool`], any other failure [`ClusterError::CommandFailed`].
    async fn shell(
        &self,
        docker: &Docker,
        node: usize,
        script: &str,
    ) -> Result<String, ClusterError> {
        let container = self.container_name(node);
        let out = docker.exec(&container, &["/bin/sh", "-c", script]).await?;
        if out.exit_code == 0 {
            return Ok(out.output);
        }
        for tool in ["iptables", "tc"] {
            if out.output.contains(&format!("{tool}: not found"))
                || out.output.contains(&format!("{tool}: command not found"))
            {
                return Err(ClusterError::MissingTool {
                    tool: format!("{tool} inside {container}"),
                    install: "use the zkmq images (`zkmq cluster images`), or an image with iptables and iproute2".to_owned(),
                });
            }
        }
        Err(ClusterError::CommandFailed {
            container,
            command: script.trim().replace('\n', "; "),
            exit_code: out.exit_code,
            output: out.output.trim().to_owned(),
        })
    }

    /// Nodes whose container is running (network rules can only go into those).
    async fn running_nodes(&self, docker: &Docker) -> Result<Vec<(usize, String)>, ClusterError> {
        let mut nodes = Vec::new();
        for node in self.node_ids() {
            let state = docker
                .inspect_container(&self.container_name(node))
                .await?
                .map_or_else(|| "missing".to_owned(), |facts| facts.state);
            nodes.push((node, state));
        }
        Ok(nodes)
    }

    async fn subnet(&self, docker: &Docker) -> Result<String, ClusterError> {
        let network = names::network(&self.spec.run_id);
        docker.network_subnet(&network).await?.ok_or_else(|| {
            ClusterError::InvalidSpec(format!("network {network} has no IPv4 subnet"))
        })
    }

    /// Cuts the network into groups: two nodes can talk iff some group holds both.
    /// Nodes in no group form one more group together. Groups may overlap, which
    /// is what a ring of majorities or a bridge node needs (for disjoint groups it
    /// is the plain "different groups cannot talk"). Replaces any earlier
    /// partition; the REST gateway keeps reaching every node.
    pub async fn partition(&self, groups: &[Vec<usize>]) -> Result<Partitioned, ClusterError> {
        let mut groups_of: Vec<Vec<usize>> = vec![Vec::new(); self.spec.nodes + 1];
        for (index, group) in groups.iter().enumerate() {
            for &node in group {
                self.check_node(node)?;
                if !groups_of[node].contains(&index) {
                    groups_of[node].push(index);
                }
            }
        }
        let ungrouped: Vec<usize> =
            self.node_ids().into_iter().filter(|node| groups_of[*node].is_empty()).collect();
        for &node in &ungrouped {
            groups_of[node].push(groups.len());
        }
        let can_talk = |a: usize, b: usize| groups_of[a].iter().any(|g| groups_of[b].contains(g));
        let docker = Docker::connect().await?;
        let subnet = self.subnet(&docker).await?;
        let mut not_running = Vec::new();
        for (node, state) in self.running_nodes(&docker).await? {
            if state != "running" {
                not_running.push((node, state));
                continue;
            }
            let mut script = format!("{SETUP_CHAINS}iptables -F ZKMQ-PART\n");
            for peer in self.node_ids() {
                if peer != node && !can_talk(node, peer) {
                    let ip = node_ip(&subnet, peer)?;
                    script.push_str(&format!(
                        "iptables -A ZKMQ-PART -s {ip} -j DROP\niptables -A ZKMQ-PART -d {ip} -j DROP\n"
                    ));
                }
            }
            self.shell(&docker, node, &script).await?;
        }
        let mut described: Vec<Vec<usize>> = groups.to_vec();
        if !ungrouped.is_empty() {
            described.push(ungrouped);
        }
        Ok(Partitioned { groups: described, not_running })
    }

    /// Removes every rule and qdisc the harness added, on every running node.
    pub async fn heal(&self) -> Result<Healed, ClusterError> {
        let docker = Docker::connect().await?;
        let mut healed = Vec::new();
        let mut unreachable = Vec::new();
        for (node, state) in self.running_nodes(&docker).await? {
            match state.as_str() {
                "running" => {
                    self.shell(
                        &docker,
                        node,
                        "iptables -F ZKMQ-PART 2>/dev/null; iptables -F ZKMQ-LOSS 2>/dev/null; \
                         tc qdisc del dev eth0 root 2>/dev/null; true",
                    )
                    .await?;
                    healed.push(node);
                }
                // A stopped container's network namespace is gone with its rules.
                "exited" | "created" | "dead" | "missing" => {}
                _ => unreachable.push((node, state)),
            }
        }
        Ok(Healed { healed, unreachable })
    }

    /// Drops `percent` of the packets the node sends (0 removes the loss).
    pub async fn loss(&self, node: usize, percent: u32) -> Result<Shaped, ClusterError> {
        self.check_node(node)?;
        if percent > 100 {
            return Err(ClusterError::InvalidSpec(format!("loss of {percent}%")));
        }
        let docker = Docker::connect().await?;
        let mut script = format!("{SETUP_CHAINS}iptables -F ZKMQ-LOSS\n");
        if percent > 0 {
            script.push_str(&format!(
                "iptables -A ZKMQ-LOSS ! -o lo -m statistic --mode random --probability {:.4} -j DROP\n",
                f64::from(percent) / 100.0
            ));
        }
        self.shell(&docker, node, &script).await?;
        Ok(Shaped { node, shaping: Shaping::Loss { percent } })
    }

    /// Limits the node's outgoing bandwidth with a token bucket (0 removes it).
    pub async fn slow(&self, node: usize, kbit: u32) -> Result<Shaped, ClusterError> {
        self.check_node(node)?;
        let docker = Docker::connect().await?;
        if kbit == 0 {
            self.shell(&docker, node, "tc qdisc del dev eth0 root 2>/dev/null; true").await?;
            return Ok(Shaped { node, shaping: Shaping::Slow { kbit } });
        }
        self.shell(
            &docker,
            node,
            &format!(
                "tc qdisc replace dev eth0 root tbf rate {kbit}kbit burst 32kbit latency 400ms"
            ),
        )
        .await?;
        Ok(Shaped { node, shaping: Shaping::Slow { kbit } })
    }

    /// Delays every packet the node sends (netem). Refused with
    /// [`ClusterError::Unsupported`] where the kernel lacks netem, never skipped.
    pub async fn delay(&self, node: usize, delay: Duration) -> Result<Shaped, ClusterError> {
        self.check_node(node)?;
        let docker = Docker::connect().await?;
        if delay.is_zero() {
            self.shell(&docker, node, "tc qdisc del dev eth0 root 2>/dev/null; true").await?;
            return Ok(Shaped { node, shaping: Shaping::Delay { millis: 0 } });
        }
        let millis = delay.as_millis();
        match self
            .shell(&docker, node, &format!("tc qdisc replace dev eth0 root netem delay {millis}ms"))
            .await
        {
            Ok(_) => Ok(Shaped { node, shaping: Shaping::Delay { millis } }),
            Err(ClusterError::CommandFailed { output, .. })
                if output.contains("qdisc kind is unknown") || output.contains("netem") =>
            {
                Err(ClusterError::Unsupported(format!(
                    "delay on zk{node}: this kernel has no netem qdisc (sch_netem): `{}`; \
                     use loss (iptables statistic) or slow (tbf) instead",
                    output.lines().next().unwrap_or_default()
                )))
            }
            Err(err) => Err(err),
        }
    }
}
