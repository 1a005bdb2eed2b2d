//! Sending messages: create an empty sequential node, then set its data at version 0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::depth::{DepthGauge, Room};
use super::envelope::{Envelope, MAX_PAYLOAD};
use super::store::{CreateMode, MultiOp, Store, StoreError};
use super::{
    legacy, Access, Algorithm, MessageId, QueueConfig, QueueError, Session, Tree, MULTI_BYTES,
    OP_OVERHEAD,
};

/// At most this many messages in one batch `multi`.
const MULTI_MESSAGES: usize = 256;

/// Sends messages to one queue. Rebuilds its session after expiry.
pub struct Producer {
    /// Behind a lock so that the sends of a batch can run at once and the first
    /// one to find the session expired renews it for all.
    session: tokio::sync::Mutex<Session>,
    tree: Tree,
    config: QueueConfig,
    /// "native" or "rest", for histories (does not change with renewals).
    access_path: &'static str,
    /// Refuses sends past [`QueueConfig::max_depth`].
    depth: DepthGauge,
    /// Renewals that ran out of time, and why the last one failed: the sends that
    /// queued behind a renewal of the same session share its failure rather than
    /// each spending a whole retry budget again, one after the other.
    failed_renewals: AtomicU64,
    last_renewal_error: std::sync::Mutex<String>,
}

impl Producer {
    pub async fn new(access: Access, config: QueueConfig) -> Result<Producer, QueueError> {
        let session = Session::open(access, config.clone()).await?;
        let tree = Tree::new(&session.config);
        tree.ensure(session.store.as_ref(), session.config.op_timeout).await?;
        let access_path = session.store.access_path();
        Ok(Producer {
            session: tokio::sync::Mutex::new(session),
            tree,
            depth: DepthGauge::new(config.max_depth),
            config,
            access_path,
            failed_renewals: AtomicU64::new(0),
            last_renewal_error: std::sync::Mutex::new(String::new()),
        })
    }

    /// Sends `payload` under a new id; returns the id.
    pub async fn send(&mut self, payload: &[u8]) -> Result<MessageId, QueueError> {
        let id = MessageId::generate();
        self.send_with_id(&id, payload).await?;
        Ok(id)
    }

    /// Sends `payload` under `id` (the caller recorded the id before the send, as
    /// a history does). `Err(Unknown)`: the message may or may not be in the queue,
    /// and is never in it twice. `Err(QueueFull)`: nothing was written.
    pub async fn send_with_id(&mut self, id: &MessageId, payload: &[u8]) -> Result<(), QueueError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(QueueError::TooLarge { size: payload.len(), limit: MAX_PAYLOAD });
        }
        let room = self.room(1).await;
        if room.allowed == 0 {
            return Err(self.full(room));
        }
        self.produce(id, payload).await
    }

    /// How many of `wanted` messages fit under the depth ceiling now.
    async fn room(&mut self, wanted: usize) -> Room {
        let store = self.store().await;
        self.depth.admit(store.as_ref(), &self.tree.messages(), wanted).await
    }

    fn full(&self, room: Room) -> QueueError {
        QueueError::QueueFull {
            depth: room.depth + room.allowed as u64,
            limit: self.depth.max_depth(),
            queue: self.tree.messages(),
        }
    }

    /// Sends many messages at once. Where the store has `multi` (native), a batch
    /// is two transactions in all, whatever its size: one `multi` creates an empty
    /// sequential node per message, a second sets them all at version 0. Each
    /// message keeps the guarantees of [`Producer::send_with_id`]: should either
    /// `multi` fail or end unknown, every message of the batch is finished by
    /// itself with the single-message protocol, starting from the node the batch
    /// created for it. Without `multi` (REST) the single sends are pipelined.
    /// Results come in the order of `messages`; order in the queue is not kept.
    /// Near the depth ceiling the first messages that fit are sent and the rest
    /// refused with [`QueueError::QueueFull`] (nothing of them written).
    pub async fn send_batch(
        &mut self,
        messages: &[(MessageId, &[u8])],
    ) -> Vec<Result<(), QueueError>> {
        let mut results: Vec<Option<Result<(), QueueError>>> =
            messages.iter().map(|_| None).collect();
        let fits = |payload: &[u8]| payload.len() <= MAX_PAYLOAD;
        let room = self.room(messages.iter().filter(|(_, payload)| fits(payload)).count()).await;
        let mut admitted = Vec::with_capacity(room.allowed);
        for (index, (id, payload)) in messages.iter().enumerate() {
            if !fits(payload) {
                results[index] =
                    Some(Err(QueueError::TooLarge { size: payload.len(), limit: MAX_PAYLOAD }));
            } else if admitted.len() < room.allowed {
                admitted.push((index, *id, *payload));
            } else {
                results[index] = Some(Err(self.full(room)));
            }
        }
        for (index, outcome) in self.send_admitted(&admitted).await {
            results[index] = Some(outcome);
        }
        results.into_iter().map(|result| result.expect("every message has an outcome")).collect()
    }

    /// [`Producer::send_batch`] once the checks let `admitted` through: each with
    /// the index of its result.
    async fn send_admitted(
        &self,
        admitted: &[(usize, MessageId, &[u8])],
    ) -> Vec<(usize, Result<(), QueueError>)> {
        let batched =
            self.config.algorithm == Algorithm::Safe && self.store().await.supports_multi();
        if !batched {
            let sent = admitted.iter().map(|(index, id, payload)| async move {
                (*index, self.produce(id, payload).await)
            });
            return futures::future::join_all(sent).await;
        }
        let mut chunks: Vec<Vec<(usize, MessageId, Vec<u8>)>> = Vec::new();
        let mut chunk_bytes = 0;
        for (index, id, payload) in admitted {
            let data = Envelope::new(*id, payload).encode();
            let cost = data.len() + OP_OVERHEAD;
            match chunks.last_mut() {
                Some(chunk)
                    if chunk.len() < MULTI_MESSAGES && chunk_bytes + cost <= MULTI_BYTES =>
                {
                    chunk_bytes += cost;
                    chunk.push((*index, *id, data));
                }
                _ => {
                    chunk_bytes = cost;
                    chunks.push(vec![(*index, *id, data)]);
                }
            }
        }
        let done =
            futures::future::join_all(chunks.iter().map(|chunk| self.produce_multi(chunk))).await;
        chunks
            .iter()
            .zip(done)
            .flat_map(|(chunk, outcomes)| {
                chunk.iter().map(|(index, _, _)| *index).zip(outcomes).collect::<Vec<_>>()
            })
            .collect()
    }

    /// One batch in two `multi`s; see [`Producer::send_batch`].
    async fn produce_multi(
        &self,
        batch: &[(usize, MessageId, Vec<u8>)],
    ) -> Vec<Result<(), QueueError>> {
        let deadline = Instant::now() + self.config.retry_budget;
        let store = self.store().await;
        let prefix = format!("{}/message-", self.tree.messages());
        let creates: Vec<MultiOp> = batch
            .iter()
            .map(|_| MultiOp::Create {
                path: prefix.clone(),
                data: Vec::new(),
                mode: CreateMode::PersistentSequential,
            })
            .collect();
        let created = match store.multi(&creates).await {
            Ok(paths) if paths.len() == batch.len() => Some(paths),
            Ok(_) => None,
            Err(err) => {
                // Unknown: the nodes, if created, are empty orphans, never messages.
                tracing::debug!("batch create: {err}; sending one by one");
                None
            }
        };
        let Some(paths) = created else {
            return futures::future::join_all(
                batch.iter().map(|(_, id, data)| self.produce_encoded(id, data, None, deadline)),
            )
            .await;
        };
        let sets: Vec<MultiOp> = batch
            .iter()
            .zip(&paths)
            .map(|((_, _, data), path)| MultiOp::Set {
                path: path.clone(),
                data: data.clone(),
                version: Some(0),
            })
            .collect();
        match store.multi(&sets).await {
            Ok(_) => batch.iter().map(|_| Ok(())).collect(),
            Err(err) => {
                // Definite: no set happened. Unknown: all of them may have.
                let maybe_set = err.is_unknown_outcome();
                tracing::debug!("batch set: {err}; finishing one by one");
                futures::future::join_all(batch.iter().zip(paths).map(|((_, id, data), path)| {
                    self.produce_encoded(id, data, Some((path, maybe_set)), deadline)
                }))
                .await
            }
        }
    }

    async fn store(&self) -> Arc<dyn Store> {
        self.session.lock().await.store.clone()
    }

    /// After `err` on `seen`: renews the session if it is gone (unless another send
    /// already did), else waits a little before the caller retries. A renewal
    /// stops at the caller's `deadline`; the sends waiting behind a renewal of the
    /// same session that failed fail with it at once.
    async fn recover_from(
        &self,
        seen: &Arc<dyn Store>,
        err: &StoreError,
        deadline: Instant,
    ) -> Result<(), QueueError> {
        if !(matches!(err, StoreError::SessionExpired(_)) || seen.is_dead()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(());
        }
        let failures_before = self.failed_renewals.load(Ordering::SeqCst);
        let mut session = self.session.lock().await;
        if !Arc::ptr_eq(&session.store, seen) {
            return Ok(());
        }
        if self.failed_renewals.load(Ordering::SeqCst) != failures_before {
            let reason = self.lock_last_renewal_error().clone();
            return Err(QueueError::Connect { target: session.access.target().into(), reason });
        }
        let renewed = session.renew_until(deadline).await;
        if let Err(err) = &renewed {
            *self.lock_last_renewal_error() = match err {
                QueueError::Connect { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            self.failed_renewals.fetch_add(1, Ordering::SeqCst);
        }
        renewed
    }

    fn lock_last_renewal_error(&self) -> std::sync::MutexGuard<'_, String> {
        self.last_renewal_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`Producer::recover_from`] once a write of this message may have landed: a
    /// session that cannot be renewed leaves its outcome unknown, not failed.
    async fn recover_in_doubt(
        &self,
        seen: &Arc<dyn Store>,
        err: &StoreError,
        deadline: Instant,
        path: &str,
    ) -> Result<(), QueueError> {
        self.recover_from(seen, err, deadline).await.map_err(|renewal| match renewal {
            QueueError::Connect { .. } => QueueError::Unknown(format!(
                "{path}: the set may have been applied ({err}), and then {renewal}"
            )),
            other => other,
        })
    }

    async fn produce(&self, id: &MessageId, payload: &[u8]) -> Result<(), QueueError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(QueueError::TooLarge { size: payload.len(), limit: MAX_PAYLOAD });
        }
        let data = Envelope::new(*id, payload).encode();
        if self.config.algorithm == Algorithm::Legacy {
            return legacy::produce(self.store().await.as_ref(), &self.tree, &data).await;
        }
        let deadline = Instant::now() + self.config.retry_budget;
        self.produce_encoded(id, &data, None, deadline).await
    }

    /// The single-message protocol for an encoded envelope. `created`: an empty
    /// node already created for this message (by a batch), and whether a set of it
    /// may already have landed.
    async fn produce_encoded(
        &self,
        id: &MessageId,
        data: &[u8],
        mut created: Option<(String, bool)>,
        deadline: Instant,
    ) -> Result<(), QueueError> {
        let prefix = format!("{}/message-", self.tree.messages());
        'create: loop {
            let (path, mut retried) = match created.take() {
                Some(node) => node,
                None => {
                    let store = self.store().await;
                    if store.is_dead() {
                        let dead = StoreError::SessionExpired("dead".into());
                        self.recover_from(&store, &dead, deadline).await?;
                        continue 'create;
                    }
                    // A create whose outcome is unknown is simply done again: the
                    // first one, if it happened, left an empty orphan, never a message.
                    match store.create(&prefix, b"", CreateMode::PersistentSequential).await {
                        Ok(path) => (path, false),
                        Err(err) if err.is_unknown_outcome() && Instant::now() < deadline => {
                            // Only an empty orphan can be left: a failed renewal is definite.
                            self.recover_from(&store, &err, deadline).await?;
                            continue 'create;
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            };
            loop {
                // The node is persistent: after a renewal, the new session sets it.
                let store = self.store().await;
                match store.set(&path, data, Some(0)).await {
                    Ok(_) => return Ok(()),
                    // Recovery deleted the empty node as an orphan before our first
                    // set arrived: nothing was written; start over.
                    Err(StoreError::NoNode(_)) if !retried => continue 'create,
                    Err(StoreError::NoNode(_)) => {
                        return Err(QueueError::Unknown(format!(
                            "{path}: a set retried after an unknown outcome found no node: \
                             either a consumer already took the message or it was removed \
                             as an orphan"
                        )))
                    }
                    Err(StoreError::BadVersion(_)) => {
                        return self.confirm(&path, id, deadline).await
                    }
                    Err(err) if err.is_unknown_outcome() && Instant::now() < deadline => {
                        retried = true;
                        self.recover_in_doubt(&store, &err, deadline, &path).await?;
                    }
                    Err(err) if err.is_unknown_outcome() => return Err(err.into()),
                    // Definite: the data was not written; an empty orphan is left.
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }

    /// A set met `BadVersion`: an earlier attempt of ours already wrote the node,
    /// if the node holds our id (it may since have been claimed: claims keep the id).
    async fn confirm(
        &self,
        path: &str,
        id: &MessageId,
        deadline: Instant,
    ) -> Result<(), QueueError> {
        loop {
            let store = self.store().await;
            match store.get(path).await {
                Ok((data, _)) => {
                    return match Envelope::decode(&data) {
                        Ok(envelope) if envelope.id == *id => Ok(()),
                        _ => Err(QueueError::Unknown(format!(
                            "{path} holds another message than the one this producer set"
                        ))),
                    }
                }
                Err(StoreError::NoNode(_)) => {
                    return Err(QueueError::Unknown(format!(
                        "{path}: the set was applied by an earlier attempt or the node was \
                         removed as an orphan, and the node is gone"
                    )))
                }
                Err(err) if err.is_unknown_outcome() && Instant::now() < deadline => {
                    self.recover_in_doubt(&store, &err, deadline, path).await?;
                }
                Err(err) => {
                    return Err(QueueError::Unknown(format!("{path}: read-back failed: {err}")))
                }
            }
        }
    }

    /// The access path in use ("native" or "rest").
    pub fn access_path(&self) -> &'static str {
        self.access_path
    }

    pub async fn close(self) {
        self.session.into_inner().store.close().await;
    }
}
