//! The qualification's plots, drawn with plotters into SVG text for `qualify.html`
//! (like the trend's: the page is the artefact). Baseline and candidate side by
//! side as horizontal bars, one row per scenario (and fault kind), so long names
//! stay readable.

use std::error::Error;
use std::path::PathBuf;

use plotters::prelude::*;

use super::plots::{legend, register_font};
use super::qualify::{Qualification, QUALIFY_HTML};
use super::ReportError;

const WIDTH: u32 = 1200;
/// The trend's first two colours: baseline blue, candidate orange.
const BASELINE: RGBColor = RGBColor(31, 119, 180);
const CANDIDATE: RGBColor = RGBColor(255, 127, 14);
const ROW_HEIGHT: u32 = 34;

/// One row of a plot: its label and each side's bar, with an optional mark
/// further out (the max beside a median).
struct Row {
    label: String,
    bars: [Option<f64>; 2],
    marks: [Option<f64>; 2],
}

fn draw(
    caption: &str,
    x_desc: &str,
    rows: &[Row],
    mark_label: &str,
) -> Result<String, Box<dyn Error>> {
    let mut svg = String::new();
    {
        let height = 120 + ROW_HEIGHT * rows.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_max = rows
            .iter()
            .flat_map(|r| r.bars.iter().chain(&r.marks).flatten())
            .fold(0.0_f64, |a, &b| a.max(b))
            .max(0.01)
            // Room on the right for the legend.
            * 1.35;
        let count = rows.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20).into_font())
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(260)
            .build_cartesian_2d(0.0..x_max, -0.5..(count as f64 - 0.5))?;
        let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .y_labels(count * 2 + 1)
            .y_label_formatter(&|y| {
                let index = y.round();
                let near = (y - index).abs() < 0.01 && index >= 0.0 && (index as usize) < count;
                // Row 0 at the top: the first scenario reads first.
                if near {
                    labels.get(count - 1 - index as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|x| {
                if x_max >= 10.0 {
                    format!("{x:.0}")
                } else {
                    format!("{x:.2}")
                }
            })
            .x_desc(x_desc)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        let sides = [("baseline", BASELINE, -0.2), ("candidate", CANDIDATE, 0.2)];
        for (side, (name, color, offset)) in sides.into_iter().enumerate() {
            let y = |index: usize| (count - 1 - index) as f64 - offset;
            let bars = rows.iter().enumerate().filter_map(|(index, row)| {
                let value = row.bars[side]?;
                Some(Rectangle::new(
                    [(0.0, y(index) - 0.17), (value, y(index) + 0.17)],
                    color.filled(),
                ))
            });
            chart.draw_series(bars)?.label(name).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled())
            });
            let marks = rows.iter().enumerate().filter_map(|(index, row)| {
                Some(Cross::new((row.marks[side]?, y(index)), 5, color.stroke_width(2)))
            });
            chart.draw_series(marks)?;
        }
        if !mark_label.is_empty() {
            chart
                .draw_series(std::iter::empty::<Cross<(f64, f64), i32>>())?
                .label(mark_label)
                .legend(|(x, y)| Cross::new((x + 8, y), 5, BLACK.stroke_width(2)));
        }
        legend(&mut chart)?;
        root.present()?;
    }
    Ok(svg)
}

/// Unavailability (median bars, max crosses) per scenario and fault kind, over
/// any access path; and throughput per scenario: (title, SVG) each.
pub fn svgs(q: &Qualification) -> Result<Vec<(String, String)>, ReportError> {
    register_font();
    let unavailability: Vec<Row> = q
        .comparisons
        .iter()
        .flat_map(|c| {
            c.unavailability.iter().filter(|row| row.path == "any").map(move |row| (c, row))
        })
        .map(|(c, row)| Row {
            label: format!("{}: {}", c.scenario, row.fault),
            bars: [row.baseline.median_s, row.candidate.median_s],
            marks: [row.baseline.max_s, row.candidate.max_s],
        })
        .collect();
    let throughput: Vec<Row> = q
        .comparisons
        .iter()
        .map(|c| Row {
            label: c.scenario.clone(),
            bars: [c.baseline.ops_per_s, c.candidate.ops_per_s],
            marks: [None, None],
        })
        .collect();
    let plots = [
        (
            "Unavailability after a fault (bar: median, cross: max)",
            "seconds",
            unavailability,
            "max",
        ),
        ("Throughput (median of the runs)", "queue operations per second", throughput, ""),
    ];
    plots
        .into_iter()
        .filter(|(_, _, rows, _)| !rows.is_empty())
        .map(|(title, x_desc, rows, mark)| {
            let svg = draw(title, x_desc, &rows, mark).map_err(|err| ReportError::Plot {
                path: PathBuf::from(format!("{QUALIFY_HTML} ({title})")),
                message: err.to_string(),
            })?;
            Ok((title.to_owned(), svg))
        })
        .collect()
}
