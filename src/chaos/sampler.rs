//! The cluster sampler: queue depth, node states and the harness's own memory about
//! once a second, into `samples.jsonl` (the depth and node-timeline plots, the
//! harness figures of the report) and the live depth counter. It also flushes the
//! history each second.
//! It observes and never acts, so it is no part of the workload the checker judges.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::recorder::Recorder;
use super::workload::Counters;
use crate::cluster::{Cluster, NodeMode};
use crate::queue::{self, Access, QueueConfig, Store};
use crate::rundir::{RunDir, Sample};

/// Writes `samples.jsonl`: queue depth and node states about once a second.
pub async fn sample(
    cluster: Cluster,
    access: Access,
    queue_config: QueueConfig,
    history: Recorder,
    counters: Arc<Counters>,
    run_dir: RunDir,
    mut stop: watch::Receiver<bool>,
) {
    // Without samples the run is still checkable: only the depth and node plots
    // stay empty.
    let mut out = match run_dir.create_samples() {
        Ok(out) => out,
        Err(err) => {
            tracing::error!("{err}");
            return;
        }
    };
    let mut store: Option<Arc<dyn Store>> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let mut samples = Vec::new();
        // After its session expired (a paused or partitioned node, a quorum loss)
        // the store answers nothing again: the depth plot would stop for good.
        if store.as_ref().is_some_and(|s| s.is_dead()) {
            store = None;
        }
        if store.is_none() {
            if let Ok(Ok(s)) = tokio::time::timeout(
                queue_config.op_timeout,
                queue::connect(&access, &queue_config),
            )
            .await
            {
                store = Some(s);
            }
        }
        if let Some(s) = &store {
            match tokio::time::timeout(
                queue_config.op_timeout * 2,
                queue::stats(s.as_ref(), &queue_config),
            )
            .await
            {
                Ok(Ok(stats)) => {
                    counters
                        .depth
                        .store(stats.messages + stats.partial + stats.in_flight, Ordering::Relaxed);
                    samples.push(Sample::Depth {
                        t: history.now(),
                        messages: stats.messages,
                        partial: stats.partial,
                        in_flight: stats.in_flight,
                    });
                }
                Ok(Err(err)) => tracing::debug!("sampler: queue stats: {err}"),
                Err(_) => tracing::debug!("sampler: queue stats timed out"),
            }
        }
        if let Ok(Ok(statuses)) =
            tokio::time::timeout(Duration::from_secs(5), cluster.status()).await
        {
            let t = history.now();
            for status in statuses {
                let state = match (status.container.as_str(), status.mode) {
                    ("paused", _) => "paused",
                    (_, NodeMode::Leader) => "leader",
                    (_, NodeMode::Follower) => "follower",
                    (_, NodeMode::Observer) => "observer",
                    (_, NodeMode::Standalone) => "standalone",
                    (_, NodeMode::NotServing) => "not-serving",
                    (_, NodeMode::Down) => "down",
                };
                samples.push(Sample::Node {
                    t,
                    node: format!("zk{}", status.node),
                    state: state.into(),
                    version: status.version,
                });
            }
        }
        if let Some(url) = cluster.rest_url() {
            samples.push(Sample::Node {
                t: history.now(),
                node: "rest".into(),
                state: gateway_state(&url).await.into(),
                version: env!("CARGO_PKG_VERSION").into(),
            });
        }
        if let Err(err) = history.flush() {
            tracing::error!("{err}");
        }
        samples.push(Sample::Harness {
            t: history.now(),
            rss_mib: resident_mib().unwrap_or(0.0),
            history_bytes: std::fs::metadata(run_dir.history_path()).map(|m| m.len()).unwrap_or(0),
        });
        let written = samples.iter().try_for_each(|sample| out.append(sample));
        if let Err(err) = written.and_then(|()| out.flush()) {
            tracing::error!("{err}");
        }
    }
}

/// This process's resident set (`VmRSS` of /proc/self/status) in MiB; None off Linux.
pub fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The gateway's row in the node timeline, from its health endpoint: `serving`,
/// `not-serving` (it answers, but not healthy, or too slowly: paused) or `down`
/// (nothing listens: killed or restarting).
async fn gateway_state(url: &str) -> &'static str {
    let client = reqwest::Client::new();
    let health = client.get(format!("{url}/zkmq/v1/health")).timeout(Duration::from_secs(2));
    match health.send().await {
        Ok(answer) if answer.status().is_success() => "serving",
        Ok(_) => "not-serving",
        Err(err) if err.is_timeout() => "not-serving",
        Err(_) => "down",
    }
}
