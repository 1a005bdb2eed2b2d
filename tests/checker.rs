//! The checker on hand-made histories: for each invariant, one history that violates
//! it and one that does not; `info` outcomes never count as failures; a truncated
//! last line is tolerated, a damaged one in the middle is not; and on synthetic runs
//! with injected bugs it finds exactly the injected ids.

use std::path::{Path, PathBuf};
use std::process::Command;

use zkmq::checker::synthetic::{self, SyntheticOptions};
use zkmq::checker::{
    check_history, for_each_line, CheckError, CheckResult, Checker, UnavailabilitySummary,
    UnavailabilityWindow,
};
use zkmq::history::{Event, Phase};
use zkmq::rundir::{FaultRecord, Schedule};

/// A history under construction; time advances 10 ms per line.
#[derive(Default)]
struct History {
    events: Vec<Event>,
    t: f64,
}

impl History {
    fn line(
        &mut self,
        process: &str,
        op: &str,
        phase: Phase,
        msg: Option<&str>,
        checksum: Option<u32>,
    ) -> &mut Self {
        self.t += 0.01;
        let mut event = Event::new(self.t, process, op, phase);
        event.path = access_path(process).map(str::to_owned);
        event.msg = msg.map(str::to_owned);
        event.checksum = checksum;
        if matches!(phase, Phase::Fail | Phase::Info) {
            event.error = Some("test".into());
        }
        self.events.push(event);
        self
    }

    /// The next line is at `t`.
    fn at(&mut self, t: f64) -> &mut Self {
        self.t = t - 0.01;
        self
    }

    /// Produce invoke and its outcome.
    fn produce(&mut self, producer: &str, id: &str, outcome: Phase) -> &mut Self {
        self.line(producer, "produce", Phase::Invoke, Some(id), Some(sum(id)));
        self.line(producer, "produce", outcome, Some(id), None)
    }

    fn take(&mut self, consumer: &str, id: &str) -> &mut Self {
        self.line(consumer, "take", Phase::Invoke, None, None);
        self.line(consumer, "take", Phase::Ok, Some(id), Some(sum(id)))
    }

    fn ack(&mut self, consumer: &str, id: &str, outcome: Phase) -> &mut Self {
        self.line(consumer, "ack", Phase::Invoke, Some(id), None);
        self.line(consumer, "ack", outcome, Some(id), None)
    }

    /// Produce ok, take, ack ok: a message's happy life.
    fn delivered(&mut self, id: &str) -> &mut Self {
        self.produce("producer-1", id, Phase::Ok).take("consumer-1", id).ack(
            "consumer-1",
            id,
            Phase::Ok,
        )
    }

    fn drained(&mut self) -> &mut Self {
        self.line("drain", "drain", Phase::Invoke, None, None);
        self.line("drain", "drain", Phase::Ok, None, None)
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("history.jsonl");
        let mut text = String::new();
        for event in &self.events {
            text.push_str(&serde_json::to_string(event).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn check(&self) -> CheckResult {
        let dir = tempfile::tempdir().unwrap();
        check_history(&self.write(dir.path())).unwrap()
    }
}

/// The access path of a process named as the workload names them
/// (`producer-rest-1`, `consumer-native-2`); the older tests' `producer-1` has none,
/// like a history written before paths were recorded.
fn access_path(process: &str) -> Option<&'static str> {
    ["native", "rest"].into_iter().find(|path| process.contains(&format!("-{path}-")))
}

fn sum(id: &str) -> u32 {
    crc32fast::hash(id.as_bytes())
}

#[test]
fn a_clean_history_is_valid() {
    let result = History::default().delivered("m1").delivered("m2").drained().check();
    assert!(result.valid, "{result:#?}");
    assert_eq!(result.messages.produced_ok, 2);
    assert_eq!(result.messages.acknowledged, 2);
    assert!(result.drain.complete);
}

#[test]
fn lost_a_produced_message_never_acknowledged() {
    let result =
        History::default().delivered("m1").produce("producer-1", "m2", Phase::Ok).drained().check();
    assert!(!result.valid);
    assert_eq!(result.invariants.lost.count, 1);
    assert_eq!(result.invariants.lost.examples, vec!["m2"]);

    // Delivered but its ack failed and it never came back: lost too.
    let result = History::default()
        .produce("producer-1", "m1", Phase::Ok)
        .take("consumer-1", "m1")
        .ack("consumer-1", "m1", Phase::Fail)
        .drained()
        .check();
    assert_eq!(result.invariants.lost.examples, vec!["m1"]);
}

#[test]
fn not_lost_when_acknowledged_after_a_redelivery() {
    let result = History::default()
        .produce("producer-1", "m1", Phase::Ok)
        .take("consumer-1", "m1")
        .ack("consumer-1", "m1", Phase::Fail)
        .take("consumer-2", "m1")
        .ack("consumer-2", "m1", Phase::Ok)
        .drained()
        .check();
    assert!(result.valid, "{result:#?}");
    assert_eq!(result.invariants.redelivered_before_ack.count, 1);
    assert_eq!(result.invariants.lost.count, 0);
}

#[test]
fn an_unknown_ack_is_not_a_loss() {
    let result = History::default()
        .produce("producer-1", "m1", Phase::Ok)
        .take("consumer-1", "m1")
        .ack("consumer-1", "m1", Phase::Info)
        .drained()
        .check();
    assert!(result.valid, "{result:#?}");
    assert_eq!(result.invariants.ack_unknown.examples, vec!["m1"]);
}

/// A message the drain could not move is stuck, not lost; and a nightly job must
/// not pass it: it fails the run, unless the scenario says it expects stuck ones.
#[test]
fn a_leftover_listed_by_the_drain_is_stuck_not_lost_and_fails_the_run() {
    let mut history = History::default();
    history.produce("producer-1", "m1", Phase::Ok);
    history.line("drain", "leftover", Phase::Ok, Some("m1"), None);
    history.line("drain", "drain", Phase::Fail, None, None);
    let result = history.check();
    assert!(!result.valid, "{result:#?}");
    assert_eq!(result.invariants.stuck.examples, vec!["m1"]);
    assert_eq!(result.invariants.lost.count, 0);
    assert!(!result.drain.complete);

    let dir = tempfile::tempdir().unwrap();
    history.write(dir.path());
    std::fs::write(dir.path().join("scenario.toml"), "name = \"x\"\n[expect]\nstuck = true\n")
        .unwrap();
    let allowed = check_history(dir.path()).unwrap();
    assert!(allowed.valid && allowed.stuck_allowed, "{allowed:#?}");
    assert_eq!(allowed.invariants.stuck.count, 1);
}

#[test]
fn duplicated_past_ack_acknowledged_twice() {
    let result = History::default()
        .delivered("m1")
        .take("consumer-2", "m1")
        .ack("consumer-2", "m1", Phase::Ok)
        .drained()
        .check();
    assert!(!result.valid);
    assert_eq!(result.invariants.duplicated_past_ack.examples, vec!["m1"]);
}

#[test]
fn duplicated_past_ack_delivered_by_a_take_invoked_after_the_ack() {
    let result = History::default().delivered("m1").take("consumer-2", "m1").drained().check();
    assert!(!result.valid);
    assert_eq!(result.invariants.duplicated_past_ack.count, 1);
}

#[test]
fn a_take_running_while_the_ack_completed_is_not_a_duplicate() {
    // consumer-2 invoked its take before consumer-1's ack completed: it may have taken
    // the message back first (then consumer-1's ack should have failed, but the take
    // itself proves nothing past the ack).
    let mut history = History::default();
    history.produce("producer-1", "m1", Phase::Ok).take("consumer-1", "m1");
    history.line("consumer-2", "take", Phase::Invoke, None, None);
    history.ack("consumer-1", "m1", Phase::Ok);
    history.line("consumer-2", "take", Phase::Ok, Some("m1"), Some(sum("m1")));
    let result = history.check();
    assert_eq!(result.invariants.duplicated_past_ack.count, 0, "{result:#?}");
}

#[test]
fn unexpected_a_delivery_never_produced() {
    let result = History::default()
        .delivered("m1")
        .take("consumer-1", "ghost")
        .ack("consumer-1", "ghost", Phase::Ok)
        .drained()
        .check();
    assert!(!result.valid);
    assert_eq!(result.invariants.unexpected.examples, vec!["ghost"]);
    assert_eq!(result.invariants.lost.count, 0, "an unexpected message is not also lost");
}

#[test]
fn recovered_a_produce_with_unknown_or_failed_outcome_delivered_anyway() {
    let result = History::default()
        .produce("producer-1", "m1", Phase::Info)
        .produce("producer-1", "m2", Phase::Fail)
        .take("consumer-1", "m1")
        .ack("consumer-1", "m1", Phase::Ok)
        .take("consumer-1", "m2")
        .ack("consumer-1", "m2", Phase::Ok)
        .drained()
        .check();
    assert!(result.valid, "{result:#?}");
    assert_eq!(result.invariants.recovered.count, 2);
    assert_eq!(result.invariants.unexpected.count, 0);
}

#[test]
fn a_produce_whose_ok_is_logged_after_its_delivery_is_not_recovered() {
    // The consumer can take a message before its producer has logged the answer.
    let mut history = History::default();
    history.at(1.0).line("producer-1", "produce", Phase::Invoke, Some("m1"), Some(sum("m1")));
    history.take("consumer-1", "m1").ack("consumer-1", "m1", Phase::Ok);
    history.line("producer-1", "produce", Phase::Ok, Some("m1"), None);
    let result = history.drained().check();
    assert!(result.valid, "{result:#?}");
    assert_eq!(result.invariants.recovered.count, 0, "{:?}", result.invariants.recovered);
}

#[test]
fn an_unknown_produce_never_delivered_is_not_lost() {
    let result = History::default().produce("producer-1", "m1", Phase::Info).drained().check();
    assert!(result.valid, "{result:#?}");
    assert_eq!(result.messages.produce_unknown, 1);
}

#[test]
fn corrupt_a_checksum_that_differs() {
    let mut history = History::default();
    history.produce("producer-1", "m1", Phase::Ok);
    history.line("consumer-1", "take", Phase::Invoke, None, None);
    history.line("consumer-1", "take", Phase::Ok, Some("m1"), Some(sum("m1") ^ 1));
    history.ack("consumer-1", "m1", Phase::Ok).drained();
    let result = history.check();
    assert!(!result.valid);
    assert_eq!(result.invariants.corrupt.examples, vec!["m1"]);

    let result = History::default().delivered("m1").drained().check();
    assert_eq!(result.invariants.corrupt.count, 0);
}

#[test]
fn info_outcomes_are_never_failures() {
    let mut history = History::default();
    history.produce("producer-1", "m1", Phase::Info);
    history.line("consumer-1", "take", Phase::Invoke, None, None);
    history.line("consumer-1", "take", Phase::Info, None, None);
    history.take("consumer-1", "m1").ack("consumer-1", "m1", Phase::Info);
    history.produce("producer-1", "m2", Phase::Ok).take("consumer-1", "m2").ack(
        "consumer-1",
        "m2",
        Phase::Info,
    );
    history.drained();
    let result = history.check();
    assert!(result.valid, "{result:#?}");
    for (kind, stats) in &result.operations {
        assert_eq!(stats.fail, 0, "{kind}: info counted as a failure");
    }
    assert_eq!(result.operations["produce"].info, 1);
    assert_eq!(result.operations["take"].info, 1);
    assert_eq!(result.operations["ack"].info, 2);
    assert_eq!(result.invariants.lost.count, 0);
}

#[test]
fn an_empty_take_is_an_answer_not_a_failure() {
    let mut history = History::default();
    history.delivered("m1");
    history.line("consumer-1", "take", Phase::Invoke, None, None);
    history.events.push({
        let mut e = Event::new(history.t + 0.01, "consumer-1", "take", Phase::Fail);
        e.error = Some("empty".into());
        e
    });
    history.line("consumer-1", "take", Phase::Invoke, None, None);
    history.line("consumer-1", "take", Phase::Ok, None, None);
    let result = history.drained().check();
    let take = &result.operations["take"];
    assert_eq!((take.ok, take.empty, take.fail), (3, 2, 0), "{take:?}");
    assert_eq!(take.latency_ms.count, 1, "empty takes stay out of the latency");
    assert_eq!(result.availability, 1.0);
}

#[test]
fn order_inversion_a_later_message_delivered_before_an_earlier_one_was_taken() {
    let result = History::default()
        .produce("producer-1", "m1", Phase::Ok)
        .produce("producer-1", "m2", Phase::Ok)
        .take("consumer-1", "m2")
        .take("consumer-2", "m1")
        .ack("consumer-1", "m2", Phase::Ok)
        .ack("consumer-2", "m1", Phase::Ok)
        .drained()
        .check();
    assert!(result.valid, "inversions are reported, not failures");
    assert_eq!(result.invariants.order_inversions.examples, vec!["m1"]);
}

#[test]
fn concurrent_takes_are_not_order_inversions() {
    let mut history = History::default();
    history.produce("producer-1", "m1", Phase::Ok).produce("producer-1", "m2", Phase::Ok);
    history.line("consumer-2", "take", Phase::Invoke, None, None);
    history.line("consumer-1", "take", Phase::Invoke, None, None);
    history.line("consumer-1", "take", Phase::Ok, Some("m2"), Some(sum("m2")));
    history.line("consumer-2", "take", Phase::Ok, Some("m1"), Some(sum("m1")));
    // Different producers have no order between them either.
    history.produce("producer-2", "n1", Phase::Ok).produce("producer-3", "n2", Phase::Ok);
    history.take("consumer-1", "n2").take("consumer-2", "n1");
    let result = history.check();
    assert_eq!(result.invariants.order_inversions.count, 0, "{result:#?}");
}

#[test]
fn unavailability_runs_from_the_fault_to_the_first_ok_invoked_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::default();
    history.delivered("m1");
    // In flight when the fault starts at 1.0: its ok at 1.1 does not end the window.
    history.at(0.95).line("producer-1", "produce", Phase::Invoke, Some("m2"), Some(sum("m2")));
    history.at(1.1).line("producer-1", "produce", Phase::Ok, Some("m2"), None);
    history.at(1.2).line("consumer-1", "take", Phase::Invoke, None, None);
    history.at(3.0).line("consumer-1", "take", Phase::Ok, Some("m2"), Some(sum("m2")));
    history.ack("consumer-1", "m2", Phase::Ok).drained();
    history.write(dir.path());
    let schedule = Schedule {
        seed: 1,
        faults: vec![
            FaultRecord {
                fault: "kill".into(),
                target: "leader".into(),
                resolved: Some("zk1".into()),
                start: 1.0,
                applied_at: None,
                end: Some(5.0),
                applied: true,
                error: None,
            },
            FaultRecord {
                fault: "delay".into(),
                target: "random".into(),
                resolved: None,
                start: 1.5,
                applied_at: None,
                end: None,
                applied: false,
                error: Some("netem missing".into()),
            },
        ],
    };
    std::fs::write(dir.path().join("schedule.json"), serde_json::to_string(&schedule).unwrap())
        .unwrap();
    let result = check_history(dir.path()).unwrap();
    assert_eq!(result.faults_source, "schedule.json");
    assert_eq!(result.unavailability.len(), 1, "a fault not applied has no window");
    let window = &result.unavailability[0];
    assert_eq!(window.target, "zk1");
    assert!((window.duration_s.unwrap() - 2.0).abs() < 1e-9, "{window:?}");
    assert_eq!(result.unavailability_summary.median_by_fault["kill"], window.duration_s.unwrap());
}

#[test]
fn unavailability_is_measured_from_when_the_fault_took_effect() {
    // Killing a majority takes a while: an operation that succeeds while the
    // nemesis is still at work says nothing about the outage that follows.
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::default();
    history.delivered("m1");
    history.at(10.3).line("producer-1", "produce", Phase::Invoke, Some("m2"), Some(sum("m2")));
    history.at(10.5).line("producer-1", "produce", Phase::Ok, Some("m2"), None);
    history.at(11.0).line("consumer-1", "take", Phase::Invoke, None, None);
    history.at(30.0).line("consumer-1", "take", Phase::Ok, Some("m2"), Some(sum("m2")));
    history.ack("consumer-1", "m2", Phase::Ok).drained();
    history.write(dir.path());
    let schedule = Schedule {
        seed: 1,
        faults: vec![FaultRecord {
            fault: "quorum-loss".into(),
            target: "majority".into(),
            resolved: Some("zk1,zk2,zk3".into()),
            start: 10.0,
            applied_at: Some(10.9),
            end: Some(27.0),
            applied: true,
            error: None,
        }],
    };
    std::fs::write(dir.path().join("schedule.json"), serde_json::to_string(&schedule).unwrap())
        .unwrap();
    let result = check_history(dir.path()).unwrap();
    let window = &result.unavailability[0];
    assert!((window.duration_s.unwrap() - 19.1).abs() < 1e-9, "{window:?}");
}

#[test]
fn without_a_schedule_faults_come_from_the_nemesis_lines() {
    let mut history = History::default();
    history.delivered("m1");
    history.at(1.0).line("nemesis", "kill", Phase::Invoke, None, None);
    history.line("nemesis", "kill", Phase::Ok, None, None);
    history.at(2.0).delivered("m2");
    history.line("nemesis", "start", Phase::Ok, None, None);
    history.drained();
    let result = history.check();
    assert_eq!(result.faults_source, "history");
    assert_eq!(result.unavailability.len(), 1, "the undo (start) is not a fault");
    assert!(result.unavailability[0].end.is_some());
}

/// Native operations every 0.5 s from `from` to `to`: each message produced,
/// taken and acknowledged, so every op is an `ok` of the native path.
fn native_traffic(history: &mut History, from: f64, to: f64) {
    let mut t = from;
    while t < to {
        let id = format!("n{}", (t * 100.0).round());
        history.at(t).produce("producer-native-1", &id, Phase::Ok);
        history.take("consumer-native-1", &id).ack("consumer-native-1", &id, Phase::Ok);
        t += 0.5;
    }
}

/// A REST produce's invoke at `t`.
fn rest_invoke(history: &mut History, id: &str, t: f64) {
    history.at(t).line("producer-rest-1", "produce", Phase::Invoke, Some(id), Some(sum(id)));
}

/// A REST produce's outcome at `t`; an `ok` one is then taken and acknowledged over
/// REST.
fn rest_outcome(history: &mut History, id: &str, t: f64, outcome: Phase) {
    history.at(t).line("producer-rest-1", "produce", outcome, Some(id), None);
    if outcome == Phase::Ok {
        history.take("consumer-rest-1", id).ack("consumer-rest-1", id, Phase::Ok);
    }
}

/// A REST produce invoked at `t` that the gateway answers `ok` 0.1 s later.
fn rest_answered(history: &mut History, id: &str, t: f64) {
    rest_invoke(history, id, t);
    rest_outcome(history, id, t + 0.1, Phase::Ok);
}

fn fault(name: &str, target: &str, start: f64, end: f64) -> FaultRecord {
    FaultRecord {
        fault: name.into(),
        target: target.into(),
        resolved: Some(target.into()),
        start,
        applied_at: Some(start),
        end: Some(end),
        applied: true,
        error: None,
    }
}

fn check_with_faults(history: &History, faults: Vec<FaultRecord>) -> CheckResult {
    let dir = tempfile::tempdir().unwrap();
    history.write(dir.path());
    let schedule = Schedule { seed: 1, faults };
    std::fs::write(dir.path().join("schedule.json"), serde_json::to_string(&schedule).unwrap())
        .unwrap();
    check_history(dir.path()).unwrap()
}

fn close_to(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|actual| (actual - expected).abs() < 1e-6)
}

/// The gateway killed for 5 s: REST operations fail or time out while native ones
/// keep succeeding. The overall window closes with the first native `ok` (as
/// before); the REST path's own window lasts until REST answers again.
#[test]
fn a_rest_only_outage_shows_in_the_rest_figures_and_not_in_the_native_ones() {
    let mut history = History::default();
    native_traffic(&mut history, 0.0, 5.0);
    rest_answered(&mut history, "r1", 5.0);
    native_traffic(&mut history, 5.5, 10.0);
    // The gateway dies at 10.0: refused, then a timeout, then back at 15.0; native
    // answers from 10.3 on.
    rest_invoke(&mut history, "r2", 10.05);
    let id = "n-during";
    history.at(10.1).line("producer-native-1", "produce", Phase::Invoke, Some(id), Some(sum(id)));
    history.at(10.3).line("producer-native-1", "produce", Phase::Ok, Some(id), None);
    history.take("consumer-native-1", id).ack("consumer-native-1", id, Phase::Ok);
    rest_outcome(&mut history, "r2", 10.6, Phase::Fail);
    rest_invoke(&mut history, "r3", 11.0);
    native_traffic(&mut history, 11.5, 14.0);
    rest_outcome(&mut history, "r3", 14.0, Phase::Info);
    native_traffic(&mut history, 14.5, 15.0);
    rest_answered(&mut history, "r4", 15.0);
    native_traffic(&mut history, 15.5, 20.0);
    // A leader kill at 20.0 stops both paths: native answers at 21.01, REST at 21.5.
    rest_invoke(&mut history, "r5", 20.2);
    native_traffic(&mut history, 21.0, 21.5);
    rest_outcome(&mut history, "r5", 21.5, Phase::Ok);
    native_traffic(&mut history, 22.0, 23.0);
    history.drained();
    let result = check_with_faults(
        &history,
        vec![fault("rest-kill", "rest", 10.0, 15.0), fault("kill", "zk1", 20.0, 25.0)],
    );
    assert!(result.valid, "{result:#?}");

    let gateway = &result.unavailability[0];
    assert!(close_to(gateway.duration_s, 0.3), "native hides it overall: {gateway:?}");
    assert!(close_to(gateway.by_access["native"], 0.3), "{gateway:?}");
    assert!(close_to(gateway.by_access["rest"], 5.1), "{gateway:?}");
    let kill = &result.unavailability[1];
    assert!(close_to(kill.by_access["native"], 1.01), "{kill:?}");
    assert!(close_to(kill.by_access["rest"], 1.5), "{kill:?}");

    let summary = &result.unavailability_summary;
    assert!(close_to(summary.max_s, 1.01), "the overall figures keep their meaning: {summary:?}");
    assert_eq!(summary.by_access.keys().collect::<Vec<_>>(), ["native", "rest"]);
    let (native, rest) = (&summary.by_access["native"], &summary.by_access["rest"]);
    assert_eq!((native.faults, native.unresolved, rest.faults, rest.unresolved), (2, 0, 2, 0));
    assert!(close_to(native.median_by_fault.get("rest-kill").copied(), 0.3), "{native:?}");
    assert!(close_to(native.max_s, 1.01), "{native:?}");
    assert!(close_to(rest.median_by_fault.get("rest-kill").copied(), 5.1), "{rest:?}");
    assert!(close_to(rest.max_s, 5.1) && close_to(rest.median_s, 3.3), "{rest:?}");
    assert!(summary.has_several_access_paths());

    let json = serde_json::to_value(&result).unwrap();
    let rest_max = &json["unavailability_summary"]["by_access"]["rest"]["max_s"];
    assert!(close_to(rest_max.as_f64(), 5.1), "{rest_max}");
}

/// A gateway that never comes back: REST's window never closes, the native one does.
#[test]
fn a_gateway_that_never_returns_leaves_only_the_rest_window_unresolved() {
    let mut history = History::default();
    native_traffic(&mut history, 0.0, 1.0);
    rest_answered(&mut history, "r1", 1.0);
    native_traffic(&mut history, 1.5, 4.0);
    for (n, t) in [4.0, 6.0, 8.0].into_iter().enumerate() {
        let id = format!("r{}", n + 2);
        rest_invoke(&mut history, &id, t);
        rest_outcome(&mut history, &id, t + 0.1, Phase::Fail);
        native_traffic(&mut history, t + 0.5, t + 2.0);
    }
    history.drained();
    let result = check_with_faults(&history, vec![fault("rest-kill", "rest", 3.2, 10.0)]);
    let window = &result.unavailability[0];
    assert!(window.end.is_some() && window.by_access["native"].is_some(), "{window:?}");
    assert_eq!(window.by_access["rest"], None, "{window:?}");
    let summary = &result.unavailability_summary;
    assert_eq!((summary.unresolved, summary.by_access["native"].unresolved), (0, 0));
    let rest = &summary.by_access["rest"];
    assert_eq!((rest.faults, rest.unresolved, rest.max_s), (1, 1, None), "{rest:?}");
    assert!(rest.median_by_fault.is_empty(), "closed windows only: {rest:?}");
}

/// Without a schedule, the nemesis line opens the window for each path alike.
#[test]
fn a_rest_only_outage_from_the_nemesis_lines_shows_in_rest() {
    let mut history = History::default();
    native_traffic(&mut history, 0.0, 3.0);
    rest_answered(&mut history, "r1", 1.0);
    history.at(3.0).line("nemesis", "rest-kill", Phase::Ok, None, None);
    rest_invoke(&mut history, "r2", 3.2);
    rest_outcome(&mut history, "r2", 3.3, Phase::Fail);
    native_traffic(&mut history, 3.5, 6.0);
    history.at(6.0).line("nemesis", "rest-start", Phase::Ok, None, None);
    rest_answered(&mut history, "r3", 6.1);
    history.drained();
    let result = history.check();
    assert_eq!((result.faults_source.as_str(), result.unavailability.len()), ("history", 1));
    let window = &result.unavailability[0];
    assert!(close_to(window.by_access["native"], 0.51), "{window:?}");
    assert!(close_to(window.by_access["rest"], 3.2), "{window:?}");
}

/// A path with no operations in the run has no entry at all (not zeros); a history
/// without paths (written before they were recorded) has no per-path figures.
#[test]
fn only_access_paths_that_ran_are_measured() {
    let mut native_only = History::default();
    native_traffic(&mut native_only, 0.0, 5.0);
    native_only.drained();
    let result = check_with_faults(&native_only, vec![fault("kill", "zk1", 2.1, 4.0)]);
    assert_eq!(result.unavailability[0].by_access.keys().collect::<Vec<_>>(), ["native"]);
    let summary = &result.unavailability_summary;
    assert_eq!(summary.by_access.keys().collect::<Vec<_>>(), ["native"]);
    assert!(!summary.has_several_access_paths());
    assert!(summary.by_access["native"].by_access.is_empty(), "no nesting: {summary:?}");

    let no_faults = check_with_faults(&native_only, Vec::new());
    assert_eq!(no_faults.unavailability_summary.by_access["native"].faults, 0);

    let without_paths = check_with_faults(
        History::default().delivered("m1").at(3.0).delivered("m2").drained(),
        vec![fault("kill", "zk1", 2.0, 4.0)],
    );
    assert!(without_paths.unavailability[0].by_access.is_empty());
    assert!(without_paths.unavailability_summary.by_access.is_empty());
    let json = serde_json::to_value(&without_paths).unwrap();
    assert!(json["unavailability_summary"].get("by_access").is_none(), "{json}");
}

/// results.json files written before paths were measured apart still parse.
#[test]
fn unavailability_figures_without_by_access_still_parse() {
    let window: UnavailabilityWindow = serde_json::from_str(
        r#"{"fault":"kill","target":"zk1","start":1.0,"end":3.0,"duration_s":2.0}"#,
    )
    .unwrap();
    assert!(window.by_access.is_empty());
    let summary: UnavailabilitySummary = serde_json::from_str(
        r#"{"faults":1,"unresolved":0,"median_s":2.0,"max_s":2.0,"median_by_fault":{"kill":2.0}}"#,
    )
    .unwrap();
    assert!(summary.by_access.is_empty() && summary.max_s == Some(2.0));
}

#[test]
fn a_truncated_last_line_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = History::default().delivered("m1").drained().write(dir.path());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"t":9.0,"process":"producer-1","op":"prod"#);
    std::fs::write(&path, text).unwrap();
    let result = check_history(&path).unwrap();
    assert!(result.truncated_last_line);
    assert!(result.valid);
}

#[test]
fn a_damaged_line_in_the_middle_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = History::default().delivered("m1").write(dir.path());
    let text = std::fs::read_to_string(&path).unwrap().replacen("\n", "\nnot json\n", 1);
    std::fs::write(&path, text).unwrap();
    match check_history(&path) {
        Err(CheckError::Parse { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn finds_exactly_the_bugs_injected_into_a_synthetic_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let options = SyntheticOptions {
        operations: 30_000,
        lose: 3,
        duplicate: 2,
        corrupt: 2,
        ..Default::default()
    };
    let truth = synthetic::write_history(&path, &options).unwrap();
    assert_eq!(
        (truth.lost.len(), truth.duplicated.len(), truth.corrupt.len()),
        (3, 2, 2),
        "generator injected all"
    );
    let result = check_history(&path).unwrap();
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    assert_eq!(sorted(result.invariants.lost.examples.clone()), sorted(truth.lost));
    assert_eq!(
        sorted(result.invariants.duplicated_past_ack.examples.clone()),
        sorted(truth.duplicated)
    );
    assert_eq!(sorted(result.invariants.corrupt.examples.clone()), sorted(truth.corrupt));
    assert_eq!(result.invariants.unexpected.count, 0);

    let clean = dir.path().join("clean.jsonl");
    let truth = synthetic::write_history(
        &clean,
        &SyntheticOptions { operations: 30_000, ..Default::default() },
    )
    .unwrap();
    let result = check_history(&clean).unwrap();
    assert!(result.valid, "{:#?}", result.invariants);
    assert_eq!(result.events, truth.events);
    assert_eq!(result.messages.produced_ok, truth.produced_ok);
}

#[test]
fn zkmq_check_exits_0_valid_1_violated_2_unreadable() {
    let zkmq = env!("CARGO_BIN_EXE_zkmq");
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid");
    let violated = dir.path().join("violated");
    std::fs::create_dir_all(&valid).unwrap();
    std::fs::create_dir_all(&violated).unwrap();
    History::default().delivered("m1").drained().write(&valid);
    History::default().produce("producer-1", "m1", Phase::Ok).drained().write(&violated);
    let code = |path: &Path| Command::new(zkmq).arg("check").arg(path).output().unwrap();
    assert_eq!(code(&valid).status.code(), Some(0));
    let out = code(&violated);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("m1"), "names the lost id");
    assert_eq!(code(&dir.path().join("missing")).status.code(), Some(2));
}

/// A soak's history is a gzip stream (`history = "gzip"`): the checker reads it to
/// the same result as the plain lines, and one cut short by a killed harness up to
/// its last flush, saying the end was torn.
#[test]
fn a_gzip_history_checks_like_the_plain_one_and_a_torn_one_reads_to_its_last_flush() {
    use zkmq::history::{self, HistoryFormat, HistoryWriter};
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("history.jsonl");
    let options =
        SyntheticOptions { operations: 20_000, lose: 2, duplicate: 1, ..Default::default() };
    synthetic::write_history(&plain, &options).unwrap();
    let events: Vec<Event> = history::read(&plain).unwrap().map(Result::unwrap).collect();

    let gzip_dir = dir.path().join("gzip");
    std::fs::create_dir_all(&gzip_dir).unwrap();
    let gzip = gzip_dir.join("history.jsonl.gz");
    let writer = HistoryWriter::create(&gzip, HistoryFormat::Gzip).unwrap();
    for (n, event) in events.iter().enumerate() {
        writer.record(event).unwrap();
        if n % 5_000 == 0 {
            writer.flush().unwrap();
        }
    }
    writer.finish().unwrap();
    let compressed = std::fs::metadata(&gzip).unwrap().len();
    let original = std::fs::metadata(&plain).unwrap().len();
    assert!(compressed * 4 < original, "gzip {compressed} bytes of {original}");

    let from_plain = check_history(&plain).unwrap();
    let from_gzip = check_history(&gzip_dir).unwrap();
    assert_eq!(from_gzip.events, from_plain.events);
    assert_eq!(from_gzip.invariants, from_plain.invariants);
    assert_eq!(from_gzip.messages, from_plain.messages);
    assert!(!from_gzip.truncated_last_line);
    assert_eq!(from_gzip.invariants.lost.count, 2);

    // Killed mid-run: the stream has no trailer and ends inside a block.
    let torn = dir.path().join("torn.jsonl.gz");
    let writer = HistoryWriter::create(&torn, HistoryFormat::Gzip).unwrap();
    for event in &events[..10_000] {
        writer.record(event).unwrap();
    }
    writer.flush().unwrap();
    let flushed = std::fs::metadata(&torn).unwrap().len();
    for event in &events[10_000..12_000] {
        writer.record(event).unwrap();
    }
    writer.flush().unwrap();
    let bytes = std::fs::read(&torn).unwrap();
    let cut = flushed as usize + (bytes.len() - flushed as usize) / 2;
    std::fs::write(&torn, &bytes[..cut]).unwrap();
    let result = check_history(&torn).unwrap();
    assert!(result.truncated_last_line, "a torn gzip history says so");
    assert!(
        (10_000..12_000).contains(&(result.events as usize)),
        "read to (about) the last flush: {} events",
        result.events
    );
    let read: Vec<_> = history::read(&torn).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(read.len() as u64, result.events);
}

/// The live view's checker remembers a bounded number of messages, so a run of any
/// length keeps the harness's memory flat: it never holds more than twice its
/// bound, finds a duplicate delivered soon after its ack, and never calls a
/// forgotten message seen again "unexpected".
#[test]
fn a_bounded_checker_stays_bounded_and_raises_no_false_alarm_for_what_it_forgot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let options = SyntheticOptions { operations: 60_000, duplicate: 2, ..Default::default() };
    let truth = synthetic::write_history(&path, &options).unwrap();
    assert!(truth.produced_ok > 10_000, "{} messages", truth.produced_ok);

    let mut live = Checker::new().remembering_at_most(1_000);
    let mut most = 0;
    for_each_line(&path, |event| {
        live.observe_view(event);
        most = most.max(live.remembered());
    })
    .unwrap();
    assert!(most <= 2_000, "remembered {most} messages at most");
    assert!(live.remembered() >= 1_000);
    let result = live.finish(path.clone(), false);
    assert_eq!(result.invariants.unexpected.count, 0, "{:?}", result.invariants.unexpected);
    assert_eq!(result.invariants.corrupt.count, 0);
    let mut found = result.invariants.duplicated_past_ack.examples.clone();
    let mut injected = truth.duplicated.clone();
    found.sort();
    injected.sort();
    assert_eq!(found, injected, "each duplicate is delivered soon after its ack");

    // The whole-history check is not bounded.
    let whole = check_history(&path).unwrap();
    assert_eq!(whole.messages.produced_ok, truth.produced_ok);
}
