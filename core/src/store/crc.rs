//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320: the zlib/PNG CRC) with a 16-entry
//! nibble table: 64 bytes of flash instead of the 1 KiB of a byte table, about 2x slower than it.
//! Records are read once at boot and once per send pass, so the nibble table is the right trade
//! on a Cortex-M.

// Evaluated at compile time only (an out-of-range index would fail the build, not panic).
#[allow(clippy::indexing_slicing)]
const fn make_table() -> [u32; 16] {
    let mut table = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 4 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static TABLE: [u32; 16] = make_table();

// The index is masked to 0..=15 for a 16-entry table: it cannot be out of bounds and the
// optimizer drops the check (plain indexing also keeps debug builds, i.e. the tests, fast).
#[allow(clippy::indexing_slicing)]
#[inline(always)]
fn step(crc: u32, nibble: u32) -> u32 {
    TABLE[((crc ^ nibble) & 0xF) as usize] ^ (crc >> 4)
}

/// A running CRC-32.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crc32(u32);

impl Crc32 {
    /// A fresh CRC.
    pub(crate) const fn new() -> Self {
        Self(0xFFFF_FFFF)
    }
    /// Add `bytes`.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = step(c, u32::from(b));
            c = step(c, u32::from(b >> 4));
        }
        self.0 = c;
    }
    /// The CRC of everything added.
    pub(crate) const fn finish(self) -> u32 {
        !self.0
    }
}

/// CRC-32 of `bytes`.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }
}
