//! XML writer that encodes UTF-8 input as UTF-16LE on the fly (spec §2: headers and bodies are
//! UTF-16LE), escaping text and attribute values. Hand-written because no maintained no_std XML
//! crate exists (facts.md); it only ever writes the few fixed shapes our messages need.

use crate::sink::{Overflow, Sink};

/// Characters are encoded through a small stack buffer to keep sink calls few.
const CHUNK: usize = 64;

/// Writes XML markup and escaped content as UTF-16LE into a sink.
pub struct XmlWriter<'s> {
    out: &'s mut dyn Sink,
}

impl<'s> XmlWriter<'s> {
    /// A writer over `out`.
    pub fn new(out: &'s mut dyn Sink) -> Self {
        Self { out }
    }

    /// The underlying sink, for nested emitters that write UTF-16LE themselves.
    pub fn sink(&mut self) -> &mut dyn Sink {
        &mut *self.out
    }

    /// The UTF-16LE byte order mark (the `<Msg>` header part starts with one).
    pub fn bom(&mut self) -> Result<(), Overflow> {
        self.out.write(&[0xFF, 0xFE])
    }

    /// The UTF-16 NUL that terminates a message body.
    pub fn nul(&mut self) -> Result<(), Overflow> {
        self.out.write(&[0, 0])
    }

    fn encode(
        &mut self,
        s: &str,
        escape: fn(char) -> Option<&'static str>,
    ) -> Result<(), Overflow> {
        let mut buf = [0u8; CHUNK];
        let mut n = 0usize;
        for c in s.chars() {
            if let Some(entity) = escape(c) {
                self.flush(&buf, &mut n)?;
                self.raw(entity)?;
                continue;
            }
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units).iter() {
                if n + 2 > CHUNK {
                    self.flush(&buf, &mut n)?;
                }
                if let Some(slot) = buf.get_mut(n..n + 2) {
                    slot.copy_from_slice(&unit.to_le_bytes());
                }
                n += 2;
            }
        }
        self.flush(&buf, &mut n)
    }

    fn flush(&mut self, buf: &[u8; CHUNK], n: &mut usize) -> Result<(), Overflow> {
        if *n > 0 {
            self.out.write(buf.get(..*n).unwrap_or(&[]))?;
            *n = 0;
        }
        Ok(())
    }

    /// Markup written as is (the caller guarantees it is well-formed).
    pub fn raw(&mut self, s: &str) -> Result<(), Overflow> {
        self.encode(s, |_| None)
    }

    /// Character data, with `&`, `<` and `>` escaped.
    pub fn text(&mut self, s: &str) -> Result<(), Overflow> {
        self.encode(s, escape_text)
    }

    /// `<name`
    pub fn open(&mut self, name: &str) -> Result<(), Overflow> {
        self.raw("<")?;
        self.raw(name)
    }

    /// ` name="value"` with the value escaped.
    pub fn attr(&mut self, name: &str, value: &str) -> Result<(), Overflow> {
        self.raw(" ")?;
        self.raw(name)?;
        self.raw("=\"")?;
        self.encode(value, escape_attr)?;
        self.raw("\"")
    }

    /// ` name="123"`
    pub fn attr_u64(&mut self, name: &str, value: u64) -> Result<(), Overflow> {
        let mut buf = [0u8; 20];
        self.attr(name, fmt_u64(value, &mut buf))
    }

    /// `>` closing a start tag.
    pub fn close(&mut self) -> Result<(), Overflow> {
        self.raw(">")
    }

    /// ` />` closing an empty element, as the public tools write it.
    pub fn close_empty(&mut self) -> Result<(), Overflow> {
        self.raw(" />")
    }

    /// `</name>`
    pub fn end(&mut self, name: &str) -> Result<(), Overflow> {
        self.raw("</")?;
        self.raw(name)?;
        self.raw(">")
    }

    /// `<name>text</name>` with the text escaped.
    pub fn element(&mut self, name: &str, text: &str) -> Result<(), Overflow> {
        self.open(name)?;
        self.close()?;
        self.text(text)?;
        self.end(name)
    }

    /// Upper-case hex of `bytes` as character data (certificates, signatures).
    pub fn hex_upper(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut buf = [0u8; CHUNK];
        for chunk in bytes.chunks(CHUNK / 4) {
            let mut n = 0;
            for b in chunk {
                for nibble in [b >> 4, b & 0x0F] {
                    let c = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                    if let Some(slot) = buf.get_mut(n..n + 2) {
                        slot.copy_from_slice(&[c, 0]);
                    }
                    n += 2;
                }
            }
            self.out.write(buf.get(..n).unwrap_or(&[]))?;
        }
        Ok(())
    }

    /// ASCII bytes (already known to need no escaping, e.g. formatted numbers, GUIDs, dates).
    pub fn ascii(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.raw(core::str::from_utf8(bytes).map_err(|_| Overflow)?)
    }
}

fn escape_text(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

fn escape_attr(c: char) -> Option<&'static str> {
    match c {
        '"' => Some("&quot;"),
        '\'' => Some("&apos;"),
        '\r' => Some("&#13;"),
        '\n' => Some("&#10;"),
        '\t' => Some("&#9;"),
        _ => escape_text(c),
    }
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
        let mut w = XmlWriter::new(&mut sink);
        w.open("P").unwrap();
        w.attr("Name", "a\"<&'é\n").unwrap();
        w.attr_u64("N", 1033).unwrap();
        w.close().unwrap();
        w.text("x<y & z>😀").unwrap();
        w.end("P").unwrap();
        w.open("E").unwrap();
        w.close_empty().unwrap();
        w.hex_upper(&[0x00, 0xAB, 0x7f]).unwrap();
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
        XmlWriter::new(&mut sink).text(&s).unwrap();
        let (want, n) = utf16(&s);
        assert_eq!(sink.written(), &want[..n]);
        let mut small = [0u8; 10];
        let mut sink = SliceSink::new(&mut small);
        assert_eq!(XmlWriter::new(&mut sink).text(&s), Err(Overflow));
    }

    #[test]
    fn formats_numbers() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), "0");
        assert_eq!(fmt_u64(u64::MAX, &mut b), "18446744073709551615");
    }
}
