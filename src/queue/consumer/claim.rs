//! Batched takes under the claim protocol (REST): many claims in flight at once.
//!
//! The REST interface has no `multi`, so a batch cannot be one transaction, and a
//! take is three writes in a row (claim, slot, delete). Waited for one after the
//! other, message after message, every message costs a consumer four round trips
//! through the gateway (with its ack). Instead, a batch runs the single claim
//! protocol once per message, all of them at the same time, together with the
//! versioned deletes that acknowledge the last batch:
//!
//! - Every message gets a token of its own and a slot of its own,
//!   `consumer-<id>/message-<n>` (numbers never reused by one id), exactly like a
//!   native batch take. So each claim's crash points are the single claim's, and
//!   recovery handles each slot as it handles any slot: a claimed slot whose
//!   claimed source still exists is dropped (the source kept), any other slot is
//!   moved to `partial/`; a claim with no slot is rolled back once the dead
//!   consumer's node (which holds every slot) could be deleted.
//! - Claims do not depend on each other: one lost to another consumer, or ended
//!   unknown, leaves the others as they are.
//! - A claim whose outcome stays unknown past the retry budget is kept, with its
//!   token and slot, and settled before the next batch (in the session it was
//!   sent in; after a renewal it is recovery's, with the old id).
//!
//! A claim is settled by reads. That is sound here, where the native take's
//! settling needs a write (see [`super::doubt`]): each step is only sent once the
//! one before it is known to have happened, and every step leaves a mark that
//! names this claim (the token on the source, the token in the slot), so a read
//! that finds no mark of a step means that step has not happened, and then the
//! steps after it were never sent. A claim write still in flight when the read
//! comes can land later only as a claim with no slot: the message then stays
//! claimed by us until this consumer's session ends and recovery rolls it back.
//! It is never delivered twice.

use std::time::Duration;

use tokio::time::Instant;

use super::batch::Candidate;
use super::{Consumer, Delivery};
use crate::queue::envelope::Envelope;
use crate::queue::store::{CreateMode, Store, StoreError, StoreResult};
use crate::queue::{retry_unknown, QueueError};

/// How many times a batch whose claims were all lost to other consumers chooses
/// again before it waits for the queue to change.
const CLAIM_ROUNDS: usize = 3;

/// One message's claim: everything needed to run or settle it.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    /// `messages/<name>` or `partial/<name>`.
    path: String,
    name: String,
    /// The message as read, unclaimed.
    envelope: Envelope,
    /// The version the claim's set expects; the claim leaves the source at the
    /// next one. A source with our token at any other version was fenced by
    /// recovery: we were taken for dead.
    version: i32,
    from_partial: bool,
    /// `<consumer id>/<random>`: marks the source and the slot as this claim's.
    token: String,
    /// `consumer-<id>/message-<n>`.
    slot: String,
}

/// A claim whose outcome is unknown, and the session it was sent in.
pub(super) struct ClaimInDoubt {
    claim: Claim,
    session: i64,
}

/// How one claim ended.
enum Claimed {
    Taken(Delivery),
    /// Another consumer had it first; nothing of ours is left.
    Lost,
    /// Definitely failed (our consumer node is gone, recovery fenced us, a refusal).
    Failed(StoreError),
    /// Unknown: kept and settled before the next batch.
    InDoubt(Claim, StoreError),
}

impl Claim {
    fn claimed(&self) -> Envelope {
        self.envelope.with_claim(&self.token)
    }

    fn slot_envelope(&self) -> Envelope {
        Consumer::slot_envelope(self.envelope.clone(), &self.name, &self.token, self.from_partial)
    }

    fn delivery(&self) -> Delivery {
        Delivery::from_slot(&self.slot_envelope(), self.slot.clone(), Some(0))
    }

    /// All three steps.
    async fn run(self, store: &dyn Store, budget: Duration) -> Claimed {
        match store.set(&self.path, &self.claimed().encode(), Some(self.version)).await {
            Ok(_) => self.finish(store, budget).await,
            Err(StoreError::NoNode(_) | StoreError::BadVersion(_)) => Claimed::Lost,
            Err(err) if err.is_unknown_outcome() => self.resume(store, budget).await,
            Err(err) => Claimed::Failed(err),
        }
    }

    /// Settles a claim whose outcome is unknown by reading its marks, and finishes it
    /// if it holds.
    async fn resume(self, store: &dyn Store, budget: Duration) -> Claimed {
        match retry_unknown(budget, || store.get(&self.path)).await {
            Ok((data, stat)) => {
                if !Envelope::decode(&data).is_ok_and(|held| held.claim == self.token) {
                    // Our claim did not land (no later step was sent).
                    return Claimed::Lost;
                }
                if stat.version != self.version + 1 {
                    return Claimed::Failed(taken_back());
                }
                self.finish(store, budget).await
            }
            // The source is gone: our delete landed (then our slot holds the
            // message) or another consumer took it (then we have no slot).
            Err(StoreError::NoNode(_)) => {
                match retry_unknown(budget, || store.get(&self.slot)).await {
                    Ok((data, stat)) => {
                        if !Envelope::decode(&data).is_ok_and(|held| held.claim == self.token) {
                            return Claimed::Failed(StoreError::Refused(format!(
                                "{}: holds another claim than {}",
                                self.slot, self.token
                            )));
                        }
                        if stat.version != 0 {
                            // Recovery fenced the slot: it is taking it back.
                            return Claimed::Failed(taken_back());
                        }
                        Claimed::Taken(self.delivery())
                    }
                    Err(StoreError::NoNode(_)) => Claimed::Lost,
                    Err(err) => self.in_doubt(err),
                }
            }
            Err(err) => self.in_doubt(err),
        }
    }

    fn in_doubt(self, err: StoreError) -> Claimed {
        if err.is_unknown_outcome() {
            Claimed::InDoubt(self, err)
        } else {
            Claimed::Failed(err)
        }
    }

    /// Steps 2 and 3, once the claim holds: our slot, then the source's versioned
    /// delete. Recovery fences the source (bumps its version) before it rolls a
    /// dead consumer's claim back, so a zombie's delete fails.
    async fn finish(self, store: &dyn Store, budget: Duration) -> Claimed {
        let data = self.slot_envelope().encode();
        match create_slot(store, &self.slot, &data, &self.token, budget).await {
            Ok(()) => {}
            // Our consumer node is gone: recovery took us for dead.
            Err(StoreError::NoNode(_)) => {
                return Claimed::Failed(StoreError::SessionExpired(
                    "recovery removed this consumer".into(),
                ))
            }
            Err(err) => return self.in_doubt(err),
        }
        let deadline = Instant::now() + budget;
        let mut retried = false;
        loop {
            match store.delete(&self.path, Some(self.version + 1)).await {
                Ok(()) => return Claimed::Taken(self.delivery()),
                Err(StoreError::NoNode(_)) if retried => {
                    // Our earlier delete landed, unless recovery already took the
                    // message back: then it changed our slot first.
                    return match store.exists(&self.slot).await {
                        Ok(Some(stat)) if stat.version == 0 => Claimed::Taken(self.delivery()),
                        Ok(_) => Claimed::Failed(taken_back()),
                        Err(err) => self.in_doubt(err),
                    };
                }
                Err(StoreError::NoNode(_) | StoreError::BadVersion(_)) => {
                    return Claimed::Failed(taken_back())
                }
                Err(err) if err.is_unknown_outcome() && Instant::now() < deadline => {
                    retried = true;
                    tracing::debug!("retrying the source delete: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => return self.in_doubt(err),
            }
        }
    }
}

/// Creates the slot of the claim `token` holding `data`, retried while its outcome
/// is unknown: an earlier attempt of ours landed if the slot holds our token.
pub(super) async fn create_slot(
    store: &dyn Store,
    slot: &str,
    data: &[u8],
    token: &str,
    budget: Duration,
) -> StoreResult<()> {
    retry_unknown(budget, || async {
        match store.create(slot, data, CreateMode::Persistent).await {
            Ok(_) => Ok(()),
            Err(StoreError::NodeExists(existing)) => {
                let (held, _) = store.get(slot).await?;
                match Envelope::decode(&held) {
                    Ok(held) if held.claim == token => Ok(()),
                    _ => Err(StoreError::NodeExists(existing)),
                }
            }
            Err(err) => Err(err),
        }
    })
    .await
}

fn taken_back() -> StoreError {
    StoreError::SessionExpired("recovery took this consumer's take back".into())
}

impl Consumer {
    /// One attempt of a claim-protocol batch: settle the claims in doubt, then
    /// choose up to `max` messages and claim them all at once, with the acks of
    /// `fold` (deleted concurrently with the claims). Some messages taken: they
    /// are the batch, and errors of the other claims surface at the next try.
    pub(super) async fn claim_batch_once(
        &mut self,
        fold: &mut Vec<(Option<usize>, Delivery)>,
        results: &mut [Option<Result<(), QueueError>>],
        max: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let store = self.session.store.clone();
        if store.is_dead() {
            // Nothing sent: the caller renews the session and re-registers, and
            // the acks in `fold` then go out in the new session.
            return Err(StoreError::SessionExpired("the session is gone".into()));
        }
        let session = store.session_id();
        let budget = self.session.config.retry_budget;
        let mut taken = Vec::new();
        let mut failure = None;
        // Settle first: a claim in doubt may hold a message for us.
        let doubts: Vec<Claim> = std::mem::take(&mut self.claims_in_doubt)
            .into_iter()
            .filter(|doubt| doubt.session == session)
            .map(|doubt| doubt.claim)
            .collect();
        if !doubts.is_empty() {
            let settled = futures::future::join_all(
                doubts.into_iter().map(|claim| claim.resume(store.as_ref(), budget)),
            )
            .await;
            self.tally(settled, &mut taken, &mut failure);
        }
        for _ in 0..CLAIM_ROUNDS {
            if taken.len() >= max {
                break;
            }
            self.saw_unset = false;
            let mut chosen = self.choose_partial(max - taken.len()).await?;
            if chosen.len() < max - taken.len() {
                let more = self.choose_messages(max - taken.len() - chosen.len()).await?;
                chosen.extend(more);
            }
            let claims: Vec<Claim> = chosen.into_iter().map(|c| self.new_claim(c)).collect();
            let acks = std::mem::take(fold);
            let (claimed, acked) = futures::future::join(
                futures::future::join_all(
                    claims.into_iter().map(|c| c.run(store.as_ref(), budget)),
                ),
                futures::future::join_all(acks.iter().map(|(_, delivery)| {
                    let store = store.clone();
                    async move { store.delete(&delivery.slot, delivery.slot_version).await }
                })),
            )
            .await;
            self.settle_acks(acks, acked, session, results).await;
            let lost_before = claimed.iter().filter(|c| matches!(c, Claimed::Lost)).count();
            let tried = claimed.len();
            self.tally(claimed, &mut taken, &mut failure);
            // Stop unless every claim was lost to another consumer: then the
            // listing is stale, and choosing again beats waiting.
            if tried == 0 || lost_before < tried || failure.is_some() {
                break;
            }
        }
        match failure {
            Some(err) if taken.is_empty() => Err(err),
            _ => {
                if !taken.is_empty() {
                    // As a native batch that went through: the listing is good.
                    self.contention = self.contention.saturating_sub(1);
                    self.misses = 0;
                }
                Ok(taken)
            }
        }
    }

    fn new_claim(&mut self, candidate: Candidate) -> Claim {
        let slot = self.tree.batch_slot(&self.id, self.next_slot);
        self.next_slot += 1;
        Claim {
            token: format!("{}/{}", self.id, &super::new_id()[..8]),
            path: candidate.path,
            name: candidate.name,
            envelope: candidate.envelope,
            version: candidate.version,
            from_partial: candidate.from_partial,
            slot,
        }
    }

    /// Sorts claim outcomes: deliveries, lost races, claims kept in doubt, and the
    /// first definite failure (a re-registration, when it says we were taken for dead).
    fn tally(
        &mut self,
        claimed: Vec<Claimed>,
        taken: &mut Vec<Delivery>,
        failure: &mut Option<StoreError>,
    ) {
        let session = self.session.store.session_id();
        for outcome in claimed {
            match outcome {
                Claimed::Taken(delivery) => taken.push(delivery),
                Claimed::Lost => self.lost_race(),
                Claimed::Failed(err) => {
                    tracing::debug!(consumer = %self.id, "claim failed: {err}");
                    let expired = matches!(err, StoreError::SessionExpired(_));
                    if failure.is_none() || expired {
                        *failure = Some(err);
                    }
                }
                Claimed::InDoubt(claim, err) => {
                    tracing::debug!(consumer = %self.id, slot = %claim.slot, "claim in doubt: {err}");
                    self.claims_in_doubt.push(ClaimInDoubt { claim, session });
                    failure.get_or_insert(err);
                }
            }
        }
    }

    /// The outcomes of the acks deleted alongside the claims, as [`Consumer::ack`]
    /// would give them; an ack whose outcome is unknown goes on through `ack`,
    /// told that its first attempt may have landed.
    async fn settle_acks(
        &mut self,
        acks: Vec<(Option<usize>, Delivery)>,
        acked: Vec<StoreResult<()>>,
        session: i64,
        results: &mut [Option<Result<(), QueueError>>],
    ) {
        for ((index, delivery), outcome) in acks.into_iter().zip(acked) {
            let result = match outcome {
                Ok(()) => Ok(()),
                Err(StoreError::NoNode(_) | StoreError::BadVersion(_)) => {
                    Err(QueueError::TakenBack)
                }
                Err(err) if err.is_unknown_outcome() => {
                    self.ack_in_doubt.insert(delivery.slot.clone(), session);
                    self.ack(&delivery).await
                }
                Err(err) => Err(err.into()),
            };
            if let Some(index) = index {
                results[index] = Some(result);
            }
        }
    }
}
