//! Whether the ensemble healed: judged from `members.json` alone, the queue tree
//! each member held after the final heal and drain, read through that member on
//! its own after a `sync`.
//!
//! - **divergent** (must be 0): znodes the members that were read disagree on,
//!   present on some and absent on others, or held with another creation zxid,
//!   version or data. ZooKeeper promises every member the same tree once it has
//!   caught up, so any difference is the ensemble's own fault (ZOOKEEPER-4925's
//!   hole in a stale follower is one).
//! - **not rejoined** (must be 0): members that did not serve again after the
//!   final heal, however long the capture waited. It fails the run, for two
//!   reasons: an ensemble that needs an operator to bring a member back has not
//!   recovered from its faults, which is what a qualification must catch (3.8.0
//!   after a full disk, 3.9.6 after a graceful stop during a sync, both measured
//!   here); and a member that cannot be read cannot be compared, so without it
//!   `divergent = 0` would quietly vouch for fewer members.
//!
//! A member that served but whose tree could not be read is neither: it is named
//! in [`MembersSummary::unread`] and left out of the comparison.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Finding;
use crate::rundir::{MemberViews, ZnodeView};

/// What was compared, for the reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MembersSummary {
    /// The subtree compared (`<chroot>/queue`).
    pub root: String,
    /// Members whose trees were read and compared.
    pub compared: Vec<String>,
    /// Members that served but could not be read, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
    /// How many times the members were read before their views agreed (or the
    /// capture gave up).
    pub readings: u32,
    /// Znodes in the largest view.
    pub znodes: usize,
}

/// The two findings and the summary.
pub struct MembersVerdict {
    pub divergent: Finding,
    pub not_rejoined: Finding,
    pub summary: MembersSummary,
}

/// Modes in which a member answers clients.
fn serving(mode: &str) -> bool {
    matches!(mode, "leader" | "follower" | "observer" | "standalone")
}

/// How one member holds one znode, in words.
fn copy(view: Option<&ZnodeView>) -> String {
    match view {
        None => "absent".to_owned(),
        Some(z) => format!(
            "czxid {} v{} {} bytes crc {:08x}{}",
            z.czxid,
            z.version,
            z.len,
            z.crc,
            if z.ephemeral { " ephemeral" } else { "" }
        ),
    }
}

/// Compares the members' views.
pub fn judge(views: &MemberViews) -> MembersVerdict {
    let mut not_rejoined = Finding::default();
    let mut summary = MembersSummary {
        root: views.root.clone(),
        readings: views.readings,
        ..MembersSummary::default()
    };
    let mut read: Vec<(&str, BTreeMap<&str, &ZnodeView>)> = Vec::new();
    for member in &views.members {
        match (&member.znodes, serving(&member.mode)) {
            (Some(znodes), true) => {
                summary.znodes = summary.znodes.max(znodes.len());
                read.push((&member.node, znodes.iter().map(|z| (z.path.as_str(), z)).collect()));
            }
            (_, false) => not_rejoined.add(&format!(
                "{}: {} (container {}) {:.0} s after the final heal",
                member.node, member.mode, member.container, views.waited_s
            )),
            (None, true) => summary.unread.push(format!(
                "{}: {}",
                member.node,
                member.error.as_deref().unwrap_or("not read")
            )),
        }
    }
    summary.compared = read.iter().map(|(node, _)| (*node).to_owned()).collect();
    let mut divergent = Finding::default();
    let paths: std::collections::BTreeSet<&str> =
        read.iter().flat_map(|(_, tree)| tree.keys().copied()).collect();
    for path in paths {
        // Members grouped by the copy they hold, in node order.
        let mut copies: Vec<(String, Vec<&str>)> = Vec::new();
        for (node, tree) in &read {
            let held = copy(tree.get(path).copied());
            match copies.iter_mut().find(|(c, _)| *c == held) {
                Some((_, nodes)) => nodes.push(node),
                None => copies.push((held, vec![node])),
            }
        }
        if copies.len() > 1 {
            let said: Vec<String> =
                copies.iter().map(|(held, nodes)| format!("{} {held}", nodes.join(","))).collect();
            divergent.add(&format!("{path}: {}", said.join("; ")));
        }
    }
    MembersVerdict { divergent, not_rejoined, summary }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::MemberView;

    fn znode(path: &str, version: i32, crc: u32) -> ZnodeView {
        ZnodeView {
            path: path.into(),
            czxid: "0x100000002".into(),
            version,
            crc,
            len: 40,
            ephemeral: false,
        }
    }

    fn member(node: &str, mode: &str, znodes: Option<Vec<ZnodeView>>) -> MemberView {
        MemberView {
            node: node.into(),
            mode: mode.into(),
            container: "running".into(),
            zxid: "0x100000009".into(),
            error: None,
            znodes,
        }
    }

    fn views(members: Vec<MemberView>) -> MemberViews {
        MemberViews {
            root: "/zkmq-chaos/r/queue".into(),
            t: 100.0,
            readings: 1,
            waited_s: 0.0,
            members,
        }
    }

    fn tree() -> Vec<ZnodeView> {
        vec![znode("/messages", 0, 0), znode("/messages/message-0000000001", 1, 0xabc)]
    }

    #[test]
    fn members_holding_the_same_tree_do_not_diverge() {
        let v = views(vec![
            member("zk1", "follower", Some(tree())),
            member("zk2", "leader", Some(tree())),
            member("zk3", "follower", Some(tree())),
        ]);
        let verdict = judge(&v);
        assert_eq!(verdict.divergent.count, 0);
        assert_eq!(verdict.not_rejoined.count, 0);
        assert_eq!(verdict.summary.compared, ["zk1", "zk2", "zk3"]);
        assert_eq!(verdict.summary.znodes, 2);
    }

    #[test]
    fn a_znode_missing_on_one_member_or_held_at_another_version_diverges() {
        let mut stale = tree();
        stale.pop();
        let mut other = tree();
        other[1].version = 0;
        other.push(znode("/partial", 0, 0));
        let v = views(vec![
            member("zk1", "follower", Some(tree())),
            member("zk2", "leader", Some(tree())),
            member("zk3", "follower", Some(stale)),
            member("zk4", "follower", Some(other)),
        ]);
        let verdict = judge(&v);
        assert_eq!(verdict.divergent.count, 2, "{:?}", verdict.divergent.examples);
        assert_eq!(
            verdict.divergent.examples[0],
            "/messages/message-0000000001: zk1,zk2 czxid 0x100000002 v1 40 bytes crc 00000abc; \
             zk3 absent; zk4 czxid 0x100000002 v0 40 bytes crc 00000abc"
        );
        assert_eq!(
            verdict.divergent.examples[1],
            "/partial: zk1,zk2,zk3 absent; zk4 czxid 0x100000002 v0 40 bytes crc 00000000"
        );
    }

    #[test]
    fn a_member_that_never_served_again_is_named_and_left_out_of_the_comparison() {
        let mut v = views(vec![
            member("zk1", "follower", Some(tree())),
            member("zk2", "not serving", None),
            member("zk3", "leader", Some(tree())),
            member("zk4", "follower", None),
        ]);
        v.members[1].container = "running".into();
        v.members[3].error = Some("no answer within 5s".into());
        v.waited_s = 60.0;
        let verdict = judge(&v);
        assert_eq!(verdict.not_rejoined.count, 1);
        assert_eq!(
            verdict.not_rejoined.examples,
            ["zk2: not serving (container running) 60 s after the final heal"]
        );
        assert_eq!(verdict.divergent.count, 0);
        assert_eq!(verdict.summary.compared, ["zk1", "zk3"]);
        assert_eq!(verdict.summary.unread, ["zk4: no answer within 5s"]);
    }
}
