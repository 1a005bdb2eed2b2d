//! The operation log of a chaos run: one JSON object per line, appended and flushed
//! as operations happen, so that a crashed harness still leaves a checkable history.
//! Plain (`history.jsonl`) or, for long soaks, a gzip stream (`history.jsonl.gz`)
//! flushed every second; every reader takes both.
//!
//! The format is stable (documented in README.md) so that other tools can read it.
//! Required on every line: `t`, `process`, `op`, `phase`; `msg` on produce invoke and
//! outcome, take ok, ack invoke and outcome; `checksum` on produce invoke and take ok;
//! `error` on fail and info.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
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
    #[error("the history was already finished: nothing more can be recorded")]
    Finished,
    #[error("{path}:{line}: not a history line: {source}")]
    Parse { path: PathBuf, line: usize, source: serde_json::Error },
}

/// How a history file is stored. Plain JSON lines are what every tool reads; gzip
/// (`history.jsonl.gz`) keeps an hours-long soak's history small on disk, and every
/// reader here takes either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryFormat {
    /// One line per event, flushed as it is written.
    #[default]
    Plain,
    /// A gzip stream flushed about once a second ([`GZIP_FLUSH_EVERY`]): about an
    /// eighth of the size, and a harness killed with `kill -9` loses at most the
    /// last second's events.
    Gzip,
}

/// How often a gzip history is flushed to disk (a sync flush: every byte before it
/// decodes even when the stream is never finished).
pub const GZIP_FLUSH_EVERY: Duration = Duration::from_secs(1);

enum Sink {
    Plain(BufWriter<File>),
    Gzip {
        out: Box<GzEncoder<BufWriter<File>>>,
        flushed: Instant,
    },
    /// After [`HistoryWriter::finish`]: the file is complete.
    Finished,
}

/// Appends events to the history; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct HistoryWriter {
    started: Instant,
    out: Arc<Mutex<Sink>>,
}

impl HistoryWriter {
    pub fn create(path: &Path, format: HistoryFormat) -> Result<Self, HistoryError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| HistoryError::Open { path: path.to_owned(), source })?;
        let file = BufWriter::with_capacity(1 << 16, file);
        let sink = match format {
            HistoryFormat::Plain => Sink::Plain(file),
            HistoryFormat::Gzip => Sink::Gzip {
                out: Box::new(GzEncoder::new(file, Compression::default())),
                flushed: Instant::now(),
            },
        };
        Ok(Self { started: Instant::now(), out: Arc::new(Mutex::new(sink)) })
    }

    /// Seconds since this writer (the run) started: the `t` of a new event.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes one line. A plain history flushes it at once, a gzip one when a
    /// flush is due, so the history survives a crash of the harness.
    pub fn record(&self, event: &Event) -> Result<(), HistoryError> {
        let mut line = serde_json::to_vec(event).expect("an Event always serializes");
        line.push(b'\n');
        match &mut *self.sink() {
            Sink::Plain(out) => {
                out.write_all(&line)?;
                out.flush()?;
            }
            Sink::Gzip { out, flushed } => {
                out.write_all(&line)?;
                if flushed.elapsed() >= GZIP_FLUSH_EVERY {
                    out.flush()?;
                    *flushed = Instant::now();
                }
            }
            Sink::Finished => return Err(HistoryError::Finished),
        }
        Ok(())
    }

    /// Makes everything recorded so far durable (the run's sampler calls it every
    /// second, so a quiet gzip history is not left behind in memory).
    pub fn flush(&self) -> Result<(), HistoryError> {
        match &mut *self.sink() {
            Sink::Plain(out) => out.flush()?,
            Sink::Gzip { out, flushed } => {
                out.flush()?;
                *flushed = Instant::now();
            }
            Sink::Finished => {}
        }
        Ok(())
    }

    /// Ends the file (a gzip history gets its trailer); later records are refused.
    pub fn finish(&self) -> Result<(), HistoryError> {
        let mut sink = self.sink();
        match std::mem::replace(&mut *sink, Sink::Finished) {
            Sink::Plain(mut out) => out.flush()?,
            Sink::Gzip { out, .. } => {
                out.finish()?.flush()?;
            }
            Sink::Finished => {}
        }
        Ok(())
    }
}

/// Opens a history for reading, plain or gzip (told by its first two bytes, so a
/// history of any name reads). A gzip stream cut short by a killed harness reads up
/// to its last flush; [`is_torn_gzip`] tells that end from damage.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, HistoryError> {
    let open_error = |source| HistoryError::Open { path: path.to_owned(), source };
    let mut file = BufReader::with_capacity(1 << 16, File::open(path).map_err(open_error)?);
    let gzip = file.fill_buf().map_err(open_error)?.starts_with(&GZIP_MAGIC);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether a read error is the end of a gzip history that was never finished (its
/// writer was killed): the events before it are whole, as after a torn last line.
pub fn is_torn_gzip(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::UnexpectedEof
}

/// Streams the events of a history file, one at a time, without loading it whole.
pub fn read(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Event, HistoryError>>, HistoryError> {
    let mut lines = open(path)?.lines().enumerate();
    let path = path.to_owned();
    let mut ended = false;
    // Ends at the first read error (after yielding it): a torn gzip stream ends
    // quietly, like a torn last line, and a failing read would fail again forever.
    Ok(std::iter::from_fn(move || loop {
        if ended {
            return None;
        }
        let (index, line) = lines.next()?;
        let line = match line {
            Ok(line) => line,
            Err(err) => {
                ended = true;
                if is_torn_gzip(&err) {
                    return None;
                }
                return Some(Err(HistoryError::Write(err)));
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        return Some(serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            path: path.clone(),
            line: index + 1,
            source,
        }));
    }))
}
