//! `qualify.md`, `qualify.html` and `junit.xml` of a [`Qualification`]: the verdict
//! and the findings first, then every check, then baseline against candidate per
//! scenario, then every run. The tables are built once (the trend's [`Table`]) and
//! written as Markdown or HTML, so both pages show the same figures.

use std::fmt::Write as _;

use super::qualify::{CheckStatus, Pool, Qualification, RunStatus, Verdict};
use super::render::{escape, STYLE};
use super::trend_render::Table;
use super::{qualify_plots, ReportError};

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |s| format!("{s:.2} s"))
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

fn title(q: &Qualification) -> String {
    format!("zkmq qualification {}: ZooKeeper {} → {}", q.suite.name, q.baseline, q.candidate)
}

fn headline(q: &Qualification) -> String {
    let failed = q.checks.iter().filter(|c| c.status == CheckStatus::Failed).count();
    let errors = q.checks.iter().filter(|c| c.status == CheckStatus::Error).count();
    let runs = q.runs.len();
    match q.verdict {
        Verdict::Qualified => format!(
            "QUALIFIED: ZooKeeper {} may replace {} under this queue ({} checks passed over {runs} runs).",
            q.candidate.version,
            q.baseline.version,
            q.checks.len()
        ),
        Verdict::NotQualified => format!(
            "NOT QUALIFIED: {failed} of {} checks failed (ZooKeeper {} against {}).",
            q.checks.len(),
            q.candidate.version,
            q.baseline.version
        ),
        Verdict::Incomplete => format!(
            "INCOMPLETE: {errors} checks could not be judged{}; no check failed.",
            if q.suite.interrupted { " (interrupted)" } else { " (runs did not finish)" }
        ),
    }
}

/// The rules, stated from the suite's thresholds.
fn rules(q: &Qualification) -> String {
    let t = &q.thresholds;
    format!(
        "The candidate qualifies when no run of either version violates an invariant; when, \
         scenario by scenario, its unavailability after each fault kind on each access path \
         (median and max of the windows of all its runs) is at most {}x the baseline's or at most \
         {:.2} s above it, and does not stay unrecovered more often; when its operations/s and \
         acknowledged messages/s (median of its runs) are at least {:.0}% of the baseline's; when \
         the rolling upgrade completes{}. Runs k of a scenario on both versions share one seed, \
         so they face the same faults.",
        t.unavailability_factor,
        t.unavailability_slack.as_secs_f64(),
        t.throughput_share * 100.0,
        if t.rollback_required {
            "; and when the rollback completes"
        } else {
            "; a rollback that cannot be done is reported but allowed"
        }
    )
}

fn status_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Passed => "pass",
        CheckStatus::Failed => "FAIL",
        CheckStatus::Error => "not judged",
    }
}

fn checks_table(q: &Qualification) -> Table {
    let rows = q
        .checks
        .iter()
        .map(|c| {
            let mut message = c.message.clone();
            for detail in &c.details {
                let _ = write!(message, " — {detail}");
            }
            (
                c.status != CheckStatus::Passed,
                vec![status_word(c.status).to_owned(), c.name.clone(), message],
            )
        })
        .collect();
    Table {
        title: "Checks".into(),
        header: vec!["status".into(), "check".into(), "result".into()],
        rows,
    }
}

fn sides_table(q: &Qualification) -> Table {
    let header = [
        "scenario",
        "version",
        "runs",
        "valid",
        "violated",
        "unfinished",
        "ops/s",
        "acknowledged msgs/s",
        "availability",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    for c in &q.comparisons {
        for (side, summary) in [(&q.baseline, &c.baseline), (&q.candidate, &c.candidate)] {
            rows.push((
                summary.violated + summary.unfinished > 0,
                vec![
                    c.scenario.clone(),
                    side.to_string(),
                    summary.runs.to_string(),
                    summary.valid.to_string(),
                    summary.violated.to_string(),
                    summary.unfinished.to_string(),
                    rate(summary.ops_per_s),
                    rate(summary.acknowledged_per_s),
                    summary
                        .availability
                        .map_or_else(|| "–".into(), |a| format!("{:.2}%", a * 100.0)),
                ],
            ));
        }
    }
    Table { title: "Baseline against candidate".into(), header, rows }
}

fn pool_cell(pool: &Pool) -> String {
    let mut text = format!("{} / {}", seconds(pool.median_s), seconds(pool.max_s));
    let _ = write!(text, " ({} windows", pool.windows);
    if pool.unresolved > 0 {
        let _ = write!(text, ", {} never recovered", pool.unresolved);
    }
    text.push(')');
    text
}

fn unavailability_table(q: &Qualification) -> Table {
    let header = [
        "scenario".to_owned(),
        "fault".to_owned(),
        "access path".to_owned(),
        format!("{} median / max", q.baseline.version),
        format!("{} median / max", q.candidate.version),
        "within the limits".to_owned(),
    ]
    .to_vec();
    let mut rows = Vec::new();
    for c in &q.comparisons {
        for row in &c.unavailability {
            let verdict = match row.within {
                Some(true) => "yes".to_owned(),
                Some(false) => format!("NO: {}", row.note),
                None => row.note.clone(),
            };
            rows.push((
                row.within == Some(false),
                vec![
                    c.scenario.clone(),
                    row.fault.clone(),
                    row.path.clone(),
                    pool_cell(&row.baseline),
                    pool_cell(&row.candidate),
                    verdict,
                ],
            ));
        }
    }
    Table { title: "Unavailability after each fault kind".into(), header, rows }
}

fn runs_table(q: &Qualification) -> Table {
    let header = [
        "run",
        "seed",
        "verdict",
        "ops/s",
        "unavailability median / max",
        "truncations",
        "upgrade",
    ]
    .map(String::from)
    .to_vec();
    let rows = q
        .runs
        .iter()
        .map(|run| {
            let figures = run.figures.as_ref();
            let truncations = match (&run.committed_loss, run.truncations.len()) {
                (Some(loss), n) => {
                    format!("{n}, committed writes lost ({})", loss.nodes.join(", "))
                }
                (None, n) => n.to_string(),
            };
            let rolling = run.rolling.as_ref().map_or_else(String::new, |r| {
                if r.completed {
                    "completed".to_owned()
                } else {
                    format!("did not complete: {}", r.detail)
                }
            });
            let bad = run.end.status != RunStatus::Valid
                || run.committed_loss.is_some()
                || run.rolling.as_ref().is_some_and(|r| !r.completed);
            let cells = vec![
                run.label(),
                run.seed.to_string(),
                run.end.describe(),
                rate(figures.map(|f| f.ops_per_s)),
                figures.map_or_else(
                    || "–".into(),
                    |f| {
                        format!(
                            "{} / {}",
                            seconds(f.unavailability.median_s),
                            seconds(f.unavailability.max_s)
                        )
                    },
                ),
                truncations,
                rolling,
            ];
            (bad, cells)
        })
        .collect();
    Table { title: "Runs".into(), header, rows }
}

fn tables(q: &Qualification) -> Vec<Table> {
    vec![checks_table(q), sides_table(q), unavailability_table(q), runs_table(q)]
}

fn suite_line(q: &Qualification) -> String {
    let s = &q.suite;
    format!(
        "Suite `{}` ({}), seed {}, {} run{} of each scenario on each version{}; {} runs in {:.0} min, started {}.",
        s.name,
        s.file,
        s.seed,
        s.runs,
        if s.runs == 1 { "" } else { "s" },
        s.duration_s.map_or_else(String::new, |d| format!(", each {d:.0} s of workload")),
        q.runs.len(),
        s.wall_s / 60.0,
        s.started_at
    )
}

/// `qualify.md`: the verdict, findings and checks first, then the tables.
pub fn markdown(q: &Qualification) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n\n**{}**\n\n{}\n", title(q), headline(q), suite_line(q));
    if !q.suite.description.is_empty() {
        let _ = writeln!(out, "{}\n", q.suite.description);
    }
    out.push_str("### Findings\n\n");
    if q.findings.is_empty() {
        out.push_str("None.\n");
    }
    for finding in &q.findings {
        let _ = writeln!(out, "- {finding}");
    }
    let _ = writeln!(out, "\n{}\n", rules(q));
    for table in tables(q) {
        table.markdown(&mut out);
    }
    out.push_str("### Each run\n\n");
    for run in &q.runs {
        let dir = run.end.dir.as_deref().unwrap_or("no directory");
        let _ = write!(out, "- {} ({}): `{dir}`", run.label(), run.end.describe());
        if !run.end.repeat.is_empty() {
            let _ = write!(out, "; repeat with `{}`", run.end.repeat);
        }
        out.push('\n');
    }
    out
}

/// `qualify.html`: one self-contained page, verdict first, plots inline (SVG), each
/// run linked to its own report.
pub fn html(q: &Qualification) -> Result<String, ReportError> {
    let mut out = String::new();
    let page_title = title(q);
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title><style>{STYLE}</style></head><body>\n<h1>{0}</h1>",
        escape(&page_title)
    );
    let class = if q.verdict == Verdict::Qualified { "valid" } else { "violated" };
    let _ = writeln!(out, "<div class=\"verdict {class}\">{}</div>", escape(&headline(q)));
    let _ = writeln!(out, "<p>{}</p>", escape(&suite_line(q)));
    if !q.suite.description.is_empty() {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", escape(&q.suite.description));
    }
    out.push_str("<h2>Findings</h2>\n");
    if q.findings.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<ul>\n");
        for finding in &q.findings {
            let _ = writeln!(out, "<li class=\"warn\">{}</li>", escape(finding));
        }
        out.push_str("</ul>\n");
    }
    let _ = writeln!(out, "<p class=\"muted\">{}</p>", escape(&rules(q)));
    for table in tables(q) {
        table.html(&mut out);
    }
    html_run_links(&mut out, q);
    out.push_str("<h2>Plots</h2>\n");
    for (plot_title, svg) in qualify_plots::svgs(q)? {
        let _ = writeln!(out, "<h3>{}</h3>\n<div class=\"plot\">{svg}</div>", escape(&plot_title));
    }
    let _ = writeln!(
        out,
        "<p class=\"muted\">Written by zkmq {}.</p>\n</body></html>",
        env!("CARGO_PKG_VERSION")
    );
    Ok(out)
}

/// Each run: a link to its own report and the command that repeats it.
fn html_run_links(out: &mut String, q: &Qualification) {
    out.push_str("<h2>Each run</h2>\n<ul>\n");
    for run in &q.runs {
        let label = escape(&run.label());
        let link = match run.end.dir.as_deref() {
            Some(dir) => format!("<a href=\"{}/report.html\">{label}</a>", escape(dir)),
            None => label,
        };
        let _ =
            write!(out, "<li>{link} <span class=\"muted\">{}</span>", escape(&run.end.describe()));
        if !run.end.repeat.is_empty() {
            let _ = write!(out, "<br><code>{}</code>", escape(&run.end.repeat));
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
}

/// `junit.xml`: one test case per check: scenario × version, the upgrade and the
/// rollback, and each threshold. A check not judged is an `<error>`.
pub fn junit(q: &Qualification) -> String {
    let mut cases = String::new();
    let (mut failures, mut errors) = (0, 0);
    for c in &q.checks {
        let _ = write!(
            cases,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
            escape(&c.kind),
            escape(&c.name)
        );
        let (element, kind) = match c.status {
            CheckStatus::Passed => {
                cases.push_str("/>\n");
                continue;
            }
            CheckStatus::Failed => {
                failures += 1;
                ("failure", "QualificationFailed")
            }
            CheckStatus::Error => {
                errors += 1;
                ("error", "NotJudged")
            }
        };
        let _ = write!(
            cases,
            ">\n      <{element} message=\"{}\" type=\"{kind}\">{}</{element}>\n    </testcase>\n",
            escape(&c.message),
            escape(&c.details.join("\n"))
        );
    }
    let tests = q.checks.len();
    let time = q.suite.wall_s;
    let suite = format!("zkmq qualify {}", q.suite.name);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"zkmq\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\">\n  \
         <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\">\n{cases}  </testsuite>\n</testsuites>\n",
        suite = escape(&suite)
    )
}
