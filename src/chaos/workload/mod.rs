//! The workload: producers and consumers on each access path, recording every
//! operation in the history before it starts (`invoke`) and when it ends (`ok`,
//! `fail` when it definitely did not happen, `info` when its outcome is unknown).
//! The producers are in `producer`, the consumers (one loop, single or batch takes)
//! in `consumer`, and the channel through which the nemesis orders a consumer to
//! crash or turn zombie ([`ConsumerOrder`], [`ConsumerHandle`]) in `orders`.
//!
//! The history is the evidence the checker judges, so the rules are strict: an
//! invoke is written before the operation is issued (a late invoke could make a
//! legitimate redelivery look like a duplicate past ack), and an unknown outcome is
//! never written as `fail`.

mod consumer;
mod orders;
mod producer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::recorder::Recorder;
use super::scenario::RestProtocol;
use crate::history::{Event, Phase};
use crate::queue::{Access, MessageId, QueueConfig, QueueError};
use consumer::TakeMode;
pub use orders::{ConsumerHandle, ConsumerOrder};

/// How long one take waits for a message: bounds how late a consumer notices the
/// stop signal or a nemesis order.
const TAKE_WAIT: Duration = Duration::from_secs(1);
/// Pause after an operation failed for a reason other than an empty queue, so a
/// down ensemble is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(250);

/// Who does what, over which path.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    pub access: Access,
    /// `native` or `rest`, written on every history line.
    pub path: &'static str,
    pub producers: usize,
    pub consumers: usize,
}

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub paths: Vec<WorkerPlan>,
    pub queue: QueueConfig,
    /// Pause between two sends of one producer; None: as fast as possible.
    pub send_interval: Option<Duration>,
    pub payload_min: usize,
    pub payload_max: usize,
    pub processing_time: Duration,
    /// Messages per producer call (1: `send_with_id`, else `send_batch`).
    pub send_batch: usize,
    /// Messages per consumer call (1: `take`, else `ack_and_take_batch`).
    pub take_batch: usize,
    /// Seeds the payloads, so a seed fixes the bytes produced too.
    pub seed: u64,
    /// Which REST workers go through the gateway's `multi` extension.
    pub rest_protocol: RestProtocol,
}

/// Live counts for the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    pub produce_ok: AtomicU64,
    pub produce_fail: AtomicU64,
    pub produce_info: AtomicU64,
    pub take_ok: AtomicU64,
    pub ack_ok: AtomicU64,
    pub ack_fail: AtomicU64,
    pub ack_info: AtomicU64,
    /// Latest sampled depth of `messages` + `partial` + held.
    pub depth: AtomicU64,
}

impl Counters {
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "produced {} (fail {}, unknown {}), taken {}, acked {} (taken back {}, unknown {}), depth {}",
            g(&self.produce_ok),
            g(&self.produce_fail),
            g(&self.produce_info),
            g(&self.take_ok),
            g(&self.ack_ok),
            g(&self.ack_fail),
            g(&self.ack_info),
            g(&self.depth)
        )
    }
}

/// The running workload.
pub struct Workload {
    tasks: Vec<JoinHandle<()>>,
    /// What the nemesis may aim consumer faults at.
    pub consumers: Vec<ConsumerHandle>,
    pub counters: Arc<Counters>,
}

impl Workload {
    /// Starts every producer and consumer; they run until `stop` turns true.
    pub fn start(
        config: &WorkloadConfig,
        history: &Recorder,
        stop: &watch::Receiver<bool>,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let mut tasks = Vec::new();
        let mut consumers = Vec::new();
        let mut worker = 0u64;
        let mut rest_workers = 0usize;
        // Each worker's own queue configuration: REST workers differ in `rest_multi`.
        let mut config_for = |plan: &WorkerPlan| {
            let mut config = config.clone();
            if matches!(plan.access, Access::Rest { .. }) {
                config.queue.rest_multi = config.rest_protocol.uses_multi(rest_workers);
                rest_workers += 1;
            }
            config
        };
        for plan in &config.paths {
            for i in 1..=plan.producers {
                worker += 1;
                let config = config_for(plan);
                let ctx = Worker {
                    name: format!("producer-{}-{i}", plan.path),
                    path: plan.path,
                    access: plan.access.clone(),
                    history: history.clone(),
                    counters: counters.clone(),
                    config: config.clone(),
                    rng: ChaCha8Rng::seed_from_u64(
                        config.seed.wrapping_add(worker.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    ),
                };
                tasks.push(tokio::spawn(ctx.produce(stop.clone())));
            }
            for i in 1..=plan.consumers {
                worker += 1;
                let config = config_for(plan);
                let name = format!("consumer-{}-{i}", plan.path);
                let (handle, inbox) = ConsumerHandle::open(name.clone());
                consumers.push(handle);
                let ctx = Worker {
                    name,
                    path: plan.path,
                    access: plan.access.clone(),
                    history: history.clone(),
                    counters: counters.clone(),
                    config: config.clone(),
                    rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(worker)),
                };
                let mode = TakeMode::of(config.take_batch);
                tasks.push(tokio::spawn(ctx.consume(mode, stop.clone(), inbox)));
            }
        }
        Self { tasks, consumers, counters }
    }

    /// Waits for every worker to finish its current operation and stop (bounded).
    pub async fn join(self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stuck = 0;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                stuck += 1;
            }
        }
        if stuck == 0 {
            Ok(())
        } else {
            Err(format!("{stuck} workers did not stop within {timeout:?} and were aborted"))
        }
    }
}

/// One producer or consumer task.
struct Worker {
    name: String,
    path: &'static str,
    access: Access,
    history: Recorder,
    counters: Arc<Counters>,
    config: WorkloadConfig,
    rng: ChaCha8Rng,
}

/// The history line of an operation's outcome, from its result.
enum Outcome {
    Ok,
    Fail(String),
    Info(String),
}

impl Outcome {
    fn of(result: Result<(), QueueError>) -> Self {
        match result {
            Ok(()) => Outcome::Ok,
            Err(QueueError::TakenBack) => {
                Outcome::Fail("taken back: the message will be redelivered".into())
            }
            Err(err) => Outcome::of_error(&err),
        }
    }

    /// Adds one to the counter of its kind: `[ok, fail, info]`.
    fn counted(self, [ok, fail, info]: [&AtomicU64; 3]) -> Self {
        let counter = match self {
            Outcome::Ok => ok,
            Outcome::Fail(_) => fail,
            Outcome::Info(_) => info,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self
    }

    fn of_error(err: &QueueError) -> Self {
        if err.is_unknown_outcome() {
            Outcome::Info(err.to_string())
        } else {
            Outcome::Fail(err.to_string())
        }
    }
}

impl Worker {
    fn record(&self, event: Event) {
        if let Err(err) = self.history.record(&event) {
            tracing::error!("{}: cannot write the history: {err}", self.name);
        }
    }

    fn invoke(&self, op: &str, msg: Option<&MessageId>, checksum: Option<u32>) -> Instant {
        let mut e = Event::new(self.history.now(), &self.name, op, Phase::Invoke);
        e.msg = msg.map(ToString::to_string);
        e.checksum = checksum;
        e.path = Some(self.path.into());
        self.record(e);
        Instant::now()
    }

    fn complete(
        &self,
        op: &str,
        started: Instant,
        msg: Option<&MessageId>,
        outcome: Outcome,
    ) -> Event {
        let (phase, error) = match outcome {
            Outcome::Ok => (Phase::Ok, None),
            Outcome::Fail(e) => (Phase::Fail, Some(e)),
            Outcome::Info(e) => (Phase::Info, Some(e)),
        };
        let mut e = Event::new(self.history.now(), &self.name, op, phase);
        e.msg = msg.map(ToString::to_string);
        e.error = error;
        e.path = Some(self.path.into());
        e.latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        e
    }

    /// The bound on any single queue call: the library retries an unknown outcome
    /// for `retry_budget` with every store call bounded by `op_timeout`; this only
    /// catches a call that forgot its own bound.
    fn call_bound(&self) -> Duration {
        self.config.queue.retry_budget + self.config.queue.op_timeout * 2 + TAKE_WAIT
    }

    /// The outcome of a call that ran past [`Worker::call_bound`].
    fn no_answer(&self) -> Outcome {
        Outcome::Info(format!("no answer within {:?}", self.call_bound()))
    }
}
