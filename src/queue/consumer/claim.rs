//! Batched takes under the claim protocol (REST): many claims in flight at once,
//! each message held where it is.
//!
//! The REST interface has no `multi`, so a batch cannot be one transaction. The
//! single claim take is three writes in a row (claim, slot, delete), and its ack a
//! fourth; waited for one after the other, message after message, that is four
//! round trips through the gateway and four replicated writes per message. A batch
//! instead claims each of its messages with one versioned set, all in flight at
//! once together with the deletes that acknowledge the last batch, and leaves each
//! claimed message where it is, in `messages/` (or `partial/`):
//!
//! - **Claim**: a versioned set of the message at the version read, writing it back
//!   with a token `<consumer id>/<random>` of its own. One winner; the message is
//!   then at the next version, and every consumer and recovery pass it by while
//!   the claimer lives.
//! - **Ack**: a versioned delete of the claimed message at that next version: two
//!   writes per message in all instead of four, and no slot.
//! - **Recovery**: a message claimed by a dead consumer with no slot of it left is
//!   rolled back by a versioned set that clears the claim, once the dead
//!   consumer's node is deleted (as for any stale claim, see `recovery`). That set
//!   moves the version on, so a zombie's late ack fails (`BadVersion`, or `NoNode`
//!   once another consumer took it): no ack succeeds after the message was taken
//!   back, and none is taken back after its ack (the ack deleted it).
//! - **Unknown outcomes**: a claim whose set ended unknown is settled by reading
//!   the message: our token at the claim's version means it landed (a rollback
//!   clears the token). Nothing else is sent for the claim until it is settled, so
//!   a set still in flight when the read comes can land only as a claim nobody
//!   acts on, held until this consumer's session ends and recovery rolls it back:
//!   never delivered twice. A claim whose read fails too is kept and settled
//!   before the next batch (in the session it was sent in; after a renewal it is
//!   recovery's, with the old id). An ack goes by [`Consumer::ack`]'s rules.
//!
//! Claims do not depend on each other: one lost to another consumer, or ended
//! unknown, leaves the others as they are.

use std::time::Duration;

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
    /// The version the claim's set expects; the claim leaves the message at the
    /// next one, which the ack deletes.
    version: i32,
    from_partial: bool,
    /// `<consumer id>/<random>`: marks the message as this claim's.
    token: String,
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
    /// Definitely failed (a refusal); nothing of ours is left.
    Failed(StoreError),
    /// Unknown: kept and settled before the next batch.
    InDoubt(Claim, StoreError),
}

impl Claim {
    fn claimed(&self) -> Envelope {
        self.envelope.with_claim(&self.token)
    }

    /// What the consumer holds: the claimed message itself, acknowledged by
    /// deleting it at the claimed version.
    fn delivery(&self) -> Delivery {
        let held = Consumer::slot_envelope(
            self.envelope.clone(),
            &self.name,
            &self.token,
            self.from_partial,
        );
        Delivery {
            claimed_by: held.claimer().map(str::to_owned),
            ..Delivery::from_slot(&held, self.path.clone(), Some(self.version + 1))
        }
    }

    async fn run(self, store: &dyn Store, budget: Duration) -> Claimed {
        match store.set(&self.path, &self.claimed().encode(), Some(self.version)).await {
            Ok(_) => Claimed::Taken(self.delivery()),
            Err(StoreError::NoNode(_) | StoreError::BadVersion(_)) => Claimed::Lost,
            Err(err) if err.is_unknown_outcome() => self.resume(store, budget).await,
            Err(err) => Claimed::Failed(err),
        }
    }

    /// Settles a claim whose outcome is unknown by reading the message.
    async fn resume(self, store: &dyn Store, budget: Duration) -> Claimed {
        match retry_unknown(budget, || store.get(&self.path)).await {
            Ok((data, stat)) => {
                let ours = Envelope::decode(&data).is_ok_and(|held| held.claim == self.token);
                if ours && stat.version == self.version + 1 {
                    Claimed::Taken(self.delivery())
                } else {
                    Claimed::Lost
                }
            }
            // Gone: another consumer took it (we never delivered it).
            Err(StoreError::NoNode(_)) => Claimed::Lost,
            Err(err) if err.is_unknown_outcome() => Claimed::InDoubt(self, err),
            Err(err) => Claimed::Failed(err),
        }
    }
}

/// Creates the slot of the claim `token` holding `data` (the single claim take's
/// step 2), retried while its outcome is unknown: an earlier attempt of ours
/// landed if the slot holds our token.
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
            self.unset_seen.clear();
            let chosen = match self.choose(max - taken.len()).await {
                Ok(chosen) => chosen,
                // What the claims in doubt gave is ours: deliver it.
                Err(err) if taken.is_empty() => return Err(err),
                Err(err) => {
                    tracing::debug!(consumer = %self.id, "choosing more: {err}");
                    break;
                }
            };
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

    /// Up to `max` takeable messages, `partial/` first.
    async fn choose(&mut self, max: usize) -> StoreResult<Vec<Candidate>> {
        let mut chosen = self.choose_partial(max).await?;
        if chosen.len() < max {
            let more = self.choose_messages(max - chosen.len()).await?;
            chosen.extend(more);
        }
        Ok(chosen)
    }

    fn new_claim(&self, candidate: Candidate) -> Claim {
        Claim {
            token: format!("{}/{}", self.id, &super::new_id()[..8]),
            path: candidate.path,
            name: candidate.name,
            envelope: candidate.envelope,
            version: candidate.version,
            from_partial: candidate.from_partial,
        }
    }

    /// Sorts claim outcomes: deliveries, lost races, claims kept in doubt, and the
    /// first failure.
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
                    tracing::debug!(consumer = %self.id, message = %claim.path, "claim in doubt: {err}");
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
