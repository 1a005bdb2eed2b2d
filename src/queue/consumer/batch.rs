//! Batched takes: many messages in one transaction, each in its own slot.
//!
//! A take's cost is its transaction (replicated to every server), not its size, so
//! [`Consumer::take_batch`] takes up to `max` messages in one `multi`: check our
//! `status`, delete the acknowledged slots folded in from the last batch, then for
//! every message delete the source at the version read and create a slot
//! `consumer-<id>/message-<n>`. It is the single take's protocol, widened:
//!
//! - Every message keeps a slot of its own, so every ack is still a versioned
//!   delete of one slot, and recovery moves each slot of a dead consumer to
//!   `partial/<original name>` as before: no duplicate past ack, message by message.
//! - After an unknown outcome the batch is settled by a write that conflicts with
//!   it (see [`super::doubt`]): a versioned set of its first source, then a read of
//!   its first slot. Slot numbers are never reused by one consumer id, so that slot
//!   holds our message exactly when the whole (atomic) transaction happened.
//! - A source taken by another consumer first fails the `multi` at that source's
//!   delete; the batch drops it and tries again with the rest.
//!
//! Under the claim protocol (REST) a batch is many claims in flight at once (see
//! [`super::claim`]). Under the legacy algorithm a batch is one message taken by
//! [`Consumer::take`].

use std::time::Duration;

use tokio::time::Instant;

use super::doubt::{judge_gone_slot, SourceFence, TakeOutcome};
use super::{Consumer, Delivery, PARTIAL_RELIST};
use crate::queue::envelope::Envelope;
use crate::queue::store::{CreateMode, MultiOp, StoreError, StoreResult};
use crate::queue::{
    sorted_messages, Algorithm, QueueError, TakeProtocol, Tree, MULTI_BYTES, OP_OVERHEAD,
};

/// A batch transaction whose outcome is unknown, kept until a read settles it.
pub(super) struct BatchInDoubt {
    /// What the batch would have delivered, in the slots it would have created.
    deliveries: Vec<Delivery>,
    /// Acks that rode in it: `Some(i)` is still to be reported as result `i` of
    /// the call that folded it; `None` was already reported as unknown.
    fold: Vec<(Option<usize>, Delivery)>,
    /// The session it was sent in: only in that session is our reading of our own
    /// slots conclusive (after a renewal the old id and its slots are recovery's).
    session: i64,
    /// Its first source as read: the write that settles it.
    fence: SourceFence,
}

impl BatchInDoubt {
    /// True while acks in it are still to be reported to the call that folded them.
    fn reports_acks(&self) -> bool {
        self.fold.iter().any(|(index, _)| index.is_some())
    }
}

/// A waiting message read and chosen for a batch.
pub(super) struct Candidate {
    pub(super) path: String,
    pub(super) name: String,
    pub(super) envelope: Envelope,
    pub(super) version: i32,
    pub(super) from_partial: bool,
    /// The node's data as read: a batch's slots must fit one request, and a batch
    /// in doubt is settled by writing it back (see [`super::doubt`]).
    data: Vec<u8>,
}

type AckResults = Vec<Option<Result<(), QueueError>>>;

/// Reports the acks of `fold` still to be reported as unknown: they rode in a
/// take whose outcome is unknown (`why` says more).
fn report_unknown(fold: &mut [(Option<usize>, Delivery)], results: &mut AckResults, why: &str) {
    for (index, delivery) in fold {
        if let Some(index) = index.take() {
            results[index] = Some(Err(QueueError::Unknown(format!(
                "{}: the ack rode in a take whose outcome is unknown{why}",
                delivery.slot
            ))));
        }
    }
}

impl Consumer {
    /// Takes up to `max` messages in one transaction, waiting up to `timeout` for
    /// at least one. Acknowledge each with [`Consumer::ack`], or all of them in the
    /// next batch's transaction with [`Consumer::ack_and_take_batch`]. Messages
    /// taken and not yet acknowledged are returned again, without taking more.
    pub async fn take_batch(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.ack_and_take_batch(&[], max, timeout).await.1
    }

    /// Acknowledges `done` and takes the next batch. The acks of messages from this
    /// consumer's last batch ride in the take's transaction (one write for the
    /// whole exchange); each keeps the guarantees of [`Consumer::ack`]. Returns one
    /// ack result per `done`, in order, and the batch.
    pub async fn ack_and_take_batch(
        &mut self,
        done: &[Delivery],
        max: usize,
        timeout: Duration,
    ) -> (Vec<Result<(), QueueError>>, Result<Vec<Delivery>, QueueError>) {
        // The claim protocol batches too, by claims in flight together (see
        // [`super::claim`]).
        let batches = self.session.config.algorithm == Algorithm::Safe
            && matches!(self.session.take_protocol(), TakeProtocol::Multi | TakeProtocol::Claim)
            && self.held.is_none()
            && !self.slot_unknown;
        if !batches {
            let mut acks = Vec::with_capacity(done.len());
            for delivery in done {
                acks.push(self.ack(delivery).await);
            }
            let taken = self.take(timeout).await.map(|taken| taken.into_iter().collect());
            return (acks, taken);
        }
        let mut results: AckResults = done.iter().map(|_| None).collect();
        let mut fold = Vec::new();
        for (index, delivery) in done.iter().enumerate() {
            // An ack already tried and still in doubt goes through `ack`, which knows
            // that its own first attempt may be what deleted the slot.
            if self.batch_held.iter().any(|held| held.slot == delivery.slot)
                && !self.ack_in_doubt.contains_key(&delivery.slot)
            {
                self.batch_held.retain(|held| held.slot != delivery.slot);
                fold.push((Some(index), delivery.clone()));
            } else {
                results[index] = Some(self.ack(delivery).await);
            }
        }
        let mut taken = if self.batch_held.is_empty() {
            self.take_batch_until(&mut fold, &mut results, max.max(1), timeout).await
        } else {
            Ok(self.batch_held.clone())
        };
        // Acks in a transaction whose outcome is unknown: read the batch's slot
        // back (as long as an unknown ack is retried) rather than report them
        // unknown; if it happened, the batch is ours after all.
        let deadline = Instant::now() + self.session.config.retry_budget;
        while self.batch_in_doubt.as_ref().is_some_and(|doubt| doubt.reports_acks()) {
            match self.settle_doubt(&mut fold, &mut results).await {
                Ok(Some(batch)) => {
                    self.batch_held = batch.clone();
                    taken = Ok(batch);
                }
                Ok(None) => {}
                Err(_) if Instant::now() < deadline && !self.session.store.is_dead() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => break,
            }
        }
        // Whatever did not ride in a transaction is acknowledged on its own.
        self.ack_each(fold, &mut results).await;
        // Acks left in a transaction whose outcome is still unknown.
        if let Some(doubt) = &mut self.batch_in_doubt {
            report_unknown(&mut doubt.fold, &mut results, "");
        }
        let acks =
            results.into_iter().map(|result| result.expect("every ack has an outcome")).collect();
        (acks, taken)
    }

    async fn take_batch_until(
        &mut self,
        fold: &mut Vec<(Option<usize>, Delivery)>,
        results: &mut AckResults,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.take_batch_once(fold, results, max).await {
                Ok(batch) if !batch.is_empty() => {
                    self.batch_held = batch.clone();
                    return Ok(batch);
                }
                Ok(_) => {
                    // Nothing to take: the acks must not wait for a message.
                    self.ack_each(std::mem::take(fold), results).await;
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                    self.wait_for_messages(deadline).await;
                }
                Err(err) => {
                    tracing::debug!(consumer = %self.id, "take batch: {err}");
                    if Instant::now() >= deadline {
                        return Err(err.into());
                    }
                    if matches!(err, StoreError::SessionExpired(_)) || self.session.store.is_dead()
                    {
                        self.reregister_keeping_doubt().await?;
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    /// Acknowledges `fold` without a take, reporting where it is to be reported:
    /// with the native `multi` all in one transaction (see [`Consumer::ack_in_one`]),
    /// what that leaves one by one.
    async fn ack_each(&mut self, fold: Vec<(Option<usize>, Delivery)>, results: &mut AckResults) {
        let fold = if fold.len() > 1
            && self.session.config.algorithm == Algorithm::Safe
            && self.session.take_protocol() == TakeProtocol::Multi
            && !self.session.store.is_dead()
        {
            self.ack_in_one(fold, results).await
        } else {
            fold
        };
        for (index, delivery) in fold {
            let result = self.ack(&delivery).await;
            if let Some(index) = index {
                results[index] = Some(result);
            }
        }
    }

    /// The versioned deletes of every slot in `fold` in one `multi`. An idle
    /// consumer acknowledges its last batch before it waits, and one transaction
    /// per slot, each waited for, kept it from taking what came meanwhile for as
    /// many write latencies as the batch held messages. Each slot keeps the
    /// meaning of [`Consumer::ack`]: the `multi` is atomic, a slot that fails it
    /// (recovery changed or moved it) is judged as in a take's fold and the rest
    /// tried again. Returns what is left to acknowledge one by one: after an
    /// unknown outcome all of it, marked in doubt in this session, so that `ack`
    /// reads a slot found gone as this attempt having landed.
    async fn ack_in_one(
        &mut self,
        mut fold: Vec<(Option<usize>, Delivery)>,
        results: &mut AckResults,
    ) -> Vec<(Option<usize>, Delivery)> {
        while fold.len() > 1 {
            let ops: Vec<MultiOp> = fold
                .iter()
                .map(|(_, acked)| MultiOp::Delete {
                    path: acked.slot.clone(),
                    version: acked.slot_version,
                })
                .collect();
            match self.session.store.multi(&ops).await {
                Ok(_) => {
                    for (index, _) in fold.drain(..) {
                        if let Some(index) = index {
                            results[index] = Some(Ok(()));
                        }
                    }
                }
                Err(StoreError::MultiFailed { index, cause }) if index < fold.len() => {
                    let (acked, delivery) = fold.remove(index);
                    let judged = match *cause {
                        StoreError::NoNode(_) => {
                            judge_gone_slot(self.session.store.as_ref(), &self.tree, &delivery)
                                .await
                        }
                        StoreError::BadVersion(_) => QueueError::TakenBack,
                        other => other.into(),
                    };
                    if let Some(acked) = acked {
                        results[acked] = Some(Err(judged));
                    }
                }
                Err(err) => {
                    if err.is_unknown_outcome() {
                        let session = self.session.store.session_id();
                        for (_, delivery) in &fold {
                            self.ack_in_doubt.insert(delivery.slot.clone(), session);
                        }
                    }
                    break;
                }
            }
        }
        fold
    }

    /// Candidates still as read, after a lost race: the winner took a block, so
    /// the rest of ours is likely gone too. Reading them again (on our server,
    /// which has applied the winner's transaction before it answered our failed
    /// one) costs a read each, where finding them gone one failed `multi` at a
    /// time costs a replicated transaction each. A read that fails keeps the
    /// candidate: the `multi` decides.
    async fn drop_taken(&mut self, chosen: &mut Vec<Candidate>) {
        let store = self.session.store.clone();
        let stats =
            futures::future::join_all(chosen.iter().map(|candidate| store.exists(&candidate.path)))
                .await;
        let mut stats = stats.into_iter();
        let before = chosen.len();
        chosen.retain(|candidate| match stats.next() {
            Some(Ok(Some(stat))) => stat.version == candidate.version,
            Some(Ok(None)) => false,
            _ => true,
        });
        for _ in chosen.len()..before {
            self.lost_race();
        }
    }

    /// Re-registers under a new id. A batch in doubt can no longer be read back
    /// (its slots are recovery's now), but the acks in it stay to be reported.
    async fn reregister_keeping_doubt(&mut self) -> Result<(), QueueError> {
        let doubt = self.batch_in_doubt.take();
        let result = self.reregister().await;
        self.batch_in_doubt = doubt;
        result
    }

    /// One attempt: settle a batch in doubt, else read candidates and take them.
    async fn take_batch_once(
        &mut self,
        fold: &mut Vec<(Option<usize>, Delivery)>,
        results: &mut AckResults,
        max: usize,
    ) -> StoreResult<Vec<Delivery>> {
        if self.session.take_protocol() == TakeProtocol::Claim {
            return self.claim_batch_once(fold, results, max).await;
        }
        if let Some(batch) = self.settle_doubt(fold, results).await? {
            return Ok(batch);
        }
        self.unset_seen.clear();
        let mut chosen = self.choose_partial(max).await?;
        if chosen.len() < max {
            let more = self.choose_messages(max - chosen.len()).await?;
            chosen.extend(more);
        }
        // What does not fit one request waits for the next batch (the first
        // always goes: one message always fits).
        let mut bytes = 0;
        let fits = chosen
            .iter()
            .take_while(|candidate| {
                bytes += candidate.data.len() + OP_OVERHEAD;
                bytes <= MULTI_BYTES
            })
            .count()
            .clamp(1.min(chosen.len()), chosen.len());
        for late in chosen.drain(fits..).rev() {
            if !late.from_partial {
                self.listing.give_back(&late.name);
            }
        }
        self.commit_batch(chosen, fold, results).await
    }

    /// Settles the batch in doubt, if any: `Some(batch)` when it happened (its acks
    /// are done), `None` when it did not (its acks go back into `fold`) or cannot
    /// be told any more (its acks are unknown). An error leaves it in doubt.
    async fn settle_doubt(
        &mut self,
        fold: &mut Vec<(Option<usize>, Delivery)>,
        results: &mut AckResults,
    ) -> StoreResult<Option<Vec<Delivery>>> {
        let Some(doubt) = self.batch_in_doubt.take() else { return Ok(None) };
        match self.settle_batch(&doubt).await {
            Ok(Some(true)) => {
                for (index, _) in doubt.fold {
                    if let Some(index) = index {
                        results[index] = Some(Ok(()));
                    }
                }
                Ok(Some(doubt.deliveries))
            }
            Ok(Some(false)) => {
                fold.extend(doubt.fold);
                Ok(None)
            }
            Ok(None) => {
                // Another session: the batch, if taken, goes back through
                // recovery; its acks stay unknown.
                let mut fold = doubt.fold;
                report_unknown(&mut fold, results, ", and it can no longer be read back");
                Ok(None)
            }
            Err(err) => {
                self.batch_in_doubt = Some(doubt);
                Err(err)
            }
        }
    }

    /// Settles a batch in doubt by a write (see [`super::doubt`]): `Some(true)` it
    /// happened, `Some(false)` it did not and never will, `None` it cannot be told
    /// (another session: the old id and its slots are recovery's now).
    async fn settle_batch(&mut self, doubt: &BatchInDoubt) -> StoreResult<Option<bool>> {
        let store = self.session.store.clone();
        if store.is_dead() || store.session_id() != doubt.session {
            return Ok(None);
        }
        let Some(first) = doubt.deliveries.first() else { return Ok(Some(false)) };
        match doubt.fence.settle(store.as_ref(), &first.slot, &first.id).await? {
            TakeOutcome::Happened { .. } => Ok(Some(true)),
            TakeOutcome::DidNotHappen => Ok(Some(false)),
        }
    }

    /// Messages from `partial/`, which come first. It is almost always empty: look
    /// at it when it was not last time, or every PARTIAL_RELIST.
    pub(super) async fn choose_partial(&mut self, max: usize) -> StoreResult<Vec<Candidate>> {
        if self.seen_partial.is_empty() && self.partial_listed.elapsed() < PARTIAL_RELIST {
            return Ok(Vec::new());
        }
        let partial = self.tree.partial();
        self.seen_partial = self.session.store.children(&partial).await?;
        self.partial_listed = Instant::now();
        let names: Vec<String> =
            sorted_messages(self.seen_partial.clone()).into_iter().take(max).collect();
        self.read_candidates(&partial, names, true).await
    }

    /// Up to `max` waiting messages from `messages/`, from the cached listing:
    /// our own stripe of it, oldest first (see [`super::stripe`]), listed again
    /// only once our stripe is used up or the cache proved stale.
    pub(super) async fn choose_messages(&mut self, max: usize) -> StoreResult<Vec<Candidate>> {
        let messages = self.tree.messages();
        let mut relisted = self.recheck_stripe(max).await?;
        loop {
            // A cached name that is gone was taken by another consumer; once many
            // are, the cache is mostly stale: list again (once per look).
            if self.misses >= super::STALE_MISSES.max(max as u32 / 2) && !relisted {
                // Races lost in our own stripe: perhaps someone joined or left.
                self.read_stripe().await;
                self.relist(max).await?;
                relisted = true;
            }
            let names = self.listing.next(max, self.contention > 0);
            if names.is_empty() {
                if relisted {
                    return Ok(Vec::new());
                }
                self.relist(max).await?;
                relisted = true;
                continue;
            }
            let chosen = self.read_candidates(&messages, names, false).await?;
            if !chosen.is_empty() {
                return Ok(chosen);
            }
        }
    }

    /// Reads `names` in `dir` (pipelined) and keeps the takeable ones: set, not
    /// claimed, well formed. Old empty orphans are deleted on the way.
    async fn read_candidates(
        &mut self,
        dir: &str,
        names: Vec<String>,
        from_partial: bool,
    ) -> StoreResult<Vec<Candidate>> {
        let store = self.session.store.clone();
        let reads = futures::future::join_all(names.iter().map(|name| {
            let path = Tree::node(dir, name);
            let store = store.clone();
            async move { (store.get(&path).await, path) }
        }))
        .await;
        let mut chosen = Vec::new();
        for ((read, path), name) in reads.into_iter().zip(names) {
            let (data, stat) = match read {
                Ok(found) => found,
                Err(StoreError::NoNode(_)) => {
                    self.lost_race();
                    continue;
                }
                Err(err) => return Err(err),
            };
            if data.is_empty() {
                self.pass_unset(&path, &stat).await;
                continue;
            }
            match Envelope::decode(&data) {
                // Claimed by a claim-protocol consumer (or a recovery move): not ours.
                Ok(envelope) if envelope.claimer().is_some() => {}
                Ok(envelope) => chosen.push(Candidate {
                    path,
                    name,
                    envelope,
                    version: stat.version,
                    from_partial,
                    data,
                }),
                Err(err) => tracing::warn!("skipping {path}: {err}"),
            }
        }
        Ok(chosen)
    }

    /// The batch's transaction. A source another consumer took first is dropped
    /// and the rest tried again; a folded ack whose slot recovery changed is
    /// reported taken back and dropped.
    async fn commit_batch(
        &mut self,
        mut chosen: Vec<Candidate>,
        fold: &mut Vec<(Option<usize>, Delivery)>,
        results: &mut AckResults,
    ) -> StoreResult<Vec<Delivery>> {
        loop {
            if chosen.is_empty() {
                return Ok(Vec::new());
            }
            let mut deliveries = Vec::with_capacity(chosen.len());
            let mut ops = vec![MultiOp::Check { path: self.tree.status(&self.id), version: None }];
            for (_, acked) in fold.iter() {
                ops.push(MultiOp::Delete { path: acked.slot.clone(), version: acked.slot_version });
            }
            let first_source = ops.len();
            for (offset, candidate) in chosen.iter().enumerate() {
                let slot = self.tree.batch_slot(&self.id, self.next_slot + offset as u64);
                let envelope = Self::slot_envelope(
                    candidate.envelope.clone(),
                    &candidate.name,
                    "",
                    candidate.from_partial,
                );
                ops.push(MultiOp::Delete {
                    path: candidate.path.clone(),
                    version: Some(candidate.version),
                });
                ops.push(MultiOp::Create {
                    path: slot.clone(),
                    data: envelope.encode(),
                    mode: CreateMode::Persistent,
                });
                deliveries.push(Delivery::from_slot(&envelope, slot, Some(0)));
            }
            match self.session.store.multi(&ops).await {
                Ok(_) => {
                    self.next_slot += chosen.len() as u64;
                    for (index, _) in fold.drain(..) {
                        if let Some(index) = index {
                            results[index] = Some(Ok(()));
                        }
                    }
                    self.contention = self.contention.saturating_sub(1);
                    self.misses = 0;
                    return Ok(deliveries);
                }
                Err(StoreError::MultiFailed { index: 0, cause }) => {
                    return Err(StoreError::SessionExpired(format!(
                        "this consumer is no longer registered (batch take: {cause})"
                    )));
                }
                Err(StoreError::MultiFailed { index, cause }) if index < first_source => {
                    // The old slot changed (recovery's fence: taken back) or is gone
                    // (taken back, if recovery's copy says so).
                    let (acked, delivery) = fold.remove(index - 1);
                    let judged = match *cause {
                        StoreError::NoNode(_) => {
                            judge_gone_slot(self.session.store.as_ref(), &self.tree, &delivery)
                                .await
                        }
                        _ => QueueError::TakenBack,
                    };
                    if let Some(acked) = acked {
                        results[acked] = Some(Err(judged));
                    }
                }
                Err(StoreError::MultiFailed { index, cause }) => {
                    let which = (index - first_source) / 2;
                    if (index - first_source) % 2 == 0 {
                        // Another consumer took this source first.
                        chosen.remove(which);
                        self.lost_race();
                        self.drop_taken(&mut chosen).await;
                    } else if matches!(*cause, StoreError::NoNode(_)) {
                        return Err(StoreError::SessionExpired(
                            "recovery removed this consumer".into(),
                        ));
                    } else {
                        // Our slot name is taken: skip past it and try again.
                        self.next_slot += chosen.len() as u64;
                        tracing::warn!("batch slot {} exists: {cause}", deliveries[which].slot);
                    }
                }
                Err(err) => {
                    if err.is_unknown_outcome() {
                        self.next_slot += chosen.len() as u64;
                        let first = &chosen[0];
                        self.batch_in_doubt = Some(BatchInDoubt {
                            deliveries,
                            fold: std::mem::take(fold),
                            session: self.session.store.session_id(),
                            fence: SourceFence {
                                path: first.path.clone(),
                                version: first.version,
                                data: first.data.clone(),
                            },
                        });
                    }
                    return Err(err);
                }
            }
        }
    }
}
