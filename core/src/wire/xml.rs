//! XML writer that encodes UTF-8 input as UTF-16LE on the fly (docs/protocol.md §2: headers and
//! bodies are UTF-16LE), escaping text and attribute values. Hand-written because no maintained
//! no_std XML crate exists (facts.md); it only ever writes the few fixed shapes our messages need.

use crate::sink::{Emit, Overflow, Sink};

/// Characters are encoded into a stack buffer that the writer keeps across calls, so the sink
/// gets one write per full chunk. Hosts (64-bit) use 256 B (the chunk size sets the
/// number of dynamic sink calls and copies per pass; 512 B cost more in the 512 B-window passes
/// than it saved); boards (32-bit) keep 64 B of stack per writer (the boards' stack peaks).
const CHUNK: usize = if cfg!(target_pointer_width = "64") {
    256
} else {
    64
};

/// A piece of markup for [`XmlWriter::parts`]: an ASCII string literal written as is. On hosts
/// it is widened to UTF-16LE at compile time ([`Escaping::Wide`]), so writing it is a copy (issue
/// 8: most of a message is markup, and widening it piece by piece was most of the writer's time);
/// boards keep the narrow literal ([`Escaping::Raw`]): half the flash.
macro_rules! markup {
    ($s:expr) => {{
        #[cfg(target_pointer_width = "64")]
        let piece = {
            const NARROW: &str = $s;
            const WIDE: [u8; NARROW.len() * 2] = $crate::wire::xml::widen(NARROW);
            const TEXT: &str = $crate::wire::xml::wide_str(&WIDE);
            (TEXT, $crate::wire::xml::Escaping::Wide)
        };
        #[cfg(not(target_pointer_width = "64"))]
        let piece = ($s, $crate::wire::xml::Escaping::Raw);
        piece
    }};
}
pub(crate) use markup;

/// `w.raw("literal")` as the platform writes it best: one [`markup!`] piece on hosts, the plain
/// call on boards (flash: a one-piece [`XmlWriter::parts`] at every call site costs more there).
macro_rules! raw {
    ($w:expr, $s:expr) => {{
        #[cfg(target_pointer_width = "64")]
        let r = $w.parts(&[$crate::wire::xml::markup!($s)]);
        #[cfg(not(target_pointer_width = "64"))]
        let r = $w.raw($s);
        r
    }};
}
pub(crate) use raw;

/// UTF-16LE of the ASCII `s`, for [`markup!`]'s constants: evaluated at compile time, where
/// anything but ASCII (or a wrong `N`) fails the build.
#[cfg(target_pointer_width = "64")]
pub(crate) const fn widen<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let mut src = s.as_bytes();
    assert!(
        src.len().saturating_mul(2) == N,
        "widen: N is twice the length"
    );
    let mut dst: &mut [u8] = &mut out;
    while let ([b, src_rest @ ..], [lo, _, dst_rest @ ..]) = (src, dst) {
        assert!(b.is_ascii(), "markup must be ASCII");
        *lo = *b;
        src = src_rest;
        dst = dst_rest;
    }
    out
}

/// [`widen`]'s output (ASCII and NULs, so UTF-8) as the `&str` [`XmlWriter::parts`] takes;
/// compile time only, like [`widen`].
#[cfg(target_pointer_width = "64")]
pub(crate) const fn wide_str(wide: &'static [u8]) -> &'static str {
    let s = match core::str::from_utf8(wide) {
        Ok(s) => s,
        Err(_) => "",
    };
    assert!(s.len() == wide.len(), "widened ASCII is UTF-8");
    s
}

/// Writes XML markup and escaped content as UTF-16LE into a sink, through a chunk it keeps
/// across calls: the sink gets one write per full chunk, not one per writer call (the
/// cost of a message was per call). Only [`XmlWriter::with`] makes one, and it hands the last
/// partial chunk to the sink when the emitter is done, so no emitter can forget to.
pub struct XmlWriter<'s> {
    out: &'s mut dyn Sink,
    chunk: Chunk,
}

impl<'s> XmlWriter<'s> {
    /// Run `write` with a writer over `out`, then hand the sink what is left in the chunk.
    /// Generic, so the writer lives in the emitter's own frame (boards: a `dyn` closure saved
    /// 44 B of firmware flash but added 48 B to the request stream's stack).
    #[inline]
    pub fn with(
        out: &'s mut dyn Sink,
        write: impl FnOnce(&mut XmlWriter<'s>) -> Result<(), Overflow>,
    ) -> Result<(), Overflow> {
        let mut w = Self {
            out,
            chunk: Chunk {
                buf: [0u8; CHUNK],
                n: 0,
            },
        };
        write(&mut w)?;
        w.flush()
    }

    /// Hand the sink the bytes gathered in the chunk.
    fn flush(&mut self) -> Result<(), Overflow> {
        self.chunk.flush(self.out)
    }

    /// Emit `item` (e.g. a hook that writes UTF-16LE itself) into the underlying sink, after the
    /// bytes this writer gathered so far.
    pub fn nested(&mut self, item: &dyn Emit) -> Result<(), Overflow> {
        self.flush()?;
        item.emit(&mut *self.out)
    }

    /// [`Sink::sequence_item`] of the underlying sink, at the position after the bytes gathered
    /// so far (they are handed to the sink first).
    pub(crate) fn sequence_item(&mut self, index: usize) -> Result<usize, Overflow> {
        self.flush()?;
        Ok(self.out.sequence_item(index))
    }

    /// The UTF-16 NUL that terminates a message body.
    pub fn nul(&mut self) -> Result<(), Overflow> {
        self.bytes(&[0, 0])
    }

    /// Bytes already encoded (a few), after those gathered so far.
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        for &b in bytes {
            if self.chunk.n >= CHUNK {
                self.flush()?;
            }
            if let Some(slot) = self.chunk.buf.get_mut(self.chunk.n) {
                *slot = b;
                self.chunk.n += 1;
            }
        }
        Ok(())
    }

    /// Whether the sink, which would drop its next `room` bytes unseen, drops the `len` bytes
    /// that follow those gathered so far; if so, they and the gathered ones are accounted for by
    /// length ([`Sink::skip`]) and dropped.
    #[inline]
    fn skipped(&mut self, room: usize, len: usize) -> Result<bool, Overflow> {
        let len = len.saturating_add(self.chunk.n);
        if room == 0 || len > room {
            return Ok(false);
        }
        self.chunk.n = 0;
        self.out.skip(len)?;
        Ok(true)
    }

    /// Write `parts` one after the other as UTF-16LE, each escaped per its [`Escaping`], into the
    /// chunk (so a tag and its attributes cost no sink call until the chunk is full). A sink that
    /// would drop all of them unseen ([`Sink::skippable`]) gets their length only.
    pub(crate) fn parts(&mut self, parts: &[(&str, Escaping)]) -> Result<(), Overflow> {
        let room = self.out.skippable();
        if room > 0 {
            let len = parts
                .iter()
                .fold(0usize, |n, (s, mode)| n.saturating_add(utf16_len(s, *mode)));
            if self.skipped(room, len)? {
                return Ok(());
            }
        }
        for (s, mode) in parts {
            self.put(s, *mode)?;
        }
        Ok(())
    }

    /// Encode `s` into the chunk, flushing it into the sink whenever it fills. Runs of ASCII that
    /// need no escaping (all markup, most content) are widened in bulk; other characters are
    /// decoded and encoded one by one.
    fn put(&mut self, s: &str, mode: Escaping) -> Result<(), Overflow> {
        let chunk = &mut self.chunk;
        if cfg!(target_pointer_width = "64") && matches!(mode, Escaping::Wide) {
            return chunk.put_wide(self.out, s.as_bytes());
        }
        // Most pieces (markup, names, values) are short plain ASCII that fits in the chunk:
        // widen them in one go.
        let bytes = s.as_bytes();
        let done = if cfg!(target_pointer_width = "64") {
            // Hosts: one loop per escaping, each vectorised (host speed). A piece that
            // would fit in an empty chunk but not in what is left starts the next one.
            let len = bytes.len().saturating_mul(2);
            if len <= CHUNK && chunk.n.saturating_add(len) > CHUNK {
                chunk.flush(self.out)?;
            }
            match mode {
                Escaping::Raw | Escaping::Wide => chunk.put_plain(bytes, |b| b.is_ascii()),
                Escaping::Text => {
                    chunk.put_plain(bytes, |b| b.is_ascii() && !matches!(b, b'&' | b'<' | b'>'))
                }
                Escaping::Attr => chunk.put_plain(bytes, |b| {
                    b.is_ascii()
                        && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'' | b'\r' | b'\n' | b'\t')
                }),
            }
        } else {
            // Boards: none (measured with the size probe: 228 B of flash on the registration path
            // for 6 440 fewer instructions per registration, 0.08 %).
            false
        };
        if done {
            return Ok(());
        }
        let mut i = 0usize;
        while let Some(rest) = s.as_bytes().get(i..) {
            let run = mode.plain_run(rest);
            chunk.put_ascii(self.out, rest.get(..run).unwrap_or(&[]))?;
            i += run;
            let Some(&b) = rest.get(run) else {
                break;
            };
            if let Some(entity) = mode.entity(b) {
                chunk.put_ascii(self.out, entity.as_bytes())?;
                i += 1;
                continue;
            }
            let c = s
                .get(i..)
                .and_then(|rest| rest.chars().next())
                .ok_or(Overflow)?;
            let mut units = [0u16; 2];
            for &unit in c.encode_utf16(&mut units).iter() {
                chunk.push(self.out, unit)?;
            }
            i += c.len_utf8();
        }
        Ok(())
    }

    fn encode(&mut self, s: &str, mode: Escaping) -> Result<(), Overflow> {
        self.parts(&[(s, mode)])
    }

    /// Markup written as is (the caller guarantees it is well-formed).
    pub fn raw(&mut self, s: &str) -> Result<(), Overflow> {
        self.encode(s, Escaping::Raw)
    }

    /// Character data, with `&`, `<` and `>` escaped.
    pub fn text(&mut self, s: &str) -> Result<(), Overflow> {
        self.encode(s, Escaping::Text)
    }

    /// `<name`
    pub fn open(&mut self, name: &str) -> Result<(), Overflow> {
        self.parts(&[markup!("<"), (name, Escaping::Raw)])
    }

    /// ` name="value"` with the value escaped.
    pub fn attr(&mut self, name: &str, value: &str) -> Result<(), Overflow> {
        self.parts(&[
            markup!(" "),
            (name, Escaping::Raw),
            markup!("=\""),
            (value, Escaping::Attr),
            markup!("\""),
        ])
    }

    /// ` name="123"`
    pub fn attr_u64(&mut self, name: &str, value: u64) -> Result<(), Overflow> {
        let mut buf = [0u8; 20];
        self.attr(name, fmt_u64(value, &mut buf))
    }

    /// `>` closing a start tag.
    pub fn close(&mut self) -> Result<(), Overflow> {
        raw!(self, ">")
    }

    /// ` />` closing an empty element, as the public tools write it.
    pub fn close_empty(&mut self) -> Result<(), Overflow> {
        raw!(self, " />")
    }

    /// `</name>`
    pub fn end(&mut self, name: &str) -> Result<(), Overflow> {
        self.parts(&[markup!("</"), (name, Escaping::Raw), markup!(">")])
    }

    /// `<name>text</name>` with the text escaped.
    pub fn element(&mut self, name: &str, text: &str) -> Result<(), Overflow> {
        self.element_as(name, text, Escaping::Text)
    }

    /// `<name>text</name>` in one piece, the text written as `text_mode` says.
    fn element_as(&mut self, name: &str, text: &str, text_mode: Escaping) -> Result<(), Overflow> {
        self.parts(&[
            markup!("<"),
            (name, Escaping::Raw),
            markup!(">"),
            (text, text_mode),
            markup!("</"),
            (name, Escaping::Raw),
            markup!(">"),
        ])
    }

    /// `<el Name="name" Value="value" />` (registration properties, status properties and
    /// qualifiers).
    pub(crate) fn name_value(&mut self, el: &str, name: &str, value: &str) -> Result<(), Overflow> {
        self.parts(&[
            markup!("<"),
            (el, Escaping::Raw),
            markup!(" Name=\""),
            (name, Escaping::Attr),
            markup!("\" Value=\""),
            (value, Escaping::Attr),
            markup!("\" />"),
        ])
    }

    /// Upper-case hex of `bytes` as character data (certificates, signatures).
    pub fn hex_upper(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let room = self.out.skippable();
        if self.skipped(room, bytes.len().saturating_mul(4))? {
            return Ok(());
        }
        let digit = |n: u8| if n < 10 { b'0' + n } else { b'A' - 10 + n };
        if cfg!(target_pointer_width = "64") {
            // Hosts: as many bytes as the chunk holds per loop (vectorised).
            let mut rest = bytes;
            while !rest.is_empty() {
                if self.chunk.n + 4 > CHUNK {
                    self.flush()?;
                }
                let take = ((CHUNK - self.chunk.n) / 4).min(rest.len());
                let (now, later) = rest.split_at_checked(take).ok_or(Overflow)?;
                if let Some(dst) = self
                    .chunk
                    .buf
                    .get_mut(self.chunk.n..self.chunk.n + 4 * take)
                {
                    for (d, &b) in dst.chunks_exact_mut(4).zip(now) {
                        d.copy_from_slice(&[digit(b >> 4), 0, digit(b & 0x0F), 0]);
                    }
                }
                self.chunk.n += 4 * take;
                rest = later;
            }
        } else {
            // Boards: byte by byte (236 B less flash on the registration path, size probe).
            for &b in bytes {
                if self.chunk.n + 4 > CHUNK {
                    self.flush()?;
                }
                if let Some(d) = self.chunk.buf.get_mut(self.chunk.n..self.chunk.n + 4) {
                    d.copy_from_slice(&[digit(b >> 4), 0, digit(b & 0x0F), 0]);
                    self.chunk.n += 4;
                }
            }
        }
        Ok(())
    }

    /// ASCII bytes (already known to need no escaping, e.g. formatted numbers, GUIDs, dates).
    pub fn ascii(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.raw(ascii_str(bytes)?)
    }

    /// `<name>ascii</name>` in one piece (as `open`, `close`, [`Self::ascii`], `end`).
    pub(crate) fn element_ascii(&mut self, name: &str, bytes: &[u8]) -> Result<(), Overflow> {
        let text = ascii_str(bytes)?;
        self.element_as(name, text, Escaping::Raw)
    }
}

/// Formatted ASCII (GUIDs, dates, numbers formatted into byte arrays) as the `&str` the writer
/// takes; anything else is refused like a write that does not fit.
pub(crate) fn ascii_str(bytes: &[u8]) -> Result<&str, Overflow> {
    core::str::from_utf8(bytes).map_err(|_| Overflow)
}

/// The stack buffer code units are gathered in before they go to the sink.
struct Chunk {
    buf: [u8; CHUNK],
    n: usize,
}

impl Chunk {
    #[inline]
    fn push(&mut self, out: &mut dyn Sink, unit: u16) -> Result<(), Overflow> {
        if self.n + 2 > CHUNK {
            self.flush(out)?;
        }
        if let Some(slot) = self.buf.get_mut(self.n..self.n + 2) {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
        self.n += 2;
        Ok(())
    }

    /// If all of `bytes` fit in the room left and all pass `plain`, widen them into the chunk
    /// and answer true; otherwise leave the chunk as it was and answer false. Widens and checks
    /// in one pass without an early exit (vectorised on hosts).
    #[inline(always)]
    fn put_plain(&mut self, bytes: &[u8], plain: impl Fn(u8) -> bool) -> bool {
        let end = self.n.saturating_add(bytes.len().saturating_mul(2));
        let Some(dst) = self.buf.get_mut(self.n..end) else {
            return false;
        };
        let mut all = true;
        for (d, &b) in dst.chunks_exact_mut(2).zip(bytes) {
            d.copy_from_slice(&[b, 0]);
            all &= plain(b);
        }
        if all {
            self.n = end;
        }
        all
    }

    /// Bytes already in UTF-16LE ([`Escaping::Wide`]), copied as they are.
    fn put_wide(&mut self, out: &mut dyn Sink, mut wide: &[u8]) -> Result<(), Overflow> {
        while !wide.is_empty() {
            if self.n >= CHUNK {
                self.flush(out)?;
            }
            let take = (CHUNK - self.n).min(wide.len());
            let (now, later) = wide.split_at_checked(take).ok_or(Overflow)?;
            if let Some(dst) = self.buf.get_mut(self.n..self.n + take) {
                dst.copy_from_slice(now);
            }
            self.n += take;
            wide = later;
        }
        Ok(())
    }

    /// ASCII bytes, each widened to one UTF-16LE code unit.
    fn put_ascii(&mut self, out: &mut dyn Sink, mut ascii: &[u8]) -> Result<(), Overflow> {
        while !ascii.is_empty() {
            if self.n + 2 > CHUNK {
                self.flush(out)?;
            }
            let take = ((CHUNK - self.n) / 2).min(ascii.len());
            let (now, later) = ascii.split_at_checked(take).ok_or(Overflow)?;
            if let Some(dst) = self.buf.get_mut(self.n..self.n + 2 * take) {
                for (d, &b) in dst.chunks_exact_mut(2).zip(now) {
                    d.copy_from_slice(&[b, 0]);
                }
            }
            self.n += 2 * take;
            ascii = later;
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut dyn Sink) -> Result<(), Overflow> {
        if self.n > 0 {
            out.write(self.buf.get(..self.n).unwrap_or(&[]))?;
            self.n = 0;
        }
        Ok(())
    }
}

/// Which characters [`XmlWriter::parts`] replaces by entities (all of them are ASCII).
#[derive(Clone, Copy)]
pub(crate) enum Escaping {
    /// Markup: nothing.
    Raw,
    /// Character data: `&`, `<`, `>`.
    Text,
    /// Attribute values: also quotes and the whitespace that attribute normalisation would eat.
    Attr,
    /// Markup already in UTF-16LE (hosts, from [`markup!`]): copied as it is. Boards never
    /// make it (their markup stays narrow, [`Self::Raw`]).
    #[cfg_attr(not(target_pointer_width = "64"), allow(dead_code))]
    Wide,
}

impl Escaping {
    /// Length of the leading run of `bytes` that is ASCII and needs no entity.
    fn plain_run(self, bytes: &[u8]) -> usize {
        if cfg!(target_pointer_width = "64") {
            // Hosts: one loop per escaping, over blocks of 16 (vectorised).
            match self {
                Self::Raw | Self::Wide => run_where(bytes, |b| b.is_ascii()),
                Self::Text => {
                    run_where(bytes, |b| b.is_ascii() && !matches!(b, b'&' | b'<' | b'>'))
                }
                Self::Attr => run_where(bytes, |b| {
                    b.is_ascii()
                        && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'' | b'\r' | b'\n' | b'\t')
                }),
            }
        } else {
            // Boards: one loop for all three (flash).
            let specials = self.specials();
            bytes
                .iter()
                .position(|&b| !plain(specials, b))
                .unwrap_or(bytes.len())
        }
    }

    /// The characters below 64 that this escaping replaces, as bits: every character any
    /// escaping replaces is below 64, so one mask per escaping tells them, with one code path
    /// for all three ([`plain`]).
    #[inline]
    fn specials(self) -> u64 {
        const TEXT: u64 = 1 << b'&' | 1 << b'<' | 1 << b'>';
        const ATTR: u64 = TEXT | 1 << b'"' | 1 << b'\'' | 1 << b'\r' | 1 << b'\n' | 1 << b'\t';
        match self {
            Self::Raw | Self::Wide => 0,
            Self::Text => TEXT,
            Self::Attr => ATTR,
        }
    }

    #[inline]
    fn entity(self, b: u8) -> Option<&'static str> {
        let text = |b| match b {
            b'&' => Some("&amp;"),
            b'<' => Some("&lt;"),
            b'>' => Some("&gt;"),
            _ => None,
        };
        match self {
            Self::Raw | Self::Wide => None,
            Self::Text => text(b),
            Self::Attr => match b {
                b'"' => Some("&quot;"),
                b'\'' => Some("&apos;"),
                b'\r' => Some("&#13;"),
                b'\n' => Some("&#10;"),
                b'\t' => Some("&#9;"),
                _ => text(b),
            },
        }
    }
}

/// Length of the leading run of `bytes` whose bytes all pass `plain`: whole blocks of 16 are
/// checked without an early exit (the compiler vectorises that), the rest byte by byte.
#[inline(always)]
fn run_where(bytes: &[u8], plain: impl Fn(u8) -> bool) -> usize {
    let mut n = 0usize;
    for block in bytes.chunks_exact(16) {
        if !block.iter().fold(true, |all, &b| all & plain(b)) {
            break;
        }
        n += 16;
    }
    let rest = bytes.get(n..).unwrap_or(&[]);
    n + rest.iter().position(|&b| !plain(b)).unwrap_or(rest.len())
}

/// Whether `b` is ASCII and not one of `specials` ([`Escaping::specials`]).
#[inline(always)]
fn plain(specials: u64, b: u8) -> bool {
    b.is_ascii() && (b >= 64 || specials.wrapping_shr(u32::from(b)) & 1 == 0)
}

/// UTF-16LE bytes [`XmlWriter::parts`] writes for `s`, from its UTF-8 lead bytes: one code unit
/// per character below U+10000 (lead bytes up to `0xEF`), two above; entities count in full.
fn utf16_len(s: &str, mode: Escaping) -> usize {
    if cfg!(target_pointer_width = "64") && matches!(mode, Escaping::Wide) {
        return s.len();
    }
    if matches!(mode, Escaping::Raw) && s.is_ascii() {
        return s.len().saturating_mul(2);
    }
    s.bytes().fold(0usize, |len, b| {
        let add = match b {
            0x00..=0x7F => mode.entity(b).map_or(2, |e| e.len().saturating_mul(2)),
            0x80..=0xBF => 0,
            0xC0..=0xEF => 2,
            _ => 4,
        };
        len.saturating_add(add)
    })
}

/// Decimal digits of `v` in `buf`.
pub fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..)
        .and_then(|s| core::str::from_utf8(s).ok())
        .unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::SliceSink;

    #[test]
    fn the_boards_plain_masks_match_the_entities() {
        for mode in [Escaping::Raw, Escaping::Text, Escaping::Attr] {
            for b in 0..=255u8 {
                assert_eq!(
                    plain(mode.specials(), b),
                    b.is_ascii() && mode.entity(b).is_none(),
                    "byte {b}"
                );
                assert_eq!(mode.plain_run(&[b]), usize::from(plain(mode.specials(), b)));
                let run = [b'a'; 20];
                let mut with = run;
                with[17] = b;
                assert_eq!(
                    mode.plain_run(&with),
                    if plain(mode.specials(), b) { 20 } else { 17 }
                );
            }
        }
    }

    #[test]
    fn the_hosts_fast_path_takes_only_plain_pieces_that_fit() {
        let long = "x".repeat(CHUNK);
        for s in [
            "<a>",
            "a&b",
            "q\"t",
            "tab\there",
            "h\u{e9}llo",
            "",
            long.as_str(),
        ] {
            for mode in [Escaping::Raw, Escaping::Text, Escaping::Attr] {
                let mut chunk = Chunk {
                    buf: [0u8; CHUNK],
                    n: 2,
                };
                let all_plain = s.bytes().all(|b| plain(mode.specials(), b));
                let fits = 2 + 2 * s.len() <= CHUNK;
                let taken = chunk.put_plain(s.as_bytes(), |b| plain(mode.specials(), b));
                assert_eq!(taken, all_plain && fits, "{s:?}");
                if taken {
                    assert_eq!(chunk.n, 2 + 2 * s.len(), "{s:?}");
                    for (i, b) in s.bytes().enumerate() {
                        assert_eq!(chunk.buf[2 + 2 * i..4 + 2 * i], [b, 0], "{s:?}");
                    }
                } else {
                    assert_eq!(chunk.n, 2, "left as it was: {s:?}");
                }
            }
        }
    }

    fn utf16(s: &str) -> ([u8; 512], usize) {
        let mut out = [0u8; 512];
        let mut n = 0;
        for u in s.encode_utf16() {
            out[n..n + 2].copy_from_slice(&u.to_le_bytes());
            n += 2;
        }
        (out, n)
    }

    #[test]
    fn writes_escaped_utf16le() {
        let mut buf = [0u8; 512];
        let mut sink = SliceSink::new(&mut buf);
        XmlWriter::with(&mut sink, |w| {
            w.open("P")?;
            w.attr("Name", "a\"<&'é\n")?;
            w.attr_u64("N", 1033)?;
            w.close()?;
            w.text("x<y & z>😀")?;
            w.end("P")?;
            w.open("E")?;
            w.close_empty()?;
            w.hex_upper(&[0x00, 0xAB, 0x7f])
        })
        .unwrap();
        let (want, n) = utf16(
            "<P Name=\"a&quot;&lt;&amp;&apos;é&#10;\" N=\"1033\">x&lt;y &amp; z&gt;😀</P><E />00AB7F",
        );
        assert_eq!(sink.written(), &want[..n]);
    }

    #[test]
    fn long_text_crosses_chunks_and_overflow_is_reported() {
        let s = "0123456789abcdefghij😀".repeat(5);
        let mut buf = [0u8; 512];
        let mut sink = SliceSink::new(&mut buf);
        XmlWriter::with(&mut sink, |w| w.text(&s)).unwrap();
        let (want, n) = utf16(&s);
        assert_eq!(sink.written(), &want[..n]);
        let mut small = [0u8; 10];
        let mut sink = SliceSink::new(&mut small);
        assert_eq!(XmlWriter::with(&mut sink, |w| w.text(&s)), Err(Overflow));
    }

    /// Every writer call, with escapes, non-ASCII and astral text and long runs.
    fn sample(out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            w.open("Root")?;
            w.attr("A", "x\"y'z<&>\r\n\té😀")?;
            w.attr_u64("N", 42)?;
            w.close()?;
            w.element("T", "a<b & c>d ünï 𝄞")?;
            w.text(core::str::from_utf8(&[b'7'; 200]).map_err(|_| Overflow)?)?;
            w.raw("<E")?;
            w.close_empty()?;
            w.hex_upper(&[0xAB; 40])?;
            // A nested emitter with its own writer, after what this one gathered.
            w.nested(&|o: &mut dyn Sink| XmlWriter::with(o, |n| n.text("in<ner")))?;
            w.ascii(b"2026-11-25T10:00:00Z")?;
            for i in 0..40 {
                w.attr_u64("K", i)?;
            }
            w.hex_upper(&[0x5C; 3])?;
            w.end("Root")?;
            w.nul()
        })
    }

    #[test]
    fn skipping_sinks_see_the_same_stream() {
        use crate::sink::{emitted_len, WindowSink};
        let mut whole = [0u8; 4096];
        let mut s = SliceSink::new(&mut whole);
        sample(&mut s).unwrap();
        let total = s.len();
        // The counter gets lengths only: they must add up to the bytes written.
        assert_eq!(emitted_len(&sample).unwrap(), total);
        for win in [1usize, 2, 7, 64, 333, 2048, 4096] {
            let mut joined = [0u8; 4096];
            let mut off = 0;
            while off < total {
                let mut buf = [0u8; 4096];
                let mut w = WindowSink::new(&mut buf[..win], off);
                sample(&mut w).unwrap();
                let n = w.filled();
                assert!(n > 0);
                joined[off..off + n].copy_from_slice(&buf[..n]);
                off += n;
            }
            assert_eq!(&joined[..total], &whole[..total], "window {win}");
        }
    }

    #[test]
    fn utf16_len_matches_the_encoding() {
        for s in ["", "abc", "a&b<c>d\"e'f\r\n\t", "é€😀𝄞x", "&&&"] {
            for mode in [Escaping::Raw, Escaping::Text, Escaping::Attr] {
                let mut buf = [0u8; 256];
                let mut sink = SliceSink::new(&mut buf);
                XmlWriter::with(&mut sink, |w| w.parts(&[(s, mode)])).unwrap();
                assert_eq!(utf16_len(s, mode), sink.len(), "{s:?}");
            }
        }
    }

    #[test]
    fn markup_is_written_as_raw_text_would_be() {
        let write = |wide: bool| {
            let mut buf = [0u8; 64];
            let mut sink = SliceSink::new(&mut buf);
            XmlWriter::with(&mut sink, |w| {
                if wide {
                    w.parts(&[markup!("<a b=\"c\" />"), markup!("")])?;
                    raw!(w, "</x>")
                } else {
                    w.raw("<a b=\"c\" /></x>")
                }
            })
            .unwrap();
            let n = sink.len();
            (buf, n)
        };
        assert_eq!(write(true), write(false));
        assert_eq!(utf16_len(markup!("<a>").0, markup!("<a>").1), 6);
    }

    #[test]
    fn formats_numbers() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), "0");
        assert_eq!(fmt_u64(u64::MAX, &mut b), "18446744073709551615");
    }
}
