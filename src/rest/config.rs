//! What a gateway serves: listen address, endpoints, limits. Plain data
//! (`Serialize + Deserialize`), built from command-line flags or from a properties
//! file with the original Java gateway's keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::GatewayError;

/// The port the original gateway used.
pub const DEFAULT_PORT: u16 = 9998;

/// Everything one gateway process serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where to listen. 127.0.0.1 unless the operator asks for more: the gateway
    /// has no TLS, and its only auth is optional HTTP Basic.
    pub listen: SocketAddr,
    /// Context path -> ensemble mappings; requests go to the longest matching context.
    pub endpoints: Vec<EndpointConfig>,
    /// Largest request body accepted (413 above it). ZooKeeper refuses znodes over
    /// about 1 MB anyway; refusing early keeps a client from streaming gigabytes.
    pub max_body: usize,
    /// Bound on every ZooKeeper call. The client queues requests while disconnected,
    /// so without it a request would hang for as long as the ensemble is down; on
    /// expiry the outcome is unknown and the answer is 502.
    #[serde(with = "humantime_serde")]
    pub zk_timeout: Duration,
    /// Session timeout asked of ZooKeeper for each endpoint's shared connection.
    #[serde(with = "humantime_serde")]
    pub zk_session_timeout: Duration,
    /// `expire` of a `/sessions/v1` session when the client names none (the original: 5 s).
    pub default_session_expire_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            endpoints: Vec::new(),
            max_body: 1024 * 1024 + 4096,
            zk_timeout: Duration::from_secs(5),
            zk_session_timeout: Duration::from_secs(10),
            default_session_expire_secs: 5,
        }
    }
}

/// One endpoint: a context path served from one ensemble (optionally a chroot of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `/` or `/orders`: the prefix of every URL this endpoint answers.
    pub context: String,
    /// A ZooKeeper connect string, optionally with a chroot:
    /// `zk1:2181,zk2:2181/apps/orders`.
    pub connect: String,
    /// `user:password` that HTTP Basic auth must present, if set.
    #[serde(default)]
    pub http_auth: Option<String>,
    /// `user:password` added as ZooKeeper digest auth on every connection, if set.
    #[serde(default)]
    pub zk_digest: Option<String>,
}

impl EndpointConfig {
    /// Parses `--endpoint` syntax, the original's `rest.endpoint.N` value:
    /// `<context>;<connect string>[/chroot]`, e.g. `/;zk1:2181,zk2:2181`.
    pub fn parse(spec: &str) -> Result<Self, GatewayError> {
        let bad = |why: &str| {
            GatewayError::Config(format!(
                "endpoint {spec:?}: {why}; expected <context>;<connect string>, \
                 e.g. '/;zk1:2181,zk2:2181' or '/orders;zk1:2181/apps/orders'"
            ))
        };
        let (context, connect) = spec.split_once(';').ok_or_else(|| bad("no ';'"))?;
        let context = context.trim();
        let connect = connect.trim();
        if !context.starts_with('/') {
            return Err(bad("the context path must start with '/'"));
        }
        if context.len() > 1 && context.ends_with('/') {
            return Err(bad("the context path must not end with '/' (except the root '/')"));
        }
        if context.split('/').skip(1).any(|s| s.is_empty() && context != "/") {
            return Err(bad("the context path has an empty segment"));
        }
        if connect.is_empty() || connect.starts_with('/') {
            return Err(bad("the connect string has no host:port"));
        }
        Ok(Self {
            context: context.to_owned(),
            connect: connect.to_owned(),
            http_auth: None,
            zk_digest: None,
        })
    }
}

impl GatewayConfig {
    /// Reads a properties file with the original gateway's keys: `rest.port`,
    /// `rest.endpoint.N`, `rest.endpoint.N.http.auth` (`user:pass`),
    /// `rest.endpoint.N.zk.digest` (`user:pass`). TLS keys (`rest.ssl*`) are refused
    /// with a note: put a TLS proxy in front.
    pub fn from_properties_file(path: &Path) -> Result<Self, GatewayError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            GatewayError::Config(format!("cannot read {}: {err}", path.display()))
        })?;
        Self::from_properties(&text)
            .map_err(|err| GatewayError::Config(format!("{}: {err}", path.display())))
    }

    /// See [`GatewayConfig::from_properties_file`].
    pub fn from_properties(text: &str) -> Result<Self, String> {
        let mut config = GatewayConfig::default();
        let mut endpoints: BTreeMap<u32, (Option<String>, Option<String>, Option<String>)> =
            BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line.split_once(['=', ':']) else {
                return Err(format!("line {line_no}: expected key=value, found {line:?}"));
            };
            let (key, value) = (key.trim(), value.trim().to_owned());
            if key == "rest.port" {
                let port: u16 = value.parse().map_err(|_| {
                    format!("line {line_no}: rest.port {value:?} is not a port number")
                })?;
                config.listen.set_port(port);
            } else if key.starts_with("rest.ssl") {
                if key == "rest.ssl" && value.eq_ignore_ascii_case("false") {
                    continue;
                }
                return Err(format!(
                    "line {line_no}: {key}: zkmq's gateway does not serve TLS; put a TLS-terminating \
                     proxy in front of it and remove the rest.ssl keys"
                ));
            } else if let Some(rest) = key.strip_prefix("rest.endpoint.") {
                let (number, suffix) = match rest.split_once('.') {
                    Some((n, s)) => (n, Some(s)),
                    None => (rest, None),
                };
                let number: u32 = number.parse().map_err(|_| {
                    format!("line {line_no}: {key}: the endpoint number is not a number")
                })?;
                let entry = endpoints.entry(number).or_default();
                match suffix {
                    None => entry.0 = Some(value),
                    Some("http.auth") => entry.1 = Some(value),
                    Some("zk.digest") => entry.2 = Some(value),
                    Some(other) => {
                        return Err(format!(
                            "line {line_no}: unknown key {key} (.{other}); known: rest.endpoint.N, \
                             rest.endpoint.N.http.auth, rest.endpoint.N.zk.digest"
                        ))
                    }
                }
            } else {
                return Err(format!(
                    "line {line_no}: unknown key {key}; known: rest.port, rest.endpoint.N, \
                     rest.endpoint.N.http.auth, rest.endpoint.N.zk.digest"
                ));
            }
        }
        for (number, (spec, http_auth, zk_digest)) in endpoints {
            let spec = spec.ok_or_else(|| {
                format!("rest.endpoint.{number}.* is set but rest.endpoint.{number} is not")
            })?;
            let mut endpoint = EndpointConfig::parse(&spec).map_err(|err| err.to_string())?;
            for (what, value) in [("http.auth", &http_auth), ("zk.digest", &zk_digest)] {
                if value.as_ref().is_some_and(|v| !v.contains(':')) {
                    return Err(format!("rest.endpoint.{number}.{what} must be user:password"));
                }
            }
            endpoint.http_auth = http_auth;
            endpoint.zk_digest = zk_digest;
            config.endpoints.push(endpoint);
        }
        Ok(config)
    }

    /// Refuses a configuration that cannot serve anything.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if self.endpoints.is_empty() {
            return Err(GatewayError::Config(
                "no endpoint: give at least one --endpoint '/;zk1:2181,zk2:2181' \
                 (or rest.endpoint.1 in the properties file)"
                    .into(),
            ));
        }
        for (i, a) in self.endpoints.iter().enumerate() {
            if self.endpoints[..i].iter().any(|b| b.context == a.context) {
                return Err(GatewayError::Config(format!(
                    "two endpoints share the context path {}",
                    a.context
                )));
            }
        }
        if self.zk_timeout.is_zero() || self.max_body == 0 {
            return Err(GatewayError::Config("zk_timeout and max_body must be above zero".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_specs() {
        let e = EndpointConfig::parse("/;zk1:2181,zk2:2181").unwrap();
        assert_eq!((e.context.as_str(), e.connect.as_str()), ("/", "zk1:2181,zk2:2181"));
        let e = EndpointConfig::parse("/orders;zk1:2181/apps/orders").unwrap();
        assert_eq!((e.context.as_str(), e.connect.as_str()), ("/orders", "zk1:2181/apps/orders"));
        for bad in ["zk1:2181", "orders;zk1:2181", "/orders/;zk1:2181", "/;", "/a//b;zk:1"] {
            assert!(EndpointConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn properties() {
        let config = GatewayConfig::from_properties(
            "# comment\nrest.port = 9000\nrest.endpoint.1 = /;localhost:2181\n\
             rest.endpoint.1.http.auth = root:secret\nrest.endpoint.2=/x;h:1/x\nrest.endpoint.2.zk.digest=u:p\n",
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.endpoints.len(), 2);
        assert_eq!(config.endpoints[0].http_auth.as_deref(), Some("root:secret"));
        assert_eq!(config.endpoints[1].zk_digest.as_deref(), Some("u:p"));
        assert!(GatewayConfig::from_properties("rest.ssl=true\n").is_err());
        assert!(GatewayConfig::from_properties("rest.bogus=1\n").is_err());
        assert!(GatewayConfig::from_properties("rest.endpoint.1.http.auth=a:b\n").is_err());
    }
}
