//! The native backend of [`Store`](super::Store): ZooKeeper's binary protocol.
