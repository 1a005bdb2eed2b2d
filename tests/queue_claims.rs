//! Batches under the claim protocol (REST's take): many claims in flight at once,
//! each its own versioned set, slot create and versioned delete. The crash points
//! are made exact on the binary protocol (the claim protocol is selectable there)
//! by a proxy that cuts the connection right after one chosen request went out;
//! the REST path itself runs through the shared ensemble's gateway, beside native
//! batch consumers on the same queue.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::zk_proxy::{self, ZkProxy};
use zkmq::queue::{
    Access, Consumer, Delivery, MessageId, Producer, QueueConfig, QueueError, TakeProtocol,
};

fn config(test: &str) -> QueueConfig {
    QueueConfig {
        chroot: common::unique_chroot(test),
        session_timeout: Duration::from_secs(4),
        op_timeout: Duration::from_secs(1),
        retry_budget: Duration::from_secs(30),
        recovery_interval: Duration::from_millis(500),
        poll_interval: Duration::from_millis(50),
        ..QueueConfig::default()
    }
}

async fn send(access: &Access, config: &QueueConfig, count: usize) -> Vec<MessageId> {
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let payloads: Vec<Vec<u8>> = (0..count).map(|n| format!("m{n}").into_bytes()).collect();
    let batch: Vec<(MessageId, &[u8])> =
        payloads.iter().map(|p| (MessageId::generate(), p.as_slice())).collect();
    for result in producer.send_batch(&batch).await {
        result.expect("send");
    }
    producer.close().await;
    batch.into_iter().map(|(id, _)| id).collect()
}

/// Takes and acks in batches of `size` until `want` messages are acknowledged (or a
/// minute passes); every ack must succeed. Returns acks per message.
async fn drain(
    consumer: &mut Consumer,
    mut batch: Vec<Delivery>,
    size: usize,
    want: usize,
) -> HashMap<MessageId, usize> {
    let mut acknowledged: HashMap<MessageId, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acknowledged.values().sum::<usize>() < want && tokio::time::Instant::now() < deadline {
        let (acks, next) =
            consumer.ack_and_take_batch(&batch, size, Duration::from_millis(500)).await;
        for (delivery, ack) in batch.iter().zip(&acks) {
            ack.as_ref().unwrap_or_else(|err| panic!("ack of {}: {err}", delivery.id));
            *acknowledged.entry(delivery.id).or_default() += 1;
        }
        batch = match next {
            Ok(next) => next,
            Err(err) => {
                eprintln!("take: {err}");
                Vec::new()
            }
        };
    }
    let (acks, next) = consumer.ack_and_take_batch(&batch, size, Duration::from_millis(500)).await;
    for (delivery, ack) in batch.iter().zip(&acks) {
        ack.as_ref().unwrap_or_else(|err| panic!("ack of {}: {err}", delivery.id));
        *acknowledged.entry(delivery.id).or_default() += 1;
    }
    assert_eq!(next.unwrap_or_default(), Vec::new(), "nothing left once all is acknowledged");
    acknowledged
}

/// For each write of a batch (a claim's set, an ack's delete): four claims go out
/// (with the acks of the batch before), and the connection is cut right after the
/// second request of that kind went out, so that it and every request in flight
/// with it end unknown. Every message must still be delivered and acknowledged
/// exactly once: a claim in doubt is settled by reading its mark (never left
/// claimed by nobody alive, never delivered twice), and an ack in doubt whose
/// message is gone was ours (no ack reported failed or unknown).
#[tokio::test]
async fn claim_batches_cut_at_every_write_deliver_each_message_once() {
    let cluster = common::shared_ensemble().await;
    for (step, opcode) in [("claim", zk_proxy::SET_DATA), ("ack", zk_proxy::DELETE)] {
        let config = QueueConfig {
            take_protocol: TakeProtocol::Claim,
            ..config(&format!("claim-cut-{step}"))
        };
        // Sent through the server the consumer reads from: it answered the sets,
        // so it has applied them, and the first batch finds all four set.
        let same_server = Access::Native { connect: cluster.node_address(1) };
        let sent = send(&same_server, &config, 8).await;
        let proxy = ZkProxy::start(vec![cluster.node_address(1)]).await;
        let through_proxy = Access::Native { connect: proxy.address.clone() };
        let mut consumer = Consumer::register(through_proxy, config.clone()).await.unwrap();
        let first = consumer.take_batch(4, Duration::from_secs(30)).await.unwrap();
        assert_eq!(first.len(), 4);
        proxy.arm_and_cut_requests(opcode, 1, 1);
        let (acks, second) = consumer.ack_and_take_batch(&first, 4, Duration::from_secs(30)).await;
        assert_eq!(proxy.unspent(), 0, "{step}: the cut request went out");
        let mut acknowledged: HashMap<MessageId, usize> = HashMap::new();
        for (delivery, ack) in first.iter().zip(&acks) {
            ack.as_ref().unwrap_or_else(|err| panic!("{step}: ack of {}: {err}", delivery.id));
            *acknowledged.entry(delivery.id).or_default() += 1;
        }
        let second = second.unwrap_or_else(|err| {
            eprintln!("{step}: the second batch: {err}");
            Vec::new()
        });
        for (id, count) in drain(&mut consumer, second, 4, sent.len() - 4).await {
            *acknowledged.entry(id).or_default() += count;
        }
        for id in &sent {
            assert_eq!(acknowledged.get(id), Some(&1), "{step}: {id} acknowledged exactly once");
        }
        assert_eq!(acknowledged.len(), sent.len(), "{step}: only what was sent");
        consumer.close().await;
    }
}

/// REST consumers taking batches by concurrent claims, beside native consumers
/// taking batches by `multi`, on one queue fed by a REST producer's batches: each
/// message acknowledged exactly once, and both kinds of consumer take some.
#[tokio::test]
async fn rest_claim_batches_and_native_batches_share_one_queue_exactly_once() {
    let cluster = common::shared_ensemble().await;
    let rest =
        Access::Rest { url: cluster.rest_url().expect("the shared ensemble runs the gateway") };
    let native = Access::Native { connect: cluster.connect_string() };
    // The v1 interface alone: the gateway's multi extension would take batches by
    // `multi` instead of claims.
    let config = QueueConfig { rest_multi: false, ..config("claim-mixed") };
    let total = 600;
    let producer = {
        let (rest, config) = (rest.clone(), config.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for _ in 0..total / 30 {
                sent.extend(send(&rest, &config, 30).await);
            }
            sent
        })
    };
    let mut consumers = Vec::new();
    for access in [&rest, &rest, &native] {
        let (access, config) = (access.clone(), config.clone());
        consumers.push(tokio::spawn(async move {
            let mut consumer = Consumer::register(access, config).await.unwrap();
            let kind = consumer.access_path();
            let mut acked: Vec<MessageId> = Vec::new();
            let mut batch: Vec<Delivery> = Vec::new();
            let mut idle = 0;
            // Until the queue stays empty for a while (the producer is done).
            while idle < 20 {
                let (acks, next) =
                    consumer.ack_and_take_batch(&batch, 8, Duration::from_millis(300)).await;
                for (delivery, ack) in batch.iter().zip(acks) {
                    match ack {
                        Ok(()) => acked.push(delivery.id),
                        Err(err) => panic!("{kind} ack of {}: {err}", delivery.id),
                    }
                }
                batch = next.unwrap_or_else(|err: QueueError| {
                    eprintln!("{kind} take: {err}");
                    Vec::new()
                });
                idle = if batch.is_empty() { idle + 1 } else { 0 };
            }
            consumer.close().await;
            (kind, acked)
        }));
    }
    let sent = producer.await.unwrap();
    let mut acknowledged: HashMap<MessageId, usize> = HashMap::new();
    let mut by_kind: HashMap<&str, usize> = HashMap::new();
    for consumer in consumers {
        let (kind, acked) = consumer.await.unwrap();
        *by_kind.entry(kind).or_default() += acked.len();
        for id in acked {
            *acknowledged.entry(id).or_default() += 1;
        }
    }
    assert_eq!(sent.len(), total);
    for id in &sent {
        assert_eq!(acknowledged.get(id), Some(&1), "{id} acknowledged exactly once");
    }
    assert_eq!(acknowledged.len(), total, "acks for messages never sent");
    eprintln!("acks by access path: {by_kind:?}");
    assert!(by_kind.get("rest").copied().unwrap_or(0) > 0, "REST consumers took nothing");
    assert!(by_kind.get("native").copied().unwrap_or(0) > 0, "native consumers took nothing");
}

/// A claim-protocol consumer holding a batch (claimed in place, no slot) is cut off
/// past its session: recovery rolls its claims back, another consumer takes all
/// four, and the zombie's late acks all fail (none may succeed after the messages
/// were taken back). Every message is acknowledged exactly once.
#[tokio::test]
async fn a_claim_batch_of_an_expired_consumer_is_rolled_back_and_its_late_acks_fail() {
    let cluster = common::shared_ensemble().await;
    let config = QueueConfig { take_protocol: TakeProtocol::Claim, ..config("claim-zombie") };
    let same_server = Access::Native { connect: cluster.node_address(1) };
    let sent = send(&same_server, &config, 4).await;
    let proxy = ZkProxy::start(vec![cluster.node_address(1)]).await;
    let through_proxy = Access::Native { connect: proxy.address.clone() };
    let mut zombie = Consumer::register(through_proxy, config.clone()).await.unwrap();
    let held = zombie.take_batch(4, Duration::from_secs(10)).await.unwrap();
    assert_eq!(held.len(), 4);

    // Cut off past the 4 s session: its claims' owner is dead.
    proxy.refuse();
    let mut survivor = Consumer::register(same_server, config.clone()).await.unwrap();
    let mut batch: Vec<Delivery> = Vec::new();
    let mut again: Vec<MessageId> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while again.len() < 4 && tokio::time::Instant::now() < deadline {
        let (acks, next) = survivor.ack_and_take_batch(&batch, 4, Duration::from_millis(500)).await;
        assert!(acks.iter().all(Result::is_ok), "the survivor's acks: {acks:?}");
        batch = next.unwrap_or_default();
        again.extend(batch.iter().map(|d| d.id));
    }
    again.sort_by_key(|id| id.to_string());
    let mut expected = sent.clone();
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(again, expected, "the survivor gets the whole batch back, once");

    proxy.admit();
    let (late, _) = zombie.ack_and_take_batch(&held, 4, Duration::from_millis(500)).await;
    for ack in &late {
        assert!(
            matches!(ack, Err(QueueError::TakenBack) | Err(QueueError::Unknown(_))),
            "a zombie's ack after its messages were taken back must not succeed: {late:?}"
        );
    }
    let (acks, rest) = survivor.ack_and_take_batch(&batch, 4, Duration::from_millis(500)).await;
    assert!(acks.iter().all(Result::is_ok), "the survivor's acks: {acks:?}");
    assert_eq!(rest.unwrap_or_default(), Vec::new(), "nothing is delivered again");
    zombie.close().await;
    survivor.close().await;
}

/// A single claim take whose slot create stays unknown past the retry budget:
/// the next look reads the slot back and delivers it, and must first finish the
/// take (delete the source, still claimed by us). Delivered without that, the
/// acknowledged message is found again, claimed by us, and delivered a second
/// time after its ack.
#[tokio::test]
async fn a_claim_take_read_back_from_its_slot_is_never_delivered_again_after_its_ack() {
    let cluster = common::shared_ensemble().await;
    let config = QueueConfig {
        take_protocol: TakeProtocol::Claim,
        retry_budget: Duration::from_secs(2),
        ..config("claim-slot-unknown")
    };
    let same_server = Access::Native { connect: cluster.node_address(1) };
    let sent = send(&same_server, &config, 1).await;
    let proxy = ZkProxy::start(vec![cluster.node_address(1)]).await;
    let through_proxy = Access::Native { connect: proxy.address.clone() };
    let mut consumer = Consumer::register(through_proxy, config.clone()).await.unwrap();
    // Every slot create goes out and its answer is lost, for longer than the budget.
    proxy.arm_and_cut_requests(zk_proxy::CREATE2, 0, 10_000);
    let delivery = consumer.take(Duration::from_secs(30)).await.unwrap().expect("the message");
    proxy.arm(0, 0);
    assert_eq!(delivery.id, sent[0]);
    consumer.ack(&delivery).await.expect("the ack of a message we hold");
    let again = consumer.take(Duration::from_secs(3)).await.unwrap();
    assert_eq!(again.map(|d| d.id), None, "delivered again after its ack");
    consumer.close().await;
}
