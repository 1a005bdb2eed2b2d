//! Settling a take whose outcome is unknown, and judging an ack whose slot is gone.
//!
//! A take's `multi` deletes its source at the version read and creates the slot
//! that holds the message. When its answer is lost, a read of the slot alone cannot
//! say whether it happened: the server that answers the read may not have applied
//! the transaction yet (our session never saw its zxid), so it answers `NoNode`
//! while the transaction commits a moment later. A `sync` first narrows that window
//! but does not close it: a sync is not quorum-acknowledged, and a deposed leader
//! that does not know it yet answers it (ZOOKEEPER-1675, ZOOKEEPER-2136).
//!
//! Writes are linearizable, so the take is settled by a write that conflicts with
//! it: a versioned set of its source, at the version the take deletes it at, with
//! the data it already holds. If the set succeeds, the take did not happen and never
//! can (its delete at that version now fails). If the set meets `BadVersion` or
//! `NoNode`, the source changed before our set: either our take deleted it, and then
//! our slot, read after the set's answer in the same session, shows it; or another
//! consumer took it, and then our take can never succeed. While our session lives
//! nobody else touches our slots, so a slot read that does not show our message
//! means the take did not happen.

use super::super::envelope::Envelope;
use super::super::store::{NodeStat, Store, StoreError, StoreResult};
use super::super::{MessageId, QueueError, Tree};
use super::Delivery;

/// The source of a take in doubt, as read before the take: what a conflicting
/// write needs.
#[derive(Debug, Clone)]
pub(super) struct SourceFence {
    /// `messages/<name>` or `partial/<name>`.
    pub path: String,
    /// The version the take deletes it at.
    pub version: i32,
    /// The message it holds (re-encoded): the fence writes it back unchanged, so a
    /// fence that wins leaves the message as it was, one version later.
    pub data: Vec<u8>,
}

/// How a take in doubt ended.
#[derive(Debug)]
pub(super) enum TakeOutcome {
    /// It happened: the slot, read after the fence, holds our message.
    Happened { data: Vec<u8>, stat: NodeStat },
    /// It did not happen, and now never will.
    DidNotHappen,
}

impl SourceFence {
    /// Settles a take in doubt that would have put message `taken` in `slot`. Call
    /// it only in the session the take was sent in (see the module doc). An error
    /// settles nothing: try again.
    pub async fn settle(
        &self,
        store: &dyn Store,
        slot: &str,
        taken: &MessageId,
    ) -> StoreResult<TakeOutcome> {
        match store.set(&self.path, &self.data, Some(self.version)).await {
            Ok(_) => return Ok(TakeOutcome::DidNotHappen),
            Err(StoreError::BadVersion(_) | StoreError::NoNode(_)) => {}
            Err(err) => return Err(err),
        }
        match store.get(slot).await {
            Ok((data, stat)) if Envelope::decode(&data).is_ok_and(|held| held.id == *taken) => {
                Ok(TakeOutcome::Happened { data, stat })
            }
            Ok(_) | Err(StoreError::NoNode(_)) => Ok(TakeOutcome::DidNotHappen),
            Err(err) => Err(err),
        }
    }
}

/// An ack's versioned delete met `NoNode`, though no earlier attempt of ours can
/// have deleted the slot: recovery moved it to `partial/<source>`. That is said
/// (`TakenBack`: it will be delivered again) only when the message is found there;
/// if it is gone from there too (already delivered again, or never moved), the
/// outcome is reported unknown, never as a failure that may not be true.
pub(super) async fn judge_gone_slot(
    store: &dyn Store,
    tree: &Tree,
    delivery: &Delivery,
) -> QueueError {
    let moved = Tree::node(&tree.partial(), &delivery.source);
    match store.get(&moved).await {
        Ok((data, _)) if Envelope::decode(&data).is_ok_and(|held| held.id == delivery.id) => {
            QueueError::TakenBack
        }
        Ok(_) | Err(StoreError::NoNode(_)) => QueueError::Unknown(format!(
            "{}: the slot is gone and {moved} does not hold the message: either an earlier \
             attempt of this ack landed, or recovery took the message back and it was \
             delivered again",
            delivery.slot
        )),
        Err(err) => QueueError::Unknown(format!(
            "{}: the slot is gone, and reading {moved} to tell why failed: {err}",
            delivery.slot
        )),
    }
}
