//! Performance estimated before the labels arrive (docs/STATISTICS.md §20) on the golden
//! scenario, through the CLI against a real server, judged against a plain row-level
//! scikit-learn implementation (`tests/data/golden/make_cbpe_cases.py` → `cbpe_cases.json`).
//!
//! The scenario suits it: the model is calibrated on its reference; from window 4 three inputs
//! drift, so the scores move (covariate shift: the estimate must follow the realised values);
//! and in segment `channel = app` labels come from a changed relation (concept shift: the
//! realised AUC falls, the estimate from the scores cannot, and `explain` must flag the gap).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use driftdb_engine::time::Timestamp;
use serde_json::Value;

use super::common::{GOLDEN, golden_server, http_get, load_golden_model, ok};

const T0_MS: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z
const WINDOW_MS: i64 = 15 * 60 * 1000;
const ALL: &str = "from 2026-03-01T00:00:00Z to 2026-03-01T02:00:00Z";
const LATE: &str = "from 2026-03-01T01:00:00Z to 2026-03-01T02:00:00Z";
const METRICS: [&str; 5] = ["auc", "accuracy", "precision", "recall", "f1"];
/// Largest |driftdb − scikit-learn| for an estimate: driftdb fits the calibration on the
/// 1,000-bin score histogram (scores at bin centres) and reads the window's scores from the
/// KLL sketch (rank error ≈ 1.3 % at 2,000 rows per window); the reference implementation uses
/// every raw score.
const VALUE_TOL: f64 = 0.015;
/// Largest relative difference of a standard error.
const STDERR_REL_TOL: f64 = 0.15;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(args)
        .args(["--server", url])
        .current_dir(root())
        .env_remove("DRIFTDB_SERVER")
        .env("DRIFTDB_API_KEY", key)
        .output()
        .unwrap()
}

fn run_ok(url: &str, key: &str, args: &[&str]) -> String {
    ok(run(url, key, args))
}

fn query(url: &str, key: &str, q: &str) -> Vec<Value> {
    let out = run_ok(url, key, &["query", "--json", q]);
    match serde_json::from_str::<Value>(&out) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("`{q}` answered {other:?}"),
    }
}

fn window_of(row: &Value) -> usize {
    let t = row["time"].as_str().unwrap();
    let ms = Timestamp::parse_rfc3339(t).unwrap().millis();
    usize::try_from((ms - T0_MS) / WINDOW_MS).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn cases() -> Value {
    let path = root().join(GOLDEN).join("cbpe_cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The case of window `w`, overall (`seg` None) or for `channel = seg`.
fn case<'a>(cases: &'a Value, w: usize, seg: Option<&str>) -> &'a Value {
    let win = &cases["windows"][w];
    match seg {
        None => &win["all"],
        Some(v) => &win["by_segment"]["channel"][v],
    }
}

#[test]
fn estimated_performance_on_the_golden_scenario() {
    let cases = cases();
    let server = golden_server();
    let (url, key) = (server.grpc.as_str(), server.key.as_str());
    load_golden_model(|args| run_ok(url, key, args));
    let out = run_ok(url, key, &["ingest", &format!("{GOLDEN}windows.jsonl")]);
    assert!(out.contains("16000 accepted, 0 rejected"), "{out}");

    // Before any label: every estimate is there, against scikit-learn's.
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for m in METRICS {
        let metric = format!("estimated_{m}");
        for by in [false, true] {
            let q = format!(
                "{metric}(fraud) {ALL} step 15m{}",
                if by { " by channel" } else { "" }
            );
            let rows = query(url, key, &q);
            assert_eq!(rows.len(), if by { 8 * 3 } else { 8 }, "{q}: {rows:?}");
            for row in &rows {
                let w = window_of(row);
                let seg = by.then(|| row["channel"].as_str().unwrap());
                let want = &case(&cases, w, seg)["estimated"];
                assert_eq!(row["metric"], metric.as_str());
                assert_eq!(row["n"], want["n"], "{q}: window {w} {seg:?}");
                assert!(num(&row["baseline_n"]) > 1000.0, "{row}");
                let (got, exp) = (num(&row["value"]), num(&want[m]));
                let (se, exp_se) = (num(&row["stderr"]), num(&want[format!("{m}_se")]));
                if (got - exp).abs() > VALUE_TOL || (se - exp_se).abs() > STDERR_REL_TOL * exp_se {
                    mismatches.push(format!(
                        "{metric} window {w} {seg:?}: {got} ± {se}, scikit-learn {exp} ± {exp_se}"
                    ));
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 5 * 32);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // The covariate shift of windows 4–7 shows in the estimate before any label came.
    let rows = query(url, key, &format!("estimated_auc(fraud) {ALL} step 15m"));
    let auc: Vec<f64> = rows.iter().map(|r| num(&r["value"])).collect();
    let early = auc[..4].iter().sum::<f64>() / 4.0;
    let late = auc[4..].iter().sum::<f64>() / 4.0;
    assert!(early - late > 0.03, "estimated auc {auc:?}");

    // The labels come: the estimate tracks the realised AUC where the model still holds
    // (channel = web), and stays above it where the relation changed (channel = app).
    let out = run_ok(
        url,
        key,
        &[
            "labels",
            &format!("{GOLDEN}labels.jsonl"),
            "--model",
            "fraud",
        ],
    );
    assert!(out.contains("11847 joined"), "{out}");
    let estimated = query(
        url,
        key,
        &format!("estimated_auc(fraud) {ALL} step 15m by channel"),
    );
    let realised = query(url, key, &format!("auc(fraud) {ALL} step 15m by channel"));
    let find = |rows: &[Value], w: usize, seg: &str| -> Value {
        rows.iter()
            .find(|r| window_of(r) == w && r["channel"] == seg)
            .cloned()
            .unwrap_or_else(|| panic!("no row for window {w} {seg}"))
    };
    for w in 4..8 {
        for seg in ["web", "pos", "app"] {
            let e = find(&estimated, w, seg);
            let r = find(&realised, w, seg);
            // The realised value rests on the labelled rows only: widen the error to them.
            let se = num(&e["stderr"]) * (num(&e["n"]) / num(&r["n"])).sqrt();
            let gap = num(&e["value"]) - num(&r["value"]);
            if seg == "app" {
                assert!(gap > 2.0 * se, "window {w} app: gap {gap}, se {se}");
            } else {
                assert!(
                    gap.abs() < 3.0 * se + 0.01,
                    "window {w} {seg}: gap {gap}, se {se}"
                );
            }
            // Realised matches scikit-learn's on the same labels.
            let want = num(&case(&cases, w, Some(seg))["realised"]["auc"]);
            assert!((num(&r["value"]) - want).abs() < 2e-3, "{r} vs {want}");
        }
    }

    // explain over the late windows flags the concept drift in channel = app and not in the
    // other channels (segments that mix app rows in, such as `all` or a country, may show it
    // too, diluted).
    let rows = query(url, key, &format!("explain(fraud) {LATE}"));
    let gap_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| r["metric"] == "auc vs estimated_auc")
        .collect();
    assert!(gap_rows.len() >= 4, "{rows:?}");
    let flagged = |seg: &str| {
        let r = gap_rows
            .iter()
            .find(|r| r["segment"] == seg)
            .unwrap_or_else(|| panic!("no gap row for {seg}: {gap_rows:?}"));
        assert!(num(&r["n"]) >= 30.0, "{r}");
        r["finding"].as_str().unwrap().starts_with("concept drift")
    };
    assert!(flagged("channel=app"), "{gap_rows:?}");
    assert!(!flagged("channel=web"), "{gap_rows:?}");
    assert!(!flagged("channel=pos"), "{gap_rows:?}");
    let signal = rows
        .iter()
        .find(|r| r["section"] == "signal" && r["metric"] == "concept_drift")
        .unwrap_or_else(|| panic!("no concept_drift signal: {rows:?}"));
    assert_eq!(signal["segment"], "channel=app", "{signal}");
    assert!(
        signal["finding"]
            .as_str()
            .unwrap()
            .starts_with("FLAG: concept drift in channel=app"),
        "{signal}"
    );
    // Over the early windows nothing is flagged.
    let early = query(
        url,
        key,
        "explain(fraud) from 2026-03-01T00:00:00Z to 2026-03-01T01:00:00Z",
    );
    let signal = early
        .iter()
        .find(|r| r["section"] == "signal" && r["metric"] == "concept_drift")
        .unwrap();
    assert!(
        !signal["finding"].as_str().unwrap().starts_with("FLAG"),
        "{signal}"
    );

    // The HTTP DriftQL endpoint answers the same, stderr included.
    let q = "estimated_auc(fraud) from 2026-03-01T01:00:00Z to 2026-03-01T01:15:00Z";
    let path = format!("/api/v1/driftql?q={}", urlencode(q));
    let (status, _, body) = http_get(&server.http, &path, Some(key));
    assert_eq!(status, 200, "{body}");
    let want = &case(&cases, 4, None)["estimated"];
    let body: Value = serde_json::from_str(&body).unwrap();
    let http_value = find_number(&body, "value").unwrap_or_else(|| panic!("{body}"));
    assert!((http_value - num(&want["auc"])).abs() < VALUE_TOL, "{body}");
    assert!(find_number(&body, "stderr").is_some(), "{body}");

    // And the Prometheus API exports the series: one sample per window end, equal to DriftQL.
    let driftql = query(url, key, &format!("estimated_auc(fraud) {ALL} step 15m"));
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=900",
        urlencode(r#"driftdb_estimated_auc{model="fraud"}"#),
        (T0_MS + WINDOW_MS) / 1000,
        (T0_MS + 8 * WINDOW_MS) / 1000
    );
    let (status, _, body) = http_get(&server.http, &path, Some(key));
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let overall = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"].get("channel").is_none() && s["metric"].get("country").is_none())
        .unwrap_or_else(|| panic!("no overall series: {body}"));
    let values = overall["values"].as_array().unwrap();
    assert_eq!(values.len(), 8, "{overall}");
    for (p, row) in values.iter().zip(&driftql) {
        let v: f64 = p[1].as_str().unwrap().parse().unwrap();
        assert!((v - num(&row["value"])).abs() < 1e-9, "{p} vs {row}");
    }
}

/// The first number under `name` anywhere in `v`.
fn find_number(v: &Value, name: &str) -> Option<f64> {
    match v {
        Value::Object(m) => m
            .get(name)
            .and_then(Value::as_f64)
            .or_else(|| m.values().find_map(|x| find_number(x, name))),
        Value::Array(a) => a.iter().find_map(|x| find_number(x, name)),
        _ => None,
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
