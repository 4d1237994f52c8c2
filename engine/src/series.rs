//! Series identity: model, version, feature (or `$score`/`$label`/`$latency`/`$items`/`$cost`,
//! or a feature's attributions `$attr:<feature>`), segment.
//!
//! A series is one sketch state per window (docs/DATA_MODEL.md). Identifiers are names, never node-local
//! counters (docs/DATA_MODEL.md, scale-out 2), so any node can compute a series' key.

use std::fmt;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// What a series measures.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FeatureRef {
    /// A named input feature.
    Named(String),
    /// The model's prediction score (`$score`); also carries labelled performance.
    Score,
    /// The ground-truth label distribution (`$label`).
    Label,
    /// Serving latency in milliseconds (`$latency`).
    Latency,
    /// Ranking models: the ids of the items each prediction served in its top
    /// [`TOP_K_ITEMS`] slots (`$items`), one categorical value per slot.
    Items,
    /// Per-event cost reported by the service, in currency units (`$cost`).
    Cost,
    /// The absolute attributions (e.g. SHAP values) of a named input feature, from the events
    /// that carry them (`$attr:<feature>`): their mean is the feature's importance.
    Attribution(String),
}

/// The DriftQL spelling's prefix of [`FeatureRef::Attribution`].
pub const ATTRIBUTION_PREFIX: &str = "$attr:";

/// How many leading items of a ranking prediction's served list the `$items` series sketches.
pub const TOP_K_ITEMS: usize = 10;

impl FeatureRef {
    /// Parses the spelling of [`fmt::Display`]: `$score`, `$label`, `$latency`, `$items`,
    /// `$cost`, `$attr:<feature>` or a feature name.
    pub fn parse(s: &str) -> FeatureRef {
        match s {
            "$score" => FeatureRef::Score,
            "$label" => FeatureRef::Label,
            "$latency" => FeatureRef::Latency,
            "$items" => FeatureRef::Items,
            "$cost" => FeatureRef::Cost,
            other => match other.strip_prefix(ATTRIBUTION_PREFIX) {
                Some(f) => FeatureRef::Attribution(f.to_string()),
                None => FeatureRef::Named(other.to_string()),
            },
        }
    }
}

impl fmt::Display for FeatureRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureRef::Named(n) => f.write_str(n),
            FeatureRef::Score => f.write_str("$score"),
            FeatureRef::Label => f.write_str("$label"),
            FeatureRef::Latency => f.write_str("$latency"),
            FeatureRef::Items => f.write_str("$items"),
            FeatureRef::Cost => f.write_str("$cost"),
            FeatureRef::Attribution(n) => write!(f, "{ATTRIBUTION_PREFIX}{n}"),
        }
    }
}

/// The overall segment's name in tables and series labels.
pub const ALL_SEGMENT: &str = "all";
/// The value that segment values past the cardinality cap fold into.
pub const OTHER_SEGMENT_VALUE: &str = "__other__";

/// A slice of traffic: everything, or one value of one segment key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// The overall segment `all`.
    All,
    /// Rows whose segment `key` equals `value`.
    Value {
        /// Segment key, e.g. `region`.
        key: String,
        /// Segment value, e.g. `eu`.
        value: String,
    },
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::All => f.write_str(ALL_SEGMENT),
            Segment::Value { key, value } => write!(f, "{key}={value}"),
        }
    }
}

impl Segment {
    /// Writes the segment inside a stored value: `00` (all) or `01 str8(key) str8(value)`.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Segment::All => w.u8(0),
            Segment::Value { key, value } => {
                w.u8(1);
                w.str(key);
                w.str(value);
            }
        }
    }

    /// Reads a segment written by [`Segment::encode`].
    pub fn decode(r: &mut Reader<'_>) -> Result<Segment> {
        match r.u8()? {
            0 => Ok(Segment::All),
            1 => Ok(Segment::Value {
                key: r.str()?.to_string(),
                value: r.str()?.to_string(),
            }),
            t => Err(Error::Malformed {
                what: "segment",
                detail: format!("tag {t}"),
            }),
        }
    }
}

/// The identity of one series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// Model id.
    pub model: String,
    /// Model version.
    pub version: String,
    /// What is measured.
    pub feature: FeatureRef,
    /// Which slice of traffic.
    pub segment: Segment,
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}.{}[{}]",
            self.model, self.version, self.feature, self.segment
        )
    }
}
