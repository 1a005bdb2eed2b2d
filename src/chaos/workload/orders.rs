//! The channel through which the nemesis orders a workload consumer to crash or
//! turn zombie. It is the workload's: a consumer obeys at the moment that makes the
//! fault interesting (while it holds messages), which only the consumer knows; the
//! nemesis only sends the order and waits for the answer it records.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// How many orders may wait for a consumer: the nemesis sends one at a time and
/// waits for its answer, so a few is plenty.
const ORDER_QUEUE: usize = 4;

/// Orders the nemesis gives a workload consumer.
#[derive(Debug)]
pub enum ConsumerOrder {
    /// Drop the session without closing, stay dead for `down`, then register anew.
    Crash { down: Duration, done: oneshot::Sender<String> },
    /// Hold the next message taken for `stall` (past the session timeout), then ack.
    Zombie { stall: Duration, done: oneshot::Sender<String> },
}

/// A workload consumer the nemesis can aim at.
#[derive(Clone)]
pub struct ConsumerHandle {
    pub name: String,
    pub orders: mpsc::Sender<ConsumerOrder>,
}

impl ConsumerHandle {
    /// A handle for the consumer `name`, and the inbox that consumer reads.
    pub(super) fn open(name: String) -> (Self, mpsc::Receiver<ConsumerOrder>) {
        let (orders, inbox) = mpsc::channel(ORDER_QUEUE);
        (Self { name, orders }, inbox)
    }
}
