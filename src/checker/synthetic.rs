//! Realistic synthetic runs, for the checker's benchmark, the report tests and the
//! example report: a seeded discrete-event simulation of producers and consumers on
//! a queue that behaves like zkmq (redelivery on failed or unknown acks, unknown
//! outcomes while a fault makes the ensemble unavailable), with optional injected
//! bugs (lost, duplicated, corrupt messages) that the checker must find.
//!
//! It writes the same files a chaos run writes, through the same types and writers
//! ([`crate::history`], [`crate::rundir`]), so a test of the reports reads exactly
//! what a real run leaves.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::history::{Event, Phase};
use crate::rundir::{
    FaultRecord, MemberView, MemberViews, RunDir, RunDirError, RunMeta, Sample, Schedule,
    ScheduleFile, ZnodeView,
};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticOptions {
    /// Stop after about this many operations (invoke + outcome pairs), before the drain.
    pub operations: u64,
    pub producers: usize,
    pub consumers: usize,
    pub seed: u64,
    /// Mean pause between two operations of one process, seconds.
    pub think_s: f64,
    /// One fault every this many seconds (0: none).
    pub fault_every_s: f64,
    /// Injected bugs: messages silently dropped after their produce `ok`.
    pub lose: usize,
    /// Injected bugs: messages put back in the queue after an `ok` ack.
    pub duplicate: usize,
    /// Injected bugs: deliveries whose checksum is wrong.
    pub corrupt: usize,
    /// Injected bugs: znodes the last member lacks in `members.json` (a hole
    /// ZooKeeper left in one member's tree).
    #[serde(default)]
    pub diverge: usize,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        Self {
            operations: 20_000,
            producers: 4,
            // A consumer makes two operations (take, ack) per message.
            consumers: 9,
            seed: 7,
            think_s: 0.02,
            fault_every_s: 12.0,
            lose: 0,
            duplicate: 0,
            corrupt: 0,
            diverge: 0,
        }
    }
}

/// What the simulation did, to compare with what the checker finds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyntheticSummary {
    pub events: u64,
    pub produced_ok: u64,
    pub acked: u64,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub corrupt: Vec<String>,
    pub duration_s: f64,
}

#[derive(Debug, Clone)]
struct Fault {
    kind: &'static str,
    target: String,
    start: f64,
    end: f64,
    /// Until when the ensemble answers nothing (leader elections, quorum loss).
    unavailable_until: f64,
}

#[derive(Debug, Clone)]
enum Op {
    Produce { id: u64 },
    Take,
    Ack { id: u64 },
}

#[derive(Debug)]
struct Process {
    name: String,
    path: &'static str,
    producer: bool,
    pending: Option<(Op, f64)>,
    holding: Option<u64>,
}

fn message_id(n: u64) -> String {
    // Shaped like a real id, unique per run.
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n as u32,
        (n >> 32) as u16,
        n % 4096,
        n % 4093,
        n
    )
}

fn checksum(n: u64) -> u32 {
    crc32fast::hash(&n.to_le_bytes())
}

fn schedule_faults(rng: &mut ChaCha8Rng, every_s: f64, horizon: f64) -> Vec<Fault> {
    let mut faults = Vec::new();
    if every_s <= 0.0 {
        return faults;
    }
    let kinds = ["kill", "partition", "pause", "rest-kill", "kill"];
    let mut t = every_s * 0.5;
    while t < horizon {
        let kind = kinds[rng.random_range(0..kinds.len())];
        let length = rng.random_range(3.0..7.0);
        let (target, unavailable) = match kind {
            "kill" => ("zk1".to_owned(), rng.random_range(0.8..3.5)),
            "partition" => (format!("zk{}", rng.random_range(1..=5)), rng.random_range(0.0..1.5)),
            "pause" => (format!("zk{}", rng.random_range(2..=5)), rng.random_range(0.0..0.6)),
            _ => ("rest".to_owned(), rng.random_range(0.2..1.0)),
        };
        faults.push(Fault {
            kind,
            target,
            start: t,
            end: t + length,
            unavailable_until: t + unavailable,
        });
        t += every_s * rng.random_range(0.7..1.3);
    }
    faults
}

/// Writes a synthetic `history.jsonl` (and, through `on_second`, one depth sample
/// per simulated second). Returns what really happened.
fn simulate(
    options: &SyntheticOptions,
    faults: &[Fault],
    out: &mut dyn Write,
    on_second: &mut dyn FnMut(f64, u64, u64, u64),
) -> std::io::Result<SyntheticSummary> {
    let mut sim = Simulation::new(options, out);
    let mut fault_cursor = 0usize;
    let mut next_second = 0.0f64;
    let mut operations = 0u64;
    let mut t = 0.0;
    while operations < options.operations {
        let Some(Reverse((at, index))) = sim.heap.pop() else { break };
        t = at as f64 / 1e6;
        while next_second <= t {
            let in_flight = sim.processes.iter().filter(|p| p.holding.is_some()).count() as u64;
            on_second(next_second, sim.queue.len() as u64, sim.partial.len() as u64, in_flight);
            next_second += 1.0;
        }
        while fault_cursor < faults.len() && faults[fault_cursor].start <= t {
            sim.begin_fault(&faults[fault_cursor])?;
            fault_cursor += 1;
        }
        let unavailable_until = faults
            .iter()
            .filter(|f| f.start <= t && t < f.unavailable_until)
            .map(|f| f.unavailable_until)
            .reduce(f64::max);
        match sim.processes[index].pending.take() {
            None => sim.invoke(index, t, unavailable_until)?,
            Some((op, invoked)) => {
                operations += 1;
                sim.complete(index, op, invoked, t, unavailable_until.is_some())?;
            }
        }
    }
    // Undo every fault, then drain what is left, as the run loop does.
    for fault in &faults[..fault_cursor] {
        let undo = if fault.kind == "kill" || fault.kind == "rest-kill" { "start" } else { "heal" };
        let mut event = Event::new(fault.end.min(t), "nemesis", undo, Phase::Ok);
        event.target = Some(fault.target.clone());
        sim.write(&event)?;
    }
    let end = sim.drain(t + 0.5)?;
    on_second(end.ceil(), 0, 0, 0);
    sim.summary.events = sim.written;
    sim.summary.duration_s = end + 0.01;
    Ok(sim.summary)
}

/// The simulated queue and its processes, and the history being written.
struct Simulation<'a> {
    options: &'a SyntheticOptions,
    out: &'a mut dyn Write,
    rng: ChaCha8Rng,
    summary: SyntheticSummary,
    processes: Vec<Process>,
    queue: VecDeque<u64>,
    partial: VecDeque<u64>,
    next_id: u64,
    /// When each process acts next (microseconds), earliest first.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    written: u64,
    /// Injected bugs still to inject: lost, duplicated, corrupt.
    to_lose: usize,
    to_duplicate: usize,
    to_corrupt: usize,
}

fn micros(t: f64) -> u64 {
    (t * 1e6) as u64
}

impl<'a> Simulation<'a> {
    fn new(options: &'a SyntheticOptions, out: &'a mut dyn Write) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut processes: Vec<Process> = Vec::new();
        for (count, producer) in [(options.producers, true), (options.consumers, false)] {
            for n in 0..count {
                let path = if n % 2 == 0 { "native" } else { "rest" };
                let role = if producer { "producer" } else { "consumer" };
                processes.push(Process {
                    name: format!("{role}-{path}-{}", n / 2 + 1),
                    path,
                    producer,
                    pending: None,
                    holding: None,
                });
            }
        }
        let mut heap = BinaryHeap::new();
        for index in 0..processes.len() {
            heap.push(Reverse((micros(rng.random_range(0.0..options.think_s)), index)));
        }
        Simulation {
            options,
            out,
            rng,
            summary: SyntheticSummary::default(),
            processes,
            queue: VecDeque::new(),
            partial: VecDeque::new(),
            next_id: 0,
            heap,
            written: 0,
            to_lose: options.lose,
            to_duplicate: options.duplicate,
            to_corrupt: options.corrupt,
        }
    }

    fn write(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut *self.out, event)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    fn begin_fault(&mut self, fault: &Fault) -> std::io::Result<()> {
        let mut event = Event::new(fault.start, "nemesis", fault.kind, Phase::Invoke);
        event.target = Some(fault.target.clone());
        self.write(&event)?;
        event.phase = Phase::Ok;
        event.detail = Some(format!("{} {}", fault.kind, fault.target));
        self.write(&event)
    }

    /// A process starts its next operation; it completes after a latency that a
    /// fault making the ensemble unavailable stretches (up to the 5 s timeout).
    fn invoke(
        &mut self,
        index: usize,
        t: f64,
        unavailable_until: Option<f64>,
    ) -> std::io::Result<()> {
        let process = &self.processes[index];
        let op = if process.producer {
            self.next_id += 1;
            Op::Produce { id: self.next_id }
        } else if let Some(id) = process.holding {
            Op::Ack { id }
        } else {
            Op::Take
        };
        let mut event = Event::new(t, process.name.clone(), "", Phase::Invoke);
        event.path = Some(process.path.into());
        match op {
            Op::Produce { id } => {
                event.op = "produce".into();
                event.msg = Some(message_id(id));
                event.checksum = Some(checksum(id));
            }
            Op::Take => event.op = "take".into(),
            Op::Ack { id } => {
                event.op = "ack".into();
                event.msg = Some(message_id(id));
            }
        }
        let rest = process.path == "rest";
        self.write(&event)?;
        let base = 0.0015 + self.rng.random::<f64>().powi(3) * 0.03;
        let base = if rest { base * 1.8 } else { base };
        let done = match unavailable_until {
            Some(until) => (until + base).min(t + 5.0),
            None => t + base,
        };
        self.processes[index].pending = Some((op, t));
        self.heap.push(Reverse((micros(done), index)));
        Ok(())
    }

    /// A process's operation ends: its outcome, and what it did to the queue.
    fn complete(
        &mut self,
        index: usize,
        op: Op,
        invoked: f64,
        t: f64,
        unavailable: bool,
    ) -> std::io::Result<()> {
        let timed_out = unavailable && t - invoked >= 4.999;
        let roll: f64 = self.rng.random();
        let phase = if timed_out || roll < 0.01 {
            Phase::Info
        } else if roll < 0.015 {
            Phase::Fail
        } else {
            Phase::Ok
        };
        let process = &self.processes[index];
        let mut event = Event::new(t, process.name.clone(), "", phase);
        event.path = Some(process.path.into());
        event.latency_ms = Some((t - invoked) * 1000.0);
        if phase != Phase::Ok {
            event.error = Some(if phase == Phase::Info {
                "connection loss: outcome unknown".into()
            } else {
                "definite: node exists".into()
            });
        }
        match op {
            Op::Produce { id } => self.produced(&mut event, id, phase),
            Op::Take => self.took(&mut event, index, phase),
            Op::Ack { id } => self.acked(&mut event, index, id, phase),
        }
        self.write(&event)?;
        let think = self.rng.random_range(0.0..2.0 * self.options.think_s);
        self.heap.push(Reverse((micros(t + think), index)));
        Ok(())
    }

    fn produced(&mut self, event: &mut Event, id: u64, phase: Phase) {
        event.op = "produce".into();
        event.msg = Some(message_id(id));
        let exists = phase == Phase::Ok || (phase == Phase::Info && self.rng.random_bool(0.5));
        if exists {
            if phase == Phase::Ok && self.to_lose > 0 && self.rng.random_bool(0.05) {
                self.to_lose -= 1;
                self.summary.lost.push(message_id(id));
            } else {
                self.queue.push_back(id);
            }
        }
        if phase == Phase::Ok {
            self.summary.produced_ok += 1;
        }
    }

    fn took(&mut self, event: &mut Event, index: usize, phase: Phase) {
        event.op = "take".into();
        let from_partial = !self.partial.is_empty();
        let source = if from_partial { &mut self.partial } else { &mut self.queue };
        match (phase, source.pop_front()) {
            (Phase::Ok, Some(id)) => {
                event.msg = Some(message_id(id));
                let mut sum = checksum(id);
                if self.to_corrupt > 0 && self.rng.random_bool(0.01) {
                    self.to_corrupt -= 1;
                    sum ^= 0x5a5a;
                    self.summary.corrupt.push(message_id(id));
                }
                event.checksum = Some(sum);
                event.node = Some(format!("message-{id:010}"));
                self.processes[index].holding = Some(id);
            }
            // Taken, but the consumer does not know: the janitor moves it to partial.
            (Phase::Info, Some(id)) => self.partial.push_back(id),
            (_, Some(id)) => source.push_front(id),
            (_, None) => {}
        }
    }

    fn acked(&mut self, event: &mut Event, index: usize, id: u64, phase: Phase) {
        event.op = "ack".into();
        event.msg = Some(message_id(id));
        self.processes[index].holding = None;
        let deleted = phase == Phase::Ok || (phase == Phase::Info && self.rng.random_bool(0.5));
        if deleted {
            self.summary.acked += 1;
            if phase == Phase::Ok && self.to_duplicate > 0 && self.rng.random_bool(0.02) {
                self.to_duplicate -= 1;
                self.summary.duplicated.push(message_id(id));
                self.queue.push_front(id);
            }
        } else {
            self.partial.push_back(id);
        }
    }

    /// The final drain from `t`: what consumers held, then partial, then messages,
    /// each taken and acknowledged. Returns when it ended.
    fn drain(&mut self, mut t: f64) -> std::io::Result<f64> {
        let held: Vec<u64> = self.processes.iter_mut().filter_map(|p| p.holding.take()).collect();
        self.partial.extend(held);
        let drained: Vec<u64> = self.partial.drain(..).chain(self.queue.drain(..)).collect();
        self.write(&Event::new(t, "drain", "drain", Phase::Invoke))?;
        for id in drained {
            for (op, phase) in [
                ("take", Phase::Invoke),
                ("take", Phase::Ok),
                ("ack", Phase::Invoke),
                ("ack", Phase::Ok),
            ] {
                t += 0.0005;
                let mut event = Event::new(t, "drain", op, phase);
                event.path = Some("native".into());
                if op == "ack" || phase == Phase::Ok {
                    event.msg = Some(message_id(id));
                }
                if op == "take" && phase == Phase::Ok {
                    event.checksum = Some(checksum(id));
                }
                if phase == Phase::Ok {
                    event.latency_ms = Some(2.0);
                }
                self.write(&event)?;
            }
            self.summary.acked += 1;
        }
        let mut done = Event::new(t + 0.01, "drain", "drain", Phase::Ok);
        done.detail = Some("messages and partial empty".into());
        self.write(&done)?;
        Ok(t)
    }
}

/// A generous bound on the simulated duration (an operation costs its think time plus
/// its latency), so faults are scheduled over the whole run.
fn horizon(options: &SyntheticOptions) -> f64 {
    let per_process =
        options.operations as f64 / (options.producers + options.consumers).max(1) as f64;
    per_process * (options.think_s + 0.02) * 2.0
}

/// Writes only a synthetic `history.jsonl` (for the checker's benchmark).
pub fn write_history(path: &Path, options: &SyntheticOptions) -> std::io::Result<SyntheticSummary> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0xfa17);
    let horizon = horizon(options);
    let faults = schedule_faults(&mut rng, options.fault_every_s, horizon);
    let mut out = BufWriter::new(File::create(path)?);
    let summary = simulate(options, &faults, &mut out, &mut |_, _, _, _| {})?;
    out.flush()?;
    Ok(summary)
}

/// Writes a complete synthetic run directory: `history.jsonl`, `run.json`,
/// `schedule.json`, `samples.jsonl` and `scenario.toml`, shaped like a 5-node run
/// with the REST gateway.
pub fn write_run_dir(
    dir: &Path,
    options: &SyntheticOptions,
) -> Result<SyntheticSummary, RunDirError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| RunDirError::Create { path: dir.to_owned(), source })?;
    let run_dir = RunDir::new(dir);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0xfa17);
    let horizon = horizon(options);
    let faults = schedule_faults(&mut rng, options.fault_every_s, horizon);

    // The history is written in bulk, not through the run loop's writer: that one
    // flushes every line, which a simulation of millions of lines cannot afford.
    let history_path = run_dir.history_path();
    let history_error = |source| RunDirError::Write { path: history_path.clone(), source };
    let mut history = BufWriter::new(File::create(&history_path).map_err(history_error)?);
    let mut depth = Vec::new();
    let summary =
        simulate(options, &faults, &mut history, &mut |t, messages, partial, in_flight| {
            depth.push(Sample::Depth { t, messages, partial, in_flight });
        })
        .map_err(history_error)?;
    history.flush().map_err(history_error)?;

    let mut samples = run_dir.create_samples()?;
    let mut depth = depth.into_iter().peekable();
    let mut second = 0.0;
    while second <= summary.duration_s.ceil() {
        while let Some(sample) =
            depth.next_if(|s| matches!(s, Sample::Depth { t, .. } if *t <= second))
        {
            samples.append(&sample)?;
        }
        let mut leader = 1;
        for fault in faults.iter().filter(|f| f.kind == "kill" && f.start <= second) {
            if second >= fault.unavailable_until {
                leader = 2;
            }
            if second >= fault.end {
                leader = if fault.target == "zk1" { 2 } else { leader };
            }
        }
        for node in 1..=5 {
            let name = format!("zk{node}");
            let active =
                faults.iter().find(|f| f.target == name && f.start <= second && second < f.end);
            let state = match active.map(|f| f.kind) {
                Some("kill") => "down".to_owned(),
                Some("pause") => "paused".to_owned(),
                Some("partition") => "partitioned".to_owned(),
                _ if active.is_none()
                    && faults.iter().any(|f| {
                        f.kind == "kill" && f.start <= second && second < f.unavailable_until
                    }) =>
                {
                    "not-serving".to_owned()
                }
                _ if node == leader => "leader".to_owned(),
                _ => "follower".to_owned(),
            };
            samples.append(&Sample::Node {
                t: second,
                node: name,
                state,
                version: "3.8.0".into(),
            })?;
        }
        let rest_down =
            faults.iter().any(|f| f.target == "rest" && f.start <= second && second < f.end);
        samples.append(&Sample::Node {
            t: second,
            node: "rest".into(),
            state: if rest_down { "down" } else { "up" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })?;
        second += 1.0;
    }
    samples.flush()?;

    let schedule = Schedule {
        seed: options.seed,
        faults: faults
            .iter()
            .map(|f| FaultRecord {
                fault: f.kind.to_owned(),
                target: if f.kind == "kill" { "leader".into() } else { "random".into() },
                resolved: Some(f.target.clone()),
                start: f.start,
                applied_at: Some(f.start),
                end: Some(f.end.min(summary.duration_s)),
                applied: true,
                error: None,
            })
            .filter(|f| f.start < summary.duration_s)
            .collect(),
    };
    // Nothing can replay a simulation: no plan.
    run_dir.write_schedule(&ScheduleFile::<()> { schedule, plan: None })?;
    let meta = RunMeta {
        scenario: "synthetic".into(),
        seed: options.seed,
        started_at: "2026-01-01T00:00:00Z".into(),
        duration_s: summary.duration_s,
        nodes: 5,
        zk_version: "3.8.0".into(),
        algorithm: if options.lose + options.duplicate + options.corrupt + options.diverge > 0 {
            "legacy"
        } else {
            "safe"
        }
        .into(),
        zkmq_version: env!("CARGO_PKG_VERSION").into(),
        replay_command: format!(
            "zkmq chaos run {} --seed {} --replay {}",
            run_dir.scenario_path().display(),
            options.seed,
            run_dir.schedule_path().display()
        ),
    };
    run_dir.write_run_meta(&meta)?;
    run_dir.write_members(&member_views(options, summary.duration_s))?;
    run_dir.write_scenario(&format!(
        "# A synthetic run (no cluster): written by zkmq::checker::synthetic.\n\
             name = \"synthetic\"\nseed = {seed}\nduration = \"{duration}s\"\n\n\
             [expect]\nvalid = {valid}\n",
        seed = options.seed,
        duration = summary.duration_s.round(),
        valid = options.lose + options.duplicate + options.corrupt + options.diverge == 0
    ))?;
    Ok(summary)
}

/// Five members holding the drained queue's tree, the last one without the
/// `diverge` waiting messages the others hold.
fn member_views(options: &SyntheticOptions, end: f64) -> MemberViews {
    let znode = |path: String, czxid: u64| ZnodeView {
        path,
        czxid: format!("{czxid:#x}"),
        version: 0,
        crc: 0,
        len: 0,
        ephemeral: false,
    };
    let tree: Vec<ZnodeView> = ["/", "/consumers", "/messages", "/partial"]
        .iter()
        .enumerate()
        .map(|(i, path)| znode((*path).to_owned(), 0x1_0000_0001 + i as u64))
        .collect();
    let holes: Vec<ZnodeView> = (0..options.diverge)
        .map(|i| znode(format!("/messages/message-{i:010}"), 0x3_0000_0001 + i as u64))
        .collect();
    let members = (1..=5)
        .map(|node| {
            let mut znodes = tree.clone();
            if node < 5 {
                znodes.extend(holes.iter().cloned());
            }
            znodes.sort_by(|a, b| a.path.cmp(&b.path));
            MemberView {
                node: format!("zk{node}"),
                mode: if node == 1 { "leader" } else { "follower" }.into(),
                container: "running".into(),
                zxid: "0x300000100".into(),
                error: None,
                znodes: Some(znodes),
            }
        })
        .collect();
    MemberViews {
        root: "/zkmq-chaos/synthetic/queue".into(),
        t: end,
        readings: 1,
        waited_s: 0.0,
        members,
    }
}
