//! The queue's limits on a real ensemble: the depth ceiling at the default heap,
//! and a producer whose ensemble is gone ending within its retry budget.

mod common;

use std::time::{Duration, Instant};

use zkmq::cluster::{NodeMode, DEFAULT_HEAP_MB};
use zkmq::queue::{
    connect, stats, Access, Consumer, MessageId, Producer, QueueConfig, QueueError, Tree,
    DEFAULT_MAX_DEPTH,
};

/// What README's sizing rule assumes of a message: a 100-byte payload.
const PAYLOAD: [u8; 100] = [b'x'; 100];

/// Sends batches of 256 until one is refused for depth; returns how many were
/// sent and the refusal's (depth, limit).
async fn fill_until_full(producer: &mut Producer) -> (u64, (u64, u64)) {
    let mut sent = 0;
    loop {
        let batch: Vec<_> = (0..256).map(|_| (MessageId::generate(), &PAYLOAD[..])).collect();
        let mut refused = None;
        for result in producer.send_batch(&batch).await {
            match result {
                Ok(()) => sent += 1,
                Err(QueueError::QueueFull { depth, limit, .. }) => refused = Some((depth, limit)),
                Err(err) => panic!("a send below the ceiling failed: {err}"),
            }
        }
        if let Some(refused) = refused {
            return (sent, refused);
        }
    }
}

/// Every node answers `srvr` as leader or follower, lists the full queue over a
/// session of its own, and never logged an `OutOfMemoryError`.
async fn assert_every_server_serves_the_full_queue(
    cluster: &zkmq::cluster::Cluster,
    config: &QueueConfig,
) {
    for status in cluster.status().await.expect("status") {
        assert!(
            matches!(status.mode, NodeMode::Leader | NodeMode::Follower),
            "zk{} is {:?} at the ceiling",
            status.node,
            status.mode
        );
        let one = Access::Native { connect: cluster.node_address(status.node) };
        let store = connect(&one, config).await.expect("a session on one node");
        let names = store.children(&Tree::new(config).messages()).await.expect("list");
        assert_eq!(names.len() as u64, DEFAULT_MAX_DEPTH, "zk{} lists the full queue", status.node);
        store.close().await;
        let logs = cluster.logs(status.node, None).await.expect("logs");
        assert!(!logs.contains("OutOfMemoryError"), "zk{} ran out of heap", status.node);
    }
}

#[tokio::test]
async fn a_queue_filled_to_the_default_ceiling_refuses_more_and_every_server_still_serves() {
    let spec = common::test_spec("depth", 3, false);
    assert_eq!(spec.heap_mb, DEFAULT_HEAP_MB, "the proof is for the default heap");
    let cluster = common::start(spec).await;
    let access = Access::Native { connect: cluster.connect_string() };
    let config = QueueConfig { chroot: common::unique_chroot("depth"), ..QueueConfig::default() };
    assert_eq!(config.max_depth, DEFAULT_MAX_DEPTH);
    let mut producer = Producer::new(access.clone(), config.clone()).await.expect("producer");

    let (sent, refused) = fill_until_full(&mut producer).await;
    // One producer alone: its estimate is exact, so the ceiling is met exactly.
    assert_eq!(sent, DEFAULT_MAX_DEPTH);
    assert_eq!(refused, (DEFAULT_MAX_DEPTH, DEFAULT_MAX_DEPTH));

    let started = Instant::now();
    let err = producer.send(&PAYLOAD).await.expect_err("a send at the ceiling");
    assert!(matches!(err, QueueError::QueueFull { .. }), "{err}");
    assert!(!err.is_unknown_outcome(), "a refusal is definite");
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once");
    let store = connect(&access, &config).await.expect("store");
    assert_eq!(stats(store.as_ref(), &config).await.expect("stats").messages, DEFAULT_MAX_DEPTH);
    assert_every_server_serves_the_full_queue(&cluster, &config).await;

    // Consumers at the ceiling (each take lists the whole queue) make room again.
    let takes = (0..4).map(|_| {
        let (access, config) = (access.clone(), config.clone());
        async move {
            let mut consumer = Consumer::register(access, config).await.expect("consumer");
            for _ in 0..8 {
                let delivery = consumer.take(Duration::from_secs(10)).await.expect("take");
                consumer.ack(&delivery.expect("a message")).await.expect("ack");
            }
            consumer.close().await;
        }
    });
    futures::future::join_all(takes).await;
    producer.send(&PAYLOAD).await.expect("a send once consumers made room");
    assert_eq!(
        stats(store.as_ref(), &config).await.expect("stats").messages,
        DEFAULT_MAX_DEPTH - 32 + 1
    );
    store.close().await;
    producer.close().await;
}

#[tokio::test]
async fn a_producer_whose_ensemble_is_gone_ends_within_its_retry_budget() {
    let cluster = common::start(common::test_spec("budget", 3, false)).await;
    let access = Access::Native { connect: cluster.connect_string() };
    let retry_budget = Duration::from_secs(6);
    let config = QueueConfig {
        chroot: common::unique_chroot("budget"),
        op_timeout: Duration::from_secs(1),
        session_timeout: Duration::from_secs(2),
        retry_budget,
        ..QueueConfig::default()
    };
    let mut producer = Producer::new(access, config).await.expect("producer");
    producer.send(&PAYLOAD).await.expect("a send while the ensemble runs");
    for node in cluster.node_ids() {
        cluster.kill(node).await.expect("kill");
    }
    // Long enough for the client to give the session up: the store is dead, and
    // every send must renew it, which cannot succeed.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Before the fix each message of a batch renewed in turn for a whole budget.
    let batch: Vec<_> = (0..64).map(|_| (MessageId::generate(), &PAYLOAD[..])).collect();
    let started = Instant::now();
    let results = producer.send_batch(&batch).await;
    let took = started.elapsed();
    assert!(results.iter().all(Result::is_err), "nothing can be sent without an ensemble");
    assert!(took < retry_budget * 2, "a batch ended after {took:?}, budget {retry_budget:?}");

    let started = Instant::now();
    let err = producer.send(&PAYLOAD).await.expect_err("no ensemble");
    let took = started.elapsed();
    assert!(took < retry_budget * 2, "a send ended after {took:?}: {err}");
    assert!(err.to_string().contains("retry budget"), "says why: {err}");
    drop(producer);
}
