//! `trend.md` and `trend.html` of a [`Trend`]: regressions first, then one row per
//! run, then unavailability per fault kind (and per access path). Each table is
//! built once ([`Table`]) and written as Markdown or HTML, so the two pages always
//! show the same figures.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::render::{escape, STYLE};
use super::trend::{RunFigures, Thresholds, Trend, TrendRun, Unavailability, Violations};
use super::{trend_plots, ReportError};

/// A table as both pages show it: header cells, and rows marked bad (regressed).
/// The qualification's pages draw theirs the same way.
pub(super) struct Table {
    pub(super) title: String,
    pub(super) header: Vec<String>,
    pub(super) rows: Vec<(bool, Vec<String>)>,
}

impl Table {
    pub(super) fn markdown(&self, out: &mut String) {
        let _ = writeln!(out, "### {}\n", self.title);
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(self.header.len()));
        for (_, cells) in &self.rows {
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out.push('\n');
    }

    pub(super) fn html(&self, out: &mut String) {
        let _ = writeln!(out, "<h2>{}</h2>\n<table><tr>", escape(&self.title));
        for cell in &self.header {
            let _ = write!(out, "<th>{}</th>", escape(cell));
        }
        out.push_str("</tr>\n");
        for (bad, cells) in &self.rows {
            out.push_str(if *bad { "<tr class=\"bad\">" } else { "<tr>" });
            for cell in cells {
                let _ = write!(out, "<td>{}</td>", escape(cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
}

/// "1 run", "3 runs".
fn runs_count(trend: &Trend) -> String {
    match trend.runs.len() {
        1 => "1 run".to_owned(),
        n => format!("{n} runs"),
    }
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |s| format!("{s:.2} s"))
}

/// `#1`, `#2`, ...: how the plots' x axis names runs.
fn ordinal(index: usize) -> String {
    format!("#{}", index + 1)
}

fn headline(trend: &Trend) -> String {
    match trend.runs.last() {
        None => "No runs.".to_owned(),
        Some(newest) if trend.newest_regressed => {
            format!("REGRESSED: the newest run, {}, is worse than the runs before it.", newest.name)
        }
        Some(newest) => format!("OK: the newest run, {}, did not regress.", newest.name),
    }
}

/// The rules, stated from the one place they live.
fn rules(limits: &Thresholds) -> String {
    format!(
        "A run regresses when a must-be-zero invariant is violated, when it crashed (no \
         results.json), when its operations/s or acknowledged messages/s fall below {:.0}% of \
         the median of the earlier runs of its scenario, or when its unavailability median (overall \
         or on one access path) is above {}x the earlier median and by more than {:.2} s.",
        limits.throughput_floor * 100.0,
        limits.unavailability_ceiling,
        limits.unavailability_slack_s
    )
}

fn regression_lines(trend: &Trend) -> Vec<String> {
    trend.regressions.iter().map(|r| format!("{}: {}", r.run, r.message)).collect()
}

fn faults_applied(figures: &RunFigures) -> String {
    let total: u64 = figures.faults_applied.values().sum();
    let kinds: Vec<String> =
        figures.faults_applied.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
    let mut text = total.to_string();
    if !kinds.is_empty() {
        let _ = write!(text, " ({})", kinds.join(", "));
    }
    if figures.faults_not_applied > 0 {
        let _ = write!(text, "; {} not applied", figures.faults_not_applied);
    }
    text
}

/// One row per run: verdict, throughput, availability, unavailability, faults,
/// violations.
fn runs_table(trend: &Trend) -> Table {
    let mut header: Vec<String> = [
        "#",
        "run",
        "started",
        "scenario (seed)",
        "verdict",
        "ops/s",
        "acknowledged msgs/s",
        "availability",
        "unavailability median",
        "unavailability max",
        "never recovered",
        "faults applied",
    ]
    .map(String::from)
    .to_vec();
    let before_violations = header.len();
    header.extend(Violations::default().counts().map(|(name, _)| name.replace('_', " ")));
    let rows = trend
        .runs
        .iter()
        .enumerate()
        .map(|(index, run)| {
            let mut cells = vec![
                ordinal(index),
                run.name.clone(),
                run.started_at.clone().unwrap_or_else(|| "–".into()),
                match (&run.scenario, run.seed) {
                    (Some(scenario), Some(seed)) => format!("{scenario} ({seed})"),
                    _ => "–".into(),
                },
                run.verdict.clone(),
            ];
            match &run.figures {
                Some(f) => {
                    let u = &f.unavailability;
                    cells.extend([
                        format!("{:.1}", f.ops_per_s),
                        format!("{:.1}", f.acknowledged_per_s),
                        format!("{:.2}%", f.availability * 100.0),
                        seconds(u.median_s),
                        seconds(u.max_s),
                        u.unresolved.to_string(),
                        faults_applied(f),
                    ]);
                    cells.extend(f.violations.counts().map(|(_, count)| count.to_string()));
                }
                None => cells.extend(std::iter::repeat_n(
                    "–".to_owned(),
                    before_violations - 5 + Violations::default().counts().len(),
                )),
            }
            (!run.regressions.is_empty(), cells)
        })
        .collect();
    Table { title: "Runs (oldest first)".into(), header, rows }
}

/// "median / max" per fault kind, one row per run; `pick` chooses overall figures
/// or one access path's (`None`: that run did not measure it).
fn by_fault_table(
    trend: &Trend,
    title: String,
    pick: impl Fn(&RunFigures) -> Option<&Unavailability>,
) -> Table {
    let kinds: BTreeSet<&String> = trend
        .runs
        .iter()
        .filter_map(|run| run.figures.as_ref().and_then(&pick))
        .flat_map(|u| u.by_fault.keys())
        .collect();
    let mut header = vec!["#".to_owned(), "run".to_owned(), "all faults median / max".to_owned()];
    header.extend(kinds.iter().map(|kind| format!("{kind} median / max")));
    let rows = trend
        .runs
        .iter()
        .enumerate()
        .map(|(index, run)| {
            let own = run.figures.as_ref().and_then(&pick);
            let median_max =
                |median_s, max_s| format!("{} / {}", seconds(median_s), seconds(max_s));
            let mut cells = vec![ordinal(index), run.name.clone()];
            cells.push(own.map_or_else(|| "–".to_owned(), |u| median_max(u.median_s, u.max_s)));
            cells.extend(kinds.iter().map(|kind| match own.and_then(|u| u.by_fault.get(*kind)) {
                Some(f) => median_max(f.median_s, f.max_s),
                None => "–".to_owned(),
            }));
            (!run.regressions.is_empty(), cells)
        })
        .collect();
    Table { title, header, rows }
}

/// Every table, in page order: runs, unavailability per fault kind overall, and per
/// access path when some run measured two or more.
fn tables(trend: &Trend) -> Vec<Table> {
    let mut tables = vec![
        runs_table(trend),
        by_fault_table(trend, "Unavailability per fault kind".into(), |f| Some(&f.unavailability)),
    ];
    let several_paths =
        |run: &TrendRun| run.figures.as_ref().is_some_and(|f| f.unavailability_by_access.len() > 1);
    if trend.runs.iter().any(several_paths) {
        let paths: BTreeSet<&String> = trend
            .runs
            .iter()
            .filter_map(|run| run.figures.as_ref())
            .flat_map(|f| f.unavailability_by_access.keys())
            .collect();
        for path in paths {
            let title = format!("Unavailability per fault kind on {path}");
            tables.push(by_fault_table(trend, title, |f| f.unavailability_by_access.get(path)));
        }
    }
    tables
}

/// `trend.md`: the headline and regressions first, then the tables.
pub fn markdown(trend: &Trend) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## zkmq trend: {}\n\n{}\n", runs_count(trend), headline(trend));
    out.push_str("### Regressions\n\n");
    let lines = regression_lines(trend);
    if lines.is_empty() {
        out.push_str("None.\n");
    }
    for line in lines {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "\n{}\n", rules(&trend.thresholds));
    for table in tables(trend) {
        table.markdown(&mut out);
    }
    out
}

/// `trend.html`: one self-contained page, regressions first, plots inline (SVG).
pub fn html(trend: &Trend) -> Result<String, ReportError> {
    let mut out = String::new();
    let title = format!("zkmq trend — {}", runs_count(trend));
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title><style>{STYLE}</style></head><body>\n<h1>{0}</h1>",
        escape(&title)
    );
    let class = if trend.newest_regressed { "violated" } else { "valid" };
    let _ = writeln!(out, "<div class=\"verdict {class}\">{}</div>", escape(&headline(trend)));
    out.push_str("<h2>Regressions</h2>\n");
    let lines = regression_lines(trend);
    if lines.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<ul>\n");
        for line in lines {
            let _ = writeln!(out, "<li>{}</li>", escape(&line));
        }
        out.push_str("</ul>\n");
    }
    let _ = writeln!(out, "<p class=\"muted\">{}</p>", escape(&rules(&trend.thresholds)));
    for table in tables(trend) {
        table.html(&mut out);
    }
    out.push_str("<h2>Plots</h2>\n<p class=\"muted\">One point per run, oldest first, numbered as in the tables; a red cross marks a crashed run.</p>\n");
    for (plot_title, svg) in trend_plots::svgs(trend)? {
        let _ = writeln!(out, "<h3>{plot_title}</h3>\n<div class=\"plot\">{svg}</div>");
    }
    let _ = writeln!(
        out,
        "<p class=\"muted\">Written by zkmq {}.</p>\n</body></html>",
        env!("CARGO_PKG_VERSION")
    );
    Ok(out)
}
