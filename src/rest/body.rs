//! A request's body, read in chunks so that what a handler leaves unread can be
//! read and thrown away before the answer goes out.
//!
//! Why: when a handler answers early (a 413 for a body over the limit, or any 4xx
//! decided from the head alone) and hyper closes the connection with the body still
//! arriving, the kernel answers the unread bytes with a reset. A client that writes
//! its whole body before reading (Python's `urllib`, most simple clients) then gets
//! a broken pipe or "connection reset" instead of our answer. Common servers drain
//! or linger for this (nginx's `lingering_close`, Apache's lingering close); we drain
//! before answering, within a bound of bytes and time, and close the connection
//! (`Connection: close`) when the bound cuts the drain short.

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use futures::StreamExt as _;

/// The most bytes of an unwanted body we read to deliver an early answer. A few
/// times the znode limit covers every client that merely sent too much; past it the
/// client is left to the reset.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
/// The longest we spend draining one body, so a slow sender cannot hold a task.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) struct RequestBody {
    stream: BodyDataStream,
    /// Set once the body has been polled: a client that sent `Expect: 100-continue`
    /// is invited to send (hyper's 100 Continue) only then.
    polled: bool,
    ended: bool,
    /// The request said `Expect: 100-continue`.
    expects_continue: bool,
    /// The request's `Content-Length`, if it gave one.
    declared: Option<u64>,
}

/// Why a body could not be read whole.
pub(crate) enum ReadError {
    /// More than the limit arrived (the rest stays unread, for [`RequestBody::finish`]).
    TooLarge,
    /// The client's stream broke off.
    Broken,
}

impl RequestBody {
    pub fn new(body: Body, headers: &HeaderMap) -> Self {
        let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        Self {
            stream: body.into_data_stream(),
            polled: false,
            ended: false,
            expects_continue: header(header::EXPECT)
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue")),
            declared: header(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        }
    }

    /// The request's `Content-Length`, if it gave one.
    pub fn declared_len(&self) -> Option<u64> {
        self.declared
    }

    /// The whole body, or [`ReadError::TooLarge`] as soon as it passes `limit`.
    pub async fn read(&mut self, limit: usize) -> Result<Bytes, ReadError> {
        let mut data = Vec::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk.map_err(|_| ReadError::Broken)?;
            if data.len() + chunk.len() > limit {
                return Err(ReadError::TooLarge);
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(data))
    }

    async fn next(&mut self) -> Option<Result<Bytes, axum::Error>> {
        self.polled = true;
        let next = self.stream.next().await;
        if next.is_none() {
            self.ended = true;
        }
        next
    }

    /// Reads and discards what the handler left of the body, so the client reads
    /// `response` instead of a reset; marks the response `Connection: close` when
    /// the body is not drained whole (then the connection cannot be reused anyway).
    pub async fn finish(mut self, mut response: Response) -> Response {
        if !self.drain().await {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// Whether the body was read to its end.
    async fn drain(&mut self) -> bool {
        if self.ended {
            return true;
        }
        // A client waiting for 100 Continue has not sent the body: reading would
        // invite it to send what we are refusing. It reads the answer instead.
        if self.expects_continue && !self.polled {
            return false;
        }
        if self.declared.is_some_and(|n| n > DRAIN_LIMIT) {
            return false;
        }
        let drain = async {
            let mut drained = 0u64;
            while let Some(chunk) = self.next().await {
                let Ok(chunk) = chunk else { return false };
                drained += chunk.len() as u64;
                if drained > DRAIN_LIMIT {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(DRAIN_TIME, drain).await.unwrap_or(false)
    }
}
