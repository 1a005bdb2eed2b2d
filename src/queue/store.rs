//! The storage contract every queue algorithm is written against.
//!
//! Two backends implement [`Store`]: the native ZooKeeper client and the REST
//! gateway client. The queue's protocols are written once, over this trait, so the
//! same produce / take / ack / recover logic runs on both access paths.
//!
//! Every operation ends in one of three ways, and the error type keeps them apart:
//! done (`Ok`), definitely not done (every [`StoreError`] variant except
//! [`StoreError::Unknown`]), or *unknown* ([`StoreError::Unknown`]). Callers must never
//! treat an unknown outcome as a failure: the write may have happened.

use std::time::Duration;

use async_trait::async_trait;

/// What a ZooKeeper `Stat` says that the queue needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStat {
    /// Data version: the queue's versioned set / delete compare against it.
    pub version: i32,
    /// Creation time (ms since the epoch, server clock): orphan grace periods use it.
    pub ctime_ms: i64,
    /// Last modification time (ms since the epoch, server clock).
    pub mtime_ms: i64,
    /// Session that owns the node if it is ephemeral, else 0.
    pub ephemeral_owner: i64,
    /// Length of the data in bytes.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// Zxid of the creation: orders nodes across parents.
    pub czxid: i64,
}

/// How a node is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    Persistent,
    PersistentSequential,
    /// Bound to the store's session (native) or gateway session (REST).
    Ephemeral,
    EphemeralSequential,
}

impl CreateMode {
    pub fn is_sequential(self) -> bool {
        matches!(self, Self::PersistentSequential | Self::EphemeralSequential)
    }
    pub fn is_ephemeral(self) -> bool {
        matches!(self, Self::Ephemeral | Self::EphemeralSequential)
    }
}

/// One operation of an atomic [`Store::multi`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// Fails the whole transaction unless `path` exists (at `version`, if given).
    Check {
        path: String,
        version: Option<i32>,
    },
    Create {
        path: String,
        data: Vec<u8>,
        mode: CreateMode,
    },
    Set {
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    },
    Delete {
        path: String,
        version: Option<i32>,
    },
}

impl MultiOp {
    /// The node the operation is about.
    pub fn path(&self) -> &str {
        match self {
            Self::Check { path, .. }
            | Self::Create { path, .. }
            | Self::Set { path, .. }
            | Self::Delete { path, .. } => path,
        }
    }
}

/// How an operation definitely failed, or that its outcome is unknown.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0}: no such node")]
    NoNode(String),
    #[error("{0}: node already exists")]
    NodeExists(String),
    #[error("{0}: bad version")]
    BadVersion(String),
    #[error("{0}: node has children")]
    NotEmpty(String),
    /// Any other definite refusal (bad arguments, no auth, invalid ACL, ephemeral
    /// parent, unknown gateway session). Nothing was written.
    #[error("refused: {0}")]
    Refused(String),
    /// For [`Store::multi`]: the transaction failed as a whole; `index` names the
    /// first operation that failed and `cause` why. Nothing was written.
    #[error("transaction failed at operation {index}: {cause}")]
    MultiFailed { index: usize, cause: Box<StoreError> },
    /// The outcome is unknown: connection loss, timeout, session expiry, gateway 502.
    /// The operation may or may not have taken effect.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The session is gone for good: the store must be rebuilt (a new client, a new
    /// gateway session). Whatever was in flight has an unknown outcome.
    #[error("session expired: {0}")]
    SessionExpired(String),
}

impl StoreError {
    /// True when the operation may have taken effect.
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, Self::Unknown(_) | Self::SessionExpired(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The low-level operations the queue's protocols need. Paths are absolute and
/// already include the queue's chroot prefix.
#[async_trait]
pub trait Store: Send + Sync {
    /// Creates `path`; returns the created path (with its 10-digit suffix if sequential).
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> StoreResult<String>;
    async fn get(&self, path: &str) -> StoreResult<(Vec<u8>, NodeStat)>;
    async fn exists(&self, path: &str) -> StoreResult<Option<NodeStat>>;
    async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> StoreResult<NodeStat>;
    async fn delete(&self, path: &str, version: Option<i32>) -> StoreResult<()>;
    async fn children(&self, path: &str) -> StoreResult<Vec<String>>;
    /// True when [`Store::multi`] is atomic on this backend. REST has it only through
    /// zkmq's gateway extension.
    fn supports_multi(&self) -> bool;
    /// Runs all operations atomically, or none; returns the paths its
    /// [`MultiOp::Create`]s created, in order (a batch of sequential creates needs
    /// its names). Backends without `multi` return `StoreError::Refused`.
    async fn multi(&self, ops: &[MultiOp]) -> StoreResult<Vec<String>>;
    /// Waits until the children of `path` may have changed, or `timeout` passes.
    /// Native: a one-shot children watch. REST: sleeps the poll interval (no watches).
    async fn wait_for_children(&self, path: &str, timeout: Duration) -> StoreResult<()>;
    /// Like [`Store::wait_for_children`], but without the race between a caller's
    /// listing and its watch: returns at once when the children of `path` now differ
    /// from `seen` (in any order). Native: one list-and-watch. The default (for
    /// backends without watches) ignores `seen` and waits as `wait_for_children` does.
    async fn wait_for_children_change(
        &self,
        path: &str,
        seen: Option<&[String]>,
        timeout: Duration,
    ) -> StoreResult<()> {
        let _ = seen;
        self.wait_for_children(path, timeout).await
    }
    /// True when [`Store::wait_for_data_change`] is woken by the change itself (a
    /// watch), not by a timer: a caller can then wait on it without polling.
    fn watches_data(&self) -> bool {
        false
    }
    /// Waits until the node at `path` no longer has data version `version` (its
    /// data was set, or it was deleted), or `timeout` passes. Native: one
    /// exists-and-watch, which returns at once when the node already changed. The
    /// default (backends without watches, see [`Store::watches_data`]) only sleeps.
    async fn wait_for_data_change(
        &self,
        path: &str,
        version: i32,
        timeout: Duration,
    ) -> StoreResult<()> {
        let _ = (path, version);
        tokio::time::sleep(timeout).await;
        Ok(())
    }
    /// The session this store's ephemerals belong to; 0 if none.
    fn session_id(&self) -> i64;
    /// True once the session has expired or the store was closed: callers build a new one.
    fn is_dead(&self) -> bool;
    /// Closes the session cleanly (its ephemerals go at once).
    async fn close(&self);
    /// Drops the session without closing it, as a crashed process would: the server
    /// removes its ephemerals only when the session times out.
    fn abandon(&self);
    /// A short name for logs and history: "native" or "rest".
    fn access_path(&self) -> &'static str;
}
