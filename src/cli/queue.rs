//! `zkmq queue ...`

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use zkmq::queue::{self, Access, Algorithm, Consumer, Producer, QueueConfig, QueueError};

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
    /// With --rest: keep to ZooKeeper's v1 REST interface (the claim protocol, a
    /// replicated write per step of each message) even where the gateway offers
    /// zkmq's multi extension; what a client of the contrib gateway gets
    #[arg(long, requires = "rest")]
    pub rest_v1: bool,
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
    /// Refuse to send when this many messages wait: every waiting message costs
    /// heap on every server (README: depth and heap)
    #[arg(long, default_value_t = queue::DEFAULT_MAX_DEPTH,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_depth: u64,
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
            max_depth: self.max_depth,
            rest_multi: !self.rest_v1,
            ..QueueConfig::default()
        }
    }
}

/// Messages per `send_batch` of `zkmq queue send`.
const SEND_CHUNK: usize = 64;

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Send messages (one per argument, or one per line of stdin with `-`); prints
    /// their ids. Over the binary protocol every 64 messages go in two transactions
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
        /// Take up to this many per transaction, each acknowledged in the next one
        /// (binary protocol; REST takes one at a time). Without --ack, one batch is
        /// taken and held until this process's session ends
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        batch: u16,
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
            let mut failed = 0;
            let mut sent_or_tried = 0;
            // A full queue or an ensemble that cannot be reached refuses the rest
            // too: stop there rather than meet the same error for every chunk.
            let mut stopped_by = None;
            for chunk in payloads.chunks(SEND_CHUNK) {
                let batch: Vec<_> = chunk
                    .iter()
                    .map(|payload| (zkmq::queue::MessageId::generate(), payload.as_bytes()))
                    .collect();
                for ((id, _), result) in batch.iter().zip(producer.send_batch(&batch).await) {
                    match result {
                        Ok(()) => println!("{id}"),
                        Err(err) => {
                            failed += 1;
                            eprintln!("{id}: {err}");
                            if matches!(
                                err,
                                QueueError::QueueFull { .. } | QueueError::Connect { .. }
                            ) {
                                stopped_by.get_or_insert(err);
                            }
                        }
                    }
                }
                sent_or_tried += chunk.len();
                if stopped_by.is_some() {
                    break;
                }
            }
            producer.close().await;
            let unsent = payloads.len() - sent_or_tried;
            if let Some(err) = stopped_by {
                anyhow::bail!(
                    "{} of {} messages were not (or not surely) sent, {unsent} of them not \
                     tried: {err}",
                    failed + unsent,
                    payloads.len()
                );
            }
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} messages were not (or not surely) sent",
                    payloads.len()
                );
            }
            Ok(0)
        }
        QueueCommand::Take { target, ack, count, batch, timeout } => {
            let batch = usize::from(batch);
            if !ack && count > batch {
                anyhow::bail!(
                    "--count {count} needs --ack: without it a consumer takes one batch \
                     (--batch {batch}) and holds it"
                );
            }
            let mut consumer = Consumer::register(target.access().await?, target.config()).await?;
            let mut taken = 0;
            let mut held = Vec::new();
            while taken < count {
                let want = batch.min(count - taken);
                let next = if batch == 1 {
                    consumer.take(timeout).await?.into_iter().collect()
                } else {
                    // The acks of the batch printed last ride in this take.
                    let (acks, next) = consumer.ack_and_take_batch(&held, want, timeout).await;
                    for result in acks {
                        result.context("acknowledging")?;
                    }
                    held.clear();
                    next?
                };
                if next.is_empty() {
                    eprintln!("no message within {timeout:?} ({taken} of {count} taken)");
                    break;
                }
                for delivery in &next {
                    println!("{}\t{}", delivery.id, String::from_utf8_lossy(&delivery.payload));
                }
                taken += next.len();
                if !ack {
                    continue;
                }
                if batch == 1 {
                    for delivery in &next {
                        consumer.ack(delivery).await.context("acknowledging")?;
                    }
                } else {
                    held = next;
                }
            }
            for delivery in &held {
                consumer.ack(delivery).await.context("acknowledging")?;
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
