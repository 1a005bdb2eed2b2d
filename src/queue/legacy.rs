//! **UNSAFE.** A port of the original 2011 Python algorithm, kept behind
//! `--algorithm legacy` only so the chaos harness can show that its checker
//! catches real bugs. Never use it for messages that matter.
//!
//! Take: list `messages/`; for the lowest message, *get* it, *bump* its version
//! with a set (as a claim), *copy* it into the consumer's slot, then *delete* it at
//! the bumped version. A `NoNode` on that delete (somebody else got it) clears the
//! slot and returns nothing; a `BadVersion` moves on to the next message, leaving
//! the copy in the slot. Operations whose outcome is unknown are simply retried
//! (as the original's connection-loss retry did). Produce: create an empty
//! sequential node, then set its data, with no read-back.
//!
//! The flaws, both real:
//! - **loss**: a delete that landed but whose answer was lost (the server died
//!   first) is retried, meets `NoNode`, and the take clears the slot: the message
//!   is gone from the source and from the slot.
//! - **duplicate**: the bump is no claim. Two consumers can both bump (one after
//!   the other) and both copy; the first one's delete fails, and its slot keeps a
//!   copy of a message the second one delivers. If the first consumer then dies,
//!   recovery moves that copy to `partial/` and it is delivered again, after the
//!   second consumer's ack.
//!
//! The steps are public so tests can drive two consumers through the race.

use std::time::Duration;

use super::envelope::Envelope;
use super::store::{CreateMode, Store, StoreError, StoreResult};
use super::{retry_unknown, sorted_messages, QueueError, Tree};

/// Produce: create empty, then set (unversioned, no read-back).
pub async fn produce(store: &dyn Store, tree: &Tree, data: &[u8]) -> Result<(), QueueError> {
    let path = store
        .create(&format!("{}/message-", tree.messages()), b"", CreateMode::PersistentSequential)
        .await?;
    store.set(&path, data, None).await?;
    Ok(())
}

/// Step 1: read a message. `None` when gone or not set yet.
pub async fn read(store: &dyn Store, path: &str) -> StoreResult<Option<(Vec<u8>, i32)>> {
    match store.get(path).await {
        Ok((data, _)) if data.is_empty() => Ok(None),
        Ok((data, stat)) => Ok(Some((data, stat.version))),
        Err(StoreError::NoNode(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Step 2: "claim" it by bumping its version (a set at the version read).
/// Returns the new version.
pub async fn bump(store: &dyn Store, path: &str, data: &[u8], version: i32) -> StoreResult<i32> {
    Ok(store.set(path, data, Some(version)).await?.version)
}

/// Step 3: copy it into the consumer's slot (created on first use, then overwritten).
/// The copy records the source name (recovery puts it back under that name).
pub async fn copy(store: &dyn Store, slot: &str, name: &str, data: &[u8]) -> StoreResult<Envelope> {
    let mut envelope =
        Envelope::decode(data).map_err(|err| StoreError::Refused(format!("{name}: {err}")))?;
    envelope.source = name.to_owned();
    envelope.claim.clear();
    let copy = envelope.encode();
    match store.set(slot, &copy, None).await {
        Ok(_) => {}
        Err(StoreError::NoNode(_)) => {
            store.create(slot, &copy, CreateMode::Persistent).await?;
        }
        Err(err) => return Err(err),
    }
    Ok(envelope)
}

/// What the delete step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted: the take delivers the copy.
    Taken,
    /// `NoNode`: "somebody else got it"; the slot was cleared.
    Gone,
    /// `BadVersion`: move on to the next message (the slot keeps its copy).
    Raced,
}

/// Step 4: delete the source at the bumped version, retrying unknown outcomes for
/// up to `budget`; `NoNode` clears the slot.
pub async fn delete(
    store: &dyn Store,
    path: &str,
    bumped: i32,
    slot: &str,
    budget: Duration,
) -> StoreResult<DeleteOutcome> {
    match retry_unknown(budget, || store.delete(path, Some(bumped))).await {
        Ok(()) => Ok(DeleteOutcome::Taken),
        Err(StoreError::NoNode(_)) => {
            retry_unknown(budget, || async {
                match store.delete(slot, None).await {
                    Ok(()) | Err(StoreError::NoNode(_)) => Ok(()),
                    Err(err) => Err(err),
                }
            })
            .await?;
            Ok(DeleteOutcome::Gone)
        }
        Err(StoreError::BadVersion(_)) => Ok(DeleteOutcome::Raced),
        Err(err) => Err(err),
    }
}

/// One legacy take over `messages/` (the original knew no `partial/` priority; it
/// takes what recovery puts there after the waiting messages).
pub async fn take(
    store: &dyn Store,
    tree: &Tree,
    slot: &str,
    budget: Duration,
) -> StoreResult<Option<Envelope>> {
    for dir in [tree.messages(), tree.partial()] {
        let names = match store.children(&dir).await {
            Ok(children) => sorted_messages(children),
            Err(StoreError::NoNode(_)) => continue,
            Err(err) => return Err(err),
        };
        for name in names {
            let path = Tree::node(&dir, &name);
            let Some((data, version)) = read(store, &path).await? else { continue };
            let bumped = match bump(store, &path, &data, version).await {
                Ok(bumped) => bumped,
                Err(StoreError::NoNode(_) | StoreError::BadVersion(_)) => continue,
                Err(err) => return Err(err),
            };
            let envelope = copy(store, slot, &name, &data).await?;
            match delete(store, &path, bumped, slot, budget).await? {
                DeleteOutcome::Taken => return Ok(Some(envelope)),
                DeleteOutcome::Gone => return Ok(None),
                DeleteOutcome::Raced => continue,
            }
        }
    }
    Ok(None)
}
