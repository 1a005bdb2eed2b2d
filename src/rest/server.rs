//! The HTTP side: routing, parameters, JSON shapes and status codes of REST-API.md.
//!
//! Routing is done by hand in one fallback handler rather than with axum's router:
//! the ZooKeeper path is "everything after `/znodes/v1`", context paths are
//! configured at run time, and malformed paths must reach us (to get a 400 with an
//! error object) instead of a framework's bare 404.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use zookeeper_client as zk;

use super::body::{ReadError, RequestBody};
use super::config::GatewayConfig;
use super::endpoint::{Endpoint, Unavailable};
use crate::queue::rest_store::encode_path;

/// Extensions live under their own prefix so v1 clients see no change.
const EXTENSION_PREFIX: &str = "/zkmq/v1";
/// `<context>/zkmq/v1/multi`: see [`super::multi`].
const MULTI_PATH: &str = "/multi";

pub(crate) struct Gateway {
    pub config: GatewayConfig,
    /// Sorted by context length, longest first: the first match wins.
    pub endpoints: Vec<Arc<Endpoint>>,
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Self {
        let mut endpoints: Vec<Arc<Endpoint>> = config
            .endpoints
            .iter()
            .map(|e| {
                Arc::new(Endpoint::new(
                    e.clone(),
                    config.zk_session_timeout,
                    config.zk_timeout.max(Duration::from_secs(2)),
                ))
            })
            .collect();
        endpoints.sort_by_key(|e| std::cmp::Reverse(e.config.context.len()));
        Self { config, endpoints }
    }

    fn endpoint_for(&self, path: &str) -> Option<(Arc<Endpoint>, String)> {
        self.endpoints.iter().find_map(|endpoint| {
            let context = endpoint.config.context.as_str();
            if context == "/" {
                return Some((endpoint.clone(), path.to_owned()));
            }
            let rest = path.strip_prefix(context)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| (endpoint.clone(), rest.to_owned()))
        })
    }
}

/// What every answer needs to know about its request.
pub(crate) struct Ctx {
    /// The full request URI with query: the error object's `request`.
    pub request_uri: String,
    /// `http://host` (from the Host header).
    origin: String,
    /// The endpoint's context path ("" for the root context).
    context: String,
    /// The raw query.
    query: Vec<(String, String)>,
    headers: HeaderMap,
}

impl Ctx {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The absolute URI of a ZooKeeper path under this endpoint.
    fn znode_uri(&self, zk_path: &str) -> String {
        format!("{}{}/znodes/v1{}", self.origin, self.context, encode_path(zk_path))
    }

    fn wants_octets(&self) -> bool {
        self.headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("application/octet-stream"))
    }

    /// [`Ctx::error`], boxed for the `Err` side of a `Result`.
    fn reject(&self, status: StatusCode, message: impl Into<String>) -> Box<Response> {
        Box::new(self.error(status, message))
    }

    fn error(&self, status: StatusCode, message: impl Into<String>) -> Response {
        let body = ErrorJson { request: self.request_uri.clone(), message: message.into() };
        json_response(status, &body, None)
    }
}

#[derive(Serialize)]
struct ErrorJson {
    request: String,
    message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatJson {
    path: String,
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_utf8: Option<String>,
    czxid: i64,
    mzxid: i64,
    ctime: i64,
    mtime: i64,
    version: i32,
    cversion: i32,
    aversion: i32,
    ephemeral_owner: i64,
    data_length: i32,
    num_children: i32,
    pzxid: i64,
}

impl StatJson {
    fn new(path: &str, uri: String, stat: &zk::Stat) -> Self {
        Self {
            path: path.to_owned(),
            uri,
            data64: None,
            data_utf8: None,
            czxid: stat.czxid,
            mzxid: stat.mzxid,
            ctime: stat.ctime,
            mtime: stat.mtime,
            version: stat.version,
            cversion: stat.cversion,
            aversion: stat.aversion,
            ephemeral_owner: stat.ephemeral_owner,
            data_length: stat.data_length,
            num_children: stat.num_children,
            pzxid: stat.pzxid,
        }
    }
}

#[derive(Serialize)]
struct ChildrenJson {
    path: String,
    uri: String,
    child_uri_template: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    children: Vec<String>,
}

#[derive(Serialize)]
struct PathJson {
    path: String,
    uri: String,
}

#[derive(Serialize)]
struct SessionJson {
    id: String,
    uri: String,
}

pub(crate) fn json_response(
    status: StatusCode,
    body: &impl Serialize,
    callback: Option<&str>,
) -> Response {
    let json = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    match callback {
        Some(callback) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/javascript"))],
            format!("{callback}({json})"),
        )
            .into_response(),
        None => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json)
                .into_response()
        }
    }
}

/// The single handler behind every URL. Whatever the answer, the body the handler
/// left unread is drained before it goes out (see [`super::body`]).
pub(crate) async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut body = RequestBody::new(body, &parts.headers);
    let response = route(&gateway, parts, &mut body).await;
    body.finish(response).await
}

async fn route(
    gateway: &Gateway,
    parts: axum::http::request::Parts,
    body: &mut RequestBody,
) -> Response {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| gateway.config.listen.to_string());
    let origin = format!("http://{host}");
    let request_uri =
        format!("{origin}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let mut ctx =
        Ctx { request_uri, origin, context: String::new(), query, headers: parts.headers };
    let raw_path = parts.uri.path();

    // Gateway-wide extensions; `multi` belongs to an endpoint (its context), below.
    if let Some(extension) = raw_path.strip_prefix(EXTENSION_PREFIX) {
        if extension != MULTI_PATH {
            return extension_route(gateway, &ctx, &parts.method, extension);
        }
    }
    let Some((endpoint, rest)) = gateway.endpoint_for(raw_path) else {
        return ctx.error(StatusCode::NOT_FOUND, format!("no endpoint serves {raw_path}"));
    };
    ctx.context = if endpoint.config.context == "/" {
        String::new()
    } else {
        endpoint.config.context.clone()
    };
    if let Some(expected) = &endpoint.config.http_auth {
        if !basic_auth_matches(&ctx.headers, expected) {
            let mut response = ctx.error(StatusCode::UNAUTHORIZED, "not authorized");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Restricted\""),
            );
            return response;
        }
    }
    let max_body = gateway.config.max_body;
    let zk_timeout = gateway.config.zk_timeout;
    if let Some(encoded) = rest.strip_prefix("/znodes/v1") {
        let zk_path = match decode_path(encoded) {
            Ok(path) => path,
            Err(why) => return ctx.error(StatusCode::BAD_REQUEST, why),
        };
        let request =
            ZnodeRequest { ctx: &ctx, endpoint: &endpoint, zk_timeout, method: &parts.method };
        request.serve(&zk_path, body, max_body).await
    } else if rest.strip_prefix(EXTENSION_PREFIX) == Some(MULTI_PATH) {
        let request =
            ZnodeRequest { ctx: &ctx, endpoint: &endpoint, zk_timeout, method: &parts.method };
        request.multi(body, max_body).await
    } else if rest == "/sessions/v1" || rest.starts_with("/sessions/v1/") {
        let id = rest.trim_start_matches("/sessions/v1").trim_start_matches('/');
        sessions_route(gateway, &endpoint, &ctx, &parts.method, id).await
    } else {
        ctx.error(
            StatusCode::NOT_FOUND,
            format!(
                "{raw_path}: no such resource; use {}/znodes/v1/<path> or {}/sessions/v1/",
                ctx.context, ctx.context
            ),
        )
    }
}

fn extension_route(gateway: &Gateway, ctx: &Ctx, method: &Method, path: &str) -> Response {
    #[derive(Serialize)]
    struct EndpointHealth {
        context: String,
        connect: String,
        /// State of the shared ZooKeeper connection; absent before the first request.
        #[serde(skip_serializing_if = "Option::is_none")]
        zookeeper: Option<String>,
        sessions: usize,
    }
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        version: &'static str,
        endpoints: Vec<EndpointHealth>,
    }
    if let Some(id) = path.strip_prefix("/sessions/") {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct SessionInfo {
            id: String,
            context: String,
            zk_session_id: i64,
            expire: u64,
            /// What this gateway offers beyond v1 (under the session's context).
            extensions: [&'static str; 1],
        }
        if method != Method::GET {
            return ctx.error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        let found = gateway.endpoints.iter().find_map(|e| {
            let (zk_session_id, expire) = e.session_info(id)?;
            Some(SessionInfo {
                id: id.to_owned(),
                context: e.config.context.clone(),
                zk_session_id,
                expire: expire.as_secs(),
                extensions: [super::multi::NAME],
            })
        });
        return match found {
            Some(info) => json_response(StatusCode::OK, &info, None),
            None => ctx.error(StatusCode::NOT_FOUND, format!("session {id} not found")),
        };
    }
    if path != "/health" {
        return ctx.error(
            StatusCode::NOT_FOUND,
            format!("{EXTENSION_PREFIX}{path}: no such extension; try {EXTENSION_PREFIX}/health"),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        return ctx.error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    let health = Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        endpoints: gateway
            .endpoints
            .iter()
            .map(|e| EndpointHealth {
                context: e.config.context.clone(),
                connect: e.config.connect.clone(),
                zookeeper: e.shared_state(),
                sessions: e.session_count(),
            })
            .collect(),
    };
    json_response(StatusCode::OK, &health, None)
}

async fn sessions_route(
    gateway: &Gateway,
    endpoint: &Arc<Endpoint>,
    ctx: &Ctx,
    method: &Method,
    id: &str,
) -> Response {
    let session_uri = |id: &str| format!("{}{}/sessions/v1/{id}", ctx.origin, ctx.context);
    match (method, id.is_empty()) {
        (&Method::POST, true) => {
            if let Some(op) = ctx.param("op") {
                if op != "create" {
                    return ctx.error(
                        StatusCode::BAD_REQUEST,
                        format!("op={op}: the only session op is create"),
                    );
                }
            }
            let expire = match ctx.param("expire") {
                None => gateway.config.default_session_expire_secs,
                Some(value) => match value.parse::<u64>() {
                    Ok(secs) if (1..=86_400).contains(&secs) => secs,
                    _ => {
                        return ctx.error(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "expire={value}: must be a whole number of seconds from 1 to 86400"
                            ),
                        )
                    }
                },
            };
            match endpoint.create_session(Duration::from_secs(expire)).await {
                Ok(id) => {
                    let uri = session_uri(&id);
                    let mut response = json_response(
                        StatusCode::CREATED,
                        &SessionJson { id, uri: uri.clone() },
                        None,
                    );
                    if let Ok(location) = HeaderValue::from_str(&uri) {
                        response.headers_mut().insert(header::LOCATION, location);
                    }
                    response
                }
                Err(Unavailable(why)) => ctx.error(StatusCode::BAD_GATEWAY, why),
            }
        }
        (&Method::PUT, false) => {
            if endpoint.heartbeat(id) {
                StatusCode::OK.into_response()
            } else {
                ctx.error(
                    StatusCode::NOT_FOUND,
                    format!("session {id} not found (expired or deleted)"),
                )
            }
        }
        (&Method::DELETE, false) => {
            endpoint.delete_session(id, gateway.config.zk_timeout).await;
            StatusCode::NO_CONTENT.into_response()
        }
        (_, true) => ctx.error(
            StatusCode::METHOD_NOT_ALLOWED,
            "sessions/v1/: POST ?op=create&expire=<seconds> opens a session",
        ),
        (_, false) => ctx.error(
            StatusCode::METHOD_NOT_ALLOWED,
            "sessions/v1/<id>: PUT is a heartbeat, DELETE closes it",
        ),
    }
}

pub(crate) struct ZnodeRequest<'a> {
    pub ctx: &'a Ctx,
    pub endpoint: &'a Arc<Endpoint>,
    pub zk_timeout: Duration,
    pub method: &'a Method,
}

/// A short-circuit answer (a 4xx or 502) while preparing or running a request.
type Answer<T> = Result<T, Box<Response>>;

impl ZnodeRequest<'_> {
    async fn serve(&self, path: &str, body: &mut RequestBody, max_body: usize) -> Response {
        match self.run(path, body, max_body).await {
            Ok(response) => response,
            Err(response) => *response,
        }
    }

    async fn run(&self, path: &str, body: &mut RequestBody, max_body: usize) -> Answer<Response> {
        let ctx = self.ctx;
        validate_path(path).map_err(|why| ctx.reject(StatusCode::BAD_REQUEST, why))?;
        match *self.method {
            Method::HEAD => {
                let client = self.client(false).await?;
                let stat = self.call(path, client.check_stat(path)).await?;
                Ok(match stat {
                    None => ctx.error(StatusCode::NOT_FOUND, format!("{path} not found")),
                    Some(_) if ctx.wants_octets() => StatusCode::NO_CONTENT.into_response(),
                    Some(_) => StatusCode::OK.into_response(),
                })
            }
            Method::GET => self.get(path).await,
            Method::PUT => {
                let version = self.version()?;
                let null = self.flag("null")?;
                self.content_type()?;
                let data = self.body(body, max_body).await?;
                let data = if null { Bytes::new() } else { data };
                let client = self.client(false).await?;
                let stat = self.call(path, client.set_data(path, &data, version)).await?;
                if null {
                    self.endpoint.nulls.wrote_null(path, stat.mzxid);
                } else {
                    self.endpoint.nulls.wrote_data(path);
                }
                if ctx.wants_octets() {
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
                Ok(json_response(
                    StatusCode::OK,
                    &StatJson::new(path, ctx.znode_uri(path), &stat),
                    None,
                ))
            }
            Method::POST => self.create(path, body, max_body).await,
            Method::DELETE => {
                let version = self.version()?;
                let client = self.client(false).await?;
                self.call(path, client.delete(path, version)).await?;
                self.endpoint.nulls.wrote_data(path);
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            _ => Err(ctx.reject(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{} is not a znodes/v1 method: use HEAD, GET, PUT, POST or DELETE",
                    self.method
                ),
            )),
        }
    }

    async fn get(&self, path: &str) -> Answer<Response> {
        let ctx = self.ctx;
        let callback = match ctx.param("callback") {
            None => None,
            Some(name) if valid_callback(name) => Some(name),
            Some(_) => {
                return Err(ctx.reject(
                    StatusCode::BAD_REQUEST,
                    "callback: a JSONP callback name may hold only letters, digits and '_'",
                ))
            }
        };
        let utf8 = match ctx.param("dataformat") {
            None | Some("base64") => false,
            Some("utf8") => true,
            Some(other) => {
                return Err(ctx.reject(
                    StatusCode::BAD_REQUEST,
                    format!("dataformat={other}: use base64 or utf8"),
                ))
            }
        };
        match ctx.param("view") {
            None | Some("data") => {
                let client = self.client(false).await?;
                let (data, stat) = self.call(path, client.get_data(path)).await?;
                // Null only when this gateway wrote it so and nobody wrote since
                // (see `NullWrites`): the client library reads null as empty.
                let null = data.is_empty() && self.endpoint.nulls.is_null(path, stat.mzxid);
                if ctx.wants_octets() {
                    if null {
                        return Ok(StatusCode::NO_CONTENT.into_response());
                    }
                    return Ok((
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/octet-stream"),
                        )],
                        data,
                    )
                        .into_response());
                }
                let mut json = StatJson::new(path, ctx.znode_uri(path), &stat);
                // The original leaves the data field out for null data.
                if !null && utf8 {
                    json.data_utf8 = Some(String::from_utf8_lossy(&data).into_owned());
                } else if !null {
                    json.data64 = Some(base64::engine::general_purpose::STANDARD.encode(&data));
                }
                Ok(json_response(StatusCode::OK, &json, callback))
            }
            Some("children") => {
                let client = self.client(false).await?;
                let mut children = self.call(path, client.list_children(path)).await?;
                children.sort();
                let uri = ctx.znode_uri(path);
                let child_uri_template = if uri.ends_with('/') {
                    format!("{uri}{{child}}")
                } else {
                    format!("{uri}/{{child}}")
                };
                let json =
                    ChildrenJson { path: path.to_owned(), uri, child_uri_template, children };
                Ok(json_response(StatusCode::OK, &json, callback))
            }
            Some(other) => {
                Err(ctx
                    .reject(StatusCode::BAD_REQUEST, format!("view={other}: use data or children")))
            }
        }
    }

    async fn create(
        &self,
        parent: &str,
        body: &mut RequestBody,
        max_body: usize,
    ) -> Answer<Response> {
        let ctx = self.ctx;
        if let Some(op) = ctx.param("op") {
            if op != "create" {
                return Err(ctx.reject(
                    StatusCode::BAD_REQUEST,
                    format!("op={op}: the only POST op is create"),
                ));
            }
        }
        let name = ctx.param("name").unwrap_or("");
        let sequence = self.flag("sequence")?;
        let ephemeral = self.flag("ephemeral")?;
        let null = self.flag("null")?;
        if name.contains('/') || name == "." || name == ".." || name.contains('\0') {
            return Err(ctx.reject(
                StatusCode::BAD_REQUEST,
                format!("name={name}: a node name holds no '/', and is not . or .."),
            ));
        }
        if name.is_empty() && !sequence {
            return Err(ctx.reject(
                StatusCode::BAD_REQUEST,
                "name: required (it may be empty only with sequence=true)",
            ));
        }
        if ephemeral && ctx.param("session").is_none() {
            return Err(ctx.reject(
                StatusCode::BAD_REQUEST,
                "ephemeral=true needs session=<id> (POST /sessions/v1/?op=create first): without a session \
                 the node would belong to the gateway's shared connection and outlive your client",
            ));
        }
        self.content_type()?;
        let data = self.body(body, max_body).await?;
        let data = if null { Bytes::new() } else { data };
        let path = if parent == "/" { format!("/{name}") } else { format!("{parent}/{name}") };
        let mode = create_mode(sequence, ephemeral);
        let client = self.client(ephemeral).await?;
        let options = mode.with_acls(zk::Acls::anyone_all());
        let (stat, sequence_number) =
            self.call(&path, client.create(&path, &data, &options)).await?;
        let created = if sequence { format!("{path}{sequence_number}") } else { path };
        // A 3.4 server answers a create without its stat: no zxid to remember.
        if null && !stat.is_invalid() {
            self.endpoint.nulls.wrote_null(&created, stat.mzxid);
        } else {
            self.endpoint.nulls.wrote_data(&created);
        }
        let location = HeaderValue::from_str(&ctx.znode_uri(&created)).ok();
        let mut response = if ctx.wants_octets() {
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))],
                created.clone().into_bytes(),
            )
                .into_response()
        } else {
            json_response(
                StatusCode::CREATED,
                &PathJson { path: created, uri: ctx.znode_uri(parent) },
                None,
            )
        };
        if let Some(location) = location {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    }

    /// The connection this request runs on: its session's, or the shared one.
    pub(crate) async fn client(&self, _ephemeral: bool) -> Answer<zk::Client> {
        match self.ctx.param("session") {
            Some(id) => match self.endpoint.session(id) {
                Some(session) => Ok(session.client.clone()),
                None => Err(self.ctx.reject(
                    StatusCode::UNAUTHORIZED,
                    format!("session {id} not found (expired, deleted or never opened)"),
                )),
            },
            None => self
                .endpoint
                .shared_client()
                .await
                .map_err(|Unavailable(why)| self.ctx.reject(StatusCode::BAD_GATEWAY, why)),
        }
    }

    /// Runs one ZooKeeper call under the timeout and maps its error to an answer.
    async fn call<T>(
        &self,
        path: &str,
        call: impl std::future::Future<Output = Result<T, zk::Error>>,
    ) -> Answer<T> {
        match tokio::time::timeout(self.zk_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let (status, message) = zk_error_status(path, &err);
                if status == StatusCode::BAD_GATEWAY {
                    tracing::debug!(%path, %err, "ZooKeeper call failed; outcome unknown");
                }
                Err(self.ctx.reject(status, message))
            }
            Err(_) => Err(self.ctx.reject(
                StatusCode::BAD_GATEWAY,
                format!("ZooKeeper did not answer within {:?}: outcome unknown", self.zk_timeout),
            )),
        }
    }

    fn version(&self) -> Answer<Option<i32>> {
        match self.ctx.param("version") {
            None => Ok(None),
            Some(value) => match value.parse::<i32>() {
                Ok(-1) => Ok(None),
                Ok(v) if v >= 0 => Ok(Some(v)),
                _ => Err(self.ctx.reject(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "version={value}: must be an integer, -1 (any) or a znode version >= 0"
                    ),
                )),
            },
        }
    }

    fn flag(&self, name: &str) -> Answer<bool> {
        match self.ctx.param(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(self
                .ctx
                .reject(StatusCode::BAD_REQUEST, format!("{name}={v}: use true or false"))),
        }
    }

    /// PUT and POST bodies are raw bytes; any other declared type is refused.
    fn content_type(&self) -> Answer<()> {
        let Some(value) = self.ctx.headers.get(header::CONTENT_TYPE) else { return Ok(()) };
        let media = value
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media == "application/octet-stream" {
            Ok(())
        } else {
            Err(self.ctx.reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {media:?}: send the data as application/octet-stream"),
            ))
        }
    }

    async fn body(&self, body: &mut RequestBody, max_body: usize) -> Answer<Bytes> {
        let too_large = || {
            self.ctx.reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over the limit of {max_body} bytes (ZooKeeper's znode limit is about 1 MB)"),
            )
        };
        // Refused from the head, before the body is polled: a client that sent
        // `Expect: 100-continue` then never sends it.
        if body.declared_len().is_some_and(|n| n > max_body as u64) {
            return Err(too_large());
        }
        body.read(max_body).await.map_err(|err| match err {
            ReadError::TooLarge => too_large(),
            ReadError::Broken => self
                .ctx
                .reject(StatusCode::BAD_REQUEST, "the request body broke off before its end"),
        })
    }
}

/// The create mode of the `sequence` and `ephemeral` flags (v1's and `multi`'s).
pub(crate) fn create_mode(sequence: bool, ephemeral: bool) -> zk::CreateMode {
    match (sequence, ephemeral) {
        (false, false) => zk::CreateMode::Persistent,
        (true, false) => zk::CreateMode::PersistentSequential,
        (false, true) => zk::CreateMode::Ephemeral,
        (true, true) => zk::CreateMode::EphemeralSequential,
    }
}

/// The ZooKeeper-error table of REST-API.md. Definite refusals that the table does
/// not name (an ephemeral parent) are 400: 502 would tell a client the outcome is
/// unknown, which is false.
pub(crate) fn zk_error_status(path: &str, err: &zk::Error) -> (StatusCode, String) {
    match err {
        zk::Error::NoNode => (StatusCode::NOT_FOUND, format!("{path} not found")),
        zk::Error::NodeExists => (StatusCode::CONFLICT, "already exists".into()),
        zk::Error::NotEmpty => (StatusCode::CONFLICT, "not empty".into()),
        zk::Error::BadVersion => (StatusCode::PRECONDITION_FAILED, "bad version".into()),
        zk::Error::BadArguments(_) => (StatusCode::BAD_REQUEST, "bad arguments".into()),
        zk::Error::InvalidAcl => (StatusCode::BAD_REQUEST, "invalid acl".into()),
        zk::Error::NoChildrenForEphemerals => {
            (StatusCode::BAD_REQUEST, "bad arguments: ephemeral nodes can not have children".into())
        }
        zk::Error::AuthFailed | zk::Error::NoAuth => {
            (StatusCode::UNAUTHORIZED, "not authorized".into())
        }
        other => (StatusCode::BAD_GATEWAY, format!("ZooKeeper: {other}: outcome unknown")),
    }
}

fn basic_auth_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else { return false };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .is_ok_and(|decoded| decoded == expected.as_bytes())
}

fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Percent-decodes the ZooKeeper path part of a URL.
fn decode_path(encoded: &str) -> Result<String, String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) => out.push(byte),
                None => return Err(format!("path {encoded:?}: invalid percent-encoding")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| format!("path {encoded:?}: not UTF-8 after percent-decoding"))
}

/// ZooKeeper's path rules, checked before anything reaches the ensemble.
pub(crate) fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("no ZooKeeper path: the root is /znodes/v1/".into());
    }
    if !path.starts_with('/') {
        return Err(format!("path {path:?}: must start with '/'"));
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(format!("path {path:?}: must not end with '/'"));
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return Err(format!("path {path:?}: empty segment"));
        }
        if segment == "." || segment == ".." {
            return Err(format!("path {path:?}: relative segment {segment:?}"));
        }
        if segment.chars().any(|c| c == '\0' || ('\u{1}'..='\u{1f}').contains(&c) || c == '\u{7f}')
        {
            return Err(format!("path {path:?}: control character"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(validate_path("/").is_ok());
        assert!(validate_path("/a/b-c_d.e").is_ok());
        for bad in ["", "a", "/a/", "//a", "/a//b", "/a/../b", "/.", "/a/\u{1}"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode_path("/a%20b").unwrap(), "/a b");
        assert!(decode_path("/a%2").is_err());
        assert!(decode_path("/a%ff").is_err());
        assert_eq!(encode_path("/a b/c"), "/a%20b/c");
    }

    #[test]
    fn callbacks() {
        assert!(valid_callback("cb_1"));
        for bad in ["", "a.b", "alert(1)", "a-b", "x;y"] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }
}
