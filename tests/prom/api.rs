//! driftdb as a Grafana Prometheus data source: `/api/v1/query`, `query_range`, `series`,
//! `labels`, `label/{name}/values`, `metadata` and `/metrics` against a real server, answers
//! checked value by value against DriftQL.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::fixture::{self, WIDTH, driftql, end, expected_samples, start};
use super::http::{enc, get, post_form};

fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// A successful answer's `data`.
fn data(r: &super::http::Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["status"], "success", "{j}");
    j["data"].clone()
}

pub async fn query_range(addr: SocketAddr, q: &str, from: i64, to: i64, step_s: i64) -> Value {
    let r = post_form(
        addr,
        "/api/v1/query_range",
        &[
            ("query", q),
            ("start", &secs(from)),
            ("end", &secs(to)),
            ("step", &step_s.to_string()),
        ],
    )
    .await;
    let d = data(&r);
    assert_eq!(d["resultType"], "matrix", "{q}: {d}");
    d
}

pub async fn query_at(addr: SocketAddr, q: &str, at: i64) -> Value {
    let r = get(
        addr,
        &format!("/api/v1/query?query={}&time={}", enc(q), secs(at)),
    )
    .await;
    data(&r)
}

/// A matrix as `(time ms, region label, value)`, sorted like `expected_samples`.
fn flatten(d: &Value) -> Vec<(i64, String, f64)> {
    let mut out = Vec::new();
    for s in d["result"].as_array().unwrap() {
        let region = s["metric"]["region"].as_str().unwrap_or("").to_string();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().unwrap().parse().unwrap();
            out.push((t, region.clone(), v));
        }
    }
    out.sort_by(|a, b| (a.1.as_str(), a.0).cmp(&(b.1.as_str(), b.0)));
    out
}

async fn bad(addr: SocketAddr, path: &str, params: &[(&str, &str)]) -> String {
    let r = post_form(addr, path, params).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "error");
    assert_eq!(j["errorType"], "bad_data");
    j["error"].as_str().unwrap().to_string()
}

const RANGE: &str = "from 2026-03-01T00:00:00Z to 2026-03-01T02:00:00Z step 15m";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api_answers_like_prometheus() {
    let mut s = fixture::loaded().await;
    let addr = s.running.as_ref().unwrap().bound.http;

    // Grafana's "Save & test".
    let r = post_form(
        addr,
        "/api/v1/query",
        &[("query", "1+1"), ("time", "1772323200")],
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1772323200, "2"]}})
    );

    // A plain selector over the data, 15-minute steps: every window end, equal to DriftQL.
    let d = query_range(
        addr,
        r#"driftdb_psi{model="shop", feature="channel"}"#,
        start(),
        end(),
        900,
    )
    .await;
    let series = d["result"].as_array().unwrap();
    assert_eq!(series.len(), 3);
    assert_eq!(
        series[0]["metric"],
        json!({"__name__": "driftdb_psi", "model": "shop", "version": "v1", "feature": "channel", "region": "eu"})
    );
    assert_eq!(
        series[2]["metric"],
        json!({"__name__": "driftdb_psi", "model": "shop", "version": "v1", "feature": "channel"})
    );
    let mut want = expected_samples(
        &driftql(&mut s, &format!("psi(shop.channel) {RANGE}")).await,
        None,
    );
    want.extend(expected_samples(
        &driftql(&mut s, &format!("psi(shop.channel) {RANGE} by region")).await,
        Some("region"),
    ));
    want.sort_by(|a, b| (a.1.as_str(), a.0).cmp(&(b.1.as_str(), b.0)));
    let got = flatten(&d);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        assert_eq!(g.1, w.1);
        assert_eq!(g.2.to_bits(), w.2.to_bits());
    }

    // The 5-minute lookback is a closed interval: with 5-minute steps each window's value shows
    // at its end and 5 minutes later (not at the last step, past the range end).
    let d = query_range(
        addr,
        r#"driftdb_rows{model="recs", region=""}"#,
        start(),
        end(),
        300,
    )
    .await;
    let values = d["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 2 * fixture::WINDOWS as usize - 1);
    assert_eq!(values[0], json!([(start() + WIDTH) / 1000, "120"]));
    assert_eq!(values[1][0], json!((start() + WIDTH) / 1000 + 300));

    // Aggregation by a label, arithmetic and comparison filters.
    let t = start() + 4 * WIDTH;
    let overall_by_region = query_at(
        addr,
        r#"max by (region) (driftdb_psi{model="shop", region!="", feature!~"[$].*"})"#,
        t,
    )
    .await;
    assert_eq!(overall_by_region["resultType"], "vector");
    let res = overall_by_region["result"].as_array().unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!(res[0]["metric"], json!({"region": "eu"}));
    // Check one max by hand: the largest PSI of any eu feature in the window ending at t.
    let tab = driftql(
        &mut s,
        "psi(shop.*) from 2026-03-01T00:45:00Z to 2026-03-01T01:00:00Z where region = \"eu\"",
    )
    .await;
    let vi = tab.columns.iter().position(|c| c == "value").unwrap();
    let max_eu = tab
        .rows
        .iter()
        .filter_map(|r| match r.cells[vi].value {
            Some(driftdb_proto::v1::cell::Value::Number(v)) => Some(v),
            _ => None,
        })
        .fold(f64::MIN, f64::max);
    assert_eq!(
        res[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
        max_eu
    );
    assert_eq!(res[0]["value"][0], json!(t / 1000));

    let filtered = query_at(
        addr,
        r#"driftdb_psi{model="shop", region="", feature=~"amount|tenure"} > 0.2"#,
        end(),
    )
    .await;
    let res = filtered["result"].as_array().unwrap();
    assert_eq!(res.len(), 1, "{filtered}");
    assert_eq!(res[0]["metric"]["feature"], "amount");
    assert_eq!(res[0]["metric"]["__name__"], "driftdb_psi");
    let pct = query_at(
        addr,
        r#"100 * driftdb_label_coverage{model="recs", region=""}"#,
        end(),
    )
    .await;
    assert_eq!(pct["result"][0]["value"][1], "100");
    assert!(pct["result"][0]["metric"].get("__name__").is_none());

    // avg_over_time over the last hour = the mean of the 5 window values whose end lies in
    // [end - 1h, end] (both ends included, as Prometheus 2.x does).
    let avg = query_at(
        addr,
        r#"avg_over_time(driftdb_auc{model="shop", region=""}[1h])"#,
        end(),
    )
    .await;
    let d = query_range(
        addr,
        r#"driftdb_auc{model="shop", region=""}"#,
        end() - 4 * WIDTH,
        end(),
        900,
    )
    .await;
    let vals: Vec<f64> = d["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(vals.len(), 5);
    let mean = vals.iter().sum::<f64>() / 5.0;
    let got: f64 = avg["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((got - mean).abs() < 1e-12, "{got} vs {mean}");
    // Performance falls over the windows, as the fixture makes it.
    assert!(vals[4] < vals[0], "{vals:?}");

    // topk keeps whole series; instant queries far after the data find nothing (lookback).
    let top = query_at(
        addr,
        r#"topk(2, driftdb_psi{model="shop", region=""})"#,
        end(),
    )
    .await;
    assert_eq!(top["result"].as_array().unwrap().len(), 2);
    assert!(top["result"][0]["metric"]["__name__"] == "driftdb_psi");
    let late = query_at(addr, r#"driftdb_psi{model="shop"}"#, end() + 301_000).await;
    assert_eq!(late["result"], json!([]));

    // A bare range selector in an instant query: raw samples.
    let raw = query_at(addr, r#"driftdb_rows{model="recs", region=""}[30m]"#, end()).await;
    assert_eq!(raw["resultType"], "matrix");
    assert_eq!(raw["result"][0]["values"].as_array().unwrap().len(), 3);

    // Unsupported PromQL is a 400 naming what is unsupported.
    for (q, needle) in [
        ("rate(driftdb_rows[5m])", "rate"),
        ("driftdb_psi / driftdb_ks", "two vectors"),
        ("histogram_quantile(0.9, x)", "histogram_quantile"),
        ("driftdb_psi offset 5m", "offset"),
        ("driftdb_psi{", "parse error"),
    ] {
        let e = bad(addr, "/api/v1/query", &[("query", q)]).await;
        assert!(e.contains(needle), "{q}: {e}");
    }
    let e = bad(
        addr,
        "/api/v1/query_range",
        &[
            ("query", "driftdb_psi"),
            ("start", "1"),
            ("end", "100000"),
            ("step", "1"),
        ],
    )
    .await;
    assert!(e.contains("11000 points"), "{e}");
    let e = bad(addr, "/api/v1/query_range", &[("query", "driftdb_psi")]).await;
    assert!(e.contains("start"), "{e}");
    let e = bad(addr, "/api/v1/query", &[("query", "1"), ("time", "soon")]).await;
    assert!(e.contains("time"), "{e}");
    s.running.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_labels_metadata_and_metrics() {
    let mut s = fixture::loaded().await;
    let addr = s.running.as_ref().unwrap().bound.http;
    let t = |p: &str| format!("{p}&start={}&end={}", secs(start()), secs(end()));

    let d = data(
        &get(
            addr,
            &t(&format!(
                "/api/v1/series?match[]={}",
                enc(r#"driftdb_psi{model="shop",feature="amount"}"#)
            )),
        )
        .await,
    );
    assert_eq!(
        d,
        json!([
            {"__name__": "driftdb_psi", "feature": "amount", "model": "shop", "region": "eu", "version": "v1"},
            {"__name__": "driftdb_psi", "feature": "amount", "model": "shop", "region": "us", "version": "v1"},
            {"__name__": "driftdb_psi", "feature": "amount", "model": "shop", "version": "v1"},
        ])
    );
    // Grafana's default range-less call (±9.2e18 ms) and several match[] at once, by POST.
    let r = post_form(
        addr,
        "/api/v1/series",
        &[
            ("match[]", r#"driftdb_ctr{region="eu"}"#),
            ("match[]", r#"driftdb_ndcg{region="eu"}"#),
            ("start", "-9223372036854775.808"),
            ("end", "9223372036854775.807"),
        ],
    )
    .await;
    let d = data(&r);
    assert_eq!(d.as_array().unwrap().len(), 2);
    assert_eq!(d[1]["k"], "10");
    let e = bad(addr, "/api/v1/series", &[]).await;
    assert!(e.contains("match[]"), "{e}");

    // Label names and values, with and without match[].
    let names = data(&get(addr, "/api/v1/labels").await);
    assert_eq!(
        names,
        json!([
            "__name__", "feature", "k", "model", "quantile", "region", "version"
        ])
    );
    let names = data(
        &get(
            addr,
            &format!("/api/v1/labels?match[]={}", enc(r#"driftdb_ctr"#)),
        )
        .await,
    );
    assert_eq!(
        names,
        json!(["__name__", "feature", "model", "region", "version"])
    );
    let models = data(&get(addr, "/api/v1/label/model/values").await);
    assert_eq!(models, json!(["recs", "shop"]));
    // Drift needs a reference profile: recs has none, so it has no drift series.
    let models = data(
        &get(
            addr,
            &format!("/api/v1/label/model/values?match[]={}", enc("driftdb_psi")),
        )
        .await,
    );
    assert_eq!(models, json!(["shop"]));
    let regions = data(
        &post_form(
            addr,
            "/api/v1/label/region/values",
            &[("match[]", r#"driftdb_rows{model=~"$model"}"#)],
        )
        .await,
    );
    assert_eq!(
        regions,
        json!([]),
        "a selector no series matches lists nothing"
    );
    let regions = data(
        &post_form(
            addr,
            "/api/v1/label/region/values",
            &[("match[]", r#"driftdb_rows{model=~"shop|recs"}"#)],
        )
        .await,
    );
    assert_eq!(regions, json!(["eu", "us"]));
    let metrics = data(&get(addr, "/api/v1/label/__name__/values").await);
    let metrics: Vec<&str> = metrics
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for m in [
        "driftdb_psi",
        "driftdb_ks",
        "driftdb_chi2",
        "driftdb_auc",
        "driftdb_ece",
        "driftdb_ctr",
        "driftdb_cvr",
        "driftdb_rpm",
        "driftdb_ndcg",
        "driftdb_quantile",
        "driftdb_rows",
    ] {
        assert!(metrics.contains(&m), "{m} missing from {metrics:?}");
    }
    assert!(!metrics.contains(&"driftdb_rmse"), "no regression model");

    let md = data(&get(addr, "/api/v1/metadata?metric=driftdb_psi").await);
    assert_eq!(md["driftdb_psi"][0]["type"], "gauge");
    assert!(
        md["driftdb_psi"][0]["help"]
            .as_str()
            .unwrap()
            .contains("population")
    );
    assert_eq!(
        data(&get(addr, "/api/v1/query_exemplars?query=x").await),
        json!([])
    );

    // driftdb's own health.
    let m = get(addr, "/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.text();
    for needle in [
        "driftdb_ingest_rows_accepted_total ",
        "driftdb_ingest_rows_rejected_total 0",
        "driftdb_rocksdb_sst_bytes{cf=\"win_15m\"} ",
        "driftdb_rocksdb_memtable_bytes{cf=\"win_15m\"} ",
        "driftdb_rocksdb_estimated_keys{cf=\"meta\"} ",
        "driftdb_models 2\n",
        "driftdb_prom_requests_total{endpoint=\"series\"} 3\n",
        "driftdb_prom_request_errors_total{endpoint=\"series\"} 1\n",
        "driftdb_prom_requests_total{endpoint=\"label_values\"} 5\n",
        "driftdb_prom_requests_total{endpoint=\"labels\"} 2\n",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let mem: u64 = text
        .lines()
        .find(|l| l.starts_with("driftdb_rocksdb_memtable_bytes{cf=\"win_15m\"}"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(mem > 0, "the windows written sit in the memtable");
    assert_eq!(get(addr, "/healthz").await.text(), "ok\n");
    s.running.take().unwrap().shutdown().await.unwrap();
}
