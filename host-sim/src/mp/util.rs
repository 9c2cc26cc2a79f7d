//! Small helpers of the emulator: fresh GUIDs and SMSIDs, SMSID syntax (docs/protocol.md §7), UTC
//! time stamps (§8) and the HTTP `Date` header, without a date-time crate.

use rand_core::{OsRng, RngCore};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh random (version 4) GUID, upper case, without braces.
pub fn new_guid() -> String {
    let mut b = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_guid(&b)
}

/// `8-4-4-4-12` upper-case hex digits.
fn format_guid(b: &[u8; 16]) -> String {
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A fresh SMSID: `GUID:` + upper-case GUID, time-ordered (version 7: the first 48 bits are the
/// Unix time in milliseconds, the rest random). Why not random like [`new_guid`]: the SMSID is
/// the key of the clients' index, and random keys make every registration dirty (and write to the
/// WAL) an index page of its own, where time-ordered ones land on the index's last pages.
pub fn new_smsid() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    format!("GUID:{}", guid_v7(ms, random_bytes()))
}

/// 16 random bytes from the OS.
fn random_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b
}

/// A version 7 GUID (RFC 9562) from a Unix time in milliseconds and random bytes.
fn guid_v7(unix_ms: u64, random: [u8; 16]) -> String {
    let mut b = random;
    b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_guid(&b)
}

/// True for `8-4-4-4-12` hex digits (either case).
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Normalises a well-formed SMSID (`GUID:` prefix in any case + GUID) to upper case; `None` if
/// it is not one.
pub fn normalize_smsid(s: &str) -> Option<String> {
    let (prefix, guid) = s.split_at_checked(5)?;
    (prefix.eq_ignore_ascii_case("GUID:") && is_guid(guid))
        .then(|| format!("GUID:{}", guid.to_ascii_uppercase()))
}

/// A message ID as the header carries it: `{GUID}`.
pub fn new_message_id() -> String {
    format!("{{{}}}", new_guid())
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// (year, month, day) from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses exactly `YYYY-MM-DDThh:mm:ssZ` (docs/protocol.md §8) to Unix seconds; `None` for anything else
/// (other layouts, fractions, offsets, impossible dates, years before 1970).
pub fn parse_utc_timestamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let t = &b[from..to];
        t.iter()
            .all(u8::is_ascii_digit)
            .then(|| t.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0')))
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if y < 1970 || d == 0 || d > month_days || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    u64::try_from(days * 86_400 + i64::from(h * 3600 + mi * 60 + sec)).ok()
}

/// `YYYY-MM-DDThh:mm:ssZ` for a Unix time.
pub fn utc_timestamp_at(unix: u64) -> String {
    let (y, mo, d) = civil_from_days((unix / 86_400) as i64);
    let s = unix % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `YYYY-MM-DDThh:mm:ssZ` now.
pub fn utc_timestamp() -> String {
    utc_timestamp_at(unix_now())
}

/// RFC 9110 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for a Unix time.
pub fn http_date_at(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let (y, mo, d) = civil_from_days(days as i64);
    let s = unix % 86_400;
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(mo - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The HTTP `Date` header value now.
pub fn http_date() -> String {
    http_date_at(unix_now())
}

/// Escapes text for an XML attribute value or element content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_fresh_and_well_formed() {
        let a = new_guid();
        let b = new_guid();
        assert_ne!(a, b);
        assert!(is_guid(&a), "{a}");
        assert_eq!(a, a.to_ascii_uppercase());
        assert_eq!(&a[14..15], "4");
        assert!(normalize_smsid(&new_smsid()).is_some());
    }

    #[test]
    fn smsids_are_version_7_guids_ordered_by_time() {
        let random = [0xFFu8; 16];
        let early = guid_v7(0x0193_0000_0000, random);
        let later = guid_v7(0x0193_0000_0001, [0u8; 16]);
        assert_eq!(early, "01930000-0000-7FFF-BFFF-FFFFFFFFFFFF");
        assert_eq!(later, "01930000-0001-7000-8000-000000000000");
        assert!(
            early < later,
            "a later millisecond sorts after, whatever the random bits"
        );
        let smsid = new_smsid();
        let guid = smsid.strip_prefix("GUID:").expect("GUID: prefix");
        assert!(is_guid(guid), "{smsid}");
        assert_eq!(&guid[14..15], "7", "{smsid}");
        assert_eq!(normalize_smsid(&smsid).as_deref(), Some(smsid.as_str()));
        assert_ne!(new_smsid(), smsid);
    }

    #[test]
    fn smsid_syntax() {
        assert_eq!(
            normalize_smsid("guid:1af488d8-7b42-4842-a4bd-b3a2842bbc42").as_deref(),
            Some("GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42")
        );
        assert!(normalize_smsid("GUID:{1af488d8-7b42-4842-a4bd-b3a2842bbc42}").is_none());
        assert!(normalize_smsid("GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc4").is_none());
        assert!(normalize_smsid("GUID:1af488d8x7b42-4842-a4bd-b3a2842bbc42").is_none());
        assert!(normalize_smsid("").is_none());
        assert!(normalize_smsid("GUÏD:1af488d8-7b42-4842-a4bd-b3a2842bbc42").is_none());
    }

    #[test]
    fn time_formats() {
        assert_eq!(utc_timestamp_at(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp_at(1_795_428_000), "2026-11-23T10:00:00Z");
        assert_eq!(http_date_at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date_at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn timestamps_parse_back() {
        for t in [0, 951_782_400, 1_795_428_000, 4_102_444_799] {
            assert_eq!(parse_utc_timestamp(&utc_timestamp_at(t)), Some(t), "{t}");
        }
        assert_eq!(
            parse_utc_timestamp("2026-11-23T10:00:00Z"),
            Some(1_795_428_000)
        );
        for bad in [
            "",
            "2026-11-23T10:00:00",
            "2026-11-23 10:00:00Z",
            "2026-11-23T10:00:00.5Z",
            "2026-11-23T10:00:00+00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2O26-11-23T10:00:00Z",
            "+026-11-23T10:00:00Z",
        ] {
            assert_eq!(parse_utc_timestamp(bad), None, "{bad:?}");
        }
        assert!(parse_utc_timestamp("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn escaping() {
        assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
