//! Time series for the plots, and the HdrHistogram interval logs, from one more
//! streaming pass over the history plus `samples.jsonl` and `schedule.json`.
//!
//! Latency histograms live only for the interval being filled: each is written to
//! its kind's interval log and summarised (p50, p99, max) when time moves past it,
//! so memory stays flat however long the run.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use super::ReportError;
use crate::checker::{for_each_line, latency_histogram, Kind};
use crate::history::Phase;
use crate::rundir::{RunDir, Sample, Schedule};

/// Outcome columns of [`Series::ops`].
pub const OUTCOMES: [&str; 3] = ["ok", "fail", "info"];

/// Per-interval latency percentiles of one kind, milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct LatencyPoint {
    pub t: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One fault as plotted: a shaded window with a label.
#[derive(Debug, Clone)]
pub struct FaultSpan {
    pub label: String,
    pub start: f64,
    pub end: f64,
}

/// A node's state over `[start, end)`.
#[derive(Debug, Clone)]
pub struct StateSpan {
    pub state: String,
    /// The node's software version (ZooKeeper, or zkmq for the gateway): an upgrade
    /// shows as a change.
    pub version: String,
    pub start: f64,
    pub end: f64,
}

/// Everything the plots draw.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Interval width in seconds.
    pub interval_s: f64,
    /// Seconds covered (the last event's `t`).
    pub end_s: f64,
    /// Per interval: counts per kind (produce, take, ack) and outcome (ok, fail, info).
    pub ops: Vec<[[u64; 3]; 3]>,
    /// Per kind, one point per interval that had an `ok`.
    pub latency: [Vec<LatencyPoint>; 3],
    /// (t, messages, partial, in flight).
    pub depth: Vec<(f64, u64, u64, u64)>,
    /// Node name -> state spans, in name order (`rest` last).
    pub nodes: Vec<(String, Vec<StateSpan>)>,
    pub faults: Vec<FaultSpan>,
    /// (t, the harness's resident MiB).
    pub harness: Vec<(f64, f64)>,
}

/// Picks an interval giving about 150 points, at least one second, rounded to a
/// readable width.
fn interval_for(duration_s: f64) -> f64 {
    let raw = duration_s / 150.0;
    [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|width| *width >= raw)
        .unwrap_or(900.0)
}

struct KindLog {
    file: BufWriter<File>,
    path: PathBuf,
    current: Histogram<u64>,
}

/// Reads the run directory's history (the pass that fills the time series and
/// writes `latency-<kind>.hlog`) and samples; the fault windows come from its
/// schedule, read once by the caller.
///
/// `started`: when the run started (from `run.json`), the logs' StartTime and
/// BaseTime, so interval timestamps are seconds since the run started.
pub fn collect(
    run_dir: &RunDir,
    schedule: Option<&Schedule>,
    duration_s: f64,
    started: Option<std::time::SystemTime>,
) -> Result<(Series, Vec<PathBuf>), ReportError> {
    let interval = interval_for(duration_s.max(1.0));
    let buckets = (duration_s / interval).floor() as usize + 1;
    let mut series = Series {
        interval_s: interval,
        end_s: duration_s,
        ops: vec![[[0; 3]; 3]; buckets],
        ..Series::default()
    };

    let mut logs = Vec::new();
    for kind in Kind::ALL {
        let (file, path) = run_dir.create_latency_log(kind.name())?;
        logs.push(KindLog { file: BufWriter::new(file), path, current: latency_histogram() });
    }
    let mut pending: BTreeMap<String, f64> = BTreeMap::new();
    let mut bucket_now = 0usize;
    let mut results: Vec<Vec<(usize, Histogram<u64>)>> = vec![Vec::new(), Vec::new(), Vec::new()];

    for_each_line(&run_dir.history_path(), |event| {
        let Some(kind) = Kind::parse(event.op) else { return };
        if event.phase == Phase::Invoke {
            match pending.get_mut(event.process) {
                Some(t) => *t = event.t,
                None => {
                    pending.insert(event.process.to_owned(), event.t);
                }
            }
            return;
        }
        let bucket = ((event.t / interval).floor().max(0.0) as usize).min(buckets - 1);
        let outcome = match event.effective_phase() {
            Phase::Ok => 0,
            Phase::Fail => 1,
            _ => 2,
        };
        series.ops[bucket][kind as usize][outcome] += 1;
        if outcome != 0 || event.is_empty_take() {
            return;
        }
        // Out-of-order lines by a few milliseconds land in the interval being filled.
        if bucket > bucket_now {
            for (k, log) in logs.iter_mut().enumerate() {
                if !log.current.is_empty() {
                    let full = std::mem::replace(&mut log.current, latency_histogram());
                    results[k].push((bucket_now, full));
                }
            }
            bucket_now = bucket;
        }
        let latency_ms = event
            .latency_ms
            .unwrap_or_else(|| pending.get(event.process).map_or(0.0, |t| (event.t - t) * 1000.0));
        logs[kind as usize].current.saturating_record((latency_ms * 1000.0).max(1.0) as u64);
    })?;
    for (k, log) in logs.iter_mut().enumerate() {
        if !log.current.is_empty() {
            let full = std::mem::replace(&mut log.current, latency_histogram());
            results[k].push((bucket_now, full));
        }
    }

    // Interval logs: microsecond values, shown in milliseconds by HdrHistogram tools.
    for (k, log) in logs.iter_mut().enumerate() {
        let kind = Kind::ALL[k];
        let mut serializer = V2DeflateSerializer::new();
        let write_error =
            |source: std::io::Error| ReportError::Write { path: log.path.clone(), source };
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(&format!("zkmq {} latency, microseconds (ok outcomes)", kind.name()))
            .with_max_value_divisor(1000.0);
        if let Some(started) = started {
            builder.with_start_time(started).with_base_time(started);
        }
        let mut writer =
            builder.begin_log_with(&mut log.file, &mut serializer).map_err(write_error)?;
        writer
            .write_comment("Interval start is seconds since the run started")
            .map_err(|source| ReportError::Write { path: log.path.clone(), source })?;
        for (bucket, histogram) in &results[k] {
            writer
                .write_histogram(
                    histogram,
                    Duration::from_secs_f64(*bucket as f64 * interval),
                    Duration::from_secs_f64(interval),
                    Tag::new(kind.name()),
                )
                .map_err(|err| ReportError::Write {
                    path: log.path.clone(),
                    source: std::io::Error::other(format!("{err:?}")),
                })?;
            series.latency[k].push(LatencyPoint {
                t: (*bucket as f64 + 0.5) * interval,
                p50: histogram.value_at_quantile(0.5) as f64 / 1000.0,
                p99: histogram.value_at_quantile(0.99) as f64 / 1000.0,
                max: histogram.max() as f64 / 1000.0,
            });
        }
        drop(writer);
        log.file.flush().map_err(|source| ReportError::Write { path: log.path.clone(), source })?;
    }

    read_samples(run_dir, &mut series)?;
    series.faults = schedule.map(fault_spans).unwrap_or_default();
    for fault in &mut series.faults {
        fault.end = fault.end.min(series.end_s);
    }
    Ok((series, logs.into_iter().map(|log| log.path).collect()))
}

fn read_samples(run_dir: &RunDir, series: &mut Series) -> Result<(), ReportError> {
    let mut nodes: BTreeMap<String, Vec<StateSpan>> = BTreeMap::new();
    for sample in run_dir.read_samples()? {
        match sample {
            Sample::Depth { t, messages, partial, in_flight } => {
                series.depth.push((t, messages, partial, in_flight))
            }
            Sample::Node { t, node, state, version } => {
                let spans = nodes.entry(node).or_default();
                if let Some(span) = spans.last_mut() {
                    span.end = t;
                    if span.state == state && span.version == version {
                        continue;
                    }
                }
                spans.push(StateSpan { state, version, start: t, end: t });
            }
            Sample::Harness { t, rss_mib, .. } => series.harness.push((t, rss_mib)),
        }
    }
    let end = series.end_s;
    for spans in nodes.values_mut() {
        if let Some(span) = spans.last_mut() {
            span.end = span.end.max(end);
        }
    }
    series.end_s = series.end_s.max(series.depth.last().map_or(0.0, |d| d.0));
    // ZooKeeper nodes first in numeric order (zk2 before zk10), the gateway last.
    let mut nodes: Vec<(String, Vec<StateSpan>)> = nodes.into_iter().collect();
    nodes.sort_by_key(|(name, _)| {
        let number: Option<u32> =
            name.trim_start_matches(|c: char| !c.is_ascii_digit()).parse().ok();
        (name == "rest", number.unwrap_or(u32::MAX), name.clone())
    });
    series.nodes = nodes;
    Ok(())
}

/// The schedule's applied faults as labelled spans.
pub fn fault_spans(schedule: &Schedule) -> Vec<FaultSpan> {
    schedule
        .faults
        .iter()
        .filter(|fault| fault.applied)
        .map(|fault| FaultSpan {
            label: format!(
                "{} {}",
                fault.fault,
                fault.resolved.as_deref().unwrap_or(&fault.target)
            ),
            start: fault.start,
            end: fault.end.unwrap_or(f64::INFINITY),
        })
        .collect()
}

/// Parses an RFC 3339 UTC-or-offset timestamp (`2026-01-01T12:00:00.123Z`,
/// `...+02:00`), as `run.json` records `started_at`.
pub fn parse_rfc3339(text: &str) -> Option<std::time::SystemTime> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i32 = date_parts.next()?.parse().ok()?;
    let month: u8 = date_parts.next()?.parse().ok()?;
    let day: u8 = date_parts.next()?.parse().ok()?;
    let offset_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, offset) = rest.split_at(offset_at);
    let mut clock_parts = clock.splitn(3, ':');
    let hour: u8 = clock_parts.next()?.parse().ok()?;
    let minute: u8 = clock_parts.next()?.parse().ok()?;
    let second: f64 = clock_parts.next()?.parse().ok()?;
    let offset_s: i64 = match offset {
        "Z" | "z" => 0,
        _ => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = offset[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let whole = time::Time::from_hms(hour, minute, second.trunc() as u8).ok()?;
    let unix = date.with_time(whole).assume_utc().unix_timestamp() - offset_s;
    let unix = unix as f64 + second.fract();
    (unix >= 0.0).then(|| std::time::UNIX_EPOCH + Duration::from_secs_f64(unix))
}
