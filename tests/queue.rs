//! The queue on a real ensemble (shared by this binary; each test in its own chroot).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::zk_proxy::ZkProxy;
use zkmq::queue::envelope::Envelope;
use zkmq::queue::{
    connect, leftovers, recover, stats, Access, Consumer, CreateMode, LeftoverPlace, Producer,
    QueueConfig, QueueError, TakeProtocol, Tree, MAX_PAYLOAD,
};

async fn setup(test: &str) -> (Access, QueueConfig) {
    let cluster = common::shared_ensemble().await;
    let access = Access::Native { connect: cluster.connect_string() };
    let config = QueueConfig {
        chroot: common::unique_chroot(test),
        session_timeout: Duration::from_secs(4),
        recovery_interval: Duration::from_millis(500),
        ..QueueConfig::default()
    };
    (access, config)
}

/// Takes and acks until `expected` messages came or nothing comes for a while.
async fn drain(consumer: &mut Consumer, expected: usize) -> Vec<(String, Vec<u8>)> {
    let mut got = Vec::new();
    while got.len() < expected {
        let Some(delivery) = consumer.take(Duration::from_secs(10)).await.expect("take") else {
            break;
        };
        consumer.ack(&delivery).await.expect("ack");
        got.push((delivery.id.to_string(), delivery.payload));
    }
    got
}

#[tokio::test]
async fn one_producer_one_consumer_is_fifo_and_exactly_once() {
    let (access, config) = setup("fifo").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let mut sent = Vec::new();
    for n in 0..100 {
        let id = producer.send(format!("m{n}").as_bytes()).await.unwrap();
        sent.push(id.to_string());
    }
    let mut consumer = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let got = drain(&mut consumer, 100).await;
    let ids: Vec<_> = got.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, sent, "delivered in the order sent, each once");
    assert_eq!(got[7].1, b"m7");
    assert!(consumer.take(Duration::from_millis(300)).await.unwrap().is_none(), "nothing more");
    let store = connect(&access, &config).await.unwrap();
    let now = stats(store.as_ref(), &config).await.unwrap();
    assert_eq!((now.messages, now.partial, now.in_flight, now.consumers), (0, 0, 0, 1));
}

/// A take without an ack keeps the message; a second take returns the same one.
#[tokio::test]
async fn unacknowledged_take_is_returned_again_and_ack_removes_it() {
    let (access, config) = setup("reuse").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let id = producer.send(b"once").await.unwrap();
    let mut consumer = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let first = consumer.take(Duration::from_secs(5)).await.unwrap().unwrap();
    let again = consumer.take(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!((first.id, again.id), (id, id));
    assert_eq!(first.checksum, zkmq::queue::checksum(b"once"));
    consumer.ack(&first).await.unwrap();
    assert!(matches!(consumer.ack(&first).await, Err(QueueError::TakenBack)), "a second ack fails");
    assert!(consumer.take(Duration::from_millis(300)).await.unwrap().is_none());
}

async fn many_to_many(test: &str, protocols: [TakeProtocol; 4], total: usize) {
    let (access, config) = setup(test).await;
    let mut producers = Vec::new();
    for p in 0..4 {
        let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
        producers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..total / 4 {
                ids.push(producer.send(format!("{p}-{n}").as_bytes()).await.unwrap().to_string());
            }
            ids
        }));
    }
    let mut consumers = Vec::new();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for protocol in protocols {
        let config = QueueConfig { take_protocol: protocol, ..config.clone() };
        let mut consumer = Consumer::register(access.clone(), config).await.unwrap();
        let done = done.clone();
        consumers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            while done.load(std::sync::atomic::Ordering::SeqCst) < total {
                let Some(delivery) = consumer.take(Duration::from_millis(500)).await.unwrap()
                else {
                    continue;
                };
                assert_eq!(delivery.checksum, zkmq::queue::checksum(&delivery.payload));
                consumer.ack(&delivery).await.unwrap();
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                acked.push(delivery.id.to_string());
            }
            acked
        }));
    }
    let mut sent = HashSet::new();
    for task in producers {
        sent.extend(task.await.unwrap());
    }
    let waiting =
        tokio::time::timeout(Duration::from_secs(240), futures::future::join_all(consumers)).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for acked in waiting.expect("every message acknowledged within 240 s") {
        for id in acked.unwrap() {
            *count.entry(id).or_default() += 1;
        }
    }
    assert_eq!(sent.len(), total);
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "acknowledged more than once: {twice:?}");
    let missing: Vec<_> = sent.iter().filter(|id| !count.contains_key(*id)).collect();
    assert!(missing.is_empty(), "never acknowledged: {} of {total}", missing.len());
    assert_eq!(count.len(), total, "nothing unexpected");
}

#[tokio::test]
async fn four_producers_four_consumers_5000_messages_each_acknowledged_once() {
    many_to_many("4x4", [TakeProtocol::Auto; 4], 5000).await;
}

/// The claim protocol (what REST consumers run) against real ZooKeeper, sharing the
/// queue with multi consumers: each side skips what the other claimed.
#[tokio::test]
async fn claim_and_multi_consumers_share_a_queue_without_duplicates() {
    use TakeProtocol::{Claim, Multi};
    many_to_many("claim", [Claim, Multi, Claim, Multi], 800).await;
}

#[tokio::test]
async fn orphans_older_than_the_grace_period_are_removed_and_never_delivered() {
    let (access, mut config) = setup("orphans").await;
    config.orphan_grace = Duration::from_secs(1);
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let store = connect(&access, &config).await.unwrap();
    let tree = Tree::new(&config);
    // What a producer leaves when its create's answer was lost: empty nodes.
    for _ in 0..3 {
        store
            .create(&format!("{}/message-", tree.messages()), b"", CreateMode::PersistentSequential)
            .await
            .unwrap();
    }
    let id = producer.send(b"real").await.unwrap();
    // Young orphans are left alone (their producer may still set them).
    let report = recover(store.as_ref(), &config).await.unwrap();
    assert!(report.ran);
    assert_eq!(report.orphans_deleted, 0);
    assert_eq!(stats(store.as_ref(), &config).await.unwrap().messages, 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut consumer = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let got = drain(&mut consumer, 2).await;
    assert_eq!(got.len(), 1, "only the real message is delivered");
    assert_eq!(got[0].0, id.to_string());
    let _ = recover(store.as_ref(), &config).await.unwrap();
    assert_eq!(stats(store.as_ref(), &config).await.unwrap().messages, 0, "the orphans are gone");
}

#[tokio::test]
async fn a_payload_over_the_limit_is_refused_before_anything_is_written() {
    let (access, config) = setup("limit").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let err = producer.send(&vec![7u8; MAX_PAYLOAD + 1]).await.unwrap_err();
    match &err {
        QueueError::TooLarge { size, limit } => {
            assert_eq!((*size, *limit), (MAX_PAYLOAD + 1, MAX_PAYLOAD))
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    assert!(err.to_string().contains(&MAX_PAYLOAD.to_string()), "the error names the limit: {err}");
    let store = connect(&access, &config).await.unwrap();
    assert_eq!(stats(store.as_ref(), &config).await.unwrap().messages, 0, "nothing written");
    // The largest allowed payload goes through, take (a multi) included.
    let id = producer.send(&vec![7u8; MAX_PAYLOAD]).await.unwrap();
    let mut consumer = Consumer::register(access, config).await.unwrap();
    let delivery = consumer.take(Duration::from_secs(10)).await.unwrap().unwrap();
    assert_eq!((delivery.id, delivery.payload.len()), (id, MAX_PAYLOAD));
    consumer.ack(&delivery).await.unwrap();
    // Batches split where one request (jute.maxbuffer) would overflow: two of
    // the largest messages go in two transactions, sent and taken.
    let big = vec![9u8; MAX_PAYLOAD];
    let pair = [
        (zkmq::queue::MessageId::generate(), big.as_slice()),
        (zkmq::queue::MessageId::generate(), big.as_slice()),
    ];
    for result in producer.send_batch(&pair).await {
        result.unwrap();
    }
    let mut taken = Vec::new();
    for _ in 0..2 {
        let batch = consumer.take_batch(4, Duration::from_secs(10)).await.unwrap();
        assert_eq!(batch.len(), 1, "one message of ~1 MB per transaction");
        let (acks, _) = consumer.ack_and_take_batch(&batch, 1, Duration::ZERO).await;
        acks.into_iter().for_each(|ack| ack.unwrap());
        taken.extend(batch.into_iter().map(|d| (d.id, d.payload.len())));
    }
    taken.sort();
    let mut sent: Vec<_> = pair.iter().map(|(id, p)| (*id, p.len())).collect();
    sent.sort();
    assert_eq!(taken, sent);
}

/// A consumer dies holding a message (session dropped without closing): after
/// its session times out, recovery moves the message to `partial`, another
/// consumer gets it, and the dead consumer's ack fails.
#[tokio::test]
async fn a_dead_consumers_message_goes_to_partial_and_its_late_ack_fails() {
    let (access, config) = setup("crash").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let first = producer.send(b"held by the dying consumer").await.unwrap();
    let second = producer.send(b"waiting").await.unwrap();
    let mut dying = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let held = dying.take(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(held.id, first);
    let store = connect(&access, &config).await.unwrap();
    dying.crash();
    // Its status lives on until the session times out: nothing is taken back yet.
    let early = recover(store.as_ref(), &config).await.unwrap();
    assert!(early.moved_to_partial.is_empty(), "taken back while the session lived: {early:?}");
    let mut survivor = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let next = survivor.take(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(next.id, second);
    survivor.ack(&next).await.unwrap();
    // Within the session timeout plus a recovery interval, the message comes back.
    let redelivered = survivor.take(Duration::from_secs(15)).await.unwrap().expect("taken back");
    assert_eq!(redelivered.id, first);
    assert!(redelivered.from_partial, "taken from partial");
    assert_eq!(redelivered.source, held.source, "under its original name");
    // The dead consumer's ack (its slot, its version) fails: it will not count.
    let mut other = Consumer::register(access.clone(), config.clone()).await.unwrap();
    assert!(matches!(other.ack(&held).await, Err(QueueError::TakenBack)));
    survivor.ack(&redelivered).await.unwrap();
    let after = stats(store.as_ref(), &config).await.unwrap();
    assert_eq!((after.messages, after.partial, after.in_flight), (0, 0, 0));
}

/// A clean close removes the status at once; a held message is taken back by
/// the next recovery pass, without waiting for a session timeout.
#[tokio::test]
async fn a_closed_consumers_message_is_taken_back_at_once() {
    let (access, config) = setup("close").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let id = producer.send(b"x").await.unwrap();
    let mut closing = Consumer::register(access.clone(), config.clone()).await.unwrap();
    assert_eq!(closing.take(Duration::from_secs(5)).await.unwrap().unwrap().id, id);
    closing.close().await;
    let store = connect(&access, &config).await.unwrap();
    let report = recover(store.as_ref(), &config).await.unwrap();
    assert_eq!(report.moved_to_partial.len(), 1, "{report:?}");
    let (data, _) = store
        .get(&format!("{}/{}", Tree::new(&config).partial(), report.moved_to_partial[0]))
        .await
        .unwrap();
    assert_eq!(Envelope::decode(&data).unwrap().id, id);
}

/// The native store with `multi` hidden: recovery then runs the sequence the REST
/// path needs (fence, copy claimed, delete, release), against real ZooKeeper.
struct WithoutMulti(std::sync::Arc<dyn zkmq::queue::Store>);

#[async_trait::async_trait]
impl zkmq::queue::Store for WithoutMulti {
    async fn create(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> zkmq::queue::StoreResult<String> {
        self.0.create(path, data, mode).await
    }
    async fn get(&self, path: &str) -> zkmq::queue::StoreResult<(Vec<u8>, zkmq::queue::NodeStat)> {
        self.0.get(path).await
    }
    async fn exists(&self, path: &str) -> zkmq::queue::StoreResult<Option<zkmq::queue::NodeStat>> {
        self.0.exists(path).await
    }
    async fn set(
        &self,
        path: &str,
        data: &[u8],
        version: Option<i32>,
    ) -> zkmq::queue::StoreResult<zkmq::queue::NodeStat> {
        self.0.set(path, data, version).await
    }
    async fn delete(&self, path: &str, version: Option<i32>) -> zkmq::queue::StoreResult<()> {
        self.0.delete(path, version).await
    }
    async fn children(&self, path: &str) -> zkmq::queue::StoreResult<Vec<String>> {
        self.0.children(path).await
    }
    fn supports_multi(&self) -> bool {
        false
    }
    async fn multi(&self, _: &[zkmq::queue::MultiOp]) -> zkmq::queue::StoreResult<Vec<String>> {
        Err(zkmq::queue::StoreError::Refused("no multi here".into()))
    }
    async fn wait_for_children(
        &self,
        path: &str,
        timeout: Duration,
    ) -> zkmq::queue::StoreResult<()> {
        self.0.wait_for_children(path, timeout).await
    }
    fn session_id(&self) -> i64 {
        self.0.session_id()
    }
    fn is_dead(&self) -> bool {
        self.0.is_dead()
    }
    async fn close(&self) {
        self.0.close().await
    }
    fn abandon(&self) {
        self.0.abandon()
    }
    fn access_path(&self) -> &'static str {
        "native-without-multi"
    }
}

/// A claim-protocol consumer (what REST consumers run) dies holding a message;
/// recovery without `multi` takes it back; its late ack fails. A claim left by a
/// consumer that died before creating its slot is rolled back.
#[tokio::test]
async fn claim_protocol_recovery_without_multi_takes_back_and_rolls_back() {
    let (access, mut config) = setup("claimrec").await;
    config.take_protocol = TakeProtocol::Claim;
    let tree = Tree::new(&config);
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let held_id = producer.send(b"held").await.unwrap();
    let stale_id = producer.send(b"stale claim").await.unwrap();
    let janitor = WithoutMulti(connect(&access, &config).await.unwrap());

    let mut dying = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let held = dying.take(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(held.id, held_id);
    dying.crash();

    // A consumer that claimed the second message and died before its slot.
    // Found by id: a producer's create retried after an unknown outcome may also
    // have left an empty orphan here (allowed by design, removed after the grace).
    let mut stale = None;
    for name in zkmq::queue::Store::children(&janitor, &tree.messages()).await.unwrap() {
        let path = format!("{}/{}", tree.messages(), name);
        let (data, stat) = match zkmq::queue::Store::get(&janitor, &path).await {
            Ok(found) => found,
            // Listed before the dying consumer's delete of it reached the janitor's
            // server (another session: ZooKeeper does not order across sessions).
            Err(zkmq::queue::StoreError::NoNode(_)) => continue,
            Err(err) => panic!("{path}: {err}"),
        };
        if let Ok(envelope) = Envelope::decode(&data) {
            assert_eq!(envelope.id, stale_id, "only the second message is still waiting");
            assert!(stale.is_none(), "the second message is stored once");
            stale = Some((path, envelope, stat));
        }
    }
    let (path, envelope, stat) = stale.expect("the second message is waiting");
    let claimed = envelope.with_claim("0123456789ab/deadbeef");
    zkmq::queue::Store::set(&janitor, &path, &claimed.encode(), Some(stat.version)).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut moved = Vec::new();
    let mut rolled_back = 0;
    while moved.is_empty() || rolled_back == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "recovery did not finish: {moved:?} {rolled_back}"
        );
        let report = recover(&janitor, &config).await.unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        moved.extend(report.moved_to_partial);
        rolled_back += report.claims_rolled_back;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(moved, vec![held.source.clone()]);
    let mut other = Consumer::register(access.clone(), config.clone()).await.unwrap();
    assert!(
        matches!(other.ack(&held).await, Err(QueueError::TakenBack)),
        "the dead consumer's ack fails"
    );
    let first = other.take(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!((first.id, first.from_partial), (held_id, true), "partial first");
    other.ack(&first).await.unwrap();
    let second = other.take(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(second.id, stale_id, "the rolled-back claim is takeable again");
    other.ack(&second).await.unwrap();
    assert!(other.take(Duration::from_millis(500)).await.unwrap().is_none());
}

/// Pipelined sends and acks folded into takes keep the guarantees.
#[tokio::test]
async fn batched_sends_and_folded_acks_deliver_each_message_once() {
    let (access, config) = setup("fold").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let mut sent = HashSet::new();
    for _ in 0..10 {
        let batch: Vec<_> = (0..50)
            .map(|n| (zkmq::queue::MessageId::generate(), format!("b{n}").into_bytes()))
            .collect();
        let borrowed: Vec<_> =
            batch.iter().map(|(id, payload)| (*id, payload.as_slice())).collect();
        for result in producer.send_batch(&borrowed).await {
            result.unwrap();
        }
        sent.extend(batch.iter().map(|(id, _)| id.to_string()));
    }
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let mut consumer = Consumer::register(access.clone(), config.clone()).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut current = consumer.take(Duration::from_secs(5)).await.unwrap();
            while let Some(delivery) = current {
                let (ack, next) = consumer.ack_and_take(&delivery, Duration::from_secs(1)).await;
                ack.unwrap();
                acked.push(delivery.id.to_string());
                current = next.unwrap();
            }
            acked
        }));
    }
    let mut count: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        for id in task.await.unwrap() {
            *count.entry(id).or_default() += 1;
        }
    }
    assert!(count.values().all(|n| *n == 1), "acknowledged twice");
    assert_eq!(count.keys().cloned().collect::<HashSet<_>>(), sent);
    let store = connect(&access, &config).await.unwrap();
    let left = stats(store.as_ref(), &config).await.unwrap();
    assert_eq!((left.messages, left.partial, left.in_flight), (0, 0, 0));
}

/// Batched sends and batched takes (acks folded into the next batch's
/// transaction): 4 producers x 4 consumers, 5,000 messages, each acknowledged
/// exactly once, and the batch sends leave no empty node behind.
#[tokio::test]
async fn batched_sends_and_takes_acknowledge_each_of_5000_messages_once() {
    let (access, config) = setup("batch-many").await;
    let total = 5000;
    let mut sends = Vec::new();
    for p in 0..4 {
        let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
        sends.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for chunk in 0..(total / 4 / 50) {
                let batch: Vec<_> = (0..50)
                    .map(|n| (zkmq::queue::MessageId::generate(), format!("p{p}-{chunk}-{n}")))
                    .collect();
                let borrowed: Vec<_> =
                    batch.iter().map(|(id, payload)| (*id, payload.as_bytes())).collect();
                for result in producer.send_batch(&borrowed).await {
                    result.unwrap();
                }
                sent.extend(batch.into_iter().map(|(id, _)| id.to_string()));
            }
            sent
        }));
    }
    let mut sent = HashSet::new();
    for task in sends {
        sent.extend(task.await.unwrap());
    }
    assert_eq!(sent.len(), total);
    let store = connect(&access, &config).await.unwrap();
    let waiting = stats(store.as_ref(), &config).await.unwrap();
    assert_eq!(waiting.messages, total as u64, "one node per message, no empty orphan");

    let mut takes = Vec::new();
    for _ in 0..4 {
        let mut consumer = Consumer::register(access.clone(), config.clone()).await.unwrap();
        takes.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut held = consumer.take_batch(16, Duration::from_secs(5)).await.unwrap();
            while !held.is_empty() {
                assert!(held.len() <= 16, "a batch holds at most what was asked");
                let (acks, next) =
                    consumer.ack_and_take_batch(&held, 16, Duration::from_secs(1)).await;
                assert_eq!(acks.len(), held.len());
                for (ack, delivery) in acks.into_iter().zip(&held) {
                    ack.unwrap();
                    acked.push(delivery.id.to_string());
                }
                held = next.unwrap();
            }
            acked
        }));
    }
    let mut count: HashMap<String, usize> = HashMap::new();
    for task in takes {
        for id in task.await.unwrap() {
            *count.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "acknowledged twice: {twice:?}");
    assert_eq!(count.keys().cloned().collect::<HashSet<_>>(), sent, "every message acknowledged");
    let left = stats(store.as_ref(), &config).await.unwrap();
    assert_eq!((left.messages, left.partial, left.in_flight), (0, 0, 0));
}

/// A consumer dies holding a batch: recovery moves every slot of it to
/// `partial/` under its original name, another consumer gets them all first,
/// and each of the dead consumer's late acks fails.
#[tokio::test]
async fn a_dead_consumers_batch_goes_to_partial_slot_by_slot_and_its_late_acks_fail() {
    let (access, config) = setup("batch-crash").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let mut sent = Vec::new();
    for n in 0..10 {
        sent.push(producer.send(format!("m{n}").as_bytes()).await.unwrap());
    }
    let mut dying = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let held = dying.take_batch(8, Duration::from_secs(5)).await.unwrap();
    assert_eq!(held.iter().map(|d| d.id).collect::<Vec<_>>(), sent[..8], "the oldest 8, in order");
    let store = connect(&access, &config).await.unwrap();
    let holding = stats(store.as_ref(), &config).await.unwrap();
    assert_eq!((holding.messages, holding.in_flight), (2, 8), "a slot per message held");
    dying.crash();

    let mut survivor = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let rest = survivor.take_batch(8, Duration::from_secs(5)).await.unwrap();
    assert_eq!(rest.iter().map(|d| d.id).collect::<Vec<_>>(), sent[8..]);
    let (acks, nothing_yet) = survivor.ack_and_take_batch(&rest, 8, Duration::ZERO).await;
    assert!(acks.iter().all(Result::is_ok), "{acks:?}");
    assert!(nothing_yet.unwrap().is_empty(), "the dead consumer's batch is still its own");
    // After the session timeout a recovery pass takes the batch back; partial first.
    let back = survivor.take_batch(16, Duration::from_secs(20)).await.unwrap();
    let mut back_ids: Vec<_> = back.iter().map(|d| d.id).collect();
    back_ids.sort();
    let mut held_ids: Vec<_> = held.iter().map(|d| d.id).collect();
    held_ids.sort();
    assert_eq!(back_ids, held_ids, "every held message came back, each once");
    assert!(back.iter().all(|d| d.from_partial));
    for delivery in &back {
        let original = held.iter().find(|h| h.id == delivery.id).unwrap();
        assert_eq!(delivery.source, original.source, "under its original name");
    }
    let mut other = Consumer::register(access.clone(), config.clone()).await.unwrap();
    for late in &held {
        assert!(
            matches!(other.ack(late).await, Err(QueueError::TakenBack)),
            "late ack of {late:?}"
        );
    }
    let (acks, _) = survivor.ack_and_take_batch(&back, 16, Duration::ZERO).await;
    assert!(acks.iter().all(Result::is_ok), "{acks:?}");
    let after = stats(store.as_ref(), &config).await.unwrap();
    assert_eq!((after.messages, after.partial, after.in_flight), (0, 0, 0));
}

#[tokio::test]
async fn an_idle_consumers_batch_ack_is_one_transaction_and_a_fenced_slot_fails_alone() {
    // With nothing to take, the acks of a batch go in one multi of versioned
    // deletes; a slot that recovery fenced (bumped its version) fails it, is
    // reported taken back, and the others are acknowledged all the same.
    let (access, config) = setup("batch-idle-ack").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    for n in 0..3 {
        producer.send(format!("m{n}").as_bytes()).await.unwrap();
    }
    let mut consumer = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let batch = consumer.take_batch(8, Duration::from_secs(5)).await.unwrap();
    assert_eq!(batch.len(), 3);
    // The registration that holds the batch (a session lost under load would
    // re-register the consumer under a new id before the acks).
    let id = consumer.id().to_owned();
    let store = connect(&access, &config).await.unwrap();
    let tree = Tree::new(&config);
    // A batch's slots are numbered from 1 in the batch's order.
    let fenced = tree.batch_slot(&id, 2);
    let (data, stat) = store.get(&fenced).await.unwrap();
    store.set(&fenced, &data, Some(stat.version)).await.unwrap();
    let (acks, nothing) = consumer.ack_and_take_batch(&batch, 8, Duration::ZERO).await;
    assert!(nothing.unwrap().is_empty());
    assert!(acks[0].is_ok() && acks[2].is_ok(), "{acks:?}");
    assert!(matches!(acks[1], Err(QueueError::TakenBack)), "the fenced slot: {acks:?}");
    let left: Vec<String> = store
        .children(&tree.consumer(&id))
        .await
        .unwrap()
        .into_iter()
        .filter(|name| Tree::is_slot(name))
        .collect();
    assert_eq!(left, vec!["message-2".to_owned()], "only the fenced slot is left");
}

fn quick_timeouts(mut config: QueueConfig) -> QueueConfig {
    config.op_timeout = Duration::from_secs(1);
    config.retry_budget = Duration::from_secs(20);
    config
}

/// A batch send whose `multi` landed while its answer was lost: the create's
/// (nodes created, names unknown) leaves empty orphans and sends each message
/// again; the set's is confirmed message by message. Either way every send ends
/// ok and every message is stored once.
#[tokio::test]
async fn a_batch_send_whose_answer_is_lost_stores_each_message_once() {
    let (access, config) = setup("batch-send-lost").await;
    let config = quick_timeouts(config);
    let cluster = common::shared_ensemble().await;
    for (lost, orphans) in [("create", 20), ("set", 0)] {
        let config = QueueConfig { chroot: format!("{}-{lost}", config.chroot), ..config.clone() };
        let proxy = ZkProxy::start(vec![cluster.node_address(1)]).await;
        let mut producer =
            Producer::new(Access::Native { connect: proxy.address.clone() }, config.clone())
                .await
                .unwrap();
        // The batch's first multi creates the nodes, its second sets them.
        proxy.arm(usize::from(lost == "set"), 1);
        let batch: Vec<_> = (0..20)
            .map(|n| (zkmq::queue::MessageId::generate(), format!("{lost}-{n}").into_bytes()))
            .collect();
        let borrowed: Vec<_> =
            batch.iter().map(|(id, payload)| (*id, payload.as_slice())).collect();
        for result in producer.send_batch(&borrowed).await {
            result.unwrap_or_else(|err| panic!("lost {lost} answer: a send ended {err}"));
        }
        assert_eq!(proxy.dropped.load(Ordering::SeqCst), 1, "the {lost} answer was dropped");
        let store = connect(&access, &config).await.unwrap();
        let nodes = stats(store.as_ref(), &config).await.unwrap().messages;
        assert_eq!(nodes, 20 + orphans, "lost {lost} answer: 20 messages and {orphans} orphans");
        let mut consumer = Consumer::register(access.clone(), config.clone()).await.unwrap();
        let got = drain(&mut consumer, 20).await;
        let mut ids: Vec<_> = got.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        let mut sent: Vec<_> = batch.iter().map(|(id, _)| id.to_string()).collect();
        sent.sort();
        assert_eq!(ids, sent, "lost {lost} answer: each message delivered once");
        assert!(
            consumer.take(Duration::from_millis(300)).await.unwrap().is_none(),
            "orphans are never delivered"
        );
    }
}

/// A batch take whose `multi` landed while its answer was lost is settled by
/// reading the batch's first slot back; so is one that also carried the acks of
/// the previous batch. Nothing is delivered twice, nothing is left.
#[tokio::test]
async fn a_batch_take_whose_answer_is_lost_is_settled_by_reading_its_slot() {
    let (access, config) = setup("batch-take-lost").await;
    let config = quick_timeouts(config);
    let cluster = common::shared_ensemble().await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let mut sent = Vec::new();
    for n in 0..10 {
        sent.push(producer.send(format!("m{n}").as_bytes()).await.unwrap());
    }
    let proxy = ZkProxy::start(vec![cluster.node_address(1)]).await;
    let mut consumer =
        Consumer::register(Access::Native { connect: proxy.address.clone() }, config.clone())
            .await
            .unwrap();
    proxy.arm(0, 1);
    let first = consumer.take_batch(8, Duration::from_secs(10)).await.unwrap();
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 1, "the take's answer was dropped");
    assert_eq!(first.iter().map(|d| d.id).collect::<Vec<_>>(), sent[..8]);
    // The next take carries the 8 acks; its answer is lost too.
    proxy.arm(0, 1);
    let (acks, second) = consumer.ack_and_take_batch(&first, 8, Duration::from_secs(10)).await;
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 2, "the folded take's answer was dropped");
    assert!(acks.iter().all(Result::is_ok), "settled as done: {acks:?}");
    let second = second.unwrap();
    assert_eq!(second.iter().map(|d| d.id).collect::<Vec<_>>(), sent[8..]);
    let (acks, rest) = consumer.ack_and_take_batch(&second, 8, Duration::ZERO).await;
    assert!(acks.iter().all(Result::is_ok), "{acks:?}");
    assert!(rest.unwrap().is_empty(), "nothing delivered twice");
    let store = connect(&access, &config).await.unwrap();
    let left = stats(store.as_ref(), &config).await.unwrap();
    assert_eq!((left.messages, left.partial, left.in_flight), (0, 0, 0));
}

/// `leftovers` names every message left and where: waiting, in `partial/`, held
/// in a single slot or in a batch's slots; a produce not set yet is no message.
#[tokio::test]
async fn leftovers_lists_waiting_partial_and_held_messages_with_their_place() {
    let (access, config) = setup("leftovers").await;
    let mut producer = Producer::new(access.clone(), config.clone()).await.unwrap();
    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(producer.send(format!("m{n}").as_bytes()).await.unwrap());
    }
    // sent[0] goes back to partial: its consumer closes holding it.
    let mut closing = Consumer::register(access.clone(), config.clone()).await.unwrap();
    assert_eq!(closing.take(Duration::from_secs(5)).await.unwrap().unwrap().id, sent[0]);
    closing.close().await;
    let store = connect(&access, &config).await.unwrap();
    let report = recover(store.as_ref(), &config).await.unwrap();
    assert_eq!(report.moved_to_partial.len(), 1, "{report:?}");
    // sent[1] and sent[2] in a batch; the partial one is taken first, so batch past it.
    let mut single = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let from_partial = single.take(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(from_partial.id, sent[0]);
    let mut batch = Consumer::register(access.clone(), config.clone()).await.unwrap();
    let held = batch.take_batch(2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(held.iter().map(|d| d.id).collect::<Vec<_>>(), sent[1..3]);
    // A produce not set yet: an empty node in messages/.
    let tree = Tree::new(&config);
    store
        .create(&Tree::node(&tree.messages(), "unset"), b"", CreateMode::Persistent)
        .await
        .unwrap();

    let left = leftovers(store.as_ref(), &config).await;
    assert!(left.unreadable.is_empty(), "{left:?}");
    let place_of = |id| {
        let found: Vec<_> = left.messages.iter().filter(|l| l.id == id).collect();
        assert_eq!(found.len(), 1, "{id:?} listed once: {left:?}");
        found[0].place.clone()
    };
    assert_eq!(place_of(sent[3]), LeftoverPlace::Waiting);
    assert_eq!(place_of(sent[4]), LeftoverPlace::Waiting);
    assert_eq!(place_of(sent[0]), LeftoverPlace::Held { consumer: single.id().to_owned() });
    for delivery in &held {
        assert_eq!(place_of(delivery.id), LeftoverPlace::Held { consumer: batch.id().to_owned() });
    }
    assert_eq!(left.messages.len(), 5, "the unset produce is no message: {left:?}");
    for leftover in &left.messages {
        let (data, _) = store.get(&leftover.path).await.unwrap();
        assert_eq!(Envelope::decode(&data).unwrap().id, leftover.id, "its path holds it");
    }

    // Acked and taken back again: the held single goes, partial is listed as such.
    single.ack(&from_partial).await.unwrap();
    let kept = batch.take_batch(2, Duration::from_secs(5)).await.unwrap();
    batch.close().await;
    // Another janitor (a consumer's own pass) may hold the lock for a moment.
    let mut kept_ids: Vec<_> = kept.iter().map(|d| d.id).collect();
    kept_ids.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let left = loop {
        recover(store.as_ref(), &config).await.unwrap();
        let left = leftovers(store.as_ref(), &config).await;
        let mut partial: Vec<_> = left
            .messages
            .iter()
            .filter(|l| l.place == LeftoverPlace::Partial)
            .map(|l| l.id)
            .collect();
        partial.sort();
        if partial == kept_ids {
            break left;
        }
        assert!(std::time::Instant::now() < deadline, "never in partial: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!left.messages.iter().any(|l| l.id == sent[0]), "acked: gone");
}
