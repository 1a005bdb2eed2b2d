//! What the ZooKeeper servers' own logs say about lost transactions.
//!
//! A verdict of "lost" or "duplicated past ack" blames the system under test, which
//! is the queue *and* the ensemble under it. When a server truncates its
//! transaction log to follow a new leader, every transaction past the leader's
//! last zxid is dropped from that server. That is routine for the few proposals a
//! crashed leader never got committed; it is data loss when those transactions
//! were committed, which ZooKeeper releases with known sync bugs do after crashes
//! during leader election (ZOOKEEPER-4785, ZOOKEEPER-4643/4646, ZOOKEEPER-4925).
//! A message that comes back after its ack under the same node name, or a produce
//! acknowledged and then gone, is what such a rollback looks like from the queue.
//! The report lists every truncation that dropped transactions, so a reader can
//! tell the two apart.
//!
//! We read `logs/zk<N>.log` (the containers' output, saved by the run). A server's
//! last zxid before it truncates is the zxid of its own candidacy in its last
//! leader-election notification (`n.sid:N, ..., n.leader:N, ..., n.zxid:0x..`).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One server dropping transactions from its log to follow a leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// `zk1`, ...: the log file's name.
    pub node: String,
    /// The log line's timestamp (the server's clock, `HH:MM:SS.mmm`).
    pub time: String,
    /// The server's last zxid before the truncation, when its log showed one.
    pub from_zxid: Option<String>,
    /// The leader's zxid the server truncated to.
    pub to_zxid: String,
    /// Transactions dropped, when both zxids are of one epoch.
    pub dropped: Option<u64>,
}

impl Truncation {
    /// The zxid before, or `?` when the log did not show it.
    pub fn from_text(&self) -> &str {
        self.from_zxid.as_deref().unwrap_or("?")
    }

    /// The count dropped, or `?` across epochs.
    pub fn dropped_text(&self) -> String {
        self.dropped.map_or_else(|| "?".to_owned(), |n| n.to_string())
    }
}

const TRUNCATING: &str = "Truncating log to get in sync with the leader ";

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.trim().trim_start_matches("0x");
    let end = digits.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(digits.len());
    u64::from_str_radix(&digits[..end], 16).ok()
}

/// The value after `key` in a notification line (`n.sid:1, ...`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let end = rest.find([',', ' ']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The truncations in one server's log that dropped transactions (or may have:
/// the zxid before is unknown).
pub fn scan(node: &str, log: &str) -> Vec<Truncation> {
    let myid = node.trim_start_matches(|c: char| !c.is_ascii_digit());
    let mut last_zxid: Option<u64> = None;
    let mut found = Vec::new();
    for line in log.lines() {
        if line.contains("Notification:")
            && field(line, "n.sid:") == Some(myid)
            && field(line, "n.leader:") == Some(myid)
        {
            if let Some(zxid) = field(line, "n.zxid:").and_then(parse_hex) {
                last_zxid = Some(zxid);
            }
        } else if let Some(at) = line.find(TRUNCATING) {
            let Some(to) = parse_hex(&line[at + TRUNCATING.len()..]) else { continue };
            if last_zxid.is_some_and(|from| from <= to) {
                continue;
            }
            let dropped = last_zxid.filter(|from| from >> 32 == to >> 32).map(|from| from - to);
            found.push(Truncation {
                node: node.to_owned(),
                time: line.split_whitespace().next().unwrap_or("").to_owned(),
                from_zxid: last_zxid.map(|zxid| format!("{zxid:#x}")),
                to_zxid: format!("{to:#x}"),
                dropped,
            });
            last_zxid = Some(to);
        }
    }
    found
}

/// Every server log in `logs_dir` (`zk*.log`), in node order. A missing directory
/// (a run that saved no logs) has none.
pub fn scan_dir(logs_dir: &Path) -> Vec<Truncation> {
    let Ok(entries) = std::fs::read_dir(logs_dir) else { return Vec::new() };
    let mut logs: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "log")
                && path.file_stem().is_some_and(|stem| stem.to_string_lossy().starts_with("zk"))
        })
        .collect();
    logs.sort();
    let mut found = Vec::new();
    for path in logs {
        // A log that cannot be read (or is not UTF-8) explains nothing; skip it.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let node = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        found.extend(scan(&node, &text));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as ZooKeeper 3.8.0 wrote them in a run that lost acknowledged messages
    // (shortened where the scanner does not look).
    const LOG: &str = "\
02:29:54.059 [WorkerReceiver[myid=1]] INFO o.a.z.s.q.FastLeaderElection - Notification: my state:LOOKING; n.sid:1, n.state:LOOKING, n.leader:1, n.round:0x2, n.peerEpoch:0x1, n.zxid:0x1000003d3, message format version:0x2
02:29:54.069 [WorkerReceiver[myid=1]] INFO o.a.z.s.q.FastLeaderElection - Notification: my state:LOOKING; n.sid:1, n.state:LOOKING, n.leader:2, n.round:0x2, n.peerEpoch:0x1, n.zxid:0x1000003d3, message format version:0x2
02:30:04.111 [WorkerReceiver[myid=1]] INFO o.a.z.s.q.FastLeaderElection - Notification: my state:LOOKING; n.sid:1, n.state:LOOKING, n.leader:1, n.round:0x4, n.peerEpoch:0x3, n.zxid:0x200000538, message format version:0x2
02:30:04.113 [WorkerReceiver[myid=1]] INFO o.a.z.s.q.FastLeaderElection - Notification: my state:LOOKING; n.sid:2, n.state:LOOKING, n.leader:2, n.round:0x5, n.peerEpoch:0x4, n.zxid:0x200000001, message format version:0x2
02:30:04.115 [WorkerReceiver[myid=1]] INFO o.a.z.s.q.FastLeaderElection - Notification: my state:LOOKING; n.sid:1, n.state:LOOKING, n.leader:2, n.round:0x5, n.peerEpoch:0x4, n.zxid:0x200000001, message format version:0x2
02:30:04.457 [QuorumPeer[myid=1](plain=0.0.0.0:2181)(secure=disabled)] WARN o.a.z.s.q.Learner - Truncating log to get in sync with the leader 0x200000001
";

    #[test]
    fn a_truncation_reports_the_transactions_it_dropped() {
        let found = scan("zk1", LOG);
        assert_eq!(
            found,
            vec![Truncation {
                node: "zk1".into(),
                time: "02:30:04.457".into(),
                from_zxid: Some("0x200000538".into()),
                to_zxid: "0x200000001".into(),
                dropped: Some(0x537),
            }]
        );
    }

    #[test]
    fn votes_for_another_server_do_not_count_as_our_zxid() {
        // zk1's own candidacy said 0x1000003d3; its vote for zk2 carried zk2's zxid.
        let log = LOG.lines().take(2).collect::<Vec<_>>().join("\n")
            + "\n02:30:05.000 [QuorumPeer[myid=1]] WARN o.a.z.s.q.Learner - Truncating log to get in sync with the leader 0x1000003d0\n";
        let found = scan("zk1", &log);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].from_zxid.as_deref(), Some("0x1000003d3"));
        assert_eq!(found[0].dropped, Some(3));
    }

    #[test]
    fn a_truncation_to_where_the_server_already_is_drops_nothing() {
        let log = LOG.lines().take(3).collect::<Vec<_>>().join("\n")
            + "\n02:30:05.000 [QuorumPeer[myid=1]] WARN o.a.z.s.q.Learner - Truncating log to get in sync with the leader 0x200000538\n";
        assert!(scan("zk1", &log).is_empty());
    }

    #[test]
    fn across_epochs_the_count_is_unknown_and_without_a_vote_so_is_the_start() {
        let log = LOG.lines().take(1).collect::<Vec<_>>().join("\n")
            + "\n02:30:05.000 [QuorumPeer[myid=1]] WARN o.a.z.s.q.Learner - Truncating log to get in sync with the leader 0x300000000\n";
        assert!(scan("zk1", &log).is_empty(), "0x1000003d3 < 0x300000000: nothing dropped");
        let log = "02:30:05.000 [QuorumPeer[myid=1]] WARN o.a.z.s.q.Learner - Truncating log to get in sync with the leader 0x200000001\n";
        let found = scan("zk1", log);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].from_zxid.as_deref(), found[0].dropped), (None, None));
    }
}
