//! The persisted records and their format: a tiny framed record with a length and a CRC, so that
//! a torn or truncated write is detected instead of being read as a different identity.
//!
//! ```text
//! record   = magic "MPAG" | version u8 (1) | kind u8 | payload length u16 LE | payload | crc32 LE
//! crc32    = CRC-32/IEEE (zlib's) over everything before it
//! identity = secret scalar [32] | state u8 | SMSID GUID [16] | certificate DER (the rest)
//!            state: 0 unregistered, 1 pending, 2 registered, 3 rejected (GUID zero unless 1 or 2;
//!            for 3 its first 8 bytes are the rejection's Unix time, u64 LE)
//! seed     = 32 bytes, the RNG seed for the next boot
//! ```
//!
//! Writers replace a record as a whole: write a temporary file, then rename it over the old one
//! (see `storage.rs`), so a crash leaves the old record or the new one. The CRC is the second line
//! of defence, for media that tear anyway. Pure `core` code: the host tests include this file.

use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::identity::MAX_CERT_LEN;
use mpagent_core::time::UnixTime;

const MAGIC: [u8; 4] = *b"MPAG";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8;
const CRC_LEN: usize = 4;

/// Record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Key, certificate and registration state.
    Identity = 1,
    /// The RNG seed file.
    Seed = 2,
}

/// A record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum RecordError {
    /// Shorter than its header, or shorter than the length it declares (a torn write).
    Truncated,
    /// Not a record of ours, or of another version or kind.
    BadHeader,
    /// The CRC does not match (a torn or corrupted write).
    BadCrc,
    /// Framing is intact but the payload is not a valid record of its kind.
    BadPayload,
    /// The output buffer is too small for the record.
    BufferTooSmall,
}

/// CRC-32/IEEE (reflected, polynomial 0xEDB88320), bitwise: small and fast enough for a few
/// hundred bytes per boot.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Frame `payload` as a record of `kind` into `out`; returns the record's length.
pub fn encode(kind: Kind, payload: &[u8], out: &mut [u8]) -> Result<usize, RecordError> {
    out.get_mut(HEADER_LEN..HEADER_LEN + payload.len())
        .ok_or(RecordError::BufferTooSmall)?
        .copy_from_slice(payload);
    seal(kind, payload.len(), out)
}

/// Frame the `payload_len` bytes already written at `out[8..]` (no second buffer needed).
fn seal(kind: Kind, payload_len: usize, out: &mut [u8]) -> Result<usize, RecordError> {
    let len = u16::try_from(payload_len).map_err(|_| RecordError::BufferTooSmall)?;
    let end = HEADER_LEN + payload_len;
    let out = out
        .get_mut(..end + CRC_LEN)
        .ok_or(RecordError::BufferTooSmall)?;
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = kind as u8;
    out[6..8].copy_from_slice(&len.to_le_bytes());
    let sum = crc32(&out[..end]);
    out[end..].copy_from_slice(&sum.to_le_bytes());
    Ok(end + CRC_LEN)
}

/// Check a record of `kind` and return its payload.
pub fn decode(kind: Kind, bytes: &[u8]) -> Result<&[u8], RecordError> {
    let head = bytes.get(..HEADER_LEN).ok_or(RecordError::Truncated)?;
    if head[..4] != MAGIC || head[4] != VERSION || head[5] != kind as u8 {
        return Err(RecordError::BadHeader);
    }
    let len = usize::from(u16::from_le_bytes([head[6], head[7]]));
    let end = HEADER_LEN + len;
    let stored = bytes
        .get(end..end + CRC_LEN)
        .ok_or(RecordError::Truncated)?;
    if bytes.len() != end + CRC_LEN {
        return Err(RecordError::BadHeader);
    }
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    if crc32(&bytes[..end]) != stored {
        return Err(RecordError::BadCrc);
    }
    Ok(&bytes[HEADER_LEN..end])
}

/// Longest identity payload.
pub const MAX_IDENTITY_PAYLOAD: usize = 32 + 1 + 16 + MAX_CERT_LEN;
/// Longest identity record.
pub const MAX_IDENTITY_RECORD: usize = HEADER_LEN + MAX_IDENTITY_PAYLOAD + CRC_LEN;
/// Length of a seed record.
pub const SEED_RECORD_LEN: usize = HEADER_LEN + 32 + CRC_LEN;

/// The device's persistent identity, borrowed from a decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityRecord<'a> {
    /// P-256 secret scalar, big-endian.
    pub secret: [u8; 32],
    /// Where the device stands with the site.
    pub state: RegistrationState,
    /// The self-signed certificate (DER).
    pub cert_der: &'a [u8],
}

impl<'a> IdentityRecord<'a> {
    /// Encode as a full record into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, RecordError> {
        let len = 49 + self.cert_der.len();
        if self.cert_der.len() > MAX_CERT_LEN {
            return Err(RecordError::BufferTooSmall);
        }
        let payload = out
            .get_mut(HEADER_LEN..HEADER_LEN + len)
            .ok_or(RecordError::BufferTooSmall)?;
        let (tag, guid) = match self.state {
            RegistrationState::Unregistered => (0, Guid::default()),
            RegistrationState::Pending(id) => (1, id.0),
            RegistrationState::Registered(id) => (2, id.0),
            RegistrationState::Rejected(at) => {
                let mut g = [0u8; 16];
                g[..8].copy_from_slice(&at.0.to_le_bytes());
                (3, Guid(g))
            }
        };
        payload[..32].copy_from_slice(&self.secret);
        payload[32] = tag;
        payload[33..49].copy_from_slice(&guid.0);
        payload[49..].copy_from_slice(self.cert_der);
        seal(Kind::Identity, len, out)
    }

    /// Decode a full record.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, RecordError> {
        let payload = decode(Kind::Identity, bytes)?;
        if payload.len() <= 49 || payload.len() > MAX_IDENTITY_PAYLOAD {
            return Err(RecordError::BadPayload);
        }
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&payload[..32]);
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&payload[33..49]);
        let smsid = Smsid(Guid(guid));
        let state = match payload[32] {
            0 => RegistrationState::Unregistered,
            1 => RegistrationState::Pending(smsid),
            2 => RegistrationState::Registered(smsid),
            3 => {
                let mut at = [0u8; 8];
                at.copy_from_slice(&guid[..8]);
                RegistrationState::Rejected(UnixTime(u64::from_le_bytes(at)))
            }
            _ => return Err(RecordError::BadPayload),
        };
        Ok(Self {
            secret,
            state,
            cert_der: &payload[49..],
        })
    }
}
