//! The trend's plots, drawn with plotters into SVG text for `trend.html` (no files:
//! the page is the artefact a nightly job publishes). The x axis is the run's place
//! in the trend (`#1` oldest), not its date: nights that were skipped or ran twice
//! would otherwise crowd or stretch the axis.

use std::error::Error;
use std::path::PathBuf;

use plotters::prelude::*;

use super::plots::register_font;
use super::trend::{RunFigures, Trend, Violations, TREND_HTML};
use super::ReportError;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 380;
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
];
const CRASHED: RGBColor = RGBColor(214, 39, 40);

/// One line of a plot: a value per finished run that has it (run index, value).
struct Line {
    label: String,
    points: Vec<(usize, f64)>,
}

/// A line of `pick` over the finished runs (`None`: the run lacks the figure).
fn line(trend: &Trend, label: &str, pick: impl Fn(&RunFigures) -> Option<f64>) -> Line {
    let points = trend
        .runs
        .iter()
        .enumerate()
        .filter_map(|(index, run)| Some((index, pick(run.figures.as_ref()?)?)))
        .collect();
    Line { label: label.to_owned(), points }
}

/// Draws one plot; crashed runs get a cross on the x axis.
fn draw(
    caption: &str,
    y_desc: &str,
    runs: usize,
    crashed: &[usize],
    lines: &[Line],
) -> Result<String, Box<dyn Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let y_max =
            lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.15;
        let x_end = (runs as f64 - 0.5).max(0.5);
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20).into_font())
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..x_end, 0.0..y_max)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(runs.clamp(2, 40) + 1)
            .x_label_formatter(&|x| {
                let index = x.round();
                let near = (x - index).abs() < 0.01 && index >= 0.0 && index < runs as f64;
                if near {
                    format!("#{}", index as usize + 1)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| {
                if y_max >= 10.0 {
                    format!("{y:.0}")
                } else {
                    format!("{y:.2}")
                }
            })
            .x_desc("run (oldest first, numbered as in the tables)")
            .y_desc(y_desc)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        for (line, color) in lines.iter().zip(COLORS.iter().cycle()) {
            let at = |&(index, value): &(usize, f64)| (index as f64, value);
            chart
                .draw_series(LineSeries::new(line.points.iter().map(at), color.stroke_width(2)))?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(line.points.iter().map(|p| Circle::new(at(p), 3, color.filled())))?;
        }
        chart.draw_series(
            crashed
                .iter()
                .map(|&index| Cross::new((index as f64, 0.0), 6, CRASHED.stroke_width(3))),
        )?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 13))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Throughput, unavailability (overall and per access path) and violations over the
/// runs: (title, SVG) each.
pub fn svgs(trend: &Trend) -> Result<Vec<(String, String)>, ReportError> {
    register_font();
    let crashed: Vec<usize> = trend
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.figures.is_none())
        .map(|(i, _)| i)
        .collect();
    let throughput = vec![
        line(trend, "operations/s", |f| Some(f.ops_per_s)),
        line(trend, "acknowledged messages/s", |f| Some(f.acknowledged_per_s)),
    ];
    let mut unavailability = vec![
        line(trend, "median", |f| f.unavailability.median_s),
        line(trend, "max", |f| f.unavailability.max_s),
    ];
    let mut paths: Vec<&String> = trend
        .runs
        .iter()
        .filter_map(|run| run.figures.as_ref())
        .filter(|f| f.unavailability_by_access.len() > 1)
        .flat_map(|f| f.unavailability_by_access.keys())
        .collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        unavailability.push(line(trend, &format!("median on {path}"), |f| {
            f.unavailability_by_access.get(path)?.median_s
        }));
    }
    let violations: Vec<Line> = Violations::default()
        .counts()
        .into_iter()
        .enumerate()
        .map(|(at, (name, _))| {
            line(trend, &name.replace('_', " "), |f| Some(f.violations.counts()[at].1 as f64))
        })
        .collect();
    let plots = [
        ("Throughput", "per second", throughput),
        ("Unavailability after a fault", "seconds", unavailability),
        ("Violations (must be 0)", "messages", violations),
    ];
    plots
        .into_iter()
        .map(|(title, y_desc, lines)| {
            let svg = draw(title, y_desc, trend.runs.len(), &crashed, &lines).map_err(|err| {
                ReportError::Plot {
                    path: PathBuf::from(format!("{TREND_HTML} ({title})")),
                    message: err.to_string(),
                }
            })?;
            Ok((title.to_owned(), svg))
        })
        .collect()
}
