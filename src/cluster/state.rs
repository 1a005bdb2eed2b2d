//! The "current cluster": `zkmq cluster up` remembers its run id so that later
//! commands (`status`, `kill 2`, `down`) need no `--run`. One small file:
//! `$ZKMQ_STATE_DIR/current`, default `$XDG_STATE_HOME/zkmq/current`, else
//! `~/.local/state/zkmq/current`. `zkmq cluster hosts up` remembers its simulated
//! hosts beside it (`hosts`), for swarm runs that name no engines.

use std::path::{Path, PathBuf};

use super::ClusterError;

/// Where the current run id is kept.
pub fn state_file() -> PathBuf {
    let dir = if let Some(dir) = std::env::var_os("ZKMQ_STATE_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        PathBuf::from(dir).join("zkmq")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".local/state/zkmq")
    } else {
        std::env::temp_dir().join("zkmq-state")
    };
    dir.join("current")
}

pub fn remember_current_run(run_id: &str) -> Result<(), ClusterError> {
    remember(&state_file(), run_id)
}

/// The remembered run id, if any.
pub fn current_run_id() -> Option<String> {
    remembered(&state_file())
}

/// Forgets the current run if it is `run_id`.
pub fn forget_current_run(run_id: &str) {
    forget(&state_file(), run_id)
}

fn hosts_file() -> PathBuf {
    state_file().with_file_name("hosts")
}

/// Remembers `run_id` as the simulated hosts swarm runs use by default.
pub fn remember_current_hosts(run_id: &str) -> Result<(), ClusterError> {
    remember(&hosts_file(), run_id)
}

/// The remembered simulated hosts' run id, if any.
pub fn current_hosts_id() -> Option<String> {
    remembered(&hosts_file())
}

/// Forgets the current simulated hosts if they are `run_id`.
pub fn forget_current_hosts(run_id: &str) {
    forget(&hosts_file(), run_id)
}

fn remember(path: &Path, run_id: &str) -> Result<(), ClusterError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(ClusterError::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(path, format!("{run_id}\n"))
        .map_err(ClusterError::io(format!("writing {}", path.display())))
}

fn remembered(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|id| !id.is_empty())
}

fn forget(path: &Path, run_id: &str) {
    if remembered(path).as_deref() == Some(run_id) {
        let _ = std::fs::remove_file(path);
    }
}
