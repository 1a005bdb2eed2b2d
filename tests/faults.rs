//! The faults aimed at ZooKeeper's weak windows, disk full and clock skew, against
//! real Docker and real ZooKeeper 3.8.0: each is applied (it did what it says, as
//! the servers themselves show) and undone. Three nodes each, the least that has
//! an election among survivors.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zkmq::chaos::nemesis::heal_everything;
use zkmq::cluster::fault::{ClockOffset, Window};
use zkmq::cluster::outcome::DiskChange;
use zkmq::cluster::{Cluster, NodeMode};
use zookeeper_client::{Acls, Client, CreateMode};

const SERVE_AGAIN: Duration = Duration::from_secs(90);
const CALL: Duration = Duration::from_secs(10);

async fn client(connect: &str) -> Client {
    let connecting =
        Client::connector().with_session_timeout(Duration::from_secs(10)).connect(connect);
    tokio::time::timeout(CALL, connecting).await.expect("connect in time").expect("connect")
}

/// Creates `path` through the ensemble and returns its ctime (ms since the epoch,
/// as the leader's clock stamped it).
async fn ctime_of_new_node(cluster: &Cluster, path: &str) -> i64 {
    let client = client(&cluster.connect_string()).await;
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let (stat, _) =
        tokio::time::timeout(CALL, client.create(path, b"x", &options)).await.unwrap().unwrap();
    stat.ctime
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn leader(cluster: &Cluster) -> usize {
    cluster.wait_for_quorum(SERVE_AGAIN).await.unwrap();
    cluster.leader().await.unwrap().expect("a leader")
}

/// Writes small znodes through the ensemble until dropped, reconnecting as the
/// faults take servers away: a follower kept down falls behind only if the
/// others go on committing.
fn keep_writing(cluster: &Cluster) -> tokio::task::JoinHandle<()> {
    let connect = cluster.connect_string();
    tokio::spawn(async move {
        let options = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
        loop {
            let connecting =
                Client::connector().with_session_timeout(Duration::from_secs(10)).connect(&connect);
            let Ok(Ok(client)) = tokio::time::timeout(CALL, connecting).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            while let Ok(Ok(_)) =
                tokio::time::timeout(CALL, client.create("/w-", &[7; 64], &options)).await
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
}

/// syncing-follower-kill, new-leader-kill and leader-churn each hit their window,
/// say so from what the servers logged or wrote, and their nodes come back.
#[tokio::test]
async fn window_faults_kill_in_zookeepers_sync_windows_and_the_nodes_come_back() {
    let cluster = common::own_ensemble(3, false).await;
    let writer = keep_writing(&cluster);
    let before = leader(&cluster).await;

    // A follower down 1 s, brought back as the leader dies, killed from inside
    // the moment its currentEpoch file changes, then the new leader.
    let sync = Window::SyncingFollower { stale: Duration::from_secs(1), within: Duration::ZERO };
    let strike = cluster.strike_window(&sync, None, 7).await.unwrap();
    assert!(strike.hit, "{strike}");
    assert_eq!(strike.killed.len(), 3, "the follower, the old leader, the new one: {strike}");
    assert_eq!(strike.killed[1], before, "the old leader second: {strike}");
    assert!(strike.to_string().contains("from inside 0 ms after it adopted epoch"), "{strike}");
    assert!(
        ["DIFF", "SNAP", "TRUNC"].iter().any(|mode| strike.to_string().contains(mode)),
        "the follower's log named its sync: {strike}"
    );
    // Every node is down; they come back in the order they went down.
    assert_eq!(strike.down, [strike.killed[1], strike.killed[0], strike.killed[2]], "{strike}");
    let back = cluster.bring_back(&strike.down).await.unwrap();
    assert!(back.waited.starts_with("a quorum served"), "{back}");
    cluster.wait_all_serving(SERVE_AGAIN).await.unwrap();

    // The leader, then the one elected after it, soon after its election.
    let old = leader(&cluster).await;
    let within = Duration::from_millis(100);
    let strike = cluster.strike_window(&Window::NewLeader { within }, None, 3).await.unwrap();
    assert!(strike.hit, "{strike}");
    assert_eq!(strike.killed[0], old, "{strike}");
    assert_eq!(strike.down, strike.killed, "{strike}");
    assert!(strike.to_string().contains("ms after its election"), "{strike}");
    cluster.bring_back(&strike.down).await.unwrap();
    cluster.wait_all_serving(SERVE_AGAIN).await.unwrap();

    // Two new leaders in a row; the previous one starts each time, so one stays down.
    let churn = Window::Churn { rounds: 2, within: Duration::from_millis(100) };
    let strike = cluster.strike_window(&churn, None, 5).await.unwrap();
    assert!(strike.hit, "{strike}");
    assert!(strike.to_string().contains("round 2: killed zk"), "{strike}");
    assert_eq!(strike.down.len(), 1, "{strike}");
    cluster.bring_back(&strike.down).await.unwrap();
    cluster.wait_all_serving(SERVE_AGAIN).await.unwrap();
    writer.abort();
}

/// clock-skew steps the leader's wall clock (znodes it stamps show it) and puts
/// it right; disk-full fills a follower's size-limited volume (its ZooKeeper can
/// no longer log) and the fill goes again, also when everything is healed.
#[tokio::test]
async fn clock_skew_and_disk_full_are_applied_and_undone() {
    let mut spec = common::test_spec("diskclock", 3, false);
    spec.data_limit_mb = Some(64);
    spec.clock_faults = true;
    let cluster = common::start(spec).await;

    let lead = leader(&cluster).await;
    let skew = ClockOffset { millis: -120_000 };
    let stepped = cluster.clock_skew(lead, skew).await.unwrap();
    assert!(stepped.to_string().starts_with(&format!("stepped zk{lead}'s wall clock by -2m")));
    // The shim rereads the offset every 200 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lag = now_ms() - ctime_of_new_node(&cluster, "/skewed").await;
    assert!((110_000..130_000).contains(&lag), "the leader stamped 2 minutes back: {lag} ms");
    cluster.clock_skew(lead, ClockOffset::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lag = now_ms() - ctime_of_new_node(&cluster, "/right").await;
    assert!(lag.abs() < 10_000, "the clock is right again: {lag} ms");

    let follower = cluster.node_ids().into_iter().find(|&n| n != lead).unwrap();
    let DiskChange::Filled { filled, free, size, .. } = cluster.disk_fill(follower).await.unwrap()
    else {
        panic!("disk_fill fills")
    };
    assert!(size >= 60 << 20 && free < 1 << 20 && filled > 50 << 20, "{filled} {free} {size}");
    // Writes reach the follower's log, which cannot grow (a write within the
    // log's last page may still fit): it stops serving.
    let client = client(&cluster.connect_string()).await;
    let options = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
    for _ in 0..50 {
        let _ =
            tokio::time::timeout(CALL, client.create("/after-fill-", &[7; 1024], &options)).await;
    }
    let address = cluster.node_address(follower);
    let mut mode = NodeMode::Follower;
    for _ in 0..40 {
        let info = zkmq::cluster::parse_srvr(
            zkmq::cluster::four_letter_word(&address, "srvr", Duration::from_secs(2))
                .await
                .as_deref(),
        );
        mode = info.mode;
        if !mode.is_serving() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!mode.is_serving(), "zk{follower} on a full disk still serves");

    let freed = cluster.disk_free(follower).await.unwrap();
    assert!(matches!(freed, DiskChange::Freed { freed, .. } if freed == filled), "{freed}");
    let again = cluster.disk_free(follower).await.unwrap();
    assert!(again.to_string().contains("had no fill"), "{again}");

    // The final heal frees every fill and puts every clock right.
    cluster.disk_fill(follower).await.unwrap();
    cluster.clock_skew(lead, skew).await.unwrap();
    heal_everything(&cluster, false).await.unwrap();
    let after = cluster.disk_free(follower).await.unwrap();
    assert!(after.to_string().contains("had no fill"), "{after}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lag = now_ms() - ctime_of_new_node(&cluster, "/healed").await;
    assert!(lag.abs() < 10_000, "healed clock: {lag} ms");
}
