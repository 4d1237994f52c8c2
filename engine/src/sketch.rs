//! Sketch states: one per series and window, mergeable and stored in a checksummed envelope.
//!
//! Every state merges associatively and commutatively with an identity (the default state), so
//! storage can apply ingest deltas as RocksDB merge operands in any grouping and queries can
//! merge any set of windows. Counts, sums and bins merge exactly; KLL quantiles within the
//! sketch's rank-error bound; frequent items and HLL within theirs.

pub mod categorical;
pub mod kll;
pub mod numeric;
pub mod performance;

pub use categorical::CategoricalState;
pub use numeric::{BinCounts, BinEdges, NumericState};
pub use performance::PerformanceState;

use crate::codec::{Reader, Writer, open, seal};
use crate::error::{Error, Result};

/// The prediction score's state: its distribution plus the performance of labelled predictions.
#[derive(Debug, Clone, Default)]
pub struct ScoreState {
    /// Predictions made in the window (labelled or not): the denominator of label coverage.
    pub predictions: u64,
    /// Distribution of the score (drift of the prediction).
    pub distribution: NumericState,
    /// Sums over predictions whose label has joined.
    pub performance: PerformanceState,
}

impl ScoreState {
    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &ScoreState) -> Result<()> {
        self.predictions += other.predictions;
        self.distribution.merge(&other.distribution)?;
        self.performance.merge(&other.performance);
        Ok(())
    }

    /// Share of predictions whose label has arrived.
    pub fn label_coverage(&self) -> Option<f64> {
        (self.predictions > 0)
            .then(|| self.performance.n_labeled() as f64 / self.predictions as f64)
    }
}

/// A series-window state of any kind.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "states are built and merged in place by the million; boxing would add an allocation per state"
)]
pub enum SeriesState {
    /// Numeric feature, `$latency`, or numeric `$label`.
    Numeric(NumericState),
    /// Categorical feature or categorical `$label`.
    Categorical(CategoricalState),
    /// `$score`.
    Score(ScoreState),
}

const TAG_NUMERIC: u8 = 1;
const TAG_CATEGORICAL: u8 = 2;
const TAG_SCORE: u8 = 3;

impl SeriesState {
    /// The kind's name, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            SeriesState::Numeric(_) => "numeric",
            SeriesState::Categorical(_) => "categorical",
            SeriesState::Score(_) => "score",
        }
    }

    /// Merges `other` into `self`; both must be of the same kind.
    pub fn merge(&mut self, other: &SeriesState) -> Result<()> {
        match (self, other) {
            (SeriesState::Numeric(a), SeriesState::Numeric(b)) => a.merge(b),
            (SeriesState::Categorical(a), SeriesState::Categorical(b)) => a.merge(b),
            (SeriesState::Score(a), SeriesState::Score(b)) => a.merge(b),
            (a, b) => Err(Error::KindMismatch {
                left: a.kind_name(),
                right: b.kind_name(),
            }),
        }
    }

    /// Merges `other` into `self` without the KLL sketches of numeric and score
    /// distributions ([`NumericState::merge_without_sketch`]); categorical states and score
    /// performance merge whole. For queries whose metric does not read the sketch.
    pub fn merge_without_sketch(&mut self, other: &SeriesState) -> Result<()> {
        match (self, other) {
            (SeriesState::Numeric(a), SeriesState::Numeric(b)) => {
                a.merge_without_sketch(b);
                Ok(())
            }
            (SeriesState::Score(a), SeriesState::Score(b)) => {
                a.predictions += b.predictions;
                a.distribution.merge_without_sketch(&b.distribution);
                a.performance.merge(&b.performance);
                Ok(())
            }
            (a, b) => a.merge(b),
        }
    }

    /// Drops the KLL sketch of a numeric or score distribution, keeping everything else
    /// ([`NumericState::forget_sketch`]); categorical states are left as they are.
    pub fn forget_sketch(&mut self) {
        match self {
            SeriesState::Numeric(n) => n.forget_sketch(),
            SeriesState::Score(s) => s.distribution.forget_sketch(),
            SeriesState::Categorical(_) => {}
        }
    }

    /// Encodes the state in the checksummed envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let tag = match self {
            SeriesState::Numeric(s) => {
                s.encode(&mut w);
                TAG_NUMERIC
            }
            SeriesState::Categorical(s) => {
                s.encode(&mut w);
                TAG_CATEGORICAL
            }
            SeriesState::Score(s) => {
                w.varint(s.predictions);
                s.distribution.encode(&mut w);
                s.performance.encode(&mut w);
                TAG_SCORE
            }
        };
        seal(tag, &w.into_bytes())
    }

    /// Decodes a value written by [`SeriesState::encode`]; any corruption is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Self::decode_with(bytes, true)
    }

    /// [`SeriesState::decode`] for readers that merge without sketches: the value is checked
    /// as a whole (checksum, every field, the KLL image's preamble), but numeric and score
    /// distributions come back with their sketch dropped instead of a copy of its image
    /// ([`NumericState::forget_sketch`]).
    pub fn decode_without_sketch(bytes: &[u8]) -> Result<Self> {
        Self::decode_with(bytes, false)
    }

    fn decode_with(bytes: &[u8], sketch: bool) -> Result<Self> {
        let (tag, payload) = open(bytes)?;
        let mut r = Reader::new(payload);
        let s = match tag {
            TAG_NUMERIC => SeriesState::Numeric(NumericState::decode_with(&mut r, sketch)?),
            TAG_CATEGORICAL => SeriesState::Categorical(CategoricalState::decode(&mut r)?),
            TAG_SCORE => SeriesState::Score(ScoreState {
                predictions: r.varint()?,
                distribution: NumericState::decode_with(&mut r, sketch)?,
                performance: PerformanceState::decode(&mut r)?,
            }),
            tag => return Err(Error::UnknownStateKind { tag }),
        };
        r.finish("series state")?;
        Ok(s)
    }
}

/// The one-pass merge of numeric or score states (their KLL sketches merged once, not once
/// per operand); `None` for other kinds, mixed kinds, or when it fails (the caller then merges
/// in turn, counting the operands that do not merge).
fn merge_all_at_once(states: &[SeriesState]) -> Option<SeriesState> {
    if states.len() < 2 {
        return None;
    }
    let numeric: Option<Vec<&NumericState>> = states
        .iter()
        .map(|s| match s {
            SeriesState::Numeric(n) => Some(n),
            _ => None,
        })
        .collect();
    if let Some(numeric) = numeric {
        return NumericState::merge_all(numeric)
            .ok()
            .map(SeriesState::Numeric);
    }
    let scores: Vec<&ScoreState> = states
        .iter()
        .map(|s| match s {
            SeriesState::Score(x) => Some(x),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let (first, rest) = scores.split_first()?;
    let mut merged = ScoreState {
        predictions: first.predictions,
        distribution: NumericState::merge_all(scores.iter().map(|s| &s.distribution)).ok()?,
        performance: first.performance.clone(),
    };
    for s in rest {
        merged.predictions += s.predictions;
        merged.performance.merge(&s.performance);
    }
    Some(SeriesState::Score(merged))
}

/// The outcome of merging encoded values, as storage's merge operator needs it.
#[derive(Debug)]
pub struct MergedValue {
    /// The encoded merge of every operand that decoded.
    pub bytes: Option<Vec<u8>>,
    /// Operands that failed to decode (checksum, format) and were left out.
    pub corrupt: usize,
}

/// Merges encoded states in order. Operands that do not decode, or whose kind differs from the
/// first good one, are counted and skipped, never folded in as data.
///
/// Numeric and score windows, nearly every key RocksDB merges, merge in one pass
/// ([`NumericState::merge_all`]): their sketches are merged once, not once per operand.
///
/// A single value (what a read of a window written once and not yet compacted asks RocksDB to
/// merge) is given back as it is when its envelope holds (checksum, format version, a state
/// kind): a valid value is already its own canonical encoding, so decoding, re-encoding and
/// sealing it again would give the same bytes at the cost of a decode, an encode and two copies
/// of its sketch. Its fields are checked by whoever decodes it, as a plain value's are.
pub fn merge_encoded<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> MergedValue {
    let values: Vec<&[u8]> = values.into_iter().collect();
    if let [only] = values.as_slice() {
        let sealed = open(only)
            .is_ok_and(|(tag, _)| [TAG_NUMERIC, TAG_CATEGORICAL, TAG_SCORE].contains(&tag));
        return match sealed {
            true => MergedValue {
                bytes: Some(only.to_vec()),
                corrupt: 0,
            },
            false => MergedValue {
                bytes: None,
                corrupt: 1,
            },
        };
    }
    let mut corrupt = 0;
    let mut states = Vec::new();
    for v in values {
        match SeriesState::decode(v) {
            Ok(s) => states.push(s),
            Err(_) => corrupt += 1,
        }
    }
    if let Some(merged) = merge_all_at_once(&states) {
        return MergedValue {
            bytes: Some(merged.encode()),
            corrupt,
        };
    }
    let mut acc: Option<SeriesState> = None;
    for s in states {
        match acc.as_mut() {
            None => acc = Some(s),
            Some(a) => {
                if a.merge(&s).is_err() {
                    corrupt += 1;
                }
            }
        }
    }
    MergedValue {
        bytes: acc.map(|s| s.encode()),
        corrupt,
    }
}
