//! The operation log of a chaos run: one JSON object per line, appended and flushed
//! as operations happen, so that a crashed harness still leaves a checkable history.
//!
//! The format is stable (documented in README.md) so that other tools can read it.
//! Required on every line: `t`, `process`, `op`, `phase`; `msg` on produce invoke and
//! outcome, take ok, ack invoke and outcome; `checksum` on produce invoke and take ok;
//! `error` on fail and info.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Invoke,
    /// Definitely happened.
    Ok,
    /// Definitely did not happen.
    Fail,
    /// Outcome unknown: never counted as a failure.
    Info,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the run started.
    pub t: f64,
    /// Who did it: `producer-3`, `consumer-rest-1`, `nemesis`, `drain`.
    pub process: String,
    /// `produce`, `take`, `ack`, or a fault name for the nemesis.
    pub op: String,
    pub phase: Phase,
    /// The message id, so every delivery can be tied to its produce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// CRC-32 of the payload as produced (produce invoke) or as delivered (take ok).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u32>,
    /// Why it failed, or why its outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `native` or `rest`: which access path a queue operation used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Milliseconds from invoke to this outcome (outcome lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The znode the operation touched (take ok: the source message name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Nemesis lines: what the fault was aimed at (`zk3`, `leader`, `rest`, `consumer-2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Free-form detail (a fault's description, a drain summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    pub fn new(t: f64, process: impl Into<String>, op: impl Into<String>, phase: Phase) -> Self {
        Self {
            t,
            process: process.into(),
            op: op.into(),
            phase,
            msg: None,
            checksum: None,
            error: None,
            path: None,
            latency_ms: None,
            node: None,
            target: None,
            detail: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot open history {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot write history: {0}")]
    Write(#[from] std::io::Error),
    #[error("{path}:{line}: not a history line: {source}")]
    Parse { path: PathBuf, line: usize, source: serde_json::Error },
}

/// Appends events to `history.jsonl`; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct HistoryWriter {
    started: Instant,
    out: Arc<Mutex<BufWriter<File>>>,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> Result<Self, HistoryError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| HistoryError::Open { path: path.to_owned(), source })?;
        Ok(Self { started: Instant::now(), out: Arc::new(Mutex::new(BufWriter::new(file))) })
    }

    /// Seconds since this writer (the run) started: the `t` of a new event.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Writes one line and flushes it, so the history survives a crash of the harness.
    pub fn record(&self, event: &Event) -> Result<(), HistoryError> {
        let mut line = serde_json::to_vec(event).expect("an Event always serializes");
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        out.write_all(&line)?;
        out.flush()?;
        Ok(())
    }
}

/// Streams the events of a history file, one at a time, without loading it whole.
pub fn read(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Event, HistoryError>>, HistoryError> {
    let file =
        File::open(path).map_err(|source| HistoryError::Open { path: path.to_owned(), source })?;
    let path = path.to_owned();
    Ok(BufReader::new(file).lines().enumerate().filter_map(move |(index, line)| {
        let line = match line {
            Ok(line) => line,
            Err(err) => return Some(Err(HistoryError::Write(err))),
        };
        if line.trim().is_empty() {
            return None;
        }
        Some(serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            path: path.clone(),
            line: index + 1,
            source,
        }))
    }))
}
