//! Producers: each sends one message per call or a batch, and writes every send's
//! invoke before the call (a batch's all before it goes) and its outcome after.

use std::time::Instant;

use tokio::sync::watch;

use rand::Rng;

use super::{Outcome, Worker, ERROR_BACKOFF};
use crate::queue::{self, MessageId, Producer};

impl Worker {
    fn payload(&mut self) -> Vec<u8> {
        let len = self.rng.random_range(self.config.payload_min..=self.config.payload_max);
        (0..len).map(|_| self.rng.random_range(b'a'..=b'z')).collect()
    }

    pub(super) async fn produce(mut self, mut stop: watch::Receiver<bool>) {
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
}
