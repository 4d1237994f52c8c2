//! The whole open golden scenario (`tests/data/golden/`) through the CLI, as a user runs it
//! (README "Using it"): `driftdb serve` on a fresh data directory, then `model create`,
//! `reference load`, `ingest`, `labels`, and `driftdb query --json` for every number of
//! `expected.json` that DriftQL can ask for — per window (one `step 15m` query over the eight
//! windows, rows matched by `time`), per feature, and per segment (`by channel, country`,
//! matched against `by_segment`) — within docs/STATISTICS.md §16's tolerances for a sketch
//! implementation. Then `explain(fraud)` over the drifted and the baseline windows against
//! docs/STATISTICS.md §15.
//!
//! Every comparison is counted and the test fails below a floor, so it cannot pass by
//! skipping; all mismatches are collected and printed before the test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use driftdb_engine::time::Timestamp;
use serde_json::Value;

/// The project root: client commands run from here and name the data as `tests/data/golden/…`,
/// exactly as README "Using it" does.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
const GOLDEN: &str = "tests/data/golden/";

/// KLL k=200 normalised rank error per side (DataSketches), as in `engine/tests/golden.rs`.
const KLL_EPS: f64 = 0.013_3;
/// Summary quantiles of `expected.json` and their q.
const QUANTILES: [(&str, &str); 7] = [
    ("p1", "0.01"),
    ("p5", "0.05"),
    ("p25", "0.25"),
    ("p50", "0.5"),
    ("p75", "0.75"),
    ("p95", "0.95"),
    ("p99", "0.99"),
];
const SEGMENT_KEYS: [&str; 2] = ["channel", "country"];
/// docs/STATISTICS.md §15.
const DRIFTED: [&str; 6] = [
    "risk",
    "merchant_cat",
    "amount",
    "is_new_customer",
    "session_s",
    "$score",
];
const UNDRIFTED: [&str; 3] = ["age", "balance", "browser"];
/// Fewest comparisons the run must make (it makes about 62,000; see the report it prints).
const MIN_COMPARISONS: usize = 55_000;

// ---------------------------------------------------------------------------------------------
// The server and the CLI.

/// Where the CLI finds the server: its URL and the API key `serve` wrote to
/// `<data>/admin.key` on its first start (README "Using it").
struct Conn {
    url: String,
    key: String,
}

/// The server (kept alive while the test runs) and how the CLI reaches it.
struct Server {
    conn: Conn,
    _served: super::common::GoldenServer,
}

fn start_server() -> Server {
    let served = super::common::golden_server();
    Server {
        conn: Conn {
            url: served.grpc.clone(),
            key: served.key.clone(),
        },
        _served: served,
    }
}

/// Runs `driftdb <args> --server URL` from the project root, the key in `DRIFTDB_API_KEY`.
fn driftdb(conn: &Conn, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(args)
        .args(["--server", &conn.url])
        .current_dir(root())
        .env_remove("DRIFTDB_SERVER")
        .env("DRIFTDB_API_KEY", &conn.key)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a client command that must succeed; returns its stdout.
fn run_ok(url: &Conn, args: &[&str]) -> String {
    let out = driftdb(url, args);
    assert!(
        out.status.success(),
        "driftdb {args:?} failed: {}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// One `driftdb query --json` run.
struct QueryOut {
    query: String,
    rows: Result<Vec<Value>, String>,
    stderr: String,
}

/// Runs every query through the CLI, a few at a time.
fn run_queries(url: &Conn, queries: Vec<String>) -> Vec<QueryOut> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<QueryOut>>> =
        Mutex::new((0..queries.len()).map(|_| None).collect());
    let workers = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .clamp(2, 8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(q) = queries.get(i) else { break };
                    let out = driftdb(url, &["query", "--json", q]);
                    let rows = if out.status.success() {
                        serde_json::from_slice::<Value>(&out.stdout)
                            .map_err(|e| format!("stdout is not JSON ({e}): {}", text(&out.stdout)))
                            .and_then(|v| match v {
                                Value::Array(a) => Ok(a),
                                other => Err(format!("not a JSON array: {other}")),
                            })
                    } else {
                        Err(format!("exit {}: {}", out.status, text(&out.stderr)))
                    };
                    results.lock().unwrap()[i] = Some(QueryOut {
                        query: q.clone(),
                        rows,
                        stderr: text(&out.stderr),
                    });
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Comparison bookkeeping.

#[derive(Default)]
struct Check {
    /// Comparisons made, per metric.
    by_metric: BTreeMap<String, usize>,
    failures: Vec<String>,
    /// Findings inside the allowed tolerance that are still worth printing.
    notes: Vec<String>,
    worst_ks: f64,
    w1_total: usize,
    w1_outside_5pct: usize,
    w1_outside_20pct: usize,
    worst_w1: f64,
    worst_w1_bound: f64,
}

impl Check {
    fn count(&mut self, metric: &str) {
        *self.by_metric.entry(metric.to_string()).or_default() += 1;
    }
    fn total(&self) -> usize {
        self.by_metric.values().sum()
    }
    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }
    /// `|got − want| ≤ tol`, failing on NaN and on a null `got`.
    fn abs(&mut self, metric: &str, what: impl Display, got: Option<f64>, want: f64, tol: f64) {
        self.count(metric);
        match got {
            Some(g) if (g - want).abs() <= tol => {}
            _ => self.fail(format!(
                "{what}: got {got:?}, want {want:e} (abs tol {tol:e})"
            )),
        }
    }
    /// `|got − want| ≤ tol·|want|`.
    fn rel(&mut self, metric: &str, what: impl Display, got: Option<f64>, want: f64, tol: f64) {
        self.count(metric);
        match got {
            Some(g) if (g - want).abs() <= tol * want.abs() => {}
            _ => self.fail(format!(
                "{what}: got {got:?}, want {want:e} (rel tol {tol:e})"
            )),
        }
    }
    fn eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        metric: &str,
        what: impl Display,
        got: T,
        want: T,
    ) {
        self.count(metric);
        if got != want {
            self.fail(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    fn truth(&mut self, metric: &str, what: impl Display, ok: bool) {
        self.count(metric);
        if !ok {
            self.fail(format!("{what}: does not hold"));
        }
    }
}

/// A number of `expected.json` (`null` is NaN).
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

/// A count column of a result row (`n`, `baseline_n`); the JSON carries it as a number.
fn count_cell(v: &Value) -> Option<u64> {
    let x = v.as_f64()?;
    (x >= 0.0 && x.fract() == 0.0).then_some(x as u64)
}

// ---------------------------------------------------------------------------------------------
// What is asked, and where its expected value lives.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    /// `fraud.*`: the named features the metric applies to.
    Named,
    /// `fraud.$score` (its distribution).
    Score,
    /// `fraud.$latency`.
    Latency,
    /// `fraud`: labelled performance.
    Model,
    /// `fraud.$label`: the joined labels, bucketed by their prediction's window.
    Label,
}

impl Target {
    fn text(self) -> &'static str {
        match self {
            Target::Named => "fraud.*",
            Target::Score => "fraud.$score",
            Target::Latency => "fraud.$latency",
            Target::Model => "fraud",
            Target::Label => "fraud.$label",
        }
    }
}

/// One DriftQL metric to ask for.
struct Ask {
    /// The metric as written in the call (`psi`, `quantile(0.01, …)` is `quantile` with `q`).
    metric: &'static str,
    /// `quantile`'s q as written.
    q: Option<&'static str>,
    /// Whether it applies to numeric and/or categorical named features.
    numeric: bool,
    categorical: bool,
    /// Whether `$score` / `$latency` are asked too.
    score_latency: bool,
    /// Whether `$label` is asked too (`count`, `mean`: n_labeled and the positive rate).
    label: bool,
    performance: bool,
}

const fn ask(metric: &'static str, numeric: bool, categorical: bool) -> Ask {
    Ask {
        metric,
        q: None,
        numeric,
        categorical,
        score_latency: numeric,
        label: false,
        performance: false,
    }
}

const fn perf(metric: &'static str) -> Ask {
    Ask {
        metric,
        q: None,
        numeric: false,
        categorical: false,
        score_latency: false,
        label: false,
        performance: true,
    }
}

fn asks() -> Vec<Ask> {
    let mut v = vec![
        ask("psi", true, true),
        ask("js", true, true),
        ask("hellinger", true, true),
        ask("psi50", true, false),
        ask("js50", true, false),
        ask("hellinger50", true, false),
        ask("ks", true, false),
        ask("wasserstein", true, false),
        ask("mean_shift", true, false),
        ask("missing_rate_change", true, true),
        ask("chi2", false, true),
        ask("linf", false, true),
        ask("unseen_share", false, true),
        Ask {
            label: true,
            ..ask("count", true, true)
        },
        ask("rows", true, true),
        ask("missing_rate", true, true),
        ask("distinct", false, true),
        Ask {
            label: true,
            ..ask("mean", true, false)
        },
        ask("std", true, false),
        ask("min", true, false),
        ask("max", true, false),
    ];
    for (_, q) in QUANTILES {
        v.push(Ask {
            q: Some(q),
            ..ask("quantile", true, false)
        });
    }
    for m in [
        "auc",
        "ece",
        "logloss",
        "brier",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "positive_rate",
        "label_coverage",
    ] {
        v.push(perf(m));
    }
    v
}

/// The metric column's label for an ask (`quantile(0.01)`).
fn label(a: &Ask) -> String {
    match a.q {
        Some(q) => format!("quantile({})", q.parse::<f64>().unwrap()),
        None => a.metric.to_string(),
    }
}

fn call(a: &Ask, t: Target) -> String {
    match a.q {
        Some(q) => format!("quantile({q}, {})", t.text()),
        None => format!("{}({})", a.metric, t.text()),
    }
}

fn targets(a: &Ask) -> Vec<Target> {
    if a.performance {
        return vec![Target::Model];
    }
    let mut t = vec![Target::Named];
    if a.score_latency {
        t.extend([Target::Score, Target::Latency]);
    }
    if a.label {
        t.push(Target::Label);
    }
    t
}

/// The golden scenario's layout: windows, features and the expected tree.
struct Golden {
    expected: Value,
    /// Window start (ms) → window index.
    starts: BTreeMap<i64, usize>,
    numeric: Vec<String>,
    categorical: Vec<String>,
    /// (key, value) of every segment `expected.json` lists.
    segments: Vec<(String, String)>,
}

impl Golden {
    fn load() -> Golden {
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join(GOLDEN).join("expected.json")).unwrap(),
        )
        .unwrap();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let params = &expected["meta"]["params"];
        let numeric = strings(&params["numeric"]);
        let categorical = strings(&params["categorical"]);
        assert_eq!(strings(&params["segment_keys"]), SEGMENT_KEYS);
        let starts = expected["windows"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, w)| {
                assert_eq!(int(&w["window"]) as usize, i);
                (parse_ts(w["start"].as_str().unwrap()), i)
            })
            .collect();
        let mut segments = Vec::new();
        for k in SEGMENT_KEYS {
            for v in expected["reference"]["by_segment"][k]
                .as_object()
                .unwrap()
                .keys()
            {
                segments.push((k.to_string(), v.clone()));
            }
        }
        Golden {
            expected,
            starts,
            numeric,
            categorical,
            segments,
        }
    }

    fn windows(&self) -> &[Value] {
        self.expected["windows"].as_array().unwrap()
    }

    /// `from <window first's start> to <window last's end>`.
    fn range(&self, first: usize, last: usize) -> String {
        let w = self.windows();
        format!(
            "from {} to {}",
            w[first]["start"].as_str().unwrap(),
            w[last]["end"].as_str().unwrap()
        )
    }

    /// The expected cell of window `w` (or the reference, `w = None`) and segment `seg`.
    fn cell(&self, w: Option<usize>, seg: Option<&(String, String)>) -> &Value {
        let root = match w {
            Some(w) => &self.windows()[w],
            None => &self.expected["reference"],
        };
        match seg {
            None => root,
            Some((k, v)) => &root["by_segment"][k][v],
        }
    }

    /// The node of `feature` in a cell, and whether it is categorical.
    fn feature<'a>(&self, cell: &'a Value, feature: &str) -> (&'a Value, bool) {
        match feature {
            "$score" => (&cell["score"], false),
            "$latency" => (&cell["latency_ms"], false),
            f if self.numeric.iter().any(|n| n == f) => (&cell["numeric"][f], false),
            f if self.categorical.iter().any(|n| n == f) => (&cell["categorical"][f], true),
            f => panic!("unknown feature {f}"),
        }
    }

    /// The features a query over `target` must return rows for.
    fn features(&self, a: &Ask, t: Target) -> Vec<String> {
        match t {
            Target::Named => {
                let mut f = Vec::new();
                if a.numeric {
                    f.extend(self.numeric.iter().cloned());
                }
                if a.categorical {
                    f.extend(self.categorical.iter().cloned());
                }
                f
            }
            Target::Score | Target::Model => vec!["$score".into()],
            Target::Latency => vec!["$latency".into()],
            Target::Label => vec!["$label".into()],
        }
    }
}

fn parse_ts(s: &str) -> i64 {
    Timestamp::parse_rfc3339(s).unwrap().millis()
}

// ---------------------------------------------------------------------------------------------
// The raw golden rows, for the Wasserstein sketch bound.

/// Cell key: window (`None` for the reference), segment (`None` for all), series name as
/// DriftQL prints it (`$score`, `$latency`).
type CellKey = (Option<usize>, Option<(String, String)>, String);

/// The present numeric values of every (window or reference, segment, series) cell.
struct Raw(BTreeMap<CellKey, Vec<f64>>);

impl Raw {
    fn load(g: &Golden) -> Raw {
        let t0 = *g.starts.keys().next().unwrap();
        let width = parse_ts(g.windows()[0]["end"].as_str().unwrap()) - t0;
        let mut cells: BTreeMap<CellKey, Vec<f64>> = BTreeMap::new();
        for file in ["reference.jsonl", "windows.jsonl"] {
            let text = std::fs::read_to_string(root().join(GOLDEN).join(file)).unwrap();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).unwrap();
                let ts = parse_ts(v["ts"].as_str().unwrap());
                let window = (ts >= t0).then(|| ((ts - t0) / width) as usize);
                let mut segs = vec![None];
                for k in SEGMENT_KEYS {
                    let value = v["segments"][k].as_str().unwrap().to_string();
                    segs.push(Some((k.to_string(), value)));
                }
                let mut values = vec![
                    ("$score".to_string(), v["score"].as_f64()),
                    ("$latency".to_string(), v["latency_ms"].as_f64()),
                ];
                for col in &g.numeric {
                    values.push((col.clone(), v["features"][col].as_f64()));
                }
                for (name, x) in values {
                    let Some(x) = x else { continue };
                    for seg in &segs {
                        cells
                            .entry((window, seg.clone(), name.clone()))
                            .or_default()
                            .push(x);
                    }
                }
            }
        }
        Raw(cells)
    }

    /// The present values of a series in a window (or the reference) and segment.
    fn values(&self, w: Option<usize>, seg: Option<&(String, String)>, feature: &str) -> &[f64] {
        self.0
            .get(&(w, seg.cloned(), feature.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// The W1 error bound of two KLL CDFs calibrated to their exact counts over the segment's
    /// 50 reference bins (`CdfSample::from_state_binned`), summed over both sides.
    fn w1_bound(&self, g: &Golden, at: &At<'_>) -> f64 {
        let (er, _) = g.feature(g.cell(None, at.seg), at.feature);
        let edges: Vec<f64> = er["edges_q50"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect();
        let side = |values: &[f64]| -> f64 {
            if values.is_empty() {
                return 0.0;
            }
            let n = values.len() as f64;
            let mut counts = vec![0u64; edges.len() + 1];
            for x in values {
                counts[edges.partition_point(|e| e <= x)] += 1;
            }
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut bound = 0.0;
            for (j, c) in counts.iter().enumerate() {
                let left = if j == 0 { lo } else { edges[j - 1].max(lo) };
                let right = if j == edges.len() {
                    hi
                } else {
                    edges[j].min(hi)
                };
                if right > left {
                    bound += KLL_EPS.min(*c as f64 / n) * (right - left);
                }
            }
            // Rounding sketch items to 16 significand bits moves each by at most this much.
            bound += lo.abs().max(hi.abs()) * driftdb_engine::sketch::kll::KLL_QUANTIZATION_ERROR;
            bound
        };
        side(self.values(None, at.seg, at.feature))
            + side(self.values(Some(at.w), at.seg, at.feature))
    }
}

// ---------------------------------------------------------------------------------------------
// Checking one result row.

/// Where a result row sits: window, feature, segment.
struct At<'a> {
    w: usize,
    feature: &'a str,
    seg: Option<&'a (String, String)>,
}

impl Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seg = self
            .seg
            .map_or("all".to_string(), |(k, v)| format!("{k}={v}"));
        write!(f, "window[{}][{seg}].{}", self.w, self.feature)
    }
}

fn check_row(c: &mut Check, g: &Golden, raw: &Raw, a: &Ask, at: &At<'_>, query: &str, row: &Value) {
    let metric = label(a);
    let what = format!("{at} {metric} (query `{query}`)");
    let cell = g.cell(Some(at.w), at.seg);
    let ref_cell = g.cell(None, at.seg);
    let value = row["value"].as_f64();
    let p = row.get("p").and_then(Value::as_f64);
    let n = count_cell(&row["n"]);
    let base_n = count_cell(&row["baseline_n"]);

    if at.feature == "$label" {
        // The labels joined to each window's predictions: n_labeled of them, with mean equal
        // to the positive rate; the baseline is the reference's inline labels.
        let e = &cell["performance"];
        c.eq(&metric, format!("{what} n"), n, Some(int(&e["n_labeled"])));
        c.eq(
            &metric,
            format!("{what} baseline_n"),
            base_n,
            Some(int(&ref_cell["performance"]["n_labeled"])),
        );
        match a.metric {
            "count" => c.eq(&metric, &what, value, Some(num(&e["n_labeled"]))),
            "mean" => c.abs(&metric, &what, value, num(&e["positive_rate"]), 1e-12),
            m => panic!("no expected $label value for {m}"),
        }
        return;
    }
    if a.performance {
        let e = &cell["performance"];
        // `n` is the labelled count. expected.json's performance block uses every label in
        // labels.jsonl (docs/STATISTICS.md §0: "the state after all labels have arrived"), not
        // `labels_arrived_by_window_end`; this test loads all labels first, so the two agree.
        c.eq(&metric, format!("{what} n"), n, Some(int(&e["n_labeled"])));
        c.eq(
            &metric,
            format!("{what} baseline_n"),
            base_n,
            Some(int(&ref_cell["performance"]["n_labeled"])),
        );
        let (field, tol, relative) = match a.metric {
            // AUC from the 1,000-bin score histogram: 1e-3 (docs/STATISTICS.md §16).
            "auc" => ("roc_auc", 1e-3, false),
            "ece" => ("ece10", 1e-12, false),
            "logloss" => ("log_loss", 1e-12, true),
            "brier" => ("brier", 1e-12, false),
            "accuracy" => ("accuracy_at_0_5", 1e-12, false),
            "precision" => ("precision_at_0_5", 1e-12, false),
            "recall" => ("recall_at_0_5", 1e-12, false),
            "f1" => ("f1_at_0_5", 1e-12, false),
            "positive_rate" => ("positive_rate", 1e-12, false),
            "label_coverage" => ("label_coverage", 1e-12, false),
            m => panic!("no expected field for {m}"),
        };
        let want = num(&e[field]);
        if want.is_nan() {
            c.eq(&metric, &what, value, None);
        } else if relative {
            c.rel(&metric, &what, value, want, tol);
        } else {
            c.abs(&metric, &what, value, want, tol);
        }
        return;
    }

    let (e, categorical) = g.feature(cell, at.feature);
    let (er, _) = g.feature(ref_cell, at.feature);
    // `n` is the current non-null count, `baseline_n` the reference's (README of the set).
    c.eq(&metric, format!("{what} n"), n, Some(int(&e["count"])));
    c.eq(
        &metric,
        format!("{what} baseline_n"),
        base_n,
        Some(int(&er["count"])),
    );
    let field = |numeric: &str, cat: &str| {
        if categorical {
            num(&e[cat])
        } else {
            num(&e[numeric])
        }
    };
    match a.metric {
        // Exact reference edges: the bin counts are exact, so 1e-9 (docs/STATISTICS.md §16).
        "psi" => c.abs(&metric, &what, value, field("psi_q10", "psi"), 1e-9),
        "js" => c.abs(&metric, &what, value, field("js_q10", "js"), 1e-9),
        "hellinger" => c.abs(
            &metric,
            &what,
            value,
            field("hellinger_q10", "hellinger"),
            1e-9,
        ),
        "psi50" => c.abs(&metric, &what, value, num(&e["psi_q50"]), 1e-9),
        "js50" => c.abs(&metric, &what, value, num(&e["js_q50"]), 1e-9),
        "hellinger50" => c.abs(&metric, &what, value, num(&e["hellinger_q50"]), 1e-9),
        "missing_rate_change" => c.abs(
            &metric,
            &what,
            value,
            num(&e["missing_share_change"]),
            1e-12,
        ),
        "ks" => {
            // D from KLL sketches: within two rank errors. The p-value is the sketch-aware
            // conservative one: never below the exact (Kolmogorov) p when D is within the
            // rank error of the exact D.
            let want_d = num(&e["ks_stat"]);
            let want_p = num(&e["ks_pvalue_kolmogorov"]);
            c.abs(&metric, &what, value, want_d, 2.0 * KLL_EPS);
            if let Some(d) = value {
                c.worst_ks = c.worst_ks.max((d - want_d).abs());
                if (d - want_d).abs() <= KLL_EPS {
                    c.truth(
                        "ks p",
                        format!("{what} p {p:?} >= exact {want_p:e} (conservative)"),
                        p.is_some_and(|p| p >= want_p - 1e-12),
                    );
                }
            }
            c.truth(
                "ks p",
                format!("{what} p {p:?} in [0, 1]"),
                p.is_some_and(|p| (0.0..=1.0).contains(&p)),
            );
        }
        "wasserstein" => {
            // docs/STATISTICS.md §16 asks 5 % from sketches, but W1 from KLL k=200 sketches is known not
            // to meet it where W1 sits at the level of the sketch noise (undrifted cells):
            // engine/tests/golden.rs checks it against max(5 %, the sketch's own error bound)
            // (`NumericDrift::wasserstein_error_bound`) and reports ~40 % of the cells outside
            // 5 %, the worst ~80 % off. DriftQL does not print that bound, so this test
            // recomputes it from the raw golden rows, as `CdfSample::from_state_binned` defines
            // it for each side (reference and window): Σ_j min(ε, p_j)·width_j over the 50
            // reference bins clipped to [min, max], with ε = 0.0133. Cells outside 5 % are
            // printed as notes.
            let want = num(&e["wasserstein"]);
            let bound = raw.w1_bound(g, at);
            c.abs(
                &metric,
                format!("{what} (sketch bound {bound:.4})"),
                value,
                want,
                (0.05 * want).max(bound),
            );
            if let Some(w1) = value {
                let err = (w1 - want).abs();
                c.w1_total += 1;
                c.worst_w1 = c.worst_w1.max(err / want);
                c.worst_w1_bound = c.worst_w1_bound.max(err / bound);
                if err > 0.05 * want {
                    c.w1_outside_5pct += 1;
                    if err > 0.2 * want {
                        c.w1_outside_20pct += 1;
                    }
                    c.notes.push(format!(
                        "{at} wasserstein {w1:.6} vs {want:.6}: {:.1} % off (> 5 %), \
                         error {:.2} of the sketch bound {bound:.4}",
                        100.0 * err / want,
                        err / bound
                    ));
                }
            }
        }
        "mean_shift" => {
            let (m, mr) = (num(&e["mean"]), num(&er["mean"]));
            c.abs(&metric, &what, value, m - mr, 1e-9 * (m.abs() + mr.abs()));
        }
        "chi2" => {
            // Exact counts: statistic 1e-9 relative, p 1e-9 absolute.
            c.rel(&metric, &what, value, num(&e["chi2_stat"]), 1e-9);
            c.abs(
                "chi2 p",
                format!("{what} p"),
                p,
                num(&e["chi2_pvalue"]),
                1e-9,
            );
        }
        "linf" => c.abs(&metric, &what, value, num(&e["linf"]), 1e-12),
        "unseen_share" => c.abs(&metric, &what, value, num(&e["unseen_share"]), 1e-12),
        "count" => c.eq(&metric, &what, value, Some(num(&e["count"]))),
        "rows" => c.eq(&metric, &what, value, Some(num(&e["count_total"]))),
        "missing_rate" => c.abs(&metric, &what, value, num(&e["missing_share"]), 1e-12),
        "distinct" => c.eq(&metric, &what, value, Some(num(&e["n_distinct"]))),
        "mean" => c.rel(&metric, &what, value, num(&e["mean"]), 1e-9),
        "std" => c.rel(&metric, &what, value, num(&e["std"]), 1e-9),
        "min" => c.eq(&metric, &what, value, Some(num(&e["min"]))),
        "max" => c.eq(&metric, &what, value, Some(num(&e["max"]))),
        "quantile" => {
            // From the KLL sketch: inside the ±0.01-rank band.
            let name = QUANTILES
                .iter()
                .find(|(_, q)| Some(*q) == a.q)
                .map(|(n, _)| *n)
                .unwrap();
            let band = &e[format!("{name}_band")];
            // Sketch items are values rounded to 16 significand bits (monotone), so the
            // sketch's quantile lies in the rounded band.
            let q = driftdb_engine::sketch::kll::kll_quantize;
            let (lo, hi) = (q(num(&band[0])), q(num(&band[1])));
            c.truth(
                &metric,
                format!("{what} = {value:?} in {name}_band [{lo}, {hi}]"),
                value.is_some_and(|v| lo <= v && v <= hi),
            );
        }
        m => panic!("no expected field for {m}"),
    }
}

/// A result row's place: window, feature, segment.
type RowKey = (usize, String, Option<(String, String)>);

/// Checks one query's rows: each row against its expected value, and that exactly the
/// expected (window, feature, segment) rows came back.
fn check_query(c: &mut Check, g: &Golden, raw: &Raw, a: &Ask, t: Target, by: bool, out: &QueryOut) {
    let metric = label(a);
    let rows = match &out.rows {
        Ok(r) => r,
        Err(e) => {
            c.count(&metric);
            c.fail(format!("query `{}` failed: {e}", out.query));
            return;
        }
    };
    if !out.stderr.trim().is_empty() {
        c.fail(format!(
            "query `{}` warned: {}",
            out.query,
            out.stderr.trim()
        ));
    }
    let features = g.features(a, t);
    let mut want: BTreeSet<RowKey> = BTreeSet::new();
    for w in 0..g.windows().len() {
        for f in &features {
            if by {
                for s in &g.segments {
                    want.insert((w, f.clone(), Some(s.clone())));
                }
            } else {
                want.insert((w, f.clone(), None));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for row in rows {
        let Some(&w) = row["time"].as_str().and_then(|t| {
            Timestamp::parse_rfc3339(t)
                .ok()
                .and_then(|ts| g.starts.get(&ts.millis()))
        }) else {
            c.fail(format!(
                "query `{}`: row outside the windows: {row}",
                out.query
            ));
            continue;
        };
        let feature = row["feature"].as_str().unwrap_or_default().to_string();
        let mut seg = None;
        if by {
            let set: Vec<(String, String)> = SEGMENT_KEYS
                .iter()
                .filter_map(|k| {
                    row.get(*k)
                        .and_then(Value::as_str)
                        .map(|v| (k.to_string(), v.to_string()))
                })
                .collect();
            if set.len() != 1 {
                c.fail(format!(
                    "query `{}`: a `by channel, country` row must name one key: {row}",
                    out.query
                ));
                continue;
            }
            seg = set.into_iter().next();
        }
        let key = (w, feature.clone(), seg.clone());
        if !want.contains(&key) {
            c.fail(format!("query `{}`: unexpected row {row}", out.query));
            continue;
        }
        if !seen.insert(key) {
            c.fail(format!("query `{}`: duplicate row {row}", out.query));
            continue;
        }
        c.eq(
            &metric,
            format!("query `{}` metric column", out.query),
            row["metric"].as_str(),
            Some(metric.as_str()),
        );
        let at = At {
            w,
            feature: &feature,
            seg: seg.as_ref(),
        };
        check_row(c, g, raw, a, &at, &out.query, row);
    }
    for missing in want.difference(&seen) {
        c.count(&metric);
        c.fail(format!("query `{}`: no row for {missing:?}", out.query));
    }
}

// ---------------------------------------------------------------------------------------------
// explain.

fn s(row: &Value, col: &str) -> String {
    row[col].as_str().unwrap_or_default().to_string()
}

/// `explain(fraud)` over the drifted windows 4–7 (docs/STATISTICS.md §15; `drift_from_window` = 4).
fn check_explain_drifted(c: &mut Check, g: &Golden, query: &str, rows: &[Value]) {
    const M: &str = "explain";
    let drift: Vec<&Value> = rows.iter().filter(|r| s(r, "section") == "drift").collect();
    let rank = |f: &str| {
        drift
            .iter()
            .position(|r| s(r, "feature") == f && s(r, "segment") == "all")
    };
    let listing: Vec<String> = drift
        .iter()
        .map(|r| {
            format!(
                "{}@{} {}",
                s(r, "feature"),
                s(r, "segment"),
                s(r, "finding")
            )
        })
        .collect();
    let mut worst_drifted = None;
    for f in DRIFTED {
        let Some(i) = rank(f) else {
            c.count(M);
            c.fail(format!(
                "`{query}`: drifted feature {f} has no `segment = all` drift row; listed: {listing:?}"
            ));
            continue;
        };
        let r = drift[i];
        c.truth(
            M,
            format!(
                "`{query}`: {f}@all is marked drifted (finding {:?})",
                s(r, "finding")
            ),
            s(r, "finding").starts_with("drifted"),
        );
        // The row's n is the non-null count over windows 4–7.
        let want_n: u64 = (4..8)
            .map(|w| int(&g.feature(g.cell(Some(w), None), f).0["count"]))
            .sum();
        c.eq(
            M,
            format!("`{query}`: {f}@all n"),
            count_cell(&r["n"]),
            Some(want_n),
        );
        worst_drifted = worst_drifted.max(Some(i));
    }
    for f in UNDRIFTED {
        // Not listed at all ranks below every listed row.
        let Some(i) = rank(f) else {
            c.count(M);
            continue;
        };
        let r = drift[i];
        c.truth(
            M,
            format!(
                "`{query}`: {f}@all is not marked drifted (finding {:?})",
                s(r, "finding")
            ),
            !s(r, "finding").starts_with("drifted"),
        );
        c.truth(
            M,
            format!("`{query}`: undrifted {f}@all (rank {i}) ranks below every drifted feature (worst {worst_drifted:?})"),
            worst_drifted.is_some_and(|d| d < i),
        );
    }
    // Calibration breaks in channel = app only: the calibration-shift signal names it, and its
    // ECE row is marked miscalibrated.
    let signal: Vec<&Value> = rows
        .iter()
        .filter(|r| s(r, "section") == "signal" && s(r, "metric") == "calibration_shift")
        .collect();
    c.truth(
        M,
        format!("`{query}`: one calibration_shift signal naming channel=app, flagged: {signal:?}"),
        signal.len() == 1
            && s(signal[0], "segment") == "channel=app"
            && s(signal[0], "finding").starts_with("FLAG"),
    );
    let app_ece: Vec<&Value> = rows
        .iter()
        .filter(|r| {
            s(r, "section") == "performance"
                && s(r, "metric") == "ece"
                && s(r, "segment") == "channel=app"
        })
        .collect();
    c.truth(
        M,
        format!("`{query}`: channel=app ECE row is miscalibrated: {app_ece:?}"),
        app_ece.len() == 1 && s(app_ece[0], "finding") == "miscalibrated",
    );
}

/// `explain(fraud)` over the baseline windows 0–3: nothing at segment `all` drifted.
fn check_explain_baseline(c: &mut Check, query: &str, rows: &[Value]) {
    const M: &str = "explain";
    c.truth(
        M,
        format!("`{query}` lists drift rows"),
        rows.iter().any(|r| s(r, "section") == "drift"),
    );
    for r in rows
        .iter()
        .filter(|r| s(r, "section") == "drift" && s(r, "segment") == "all")
    {
        c.truth(
            M,
            format!(
                "`{query}`: {}@all is not marked drifted in the baseline windows (finding {:?})",
                s(r, "feature"),
                s(r, "finding")
            ),
            !s(r, "finding").starts_with("drifted"),
        );
    }
    // Calibration holds before the drift (app ECE 0.03–0.05 against its reference's).
    let signal: Vec<&Value> = rows
        .iter()
        .filter(|r| s(r, "section") == "signal" && s(r, "metric") == "calibration_shift")
        .collect();
    c.truth(
        M,
        format!("`{query}`: no calibration shift flagged: {signal:?}"),
        signal.len() == 1 && !s(signal[0], "finding").starts_with("FLAG"),
    );
}

// ---------------------------------------------------------------------------------------------

#[test]
fn golden_scenario_through_the_cli() {
    let t0 = Instant::now();
    let g = Golden::load();
    let raw = Raw::load(&g);
    let server = start_server();
    let url = &server.conn;

    // Load the scenario exactly as README "Using it" does.
    super::common::load_golden_model(|args| run_ok(url, args));
    let out = run_ok(url, &["ingest", &format!("{GOLDEN}windows.jsonl")]);
    assert!(out.contains("16000 accepted, 0 rejected"), "{out}");
    let out = run_ok(
        url,
        &[
            "labels",
            &format!("{GOLDEN}labels.jsonl"),
            "--model",
            "fraud",
        ],
    );
    assert!(out.contains("11847 joined, 0 pending"), "{out}");
    assert!(out.contains("0 rejected"), "{out}");
    let loaded = t0.elapsed();

    // Every metric × target, overall and by segment, over all eight windows in one stepped
    // query each; rows are matched to windows by `time`.
    let all = g.range(0, g.windows().len() - 1);
    let asks = asks();
    let mut jobs: Vec<(usize, Target, bool)> = Vec::new();
    let mut queries = Vec::new();
    for (i, a) in asks.iter().enumerate() {
        for t in targets(a) {
            for by in [false, true] {
                let by_clause = if by { " by channel, country" } else { "" };
                queries.push(format!("{} {all} step 15m{by_clause}", call(a, t)));
                jobs.push((i, t, by));
            }
        }
    }
    // explain over windows 4–7 (drifted) and 0–3 (baseline).
    assert_eq!(int(&g.expected["meta"]["params"]["drift_from_window"]), 4);
    let drifted_q = format!("explain(fraud) {}", g.range(4, 7));
    let baseline_q = format!("explain(fraud) {}", g.range(0, 3));
    queries.push(drifted_q.clone());
    queries.push(baseline_q.clone());
    let n_queries = queries.len();
    let outs = run_queries(url, queries);

    let mut c = Check::default();
    for ((i, t, by), out) in jobs.iter().zip(&outs) {
        check_query(&mut c, &g, &raw, &asks[*i], *t, *by, out);
    }
    for (q, out) in [
        (&drifted_q, &outs[jobs.len()]),
        (&baseline_q, &outs[jobs.len() + 1]),
    ] {
        assert_eq!(&out.query, q);
        let rows = match &out.rows {
            Ok(r) => r,
            Err(e) => {
                c.count("explain");
                c.fail(format!("query `{q}` failed: {e}"));
                continue;
            }
        };
        if !out.stderr.trim().is_empty() {
            c.fail(format!("query `{q}` warned: {}", out.stderr.trim()));
        }
        if q == &drifted_q {
            check_explain_drifted(&mut c, &g, q, rows);
        } else {
            check_explain_baseline(&mut c, q, rows);
        }
    }
    drop(server);

    let total = c.total();
    eprintln!(
        "golden_cli: {n_queries} queries, {total} comparisons, {} failures in {:.1} s \
         (loading {:.1} s)\n  worst |D_kll − D| = {:.4} (tolerance {:.4})\n  \
         W1: {}/{} outside 5 % ({} outside 20 %), worst relative error {:.3}, \
         worst error / sketch bound {:.3}",
        c.failures.len(),
        t0.elapsed().as_secs_f64(),
        loaded.as_secs_f64(),
        c.worst_ks,
        2.0 * KLL_EPS,
        c.w1_outside_5pct,
        c.w1_total,
        c.w1_outside_20pct,
        c.worst_w1,
        c.worst_w1_bound,
    );
    eprintln!("  comparisons by metric: {:?}", c.by_metric);
    for n in c.notes.iter().take(40) {
        eprintln!("  note {n}");
    }
    for f in c.failures.iter().take(100) {
        eprintln!("  FAIL {f}");
    }
    assert!(
        c.failures.is_empty(),
        "{} golden CLI mismatches (first: {})",
        c.failures.len(),
        c.failures[0]
    );
    assert!(total >= MIN_COMPARISONS, "only {total} comparisons");
}
