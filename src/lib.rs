//! zkmq: a message queue stored in Apache ZooKeeper that loses no message and
//! delivers none again after its ack, through crashes, partitions and upgrades; and
//! the chaos harness that proves it against a real ensemble in Docker.
//!
//! # Layout
//!
//! Data flows one way: scenario → cluster + workload + nemesis → history → checker
//! → report. The checker and the reports read only a run's files, so `zkmq check`
//! and `zkmq report` can be re-run on a saved run directory.
//!
//! Cargo features gate whole modules, so the queue can be embedded without the
//! harness. The default build is everything (the `zkmq` binary needs it):
//!
//! - always: **[`queue`]**, with both stores (native ZooKeeper client, REST client).
//!   `default-features = false` is this alone: no Docker, plots or HTTP serving.
//! - `gateway`: **`rest`**, the REST gateway server (axum).
//! - `harness` (default; brings `gateway`, since the harness runs the gateway as a
//!   fault target): **`cluster`**, **`chaos`**, **`history`**, **`checker`**,
//!   **`report`**, **`suite`**, **`bench`**, and the CLI's dependencies.
//!
//! **[`queue`]**: the system under test and a library users embed. The tree layout,
//! the message envelope, producers, consumers, the recovery janitor and the list of
//! what is left in the tree ([`queue::leftovers`]), all written once against the
//! [`queue::Store`] trait, which has two backends: the native ZooKeeper client and a
//! client of the REST gateway. It knows nothing of Docker, chaos or reports. Every
//! outcome is done, definitely not done, or unknown; an unknown take is settled by
//! a write that conflicts with it (`queue::consumer::doubt`), never by a read
//! alone. Producers send one message at a time or a batch in two transactions,
//! refused with `QueueFull` past the queue's depth ceiling (`queue::depth`), so
//! that a deep queue cannot run the servers out of heap; consumers take one at a
//! time or a batch per transaction (a slot per message), which is what makes it
//! fast: a message's cost is its share of a replicated transaction.
//!
//! **[`rest`]**: our re-implementation of ZooKeeper's contrib REST gateway
//! (`znodes/v1`, `sessions/v1`), an axum server that talks to the ensemble over the
//! binary protocol, plus extensions under `/zkmq/v1/`, among them `multi` (one
//! transaction of writes), through which the queue's REST client runs the native
//! protocols. It knows the queue's storage types at most, never the harness.
//!
//! **[`cluster`]**: the only module that touches Docker (through one private wrapper
//! around bollard). It builds ZooKeeper images from Debian packages, starts a
//! labelled ensemble and the gateway, reads node state with four-letter words, and
//! offers node operations as plain verbs: kill, stop, start, restart, pause, wipe,
//! partition, heal, upgrade, disk fill and free (on a size-limited data volume),
//! clock skew (a preloaded shim), which return what they did as data (`cluster::outcome`),
//! and the faults aimed at ZooKeeper's weak windows (`cluster::window`: kills timed
//! by the servers' logs and, from inside a follower's container, by its
//! `currentEpoch` file).
//! `cluster::fault` is the one list of fault kinds and how each is carried out,
//! shared by the scenario schema, the nemesis, `zkmq cluster <verb>` and
//! `zkmq cluster fail` (its module doc says how to add a fault kind). Every
//! cluster records its owner, and a detached reaper (`cluster::owner`) removes it
//! when the owner dies without doing so (`kill -9`). Two backends decide where the
//! members run: `cluster::local` (containers on one engine) and `cluster::swarm`
//! (one service per member pinned to a host of a Docker Swarm); each operation asks
//! the backend which engine runs a member's container now (`Whereabouts`) and then
//! uses the same container verbs and `exec` on either, so faults, chaos, checker and
//! reports never know which one runs. `cluster::hosts` simulates swarm hosts on
//! one machine (Docker in Docker); `docs/kubernetes.md` designs a third backend.
//!
//! **[`chaos`]**: a run. The scenario schema (TOML), the seeded fault schedule
//! (`chaos::schedule`: pure, seed → plan, and replay), its execution
//! (`chaos::nemesis`: apply a fault, get back its undo), the workload of producers
//! and consumers (one consumer loop, single or batch takes, and the channel through
//! which the nemesis orders a consumer to crash or turn zombie), the cluster
//! sampler, and the run loop that ends by healing every fault, draining the queue,
//! reading each member's own view of the queue tree (`chaos::members`) and
//! checking the history.
//!
//! **[`history`]**: the operation log, one JSON object per line, appended and flushed
//! as operations happen: plain lines, or for long soaks a gzip stream flushed every
//! second; one reader takes both.
//!
//! **[`rundir`]**: a run directory's files (`scenario.toml`, `run.json`,
//! `history.jsonl` or `history.jsonl.gz`, `schedule.json`, `samples.jsonl`, `logs/`,
//! `members.json`,
//! `results.json` and the reports; `stopped.json` and `data/` for a run stopped at
//! its first violation): their names and the typed read and write of each, for the run loop that
//! writes them and for the checker, the reports and a replay that read them. Plain
//! files and serde types, nothing of ZooKeeper or Docker.
//!
//! **[`checker`]**: the delivery invariants (lost, duplicated past ack, unexpected,
//! corrupt), the ensemble's (divergent, not rejoined: `checker::members`, from
//! `members.json`) and what is only reported (recovered, redelivered before ack, order
//! inversions, stuck, unavailability), computed by streaming a history with a small
//! state per message. `checker::synthetic` simulates realistic runs (with injectable
//! bugs) for the checker's benchmark, the report tests and `zkmq report --example`.
//!
//! **[`report`]**: statistics, plots and the files a person or a CI system reads:
//! HTML, Markdown, JSON, JUnit and HdrHistogram logs, all from a run directory alone;
//! `report::render` has one function per section of each file, and the console
//! summary beside them; `zkmq report --compare` of two runs; `zkmq report --trend`
//! of many (`report::trend`: each run's headline figures and its regressions
//! against the runs before it, the page a nightly job publishes); `report::qualify`,
//! a qualification's verdict from its runs' records (pure) and its pages;
//! `report::zk_log`,
//! which finds in the saved
//! server logs the truncations that dropped transactions (where the ensemble itself
//! may have lost writes); and `report::Progress`, the live view the chaos run loop
//! feeds while a run goes.
//!
//! **[`suite`]**: suites over runs. `zkmq qualify` (`suite::qualify`: a candidate
//! ZooKeeper against a baseline, every scenario of a suite file on both, a rolling
//! upgrade and a rollback under load) and `zkmq bench catch` (`suite::catch`: how
//! often a scenario catches ZooKeeper's own loss bugs, per version) compose
//! ordinary chaos runs, each [`chaos::run`] on a scenario moved to another version
//! with a seed derived from the suite's, each writing a normal run directory inside
//! the suite's; they read each run back from its `results.json` and add no second
//! run loop. The qualification's verdict and files are [`report::qualify`]'s.
//!
//! **[`bench`](mod@bench)**: throughput and latency benchmarks of the queue on a running
//! ensemble, closed loop or open loop at a fixed rate, on a shallow or a prefilled
//! queue; performance targets live here, never in timed tests. The peer it is
//! measured against, kazoo's `LockingQueue`, is driven by `benches/kazoo_queue.py`.

#![forbid(unsafe_code)]
// The Layout above links every module; without the harness the gated ones are
// absent, and the queue's docs should not warn about the map of the whole crate.
#![cfg_attr(not(feature = "harness"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "harness")]
pub mod bench;
#[cfg(feature = "harness")]
pub mod chaos;
#[cfg(feature = "harness")]
pub mod checker;
#[cfg(feature = "harness")]
pub mod cluster;
#[cfg(feature = "harness")]
pub mod history;
pub mod queue;
#[cfg(feature = "harness")]
pub mod report;
#[cfg(feature = "gateway")]
pub mod rest;
#[cfg(feature = "harness")]
pub mod rundir;
#[cfg(feature = "harness")]
pub mod suite;
