//! Consumers: one loop for every access path, where a single take is a batch of
//! one. The loop holds what it took (one message, or a batch) while it "processes"
//! it, and that is when nemesis orders reach it: a crash while holding, or a zombie
//! that stalls holding, are the moments that test the queue.
//!
//! What differs between the modes is only the queue call and when acks go:
//!
//! - [`TakeMode::Single`]: `take`, then `ack` as a call of its own before the next
//!   take (every path). The history has the take's invoke and outcome, then the
//!   ack's invoke and outcome.
//! - [`TakeMode::Batch`]: `ack_and_take_batch`: the acks of the last batch ride in
//!   the next take's transaction (native) or go out with its claims (REST), so the
//!   history has the acks' invokes and the take's invoke before the call, then the
//!   acks' outcomes and one take `ok` per message delivered.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::orders::ConsumerOrder;
use super::{Outcome, Worker, ERROR_BACKOFF, TAKE_WAIT};
use crate::queue::{Consumer, Delivery};

/// How a consumer takes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TakeMode {
    /// One message per `take`; each acked by its own `ack`.
    Single,
    /// Up to this many per transaction; acked in the next take's transaction.
    Batch(usize),
}

impl TakeMode {
    /// `take_batch` messages per call on every path (REST: as many claims at once).
    pub(super) fn of(take_batch: usize) -> Self {
        if take_batch > 1 {
            TakeMode::Batch(take_batch)
        } else {
            TakeMode::Single
        }
    }

    /// What a consumer holds, for the answer to a nemesis order.
    fn holding(self, held: &[Delivery]) -> String {
        match (self, held.first()) {
            (TakeMode::Single, Some(delivery)) => format!("holding {}", delivery.id),
            (TakeMode::Single, None) => "between operations".into(),
            (TakeMode::Batch(_), _) => format!("holding {} messages", held.len()),
        }
    }

    /// The pronoun of what a zombie acks when it wakes.
    fn them(self) -> &'static str {
        match self {
            TakeMode::Single => "it",
            TakeMode::Batch(_) => "them",
        }
    }
}

/// A zombie order waiting for the consumer to hold something.
struct Stall {
    stall: Duration,
    done: oneshot::Sender<String>,
}

impl Worker {
    pub(super) async fn register(&self, stop: &watch::Receiver<bool>) -> Option<Consumer> {
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

    /// Takes, processes and acks until `stop`, obeying nemesis orders while it
    /// holds what it took.
    pub(super) async fn consume(
        self,
        mode: TakeMode,
        mut stop: watch::Receiver<bool>,
        mut orders: mpsc::Receiver<ConsumerOrder>,
    ) {
        let mut consumer: Option<Consumer> = None;
        let mut held: Vec<Delivery> = Vec::new();
        // A zombie order waits for the consumer to hold a message.
        let mut zombie: Option<Stall> = None;
        while !*stop.borrow() {
            while let Ok(order) = orders.try_recv() {
                match order {
                    ConsumerOrder::Crash { down, done } => {
                        let what = self.crash(consumer.take(), mode, &held);
                        held.clear();
                        let _ = done.send(format!("{what}; down for {down:?}"));
                        Self::pause(&mut stop, down).await;
                    }
                    ConsumerOrder::Zombie { stall, done } => zombie = Some(Stall { stall, done }),
                }
            }
            if *stop.borrow() {
                break;
            }
            if consumer.is_some() && !held.is_empty() {
                if let Some(order) = zombie.take() {
                    let stalled = consumer.take().expect("checked above");
                    let Some(woken) =
                        self.stall_then_ack(stalled, mode, &held, order, &mut stop).await
                    else {
                        break;
                    };
                    held.clear();
                    consumer = Some(woken);
                    continue;
                }
                if mode == TakeMode::Single {
                    let c = consumer.as_mut().expect("checked above");
                    for delivery in held.drain(..) {
                        self.ack(c, &delivery).await;
                    }
                    continue;
                }
            }
            if consumer.is_none() {
                match self.register(&stop).await {
                    Some(c) => consumer = Some(c),
                    None => break,
                }
            }
            held = self.exchange(mode, &mut consumer, &held).await;
            if !held.is_empty() && !self.config.processing_time.is_zero() {
                tokio::time::sleep(self.config.processing_time).await;
            }
        }
        if let Some(mut c) = consumer {
            for delivery in &held {
                self.ack(&mut c, delivery).await;
            }
            c.close().await;
        }
    }

    /// Drops the consumer's session unclosed, as a crashed process would: what it
    /// holds comes back through the janitor. Returns the order's answer.
    fn crash(&self, consumer: Option<Consumer>, mode: TakeMode, held: &[Delivery]) -> String {
        match consumer {
            Some(c) => {
                let session = c.id().to_string();
                c.crash();
                format!("{} (session {session}) crashed {}", self.name, mode.holding(held))
            }
            None => format!("{} was not registered; stays down", self.name),
        }
    }

    /// A zombie stalls instead of processing, past its session, then acks what it
    /// held. A stalled task alone would keep heartbeating (the client runs on), so
    /// the zombie is what a frozen process looks like to ZooKeeper: its session
    /// goes silent (dropped unclosed) and expires, the janitor takes the messages
    /// back; then it wakes, reconnects under a new session as the queue does after
    /// expiry, and acks the old deliveries: every ack must be refused (TakenBack),
    /// or a message would be delivered twice. None: told to stop before it
    /// registered again.
    async fn stall_then_ack(
        &self,
        stalled: Consumer,
        mode: TakeMode,
        held: &[Delivery],
        order: Stall,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Consumer> {
        let session = stalled.id().to_string();
        stalled.crash();
        let _ = order.done.send(format!(
            "{} (session {session}) stalls {:?} {}, then acks {}",
            self.name,
            order.stall,
            mode.holding(held),
            mode.them()
        ));
        Self::pause(stop, order.stall).await;
        let mut woken = self.register(stop).await?;
        for delivery in held {
            self.ack(&mut woken, delivery).await;
        }
        Some(woken)
    }

    /// One queue call: the acks of `held` (which only a batch consumer folds in;
    /// a single one has acked them already) and the next take, each recorded.
    /// Returns what was taken.
    async fn exchange(
        &self,
        mode: TakeMode,
        consumer: &mut Option<Consumer>,
        held: &[Delivery],
    ) -> Vec<Delivery> {
        let c = consumer.as_mut().expect("a registered consumer");
        let ack_started: Vec<Instant> =
            held.iter().map(|delivery| self.invoke("ack", Some(&delivery.id), None)).collect();
        let take_started = self.invoke("take", None, None);
        let call = async {
            match mode {
                TakeMode::Single => {
                    let taken = c.take(TAKE_WAIT).await;
                    (Vec::new(), taken.map(|taken| taken.into_iter().collect()))
                }
                TakeMode::Batch(max) => c.ack_and_take_batch(held, max, TAKE_WAIT).await,
            }
        };
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
        for ((delivery, started), outcome) in held.iter().zip(ack_started).zip(acks) {
            self.record(self.complete("ack", started, Some(&delivery.id), outcome));
        }
        match taken {
            None => {
                self.record(self.complete("take", take_started, None, self.no_answer()));
                Vec::new()
            }
            Some(Ok(batch)) if batch.is_empty() => {
                let outcome = Outcome::Fail("empty".into());
                self.record(self.complete("take", take_started, None, outcome));
                batch
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
                batch
            }
            Some(Err(err)) => {
                self.record(self.complete("take", take_started, None, Outcome::of_error(&err)));
                tokio::time::sleep(ERROR_BACKOFF).await;
                Vec::new()
            }
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
}
