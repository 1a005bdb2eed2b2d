//! Recovery (the janitor), queue statistics and the list of what is left.
//!
//! A consumer whose `status` is gone is dead. What it held goes back, slot by slot
//! (`message` from a single take, `message-<n>` from a batch take):
//!
//! - its slot holds the only copy (its take completed): move the slot to
//!   `partial/<original name>`. With `multi`: delete the slot at its version and
//!   create the partial node, atomically. Without: fence the slot first (a versioned
//!   set that makes a zombie's late ack fail, and records a move token as its
//!   claim), create the partial node *claimed with that token*, delete the slot,
//!   then clear the claim. A crash anywhere leaves either a fenced slot and no copy
//!   (move again) or a fenced slot and a copy claimed with the token (keep the copy).
//! - its slot carries a claim token and the claimed source still exists (a claim
//!   take that did not finish, or a move cut short): keep the source, drop the
//!   slot. Without `multi`: fence the source first (a rewrite at its version), so
//!   the zombie's pending delete of it fails.
//! - a message claimed by it with no slot left (a claim take cut short, or a
//!   claim-protocol batch, which holds its messages where they are): delete its
//!   consumer node first (so a zombie can never create a slot for that claim),
//!   then roll the claim back with a versioned set, which also makes a zombie's
//!   late ack of the message (a delete at the claimed version) fail.
//!
//! One janitor at a time (an ephemeral lock node); any consumer runs it.

use std::collections::HashMap;

use serde::Serialize;

use super::envelope::{Envelope, FLAG_FROM_PARTIAL, FLAG_TAKEN_BACK};
use super::store::{CreateMode, MultiOp, Store, StoreError, StoreResult};
use super::{now_ms, sorted_messages, MessageId, QueueConfig, QueueError, Tree};

/// How many of the oldest waiting messages a pass checks for stale claims and
/// orphans: consumers take the oldest first, so what blocks them is found there.
const SCAN_LIMIT: usize = 64;

/// What one recovery pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// False when another janitor held the lock: this pass did nothing.
    pub ran: bool,
    /// Messages moved from dead consumers' slots to `partial/` (their names).
    pub moved_to_partial: Vec<String>,
    /// Claims of dead consumers rolled back (the message is takeable again).
    pub claims_rolled_back: usize,
    /// Empty produce orphans older than the grace period, deleted.
    pub orphans_deleted: usize,
    /// Empty consumer nodes of dead consumers, deleted.
    pub consumers_removed: usize,
    /// Steps that failed (retried by the next pass).
    pub errors: Vec<String>,
}

/// Counts, as of one look at the tree (not a snapshot: the queue moves meanwhile).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Nodes in `messages/` (including produces not set yet).
    pub messages: u64,
    /// Nodes in `partial/`.
    pub partial: u64,
    /// Messages held by consumers (taken, not acknowledged): one per slot.
    pub in_flight: u64,
    /// Consumers alive (with a `status`).
    pub consumers: u64,
}

pub async fn stats(store: &dyn Store, config: &QueueConfig) -> Result<QueueStats, QueueError> {
    let tree = Tree::new(config);
    let count = |children: StoreResult<Vec<String>>| match children {
        Ok(children) => Ok(children.len() as u64),
        Err(StoreError::NoNode(_)) => Ok(0),
        Err(err) => Err(err),
    };
    let mut stats = QueueStats {
        messages: count(store.children(&tree.messages()).await)?,
        partial: count(store.children(&tree.partial()).await)?,
        ..QueueStats::default()
    };
    let consumers = match store.children(&tree.consumers()).await {
        Ok(children) => children,
        Err(StoreError::NoNode(_)) => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    for name in consumers {
        let Some(id) = name.strip_prefix("consumer-") else { continue };
        if store.exists(&tree.status(id)).await?.is_some() {
            stats.consumers += 1;
        }
        match store.children(&tree.consumer(id)).await {
            Ok(children) => {
                stats.in_flight += children.iter().filter(|name| Tree::is_slot(name)).count() as u64
            }
            Err(StoreError::NoNode(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(stats)
}

/// Where in the tree a message was found by [`leftovers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftoverPlace {
    /// In `messages/`: waiting to be taken.
    Waiting,
    /// In `partial/`: taken back from a dead consumer, waiting to be taken again.
    Partial,
    /// In a slot of this consumer (its id): taken, not acknowledged.
    Held { consumer: String },
}

/// A message still in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub id: MessageId,
    /// The node that holds it.
    pub path: String,
    pub place: LeftoverPlace,
}

/// What [`leftovers`] found, as of one walk of the tree (not a snapshot: the
/// queue moves meanwhile).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Every message found, waiting first, then in `partial/`, then held.
    pub messages: Vec<Leftover>,
    /// Nodes that could not be listed or read (a store error other than "no such
    /// node"): whatever they hold is missing from `messages`.
    pub unreadable: Vec<String>,
}

/// Lists every message left in the queue: in `messages/`, in `partial/` and in
/// the consumers' slots. This is what a harness needs when a drain runs out of
/// time, to call what is left "stuck" rather than "lost", without walking the
/// tree's layout itself.
///
/// Best effort by design, since it is asked when the queue may be unhealthy: a
/// node that is gone by the time it is read was taken meanwhile and is skipped; a
/// node that holds no message (a produce not set yet) is skipped; a store error
/// does not end the walk but names the node in [`Leftovers::unreadable`].
pub async fn leftovers(store: &dyn Store, config: &QueueConfig) -> Leftovers {
    let tree = Tree::new(config);
    let mut found = Leftovers::default();
    let mut nodes: Vec<(String, LeftoverPlace)> = Vec::new();
    for (dir, place) in
        [(tree.messages(), LeftoverPlace::Waiting), (tree.partial(), LeftoverPlace::Partial)]
    {
        for name in found.children(store, &dir).await {
            nodes.push((Tree::node(&dir, &name), place.clone()));
        }
    }
    for consumer in found.children(store, &tree.consumers()).await {
        let node = Tree::node(&tree.consumers(), &consumer);
        let id = consumer.strip_prefix("consumer-").unwrap_or(&consumer).to_owned();
        for slot in found.children(store, &node).await.into_iter().filter(|n| Tree::is_slot(n)) {
            nodes.push((Tree::node(&node, &slot), LeftoverPlace::Held { consumer: id.clone() }));
        }
    }
    for (path, place) in nodes {
        match store.get(&path).await {
            Ok((data, _)) => {
                if let Ok(envelope) = Envelope::decode(&data) {
                    found.messages.push(Leftover { id: envelope.id, path, place });
                }
            }
            Err(StoreError::NoNode(_)) => {}
            Err(_) => found.unreadable.push(path),
        }
    }
    found
}

impl Leftovers {
    /// The children of `dir`, or none (noted when it was an error, not absence).
    async fn children(&mut self, store: &dyn Store, dir: &str) -> Vec<String> {
        match store.children(dir).await {
            Ok(children) => children,
            Err(StoreError::NoNode(_)) => Vec::new(),
            Err(_) => {
                self.unreadable.push(dir.to_owned());
                Vec::new()
            }
        }
    }
}

/// One recovery pass. Returns at once (with `ran: false`) if another janitor is at work.
pub async fn recover(
    store: &dyn Store,
    config: &QueueConfig,
) -> Result<RecoveryReport, QueueError> {
    let tree = Tree::new(config);
    let lock = tree.janitor();
    let ours = match store.create(&lock, b"", CreateMode::Ephemeral).await {
        Ok(_) => true,
        Err(StoreError::NodeExists(_)) | Err(StoreError::Unknown(_)) => {
            // After an unknown outcome the lock may be ours already.
            match store.exists(&lock).await {
                Ok(Some(stat)) => {
                    store.session_id() != 0 && stat.ephemeral_owner == store.session_id()
                }
                Ok(None) => false,
                Err(err) => return Err(err.into()),
            }
        }
        Err(StoreError::NoNode(_)) => return Ok(RecoveryReport::default()), // no queue here yet
        Err(err) => return Err(err.into()),
    };
    if !ours {
        return Ok(RecoveryReport::default());
    }
    let mut janitor = Janitor {
        store,
        tree: &tree,
        config,
        alive: HashMap::new(),
        report: RecoveryReport::default(),
    };
    janitor.report.ran = true;
    let result = janitor.pass().await;
    let _ = store.delete(&lock, None).await;
    result.map_err(QueueError::from)?;
    if !janitor.report.moved_to_partial.is_empty() || janitor.report.claims_rolled_back > 0 {
        tracing::info!(?janitor.report, "recovery pass");
    }
    Ok(janitor.report)
}

struct Janitor<'a> {
    store: &'a dyn Store,
    tree: &'a Tree,
    config: &'a QueueConfig,
    /// Consumer id -> has a `status`, as found this pass.
    alive: HashMap<String, bool>,
    report: RecoveryReport,
}

impl Janitor<'_> {
    async fn pass(&mut self) -> StoreResult<()> {
        let grace = self.config.orphan_grace.as_millis() as i64;
        let consumers = match self.store.children(&self.tree.consumers()).await {
            Ok(children) => children,
            Err(StoreError::NoNode(_)) => return Ok(()),
            Err(err) => return Err(err),
        };
        for name in consumers {
            let Some(id) = name.strip_prefix("consumer-") else { continue };
            if self.is_alive(id).await? {
                continue;
            }
            // A single take holds `message`, a batch take `message-<n>` each.
            let node = self.tree.consumer(id);
            let slots: Vec<String> = match self.store.children(&node).await {
                Ok(children) => children.into_iter().filter(|name| Tree::is_slot(name)).collect(),
                Err(StoreError::NoNode(_)) => continue,
                Err(err) => return Err(err),
            };
            if slots.is_empty() {
                if let Some(stat) = self.store.exists(&node).await? {
                    if stat.num_children == 0 && now_ms() - stat.ctime_ms > grace {
                        match self.store.delete(&node, Some(stat.version)).await {
                            Ok(()) => self.report.consumers_removed += 1,
                            Err(err) if err.is_unknown_outcome() => return Err(err),
                            Err(_) => {}
                        }
                    }
                }
                continue;
            }
            for name in slots {
                let slot = Tree::node(&node, &name);
                match self.store.get(&slot).await {
                    Ok((data, stat)) => {
                        if let Err(err) = self.recover_slot(id, &slot, &data, stat.version).await {
                            self.report.errors.push(format!("{slot}: {err}"));
                        }
                    }
                    Err(StoreError::NoNode(_)) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        for (dir, limit) in [(self.tree.partial(), usize::MAX), (self.tree.messages(), SCAN_LIMIT)]
        {
            let names = match self.store.children(&dir).await {
                Ok(children) => sorted_messages(children),
                Err(StoreError::NoNode(_)) => continue,
                Err(err) => return Err(err),
            };
            for name in names.into_iter().take(limit) {
                let path = Tree::node(&dir, &name);
                let (data, stat) = match self.store.get(&path).await {
                    Ok(found) => found,
                    Err(StoreError::NoNode(_)) => continue,
                    Err(err) => return Err(err),
                };
                if data.is_empty() {
                    if now_ms() - stat.ctime_ms > grace {
                        // Versioned: a producer's set that lands first wins.
                        if self.store.delete(&path, Some(0)).await.is_ok() {
                            self.report.orphans_deleted += 1;
                        }
                    }
                    continue;
                }
                let Ok(envelope) = Envelope::decode(&data) else { continue };
                let Some(claimer) = envelope.claimer().map(str::to_owned) else { continue };
                if self.is_alive(&claimer).await? {
                    continue;
                }
                if let Err(err) =
                    self.roll_back_claim(&claimer, &path, &envelope, stat.version).await
                {
                    self.report.errors.push(format!("{path}: {err}"));
                }
            }
        }
        Ok(())
    }

    async fn is_alive(&mut self, id: &str) -> StoreResult<bool> {
        if let Some(alive) = self.alive.get(id) {
            return Ok(*alive);
        }
        let alive = self.store.exists(&self.tree.status(id)).await?.is_some();
        self.alive.insert(id.to_owned(), alive);
        Ok(alive)
    }

    /// A dead consumer's claim with no slot: remove the consumer node first (its
    /// zombie can then never create the slot), then clear the claim.
    async fn roll_back_claim(
        &mut self,
        claimer: &str,
        path: &str,
        envelope: &Envelope,
        version: i32,
    ) -> StoreResult<()> {
        if self.store.exists(&self.tree.slot(claimer)).await?.is_some() {
            return Ok(()); // the slot goes first (next pass)
        }
        match self.store.delete(&self.tree.consumer(claimer), None).await {
            Ok(()) => self.report.consumers_removed += 1,
            Err(StoreError::NoNode(_)) => {}
            Err(StoreError::NotEmpty(_)) => return Ok(()), // a slot appeared: next pass
            Err(err) => return Err(err),
        }
        self.store.set(path, &envelope.with_claim("").encode(), Some(version)).await?;
        self.report.claims_rolled_back += 1;
        Ok(())
    }

    async fn recover_slot(
        &mut self,
        id: &str,
        slot: &str,
        data: &[u8],
        slot_version: i32,
    ) -> StoreResult<()> {
        let envelope = Envelope::decode(data)
            .map_err(|err| StoreError::Refused(format!("corrupt slot: {err}")))?;
        let name = envelope.source.clone();
        if name.is_empty() || name.contains('/') {
            return Err(StoreError::Refused(format!("slot names no valid source ({name:?})")));
        }
        let partial = Tree::node(&self.tree.partial(), &name);
        if !envelope.claim.is_empty() {
            let source_dir = if envelope.has_flag(FLAG_FROM_PARTIAL) {
                self.tree.partial()
            } else {
                self.tree.messages()
            };
            let mut candidates = vec![Tree::node(&source_dir, &name)];
            if !candidates.contains(&partial) {
                candidates.push(partial.clone());
            }
            for candidate in candidates {
                let (copy, stat) = match self.store.get(&candidate).await {
                    Ok(found) => found,
                    Err(StoreError::NoNode(_)) => continue,
                    Err(err) => return Err(err),
                };
                match Envelope::decode(&copy) {
                    Ok(copy) if copy.claim == envelope.claim => {
                        return self
                            .keep_copy(slot, slot_version, &candidate, &copy, stat.version)
                            .await
                    }
                    _ => continue,
                }
            }
        }
        self.move_slot(id, slot, slot_version, envelope, &partial).await
    }

    /// The claimed copy at `copy_path` is the message; the slot is a stale duplicate.
    async fn keep_copy(
        &mut self,
        slot: &str,
        slot_version: i32,
        copy_path: &str,
        copy: &Envelope,
        copy_version: i32,
    ) -> StoreResult<()> {
        let released = copy.with_claim("").encode();
        if self.store.supports_multi() {
            self.store
                .multi(&[
                    MultiOp::Delete { path: slot.to_owned(), version: Some(slot_version) },
                    MultiOp::Set {
                        path: copy_path.to_owned(),
                        data: released,
                        version: Some(copy_version),
                    },
                ])
                .await?;
        } else {
            let fenced = self.store.set(copy_path, &copy.encode(), Some(copy_version)).await?;
            self.store.delete(slot, Some(slot_version)).await?;
            self.store.set(copy_path, &released, Some(fenced.version)).await?;
        }
        self.report.claims_rolled_back += 1;
        Ok(())
    }

    /// The slot holds the only copy: move it to `partial/<original name>`.
    async fn move_slot(
        &mut self,
        id: &str,
        slot: &str,
        slot_version: i32,
        envelope: Envelope,
        target: &str,
    ) -> StoreResult<()> {
        let moved = Envelope { claim: String::new(), flags: 0, ..envelope.clone() };
        if self.store.supports_multi() {
            let result = self
                .store
                .multi(&[
                    MultiOp::Delete { path: slot.to_owned(), version: Some(slot_version) },
                    MultiOp::Create {
                        path: target.to_owned(),
                        data: moved.encode(),
                        mode: CreateMode::Persistent,
                    },
                ])
                .await;
            match result {
                Ok(_) => {}
                Err(StoreError::MultiFailed { index: 1, cause })
                    if matches!(*cause, StoreError::NodeExists(_)) =>
                {
                    let (existing, _) = self.store.get(target).await?;
                    match Envelope::decode(&existing) {
                        Ok(existing) if existing.id == envelope.id => {
                            self.store.delete(slot, Some(slot_version)).await?
                        }
                        _ => {
                            return Err(StoreError::Refused(format!(
                                "{target} holds another message; leaving the slot alone"
                            )))
                        }
                    }
                }
                Err(err) => return Err(err),
            }
        } else {
            let token = if envelope.claim.is_empty() {
                format!("{id}/move-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
            } else {
                envelope.claim.clone()
            };
            let fenced = Envelope {
                claim: token.clone(),
                flags: envelope.flags | FLAG_TAKEN_BACK,
                ..envelope
            };
            let fenced_version =
                self.store.set(slot, &fenced.encode(), Some(slot_version)).await?.version;
            let claimed_copy = moved.with_claim(&token);
            match self.store.create(target, &claimed_copy.encode(), CreateMode::Persistent).await {
                Ok(_) => {}
                Err(StoreError::NodeExists(_)) => {
                    let (existing, _) = self.store.get(target).await?;
                    if Envelope::decode(&existing).map(|e| e.claim != token).unwrap_or(true) {
                        return Err(StoreError::Refused(format!("{target} holds another message")));
                    }
                }
                Err(err) => return Err(err),
            }
            self.store.delete(slot, Some(fenced_version)).await?;
            let (_, stat) = self.store.get(target).await?;
            self.store.set(target, &moved.encode(), Some(stat.version)).await?;
        }
        let name = target.rsplit('/').next().unwrap_or(target).to_owned();
        tracing::info!(consumer = id, message = %name, "moved a dead consumer's message to partial");
        self.report.moved_to_partial.push(name);
        Ok(())
    }
}
