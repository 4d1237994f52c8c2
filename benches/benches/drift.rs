//! Drift-metric benches (docs/STATISTICS.md): the cost of each metric per series on realistic states
//! (counts over 50 reference bins, KLL k=200 in estimation mode, ~20 categories), and every
//! drift metric of one window over many series.
//!
//! The window case evaluates a sample of 5,000 series (5/8 numeric, 3/8 categorical, as in the
//! golden model) and extrapolates linearly to 500,000 series, on one core and on two cores
//! (`std::thread::scope`). Reference profiles are built once, as at reference upload, and their
//! CDFs cached; each window series pays for its own CDF extraction, bins, KS, W1, chi-square
//! and so on. After criterion's groups the bench prints its own extrapolation against the 9 s
//! target and the 900 s budget.
#![expect(clippy::unwrap_used, reason = "benches")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use driftdb_engine::sketch::performance::BinaryPerf;
use driftdb_engine::sketch::{CategoricalState, NumericState, PerformanceState};
use driftdb_engine::stats::categorical::{categorical_drift, chi_square_homogeneity};
use driftdb_engine::stats::divergence::bin_drift;
use driftdb_engine::stats::estimate::{Calibration, estimate_performance, sketch_scores};
use driftdb_engine::stats::fdr::benjamini_hochberg;
use driftdb_engine::stats::ks::{CdfSample, ks_test, wasserstein};
use driftdb_engine::stats::numeric::numeric_drift_with_baseline_cdf;
use driftdb_engine::stats::quantile::ReferenceEdges;

/// Series evaluated per window sample.
const SAMPLE_SERIES: usize = 5_000;
/// Series the extrapolation targets.
const TARGET_SERIES: usize = 500_000;
/// Values folded into each numeric window series (KLL k=200 compacts: ~300–400 items kept).
const WINDOW_VALUES: usize = 1_000;
/// Rows per reference profile.
const REFERENCE_ROWS: usize = 20_000;
/// Distinct reference profiles the window series cycle through.
const PROFILES: usize = 32;
/// Categories per categorical series.
const CATEGORIES: usize = 20;

use driftdb_benches::Rng;

/// Lognormal, 2 decimals, like the golden `amount`.
fn amount(rng: &mut Rng, mu: f64, sigma: f64) -> f64 {
    ((mu + sigma * rng.normal()).exp() * 100.0).round() / 100.0
}

/// A category of a Zipf-like law over `CATEGORIES` levels (plus `extra` unseen ones).
fn category(rng: &mut Rng, extra: usize) -> String {
    let k = CATEGORIES + extra;
    let u = rng.unit();
    let i = ((k as f64).powf(u) - 1.0) as usize;
    format!("c{:02}", i.min(k - 1))
}

struct NumProfile {
    edges: ReferenceEdges,
    state: NumericState,
    cdf: CdfSample,
}

struct Fixture {
    num_profiles: Vec<NumProfile>,
    cat_profiles: Vec<CategoricalState>,
    /// (profile index, window state)
    numeric: Vec<(usize, NumericState)>,
    categorical: Vec<(usize, CategoricalState)>,
}

fn fold(values: &[f64], edges: &ReferenceEdges) -> NumericState {
    let mut s = NumericState::new(Some(&edges.q50));
    for v in values {
        s.observe(*v, Some(&edges.q50));
    }
    s
}

fn fixture(series: usize) -> Fixture {
    let mut rng = Rng(0x5EED);
    let num_profiles: Vec<NumProfile> = (0..PROFILES)
        .map(|p| {
            let mu = 3.0 + 0.05 * p as f64;
            let vals: Vec<f64> = (0..REFERENCE_ROWS)
                .map(|_| amount(&mut rng, mu, 0.9))
                .collect();
            let edges = ReferenceEdges::from_values(&vals).unwrap();
            let state = fold(&vals, &edges);
            let cdf = CdfSample::from_state_binned(&state, &edges.q50).unwrap();
            NumProfile { edges, state, cdf }
        })
        .collect();
    let cat_profiles: Vec<CategoricalState> = (0..PROFILES)
        .map(|_| {
            let mut s = CategoricalState::default();
            for _ in 0..REFERENCE_ROWS {
                s.observe(&category(&mut rng, 0), false);
            }
            s
        })
        .collect();
    let n_numeric = series * 5 / 8;
    let numeric = (0..n_numeric)
        .map(|i| {
            let p = i % PROFILES;
            // Some series drift (wider spread), most do not.
            let sigma = if i % 7 == 0 { 1.2 } else { 0.9 };
            let mu = 3.0 + 0.05 * p as f64;
            let vals: Vec<f64> = (0..WINDOW_VALUES)
                .map(|_| amount(&mut rng, mu, sigma))
                .collect();
            (p, fold(&vals, &num_profiles[p].edges))
        })
        .collect();
    let categorical = (0..series - n_numeric)
        .map(|i| {
            let p = i % PROFILES;
            let extra = usize::from(i % 5 == 0) * 2;
            let reference = cat_profiles[p].exact_counts().unwrap();
            let mut s = CategoricalState::default();
            for _ in 0..400 {
                let c = category(&mut rng, extra);
                let unseen = !reference.contains_key(&c);
                s.observe(&c, unseen);
            }
            (p, s)
        })
        .collect();
    Fixture {
        num_profiles,
        cat_profiles,
        numeric,
        categorical,
    }
}

/// Every drift metric of a slice of series; returns their p-values (KS conservative, chi²).
fn evaluate(
    f: &Fixture,
    numeric: &[(usize, NumericState)],
    cat: &[(usize, CategoricalState)],
) -> Vec<f64> {
    let mut ps = Vec::with_capacity(numeric.len() + cat.len());
    for (p, s) in numeric {
        let prof = &f.num_profiles[*p];
        let d = numeric_drift_with_baseline_cdf(&prof.state, &prof.cdf, s, &prof.edges).unwrap();
        ps.push(d.ks.map_or(1.0, |k| k.pvalue_conservative));
        black_box(&d);
    }
    for (p, s) in cat {
        let d = categorical_drift(&f.cat_profiles[*p], s).unwrap().unwrap();
        ps.push(d.chi2.pvalue);
        black_box(&d);
    }
    ps
}

/// One window: all series on one thread, then BH over the family.
fn window_1core(f: &Fixture) -> Vec<f64> {
    let ps = evaluate(f, &f.numeric, &f.categorical);
    benjamini_hochberg(&ps).unwrap()
}

/// One window: the series split across two threads, then BH over the family.
fn window_2cores(f: &Fixture) -> Vec<f64> {
    let (n1, n2) = f.numeric.split_at(f.numeric.len() / 2);
    let (c1, c2) = f.categorical.split_at(f.categorical.len() / 2);
    let ps = std::thread::scope(|s| {
        let h = s.spawn(|| evaluate(f, n2, c2));
        let mut a = evaluate(f, n1, c1);
        a.extend(h.join().unwrap());
        a
    });
    benjamini_hochberg(&ps).unwrap()
}

fn per_metric(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("drift_per_series");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    let (p, cur) = &f.numeric[1];
    let prof = &f.num_profiles[*p];
    let ref50 = prof.state.bins().unwrap().counts.clone();
    let cur50 = cur.bins().unwrap().counts.clone();
    let cur_cdf = CdfSample::from_state_binned(cur, &prof.edges.q50).unwrap();
    g.bench_function("psi_js_hellinger_q50", |b| {
        b.iter(|| black_box(bin_drift(&ref50, &cur50).unwrap()))
    });
    g.bench_function("coarsen_then_psi_js_hellinger_q10", |b| {
        b.iter(|| {
            let r = prof.edges.coarsen(&ref50).unwrap();
            let q = prof.edges.coarsen(&cur50).unwrap();
            black_box(bin_drift(&r, &q).unwrap())
        })
    });
    g.bench_function("kll_cdf_extract", |b| {
        b.iter(|| black_box(CdfSample::from_state(cur).unwrap()))
    });
    g.bench_function("kll_cdf_extract_calibrated", |b| {
        b.iter(|| black_box(CdfSample::from_state_binned(cur, &prof.edges.q50).unwrap()))
    });
    g.bench_function("ks_two_cdfs", |b| {
        b.iter(|| black_box(ks_test(&prof.cdf, &cur_cdf)))
    });
    g.bench_function("wasserstein_two_cdfs", |b| {
        b.iter(|| black_box(wasserstein(prof.cdf.cdf(), cur_cdf.cdf())))
    });
    g.bench_function("numeric_all_metrics", |b| {
        b.iter(|| {
            black_box(
                numeric_drift_with_baseline_cdf(&prof.state, &prof.cdf, cur, &prof.edges).unwrap(),
            )
        })
    });
    let (cp, ccur) = &f.categorical[1];
    let cref = &f.cat_profiles[*cp];
    let (ra, ca): (Vec<u64>, Vec<u64>) = {
        let (r, c) = (cref.exact_counts().unwrap(), ccur.exact_counts().unwrap());
        r.iter()
            .map(|(k, v)| (*v, c.get(k).copied().unwrap_or(0)))
            .unzip()
    };
    g.bench_function("chi2_20_columns", |b| {
        b.iter(|| black_box(chi_square_homogeneity(&ra, &ca).unwrap()))
    });
    g.bench_function("categorical_all_metrics", |b| {
        b.iter(|| black_box(categorical_drift(cref, ccur).unwrap()))
    });
    g.finish();
}

/// A calibrated binary model: `n` scores from a logistic-normal, each labelled by a
/// Bernoulli(score) draw.
fn calibrated(rng: &mut Rng, n: usize, centre: f64) -> Vec<(f64, bool)> {
    (0..n)
        .map(|_| {
            let s = 1.0 / (1.0 + (-(centre + 1.5 * rng.normal())).exp());
            (s, rng.unit() < s)
        })
        .collect()
}

/// The reference's labelled scores and a window's `$score` state (`WINDOW_VALUES` scores, the
/// KLL in estimation mode), for the `estimated_*` metrics.
fn score_fixture() -> (BinaryPerf, NumericState) {
    let mut rng = Rng(0xCA1B);
    let mut perf = PerformanceState::default();
    for (s, y) in calibrated(&mut rng, REFERENCE_ROWS, -1.0) {
        perf.observe_binary(s, y).unwrap();
    }
    let mut window = NumericState::default();
    for (s, _) in calibrated(&mut rng, WINDOW_VALUES, -0.5) {
        window.observe(s, None);
    }
    (perf.binary.unwrap(), window)
}

/// What an `estimated_*` value costs per `$score` series: the window's CDF and the estimate
/// (the calibration map is fitted once, when the reference profile is loaded).
fn estimated_once(cal: &Calibration, window: &NumericState) -> f64 {
    let e = estimate_performance(&sketch_scores(&window.cdf().unwrap()), cal);
    e.auc.unwrap().value
}

fn estimated(c: &mut Criterion) {
    let (reference, window) = score_fixture();
    let mut g = c.benchmark_group("estimated_per_series");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    g.bench_function("calibration_fit", |b| {
        b.iter(|| black_box(Calibration::fit(&reference).unwrap()))
    });
    let cal = Calibration::fit(&reference).unwrap();
    let scores = sketch_scores(&window.cdf().unwrap());
    g.bench_function("estimate_from_scores", |b| {
        b.iter(|| black_box(estimate_performance(&scores, &cal)))
    });
    g.bench_function("estimated_all_metrics", |b| {
        b.iter(|| black_box(estimated_once(&cal, &window)))
    });
    g.finish();
}

fn window(c: &mut Criterion, f: &Fixture) {
    let n = f.numeric.len() + f.categorical.len();
    let mut g = c.benchmark_group("drift_window");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_with_input(BenchmarkId::new("all_metrics_1core", n), f, |b, f| {
        b.iter(|| black_box(window_1core(f)))
    });
    g.bench_with_input(BenchmarkId::new("all_metrics_2cores", n), f, |b, f| {
        b.iter(|| black_box(window_2cores(f)))
    });
    g.finish();
}

fn median_secs(mut run: impl FnMut(), reps: usize) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            run();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn bench(c: &mut Criterion) {
    let f = fixture(SAMPLE_SERIES);
    let retained: usize = f
        .numeric
        .iter()
        .map(|(_, s)| s.cdf().unwrap().items().len())
        .sum::<usize>()
        / f.numeric.len();
    per_metric(c, &f);
    estimated(c);
    window(c, &f);

    let n = f.numeric.len() + f.categorical.len();
    let scale = TARGET_SERIES as f64 / n as f64;
    let one = median_secs(|| drop(black_box(window_1core(&f))), 5) * scale;
    let two = median_secs(|| drop(black_box(window_2cores(&f))), 5) * scale;
    eprintln!(
        "drift extrapolation: {n} series sampled ({} numeric with ~{retained} KLL items, {} \
         categorical with {CATEGORIES} levels) -> {TARGET_SERIES} series: 1 core {one:.2} s \
         ({:.2}x the 9 s target, {:.4}x the 900 s budget); 2 cores {two:.2} s ({:.2}x target, \
         {:.4}x budget)",
        f.numeric.len(),
        f.categorical.len(),
        one / 9.0,
        one / 900.0,
        two / 9.0,
        two / 900.0,
    );
    // Estimated performance: one `$score` series per (model, segment), so far fewer than the
    // input series; the worst case prices every one of the 500,000 series as a score series.
    let (reference, window) = score_fixture();
    let cal = Calibration::fit(&reference).unwrap();
    let reps = 2_000;
    let per = median_secs(
        || {
            for _ in 0..reps {
                black_box(estimated_once(&cal, &window));
            }
        },
        5,
    ) / reps as f64;
    eprintln!(
        "estimated metrics: {:.1} us per score series (CDF + estimate); window close with \
         estimated-AUC rules, 1 core: drift {one:.2} s + 10,000 score series {:.2} s = {:.2} s \
         ({:.2}x the 9 s target); worst case, all {TARGET_SERIES} series: + {:.2} s",
        per * 1e6,
        per * 1e4,
        one + per * 1e4,
        (one + per * 1e4) / 9.0,
        per * TARGET_SERIES as f64,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
