//! Text for the page: HTML escaping, compact numbers, UTC times and durations, and the
//! "nice" tick values of an axis. Nothing here reads a clock or depends on the locale, so the
//! same input always gives the same text.

use std::fmt;

/// What a missing or undefined number shows as.
pub(super) const DASH: &str = "—";

/// A string escaped for HTML text and for quoted attribute values (`& < > " '`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Esc<'a>(pub(super) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// At most `max` characters of `s`, with `…` standing for what was cut.
pub(super) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Drops the zeros after a decimal point, and the point when nothing is left after it.
fn trim_fraction(s: String) -> String {
    if !s.contains('.') {
        return s;
    }
    let trimmed = s.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `v` (finite, non-zero) with `digits` significant digits in positional notation.
fn positional(v: f64, digits: i32) -> String {
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    trim_fraction(format!("{v:.decimals$}"))
}

/// `v` (finite) with `digits` significant digits in scientific notation (`1.23e-5`).
fn scientific(v: f64, digits: i32) -> String {
    let decimals = (digits - 1).max(0) as usize;
    let text = format!("{v:.decimals$e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => {
            format!("{}e{exponent}", trim_fraction(mantissa.to_owned()))
        }
        None => text,
    }
}

/// Infinity and NaN in words; `None` for finite values.
fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some(DASH.to_owned())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "∞" } else { "-∞" }.to_owned())
    } else {
        None
    }
}

/// A number in at most 4 significant digits: positional between `1e-4` and `1e6`,
/// scientific outside; `—` for NaN.
pub(super) fn num(v: f64) -> String {
    if let Some(text) = non_finite(v) {
        return text;
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    if !(1e-4..1e6).contains(&a) {
        scientific(v, 4)
    } else {
        positional(v, 4)
    }
}

/// [`num`] of an optional number; `—` for `None`.
pub(super) fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| DASH.to_owned(), num)
}

/// [`opt`] with a `+` in front of positive values (a change).
pub(super) fn signed(v: Option<f64>) -> String {
    match v {
        Some(x) if x > 0.0 && x.is_finite() => format!("+{}", num(x)),
        other => opt(other),
    }
}

/// A number for an axis label: 3 significant digits, `k`/`M`/`G`/`T` for thousands and up,
/// scientific below `1e-3`.
pub(super) fn short(v: f64) -> String {
    if let Some(text) = non_finite(v) {
        return text;
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    for (unit, suffix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if a >= unit {
            if a >= unit * 1e3 {
                return scientific(v, 3);
            }
            return format!("{}{suffix}", positional(v / unit, 3));
        }
    }
    if a < 1e-3 {
        scientific(v, 3)
    } else {
        positional(v, 3)
    }
}

/// A share in `[0, 1]` as a percentage with 3 significant digits (`12.3%`).
pub(super) fn pct(share: f64) -> String {
    if let Some(text) = non_finite(share) {
        return text;
    }
    if share == 0.0 {
        return "0%".to_owned();
    }
    let p = share * 100.0;
    let text = if p.abs() < 1e-3 {
        scientific(p, 3)
    } else {
        positional(p, 3)
    };
    format!("{text}%")
}

/// A count with thousands separators (`12,345`).
pub(super) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const MS_PER_DAY: i64 = 86_400_000;

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`: shift the epoch to 0000-03-01 so leap days fall at
/// the end of each year, then split into 400-year eras).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// The parts of a Unix millisecond instant: date, hour, minute, second, millisecond.
fn parts(ms: i64) -> ((i64, u32, u32), i64, i64, i64, i64) {
    let date = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let in_day = ms.rem_euclid(MS_PER_DAY);
    (
        date,
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000,
    )
}

/// A Unix millisecond instant as UTC ISO-8601 to the minute (`2026-03-01T00:00Z`); seconds
/// and milliseconds are added only when not zero.
pub(super) fn utc(ms: i64) -> String {
    let ((year, month, day), hour, minute, second, milli) = parts(ms);
    let mut out = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}");
    if second != 0 || milli != 0 {
        out.push_str(&format!(":{second:02}"));
        if milli != 0 {
            out.push_str(&format!(".{milli:03}"));
        }
    }
    out.push('Z');
    out
}

/// A short axis label of an instant: the date alone when `date_only`, else `MM-DD HH:MM`.
pub(super) fn utc_short(ms: i64, date_only: bool) -> String {
    let ((year, month, day), hour, minute, _, _) = parts(ms);
    if date_only {
        format!("{year:04}-{month:02}-{day:02}")
    } else {
        format!("{month:02}-{day:02} {hour:02}:{minute:02}")
    }
}

/// Whether an instant falls on a UTC midnight.
pub(super) fn is_midnight(ms: i64) -> bool {
    ms.rem_euclid(MS_PER_DAY) == 0
}

/// A duration in the largest unit that divides it (`1h`, `15m`, `7d`, `250ms`).
pub(super) fn duration(ms: i64) -> String {
    if ms <= 0 {
        return DASH.to_owned();
    }
    for (unit, suffix) in [
        (MS_PER_DAY, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ] {
        if ms % unit == 0 {
            return format!("{}{suffix}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// A round step (1, 2 or 5 times a power of ten) that cuts `span` into about `target` parts.
pub(super) fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    let scaled = raw / power;
    let factor = if scaled <= 1.0 {
        1.0
    } else if scaled <= 2.0 {
        2.0
    } else if scaled <= 5.0 {
        5.0
    } else {
        10.0
    };
    factor * power
}

/// Round tick values inside `[lo, hi]`, about `target` of them (never more than 25).
pub(super) fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi < lo {
        return Vec::new();
    }
    let step = nice_step(hi - lo, target);
    let mut out = Vec::new();
    let mut i = (lo / step).ceil();
    while out.len() < 25 {
        let v = i * step;
        if v > hi + step * 1e-9 {
            break;
        }
        // Keep `0.30000000000000004` from showing up as a tick.
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        i += 1.0;
    }
    out
}

/// The smallest round value at or above `max` on a `target`-tick axis from zero
/// (`0.1` when `max` is not positive).
pub(super) fn nice_ceil(max: f64, target: usize) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 0.1;
    }
    let step = nice_step(max, target);
    (max / step).ceil() * step
}
