//! The depth ceiling: a producer refuses to send past [`QueueConfig::max_depth`].
//!
//! Every waiting message lives in every server's heap, so a queue that grows
//! without bound ends with the ensemble dying of `OutOfMemoryError`: the queue
//! must never be the cause of the downtime it is meant to survive. The ceiling is
//! a guard, not an exact count, and costs almost nothing:
//!
//! - The depth is the `num_children` of `messages/` in its parent's stat: one
//!   `exists`, answered by the server the session is on, without listing.
//! - A reading is reused for [`DEPTH_REFRESH`], plus what this producer sent since.
//!   A send that would go past the ceiling on that estimate reads again first,
//!   so a refusal always rests on a reading taken for it: consumers that took
//!   messages since never make a producer refuse wrongly.
//! - Other producers' sends are seen only at the next reading, so N producers at
//!   full speed can overshoot by what they send in one [`DEPTH_REFRESH`] (and
//!   each by at most one batch). Size the ceiling with that margin (README).
//! - `partial/` is not counted: it holds only messages taken back from dead
//!   consumers, at most what consumers hold at once.
//! - When the reading fails (the connection is in trouble), the send goes ahead
//!   unguarded and meets the same trouble in its own protocol, which knows how to
//!   report it; the guard never turns a fault into a refusal.
//!
//! [`QueueConfig::max_depth`]: super::QueueConfig::max_depth

use std::time::Duration;

use tokio::time::Instant;

use super::store::Store;

/// How long a depth reading stands in for a fresh one.
pub(crate) const DEPTH_REFRESH: Duration = Duration::from_secs(1);

/// What a producer knows of its queue's depth.
#[derive(Debug)]
pub(crate) struct DepthGauge {
    max_depth: u64,
    /// [`DEPTH_REFRESH`], but for tests.
    refresh: Duration,
    /// The last reading of `messages/`'s `num_children`, and when it was taken.
    reading: Option<(Instant, u64)>,
    /// Messages let through since that reading (sent or only tried: an estimate
    /// that errs high is corrected at the next reading).
    let_through: u64,
    /// When a reading last failed: until [`DEPTH_REFRESH`] later, sends go
    /// unguarded without asking a troubled connection again.
    failed_at: Option<Instant>,
}

/// How many of the messages asked for may go, and the depth that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    pub allowed: usize,
    /// The estimated depth before these messages.
    pub depth: u64,
}

impl DepthGauge {
    pub fn new(max_depth: u64) -> Self {
        Self::with_refresh(max_depth, DEPTH_REFRESH)
    }

    fn with_refresh(max_depth: u64, refresh: Duration) -> Self {
        Self { max_depth, refresh, reading: None, let_through: 0, failed_at: None }
    }

    pub fn max_depth(&self) -> u64 {
        self.max_depth
    }

    /// Lets through as many of `wanted` messages as fit under the ceiling
    /// (counting them as sent); reads `messages_dir`'s stat when the last reading
    /// is stale or says there is no room.
    pub async fn admit(&mut self, store: &dyn Store, messages_dir: &str, wanted: usize) -> Room {
        let wanted_count = wanted as u64;
        if wanted == 0 {
            let depth = self.reading.map_or(0, |(_, depth)| depth) + self.let_through;
            return Room { allowed: 0, depth };
        }
        let fresh = self.reading.filter(|(at, _)| at.elapsed() < self.refresh);
        if let Some((_, depth)) = fresh {
            let estimate = depth + self.let_through;
            if estimate + wanted_count <= self.max_depth {
                self.let_through += wanted_count;
                return Room { allowed: wanted, depth: estimate };
            }
        }
        let estimate = self.reading.map_or(0, |(_, depth)| depth) + self.let_through;
        if self.failed_at.is_some_and(|at| at.elapsed() < self.refresh) || store.is_dead() {
            self.let_through += wanted_count;
            return Room { allowed: wanted, depth: estimate };
        }
        let depth = match store.exists(messages_dir).await {
            Ok(stat) => stat.map_or(0, |stat| u64::try_from(stat.num_children).unwrap_or(0)),
            Err(err) => {
                tracing::debug!("reading the depth of {messages_dir}: {err}; sending unguarded");
                self.failed_at = Some(Instant::now());
                self.let_through += wanted_count;
                return Room { allowed: wanted, depth: estimate };
            }
        };
        self.reading = Some((Instant::now(), depth));
        self.failed_at = None;
        let allowed = self.max_depth.saturating_sub(depth).min(wanted_count);
        self.let_through = allowed;
        Room { allowed: allowed as usize, depth }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::store::{CreateMode, MultiOp, NodeStat, StoreError, StoreResult};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

    /// A store whose `messages/` has `depth` children (or fails to say), counting reads.
    struct Depth {
        depth: AtomicI32,
        fail: bool,
        reads: AtomicU32,
    }

    impl Depth {
        fn new(depth: i32) -> Self {
            Self { depth: AtomicI32::new(depth), fail: false, reads: AtomicU32::new(0) }
        }
        fn reads(&self) -> u32 {
            self.reads.load(Ordering::Relaxed)
        }
    }

    #[async_trait]
    impl Store for Depth {
        async fn create(&self, _: &str, _: &[u8], _: CreateMode) -> StoreResult<String> {
            unreachable!()
        }
        async fn get(&self, _: &str) -> StoreResult<(Vec<u8>, NodeStat)> {
            unreachable!()
        }
        async fn exists(&self, _: &str) -> StoreResult<Option<NodeStat>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            if self.fail {
                return Err(StoreError::Unknown("no answer".into()));
            }
            let num_children = self.depth.load(Ordering::Relaxed);
            Ok(Some(NodeStat { num_children, ..NodeStat::default() }))
        }
        async fn set(&self, _: &str, _: &[u8], _: Option<i32>) -> StoreResult<NodeStat> {
            unreachable!()
        }
        async fn delete(&self, _: &str, _: Option<i32>) -> StoreResult<()> {
            unreachable!()
        }
        async fn children(&self, _: &str) -> StoreResult<Vec<String>> {
            unreachable!()
        }
        fn supports_multi(&self) -> bool {
            true
        }
        async fn multi(&self, _: &[MultiOp]) -> StoreResult<Vec<String>> {
            unreachable!()
        }
        async fn wait_for_children(&self, _: &str, _: Duration) -> StoreResult<()> {
            unreachable!()
        }
        fn session_id(&self) -> i64 {
            1
        }
        fn is_dead(&self) -> bool {
            false
        }
        async fn close(&self) {}
        fn abandon(&self) {}
        fn access_path(&self) -> &'static str {
            "test"
        }
    }

    #[tokio::test]
    async fn sends_up_to_the_ceiling_then_refuses_what_does_not_fit() {
        let store = Depth::new(90);
        let mut gauge = DepthGauge::new(100);
        assert_eq!(gauge.admit(&store, "/q", 4).await, Room { allowed: 4, depth: 90 });
        assert_eq!(gauge.admit(&store, "/q", 4).await, Room { allowed: 4, depth: 94 });
        assert_eq!(store.reads(), 1, "a fresh reading plus what was sent since stands in");
        // 98 + 4 > 100: read again (the store still says 90: others took some).
        assert_eq!(gauge.admit(&store, "/q", 4).await, Room { allowed: 4, depth: 90 });
        assert_eq!(store.reads(), 2);
        store.depth.store(98, Ordering::Relaxed);
        assert_eq!(gauge.admit(&store, "/q", 8).await, Room { allowed: 2, depth: 98 });
        store.depth.store(100, Ordering::Relaxed);
        assert_eq!(gauge.admit(&store, "/q", 1).await, Room { allowed: 0, depth: 100 });
        assert_eq!(store.reads(), 4, "each refusal rests on a reading of its own");
    }

    #[tokio::test]
    async fn a_stale_reading_is_taken_again() {
        let store = Depth::new(10);
        let mut gauge = DepthGauge::with_refresh(100, Duration::from_millis(5));
        gauge.admit(&store, "/q", 1).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        store.depth.store(100, Ordering::Relaxed);
        assert_eq!(gauge.admit(&store, "/q", 1).await, Room { allowed: 0, depth: 100 });
        assert_eq!(store.reads(), 2);
    }

    #[tokio::test]
    async fn a_failed_reading_never_refuses_and_is_not_retried_before_every_send() {
        let store = Depth { fail: true, ..Depth::new(0) };
        let mut gauge = DepthGauge::new(1);
        assert_eq!(gauge.admit(&store, "/q", 5).await.allowed, 5);
        assert_eq!(gauge.admit(&store, "/q", 5).await.allowed, 5);
        assert_eq!(store.reads(), 1, "a troubled connection is not asked before every send");
    }
}
