//! The REST backend of [`Store`](super::Store): a client of ZooKeeper's REST
//! interface (our gateway, or any compatible one).
