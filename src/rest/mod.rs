//! zkmq's re-implementation of ZooKeeper's contrib REST gateway (`znodes/v1`,
//! `sessions/v1`), compatible with what the original Java gateway answered (see
//! `REST-API.md` and the README's "The REST gateway").
//!
//! An axum server in front of one or more ensembles ([`config`] maps context paths
//! to connect strings). Each endpoint keeps one shared ZooKeeper connection, rebuilt
//! when its session dies, plus one connection per `/sessions/v1` session so that
//! ephemerals created with `session=<id>` live and die with that session. Every
//! ZooKeeper call is bounded by [`GatewayConfig::zk_timeout`]; an unknown outcome is
//! a 502, never a hang.
//!
//! Deliberate differences from the Java gateway (REST-API.md, "quirks not to copy"):
//! the `Location` header after a create names the created node once; `ephemeral=true`
//! without `session=` is refused with 400; an unknown session gets 401 with an error
//! object (not an empty body). Null data (`null=true`) is stored as empty data,
//! since the client library can neither write nor read null; it reads back as null
//! (no data field, 204 for octet-stream) while the node is still at this gateway's
//! null write, and as empty data otherwise (see `endpoint::NullWrites`). Extensions
//! live under `/zkmq/v1/`: `/zkmq/v1/health` and `/zkmq/v1/sessions/<id>` for the
//! gateway, `<context>/zkmq/v1/multi` (one transaction of writes, see [`multi`]) for
//! an endpoint.

mod body;
pub mod config;
mod endpoint;
mod multi;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{EndpointConfig, GatewayConfig, DEFAULT_PORT};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source} (is another gateway running there? pick another --listen port)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// A gateway bound to its address but not serving yet: lets a caller (a test) learn
/// the port of `127.0.0.1:0` before requests arrive.
pub struct BoundGateway {
    listener: tokio::net::TcpListener,
    gateway: Arc<server::Gateway>,
}

impl BoundGateway {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.gateway.config.listen)
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        use axum::serve::ListenerExt as _;
        let router = axum::Router::new().fallback(server::handle).with_state(self.gateway);
        // Answers are small and clients (the queue's store) keep many requests in
        // flight on keep-alive connections: Nagle's algorithm would hold a write
        // back until the last one is acknowledged, and the peer delays its ACKs.
        let listener = self.listener.tap_io(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY on a connection: {err}");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(GatewayError::Serve)
    }
}

/// Validates `config` and binds its listen address.
pub async fn bind(config: GatewayConfig) -> Result<BoundGateway, GatewayError> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayError::Bind { addr: config.listen, source })?;
    let gateway = Arc::new(server::Gateway::new(config));
    Ok(BoundGateway { listener, gateway })
}

/// Serves `config` until `shutdown` completes.
pub async fn serve(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let bound = bind(config).await?;
    tracing::info!(listen = %bound.local_addr(), "REST gateway serving");
    bound.run(shutdown).await
}
