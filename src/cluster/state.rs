//! The "current cluster": `zkmq cluster up` remembers its run id so that later
//! commands (`status`, `kill 2`, `down`) need no `--run`. One small file:
//! `$ZKMQ_STATE_DIR/current`, default `$XDG_STATE_HOME/zkmq/current`, else
//! `~/.local/state/zkmq/current`.

use std::path::PathBuf;

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
    let path = state_file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(ClusterError::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(&path, format!("{run_id}\n"))
        .map_err(ClusterError::io(format!("writing {}", path.display())))
}

/// The remembered run id, if any.
pub fn current_run_id() -> Option<String> {
    std::fs::read_to_string(state_file())
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// Forgets the current run if it is `run_id`.
pub fn forget_current_run(run_id: &str) {
    if current_run_id().as_deref() == Some(run_id) {
        let _ = std::fs::remove_file(state_file());
    }
}
