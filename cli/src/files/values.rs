//! Reading single values the way every file format shares: timestamps (RFC 3339 text, dates,
//! epoch numbers by magnitude or by `--ts-unit`), numbers written as text, and quoting user input
//! in error messages without echoing an unbounded amount of it.

use std::fmt::Write as _;

/// The unit of numeric timestamps (epoch numbers without a logical type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TsUnit {
    /// By magnitude: |v| < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, else
    /// nanoseconds.
    #[default]
    Auto,
    /// Seconds since the epoch.
    S,
    /// Milliseconds since the epoch.
    Ms,
    /// Microseconds since the epoch.
    Us,
    /// Nanoseconds since the epoch.
    Ns,
}

impl TsUnit {
    /// The unit `v` is read in: the explicit one, or the one its magnitude implies.
    pub fn resolve(self, v: f64) -> TsUnit {
        match self {
            TsUnit::Auto => {
                let a = v.abs();
                if a < 1e11 {
                    TsUnit::S
                } else if a < 1e14 {
                    TsUnit::Ms
                } else if a < 1e17 {
                    TsUnit::Us
                } else {
                    TsUnit::Ns
                }
            }
            u => u,
        }
    }

    /// An integer epoch value in this unit (or by magnitude) as milliseconds.
    pub fn int_to_ms(self, v: i64) -> i64 {
        match self.resolve(v as f64) {
            TsUnit::S => v.saturating_mul(1000),
            TsUnit::Ms | TsUnit::Auto => v,
            TsUnit::Us => v.div_euclid(1000),
            TsUnit::Ns => v.div_euclid(1_000_000),
        }
    }

    /// A fractional epoch value in this unit (or by magnitude) as milliseconds.
    pub fn float_to_ms(self, v: f64) -> Result<i64, String> {
        if !v.is_finite() {
            return Err(format!("timestamp {v} is not a finite number"));
        }
        let ms = match self.resolve(v) {
            TsUnit::S => v * 1000.0,
            TsUnit::Ms | TsUnit::Auto => v,
            TsUnit::Us => v / 1000.0,
            TsUnit::Ns => v / 1_000_000.0,
        };
        let ms = ms.floor();
        if ms.abs() > 9.0e15 {
            return Err(format!("timestamp {v} is out of range"));
        }
        Ok(ms as i64)
    }
}

/// The rule for numeric timestamps, as `--help` and the README state it.
pub const TS_RULE: &str = "numeric timestamps (epoch numbers) are read by magnitude: |v| < 1e11 \
seconds, < 1e14 milliseconds, < 1e17 microseconds, otherwise nanoseconds; --ts-unit s|ms|us|ns \
fixes the unit";

/// At most this many characters of a user's value are quoted in an error.
pub const CLIP_CHARS: usize = 64;

/// `s` quoted for an error message: at most [`CLIP_CHARS`] characters, then `… (N bytes)`.
pub fn clip(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(CLIP_CHARS * 2) + 16);
    match s.char_indices().nth(CLIP_CHARS) {
        None => {
            let _ = write!(out, "{s:?}");
        }
        Some((cut, _)) => {
            let _ = write!(out, "{:?}… ({} bytes)", &s[..cut], s.len());
        }
    }
    out
}

/// Parses a number written as text (CSV cells, strings in JSON): empty is missing; `NaN`,
/// `inf`, `-inf` (and `Infinity`) are accepted.
pub fn number_text(s: &str) -> Result<Option<f64>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(x) = t.parse::<f64>() {
        return Ok(Some(x));
    }
    match t {
        "NaN" | "nan" | "NAN" => Ok(Some(f64::NAN)),
        "Infinity" | "+Infinity" => Ok(Some(f64::INFINITY)),
        "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
        _ => Err(format!("{} is not a number", clip(s))),
    }
}

/// Parses a timestamp written as text: RFC 3339 (`2026-03-01T00:00:00.160Z`, `±hh:mm`
/// offsets, `T` or a space between date and time, any fraction), the same without an offset
/// (read as UTC), a date (`2026-03-01`, midnight UTC), or an epoch number (by `unit`).
pub fn timestamp_text(s: &str, unit: TsUnit) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("missing ts".into());
    }
    let b = t.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        return parse_datetime(t).ok_or_else(|| format!("ts {} is not RFC 3339", clip(s)));
    }
    if let Ok(v) = t.parse::<i64>() {
        return Ok(unit.int_to_ms(v));
    }
    if let Ok(v) = t.parse::<f64>() {
        return unit.float_to_ms(v);
    }
    Err(format!(
        "ts {} is neither RFC 3339 nor an epoch number",
        clip(s)
    ))
}

fn digits(b: &[u8], r: std::ops::Range<usize>) -> Option<i64> {
    let d = b.get(r)?;
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(d.iter().fold(0i64, |a, c| a * 10 + i64::from(c - b'0')))
}

/// `YYYY-MM-DD[(T| )hh:mm[:ss[.fff…]]][ ][Z|±hh[:mm]|±hhmm]` → ms since the epoch (UTC when no
/// offset is given).
fn parse_datetime(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let (y, mo, d) = (digits(b, 0..4)?, digits(b, 5..7)?, digits(b, 8..10)?);
    if !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    let mut i = 10;
    if i == b.len() {
        return Some(ms);
    }
    if !matches!(b[i], b'T' | b't' | b' ') {
        return None;
    }
    i += 1;
    let h = digits(b, i..i + 2)?;
    if b.get(i + 2) != Some(&b':') {
        return None;
    }
    let mi = digits(b, i + 3..i + 5)?;
    i += 5;
    let mut se = 0;
    if b.get(i) == Some(&b':') {
        se = digits(b, i + 1..i + 3)?;
        i += 3;
    }
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    ms += (h * 3600 + mi * 60 + se) * 1000;
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        for (n, c) in b[start..i].iter().take(3).enumerate() {
            ms += i64::from(c - b'0') * [100, 10, 1][n];
        }
    }
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    let offset_s = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let rest = &b[i + 1..];
            let (oh, om) = match rest.len() {
                2 => (digits(rest, 0..2)?, 0),
                4 => (digits(rest, 0..2)?, digits(rest, 2..4)?),
                5 if rest[2] == b':' => (digits(rest, 0..2)?, digits(rest, 3..5)?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 3600 + om * 60;
            if *sign == b'+' { v } else { -v }
        }
        Some(_) => {
            // A named zone (`UTC`) is the only word accepted.
            if &b[i..] == b"UTC" {
                0
            } else {
                return None;
            }
        }
    };
    Some(ms - offset_s * 1000)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftdb_engine::time::Timestamp;

    fn rfc(s: &str) -> i64 {
        Timestamp::parse_rfc3339(s).unwrap().millis()
    }

    #[test]
    fn text_timestamps() {
        let base = rfc("2026-01-01T00:00:00.018Z");
        for s in [
            "2026-01-01T00:00:00.018Z",
            "2026-01-01T00:00:00.018000Z",
            "2026-01-01 00:00:00.018+00:00",
            "2026-01-01 00:00:00.018 +00:00",
            "2026-01-01T01:00:00.018+01:00",
            "2026-01-01T01:00:00.018+0100",
            "2026-01-01T01:00:00.018+01",
            "2025-12-31T23:00:00.018-01:00",
            "2026-01-01 00:00:00.018",
            "2026-01-01T00:00:00.018123456Z",
        ] {
            assert_eq!(timestamp_text(s, TsUnit::Auto), Ok(base), "{s}");
        }
        assert_eq!(
            timestamp_text("2026-01-01", TsUnit::Auto),
            Ok(rfc("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            timestamp_text("2026-01-01T10:20", TsUnit::Auto),
            Ok(rfc("2026-01-01T10:20:00Z"))
        );
        assert!(timestamp_text("2026-02-30T00:00:00Z", TsUnit::Auto).is_err());
        assert!(timestamp_text("2026-01-01T00:00:00Q", TsUnit::Auto).is_err());
        assert!(timestamp_text("yesterday", TsUnit::Auto).is_err());
    }

    #[test]
    fn epoch_numbers_by_magnitude() {
        let ms = rfc("2026-01-01T00:00:00Z");
        let s = ms / 1000;
        assert_eq!(TsUnit::Auto.int_to_ms(s), ms);
        assert_eq!(TsUnit::Auto.int_to_ms(ms), ms);
        assert_eq!(TsUnit::Auto.int_to_ms(ms * 1000), ms);
        assert_eq!(TsUnit::Auto.int_to_ms(ms * 1_000_000), ms);
        assert_eq!(TsUnit::Auto.float_to_ms(s as f64 + 0.25), Ok(ms + 250));
        assert_eq!(timestamp_text(&s.to_string(), TsUnit::Auto), Ok(ms));
        // An explicit unit wins over the magnitude.
        assert_eq!(TsUnit::Ms.int_to_ms(5), 5);
        assert_eq!(TsUnit::S.int_to_ms(5), 5000);
        assert_eq!(TsUnit::Ns.int_to_ms(-1), -1);
    }

    #[test]
    fn clip_bounds_quoted_input() {
        assert_eq!(clip("abc"), "\"abc\"");
        let long = "x".repeat(10_000);
        let c = clip(&long);
        assert!(c.len() < 100, "{c}");
        assert!(c.ends_with("… (10000 bytes)"), "{c}");
        let multi = "é".repeat(100);
        assert!(clip(&multi).contains("(200 bytes)"));
    }

    #[test]
    fn numbers_as_text() {
        assert_eq!(number_text(" 1.5 "), Ok(Some(1.5)));
        assert_eq!(number_text(""), Ok(None));
        assert!(number_text("NaN").unwrap().unwrap().is_nan());
        assert_eq!(number_text("-inf"), Ok(Some(f64::NEG_INFINITY)));
        assert!(number_text("abc").is_err());
    }
}
