//! The message envelope (docs/protocol.md §2), parsed independently of the core: the
//! `multipart/mixed` split, UTF-16LE decoding (header with BOM, body without BOM + `00 00` + CRLF),
//! the optional zlib compression of the octet-stream part, the `ByteRange` checks, and slicing the
//! exact received bytes of one XML element (what a registration signature covers). Also builds
//! reply envelopes.

use std::io::Read;

/// The boundary every ConfigMgr message uses (requests and replies).
pub const BOUNDARY: &str = "aAbBcCdDv1234567890VxXyYzZ";

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("content-type is not multipart/mixed with a boundary: {0:?}")]
    ContentType(String),
    #[error("multipart: {0}")]
    Multipart(&'static str),
    #[error("expected 2 parts (header, body), found {0}")]
    PartCount(usize),
    #[error("part {index}: content-type {found:?}, expected {expected}")]
    PartType {
        index: usize,
        found: String,
        expected: &'static str,
    },
    #[error("UTF-16: {0}")]
    Utf16(&'static str),
    #[error("zlib: {0}")]
    Zlib(String),
    #[error("body: {0}")]
    Body(String),
    #[error("element <{0}>: {1}")]
    Element(&'static str, &'static str),
}

/// One part of a multipart body: its headers (names lower-cased) and its exact bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    pub headers: Vec<(String, String)>,
    pub data: &'a [u8],
}

impl Part<'_> {
    /// The value of a part header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The boundary parameter of a `multipart/mixed` content type (quoted or not).
pub fn boundary_from_content_type(ct: &str) -> Result<String, EnvelopeError> {
    let err = || EnvelopeError::ContentType(ct.to_string());
    let mut params = ct.split(';');
    let mime = params.next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("multipart/mixed") {
        return Err(err());
    }
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .map(|v| v.strip_suffix('"').ok_or_else(err))
                .unwrap_or(Ok(v))?;
            // RFC 2046: 1..70 characters; we also refuse control characters.
            if v.is_empty() || v.len() > 70 || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(err());
            }
            return Ok(v.to_string());
        }
    }
    Err(err())
}

/// The first `needle` in `hay` at or after `from` (memchr's `memmem`: SIMD, where a scan for the
/// first byte stopped at every `\r` or `<`); none for an empty needle.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay.get(from..)?, needle).map(|p| p + from)
}

/// [`find`] for UTF-16LE text: the first match at an even byte offset (a code-unit boundary).
fn find_utf16(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let p = find(hay, needle, at)?;
        if p.is_multiple_of(2) {
            return Some(p);
        }
        at = p + 1;
    }
}

/// Splits a multipart body: `--B\r\n headers \r\n\r\n data \r\n--B … \r\n--B--`. Nothing but an
/// optional CRLF may follow the closing delimiter; no preamble is accepted.
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, EnvelopeError> {
    let open = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    if !body.starts_with(open.as_bytes()) {
        return Err(EnvelopeError::Multipart(
            "body does not start with the boundary",
        ));
    }
    let mut pos = open.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if let Some(after) = rest.strip_prefix(b"--") {
            if after.is_empty() || after == b"\r\n" {
                break;
            }
            return Err(EnvelopeError::Multipart("data after the closing boundary"));
        }
        if !rest.starts_with(b"\r\n") {
            return Err(EnvelopeError::Multipart("boundary not followed by CRLF"));
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos)
            .ok_or(EnvelopeError::Multipart("part headers not terminated"))?;
        let mut headers = Vec::new();
        if head_end > pos {
            let head = std::str::from_utf8(&body[pos..head_end])
                .map_err(|_| EnvelopeError::Multipart("part headers are not ASCII"))?;
            for line in head.split("\r\n") {
                let (name, value) = line
                    .split_once(':')
                    .ok_or(EnvelopeError::Multipart("part header line without ':'"))?;
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let data_start = head_end + 4;
        let data_end = find(body, delim.as_bytes(), data_start).ok_or(EnvelopeError::Multipart(
            "part not terminated by a boundary",
        ))?;
        parts.push(Part {
            headers,
            data: &body[data_start..data_end],
        });
        pos = data_end + delim.len();
        if parts.len() > 16 {
            return Err(EnvelopeError::Multipart("too many parts"));
        }
    }
    Ok(parts)
}

/// The two parts of a message, type-checked: (header part bytes, octet-stream part bytes).
pub fn message_parts<'a>(parts: &[Part<'a>]) -> Result<(&'a [u8], &'a [u8]), EnvelopeError> {
    if parts.len() != 2 {
        return Err(EnvelopeError::PartCount(parts.len()));
    }
    let ct0 = parts[0].header("content-type").unwrap_or("");
    let mime0 = ct0.split(';').next().unwrap_or("").trim();
    let charset_ok = ct0
        .split(';')
        .skip(1)
        .any(|p| p.trim().eq_ignore_ascii_case("charset=UTF-16"));
    if !mime0.eq_ignore_ascii_case("text/plain") || !charset_ok {
        return Err(EnvelopeError::PartType {
            index: 0,
            found: ct0.to_string(),
            expected: "text/plain; charset=UTF-16",
        });
    }
    let ct1 = parts[1].header("content-type").unwrap_or("");
    if !ct1.trim().eq_ignore_ascii_case("application/octet-stream") {
        return Err(EnvelopeError::PartType {
            index: 1,
            found: ct1.to_string(),
            expected: "application/octet-stream",
        });
    }
    Ok((parts[0].data, parts[1].data))
}

/// Decodes UTF-16LE to a string, refusing odd lengths, unpaired surrogates and NUL characters.
pub fn decode_utf16le(bytes: &[u8]) -> Result<String, EnvelopeError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(EnvelopeError::Utf16("odd number of bytes"));
    }
    // Straight from the bytes into a string sized for ASCII text (no unit vector, no regrowth):
    // the ASCII run at the start (all of a registration, in practice) byte by byte, the rest
    // through the general decoder.
    let ascii = bytes
        .chunks_exact(2)
        .take_while(|c| c[1] == 0 && c[0].is_ascii())
        .count();
    // ASCII bytes are UTF-8 as they are: collect the low bytes and let `String::from_utf8`
    // confirm it (a vectorised check) instead of pushing char by char.
    let mut narrow = Vec::with_capacity(bytes.len() / 2);
    narrow.extend(bytes[..ascii * 2].iter().step_by(2));
    let mut s = String::from_utf8(narrow).map_err(|_| EnvelopeError::Utf16("not ASCII"))?;
    let units = bytes[ascii * 2..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    for c in char::decode_utf16(units) {
        s.push(c.map_err(|_| EnvelopeError::Utf16("unpaired surrogate"))?);
    }
    if s.contains('\0') {
        return Err(EnvelopeError::Utf16("NUL character inside the text"));
    }
    Ok(s)
}

/// Decodes the `<Msg>` header part: UTF-16LE that must start with the FF FE BOM. A single
/// trailing NUL character is tolerated (some senders terminate every string).
pub fn decode_header_part(data: &[u8]) -> Result<String, EnvelopeError> {
    let rest = data
        .strip_prefix(&[0xFF, 0xFE])
        .ok_or(EnvelopeError::Utf16(
            "header part does not start with the UTF-16LE BOM FF FE",
        ))?;
    let rest = rest.strip_suffix(&[0, 0]).unwrap_or(rest);
    decode_utf16le(rest)
}

/// Inflates a zlib stream, refusing output beyond `limit` bytes (zip bombs) and trailing garbage.
pub fn zlib_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, EnvelopeError> {
    let mut dec = flate2::read::ZlibDecoder::new(data);
    let mut out = Vec::new();
    (&mut dec)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| EnvelopeError::Zlib(e.to_string()))?;
    if out.len() > limit {
        return Err(EnvelopeError::Zlib(format!(
            "decompresses to more than {limit} bytes"
        )));
    }
    if dec.total_in() != data.len() as u64 {
        return Err(EnvelopeError::Zlib(
            "data after the end of the zlib stream".into(),
        ));
    }
    Ok(out)
}

/// Compresses with zlib (default level).
pub fn zlib_compress(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// A byte range of the octet stream, as a `<Body>` or `<Attachment>` element gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: usize,
    pub length: usize,
}

/// The message body: its exact UTF-16LE bytes (without the terminating NUL) and the decoded text,
/// and the raw bytes of each `<Attachment>` range, in the header's order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub text: String,
    pub attachments: Vec<Vec<u8>>,
}

/// From the octet-stream part (inflated first if `compressed`) to the body: the ranges must cover
/// the stream exactly, up to one optional trailing CRLF, and the body range must be UTF-16LE
/// without BOM ending with `00 00`.
pub fn decode_body_part(
    data: &[u8],
    compressed: bool,
    body: ByteRange,
    attachments: &[ByteRange],
    limit: usize,
) -> Result<Body, EnvelopeError> {
    let inflated;
    let stream = if compressed {
        inflated = zlib_decompress(data, limit)?;
        &inflated[..]
    } else {
        data
    };
    let mut end = 0usize;
    for r in attachments.iter().chain([&body]) {
        let e = r
            .offset
            .checked_add(r.length)
            .ok_or_else(|| EnvelopeError::Body("byte range overflows".into()))?;
        end = end.max(e);
    }
    // The ranges end where the stream does, or one CRLF before: the public tools put the CRLF
    // inside the (compressed) stream, others leave it to the multipart delimiter.
    let stream = match stream.len().checked_sub(end) {
        Some(0) => stream,
        Some(2) if stream.ends_with(b"\r\n") => &stream[..end],
        _ => {
            return Err(EnvelopeError::Body(format!(
                "header announces {end} bytes (Body Offset {} Length {}), octet stream holds {} \
                 (only a CRLF may follow the ranges)",
                body.offset,
                body.length,
                stream.len()
            )))
        }
    };
    let raw = &stream[body.offset..body.offset + body.length];
    if raw.starts_with(&[0xFF, 0xFE]) || raw.starts_with(&[0xFE, 0xFF]) {
        return Err(EnvelopeError::Utf16("body carries a BOM"));
    }
    if raw.len() % 2 != 0 {
        return Err(EnvelopeError::Utf16("odd number of bytes"));
    }
    let bytes = raw.strip_suffix(&[0, 0]).ok_or(EnvelopeError::Utf16(
        "body does not end with the UTF-16 NUL 00 00",
    ))?;
    let text = decode_utf16le(bytes)?;
    Ok(Body {
        bytes: bytes.to_vec(),
        text,
        attachments: attachments
            .iter()
            .map(|r| stream[r.offset..r.offset + r.length].to_vec())
            .collect(),
    })
}

/// An attachment's text (docs/protocol.md §5 report framing): `FF FE` + UTF-16LE, no NUL (the CRLF
/// that follows it lies outside its range).
pub fn decode_attachment(bytes: &[u8]) -> Result<String, EnvelopeError> {
    let text = bytes
        .strip_prefix(&[0xFF, 0xFE])
        .ok_or(EnvelopeError::Utf16(
            "attachment does not start with the BOM FF FE",
        ))?;
    decode_utf16le(text)
}

/// The exact received UTF-16LE bytes of the one `<name …>…</name>` element of a body, from `<` to
/// the closing `>`. The element must occur exactly once (a decoy copy, e.g. in a comment, would
/// otherwise let the signed bytes differ from the parsed ones) and must not be self-closing.
pub fn element_bytes<'a>(
    body_utf16le: &'a [u8],
    name: &'static str,
) -> Result<&'a [u8], EnvelopeError> {
    if !body_utf16le.len().is_multiple_of(2) {
        return Err(EnvelopeError::Utf16("odd number of bytes"));
    }
    let open = encode_utf16le(&format!("<{name}"));
    let close = encode_utf16le(&format!("</{name}>"));
    let is_open_at = |i: usize| {
        let next = body_utf16le
            .get(i + open.len()..i + open.len() + 2)
            .map(|u| u16::from_le_bytes([u[0], u[1]]));
        matches!(next, Some(c) if c == u16::from(b'>') || c == u16::from(b'/') || (c < 0x80 && (c as u8).is_ascii_whitespace()))
    };
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(i) = find_utf16(body_utf16le, &open, from) {
        if is_open_at(i) {
            starts.push(i);
        }
        from = i + 2;
    }
    let start = match starts.as_slice() {
        [] => return Err(EnvelopeError::Element(name, "not found")),
        [one] => *one,
        _ => return Err(EnvelopeError::Element(name, "occurs more than once")),
    };
    let end = find_utf16(body_utf16le, &close, start)
        .ok_or(EnvelopeError::Element(name, "not closed"))?;
    if find_utf16(body_utf16le, &close, end + 2).is_some() {
        return Err(EnvelopeError::Element(name, "closed more than once"));
    }
    Ok(&body_utf16le[start..end + close.len()])
}

/// UTF-16LE bytes of a string, no BOM.
pub fn encode_utf16le(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2);
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

/// The octet-stream payload of a body: UTF-16LE + `00 00` (what `Length` counts) + CRLF.
pub fn body_stream(body_xml: &str) -> (Vec<u8>, usize) {
    let mut v = encode_utf16le(body_xml);
    v.extend_from_slice(&[0, 0]);
    let len = v.len();
    v.extend_from_slice(b"\r\n");
    (v, len)
}

/// The octet-stream payload of a reply as real MPs frame it: UTF-16LE + one `00 00` and nothing
/// after (a public tool that works against real MPs drops exactly one trailing character of the
/// inflated reply and parses the rest as XML). Returns the stream, which is also its `Length`.
pub fn reply_stream(body_xml: &str) -> Vec<u8> {
    let mut v = encode_utf16le(body_xml);
    v.extend_from_slice(&[0, 0]);
    v
}

/// Assembles a two-part message: the header (UTF-16LE with BOM) and the octet stream as given.
pub fn build_multipart(header_xml: &str, octet_stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_xml.len() * 2 + octet_stream.len() + 256);
    out.extend_from_slice(
        format!("--{BOUNDARY}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&encode_utf16le(header_xml));
    out.extend_from_slice(
        format!("\r\n--{BOUNDARY}\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(octet_stream);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_search_matches_only_on_code_unit_boundaries() {
        let needle = encode_utf16le("<D");
        // U+3C41, then `<D` misaligned across units, then `<D` on a boundary.
        let hay = [0x41, 0x3C, 0x00, 0x44, 0x00, 0x00, 0x3C, 0x00, 0x44, 0x00];
        assert_eq!(find(&hay, &needle, 0), Some(1));
        assert_eq!(find_utf16(&hay, &needle, 0), Some(6));
        assert_eq!(find_utf16(&hay, &needle, 7), None);
    }

    #[test]
    fn utf16_decoding_takes_ascii_and_the_rest_alike() {
        let text = "<Data a=\"1\">caf\u{e9} \u{1F600} x</Data>";
        assert_eq!(decode_utf16le(&encode_utf16le(text)).unwrap(), text);
        assert_eq!(decode_utf16le(&encode_utf16le("ab")).unwrap(), "ab");
        assert!(decode_utf16le(&encode_utf16le("a\0b")).is_err());
        assert!(decode_utf16le(&encode_utf16le("\u{e9}\0")).is_err());
        // An unpaired surrogate after an ASCII run.
        assert!(decode_utf16le(&[b'a', 0, 0x00, 0xD8]).is_err());
    }

    #[test]
    fn find_from_matches_the_naive_search() {
        let naive = |hay: &[u8], needle: &[u8], from: usize| {
            hay.get(from..)?
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|p| p + from)
        };
        let hay = b"--a--ab--abc\r\n--abc--\r\n--";
        for needle in [
            &b"--abc"[..],
            b"-",
            b"--",
            b"c--",
            b"x",
            b"\r\n--",
            b"--\r\n--x",
        ] {
            for from in 0..=hay.len() + 1 {
                assert_eq!(
                    find(hay, needle, from),
                    naive(hay, needle, from),
                    "{needle:?} {from}"
                );
            }
        }
        assert_eq!(find(b"abc", b"", 0), None);
    }

    fn sample(body_xml: &str) -> Vec<u8> {
        let (stream, _) = body_stream(body_xml);
        build_multipart("<Msg/>", &stream)
    }

    #[test]
    fn boundary_parsing() {
        let ct = format!("multipart/mixed; boundary=\"{BOUNDARY}\"");
        assert_eq!(boundary_from_content_type(&ct).unwrap(), BOUNDARY);
        assert_eq!(
            boundary_from_content_type("Multipart/Mixed;boundary=abc").unwrap(),
            "abc"
        );
        for bad in [
            "text/plain; boundary=abc",
            "multipart/mixed",
            "multipart/mixed; boundary=\"abc",
            "multipart/mixed; boundary=\"\"",
        ] {
            assert!(boundary_from_content_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trip_two_parts() {
        let msg = sample("<A/>");
        let parts = split_multipart(&msg, BOUNDARY).unwrap();
        let (h, b) = message_parts(&parts).unwrap();
        assert_eq!(decode_header_part(h).unwrap(), "<Msg/>");
        let body = decode_body_part(
            b,
            false,
            ByteRange {
                offset: 0,
                length: 10,
            },
            &[],
            1 << 20,
        )
        .unwrap();
        assert_eq!(body.text, "<A/>");
        assert_eq!(body.bytes, encode_utf16le("<A/>"));
    }

    #[test]
    fn malformed_multipart_is_refused() {
        let good = sample("<A/>");
        // Preamble, missing final boundary, garbage after it, truncated.
        let mut pre = b"junk".to_vec();
        pre.extend_from_slice(&good);
        assert!(split_multipart(&pre, BOUNDARY).is_err());
        let cut = &good[..good.len() - 2 - BOUNDARY.len() - 4];
        assert!(split_multipart(cut, BOUNDARY).is_err());
        let mut tail = good.clone();
        tail.extend_from_slice(b"more");
        assert!(split_multipart(&tail, BOUNDARY).is_err());
        assert!(split_multipart(&good[..40], BOUNDARY).is_err());
        assert!(split_multipart(&good, "otherboundary").is_err());
        // One part only.
        let one = format!(
            "--{BOUNDARY}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\nx\r\n--{BOUNDARY}--"
        );
        let parts = split_multipart(one.as_bytes(), BOUNDARY).unwrap();
        assert_eq!(message_parts(&parts), Err(EnvelopeError::PartCount(1)));
    }

    #[test]
    fn wrong_part_types_are_refused() {
        let msg = String::from_utf8_lossy(&sample("<A/>"))
            .replace("application/octet-stream", "text/xml");
        let parts = split_multipart(msg.as_bytes(), BOUNDARY).unwrap();
        assert!(matches!(
            message_parts(&parts),
            Err(EnvelopeError::PartType { index: 1, .. })
        ));
    }

    #[test]
    fn utf16_errors() {
        assert_eq!(
            decode_utf16le(&[0x41, 0x00, 0x42]),
            Err(EnvelopeError::Utf16("odd number of bytes"))
        );
        // Lone high surrogate D800.
        assert!(decode_utf16le(&[0x00, 0xD8, 0x41, 0x00]).is_err());
        assert!(decode_utf16le(&[0x41, 0x00, 0x00, 0x00, 0x41, 0x00]).is_err());
        // Surrogate pair is fine.
        assert_eq!(
            decode_utf16le(&[0x3D, 0xD8, 0x00, 0xDE]).unwrap(),
            "\u{1F600}"
        );
        // Header without BOM / big-endian BOM.
        assert!(decode_header_part(&encode_utf16le("<Msg/>")).is_err());
        let mut be = vec![0xFE, 0xFF];
        be.extend_from_slice(&encode_utf16le("<Msg/>"));
        assert!(decode_header_part(&be).is_err());
    }

    #[test]
    fn body_checks() {
        let r = |length| ByteRange { offset: 0, length };
        let (stream, len) = body_stream("<A/>");
        assert_eq!(len, 10);
        // Length mismatch either way.
        assert!(matches!(
            decode_body_part(&stream, false, r(8), &[], 1 << 20),
            Err(EnvelopeError::Body(_))
        ));
        // A Length that takes in the CRLF leaves the body without its NUL.
        assert!(matches!(
            decode_body_part(&stream, false, r(12), &[], 1 << 20),
            Err(EnvelopeError::Utf16(_))
        ));
        // Without the CRLF, the same body; anything else after the ranges is refused.
        assert_eq!(
            decode_body_part(&stream[..10], false, r(10), &[], 1 << 20)
                .unwrap()
                .text,
            "<A/>"
        );
        let mut junk = stream[..10].to_vec();
        junk.extend_from_slice(b"\n\r");
        assert!(matches!(
            decode_body_part(&junk, false, r(10), &[], 1 << 20),
            Err(EnvelopeError::Body(_))
        ));
        let mut two_crlf = stream.clone();
        two_crlf.extend_from_slice(b"\r\n");
        assert!(decode_body_part(&two_crlf, false, r(10), &[], 1 << 20).is_err());
        assert!(decode_body_part(&stream[..9], false, r(10), &[], 1 << 20).is_err());
        // Missing NUL, BOM, odd length.
        let mut no_nul = encode_utf16le("<A/>");
        no_nul.extend_from_slice(b"\r\n");
        assert!(decode_body_part(&no_nul, false, r(8), &[], 1 << 20).is_err());
        let mut bom = vec![0xFF, 0xFE];
        bom.extend_from_slice(&stream);
        assert!(decode_body_part(&bom, false, r(12), &[], 1 << 20).is_err());
        let odd = [0x41, 0x00, 0x00, 0x00, 0x00, b'\r', b'\n'];
        assert!(decode_body_part(&odd, false, r(5), &[], 1 << 20).is_err());
        // Attachment before the body.
        let mut two = encode_utf16le("<R/>");
        two.extend_from_slice(&stream);
        let body = decode_body_part(
            &two,
            false,
            ByteRange {
                offset: 8,
                length: 10,
            },
            &[ByteRange {
                offset: 0,
                length: 8,
            }],
            1 << 20,
        )
        .unwrap();
        assert_eq!(body.text, "<A/>");
    }

    #[test]
    fn zlib_body_and_bomb_limit() {
        let (stream, len) = body_stream("<A/>");
        let z = zlib_compress(&stream);
        let body = decode_body_part(
            &z,
            true,
            ByteRange {
                offset: 0,
                length: len,
            },
            &[],
            1 << 20,
        )
        .unwrap();
        assert_eq!(body.text, "<A/>");
        // The CRLF outside the compressed data (the stream ends at the NUL) works too.
        let bare = zlib_compress(&reply_stream("<A/>"));
        let body = decode_body_part(
            &bare,
            true,
            ByteRange {
                offset: 0,
                length: len,
            },
            &[],
            1 << 20,
        )
        .unwrap();
        assert_eq!(body.text, "<A/>");
        let big = zlib_compress(&vec![0u8; 100_000]);
        assert!(matches!(
            zlib_decompress(&big, 50_000),
            Err(EnvelopeError::Zlib(_))
        ));
        assert!(zlib_decompress(b"not zlib", 1000).is_err());
        let mut trailing = z.clone();
        trailing.push(0);
        assert!(zlib_decompress(&trailing, 1000).is_err());
    }

    #[test]
    fn element_slicing() {
        let xml = "<R>\r\n<Data A=\"1\">\r\n<X/></Data><Signature/></R>";
        let bytes = encode_utf16le(xml);
        let got = element_bytes(&bytes, "Data").unwrap();
        assert_eq!(got, encode_utf16le("<Data A=\"1\">\r\n<X/></Data>"));
        // <DataX> is another element.
        let b2 = encode_utf16le("<R><DataX/><Data>1</Data></R>");
        assert_eq!(
            element_bytes(&b2, "Data").unwrap(),
            encode_utf16le("<Data>1</Data>")
        );
        for bad in [
            "<R><X/></R>",
            "<R><Data>1</R>",
            "<R><!--<Data>0</Data>--><Data>1</Data></R>",
            "<R><Data>1</Data></Data></R>",
        ] {
            assert!(
                element_bytes(&encode_utf16le(bad), "Data").is_err(),
                "{bad}"
            );
        }
    }
}
