//! KLL quantile sketches of doubles (Apache DataSketches, fixed k) and a weighted CDF view of
//! them.
//!
//! The stored bytes are DataSketches' compact KLL image, unmodified, so other DataSketches
//! implementations read them (docs/DATA_MODEL.md, scale-out 1). The weighted view parses that public image layout
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

/// The compact image of the KLL sketch (k = [`KLL_K`]) that feeding `values` one by one to an
/// empty sketch builds, each value rounded by [`kll_quantize`] on the way in, as
/// [`kll_update`] does.
///
/// `values` must be finite and in an order in which their rounded values never decrease (any
/// ascending order does); `None` otherwise, and the caller feeds a sketch instead.
///
/// This is the bulk path of ingest. It runs the DataSketches KLL update rules (the same level
/// capacities, the same compaction of the lowest full level, the same choice of leftover item
/// and of kept parity from a fair coin), but on plain vectors of a known order, so a level-0
/// compaction never sorts, and it writes the standard compact image directly instead of
/// building the crate's sketch and serialising it. Level sizes depend only on the number of
/// values, so they equal the crate's for the same input; which items survive depends on the
/// coins, as in any KLL sketch. The image sets DataSketches' "level zero sorted" flag, which
/// is true of it.
pub fn kll_image_from_sorted(values: &[f64]) -> Option<Vec<u8>> {
    let mut prev = f64::NEG_INFINITY;
    let mut items = Vec::with_capacity(values.len());
    for v in values {
        if !v.is_finite() {
            return None;
        }
        let q = kll_quantize(*v);
        if q < prev {
            return None;
        }
        prev = q;
        items.push(q);
    }
    Some(LevelsBuilder::build(&items).image())
}

/// Capacity of `level` in a sketch of `num_levels` levels (DataSketches' `levelCapacity`:
/// `k · (2/3)^depth`, rounded, at least m = 8).
fn level_capacity(num_levels: usize, level: usize) -> usize {
    const M: usize = 8;
    let depth = num_levels - level - 1;
    let cap = if depth <= 30 {
        (((u64::from(KLL_K) << (depth + 1)) / 3u64.pow(depth as u32) + 1) >> 1) as usize
    } else {
        0
    };
    cap.max(M)
}

fn total_capacity(num_levels: usize) -> usize {
    (0..num_levels).map(|l| level_capacity(num_levels, l)).sum()
}

/// The levels of a KLL sketch fed values in ascending order.
struct LevelsBuilder {
    levels: Vec<Vec<f64>>,
    n: u64,
    min: f64,
    max: f64,
    /// The compaction coins, seeded from the input itself.
    coins: crate::rng::SplitMix,
}

impl LevelsBuilder {
    fn build(sorted: &[f64]) -> Self {
        let mut b = LevelsBuilder {
            levels: vec![Vec::with_capacity(usize::from(KLL_K))],
            n: sorted.len() as u64,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            coins: crate::rng::SplitMix(coin_seed(sorted)),
        };
        let mut capacity = total_capacity(1);
        let mut retained = 0usize;
        let mut rest = sorted;
        while !rest.is_empty() {
            // As in DataSketches: an update that finds the sketch full compacts once, then
            // adds its item whatever the count; the next ones fill up to the capacity.
            let take = if retained >= capacity {
                b.compress();
                retained = b.levels.iter().map(Vec::len).sum();
                capacity = total_capacity(b.levels.len());
                1
            } else {
                (capacity - retained).min(rest.len())
            };
            b.levels[0].extend_from_slice(&rest[..take]);
            retained += take;
            rest = &rest[take..];
        }
        b
    }

    /// Compacts the lowest level at or over its capacity into the level above (DataSketches'
    /// `compressWhileUpdating`).
    fn compress(&mut self) {
        let num_levels = self.levels.len();
        let Some(level) =
            (0..num_levels).find(|&l| self.levels[l].len() >= level_capacity(num_levels, l))
        else {
            return;
        };
        if level + 1 == num_levels {
            self.levels.push(Vec::new());
        }
        let mut current = std::mem::take(&mut self.levels[level]);
        let above = std::mem::take(&mut self.levels[level + 1]);
        let use_up = above.is_empty();
        // An odd level keeps one item back: level 0 its last arrival (here its largest, as it
        // arrives sorted), higher levels their smallest.
        let mut leftover = None;
        if current.len() % 2 == 1 {
            leftover = if level == 0 {
                current.pop()
            } else {
                Some(current.remove(0))
            };
        }
        let offset = usize::from(self.coin());
        let parity = if use_up {
            (current.len() - 1 - offset) % 2
        } else {
            offset
        };
        let promoted: Vec<f64> = current.iter().skip(parity).step_by(2).copied().collect();
        self.levels[level + 1] = if above.is_empty() {
            promoted
        } else {
            merge_sorted(&promoted, &above)
        };
        current.clear();
        current.extend(leftover);
        self.levels[level] = current;
    }

    /// DataSketches' `generalCompress` on sorted levels: one pass from level 0 up; while the
    /// sketch holds more than its total capacity, a level at or over its own capacity is
    /// halved into the one above (an odd level keeps its smallest item back). Compacting the
    /// top level adds a level, and with it capacity.
    fn general_compress(&mut self) {
        let mut num_levels = self.levels.len();
        let mut count: usize = self.levels.iter().map(Vec::len).sum();
        let mut target = total_capacity(num_levels);
        let mut level = 0;
        while level < num_levels {
            if level + 1 == self.levels.len() {
                self.levels.push(Vec::new());
            }
            let pop = self.levels[level].len();
            if count >= target && pop >= level_capacity(num_levels, level) {
                let mut current = std::mem::take(&mut self.levels[level]);
                let above = std::mem::take(&mut self.levels[level + 1]);
                let kept = pop % 2;
                let halved = &current[kept..];
                let offset = usize::from(self.coin());
                let parity = if above.is_empty() {
                    (halved.len() - 1 - offset) % 2
                } else {
                    offset
                };
                let promoted: Vec<f64> = halved.iter().skip(parity).step_by(2).copied().collect();
                count -= promoted.len();
                self.levels[level + 1] = if above.is_empty() {
                    promoted
                } else {
                    merge_sorted(&promoted, &above)
                };
                current.truncate(kept);
                self.levels[level] = current;
                if level + 1 == num_levels {
                    num_levels += 1;
                    target += level_capacity(num_levels, 0);
                }
            }
            level += 1;
        }
        self.levels.truncate(num_levels);
    }

    fn image(&self) -> Vec<u8> {
        let k = KLL_K.to_le_bytes();
        if self.n == 0 {
            return vec![2, 1, KLL_FAMILY, FLAG_EMPTY, k[0], k[1], 8, 0];
        }
        if self.n == 1 {
            let mut b = vec![2, 2, KLL_FAMILY, FLAG_SINGLE, k[0], k[1], 8, 0];
            b.extend_from_slice(&self.min.to_le_bytes());
            return b;
        }
        let retained: usize = self.levels.iter().map(Vec::len).sum();
        let num_levels = self.levels.len();
        let mut b = Vec::with_capacity(20 + 4 * num_levels + 16 + 8 * retained);
        b.extend_from_slice(&[5, 1, KLL_FAMILY, FLAG_LEVEL_ZERO_SORTED, k[0], k[1], 8, 0]);
        b.extend_from_slice(&self.n.to_le_bytes());
        b.extend_from_slice(&k);
        // At most 61 levels (n < 2^64), so this fits a byte.
        b.push(num_levels as u8);
        b.push(0);
        let mut offset = (total_capacity(num_levels) - retained) as u32;
        for level in &self.levels {
            b.extend_from_slice(&offset.to_le_bytes());
            offset += level.len() as u32;
        }
        b.extend_from_slice(&self.min.to_le_bytes());
        b.extend_from_slice(&self.max.to_le_bytes());
        for level in &self.levels {
            for x in level {
                b.extend_from_slice(&x.to_le_bytes());
            }
        }
        b
    }
}

fn merge_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    merge_into(a, b, &mut out);
    out
}

/// Merges sorted runs into one sorted run, always the two shortest first (Huffman's order):
/// every item moves once per merge it takes part in, and a long run (a window's stored value
/// among small operands) takes part in one merge instead of one per pass.
fn merge_runs(mut runs: Vec<Vec<f64>>) -> Vec<f64> {
    while runs.len() > 1 {
        // Longest first, so the two shortest are at the end.
        runs.sort_unstable_by_key(|r| std::cmp::Reverse(r.len()));
        let (Some(a), Some(b)) = (runs.pop(), runs.pop()) else {
            break;
        };
        let mut merged = Vec::with_capacity(a.len() + b.len());
        merge_into(&a, &b, &mut merged);
        runs.push(merged);
    }
    runs.pop().unwrap_or_default()
}

/// Appends the merge of the sorted `a` and `b` to `out`; on ties `a` goes first.
///
/// The order of two sketches' items is a coin toss a branch predictor cannot learn, so each
/// step is a select rather than a jump; and the merge runs from both ends at once (the front
/// places the smallest half, the back the largest), two independent chains of loads and
/// compares that the CPU overlaps.
fn merge_into(a: &[f64], b: &[f64], out: &mut Vec<f64>) {
    // Runs that do not overlap (what a build from sorted values compacts: each promoted run
    // lies above the level it joins) are a concatenation. Strictly apart only, so ties keep
    // the general merge's order.
    match (a.first(), a.last(), b.first(), b.last()) {
        (Some(_), Some(a_hi), Some(b_lo), _) if a_hi < b_lo => {
            out.extend_from_slice(a);
            out.extend_from_slice(b);
            return;
        }
        (Some(a_lo), _, Some(_), Some(b_hi)) if b_hi < a_lo => {
            out.extend_from_slice(b);
            out.extend_from_slice(a);
            return;
        }
        _ => {}
    }
    let start = out.len();
    let n = a.len() + b.len();
    out.resize(start + n, 0.0);
    let dst = &mut out[start..];
    // Front cursors into a and b, and back cursors (one past the next item from the end).
    let (mut i, mut j) = (0, 0);
    let (mut ia, mut jb) = (a.len(), b.len());
    for k in 0..n / 2 {
        let (x, y) = (
            a.get(i).copied().unwrap_or(f64::INFINITY),
            b.get(j).copied().unwrap_or(f64::INFINITY),
        );
        let take_b = y < x;
        dst[k] = if take_b { y } else { x };
        j += usize::from(take_b);
        i += usize::from(!take_b);
        let (x, y) = (
            ia.checked_sub(1).map_or(f64::NEG_INFINITY, |p| a[p]),
            jb.checked_sub(1).map_or(f64::NEG_INFINITY, |p| b[p]),
        );
        let take_a = x > y;
        dst[n - 1 - k] = if take_a { x } else { y };
        ia -= usize::from(take_a);
        jb -= usize::from(!take_a);
    }
    if n % 2 == 1 {
        // One item is left between the cursors, in a or in b.
        dst[n / 2] = if i < ia { a[i] } else { b[j] };
    }
}

/// The coin seed of a bulk build: a hash of the count and a few of the (sorted) values, so
/// the same batch always builds the same image (a replay rebuilds identical windows;
/// docs/DATA_MODEL.md, scale-out 3) while different batches get unrelated coins.
fn coin_seed(sorted: &[f64]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(&(sorted.len() as u64).to_le_bytes());
    let n = sorted.len();
    for i in [0, n / 4, n / 2, 3 * n / 4, n.saturating_sub(1)] {
        if let Some(v) = sorted.get(i) {
            h.update(&v.to_bits().to_le_bytes());
        }
    }
    u64::from(h.finalize()) ^ 0x5DEE_CE66_D1CE_5EED
}

impl LevelsBuilder {
    /// A fair coin (SplitMix64).
    fn coin(&mut self) -> bool {
        self.coins.next_u64() & 1 == 1
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

/// One compact KLL-of-doubles image, read in place: its levels are byte slices of the image
/// (items are little-endian doubles, level `h` weighing `2^h`).
struct ImageView<'a> {
    k: u16,
    /// Five preamble ints: the compact layout (an updatable image has one offset more).
    compact: bool,
    n: u64,
    /// Σ retained items × 2^level: equals n in a well-formed image.
    weight: u64,
    min: f64,
    max: f64,
    level_zero_sorted: bool,
    levels: Vec<&'a [u8]>,
}

fn le_f64(b: &[u8]) -> f64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    f64::from_le_bytes(a)
}

impl<'a> ImageView<'a> {
    /// Reads an image's preamble and level bounds; `None` for the empty sketch. Checks the
    /// layout (family, level count, offsets, item array); what else a use needs (k, weights)
    /// is the user's to check.
    fn parse(b: &'a [u8]) -> Result<Option<Self>> {
        let bad = |d: &str| Error::sketch("kll", d.to_string());
        if b.len() < 8 || b[2] != KLL_FAMILY {
            return Err(bad("not a KLL image"));
        }
        let k = u16::from_le_bytes([b[4], b[5]]);
        let flags = b[3];
        if flags & FLAG_EMPTY != 0 {
            return Ok(None);
        }
        if flags & FLAG_SINGLE != 0 {
            let item = b.get(8..16).ok_or_else(|| bad("truncated image"))?;
            let x = le_f64(item);
            return Ok(Some(ImageView {
                k,
                compact: true,
                n: 1,
                weight: 1,
                min: x,
                max: x,
                level_zero_sorted: true,
                levels: vec![item],
            }));
        }
        if b.len() < 20 {
            return Err(bad("truncated preamble"));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[8..16]);
        let n = u64::from_le_bytes(n);
        let num_levels = usize::from(b[18]);
        if num_levels == 0 || num_levels > 61 {
            return Err(bad("bad level count"));
        }
        let offsets = b
            .get(20..20 + 4 * num_levels)
            .ok_or_else(|| bad("truncated levels"))?;
        let offset = |l: usize| {
            u32::from_le_bytes([
                offsets[4 * l],
                offsets[4 * l + 1],
                offsets[4 * l + 2],
                offsets[4 * l + 3],
            ]) as usize
        };
        let extremes = 20 + 4 * num_levels;
        let items = b
            .get(extremes + 16..)
            .ok_or_else(|| bad("truncated items"))?;
        if items.len() % 8 != 0 {
            return Err(bad("ragged item array"));
        }
        let (min, max) = (le_f64(&b[extremes..]), le_f64(&b[extremes + 8..]));
        let base = offset(0);
        let mut levels = Vec::with_capacity(num_levels);
        let mut weight = 0u64;
        let mut start = 0;
        for level in 0..num_levels {
            let end = if level + 1 < num_levels {
                offset(level + 1).checked_sub(base)
            } else {
                Some(items.len() / 8)
            };
            let Some(end) = end.filter(|e| *e >= start && *e <= items.len() / 8) else {
                return Err(bad("bad level offsets"));
            };
            weight = weight.saturating_add(((end - start) as u64) << level);
            levels.push(&items[8 * start..8 * end]);
            start = end;
        }
        Ok(Some(ImageView {
            k,
            compact: b[0] == 5,
            weight,
            n,
            min,
            max,
            level_zero_sorted: flags & FLAG_LEVEL_ZERO_SORTED != 0,
            levels,
        }))
    }
}

/// Merges compact KLL images (of [`KLL_K`]) into one, as RocksDB's merge operator needs with
/// all of a window's operands at hand: every input's level `h` joins level `h` of the result
/// (each level sorted), then one DataSketches general compression (`generalCompress`: from
/// level 0 up, while the sketch is over its total capacity, a level at or over its own
/// capacity is halved into the one above, a level being added when the top one is) brings it
/// back within capacity. That is the merge DataSketches runs for one input, done once for all;
/// merging the inputs in turn repeats the upper levels' merge and the compression per input.
///
/// The result keeps n (the sum of the inputs'), the extremes and the rank-error guarantee of
/// a KLL sketch. Its coins are seeded from the inputs, so the same operands always merge to
/// the same bytes. Errors on an image that does not parse, of another k, or whose weights do
/// not add up to its n; the caller then merges through the crate.
pub fn kll_merge_images(images: &[&[u8]]) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(images.len());
    for image in images {
        let Some(v) = ImageView::parse(image)? else {
            continue;
        };
        if v.k != KLL_K || !v.compact {
            return Err(Error::sketch("kll", "not a compact image of the fixed k"));
        }
        if v.weight != v.n || v.min.partial_cmp(&v.max).is_none_or(|o| o.is_gt()) {
            return Err(Error::sketch("kll", "level weights do not add up to n"));
        }
        views.push(v);
    }
    let num_levels = views.iter().map(|v| v.levels.len()).max().unwrap_or(1);
    let mut seed = 0x5DEE_CE66_D1CE_5EEDu64;
    let mut b = LevelsBuilder {
        levels: Vec::with_capacity(num_levels + 1),
        n: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        coins: crate::rng::SplitMix(0),
    };
    for v in &views {
        b.n =
            b.n.checked_add(v.n)
                .ok_or_else(|| Error::sketch("kll", "merged n overflows"))?;
        b.min = b.min.min(v.min);
        b.max = b.max.max(v.max);
        seed = crate::rng::SplitMix(seed ^ v.n ^ v.min.to_bits().rotate_left(17)).next_u64();
    }
    for level in 0..num_levels {
        let mut runs = Vec::with_capacity(views.len());
        for v in &views {
            let Some(bytes) = v.levels.get(level).filter(|l| !l.is_empty()) else {
                continue;
            };
            let mut run: Vec<f64> = bytes.chunks_exact(8).map(le_f64).collect();
            // A fold rather than `any`: no early exit, so it vectorises.
            if run.iter().fold(false, |nan, x| nan | x.is_nan()) {
                return Err(Error::sketch("kll", "NaN item"));
            }
            if level == 0 && !v.level_zero_sorted {
                run.sort_unstable_by(f64::total_cmp);
            }
            runs.push(run);
        }
        b.levels.push(merge_runs(runs));
    }
    if b.n == 0 {
        return Ok(LevelsBuilder::build(&[]).image());
    }
    b.coins = crate::rng::SplitMix(seed ^ b.n);
    b.general_compress();
    Ok(b.image())
}

/// Normalized rank error of a KLL sketch with [`KLL_K`] (single-sided, 99 % confidence).
pub fn kll_rank_error_bound() -> f64 {
    new_kll().normalized_rank_error()
}

const KLL_FAMILY: u8 = 15;
const FLAG_EMPTY: u8 = 1;
const FLAG_LEVEL_ZERO_SORTED: u8 = 2;
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
        let Some(img) = ImageView::parse(b)? else {
            return Ok(WeightedCdf::default());
        };
        let mut pairs = Vec::with_capacity(img.levels.iter().map(|l| l.len() / 8).sum());
        for (level, items) in img.levels.iter().enumerate() {
            let weight = 1u64 << level;
            pairs.extend(items.chunks_exact(8).map(|x| (le_f64(x), weight)));
        }
        let mut cdf = Self::from_weighted(pairs);
        cdf.min = img.min;
        cdf.max = img.max;
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

    /// `(n, level sizes)` of a compact image, read from its preamble and level offsets.
    fn shape(img: &[u8]) -> (u64, Vec<usize>) {
        let (n, _) = kll_image_header(img).unwrap();
        if n < 2 {
            return (n, vec![n as usize]);
        }
        let levels = usize::from(img[18]);
        let off = |l: usize| {
            u32::from_le_bytes([
                img[20 + 4 * l],
                img[21 + 4 * l],
                img[22 + 4 * l],
                img[23 + 4 * l],
            ]) as usize
        };
        let items = (img.len() - (20 + 4 * levels + 16)) / 8;
        let first = off(0);
        let sizes = (0..levels)
            .map(|l| {
                let end = if l + 1 < levels {
                    off(l + 1) - first
                } else {
                    items
                };
                end - (off(l) - first)
            })
            .collect();
        (n, sizes)
    }

    #[test]
    fn bulk_images_have_the_crates_shape_and_read_back() {
        let mut x = 11u64;
        for n in [
            0usize, 1, 2, 3, 199, 200, 201, 250, 333, 1_000, 2_000, 5_000, 60_000,
        ] {
            let mut values: Vec<f64> = (0..n)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.3) * 1e3
                })
                .collect();
            values.sort_by(f64::total_cmp);
            let img = kll_image_from_sorted(&values).unwrap();
            let mut crate_sketch = new_kll();
            for v in &values {
                kll_update(&mut crate_sketch, *v);
            }
            // Level sizes depend on n alone, not on the coins.
            assert_eq!(shape(&img), shape(&crate_sketch.serialize()), "n={n}");
            // The crate reads it (its checks: levels sorted, items within min..max, weights
            // add up to n) and can keep updating and merging it.
            let mut back = kll_deserialize(&img).unwrap();
            assert_eq!(back.n(), n as u64);
            kll_merge(&mut back, &crate_sketch).unwrap();
            kll_update(&mut back, 1.0);
            assert_eq!(back.n(), 2 * n as u64 + 1);
            if n == 0 {
                continue;
            }
            let cdf = WeightedCdf::from_image(&img).unwrap();
            assert_eq!(cdf.total(), n as u64);
            assert_eq!(cdf.min(), kll_quantize(values[0]));
            assert_eq!(cdf.max(), kll_quantize(values[n - 1]));
            let eps = 2.0 * kll_rank_error_bound() * n as f64 + 1.0;
            for q in [0.01, 0.1, 0.5, 0.9, 0.99] {
                let got = cdf.quantile(q).unwrap();
                let rank = values.partition_point(|v| kll_quantize(*v) <= got) as f64;
                assert!(
                    (rank - q * n as f64).abs() <= eps + 1.0,
                    "n={n} q={q}: rank {rank}"
                );
            }
        }
    }

    #[test]
    fn bulk_images_refuse_unordered_or_non_finite_input() {
        assert!(kll_image_from_sorted(&[2.0, 1.0]).is_none());
        assert!(kll_image_from_sorted(&[1.0, f64::NAN]).is_none());
        assert!(kll_image_from_sorted(&[f64::NEG_INFINITY, 1.0]).is_none());
        // Equal after rounding is in order.
        assert!(kll_image_from_sorted(&[1.0 + 1e-9, 1.0]).is_some());
    }

    #[test]
    fn merge_into_is_a_stable_merge() {
        let mut rng = crate::rng::SplitMix(7);
        for case in 0..2_000 {
            let len = |r: &mut crate::rng::SplitMix| (r.next_u64() % 40) as usize;
            let (la, lb, lc) = (len(&mut rng), len(&mut rng), len(&mut rng));
            // Few distinct values (many ties), and signed zeros that compare equal.
            let mut draw = |n: usize| -> Vec<f64> {
                let mut v: Vec<f64> = (0..n)
                    .map(|_| match rng.next_u64() % 9 {
                        0 => -0.0,
                        k => k as f64 - 4.0,
                    })
                    .collect();
                v.sort_by(|x, y| x.partial_cmp(y).unwrap());
                v
            };
            let (a, b) = (draw(la), draw(lb));
            let mut out = vec![99.0];
            merge_into(&a, &b, &mut out);
            let mut want = a.clone();
            want.extend_from_slice(&b);
            want.sort_by(|x, y| x.partial_cmp(y).unwrap());
            assert_eq!(out[0], 99.0, "case {case}: the prefix is kept");
            assert_eq!(out[1..], want[..], "case {case}: {a:?} + {b:?}");
            let c = draw(lc);
            want.extend_from_slice(&c);
            want.sort_by(|x, y| x.partial_cmp(y).unwrap());
            assert_eq!(merge_runs(vec![a, b, c]), want);
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
