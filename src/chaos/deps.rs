//! TEMPORARY adapter: stand-ins with the contracted names (CONTRACTS.md) of the
//! areas chaos integrates, so chaos compiles before they land in `main`. Each
//! module here is replaced by a `pub use crate::<area>` as its owner lands; the
//! whole file goes away once all have.
#![allow(dead_code, clippy::unused_async)]

pub mod cluster {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, thiserror::Error)]
    pub enum ClusterError {
        #[error("not supported here: {0}")]
        Unsupported(String),
        #[error("timed out waiting for {waited_for}")]
        Timeout { waited_for: String },
        #[error("the cluster area has not landed yet")]
        NotLanded,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ClusterSpec {
        pub run_id: String,
        pub nodes: usize,
        pub zk_version: String,
        pub image: Option<String>,
        pub rest: bool,
        pub zkmq_binary: Option<PathBuf>,
        pub tick_time_ms: u32,
    }
    impl ClusterSpec {
        pub fn new(run_id: impl Into<String>, nodes: usize) -> Self {
            Self {
                run_id: run_id.into(),
                nodes,
                zk_version: "3.8.0".into(),
                image: None,
                rest: false,
                zkmq_binary: None,
                tick_time_ms: 2000,
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum NodeMode {
        Leader,
        Follower,
        Observer,
        Standalone,
        NotServing,
        Down,
    }

    #[derive(Debug, Clone)]
    pub struct NodeStatus {
        pub node: usize,
        pub container: String,
        pub mode: NodeMode,
        pub address: String,
        pub version: String,
    }

    pub async fn down_run(_run_id: &str) -> Result<usize, ClusterError> {
        Err(ClusterError::NotLanded)
    }

    #[derive(Clone)]
    pub struct Cluster {
        run_id: String,
    }

    macro_rules! verbs {
        ($($name:ident),*) => { $(pub async fn $name(&self, _node: usize) -> Result<String, ClusterError> { Err(ClusterError::NotLanded) })* };
    }
    macro_rules! rest_verbs {
        ($($name:ident),*) => { $(pub async fn $name(&self) -> Result<String, ClusterError> { Err(ClusterError::NotLanded) })* };
    }

    impl Cluster {
        pub async fn up(
            _spec: ClusterSpec,
            _progress: &(dyn Fn(&str) + Send + Sync),
        ) -> Result<Cluster, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn attach(_run_id: &str) -> Result<Cluster, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub fn run_id(&self) -> &str {
            &self.run_id
        }
        pub fn node_ids(&self) -> Vec<usize> {
            Vec::new()
        }
        pub fn connect_string(&self) -> String {
            String::new()
        }
        pub fn rest_url(&self) -> Option<String> {
            None
        }
        pub async fn status(&self) -> Result<Vec<NodeStatus>, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn leader(&self) -> Result<Option<usize>, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn wait_for_quorum(&self, _timeout: Duration) -> Result<(), ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn wait_serving(
            &self,
            _node: usize,
            _timeout: Duration,
        ) -> Result<(), ClusterError> {
            Err(ClusterError::NotLanded)
        }
        verbs!(kill, stop, start, restart, pause, unpause, wipe);
        rest_verbs!(rest_kill, rest_start, rest_restart, rest_pause, rest_unpause, heal);
        pub async fn upgrade(&self, _node: usize, _v: &str) -> Result<String, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn partition(&self, _groups: &[Vec<usize>]) -> Result<String, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn delay(&self, _node: usize, _delay: Duration) -> Result<String, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn loss(&self, _node: usize, _percent: u32) -> Result<String, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn slow(&self, _node: usize, _kbit: u32) -> Result<String, ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn save_logs(&self, _dir: &Path) -> Result<(), ClusterError> {
            Err(ClusterError::NotLanded)
        }
        pub async fn down(&self) -> Result<(), ClusterError> {
            Err(ClusterError::NotLanded)
        }
    }
}

pub mod queue {
    use std::sync::Arc;
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    use crate::queue::Store;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub enum Access {
        Native { connect: String },
        Rest { url: String },
    }
    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    pub enum Algorithm {
        Safe,
        Legacy,
    }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct QueueConfig {
        pub chroot: String,
        pub algorithm: Algorithm,
        pub op_timeout: Duration,
        pub session_timeout: Duration,
        pub orphan_grace: Duration,
        pub poll_interval: Duration,
        pub recovery_interval: Duration,
        pub retry_budget: Duration,
    }
    impl Default for QueueConfig {
        fn default() -> Self {
            Self {
                chroot: String::new(),
                algorithm: Algorithm::Safe,
                op_timeout: Duration::from_secs(5),
                session_timeout: Duration::from_secs(10),
                orphan_grace: Duration::from_secs(30),
                poll_interval: Duration::from_millis(100),
                recovery_interval: Duration::from_secs(2),
                retry_budget: Duration::from_secs(30),
            }
        }
    }
    #[derive(Debug, thiserror::Error)]
    pub enum QueueError {
        #[error("taken back")]
        TakenBack,
        #[error("unknown outcome: {0}")]
        Unknown(String),
        #[error("the queue area has not landed yet")]
        NotLanded,
    }
    impl QueueError {
        pub fn is_unknown_outcome(&self) -> bool {
            matches!(self, Self::Unknown(_))
        }
    }
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct MessageId(String);
    impl MessageId {
        pub fn generate() -> Self {
            Self(uuid::Uuid::new_v4().to_string())
        }
    }
    impl std::fmt::Display for MessageId {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    pub fn checksum(payload: &[u8]) -> u32 {
        crc32fast::hash(payload)
    }
    pub struct Producer;
    impl Producer {
        pub async fn new(_access: Access, _config: QueueConfig) -> Result<Producer, QueueError> {
            Err(QueueError::NotLanded)
        }
        pub async fn send_with_id(
            &mut self,
            _id: &MessageId,
            _payload: &[u8],
        ) -> Result<(), QueueError> {
            Err(QueueError::NotLanded)
        }
    }
    pub struct Delivery {
        pub id: MessageId,
        pub payload: Vec<u8>,
        pub checksum: u32,
        pub source: String,
        pub from_partial: bool,
    }
    pub struct Consumer;
    impl Consumer {
        pub async fn register(
            _access: Access,
            _config: QueueConfig,
        ) -> Result<Consumer, QueueError> {
            Err(QueueError::NotLanded)
        }
        pub fn id(&self) -> &str {
            ""
        }
        pub async fn take(&mut self, _timeout: Duration) -> Result<Option<Delivery>, QueueError> {
            Err(QueueError::NotLanded)
        }
        pub async fn ack(&mut self, _delivery: &Delivery) -> Result<(), QueueError> {
            Err(QueueError::NotLanded)
        }
        pub fn crash(self) {}
        pub async fn close(self) {}
    }
    pub async fn connect(
        _access: &Access,
        _config: &QueueConfig,
    ) -> Result<Arc<dyn Store>, QueueError> {
        Err(QueueError::NotLanded)
    }
    #[derive(Debug, Serialize)]
    pub struct RecoveryReport {}
    pub async fn recover(
        _store: &dyn Store,
        _config: &QueueConfig,
    ) -> Result<RecoveryReport, QueueError> {
        Err(QueueError::NotLanded)
    }
    #[derive(Debug, Clone, Copy, Default)]
    pub struct QueueStats {
        pub messages: u64,
        pub partial: u64,
        pub in_flight: u64,
        pub consumers: u64,
    }
    pub async fn stats(
        _store: &dyn Store,
        _config: &QueueConfig,
    ) -> Result<QueueStats, QueueError> {
        Err(QueueError::NotLanded)
    }
}

pub mod checker {
    use std::path::Path;

    use serde::Serialize;

    #[derive(Debug, Clone, Serialize)]
    pub struct CheckResult {
        pub valid: bool,
    }
    #[derive(Debug, thiserror::Error)]
    #[error("the checker has not landed yet")]
    pub struct CheckError;
    pub fn check_history(_path: &Path) -> Result<CheckResult, CheckError> {
        Err(CheckError)
    }
}

pub mod report {
    use std::path::Path;
    use std::time::Duration;

    use crate::history::Event;

    #[derive(Clone)]
    pub struct Progress;
    impl Progress {
        pub fn new(_scenario: &str, _planned: Duration) -> Self {
            Self
        }
        pub fn observe(&self, _event: &Event) {}
        pub fn fault_started(&self, _label: &str) {}
        pub fn fault_ended(&self, _label: &str) {}
        pub fn set_phase(&self, _phase: &str) {}
        pub fn finish(&self, _message: &str) {}
    }

    #[derive(Debug)]
    pub struct Reports;
    #[derive(Debug, thiserror::Error)]
    #[error("the reports have not landed yet")]
    pub struct ReportError;
    pub fn write_reports(_run_dir: &Path) -> Result<Reports, ReportError> {
        Err(ReportError)
    }
}
