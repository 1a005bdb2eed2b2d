//! Text renderings of [`Results`]: Markdown summary, JUnit XML and the HTML page.

use std::fmt::Write as _;

use super::plots::{PLOTS, SHADED_FAULTS_MAX};
use super::zk_log::Truncation;
use super::{HarnessFigures, ReportError, Results};
use crate::checker::{self, CheckResult, Finding, UnavailabilitySummary, UnavailabilityWindow};
use crate::rundir::{FaultRecord, RunDir};

fn percent(value: f64) -> String {
    format!("{:.2}%", value * 100.0)
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |s| format!("{s:.2} s"))
}

/// A window's duration in a table cell: `None` is no window (or a path that did not
/// run), `Some(None)` a window that never closed.
fn window_duration(duration: Option<Option<f64>>) -> String {
    match duration {
        None => "–".to_owned(),
        Some(None) => "never recovered".to_owned(),
        Some(Some(s)) => format!("{s:.2} s"),
    }
}

/// "median 0.30 s, max 5.10 s (median by fault: kill 1.00 s), 1 never recovered":
/// one summary's figures, `none` standing for a figure without closed windows.
fn unavailability_figures(u: &UnavailabilitySummary, none: &str) -> String {
    let secs = |s: Option<f64>| s.map_or_else(|| none.to_owned(), |s| format!("{s:.2} s"));
    let by_fault: Vec<String> =
        u.median_by_fault.iter().map(|(fault, s)| format!("{fault} {s:.2} s")).collect();
    format!(
        "median {}, max {}{}{}",
        secs(u.median_s),
        secs(u.max_s),
        if by_fault.is_empty() {
            String::new()
        } else {
            format!(" (median by fault: {})", by_fault.join(", "))
        },
        if u.unresolved > 0 {
            format!(", {} never recovered", u.unresolved)
        } else {
            String::new()
        }
    )
}

/// Per access path, its own unavailability (`path`, figures), when two or more paths
/// ran: with one, the overall figures are that path's.
fn unavailability_by_access(u: &UnavailabilitySummary) -> Vec<(&str, String)> {
    if !u.has_several_access_paths() {
        return Vec::new();
    }
    u.by_access
        .iter()
        .map(|(path, own)| (path.as_str(), unavailability_figures(own, "–")))
        .collect()
}

fn examples(finding: &Finding) -> String {
    if finding.examples.is_empty() {
        return String::new();
    }
    let more = if finding.count as usize > finding.examples.len() { ", …" } else { "" };
    format!("{}{more}", finding.examples.join(", "))
}

fn title(results: &Results) -> String {
    match &results.run {
        Some(run) => format!(
            "{} (seed {}, ZooKeeper {}, {} nodes, {})",
            run.scenario, run.seed, run.zk_version, run.nodes, run.algorithm
        ),
        None => "run".to_owned(),
    }
}

/// Why `divergent` and `not_rejoined` can be unchecked.
const NOT_CHECKED: &str =
    "the run has no members.json (each member's view of the queue tree after the final heal)";

/// Which members the divergence check compared, and which it could not read.
fn members_line(check: &CheckResult) -> Option<String> {
    let m = check.members.as_ref()?;
    let mut line = format!(
        "Members compared after the final heal, each read on its own after a sync: {} ({} znodes under {}, {} reading{}).",
        if m.compared.is_empty() { "none".to_owned() } else { m.compared.join(", ") },
        m.znodes,
        m.root,
        m.readings,
        if m.readings == 1 { "" } else { "s" }
    );
    if !m.unread.is_empty() {
        line.push_str(&format!(" Serving but not read: {}.", m.unread.join("; ")));
    }
    Some(line)
}

/// `summary.md`: the verdict, the four must-be-zero counts and the headline figures.
pub fn summary_markdown(results: &Results) -> String {
    let check = &results.check;
    let mut out = String::new();
    let verdict = if results.valid { "✅ VALID" } else { "❌ VIOLATED" };
    let _ = writeln!(out, "### zkmq chaos: {verdict} — {}\n", title(results));
    let _ = writeln!(out, "| invariant | count | examples |\n|---|---:|---|");
    for (name, finding) in check.invariants.required(check.stuck_allowed) {
        let mark = if finding.count == 0 { "✅" } else { "❌" };
        let _ = writeln!(
            out,
            "| {mark} {} (must be 0) | {} | {} |",
            name.replace('_', " "),
            finding.count,
            examples(finding)
        );
    }
    for name in check.invariants.unchecked() {
        let _ = writeln!(
            out,
            "| ➖ {} (must be 0) | not checked | {} |",
            name.replace('_', " "),
            NOT_CHECKED
        );
    }
    for (name, finding) in check.invariants.reported(check.stuck_allowed) {
        let _ = writeln!(
            out,
            "| {} (reported) | {} | {} |",
            name.replace('_', " "),
            finding.count,
            examples(finding)
        );
    }
    if let Some(line) = members_line(check) {
        let _ = writeln!(out, "\n{line}");
    }
    let m = &check.messages;
    let _ = writeln!(
        out,
        "\nMessages: {} produced ok, {} delivered, {} acknowledged ({} produce outcomes unknown, {} failed). \
         Operations: {:.1} ops/s over {:.1} s, availability {}.",
        m.produced_ok,
        m.delivered,
        m.acknowledged,
        m.produce_unknown,
        m.produce_failed,
        results.throughput.ops_per_s,
        results.throughput.duration_s,
        percent(check.availability)
    );
    let _ = writeln!(out, "\nHarness: {}.", harness_line(&results.harness));
    let u = &check.unavailability_summary;
    let applied = results.faults.iter().filter(|f| f.applied).count();
    let _ = writeln!(
        out,
        "Faults: {applied} applied ({} not applied); unavailability after a fault: median {}, max {}{}.",
        results.faults.len() - applied,
        seconds(u.median_s),
        seconds(u.max_s),
        if u.unresolved > 0 { format!(", {} never recovered in the history", u.unresolved) } else { String::new() }
    );
    let by_access = unavailability_by_access(u);
    if !by_access.is_empty() {
        let paths: Vec<String> =
            by_access.iter().map(|(path, figures)| format!("**{path}** {figures}")).collect();
        let _ = writeln!(
            out,
            "Unavailability per access path (each closed only by its own ok operations): {}.",
            paths.join("; ")
        );
    }
    if !check.drain.complete {
        let _ = writeln!(
            out,
            "\n⚠️ The final drain {}: lost counts may include messages still in the queue.",
            if check.drain.recorded { "did not empty the queue" } else { "is not in the history" }
        );
    }
    if check.truncated_last_line {
        let _ = writeln!(out, "\n⚠️ The history's last line was truncated (the harness stopped mid-write) and was ignored.");
    }
    if !results.zookeeper_truncations.is_empty() {
        let _ = writeln!(
            out,
            "\n⚠️ ZooKeeper servers dropped transactions from their logs to follow a new leader{}:\n",
            if results.valid {
                ""
            } else {
                " (if they were committed, the ensemble itself lost writes: see the node logs)"
            }
        );
        let _ = writeln!(out, "| server | time | last zxid | truncated to | transactions dropped |\n|---|---|---|---|---:|");
        for t in &results.zookeeper_truncations {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                t.node,
                t.time,
                t.from_text(),
                t.to_zxid,
                t.dropped_text()
            );
        }
    }
    for expectation in &results.expectations {
        if expectation.passed == Some(false) {
            let _ = writeln!(
                out,
                "\n❌ Scenario expectation `{}` = {} not met (got {}).",
                expectation.name, expectation.expected, expectation.actual
            );
        }
    }
    if let Some(run) = &results.run {
        let _ = writeln!(out, "\nReplay: `{}`", run.replay_command);
    }
    out
}

/// What `zkmq chaos run` prints at its end and `zkmq check` prints for a run: the
/// message counts, one line per invariant with example ids (what a person looks up
/// first), unavailability, the ZooKeeper log truncations that dropped transactions
/// (the first place to look when a run is violated) and what makes the counts
/// uncertain. One line each, without the verdict: each command says that its own way.
pub fn console_summary(check: &CheckResult, truncations: &[Truncation]) -> Vec<String> {
    /// Enough ids to start looking, few enough for one console line.
    const CONSOLE_EXAMPLES: usize = 5;
    let m = &check.messages;
    let mut lines = vec![format!(
        "messages: {} produced ok ({} unknown, {} failed), {} delivered, {} acknowledged; availability {}",
        m.produced_ok,
        m.produce_unknown,
        m.produce_failed,
        m.delivered,
        m.acknowledged,
        percent(check.availability)
    )];
    let required =
        check.invariants.required(check.stuck_allowed).into_iter().map(|(name, f)| (name, f, true));
    let reported = check
        .invariants
        .reported(check.stuck_allowed)
        .into_iter()
        .map(|(name, f)| (name, f, false));
    for (name, finding, must_be_zero) in required.chain(reported) {
        let rule = if must_be_zero { " (must be 0)" } else { "" };
        let examples: Vec<&str> =
            finding.examples.iter().take(CONSOLE_EXAMPLES).map(String::as_str).collect();
        if finding.count > 0 && !examples.is_empty() {
            lines.push(format!("{name}{rule}: {} (e.g. {})", finding.count, examples.join(", ")));
        } else {
            lines.push(format!("{name}{rule}: {}", finding.count));
        }
    }
    for name in check.invariants.unchecked() {
        lines.push(format!("{name} (must be 0): not checked ({NOT_CHECKED})"));
    }
    if let Some(line) = members_line(check) {
        lines.push(line);
    }
    let u = &check.unavailability_summary;
    if u.faults > 0 {
        lines.push(format!(
            "unavailability after {} faults: {}",
            u.faults,
            unavailability_figures(u, "-")
        ));
        if u.has_several_access_paths() {
            for (path, own) in &u.by_access {
                lines.push(format!(
                    "unavailability on {path}: {}",
                    unavailability_figures(own, "-")
                ));
            }
        }
    }
    for t in truncations {
        lines.push(format!(
            "ZooKeeper {} truncated its log at {} from {} to {} ({} transactions dropped)",
            t.node,
            t.time,
            t.from_text(),
            t.to_zxid,
            t.dropped_text()
        ));
    }
    if !check.drain.complete {
        lines.push(format!(
            "note: the final drain {}: lost may include messages still queued",
            if check.drain.recorded { "did not empty the queue" } else { "is not in the history" }
        ));
    }
    if check.truncated_last_line {
        lines.push("note: the last line of the history was truncated and ignored".to_owned());
    }
    lines
}

/// Escapes text for XML and HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// `junit.xml`: one test case per must-hold invariant and per scenario expectation.
pub fn junit(results: &Results) -> String {
    let check = &results.check;
    let suite = results
        .run
        .as_ref()
        .map_or_else(|| "zkmq chaos".to_owned(), |run| format!("zkmq chaos {}", run.scenario));
    let mut cases = String::new();
    let (mut tests, mut failures, mut skipped) = (0, 0, 0);
    for (name, finding) in check.invariants.required(check.stuck_allowed) {
        tests += 1;
        let _ =
            write!(cases, "    <testcase classname=\"zkmq.invariants\" name=\"{name}\" time=\"0\"");
        if finding.count == 0 {
            cases.push_str("/>\n");
        } else {
            failures += 1;
            let message =
                format!("{} {} message(s), must be 0", finding.count, name.replace('_', " "));
            let _ = write!(
                cases,
                ">\n      <failure message=\"{}\" type=\"InvariantViolated\">example ids: {}</failure>\n    </testcase>\n",
                escape(&message),
                escape(&examples(finding))
            );
        }
    }
    for name in check.invariants.unchecked() {
        tests += 1;
        skipped += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"zkmq.invariants\" name=\"{name}\" time=\"0\">\n      <skipped message=\"not checked: {}\"/>\n    </testcase>\n",
            escape(NOT_CHECKED)
        );
    }
    for expectation in &results.expectations {
        tests += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"zkmq.expectations\" name=\"{}\" time=\"0\"",
            escape(&expectation.name)
        );
        match expectation.passed {
            Some(true) => cases.push_str("/>\n"),
            Some(false) => {
                failures += 1;
                let _ = write!(
                    cases,
                    ">\n      <failure message=\"expected {}, got {}\" type=\"ExpectationNotMet\"/>\n    </testcase>\n",
                    escape(&expectation.expected),
                    escape(&expectation.actual)
                );
            }
            None => {
                skipped += 1;
                let _ = write!(
                    cases,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    escape(&expectation.actual)
                );
            }
        }
    }
    let time = check.duration_s;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"zkmq\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">\n  \
         <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">\n{cases}  </testsuite>\n</testsuites>\n",
        suite = escape(&suite)
    )
}

pub(super) const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1240px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .3rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.verdict { font-size: 1.6rem; font-weight: 700; padding: .8rem 1.2rem; border-radius: 6px; margin: 1rem 0; }
.valid { background: #e6f4ea; color: #137333; border: 1px solid #b7dfc2; }
.violated { background: #fce8e6; color: #a50e0e; border: 1px solid #f5b7b1; }
.warn { background: #fef7e0; border: 1px solid #f9e08b; padding: .5rem 1rem; border-radius: 4px; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .3rem .7rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fce8e6; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85rem; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; border-radius: 4px; }
.ids { font-family: ui-monospace, monospace; font-size: .8rem; color: #555; }
.plot svg { max-width: 100%; height: auto; }
.muted { color: #666; }
"#;

fn finding_row(out: &mut String, name: &str, finding: &Finding, required: bool) {
    let bad = required && finding.count > 0;
    let _ = writeln!(
        out,
        "<tr{}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"ids\">{}</td></tr>",
        if bad { " class=\"bad\"" } else { "" },
        escape(&name.replace('_', " ")),
        if required { "must be 0" } else { "reported" },
        finding.count,
        escape(&examples(finding))
    );
}

/// `report.html`: verdict, invariants, run facts, operations, faults, plots (inline SVG).
pub fn html(
    results: &Results,
    scenario: Option<&str>,
    run_dir: &RunDir,
) -> Result<String, ReportError> {
    let mut out = String::new();
    let page_title = format!("zkmq chaos — {}", title(results));
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        escape(&page_title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(&page_title));
    html_verdict(&mut out, results);
    html_invariants(&mut out, results);
    html_run(&mut out, results);
    html_operations(&mut out, &results.check);
    html_faults(&mut out, results);
    html_truncations(&mut out, &results.zookeeper_truncations);
    html_plots(&mut out, run_dir, results.faults.iter().filter(|f| f.applied).count())?;
    html_scenario(&mut out, scenario);
    let _ = writeln!(
        out,
        "<p class=\"muted\">Written by zkmq {} from {}.</p>\n</body></html>",
        env!("CARGO_PKG_VERSION"),
        escape(&run_dir.root().display().to_string())
    );
    Ok(out)
}

/// The verdict, and what makes it less than certain.
fn html_verdict(out: &mut String, results: &Results) {
    let check = &results.check;
    let (class, verdict) = if results.valid {
        ("valid", "VALID: nothing acknowledged was lost, nothing was delivered again after its ack")
    } else {
        ("violated", "VIOLATED: the queue broke a delivery invariant")
    };
    let _ = writeln!(out, "<div class=\"verdict {class}\">{verdict}</div>");
    if let Some(stopped) = &results.stopped {
        let _ = writeln!(
            out,
            "<p class=\"warn\">The run {}: its figures cover a shorter workload than planned. Each member's data directory is in <code>data/</code>.</p>",
            escape(&super::stopped_line(stopped))
        );
    }
    if !check.drain.complete {
        let _ = writeln!(
            out,
            "<p class=\"warn\">The final drain {}: lost counts may include messages still in the queue.</p>",
            if check.drain.recorded { "did not empty the queue" } else { "is not in the history" }
        );
    }
    if check.truncated_last_line {
        let _ = writeln!(out, "<p class=\"warn\">The history's last line was truncated (the harness stopped mid-write) and was ignored.</p>");
    }
}

/// The invariants and the scenario's expectations.
fn html_invariants(out: &mut String, results: &Results) {
    let check = &results.check;
    out.push_str("<h2>Invariants</h2>\n<table><tr><th>invariant</th><th>rule</th><th>count</th><th>first examples (message ids; znodes for divergent, members for not rejoined)</th></tr>\n");
    for (name, finding) in check.invariants.required(check.stuck_allowed) {
        finding_row(out, name, finding, true);
    }
    for name in check.invariants.unchecked() {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>must be 0</td><td class=\"n\">not checked</td><td class=\"muted\">{}</td></tr>",
            escape(&name.replace('_', " ")),
            escape(NOT_CHECKED)
        );
    }
    for (name, finding) in check.invariants.reported(check.stuck_allowed) {
        finding_row(out, name, finding, false);
    }
    out.push_str("</table>\n");
    if let Some(line) = members_line(check) {
        let _ = writeln!(out, "<p>{}</p>", escape(&line));
    }
    if !results.expectations.is_empty() {
        out.push_str("<table><tr><th>scenario expectation</th><th>expected</th><th>actual</th><th>result</th></tr>\n");
        for e in &results.expectations {
            let verdict = match e.passed {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "not evaluated",
            };
            let _ = writeln!(
                out,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{verdict}</td></tr>",
                if e.passed == Some(false) { " class=\"bad\"" } else { "" },
                escape(&e.name),
                escape(&e.expected),
                escape(&e.actual)
            );
        }
        out.push_str("</table>\n");
    }
}

/// Run facts: scenario, seed, ensemble, replay command, messages, throughput.
fn html_run(out: &mut String, results: &Results) {
    let check = &results.check;
    out.push_str("<h2>Run</h2>\n<table>\n");
    if let Some(run) = &results.run {
        let rows = [
            ("scenario", run.scenario.clone()),
            ("seed", run.seed.to_string()),
            ("started", run.started_at.clone()),
            ("planned duration", format!("{:.0} s", run.duration_s)),
            ("ensemble", format!("{} nodes, ZooKeeper {}", run.nodes, run.zk_version)),
            ("algorithm", run.algorithm.clone()),
            ("zkmq", run.zkmq_version.clone()),
        ];
        for (key, value) in rows {
            let _ = writeln!(out, "<tr><th>{key}</th><td>{}</td></tr>", escape(&value));
        }
        let _ = writeln!(
            out,
            "<tr><th>replay</th><td><code>{}</code></td></tr>",
            escape(&run.replay_command)
        );
    } else {
        out.push_str("<tr><td class=\"muted\">no run.json in this run directory</td></tr>\n");
    }
    let m = &check.messages;
    let t = &results.throughput;
    let rows = [
        ("messages", format!("{} produced ok, {} delivered, {} acknowledged; {} produce outcomes unknown, {} failed", m.produced_ok, m.delivered, m.acknowledged, m.produce_unknown, m.produce_failed)),
        ("recorded", format!("{} events over {:.1} s", check.events, check.duration_s)),
        ("throughput", format!("{:.1} ops/s ({:.1} ok/s); {:.1} messages acknowledged/s", t.ops_per_s, t.ok_ops_per_s, t.acknowledged_per_s)),
        ("availability", format!("{} of queue operations answered ok", percent(check.availability))),
        ("drain", format!("{}{}", if check.drain.complete { "complete" } else { "incomplete" }, check.drain.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())),
        ("harness", harness_line(&results.harness)),
    ];
    for (key, value) in rows {
        let _ = writeln!(out, "<tr><th>{key}</th><td>{}</td></tr>", escape(&value));
    }
    out.push_str("</table>\n");
}

/// The harness's own cost in one line: memory, history size, check time.
pub fn harness_line(h: &HarnessFigures) -> String {
    let mib = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0}"));
    let memory = if h.rss_max_mib.is_some() {
        format!(
            "resident {} MiB at start, {} at end, {} at most; ",
            mib(h.rss_start_mib),
            mib(h.rss_end_mib),
            mib(h.rss_max_mib)
        )
    } else {
        String::new()
    };
    format!(
        "{memory}history {} ({:.1} MiB); checked in {:.2} s",
        h.history_file,
        h.history_bytes as f64 / (1 << 20) as f64,
        h.check_s
    )
}

/// Per operation kind: outcomes, availability and latency.
fn html_operations(out: &mut String, check: &CheckResult) {
    out.push_str("<h2>Operations</h2>\n<table><tr><th>kind</th><th>invoked</th><th>ok</th><th>fail</th><th>info (unknown)</th><th>empty takes</th><th>availability</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
    for (kind, o) in &check.operations {
        let l = &o.latency_ms;
        let _ = writeln!(
            out,
            "<tr><td>{kind}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{:.1} ms</td><td class=\"n\">{:.1} ms</td><td class=\"n\">{:.1} ms</td><td class=\"n\">{:.1} ms</td><td class=\"n\">{:.1} ms</td></tr>",
            o.invoked, o.ok, o.fail, o.info, o.empty, percent(o.availability), l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
    out.push_str("</table>\n<p class=\"muted\">Latency of ok outcomes; ok includes takes that found the queue empty (excluded from latency: their time is mostly waiting). HdrHistogram interval logs: <code>latency-produce.hlog</code>, <code>latency-take.hlog</code>, <code>latency-ack.hlog</code>.</p>\n");
}

/// The fault windows and how long the queue was unavailable in each.
fn html_faults(out: &mut String, results: &Results) {
    let check = &results.check;
    out.push_str("<h2>Faults and unavailability</h2>\n");
    let u = &check.unavailability_summary;
    let _ = writeln!(
        out,
        "<p>{} fault windows (from <code>{}</code>); unavailability (fault start to the first ok operation invoked after it): median {}, max {}{}.</p>",
        u.faults,
        escape(&check.faults_source),
        seconds(u.median_s),
        seconds(u.max_s),
        if u.unresolved > 0 { format!(", {} never recovered within the history", u.unresolved) } else { String::new() }
    );
    let by_access = unavailability_by_access(u);
    if !by_access.is_empty() {
        out.push_str("<p>Per access path, each window closed only by an ok operation of that path (an outage of one path shows even while the other answers):</p>\n<ul>\n");
        for (path, figures) in &by_access {
            let _ = writeln!(out, "<li><b>{}</b>: {}</li>", escape(path), escape(figures));
        }
        out.push_str("</ul>\n");
    }
    let paths: Vec<&str> = by_access.iter().map(|(path, _)| *path).collect();
    if results.faults.len() > FAULT_ROWS_SHOWN {
        html_faults_by_kind(out, results, &paths);
        let _ = writeln!(
            out,
            "<details><summary>Every fault ({} rows)</summary>",
            results.faults.len()
        );
    }
    if !results.faults.is_empty() {
        out.push_str("<table><tr><th>start</th><th>end</th><th>fault</th><th>target</th><th>hit</th><th>applied</th><th>unavailable</th>");
        for path in &paths {
            let _ = write!(out, "<th>unavailable on {}</th>", escape(path));
        }
        out.push_str("</tr>\n");
        for fault in &results.faults {
            let found = fault_window(fault, &check.unavailability);
            let mut unavailable =
                format!("<td class=\"n\">{}</td>", window_duration(found.map(|w| w.duration_s)));
            for path in &paths {
                let own = found.and_then(|w| w.by_access.get(*path).copied());
                let _ = write!(unavailable, "<td class=\"n\">{}</td>", window_duration(own));
            }
            let _ = writeln!(
                out,
                "<tr{}><td class=\"n\">{:.1} s</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{unavailable}</tr>",
                if fault.applied { "" } else { " class=\"bad\"" },
                fault.start,
                fault.end.map_or_else(|| "never undone".into(), |e| format!("{e:.1} s")),
                escape(&fault.fault),
                escape(&fault.target),
                escape(fault.resolved.as_deref().unwrap_or("")),
                if fault.applied { "yes".to_owned() } else { not_applied(fault.error.as_deref().unwrap_or("")) }
            );
        }
        out.push_str("</table>\n");
    }
    if results.faults.len() > FAULT_ROWS_SHOWN {
        out.push_str("</details>\n");
    }
}

/// Why a fault was not applied, in a table cell: a long error (a whole shell
/// script and Docker's answer) is cut to its end, the full text in the tooltip.
fn not_applied(error: &str) -> String {
    const SHOWN: usize = 140;
    let chars = error.chars().count();
    if chars <= SHOWN {
        return format!("no: {}", escape(error));
    }
    let tail: String = error.chars().skip(chars - SHOWN).collect();
    format!("<span title=\"{}\">no: …{}</span>", escape(error), escape(&tail))
}

/// Up to this many faults, the page lists each; beyond (a soak's thousands), a table
/// per fault kind comes first and the full list folds away.
const FAULT_ROWS_SHOWN: usize = 60;

/// One row per fault kind: how many were applied, and the unavailability they
/// caused (median, 99th percentile, max; per access path the median and max).
fn html_faults_by_kind(out: &mut String, results: &Results, paths: &[&str]) {
    let windows = &results.check.unavailability;
    let mut kinds: Vec<&str> = results.faults.iter().map(|f| f.fault.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    out.push_str("<table><tr><th>fault</th><th>applied</th><th>not applied</th><th>unavailable: median</th><th>p99</th><th>max</th>");
    for path in paths {
        let _ = write!(out, "<th>on {}: median / max</th>", escape(path));
    }
    out.push_str("</tr>\n");
    for kind in kinds {
        let of_kind = results.faults.iter().filter(|f| f.fault == kind);
        let applied: Vec<&FaultRecord> = of_kind.clone().filter(|f| f.applied).collect();
        let refused = of_kind.count() - applied.len();
        let found: Vec<&UnavailabilityWindow> =
            applied.iter().filter_map(|f| fault_window(f, windows)).collect();
        let mut overall: Vec<f64> = found.iter().filter_map(|w| w.duration_s).collect();
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{refused}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            if refused > 0 { " class=\"bad\"" } else { "" },
            escape(kind),
            applied.len(),
            seconds(checker::median(&mut overall)),
            seconds(quantile(&mut overall, 0.99)),
            seconds(quantile(&mut overall, 1.0)),
        );
        for path in paths {
            let mut own: Vec<f64> =
                found.iter().filter_map(|w| w.by_access.get(*path).copied().flatten()).collect();
            let _ = write!(
                out,
                "<td class=\"n\">{} / {}</td>",
                seconds(checker::median(&mut own)),
                seconds(quantile(&mut own, 1.0))
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// The `q` quantile (nearest rank) of `values`; None when empty. Medians are
/// [`checker::median`], as everywhere else in the report.
fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// Servers that dropped transactions to follow a leader.
fn html_truncations(out: &mut String, truncations: &[Truncation]) {
    if !truncations.is_empty() {
        out.push_str("<h2>ZooKeeper log truncations</h2>\n<p>Servers that dropped transactions from their log to follow a new leader (from <code>logs/zk*.log</code>). A crashed leader's uncommitted proposals go this way; committed ones must not, and a message lost or delivered again after its ack in the same run points here (ZooKeeper's sync bugs ZOOKEEPER-4785, -4643, -4925).</p>\n<table><tr><th>server</th><th>time</th><th>last zxid</th><th>truncated to</th><th>transactions dropped</th></tr>\n");
        for t in truncations {
            let _ = writeln!(
                out,
                "<tr class=\"bad\"><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
                escape(&t.node),
                escape(&t.time),
                escape(t.from_text()),
                escape(&t.to_zxid),
                t.dropped_text()
            );
        }
        out.push_str("</table>\n");
    }
}

/// The unavailability window of a fault. Windows open when the fault took effect
/// (`applied_at`), not when the nemesis began it, and carry the target it hit.
fn fault_window<'a>(
    fault: &FaultRecord,
    windows: &'a [UnavailabilityWindow],
) -> Option<&'a UnavailabilityWindow> {
    let took_effect = fault.applied_at.unwrap_or(fault.start);
    windows
        .iter()
        .filter(|w| w.fault == fault.fault && w.start >= fault.start - 1e-3)
        .filter(|w| fault.end.is_none_or(|end| w.start <= end + 1e-3))
        .min_by(|a, b| (a.start - took_effect).abs().total_cmp(&(b.start - took_effect).abs()))
}

/// The plots, inline.
fn html_plots(out: &mut String, run_dir: &RunDir, faults: usize) -> Result<(), ReportError> {
    out.push_str("<h2>Plots</h2>\n");
    if faults > SHADED_FAULTS_MAX {
        let _ = writeln!(out, "<p class=\"muted\">The {faults} fault windows are not shaded: they would cover every plot (the table per fault kind above has their figures). PNG and SVG copies are in <code>plots/</code>.</p>");
    } else {
        out.push_str("<p class=\"muted\">Shaded bands are fault windows (labelled at their start). PNG and SVG copies are in <code>plots/</code>.</p>\n");
    }
    for (stem, plot_title) in PLOTS {
        let svg = run_dir.read_plot_svg(stem)?;
        let svg = match svg.find("<svg") {
            Some(start) => &svg[start..],
            None => svg.as_str(),
        };
        let _ = writeln!(out, "<h3>{plot_title}</h3>\n<div class=\"plot\">{svg}</div>");
    }

    Ok(())
}

/// The scenario as run.
fn html_scenario(out: &mut String, scenario: Option<&str>) {
    out.push_str("<h2>Scenario</h2>\n");
    match scenario {
        Some(text) => {
            let _ = writeln!(out, "<pre>{}</pre>", escape(text));
        }
        None => out.push_str("<p class=\"muted\">no scenario.toml in this run directory</p>\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(fault: &str, start: f64, duration_s: f64) -> UnavailabilityWindow {
        UnavailabilityWindow {
            fault: fault.into(),
            target: "zk2".into(),
            start,
            end: Some(start + duration_s),
            duration_s: Some(duration_s),
            by_access: Default::default(),
        }
    }

    fn fault(name: &str, start: f64, applied_at: Option<f64>, end: f64) -> FaultRecord {
        FaultRecord {
            fault: name.into(),
            target: "random".into(),
            resolved: Some("zk2".into()),
            start,
            applied_at,
            end: Some(end),
            applied: true,
            error: None,
        }
    }

    /// A real run's windows open when the fault took effect, seconds after the
    /// nemesis began it: matched by the planned start, every row showed "–".
    #[test]
    fn a_fault_finds_the_window_that_opened_when_it_took_effect() {
        let windows =
            [window("kill", 4.0, 0.5), window("kill", 11.25, 2.5), window("pause", 11.3, 0.7)];
        let kill = fault("kill", 10.0, Some(11.25), 20.0);
        assert_eq!(fault_window(&kill, &windows).and_then(|w| w.duration_s), Some(2.5));
        let pause = fault("pause", 11.0, None, 12.0);
        assert_eq!(fault_window(&pause, &windows).and_then(|w| w.duration_s), Some(0.7));
        let never = fault("partition", 10.0, Some(10.5), 12.0);
        assert!(fault_window(&never, &windows).is_none());
    }

    fn summary(max_s: f64, unresolved: u64) -> UnavailabilitySummary {
        UnavailabilitySummary {
            faults: 2,
            unresolved,
            median_s: Some(max_s / 2.0),
            max_s: Some(max_s),
            median_by_fault: [("rest-kill".to_owned(), max_s)].into(),
            by_access: Default::default(),
        }
    }

    /// With one access path its figures are the overall ones: no per-path lines. With
    /// two, each path gets its own, unresolved windows included.
    #[test]
    fn per_path_figures_appear_only_when_two_paths_ran() {
        let mut overall = summary(0.5, 0);
        overall.by_access.insert("native".into(), summary(0.5, 0));
        assert!(unavailability_by_access(&overall).is_empty());

        overall.by_access.insert("rest".into(), summary(5.0, 1));
        let by_access = unavailability_by_access(&overall);
        assert_eq!(by_access.len(), 2);
        assert_eq!(
            by_access[1],
            (
                "rest",
                "median 2.50 s, max 5.00 s (median by fault: rest-kill 5.00 s), 1 never recovered"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_window_cell_tells_no_window_from_one_that_never_closed() {
        assert_eq!(window_duration(None), "–");
        assert_eq!(window_duration(Some(None)), "never recovered");
        assert_eq!(window_duration(Some(Some(5.1))), "5.10 s");
    }
}
