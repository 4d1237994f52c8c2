//! The categorical series-window state: exact category counts up to a cap, then a
//! frequent-items sketch and an HLL for distinct counts (both Apache DataSketches images).
//!
//! Categories are compared as strings (booleans as `"true"`/`"false"`). Strings are hashed as
//! their raw UTF-8 bytes, as DataSketches Java/C++/Python do, so HLL images union across
//! implementations (docs/DATA_MODEL.md, scale-out 1).

use std::collections::BTreeMap;

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Distinct categories kept exactly per state; past it the state switches to sketches.
pub const CATEGORY_CAP: usize = 256;
/// `lg_max_map_size` of the frequent-items sketch (map of 1,024 slots).
pub const FREQ_LG_MAX_MAP: u8 = 10;
/// `lg_k` of the distinct-count HLL; its type is HLL_8.
pub const HLL_LG_K: u8 = 12;

/// Sketches that replace the exact map once a state sees more than [`CATEGORY_CAP`] categories.
#[derive(Debug, Clone)]
pub struct Overflow {
    /// Heavy hitters with estimated counts and error bounds.
    pub frequent: FrequentItemsSketch<String>,
    /// Distinct count.
    pub hll: HllSketch,
}

/// Summary of a categorical series over a window or a merge of windows.
#[derive(Debug, Clone, Default)]
pub struct CategoricalState {
    count: u64,
    missing: u64,
    invalid: u64,
    unseen: u64,
    exact: BTreeMap<String, u64>,
    overflow: Option<Overflow>,
}

fn new_overflow() -> Overflow {
    // Both parameters are constants within the libraries' accepted ranges.
    #[expect(
        clippy::expect_used,
        reason = "constant parameters within the documented ranges"
    )]
    Overflow {
        frequent: FrequentItemsSketch::new(1 << FREQ_LG_MAX_MAP)
            .expect("valid frequent-items size"),
        hll: HllSketch::new(HLL_LG_K, HllType::Hll8).expect("valid hll lg_k"),
    }
}

fn hll_add(hll: &mut HllSketch, s: &str) {
    // DataSketches skips empty strings; do the same so registers match across languages.
    if !s.is_empty() {
        hll.update(raw_bytes::from_str(s));
    }
}

impl CategoricalState {
    /// Folds one category; `unseen` says whether the reference profile lacks it.
    pub fn observe(&mut self, v: &str, unseen: bool) {
        self.observe_many(v, 1, u64::from(unseen));
    }

    /// Folds `n` occurrences of one category at once, `unseen` of them flagged unseen: the
    /// same state as `n` calls of [`CategoricalState::observe`] while the state is exact (and
    /// an equally valid sketch once it has spilled).
    pub fn observe_many(&mut self, v: &str, n: u64, unseen: u64) {
        if n == 0 {
            return;
        }
        self.count += n;
        self.unseen += unseen;
        match &mut self.overflow {
            Some(o) => {
                o.frequent.update_with_count_ref(v, n);
                hll_add(&mut o.hll, v);
            }
            None => {
                if let Some(c) = self.exact.get_mut(v) {
                    *c += n;
                } else {
                    self.exact.insert(v.to_string(), n);
                    if self.exact.len() > CATEGORY_CAP {
                        self.spill();
                    }
                }
            }
        }
    }

    /// Counts `n` missing values.
    pub fn observe_missing_many(&mut self, n: u64) {
        self.missing += n;
    }

    /// Counts one missing value.
    pub fn observe_missing(&mut self) {
        self.missing += 1;
    }

    /// Counts one invalid value (wrong type).
    pub fn observe_invalid(&mut self) {
        self.invalid += 1;
    }

    fn spill(&mut self) {
        let mut o = new_overflow();
        for (k, c) in std::mem::take(&mut self.exact) {
            hll_add(&mut o.hll, &k);
            o.frequent.update_with_count(k, c);
        }
        self.overflow = Some(o);
    }

    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &CategoricalState) -> Result<()> {
        self.count += other.count;
        self.missing += other.missing;
        self.invalid += other.invalid;
        self.unseen += other.unseen;
        if self.overflow.is_none() && other.overflow.is_none() {
            for (k, c) in &other.exact {
                *self.exact.entry(k.clone()).or_insert(0) += c;
            }
            if self.exact.len() > CATEGORY_CAP {
                self.spill();
            }
            return Ok(());
        }
        if self.overflow.is_none() {
            self.spill();
        }
        let mut theirs = other.clone();
        if theirs.overflow.is_none() {
            theirs.spill();
        }
        if let (Some(a), Some(b)) = (self.overflow.as_mut(), theirs.overflow.as_ref()) {
            a.frequent.merge(&b.frequent);
            let mut u = HllUnion::new(HLL_LG_K).map_err(|e| Error::sketch("hll", e))?;
            u.update(&a.hll);
            u.update(&b.hll);
            a.hll = u.to_sketch(HllType::Hll8);
        }
        Ok(())
    }

    /// Non-null values.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Missing values.
    pub fn missing(&self) -> u64 {
        self.missing
    }
    /// Invalid values.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }
    /// Rows seen.
    pub fn count_total(&self) -> u64 {
        self.count + self.missing + self.invalid
    }
    /// Values whose category was absent from the reference when they were folded.
    pub fn unseen(&self) -> u64 {
        self.unseen
    }
    /// Whether counts are exact (the state never passed [`CATEGORY_CAP`]).
    pub fn is_exact(&self) -> bool {
        self.overflow.is_none()
    }
    /// Category counts: exact, or the frequent-items estimates past the cap.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        match &self.overflow {
            None => self.exact.clone(),
            Some(o) => o
                .frequent
                .frequent_items(ErrorType::NoFalseNegatives)
                .into_iter()
                .map(|r| (r.item().clone(), r.estimate()))
                .collect(),
        }
    }
    /// The exact category counts, borrowed; `None` once the state overflowed.
    pub fn exact_counts(&self) -> Option<&BTreeMap<String, u64>> {
        self.overflow.is_none().then_some(&self.exact)
    }
    /// Number of distinct categories: exact, or the HLL estimate past the cap.
    pub fn n_distinct(&self) -> f64 {
        match &self.overflow {
            None => self.exact.len() as f64,
            Some(o) => o.hll.estimate(),
        }
    }
    /// The sketches, once the state overflowed.
    pub fn overflow(&self) -> Option<&Overflow> {
        self.overflow.as_ref()
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(u8::from(self.overflow.is_some()));
        w.varint(self.count);
        w.varint(self.missing);
        w.varint(self.invalid);
        w.varint(self.unseen);
        match &self.overflow {
            None => {
                w.varint(self.exact.len() as u64);
                for (k, c) in &self.exact {
                    w.str(k);
                    w.varint(*c);
                }
            }
            Some(o) => {
                w.bytes(&o.frequent.serialize());
                w.bytes(&o.hll.serialize());
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let flags = r.u8()?;
        let mut s = CategoricalState {
            count: r.varint()?,
            missing: r.varint()?,
            invalid: r.varint()?,
            unseen: r.varint()?,
            ..Default::default()
        };
        match flags {
            0 => {
                let n = r.len(CATEGORY_CAP, "category count")?;
                let mut total = 0u64;
                for _ in 0..n {
                    let k = r.str()?.to_string();
                    let c = r.varint()?;
                    total = total.saturating_add(c);
                    // A category listed twice would decode to a state whose counts no longer
                    // add up once re-encoded (found by the `stored_value` fuzz target).
                    if s.exact.insert(k, c).is_some() {
                        return Err(Error::Malformed {
                            what: "categorical state",
                            detail: "a category is listed twice".into(),
                        });
                    }
                }
                if total != s.count {
                    return Err(Error::Malformed {
                        what: "categorical state",
                        detail: "counts do not add up".into(),
                    });
                }
            }
            1 => {
                let frequent = FrequentItemsSketch::<String>::deserialize(r.bytes()?)
                    .map_err(|e| Error::sketch("frequent items", e))?;
                let hll =
                    HllSketch::deserialize(r.bytes()?).map_err(|e| Error::sketch("hll", e))?;
                if frequent.total_weight() != s.count {
                    return Err(Error::Malformed {
                        what: "categorical state",
                        detail: "sketch weight != count".into(),
                    });
                }
                s.overflow = Some(Overflow { frequent, hll });
            }
            f => {
                return Err(Error::Malformed {
                    what: "categorical state",
                    detail: format!("flags {f:#x}"),
                });
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_spills_past_cap_keeping_totals() {
        let mut a = CategoricalState::default();
        for i in 0..CATEGORY_CAP {
            a.observe(&format!("c{i}"), false);
        }
        assert!(a.is_exact());
        assert_eq!(a.n_distinct(), CATEGORY_CAP as f64);
        a.observe("c0", false);
        assert_eq!(a.counts()["c0"], 2);
        a.observe("new", true);
        assert!(!a.is_exact());
        assert_eq!((a.count(), a.unseen()), (CATEGORY_CAP as u64 + 2, 1));
        let d = a.n_distinct();
        assert!((d - 257.0).abs() < 257.0 * 0.05, "hll estimate {d}");
    }
}
