//! The evaluation state machine of one rule on one series (and segment).
//!
//! ```text
//!            N breaching windows in a row            N healthy windows in a row
//!   ok  ─────────────────────────────────▶ firing ─────────────────────────────▶ ok
//!       (and `cooldown` passed since the          (a breach resets the count)
//!        last resolution)
//! ```
//!
//! - Windows are identified by their start and must come in increasing order. A window at or
//!   before the last one processed (a replay after restart or handover, or a late window) is
//!   ignored, so feeding the same window twice never fires twice (docs/DATA_MODEL.md, scale-out 6).
//! - A window without a value (no data, a metric undefined on it, or a relative threshold with
//!   no reference value) neither breaches nor heals: the counters keep their values, so
//!   "consecutive" counts windows *with data*. The window still counts as processed.
//! - While firing, further breaches change nothing (one firing per episode).
//! - After a resolution, a breach streak that completes within `cooldown` of the resolving
//!   window does not fire; it keeps counting and fires on the first window past the cooldown
//!   that still breaches.
//!
//! Time is event time (window starts), so a replay on another node rebuilds the same state.

use super::anomaly::BaselineStats;
use super::def::{Comparison, Threshold};
use crate::codec::{Reader, Writer, open, seal};
use crate::error::{Error, Result};
use crate::time::Timestamp;

/// Envelope kind byte of a stored [`AlertState`].
pub const ALERT_STATE_KIND: u8 = 0x40;

/// The evaluation settings of a rule, from [`RuleDef::check`](super::RuleDef::check).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// How the value is compared with the bound.
    pub comparison: Comparison,
    /// The bound.
    pub threshold: Threshold,
    /// Windows in a row to fire and to resolve (at least 1).
    pub consecutive: u32,
    /// After a resolution, no new firing for this long (event time, ms; 0 for none).
    pub cooldown_ms: i64,
}

/// How one window compares with the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The comparison holds.
    Breach {
        /// The window's value.
        value: f64,
        /// The bound it was compared with.
        bound: f64,
    },
    /// The comparison does not hold.
    Healthy {
        /// The window's value.
        value: f64,
        /// The bound it was compared with.
        bound: f64,
    },
    /// No value, a non-finite value, or no bound (missing reference).
    NoData,
}

impl Check {
    /// Compares one window's value (and the metric's reference value) with the rule.
    pub fn evaluate(&self, value: Option<f64>, reference: Option<f64>) -> Verdict {
        self.evaluate_with(value, reference, None)
    }

    /// Like [`Check::evaluate`], with the metric's baseline statistics for an anomaly
    /// threshold.
    pub fn evaluate_with(
        &self,
        value: Option<f64>,
        reference: Option<f64>,
        baseline: Option<BaselineStats>,
    ) -> Verdict {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return Verdict::NoData;
        };
        if let Some(a) = self.threshold.anomaly() {
            return a.judge(value, baseline);
        }
        let Some(bound) = self.threshold.bound(reference) else {
            return Verdict::NoData;
        };
        if self.comparison.holds(value, bound) {
            Verdict::Breach { value, bound }
        } else {
            Verdict::Healthy { value, bound }
        }
    }
}

/// A change of alert status produced by [`AlertState::step`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// The rule started firing on this window.
    Fired {
        /// Start of the window that completed the breach streak.
        window: Timestamp,
        /// Its value.
        value: f64,
        /// The bound it breached.
        bound: f64,
        /// The reference value used, if any.
        reference: Option<f64>,
        /// Breaching windows in the streak (≥ `consecutive`; more when a cooldown held it).
        streak: u32,
    },
    /// The rule stopped firing on this window.
    Resolved {
        /// Start of the window that completed the healthy streak.
        window: Timestamp,
        /// Its value.
        value: f64,
        /// The bound it no longer breaches.
        bound: f64,
        /// The reference value used, if any.
        reference: Option<f64>,
        /// Start of the window the episode fired on.
        fired_window: Timestamp,
    },
}

impl Transition {
    /// The window the transition happened on.
    pub fn window(&self) -> Timestamp {
        match self {
            Transition::Fired { window, .. } | Transition::Resolved { window, .. } => *window,
        }
    }
}

/// Evaluation state of one rule on one series (one segment value for per-segment rules).
/// Small (a few dozen bytes encoded), so 500,000 of them fit in memory and in one write batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertState {
    last_window: Option<Timestamp>,
    firing: bool,
    breaches: u32,
    healthy: u32,
    fired_window: Option<Timestamp>,
    resolved_window: Option<Timestamp>,
}

impl AlertState {
    /// A fresh state: not firing, nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the rule is firing on this series.
    pub fn is_firing(&self) -> bool {
        self.firing
    }

    /// The last window processed.
    pub fn last_window(&self) -> Option<Timestamp> {
        self.last_window
    }

    /// Breaching windows in a row so far (with data).
    pub fn breaches(&self) -> u32 {
        self.breaches
    }

    /// Healthy windows in a row so far (with data).
    pub fn healthy(&self) -> u32 {
        self.healthy
    }

    /// The window of the last firing.
    pub fn fired_window(&self) -> Option<Timestamp> {
        self.fired_window
    }

    /// The window of the last resolution.
    pub fn resolved_window(&self) -> Option<Timestamp> {
        self.resolved_window
    }

    /// Whether `window` is new (after the last one processed).
    pub fn is_new(&self, window: Timestamp) -> bool {
        self.last_window.is_none_or(|last| window > last)
    }

    /// Feeds one closed window: its start, the metric's value on it (`None` without data) and
    /// the metric's reference value (needed by relative and delta thresholds). Returns the
    /// transition it causes, if any. Windows at or before the last one processed are ignored.
    pub fn step(
        &mut self,
        check: &Check,
        window: Timestamp,
        value: Option<f64>,
        reference: Option<f64>,
    ) -> Option<Transition> {
        self.step_with(check, window, value, reference, None)
    }

    /// Like [`AlertState::step`], with the metric's baseline statistics (anomaly thresholds):
    /// the baseline mean is then the transition's reference value.
    pub fn step_with(
        &mut self,
        check: &Check,
        window: Timestamp,
        value: Option<f64>,
        reference: Option<f64>,
        baseline: Option<BaselineStats>,
    ) -> Option<Transition> {
        if !self.is_new(window) {
            return None;
        }
        self.last_window = Some(window);
        let need = check.consecutive.max(1);
        let reference = match (check.threshold.anomaly(), baseline) {
            (Some(_), Some(b)) => Some(b.mean),
            _ => reference,
        }
        .filter(|r| r.is_finite());
        match check.evaluate_with(value, reference, baseline) {
            Verdict::NoData => None,
            Verdict::Breach { value, bound } => {
                self.healthy = 0;
                self.breaches = self.breaches.saturating_add(1);
                if self.firing || self.breaches < need || self.cooling(check, window) {
                    return None;
                }
                self.firing = true;
                self.fired_window = Some(window);
                Some(Transition::Fired {
                    window,
                    value,
                    bound,
                    reference,
                    streak: self.breaches,
                })
            }
            Verdict::Healthy { value, bound } => {
                self.breaches = 0;
                self.healthy = self.healthy.saturating_add(1);
                if !self.firing || self.healthy < need {
                    return None;
                }
                self.firing = false;
                self.healthy = 0;
                self.resolved_window = Some(window);
                Some(Transition::Resolved {
                    window,
                    value,
                    bound,
                    reference,
                    fired_window: self.fired_window.unwrap_or(window),
                })
            }
        }
    }

    fn cooling(&self, check: &Check, window: Timestamp) -> bool {
        match self.resolved_window {
            Some(r) if check.cooldown_ms > 0 => {
                window.millis().saturating_sub(r.millis()) < check.cooldown_ms
            }
            _ => false,
        }
    }

    /// The stored form: the codec envelope (kind [`ALERT_STATE_KIND`]) around
    ///
    /// ```text
    /// flags u8 (bit 0 firing, bit 1 last_window, bit 2 fired_window, bit 3 resolved_window)
    /// varint breaches | varint healthy
    /// zigzag-varint last_window? | fired_window? | resolved_window?   (present per flags)
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let mut flags = 0u8;
        if self.firing {
            flags |= 1;
        }
        for (bit, t) in [
            (2, self.last_window),
            (4, self.fired_window),
            (8, self.resolved_window),
        ] {
            if t.is_some() {
                flags |= bit;
            }
        }
        w.u8(flags);
        w.varint(u64::from(self.breaches));
        w.varint(u64::from(self.healthy));
        for t in [self.last_window, self.fired_window, self.resolved_window]
            .into_iter()
            .flatten()
        {
            w.varint(zigzag(t.millis()));
        }
        seal(ALERT_STATE_KIND, &w.into_bytes())
    }

    /// Reads a state written by [`AlertState::encode`]; a torn, corrupted or foreign value is
    /// an error, never a state.
    pub fn decode(bytes: &[u8]) -> Result<AlertState> {
        let (kind, payload) = open(bytes)?;
        if kind != ALERT_STATE_KIND {
            return Err(Error::UnknownStateKind { tag: kind });
        }
        let mut r = Reader::new(payload);
        let flags = r.u8()?;
        if flags & !0x0f != 0 {
            return Err(Error::Malformed {
                what: "alert state",
                detail: format!("unknown flags {flags:#04x}"),
            });
        }
        let count = |r: &mut Reader<'_>| -> Result<u32> {
            let v = r.varint()?;
            u32::try_from(v).map_err(|_| Error::Malformed {
                what: "alert state",
                detail: format!("counter {v} out of range"),
            })
        };
        let breaches = count(&mut r)?;
        let healthy = count(&mut r)?;
        let mut time = |bit: u8| -> Result<Option<Timestamp>> {
            if flags & bit == 0 {
                Ok(None)
            } else {
                Ok(Some(Timestamp(unzigzag(r.varint()?))))
            }
        };
        let last_window = time(2)?;
        let fired_window = time(4)?;
        let resolved_window = time(8)?;
        r.finish("alert state")?;
        let firing = flags & 1 != 0;
        if firing && fired_window.is_none() {
            return Err(Error::Malformed {
                what: "alert state",
                detail: "firing without a fired window".into(),
            });
        }
        Ok(AlertState {
            last_window,
            firing,
            breaches,
            healthy,
            fired_window,
            resolved_window,
        })
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}
