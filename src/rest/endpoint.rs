//! One endpoint's ZooKeeper side: a shared connection rebuilt whenever its session
//! dies, and the `/sessions/v1` sessions, each with its own connection and expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use zookeeper_client as zk;

use super::config::EndpointConfig;

/// Why the gateway has no ZooKeeper connection to offer a request.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable(pub String);

/// An endpoint: its configuration, shared connection and sessions.
pub(crate) struct Endpoint {
    pub config: EndpointConfig,
    /// Requests without `session=` run here. Rebuilt lazily after expiry or close:
    /// the zookeeper-client crate reconnects within a session by itself but a dead
    /// session needs a new client. The async mutex makes one request reconnect
    /// while the others wait for it (bounded by the connect timeout).
    shared: tokio::sync::Mutex<Option<zk::Client>>,
    sessions: Mutex<HashMap<String, Arc<GatewaySession>>>,
    zk_session_timeout: Duration,
    connect_timeout: Duration,
    /// Nodes this gateway set to null data (`null=true`), with the zxid of that
    /// write. See [`NullWrites`].
    pub nulls: NullWrites,
}

/// How many null writes an endpoint remembers; past that, the oldest are forgotten
/// (those nodes then read as empty data, which is what ZooKeeper holds).
const NULL_WRITES: usize = 4096;

/// The null writes this gateway made, by path, with the zxid of each.
///
/// ZooKeeper tells null data (length -1 on the wire) from empty data, but the
/// zookeeper-client crate cannot: its create and set requests always send a
/// length (`&[u8]`), and its reads drop the length prefix, so null reads as empty.
/// The gateway therefore stores `null=true` as empty data (what any other client
/// reads), and remembers which node it wrote so, and at which zxid. A read whose
/// node is still at that write (same `mzxid`: no write since, by anyone) answers
/// "null" as the original gateway does; any later write, create or delete shows in
/// the `mzxid`, and the node reads as what it holds. Nothing is ever reported null
/// that was not written null through this gateway; a node written null by another
/// client (or before a gateway restart) reads as empty.
#[derive(Default)]
pub(crate) struct NullWrites {
    by_path: Mutex<(HashMap<String, i64>, std::collections::VecDeque<String>)>,
}

impl NullWrites {
    /// `path` now holds null data, written at `mzxid`.
    pub fn wrote_null(&self, path: &str, mzxid: i64) {
        let mut guard = self.by_path.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(path.to_owned(), mzxid).is_none() {
            order.push_back(path.to_owned());
        }
        while map.len() > NULL_WRITES {
            match order.pop_front() {
                Some(oldest) => {
                    map.remove(&oldest);
                }
                None => break,
            }
        }
    }

    /// `path` was written with data (or deleted) by this gateway.
    pub fn wrote_data(&self, path: &str) {
        let mut guard = self.by_path.lock().unwrap_or_else(|e| e.into_inner());
        if guard.0.remove(path).is_some() {
            guard.1.retain(|p| p != path);
        }
    }

    /// True when `path`, read at `mzxid`, still holds the null this gateway wrote.
    pub fn is_null(&self, path: &str, mzxid: i64) -> bool {
        let guard = self.by_path.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.get(path) == Some(&mzxid)
    }
}

/// A `/sessions/v1` session: a dedicated ZooKeeper connection, so that ephemerals
/// created with `session=<id>` live and die with it.
pub(crate) struct GatewaySession {
    pub client: zk::Client,
    /// Without a heartbeat for this long the gateway closes the session.
    expire: Duration,
    /// Last heartbeat (or creation); only heartbeats move it, as in the original.
    last_beat: Mutex<Instant>,
    /// Wakes the expiry task so that it re-reads `last_beat` or ends (on DELETE).
    wake: Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl Endpoint {
    pub fn new(
        config: EndpointConfig,
        zk_session_timeout: Duration,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            config,
            shared: tokio::sync::Mutex::new(None),
            sessions: Mutex::new(HashMap::new()),
            zk_session_timeout,
            connect_timeout,
            nulls: NullWrites::default(),
        }
    }

    async fn connect(&self, session_timeout: Duration) -> Result<zk::Client, Unavailable> {
        let mut connector = zk::Client::connector().with_session_timeout(session_timeout);
        if let Some(digest) = &self.config.zk_digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        match tokio::time::timeout(self.connect_timeout, connector.connect(&self.config.connect))
            .await
        {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(err)) => Err(Unavailable(format!(
                "cannot connect to ZooKeeper at {}: {err}",
                self.config.connect
            ))),
            Err(_) => Err(Unavailable(format!(
                "cannot connect to ZooKeeper at {} within {:?}",
                self.config.connect, self.connect_timeout
            ))),
        }
    }

    /// The shared connection, reconnected if its session is gone.
    pub async fn shared_client(&self) -> Result<zk::Client, Unavailable> {
        let mut guard = self.shared.lock().await;
        if let Some(client) = guard.as_ref() {
            if !client.state().is_terminated() {
                return Ok(client.clone());
            }
            tracing::warn!(endpoint = %self.config.context, state = ?client.state(),
                "shared ZooKeeper session ended; reconnecting");
        }
        *guard = None;
        let client = self.connect(self.zk_session_timeout).await?;
        tracing::info!(endpoint = %self.config.context, session = %client.session_id(),
            "connected to ZooKeeper");
        *guard = Some(client.clone());
        Ok(client)
    }

    /// For the health extension: whether the shared connection is up, without
    /// connecting.
    pub fn shared_state(&self) -> Option<String> {
        let guard = self.shared.try_lock().ok()?;
        guard.as_ref().map(|client| format!("{:?}", client.state()))
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Opens a session that closes itself after `expire` without a heartbeat, or
    /// when its ZooKeeper session ends.
    pub async fn create_session(self: &Arc<Self>, expire: Duration) -> Result<String, Unavailable> {
        // The ZooKeeper session should not outlive the gateway session by much if
        // the gateway itself dies; the server clamps it to its own bounds.
        let client = self.connect(expire.max(Duration::from_secs(2))).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let session = Arc::new(GatewaySession {
            client,
            expire,
            last_beat: Mutex::new(Instant::now()),
            wake: Notify::new(),
            closed: Default::default(),
        });
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), session.clone());
        tracing::info!(endpoint = %self.config.context, %id, zk_session = %session.client.session_id(),
            ?expire, "gateway session opened");
        let endpoint = self.clone();
        let task_id = id.clone();
        tokio::spawn(async move { endpoint.watch_session(task_id, session).await });
        Ok(id)
    }

    async fn watch_session(self: Arc<Self>, id: String, session: Arc<GatewaySession>) {
        let mut states = session.client.state_watcher();
        let why = loop {
            if session.closed.load(std::sync::atomic::Ordering::SeqCst) {
                break "closed by DELETE";
            }
            let deadline =
                *session.last_beat.lock().unwrap_or_else(|e| e.into_inner()) + session.expire;
            if Instant::now() >= deadline {
                break "no heartbeat";
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = session.wake.notified() => {}
                state = states.changed() => {
                    if state.is_terminated() {
                        break "its ZooKeeper session ended";
                    }
                }
            }
        };
        self.forget(&id, &session);
        tracing::info!(endpoint = %self.config.context, %id, why, "gateway session closed");
        // Dropping the last clone of the client closes the ZooKeeper session (its
        // ephemerals go at once) unless it has already expired.
    }

    fn forget(&self, id: &str, session: &Arc<GatewaySession>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.get(id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            sessions.remove(id);
        }
    }

    /// The live session `id`, if any. A session whose ZooKeeper session ended is
    /// forgotten here too, so that the answer does not depend on the expiry task's timing.
    pub fn session(&self, id: &str) -> Option<Arc<GatewaySession>> {
        let session = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()?;
        if session.client.state().is_terminated() {
            self.forget(id, &session);
            session.wake.notify_one();
            return None;
        }
        Some(session)
    }

    /// The ZooKeeper session id and expiry behind gateway session `id` (for the
    /// `/zkmq/v1/sessions/<id>` extension: a client needs the id to recognise its
    /// own ephemerals by their `ephemeralOwner`).
    pub fn session_info(&self, id: &str) -> Option<(i64, Duration)> {
        self.session(id).map(|s| (s.client.session_id().0, s.expire))
    }

    /// Resets the expiry timer; false for an unknown or dead session.
    pub fn heartbeat(&self, id: &str) -> bool {
        match self.session(id) {
            Some(session) => {
                *session.last_beat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                session.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes session `id` and waits (bounded) until ZooKeeper has closed its
    /// session, so that its ephemerals are gone when the client hears 204.
    pub async fn delete_session(&self, id: &str, wait: Duration) {
        let session = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let Some(session) = session else { return };
        let mut states = session.client.state_watcher();
        session.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        session.wake.notify_one();
        drop(session);
        let _ = tokio::time::timeout(wait, async {
            loop {
                if states.changed().await.is_terminated() {
                    break;
                }
            }
        })
        .await;
    }
}
