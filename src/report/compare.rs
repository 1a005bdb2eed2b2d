//! Two runs side by side, e.g. the same scenario and seed on ZooKeeper 3.8.0 and
//! 3.9.3 before an upgrade.

use std::fmt::Write as _;
use std::path::Path;

use super::{load_results, ReportError, Results};
use crate::checker::UnavailabilitySummary;

fn name(results: &Results, dir: &Path) -> String {
    match &results.run {
        Some(run) => {
            format!("{} seed {} ZK {} ({})", run.scenario, run.seed, run.zk_version, run.algorithm)
        }
        None => dir.display().to_string(),
    }
}

fn row(out: &mut String, label: &str, a: f64, b: f64, unit: &str, decimals: usize) {
    let delta = if a != 0.0 { format!("{:+.1}%", (b - a) / a.abs() * 100.0) } else { "–".into() };
    let _ = writeln!(out, "| {label} | {a:.decimals$}{unit} | {b:.decimals$}{unit} | {delta} |");
}

fn optional_row(out: &mut String, label: &str, a: Option<f64>, b: Option<f64>) {
    let show = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2} s"));
    let delta = match (a, b) {
        (Some(a), Some(b)) if a != 0.0 => format!("{:+.1}%", (b - a) / a * 100.0),
        _ => "–".into(),
    };
    let _ = writeln!(out, "| {label} | {} | {} | {delta} |", show(a), show(b));
}

fn count_row(out: &mut String, label: &str, a: Option<u64>, b: Option<u64>) {
    let show = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), |v| v.to_string());
    let _ = writeln!(out, "| {label} | {} | {} | |", show(a), show(b));
}

/// Median, max and median per fault kind of two summaries (`None`: that run has no
/// such summary, e.g. a path it did not use), each label ending in `on`.
fn unavailability_rows(
    out: &mut String,
    on: &str,
    a: Option<&UnavailabilitySummary>,
    b: Option<&UnavailabilitySummary>,
) {
    let median = |u: Option<&UnavailabilitySummary>| u.and_then(|u| u.median_s);
    let max = |u: Option<&UnavailabilitySummary>| u.and_then(|u| u.max_s);
    optional_row(out, &format!("unavailability median{on}"), median(a), median(b));
    optional_row(out, &format!("unavailability max{on}"), max(a), max(b));
    let unresolved = |u: Option<&UnavailabilitySummary>| u.map(|u| u.unresolved);
    if unresolved(a).unwrap_or(0) + unresolved(b).unwrap_or(0) > 0 {
        count_row(out, &format!("windows never recovered{on}"), unresolved(a), unresolved(b));
    }
    let (by_fault_a, by_fault_b) = (a.map(|u| &u.median_by_fault), b.map(|u| &u.median_by_fault));
    let mut faults: Vec<&String> =
        by_fault_a.into_iter().chain(by_fault_b).flat_map(|m| m.keys()).collect();
    faults.sort();
    faults.dedup();
    for fault in faults {
        optional_row(
            out,
            &format!("unavailability median after {fault}{on}"),
            by_fault_a.and_then(|m| m.get(fault).copied()),
            by_fault_b.and_then(|m| m.get(fault).copied()),
        );
    }
}

/// Markdown comparing two run directories (their `results.json`, written first if
/// missing): throughput, latencies, unavailability, invariant counts.
pub fn compare(a_dir: &Path, b_dir: &Path) -> Result<String, ReportError> {
    let a = load_results(a_dir)?;
    let b = load_results(b_dir)?;
    let mut out = String::new();
    let _ = writeln!(out, "## zkmq: A = {} vs B = {}\n", name(&a, a_dir), name(&b, b_dir));
    let _ = writeln!(out, "| | A | B | B vs A |\n|---|---:|---:|---:|");
    let _ = writeln!(out, "| verdict | {} | {} | |", a.verdict, b.verdict);
    row(&mut out, "duration", a.throughput.duration_s, b.throughput.duration_s, " s", 1);
    row(&mut out, "operations/s", a.throughput.ops_per_s, b.throughput.ops_per_s, "", 1);
    row(&mut out, "ok operations/s", a.throughput.ok_ops_per_s, b.throughput.ok_ops_per_s, "", 1);
    row(
        &mut out,
        "acknowledged messages/s",
        a.throughput.acknowledged_per_s,
        b.throughput.acknowledged_per_s,
        "",
        1,
    );
    let (x, y) = (a.check.availability * 100.0, b.check.availability * 100.0);
    let _ = writeln!(out, "| availability | {x:.2} % | {y:.2} % | {:+.2} points |", y - x);
    for kind in ["produce", "take", "ack"] {
        let (Some(x), Some(y)) = (a.check.operations.get(kind), b.check.operations.get(kind))
        else {
            continue;
        };
        row(&mut out, &format!("{kind} p50"), x.latency_ms.p50, y.latency_ms.p50, " ms", 2);
        row(&mut out, &format!("{kind} p99"), x.latency_ms.p99, y.latency_ms.p99, " ms", 2);
        row(&mut out, &format!("{kind} max"), x.latency_ms.max, y.latency_ms.max, " ms", 1);
    }
    let (ua, ub) = (&a.check.unavailability_summary, &b.check.unavailability_summary);
    row(&mut out, "fault windows", ua.faults as f64, ub.faults as f64, "", 0);
    unavailability_rows(&mut out, "", Some(ua), Some(ub));
    if ua.has_several_access_paths() || ub.has_several_access_paths() {
        let mut paths: Vec<&String> = ua.by_access.keys().chain(ub.by_access.keys()).collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            let on = format!(" on {path}");
            unavailability_rows(&mut out, &on, ua.by_access.get(path), ub.by_access.get(path));
        }
    }
    let (ia, ib) = (&a.check.invariants, &b.check.invariants);
    let (ra, rb) = (ia.required(false), ib.required(false));
    let mut names: Vec<&str> = ra.iter().map(|(name, _)| *name).collect();
    for (name, _) in &rb {
        if !names.contains(name) {
            names.push(name);
        }
    }
    // A run without member views did not check divergence: say so, not 0.
    let count = |required: &[(&str, &crate::checker::Finding)], name: &str| {
        required
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| "not checked".to_owned(), |(_, f)| f.count.to_string())
    };
    for name in names {
        let _ = writeln!(
            out,
            "| {} (must be 0) | {} | {} | |",
            name.replace('_', " "),
            count(&ra, name),
            count(&rb, name)
        );
    }
    for ((name, x), (_, y)) in ia.reported(false).iter().zip(ib.reported(false).iter()) {
        let _ = writeln!(out, "| {} | {} | {} | |", name.replace('_', " "), x.count, y.count);
    }
    let (ma, mb) = (&a.check.messages, &b.check.messages);
    row(&mut out, "messages produced ok", ma.produced_ok as f64, mb.produced_ok as f64, "", 0);
    row(&mut out, "messages acknowledged", ma.acknowledged as f64, mb.acknowledged as f64, "", 0);
    let _ = writeln!(out, "\nA: `{}`  \nB: `{}`", a_dir.display(), b_dir.display());
    Ok(out)
}
