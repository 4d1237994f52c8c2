//! Conversions between the gRPC messages (`driftdb_proto::v1`) and the node's types: the one
//! place protobuf meets the node. The transports decode a request here, call the node with
//! engine and query types, and encode its answer here.

use std::collections::BTreeMap;

use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::rules::Severity;
use driftdb_proto::v1 as pb;

use crate::auth::KeyRecord;
use crate::error::{Error, Result};
use crate::ingest::{BatchAck, LabelAck, LabelIn, RowError, Source};
use crate::rules::{AlertRecord, StoredRule, StoredSilence, redacted_json};

mod batch;

pub use batch::{batch_from_pb, label_from_pb};

/// proto → engine model definition.
pub fn model_from_pb(m: pb::Model) -> Result<ModelDef> {
    let task = match pb::Task::try_from(m.task).unwrap_or(pb::Task::Unspecified) {
        pb::Task::Binary => Task::Binary,
        pb::Task::Multiclass => Task::Multiclass,
        pb::Task::Regression => Task::Regression,
        pb::Task::Ranking => Task::Ranking,
        pb::Task::Unspecified => {
            return Err(Error::Invalid(
                "model task must be binary, multiclass, regression or ranking".into(),
            ));
        }
    };
    let mut features = BTreeMap::new();
    for (name, k) in m.features {
        let kind = match pb::FeatureKind::try_from(k).unwrap_or(pb::FeatureKind::Unspecified) {
            pb::FeatureKind::Numeric => FeatureKind::Numeric,
            pb::FeatureKind::Categorical => FeatureKind::Categorical,
            pb::FeatureKind::Unspecified => {
                return Err(Error::Invalid(format!(
                    "feature {name:?}: kind must be numeric or categorical"
                )));
            }
        };
        features.insert(name, kind);
    }
    let or = |s: String, d: &str| if s.is_empty() { d.to_string() } else { s };
    Ok(ModelDef {
        id: m.id,
        task,
        window: or(m.window, "1h"),
        grace: or(m.grace, "5m"),
        max_label_delay: or(m.max_label_delay, "30d"),
        segments: m.segments,
        segment_cap: if m.segment_cap == 0 {
            64
        } else {
            m.segment_cap
        },
        features,
        sampling: if m.sampling == 0.0 { 1.0 } else { m.sampling },
        team: (!m.team.is_empty()).then_some(m.team),
    })
}

/// engine → proto model definition.
pub fn model_to_pb(d: &ModelDef, versions: Vec<String>) -> pb::Model {
    pb::Model {
        id: d.id.clone(),
        task: match d.task {
            Task::Binary => pb::Task::Binary,
            Task::Multiclass => pb::Task::Multiclass,
            Task::Regression => pb::Task::Regression,
            Task::Ranking => pb::Task::Ranking,
        } as i32,
        window: d.window.clone(),
        grace: d.grace.clone(),
        max_label_delay: d.max_label_delay.clone(),
        segments: d.segments.clone(),
        segment_cap: d.segment_cap,
        features: d
            .features
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    match v {
                        FeatureKind::Numeric => pb::FeatureKind::Numeric,
                        FeatureKind::Categorical => pb::FeatureKind::Categorical,
                    } as i32,
                )
            })
            .collect(),
        sampling: d.sampling,
        team: d.team.clone().unwrap_or_default(),
        versions,
    }
}

/// Query result table → proto. Null cells carry no value; numbers keep their exact bits.
pub fn table_to_pb(t: &driftdb_query::Table) -> pb::Table {
    let cell = |c: &driftdb_query::Cell| pb::Cell {
        value: match c {
            driftdb_query::Cell::Null => None,
            driftdb_query::Cell::Number(v) => Some(pb::cell::Value::Number(*v)),
            driftdb_query::Cell::Text(s) => Some(pb::cell::Value::Text(s.clone())),
        },
    };
    pb::Table {
        columns: t.columns.clone(),
        rows: t
            .rows
            .iter()
            .map(|r| pb::Row {
                cells: r.iter().map(cell).collect(),
            })
            .collect(),
    }
}

/// proto → query result table (the CLI renders it with the query crate's own printers).
/// Short rows are padded with nulls so every row is as long as the header.
pub fn table_from_pb(t: pb::Table) -> driftdb_query::Table {
    let width = t.columns.len();
    let rows = t
        .rows
        .into_iter()
        .map(|r| {
            let mut cells: Vec<driftdb_query::Cell> = r
                .cells
                .into_iter()
                .map(|c| match c.value {
                    None => driftdb_query::Cell::Null,
                    Some(pb::cell::Value::Number(v)) => driftdb_query::Cell::Number(v),
                    Some(pb::cell::Value::Text(s)) => driftdb_query::Cell::Text(s),
                })
                .collect();
            cells.resize(width.max(cells.len()), driftdb_query::Cell::Null);
            cells
        })
        .collect();
    driftdb_query::Table {
        columns: t.columns,
        rows,
    }
}

/// Where a batch comes from, as its message says.
pub fn source(producer_id: &str, sequence: u64) -> Source {
    Source {
        producer: producer_id.to_string(),
        sequence,
    }
}

fn row_errors_to_pb(errors: &[RowError]) -> Vec<pb::RowError> {
    errors
        .iter()
        .map(|e| pb::RowError {
            row: e.row,
            request_id: e.request_id.clone(),
            reason: e.reason.clone(),
        })
        .collect()
}

/// An inference batch's ack → proto.
pub fn batch_ack_to_pb(a: &BatchAck) -> pb::BatchAck {
    pb::BatchAck {
        producer_id: a.source.producer.clone(),
        sequence: a.source.sequence,
        accepted: a.accepted,
        rejected: a.rejected,
        duplicates: a.duplicates,
        invalid_values: a.invalid_values,
        sampled_out: a.sampled_out,
        replayed: a.replayed,
        errors: row_errors_to_pb(&a.errors),
    }
}

/// A label batch's ack → proto.
pub fn label_ack_to_pb(a: &LabelAck) -> pb::LabelAck {
    pb::LabelAck {
        producer_id: a.source.producer.clone(),
        sequence: a.source.sequence,
        joined: a.joined,
        pending: a.pending,
        rejected: a.rejected,
        duplicates: a.duplicates,
        replayed: a.replayed,
        errors: row_errors_to_pb(&a.errors),
        sampled_out: a.sampled_out,
        expired: a.expired,
    }
}

/// proto labels → the node's labels (each with the model it names, if any).
pub fn labels_from_pb(labels: Vec<pb::Label>) -> Vec<LabelIn> {
    labels
        .into_iter()
        .map(|l| LabelIn {
            model_id: Some(l.model_id.clone()).filter(|m| !m.is_empty()),
            label: label_from_pb(l),
        })
        .collect()
}

/// engine → proto severity.
pub fn severity_to_pb(s: Severity) -> pb::Severity {
    match s {
        Severity::Critical => pb::Severity::Critical,
        Severity::High => pb::Severity::High,
        Severity::Medium => pb::Severity::Medium,
        Severity::Low => pb::Severity::Low,
    }
}

/// proto → engine severity (`None` for unspecified).
pub fn severity_from_pb(v: i32) -> Result<Option<Severity>> {
    Ok(match pb::Severity::try_from(v) {
        Ok(pb::Severity::Unspecified) => None,
        Ok(pb::Severity::Critical) => Some(Severity::Critical),
        Ok(pb::Severity::High) => Some(Severity::High),
        Ok(pb::Severity::Medium) => Some(Severity::Medium),
        Ok(pb::Severity::Low) => Some(Severity::Low),
        Err(_) => return Err(Error::Invalid(format!("unknown severity {v}"))),
    })
}

/// A stored rule → the gRPC `Rule` (secrets redacted), with its last evaluation error.
pub fn rule_to_pb(r: &StoredRule, last_error: Option<String>) -> pb::Rule {
    pb::Rule {
        id: r.def.id.clone(),
        definition_json: redacted_json(&r.def).to_string(),
        version: r.version,
        updated_at_ms: r.updated_at.millis(),
        model: r.def.model.clone(),
        kind: r.def.kind.as_str().to_string(),
        severity: severity_to_pb(r.def.severity) as i32,
        last_error: last_error.unwrap_or_default(),
    }
}

/// Segment text (`all`, `region=eu`) as the proto's map.
fn segment_map(segment: &str) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::new();
    if let Some((k, v)) = segment.split_once('=') {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// An alert record → the gRPC `Alert`.
pub fn alert_to_pb(r: &AlertRecord) -> pb::Alert {
    pb::Alert {
        sequence: r.seq,
        rule_id: r.rule_id.clone(),
        model: r.model.clone(),
        version: r.version.clone(),
        feature: r.feature.clone().unwrap_or_default(),
        segment: segment_map(&r.segment),
        metric: r.metric.clone(),
        value: r.value.unwrap_or(f64::NAN),
        threshold: r.threshold.unwrap_or(f64::NAN),
        severity: severity_to_pb(r.severity) as i32,
        state: r.status.clone(),
        window_start_ms: r.window_ms,
        fired_at_ms: r.fired_at_ms,
        resolved_at_ms: r.resolved_at_ms.unwrap_or(0),
        actions: r
            .actions
            .iter()
            .map(|a| pb::ActionResult {
                kind: a.kind.clone(),
                url: a.url.clone(),
                delivered: a.delivered,
                attempts: a.attempts,
                last_error: a.last_error.clone().unwrap_or_default(),
                dead_lettered: a.dead_lettered,
            })
            .collect(),
        summary: r.summary.clone(),
        reference: r.reference.unwrap_or(f64::NAN),
        rule_kind: r.rule_kind.clone(),
        event: r.event.clone().unwrap_or_default(),
        dedup_key: r.dedup_key.clone(),
        suppressed: r.suppressed.clone().unwrap_or_default(),
        acknowledged_by: r.ack.as_ref().map(|a| a.by.clone()).unwrap_or_default(),
        acknowledged_at_ms: r.ack.as_ref().map_or(0, |a| a.at_ms),
        ack_comment: r
            .ack
            .as_ref()
            .map(|a| a.comment.clone())
            .unwrap_or_default(),
        node: String::new(),
    }
}

/// A stored silence → the gRPC `Silence`, its state at `now`.
pub fn silence_to_pb(s: &StoredSilence, now: driftdb_engine::time::Timestamp) -> pb::Silence {
    let v = &s.silence;
    pb::Silence {
        id: v.id.clone(),
        matchers: v.matchers.clone().into_iter().collect(),
        starts_at_ms: v.starts_at_ms,
        ends_at_ms: v.ends_at_ms,
        created_by: v.created_by.clone(),
        comment: v.comment.clone(),
        version: s.version,
        updated_at_ms: s.updated_at.millis(),
        state: v.state(now).as_str().to_string(),
    }
}

/// An API key record → the gRPC `ApiKey`.
pub fn key_to_pb(k: &KeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.clone(),
        name: k.name.clone(),
        team: k.team.clone().unwrap_or_default(),
        scopes: k.scopes.names().into_iter().map(str::to_string).collect(),
        created_at_ms: k.created_at_ms,
        created_by: k.created_by.clone().unwrap_or_default(),
        revoked_at_ms: k.revoked_at_ms.unwrap_or(0),
    }
}
