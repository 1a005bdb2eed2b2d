//! Takes whose outcome is unknown, with acks folded in: a lagging server must not
//! make a landed transaction look undone, and a concurrent recovery must not make
//! an ack that landed look failed. The crash points are made exact by a proxy that
//! speaks ZooKeeper's framing (`common::zk_proxy`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::zk_proxy::ZkProxy;
use zkmq::queue::{
    connect, recover, stats, Access, Consumer, Delivery, MessageId, Producer, QueueConfig,
    QueueError,
};

fn config(test: &str) -> QueueConfig {
    QueueConfig {
        chroot: common::unique_chroot(test),
        session_timeout: Duration::from_secs(4),
        op_timeout: Duration::from_secs(1),
        retry_budget: Duration::from_secs(30),
        recovery_interval: Duration::from_millis(500),
        ..QueueConfig::default()
    }
}

async fn send(access: &Access, config: &QueueConfig, count: usize) -> Vec<MessageId> {
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let mut sent = Vec::new();
    for n in 0..count {
        sent.push(producer.send(format!("m{n}").as_bytes()).await.unwrap());
    }
    sent
}

/// The mechanism of issue 17. A take carrying the ack of the last one goes to the
/// leader while three of its four followers are frozen: the leader and one
/// follower log it, nobody commits it yet. The client's connection is cut and it
/// reconnects to that follower, which has not applied the transaction either: a
/// read of the slot there shows the state before it, although the transaction
/// commits as soon as the followers thaw. Settled by that read, a batch's folded
/// acks were folded into the next take, met their own deletes and were reported
/// "taken back" (they never came back); a single take's folded ack was sent again
/// and deleted the slot the transaction had just filled with the next message.
/// Settled by a write, the acks are acknowledged and the next messages delivered.
#[tokio::test]
async fn a_landed_take_read_through_a_lagging_server_acknowledges_its_folded_acks() {
    let cluster = common::own_ensemble(5, false).await;
    for batched in [true, false] {
        let config = config(if batched { "lagging-batch" } else { "lagging-single" });
        let everyone = Access::Native { connect: cluster.connect_string() };
        let sent = send(&everyone, &config, 8).await;
        let size = if batched { 4 } else { 1 };

        let leader = cluster.leader().await.unwrap().expect("the ensemble has a leader");
        let followers: Vec<usize> =
            cluster.node_ids().into_iter().filter(|n| *n != leader).collect();
        let (lagging, frozen) = (followers[0], followers[1..].to_vec());
        // The first connection goes to the leader, every later one to `lagging`.
        let proxy =
            ZkProxy::start(vec![cluster.node_address(leader), cluster.node_address(lagging)]).await;
        let through_proxy = Access::Native { connect: proxy.address.clone() };
        let mut consumer = Consumer::register(through_proxy, config.clone()).await.unwrap();
        let first = take(&mut consumer, size).await;
        assert_eq!(first.iter().map(|d| d.id).collect::<Vec<_>>(), sent[..size]);

        for node in &frozen {
            cluster.pause(*node).await.unwrap();
        }
        // Thawed well before the leader gives up for want of a quorum (syncLimit 4
        // x tickTime 500 ms), so the transaction commits under the same leader.
        let thaw = async {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            for node in &frozen {
                cluster.unpause(*node).await.unwrap();
            }
        };
        proxy.arm_and_cut(0, 1);
        let ((acks, second), ()) =
            tokio::join!(ack_and_take(&mut consumer, &first, size, Duration::from_secs(30)), thaw);
        assert_eq!(proxy.dropped.load(Ordering::SeqCst), 0, "the cut came before any answer");
        assert!(
            acks.iter().all(Result::is_ok),
            "batched {batched}: the transaction landed, so did the acks in it: {acks:?}"
        );
        assert_eq!(
            second.iter().map(|d| d.id).collect::<Vec<_>>(),
            sent[size..2 * size],
            "batched {batched}: the transaction's messages are ours"
        );
        // The rest, each once (in any order: after a lost race a consumer spreads
        // its tries over the oldest few).
        let mut delivered: Vec<MessageId> =
            first.iter().chain(&second).map(|delivery| delivery.id).collect();
        let mut held = second;
        while !held.is_empty() {
            let (acks, next) =
                ack_and_take(&mut consumer, &held, size, Duration::from_secs(1)).await;
            assert!(acks.iter().all(Result::is_ok), "{acks:?}");
            delivered.extend(next.iter().map(|delivery| delivery.id));
            held = next;
        }
        delivered.sort();
        let mut expected = sent.clone();
        expected.sort();
        assert_eq!(delivered, expected, "batched {batched}: each message once, none lost");
        let store = connect(&everyone, &config).await.unwrap();
        let left = stats(store.as_ref(), &config).await.unwrap();
        assert_eq!((left.messages, left.partial, left.in_flight), (0, 0, 0), "batched {batched}");
    }
}

/// A batch take of `size`, or a single take when `size` is 1.
async fn take(consumer: &mut Consumer, size: usize) -> Vec<Delivery> {
    if size > 1 {
        consumer.take_batch(size, Duration::from_secs(10)).await.unwrap()
    } else {
        consumer.take(Duration::from_secs(10)).await.unwrap().into_iter().collect()
    }
}

/// Acks `held` folded into the next take (batched, or single when `size` is 1).
async fn ack_and_take(
    consumer: &mut Consumer,
    held: &[Delivery],
    size: usize,
    wait: Duration,
) -> (Vec<Result<(), QueueError>>, Vec<Delivery>) {
    if size > 1 {
        let (acks, taken) = consumer.ack_and_take_batch(held, size, wait).await;
        (acks, taken.unwrap())
    } else {
        let (ack, taken) = consumer.ack_and_take(&held[0], wait).await;
        (vec![ack], taken.unwrap().into_iter().collect())
    }
}

/// The answer to a batch take carrying four acks is lost, and its client is then
/// cut off until its session expires, while another process runs recovery passes
/// all along: the consumer's slots (the new batch) go back to `partial/`. The
/// transaction landed, so no ack may be reported failed (`TakenBack` would promise
/// a redelivery that never comes); and every message is acknowledged once, the
/// four of the lost batch after being delivered again.
#[tokio::test]
async fn a_batch_take_in_doubt_whose_session_expires_under_recovery_fails_no_ack() {
    let cluster = common::shared_ensemble().await;
    let config = config("doubt-expiry");
    let everyone = Access::Native { connect: cluster.connect_string() };
    let sent = send(&everyone, &config, 8).await;

    let proxy = ZkProxy::start(vec![cluster.node_address(1)]).await;
    let through_proxy = Access::Native { connect: proxy.address.clone() };
    let mut consumer = Consumer::register(through_proxy, config.clone()).await.unwrap();
    let first = consumer.take_batch(4, Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.iter().map(|d| d.id).collect::<Vec<_>>(), sent[..4]);

    // A janitor elsewhere, passing every 200 ms until the test ends.
    let janitor = {
        let (everyone, config) = (everyone.clone(), config.clone());
        tokio::spawn(async move {
            let store = connect(&everyone, &config).await.unwrap();
            loop {
                let _ = recover(store.as_ref(), &config).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // Once the answer is dropped, cut the client off past its session timeout.
    let cut_off = {
        let dropped = proxy.dropped.clone();
        let proxy_control = std::sync::Arc::new(proxy);
        let control = proxy_control.clone();
        control.arm(0, 1);
        tokio::spawn(async move {
            while dropped.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            proxy_control.refuse();
            tokio::time::sleep(Duration::from_secs(7)).await;
            proxy_control.admit();
        })
    };
    let (acks, second) = consumer.ack_and_take_batch(&first, 4, Duration::from_secs(30)).await;
    cut_off.await.unwrap();
    for ack in &acks {
        assert!(
            matches!(ack, Ok(()) | Err(QueueError::Unknown(_))),
            "the acks landed: none may be reported failed: {acks:?}"
        );
    }

    // Drain: the lost batch comes back from `partial/`, the first four never again.
    let mut acknowledged: HashMap<MessageId, usize> =
        first.iter().map(|delivery| (delivery.id, 1)).collect();
    let mut batch = second.unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acknowledged.len() < sent.len() && tokio::time::Instant::now() < deadline {
        let (acks, next) = consumer.ack_and_take_batch(&batch, 4, Duration::from_secs(2)).await;
        for (delivery, ack) in batch.iter().zip(&acks) {
            ack.as_ref().unwrap_or_else(|err| panic!("ack of {}: {err}", delivery.id));
            *acknowledged.entry(delivery.id).or_default() += 1;
        }
        batch = next.unwrap_or_default();
    }
    janitor.abort();
    assert!(batch.is_empty(), "nothing is delivered after every message was acknowledged");
    for id in &sent {
        assert_eq!(acknowledged.get(id), Some(&1), "{id} acknowledged exactly once");
    }
}
