//! The checker's speed and memory on long histories, plain and gzip: a synthetic
//! run of 1,000,000 operations by default (about 2,000,000 lines, with faults,
//! unknown outcomes and redeliveries), written as `history.jsonl` and as the
//! streamed `history.jsonl.gz` a soak writes, each checked by the `zkmq check`
//! binary, which prints its time and peak memory. Prints, never asserts a time
//! (performance targets are measured, not tested):
//!
//! ```sh
//! cargo test --release --test checker_bench -- --ignored --nocapture
//! # ten million lines (5,000,000 operations):
//! ZKMQ_BENCH_OPERATIONS=5000000 cargo test --release --test checker_bench -- --ignored --nocapture
//! ```

use std::process::Command;
use std::time::Instant;

use zkmq::checker::synthetic::{self, SyntheticOptions};
use zkmq::history::{self, HistoryFormat, HistoryWriter};

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn check_one_million_operations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let started = Instant::now();
    let (operations, truth) = synthetic_run(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "generated {operations} operations: {} lines, {:.0} MiB, {} messages, in {:.1} s",
        truth.events,
        size as f64 / (1 << 20) as f64,
        truth.produced_ok,
        started.elapsed().as_secs_f64()
    );
    check(&path, truth.events);

    // The same events through the run's own gzip writer, flushed every second of
    // history time as a soak flushes them.
    let gzip = dir.path().join("history.jsonl.gz");
    let writer = HistoryWriter::create(&gzip, HistoryFormat::Gzip).unwrap();
    let mut flushed_at = 0.0;
    for event in history::read(&path).unwrap() {
        let event = event.unwrap();
        writer.record(&event).unwrap();
        if event.t - flushed_at >= 1.0 {
            writer.flush().unwrap();
            flushed_at = event.t;
        }
    }
    writer.finish().unwrap();
    let compressed = std::fs::metadata(&gzip).unwrap().len();
    println!(
        "gzip history: {:.1} MiB ({:.1}% of the plain size)",
        compressed as f64 / (1 << 20) as f64,
        100.0 * compressed as f64 / size as f64
    );
    check(&gzip, truth.events);
}

/// The benchmarks' synthetic run, of `ZKMQ_BENCH_OPERATIONS` operations (default
/// 1,000,000), written to `path`.
fn synthetic_run(path: &std::path::Path) -> (u64, synthetic::SyntheticSummary) {
    let operations = std::env::var("ZKMQ_BENCH_OPERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let options = SyntheticOptions {
        operations,
        producers: 8,
        consumers: 17,
        think_s: 0.005,
        ..Default::default()
    };
    (operations, synthetic::write_history(path, &options).unwrap())
}

fn check(path: &std::path::Path, lines: u64) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_zkmq")).arg("check").arg(path).output().unwrap();
    let wall = started.elapsed().as_secs_f64();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "zkmq check {}: exit {:?}, {wall:.2} s wall (process start included), {:.0} lines/s",
        path.display(),
        out.status.code(),
        lines as f64 / wall
    );
    assert_eq!(out.status.code(), Some(0), "a clean synthetic history is valid");
}

/// The live view's checker (bounded to `LIVE_MESSAGES`) fed a long history: the
/// messages it remembers and this process's resident memory before and after,
/// which stay flat however long the history.
#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn the_live_view_stays_flat_over_a_long_history() {
    use zkmq::checker::{for_each_line, Checker};
    use zkmq::report::LIVE_MESSAGES;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let (_, truth) = synthetic_run(&path);
    let before = resident_mib();
    let mut live = Checker::new().remembering_at_most(LIVE_MESSAGES);
    let mut most = 0;
    let mut line = 0u64;
    for_each_line(&path, |event| {
        live.observe_view(event);
        most = most.max(live.remembered());
        line += 1;
        if line.is_multiple_of(2_000_000) {
            println!(
                "line {line}: remembering {} messages, resident {:.0} MiB",
                live.remembered(),
                resident_mib()
            );
        }
    })
    .unwrap();
    println!(
        "live view over {} lines, {} messages: remembered {most} at most; resident {before:.0} MiB before, {:.0} MiB after",
        truth.events,
        truth.produced_ok,
        resident_mib()
    );
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}
