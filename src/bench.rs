//! Throughput and latency of the queue on a running ensemble. Performance targets
//! live here, never in timed tests.
//!
//! `bench_queue` runs P producers and C consumers (each its own session) on a fresh
//! chroot until N messages were produced, taken and acknowledged, and measures
//! messages per second end to end and the latency from the start of a send to
//! the end of the take that delivered it. `raw_creates` measures the bound the
//! ensemble itself sets: sequential creates, pipelined, on one session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::queue::{
    connect, Access, Consumer, CreateMode, Delivery, MessageId, MultiOp, Producer, QueueConfig,
    QueueError, Store, StoreError,
};

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueBenchConfig {
    pub access: Access,
    /// The queue settings; its chroot is replaced by a fresh one under it.
    pub queue: QueueConfig,
    pub producers: usize,
    pub consumers: usize,
    /// Messages in total (split between the producers).
    pub messages: usize,
    /// Payload bytes per message (at least 8: the send time is carried in it).
    pub size: usize,
    /// Messages per [`Producer::send_batch`] call.
    pub send_batch: usize,
    /// Messages per [`Consumer::ack_and_take_batch`] call (1: one at a time,
    /// through [`Consumer::ack_and_take`]).
    pub take_batch: usize,
    /// Sequential creates for the raw bound (0: skip it).
    pub raw_creates: usize,
    /// Give up when no message was acknowledged for this long.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// Open loop: send this many messages per second in all (split between the
    /// producers) on a fixed schedule, whatever the consumers do, as the
    /// OpenMessaging Benchmark does. Latency then counts from when a message was
    /// due, so a producer that falls behind shows in it. `None`: closed loop, each
    /// producer sends as fast as its sends come back.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Messages put in the queue before the clock starts, so that takes and acks
    /// are measured with the queue this deep. Their latency is not counted.
    #[serde(default)]
    pub prefill: usize,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct QueueBenchResult {
    pub messages: u64,
    pub elapsed_s: f64,
    /// Produced, taken and acknowledged per second.
    pub messages_per_s: f64,
    /// Messages whose latency was measured (not prefilled, taken before the end).
    pub latency_samples: u64,
    /// Send start (open loop: when it was due) to take end, milliseconds.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_p999_ms: f64,
    pub latency_max_ms: f64,
    /// Sends, takes and acks that failed or ended unknown (a clean run has none).
    pub errors: u64,
    /// Messages delivered more than once (before their ack: allowed, counted).
    pub redelivered: u64,
    /// Pipelined sequential creates per second on one session.
    pub raw_creates_per_s: Option<f64>,
    /// One write (a create) waited for before the next, mean milliseconds: what
    /// every step of a protocol that waits for its write pays.
    pub write_latency_ms: Option<f64>,
    /// One read (a get), mean milliseconds.
    pub read_latency_ms: Option<f64>,
    /// Messages waiting when the clock started (`--prefill`).
    pub prefilled: u64,
    /// From the start to the first message taken, seconds: on a deep queue mostly
    /// the consumers' first listing of it, paid once.
    pub first_take_s: f64,
    /// Messages per second from that first take to the end: the rate once the
    /// consumers are under way.
    pub after_first_take_per_s: f64,
    /// How long the prefill took (not timed in the figures above), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill_s: Option<f64>,
    /// Open loop only: what was asked and what the producers did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateHeld>,
}

/// How well the producers of an open-loop run kept to their schedule.
#[derive(Debug, Clone, Serialize)]
pub struct RateHeld {
    /// Messages per second asked for.
    pub asked_per_s: f64,
    /// Messages per second sent: the asked rate, scaled by how much longer the sends
    /// took than their schedule spans.
    pub sent_per_s: f64,
    /// How far the furthest-behind send started after it was due, milliseconds.
    pub max_behind_ms: f64,
    /// Sent at least 99% of the asked rate and never more than a second behind.
    pub held: bool,
}

impl std::fmt::Display for QueueBenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "end to end: {} messages in {:.2} s = {:.0} msgs/s (produce + take + ack)",
            self.messages, self.elapsed_s, self.messages_per_s
        )?;
        if self.latency_samples == 0 {
            writeln!(f, "latency: no timed message was taken (only prefilled ones)")?;
        } else {
            writeln!(
                f,
                "latency ({} -> taken, {} messages): p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms  max {:.2} ms",
                if self.rate.is_some() { "send due" } else { "send start" },
                self.latency_samples,
                self.latency_p50_ms,
                self.latency_p99_ms,
                self.latency_p999_ms,
                self.latency_max_ms
            )?;
        }
        writeln!(f, "errors: {}  redelivered before ack: {}", self.errors, self.redelivered)?;
        writeln!(
            f,
            "first message taken after {:.2} s; from then on {:.0} msgs/s",
            self.first_take_s, self.after_first_take_per_s
        )?;
        if self.prefilled > 0 {
            write!(f, "queue depth at the start: {} messages (prefilled", self.prefilled)?;
            match self.prefill_s {
                Some(secs) => writeln!(
                    f,
                    " in {secs:.1} s, {:.0} msgs/s)",
                    self.prefilled as f64 / secs.max(1e-9)
                )?,
                None => writeln!(f, ")")?,
            }
        }
        if let Some(rate) = &self.rate {
            writeln!(
                f,
                "open loop at {:.0} msgs/s: sent {:.1} msgs/s, at most {:.0} ms behind schedule: rate {}",
                rate.asked_per_s,
                rate.sent_per_s,
                rate.max_behind_ms,
                if rate.held { "held" } else { "NOT held (latency is not that of this rate)" }
            )?;
        }
        if let Some(raw) = self.raw_creates_per_s {
            writeln!(f, "raw bound: {raw:.0} pipelined sequential creates/s on one session")?;
        }
        if let (Some(write), Some(read)) = (self.write_latency_ms, self.read_latency_ms) {
            writeln!(f, "one write waited for: {write:.2} ms; one read: {read:.2} ms")?;
        }
        Ok(())
    }
}

/// Runs the benchmark: producers and consumers on a fresh chroot until every
/// message was produced, taken and acknowledged.
pub async fn bench_queue(config: QueueBenchConfig) -> Result<QueueBenchResult, QueueError> {
    validate(&config)?;
    let mut queue = config.queue.clone();
    queue.chroot =
        format!("{}/bench-{}", queue.chroot, &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let admin = connect(&config.access, &queue).await?;

    let (raw_creates_per_s, write_latency_ms, read_latency_ms) = if config.raw_creates > 0 {
        let dir = format!("{}/raw", queue.chroot);
        let raw = raw_creates(admin.as_ref(), &dir, config.raw_creates).await?;
        let (write, read) = op_latency(admin.as_ref(), &dir, 100).await?;
        (Some(raw), Some(write), Some(read))
    } else {
        (None, None, None)
    };

    let prefill_s = if config.prefill > 0 {
        let started = Instant::now();
        prefill(&config, &queue).await?;
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };
    let total = config.messages as u64;
    let progress = Progress::default();
    // Every consumer registers, and every producer connects, before the clock
    // starts: an open loop's first messages would otherwise wait for sessions to
    // be opened, and that start-up (up to a second) would be counted as the
    // queue's latency. Every consumer registers before any takes: each reads the
    // others to find its stripe of the queue, and one that started alone would
    // walk (and, with a deep queue, list) the whole queue once more when the
    // others arrive.
    let mut registered = Vec::new();
    for _ in 0..config.consumers {
        registered.push(Consumer::register(config.access.clone(), queue.clone()).await?);
    }
    let mut connected = Vec::new();
    for _ in 0..config.producers {
        connected.push(Producer::new(config.access.clone(), queue.clone()).await?);
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for (index, producer) in connected.into_iter().enumerate() {
        let share = config.messages / config.producers
            + usize::from(index < config.messages % config.producers);
        let schedule = config.rate.map(|rate| rate / config.producers as f64);
        let task = produce(producer, share, &config, schedule, started, progress.clone());
        producers.push(tokio::spawn(task));
    }
    let mut consumers = Vec::new();
    for consumer in registered {
        let task = consume(consumer, config.take_batch, total, started, progress.clone());
        consumers.push(tokio::spawn(task));
    }
    if let Err(err) = wait_for_acks(&progress, total, config.stall_timeout).await {
        producers.iter().for_each(|task| task.abort());
        consumers.iter().for_each(|task| task.abort());
        return Err(err);
    }
    let elapsed = match progress.done_us.load(Ordering::Relaxed) {
        0 => started.elapsed(),
        done => Duration::from_micros(done),
    };
    let mut sends = SendTimes::default();
    for task in producers {
        if let Ok(times) = task.await {
            sends.merge(times);
        }
    }
    let mut latencies = latency_histogram();
    let mut redelivered = 0;
    for task in consumers {
        if let Ok((histogram, count)) = task.await {
            let _ = latencies.add(&histogram);
            redelivered += count;
        }
    }
    delete_tree(admin.as_ref(), &queue.chroot).await;
    admin.close().await;
    let first_take_s = progress.first_take_us.load(Ordering::Relaxed) as f64 / 1e6;
    let ms = |micros: u64| micros as f64 / 1000.0;
    Ok(QueueBenchResult {
        messages: total,
        elapsed_s: elapsed.as_secs_f64(),
        messages_per_s: total as f64 / elapsed.as_secs_f64(),
        latency_samples: latencies.len(),
        latency_p50_ms: ms(latencies.value_at_quantile(0.5)),
        latency_p99_ms: ms(latencies.value_at_quantile(0.99)),
        latency_p999_ms: ms(latencies.value_at_quantile(0.999)),
        latency_max_ms: ms(latencies.max()),
        errors: progress.errors.load(Ordering::Relaxed),
        redelivered,
        raw_creates_per_s,
        write_latency_ms,
        read_latency_ms,
        prefilled: config.prefill as u64,
        first_take_s,
        after_first_take_per_s: total as f64 / (elapsed.as_secs_f64() - first_take_s).max(1e-9),
        prefill_s,
        rate: config.rate.map(|asked| sends.held(asked)),
    })
}

fn validate(config: &QueueBenchConfig) -> Result<(), QueueError> {
    if config.size < 8 {
        return Err(QueueError::Config(
            "--size must be at least 8 bytes (the send time rides in the payload)".into(),
        ));
    }
    if config.producers == 0 || config.consumers == 0 {
        return Err(QueueError::Config("need at least one producer and one consumer".into()));
    }
    if config.send_batch == 0 || config.take_batch == 0 {
        return Err(QueueError::Config("--send-batch and --take-batch must be at least 1".into()));
    }
    if config.rate.is_some_and(|rate| !(rate.is_finite() && rate > 0.0)) {
        return Err(QueueError::Config("--rate must be a positive number of messages/s".into()));
    }
    Ok(())
}

/// Counters the workers share with the stall watch.
#[derive(Clone, Default)]
struct Progress {
    acked: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    /// Microseconds from the start to the first take that returned a message
    /// (0: none yet): on a deep queue that is mostly the consumers' first listing.
    first_take_us: Arc<AtomicU64>,
    /// Microseconds from the start to the ack that completed the count (0: not
    /// yet): the run's end to the microsecond, where the loop that waits for it
    /// looks only every 100 ms (a tenth of a second is 3% of a 3-second run).
    done_us: Arc<AtomicU64>,
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// The first 8 bytes of a prefilled message: not timed.
const NOT_TIMED: u64 = u64::MAX;

/// Messages per `send_batch` call of the prefill: the producer pipelines their
/// `multi`s (256 messages each), so a large call keeps several in flight; a
/// million messages would take minutes more at the benchmark's own batch size.
const PREFILL_BATCH: usize = 1024;

/// Fills the queue with `config.prefill` messages before the clock starts, with
/// as many producers as the benchmark has, in pipelined batches.
async fn prefill(config: &QueueBenchConfig, queue: &QueueConfig) -> Result<(), QueueError> {
    let mut tasks = Vec::new();
    for index in 0..config.producers {
        let share = config.prefill / config.producers
            + usize::from(index < config.prefill % config.producers);
        let mut producer = Producer::new(config.access.clone(), queue.clone()).await?;
        let (size, send_batch) = (config.size, config.send_batch.max(PREFILL_BATCH));
        tasks.push(tokio::spawn(async move {
            let mut payload = vec![0u8; size];
            payload[..8].copy_from_slice(&NOT_TIMED.to_be_bytes());
            let mut left = share;
            while left > 0 {
                let batch = left.min(send_batch);
                left -= batch;
                let messages: Vec<_> =
                    (0..batch).map(|_| (MessageId::generate(), payload.as_slice())).collect();
                if let Some(Err(err)) =
                    producer.send_batch(&messages).await.into_iter().find(Result::is_err)
                {
                    producer.close().await;
                    return Err(err);
                }
            }
            producer.close().await;
            Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(|err| QueueError::Unknown(format!("prefill task: {err}")))??;
    }
    Ok(())
}

/// When a producer's sends went out, against when they were due.
#[derive(Debug, Default)]
struct SendTimes {
    first: Option<Duration>,
    /// When the last batch went out (not when it was answered: its latency is
    /// the latency figures' business, not the rate's).
    last_sent: Option<Duration>,
    /// When the last message sent was due (its schedule's span, from 0).
    last_due: Duration,
    max_behind: Duration,
}

impl SendTimes {
    fn merge(&mut self, other: SendTimes) {
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_sent = self.last_sent.max(other.last_sent);
        self.last_due = self.last_due.max(other.last_due);
        self.max_behind = self.max_behind.max(other.max_behind);
    }

    fn held(&self, asked_per_s: f64) -> RateHeld {
        // The schedule spans `last_due`; the sends took from the first to the last.
        // Their ratio is the share of the asked rate that was sent.
        let sent_per_s = match (self.first, self.last_sent) {
            (Some(first), Some(last)) if last > first && !self.last_due.is_zero() => {
                asked_per_s * self.last_due.as_secs_f64() / (last - first).as_secs_f64()
            }
            _ => asked_per_s,
        };
        let max_behind_ms = self.max_behind.as_secs_f64() * 1000.0;
        RateHeld {
            asked_per_s,
            sent_per_s,
            max_behind_ms,
            held: sent_per_s >= 0.99 * asked_per_s && max_behind_ms <= 1000.0,
        }
    }
}

/// One producer's share, in pipelined batches (one write latency per batch). Closed
/// loop: each batch as soon as the last is answered, its send time in the first 8
/// bytes of every payload. Open loop (`per_s`): message `i` is due at `i / per_s`,
/// and its own due time rides in its payload, so that falling behind counts as
/// latency. At each tick (the next message's due time, or the last batch's answer
/// if that came later) the producer sends what is due by then, up to a batch, and
/// never a message before it is due: a batch of 32 sent when its first message was
/// due would send the other 31 early and in a burst.
fn produce(
    mut producer: Producer,
    share: usize,
    config: &QueueBenchConfig,
    per_s: Option<f64>,
    started: Instant,
    progress: Progress,
) -> impl std::future::Future<Output = SendTimes> + Send + 'static {
    let (size, send_batch) = (config.size, config.send_batch);
    async move {
        let mut times = SendTimes::default();
        let mut sent = 0usize;
        while sent < share {
            let mut batch = (share - sent).min(send_batch);
            let dues: Vec<Duration> = match per_s {
                Some(per_s) => {
                    let due_at = |index: usize| Duration::from_secs_f64(index as f64 / per_s);
                    let first = due_at(sent);
                    tokio::time::sleep_until((started + first).into()).await;
                    let now = started.elapsed();
                    // Messages 0..=floor(now * per_s) are due; at least the one waited for.
                    let due_by_now = (now.as_secs_f64() * per_s).floor() as usize + 1;
                    batch = batch.min(due_by_now.saturating_sub(sent).max(1));
                    times.max_behind = times.max_behind.max(now.saturating_sub(first));
                    times.last_due = due_at(sent + batch - 1);
                    (sent..sent + batch).map(due_at).collect()
                }
                None => vec![started.elapsed(); batch],
            };
            times.first.get_or_insert(started.elapsed());
            times.last_sent = Some(started.elapsed());
            sent += batch;
            let payloads: Vec<Vec<u8>> = dues
                .iter()
                .map(|due| {
                    let mut payload = vec![0u8; size];
                    payload[..8].copy_from_slice(&(due.as_nanos() as u64).to_be_bytes());
                    payload
                })
                .collect();
            let messages: Vec<_> = payloads
                .iter()
                .map(|payload| (MessageId::generate(), payload.as_slice()))
                .collect();
            for result in producer.send_batch(&messages).await {
                if result.is_err() {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        producer.close().await;
        times
    }
}

/// One consumer until every message is acknowledged; its acks ride in the next
/// take's transaction. Returns its latencies (send to taken) and redeliveries.
async fn consume(
    mut consumer: Consumer,
    take_batch: usize,
    total: u64,
    started: Instant,
    progress: Progress,
) -> (Histogram<u64>, u64) {
    let mut latencies = latency_histogram();
    let mut seen = std::collections::HashSet::new();
    let mut redelivered = 0u64;
    let mut record = |delivery: &Delivery| {
        let now = started.elapsed().as_nanos() as u64;
        let sent = u64::from_be_bytes(delivery.payload[..8].try_into().expect("8 bytes"));
        if sent != NOT_TIMED {
            latencies.saturating_record(now.saturating_sub(sent) / 1_000);
        }
        if !seen.insert(delivery.id) {
            redelivered += 1;
        }
    };
    let wait = Duration::from_millis(200);
    let mut current: Vec<Delivery> = Vec::new();
    loop {
        if progress.acked.load(Ordering::Relaxed) >= total {
            // Enough acknowledged: ack what is held and take no more (a prefilled
            // queue would otherwise be drained to the end).
            for delivery in current {
                let _ = consumer.ack(&delivery).await;
            }
            break;
        }
        let (acks, next) = if take_batch == 1 {
            match current.pop() {
                Some(delivery) => {
                    let (ack, next) = consumer.ack_and_take(&delivery, wait).await;
                    (vec![ack], next.map(|next| next.into_iter().collect()))
                }
                None => {
                    (Vec::new(), consumer.take(wait).await.map(|next| next.into_iter().collect()))
                }
            }
        } else {
            consumer.ack_and_take_batch(&std::mem::take(&mut current), take_batch, wait).await
        };
        for ack in acks {
            match ack {
                Ok(()) => {
                    if progress.acked.fetch_add(1, Ordering::Relaxed) + 1 == total {
                        let now = (started.elapsed().as_micros() as u64).max(1);
                        progress.done_us.store(now, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        match next {
            Ok(batch) => {
                if !batch.is_empty() {
                    let now = (started.elapsed().as_micros() as u64).max(1);
                    let _ = progress.first_take_us.compare_exchange(
                        0,
                        now,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                batch.iter().for_each(&mut record);
                current = batch;
            }
            Err(_) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    consumer.close().await;
    (latencies, redelivered)
}

/// Waits until `total` messages are acknowledged, or fails when none was for
/// `stall_timeout` (rather than hanging forever).
async fn wait_for_acks(
    progress: &Progress,
    total: u64,
    stall_timeout: Duration,
) -> Result<(), QueueError> {
    let mut last = 0;
    let mut last_progress = Instant::now();
    while progress.acked.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = progress.acked.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > stall_timeout {
            return Err(QueueError::Unknown(format!(
                "benchmark stalled: {now} of {total} messages acknowledged, none for {stall_timeout:?}"
            )));
        }
    }
    Ok(())
}

/// Pipelined sequential creates (up to 512 in flight) on one session, per second.
pub async fn raw_creates(store: &dyn Store, dir: &str, count: usize) -> Result<f64, QueueError> {
    let mut prefix = String::new();
    for part in dir.split('/').filter(|part| !part.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        match store.create(&prefix, b"", CreateMode::Persistent).await {
            Ok(_) | Err(StoreError::NodeExists(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let node = format!("{dir}/n-");
    let started = Instant::now();
    let results: Vec<_> = stream::iter(0..count)
        .map(|_| store.create(&node, b"", CreateMode::PersistentSequential))
        .buffer_unordered(512)
        .collect()
        .await;
    let elapsed = started.elapsed();
    if let Some(Err(err)) = results.into_iter().find(Result::is_err) {
        return Err(err.into());
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Mean latency of `count` creates, each awaited before the next, and of as many reads.
pub async fn op_latency(
    store: &dyn Store,
    dir: &str,
    count: usize,
) -> Result<(f64, f64), QueueError> {
    let node = format!("{dir}/latency-");
    let started = Instant::now();
    let mut last = String::new();
    for _ in 0..count {
        last = store.create(&node, b"", CreateMode::PersistentSequential).await?;
    }
    let write = started.elapsed().as_secs_f64() * 1000.0 / count as f64;
    let started = Instant::now();
    for _ in 0..count {
        store.get(&last).await?;
    }
    let read = started.elapsed().as_secs_f64() * 1000.0 / count as f64;
    Ok((write, read))
}

/// Children deleted per `multi` when a tree is removed.
const DELETE_BATCH: usize = 256;

/// Deletes `root` and everything under it (best effort, pipelined per level). A
/// prefilled queue leaves up to a million waiting messages: they go in `multi`s
/// of DELETE_BATCH, several in flight (one at a time that took minutes); a batch
/// that fails (a child has children of its own, or no `multi` on REST) is done
/// child by child.
pub async fn delete_tree(store: &dyn Store, root: &str) {
    let mut stack = vec![(root.to_owned(), false)];
    while let Some((path, expanded)) = stack.pop() {
        if expanded {
            let _ = store.delete(&path, None).await;
            continue;
        }
        let children = store.children(&path).await.unwrap_or_default();
        stack.push((path.clone(), true));
        let chunks: Vec<Vec<String>> =
            children.chunks(DELETE_BATCH).map(|chunk| chunk.to_vec()).collect();
        let left: Vec<String> = stream::iter(chunks)
            .map(|chunk| {
                let path = &path;
                async move {
                    let ops: Vec<MultiOp> = chunk
                        .iter()
                        .map(|child| MultiOp::Delete {
                            path: format!("{path}/{child}"),
                            version: None,
                        })
                        .collect();
                    match store.multi(&ops).await {
                        Ok(_) => Vec::new(),
                        Err(_) => chunk,
                    }
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect();
        let (leaves, inner): (Vec<_>, Vec<_>) = stream::iter(left)
            .map(|child| {
                let child = format!("{path}/{child}");
                async move {
                    let leaf = matches!(store.exists(&child).await, Ok(Some(stat)) if stat.num_children == 0);
                    (child, leaf)
                }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .partition(|(_, leaf)| *leaf);
        stream::iter(leaves)
            .map(|(child, _)| async move { store.delete(&child, None).await })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
        stack.extend(inner.into_iter().map(|(child, _)| (child, false)));
    }
}
