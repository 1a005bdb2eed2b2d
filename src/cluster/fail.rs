//! `zkmq cluster fail`: the original fail.py, a loop of kill / wait / start / wait
//! for rejoin, for watching a client ride through node failures by hand.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::fault::{Member, Verb};
use super::{Cluster, ClusterError};

/// What the loop does to its victim: a fault verb like any other.
const STRIKE: Verb = Verb::Kill;
/// What brings the victim back: the strike's repair.
const RESTORE: Verb = Verb::Start;

/// How `fail_loop` picks and paces its victims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailOptions {
    /// Always kill the current leader (the hardest case for clients) instead of a
    /// random node.
    pub leader: bool,
    /// Pause after each kill and after each rejoin.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Stop after this long (`None`: until interrupted).
    #[serde(with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// How long a restarted node may take to serve again before the loop gives up.
    #[serde(with = "humantime_serde")]
    pub rejoin_timeout: Duration,
}

impl Default for FailOptions {
    fn default() -> Self {
        FailOptions {
            leader: false,
            interval: Duration::from_secs(5),
            duration: Some(Duration::from_secs(120)),
            rejoin_timeout: Duration::from_secs(60),
        }
    }
}

fn stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}.{:03}", now.hour(), now.minute(), now.second(), now.millisecond())
}

/// Kills and restarts nodes until `duration` passes or `shutdown` resolves; on
/// shutdown, restarts whatever it had killed before returning. Reports every
/// action through `progress`, timestamped. Returns how many nodes it killed.
pub async fn fail_loop(
    cluster: &Cluster,
    options: &FailOptions,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<usize, ClusterError> {
    let say = |line: String| progress(&format!("{} {line}", stamp()));
    let started = Instant::now();
    let mut kills = 0;
    let mut down: Option<usize> = None;
    tokio::pin!(shutdown);
    let result: Result<(), ClusterError> = async {
        loop {
            if options.duration.is_some_and(|duration| started.elapsed() >= duration) {
                return Ok(());
            }
            let victim = if options.leader {
                match cluster.leader().await? {
                    Some(leader) => leader,
                    None => {
                        say("no leader right now; waiting for one".to_owned());
                        cluster.wait_for_quorum(options.rejoin_timeout).await?;
                        continue;
                    }
                }
            } else {
                rand::rng().random_range(1..=cluster.spec().nodes)
            };
            say(cluster.inflict(Member::Node(victim), &STRIKE).await?.to_string());
            down = Some(victim);
            kills += 1;
            tokio::select! {
                () = tokio::time::sleep(options.interval) => {}
                () = &mut shutdown => return Ok(()),
            }
            say(cluster.inflict(Member::Node(victim), &RESTORE).await?.to_string());
            let rejoin = Instant::now();
            tokio::select! {
                waited = cluster.wait_serving(victim, options.rejoin_timeout) => waited?,
                () = &mut shutdown => return Ok(()),
            }
            down = None;
            say(format!("zk{victim} serves again after {:.1} s", rejoin.elapsed().as_secs_f64()));
            tokio::select! {
                () = tokio::time::sleep(options.interval) => {}
                () = &mut shutdown => return Ok(()),
            }
        }
    }
    .await;
    if let Some(node) = down {
        // Never leave the ensemble short of a node we took down.
        say(format!("restoring: {}", cluster.inflict(Member::Node(node), &RESTORE).await?));
    }
    result.map(|()| kills)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_restores_with_the_repair_of_its_strike() {
        assert_eq!(STRIKE.repair().and_then(|repair| repair.verb()), Some(RESTORE));
    }
}
