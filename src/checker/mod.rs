//! The delivery checker: reads a history once, front to back, keeping a small state
//! per message and per process (never the whole history), and says whether the queue
//! kept its promises.
//!
//! Invariants that must hold (any count above 0 makes the run invalid):
//!
//! - **lost**: a message known to exist (its produce ended `ok`, or it was delivered)
//!   that was never acknowledged by the end of the history, and that the drain did not
//!   list as left in the tree. An ack with an unknown outcome (`info`) counts as
//!   "possibly acknowledged" (see `ack_unknown`), never as lost.
//! - **duplicated past ack**: a message acknowledged `ok` twice, or delivered (take
//!   `ok`) by a take that was *invoked* after an `ok` ack of that message completed.
//!   Using the take's invoke (not its completion) keeps this sound: a take that was
//!   already running when the ack completed may have taken the message before the ack.
//! - **unexpected**: a delivered (or acknowledged) id that no produce ever invoked.
//! - **corrupt**: a delivery whose checksum differs from the produce's.
//! - **stuck**: never acknowledged, and listed by the final drain as still in the
//!   tree (in a slot recovery could not move, say). A scenario that expects it says
//!   `[expect] stuck = true`; it is then only reported.
//! - **divergent** and **not rejoined**: the members disagree on the queue tree
//!   after the final heal, or one never served again ([`members`], from
//!   `members.json`; a run without that file has them unchecked, and says so).
//!
//! Reported, allowed: recovered (produce `fail`/`info`/no outcome, yet delivered),
//! redelivered before ack (delivered twice or more before its first `ok` ack),
//! order inversions, ack unknown,
//! unavailability windows, availability and latency. `info` outcomes never count as
//! failures.
//!
//! **Order inversion** (FIFO is best effort): for one producer, whose produces are
//! sequential, number its `ok` produces 0, 1, 2, ... A message `m_i` is *inverted* when,
//! before the take that first delivered it was invoked, a later message `m_j` (`j > i`)
//! of the same producer had already been delivered (its take `ok` recorded). Concurrent
//! takes never count: only a delivery completed before the other take even began.
//!
//! **Unavailability window**: for each applied fault, from its start to the first `ok`
//! of a queue operation (produce, take, ack) that was invoked at or after that start.
//! Each access path (the history's `path`: `native`, `rest`) is also measured on its
//! own, its windows closed only by its own `ok`s: otherwise native operations that
//! keep succeeding hide a REST-only outage (the gateway paused or killed).
//! Faults come from `schedule.json` beside the history when present, else from the
//! history's nemesis lines (`ok` outcomes of ops that are not undo verbs).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::history::{self, Event, HistoryError, Phase};
use crate::rundir::{self, MemberViews, RunDir, RunDirError, Schedule};

pub mod members;
pub mod synthetic;

pub use members::MembersSummary;

/// How many example ids each finding keeps: enough to start debugging, small enough
/// to print.
pub const EXAMPLES: usize = 10;

/// Nemesis ops that undo a fault rather than start one (history fallback only).
const UNDO_OPS: &[&str] =
    &["heal", "start", "unpause", "rest-start", "rest-unpause", "undo", "recover", "end"];

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}:{line}: not a history line ({source}); only a truncated last line is tolerated"
    )]
    Parse { path: PathBuf, line: u64, source: serde_json::Error },
    /// The run directory around the history: no history, or an unreadable schedule.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
}

/// The checker's verdict and every figure it computed. Serialized into `results.json`
/// under `check`; its schema is documented in README.md ("Reports").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// True when lost, duplicated past ack, unexpected, corrupt and stuck are all
    /// 0 (stuck only where the scenario does not allow it).
    pub valid: bool,
    /// The scenario allows messages left stuck (`[expect] stuck = true`): they are
    /// then reported, not a violation.
    #[serde(default)]
    pub stuck_allowed: bool,
    /// The history that was checked.
    pub history: PathBuf,
    /// Lines read (not counting a truncated last line).
    pub events: u64,
    /// The last line was cut short (a crashed harness) and was ignored.
    pub truncated_last_line: bool,
    /// `t` of the last event: how long the recorded run lasted, in seconds.
    pub duration_s: f64,
    pub messages: MessageCounts,
    pub invariants: Invariants,
    /// Per operation kind (`produce`, `take`, `ack`): outcomes and latency.
    pub operations: BTreeMap<String, OperationStats>,
    /// Queue operations `ok` / all outcomes (`ok` + `fail` + `info`). An `info` is not a
    /// failure, but it is not an answer either, so it lowers availability.
    pub availability: f64,
    /// Where the fault windows came from: `schedule.json`, `history` or `none`.
    pub faults_source: String,
    /// One window per applied fault.
    pub unavailability: Vec<UnavailabilityWindow>,
    pub unavailability_summary: UnavailabilitySummary,
    pub drain: DrainInfo,
    /// What the divergence check compared (`members.json`); `None` when the run
    /// has no member views, and `divergent` and `not_rejoined` went unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<MembersSummary>,
}

/// How many messages reached each stage (distinct message ids).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageCounts {
    /// Distinct ids a produce was invoked for.
    pub produce_invoked: u64,
    /// Produce ended `ok` (at least once).
    pub produced_ok: u64,
    /// Every produce of the id ended `fail`.
    pub produce_failed: u64,
    /// The produce outcome is unknown (`info`, or no outcome recorded).
    pub produce_unknown: u64,
    /// Distinct ids delivered at least once.
    pub delivered: u64,
    /// Distinct ids acknowledged `ok`.
    pub acknowledged: u64,
}

/// One invariant's outcome: how many messages, and the first few ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub count: u64,
    /// The first ids found, in history order (at most [`EXAMPLES`]).
    pub examples: Vec<String>,
}

impl Finding {
    pub(crate) fn add(&mut self, id: &str) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(id.to_owned());
        }
    }
}

/// Every invariant, the ones that must be 0 first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Invariants {
    /// Must be 0.
    pub lost: Finding,
    /// Must be 0.
    pub duplicated_past_ack: Finding,
    /// Must be 0.
    pub unexpected: Finding,
    /// Must be 0.
    pub corrupt: Finding,
    /// Produce `fail`/`info` (or no outcome), delivered anyway. Allowed.
    pub recovered: Finding,
    /// Delivered more than once before its first `ok` ack. Allowed (at least once).
    pub redelivered_before_ack: Finding,
    /// Delivered after a later message of the same producer. Allowed (FIFO is best effort).
    pub order_inversions: Finding,
    /// Never acknowledged, listed by the drain as still in the tree. Must be 0,
    /// unless the scenario allows it.
    pub stuck: Finding,
    /// Last ack had an unknown outcome and the message never came back. Reported: it
    /// was most likely acknowledged.
    pub ack_unknown: Finding,
    /// Znodes the members disagree on after the final heal (examples: the path
    /// and each member's copy). Must be 0; `None`: not checked (no `members.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergent: Option<Finding>,
    /// Members that never served again after the final heal (examples: the
    /// member and its state). Must be 0; `None`: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_rejoined: Option<Finding>,
}

impl Invariants {
    /// The ones that must be 0, with their names as used in reports and JUnit:
    /// `stuck` too (a drain that leaves a message where nothing can move it is a
    /// broken promise), unless the scenario allows it (`[expect] stuck = true`).
    pub fn required(&self, stuck_allowed: bool) -> Vec<(&'static str, &Finding)> {
        let mut required = vec![
            ("lost", &self.lost),
            ("duplicated_past_ack", &self.duplicated_past_ack),
            ("unexpected", &self.unexpected),
            ("corrupt", &self.corrupt),
        ];
        if !stuck_allowed {
            required.push(("stuck", &self.stuck));
        }
        if let Some(divergent) = &self.divergent {
            required.push(("divergent", divergent));
        }
        if let Some(not_rejoined) = &self.not_rejoined {
            required.push(("not_rejoined", not_rejoined));
        }
        required
    }

    /// Must-be-0 invariants this run could not check (it has no member views):
    /// the reports name them rather than show a 0 nobody measured.
    pub fn unchecked(&self) -> Vec<&'static str> {
        let mut unchecked = Vec::new();
        if self.divergent.is_none() {
            unchecked.push("divergent");
        }
        if self.not_rejoined.is_none() {
            unchecked.push("not_rejoined");
        }
        unchecked
    }

    /// The ones that are only reported.
    pub fn reported(&self, stuck_allowed: bool) -> Vec<(&'static str, &Finding)> {
        let mut reported = vec![
            ("recovered", &self.recovered),
            ("redelivered_before_ack", &self.redelivered_before_ack),
            ("order_inversions", &self.order_inversions),
        ];
        if stuck_allowed {
            reported.push(("stuck", &self.stuck));
        }
        reported.push(("ack_unknown", &self.ack_unknown));
        reported
    }
}

/// Outcomes and latency of one operation kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationStats {
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Takes that found the queue empty (included in `ok`, not in latency: an empty
    /// take's time is mostly its wait for a message).
    #[serde(default)]
    pub empty: u64,
    /// `ok` / (`ok` + `fail` + `info`); 1.0 when nothing completed.
    pub availability: f64,
    /// Latency of `ok` outcomes.
    pub latency_ms: LatencySummary,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Summarises a histogram recorded in microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            mean: histogram.mean() / 1000.0,
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

/// From a fault's start to the first `ok` queue operation invoked after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnavailabilityWindow {
    pub fault: String,
    pub target: String,
    /// Seconds since the run started.
    pub start: f64,
    /// `t` of the first `ok` invoked at or after `start`; `None`: no such `ok` in the
    /// history (the queue never answered again, or the history ends first).
    pub end: Option<f64>,
    pub duration_s: Option<f64>,
    /// `duration_s` of each access path on its own (`native`, `rest`): until the first
    /// `ok` of that path invoked at or after `start`; `None`: that path never answered
    /// again. Only paths with queue operations in the run have an entry; empty in
    /// results written before paths were measured apart.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_access: BTreeMap<String, Option<f64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnavailabilitySummary {
    pub faults: u64,
    /// Windows that never closed.
    pub unresolved: u64,
    pub median_s: Option<f64>,
    pub max_s: Option<f64>,
    /// Median per fault kind (`kill`, `partition`, ...), closed windows only.
    pub median_by_fault: BTreeMap<String, f64>,
    /// The same figures for each access path on its own (`native`, `rest`; see
    /// [`UnavailabilityWindow::by_access`]), so a REST-only outage shows even while
    /// native operations succeed. Only paths with queue operations in the run have an
    /// entry; empty inside a per-path summary and in older results.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_access: BTreeMap<String, UnavailabilitySummary>,
}

impl UnavailabilitySummary {
    /// Whether per-path figures say more than the overall ones: with a single access
    /// path its windows are the overall windows, so reports show paths only when two
    /// or more ran.
    pub fn has_several_access_paths(&self) -> bool {
        self.by_access.len() > 1
    }
}

/// What the final drain said about itself (process `drain`, op `drain`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainInfo {
    /// A drain outcome line was found.
    pub recorded: bool,
    /// The drain emptied `messages` and `partial` (its line was `ok`).
    pub complete: bool,
    pub detail: Option<String>,
    /// Ids it listed as left in the tree (op `leftover`).
    pub leftovers: u64,
}

/// One history line, borrowed from the read buffer: parsing allocates nothing for
/// lines without escapes.
#[derive(Deserialize)]
struct RawLine<'a> {
    t: f64,
    #[serde(borrow)]
    process: Cow<'a, str>,
    #[serde(borrow)]
    op: Cow<'a, str>,
    phase: Phase,
    #[serde(borrow, default)]
    msg: Option<Cow<'a, str>>,
    #[serde(default)]
    checksum: Option<u32>,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(borrow, default)]
    target: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
}

/// The fields the checker reads, whatever they were parsed into.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub t: f64,
    pub process: &'a str,
    pub op: &'a str,
    pub phase: Phase,
    pub msg: Option<&'a str>,
    pub checksum: Option<u32>,
    pub latency_ms: Option<f64>,
    pub target: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The access path of a queue operation: `native` or `rest`.
    pub path: Option<&'a str>,
}

impl EventView<'_> {
    /// A take that found the queue empty: recorded as take `ok` without `msg`, or as
    /// take `fail` with `error: "empty"`. Either way the queue answered.
    pub fn is_empty_take(&self) -> bool {
        self.op == "take"
            && self.msg.is_none()
            && match self.phase {
                Phase::Ok => true,
                Phase::Fail => self.error == Some("empty"),
                _ => false,
            }
    }

    /// The outcome as the statistics count it: an empty take is an `ok` answer.
    pub fn effective_phase(&self) -> Phase {
        if self.is_empty_take() {
            Phase::Ok
        } else {
            self.phase
        }
    }
}

impl<'a> From<&'a Event> for EventView<'a> {
    fn from(event: &'a Event) -> Self {
        Self {
            t: event.t,
            process: &event.process,
            op: &event.op,
            phase: event.phase,
            msg: event.msg.as_deref(),
            checksum: event.checksum,
            latency_ms: event.latency_ms,
            target: event.target.as_deref(),
            detail: event.detail.as_deref(),
            error: event.error.as_deref(),
            path: event.path.as_deref(),
        }
    }
}

impl<'a> RawLine<'a> {
    fn view(&'a self) -> EventView<'a> {
        EventView {
            t: self.t,
            process: &self.process,
            op: &self.op,
            phase: self.phase,
            msg: self.msg.as_deref(),
            checksum: self.checksum,
            latency_ms: self.latency_ms,
            target: self.target.as_deref(),
            detail: self.detail.as_deref(),
            error: self.error.as_deref(),
            path: self.path.as_deref(),
        }
    }
}

/// A queue operation kind; `None` for anything else (nemesis, drain bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Produce = 0,
    Take = 1,
    Ack = 2,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Produce, Kind::Take, Kind::Ack];

    pub fn parse(op: &str) -> Option<Kind> {
        match op {
            "produce" => Some(Kind::Produce),
            "take" => Some(Kind::Take),
            "ack" => Some(Kind::Ack),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Produce => "produce",
            Kind::Take => "take",
            Kind::Ack => "ack",
        }
    }
}

const NONE: u32 = u32::MAX;
/// `acked_at` of a message never acknowledged. History indexes are kept in 32
/// bits (a message costs less): a history of up to 4,294,967,294 lines.
const NEVER: u32 = u32::MAX;

// Message flags: one bit per fact, so each message is counted once per finding.
const PRODUCE_INVOKED: u16 = 1;
const DELIVERED: u16 = 1 << 1;
const ACKED: u16 = 1 << 2;
const ACK_INFO: u16 = 1 << 3;
const LEFTOVER: u16 = 1 << 4;
const UNEXPECTED: u16 = 1 << 5;
const DUPLICATED: u16 = 1 << 6;
const CORRUPT: u16 = 1 << 7;
const REDELIVERED: u16 = 1 << 9;
const INVERTED: u16 = 1 << 10;
/// `checksum` holds the produced payload's CRC.
const HAS_CHECKSUM: u16 = 1 << 11;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ProduceState {
    /// Invoked, no outcome yet (or never).
    Pending,
    Fail,
    Info,
    Ok,
}

/// What the checker remembers of one message: 20 bytes, plus about 24 for its id
/// in [`MessageIds`]. Soaks check millions of messages, live and after the run.
#[derive(Debug, Clone)]
struct Message {
    /// CRC-32 of the produced payload, when `flags` has [`HAS_CHECKSUM`].
    checksum: u32,
    /// Interned producer process, [`NONE`] if never produced.
    producer: u32,
    /// Rank among the producer's `ok` produces, [`NONE`] if none ended `ok`.
    rank: u32,
    /// History index of the first `ok` ack, [`NEVER`] if none.
    acked_at: u32,
    flags: u16,
    produce: ProduceState,
    /// Deliveries before the first `ok` ack, counted up to 255 (only "2 or more"
    /// matters).
    deliveries_before_ack: u8,
}

/// Message ids, interned to slots of `Checker::messages` in first-seen order. The
/// workload's ids are UUIDs, kept as their 16 bytes; any other id as its text.
#[derive(Debug, Default)]
struct MessageIds {
    uuids: HashMap<[u8; 16], u32, RandomBytes>,
    others: HashMap<Box<str>, u32>,
}

impl MessageIds {
    /// The canonical (lowercase, hyphenated) UUID form, which formats back to `id`.
    fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
        if id.len() != 36 || id.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        uuid::Uuid::try_parse(id).ok().map(|uuid| *uuid.as_bytes())
    }

    /// The slot of `id`, or `next` given to it when it is new (then `true`): one
    /// parse and one lookup, on the checker's hottest path.
    fn intern(&mut self, id: &str, next: u32) -> (u32, bool) {
        let entry = |slot: &mut u32| (*slot, *slot == next);
        match Self::uuid_bytes(id) {
            Some(bytes) => entry(self.uuids.entry(bytes).or_insert(next)),
            None => match self.others.get_mut(id) {
                Some(slot) => entry(slot),
                None => {
                    self.others.insert(id.into(), next);
                    (next, true)
                }
            },
        }
    }

    /// Drops the ids of slots below `cut` and moves the others down by `cut`.
    fn forget_below(&mut self, cut: u32) {
        let keep = |slot: &mut u32| {
            let kept = *slot >= cut;
            *slot = slot.wrapping_sub(cut);
            kept
        };
        self.uuids.retain(|_, slot| keep(slot));
        self.others.retain(|_, slot| keep(slot));
    }

    /// The ids of these slots (one pass over every id: for the few examples).
    fn names(&self, slots: &[u32]) -> HashMap<u32, String> {
        let wanted: std::collections::HashSet<u32> = slots.iter().copied().collect();
        let uuids = self.uuids.iter().filter(|(_, slot)| wanted.contains(slot));
        let uuids = uuids.map(|(bytes, &slot)| (slot, uuid::Uuid::from_bytes(*bytes).to_string()));
        let others = self.others.iter().filter(|(_, slot)| wanted.contains(slot));
        uuids.chain(others.map(|(id, &slot)| (slot, id.to_string()))).collect()
    }
}

/// Hashes keys that are already random (UUID v4 bytes) by folding and mixing
/// them: less work than SipHash on the checker's hottest path (SipHash's defence
/// against chosen keys buys nothing for ids our own workload draws), and any
/// UUID still spreads (the multiply mixes every bit into the high ones).
#[derive(Debug, Default, Clone, Copy)]
struct RandomBytes;

impl std::hash::BuildHasher for RandomBytes {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(0)
    }
}

struct FoldHasher(u64);

impl std::hash::Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// A finding decided at the end, over slots: its count and its first slots.
#[derive(Debug, Default)]
struct SlotFinding {
    count: u64,
    slots: Vec<u32>,
}

impl SlotFinding {
    fn add(&mut self, slot: u32) {
        self.count += 1;
        if self.slots.len() < EXAMPLES {
            self.slots.push(slot);
        }
    }

    fn into_finding(self, names: &HashMap<u32, String>) -> Finding {
        let examples = self.slots.iter().filter_map(|slot| names.get(slot).cloned()).collect();
        Finding { count: self.count, examples }
    }
}

/// A process's operation in progress (processes are sequential).
#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: Kind,
    index: u64,
    t: f64,
}

/// For the order check: when this producer's highest delivered rank rose.
#[derive(Debug, Default)]
struct ProducerOrder {
    next_rank: u32,
    /// (history index of the delivery, highest rank delivered so far), increasing.
    max_rank_log: Vec<(u32, u32)>,
}

impl ProducerOrder {
    /// Highest rank delivered by events strictly before `index`.
    fn max_rank_before(&self, index: u64) -> Option<u32> {
        let position = self.max_rank_log.partition_point(|(at, _)| u64::from(*at) < index);
        position.checked_sub(1).map(|p| self.max_rank_log[p].1)
    }
}

#[derive(Debug)]
struct OperationCounter {
    stats: OperationStats,
    latency_micros: Histogram<u64>,
}

impl OperationCounter {
    fn new() -> Self {
        Self { stats: OperationStats::default(), latency_micros: latency_histogram() }
    }
}

/// A histogram of latencies in microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// Which unavailability windows one group of operations (all of them, or one access
/// path's) has not closed yet, and when it closed the others. The windows themselves
/// (fault, start) are shared by every group.
#[derive(Debug, Default)]
struct WindowClosings {
    /// Indexes of windows that started and that no `ok` of this group closed yet.
    open: Vec<usize>,
    /// `t` of the `ok` that closed each window, by window index; missing or `None`:
    /// not closed.
    ends: Vec<Option<f64>>,
}

impl WindowClosings {
    /// A group first seen after `started` windows began: none of them is closed for it.
    fn with_open(started: usize) -> Self {
        Self { open: (0..started).collect(), ends: Vec::new() }
    }

    /// An `ok` invoked at `invoke_t` and completed at `t` closes every open window that
    /// started at or before its invoke: an operation already in flight when the fault
    /// began proves nothing about the outage.
    fn close(&mut self, windows: &[UnavailabilityWindow], invoke_t: f64, t: f64) {
        if self.open.is_empty() {
            return;
        }
        let ends = &mut self.ends;
        self.open.retain(|&w| {
            if windows[w].start > invoke_t {
                return true;
            }
            if ends.len() <= w {
                ends.resize(w + 1, None);
            }
            ends[w] = Some(t);
            false
        });
    }

    fn end(&self, window: usize) -> Option<f64> {
        self.ends.get(window).copied().flatten()
    }
}

/// A fault for the unavailability windows.
#[derive(Debug, Clone)]
pub struct FaultStart {
    pub fault: String,
    pub target: String,
    pub start: f64,
}

/// The streaming checker. Feed it events in history order with [`Checker::observe`]
/// (or a whole file with [`check_history`]), then call [`Checker::finish`].
#[derive(Debug)]
pub struct Checker {
    index: u64,
    last_t: f64,
    ids: MessageIds,
    messages: Vec<Message>,
    pending: HashMap<Box<str>, Pending>,
    producer_ids: HashMap<Box<str>, u32>,
    producers: Vec<ProducerOrder>,
    operations: [OperationCounter; 3],
    invariants: Invariants,
    faults_source: String,
    faults_from_history: bool,
    windows: Vec<UnavailabilityWindow>,
    /// Closings by any queue operation: the windows' own `end`.
    closings: WindowClosings,
    /// Closings by each access path's operations alone, in first-seen order (a
    /// history has one or two paths, so a scan beats a map).
    closings_by_access: Vec<(Box<str>, WindowClosings)>,
    /// Windows `[0, next_window)` have started (by `t`).
    next_window: usize,
    drain: DrainInfo,
    /// Messages left stuck are reported, not a violation (the scenario says so).
    stuck_allowed: bool,
    /// The live view's bound on remembered messages ([`Checker::remembering_at_most`]);
    /// None remembers every message (the check of a whole history).
    memory_limit: Option<usize>,
    /// Messages forgotten under `memory_limit` so far: once any is, a message seen
    /// without its produce may be a forgotten one, so it is not judged unexpected.
    forgotten: u64,
    /// The members' views at the end of the run, judged in `finish`.
    members: Option<MemberViews>,
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    /// A checker that takes fault windows from the history's nemesis lines.
    pub fn new() -> Self {
        Self {
            index: 0,
            last_t: 0.0,
            ids: MessageIds::default(),
            messages: Vec::new(),
            pending: HashMap::new(),
            producer_ids: HashMap::new(),
            producers: Vec::new(),
            operations: [OperationCounter::new(), OperationCounter::new(), OperationCounter::new()],
            invariants: Invariants::default(),
            faults_source: "none".into(),
            faults_from_history: true,
            stuck_allowed: false,
            windows: Vec::new(),
            closings: WindowClosings::default(),
            closings_by_access: Vec::new(),
            next_window: 0,
            drain: DrainInfo::default(),
            memory_limit: None,
            forgotten: 0,
            members: None,
        }
    }

    /// Judges divergence and members that never came back from these views (a
    /// run's `members.json`) when the check finishes.
    pub fn with_members(mut self, views: Option<MemberViews>) -> Self {
        self.members = views;
        self
    }

    /// Remembers at most about `limit` messages (between `limit` and twice that),
    /// forgetting the first seen first: the live view of a run of any length, whose
    /// memory must stay flat. A forgotten message seen again cannot be told from
    /// one never produced, so it is not judged: the live view may miss a violation
    /// on a message older than its window, which the check after the run, which
    /// remembers everything, still finds. `finish` of such a checker covers only
    /// what it remembers.
    pub fn remembering_at_most(mut self, limit: usize) -> Self {
        self.memory_limit = Some(limit.max(1));
        self
    }

    /// Messages this checker remembers now.
    pub fn remembered(&self) -> usize {
        self.messages.len()
    }

    /// Forgets the `count` messages seen first; the others keep their order.
    fn forget_first(&mut self, count: usize) {
        self.ids.forget_below(count as u32);
        self.messages.drain(..count);
        self.forgotten += count as u64;
    }

    /// Messages the drain left in the tree are reported, not a violation: for a
    /// scenario that expects them (`[expect] stuck = true`).
    pub fn allowing_stuck(mut self, allowed: bool) -> Self {
        self.stuck_allowed = allowed;
        self
    }

    /// A checker that takes fault windows from a known schedule (applied faults only)
    /// and ignores the history's nemesis lines for them.
    pub fn with_schedule(schedule: &Schedule) -> Self {
        let mut faults: Vec<FaultStart> = schedule
            .faults
            .iter()
            .filter(|fault| fault.applied)
            .map(|fault| FaultStart {
                fault: fault.fault.clone(),
                target: fault.resolved.clone().unwrap_or_else(|| fault.target.clone()),
                start: fault.applied_at.unwrap_or(fault.start),
            })
            .collect();
        faults.sort_by(|a, b| a.start.total_cmp(&b.start));
        let mut checker = Self::new();
        checker.faults_from_history = false;
        checker.faults_source = rundir::SCHEDULE.into();
        checker.windows = faults
            .into_iter()
            .map(|fault| UnavailabilityWindow {
                fault: fault.fault,
                target: fault.target,
                start: fault.start,
                end: None,
                duration_s: None,
                by_access: BTreeMap::new(),
            })
            .collect();
        checker
    }

    /// Violations of the must-be-0 invariants known so far. `lost` is only known at
    /// the end, so it is not included.
    pub fn violations_so_far(&self) -> u64 {
        self.invariants.duplicated_past_ack.count
            + self.invariants.unexpected.count
            + self.invariants.corrupt.count
    }

    /// Events observed so far.
    pub fn events(&self) -> u64 {
        self.index
    }

    /// Feeds one event (owned form); see [`Checker::observe_view`].
    pub fn observe(&mut self, event: &Event) {
        self.observe_view(EventView::from(event));
    }

    /// Feeds one event, in history order.
    pub fn observe_view(&mut self, event: EventView<'_>) {
        let index = self.index;
        self.index += 1;
        if event.t > self.last_t {
            self.last_t = event.t;
        }
        while self.next_window < self.windows.len()
            && self.windows[self.next_window].start <= event.t
        {
            self.open_next_window();
        }
        match Kind::parse(event.op) {
            Some(kind) => self.observe_operation(kind, index, event),
            None if event.process == "nemesis" => self.observe_nemesis(event),
            None if event.op == "drain" && event.phase != Phase::Invoke => {
                self.drain.recorded = true;
                self.drain.complete = event.phase == Phase::Ok;
                self.drain.detail = event.detail.map(str::to_owned);
            }
            None if event.op == "leftover" => {
                if let Some(id) = event.msg {
                    self.drain.leftovers += 1;
                    let slot = self.message_slot(id);
                    self.messages[slot].flags |= LEFTOVER;
                }
            }
            None => {}
        }
    }

    fn observe_nemesis(&mut self, event: EventView<'_>) {
        if !self.faults_from_history
            || event.phase != Phase::Ok
            || UNDO_OPS.iter().any(|undo| event.op.starts_with(undo))
        {
            return;
        }
        self.faults_source = "history".into();
        // Nemesis lines arrive in time order, so appending keeps `windows` sorted.
        self.windows.push(UnavailabilityWindow {
            fault: event.op.to_owned(),
            target: event.target.unwrap_or("").to_owned(),
            start: event.t,
            end: None,
            duration_s: None,
            by_access: BTreeMap::new(),
        });
        self.open_next_window();
    }

    /// Window `next_window` has started: open for every group of operations.
    fn open_next_window(&mut self) {
        let window = self.next_window;
        self.next_window += 1;
        self.closings.open.push(window);
        for (_, closings) in &mut self.closings_by_access {
            closings.open.push(window);
        }
    }

    /// Measures `path` from its first operation on: every window started so far is
    /// open for it, as none of its operations closed one.
    fn register_access_path(&mut self, path: &str) {
        if !self.closings_by_access.iter().any(|(name, _)| **name == *path) {
            let closings = WindowClosings::with_open(self.next_window);
            self.closings_by_access.push((path.into(), closings));
        }
    }

    fn message_slot(&mut self, id: &str) -> usize {
        let (slot, new) = self.ids.intern(id, self.messages.len() as u32);
        if !new {
            return slot as usize;
        }
        if let Some(limit) = self.memory_limit {
            if self.messages.len() >= 2 * limit {
                // The new id's slot moves down with the others: it stays the next one.
                self.forget_first(self.messages.len() - limit);
            }
        }
        self.messages.push(Message {
            checksum: 0,
            producer: NONE,
            rank: NONE,
            acked_at: NEVER,
            flags: 0,
            produce: ProduceState::Pending,
            deliveries_before_ack: 0,
        });
        self.messages.len() - 1
    }

    fn producer_id(&mut self, process: &str) -> u32 {
        if let Some(&id) = self.producer_ids.get(process) {
            return id;
        }
        let id = self.producers.len() as u32;
        self.producer_ids.insert(process.into(), id);
        self.producers.push(ProducerOrder::default());
        id
    }

    fn observe_operation(&mut self, kind: Kind, index: u64, event: EventView<'_>) {
        // Registered on any phase: a path whose operations all fail still ran.
        if let Some(path) = event.path {
            self.register_access_path(path);
        }
        if event.phase == Phase::Invoke {
            self.operations[kind as usize].stats.invoked += 1;
            let pending = Pending { kind, index, t: event.t };
            match self.pending.get_mut(event.process) {
                Some(slot) => *slot = pending,
                None => {
                    self.pending.insert(event.process.into(), pending);
                }
            }
            if kind == Kind::Produce {
                if let Some(id) = event.msg {
                    let producer = self.producer_id(event.process);
                    let slot = self.message_slot(id);
                    let message = &mut self.messages[slot];
                    message.flags |= PRODUCE_INVOKED;
                    message.producer = producer;
                    if let Some(checksum) =
                        event.checksum.filter(|_| message.flags & HAS_CHECKSUM == 0)
                    {
                        message.checksum = checksum;
                        message.flags |= HAS_CHECKSUM;
                    }
                }
            }
            return;
        }

        let invoked = self
            .pending
            .get_mut(event.process)
            .and_then(|pending| (pending.kind == kind).then_some(*pending));
        let (invoke_index, invoke_t) = invoked.map(|p| (p.index, p.t)).unwrap_or((index, event.t));

        let counter = &mut self.operations[kind as usize];
        match event.effective_phase() {
            Phase::Ok if event.is_empty_take() => {
                counter.stats.ok += 1;
                counter.stats.empty += 1;
                self.close_windows(event.path, invoke_t, event.t);
            }
            Phase::Ok => {
                counter.stats.ok += 1;
                let latency_ms = event.latency_ms.unwrap_or((event.t - invoke_t) * 1000.0);
                counter.latency_micros.saturating_record((latency_ms * 1000.0).max(1.0) as u64);
                self.close_windows(event.path, invoke_t, event.t);
            }
            Phase::Fail => counter.stats.fail += 1,
            Phase::Info => counter.stats.info += 1,
            Phase::Invoke => unreachable!("handled above"),
        }

        let Some(id) = event.msg else { return };
        match (kind, event.phase) {
            (Kind::Produce, phase) => self.produce_outcome(id, event.process, phase),
            (Kind::Take, Phase::Ok) => self.delivered(id, index, invoke_index, event.checksum),
            (Kind::Ack, Phase::Ok) => {
                let slot = self.message_slot(id);
                let judged = self.forgotten == 0;
                let message = &mut self.messages[slot];
                if judged && message.flags & PRODUCE_INVOKED == 0 && message.flags & UNEXPECTED == 0
                {
                    message.flags |= UNEXPECTED;
                    self.invariants.unexpected.add(id);
                }
                if message.flags & ACKED != 0 {
                    if message.flags & DUPLICATED == 0 {
                        message.flags |= DUPLICATED;
                        self.invariants.duplicated_past_ack.add(id);
                    }
                } else {
                    message.flags |= ACKED;
                    message.acked_at = index.min(u64::from(NEVER - 1)) as u32;
                }
            }
            (Kind::Ack, Phase::Info) => {
                let slot = self.message_slot(id);
                self.messages[slot].flags |= ACK_INFO;
            }
            _ => {}
        }
    }

    fn produce_outcome(&mut self, id: &str, process: &str, phase: Phase) {
        let slot = self.message_slot(id);
        let outcome = match phase {
            Phase::Ok => ProduceState::Ok,
            Phase::Fail => ProduceState::Fail,
            _ => ProduceState::Info,
        };
        let message = &self.messages[slot];
        if outcome <= message.produce {
            return;
        }
        let first_ok = outcome == ProduceState::Ok;
        let producer =
            if message.producer == NONE { self.producer_id(process) } else { message.producer };
        let message = &mut self.messages[slot];
        message.produce = outcome;
        message.producer = producer;
        if first_ok {
            let order = &mut self.producers[producer as usize];
            message.rank = order.next_rank;
            order.next_rank += 1;
        }
    }

    fn delivered(&mut self, id: &str, index: u64, invoke_index: u64, checksum: Option<u32>) {
        let slot = self.message_slot(id);
        let judged = self.forgotten == 0;
        let message = &mut self.messages[slot];
        if message.flags & PRODUCE_INVOKED == 0 {
            if judged && message.flags & UNEXPECTED == 0 {
                message.flags |= UNEXPECTED;
                self.invariants.unexpected.add(id);
            }
        } else {
            let produced = (message.flags & HAS_CHECKSUM != 0).then_some(message.checksum);
            if let (Some(produced), Some(delivered)) = (produced, checksum) {
                if produced != delivered && message.flags & CORRUPT == 0 {
                    message.flags |= CORRUPT;
                    self.invariants.corrupt.add(id);
                }
            }
        }
        if message.acked_at != NEVER && invoke_index > u64::from(message.acked_at) {
            if message.flags & DUPLICATED == 0 {
                message.flags |= DUPLICATED;
                self.invariants.duplicated_past_ack.add(id);
            }
        } else if message.acked_at == NEVER {
            message.deliveries_before_ack = message.deliveries_before_ack.saturating_add(1);
            if message.deliveries_before_ack == 2 && message.flags & REDELIVERED == 0 {
                message.flags |= REDELIVERED;
                self.invariants.redelivered_before_ack.add(id);
            }
        }
        // A new delivery needs a new ack: an earlier unknown ack evidently did not
        // remove the message.
        message.flags &= !ACK_INFO;
        let first_delivery = message.flags & DELIVERED == 0;
        message.flags |= DELIVERED;

        if first_delivery && message.rank != NONE {
            let (producer, rank) = (message.producer as usize, message.rank);
            let order = &mut self.producers[producer];
            if order.max_rank_before(invoke_index).is_some_and(|max| max > rank) {
                self.messages[slot].flags |= INVERTED;
                self.invariants.order_inversions.add(id);
            }
            let order = &mut self.producers[producer];
            if order.max_rank_log.last().is_none_or(|&(_, max)| rank > max) {
                order.max_rank_log.push((index.min(u64::from(u32::MAX)) as u32, rank));
            }
        }
    }

    /// An `ok` of `path` invoked at `invoke_t`, completed at `t`.
    fn close_windows(&mut self, path: Option<&str>, invoke_t: f64, t: f64) {
        self.closings.close(&self.windows, invoke_t, t);
        let path_closings = path
            .and_then(|path| self.closings_by_access.iter_mut().find(|(name, _)| **name == *path));
        if let Some((_, closings)) = path_closings {
            closings.close(&self.windows, invoke_t, t);
        }
    }

    /// The windows with their ends, overall and per access path.
    fn closed_windows(
        mut windows: Vec<UnavailabilityWindow>,
        closings: &WindowClosings,
        closings_by_access: &[(Box<str>, WindowClosings)],
    ) -> Vec<UnavailabilityWindow> {
        for (index, window) in windows.iter_mut().enumerate() {
            let start = window.start;
            window.end = closings.end(index);
            window.duration_s = window.end.map(|end| end - start);
            window.by_access = closings_by_access
                .iter()
                .map(|(path, closings)| (path.to_string(), closings.end(index).map(|e| e - start)))
                .collect();
        }
        windows
    }

    /// Ends the check: decides lost, stuck and ack-unknown, and summarises.
    pub fn finish(self, history: PathBuf, truncated_last_line: bool) -> CheckResult {
        let mut invariants = self.invariants;
        let mut counts = MessageCounts::default();
        // Decided per slot, in first-seen order, so examples are stable; the few
        // example ids are looked up once at the end.
        let mut recovered = SlotFinding::default();
        let mut stuck = SlotFinding::default();
        let mut ack_unknown = SlotFinding::default();
        let mut lost = SlotFinding::default();
        for (slot, message) in self.messages.iter().enumerate() {
            let slot = slot as u32;
            let flags = message.flags;
            if flags & PRODUCE_INVOKED != 0 {
                counts.produce_invoked += 1;
                match message.produce {
                    ProduceState::Ok => counts.produced_ok += 1,
                    ProduceState::Fail => counts.produce_failed += 1,
                    ProduceState::Info | ProduceState::Pending => counts.produce_unknown += 1,
                }
            }
            if flags & DELIVERED != 0 {
                counts.delivered += 1;
                // Decided here, not at the delivery: a produce's `ok` is often
                // logged just after a consumer already took the message.
                if flags & PRODUCE_INVOKED != 0 && message.produce != ProduceState::Ok {
                    recovered.add(slot);
                }
            }
            if flags & ACKED != 0 {
                counts.acknowledged += 1;
                continue;
            }
            if flags & UNEXPECTED != 0 {
                continue;
            }
            let exists = message.produce == ProduceState::Ok || flags & DELIVERED != 0;
            if !exists {
                continue;
            }
            if flags & LEFTOVER != 0 {
                stuck.add(slot);
            } else if flags & ACK_INFO != 0 {
                ack_unknown.add(slot);
            } else {
                lost.add(slot);
            }
        }
        let decided: [&SlotFinding; 4] = [&recovered, &stuck, &ack_unknown, &lost];
        let wanted: Vec<u32> = decided.iter().flat_map(|f| f.slots.iter().copied()).collect();
        let names = self.ids.names(&wanted);
        invariants.recovered = recovered.into_finding(&names);
        invariants.stuck = stuck.into_finding(&names);
        invariants.ack_unknown = ack_unknown.into_finding(&names);
        invariants.lost = lost.into_finding(&names);

        let mut operations = BTreeMap::new();
        let (mut ok, mut answered) = (0, 0);
        for (kind, counter) in Kind::ALL.iter().zip(self.operations.iter()) {
            let mut stats = counter.stats.clone();
            let completed = stats.ok + stats.fail + stats.info;
            stats.availability =
                if completed == 0 { 1.0 } else { stats.ok as f64 / completed as f64 };
            stats.latency_ms = LatencySummary::from_micros(&counter.latency_micros);
            ok += stats.ok;
            answered += completed;
            operations.insert(kind.name().to_owned(), stats);
        }

        let windows = Self::closed_windows(self.windows, &self.closings, &self.closings_by_access);
        let paths = self.closings_by_access.iter().map(|(path, _)| &**path);
        let unavailability_summary = summarise_windows(&windows, paths);
        let stuck_allowed = self.stuck_allowed;
        let members = self.members.as_ref().map(members::judge).map(|verdict| {
            invariants.divergent = Some(verdict.divergent);
            invariants.not_rejoined = Some(verdict.not_rejoined);
            verdict.summary
        });
        let valid =
            invariants.required(stuck_allowed).iter().all(|(_, finding)| finding.count == 0);
        CheckResult {
            valid,
            stuck_allowed,
            history,
            events: self.index,
            truncated_last_line,
            duration_s: self.last_t,
            messages: counts,
            invariants,
            operations,
            availability: if answered == 0 { 1.0 } else { ok as f64 / answered as f64 },
            faults_source: if windows.is_empty() && self.faults_from_history {
                "none".into()
            } else {
                self.faults_source
            },
            unavailability: windows,
            unavailability_summary,
            drain: self.drain,
            members,
        }
    }
}

/// The middle value (the mean of the two middle ones for an even count); None
/// when empty. Every median of the results and reports is this one.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// The overall summary, with one per access path that ran (`paths`: every path the
/// windows' `by_access` has, so a run without faults still lists its paths).
fn summarise_windows<'a>(
    windows: &[UnavailabilityWindow],
    paths: impl Iterator<Item = &'a str>,
) -> UnavailabilitySummary {
    let mut summary = summarise_durations(windows.iter().map(|w| (w.fault.as_str(), w.duration_s)));
    summary.by_access = paths
        .map(|path| {
            let durations = windows
                .iter()
                .map(|w| (w.fault.as_str(), w.by_access.get(path).copied().flatten()));
            (path.to_owned(), summarise_durations(durations))
        })
        .collect();
    summary
}

/// Figures over `(fault kind, duration)` pairs, one per window; `None`: never closed.
fn summarise_durations<'a>(
    windows: impl Iterator<Item = (&'a str, Option<f64>)>,
) -> UnavailabilitySummary {
    let (mut faults, mut unresolved) = (0, 0);
    let mut closed = Vec::new();
    let mut by_fault: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (fault, duration) in windows {
        faults += 1;
        match duration {
            Some(duration) => {
                closed.push(duration);
                by_fault.entry(fault.to_owned()).or_default().push(duration);
            }
            None => unresolved += 1,
        }
    }
    UnavailabilitySummary {
        faults,
        unresolved,
        max_s: closed.iter().copied().reduce(f64::max),
        median_s: median(&mut closed),
        median_by_fault: by_fault
            .into_iter()
            .filter_map(|(fault, mut values)| median(&mut values).map(|m| (fault, m)))
            .collect(),
        by_access: BTreeMap::new(),
    }
}

/// Checks a run directory or a `history.jsonl` in one streaming pass. A
/// `schedule.json` beside the history supplies the fault windows.
pub fn check_history(path: &Path) -> Result<CheckResult, CheckError> {
    let (run_dir, history) = RunDir::locate_history(path)?;
    let mut checker = match run_dir.read_schedule()? {
        Some(schedule) => Checker::with_schedule(&schedule),
        None => Checker::new(),
    };
    checker = checker
        .allowing_stuck(run_dir.read_scenario()?.is_some_and(|s| stuck_allowed(&s)))
        .with_members(run_dir.read_members()?);
    let truncated = for_each_line(&history, |view| checker.observe_view(view))?;
    Ok(checker.finish(history, truncated))
}

/// Whether a scenario's text says `[expect] stuck = true`. Read as plain TOML: the
/// checker knows run directories, not the chaos schema.
fn stuck_allowed(scenario: &str) -> bool {
    scenario
        .parse::<toml::Table>()
        .ok()
        .and_then(|table| table.get("expect")?.get("stuck")?.as_bool())
        .unwrap_or(false)
}

/// Streams a history file's lines to `visit`; returns whether a truncated last line
/// was skipped. Any other unparsable line is an error naming its line number.
pub fn for_each_line(
    path: &Path,
    mut visit: impl FnMut(EventView<'_>),
) -> Result<bool, CheckError> {
    let read_error = |source| CheckError::Read { path: path.to_owned(), source };
    let mut reader = history::open(path).map_err(|err| match err {
        HistoryError::Open { source, .. } => read_error(source),
        other => read_error(std::io::Error::other(other.to_string())),
    })?;
    let mut line = String::new();
    let mut number = 0u64;
    let mut bad: Option<(u64, serde_json::Error)> = None;
    loop {
        line.clear();
        let read = match reader.read_line(&mut line) {
            Ok(read) => read,
            // A gzip history whose writer was killed: what was flushed is whole; a
            // line cut at the tear is dropped like a torn last line.
            Err(err) if history::is_torn_gzip(&err) => return Ok(true),
            Err(source) => return Err(read_error(source)),
        };
        if read == 0 {
            break;
        }
        number += 1;
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        if let Some((line, source)) = bad.take() {
            // An unparsable line followed by more lines is damage, not a crash.
            return Err(CheckError::Parse { path: path.to_owned(), line, source });
        }
        match serde_json::from_str::<RawLine<'_>>(text) {
            Ok(raw) => visit(raw.view()),
            Err(source) => bad = Some((number, source)),
        }
    }
    Ok(bad.is_some())
}
