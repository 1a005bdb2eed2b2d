//! The REST backend of [`Store`]: a client of ZooKeeper's REST
//! interface (zkmq's gateway, or any compatible one).
//!
//! Each store opens one gateway session (`/sessions/v1`) and sends every request
//! with `session=<id>`: its ephemerals belong to that session, and all its reads and
//! writes run on one ZooKeeper session, so it reads its own writes as a native
//! client does. A background task heartbeats the session at a third of its expiry;
//! when the gateway forgets the session (404 on a heartbeat, 401 on a request) or no
//! heartbeat succeeds for a whole expiry, the store is dead and the queue builds a
//! new one.
//!
//! The mapping back from HTTP keeps the three outcomes apart: 404, 409, 412 and the
//! 4xx refusals are definite; 502, other 5xx, timeouts and connection errors are
//! unknown (the request may have reached ZooKeeper).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::time::Instant;

use super::store::{CreateMode, MultiOp, NodeStat, Store, StoreError, StoreResult};

/// How the REST client behaves.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RestStoreOptions {
    /// The gateway session's expiry (rounded up to whole seconds): how long a
    /// crashed client keeps its ephemerals (a consumer its message).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Bound on every HTTP request; past it the outcome is unknown.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// REST has no watches: how long `wait_for_children` sleeps at first.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Consecutive idle polls double the sleep up to this bound, so that idle
    /// consumers do not hammer the gateway; any write by this store resets it.
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// Use the gateway's `multi` extension when it offers one (zkmq's gateway does,
    /// ZooKeeper's contrib gateway does not): the queue then runs the native
    /// protocols, a batch in one transaction, instead of the claim protocol's
    /// write per step. False keeps to the v1 interface.
    pub gateway_multi: bool,
}

impl Default for RestStoreOptions {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            op_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(250),
            max_poll_interval: Duration::from_secs(1),
            gateway_multi: true,
        }
    }
}

/// A client of the REST gateway bound to one gateway session.
pub struct RestStore {
    http: reqwest::Client,
    /// The endpoint's root, e.g. `http://127.0.0.1:9998` or `http://host/orders`.
    base: String,
    /// The gateway session id (a UUID).
    session: String,
    /// The ZooKeeper session behind the gateway session, learned from zkmq's
    /// `/zkmq/v1/sessions/<id>` extension; 0 when the gateway does not offer it.
    zk_session: i64,
    /// The gateway offers `<base>/zkmq/v1/multi` and the options allow it.
    multi: bool,
    dead: Arc<AtomicBool>,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The next idle poll's sleep (backs off, reset by writes).
    poll: Mutex<Duration>,
    options: RestStoreOptions,
}

#[derive(Deserialize)]
struct SessionJson {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionInfoJson {
    zk_session_id: i64,
    #[serde(default)]
    extensions: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StatJson {
    data64: Option<String>,
    czxid: i64,
    ctime: i64,
    mtime: i64,
    version: i32,
    ephemeral_owner: i64,
    data_length: i32,
    num_children: i32,
}

impl StatJson {
    fn stat(&self) -> NodeStat {
        NodeStat {
            version: self.version,
            ctime_ms: self.ctime,
            mtime_ms: self.mtime,
            ephemeral_owner: self.ephemeral_owner,
            data_length: self.data_length,
            num_children: self.num_children,
            czxid: self.czxid,
        }
    }
}

#[derive(Deserialize)]
struct ChildrenJson {
    #[serde(default)]
    children: Vec<String>,
}

#[derive(Deserialize)]
struct PathJson {
    path: String,
}

#[derive(Deserialize, Default)]
struct ErrorJson {
    #[serde(default)]
    message: String,
    /// The multi extension's: the first operation that failed.
    #[serde(default)]
    index: Option<usize>,
}

/// One operation of the gateway's multi extension (see `rest::multi`).
#[derive(serde::Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum MultiOpJson<'a> {
    Check { path: &'a str, version: i32 },
    Create { path: &'a str, data64: String, sequence: bool, ephemeral: bool },
    Set { path: &'a str, data64: String, version: i32 },
    Delete { path: &'a str, version: i32 },
}

impl<'a> MultiOpJson<'a> {
    fn of(op: &'a MultiOp) -> Self {
        let encode = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
        match op {
            MultiOp::Check { path, version } => {
                Self::Check { path, version: version.unwrap_or(-1) }
            }
            MultiOp::Create { path, data, mode } => Self::Create {
                path,
                data64: encode(data),
                sequence: mode.is_sequential(),
                ephemeral: mode.is_ephemeral(),
            },
            MultiOp::Set { path, data, version } => {
                Self::Set { path, data64: encode(data), version: version.unwrap_or(-1) }
            }
            MultiOp::Delete { path, version } => {
                Self::Delete { path, version: version.unwrap_or(-1) }
            }
        }
    }
}

#[derive(Deserialize)]
struct MultiResultJson {
    op: String,
    path: String,
}

#[derive(Deserialize)]
struct MultiResultsJson {
    results: Vec<MultiResultJson>,
}

impl RestStore {
    /// Opens a gateway session at `base_url` and starts its heartbeat.
    pub async fn connect(base_url: &str, options: &RestStoreOptions) -> StoreResult<RestStore> {
        let base = base_url.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base)
            .map_err(|err| StoreError::Refused(format!("{base_url}: not a URL: {err}")))?;
        if parsed.scheme() != "http" {
            return Err(StoreError::Refused(format!(
                "{base_url}: only http:// gateways are supported (this build has no TLS)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(options.op_timeout)
            .connect_timeout(options.op_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|err| StoreError::Refused(format!("cannot build an HTTP client: {err}")))?;
        let expire = options.session_timeout.as_secs_f64().ceil().max(1.0) as u64;
        let response = http
            .post(format!("{base}/sessions/v1/?op=create&expire={expire}"))
            .send()
            .await
            .map_err(|err| transport_error("opening a gateway session", &err))?;
        let status = response.status();
        if status != reqwest::StatusCode::CREATED {
            let message = error_message(response).await.message;
            return Err(if status.is_server_error() {
                StoreError::Unknown(format!("opening a gateway session: {status} {message}"))
            } else {
                StoreError::Refused(format!("opening a gateway session: {status} {message}"))
            });
        }
        let session: SessionJson = response
            .json()
            .await
            .map_err(|err| StoreError::Unknown(format!("reading the new session: {err}")))?;
        let origin = parsed.origin().ascii_serialization();
        let info = match http.get(format!("{origin}/zkmq/v1/sessions/{}", session.id)).send().await
        {
            Ok(response) if response.status().is_success() => {
                response.json::<SessionInfoJson>().await.ok()
            }
            _ => None,
        };
        let zk_session = info.as_ref().map_or(0, |info| info.zk_session_id);
        let multi = options.gateway_multi
            && info.is_some_and(|info| info.extensions.iter().any(|e| e == "multi"));
        let dead = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat_loop(
            http.clone(),
            format!("{base}/sessions/v1/{}", session.id),
            Duration::from_secs(expire),
            dead.clone(),
        ));
        tracing::debug!(%base, session = %session.id, zk_session, multi, "REST store connected");
        Ok(RestStore {
            http,
            base,
            session: session.id,
            zk_session,
            multi,
            dead,
            heartbeat: Mutex::new(Some(heartbeat)),
            poll: Mutex::new(options.poll_interval),
            options: options.clone(),
        })
    }

    /// The gateway session id (a UUID).
    pub fn gateway_session(&self) -> &str {
        &self.session
    }

    fn znode_url(&self, path: &str, params: &[(&str, &str)]) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in params {
            query.append_pair(key, value);
        }
        query.append_pair("session", &self.session);
        format!("{}/znodes/v1{}?{}", self.base, encode_path(path), query.finish())
    }

    fn stop_heartbeat(&self) {
        if let Some(task) = self.heartbeat.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    fn reset_poll(&self) {
        *self.poll.lock().unwrap_or_else(|e| e.into_inner()) = self.options.poll_interval;
    }

    /// Sends `request`; maps any non-success status to the store's outcome.
    async fn send(
        &self,
        what: &str,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> StoreResult<reqwest::Response> {
        self.check_alive()?;
        let response = request.send().await.map_err(|err| transport_error(what, &err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let message = error_message(response).await.message;
        Err(self.status_error(what, path, status, &message))
    }

    /// Nothing is sent on a session known to be gone.
    fn check_alive(&self) -> StoreResult<()> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::SessionExpired(format!(
                "gateway session {} is gone; build a new store",
                self.session
            )));
        }
        Ok(())
    }

    /// The store's outcome for a gateway's non-success answer.
    fn status_error(
        &self,
        what: &str,
        path: &str,
        status: reqwest::StatusCode,
        message: &str,
    ) -> StoreError {
        let detail = format!("{what} {path}: HTTP {status}: {message}");
        match status.as_u16() {
            404 => StoreError::NoNode(path.to_owned()),
            409 if message.contains("not empty") => StoreError::NotEmpty(path.to_owned()),
            409 => StoreError::NodeExists(path.to_owned()),
            412 => StoreError::BadVersion(path.to_owned()),
            401 if !message.contains("not authorized") => {
                // Our session is unknown to the gateway: it expired or the gateway
                // restarted. Whatever was in flight has an unknown outcome.
                self.dead.store(true, Ordering::SeqCst);
                self.stop_heartbeat();
                StoreError::SessionExpired(detail)
            }
            400..=499 => StoreError::Refused(detail),
            _ => StoreError::Unknown(detail),
        }
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        what: &str,
        response: reqwest::Response,
    ) -> StoreResult<T> {
        // The operation itself is done; only its answer got lost on the way.
        response.json().await.map_err(|err| {
            StoreError::Unknown(format!("{what}: reading the gateway's answer: {err}"))
        })
    }
}

async fn heartbeat_loop(
    http: reqwest::Client,
    url: String,
    expire: Duration,
    dead: Arc<AtomicBool>,
) {
    let interval = (expire / 3).max(Duration::from_millis(200));
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        match http.put(&url).send().await {
            Ok(response) if response.status().is_success() => last_ok = Instant::now(),
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                tracing::info!(%url, "the gateway forgot our session (expired, or the gateway restarted)");
                break;
            }
            Ok(response) => tracing::debug!(%url, status = %response.status(), "heartbeat refused"),
            Err(err) => tracing::debug!(%url, "heartbeat failed: {err}"),
        }
        if last_ok.elapsed() >= expire {
            tracing::info!(%url, "no heartbeat got through for a whole expiry: the session is presumed gone");
            break;
        }
    }
    dead.store(true, Ordering::SeqCst);
}

fn transport_error(what: &str, err: &reqwest::Error) -> StoreError {
    let kind = if err.is_timeout() { "timed out" } else { "failed" };
    StoreError::Unknown(format!("{what}: HTTP request {kind}: {err}"))
}

async fn error_message(response: reqwest::Response) -> ErrorJson {
    let body = response.bytes().await.unwrap_or_default();
    serde_json::from_slice::<ErrorJson>(&body).unwrap_or_default()
}

/// Encodes a ZooKeeper path for a URL (keeps `/`); the gateway builds its URIs
/// with it too, so client and server agree on one encoding.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn octets(request: reqwest::RequestBuilder, data: &[u8]) -> reqwest::RequestBuilder {
    request.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(data.to_vec())
}

#[async_trait::async_trait]
impl Store for RestStore {
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> StoreResult<String> {
        let (parent, name) = match path.rfind('/') {
            Some(0) => ("/", &path[1..]),
            Some(i) => (&path[..i], &path[i + 1..]),
            None => return Err(StoreError::Refused(format!("{path}: not an absolute path"))),
        };
        let flag = |b: bool| if b { "true" } else { "false" };
        let url = self.znode_url(
            parent,
            &[
                ("op", "create"),
                ("name", name),
                ("sequence", flag(mode.is_sequential())),
                ("ephemeral", flag(mode.is_ephemeral())),
            ],
        );
        let response = self.send("create", path, octets(self.http.post(url), data)).await?;
        self.reset_poll();
        let created: PathJson = Self::read_json("create", response).await?;
        Ok(created.path)
    }

    async fn get(&self, path: &str) -> StoreResult<(Vec<u8>, NodeStat)> {
        let response = self.send("get", path, self.http.get(self.znode_url(path, &[]))).await?;
        let json: StatJson = Self::read_json("get", response).await?;
        let data = match &json.data64 {
            Some(encoded) => {
                base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|err| {
                    StoreError::Unknown(format!("get {path}: bad base64 from the gateway: {err}"))
                })?
            }
            None => Vec::new(),
        };
        Ok((data, json.stat()))
    }

    async fn exists(&self, path: &str) -> StoreResult<Option<NodeStat>> {
        // GET rather than HEAD: the queue needs the stat, HEAD has none.
        match self.send("exists", path, self.http.get(self.znode_url(path, &[]))).await {
            Ok(response) => Ok(Some(Self::read_json::<StatJson>("exists", response).await?.stat())),
            Err(StoreError::NoNode(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> StoreResult<NodeStat> {
        let version = version.unwrap_or(-1).to_string();
        let url = self.znode_url(path, &[("version", &version)]);
        let response = self.send("set", path, octets(self.http.put(url), data)).await?;
        self.reset_poll();
        Ok(Self::read_json::<StatJson>("set", response).await?.stat())
    }

    async fn delete(&self, path: &str, version: Option<i32>) -> StoreResult<()> {
        let version = version.unwrap_or(-1).to_string();
        let url = self.znode_url(path, &[("version", &version)]);
        self.send("delete", path, self.http.delete(url)).await?;
        self.reset_poll();
        Ok(())
    }

    async fn children(&self, path: &str) -> StoreResult<Vec<String>> {
        let url = self.znode_url(path, &[("view", "children")]);
        let response = self.send("children", path, self.http.get(url)).await?;
        Ok(Self::read_json::<ChildrenJson>("children", response).await?.children)
    }

    fn supports_multi(&self) -> bool {
        self.multi
    }

    async fn multi(&self, ops: &[MultiOp]) -> StoreResult<Vec<String>> {
        if !self.multi {
            return Err(StoreError::Refused(
                "the REST interface has no multi, and this gateway offers no multi extension"
                    .into(),
            ));
        }
        let what = ops.first().map(MultiOp::path).unwrap_or("(empty)");
        let what = format!("multi starting at {what}");
        let body =
            serde_json::json!({ "ops": ops.iter().map(MultiOpJson::of).collect::<Vec<_>>() });
        let url = format!("{}/zkmq/v1/multi?session={}", self.base, self.session);
        self.check_alive()?;
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|err| transport_error(&what, &err))?;
        let status = response.status();
        if status.is_success() {
            self.reset_poll();
            let results: MultiResultsJson = Self::read_json(&what, response).await?;
            return Ok(results
                .results
                .into_iter()
                .filter(|result| result.op == "create")
                .map(|result| result.path)
                .collect());
        }
        let error = error_message(response).await;
        match error.index {
            Some(index) if index < ops.len() => {
                let cause = self.status_error("multi", ops[index].path(), status, &error.message);
                if cause.is_unknown_outcome() {
                    return Err(cause);
                }
                Err(StoreError::MultiFailed { index, cause: Box::new(cause) })
            }
            // Not one operation's failure: the request as a whole was refused
            // (bad JSON, too large, an unknown session) or its outcome is unknown.
            _ if status.is_client_error() && status != reqwest::StatusCode::UNAUTHORIZED => {
                Err(StoreError::Refused(format!("{what}: HTTP {status}: {}", error.message)))
            }
            _ => Err(self.status_error(&what, "", status, &error.message)),
        }
    }

    async fn wait_for_children(&self, _path: &str, timeout: Duration) -> StoreResult<()> {
        let sleep = {
            let mut poll = self.poll.lock().unwrap_or_else(|e| e.into_inner());
            let sleep = *poll;
            *poll = (*poll * 2).min(self.options.max_poll_interval.max(self.options.poll_interval));
            sleep
        };
        tokio::time::sleep(sleep.min(timeout)).await;
        Ok(())
    }

    fn session_id(&self) -> i64 {
        self.zk_session
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        self.stop_heartbeat();
        if !self.dead.swap(true, Ordering::SeqCst) {
            let url = format!("{}/sessions/v1/{}", self.base, self.session);
            if let Err(err) = self.http.delete(url).send().await {
                tracing::debug!(session = %self.session, "closing the gateway session: {err}");
            }
        }
    }

    fn abandon(&self) {
        // No DELETE: the gateway closes the session when its expiry passes without
        // a heartbeat, as it would for a crashed client.
        self.stop_heartbeat();
        self.dead.store(true, Ordering::SeqCst);
    }

    fn access_path(&self) -> &'static str {
        "rest"
    }
}

impl Drop for RestStore {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}
