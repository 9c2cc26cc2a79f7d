//! The MP emulator's envelope decoding on hostile bytes: `multipart/mixed` split, part types,
//! UTF-16LE (header with BOM, body without), the `<Msg>` byte ranges, zlib, and slicing the signed
//! `<Data>` element. Never panics; every slice it returns lies inside the input; decoding
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_sim::mp::envelope::{
    boundary_from_content_type, decode_body_part, decode_header_part, decode_utf16le,
    element_bytes, encode_utf16le, message_parts, split_multipart, zlib_decompress, ByteRange,
    BOUNDARY,
};
use mpagent_sim::mp::messages::MsgHeader;

const BOUNDARIES: [&str; 3] = [BOUNDARY, "B", "--"];
const LIMIT: usize = 1 << 16;

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fn check_element(bytes: &[u8]) {
    if let Ok(e) = element_bytes(bytes, "Data") {
        assert!(inside(bytes, e));
        assert_eq!(e.len() % 2, 0);
        assert!(e.starts_with(&encode_utf16le("<Data")));
        assert!(e.ends_with(&encode_utf16le("</Data>")));
    }
}

fn check_body(stream: &[u8], compressed: bool, body: ByteRange, attachments: &[ByteRange]) {
    if let Ok(b) = decode_body_part(stream, compressed, body, attachments, LIMIT) {
        assert_eq!(encode_utf16le(&b.text), b.bytes);
        assert!(!b.text.contains('\0'));
        assert!(b.bytes.len() + 2 == body.length);
        check_element(&b.bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let boundary = BOUNDARIES[usize::from(sel & 3) % BOUNDARIES.len()];

    if let Ok(ct) = std::str::from_utf8(body) {
        if let Ok(b) = boundary_from_content_type(ct) {
            assert!(!b.is_empty() && b.len() <= 70 && ct.contains(&b));
        }
    }

    if let Ok(parts) = split_multipart(body, boundary) {
        assert!(parts.len() <= 17);
        for p in &parts {
            assert!(inside(body, p.data));
            assert!(p.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
        }
        if let Ok((header, stream)) = message_parts(&parts) {
            if let Ok(text) = decode_header_part(header) {
                let enc = encode_utf16le(&text);
                let rest = &header[2..];
                assert!(rest == enc.as_slice() || rest.strip_suffix(&[0, 0]) == Some(&enc[..]));
                // The ranges the header announces, as the handler uses them.
                if let Ok(h) = MsgHeader::parse(&text) {
                    if let (Ok(b), Ok(a)) = (h.body_range(), h.attachment_ranges()) {
                        check_body(stream, h.is_compressed(), b, &a);
                    }
                }
            }
            // And a body range guessed from the stream itself (the whole stream minus CRLF).
            let whole = ByteRange {
                offset: 0,
                length: stream.len().saturating_sub(2),
            };
            check_body(stream, sel & 4 != 0, whole, &[]);
        }
    }

    check_element(body);
    if let Ok(s) = decode_utf16le(body) {
        assert_eq!(encode_utf16le(&s), body);
    }
    if let Ok(out) = zlib_decompress(body, LIMIT) {
        assert!(out.len() <= LIMIT);
    }
});
