//! The gRPC services (tonic): models, reference upload, ingest and labels, DriftQL queries and
//! drift summaries, rules and event announcements, the alert stream and history, API keys.
//!
//! Every method runs behind the auth middleware ([`crate::guard`]), which checks the
//! method's scope and leaves the caller's [`Principal`] in the request; the handlers here
//! filter by team with it (another team's model answers NOT_FOUND, as an unknown one does).
//! Ingest is bounded: open streams, bytes of messages held, and batches processed at once each
//! have a limit ([`crate::limits::Limits`]); past it a call gets RESOURCE_EXHAUSTED with a
//! `retry-after-ms` hint instead of a growing queue.

use std::pin::Pin;
use std::sync::Arc;

use driftdb_proto::v1 as pb;
use futures::Stream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{
    alert_to_pb, batch_ack_to_pb, batch_from_pb, key_to_pb, label_ack_to_pb, labels_from_pb,
    model_from_pb, model_to_pb, rule_to_pb, severity_from_pb, silence_to_pb, source, table_to_pb,
};
use crate::error::{Error, to_status};
use crate::guard::grpc_principal;
use crate::limits::OVERLOAD_WAIT;
use crate::node::Node;
use crate::query::TimeArg;

/// Largest gRPC message a client sends or accepts (the server's own limit is
/// [`crate::limits::Limits::max_message_bytes`], the same by default; a 1,000-row × 500-feature
/// batch is about 4 MB).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

type AckStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The caller's `authorization` metadata, to relay with a call.
fn authorization<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The member that answers a relayed call.
struct Owner {
    /// This node's cluster (its HTTP client and counters).
    c: Arc<crate::cluster::Cluster>,
    /// The owner's id.
    owner: String,
    /// The owner's HTTP base URL.
    url: String,
}

/// In a cluster (docs/SCALE_OUT.md, "Routing"), the member a call about `model` goes to:
/// `None` when it is answered here, the cluster with the owner's id and HTTP URL when another
/// member serves the model, UNAVAILABLE (retryable) while the model moves. Never an answer
/// from this node's partial copy.
fn owner_of(node: &Node, model: &str) -> Result<Option<Owner>, Status> {
    use crate::cluster::Route;
    let Some(c) = &node.cluster else {
        return Ok(None);
    };
    match c.route(model, false) {
        Route::Local => {
            c.count(0);
            Ok(None)
        }
        Route::Moving => {
            c.count(2);
            Err(Status::unavailable(format!(
                "model {model:?} is being handed over between nodes (no live member owns its \
                 partition yet); retry"
            )))
        }
        Route::Forward { node, url } => Ok(Some(Owner {
            c: Arc::clone(c),
            owner: node,
            url,
        })),
    }
}

/// `{url}/models/{model}/{rest}?k=v…` with the non-empty parameters.
fn model_url(url: &str, model: &str, rest: &str, params: &[(&str, &String)]) -> String {
    let id = percent_encoding::utf8_percent_encode(model, percent_encoding::NON_ALPHANUMERIC);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    format!("{url}/models/{id}/{rest}?{}", q.finish())
}

/// `GET {url}/models/{model}/{rest}?params` of the owner, for a gRPC caller
/// ([`crate::cluster::relay_json`]).
async fn get_json(
    c: &crate::cluster::Cluster,
    owner: &str,
    url: &str,
    model: &str,
    rest: &str,
    params: &[(&str, &String)],
    authorization: Option<&str>,
) -> Result<serde_json::Value, Status> {
    let rb = c.client.get(model_url(url, model, rest, params));
    crate::cluster::relay_json(c, owner, rb, authorization)
        .await
        .map_err(|e| Status::new(e.code, e.message))
}

/// A relayed answer, its metadata naming the member that gave it.
fn answered_by<T>(message: T, owner: &str) -> Response<T> {
    let mut resp = Response::new(message);
    if let Ok(v) = owner.parse() {
        resp.metadata_mut().insert(crate::cluster::NODE_HEADER, v);
    }
    resp
}

/// Implements `driftdb.v1.Models`.
#[derive(Debug, Clone)]
pub struct ModelsService(pub Node);

#[tonic::async_trait]
impl pb::models_server::Models for ModelsService {
    async fn create_model(
        &self,
        req: Request<pb::CreateModelRequest>,
    ) -> Result<Response<pb::CreateModelResponse>, Status> {
        let p = grpc_principal(&req)?;
        let m = req
            .into_inner()
            .model
            .ok_or_else(|| Status::invalid_argument("model missing"))?;
        let def = model_from_pb(m).map_err(|e| to_status(&e))?;
        let entry = self.0.create_model(&p, def).map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreateModelResponse {
            model: Some(model_to_pb(&entry.def, versions(&entry))),
        }))
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        let p = grpc_principal(&req)?;
        let entry = self
            .0
            .model(&p, &req.into_inner().id)
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::GetModelResponse {
            model: Some(model_to_pb(&entry.def, versions(&entry))),
        }))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let p = grpc_principal(&req)?;
        let models = self.0.models(&p).map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ListModelsResponse {
            models: models
                .iter()
                .map(|m| model_to_pb(&m.def, versions(m)))
                .collect(),
        }))
    }

    async fn upload_reference(
        &self,
        req: Request<Streaming<pb::ReferenceChunk>>,
    ) -> Result<Response<pb::ReferenceSummary>, Status> {
        let p = grpc_principal(&req)?;
        let _stream_slot = stream_slot(&self.0)?;
        let mut stream = req.into_inner();
        let header = match stream.next().await {
            Some(Ok(pb::ReferenceChunk {
                chunk: Some(pb::reference_chunk::Chunk::Header(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "the first reference chunk must be a header",
                ));
            }
        };
        let (model, mut builder) = self
            .0
            .reference_builder(&p, &header.model_id, &header.model_version)
            .map_err(|e| to_status(&e))?;
        let mut summary = pb::ReferenceSummary {
            model_id: header.model_id.clone(),
            model_version: header.model_version.clone(),
            ..Default::default()
        };
        let mut offset = 0u32;
        while let Some(chunk) = stream.next().await {
            let rows = match chunk?.chunk {
                Some(pb::reference_chunk::Chunk::Rows(r)) => r,
                _ => {
                    return Err(Status::invalid_argument(
                        "only one header per reference upload",
                    ));
                }
            };
            if rows.model_id != header.model_id {
                return Err(Status::invalid_argument(format!(
                    "rows for model {:?} in an upload for {:?}",
                    rows.model_id, header.model_id
                )));
            }
            let (batch, labels) =
                batch_from_pb(rows, &model.def.features).map_err(|e| to_status(&e))?;
            let n = batch.rows.len() as u32;
            let rejected = builder
                .add(&batch, &labels)
                .map_err(|e| to_status(&Error::from(e)))?;
            summary.rows += u64::from(n) - rejected.len() as u64;
            summary.rejected += rejected.len() as u64;
            for r in rejected
                .into_iter()
                .take(100usize.saturating_sub(summary.errors.len()))
            {
                summary.errors.push(pb::RowError {
                    row: offset + r.row as u32,
                    request_id: r.request_id,
                    reason: r.reason,
                });
            }
            offset += n;
        }
        if summary.rows == 0 {
            return Err(Status::invalid_argument(
                "the reference upload holds no valid row",
            ));
        }
        summary.features = model.def.features.keys().cloned().collect();
        self.0
            .finish_reference(model, builder, header.replace)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(summary))
    }
}

fn versions(m: &crate::registry::ModelEntry) -> Vec<String> {
    m.references
        .read()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

/// Implements `driftdb.v1.Ingest`.
#[derive(Debug, Clone)]
pub struct IngestService(pub Node);

/// Counts a refusal for overload and builds its status (with the retry hint).
fn overloaded(node: &Node, message: String) -> Status {
    node.metrics
        .overloaded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    to_status(&Error::Overloaded(message))
}

/// A slot for one more open ingest stream, or RESOURCE_EXHAUSTED at once.
fn stream_slot(node: &Node) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
    Arc::clone(&node.gates.ingest_streams)
        .try_acquire_owned()
        .map_err(|_| {
            overloaded(
                node,
                format!(
                    "too many open ingest streams (limit {}); retry after 1s",
                    node.limits.ingest_streams
                ),
            )
        })
}

/// What one ingest message holds while it is processed: its bytes of the memory budget and a
/// processing slot (both given back on drop).
struct Permits {
    _memory: tokio::sync::OwnedSemaphorePermit,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// The permits for a message of `bytes` encoded bytes: the bytes must fit the ingest memory
/// budget at once, then the batch waits at most [`OVERLOAD_WAIT`] for a processing slot.
/// Either refusal is RESOURCE_EXHAUSTED with a retry hint; the message is dropped, never queued.
async fn permits(node: &Node, bytes: usize) -> Result<Permits, Status> {
    let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let Ok(memory) = Arc::clone(&node.gates.ingest_kib).try_acquire_many_owned(kib) else {
        return Err(overloaded(
            node,
            format!(
                "ingest is overloaded: {bytes} bytes do not fit the {} bytes held at once; retry the batch after 1s",
                node.limits.ingest_memory_bytes
            ),
        ));
    };
    match tokio::time::timeout(
        OVERLOAD_WAIT,
        Arc::clone(&node.ingest_permits).acquire_owned(),
    )
    .await
    {
        Ok(Ok(slot)) => Ok(Permits {
            _memory: memory,
            _slot: slot,
        }),
        _ => Err(overloaded(
            node,
            "ingest is overloaded; retry the batch after 1s".into(),
        )),
    }
}

/// Runs `f` for a message of `bytes` encoded bytes under its [`permits`].
async fn with_permit<T, F: std::future::Future<Output = Result<T, Error>>>(
    node: &Node,
    bytes: usize,
    f: F,
) -> Result<T, Status> {
    let held = permits(node, bytes).await?;
    let r = f.await.map_err(|e| to_status(&e));
    drop(held);
    r
}

/// Batches of one inference stream written behind the one being staged: the stream stages
/// batch N+1 (schema check, dedup, segment admission) while batch N folds and writes, so a
/// client with several batches unacknowledged keeps both halves busy. Each holds its permits.
const INFERENCE_STREAM_DEPTH: usize = 2;

/// One batch of a pipelined stream, in stream order: its write under way, or a result known
/// without one (a refusal before staging).
enum InFlight {
    Writing(tokio::task::JoinHandle<Result<pb::BatchAck, Status>>),
    Done(Result<pb::BatchAck, Status>),
}

/// Serves one inference stream with the batches pipelined ([`INFERENCE_STREAM_DEPTH`]):
/// staging stays in stream order (one batch at a time, as the producer sequence demands),
/// writes keep the staging order (the model's write tickets), acknowledgements are sent in
/// stream order, and the first error ends the stream. A batch staged behind one whose write
/// failed writes nothing (see [`crate::ingest::write_staged`]), so a client that resends
/// from the failed batch loses nothing and counts nothing twice.
fn inference_stream(
    node: Node,
    slot: tokio::sync::OwnedSemaphorePermit,
    mut inbound: Streaming<pb::InferenceBatch>,
    principal: crate::auth::Principal,
) -> AckStream<pb::BatchAck> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (queue, mut queued) = tokio::sync::mpsc::channel::<InFlight>(INFERENCE_STREAM_DEPTH);
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = node.limits.ingest_idle_timeout;
    // The reader: takes messages in order and stages them.
    let reader_broken = Arc::clone(&broken);
    tokio::spawn(async move {
        let _slot = slot;
        loop {
            // Once the forwarder has stopped (an error was sent, or the client is gone), stop
            // waiting for messages at once and give the stream slot back.
            let next = tokio::select! {
                m = next_message(&mut inbound, idle) => m,
                () = queue.closed() => None,
            };
            let Some(msg) = next else { break };
            let item = match msg {
                Ok(b) => stage_one(&node, &principal, b, &reader_broken).await,
                Err(e) => InFlight::Done(Err(e)),
            };
            let stop = matches!(item, InFlight::Done(Err(_)));
            if queue.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    // The forwarder: acknowledges in stream order and stops at the first error.
    tokio::spawn(async move {
        while let Some(item) = queued.recv().await {
            let res = match item {
                InFlight::Done(r) => r,
                InFlight::Writing(h) => h
                    .await
                    .unwrap_or_else(|e| Err(Status::internal(format!("ingest task: {e}")))),
            };
            let stop = res.is_err();
            if stop {
                broken.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if tx.send(res).await.is_err() || stop {
                break;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Admits, decodes and stages one batch of an inference stream, then starts its write.
async fn stage_one(
    node: &Node,
    principal: &crate::auth::Principal,
    b: pb::InferenceBatch,
    broken: &Arc<std::sync::atomic::AtomicBool>,
) -> InFlight {
    let held = match permits(node, prost::Message::encoded_len(&b)).await {
        Ok(h) => h,
        Err(e) => return InFlight::Done(Err(e)),
    };
    let staged = async {
        let model = node.model(principal, &b.model_id)?;
        let src = source(&b.producer_id, b.sequence);
        let m = Arc::clone(&model);
        let batch = tokio::task::spawn_blocking(move || {
            batch_from_pb(b, &m.def.features).map(|(batch, _labels)| batch)
        })
        .await
        .map_err(|e| Error::Internal(format!("decode task: {e}")))??;
        let id = model.def.id.clone();
        Ok::<_, Error>((id, node.stage_inferences(model, batch, src).await?))
    };
    match staged.await {
        Err(e) => InFlight::Done(Err(to_status(&e))),
        Ok((id, staged)) => {
            let node = node.clone();
            let broken = Arc::clone(broken);
            InFlight::Writing(tokio::spawn(async move {
                let r = node
                    .write_staged(&id, staged, Some(broken))
                    .await
                    .map(|ack| batch_ack_to_pb(&ack))
                    .map_err(|e| to_status(&e));
                drop(held);
                r
            }))
        }
    }
}

/// The next message of an ingest stream: `None` at its end, DEADLINE_EXCEEDED after `idle`
/// without one (the caller ends the stream on any error).
async fn next_message<In: prost::Message + Send + 'static>(
    inbound: &mut Streaming<In>,
    idle: std::time::Duration,
) -> Option<Result<In, Status>> {
    match tokio::time::timeout(idle, inbound.next()).await {
        Ok(next) => next,
        Err(_) => Some(Err(Status::deadline_exceeded(format!(
            "the ingest stream sent nothing for {}s; open a new one",
            idle.as_secs()
        )))),
    }
}

/// Serves one ingest stream: each inbound batch is handled in order and acknowledged after its
/// durable write (label streams; inference streams are pipelined by [`inference_stream`]).
/// One batch is in flight per stream, and the bounded channel keeps a slow
/// reader from growing memory; the first error ends the stream. The stream holds one of the
/// node's stream slots until it ends.
fn ack_stream<In, Out, F, Fut>(
    node: Node,
    slot: tokio::sync::OwnedSemaphorePermit,
    mut inbound: Streaming<In>,
    handle: F,
) -> AckStream<Out>
where
    In: prost::Message + Send + 'static,
    Out: Send + 'static,
    F: Fn(Node, In) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Out, Error>> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let idle = node.limits.ingest_idle_timeout;
    tokio::spawn(async move {
        let _slot = slot;
        while let Some(msg) = next_message(&mut inbound, idle).await {
            let res = match msg {
                Ok(b) => {
                    let bytes = b.encoded_len();
                    with_permit(&node, bytes, handle(node.clone(), b)).await
                }
                Err(e) => Err(e),
            };
            let stop = res.is_err();
            if tx.send(res).await.is_err() || stop {
                break;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl pb::ingest_server::Ingest for IngestService {
    type IngestInferencesStream = AckStream<pb::BatchAck>;
    type IngestLabelsStream = AckStream<pb::LabelAck>;

    async fn ingest_inferences(
        &self,
        req: Request<Streaming<pb::InferenceBatch>>,
    ) -> Result<Response<Self::IngestInferencesStream>, Status> {
        let p = grpc_principal(&req)?;
        let slot = stream_slot(&self.0)?;
        Ok(Response::new(inference_stream(
            self.0.clone(),
            slot,
            req.into_inner(),
            p,
        )))
    }

    async fn ingest_labels(
        &self,
        req: Request<Streaming<pb::LabelBatch>>,
    ) -> Result<Response<Self::IngestLabelsStream>, Status> {
        let p = grpc_principal(&req)?;
        let slot = stream_slot(&self.0)?;
        Ok(Response::new(ack_stream(
            self.0.clone(),
            slot,
            req.into_inner(),
            move |node, b: pb::LabelBatch| {
                let p = p.clone();
                async move {
                    let model = node.model(&p, &b.model_id)?;
                    let src = source(&b.producer_id, b.sequence);
                    let ack = node
                        .ingest_labels(model, labels_from_pb(b.labels), src)
                        .await?;
                    Ok(label_ack_to_pb(&ack))
                }
            },
        )))
    }
}

/// Implements `driftdb.v1.Query`: DriftQL text → table, and the drift summary of a model.
/// Both run on the blocking pool (they read RocksDB synchronously). Parse and plan errors are
/// INVALID_ARGUMENT with the line and column in the message; unknown models are NOT_FOUND.
#[derive(Debug, Clone)]
pub struct QueryService(pub Node);

#[tonic::async_trait]
impl pb::query_server::Query for QueryService {
    async fn query(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let p = grpc_principal(&req)?;
        let authorization = authorization(&req);
        let text = req.into_inner().query;
        if self.0.cluster.is_some()
            && let Some(model) = crate::cluster::driftql_model(&text)
            && let Some(Owner { c, owner, url }) = owner_of(&self.0, &model)?
        {
            let (table, warnings) =
                crate::cluster::relay_driftql(&c, &owner, &url, authorization.as_deref(), &text)
                    .await
                    .map_err(|e| Status::new(e.code, e.message))?;
            return Ok(answered_by(
                pb::QueryResponse {
                    table: Some(table_to_pb(&table)),
                    warnings,
                },
                &owner,
            ));
        }
        let out = self.0.query(&p, text).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::QueryResponse {
            table: Some(table_to_pb(&out.table)),
            warnings: out.warnings,
        }))
    }

    async fn drift_summary(
        &self,
        req: Request<pb::DriftSummaryRequest>,
    ) -> Result<Response<pb::DriftSummaryResponse>, Status> {
        let p = grpc_principal(&req)?;
        let authorization = authorization(&req);
        let r = req.into_inner();
        if r.model_id.is_empty() {
            return Err(Status::invalid_argument("model_id missing"));
        }
        if let Some(Owner { c, owner, url }) = owner_of(&self.0, &r.model_id)? {
            let auth = authorization.as_deref();
            let params = [
                ("from", &r.from),
                ("to", &r.to),
                ("version", &r.model_version),
            ];
            let body = get_json(
                &c,
                &owner,
                &url,
                &r.model_id,
                "drift/summary",
                &params,
                auth,
            )
            .await?;
            let table = |k: &str| {
                crate::cluster::table_from_json(&body[k])
                    .map(|t| Some(table_to_pb(&t)))
                    .map_err(|e| Status::unavailable(format!("{owner}'s answer: {e}; retry")))
            };
            let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
            let resp = pb::DriftSummaryResponse {
                drifted_features: table("drifted_features")?,
                prediction_shift: table("prediction_shift")?,
                performance: table("performance")?,
                model_version: text("version"),
                from: text("from"),
                to: text("to"),
                warnings: crate::cluster::json_strings(&body["warnings"]),
            };
            return Ok(answered_by(resp, &owner));
        }
        let from = TimeArg::parse("from", &r.from).map_err(|e| to_status(&e))?;
        let to = TimeArg::parse("to", &r.to).map_err(|e| to_status(&e))?;
        let version = Some(r.model_version).filter(|v| !v.is_empty());
        let s = self
            .0
            .drift_summary(&p, r.model_id, version, from, to)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::DriftSummaryResponse {
            drifted_features: Some(table_to_pb(&s.drifted_features)),
            prediction_shift: Some(table_to_pb(&s.prediction_shift)),
            performance: Some(table_to_pb(&s.performance)),
            model_version: s.version.clone(),
            from: s.range.map(|r| r.from.to_rfc3339()).unwrap_or_default(),
            to: s.range.map(|r| r.to.to_rfc3339()).unwrap_or_default(),
            warnings: s.warnings.clone(),
        }))
    }

    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let p = grpc_principal(&req)?;
        let authorization = authorization(&req);
        let r = req.into_inner();
        if r.model_id.is_empty() {
            return Err(Status::invalid_argument("model_id missing"));
        }
        if let Some(Owner { c, owner, url }) = owner_of(&self.0, &r.model_id)? {
            let auth = authorization.as_deref();
            let json = String::from("json");
            let params = [
                ("from", &r.from),
                ("to", &r.to),
                ("step", &r.step),
                ("version", &r.model_version),
                ("by", &r.by),
                ("format", &json),
            ];
            let body = get_json(&c, &owner, &url, &r.model_id, "report", &params, auth).await?;
            let resp = pb::ReportResponse {
                json: body.to_string(),
            };
            return Ok(answered_by(resp, &owner));
        }
        let args = crate::node::ReportArgs {
            model: r.model_id,
            version: Some(r.model_version).filter(|v| !v.is_empty()),
            from: TimeArg::parse("from", &r.from).map_err(|e| to_status(&e))?,
            to: TimeArg::parse("to", &r.to).map_err(|e| to_status(&e))?,
            step_ms: crate::query::step_arg(&r.step).map_err(|e| to_status(&e))?,
            by: Some(r.by).filter(|b| !b.is_empty()),
            source: "driftdb server".into(),
        };
        let report = self.0.report(&p, args).await.map_err(|e| to_status(&e))?;
        let json = serde_json::to_string(&report).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ReportResponse { json }))
    }
}

/// Implements `driftdb.v1.Rules`: rule CRUD (JSON definitions, validated with the field at
/// fault named) and event announcements.
#[derive(Debug, Clone)]
pub struct RulesService(pub Node);

#[tonic::async_trait]
impl pb::rules_server::Rules for RulesService {
    async fn create_silence(
        &self,
        req: Request<pb::CreateSilenceRequest>,
    ) -> Result<Response<pb::CreateSilenceResponse>, Status> {
        let p = grpc_principal(&req)?;
        let json = req.into_inner().definition_json;
        let node = self.0.clone();
        let stored = tokio::task::spawn_blocking(move || node.create_silence(&p, &json))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreateSilenceResponse {
            silence: Some(silence_to_pb(&stored, self.0.clock.now())),
        }))
    }

    async fn list_silences(
        &self,
        req: Request<pb::ListSilencesRequest>,
    ) -> Result<Response<pb::ListSilencesResponse>, Status> {
        let p = grpc_principal(&req)?;
        let expired = req.into_inner().include_expired;
        let now = self.0.clock.now();
        Ok(Response::new(pb::ListSilencesResponse {
            silences: self
                .0
                .silences_of(&p, expired)
                .iter()
                .map(|s| silence_to_pb(s, now))
                .collect(),
        }))
    }

    async fn expire_silence(
        &self,
        req: Request<pb::ExpireSilenceRequest>,
    ) -> Result<Response<pb::ExpireSilenceResponse>, Status> {
        let p = grpc_principal(&req)?;
        let id = req.into_inner().id;
        let node = self.0.clone();
        let stored = tokio::task::spawn_blocking(move || node.expire_silence(&p, &id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ExpireSilenceResponse {
            silence: Some(silence_to_pb(&stored, self.0.clock.now())),
        }))
    }

    async fn create_rule(
        &self,
        req: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::CreateRuleResponse>, Status> {
        let p = grpc_principal(&req)?;
        let json = req.into_inner().definition_json;
        let node = self.0.clone();
        let stored = tokio::task::spawn_blocking(move || node.create_rule(&p, &json))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreateRuleResponse {
            rule: Some(rule_to_pb(&stored, self.0.rule_error(&stored.def.id))),
        }))
    }

    async fn list_rules(
        &self,
        req: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let p = grpc_principal(&req)?;
        let model = req.into_inner().model;
        let model = Some(model.as_str()).filter(|m| !m.is_empty());
        Ok(Response::new(pb::ListRulesResponse {
            rules: self
                .0
                .rules_of(&p, model)
                .iter()
                .map(|r| rule_to_pb(r, self.0.rule_error(&r.def.id)))
                .collect(),
        }))
    }

    async fn delete_rule(
        &self,
        req: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::DeleteRuleResponse>, Status> {
        let p = grpc_principal(&req)?;
        let id = req.into_inner().id;
        let node = self.0.clone();
        tokio::task::spawn_blocking(move || node.delete_rule(&p, &id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }

    async fn announce_event(
        &self,
        req: Request<pb::AnnounceEventRequest>,
    ) -> Result<Response<pb::AnnounceEventResponse>, Status> {
        let p = grpc_principal(&req)?;
        let r = req.into_inner();
        let node = self.0.clone();
        let records = tokio::task::spawn_blocking(move || {
            let version = Some(r.version.as_str()).filter(|v| !v.is_empty());
            node.announce_event(&p, &r.model, &r.event, version)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::AnnounceEventResponse {
            alerts: records.iter().map(alert_to_pb).collect(),
        }))
    }
}

/// Implements `driftdb.v1.Alerts`: the resumable alert stream and the alert history.
#[derive(Debug, Clone)]
pub struct AlertsService(pub Node);

/// Longest history answer.
const MAX_ALERTS_LISTED: usize = 10_000;

#[tonic::async_trait]
impl pb::alerts_server::Alerts for AlertsService {
    type WatchAlertsStream = AckStream<pb::Alert>;

    async fn watch_alerts(
        &self,
        req: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let p = grpc_principal(&req)?;
        let r = req.into_inner();
        let model = Some(r.model).filter(|m| !m.is_empty());
        if let Some(m) = &model {
            self.0.model(&p, m).map_err(|e| to_status(&e))?;
        }
        let slot = Arc::clone(&self.0.gates.watchers)
            .try_acquire_owned()
            .map_err(|_| {
                overloaded(
                    &self.0,
                    format!(
                        "too many open alert streams (limit {}); retry after 1s",
                        self.0.limits.watchers
                    ),
                )
            })?;
        let filter = crate::rules::AlertFilter {
            model,
            min_severity: severity_from_pb(r.min_severity).map_err(|e| to_status(&e))?,
            principal: p,
        };
        let rx = self.0.watch_alerts(r.after_sequence, filter, slot);
        let stream =
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|rec| Ok(alert_to_pb(&rec)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        use driftdb_engine::time::Timestamp;
        let p = grpc_principal(&req)?;
        let authorization = authorization(&req);
        let r = req.into_inner();
        let node = self.0.clone();
        let limit = match r.limit {
            0 => 100,
            n => (n as usize).min(MAX_ALERTS_LISTED),
        };
        let from = (r.from_ms != 0).then_some(Timestamp(r.from_ms));
        let to = (r.to_ms != 0).then_some(Timestamp(r.to_ms));
        let model = Some(r.model.clone()).filter(|m| !m.is_empty());
        let m2 = model.clone();
        let recs = tokio::task::spawn_blocking(move || {
            node.alert_history(&p, m2.as_deref(), from, to, limit)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| to_status(&e))?;
        let Some(c) = &self.0.cluster else {
            return Ok(Response::new(pb::ListAlertsResponse {
                alerts: recs.iter().map(alert_to_pb).collect(),
            }));
        };
        // In a cluster each node holds the alerts it fired: every live member's, as
        // `GET /alerts` gives them (docs/SCALE_OUT.md), merged newest first.
        let query = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            if let Some(m) = &model {
                q.append_pair("model", m);
            }
            for (k, t) in [("from", from), ("to", to)] {
                if let Some(t) = t {
                    q.append_pair(k, &t.to_rfc3339());
                }
            }
            q.append_pair("limit", &limit.to_string());
            q.finish()
        };
        let mut headers = axum::http::HeaderMap::new();
        if let Some(v) = authorization.as_deref().and_then(|a| a.parse().ok()) {
            headers.insert(axum::http::header::AUTHORIZATION, v);
        }
        let theirs = crate::cluster::ask_members(c, &headers, &format!("/alerts?{query}"))
            .await
            .map_err(|_| {
                Status::unavailable("a member did not answer for its alert history; retry")
            })?;
        let me = c.node_id();
        let mut alerts: Vec<(i64, pb::Alert)> = recs
            .iter()
            .map(|a| {
                (
                    a.recorded_at_ms,
                    pb::Alert {
                        node: me.clone(),
                        ..alert_to_pb(a)
                    },
                )
            })
            .collect();
        for (member, body) in theirs {
            for a in body["alerts"].as_array().into_iter().flatten() {
                let rec: crate::records::alerts::AlertRecord = serde_json::from_value(a.clone())
                    .map_err(|e| {
                        Status::unavailable(format!(
                            "member {member} answered an alert this node cannot read ({e}); retry"
                        ))
                    })?;
                let alert = pb::Alert {
                    node: member.clone(),
                    ..alert_to_pb(&rec)
                };
                alerts.push((rec.recorded_at_ms, alert));
            }
        }
        alerts
            .sort_by(|(ta, a), (tb, b)| (tb, &b.node, b.sequence).cmp(&(ta, &a.node, a.sequence)));
        alerts.truncate(limit);
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.into_iter().map(|(_, a)| a).collect(),
        }))
    }

    async fn acknowledge_alert(
        &self,
        req: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let p = grpc_principal(&req)?;
        let r = req.into_inner();
        let node = self.0.clone();
        let rec = tokio::task::spawn_blocking(move || {
            node.acknowledge_alert(&p, r.sequence, &r.by, &r.comment)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| to_status(&e))?;
        Ok(Response::new(alert_to_pb(&rec)))
    }
}

/// Implements `driftdb.v1.Admin`: API keys (see [`crate::auth::admin`] for who may do what).
#[derive(Debug, Clone)]
pub struct AdminService(pub Node);

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        use crate::auth::{Scope, Scopes};
        let p = grpc_principal(&req)?;
        let r = req.into_inner();
        let scopes = r
            .scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| to_status(&e))?;
        let node = self.0.clone();
        let k = tokio::task::spawn_blocking(move || {
            node.create_key(
                &p,
                crate::auth::admin::KeyRequest {
                    name: r.name,
                    team: Some(r.team).filter(|t| !t.is_empty()),
                    operator: r.operator,
                    scopes: Scopes::of(&scopes),
                },
            )
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreateKeyResponse {
            key: Some(key_to_pb(&k.record)),
            token: k.token,
        }))
    }

    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let p = grpc_principal(&req)?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: self.0.keys(&p).iter().map(key_to_pb).collect(),
        }))
    }

    async fn revoke_key(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        let p = grpc_principal(&req)?;
        let id = req.into_inner().id;
        let node = self.0.clone();
        let k = tokio::task::spawn_blocking(move || node.revoke_key(&p, &id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::RevokeKeyResponse {
            key: Some(key_to_pb(&k)),
        }))
    }
}

/// The gRPC router with every implemented service, each with the node's message-size limit,
/// behind the auth middleware.
pub fn router(node: &Node) -> tonic::service::Routes {
    let max = node.limits.max_message_bytes;
    let models = pb::models_server::ModelsServer::new(ModelsService(node.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let ingest = pb::ingest_server::IngestServer::new(IngestService(node.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let query = pb::query_server::QueryServer::new(QueryService(node.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let rules = pb::rules_server::RulesServer::new(RulesService(node.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let alerts = pb::alerts_server::AlertsServer::new(AlertsService(node.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let admin = pb::admin_server::AdminServer::new(AdminService(node.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let routes = tonic::service::Routes::new(models)
        .add_service(ingest)
        .add_service(query)
        .add_service(rules)
        .add_service(alerts)
        .add_service(admin);
    crate::guard::grpc_routes(routes, node)
}
