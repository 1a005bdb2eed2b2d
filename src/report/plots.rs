//! The time plots, each as PNG and SVG, drawn with plotters on the bundled DejaVu Sans
//! (registered once as `sans-serif`, so no plot depends on the machine's fonts).
//! Every plot shares the x axis (seconds since the run started) and shades each
//! fault's window with its label, so a dip can be read against the fault beside it.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::series::{FaultSpan, LatencyPoint, Series};
use super::ReportError;
use crate::rundir::RunDir;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

pub(super) fn register_font() {
    REGISTER.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font("sans-serif", style, FONT).is_err() {
                // A bundled, known-good file: this cannot fail short of a corrupt build.
                tracing::error!("the bundled DejaVu Sans font did not load; plots will lack text");
            }
        }
    });
}

const WIDTH: u32 = 1200;
const KIND_COLORS: [RGBColor; 3] =
    [RGBColor(31, 119, 180), RGBColor(44, 160, 44), RGBColor(255, 127, 14)];
const KIND_NAMES: [&str; 3] = ["produce", "take", "ack"];
const FAULT_FILL: RGBAColor = RGBAColor(214, 39, 40, 0.10);
const FAULT_EDGE: RGBAColor = RGBAColor(214, 39, 40, 0.45);
const FAULT_TEXT: RGBColor = RGBColor(160, 20, 20);
const GRID: RGBColor = RGBColor(235, 235, 235);

type Plot<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type DrawResult = Result<(), Box<dyn Error>>;

fn x_end(series: &Series) -> f64 {
    series.end_s.max(1.0)
}

/// Beyond this many faults (a soak's thousands) the windows are not drawn: they
/// would cover the whole plot. The report's per-kind table has their figures.
pub const SHADED_FAULTS_MAX: usize = 60;

/// Shades and labels each fault window; labels are staggered over three rows so
/// close faults stay readable. Draws nothing past [`SHADED_FAULTS_MAX`] faults.
fn shade_faults<DB: DrawingBackend>(
    chart: &mut Plot<'_, DB>,
    faults: &[FaultSpan],
    y0: f64,
    y1: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    if faults.len() > SHADED_FAULTS_MAX {
        return Ok(());
    }
    chart.draw_series(
        faults.iter().map(|f| Rectangle::new([(f.start, y0), (f.end, y1)], FAULT_FILL.filled())),
    )?;
    chart.draw_series(faults.iter().map(|f| {
        PathElement::new(vec![(f.start, y0), (f.start, y1)], FAULT_EDGE.stroke_width(1))
    }))?;
    let font = ("sans-serif", 12).into_font().color(&FAULT_TEXT);
    let starts: Vec<i32> = faults.iter().map(|f| chart.backend_coord(&(f.start, y1)).0).collect();
    let rows = label_rows(faults, &starts, 3);
    chart.draw_series(faults.iter().zip(rows).filter_map(|(f, row)| {
        row.map(|row| {
            EmptyElement::at((f.start, y1))
                + Text::new(f.label.clone(), (4, 4 + 14 * row), font.clone())
        })
    }))?;
    Ok(())
}

/// Picks a text row for each fault label so labels never overlap: the first of
/// `rows` rows where the previous label has ended; `None` (no label, the window is
/// still shaded, and the HTML lists every fault) when all rows are taken there.
fn label_rows(faults: &[FaultSpan], starts: &[i32], rows: usize) -> Vec<Option<i32>> {
    // DejaVu Sans at 12 px averages under 7 px per character.
    let width = |label: &str| 8 + 7 * label.chars().count() as i32;
    let mut ends = vec![i32::MIN; rows];
    faults
        .iter()
        .zip(starts)
        .map(|(fault, &x)| {
            let row = ends.iter().position(|&end| end < x)?;
            ends[row] = x + width(&fault.label);
            Some(row as i32)
        })
        .collect()
}

fn empty_note<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        text.to_owned(),
        (w as i32 / 2 - 140, h as i32 / 2),
        ("sans-serif", 16).into_font().color(&RGBColor(120, 120, 120)),
    ))?;
    Ok(())
}

fn base_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    end: f64,
    y_max: f64,
    y_desc: &str,
) -> Result<Plot<'a, DB>, Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20).into_font())
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(GRID)
        .bold_line_style(RGBColor(215, 215, 215))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if y_max >= 10.0 { format!("{y:.0}") } else { format!("{y:.1}") })
        .x_desc("seconds since the run started")
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    Ok(chart)
}

pub(super) fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Plot<'a, DB>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// Operations per second: `ok` by kind on top, `fail` and `info` (unknown) below.
fn throughput<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, series: &Series) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(330);
    let end = x_end(series);
    let rate = |bucket: usize, kind: usize, outcome: usize| {
        series.ops[bucket][kind][outcome] as f64 / series.interval_s
    };
    let x = |bucket: usize| (bucket as f64 + 0.5) * series.interval_s;

    let ok_max = (0..series.ops.len())
        .flat_map(|b| (0..3).map(move |k| (b, k)))
        .map(|(b, k)| rate(b, k, 0))
        .fold(1.0, f64::max);
    let mut chart = base_chart(&top, "Operations per second (ok)", end, ok_max * 1.15, "ok ops/s")?;
    shade_faults(&mut chart, &series.faults, 0.0, ok_max * 1.15)?;
    for (kind, color) in KIND_COLORS.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(
                (0..series.ops.len()).map(|b| (x(b), rate(b, kind, 0))),
                color.stroke_width(2),
            ))?
            .label(KIND_NAMES[kind])
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart)?;

    let bad_max = (0..series.ops.len())
        .flat_map(|b| (0..3).map(move |k| (b, k)))
        .map(|(b, k)| rate(b, k, 1) + rate(b, k, 2))
        .fold(1.0, f64::max);
    let mut chart = base_chart(
        &bottom,
        "Failed (definite) and unknown (info) outcomes per second",
        end,
        bad_max * 1.2,
        "ops/s",
    )?;
    shade_faults(&mut chart, &series.faults, 0.0, bad_max * 1.2)?;
    for (kind, color) in KIND_COLORS.iter().enumerate() {
        let faded = color.mix(0.55);
        chart
            .draw_series(LineSeries::new(
                (0..series.ops.len()).map(|b| (x(b), rate(b, kind, 1))),
                faded.stroke_width(2),
            ))?
            .label(format!("{} fail", KIND_NAMES[kind]))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], faded.stroke_width(2))
            });
        chart
            .draw_series(
                (0..series.ops.len())
                    .filter(|&b| series.ops[b][kind][2] > 0)
                    .map(|b| Cross::new((x(b), rate(b, kind, 2)), 4, color.stroke_width(2))),
            )?
            .label(format!("{} info", KIND_NAMES[kind]))
            .legend(move |(x, y)| Cross::new((x + 9, y), 4, color.stroke_width(2)));
    }
    legend(&mut chart)?;
    Ok(())
}

/// Latency p50 (thin), p99 (thick) and max (dotted markers) per kind, on a log10 axis.
fn latency<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, series: &Series) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let end = x_end(series);
    let areas = root.split_evenly((3, 1));
    for (kind, area) in areas.iter().enumerate() {
        let points = &series.latency[kind];
        let caption = format!("{} latency (ok outcomes): p50, p99, max", KIND_NAMES[kind]);
        if points.is_empty() {
            empty_note(area, &format!("no {} completed ok", KIND_NAMES[kind]))?;
            continue;
        }
        let log = |ms: f64| ms.max(0.01).log10();
        let lo = points.iter().map(|p| log(p.p50)).fold(f64::INFINITY, f64::min).floor();
        let hi = points
            .iter()
            .map(|p| log(p.max))
            .fold(f64::NEG_INFINITY, f64::max)
            .ceil()
            .max(lo + 1.0);
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18).into_font())
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end, lo..hi)?;
        chart
            .configure_mesh()
            .light_line_style(GRID)
            .y_labels(((hi - lo) as usize + 1).max(2))
            .y_label_formatter(&|y| format_ms(10f64.powf(*y)))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("seconds since the run started")
            .y_desc("latency")
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()?;
        shade_faults(&mut chart, &series.faults, lo, hi)?;
        let color = KIND_COLORS[kind];
        // Intervals without an ok answer are gaps, not straight lines across them.
        let mut runs: Vec<&[LatencyPoint]> = Vec::new();
        let mut begin = 0;
        for i in 1..=points.len() {
            if i == points.len() || points[i].t - points[i - 1].t > series.interval_s * 1.5 {
                runs.push(&points[begin..i]);
                begin = i;
            }
        }
        for (index, run) in runs.iter().enumerate() {
            let p50 = chart.draw_series(LineSeries::new(
                run.iter().map(|p| (p.t, log(p.p50))),
                color.mix(0.6).stroke_width(1),
            ))?;
            if index == 0 {
                p50.label("p50").legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.mix(0.6).stroke_width(1))
                });
            }
            let p99 = chart.draw_series(LineSeries::new(
                run.iter().map(|p| (p.t, log(p.p99))),
                color.stroke_width(3),
            ))?;
            if index == 0 {
                p99.label("p99").legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
            }
        }
        let max_color = RGBColor(90, 90, 90);
        chart
            .draw_series(
                points.iter().map(|p| Circle::new((p.t, log(p.max)), 2, max_color.filled())),
            )?
            .label("max")
            .legend(move |(x, y)| Circle::new((x + 9, y), 3, max_color.filled()));
        legend(&mut chart)?;
    }
    Ok(())
}

fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// Messages waiting, in `partial`, and held by consumers.
fn depth<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, series: &Series) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    if series.depth.is_empty() {
        return empty_note(root, "no queue depth samples in samples.jsonl");
    }
    let end = x_end(series);
    let y_max =
        series.depth.iter().map(|d| d.1.max(d.2).max(d.3) as f64).fold(1.0, f64::max) * 1.15;
    let mut chart = base_chart(root, "Queue depth", end, y_max, "messages")?;
    shade_faults(&mut chart, &series.faults, 0.0, y_max)?;
    type Pick = fn(&(f64, u64, u64, u64)) -> u64;
    let lines: [(&str, RGBColor, Pick); 3] = [
        ("messages (waiting)", RGBColor(31, 119, 180), |d| d.1),
        ("partial (taken back)", RGBColor(214, 39, 40), |d| d.2),
        ("in flight (held by consumers)", RGBColor(148, 103, 189), |d| d.3),
    ];
    for (label, color, value) in lines {
        chart
            .draw_series(LineSeries::new(
                series.depth.iter().map(|d| (d.0, value(d) as f64)),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart)?;
    Ok(())
}

/// A fill colour per node state; unknown states get grey.
pub fn state_color(state: &str) -> RGBColor {
    match state {
        "leader" => RGBColor(0, 109, 44),
        "follower" => RGBColor(116, 196, 118),
        "standalone" => RGBColor(49, 163, 84),
        "up" | "serving" => RGBColor(116, 196, 118),
        "down" => RGBColor(215, 48, 39),
        "paused" => RGBColor(253, 174, 97),
        "partitioned" => RGBColor(117, 107, 177),
        "not-serving" => RGBColor(189, 189, 189),
        "upgrading" => RGBColor(66, 146, 198),
        _ => RGBColor(150, 150, 150),
    }
}

/// One row per node (and the gateway), coloured by state, version changes marked; a
/// top row carries the fault windows and their labels.
fn nodes<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, series: &Series) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    if series.nodes.is_empty() {
        return empty_note(root, "no node state samples in samples.jsonl");
    }
    let (area, legend_area) = root.split_horizontally(WIDTH - 150);
    let end = x_end(series);
    let rows = series.nodes.len() as i32;
    let mut names: Vec<String> = series.nodes.iter().map(|(name, _)| name.clone()).collect();
    names.push("faults".into());
    let mut chart: ChartContext<'_, DB, Cartesian2d<RangedCoordf64, _>> = ChartBuilder::on(&area)
        .caption(
            "Node states (ZooKeeper nodes and the REST gateway)",
            ("sans-serif", 20).into_font(),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, (0..rows).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(GRID)
        .y_labels(rows as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y: &SegmentValue<i32>| match y {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .x_desc("seconds since the run started")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;

    let mut states: Vec<&str> = Vec::new();
    for (_, spans) in &series.nodes {
        for span in spans {
            if !states.contains(&span.state.as_str()) {
                states.push(&span.state);
            }
        }
    }
    chart.draw_series(series.nodes.iter().enumerate().flat_map(|(row, (_, spans))| {
        spans.iter().map(move |s| {
            Rectangle::new(
                [
                    (s.start, SegmentValue::Exact(row as i32)),
                    (s.end.max(s.start + 0.01), SegmentValue::Exact(row as i32 + 1)),
                ],
                state_color(&s.state).filled(),
            )
        })
    }))?;
    // Row separators, and the version where it changes (an upgrade).
    chart.draw_series((0..=rows).map(|row| {
        PathElement::new(
            vec![(0.0, SegmentValue::Exact(row)), (end, SegmentValue::Exact(row))],
            WHITE.stroke_width(3),
        )
    }))?;
    let font = ("sans-serif", 12).into_font().color(&WHITE);
    let font = &font;
    chart.draw_series(series.nodes.iter().enumerate().flat_map(|(row, (_, spans))| {
        // A down node reports no version: compare with the last one known.
        let mut known = "";
        let mut marks = Vec::new();
        for span in spans.iter().filter(|s| !s.version.is_empty() && s.version != "unknown") {
            if !known.is_empty() && span.version != known {
                marks.push(
                    EmptyElement::at((span.start, SegmentValue::Exact(row as i32 + 1)))
                        + Text::new(format!("→ {}", span.version), (3, 4), font.clone()),
                );
            }
            known = &span.version;
        }
        marks
    }))?;

    // The fault row: each window shaded, a line down through the nodes at its start.
    let fault_row = (SegmentValue::Exact(rows), SegmentValue::Exact(rows + 1));
    chart.draw_series(series.faults.iter().map(|f| {
        Rectangle::new(
            [(f.start, fault_row.0.clone()), (f.end, fault_row.1.clone())],
            RGBAColor(214, 39, 40, 0.25).filled(),
        )
    }))?;
    // A soak's thousands of faults keep their row, without lines or labels that
    // would hide every node's states.
    let marked: &[FaultSpan] =
        if series.faults.len() > SHADED_FAULTS_MAX { &[] } else { &series.faults };
    chart.draw_series(marked.iter().map(|f| {
        PathElement::new(
            vec![(f.start, SegmentValue::Exact(0)), (f.start, SegmentValue::Exact(rows + 1))],
            FAULT_EDGE.stroke_width(2),
        )
    }))?;
    let label_font = ("sans-serif", 12).into_font().color(&FAULT_TEXT);
    let starts: Vec<i32> =
        marked.iter().map(|f| chart.backend_coord(&(f.start, SegmentValue::Exact(0))).0).collect();
    let label_row = label_rows(marked, &starts, 2);
    chart.draw_series(marked.iter().zip(label_row).filter_map(|(f, row)| {
        row.map(|row| {
            EmptyElement::at((f.start, SegmentValue::Exact(rows + 1)))
                + Text::new(f.label.clone(), (4, 3 + 13 * row), label_font.clone())
        })
    }))?;

    // The legend beside the chart, so it never hides a state.
    let text = ("sans-serif", 13).into_font();
    legend_area.draw(&Text::new("state", (10, 48), text.clone()))?;
    for (i, state) in states.iter().enumerate() {
        let y = 72 + 22 * i as i32;
        legend_area
            .draw(&Rectangle::new([(10, y - 7), (26, y + 7)], state_color(state).filled()))?;
        legend_area.draw(&Text::new(state.to_string(), (34, y - 7), text.clone()))?;
    }
    Ok(())
}

/// The plots a report has: file stem, title (for the HTML), height in pixels.
pub const PLOTS: [(&str, &str); 4] = [
    ("throughput", "Operations per second"),
    ("latency", "Latency over time"),
    ("depth", "Queue depth"),
    ("nodes", "Node states"),
];

fn height(stem: &str, series: &Series) -> u32 {
    match stem {
        "throughput" => 620,
        "latency" => 840,
        "depth" => 380,
        _ => 140 + 44 * (series.nodes.len() + 1) as u32,
    }
}

fn draw<DB: DrawingBackend>(
    stem: &str,
    root: &DrawingArea<DB, Shift>,
    series: &Series,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    match stem {
        "throughput" => throughput(root, series),
        "latency" => latency(root, series),
        "depth" => depth(root, series),
        _ => nodes(root, series),
    }
}

/// Writes `plots/<name>.png` and `plots/<name>.svg` for every plot; returns the paths.
pub fn write_plots(run_dir: &RunDir, series: &Series) -> Result<Vec<PathBuf>, ReportError> {
    register_font();
    run_dir.create_plots_dir()?;
    let mut written = Vec::new();
    for (stem, _) in PLOTS {
        let size = (WIDTH, height(stem, series));
        let png = run_dir.plot_path(stem, "png");
        let plot_error = |path: &Path, err: Box<dyn Error>| ReportError::Plot {
            path: path.to_owned(),
            message: err.to_string(),
        };
        {
            let root = BitMapBackend::new(&png, size).into_drawing_area();
            draw(stem, &root, series).map_err(|err| plot_error(&png, err))?;
            root.present().map_err(|err| plot_error(&png, err.into()))?;
        }
        let svg = run_dir.plot_path(stem, "svg");
        {
            let root = SVGBackend::new(&svg, size).into_drawing_area();
            draw(stem, &root, series).map_err(|err| plot_error(&svg, err))?;
            root.present().map_err(|err| plot_error(&svg, err.into()))?;
        }
        written.push(png);
        written.push(svg);
    }
    Ok(written)
}
