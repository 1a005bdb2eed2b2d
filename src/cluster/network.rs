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
//! - slow: a `tbf` qdisc; delay: a `netem` qdisc, where the kernel has it. On every
//!   interface but loopback: a local container has one (eth0); a swarm task has
//!   the overlay its peers use and the bridge its clients come through.
//!
//! heal flushes both chains and deletes the root qdisc on every running node.

use std::collections::BTreeSet;
use std::time::Duration;

use super::fault::Member;
use super::outcome::{Healed, NotRunning, Partitioned, Shaped, Shaping};
use super::{Backend, Cluster, ClusterError, Whereabouts};

const SETUP_CHAINS: &str = "\
iptables -N ZKMQ-PART 2>/dev/null || true
iptables -N ZKMQ-LOSS 2>/dev/null || true
iptables -C INPUT -j ZKMQ-PART 2>/dev/null || iptables -I INPUT -j ZKMQ-PART
iptables -C OUTPUT -j ZKMQ-PART 2>/dev/null || iptables -I OUTPUT -j ZKMQ-PART
iptables -C OUTPUT -j ZKMQ-LOSS 2>/dev/null || iptables -I OUTPUT -j ZKMQ-LOSS
";

/// A partition rule's comment: this, then the peer's myid.
const PEER_MARK: &str = "zkmq-peer-zk";

/// `node`'s chain for a partition: for each cut `(node, peer)`, drop what comes
/// from and goes to `peer`'s addresses (`ips`, index = myid - 1). Each rule names
/// its peer in a comment, so that the partition can be read back.
fn cut_script(node: usize, cuts: &BTreeSet<(usize, usize)>, ips: &[Vec<String>]) -> String {
    let mut script = format!("{SETUP_CHAINS}iptables -F ZKMQ-PART\n");
    for &(_, peer) in cuts.iter().filter(|(cutter, _)| *cutter == node) {
        for ip in &ips[peer - 1] {
            for direction in ["-s", "-d"] {
                script.push_str(&format!(
                    "iptables -A ZKMQ-PART {direction} {ip} -m comment --comment {PEER_MARK}{peer} -j DROP\n"
                ));
            }
        }
    }
    script
}

/// Removes a link's root qdisc, if it has one.
const NO_QDISC: &str = "tc qdisc del dev DEV root 2>/dev/null || true";

/// `command` (naming the interface `DEV`) on every interface but loopback,
/// stopping at the first that fails.
fn on_every_link(command: &str) -> String {
    format!(
        "for dev in $(ls /sys/class/net); do [ \"$dev\" = lo ] && continue; {} || exit $?; done",
        command.replace("DEV", "\"$dev\"")
    )
}

impl Cluster {
    /// Runs a shell script inside a node; a missing tool becomes
    /// [`ClusterError::MissingTool`], any other failure [`ClusterError::CommandFailed`].
    async fn shell(&self, node: usize, script: &str) -> Result<String, ClusterError> {
        let Whereabouts { docker, container, .. } = self.whereabouts(Member::Node(node)).await?;
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
    async fn running_nodes(&self) -> Result<Vec<(usize, String)>, ClusterError> {
        let members: Vec<Member> = self.node_ids().into_iter().map(Member::Node).collect();
        let mut nodes = Vec::new();
        for (node, place) in self.node_ids().into_iter().zip(self.whereabouts_of(&members).await?) {
            let state = place
                .docker
                .inspect_container(&place.container)
                .await?
                .map_or_else(|| "missing".to_owned(), |facts| facts.state);
            nodes.push((node, state));
        }
        Ok(nodes)
    }

    /// The addresses each node's peers know it by on the cluster network (index
    /// = myid - 1): what a partition's rules name.
    async fn node_ips(&self) -> Result<Vec<Vec<String>>, ClusterError> {
        match self.backend {
            Backend::Local { .. } => self.local_node_ips().await,
            Backend::Swarm(_) => self.swarm_node_ips().await,
        }
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
        let nodes = self.node_ids();
        let cuts: BTreeSet<(usize, usize)> = nodes
            .iter()
            .flat_map(|&a| nodes.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a != b && !can_talk(a, b))
            .collect();
        let not_running = self.write_cuts(&cuts).await?;
        let mut described: Vec<Vec<usize>> = groups.to_vec();
        if !ungrouped.is_empty() {
            described.push(ungrouped);
        }
        Ok(Partitioned { groups: described, not_running })
    }

    /// Writes a partition into every running node's chain, replacing what was
    /// there (see [`cut_script`]). Returns the nodes that got no rules (not
    /// running).
    pub(super) async fn write_cuts(
        &self,
        cuts: &BTreeSet<(usize, usize)>,
    ) -> Result<NotRunning, ClusterError> {
        let ips = self.node_ips().await?;
        let mut not_running = Vec::new();
        for (node, state) in self.running_nodes().await? {
            if state != "running" {
                not_running.push((node, state));
                continue;
            }
            self.shell(node, &cut_script(node, cuts, &ips)).await?;
        }
        Ok(not_running)
    }

    /// The partition in force, read back from the rules' comments (both ends of
    /// a cut carry one, so a node that is down is still found in its peers').
    pub(super) async fn cuts_in_force(&self) -> Result<BTreeSet<(usize, usize)>, ClusterError> {
        let mut cuts = BTreeSet::new();
        for (node, state) in self.running_nodes().await? {
            if state != "running" {
                continue;
            }
            let list =
                format!("iptables -S ZKMQ-PART 2>/dev/null | grep -o '{PEER_MARK}[0-9]*'; true");
            let listed = self.shell(node, &list).await?;
            for peer in listed
                .lines()
                .filter_map(|line| line.trim().strip_prefix(PEER_MARK)?.parse::<usize>().ok())
            {
                if peer != node && (1..=self.spec.nodes).contains(&peer) {
                    cuts.insert((node, peer));
                    cuts.insert((peer, node));
                }
            }
        }
        Ok(cuts)
    }

    /// The script that puts `node` on its side of `cuts`, naming its peers'
    /// addresses of now: what a swarm member about to start runs before
    /// ZooKeeper (`ZKMQ_NET_SETUP` in `zk-start.sh`), so that it starts cut off.
    pub(super) async fn own_cuts_script(
        &self,
        node: usize,
        cuts: &BTreeSet<(usize, usize)>,
    ) -> Result<String, ClusterError> {
        if !cuts.iter().any(|(cutter, _)| *cutter == node) {
            return Ok(String::new());
        }
        Ok(cut_script(node, cuts, &self.node_ips().await?))
    }

    /// Removes every rule and qdisc the harness added, on every running node.
    pub async fn heal(&self) -> Result<Healed, ClusterError> {
        let mut healed = Vec::new();
        let mut unreachable = Vec::new();
        for (node, state) in self.running_nodes().await? {
            match state.as_str() {
                "running" => {
                    let script = format!(
                        "iptables -F ZKMQ-PART 2>/dev/null; iptables -F ZKMQ-LOSS 2>/dev/null; {}",
                        on_every_link(NO_QDISC)
                    );
                    self.shell(node, &script).await?;
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
        let mut script = format!("{SETUP_CHAINS}iptables -F ZKMQ-LOSS\n");
        if percent > 0 {
            script.push_str(&format!(
                "iptables -A ZKMQ-LOSS ! -o lo -m statistic --mode random --probability {:.4} -j DROP\n",
                f64::from(percent) / 100.0
            ));
        }
        self.shell(node, &script).await?;
        Ok(Shaped { node, shaping: Shaping::Loss { percent } })
    }

    /// Limits the node's outgoing bandwidth with a token bucket (0 removes it).
    pub async fn slow(&self, node: usize, kbit: u32) -> Result<Shaped, ClusterError> {
        self.check_node(node)?;
        if kbit == 0 {
            self.shell(node, &on_every_link(NO_QDISC)).await?;
            return Ok(Shaped { node, shaping: Shaping::Slow { kbit } });
        }
        self.shell(
            node,
            &on_every_link(&format!(
                "tc qdisc replace dev DEV root tbf rate {kbit}kbit burst 32kbit latency 400ms"
            )),
        )
        .await?;
        Ok(Shaped { node, shaping: Shaping::Slow { kbit } })
    }

    /// Delays every packet the node sends (netem). Refused with
    /// [`ClusterError::Unsupported`] where the kernel lacks netem, never skipped.
    pub async fn delay(&self, node: usize, delay: Duration) -> Result<Shaped, ClusterError> {
        self.check_node(node)?;
        if delay.is_zero() {
            self.shell(node, &on_every_link(NO_QDISC)).await?;
            return Ok(Shaped { node, shaping: Shaping::Delay { millis: 0 } });
        }
        let millis = delay.as_millis();
        match self
            .shell(
                node,
                &on_every_link(&format!("tc qdisc replace dev DEV root netem delay {millis}ms")),
            )
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
