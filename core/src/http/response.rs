//! Response heads (through `httparse`) and body framing, for an IO loop that reads into one fixed
//! buffer: [`poll_response`] after every read until it says `Complete`.

use super::chunked::{decode_chunked_in_place, scan_chunked, ChunkedProgress, ChunkedScan};
use super::HttpError;
use crate::time::{DateTime, UnixTime};

/// Most response headers accepted (IIS sends about ten).
pub const MAX_HEADERS: usize = 24;

/// Longest multipart boundary (RFC 2046 §5.1.1).
pub const MAX_BOUNDARY_LEN: usize = 70;

/// Interim (1xx) responses skipped before the final one; more is an error.
const MAX_INTERIM: usize = 4;

/// How the body after the head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BodyFraming {
    /// Exactly this many bytes (also `0` for 204 and 304, which have no body).
    ContentLength(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs until the server closes the connection.
    UntilClose,
}

/// A parsed final response head.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ResponseHead {
    /// Status code, 200–599 (interim 1xx responses are skipped).
    pub status: u16,
    /// Bytes of the head (interim responses included); the body starts at this offset.
    pub head_len: usize,
    /// Body framing.
    pub body: BodyFraming,
    /// The `boundary` of a `multipart/mixed` `Content-Type`, unquoted; empty when the response
    /// is not multipart/mixed (an IIS HTML error page, an empty 200, …).
    pub boundary: heapless::String<72>,
    /// The `Date` header (IMF-fixdate) if present and valid; clockless devices take time from it
    /// (docs/protocol.md §8).
    pub date: Option<UnixTime>,
    /// The server will close the connection after this response (`Connection: close`, HTTP/1.0
    /// without keep-alive, or a body delimited by the close).
    pub connection_close: bool,
}

impl ResponseHead {
    /// Total length of head and body when `Content-Length` gives it, so the IO loop can refuse a
    /// response its buffer cannot hold before reading it.
    pub fn message_len(&self) -> Option<usize> {
        match self.body {
            BodyFraming::ContentLength(n) => self.head_len.checked_add(n),
            BodyFraming::Chunked | BodyFraming::UntilClose => None,
        }
    }
}

/// Parse the response head at the start of `buf`. `Ok(None)`: the head is not complete yet.
///
/// Interim 1xx responses before the final one are skipped (and counted in `head_len`).
/// Refused: anything that is not HTTP/1.x, more than [`MAX_HEADERS`] headers, status codes outside
/// 100–599 and 101, malformed or disagreeing `Content-Length`, `Content-Length` together with
/// `Transfer-Encoding`, any transfer coding but a single `chunked`, a malformed multipart boundary.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HttpError> {
    let mut offset = 0usize;
    for _ in 0..=MAX_INTERIM {
        let rest = buf.get(offset..).ok_or(HttpError::MalformedHead)?;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
            Err(_) => return Err(HttpError::MalformedHead),
        };
        let status = resp.code.ok_or(HttpError::MalformedHead)?;
        if !(100..=599).contains(&status) || status == 101 {
            return Err(HttpError::UnexpectedStatus);
        }
        offset = offset.checked_add(n).ok_or(HttpError::MalformedHead)?;
        if status < 200 {
            continue;
        }
        let http10 = resp.version == Some(0);
        return analyse(status, offset, http10, resp.headers).map(Some);
    }
    Err(HttpError::UnexpectedStatus)
}

fn analyse(
    status: u16,
    head_len: usize,
    http10: bool,
    headers: &[httparse::Header<'_>],
) -> Result<ResponseHead, HttpError> {
    let mut content_length: Option<usize> = None;
    let mut transfer_encoding = false;
    let mut boundary = heapless::String::new();
    let mut content_type_seen = false;
    let mut date = None;
    let mut close = false;
    let mut keep_alive = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let mut values = 0usize;
            for item in list_items(h.value) {
                let n = parse_decimal(item).ok_or(HttpError::InvalidContentLength)?;
                match content_length {
                    Some(prev) if prev != n => return Err(HttpError::ConflictingFraming),
                    _ => content_length = Some(n),
                }
                values += 1;
            }
            if values == 0 {
                return Err(HttpError::InvalidContentLength);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Exactly one coding, `chunked`, over all Transfer-Encoding lines.
            let mut codings = 0usize;
            for item in list_items(h.value) {
                if transfer_encoding || !item.eq_ignore_ascii_case(b"chunked") {
                    return Err(HttpError::UnsupportedTransferEncoding);
                }
                transfer_encoding = true;
                codings += 1;
            }
            if codings == 0 {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            if !content_type_seen {
                content_type_seen = true;
                boundary = multipart_boundary(h.value)?;
            }
        } else if name.eq_ignore_ascii_case("date") {
            if date.is_none() {
                date = parse_http_date(h.value);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for item in list_items(h.value) {
                close |= item.eq_ignore_ascii_case(b"close");
                keep_alive |= item.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let body = if status == 204 || status == 304 {
        BodyFraming::ContentLength(0)
    } else {
        match (transfer_encoding, content_length) {
            (true, Some(_)) => return Err(HttpError::ConflictingFraming),
            (true, None) => BodyFraming::Chunked,
            (false, Some(n)) => BodyFraming::ContentLength(n),
            (false, None) => BodyFraming::UntilClose,
        }
    };
    Ok(ResponseHead {
        status,
        head_len,
        body,
        boundary,
        date,
        connection_close: close || (http10 && !keep_alive) || body == BodyFraming::UntilClose,
    })
}

/// Items of a comma-separated header list, trimmed of optional whitespace, empty items skipped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
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

/// `1*DIGIT` that fits in `usize`.
fn parse_decimal(s: &[u8]) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0usize, |acc, &c| {
        if c.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(usize::from(c - b'0'))
        } else {
            None
        }
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// RFC 2046 `bchars`.
fn is_bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'\''
                | b'('
                | b')'
                | b'+'
                | b'_'
                | b','
                | b'-'
                | b'.'
                | b'/'
                | b':'
                | b'='
                | b'?'
                | b' '
        )
}

/// The boundary of a `multipart/mixed` Content-Type; empty for other media types.
fn multipart_boundary(value: &[u8]) -> Result<heapless::String<72>, HttpError> {
    let mut out = heapless::String::new();
    let (media, mut params) = match value.iter().position(|&b| b == b';') {
        Some(i) => (value.get(..i).unwrap_or(&[]), value.get(i..).unwrap_or(&[])),
        None => (value, &[][..]),
    };
    if !trim_ows(media).eq_ignore_ascii_case(b"multipart/mixed") {
        return Ok(out);
    }
    let mut found = false;
    // *( OWS ";" OWS [ name "=" value ] ), value = token / quoted-string
    loop {
        params = trim_ows(params);
        match params {
            [] => break,
            [b';', rest @ ..] => params = trim_ows(rest),
            _ => return Err(HttpError::InvalidBoundary),
        }
        if matches!(params, [] | [b';', ..]) {
            continue;
        }
        let name_len = params.iter().take_while(|&&b| is_tchar(b)).count();
        let (name, rest) = params
            .split_at_checked(name_len)
            .ok_or(HttpError::InvalidBoundary)?;
        let ([b'=', rest @ ..], false) = (rest, name.is_empty()) else {
            return Err(HttpError::InvalidBoundary);
        };
        let is_boundary = name.eq_ignore_ascii_case(b"boundary");
        if is_boundary && found {
            return Err(HttpError::InvalidBoundary);
        }
        found |= is_boundary;
        let mut value = heapless::Vec::<u8, 72>::new();
        if let [b'"', quoted @ ..] = rest {
            let mut i = 0usize;
            loop {
                let c = match quoted.get(i) {
                    None => return Err(HttpError::InvalidBoundary),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        i += 1;
                        *quoted.get(i).ok_or(HttpError::InvalidBoundary)?
                    }
                    Some(&c) => c,
                };
                if c != b'\t' && (c < 0x20 || c == 0x7F) {
                    return Err(HttpError::InvalidBoundary);
                }
                if is_boundary {
                    value.push(c).map_err(|_| HttpError::InvalidBoundary)?;
                }
                i += 1;
            }
            params = quoted.get(i.saturating_add(1)..).unwrap_or(&[]);
        } else {
            // Lenient: up to `;` or whitespace (servers send `=` and `/` unquoted); the boundary
            // itself is checked against `bchars` below.
            let len = rest
                .iter()
                .take_while(|&&b| b > b' ' && b != 0x7F && b != b';' && b != b'"')
                .count();
            let (token, tail) = rest
                .split_at_checked(len)
                .ok_or(HttpError::InvalidBoundary)?;
            if token.is_empty() {
                return Err(HttpError::InvalidBoundary);
            }
            if is_boundary {
                value
                    .extend_from_slice(token)
                    .map_err(|_| HttpError::InvalidBoundary)?;
            }
            params = tail;
        }
        if is_boundary {
            let ok = !value.is_empty()
                && value.len() <= MAX_BOUNDARY_LEN
                && value.iter().all(|&b| is_bchar(b))
                && value.last() != Some(&b' ');
            let text = core::str::from_utf8(&value).map_err(|_| HttpError::InvalidBoundary)?;
            if !ok {
                return Err(HttpError::InvalidBoundary);
            }
            out.clear();
            out.push_str(text).map_err(|_| HttpError::InvalidBoundary)?;
        }
    }
    Ok(out)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const LONG_DAYS: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];

/// All-digit field (no sign, no space).
fn digits(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 4 {
        return None;
    }
    s.iter().try_fold(0u16, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
    })
}

/// `hh:mm:ss`.
fn time_of_day(s: &[u8]) -> Option<(u8, u8, u8)> {
    let [h1, h2, b':', m1, m2, b':', s1, s2] = *s else {
        return None;
    };
    let two = |a: u8, b: u8| u8::try_from(digits(&[a, b])?).ok();
    Some((two(h1, h2)?, two(m1, m2)?, two(s1, s2)?))
}

fn calendar(year: u16, month: &[u8], day: u16, time: &[u8]) -> Option<UnixTime> {
    let month = MONTHS.iter().position(|m| m.as_slice() == month)?;
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days: [u16; 12] = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day == 0 || day > *month_days.get(month)? {
        return None;
    }
    let (hour, minute, second) = time_of_day(time)?;
    let dt = DateTime {
        year,
        month: u8::try_from(month).ok()?.checked_add(1)?,
        day: u8::try_from(day).ok()?,
        hour,
        minute,
        second,
    };
    UnixTime::from_datetime(&dt)
}

/// Parse an HTTP date (RFC 9110 §5.6.7): the IMF-fixdate servers send
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete forms recipients must accept,
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`, two-digit years 70–99 → 19xx, 00–69 → 20xx, as a
/// clockless device cannot apply the "50 years" rule) and asctime (`Sun Nov  6 08:49:37 1994`).
/// The weekday name is checked for form but not against the date.
pub fn parse_http_date(value: &[u8]) -> Option<UnixTime> {
    let v = trim_ows(value);
    if v.len() == 29 {
        // IMF-fixdate: day-name "," SP 2DIGIT SP month SP 4DIGIT SP hh:mm:ss SP "GMT"
        let (name, rest) = v.split_at(3);
        let [b',', b' ', d1, d2, b' ', m1, m2, m3, b' ', y1, y2, y3, y4, b' ', ref time @ .., b' ', b'G', b'M', b'T'] =
            *rest
        else {
            return None;
        };
        if !DAYS.contains(&name) {
            return None;
        }
        return calendar(
            digits(&[y1, y2, y3, y4])?,
            &[m1, m2, m3],
            digits(&[d1, d2])?,
            time,
        );
    }
    if v.len() == 24 && v.get(3) == Some(&b' ') {
        // asctime: day-name SP month SP ( 2DIGIT / SP 1DIGIT ) SP hh:mm:ss SP 4DIGIT
        let (name, rest) = v.split_at(3);
        let [b' ', m1, m2, m3, b' ', d1, d2, b' ', ref time @ .., b' ', y1, y2, y3, y4] = *rest
        else {
            return None;
        };
        if !DAYS.contains(&name) {
            return None;
        }
        let day = if d1 == b' ' {
            digits(&[d2])?
        } else {
            digits(&[d1, d2])?
        };
        return calendar(digits(&[y1, y2, y3, y4])?, &[m1, m2, m3], day, time);
    }
    // RFC 850: long-day-name "," SP 2DIGIT "-" month "-" 2DIGIT SP hh:mm:ss SP "GMT"
    let comma = v.iter().position(|&b| b == b',')?;
    let (name, rest) = v.split_at(comma);
    let [b',', b' ', d1, d2, b'-', m1, m2, m3, b'-', y1, y2, b' ', ref time @ .., b' ', b'G', b'M', b'T'] =
        *rest
    else {
        return None;
    };
    if !LONG_DAYS.contains(&name) {
        return None;
    }
    let yy = digits(&[y1, y2])?;
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    calendar(year, &[m1, m2, m3], digits(&[d1, d2])?, time)
}

/// Where the body stands, from [`body_complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BodyState {
    /// More bytes are needed: at least `min_len` after the head in total.
    NeedMore {
        /// Lower bound on the bytes after the head.
        min_len: usize,
    },
    /// The body is complete in the first `encoded_len` bytes after the head (chunked framing
    /// included; bytes past it do not belong to this response).
    Complete {
        /// Bytes after the head that belong to this response.
        encoded_len: usize,
    },
}

/// Whether the body following `head` is complete in `after_head` (the bytes after
/// `head.head_len`), without changing them. `eof`: the peer closed the connection; an
/// incomplete body is then [`HttpError::UnexpectedEof`], and an `UntilClose` body is complete.
pub fn body_complete(
    head: &ResponseHead,
    after_head: &[u8],
    eof: bool,
) -> Result<BodyState, HttpError> {
    let state = match head.body {
        BodyFraming::ContentLength(n) if after_head.len() >= n => {
            BodyState::Complete { encoded_len: n }
        }
        BodyFraming::ContentLength(n) => BodyState::NeedMore { min_len: n },
        BodyFraming::Chunked => match scan_chunked(after_head)? {
            ChunkedScan::Complete { encoded_len, .. } => BodyState::Complete { encoded_len },
            ChunkedScan::Incomplete { min_len } => BodyState::NeedMore { min_len },
        },
        BodyFraming::UntilClose if eof => BodyState::Complete {
            encoded_len: after_head.len(),
        },
        BodyFraming::UntilClose => BodyState::NeedMore {
            min_len: after_head.len().saturating_add(1),
        },
    };
    match state {
        BodyState::NeedMore { .. } if eof => Err(HttpError::UnexpectedEof),
        s => Ok(s),
    }
}

/// Result of [`poll_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ResponseProgress {
    /// Read more and call again.
    NeedMore,
    /// The whole response is in the buffer; the body (chunked framing already removed) is
    /// `buf[body]`.
    Complete {
        /// The head.
        head: ResponseHead,
        /// Where the (decoded) body lies in the buffer; starts at `head.head_len`.
        body: core::ops::Range<usize>,
    },
}

impl ResponseProgress {
    /// The body range, when complete.
    pub fn body_range(&self) -> Option<core::ops::Range<usize>> {
        match self {
            ResponseProgress::NeedMore => None,
            ResponseProgress::Complete { body, .. } => Some(body.clone()),
        }
    }
}

/// One step of reading a response into the fixed buffer `buf`, whose first `filled` bytes have
/// arrived; `eof` when the last read returned 0. Call after every read until `Complete`, then
/// stop (a chunked body has been decoded in place, so the buffer no longer holds the wire bytes).
///
/// Fails with [`HttpError::ResponseTooLarge`] as soon as the response is known not to fit in
/// `buf` (a `Content-Length` or chunk size beyond it, or a full buffer that is still incomplete),
/// and with [`HttpError::UnexpectedEof`] when the peer closed early.
// Kept out of line: LTO otherwise inlines it into the driver's task frame, which then sits
// under the signing chain (board stack measurement).
#[inline(never)]
pub fn poll_response(
    buf: &mut [u8],
    filled: usize,
    eof: bool,
) -> Result<ResponseProgress, HttpError> {
    let capacity = buf.len();
    let data = buf
        .get_mut(..filled)
        .ok_or(HttpError::too_large(capacity))?;
    let Some(head) = parse_response_head(data)? else {
        return if eof {
            Err(HttpError::UnexpectedEof)
        } else if filled >= capacity {
            Err(HttpError::too_large(capacity))
        } else {
            Ok(ResponseProgress::NeedMore)
        };
    };
    let body_start = head.head_len;
    let after = data.get_mut(body_start..).ok_or(HttpError::MalformedHead)?;
    match body_complete(&head, after, eof)? {
        BodyState::NeedMore { min_len } => {
            let room = capacity.saturating_sub(body_start);
            if min_len > room || filled >= capacity {
                let needs = body_start.saturating_add(min_len);
                Err(HttpError::ResponseTooLarge {
                    buffer: capacity,
                    at_least: (needs > capacity).then_some(needs),
                })
            } else {
                Ok(ResponseProgress::NeedMore)
            }
        }
        BodyState::Complete { encoded_len } => {
            let body_len = match head.body {
                BodyFraming::Chunked => {
                    let region = after
                        .get_mut(..encoded_len)
                        .ok_or(HttpError::MalformedChunk)?;
                    match decode_chunked_in_place(region)? {
                        ChunkedProgress::Complete { body_len } => body_len,
                        ChunkedProgress::Incomplete => return Err(HttpError::MalformedChunk),
                    }
                }
                BodyFraming::ContentLength(_) | BodyFraming::UntilClose => encoded_len,
            };
            let body_end = body_start
                .checked_add(body_len)
                .ok_or(HttpError::MalformedHead)?;
            Ok(ResponseProgress::Complete {
                head,
                body: body_start..body_end,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IIS_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: multipart/mixed; boundary=\"aAbBcCdDv1234567890VxXyYzZ\"\r\n\
Server: Microsoft-IIS/10.0\r\n\
Transfer-Encoding: chunked\r\n\
X-Powered-By: ASP.NET\r\n\
Date: Mon, 23 Nov 2026 10:00:00 GMT\r\n\
\r\n\
1c\r\n--aAbBcCdDv1234567890VxXyYzZ\r\n\
2;ext=1\r\n--\r\n\
0\r\n\r\n";

    fn head(s: &[u8]) -> ResponseHead {
        parse_response_head(s).unwrap().unwrap()
    }

    #[test]
    fn iis_chunked_reply() {
        let h = head(IIS_CHUNKED);
        assert_eq!(h.status, 200);
        assert_eq!(h.body, BodyFraming::Chunked);
        assert_eq!(h.boundary.as_str(), "aAbBcCdDv1234567890VxXyYzZ");
        assert_eq!(h.date, Some(UnixTime(1_795_428_000)));
        assert!(!h.connection_close);
        assert_eq!(&IIS_CHUNKED[h.head_len..h.head_len + 4], b"1c\r\n");

        let mut buf = [0u8; 512];
        buf[..IIS_CHUNKED.len()].copy_from_slice(IIS_CHUNKED);
        let p = poll_response(&mut buf, IIS_CHUNKED.len(), false).unwrap();
        let r = p.body_range().unwrap();
        assert_eq!(&buf[r], b"--aAbBcCdDv1234567890VxXyYzZ--");
    }

    #[test]
    fn byte_by_byte_reading() {
        let mut buf = [0u8; 512];
        for filled in 0..IIS_CHUNKED.len() {
            buf[..filled].copy_from_slice(&IIS_CHUNKED[..filled]);
            assert_eq!(
                poll_response(&mut buf, filled, false),
                Ok(ResponseProgress::NeedMore),
                "{filled}"
            );
            assert_eq!(
                poll_response(&mut buf, filled, true),
                Err(HttpError::UnexpectedEof),
                "{filled}"
            );
        }
    }

    #[test]
    fn unquoted_boundary_and_content_length() {
        let msg = b"HTTP/1.1 200 OK\r\ncontent-type: Multipart/Mixed ;charset=x; BOUNDARY=abc-123'()+_,./:=?\r\ncontent-length: 5\r\nConnection: close\r\n\r\nhelloEXTRA";
        let h = head(msg);
        assert_eq!(h.boundary.as_str(), "abc-123'()+_,./:=?");
        assert_eq!(h.body, BodyFraming::ContentLength(5));
        assert_eq!(h.message_len(), Some(h.head_len + 5));
        assert!(h.connection_close);
        let mut buf = [0u8; 256];
        buf[..msg.len()].copy_from_slice(msg);
        let p = poll_response(&mut buf, msg.len(), false).unwrap();
        assert_eq!(&buf[p.body_range().unwrap()], b"hello");
    }

    #[test]
    fn boundary_rules() {
        let ct = |v: &str| {
            let mut m = [0u8; 300];
            let s = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: ";
            m[..s.len()].copy_from_slice(s);
            let mut n = s.len();
            m[n..n + v.len()].copy_from_slice(v.as_bytes());
            n += v.len();
            m[n..n + 4].copy_from_slice(b"\r\n\r\n");
            parse_response_head(&m[..n + 4]).map(|h| h.unwrap().boundary)
        };
        assert_eq!(
            ct("multipart/mixed; boundary=\"a b\"").unwrap().as_str(),
            "a b"
        );
        assert_eq!(
            ct("multipart/mixed; boundary=\"a\\bc\"").unwrap().as_str(),
            "abc"
        );
        assert_eq!(
            ct("multipart/mixed;boundary=x;charset=\"utf;8\"")
                .unwrap()
                .as_str(),
            "x"
        );
        assert_eq!(ct("multipart/mixed").unwrap().as_str(), "");
        assert_eq!(ct("multipart/mixed;").unwrap().as_str(), "");
        assert_eq!(ct("text/html; charset=utf-8").unwrap().as_str(), "");
        assert_eq!(ct("text/html; garbage \"").unwrap().as_str(), "");
        let b70 = "0123456789012345678901234567890123456789012345678901234567890123456789";
        let mut s = heapless::String::<128>::new();
        s.push_str("multipart/mixed; boundary=").unwrap();
        s.push_str(b70).unwrap();
        assert_eq!(ct(&s).unwrap().as_str(), b70);
        s.push('0').unwrap();
        assert_eq!(ct(&s), Err(HttpError::InvalidBoundary));
        for bad in [
            "multipart/mixed; boundary=",
            "multipart/mixed; boundary=\"\"",
            "multipart/mixed; boundary=\"abc",
            "multipart/mixed; boundary=\"ab \"",
            "multipart/mixed; boundary=\"a\\\"b\"",
            "multipart/mixed; boundary=a; boundary=b",
            "multipart/mixed; boundary",
            "multipart/mixed; boundary=a b",
            "multipart/mixed; =x",
            "multipart/mixed; boundary=a@b",
        ] {
            assert_eq!(ct(bad), Err(HttpError::InvalidBoundary), "{bad}");
        }
    }

    #[test]
    fn truncated_heads_need_more() {
        let full =
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: 3\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_response_head(&full[..cut]), Ok(None), "{cut}");
        }
        let h = head(full);
        assert_eq!(h.status, 403);
        assert_eq!(h.head_len, full.len());
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"<html><body>Server Error</body></html>",
            b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX:\x01\r\n\r\n",
            b"\x00\x01\x02",
        ] {
            assert_eq!(
                parse_response_head(bad),
                Err(HttpError::MalformedHead),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
        for bad in [
            &b"HTTP/1.1 099 X\r\n\r\n"[..],
            b"HTTP/1.1 600 X\r\n\r\n",
            b"HTTP/1.1 101 Switching\r\n\r\n",
        ] {
            assert_eq!(parse_response_head(bad), Err(HttpError::UnexpectedStatus));
        }
    }

    #[test]
    fn too_many_headers() {
        let mut m = [0u8; 1024];
        let start = b"HTTP/1.1 200 OK\r\n";
        m[..start.len()].copy_from_slice(start);
        let mut n = start.len();
        for _ in 0..=MAX_HEADERS {
            m[n..n + 6].copy_from_slice(b"X: 1\r\n");
            n += 6;
        }
        m[n..n + 2].copy_from_slice(b"\r\n");
        assert_eq!(
            parse_response_head(&m[..n + 2]),
            Err(HttpError::TooManyHeaders)
        );
    }

    #[test]
    fn content_length_rules() {
        let cl = |v: &str| {
            let mut m = [0u8; 200];
            let s = b"HTTP/1.1 200 OK\r\n";
            m[..s.len()].copy_from_slice(s);
            let mut n = s.len();
            m[n..n + v.len()].copy_from_slice(v.as_bytes());
            n += v.len();
            m[n..n + 4].copy_from_slice(b"\r\n\r\n");
            parse_response_head(&m[..n + 4]).map(|h| h.unwrap().body)
        };
        assert_eq!(cl("Content-Length: 42"), Ok(BodyFraming::ContentLength(42)));
        assert_eq!(
            cl("Content-Length: 42, 42\r\nContent-Length: 42"),
            Ok(BodyFraming::ContentLength(42))
        );
        assert_eq!(cl("Content-Length: 0"), Ok(BodyFraming::ContentLength(0)));
        assert_eq!(cl("X-Other: 1"), Ok(BodyFraming::UntilClose));
        assert_eq!(cl("Transfer-Encoding: Chunked"), Ok(BodyFraming::Chunked));
        for bad in [
            "Content-Length: -1",
            "Content-Length: +1",
            "Content-Length: 1x",
            "Content-Length: ",
            "Content-Length: 0x10",
            "Content-Length: 99999999999999999999999",
        ] {
            assert_eq!(cl(bad), Err(HttpError::InvalidContentLength), "{bad}");
        }
        assert_eq!(
            cl("Content-Length: 1, 2"),
            Err(HttpError::ConflictingFraming)
        );
        assert_eq!(
            cl("Content-Length: 1\r\nContent-Length: 2"),
            Err(HttpError::ConflictingFraming)
        );
        assert_eq!(
            cl("Content-Length: 1\r\nTransfer-Encoding: chunked"),
            Err(HttpError::ConflictingFraming)
        );
        for bad in [
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: ",
            "Transfer-Encoding: identity",
        ] {
            assert_eq!(
                cl(bad),
                Err(HttpError::UnsupportedTransferEncoding),
                "{bad}"
            );
        }
    }

    #[test]
    fn no_body_statuses_and_interim() {
        let h = head(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(h.body, BodyFraming::ContentLength(0));
        let m = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let h = head(m);
        assert_eq!(h.status, 200);
        assert_eq!(&m[h.head_len..], b"ok");
        assert_eq!(
            parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"),
            Ok(None)
        );
        assert_eq!(
            parse_response_head(b"HTTP/1.1 100 A\r\n\r\nHTTP/1.1 100 A\r\n\r\nHTTP/1.1 100 A\r\n\r\nHTTP/1.1 100 A\r\n\r\nHTTP/1.1 100 A\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
            Err(HttpError::UnexpectedStatus)
        );
    }

    #[test]
    fn connection_handling() {
        assert!(head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").connection_close);
        assert!(
            !head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
                .connection_close
        );
        assert!(
            head(b"HTTP/1.1 200 OK\r\nConnection: upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n")
                .connection_close
        );
        assert!(!head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").connection_close);
        assert!(head(b"HTTP/1.1 200 OK\r\n\r\n").connection_close);
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UnixTime(784_111_777))
        );
        assert_eq!(
            parse_http_date(b"  Thu, 29 Feb 2024 00:00:00 GMT "),
            Some(UnixTime(1_709_164_800))
        );
        // The obsolete forms.
        assert_eq!(
            parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(UnixTime(784_111_777))
        );
        assert_eq!(
            parse_http_date(b"Sun Nov  6 08:49:37 1994"),
            Some(UnixTime(784_111_777))
        );
        assert_eq!(
            parse_http_date(b"Mon Nov 23 10:00:00 2026"),
            Some(UnixTime(1_795_428_000))
        );
        assert_eq!(
            parse_http_date(b"Monday, 23-Nov-26 10:00:00 GMT"),
            Some(UnixTime(1_795_428_000))
        );
        for bad in [
            &b"Sun, 06-Nov-94 08:49:37 GMT"[..],
            b"Sunday, 06-Nov-1994 08:49:37 GMT",
            b"Funday, 06-Nov-94 08:49:37 GMT",
            b"Sunday, 06-Nov-94 08:49:37 UTC",
            b"Sun Nov 6  08:49:37 1994",
            b"Sun Nov  6 08:49:37 94  ",
            b"Xyz Nov  6 08:49:37 1994",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Nov 1994 8:49:37  GMT",
            b"Sun, 06 Nov 1994 08-49-37 GMT",
            b"Xyz, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 31 Nov 1994 08:49:37 GMT",
            b"Sun, 29 Feb 2023 08:49:37 GMT",
            b"Sun, 00 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 24:49:37 GMT",
            b"Sun, 06 Nov 1994 08:60:37 GMT",
            b"Sun, 06 Nov 1969 08:49:37 GMT",
            b"Sun, 0a Nov 1994 08:49:37 GMT",
            b"Sun,  6 Nov 1994 08:49:37 GMT",
            b"",
        ] {
            assert_eq!(
                parse_http_date(bad),
                None,
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
        // A bad Date is ignored, not an error.
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\nDate: yesterday\r\nContent-Length: 0\r\n\r\n").date,
            None
        );
    }

    #[test]
    fn iis_html_error_page() {
        let m = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nServer: Microsoft-IIS/10.0\r\nContent-Length: 58\r\n\r\n<html><body><h1>Client certificate required</h1></body></html>";
        let mut buf = [0u8; 256];
        buf[..m.len()].copy_from_slice(m);
        match poll_response(&mut buf, m.len(), false).unwrap() {
            ResponseProgress::Complete { head, body } => {
                assert_eq!(head.status, 403);
                assert!(head.boundary.is_empty());
                assert_eq!(body.len(), 58);
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn empty_200() {
        let m = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut buf = [0u8; 64];
        buf[..m.len()].copy_from_slice(m);
        let p = poll_response(&mut buf, m.len(), false).unwrap();
        assert_eq!(p.body_range(), Some(m.len()..m.len()));
    }

    #[test]
    fn until_close_body() {
        let m = b"HTTP/1.0 200 OK\r\n\r\nsome body";
        let mut buf = [0u8; 64];
        buf[..m.len()].copy_from_slice(m);
        assert_eq!(
            poll_response(&mut buf, m.len(), false),
            Ok(ResponseProgress::NeedMore)
        );
        let p = poll_response(&mut buf, m.len(), true).unwrap();
        assert_eq!(&buf[p.body_range().unwrap()], b"some body");
    }

    #[test]
    fn too_large_is_detected_early() {
        let m = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc";
        let mut buf = [0u8; 128];
        buf[..m.len()].copy_from_slice(m);
        // The size required is the head (38 bytes) and the whole body.
        assert_eq!(
            poll_response(&mut buf, m.len(), false),
            Err(HttpError::ResponseTooLarge {
                buffer: 128,
                at_least: Some(m.len() - 3 + 1000)
            })
        );
        let m = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFF\r\nabc";
        buf[..m.len()].copy_from_slice(m);
        let Err(HttpError::ResponseTooLarge {
            buffer: 128,
            at_least: Some(needs),
        }) = poll_response(&mut buf, m.len(), false)
        else {
            panic!("a 64 KiB chunk must be refused with the size it needs")
        };
        assert!(needs > 0xFFFF, "{needs}");
        // A head that does not fit.
        let mut small = *b"HTTP/1.1 200 OK\r\nX: 1";
        let n = small.len();
        assert_eq!(
            poll_response(&mut small, n, false),
            Err(HttpError::too_large(n))
        );
        // UntilClose body filling the buffer.
        let mut full = *b"HTTP/1.1 200 OK\r\n\r\nabcdef";
        let n = full.len();
        assert_eq!(
            poll_response(&mut full, n, false),
            Err(HttpError::ResponseTooLarge {
                buffer: n,
                at_least: Some(n + 1)
            })
        );
        // `filled` beyond the buffer is a caller bug, refused without panicking.
        assert_eq!(
            poll_response(&mut full, n + 1, false),
            Err(HttpError::too_large(n))
        );
    }

    #[test]
    fn short_content_length_body_at_eof() {
        let m = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let mut buf = [0u8; 128];
        buf[..m.len()].copy_from_slice(m);
        assert_eq!(
            poll_response(&mut buf, m.len(), true),
            Err(HttpError::UnexpectedEof)
        );
        assert_eq!(
            poll_response(&mut buf, 0, true),
            Err(HttpError::UnexpectedEof)
        );
    }

    #[test]
    fn bad_chunk_in_response() {
        let m = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let mut buf = [0u8; 128];
        buf[..m.len()].copy_from_slice(m);
        assert_eq!(
            poll_response(&mut buf, m.len(), false),
            Err(HttpError::InvalidChunkSize)
        );
    }
}
