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

use tokio::sync::{mpsc, oneshot, watch};

use super::recorder::Recorder;
use super::scenario::{FaultKind, PartitionShape, Target};
use super::schedule::{
    partition_groups, sorted, NemesisScheduleFile, PlannedFault, Resolved, ScheduleError,
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

/// Orders the nemesis gives a workload consumer.
#[derive(Debug)]
pub enum ConsumerOrder {
    /// Drop the session without closing, stay dead for `down`, then register anew.
    Crash { down: Duration, done: oneshot::Sender<String> },
    /// Hold the next message taken for `stall` (past the session timeout), then ack.
    Zombie { stall: Duration, done: oneshot::Sender<String> },
}

/// A workload consumer the nemesis can aim at.
#[derive(Clone)]
pub struct ConsumerHandle {
    pub name: String,
    pub orders: mpsc::Sender<ConsumerOrder>,
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
                let _ = self.sleep_until(planned.at + planned.duration, &mut stop).await;
                self.undo(index, &planned, undo).await;
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
                    Ok((detail, undo)) => Ok((resolved, what, detail, undo)),
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
                    error: Some(err.clone()),
                });
                let mut e = self.event(name, Phase::Fail, what.as_deref().unwrap_or(&target_name));
                e.error = Some(err);
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

    async fn leader(&self) -> Result<usize, String> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            match self.cluster.leader().await {
                Ok(Some(leader)) => return Ok(leader),
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(None) => return Err(format!("no leader within {LEADER_WAIT:?}")),
                Err(err) => return Err(format!("cannot find the leader: {err}")),
            }
        }
    }

    /// Turns a planned target into concrete nodes, groups or a consumer.
    async fn resolve(&self, p: &PlannedFault) -> Result<Resolved, String> {
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
                    return Err("no follower to aim at".into());
                }
                Ok(nodes_only(vec![followers[(p.pick % followers.len() as u64) as usize]]))
            }
            Target::Minority => Ok(nodes_only(sorted(&p.draw[..(n.saturating_sub(1) / 2).max(1)]))),
            Target::Majority => Ok(nodes_only(sorted(&p.draw[..n / 2 + 1]))),
            Target::All => Ok(nodes_only(sorted(&p.draw))),
            Target::Rest => Ok(nodes_only(Vec::new())),
            Target::Consumer => {
                if self.consumers.is_empty() {
                    return Err("no consumer to aim at".into());
                }
                let c = (p.pick % self.consumers.len() as u64) as usize;
                Ok(Resolved { nodes: Vec::new(), groups: Vec::new(), consumer: Some(c) })
            }
        }
    }

    /// Does the fault; returns a description and what to undo at its end.
    async fn act(&self, p: &PlannedFault, r: &Resolved) -> Result<(String, Option<Undo>), String> {
        let c = &self.cluster;
        let each = |results: Vec<Result<String, ClusterError>>| -> Result<String, String> {
            let mut done = Vec::new();
            for result in results {
                done.push(result.map_err(|e| describe_error(&e))?);
            }
            Ok(done.join("; "))
        };
        let duration = Duration::from_secs_f64(p.duration);
        let nodes = r.nodes.clone();
        match p.fault {
            FaultKind::Kill | FaultKind::QuorumLoss => {
                let mut results = Vec::new();
                for &node in &nodes {
                    results.push(c.kill(node).await);
                }
                // Whatever was killed must be started again, even if a later kill failed.
                let detail = each(results);
                Ok((detail?, Some(Undo::Start(nodes))))
            }
            FaultKind::Stop => {
                let mut results = Vec::new();
                for &node in &nodes {
                    results.push(c.stop(node).await);
                }
                Ok((each(results)?, Some(Undo::Start(nodes))))
            }
            FaultKind::Pause => {
                let mut results = Vec::new();
                for &node in &nodes {
                    results.push(c.pause(node).await);
                }
                Ok((each(results)?, Some(Undo::Unpause(nodes))))
            }
            FaultKind::Restart => {
                let mut results = Vec::new();
                for &node in &nodes {
                    results.push(c.restart(node).await);
                }
                Ok((each(results)?, None))
            }
            FaultKind::Wipe => {
                let mut results = Vec::new();
                for &node in &nodes {
                    results.push(c.wipe(node).await);
                }
                Ok((each(results)?, None))
            }
            FaultKind::Partition => {
                let detail = c.partition(&r.groups).await.map_err(|e| describe_error(&e))?;
                Ok((detail, Some(Undo::Heal)))
            }
            FaultKind::Loss => {
                let percent = p.percent.unwrap_or(20);
                let mut results = Vec::new();
                for &node in &nodes {
                    results.push(c.loss(node, percent).await);
                }
                Ok((each(results).map_err(|e| self.heal_after_failure(e))?, Some(Undo::Heal)))
            }
            FaultKind::Slow => {
                let kbit = p.kbit.unwrap_or(256);
                let mut results = Vec::new();
                for &node in &nodes {
                    results.push(c.slow(node, kbit).await);
                }
                Ok((each(results).map_err(|e| self.heal_after_failure(e))?, Some(Undo::Heal)))
            }
            FaultKind::Delay => {
                let delay = Duration::from_millis(p.delay_ms.unwrap_or(200));
                let mut results = Vec::new();
                for &node in &nodes {
                    results.push(c.delay(node, delay).await);
                }
                Ok((each(results).map_err(|e| self.heal_after_failure(e))?, Some(Undo::Heal)))
            }
            FaultKind::RestKill => {
                Ok((c.rest_kill().await.map_err(|e| describe_error(&e))?, Some(Undo::RestStart)))
            }
            FaultKind::RestPause => {
                Ok((c.rest_pause().await.map_err(|e| describe_error(&e))?, Some(Undo::RestUnpause)))
            }
            FaultKind::RestRestart => {
                Ok((c.rest_restart().await.map_err(|e| describe_error(&e))?, None))
            }
            FaultKind::ConsumerCrash | FaultKind::ConsumerZombie => {
                let index = r.consumer.ok_or("no consumer resolved")?;
                let handle = &self.consumers[index];
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
                    .map_err(|_| format!("{} has stopped", handle.name))?;
                let detail = tokio::time::timeout(CONSUMER_ORDER_WAIT, answer)
                    .await
                    .map_err(|_| {
                        format!(
                            "{} did not take the order within {CONSUMER_ORDER_WAIT:?}",
                            handle.name
                        )
                    })?
                    .map_err(|_| format!("{} stopped before taking the order", handle.name))?;
                // The consumer undoes it itself (re-registers, or acks after the stall).
                Ok((detail, Some(Undo::Nothing)))
            }
            FaultKind::RollingRestart => {
                let mut steps = Vec::new();
                for &node in &nodes {
                    c.restart(node).await.map_err(|e| {
                        format!("{}; then {}", steps.join("; "), describe_error(&e))
                    })?;
                    let t0 = Instant::now();
                    c.wait_serving(node, REJOIN_WAIT).await.map_err(|e| {
                        format!(
                            "{}; zk{node} restarted but {}",
                            steps.join("; "),
                            describe_error(&e)
                        )
                    })?;
                    steps.push(format!("zk{node} back in {:.1}s", t0.elapsed().as_secs_f64()));
                }
                Ok((steps.join("; "), None))
            }
            FaultKind::RollingUpgrade => {
                let version = p.to_version.clone().unwrap_or_else(|| "3.9.3".into());
                let mut steps = Vec::new();
                for &node in &nodes {
                    c.upgrade(node, &version).await.map_err(|e| {
                        format!("{}; then {}", steps.join("; "), describe_error(&e))
                    })?;
                    let t0 = Instant::now();
                    c.wait_serving(node, REJOIN_WAIT).await.map_err(|e| {
                        format!(
                            "{}; zk{node} upgraded but {}",
                            steps.join("; "),
                            describe_error(&e)
                        )
                    })?;
                    steps.push(format!(
                        "zk{node} -> {version}, rejoined in {:.1}s",
                        t0.elapsed().as_secs_f64()
                    ));
                }
                Ok((steps.join("; "), None))
            }
        }
    }

    /// A network fault that failed halfway may have left rules on some nodes.
    fn heal_after_failure(&self, error: String) -> String {
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            if let Err(err) = cluster.heal().await {
                tracing::warn!("heal after a failed network fault: {err}");
            }
        });
        error
    }

    async fn undo(&self, index: usize, p: &PlannedFault, undo: Undo) {
        let c = &self.cluster;
        let resolved = self.book().plan[index].resolved.clone();
        let target = resolved.map(|r| r.describe(&self.consumer_names())).unwrap_or_default();
        let mut problems = Vec::new();
        match &undo {
            Undo::Start(nodes) => {
                for &node in nodes {
                    if let Err(err) = c.start(node).await {
                        problems.push(describe_error(&err));
                    }
                }
            }
            Undo::Unpause(nodes) => {
                for &node in nodes {
                    if let Err(err) = c.unpause(node).await {
                        problems.push(describe_error(&err));
                    }
                }
            }
            Undo::Heal => {
                if let Err(err) = c.heal().await {
                    problems.push(describe_error(&err));
                }
            }
            Undo::RestStart => {
                if let Err(err) = c.rest_start().await {
                    problems.push(describe_error(&err));
                }
            }
            Undo::RestUnpause => {
                if let Err(err) = c.rest_unpause().await {
                    problems.push(describe_error(&err));
                }
            }
            Undo::Nothing => {}
        }
        if let Some(progress) = self.history.progress() {
            progress.fault_ended(&format!("{} {target}", p.fault.name()));
        }
        let now = self.history.now();
        let mut e =
            self.event("undo", if problems.is_empty() { Phase::Ok } else { Phase::Fail }, &target);
        e.detail = Some(format!("end of {} ({})", p.fault.name(), undo.describe()));
        if !problems.is_empty() {
            e.error = Some(problems.join("; "));
        }
        self.log(e);
        let mut book = self.book();
        if let Some(record) =
            book.records.iter_mut().rev().find(|r| r.fault == p.fault.name() && r.end.is_none())
        {
            record.end = Some(now);
            if !problems.is_empty() {
                record.error = Some(format!("undo: {}", problems.join("; ")));
            }
        }
        if let Err(err) = book.save() {
            tracing::error!("{err}");
        }
    }

    /// Undoes every fault the harness can inject, whatever the schedule did: used at
    /// the end of the run, on Ctrl-C and after an internal error. Idempotent.
    pub async fn heal_everything(&self) -> Result<(), String> {
        let problems = heal_everything(&self.cluster, self.rest).await;
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
        let mut e = self.event(
            "heal-all",
            if problems.is_empty() { Phase::Ok } else { Phase::Fail },
            "all",
        );
        if !problems.is_empty() {
            e.error = Some(problems.join("; "));
        }
        self.log(e);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Removes every network rule, unpauses and starts every node and the gateway.
pub async fn heal_everything(cluster: &Cluster, rest: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(err) = cluster.heal().await {
        problems.push(format!("heal: {}", describe_error(&err)));
    }
    for node in cluster.node_ids() {
        if let Err(err) = cluster.unpause(node).await {
            problems.push(format!("unpause zk{node}: {}", describe_error(&err)));
        }
        if let Err(err) = cluster.start(node).await {
            problems.push(format!("start zk{node}: {}", describe_error(&err)));
        }
    }
    if rest {
        if let Err(err) = cluster.rest_unpause().await {
            problems.push(format!("unpause the gateway: {}", describe_error(&err)));
        }
        if let Err(err) = cluster.rest_start().await {
            problems.push(format!("start the gateway: {}", describe_error(&err)));
        }
    }
    problems
}

fn describe_error(err: &ClusterError) -> String {
    match err {
        ClusterError::Unsupported(_) => format!("refused, not supported here: {err}"),
        _ => err.to_string(),
    }
}

/// What ends an applied fault.
#[derive(Debug, Clone)]
enum Undo {
    Start(Vec<usize>),
    Unpause(Vec<usize>),
    Heal,
    RestStart,
    RestUnpause,
    /// The target undoes it itself (consumer faults).
    Nothing,
}

impl Undo {
    fn describe(&self) -> &'static str {
        match self {
            Undo::Start(_) => "started again",
            Undo::Unpause(_) => "unpaused",
            Undo::Heal => "network healed",
            Undo::RestStart => "gateway started again",
            Undo::RestUnpause => "gateway unpaused",
            Undo::Nothing => "the consumer recovers by itself",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::chaos::scenario::{parse_scenario, Scenario};
    use crate::chaos::schedule::{load_replay, plan};

    fn scenario() -> Scenario {
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
}
