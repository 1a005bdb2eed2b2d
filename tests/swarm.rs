//! The swarm backend against real engines: three simulated hosts (Docker in
//! Docker, `zkmq cluster hosts up`) started once for this binary and shared; five
//! ZooKeeper members spread over them; node faults through the engine of each
//! member's host; a chaos run on them; and nothing labelled left behind, on any
//! host or on this machine's engine, by `cluster down`, `hosts down` or the reaper
//! of a killed owner.
//!
//! The tests that use the shared hosts run one at a time (a lock): each brings up
//! five JVMs, and the machine has 2 cores.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard, OnceCell};
use zkmq::cluster::{
    hosts_down, hosts_up, BackendKind, Cluster, ClusterSpec, HostsSpec, NodeMode, SimulatedHosts,
    SwarmSpec,
};
use zookeeper_client::{Acls, Client, CreateMode};

const QUORUM: Duration = Duration::from_secs(60);
const CALL: Duration = Duration::from_secs(5);

static HOSTS: OnceCell<SimulatedHosts> = OnceCell::const_new();
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn progress(line: &str) {
    eprintln!("[swarm] {line}");
}

/// The three hosts of this test binary, started on first use; the reaper removes
/// them once this process exits, however it ends.
async fn shared_hosts() -> &'static SimulatedHosts {
    HOSTS
        .get_or_init(|| async {
            let run_id = format!("t{}-hosts", std::process::id());
            common::spawn_reaper(&run_id);
            let spec = HostsSpec { run_id, count: 3, ports: 8, owner: None };
            let started = Instant::now();
            let hosts = hosts_up(spec, &progress).await.expect("three simulated hosts");
            eprintln!("[swarm] hosts up in {:.1} s", started.elapsed().as_secs_f64());
            hosts
        })
        .await
}

/// The shared hosts, for one test at a time.
async fn exclusive_hosts() -> (&'static SimulatedHosts, MutexGuard<'static, ()>) {
    let turn = ONE_AT_A_TIME.lock().await;
    (shared_hosts().await, turn)
}

fn swarm_spec(kind: &str, nodes: usize, hosts: &SimulatedHosts) -> ClusterSpec {
    let mut spec = common::test_spec(kind, nodes, false);
    spec.backend = BackendKind::Swarm;
    spec.swarm = SwarmSpec { hosts: hosts.endpoints() };
    spec.heap_mb = 64;
    spec.up_timeout = QUORUM;
    spec
}

/// What an engine lists with this run's label: containers, volumes, networks and
/// (on a manager) services.
fn labelled_on(endpoint: Option<&str>, run_id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let kinds: &[&[&str]] = &[&["ps", "-a"], &["volume", "ls"], &["network", "ls"]];
    let services: &[&[&str]] = &[&["service", "ls"]];
    let kinds = if endpoint.is_some() { [kinds, services].concat() } else { kinds.to_vec() };
    for kind in kinds {
        let mut command = Command::new("docker");
        if let Some(endpoint) = endpoint {
            command.env("DOCKER_HOST", endpoint);
        }
        let output = command
            .args(kind)
            .args(["-q", "--filter", &format!("label=zkmq.run={run_id}")])
            .output()
            .expect("docker CLI");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Only the manager lists services.
        if !output.status.success() && !stderr.contains("not a swarm manager") {
            panic!("docker {kind:?} on {endpoint:?} failed: {stderr}");
        }
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|line| format!("{}: {line}", kind[0])),
        );
    }
    found
}

fn labelled_on_hosts(hosts: &SimulatedHosts, run_id: &str) -> Vec<String> {
    hosts
        .hosts
        .iter()
        .flat_map(|host| {
            labelled_on(Some(&host.endpoint), run_id)
                .into_iter()
                .map(move |object| format!("{}: {object}", host.name))
        })
        .collect()
}

async fn client(address: &str) -> Result<Client, String> {
    common::zk_client(address, CALL).await
}

/// Creates `path` through some serving node, retrying up to `timeout`.
async fn write_somewhere(cluster: &Cluster, path: &str, timeout: Duration) {
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let deadline = Instant::now() + timeout;
    loop {
        let mut errors = Vec::new();
        for node in cluster.node_ids() {
            let address = cluster.node_address(node);
            let created = async {
                let client = client(&address).await?;
                match tokio::time::timeout(CALL, client.create(path, b"x", &options)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(zookeeper_client::Error::NodeExists)) => Ok(()),
                    Ok(Err(err)) => Err(format!("create {path} via {address}: {err}")),
                    Err(_) => Err(format!("create {path} via {address}: timed out")),
                }
            };
            match created.await {
                Ok(()) => return,
                Err(err) => errors.push(err),
            }
        }
        assert!(Instant::now() < deadline, "no node took {path} in {timeout:?}: {errors:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether `path` exists as seen through `node`, after a sync.
async fn exists_via(cluster: &Cluster, node: usize, path: &str) -> Result<bool, String> {
    let client = client(&cluster.node_address(node)).await?;
    let look = async {
        client.sync(path).await?;
        client.check_stat(path).await
    };
    match tokio::time::timeout(CALL, look).await {
        Ok(Ok(stat)) => Ok(stat.is_some()),
        Ok(Err(err)) => Err(format!("zk{node}: {err}")),
        Err(_) => Err(format!("zk{node}: timed out")),
    }
}

async fn mode(cluster: &Cluster, node: usize) -> NodeMode {
    cluster.status().await.expect("status")[node - 1].mode
}

/// Waits until `node` reports `wanted`.
async fn wait_mode(cluster: &Cluster, node: usize, wanted: NodeMode) {
    let deadline = Instant::now() + QUORUM;
    while mode(cluster, node).await != wanted {
        assert!(Instant::now() < deadline, "zk{node} never became {wanted}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn five_members_over_three_hosts_ride_out_kill_partition_and_pause_then_leave_nothing() {
    let (hosts, _turn) = exclusive_hosts().await;
    let spec = swarm_spec("swarm", 5, hosts);
    let run_id = spec.run_id.clone();
    common::spawn_reaper_on(&run_id, &hosts.endpoints());
    let started = Instant::now();
    let cluster = Cluster::up(spec, &progress).await.expect("a swarm cluster");
    eprintln!("[swarm] 5 members up in {:.1} s", started.elapsed().as_secs_f64());

    // Spread round robin, manager first; each address on 127.0.0.1.
    let statuses = cluster.status().await.unwrap();
    let placed: Vec<&str> = statuses.iter().map(|s| s.host.as_str()).collect();
    assert_eq!(placed, ["h1", "h2", "h3", "h1", "h2"], "{statuses:?}");
    assert!(statuses.iter().all(|s| s.address.starts_with("127.0.0.1:")), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| s.mode == NodeMode::Leader).count(), 1, "{statuses:?}");
    let attached = Cluster::attach_on(&run_id, &hosts.endpoints()).await.unwrap();
    assert_eq!(attached.connect_string(), cluster.connect_string());

    // kill: the leader's engine kills it, another leads, the swarm starts it again
    let leader = cluster.leader().await.unwrap().expect("a leader");
    let leader_host = statuses[leader - 1].host.clone();
    assert!(cluster.kill(leader).await.unwrap().acted);
    assert_eq!(cluster.status().await.unwrap()[leader - 1].container, "exited");
    let path = common::unique_chroot("swarm-kill");
    write_somewhere(&cluster, &path, QUORUM).await;
    cluster.wait_for_quorum(QUORUM).await.unwrap();
    assert_ne!(cluster.leader().await.unwrap(), Some(leader));
    let started = cluster.start(leader).await.unwrap();
    assert!(started.acted && started.before == "exited", "{started:?}");
    cluster.wait_serving(leader, QUORUM).await.unwrap();
    let after = &cluster.status().await.unwrap()[leader - 1];
    assert_eq!((after.host.as_str(), after.mode), (leader_host.as_str(), NodeMode::Follower));
    assert!(exists_via(&cluster, leader, &path).await.unwrap(), "zk{leader} missed {path}");

    // partition: a member on another host than the leader's, cut off by iptables
    let leader = cluster.leader().await.unwrap().expect("a leader");
    let statuses = cluster.status().await.unwrap();
    let isolated = (1..=5).find(|n| statuses[n - 1].host != statuses[leader - 1].host).unwrap();
    cluster.partition(&[vec![isolated]]).await.unwrap();
    wait_mode(&cluster, isolated, NodeMode::NotServing).await;
    let path = common::unique_chroot("swarm-partition");
    write_somewhere(&cluster, &path, QUORUM).await;
    // restarted inside the partition, it comes back with a new address: still cut off
    cluster.kill(isolated).await.unwrap();
    cluster.start(isolated).await.unwrap();
    let deadline = Instant::now() + QUORUM;
    while mode(&cluster, isolated).await == NodeMode::Down {
        assert!(Instant::now() < deadline, "zk{isolated} did not start again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..12 {
        let now = mode(&cluster, isolated).await;
        assert!(!now.is_serving(), "zk{isolated} restarted inside a partition serves: {now}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let healed = cluster.heal().await.unwrap();
    assert_eq!(healed.healed, cluster.node_ids(), "{healed}");
    cluster.wait_serving(isolated, QUORUM).await.unwrap();
    assert!(exists_via(&cluster, isolated, &path).await.unwrap(), "zk{isolated} missed {path}");

    // pause: frozen by its host's engine, answering nothing, then back
    let paused = if isolated == 5 { 4 } else { 5 };
    assert!(cluster.pause(paused).await.unwrap().acted);
    let status = &cluster.status().await.unwrap()[paused - 1];
    assert_eq!((status.container.as_str(), status.mode), ("paused", NodeMode::Down));
    assert!(cluster.unpause(paused).await.unwrap().acted);
    cluster.wait_all_serving(QUORUM).await.unwrap();

    assert!(!labelled_on_hosts(hosts, &run_id).is_empty());
    cluster.down().await.unwrap();
    assert_eq!(labelled_on_hosts(hosts, &run_id), Vec::<String>::new());
    assert_eq!(labelled_on(None, &run_id), Vec::<String>::new());
}

#[tokio::test]
async fn smoke_on_the_swarm_is_valid_and_leaves_nothing() {
    let (hosts, _turn) = exclusive_hosts().await;
    let dir = tempfile::tempdir().unwrap();
    let smoke = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml"),
    )
    .unwrap();
    let endpoints: Vec<String> = hosts.endpoints().iter().map(|e| format!("{e:?}")).collect();
    let scenario = format!(
        "{}\n[cluster.swarm]\nhosts = [{}]\n",
        smoke.replace("[cluster]\n", "[cluster]\nbackend = \"swarm\"\nheap = \"64m\"\n"),
        endpoints.join(", ")
    );
    let path = dir.path().join("smoke-swarm.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = dir.path().join("runs");
    let started = Instant::now();
    let run = Command::new(common::zkmq_binary())
        .args(["chaos", "run"])
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("[swarm] smoke ran {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(run.status.code(), Some(0), "smoke on the swarm:\n{stdout}\n{stderr}");
    assert!(stdout.contains("VALID"), "{stdout}");
    let run_dir = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
    let results = std::fs::read_to_string(run_dir.join("results.json")).unwrap();
    assert!(results.contains("\"valid\": true"), "{results}");
    let run_id = stderr
        .lines()
        .chain(stdout.lines())
        .find_map(|line| line.strip_prefix("starting cluster "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the run names its cluster")
        .to_owned();
    assert_eq!(labelled_on_hosts(hosts, &run_id), Vec::<String>::new());
}

/// A set of hosts goes with `hosts down`; another, whose owner is killed, goes
/// with the reaper; neither leaves anything labelled on this machine's engine.
#[tokio::test]
async fn hosts_down_and_the_reaper_of_a_killed_owner_leave_nothing_labelled() {
    let spec = |kind: &str| HostsSpec {
        run_id: format!("t{}-{kind}-{:06x}", std::process::id(), rand::random::<u32>() & 0xff_ffff),
        count: 1,
        ports: 2,
        owner: None,
    };
    let downed = spec("hdown");
    common::spawn_reaper(&downed.run_id); // in case the test fails half-way
    let hosts = hosts_up(downed.clone(), &progress).await.unwrap();
    assert_eq!(hosts.hosts.len(), 1);
    assert!(!labelled_on(None, &downed.run_id).is_empty());
    hosts_down(&downed.run_id).await.unwrap();
    assert_eq!(labelled_on(None, &downed.run_id), Vec::<String>::new());

    let reaped = spec("hreap");
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let reaper = Command::new(common::zkmq_binary())
        .args(["cluster", "reap", "--run", &reaped.run_id, "--pid", &owner.id().to_string()])
        .spawn()
        .unwrap();
    common::spawn_reaper(&reaped.run_id); // in case the test fails half-way
    hosts_up(reaped.clone(), &progress).await.unwrap();
    assert!(!labelled_on(None, &reaped.run_id).is_empty());
    owner.kill().unwrap();
    owner.wait().unwrap();
    let mut reaper = reaper;
    let deadline = Instant::now() + QUORUM;
    while reaper.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the reaper did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(labelled_on(None, &reaped.run_id), Vec::<String>::new());
}
