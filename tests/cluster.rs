//! The cluster against real Docker and real ZooKeeper: ensembles come up with one
//! leader and replicate, and every node fault does what it says and is undone.

mod common;

use std::time::{Duration, Instant};

use zkmq::cluster::fault::Member;
use zkmq::cluster::outcome::{ContainerChange, ContainerVerb, Shaped, Shaping, Upgraded};
use zkmq::cluster::{Cluster, ClusterError, NodeMode};
use zookeeper_client::{Acls, Client, CreateMode};

const QUORUM: Duration = Duration::from_secs(60);
/// A client call that takes longer has failed (the client queues requests while
/// disconnected, so every call needs its own bound).
const CALL: Duration = Duration::from_secs(5);

async fn client(address: &str) -> Result<Client, String> {
    common::zk_client(address, CALL).await
}

/// Creates `path` holding `data` through one node.
async fn write(address: &str, path: &str, data: &[u8]) -> Result<(), String> {
    let client = client(address).await?;
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    match tokio::time::timeout(CALL, client.create(path, data, &options)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(format!("create {path} via {address}: {err}")),
        Err(_) => Err(format!("create {path} via {address}: timed out")),
    }
}

/// Reads `path` through one node, after a `sync` so a follower has caught up.
async fn read(address: &str, path: &str) -> Result<Vec<u8>, String> {
    let client = client(address).await?;
    let read = async {
        client.sync(path).await?;
        client.get_data(path).await
    };
    match tokio::time::timeout(CALL, read).await {
        Ok(Ok((data, _))) => Ok(data),
        Ok(Err(err)) => Err(format!("read {path} via {address}: {err}")),
        Err(_) => Err(format!("read {path} via {address}: timed out")),
    }
}

/// Whether a container verb acted, checking the state it found (a repeated verb
/// finds its own result and does nothing).
fn acted(change: ContainerChange, before: &str) -> bool {
    assert_eq!(change.before, before, "{change:?}");
    change.acted
}

/// Retries `write` until it succeeds through some serving node, up to `timeout`.
async fn write_somewhere(cluster: &Cluster, path: &str, data: &[u8], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let mut errors = Vec::new();
        for node in cluster.node_ids() {
            match write(&cluster.node_address(node), path, data).await {
                Ok(()) => return node,
                Err(err) if err.contains("node exists") || err.contains("NodeExists") => {
                    return node
                }
                Err(err) => errors.push(err),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node accepted {path} within {timeout:?}: {errors:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn modes(cluster: &Cluster) -> Vec<NodeMode> {
    cluster.status().await.expect("status").into_iter().map(|s| s.mode).collect()
}

/// What `docker` lists with this run's label, per object kind.
fn labelled_objects(run_id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for kind in [["ps", "-a"], ["volume", "ls"], ["network", "ls"]] {
        let output = std::process::Command::new("docker")
            .args(kind)
            .args(["-q", "--filter", &format!("label=zkmq.run={run_id}")])
            .output()
            .expect("docker CLI");
        assert!(output.status.success(), "docker {kind:?} failed");
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|line| format!("{}: {line}", kind[0])),
        );
    }
    found
}

#[tokio::test]
async fn five_nodes_elect_one_leader_replicate_and_down_leaves_nothing() {
    let cluster = common::own_ensemble(5, false).await;
    let statuses = cluster.status().await.unwrap();
    let leaders = statuses.iter().filter(|s| s.mode == NodeMode::Leader).count();
    let followers = statuses.iter().filter(|s| s.mode == NodeMode::Follower).count();
    assert_eq!((leaders, followers), (1, 4), "{statuses:?}");
    assert!(statuses.iter().all(|s| s.version == "3.8.0"), "{statuses:?}");

    let path = common::unique_chroot("five");
    write(&cluster.node_address(1), &path, b"through zk1").await.unwrap();
    for node in cluster.node_ids() {
        let data = read(&cluster.node_address(node), &path).await.unwrap();
        assert_eq!(data, b"through zk1", "zk{node}");
    }

    // attach finds the same cluster from Docker alone
    let attached = Cluster::attach(cluster.run_id()).await.unwrap();
    assert_eq!(attached.connect_string(), cluster.connect_string());

    let run_id = cluster.run_id().to_owned();
    assert!(!labelled_objects(&run_id).is_empty());
    cluster.down().await.unwrap();
    assert_eq!(labelled_objects(&run_id), Vec::<String>::new());
    assert!(matches!(Cluster::attach(&run_id).await, Err(ClusterError::NotFound { .. })));
}

#[tokio::test]
async fn killing_the_leader_elects_another_and_the_old_one_rejoins_as_follower() {
    let cluster = common::own_ensemble(3, false).await;
    let mut recoveries = Vec::new();
    for round in 0..3 {
        let leader = cluster.leader().await.unwrap().expect("a leader");
        let said = cluster.kill(leader).await.unwrap();
        assert!(said.acted && said.member == Member::Node(leader), "{said:?}");
        let killed = Instant::now();
        let path = format!("{}-{round}", common::unique_chroot("kill"));
        write_somewhere(&cluster, &path, b"after", QUORUM).await;
        recoveries.push(killed.elapsed());

        cluster.wait_for_quorum(QUORUM).await.unwrap();
        let new_leader = cluster.leader().await.unwrap().expect("a new leader");
        assert_ne!(new_leader, leader);
        // killing again is harmless and says so
        let again = cluster.kill(leader).await.unwrap();
        assert!(!again.acted && again.before != "running", "{again:?}");

        cluster.start(leader).await.unwrap();
        cluster.wait_serving(leader, QUORUM).await.unwrap();
        let status = &cluster.status().await.unwrap()[leader - 1];
        assert_eq!(status.mode, NodeMode::Follower, "{status:?}");
        assert_eq!(read(&cluster.node_address(leader), &path).await.unwrap(), b"after");
    }
    recoveries.sort();
    eprintln!("leader kill -> next successful write: {recoveries:?} (median {:?})", recoveries[1]);
}

#[tokio::test]
async fn a_partitioned_node_stops_serving_and_catches_up_after_heal() {
    let cluster = common::own_ensemble(3, false).await;
    let isolated = cluster.leader().await.unwrap().expect("a leader");
    let said = cluster.partition(&[vec![isolated]]).await.unwrap();
    let others: Vec<usize> = cluster.node_ids().into_iter().filter(|n| *n != isolated).collect();
    assert_eq!(said.groups, [vec![isolated], others.clone()], "{said}");
    assert!(said.not_running.is_empty(), "{said}");

    // The isolated node loses its quorum and stops serving; the majority elects.
    let deadline = Instant::now() + QUORUM;
    while modes(&cluster).await[isolated - 1] != NodeMode::NotServing {
        assert!(Instant::now() < deadline, "zk{isolated} still serves while isolated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.wait_for_quorum(QUORUM).await.unwrap();
    let path = common::unique_chroot("partition");
    let deadline = Instant::now() + QUORUM;
    loop {
        match write(&cluster.node_address(others[0]), &path, b"missed").await {
            Ok(()) => break,
            Err(err) => assert!(Instant::now() < deadline, "{err}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(write(&cluster.node_address(isolated), &format!("{path}-x"), b"no").await.is_err());

    let healed = cluster.heal().await.unwrap();
    assert_eq!(healed.healed, cluster.node_ids(), "{healed}");
    cluster.wait_serving(isolated, QUORUM).await.unwrap();
    assert_eq!(read(&cluster.node_address(isolated), &path).await.unwrap(), b"missed");

    // loss and slow apply and are removed by heal; netem delay is refused, not skipped
    let shaped = |shaping| Shaped { node: isolated, shaping };
    assert_eq!(cluster.loss(isolated, 20).await.unwrap(), shaped(Shaping::Loss { percent: 20 }));
    assert_eq!(cluster.slow(isolated, 512).await.unwrap(), shaped(Shaping::Slow { kbit: 512 }));
    match cluster.delay(isolated, Duration::from_millis(100)).await {
        Ok(said) => assert_eq!(said, shaped(Shaping::Delay { millis: 100 })),
        Err(ClusterError::Unsupported(why)) => assert!(why.contains("netem"), "{why}"),
        Err(err) => panic!("delay: {err}"),
    }
    cluster.heal().await.unwrap();
    cluster.wait_all_serving(QUORUM).await.unwrap();
}

#[tokio::test]
async fn a_wiped_follower_resyncs_the_data_written_before() {
    let cluster = common::own_ensemble(3, false).await;
    let path = common::unique_chroot("wipe");
    let leader = cluster.leader().await.unwrap().expect("a leader");
    write(&cluster.node_address(leader), &path, b"before wipe").await.unwrap();
    let follower = cluster.node_ids().into_iter().find(|n| *n != leader).unwrap();

    let said = cluster.wipe(follower).await.unwrap();
    assert!(said.kept.iter().any(|kept| kept == "myid"), "{said}");
    cluster.wait_serving(follower, QUORUM).await.unwrap();
    assert_eq!(read(&cluster.node_address(follower), &path).await.unwrap(), b"before wipe");
}

#[tokio::test]
async fn pause_unpause_stop_start_are_idempotent() {
    let cluster = common::own_ensemble(3, false).await;
    let node = 2;
    assert!(acted(cluster.pause(node).await.unwrap(), "running"));
    assert!(!acted(cluster.pause(node).await.unwrap(), "paused"));
    assert_eq!(cluster.status().await.unwrap()[node - 1].container, "paused");
    assert_eq!(modes(&cluster).await[node - 1], NodeMode::Down);
    assert!(acted(cluster.unpause(node).await.unwrap(), "paused"));
    assert!(!acted(cluster.unpause(node).await.unwrap(), "running"));
    cluster.wait_serving(node, QUORUM).await.unwrap();

    let address = cluster.node_address(node);
    assert!(acted(cluster.stop(node).await.unwrap(), "running"));
    assert!(!acted(cluster.stop(node).await.unwrap(), "exited"));
    assert_eq!(cluster.status().await.unwrap()[node - 1].container, "exited");
    assert!(acted(cluster.start(node).await.unwrap(), "exited"));
    assert!(!acted(cluster.start(node).await.unwrap(), "running"));
    cluster.wait_serving(node, QUORUM).await.unwrap();
    // same address after a restart
    assert_eq!(cluster.node_address(node), address);
    let restarted = cluster.restart(node).await.unwrap();
    assert!(restarted.stopped.acted && restarted.started.acted, "{restarted:?}");
    cluster.wait_all_serving(QUORUM).await.unwrap();
}

#[tokio::test]
async fn rolling_upgrade_to_3_9_3_under_writes_loses_nothing() {
    let cluster = common::own_ensemble(3, false).await;
    zkmq::cluster::ensure_images(&["3.9.3"], false, &|line| eprintln!("{line}")).await.unwrap();
    let prefix = common::unique_chroot("upgrade");
    write_somewhere(&cluster, &prefix, b"", QUORUM).await;

    // One writer per node (a node being replaced stalls only its own writer); each
    // remembers what was acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = cluster
        .node_ids()
        .into_iter()
        .map(|node| {
            let address = cluster.node_address(node);
            let stop = stop.clone();
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut session: Option<Client> = None;
                let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
                let mut attempt = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    attempt += 1;
                    let path = format!("{prefix}/n{node}-{attempt:06}");
                    if session.is_none() {
                        session = client(&address).await.ok();
                    }
                    if let Some(client) = &session {
                        match tokio::time::timeout(CALL, client.create(&path, b"w", &options)).await
                        {
                            Ok(Ok(_)) => acked.push(path),
                            // refused or unknown: not acknowledged; a fresh session next
                            _ => session = None,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                acked
            })
        })
        .collect();

    let first = 1;
    let said = cluster.upgrade(first, "3.9.3").await.unwrap();
    assert!(
        matches!(&said, Upgraded::Replaced { to, .. } if to == "zkmq/zookeeper:3.9.3"),
        "{said}"
    );
    cluster.wait_serving(first, QUORUM).await.unwrap();
    let statuses = cluster.status().await.unwrap();
    assert_eq!(statuses[first - 1].version, "3.9.3", "{statuses:?}");
    // the mixed ensemble serves writes
    write_somewhere(&cluster, &format!("{prefix}-mixed"), b"m", QUORUM).await;

    for node in 2..=3 {
        cluster.upgrade(node, "3.9.3").await.unwrap();
        cluster.wait_serving(node, QUORUM).await.unwrap();
    }
    cluster.wait_all_serving(QUORUM).await.unwrap();
    let again = cluster.upgrade(2, "3.9.3").await.unwrap();
    assert!(matches!(again, Upgraded::AlreadyRuns { .. }), "{again}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    eprintln!("{} writes acknowledged during the rolling upgrade", acked.len());
    assert!(acked.len() > 10, "only {} writes were acknowledged", acked.len());

    let statuses = cluster.status().await.unwrap();
    assert!(statuses.iter().all(|s| s.version == "3.9.3"), "{statuses:?}");
    let reader = client(&cluster.node_address(2)).await.unwrap();
    reader.sync(&prefix).await.unwrap();
    let (children, _) = reader.get_children(&prefix).await.unwrap();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|path| !children.iter().any(|child| path.ends_with(&format!("/{child}"))))
        .collect();
    assert!(missing.is_empty(), "acknowledged but missing after the upgrade: {missing:?}");

    // An upgraded node's log still holds what it logged before the upgrade.
    let log = cluster.logs(first, None).await.unwrap();
    let versions: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split("zookeeper.version=").nth(1))
        .map(|version| version.get(..5).unwrap_or(version))
        .collect();
    assert!(
        versions.len() >= 2
            && versions.first() != versions.last()
            && versions.last() == Some(&"3.9.3"),
        "zk{first}'s log should span the versions it ran, oldest first: {versions:?}"
    );
}

#[tokio::test]
async fn the_shared_ensemble_serves_each_test_in_its_own_chroot() {
    let cluster = common::shared_ensemble().await;
    let path = common::unique_chroot("shared");
    write_somewhere(cluster, &path, b"shared", QUORUM).await;
    for node in cluster.node_ids() {
        assert_eq!(read(&cluster.node_address(node), &path).await.unwrap(), b"shared");
    }
    assert!(std::ptr::eq(cluster, common::shared_ensemble().await));
}

#[tokio::test]
async fn the_reaper_removes_a_run_once_its_process_is_gone() {
    let mut spec = common::test_spec("reap", 1, false);
    spec.up_timeout = QUORUM;
    let run_id = spec.run_id.clone();
    let mut owner = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let reaper = std::process::Command::new(common::zkmq_binary())
        .args(["cluster", "reap", "--run", &run_id, "--pid", &owner.id().to_string()])
        .spawn()
        .unwrap();
    let cluster = Cluster::up(spec, &|line| eprintln!("{line}")).await.unwrap();
    assert_eq!(cluster.status().await.unwrap()[0].mode, NodeMode::Standalone);
    assert!(!labelled_objects(&run_id).is_empty());
    owner.kill().unwrap();
    owner.wait().unwrap();
    let mut reaper = reaper;
    let deadline = Instant::now() + QUORUM;
    while reaper.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the reaper did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(labelled_objects(&run_id), Vec::<String>::new());
}

/// A run whose owner died and that no reaper removed is listed as stale, and
/// `down --stale` removes it and nothing else.
#[tokio::test]
async fn a_run_whose_owner_is_gone_is_stale_and_down_stale_removes_it() {
    let mut spec = common::test_spec("stale", 1, false);
    spec.up_timeout = QUORUM;
    let run_id = spec.run_id.clone();
    common::spawn_reaper(&run_id); // in case the test itself fails half-way
    let mut owner = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let started = std::fs::read_to_string(format!("/proc/{}/stat", owner.id())).unwrap();
    let started: u64 =
        started.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
    spec.owner = Some(zkmq::cluster::Owner { pid: owner.id(), started });
    let _cluster = Cluster::up(spec, &|line| eprintln!("{line}")).await.unwrap();
    let listed = |runs: &[zkmq::cluster::RunSummary]| {
        runs.iter().find(|run| run.run_id == run_id).map(|run| run.stale())
    };
    assert_eq!(listed(&zkmq::cluster::list_runs().await.unwrap()), Some(false));
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert_eq!(listed(&zkmq::cluster::list_runs().await.unwrap()), Some(true));
    let removed = zkmq::cluster::down_stale().await.unwrap();
    assert!(removed.contains(&run_id), "{removed:?}");
    assert_eq!(labelled_objects(&run_id), Vec::<String>::new());
}

#[tokio::test]
async fn ctrl_c_during_up_leaves_nothing_behind() {
    let run_id = common::test_spec("ctrlc", 3, false).run_id;
    let state = tempfile::tempdir().unwrap();
    common::spawn_reaper(&run_id); // in case the test itself fails half-way
    let mut up = std::process::Command::new(common::zkmq_binary())
        .args(["cluster", "up", "--nodes", "3", "--run", &run_id])
        .env("ZKMQ_STATE_DIR", state.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // interrupt as soon as the first container exists, well before a quorum
    let deadline = Instant::now() + QUORUM;
    while !labelled_objects(&run_id).iter().any(|object| object.starts_with("ps")) {
        assert!(Instant::now() < deadline, "up created no container");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled =
        std::process::Command::new("kill").args(["-INT", &up.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    let status = up.wait().unwrap();
    assert!(!status.success(), "up was interrupted, so it must not report success");
    assert_eq!(labelled_objects(&run_id), Vec::<String>::new());
    assert!(!state.path().join("current").exists(), "an interrupted up is not the current cluster");
}

/// Not a test of speed (those live in `zkmq bench`): prints how long writes are
/// unavailable after the leader is killed. `ZKMQ_FAILOVER_NODES=5 cargo test --test
/// cluster -- --ignored --nocapture leader_failover` (default 3 nodes).
#[tokio::test]
#[ignore]
async fn leader_failover_times() {
    let nodes =
        std::env::var("ZKMQ_FAILOVER_NODES").ok().and_then(|nodes| nodes.parse().ok()).unwrap_or(3);
    let cluster = common::own_ensemble(nodes, false).await;
    let mut times = Vec::new();
    for round in 0..7 {
        cluster.wait_all_serving(QUORUM).await.unwrap();
        let leader = cluster.leader().await.unwrap().expect("a leader");
        cluster.kill(leader).await.unwrap();
        let killed = Instant::now();
        let path = format!("{}-{round}", common::unique_chroot("failover"));
        let node = write_somewhere(&cluster, &path, b"x", QUORUM).await;
        times.push(killed.elapsed());
        eprintln!(
            "round {round}: killed zk{leader}, wrote through zk{node} after {:?}",
            times[round]
        );
        cluster.start(leader).await.unwrap();
        cluster.wait_serving(leader, QUORUM).await.unwrap();
    }
    times.sort();
    eprintln!(
        "leader kill -> next successful write: median {:?}, all {times:?}",
        times[times.len() / 2]
    );
}

#[tokio::test]
async fn the_gateway_answers_and_is_a_fault_target() {
    if !common::gateway_available() {
        eprintln!("skipped: this zkmq has no `rest serve` yet");
        return;
    }
    let cluster = common::own_ensemble(3, true).await;
    let url = format!("{}/znodes/v1/?view=children", cluster.rest_url().expect("a gateway"));
    let get = || async {
        let request = reqwest::get(&url);
        match tokio::time::timeout(CALL, request).await {
            Ok(Ok(response)) => response.status().as_u16(),
            _ => 0,
        }
    };
    assert_eq!(get().await, 200);
    let killed = cluster.rest_kill().await.unwrap();
    assert_eq!((killed.member, killed.verb), (Member::Gateway, ContainerVerb::Kill));
    assert!(acted(killed, "running"));
    assert_eq!(get().await, 0, "a killed gateway answers nothing");
    assert!(acted(cluster.rest_start().await.unwrap(), "exited"));
    let deadline = Instant::now() + QUORUM;
    while get().await != 200 {
        assert!(Instant::now() < deadline, "the restarted gateway does not answer at {url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(acted(cluster.rest_pause().await.unwrap(), "running"));
    assert!(acted(cluster.rest_unpause().await.unwrap(), "paused"));
    assert!(cluster.rest_logs(Some(20)).await.unwrap().contains("zk1:2181"));
}

/// What a run stopped at a violation keeps: each member's data directory, copied
/// out of its container (`myid`, `version-2/` with the transaction log).
#[tokio::test]
async fn save_data_dirs_copies_each_members_zookeeper_files() {
    let cluster = common::own_ensemble(1, false).await;
    let path = common::unique_chroot("data");
    write(&cluster.node_address(1), &path, b"kept").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copied = cluster.save_data_dirs(dir.path()).await;
    cluster.down().await.unwrap();
    let copied = copied.unwrap();
    assert_eq!(copied.len(), 1, "{copied:?}");
    let zk1 = dir.path().join("zk1");
    assert_eq!(std::fs::read_to_string(zk1.join("myid")).unwrap().trim(), "1");
    let files: Vec<String> = std::fs::read_dir(zk1.join("version-2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.starts_with("log.")), "{files:?}");
    assert!(!dir.path().join("zk1.tar").exists(), "the spool is removed");
}
