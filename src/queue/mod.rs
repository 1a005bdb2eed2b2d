//! The queue: tree layout, message envelope, producer, consumer and recovery.

pub mod native_store;
pub mod rest_store;
pub mod store;

pub use store::{CreateMode, MultiOp, NodeStat, Store, StoreError, StoreResult};
