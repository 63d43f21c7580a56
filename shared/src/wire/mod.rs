//! The hub ⇄ agent wire contract: MQTT topic names and the versioned CBOR envelope around every
//! payload (desired snapshot, status, heartbeat, presence, events, log streaming).
//!
//! An envelope is the CBOR array `[version, kind, body]`. Decoders check the size cap before
//! parsing and the version and kind from the first bytes, so an oversized payload or one from
//! an unknown protocol version is rejected with a typed error before any allocation happens.

mod messages;
pub mod reconnect;
pub mod topics;

pub use messages::*;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The only envelope version this build speaks.
pub const WIRE_VERSION: u8 = 1;

/// Default cap on an encoded payload (a desired snapshot with every pod of a busy node and its
/// configuration data fits comfortably).
pub const DEFAULT_MAX_PAYLOAD: usize = 4 << 20;

/// What an envelope carries. The numeric codes are part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    Desired = 1,
    Status = 2,
    Heartbeat = 3,
    Presence = 4,
    Events = 5,
    LogRequest = 6,
    LogChunk = 7,
}

impl MessageKind {
    pub fn from_code(c: u8) -> Option<Self> {
        use MessageKind::*;
        [Desired, Status, Heartbeat, Presence, Events, LogRequest, LogChunk]
            .into_iter()
            .find(|k| *k as u8 == c)
    }
}

/// A wire payload type and its kind code.
pub trait Message: Serialize + DeserializeOwned {
    const KIND: MessageKind;
}

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {size} bytes exceeds the {limit}-byte cap")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is not a flotilla envelope (expected a CBOR array [version, kind, body])")]
    NotAnEnvelope,
    #[error("unsupported envelope version {0} (this build speaks version {WIRE_VERSION})")]
    UnsupportedVersion(u64),
    #[error("expected a {expected:?} message, got kind code {got}")]
    WrongKind { expected: MessageKind, got: u64 },
    #[error("malformed {kind:?} payload: {reason}")]
    Malformed { kind: MessageKind, reason: String },
}

/// Encodes `msg` in a version-1 envelope.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing to a Vec cannot fail, and every wire type serializes (no maps with non-string
    // keys, no unsupported types), so the error arm is unreachable in practice.
    if let Err(e) = ciborium::ser::into_writer(&(WIRE_VERSION, M::KIND as u8, msg), &mut out) {
        panic!("encoding a {:?} message failed: {e}", M::KIND);
    }
    out
}

/// Reads a CBOR unsigned integer at `bytes[*i]` (major type 0), advancing `i`.
fn read_uint(bytes: &[u8], i: &mut usize) -> Option<u64> {
    let b = *bytes.get(*i)?;
    if b >> 5 != 0 {
        return None;
    }
    let info = b & 0x1f;
    *i += 1;
    let n = match info {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    if n == 0 {
        return Some(u64::from(info));
    }
    let raw = bytes.get(*i..*i + n)?;
    *i += n;
    Some(raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Reads the envelope header: version and kind code.
pub fn peek_header(bytes: &[u8]) -> Result<(u64, u64), DecodeError> {
    if bytes.first() != Some(&0x83) {
        return Err(DecodeError::NotAnEnvelope);
    }
    let mut i = 1;
    let version = read_uint(bytes, &mut i).ok_or(DecodeError::NotAnEnvelope)?;
    let kind = read_uint(bytes, &mut i).ok_or(DecodeError::NotAnEnvelope)?;
    Ok((version, kind))
}

/// Decodes an envelope of type `M`, refusing payloads over `max_size` bytes.
pub fn decode<M: Message>(bytes: &[u8], max_size: usize) -> Result<M, DecodeError> {
    if bytes.len() > max_size {
        return Err(DecodeError::TooLarge { size: bytes.len(), limit: max_size });
    }
    let (version, kind) = peek_header(bytes)?;
    if version != u64::from(WIRE_VERSION) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    if kind != M::KIND as u64 {
        return Err(DecodeError::WrongKind { expected: M::KIND, got: kind });
    }
    let mut cursor = std::io::Cursor::new(bytes);
    let (_, _, body): (u8, u8, M) = ciborium::de::from_reader(&mut cursor)
        .map_err(|e| DecodeError::Malformed { kind: M::KIND, reason: e.to_string() })?;
    if cursor.position() != bytes.len() as u64 {
        return Err(DecodeError::Malformed {
            kind: M::KIND,
            reason: format!("{} trailing bytes after the envelope", bytes.len() as u64 - cursor.position()),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
