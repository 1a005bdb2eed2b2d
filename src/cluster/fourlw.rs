//! ZooKeeper's four-letter words (`srvr`), the source of truth for a node's role.
//! Always sent to a port published on 127.0.0.1.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::NodeMode;

/// Sends `word` to `address` and returns the reply; `None` when nothing answers in
/// `timeout` (connection refused, reset, or a paused process).
pub async fn four_letter_word(address: &str, word: &str, timeout: Duration) -> Option<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(word.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.ok()?;
        Some(String::from_utf8_lossy(&reply).into_owned())
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

/// What `srvr` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrvrInfo {
    pub mode: NodeMode,
    /// e.g. "3.8.0-debian--1, built on ..." shortened to "3.8.0"
    pub version: String,
    /// last seen zxid, e.g. "0x100000002"
    pub zxid: String,
}

/// Parses a `srvr` reply (`None` input: nothing answered).
pub fn parse_srvr(reply: Option<&str>) -> SrvrInfo {
    let Some(reply) = reply.filter(|reply| !reply.trim().is_empty()) else {
        return SrvrInfo { mode: NodeMode::Down, version: String::new(), zxid: String::new() };
    };
    let field = |name: &str| {
        reply.lines().find_map(|line| line.strip_prefix(name)).map(|value| value.trim().to_owned())
    };
    let mode = match field("Mode:").as_deref() {
        Some("leader") => NodeMode::Leader,
        Some("follower") => NodeMode::Follower,
        Some("observer") => NodeMode::Observer,
        Some("standalone") => NodeMode::Standalone,
        _ => NodeMode::NotServing,
    };
    let version = field("Zookeeper version:")
        .map(|version| {
            version
                .split(|c: char| c == '-' || c == ',' || c.is_whitespace())
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    SrvrInfo { mode, version, zxid: field("Zxid:").unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_follower() {
        let reply = "Zookeeper version: 3.8.0-debian--1, built on 2023-01-01 00:00 UTC\n\
                     Latency min/avg/max: 0/0.0/0\nReceived: 3\nSent: 2\nConnections: 1\n\
                     Outstanding: 0\nZxid: 0x100000002\nMode: follower\nNode count: 5\n";
        let info = parse_srvr(Some(reply));
        assert_eq!(info.mode, NodeMode::Follower);
        assert_eq!(info.version, "3.8.0");
        assert_eq!(info.zxid, "0x100000002");
    }

    #[test]
    fn not_serving_and_down() {
        let reply = "This ZooKeeper instance is not currently serving requests\n";
        assert_eq!(parse_srvr(Some(reply)).mode, NodeMode::NotServing);
        assert_eq!(parse_srvr(None).mode, NodeMode::Down);
        assert_eq!(parse_srvr(Some("")).mode, NodeMode::Down);
    }
}
