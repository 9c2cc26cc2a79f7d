//! Inbound replies: the two-part multipart envelope (docs/protocol.md §2), the `<Msg>` header (§3),
//! the UTF-16LE body, and the `ClientRegistrationResponse` (§4).
//!
//! Pipeline, all in caller memory: HTTP body → [`split_multipart`] → [`header_xml`] +
//! [`parse_msg_header`] → [`payload_xml`] → [`parse_registration_response`];
//! [`parse_registration_reply`] runs all of it with one scratch buffer.
//!
//! Decisions (docs/protocol.md §4 "clients ignore attributes they do not know"):
//! - unknown attributes and child elements are ignored everywhere, but the XML must be well formed
//!   to its end (see [`super::xml_reader`]);
//! - `Status` is required and must be a decimal `i32`; `SMSID` may be absent or empty with
//!   status 0 and 1 (real MPs answer a confirmation without one: docs/protocol.md §4; what that
//!   means is the registrar's to decide), must parse when present there, and is **ignored** (not
//!   even parsed) with any other status, since the spec gives an SMSID only with 0 and 1;
//! - what a status code means depends on the site's generation ([`StatusNumbering`]);
//! - `ApprovalStatus`, when present, must be a decimal `i32`; `TimeStamp` is informative and
//!   `None` when absent or not `YYYY-MM-DDThh:mm:ssZ`.

use super::utf16::{utf16le_to_utf8, Utf16Error};
use super::xml_reader::{Attrs, Event, Reader, XmlError, XmlText};
use crate::guid::{Guid, Smsid};
use crate::time::DateTime;

/// Scratch used by [`parse_registration_reply`] on the stack (the header, then the body, as UTF-8).
pub const REPLY_SCRATCH_LEN: usize = 2048;

/// Why a reply could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReplyError {
    /// The HTTP body is empty (an MP's quiet "nothing to say" or refusal, docs/protocol.md §4, §6).
    Empty,
    /// No usable boundary: the response was not `multipart/mixed` (e.g. an IIS HTML error page)
    /// or the boundary is longer than 70 bytes.
    NoBoundary,
    /// The body does not start with (or contain, after a preamble) the first delimiter.
    MissingDelimiter,
    /// A delimiter line or a part header is malformed.
    MalformedMultipart,
    /// The closing `--B--` delimiter is missing (a truncated body).
    MissingCloseDelimiter,
    /// Not exactly two parts.
    PartCount,
    /// A part's `content-type` is not `text/plain` (header) / `application/octet-stream` (body).
    UnexpectedPartType,
    /// A part is not valid UTF-16LE.
    Utf16(Utf16Error),
    /// The XML is not well formed, or uses a DOCTYPE or unknown entity.
    Xml(XmlError),
    /// The root element is not the expected one (`Msg`, `ClientRegistrationResponse`).
    WrongRoot,
    /// `<Body Length>` or `Offset` is not a decimal number, or `<Body>` appears twice.
    BadBodyLength,
    /// `<CorrelationID>` is not a GUID.
    BadCorrelationId,
    /// The octet stream is shorter than `<Body Offset + Length>`.
    PayloadTruncated,
    /// The body is zlib-compressed (the `zlib-compress` hook); devices never ask for that.
    Compressed,
    /// No `Status` attribute.
    MissingStatus,
    /// `Status` is not a decimal `i32`.
    BadStatus,
    /// `SMSID` is not `GUID:` + a GUID.
    BadSmsid,
    /// A registration answered Status 0 or 1 without an `SMSID` (the registrar's judgement:
    /// a confirmation may be answered so).
    MissingSmsid,
    /// `ApprovalStatus` is not a decimal `i32`.
    BadApprovalStatus,
    /// The scratch buffer is too small for the decoded XML.
    BufferTooSmall,
}

impl From<XmlError> for ReplyError {
    fn from(e: XmlError) -> Self {
        ReplyError::Xml(e)
    }
}

impl From<Utf16Error> for ReplyError {
    fn from(e: Utf16Error) -> Self {
        match e {
            Utf16Error::BufferTooSmall => ReplyError::BufferTooSmall,
            e => ReplyError::Utf16(e),
        }
    }
}

/// The two parts of a reply envelope, as bytes (still UTF-16LE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Envelope<'a> {
    /// The `<Msg>` header part (UTF-16LE with BOM).
    pub header: &'a [u8],
    /// The octet-stream part (UTF-16LE body, NUL, CRLF; or zlib data).
    pub payload: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let tail = hay.get(from..)?;
    if needle.is_empty() {
        return Some(from);
    }
    tail.windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i.saturating_add(from))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether `value` is the media type `expected` (parameters ignored, case-insensitive).
fn media_type_is(value: &[u8], expected: &[u8]) -> bool {
    let media = value.split(|&b| b == b';').next().unwrap_or(&[]);
    trim_ows(media).eq_ignore_ascii_case(expected)
}

/// Split a reply body into its two parts (docs/protocol.md §2):
/// `--B\r\ncontent-type: …\r\n\r\n<part1>\r\n--B\r\ncontent-type: …\r\n\r\n<part2>\r\n--B--`.
///
/// Part header names are case-insensitive; a part without `content-type` is accepted, one with
/// an unexpected type is not. A preamble before the first delimiter, transport padding after
/// delimiters and anything after the closing delimiter (a trailing CRLF) are tolerated.
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Envelope<'a>, ReplyError> {
    if body.is_empty() {
        return Err(ReplyError::Empty);
    }
    let b = boundary.as_bytes();
    if b.is_empty() || b.len() > 70 {
        return Err(ReplyError::NoBoundary);
    }
    // "\r\n--" + boundary; the first delimiter may lack the CRLF when it opens the body.
    let mut delim = heapless::Vec::<u8, 74>::new();
    delim
        .extend_from_slice(b"\r\n--")
        .map_err(|_| ReplyError::NoBoundary)?;
    delim
        .extend_from_slice(b)
        .map_err(|_| ReplyError::NoBoundary)?;
    let dash_b = delim.get(2..).unwrap_or(&[]);
    let mut pos = if body.starts_with(dash_b) {
        dash_b.len()
    } else {
        find(body, &delim, 0)
            .ok_or(ReplyError::MissingDelimiter)?
            .saturating_add(delim.len())
    };
    let mut parts: [&'a [u8]; 2] = [&[], &[]];
    let mut count = 0usize;
    loop {
        let rest = body.get(pos..).unwrap_or(&[]);
        if rest.starts_with(b"--") {
            break;
        }
        // Transport padding, then CRLF.
        let pad = rest
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        let after_pad = rest.get(pad..).unwrap_or(&[]);
        if after_pad.is_empty() || after_pad == b"\r" {
            return Err(ReplyError::MissingCloseDelimiter);
        }
        if !after_pad.starts_with(b"\r\n") {
            return Err(ReplyError::MalformedMultipart);
        }
        pos = pos.saturating_add(pad).saturating_add(2);
        // Part headers, up to an empty line.
        let mut content_type: Option<&[u8]> = None;
        loop {
            let eol = find(body, b"\r\n", pos).ok_or(ReplyError::MissingCloseDelimiter)?;
            let line = body.get(pos..eol).unwrap_or(&[]);
            pos = eol.saturating_add(2);
            if line.is_empty() {
                break;
            }
            let colon = line
                .iter()
                .position(|&c| c == b':')
                .ok_or(ReplyError::MalformedMultipart)?;
            let (name, value) = line.split_at(colon);
            if name.is_empty() || !name.iter().all(|&c| c.is_ascii_graphic()) {
                return Err(ReplyError::MalformedMultipart);
            }
            if name.eq_ignore_ascii_case(b"content-type") {
                content_type = Some(value.get(1..).unwrap_or(&[]));
            }
        }
        let end = find(body, &delim, pos).ok_or(ReplyError::MissingCloseDelimiter)?;
        let content = body.get(pos..end).unwrap_or(&[]);
        let expected: &[u8] = if count == 0 {
            b"text/plain"
        } else {
            b"application/octet-stream"
        };
        if content_type.is_some_and(|ct| !media_type_is(ct, expected)) {
            return Err(ReplyError::UnexpectedPartType);
        }
        let slot = parts.get_mut(count).ok_or(ReplyError::PartCount)?;
        *slot = content;
        count += 1;
        pos = end.saturating_add(delim.len());
    }
    if count != 2 {
        return Err(ReplyError::PartCount);
    }
    let [header, payload] = parts;
    Ok(Envelope { header, payload })
}

/// Decode the header part (UTF-16LE, BOM optional) into `scratch`; trailing NULs are dropped.
pub fn header_xml<'b>(header: &[u8], scratch: &'b mut [u8]) -> Result<&'b str, ReplyError> {
    Ok(utf16le_to_utf8(header, scratch)?.trim_end_matches('\0'))
}

/// What the agent needs from a reply's `<Msg>` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsgHeaderInfo {
    /// `<Body Length>`: UTF-16LE body bytes including the terminating NUL.
    pub body_length: Option<usize>,
    /// `<Body Offset>` (0 when absent): where the body starts in the octet stream.
    pub body_offset: usize,
    /// The `zlib-compress` hook is listed: the octet stream is compressed.
    pub compressed: bool,
    /// `<CorrelationID>`: the ID of the request this answers.
    pub correlation_id: Option<Guid>,
}

fn parse_usize(t: XmlText<'_>) -> Option<usize> {
    let mut buf = [0u8; 24];
    let s = t
        .unescape_into(&mut buf)
        .ok()?
        .trim_matches([' ', '\t', '\n']);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_i32(t: XmlText<'_>) -> Option<i32> {
    let mut buf = [0u8; 24];
    let s = t
        .unescape_into(&mut buf)
        .ok()?
        .trim_matches([' ', '\t', '\n']);
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse the `<Msg>` header of a reply (docs/protocol.md §3). Unknown elements are skipped.
pub fn parse_msg_header(xml: &str) -> Result<MsgHeaderInfo, ReplyError> {
    let mut r = Reader::new(xml);
    let mut info = MsgHeaderInfo::default();
    match r.next_event()? {
        Some(Event::StartTag { name: "Msg", .. }) => {}
        Some(Event::EmptyTag { name: "Msg", .. }) => {
            r.finish()?;
            return Ok(info);
        }
        _ => return Err(ReplyError::WrongRoot),
    }
    let mut body_seen = false;
    while let Some(ev) = r.next_event()? {
        let (name, attrs, empty) = match ev {
            Event::StartTag { name, attrs } => (name, attrs, false),
            Event::EmptyTag { name, attrs } => (name, attrs, true),
            Event::EndTag { .. } | Event::Text(_) | Event::CData(_) => continue,
        };
        match name {
            "Body" => {
                if body_seen {
                    return Err(ReplyError::BadBodyLength);
                }
                body_seen = true;
                if let Some(len) = attrs.get("Length") {
                    info.body_length = Some(parse_usize(len).ok_or(ReplyError::BadBodyLength)?);
                }
                if let Some(off) = attrs.get("Offset") {
                    info.body_offset = parse_usize(off).ok_or(ReplyError::BadBodyLength)?;
                }
                if !empty {
                    r.skip_element()?;
                }
            }
            "CorrelationID" if !empty => {
                let text = r.read_text()?;
                let mut buf = [0u8; 48];
                let s = text
                    .unescape_into(&mut buf)
                    .map_err(|_| ReplyError::BadCorrelationId)?
                    .trim_matches([' ', '\t', '\n']);
                info.correlation_id =
                    Some(Guid::parse(s.as_bytes()).ok_or(ReplyError::BadCorrelationId)?);
            }
            "Hooks" if !empty => {
                let hooks_depth = r.depth();
                loop {
                    // Direct children of <Hooks> only (a start tag has been pushed already).
                    match r.next_event()? {
                        Some(Event::StartTag { attrs, .. })
                            if r.depth() == hooks_depth.saturating_add(1) =>
                        {
                            info.compressed |= is_zlib_hook(attrs);
                        }
                        Some(Event::EmptyTag { attrs, .. }) if r.depth() == hooks_depth => {
                            info.compressed |= is_zlib_hook(attrs);
                        }
                        Some(Event::EndTag { .. }) if r.depth() < hooks_depth => break,
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            _ if !empty => r.skip_element()?,
            _ => {}
        }
    }
    Ok(info)
}

fn is_zlib_hook(attrs: Attrs<'_>) -> bool {
    attrs.get("Name").is_some_and(|n| n.eq_str("zlib-compress"))
}

/// Decode the reply body from the octet-stream part into `scratch`.
///
/// With `<Body Length>` the body is exactly `payload[offset..offset + length]` (the terminating
/// UTF-16 NUL is inside it and dropped); without it, the rest of the part minus a trailing CRLF
/// and NUL. Compressed bodies are refused with [`ReplyError::Compressed`].
pub fn payload_xml<'b>(
    payload: &[u8],
    header: &MsgHeaderInfo,
    scratch: &'b mut [u8],
) -> Result<&'b str, ReplyError> {
    if header.compressed {
        return Err(ReplyError::Compressed);
    }
    let from = header.body_offset;
    let body = match header.body_length {
        Some(n) => {
            let end = from.checked_add(n).ok_or(ReplyError::PayloadTruncated)?;
            payload.get(from..end).ok_or(ReplyError::PayloadTruncated)?
        }
        None => {
            let rest = payload.get(from..).ok_or(ReplyError::PayloadTruncated)?;
            rest.strip_suffix(b"\r\n").unwrap_or(rest)
        }
    };
    let body = match body.strip_suffix(&[0, 0]) {
        Some(b) if body.len() % 2 == 0 => b,
        _ => body,
    };
    Ok(utf16le_to_utf8(body, scratch)?.trim_end_matches('\0'))
}

/// `ClientRegistrationResponse/@Status` (docs/protocol.md §4), as [`StatusNumbering`] reads the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegistrationStatus {
    /// 0: registered.
    Registered,
    /// 1: pending approval (SMSID given; no policy or inventory until approved).
    Pending,
    /// 2 (ConfigMgr 2007): could not process; send again.
    RetryLater,
    /// 3 (ConfigMgr 2007): rejected.
    Rejected,
    /// 2 (current sites): the server asks the client to reset: register afresh.
    Reset,
    /// 3 (current sites): blocked, or the message was incorrect.
    Error,
    /// 4 (current sites): the certificate conflicts with another client's: make a new key and
    /// certificate, then register.
    CertificateReset,
    /// Anything else.
    Other(i32),
}

/// How a site numbers `Status` (docs/protocol.md §4): ConfigMgr 2007's SDK, or current sites' enum
/// `ClientRegistrationStatus` (numbered in its order by a public tool; the record is not sure,
/// so the choice lives here and in [`crate::profile`] only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StatusNumbering {
    /// 0 registered, 1 pending, 2 send again, 3 rejected.
    Sms2007,
    /// 0 Registered, 1 Pending, 2 Reset, 3 Error, 4 CertificateReset.
    #[default]
    Current,
}

impl StatusNumbering {
    /// What `code` means on such a site.
    pub fn status(self, code: i32) -> RegistrationStatus {
        match (self, code) {
            (_, 0) => RegistrationStatus::Registered,
            (_, 1) => RegistrationStatus::Pending,
            (Self::Sms2007, 2) => RegistrationStatus::RetryLater,
            (Self::Sms2007, 3) => RegistrationStatus::Rejected,
            (Self::Current, 2) => RegistrationStatus::Reset,
            (Self::Current, 3) => RegistrationStatus::Error,
            (Self::Current, 4) => RegistrationStatus::CertificateReset,
            (_, n) => RegistrationStatus::Other(n),
        }
    }
}

impl RegistrationStatus {
    /// From the wire value, numbered as ConfigMgr 2007 does.
    pub fn from_code(code: i32) -> Self {
        StatusNumbering::Sms2007.status(code)
    }

    /// The wire value of this status (in whichever numbering has it).
    pub fn code(self) -> i32 {
        match self {
            Self::Registered => 0,
            Self::Pending => 1,
            Self::RetryLater | Self::Reset => 2,
            Self::Rejected | Self::Error => 3,
            Self::CertificateReset => 4,
            Self::Other(n) => n,
        }
    }
}

impl RegistrationResponse {
    /// `Status` read with `numbering`.
    pub fn status_in(&self, numbering: StatusNumbering) -> RegistrationStatus {
        numbering.status(self.code)
    }
}

/// A parsed `ClientRegistrationResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RegistrationResponse {
    /// `Status`, read with the ConfigMgr 2007 numbering (see [`Self::status_in`]).
    pub status: RegistrationStatus,
    /// `Status` as sent.
    pub code: i32,
    /// `SMSID`: always `Some` for `Registered` and `Pending`, always `None` otherwise.
    pub smsid: Option<Smsid>,
    /// `ApprovalStatus` (`-1`: not approved), sent by current MPs.
    pub approval_status: Option<i32>,
    /// `TimeStamp`, when present and well formed.
    pub timestamp: Option<DateTime>,
}

/// Parse a `ClientRegistrationResponse` body (docs/protocol.md §4); see the module doc for what is strict and
/// what is ignored.
pub fn parse_registration_response(xml: &str) -> Result<RegistrationResponse, ReplyError> {
    let mut r = Reader::new(xml);
    let (attrs, empty) = match r.next_event()? {
        Some(Event::StartTag {
            name: "ClientRegistrationResponse",
            attrs,
        }) => (attrs, false),
        Some(Event::EmptyTag {
            name: "ClientRegistrationResponse",
            attrs,
        }) => (attrs, true),
        _ => return Err(ReplyError::WrongRoot),
    };
    let code = parse_i32(attrs.get("Status").ok_or(ReplyError::MissingStatus)?)
        .ok_or(ReplyError::BadStatus)?;
    let status = RegistrationStatus::from_code(code);
    let smsid = match (status, attrs.get("SMSID")) {
        (RegistrationStatus::Registered | RegistrationStatus::Pending, Some(value)) => {
            let mut buf = [0u8; 64];
            let s = value
                .unescape_into(&mut buf)
                .map_err(|_| ReplyError::BadSmsid)?;
            if s.is_empty() {
                None
            } else {
                Some(Smsid::parse(s.as_bytes()).ok_or(ReplyError::BadSmsid)?)
            }
        }
        _ => None,
    };
    let approval_status = match attrs.get("ApprovalStatus") {
        Some(v) => Some(parse_i32(v).ok_or(ReplyError::BadApprovalStatus)?),
        None => None,
    };
    let timestamp = attrs.get("TimeStamp").and_then(|t| {
        let mut buf = [0u8; 24];
        DateTime::parse_iso8601(t.unescape_into(&mut buf).ok()?.as_bytes())
    });
    if !empty {
        r.skip_element()?;
    }
    r.finish()?;
    Ok(RegistrationResponse {
        status,
        code,
        smsid,
        approval_status,
        timestamp,
    })
}

/// The whole pipeline for a registration reply, with caller scratch: split the envelope, read the
/// header, decode the body, parse it. `scratch` holds the header's UTF-8, then the body's.
pub fn parse_registration_reply_in(
    body: &[u8],
    boundary: &str,
    scratch: &mut [u8],
) -> Result<RegistrationResponse, ReplyError> {
    let env = split_multipart(body, boundary)?;
    let info = parse_msg_header(header_xml(env.header, scratch)?)?;
    parse_registration_response(payload_xml(env.payload, &info, scratch)?)
}

/// [`parse_registration_reply_in`] with a [`REPLY_SCRATCH_LEN`]-byte scratch on the stack.
// Kept out of line: LTO otherwise inlines it into the driver's task frame, which then sits
// under the signing chain (board stack measurement).
#[inline(never)]
pub fn parse_registration_reply(
    body: &[u8],
    boundary: &str,
) -> Result<RegistrationResponse, ReplyError> {
    let mut scratch = [0u8; REPLY_SCRATCH_LEN];
    parse_registration_reply_in(body, boundary, &mut scratch)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::xml_reader::XmlErrorKind;
    use super::*;
    use std::vec::Vec;

    const B: &str = "aAbBcCdDv1234567890VxXyYzZ";
    const SMSID: &str = "GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42";

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn header(body_len: usize, extra: &str) -> std::string::String {
        std::format!(
            "<Msg SchemaVersion=\"1.1\"><ID>{{5DD100CD-DF1D-45F5-BA17-A327F43465F8}}</ID><SourceHost>MP01</SourceHost>\
             <CorrelationID>{{11111111-2222-3333-4444-555555555555}}</CorrelationID>{extra}\
             <Body Type=\"ByteRange\" Offset=\"0\" Length=\"{body_len}\"/><Payload Type=\"inline\"/></Msg>"
        )
    }

    /// A reply as an MP sends it: header with BOM, body + NUL + CRLF, closing delimiter + CRLF.
    fn envelope(body_xml: &str, hooks: &str) -> Vec<u8> {
        let mut body = utf16(body_xml);
        body.extend_from_slice(&[0, 0]);
        let mut out = Vec::new();
        out.extend_from_slice(
            std::format!("--{B}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend(utf16(&header(body.len(), hooks)));
        out.extend_from_slice(
            std::format!("\r\n--{B}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(std::format!("\r\n--{B}--\r\n").as_bytes());
        out
    }

    fn reg(attrs: &str) -> std::string::String {
        std::format!("<ClientRegistrationResponse ResponseType=\"Registration\" TimeStamp=\"2026-11-23T10:00:00Z\" {attrs}/>")
    }

    #[test]
    fn full_registration_reply() {
        let msg = envelope(
            &reg(&std::format!(
                "Status=\"0\" SMSID=\"{SMSID}\" ApprovalStatus=\"-1\" Future=\"x\""
            )),
            "",
        );
        let r = parse_registration_reply(&msg, B).unwrap();
        assert_eq!(r.status, RegistrationStatus::Registered);
        assert_eq!(r.smsid, Smsid::parse(SMSID.as_bytes()));
        assert_eq!(r.approval_status, Some(-1));
        assert_eq!(
            r.timestamp,
            DateTime::parse_iso8601(b"2026-11-23T10:00:00Z")
        );

        let env = split_multipart(&msg, B).unwrap();
        let mut scratch = [0u8; 2048];
        let info = parse_msg_header(header_xml(env.header, &mut scratch).unwrap()).unwrap();
        assert_eq!(
            info.correlation_id,
            Guid::parse(b"{11111111-2222-3333-4444-555555555555}")
        );
        assert!(!info.compressed);
        assert_eq!(info.body_offset, 0);
        assert_eq!(info.body_length, Some(env.payload.len() - 2));
    }

    #[test]
    fn multipart_layouts() {
        let spec = b"--B\r\ncontent-type: text/plain\r\n\r\nHEAD\r\n--B\r\ncontent-type: application/octet-stream\r\n\r\nPAY\r\n--B--";
        assert_eq!(
            split_multipart(spec, "B").unwrap(),
            Envelope {
                header: b"HEAD",
                payload: b"PAY"
            }
        );
        let mut tolerant = Vec::from(&b"preamble\r\n--B  \r\nCONTENT-TYPE:Text/Plain;charset=UTF-16\r\nX-Other: 1\r\n\r\nHEAD\r\n--B\t\r\n\r\nPAY\r\n--B--\r\n"[..]);
        assert_eq!(
            split_multipart(&tolerant, "B").unwrap(),
            Envelope {
                header: b"HEAD",
                payload: b"PAY"
            }
        );
        tolerant.extend_from_slice(b"epilogue");
        assert!(split_multipart(&tolerant, "B").is_ok());
        // Empty parts are parts.
        assert_eq!(
            split_multipart(b"--B\r\n\r\n\r\n--B\r\n\r\n\r\n--B--", "B").unwrap(),
            Envelope {
                header: b"",
                payload: b""
            }
        );
    }

    #[test]
    fn multipart_errors() {
        assert_eq!(split_multipart(b"", B), Err(ReplyError::Empty));
        assert_eq!(split_multipart(b"--\r\n", ""), Err(ReplyError::NoBoundary));
        let long = "x".repeat(71);
        assert_eq!(split_multipart(b"x", &long), Err(ReplyError::NoBoundary));
        let html = b"<html><body><h1>Server Error</h1></body></html>";
        assert_eq!(split_multipart(html, B), Err(ReplyError::MissingDelimiter));
        let full: &[u8] = b"--B\r\ncontent-type: text/plain\r\n\r\nHEAD\r\n--B\r\ncontent-type: application/octet-stream\r\n\r\nPAY\r\n--B--";
        for cut in 1..full.len() - 2 {
            let e = split_multipart(&full[..cut], "B").unwrap_err();
            assert!(
                matches!(
                    e,
                    ReplyError::MissingCloseDelimiter | ReplyError::MissingDelimiter
                ),
                "{cut}: {e:?}"
            );
        }
        // "--B-" is cut inside the closing delimiter.
        assert_eq!(
            split_multipart(&full[..full.len() - 1], "B"),
            Err(ReplyError::MalformedMultipart)
        );
        assert_eq!(
            split_multipart(b"--B\r\n\r\nONE\r\n--B--", "B"),
            Err(ReplyError::PartCount)
        );
        assert_eq!(split_multipart(b"--B--", "B"), Err(ReplyError::PartCount));
        assert_eq!(
            split_multipart(
                b"--B\r\n\r\n1\r\n--B\r\n\r\n2\r\n--B\r\n\r\n3\r\n--B--",
                "B"
            ),
            Err(ReplyError::PartCount)
        );
        assert_eq!(
            split_multipart(b"--Bx\r\n\r\n1\r\n--B--", "B"),
            Err(ReplyError::MalformedMultipart)
        );
        assert_eq!(
            split_multipart(b"--B\r\nno colon\r\n\r\n1\r\n--B--", "B"),
            Err(ReplyError::MalformedMultipart)
        );
        assert_eq!(
            split_multipart(b"--B\r\n: v\r\n\r\n1\r\n--B--", "B"),
            Err(ReplyError::MalformedMultipart)
        );
        assert_eq!(
            split_multipart(
                b"--B\r\ncontent-type: text/html\r\n\r\n1\r\n--B\r\n\r\n2\r\n--B--",
                "B"
            ),
            Err(ReplyError::UnexpectedPartType)
        );
        assert_eq!(
            split_multipart(
                b"--B\r\n\r\n1\r\n--B\r\nContent-Type: text/plain\r\n\r\n2\r\n--B--",
                "B"
            ),
            Err(ReplyError::UnexpectedPartType)
        );
    }

    #[test]
    fn boundary_mismatch() {
        let msg = envelope(&reg(&std::format!("Status=\"0\" SMSID=\"{SMSID}\"")), "");
        assert_eq!(
            parse_registration_reply(&msg, "other"),
            Err(ReplyError::MissingDelimiter)
        );
    }

    #[test]
    fn statuses_and_smsid_rules() {
        let parse = |a: &str| parse_registration_response(&reg(a));
        let id = Smsid::parse(SMSID.as_bytes());
        assert_eq!(
            parse(&std::format!("Status=\"1\" SMSID=\"{SMSID}\""))
                .unwrap()
                .status,
            RegistrationStatus::Pending
        );
        assert_eq!(
            parse(&std::format!("Status=\"1\" SMSID=\"{SMSID}\""))
                .unwrap()
                .smsid,
            id
        );
        let r = parse(&std::format!("Status=\"2\" SMSID=\"{SMSID}\"")).unwrap();
        assert_eq!((r.status, r.smsid), (RegistrationStatus::RetryLater, None));
        let r = parse("Status=\"3\" SMSID=\"garbage\"").unwrap();
        assert_eq!((r.status, r.smsid), (RegistrationStatus::Rejected, None));
        assert_eq!(
            parse("Status=\"7\"").unwrap().status,
            RegistrationStatus::Other(7)
        );
        assert_eq!(
            parse("Status=\"-5\"").unwrap().status,
            RegistrationStatus::Other(-5)
        );
        assert_eq!(parse("SMSID=\"x\""), Err(ReplyError::MissingStatus));
        for bad in [
            "Status=\"\"",
            "Status=\"zero\"",
            "Status=\"0x1\"",
            "Status=\"+0\"",
            "Status=\"99999999999\"",
            "Status=\"1 2\"",
        ] {
            assert_eq!(parse(bad), Err(ReplyError::BadStatus), "{bad}");
        }
        // No SMSID (a real MP's answer to a confirmation): the registrar judges it.
        assert_eq!(parse("Status=\"0\"").map(|r| r.smsid), Ok(None));
        assert_eq!(parse("Status=\"1\" SMSID=\"\"").map(|r| r.smsid), Ok(None));
        assert_eq!(
            parse("Status=\"0\" SMSID=\"1af488d8-7b42-4842-a4bd-b3a2842bbc42\""),
            Err(ReplyError::BadSmsid)
        );
        assert_eq!(
            parse("Status=\"0\" SMSID=\"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc4\""),
            Err(ReplyError::BadSmsid)
        );
        assert_eq!(
            parse(&std::format!(
                "Status=\"0\" SMSID=\"{SMSID}{}\"",
                "0".repeat(100)
            )),
            Err(ReplyError::BadSmsid)
        );
        assert_eq!(
            parse(&std::format!(
                "Status=\"0\" SMSID=\"{SMSID}\" ApprovalStatus=\"no\""
            )),
            Err(ReplyError::BadApprovalStatus)
        );
        // Escaped values and whitespace around numbers.
        let r = parse("Status=\" &#48; \" SMSID=\"GUID&#58;1af488d8-7b42-4842-a4bd-b3a2842bbc42\"")
            .unwrap();
        assert_eq!((r.status, r.smsid), (RegistrationStatus::Registered, id));
        // A bad timestamp is ignored.
        let xml = std::format!(
            "<ClientRegistrationResponse Status=\"0\" SMSID=\"{SMSID}\" TimeStamp=\"yesterday\"/>"
        );
        assert_eq!(parse_registration_response(&xml).unwrap().timestamp, None);
    }

    #[test]
    fn registration_body_shapes() {
        let with_children = std::format!(
            "<?xml version=\"1.0\"?><ClientRegistrationResponse Status=\"0\" SMSID=\"{SMSID}\"><Future><x/></Future></ClientRegistrationResponse>"
        );
        assert_eq!(
            parse_registration_response(&with_children).unwrap().status,
            RegistrationStatus::Registered
        );
        assert_eq!(
            parse_registration_response("<Other Status=\"0\"/>"),
            Err(ReplyError::WrongRoot)
        );
        assert_eq!(
            parse_registration_response("<Msg/>"),
            Err(ReplyError::WrongRoot)
        );
        assert!(matches!(
            parse_registration_response(""),
            Err(ReplyError::Xml(XmlError {
                kind: XmlErrorKind::NoRoot,
                ..
            }))
        ));
        assert!(matches!(
            parse_registration_response("<ClientRegistrationResponse Status=\"0\""),
            Err(ReplyError::Xml(XmlError {
                kind: XmlErrorKind::UnexpectedEof,
                ..
            }))
        ));
        assert!(matches!(
            parse_registration_response("<ClientRegistrationResponse Status=\"3\"/><x/>"),
            Err(ReplyError::Xml(XmlError {
                kind: XmlErrorKind::ContentOutsideRoot,
                ..
            }))
        ));
        assert!(matches!(
            parse_registration_response("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///\">]><ClientRegistrationResponse Status=\"&e;\"/>"),
            Err(ReplyError::Xml(XmlError { kind: XmlErrorKind::Doctype, .. }))
        ));
        assert!(matches!(
            parse_registration_response("<ClientRegistrationResponse Status=\"3\" Status=\"0\"/>"),
            Err(ReplyError::Xml(XmlError {
                kind: XmlErrorKind::DuplicateAttribute,
                ..
            }))
        ));
    }

    #[test]
    fn msg_header_details() {
        let info = parse_msg_header(&header(10, "<Hooks><Hook2 Name=\"clientauth\"><Property Name=\"zlib-compress\">x</Property></Hook2><Hook3 Name=\"zlib-compress\"/></Hooks>")).unwrap();
        assert!(info.compressed);
        assert_eq!(info.body_length, Some(10));
        let info = parse_msg_header(&header(
            10,
            "<Hooks><Hook2 Name=\"clientauth\"><Property Name=\"zlib-compress\"/></Hook2></Hooks>",
        ))
        .unwrap();
        assert!(!info.compressed);
        assert_eq!(
            parse_msg_header("<Msg/>").unwrap(),
            MsgHeaderInfo::default()
        );
        assert_eq!(
            parse_msg_header("<Msg><Body Length=\"x\"/></Msg>"),
            Err(ReplyError::BadBodyLength)
        );
        assert_eq!(
            parse_msg_header("<Msg><Body Length=\"-1\"/></Msg>"),
            Err(ReplyError::BadBodyLength)
        );
        assert_eq!(
            parse_msg_header("<Msg><Body Length=\"99999999999999999999999\"/></Msg>"),
            Err(ReplyError::BadBodyLength)
        );
        assert_eq!(
            parse_msg_header("<Msg><Body Length=\"1\"/><Body Length=\"2\"/></Msg>"),
            Err(ReplyError::BadBodyLength)
        );
        assert_eq!(
            parse_msg_header("<Msg><Body Offset=\"4\" Length=\"2\"></Body></Msg>")
                .unwrap()
                .body_offset,
            4
        );
        assert_eq!(
            parse_msg_header("<Msg><CorrelationID>nope</CorrelationID></Msg>"),
            Err(ReplyError::BadCorrelationId)
        );
        assert_eq!(
            parse_msg_header("<Msg><CorrelationID><x/></CorrelationID></Msg>"),
            Err(ReplyError::Xml(XmlError::new(
                XmlErrorKind::UnexpectedElement,
                20
            )))
        );
        assert_eq!(parse_msg_header("<Message/>"), Err(ReplyError::WrongRoot));
        assert!(matches!(
            parse_msg_header("<Msg><Hooks>"),
            Err(ReplyError::Xml(_))
        ));
    }

    #[test]
    fn payload_decoding() {
        let mut scratch = [0u8; 256];
        let mut p = utf16("<a/>");
        p.extend_from_slice(&[0, 0, b'\r', b'\n']);
        let info = MsgHeaderInfo {
            body_length: Some(10),
            ..Default::default()
        };
        assert_eq!(payload_xml(&p, &info, &mut scratch).unwrap(), "<a/>");
        // Without Body Length: the part minus CRLF and NUL.
        assert_eq!(
            payload_xml(&p, &MsgHeaderInfo::default(), &mut scratch).unwrap(),
            "<a/>"
        );
        assert_eq!(
            payload_xml(&p[..8], &MsgHeaderInfo::default(), &mut scratch).unwrap(),
            "<a/>"
        );
        // Offset skips an attachment.
        let mut q = utf16("att");
        q.extend_from_slice(&p);
        let info = MsgHeaderInfo {
            body_length: Some(10),
            body_offset: 6,
            ..Default::default()
        };
        assert_eq!(payload_xml(&q, &info, &mut scratch).unwrap(), "<a/>");
        // Truncated, odd, unpaired, compressed, too small.
        let info = MsgHeaderInfo {
            body_length: Some(100),
            ..Default::default()
        };
        assert_eq!(
            payload_xml(&p, &info, &mut scratch),
            Err(ReplyError::PayloadTruncated)
        );
        let info = MsgHeaderInfo {
            body_length: Some(usize::MAX),
            body_offset: 2,
            ..Default::default()
        };
        assert_eq!(
            payload_xml(&p, &info, &mut scratch),
            Err(ReplyError::PayloadTruncated)
        );
        let info = MsgHeaderInfo {
            body_length: Some(9),
            ..Default::default()
        };
        assert_eq!(
            payload_xml(&p, &info, &mut scratch),
            Err(ReplyError::Utf16(Utf16Error::OddLength))
        );
        let info = MsgHeaderInfo {
            body_length: Some(4),
            ..Default::default()
        };
        assert_eq!(
            payload_xml(&[b'a', 0, 0x00, 0xD8], &info, &mut scratch),
            Err(ReplyError::Utf16(Utf16Error::UnpairedSurrogate {
                offset: 2
            }))
        );
        let info = MsgHeaderInfo {
            compressed: true,
            ..Default::default()
        };
        assert_eq!(
            payload_xml(&p, &info, &mut scratch),
            Err(ReplyError::Compressed)
        );
        assert_eq!(
            payload_xml(&p, &MsgHeaderInfo::default(), &mut scratch[..3]),
            Err(ReplyError::BufferTooSmall)
        );
        // Empty body.
        let info = MsgHeaderInfo {
            body_length: Some(0),
            ..Default::default()
        };
        assert_eq!(payload_xml(&p, &info, &mut scratch).unwrap(), "");
    }

    #[test]
    fn compressed_reply_is_refused() {
        let msg = envelope(
            &reg("Status=\"0\""),
            "<Hooks><Hook3 Name=\"zlib-compress\"/></Hooks>",
        );
        assert_eq!(
            parse_registration_reply(&msg, B),
            Err(ReplyError::Compressed)
        );
    }

    #[test]
    fn small_scratch_is_reported() {
        let msg = envelope(&reg(&std::format!("Status=\"0\" SMSID=\"{SMSID}\"")), "");
        let mut scratch = [0u8; 64];
        assert_eq!(
            parse_registration_reply_in(&msg, B, &mut scratch),
            Err(ReplyError::BufferTooSmall)
        );
    }

    #[test]
    fn html_and_empty_bodies() {
        assert_eq!(parse_registration_reply(b"", B), Err(ReplyError::Empty));
        assert_eq!(
            parse_registration_reply(b"<html>403</html>", ""),
            Err(ReplyError::NoBoundary)
        );
        // A multipart reply whose body is empty (Body Length 0): the XML has no root.
        let msg = envelope("", "");
        assert!(matches!(
            parse_registration_reply(&msg, B),
            Err(ReplyError::Xml(XmlError {
                kind: XmlErrorKind::NoRoot,
                ..
            }))
        ));
    }
}
