//! Faults aimed at ZooKeeper's own weak windows, read from the servers themselves.
//!
//! ZooKeeper's known ways of losing committed writes (ZOOKEEPER-4643, -4646,
//! -4785, fixed in 3.8.4 and 3.9.2; ZOOKEEPER-4925, fixed in 3.9.4) all live in
//! the moments right after an election, while followers sync with the new leader.
//! A kill at a random moment rarely lands there, so these faults wait for the
//! moment, as the servers report it:
//!
//! - **the logs** (followed live through Docker): `LEADING - LEADER ELECTION TOOK`
//!   names a new leader the moment it is elected; a follower's `Getting a diff`,
//!   `Getting a snapshot` or `Truncating log` says how it syncs;
//! - **the data directory**: a follower writes its `currentEpoch` file when it
//!   takes the NEWLEADER step of its sync. In 3.8.0 that write comes *before* the
//!   transactions of a DIFF reach its disk (ZOOKEEPER-4643): a follower killed
//!   right then restarts with the newest epoch and a short log, and the next
//!   election may prefer it to servers holding more committed writes. A tripwire
//!   inside the follower's container (a Perl loop, since Debian's minimal root has
//!   Perl but no inotify tools) watches the file every half millisecond and
//!   SIGKILLs the JVM the moment it changes: a kill sent through Docker would
//!   arrive tens of milliseconds late, after the window closed. That is why the
//!   start script runs java as a child of the container's shell (the kernel
//!   ignores SIGKILL sent to a container's first process from inside it).
//!
//! Each fault returns the nodes it left down in the order they went down;
//! [`Cluster::bring_back`] starts them again in that order, the last one (the
//! newest leader, whose log is the longest) only once the others have a quorum,
//! so the election that follows is the one the bugs need. Which node leads when a
//! fault starts is read then, so a replay repeats the fault's kind, knobs and
//! drawn delays, not necessarily its nodes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::docker::LogLine;
use super::fault::{Member, Window};
use super::outcome::{BroughtBack, ContainerChange, ContainerVerb, WindowStrike};
use super::Whereabouts;
use super::{Cluster, ClusterError, NodeMode};

/// ZooKeeper's line when a node becomes leader (3.8 and 3.9 alike).
const ELECTED: &str = "LEADING - LEADER ELECTION TOOK";
/// How long a fault waits for an election, or for a follower to adopt an epoch.
const WINDOW_WAIT: Duration = Duration::from_secs(30);
/// How long a fault waits for a leader to aim at when it starts.
const LEADER_WAIT: Duration = Duration::from_secs(15);
/// How long [`Cluster::bring_back`] waits for the first nodes' quorum before it
/// starts the last one anyway.
const BRING_BACK_WAIT: Duration = Duration::from_secs(60);
/// The tripwire's own bound: a little over [`WINDOW_WAIT`], so the harness gives
/// up first and the loop never outlives the fault.
const TRIPWIRE_TIMEOUT_S: u64 = 35;

/// Runs inside a node's container: waits until the server listens for elections
/// (port 3888: its start-up, which may rewrite a lagging `currentEpoch`, is
/// over), then for `/data/version-2/currentEpoch` to hold a new epoch, waits
/// `$ARGV[0]` ms, SIGKILLs every `java` process, and says what it saw. The
/// follower's write comes at the NEWLEADER step of its sync; a leader writes the
/// file too, so a node that listens on the quorum port (2888: only a leader
/// does) is spared. Exit 0: tripped; 3: no new epoch in time; 4: java is the
/// container's first process (a cluster started by an older zkmq); 5: no java;
/// 6: it was elected leader itself.
const TRIPWIRE: &str = r#"
my ($delay_ms, $timeout_s) = @ARGV;
my $file = "/data/version-2/currentEpoch";
sub listening {
  my ($port) = @_;
  for my $table ("/proc/net/tcp", "/proc/net/tcp6") {
    open(my $fh, "<", $table) or next;
    while (my $row = <$fh>) {
      my @c = split " ", $row;
      return 1 if defined $c[3] && $c[1] =~ /:$port$/ && $c[3] eq "0A";
    }
  }
  return 0;
}
sub epoch { open(my $fh, "<", $file) or return ""; my $e = <$fh>; $e = "" unless defined $e; chomp $e; return $e }
sub javas {
  my @found;
  opendir(my $d, "/proc") or return @found;
  for my $pid (grep { /^\d+$/ } readdir $d) {
    open(my $c, "<", "/proc/$pid/comm") or next;
    my $name = <$c>;
    next unless defined $name;
    chomp $name;
    push @found, $pid if $name eq "java";
  }
  return @found;
}
$| = 1;
my $end = time + $timeout_s;
select(undef, undef, undef, 0.005) until listening("0F30") || time >= $end;
my $start = epoch();
while (time < $end) {
  my $now = epoch();
  if ($now ne "" && $now ne $start) {
    if (listening("0B48")) { print "leads $start $now\n"; exit 6 }
    select(undef, undef, undef, $delay_ms / 1000) if $delay_ms > 0;
    my @java = javas();
    if (!@java) { print "gone\n"; exit 5 }
    if (grep { $_ == 1 } @java) { print "pid1\n"; exit 4 }
    kill "KILL", @java;
    print "tripped $start $now\n";
    exit 0;
  }
  select(undef, undef, undef, 0.0005);
}
print "timeout $start\n";
exit 3;
"#;

/// The delay of a window fault's `k`-th kill: drawn from the plan's `pick`, so a
/// seed (and a replay) fixes it, uniform from 0 to `within`.
pub fn drawn_delay(pick: u64, k: u64, within: Duration) -> Duration {
    if within.is_zero() {
        return Duration::ZERO;
    }
    // splitmix64 of (pick, k): independent draws without a generator to carry.
    let mut z = pick.wrapping_add(k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let micros = within.as_micros() as u64;
    Duration::from_micros(z % (micros + 1))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The nodes' log lines as they come, from several followed containers at once.
struct LogWatch {
    tx: mpsc::UnboundedSender<(usize, LogLine)>,
    rx: mpsc::UnboundedReceiver<(usize, LogLine)>,
    tasks: JoinSet<()>,
    /// Every line received so far, in arrival order.
    seen: Vec<(usize, LogLine)>,
}

impl LogWatch {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        LogWatch { tx, rx, tasks: JoinSet::new(), seen: Vec::new() }
    }

    /// Follows `node`'s log from `since` (seconds since the epoch) on, in the
    /// container that runs it now (on a swarm, a start may make a new one); a
    /// follow ends when the container stops, so a node started again is followed
    /// again.
    async fn follow(
        &mut self,
        cluster: &Cluster,
        node: usize,
        since: f64,
    ) -> Result<(), ClusterError> {
        let Whereabouts { docker, container, .. } = cluster.whereabouts(Member::Node(node)).await?;
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let lines = docker.follow_logs(&container, since.floor() as i64 - 1);
            futures::pin_mut!(lines);
            while let Some(Ok(line)) = lines.next().await {
                if line.at.is_some_and(|at| at < since) {
                    continue;
                }
                if tx.send((node, line)).is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// The first line after `after` (seconds since the epoch) whose text
    /// `matches`, or `None` when `deadline` passes first.
    async fn next(
        &mut self,
        after: f64,
        deadline: Instant,
        matches: impl Fn(&str) -> bool,
    ) -> Option<(usize, LogLine)> {
        let already = self
            .seen
            .iter()
            .find(|(_, line)| line.at.is_none_or(|at| at >= after) && matches(&line.text));
        if let Some(found) = already {
            return Some(found.clone());
        }
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (node, line) = tokio::time::timeout(left, self.rx.recv()).await.ok()??;
            self.seen.push((node, line.clone()));
            if line.at.is_none_or(|at| at >= after) && matches(&line.text) {
                return Some((node, line));
            }
        }
    }

    /// Takes in what has arrived, without waiting.
    fn drain(&mut self) {
        while let Ok(item) = self.rx.try_recv() {
            self.seen.push(item);
        }
    }

    /// What the nodes said about syncs between `from` and `to` (seconds since the
    /// epoch), in words: `zk3 DIFF, zk1 SNAP; followers synced` or `no sync seen`.
    fn syncs_between(&self, from: f64, to: f64) -> String {
        let mut syncing = Vec::new();
        let mut synced = false;
        for (node, line) in &self.seen {
            if line.at.is_some_and(|at| at < from || at > to) {
                continue;
            }
            if let Some(mode) = sync_mode(&line.text) {
                syncing.push(format!("zk{node} {mode}"));
            }
            synced |= line.text.contains("Have quorum of supporters");
        }
        match (syncing.is_empty(), synced) {
            (true, false) => "no follower had started to sync".to_owned(),
            (true, true) => "its followers had synced".to_owned(),
            (false, false) => format!("followers syncing: {}", syncing.join(", ")),
            (false, true) => format!("followers synced ({}), quorum acked", syncing.join(", ")),
        }
    }
}

/// The sync a follower's log line announces.
fn sync_mode(text: &str) -> Option<&'static str> {
    if text.contains("Getting a diff from the leader") {
        Some("DIFF")
    } else if text.contains("Getting a snapshot from leader") {
        Some("SNAP")
    } else if text.contains("Truncating log to get in sync with the leader") {
        Some("TRUNC")
    } else {
        None
    }
}

/// The leader a follower's log says it connected to last (`zk2/172.22.0.12:2888`).
fn leader_in_log(log: &str) -> Option<usize> {
    const CONNECTED: &str = "Successfully connected to leader, using address: zk";
    log.lines().rev().find_map(|line| {
        let rest = &line[line.find(CONNECTED)? + CONNECTED.len()..];
        rest.split(['/', ':']).next()?.parse().ok()
    })
}

/// What a fault has done so far: the words and the nodes down, in order.
#[derive(Default)]
struct Strike {
    steps: Vec<String>,
    killed: Vec<usize>,
    down: Vec<usize>,
}

impl Strike {
    fn went_down(&mut self, node: usize) {
        if !self.killed.contains(&node) {
            self.killed.push(node);
        }
        self.down.retain(|&n| n != node);
        self.down.push(node);
    }

    fn came_back(&mut self, node: usize) {
        self.down.retain(|&n| n != node);
    }

    fn done(self, hit: bool) -> WindowStrike {
        WindowStrike { steps: self.steps, killed: self.killed, down: self.down, hit }
    }
}

impl Cluster {
    /// Carries out a weak-window fault. `follower` is the follower a
    /// syncing-follower-kill was drawn to hit (another one is taken if it leads
    /// by now); `pick` fixes the drawn delays. On an error, every node it killed
    /// is started again before the error is returned.
    pub async fn strike_window(
        &self,
        window: &Window,
        follower: Option<usize>,
        pick: u64,
    ) -> Result<WindowStrike, ClusterError> {
        if self.spec.nodes < 3 {
            return Err(ClusterError::InvalidSpec(format!(
                "a window fault needs at least 3 nodes (this ensemble has {})",
                self.spec.nodes
            )));
        }
        let mut strike = Strike::default();
        let result = match *window {
            Window::NewLeader { within } => {
                self.kill_new_leaders(1, within, pick, false, &mut strike).await
            }
            Window::SyncingFollower { stale, within } => {
                self.syncing_follower_kill(follower, stale, within, pick, &mut strike).await
            }
            Window::Churn { rounds, within } => {
                self.kill_new_leaders(rounds, within, pick, true, &mut strike).await
            }
        };
        match result {
            Ok(hit) => Ok(strike.done(hit)),
            Err(err) => {
                for &node in &strike.down {
                    if let Err(start) = self.start(node).await {
                        tracing::warn!("starting zk{node} after a failed window fault: {start}");
                    }
                }
                Err(err)
            }
        }
    }

    /// Starts `down` again in that order: all but the last at once, then the last
    /// once a quorum serves (or a minute ran out, which is said).
    pub async fn bring_back(&self, down: &[usize]) -> Result<BroughtBack, ClusterError> {
        let Some((&last, first)) = down.split_last() else {
            return Ok(BroughtBack { first: Vec::new(), waited: String::new(), last: None });
        };
        let mut started = Vec::new();
        for &node in first {
            started.push(self.start(node).await?);
        }
        let waited = if first.is_empty() {
            String::new()
        } else {
            let t0 = Instant::now();
            match self.wait_for_quorum(BRING_BACK_WAIT).await {
                Ok(()) => format!("a quorum served after {:.1} s", t0.elapsed().as_secs_f64()),
                Err(_) => format!("no quorum within {BRING_BACK_WAIT:?}"),
            }
        };
        let last = self.start(last).await?;
        Ok(BroughtBack { first: started, waited, last: Some(last) })
    }

    /// The leader now, waiting up to [`LEADER_WAIT`] for there to be one.
    async fn leader_for_window(&self) -> Result<usize, ClusterError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if let Some(leader) = self.leader().await? {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    waited_for: format!("a leader to aim at ({LEADER_WAIT:?})"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn kill_node(&self, node: usize) -> Result<ContainerChange, ClusterError> {
        self.container_target(Member::Node(node))?.run(ContainerVerb::Kill).await
    }

    /// new-leader-kill (one round, both leaders left down) and leader-churn
    /// (`rounds` rounds, each starting the leader killed in the round before, so
    /// that a quorum can form and elect the next one): the leader, then each
    /// newly elected one, a drawn delay up to `within` after its election.
    async fn kill_new_leaders(
        &self,
        rounds: u32,
        within: Duration,
        pick: u64,
        churn: bool,
        strike: &mut Strike,
    ) -> Result<bool, ClusterError> {
        let first = self.leader_for_window().await?;
        let mut watch = LogWatch::new();
        let since = unix_now();
        for node in self.node_ids().into_iter().filter(|&n| n != first) {
            watch.follow(self, node, since).await?;
        }
        self.kill_node(first).await?;
        strike.went_down(first);
        strike.steps.push(format!("killed the leader zk{first}"));
        let mut previous = first;
        let mut after = unix_now();
        for round in 1..=u64::from(rounds) {
            let label = if churn { format!("round {round}: ") } else { String::new() };
            let deadline = Instant::now() + WINDOW_WAIT;
            let Some((new, line)) =
                watch.next(after, deadline, |text| text.contains(ELECTED)).await
            else {
                strike
                    .steps
                    .push(format!("{label}no new leader was elected within {WINDOW_WAIT:?}"));
                return Ok(false);
            };
            let elected = line.at.unwrap_or(after);
            tokio::time::sleep(drawn_delay(pick, round - 1, within)).await;
            self.kill_node(new).await?;
            strike.went_down(new);
            let at = unix_now();
            watch.drain();
            strike.steps.push(format!(
                "{label}killed zk{new} {:.0} ms after its election ({})",
                (at - elected) * 1000.0,
                watch.syncs_between(elected, at)
            ));
            if churn {
                // The one before comes back (stale by the reign it missed).
                let since = unix_now();
                self.start(previous).await?;
                strike.came_back(previous);
                watch.follow(self, previous, since).await?;
                previous = new;
            }
            after = at;
        }
        if churn {
            strike.steps.push(format!("zk{previous} stays down"));
        }
        Ok(true)
    }

    /// syncing-follower-kill: a stale follower killed as it adopts a new leader's
    /// epoch, then that leader.
    async fn syncing_follower_kill(
        &self,
        follower: Option<usize>,
        stale: Duration,
        within: Duration,
        pick: u64,
        strike: &mut Strike,
    ) -> Result<bool, ClusterError> {
        let leader = self.leader_for_window().await?;
        let followers: Vec<usize> = self.node_ids().into_iter().filter(|&n| n != leader).collect();
        let follower = match follower.filter(|f| followers.contains(f)) {
            Some(f) => f,
            None => followers[(pick % followers.len() as u64) as usize],
        };
        self.kill_node(follower).await?;
        strike.went_down(follower);
        strike.steps.push(format!(
            "killed the follower zk{follower} for {} while the others went on",
            humantime::format_duration(stale)
        ));
        tokio::time::sleep(stale).await;
        // The leader goes first, so the follower's sync is with a new leader in a
        // new epoch (a follower rejoining the same leader keeps its epoch).
        self.kill_node(leader).await?;
        strike.went_down(leader);
        let since = unix_now();
        self.start(follower).await?;
        strike.came_back(follower);
        strike.steps.push(format!("killed the leader zk{leader} and started zk{follower}"));
        let delay = drawn_delay(pick, 0, within);
        let Whereabouts { docker, container, .. } =
            self.whereabouts(Member::Node(follower)).await?;
        let delay_ms = delay.as_millis().to_string();
        let timeout_s = TRIPWIRE_TIMEOUT_S.to_string();
        let command = ["perl", "-e", TRIPWIRE, &delay_ms, &timeout_s];
        let tripwire = docker.exec(&container, &command);
        let out = match tokio::time::timeout(WINDOW_WAIT + Duration::from_secs(10), tripwire).await
        {
            Ok(out) => out?,
            Err(_) => {
                strike.steps.push(format!("the tripwire in zk{follower} never answered"));
                return Ok(false);
            }
        };
        let said = out.output.trim().to_owned();
        match out.exit_code {
            0 => {}
            4 => {
                return Err(ClusterError::Unsupported(format!(
                    "zk{follower} runs java as its container's first process, which cannot be \
                     killed from inside: the cluster was started by an older zkmq (start a new one)"
                )))
            }
            6 => {
                strike.steps.push(format!(
                    "zk{follower} was elected leader itself (no backlog to be behind on): not killed"
                ));
                return Ok(false);
            }
            127 => {
                return Err(ClusterError::MissingTool {
                    tool: format!("perl inside {container}"),
                    install:
                        "use the zkmq images (`zkmq cluster images`), whose Debian root has perl"
                            .to_owned(),
                })
            }
            _ => {
                strike.steps.push(format!(
                    "zk{follower} adopted no new epoch within {WINDOW_WAIT:?} ({said})"
                ));
                return Ok(false);
            }
        }
        strike.went_down(follower);
        let epochs: Vec<&str> = said.split_whitespace().skip(1).collect();
        // Once its container has stopped, its log of this start is whole.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), docker.wait_container(&container)).await;
        let told = docker.logs_since(&container, since).await.unwrap_or_default();
        let mode = told.iter().rev().find_map(|line| sync_mode(&line.text)).unwrap_or("unlogged");
        let texts: Vec<&str> = told.iter().map(|line| line.text.as_str()).collect();
        let new_leader = leader_in_log(&texts.join("\n"));
        strike.steps.push(format!(
            "killed zk{follower} from inside {} ms after it adopted epoch {} (was {}) in its {mode} sync{}",
            delay.as_millis(),
            epochs.get(1).copied().unwrap_or("?"),
            epochs.first().copied().filter(|e| !e.is_empty()).unwrap_or("none"),
            new_leader.map(|n| format!(" with zk{n}")).unwrap_or_default()
        ));
        // The new leader holds every committed write: with it gone, the next
        // election is between the follower's newer epoch and the others' longer logs.
        let new_leader = match new_leader {
            Some(n) => Some(n),
            None => self.serving_leader(&strike.down).await,
        };
        match new_leader {
            Some(node) if !strike.down.contains(&node) => {
                self.kill_node(node).await?;
                strike.went_down(node);
                strike.steps.push(format!("killed the new leader zk{node}"));
            }
            _ => strike.steps.push("found no new leader to kill".to_owned()),
        }
        Ok(true)
    }

    /// A node that leads now among those not in `down`, by `srvr`.
    async fn serving_leader(&self, down: &[usize]) -> Option<usize> {
        let statuses = self.status().await.ok()?;
        let down: BTreeSet<usize> = down.iter().copied().collect();
        statuses
            .into_iter()
            .find(|s| s.mode == NodeMode::Leader && !down.contains(&s.node))
            .map(|s| s.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_delays_are_fixed_by_the_pick_and_stay_within_bounds() {
        let within = Duration::from_millis(200);
        let a: Vec<Duration> = (0..50).map(|k| drawn_delay(7, k, within)).collect();
        let b: Vec<Duration> = (0..50).map(|k| drawn_delay(7, k, within)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|d| *d <= within));
        let distinct: BTreeSet<Duration> = a.iter().copied().collect();
        assert!(distinct.len() > 40, "{distinct:?}");
        assert_ne!(drawn_delay(8, 0, within), drawn_delay(7, 0, within));
        assert_eq!(drawn_delay(7, 3, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_logs_name_the_sync_and_the_leader() {
        let log = "\
14:33:56.201 [LeaderConnector-zk3/172.22.0.13:2888] INFO o.a.z.s.q.Learner - Successfully connected to leader, using address: zk3/172.22.0.13:2888
14:33:56.249 [QuorumPeer[myid=1]] INFO o.a.z.s.q.Learner - Getting a diff from the leader 0x200000538
";
        assert_eq!(leader_in_log(log), Some(3));
        assert_eq!(log.lines().find_map(sync_mode), Some("DIFF"));
        assert_eq!(
            sync_mode("WARN o.a.z.s.q.Learner - Truncating log to get in sync with the leader 0x1"),
            Some("TRUNC")
        );
        assert_eq!(
            sync_mode("INFO o.a.z.s.q.Learner - Getting a snapshot from leader 0x2"),
            Some("SNAP")
        );
        assert_eq!(leader_in_log("nothing here"), None);
    }
}
