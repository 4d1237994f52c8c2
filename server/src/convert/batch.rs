//! Decoding of ingest batches: `InferenceBatch` and `Label` messages → engine rows, every
//! positional length checked. This module depends only on the proto and engine crates and on
//! the `Invalid` and `Overloaded` variants of the server's error, so the ingest fuzz target
//! (`server/fuzz`) compiles this very file without the rest of the server.

use std::collections::BTreeMap;

use driftdb_engine::ingest::{
    Column, InferenceBatch, InferenceRow, LabelRow, MAX_BATCH_ROWS, RankedItem,
};
use driftdb_engine::model::{FeatureKind, clip};
use driftdb_engine::time::Timestamp;
use driftdb_proto::v1 as pb;

use crate::error::{Error, Result};

fn check_len(what: &str, got: usize, rows: usize, optional: bool) -> Result<()> {
    if got == rows || (optional && got == 0) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{}: {got} values for {rows} rows",
            clip(what)
        )))
    }
}

fn missing_mask(what: &str, missing: &[u32], rows: usize) -> Result<Vec<bool>> {
    let mut mask = vec![false; rows];
    for &m in missing {
        *mask.get_mut(m as usize).ok_or_else(|| {
            Error::Invalid(format!("{}: missing row {m} out of range", clip(what)))
        })? = true;
    }
    Ok(mask)
}

/// proto → engine batch, checking every positional length. Returns the batch and the inline
/// labels (reference uploads).
pub fn batch_from_pb(
    mut b: pb::InferenceBatch,
    kinds: &BTreeMap<String, FeatureKind>,
) -> Result<(InferenceBatch, Vec<Option<f64>>)> {
    let n = b.request_ids.len();
    if n > MAX_BATCH_ROWS {
        // Retrying the same batch cannot help: INVALID_ARGUMENT, not RESOURCE_EXHAUSTED (which
        // clients retry after the hint).
        return Err(Error::Invalid(format!(
            "batch of {n} rows exceeds the limit of {MAX_BATCH_ROWS}; split it"
        )));
    }
    check_len("ts_ms", b.ts_ms.len(), n, false)?;
    if b.model_versions.len() != 1 {
        check_len("model_versions", b.model_versions.len(), n, false)?;
    }
    check_len("scores", b.scores.len(), n, true)?;
    check_len("latency_ms", b.latency_ms.len(), n, true)?;
    check_len("cost", b.cost.len(), n, true)?;
    check_len("items", b.items.len(), n, true)?;
    check_len("labels", b.labels.len(), n, true)?;
    let score_missing = missing_mask("scores", &b.score_missing, n)?;
    let label_missing = missing_mask("labels", &b.label_missing, n)?;
    for s in &b.segments {
        check_len(&format!("segment {}", s.key), s.values.len(), n, false)?;
    }
    // Request ids, segment values and items move into the rows (no copy per row).
    let mut request_ids = std::mem::take(&mut b.request_ids).into_iter();
    let mut segment_cols: Vec<std::vec::IntoIter<String>> = b
        .segments
        .iter_mut()
        .map(|s| std::mem::take(&mut s.values).into_iter())
        .collect();
    let mut items = std::mem::take(&mut b.items).into_iter();
    let mut rows = Vec::with_capacity(n);
    #[expect(
        clippy::needless_range_loop,
        reason = "one index walks the parallel columns that are not moved"
    )]
    for i in 0..n {
        rows.push(InferenceRow {
            request_id: request_ids.next().unwrap_or_default(),
            ts: Timestamp(b.ts_ms[i]),
            version: if b.model_versions.len() == 1 {
                b.model_versions[0].clone()
            } else {
                b.model_versions[i].clone()
            },
            segments: segment_cols
                .iter_mut()
                .map(|c| c.next().filter(|v| !v.is_empty()))
                .collect(),
            score: b.scores.get(i).copied().filter(|_| !score_missing[i]),
            prediction: None,
            items: items
                .next()
                .map(|l| {
                    l.items
                        .into_iter()
                        .map(|it| RankedItem {
                            id: it.id,
                            score: it.score,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            // NaN latency means "not measured" (the proto has no missing list for it).
            latency_ms: b.latency_ms.get(i).copied().filter(|l| !l.is_nan()),
            // NaN cost means "not reported", as for latency.
            cost: b.cost.get(i).copied().filter(|c| !c.is_nan()),
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
                        clip(&f.name)
                    )));
                }
                if !f.codes.is_empty() || !f.dictionary.is_empty() {
                    if !f.categories.is_empty() {
                        return Err(Error::Invalid(format!(
                            "feature {:?} sends both categories and dictionary codes",
                            clip(&f.name)
                        )));
                    }
                    check_len(&f.name, f.codes.len(), n, false)?;
                    let missing = if f.missing.is_empty() {
                        Vec::new()
                    } else {
                        mask
                    };
                    Column::coded(f.dictionary, f.codes, missing)
                        .map_err(|e| Error::Invalid(format!("feature {:?}: {e}", clip(&f.name))))?
                } else {
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
            }
            // Numeric, or unknown (validate_batch rejects unknown names with a clear message).
            _ => {
                if !f.categories.is_empty() || !f.dictionary.is_empty() || !f.codes.is_empty() {
                    return Err(Error::Invalid(format!(
                        "feature {:?} is numeric but the batch sends strings",
                        clip(&f.name)
                    )));
                }
                check_len(&f.name, f.numbers.len(), n, false)?;
                // The decoded doubles move into the column as they are.
                Column::Dense {
                    values: f.numbers,
                    missing: if f.missing.is_empty() {
                        Vec::new()
                    } else {
                        mask
                    },
                }
            }
        };
        feature_names.push(f.name);
        columns.push(col);
    }
    let mut attributions = Vec::with_capacity(b.attributions.len());
    for a in b.attributions {
        let what = format!("attributions of {}", a.name);
        if !a.categories.is_empty() || !a.dictionary.is_empty() || !a.codes.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: attributions are numbers, the batch sends strings",
                clip(&what)
            )));
        }
        check_len(&what, a.numbers.len(), n, false)?;
        let mask = missing_mask(&what, &a.missing, n)?;
        attributions.push((
            a.name,
            Column::Dense {
                values: a.numbers,
                missing: if a.missing.is_empty() {
                    Vec::new()
                } else {
                    mask
                },
            },
        ));
    }
    Ok((
        InferenceBatch {
            model_id: b.model_id,
            feature_names,
            segment_keys: b.segments.into_iter().map(|s| s.key).collect(),
            rows,
            columns,
            attributions,
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
