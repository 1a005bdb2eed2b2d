//! The nemesis: executes a fault schedule ([`super::schedule`]) against a running
//! cluster. It interprets each planned fault: resolves its targets against the
//! cluster as it is now, applies it, and gets back what undoes it at its end.
//!
//! Every fault is recorded as it starts and ends, in `schedule.json` (rewritten after
//! each change, so a crashed run leaves it) and as `nemesis` events in the history.
//! A fault that fails to apply, or that the environment refuses (netem delay on a
//! kernel without netem), is recorded as not applied and the run goes on.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::recorder::Recorder;
use super::schedule::{
    partition_groups, sorted, NemesisScheduleFile, PlannedFault, Resolved, ScheduleError,
};
use super::workload::{ConsumerHandle, ConsumerOrder};
use crate::cluster::fault::{
    ClockOffset, Execution, FaultKind, Knobs, Member, PartitionShape, Repair, Target, Verb,
};
use crate::cluster::{Cluster, ClusterError};
use crate::history::{Event, Phase};
use crate::rundir::{FaultRecord, Schedule};

/// How long a fault aimed at the leader waits for there to be one.
const LEADER_WAIT: Duration = Duration::from_secs(15);
/// How long a rolling restart or upgrade waits for each node to serve again.
const REJOIN_WAIT: Duration = Duration::from_secs(120);
/// How long a consumer fault waits for the consumer to acknowledge the order.
const CONSUMER_ORDER_WAIT: Duration = Duration::from_secs(30);

/// Why a fault could not be resolved or applied. Its text is what the history and
/// `schedule.json` record as the fault's error.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("no leader within {waited:?}")]
    NoLeader { waited: Duration },
    #[error("cannot find the leader: {0}")]
    LeaderUnknown(#[source] ClusterError),
    #[error("no follower to aim at")]
    NoFollower,
    #[error("no consumer to aim at")]
    NoConsumer,
    #[error("no consumer resolved")]
    ConsumerUnresolved,
    #[error("{consumer} has stopped")]
    ConsumerStopped { consumer: String },
    #[error("{consumer} did not take the order within {waited:?}")]
    OrderTimeout { consumer: String, waited: Duration },
    #[error("{consumer} stopped before taking the order")]
    ConsumerGone { consumer: String },
    /// The cluster refused or failed the verb.
    #[error("{}", describe_error(.0))]
    Cluster(#[source] ClusterError),
    /// A rolling fault failed on `node`, after the nodes in `done`: either the verb
    /// itself, or (`rejoining`) the node's coming back.
    #[error("{}", describe_rolling(.done, *.node, .verb, *.rejoining, .error))]
    Rolling { done: Vec<String>, node: usize, verb: Verb, rejoining: bool, error: ClusterError },
}

fn describe_rolling(
    done: &[String],
    node: usize,
    verb: &Verb,
    rejoining: bool,
    error: &ClusterError,
) -> String {
    let done = done.join("; ");
    let error = describe_error(error);
    if !rejoining {
        return format!("{done}; then {error}");
    }
    let past = if matches!(verb, Verb::Upgrade { .. }) { "upgraded" } else { "restarted" };
    format!("{done}; zk{node} {past} but {error}")
}

/// An environment's refusal reads differently from a failure in the history.
fn describe_error(err: &ClusterError) -> String {
    match err {
        ClusterError::Unsupported(_) => format!("refused, not supported here: {err}"),
        _ => err.to_string(),
    }
}

/// Repairs at a fault's end that failed.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.problems.iter().map(describe_error).collect::<Vec<_>>().join("; "))]
pub struct UndoError {
    pub problems: Vec<ClusterError>,
}

/// Steps of healing everything that failed; every other step was still tried.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct HealError {
    pub problems: Vec<HealProblem>,
}

/// One step of healing everything, and how it failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {}", describe_error(.error))]
pub struct HealProblem {
    pub step: HealStep,
    #[source]
    pub error: ClusterError,
}

/// A step of healing everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealStep {
    /// Removing every network rule and qdisc.
    Network,
    Unpause(Member),
    ClockReset(Member),
    Free(Member),
    Start(Member),
}

impl std::fmt::Display for HealStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let member = |member: &Member| match member {
            Member::Node(node) => format!("zk{node}"),
            Member::Gateway => "the gateway".to_owned(),
        };
        match self {
            HealStep::Network => f.write_str("heal"),
            HealStep::Unpause(m) => write!(f, "unpause {}", member(m)),
            HealStep::ClockReset(m) => write!(f, "put the clock of {} right", member(m)),
            HealStep::Free(m) => write!(f, "free the disk of {}", member(m)),
            HealStep::Start(m) => write!(f, "start {}", member(m)),
        }
    }
}

/// The schedule as it runs: plan plus records, persisted after each change.
struct Book {
    path: PathBuf,
    seed: u64,
    plan: Vec<PlannedFault>,
    records: Vec<FaultRecord>,
}

impl Book {
    fn save(&self) -> Result<(), ScheduleError> {
        let file = NemesisScheduleFile {
            schedule: Schedule { seed: self.seed, faults: self.records.clone() },
            plan: Some(self.plan.clone()),
        };
        file.write(&self.path).map_err(ScheduleError::Write)
    }
}

/// Runs a schedule against a cluster.
pub struct Nemesis {
    cluster: Cluster,
    history: Recorder,
    consumers: Vec<ConsumerHandle>,
    book: Arc<Mutex<Book>>,
    /// The run's start, the zero of every offset.
    started: Instant,
    rest: bool,
}

impl Nemesis {
    pub fn new(
        cluster: Cluster,
        history: Recorder,
        consumers: Vec<ConsumerHandle>,
        seed: u64,
        plan: Vec<PlannedFault>,
        schedule_path: PathBuf,
        rest: bool,
    ) -> Result<Self, ScheduleError> {
        let book = Book { path: schedule_path, seed, plan, records: Vec::new() };
        book.save()?;
        // The history writer's clock is the run's clock.
        let started = Instant::now() - Duration::from_secs_f64(history.now());
        Ok(Self { cluster, history, consumers, book: Arc::new(Mutex::new(book)), started, rest })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The records so far (for the summary).
    pub fn records(&self) -> Vec<FaultRecord> {
        self.book().records.clone()
    }

    fn event(&self, op: &str, phase: Phase, target: &str) -> Event {
        let mut e = Event::new(self.history.now(), "nemesis", op, phase);
        e.target = Some(target.to_string());
        e
    }

    fn log(&self, event: Event) {
        if let Err(err) = self.history.record(&event) {
            tracing::error!("cannot write the history: {err}");
        }
    }

    /// Sleeps until `offset` seconds into the run; false if told to stop first.
    async fn sleep_until(&self, offset: f64, stop: &mut watch::Receiver<bool>) -> bool {
        let deadline = self.started + Duration::from_secs_f64(offset.max(0.0));
        let finished = tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => true,
            _ = stop.wait_for(|s| *s) => false,
        };
        finished && !*stop.borrow()
    }

    /// Plays the schedule until its end or until `stop` turns true. Faults are
    /// applied one at a time; each is undone before the next starts.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let count = self.book().plan.len();
        for index in 0..count {
            let planned = self.book().plan[index].clone();
            if !self.sleep_until(planned.at, &mut stop).await {
                return;
            }
            let applied = self.apply(index, &planned).await;
            if let Some(undo) = applied {
                // Stay applied for the planned duration, even when told to stop: the
                // stop path undoes everything itself, so leave early but undo here.
                let end = planned.at + planned.duration;
                match (link_verb(&planned), &undo) {
                    (Some(verb), Undo::Repair { members, .. }) => {
                        self.hold_link(&planned, &verb, members, end, &mut stop).await
                    }
                    _ => {
                        let _ = self.sleep_until(end, &mut stop).await;
                    }
                }
                self.undo(index, &planned, undo).await;
            }
        }
    }

    /// Holds a link fault (loss, slow, delay) until `end`, applying it again to a
    /// member whose container restarted meanwhile: the rule lived in the old
    /// container's network namespace. Each re-application is an `info` line.
    async fn hold_link(
        &self,
        planned: &PlannedFault,
        verb: &Verb,
        members: &[Member],
        end: f64,
        stop: &mut watch::Receiver<bool>,
    ) {
        let started_at =
            |member| async move { self.cluster.started_at(member).await.ok().flatten() };
        let mut started = Vec::new();
        for &member in members {
            started.push(started_at(member).await);
        }
        loop {
            let next = (self.started.elapsed().as_secs_f64() + LINK_WATCH_EVERY_S).min(end);
            if !self.sleep_until(next, stop).await || next >= end {
                return;
            }
            for (member, before) in members.iter().zip(started.iter_mut()) {
                let now = started_at(*member).await;
                if now.is_none() || now == *before {
                    continue;
                }
                *before = now;
                let name = planned.fault.name();
                let mut e = self.event(name, Phase::Info, &member.to_string());
                match self.cluster.inflict(*member, verb).await {
                    Ok(outcome) => {
                        tracing::info!("fault {name}: {member} restarted; applied again");
                        e.detail = Some(format!(
                            "{member} restarted in the window; applied again: {outcome}"
                        ));
                    }
                    Err(err) => {
                        tracing::warn!(
                            "fault {name}: {member} restarted; cannot apply again: {err}"
                        );
                        e.error = Some(format!(
                            "{member} restarted in the window; cannot apply again: {err}"
                        ));
                    }
                }
                self.log(e);
            }
        }
    }

    /// Applies one fault; returns what must be undone, or None if nothing is left
    /// applied (it failed, or it was instantaneous and already finished).
    async fn apply(&self, index: usize, planned: &PlannedFault) -> Option<Undo> {
        let name = planned.fault.name();
        let target_name = match planned.shape {
            Some(shape) => shape.name().to_string(),
            None => planned.target.name().to_string(),
        };
        self.log(self.event(name, Phase::Invoke, &target_name));
        let start = self.history.now();
        let result = match self.resolve(planned).await {
            Ok(resolved) => {
                let what = resolved.describe(&self.consumer_names());
                match self.act(planned, &resolved).await {
                    // A window fault finds its victims as it goes.
                    Ok((detail, undo, Some(hit))) => {
                        let what = hit.describe(&self.consumer_names());
                        Ok((hit, what, detail, undo))
                    }
                    Ok((detail, undo, None)) => Ok((resolved, what, detail, undo)),
                    Err(err) => Err((Some(what), err)),
                }
            }
            Err(err) => Err((None, err)),
        };
        let mut book = self.book();
        match result {
            Ok((resolved, what, detail, undo)) => {
                tracing::info!("fault {name} on {what}: {detail}");
                book.plan[index].resolved = Some(resolved);
                book.records.push(FaultRecord {
                    fault: name.into(),
                    target: target_name.clone(),
                    resolved: Some(what.clone()),
                    start,
                    applied_at: Some(self.history.now()),
                    end: if undo.is_none() { Some(self.history.now()) } else { None },
                    applied: true,
                    error: None,
                });
                if let Some(progress) = self.history.progress() {
                    progress.fault_started(&format!("{name} {what}"));
                    if undo.is_none() {
                        progress.fault_ended(&format!("{name} {what}"));
                    }
                }
                let mut e = self.event(name, Phase::Ok, &what);
                e.detail = Some(detail);
                self.log(e);
                if let Err(err) = book.save() {
                    tracing::error!("{err}");
                }
                undo
            }
            Err((what, err)) => {
                tracing::warn!("fault {name} ({target_name}) not applied: {err}");
                book.records.push(FaultRecord {
                    fault: name.into(),
                    target: target_name.clone(),
                    resolved: what.clone(),
                    start,
                    applied_at: None,
                    end: Some(self.history.now()),
                    applied: false,
                    error: Some(err.to_string()),
                });
                let mut e = self.event(name, Phase::Fail, what.as_deref().unwrap_or(&target_name));
                e.error = Some(err.to_string());
                self.log(e);
                if let Err(err) = book.save() {
                    tracing::error!("{err}");
                }
                None
            }
        }
    }

    fn consumer_names(&self) -> Vec<String> {
        self.consumers.iter().map(|c| c.name.clone()).collect()
    }

    async fn leader(&self) -> Result<usize, FaultError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            match self.cluster.leader().await {
                Ok(Some(leader)) => return Ok(leader),
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(None) => return Err(FaultError::NoLeader { waited: LEADER_WAIT }),
                Err(err) => return Err(FaultError::LeaderUnknown(err)),
            }
        }
    }

    /// Turns a planned target into concrete nodes, groups or a consumer.
    async fn resolve(&self, p: &PlannedFault) -> Result<Resolved, FaultError> {
        if let Some(resolved) = &p.resolved {
            return Ok(resolved.clone());
        }
        let n = p.draw.len();
        let nodes_only = |nodes: Vec<usize>| Resolved { nodes, groups: Vec::new(), consumer: None };
        if p.fault == FaultKind::Partition {
            let shape = p.shape.unwrap_or(PartitionShape::IsolateOne);
            let leader = if shape == PartitionShape::IsolateLeader {
                Some(self.leader().await?)
            } else {
                None
            };
            let groups = partition_groups(shape, &p.draw, leader);
            let nodes = sorted(&p.draw);
            return Ok(Resolved { nodes, groups, consumer: None });
        }
        match p.target {
            Target::Random => Ok(nodes_only(vec![p.draw[0]])),
            Target::Leader => Ok(nodes_only(vec![self.leader().await?])),
            Target::Follower => {
                let leader = self.leader().await?;
                let followers: Vec<usize> =
                    sorted(&p.draw).into_iter().filter(|&x| x != leader).collect();
                if followers.is_empty() {
                    return Err(FaultError::NoFollower);
                }
                Ok(nodes_only(vec![followers[(p.pick % followers.len() as u64) as usize]]))
            }
            Target::Minority => Ok(nodes_only(sorted(&p.draw[..(n.saturating_sub(1) / 2).max(1)]))),
            Target::Majority => Ok(nodes_only(sorted(&p.draw[..n / 2 + 1]))),
            // A rolling fault walks the nodes in the plan's drawn order, which the
            // seed decides (and a replay repeats); other faults hit the set.
            Target::All
                if matches!(p.fault, FaultKind::RollingRestart | FaultKind::RollingUpgrade) =>
            {
                Ok(nodes_only(p.draw.clone()))
            }
            Target::All => Ok(nodes_only(sorted(&p.draw))),
            Target::Rest => Ok(nodes_only(Vec::new())),
            Target::Consumer => {
                if self.consumers.is_empty() {
                    return Err(FaultError::NoConsumer);
                }
                let c = (p.pick % self.consumers.len() as u64) as usize;
                Ok(Resolved { nodes: Vec::new(), groups: Vec::new(), consumer: Some(c) })
            }
        }
    }

    /// Does the fault; returns a description, what to undo at its end and, for a
    /// fault that finds its targets as it goes (a window), what it hit.
    async fn act(
        &self,
        p: &PlannedFault,
        r: &Resolved,
    ) -> Result<(String, Option<Undo>, Option<Resolved>), FaultError> {
        let (detail, undo) = match p.fault.execution(&knobs(p)) {
            Execution::Each(verb) => {
                let members = if p.target == Target::Rest {
                    vec![Member::Gateway]
                } else {
                    r.nodes.iter().map(|&node| Member::Node(node)).collect()
                };
                self.each(&verb, members).await?
            }
            Execution::Rolling(verb) => (self.rolling(&verb, &r.nodes).await?, None),
            Execution::Partition => {
                let partitioned =
                    self.cluster.partition(&r.groups).await.map_err(FaultError::Cluster)?;
                (
                    partitioned.to_string(),
                    Some(Undo::Repair { repair: Repair::Heal, members: Vec::new() }),
                )
            }
            Execution::Consumer => {
                // The consumer undoes it itself (re-registers, or acks after the stall).
                (self.order_consumer(p, r).await?, Some(Undo::Nothing))
            }
            Execution::Window(window) => {
                let follower = r.nodes.first().copied();
                let strike = self
                    .cluster
                    .strike_window(&window, follower, p.pick)
                    .await
                    .map_err(FaultError::Cluster)?;
                let hit =
                    Resolved { nodes: strike.killed.clone(), groups: Vec::new(), consumer: None };
                let undo = Undo::BringBack { down: strike.down.clone() };
                return Ok((strike.to_string(), Some(undo), Some(hit)));
            }
        };
        Ok((detail, undo, None))
    }

    /// The verb on every member; it is tried on all of them before a failure counts.
    async fn each(
        &self,
        verb: &Verb,
        members: Vec<Member>,
    ) -> Result<(String, Option<Undo>), FaultError> {
        let mut results = Vec::new();
        for &member in &members {
            results.push(self.cluster.inflict(member, verb).await);
        }
        let done: Result<Vec<String>, ClusterError> =
            results.into_iter().map(|result| result.map(|outcome| outcome.to_string())).collect();
        let repair = verb.repair();
        match done {
            Ok(done) => {
                Ok((done.join("; "), repair.map(|repair| Undo::Repair { repair, members })))
            }
            Err(err) if repair == Some(Repair::Heal) => {
                Err(self.heal_after_failure(FaultError::Cluster(err)))
            }
            Err(err) => Err(FaultError::Cluster(err)),
        }
    }

    /// The verb node by node, each serving again before the next.
    async fn rolling(&self, verb: &Verb, nodes: &[usize]) -> Result<String, FaultError> {
        let mut steps = Vec::new();
        for &node in nodes {
            let failed = |rejoining: bool, steps: &[String], error| FaultError::Rolling {
                done: steps.to_vec(),
                node,
                verb: verb.clone(),
                rejoining,
                error,
            };
            self.cluster
                .inflict(Member::Node(node), verb)
                .await
                .map_err(|e| failed(false, &steps, e))?;
            let t0 = Instant::now();
            self.cluster
                .wait_serving(node, REJOIN_WAIT)
                .await
                .map_err(|e| failed(true, &steps, e))?;
            let took = t0.elapsed().as_secs_f64();
            steps.push(match verb {
                Verb::Upgrade { to_version } => {
                    format!("zk{node} -> {to_version}, rejoined in {took:.1}s")
                }
                _ => format!("zk{node} back in {took:.1}s"),
            });
        }
        Ok(steps.join("; "))
    }

    /// Sends a consumer its crash or zombie order; returns what it said it did.
    async fn order_consumer(&self, p: &PlannedFault, r: &Resolved) -> Result<String, FaultError> {
        let index = r.consumer.ok_or(FaultError::ConsumerUnresolved)?;
        let handle = &self.consumers[index];
        let consumer = || handle.name.clone();
        let duration = Duration::from_secs_f64(p.duration);
        let (done, answer) = oneshot::channel();
        let order = if p.fault == FaultKind::ConsumerCrash {
            ConsumerOrder::Crash { down: duration, done }
        } else {
            ConsumerOrder::Zombie { stall: duration, done }
        };
        handle
            .orders
            .send(order)
            .await
            .map_err(|_| FaultError::ConsumerStopped { consumer: consumer() })?;
        tokio::time::timeout(CONSUMER_ORDER_WAIT, answer)
            .await
            .map_err(|_| FaultError::OrderTimeout {
                consumer: consumer(),
                waited: CONSUMER_ORDER_WAIT,
            })?
            .map_err(|_| FaultError::ConsumerGone { consumer: consumer() })
    }

    /// A network fault that failed halfway may have left rules on some nodes.
    fn heal_after_failure(&self, error: FaultError) -> FaultError {
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            if let Err(err) = cluster.heal().await {
                tracing::warn!("heal after a failed network fault: {err}");
            }
        });
        error
    }

    async fn undo(&self, index: usize, p: &PlannedFault, undo: Undo) {
        let resolved = self.book().plan[index].resolved.clone();
        let target = resolved.map(|r| r.describe(&self.consumer_names())).unwrap_or_default();
        let undone = undo.apply(&self.cluster).await;
        if let Some(progress) = self.history.progress() {
            progress.fault_ended(&format!("{} {target}", p.fault.name()));
        }
        let now = self.history.now();
        let mut e =
            self.event("undo", if undone.is_ok() { Phase::Ok } else { Phase::Fail }, &target);
        e.detail = Some(format!("end of {} ({})", p.fault.name(), undo.describe()));
        if let Err(problems) = &undone {
            e.error = Some(problems.to_string());
        }
        self.log(e);
        let mut book = self.book();
        if let Some(record) =
            book.records.iter_mut().rev().find(|r| r.fault == p.fault.name() && r.end.is_none())
        {
            record.end = Some(now);
            if let Err(problems) = &undone {
                record.error = Some(format!("undo: {problems}"));
            }
        }
        if let Err(err) = book.save() {
            tracing::error!("{err}");
        }
    }

    /// Undoes every fault the harness can inject, whatever the schedule did: used at
    /// the end of the run, on Ctrl-C and after an internal error. Idempotent.
    pub async fn heal_everything(&self) -> Result<(), HealError> {
        let healed = heal_everything(&self.cluster, self.rest).await;
        let now = self.history.now();
        {
            let mut book = self.book();
            for record in book.records.iter_mut().filter(|r| r.applied && r.end.is_none()) {
                record.end = Some(now);
            }
            if let Err(err) = book.save() {
                tracing::error!("{err}");
            }
        }
        let mut e =
            self.event("heal-all", if healed.is_ok() { Phase::Ok } else { Phase::Fail }, "all");
        if let Err(problems) = &healed {
            e.error = Some(problems.to_string());
        }
        self.log(e);
        healed
    }
}

/// Removes every network rule, unpauses every node and the gateway, puts their
/// clocks right, frees their disks and starts them. Every step is tried; the
/// error lists those that failed.
pub async fn heal_everything(cluster: &Cluster, rest: bool) -> Result<(), HealError> {
    let mut problems = Vec::new();
    if let Err(error) = cluster.heal().await {
        problems.push(HealProblem { step: HealStep::Network, error });
    }
    let mut members: Vec<Member> = cluster.node_ids().into_iter().map(Member::Node).collect();
    if rest {
        members.push(Member::Gateway);
    }
    let spec = cluster.spec();
    for member in members {
        let node = matches!(member, Member::Node(_));
        let steps = [
            Some((HealStep::Unpause(member), Verb::Unpause)),
            (node && spec.clock_faults).then_some((
                HealStep::ClockReset(member),
                Verb::ClockSkew { offset: ClockOffset::ZERO },
            )),
            (node && spec.data_limit_mb.is_some())
                .then_some((HealStep::Free(member), Verb::DiskFree)),
            Some((HealStep::Start(member), Verb::Start)),
        ];
        for (step, verb) in steps.into_iter().flatten() {
            if let Err(error) = cluster.inflict(member, &verb).await {
                problems.push(HealProblem { step, error });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(HealError { problems })
    }
}

/// How often a link fault's members are looked at for a restart.
const LINK_WATCH_EVERY_S: f64 = 1.0;

fn knobs(p: &PlannedFault) -> Knobs {
    Knobs {
        percent: p.percent,
        kbit: p.kbit,
        delay: p.delay_ms.map(Duration::from_millis),
        to_version: p.to_version.clone(),
        within: p.within_ms.map(Duration::from_millis),
        stale: p.stale_ms.map(Duration::from_millis),
        rounds: p.rounds,
        offset: p.offset,
    }
}

/// The verb of a fault that lives in its member's processes or network
/// namespace (loss, slow, delay, a clock step), which a restart of the member
/// undoes behind the nemesis's back; None for every other fault.
fn link_verb(p: &PlannedFault) -> Option<Verb> {
    match p.fault.execution(&knobs(p)) {
        Execution::Each(
            verb @ (Verb::Loss { .. }
            | Verb::Slow { .. }
            | Verb::Delay { .. }
            | Verb::ClockSkew { .. }),
        ) => Some(verb),
        _ => None,
    }
}

/// What ends an applied fault.
#[derive(Debug, Clone)]
enum Undo {
    /// The verb's repair on the members it hit.
    Repair { repair: Repair, members: Vec<Member> },
    /// A window fault's nodes, started again in the order they went down.
    BringBack { down: Vec<usize> },
    /// The target undoes it itself (consumer faults).
    Nothing,
}

impl Undo {
    /// How history names the undo (`end of kill (started again)`).
    fn describe(&self) -> &'static str {
        let gateway = |members: &[Member]| members == [Member::Gateway];
        match self {
            Undo::Repair { repair: Repair::Start, members } if gateway(members) => {
                "gateway started again"
            }
            Undo::Repair { repair: Repair::Start, .. } => "started again",
            Undo::Repair { repair: Repair::Unpause, members } if gateway(members) => {
                "gateway unpaused"
            }
            Undo::Repair { repair: Repair::Unpause, .. } => "unpaused",
            Undo::Repair { repair: Repair::Heal, .. } => "network healed",
            Undo::Repair { repair: Repair::Free, .. } => "disk freed",
            Undo::Repair { repair: Repair::ClockReset, .. } => "clock put right",
            Undo::BringBack { .. } => "started again in the order they went down",
            Undo::Nothing => "the consumer recovers by itself",
        }
    }

    /// Repairs every member, trying all of them before reporting the failures.
    async fn apply(&self, cluster: &Cluster) -> Result<(), UndoError> {
        if let Undo::BringBack { down } = self {
            return match cluster.bring_back(down).await {
                Ok(back) => {
                    tracing::info!("{back}");
                    Ok(())
                }
                Err(err) => Err(UndoError { problems: vec![err] }),
            };
        }
        let Undo::Repair { repair, members } = self else {
            return Ok(());
        };
        let mut results = Vec::new();
        match repair.verb() {
            Some(verb) => {
                for &member in members {
                    results.push(cluster.inflict(member, &verb).await.map(drop));
                }
            }
            None => results.push(cluster.heal().await.map(drop)),
        }
        let problems: Vec<ClusterError> = results.into_iter().filter_map(Result::err).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(UndoError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::schedule::tests::scenario;
    use crate::chaos::schedule::{load_replay, plan};

    #[test]
    fn the_schedule_file_round_trips_and_reads_as_a_plain_schedule() {
        let s = scenario();
        let dir = tempfile::tempdir().unwrap();
        let run_dir = crate::rundir::RunDir::new(dir.path());
        let path = run_dir.schedule_path();
        let mut p = plan(&s, 1, s.duration);
        p[0].resolved = Some(Resolved { nodes: vec![3], groups: vec![], consumer: None });
        let book = Book {
            path: path.clone(),
            seed: 1,
            plan: p.clone(),
            records: vec![FaultRecord {
                fault: "kill".into(),
                target: "leader".into(),
                resolved: Some("zk3".into()),
                start: 5.01,
                applied_at: Some(5.4),
                end: Some(13.2),
                applied: true,
                error: None,
            }],
        };
        book.save().unwrap();
        let (seed, replay) = load_replay(&path).unwrap();
        assert_eq!((seed, &replay), (1, &p));
        let plain = run_dir.read_schedule().unwrap().unwrap();
        assert_eq!(plain.faults.len(), 1);
    }

    #[test]
    fn errors_and_undos_keep_the_words_the_history_has_always_recorded() {
        let timeout = || ClusterError::Timeout { waited_for: "zk2".into() };
        let rolling = |done: Vec<String>, rejoining| FaultError::Rolling {
            done,
            node: 2,
            verb: Verb::Upgrade { to_version: "3.9.3".into() },
            rejoining,
            error: timeout(),
        };
        assert_eq!(rolling(vec![], false).to_string(), "; then timed out waiting for zk2");
        assert_eq!(
            rolling(vec!["zk1 -> 3.9.3, rejoined in 2.0s".into()], true).to_string(),
            "zk1 -> 3.9.3, rejoined in 2.0s; zk2 upgraded but timed out waiting for zk2"
        );
        let refused = FaultError::Cluster(ClusterError::Unsupported("no netem".into()));
        assert_eq!(
            refused.to_string(),
            "refused, not supported here: not supported here: no netem"
        );
        let healed = HealError {
            problems: vec![
                HealProblem { step: HealStep::Network, error: timeout() },
                HealProblem { step: HealStep::Start(Member::Gateway), error: timeout() },
            ],
        };
        assert_eq!(
            healed.to_string(),
            "heal: timed out waiting for zk2; start the gateway: timed out waiting for zk2"
        );
        let gateway = Undo::Repair { repair: Repair::Start, members: vec![Member::Gateway] };
        assert_eq!(gateway.describe(), "gateway started again");
        let nodes = Undo::Repair { repair: Repair::Unpause, members: vec![Member::Node(1)] };
        assert_eq!(nodes.describe(), "unpaused");
    }
}
