//! `driftdb report` as users run it, on the golden scenario (`tests/data/golden/`):
//!
//! - offline, straight from the reference and current files: the heatmap's cells are the
//!   golden per-window PSIs (scipy/numpy, `expected.json`), the drift table is ordered by PSI,
//!   each numeric panel's bin masses give back the feature's PSI, the verdict names the
//!   drifted features of docs/STATISTICS.md §15, `--fail-on-drift` sets the exit status, and
//!   the HTML page is self-contained and small;
//! - from a running `driftdb serve` (gRPC, and HTTP `GET /models/{id}/report`): the same
//!   content as the offline report of the same rows, plus performance over time equal to
//!   `driftdb query 'auc(fraud) … step 15m'` and a calibration diagram once labels joined;
//!   the AUC estimated from the scores in both, labels or not;
//!   HTTP refuses a request without a key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::common::http_get;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const GOLDEN: &str = "tests/data/golden/";
const T0: &str = "2026-03-01T00:00:00Z";
const T1: &str = "2026-03-01T01:00:00Z";
const T2: &str = "2026-03-01T02:00:00Z";
/// docs/STATISTICS.md §15: the input features that drift from window 4 on, and those that
/// do not.
const DRIFTED: [&str; 5] = [
    "risk",
    "merchant_cat",
    "amount",
    "is_new_customer",
    "session_s",
];
const UNDRIFTED: [&str; 3] = ["age", "balance", "browser"];
const NUMERIC: [&str; 5] = ["amount", "age", "session_s", "balance", "risk"];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `driftdb <args>` from the project root.
fn driftdb(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driftdb"));
    c.args(args)
        .current_dir(root())
        .env_remove("DRIFTDB_SERVER")
        .env_remove("DRIFTDB_API_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn offline(out: &Path, extra: &[&str]) -> Output {
    let o = out.to_str().unwrap();
    let mut args = vec![
        "report",
        "--model",
        "tests/data/golden/model.json",
        "--version",
        "v2",
        "--reference",
        "tests/data/golden/reference.jsonl",
        "--current",
        "tests/data/golden/windows.jsonl",
        "-o",
        o,
    ];
    args.extend_from_slice(extra);
    driftdb(&args, &[])
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(root().join(GOLDEN).join("expected.json")).unwrap())
        .unwrap()
}

/// PSI of two mass vectors as docs/STATISTICS.md §3 defines it (proportions clipped at 1e-4).
fn psi(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(p, q)| {
            let (p, q) = (p.max(1e-4), q.max(1e-4));
            (q - p) * (q / p).ln()
        })
        .sum()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn feature<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == name)
        .unwrap_or_else(|| panic!("no feature {name}"))
}

#[test]
fn an_offline_report_of_the_golden_files_holds_the_golden_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.json");
    let out = offline(&all, &["--step", "15m", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = read_json(&all);
    assert_eq!(r["schema"], "driftdb.report.v1");
    assert_eq!(
        (r["model"].as_str(), r["version"].as_str()),
        (Some("fraud"), Some("v2"))
    );
    let t0 = driftdb_engine::time::Timestamp::parse_rfc3339(T0)
        .unwrap()
        .0;
    assert_eq!(r["from_ms"].as_i64(), Some(t0));
    assert_eq!(r["to_ms"].as_i64(), Some(t0 + 8 * 900_000));

    // The heatmap: 8 features × 8 windows, every cell the golden PSI of that window.
    let exp = expected();
    let h = &r["heatmap"];
    let windows: Vec<i64> = h["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_i64().unwrap())
        .collect();
    assert_eq!(
        windows,
        (0..8).map(|i| t0 + i * 900_000).collect::<Vec<_>>()
    );
    let names: Vec<&str> = h["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    let mut compared = 0;
    for (fi, f) in names.iter().enumerate() {
        for (wi, w) in exp["windows"].as_array().unwrap().iter().enumerate() {
            let want = if NUMERIC.contains(f) {
                w["numeric"][f]["psi_q10"].as_f64().unwrap()
            } else {
                w["categorical"][f]["psi"].as_f64().unwrap()
            };
            let got = h["values"][fi][wi].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "{f} window {wi}: {got} vs {want}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 64);

    // The drift table is ordered by PSI, largest first, and each numeric panel's bin masses
    // give back its feature's PSI.
    let psis: Vec<f64> = r["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["psi"].as_f64().unwrap())
        .collect();
    assert!(psis.windows(2).all(|w| w[0] >= w[1]), "{psis:?}");
    let mut panels = 0;
    for d in r["distributions"].as_array().unwrap() {
        let shape = &d["shape"];
        if shape["kind"] != "numeric" || d["feature"] == "$score" {
            continue;
        }
        let (p, q) = (floats(&shape["reference"]), floats(&shape["current"]));
        assert_eq!(p.len(), 10);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let want = feature(&r, d["feature"].as_str().unwrap())["psi"]
            .as_f64()
            .unwrap();
        assert!((psi(&p, &q) - want).abs() < 1e-12, "{}", d["feature"]);
        panels += 1;
    }
    assert_eq!(panels, 5);
    // Windows without labels: no realised performance and no calibration, said so; the AUC
    // estimated from the scores is there, equal to the row-level scikit-learn estimate
    // (`cbpe_cases.json`, docs/STATISTICS.md §20) within the sketch's tolerance.
    let perf = &r["performance"];
    assert!(
        perf["values"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_null)
    );
    assert!(r["calibration"].is_null());
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(GOLDEN).join("cbpe_cases.json")).unwrap(),
    )
    .unwrap();
    let est = floats(&perf["estimated"]);
    assert_eq!(est.len(), 8);
    for (w, got) in est.iter().enumerate() {
        let want = cases["windows"][w]["all"]["estimated"]["auc"]
            .as_f64()
            .unwrap();
        assert!((got - want).abs() < 0.015, "window {w}: {got} vs {want}");
    }
    assert!(
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("no labels")),
        "{}",
        r["warnings"]
    );

    // The drifted hour: the verdict names the drifted features, --fail-on-drift exits 1 after
    // writing the report.
    let drifted = dir.path().join("drifted.json");
    let out = offline(
        &drifted,
        &[
            "--from",
            T1,
            "--to",
            T2,
            "--format",
            "json",
            "--fail-on-drift",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("verdict: drift"),
        "{}",
        text(&out.stderr)
    );
    let r = read_json(&drifted);
    for f in DRIFTED {
        assert_eq!(feature(&r, f)["drifted"], true, "{f}");
    }
    for f in UNDRIFTED {
        assert_eq!(feature(&r, f)["drifted"], false, "{f}");
    }
    assert_eq!(r["verdict"]["drifted"].as_u64(), Some(5));
    assert_eq!(r["verdict"]["drift"], true);
    assert!(r["heatmap"]["windows"].as_array().unwrap().len() == 4);

    // The baseline hour: no drift, exit 0 with --fail-on-drift.
    let calm = dir.path().join("calm.json");
    let out = offline(
        &calm,
        &[
            "--from",
            T0,
            "--to",
            T1,
            "--format",
            "json",
            "--fail-on-drift",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(read_json(&calm)["verdict"]["drifted"].as_u64(), Some(0));

    // The page: self-contained and small.
    let page = dir.path().join("drift.html");
    let out = offline(&page, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.len() < 1 << 20, "{} bytes", html.len());
    for bad in ["<script", "http://", "https://"] {
        assert!(!html.contains(bad), "the page holds {bad}");
    }
    for id in [
        "id=\"verdict\"",
        "id=\"drift-table\"",
        "id=\"heatmap\"",
        "id=\"explain\"",
    ] {
        assert!(html.contains(id), "no {id}");
    }
}

#[test]
fn offline_mistakes_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("r.html");
    // A rejected row stops the report unless --max-rejected allows it.
    let bad = dir.path().join("bad.jsonl");
    let mut rows = std::fs::read_to_string(root().join(GOLDEN).join("windows.jsonl")).unwrap();
    rows.push_str("{\"request_id\":\"x\",\"ts\":\"not a time\",\"features\":{}}\n");
    // Read fine, rejected by the fold's row pass (it runs on its own thread).
    rows.push_str(
        "{\"request_id\":\"y\",\"ts\":\"2026-03-01T00:01:00Z\",\"model_version\":\"v2\",\"score\":7}\n",
    );
    std::fs::write(&bad, rows).unwrap();
    let args = |cur: &str, extra: &[&'static str]| {
        let mut v: Vec<String> = [
            "report",
            "--model",
            "tests/data/golden/model.json",
            "--version",
            "v2",
            "--reference",
            "tests/data/golden/reference.jsonl",
            "--current",
            cur,
            "-o",
            o.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |v: Vec<String>| {
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        driftdb(&v, &[])
    };
    let out = run(args(bad.to_str().unwrap(), &[]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("2 of 16002 rows rejected"), "{err}");
    assert!(err.contains("line 16001"), "{err}");
    assert!(
        err.contains("line 16002: score 7 is not a probability"),
        "{err}"
    );
    assert!(!o.exists(), "no report is written past --max-rejected");
    let out = run(args(bad.to_str().unwrap(), &["--max-rejected", "2"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(o.exists());
    // --current without --reference, an unknown extension, a missing file.
    let out = driftdb(
        &[
            "report",
            "--model",
            "m.json",
            "--current",
            "x.jsonl",
            "-o",
            "r.html",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses: {}",
        text(&out.stderr)
    );
    let out = run(args("tests/data/golden/README.md", &[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown extension"),
        "{}",
        text(&out.stderr)
    );
    let out = run(args("tests/data/golden/nope.jsonl", &[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nope.jsonl"),
        "{}",
        text(&out.stderr)
    );
}

type Server = super::common::GoldenServer;

fn client(s: &Server, args: &[&str]) -> Output {
    let mut v = args.to_vec();
    v.extend(["--server", &s.grpc]);
    driftdb(&v, &[("DRIFTDB_API_KEY", &s.key)])
}

fn client_ok(s: &Server, args: &[&str]) -> String {
    let out = client(s, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn a_server_report_is_the_offline_report_plus_performance() {
    let s = super::common::golden_server();
    super::common::load_golden_model(|args| client_ok(&s, args));
    client_ok(&s, &["ingest", "tests/data/golden/windows.jsonl"]);
    client_ok(
        &s,
        &[
            "labels",
            "tests/data/golden/labels.jsonl",
            "--model",
            "fraud",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served.json");
    client_ok(
        &s,
        &[
            "report",
            "--model",
            "fraud",
            "--from",
            T0,
            "--to",
            T2,
            "--step",
            "15m",
            "--format",
            "json",
            "-o",
            served.to_str().unwrap(),
        ],
    );
    let local = dir.path().join("local.json");
    let out = offline(&local, &["--step", "15m", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (a, b) = (read_json(&served), read_json(&local));
    assert_eq!(
        a["source"].as_str(),
        Some(format!("server {}", s.grpc).as_str())
    );
    for k in [
        "from_ms",
        "to_ms",
        "step_ms",
        "features",
        "heatmap",
        "verdict",
        "distributions",
    ] {
        if k == "distributions" {
            // The score panel differs only where labels joined (its bins do not).
            let strip = |v: &Value| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| d["feature"] != "$score")
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(&a[k]), strip(&b[k]), "{k}");
        } else {
            assert_eq!(a[k], b[k], "{k}");
        }
    }

    // Performance over time is DriftQL's answer; calibration is there with its ECE. The
    // estimate needs no labels, so the offline report (no labels) has the same one, up to the
    // sketches of two different foldings of the same rows.
    let p = &a["performance"];
    assert_eq!(p["metric"], "auc");
    let (es, eo) = (
        floats(&p["estimated"]),
        floats(&b["performance"]["estimated"]),
    );
    assert_eq!(es.len(), 8);
    for (x, y) in es.iter().zip(&eo) {
        assert!((x - y).abs() < 0.01, "{es:?} vs {eo:?}");
    }
    let q = client_ok(
        &s,
        &[
            "query",
            "--json",
            &format!("auc(fraud) from {T0} to {T2} step 15m"),
        ],
    );
    let rows: Vec<Value> = serde_json::from_str(&q).unwrap();
    assert_eq!(rows.len(), 8);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(p["values"][i], row["value"], "window {i}");
    }
    let ece = client_ok(
        &s,
        &["query", "--json", &format!("ece(fraud) from {T0} to {T2}")],
    );
    let ece: Vec<Value> = serde_json::from_str(&ece).unwrap();
    assert_eq!(a["calibration"]["ece"], ece[0]["value"]);
    let bins = a["calibration"]["bins"].as_array().unwrap();
    assert!(bins.len() >= 5, "{bins:?}");
    let labelled: u64 = bins.iter().map(|b| b["n"].as_u64().unwrap()).sum();
    assert_eq!(Some(labelled), ece[0]["n"].as_u64());

    // HTTP: the JSON and the page with a key; nothing without one.
    let path = format!("/models/fraud/report?from={T0}&to={T2}&step=15m");
    let (status, _, body) = http_get(&s.http, &path, Some(&s.key));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["features"], a["features"]);
    let (status, head, body) = http_get(&s.http, &format!("{path}&format=html"), Some(&s.key));
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(body.contains("id=\"heatmap\"") && !body.contains("<script"));
    let (status, _, _) = http_get(&s.http, &path, None);
    assert_eq!(status, 401);
    let (status, _, body) = http_get(&s.http, &format!("{path}&format=pdf"), Some(&s.key));
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = http_get(&s.http, "/models/nope/report", Some(&s.key));
    assert_eq!(status, 404);
}
