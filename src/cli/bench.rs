//! `zkmq bench ...`

use std::time::Duration;

use clap::Subcommand;
use zkmq::bench::{bench_queue, QueueBenchConfig};

use super::queue::Target;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// End-to-end messages per second (produce + take + ack) and latency percentiles,
    /// plus the raw bound: pipelined sequential creates per second
    Queue {
        #[command(flatten)]
        target: Target,
        /// Producers, each with a session of its own
        #[arg(long, default_value_t = 4)]
        producers: usize,
        /// Consumers, each with a session of its own
        #[arg(long, default_value_t = 4)]
        consumers: usize,
        /// Messages in total
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        /// Payload bytes per message (at least 8)
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages per producer batch (two transactions per batch on the native
        /// protocol; 1 sends one message at a time)
        #[arg(long, default_value_t = 32)]
        send_batch: usize,
        /// Messages a consumer takes per transaction, its acks riding in the next
        /// one (1: one message at a time, as `zkmq queue take` does by default)
        #[arg(long, default_value_t = 16)]
        take_batch: usize,
        /// Sequential creates for the raw bound (0 skips it)
        #[arg(long, default_value_t = 5000)]
        raw_creates: usize,
        /// Open loop: send this many messages per second in all, on a fixed
        /// schedule, and count latency from when each was due; prints whether the
        /// rate was held (default: closed loop, as fast as sends come back)
        #[arg(long)]
        rate: Option<f64>,
        /// Put this many messages in the queue first, then measure take and ack
        /// with the queue that deep (their own latency is not counted)
        #[arg(long, default_value_t = 0)]
        prefill: usize,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: BenchCommand) -> anyhow::Result<u8> {
    match command {
        BenchCommand::Queue {
            target,
            producers,
            consumers,
            messages,
            size,
            send_batch,
            take_batch,
            raw_creates,
            rate,
            prefill,
            json,
        } => {
            if prefill > 0 {
                eprintln!("prefilling the queue with {prefill} messages before the clock starts");
            }
            let config = QueueBenchConfig {
                access: target.access().await?,
                queue: target.config(),
                producers,
                consumers,
                messages,
                size,
                send_batch,
                take_batch,
                raw_creates,
                stall_timeout: Duration::from_secs(30),
                rate,
                prefill,
            };
            let result = bench_queue(config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{result}");
            }
            Ok(0)
        }
    }
}
