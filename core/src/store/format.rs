//! The on-flash record format: pure encoders and decoders of fixed-size headers (no IO). Every
//! multi-byte field is little-endian. See the module doc of [`crate::store`] for the layout.

use super::crc::crc32;
use super::{Endpoint, MessageMeta};
use crate::agent::registration::RegistrationState;
use crate::guid::{Guid, Smsid};
use crate::time::UnixTime;
use crate::wire::header::ReplyMode;

/// The format version written in page and identity headers.
pub const FORMAT_VERSION: u8 = 1;
/// The version of the queued-message metadata block.
pub const META_VERSION: u8 = 1;

/// `MPQP`: a queue page header.
pub(crate) const PAGE_MAGIC: u32 = u32::from_le_bytes(*b"MPQP");
/// `MPID`: an identity record header.
pub(crate) const IDENT_MAGIC: u32 = u32::from_le_bytes(*b"MPID");
/// `QF`: a queue fragment header.
pub(crate) const FRAG_MAGIC: u16 = u16::from_le_bytes(*b"QF");
/// `DONE`: the commit marker closing a fragment or an identity record.
pub(crate) const COMMIT_MAGIC: u32 = u32::from_le_bytes(*b"DONE");

/// Bytes of every header (page, fragment, identity) before alignment: 16 of fields + CRC-32.
pub(crate) const HEADER_LEN: usize = 20;
/// Bytes of a trailer before alignment: CRC-32 of the data + commit marker.
pub(crate) const TRAILER_LEN: usize = 8;
/// Bytes of the queued-message metadata at the start of a record.
pub const META_LEN: usize = 48;
/// Largest supported read/write granule (`max(READ_SIZE, WRITE_SIZE, 4)`).
pub const MAX_GRANULE: usize = 32;

/// Fragment flag: the record's first fragment (carries the pop word and the metadata).
pub(crate) const FLAG_FIRST: u8 = 1;
/// Fragment flag: the record's last fragment.
pub(crate) const FLAG_LAST: u8 = 2;

/// Identity payload bytes besides key and certificate: state tag, SMSID, two lengths.
pub const IDENTITY_OVERHEAD: usize = 1 + 16 + 2 + 2;

/// What a fixed-size header slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded<T> {
    /// All 0xFF: nothing was ever written here.
    Erased,
    /// Written but not a valid header (torn write, bit rot, foreign data).
    Invalid,
    /// A valid header of a format this code does not know.
    UnknownVersion(u8),
    /// A valid header.
    Valid(T),
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at + v.len()) {
        d.copy_from_slice(v);
    }
}

fn guid_at(b: &[u8], at: usize) -> Guid {
    let mut g = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        g.copy_from_slice(s);
    }
    Guid(g)
}

fn is_erased(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0xFF)
}

/// Seal a header: CRC-32 of bytes 0..16 into 16..20.
fn seal(mut h: [u8; HEADER_LEN]) -> [u8; HEADER_LEN] {
    let c = crc32(h.get(..16).unwrap_or(&[]));
    put(&mut h, 16, &c.to_le_bytes());
    h
}

fn sealed_ok(h: &[u8; HEADER_LEN]) -> bool {
    crc32(h.get(..16).unwrap_or(&[])) == le32(h, 16)
}

/// Flash geometry as the format uses it: granule `g` (every record and field offset is a multiple
/// of it) and page (erase block) size `e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) g: u32,
    pub(crate) e: u32,
}

impl Geometry {
    /// The geometry for a flash with these sizes, if supported.
    pub(crate) fn new(read_size: usize, write_size: usize, erase_size: usize) -> Option<Self> {
        let g = read_size.max(write_size).max(4);
        if !g.is_power_of_two()
            || g > MAX_GRANULE
            || erase_size == 0
            || !erase_size.is_multiple_of(g)
        {
            return None;
        }
        let geo = Self {
            g: u32::try_from(g).ok()?,
            e: u32::try_from(erase_size).ok()?,
        };
        // A fresh page must hold a first fragment with the whole metadata block.
        if geo.frag_cap(geo.data_start(), true) < META_LEN as u32 {
            return None;
        }
        Some(geo)
    }

    /// `n` rounded up to the granule.
    pub(crate) fn align(&self, n: u32) -> Option<u32> {
        let m = self.g - 1;
        n.checked_add(m).map(|v| v & !m)
    }

    /// Aligned size of a header.
    pub(crate) fn hdr(&self) -> u32 {
        self.align(HEADER_LEN as u32).unwrap_or(u32::MAX)
    }

    /// Aligned size of a trailer.
    pub(crate) fn trl(&self) -> u32 {
        self.align(TRAILER_LEN as u32).unwrap_or(u32::MAX)
    }

    /// Offset of the first fragment in a page (after the page header).
    pub(crate) fn data_start(&self) -> u32 {
        self.hdr()
    }

    /// Offset of a fragment's data from the fragment's start.
    pub(crate) fn frag_data_off(&self, first: bool) -> u32 {
        self.hdr().saturating_add(if first { self.g } else { 0 })
    }

    /// Total bytes a fragment with `len` data bytes occupies.
    pub(crate) fn frag_extent(&self, first: bool, len: u32) -> Option<u32> {
        self.frag_data_off(first)
            .checked_add(self.align(len)?)?
            .checked_add(self.trl())
    }

    /// Most data bytes a fragment starting at page offset `off` can hold (0 if none).
    pub(crate) fn frag_cap(&self, off: u32, first: bool) -> u32 {
        self.e
            .saturating_sub(off)
            .saturating_sub(self.frag_data_off(first))
            .saturating_sub(self.trl())
            & !(self.g - 1)
    }
}

/// A queue page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageHeader {
    /// Increases by one for every page the queue opens.
    pub(crate) page_seq: u32,
    /// The next record sequence number when the page was opened.
    pub(crate) seq_base: u32,
}

pub(crate) fn encode_page(h: PageHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    put(&mut b, 0, &PAGE_MAGIC.to_le_bytes());
    put(&mut b, 4, &[FORMAT_VERSION]);
    put(&mut b, 8, &h.page_seq.to_le_bytes());
    put(&mut b, 12, &h.seq_base.to_le_bytes());
    seal(b)
}

pub(crate) fn decode_page(b: &[u8; HEADER_LEN]) -> Decoded<PageHeader> {
    if is_erased(b) {
        return Decoded::Erased;
    }
    if le32(b, 0) != PAGE_MAGIC || !sealed_ok(b) {
        return Decoded::Invalid;
    }
    let version = b.get(4).copied().unwrap_or(0);
    if version != FORMAT_VERSION {
        return Decoded::UnknownVersion(version);
    }
    Decoded::Valid(PageHeader {
        page_seq: le32(b, 8),
        seq_base: le32(b, 12),
    })
}

/// A queue fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FragHeader {
    /// [`FLAG_FIRST`] | [`FLAG_LAST`].
    pub(crate) flags: u8,
    /// The record's sequence number.
    pub(crate) seq: u32,
    /// 0 for the first fragment, then 1, 2, …
    pub(crate) index: u32,
    /// Data bytes in this fragment.
    pub(crate) len: u32,
}

impl FragHeader {
    pub(crate) fn first(&self) -> bool {
        self.flags & FLAG_FIRST != 0
    }
    pub(crate) fn last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }
}

pub(crate) fn encode_frag(h: FragHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    put(&mut b, 0, &FRAG_MAGIC.to_le_bytes());
    put(&mut b, 2, &[h.flags]);
    put(&mut b, 4, &h.seq.to_le_bytes());
    put(&mut b, 8, &h.index.to_le_bytes());
    put(&mut b, 12, &h.len.to_le_bytes());
    seal(b)
}

/// Decode a fragment header; structurally impossible headers (unknown flags, a first fragment
/// that is not index 0 or too short for the metadata, an empty fragment) are `Invalid`.
pub(crate) fn decode_frag(b: &[u8; HEADER_LEN]) -> Decoded<FragHeader> {
    if is_erased(b) {
        return Decoded::Erased;
    }
    let magic = b
        .get(0..2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_le_bytes);
    if magic != FRAG_MAGIC || !sealed_ok(b) {
        return Decoded::Invalid;
    }
    let h = FragHeader {
        flags: b.get(2).copied().unwrap_or(0xFF),
        seq: le32(b, 4),
        index: le32(b, 8),
        len: le32(b, 12),
    };
    let shape_ok = h.flags & !(FLAG_FIRST | FLAG_LAST) == 0
        && b.get(3) == Some(&0)
        && h.first() == (h.index == 0)
        && h.len > 0
        && (!h.first() || h.len >= META_LEN as u32);
    if !shape_ok {
        return Decoded::Invalid;
    }
    Decoded::Valid(h)
}

pub(crate) fn encode_trailer(data_crc: u32) -> [u8; TRAILER_LEN] {
    let mut b = [0u8; TRAILER_LEN];
    put(&mut b, 0, &data_crc.to_le_bytes());
    put(&mut b, 4, &COMMIT_MAGIC.to_le_bytes());
    b
}

/// Whether a trailer commits data with CRC `data_crc`.
pub(crate) fn trailer_ok(b: &[u8; TRAILER_LEN], data_crc: u32) -> bool {
    le32(b, 0) == data_crc && le32(b, 4) == COMMIT_MAGIC
}

/// An identity record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdentHeader {
    /// Increases by one per save; the valid slot with the highest wins.
    pub(crate) seq: u32,
    /// Payload bytes.
    pub(crate) len: u32,
}

pub(crate) fn encode_ident(h: IdentHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    put(&mut b, 0, &IDENT_MAGIC.to_le_bytes());
    put(&mut b, 4, &[FORMAT_VERSION]);
    put(&mut b, 8, &h.seq.to_le_bytes());
    put(&mut b, 12, &h.len.to_le_bytes());
    seal(b)
}

pub(crate) fn decode_ident(b: &[u8; HEADER_LEN]) -> Decoded<IdentHeader> {
    if is_erased(b) {
        return Decoded::Erased;
    }
    if le32(b, 0) != IDENT_MAGIC || !sealed_ok(b) {
        return Decoded::Invalid;
    }
    let version = b.get(4).copied().unwrap_or(0);
    if version != FORMAT_VERSION {
        return Decoded::UnknownVersion(version);
    }
    Decoded::Valid(IdentHeader {
        seq: le32(b, 8),
        len: le32(b, 12),
    })
}

/// Why a metadata block or an identity payload did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayloadError {
    /// A version byte this code does not know.
    UnknownVersion(u8),
    /// A field holds an impossible value.
    Malformed,
}

fn encode_state(s: RegistrationState) -> (u8, Guid) {
    match s {
        RegistrationState::Unregistered => (0, Guid::default()),
        RegistrationState::Pending(id) => (1, id.0),
        RegistrationState::Registered(id) => (2, id.0),
        // The rejection's time in the (otherwise unused) SMSID slot; older records hold zeros,
        // which read back as "rejected long ago" (asked again at once).
        RegistrationState::Rejected(at) => {
            let mut g = [0u8; 16];
            if let Some(head) = g.get_mut(..8) {
                head.copy_from_slice(&at.0.to_le_bytes());
            }
            (3, Guid(g))
        }
    }
}

fn decode_state(tag: u8, g: Guid) -> Option<RegistrationState> {
    Some(match tag {
        0 => RegistrationState::Unregistered,
        1 => RegistrationState::Pending(Smsid(g)),
        2 => RegistrationState::Registered(Smsid(g)),
        3 => {
            let mut t = [0u8; 8];
            t.copy_from_slice(g.0.get(..8)?);
            RegistrationState::Rejected(UnixTime(u64::from_le_bytes(t)))
        }
        _ => return None,
    })
}

/// The metadata block of a queued message.
pub(crate) fn encode_meta(m: &MessageMeta, body_len: u32) -> [u8; META_LEN] {
    let mut b = [0u8; META_LEN];
    let reply = match m.reply_mode {
        ReplyMode::Sync => 0u8,
        ReplyMode::Async => 1u8,
    };
    let flags = u8::from(m.source_id.is_some());
    put(&mut b, 0, &[META_VERSION, m.endpoint.code(), reply, flags]);
    put(&mut b, 4, &m.message_id.0);
    put(&mut b, 20, &m.sent_time.0.to_le_bytes());
    if let Some(id) = m.source_id {
        put(&mut b, 28, &(id.0).0);
    }
    put(&mut b, 44, &body_len.to_le_bytes());
    b
}

/// Decode a metadata block: the message's header fields and its body length.
pub(crate) fn decode_meta(b: &[u8; META_LEN]) -> Result<(MessageMeta, u32), PayloadError> {
    let version = b.first().copied().unwrap_or(0);
    if version != META_VERSION {
        return Err(PayloadError::UnknownVersion(version));
    }
    let endpoint = b
        .get(1)
        .copied()
        .and_then(Endpoint::from_code)
        .ok_or(PayloadError::Malformed)?;
    let reply_mode = match b.get(2) {
        Some(0) => ReplyMode::Sync,
        Some(1) => ReplyMode::Async,
        _ => return Err(PayloadError::Malformed),
    };
    let source_id = match b.get(3) {
        Some(0) => None,
        Some(1) => Some(Smsid(guid_at(b, 28))),
        _ => return Err(PayloadError::Malformed),
    };
    let meta = MessageMeta {
        message_id: guid_at(b, 4),
        endpoint,
        reply_mode,
        sent_time: UnixTime(le64(b, 20)),
        source_id,
    };
    Ok((meta, le32(b, 44)))
}

/// The fixed part of an identity payload, before key and certificate.
pub(crate) fn encode_ident_prefix(state: RegistrationState, key_len: u16) -> [u8; 19] {
    let (tag, g) = encode_state(state);
    let mut b = [0u8; 19];
    put(&mut b, 0, &[tag]);
    put(&mut b, 1, &g.0);
    put(&mut b, 17, &key_len.to_le_bytes());
    b
}

/// Split a whole identity payload into (state, key, certificate).
pub(crate) fn decode_ident_payload(
    p: &[u8],
) -> Result<(RegistrationState, &[u8], &[u8]), PayloadError> {
    let tag = *p.first().ok_or(PayloadError::Malformed)?;
    let state = decode_state(tag, guid_at(p, 1)).ok_or(PayloadError::Malformed)?;
    let u16_at = |at: usize| -> Option<usize> {
        p.get(at..at + 2)
            .and_then(|s| <[u8; 2]>::try_from(s).ok())
            .map(|a| usize::from(u16::from_le_bytes(a)))
    };
    let key_len = u16_at(17).ok_or(PayloadError::Malformed)?;
    let key_end = 19usize
        .checked_add(key_len)
        .ok_or(PayloadError::Malformed)?;
    let key = p.get(19..key_end).ok_or(PayloadError::Malformed)?;
    let cert_len = u16_at(key_end).ok_or(PayloadError::Malformed)?;
    let cert_start = key_end + 2;
    let cert_end = cert_start
        .checked_add(cert_len)
        .ok_or(PayloadError::Malformed)?;
    if cert_end != p.len() {
        return Err(PayloadError::Malformed);
    }
    let cert = p.get(cert_start..cert_end).ok_or(PayloadError::Malformed)?;
    Ok((state, key, cert))
}

/// The sequence number field of an identity header, whatever its version (bytes 8..12 keep
/// this meaning in every version).
pub(crate) fn raw_seq(b: &[u8; HEADER_LEN]) -> u32 {
    le32(b, 8)
}
