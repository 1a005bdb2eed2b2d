//! What a cluster verb did, as data: callers and tests look at the fields, and the
//! `Display` of each type words it in one line (what `zkmq cluster <verb>` prints and
//! what the nemesis records as a fault's detail).

use std::fmt;

use super::fault::Member;

/// The container verbs, shared by ZooKeeper nodes and the REST gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerVerb {
    Kill,
    Stop,
    Start,
    Pause,
    Unpause,
}

/// What a container verb did. Verbs are idempotent: on a container already in the
/// wanted state they do nothing (`acted` is false) and say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerChange {
    pub member: Member,
    pub verb: ContainerVerb,
    /// Docker's state of the container before the verb: running, paused, exited, ...
    pub before: String,
    pub acted: bool,
}

impl fmt::Display for ContainerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (who, before) = (self.member, self.before.as_str());
        match (self.verb, self.acted, before) {
            (ContainerVerb::Kill, true, "paused") => {
                write!(f, "killed {who} (SIGKILL; it was paused)")
            }
            (ContainerVerb::Kill, true, _) => write!(f, "killed {who} (SIGKILL)"),
            (ContainerVerb::Kill, false, _) => {
                write!(f, "{who} was not running ({before}); nothing to kill")
            }
            (ContainerVerb::Stop, true, "paused") => {
                write!(f, "stopped {who} (SIGTERM; it was paused)")
            }
            (ContainerVerb::Stop, true, _) => write!(f, "stopped {who} (SIGTERM)"),
            (ContainerVerb::Stop, false, _) => write!(f, "{who} was already stopped ({before})"),
            (ContainerVerb::Start, true, "paused") => {
                write!(f, "unpaused {who} (it was paused, not stopped)")
            }
            (ContainerVerb::Start, true, _) => write!(f, "started {who}"),
            (ContainerVerb::Start, false, _) => write!(f, "{who} was already running"),
            (ContainerVerb::Pause, true, _) => {
                write!(f, "paused {who} (cgroup freezer: every process stopped)")
            }
            (ContainerVerb::Pause, false, "paused") => write!(f, "{who} was already paused"),
            (ContainerVerb::Pause, false, _) => {
                write!(f, "{who} is not running ({before}); nothing to pause")
            }
            (ContainerVerb::Unpause, true, _) => write!(f, "unpaused {who}"),
            (ContainerVerb::Unpause, false, _) => write!(f, "{who} was not paused ({before})"),
        }
    }
}

/// A stop then a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarted {
    pub stopped: ContainerChange,
    pub started: ContainerChange,
}

impl fmt::Display for Restarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "restarted {}: {}, {}", self.stopped.member, self.stopped, self.started)
    }
}

/// A node stopped, its data directory cleared but for `kept`, and started again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiped {
    pub node: usize,
    pub stopped: ContainerChange,
    /// What is left in the data directory (`myid`).
    pub kept: Vec<String>,
    pub started: ContainerChange,
}

impl fmt::Display for Wiped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wiped zk{}: {}, cleared its data directory (kept: {}), {}",
            self.node,
            self.stopped,
            self.kept.join(" "),
            self.started
        )
    }
}

/// A rolling-upgrade step on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgraded {
    /// The node already ran the image; it was only started if it was down.
    AlreadyRuns { node: usize, image: String, started: ContainerChange },
    /// The container was replaced, on the same data volume and port.
    Replaced { node: usize, from: String, to: String, stopped: ContainerChange, port: u16 },
}

impl fmt::Display for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upgraded::AlreadyRuns { node, image, started } => {
                write!(f, "zk{node} already runs {image}; {started}")
            }
            Upgraded::Replaced { node, from, to, stopped, port } => write!(
                f,
                "upgraded zk{node} from {from} to {to} ({stopped}; same data volume and address 127.0.0.1:{port})"
            ),
        }
    }
}

/// A traffic shaping a node's outgoing packets now get; zero means removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shaping {
    Loss { percent: u32 },
    Slow { kbit: u32 },
    Delay { millis: u128 },
}

/// A node's traffic shaped (or its shaping removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shaped {
    pub node: usize,
    pub shaping: Shaping,
}

impl fmt::Display for Shaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.node;
        match self.shaping {
            Shaping::Loss { percent: 0 } => write!(f, "removed packet loss on zk{node}"),
            Shaping::Loss { percent } => {
                write!(f, "zk{node} drops {percent}% of the packets it sends")
            }
            Shaping::Slow { kbit: 0 } => write!(f, "removed the bandwidth limit on zk{node}"),
            Shaping::Slow { kbit } => write!(f, "zk{node} sends at most {kbit} kbit/s"),
            Shaping::Delay { millis: 0 } => write!(f, "removed the delay on zk{node}"),
            Shaping::Delay { millis } => write!(f, "zk{node} delays its packets by {millis} ms"),
        }
    }
}

/// Nodes that were not running, with their container state.
pub type NotRunning = Vec<(usize, String)>;

fn node_list(nodes: &[usize]) -> String {
    nodes.iter().map(|node| format!("zk{node}")).collect::<Vec<_>>().join(",")
}

fn with_states(nodes: &NotRunning) -> String {
    nodes.iter().map(|(node, state)| format!("zk{node} ({state})")).collect::<Vec<_>>().join(", ")
}

/// A partition in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioned {
    /// The groups that can talk, including the one of nodes named in no group.
    pub groups: Vec<Vec<usize>>,
    /// Nodes that got no rules (not running); their peers' rules cut them off.
    pub not_running: NotRunning,
}

impl fmt::Display for Partitioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups = self.groups.iter().map(|g| node_list(g)).collect::<Vec<_>>().join(" | ");
        write!(f, "partitioned {groups}")?;
        if !self.not_running.is_empty() {
            write!(
                f,
                "; no rules inside {} (not running), but its peers' rules cut it off",
                with_states(&self.not_running)
            )?;
        }
        Ok(())
    }
}

/// Every rule and qdisc removed from the nodes it could reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healed {
    pub healed: Vec<usize>,
    /// Nodes in a state that takes no commands (paused): unpause, then heal again.
    pub unreachable: NotRunning,
}

impl fmt::Display for Healed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let healed = self.healed.iter().map(|node| format!("zk{node}")).collect::<Vec<_>>();
        write!(f, "healed the network of {}", healed.join(", "))?;
        if !self.unreachable.is_empty() {
            write!(
                f,
                "; could not reach {} (unpause, then heal again)",
                with_states(&self.unreachable)
            )?;
        }
        Ok(())
    }
}

/// A member's size-limited data volume filled, or its fill removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskChange {
    Filled {
        node: usize,
        /// Bytes the fill took.
        filled: u64,
        /// Bytes left free on the volume afterwards (0, or what a racing write freed).
        free: u64,
        /// The volume's size.
        size: u64,
    },
    Freed {
        node: usize,
        /// Bytes the removed fill had taken (0: there was none).
        freed: u64,
        /// ZooKeeper stops on a disk it cannot write: the member started again.
        started: Option<ContainerChange>,
    },
}

impl fmt::Display for DiskChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskChange::Filled { node, filled, free, size } => write!(
                f,
                "filled zk{node}'s data volume: {} written, {} of {} left",
                bytes(*filled),
                bytes(*free),
                bytes(*size)
            ),
            DiskChange::Freed { node, freed: 0, started } => {
                write!(f, "zk{node}'s data volume had no fill")?;
                started_after(f, started.as_ref())
            }
            DiskChange::Freed { node, freed, started } => {
                write!(f, "freed {} on zk{node}'s data volume", bytes(*freed))?;
                started_after(f, started.as_ref())
            }
        }
    }
}

fn started_after(f: &mut fmt::Formatter<'_>, started: Option<&ContainerChange>) -> fmt::Result {
    match started {
        Some(change) if change.acted => {
            write!(f, "; it had stopped ({}): {change}", change.before)
        }
        _ => Ok(()),
    }
}

/// Sizes as people read them: `231 MiB`, `12 KiB`, `0 B`.
fn bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    match n {
        n if n >= KIB * KIB => format!("{:.0} MiB", n as f64 / (KIB * KIB) as f64),
        n if n >= KIB => format!("{:.0} KiB", n as f64 / KIB as f64),
        n => format!("{n} B"),
    }
}

/// A member's wall clock stepped (or put right: a zero offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockChange {
    pub node: usize,
    pub offset: super::fault::ClockOffset,
}

impl fmt::Display for ClockChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.node;
        if self.offset.is_zero() {
            return write!(f, "put zk{node}'s wall clock right");
        }
        write!(
            f,
            "stepped zk{node}'s wall clock by {} (its monotonic clock, which ZooKeeper times out by, untouched)",
            self.offset
        )
    }
}

/// What a weak-window fault did: each step as a sentence, and which nodes it left
/// down, in the order they went down (how they come back: [`BroughtBack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowStrike {
    pub steps: Vec<String>,
    /// Every node killed, in the order of their first kills.
    pub killed: Vec<usize>,
    pub down: Vec<usize>,
    /// The fault hit the window it waits for; false when it ran out of time (the
    /// nodes it killed on the way are still in `down`).
    pub hit: bool,
}

impl fmt::Display for WindowStrike {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.steps.join("; "))?;
        if !self.hit {
            f.write_str(" (the window was missed)")?;
        }
        Ok(())
    }
}

/// Nodes started again in the order they went down, the last one only once the
/// others served (or the wait for them ran out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroughtBack {
    pub first: Vec<ContainerChange>,
    /// How the wait for the first ones went, in words.
    pub waited: String,
    pub last: Option<ContainerChange>,
}

impl fmt::Display for BroughtBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first: Vec<String> = self.first.iter().map(ToString::to_string).collect();
        f.write_str(&first.join(", "))?;
        if let Some(last) = &self.last {
            if !first.is_empty() {
                write!(f, "; {}; then ", self.waited)?;
            }
            write!(f, "{last}")?;
        }
        Ok(())
    }
}

/// What [`super::Cluster::inflict`] did, whichever verb it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerbOutcome {
    Container(ContainerChange),
    Restarted(Restarted),
    Wiped(Wiped),
    Upgraded(Upgraded),
    Shaped(Shaped),
    Disk(DiskChange),
    Clock(ClockChange),
}

impl fmt::Display for VerbOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerbOutcome::Container(change) => change.fmt(f),
            VerbOutcome::Restarted(restarted) => restarted.fmt(f),
            VerbOutcome::Wiped(wiped) => wiped.fmt(f),
            VerbOutcome::Upgraded(upgraded) => upgraded.fmt(f),
            VerbOutcome::Shaped(shaped) => shaped.fmt(f),
            VerbOutcome::Disk(disk) => disk.fmt(f),
            VerbOutcome::Clock(clock) => clock.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(member: Member, verb: ContainerVerb, before: &str, acted: bool) -> ContainerChange {
        ContainerChange { member, verb, before: before.into(), acted }
    }

    #[test]
    fn outcomes_are_worded_as_the_cli_has_always_printed_them() {
        let zk2 = Member::Node(2);
        assert_eq!(
            change(zk2, ContainerVerb::Kill, "paused", true).to_string(),
            "killed zk2 (SIGKILL; it was paused)"
        );
        assert_eq!(
            change(Member::Gateway, ContainerVerb::Kill, "exited", false).to_string(),
            "the REST gateway was not running (exited); nothing to kill"
        );
        let restarted = Restarted {
            stopped: change(zk2, ContainerVerb::Stop, "running", true),
            started: change(zk2, ContainerVerb::Start, "exited", true),
        };
        assert_eq!(restarted.to_string(), "restarted zk2: stopped zk2 (SIGTERM), started zk2");
        let partitioned = Partitioned {
            groups: vec![vec![1], vec![2, 3]],
            not_running: vec![(3, "exited".into())],
        };
        assert_eq!(
            partitioned.to_string(),
            "partitioned zk1 | zk2,zk3; no rules inside zk3 (exited) (not running), but its peers' rules cut it off"
        );
        let healed = Healed { healed: vec![1, 2], unreachable: vec![(3, "paused".into())] };
        assert_eq!(
            healed.to_string(),
            "healed the network of zk1, zk2; could not reach zk3 (paused) (unpause, then heal again)"
        );
        let shaped = Shaped { node: 1, shaping: Shaping::Delay { millis: 0 } };
        assert_eq!(shaped.to_string(), "removed the delay on zk1");
    }
}
