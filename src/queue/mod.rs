//! The queue: tree layout, message envelope, producer, consumer and recovery.
//!
//! ```text
//! <chroot>/queue/messages/message-<seq10>         waiting messages
//! <chroot>/queue/partial/message-<seq10>          taken back from a dead consumer; taken first
//! <chroot>/queue/consumers/consumer-<id>/status   ephemeral: the consumer is alive
//! <chroot>/queue/consumers/consumer-<id>/message  the message a single take holds
//! <chroot>/queue/consumers/consumer-<id>/message-<n>  one per message a batch take holds
//! <chroot>/queue/janitor                          ephemeral lock: one recovery pass at a time
//! ```
//!
//! Every protocol is written once, over [`Store`], and every step is chosen so that
//! a crash between any two steps leaves a state recovery can read unambiguously:
//!
//! - **produce**: create an *empty* sequential node, then set its data at version 0.
//!   A retried create leaves an empty orphan (skipped, deleted after
//!   [`QueueConfig::orphan_grace`]), never a second copy; a retried set that meets
//!   `BadVersion` is read back and confirmed by message id. Past
//!   [`QueueConfig::max_depth`] waiting messages a send is refused before anything
//!   is written ([`QueueError::QueueFull`]): a deep queue must not run the
//!   servers out of heap (see `depth.rs`).
//! - **take** ([`TakeProtocol::Multi`], native): one `multi` that checks the
//!   consumer's own `status`, deletes the source at the version read and creates the
//!   consumer's `message` slot. A batch take ([`Consumer::take_batch`]) does the
//!   same for many messages in one `multi`, each into a slot of its own
//!   (`message-<n>`). An unknown outcome is settled by a write that conflicts with
//!   the take (a versioned set of its source with the data it holds), then a read
//!   of the slot that the write's answer orders; never by a read alone, which a
//!   lagging server answers stale (see `consumer/doubt.rs`).
//!
//! Reads that settle an outcome elsewhere come after a write of ours in the same
//! session, whose answer orders them: the producer's confirm after `BadVersion`,
//! the claim protocol's slot read after `NodeExists` and after a retried source
//! delete's `NoNode`, recovery's reads after `NodeExists`. The one read-back that
//! follows no such write, the claim protocol's after an unknown claim, can only
//! miss our own claim: the message then waits until a later look finds our token
//! and finishes the take (liveness, never a loss or a duplicate).
//! - **take** ([`TakeProtocol::Claim`], for REST through a gateway without zkmq's
//!   `multi` extension, or with [`QueueConfig::rest_multi`] off): mark the source with a
//!   claim token by a versioned set (one winner), create the slot carrying the same
//!   token, delete the source at the claimed version. Multi consumers skip claimed
//!   messages, so both kinds can share one queue. A batch take under the claim
//!   protocol claims each message by its versioned set alone, all at once, and
//!   holds it where it is: the ack deletes it at the claimed version, and recovery
//!   rolls a dead consumer's claim back by a versioned set (see `consumer/claim.rs`).
//! - **ack**: delete the slot at the version it was created with. Recovery changes or
//!   removes the slot before the message can go to anyone else, so an ack that comes
//!   too late fails ([`QueueError::TakenBack`]): no duplicate past ack.
//! - **recover** (the janitor, see [`recover`]): move dead consumers' slots to
//!   `partial/<original name>`, roll back their stale claims, delete old orphans and
//!   empty consumer nodes.
//!
//! [`Algorithm::Legacy`] swaps in a port of the original 2011 algorithm, which is
//! **unsafe** (it loses and duplicates messages under faults) and exists only so the
//! checker can be shown to catch real bugs.
//!
//! This module builds without the harness (`default-features = false`). Sending
//! and taking one message (needs a running ensemble, so it is compiled only):
//!
//! ```no_run
//! use std::time::Duration;
//! use zkmq::queue::{Access, Consumer, Producer, QueueConfig, QueueError};
//!
//! async fn hello() -> Result<(), QueueError> {
//!     // Or Access::Rest { url: "http://127.0.0.1:9998".into() }: the same queue.
//!     let access = Access::Native { connect: "127.0.0.1:2181".into() };
//!     let config = QueueConfig { chroot: "/apps/orders".into(), ..QueueConfig::default() };
//!
//!     let mut producer = Producer::new(access.clone(), config.clone()).await?;
//!     // Err(QueueError::Unknown(_)): maybe sent, never twice.
//!     let id = producer.send(b"hello").await?;
//!     println!("sent {id}");
//!     producer.close().await;
//!
//!     let mut consumer = Consumer::register(access, config).await?;
//!     if let Some(delivery) = consumer.take(Duration::from_secs(5)).await? {
//!         println!("took {}: {:?}", delivery.id, delivery.payload);
//!         // Err(QueueError::TakenBack): recovery gave it to someone else; it comes again.
//!         consumer.ack(&delivery).await?;
//!     }
//!     consumer.close().await;
//!     Ok(())
//! }
//! ```

mod consumer;
mod depth;
pub mod envelope;
pub mod legacy;
pub mod native_store;
mod producer;
mod recovery;
pub mod rest_store;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use consumer::{Consumer, Delivery};
pub use envelope::{checksum, MessageId, MAX_PAYLOAD, ZNODE_DATA_LIMIT};
pub use producer::Producer;

pub use recovery::{
    leftovers, recover, stats, Leftover, LeftoverPlace, Leftovers, QueueStats, RecoveryReport,
};
pub use store::{CreateMode, MultiOp, NodeStat, Store, StoreError, StoreResult};

/// How a producer or consumer reaches the ensemble.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// ZooKeeper's binary protocol; `connect` is a connect string
    /// (`127.0.0.1:2181,127.0.0.1:2182`).
    Native { connect: String },
    /// ZooKeeper's REST interface; `url` is the gateway endpoint's root.
    Rest { url: String },
}

impl Access {
    /// Where this access goes, for error messages.
    pub fn target(&self) -> &str {
        match self {
            Access::Native { connect } => connect,
            Access::Rest { url } => url,
        }
    }
}

/// Which take/produce algorithm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// The protocols described in this module: no loss, no duplicate past ack.
    #[default]
    Safe,
    /// UNSAFE: the original 2011 algorithm (see [`legacy`]); loses and duplicates
    /// messages under faults. For showing that the checker catches real bugs.
    Legacy,
}

/// How a safe consumer takes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TakeProtocol {
    /// `Multi` where the store has an atomic `multi`, else `Claim`.
    #[default]
    Auto,
    /// One atomic `multi` (native, or REST through zkmq's gateway).
    Multi,
    /// Claim mark, slot, versioned delete: what the REST path uses when the
    /// gateway has no `multi`. Selectable on the native store so it can be tested
    /// against real ZooKeeper.
    Claim,
}

/// Everything a producer or consumer needs to know besides where the ensemble is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// A prefix ("" or "/apps/orders") so that one ensemble can hold many queues.
    pub chroot: String,
    pub algorithm: Algorithm,
    /// Every store call is bounded by it: the client queues requests while
    /// disconnected, and a call must not hang until the session expires.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Asked of the server (which clamps it): how long a crashed consumer keeps
    /// its message before recovery may take it back.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Empty produce orphans (a create whose set never came) older than this are
    /// deleted. Must be far longer than a producer's create-to-set time.
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
    /// REST has no watches: how often a waiting consumer looks again.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Which take protocol a safe consumer uses.
    pub take_protocol: TakeProtocol,
    /// How often an idle consumer runs a recovery pass: dead consumers' messages
    /// wait at most about this long (after their session expired) to be taken back.
    #[serde(with = "humantime_serde")]
    pub recovery_interval: Duration,
    /// How long a producer, consumer or ack keeps retrying an operation whose
    /// outcome is unknown (reconnecting, renewing the session) before it reports
    /// [`QueueError::Unknown`].
    #[serde(with = "humantime_serde")]
    pub retry_budget: Duration,
    /// The most messages that may wait in `messages/`: a send past it is refused
    /// at once with [`QueueError::QueueFull`] and nothing is written. Every waiting
    /// message costs heap on every server, and a server out of heap takes the
    /// ensemble down with it. The default, [`DEFAULT_MAX_DEPTH`], fits the
    /// harness's 96 MiB heap with room to spare; raise it only with the heap (the
    /// sizing rule is in README). Approximate by what producers send within about
    /// a second (see `depth.rs`).
    pub max_depth: u64,
    /// REST only: run the native protocols (a batch of messages per transaction)
    /// through the gateway's `multi` extension when the gateway offers it, as
    /// zkmq's does. ZooKeeper's contrib gateway does not, and there the claim
    /// protocol runs whatever this says. False keeps to the v1 interface (the claim
    /// protocol, a replicated write per step of each message) on any gateway.
    pub rest_multi: bool,
}

/// [`QueueConfig::max_depth`]'s default. Two limits meet near it, as measured on
/// ZooKeeper 3.8.0 (README, "Depth and heap"): a 96 MiB heap holds about 400
/// bytes per waiting 100-byte message over a 23 MiB base and died near 150,000,
/// so 40,000 leaves more than half the heap free for bursts, listings and
/// snapshots; and one `getChildren` of `messages/` answers 22 bytes per name
/// (`message-<seq10>` plus its length), so 40,000 names are 880 KB, under the
/// 1 MiB `jute.maxbuffer` that Java clients apply to a response (47,662 names
/// would not be).
pub const DEFAULT_MAX_DEPTH: u64 = 40_000;

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            chroot: String::new(),
            algorithm: Algorithm::Safe,
            op_timeout: Duration::from_secs(5),
            session_timeout: Duration::from_secs(10),
            orphan_grace: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
            take_protocol: TakeProtocol::Auto,
            recovery_interval: Duration::from_secs(2),
            retry_budget: Duration::from_secs(30),
            max_depth: DEFAULT_MAX_DEPTH,
            rest_multi: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "payload of {size} bytes is over the limit of {limit} bytes (ZooKeeper's znode \
         limit of about 1 MB, jute.maxbuffer, minus the message envelope); nothing was \
         written: store large payloads elsewhere and send a reference"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "queue is full: {depth} messages wait in {queue}, its limit (max_depth) is {limit}; \
         nothing was written: let consumers catch up and send again, or raise max_depth \
         together with the servers' heap (README: depth and heap)"
    )]
    QueueFull { depth: u64, limit: u64, queue: String },
    #[error(
        "not acknowledged: the message was taken back (this consumer was considered \
         dead and recovery returned the message to the queue); it will be redelivered"
    )]
    TakenBack,
    /// The operation may or may not have happened. Never count it as a failure.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The operation definitely did not happen.
    #[error("did not happen: {0}")]
    Definite(StoreError),
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("invalid queue configuration: {0}")]
    Config(String),
}

impl QueueError {
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, QueueError::Unknown(_))
    }
}

impl From<StoreError> for QueueError {
    fn from(err: StoreError) -> Self {
        if err.is_unknown_outcome() {
            QueueError::Unknown(err.to_string())
        } else {
            QueueError::Definite(err)
        }
    }
}

/// Opens a store for `access`: a new session every call.
pub async fn connect(access: &Access, config: &QueueConfig) -> Result<Arc<dyn Store>, QueueError> {
    validate(config)?;
    let connect_error = |err: StoreError| QueueError::Connect {
        target: access.target().into(),
        reason: err.to_string(),
    };
    match access {
        Access::Native { connect } => {
            let store = native_store::NativeStore::connect(
                connect,
                config.session_timeout,
                config.op_timeout,
                config.session_timeout.max(config.op_timeout) * 2,
            )
            .await
            .map_err(connect_error)?;
            Ok(Arc::new(store))
        }
        Access::Rest { url } => {
            let options = rest_store::RestStoreOptions {
                session_timeout: config.session_timeout,
                op_timeout: config.op_timeout,
                poll_interval: config.poll_interval,
                gateway_multi: config.rest_multi,
                ..Default::default()
            };
            let store =
                rest_store::RestStore::connect(url, &options).await.map_err(connect_error)?;
            Ok(Arc::new(store) as Arc<dyn Store>)
        }
    }
}

fn validate(config: &QueueConfig) -> Result<(), QueueError> {
    if !config.chroot.is_empty()
        && (!config.chroot.starts_with('/') || config.chroot.ends_with('/'))
    {
        return Err(QueueError::Config(format!(
            "chroot {:?} must be empty or an absolute path without a trailing slash, like /apps/orders",
            config.chroot
        )));
    }
    if config.op_timeout.is_zero() || config.session_timeout.is_zero() {
        return Err(QueueError::Config("op_timeout and session_timeout must be above zero".into()));
    }
    if config.max_depth == 0 {
        return Err(QueueError::Config("max_depth must be at least 1".into()));
    }
    Ok(())
}

/// The paths of one queue's tree (public so tests and tools can look at the nodes).
#[derive(Debug, Clone)]
pub struct Tree {
    root: String,
}

impl Tree {
    pub fn new(config: &QueueConfig) -> Self {
        Self { root: format!("{}/queue", config.chroot) }
    }
    pub fn root(&self) -> &str {
        &self.root
    }
    pub fn messages(&self) -> String {
        format!("{}/messages", self.root)
    }
    pub fn partial(&self) -> String {
        format!("{}/partial", self.root)
    }
    pub fn consumers(&self) -> String {
        format!("{}/consumers", self.root)
    }
    pub fn consumer(&self, id: &str) -> String {
        format!("{}/consumers/consumer-{id}", self.root)
    }
    pub fn status(&self, id: &str) -> String {
        format!("{}/status", self.consumer(id))
    }
    /// The slot of a single take (and of the claim protocol and legacy).
    pub fn slot(&self, id: &str) -> String {
        format!("{}/message", self.consumer(id))
    }
    /// Slot `n` of a batch take: one per message, numbers never reused by an id.
    pub fn batch_slot(&self, id: &str, n: u64) -> String {
        format!("{}/message-{n}", self.consumer(id))
    }
    /// True for the names of slots among a consumer node's children.
    pub fn is_slot(name: &str) -> bool {
        name == "message" || name.strip_prefix("message-").is_some_and(|n| n.parse::<u64>().is_ok())
    }
    pub fn janitor(&self) -> String {
        format!("{}/janitor", self.root)
    }
    /// `dir/name`.
    pub fn node(dir: &str, name: &str) -> String {
        format!("{dir}/{name}")
    }

    /// Creates every directory of the tree that is missing (idempotent).
    pub async fn ensure(&self, store: &dyn Store, op_timeout: Duration) -> Result<(), QueueError> {
        let mut paths = Vec::new();
        let mut prefix = String::new();
        for part in self.root.split('/').filter(|part| !part.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            paths.push(prefix.clone());
        }
        paths.extend([self.messages(), self.partial(), self.consumers()]);
        for path in paths {
            retry_unknown(op_timeout * 4, || async {
                match store.create(&path, b"", CreateMode::Persistent).await {
                    Ok(_) | Err(StoreError::NodeExists(_)) => Ok(()),
                    Err(err) => Err(err),
                }
            })
            .await?;
        }
        Ok(())
    }
}

/// At most this many bytes of envelopes in one batch `multi` (a batch send's sets,
/// a batch take's slots): the whole request must stay under `jute.maxbuffer`
/// (about 1 MB), or the server drops the connection, which looks like an unknown
/// outcome and would be retried forever. A single message is never split.
pub(crate) const MULTI_BYTES: usize = 512 * 1024;
/// What one `multi` operation adds to its data: header, path, version.
pub(crate) const OP_OVERHEAD: usize = 128;

/// The sequence number of a `message-<seq>` name, for ordering.
pub(crate) fn sequence(name: &str) -> Option<u64> {
    name.strip_prefix("message-").and_then(|digits| digits.parse().ok())
}

/// Message names among `children`, lowest sequence first.
pub(crate) fn sorted_messages(children: Vec<String>) -> Vec<String> {
    let mut names: Vec<(u64, String)> =
        children.into_iter().filter_map(|name| sequence(&name).map(|seq| (seq, name))).collect();
    names.sort_unstable();
    names.into_iter().map(|(_, name)| name).collect()
}

/// Milliseconds since the epoch, to compare with a node's ctime (server clock; the
/// ensembles this runs against share the host's clock).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// Retries an idempotent operation while its outcome is unknown (but the session is
/// alive), for at most `budget`.
pub(crate) async fn retry_unknown<T, F, Fut>(budget: Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        match op().await {
            Err(StoreError::Unknown(reason)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("retrying after an unknown outcome: {reason}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A store that can be rebuilt after its session expired.
pub(crate) struct Session {
    pub access: Access,
    pub config: QueueConfig,
    pub store: Arc<dyn Store>,
}

impl Session {
    pub async fn open(access: Access, config: QueueConfig) -> Result<Self, QueueError> {
        let store = connect(&access, &config).await?;
        Ok(Self { access, config, store })
    }

    /// Builds a new store (a new session), retrying until the retry budget is spent.
    pub async fn renew(&mut self) -> Result<(), QueueError> {
        self.renew_until(tokio::time::Instant::now() + self.config.retry_budget).await
    }

    /// Builds a new store, retrying until `deadline`: the caller's retry budget
    /// bounds the whole operation, renewals included, however long one connect
    /// attempt would wait by itself. At least one attempt is made.
    pub async fn renew_until(&mut self, deadline: tokio::time::Instant) -> Result<(), QueueError> {
        self.store.abandon();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = tokio::time::timeout(
                left.max(Duration::from_millis(100)),
                connect(&self.access, &self.config),
            );
            let err = match attempt.await {
                Ok(Ok(store)) => {
                    self.store = store;
                    return Ok(());
                }
                Ok(Err(err)) => err,
                Err(_) => QueueError::Connect {
                    target: self.access.target().into(),
                    reason: "no session before the retry budget was spent".into(),
                },
            };
            if tokio::time::Instant::now() + Duration::from_millis(500) >= deadline {
                let last = match err {
                    QueueError::Connect { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(QueueError::Connect {
                    target: self.access.target().into(),
                    reason: format!(
                        "the session could not be renewed within the retry budget ({:?}): {last}",
                        self.config.retry_budget
                    ),
                });
            }
            tracing::warn!("renewing the session: {err}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub fn take_protocol(&self) -> TakeProtocol {
        match self.config.take_protocol {
            TakeProtocol::Auto if self.store.supports_multi() => TakeProtocol::Multi,
            TakeProtocol::Auto => TakeProtocol::Claim,
            chosen => chosen,
        }
    }
}
