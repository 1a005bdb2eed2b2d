//! `zkmq rest ...`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use zkmq::rest::{self, EndpointConfig, GatewayConfig};

#[derive(Subcommand)]
pub enum RestCommand {
    /// Serve ZooKeeper's REST interface (znodes/v1, sessions/v1) in front of an ensemble
    #[command(long_about = "Serve ZooKeeper's REST interface, compatible with the contrib REST \
gateway that shipped with Apache ZooKeeper:\n\n  \
HEAD/GET/PUT/POST/DELETE <context>/znodes/v1/<zk path>   exists, read (view=children, \
dataformat=base64|utf8, callback=<jsonp>), set (version=N), create (name=, sequence=, \
ephemeral=, null=), delete (version=N)\n  \
POST <context>/sessions/v1/?op=create&expire=<s>       a session: its ephemerals go when \
it expires without a PUT heartbeat, or on DELETE\n  \
GET /zkmq/v1/health                                   (extension) endpoints and sessions\n  \
POST <context>/zkmq/v1/multi?session=<id>             (extension) one transaction of writes: \
{\"ops\": [{\"op\": \"check|create|set|delete\", \"path\": ...}]} (README: The REST gateway)\n\n\
Examples:\n  \
zkmq rest serve --endpoint '/;127.0.0.1:2181'\n  \
curl -s http://127.0.0.1:9998/znodes/v1/?view=children\n  \
curl -s -X POST -H 'Content-Type: application/octet-stream' --data-binary hello \\\n    \
'http://127.0.0.1:9998/znodes/v1/?op=create&name=greeting'\n  \
curl -s 'http://127.0.0.1:9998/znodes/v1/greeting?dataformat=utf8'\n\n\
Several --endpoint flags serve several ensembles (or chroots) under different context paths. \
The gateway binds 127.0.0.1 unless --listen says otherwise; it has no TLS (put a proxy in \
front), only optional HTTP Basic auth per endpoint (in the properties file).")]
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. 0.0.0.0 exposes the gateway (and your ZooKeeper) to the network
    #[arg(long, default_value = "127.0.0.1:9998")]
    pub listen: Option<SocketAddr>,
    /// <context>;<connect string>[/chroot]: serve this ensemble under this context path.
    /// E.g. '/;zk1:2181,zk2:2181' or '/orders;zk1:2181/apps/orders'. Repeatable
    #[arg(long = "endpoint", value_name = "CONTEXT;CONNECT")]
    pub endpoints: Vec<String>,
    /// A properties file with the original gateway's keys: rest.port, rest.endpoint.N,
    /// rest.endpoint.N.http.auth (user:pass), rest.endpoint.N.zk.digest (user:pass).
    /// --endpoint flags add to its endpoints; --listen overrides its port
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Largest request body accepted, in bytes (413 above it)
    #[arg(long, default_value_t = GatewayConfig::default().max_body)]
    pub max_body: usize,
    /// Bound on every ZooKeeper call; past it the answer is 502 (outcome unknown)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub zk_timeout: Duration,
    /// Session timeout asked of ZooKeeper for each endpoint's shared connection
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub zk_session_timeout: Duration,
}

pub async fn run(command: RestCommand) -> anyhow::Result<u8> {
    match command {
        RestCommand::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let mut config = match &args.config {
        Some(path) => GatewayConfig::from_properties_file(path)?,
        None => GatewayConfig::default(),
    };
    // --listen has a default, so it only overrides a properties file's port when given
    // explicitly; clap cannot tell us, so compare with the default.
    if let Some(listen) = args.listen {
        if args.config.is_none() || listen != GatewayConfig::default().listen {
            config.listen = listen;
        }
    }
    for spec in &args.endpoints {
        config.endpoints.push(EndpointConfig::parse(spec)?);
    }
    config.max_body = args.max_body;
    config.zk_timeout = args.zk_timeout;
    config.zk_session_timeout = args.zk_session_timeout;
    // SIGTERM (docker stop) and Ctrl-C both stop it gracefully.
    let shutdown = async {
        #[cfg(unix)]
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    };
    let bound = rest::bind(config.clone()).await?;
    let listen = bound.local_addr();
    for endpoint in &config.endpoints {
        eprintln!(
            "zkmq rest: serving http://{listen}{}/znodes/v1/ -> {}",
            if endpoint.context == "/" { "" } else { &endpoint.context },
            endpoint.connect
        );
    }
    bound.run(shutdown).await.context("REST gateway")?;
    Ok(super::EXIT_OK)
}
