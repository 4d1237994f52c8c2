//! Attributions and cost from JSONL files to DriftQL answers, through the CLI against a real
//! server: a reference whose rows carry attributions, two windows where importance swaps from
//! feature `a` to feature `b`, and the events' cost (docs/STATISTICS.md §21).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::common::{golden_server, ok, text};

const MODEL: &str = r#"{"id":"risk","task":"binary","window":"15m","segments":["region"],
  "features":{"a":"numeric","b":"numeric"}}"#;
const RANGE: &str = "from 2026-03-01T00:00:00Z to 2026-03-01T00:30:00Z";

fn run(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(args)
        .args(["--server", url])
        .env_remove("DRIFTDB_SERVER")
        .env("DRIFTDB_API_KEY", key)
        .output()
        .unwrap()
}

fn query(url: &str, key: &str, q: &str) -> Vec<Value> {
    let out = ok(run(url, key, &["query", "--json", q]));
    match serde_json::from_str::<Value>(&out) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("`{q}` answered {other:?}"),
    }
}

/// A small deterministic stream of values in (-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// Mean |attribution| of a and b over the explained rows written.
#[derive(Default)]
struct Sums {
    abs: [f64; 2],
    n: [u64; 2],
}

impl Sums {
    fn share_b(&self) -> f64 {
        let (ma, mb) = (
            self.abs[0] / self.n[0] as f64,
            self.abs[1] / self.n[1] as f64,
        );
        mb / (ma + mb)
    }
}

/// `n` lines at `ts`, attributions `w · x` on every other line, cost `cost` on every line.
#[expect(
    clippy::too_many_arguments,
    reason = "one line shape, every knob named"
)]
fn lines(
    out: &mut String,
    rng: &mut Lcg,
    prefix: &str,
    n: usize,
    ts: &str,
    w: [f64; 2],
    cost: f64,
    sums: &mut Sums,
) {
    for i in 0..n {
        let (a, b) = (rng.next(), rng.next());
        let attrs = if i % 2 == 0 {
            sums.abs[0] += (w[0] * a).abs();
            sums.abs[1] += (w[1] * b).abs();
            sums.n[0] += 1;
            sums.n[1] += 1;
            format!(r#","attributions":{{"a":{},"b":{}}}"#, w[0] * a, w[1] * b)
        } else {
            String::new()
        };
        let region = if i % 3 == 0 { "us" } else { "eu" };
        let label = i32::from(rng.next() > 0.0);
        out.push_str(&format!(
            r#"{{"request_id":"{prefix}{i}","ts":"{ts}","model_version":"v1","region":"{region}","a":{a},"b":{b},"score":0.5,"label":{label},"cost":{cost}{attrs}}}"#
        ));
        out.push('\n');
    }
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn importance_and_cost_from_jsonl_files() {
    let server = golden_server();
    let (url, key) = (server.grpc.as_str(), server.key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let model = write(dir.path(), "model.json", MODEL);
    let out = ok(run(url, key, &["model", "create", "--file", &model]));
    assert!(out.contains("created model risk"), "{out}");

    let mut rng = Lcg(7);
    let mut body = String::new();
    let mut reference = Sums::default();
    lines(
        &mut body,
        &mut rng,
        "ref",
        400,
        "2026-02-01T00:00:00Z",
        [0.8, 0.2],
        0.003,
        &mut reference,
    );
    let file = write(dir.path(), "reference.jsonl", &body);
    let out = ok(run(
        url,
        key,
        &[
            "reference",
            "load",
            "--model",
            "risk",
            "--version",
            "v1",
            &file,
        ],
    ));
    assert!(out.contains("400 rows profiled, 0 rejected"), "{out}");

    let mut body = String::new();
    let mut windows = [Sums::default(), Sums::default()];
    let (first, second) = windows.split_at_mut(1);
    lines(
        &mut body,
        &mut rng,
        "w0-",
        200,
        "2026-03-01T00:01:00Z",
        [0.8, 0.2],
        0.004,
        &mut first[0],
    );
    lines(
        &mut body,
        &mut rng,
        "w1-",
        200,
        "2026-03-01T00:16:00Z",
        [0.2, 0.8],
        0.004,
        &mut second[0],
    );
    let file = write(dir.path(), "windows.jsonl", &body);
    let out = ok(run(url, key, &["ingest", &file]));
    assert!(out.contains("400 accepted, 0 rejected"), "{out}");

    // Importance: b's share of the mean |attribution|, exactly as written, against the
    // reference's.
    let rows = query(url, key, &format!("importance(risk.b) {RANGE} step 15m"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, w) in rows.iter().zip(&windows) {
        let got = row["value"].as_f64().unwrap();
        assert!((got - w.share_b()).abs() < 1e-9, "{row} vs {}", w.share_b());
        let base = row["baseline"].as_f64().unwrap();
        assert!((base - reference.share_b()).abs() < 1e-9, "{row}");
        assert_eq!(row["n"], 100);
        assert_eq!(row["baseline_n"], 200);
    }

    // Importance drift: two features, so the rank correlation is 1 (same order) then -1.
    let rows = query(
        url,
        key,
        &format!("importance_drift(risk) {RANGE} step 15m"),
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["value"].as_f64(), Some(1.0), "{rows:?}");
    assert_eq!(rows[1]["value"].as_f64(), Some(-1.0), "{rows:?}");
    let moved = rows[1]["moved"].as_str().unwrap();
    assert!(
        moved.contains("a -0.") && moved.contains("b +0."),
        "{moved}"
    );

    // Cost per 1,000 events.
    let rows = query(url, key, &format!("cost_per_1k(risk) {RANGE}"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        (rows[0]["value"].as_f64().unwrap() - 4.0).abs() < 1e-9,
        "{rows:?}"
    );
    assert_eq!(rows[0]["n"], 400);

    // explain says it ranks by impact.
    let out = run(url, key, &["query", &format!("explain(risk) {RANGE}")]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(all.contains("ranked by impact"), "{all}");

    // A line naming a feature the model lacks is refused with the name; the exit code says so.
    let bad = r#"{"request_id":"x1","ts":"2026-03-01T00:02:00Z","model_version":"v1","a":1,"b":1,"score":0.5,"attributions":{"zeta":1}}"#;
    let file = write(dir.path(), "bad.jsonl", &format!("{bad}\n"));
    let out = run(url, key, &["ingest", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"attributions: "zeta" is not a feature of model "risk""#),
        "{err}"
    );
}
