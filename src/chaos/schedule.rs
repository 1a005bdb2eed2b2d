//! The fault schedule: computed up front from one seed, and read back for a replay.
//!
//! Pure: the schedule is a function of the scenario and the seed (no cluster state
//! goes into it), so a seed names a run's faults. What depends on the cluster at the
//! moment a fault starts (who leads) is resolved then by the nemesis and recorded
//! in [`PlannedFault::resolved`], and a replay (`--replay schedule.json`) reuses
//! those resolved targets instead of resolving again, so it repeats the same faults
//! at the same offsets on the same nodes. Executing a schedule is [`super::nemesis`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::scenario::{FaultOrder, Scenario};
use crate::cluster::fault::{ClockOffset, FaultKind, PartitionShape, Target};
use crate::rundir::{RunDirError, ScheduleFile};

/// One fault of the schedule, as planned from the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFault {
    pub fault: FaultKind,
    pub target: Target,
    /// Seconds after the run started.
    pub at: f64,
    /// Seconds the fault stays applied (0 for instantaneous faults).
    pub duration: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<PartitionShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kbit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<ClockOffset>,
    /// Nodes drawn from the seed, in draw order: the first is a `random` target, the
    /// first k a minority or majority, the whole list a permutation for partitions.
    pub draw: Vec<usize>,
    /// A number drawn from the seed to pick among what is only known at run time
    /// (which follower, which consumer).
    pub pick: u64,
    /// What the fault actually hit; set when it applied, and reused by a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolved>,
}

/// A fault's concrete targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// ZooKeeper node ids hit (empty for gateway and consumer faults).
    #[serde(default)]
    pub nodes: Vec<usize>,
    /// Partitions: the groups that can still talk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Vec<usize>>,
    /// Consumer faults: the consumer's index in the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<usize>,
}

impl Resolved {
    /// How history and `schedule.json` name what the fault hit.
    pub fn describe(&self, consumers: &[String]) -> String {
        if !self.groups.is_empty() {
            return self
                .groups
                .iter()
                .map(|g| g.iter().map(|n| format!("zk{n}")).collect::<Vec<_>>().join(","))
                .collect::<Vec<_>>()
                .join(" | ");
        }
        if let Some(c) = self.consumer {
            return consumers.get(c).cloned().unwrap_or_else(|| format!("consumer #{c}"));
        }
        if self.nodes.is_empty() {
            return "rest".into();
        }
        self.nodes.iter().map(|n| format!("zk{n}")).collect::<Vec<_>>().join(",")
    }
}

/// What the nemesis keeps in `schedule.json` beside the shared
/// [`crate::rundir::Schedule`]: its plan, which a replay needs. The plan stays
/// chaos's type (it is made of scenario types) and [`crate::rundir`] owns the file.
pub type NemesisScheduleFile = ScheduleFile<Vec<PlannedFault>>;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot replay: {0}")]
    Replay(#[source] RunDirError),
    #[error("{path} has no plan: it is not a schedule.json written by `zkmq chaos run`")]
    NoPlan { path: PathBuf },
    #[error(transparent)]
    Write(RunDirError),
}

/// Computes the fault schedule of a scenario for a seed.
pub fn plan(scenario: &Scenario, seed: u64, duration: Duration) -> Vec<PlannedFault> {
    let nemesis = &scenario.nemesis;
    let total_weight: u64 = nemesis.faults.iter().map(|f| u64::from(f.weight)).sum();
    if total_weight == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes: Vec<usize> = (1..=scenario.cluster.nodes).collect();
    let end = duration.as_secs_f64();
    let mut t = nemesis.start_after.as_secs_f64();
    let mut planned = Vec::new();
    // Stop a second before the end so the last fault has time to act at all.
    let in_turn: Vec<_> = nemesis.faults.iter().filter(|f| f.weight > 0).collect();
    while t < end - 1.0 {
        let mut ticket = rng.random_range(0..total_weight);
        let spec = if nemesis.order == FaultOrder::InTurn {
            in_turn[planned.len() % in_turn.len()]
        } else {
            nemesis
                .faults
                .iter()
                .find(|f| {
                    let w = u64::from(f.weight);
                    if ticket < w {
                        true
                    } else {
                        ticket -= w;
                        false
                    }
                })
                .expect("the ticket falls within the total weight")
        };
        let duration = if spec.fault.is_instant() {
            0.0
        } else {
            spec.duration.unwrap_or(nemesis.fault_duration).as_secs_f64().min(end - t)
        };
        let mut draw = nodes.clone();
        draw.shuffle(&mut rng);
        let pick = rng.random::<u64>();
        planned.push(PlannedFault {
            fault: spec.fault,
            target: spec.target(),
            at: round_ms(t),
            duration: round_ms(duration),
            shape: spec.shape,
            percent: spec.percent,
            kbit: spec.kbit,
            delay_ms: spec.delay.map(|d| d.as_millis() as u64),
            to_version: spec.to_version.clone(),
            within_ms: spec.within.map(|d| d.as_millis() as u64),
            stale_ms: spec.stale.map(|d| d.as_millis() as u64),
            rounds: spec.rounds,
            offset: spec.offset,
            draw,
            pick,
            resolved: None,
        });
        let next_by_interval = t + nemesis.interval.as_secs_f64();
        let next_by_quiet = t + duration + nemesis.quiet.as_secs_f64();
        t = next_by_interval.max(next_by_quiet);
    }
    planned
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Reads a recorded schedule for `--replay`: the plan, with each fault's recorded
/// targets fixed so it hits the same nodes again.
pub fn load_replay(path: &Path) -> Result<(u64, Vec<PlannedFault>), ScheduleError> {
    let file = NemesisScheduleFile::read(path).map_err(ScheduleError::Replay)?;
    let plan = file.plan.ok_or_else(|| ScheduleError::NoPlan { path: path.to_owned() })?;
    Ok((file.schedule.seed, plan))
}

/// The groups of a partition: nodes in one group talk, nodes in different groups
/// do not. `draw` is the seeded node order; `leader` is needed for isolate-leader.
pub fn partition_groups(
    shape: PartitionShape,
    draw: &[usize],
    leader: Option<usize>,
) -> Vec<Vec<usize>> {
    let n = draw.len();
    match shape {
        PartitionShape::IsolateOne => {
            vec![vec![draw[0]], sorted(&draw[1..])]
        }
        PartitionShape::IsolateLeader => {
            let leader = leader.expect("the leader is known for isolate-leader");
            let rest: Vec<usize> = draw.iter().copied().filter(|&x| x != leader).collect();
            vec![vec![leader], sorted(&rest)]
        }
        PartitionShape::Halves => {
            let k = n / 2;
            vec![sorted(&draw[..k]), sorted(&draw[k..])]
        }
        PartitionShape::MajoritiesRing => {
            // On a ring of random order each node talks only to its nearest
            // neighbours, as many as make it a majority with itself (5 nodes: one
            // on each side). Every node sees a majority and no two see the same
            // one. The cluster connects two nodes iff a group holds both, so the
            // groups are the ring's links.
            let majority = n / 2 + 1;
            let reach = majority / 2;
            (0..n)
                .flat_map(|i| (1..=reach).map(move |d| (i, (i + d) % n)))
                .map(|(a, b)| sorted(&[draw[a], draw[b]]))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }
        PartitionShape::Bridge => {
            let half = n / 2;
            vec![sorted(&draw[..=half]), sorted(&draw[half..])]
        }
    }
}

pub(super) fn sorted(nodes: &[usize]) -> Vec<usize> {
    let mut v = nodes.to_vec();
    v.sort_unstable();
    v
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::chaos::scenario::parse_scenario;

    /// A five-minute scenario with weighted node, partition and gateway faults.
    pub(in crate::chaos) fn scenario() -> Scenario {
        parse_scenario(
            r#"
name = "plan"
duration = "5m"
[cluster]
nodes = 5
rest = true
[workload.native]
producers = 1
consumers = 2
[nemesis]
interval = "10s"
quiet = "3s"
fault_duration = "8s"
[[nemesis.faults]]
fault = "kill"
target = "leader"
[[nemesis.faults]]
fault = "partition"
shape = "halves"
weight = 3
[[nemesis.faults]]
fault = "rest-restart"
"#,
            Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let s = scenario();
        let a = plan(&s, 42, s.duration);
        let b = plan(&s, 42, s.duration);
        let c = plan(&s, 43, s.duration);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.len() >= 20, "{} faults in 5 minutes", a.len());
    }

    #[test]
    fn faults_respect_start_interval_quiet_and_the_end() {
        let s = scenario();
        let faults = plan(&s, 7, s.duration);
        assert_eq!(faults[0].at, 5.0);
        for pair in faults.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap >= 10.0 - 1e-9, "{pair:?}");
            assert!(pair[1].at >= pair[0].at + pair[0].duration + 3.0 - 1e-9, "{pair:?}");
        }
        let last = faults.last().unwrap();
        assert!(last.at + last.duration <= 300.0 + 1e-9);
        assert!(faults.iter().any(|f| f.fault == FaultKind::RestRestart && f.duration == 0.0));
        let partitions = faults.iter().filter(|f| f.fault == FaultKind::Partition).count();
        assert!(
            partitions > faults.len() / 3,
            "weights are honoured: {partitions} of {}",
            faults.len()
        );
    }

    #[test]
    fn the_window_and_member_fault_knobs_survive_a_schedule_json_for_replay() {
        let s = parse_scenario(
            r#"
name = "windows"
duration = "2m"
[cluster]
nodes = 3
data_limit = "128m"
[workload.native]
producers = 1
consumers = 1
[nemesis]
order = "in-turn"
[[nemesis.faults]]
fault = "syncing-follower-kill"
stale = "2s"
within = "5ms"
[[nemesis.faults]]
fault = "leader-churn"
rounds = 3
[[nemesis.faults]]
fault = "clock-skew"
offset = "-90s"
[[nemesis.faults]]
fault = "disk-full"
"#,
            Path::new("w.toml"),
        )
        .unwrap();
        let planned = plan(&s, 3, s.duration);
        assert_eq!(planned[0].fault, FaultKind::SyncingFollowerKill);
        assert_eq!((planned[0].stale_ms, planned[0].within_ms), (Some(2000), Some(5)));
        assert_eq!(planned[1].rounds, Some(3));
        assert_eq!(planned[2].offset, Some(ClockOffset { millis: -90_000 }));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedule.json");
        let file = NemesisScheduleFile {
            schedule: crate::rundir::Schedule { seed: 3, faults: Vec::new() },
            plan: Some(planned.clone()),
        };
        file.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"offset\": \"-1m 30s\""), "{text}");
        assert_eq!(load_replay(&path).unwrap(), (3, planned));
    }

    #[test]
    fn partition_shapes_cut_as_named() {
        let draw = [3, 1, 4, 5, 2];
        assert_eq!(
            partition_groups(PartitionShape::IsolateOne, &draw, None),
            [vec![3], vec![1, 2, 4, 5]]
        );
        assert_eq!(
            partition_groups(PartitionShape::IsolateLeader, &draw, Some(5)),
            [vec![5], vec![1, 2, 3, 4]]
        );
        assert_eq!(
            partition_groups(PartitionShape::Halves, &draw, None),
            [vec![1, 3], vec![2, 4, 5]]
        );
        assert_eq!(
            partition_groups(PartitionShape::Bridge, &draw, None),
            [vec![1, 3, 4], vec![2, 4, 5]]
        );
        // The ring's links: each node reaches exactly two others, so it sees a
        // majority of 3 with itself, and the five majorities all differ.
        let ring = partition_groups(PartitionShape::MajoritiesRing, &draw, None);
        assert_eq!(ring.len(), 5, "{ring:?}");
        assert!(ring.iter().all(|g| g.len() == 2), "{ring:?}");
        let mut seen = BTreeSet::new();
        for node in 1..=5 {
            let mut view: Vec<usize> =
                ring.iter().filter(|g| g.contains(&node)).flatten().copied().collect();
            view.sort_unstable();
            view.dedup();
            assert_eq!(view.len(), 3, "zk{node} must see a majority: {ring:?}");
            assert!(seen.insert(view), "two nodes see the same majority: {ring:?}");
        }
    }
}
