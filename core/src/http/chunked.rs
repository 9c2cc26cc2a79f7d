//! `Transfer-Encoding: chunked` (RFC 9112 §7.1), decoded in place in the caller's buffer.
//!
//! Decoding runs in two passes: a read-only scan that validates the framing and tells whether the
//! last chunk and the trailers have arrived, then (only when complete) a pass that moves each
//! chunk's data down to the front. An incomplete buffer is therefore never modified, and the IO
//! loop can call [`decode_chunked_in_place`] again after every read.

use super::HttpError;

/// Result of [`decode_chunked_in_place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChunkedProgress {
    /// The decoded body now occupies `buf[..body_len]`.
    Complete {
        /// Length of the decoded body.
        body_len: usize,
    },
    /// The last chunk or the trailers have not all arrived; the buffer is untouched.
    Incomplete,
}

/// Result of the read-only [`scan_chunked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChunkedScan {
    /// The whole chunked message is in the buffer.
    Complete {
        /// Length of the body once decoded.
        body_len: usize,
        /// Bytes of the encoded form, last chunk and trailers included; anything after is not
        /// part of this response.
        encoded_len: usize,
    },
    /// More bytes are needed: at least `min_len` in total (a chunk size announces how much).
    /// The IO loop can refuse a response early when `min_len` exceeds what its buffer can hold.
    Incomplete {
        /// A lower bound on the encoded length.
        min_len: usize,
    },
}

enum Step {
    Data {
        start: usize,
        len: usize,
        next: usize,
    },
    End {
        next: usize,
    },
    Incomplete {
        min_len: usize,
    },
}

fn hex_digit(b: u8) -> Option<usize> {
    match b {
        b'0'..=b'9' => Some(usize::from(b - b'0')),
        b'a'..=b'f' => Some(usize::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(usize::from(b - b'A' + 10)),
        _ => None,
    }
}

fn more(buf: &[u8], needed: usize) -> Step {
    Step::Incomplete {
        min_len: needed.max(buf.len().saturating_add(1)),
    }
}

/// Find the CRLF ending the line that starts at `pos`; `Ok(None)` when it has not arrived.
/// Control characters other than HTAB (a bare CR or LF included) are refused with `err`.
fn line_end(buf: &[u8], pos: usize, err: HttpError) -> Result<Option<usize>, HttpError> {
    let mut i = pos;
    loop {
        match buf.get(i) {
            None => return Ok(None),
            Some(b'\r') => {
                return match buf.get(i.saturating_add(1)) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some(i)),
                    Some(_) => Err(err),
                }
            }
            Some(&b) if b == b'\t' || (b >= 0x20 && b != 0x7F) => i = i.saturating_add(1),
            Some(_) => return Err(err),
        }
    }
}

/// Parse the chunk (or last chunk and trailers) that starts at `pos`.
fn next_chunk(buf: &[u8], pos: usize) -> Result<Step, HttpError> {
    // chunk-size = 1*HEXDIG
    let mut i = pos;
    let mut size: usize = 0;
    let mut digits = 0usize;
    while let Some(d) = buf.get(i).copied().and_then(hex_digit) {
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or(HttpError::ChunkSizeOverflow)?;
        digits += 1;
        i += 1;
    }
    if buf.get(i).is_none() {
        return Ok(more(buf, i.saturating_add(2)));
    }
    if digits == 0 {
        return Err(HttpError::InvalidChunkSize);
    }
    // BWS, then chunk extensions (ignored) or the end of the line.
    while matches!(buf.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match buf.get(i) {
        None => return Ok(more(buf, i.saturating_add(2))),
        Some(b';' | b'\r') => {}
        Some(_) => return Err(HttpError::InvalidChunkSize),
    }
    let Some(eol) = line_end(buf, i, HttpError::InvalidChunkSize)? else {
        return Ok(more(buf, i.saturating_add(2)));
    };
    let start = eol.saturating_add(2);
    if size == 0 {
        // trailer-section = *( field-line CRLF ), then CRLF.
        let mut t = start;
        loop {
            let Some(eol) = line_end(buf, t, HttpError::MalformedChunk)? else {
                return Ok(more(buf, t.saturating_add(2)));
            };
            let next = eol.saturating_add(2);
            if eol == t {
                return Ok(Step::End { next });
            }
            t = next;
        }
    }
    let end = start
        .checked_add(size)
        .ok_or(HttpError::ChunkSizeOverflow)?;
    let next = end.checked_add(2).ok_or(HttpError::ChunkSizeOverflow)?;
    match (buf.get(end), buf.get(end.saturating_add(1))) {
        (Some(b'\r'), Some(b'\n')) => Ok(Step::Data {
            start,
            len: size,
            next,
        }),
        (None, _) | (Some(b'\r'), None) => Ok(more(buf, next)),
        _ => Err(HttpError::MalformedChunk),
    }
}

/// Validate the chunked body at the start of `buf` without changing it.
pub fn scan_chunked(buf: &[u8]) -> Result<ChunkedScan, HttpError> {
    let mut pos = 0usize;
    let mut body_len = 0usize;
    loop {
        match next_chunk(buf, pos)? {
            Step::Data { len, next, .. } => {
                body_len = body_len.saturating_add(len);
                pos = next;
            }
            Step::End { next } => {
                return Ok(ChunkedScan::Complete {
                    body_len,
                    encoded_len: next,
                })
            }
            Step::Incomplete { min_len } => return Ok(ChunkedScan::Incomplete { min_len }),
        }
    }
}

/// Decode the chunked body at the start of `buf` (the bytes after the response head) in place.
///
/// Chunk extensions and trailers are accepted and dropped; sizes are hexadecimal in either case;
/// a size that does not fit in `usize` is an error. When the message is incomplete the buffer is
/// left untouched, so the call can simply be repeated after the next read.
pub fn decode_chunked_in_place(buf: &mut [u8]) -> Result<ChunkedProgress, HttpError> {
    match scan_chunked(buf)? {
        ChunkedScan::Incomplete { .. } => return Ok(ChunkedProgress::Incomplete),
        ChunkedScan::Complete { .. } => {}
    }
    let mut pos = 0usize;
    let mut out = 0usize;
    loop {
        match next_chunk(buf, pos)? {
            Step::Data { start, len, next } => {
                // `out <= start`: every chunk's size line is longer than nothing, so the data
                // only ever moves towards the front and never over bytes still to be read.
                let end = start.checked_add(len).ok_or(HttpError::ChunkSizeOverflow)?;
                // Moved within `buf[out..end]` (`out <= start` cannot fail, see above): a
                // form whose bounds the optimiser can see, so the parser links without a
                // panic path.
                let from = start.checked_sub(out).ok_or(HttpError::MalformedChunk)?;
                let moved = buf.get_mut(out..end).ok_or(HttpError::MalformedChunk)?;
                moved.copy_within(from.., 0);
                out = out.saturating_add(len);
                pos = next;
            }
            Step::End { .. } => return Ok(ChunkedProgress::Complete { body_len: out }),
            // The scan said complete; the second pass reads the same framing bytes.
            Step::Incomplete { .. } => return Err(HttpError::MalformedChunk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> Result<ChunkedProgress, HttpError> {
        let mut buf = [0u8; 1024];
        buf[..input.len()].copy_from_slice(input);
        decode_chunked_in_place(&mut buf[..input.len()])
    }

    fn decoded(input: &[u8]) -> ([u8; 1024], usize) {
        let mut buf = [0u8; 1024];
        buf[..input.len()].copy_from_slice(input);
        match decode_chunked_in_place(&mut buf[..input.len()]).unwrap() {
            ChunkedProgress::Complete { body_len } => (buf, body_len),
            ChunkedProgress::Incomplete => panic!("incomplete: {:?}", core::str::from_utf8(input)),
        }
    }

    #[test]
    fn iis_style_chunks() {
        let (b, n) = decoded(b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n");
        assert_eq!(&b[..n], b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(
            scan_chunked(b"4\r\nWiki\r\n0\r\n\r\nHTTP/1.1 200 OK").unwrap(),
            ChunkedScan::Complete {
                body_len: 4,
                encoded_len: 14
            }
        );
    }

    #[test]
    fn hex_case_extensions_and_trailers() {
        let (b, n) = decoded(b"a\r\n0123456789\r\nA;name=val;q=\"x\"\r\nABCDEFGHIJ\r\n1 ; ext\r\n!\r\n000\r\nX-Trailer: 1\r\nOther: 2\r\n\r\n");
        assert_eq!(&b[..n], b"0123456789ABCDEFGHIJ!");
        let (_, n) = decoded(b"0\r\n\r\n");
        assert_eq!(n, 0);
        let (b, n) = decoded(b"00000000000000000000000000001\r\nx\r\n0\r\n\r\n");
        assert_eq!(&b[..n], b"x");
    }

    #[test]
    fn every_truncation_is_incomplete_and_untouched() {
        let full: &[u8] =
            b"5;x=y\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\n";
        for cut in 0..full.len() {
            let mut buf = [0u8; 128];
            buf[..cut].copy_from_slice(&full[..cut]);
            assert_eq!(
                decode_chunked_in_place(&mut buf[..cut]),
                Ok(ChunkedProgress::Incomplete),
                "cut {cut}"
            );
            assert_eq!(&buf[..cut], &full[..cut]);
            match scan_chunked(&full[..cut]).unwrap() {
                ChunkedScan::Incomplete { min_len } => assert!(
                    min_len > cut && min_len <= full.len(),
                    "cut {cut}: {min_len}"
                ),
                c => panic!("{c:?}"),
            }
        }
        let (b, n) = decoded(full);
        assert_eq!(&b[..n], b"helloabcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn announced_size_gives_min_len() {
        assert_eq!(
            scan_chunked(b"1000\r\nab").unwrap(),
            ChunkedScan::Incomplete {
                min_len: 6 + 0x1000 + 2
            }
        );
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b";ext\r\n",
            b"x\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b" 1\r\n",
            b"1x\r\na\r\n",
            b"0x10\r\n",
            b"1 2\r\n",
        ] {
            assert_eq!(
                decode(bad),
                Err(HttpError::InvalidChunkSize),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
        // Bare LF or CR in the size line.
        assert_eq!(
            decode(b"1\na\r\n0\r\n\r\n"),
            Err(HttpError::InvalidChunkSize)
        );
        assert_eq!(decode(b"1\rxa\r\n"), Err(HttpError::InvalidChunkSize));
        assert_eq!(decode(b"1;a\0b\r\n"), Err(HttpError::InvalidChunkSize));
    }

    #[test]
    fn huge_sizes_are_refused() {
        assert_eq!(
            decode(b"10000000000000000\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
        assert_eq!(
            decode(b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
        // Fits in usize but not in the address space: pos + size overflows.
        assert_eq!(
            decode(b"FFFFFFFFFFFFFFFF\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
        // Fits and is merely far away: incomplete, and min_len says how far.
        match scan_chunked(b"7FFFFFFFFFFFFFF0\r\n").unwrap() {
            ChunkedScan::Incomplete { min_len } => assert!(min_len > 0x7FFF_FFFF_FFFF_FFF0),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn data_must_end_with_crlf() {
        assert_eq!(
            decode(b"3\r\nabcd\r\n0\r\n\r\n"),
            Err(HttpError::MalformedChunk)
        );
        assert_eq!(
            decode(b"3\r\nabc\n0\r\n\r\n"),
            Err(HttpError::MalformedChunk)
        );
        assert_eq!(decode(b"3\r\nabc\rx"), Err(HttpError::MalformedChunk));
        assert_eq!(
            decode(b"0\r\nBad\rTrailer\r\n\r\n"),
            Err(HttpError::MalformedChunk)
        );
        assert_eq!(
            decode(b"0\r\nBad\nTrailer\r\n\r\n"),
            Err(HttpError::MalformedChunk)
        );
    }
}
