//! Re-addressing a queued report to the SMSID the site knows now. A device the site forgot
//! registers afresh and gets another SMSID; what it queued meanwhile names the old one in the
//! body (`<ClientID>`, UTF-16LE). [`SmsidRewrite`] streams such a body with every occurrence of
//! the old SMSID text replaced by the new one: both are `GUID:` + 36 characters, so the length,
//! and with it every range and signature computed over the stream, stays consistent.

use crate::guid::{Smsid, SMSID_TEXT_LEN};
use crate::sink::{Emit, Overflow, Sink};

/// UTF-16LE bytes of an SMSID's text.
const PATTERN_LEN: usize = SMSID_TEXT_LEN * 2;

fn utf16le(id: Smsid) -> [u8; PATTERN_LEN] {
    let text = id.to_text();
    let mut out = [0u8; PATTERN_LEN];
    for (pair, &c) in out.chunks_exact_mut(2).zip(text.iter()) {
        if let Some(lo) = pair.first_mut() {
            *lo = c;
        }
    }
    out
}

/// `inner`'s bytes with the UTF-16LE text of `from` replaced by that of `to`.
pub struct SmsidRewrite<'a> {
    inner: &'a dyn Emit,
    from: [u8; PATTERN_LEN],
    to: [u8; PATTERN_LEN],
}

impl<'a> SmsidRewrite<'a> {
    /// Rewrite `from` into `to` in `inner`.
    pub fn new(inner: &'a dyn Emit, from: Smsid, to: Smsid) -> Self {
        Self {
            inner,
            from: utf16le(from),
            to: utf16le(to),
        }
    }
}

impl Emit for SmsidRewrite<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        let mut m = Matcher {
            out,
            from: &self.from,
            to: &self.to,
            pending: [0; PATTERN_LEN],
            held: 0,
        };
        self.inner.emit(&mut m)?;
        m.flush()
    }
}

/// Holds back the longest tail of the stream that may still begin the pattern.
struct Matcher<'o, 'p> {
    out: &'o mut dyn Sink,
    from: &'p [u8; PATTERN_LEN],
    to: &'p [u8; PATTERN_LEN],
    pending: [u8; PATTERN_LEN],
    held: usize,
}

impl Matcher<'_, '_> {
    fn flush(&mut self) -> Result<(), Overflow> {
        let held = self.pending.get(..self.held).unwrap_or(&[]);
        self.out.write(held)?;
        self.held = 0;
        Ok(())
    }

    fn push(&mut self, b: u8) -> Result<(), Overflow> {
        if let Some(slot) = self.pending.get_mut(self.held) {
            *slot = b;
            self.held += 1;
        }
        // Release bytes from the front until what is held is a prefix of the pattern again.
        let mut start = 0;
        while start < self.held {
            let held = self.pending.get(start..self.held).unwrap_or(&[]);
            if self.from.starts_with(held) {
                break;
            }
            start += 1;
        }
        if start > 0 {
            let released = self.pending.get(..start).unwrap_or(&[]);
            self.out.write(released)?;
            self.pending.copy_within(start..self.held, 0);
            self.held -= start;
        }
        if self.held == PATTERN_LEN {
            self.out.write(self.to)?;
            self.held = 0;
        }
        Ok(())
    }
}

impl Sink for Matcher<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let mut rest = bytes;
        // Outside a possible match, whole runs go out at once.
        while !rest.is_empty() {
            if self.held == 0 {
                let first = self.from.first().copied().unwrap_or(0);
                let run = rest.iter().position(|&b| b == first).unwrap_or(rest.len());
                let (plain, tail) = rest.split_at(run);
                self.out.write(plain)?;
                rest = tail;
                if rest.is_empty() {
                    break;
                }
            }
            let (&b, tail) = match rest.split_first() {
                Some(x) => x,
                None => break,
            };
            self.push(b)?;
            rest = tail;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::guid::Guid;
    use std::vec::Vec;

    struct V(Vec<u8>);
    impl Sink for V {
        fn write(&mut self, b: &[u8]) -> Result<(), Overflow> {
            self.0.extend_from_slice(b);
            Ok(())
        }
    }

    fn u16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn every_occurrence_is_replaced_across_any_chunking() {
        let old = Smsid(Guid([0x11; 16]));
        let new = Smsid(Guid([0xAB; 16]));
        let text = |id: Smsid| std::string::String::from_utf8(id.to_text().to_vec()).unwrap();
        // A near miss (GUID: then other hex), two real ones, one at the very end.
        let body = u16le(&std::format!(
            "<ClientID>GUID:1111</ClientID>GGUID:<a>{}</a><b>{}</b>{}",
            text(old),
            text(old),
            text(old)
        ));
        let want = u16le(&std::format!(
            "<ClientID>GUID:1111</ClientID>GGUID:<a>{}</a><b>{}</b>{}",
            text(new),
            text(new),
            text(new)
        ));
        for chunk in [1usize, 2, 3, 7, 81, 82, 83, 4096] {
            let inner = |out: &mut dyn Sink| {
                for c in body.chunks(chunk) {
                    out.write(c)?;
                }
                Ok(())
            };
            let mut v = V(Vec::new());
            SmsidRewrite::new(&inner, old, new).emit(&mut v).unwrap();
            assert_eq!(v.0, want, "chunk {chunk}");
        }
        // Nothing to replace: the same bytes.
        let inner = |out: &mut dyn Sink| out.write(&want);
        let mut v = V(Vec::new());
        SmsidRewrite::new(&inner, old, new).emit(&mut v).unwrap();
        assert_eq!(v.0, want);
    }
}
