//! The end of a run, seen from each member: after the final heal and drain, every
//! ZooKeeper member's own copy of the queue's tree, read through that member
//! alone, into `members.json`. The checker judges it (`checker::members`):
//! whether the members converged on one tree, and whether each came back.
//!
//! A member is read over a session to its address only, after a `sync`, so that
//! what it answers is its own state caught up with the leader, not another
//! member's. Ephemeral nodes of sessions still expiring can differ between two
//! readings taken a moment apart, so while the views differ they are read again,
//! a few times, and only a difference that stays is recorded.

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, NodeStatus};
use crate::queue::native_store::NativeStore;
use crate::queue::{Store, StoreError};
use crate::rundir::{MemberView, MemberViews, ZnodeView};

/// How long the capture waits for every member to serve again.
pub const REJOIN_WAIT: Duration = Duration::from_secs(60);
/// Readings of all members, at most, while their views differ.
const READINGS: u32 = 4;
/// Between two readings: longer than a tick, so a session that was expiring has.
const BETWEEN_READINGS: Duration = Duration::from_secs(2);
/// Each ZooKeeper call of a reading.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads every member's view of the subtree `root` (the queue's `<chroot>/queue`).
/// Waits up to [`REJOIN_WAIT`] for every member to serve first; a member that
/// does not is recorded as it was found.
pub async fn capture(cluster: &Cluster, root: &str, now: impl Fn() -> f64) -> MemberViews {
    let t0 = Instant::now();
    let mut statuses = cluster.status().await.unwrap_or_default();
    while !statuses.iter().all(|s| s.mode.is_serving()) && t0.elapsed() < REJOIN_WAIT {
        tokio::time::sleep(Duration::from_millis(500)).await;
        statuses = cluster.status().await.unwrap_or(statuses);
    }
    let waited_s = t0.elapsed().as_secs_f64();
    let mut readings = 0;
    let mut t = now();
    let mut members = Vec::new();
    while readings < READINGS {
        if readings > 0 {
            tokio::time::sleep(BETWEEN_READINGS).await;
            statuses = cluster.status().await.unwrap_or(statuses);
        }
        readings += 1;
        t = now();
        members = Vec::new();
        for status in &statuses {
            members.push(read_member(status, root).await);
        }
        if agree(&members) {
            break;
        }
    }
    MemberViews { root: root.to_owned(), t, readings, waited_s, members }
}

/// Whether every member that was read holds the same tree.
fn agree(members: &[MemberView]) -> bool {
    let mut read = members.iter().filter_map(|m| m.znodes.as_ref());
    let Some(first) = read.next() else { return true };
    read.all(|other| other == first)
}

async fn read_member(status: &NodeStatus, root: &str) -> MemberView {
    let mut view = MemberView {
        node: format!("zk{}", status.node),
        mode: status.mode.to_string(),
        container: status.container.clone(),
        zxid: status.zxid.clone(),
        error: None,
        znodes: None,
    };
    if !status.mode.is_serving() {
        view.error = Some(format!("not serving ({})", status.mode));
        return view;
    }
    match read_tree(&status.address, root).await {
        Ok(znodes) => view.znodes = Some(znodes),
        Err(err) => view.error = Some(err.to_string()),
    }
    view
}

/// The subtree under `root` as the member at `address` holds it, sorted by path
/// (relative to `root`; the root itself is `/`). A tree that does not exist on
/// the member is empty.
async fn read_tree(address: &str, root: &str) -> Result<Vec<ZnodeView>, StoreError> {
    let store = NativeStore::connect(address, OP_TIMEOUT, OP_TIMEOUT, OP_TIMEOUT).await?;
    let walked = async {
        store.sync(root).await?;
        let mut znodes = Vec::new();
        let mut pending = vec![root.to_owned()];
        while let Some(path) = pending.pop() {
            let (data, stat) = match store.get(&path).await {
                Ok(found) => found,
                // Gone between its parent's listing and now (an expiring session).
                Err(StoreError::NoNode(_)) => continue,
                Err(err) => return Err(err),
            };
            let children = match store.children(&path).await {
                Ok(children) => children,
                Err(StoreError::NoNode(_)) => Vec::new(),
                Err(err) => return Err(err),
            };
            pending.extend(children.into_iter().map(|child| format!("{path}/{child}")));
            let relative = path.strip_prefix(root).filter(|p| !p.is_empty()).unwrap_or("/");
            znodes.push(ZnodeView {
                path: relative.to_owned(),
                czxid: format!("{:#x}", stat.czxid),
                version: stat.version,
                crc: crate::queue::checksum(&data),
                len: data.len() as u32,
                ephemeral: stat.ephemeral_owner != 0,
            });
        }
        znodes.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(znodes)
    }
    .await;
    store.close().await;
    walked
}
