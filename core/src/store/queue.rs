//! The outbound queue: a log of fragmented records over a ring of flash pages.

use core::cell::{Cell, RefCell};

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};

use super::crc::Crc32;
use super::flash::{crc_of, read_exact, read_header, read_trailer, write_padded, Writer, CHUNK};
use super::format::{
    decode_frag, decode_meta, decode_page, encode_frag, encode_meta, encode_page, encode_trailer,
    trailer_ok, Decoded, FragHeader, Geometry, PageHeader, PayloadError, FLAG_FIRST, FLAG_LAST,
    MAX_GRANULE, META_LEN,
};
use super::{MessageMeta, OpenReport, StoreError};
use crate::sink::{emitted_len, Emit, Overflow, Sink};

/// Where a record's first fragment sits, and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecPos {
    pub(crate) page: u32,
    pub(crate) off: u32,
    pub(crate) seq: u32,
}

/// The pages in use: `oldest ..= newest` in ring order, with consecutive page sequence numbers.
#[derive(Debug, Clone, Copy)]
struct Run {
    oldest: u32,
    newest: u32,
    newest_seq: u32,
}

/// Page arithmetic of the queue region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring {
    pub(crate) base: u32,
    pub(crate) pages: u32,
    pub(crate) geo: Geometry,
}

impl Ring {
    pub(crate) fn addr(&self, page: u32, off: u32) -> u32 {
        self.base
            .wrapping_add(page.wrapping_mul(self.geo.e))
            .wrapping_add(off)
    }
    pub(crate) fn next(&self, page: u32) -> u32 {
        if page.saturating_add(1) >= self.pages {
            0
        } else {
            page + 1
        }
    }
    fn prev(&self, page: u32) -> u32 {
        if page == 0 {
            self.pages.saturating_sub(1)
        } else {
            page - 1
        }
    }
    /// Pages from `a` forward to `b` (0 when equal).
    fn dist(&self, a: u32, b: u32) -> u32 {
        if b >= a {
            b - a
        } else {
            self.pages - a + b
        }
    }
    /// New pages a record of `total` bytes needs if its first fragment may start at `off` of the
    /// newest page (`None`: there is no newest page).
    fn pages_needed(&self, off: Option<u32>, total: u32) -> u32 {
        let g = &self.geo;
        let ds = g.data_start();
        let (mut new, cap1) = match off {
            Some(o) if g.frag_cap(o, true) >= META_LEN as u32 => (0u32, g.frag_cap(o, true)),
            _ => (1u32, g.frag_cap(ds, true)),
        };
        if total > cap1 {
            let capc = g.frag_cap(ds, false).max(1);
            new = new.saturating_add((total - cap1).div_ceil(capc));
        }
        new
    }
}

/// What a scan of the log found.
#[derive(Debug, Default)]
struct ScanOut {
    head: Option<RecPos>,
    live: u32,
    discarded: u32,
    damaged: u32,
    max_seq: Option<u32>,
    tail: u32,
}

/// A record being reassembled during a scan.
#[derive(Debug, Clone, Copy)]
struct Asm {
    first: RecPos,
    next_index: u32,
    popped: bool,
}

/// The queue's state in RAM (a few words; everything else is on flash).
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) ring: Ring,
    run: Option<Run>,
    tail: u32,
    head: Option<RecPos>,
    next_seq: u32,
    live: u32,
    /// A popped head whose successor is still to be found (the scan after a pop failed).
    rescan_from: Option<RecPos>,
}

type Res<T, F> = Result<T, StoreError<<F as embedded_storage::nor_flash::ErrorType>::Error>>;

impl Queue {
    /// Recover the queue from flash: find the page run, then scan it.
    pub(crate) fn open<F: NorFlash>(
        flash: &mut F,
        ring: Ring,
        report: &mut OpenReport,
    ) -> Res<Self, F> {
        let geo = ring.geo;
        let mut newest: Option<(u32, PageHeader)> = None;
        for p in 0..ring.pages {
            let h = read_header(flash, geo, ring.addr(p, 0)).map_err(StoreError::Flash)?;
            match decode_page(&h) {
                Decoded::Valid(ph) => {
                    if newest.is_none_or(|(_, n)| ph.page_seq > n.page_seq) {
                        newest = Some((p, ph));
                    }
                }
                Decoded::UnknownVersion(v) => return Err(StoreError::UnknownVersion(v)),
                Decoded::Invalid => report.damaged_pages = report.damaged_pages.saturating_add(1),
                Decoded::Erased => {}
            }
        }
        let mut q = Queue {
            ring,
            run: None,
            tail: 0,
            head: None,
            next_seq: 1,
            live: 0,
            rescan_from: None,
        };
        let Some((newest, nh)) = newest else {
            return Ok(q);
        };
        // Walk back over pages with consecutive sequence numbers: that run is the log.
        let mut oldest = newest;
        let mut seq = nh.page_seq;
        for _ in 1..ring.pages {
            let p = ring.prev(oldest);
            let h = read_header(flash, geo, ring.addr(p, 0)).map_err(StoreError::Flash)?;
            match decode_page(&h) {
                Decoded::Valid(ph) if Some(ph.page_seq) == seq.checked_sub(1) => {
                    oldest = p;
                    seq = ph.page_seq;
                }
                _ => break,
            }
        }
        q.run = Some(Run {
            oldest,
            newest,
            newest_seq: nh.page_seq,
        });
        let out = q.scan(flash, oldest, geo.data_start(), None, false)?;
        q.tail = out.tail;
        // Writes resume at the tail only if the rest of the page was never written (always so
        // after power cuts; not so in a foreign or decayed image).
        if !erased(
            flash,
            geo,
            ring.addr(newest, q.tail),
            geo.e.saturating_sub(q.tail),
        )? {
            q.tail = geo.e;
            report.damaged_pages = report.damaged_pages.saturating_add(1);
        }
        q.head = out.head;
        q.live = out.live;
        let after_max = out.max_seq.map_or(1, |s| s.saturating_add(1));
        q.next_seq = after_max.max(nh.seq_base).max(1);
        report.discarded_records = report.discarded_records.saturating_add(out.discarded);
        report.damaged_pages = report.damaged_pages.saturating_add(out.damaged);
        Ok(q)
    }

    /// Scan fragments from (`page`, `off`) to the end of the newest page (or `limit` in it).
    /// With `stop_at_live`, return at the first complete record that is not popped.
    fn scan<F: NorFlash>(
        &self,
        flash: &mut F,
        mut page: u32,
        mut off: u32,
        limit: Option<u32>,
        stop_at_live: bool,
    ) -> Res<ScanOut, F> {
        let ring = self.ring;
        let geo = ring.geo;
        let mut out = ScanOut::default();
        let Some(run) = self.run else {
            return Ok(out);
        };
        let mut cur: Option<Asm> = None;
        // A page is visited at most once per scan.
        for _ in 0..ring.pages {
            let is_newest = page == run.newest;
            let lim = if is_newest {
                limit.unwrap_or(geo.e)
            } else {
                geo.e
            };
            let end = loop {
                if off >= lim || off.saturating_add(geo.hdr()) > geo.e {
                    break off;
                }
                let at = ring.addr(page, off);
                let raw = read_header(flash, geo, at).map_err(StoreError::Flash)?;
                let h = match decode_frag(&raw) {
                    Decoded::Erased => break off,
                    Decoded::Valid(h) => h,
                    Decoded::Invalid | Decoded::UnknownVersion(_) => {
                        out.damaged = out.damaged.saturating_add(1);
                        if cur.take().is_some() {
                            out.discarded = out.discarded.saturating_add(1);
                        }
                        break geo.e;
                    }
                };
                let extent = match geo.frag_extent(h.first(), h.len) {
                    Some(x) if x <= geo.e - off => x,
                    _ => {
                        out.damaged = out.damaged.saturating_add(1);
                        if cur.take().is_some() {
                            out.discarded = out.discarded.saturating_add(1);
                        }
                        break geo.e;
                    }
                };
                out.max_seq = Some(out.max_seq.map_or(h.seq, |m| m.max(h.seq)));
                let popped = h.first() && popped(flash, geo, at + geo.hdr())?;
                // Fragments of a popped record were complete when it was popped: skip their CRC.
                let of_popped = popped
                    || (!h.first()
                        && matches!(cur, Some(a) if a.popped
                            && a.first.seq == h.seq
                            && a.next_index == h.index));
                let complete = of_popped || {
                    let data = at + geo.frag_data_off(h.first());
                    let crc = crc_of(flash, geo, data, h.len).map_err(StoreError::Flash)?;
                    let trl = read_trailer(flash, geo, data + geo.align(h.len).unwrap_or(0))
                        .map_err(StoreError::Flash)?;
                    trailer_ok(&trl, crc)
                };
                off += extent;

                if !complete {
                    if cur.take().is_some() || h.first() {
                        out.discarded = out.discarded.saturating_add(1);
                    }
                    continue;
                }
                if h.first() {
                    if cur.take().is_some() {
                        out.discarded = out.discarded.saturating_add(1);
                    }
                    cur = Some(Asm {
                        first: RecPos {
                            page,
                            off: off - extent,
                            seq: h.seq,
                        },
                        next_index: 1,
                        popped,
                    });
                } else {
                    let continues = matches!(cur, Some(a) if a.first.seq == h.seq
                        && a.next_index == h.index
                        && off - extent == geo.data_start());
                    if !continues {
                        // An orphan (its first fragment's page was reclaimed) or a mismatch.
                        if cur.take().is_some() {
                            out.discarded = out.discarded.saturating_add(1);
                        }
                        continue;
                    }
                    if let Some(a) = cur.as_mut() {
                        a.next_index = a.next_index.saturating_add(1);
                    }
                }
                if h.last() {
                    if let Some(a) = cur.take() {
                        if !a.popped {
                            out.live = out.live.saturating_add(1);
                            if out.head.is_none() {
                                out.head = Some(a.first);
                            }
                            if stop_at_live {
                                return Ok(out);
                            }
                        }
                    }
                }
            };
            if is_newest {
                out.tail = end;
                break;
            }
            page = ring.next(page);
            off = geo.data_start();
        }
        if cur.is_some() {
            out.discarded = out.discarded.saturating_add(1);
        }
        Ok(out)
    }

    /// Records in the queue.
    pub(crate) fn len(&self) -> u32 {
        self.live
    }

    /// Pages that are neither holding live records nor the page being filled.
    fn free_pages(&self) -> u32 {
        match (self.run, self.head) {
            (None, _) => self.ring.pages,
            (Some(_), None) => self.ring.pages - 1,
            (Some(r), Some(h)) => self.ring.pages - 1 - self.ring.dist(h.page, r.newest),
        }
    }

    /// The largest body that fits once the queue is empty.
    pub(crate) fn max_body_len(&self) -> u32 {
        let g = &self.ring.geo;
        let ds = g.data_start();
        let first = g.frag_cap(ds, true);
        let rest = g
            .frag_cap(ds, false)
            .saturating_mul(self.ring.pages.saturating_sub(2));
        first.saturating_add(rest).saturating_sub(META_LEN as u32)
    }

    /// Open a fresh page after the newest (erase, then write its header).
    fn alloc_page<F: NorFlash>(&mut self, flash: &mut F) -> Res<(), F> {
        let ring = self.ring;
        let (p, page_seq) = match self.run {
            None => (0, 1),
            Some(r) => (
                ring.next(r.newest),
                r.newest_seq.checked_add(1).ok_or(StoreError::Exhausted)?,
            ),
        };
        if let (Some(_), Some(h)) = (self.run, self.head) {
            if h.page == p {
                return Err(StoreError::QueueFull);
            }
        }
        let from = ring.addr(p, 0);
        flash
            .erase(from, from.wrapping_add(ring.geo.e))
            .map_err(StoreError::Flash)?;
        let hdr = encode_page(PageHeader {
            page_seq,
            seq_base: self.next_seq,
        });
        write_padded(flash, ring.geo, from, &hdr).map_err(StoreError::Flash)?;
        self.run = Some(match self.run {
            None => Run {
                oldest: p,
                newest: p,
                newest_seq: page_seq,
            },
            Some(r) => Run {
                oldest: if p == r.oldest {
                    ring.next(p)
                } else {
                    r.oldest
                },
                newest: p,
                newest_seq: page_seq,
            },
        });
        self.tail = ring.geo.data_start();
        Ok(())
    }

    /// Append one record: metadata, then the body streamed from its `Emit` through `scratch`.
    pub(crate) fn enqueue<F: NorFlash>(
        &mut self,
        flash: &mut F,
        meta: &MessageMeta,
        body: &dyn Emit,
        scratch: &mut [u8],
    ) -> Res<QueuedMessage, F> {
        self.settle(flash)?;
        let body_len = emitted_len(body).map_err(|_| StoreError::TooLarge)?;
        let body_len = u32::try_from(body_len).map_err(|_| StoreError::TooLarge)?;
        let total = body_len
            .checked_add(META_LEN as u32)
            .ok_or(StoreError::TooLarge)?;
        let writer = Writer::new(self.ring.geo, scratch).ok_or(StoreError::BufferTooSmall)?;
        // Bounded by what an empty queue always accepts (one page short of the ring), so the
        // limit does not depend on where the log happens to end.
        if self.ring.pages_needed(None, total) > self.ring.pages - 1 {
            return Err(StoreError::TooLarge);
        }
        let need = self.ring.pages_needed(self.run.map(|_| self.tail), total);
        if need > self.free_pages() {
            return Err(StoreError::QueueFull);
        }
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(StoreError::Exhausted)?;

        let mut sink = RecordSink {
            q: self,
            flash,
            w: writer,
            seq,
            index: 0,
            page: 0,
            frag_off: 0,
            frag_len: 0,
            frag_left: 0,
            total_left: total,
            first_pos: None,
            err: None,
        };
        let result = sink
            .open_fragment()
            .and_then(|()| sink.push(&encode_meta(meta, body_len)));
        let result = match result {
            Ok(()) => match body.emit(&mut sink) {
                Ok(()) if sink.total_left == 0 => sink.close_fragment(),
                Ok(()) => Err(StoreError::BodyChanged),
                Err(Overflow) => Err(sink.err.take().unwrap_or(StoreError::BodyChanged)),
            },
            Err(e) => Err(e),
        };
        let first_pos = sink.first_pos;
        result?;
        let pos = first_pos.ok_or(StoreError::Corrupt)?;
        self.live = self.live.saturating_add(1);
        if self.head.is_none() {
            self.head = Some(pos);
        }
        Ok(QueuedMessage {
            meta: *meta,
            body_len,
            pos,
        })
    }

    /// Mark record `msg` popped wherever it sits in the queue, if it is still there: `false`
    /// when it was delivered (popped) already or its page was reused since. Later scans skip
    /// it like any popped record; its pages are reclaimed once the head passes them.
    pub(crate) fn withdraw<F: NorFlash>(
        &mut self,
        flash: &mut F,
        msg: &QueuedMessage,
    ) -> Res<bool, F> {
        self.settle(flash)?;
        if self.head.is_some_and(|h| h == msg.pos) {
            return self.pop(flash, Some(msg.pos.seq));
        }
        let Some(run) = self.run else {
            return Ok(false);
        };
        // Only pages of the live run can still hold it, and only at an offset before the tail
        // on the page being filled.
        let geo = self.ring.geo;
        let in_run =
            self.ring.dist(run.oldest, msg.pos.page) <= self.ring.dist(run.oldest, run.newest);
        if !in_run || (msg.pos.page == run.newest && msg.pos.off >= self.tail) {
            return Ok(false);
        }
        let at = self.ring.addr(msg.pos.page, msg.pos.off);
        let raw = read_header(flash, geo, at).map_err(StoreError::Flash)?;
        let same =
            matches!(decode_frag(&raw), Decoded::Valid(h) if h.first() && h.seq == msg.pos.seq);
        if !same || popped(flash, geo, at + geo.hdr())? {
            return Ok(false);
        }
        let zeros = [0u8; MAX_GRANULE];
        let word = zeros.get(..geo.g as usize).unwrap_or(&[]);
        flash
            .write(at + geo.hdr(), word)
            .map_err(StoreError::Flash)?;
        self.live = self.live.saturating_sub(1);
        Ok(true)
    }

    /// The oldest record's metadata.
    pub(crate) fn peek<F: NorFlash>(&mut self, flash: &mut F) -> Res<Option<QueuedMessage>, F> {
        self.settle(flash)?;
        let Some(h) = self.head else {
            return Ok(None);
        };
        let geo = self.ring.geo;
        let mut raw = [0u8; META_LEN];
        let at = self.ring.addr(h.page, h.off) + geo.frag_data_off(true);
        read_exact(flash, geo, at, &mut raw).map_err(StoreError::Flash)?;
        let (meta, body_len) = decode_meta(&raw).map_err(|e| match e {
            PayloadError::UnknownVersion(v) => StoreError::UnknownVersion(v),
            PayloadError::Malformed => StoreError::Corrupt,
        })?;
        Ok(Some(QueuedMessage {
            meta,
            body_len,
            pos: h,
        }))
    }

    /// Mark the head popped (only if it is record `seq`, unless `None`) and find the next one.
    pub(crate) fn pop<F: NorFlash>(&mut self, flash: &mut F, seq: Option<u32>) -> Res<bool, F> {
        self.settle(flash)?;
        let Some(h) = self.head else {
            return match seq {
                Some(_) => Err(StoreError::NotHead),
                None => Ok(false),
            };
        };
        if seq.is_some_and(|s| s != h.seq) {
            return Err(StoreError::NotHead);
        }
        let geo = self.ring.geo;
        let at = self.ring.addr(h.page, h.off) + geo.hdr();
        // A pop word already (partly) written by a failed earlier attempt is not written again.
        if !popped(flash, geo, at)? {
            let zeros = [0u8; MAX_GRANULE];
            let word = zeros.get(..geo.g as usize).unwrap_or(&[]);
            flash.write(at, word).map_err(StoreError::Flash)?;
        }
        self.live = self.live.saturating_sub(1);
        self.rescan_from = Some(h);
        self.settle(flash)?;
        Ok(true)
    }

    /// Finish a pop whose scan for the next head did not complete.
    fn settle<F: NorFlash>(&mut self, flash: &mut F) -> Res<(), F> {
        if let Some(h) = self.rescan_from {
            let out = self.scan(flash, h.page, h.off, Some(self.tail), true)?;
            self.head = out.head;
            if self.head.is_none() {
                self.live = 0;
            }
            self.rescan_from = None;
        }
        Ok(())
    }

    /// A reader of a record's body.
    pub(crate) fn body<'s, F: NorFlash>(
        &self,
        flash: &'s mut F,
        msg: &QueuedMessage,
    ) -> StoredBody<'s, F> {
        StoredBody {
            flash: RefCell::new(flash),
            ring: self.ring,
            first: msg.pos,
            body_len: msg.body_len,
            fault: Cell::new(None),
        }
    }
}

/// Whether the `len` bytes at `addr` are all 0xFF.
fn erased<F: NorFlash>(flash: &mut F, geo: Geometry, addr: u32, len: u32) -> Res<bool, F> {
    let mut buf = [0u8; CHUNK];
    let mut done = 0u32;
    while done < len {
        let n = (len - done).min(CHUNK as u32) as usize;
        let part = buf.get_mut(..n).unwrap_or(&mut []);
        read_exact(flash, geo, addr.wrapping_add(done), part).map_err(StoreError::Flash)?;
        if part.iter().any(|&b| b != 0xFF) {
            return Ok(false);
        }
        done += n as u32;
    }
    Ok(true)
}

/// Whether the pop word of a first fragment (at `addr`) was written.
fn popped<F: NorFlash>(flash: &mut F, geo: Geometry, addr: u32) -> Res<bool, F> {
    let mut w = [0u8; MAX_GRANULE];
    let word = w.get_mut(..geo.g as usize).unwrap_or(&mut []);
    read_exact(flash, geo, addr, word).map_err(StoreError::Flash)?;
    Ok(word.iter().any(|&b| b != 0xFF))
}

/// The sink an enqueue emits into: cuts the stream into fragments, opening pages as needed.
struct RecordSink<'q, 'f, 'b, F: NorFlash> {
    q: &'q mut Queue,
    flash: &'f mut F,
    w: Writer<'b>,
    seq: u32,
    index: u32,
    page: u32,
    frag_off: u32,
    frag_len: u32,
    frag_left: u32,
    total_left: u32,
    first_pos: Option<RecPos>,
    err: Option<StoreError<F::Error>>,
}

impl<F: NorFlash> RecordSink<'_, '_, '_, F> {
    fn open_fragment(&mut self) -> Res<(), F> {
        let geo = self.q.ring.geo;
        let first = self.index == 0;
        let min = if first { META_LEN as u32 } else { 1 };
        if self.q.run.is_none() || geo.frag_cap(self.q.tail, first) < min {
            self.q.alloc_page(self.flash)?;
        }
        let cap = geo.frag_cap(self.q.tail, first);
        if cap < min {
            return Err(StoreError::Layout);
        }
        let Some(run) = self.q.run else {
            return Err(StoreError::Layout);
        };
        let len = cap.min(self.total_left);
        let mut flags = if first { FLAG_FIRST } else { 0 };
        if len == self.total_left {
            flags |= FLAG_LAST;
        }
        self.page = run.newest;
        self.frag_off = self.q.tail;
        self.frag_len = len;
        self.frag_left = len;
        // Until this fragment is committed, nothing more goes into this page.
        self.q.tail = geo.e;
        let at = self.q.ring.addr(self.page, self.frag_off);
        let hdr = encode_frag(FragHeader {
            flags,
            seq: self.seq,
            index: self.index,
            len,
        });
        write_padded(self.flash, geo, at, &hdr).map_err(StoreError::Flash)?;
        if first {
            self.first_pos = Some(RecPos {
                page: self.page,
                off: self.frag_off,
                seq: self.seq,
            });
        }
        self.w.restart(at + geo.frag_data_off(first));
        Ok(())
    }

    fn close_fragment(&mut self) -> Res<(), F> {
        let geo = self.q.ring.geo;
        let first = self.index == 0;
        let crc = self.w.finish(self.flash).map_err(StoreError::Flash)?;
        let at = self.q.ring.addr(self.page, self.frag_off)
            + geo.frag_data_off(first)
            + geo.align(self.frag_len).unwrap_or(0);
        write_padded(self.flash, geo, at, &encode_trailer(crc)).map_err(StoreError::Flash)?;
        self.q.tail = self.frag_off + geo.frag_extent(first, self.frag_len).unwrap_or(geo.e);
        self.index += 1;
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Res<(), F> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.frag_left == 0 {
                if self.total_left == 0 {
                    return Err(StoreError::BodyChanged);
                }
                self.close_fragment()?;
                self.open_fragment()?;
            }
            let n = rest.len().min(self.frag_left as usize);
            let (now, later) = rest.split_at(n);
            self.w.push(self.flash, now).map_err(StoreError::Flash)?;
            self.frag_left -= n as u32;
            self.total_left -= n as u32;
            rest = later;
        }
        Ok(())
    }
}

impl<F: NorFlash> Sink for RecordSink<'_, '_, '_, F> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        if self.err.is_some() {
            return Err(Overflow);
        }
        self.push(bytes).map_err(|e| {
            self.err = Some(e);
            Overflow
        })
    }
}

/// The oldest queued message, as [`crate::store::Store::peek`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueuedMessage {
    /// The header fields the message was stored with (the same message ID on every retry).
    pub meta: MessageMeta,
    /// Bytes of the body (UTF-16LE XML, as its `Emit` produced them).
    pub body_len: u32,
    pos: RecPos,
}

impl QueuedMessage {
    pub(crate) fn pos_seq(&self) -> u32 {
        self.pos.seq
    }

    /// Whether `other` is the same record (the same enqueue), whatever was read of it.
    pub fn is_same_record(&self, other: &QueuedMessage) -> bool {
        self.pos == other.pos
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for RecPos {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{}@{}:{}", self.seq, self.page, self.off)
    }
}

/// Why streaming a stored body stopped (see [`StoredBody::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFault {
    /// The flash read failed.
    Flash(NorFlashErrorKind),
    /// The record no longer matches its checksums (it was popped and its page reused, or the
    /// flash decayed).
    Corrupt,
    /// `emit` was re-entered while a pass was running.
    Busy,
}

// By hand: `NorFlashErrorKind` is `defmt::Format` only under embedded-storage's own feature.
#[cfg(feature = "defmt")]
impl defmt::Format for BodyFault {
    fn format(&self, f: defmt::Formatter) {
        match self {
            BodyFault::Flash(NorFlashErrorKind::NotAligned) => {
                defmt::write!(f, "Flash(NotAligned)")
            }
            BodyFault::Flash(NorFlashErrorKind::OutOfBounds) => {
                defmt::write!(f, "Flash(OutOfBounds)")
            }
            BodyFault::Flash(_) => defmt::write!(f, "Flash(Other)"),
            BodyFault::Corrupt => defmt::write!(f, "Corrupt"),
            BodyFault::Busy => defmt::write!(f, "Busy"),
        }
    }
}

/// A stored message body that emits itself straight from flash, 128 bytes at a time, so it
/// can go through the hash, count and window passes of a send like any other body. Every pass
/// re-reads the record and re-checks its CRCs; a fault ends the pass with [`Overflow`] and is
/// kept in [`StoredBody::fault`].
pub struct StoredBody<'s, F: NorFlash> {
    flash: RefCell<&'s mut F>,
    ring: Ring,
    first: RecPos,
    body_len: u32,
    fault: Cell<Option<BodyFault>>,
}

impl<F: NorFlash> StoredBody<'_, F> {
    /// Bytes the body emits.
    pub fn len(&self) -> u32 {
        self.body_len
    }
    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.body_len == 0
    }
    /// Why the last pass failed, if it did because of the store (not because the sink overflowed).
    pub fn fault(&self) -> Option<BodyFault> {
        self.fault.get()
    }

    fn stream(&self, flash: &mut F, out: &mut dyn Sink) -> Result<(), Option<BodyFault>> {
        let ring = self.ring;
        let geo = ring.geo;
        let flash_err = |e: F::Error| Some(BodyFault::Flash(e.kind()));
        let corrupt = Some(BodyFault::Corrupt);
        let (mut page, mut off) = (self.first.page, self.first.off);
        let mut skip = META_LEN as u32;
        let mut sent = 0u32;
        let mut buf = [0u8; CHUNK];
        for index in 0..ring.pages {
            let at = ring.addr(page, off);
            let raw = read_header(flash, geo, at).map_err(flash_err)?;
            let h = match decode_frag(&raw) {
                Decoded::Valid(h) if h.seq == self.first.seq && h.index == index => h,
                _ => return Err(corrupt),
            };
            match geo.frag_extent(h.first(), h.len) {
                Some(x) if x <= geo.e.saturating_sub(off) => {}
                _ => return Err(corrupt),
            }
            let data = at + geo.frag_data_off(h.first());
            let mut crc = Crc32::new();
            let mut done = 0u32;
            while done < h.len {
                let n = (h.len - done).min(CHUNK as u32);
                let part = buf.get_mut(..n as usize).unwrap_or(&mut []);
                read_exact(flash, geo, data + done, part).map_err(flash_err)?;
                crc.update(part);
                let s = skip.min(n);
                skip -= s;
                let payload = part.get(s as usize..).unwrap_or(&[]);
                if !payload.is_empty() {
                    out.write(payload).map_err(|_| None)?;
                    sent = sent.saturating_add(payload.len() as u32);
                }
                done += n;
            }
            let trl = read_trailer(flash, geo, data + geo.align(h.len).unwrap_or(0))
                .map_err(flash_err)?;
            if !trailer_ok(&trl, crc.finish()) {
                return Err(corrupt);
            }
            if h.last() {
                return if sent == self.body_len {
                    Ok(())
                } else {
                    Err(corrupt)
                };
            }
            page = ring.next(page);
            off = geo.data_start();
        }
        Err(corrupt)
    }
}

impl<F: NorFlash> Emit for StoredBody<'_, F> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        let Ok(mut flash) = self.flash.try_borrow_mut() else {
            self.fault.set(Some(BodyFault::Busy));
            return Err(Overflow);
        };
        match self.stream(&mut flash, out) {
            Ok(()) => {
                self.fault.set(None);
                Ok(())
            }
            Err(fault) => {
                self.fault.set(fault);
                Err(Overflow)
            }
        }
    }
}
