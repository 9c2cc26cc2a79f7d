//! Byte sinks that messages are emitted through: counting, hashing, slicing into a caller buffer,
//! and the *window* sink that lets a message of any size be sent through a fixed small buffer by
//! emitting it once per window (emission is deterministic, so every pass yields the same bytes).
//!
//! Sinks that drop bytes unseen (the counter; a window sink before its window) say so through
//! [`Sink::skippable`], so emitters can hand them a length instead of encoded bytes: counting
//! passes and the part of a window pass before its window then cost little more than a walk over
//! the message's structure.
//!
//! A window pass still walks everything before its window. Where an emitter repeats items (the
//! instances of a report), a [`Checkpoint`] that the driver carries from one pass to the next
//! remembers where the last item before the window began, so the next pass jumps there by length
//! ([`Sink::sequence_item`]) instead of walking the items again: streaming such a message through
//! W windows costs about one walk of it, not W/2.

use sha2::Digest;

/// The sink has no room left for the bytes offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Overflow;

/// Where emitted bytes go. Object-safe on purpose: emitters take `&mut dyn Sink` so that each
/// message's emit code exists once in flash, not once per sink type.
pub trait Sink {
    /// Accept all of `bytes` or fail with [`Overflow`].
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow>;

    /// How many of the next bytes this sink would drop without looking at them (`usize::MAX`
    /// for a counter). An emitter that knows the length `n` of what it is about to write, with
    /// `n` at most this, may call [`skip`](Self::skip) instead of producing the bytes. The
    /// default, 0, means every byte is wanted.
    fn skippable(&self) -> usize {
        0
    }

    /// Account for `len` bytes without their content, exactly as [`write`](Self::write) of that
    /// many dropped bytes would. Only valid for `len <= self.skippable()`; the default (for
    /// sinks that skip nothing) writes nothing and refuses any non-zero length.
    fn skip(&mut self, len: usize) -> Result<(), Overflow> {
        if len == 0 {
            Ok(())
        } else {
            Err(Overflow)
        }
    }

    /// Item `index` (from 0) of the message's repeated items starts here. Answers how many items,
    /// this one first, the emitter must leave out because the sink accounted for their bytes
    /// already (it jumped to a [`Checkpoint`] an earlier pass recorded); 0 means emit it. An
    /// emitter that asks must call this at the start of every item, with nothing written between
    /// items. The default (no checkpoint) is 0.
    fn sequence_item(&mut self, index: usize) -> usize {
        let _ = index;
        0
    }
}

/// Where one of the repeated items of a message starts, kept by a driver across the window passes
/// of *one* message (start a fresh one per request): see [`Sink::sequence_item`]. Three words.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Offset of the sequence's first item: tells the sequences of one message apart.
    sequence: usize,
    /// Index of the item.
    index: usize,
    /// Offset of the item.
    offset: usize,
}

impl Checkpoint {
    /// At item `index` of the sequence starting at `sequence`, with the sink at offset `pos` and
    /// everything before `skippable_to` droppable unseen: if a later item of the same sequence is
    /// known to start at or before `skippable_to`, return it as `(items to leave out, its
    /// offset)`. Otherwise remember this item when it starts at or before `next_start` (where the
    /// next pass will start its window) and not before the item remembered, and return `None`.
    pub(crate) fn visit(
        &mut self,
        sequence: usize,
        index: usize,
        pos: usize,
        skippable_to: usize,
        next_start: usize,
    ) -> Option<(usize, usize)> {
        if self.sequence == sequence
            && index < self.index
            && pos < self.offset
            && self.offset <= skippable_to
        {
            return Some((self.index - index, self.offset));
        }
        // Only ever forward: passes that walk an earlier sequence again leave a later one's alone.
        if pos <= next_start && pos >= self.offset {
            *self = Self {
                sequence,
                index,
                offset: pos,
            };
        }
        None
    }
}

/// Something that can write itself, deterministically, into a sink.
pub trait Emit {
    /// Write the whole representation. Must produce the same bytes on every call.
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow>;
}

impl<F: Fn(&mut dyn Sink) -> Result<(), Overflow>> Emit for F {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        self(out)
    }
}

/// Counts bytes and drops them.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingSink {
    /// Bytes seen so far.
    pub count: usize,
}

impl Sink for CountingSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.skip(bytes.len())
    }
    fn skippable(&self) -> usize {
        usize::MAX
    }
    fn skip(&mut self, len: usize) -> Result<(), Overflow> {
        self.count = self.count.checked_add(len).ok_or(Overflow)?;
        Ok(())
    }
}

/// Number of bytes `item` emits.
pub fn emitted_len(item: &dyn Emit) -> Result<usize, Overflow> {
    let mut c = CountingSink::default();
    item.emit(&mut c)?;
    Ok(c.count)
}

/// Feeds a SHA-256 hasher.
#[derive(Clone, Default)]
pub struct Sha256Sink(pub sha2::Sha256);

impl Sha256Sink {
    /// The digest of everything written so far.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl Sink for Sha256Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.0.update(bytes);
        Ok(())
    }
}

/// SHA-256 of everything `item` emits.
pub fn sha256_of(item: &dyn Emit) -> Result<[u8; 32], Overflow> {
    let mut h = Sha256Sink::default();
    item.emit(&mut h)?;
    Ok(h.finish())
}

/// Writes into a caller's slice; fails when it is full.
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceSink<'a> {
    /// A sink writing from the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
    /// Give back the written part with the buffer's lifetime.
    pub fn into_written(self) -> &'a [u8] {
        let len = self.len;
        let buf: &'a [u8] = self.buf;
        buf.get(..len).unwrap_or(&[])
    }
}

impl Sink for SliceSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let end = self.len.checked_add(bytes.len()).ok_or(Overflow)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(Overflow)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

/// Captures the bytes at stream offsets `[start, start + buf.len())` and drops the rest.
/// Never fails: a pass through it yields one window of a message of any length.
pub struct WindowSink<'a> {
    buf: &'a mut [u8],
    start: usize,
    pos: usize,
    filled: usize,
}

impl<'a> WindowSink<'a> {
    /// A window of `buf.len()` bytes starting at stream offset `start`.
    pub fn new(buf: &'a mut [u8], start: usize) -> Self {
        Self {
            buf,
            start,
            pos: 0,
            filled: 0,
        }
    }
    /// How many bytes of the window were filled.
    pub fn filled(&self) -> usize {
        self.filled
    }
}

impl Sink for WindowSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let chunk_start = self.pos;
        self.pos = self.pos.saturating_add(bytes.len());
        let win_start = self.start;
        let win_end = self.start.saturating_add(self.buf.len());
        let from = chunk_start.max(win_start);
        let to = self.pos.min(win_end);
        if from < to {
            let src = bytes.get(from - chunk_start..to - chunk_start);
            let dst = self.buf.get_mut(from - win_start..to - win_start);
            if let (Some(src), Some(dst)) = (src, dst) {
                // Not `copy_from_slice`: equal lengths are not visible to the optimiser, which
                // keeps its panic (no-panic link proof).
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = *s;
                }
                self.filled = self.filled.max(to - win_start);
            }
        }
        Ok(())
    }
    fn skippable(&self) -> usize {
        let win_end = self.start.saturating_add(self.buf.len());
        if self.pos >= win_end {
            usize::MAX
        } else {
            self.start.saturating_sub(self.pos)
        }
    }
    fn skip(&mut self, len: usize) -> Result<(), Overflow> {
        if len > self.skippable() {
            return Err(Overflow);
        }
        self.pos = self.pos.saturating_add(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(out: &mut dyn Sink) -> Result<(), Overflow> {
        for i in 0u8..=250 {
            out.write(&[i, i.wrapping_add(1)])?;
        }
        Ok(())
    }

    #[test]
    fn windows_reassemble_the_stream() {
        let total = emitted_len(&numbers).unwrap();
        let mut whole = [0u8; 1024];
        let mut s = SliceSink::new(&mut whole);
        numbers(&mut s).unwrap();
        assert_eq!(s.len(), total);
        for win in [1usize, 3, 7, 64, 501, 502, 600] {
            let mut joined = [0u8; 1024];
            let mut off = 0;
            while off < total {
                let mut buf = [0u8; 600];
                let mut w = WindowSink::new(&mut buf[..win], off);
                numbers(&mut w).unwrap();
                let n = w.filled();
                assert!(n > 0);
                joined[off..off + n].copy_from_slice(&buf[..n]);
                off += n;
            }
            assert_eq!(&joined[..total], &whole[..total], "window {win}");
        }
    }

    /// Like `numbers`, but hands every other piece to sinks that skip as a length only.
    fn numbers_skipping(out: &mut dyn Sink) -> Result<(), Overflow> {
        for i in 0u8..=250 {
            let piece = [i, i.wrapping_add(1)];
            if i % 2 == 0 && out.skippable() >= piece.len() {
                out.skip(piece.len())?;
            } else {
                out.write(&piece)?;
            }
        }
        Ok(())
    }

    #[test]
    fn skipping_sinks_account_like_writes() {
        let total = emitted_len(&numbers).unwrap();
        assert_eq!(emitted_len(&numbers_skipping).unwrap(), total);
        let mut whole = [0u8; 1024];
        let mut s = SliceSink::new(&mut whole);
        numbers_skipping(&mut s).unwrap();
        assert_eq!(s.len(), total, "a slice sink skips nothing");
        for win in [1usize, 3, 64, 501, 600] {
            let mut joined = [0u8; 1024];
            let mut off = 0;
            while off < total {
                let mut buf = [0u8; 600];
                let mut w = WindowSink::new(&mut buf[..win], off);
                numbers_skipping(&mut w).unwrap();
                let n = w.filled();
                assert!(n > 0);
                joined[off..off + n].copy_from_slice(&buf[..n]);
                off += n;
            }
            assert_eq!(&joined[..total], &whole[..total], "window {win}");
        }
        // Before its window a window sink skips exactly up to the window, after it anything.
        let mut buf = [0u8; 4];
        let mut w = WindowSink::new(&mut buf, 10);
        assert_eq!(w.skippable(), 10);
        assert_eq!(w.skip(11), Err(Overflow));
        w.skip(10).unwrap();
        assert_eq!(w.skippable(), 0);
        w.write(b"abcd").unwrap();
        assert_eq!(w.skippable(), usize::MAX);
    }

    #[test]
    fn slice_sink_refuses_overflow() {
        let mut buf = [0u8; 3];
        let mut s = SliceSink::new(&mut buf);
        s.write(b"ab").unwrap();
        assert_eq!(s.write(b"cd"), Err(Overflow));
        assert_eq!(s.written(), b"ab");
    }
}
