//! `zkmq cluster ...`: parse, then one call into `zkmq::cluster`.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rand::Rng;
use zkmq::cluster::fault::{ClockOffset, Member, Verb, Window};
use zkmq::cluster::{
    self, current_run_id, down_all, down_run, ensure_images, fail_loop, forget_current_run,
    remember_current_run, BackendKind, Cluster, ClusterSpec, FailOptions, HostsSpec, NodeMode,
    ReapPolicy, SwarmSpec, SUPPORTED_VERSIONS,
};

use super::{EXIT_HARNESS_ERROR, EXIT_OK};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Build the ZooKeeper images from Debian packages (skips tags that exist)
    ///
    /// zkmq/zookeeper:3.8.0 comes from Debian bookworm, 3.9.3 from trixie, 3.9.6
    /// from forky (testing): a debootstrap root with a headless JRE,
    /// libzookeeper-java, iptables and iproute2 (recipe: cluster/build-rootfs.sh),
    /// imported into Docker. Needs root and debootstrap; `cluster up` builds a
    /// missing image by itself.
    Images {
        /// Rebuild even if the tag exists
        #[arg(long)]
        force: bool,
        /// Only these versions (default: all we can build)
        #[arg(long = "zk-version", value_name = "VERSION")]
        versions: Vec<String>,
    },
    /// Start an ensemble and wait until every node serves
    ///
    /// Remembers the run id as the current cluster, so the other commands need no
    /// --run. Ctrl-C while starting removes everything started so far.
    ///
    /// With --backend swarm, each member is a Docker Swarm service pinned to one
    /// host (round robin, manager first), and node faults go through the engine of
    /// the member's host.
    ///
    /// Examples:
    ///   zkmq cluster up                             5 nodes and the gateway, here
    ///   zkmq cluster hosts up --count 3             simulate 3 swarm hosts here
    ///   zkmq cluster up --backend swarm             5 members over them
    ///   zkmq cluster up --backend swarm --swarm-host tcp://a:2375 --swarm-host tcp://b:2375
    ///
    /// Exit codes: 0 up, 2 failed (everything started is removed).
    #[command(verbatim_doc_comment)]
    Up(UpArgs),
    /// Simulate swarm hosts on this machine (Docker in Docker), for --backend swarm
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Show each node: container state, role (srvr), address, host, version
    Status {
        #[command(flatten)]
        run: RunArg,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// List the zkmq runs on this Docker daemon (the current one marked `*`, runs
    /// whose owning process is gone marked STALE)
    List,
    /// Remove every container, volume and network of a run (by label)
    Down {
        #[command(flatten)]
        run: RunArg,
        /// Every zkmq run on this Docker daemon, including other people's
        #[arg(long, conflicts_with_all = ["run_id", "stale"])]
        all: bool,
        /// Every run whose owner (the chaos run that started it) is gone: what a
        /// killed run left if its reaper could not remove it
        #[arg(long, conflicts_with = "run_id")]
        stale: bool,
    },
    /// Print a node's log (`rest` for the gateway)
    Logs {
        /// Node id (1..N) or `rest`
        node: String,
        /// Only the last N lines
        #[arg(long)]
        tail: Option<usize>,
        #[command(flatten)]
        run: RunArg,
    },
    /// SIGKILL a node (node id, `leader`, `random` or `rest`)
    Kill(TargetArgs),
    /// Stop a node gracefully (SIGTERM)
    Stop(TargetArgs),
    /// Start a stopped node
    Start(TargetArgs),
    /// Stop then start a node
    Restart(TargetArgs),
    /// Freeze a node's processes
    Pause(TargetArgs),
    /// Thaw a paused node
    Unpause(TargetArgs),
    /// Stop a node, clear its data directory (keeping myid), start it: it resyncs
    Wipe(TargetArgs),
    /// Replace a node's container with another ZooKeeper version, same data
    Upgrade {
        #[command(flatten)]
        target: TargetArgs,
        /// Version to run (3.8.0, 3.9.3 or 3.9.6)
        #[arg(long)]
        to: String,
    },
    /// Cut the network between groups of nodes, e.g. `partition 1,2 3,4,5`
    ///
    /// A group is a comma-separated list of node ids (or `leader`); two nodes talk
    /// iff some group holds both, and nodes in no group form one more group.
    /// Groups may overlap: `partition 1,2,3 3,4,5` makes zk3 a bridge.
    /// `partition leader` isolates the leader. Replaces any earlier partition;
    /// clients on the host still reach every node.
    Partition {
        /// Groups of nodes
        #[arg(required = true)]
        groups: Vec<String>,
        #[command(flatten)]
        run: RunArg,
    },
    /// Remove every partition, loss, delay and bandwidth limit
    Heal {
        #[command(flatten)]
        run: RunArg,
    },
    /// Drop a share of the packets a node sends (iptables statistic; 0 removes)
    Loss {
        #[command(flatten)]
        target: TargetArgs,
        /// Percent of packets dropped
        percent: u32,
    },
    /// Limit a node's outgoing bandwidth (tc tbf; 0 removes)
    Slow {
        #[command(flatten)]
        target: TargetArgs,
        /// kbit per second
        kbit: u32,
    },
    /// Delay a node's outgoing packets (tc netem, where the kernel has it; 0 removes)
    Delay {
        #[command(flatten)]
        target: TargetArgs,
        /// e.g. 200ms
        #[arg(value_parser = humantime::parse_duration)]
        delay: Duration,
    },
    /// Fill a node's size-limited data volume (a cluster up with --data-limit)
    ///
    /// ZooKeeper's next write to its transaction log then fails. `disk-free`
    /// removes the fill and starts the node if ZooKeeper stopped.
    DiskFull(TargetArgs),
    /// Remove a disk-full fill; start the node if ZooKeeper stopped on it
    DiskFree(TargetArgs),
    /// Step a node's wall clock (a cluster up with --clock-faults), e.g. `clock-skew 2 -- -2m`
    ///
    /// Only the JVM's CLOCK_REALTIME moves (a preloaded shim); its monotonic clock,
    /// by which ZooKeeper times sessions out, stays true. `+0s` puts it right; a
    /// restart of the node does too.
    ClockSkew {
        #[command(flatten)]
        target: TargetArgs,
        /// e.g. -2m, +90s (write `--` before a negative offset)
        #[arg(allow_hyphen_values = true)]
        offset: ClockOffset,
    },
    /// Kill the leader, then the newly elected one soon after its election
    ///
    /// Waits for the election in the nodes' logs (`LEADING - LEADER ELECTION
    /// TOOK`) and kills the new leader a random delay up to --within later,
    /// while its followers sync. The killed nodes stay down until
    /// `zkmq cluster start`.
    NewLeaderKill {
        /// The kill comes a random delay up to this after the election
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        within: Duration,
        #[command(flatten)]
        run: RunArg,
    },
    /// Kill a follower the moment it adopts a new leader's epoch in its sync
    ///
    /// Keeps a follower down for --stale, kills the leader, starts the follower
    /// and kills it from inside its container when its currentEpoch file
    /// changes (ZOOKEEPER-4643's window on 3.8.0), then kills the new leader.
    /// Bring them back with `zkmq cluster start` in the printed order.
    SyncingFollowerKill {
        /// Node id of the follower (default: one drawn at random)
        #[arg(long)]
        follower: Option<usize>,
        /// How long the follower stays down first, falling behind (the others
        /// must be taking writes meanwhile, or it has nothing to sync)
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        stale: Duration,
        /// The kill comes a random delay up to this after the epoch is written
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        within: Duration,
        #[command(flatten)]
        run: RunArg,
    },
    /// Kill each newly elected leader soon after its election, again and again
    LeaderChurn {
        /// How many newly elected leaders are killed
        #[arg(long, default_value_t = 4)]
        rounds: u32,
        /// Each kill comes a random delay up to this after the election
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        within: Duration,
        #[command(flatten)]
        run: RunArg,
    },
    /// Kill and restart nodes in a loop (the old fail.py); Ctrl-C restores
    Fail {
        /// Always kill the leader
        #[arg(long)]
        leader: bool,
        /// Wait after each kill and after each rejoin
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after this long
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[command(flatten)]
        run: RunArg,
    },
    /// Remove a run once a process exits (chaos runs, `cluster up` and the test
    /// fixtures start this)
    #[command(hide = true)]
    Reap {
        #[arg(long = "run")]
        run_id: String,
        #[arg(long)]
        pid: u32,
        /// Spare the run if it became the current cluster (`cluster up` succeeded)
        #[arg(long)]
        unless_current: bool,
        /// The run is on the swarm of these engines (default: the default swarm)
        #[arg(long = "swarm-host", value_name = "ENDPOINT")]
        swarm_hosts: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum HostsCommand {
    /// Start simulated hosts and join them into a swarm (the first is the manager)
    ///
    /// Each host is a container on this machine's engine running its own Docker
    /// engine (image zkmq/swarm-host:bookworm, built from Debian's docker.io on
    /// first use, like the ZooKeeper images). Each publishes on 127.0.0.1 its
    /// engine's API and --ports ports for its members. The hosts become the default
    /// swarm of `cluster up --backend swarm` and of scenarios with backend = "swarm"
    /// and no [cluster.swarm] hosts; they stay until `hosts down`.
    ///
    /// Their engines' APIs are unauthenticated (on 127.0.0.1 only): any local user
    /// can drive them. Use on a machine of your own or in CI.
    ///
    /// Examples:
    ///   zkmq cluster hosts up --count 3     then: zkmq cluster up --backend swarm
    ///   zkmq cluster hosts up --count 5 --ports 16 --run big
    ///
    /// Exit codes: 0 up, 2 failed (everything started is removed).
    #[command(verbatim_doc_comment)]
    Up {
        /// How many hosts
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// Ports each host lends its members (one docker-proxy each on this machine)
        #[arg(long, default_value_t = 8)]
        ports: u16,
        /// Run id of the set of hosts (default: hosts-<random>)
        #[arg(long = "run")]
        run_id: Option<String>,
    },
    /// Remove simulated hosts, and everything running inside them
    Down {
        /// The set to remove (default: the current one)
        #[arg(long = "run")]
        run_id: Option<String>,
    },
    /// List the simulated hosts on this machine (the current set marked `*`)
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct UpArgs {
    /// Ensemble size: 1, 3, 5 or 7
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// ZooKeeper version of our images: 3.8.0, 3.9.3 or 3.9.6
    #[arg(long, default_value = "3.8.0")]
    zk_version: String,
    /// Run another image instead, e.g. the official zookeeper:3.9 (pull it first)
    #[arg(long)]
    image: Option<String>,
    /// Leave out the REST gateway container (by default it runs next to the
    /// ensemble: this zkmq binary, mounted into the cluster image)
    #[arg(long)]
    no_rest: bool,
    /// Run id (default: dev-<random>)
    #[arg(long = "run")]
    run_id: Option<String>,
    /// ZooKeeper tickTime
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    tick_time: Duration,
    /// Java heap of each ZooKeeper node (-Xmx), e.g. 256m or 1g: every waiting
    /// message costs heap on every node (README: sizing the heap)
    #[arg(long, default_value_t = cluster::DEFAULT_HEAP_MB, value_parser = cluster::parse_heap_mb)]
    heap: u32,
    /// Give up (and remove everything) if no quorum serves by then
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Where the members run: local (containers on this engine, or DOCKER_HOST's)
    /// or swarm (services spread over the hosts of a Docker Swarm)
    #[arg(long, default_value = "local")]
    backend: BackendKind,
    /// An engine of the swarm (unix:// or tcp://), a manager first; repeat for
    /// each host. Default: ZKMQ_SWARM_HOSTS, else the hosts of `cluster hosts up`
    #[arg(long = "swarm-host", value_name = "ENDPOINT", requires = "backend")]
    swarm_hosts: Vec<String>,
    /// Put each node's data on a RAM-backed volume of this size (e.g. 256m), so
    /// that `disk-full` can fill it
    #[arg(long, value_parser = cluster::parse_data_limit_mb)]
    data_limit: Option<u32>,
    /// Preload the clock shim into every node's JVM, so that `clock-skew` can step
    /// its wall clock
    #[arg(long)]
    clock_faults: bool,
}

#[derive(Args)]
pub struct RunArg {
    /// Run id (default: the current cluster, the last one `cluster up` started)
    #[arg(long = "run")]
    run_id: Option<String>,
}

#[derive(Args)]
pub struct TargetArgs {
    /// Node id (1..N), `leader`, `random`, or `rest` (the gateway)
    target: String,
    #[command(flatten)]
    run: RunArg,
}

fn resolve_run(run: &RunArg) -> anyhow::Result<String> {
    match &run.run_id {
        Some(id) => Ok(id.clone()),
        None => current_run_id().with_context(|| {
            format!(
                "no current cluster ({} is empty); start one with `zkmq cluster up` or pass --run ID",
                cluster::state_file().display()
            )
        }),
    }
}

async fn attach(run: &RunArg) -> anyhow::Result<Cluster> {
    let run_id = resolve_run(run)?;
    Ok(Cluster::attach(&run_id).await?)
}

async fn resolve_target(cluster: &Cluster, target: &str) -> anyhow::Result<Member> {
    Ok(match target {
        "rest" => Member::Gateway,
        "leader" => match cluster.leader().await? {
            Some(node) => Member::Node(node),
            None => bail!("no node is leader right now (`zkmq cluster status` shows why)"),
        },
        "random" => Member::Node(rand::rng().random_range(1..=cluster.spec().nodes)),
        number => Member::Node(number.parse().with_context(|| {
            format!(
                "{number:?} is not a node: use 1..={}, leader, random or rest",
                cluster.spec().nodes
            )
        })?),
    })
}

fn print_line(line: &str) {
    eprintln!("{line}");
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<u8> {
    match command {
        ClusterCommand::Images { force, versions } => images(force, &versions).await?,
        ClusterCommand::Up(args) => return up(args).await,
        ClusterCommand::Hosts(command) => return hosts(command).await,
        ClusterCommand::Status { run, json } => status(&run, json).await?,
        ClusterCommand::List => list().await?,
        ClusterCommand::Down { run, all, stale } => down(&run, all, stale).await?,
        ClusterCommand::Logs { node, tail, run } => logs(&node, tail, &run).await?,
        ClusterCommand::Kill(t) => inflict(&t, Verb::Kill).await?,
        ClusterCommand::Stop(t) => inflict(&t, Verb::Stop).await?,
        ClusterCommand::Start(t) => inflict(&t, Verb::Start).await?,
        ClusterCommand::Restart(t) => inflict(&t, Verb::Restart).await?,
        ClusterCommand::Pause(t) => inflict(&t, Verb::Pause).await?,
        ClusterCommand::Unpause(t) => inflict(&t, Verb::Unpause).await?,
        ClusterCommand::Wipe(t) => inflict(&t, Verb::Wipe).await?,
        ClusterCommand::Upgrade { target, to } => {
            inflict(&target, Verb::Upgrade { to_version: to }).await?
        }
        ClusterCommand::Loss { target, percent } => {
            inflict(&target, Verb::Loss { percent }).await?
        }
        ClusterCommand::Slow { target, kbit } => inflict(&target, Verb::Slow { kbit }).await?,
        ClusterCommand::Delay { target, delay } => inflict(&target, Verb::Delay { delay }).await?,
        ClusterCommand::DiskFull(t) => inflict(&t, Verb::DiskFill).await?,
        ClusterCommand::DiskFree(t) => inflict(&t, Verb::DiskFree).await?,
        ClusterCommand::ClockSkew { target, offset } => {
            inflict(&target, Verb::ClockSkew { offset }).await?
        }
        ClusterCommand::NewLeaderKill { within, run } => {
            strike(&run, Window::NewLeader { within }, None).await?
        }
        ClusterCommand::SyncingFollowerKill { follower, stale, within, run } => {
            strike(&run, Window::SyncingFollower { stale, within }, follower).await?
        }
        ClusterCommand::LeaderChurn { rounds, within, run } => {
            strike(&run, Window::Churn { rounds, within }, None).await?
        }
        ClusterCommand::Partition { groups, run } => partition(&groups, &run).await?,
        ClusterCommand::Heal { run } => {
            let cluster = attach(&run).await?;
            println!("{}", cluster.heal().await?);
        }
        ClusterCommand::Fail { leader, interval, duration, run } => {
            let cluster = attach(&run).await?;
            let options =
                FailOptions { leader, interval, duration: Some(duration), ..Default::default() };
            let kills =
                fail_loop(&cluster, &options, interrupted(), &|line| println!("{line}")).await?;
            eprintln!("{kills} kill(s); every node was started again");
        }
        ClusterCommand::Reap { run_id, pid, unless_current, swarm_hosts } => {
            let policy =
                if unless_current { ReapPolicy::UnlessCurrent } else { ReapPolicy::Always };
            cluster::reap(&run_id, pid, policy, &swarm_hosts).await?;
        }
    }
    Ok(EXIT_OK)
}

async fn images(force: bool, versions: &[String]) -> anyhow::Result<()> {
    let versions: Vec<&str> = if versions.is_empty() {
        SUPPORTED_VERSIONS.iter().map(|(v, _, _)| *v).collect()
    } else {
        versions.iter().map(String::as_str).collect()
    };
    ensure_images(&versions, force, &print_line).await?;
    for version in versions {
        println!("{}", cluster::image_for_version(version));
    }
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<u8> {
    let run_id = args.run_id.unwrap_or_else(|| cluster::new_run_id("dev"));
    let mut spec = ClusterSpec::new(run_id.clone(), args.nodes);
    spec.zk_version = args.zk_version;
    spec.image = args.image;
    spec.rest = !args.no_rest;
    spec.tick_time_ms = u32::try_from(args.tick_time.as_millis()).context("--tick-time")?;
    spec.up_timeout = args.timeout;
    spec.heap_mb = args.heap;
    spec.backend = args.backend;
    spec.swarm = SwarmSpec { hosts: args.swarm_hosts };
    spec.data_limit_mb = args.data_limit;
    spec.clock_faults = args.clock_faults;
    // Killed before the cluster is up (and current), the reaper removes what
    // was started; once it is current, the reaper leaves it running.
    let binary = std::env::current_exe().context("finding the zkmq binary for the reaper")?;
    cluster::spawn_reaper(
        &binary,
        &run_id,
        std::process::id(),
        ReapPolicy::UnlessCurrent,
        &spec.swarm.hosts,
    )?;
    let started = std::time::Instant::now();
    let cluster = tokio::select! {
        result = Cluster::up(spec, &print_line) => result?,
        () = interrupted() => {
            // Dropping `up` removed whatever it had started.
            eprintln!("interrupted: removed everything run {run_id} had started");
            return Ok(EXIT_HARNESS_ERROR);
        }
    };
    remember_current_run(&run_id)?;
    eprintln!(
        "cluster {run_id} is up in {:.1} s (current cluster; `zkmq cluster down` removes it)",
        started.elapsed().as_secs_f64()
    );
    println!("{}", cluster.connect_string());
    if let Some(url) = cluster.rest_url() {
        println!("{url}");
    }
    Ok(EXIT_OK)
}

async fn hosts(command: HostsCommand) -> anyhow::Result<u8> {
    match command {
        HostsCommand::Up { count, ports, run_id } => {
            let run_id = run_id.unwrap_or_else(|| cluster::new_run_id("hosts"));
            let spec = HostsSpec { run_id: run_id.clone(), count, ports, owner: None };
            // As `cluster up`: killed before the hosts are up (and current), the
            // reaper removes them; once current, it leaves them running.
            let binary =
                std::env::current_exe().context("finding the zkmq binary for the reaper")?;
            let policy = ReapPolicy::UnlessCurrent;
            cluster::spawn_reaper(&binary, &run_id, std::process::id(), policy, &[])?;
            let hosts = tokio::select! {
                result = cluster::hosts_up(spec, &print_line) => result?,
                () = interrupted() => {
                    eprintln!("interrupted: removed every host of {run_id}");
                    return Ok(EXIT_HARNESS_ERROR);
                }
            };
            cluster::remember_current_hosts(&run_id)?;
            eprintln!(
                "hosts {run_id} are up (the default swarm; `zkmq cluster hosts down` removes them)"
            );
            println!("{}", hosts.endpoints().join(","));
        }
        HostsCommand::Down { run_id } => {
            let run_id = match run_id.or_else(cluster::current_hosts_id) {
                Some(run_id) => run_id,
                None => bail!(
                    "no current simulated hosts; name them with --run (`zkmq cluster hosts list`)"
                ),
            };
            let removed = cluster::hosts_down(&run_id).await?;
            cluster::forget_current_hosts(&run_id);
            eprintln!("removed {removed} objects of hosts {run_id}");
        }
        HostsCommand::List { json } => {
            let sets = cluster::list_hosts().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sets)?);
                return Ok(EXIT_OK);
            }
            let current = cluster::current_hosts_id();
            for set in &sets {
                let mark = if current.as_deref() == Some(set.run_id.as_str()) { "*" } else { " " };
                println!("{mark} {}", set.run_id);
                for host in &set.hosts {
                    println!(
                        "    {:<4} {:<10} {:<24} ports {}-{}",
                        host.name, host.state, host.endpoint, host.ports.0, host.ports.1
                    );
                }
            }
        }
    }
    Ok(EXIT_OK)
}

async fn status(run: &RunArg, json: bool) -> anyhow::Result<()> {
    let cluster = attach(run).await?;
    let statuses = cluster.status().await?;
    if json {
        let value = serde_json::json!({
            "run_id": cluster.run_id(),
            "connect_string": cluster.connect_string(),
            "rest_url": cluster.rest_url(),
            "nodes": statuses,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("cluster {} ({} backend)", cluster.run_id(), cluster.backend().name());
    println!(
        "{:<5} {:<10} {:<12} {:<21} {:<10} {:<8} image",
        "node", "container", "mode", "address", "host", "version"
    );
    for s in &statuses {
        println!(
            "zk{:<3} {:<10} {:<12} {:<21} {:<10} {:<8} {}",
            s.node,
            s.container,
            s.mode.to_string(),
            s.address,
            s.host,
            s.version,
            s.image
        );
    }
    println!("connect string: {}", cluster.connect_string());
    if let Some(url) = cluster.rest_url() {
        println!("REST gateway:   {url}");
    }
    let serving = statuses.iter().filter(|s| s.mode.is_serving()).count();
    if !statuses.iter().any(|s| s.mode == NodeMode::Leader || s.mode == NodeMode::Standalone) {
        println!("no leader: {serving} of {} nodes serve", statuses.len());
    }
    Ok(())
}

async fn list() -> anyhow::Result<()> {
    let current = current_run_id();
    let runs = cluster::list_runs().await?;
    for run in &runs {
        let mark = if current.as_deref() == Some(run.run_id.as_str()) { "*" } else { " " };
        let owner = match (&run.owner, run.owner_alive) {
            (Some(owner), Some(false)) => format!("  STALE: owner pid {} is gone", owner.pid),
            (Some(owner), _) => format!("  owned by pid {}", owner.pid),
            (None, _) => String::new(),
        };
        let what = if run.hosts > 0 {
            format!("{} simulated swarm host(s)", run.hosts)
        } else {
            format!(
                "{} ZooKeeper {}{}",
                run.zookeeper_containers,
                if run.swarm_hosts.is_empty() { "container(s)" } else { "service(s) on a swarm" },
                if run.rest { " + REST gateway" } else { "" }
            )
        };
        println!("{mark} {:<28} {what}{owner}", run.run_id);
    }
    if runs.iter().any(cluster::RunSummary::stale) {
        eprintln!(
            "stale runs: their owner died and left them; `zkmq cluster down --stale` removes them"
        );
    }
    Ok(())
}

async fn down(run: &RunArg, all: bool, stale: bool) -> anyhow::Result<()> {
    if all {
        let removed = down_all().await?;
        eprintln!("removed {removed} objects of every zkmq run");
    } else if stale {
        let removed = cluster::down_stale().await?;
        if removed.is_empty() {
            eprintln!("no stale run (every run's owner is alive, or it has none)");
        }
        for run_id in removed {
            forget_current_run(&run_id);
            eprintln!("removed stale run {run_id}");
        }
    } else {
        let run_id = resolve_run(run)?;
        let removed = down_run(&run_id).await?;
        forget_current_run(&run_id);
        eprintln!("removed {removed} objects of run {run_id}");
    }
    Ok(())
}

async fn logs(node: &str, tail: Option<usize>, run: &RunArg) -> anyhow::Result<()> {
    let cluster = attach(run).await?;
    let text = if node == "rest" {
        cluster.rest_logs(tail).await?
    } else {
        let node: usize = node.parse().context("node: a number or `rest`")?;
        cluster.logs(node, tail).await?
    };
    // `logs | head` closes the pipe early: not an error worth a panic
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(())
}

async fn partition(groups: &[String], run: &RunArg) -> anyhow::Result<()> {
    let cluster = attach(run).await?;
    let mut parsed = Vec::new();
    for group in groups {
        let mut nodes = Vec::new();
        for item in group.split(',').filter(|item| !item.is_empty()) {
            match resolve_target(&cluster, item).await? {
                Member::Node(node) => nodes.push(node),
                Member::Gateway => bail!("the REST gateway cannot be partitioned; name nodes"),
            }
        }
        parsed.push(nodes);
    }
    println!("{}", cluster.partition(&parsed).await?);
    Ok(())
}

/// One fault verb on one node or the gateway, worded as the cluster's outcome says.
/// A weak-window fault; prints what it did and the nodes it left down.
async fn strike(run: &RunArg, window: Window, follower: Option<usize>) -> anyhow::Result<()> {
    let cluster = attach(run).await?;
    let strike = cluster.strike_window(&window, follower, rand::rng().random()).await?;
    println!("{strike}");
    if !strike.down.is_empty() {
        let down: Vec<String> = strike.down.iter().map(|n| n.to_string()).collect();
        eprintln!(
            "down, in the order they went down: {} (start them in that order, the last once the others serve)",
            down.join(" ")
        );
    }
    Ok(())
}

async fn inflict(target: &TargetArgs, verb: Verb) -> anyhow::Result<()> {
    let cluster = attach(&target.run).await?;
    let member = resolve_target(&cluster, &target.target).await?;
    println!("{}", cluster.inflict(member, &verb).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::super::Cli::command().debug_assert();
    }
}
