//! Event time: millisecond timestamps, window widths and window ids, and the clock.
//!
//! Window ids come from event time only (docs/DATA_MODEL.md, scale-out 3): `floor(ts_ms / width) * width` in UTC,
//! so a replay of the same events rebuilds identical windows.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::{Error, Result};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The timestamp in milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Adds a signed number of milliseconds, saturating at the ends of the range.
    pub fn saturating_add_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Formats as RFC 3339 with millisecond precision, e.g. `2026-03-01T00:00:00.160Z`.
    pub fn to_rfc3339(self) -> String {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            sod / 3600,
            (sod % 3600) / 60,
            sod % 60
        )
    }

    /// Parses an RFC 3339 timestamp (`Z` or `±hh:mm` offset, optional fraction).
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp> {
        let bad = || Error::invalid("timestamp", format!("{s:?} is not RFC 3339"));
        let b = s.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || (b[10] != b'T' && b[10] != b't' && b[10] != b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64> {
            s.get(r)
                .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(bad)
        };
        let (y, mo, d, h, mi, se) = (
            num(0..4)?,
            num(5..7)?,
            num(8..10)?,
            num(11..13)?,
            num(14..16)?,
            num(17..19)?,
        );
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return Err(bad());
        }
        let mut i = 19;
        let mut frac_ms = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(bad());
            }
            let digits = &s[start..i];
            let mut ms = 0i64;
            for (n, c) in digits.bytes().take(3).enumerate() {
                ms += i64::from(c - b'0') * [100, 10, 1][n];
            }
            frac_ms = ms;
        }
        let offset_s = match b.get(i) {
            Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                let v = oh * 3600 + om * 60;
                if *sign == b'+' { v } else { -v }
            }
            _ => return Err(bad()),
        };
        let days = days_from_civil(y, mo, d);
        let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
        Ok(Timestamp(secs * 1000 + frac_ms))
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

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A positive duration in milliseconds, parsed from forms like `15m`, `1h`, `7d`, `30s`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationMs(i64);

impl DurationMs {
    /// A validated positive duration.
    pub fn new(ms: i64) -> Result<Self> {
        if ms <= 0 {
            return Err(Error::invalid(
                "duration",
                format!("{ms} ms is not positive"),
            ));
        }
        Ok(DurationMs(ms))
    }

    /// The duration in milliseconds.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h`, `d` or `w`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::invalid("duration", format!("{s:?}: expected e.g. 15m, 1h, 7d"));
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s.split_at(split);
        let n: i64 = digits.parse().map_err(|_| bad())?;
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        DurationMs::new(n.checked_mul(unit_ms).ok_or_else(bad)?)
    }
}

impl std::fmt::Display for DurationMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// Window resolution: the width of a stored window. 15-minute and hourly windows are written by
/// ingest; hourly and daily windows are also the targets of downsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolution {
    /// 15-minute windows.
    M15,
    /// Hourly windows.
    H1,
    /// Daily windows.
    D1,
}

impl Resolution {
    /// All resolutions from finest to coarsest.
    pub const ALL: [Resolution; 3] = [Resolution::M15, Resolution::H1, Resolution::D1];

    /// Window width in milliseconds.
    pub fn width_ms(self) -> i64 {
        match self {
            Resolution::M15 => 15 * 60_000,
            Resolution::H1 => 3_600_000,
            Resolution::D1 => 86_400_000,
        }
    }

    /// The byte used in keys.
    pub fn tag(self) -> u8 {
        match self {
            Resolution::M15 => 1,
            Resolution::H1 => 2,
            Resolution::D1 => 3,
        }
    }

    /// Inverse of [`Resolution::tag`].
    pub fn from_tag(tag: u8) -> Option<Resolution> {
        match tag {
            1 => Some(Resolution::M15),
            2 => Some(Resolution::H1),
            3 => Some(Resolution::D1),
            _ => None,
        }
    }

    /// The resolution of a width given in milliseconds, if it is one.
    pub fn from_width_ms(ms: i64) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.width_ms() == ms)
    }

    /// Start of the window holding `ts`: `floor(ts / width) * width`, aligned to the epoch.
    pub fn window_start(self, ts: Timestamp) -> Timestamp {
        let w = self.width_ms();
        Timestamp(ts.0.div_euclid(w) * w)
    }

    /// The next coarser resolution, the target of downsampling.
    pub fn coarser(self) -> Option<Resolution> {
        match self {
            Resolution::M15 => Some(Resolution::H1),
            Resolution::H1 => Some(Resolution::D1),
            Resolution::D1 => None,
        }
    }
}

/// The source of "now". Everything that depends on wall-clock time (retention, downsampling,
/// window close, label expiry) reads it through this trait so tests can control time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place that reads the wall clock"
    )]
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; for tests and replays.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `ts`.
    pub fn new(ts: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(ts.0)))
    }

    /// Moves the clock to `ts`.
    pub fn set(&self, ts: Timestamp) {
        self.0.store(ts.0, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-03-01T00:00:00.272Z").unwrap();
        assert_eq!(t.0, 1_772_323_200_272);
        assert_eq!(t.to_rfc3339(), "2026-03-01T00:00:00.272Z");
        let t2 = Timestamp::parse_rfc3339("2026-03-01T01:00:00+01:00").unwrap();
        assert_eq!(t2.0, 1_772_323_200_000);
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert!(Timestamp::parse_rfc3339("2026-13-01T00:00:00Z").is_err());
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn window_ids_are_epoch_aligned() {
        let t = Timestamp::parse_rfc3339("2026-03-01T00:14:59.999Z").unwrap();
        assert_eq!(
            Resolution::M15.window_start(t).to_rfc3339(),
            "2026-03-01T00:00:00.000Z"
        );
        assert_eq!(Resolution::M15.window_start(Timestamp(-1)).0, -900_000);
        assert_eq!(Resolution::H1.window_start(t).0 % 3_600_000, 0);
    }

    #[test]
    fn durations() {
        assert_eq!(DurationMs::parse("15m").unwrap().millis(), 900_000);
        assert_eq!(DurationMs::parse("7d").unwrap().to_string(), "7d");
        assert!(DurationMs::parse("0m").is_err());
        assert!(DurationMs::parse("15").is_err());
        assert!(DurationMs::parse("m").is_err());
    }
}
