//! Faults as data: the one list of fault kinds, shared by the scenario schema, the
//! nemesis, `zkmq cluster <verb>` and `zkmq cluster fail`.
//!
//! A [`FaultKind`] is what a scenario names (`fault = "kill"`) and what the schedule
//! draws; its [`Execution`] says how it is carried out: a [`Verb`] on every resolved
//! [`Member`], the same verb node by node (rolling), a partition, or an order to a
//! workload consumer (which the chaos workload carries out; the cluster only names
//! it). A verb is one idempotent cluster operation on one member, the same one
//! `zkmq cluster <verb>` runs, and its [`Repair`] is what undoes it at the fault's
//! end. It lives in `cluster` because the CLI and the fail loop need it without the
//! chaos run.
//!
//! # How to add a fault kind
//!
//! 1. Add the variant to [`FaultKind`] and [`ALL_FAULTS`], and its arms in
//!    `name` (the scenario and history spelling), `default_target`,
//!    `allowed_targets`, `is_instant` and `execution`. Beyond these, only the
//!    scenario's validation of knobs (`chaos::scenario`) and the nemesis's
//!    partition and consumer orders look at the kind itself.
//! 2. If no existing [`Verb`] does it, add one: the variant, its arm in
//!    `Verb::repair`, its Docker implementation on [`Cluster`]
//!    (container verbs in `nodes.rs`, network ones in `network.rs`), its arm in
//!    [`Cluster::inflict`] and, for people, its `zkmq cluster <verb>` subcommand in
//!    `src/cli/cluster.rs`. The nemesis then applies and undoes it with no change.
//! 3. A new knob (like `percent`) goes into [`Knobs`], the scenario's `FaultSpec`
//!    and the schedule's `PlannedFault` (keep it optional, so old `schedule.json`
//!    files still replay).
//!
//! A fault that waits for one of ZooKeeper's own weak windows (a new leader's
//! first moments, a follower's sync) is not one verb on one member but a short
//! choreography over several: its [`Execution`] is a [`Window`], carried out by
//! `Cluster::strike_window` (`window.rs`), which returns the members it left down
//! in the order they went down; `Cluster::bring_back` is its undo.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::outcome::{ContainerVerb, VerbOutcome};
use super::{Cluster, ClusterError};

/// Fault verbs, as plain named operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the node; started again at the fault's end.
    Kill,
    /// Graceful stop; started again at the end.
    Stop,
    /// Freeze the node's processes; unpaused at the end.
    Pause,
    /// Restart in place (instantaneous).
    Restart,
    /// Stop, clear the data directory (myid kept), start: the node must resync.
    Wipe,
    /// Cut the network into groups (see `shape`); healed at the end.
    Partition,
    /// Drop a share of the node's packets (iptables statistic).
    Loss,
    /// Limit the node's bandwidth (tc tbf).
    Slow,
    /// Delay the node's packets (netem; refused where the kernel lacks it).
    Delay,
    /// Kill the REST gateway; started again at the end.
    RestKill,
    /// Restart the REST gateway (instantaneous).
    RestRestart,
    /// Freeze the REST gateway; unpaused at the end.
    RestPause,
    /// A consumer drops its session without closing; it re-registers at the end.
    ConsumerCrash,
    /// A consumer stalls past its session timeout holding a message, then tries to ack.
    ConsumerZombie,
    /// Restart every node, one at a time, waiting for each to serve again.
    RollingRestart,
    /// Move every node to `to_version`, one at a time, keeping its data.
    RollingUpgrade,
    /// Kill a majority: unavailability is expected, loss is not.
    QuorumLoss,
    /// Kill the leader, then the newly elected one within `within` of its
    /// election, while its followers sync with it.
    NewLeaderKill,
    /// Keep a follower down `stale`, bring it back into a new leader's epoch and
    /// kill it the moment it adopts that epoch (its DIFF, SNAP or TRUNC sync),
    /// then kill the new leader: ZOOKEEPER-4643/4646/4785's window.
    SyncingFollowerKill,
    /// Kill each newly elected leader soon after its election, `rounds` times,
    /// starting the previous one again each time so a quorum can form.
    LeaderChurn,
    /// Fill the member's size-limited data volume; freed at the end.
    DiskFull,
    /// Step the member's wall clock by `offset`; put right at the end.
    ClockSkew,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Pause => "pause",
            Self::Restart => "restart",
            Self::Wipe => "wipe",
            Self::Partition => "partition",
            Self::Loss => "loss",
            Self::Slow => "slow",
            Self::Delay => "delay",
            Self::RestKill => "rest-kill",
            Self::RestRestart => "rest-restart",
            Self::RestPause => "rest-pause",
            Self::ConsumerCrash => "consumer-crash",
            Self::ConsumerZombie => "consumer-zombie",
            Self::RollingRestart => "rolling-restart",
            Self::RollingUpgrade => "rolling-upgrade",
            Self::QuorumLoss => "quorum-loss",
            Self::NewLeaderKill => "new-leader-kill",
            Self::SyncingFollowerKill => "syncing-follower-kill",
            Self::LeaderChurn => "leader-churn",
            Self::DiskFull => "disk-full",
            Self::ClockSkew => "clock-skew",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ALL_FAULTS.iter().copied().find(|kind| kind.name() == name)
    }

    /// The target a fault gets when the scenario names none.
    pub fn default_target(self) -> Target {
        match self {
            Self::Partition => Target::Random,
            Self::RestKill | Self::RestRestart | Self::RestPause => Target::Rest,
            Self::ConsumerCrash | Self::ConsumerZombie => Target::Consumer,
            Self::RollingRestart | Self::RollingUpgrade => Target::All,
            Self::QuorumLoss => Target::Majority,
            Self::NewLeaderKill | Self::LeaderChurn => Target::Leader,
            Self::SyncingFollowerKill => Target::Follower,
            _ => Target::Random,
        }
    }

    /// Which targets make sense for this verb.
    pub fn allowed_targets(self) -> &'static [Target] {
        use Target::*;
        match self {
            Self::Kill
            | Self::Stop
            | Self::Pause
            | Self::Restart
            | Self::Loss
            | Self::Slow
            | Self::Delay => &[Random, Leader, Follower, Minority, Majority, All],
            // Wiping more than one node at once destroys acknowledged data by design
            // of ZooKeeper, not by a bug of the queue: not a fault worth injecting.
            Self::Wipe => &[Random, Leader, Follower],
            Self::Partition => &[Random],
            Self::RestKill | Self::RestRestart | Self::RestPause => &[Rest],
            Self::ConsumerCrash | Self::ConsumerZombie => &[Consumer],
            Self::RollingRestart | Self::RollingUpgrade => &[All],
            Self::QuorumLoss => &[Majority, All],
            // The window itself decides who is hit: the leader of the moment and
            // whoever is elected after it, or the follower drawn and the leaders
            // around its sync.
            Self::NewLeaderKill | Self::LeaderChurn => &[Leader],
            Self::SyncingFollowerKill => &[Follower],
            Self::DiskFull => &[Random, Leader, Follower],
            // Skewing every clock by the same offset skews none against another.
            Self::ClockSkew => &[Random, Leader, Follower, Minority],
        }
    }

    /// Faults that happen at once and need no undo (their duration is ignored).
    pub fn is_instant(self) -> bool {
        matches!(
            self,
            Self::Restart
                | Self::Wipe
                | Self::RestRestart
                | Self::RollingRestart
                | Self::RollingUpgrade
        )
    }
}

pub const ALL_FAULTS: &[FaultKind] = &[
    FaultKind::Kill,
    FaultKind::Stop,
    FaultKind::Pause,
    FaultKind::Restart,
    FaultKind::Wipe,
    FaultKind::Partition,
    FaultKind::Loss,
    FaultKind::Slow,
    FaultKind::Delay,
    FaultKind::RestKill,
    FaultKind::RestRestart,
    FaultKind::RestPause,
    FaultKind::ConsumerCrash,
    FaultKind::ConsumerZombie,
    FaultKind::RollingRestart,
    FaultKind::RollingUpgrade,
    FaultKind::QuorumLoss,
    FaultKind::NewLeaderKill,
    FaultKind::SyncingFollowerKill,
    FaultKind::LeaderChurn,
    FaultKind::DiskFull,
    FaultKind::ClockSkew,
];

/// What a fault is aimed at, as the scenario says it (resolved when the fault runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// One node drawn from the seed.
    Random,
    /// The current leader (asked when the fault starts).
    Leader,
    /// A node that is not the leader.
    Follower,
    /// Fewer than half of the nodes (at least one).
    Minority,
    /// More than half of the nodes.
    Majority,
    All,
    /// The REST gateway.
    Rest,
    /// One of the workload's consumers.
    Consumer,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Leader => "leader",
            Self::Follower => "follower",
            Self::Minority => "minority",
            Self::Majority => "majority",
            Self::All => "all",
            Self::Rest => "rest",
            Self::Consumer => "consumer",
        }
    }
}

/// How a partition cuts the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    /// One random node alone.
    IsolateOne,
    /// The leader alone.
    IsolateLeader,
    /// A random minority against the majority.
    Halves,
    /// Every node sees a majority, no two see the same one.
    MajoritiesRing,
    /// Two halves joined by one node that sees both.
    Bridge,
}

impl PartitionShape {
    pub fn name(self) -> &'static str {
        match self {
            Self::IsolateOne => "isolate-one",
            Self::IsolateLeader => "isolate-leader",
            Self::Halves => "halves",
            Self::MajoritiesRing => "majorities-ring",
            Self::Bridge => "bridge",
        }
    }
}

impl FaultKind {
    /// How the fault is carried out, with its knobs (or their defaults) filled in.
    pub fn execution(self, knobs: &Knobs) -> Execution {
        match self {
            Self::Kill | Self::QuorumLoss | Self::RestKill => Execution::Each(Verb::Kill),
            Self::Stop => Execution::Each(Verb::Stop),
            Self::Pause | Self::RestPause => Execution::Each(Verb::Pause),
            Self::Restart | Self::RestRestart => Execution::Each(Verb::Restart),
            Self::Wipe => Execution::Each(Verb::Wipe),
            Self::Loss => Execution::Each(Verb::Loss { percent: knobs.percent.unwrap_or(20) }),
            Self::Slow => Execution::Each(Verb::Slow { kbit: knobs.kbit.unwrap_or(256) }),
            Self::Delay => Execution::Each(Verb::Delay {
                delay: knobs.delay.unwrap_or(Duration::from_millis(200)),
            }),
            Self::Partition => Execution::Partition,
            Self::ConsumerCrash | Self::ConsumerZombie => Execution::Consumer,
            Self::RollingRestart => Execution::Rolling(Verb::Restart),
            Self::RollingUpgrade => Execution::Rolling(Verb::Upgrade {
                to_version: knobs.to_version.clone().unwrap_or_else(|| "3.9.3".into()),
            }),
            Self::NewLeaderKill => Execution::Window(Window::NewLeader {
                within: knobs.within.unwrap_or(DEFAULT_WITHIN),
            }),
            Self::SyncingFollowerKill => Execution::Window(Window::SyncingFollower {
                stale: knobs.stale.unwrap_or(DEFAULT_STALE),
                within: knobs.within.unwrap_or(Duration::ZERO),
            }),
            Self::LeaderChurn => Execution::Window(Window::Churn {
                rounds: knobs.rounds.unwrap_or(DEFAULT_ROUNDS),
                within: knobs.within.unwrap_or(DEFAULT_WITHIN),
            }),
            Self::DiskFull => Execution::Each(Verb::DiskFill),
            Self::ClockSkew => {
                Execution::Each(Verb::ClockSkew { offset: knobs.offset.unwrap_or(DEFAULT_OFFSET) })
            }
        }
    }
}

/// new-leader-kill and leader-churn: a new leader is killed at a delay drawn from
/// 0 to this after its election, while its followers are still syncing (a stale
/// follower's DIFF takes tens to hundreds of milliseconds here).
pub const DEFAULT_WITHIN: Duration = Duration::from_millis(200);
/// syncing-follower-kill: long enough for a few hundred transactions to pile up
/// at a few dozen writes per second, so the follower's sync is a DIFF (ZooKeeper
/// sends a snapshot instead past its 500 most recent transactions).
pub const DEFAULT_STALE: Duration = Duration::from_secs(3);
/// leader-churn: new leaders killed in one fault.
pub const DEFAULT_ROUNDS: u32 = 4;
/// clock-skew: a step back past the queue's orphan grace, the one place the
/// queue compares a server's clock (a znode's ctime) with its own.
pub const DEFAULT_OFFSET: ClockOffset = ClockOffset { millis: -120_000 };

/// A signed step of a wall clock, written `+90s`, `-2m`, `-1h 30m` (no sign: ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ClockOffset {
    pub millis: i64,
}

impl ClockOffset {
    pub const ZERO: ClockOffset = ClockOffset { millis: 0 };

    pub fn is_zero(self) -> bool {
        self.millis == 0
    }
}

impl fmt::Display for ClockOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.millis < 0 { '-' } else { '+' };
        let span = Duration::from_millis(self.millis.unsigned_abs());
        write!(f, "{sign}{}", humantime::format_duration(span))
    }
}

impl std::str::FromStr for ClockOffset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (sign, span) = match text.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, text.strip_prefix('+').unwrap_or(text)),
        };
        let span = humantime::parse_duration(span.trim()).map_err(|err| {
            format!("clock offset {text:?}: {err} (write it like \"+90s\" or \"-2m\")")
        })?;
        let millis = i64::try_from(span.as_millis())
            .map_err(|_| format!("clock offset {text:?} is too large"))?;
        Ok(ClockOffset { millis: sign * millis })
    }
}

impl Serialize for ClockOffset {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockOffset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One of ZooKeeper's weak windows, and how long to wait into it before the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The leader is killed; the one elected after it is killed a drawn delay up
    /// to `within` after its election, while followers sync with it.
    NewLeader { within: Duration },
    /// A follower kept down `stale` comes back as the leader is killed, so it
    /// syncs with a new leader in a new epoch; it is killed (from inside its
    /// container) up to `within` after it adopts that epoch, then the new leader.
    SyncingFollower { stale: Duration, within: Duration },
    /// `rounds` times: the newly elected leader is killed up to `within` after
    /// its election and the previous one is started again.
    Churn { rounds: u32, within: Duration },
}

/// A fault's knobs; each means something to one kind only (the scenario refuses
/// the others), and a missing one gets its kind's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs {
    /// Loss: share of packets dropped.
    pub percent: Option<u32>,
    /// Slow: bandwidth limit.
    pub kbit: Option<u32>,
    /// Delay: added latency.
    pub delay: Option<Duration>,
    /// Rolling upgrade: the version every node moves to.
    pub to_version: Option<String>,
    /// Window faults: the kill comes a delay drawn from 0 to this after the moment
    /// the fault waits for (an election, a follower adopting a new epoch).
    pub within: Option<Duration>,
    /// syncing-follower-kill: how long the follower stays down first, so that it
    /// has a backlog to sync.
    pub stale: Option<Duration>,
    /// leader-churn: how many newly elected leaders are killed.
    pub rounds: Option<u32>,
    /// clock-skew: how far the member's wall clock steps.
    pub offset: Option<ClockOffset>,
}

/// How a fault kind is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// The verb on every resolved member (the gateway for `rest` targets).
    Each(Verb),
    /// The verb on one node at a time, each serving again before the next.
    Rolling(Verb),
    /// The network cut into the resolved groups; healed at the end.
    Partition,
    /// An order to a workload consumer, which undoes it itself.
    Consumer,
    /// A choreography over several nodes around a weak window of ZooKeeper's;
    /// the nodes it left down come back at the end, in the order they went down.
    Window(Window),
}

/// What a verb acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Member {
    /// A ZooKeeper node, by myid.
    Node(usize),
    /// The REST gateway container.
    Gateway,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Node(node) => write!(f, "zk{node}"),
            Member::Gateway => f.write_str("the REST gateway"),
        }
    }
}

/// One idempotent cluster operation on one member: what `zkmq cluster <verb>`
/// runs, and what a fault kind's [`Execution`] applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// SIGKILL.
    Kill,
    /// SIGTERM, SIGKILL after a grace period.
    Stop,
    Start,
    Restart,
    /// cgroup freezer.
    Pause,
    Unpause,
    /// Stop, clear the data directory but `myid`, start.
    Wipe,
    /// Replace the container with another ZooKeeper version, same data.
    Upgrade {
        to_version: String,
    },
    /// Drop a share of outgoing packets (0 removes).
    Loss {
        percent: u32,
    },
    /// Limit outgoing bandwidth (0 removes).
    Slow {
        kbit: u32,
    },
    /// Delay outgoing packets (zero removes).
    Delay {
        delay: Duration,
    },
    /// Fill the member's size-limited data volume to the last byte.
    DiskFill,
    /// Remove the fill, and start the member if ZooKeeper stopped on the full disk.
    DiskFree,
    /// Step the member's wall clock (zero resets it).
    ClockSkew {
        offset: ClockOffset,
    },
}

/// What ends a verb's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Start the members again.
    Start,
    /// Thaw the members.
    Unpause,
    /// Remove every network rule and qdisc.
    Heal,
    /// Remove the disk fill (and start the member if it stopped).
    Free,
    /// Put the member's wall clock right.
    ClockReset,
}

impl Repair {
    /// The verb that repairs one member; `None` for a heal, which acts on the
    /// whole network at once ([`Cluster::heal`]).
    pub fn verb(self) -> Option<Verb> {
        match self {
            Repair::Start => Some(Verb::Start),
            Repair::Unpause => Some(Verb::Unpause),
            Repair::Heal => None,
            Repair::Free => Some(Verb::DiskFree),
            Repair::ClockReset => Some(Verb::ClockSkew { offset: ClockOffset::ZERO }),
        }
    }
}

impl Verb {
    /// What undoes the verb when a fault ends; `None` when nothing is left to
    /// undo (a restart, a wipe, an upgrade, or a verb that is itself a repair).
    pub fn repair(&self) -> Option<Repair> {
        match self {
            Verb::Kill | Verb::Stop => Some(Repair::Start),
            Verb::Pause => Some(Repair::Unpause),
            Verb::Loss { .. } | Verb::Slow { .. } | Verb::Delay { .. } => Some(Repair::Heal),
            Verb::DiskFill => Some(Repair::Free),
            Verb::ClockSkew { offset } if !offset.is_zero() => Some(Repair::ClockReset),
            Verb::Start
            | Verb::Restart
            | Verb::Unpause
            | Verb::Wipe
            | Verb::Upgrade { .. }
            | Verb::DiskFree
            | Verb::ClockSkew { .. } => None,
        }
    }
}

impl Cluster {
    /// Runs one verb on one member. The gateway takes the container verbs and
    /// restart; the others are refused with [`ClusterError::NotForGateway`].
    pub async fn inflict(&self, member: Member, verb: &Verb) -> Result<VerbOutcome, ClusterError> {
        let container = |verb| async move {
            Ok(VerbOutcome::Container(self.container_target(member)?.run(verb).await?))
        };
        match (member, verb) {
            (_, Verb::Kill) => container(ContainerVerb::Kill).await,
            (_, Verb::Stop) => container(ContainerVerb::Stop).await,
            (_, Verb::Start) => container(ContainerVerb::Start).await,
            (_, Verb::Pause) => container(ContainerVerb::Pause).await,
            (_, Verb::Unpause) => container(ContainerVerb::Unpause).await,
            (Member::Gateway, Verb::Restart) => {
                Ok(VerbOutcome::Restarted(self.rest_restart().await?))
            }
            (Member::Gateway, _) => Err(ClusterError::NotForGateway),
            (Member::Node(node), Verb::Restart) => {
                Ok(VerbOutcome::Restarted(self.restart(node).await?))
            }
            (Member::Node(node), Verb::Wipe) => Ok(VerbOutcome::Wiped(self.wipe(node).await?)),
            (Member::Node(node), Verb::Upgrade { to_version }) => {
                Ok(VerbOutcome::Upgraded(self.upgrade(node, to_version).await?))
            }
            (Member::Node(node), Verb::Loss { percent }) => {
                Ok(VerbOutcome::Shaped(self.loss(node, *percent).await?))
            }
            (Member::Node(node), Verb::Slow { kbit }) => {
                Ok(VerbOutcome::Shaped(self.slow(node, *kbit).await?))
            }
            (Member::Node(node), Verb::Delay { delay }) => {
                Ok(VerbOutcome::Shaped(self.delay(node, *delay).await?))
            }
            (Member::Node(node), Verb::DiskFill) => {
                Ok(VerbOutcome::Disk(self.disk_fill(node).await?))
            }
            (Member::Node(node), Verb::DiskFree) => {
                Ok(VerbOutcome::Disk(self.disk_free(node).await?))
            }
            (Member::Node(node), Verb::ClockSkew { offset }) => {
                Ok(VerbOutcome::Clock(self.clock_skew(node, *offset).await?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_kind_is_listed_once_and_named_back() {
        for (index, kind) in ALL_FAULTS.iter().enumerate() {
            assert_eq!(FaultKind::from_name(kind.name()), Some(*kind));
            assert!(!ALL_FAULTS[..index].contains(kind), "{kind:?} is listed twice");
        }
        assert_eq!(ALL_FAULTS.len(), 22);
    }

    #[test]
    fn a_fault_that_is_left_applied_has_a_repair_and_an_instant_one_has_none() {
        for &kind in ALL_FAULTS {
            let repairable = match kind.execution(&Knobs::default()) {
                Execution::Each(verb) | Execution::Rolling(verb) => verb.repair().is_some(),
                Execution::Partition | Execution::Consumer | Execution::Window(_) => true,
            };
            assert_eq!(repairable, !kind.is_instant(), "{kind:?}");
        }
    }

    #[test]
    fn clock_offsets_read_and_write_with_their_sign() {
        let parse = |text: &str| text.parse::<ClockOffset>();
        assert_eq!(parse("+90s"), Ok(ClockOffset { millis: 90_000 }));
        assert_eq!(parse("90s"), Ok(ClockOffset { millis: 90_000 }));
        assert_eq!(parse("-2m"), Ok(ClockOffset { millis: -120_000 }));
        assert_eq!(parse("- 1h 30m").map(|o| o.millis), Ok(-5_400_000));
        assert!(parse("soon").unwrap_err().contains("\"+90s\""));
        for text in ["+1m 30s", "-2m", "+0s", "-250ms"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
        assert_eq!(DEFAULT_OFFSET.to_string(), "-2m");
    }
}
