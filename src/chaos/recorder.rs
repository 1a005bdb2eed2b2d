//! Where a run's events go: the history file, and the live progress view.

use crate::history::{Event, HistoryError, HistoryWriter};
use crate::report::Progress;

/// The history writer plus the live progress view; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    writer: HistoryWriter,
    /// Fed every event, so the live line counts outcomes and shows violations as
    /// they happen.
    progress: Option<Progress>,
}

impl Recorder {
    pub fn new(writer: HistoryWriter, progress: Option<Progress>) -> Self {
        Self { writer, progress }
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.writer.now()
    }

    /// Appends (and flushes) the event, then shows it.
    pub fn record(&self, event: &Event) -> Result<(), HistoryError> {
        self.writer.record(event)?;
        if let Some(progress) = &self.progress {
            progress.observe(event);
        }
        Ok(())
    }

    /// Makes what was recorded durable (a gzip history buffers up to a second).
    pub fn flush(&self) -> Result<(), HistoryError> {
        self.writer.flush()
    }

    pub fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }
}
