//! The statistics engine against the golden set (`tests/data/golden/`, definitions in
//! `docs/STATISTICS.md`).
//!
//! Builds every reference profile (overall and per segment value) from `reference.jsonl` with
//! the engine's quantile code, folds each window's rows (labels joined by request id) into
//! numeric, categorical and performance states, and compares every applicable number of
//! `expected.json` within the tolerances of docs/STATISTICS.md §16, plus all `worked_cases`. Each number
//! compared is counted, and the test fails if the count is not large, so it cannot pass by
//! skipping.

#![expect(
    clippy::unwrap_used,
    reason = "a test: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;

use driftdb_engine::sketch::kll::kll_quantize;
use driftdb_engine::sketch::performance::PerformanceState;
use driftdb_engine::sketch::{BinEdges, CategoricalState, NumericState};
use driftdb_engine::stats::categorical::{categorical_drift, categorical_drift_counts};
use driftdb_engine::stats::divergence::bin_drift;
use driftdb_engine::stats::fdr::{benjamini_hochberg, rejected};
use driftdb_engine::stats::ks::{CdfSample, kolmogorov_q, ks_test, wasserstein};
use driftdb_engine::stats::numeric::{numeric_drift, numeric_drift_with_baseline_cdf};
use driftdb_engine::stats::performance::{
    BinaryMetrics, binary_metrics, dcg_at_k, ndcg_all, ndcg_at_k, ranking_metrics,
    regression_metrics,
};
use driftdb_engine::stats::quantile::{
    ReferenceEdges, coarsen_bins, quantile_edges, raw_quantile_edges_sorted, sorted_finite,
    type7_quantile,
};
use driftdb_engine::stats::summary::{ExactSummary, SUMMARY_QUANTILES, numeric_summary};
use driftdb_engine::time::Timestamp;
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/golden/");
const WINDOW_MS: i64 = 900_000;
/// KLL k=200 normalized rank error per side (DataSketches), as the tolerance on sketched D.
const KLL_EPS: f64 = 0.013_3;
const QNAMES: [&str; 7] = ["p1", "p5", "p25", "p50", "p75", "p95", "p99"];

// ---------------------------------------------------------------------------------------------
// Comparison bookkeeping.

#[derive(Default)]
struct Check {
    compared: usize,
    failures: Vec<String>,
    /// Largest |D_sketch − D_exact| seen, and the largest W1 relative error from sketches.
    worst_ks: f64,
    worst_w1: f64,
    /// Largest W1 error as a fraction of its bound, and W1 values outside 5 %.
    worst_w1_bound: f64,
    w1_total: usize,
    w1_outside_5pct: usize,
    w1_exact_ref_outside_5pct: usize,
    /// Cells whose sketched KS D is reported exact.
    worst_ks_exact: usize,
    /// Largest distance of a KLL quantile's rank from its target (in band-widths).
    worst_band: f64,
}

impl Check {
    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }
    fn abs(&mut self, what: impl Display, got: f64, want: f64, tol: f64) {
        self.compared += 1;
        // Written so that NaN on either side fails.
        let ok = (got - want).abs() <= tol;
        if !ok {
            self.fail(format!(
                "{what}: got {got:e}, want {want:e} (abs tol {tol:e})"
            ));
        }
    }
    fn rel(&mut self, what: impl Display, got: f64, want: f64, tol: f64) {
        self.compared += 1;
        let ok = (got - want).abs() <= tol * want.abs();
        if !ok {
            self.fail(format!(
                "{what}: got {got:e}, want {want:e} (rel tol {tol:e})"
            ));
        }
    }
    fn opt_abs(&mut self, what: impl Display, got: Option<f64>, want: f64, tol: f64) {
        match got {
            Some(g) => self.abs(what, g, want, tol),
            None => {
                self.compared += 1;
                self.fail(format!("{what}: got None, want {want:e}"));
            }
        }
    }
    fn opt_rel(&mut self, what: impl Display, got: Option<f64>, want: f64, tol: f64) {
        match got {
            Some(g) => self.rel(what, g, want, tol),
            None => {
                self.compared += 1;
                self.fail(format!("{what}: got None, want {want:e}"));
            }
        }
    }
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: impl Display, got: T, want: T) {
        self.compared += 1;
        if got != want {
            self.fail(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    fn truth(&mut self, what: impl Display, ok: bool) {
        self.compared += 1;
        if !ok {
            self.fail(format!("{what}: does not hold"));
        }
    }
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        Value::Null => f64::NAN,
        other => panic!("not a number: {other}"),
    }
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn read_jsonl(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{DIR}{name}")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rows and cells.

struct Row {
    id: String,
    window: Option<usize>,
    segments: BTreeMap<String, String>,
    features: serde_json::Map<String, Value>,
    score: f64,
    latency: f64,
    label: Option<bool>,
}

fn parse_row(v: &Value, t0: i64, label: Option<bool>) -> Row {
    let ts = Timestamp::parse_rfc3339(v["ts"].as_str().unwrap())
        .unwrap()
        .millis();
    let window = (ts >= t0).then(|| ((ts - t0) / WINDOW_MS) as usize);
    Row {
        id: v["request_id"].as_str().unwrap().to_string(),
        window,
        segments: v["segments"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
        features: v["features"].as_object().unwrap().clone(),
        score: num(&v["score"]),
        latency: num(&v["latency_ms"]),
        label,
    }
}

/// Raw data of one (reference or window) × segment cell.
#[derive(Default)]
struct Cell {
    rows: u64,
    numeric: BTreeMap<String, Vec<Option<f64>>>,
    categorical: BTreeMap<String, Vec<Option<String>>>,
    labelled: Vec<(f64, bool)>,
}

fn build_cell<'a>(
    rows: impl Iterator<Item = &'a Row>,
    numeric: &[String],
    categorical: &[String],
) -> Cell {
    let mut c = Cell::default();
    for r in rows {
        c.rows += 1;
        for col in numeric {
            let v = match col.as_str() {
                "score" => Some(r.score),
                "latency_ms" => Some(r.latency),
                _ => r.features.get(col).and_then(Value::as_f64),
            };
            c.numeric.entry(col.clone()).or_default().push(v);
        }
        for col in categorical {
            let v = match r.features.get(col) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(Value::Null) | None => None,
                Some(other) => panic!("unexpected categorical value {other}"),
            };
            c.categorical.entry(col.clone()).or_default().push(v);
        }
        if let Some(y) = r.label {
            c.labelled.push((r.score, y));
        }
    }
    c
}

fn present(vals: &[Option<f64>]) -> Vec<f64> {
    vals.iter().flatten().copied().collect()
}

fn fold_numeric(vals: &[Option<f64>], edges: &BinEdges) -> NumericState {
    let mut s = NumericState::new(Some(edges));
    for v in vals {
        match v {
            Some(x) => s.observe(*x, Some(edges)),
            None => s.observe_missing(),
        }
    }
    s
}

fn fold_categorical(
    vals: &[Option<String>],
    reference: Option<&CategoricalState>,
) -> CategoricalState {
    let seen = reference.and_then(CategoricalState::exact_counts);
    let mut s = CategoricalState::default();
    for v in vals {
        match v {
            Some(x) => s.observe(x, seen.is_some_and(|m| !m.contains_key(x))),
            None => s.observe_missing(),
        }
    }
    s
}

fn fold_perf(labelled: &[(f64, bool)]) -> PerformanceState {
    let mut p = PerformanceState::default();
    for (s, y) in labelled {
        p.observe_binary(*s, *y).unwrap();
    }
    p
}

/// The numeric block of a cell node: `score` and `latency_ms` sit next to `numeric`.
fn numeric_node<'a>(node: &'a Value, col: &str) -> &'a Value {
    match col {
        "score" | "latency_ms" => &node[col],
        _ => &node["numeric"][col],
    }
}

/// The reference profile of one segment cell, built as at reference upload.
struct Profile {
    edges: BTreeMap<String, ReferenceEdges>,
    raw: BTreeMap<String, Vec<f64>>,
    numeric: BTreeMap<String, NumericState>,
    categorical: BTreeMap<String, CategoricalState>,
}

// ---------------------------------------------------------------------------------------------
// Comparisons of one cell.

/// Compares a numeric summary. Quantiles are compared twice: type 7 on the raw values at 1e-9,
/// and, when `sketch_quantiles` (window cells; a reference profile stores exact quantiles), the
/// state's KLL quantile against its ±0.01-rank band.
fn check_numeric_summary(
    c: &mut Check,
    at: &str,
    state: &NumericState,
    raw: &[f64],
    e: &Value,
    sketch_quantiles: bool,
) {
    c.eq(
        format!("{at}.count_total"),
        state.count_total(),
        int(&e["count_total"]),
    );
    c.eq(format!("{at}.count"), state.count(), int(&e["count"]));
    c.eq(format!("{at}.missing"), state.missing(), int(&e["missing"]));
    let s = numeric_summary(state, &SUMMARY_QUANTILES).unwrap();
    c.opt_abs(
        format!("{at}.missing_share"),
        s.missing_share,
        num(&e["missing_share"]),
        1e-12,
    );
    c.opt_rel(format!("{at}.mean"), s.mean, num(&e["mean"]), 1e-9);
    c.opt_rel(format!("{at}.std"), s.std, num(&e["std"]), 1e-9);
    c.eq(format!("{at}.min"), s.min, Some(num(&e["min"])));
    c.eq(format!("{at}.max"), s.max, Some(num(&e["max"])));
    let exact = ExactSummary::from_values(raw, &SUMMARY_QUANTILES).unwrap();
    c.rel(
        format!("{at}.mean (exact)"),
        exact.mean,
        num(&e["mean"]),
        1e-9,
    );
    c.opt_rel(format!("{at}.std (exact)"), exact.std, num(&e["std"]), 1e-9);
    for (i, name) in QNAMES.iter().enumerate() {
        let want = num(&e[*name]);
        c.rel(
            format!("{at}.{name} (type 7)"),
            exact.quantiles[i].value,
            want,
            1e-9,
        );
        let band = &e[format!("{name}_band")];
        // Sketch items are data values rounded to 16 significand bits (kll_quantize, monotone),
        // so the sketch's quantile lies in the rounded band.
        let (lo, hi) = (kll_quantize(num(&band[0])), kll_quantize(num(&band[1])));
        let got = s.quantiles[i].value;
        if !sketch_quantiles {
            continue;
        }
        c.truth(
            format!("{at}.{name} (kll) = {got} in [{lo}, {hi}]"),
            lo <= got && got <= hi,
        );
        // How far into the band the sketch went, in rank units (0 = exact, 1 = band edge).
        let rank =
            raw.iter().filter(|x| kll_quantize(**x) <= got).count() as f64 / raw.len() as f64;
        let below =
            raw.iter().filter(|x| kll_quantize(**x) < got).count() as f64 / raw.len() as f64;
        let q = SUMMARY_QUANTILES[i];
        let off = if q < below {
            below - q
        } else if q > rank {
            q - rank
        } else {
            0.0
        };
        c.worst_band = c.worst_band.max(off / 0.01);
    }
}

fn check_reference(
    c: &mut Check,
    at: &str,
    cell: &Cell,
    e: &Value,
    numeric: &[String],
    categorical: &[String],
) -> Profile {
    let mut p = Profile {
        edges: BTreeMap::new(),
        raw: BTreeMap::new(),
        numeric: BTreeMap::new(),
        categorical: BTreeMap::new(),
    };
    for col in numeric {
        let vals = &cell.numeric[col];
        let raw = present(vals);
        let en = numeric_node(e, col);
        let at = format!("{at}.{col}");
        let edges = ReferenceEdges::from_values(&raw).unwrap();
        for (name, set) in [("edges_q10", &edges.q10), ("edges_q50", &edges.q50)] {
            let want: Vec<f64> = en[name].as_array().unwrap().iter().map(num).collect();
            c.eq(format!("{at}.{name}.len"), set.edges().len(), want.len());
            for (i, (g, w)) in set.edges().iter().zip(&want).enumerate() {
                c.rel(format!("{at}.{name}[{i}]"), *g, *w, 1e-12);
            }
        }
        // The stand-alone helper agrees with the profile's edges.
        c.eq(
            format!("{at}.quantile_edges(10)"),
            quantile_edges(&raw, 10).unwrap(),
            edges.q10.clone(),
        );
        let state = fold_numeric(vals, &edges.q50);
        check_numeric_summary(c, &at, &state, &raw, en, false);
        // 10-bin proportions derived from the 50-bin counts equal direct 10-bin counts.
        let fine = state.bins().unwrap().counts.clone();
        let coarse = coarsen_bins(&edges.q50, &fine, &edges.q10).unwrap();
        let direct: Vec<u64> = {
            let mut d = vec![0u64; edges.q10.num_bins()];
            for x in &raw {
                d[edges.q10.bin(*x)] += 1;
            }
            d
        };
        c.eq(format!("{at}.coarsened q10 counts"), &coarse, &direct);
        let props = en["ref_props_q10"].as_array().unwrap();
        c.eq(format!("{at}.ref_props_q10.len"), props.len(), coarse.len());
        for (i, (cnt, w)) in coarse.iter().zip(props).enumerate() {
            c.abs(
                format!("{at}.ref_props_q10[{i}]"),
                *cnt as f64 / state.count() as f64,
                num(w),
                1e-12,
            );
        }
        p.edges.insert(col.clone(), edges);
        p.raw.insert(col.clone(), raw);
        p.numeric.insert(col.clone(), state);
    }
    for col in categorical {
        let state = fold_categorical(&cell.categorical[col], None);
        let ec = &e["categorical"][col];
        check_categorical_counts(c, &format!("{at}.{col}"), &state, ec);
        p.categorical.insert(col.clone(), state);
    }
    check_performance(c, &format!("{at}.performance"), cell, &e["performance"]);
    p
}

fn check_categorical_counts(c: &mut Check, at: &str, s: &CategoricalState, e: &Value) {
    c.eq(
        format!("{at}.count_total"),
        s.count_total(),
        int(&e["count_total"]),
    );
    c.eq(format!("{at}.count"), s.count(), int(&e["count"]));
    c.eq(format!("{at}.missing"), s.missing(), int(&e["missing"]));
    let sum = driftdb_engine::stats::summary::categorical_summary(s);
    c.opt_abs(
        format!("{at}.missing_share"),
        sum.missing_share,
        num(&e["missing_share"]),
        1e-12,
    );
    c.eq(
        format!("{at}.n_distinct"),
        sum.n_distinct,
        int(&e["n_distinct"]) as f64,
    );
    let want: BTreeMap<String, u64> = e["counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), int(v)))
        .collect();
    let got = s.counts();
    c.eq(format!("{at}.counts.len"), got.len(), want.len());
    for (k, w) in &want {
        c.eq(format!("{at}.counts[{k}]"), got.get(k).copied(), Some(*w));
    }
}

fn check_binary(c: &mut Check, at: &str, m: &BinaryMetrics, e: &Value, auc_tol: f64) {
    c.opt_abs(
        format!("{at}.positive_rate"),
        m.positive_rate,
        num(&e["positive_rate"]),
        1e-12,
    );
    c.opt_abs(
        format!("{at}.mean_score"),
        m.mean_score,
        num(&e["mean_score"]),
        1e-12,
    );
    c.opt_abs(format!("{at}.ece10"), m.ece, num(&e["ece10"]), 1e-12);
    let bins = e["ece10_bins"].as_array().unwrap();
    c.eq(format!("{at}.ece10_bins.len"), m.ece_bins.len(), bins.len());
    for (i, (g, w)) in m.ece_bins.iter().zip(bins).enumerate() {
        c.eq(format!("{at}.ece10_bins[{i}].n"), g.n, int(&w["n"]));
        if g.n > 0 {
            c.opt_abs(
                format!("{at}.ece10_bins[{i}].mean_score"),
                g.mean_score,
                num(&w["mean_score"]),
                1e-12,
            );
            c.opt_abs(
                format!("{at}.ece10_bins[{i}].pos_rate"),
                g.pos_rate,
                num(&w["pos_rate"]),
                1e-12,
            );
        } else {
            c.eq(
                format!("{at}.ece10_bins[{i}] empty"),
                (g.mean_score, g.pos_rate),
                (None, None),
            );
        }
    }
    match e.get("roc_auc").filter(|v| !v.is_null()) {
        Some(w) => c.opt_abs(format!("{at}.roc_auc"), m.roc_auc, num(w), auc_tol),
        None => c.eq(format!("{at}.roc_auc"), m.roc_auc, None),
    }
    for (name, got) in [
        ("accuracy_at_0_5", m.accuracy),
        ("precision_at_0_5", m.precision),
        ("recall_at_0_5", m.recall),
        ("f1_at_0_5", m.f1),
    ] {
        match e.get(name).filter(|v| !v.is_null()) {
            Some(w) => c.opt_abs(format!("{at}.{name}"), got, num(w), 1e-12),
            None => c.eq(format!("{at}.{name}"), got, None),
        }
    }
    let cm = &e["confusion_at_0_5"];
    c.eq(
        format!("{at}.confusion"),
        (
            m.confusion.tp,
            m.confusion.fp,
            m.confusion.tn,
            m.confusion.fn_,
        ),
        (
            int(&cm["tp"]),
            int(&cm["fp"]),
            int(&cm["tn"]),
            int(&cm["fn"]),
        ),
    );
    c.opt_rel(
        format!("{at}.log_loss"),
        m.log_loss,
        num(&e["log_loss"]),
        1e-12,
    );
    c.opt_abs(format!("{at}.brier"), m.brier, num(&e["brier"]), 1e-12);
}

fn check_performance(c: &mut Check, at: &str, cell: &Cell, e: &Value) {
    let perf = fold_perf(&cell.labelled);
    let m = binary_metrics(perf.binary.as_ref().unwrap(), cell.rows);
    c.eq(format!("{at}.n_rows"), m.n_rows, int(&e["n_rows"]));
    c.eq(format!("{at}.n_labeled"), m.n_labeled, int(&e["n_labeled"]));
    c.opt_abs(
        format!("{at}.label_coverage"),
        m.label_coverage,
        num(&e["label_coverage"]),
        1e-12,
    );
    check_binary(c, at, &m, e, 1e-3);
}

/// Compares one window cell; returns this cell's (feature, p) tests for the BH family.
fn check_window_cell(
    c: &mut Check,
    at: &str,
    cell: &Cell,
    prof: &Profile,
    e: &Value,
    numeric: &[String],
    categorical: &[String],
) -> Vec<(String, f64)> {
    let mut tests = Vec::new();
    for col in numeric {
        let vals = &cell.numeric[col];
        let raw = present(vals);
        let en = numeric_node(e, col);
        let at = format!("{at}.{col}");
        let edges = &prof.edges[col];
        let state = fold_numeric(vals, &edges.q50);
        check_numeric_summary(c, &at, &state, &raw, en, true);

        let base = &prof.numeric[col];
        let d = numeric_drift(base, &state, edges).unwrap();
        c.opt_abs(
            format!("{at}.missing_share_change"),
            d.missing_share_change,
            num(&en["missing_share_change"]),
            1e-12,
        );
        for (suffix, bins) in [("q10", d.q10), ("q50", d.q50)] {
            let b = bins.unwrap();
            c.abs(
                format!("{at}.psi_{suffix}"),
                b.psi,
                num(&en[format!("psi_{suffix}")]),
                1e-9,
            );
            c.abs(
                format!("{at}.js_{suffix}"),
                b.js,
                num(&en[format!("js_{suffix}")]),
                1e-9,
            );
            c.abs(
                format!("{at}.hellinger_{suffix}"),
                b.hellinger,
                num(&en[format!("hellinger_{suffix}")]),
                1e-9,
            );
            c.eq(
                format!("{at}.n_bins_{suffix}"),
                b.n_bins as u64,
                int(&en[format!("n_bins_{suffix}")]),
            );
            c.eq(
                format!("{at}.{suffix} sizes"),
                (b.n, b.baseline_n),
                (state.count(), base.count()),
            );
        }

        let want_d = num(&en["ks_stat"]);
        let want_p = num(&en["ks_pvalue_kolmogorov"]);
        // From the sketches: D within two rank errors, and the conservative p never below the
        // exact one when D is within the rank error it claims.
        let ks = d.ks.unwrap();
        c.abs(
            format!("{at}.ks_stat (kll)"),
            ks.statistic,
            want_d,
            2.0 * KLL_EPS,
        );
        c.worst_ks = c.worst_ks.max((ks.statistic - want_d).abs());
        c.eq(
            format!("{at}.ks sizes"),
            (ks.n, ks.baseline_n),
            (state.count(), base.count()),
        );
        if ks.statistic_is_exact() {
            // D exact from the sketches (docs/STATISTICS.md §6): the plain Kolmogorov p.
            c.worst_ks_exact += 1;
            c.abs(
                format!("{at}.ks_stat (kll, exact)"),
                ks.statistic,
                want_d,
                1e-12,
            );
            c.abs(
                format!("{at}.ks_pvalue (kll, D exact)"),
                ks.pvalue_conservative,
                want_p,
                1e-9,
            );
        } else if (ks.statistic - want_d).abs() <= ks.rank_error {
            c.truth(
                format!(
                    "{at}.ks_pvalue_conservative {} >= {want_p}",
                    ks.pvalue_conservative
                ),
                ks.pvalue_conservative >= want_p - 1e-12,
            );
        }
        let w1 = d.wasserstein.unwrap();
        let want_w1 = num(&en["wasserstein"]);
        // From sketches: 5 % (docs/STATISTICS.md §16) or the sketch's own error bound, whichever is
        // larger; KLL k=200 cannot resolve a W1 that is at the level of its own noise.
        let bound = d.wasserstein_error_bound.unwrap();
        c.abs(
            format!("{at}.wasserstein (kll, bound {bound:.4})"),
            w1,
            want_w1,
            (0.05 * want_w1).max(bound),
        );
        c.w1_total += 1;
        if (w1 - want_w1).abs() > 0.05 * want_w1 {
            c.w1_outside_5pct += 1;
        }
        // The error is within the reported bound, always; in the overall segment (2,000-row
        // windows against 20,000 reference rows) also within max(5 %, 1 % of the reference's
        // standard deviation) (docs/STATISTICS.md §16).
        c.truth(
            format!(
                "{at}.wasserstein error {} within its bound {bound}",
                w1 - want_w1
            ),
            (w1 - want_w1).abs() <= bound + 1e-12,
        );
        if !at.contains('=') {
            c.abs(
                format!("{at}.wasserstein (kll, overall)"),
                w1,
                want_w1,
                (0.05 * want_w1).max(0.01 * base.std().unwrap()),
            );
        }
        c.worst_w1 = c.worst_w1.max((w1 - want_w1).abs() / want_w1);
        c.worst_w1_bound = c.worst_w1_bound.max((w1 - want_w1).abs() / bound);
        // The same with the baseline CDF exact, as a reference profile built from raw values
        // can store it (its values rounded as sketch items are, so ties stay ties): only the
        // window's sketch error is left.
        let ref_rounded: Vec<f64> = prof.raw[col].iter().map(|x| kll_quantize(*x)).collect();
        let dx =
            numeric_drift_with_baseline_cdf(base, &CdfSample::exact(&ref_rounded), &state, edges)
                .unwrap();
        let (w1x, bx) = (dx.wasserstein.unwrap(), dx.wasserstein_error_bound.unwrap());
        c.abs(
            format!("{at}.wasserstein (exact ref, kll window)"),
            w1x,
            want_w1,
            (0.05 * want_w1).max(bx),
        );
        if (w1x - want_w1).abs() > 0.05 * want_w1 {
            c.w1_exact_ref_outside_5pct += 1;
        }
        let kr = dx.ks.unwrap();
        c.abs(
            format!("{at}.ks_stat (exact ref, kll window)"),
            kr.statistic,
            want_d,
            kr.rank_error.max(1e-12),
        );

        // From exact CDFs of the raw values: D and the Kolmogorov p to the digit.
        let (ref_cdf, cur_cdf) = (CdfSample::exact(&prof.raw[col]), CdfSample::exact(&raw));
        let kx = ks_test(&ref_cdf, &cur_cdf).unwrap();
        c.abs(format!("{at}.ks_stat (exact)"), kx.statistic, want_d, 1e-12);
        c.abs(
            format!("{at}.ks_pvalue_kolmogorov (exact)"),
            kx.pvalue,
            want_p,
            1e-9,
        );
        if want_p > 1e-300 {
            c.rel(
                format!("{at}.ks_pvalue_kolmogorov (exact, rel)"),
                kx.pvalue,
                want_p,
                1e-6,
            );
        }
        c.abs(
            format!("{at}.ks_pvalue (scipy {})", en["ks_mode"]),
            kx.pvalue,
            num(&en["ks_pvalue"]),
            0.02,
        );
        c.abs(
            format!("{at}.ks_pvalue_asymp (scipy kstwo)"),
            kx.pvalue,
            num(&en["ks_pvalue_asymp"]),
            0.02,
        );
        c.eq(
            format!("{at}.ks exact conservative"),
            kx.pvalue_conservative,
            kx.pvalue,
        );
        let wx = wasserstein(ref_cdf.cdf(), cur_cdf.cdf()).unwrap();
        c.rel(format!("{at}.wasserstein (exact)"), wx, want_w1, 1e-9);
        if col != "score" && col != "latency_ms" {
            tests.push((col.clone(), kx.pvalue));
        }
    }
    for col in categorical {
        let base = &prof.categorical[col];
        let state = fold_categorical(&cell.categorical[col], Some(base));
        let ec = &e["categorical"][col];
        let at = format!("{at}.{col}");
        check_categorical_counts(c, &at, &state, ec);
        let d = categorical_drift(base, &state).unwrap().unwrap();
        c.opt_abs(
            format!("{at}.missing_share_change"),
            d.missing_share_change,
            num(&ec["missing_share_change"]),
            1e-12,
        );
        c.truth(format!("{at}.exact"), d.exact);
        c.abs(format!("{at}.psi"), d.psi, num(&ec["psi"]), 1e-9);
        c.abs(format!("{at}.js"), d.js, num(&ec["js"]), 1e-9);
        c.abs(
            format!("{at}.hellinger"),
            d.hellinger,
            num(&ec["hellinger"]),
            1e-9,
        );
        c.abs(format!("{at}.linf"), d.linf, num(&ec["linf"]), 1e-12);
        c.rel(
            format!("{at}.chi2_stat"),
            d.chi2.statistic,
            num(&ec["chi2_stat"]),
            1e-9,
        );
        let want_p = num(&ec["chi2_pvalue"]);
        c.abs(format!("{at}.chi2_pvalue"), d.chi2.pvalue, want_p, 1e-9);
        if want_p > 0.0 {
            // Stricter than FORMULAS asks: relative accuracy down to the subnormal range.
            c.rel(
                format!("{at}.chi2_pvalue (rel)"),
                d.chi2.pvalue,
                want_p,
                1e-6,
            );
        }
        c.eq(format!("{at}.chi2_dof"), d.chi2.dof, int(&ec["chi2_dof"]));
        c.eq(
            format!("{at}.n_categories_union"),
            d.n_categories as u64,
            int(&ec["n_categories_union"]),
        );
        let unseen: Vec<String> = ec["unseen_categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        c.eq(
            format!("{at}.unseen_categories"),
            &d.unseen_categories,
            &unseen,
        );
        c.abs(
            format!("{at}.unseen_share"),
            d.unseen_share,
            num(&ec["unseen_share"]),
            1e-12,
        );
        c.abs(
            format!("{at}.unseen_share (state counter)"),
            state.unseen() as f64 / state.count() as f64,
            num(&ec["unseen_share"]),
            1e-12,
        );
        c.eq(
            format!("{at}.sizes"),
            (d.n, d.baseline_n),
            (state.count(), base.count()),
        );
        tests.push((col.clone(), d.chi2.pvalue));
    }
    check_performance(c, &format!("{at}.performance"), cell, &e["performance"]);
    tests
}

// ---------------------------------------------------------------------------------------------
// Worked cases.

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

fn check_worked_cases(c: &mut Check, wc: &Value) {
    // numeric_bins
    let nb = &wc["numeric_bins"];
    let (r, cur) = (floats(&nb["reference"]), floats(&nb["current"]));
    let b = int(&nb["B"]) as usize;
    let raw_edges = raw_quantile_edges_sorted(&sorted_finite(&r), b).unwrap();
    c.eq(
        "worked.numeric_bins.raw_edges",
        raw_edges,
        floats(&nb["raw_edges"]),
    );
    let edges = quantile_edges(&r, b).unwrap();
    c.eq(
        "worked.numeric_bins.edges",
        edges.edges().to_vec(),
        floats(&nb["edges"]),
    );
    let fold = |xs: &[f64]| {
        let mut s = NumericState::new(Some(&edges));
        for x in xs {
            s.observe(*x, Some(&edges));
        }
        s
    };
    let (rs, cs) = (fold(&r), fold(&cur));
    let want_counts = |k: &str| {
        nb[k]
            .as_array()
            .unwrap()
            .iter()
            .map(int)
            .collect::<Vec<_>>()
    };
    c.eq(
        "worked.numeric_bins.ref_counts",
        rs.bins().unwrap().counts.clone(),
        want_counts("ref_counts"),
    );
    c.eq(
        "worked.numeric_bins.cur_counts",
        cs.bins().unwrap().counts.clone(),
        want_counts("cur_counts"),
    );
    let bd = bin_drift(&rs.bins().unwrap().counts, &cs.bins().unwrap().counts)
        .unwrap()
        .unwrap();
    c.abs("worked.numeric_bins.psi", bd.psi, num(&nb["psi"]), 1e-12);
    c.abs("worked.numeric_bins.js", bd.js, num(&nb["js"]), 1e-12);
    c.abs(
        "worked.numeric_bins.hellinger",
        bd.hellinger,
        num(&nb["hellinger"]),
        1e-12,
    );
    let kx = ks_test(&CdfSample::exact(&r), &CdfSample::exact(&cur)).unwrap();
    c.abs(
        "worked.numeric_bins.ks_stat",
        kx.statistic,
        num(&nb["ks_stat"]),
        1e-12,
    );
    c.abs(
        "worked.numeric_bins.ks_pvalue_kolmogorov",
        kx.pvalue,
        num(&nb["ks_pvalue_kolmogorov"]),
        1e-9,
    );
    // Small states keep every value in the KLL: the state path is exact too.
    let ks_state = ks_test(
        &CdfSample::from_state(&rs).unwrap(),
        &CdfSample::from_state(&cs).unwrap(),
    )
    .unwrap();
    c.eq(
        "worked.numeric_bins.ks (state) is exact",
        (ks_state.statistic, ks_state.rank_error),
        (kx.statistic, 0.0),
    );
    let w = wasserstein(
        CdfSample::from_state(&rs).unwrap().cdf(),
        CdfSample::from_state(&cs).unwrap().cdf(),
    )
    .unwrap();
    c.rel(
        "worked.numeric_bins.wasserstein",
        w,
        num(&nb["wasserstein"]),
        1e-12,
    );
    c.opt_rel(
        "worked.numeric_bins.mean_ref",
        rs.mean(),
        num(&nb["mean_ref"]),
        1e-12,
    );
    c.opt_rel(
        "worked.numeric_bins.std_ref",
        rs.std(),
        num(&nb["std_ref"]),
        1e-12,
    );
    c.opt_rel(
        "worked.numeric_bins.p25_ref",
        type7_quantile(&r, 0.25),
        num(&nb["p25_ref"]),
        1e-12,
    );
    c.opt_rel(
        "worked.numeric_bins.p95_ref",
        type7_quantile(&r, 0.95),
        num(&nb["p95_ref"]),
        1e-12,
    );

    // categorical
    let cc = &wc["categorical"];
    let counts = |k: &str| -> BTreeMap<String, u64> {
        cc[k]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), int(v)))
            .collect()
    };
    let d = categorical_drift_counts(&counts("ref_counts"), &counts("cur_counts"))
        .unwrap()
        .unwrap();
    c.eq(
        "worked.categorical.n_categories_union",
        d.n_categories as u64,
        int(&cc["n_categories_union"]),
    );
    c.rel(
        "worked.categorical.chi2_stat",
        d.chi2.statistic,
        num(&cc["chi2_stat"]),
        1e-12,
    );
    c.rel(
        "worked.categorical.chi2_pvalue",
        d.chi2.pvalue,
        num(&cc["chi2_pvalue"]),
        1e-9,
    );
    c.eq(
        "worked.categorical.chi2_dof",
        d.chi2.dof,
        int(&cc["chi2_dof"]),
    );
    c.abs("worked.categorical.psi", d.psi, num(&cc["psi"]), 1e-12);
    c.abs("worked.categorical.js", d.js, num(&cc["js"]), 1e-12);
    c.abs(
        "worked.categorical.hellinger",
        d.hellinger,
        num(&cc["hellinger"]),
        1e-12,
    );
    c.abs("worked.categorical.linf", d.linf, num(&cc["linf"]), 1e-12);
    c.eq(
        "worked.categorical.unseen_categories",
        d.unseen_categories,
        vec!["d".to_string()],
    );
    c.abs(
        "worked.categorical.unseen_share",
        d.unseen_share,
        num(&cc["unseen_share"]),
        1e-12,
    );

    // binary
    let bc = &wc["binary"];
    let mut perf = PerformanceState::default();
    let scores = floats(&bc["scores"]);
    let labels: Vec<u64> = bc["labels"].as_array().unwrap().iter().map(int).collect();
    for (s, y) in scores.iter().zip(&labels) {
        perf.observe_binary(*s, *y == 1).unwrap();
    }
    let m = binary_metrics(perf.binary.as_ref().unwrap(), scores.len() as u64);
    // Every score has its own 1/1000 bin here, so the histogram AUC is exact.
    check_binary(c, "worked.binary", &m, bc, 1e-12);

    // regression
    let rc = &wc["regression"];
    let mut perf = PerformanceState::default();
    for (p, y) in floats(&rc["y_pred"]).iter().zip(floats(&rc["y_true"])) {
        perf.observe_regression(*p, y).unwrap();
    }
    let rm = regression_metrics(perf.regression.as_ref().unwrap(), int(&rc["n"]));
    c.eq("worked.regression.n", rm.n_labeled, int(&rc["n"]));
    c.eq("worked.regression.n_mape", rm.n_mape, int(&rc["n_mape"]));
    c.opt_rel("worked.regression.rmse", rm.rmse, num(&rc["rmse"]), 1e-12);
    c.opt_rel("worked.regression.mae", rm.mae, num(&rc["mae"]), 1e-12);
    c.opt_rel("worked.regression.mape", rm.mape, num(&rc["mape"]), 1e-12);

    // ranking
    let kc = &wc["ranking"];
    let outcomes: HashMap<&str, &Value> = kc["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["request_id"].as_str().unwrap(), &l["outcomes"]))
        .collect();
    let mut perf = PerformanceState::default();
    let inferences = kc["inferences"].as_array().unwrap();
    for inf in inferences {
        let id = inf["request_id"].as_str().unwrap();
        let Some(out) = outcomes.get(id) else {
            continue;
        };
        let rel = out["relevance"].as_object().unwrap();
        let served: Vec<f64> = inf["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| rel.get(it["id"].as_str().unwrap()).map_or(0.0, num))
            .collect();
        let judged: Vec<f64> = rel.values().map(num).collect();
        let mut ideal = judged.clone();
        ideal.sort_by(|a, b| b.total_cmp(a));
        let want = &kc["per_request"][id];
        for k in [3usize, 5] {
            let at = format!("worked.ranking.{id}@{k}");
            c.rel(
                format!("{at}.dcg"),
                dcg_at_k(&served, k),
                num(&want[format!("dcg_at_{k}")]),
                1e-12,
            );
            c.rel(
                format!("{at}.idcg"),
                dcg_at_k(&ideal, k),
                num(&want[format!("idcg_at_{k}")]),
                1e-12,
            );
            c.rel(
                format!("{at}.ndcg"),
                ndcg_at_k(&served, &judged, k),
                num(&want[format!("ndcg_at_{k}")]),
                1e-12,
            );
        }
        perf.observe_ranking(
            &ndcg_all(&served, &judged),
            num(&out["click"]),
            num(&out["purchase"]),
            num(&out["revenue"]),
        );
    }
    let rk = ranking_metrics(perf.ranking.as_ref().unwrap(), inferences.len() as u64);
    c.eq(
        "worked.ranking.n_predictions",
        rk.n_rows,
        int(&kc["n_predictions"]),
    );
    c.eq(
        "worked.ranking.impressions",
        rk.impressions,
        int(&kc["impressions"]),
    );
    c.eq(
        "worked.ranking.n_labeled",
        perf.n_labeled(),
        int(&kc["n_labeled"]),
    );
    c.opt_abs(
        "worked.ranking.label_coverage",
        rk.label_coverage,
        num(&kc["label_coverage"]),
        1e-12,
    );
    c.opt_rel(
        "worked.ranking.ndcg_at_3",
        rk.ndcg_at(3),
        num(&kc["ndcg_at_3"]),
        1e-12,
    );
    c.opt_rel(
        "worked.ranking.ndcg_at_5",
        rk.ndcg_at(5),
        num(&kc["ndcg_at_5"]),
        1e-12,
    );
    c.opt_rel("worked.ranking.ctr", rk.ctr, num(&kc["ctr"]), 1e-12);
    c.opt_rel("worked.ranking.cvr", rk.cvr, num(&kc["cvr"]), 1e-12);
    c.opt_rel("worked.ranking.rpm", rk.rpm, num(&kc["rpm"]), 1e-12);
    let rp = perf.ranking.as_ref().unwrap();
    c.rel(
        "worked.ranking.clicks",
        rp.clicks,
        num(&kc["clicks"]),
        1e-12,
    );
    c.rel(
        "worked.ranking.purchases",
        rp.purchases,
        num(&kc["purchases"]),
        1e-12,
    );
    c.rel(
        "worked.ranking.revenue",
        rp.revenue,
        num(&kc["revenue"]),
        1e-12,
    );

    // benjamini_hochberg
    let bh = &wc["benjamini_hochberg"];
    let adj = benjamini_hochberg(&floats(&bh["pvalues"])).unwrap();
    for (i, (g, w)) in adj.iter().zip(floats(&bh["adjusted"])).enumerate() {
        c.rel(format!("worked.bh.adjusted[{i}]"), *g, w, 1e-12);
    }
    let want_rej: Vec<bool> = bh["rejected_at_0_05"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    c.eq("worked.bh.rejected", rejected(&adj, 0.05), want_rej);

    // kolmogorov_q
    for (lam, want) in wc["kolmogorov_q"].as_object().unwrap() {
        let lam: f64 = lam.parse().unwrap();
        c.abs(
            format!("worked.kolmogorov_q({lam})"),
            kolmogorov_q(lam),
            num(want),
            1e-9,
        );
        c.rel(
            format!("worked.kolmogorov_q({lam}) rel"),
            kolmogorov_q(lam),
            num(want),
            1e-9,
        );
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn golden_expected_numbers() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}expected.json")).unwrap())
            .unwrap();
    let params = &expected["meta"]["params"];
    let t0 = Timestamp::parse_rfc3339(params["t0"].as_str().unwrap())
        .unwrap()
        .millis();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let mut numeric = strings(&params["numeric"]);
    numeric.extend(["score".to_string(), "latency_ms".to_string()]);
    let categorical = strings(&params["categorical"]);
    let segment_keys = strings(&params["segment_keys"]);
    let n_windows = int(&params["n_windows"]) as usize;

    let labels: HashMap<String, (bool, i64)> = read_jsonl("labels.jsonl")
        .iter()
        .map(|l| {
            let ts = Timestamp::parse_rfc3339(l["ts"].as_str().unwrap())
                .unwrap()
                .millis();
            (
                l["request_id"].as_str().unwrap().to_string(),
                (int(&l["label"]) == 1, ts),
            )
        })
        .collect();
    let reference: Vec<Row> = read_jsonl("reference.jsonl")
        .iter()
        .map(|v| parse_row(v, t0, Some(int(&v["label"]) == 1)))
        .collect();
    let windows: Vec<Row> = read_jsonl("windows.jsonl")
        .iter()
        .map(|v| {
            let label = labels.get(v["request_id"].as_str().unwrap()).map(|l| l.0);
            parse_row(v, t0, label)
        })
        .collect();
    assert!(
        reference.iter().all(|r| r.window.is_none()),
        "reference rows precede T0"
    );

    let mut c = Check::default();
    // Cells: the overall segment, then every segment value the expected file lists.
    let mut cells: Vec<(String, Option<(String, String)>)> = vec![("all".into(), None)];
    for k in &segment_keys {
        for v in expected["reference"]["by_segment"][k]
            .as_object()
            .unwrap()
            .keys()
        {
            cells.push((format!("{k}={v}"), Some((k.clone(), v.clone()))));
        }
    }
    let in_cell = |r: &Row, seg: &Option<(String, String)>| match seg {
        None => true,
        Some((k, v)) => r.segments.get(k) == Some(v),
    };
    let node = |root: &Value, seg: &Option<(String, String)>| -> Value {
        match seg {
            None => root.clone(),
            Some((k, v)) => root["by_segment"][k][v].clone(),
        }
    };

    for (name, seg) in &cells {
        let ref_cell = build_cell(
            reference.iter().filter(|r| in_cell(r, seg)),
            &numeric,
            &categorical,
        );
        let ref_node = node(&expected["reference"], seg);
        c.eq(
            format!("reference[{name}].n_rows"),
            ref_cell.rows,
            int(&ref_node["n_rows"]),
        );
        let prof = check_reference(
            &mut c,
            &format!("reference[{name}]"),
            &ref_cell,
            &ref_node,
            &numeric,
            &categorical,
        );

        for w in 0..n_windows {
            let win_root = &expected["windows"][w];
            let cell = build_cell(
                windows
                    .iter()
                    .filter(|r| r.window == Some(w) && in_cell(r, seg)),
                &numeric,
                &categorical,
            );
            let e = node(win_root, seg);
            let at = format!("window[{w}][{name}]");
            c.eq(format!("{at}.n_rows"), cell.rows, int(&e["n_rows"]));
            let tests = check_window_cell(&mut c, &at, &cell, &prof, &e, &numeric, &categorical);
            if seg.is_none() {
                // Labels that arrived before the window closed.
                let end = t0 + (w as i64 + 1) * WINDOW_MS;
                let arrived = windows
                    .iter()
                    .filter(|r| r.window == Some(w))
                    .filter(|r| labels.get(&r.id).is_some_and(|(_, ts)| *ts < end))
                    .count();
                c.eq(
                    format!("{at}.labels_arrived_by_window_end"),
                    arrived as u64,
                    int(&win_root["labels_arrived_by_window_end"]),
                );
                check_bh(&mut c, &at, &tests, &win_root["bh_features"]);
            }
        }
    }
    check_worked_cases(&mut c, &expected["worked_cases"]);

    eprintln!(
        "golden: {} values compared, {} failures\n  worst |D_kll − D| = {:.4} (tolerance {:.4})\n  \
         worst KLL quantile rank offset = {:.2} of the ±0.01 band\n  \
         W1 from sketches: {}/{} outside 5 %, worst rel err {:.3}, worst err / bound {:.3}; \
         with an exact reference CDF {}/{} outside 5 %\n  KS D exact from sketches in {} cells",
        c.compared,
        c.failures.len(),
        c.worst_ks,
        2.0 * KLL_EPS,
        c.worst_band,
        c.w1_outside_5pct,
        c.w1_total,
        c.worst_w1,
        c.worst_w1_bound,
        c.w1_exact_ref_outside_5pct,
        c.w1_total,
        c.worst_ks_exact,
    );
    for f in c.failures.iter().take(60) {
        eprintln!("  FAIL {f}");
    }
    assert!(
        c.failures.is_empty(),
        "{} golden mismatches",
        c.failures.len()
    );
    assert!(c.compared > 5_000, "only {} values compared", c.compared);
}

fn check_bh(c: &mut Check, at: &str, tests: &[(String, f64)], e: &Value) {
    let obj = e.as_object().unwrap();
    c.eq(format!("{at}.bh family size"), tests.len(), obj.len());
    // BH on the golden input p-values reproduces p_bh; BH on ours stays within 1e-9.
    let names: Vec<&String> = obj.keys().collect();
    let golden_p: Vec<f64> = names.iter().map(|k| num(&obj[*k]["p"])).collect();
    let adj = benjamini_hochberg(&golden_p).unwrap();
    let ours: HashMap<&str, f64> = tests.iter().map(|(k, p)| (k.as_str(), *p)).collect();
    let our_p: Vec<f64> = names.iter().map(|k| ours[k.as_str()]).collect();
    let our_adj = benjamini_hochberg(&our_p).unwrap();
    for (i, k) in names.iter().enumerate() {
        let want = num(&obj[*k]["p_bh"]);
        c.rel(format!("{at}.bh_features.{k}.p_bh"), adj[i], want, 1e-12);
        c.abs(
            format!("{at}.bh_features.{k}.p (ours)"),
            our_p[i],
            golden_p[i],
            1e-9,
        );
        c.abs(
            format!("{at}.bh_features.{k}.p_bh (ours)"),
            our_adj[i],
            want,
            1e-9,
        );
    }
}
