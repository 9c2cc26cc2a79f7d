//! GUIDs (message IDs) and SMSIDs (`GUID:` + a GUID), formatted the way the wire wants them.

/// A 128-bit GUID, kept as the 16 bytes in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

// defmt logs show the text form (`{…}`, `GUID:…`), not sixteen decimal bytes.
#[cfg(feature = "defmt")]
impl defmt::Format for Guid {
    fn format(&self, f: defmt::Formatter<'_>) {
        let t = self.to_braced();
        defmt::write!(f, "{=str}", core::str::from_utf8(&t).unwrap_or("{?}"))
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Smsid {
    fn format(&self, f: defmt::Formatter<'_>) {
        let t = self.to_text();
        defmt::write!(f, "{=str}", core::str::from_utf8(&t).unwrap_or("GUID:?"))
    }
}

/// Length of `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
pub const GUID_TEXT_LEN: usize = 36;

/// Upper-case hex digit of a nibble.
fn hex_digit(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'A' + (nibble & 0xF) - 10,
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Guid {
    /// A random (version 4) GUID from the caller's RNG.
    pub fn random<R: rand_core::RngCore + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        if let Some(v) = b.get_mut(6) {
            *v = (*v & 0x0F) | 0x40;
        }
        if let Some(v) = b.get_mut(8) {
            *v = (*v & 0x3F) | 0x80;
        }
        Self(b)
    }

    /// `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, upper case, no braces.
    pub fn to_text(&self) -> [u8; GUID_TEXT_LEN] {
        let mut out = [b'-'; GUID_TEXT_LEN];
        let mut pos = 0usize;
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                pos += 1;
            }
            if let Some([hi, lo]) = out.get_mut(pos..pos + 2) {
                *hi = hex_digit(byte >> 4);
                *lo = hex_digit(byte & 0xF);
            }
            pos += 2;
        }
        out
    }

    /// `{XXXXXXXX-…}`, as message IDs are written.
    pub fn to_braced(&self) -> [u8; GUID_TEXT_LEN + 2] {
        let mut out = [b'{'; GUID_TEXT_LEN + 2];
        if let Some(mid) = out.get_mut(1..=GUID_TEXT_LEN) {
            mid.copy_from_slice(&self.to_text());
        }
        if let Some(last) = out.last_mut() {
            *last = b'}';
        }
        out
    }

    /// Parse the 36-character form, optionally in braces, any case.
    pub fn parse(s: &[u8]) -> Option<Self> {
        let s = match (s.first(), s.last()) {
            (Some(b'{'), Some(b'}')) => s.get(1..s.len() - 1)?,
            _ => s,
        };
        if s.len() != GUID_TEXT_LEN {
            return None;
        }
        let mut out = [0u8; 16];
        let mut nibbles = s.iter().enumerate().filter_map(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                None
            } else {
                Some(*c)
            }
        });
        for (i, c) in s.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) && *c != b'-' {
                return None;
            }
        }
        for byte in out.iter_mut() {
            let hi = hex_val(nibbles.next()?)?;
            let lo = hex_val(nibbles.next()?)?;
            *byte = hi << 4 | lo;
        }
        Some(Self(out))
    }
}

/// A Configuration Manager client identity: `GUID:` followed by a GUID (docs/protocol.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Smsid(pub Guid);

/// Length of `GUID:XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
pub const SMSID_TEXT_LEN: usize = 5 + GUID_TEXT_LEN;

impl Smsid {
    /// `GUID:` + upper-case GUID: the form signed in ClientIDSignature and sent in SourceID.
    pub fn to_text(&self) -> [u8; SMSID_TEXT_LEN] {
        let mut out = *b"GUID:000000000000000000000000000000000000";
        if let Some(tail) = out.get_mut(5..) {
            tail.copy_from_slice(&self.0.to_text());
        }
        out
    }
    /// Parse `GUID:…` (prefix and hex in any case). Braces around the GUID are accepted.
    pub fn parse(s: &[u8]) -> Option<Self> {
        let prefix = s.get(..5)?;
        if !prefix.eq_ignore_ascii_case(b"GUID:") {
            return None;
        }
        Guid::parse(s.get(5..)?).map(Self)
    }
}

impl core::fmt::Display for Guid {
    /// Braced, upper case: `{1AF488D8-7B42-4842-A4BD-B3A2842BBC42}`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let t = self.to_braced();
        f.write_str(core::str::from_utf8(&t).map_err(|_| core::fmt::Error)?)
    }
}

impl core::fmt::Display for Smsid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let t = self.to_text();
        f.write_str(core::str::from_utf8(&t).map_err(|_| core::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_displays_braced() {
        extern crate std;
        use std::string::ToString;
        let s = Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap();
        assert_eq!(s.0.to_string(), "{1AF488D8-7B42-4842-A4BD-B3A2842BBC42}");
        assert_eq!(s.to_string(), "GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42");
    }

    #[test]
    fn smsid_round_trip_any_case() {
        let s = Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap();
        assert_eq!(&s.to_text(), b"GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42");
        assert_eq!(
            Smsid::parse(b"guid:1AF488D8-7B42-4842-A4BD-B3A2842BBC42"),
            Some(s)
        );
        assert_eq!(
            Smsid::parse(b"GUID:{1AF488D8-7B42-4842-A4BD-B3A2842BBC42}"),
            Some(s)
        );
    }

    #[test]
    fn malformed_guids_are_refused() {
        for bad in [
            &b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc4"[..],
            b"GUID:1af488d8x7b42-4842-a4bd-b3a2842bbc42",
            b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbcZ2",
            b"UUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42",
            b"GUID",
            b"",
            b"{}",
        ] {
            assert_eq!(Smsid::parse(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn braced_message_id() {
        let g = Guid([
            0x5D, 0xD1, 0x00, 0xCD, 0xDF, 0x1D, 0x45, 0xF5, 0xBA, 0x17, 0xA3, 0x27, 0xF4, 0x34,
            0x65, 0xF8,
        ]);
        assert_eq!(&g.to_braced(), b"{5DD100CD-DF1D-45F5-BA17-A327F43465F8}");
        assert_eq!(Guid::parse(&g.to_braced()), Some(g));
    }
}
