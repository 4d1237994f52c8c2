//! Two-sample Kolmogorov–Smirnov test (docs/STATISTICS.md §6) and Wasserstein-1 distance (§7) over step
//! CDFs: exact ones built from raw values, or the weighted CDF of a KLL sketch.
//!
//! A sketch CDF is off by up to its rank error ε at any point, so a sketched D is off by up to
//! `ε_ref + ε_cur`. The plain p-value `Q_KS(sqrt(en)·D)` treats D as exact and therefore goes to
//! 0 as n grows even when D is pure sketch error; [`KsResult::pvalue_conservative`] uses a lower
//! bound of D instead (`D − ε`, or the exact gap at the reference bin edges when larger), so a
//! verdict built on it does not swing with n when the true difference is within the sketch's
//! resolution. Where the states' exact bin facts pin D down (no bin can hide a gap above the
//! one at the edges: a count feature whose values are all edges), it is the plain p-value.
//!
//! Wasserstein-1 of two binned states is estimated bin by bin: each bin's `∫ (F − G)` is exact
//! (counts and offset sums), and only where `F − G` crosses zero inside a bin is modelled
//! ([`ks_and_wasserstein`], docs/STATISTICS.md §7).

use crate::error::{Error, Result};
use crate::sketch::kll::{KLL_QUANTIZATION_ERROR, WeightedCdf, kll_quantize};
use crate::sketch::{BinEdges, NumericState};

/// Switch point between the two series of `Q_KS` (docs/STATISTICS.md §6).
const KOLMOGOROV_SWITCH: f64 = 1.18;

/// Intervals of the grid on which W1's within-bin model is evaluated (docs/STATISTICS.md §7).
const GRID: usize = 8;

/// A right-continuous step CDF: `F(x) = fs[i]` for `xs[i] <= x < xs[i+1]`, 0 below `xs[0]`.
///
/// Built exactly from raw values or a KLL's weighted items, or *bin-calibrated*: a KLL's items
/// reweighted so that the mass in every reference bin equals the state's exact bin count. The
/// calibrated CDF is exact at every bin edge, and inside a bin it can be off by at most that
/// bin's mass, whatever the sketch did; KS and above all Wasserstein-1 get much closer to their
/// exact values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepCdf {
    xs: Vec<f64>,
    fs: Vec<f64>,
    n: u64,
}

impl StepCdf {
    /// The exact CDF of raw values (NaN ignored).
    pub fn from_values(values: &[f64]) -> Self {
        Self::from_weighted(&WeightedCdf::from_values(values))
    }

    /// The CDF of a weighted item set (a KLL sketch, or exact values): `F = cum / total`.
    pub fn from_weighted(cdf: &WeightedCdf) -> Self {
        let total = cdf.total();
        let t = total as f64;
        StepCdf {
            xs: cdf.items().to_vec(),
            fs: cdf.cumulative().iter().map(|c| *c as f64 / t).collect(),
            n: total,
        }
    }

    /// A KLL CDF reweighted to exact bin counts over `edges` (see the type's docs).
    ///
    /// A bin with values but no retained item gets one point carrying its whole mass: the exact
    /// min (first bin), the exact max (last bin) or the bin's midpoint.
    pub fn calibrated(cdf: &WeightedCdf, edges: &BinEdges, counts: &[u64]) -> Result<Self> {
        if counts.len() != edges.num_bins() {
            return Err(Error::invalid(
                "bin counts",
                format!("{} counts for {} bins", counts.len(), edges.num_bins()),
            ));
        }
        let n: u64 = counts.iter().sum();
        if n == 0 || cdf.is_empty() {
            return Ok(StepCdf::default());
        }
        let (items, cum) = (cdf.items(), cdf.cumulative());
        let e = edges.edges();
        let nf = n as f64;
        let inv_n = 1.0 / nf;
        let mut xs = Vec::with_capacity(items.len() + 4);
        let mut fs = Vec::with_capacity(items.len() + 4);
        let mut i = 0usize;
        let mut prefix = 0u64;
        for (b, c) in counts.iter().enumerate() {
            // Items of bin b: x < e[b] (and x >= e[b − 1], guaranteed by the walk). Items are
            // rounded (`kll_quantize`, monotone), so they are compared with the rounded edge:
            // an item above it stands for a value at or above the edge, one below it for a
            // value below, and one equal to it most likely for the edge itself (a point mass).
            let start = i;
            let edge = e.get(b).map(|x| kll_quantize(*x));
            while i < items.len() && edge.is_none_or(|x| items[i] < x) {
                i += 1;
            }
            let before = if start == 0 { 0 } else { cum[start - 1] };
            let sketch_mass = if i > start { cum[i - 1] - before } else { 0 };
            if *c == 0 {
                continue;
            }
            if sketch_mass == 0 {
                let x = if b == 0 {
                    cdf.min()
                } else if b == e.len() {
                    cdf.max()
                } else {
                    (0.5 * (e[b - 1] + e[b])).clamp(cdf.min(), cdf.max())
                };
                prefix += c;
                xs.push(x);
                fs.push(prefix as f64 / nf);
                continue;
            }
            let scale = *c as f64 / sketch_mass as f64;
            let base = prefix as f64;
            for k in start..i {
                let inside = (cum[k] - before) as f64 * scale;
                xs.push(items[k]);
                fs.push(((base + inside) * inv_n).min(1.0));
            }
            prefix += c;
            // Pin the bin's last point to the exact prefix so rounding cannot drift.
            if let Some(f) = fs.last_mut() {
                *f = prefix as f64 / nf;
            }
        }
        // Synthetic points can land out of order only when a bin's midpoint passes an item of a
        // neighbouring bin, which the walk rules out; keep the invariant cheap to check anyway.
        debug_assert!(xs.windows(2).all(|w| w[0] <= w[1]));
        Ok(StepCdf { xs, fs, n })
    }

    /// Number of values the CDF summarises.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Whether the CDF has no mass.
    pub fn is_empty(&self) -> bool {
        self.xs.is_empty()
    }

    /// Support points, ascending.
    pub fn xs(&self) -> &[f64] {
        &self.xs
    }

    /// `F` at each support point.
    pub fn fs(&self) -> &[f64] {
        &self.fs
    }

    /// Inclusive quantile: the smallest support point `x` with `F(x) >= q`; `None` when empty or
    /// `q` is outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.xs.is_empty() || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let i = self.fs.partition_point(|f| *f < q).min(self.xs.len() - 1);
        Some(self.xs[i])
    }
}

/// A step CDF with the rank error it carries (0 for an exact CDF).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CdfSample {
    cdf: StepCdf,
    rank_error: f64,
    w1_error: f64,
    /// What the state knows exactly bin by bin, when the CDF was taken over reference edges.
    bins: Option<BinFacts>,
}

/// What a numeric state knows exactly about its distribution over the reference bins: the
/// counts (so the CDF at every edge), the offset sums (so `∫ F` over every bin), and in which
/// bins the CDF is known at every point.
#[derive(Debug, Clone, Default, PartialEq)]
struct BinFacts {
    edges_id: u32,
    n: u64,
    bins: Vec<BinFact>,
    /// Every bin has its offset sum (states written before the sums existed have none).
    has_offsets: bool,
    /// The sketch holds every value: the CDF is exact everywhere.
    exact: bool,
    /// Per bin, `GRID − 1` positions where the side's smoothed CDF inside the bin reaches
    /// `1/GRID … (GRID−1)/GRID` of the bin's mass (NaN for an empty bin); computed on first
    /// use ([`BinFacts::grid`]).
    grid: GridCache,
    min: f64,
    max: f64,
}

/// One bin of [`BinFacts`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct BinFact {
    /// The bin's edges (`−∞` / `+∞` for the open outer bins).
    left: f64,
    right: f64,
    /// Values in the bin.
    count: u64,
    /// The CDF just below the bin and at its end (exact).
    f_below: f64,
    f_end: f64,
    /// The lowest value the CDF takes inside the bin: `f_end` when every value of the bin
    /// sits on its left edge (a point mass), else `f_below`.
    f_low: f64,
    /// `Σ |x − anchor|` over the bin's values (the grid sum's midpoint) and its largest error.
    offset: f64,
    offset_err: f64,
    /// The CDF is known at every point of the bin (empty, a point mass, or an exact sketch).
    known: bool,
}

/// A lazily computed per-bin grid; derived data, so it never makes two samples unequal.
#[derive(Debug, Clone, Default)]
struct GridCache(std::sync::OnceLock<Vec<BinGeom>>);

impl PartialEq for GridCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The model's grid over one bin `[l, r]`: the points `x_q` where the bin's mass coordinate
/// is `u_q = q / GRID`, their trapezoid weights, `c_q = Cov(B(u(x_q)), ∫ B(u(x)) dx)` for a
/// standard Brownian bridge `B`, `1 / V` with `V = Var(∫ B(u(x)) dx)`, and the conditional
/// standard deviation factors `sqrt(u_q (1 − u_q) − c_q² / V)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BinGeom {
    l: f64,
    r: f64,
    xq: [f64; GRID + 1],
    om: [f64; GRID + 1],
    cq: [f64; GRID + 1],
    sd: [f64; GRID + 1],
    /// `∫ u dx` over the bin.
    u_int: f64,
    inv_v: f64,
}

impl BinGeom {
    /// From the interior points of a side's grid (NaN where the side had no mass).
    fn new(interior: &[f64], l: f64, r: f64) -> Self {
        let mut g = BinGeom {
            l,
            r,
            xq: [0.0; GRID + 1],
            om: [0.0; GRID + 1],
            cq: [0.0; GRID + 1],
            sd: [0.0; GRID + 1],
            u_int: 0.0,
            inv_v: 0.0,
        };
        if r <= l || r.is_nan() || l.is_nan() {
            return g;
        }
        g.xq[0] = l;
        for q in 1..GRID {
            let p = interior[q - 1];
            g.xq[q] = if p.is_nan() {
                l + (r - l) * q as f64 / GRID as f64
            } else {
                p.clamp(g.xq[q - 1], r)
            };
        }
        g.xq[GRID] = r;
        let step = 1.0 / GRID as f64;
        // With U(x) = ∫_l^x u: c(x) = U(x) + u(x)(r − x) − u(x) U(r).
        for q in 0..GRID {
            let dx = g.xq[q + 1] - g.xq[q];
            g.om[q] += 0.5 * dx;
            g.om[q + 1] += 0.5 * dx;
            g.u_int += 0.5 * dx * (2 * q + 1) as f64 * step;
        }
        let (mut prefix, mut v) = (0.0, 0.0);
        for q in 0..=GRID {
            let u = q as f64 * step;
            if q > 0 {
                prefix += 0.5 * (g.xq[q] - g.xq[q - 1]) * (2 * q - 1) as f64 * step;
            }
            g.cq[q] = prefix + u * (r - g.xq[q]) - u * g.u_int;
            v += g.om[q] * g.cq[q];
        }
        if v > 0.0 {
            g.inv_v = 1.0 / v;
            for q in 0..=GRID {
                let u = q as f64 * step;
                g.sd[q] = (u * (1.0 - u) - g.cq[q] * g.cq[q] * g.inv_v)
                    .max(0.0)
                    .sqrt();
            }
        }
        g
    }

    /// The same grid over `[l, r]` (the bin clipped to both sides' extremes).
    fn clipped(&self, l: f64, r: f64) -> Self {
        let mut interior = [f64::NAN; GRID - 1];
        if self.r > self.l {
            interior.copy_from_slice(&self.xq[1..GRID]);
        }
        BinGeom::new(&interior, l, r)
    }
}

impl BinFacts {
    fn new(state: &NumericState, edges: &BinEdges, eps: f64) -> Option<Self> {
        let b = state.bins()?;
        let (min, max) = (state.min()?, state.max()?);
        let nbins = b.counts.len();
        if b.edges_id != edges.id() || nbins != edges.num_bins() {
            return None;
        }
        let e = edges.edges();
        let n = state.count();
        let nf = n as f64;
        let sums = b.sums.as_deref().filter(|s| s.len() == nbins);
        let exact = eps == 0.0;
        let mut below = 0u64;
        let bins = b
            .counts
            .iter()
            .enumerate()
            .map(|(j, &count)| {
                // Each value's offset o was counted as ceil(o / unit) (0 only for o = 0), so
                // the bin's offsets add up to something in [max(0, k − c)·unit, k·unit].
                let (offset, offset_err, at_edge) = match sums {
                    Some(s) => {
                        let unit = edges.offset_unit(j).unwrap_or(0.0);
                        let hi = s[j] as f64 * unit;
                        let lo = s[j].saturating_sub(count) as f64 * unit;
                        (
                            0.5 * (lo + hi),
                            0.5 * (hi - lo),
                            j > 0 && count > 0 && s[j] == 0,
                        )
                    }
                    None => (0.0, 0.0, false),
                };
                let f_below = below as f64 / nf;
                below += count;
                let f_end = below as f64 / nf;
                BinFact {
                    left: if j == 0 { f64::NEG_INFINITY } else { e[j - 1] },
                    right: if j == e.len() { f64::INFINITY } else { e[j] },
                    count,
                    f_below,
                    f_end,
                    f_low: if at_edge { f_end } else { f_below },
                    offset,
                    offset_err,
                    known: exact || count == 0 || at_edge,
                }
            })
            .collect();
        Some(BinFacts {
            edges_id: b.edges_id,
            n,
            bins,
            has_offsets: sums.is_some(),
            exact,
            grid: GridCache::default(),
            min,
            max,
        })
    }

    /// Whether two sides were binned on the same edges.
    fn compatible(&self, other: &BinFacts) -> bool {
        self.edges_id == other.edges_id
            && self.bins.len() == other.bins.len()
            && self
                .bins
                .iter()
                .zip(&other.bins)
                .all(|(a, b)| a.left == b.left && a.right == b.right)
    }

    /// `∫ F` over `[l, r]` inside bin `j` (`l <=` every value of the bin, `r >=` every value
    /// of it), and the largest error of that figure.
    fn integral(&self, j: usize, l: f64, r: f64, inv_n: f64) -> (f64, f64) {
        let bin = &self.bins[j];
        let c = bin.count as f64;
        // Σ (r − x) over the bin's values, from Σ |x − anchor|: the anchor is the right edge
        // of the first bin and the left edge of the others.
        let tail = if bin.count == 0 {
            0.0
        } else if j == 0 {
            c * (r - bin.right) + bin.offset
        } else {
            c * (r - bin.left) - bin.offset
        };
        (bin.f_below * (r - l) + tail * inv_n, bin.offset_err * inv_n)
    }

    /// Per bin, the model's grid over the bin clipped to this side's `[min, max]`.
    fn geometry(&self, cdf: &StepCdf) -> &[BinGeom] {
        self.grid.0.get_or_init(|| {
            let grid = self.compute_grid(cdf);
            self.bins
                .iter()
                .enumerate()
                .map(|(j, bin)| {
                    let l = bin.left.max(self.min);
                    let r = bin.right.min(self.max);
                    BinGeom::new(&grid[j * (GRID - 1)..(j + 1) * (GRID - 1)], l, r)
                })
                .collect()
        })
    }

    /// Inside each bin, the side's CDF smoothed into a polyline through the middle of each
    /// step (from 0 at the bin's start to 1 at its end, in shares of the bin's mass), read
    /// where it reaches `q / GRID`.
    fn compute_grid(&self, cdf: &StepCdf) -> Vec<f64> {
        let nbins = self.bins.len();
        let n = self.n as f64;
        let mut grid = vec![f64::NAN; nbins * (GRID - 1)];
        let (xs, fs) = (&cdf.xs[..], &cdf.fs[..]);
        let mut i = 0usize;
        for (j, bin) in self.bins.iter().enumerate() {
            // Sketch items are rounded: split them as `StepCdf::calibrated` does.
            let r_item = if j + 1 == nbins {
                f64::INFINITY
            } else {
                kll_quantize(bin.right)
            };
            let start = i;
            while i < xs.len() && xs[i] < r_item {
                i += 1;
            }
            if bin.count == 0 {
                continue;
            }
            let c = bin.count as f64;
            let l = bin.left.max(self.min);
            let r = bin.right.min(self.max).max(l);
            let below = bin.f_below * n;
            let out = &mut grid[j * (GRID - 1)..(j + 1) * (GRID - 1)];
            // Walk the polyline (l, 0), (x_k, mid_k)…, (r, 1), reading off each level.
            let (mut px, mut pu, mut prev_after) = (l, 0.0f64, 0.0f64);
            let mut q = 1usize;
            let points = xs[start..i]
                .iter()
                .zip(&fs[start..i])
                .map(|(x, f)| (x.clamp(l, r), ((f * n - below) / c).clamp(0.0, 1.0)))
                .chain(std::iter::once((r, 1.0)));
            for (x, after) in points {
                let u = if x >= r {
                    1.0
                } else {
                    0.5 * (prev_after + after)
                }
                .max(pu);
                while q < GRID && (q as f64) / (GRID as f64) <= u {
                    let level = q as f64 / GRID as f64;
                    out[q - 1] = if u > pu {
                        px + (x - px) * (level - pu) / (u - pu)
                    } else {
                        x
                    };
                    q += 1;
                }
                (px, pu, prev_after) = (x, u, after);
            }
        }
        grid
    }
}

impl CdfSample {
    /// A CDF with an explicit rank error (a fraction of n, e.g. 0.0133 for KLL k=200). Its
    /// Wasserstein error bound is `rank_error × (max − min)` of the support.
    pub fn new(cdf: StepCdf, rank_error: f64) -> Self {
        let rank_error = rank_error.max(0.0);
        let span = match (cdf.xs.first(), cdf.xs.last()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        };
        CdfSample {
            cdf,
            rank_error,
            w1_error: rank_error * span,
            bins: None,
        }
    }

    /// The exact CDF of raw values (NaN ignored); rank error 0.
    pub fn exact(values: &[f64]) -> Self {
        CdfSample::new(StepCdf::from_values(values), 0.0)
    }

    /// The CDF of a numeric state's KLL sketch. Its rank error is 0 while the sketch still holds
    /// every value, and the sketch's normalized (single-sided, 99 %) rank error once it compacts.
    pub fn from_state(state: &NumericState) -> Result<Self> {
        let mut s = CdfSample::new(
            StepCdf::from_weighted(&state.cdf()?),
            sketch_rank_error(state),
        );
        s.w1_error += quantization_w1(state);
        Ok(s)
    }

    /// The KLL CDF of a state calibrated to its exact counts over `edges` when the state binned
    /// on them (else as [`CdfSample::from_state`]). The rank error is the sketch's, capped by the
    /// largest bin's share, which bounds a calibrated CDF's error without any probability.
    ///
    /// The sample also keeps what the state knows exactly per bin (counts, offset sums), which
    /// [`ks_and_wasserstein`] uses when both sides have it: Wasserstein-1 from exact per-bin
    /// integrals, and KS p-values from an exact D where the data allows (docs/STATISTICS.md §17).
    ///
    /// Its stand-alone Wasserstein error bound is `Σ_j min(ε, p_j) · width_j` over the bins,
    /// each clipped to the exact `[min, max]`: inside bin `j` a calibrated CDF is off by at
    /// most `p_j`.
    pub fn from_state_binned(state: &NumericState, edges: &BinEdges) -> Result<Self> {
        let eps = sketch_rank_error(state);
        let Some(facts) = BinFacts::new(state, edges, eps) else {
            return Self::from_state(state);
        };
        if eps == 0.0 {
            let mut s = Self::from_state(state)?;
            s.bins = Some(facts);
            return Ok(s);
        }
        let counts: Vec<u64> = facts.bins.iter().map(|b| b.count).collect();
        let cdf = StepCdf::calibrated(&state.cdf()?, edges, &counts)?;
        let n = cdf.n().max(1) as f64;
        let (lo, hi) = (facts.min, facts.max);
        let e = edges.edges();
        let mut max_share = 0.0f64;
        let mut w1_error = 0.0;
        for (j, c) in counts.iter().enumerate() {
            let share = *c as f64 / n;
            max_share = max_share.max(share);
            let left = if j == 0 { lo } else { e[j - 1].max(lo) };
            let right = if j == e.len() { hi } else { e[j].min(hi) };
            if right > left {
                w1_error += eps.min(share) * (right - left);
            }
        }
        Ok(CdfSample {
            cdf,
            rank_error: eps.min(max_share),
            w1_error: w1_error + quantization_w1(state),
            bins: Some(facts),
        })
    }

    /// The CDF.
    pub fn cdf(&self) -> &StepCdf {
        &self.cdf
    }

    /// Rank error of the CDF, as a fraction of its total weight.
    pub fn rank_error(&self) -> f64 {
        self.rank_error
    }

    /// Total weight (number of values summarised).
    pub fn n(&self) -> u64 {
        self.cdf.n()
    }

    /// Bound on `W1(this CDF, the exact CDF)` in the feature's units (0 for an exact CDF): the
    /// Wasserstein-1 of two samples is within the sum of their bounds of the exact value.
    pub fn wasserstein_error(&self) -> f64 {
        self.w1_error
    }

    /// The part of the Wasserstein bound due to rounding sketch items.
    fn quantization_error(&self) -> f64 {
        self.bins.as_ref().map_or(0.0, |f| {
            f.min.abs().max(f.max.abs()) * KLL_QUANTIZATION_ERROR
        })
    }
}

/// Bound on how far rounding the sketch items (`kll_quantize`) moves the CDF in W1: every
/// item moves by at most its magnitude times the quantization error.
fn quantization_w1(state: &NumericState) -> f64 {
    match (state.min(), state.max()) {
        (Some(lo), Some(hi)) => lo.abs().max(hi.abs()) * KLL_QUANTIZATION_ERROR,
        _ => 0.0,
    }
}

/// Rank error of a state's KLL: 0 while it holds every value, else the normalized rank error.
fn sketch_rank_error(state: &NumericState) -> f64 {
    state.kll_rank_error().unwrap_or(0.0)
}

/// `D = max |F_a − F_b|` and `W1 = ∫ |F_a − F_b| dx` in one merge of the two supports.
///
/// `F` is right-continuous, so between consecutive pooled points `z_k < z_{k+1}` the gap is the
/// one evaluated at `z_k` (scipy's `searchsorted(side="right")`).
fn d_and_w1(a: &StepCdf, b: &StepCdf) -> (f64, f64) {
    let (xa, fa, xb, fb) = (&a.xs[..], &a.fs[..], &b.xs[..], &b.fs[..]);
    let (Some(&a0), Some(&b0)) = (xa.first(), xb.first()) else {
        return (0.0, 0.0);
    };
    let (mut i, mut j) = (0usize, 0usize);
    let (mut va, mut vb) = (0.0f64, 0.0f64);
    let (mut d, mut w1) = (0.0f64, 0.0f64);
    // The previous pooled point and the gap that holds from it to the next one.
    let (mut z0, mut g0) = (a0.min(b0), 0.0f64);
    // Both sides left: advance whichever is smaller (both on a tie). Written without
    // data-dependent branches, since the interleaving of two samples is unpredictable.
    while i < xa.len() && j < xb.len() {
        let (x, y) = (xa[i], xb[j]);
        let (ta, tb) = (x <= y, y <= x);
        va = if ta { fa[i] } else { va };
        vb = if tb { fb[j] } else { vb };
        i += usize::from(ta);
        j += usize::from(tb);
        let z = if ta { x } else { y };
        let gap = (va - vb).abs();
        d = d.max(gap);
        w1 += (z - z0) * g0;
        z0 = z;
        g0 = gap;
    }
    // One side is exhausted: its CDF stays at its last value.
    let (rest_x, rest_f, fixed, rest_is_a) = if i < xa.len() {
        (&xa[i..], &fa[i..], vb, true)
    } else {
        (&xb[j..], &fb[j..], va, false)
    };
    for (z, f) in rest_x.iter().zip(rest_f) {
        let gap = if rest_is_a { f - fixed } else { fixed - f }.abs();
        d = d.max(gap);
        w1 += (z - z0) * g0;
        z0 = *z;
        g0 = gap;
    }
    (d, w1)
}

/// `D = max |F_a − F_b|` alone: the walk of [`d_and_w1`] without the area.
fn d_only(a: &StepCdf, b: &StepCdf) -> f64 {
    let (xa, fa, xb, fb) = (&a.xs[..], &a.fs[..], &b.xs[..], &b.fs[..]);
    let (mut i, mut j) = (0usize, 0usize);
    let (mut va, mut vb) = (0.0f64, 0.0f64);
    let mut d = 0.0f64;
    while i < xa.len() && j < xb.len() {
        let (x, y) = (xa[i], xb[j]);
        let (ta, tb) = (x <= y, y <= x);
        va = if ta { fa[i] } else { va };
        vb = if tb { fb[j] } else { vb };
        i += usize::from(ta);
        j += usize::from(tb);
        d = d.max((va - vb).abs());
    }
    // One side is exhausted: its CDF stays at its last value; the other only rises, so the
    // largest remaining gap is at one end of the rest.
    let rest = |f: &[f64], fixed: f64| {
        f.first().map_or(0.0, |first| {
            (first - fixed).abs().max((f[f.len() - 1] - fixed).abs())
        })
    };
    d.max(rest(&fa[i..], vb)).max(rest(&fb[j..], va))
}

/// Two-sample KS statistic `D = max |F_a(x) − F_b(x)|` over the pooled values (docs/STATISTICS.md §6);
/// `None` when either side is empty. Bit-identical to `scipy.stats.ks_2samp` on exact CDFs.
pub fn ks_statistic(a: &StepCdf, b: &StepCdf) -> Option<f64> {
    (!a.is_empty() && !b.is_empty()).then(|| d_and_w1(a, b).0)
}

/// Wasserstein-1 distance `∫ |F_a − F_b| dx` in the feature's units, unnormalised (FORMULAS
/// §7); `None` when either side is empty.
pub fn wasserstein(a: &StepCdf, b: &StepCdf) -> Option<f64> {
    (!a.is_empty() && !b.is_empty()).then(|| d_and_w1(a, b).1)
}

/// The Kolmogorov distribution's survival function `Q_KS(λ) = P(K > λ)`, as
/// `scipy.special.kolmogorov` (docs/STATISTICS.md §6); 1 for `λ <= 0`.
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda.is_nan() {
        return f64::NAN;
    }
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < KOLMOGOROV_SWITCH {
        // 1 − (√(2π)/λ) Σ exp(−(2k−1)² π² / (8 λ²)); converges fast for small λ.
        let c = std::f64::consts::PI * std::f64::consts::PI / (8.0 * lambda * lambda);
        let mut sum = 0.0;
        for k in 1..=50u32 {
            let m = f64::from(2 * k - 1);
            let term = (-m * m * c).exp();
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * sum).clamp(0.0, 1.0)
    } else {
        // 2 Σ (−1)^(k−1) exp(−2 k² λ²); relative accuracy holds in the far tail too.
        let l2 = lambda * lambda;
        let mut sum = 0.0;
        let mut sign = 1.0;
        for k in 1..=100u32 {
            let kf = f64::from(k);
            let term = (-2.0 * kf * kf * l2).exp();
            sum += sign * term;
            if term <= sum.abs() * 1e-17 {
                break;
            }
            sign = -sign;
        }
        (2.0 * sum).clamp(0.0, 1.0)
    }
}

/// A two-sample KS result: the effect size D with both p-values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// The statistic D (effect size, in `[0, 1]`).
    pub statistic: f64,
    /// `Q_KS(sqrt(en)·D)` with `en = n·m/(n+m)` (docs/STATISTICS.md §6 `ks_pvalue_kolmogorov`).
    pub pvalue: f64,
    /// `Q_KS(sqrt(en)·max(0, D − rank_error))`: never below `pvalue`, equal to it for exact
    /// CDFs. Use it for verdicts on sketched data.
    pub pvalue_conservative: f64,
    /// Total rank error of the two CDFs (`ε_ref + ε_cur`); 0 when both are exact.
    pub rank_error: f64,
    /// Bound on `|D − D_exact|`: 0 when D is exact (both CDFs exact, or known exactly at every
    /// point where the largest gap can lie), else at most `rank_error`.
    pub statistic_error: f64,
    /// Current (window) sample size.
    pub n: u64,
    /// Baseline sample size.
    pub baseline_n: u64,
}

impl KsResult {
    /// Whether D was computed from exact CDFs on both sides.
    pub fn is_exact(&self) -> bool {
        self.rank_error == 0.0
    }

    /// Whether D is the exact statistic (the CDFs may be sketched, but not where it matters).
    pub fn statistic_is_exact(&self) -> bool {
        self.statistic_error == 0.0
    }
}

/// Wasserstein-1 of two CDF samples with a bound on its error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wasserstein {
    /// The estimate, in the feature's units.
    pub value: f64,
    /// Bound on `|value − W1_exact|`, same units (0 when both CDFs are exact).
    pub error_bound: f64,
}

/// KS test of `current` against `baseline`; `None` when either side is empty.
pub fn ks_test(baseline: &CdfSample, current: &CdfSample) -> Option<KsResult> {
    if baseline.cdf.is_empty() || current.cdf.is_empty() {
        return None;
    }
    let d = d_only(&baseline.cdf, &current.cdf);
    Some(ks_result(baseline, current, d))
}

/// The largest gap `|F − G|` at the bin edges, where both sides know their CDFs exactly, and
/// the largest gap inside a bin where one of them does not (bounded by the CDFs' ranges over
/// the bin); `None` unless both sides were binned on the same edges.
fn d_bounds(a: &BinFacts, b: &BinFacts) -> Option<(f64, f64)> {
    if !a.compatible(b) {
        return None;
    }
    let mut at_edges = 0.0f64;
    let mut inside = 0.0f64;
    for (x, y) in a.bins.iter().zip(&b.bins) {
        at_edges = at_edges.max((x.f_end - y.f_end).abs());
        if !(x.known && y.known) {
            inside = inside
                .max((x.f_end - y.f_low).abs())
                .max((x.f_low - y.f_end).abs());
        }
    }
    Some((at_edges, inside))
}

/// The KS result for a statistic `d` computed from the two samples' CDFs.
fn ks_result(baseline: &CdfSample, current: &CdfSample, d: f64) -> KsResult {
    let (n, m) = (baseline.n(), current.n());
    let en = (n as f64 * m as f64) / (n + m) as f64;
    let rank_error = baseline.rank_error + current.rank_error;
    let pvalue = kolmogorov_q(en.sqrt() * d);
    // D is exact when the gap at the edges (exact) is at least any gap a bin that is not
    // known on both sides could hide; the sketched D is then that exact value.
    let (lower, statistic_error) = match (rank_error > 0.0, &baseline.bins, &current.bins) {
        (false, _, _) => (d, 0.0),
        (true, Some(a), Some(b)) => match d_bounds(a, b) {
            Some((at_edges, inside)) if inside <= at_edges => (d, 0.0),
            Some((at_edges, inside)) => {
                let lower = at_edges.max(d - rank_error).clamp(0.0, d);
                let upper = d.max(inside);
                (lower, rank_error.min((d - lower).max(upper - d)))
            }
            None => ((d - rank_error).max(0.0), rank_error),
        },
        (true, _, _) => ((d - rank_error).max(0.0), rank_error),
    };
    let pvalue_conservative = if statistic_error > 0.0 {
        kolmogorov_q(en.sqrt() * lower)
    } else {
        pvalue
    };
    KsResult {
        statistic: d,
        pvalue,
        pvalue_conservative,
        rank_error,
        statistic_error,
        n: m,
        baseline_n: n,
    }
}

/// The KS test and the Wasserstein-1 distance of `current` against `baseline` from one merge of
/// the two CDFs; `None` when either side is empty.
///
/// When both samples carry exact per-bin facts on the same edges (states with offset sums,
/// through [`CdfSample::from_state_binned`]), W1 is the sum over bins of `∫ |F − G|` where each
/// bin's signed integral `∫ (F − G)` is exact (from the counts and offset sums) and only the
/// way `F − G` crosses zero inside a bin comes from the sketches; the bound then counts only
/// bins where the sign of `F − G` can change (docs/STATISTICS.md §7, §17). Otherwise W1 is
/// `∫ |F̂ − Ĝ|` of the two CDFs with the sum of their stand-alone bounds.
pub fn ks_and_wasserstein(
    baseline: &CdfSample,
    current: &CdfSample,
) -> Option<(KsResult, Wasserstein)> {
    if baseline.cdf.is_empty() || current.cdf.is_empty() {
        return None;
    }
    let binned = match (&baseline.bins, &current.bins) {
        (Some(a), Some(b))
            if a.has_offsets && b.has_offsets && !(a.exact && b.exact) && a.compatible(b) =>
        {
            let d = d_only(&baseline.cdf, &current.cdf);
            Some((d, model_w1(&baseline.cdf, a, &current.cdf, b))).map(
                |(d, (value, bound, items_used))| {
                    let rounding = if items_used {
                        baseline.quantization_error() + current.quantization_error()
                    } else {
                        0.0
                    };
                    (d, (value, bound + rounding))
                },
            )
        }
        _ => None,
    };
    let (d, w1) = match binned {
        Some((d, (value, bound))) => (
            d,
            Wasserstein {
                value,
                error_bound: bound,
            },
        ),
        None => {
            let (d, value) = d_and_w1(&baseline.cdf, &current.cdf);
            (
                d,
                Wasserstein {
                    value,
                    error_bound: baseline.w1_error + current.w1_error,
                },
            )
        }
    };
    Some((ks_result(baseline, current, d), w1))
}

/// `E|m + s·Z|` for a standard normal `Z`, i.e. `s·ψ(|m| / s)` with
/// `ψ(t) = t·erf(t/√2) + sqrt(2/π)·exp(−t²/2)`. `ψ` is read from a table (linear
/// interpolation, error below 1e-5·s); beyond `t = 4` it is `|m|` to within 2e-5·s.
fn mean_abs_normal(m: f64, s: f64) -> f64 {
    let am = m.abs();
    if am >= PSI_MAX * s {
        return am;
    }
    let t = am / s * (PSI_STEPS as f64 / PSI_MAX);
    let k = (t as usize).min(PSI_STEPS - 1);
    let table = psi_table();
    let f = t - k as f64;
    s * (table[k] + f * (table[k + 1] - table[k]))
}

/// Range and resolution of the `ψ` table of [`mean_abs_normal`].
const PSI_MAX: f64 = 4.0;
const PSI_STEPS: usize = 512;

fn psi_table() -> &'static [f64; PSI_STEPS + 1] {
    static TABLE: std::sync::OnceLock<[f64; PSI_STEPS + 1]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0.0; PSI_STEPS + 1];
        for (k, v) in t.iter_mut().enumerate() {
            let x = k as f64 * PSI_MAX / PSI_STEPS as f64;
            let z = x / std::f64::consts::SQRT_2;
            // sqrt(2/π)
            *v = x * erf(z) + 0.797_884_560_802_865_4 * (-0.5 * x * x).exp();
        }
        t
    })
}

/// The error function, to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

/// Whether `F − G` surely keeps one sign over a bin: its range excludes zero, or its exact
/// values at both ends and its exact mean share a sign, and so does the quadratic through
/// them, everywhere at least 8 standard deviations of the within-bin fluctuation (variance
/// scale `s2`; conditioned on the integral, at most about `s2 / 16`) away from zero. The model then adds nothing to `|∫(F − G)|`.
fn sign_is_clear(lo: f64, hi: f64, mean: f64, left: f64, right: f64, s2: f64) -> bool {
    if lo >= 0.0 || hi <= 0.0 {
        return true;
    }
    let margin = 2.0 * s2.sqrt();
    let sign = mean.signum();
    let (a, b, m) = (left * sign, right * sign, mean * sign);
    if a < margin || b < margin || m < margin {
        return false;
    }
    // q(u) = a (1 − u) + b u + k u (1 − u) with mean m: k = 6 (m − (a + b) / 2).
    let k = 6.0 * (m - 0.5 * (a + b));
    if k >= 0.0 {
        return true;
    }
    let u = (0.5 + (b - a) / (2.0 * k)).clamp(0.0, 1.0);
    a * (1.0 - u) + b * u + k * u * (1.0 - u) >= margin
}

/// Reads an exact step CDF at non-decreasing positions.
struct ExactCursor<'a> {
    xs: &'a [f64],
    fs: &'a [f64],
    at: usize,
}

impl ExactCursor<'_> {
    /// `F(x)`, right-continuous; `x` must not decrease between calls.
    fn value(&mut self, x: f64) -> f64 {
        while self.at < self.xs.len() && self.xs[self.at] <= x {
            self.at += 1;
        }
        if self.at == 0 {
            0.0
        } else {
            self.fs[self.at - 1]
        }
    }

    /// `∫ |F − c|` over `[l, r)` (advances past every point below `r`).
    fn abs_integral(&mut self, l: f64, r: f64, c: f64) -> f64 {
        let mut v = self.value(l);
        let mut z = l;
        let mut acc = 0.0;
        while self.at < self.xs.len() && self.xs[self.at] < r {
            let x = self.xs[self.at].max(z);
            acc += (v - c).abs() * (x - z);
            z = x;
            v = self.fs[self.at];
            self.at += 1;
        }
        acc + (v - c).abs() * (r - z).max(0.0)
    }
}

/// How one side's CDF behaves inside a bin.
#[derive(Clone, Copy, PartialEq)]
enum Inside {
    /// Constant: no value in the bin, or all of them on its left edge.
    Flat(f64),
    /// Known at every point (the sketch holds every value).
    Exact,
    /// Known at the bin's ends and in integral only.
    Modelled,
}

impl Inside {
    fn of(f: &BinFacts, bin: &BinFact) -> Self {
        if bin.f_low == bin.f_end {
            Inside::Flat(bin.f_end)
        } else if f.exact {
            Inside::Exact
        } else {
            Inside::Modelled
        }
    }
}

/// W1 and its error bound from the two sides' exact per-bin facts, the within-bin part from a
/// model (docs/STATISTICS.md §7).
///
/// Per bin, `∫ (F − G)` is exact (counts and offset sums), and so are `F − G` at both ends.
/// Where a side's CDF is not known inside the bin, it is modelled as its exact values at the
/// ends joined along the bin's mass coordinate `u` (read from the better-filled sketch on a
/// grid of `GRID + 1` points), plus a Brownian bridge in `u` of variance `p (u (1 − u)) / n`,
/// the fluctuation of an empirical CDF inside a bin holding `p n` of its `n` values. The bridge
/// is conditioned on the exact integral, and the bin's estimate is `∫ E|F − G|` under that
/// model, clamped to what the exact facts allow.
///
/// Returns the estimate, its bound, and whether the sketches' (rounded) items entered it.
fn model_w1(a: &StepCdf, fa: &BinFacts, b: &StepCdf, fb: &BinFacts) -> (f64, f64, bool) {
    let (inv_na, inv_nb) = (1.0 / fa.n as f64, 1.0 / fb.n as f64);
    let zmin = fa.min.min(fb.min);
    let zmax = fa.max.max(fb.max);
    let mut cur_a = ExactCursor {
        xs: &a.xs,
        fs: &a.fs,
        at: 0,
    };
    let mut cur_b = ExactCursor {
        xs: &b.xs,
        fs: &b.fs,
        at: 0,
    };
    let (mut w1, mut bound) = (0.0f64, 0.0f64);
    let mut items_used = false;
    let mut mq = [0.0f64; GRID + 1];
    let step = 1.0 / GRID as f64;
    for (j, (x, y)) in fa.bins.iter().zip(&fb.bins).enumerate() {
        let l = x.left.max(zmin);
        let r = x.right.min(zmax);
        let width = r - l;
        if width <= 0.0 {
            continue;
        }
        let (ia, ea) = fa.integral(j, l, r, inv_na);
        let (ib, eb) = fb.integral(j, l, r, inv_nb);
        let (exact_a, delta) = (ia - ib, ea + eb);
        let (lo, hi) = (x.f_low - y.f_end, x.f_end - y.f_low);
        // ∫|h| = ∫h + 2∫max(−h, 0) = −∫h + 2∫max(h, 0) for h = F − G. Inside the bin F and G
        // stay within their ranges, so h ≤ F − G_low and h ≤ F_end − G: ∫max(h, 0) is at most
        // ∫F − min(F_low, G_low)·width and max(F_end, G_end)·width − ∫G (both exact), and at
        // most width · max(hi, 0); the same with the sides swapped for ∫max(−h, 0).
        let (floor, ceil) = (x.f_low.min(y.f_low) * width, x.f_end.max(y.f_end) * width);
        let pos = (ia - floor)
            .min(ceil - ib)
            .min(width * hi.max(0.0))
            .max(0.0);
        let neg = (ib - floor)
            .min(ceil - ia)
            .min(width * (-lo).max(0.0))
            .max(0.0);
        let lower = (exact_a.abs() - delta).max(0.0);
        let upper = ((exact_a + 2.0 * neg).min(-exact_a + 2.0 * pos) + 3.0 * delta).max(lower);
        let (ka, kb) = (Inside::of(fa, x), Inside::of(fb, y));
        let mut s2 = 0.0;
        if ka == Inside::Modelled {
            s2 += x.count as f64 * inv_na * inv_na;
        }
        if kb == Inside::Modelled {
            s2 += y.count as f64 * inv_nb * inv_nb;
        }
        let (left, right) = (x.f_low - y.f_low, x.f_end - y.f_end);
        let est = match (ka, kb) {
            (Inside::Flat(_), Inside::Flat(_)) => exact_a.abs(),
            (Inside::Exact, Inside::Flat(c)) => cur_a.abs_integral(l, r, c),
            (Inside::Flat(c), Inside::Exact) => cur_b.abs_integral(l, r, c),
            _ if sign_is_clear(lo, hi, exact_a / width, left, right, s2) => exact_a.abs(),
            _ => {
                // The grid: where the better-filled modelled side (else an exact one) reaches
                // each q / GRID of its mass in the bin.
                let use_a = match (ka, kb) {
                    (Inside::Modelled, Inside::Modelled) | (Inside::Exact, Inside::Exact) => {
                        x.count >= y.count
                    }
                    (Inside::Modelled, _) => true,
                    (_, Inside::Modelled) => false,
                    (Inside::Exact, _) => true,
                    _ => false,
                };
                let cached = &(if use_a {
                    fa.geometry(a)
                } else {
                    fb.geometry(b)
                })[j];
                let clipped;
                let geo = if cached.l == l && cached.r == r {
                    cached
                } else {
                    clipped = cached.clipped(l, r);
                    &clipped
                };
                let sdev = s2.sqrt();
                // The sides' model values on the grid: linear in u for modelled sides, so
                // m_q = α + β u_q, unless a side is exact (read at the grid points).
                let (alpha, beta) = (
                    match ka {
                        Inside::Flat(c) => c,
                        _ => x.f_below,
                    } - match kb {
                        Inside::Flat(c) => c,
                        _ => y.f_below,
                    },
                    match ka {
                        Inside::Modelled => x.f_end - x.f_below,
                        _ => 0.0,
                    } - match kb {
                        Inside::Modelled => y.f_end - y.f_below,
                        _ => 0.0,
                    },
                );
                let linear = ka != Inside::Exact && kb != Inside::Exact;
                let m0 = if linear {
                    alpha * width + beta * geo.u_int
                } else {
                    for (q, m) in mq.iter_mut().enumerate() {
                        let u = q as f64 * step;
                        let fa_q = match ka {
                            Inside::Exact if q < GRID => cur_a.value(geo.xq[q]),
                            Inside::Exact => x.f_end,
                            Inside::Flat(c) => c,
                            Inside::Modelled => x.f_below + u * (x.f_end - x.f_below),
                        };
                        let fb_q = match kb {
                            Inside::Exact if q < GRID => cur_b.value(geo.xq[q]),
                            Inside::Exact => y.f_end,
                            Inside::Flat(c) => c,
                            Inside::Modelled => y.f_below + u * (y.f_end - y.f_below),
                        };
                        *m = fa_q - fb_q;
                    }
                    (0..=GRID).map(|q| geo.om[q] * mq[q]).sum()
                };
                // Conditioned on the exact integral: mean m_q + gap c_q / V, standard
                // deviation s · sd_q.
                let gap = exact_a - m0;
                let mut acc = 0.0;
                if geo.inv_v > 0.0 {
                    let k = gap * geo.inv_v;
                    for (q, m) in mq.iter().enumerate() {
                        let mean = if linear {
                            alpha + beta * (q as f64 * step)
                        } else {
                            *m
                        };
                        acc += geo.om[q] * mean_abs_normal(mean + k * geo.cq[q], sdev * geo.sd[q]);
                    }
                } else {
                    acc = exact_a.abs();
                }
                acc
            }
        };
        w1 += est.clamp(lower, upper);
        bound += match (ka, kb) {
            (Inside::Flat(_), Inside::Flat(_)) => 2.0 * delta,
            (Inside::Flat(_) | Inside::Exact, Inside::Flat(_) | Inside::Exact) => {
                items_used = true;
                2.0 * delta
            }
            _ => upper - lower,
        };
    }
    (w1, bound, items_used)
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_and_w1_on_small_samples() {
        let a = StepCdf::from_values(&[1.0, 2.0, 3.0]);
        let b = StepCdf::from_values(&[1.0, 2.0, 3.0]);
        assert_eq!(ks_statistic(&a, &b), Some(0.0));
        assert_eq!(wasserstein(&a, &b), Some(0.0));
        let c = StepCdf::from_values(&[4.0, 5.0, 6.0]);
        assert_eq!(ks_statistic(&a, &c), Some(1.0));
        assert!((wasserstein(&a, &c).unwrap() - 3.0).abs() < 1e-12);
        assert_eq!(ks_statistic(&a, &StepCdf::default()), None);
    }

    #[test]
    fn kolmogorov_series_agree_at_the_switch() {
        // Both series are valid everywhere; they must agree where they meet.
        let lam: f64 = KOLMOGOROV_SWITCH;
        let small = {
            let c = std::f64::consts::PI.powi(2) / (8.0 * lam * lam);
            let s: f64 = (1..50)
                .map(|k| (-(f64::from(2 * k - 1)).powi(2) * c).exp())
                .sum();
            1.0 - (2.0 * std::f64::consts::PI).sqrt() / lam * s
        };
        assert!((kolmogorov_q(lam) - small).abs() < 1e-14);
        assert_eq!(kolmogorov_q(0.0), 1.0);
        assert_eq!(kolmogorov_q(0.01), 1.0);
        assert!(kolmogorov_q(40.0) == 0.0);
    }

    #[test]
    fn mean_abs_normal_matches_numerical_integration() {
        for (m, sd) in [
            (0.0, 1.0),
            (0.3, 1.0),
            (-1.7, 0.5),
            (2.0, 0.5),
            (0.01, 0.002),
            (5.0, 1.0),
        ] {
            // Midpoint rule over ±12 standard deviations.
            let steps = 200_000;
            let h = 24.0 / steps as f64;
            let want: f64 = (0..steps)
                .map(|i| {
                    let z = -12.0 + (i as f64 + 0.5) * h;
                    (m + sd * z).abs() * (-0.5 * z * z).exp() * h
                })
                .sum::<f64>()
                / (2.0 * std::f64::consts::PI).sqrt();
            let got = mean_abs_normal(m, sd);
            assert!(
                (got - want).abs() <= 2e-5 * sd,
                "m {m} s {sd}: {got} vs {want}"
            );
        }
        assert_eq!(mean_abs_normal(-0.5, 0.0), 0.5);
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 2e-7);
        assert!((erf(-1.5) + 0.966_105_146_475_310_7).abs() < 2e-7);
    }

    /// A sketched state of `n` integer values drawn from `weights` (value i with weight
    /// weights[i]), binned on `edges`.
    fn counts_state(
        weights: &[f64],
        n: usize,
        seed: u64,
        edges: &BinEdges,
    ) -> (NumericState, Vec<f64>) {
        let mut rng = crate::rng::SplitMix(seed);
        let mut s = NumericState::new(Some(edges));
        let mut raw = Vec::with_capacity(n);
        for _ in 0..n {
            let v = rng.pick(weights) as f64;
            raw.push(v);
            s.observe(v, Some(edges));
        }
        (s, raw)
    }

    #[test]
    fn discrete_data_on_edges_gives_the_exact_d_and_plain_p() {
        // Values 0…6, every one of them a reference edge: the sketch CDFs are exact wherever
        // the largest gap can be, although both sketches have compacted.
        let w = [0.1, 0.2, 0.25, 0.2, 0.12, 0.08, 0.05];
        let edges = BinEdges::new((0..7).map(f64::from).collect()).unwrap();
        let (rs, rraw) = counts_state(&w, 20_000, 1, &edges);
        let (cs, craw) = counts_state(&[0.1, 0.21, 0.24, 0.2, 0.12, 0.08, 0.05], 3_000, 2, &edges);
        let (b, c) = (
            CdfSample::from_state_binned(&rs, &edges).unwrap(),
            CdfSample::from_state_binned(&cs, &edges).unwrap(),
        );
        assert!(b.rank_error() > 0.0 && c.rank_error() > 0.0);
        let (ks, w1) = ks_and_wasserstein(&b, &c).unwrap();
        let exact = ks_test(&CdfSample::exact(&rraw), &CdfSample::exact(&craw)).unwrap();
        assert!((ks.statistic - exact.statistic).abs() < 1e-12);
        assert!(ks.statistic_is_exact() && !ks.is_exact());
        assert_eq!(ks.pvalue_conservative, ks.pvalue);
        assert!((ks.pvalue - exact.pvalue).abs() < 1e-12);
        // Every bin a point mass: W1 exact too.
        let wx = wasserstein(&StepCdf::from_values(&rraw), &StepCdf::from_values(&craw)).unwrap();
        assert!((w1.value - wx).abs() < 1e-12, "{} vs {wx}", w1.value);
        assert!(w1.error_bound < 1e-12);
        assert_eq!(ks_test(&b, &c), Some(ks));
    }

    #[test]
    fn a_value_between_edges_makes_d_approximate_again() {
        // The same, plus values at 2.5: one bin is no longer a point mass, and its range can
        // hide a gap larger than the exact one at the edges.
        let w = [0.1, 0.2, 0.1, 0.15, 0.2, 0.12, 0.08, 0.05];
        let edges = BinEdges::new(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let map = |s: &NumericState, raw: &[f64]| -> (NumericState, Vec<f64>) {
            // Value index 7 stands for 2.5.
            let vals: Vec<f64> = raw
                .iter()
                .map(|v| if *v == 7.0 { 2.5 } else { *v })
                .collect();
            let mut t = NumericState::new(Some(&edges));
            for v in &vals {
                t.observe(*v, Some(&edges));
            }
            let _ = s;
            (t, vals)
        };
        let (r0, rraw) = counts_state(&w, 20_000, 3, &edges);
        let (c0, craw) = counts_state(&w, 3_000, 4, &edges);
        let ((rs, _), (cs, _)) = (map(&r0, &rraw), map(&c0, &craw));
        let (b, c) = (
            CdfSample::from_state_binned(&rs, &edges).unwrap(),
            CdfSample::from_state_binned(&cs, &edges).unwrap(),
        );
        let ks = ks_test(&b, &c).unwrap();
        assert!(!ks.statistic_is_exact());
        assert!(ks.pvalue_conservative >= ks.pvalue);
        assert!(ks.statistic_error <= ks.rank_error);
    }

    #[test]
    fn states_without_sums_fall_back_to_the_sketch_area() {
        let edges = BinEdges::new(vec![-1.0, 0.0, 1.0]).unwrap();
        let mut rng = crate::rng::SplitMix(9);
        let (mut a, mut b) = (
            NumericState::new(Some(&edges)),
            NumericState::new(Some(&edges)),
        );
        for _ in 0..5_000 {
            a.observe(rng.normal(), Some(&edges));
            b.observe(rng.normal() + 0.1, Some(&edges));
        }
        let (sa, sb) = (
            CdfSample::from_state_binned(&a, &edges).unwrap(),
            CdfSample::from_state_binned(&b, &edges).unwrap(),
        );
        let (_, with_sums) = ks_and_wasserstein(&sa, &sb).unwrap();
        // Drop one side's sums, as a state written before they existed.
        let mut old = sb.clone();
        if let Some(f) = old.bins.as_mut() {
            f.has_offsets = false;
        }
        let (_, fallback) = ks_and_wasserstein(&sa, &old).unwrap();
        let area = wasserstein(sa.cdf(), sb.cdf()).unwrap();
        assert_eq!(fallback.value, area);
        assert_eq!(
            fallback.error_bound,
            sa.wasserstein_error() + sb.wasserstein_error()
        );
        assert!((with_sums.value - 0.1).abs() < 0.02, "{}", with_sums.value);
    }
}
