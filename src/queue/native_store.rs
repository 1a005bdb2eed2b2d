//! The native backend of [`Store`]: ZooKeeper's binary protocol.
//!
//! Three facts about `zookeeper-client` 0.11 shape this file:
//!
//! - It does not say whether a failed write happened. [`map_error`] sorts its errors
//!   into definite refusals and unknown outcomes, as measured (see DESIGN.md).
//! - Requests issued while disconnected are queued, not failed, so a call can hang
//!   until the session expires. Every call here is bounded by `op_timeout`; a call
//!   that runs out of time has an unknown outcome (it may still be sent later).
//! - A client closes its session (`CloseSession`) when its last clone is dropped,
//!   unless it was built `detached`. We always build detached clients: dropping one
//!   then behaves like a crashed process (the server expires the session after its
//!   timeout), which is what [`Store::abandon`] needs; a clean [`Store::close`]
//!   re-attaches to the session with a non-detached client and drops that, which
//!   sends `CloseSession`.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use zookeeper_client as zk;

use super::store::{CreateMode, MultiOp, NodeStat, Store, StoreError, StoreResult};

/// A [`Store`] over one ZooKeeper session.
pub struct NativeStore {
    /// `None` once closed or abandoned: later calls fail as `SessionExpired`, so a
    /// caller that still holds the store rebuilds it instead of using a dead session.
    client: Mutex<Option<zk::Client>>,
    /// Kept apart from the client so the session state can still be read after
    /// the client was dropped, and without locking.
    state: zk::StateWatcher,
    /// Copied out of the client so `session_id` works after `abandon`.
    session_id: i64,
    /// Needed to re-attach to the session for a clean close.
    connect_string: String,
    op_timeout: Duration,
}

impl NativeStore {
    /// Establishes a new session. `session_timeout` is what we ask for; the server
    /// clamps it to its configured range. Fails when no session can be established
    /// within `connect_timeout`.
    pub async fn connect(
        connect_string: &str,
        session_timeout: Duration,
        op_timeout: Duration,
        connect_timeout: Duration,
    ) -> StoreResult<NativeStore> {
        let connecting = zk::Client::connector()
            .with_session_timeout(session_timeout)
            .with_detached()
            .connect(connect_string);
        let client = match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => {
                return Err(StoreError::Unknown(format!(
                    "cannot establish a ZooKeeper session with {connect_string}: {err}"
                )))
            }
            Err(_) => {
                return Err(StoreError::Unknown(format!(
                    "no ZooKeeper session with {connect_string} within {connect_timeout:?}: \
                     is the ensemble running and does it have quorum?"
                )))
            }
        };
        Ok(NativeStore {
            state: client.state_watcher(),
            session_id: client.session_id().0,
            client: Mutex::new(Some(client)),
            connect_string: connect_string.to_owned(),
            op_timeout,
        })
    }

    /// Asks the server this session talks to to catch up with the leader: reads
    /// after it see every write committed before it. (REST has no such call, which
    /// is why this is not part of [`Store`].)
    pub async fn sync(&self, path: &str) -> StoreResult<()> {
        let client = self.client()?;
        self.bounded("sync", path, client.sync(path)).await
    }

    /// A clone of the live client (cheap: it is a handle), or `SessionExpired`.
    fn client(&self) -> StoreResult<zk::Client> {
        let guard = self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.as_ref() {
            Some(client) => Ok(client.clone()),
            None => Err(StoreError::SessionExpired("the session was closed or abandoned".into())),
        }
    }

    /// Bounds `future` by the operation timeout; running out of time is an unknown outcome.
    async fn bounded<T>(
        &self,
        what: &str,
        path: &str,
        future: impl std::future::Future<Output = Result<T, zk::Error>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.op_timeout, future).await {
            Ok(result) => result.map_err(|err| map_error(err, path)),
            Err(_) => Err(StoreError::Unknown(format!(
                "{what} {path}: no answer within {:?} (the request may still be applied)",
                self.op_timeout
            ))),
        }
    }
}

/// Sorts a client error into a definite refusal or an unknown outcome.
pub fn map_error(err: zk::Error, path: &str) -> StoreError {
    match err {
        zk::Error::NoNode => StoreError::NoNode(path.to_owned()),
        zk::Error::NodeExists => StoreError::NodeExists(path.to_owned()),
        zk::Error::BadVersion => StoreError::BadVersion(path.to_owned()),
        zk::Error::NotEmpty => StoreError::NotEmpty(path.to_owned()),
        zk::Error::NoChildrenForEphemerals
        | zk::Error::InvalidAcl
        | zk::Error::BadArguments(_)
        | zk::Error::NoAuth => StoreError::Refused(format!("{path}: {err}")),
        zk::Error::SessionExpired | zk::Error::ClientClosed => {
            StoreError::SessionExpired(format!("{path}: {err}"))
        }
        // ConnectionLoss, Custom (a reset connection), Timeout, Throttled,
        // SessionMoved, UnexpectedError and whatever a later version adds.
        other => StoreError::Unknown(format!("{path}: {other}")),
    }
}

fn stat(stat: &zk::Stat) -> NodeStat {
    NodeStat {
        version: stat.version,
        ctime_ms: stat.ctime,
        mtime_ms: stat.mtime,
        ephemeral_owner: stat.ephemeral_owner,
        data_length: stat.data_length,
        num_children: stat.num_children,
        czxid: stat.czxid,
    }
}

fn zk_mode(mode: CreateMode) -> zk::CreateMode {
    match mode {
        CreateMode::Persistent => zk::CreateMode::Persistent,
        CreateMode::PersistentSequential => zk::CreateMode::PersistentSequential,
        CreateMode::Ephemeral => zk::CreateMode::Ephemeral,
        CreateMode::EphemeralSequential => zk::CreateMode::EphemeralSequential,
    }
}

#[async_trait]
impl Store for NativeStore {
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> StoreResult<String> {
        let client = self.client()?;
        let options = zk_mode(mode).with_acls(zk::Acls::anyone_all());
        let (_, sequence) =
            self.bounded("create", path, client.create(path, data, &options)).await?;
        Ok(if mode.is_sequential() { format!("{path}{sequence}") } else { path.to_owned() })
    }

    async fn get(&self, path: &str) -> StoreResult<(Vec<u8>, NodeStat)> {
        let client = self.client()?;
        let (data, node) = self.bounded("get", path, client.get_data(path)).await?;
        Ok((data, stat(&node)))
    }

    async fn exists(&self, path: &str) -> StoreResult<Option<NodeStat>> {
        let client = self.client()?;
        let node = self.bounded("exists", path, client.check_stat(path)).await?;
        Ok(node.as_ref().map(stat))
    }

    async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> StoreResult<NodeStat> {
        let client = self.client()?;
        let node = self.bounded("set", path, client.set_data(path, data, version)).await?;
        Ok(stat(&node))
    }

    async fn delete(&self, path: &str, version: Option<i32>) -> StoreResult<()> {
        let client = self.client()?;
        self.bounded("delete", path, client.delete(path, version)).await
    }

    async fn children(&self, path: &str) -> StoreResult<Vec<String>> {
        let client = self.client()?;
        self.bounded("children", path, client.list_children(path)).await
    }

    fn supports_multi(&self) -> bool {
        true
    }

    async fn multi(&self, ops: &[MultiOp]) -> StoreResult<Vec<String>> {
        let client = self.client()?;
        let mut writer = client.new_multi_writer();
        let refused = |index: usize, err: zk::Error, path: &str| StoreError::MultiFailed {
            index,
            cause: Box::new(map_error(err, path)),
        };
        for (index, op) in ops.iter().enumerate() {
            let added = match op {
                MultiOp::Check { path, version } => {
                    writer.add_check_version(path, version.unwrap_or(-1)).map_err(|e| (e, path))
                }
                MultiOp::Create { path, data, mode } => writer
                    .add_create(path, data, &zk_mode(*mode).with_acls(zk::Acls::anyone_all()))
                    .map_err(|e| (e, path)),
                MultiOp::Set { path, data, version } => {
                    writer.add_set_data(path, data, *version).map_err(|e| (e, path))
                }
                MultiOp::Delete { path, version } => {
                    writer.add_delete(path, *version).map_err(|e| (e, path))
                }
            };
            if let Err((err, path)) = added {
                return Err(refused(index, err, path));
            }
        }
        let what = ops.first().map(MultiOp::path).unwrap_or("(empty)");
        let committed = tokio::time::timeout(self.op_timeout, writer.commit()).await;
        match committed {
            Ok(Ok(results)) => Ok(results
                .into_iter()
                .filter_map(|result| match result {
                    zk::MultiWriteResult::Create { path, .. } => Some(path),
                    _ => None,
                })
                .collect()),
            Ok(Err(zk::MultiWriteError::OperationFailed { index, source })) => {
                let path = ops.get(index).map(MultiOp::path).unwrap_or("?");
                match map_error(source, path) {
                    definite if !definite.is_unknown_outcome() => {
                        Err(StoreError::MultiFailed { index, cause: Box::new(definite) })
                    }
                    unknown => Err(unknown),
                }
            }
            Ok(Err(zk::MultiWriteError::RequestFailed { source })) => {
                Err(map_error(source, &format!("multi starting at {what}")))
            }
            Err(_) => Err(StoreError::Unknown(format!(
                "multi starting at {what}: no answer within {:?} (it may still be applied)",
                self.op_timeout
            ))),
        }
    }

    async fn wait_for_children(&self, path: &str, timeout: Duration) -> StoreResult<()> {
        self.wait_for_children_change(path, None, timeout).await
    }

    async fn wait_for_children_change(
        &self,
        path: &str,
        seen: Option<&[String]>,
        timeout: Duration,
    ) -> StoreResult<()> {
        let client = self.client()?;
        let (mut now, watcher) =
            self.bounded("watch children of", path, client.list_and_watch_children(path)).await?;
        if let Some(seen) = seen {
            let mut seen = seen.to_vec();
            seen.sort_unstable();
            now.sort_unstable();
            if seen != now {
                return Ok(());
            }
        }
        // Either event (a child change, or the session breaking) is a reason to look again.
        let _ = tokio::time::timeout(timeout, watcher.changed()).await;
        Ok(())
    }

    fn watches_data(&self) -> bool {
        true
    }

    async fn wait_for_data_change(
        &self,
        path: &str,
        version: i32,
        timeout: Duration,
    ) -> StoreResult<()> {
        let client = self.client()?;
        let (stat, watcher) =
            self.bounded("watch data of", path, client.check_and_watch_stat(path)).await?;
        // The watch is set in the same request that read the version, so a change
        // between the caller's read and now shows here, and one after it fires the
        // watch: no change is missed.
        if stat.is_none_or(|stat| stat.version != version) {
            return Ok(());
        }
        // A data change, a deletion, or the session breaking: all reasons to look again.
        let _ = tokio::time::timeout(timeout, watcher.changed()).await;
        Ok(())
    }

    fn session_id(&self) -> i64 {
        self.session_id
    }

    fn is_dead(&self) -> bool {
        let dropped = self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_none();
        dropped || self.state.peek_state().is_terminated()
    }

    async fn close(&self) {
        let taken = self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let Some(client) = taken else { return };
        if client.state().is_terminated() {
            return;
        }
        let session = client.session().clone();
        drop(client);
        // Our client is detached (it never sends CloseSession). Re-attach with a
        // client that is not, and drop it: that one closes the session, so the
        // ephemerals go now rather than after the session timeout.
        let reattach = zk::Client::connector().with_session(session).connect(&self.connect_string);
        if let Ok(Ok(closer)) = tokio::time::timeout(self.op_timeout, reattach).await {
            let mut state = closer.state_watcher();
            drop(closer);
            let _ = tokio::time::timeout(self.op_timeout, async {
                while !state.changed().await.is_terminated() {}
            })
            .await;
        }
    }

    fn abandon(&self) {
        // The client is detached: dropping the last handle ends the connection without
        // CloseSession, exactly like a crashed process.
        self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }

    fn access_path(&self) -> &'static str {
        "native"
    }
}
