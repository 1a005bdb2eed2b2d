//! Live progress of a running chaos run, on stderr: an `indicatif` bar on a
//! terminal, one plain line every few seconds otherwise (CI logs keep no bars).
//!
//! The run loop feeds it every history event ([`Progress::observe`]) and tells it
//! when faults start and end; it keeps its own streaming [`Checker`], bounded to
//! [`LIVE_MESSAGES`], so it can show violations as they happen (duplicates,
//! unexpected and corrupt deliveries are known online; losses only at the end). Cheap to clone; all clones share one view.
//! [`Progress::first_violation`] lets the run loop stop at the first of them
//! (`--stop-on-violation`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::checker::{Checker, EventView, Kind};
use crate::history::{Event, Phase};

/// Messages the live view's checker remembers (between this and twice this, about
/// 65 bytes each): the harness's memory stays flat however long the run, and a
/// violation is seen live while its message is among the last half million or so
/// (at a soak's 350 messages/s, the last 25 minutes). The check after the run
/// remembers every message.
pub const LIVE_MESSAGES: usize = 500_000;

/// What the progress line shows, for callers that print their own.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressSnapshot {
    pub elapsed: Duration,
    pub planned: Duration,
    /// `workload`, then whatever [`Progress::set_phase`] said (`healing`, `draining`).
    pub phase: String,
    /// Completed queue operations per second over the last reporting interval.
    pub ops_per_s: f64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub active_faults: Vec<String>,
    pub faults_applied: u64,
    /// Must-be-zero violations seen so far (lost is only known at the end).
    pub violations: u64,
}

impl ProgressSnapshot {
    /// The one-line rendering used by both modes.
    pub fn line(&self) -> String {
        let faults = if self.active_faults.is_empty() {
            "none".to_owned()
        } else {
            self.active_faults.join(", ")
        };
        format!(
            "{phase} {elapsed}s/{planned}s | {rate:.0} ops/s | ok {ok} fail {fail} unknown {info} | faults {applied} applied, active: {faults} | violations {violations}",
            phase = self.phase,
            elapsed = self.elapsed.as_secs(),
            planned = self.planned.as_secs(),
            rate = self.ops_per_s,
            ok = self.ok,
            fail = self.fail,
            info = self.info,
            applied = self.faults_applied,
            violations = self.violations,
        )
    }
}

struct State {
    started: Instant,
    planned: Duration,
    phase: String,
    checker: Checker,
    counts: [u64; 3],
    active_faults: Vec<String>,
    faults_applied: u64,
    last_tick: (Instant, u64),
    ops_per_s: f64,
}

impl State {
    fn snapshot(&mut self) -> ProgressSnapshot {
        let now = Instant::now();
        let completed = self.counts.iter().sum::<u64>();
        let (then, before) = self.last_tick;
        let dt = now.duration_since(then).as_secs_f64();
        if dt >= 0.5 {
            self.ops_per_s = (completed - before) as f64 / dt;
            self.last_tick = (now, completed);
        }
        ProgressSnapshot {
            elapsed: now.duration_since(self.started),
            planned: self.planned,
            phase: self.phase.clone(),
            ops_per_s: self.ops_per_s,
            ok: self.counts[0],
            fail: self.counts[1],
            info: self.counts[2],
            active_faults: self.active_faults.clone(),
            faults_applied: self.faults_applied,
            violations: self.checker.violations_so_far(),
        }
    }
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    bar: Option<ProgressBar>,
    /// The `t` of the event that made the first violation known: a watch, so the
    /// run loop can wait for it beside its other reasons to stop.
    first_violation: watch::Sender<Option<f64>>,
}

/// The live view. Create it when the workload starts; drop it (or call
/// [`Progress::finish`]) at the end.
#[derive(Clone)]
pub struct Progress {
    shared: Arc<Shared>,
    ticker: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Progress {
    /// A bar when stderr is a terminal, else a plain line every 10 seconds.
    pub fn new(scenario: &str, planned: Duration) -> Self {
        if std::io::stderr().is_terminal() {
            Self::start(scenario, planned, true, Duration::from_millis(250))
        } else {
            Self::start(scenario, planned, false, Duration::from_secs(10))
        }
    }

    /// Plain lines every `every`, whatever stderr is (tests, or a chosen CI cadence).
    pub fn plain(scenario: &str, planned: Duration, every: Duration) -> Self {
        Self::start(scenario, planned, false, every)
    }

    fn start(scenario: &str, planned: Duration, terminal: bool, every: Duration) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(planned.as_secs().max(1)),
                ProgressDrawTarget::stderr(),
            );
            let style = ProgressStyle::with_template("{prefix:.bold} [{bar:28.cyan/blue}] {msg}")
                .expect("a valid static template")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(scenario.to_owned());
            bar
        });
        let now = Instant::now();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                started: now,
                planned,
                phase: "workload".into(),
                checker: Checker::new().remembering_at_most(LIVE_MESSAGES),
                counts: [0; 3],
                active_faults: Vec::new(),
                faults_applied: 0,
                last_tick: (now, 0),
                ops_per_s: 0.0,
            }),
            stop: AtomicBool::new(false),
            bar,
            first_violation: watch::Sender::new(None),
        });
        let ticker_shared = Arc::clone(&shared);
        let scenario = scenario.to_owned();
        let ticker = std::thread::Builder::new()
            .name("zkmq-progress".into())
            .spawn(move || {
                let mut next = Instant::now() + every;
                while !ticker_shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100).min(every));
                    if Instant::now() < next {
                        continue;
                    }
                    next += every;
                    let snapshot =
                        ticker_shared.state.lock().unwrap_or_else(|p| p.into_inner()).snapshot();
                    match &ticker_shared.bar {
                        Some(bar) => {
                            bar.set_position(
                                snapshot.elapsed.as_secs().min(snapshot.planned.as_secs()),
                            );
                            bar.set_message(snapshot.line());
                        }
                        None => eprintln!("[{scenario}] {}", snapshot.line()),
                    }
                }
            })
            .ok();
        Self { shared, ticker: Arc::new(Mutex::new(ticker)) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every history event, in the order it was recorded.
    pub fn observe(&self, event: &Event) {
        let mut state = self.state();
        if Kind::parse(&event.op).is_some() {
            match EventView::from(event).effective_phase() {
                Phase::Ok => state.counts[0] += 1,
                Phase::Fail => state.counts[1] += 1,
                Phase::Info => state.counts[2] += 1,
                Phase::Invoke => {}
            }
        }
        let before = state.checker.violations_so_far();
        state.checker.observe(event);
        if before == 0 && state.checker.violations_so_far() > 0 {
            self.shared.first_violation.send_replace(Some(event.t));
        }
    }

    /// Turns `Some(t)` when the first must-be-zero violation is seen (duplicated
    /// past ack, unexpected, corrupt), `t` being the history time of the event that
    /// showed it. A loss is never seen here: it is only known once the drain ends.
    pub fn first_violation(&self) -> watch::Receiver<Option<f64>> {
        self.shared.first_violation.subscribe()
    }

    /// Must-be-zero violations seen so far (see [`Progress::first_violation`]).
    pub fn violations_so_far(&self) -> u64 {
        self.state().checker.violations_so_far()
    }

    /// A fault was applied; `label` is what the line shows (`kill zk3`).
    pub fn fault_started(&self, label: &str) {
        let mut state = self.state();
        state.faults_applied += 1;
        state.active_faults.push(label.to_owned());
    }

    /// The fault with this label was undone.
    pub fn fault_ended(&self, label: &str) {
        let mut state = self.state();
        if let Some(position) = state.active_faults.iter().position(|f| f == label) {
            state.active_faults.remove(position);
        }
    }

    /// The run moved on: `healing`, `draining`, `checking`.
    pub fn set_phase(&self, phase: &str) {
        self.state().phase = phase.to_owned();
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        self.state().snapshot()
    }

    /// Stops the ticker and leaves `message` as the last line.
    pub fn finish(&self, message: &str) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = ticker.join();
        }
        match &self.shared.bar {
            Some(bar) => bar.finish_with_message(message.to_owned()),
            None => eprintln!("{message}"),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(t: f64, process: &str, op: &str, phase: Phase, msg: Option<&str>) -> Event {
        let mut e = Event::new(t, process, op, phase);
        e.msg = msg.map(str::to_owned);
        e.checksum = msg.map(|_| 7);
        e
    }

    #[test]
    fn the_first_violation_is_signalled_once_with_its_time() {
        let progress = Progress::plain("unit", Duration::from_secs(60), Duration::from_secs(3600));
        let first = progress.first_violation();
        progress.observe(&event(1.0, "p", "produce", Phase::Invoke, Some("a")));
        progress.observe(&event(1.1, "p", "produce", Phase::Ok, Some("a")));
        progress.observe(&event(1.2, "c", "take", Phase::Invoke, None));
        progress.observe(&event(1.3, "c", "take", Phase::Ok, Some("a")));
        assert_eq!(*first.borrow(), None, "a normal delivery is no violation");
        // A delivery of an id no produce invoked: unexpected, known at once.
        progress.observe(&event(2.0, "c", "take", Phase::Invoke, None));
        progress.observe(&event(2.5, "c", "take", Phase::Ok, Some("ghost")));
        progress.observe(&event(3.0, "c", "take", Phase::Invoke, None));
        progress.observe(&event(3.5, "c", "take", Phase::Ok, Some("ghost-2")));
        assert_eq!(*first.borrow(), Some(2.5), "the time of the first one");
        assert_eq!(progress.violations_so_far(), 2);
        progress.finish("done");
    }
}
