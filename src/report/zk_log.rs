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

/// Transactions that a majority of the ensemble had in their logs and then
/// truncated away: Zab commits a proposal once a majority has logged it, so these
/// were committed writes the ensemble itself lost (what a crashed leader never got
/// to a majority is dropped by one server or two in five, routinely). Judged from
/// truncations within one epoch: a server whose last zxid is of a later epoch than
/// the one dropped is not counted, as its log need not have held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedLoss {
    /// A zxid every one of `nodes` had logged and dropped.
    pub zxid: String,
    /// The servers that dropped it, at least a majority of the ensemble.
    pub nodes: Vec<String>,
}

/// The committed writes an ensemble of `members` servers lost by truncating them
/// away (see [`CommittedLoss`]), judged from its truncations whose zxid before is
/// known; `None` when no zxid was dropped by a majority.
pub fn committed_loss(truncations: &[Truncation], members: usize) -> Option<CommittedLoss> {
    let ranges: Vec<(&str, u64, u64)> = truncations
        .iter()
        .filter_map(|t| {
            Some((t.node.as_str(), parse_hex(&t.to_zxid)?, parse_hex(t.from_zxid.as_ref()?)?))
        })
        .collect();
    let majority = members / 2 + 1;
    // The most servers dropping one zxid is reached at some range's top end. A
    // server counts only when its own last zxid is of that zxid's epoch: a range
    // across epochs does not say the server ever had the epochs in between.
    let mut best: Option<(u64, Vec<String>)> = None;
    for &(_, _, top) in &ranges {
        let mut nodes: Vec<String> = ranges
            .iter()
            .filter(|(_, to, from)| *to < top && top <= *from && *from >> 32 == top >> 32)
            .map(|(node, _, _)| (*node).to_owned())
            .collect();
        nodes.sort();
        nodes.dedup();
        if nodes.len() > best.as_ref().map_or(0, |(_, n)| n.len()) {
            best = Some((top, nodes));
        }
    }
    best.filter(|(_, nodes)| nodes.len() >= majority)
        .map(|(zxid, nodes)| CommittedLoss { zxid: format!("{zxid:#x}"), nodes })
}

/// The last error a server's log shows (an `ERROR` line, else the last exception),
/// cut to a readable length: why a member did not come back, in its own words.
pub fn last_error(log: &str) -> Option<String> {
    let error = log.lines().rev().find(|line| line.contains(" ERROR "));
    let line = error.or_else(|| log.lines().rev().find(|line| line.contains("Exception")))?;
    let line = line.trim();
    Some(match line.char_indices().nth(400) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_owned(),
    })
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

    fn truncation(node: &str, from: Option<&str>, to: &str) -> Truncation {
        Truncation {
            node: node.into(),
            time: "02:30:04.457".into(),
            from_zxid: from.map(Into::into),
            to_zxid: to.into(),
            dropped: None,
        }
    }

    #[test]
    fn a_zxid_dropped_by_a_majority_was_a_committed_write_lost() {
        // The README's 3.8.0 run: zk1 and zk2 of three both dropped 0x...538.
        let both = [
            truncation("zk1", Some("0x200000538"), "0x200000001"),
            truncation("zk2", Some("0x200000538"), "0x200000001"),
        ];
        let loss = committed_loss(&both, 3).expect("two of three is a majority");
        assert_eq!(
            loss,
            CommittedLoss { zxid: "0x200000538".into(), nodes: vec!["zk1".into(), "zk2".into()] }
        );
        assert_eq!(committed_loss(&both, 5), None, "two of five is not");
        // Ranges that do not overlap drop no zxid together; one server twice is one.
        let apart = [
            truncation("zk1", Some("0x200000010"), "0x200000005"),
            truncation("zk2", Some("0x200000004"), "0x200000001"),
            truncation("zk2", Some("0x200000003"), "0x200000001"),
        ];
        assert_eq!(committed_loss(&apart, 3), None);
        // zk1's range spans epochs 8 to 9: it need never have had zk2's 0x8...50.
        let across = [
            truncation("zk1", Some("0x900000010"), "0x800000001"),
            truncation("zk2", Some("0x800000050"), "0x800000001"),
        ];
        assert_eq!(committed_loss(&across, 3), None);
        let unknown = [truncation("zk1", None, "0x1"), truncation("zk2", None, "0x1")];
        assert_eq!(committed_loss(&unknown, 3), None, "an unknown start proves nothing");
    }

    #[test]
    fn the_last_error_line_says_why_a_server_did_not_start() {
        let log = "10:00:00.000 [main] INFO o.a.z.s.ZKDatabase - loading\n\
10:00:01.000 [main] ERROR o.a.z.s.q.QuorumPeer - Unable to load database on disk\n\
java.io.IOException: The current epoch, 4, is older than the last zxid\n";
        assert_eq!(
            last_error(log).as_deref(),
            Some(
                "10:00:01.000 [main] ERROR o.a.z.s.q.QuorumPeer - Unable to load database on disk"
            )
        );
        assert_eq!(
            last_error("java.lang.RuntimeException: boom\n").as_deref(),
            Some("java.lang.RuntimeException: boom")
        );
        assert_eq!(last_error("all fine\n"), None);
    }
}
