//! Discovery and inventory reports as real MPs take them (docs/protocol.md §5): the octet stream is
//! `A ‖ B`, A (the body) the UTF-16LE of the *header-only* report + `00 00`, B (the attachment) `FF
//! FE` + the UTF-16LE of the *full* report, no NUL; the `<Msg>` header gives both ranges. A report
//! sent as a single body is answered 200 and dropped by a real MP.
//!
//! [`AttachedReport`] makes that stream from the full report as it was queued (its bytes stream
//! from flash on boards), in constant RAM: one counting pass finds where `</ReportHeader>` ends,
//! and every emission writes the full report's head up to there, `<ReportBody/></Report>` and
//! the NUL, then the BOM and the whole report again.

use crate::sink::{Emit, Overflow, Sink};

/// `</ReportHeader>` in UTF-16LE.
const HEADER_END: [u8; 30] = utf16::<30>("</ReportHeader>");
/// What closes the header-only report after `</ReportHeader>`, in UTF-16LE.
const EMPTY_BODY: [u8; 44] = utf16::<44>("<ReportBody/></Report>");

// Evaluated only in const items: an index out of range fails the build, never a running device.
#[allow(clippy::indexing_slicing)]
const fn utf16<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() && 2 * i < N {
        out[2 * i] = b[i];
        i += 1;
    }
    out
}

/// Why a report cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FramingError {
    /// The report has no `</ReportHeader>` (it is not a `<Report>`).
    NoReportHeader,
    /// The report could not be emitted, or a length overflowed.
    Emit,
}

impl core::fmt::Display for FramingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NoReportHeader => {
                "the report has no </ReportHeader>, so it cannot be sent as body + attachment"
            }
            Self::Emit => "the report could not be emitted to frame it",
        })
    }
}

impl core::error::Error for FramingError {}

/// A full report framed as body + attachment.
#[derive(Clone, Copy)]
pub struct AttachedReport<'a> {
    full: &'a dyn Emit,
    /// Bytes of the full report up to the end of `</ReportHeader>`.
    head_len: usize,
    full_len: usize,
}

/// Counts the stream and notes where the first `</ReportHeader>` ends.
struct FindHeaderEnd {
    pos: usize,
    matched: usize,
    end: Option<usize>,
}

impl Sink for FindHeaderEnd {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        for &b in bytes {
            self.pos = self.pos.checked_add(1).ok_or(Overflow)?;
            if self.end.is_some() {
                continue;
            }
            // The pattern's first byte, '<', occurs in it only at its start: a failed match can
            // only restart at the current byte.
            if HEADER_END.get(self.matched) == Some(&b) {
                self.matched += 1;
            } else {
                self.matched = usize::from(HEADER_END.first() == Some(&b));
            }
            if self.matched == HEADER_END.len() {
                self.end = Some(self.pos);
            }
        }
        Ok(())
    }
}

/// Passes on the first `left` bytes and drops the rest.
struct Prefix<'o> {
    out: &'o mut dyn Sink,
    left: usize,
}

impl Sink for Prefix<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let n = bytes.len().min(self.left);
        if n > 0 {
            self.out.write(bytes.get(..n).unwrap_or(&[]))?;
            self.left -= n;
        }
        Ok(())
    }
}

impl<'a> AttachedReport<'a> {
    /// Frame `full` (a `<Report>` emitting UTF-16LE without BOM). One counting pass.
    pub fn new(full: &'a dyn Emit) -> Result<Self, FramingError> {
        let mut find = FindHeaderEnd {
            pos: 0,
            matched: 0,
            end: None,
        };
        full.emit(&mut find).map_err(|_| FramingError::Emit)?;
        let head_len = find.end.ok_or(FramingError::NoReportHeader)?;
        Ok(Self {
            full,
            head_len,
            full_len: find.pos,
        })
    }

    /// Bytes of A, the header-only report and its NUL: `<Body Length>` and the attachment's
    /// offset.
    pub fn body_len(&self) -> usize {
        self.head_len
            .saturating_add(EMPTY_BODY.len())
            .saturating_add(2)
    }

    /// Bytes of B, the BOM and the full report: `<Attachment Length>`.
    pub fn attachment_len(&self) -> usize {
        self.full_len.saturating_add(2)
    }
}

impl Emit for AttachedReport<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        self.full.emit(&mut Prefix {
            out: &mut *out,
            left: self.head_len,
        })?;
        out.write(&EMPTY_BODY)?;
        out.write(&[0, 0, 0xFF, 0xFE])?;
        self.full.emit(out)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::sink::emitted_len;
    use std::string::String;
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

    fn text(b: &[u8]) -> String {
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).unwrap()
    }

    #[test]
    fn body_is_the_header_only_report_and_the_attachment_the_full_one() {
        let full = "<Report><ReportHeader><Identification>é</Identification></ReportHeader><ReportBody><Instance>1</Instance><Instance>2</Instance></ReportBody></Report>";
        let bytes = u16le(full);
        for chunk in [1usize, 3, 7, 64, 4096] {
            let emit = |out: &mut dyn Sink| {
                for c in bytes.chunks(chunk) {
                    out.write(c)?;
                }
                Ok(())
            };
            let framed = AttachedReport::new(&emit).unwrap();
            let mut v = V(Vec::new());
            framed.emit(&mut v).unwrap();
            assert_eq!(emitted_len(&framed).unwrap(), v.0.len());
            let (a, b) = v.0.split_at(framed.body_len());
            assert_eq!(b.len(), framed.attachment_len());
            assert_eq!(&a[a.len() - 2..], &[0, 0], "A ends in its NUL");
            assert_eq!(
                text(&a[..a.len() - 2]),
                "<Report><ReportHeader><Identification>é</Identification></ReportHeader><ReportBody/></Report>"
            );
            assert_eq!(&b[..2], &[0xFF, 0xFE]);
            assert_eq!(text(&b[2..]), full, "chunk {chunk}");
            assert!(!b.ends_with(&[0, 0]));
        }
    }

    #[test]
    fn a_stream_that_is_no_report_is_refused() {
        let emit = |out: &mut dyn Sink| out.write(&u16le("<Status><Type>x</Type></Status>"));
        assert_eq!(
            AttachedReport::new(&emit).err(),
            Some(FramingError::NoReportHeader)
        );
        // A near miss of the pattern.
        let emit = |out: &mut dyn Sink| out.write(&u16le("<</ReportHeade</ReportHeader>"));
        let framed = AttachedReport::new(&emit).unwrap();
        assert_eq!(
            framed.head_len,
            u16le("<</ReportHeade</ReportHeader>").len()
        );
    }
}
