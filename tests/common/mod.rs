//! Shared fixtures for the integration tests: real ZooKeeper ensembles in Docker.
//!
//! - [`shared_ensemble`]: one 3-node ensemble (plus the REST gateway once
//!   `zkmq rest serve` exists) per test binary, for tests that only read and write;
//!   each test works in its own [`unique_chroot`].
//! - [`own_ensemble`]: a private ensemble for tests that inject faults, removed when
//!   the returned [`TestCluster`] drops.
//!
//! At most 2 ensembles run at once per test binary (a semaphore; the shared one
//! holds a permit for the binary's lifetime): the machine has 2 cores. Every
//! ensemble gets a reaper, a detached `zkmq cluster reap --run ID --pid PID` that
//! removes it once this test process is gone, however it ended (the idea of
//! testcontainers' Ryuk).
#![allow(dead_code)]

pub mod zk_proxy;

use std::ops::Deref;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, LazyLock};

use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use zkmq::cluster::{Cluster, ClusterSpec};

static PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(2)));
static SHARED: OnceCell<(Cluster, OwnedSemaphorePermit)> = OnceCell::const_new();

/// The zkmq binary cargo built for these tests (the gateway container runs it).
pub fn zkmq_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zkmq"))
}

/// A ZooKeeper path prefix no other test uses: `/t-<name>-<random>`.
pub fn unique_chroot(test_name: &str) -> String {
    let name: String =
        test_name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("/t-{name}-{:08x}", rand::random::<u32>())
}

/// Whether this binary can run the gateway (`zkmq rest serve` exists yet).
pub fn gateway_available() -> bool {
    std::process::Command::new(zkmq_binary())
        .args(["rest", "serve", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A native client of one node (10 s sessions), connected within `within`.
pub async fn zk_client(
    address: &str,
    within: std::time::Duration,
) -> Result<zookeeper_client::Client, String> {
    let connect = zookeeper_client::Client::connector()
        .with_session_timeout(std::time::Duration::from_secs(10))
        .with_connection_timeout(std::time::Duration::from_secs(3))
        .connect(address);
    match tokio::time::timeout(within, connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(err)) => Err(format!("connect {address}: {err}")),
        Err(_) => Err(format!("connect {address}: timed out")),
    }
}

/// The spec tests use: our images, 3.8.0, tickTime 500 ms.
pub fn test_spec(kind: &str, nodes: usize, rest: bool) -> ClusterSpec {
    let run_id =
        format!("t{}-{kind}-{:06x}", std::process::id(), rand::random::<u32>() & 0xff_ffff);
    let mut spec = ClusterSpec::new(run_id, nodes);
    spec.rest = rest;
    spec.zkmq_binary = Some(zkmq_binary());
    spec
}

/// Starts the reaper for `run_id`: detached (own process group, so a Ctrl-C on
/// `cargo test` does not reach it), it outlives this process and removes the run.
pub fn spawn_reaper(run_id: &str) {
    spawn_reaper_on(run_id, &[]);
}

/// [`spawn_reaper`] for a run on the swarm of these engines.
pub fn spawn_reaper_on(run_id: &str, swarm_hosts: &[String]) {
    let spawned = std::process::Command::new(zkmq_binary())
        .args(["cluster", "reap", "--run", run_id, "--pid"])
        .arg(std::process::id().to_string())
        .args(swarm_hosts.iter().flat_map(|host| ["--swarm-host", host.as_str()]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(err) = spawned {
        panic!("cannot start the reaper for {run_id}: {err}");
    }
}

fn progress(line: &str) {
    eprintln!("[cluster] {line}");
}

/// Starts an ensemble from `spec` under a semaphore permit, with a reaper.
pub async fn start(spec: ClusterSpec) -> TestCluster {
    let (cluster, permit) = up_with_permit(spec).await;
    TestCluster { cluster, _permit: permit }
}

async fn up_with_permit(spec: ClusterSpec) -> (Cluster, OwnedSemaphorePermit) {
    let permit = PERMITS.clone().acquire_owned().await.expect("the semaphore is never closed");
    spawn_reaper(&spec.run_id);
    let run_id = spec.run_id.clone();
    match Cluster::up(spec, &progress).await {
        Ok(cluster) => (cluster, permit),
        Err(err) => panic!("cluster {run_id} did not come up: {err}"),
    }
}

/// One 3-node ensemble per test binary (with the gateway when the binary has
/// `zkmq rest serve`). Never taken down by the tests; the reaper removes it when
/// the test process exits.
pub async fn shared_ensemble() -> &'static Cluster {
    let (cluster, _) = SHARED
        .get_or_init(|| async {
            // Holds its permit for the life of the process.
            up_with_permit(test_spec("shared", 3, gateway_available())).await
        })
        .await;
    cluster
}

/// A private ensemble for a fault test, removed when dropped.
pub async fn own_ensemble(nodes: usize, rest: bool) -> TestCluster {
    start(test_spec("own", nodes, rest)).await
}

/// An ensemble owned by one test; derefs to [`Cluster`].
pub struct TestCluster {
    cluster: Cluster,
    _permit: OwnedSemaphorePermit,
}

impl Deref for TestCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside a runtime: a thread with its own.
        let run_id = self.cluster.run_id().to_owned();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            if let Err(err) = runtime.block_on(zkmq::cluster::down_run(&run_id)) {
                eprintln!("[cluster] removing {run_id} failed (the reaper will retry): {err}");
            }
        })
        .join();
    }
}
