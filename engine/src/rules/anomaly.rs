//! Adaptive thresholds: a window breaches when its value is more than `k` standard deviations
//! from the mean of the same metric over baseline windows (README.md, "Adaptive thresholds").
//!
//! JSON: `"threshold": {"anomaly": {"k": 3, "baseline": "trailing 7d"}}` with optional
//! `min_windows` (default [`DEFAULT_MIN_WINDOWS`]) and `direction` (`both` (default), `up`,
//! `down`). The rule's `comparison` must be `>` or `>=` (the deviation exceeds the band).
//! Baselines:
//!
//! - `trailing <duration>` (≤ 90d): every stored window in the span before the judged one;
//! - `same time <N>d ago` (N ≤ 28): the windows at the same time of day on each of the N days
//!   before, which follows a daily cycle;
//! - `reference`: the windows of the seven days before the version's reference profile was
//!   built: a fixed baseline that does not follow slow drift.
//!
//! The baseline's statistics are computed by the server from stored windows; this module
//! holds the definition and the verdict.

use serde::{Deserialize, Serialize};

use super::def::fmt_num;
use super::state::Verdict;
use crate::time::DurationMs;

/// Baseline windows needed before an anomaly threshold judges a window, unless the rule says.
pub const DEFAULT_MIN_WINDOWS: u32 = 5;

/// The longest trailing baseline: 90 days.
pub const MAX_TRAILING_MS: i64 = 90 * 86_400_000;

/// The most days a same-time baseline looks back.
pub const MAX_SAME_TIME_DAYS: u32 = 28;

/// The span before a reference profile's creation that a `reference` baseline reads.
pub const REFERENCE_SPAN_MS: i64 = 7 * 86_400_000;

const DAY_MS: i64 = 86_400_000;

/// Which windows make the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Every window in this many ms before the judged window.
    Trailing {
        /// Span, ms.
        ms: i64,
    },
    /// The same time of day on each of this many previous days.
    SameTime {
        /// Days back.
        days: u32,
    },
    /// The seven days before the reference profile was built.
    Reference,
}

impl Baseline {
    /// Parses `trailing 7d`, `same time 7d ago` or `reference`.
    pub fn parse(s: &str) -> Result<Baseline, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let bad = || {
            format!(
                "`{s}` is not a baseline; expected \"trailing 7d\", \"same time 7d ago\" or \
                 \"reference\""
            )
        };
        match words.as_slice() {
            ["reference"] => Ok(Baseline::Reference),
            ["trailing", d] => {
                let ms = DurationMs::parse(d).map_err(|_| bad())?.millis();
                if ms > MAX_TRAILING_MS {
                    return Err(format!("trailing baseline `{d}` is longer than 90d"));
                }
                Ok(Baseline::Trailing { ms })
            }
            ["same", "time", d, "ago"] => {
                let days = d
                    .strip_suffix('d')
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| (1..=MAX_SAME_TIME_DAYS).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "same-time baseline `{d}` must be whole days, 1d to \
                             {MAX_SAME_TIME_DAYS}d"
                        )
                    })?;
                Ok(Baseline::SameTime { days })
            }
            _ => Err(bad()),
        }
    }

    /// The written form.
    pub fn text(&self) -> String {
        match *self {
            Baseline::Trailing { ms } => format!(
                "trailing {}",
                DurationMs::new(ms).map_or_else(|_| format!("{ms}ms"), |d| d.to_string())
            ),
            Baseline::SameTime { days } => format!("same time {days}d ago"),
            Baseline::Reference => "reference".into(),
        }
    }

    /// The spans `[from, to)` (ms) whose windows make the baseline of the window starting at
    /// `start` with width `width_ms`; `reference_created` is when the version's reference
    /// profile was built (needed by [`Baseline::Reference`]).
    pub fn spans(
        &self,
        start: i64,
        width_ms: i64,
        reference_created: Option<i64>,
    ) -> Vec<(i64, i64)> {
        match *self {
            Baseline::Trailing { ms } => vec![(start.saturating_sub(ms), start)],
            Baseline::SameTime { days } => (1..=i64::from(days))
                .map(|d| {
                    let s = start.saturating_sub(d * DAY_MS);
                    (s, s.saturating_add(width_ms))
                })
                .collect(),
            Baseline::Reference => match reference_created {
                Some(c) => {
                    // Whole windows only: the span ends at the window holding the creation.
                    let end = c - c.rem_euclid(width_ms.max(1));
                    vec![(end.saturating_sub(REFERENCE_SPAN_MS), end)]
                }
                None => Vec::new(),
            },
        }
    }
}

/// Which side of the baseline breaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Either side.
    #[default]
    Both,
    /// Above the band only.
    Up,
    /// Below the band only.
    Down,
}

/// An adaptive threshold: `|value − mean| > k · sd` over the baseline windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anomaly {
    /// Width of the band in standard deviations.
    pub k: f64,
    /// Which windows make the baseline.
    pub baseline: Baseline,
    /// Baseline windows with a value needed before a window is judged.
    pub min_windows: u32,
    /// Which side breaches.
    pub direction: Direction,
}

/// The JSON object of an anomaly threshold.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnomalyJson {
    k: f64,
    baseline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_windows: Option<u32>,
    #[serde(default)]
    direction: Direction,
}

impl TryFrom<AnomalyJson> for Anomaly {
    type Error = String;

    fn try_from(j: AnomalyJson) -> Result<Anomaly, String> {
        if !(j.k.is_finite() && j.k > 0.0 && j.k <= 100.0) {
            return Err(format!("anomaly.k must be in (0, 100], got {}", j.k));
        }
        let min_windows = j.min_windows.unwrap_or(DEFAULT_MIN_WINDOWS);
        if !(2..=10_000).contains(&min_windows) {
            return Err(format!(
                "anomaly.min_windows must be 2..=10000 (a standard deviation needs two), got \
                 {min_windows}"
            ));
        }
        Ok(Anomaly {
            k: j.k,
            baseline: Baseline::parse(&j.baseline).map_err(|e| format!("anomaly.baseline: {e}"))?,
            min_windows,
            direction: j.direction,
        })
    }
}

impl From<&Anomaly> for AnomalyJson {
    fn from(a: &Anomaly) -> AnomalyJson {
        AnomalyJson {
            k: a.k,
            baseline: a.baseline.text(),
            min_windows: (a.min_windows != DEFAULT_MIN_WINDOWS).then_some(a.min_windows),
            direction: a.direction,
        }
    }
}

/// The metric's statistics over the baseline windows of one series.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BaselineStats {
    /// Windows with a finite value.
    pub windows: u32,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (n − 1).
    pub sd: f64,
}

impl BaselineStats {
    /// The statistics of `values` (non-finite ones skipped).
    pub fn of(values: impl IntoIterator<Item = f64>) -> BaselineStats {
        // Welford: stable for long baselines of close values.
        let (mut n, mut mean, mut m2) = (0u32, 0.0f64, 0.0f64);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            n += 1;
            let d = v - mean;
            mean += d / f64::from(n);
            m2 += d * (v - mean);
        }
        let sd = if n > 1 {
            (m2 / f64::from(n - 1)).sqrt()
        } else {
            0.0
        };
        BaselineStats {
            windows: n,
            mean,
            sd,
        }
    }
}

impl Anomaly {
    /// Judges one window's value against the baseline: no data while the baseline has fewer
    /// than `min_windows` windows. The bound reported is the band's edge on the value's side.
    pub fn judge(&self, value: f64, stats: Option<BaselineStats>) -> Verdict {
        let Some(s) = stats
            .filter(|s| s.windows >= self.min_windows && s.mean.is_finite() && s.sd.is_finite())
        else {
            return Verdict::NoData;
        };
        let band = self.k * s.sd;
        let dev = value - s.mean;
        // A constant baseline (sd 0) breaches only on a real change, not on rounding.
        let tiny = 1e-12 * s.mean.abs().max(1.0);
        let up = dev > band && dev > tiny;
        let down = -dev > band && -dev > tiny;
        let (breach, bound) = match self.direction {
            Direction::Both => (
                up || down,
                if dev < 0.0 {
                    s.mean - band
                } else {
                    s.mean + band
                },
            ),
            Direction::Up => (up, s.mean + band),
            Direction::Down => (down, s.mean - band),
        };
        if breach {
            Verdict::Breach { value, bound }
        } else {
            Verdict::Healthy { value, bound }
        }
    }

    /// `mean ± 3σ of trailing 7d`.
    pub fn describe(&self) -> String {
        let side = match self.direction {
            Direction::Both => "±",
            Direction::Up => "+",
            Direction::Down => "−",
        };
        format!(
            "mean {side} {}σ of {}",
            fmt_num(self.k),
            self.baseline.text()
        )
    }
}
