//! The bytes a message znode holds: a small versioned header, then the payload.
//!
//! ```text
//! "ZKMQ"  format(1)  flags(1)  id(16)  crc32(4, BE)
//! claim_len(1) claim   source_len(1) source   payload_len(4, BE)  payload
//! ```
//!
//! The id ties every delivery to its produce; the CRC-32 catches corruption; the
//! claim marks a message taken by the claim protocol (REST has no `multi`), and
//! `source` is the name the message had in `messages/` or `partial/` (a consumer's
//! slot keeps it so recovery can put the message back under its original name,
//! which makes a retried move idempotent). An empty znode is not a message: it is
//! a produce that has not set its data yet (or never will: an orphan).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"ZKMQ";
const FORMAT: u8 = 1;
/// Fixed part: magic, format, flags, id, crc, the two length bytes and payload_len.
const FIXED: usize = 4 + 1 + 1 + 16 + 4 + 1 + 1 + 4;
/// Claim and source are each at most this long.
pub const MAX_FIELD: usize = 255;
/// The most bytes the envelope adds to a payload.
pub const MAX_ENVELOPE: usize = FIXED + 2 * MAX_FIELD;
/// What one znode may hold here. ZooKeeper's `jute.maxbuffer` (default 0xfffff
/// bytes) bounds a whole request packet, so leave room for the request header,
/// the paths and a `multi`'s framing.
pub const ZNODE_DATA_LIMIT: usize = 0xfffff - 4096;
/// The largest payload [`Producer::send`](super::Producer::send) accepts.
pub const MAX_PAYLOAD: usize = ZNODE_DATA_LIMIT - MAX_ENVELOPE;

/// The slot copy came from `partial/` rather than `messages/`.
pub const FLAG_FROM_PARTIAL: u8 = 1;
/// Recovery fenced this slot copy: the consumer that held it can no longer ack it.
pub const FLAG_TAKEN_BACK: u8 = 2;

/// CRC-32 (IEEE) of a payload.
pub fn checksum(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

/// A message id, unique across producers (a random UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub uuid::Uuid);

impl MessageId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_hyphenated())
    }
}

impl FromStr for MessageId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A decoded message znode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: MessageId,
    /// CRC-32 of the payload as produced.
    pub checksum: u32,
    pub flags: u8,
    /// Empty, or the claim token `<consumer id>/<nonce>` of the consumer (or
    /// recovery move) that owns this copy for now.
    pub claim: String,
    /// Empty in `messages/`; in a slot or `partial/`, the original node name.
    pub source: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("not a zkmq message (no ZKMQ header)")]
    NotAMessage,
    #[error("message format {0} is newer than this zkmq understands (1)")]
    UnknownFormat(u8),
    #[error("truncated message ({0} bytes)")]
    Truncated(usize),
    #[error("payload checksum {found:08x} differs from the one produced {expected:08x}")]
    Checksum { expected: u32, found: u32 },
}

impl Envelope {
    pub fn new(id: MessageId, payload: &[u8]) -> Self {
        Self {
            id,
            checksum: checksum(payload),
            flags: 0,
            claim: String::new(),
            source: String::new(),
            payload: payload.to_vec(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let claim = truncated(&self.claim);
        let source = truncated(&self.source);
        let mut out = Vec::with_capacity(FIXED + claim.len() + source.len() + self.payload.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.push(self.flags);
        out.extend_from_slice(self.id.0.as_bytes());
        out.extend_from_slice(&self.checksum.to_be_bytes());
        out.push(claim.len() as u8);
        out.extend_from_slice(claim);
        out.push(source.len() as u8);
        out.extend_from_slice(source);
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes without checking the payload's checksum (see [`Envelope::verify`]):
    /// a corrupt payload is still delivered, so the checker can count it.
    pub fn decode(data: &[u8]) -> Result<Self, EnvelopeError> {
        let truncated_err = || EnvelopeError::Truncated(data.len());
        if data.len() < 6 || &data[..4] != MAGIC {
            return Err(EnvelopeError::NotAMessage);
        }
        if data[4] != FORMAT {
            return Err(EnvelopeError::UnknownFormat(data[4]));
        }
        let mut reader = Reader { data, at: 5 };
        let flags = reader.take(1).ok_or_else(truncated_err)?[0];
        let id = uuid::Uuid::from_slice(reader.take(16).ok_or_else(truncated_err)?)
            .map_err(|_| truncated_err())?;
        let checksum = u32::from_be_bytes(reader.array().ok_or_else(truncated_err)?);
        let claim_len = reader.take(1).ok_or_else(truncated_err)?[0] as usize;
        let claim = String::from_utf8_lossy(reader.take(claim_len).ok_or_else(truncated_err)?);
        let source_len = reader.take(1).ok_or_else(truncated_err)?[0] as usize;
        let source = String::from_utf8_lossy(reader.take(source_len).ok_or_else(truncated_err)?);
        let payload_len = u32::from_be_bytes(reader.array().ok_or_else(truncated_err)?) as usize;
        let payload = reader.take(payload_len).ok_or_else(truncated_err)?;
        Ok(Self {
            id: MessageId(id),
            checksum,
            flags,
            claim: claim.into_owned(),
            source: source.into_owned(),
            payload: payload.to_vec(),
        })
    }

    pub fn verify(&self) -> Result<(), EnvelopeError> {
        let found = checksum(&self.payload);
        if found == self.checksum {
            Ok(())
        } else {
            Err(EnvelopeError::Checksum { expected: self.checksum, found })
        }
    }

    /// The consumer id part of the claim token, if claimed.
    pub fn claimer(&self) -> Option<&str> {
        if self.claim.is_empty() {
            None
        } else {
            Some(self.claim.split('/').next().unwrap_or(&self.claim))
        }
    }

    pub fn with_claim(&self, claim: &str) -> Self {
        Self { claim: claim.to_owned(), ..self.clone() }
    }

    pub fn has_flag(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

fn truncated(text: &str) -> &[u8] {
    let bytes = text.as_bytes();
    &bytes[..bytes.len().min(MAX_FIELD)]
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.data.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }
    fn array(&mut self) -> Option<[u8; 4]> {
        self.take(4).map(|b| [b[0], b[1], b[2], b[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let mut envelope = Envelope::new(MessageId::generate(), b"hello");
        envelope.claim = "c1/n".into();
        envelope.source = "message-0000000001".into();
        envelope.flags = FLAG_FROM_PARTIAL;
        let decoded = Envelope::decode(&envelope.encode()).unwrap();
        assert_eq!(decoded, envelope);
        assert_eq!(decoded.claimer(), Some("c1"));
        decoded.verify().unwrap();
    }

    #[test]
    fn garbage_and_truncation_are_refused() {
        assert_eq!(Envelope::decode(b""), Err(EnvelopeError::NotAMessage));
        assert_eq!(Envelope::decode(b"hello world"), Err(EnvelopeError::NotAMessage));
        let data = Envelope::new(MessageId::generate(), b"hello").encode();
        assert!(matches!(
            Envelope::decode(&data[..data.len() - 1]),
            Err(EnvelopeError::Truncated(_))
        ));
    }

    #[test]
    fn a_flipped_payload_bit_fails_verification() {
        let mut data = Envelope::new(MessageId::generate(), b"hello").encode();
        let last = data.len() - 1;
        data[last] ^= 1;
        assert!(matches!(
            Envelope::decode(&data).unwrap().verify(),
            Err(EnvelopeError::Checksum { .. })
        ));
    }

    #[test]
    fn the_largest_payload_fits_the_znode_limit() {
        let envelope = Envelope {
            claim: "c".repeat(300),
            source: "s".repeat(300),
            ..Envelope::new(MessageId::generate(), &vec![0; MAX_PAYLOAD])
        };
        assert!(envelope.encode().len() <= ZNODE_DATA_LIMIT);
    }
}
