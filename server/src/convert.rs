//! Conversions between the gRPC messages (`driftdb_proto::v1`) and engine types.

use std::collections::BTreeMap;

use driftdb_engine::ingest::{Column, InferenceBatch, InferenceRow, LabelRow, RankedItem};
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::time::Timestamp;
use driftdb_proto::v1 as pb;

use crate::error::{Error, Result};

/// Most rows one batch may carry.
pub const MAX_BATCH_ROWS: usize = 100_000;

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

fn check_len(what: &str, got: usize, rows: usize, optional: bool) -> Result<()> {
    if got == rows || (optional && got == 0) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what}: {got} values for {rows} rows"
        )))
    }
}

fn missing_mask(what: &str, missing: &[u32], rows: usize) -> Result<Vec<bool>> {
    let mut mask = vec![false; rows];
    for &m in missing {
        *mask
            .get_mut(m as usize)
            .ok_or_else(|| Error::Invalid(format!("{what}: missing row {m} out of range")))? = true;
    }
    Ok(mask)
}

/// proto → engine batch, checking every positional length. Returns the batch and the inline
/// labels (reference uploads).
pub fn batch_from_pb(
    b: pb::InferenceBatch,
    kinds: &BTreeMap<String, FeatureKind>,
) -> Result<(InferenceBatch, Vec<Option<f64>>)> {
    let n = b.request_ids.len();
    if n > MAX_BATCH_ROWS {
        return Err(Error::Overloaded(format!(
            "batch of {n} rows exceeds the limit of {MAX_BATCH_ROWS}; split it"
        )));
    }
    check_len("ts_ms", b.ts_ms.len(), n, false)?;
    if b.model_versions.len() != 1 {
        check_len("model_versions", b.model_versions.len(), n, false)?;
    }
    check_len("scores", b.scores.len(), n, true)?;
    check_len("latency_ms", b.latency_ms.len(), n, true)?;
    check_len("items", b.items.len(), n, true)?;
    check_len("labels", b.labels.len(), n, true)?;
    let score_missing = missing_mask("scores", &b.score_missing, n)?;
    let label_missing = missing_mask("labels", &b.label_missing, n)?;
    let mut segment_cols = Vec::with_capacity(b.segments.len());
    for s in &b.segments {
        check_len(&format!("segment {}", s.key), s.values.len(), n, false)?;
        segment_cols.push(s);
    }
    let mut rows = Vec::with_capacity(n);
    #[expect(
        clippy::needless_range_loop,
        reason = "one index walks eight parallel columns"
    )]
    for i in 0..n {
        rows.push(InferenceRow {
            request_id: b.request_ids[i].clone(),
            ts: Timestamp(b.ts_ms[i]),
            version: if b.model_versions.len() == 1 {
                b.model_versions[0].clone()
            } else {
                b.model_versions[i].clone()
            },
            segments: segment_cols
                .iter()
                .map(|c| Some(c.values[i].clone()).filter(|v| !v.is_empty()))
                .collect(),
            score: b.scores.get(i).copied().filter(|_| !score_missing[i]),
            prediction: None,
            items: b
                .items
                .get(i)
                .map(|l| {
                    l.items
                        .iter()
                        .map(|it| RankedItem {
                            id: it.id.clone(),
                            score: it.score,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            // NaN latency means "not measured" (the proto has no missing list for it).
            latency_ms: b.latency_ms.get(i).copied().filter(|l| !l.is_nan()),
        });
    }
    let labels = (0..n)
        .map(|i| b.labels.get(i).copied().filter(|_| !label_missing[i]))
        .collect();
    let mut feature_names = Vec::with_capacity(b.features.len());
    let mut columns = Vec::with_capacity(b.features.len());
    for f in b.features {
        let kind = kinds.get(&f.name).copied();
        let mask = missing_mask(&f.name, &f.missing, n)?;
        let col = match kind {
            Some(FeatureKind::Categorical) => {
                if !f.numbers.is_empty() {
                    return Err(Error::Invalid(format!(
                        "feature {:?} is categorical but the batch sends numbers",
                        f.name
                    )));
                }
                check_len(&f.name, f.categories.len(), n, false)?;
                Column::Values(
                    f.categories
                        .into_iter()
                        .zip(mask)
                        .map(|(c, m)| {
                            if m {
                                driftdb_engine::ingest::FieldValue::Missing
                            } else {
                                driftdb_engine::ingest::FieldValue::Category(c)
                            }
                        })
                        .collect(),
                )
            }
            // Numeric, or unknown (validate_batch rejects unknown names with a clear message).
            _ => {
                if !f.categories.is_empty() {
                    return Err(Error::Invalid(format!(
                        "feature {:?} is numeric but the batch sends strings",
                        f.name
                    )));
                }
                check_len(&f.name, f.numbers.len(), n, false)?;
                Column::Numbers(
                    f.numbers
                        .into_iter()
                        .zip(mask)
                        .map(|(x, m)| (!m).then_some(x))
                        .collect(),
                )
            }
        };
        feature_names.push(f.name);
        columns.push(col);
    }
    Ok((
        InferenceBatch {
            model_id: b.model_id,
            feature_names,
            segment_keys: b.segments.into_iter().map(|s| s.key).collect(),
            rows,
            columns,
        },
        labels,
    ))
}

/// proto → engine label.
pub fn label_from_pb(l: pb::Label) -> LabelRow {
    let o = l.outcome.unwrap_or_default();
    LabelRow {
        request_id: l.request_id,
        ts: Timestamp(l.ts_ms),
        label: l.label,
        click: Some(o.click),
        purchase: Some(o.purchase),
        revenue: Some(o.revenue),
        relevance: o.relevance.into_iter().collect(),
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
