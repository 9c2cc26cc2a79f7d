//! The identity record in two slots (A/B): a save erases and writes the slot that does not hold
//! the current record, so a torn save leaves the previous identity readable.

use embedded_storage::nor_flash::NorFlash;

use super::flash::{crc_of, read_exact, read_header, read_trailer, write_padded, Writer};
use super::format::{
    decode_ident, decode_ident_payload, encode_ident, encode_ident_prefix, encode_trailer,
    trailer_ok, Decoded, Geometry, IdentHeader, PayloadError, IDENTITY_OVERHEAD,
};
use super::{OpenReport, StoreError, StoredIdentity};

/// Which slot holds the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    None,
    Valid { slot: u32, len: u32 },
    UnknownVersion { slot: u32, version: u8 },
}

/// The identity slots' state in RAM.
#[derive(Debug)]
pub(crate) struct Ident {
    base: u32,
    slot_len: u32,
    geo: Geometry,
    current: Current,
    next_seq: u32,
}

type Res<T, F> = Result<T, StoreError<<F as embedded_storage::nor_flash::ErrorType>::Error>>;

impl Ident {
    /// Largest payload a slot of `slot_len` bytes holds.
    fn max_payload(geo: Geometry, slot_len: u32) -> u32 {
        slot_len.saturating_sub(geo.hdr()).saturating_sub(geo.trl()) & !(geo.g - 1)
    }

    /// Whether a slot of this size can hold at least an identity without key and certificate.
    pub(crate) fn slot_ok(geo: Geometry, slot_len: u32) -> bool {
        Self::max_payload(geo, slot_len) >= IDENTITY_OVERHEAD as u32
    }

    fn slot_addr(&self, slot: u32) -> u32 {
        self.base.wrapping_add(slot.wrapping_mul(self.slot_len))
    }

    /// Validate both slots and pick the newest complete one.
    pub(crate) fn open<F: NorFlash>(
        flash: &mut F,
        geo: Geometry,
        base: u32,
        slot_len: u32,
        report: &mut OpenReport,
    ) -> Res<Self, F> {
        let mut me = Self {
            base,
            slot_len,
            geo,
            current: Current::None,
            next_seq: 1,
        };
        let mut best: Option<u32> = None;
        for slot in 0..2u32 {
            let at = me.slot_addr(slot);
            let raw = read_header(flash, geo, at).map_err(StoreError::Flash)?;
            let (seq, found) = match decode_ident(&raw) {
                Decoded::Erased => continue,
                Decoded::Invalid => {
                    report.torn_identity_slots = report.torn_identity_slots.saturating_add(1);
                    continue;
                }
                Decoded::UnknownVersion(version) => (
                    super::format::raw_seq(&raw),
                    Current::UnknownVersion { slot, version },
                ),
                Decoded::Valid(h) => {
                    if !me.payload_ok(flash, slot, h)? {
                        report.torn_identity_slots = report.torn_identity_slots.saturating_add(1);
                        continue;
                    }
                    (h.seq, Current::Valid { slot, len: h.len })
                }
            };
            if best.is_none_or(|b| seq > b) {
                best = Some(seq);
                me.current = found;
            }
        }
        me.next_seq = best.map_or(1, |s| s.saturating_add(1));
        Ok(me)
    }

    fn payload_ok<F: NorFlash>(&self, flash: &mut F, slot: u32, h: IdentHeader) -> Res<bool, F> {
        if h.len > Self::max_payload(self.geo, self.slot_len) {
            return Ok(false);
        }
        let data = self.slot_addr(slot) + self.geo.hdr();
        let crc = crc_of(flash, self.geo, data, h.len).map_err(StoreError::Flash)?;
        let trl = read_trailer(flash, self.geo, data + self.geo.align(h.len).unwrap_or(0))
            .map_err(StoreError::Flash)?;
        Ok(trailer_ok(&trl, crc))
    }

    /// Whether a complete identity record of a known version exists.
    pub(crate) fn exists(&self) -> bool {
        matches!(self.current, Current::Valid { .. })
    }

    /// Read the current identity into `buf`.
    pub(crate) fn load<'b, F: NorFlash>(
        &self,
        flash: &mut F,
        buf: &'b mut [u8],
    ) -> Res<Option<StoredIdentity<'b>>, F> {
        let (slot, len) = match self.current {
            Current::None => return Ok(None),
            Current::UnknownVersion { version, .. } => {
                return Err(StoreError::UnknownVersion(version))
            }
            Current::Valid { slot, len } => (slot, len),
        };
        let data = self.slot_addr(slot) + self.geo.hdr();
        let payload = buf
            .get_mut(..len as usize)
            .ok_or(StoreError::BufferTooSmall)?;
        read_exact(flash, self.geo, data, payload).map_err(StoreError::Flash)?;
        let crc = super::crc::crc32(payload);
        let trl = read_trailer(flash, self.geo, data + self.geo.align(len).unwrap_or(0))
            .map_err(StoreError::Flash)?;
        if !trailer_ok(&trl, crc) {
            return Err(StoreError::Corrupt);
        }
        let payload: &'b [u8] = payload;
        let (registration, key, cert_der) = decode_ident_payload(payload).map_err(|e| match e {
            PayloadError::UnknownVersion(v) => StoreError::UnknownVersion(v),
            PayloadError::Malformed => StoreError::Corrupt,
        })?;
        Ok(Some(StoredIdentity {
            key,
            cert_der,
            registration,
        }))
    }

    /// Write `id` into the slot not holding the current record; it becomes current only once
    /// its trailer is written.
    pub(crate) fn save<F: NorFlash>(
        &mut self,
        flash: &mut F,
        id: &StoredIdentity<'_>,
    ) -> Res<(), F> {
        let key_len = u16::try_from(id.key.len()).map_err(|_| StoreError::IdentityTooLarge)?;
        let cert_len =
            u16::try_from(id.cert_der.len()).map_err(|_| StoreError::IdentityTooLarge)?;
        let len = IDENTITY_OVERHEAD as u32 + u32::from(key_len) + u32::from(cert_len);
        if len > Self::max_payload(self.geo, self.slot_len) {
            return Err(StoreError::IdentityTooLarge);
        }
        let target = match self.current {
            Current::Valid { slot, .. } | Current::UnknownVersion { slot, .. } => 1 - slot,
            Current::None => 0,
        };
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(StoreError::Exhausted)?;
        let at = self.slot_addr(target);
        let e = self.geo.e;
        let mut off = 0u32;
        while off < self.slot_len {
            flash
                .erase(at + off, at + off + e)
                .map_err(StoreError::Flash)?;
            off += e;
        }
        write_padded(flash, self.geo, at, &encode_ident(IdentHeader { seq, len }))
            .map_err(StoreError::Flash)?;
        let mut stage = [0u8; 64];
        let mut w = Writer::new(self.geo, &mut stage).ok_or(StoreError::Layout)?;
        let data = at + self.geo.hdr();
        w.restart(data);
        let prefix = encode_ident_prefix(id.registration, key_len);
        let cert_len_le = cert_len.to_le_bytes();
        for part in [&prefix[..], id.key, &cert_len_le[..], id.cert_der] {
            w.push(flash, part).map_err(StoreError::Flash)?;
        }
        let crc = w.finish(flash).map_err(StoreError::Flash)?;
        let trailer_at = data + self.geo.align(len).unwrap_or(0);
        write_padded(flash, self.geo, trailer_at, &encode_trailer(crc))
            .map_err(StoreError::Flash)?;
        self.current = Current::Valid { slot: target, len };
        Ok(())
    }
}
