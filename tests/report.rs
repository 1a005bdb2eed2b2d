//! The reports of a recorded (synthetic, realistic) run directory: every file is
//! written, the counts in summary.md, report.html and junit.xml are the ones in
//! results.json, which are the checker's; junit.xml fails on a violation; each plot
//! is a valid, non-blank PNG and SVG; the HdrHistogram logs read back.

use std::path::Path;

use zkmq::checker::check_history;
use zkmq::checker::synthetic::{self, SyntheticOptions, SyntheticSummary};
use zkmq::history::{Event, Phase};
use zkmq::report::{self, Progress, Results, PLOTS};
use zkmq::rundir::{FaultRecord, Schedule};

fn run_dir(dir: &Path, options: SyntheticOptions) -> SyntheticSummary {
    synthetic::write_run_dir(dir, &options).unwrap()
}

fn small(lose: usize, duplicate: usize) -> SyntheticOptions {
    SyntheticOptions {
        operations: 6_000,
        lose,
        duplicate,
        fault_every_s: 5.0,
        ..Default::default()
    }
}

/// Equal JSON, floats within parsing error (serde_json's default parser may be 1 ulp off).
fn assert_same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{at}: {x} != {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_same_json(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
            for (key, x) in x {
                assert_same_json(x, &y[key], &format!("{at}.{key}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn junit_cases(xml: &str) -> Vec<(String, String, bool)> {
    let doc = roxmltree::Document::parse(xml).expect("junit.xml is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            let failed = n.children().any(|c| c.has_tag_name("failure"));
            (
                n.attribute("classname").unwrap().to_owned(),
                n.attribute("name").unwrap().to_owned(),
                failed,
            )
        })
        .collect()
}

#[test]
fn reports_agree_with_results_json_which_agrees_with_the_checker() {
    let dir = tempfile::tempdir().unwrap();
    run_dir(dir.path(), small(0, 0));
    let reports = report::write_reports(dir.path()).unwrap();

    let text = std::fs::read_to_string(&reports.results_json).unwrap();
    let results: Results = serde_json::from_str(&text).unwrap();
    assert_same_json(
        &serde_json::from_str(&text).unwrap(),
        &serde_json::to_value(&reports.results).unwrap(),
        "results",
    );
    let check = check_history(dir.path()).unwrap();
    assert_eq!(reports.results.check, check, "results.json carries the checker's result unchanged");
    assert!(results.valid && results.verdict == "valid");
    assert_eq!(results.run.as_ref().unwrap().scenario, "synthetic");
    assert!(!results.faults.is_empty(), "the schedule's faults are in results.json");
    assert!(check.unavailability_summary.median_s.is_some());

    let m = &check.messages;
    let summary = std::fs::read_to_string(&reports.summary_md).unwrap();
    assert!(summary.contains("VALID"), "{summary}");
    for figure in [
        format!("{} produced ok", m.produced_ok),
        format!("{} delivered", m.delivered),
        format!("{} acknowledged", m.acknowledged),
        format!("| recovered (reported) | {} |", check.invariants.recovered.count),
        format!(
            "| redelivered before ack (reported) | {} |",
            check.invariants.redelivered_before_ack.count
        ),
    ] {
        assert!(summary.contains(&figure), "summary.md lacks {figure:?}:\n{summary}");
    }

    let html = std::fs::read_to_string(&reports.report_html).unwrap();
    let verdict_at = html.find("class=\"verdict valid\"").expect("a verdict banner");
    assert!(verdict_at < html.find("<h2>Invariants").unwrap(), "the verdict comes first");
    assert!(html.contains(&format!("{} produced ok", m.produced_ok)));
    assert!(html.contains(&results.run.as_ref().unwrap().replay_command));
    assert_eq!(html.matches("<svg").count(), PLOTS.len(), "every plot is inline");
    assert!(!html.contains("src=\"http"), "self-contained: nothing fetched");

    let cases = junit_cases(&std::fs::read_to_string(&reports.junit_xml).unwrap());
    let names: Vec<&str> = cases.iter().map(|(_, name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lost",
            "duplicated_past_ack",
            "unexpected",
            "corrupt",
            "stuck",
            "divergent",
            "not_rejoined",
            "expect.valid"
        ]
    );
    assert!(cases.iter().all(|(_, _, failed)| !failed));
    assert!(summary.contains("| ✅ divergent (must be 0) | 0 |"), "{summary}");
    assert!(summary.contains("Members compared after the final heal"), "{summary}");
}

/// A hole in one member's tree (`members.json`) fails the run as `divergent`, in
/// every report, naming the znode and who holds what; a run without member views
/// says the check was not made rather than show a 0.
#[test]
fn a_divergent_member_fails_every_report_and_a_run_without_views_says_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    run_dir(dir.path(), SyntheticOptions { diverge: 2, ..small(0, 0) });
    let reports = report::write_reports(dir.path()).unwrap();
    let check = &reports.results.check;
    assert!(!check.valid && !reports.results.valid);
    let divergent = check.invariants.divergent.as_ref().unwrap();
    assert_eq!(divergent.count, 2);
    let example = "/messages/message-0000000000: zk1,zk2,zk3,zk4 czxid 0x300000001 v0 0 bytes crc 00000000; zk5 absent";
    assert_eq!(divergent.examples[0], example);
    assert_eq!(check.invariants.not_rejoined.as_ref().unwrap().count, 0);
    let summary = std::fs::read_to_string(&reports.summary_md).unwrap();
    assert!(summary.contains("| ❌ divergent (must be 0) | 2 |"), "{summary}");
    assert!(summary.contains(example), "{summary}");
    let html = std::fs::read_to_string(&reports.report_html).unwrap();
    assert!(html.contains("<tr class=\"bad\"><td>divergent</td>"), "{html}");
    let cases = junit_cases(&std::fs::read_to_string(&reports.junit_xml).unwrap());
    let failed: Vec<&str> = cases.iter().filter(|c| c.2).map(|c| c.1.as_str()).collect();
    assert_eq!(failed, ["divergent"]);
    let console = report::console_summary(check, &[]);
    assert!(
        console.iter().any(|l| l.starts_with("divergent (must be 0): 2 (e.g. /messages/")),
        "{console:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reports.results_json).unwrap()).unwrap();
    assert_eq!(json["check"]["invariants"]["divergent"]["count"], 2);
    assert_eq!(json["check"]["members"]["compared"].as_array().unwrap().len(), 5);

    std::fs::remove_file(dir.path().join("members.json")).unwrap();
    let reports = report::write_reports(dir.path()).unwrap();
    assert!(reports.results.valid, "without views nothing else is wrong");
    assert_eq!(reports.results.check.invariants.unchecked(), ["divergent", "not_rejoined"]);
    let summary = std::fs::read_to_string(&reports.summary_md).unwrap();
    assert!(summary.contains("| ➖ divergent (must be 0) | not checked |"), "{summary}");
    let xml = std::fs::read_to_string(&reports.junit_xml).unwrap();
    assert!(xml.contains("name=\"divergent\" time=\"0\">\n      <skipped"), "{xml}");
}

#[test]
fn junit_fails_the_violated_invariants_of_a_violating_run() {
    let dir = tempfile::tempdir().unwrap();
    let truth = run_dir(dir.path(), small(2, 1));
    assert_eq!((truth.lost.len(), truth.duplicated.len()), (2, 1));
    let reports = report::write_reports(dir.path()).unwrap();
    assert!(!reports.results.valid);
    assert_eq!(reports.results.check.invariants.lost.count, 2);

    let xml = std::fs::read_to_string(&reports.junit_xml).unwrap();
    let cases = junit_cases(&xml);
    let failed: Vec<&str> = cases.iter().filter(|c| c.2).map(|c| c.1.as_str()).collect();
    // The synthetic scenario expects valid = false when bugs are injected: that
    // expectation holds, the invariants fail.
    assert_eq!(failed, ["lost", "duplicated_past_ack"]);
    for id in truth.lost.iter().chain(&truth.duplicated) {
        assert!(xml.contains(id.as_str()), "junit.xml names {id}");
    }
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("failures"), Some("2"));

    let summary = std::fs::read_to_string(&reports.summary_md).unwrap();
    assert!(
        summary.contains("VIOLATED") && summary.contains("| ❌ lost (must be 0) | 2 |"),
        "{summary}"
    );
    let html = std::fs::read_to_string(&reports.report_html).unwrap();
    assert!(html.contains("class=\"verdict violated\""));
}

/// Writes `logs/zk1.log` with a truncation that dropped 0x537 transactions, as
/// ZooKeeper 3.8.0 logged it in a run that lost acknowledged messages; returns `logs/`.
fn write_truncating_log(run_dir: &Path) -> std::path::PathBuf {
    let logs = run_dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        logs.join("zk1.log"),
        "02:30:04.111 [WorkerReceiver[myid=1]] INFO o.a.z.s.q.FastLeaderElection - Notification: my state:LOOKING; n.sid:1, n.state:LOOKING, n.leader:1, n.round:0x4, n.peerEpoch:0x3, n.zxid:0x200000538, message format version:0x2\n\
         02:30:04.457 [QuorumPeer[myid=1](plain=0.0.0.0:2181)(secure=disabled)] WARN o.a.z.s.q.Learner - Truncating log to get in sync with the leader 0x200000001\n",
    )
    .unwrap();
    logs
}

/// A server that truncated its log past committed work is listed in results.json,
/// summary.md and report.html: the reader of a violated run sees where to look.
/// A healthy log lists nothing.
#[test]
fn log_truncations_of_the_servers_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    run_dir(dir.path(), small(1, 0));
    let logs = write_truncating_log(dir.path());
    std::fs::write(logs.join("zk2.log"), "02:30:04.000 INFO nothing to see\n").unwrap();
    let reports = report::write_reports(dir.path()).unwrap();
    let truncations = &reports.results.zookeeper_truncations;
    assert_eq!(truncations.len(), 1, "{truncations:?}");
    assert_eq!((truncations[0].node.as_str(), truncations[0].dropped), ("zk1", Some(0x537)));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reports.results_json).unwrap()).unwrap();
    assert_eq!(json["zookeeper_truncations"][0]["to_zxid"], "0x200000001");
    let summary = std::fs::read_to_string(&reports.summary_md).unwrap();
    assert!(
        summary.contains("| zk1 | 02:30:04.457 | 0x200000538 | 0x200000001 | 1335 |"),
        "{summary}"
    );
    let html = std::fs::read_to_string(&reports.report_html).unwrap();
    assert!(html.contains("ZooKeeper log truncations"));

    std::fs::remove_file(logs.join("zk1.log")).unwrap();
    let reports = report::write_reports(dir.path()).unwrap();
    assert!(reports.results.zookeeper_truncations.is_empty());
    let summary = std::fs::read_to_string(&reports.summary_md).unwrap();
    assert!(!summary.contains("truncat"), "{summary}");
}

/// `zkmq check` on a saved run prints the lines `zkmq chaos run` ended with (one
/// renderer): the invariants with example ids, and the truncations in its logs.
#[test]
fn zkmq_check_prints_the_summary_the_chaos_run_ends_with() {
    let dir = tempfile::tempdir().unwrap();
    let truth = run_dir(dir.path(), small(1, 0));
    let logs = write_truncating_log(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zkmq"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed: Vec<&str> = stdout.lines().skip(1).map(str::trim).collect();

    let check = check_history(dir.path()).unwrap();
    let truncations = report::zk_log::scan_dir(&logs);
    assert_eq!(printed, report::console_summary(&check, &truncations), "{stdout}");
    let lost = format!("lost (must be 0): 1 (e.g. {})", truth.lost[0]);
    assert!(printed.contains(&lost.as_str()), "{stdout}");
    assert!(printed.iter().any(|l| l.starts_with("ZooKeeper zk1 truncated its log")), "{stdout}");
    assert!(printed.iter().any(|l| l.starts_with("unavailability after ")), "{stdout}");
}

/// Decodes a PNG; returns (width, height, distinct pixel values seen).
fn decode_png(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let bytes = &buffer[..info.buffer_size()];
    let pixel = info.color_type.samples();
    let mut distinct = std::collections::HashSet::new();
    for chunk in bytes.chunks(pixel) {
        distinct.insert(chunk.to_vec());
        if distinct.len() > 64 {
            break;
        }
    }
    (info.width, info.height, distinct.len())
}

#[test]
fn every_plot_is_a_valid_non_blank_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    run_dir(dir.path(), small(0, 0));
    let reports = report::write_reports(dir.path()).unwrap();
    assert_eq!(reports.plots.len(), 2 * PLOTS.len());
    for (stem, _) in PLOTS {
        let png = dir.path().join("plots").join(format!("{stem}.png"));
        let (width, height, colours) = decode_png(&png);
        assert!(width >= 800 && height >= 200, "{stem}.png is {width}x{height}");
        assert!(colours > 10, "{stem}.png looks blank ({colours} distinct pixels)");

        let svg =
            std::fs::read_to_string(dir.path().join("plots").join(format!("{stem}.svg"))).unwrap();
        let doc =
            roxmltree::Document::parse(&svg).unwrap_or_else(|err| panic!("{stem}.svg: {err}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let drawn = doc
            .descendants()
            .filter(|n| {
                matches!(n.tag_name().name(), "polyline" | "path" | "rect" | "circle" | "line")
            })
            .count();
        let texts = doc.descendants().filter(|n| n.has_tag_name("text")).count();
        assert!(drawn > 20 && texts > 5, "{stem}.svg looks blank ({drawn} shapes, {texts} texts)");
        assert!(
            svg.contains("kill") || svg.contains("partition") || svg.contains("pause"),
            "{stem}.svg labels its faults"
        );
    }
}

#[test]
fn hdr_interval_logs_read_back_with_every_ok_latency() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    let dir = tempfile::tempdir().unwrap();
    run_dir(dir.path(), small(0, 0));
    let reports = report::write_reports(dir.path()).unwrap();
    assert_eq!(reports.hdr_logs.len(), 3);
    for (path, kind) in reports.hdr_logs.iter().zip(["produce", "take", "ack"]) {
        let bytes = std::fs::read(path).unwrap();
        let mut total = 0u64;
        let mut deserializer = Deserializer::new();
        for entry in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(interval) = entry.unwrap() {
                assert_eq!(interval.tag().map(|t| t.as_str()), Some(kind));
                let decoded = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    interval.encoded_histogram(),
                )
                .unwrap();
                let histogram: hdrhistogram::Histogram<u64> =
                    deserializer.deserialize(&mut decoded.as_slice()).unwrap();
                total += histogram.len();
            }
        }
        let stats = &reports.results.check.operations[kind];
        assert_eq!(
            total,
            stats.ok - stats.empty,
            "{kind}: every ok latency is logged, empty takes are not"
        );
    }
}

#[test]
fn compare_puts_two_runs_side_by_side() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    run_dir(a.path(), small(0, 0));
    run_dir(b.path(), SyntheticOptions { seed: 99, ..small(1, 0) });
    report::write_reports(a.path()).unwrap();
    // B has no results.json yet: compare writes its reports first.
    let markdown = report::compare(a.path(), b.path()).unwrap();
    assert!(markdown.contains("| verdict | valid | violated | |"), "{markdown}");
    assert!(markdown.contains("| lost (must be 0) | 0 | 1 | |"), "{markdown}");
    assert!(markdown.contains("produce p99") && markdown.contains("unavailability median"));
    assert!(b.path().join("results.json").is_file());
}

/// A run directory where the gateway was killed from 10 s to 15 s: every REST
/// operation in between fails, while a native producer and consumer answer every
/// 0.5 s throughout (REST is back with its produce invoked at 15.0, ok at 15.1).
fn rest_outage_run(dir: &Path) {
    let mut events = Vec::new();
    let mut line = |t: f64, process: &str, op: &str, phase: Phase, msg: Option<&str>| {
        let mut event = Event::new(t, process, op, phase);
        event.path = ["native", "rest"].into_iter().find(|p| process.contains(p)).map(Into::into);
        event.msg = msg.map(Into::into);
        if phase == Phase::Fail {
            event.error = Some("connection refused".into());
        }
        events.push(event);
    };
    let mut message = |t: f64, path: &str, id: &str, produced: Phase| {
        let (producer, consumer) = (format!("producer-{path}-1"), format!("consumer-{path}-1"));
        line(t, &producer, "produce", Phase::Invoke, Some(id));
        line(t + 0.1, &producer, "produce", produced, Some(id));
        if produced == Phase::Ok {
            line(t + 0.2, &consumer, "take", Phase::Invoke, None);
            line(t + 0.25, &consumer, "take", Phase::Ok, Some(id));
            line(t + 0.3, &consumer, "ack", Phase::Invoke, Some(id));
            line(t + 0.35, &consumer, "ack", Phase::Ok, Some(id));
        }
    };
    for step in 0..50 {
        message(step as f64 * 0.5, "native", &format!("n{step}"), Phase::Ok);
    }
    message(5.0, "rest", "r1", Phase::Ok);
    message(10.5, "rest", "r2", Phase::Fail);
    message(12.5, "rest", "r3", Phase::Fail);
    message(15.0, "rest", "r4", Phase::Ok);
    line(26.0, "drain", "drain", Phase::Invoke, None);
    line(26.1, "drain", "drain", Phase::Ok, None);
    events.sort_by(|a, b| a.t.total_cmp(&b.t));
    let text: String = events.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect();
    std::fs::write(dir.join("history.jsonl"), text).unwrap();
    let gateway_kill = FaultRecord {
        fault: "rest-kill".into(),
        target: "rest".into(),
        resolved: Some("rest".into()),
        start: 10.0,
        applied_at: Some(10.0),
        end: Some(15.0),
        applied: true,
        error: None,
    };
    let schedule = Schedule { seed: 7, faults: vec![gateway_kill] };
    std::fs::write(dir.join("schedule.json"), serde_json::to_string(&schedule).unwrap()).unwrap();
}

/// The console, summary.md, report.html and compare show each access path's own
/// unavailability: the gateway's 5.1 s outage on REST, hidden in the overall figure
/// by native operations that kept answering.
#[test]
fn every_report_shows_a_rest_only_outage_on_the_rest_path() {
    let dir = tempfile::tempdir().unwrap();
    rest_outage_run(dir.path());
    let reports = report::write_reports(dir.path()).unwrap();
    let check = &reports.results.check;
    assert!(check.valid, "{check:#?}");
    let summary = &check.unavailability_summary;
    let centiseconds = |s: Option<f64>| s.map(|s| (s * 100.0).round() as u32);
    assert_eq!(centiseconds(summary.max_s), Some(10), "native answered: {summary:?}");
    assert_eq!(centiseconds(summary.by_access["rest"].max_s), Some(510), "{summary:?}");

    let console = report::console_summary(check, &[]);
    assert!(console.iter().any(|l| l.starts_with("unavailability after 1 faults")), "{console:?}");
    assert!(console.contains(&"unavailability on native: median 0.10 s, max 0.10 s (median by fault: rest-kill 0.10 s)".to_owned()), "{console:?}");
    assert!(console.contains(&"unavailability on rest: median 5.10 s, max 5.10 s (median by fault: rest-kill 5.10 s)".to_owned()), "{console:?}");

    let markdown = std::fs::read_to_string(&reports.summary_md).unwrap();
    assert!(
        markdown.contains("**native** median 0.10 s")
            && markdown.contains("**rest** median 5.10 s"),
        "{markdown}"
    );

    let html = std::fs::read_to_string(&reports.report_html).unwrap();
    assert!(
        html.contains(
            "<th>unavailable</th><th>unavailable on native</th><th>unavailable on rest</th>"
        ),
        "{html}"
    );
    assert!(html.contains("<td class=\"n\">0.10 s</td><td class=\"n\">0.10 s</td><td class=\"n\">5.10 s</td></tr>"), "{html}");

    // An older results.json, written before paths were measured apart, still reads;
    // compare then shows the paths the other run has.
    let older = tempfile::tempdir().unwrap();
    rest_outage_run(older.path());
    let mut json = serde_json::to_value(&reports.results).unwrap();
    let check_json = &mut json["check"];
    check_json["unavailability_summary"].as_object_mut().unwrap().remove("by_access");
    for window in check_json["unavailability"].as_array_mut().unwrap() {
        window.as_object_mut().unwrap().remove("by_access");
    }
    std::fs::write(older.path().join("results.json"), json.to_string()).unwrap();
    let markdown = report::compare(older.path(), dir.path()).unwrap();
    assert!(markdown.contains("| unavailability max | 0.10 s | 0.10 s | +0.0% |"), "{markdown}");
    assert!(markdown.contains("| unavailability max on rest | – | 5.10 s | – |"), "{markdown}");
    assert!(
        markdown.contains("| unavailability median after rest-kill on native | – | 0.10 s | – |"),
        "{markdown}"
    );
}

#[test]
fn progress_counts_outcomes_faults_and_violations_as_they_happen() {
    let progress = Progress::plain(
        "test",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(3600),
    );
    let event = |process: &str, op: &str, phase: Phase, msg: Option<&str>| {
        let mut event = Event::new(0.1, process, op, phase);
        event.msg = msg.map(str::to_owned);
        event
    };
    for e in [
        event("producer-1", "produce", Phase::Invoke, Some("m1")),
        event("producer-1", "produce", Phase::Ok, Some("m1")),
        event("consumer-1", "take", Phase::Invoke, None),
        event("consumer-1", "take", Phase::Ok, Some("m1")),
        event("consumer-1", "ack", Phase::Invoke, Some("m1")),
        event("consumer-1", "ack", Phase::Ok, Some("m1")),
        event("consumer-2", "take", Phase::Invoke, None),
        event("consumer-2", "take", Phase::Info, None),
        event("consumer-2", "take", Phase::Invoke, None),
        event("consumer-2", "take", Phase::Ok, Some("m1")),
    ] {
        progress.observe(&e);
    }
    progress.fault_started("kill zk3");
    progress.fault_started("pause zk1");
    progress.fault_ended("kill zk3");
    progress.set_phase("draining");
    let snapshot = progress.snapshot();
    assert_eq!((snapshot.ok, snapshot.fail, snapshot.info), (4, 0, 1));
    assert_eq!(snapshot.violations, 1, "the take after the ack is a duplicate");
    assert_eq!(snapshot.active_faults, ["pause zk1"]);
    assert_eq!(snapshot.faults_applied, 2);
    let line = snapshot.line();
    assert!(
        line.starts_with("draining") && line.contains("violations 1") && line.contains("pause zk1"),
        "{line}"
    );
    progress.finish("done");
}

/// A synthetic run with its reports, started on `day` of January 2026 (run.json's
/// start decides the trend's order, not the directory's name).
fn dated_run(dir: &Path, day: u32, options: SyntheticOptions) -> Results {
    run_dir(dir, options);
    let run_json = dir.join("run.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run_json).unwrap()).unwrap();
    meta["started_at"] = format!("2026-01-{day:02}T02:00:00Z").into();
    std::fs::write(&run_json, meta.to_string()).unwrap();
    report::write_reports(dir).unwrap().results
}

/// Equal within parsing error: trend.json's figures went through JSON twice.
fn assert_close(a: Option<f64>, b: Option<f64>, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => {
            assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{what}: {a} != {b}")
        }
        _ => assert_eq!(a, b, "{what}"),
    }
}

fn zkmq_trend(args: &[&Path], out: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_zkmq"))
        .args(["report", "--trend"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// Three nights in a directory of runs, named against their order: trend.json has
/// each run's figures as its results.json says them, oldest first; the night that
/// lost messages is flagged at the top of every file and fails the command.
#[test]
fn a_trend_lists_each_run_oldest_first_and_flags_the_newest_that_lost_messages() {
    let reports = tempfile::tempdir().unwrap();
    let nights = [
        ("c-night", 1, small(0, 0)),
        ("a-night", 2, SyntheticOptions { seed: 11, ..small(0, 0) }),
        ("b-night", 3, SyntheticOptions { seed: 12, ..small(2, 0) }),
    ];
    let results: Vec<Results> = nights
        .iter()
        .map(|(name, day, options)| dated_run(&reports.path().join(name), *day, options.clone()))
        .collect();
    std::fs::write(reports.path().join("README.md"), "not a run").unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = zkmq_trend(&[reports.path()], out.path());
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));

    let json = std::fs::read_to_string(out.path().join("trend.json")).unwrap();
    let trend: report::Trend = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = trend.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["c-night", "a-night", "b-night"]);
    for ((run, results), (_, _, options)) in trend.runs.iter().zip(&results).zip(&nights) {
        let figures = run.figures.as_ref().unwrap();
        assert_eq!(run.seed, Some(options.seed));
        assert_eq!(run.verdict, results.verdict);
        assert_close(Some(figures.ops_per_s), Some(results.throughput.ops_per_s), "ops/s");
        assert_close(
            Some(figures.acknowledged_per_s),
            Some(results.throughput.acknowledged_per_s),
            "acknowledged/s",
        );
        assert_close(Some(figures.availability), Some(results.check.availability), "availability");
        let summary = &results.check.unavailability_summary;
        assert_close(figures.unavailability.median_s, summary.median_s, "median");
        assert_close(figures.unavailability.max_s, summary.max_s, "max");
        for (kind, own) in &figures.unavailability.by_fault {
            assert_close(own.median_s, summary.median_by_fault.get(kind).copied(), kind);
            let max = results.check.unavailability.iter().filter(|w| &w.fault == kind);
            let max = max.filter_map(|w| w.duration_s).reduce(f64::max);
            assert_close(own.max_s, max, kind);
        }
        let paths: Vec<&String> = figures.unavailability_by_access.keys().collect();
        assert_eq!(paths, summary.by_access.keys().collect::<Vec<_>>());
        let rest = &figures.unavailability_by_access["rest"];
        assert_close(rest.median_s, summary.by_access["rest"].median_s, "rest median");
        let applied = results.faults.iter().filter(|f| f.applied).count() as u64;
        assert!(applied > 0);
        assert_eq!(figures.faults_applied.values().sum::<u64>(), applied);
        assert_eq!(figures.violations.lost, results.check.invariants.lost.count);
    }
    assert!(trend.newest_regressed);
    let flagged: Vec<(&str, &str)> =
        trend.regressions.iter().map(|r| (r.run.as_str(), r.metric.as_str())).collect();
    assert_eq!(flagged, [("b-night", "lost")], "{:#?}", trend.regressions);

    let markdown = std::fs::read_to_string(out.path().join("trend.md")).unwrap();
    let html = std::fs::read_to_string(out.path().join("trend.html")).unwrap();
    for page in [&markdown, &html] {
        let flag = page.find("b-night: 2 lost (must be 0)").expect("the regression is listed");
        assert!(flag < page.find("Runs (oldest first)").unwrap(), "regressions come first");
        for name in names.iter() {
            assert!(page.contains(name), "{name} is in the page");
        }
    }
    assert_eq!(html.matches("<svg").count(), 3, "throughput, unavailability, violations");
    assert!(String::from_utf8_lossy(&output.stdout).contains("### Regressions"));
}

/// A crashed run (run.json, no results.json) is listed as crashed and, as the
/// newest, regressed; throughput below 80% of the earlier median is flagged against
/// that median; a directory that holds no run is an error naming it.
#[test]
fn a_trend_lists_a_crashed_run_flags_slow_throughput_and_names_a_directory_without_runs() {
    let runs = tempfile::tempdir().unwrap();
    let dir = |name: &str| runs.path().join(name);
    let first = dated_run(&dir("1"), 1, small(0, 0));
    dated_run(&dir("2"), 2, SyntheticOptions { seed: 21, ..small(0, 0) });
    let mut slow = dated_run(&dir("3"), 3, SyntheticOptions { seed: 22, ..small(0, 0) });
    slow.throughput.ops_per_s = first.throughput.ops_per_s / 2.0;
    std::fs::write(dir("3").join("results.json"), serde_json::to_string(&slow).unwrap()).unwrap();
    // A run of another scenario, ten times faster, between them: not a baseline of 3.
    let mut smoke = dated_run(&dir("2-smoke"), 2, SyntheticOptions { seed: 23, ..small(0, 0) });
    smoke.run.as_mut().unwrap().scenario = "smoke".into();
    smoke.throughput.ops_per_s *= 10.0;
    std::fs::write(dir("2-smoke").join("results.json"), serde_json::to_string(&smoke).unwrap())
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let output = zkmq_trend(&[&dir("1"), &dir("2"), &dir("2-smoke"), &dir("3")], out.path());
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let trend: report::Trend =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("trend.json")).unwrap())
            .unwrap();
    let slow_flag = &trend.regressions[0];
    assert_eq!((slow_flag.run.as_str(), slow_flag.metric.as_str()), ("3", "ops_per_s"));
    let names: Vec<&str> = trend.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["1", "2", "2-smoke", "3"]);
    let earlier: Vec<f64> =
        trend.runs[..2].iter().map(|r| r.figures.as_ref().unwrap().ops_per_s).collect();
    assert_close(slow_flag.baseline, Some((earlier[0] + earlier[1]) / 2.0), "baseline");

    // Night 4 crashed after writing run.json.
    std::fs::create_dir(dir("4")).unwrap();
    std::fs::copy(dir("1").join("run.json"), dir("4").join("run.json")).unwrap();
    let run_json = std::fs::read_to_string(dir("4").join("run.json")).unwrap();
    std::fs::write(dir("4").join("run.json"), run_json.replace("2026-01-01", "2026-01-04"))
        .unwrap();
    let trend = report::write_trend(&[runs.path().to_owned()], out.path()).unwrap().trend;
    let newest = trend.runs.last().unwrap();
    assert_eq!((newest.name.as_str(), newest.verdict.as_str()), ("4", "crashed"));
    assert!(newest.figures.is_none() && trend.newest_regressed);
    let markdown = std::fs::read_to_string(out.path().join("trend.md")).unwrap();
    assert!(
        markdown.contains("| #5 | 4 | 2026-01-04T02:00:00Z | synthetic (7) | crashed |"),
        "{markdown}"
    );

    // Without the slow and the crashed nights, the newest did not regress: exit 0.
    let output = zkmq_trend(&[&dir("1"), &dir("2")], out.path());
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));

    let empty = tempfile::tempdir().unwrap();
    let output = zkmq_trend(&[&dir("1"), empty.path()], out.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{} is neither a run directory", empty.path().display())),
        "{stderr}"
    );
}
