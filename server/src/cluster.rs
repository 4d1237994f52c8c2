//! One node of several: who owns which model, and the routing of model requests to the owner
//! (docs/SCALE_OUT.md).
//!
//! N `driftdb serve` nodes join one Kafka consumer group on the inference topic (keyed by model
//! id). The group's assignment decides which node consumes which partitions, so a model's data
//! lands on the node that owns its partition. Each node publishes a membership record (node
//! id, HTTP URL, owned partitions, the models it owns, an epoch) on a compacted topic and reads
//! everyone's (`driftdb` CLI's `cluster` module does the Kafka part); this module keeps that
//! table and decides, per request:
//!
//! - **local**: the node owns every partition the model's data came from;
//! - **forward** to the live member that lists the model (the answer is relayed as it came,
//!   status and body);
//! - **moving**: the model's partition is being handed over (the node holds data of it but no
//!   longer owns it, or a forwarded request reached a node that does not own the model any
//!   more): `503` with `Retry-After`, never an answer from stale data;
//! - a model no member's Kafka data names (defined only, ingested over gRPC or files, or
//!   unknown) is answered locally.
//!
//! A forwarded request carries [`FORWARDED_HEADER`] and is never forwarded again. Every answer
//! of a routed route names the node that produced it in [`NODE_HEADER`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::checkpoint::DeliveryGate;
use crate::rules::{Handover, Ownership};

/// Set on a request one node forwards to another: the sender's node id.
pub const FORWARDED_HEADER: &str = "x-driftdb-forwarded-by";
/// Set on the answer of a routed route: the id of the node that answered.
pub const NODE_HEADER: &str = "x-driftdb-node";

/// One node's membership record, as published on the membership topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The node's id.
    pub node: String,
    /// Its HTTP base URL.
    pub url: String,
    /// Bumped at every change of its assignment.
    pub epoch: u64,
    /// The inference topic's partitions it owns.
    pub partitions: Vec<i32>,
    /// The models it answers for (their data lies in those partitions only, all caught up),
    /// each with its partitions.
    pub models: BTreeMap<String, Vec<i32>>,
    /// When it was published (the publisher's clock, milliseconds since the epoch).
    pub at_ms: i64,
    /// Of each model it answers for, where its rule evaluation stands (cursor and rule
    /// states): the next owner starts there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handover: BTreeMap<String, Handover>,
}

/// Where a request for a model goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Answered here.
    Local,
    /// Relayed to the member `node` at `url`.
    Forward {
        /// The owner's id.
        node: String,
        /// Its HTTP base URL.
        url: String,
    },
    /// Being handed over: retry.
    Moving,
}

#[derive(Debug, Default)]
struct State_ {
    /// The inference topic's partitions this node owns now.
    owned: BTreeSet<i32>,
    /// Owned partitions not yet consumed up to the end they had when assigned (that end,
    /// once known): their models are not answered from here yet.
    warming: BTreeMap<i32, Option<i64>>,
    epoch: u64,
    /// Each model's partitions, from this node's store.
    model_parts: BTreeMap<String, BTreeSet<i32>>,
    /// Each model's partitions as members' records named them (dead members' included): a
    /// model known to live in Kafka is never answered from a node that does not hold it.
    learned: BTreeMap<String, BTreeSet<i32>>,
    /// The other members, with when their last record arrived here.
    members: HashMap<String, (Member, Instant)>,
    /// Each model's rule evaluation as the member furthest along published it (dead members'
    /// included): where this node starts when it takes the model over.
    handed: BTreeMap<String, Handover>,
}

/// The membership table and routing counters of a node in a cluster.
#[derive(Debug)]
pub struct Cluster {
    node_id: RwLock<String>,
    url: RwLock<String>,
    topic: String,
    ttl: Duration,
    state: RwLock<State_>,
    pub(crate) client: reqwest::Client,
    changed: tokio::sync::Notify,
    counts: [AtomicU64; 4],
    gate: Arc<DeliveryGate>,
    /// What routing needs that is known: bit 1 the store's model partitions, bit 2 the
    /// membership topic read to its end at start ([`Cluster::loaded`]).
    loaded: std::sync::atomic::AtomicU8,
    started: Instant,
    waited_warned: std::sync::atomic::AtomicBool,
}

const RESULTS: [&str; 4] = ["local", "forwarded", "moving", "forward_failed"];

impl Cluster {
    /// A node routing by the partitions of the inference topic `topic`; members silent for
    /// `ttl` are dropped. The URL (and a node id left empty) are set once the HTTP port is
    /// bound ([`Cluster::set_address`]).
    pub fn new(node_id: Option<String>, topic: &str, ttl: Duration) -> Cluster {
        crate::tls::install_crypto_provider();
        Cluster {
            node_id: RwLock::new(node_id.unwrap_or_default()),
            url: RwLock::new(String::new()),
            topic: topic.to_string(),
            ttl,
            state: RwLock::default(),
            // Redirects are not followed: a member answers what it answers.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap_or_default(),
            changed: tokio::sync::Notify::new(),
            counts: Default::default(),
            gate: Arc::new(DeliveryGate::new(ttl)),
            loaded: std::sync::atomic::AtomicU8::new(0),
            started: Instant::now(),
            waited_warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The store's model partitions have been read.
    pub const LOADED_MODELS: u8 = 1;
    /// The membership topic has been read up to the end it had at start.
    pub const LOADED_MEMBERS: u8 = 2;

    /// Marks `part` ([`Cluster::LOADED_MODELS`], [`Cluster::LOADED_MEMBERS`]) as known.
    pub fn mark_loaded(&self, part: u8) {
        self.loaded.fetch_or(part, Ordering::Relaxed);
    }

    /// Whether the node knows which models it serves: its store's model partitions and every
    /// member's record are read. Until then it judges no model's windows (a node restarted on
    /// a store holding rows of models another member now serves would judge them on stale
    /// rows). After twice the member TTL it goes on with what it has, and says so once.
    pub fn loaded(&self) -> bool {
        let all = Self::LOADED_MODELS | Self::LOADED_MEMBERS;
        if self.loaded.load(Ordering::Relaxed) & all == all {
            return true;
        }
        let waited = self.started.elapsed() > self.ttl.saturating_mul(2);
        if waited && !self.waited_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "cluster: the membership topic or the store's model partitions are still unread; evaluating rules with what is known"
            );
        }
        waited
    }

    /// Holds each webhook delivery until a published membership record holds the rule state
    /// that produced it (so the model's next owner never evaluates its window again); the
    /// publisher covers it after each record the broker acknowledged. A delivery waits at most
    /// the member TTL.
    pub fn gate(&self) -> Arc<DeliveryGate> {
        Arc::clone(&self.gate)
    }

    /// The inference topic whose partitions decide ownership.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sets the URL other members reach this node at; the node id defaults to it.
    pub fn set_address(&self, url: &str) {
        if let Ok(mut u) = self.url.write() {
            *u = url.trim_end_matches('/').to_string();
        }
        if let Ok(mut id) = self.node_id.write()
            && id.is_empty()
        {
            *id = url.trim_end_matches('/').to_string();
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> String {
        self.node_id.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The partitions of the inference topic the consumer group gave this node (an empty set
    /// when they were revoked). Wakes the publisher.
    pub fn set_owned(&self, partitions: impl IntoIterator<Item = i32>) {
        if let Ok(mut st) = self.state.write() {
            st.owned = partitions.into_iter().collect();
            st.warming = st.owned.iter().map(|p| (*p, None)).collect();
            st.epoch += 1;
        }
        self.changed.notify_one();
    }

    /// An owned partition's progress: the next offset to apply and the partition's end now.
    /// A partition is warming from its assignment until `next` reaches the end it had when
    /// first reported after the assignment; then its models are answered here (and this node
    /// names them in its membership record, at once).
    pub fn progress(&self, partition: i32, next: i64, end: i64) {
        let mut ready = false;
        if let Ok(mut st) = self.state.write()
            && let Some(target) = st.warming.get_mut(&partition)
        {
            let t = *target.get_or_insert(end);
            if next >= t {
                st.warming.remove(&partition);
                ready = true;
            }
        }
        if ready {
            self.changed.notify_one();
        }
    }

    /// The inference topic's partitions this node owns.
    pub fn owned(&self) -> Vec<i32> {
        self.state
            .read()
            .map(|st| st.owned.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Owned partitions still catching up.
    pub fn warming(&self) -> Vec<i32> {
        self.state
            .read()
            .map(|st| st.warming.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Waits until the assignment changes (or `max` passes).
    pub async fn changed_or(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.changed.notified()).await;
    }

    /// Replaces what this node knows of each model's partitions (from its store).
    pub fn set_model_partitions(&self, parts: BTreeMap<String, BTreeSet<i32>>) {
        if let Ok(mut st) = self.state.write() {
            st.model_parts = parts;
        }
    }

    /// Takes a member's record (this node's own is ignored).
    /// A record older than the TTL by the wall clock (read back from the topic at start, of a
    /// member that may be gone) counts only for what is left of its TTL.
    /// `now_ms` is this node's clock.
    pub fn upsert(&self, m: Member, now_ms: i64) {
        if m.node == self.node_id() {
            return;
        }
        if let Ok(mut st) = self.state.write() {
            for (model, parts) in &m.models {
                st.learned
                    .entry(model.clone())
                    .or_default()
                    .extend(parts.iter().copied());
            }
            for (model, h) in &m.handover {
                let ahead = st
                    .handed
                    .get(model)
                    .is_none_or(|old| h.next_ms > old.next_ms);
                if ahead {
                    st.handed.insert(model.clone(), h.clone());
                }
            }
        }
        let age = Duration::from_millis(u64::try_from(now_ms - m.at_ms).unwrap_or(0));
        if age > self.ttl {
            return;
        }
        let seen = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        if let Ok(mut st) = self.state.write() {
            let newer = st
                .members
                .get(&m.node)
                .is_none_or(|(old, _)| (m.at_ms, m.epoch) >= (old.at_ms, old.epoch));
            if newer {
                st.members.insert(m.node.clone(), (m, seen));
            }
        }
    }

    /// Forgets a member (its tombstone: it stopped).
    pub fn remove(&self, node: &str) {
        if let Ok(mut st) = self.state.write() {
            st.members.remove(node);
        }
    }

    /// This node's membership record now.
    pub fn own_record(&self, at_ms: i64) -> Member {
        let (partitions, models, epoch) = self.state.read().map_or_else(
            |_| (Vec::new(), BTreeMap::new(), 0),
            |st| {
                let models = st
                    .model_parts
                    .iter()
                    .filter(|(_, p)| st.serves(p))
                    .map(|(m, p)| (m.clone(), p.iter().copied().collect()))
                    .collect();
                (st.owned.iter().copied().collect(), models, st.epoch)
            },
        );
        Member {
            node: self.node_id(),
            url: self.url.read().map(|u| u.clone()).unwrap_or_default(),
            epoch,
            partitions,
            models,
            at_ms,
            handover: BTreeMap::new(),
        }
    }

    /// The members heard from within the TTL, this node excluded.
    pub fn live_members(&self) -> Vec<Member> {
        let Ok(st) = self.state.read() else {
            return Vec::new();
        };
        let mut out: Vec<Member> = st
            .members
            .values()
            .filter(|(_, seen)| seen.elapsed() <= self.ttl)
            .map(|(m, _)| m.clone())
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// The inference topic's partitions owned by this node or a live member.
    pub fn covered_partitions(&self) -> BTreeSet<i32> {
        let mut out = self
            .state
            .read()
            .map(|st| st.owned.clone())
            .unwrap_or_default();
        for m in self.live_members() {
            out.extend(m.partitions);
        }
        out
    }

    /// How long a silent member's record counts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Where a request for `model` goes; `forwarded` when another member sent it here.
    pub fn route(&self, model: &str, forwarded: bool) -> Route {
        let Ok(st) = self.state.read() else {
            return Route::Moving;
        };
        self.route_in(&st, model, forwarded)
    }

    /// A model the cluster knows to be in Kafka that nobody serves now, if any: a fleet-wide
    /// read would miss it.
    pub fn moving_model(&self) -> Option<String> {
        let st = self.state.read().ok()?;
        st.model_parts
            .keys()
            .chain(st.learned.keys())
            .find(|m| self.route_in(&st, m, false) == Route::Moving)
            .cloned()
    }

    /// Whether this node's copy of `model` belongs in a fleet-wide answer: it serves the model,
    /// or no node has Kafka rows of it.
    pub fn answers_here(&self, model: &str) -> bool {
        self.route(model, false) == Route::Local
    }

    fn route_in(&self, st: &State_, model: &str, forwarded: bool) -> Route {
        let local = st.model_parts.get(model);
        if local.is_some_and(|p| st.serves(p)) {
            return Route::Local;
        }
        if forwarded {
            // The sender's table says this node owns the model; it does not (any more).
            return Route::Moving;
        }
        let owner = st
            .members
            .values()
            .filter(|(m, seen)| seen.elapsed() <= self.ttl && m.models.contains_key(model))
            .max_by_key(|(m, _)| (m.at_ms, m.epoch));
        match owner {
            Some((m, _)) => Route::Forward {
                node: m.node.clone(),
                url: m.url.clone(),
            },
            // Its data is in Kafka partitions nobody serves now: this node's copy (if any) is
            // stale or partial.
            None if local.is_some() || st.learned.contains_key(model) => Route::Moving,
            None => Route::Local,
        }
    }

    /// Counts a routed request: 0 local, 1 forwarded, 2 moving, 3 forward failed.
    pub(crate) fn count(&self, i: usize) {
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The cluster series of `/metrics`.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# HELP driftdb_cluster_requests_total Model requests by where they were answered: here, forwarded to the owner, refused as moving (503), or a forward that failed (503).\n\
             # TYPE driftdb_cluster_requests_total counter\n",
        );
        for (i, r) in RESULTS.iter().enumerate() {
            s.push_str(&format!(
                "driftdb_cluster_requests_total{{result=\"{r}\"}} {}\n",
                self.counts[i].load(Ordering::Relaxed)
            ));
        }
        let (owned, warming, epoch) = self
            .state
            .read()
            .map_or((0, 0, 0), |st| (st.owned.len(), st.warming.len(), st.epoch));
        s.push_str(&format!(
            "# HELP driftdb_cluster_members Other members heard from within the member TTL.\n\
             # TYPE driftdb_cluster_members gauge\n\
             driftdb_cluster_members {}\n\
             # HELP driftdb_cluster_owned_partitions Partitions of the inference topic this node owns.\n\
             # TYPE driftdb_cluster_owned_partitions gauge\n\
             driftdb_cluster_owned_partitions {owned}\n\
             # HELP driftdb_cluster_warming_partitions Owned partitions still catching up after their assignment (their models answer 503).\n\
             # TYPE driftdb_cluster_warming_partitions gauge\n\
             driftdb_cluster_warming_partitions {warming}\n\
             # HELP driftdb_cluster_epoch Changes of this node's assignment since it started.\n\
             # TYPE driftdb_cluster_epoch gauge\n\
             driftdb_cluster_epoch {epoch}\n\
             # HELP driftdb_cluster_deliveries_unheld_total Webhook deliveries sent after waiting the member TTL for a published membership record holding their rule state.\n\
             # TYPE driftdb_cluster_deliveries_unheld_total counter\n\
             driftdb_cluster_deliveries_unheld_total {}\n",
            self.live_members().len(),
            self.gate.released_unsaved_total()
        ));
        s
    }
}

impl Ownership for Cluster {
    fn evaluates(&self, model: &str) -> bool {
        self.loaded() && self.answers_here(model)
    }

    fn handed_over(&self, model: &str) -> Option<Handover> {
        self.state.read().ok()?.handed.get(model).cloned()
    }
}

impl State_ {
    /// Whether this node answers for a model in `parts`: it owns every one (there is at
    /// least one) and none is catching up.
    fn serves(&self, parts: &BTreeSet<i32>) -> bool {
        !parts.is_empty()
            && parts.is_subset(&self.owned)
            && parts.iter().all(|p| !self.warming.contains_key(p))
    }
}

/// The model a request is about: `/models/{id}/…`, or the model of a DriftQL statement
/// (`q` of `GET /api/v1/driftql`, `query` of the POST body).
pub(crate) fn model_of(path: &str, query: Option<&str>, body: Option<&[u8]>) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/models/") {
        let id = rest.split('/').next()?;
        if id.is_empty() || !rest.contains('/') {
            return None;
        }
        return percent_encoding::percent_decode_str(id)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned());
    }
    if path != "/api/v1/driftql" {
        return None;
    }
    let text = match body {
        Some(b) => serde_json::from_slice::<serde_json::Value>(b)
            .ok()?
            .get("query")?
            .as_str()?
            .to_string(),
        None => url::form_urlencoded::parse(query?.as_bytes())
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.into_owned())?,
    };
    driftql_model(&text)
}

/// The model a DriftQL statement is about (the challenger of an `uplift`); `None` when the
/// text does not parse (the node asked then answers the parse error itself).
pub(crate) fn driftql_model(text: &str) -> Option<String> {
    let stmt = driftdb_query::parser::parse(text).ok()?;
    use driftdb_query::ast::Call;
    Some(match stmt.query.call {
        Call::Metric { target, .. } | Call::Quantile { target, .. } | Call::Ndcg { target, .. } => {
            target.model.id
        }
        Call::Explain { model } => model.id,
        Call::Uplift { challenger, .. } => challenger.id,
    })
}

/// Why a relayed gRPC query has no answer, as the gRPC status to give the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayError {
    /// The gRPC code: the owner's refusal (not found, permission denied, …) as it came, or
    /// UNAVAILABLE (retryable) when the owner did not answer or is itself handing over.
    pub code: tonic::Code,
    /// The message.
    pub message: String,
}

/// A DriftQL `query` for a model `owner` serves, asked of the owner over its HTTP API
/// (`POST {url}/api/v1/driftql`): the result table and warnings, for a gRPC caller of this
/// node (see [`relay_json`]). The HTTP answer is JSON, so a cell that is not a finite number
/// (the JSON answer writes it `null`) comes back as null.
pub async fn relay_driftql(
    c: &Cluster,
    owner: &str,
    url: &str,
    authorization: Option<&str>,
    query: &str,
) -> Result<(driftdb_query::Table, Vec<String>), RelayError> {
    let rb = c
        .client
        .post(format!("{url}/api/v1/driftql"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "query": query }).to_string());
    let body = relay_json(c, owner, rb, authorization).await?;
    let table =
        table_from_json(&body).map_err(|e| relay_failed(c, owner, &format!("its answer: {e}")))?;
    Ok((table, json_strings(&body["warnings"])))
}

/// The strings of a JSON array (nothing for anything else).
pub fn json_strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|w| {
            w.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `rb` (a request to the member `owner` that serves the model of a gRPC call) with the
/// gRPC caller's `authorization`, marked as forwarded, and gives its JSON answer. The owner's
/// refusals come back as their gRPC codes; no answer, an answer that is not JSON, or the
/// owner's own 503 (it no longer serves the model) is UNAVAILABLE, retryable.
pub async fn relay_json(
    c: &Cluster,
    owner: &str,
    rb: reqwest::RequestBuilder,
    authorization: Option<&str>,
) -> Result<serde_json::Value, RelayError> {
    let mut rb = rb.header(FORWARDED_HEADER, c.node_id());
    if let Some(a) = authorization {
        rb = rb.header(header::AUTHORIZATION, a);
    }
    let r = rb
        .send()
        .await
        .map_err(|e| relay_failed(c, owner, &e.to_string()))?;
    let status = r.status();
    let bytes = r
        .bytes()
        .await
        .map_err(|e| relay_failed(c, owner, &e.to_string()))?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| relay_failed(c, owner, &format!("{status}, not JSON: {e}")))?;
    if !status.is_success() {
        let message = body["error"]
            .as_str()
            .map_or_else(|| status.to_string(), str::to_string);
        let code = match status.as_u16() {
            400 | 413 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            403 => tonic::Code::PermissionDenied,
            404 => tonic::Code::NotFound,
            429 => tonic::Code::ResourceExhausted,
            _ => return Err(relay_failed(c, owner, &format!("{status}: {message}"))),
        };
        c.count(1);
        return Err(RelayError { code, message });
    }
    c.count(1);
    Ok(body)
}

/// A relay that got no usable answer: counted, logged, and retryable.
fn relay_failed(c: &Cluster, owner: &str, why: &str) -> RelayError {
    c.count(3);
    tracing::warn!(owner, error = %why, "cluster: gRPC relay failed");
    RelayError {
        code: tonic::Code::Unavailable,
        message: format!("the model's owner {owner} did not answer ({why}); retry"),
    }
}

/// The table of a `/api/v1/driftql` answer (`columns`, and `rows` as objects keyed by column).
pub(crate) fn table_from_json(body: &serde_json::Value) -> Result<driftdb_query::Table, String> {
    use driftdb_query::Cell;
    let columns: Vec<String> = body["columns"]
        .as_array()
        .ok_or("no columns")?
        .iter()
        .map(|c| {
            c.as_str()
                .map(str::to_string)
                .ok_or("a column name is not a string")
        })
        .collect::<Result<_, _>>()?;
    let rows = body["rows"]
        .as_array()
        .ok_or("no rows")?
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| match &row[c.as_str()] {
                    serde_json::Value::Null => Ok(Cell::Null),
                    serde_json::Value::Number(n) => {
                        n.as_f64().map(Cell::Number).ok_or("a number out of range")
                    }
                    serde_json::Value::String(s) => Ok(Cell::Text(s.clone())),
                    _ => Err("a cell that is neither a number, a string nor null"),
                })
                .collect::<Result<Vec<Cell>, _>>()
        })
        .collect::<Result<_, _>>()?;
    Ok(driftdb_query::Table { columns, rows })
}

/// The retryable 503 of a model being handed over.
pub fn moving(model: &str, why: &str) -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": format!("model {model:?} is being handed over between nodes ({why}); retry"),
            "retryable": true,
        })),
    )
        .into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::error::RETRY_AFTER_SECS),
    );
    r
}

/// A Prometheus remote read across the cluster: this node's series of the models it answers
/// for, and — unless a member sent the request — each live member's, asked with the same
/// matchers and the caller's key (SAMPLES answers) and merged per query. `Err` is the answer
/// to give instead: a retryable 503 when a model is moving or a member does not answer.
pub async fn remote_read(
    c: &Cluster,
    headers: &axum::http::HeaderMap,
    req: &driftdb_proto::prometheus::ReadRequest,
    mut local: Vec<Vec<driftdb_prom::Series>>,
) -> Result<Vec<Vec<driftdb_prom::Series>>, Response> {
    use driftdb_proto::prometheus as pb;
    use prost::Message as _;
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    let model_of = |s: &driftdb_prom::Series| {
        s.labels
            .iter()
            .find(|(k, _)| k == "model")
            .map(|(_, v)| v.clone())
    };
    for series in &mut local {
        series.retain(|s| match model_of(s) {
            Some(m) => c.answers_here(&m),
            // Not a model's series: the node asked gives its own.
            None => !forwarded,
        });
    }
    if forwarded {
        return Ok(local);
    }
    let mut sub = req.clone();
    sub.accepted_response_types = vec![pb::read_request::ResponseType::Samples as i32];
    let body = snap::raw::Encoder::new()
        .compress_vec(&sub.encode_to_vec())
        .map_err(|e| moving("*", &format!("encoding a member's read: {e}")))?;
    let answers = ask_all(c, headers, "the read", |url| {
        c.client
            .post(format!("{url}/api/v1/read"))
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::CONTENT_ENCODING, "snappy")
            .body(body.clone())
    })
    .await?;
    for (node, bytes) in answers {
        let resp = snap::raw::Decoder::new()
            .decompress_vec(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|raw| pb::ReadResponse::decode(raw.as_slice()).map_err(|e| e.to_string()))
            .map_err(|why| member_failed(c, &node, "the read", &why))?;
        c.count(1);
        for (i, q) in resp.results.into_iter().enumerate() {
            let Some(out) = local.get_mut(i) else { break };
            out.extend(q.timeseries.into_iter().map(|t| {
                driftdb_prom::Series {
                    labels: t.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                    samples: t
                        .samples
                        .into_iter()
                        .map(|s| (s.timestamp, s.value))
                        .collect(),
                }
            }));
        }
    }
    for series in &mut local {
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    Ok(local)
}

/// The series listing (`/api/v1/series`, and through it `labels` and `label/{name}/values`)
/// across the cluster: this node's label sets of the models it answers for, and — unless a
/// member sent the request — each live member's for the same `params` (`match[]`, `start`,
/// `end`), merged without repeats. `Err` is the answer to give instead (a retryable 503).
pub async fn series_everywhere(
    c: &Cluster,
    headers: &axum::http::HeaderMap,
    params: &[(String, String)],
    mut local: Vec<driftdb_prom::Labels>,
) -> Result<Vec<driftdb_prom::Labels>, Response> {
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    local.retain(|l| match l.iter().find(|(k, _)| k == "model") {
        Some((_, m)) => c.answers_here(m),
        None => !forwarded,
    });
    if forwarded {
        return Ok(local);
    }
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let answers = ask_all(c, headers, "the listing", |url| {
        c.client
            .post(format!("{url}/api/v1/series"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.clone())
    })
    .await?;
    let mut all: BTreeSet<driftdb_prom::Labels> = local.into_iter().collect();
    for (node, bytes) in answers {
        let data = serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|body| match body.get("data") {
                Some(serde_json::Value::Array(data)) => Ok(data.clone()),
                _ => Err(format!("no data in {body}")),
            })
            .map_err(|why| member_failed(c, &node, "the listing", &why))?;
        c.count(1);
        for s in data {
            let Some(obj) = s.as_object() else { continue };
            let mut labels: driftdb_prom::Labels = obj
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect();
            labels.sort();
            all.insert(labels);
        }
    }
    Ok(all.into_iter().collect())
}

/// Asks every live member `GET path_and_query` with the caller's `Authorization`, marked as
/// forwarded (a member answers from what it holds itself, and asks nobody), all at once: each
/// member's id and JSON answer. `Err` is the answer to give instead: a retryable 503 naming the
/// member that did not answer.
pub async fn ask_members(
    c: &Cluster,
    headers: &axum::http::HeaderMap,
    path_and_query: &str,
) -> Result<Vec<(String, serde_json::Value)>, Response> {
    let what = path_and_query;
    let answers = ask_all(c, headers, what, |url| {
        c.client.get(format!("{url}{path_and_query}"))
    })
    .await?;
    let mut out = Vec::with_capacity(answers.len());
    for (node, bytes) in answers {
        let body = serde_json::from_slice(&bytes)
            .map_err(|e| member_failed(c, &node, what, &e.to_string()))?;
        c.count(1);
        out.push((node, body));
    }
    Ok(out)
}

/// Sends `request(member url)` to every live member at once, with the caller's
/// `Authorization` and marked as forwarded: each member's id and the body of its successful
/// answer (the caller counts it as forwarded once it decodes). `Err` is the answer to give instead: the retryable 503 of the
/// first member (in member order) that could not be reached or did not answer with a success;
/// `what` names the request in it and in the log.
async fn ask_all(
    c: &Cluster,
    headers: &axum::http::HeaderMap,
    what: &str,
    request: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Result<Vec<(String, bytes::Bytes)>, Response> {
    let me = c.node_id();
    let asks = c.live_members().into_iter().map(|m| {
        let mut rb = request(&m.url).header(FORWARDED_HEADER, &me);
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            rb = rb.header(header::AUTHORIZATION, v);
        }
        async move {
            let answer = async {
                let r = rb.send().await.map_err(|e| e.to_string())?;
                let status = r.status();
                let bytes = r.bytes().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(bytes)
                } else {
                    Err(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                    ))
                }
            };
            (m.node, answer.await)
        }
    });
    let mut out = Vec::new();
    for (node, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(bytes) => out.push((node, bytes)),
            Err(why) => return Err(member_failed(c, &node, what, &why)),
        }
    }
    Ok(out)
}

/// Counts and logs a member's failed part of a fleet-wide request; the retryable 503 to answer.
fn member_failed(c: &Cluster, node: &str, what: &str, why: &str) -> Response {
    c.count(3);
    tracing::warn!(member = %node, error = %why, request = what, "cluster: a member's part of a fleet-wide request");
    moving("*", &format!("member {node} did not answer {what}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_answer_is_the_table_the_owner_had() {
        use driftdb_query::{Cell, Table};
        let t = Table {
            columns: vec!["feature".into(), "value".into(), "n".into(), "p".into()],
            rows: vec![
                vec![
                    Cell::Text("amount".into()),
                    Cell::Number(0.125_000_000_000_1),
                    Cell::Number(1_000_000.0),
                    Cell::Null,
                ],
                vec![
                    Cell::Text("".into()),
                    Cell::Number(-3.0e-300),
                    Cell::Number(0.0),
                    Cell::Number(1.0),
                ],
            ],
        };
        // What `/api/v1/driftql` answers.
        let body = serde_json::json!({ "columns": t.columns, "rows": t.to_json() });
        assert_eq!(table_from_json(&body), Ok(t));
        // A column a row lacks is null; a cell of another JSON type is refused.
        let short = serde_json::json!({ "columns": ["a", "b"], "rows": [{ "a": 1 }] });
        assert_eq!(
            table_from_json(&short).map(|t| t.rows),
            Ok(vec![vec![Cell::Number(1.0), Cell::Null]])
        );
        let odd = serde_json::json!({ "columns": ["a"], "rows": [{ "a": true }] });
        assert!(table_from_json(&odd).is_err());
        assert!(table_from_json(&serde_json::json!({ "rows": [] })).is_err());
    }

    /// The clock of the tests.
    const NOW: i64 = 1_800_000_000_000;

    /// A record published `at_ms` milliseconds after 40 ms before [`NOW`].
    fn member(node: &str, parts: &[i32], models: &[&str], at_ms: i64) -> Member {
        let at_ms = NOW - 40 + at_ms;
        Member {
            node: node.into(),
            url: format!("http://{node}"),
            epoch: 1,
            partitions: parts.to_vec(),
            models: models
                .iter()
                .map(|m| (m.to_string(), parts.to_vec()))
                .collect(),
            at_ms,
            handover: BTreeMap::new(),
        }
    }

    fn parts(m: &[(&str, &[i32])]) -> BTreeMap<String, BTreeSet<i32>> {
        m.iter()
            .map(|(k, p)| (k.to_string(), p.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn routes_by_ownership_then_membership() {
        let c = Cluster::new(Some("a".into()), "preds", Duration::from_secs(60));
        c.set_model_partitions(parts(&[("m0", &[0]), ("m1", &[1]), ("m2", &[0, 1])]));
        c.set_owned([0]);
        // Catching up: not answered here until the partition's end at assignment is reached.
        c.progress(0, 5, 10);
        assert_eq!(c.route("m0", false), Route::Moving);
        assert!(c.own_record(1).models.is_empty());
        c.progress(0, 9, 12);
        assert_eq!(c.warming(), vec![0]);
        c.progress(0, 10, 12);
        assert!(c.warming().is_empty());
        c.upsert(member("b", &[1], &["m1", "m3"], 10), NOW);
        assert_eq!(c.route("m0", false), Route::Local);
        assert_eq!(c.route("m0", true), Route::Local);
        // m1's data is here too, from before a rebalance: the owner answers.
        let fwd = Route::Forward {
            node: "b".into(),
            url: "http://b".into(),
        };
        assert_eq!(c.route("m1", false), fwd);
        assert_eq!(c.route("m3", false), fwd);
        // Spread over partitions 0 and 1, owned by two nodes: nobody answers it whole.
        assert_eq!(c.route("m2", false), Route::Moving);
        // Never heard of in Kafka: answered here (a 404 or a gRPC-ingested model).
        assert_eq!(c.route("zz", false), Route::Local);
        assert_eq!(c.moving_model().as_deref(), Some("m2"));
        assert!(c.answers_here("m0") && !c.answers_here("m1"));
        // Forwarded here by a stale table: refused, never forwarded again.
        assert_eq!(c.route("m1", true), Route::Moving);
        assert_eq!(c.route("m3", true), Route::Moving);
        // Own record: the partitions and the models wholly in them.
        let me = c.own_record(5);
        assert_eq!(
            (me.node.as_str(), me.partitions, me.models),
            ("a", vec![0], BTreeMap::from([("m0".to_string(), vec![0])]))
        );
    }

    #[test]
    fn the_furthest_handover_of_a_model_is_kept_and_decides_evaluation() {
        let c = Cluster::new(Some("a".into()), "preds", Duration::from_millis(50));
        let h = |next_ms: i64| Handover {
            next_ms,
            versions: BTreeSet::from(["v1".to_string()]),
            states: vec![("a2V5".into(), "c3RhdGU=".into())],
        };
        let with = |node: &str, next_ms: i64, at: i64| {
            let mut m = member(node, &[0], &["m0"], at);
            m.handover.insert("m0".into(), h(next_ms));
            m
        };
        c.upsert(with("b", 900_000, 10), NOW);
        assert_eq!(c.handed_over("m0"), Some(h(900_000)));
        // A later record of a member behind b's (a stale node) does not move it back.
        c.upsert(with("c", 0, 20), NOW);
        assert_eq!(c.handed_over("m0"), Some(h(900_000)));
        c.upsert(with("c", 1_800_000, 30), NOW);
        assert_eq!(c.handed_over("m0"), Some(h(1_800_000)));
        // This node's own record, read back, is not a handover to itself.
        c.upsert(with("a", 2_700_000, 40), NOW);
        assert_eq!(c.handed_over("m0"), Some(h(1_800_000)));
        assert_eq!(c.handed_over("m1"), None);
        // Nothing is evaluated before the store and the membership topic are read.
        assert!(!c.evaluates("zz"));
        c.mark_loaded(Cluster::LOADED_MODELS);
        assert!(!c.evaluates("zz"));
        c.mark_loaded(Cluster::LOADED_MEMBERS);
        assert!(c.evaluates("zz"));
        // Served by a live member: not evaluated here; once every member is silent and the
        // partition is this node's, caught up, it is.
        assert!(!c.evaluates("m0"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!c.evaluates("m0"), "moving: nobody serves it");
        c.set_model_partitions(parts(&[("m0", &[0])]));
        c.set_owned([0]);
        assert!(!c.evaluates("m0"), "warming");
        c.progress(0, 3, 3);
        assert!(c.evaluates("m0"));
        // The handover outlives its member.
        assert_eq!(c.handed_over("m0"), Some(h(1_800_000)));
        // Never heard of in Kafka: every node evaluates it.
        assert!(c.evaluates("zz"));
        // The record round-trips with its handover; one without a handover reads as empty.
        let m = with("b", 900_000, 10);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Member>(&text).unwrap(), m);
        let bare = member("b", &[0], &["m0"], 10);
        let text = serde_json::to_string(&bare).unwrap();
        assert!(!text.contains("handover"), "{text}");
        assert_eq!(serde_json::from_str::<Member>(&text).unwrap(), bare);
    }

    #[test]
    fn revoked_partitions_and_silent_members_give_moving() {
        let c = Cluster::new(Some("a".into()), "preds", Duration::from_millis(50));
        c.set_model_partitions(parts(&[("m0", &[0])]));
        c.set_owned([0]);
        c.progress(0, 0, 0);
        assert_eq!(c.route("m0", false), Route::Local);
        c.set_owned([]);
        assert_eq!(c.route("m0", false), Route::Moving);
        c.upsert(member("b", &[0], &["m0", "m9"], 10), NOW);
        assert!(matches!(c.route("m0", false), Route::Forward { .. }));
        assert!(matches!(c.route("m9", false), Route::Forward { .. }));
        std::thread::sleep(Duration::from_millis(80));
        assert!(c.live_members().is_empty());
        assert_eq!(c.route("m0", false), Route::Moving);
        // Never held here, but known to live in Kafka: not answered from here (a 404).
        assert_eq!(c.route("m9", false), Route::Moving);
        // A fleet-wide read is refused while any known model is moving.
        assert!(c.moving_model().is_some());
        assert!(!c.answers_here("m9"));
        assert!(c.answers_here("zz"));
        assert_eq!(c.route("zz", false), Route::Local);
        // An older record does not replace a newer one; a tombstone removes the member.
        c.upsert(member("b", &[0], &["m0"], 20), NOW);
        c.upsert(member("b", &[], &[], 15), NOW);
        assert!(c.live_members()[0].models.contains_key("m0"));
        c.remove("b");
        assert!(c.live_members().is_empty());
        // The node's own record from the topic is not a member.
        c.upsert(member("a", &[0], &["m0"], 30), NOW);
        assert!(c.live_members().is_empty());
    }

    #[test]
    fn the_model_of_a_request() {
        assert_eq!(
            model_of("/models/fraud/drift", None, None).as_deref(),
            Some("fraud")
        );
        assert_eq!(
            model_of("/models/a%20b/report", Some("format=json"), None).as_deref(),
            Some("a b")
        );
        assert_eq!(model_of("/models", None, None), None);
        assert_eq!(model_of("/models/x", None, None), None);
        assert_eq!(
            model_of("/api/v1/driftql", Some("q=psi%28shop.%2A%29+over+1h"), None).as_deref(),
            Some("shop")
        );
        assert_eq!(
            model_of(
                "/api/v1/driftql",
                None,
                Some(br#"{"query": "explain(fraud@v2) over 1h"}"#)
            )
            .as_deref(),
            Some("fraud")
        );
        assert_eq!(
            model_of("/api/v1/driftql", Some("q=not+a+query("), None),
            None
        );
        assert_eq!(model_of("/alerts", None, None), None);
    }
}
