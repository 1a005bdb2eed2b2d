//! The queue over REST, beside the binary protocol, on real ensembles: mixed REST
//! and native clients on one queue, a REST consumer whose gateway session expires
//! while it holds a message, and the gateway container killed under a workload.
//! REST clients run both REST protocols: the native ones through the gateway's
//! `multi` extension ("rest-multi") and the v1 interface's claims ("rest-v1").

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zkmq::queue::{Access, Consumer, Producer, QueueConfig, QueueError};
use zkmq::rest::{EndpointConfig, GatewayConfig};

fn config(test: &str) -> QueueConfig {
    QueueConfig {
        chroot: common::unique_chroot(test),
        session_timeout: Duration::from_secs(4),
        recovery_interval: Duration::from_millis(500),
        poll_interval: Duration::from_millis(50),
        ..QueueConfig::default()
    }
}

/// Per message id: how many acks succeeded, per consumer kind.
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, usize>,
    /// Per kind of consumer: "native", "rest-multi" or "rest-v1".
    by_access: HashMap<&'static str, usize>,
    /// Acks whose outcome was unknown: the message may be gone for good (the
    /// checker's "ack unknown"), so it is not counted lost.
    ack_unknown: HashSet<String>,
}

/// Takes and acks until `done` is set; records every successful ack.
fn spawn_consumer(
    access: Access,
    config: QueueConfig,
    ledger: Arc<Mutex<Ledger>>,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let rest_multi = config.rest_multi;
        let mut consumer = Consumer::register(access, config).await.expect("register");
        let kind = match consumer.access_path() {
            "rest" if rest_multi => "rest-multi",
            "rest" => "rest-v1",
            other => other,
        };
        while !done.load(Ordering::SeqCst) {
            let delivery = match consumer.take(Duration::from_millis(500)).await {
                Ok(Some(delivery)) => delivery,
                Ok(None) => continue,
                Err(err) => {
                    eprintln!("{kind} take: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            assert_eq!(
                delivery.checksum,
                zkmq::queue::checksum(&delivery.payload),
                "corrupt payload"
            );
            match consumer.ack(&delivery).await {
                Ok(()) => {
                    let mut ledger = ledger.lock().unwrap();
                    *ledger.acked.entry(delivery.id.to_string()).or_default() += 1;
                    *ledger.by_access.entry(kind).or_default() += 1;
                }
                Err(err) => {
                    eprintln!("{kind} ack {}: {err}", delivery.id);
                    if err.is_unknown_outcome() {
                        ledger.lock().unwrap().ack_unknown.insert(delivery.id.to_string());
                    }
                }
            }
        }
        consumer.close().await;
    })
}

/// Waits until `expected` acks are in the ledger, or panics after `limit`.
async fn wait_for_acks(ledger: &Mutex<Ledger>, expected: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let acked: usize = ledger.lock().unwrap().acked.values().sum();
        if acked >= expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {acked} of {expected} acks within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Both REST protocols and the native one on one queue: every message acknowledged
/// exactly once, and every kind of consumer takes some.
#[tokio::test]
async fn rest_and_native_producers_and_consumers_share_one_queue_exactly_once() {
    let cluster = common::shared_ensemble().await;
    let rest =
        Access::Rest { url: cluster.rest_url().expect("the shared ensemble runs the gateway") };
    let native = Access::Native { connect: cluster.connect_string() };
    let config = config("mixed");
    let total = 2000;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let done = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for (access, rest_multi) in [(&rest, true), (&rest, false), (&native, true), (&native, true)] {
        consumers.push(spawn_consumer(
            access.clone(),
            QueueConfig { rest_multi, ..config.clone() },
            ledger.clone(),
            done.clone(),
        ));
    }
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut producers = Vec::new();
    for p in 0..2 {
        let (rest, sent) = (rest.clone(), sent.clone());
        // One producer sends through the multi extension, the other by v1 alone.
        let config = QueueConfig { rest_multi: p == 0, ..config.clone() };
        producers.push(tokio::spawn(async move {
            let mut producer = Producer::new(rest, config).await.expect("REST producer");
            for n in 0..total / 2 {
                let id = producer.send(format!("p{p}-m{n}").as_bytes()).await.expect("send");
                sent.lock().unwrap().push(id.to_string());
            }
            producer.close().await;
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    wait_for_acks(&ledger, total, Duration::from_secs(240)).await;
    done.store(true, Ordering::SeqCst);
    for consumer in consumers {
        consumer.await.unwrap();
    }
    let ledger = ledger.lock().unwrap();
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), total);
    for id in sent.iter() {
        assert_eq!(
            ledger.acked.get(id),
            Some(&1),
            "message {id} acknowledged {:?} times",
            ledger.acked.get(id)
        );
    }
    assert_eq!(ledger.acked.len(), total, "acks for messages never sent");
    eprintln!("acks by access path: {:?}", ledger.by_access);
    for kind in ["rest-multi", "rest-v1", "native"] {
        assert!(
            ledger.by_access.get(kind).copied().unwrap_or(0) > 0,
            "{kind} consumers took nothing"
        );
    }
}

/// A TCP proxy whose link can be cut: the REST client's heartbeats stop reaching
/// the gateway (a stalled client, or a partition), while the gateway stays up.
struct CuttableProxy {
    url: String,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (cut2, connections2) = (cut.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: connection closed at once
                }
                let upstream = upstream.clone();
                connections2.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self { url, cut, connections }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn rest_consumer_whose_session_expires_loses_its_message_to_another_and_its_ack_fails() {
    for rest_multi in [true, false] {
        let config = QueueConfig { rest_multi, ..config("expiry") };
        eprintln!("REST consumer with rest_multi = {rest_multi}");
        expired_rest_consumer_loses_its_message(config).await;
    }
}

async fn expired_rest_consumer_loses_its_message(config: QueueConfig) {
    let cluster = common::shared_ensemble().await;
    let native = Access::Native { connect: cluster.connect_string() };
    // Our own gateway in front of the ensemble, reached through a proxy we can cut.
    let gateway = zkmq::rest::bind(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        endpoints: vec![EndpointConfig::parse(&format!("/;{}", cluster.connect_string())).unwrap()],
        ..GatewayConfig::default()
    })
    .await
    .unwrap();
    let upstream = gateway.local_addr().to_string();
    tokio::spawn(gateway.run(std::future::pending()));
    let proxy = CuttableProxy::start(upstream).await;
    let rest = Access::Rest { url: proxy.url.clone() };

    let mut producer = Producer::new(native.clone(), config.clone()).await.unwrap();
    let id = producer.send(b"held by a zombie").await.unwrap();
    let mut zombie = Consumer::register(rest, config.clone()).await.unwrap();
    assert_eq!(zombie.access_path(), "rest");
    let held =
        zombie.take(Duration::from_secs(10)).await.unwrap().expect("the REST consumer takes it");
    assert_eq!(held.id, id);

    proxy.cut();
    // The gateway hears no heartbeat: after the session's expiry (4 s) it closes the
    // ZooKeeper session, the status ephemeral goes, and recovery takes the message back.
    let mut survivor = Consumer::register(native, config.clone()).await.unwrap();
    let again = survivor
        .take(Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the message comes back to another consumer");
    assert_eq!(again.id, id);
    assert!(again.from_partial, "redelivered through partial/");
    assert_eq!(again.payload, b"held by a zombie");

    proxy.heal();
    let stale = zombie.ack(&held).await;
    assert!(
        matches!(stale, Err(QueueError::TakenBack)),
        "the zombie's ack must fail, got {stale:?}"
    );
    survivor.ack(&again).await.expect("the survivor's ack");
    assert!(
        survivor.take(Duration::from_millis(500)).await.unwrap().is_none(),
        "delivered once more at most"
    );
    zombie.close().await;
    survivor.close().await;
}

#[tokio::test]
async fn killing_the_gateway_container_under_a_rest_workload_loses_and_doubles_nothing() {
    let cluster = common::own_ensemble(3, true).await;
    let url = cluster.rest_url().expect("the ensemble runs the gateway");
    let rest = Access::Rest { url: url.clone() };
    let native = Access::Native { connect: cluster.connect_string() };
    let config = QueueConfig { retry_budget: Duration::from_secs(60), ..config("gatewaykill") };
    let total = 400;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let done = Arc::new(AtomicBool::new(false));
    // One consumer on each REST protocol; the producer on v1 (the other test sends
    // through both).
    let consumers: Vec<_> = [true, false]
        .into_iter()
        .map(|rest_multi| {
            let config = QueueConfig { rest_multi, ..config.clone() };
            spawn_consumer(rest.clone(), config, ledger.clone(), done.clone())
        })
        .collect();
    let sent_ok = Arc::new(Mutex::new(Vec::new()));
    let unknown = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (rest, config, sent_ok, unknown) =
            (rest.clone(), config.clone(), sent_ok.clone(), unknown.clone());
        tokio::spawn(async move {
            let config = QueueConfig { rest_multi: false, ..config };
            let mut producer = Producer::new(rest, config).await.expect("REST producer");
            for n in 0..total {
                match producer.send(format!("m{n}").as_bytes()).await {
                    Ok(id) => sent_ok.lock().unwrap().push(id.to_string()),
                    Err(err) if err.is_unknown_outcome() => {
                        unknown.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(err) => panic!("send m{n} failed definitely: {err}"),
                }
            }
            producer.close().await;
        })
    };
    // Kill the gateway mid-workload, leave it down a moment, start it again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while sent_ok.lock().unwrap().len() < total / 4 {
        assert!(tokio::time::Instant::now() < deadline, "the workload did not get going");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{}", cluster.rest_kill().await.unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("{}", cluster.rest_start().await.unwrap());
    let reattached = zkmq::cluster::Cluster::attach(cluster.run_id()).await.unwrap();
    assert_eq!(
        reattached.rest_url().as_deref(),
        Some(url.as_str()),
        "the gateway came back on another port"
    );
    producer.await.unwrap();

    // Drain what is left (partial included) with a native consumer as well.
    let drainer = spawn_consumer(native, config.clone(), ledger.clone(), done.clone());
    let sent_ok = sent_ok.lock().unwrap().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let missing = {
            let ledger = ledger.lock().unwrap();
            sent_ok
                .iter()
                .filter(|id| !ledger.acked.contains_key(*id) && !ledger.ack_unknown.contains(*id))
                .count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} acknowledged sends never acked: lost"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give stragglers (messages whose send outcome was unknown) a moment too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, Ordering::SeqCst);
    for consumer in consumers.into_iter().chain([drainer]) {
        consumer.await.unwrap();
    }
    let ledger = ledger.lock().unwrap();
    for (id, count) in &ledger.acked {
        assert_eq!(*count, 1, "message {id} acknowledged {count} times");
    }
    eprintln!(
        "sent ok {}, unknown {}, acked {}, acks unknown {} ({:?})",
        sent_ok.len(),
        unknown.load(Ordering::SeqCst),
        ledger.acked.len(),
        ledger.ack_unknown.len(),
        ledger.by_access
    );
}

#[tokio::test]
async fn a_rest_producer_is_refused_past_max_depth_and_writes_nothing() {
    let cluster = common::shared_ensemble().await;
    let rest =
        Access::Rest { url: cluster.rest_url().expect("the shared ensemble runs the gateway") };
    let config = QueueConfig { max_depth: 5, ..config("rest-depth") };
    let mut producer = Producer::new(rest.clone(), config.clone()).await.expect("producer");
    let batch: Vec<_> = (0..4).map(|_| (zkmq::queue::MessageId::generate(), &b"m"[..])).collect();
    let results = producer.send_batch(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // One more fits; the rest of the batch is refused, definitely.
    let results = producer.send_batch(&batch).await;
    assert!(results[0].is_ok(), "{results:?}");
    for refused in &results[1..] {
        assert!(matches!(refused, Err(QueueError::QueueFull { depth: 5, limit: 5, .. })));
    }
    let err = producer.send(b"one more").await.expect_err("the queue is full");
    assert!(matches!(err, QueueError::QueueFull { .. }) && !err.is_unknown_outcome(), "{err}");
    let store = zkmq::queue::connect(&rest, &config).await.expect("store");
    assert_eq!(zkmq::queue::stats(store.as_ref(), &config).await.expect("stats").messages, 5);
    store.close().await;
    producer.close().await;
}
