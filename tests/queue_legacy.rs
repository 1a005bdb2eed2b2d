//! The legacy (2011) algorithm's flaws are real: driven step by step through the
//! race, it loses a message when a server dies between its delete and the answer,
//! and delivers a message twice when two consumers race and one of them dies.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zkmq::queue::legacy::{self, DeleteOutcome};
use zkmq::queue::{
    connect, stats, Access, Algorithm, Consumer, CreateMode, Producer, QueueConfig, Store, Tree,
};

fn config(test: &str) -> QueueConfig {
    QueueConfig {
        chroot: common::unique_chroot(test),
        algorithm: Algorithm::Legacy,
        session_timeout: Duration::from_secs(4),
        op_timeout: Duration::from_secs(2),
        recovery_interval: Duration::from_millis(500),
        ..QueueConfig::default()
    }
}

/// Registers a consumer by hand (the test drives its take step by step).
async fn register(store: &dyn Store, tree: &Tree, id: &str) {
    store.create(&tree.consumer(id), b"", CreateMode::Persistent).await.unwrap();
    store.create(&tree.status(id), b"", CreateMode::Ephemeral).await.unwrap();
}

/// The one waiting message's path.
async fn only_message(store: &dyn Store, tree: &Tree) -> (String, String) {
    let names = store.children(&tree.messages()).await.unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
    (format!("{}/{}", tree.messages(), names[0]), names[0].clone())
}

/// A TCP proxy in front of one ZooKeeper node that can swallow the server's
/// answers: the crash point "the write landed, its answer did not" made exact.
struct Proxy {
    address: String,
    upstream: Arc<Mutex<String>>,
    swallow: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let proxy = Proxy {
            address,
            upstream: Arc::new(Mutex::new(upstream)),
            swallow: Arc::new(AtomicBool::new(false)),
            connections: Arc::new(Mutex::new(Vec::new())),
        };
        let (upstream, swallow, connections) =
            (proxy.upstream.clone(), proxy.swallow.clone(), proxy.connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = upstream.lock().unwrap().clone();
                let swallow = swallow.clone();
                let task = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match server_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if !swallow.load(Ordering::SeqCst)
                                && client_write.write_all(&buf[..n]).await.is_err()
                            {
                                break;
                            }
                        }
                    };
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
                connections.lock().unwrap().push(task);
            }
        });
        proxy
    }

    /// Closes every connection (the client sees its connection drop) and sends
    /// new ones to `upstream`, answers passing again.
    fn cut_over(&self, upstream: String) {
        *self.upstream.lock().unwrap() = upstream;
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
        self.swallow.store(false, Ordering::SeqCst);
    }
}

/// Loss: consumer A deletes the source at the bumped version; the delete lands,
/// but the server is killed before A hears back. A's retry meets NoNode, and the
/// legacy take clears A's slot and returns nothing: the message is gone, while
/// consumer B, racing for the queue, finds nothing either.
#[tokio::test]
async fn legacy_loses_a_message_when_a_server_dies_between_delete_and_answer() {
    let cluster = common::own_ensemble(3, false).await;
    let config = config("legacy-loss");
    let tree = Tree::new(&config);
    let everyone = Access::Native { connect: cluster.connect_string() };
    let mut producer = Producer::new(everyone.clone(), config.clone()).await.unwrap();
    producer.send(b"will be lost").await.unwrap();
    let observer = connect(&everyone, &config).await.unwrap();

    let proxy = Proxy::start(cluster.node_address(1)).await;
    let a = connect(&Access::Native { connect: proxy.address.clone() }, &config).await.unwrap();
    register(a.as_ref(), &tree, "a").await;
    let slot = tree.slot("a");
    let (path, name) = only_message(observer.as_ref(), &tree).await;
    let (data, version) = legacy::read(a.as_ref(), &path).await.unwrap().unwrap();
    let bumped = legacy::bump(a.as_ref(), &path, &data, version).await.unwrap();
    legacy::copy(a.as_ref(), &slot, &name, &data).await.unwrap();

    // The crash point: the delete goes out, its answer never comes back.
    proxy.swallow.store(true, Ordering::SeqCst);
    let deleting = {
        let (a, path, slot) = (a.clone(), path.clone(), slot.clone());
        tokio::spawn(async move {
            legacy::delete(a.as_ref(), &path, bumped, &slot, Duration::from_secs(30)).await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while observer.exists(&path).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the delete never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and the server dies before answering. A's client reconnects elsewhere.
    cluster.kill(1).await.unwrap();
    proxy.cut_over(cluster.node_address(2));

    let outcome = deleting.await.unwrap().unwrap();
    assert_eq!(outcome, DeleteOutcome::Gone, "the retried delete met NoNode");
    assert!(observer.exists(&slot).await.unwrap().is_none(), "A cleared its slot");
    // Consumer B races for the queue and finds nothing: the message is lost.
    let mut b =
        Consumer::register(Access::Native { connect: cluster.node_address(2) }, config.clone())
            .await
            .unwrap();
    assert!(b.take(Duration::from_secs(2)).await.unwrap().is_none(), "nothing left to deliver");
    let left = stats(observer.as_ref(), &config).await.unwrap();
    assert_eq!(
        (left.messages, left.partial, left.in_flight),
        (0, 0, 0),
        "the message is nowhere: lost"
    );
}

/// Duplicate: A and B both read and bump the same message (the bump is no
/// claim), both copy it into their slots; A's delete fails (BadVersion) and A
/// moves on with the copy still in its slot; B deletes, delivers and acks. A
/// dies; recovery moves A's copy to partial and a third consumer gets the
/// message again, after its ack.
#[tokio::test]
async fn legacy_delivers_a_message_twice_when_two_consumers_race_and_one_dies() {
    let cluster = common::own_ensemble(3, false).await;
    let config = config("legacy-dup");
    let tree = Tree::new(&config);
    let everyone = Access::Native { connect: cluster.connect_string() };
    let mut producer = Producer::new(everyone.clone(), config.clone()).await.unwrap();
    let id = producer.send(b"will come twice").await.unwrap();
    let a = connect(&everyone, &config).await.unwrap();
    let b = connect(&everyone, &config).await.unwrap();
    register(a.as_ref(), &tree, "a").await;
    register(b.as_ref(), &tree, "b").await;
    let (path, name) = only_message(a.as_ref(), &tree).await;

    let (data_a, version_a) = legacy::read(a.as_ref(), &path).await.unwrap().unwrap();
    let bumped_a = legacy::bump(a.as_ref(), &path, &data_a, version_a).await.unwrap();
    let (data_b, version_b) = legacy::read(b.as_ref(), &path).await.unwrap().unwrap();
    let bumped_b = legacy::bump(b.as_ref(), &path, &data_b, version_b).await.unwrap();
    legacy::copy(a.as_ref(), &tree.slot("a"), &name, &data_a).await.unwrap();
    let delivered = legacy::copy(b.as_ref(), &tree.slot("b"), &name, &data_b).await.unwrap();
    let budget = Duration::from_secs(10);
    assert_eq!(
        legacy::delete(a.as_ref(), &path, bumped_a, &tree.slot("a"), budget).await.unwrap(),
        DeleteOutcome::Raced
    );
    assert_eq!(
        legacy::delete(b.as_ref(), &path, bumped_b, &tree.slot("b"), budget).await.unwrap(),
        DeleteOutcome::Taken
    );
    assert_eq!(delivered.id, id);
    b.delete(&tree.slot("b"), None).await.unwrap(); // B's ack

    a.abandon(); // A dies holding its stale copy
    let mut c = Consumer::register(everyone.clone(), config.clone()).await.unwrap();
    let again = c.take(Duration::from_secs(20)).await.unwrap().expect("the copy comes back");
    assert_eq!(again.id, id, "delivered again after B's ack: a duplicate");
}
