//! Sending messages: create an empty sequential node, then set its data at version 0.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::envelope::{Envelope, MAX_PAYLOAD};
use super::store::{CreateMode, Store, StoreError};
use super::{legacy, Access, Algorithm, MessageId, QueueConfig, QueueError, Session, Tree};

/// Sends messages to one queue. Rebuilds its session after expiry.
pub struct Producer {
    /// Behind a lock so that the sends of a batch can run at once and the first
    /// one to find the session expired renews it for all.
    session: tokio::sync::Mutex<Session>,
    tree: Tree,
    config: QueueConfig,
    /// "native" or "rest", for histories (does not change with renewals).
    access_path: &'static str,
}

impl Producer {
    pub async fn new(access: Access, config: QueueConfig) -> Result<Producer, QueueError> {
        let session = Session::open(access, config.clone()).await?;
        let tree = Tree::new(&session.config);
        tree.ensure(session.store.as_ref(), session.config.op_timeout).await?;
        let access_path = session.store.access_path();
        Ok(Producer { session: tokio::sync::Mutex::new(session), tree, config, access_path })
    }

    /// Sends `payload` under a new id; returns the id.
    pub async fn send(&mut self, payload: &[u8]) -> Result<MessageId, QueueError> {
        let id = MessageId::generate();
        self.send_with_id(&id, payload).await?;
        Ok(id)
    }

    /// Sends `payload` under `id` (the caller recorded the id before the send, as
    /// a history does). `Err(Unknown)`: the message may or may not be in the queue,
    /// and is never in it twice.
    pub async fn send_with_id(&mut self, id: &MessageId, payload: &[u8]) -> Result<(), QueueError> {
        self.produce(id, payload).await
    }

    /// Sends many messages at once, each by the same protocol as
    /// [`Producer::send_with_id`], their requests pipelined on one session: a
    /// write's latency is paid once per batch rather than once per message.
    /// Results come in the order of `messages`; order in the queue is not kept.
    pub async fn send_batch(
        &mut self,
        messages: &[(MessageId, &[u8])],
    ) -> Vec<Result<(), QueueError>> {
        let this = &*self;
        futures::future::join_all(messages.iter().map(|(id, payload)| this.produce(id, payload)))
            .await
    }

    async fn store(&self) -> Arc<dyn Store> {
        self.session.lock().await.store.clone()
    }

    /// After `err` on `seen`: renews the session if it is gone (unless another send
    /// already did), else waits a little before the caller retries.
    async fn recover_from(
        &self,
        seen: &Arc<dyn Store>,
        err: &StoreError,
    ) -> Result<(), QueueError> {
        if matches!(err, StoreError::SessionExpired(_)) || seen.is_dead() {
            let mut session = self.session.lock().await;
            if Arc::ptr_eq(&session.store, seen) {
                session.renew().await?;
            }
            Ok(())
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        }
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
        let prefix = format!("{}/message-", self.tree.messages());
        'create: loop {
            let store = self.store().await;
            if store.is_dead() {
                self.recover_from(&store, &StoreError::SessionExpired("dead".into())).await?;
                continue 'create;
            }
            // A create whose outcome is unknown is simply done again: the first one,
            // if it happened, left an empty orphan, never a message.
            let path = match store.create(&prefix, b"", CreateMode::PersistentSequential).await {
                Ok(path) => path,
                Err(err) if err.is_unknown_outcome() && Instant::now() < deadline => {
                    self.recover_from(&store, &err).await?;
                    continue 'create;
                }
                Err(err) => return Err(err.into()),
            };
            let mut retried = false;
            loop {
                // The node is persistent: after a renewal, the new session sets it.
                let store = self.store().await;
                match store.set(&path, &data, Some(0)).await {
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
                        self.recover_from(&store, &err).await?;
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
                    self.recover_from(&store, &err).await?;
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
