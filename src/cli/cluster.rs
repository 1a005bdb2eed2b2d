//! `zkmq cluster ...`: parse, then one call into `zkmq::cluster`.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rand::Rng;
use zkmq::cluster::fault::{Member, Verb};
use zkmq::cluster::{
    self, current_run_id, down_all, down_run, ensure_images, fail_loop, forget_current_run,
    remember_current_run, Cluster, ClusterSpec, FailOptions, NodeMode, ReapPolicy,
    SUPPORTED_VERSIONS,
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
    Up(UpArgs),
    /// Show each node: container state, role (srvr), address, version
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
        ClusterCommand::Reap { run_id, pid, unless_current } => {
            let policy =
                if unless_current { ReapPolicy::UnlessCurrent } else { ReapPolicy::Always };
            cluster::reap(&run_id, pid, policy).await?;
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
    // Killed before the cluster is up (and current), the reaper removes what
    // was started; once it is current, the reaper leaves it running.
    let binary = std::env::current_exe().context("finding the zkmq binary for the reaper")?;
    cluster::spawn_reaper(&binary, &run_id, std::process::id(), ReapPolicy::UnlessCurrent)?;
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
    println!("cluster {}", cluster.run_id());
    println!(
        "{:<5} {:<10} {:<12} {:<17} {:<8} image",
        "node", "container", "mode", "address", "version"
    );
    for s in &statuses {
        println!(
            "zk{:<3} {:<10} {:<12} {:<17} {:<8} {}",
            s.node,
            s.container,
            s.mode.to_string(),
            s.address,
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
        println!(
            "{mark} {:<28} {} ZooKeeper container(s){}{owner}",
            run.run_id,
            run.zookeeper_containers,
            if run.rest { " + REST gateway" } else { "" }
        );
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
