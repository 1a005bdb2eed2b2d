//! Who a cluster belongs to, and the reaper that removes it when its owner dies
//! without doing so (`kill -9`, a CI job's timeout): the idea of testcontainers'
//! Ryuk. The reaper is a detached `zkmq cluster reap` in a process group of its
//! own, so a signal to the owner's group does not reach it; it polls the owner
//! and, once it is gone, removes the run by its label.
//!
//! A cluster with an owner records it in its [`ClusterSpec`](super::ClusterSpec)
//! (on every ZooKeeper container), so `zkmq cluster list` can tell a run whose
//! owner is gone (stale) from one left running on purpose (no owner).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ClusterError;

/// A process, named so that a recycled pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// Its start time (clock ticks after boot, `/proc/<pid>/stat` field 22): a
    /// new process with the same pid has another.
    pub started: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Option<Owner> {
        let pid = std::process::id();
        Some(Owner { pid, started: start_time(pid)? })
    }

    /// The process still runs (not exited, not a zombie, not another with its pid).
    pub fn alive(&self) -> bool {
        process_alive(self.pid) && start_time(self.pid) == Some(self.started)
    }
}

/// What the reaper does once its owner is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapPolicy {
    /// Remove the run.
    Always,
    /// Remove it unless it became the current cluster or the current simulated
    /// hosts (`zkmq cluster up` and `hosts up` make theirs current only once it is
    /// up: killed before, it is removed).
    UnlessCurrent,
}

/// Starts `binary cluster reap` for `run_id`, watching process `pid`; a run on a
/// swarm is removed from the swarm of `swarm_hosts` (none: the default swarm).
pub fn spawn_reaper(
    binary: &Path,
    run_id: &str,
    pid: u32,
    policy: ReapPolicy,
    swarm_hosts: &[String],
) -> Result<(), ClusterError> {
    use std::os::unix::process::CommandExt;
    super::validate_run_id(run_id)?;
    let mut command = Command::new(binary);
    command.args(["cluster", "reap", "--run", run_id, "--pid"]).arg(pid.to_string());
    if policy == ReapPolicy::UnlessCurrent {
        command.arg("--unless-current");
    }
    for host in swarm_hosts {
        command.args(["--swarm-host", host]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|source| ClusterError::SpawnReaper { binary: binary.to_path_buf(), source })
}

/// Waits for process `pid` to exit, then removes run `run_id` (as `policy` says),
/// from this machine's engine and the swarm of `swarm_hosts` (none: the default
/// swarm, if any). Returns how many objects it removed.
pub async fn reap(
    run_id: &str,
    pid: u32,
    policy: ReapPolicy,
    swarm_hosts: &[String],
) -> Result<usize, ClusterError> {
    super::validate_run_id(run_id)?;
    while process_alive(pid) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let current = [super::current_run_id(), super::current_hosts_id()];
    if policy == ReapPolicy::UnlessCurrent && current.iter().flatten().any(|id| id == run_id) {
        return Ok(0);
    }
    super::down_run_on(run_id, swarm_hosts).await
}

/// `/proc/<pid>/stat`, split after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Linux: the process exists and is not a zombie (exited, not yet waited for).
fn process_alive(pid: u32) -> bool {
    // Fields after ')' start at field 3 (the state).
    stat_fields(pid)
        .and_then(|fields| fields.first().cloned())
        .is_some_and(|state| state != "Z" && state != "X")
}

fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_live_owner_and_a_recycled_pid_is_not() {
        let me = Owner::current().expect("Linux has /proc");
        assert!(me.alive());
        assert!(!Owner { started: me.started + 1, ..me }.alive());
        assert!(!Owner { pid: u32::MAX, started: 0 }.alive());
    }
}
