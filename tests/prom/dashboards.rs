//! The Grafana dashboards in `dashboards/`: their template variables resolve through driftdb's
//! series and label APIs the way Grafana calls them, and every panel (and annotation) query
//! returns data from driftdb's own query API. Panels on the self-monitoring data source (a
//! Prometheus scraping `/metrics`) must name metrics that `/metrics` exports; the Prometheus
//! test runs them for real.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;

use super::api::{query_at, query_range};
use super::fixture::{self, end, start};
use super::http::{enc, get};

/// Self-monitoring metrics a panel may use before the server exports them; their panels stay
/// empty until it does. When one appears on `/metrics`, the test below fails so it leaves this
/// list. (Empty: the rule evaluator and outbox gauges are exported.)
pub const PENDING_RULES_METRICS: &[&str] = &[];

pub struct Target {
    pub dashboard: String,
    pub title: String,
    pub expr: String,
    pub instant: bool,
    /// On the self-monitoring data source (`${selfmon}`), not driftdb.
    pub selfmon: bool,
}

pub fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        out.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        ["executive.json", "ml-health.json", "sre.json"]
    );
    out
}

fn uid(ds: &Value) -> &str {
    ds["uid"].as_str().unwrap_or("")
}

/// Every query of a dashboard: panel targets (rows' nested panels too) and annotations.
pub fn targets(name: &str, d: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        if let Some(nested) = p["panels"].as_array() {
            panels.extend(nested);
        }
        let Some(ts) = p["targets"].as_array() else {
            continue;
        };
        for t in ts {
            let ds = if t["datasource"].is_object() {
                &t["datasource"]
            } else {
                &p["datasource"]
            };
            let u = uid(ds);
            assert!(
                u == "${datasource}" || u == "${selfmon}",
                "{name} / {}: data source {u:?}",
                p["title"]
            );
            out.push(Target {
                dashboard: name.into(),
                title: p["title"].as_str().unwrap().into(),
                expr: t["expr"].as_str().unwrap().into(),
                instant: t["instant"].as_bool().unwrap_or(false),
                selfmon: u == "${selfmon}",
            });
        }
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            assert_eq!(uid(&a["datasource"]), "${datasource}");
            out.push(Target {
                dashboard: name.into(),
                title: format!("annotation {}", a["name"]),
                expr: expr.into(),
                instant: false,
                selfmon: false,
            });
        }
    }
    out
}

/// Replaces `$name` and `${name}` of known variables the way Grafana does (a `$` not followed
/// by a known variable name, like the `[$]` in `feature=~"[$]score"`, stays).
pub fn interpolate(s: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (name, len) = if let Some(braced) = rest.strip_prefix("${") {
            let close = braced.find('}').unwrap();
            (&braced[..close], close + 3)
        } else {
            let n = rest[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - 1);
            (&rest[1..1 + n], 1 + n)
        };
        match vars.iter().find(|(k, _)| k == name) {
            Some((_, v)) => {
                out.push_str(v);
                rest = &rest[len..];
            }
            None => {
                out.push('$');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Grafana's variable regex, for the one form the dashboards use:
/// `/^(?!(a|b|c)$).+$/` keeps names other than a, b, c.
fn regex_keeps(regex: &str, value: &str) -> bool {
    if regex.is_empty() {
        return true;
    }
    let inner = regex
        .strip_prefix("/^(?!(")
        .and_then(|r| r.strip_suffix(")$).+$/"))
        .unwrap_or_else(|| panic!("the test does not understand the variable regex {regex}"));
    !value.is_empty() && !inner.split('|').any(|x| x == value)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

async fn data(addr: SocketAddr, target: &str) -> Value {
    let r = get(addr, target).await;
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    r.json()["data"].clone()
}

/// Resolves a dashboard's query variables in order, calling driftdb as Grafana would:
/// `label_values(SEL, L)` by `/api/v1/series?match[]=SEL` (checked against
/// `/api/v1/label/L/values?match[]=SEL`), `label_names(SEL)` by `/api/v1/labels?match[]=SEL`.
/// An All-able variable takes its All value, others the first value.
pub async fn resolve_vars(addr: SocketAddr, name: &str, d: &Value) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "datasource" {
            continue;
        }
        assert_eq!(v["type"], "query", "{name}: {v}");
        let var = v["name"].as_str().unwrap().to_string();
        let def = interpolate(v["query"]["query"].as_str().unwrap(), &vars);
        let values: Vec<String> = if let Some(args) = def
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (sel, label) = args.rsplit_once(',').unwrap();
            let (sel, label) = (sel.trim(), label.trim());
            let series = data(addr, &format!("/api/v1/series?match[]={}", enc(sel))).await;
            let mut from_series: Vec<String> = series
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s[label].as_str().map(str::to_string))
                .collect();
            from_series.sort();
            from_series.dedup();
            let listed = strings(
                &data(
                    addr,
                    &format!("/api/v1/label/{label}/values?match[]={}", enc(sel)),
                )
                .await,
            );
            assert_eq!(from_series, listed, "{name} ${var}: {def}");
            listed
        } else if let Some(sel) = def
            .strip_prefix("label_names(")
            .and_then(|r| r.strip_suffix(')'))
        {
            strings(&data(addr, &format!("/api/v1/labels?match[]={}", enc(sel))).await)
        } else {
            panic!("{name} ${var}: unsupported variable query {def}");
        };
        let regex = v["regex"].as_str().unwrap_or("");
        let values: Vec<String> = values
            .into_iter()
            .filter(|x| regex_keeps(regex, x))
            .collect();
        assert!(!values.is_empty(), "{name} ${var}: {def} has no values");
        let value = if v["includeAll"].as_bool().unwrap_or(false) {
            v["allValue"]
                .as_str()
                .map_or_else(|| format!("({})", values.join("|")), str::to_string)
        } else {
            values[0].clone()
        };
        vars.push((var, value));
    }
    vars
}

/// The metric names an expression reads.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("driftdb_") {
        let tail = &rest[i..];
        let n = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..n].to_string());
        rest = &tail[n..];
    }
    out
}

#[test]
fn interpolation_matches_grafana() {
    let vars = vec![
        ("segment_key".to_string(), "region".to_string()),
        ("segment".to_string(), "^$".to_string()),
        ("model".to_string(), "shop".to_string()),
    ];
    assert_eq!(
        interpolate(
            r#"x{model="$model", feature=~"[$]score", $segment_key=~"${segment}", a="$other"}"#,
            &vars
        ),
        r#"x{model="shop", feature=~"[$]score", region=~"^$", a="$other"}"#
    );
    assert!(regex_keeps("/^(?!(__name__|model)$).+$/", "region"));
    assert!(!regex_keeps("/^(?!(__name__|model)$).+$/", "model"));
    assert_eq!(
        metric_names("rate(driftdb_a_total[1m]) / driftdb_b"),
        ["driftdb_a_total", "driftdb_b"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_driftdb() {
    let mut s = fixture::loaded().await;
    let addr = s.running.as_ref().unwrap().bound.http;
    let metrics = get(addr, "/metrics").await.text();
    let mut checked = 0;
    for (name, d) in dashboards() {
        let var_names: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        for needed in ["datasource", "model", "segment_key", "segment"] {
            assert!(var_names.contains(&needed), "{name} lacks ${needed}");
        }
        let vars = resolve_vars(addr, &name, &d).await;
        let ts = targets(&name, &d);
        assert!(ts.len() >= 5, "{name}: {} queries", ts.len());
        for t in ts {
            let expr = interpolate(&t.expr, &vars);
            assert!(
                !expr.contains("$model") && !expr.contains("$segment"),
                "{name} / {}: {expr}",
                t.title
            );
            if t.selfmon {
                for m in metric_names(&t.expr) {
                    if PENDING_RULES_METRICS.contains(&m.as_str()) {
                        assert!(
                            !metrics.contains(&format!("{m} "))
                                && !metrics.contains(&format!("{m}{{")),
                            "{m} is exported now: drop it from PENDING_RULES_METRICS"
                        );
                    } else {
                        assert!(
                            metrics.contains(&format!("# TYPE {m} ")),
                            "{name} / {}: /metrics has no {m}",
                            t.title
                        );
                    }
                }
                continue;
            }
            let d = if t.instant {
                query_at(addr, &expr, end()).await
            } else {
                query_range(addr, &expr, start(), end(), 900).await
            };
            let result = d["result"].as_array().unwrap();
            assert!(
                !result.is_empty(),
                "{name} / {}: {expr} returned nothing",
                t.title
            );
            if !t.instant {
                assert!(
                    result
                        .iter()
                        .any(|s| !s["values"].as_array().unwrap().is_empty()),
                    "{name} / {}: no values",
                    t.title
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} driftdb queries checked");
    s.running.take().unwrap().shutdown().await.unwrap();
}
