//! The gRPC services (tonic): models, reference upload, ingest and labels, DriftQL queries and
//! drift summaries, rules and event announcements, the alert stream and history.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use driftdb_engine::reference::ReferenceBuilder;
use driftdb_proto::v1 as pb;
use futures::Stream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{batch_from_pb, model_from_pb, model_to_pb, table_to_pb};
use crate::error::{Error, to_status};
use crate::ingest::{ingest_inferences, ingest_labels};
use crate::node::Node;
use crate::query::{TimeArg, with_context, without_placeholder_pos};

/// Largest gRPC message accepted (a 1,000-row × 500-feature batch is about 4 MB).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// How long a batch waits for an ingest slot before RESOURCE_EXHAUSTED.
pub const OVERLOAD_WAIT: Duration = Duration::from_secs(2);

type AckStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Implements `driftdb.v1.Models`.
#[derive(Debug, Clone)]
pub struct ModelsService(pub Node);

#[tonic::async_trait]
impl pb::models_server::Models for ModelsService {
    async fn create_model(
        &self,
        req: Request<pb::CreateModelRequest>,
    ) -> Result<Response<pb::CreateModelResponse>, Status> {
        let m = req
            .into_inner()
            .model
            .ok_or_else(|| Status::invalid_argument("model missing"))?;
        let def = model_from_pb(m).map_err(|e| to_status(&e))?;
        let entry = self.0.registry.create(def).map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreateModelResponse {
            model: Some(model_to_pb(&entry.def, versions(&entry))),
        }))
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        let entry = self
            .0
            .registry
            .get(&req.into_inner().id)
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::GetModelResponse {
            model: Some(model_to_pb(&entry.def, versions(&entry))),
        }))
    }

    async fn list_models(
        &self,
        _: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let models = self.0.registry.list().map_err(|e| to_status(&e))?;
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
        let model = self
            .0
            .registry
            .get(&header.model_id)
            .map_err(|e| to_status(&e))?;
        let mut builder = ReferenceBuilder::new(&model.def, &header.model_version)
            .map_err(|e| to_status(&Error::from(e)))?;
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
        let node = self.0.clone();
        let replace = header.replace;
        let profile = tokio::task::spawn_blocking(move || builder.finish(node.clock.now()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(&Error::from(e)))?;
        summary.features = model.def.features.keys().cloned().collect();
        let node = self.0.clone();
        let m2 = Arc::clone(&model);
        tokio::task::spawn_blocking(move || node.registry.put_reference(&m2, profile, replace))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
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

async fn with_permit<T, F: std::future::Future<Output = Result<T, Error>>>(
    node: &Node,
    f: F,
) -> Result<T, Status> {
    let permit = match tokio::time::timeout(
        OVERLOAD_WAIT,
        Arc::clone(&node.ingest_permits).acquire_owned(),
    )
    .await
    {
        Ok(Ok(p)) => p,
        _ => {
            node.metrics
                .overloaded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut s =
                Status::resource_exhausted("ingest is overloaded; retry the batch after 1s");
            s.metadata_mut().insert(
                "retry-after-ms",
                tonic::metadata::MetadataValue::from_static("1000"),
            );
            return Err(s);
        }
    };
    let r = f.await.map_err(|e| to_status(&e));
    drop(permit);
    r
}

/// Serves one ingest stream: each inbound batch is handled in order and acknowledged after its
/// durable write. One batch is in flight per stream, and the bounded channel keeps a slow
/// reader from growing memory; the first error ends the stream.
fn ack_stream<In, Out, F, Fut>(node: Node, mut inbound: Streaming<In>, handle: F) -> AckStream<Out>
where
    In: Send + 'static,
    Out: Send + 'static,
    F: Fn(Node, In) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Out, Error>> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(msg) = inbound.next().await {
            let res = match msg {
                Ok(b) => with_permit(&node, handle(node.clone(), b)).await,
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
        Ok(Response::new(ack_stream(
            self.0.clone(),
            req.into_inner(),
            |node, b| async move { ingest_inferences(&node, b).await },
        )))
    }

    async fn ingest_labels(
        &self,
        req: Request<Streaming<pb::LabelBatch>>,
    ) -> Result<Response<Self::IngestLabelsStream>, Status> {
        Ok(Response::new(ack_stream(
            self.0.clone(),
            req.into_inner(),
            |node, b| async move { ingest_labels(&node, b).await },
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
        let text = req.into_inner().query;
        let out = crate::query::run(&self.0, text)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::QueryResponse {
            table: Some(table_to_pb(&out.table)),
            warnings: out.warnings,
        }))
    }

    async fn drift_summary(
        &self,
        req: Request<pb::DriftSummaryRequest>,
    ) -> Result<Response<pb::DriftSummaryResponse>, Status> {
        let r = req.into_inner();
        if r.model_id.is_empty() {
            return Err(Status::invalid_argument("model_id missing"));
        }
        let from = TimeArg::parse("from", &r.from).map_err(|e| to_status(&e))?;
        let to = TimeArg::parse("to", &r.to).map_err(|e| to_status(&e))?;
        let version = Some(r.model_version).filter(|v| !v.is_empty());
        let model = r.model_id;
        let s = with_context(&self.0, move |ctx| {
            let now = ctx.now;
            Ok(driftdb_query::drift_summary(
                ctx,
                &model,
                version.as_deref(),
                from.map(|t| t.resolve(now)),
                to.map(|t| t.resolve(now)),
            )
            .map_err(without_placeholder_pos)?)
        })
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
}

/// Implements `driftdb.v1.Rules`: rule CRUD (JSON definitions, validated with the field at
/// fault named) and event announcements.
#[derive(Debug, Clone)]
pub struct RulesService(pub Node);

#[tonic::async_trait]
impl pb::rules_server::Rules for RulesService {
    async fn create_rule(
        &self,
        req: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::CreateRuleResponse>, Status> {
        let json = req.into_inner().definition_json;
        let node = self.0.clone();
        let stored = tokio::task::spawn_blocking(move || crate::rules::create_rule(&node, &json))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreateRuleResponse {
            rule: Some(crate::rules::rule_to_pb(&self.0, &stored)),
        }))
    }

    async fn list_rules(
        &self,
        req: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let model = req.into_inner().model;
        let model = Some(model.as_str()).filter(|m| !m.is_empty());
        Ok(Response::new(pb::ListRulesResponse {
            rules: self
                .0
                .rules
                .book
                .list(model)
                .iter()
                .map(|r| crate::rules::rule_to_pb(&self.0, r))
                .collect(),
        }))
    }

    async fn delete_rule(
        &self,
        req: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::DeleteRuleResponse>, Status> {
        let id = req.into_inner().id;
        let node = self.0.clone();
        tokio::task::spawn_blocking(move || node.rules.book.delete(&id, node.clock.now()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }

    async fn announce_event(
        &self,
        req: Request<pb::AnnounceEventRequest>,
    ) -> Result<Response<pb::AnnounceEventResponse>, Status> {
        let r = req.into_inner();
        let node = self.0.clone();
        let records = tokio::task::spawn_blocking(move || {
            let version = Some(r.version.as_str()).filter(|v| !v.is_empty());
            crate::rules::announce_event(&node, &r.model, &r.event, version)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::AnnounceEventResponse {
            alerts: records.iter().map(crate::rules::alert_to_pb).collect(),
        }))
    }
}

/// Implements `driftdb.v1.Alerts`: the resumable alert stream and the alert history.
#[derive(Debug, Clone)]
pub struct AlertsService(pub Node);

/// Longest history answer.
const MAX_ALERTS_LISTED: usize = 10_000;

fn severity_from_pb(v: i32) -> Result<Option<driftdb_engine::rules::Severity>, Status> {
    use driftdb_engine::rules::Severity;
    Ok(match pb::Severity::try_from(v) {
        Ok(pb::Severity::Unspecified) => None,
        Ok(pb::Severity::Critical) => Some(Severity::Critical),
        Ok(pb::Severity::High) => Some(Severity::High),
        Ok(pb::Severity::Medium) => Some(Severity::Medium),
        Ok(pb::Severity::Low) => Some(Severity::Low),
        Err(_) => return Err(Status::invalid_argument(format!("unknown severity {v}"))),
    })
}

#[tonic::async_trait]
impl pb::alerts_server::Alerts for AlertsService {
    type WatchAlertsStream = AckStream<pb::Alert>;

    async fn watch_alerts(
        &self,
        req: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let r = req.into_inner();
        let filter = crate::rules::AlertFilter {
            model: Some(r.model).filter(|m| !m.is_empty()),
            min_severity: severity_from_pb(r.min_severity)?,
        };
        let rx = crate::rules::watch(self.0.clone(), r.after_sequence, filter);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|rec| Ok(crate::rules::alert_to_pb(&rec)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        use driftdb_engine::time::Timestamp;
        let r = req.into_inner();
        let node = self.0.clone();
        let limit = match r.limit {
            0 => 100,
            n => (n as usize).min(MAX_ALERTS_LISTED),
        };
        let recs = tokio::task::spawn_blocking(move || {
            let model = Some(r.model.as_str()).filter(|m| !m.is_empty());
            let from = (r.from_ms != 0).then_some(Timestamp(r.from_ms));
            let to = (r.to_ms != 0).then_some(Timestamp(r.to_ms));
            node.rules.log.history(model, from, to, limit)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: recs.iter().map(crate::rules::alert_to_pb).collect(),
        }))
    }
}

/// The gRPC router with every implemented service.
pub fn router(node: &Node) -> tonic::service::Routes {
    let models = pb::models_server::ModelsServer::new(ModelsService(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let ingest = pb::ingest_server::IngestServer::new(IngestService(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let query = pb::query_server::QueryServer::new(QueryService(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let rules = pb::rules_server::RulesServer::new(RulesService(node.clone()));
    let alerts = pb::alerts_server::AlertsServer::new(AlertsService(node.clone()));
    tonic::service::Routes::new(models)
        .add_service(ingest)
        .add_service(query)
        .add_service(rules)
        .add_service(alerts)
}
