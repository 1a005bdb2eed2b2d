//! The workload: producers and consumers on each access path, recording every
//! operation in the history before it starts (`invoke`) and when it ends (`ok`,
//! `fail` when it definitely did not happen, `info` when its outcome is unknown),
//! plus a sampler of queue depth and node states.
//!
//! The history is the evidence the checker judges, so the rules are strict: an
//! invoke is written before the operation is issued (a late invoke could make a
//! legitimate redelivery look like a duplicate past ack), and an unknown outcome is
//! never written as `fail`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::nemesis::{ConsumerHandle, ConsumerOrder};
use super::recorder::Recorder;
use crate::cluster::{Cluster, NodeMode};
use crate::history::{Event, Phase};
use crate::queue::{
    self, Access, Consumer, Delivery, MessageId, Producer, QueueConfig, QueueError, Store,
};
use crate::rundir::{RunDir, Sample};

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
    /// Messages per native consumer transaction (1: `take`, else `ack_and_take_batch`).
    pub take_batch: usize,
    /// Seeds the payloads, so a seed fixes the bytes produced too.
    pub seed: u64,
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
        for plan in &config.paths {
            for i in 1..=plan.producers {
                worker += 1;
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
                let name = format!("consumer-{}-{i}", plan.path);
                let (orders, inbox) = mpsc::channel(4);
                consumers.push(ConsumerHandle { name: name.clone(), orders });
                let ctx = Worker {
                    name,
                    path: plan.path,
                    access: plan.access.clone(),
                    history: history.clone(),
                    counters: counters.clone(),
                    config: config.clone(),
                    rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(worker)),
                };
                if config.take_batch > 1 && plan.path == "native" {
                    tasks.push(tokio::spawn(ctx.consume_batches(stop.clone(), inbox)));
                } else {
                    tasks.push(tokio::spawn(ctx.consume(stop.clone(), inbox)));
                }
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

    fn payload(&mut self) -> Vec<u8> {
        let len = self.rng.random_range(self.config.payload_min..=self.config.payload_max);
        (0..len).map(|_| self.rng.random_range(b'a'..=b'z')).collect()
    }

    /// The bound on any single queue call: the library retries an unknown outcome
    /// for `retry_budget` with every store call bounded by `op_timeout`; this only
    /// catches a call that forgot its own bound.
    fn call_bound(&self) -> Duration {
        self.config.queue.retry_budget + self.config.queue.op_timeout * 2 + TAKE_WAIT
    }

    async fn produce(mut self, mut stop: watch::Receiver<bool>) {
        let mut producer = None;
        let mut next = tokio::time::Instant::now();
        let batch = self.config.send_batch.max(1);
        while !*stop.borrow() {
            if let Some(interval) = self.config.send_interval {
                // A batch goes when its last message is due: the rate stays the same.
                next += interval * batch as u32;
                // Falling behind (the queue was down) does not cause a burst after.
                let now = tokio::time::Instant::now();
                if next < now {
                    next = now;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            let p = match producer.as_mut() {
                Some(p) => p,
                None => match Producer::new(self.access.clone(), self.config.queue.clone()).await {
                    Ok(p) => producer.insert(p),
                    Err(err) => {
                        tracing::debug!("{}: cannot connect yet: {err}", self.name);
                        tokio::time::sleep(ERROR_BACKOFF).await;
                        continue;
                    }
                },
            };
            let messages: Vec<(MessageId, Vec<u8>)> =
                (0..batch).map(|_| (MessageId::generate(), self.payload())).collect();
            let checksums: Vec<u32> =
                messages.iter().map(|(_, payload)| queue::checksum(payload)).collect();
            // Every send of a batch is invoked before the batch is sent.
            let started: Vec<Instant> = messages
                .iter()
                .zip(&checksums)
                .map(|((id, _), checksum)| self.invoke("produce", Some(id), Some(*checksum)))
                .collect();
            let send = async {
                if let [(id, payload)] = messages.as_slice() {
                    vec![p.send_with_id(id, payload).await]
                } else {
                    let borrowed: Vec<(MessageId, &[u8])> =
                        messages.iter().map(|(id, payload)| (*id, payload.as_slice())).collect();
                    p.send_batch(&borrowed).await
                }
            };
            let outcomes: Vec<Outcome> = match tokio::time::timeout(self.call_bound(), send).await {
                Ok(results) => results
                    .into_iter()
                    .map(|result| self.produce_outcome(Outcome::of(result)))
                    .collect(),
                Err(_) => {
                    // The call may still complete in the background of a dropped
                    // future; its producer is not trusted again.
                    producer = None;
                    messages.iter().map(|_| self.produce_outcome(self.no_answer())).collect()
                }
            };
            let mut failed = false;
            for ((((id, _), checksum), started), outcome) in
                messages.iter().zip(checksums).zip(started).zip(outcomes)
            {
                failed |= !matches!(outcome, Outcome::Ok);
                let mut e = self.complete("produce", started, Some(id), outcome);
                e.checksum = Some(checksum);
                self.record(e);
            }
            if failed {
                // A fresh session next time: a producer whose session expired may not
                // renew it by itself (the legacy one does not), and reconnecting after
                // a failure costs nothing worth saving.
                if let Some(old) = producer.take() {
                    tokio::spawn(old.close());
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }

    /// A send's history outcome, counted.
    fn produce_outcome(&self, outcome: Outcome) -> Outcome {
        let c = &self.counters;
        outcome.counted([&c.produce_ok, &c.produce_fail, &c.produce_info])
    }

    /// The outcome of a call that ran past [`Worker::call_bound`].
    fn no_answer(&self) -> Outcome {
        Outcome::Info(format!("no answer within {:?}", self.call_bound()))
    }

    async fn register(&self, stop: &watch::Receiver<bool>) -> Option<Consumer> {
        while !*stop.borrow() {
            match tokio::time::timeout(
                self.call_bound(),
                Consumer::register(self.access.clone(), self.config.queue.clone()),
            )
            .await
            {
                Ok(Ok(consumer)) => {
                    tracing::debug!("{} registered as {}", self.name, consumer.id());
                    return Some(consumer);
                }
                Ok(Err(err)) => tracing::debug!("{}: cannot register yet: {err}", self.name),
                Err(_) => tracing::debug!(
                    "{}: registering took longer than {:?}",
                    self.name,
                    self.call_bound()
                ),
            }
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
        None
    }

    /// Sleeps, but wakes early when told to stop; true if slept the whole time.
    async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    async fn consume(
        self,
        mut stop: watch::Receiver<bool>,
        mut orders: mpsc::Receiver<ConsumerOrder>,
    ) {
        let mut consumer: Option<Consumer> = None;
        // A zombie order waits for the next message taken.
        let mut zombie: Option<(Duration, tokio::sync::oneshot::Sender<String>)> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            // Orders that apply between operations.
            while let Ok(order) = orders.try_recv() {
                match order {
                    ConsumerOrder::Crash { down, done } => {
                        let what = match consumer.take() {
                            Some(c) => {
                                let id = c.id().to_string();
                                c.crash();
                                format!("{} (session {id}) crashed between operations", self.name)
                            }
                            None => format!("{} was not registered; stays down", self.name),
                        };
                        let _ = done.send(format!("{what}; down for {down:?}"));
                        Self::pause(&mut stop, down).await;
                    }
                    ConsumerOrder::Zombie { stall, done } => zombie = Some((stall, done)),
                }
            }
            if *stop.borrow() {
                break;
            }
            let c = match consumer.as_mut() {
                Some(c) => c,
                None => match self.register(&stop).await {
                    Some(c) => consumer.insert(c),
                    None => break,
                },
            };
            let started = self.invoke("take", None, None);
            let delivery = match tokio::time::timeout(self.call_bound(), c.take(TAKE_WAIT)).await {
                Ok(Ok(Some(delivery))) => delivery,
                Ok(Ok(None)) => {
                    self.record(self.complete(
                        "take",
                        started,
                        None,
                        Outcome::Fail("empty".into()),
                    ));
                    continue;
                }
                Ok(Err(err)) => {
                    self.record(self.complete("take", started, None, Outcome::of_error(&err)));
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    continue;
                }
                Err(_) => {
                    self.record(self.complete("take", started, None, self.no_answer()));
                    // Whatever it holds now comes back through the janitor.
                    if let Some(c) = consumer.take() {
                        c.crash();
                    }
                    continue;
                }
            };
            self.counters.take_ok.fetch_add(1, Ordering::Relaxed);
            let mut e = self.complete("take", started, Some(&delivery.id), Outcome::Ok);
            e.checksum = Some(delivery.checksum);
            e.node = Some(delivery.source.clone());
            self.record(e);

            // "Process" the message; a zombie stalls instead, past its session.
            // A stalled task alone would keep heartbeating (the client runs on), so
            // the zombie is what a frozen process looks like to ZooKeeper: its session
            // goes silent (dropped unclosed) and expires, the janitor takes the
            // message back; then it wakes, reconnects under a new session as the
            // queue does after expiry, and acks the old delivery: that ack must be
            // refused (TakenBack), or the message would be delivered twice.
            if let Some((stall, done)) = zombie.take() {
                let c = consumer.take().expect("a consumer that just took a message");
                let session = c.id().to_string();
                c.crash();
                let _ = done.send(format!(
                    "{} (session {session}) stalls {stall:?} holding {}, then acks it",
                    self.name, delivery.id
                ));
                Self::pause(&mut stop, stall).await;
                match self.register(&stop).await {
                    Some(mut woken) => {
                        self.ack(&mut woken, &delivery).await;
                        consumer = Some(woken);
                    }
                    None => break,
                }
                continue;
            } else if !self.config.processing_time.is_zero() {
                tokio::time::sleep(self.config.processing_time).await;
            }

            // A crash order while holding a message: the most interesting moment.
            if let Ok(order) = orders.try_recv() {
                match order {
                    ConsumerOrder::Crash { down, done } => {
                        let c = consumer.take().expect("a consumer that just took a message");
                        let id = c.id().to_string();
                        c.crash();
                        let _ = done.send(format!(
                            "{} (session {id}) crashed holding {}; down for {down:?}",
                            self.name, delivery.id
                        ));
                        Self::pause(&mut stop, down).await;
                        continue;
                    }
                    ConsumerOrder::Zombie { stall, done } => zombie = Some((stall, done)),
                }
            }
            let c = consumer.as_mut().expect("a consumer that just took a message");
            self.ack(c, &delivery).await;
        }
        if let Some(c) = consumer {
            c.close().await;
        }
    }

    async fn ack(&self, c: &mut Consumer, delivery: &Delivery) {
        let started = self.invoke("ack", Some(&delivery.id), None);
        let outcome = match tokio::time::timeout(self.call_bound(), c.ack(delivery)).await {
            Ok(result) => Outcome::of(result),
            Err(_) => self.no_answer(),
        };
        let outcome = self.ack_outcome(outcome);
        self.record(self.complete("ack", started, Some(&delivery.id), outcome));
    }

    /// An ack's history outcome, counted.
    fn ack_outcome(&self, outcome: Outcome) -> Outcome {
        let c = &self.counters;
        outcome.counted([&c.ack_ok, &c.ack_fail, &c.ack_info])
    }

    /// A native consumer that takes `take_batch` messages per transaction and
    /// acks them in the next one. Its acks and its take run as one transaction, so
    /// the history has the acks' invokes and the take's invoke before the call,
    /// then the acks' outcomes and one take `ok` per message delivered. Nemesis
    /// orders reach it while it holds a batch.
    async fn consume_batches(
        self,
        mut stop: watch::Receiver<bool>,
        mut orders: mpsc::Receiver<ConsumerOrder>,
    ) {
        let max = self.config.take_batch;
        let mut consumer: Option<Consumer> = None;
        let mut held: Vec<Delivery> = Vec::new();
        let mut zombie: Option<(Duration, tokio::sync::oneshot::Sender<String>)> = None;
        while !*stop.borrow() {
            while let Ok(order) = orders.try_recv() {
                match order {
                    ConsumerOrder::Crash { down, done } => {
                        let what = match consumer.take() {
                            Some(c) => {
                                let id = c.id().to_string();
                                c.crash();
                                format!(
                                    "{} (session {id}) crashed holding {} messages",
                                    self.name,
                                    held.len()
                                )
                            }
                            None => format!("{} was not registered; stays down", self.name),
                        };
                        held.clear();
                        let _ = done.send(format!("{what}; down for {down:?}"));
                        Self::pause(&mut stop, down).await;
                    }
                    ConsumerOrder::Zombie { stall, done } => zombie = Some((stall, done)),
                }
            }
            if *stop.borrow() {
                break;
            }
            // A zombie stalls holding its batch past its session, then acks it:
            // every ack must be refused (see `consume`).
            if let (Some(c), false) = (consumer.as_ref(), held.is_empty()) {
                if let Some((stall, done)) = zombie.take() {
                    let session = c.id().to_string();
                    consumer.take().expect("checked above").crash();
                    let _ = done.send(format!(
                        "{} (session {session}) stalls {stall:?} holding {} messages, then acks them",
                        self.name,
                        held.len()
                    ));
                    Self::pause(&mut stop, stall).await;
                    let Some(mut woken) = self.register(&stop).await else { break };
                    for delivery in held.drain(..) {
                        self.ack(&mut woken, &delivery).await;
                    }
                    consumer = Some(woken);
                    continue;
                }
            }
            let c = match consumer.as_mut() {
                Some(c) => c,
                None => match self.register(&stop).await {
                    Some(c) => consumer.insert(c),
                    None => break,
                },
            };
            let ack_started: Vec<Instant> =
                held.iter().map(|delivery| self.invoke("ack", Some(&delivery.id), None)).collect();
            let take_started = self.invoke("take", None, None);
            let call = c.ack_and_take_batch(&held, max, TAKE_WAIT);
            let (acks, taken) = match tokio::time::timeout(self.call_bound(), call).await {
                Ok((acks, taken)) => (
                    acks.into_iter().map(|ack| self.ack_outcome(Outcome::of(ack))).collect(),
                    Some(taken),
                ),
                Err(_) => {
                    let acks: Vec<Outcome> =
                        held.iter().map(|_| self.ack_outcome(self.no_answer())).collect();
                    // Whatever it holds now comes back through the janitor.
                    if let Some(c) = consumer.take() {
                        c.crash();
                    }
                    (acks, None)
                }
            };
            for ((delivery, started), outcome) in held.drain(..).zip(ack_started).zip(acks) {
                self.record(self.complete("ack", started, Some(&delivery.id), outcome));
            }
            match taken {
                None => self.record(self.complete("take", take_started, None, self.no_answer())),
                Some(Ok(batch)) if batch.is_empty() => {
                    let outcome = Outcome::Fail("empty".into());
                    self.record(self.complete("take", take_started, None, outcome));
                }
                Some(Ok(batch)) => {
                    for delivery in &batch {
                        self.counters.take_ok.fetch_add(1, Ordering::Relaxed);
                        let mut e =
                            self.complete("take", take_started, Some(&delivery.id), Outcome::Ok);
                        e.checksum = Some(delivery.checksum);
                        e.node = Some(delivery.source.clone());
                        self.record(e);
                    }
                    held = batch;
                    if !self.config.processing_time.is_zero() {
                        tokio::time::sleep(self.config.processing_time).await;
                    }
                }
                Some(Err(err)) => {
                    self.record(self.complete("take", take_started, None, Outcome::of_error(&err)));
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
        }
        if let Some(mut c) = consumer {
            for delivery in &held {
                self.ack(&mut c, delivery).await;
            }
            c.close().await;
        }
    }
}

/// Writes `samples.jsonl`: queue depth and node states about once a second.
pub async fn sample(
    cluster: Cluster,
    access: Access,
    queue_config: QueueConfig,
    history: Recorder,
    counters: Arc<Counters>,
    run_dir: RunDir,
    mut stop: watch::Receiver<bool>,
) {
    // Without samples the run is still checkable: only the depth and node plots
    // stay empty.
    let mut out = match run_dir.create_samples() {
        Ok(out) => out,
        Err(err) => {
            tracing::error!("{err}");
            return;
        }
    };
    let mut store: Option<Arc<dyn Store>> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let mut samples = Vec::new();
        // After its session expired (a paused or partitioned node, a quorum loss)
        // the store answers nothing again: the depth plot would stop for good.
        if store.as_ref().is_some_and(|s| s.is_dead()) {
            store = None;
        }
        if store.is_none() {
            if let Ok(Ok(s)) = tokio::time::timeout(
                queue_config.op_timeout,
                queue::connect(&access, &queue_config),
            )
            .await
            {
                store = Some(s);
            }
        }
        if let Some(s) = &store {
            match tokio::time::timeout(
                queue_config.op_timeout * 2,
                queue::stats(s.as_ref(), &queue_config),
            )
            .await
            {
                Ok(Ok(stats)) => {
                    counters
                        .depth
                        .store(stats.messages + stats.partial + stats.in_flight, Ordering::Relaxed);
                    samples.push(Sample::Depth {
                        t: history.now(),
                        messages: stats.messages,
                        partial: stats.partial,
                        in_flight: stats.in_flight,
                    });
                }
                Ok(Err(err)) => tracing::debug!("sampler: queue stats: {err}"),
                Err(_) => tracing::debug!("sampler: queue stats timed out"),
            }
        }
        if let Ok(Ok(statuses)) =
            tokio::time::timeout(Duration::from_secs(5), cluster.status()).await
        {
            let t = history.now();
            for status in statuses {
                let state = match (status.container.as_str(), status.mode) {
                    ("paused", _) => "paused",
                    (_, NodeMode::Leader) => "leader",
                    (_, NodeMode::Follower) => "follower",
                    (_, NodeMode::Observer) => "observer",
                    (_, NodeMode::Standalone) => "standalone",
                    (_, NodeMode::NotServing) => "not-serving",
                    (_, NodeMode::Down) => "down",
                };
                samples.push(Sample::Node {
                    t,
                    node: format!("zk{}", status.node),
                    state: state.into(),
                    version: status.version,
                });
            }
        }
        if let Some(url) = cluster.rest_url() {
            samples.push(Sample::Node {
                t: history.now(),
                node: "rest".into(),
                state: gateway_state(&url).await.into(),
                version: env!("CARGO_PKG_VERSION").into(),
            });
        }
        let written = samples.iter().try_for_each(|sample| out.append(sample));
        if let Err(err) = written.and_then(|()| out.flush()) {
            tracing::error!("{err}");
        }
    }
}

/// The gateway's row in the node timeline, from its health endpoint: `serving`,
/// `not-serving` (it answers, but not healthy, or too slowly: paused) or `down`
/// (nothing listens: killed or restarting).
async fn gateway_state(url: &str) -> &'static str {
    let client = reqwest::Client::new();
    let health = client.get(format!("{url}/zkmq/v1/health")).timeout(Duration::from_secs(2));
    match health.send().await {
        Ok(answer) if answer.status().is_success() => "serving",
        Ok(_) => "not-serving",
        Err(err) if err.is_timeout() => "not-serving",
        Err(_) => "down",
    }
}
