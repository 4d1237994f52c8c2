//! KLL quantile sketches of doubles (Apache DataSketches, fixed k) and a weighted CDF view of
//! them.
//!
//! The stored bytes are DataSketches' compact KLL image, unmodified, so other DataSketches
//! implementations read them (SPEC §10.1). The weighted view parses that public image layout
//! (preamble, level offsets, min, max, items; an item at level `h` stands for `2^h` inputs) to get
//! every retained item with its weight; the statistics need the whole step CDF, which the crate's
//! `SortedView` does not expose.

use datasketches::kll::{KllFloat, KllSketch};

use crate::error::{Error, Result};

/// The fixed k of every KLL sketch driftdb writes. Normalized rank error ≈ 1.33 % (99 % bound).
pub const KLL_K: u16 = 200;

/// A KLL sketch of doubles.
pub type Kll = KllSketch<KllFloat<f64>>;

/// A new empty KLL sketch with [`KLL_K`].
pub fn new_kll() -> Kll {
    // KLL_K is within the crate's accepted range 8..=65535, so this cannot fail.
    KllSketch::new(KLL_K).unwrap_or_default()
}

/// Significand bits a value keeps when it enters a KLL sketch (of the 52 a double has).
pub const KLL_MANTISSA_BITS: u32 = 16;

/// Largest relative change [`kll_quantize`] makes: half a unit in the 16th significand bit,
/// `2^-17 ≈ 7.6e-6`, far below KLL's own 1.33 % rank error.
pub const KLL_QUANTIZATION_ERROR: f64 = 1.0 / (1u64 << (KLL_MANTISSA_BITS + 1)) as f64;

/// Rounds `v` to [`KLL_MANTISSA_BITS`] significand bits (to nearest, ties away from zero).
///
/// Sketch items with their low 36 bits zero compress about 3× under zstd: a 15-minute window of
/// 1,000 full-precision values drops from ≈ 2.7 KB to ≈ 0.9 KB on disk, which is what makes a
/// 90-day fleet fit. Counts, sums, moments, min, max and reference bins use the exact value;
/// only the quantile sketch sees the rounded one. The image is still a plain DataSketches KLL
/// of doubles.
pub fn kll_quantize(v: f64) -> f64 {
    let drop = 52 - KLL_MANTISSA_BITS;
    let bits = v.to_bits();
    let rounded = f64::from_bits((bits + (1u64 << (drop - 1))) & !((1u64 << drop) - 1));
    if rounded.is_finite() { rounded } else { v }
}

/// Adds a finite value, rounded by [`kll_quantize`]; NaN is ignored by construction (callers
/// count it as invalid).
pub fn kll_update(k: &mut Kll, v: f64) {
    if let Ok(item) = KllFloat::<f64>::new(kll_quantize(v)) {
        k.update(item);
    }
}

/// Merges `other` into `k`.
pub fn kll_merge(k: &mut Kll, other: &Kll) -> Result<()> {
    k.merge(other).map_err(|e| Error::sketch("kll", e))
}

/// Reads a KLL image, checking the DataSketches family byte first.
pub fn kll_deserialize(bytes: &[u8]) -> Result<Kll> {
    if bytes.len() < 8 || bytes[2] != KLL_FAMILY {
        return Err(Error::sketch("kll", "not a KLL image"));
    }
    Kll::deserialize(bytes).map_err(|e| Error::sketch("kll", e))
}

/// What a compact KLL image says in its preamble: `(n, estimation mode)`, without reading the
/// items. Estimation mode means the sketch compacted (more than one level), so its ranks carry
/// the normalized rank error.
pub fn kll_image_header(b: &[u8]) -> Result<(u64, bool)> {
    if b.len() < 8 || b[2] != KLL_FAMILY {
        return Err(Error::sketch("kll", "not a KLL image"));
    }
    if b[3] & FLAG_EMPTY != 0 {
        return Ok((0, false));
    }
    if b[3] & FLAG_SINGLE != 0 {
        return Ok((1, false));
    }
    let Some(n) = b.get(8..16) else {
        return Err(Error::sketch("kll", "truncated preamble"));
    };
    let mut a = [0u8; 8];
    a.copy_from_slice(n);
    let levels = *b
        .get(18)
        .ok_or_else(|| Error::sketch("kll", "truncated preamble"))?;
    Ok((u64::from_le_bytes(a), levels > 1))
}

/// Normalized rank error of a KLL sketch with [`KLL_K`] (single-sided, 99 % confidence).
pub fn kll_rank_error_bound() -> f64 {
    new_kll().normalized_rank_error()
}

const KLL_FAMILY: u8 = 15;
const FLAG_EMPTY: u8 = 1;
const FLAG_SINGLE: u8 = 4;

/// Every retained item of a KLL sketch with its cumulative weight: the sketch's step CDF.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightedCdf {
    items: Vec<f64>,
    cum: Vec<u64>,
    min: f64,
    max: f64,
}

impl WeightedCdf {
    /// The CDF of a sketch.
    pub fn from_sketch(k: &Kll) -> Result<Self> {
        Self::from_image(&k.serialize())
    }

    /// An exact CDF over raw values (for tests and small inputs).
    pub fn from_values(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let pairs: Vec<(f64, u64)> = v.into_iter().map(|x| (x, 1)).collect();
        Self::from_weighted(pairs)
    }

    fn from_weighted(mut pairs: Vec<(f64, u64)>) -> Self {
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut items = Vec::with_capacity(pairs.len());
        let mut cum: Vec<u64> = Vec::with_capacity(pairs.len());
        let mut total = 0u64;
        for (x, w) in pairs {
            total += w;
            // Collapse equal items so cdf_le is one binary search.
            if items.last() == Some(&x) {
                if let Some(c) = cum.last_mut() {
                    *c = total;
                }
            } else {
                items.push(x);
                cum.push(total);
            }
        }
        let min = items.first().copied().unwrap_or(f64::NAN);
        let max = items.last().copied().unwrap_or(f64::NAN);
        WeightedCdf {
            items,
            cum,
            min,
            max,
        }
    }

    /// Parses a DataSketches compact KLL-of-doubles image.
    pub fn from_image(b: &[u8]) -> Result<Self> {
        let bad = |d: &str| Error::sketch("kll", d.to_string());
        if b.len() < 8 || b[2] != KLL_FAMILY {
            return Err(bad("not a KLL image"));
        }
        let flags = b[3];
        if flags & FLAG_EMPTY != 0 {
            return Ok(WeightedCdf::default());
        }
        let f = |at: usize| -> Result<f64> {
            let s = b.get(at..at + 8).ok_or_else(|| bad("truncated image"))?;
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            Ok(f64::from_le_bytes(a))
        };
        if flags & FLAG_SINGLE != 0 {
            return Ok(Self::from_weighted(vec![(f(8)?, 1)]));
        }
        if b.len() < 20 {
            return Err(bad("truncated preamble"));
        }
        let num_levels = usize::from(b[18]);
        if num_levels == 0 || num_levels > 61 {
            return Err(bad("bad level count"));
        }
        let mut offsets = Vec::with_capacity(num_levels);
        for l in 0..num_levels {
            let at = 20 + 4 * l;
            let s = b.get(at..at + 4).ok_or_else(|| bad("truncated levels"))?;
            offsets.push(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
        }
        let min_at = 20 + 4 * num_levels;
        let min = f(min_at)?;
        let max = f(min_at + 8)?;
        let items_at = min_at + 16;
        let rest = b
            .len()
            .checked_sub(items_at)
            .ok_or_else(|| bad("truncated items"))?;
        if rest % 8 != 0 {
            return Err(bad("ragged item array"));
        }
        let retained = rest / 8;
        let mut pairs = Vec::with_capacity(retained);
        let base = offsets[0];
        for level in 0..num_levels {
            let start = offsets[level]
                .checked_sub(base)
                .ok_or_else(|| bad("bad level offsets"))?;
            let end = if level + 1 < num_levels {
                offsets[level + 1]
                    .checked_sub(base)
                    .ok_or_else(|| bad("bad level offsets"))?
            } else {
                retained
            };
            if start > end || end > retained {
                return Err(bad("bad level offsets"));
            }
            let weight = 1u64 << level;
            for i in start..end {
                pairs.push((f(items_at + 8 * i)?, weight));
            }
        }
        let mut cdf = Self::from_weighted(pairs);
        cdf.min = min;
        cdf.max = max;
        Ok(cdf)
    }

    /// Total weight (the number of inputs the sketch summarises).
    pub fn total(&self) -> u64 {
        self.cum.last().copied().unwrap_or(0)
    }

    /// Whether the CDF has no mass.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Distinct retained items in ascending order.
    pub fn items(&self) -> &[f64] {
        &self.items
    }

    /// Cumulative weight at each of [`WeightedCdf::items`]: `cumulative()[i]` is the weight of
    /// items `<= items()[i]`.
    pub fn cumulative(&self) -> &[u64] {
        &self.cum
    }

    /// Exact minimum of the stream.
    pub fn min(&self) -> f64 {
        self.min
    }

    /// Exact maximum of the stream.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Weight of items `<= x`.
    pub fn weight_le(&self, x: f64) -> u64 {
        let i = self.items.partition_point(|v| *v <= x);
        if i == 0 { 0 } else { self.cum[i - 1] }
    }

    /// `F(x) = P(X <= x)`; 0 when empty.
    pub fn cdf_le(&self, x: f64) -> f64 {
        let t = self.total();
        if t == 0 {
            0.0
        } else {
            self.weight_le(x) as f64 / t as f64
        }
    }

    /// Inclusive quantile: the smallest retained item whose cumulative weight reaches
    /// `ceil(q * total)` (DataSketches' inclusive criterion); exact min and max at 0 and 1.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.items.is_empty() || !(0.0..=1.0).contains(&q) {
            return None;
        }
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let t = self.total() as f64;
        let target = (q * t).ceil() as u64;
        let i = self
            .cum
            .partition_point(|c| *c < target)
            .min(self.items.len() - 1);
        Some(self.items[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_keeps_16_bits_and_bounds_the_error() {
        for v in [
            1.0,
            -1.0,
            0.1,
            123_456.789,
            -3.3e-7,
            6.02e23,
            5e-320,
            0.0,
            -0.0,
        ] {
            let q = kll_quantize(v);
            assert_eq!(q.to_bits() & ((1u64 << 36) - 1), 0, "{v}: low bits cleared");
            if v.is_normal() {
                assert!(((q - v) / v).abs() <= KLL_QUANTIZATION_ERROR, "{v} -> {q}");
            }
            assert_eq!(q.is_sign_negative(), v.is_sign_negative());
        }
        // Round to nearest: just above a half step rounds up, just below rounds down.
        let one_step = 1.0 / 65_536.0;
        assert_eq!(kll_quantize(1.0 + 0.49 * one_step), 1.0);
        assert_eq!(kll_quantize(1.0 + 0.51 * one_step), 1.0 + one_step);
        // Values whose rounding would overflow stay as they are.
        assert_eq!(kll_quantize(f64::MAX), f64::MAX);
        // Small integers are exact.
        for i in 0..70_000 {
            assert_eq!(kll_quantize(f64::from(i)), f64::from(i));
        }
    }

    #[test]
    fn image_cdf_matches_the_crate_ranks() {
        let mut k = new_kll();
        for i in 0..10_000 {
            kll_update(&mut k, ((i * 7919) % 10_007) as f64);
        }
        let cdf = WeightedCdf::from_sketch(&k).unwrap();
        assert_eq!(cdf.total(), 10_000);
        for x in [0.0, 17.5, 500.0, 5003.0, 9999.0, 20_000.0] {
            let ours = cdf.cdf_le(x);
            let theirs = k
                .rank(
                    &KllFloat::<f64>::new(x).unwrap(),
                    datasketches::common::SearchCriteria::Inclusive,
                )
                .unwrap();
            assert!(
                (ours - theirs).abs() < 1e-12,
                "x={x} ours={ours} theirs={theirs}"
            );
        }
        for q in [0.01, 0.25, 0.5, 0.99] {
            let theirs = k
                .quantile(q, datasketches::common::SearchCriteria::Inclusive)
                .unwrap()
                .unwrap()
                .into_inner();
            assert_eq!(cdf.quantile(q).unwrap(), theirs, "q={q}");
        }
    }

    #[test]
    fn single_and_empty_images() {
        let mut k = new_kll();
        assert!(WeightedCdf::from_sketch(&k).unwrap().is_empty());
        kll_update(&mut k, 3.5);
        let c = WeightedCdf::from_sketch(&k).unwrap();
        assert_eq!((c.total(), c.min(), c.max()), (1, 3.5, 3.5));
        assert!(WeightedCdf::from_image(&[1, 2, 3]).is_err());
    }
}
