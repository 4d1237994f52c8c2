//! Where the evaluator gets its series: the [`SeriesSource`] trait, the types it returns, and
//! [`MemorySource`], series held in memory (tests and the fuzz target).
//!
//! driftdb's own source, which computes the series from stored sketches, is
//! [`crate::series::DriftSource`]. Keeping the evaluator behind this trait means it needs
//! neither storage nor the query crate, so the fuzz target compiles it without RocksDB.

use crate::error::{Error, Result};
use crate::limits::{Budget, Limits, Ticker};
use crate::matcher::{Matcher, all_match};

/// A series' labels, sorted by name, names unique.
pub type Labels = Vec<(String, String)>;

/// One series with its samples (`(ms, value)`, ascending time).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels, `__name__` included, sorted by name.
    pub labels: Labels,
    /// Samples in ascending time.
    pub samples: Vec<(i64, f64)>,
}

/// What reading met, for the answer's warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Stored windows read.
    pub windows_read: u64,
    /// Stored windows skipped because they failed their checksum.
    pub corrupt_skipped: u64,
    /// Windows that could not be merged and were left out.
    pub merge_errors: u64,
}

impl ReadStats {
    /// Adds another read's counters.
    pub fn add(&mut self, o: &ReadStats) {
        self.windows_read += o.windows_read;
        self.corrupt_skipped += o.corrupt_skipped;
        self.merge_errors += o.merge_errors;
    }

    /// The warnings a Prometheus answer carries for these counters.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.corrupt_skipped > 0 {
            w.push(format!(
                "{} stored windows failed their checksum and were left out",
                self.corrupt_skipped
            ));
        }
        if self.merge_errors > 0 {
            w.push(format!(
                "{} windows could not be merged and were left out",
                self.merge_errors
            ));
        }
        w
    }
}

/// The series of one selection and what reading them met.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Series sorted by labels; series without a sample in the range are left out.
    pub series: Vec<Series>,
    /// What reading met.
    pub stats: ReadStats,
}

/// A source of series for the evaluator.
pub trait SeriesSource {
    /// Every series all `matchers` select, with its samples in `[start_ms, end_ms]`
    /// (inclusive), sorted by labels. `instants` is how many values per series the caller
    /// will hold (0 when it only wants the samples): a source refuses with
    /// [`Error::TooLarge`] **before reading** when series × instants passes
    /// [`Limits::max_cells`], and checks `budget` while it reads.
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        instants: usize,
        budget: &Budget,
    ) -> Result<Selection>;
}

/// Series held in memory, with the same limits as driftdb's own source.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    series: Vec<Series>,
    limits: Limits,
}

impl MemorySource {
    /// A source of `series` (labels are sorted here; samples must be ascending).
    pub fn new(series: Vec<Series>, limits: Limits) -> MemorySource {
        let mut series = series;
        for s in &mut series {
            s.labels.sort();
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        MemorySource { series, limits }
    }
}

impl SeriesSource for MemorySource {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        instants: usize,
        budget: &Budget,
    ) -> Result<Selection> {
        let mut tick = Ticker::new(budget, 256);
        let mut picked = Vec::new();
        let mut samples = 0usize;
        for s in &self.series {
            tick.tick()?;
            if !all_match(matchers, &s.labels) {
                continue;
            }
            let a = s.samples.partition_point(|p| p.0 < start_ms);
            let b = s.samples.partition_point(|p| p.0 <= end_ms).max(a);
            if a == b {
                continue;
            }
            samples += b - a;
            picked.push((s, a, b));
        }
        check_selection(&self.limits, picked.len(), instants, samples as u64)?;
        Ok(Selection {
            series: picked
                .into_iter()
                .map(|(s, a, b)| Series {
                    labels: s.labels.clone(),
                    samples: s.samples[a..b].to_vec(),
                })
                .collect(),
            stats: ReadStats::default(),
        })
    }
}

/// Refuses a selection of `series` series holding `samples` samples for `instants` instants
/// per series, before it is materialised.
pub fn check_selection(
    limits: &Limits,
    series: usize,
    instants: usize,
    samples: u64,
) -> Result<()> {
    if series > limits.max_series {
        return Err(too_many_series(series as u64, limits.max_series));
    }
    let cells = (series as u64).saturating_mul(instants as u64);
    if cells > limits.max_cells as u64 {
        return Err(too_many_cells(series as u64, instants, limits.max_cells));
    }
    if samples > limits.max_samples as u64 {
        return Err(too_many_samples(limits.max_samples));
    }
    Ok(())
}

/// Too many series in one selection or listing.
pub fn too_many_series(n: u64, limit: usize) -> Error {
    Error::TooLarge(format!(
        "the selector matches {n} series; the limit is {limit} (add matchers: a metric name, model=\"…\", feature=\"…\" or a segment label)"
    ))
}

/// Too many values for the evaluator.
pub fn too_many_cells(series: u64, instants: usize, limit: usize) -> Error {
    Error::TooLarge(format!(
        "the query would hold {series} series × {instants} instants = {} values for one selector; the limit is {limit} (select fewer series, or use a larger step or a shorter range)",
        series.saturating_mul(instants as u64)
    ))
}

/// Too many samples in one selection.
pub fn too_many_samples(limit: usize) -> Error {
    Error::TooLarge(format!(
        "the selection holds more than {limit} samples; narrow the selector or the time range"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::MatchOp;

    fn s(name: &str, samples: &[(i64, f64)]) -> Series {
        Series {
            labels: vec![("__name__".into(), name.into())],
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn memory_source_clips_and_bounds() {
        let src = MemorySource::new(
            vec![s("b", &[(1, 1.0), (5, 5.0)]), s("a", &[(2, 2.0), (9, 9.0)])],
            Limits::default(),
        );
        let b = Budget::unlimited();
        let any = [Matcher::new(MatchOp::Re, "__name__", ".+").unwrap()];
        let got = src.select(&any, 2, 5, 1, &b).unwrap();
        assert_eq!(got.series, vec![s("a", &[(2, 2.0)]), s("b", &[(5, 5.0)])]);
        assert!(src.select(&any, 6, 8, 1, &b).unwrap().series.is_empty());
        let tight = MemorySource::new(
            vec![s("a", &[(1, 1.0)]), s("b", &[(1, 1.0)])],
            Limits {
                max_cells: 3,
                ..Limits::default()
            },
        );
        let e = tight.select(&any, 0, 9, 2, &b).unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("2 series × 2 instants"), "{e}");
        assert!(tight.select(&any, 0, 9, 1, &b).is_ok());
        b.cancel();
        assert!(matches!(
            src.select(&any, 0, 9, 1, &b),
            Ok(_) | Err(Error::Cancelled)
        ));
    }

    #[test]
    fn stats_warn_about_corrupt_windows() {
        let mut st = ReadStats::default();
        assert!(st.warnings().is_empty());
        st.add(&ReadStats {
            windows_read: 3,
            corrupt_skipped: 2,
            merge_errors: 1,
        });
        assert_eq!(st.warnings().len(), 2);
        assert!(st.warnings()[0].contains("2 stored windows"));
    }
}
