//! The numeric series-window state: exact counts and moments, exact counts over the reference's
//! quantile bin edges, and a KLL sketch for quantiles, KS and Wasserstein.

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use std::borrow::Cow;
use std::sync::OnceLock;

use crate::sketch::kll::{
    Kll, WeightedCdf, kll_deserialize, kll_image_from_sorted, kll_image_header, kll_merge,
    kll_merge_images, kll_rank_error_bound, kll_update, new_kll,
};

/// Quantile bin edges of a reference profile (docs/STATISTICS.md §2): sorted, unique, finite.
///
/// Bins are left-closed with open outer bins: `bin(x)` is the number of edges `<= x`, so there
/// are `edges.len() + 1` bins. The id is a crc32 of the edges, so states binned on different
/// edges are never added together.
#[derive(Debug, Clone, PartialEq)]
pub struct BinEdges {
    edges: Vec<f64>,
    /// [`bulk_order_key`] of each edge.
    keys: Vec<u32>,
    /// The grid unit of each bin's offset sums ([`BinEdges::offset_unit`]), a power of two,
    /// kept as its base-2 exponent: two bytes instead of eight, for edges that reference
    /// profiles hold in memory for every numeric series.
    units: Vec<i16>,
    id: u32,
}

/// The base-2 exponent of `u`, an exact power of two (normal or subnormal).
fn pow2_exponent(u: f64) -> i16 {
    let bits = u.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i16;
    if biased == 0 {
        // Subnormal: one mantissa bit, 2^(position − 1074).
        bits.trailing_zeros() as i16 - 1074
    } else {
        biased - 1023
    }
}

/// `2^e` for an exponent [`pow2_exponent`] returned (−1074..=1023), exactly.
#[inline]
fn pow2(e: i16) -> f64 {
    let e = i64::from(e);
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074).clamp(0, 51))
    }
}

/// Bits of resolution of the offset-sum grid below a bin's width: a value's offset from its
/// bin's anchor is counted in units of `2^(floor(log2 width) − 12)`, so rounding one value up
/// to the grid moves it by less than `width / 4096`.
pub const OFFSET_GRID_BITS: i32 = 12;

/// The largest power of two `<= w` (`w` positive; infinity counts as `f64::MAX`).
fn pow2_floor(w: f64) -> f64 {
    let w = w.min(f64::MAX);
    let bits = w.to_bits();
    if bits >> 52 == 0 {
        // Subnormal: the highest set bit of the significand.
        f64::from_bits(1u64 << (63 - bits.leading_zeros()))
    } else {
        f64::from_bits(bits & 0xFFF0_0000_0000_0000)
    }
}

/// `2^-OFFSET_GRID_BITS` times the largest power of two `<= scale`, at least the smallest
/// subnormal.
fn grid_unit(scale: f64) -> f64 {
    let u = pow2_floor(scale) * (1.0 / f64::from(1u32 << OFFSET_GRID_BITS));
    if u > 0.0 { u } else { f64::from_bits(1) }
}

/// The order the bulk fold ([`NumericState::from_sorted`]) needs its values in: the top 32
/// bits of the value in an order-preserving integer form, with `-0.0` as `0.0`. Ascending keys
/// mean ascending values up to 2^-20 relative, finer than the 16 significand bits a KLL item
/// keeps, so a key order is also an order of the sketch's rounded items. Sorting 32-bit keys
/// (packed with a row index into one `u64`) is cheaper than sorting doubles.
pub fn bulk_order_key(v: f64) -> u32 {
    // `+ 0.0` turns -0.0 into 0.0 so the two, equal as numbers, get one key.
    let bits = (v + 0.0).to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    (ordered >> 32) as u32
}

/// Sorts `order` (each `bulk_order_key << 32 | index`, pushed with ascending indices) into
/// ascending order: the order `sort_unstable` gives, found by a stable least-significant-digit
/// radix sort of the 32-bit keys alone (three passes of 11 bits; ties keep their ascending
/// indices). `tmp` is scratch space. Short slices are sorted by comparison.
pub fn sort_order_keys(order: &mut Vec<u64>, tmp: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    const MASK: u64 = (1 << BITS) - 1;
    if order.len() < 512 {
        order.sort_unstable();
        return;
    }
    // One read counts the digits of all three passes.
    let mut counts = vec![[0usize; BUCKETS]; 3];
    for &o in order.iter() {
        for (pass, c) in counts.iter_mut().enumerate() {
            c[((o >> (32 + BITS * pass as u32)) & MASK) as usize] += 1;
        }
    }
    tmp.clear();
    tmp.resize(order.len(), 0);
    for (pass, c) in counts.iter_mut().enumerate() {
        // A digit every key shares moves nothing.
        if c.contains(&order.len()) {
            continue;
        }
        let mut at = 0usize;
        for n in c.iter_mut() {
            let here = *n;
            *n = at;
            at += here;
        }
        let shift = 32 + BITS * pass as u32;
        for &o in order.iter() {
            let d = ((o >> shift) & MASK) as usize;
            tmp[c[d]] = o;
            c[d] += 1;
        }
        std::mem::swap(order, tmp);
    }
}

impl BinEdges {
    /// Validated edges: finite, strictly increasing.
    pub fn new(edges: Vec<f64>) -> Result<Self> {
        if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(
                "bin edges",
                "must be finite and strictly increasing",
            ));
        }
        let mut h = crc32fast::Hasher::new();
        for e in &edges {
            h.update(&e.to_le_bytes());
        }
        let m = edges.len();
        let mut units: Vec<f64> = (0..=m)
            .map(|j| {
                if (1..m).contains(&j) {
                    grid_unit(edges[j] - edges[j - 1])
                } else {
                    0.0
                }
            })
            .collect();
        if m >= 2 {
            // The open outer bins count in the unit of their inner neighbour.
            units[0] = units[1];
            units[m] = units[m - 1];
        } else if m == 1 {
            let scale = edges[0].abs();
            let u = grid_unit(if scale >= f64::MIN_POSITIVE {
                scale
            } else {
                1.0
            });
            units = vec![u, u];
        }
        Ok(BinEdges {
            id: h.finalize(),
            keys: edges.iter().map(|e| bulk_order_key(*e)).collect(),
            units: units.into_iter().map(pow2_exponent).collect(),
            edges,
        })
    }

    /// The edges.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Number of bins (`edges + 1`).
    pub fn num_bins(&self) -> usize {
        self.edges.len() + 1
    }

    /// Identity of this edge set.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The bin of `x`: the number of edges `<= x` (numpy `searchsorted(side="right")`).
    pub fn bin(&self, x: f64) -> usize {
        self.edges.partition_point(|e| *e <= x)
    }

    /// The anchor of bin `j`, the edge its values' offsets are measured from: the bin's left
    /// edge, and for the first bin (`x < edges[0]`) its right edge. `None` without edges.
    pub fn anchor(&self, j: usize) -> Option<f64> {
        match j {
            0 => self.edges.first().copied(),
            _ => self.edges.get(j - 1).copied(),
        }
    }

    /// The grid unit of bin `j`'s offset sums: `2^(floor(log2 width) − 12)` of an inner bin;
    /// the open outer bins use their inner neighbour's (with one edge, `2^-12` of the largest
    /// power of two below `|edge|`, or of 1). `None` without edges.
    pub fn offset_unit(&self, j: usize) -> Option<f64> {
        self.units.get(j).map(|e| pow2(*e))
    }

    /// The grid offset of `x` in its bin `j`: `ceil(|x − anchor| / unit)`, 0 exactly when `x`
    /// is the anchor itself, at least 1 otherwise; `None` when it does not fit in 64 bits.
    #[inline]
    fn grid_offset(&self, j: usize, x: f64) -> Option<u64> {
        let (Some(a), Some(u)) = (self.anchor(j), self.offset_unit(j)) else {
            return None;
        };
        let o = if j == 0 { a - x } else { x - a };
        if o == 0.0 {
            return Some(0);
        }
        let q = (o / u).ceil();
        // 2^64 as f64: the first value that does not fit.
        if q < 18_446_744_073_709_551_616.0 {
            Some((q as u64).max(1))
        } else {
            None
        }
    }

    /// The sum of [`BinEdges::grid_offset`] over `xs`, all values of bin `j`; `None` when one
    /// offset or the sum does not fit in 64 bits. The unit is a power of two, so multiplying by
    /// its inverse gives the same correctly rounded quotient as dividing, without a division.
    fn grid_offset_sum(&self, j: usize, xs: &[f64]) -> Option<u64> {
        let (Some(a), Some(&e)) = (self.anchor(j), self.units.get(j)) else {
            return None;
        };
        if !(-1023..=1023).contains(&e) {
            // The inverse of a subnormal unit is not a double: one division per value.
            return xs
                .iter()
                .try_fold(0u64, |s, x| s.checked_add(self.grid_offset(j, *x)?));
        }
        let inv = pow2(-e);
        let (mut sum, mut top) = (0u128, 0.0f64);
        for x in xs {
            let o = if j == 0 { a - x } else { x - a };
            let q = (o * inv).ceil();
            // 0 exactly at the anchor, at least 1 elsewhere (a quotient too small to round up).
            let q = if o == 0.0 { 0.0 } else { q.max(1.0) };
            top = top.max(q);
            sum += u128::from(q as u64);
        }
        // 2^64 as f64: the first value that does not fit (`as` saturates below it).
        if top < 18_446_744_073_709_551_616.0 {
            u64::try_from(sum).ok()
        } else {
            None
        }
    }
}

/// Counts over a [`BinEdges`] set, with the sums of the values' offsets per bin.
///
/// `sums[j]` is `Σ ceil(|x − anchor_j| / unit_j)` over the values `x` of bin `j`
/// ([`BinEdges::anchor`], [`BinEdges::offset_unit`]): the sum of the values in bin `j`, on a
/// grid a 4096th of the bin's width, as an integer, so it adds exactly when states merge.
/// `sums[j] == 0` exactly when every value of bin `j` is its anchor (for inner bins and the
/// last: all on the bin's left edge). With the counts, it gives `∫ F` between any two edges
/// to within `count_j · unit_j` (docs/STATISTICS.md §7, §17).
#[derive(Debug, Clone, PartialEq)]
pub struct BinCounts {
    /// The [`BinEdges::id`] the counts were taken on.
    pub edges_id: u32,
    /// One count per bin.
    pub counts: Vec<u64>,
    /// One offset sum per bin; `None` for states written before the sums existed, or when a
    /// sum would not fit in 64 bits.
    pub sums: Option<Vec<u64>>,
}

impl BinCounts {
    /// Empty counts (and sums) over `edges`.
    fn empty(edges: &BinEdges) -> Self {
        let nb = edges.num_bins();
        BinCounts {
            edges_id: edges.id(),
            counts: vec![0; nb],
            // Without edges there is no anchor to measure offsets from.
            sums: (nb > 1).then(|| vec![0; nb]),
        }
    }

    /// Counts `x` in its bin `j` of `edges`.
    #[inline]
    fn add(&mut self, edges: &BinEdges, j: usize, x: f64) {
        self.counts[j] += 1;
        if let Some(s) = self.sums.as_mut() {
            match edges.grid_offset(j, x).and_then(|o| s[j].checked_add(o)) {
                Some(v) => s[j] = v,
                None => self.sums = None,
            }
        }
    }

    /// Counts `xs`, all values of bin `j` of `edges`.
    fn add_run(&mut self, edges: &BinEdges, j: usize, xs: &[f64]) {
        self.counts[j] += xs.len() as u64;
        if let Some(s) = self.sums.as_mut() {
            match edges
                .grid_offset_sum(j, xs)
                .and_then(|o| s[j].checked_add(o))
            {
                Some(v) => s[j] = v,
                None => self.sums = None,
            }
        }
    }
}

/// Summary of a numeric series over one window (or any merge of windows).
///
/// Merging is associative and commutative with [`NumericState::default`] as identity, exactly
/// for every count, moment and bin, and within KLL's rank-error bound for quantiles.
#[derive(Debug, Clone)]
pub struct NumericState {
    count: u64,
    missing: u64,
    invalid: u64,
    sum: f64,
    m2: f64,
    min: f64,
    max: f64,
    bins: Option<BinCounts>,
    /// The KLL sketch, decoded on first use: a state read from storage keeps its compact image
    /// in `kll_image` until something needs the sketch itself (merging, updating), so reads
    /// that only need counts, bins or the CDF never pay for deserialisation. When both are
    /// set, the decoded sketch is authoritative.
    kll: OnceLock<Kll>,
    kll_image: Option<Vec<u8>>,
    /// Set by [`NumericState::merge_without_sketch`]: the sketch was left out of a merge, so
    /// everything that reads it ([`NumericState::kll`], [`NumericState::cdf`], the rank error,
    /// merges) is an error instead of an answer from a partial sketch.
    sketch_dropped: bool,
}

/// The error for reading a sketch that is not held: left out of a merge
/// ([`NumericState::merge_without_sketch`]) or of a state kept in memory without it
/// ([`NumericState::drop_sketch`]).
fn dropped() -> Error {
    Error::sketch(
        "kll",
        "the sketch is not held here (left out of a merge or of a profile kept in memory)",
    )
}

impl Default for NumericState {
    fn default() -> Self {
        NumericState {
            count: 0,
            missing: 0,
            invalid: 0,
            sum: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            bins: None,
            kll: OnceLock::from(new_kll()),
            kll_image: None,
            sketch_dropped: false,
        }
    }
}

impl NumericState {
    /// An empty state that bins values on `edges` (when given).
    pub fn new(edges: Option<&BinEdges>) -> Self {
        NumericState {
            bins: edges.map(BinCounts::empty),
            ..Default::default()
        }
    }

    /// Folds one value: NaN and ±inf count as invalid and touch nothing else.
    ///
    /// `edges` must be the edges this state was created with (or `None`).
    pub fn observe(&mut self, v: f64, edges: Option<&BinEdges>) {
        if !v.is_finite() {
            self.invalid += 1;
            return;
        }
        // Welford's update keeps m2 exact enough for the 1e-9 std tolerance.
        let n0 = self.count as f64;
        let mean0 = if self.count == 0 { 0.0 } else { self.sum / n0 };
        self.count += 1;
        self.sum += v;
        let mean1 = self.sum / self.count as f64;
        self.m2 += (v - mean0) * (v - mean1);
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        if self.count == 1 {
            // The first value decides which edges (if any) this state bins on.
            self.bins = edges.map(BinCounts::empty);
        }
        match (self.bins.as_mut(), edges) {
            (Some(b), Some(e)) if b.edges_id == e.id() && b.counts.len() == e.num_bins() => {
                b.add(e, e.bin(v), v);
            }
            // A value that cannot be binned on the same edges makes the bins incomplete.
            _ => self.bins = None,
        }
        // A stored image that fails to decode keeps failing on every later read, so the error
        // surfaces there; the counts above stay exact.
        if let Ok(k) = self.kll_mut() {
            kll_update(k, v);
        }
    }

    /// The state of a whole batch of values at once, as if each had been passed to
    /// [`NumericState::observe`] (or counted by [`NumericState::observe_missing`] /
    /// [`NumericState::observe_invalid`]) in turn.
    ///
    /// `ordered` holds the finite values with their [`bulk_order_key`]s ascending (sorting by
    /// the key, or by value, does it). That order is what makes the bulk path cheap: the
    /// reference bins are one merge walk over the edges, and the KLL sketch is built by
    /// [`kll_image_from_sorted`], whose compactions never sort. KLL's error bound holds for any
    /// input order, so the sketch is as accurate as one fed in arrival order (not
    /// bit-identical: the bulk build draws its compaction coins from a seed hashed from the batch, so
    /// the same batch always gives the same image). Counts, min, max and bins are
    /// exact; the squared deviations are summed in a second pass around the mean, so the sum
    /// and m2 agree with the one-at-a-time fold to rounding.
    ///
    /// Input that breaks the contract (a value not finite, keys out of order) is still folded
    /// exactly, one value at a time.
    pub fn from_sorted(
        ordered: &[f64],
        missing: u64,
        invalid: u64,
        edges: Option<&BinEdges>,
    ) -> Self {
        let mut s = NumericState::new(edges);
        s.missing = missing;
        s.invalid = invalid;
        // One pass checks the order and takes the sum (in slice order from -0.0, as
        // `Iterator::sum` does), minimum and maximum; a second takes m2 and the bins. The
        // results are discarded if the values turn out not to be in order.
        let (mut in_order, mut prev) = (true, 0u32);
        let (mut sum, mut min, mut max) = (-0.0, s.min, s.max);
        for v in ordered {
            let key = bulk_order_key(*v);
            in_order &= v.is_finite() && key >= prev;
            prev = key;
            sum += *v;
            min = min.min(*v);
            max = max.max(*v);
        }
        let image = if in_order {
            kll_image_from_sorted(ordered)
        } else {
            None
        };
        let Some(image) = image else {
            for v in ordered {
                s.observe(*v, edges);
            }
            return s;
        };
        if ordered.is_empty() {
            return s;
        }
        let n = ordered.len();
        s.count = n as u64;
        s.sum = sum;
        (s.min, s.max) = (min, max);
        let mean = sum / n as f64;
        let mut m2 = -0.0;
        match (s.bins.as_mut(), edges) {
            (Some(b), Some(e)) => {
                // Edges whose key is below a value's are below the value; equal keys (values
                // within 2^-20 relative of an edge) are decided by comparing the values.
                // The values of a bin are a run of `ordered`: counted and summed per run.
                let (edges, keys) = (e.edges(), &e.keys);
                let mut below = 0;
                let (mut run_start, mut run_bin) = (0, usize::MAX);
                for (i, v) in ordered.iter().enumerate() {
                    m2 += (v - mean) * (v - mean);
                    let key = bulk_order_key(*v);
                    while below < keys.len() && keys[below] < key {
                        below += 1;
                    }
                    let mut bin = below;
                    while bin < keys.len() && keys[bin] == key && edges[bin] <= *v {
                        bin += 1;
                    }
                    if bin != run_bin {
                        if run_bin != usize::MAX {
                            b.add_run(e, run_bin, &ordered[run_start..i]);
                        }
                        (run_start, run_bin) = (i, bin);
                    }
                }
                if run_bin != usize::MAX {
                    b.add_run(e, run_bin, &ordered[run_start..]);
                }
            }
            _ => {
                for v in ordered {
                    m2 += (v - mean) * (v - mean);
                }
            }
        }
        s.m2 = m2;
        s.kll = OnceLock::new();
        s.kll_image = Some(image);
        s
    }

    /// The sketch for mutation, decoding a stored image first.
    fn kll_mut(&mut self) -> Result<&mut Kll> {
        if self.sketch_dropped {
            return Err(dropped());
        }
        if self.kll.get().is_none() {
            let image = self.kll_image.as_deref().unwrap_or_default();
            let k = if image.is_empty() {
                new_kll()
            } else {
                kll_deserialize(image)?
            };
            self.kll = OnceLock::from(k);
        }
        self.kll_image = None;
        self.kll
            .get_mut()
            .ok_or_else(|| Error::sketch("kll", "sketch missing after decode"))
    }

    /// Counts one missing value.
    pub fn observe_missing(&mut self) {
        self.missing += 1;
    }

    /// Counts one invalid value (NaN, ±inf, wrong type).
    pub fn observe_invalid(&mut self) {
        self.invalid += 1;
    }

    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &NumericState) -> Result<()> {
        if self.sketch_dropped || other.sketch_dropped {
            return Err(dropped());
        }
        if other.count > 0 {
            let other_kll = other.kll()?;
            kll_merge(self.kll_mut()?, other_kll)?;
        }
        self.merge_summary(other);
        Ok(())
    }

    /// Drops the KLL sketch and the per-bin offset sums (both needed only by statistics that
    /// read the CDF), keeping counts, moments, extremes and bin counts; reading the sketch
    /// afterwards is an error. For reference profiles kept in memory for PSI-style rules.
    pub fn drop_sketch(&mut self) {
        self.kll = OnceLock::new();
        self.kll_image = None;
        self.sketch_dropped = true;
        if let Some(b) = self.bins.as_mut() {
            b.sums = None;
            b.counts.shrink_to_fit();
        }
    }

    /// Merges `other`'s counts, moments, extremes and bins into `self`, and not the KLL
    /// sketch: for a query whose metric reads only those (PSI, JS and Hellinger on the exact
    /// bins, counts, means), merging sketches is most of its time. The result's sketch is
    /// marked dropped: reading or merging it is an error, never a partial answer.
    pub fn merge_without_sketch(&mut self, other: &NumericState) {
        self.merge_summary(other);
        self.forget_sketch();
    }

    /// Marks the KLL sketch dropped, keeping counts, moments, extremes, bins and offset sums:
    /// what a reader holds that merges without sketches ([`NumericState::merge_without_sketch`]).
    pub fn forget_sketch(&mut self) {
        self.kll = OnceLock::new();
        self.kll_image = None;
        self.sketch_dropped = true;
    }

    /// Merges all of `states` into one: counts, moments, extremes and bins as merging them in
    /// turn with [`NumericState::merge`] does, the KLL sketches in one pass over their images
    /// ([`kll_merge_images`]) without decoding them into the crate's sketch. This is what
    /// RocksDB's merge operator runs on a window's operands. Falls back to merging in turn
    /// when an image cannot be merged that way (another k, or one another writer produced
    /// wrongly), so the error, if any, is the crate's.
    pub fn merge_all<'a, I>(states: I) -> Result<NumericState>
    where
        I: IntoIterator<Item = &'a NumericState>,
        I::IntoIter: Clone,
    {
        let states = states.into_iter();
        if states.clone().any(|s| s.sketch_dropped) {
            return Err(dropped());
        }
        let mut rest = states.clone();
        let Some(first) = rest.next() else {
            return Ok(NumericState::default());
        };
        let mut acc = first.clone_summary();
        for s in rest.clone() {
            acc.merge_summary(s);
        }
        let images: Vec<Cow<'_, [u8]>> = states
            .filter(|s| s.count > 0)
            .map(NumericState::kll_image_bytes)
            .collect();
        let refs: Vec<&[u8]> = images.iter().map(|c| c.as_ref()).collect();
        match kll_merge_images(&refs) {
            Ok(image) => {
                acc.kll = OnceLock::new();
                acc.kll_image = Some(image);
                Ok(acc)
            }
            Err(_) => {
                let mut acc = first.clone();
                for s in rest {
                    acc.merge(s)?;
                }
                Ok(acc)
            }
        }
    }

    /// This state's KLL image: the stored one, or the decoded sketch serialised.
    fn kll_image_bytes(&self) -> Cow<'_, [u8]> {
        match (self.kll.get(), &self.kll_image) {
            (None, Some(img)) => Cow::Borrowed(img.as_slice()),
            (Some(k), _) => Cow::Owned(k.serialize()),
            (None, None) => Cow::Owned(new_kll().serialize()),
        }
    }

    /// Counts, moments, extremes and bins of this state, with an empty sketch.
    fn clone_summary(&self) -> NumericState {
        NumericState {
            count: self.count,
            missing: self.missing,
            invalid: self.invalid,
            sum: self.sum,
            m2: self.m2,
            min: self.min,
            max: self.max,
            bins: self.bins.clone(),
            kll: OnceLock::new(),
            kll_image: None,
            sketch_dropped: self.sketch_dropped,
        }
    }

    /// The merge of everything but the sketch.
    fn merge_summary(&mut self, other: &NumericState) {
        self.bins = match (self.count, other.count) {
            (_, 0) => self.bins.take(),
            (0, _) => other.bins.clone(),
            _ => match (self.bins.take(), &other.bins) {
                (Some(mut a), Some(b))
                    if a.edges_id == b.edges_id && a.counts.len() == b.counts.len() =>
                {
                    for (x, y) in a.counts.iter_mut().zip(&b.counts) {
                        *x += y;
                    }
                    // Sums survive only when both sides have them (states written before the
                    // sums existed have none) and they still fit.
                    a.sums = match (a.sums.take(), &b.sums) {
                        (Some(mut x), Some(y)) if x.len() == y.len() => {
                            let mut ok = true;
                            for (s, t) in x.iter_mut().zip(y) {
                                match s.checked_add(*t) {
                                    Some(v) => *s = v,
                                    None => ok = false,
                                }
                            }
                            ok.then_some(x)
                        }
                        _ => None,
                    };
                    Some(a)
                }
                _ => None,
            },
        };
        if other.count > 0 {
            let (na, nb) = (self.count as f64, other.count as f64);
            let n = na + nb;
            if self.count == 0 {
                self.m2 = other.m2;
            } else {
                let delta = other.sum / nb - self.sum / na;
                self.m2 += other.m2 + delta * delta * na * nb / n;
            }
            self.sum += other.sum;
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.missing += other.missing;
        self.invalid += other.invalid;
    }

    /// Non-null finite values.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Missing (null) values.
    pub fn missing(&self) -> u64 {
        self.missing
    }
    /// Invalid values (NaN, ±inf, wrong type): counted, never folded into the sketches.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }
    /// Rows seen: valid + missing + invalid.
    pub fn count_total(&self) -> u64 {
        self.count + self.missing + self.invalid
    }
    /// Sum of valid values.
    pub fn sum(&self) -> f64 {
        self.sum
    }
    /// Arithmetic mean, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
    /// Sample standard deviation (n − 1), `None` when n < 2.
    pub fn std(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2.max(0.0) / (self.count - 1) as f64).sqrt())
    }
    /// Sum of squared deviations from the mean.
    pub fn m2(&self) -> f64 {
        self.m2
    }
    /// Exact minimum, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }
    /// Exact maximum, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }
    /// Counts over the reference bin edges, when every value was binned.
    pub fn bins(&self) -> Option<&BinCounts> {
        self.bins
            .as_ref()
            .filter(|_| self.count > 0)
            .filter(|b| b.counts.iter().sum::<u64>() == self.count)
    }
    /// Keeps the sketch only as its compact serialized image, dropping a decoded sketch: for
    /// states held in memory for a long time and only read (reference profiles), whose
    /// CDF, bins and rank error are read from the image without decoding it. A later
    /// [`NumericState::kll`] or merge decodes it again.
    pub fn compact(&mut self) {
        if let Some(k) = self.kll.take() {
            self.kll_image = Some(k.serialize());
        }
        if let Some(img) = self.kll_image.as_mut() {
            img.shrink_to_fit();
        }
        if let Some(b) = self.bins.as_mut() {
            b.counts.shrink_to_fit();
            if let Some(s) = b.sums.as_mut() {
                s.shrink_to_fit();
            }
        }
    }

    /// The KLL sketch (decoded from the stored image on first use).
    pub fn kll(&self) -> Result<&Kll> {
        if self.sketch_dropped {
            return Err(dropped());
        }
        if let Some(k) = self.kll.get() {
            return Ok(k);
        }
        let image = self.kll_image.as_deref().unwrap_or_default();
        let k = if image.is_empty() {
            new_kll()
        } else {
            kll_deserialize(image)?
        };
        let _ = self.kll.set(k);
        self.kll
            .get()
            .ok_or_else(|| Error::sketch("kll", "sketch missing after decode"))
    }

    /// The sketch's rank error: 0 while it holds every value, else its normalized rank error.
    /// Read from the image's preamble when the sketch was not decoded.
    pub fn kll_rank_error(&self) -> Result<f64> {
        if self.sketch_dropped {
            return Err(dropped());
        }
        let estimation = match (self.kll.get(), &self.kll_image) {
            (Some(k), _) => k.is_estimation_mode(),
            (None, Some(img)) => kll_image_header(img)?.1,
            (None, None) => false,
        };
        Ok(if estimation {
            kll_rank_error_bound()
        } else {
            0.0
        })
    }

    /// The sketch's step CDF (parsed from the stored image when the sketch was not decoded).
    pub fn cdf(&self) -> Result<WeightedCdf> {
        if self.sketch_dropped {
            return Err(dropped());
        }
        match (self.kll.get(), &self.kll_image) {
            (Some(k), _) => WeightedCdf::from_sketch(k),
            (None, Some(img)) => WeightedCdf::from_image(img),
            (None, None) => Ok(WeightedCdf::default()),
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        let has_bins = self.count > 0 && self.bins().is_some();
        let sums = self
            .bins
            .as_ref()
            .filter(|_| has_bins)
            .and_then(|b| b.sums.as_ref())
            .filter(|s| s.len() == self.bins.as_ref().map_or(0, |b| b.counts.len()));
        w.u8(u8::from(has_bins) | (u8::from(sums.is_some()) << 1));
        w.varint(self.count);
        w.varint(self.missing);
        w.varint(self.invalid);
        if self.count == 0 {
            return;
        }
        w.f64(self.sum);
        w.f64(self.m2);
        w.f64(self.min);
        w.f64(self.max);
        if let Some(b) = self.bins.as_ref().filter(|_| has_bins) {
            w.varint(u64::from(b.edges_id));
            w.varint(b.counts.len() as u64);
            for c in &b.counts {
                w.varint(*c);
            }
            for s in sums.into_iter().flatten() {
                w.varint(*s);
            }
        }
        match (self.kll.get(), &self.kll_image) {
            (None, Some(img)) => w.bytes(img),
            (Some(k), _) => w.bytes(&k.serialize()),
            (None, None) => w.bytes(&new_kll().serialize()),
        }
    }

    /// Decodes a state written by `encode`. Without `sketch` the KLL image is checked (its
    /// preamble) and skipped rather than copied, and the state's sketch is marked dropped.
    pub(crate) fn decode_with(r: &mut Reader<'_>, sketch: bool) -> Result<Self> {
        let flags = r.u8()?;
        // Bit 0: bins; bit 1: offset sums, only with bins.
        if flags > 3 || flags == 2 {
            return Err(Error::Malformed {
                what: "numeric state",
                detail: format!("flags {flags:#x}"),
            });
        }
        // Not `..Default::default()`: that builds an empty crate sketch, an allocation per
        // decoded operand that the merge operator would throw away.
        let mut s = NumericState {
            count: r.varint()?,
            missing: r.varint()?,
            invalid: r.varint()?,
            sum: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            bins: None,
            kll: OnceLock::new(),
            kll_image: None,
            sketch_dropped: false,
        };
        if s.count == 0 {
            return Ok(s);
        }
        s.sum = r.f64()?;
        s.m2 = r.f64()?;
        s.min = r.f64()?;
        s.max = r.f64()?;
        if flags & 1 == 1 {
            let id = u32::try_from(r.varint()?).map_err(|_| Error::Malformed {
                what: "bin edges id",
                detail: "over 32 bits".into(),
            })?;
            let n = r.len(10_000, "bin count")?;
            let mut counts = Vec::with_capacity(n);
            for _ in 0..n {
                counts.push(r.varint()?);
            }
            if counts.iter().sum::<u64>() != s.count {
                return Err(Error::Malformed {
                    what: "numeric state",
                    detail: "bin counts do not add up to count".into(),
                });
            }
            let sums = if flags & 2 == 2 {
                let mut sums = Vec::with_capacity(n);
                for c in &counts {
                    let v = r.varint()?;
                    if *c == 0 && v != 0 {
                        return Err(Error::Malformed {
                            what: "numeric state",
                            detail: "offset sum of an empty bin".into(),
                        });
                    }
                    sums.push(v);
                }
                Some(sums)
            } else {
                None
            };
            s.bins = Some(BinCounts {
                edges_id: id,
                counts,
                sums,
            });
        }
        // Only the image's preamble is checked here; the sketch is decoded when first needed.
        let image = r.bytes()?;
        let (n, _) = kll_image_header(image)?;
        if n != s.count {
            return Err(Error::Malformed {
                what: "numeric state",
                detail: format!("kll n {n} != count {}", s.count),
            });
        }
        if sketch {
            s.kll_image = Some(image.to_vec());
        } else {
            s.sketch_dropped = true;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The radix sort of order keys gives exactly what a comparison sort gives, for runs
        /// of few distinct values (ties), of every magnitude, and on both sides of the length
        /// where it starts to be used.
        #[test]
        fn order_keys_sort_as_a_comparison_sort_does(
            values in prop::collection::vec(
                prop_oneof![
                    any::<f64>().prop_filter("finite", |v| v.is_finite()),
                    (0u8..4).prop_map(f64::from),
                    (-1e-300f64..1e-300),
                ],
                0..3000,
            )
        ) {
            let mut order: Vec<u64> = values
                .iter()
                .enumerate()
                .map(|(i, v)| u64::from(bulk_order_key(*v)) << 32 | i as u64)
                .collect();
            let mut expected = order.clone();
            expected.sort_unstable();
            let mut tmp = Vec::new();
            sort_order_keys(&mut order, &mut tmp);
            prop_assert_eq!(order, expected);
        }
    }

    #[test]
    fn bins_follow_formulas_worked_case() {
        // FORMULAS worked case: edges [2, 4.5]; current [2, 2, 4.5, 7, 11, 12, 2.5] -> [0, 3, 4].
        let e = BinEdges::new(vec![2.0, 4.5]).unwrap();
        let mut s = NumericState::new(Some(&e));
        for v in [2.0, 2.0, 4.5, 7.0, 11.0, 12.0, 2.5] {
            s.observe(v, Some(&e));
        }
        assert_eq!(s.bins().unwrap().counts, vec![0, 3, 4]);
        s.observe(f64::NAN, Some(&e));
        s.observe(f64::INFINITY, Some(&e));
        s.observe_missing();
        assert_eq!(
            (s.count(), s.invalid(), s.missing(), s.count_total()),
            (7, 2, 1, 10)
        );
        assert_eq!(s.min(), Some(2.0));
        assert_eq!(s.max(), Some(12.0));
    }

    #[test]
    fn mean_and_std_match_two_pass() {
        let xs: Vec<f64> = (0..1000).map(|i| 1e6 + (i as f64 * 0.37).sin()).collect();
        let mut a = NumericState::new(None);
        let mut b = NumericState::new(None);
        for (i, x) in xs.iter().enumerate() {
            if i % 3 == 0 {
                a.observe(*x, None)
            } else {
                b.observe(*x, None)
            }
        }
        a.merge(&b).unwrap();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        assert!((a.mean().unwrap() - mean).abs() / mean < 1e-12);
        assert!((a.std().unwrap() - var.sqrt()).abs() / var.sqrt() < 1e-9);
    }

    fn round_trip(s: &NumericState) -> NumericState {
        let mut w = Writer::new();
        s.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        let d = NumericState::decode_with(&mut r, true).unwrap();
        r.finish("numeric state").unwrap();
        d
    }

    #[test]
    fn offset_sums_give_the_bin_sums_within_a_grid_unit() {
        let e = BinEdges::new(vec![-1.0, 0.0, 0.25, 10.0]).unwrap();
        let xs = [
            -7.5, -1.0, -0.5, -0.1, 0.0, 0.0, 0.1, 0.2, 0.25, 3.3, 9.99, 10.0, 11.0, 1e6,
        ];
        let mut s = NumericState::new(Some(&e));
        for x in xs {
            s.observe(x, Some(&e));
        }
        let b = s.bins().unwrap();
        let sums = b.sums.as_ref().unwrap();
        assert_eq!(b.counts, vec![1, 3, 4, 3, 3]);
        for (j, (c, k)) in b.counts.iter().zip(sums).enumerate() {
            let (a, u) = (e.anchor(j).unwrap(), e.offset_unit(j).unwrap());
            let want: f64 = xs
                .iter()
                .filter(|x| e.bin(**x) == j)
                .map(|x| (x - a).abs())
                .sum();
            let got = *k as f64 * u;
            assert!(
                got >= want && got - want <= *c as f64 * u,
                "bin {j}: {got} vs {want}"
            );
        }
        // Bin 2 ([0, 0.25)) holds 0, 0, 0.1, 0.2: not all on its edge; bin 1 ([-1, 0)) holds
        // -1 (on its edge) and two more.
        assert!(sums[2] > 0 && sums[1] > 0);
        // All on the left edge: a zero sum.
        let mut p = NumericState::new(Some(&e));
        for _ in 0..5 {
            p.observe(0.25, Some(&e));
        }
        assert_eq!(p.bins().unwrap().sums.as_ref().unwrap()[3], 0);
        // Units: a 4096th of the power of two below each inner width; outer bins borrow.
        assert_eq!(e.offset_unit(1), Some(1.0 / 4096.0));
        assert_eq!(e.offset_unit(2), Some(0.25 / 4096.0));
        assert_eq!(e.offset_unit(3), Some(8.0 / 4096.0));
        assert_eq!(e.offset_unit(0), e.offset_unit(1));
        assert_eq!(e.offset_unit(4), e.offset_unit(3));
    }

    #[test]
    fn offset_sums_merge_exactly_and_round_trip() {
        let e = BinEdges::new(vec![1.0, 2.0, 4.0]).unwrap();
        let vals: Vec<f64> = (0..500)
            .map(|i| (i as f64 * 0.37).sin() * 3.0 + 2.0)
            .collect();
        let mut all = NumericState::new(Some(&e));
        let (mut a, mut b) = (NumericState::new(Some(&e)), NumericState::new(Some(&e)));
        for (i, v) in vals.iter().enumerate() {
            all.observe(*v, Some(&e));
            if i % 3 == 0 {
                a.observe(*v, Some(&e));
            } else {
                b.observe(*v, Some(&e));
            }
        }
        let mut sorted = vals.clone();
        sorted.sort_by(f64::total_cmp);
        let bulk = NumericState::from_sorted(&sorted, 0, 0, Some(&e));
        assert_eq!(bulk.bins(), all.bins());
        a.merge(&b).unwrap();
        assert_eq!(a.bins(), all.bins());
        let merged = NumericState::merge_all([&a, &b, &all]).unwrap();
        let mut twice = all.clone();
        twice.merge(&a).unwrap();
        twice.merge(&b).unwrap();
        assert_eq!(merged.bins(), twice.bins());
        assert_eq!(round_trip(&all).bins(), all.bins());
    }

    #[test]
    fn grid_units_round_trip_through_their_exponents() {
        for e in [
            -1074i16, -1073, -1023, -1022, -1021, -12, -1, 0, 1, 52, 1023,
        ] {
            let u = if e >= -1022 {
                2f64.powi(i32::from(e))
            } else {
                f64::from_bits(1u64 << (e + 1074))
            };
            assert!(u > 0.0 && u.is_finite(), "{e}");
            assert_eq!(pow2_exponent(u), e, "{u:e}");
            assert_eq!(pow2(e).to_bits(), u.to_bits(), "{e}");
        }
        let e = BinEdges::new(vec![-3.0, 0.1, 7.5, 1e300]).unwrap();
        for j in 0..=4 {
            let u = e.offset_unit(j).unwrap();
            assert_eq!(
                u.to_bits() & ((1 << 52) - 1),
                0,
                "{u:e} is a normal power of two"
            );
        }
        assert_eq!(e.offset_unit(1), Some(grid_unit(3.1)));
    }

    /// `grid_offset_sum` of a bin's run against `grid_offset` added up one value at a time,
    /// over edge sets from subnormal widths (no inverse unit) to 1e300 (offsets past 2^64).
    #[test]
    fn a_run_of_offsets_sums_as_its_values_one_at_a_time() {
        let one_by_one = |e: &BinEdges, j: usize, xs: &[f64]| {
            xs.iter()
                .try_fold(0u64, |s, x| s.checked_add(e.grid_offset(j, *x)?))
        };
        let sets = [
            vec![-3.0, 0.1, 7.5, 1e300],
            vec![0.0, 5e-324, 1e-323, 1e-300],
            vec![-1e-310, 0.0, 1e-310],
            vec![1.0],
            vec![-2.0, -1.0, 0.0, 1.0, 2.0],
        ];
        let mut rng = crate::rng::SplitMix(7);
        for edges in sets {
            let e = BinEdges::new(edges.clone()).unwrap();
            let mut values: Vec<f64> = edges.clone();
            for _ in 0..2000 {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let scale =
                    [1e-320, 1e-308, 1e-3, 1.0, 1e3, 1e30, 1e300][(rng.next_u64() % 7) as usize];
                values.push((u - 0.5) * scale);
            }
            values.sort_by(f64::total_cmp);
            for j in 0..e.num_bins() {
                let run: Vec<f64> = values.iter().copied().filter(|x| e.bin(*x) == j).collect();
                assert_eq!(
                    e.grid_offset_sum(j, &run),
                    one_by_one(&e, j, &run),
                    "{edges:?} bin {j}"
                );
                for w in run.chunks(7) {
                    assert_eq!(
                        e.grid_offset_sum(j, w),
                        one_by_one(&e, j, w),
                        "{edges:?} bin {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn compact_keeps_what_reads_see() {
        let e = BinEdges::new(vec![-1.0, 0.0, 1.0]).unwrap();
        let mut s = NumericState::new(Some(&e));
        for i in 0..5000 {
            s.observe((i as f64 * 0.731).sin() * 2.0, Some(&e));
        }
        let bytes = |s: &NumericState| {
            let mut w = Writer::new();
            s.encode(&mut w);
            w.into_bytes()
        };
        let (cdf, err, enc) = (s.cdf().unwrap(), s.kll_rank_error().unwrap(), bytes(&s));
        assert!(s.kll.get().is_some());
        let mut c = s.clone();
        c.compact();
        assert!(c.kll.get().is_none() && c.kll_image.is_some());
        assert_eq!(c.cdf().unwrap(), cdf);
        assert_eq!(c.kll_rank_error().unwrap(), err);
        assert_eq!(bytes(&c), enc);
        assert_eq!(c.bins(), s.bins());
        // Compacting twice changes nothing; the sketch decodes again when needed.
        c.compact();
        assert_eq!(bytes(&c), enc);
        assert_eq!(c.kll().unwrap().n(), 5000);
    }

    #[test]
    fn merging_without_the_sketch_keeps_the_rest_and_refuses_the_sketch() {
        let e = BinEdges::new(vec![-1.0, 0.0, 1.0]).unwrap();
        let parts: Vec<NumericState> = (0..4)
            .map(|p| {
                let mut s = NumericState::new(Some(&e));
                for i in 0..300 {
                    s.observe(((p * 300 + i) as f64 * 0.37).sin() * 2.0, Some(&e));
                }
                s
            })
            .collect();
        let mut full = parts[0].clone();
        let mut light = parts[0].clone();
        for p in &parts[1..] {
            full.merge(p).unwrap();
            light.merge_without_sketch(p);
        }
        assert_eq!(light.bins(), full.bins());
        assert_eq!(
            (light.count(), light.min(), light.max()),
            (full.count(), full.min(), full.max())
        );
        assert_eq!(light.mean(), full.mean());
        assert!(light.cdf().is_err() && light.kll().is_err() && light.kll_rank_error().is_err());
        assert!(light.clone().merge(&parts[0]).is_err());
        assert!(full.clone().merge(&light).is_err());
        assert!(NumericState::merge_all([&full, &light]).is_err());
    }

    #[test]
    fn states_without_sums_still_decode_and_merge() {
        let e = BinEdges::new(vec![1.0, 2.0, 4.0]).unwrap();
        let mut old = NumericState::new(Some(&e));
        for v in [0.5, 1.5, 1.5, 3.0, 7.0] {
            old.observe(v, Some(&e));
        }
        // A state as the build before the sums wrote it: flags bit 0 only.
        if let Some(b) = old.bins.as_mut() {
            b.sums = None;
        }
        let mut w = Writer::new();
        old.encode(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(bytes[0], 1);
        let old = round_trip(&old);
        assert_eq!(old.bins().unwrap().counts, vec![1, 2, 1, 1]);
        assert!(old.bins().unwrap().sums.is_none());
        let mut new = NumericState::new(Some(&e));
        new.observe(1.25, Some(&e));
        assert!(new.bins().unwrap().sums.is_some());
        // Either way round, the merge keeps the exact counts and drops the sums.
        let mut m1 = new.clone();
        m1.merge(&old).unwrap();
        let mut m2 = old.clone();
        m2.merge(&new).unwrap();
        for m in [&m1, &m2] {
            assert_eq!(m.bins().unwrap().counts, vec![1, 3, 1, 1]);
            assert!(m.bins().unwrap().sums.is_none());
        }
        let m3 = NumericState::merge_all([&new, &old]).unwrap();
        assert!(m3.bins().unwrap().sums.is_none());
        // A sum on an empty bin, or sums without bins, is refused.
        let mut w = Writer::new();
        new.encode(&mut w);
        let mut bad = w.into_bytes();
        assert_eq!(bad[0], 3);
        bad[0] = 2;
        assert!(NumericState::decode_with(&mut Reader::new(&bad), true).is_err());
    }
}
