//! Conversions between the gRPC messages (`driftdb_proto::v1`) and engine types.

use std::collections::BTreeMap;

use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_proto::v1 as pb;

use crate::error::{Error, Result};

mod batch;

pub use batch::{MAX_BATCH_ROWS, batch_from_pb, label_from_pb};

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
