//! The HTTP server (axum): health, driftdb's own metrics, and the DriftQL API (README.md).
//!
//! | route | answers |
//! |---|---|
//! | `GET /healthz` | `ok` |
//! | `GET /metrics` | driftdb's own counters, Prometheus text format |
//! | `GET /models/{id}/drift?from=&to=&step=&version=` | `psi(<id>.*)` per feature and step |
//! | `GET /models/{id}/performance?metric=auc&from=&to=&step=&version=` | `<metric>(<id>)` per step |
//! | `GET /models/{id}/drift/summary?from=&to=&version=` | drifted features, prediction shift, performance vs reference |
//! | `GET /api/v1/driftql?q=QUERY`, `POST /api/v1/driftql` with `{"query": "QUERY"}` | any DriftQL statement |
//! | `/models/{id}/alerts`, `/models/{id}/events`, `/rules`, `/alerts` | rules and alerts ([`rules`]) |
//! | `/silences`, `/silences/{id}` | silences ([`silences`]) |
//! | `GET /models/{id}/report?from=&to=&step=&by=&version=&format=json\|html` | the content of `driftdb report` (docs/REPORT.md), or its page |
//! | `GET /ui`, `GET /models`, `GET /alerts/watch` | the console, the models a key sees, the live alert feed ([`ui`]) |
//! | `POST /api/v1/read`, `/api/v1/query`, `query_range`, `series`, `labels`, `label/{name}/values`, `metadata` | Prometheus remote read and query API ([`crate::prom`]) |
//!
//! Times (`from`, `to`) are RFC 3339 (`2026-03-01T00:00:00Z`), `now` or `now-DURATION`
//! (`now-6h`); `step` is a duration (`15m`, `1h`, `1d`). The drift and performance series
//! default to the last 24 hours (`over 24h`, the open window included) stepped by the model's
//! window; with only `from`, `to` is now; with only `to`, `from` is 24 hours earlier. The
//! summary defaults to the last hour. `version` defaults to the newest version with a
//! reference profile (or with data), and the answer names the version it used.
//!
//! Tables come back as `{"columns": [...], "rows": [{column: value, ...}], "warnings": [...]}`,
//! the rows keyed by the column names of query/DRIFTQL.md (`time`, `model`, `version`, `feature`,
//! segment keys, `metric`, `value`, `n`, `baseline_n`, `p`), nulls included. The series
//! endpoints add `model`, `version` and the DriftQL `query` they ran. Errors are
//! `{"error": "..."}` with 400 for an invalid query or parameter (the message of a DriftQL
//! syntax error names the line and column), 404 for an unknown model, 500 otherwise.
//!
//! Every route but `/healthz` needs an API key (`Authorization: Bearer <key>`) with the route's
//! scope ([`crate::auth::http_need`]): 401 without a valid key, 403 without the scope, and
//! another team's model answers 404 like an unknown one. Request bodies are limited to
//! [`crate::limits::Limits::max_http_body_bytes`] (413 past it) and requests in flight to
//! [`crate::limits::Limits::http_concurrency`] (429 with `Retry-After` past it).
//!
//! Parameters never reach DriftQL as raw text: model ids and versions that are not plain
//! identifiers are written as DriftQL strings, `metric` must be an identifier, and times and
//! steps are parsed and written back in canonical form.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use driftdb_engine::time::DurationMs;
use driftdb_query::Table;
use driftdb_query::ast::ModelRef;
use serde_json::{Value, json};

mod keys;
mod routing;
mod rules;
mod silences;
mod ui;

/// Runs `f` (store reads and writes) on the blocking pool; a panic there is an internal error.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(Error::Internal(e.to_string())))?
        .map_err(ApiError)
}

use crate::auth::Principal;
use crate::error::{Error, RETRY_AFTER_SECS, to_http};
use crate::node::Node;
use crate::query::{TimeArg, is_identifier, model_ref, range_clause, without_placeholder_pos};

/// The range of the drift and performance series when the request names none.
const DEFAULT_SERIES_RANGE_MS: i64 = 24 * 3_600_000;

async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /ingest/rejects`: records a source could not ingest at all, oldest first (kept in a
/// bounded ring when the Kafka consumer has no dead-letter topic).
async fn ingest_rejects(State(node): State<Node>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "rejects": node.sources.rejects() }))
}

/// Saves a checkpoint of the store now; what it did as JSON.
async fn checkpoint_now(State(node): State<Node>) -> Response {
    match node.save_checkpoint().await {
        Ok(saved) => axum::Json(saved).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// The stored checkpoints, oldest first: number, time, files and bytes of each.
async fn checkpoint_list(State(node): State<Node>) -> Response {
    let Some(c) = node.checkpoints.clone() else {
        return ApiError(Error::Invalid(
            "this node has no checkpoint store (serve --checkpoint-url)".to_string(),
        ))
        .into_response();
    };
    let listed = async {
        let mut out = Vec::new();
        for seq in c.seqs().await? {
            let m = c.manifest(seq).await?;
            out.push(serde_json::json!({
                "seq": m.seq, "created_ms": m.created_ms, "files": m.files.len(),
                "bytes": m.bytes(), "store_sequence": m.store_sequence,
            }));
        }
        Ok::<_, Error>(out)
    };
    match listed.await {
        Ok(list) => {
            axum::Json(serde_json::json!({ "url": c.url(), "checkpoints": list })).into_response()
        }
        Err(e) => ApiError(e).into_response(),
    }
}

async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    let mut body = node.metrics.render(&node.store);
    if let Some(c) = &node.checkpoints {
        body.push_str(&c.render());
    }
    body.push_str(&crate::prom::health::render(&node));
    body.push_str(&node.rules.render_metrics());
    body.push_str(&node.sources.render());
    if let Some(c) = &node.cluster {
        body.push_str(&c.render());
    }
    let rules = std::sync::Arc::clone(&node.rules);
    if let Ok(gauges) =
        tokio::task::spawn_blocking(move || crate::rules::render_window_gauges(&rules)).await
    {
        body.push_str(&gauges);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}

/// An error as a JSON body with the status its kind maps to.
#[derive(Debug)]
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError(Error::Invalid(e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, message) = to_http(&self.0);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(json!({ "error": message }))).into_response();
        if code == 429 || code == 503 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        r
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Query-string parameters of the model endpoints; which ones apply depends on the route.
#[derive(Debug, Default, serde::Deserialize)]
struct ModelParams {
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    version: Option<String>,
    metric: Option<String>,
}

/// `Some(s)` unless absent or blank.
fn given(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn time_param(what: &str, s: Option<&str>) -> Result<Option<TimeArg>, Error> {
    TimeArg::parse(what, s.unwrap_or(""))
}

fn step_param(s: Option<String>) -> Result<Option<DurationMs>, Error> {
    given(s)
        .map(|s| {
            DurationMs::parse(s.trim()).map_err(|_| {
                Error::Invalid(format!(
                    "step: {s:?} is not a duration such as 15m, 1h or 1d"
                ))
            })
        })
        .transpose()
}

fn table_json(t: &Table) -> Value {
    json!({ "columns": t.columns, "rows": t.to_json() })
}

/// Runs `<call>(<model>...) <range> step <step>` for one model, `call` building the metric
/// call from the model reference. The version is resolved first (so the answer can name it)
/// and pinned in the query text.
async fn series(
    node: Node,
    principal: Principal,
    id: String,
    p: ModelParams,
    call: impl FnOnce(&str) -> String + Send + 'static,
) -> ApiResult {
    let from = time_param("from", p.from.as_deref())?;
    let to = time_param("to", p.to.as_deref())?;
    let step = step_param(p.step)?;
    let version = given(p.version);
    let default_range = DurationMs::new(DEFAULT_SERIES_RANGE_MS).map_err(Error::from)?;
    let body = node
        .with_query_context(&principal, move |ctx| {
            let scope = driftdb_query::plan::resolve_model(
                ctx,
                &ModelRef {
                    id: id.clone(),
                    version,
                    pos: Default::default(),
                },
            )
            .map_err(without_placeholder_pos)?;
            let step = match step {
                Some(s) => s,
                None => DurationMs::new(scope.resolution.width_ms())?,
            };
            let text = format!(
                "{} {} step {step}",
                call(&model_ref(&id, Some(&scope.version))),
                range_clause(from, to, default_range)
            );
            let out = driftdb_query::run(ctx, &text)?;
            Ok(json!({
                "model": id,
                "version": scope.version,
                "query": text,
                "columns": out.table.columns,
                "rows": out.table.to_json(),
                "warnings": out.warnings,
            }))
        })
        .await?;
    Ok(Json(body))
}

/// `GET /models/{id}/drift`: PSI of every feature against the reference, per step.
async fn drift(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    params: Result<Query<ModelParams>, QueryRejection>,
) -> ApiResult {
    let Query(p) = params?;
    series(node, caller, id, p, |model| format!("psi({model}.*)")).await
}

/// `GET /models/{id}/performance`: one labelled-performance metric (default `auc`) per step.
async fn performance(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    params: Result<Query<ModelParams>, QueryRejection>,
) -> ApiResult {
    let Query(mut p) = params?;
    let metric = given(p.metric.take()).unwrap_or_else(|| "auc".to_string());
    if !is_identifier(&metric) {
        return Err(Error::Invalid(format!(
            "metric: {metric:?} is not a metric name such as auc, ece or rmse"
        ))
        .into());
    }
    series(node, caller, id, p, move |model| {
        format!("{metric}({model})")
    })
    .await
}

/// `GET /models/{id}/drift/summary`: drifted features, prediction shift and performance
/// against the reference.
async fn drift_summary(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    params: Result<Query<ModelParams>, QueryRejection>,
) -> ApiResult {
    let Query(p) = params?;
    let from = time_param("from", p.from.as_deref())?;
    let to = time_param("to", p.to.as_deref())?;
    let version = given(p.version);
    let s = node
        .drift_summary(&caller, id.clone(), version, from, to)
        .await?;
    Ok(Json(json!({
        "model": id,
        "version": s.version,
        "from": s.range.map(|r| r.from.to_rfc3339()),
        "to": s.range.map(|r| r.to.to_rfc3339()),
        "drifted_features": table_json(&s.drifted_features),
        "prediction_shift": table_json(&s.prediction_shift),
        "performance": table_json(&s.performance),
        "warnings": s.warnings,
    })))
}

#[derive(Debug, serde::Deserialize)]
struct ReportParams {
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    version: Option<String>,
    by: Option<String>,
    format: Option<String>,
}

/// `GET /models/{id}/report?from=&to=&step=&by=&version=&format=json|html`: the content of
/// `driftdb report` (schema `driftdb.report.v1`), or the report page itself with
/// `format=html` (self-contained: no scripts, no external URLs).
async fn report(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    params: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let html = match given(p.format).as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(other) => {
            return Err(Error::Invalid(format!("format: {other:?} is not json or html")).into());
        }
    };
    let args = crate::node::ReportArgs {
        model: id,
        version: given(p.version),
        from: time_param("from", p.from.as_deref())?,
        to: time_param("to", p.to.as_deref())?,
        step_ms: crate::query::step_arg(p.step.as_deref().unwrap_or(""))?,
        by: given(p.by),
        source: "driftdb server".into(),
    };
    let r = node.report(&caller, args).await?;
    if html {
        let page = driftdb_report::render::html(&r);
        return Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response());
    }
    let v = serde_json::to_value(&r).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Json(v).into_response())
}

/// Runs one DriftQL statement and answers with its table.
async fn driftql(node: &Node, caller: &Principal, text: String) -> ApiResult {
    let out = node.query(caller, text).await?;
    Ok(Json(json!({
        "columns": out.table.columns,
        "rows": out.table.to_json(),
        "warnings": out.warnings,
    })))
}

#[derive(Debug, serde::Deserialize)]
struct DriftqlParams {
    q: Option<String>,
}

/// `GET /api/v1/driftql?q=QUERY`.
async fn driftql_get(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    params: Result<Query<DriftqlParams>, QueryRejection>,
) -> ApiResult {
    let Query(p) = params?;
    let q =
        p.q.ok_or_else(|| Error::Invalid("missing query parameter q".into()))?;
    driftql(&node, &caller, q).await
}

#[derive(Debug, serde::Deserialize)]
struct DriftqlBody {
    query: String,
}

/// `POST /api/v1/driftql` with `{"query": "QUERY"}`.
async fn driftql_post(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    body: Bytes,
) -> ApiResult {
    let b: DriftqlBody = serde_json::from_slice(&body).map_err(|e| {
        Error::Invalid(format!(
            "the body must be JSON {{\"query\": \"<DriftQL>\"}}: {e}"
        ))
    })?;
    driftql(&node, &caller, b.query).await
}

/// Refuses a request at once (429 with `Retry-After`) when the node already serves
/// [`crate::limits::Limits::http_concurrency`] requests; `/healthz` always passes.
async fn limit_in_flight(State(node): State<Node>, req: Request, next: Next) -> Response {
    if req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| p.as_str() == "/healthz")
    {
        return next.run(req).await;
    }
    let Ok(_permit) = std::sync::Arc::clone(&node.gates.http).try_acquire_owned() else {
        node.metrics
            .overloaded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return ApiError(Error::Overloaded(format!(
            "too many HTTP requests in flight (limit {}); retry after {RETRY_AFTER_SECS}s",
            node.limits.http_concurrency
        )))
        .into_response();
    };
    next.run(req).await
}

/// The HTTP routes, each behind the auth check, the in-flight limit and the body limit.
pub fn router(node: Node) -> Router {
    let body_limit = node.limits.max_http_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ingest/rejects", get(ingest_rejects))
        .route("/admin/checkpoint", axum::routing::post(checkpoint_now))
        .route("/admin/checkpoints", get(checkpoint_list))
        .route("/models/{id}/drift", get(drift))
        .route("/models/{id}/drift/summary", get(drift_summary))
        .route("/models/{id}/performance", get(performance))
        .route("/models/{id}/report", get(report))
        .route("/api/v1/driftql", get(driftql_get).post(driftql_post))
        .merge(rules::routes())
        .merge(silences::routes())
        .merge(ui::routes())
        .merge(keys::routes())
        // Prometheus remote read and query API: see `crate::prom`.
        .merge(crate::prom::routes())
        // Layers run last-added first: the in-flight limit, then auth, then the cluster's
        // routing (answer here, relay to the model's owner, or 503 while it moves), then the
        // handler.
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            routing::http,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            crate::guard::http,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            limit_in_flight,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(node)
}
