//! Event timestamps: parsed from RFC 3339, kept as UTC nanoseconds, written back with a `Z`.
//!
//! A timestamp keeps the precision the client gave, rounded up to 3, 6 or 9 fractional digits
//! (milliseconds at least), so `2026-11-23T11:15:00.1+01:00` is stored and returned as
//! `2026-11-23T10:15:00.100Z`. The returned string is exactly what goes into the leaf data.
//! The representable range is that of i64 nanoseconds since 1970 (years 1678 to 2261).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A UTC instant with the number of fractional digits it is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Nanoseconds since 1970-01-01T00:00:00Z.
    pub nanos: i64,
    /// 3, 6 or 9.
    pub digits: u8,
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Timestamp {
    /// Parses an RFC 3339 date-time (any offset). Returns a message on failure.
    pub fn parse(s: &str) -> Result<Timestamp, String> {
        match parse_utc_fast(s.as_bytes()) {
            Some(t) => Ok(t),
            None => parse_general(s),
        }
    }

    /// A timestamp for `now` (as given by the caller) with microsecond precision.
    pub fn from_nanos(nanos: i64, digits: u8) -> Timestamp {
        Timestamp { nanos, digits }
    }

    /// The current time with microsecond precision. (The one clock read in this crate: callers
    /// that need determinism pass timestamps in instead.)
    pub fn now_micros() -> Timestamp {
        let n = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let nanos = i64::try_from(n - n.rem_euclid(1000)).unwrap_or(i64::MAX);
        Timestamp { nanos, digits: 6 }
    }

    /// Milliseconds precision version of now, used for server-assigned event timestamps.
    pub fn now_millis() -> Timestamp {
        let n = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let nanos = i64::try_from(n - n.rem_euclid(1_000_000)).unwrap_or(i64::MAX);
        Timestamp { nanos, digits: 3 }
    }

    /// Days since 1970-01-01 (UTC) of this instant.
    pub fn day(&self) -> i32 {
        self.nanos.div_euclid(86_400_000_000_000) as i32
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.fff[fff[fff]]Z`.
    pub fn write_to(&self, out: &mut String) {
        let (buf, len) = self.rfc3339_bytes();
        // Only ASCII digits and punctuation are written.
        out.push_str(std::str::from_utf8(&buf[..len]).unwrap_or_default());
    }

    /// The canonical text ([`Timestamp::to_rfc3339`]) in a fixed buffer, without allocating:
    /// the bytes and how many of them are used (24, 27 or 30).
    ///
    /// Every `i64` of nanoseconds falls in the years 1677 to 2262, so the year always has four
    /// digits.
    pub fn rfc3339_bytes(&self) -> ([u8; 30], usize) {
        fn digits(dst: &mut [u8], mut v: u32) {
            for d in dst.iter_mut().rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        let secs = self.nanos.div_euclid(1_000_000_000);
        let sub = self.nanos.rem_euclid(1_000_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        let mut b = *b"0000-00-00T00:00:00.000000000Z";
        digits(&mut b[0..4], u32::try_from(y).unwrap_or(0) % 10_000);
        digits(&mut b[5..7], m);
        digits(&mut b[8..10], d);
        digits(&mut b[11..13], sod / 3600);
        digits(&mut b[14..16], (sod % 3600) / 60);
        digits(&mut b[17..19], sod % 60);
        let (frac, n) = match self.digits {
            3 => (sub / 1_000_000, 3),
            6 => (sub / 1_000, 6),
            _ => (sub, 9),
        };
        digits(&mut b[20..20 + n], frac);
        b[20 + n] = b'Z';
        (b, 21 + n)
    }

    /// The canonical string (as returned by the API and hashed into the leaf).
    pub fn to_rfc3339(&self) -> String {
        let mut s = String::with_capacity(30);
        self.write_to(&mut s);
        s
    }

    /// `YYYY-MM-DD` of a day number (days since 1970-01-01).
    pub fn day_string(day: i32) -> String {
        let (y, m, d) = civil_from_days(day as i64);
        format!("{:04}-{:02}-{:02}", y, m, d)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Digits after the decimal point of the seconds field (0 if none).
fn fraction_digits(s: &str) -> usize {
    let b = s.as_bytes();
    // The seconds field ends 19 bytes in ("YYYY-MM-DDTHH:MM:SS"); a fraction starts there.
    if b.len() > 19 && b[19] == b'.' {
        b[20..].iter().take_while(|c| c.is_ascii_digit()).count()
    } else {
        0
    }
}

/// Any RFC 3339 date-time, by the `time` crate.
fn parse_general(s: &str) -> Result<Timestamp, String> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        "expected an RFC 3339 date-time such as 2026-11-23T10:15:00.123Z".to_string()
    })?;
    let nanos = i64::try_from(dt.unix_timestamp_nanos())
        .map_err(|_| "timestamp is outside the supported range (years 1678 to 2261)".to_string())?;
    Ok(with_digits(nanos, fraction_digits(s)))
}

/// The timestamp with as many digits as were written (`written` fraction digits, rounded up
/// to 3, 6 or 9), and never fewer than the value needs (a leap second, `:60`, is read as the
/// last nanosecond of `:59` and must be written that way).
fn with_digits(nanos: i64, written: usize) -> Timestamp {
    let needed = if nanos % 1_000 != 0 {
        9
    } else if nanos % 1_000_000 != 0 {
        6
    } else {
        3
    };
    let digits = match written {
        0..=3 => 3,
        4..=6 => 6,
        _ => 9,
    }
    .max(needed);
    Timestamp { nanos, digits }
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f…]Z` (upper-case `T` and `Z`, 1 to 9 fraction
/// digits, seconds below 60), read without the general parser. `None` means "not this shape":
/// the caller then runs the general RFC 3339 parser, which decides, so the two can never
/// disagree on what is valid (a test compares them).
fn parse_utc_fast(b: &[u8]) -> Option<Timestamp> {
    fn num(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    }
    let (&last, head) = b.split_last()?;
    if last != b'Z' || head.len() < 19 {
        return None;
    }
    if head[4] != b'-'
        || head[7] != b'-'
        || head[10] != b'T'
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(&head[0..4])?, num(&head[5..7])?, num(&head[8..10])?);
    let (hour, min, sec) = (
        num(&head[11..13])?,
        num(&head[14..16])?,
        num(&head[17..19])?,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let (frac, written) = match &head[19..] {
        [] => (0, 0),
        [b'.', f @ ..] if (1..=9).contains(&f.len()) => {
            (num(f)? * 10u32.pow(9 - f.len() as u32), f.len())
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
    let nanos = i64::try_from(i128::from(secs) * 1_000_000_000 + i128::from(frac)).ok()?;
    Some(with_digits(nanos, written))
}

/// Howard Hinnant's civil-to-days algorithm (days since 1970-01-01 of a proleptic Gregorian
/// date).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The fast path answers only for strings the general parser reads the same way, and
        /// for every `…Z` string of its shape that the general parser accepts.
        #[test]
        fn fast_path_agrees_with_the_general_parser(
            y in 0u32..10_000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62,
            sec in 0u32..62, frac in proptest::option::of("[0-9]{0,10}"),
            t in prop::sample::select(vec!["T", "t", " "]), z in prop::sample::select(vec!["Z", "z", "+00:00", "-01:30", ""]),
        ) {
            let mut s = format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{sec:02}");
            if let Some(f) = &frac {
                s.push('.');
                s.push_str(f);
            }
            s.push_str(z);
            let general = parse_general(&s);
            match parse_utc_fast(s.as_bytes()) {
                Some(fast) => prop_assert_eq!(Ok(fast), general.clone(), "{}", s),
                None => prop_assert!(
                    general.is_err() || z != "Z" || t != "T" || sec == 60
                        || frac.as_ref().is_some_and(|f| f.is_empty() || f.len() > 9),
                    "fast path refused {} which the general parser reads", s
                ),
            }
            prop_assert_eq!(Timestamp::parse(&s), general);
        }
    }

    #[test]
    fn fast_path_dates_at_the_edges() {
        for s in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "2000-02-29T12:00:00.5Z",
            "2024-02-29T00:00:00Z",
            "2262-04-11T23:47:16.854775807Z",
            "1677-09-21T00:12:43.145224192Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2100-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
        ] {
            let fast = parse_utc_fast(s.as_bytes());
            let general = parse_general(s);
            match fast {
                Some(f) => assert_eq!(Ok(f), general, "{s}"),
                None => assert!(general.is_err(), "{s}"),
            }
        }
        assert_eq!(
            parse_utc_fast(b"1970-01-01T00:00:00Z"),
            Some(Timestamp {
                nanos: 0,
                digits: 3
            })
        );
    }

    #[test]
    fn normalises_offsets_and_precision() {
        let t = Timestamp::parse("2026-11-23T11:15:00.1+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T10:15:00.100Z");
        let t = Timestamp::parse("2026-11-23T10:15:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T10:15:00.000Z");
        let t = Timestamp::parse("2026-11-23T10:15:00.1234Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T10:15:00.123400Z");
        let t = Timestamp::parse("2026-11-23T10:15:00.123456789Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T10:15:00.123456789Z");
        let t = Timestamp::parse("1969-12-31T23:59:59.999Z").unwrap();
        assert_eq!(t.to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(t.day(), -1);
        assert_eq!(Timestamp::day_string(0), "1970-01-01");
    }

    /// The formatting `write_to` had before `rfc3339_bytes`, kept as the reference.
    fn reference_text(t: &Timestamp) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let secs = t.nanos.div_euclid(1_000_000_000);
        let sub = t.nanos.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
            y,
            m,
            d,
            sod / 3600,
            (sod % 3600) / 60,
            sod % 60
        );
        let _ = match t.digits {
            3 => write!(out, "{:03}Z", sub / 1_000_000),
            6 => write!(out, "{:06}Z", sub / 1_000),
            _ => write!(out, "{:09}Z", sub),
        };
        out
    }

    #[test]
    fn fixed_buffer_text_matches_reference_formatting() {
        let mut nanos = vec![i64::MIN, i64::MAX, 0, -1, 1, 951_782_400_000_000_000];
        // A deterministic spread over the whole range.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            nanos.push(x as i64);
            nanos.push((x % 4_000_000_000_000_000_000) as i64);
        }
        for n in nanos {
            for digits in [3, 6, 9, 0, 7] {
                let t = Timestamp { nanos: n, digits };
                assert_eq!(t.to_rfc3339(), reference_text(&t), "{n} {digits}");
            }
        }
    }

    #[test]
    fn rejects_non_rfc3339() {
        for s in [
            "2026-11-23",
            "2026-11-23T10:15Z",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(Timestamp::parse(s).is_err(), "{s}");
        }
    }
}
