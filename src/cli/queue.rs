//! `zkmq queue ...`

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use zkmq::queue::{self, Access, Algorithm, Consumer, Producer, QueueConfig};

/// Where the queue is and which algorithm runs: shared by every queue command.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// ZooKeeper connect string (host:port,host:port,...). Default: the cluster
    /// that `zkmq cluster up` started
    #[arg(long, env = "ZKMQ_CONNECT")]
    pub connect: Option<String>,
    /// Use ZooKeeper's REST interface at this URL instead of the binary protocol
    /// (e.g. http://127.0.0.1:9998)
    #[arg(long, env = "ZKMQ_REST")]
    pub rest: Option<String>,
    /// Path prefix of the queue, so one ensemble can hold many (e.g. /apps/orders)
    #[arg(long, default_value = "")]
    pub chroot: String,
    /// `safe`: no loss, no duplicate past ack. `legacy`: the UNSAFE 2011 algorithm,
    /// only for showing that the checker catches its bugs
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Safe)]
    pub algorithm: AlgorithmArg,
    /// Bound on every ZooKeeper call (e.g. 5s, 500ms)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub op_timeout: Duration,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum AlgorithmArg {
    Safe,
    Legacy,
}

impl Target {
    /// `--rest`, else `--connect`, else the current cluster's connect string.
    pub async fn access(&self) -> anyhow::Result<Access> {
        if let Some(url) = &self.rest {
            return Ok(Access::Rest { url: url.clone() });
        }
        if let Some(connect) = &self.connect {
            return Ok(Access::Native { connect: connect.clone() });
        }
        let run_id = zkmq::cluster::current_run_id().context(
            "no --connect given and no current cluster: start one with `zkmq cluster up` \
             or pass --connect host:port,...",
        )?;
        let cluster = zkmq::cluster::Cluster::attach(&run_id).await.with_context(|| {
            format!(
                "the current cluster {run_id} is not running: `zkmq cluster up`, or pass --connect"
            )
        })?;
        Ok(Access::Native { connect: cluster.connect_string() })
    }
    pub fn config(&self) -> QueueConfig {
        QueueConfig {
            chroot: self.chroot.clone(),
            algorithm: match self.algorithm {
                AlgorithmArg::Safe => Algorithm::Safe,
                AlgorithmArg::Legacy => Algorithm::Legacy,
            },
            op_timeout: self.op_timeout,
            ..QueueConfig::default()
        }
    }
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Send messages (one per argument, or one per line of stdin with `-`); prints their ids
    Send {
        #[command(flatten)]
        target: Target,
        /// The payloads; `-` reads one message per line from stdin
        #[arg(required = true)]
        messages: Vec<String>,
    },
    /// Take messages (printing "id<TAB>payload"); without --ack they go back to the
    /// queue when this process's session ends
    Take {
        #[command(flatten)]
        target: Target,
        /// Acknowledge each message after printing it (removes it for good)
        #[arg(long)]
        ack: bool,
        /// How many messages to take
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// How long to wait for each message before giving up
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
        timeout: Duration,
    },
    /// Show how many messages wait, sit in partial, are in flight, and how many consumers live
    Stat {
        #[command(flatten)]
        target: Target,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Run one recovery pass: take back dead consumers' messages, roll back stale
    /// claims, remove old empty orphans
    Recover {
        #[command(flatten)]
        target: Target,
    },
}

pub async fn run(command: QueueCommand) -> anyhow::Result<u8> {
    match command {
        QueueCommand::Send { target, messages } => {
            let mut producer = Producer::new(target.access().await?, target.config()).await?;
            let mut payloads = Vec::new();
            for message in messages {
                if message == "-" {
                    for line in std::io::stdin().lines() {
                        payloads.push(line.context("reading stdin")?);
                    }
                } else {
                    payloads.push(message);
                }
            }
            for payload in payloads {
                let id = producer.send(payload.as_bytes()).await?;
                println!("{id}");
            }
            producer.close().await;
            Ok(0)
        }
        QueueCommand::Take { target, ack, count, timeout } => {
            let mut consumer = Consumer::register(target.access().await?, target.config()).await?;
            let mut taken = 0;
            while taken < count {
                let Some(delivery) = consumer.take(timeout).await? else {
                    eprintln!("no message within {timeout:?} ({taken} of {count} taken)");
                    break;
                };
                println!("{}\t{}", delivery.id, String::from_utf8_lossy(&delivery.payload));
                if ack {
                    consumer.ack(&delivery).await?;
                } else if count > 1 {
                    anyhow::bail!(
                        "--count above 1 needs --ack: a consumer holds one message at a time"
                    );
                }
                taken += 1;
            }
            consumer.close().await;
            Ok(if taken == count { 0 } else { 1 })
        }
        QueueCommand::Stat { target, json } => {
            let config = target.config();
            let store = queue::connect(&target.access().await?, &config).await?;
            let stats = queue::stats(store.as_ref(), &config).await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!(
                    "messages {}  partial {}  in flight {}  consumers {}",
                    stats.messages, stats.partial, stats.in_flight, stats.consumers
                );
            }
            Ok(0)
        }
        QueueCommand::Recover { target } => {
            let config = target.config();
            let store = queue::connect(&target.access().await?, &config).await?;
            let report = queue::recover(store.as_ref(), &config).await?;
            store.close().await;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(0)
        }
    }
}
