//! A TCP proxy that speaks just enough of ZooKeeper's framing to make crash points
//! exact: it drops the server's answer to chosen `multi` requests (opcode 14, or
//! another request kind when armed for it: `delete` is opcode 2), can
//! cut the client's connection right after such a request went out, sends each new
//! connection to the next server of a route, and can refuse every connection for a
//! while (so that a session expires on the servers while its client is cut off).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const MULTI: i32 = 14;
/// ZooKeeper's opcode of a `delete` request (an ack).
pub const DELETE: i32 = 2;
/// ZooKeeper's opcode of a `setData` request (a claim).
pub const SET_DATA: i32 = 5;
/// ZooKeeper's opcode of a `create2` request (a slot, on servers from 3.5 on).
pub const CREATE2: i32 = 15;

pub struct ZkProxy {
    pub address: String,
    /// The kind of request whose answers are dropped: `multi` unless armed otherwise.
    opcode: Arc<AtomicI32>,
    /// Multis to let through before dropping.
    pass: Arc<AtomicUsize>,
    /// Multis whose answers to drop after those.
    drop: Arc<AtomicUsize>,
    /// How many answers were dropped so far.
    pub dropped: Arc<AtomicUsize>,
    /// Close the client's connection as soon as a doomed multi went out, instead
    /// of waiting for the answer to drop it: the client reconnects at once.
    cut: Arc<AtomicBool>,
    /// Accept and at once close every new connection, and close the open ones.
    refuse: Arc<AtomicBool>,
    /// Fired to close the open connections.
    close_all: Arc<Notify>,
}

impl ZkProxy {
    /// A proxy whose `k`-th connection goes to `route[k]` (the last one for all
    /// connections after).
    pub async fn start(route: Vec<String>) -> ZkProxy {
        assert!(!route.is_empty(), "a proxy needs at least one upstream");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = ZkProxy {
            address: listener.local_addr().unwrap().to_string(),
            opcode: Arc::new(AtomicI32::new(MULTI)),
            pass: Arc::default(),
            drop: Arc::default(),
            dropped: Arc::default(),
            cut: Arc::default(),
            refuse: Arc::default(),
            close_all: Arc::default(),
        };
        let (pass, drop, dropped) = (proxy.pass.clone(), proxy.drop.clone(), proxy.dropped.clone());
        let target = proxy.opcode.clone();
        let (cut, refuse, close_all) =
            (proxy.cut.clone(), proxy.refuse.clone(), proxy.close_all.clone());
        tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok((client, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    continue; // dropping the socket closes it
                }
                let upstream = &route[accepted.min(route.len() - 1)];
                accepted += 1;
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let doomed = Arc::new(Mutex::new(HashSet::<i32>::new()));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let (pass, drop, doomed_up, cut, target) =
                    (pass.clone(), drop.clone(), doomed.clone(), cut.clone(), target.clone());
                // Requests: [len][xid][opcode]..., after the connect request.
                let up = relay_frames(client_read, server_write, move |frame| {
                    let (xid, opcode) = (be_i32(&frame[4..]), be_i32(&frame[8..]));
                    let counts = |n: &AtomicUsize| {
                        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                            .is_ok()
                    };
                    if opcode == target.load(Ordering::SeqCst) && !counts(&pass) && counts(&drop) {
                        doomed_up.lock().unwrap().insert(xid);
                        if cut.load(Ordering::SeqCst) {
                            return Verdict::ForwardAndClose;
                        }
                    }
                    Verdict::Forward
                });
                // Answers: [len][xid]...; the doomed ones are not passed on.
                let dropped = dropped.clone();
                let down = relay_frames(server_read, client_write, move |frame| {
                    if doomed.lock().unwrap().remove(&be_i32(&frame[4..])) {
                        dropped.fetch_add(1, Ordering::SeqCst);
                        return Verdict::Drop;
                    }
                    Verdict::Forward
                });
                let close_all = close_all.clone();
                tokio::spawn(async move {
                    // Whichever ends first closes both sides.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = close_all.notified() => {}
                    }
                });
            }
        });
        proxy
    }

    /// Drops the answers to `count` multis after letting `pass` through.
    pub fn arm(&self, pass: usize, count: usize) {
        self.pass.store(pass, Ordering::SeqCst);
        self.drop.store(count, Ordering::SeqCst);
    }

    /// Like [`ZkProxy::arm`], and closes the connection once the doomed multi went out.
    pub fn arm_and_cut(&self, pass: usize, count: usize) {
        self.arm_and_cut_requests(MULTI, pass, count);
    }

    /// Like [`ZkProxy::arm_and_cut`], for requests of another kind (`opcode`).
    pub fn arm_and_cut_requests(&self, opcode: i32, pass: usize, count: usize) {
        self.opcode.store(opcode, Ordering::SeqCst);
        self.cut.store(true, Ordering::SeqCst);
        self.arm(pass, count);
    }

    /// How many of the armed requests have not gone out yet.
    pub fn unspent(&self) -> usize {
        self.drop.load(Ordering::SeqCst)
    }

    /// Refuses every connection (closing the open ones) until [`ZkProxy::admit`].
    pub fn refuse(&self) {
        self.refuse.store(true, Ordering::SeqCst);
        self.close_all.notify_waiters();
    }

    pub fn admit(&self) {
        self.refuse.store(false, Ordering::SeqCst);
    }
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes(bytes[..4].try_into().unwrap())
}

/// What becomes of one frame.
enum Verdict {
    Forward,
    Drop,
    /// Forward it, then end the relay (which closes the connection).
    ForwardAndClose,
}

/// Copies length-prefixed frames, asking `judge` about every frame after the
/// first (the session handshake). Frames shorter than 12 bytes always pass.
async fn relay_frames(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut judge: impl FnMut(&[u8]) -> Verdict,
) {
    let mut handshake = true;
    loop {
        let mut len = [0u8; 4];
        if from.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut frame = len.to_vec();
        frame.resize(4 + i32::from_be_bytes(len).max(0) as usize, 0);
        if from.read_exact(&mut frame[4..]).await.is_err() {
            break;
        }
        let verdict = if handshake || frame.len() < 12 { Verdict::Forward } else { judge(&frame) };
        handshake = false;
        match verdict {
            Verdict::Drop => {}
            Verdict::Forward => {
                if to.write_all(&frame).await.is_err() {
                    break;
                }
            }
            Verdict::ForwardAndClose => {
                let _ = to.write_all(&frame).await;
                let _ = to.flush().await;
                break;
            }
        }
    }
}
