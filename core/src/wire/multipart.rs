//! The two-part multipart/mixed envelope every request travels in (docs/protocol.md §2): the
//! `<Msg>` header (UTF-16LE with BOM) and the octet-stream body part (UTF-16LE body + NUL + CRLF).

use crate::sink::{Emit, Overflow, Sink};
use crate::wire::header::MsgHeader;

/// The boundary the public tools use.
pub const BOUNDARY: &str = "aAbBcCdDv1234567890VxXyYzZ";
/// `Content-Type` of a request.
pub const CONTENT_TYPE: &str = "multipart/mixed; boundary=\"aAbBcCdDv1234567890VxXyYzZ\"";

/// The octet-stream part as sent: body bytes (UTF-16LE XML), the UTF-16 NUL and `\r\n`.
/// `PayloadSignature` is made over exactly these bytes.
#[derive(Clone, Copy)]
pub struct OctetPart<'a> {
    /// The body XML, emitting UTF-16LE without BOM.
    pub body: &'a dyn Emit,
}

impl Emit for OctetPart<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        self.body.emit(out)?;
        out.write(&[0, 0, b'\r', b'\n'])
    }
}

/// The octet-stream part of a report sent as body + attachment (docs/protocol.md §5): the stream `A ‖ B`
/// ([`crate::wire::report_framing::AttachedReport`]: A ends in its own NUL, B has none) and
/// `\r\n`. `PayloadSignature` is made over exactly these bytes.
#[derive(Clone, Copy)]
pub struct AttachedOctetPart<'a> {
    /// `A ‖ B`.
    pub stream: &'a dyn Emit,
}

impl Emit for AttachedOctetPart<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        self.stream.emit(out)?;
        out.write(b"\r\n")
    }
}

/// A whole multipart request body.
#[derive(Clone, Copy)]
pub struct Envelope<'a> {
    /// The header; its `body_length` must be `body`'s UTF-16LE length plus the 2-byte NUL (docs/protocol.md §2).
    pub header: &'a MsgHeader<'a>,
    /// The body XML (UTF-16LE, no BOM).
    pub body: &'a dyn Emit,
}

impl Envelope<'_> {
    /// Everything before the body: the header part and the octet part's own header. Callers that
    /// know its length can skip it (window passes, `agent::signed`).
    pub fn emit_head(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        let b = BOUNDARY.as_bytes();
        out.write(b"--")?;
        out.write(b)?;
        out.write(b"\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n")?;
        out.write(&[0xFF, 0xFE])?;
        self.header.emit(out)?;
        out.write(b"\r\n--")?;
        out.write(b)?;
        out.write(b"\r\ncontent-type: application/octet-stream\r\n\r\n")
    }

    /// Everything after the body: its NUL and CRLF (end of the octet part) and the closing
    /// boundary.
    pub fn emit_tail(out: &mut dyn Sink) -> Result<(), Overflow> {
        out.write(&[0, 0, b'\r', b'\n'])?;
        out.write(b"\r\n--")?;
        out.write(BOUNDARY.as_bytes())?;
        out.write(b"--")
    }
}

impl Envelope<'_> {
    /// [`Envelope::emit_tail`] after a body + attachment stream, which carries its NUL inside.
    pub fn emit_tail_attached(out: &mut dyn Sink) -> Result<(), Overflow> {
        out.write(b"\r\n")?;
        out.write(b"\r\n--")?;
        out.write(BOUNDARY.as_bytes())?;
        out.write(b"--")
    }
}

impl Emit for Envelope<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        self.emit_head(out)?;
        self.body.emit(out)?;
        Self::emit_tail(out)
    }
}
