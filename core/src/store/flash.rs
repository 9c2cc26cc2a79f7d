//! Aligned reads and buffered aligned writes over a blocking `NorFlash`.

use embedded_storage::nor_flash::NorFlash;

use super::crc::Crc32;
use super::format::{Geometry, HEADER_LEN, MAX_GRANULE, TRAILER_LEN};

/// Bytes read per flash call when streaming data (a multiple of every supported granule).
pub(crate) const CHUNK: usize = 128;

/// Read `out.len()` bytes at the granule-aligned `addr`. The part past the last whole granule is
/// read through a one-granule bounce buffer (the format pads every field to the granule, so the
/// padding is always inside the same record).
pub(crate) fn read_exact<F: NorFlash>(
    flash: &mut F,
    geo: Geometry,
    addr: u32,
    out: &mut [u8],
) -> Result<(), F::Error> {
    let g = geo.g as usize;
    let whole = out.len() & !(g - 1);
    let Some((body, tail)) = out.split_at_mut_checked(whole) else {
        return Ok(());
    };
    if !body.is_empty() {
        flash.read(addr, body)?;
    }
    if !tail.is_empty() {
        let mut bounce = [0u8; MAX_GRANULE];
        if let Some(b) = bounce.get_mut(..g) {
            flash.read(addr.wrapping_add(whole as u32), b)?;
        }
        if let Some(src) = bounce.get(..tail.len()) {
            tail.copy_from_slice(src);
        }
    }
    Ok(())
}

/// Read a header at `addr`.
pub(crate) fn read_header<F: NorFlash>(
    flash: &mut F,
    geo: Geometry,
    addr: u32,
) -> Result<[u8; HEADER_LEN], F::Error> {
    let mut h = [0u8; HEADER_LEN];
    read_exact(flash, geo, addr, &mut h)?;
    Ok(h)
}

/// Read a trailer at `addr`.
pub(crate) fn read_trailer<F: NorFlash>(
    flash: &mut F,
    geo: Geometry,
    addr: u32,
) -> Result<[u8; TRAILER_LEN], F::Error> {
    let mut t = [0u8; TRAILER_LEN];
    read_exact(flash, geo, addr, &mut t)?;
    Ok(t)
}

/// CRC-32 of `len` bytes at `addr`.
pub(crate) fn crc_of<F: NorFlash>(
    flash: &mut F,
    geo: Geometry,
    addr: u32,
    len: u32,
) -> Result<u32, F::Error> {
    let mut crc = Crc32::new();
    let mut buf = [0u8; CHUNK];
    let mut done = 0u32;
    while done < len {
        let n = (len - done).min(CHUNK as u32) as usize;
        let part = buf.get_mut(..n).unwrap_or(&mut []);
        read_exact(flash, geo, addr.wrapping_add(done), part)?;
        crc.update(part);
        done += n as u32;
    }
    Ok(crc.finish())
}

/// Write a fixed block (header, trailer, pop word) padded with 0xFF to the granule.
pub(crate) fn write_padded<F: NorFlash>(
    flash: &mut F,
    geo: Geometry,
    addr: u32,
    bytes: &[u8],
) -> Result<(), F::Error> {
    let mut buf = [0xFFu8; 2 * MAX_GRANULE];
    let n = geo.align(bytes.len() as u32).unwrap_or(0) as usize;
    if let Some(d) = buf.get_mut(..bytes.len()) {
        d.copy_from_slice(bytes);
    }
    match buf.get(..n) {
        Some(b) => flash.write(addr, b),
        None => Ok(()),
    }
}

/// Streams bytes to flash through a caller buffer: writes happen in whole buffers (a multiple of
/// the granule) and, at [`Writer::finish`], one last write padded with 0xFF to the granule.
/// Every flash word is written once.
pub(crate) struct Writer<'b> {
    addr: u32,
    buf: &'b mut [u8],
    fill: usize,
    geo: Geometry,
    crc: Crc32,
}

impl<'b> Writer<'b> {
    /// A writer staging through `buf` (its length rounded down to the granule; `None` if that is 0).
    pub(crate) fn new(geo: Geometry, buf: &'b mut [u8]) -> Option<Self> {
        let usable = buf.len() & !(geo.g as usize - 1);
        if usable == 0 {
            return None;
        }
        let buf = buf.get_mut(..usable)?;
        Some(Self {
            addr: 0,
            buf,
            fill: 0,
            geo,
            crc: Crc32::new(),
        })
    }

    /// Start a new run of data at `addr` (granule-aligned).
    pub(crate) fn restart(&mut self, addr: u32) {
        self.addr = addr;
        self.fill = 0;
        self.crc = Crc32::new();
    }

    /// Append `bytes`.
    pub(crate) fn push<F: NorFlash>(
        &mut self,
        flash: &mut F,
        bytes: &[u8],
    ) -> Result<(), F::Error> {
        self.crc.update(bytes);
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = self.buf.len().saturating_sub(self.fill);
            let n = room.min(rest.len());
            let (now, later) = rest.split_at(n);
            if let Some(d) = self.buf.get_mut(self.fill..self.fill + n) {
                d.copy_from_slice(now);
            }
            self.fill += n;
            rest = later;
            if self.fill >= self.buf.len() {
                self.flush(flash)?;
            }
        }
        Ok(())
    }

    fn flush<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), F::Error> {
        if self.fill == 0 {
            return Ok(());
        }
        let padded = self.geo.align(self.fill as u32).unwrap_or(0) as usize;
        if let Some(pad) = self.buf.get_mut(self.fill..padded) {
            pad.fill(0xFF);
        }
        let chunk = self.buf.get(..padded).unwrap_or(&[]);
        self.fill = 0;
        flash.write(self.addr, chunk)?;
        self.addr = self.addr.wrapping_add(padded as u32);
        Ok(())
    }

    /// Write what is staged (padded to the granule) and give the CRC-32 of everything pushed.
    pub(crate) fn finish<F: NorFlash>(&mut self, flash: &mut F) -> Result<u32, F::Error> {
        self.flush(flash)?;
        Ok(self.crc.finish())
    }
}
