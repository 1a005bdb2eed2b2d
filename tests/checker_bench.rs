//! The checker's speed and memory on a long history: 1,000,000 operations (about
//! 2,000,000 lines, with faults, unknown outcomes and redeliveries) checked by the
//! `zkmq check` binary, which prints its time and peak memory. Prints, never asserts
//! a time (performance targets are measured, not tested):
//!
//! ```sh
//! cargo test --release --test checker_bench -- --ignored --nocapture
//! ```

use std::process::Command;
use std::time::Instant;

use zkmq::checker::synthetic::{self, SyntheticOptions};

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn check_one_million_operations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let operations = std::env::var("ZKMQ_BENCH_OPERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let started = Instant::now();
    let truth = synthetic::write_history(
        &path,
        &SyntheticOptions {
            operations,
            producers: 8,
            consumers: 17,
            think_s: 0.005,
            ..Default::default()
        },
    )
    .unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "generated {operations} operations: {} lines, {:.0} MiB, {} messages, in {:.1} s",
        truth.events,
        size as f64 / (1 << 20) as f64,
        truth.produced_ok,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_zkmq")).arg("check").arg(&path).output().unwrap();
    let wall = started.elapsed().as_secs_f64();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    println!("zkmq check: exit {:?}, {wall:.2} s wall (process start included)", out.status.code());
    assert_eq!(out.status.code(), Some(0), "a clean synthetic history is valid");
}
