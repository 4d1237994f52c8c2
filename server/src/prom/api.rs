//! The Prometheus HTTP API subset Grafana's Prometheus data source needs, so driftdb can be
//! the data source itself:
//!
//! | route | parameters | answer |
//! |---|---|---|
//! | `/api/v1/query` | `query`, `time` (default now) | `scalar`, `vector` (or `matrix` for a bare range selector) |
//! | `/api/v1/query_range` | `query`, `start`, `end`, `step` | `matrix` |
//! | `/api/v1/series` | `match[]` (one or more), `start`, `end` | label sets |
//! | `/api/v1/labels` | `match[]` (optional) | label names |
//! | `/api/v1/label/{name}/values` | `match[]` (optional) | label values |
//! | `/api/v1/metadata` | `metric` (optional) | type and help per series name |
//! | `/api/v1/query_exemplars` | | always empty |
//!
//! Every route takes its parameters from the query string, from a form-encoded POST body, or
//! both. Times are Unix seconds (fractions allowed) or RFC 3339; `step` is seconds or a
//! Prometheus duration. Answers are `{"status":"success","data":...}` (plus `warnings` when
//! reading met corrupt windows); errors are `{"status":"error","errorType":"bad_data",
//! "error":"..."}` with 400 for bad input and unsupported PromQL, 422 (`execution`) when a
//! query is too large, 500 (`internal`) otherwise. Values are strings (`"0.25"`, `"NaN"`,
//! `"+Inf"`), timestamps seconds.
//!
//! Every endpoint sees only the series of models the caller's key may see (its team's; an
//! operator key sees all): another team's series, label names and label values never appear.
//!
//! The series and label endpoints answer from the stored series keys (no sketch is read), so
//! they list every series holding a window within retention, whatever `start`/`end` say.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use driftdb_engine::ErrorKind;
use driftdb_engine::series::OTHER_SEGMENT_VALUE;
use driftdb_engine::time::Timestamp;
use driftdb_prom::promql::{parse_duration, parse_selector};
use driftdb_prom::{
    Answer, Budget, DriftSource, Labels, Limits, MatchOp, Matcher, SegmentValues, Value, series,
};
use serde_json::{Map, Value as JsonValue, json};

use crate::auth::Principal;
use crate::error::{Error, Result, to_http};
use crate::metrics::Endpoint;
use crate::node::Node;
use crate::registry::Registry;

/// Request parameters from the query string and a form-encoded body.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Collects the query string's and, for a form body, the body's parameters.
    pub fn new(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Params {
        let mut p: Vec<(String, String)> = query
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            p.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Params(p)
    }

    /// The first value of `name`, unless blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn required(&self, name: &str) -> Result<&str> {
        self.get(name)
            .ok_or_else(|| Error::Invalid(format!("invalid parameter \"{name}\": missing")))
    }
}

/// A time parameter: Unix seconds (with a fraction) or RFC 3339, in ms.
pub fn parse_time(name: &str, s: &str) -> Result<i64> {
    let s = s.trim();
    let bad = || {
        Error::Invalid(format!(
            "invalid parameter \"{name}\": cannot parse {s:?} to a valid timestamp"
        ))
    };
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(bad());
        }
        let ms = (secs * 1000.0).round();
        // Clamp to what an i64 of milliseconds holds (the series API's min/max times).
        return Ok(ms.clamp(i64::MIN as f64, i64::MAX as f64) as i64);
    }
    Timestamp::parse_rfc3339(s).map(|t| t.0).map_err(|_| bad())
}

/// A duration parameter: seconds (with a fraction) or a Prometheus duration, in ms.
pub fn parse_step(name: &str, s: &str) -> Result<i64> {
    let s = s.trim();
    let bad = || {
        Error::Invalid(format!(
            "invalid parameter \"{name}\": cannot parse {s:?} to a valid duration"
        ))
    };
    if let Ok(secs) = s.parse::<f64>() {
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms.abs() > i64::MAX as f64 {
            return Err(bad());
        }
        return Ok(ms as i64);
    }
    parse_duration(s).ok_or_else(bad)
}

/// A sample value as Prometheus writes it.
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A timestamp as Prometheus writes it: seconds, a fraction only when there is one.
pub fn ts_json(ms: i64) -> JsonValue {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn labels_json(l: &Labels) -> JsonValue {
    JsonValue::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), JsonValue::String(v.clone())))
            .collect::<Map<String, JsonValue>>(),
    )
}

fn success(data: JsonValue, warnings: Vec<String>) -> Response {
    let mut body = json!({ "status": "success", "data": data });
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Json(body).into_response()
}

/// The Prometheus error body for `e`: 400 `bad_data` for bad input and unsupported PromQL, 422
/// `execution` for a query too large to answer (narrow it; retrying cannot help), 503 `timeout`
/// when it ran out of time, 429 when every query slot is busy, 500 `internal` otherwise.
pub fn error_response(e: &Error) -> Response {
    let prom_type = match e {
        Error::Prom(p) => Some(p.error_type()),
        _ => None,
    };
    let (status, kind, message) = match (e.kind(), prom_type) {
        (_, Some("execution")) => (StatusCode::UNPROCESSABLE_ENTITY, "execution", e.to_string()),
        (ErrorKind::InvalidArgument | ErrorKind::NotFound, _) => {
            (StatusCode::BAD_REQUEST, "bad_data", e.to_string())
        }
        (ErrorKind::DeadlineExceeded, _) => {
            (StatusCode::SERVICE_UNAVAILABLE, "timeout", e.to_string())
        }
        (ErrorKind::Cancelled, _) => (
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "canceled",
            e.to_string(),
        ),
        (ErrorKind::ResourceExhausted, _) => {
            (StatusCode::TOO_MANY_REQUESTS, "unavailable", e.to_string())
        }
        _ => {
            let (code, message) = to_http(e);
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "internal",
                message,
            )
        }
    };
    (
        status,
        Json(json!({ "status": "error", "errorType": kind, "error": message })),
    )
        .into_response()
}

/// Sets the budget's cancellation flag when dropped: the future of a request whose client went
/// away is dropped, and the evaluation it was waiting for stops at its next check.
struct CancelOnDrop(Budget);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The prom crate's limits, with the node's query timeout.
fn prom_limits(node: &Node) -> Limits {
    Limits {
        timeout: node.limits.query_timeout,
        ..Limits::default()
    }
}

/// Runs `f` with driftdb's series as a [`DriftSource`] over the caller's view, on the blocking
/// pool, under a query slot and a budget that ends with the node's query timeout or when the
/// caller goes away.
pub(crate) async fn with_source<T, F>(node: &Node, caller: &Principal, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&DriftSource<'_>, &Limits, &Budget) -> driftdb_prom::Result<T> + Send + 'static,
{
    let limits = prom_limits(node);
    let budget = Budget::new(limits.timeout);
    let _cancel = CancelOnDrop(budget.clone());
    let floor = node.store.retention_cutoff();
    let registry = std::sync::Arc::clone(&node.registry);
    node.with_query_context(caller, move |ctx| {
        let segments = |model: &str| admitted_segments(&registry, model);
        let src = DriftSource {
            ctx,
            retention_floor: floor,
            segments: &segments,
            limits,
        };
        Ok(f(&src, &limits, &budget)?)
    })
    .await
}

/// Runs `f`, counts the request, and turns an error into Prometheus' error body.
async fn answer<F>(node: &Node, endpoint: Endpoint, f: F) -> Response
where
    F: Future<Output = Result<Response>>,
{
    let started = Instant::now();
    let r = f.await;
    node.metrics
        .prom
        .record_request(endpoint, started.elapsed(), r.is_err());
    r.unwrap_or_else(|e| error_response(&e))
}

/// Evaluates `text` at one instant, or over a range's instants.
async fn evaluate(
    node: &Node,
    caller: &Principal,
    text: String,
    range: Option<(i64, i64, i64)>,
    at: Option<i64>,
) -> Result<Answer> {
    let now = node.clock.now().millis();
    with_source(node, caller, move |src, limits, budget| match range {
        Some((start, end, step)) => {
            driftdb_prom::range_query(src, &text, start, end, step, limits, budget)
        }
        None => driftdb_prom::instant_query(src, &text, at.unwrap_or(now), limits, budget),
    })
    .await
}

fn matrix_json(m: &BTreeMap<Labels, Vec<Option<f64>>>, ts: &[i64]) -> Vec<JsonValue> {
    m.iter()
        .map(|(l, vals)| {
            let values: Vec<JsonValue> = vals
                .iter()
                .zip(ts)
                .filter_map(|(v, &t)| v.map(|v| json!([ts_json(t), fmt_value(v)])))
                .collect();
            json!({ "metric": labels_json(l), "values": values })
        })
        .collect()
}

/// `/api/v1/query`.
pub async fn query(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = Params::new(q.as_deref(), &headers, &body);
    answer(&node, Endpoint::Query, async {
        let text = p.required("query")?.to_string();
        let at = p.get("time").map(|t| parse_time("time", t)).transpose()?;
        let Answer {
            value,
            steps,
            stats,
        } = evaluate(&node, &caller, text, None, at).await?;
        let t = steps.first().copied().unwrap_or_default();
        let data = match value {
            Value::Scalar(x) => json!({
                "resultType": "scalar",
                "result": [ts_json(t), fmt_value(x.first().copied().unwrap_or(f64::NAN))],
            }),
            Value::Vector(m) => json!({
                "resultType": "vector",
                "result": m.iter().filter_map(|(l, vals)| {
                    let v = vals.first().copied().flatten()?;
                    Some(json!({ "metric": labels_json(l), "value": [ts_json(t), fmt_value(v)] }))
                }).collect::<Vec<_>>(),
            }),
            Value::Matrix(series) => json!({
                "resultType": "matrix",
                "result": series.iter().map(|s| json!({
                    "metric": labels_json(&s.labels),
                    "values": s.samples.iter().map(|&(t, v)| json!([ts_json(t), fmt_value(v)])).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
        };
        Ok(success(data, stats.warnings()))
    })
    .await
}

/// `/api/v1/query_range`.
pub async fn query_range(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = Params::new(q.as_deref(), &headers, &body);
    answer(&node, Endpoint::QueryRange, async {
        let text = p.required("query")?.to_string();
        let start = parse_time("start", p.required("start")?)?;
        let end = parse_time("end", p.required("end")?)?;
        let step = parse_step("step", p.required("step")?)?;
        let Answer {
            value,
            steps,
            stats,
        } = evaluate(&node, &caller, text, Some((start, end, step)), None).await?;
        let result = match value {
            Value::Scalar(x) => {
                let m: BTreeMap<Labels, Vec<Option<f64>>> =
                    [(Vec::new(), x.into_iter().map(Some).collect())].into();
                matrix_json(&m, &steps)
            }
            Value::Vector(m) => matrix_json(&m, &steps),
            Value::Matrix(_) => {
                return Err(Error::Invalid(
                    "a range vector cannot be the result of a range query".into(),
                ));
            }
        };
        Ok(success(
            json!({ "resultType": "matrix", "result": result }),
            stats.warnings(),
        ))
    })
    .await
}

/// The label sets matching any of the `match[]` selectors (or every driftdb series when there
/// is none and `required` is false).
async fn matching(
    node: &Node,
    caller: &Principal,
    p: &Params,
    required: bool,
) -> Result<Vec<Labels>> {
    let limits = Limits::default();
    let mut selectors: Vec<Vec<Matcher>> = p
        .all("match[]")
        .into_iter()
        .map(|s| parse_selector(s, &limits))
        .collect::<driftdb_prom::Result<_>>()?;
    if selectors.is_empty() {
        if required {
            return Err(Error::Invalid("no match[] parameter provided".into()));
        }
        selectors.push(vec![Matcher::new(
            MatchOp::Re,
            "__name__",
            format!("{}.+", series::NAME_PREFIX),
        )?]);
    }
    for (name, v) in [("start", p.get("start")), ("end", p.get("end"))] {
        if let Some(v) = v {
            parse_time(name, v)?;
        }
    }
    with_source(node, caller, move |src, _limits, budget| {
        let mut set = BTreeSet::new();
        for m in &selectors {
            set.extend(src.list(m, budget)?);
        }
        Ok(set.into_iter().collect())
    })
    .await
}

/// The segment values a model has admitted, per key, plus `__other__` for a key whose cap is
/// reached (values past the cap fold into it).
fn admitted_segments(registry: &Registry, model: &str) -> SegmentValues {
    let Ok(entry) = registry.get(model) else {
        return SegmentValues::new();
    };
    let cap = entry.def.segment_cap as usize;
    let Ok(segs) = entry.segments.lock() else {
        return SegmentValues::new();
    };
    let mut out = segs.admitted().clone();
    for values in out.values_mut() {
        if values.len() >= cap {
            values.insert(OTHER_SEGMENT_VALUE.to_string());
        }
    }
    out
}

/// [`matching`], across the cluster when the node is in one (docs/SCALE_OUT.md): this node's
/// series of the models it serves, and each live member's (unless a member asked). `Err` of
/// the inner result is the answer to give instead (a retryable 503).
async fn matching_everywhere(
    node: &Node,
    caller: &Principal,
    p: &Params,
    required: bool,
    headers: &HeaderMap,
) -> Result<std::result::Result<Vec<Labels>, Response>> {
    if let Some(c) = &node.cluster
        && let Some(m) = c.moving_model()
    {
        return Ok(Err(crate::cluster::moving(
            &m,
            "no live member serves its partition yet",
        )));
    }
    let local = matching(node, caller, p, required).await?;
    let Some(c) = &node.cluster else {
        return Ok(Ok(local));
    };
    // What a member is asked: the same selectors (the default one spelled out) and range.
    let mut ask: Vec<(String, String)> = p
        .all("match[]")
        .into_iter()
        .map(|m| ("match[]".to_string(), m.to_string()))
        .collect();
    if ask.is_empty() {
        ask.push((
            "match[]".into(),
            format!("{{__name__=~\"{}.+\"}}", series::NAME_PREFIX),
        ));
    }
    for k in ["start", "end"] {
        if let Some(v) = p.get(k) {
            ask.push((k.to_string(), v.to_string()));
        }
    }
    Ok(crate::cluster::series_everywhere(c, headers, &ask, local).await)
}

/// `/api/v1/series`.
pub async fn series(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = Params::new(q.as_deref(), &headers, &body);
    answer(&node, Endpoint::Series, async {
        let found = match matching_everywhere(&node, &caller, &p, true, &headers).await? {
            Ok(f) => f,
            Err(moving) => return Ok(moving),
        };
        Ok(success(
            JsonValue::Array(found.iter().map(labels_json).collect()),
            Vec::new(),
        ))
    })
    .await
}

/// `/api/v1/labels`.
pub async fn labels(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = Params::new(q.as_deref(), &headers, &body);
    answer(&node, Endpoint::Labels, async {
        let found = match matching_everywhere(&node, &caller, &p, false, &headers).await? {
            Ok(f) => f,
            Err(moving) => return Ok(moving),
        };
        let names: BTreeSet<&str> = found
            .iter()
            .flat_map(|l| l.iter().map(|(n, _)| n.as_str()))
            .collect();
        Ok(success(json!(names), Vec::new()))
    })
    .await
}

/// `/api/v1/label/{name}/values`.
pub async fn label_values(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = Params::new(q.as_deref(), &headers, &body);
    answer(&node, Endpoint::LabelValues, async {
        let found = match matching_everywhere(&node, &caller, &p, false, &headers).await? {
            Ok(f) => f,
            Err(moving) => return Ok(moving),
        };
        let values: BTreeSet<&str> = found
            .iter()
            .filter_map(|l| l.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()))
            .collect();
        Ok(success(json!(values), Vec::new()))
    })
    .await
}

/// `/api/v1/metadata`: every exported series name as a gauge with DriftQL's help text.
pub async fn metadata(RawQuery(q): RawQuery) -> Response {
    let p = Params::new(q.as_deref(), &HeaderMap::new(), &[]);
    let only = p.get("metric");
    let mut data = Map::new();
    for name in series::series_names() {
        if only.is_some_and(|m| m != name) {
            continue;
        }
        let help = series::help(&name).unwrap_or_default();
        data.insert(name, json!([{ "type": "gauge", "help": help, "unit": "" }]));
    }
    success(JsonValue::Object(data), Vec::new())
}

/// `/api/v1/query_exemplars`: driftdb keeps no exemplars.
pub async fn exemplars() -> Response {
    success(json!([]), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps() {
        assert_eq!(parse_time("t", "1772323200").unwrap(), 1_772_323_200_000);
        assert_eq!(
            parse_time("t", "1772323200.123").unwrap(),
            1_772_323_200_123
        );
        assert_eq!(
            parse_time("t", "2026-03-01T00:00:00Z").unwrap(),
            1_772_323_200_000
        );
        assert!(
            parse_time("start", "yesterday")
                .unwrap_err()
                .to_string()
                .contains("\"start\"")
        );
        assert!(parse_time("t", "NaN").is_err());
        assert_eq!(parse_time("t", "-9.3e15").unwrap(), i64::MIN);
        assert_eq!(parse_step("step", "15").unwrap(), 15_000);
        assert_eq!(parse_step("step", "0.5").unwrap(), 500);
        assert_eq!(parse_step("step", "1m30s").unwrap(), 90_000);
        assert!(parse_step("step", "fast").is_err());
    }

    #[test]
    fn values_and_timestamps_print_like_prometheus() {
        assert_eq!(fmt_value(0.25), "0.25");
        assert_eq!(fmt_value(2.0), "2");
        assert_eq!(fmt_value(1e-7), "0.0000001");
        assert_eq!(fmt_value(f64::NAN), "NaN");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
        assert_eq!(fmt_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(ts_json(1_772_323_200_000).to_string(), "1772323200");
        assert_eq!(ts_json(1_772_323_200_500).to_string(), "1772323200.5");
    }

    #[test]
    fn parameters_merge_query_string_and_form_body() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let p = Params::new(
            Some("match[]=driftdb_psi&start=1"),
            &h,
            b"match%5B%5D=driftdb_ks%7Bmodel%3D%22m%22%7D&query=1%2B1",
        );
        assert_eq!(p.all("match[]"), ["driftdb_psi", "driftdb_ks{model=\"m\"}"]);
        assert_eq!(p.get("query"), Some("1+1"));
        assert_eq!(p.get("start"), Some("1"));
        // A body that is not a form is not read as parameters.
        let p = Params::new(None, &HeaderMap::new(), b"query=1");
        assert_eq!(p.get("query"), None);
        assert!(
            p.required("query")
                .unwrap_err()
                .to_string()
                .contains("query")
        );
    }

    #[test]
    fn error_bodies() {
        let r = error_response(&Error::Invalid("nope".into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = error_response(&Error::Prom(driftdb_prom::Error::TooLarge(
            "too many".into(),
        )));
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let r = error_response(&Error::Overloaded("busy".into()));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let r = error_response(&Error::Internal("secret".into()));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
