//! zkmq's `multi` extension: several writes as one ZooKeeper transaction over HTTP.
//!
//! ZooKeeper's contrib REST interface has no `multi`, so a REST client of the queue
//! needs a replicated write (and an HTTP round trip) per step of every message: the
//! claim protocol's four. With this extension a REST client runs the same protocols
//! as a native one, a batch of messages in one transaction, and REST's cost per
//! message falls to the native path's plus HTTP. It lives beside the v1 API, under
//! the endpoint's context, so v1 clients see no change:
//!
//! ```text
//! POST <context>/zkmq/v1/multi[?session=<id>]     Content-Type: application/json
//! {"ops": [{"op": "check",  "path": "/q/consumers/c-1/status", "version": -1},
//!          {"op": "create", "path": "/q/messages/message-", "data64": "aGk=",
//!           "sequence": true, "ephemeral": false},
//!          {"op": "set",    "path": "/q/x", "data64": "", "version": 3},
//!          {"op": "delete", "path": "/q/messages/message-0000000007", "version": 0}]}
//! ```
//!
//! `version` defaults to -1 (any), `data64` to empty data, the flags to false. With
//! `session=<id>` the transaction runs on that gateway session's ZooKeeper session
//! (its ephemerals are the session's); an ephemeral create needs one.
//!
//! - **200**: `{"results": [{"op": "create", "path": "<created path>"}, ...]}`, one
//!   per operation in order (`set` also gives the node's new `version`).
//! - **A definite failure** of the transaction answers the failing operation's
//!   status from REST-API.md's table (404 no node, 409 exists or not empty, 412 bad
//!   version, 400 bad arguments) with the error object and `"index"`: the first
//!   operation that failed. Nothing was written.
//! - **400** for a request that never reached ZooKeeper (bad JSON, a bad path, an
//!   ephemeral create without a session), with `"index"` where one operation is to
//!   blame; **401** for an unknown session; **502** when the outcome is unknown.
//!
//! A gateway session's info (`GET /zkmq/v1/sessions/<id>`) lists `"multi"` among
//! its `extensions`; that is how a client learns it may use this.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use super::body::{ReadError, RequestBody};
use super::server::{create_mode, json_response, validate_path, zk_error_status, ZnodeRequest};

/// The extension's name in a session's `extensions`, and its path under a context.
pub(crate) const NAME: &str = "multi";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiJson {
    ops: Vec<OpJson>,
}

fn any_version() -> i32 {
    -1
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum OpJson {
    Check {
        path: String,
        #[serde(default = "any_version")]
        version: i32,
    },
    Create {
        path: String,
        #[serde(default)]
        data64: String,
        #[serde(default)]
        sequence: bool,
        #[serde(default)]
        ephemeral: bool,
    },
    Set {
        path: String,
        #[serde(default)]
        data64: String,
        #[serde(default = "any_version")]
        version: i32,
    },
    Delete {
        path: String,
        #[serde(default = "any_version")]
        version: i32,
    },
}

impl OpJson {
    fn path(&self) -> &str {
        match self {
            Self::Check { path, .. }
            | Self::Create { path, .. }
            | Self::Set { path, .. }
            | Self::Delete { path, .. } => path,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Check { .. } => "check",
            Self::Create { .. } => "create",
            Self::Set { .. } => "set",
            Self::Delete { .. } => "delete",
        }
    }

    fn version(&self) -> Option<i32> {
        match self {
            Self::Check { version, .. }
            | Self::Set { version, .. }
            | Self::Delete { version, .. } => Some(*version),
            Self::Create { .. } => None,
        }
    }
}

#[derive(Serialize)]
struct ResultJson {
    op: &'static str,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i32>,
}

#[derive(Serialize)]
struct ResultsJson {
    results: Vec<ResultJson>,
}

#[derive(Serialize)]
struct MultiErrorJson {
    request: String,
    message: String,
    /// The first operation that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
}

impl ZnodeRequest<'_> {
    /// Serves `POST <context>/zkmq/v1/multi`.
    pub(crate) async fn multi(&self, body: &mut RequestBody, max_body: usize) -> Response {
        let ctx = self.ctx;
        let reject = |status: StatusCode, index: Option<usize>, message: String| {
            let body = MultiErrorJson { request: ctx.request_uri.clone(), message, index };
            json_response(status, &body, None)
        };
        if *self.method != axum::http::Method::POST {
            return reject(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                "use POST with a JSON body {\"ops\": [...]}".into(),
            );
        }
        // Base64 and JSON add about a third to the data a transaction carries.
        let limit = max_body.saturating_mul(2);
        let raw = match body.read(limit).await {
            Ok(raw) => raw,
            Err(ReadError::TooLarge) => {
                return reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    format!("request body over the limit of {limit} bytes for a multi"),
                )
            }
            Err(ReadError::Broken) => {
                return reject(
                    StatusCode::BAD_REQUEST,
                    None,
                    "the request body broke off before its end".into(),
                )
            }
        };
        let request: MultiJson = match serde_json::from_slice(&raw) {
            Ok(request) => request,
            Err(err) => {
                return reject(
                    StatusCode::BAD_REQUEST,
                    None,
                    format!("not a multi request ({{\"ops\": [{{\"op\": \"create\", \"path\": ...}}]}}): {err}"),
                )
            }
        };
        let mut data = Vec::with_capacity(request.ops.len());
        for (index, op) in request.ops.iter().enumerate() {
            let bad = |why: String| {
                reject(StatusCode::BAD_REQUEST, Some(index), format!("operation {index}: {why}"))
            };
            if let Err(why) = validate_path(op.path()) {
                return bad(why);
            }
            if op.version().is_some_and(|v| v < -1) {
                return bad("version must be -1 (any) or a znode version >= 0".into());
            }
            if matches!(op, OpJson::Create { ephemeral: true, .. })
                && ctx.param("session").is_none()
            {
                return bad("an ephemeral create needs session=<id>".into());
            }
            let encoded = match op {
                OpJson::Create { data64, .. } | OpJson::Set { data64, .. } => data64.as_str(),
                _ => "",
            };
            match base64::engine::general_purpose::STANDARD.decode(encoded) {
                Ok(bytes) => data.push(bytes),
                Err(err) => return bad(format!("data64 is not base64: {err}")),
            }
        }
        let client = match self.client(false).await {
            Ok(client) => client,
            Err(response) => return *response,
        };
        let mut writer = client.new_multi_writer();
        for (index, (op, data)) in request.ops.iter().zip(&data).enumerate() {
            let added = match op {
                OpJson::Check { path, version } => writer.add_check_version(path, *version),
                OpJson::Create { path, sequence, ephemeral, .. } => {
                    let options =
                        create_mode(*sequence, *ephemeral).with_acls(zk::Acls::anyone_all());
                    writer.add_create(path, data, &options)
                }
                // -1 is "any version" on the wire, as in the request.
                OpJson::Set { path, version, .. } => {
                    writer.add_set_data(path, data, Some(*version))
                }
                OpJson::Delete { path, version } => writer.add_delete(path, Some(*version)),
            };
            if let Err(err) = added {
                return reject(
                    StatusCode::BAD_REQUEST,
                    Some(index),
                    format!("operation {index} ({} {}): {err}", op.name(), op.path()),
                );
            }
        }
        let committed = tokio::time::timeout(self.zk_timeout, writer.commit()).await;
        // Every path a committed (or possibly committed) write touched is no longer at
        // a null write of this gateway's.
        let forget_nulls = || {
            for op in &request.ops {
                if !matches!(op, OpJson::Check { .. }) {
                    self.endpoint.nulls.wrote_data(op.path());
                }
            }
        };
        match committed {
            Ok(Ok(results)) => {
                forget_nulls();
                let results = request
                    .ops
                    .iter()
                    .zip(results)
                    .map(|(op, result)| match result {
                        zk::MultiWriteResult::Create { path, .. } => {
                            self.endpoint.nulls.wrote_data(&path);
                            ResultJson { op: op.name(), path, version: None }
                        }
                        zk::MultiWriteResult::SetData { stat } => ResultJson {
                            op: op.name(),
                            path: op.path().to_owned(),
                            version: Some(stat.version),
                        },
                        _ => {
                            ResultJson { op: op.name(), path: op.path().to_owned(), version: None }
                        }
                    })
                    .collect();
                json_response(StatusCode::OK, &ResultsJson { results }, None)
            }
            Ok(Err(zk::MultiWriteError::OperationFailed { index, source })) => {
                let op = request.ops.get(index);
                let path = op.map(OpJson::path).unwrap_or("?");
                let (status, message) = zk_error_status(path, &source);
                let what = op.map(|op| format!("{} {}", op.name(), op.path())).unwrap_or_default();
                let message = format!("operation {index} ({what}): {message}");
                if status == StatusCode::BAD_GATEWAY {
                    forget_nulls();
                    return reject(status, None, message);
                }
                reject(status, Some(index), format!("{message}; nothing was written"))
            }
            Ok(Err(zk::MultiWriteError::RequestFailed { source })) => {
                let (status, message) = zk_error_status("multi", &source);
                if status == StatusCode::BAD_GATEWAY {
                    forget_nulls();
                }
                reject(status, None, message)
            }
            Err(_) => {
                forget_nulls();
                reject(
                    StatusCode::BAD_GATEWAY,
                    None,
                    format!(
                        "ZooKeeper did not answer within {:?}: outcome unknown",
                        self.zk_timeout
                    ),
                )
            }
        }
    }
}
