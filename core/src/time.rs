//! UTC time handed in by the caller, and its two wire forms (docs/protocol.md §8):
//! `YYYY-MM-DDThh:mm:ssZ` and the WMI form `YYYYMMDDhhmmss.ffffff+000`. No clock lives here.

/// Seconds since the Unix epoch, UTC. The caller's clock (or the MP's `Date` header) supplies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnixTime(pub u64);

/// A broken-down UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DateTime {
    /// Year (1970..=9999 for the wire forms).
    pub year: u16,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    /// 0..=23
    pub hour: u8,
    /// 0..=59
    pub minute: u8,
    /// 0..=59
    pub second: u8,
}

impl UnixTime {
    /// Later by `secs`, saturating.
    pub fn plus(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }
    /// Earlier by `secs`, saturating at the epoch.
    pub fn minus(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs))
    }
    /// Break down into calendar fields (proleptic Gregorian, Howard Hinnant's civil_from_days).
    pub fn to_datetime(self) -> DateTime {
        let days = self.0 / 86_400;
        let rem = self.0 % 86_400;
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year: year.clamp(0, 9999) as u16,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
        }
    }
    /// From calendar fields; `None` for fields out of range.
    pub fn from_datetime(dt: &DateTime) -> Option<Self> {
        if !(1..=12).contains(&dt.month)
            || !(1..=31).contains(&dt.day)
            || dt.hour > 23
            || dt.minute > 59
            || dt.second > 60
            || dt.year < 1970
        {
            return None;
        }
        let y = i64::from(dt.year) - i64::from(dt.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(dt.month);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + i64::from(dt.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400
            + i64::from(dt.hour) * 3600
            + i64::from(dt.minute) * 60
            + i64::from(dt.second);
        u64::try_from(secs).ok().map(Self)
    }
}

fn put_num(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

impl DateTime {
    /// `YYYY-MM-DDThh:mm:ssZ` (TimeStamp, SentTime, ClientToken).
    pub fn iso8601(&self) -> [u8; 20] {
        let mut b = *b"0000-00-00T00:00:00Z";
        let (y, rest) = b.split_at_mut(4);
        put_num(y, u32::from(self.year));
        let fields = [self.month, self.day, self.hour, self.minute, self.second];
        for (i, v) in fields.iter().enumerate() {
            if let Some(slot) = rest.get_mut(1 + i * 3..3 + i * 3) {
                put_num(slot, u32::from(*v));
            }
        }
        b
    }
    /// WMI form `YYYYMMDDhhmmss.000000+000` (DDR dates).
    pub fn wmi(&self) -> [u8; 25] {
        let mut b = *b"00000000000000.000000+000";
        let (y, rest) = b.split_at_mut(4);
        put_num(y, u32::from(self.year));
        let fields = [self.month, self.day, self.hour, self.minute, self.second];
        for (i, v) in fields.iter().enumerate() {
            if let Some(slot) = rest.get_mut(i * 2..i * 2 + 2) {
                put_num(slot, u32::from(*v));
            }
        }
        b
    }
    /// Parse `YYYY-MM-DDThh:mm:ssZ`.
    pub fn parse_iso8601(s: &[u8]) -> Option<Self> {
        if s.len() != 20
            || s.get(4) != Some(&b'-')
            || s.get(7) != Some(&b'-')
            || s.get(10) != Some(&b'T')
            || s.get(19) != Some(&b'Z')
        {
            return None;
        }
        let num = |a: usize, b: usize| -> Option<u32> {
            let mut v = 0u32;
            for c in s.get(a..b)? {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + u32::from(c - b'0');
            }
            Some(v)
        };
        Some(Self {
            year: num(0, 4)? as u16,
            month: num(5, 7)? as u8,
            day: num(8, 10)? as u8,
            hour: num(11, 13)? as u8,
            minute: num(14, 16)? as u8,
            second: num(17, 19)? as u8,
        })
    }
}

impl core::fmt::Display for UnixTime {
    /// `YYYY-MM-DDThh:mm:ssZ`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let t = self.to_datetime().iso8601();
        f.write_str(core::str::from_utf8(&t).map_err(|_| core::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(
            &UnixTime(0).to_datetime().iso8601(),
            b"1970-01-01T00:00:00Z"
        );
        // 2026-11-23T10:00:00Z, as in the spec's examples.
        let t = UnixTime(1_795_428_000);
        assert_eq!(&t.to_datetime().iso8601(), b"2026-11-23T10:00:00Z");
        assert_eq!(&t.to_datetime().wmi(), b"20261123100000.000000+000");
        // Leap day.
        assert_eq!(
            &UnixTime(951_782_400).to_datetime().iso8601(),
            b"2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn round_trip() {
        for secs in [
            0u64,
            59,
            86_399,
            951_782_400,
            1_795_428_000,
            4_102_444_800,
            253_402_300_799,
        ] {
            let dt = UnixTime(secs).to_datetime();
            assert_eq!(UnixTime::from_datetime(&dt), Some(UnixTime(secs)));
            assert_eq!(DateTime::parse_iso8601(&dt.iso8601()), Some(dt));
        }
        assert_eq!(DateTime::parse_iso8601(b"2026-11-23 10:00:00Z"), None);
        assert_eq!(DateTime::parse_iso8601(b"2026-1x-23T10:00:00Z"), None);
    }
}
