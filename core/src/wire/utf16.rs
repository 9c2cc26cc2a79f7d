//! UTF-16LE → UTF-8 for inbound envelopes (docs/protocol.md §2): the `<Msg>` header part is
//! UTF-16LE with a BOM, the body part UTF-16LE without one. Decoding goes into a caller's buffer;
//! nothing is allocated. (The outbound direction lives with the XML writer in `wire::xml`.)

/// Why UTF-16LE bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Utf16Error {
    /// An odd number of bytes: the last code unit is cut.
    OddLength,
    /// A surrogate without its partner; `offset` is the byte offset of the bad code unit in the
    /// source (BOM included).
    UnpairedSurrogate {
        /// Byte offset in `src`.
        offset: usize,
    },
    /// The UTF-8 text does not fit in the destination buffer.
    BufferTooSmall,
}

/// The UTF-16LE byte order mark.
pub const BOM_LE: [u8; 2] = [0xFF, 0xFE];

/// Decode UTF-16LE `src` into `dst` as UTF-8 and return the text.
///
/// A leading BOM (`FF FE`) is stripped. Odd lengths and unpaired surrogates are errors (no
/// replacement characters: a reply that is not valid UTF-16 is not worth guessing at). NUL code
/// units are kept; the reply parser strips the terminating one. UTF-8 never needs more than
/// 3/2 of the UTF-16 length, so `dst.len() >= src.len() * 3 / 2` always suffices.
pub fn utf16le_to_utf8<'b>(src: &[u8], dst: &'b mut [u8]) -> Result<&'b str, Utf16Error> {
    if !src.len().is_multiple_of(2) {
        return Err(Utf16Error::OddLength);
    }
    let (body, base) = match src.strip_prefix(&BOM_LE[..]) {
        Some(rest) => (rest, 2usize),
        None => (src, 0usize),
    };
    let units = body.chunks_exact(2).map(|p| {
        u16::from_le_bytes([
            p.first().copied().unwrap_or(0),
            p.get(1).copied().unwrap_or(0),
        ])
    });
    let mut len = 0usize;
    // Byte offset of the current code unit, for error reporting.
    let mut at = base;
    for decoded in char::decode_utf16(units) {
        let c = decoded.map_err(|_| Utf16Error::UnpairedSurrogate { offset: at })?;
        at = at.saturating_add(c.len_utf16().saturating_mul(2));
        let n = c.len_utf8();
        let end = len.checked_add(n).ok_or(Utf16Error::BufferTooSmall)?;
        let slot = dst.get_mut(len..end).ok_or(Utf16Error::BufferTooSmall)?;
        c.encode_utf8(slot);
        len = end;
    }
    let out = dst.get(..len).ok_or(Utf16Error::BufferTooSmall)?;
    // Always valid: only `char::encode_utf8` output was written.
    core::str::from_utf8(out).map_err(|_| Utf16Error::BufferTooSmall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str, bom: bool) -> ([u8; 512], usize) {
        let mut b = [0u8; 512];
        let mut n = 0;
        if bom {
            b[..2].copy_from_slice(&BOM_LE);
            n = 2;
        }
        for u in s.encode_utf16() {
            b[n..n + 2].copy_from_slice(&u.to_le_bytes());
            n += 2;
        }
        (b, n)
    }

    #[test]
    fn ascii_bmp_and_astral_round_trip() {
        for s in [
            "",
            "<Msg/>",
            "héllo wörld €",
            "emoji 😀 and 𝄞",
            "\u{FFFD}\u{E000}\u{D7FF}",
        ] {
            for bom in [false, true] {
                let (b, n) = enc(s, bom);
                let mut out = [0u8; 512];
                assert_eq!(utf16le_to_utf8(&b[..n], &mut out).unwrap(), s);
            }
        }
    }

    #[test]
    fn only_the_first_bom_is_stripped() {
        let (b, n) = enc("\u{FEFF}x", true);
        let mut out = [0u8; 16];
        assert_eq!(utf16le_to_utf8(&b[..n], &mut out).unwrap(), "\u{FEFF}x");
        // A big-endian BOM is not a BOM here: FE FF decodes to U+FFFE, a valid noncharacter.
        let mut out = [0u8; 16];
        assert_eq!(
            utf16le_to_utf8(&[0xFE, 0xFF, b'a', 0], &mut out).unwrap(),
            "\u{FFFE}a"
        );
    }

    #[test]
    fn nul_units_are_kept() {
        let mut out = [0u8; 8];
        assert_eq!(utf16le_to_utf8(&[b'a', 0, 0, 0], &mut out).unwrap(), "a\0");
    }

    #[test]
    fn odd_length_is_refused() {
        let mut out = [0u8; 16];
        assert_eq!(
            utf16le_to_utf8(&[b'a', 0, b'b'], &mut out),
            Err(Utf16Error::OddLength)
        );
        assert_eq!(
            utf16le_to_utf8(&[0xFF], &mut out),
            Err(Utf16Error::OddLength)
        );
    }

    #[test]
    fn unpaired_surrogates_are_refused() {
        let mut out = [0u8; 16];
        // Lone high surrogate at the end.
        assert_eq!(
            utf16le_to_utf8(&[b'a', 0, 0x3D, 0xD8], &mut out),
            Err(Utf16Error::UnpairedSurrogate { offset: 2 })
        );
        // High surrogate followed by a non-surrogate.
        assert_eq!(
            utf16le_to_utf8(&[0xFF, 0xFE, 0x3D, 0xD8, b'a', 0], &mut out),
            Err(Utf16Error::UnpairedSurrogate { offset: 2 })
        );
        // Lone low surrogate after an astral pair.
        let (mut b, n) = enc("😀", false);
        b[n..n + 2].copy_from_slice(&0xDE00u16.to_le_bytes());
        assert_eq!(
            utf16le_to_utf8(&b[..n + 2], &mut out),
            Err(Utf16Error::UnpairedSurrogate { offset: 4 })
        );
        assert_eq!(
            utf16le_to_utf8(&[0x00, 0xDC], &mut out),
            Err(Utf16Error::UnpairedSurrogate { offset: 0 })
        );
    }

    #[test]
    fn small_destination_is_refused() {
        let (b, n) = enc("€€", false);
        let mut out = [0u8; 5];
        assert_eq!(
            utf16le_to_utf8(&b[..n], &mut out),
            Err(Utf16Error::BufferTooSmall)
        );
        let mut out = [0u8; 6];
        assert_eq!(utf16le_to_utf8(&b[..n], &mut out).unwrap(), "€€");
        let mut empty = [0u8; 0];
        assert_eq!(utf16le_to_utf8(&[0xFF, 0xFE], &mut empty).unwrap(), "");
    }
}
