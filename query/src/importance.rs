//! Feature importance from attributions: `importance(model.*)` and `importance_drift(model)`.
//!
//! Inference events may carry per-feature attributions (SHAP values, usually for a sample of
//! requests). The fold keeps, per window and segment, a numeric state of each feature's
//! absolute attributions (`$attr:<feature>`), and the reference profile keeps the same from its
//! rows. A feature's **importance** over a bucket is its mean |attribution| divided by the sum
//! of those means over the model's features (a share: the shares of a bucket sum to 1), so it
//! does not depend on how many rows were explained. **Importance drift** compares the bucket's
//! importance vector with the reference's: Spearman's rank correlation over the features either
//! side explains (a feature one side does not explain has share 0 there), with the features
//! whose share moved most (docs/STATISTICS.md §21).

use std::collections::BTreeMap;

use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_storage::SeriesReader;

use crate::error::Result;
use crate::exec::{ExecStats, Intervals, Row, accumulate_features_for};
use crate::metrics::{MetricDef, Value, numeric_of};
use crate::plan::SelectPlan;

/// Features named in an `importance_drift` row's `moved` note.
pub const MOVED_SHOWN: usize = 3;

/// Whether `def` is computed here rather than per series.
pub fn is_importance(def: &MetricDef) -> bool {
    matches!(def.name, "importance" | "importance_drift")
}

/// Mean |attribution| and explained rows of one feature on one side.
type Side = Vec<Option<(f64, u64)>>;

/// Shares of a vector of mean |attribution|s: each over their sum; `None` where a feature has
/// no attribution, all `None` when the sum is not positive.
pub fn shares(means: &[Option<f64>]) -> Vec<Option<f64>> {
    let total: f64 = means.iter().flatten().sum();
    if total.is_nan() || total <= 0.0 {
        return vec![None; means.len()];
    }
    means.iter().map(|m| m.map(|m| m / total)).collect()
}

/// Ranks of `x` (1-based, ties share their average rank).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|a, b| x[*a].total_cmp(&x[*b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && x[order[j]] == x[order[i]] {
            j += 1;
        }
        // Positions i..j (0-based) hold ranks i+1..=j: their mean.
        let avg = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            r[k] = avg;
        }
        i = j;
    }
    r
}

/// Spearman's rank correlation (Pearson's on average ranks); `None` for fewer than two pairs
/// or when a side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| (sab / (saa * sbb).sqrt()).clamp(-1.0, 1.0))
}

/// The reference's mean |attribution| and explained rows per feature of `names`, in `segment`.
pub fn reference_side(
    reference: Option<&ReferenceProfile>,
    names: &[String],
    segment: &Segment,
) -> Side {
    names
        .iter()
        .map(|n| {
            let st = &reference?
                .series(&FeatureRef::Attribution(n.clone()), segment)?
                .numeric()?
                .state;
            Some((st.mean()?, st.count()))
        })
        .collect()
}

/// Whether any feature of a side has an attribution.
fn explained(side: &Side) -> bool {
    side.iter().any(Option::is_some)
}

fn means(side: &Side) -> Vec<Option<f64>> {
    side.iter().map(|s| s.map(|s| s.0)).collect()
}

/// The rows of an `importance` or `importance_drift` select.
pub fn rows(
    reader: &(dyn SeriesReader + Sync),
    plan: &SelectPlan,
    stats: &mut ExecStats,
    warnings: &mut Vec<String>,
) -> Result<Vec<Row>> {
    let scope = &plan.scope;
    let names: Vec<String> = scope.def.features.keys().cloned().collect();
    let attrs: Vec<FeatureRef> = names
        .iter()
        .map(|n| FeatureRef::Attribution(n.clone()))
        .collect();
    let buckets = Intervals(plan.buckets());
    let acc = accumulate_features_for(
        reader,
        scope,
        &attrs,
        &buckets,
        &|_, s| plan.segments.matches(s),
        false,
        stats,
    )?;
    // (bucket, segment) → per feature (mean |attribution|, explained rows).
    let mut cells: BTreeMap<(usize, Segment), Side> = BTreeMap::new();
    for (fi, f) in attrs.iter().enumerate() {
        let Some(segs) = acc.get(f) else { continue };
        for (seg, slots) in segs {
            for (bi, slot) in slots.iter().enumerate() {
                let Some(n) = slot.as_ref().and_then(numeric_of) else {
                    continue;
                };
                if let Some(m) = n.mean() {
                    cells
                        .entry((bi, seg.clone()))
                        .or_insert_with(|| vec![None; names.len()])[fi] = Some((m, n.count()));
                }
            }
        }
    }
    if cells.is_empty() {
        warnings.push(format!(
            "no attributions for {}@{} in {}: events carry them as `attributions: {{feature: value}}`",
            scope.def.id, scope.version, plan.range
        ));
    }
    let reference = scope.reference.as_deref();
    let drift = plan.metric.def.name == "importance_drift";
    let mut reference_missing = false;
    let selected: std::collections::BTreeSet<&FeatureRef> = plan.features.iter().collect();
    let mut out = Vec::new();
    for ((bi, segment), cur) in cells {
        let base = reference_side(reference, &names, &segment);
        let base_explained = explained(&base);
        reference_missing |= !base_explained;
        let (cur_share, base_share) = (shares(&means(&cur)), shares(&means(&base)));
        let bucket = buckets.0[bi];
        let explained_rows = cur.iter().flatten().map(|c| c.1).max().unwrap_or(0);
        if !drift {
            for (fi, name) in names.iter().enumerate() {
                let feature = FeatureRef::Named(name.clone());
                let Some((_, n)) = cur[fi] else { continue };
                if !selected.contains(&feature) {
                    continue;
                }
                out.push(Row {
                    bucket,
                    feature,
                    segment: segment.clone(),
                    value: Value {
                        value: cur_share[fi],
                        n,
                        baseline_n: base[fi].map(|b| b.1),
                        baseline: base_share[fi],
                        ..Value::default()
                    },
                    note: None,
                });
            }
            continue;
        }
        // The features either side explains; share 0 where a side does not.
        let idx: Vec<usize> = (0..names.len())
            .filter(|i| cur[*i].is_some() || base[*i].is_some())
            .collect();
        let a: Vec<f64> = idx.iter().map(|i| cur_share[*i].unwrap_or(0.0)).collect();
        let b: Vec<f64> = idx.iter().map(|i| base_share[*i].unwrap_or(0.0)).collect();
        let rho = if base_explained {
            spearman(&a, &b)
        } else {
            None
        };
        let note = base_explained.then(|| moved(&names, &idx, &a, &b));
        out.push(Row {
            bucket,
            feature: FeatureRef::Named("*".into()),
            segment,
            value: Value {
                value: rho,
                n: explained_rows,
                baseline_n: base_explained
                    .then(|| base.iter().flatten().map(|c| c.1).max().unwrap_or(0)),
                ..Value::default()
            },
            note,
        });
    }
    if reference_missing {
        warnings.push(format!(
            "the reference profile of {}@{} has no attributions{}: load a reference whose rows carry them to compare importance",
            scope.def.id,
            scope.version,
            if drift { " (importance_drift is null)" } else { "" }
        ));
    }
    Ok(out)
}

/// The [`MOVED_SHOWN`] features whose share moved most, as `name +0.31 (0.12→0.43)`.
fn moved(names: &[String], idx: &[usize], cur: &[f64], base: &[f64]) -> String {
    let mut order: Vec<usize> = (0..idx.len()).collect();
    order.sort_by(|x, y| {
        let (dx, dy) = ((cur[*x] - base[*x]).abs(), (cur[*y] - base[*y]).abs());
        dy.total_cmp(&dx).then(x.cmp(y))
    });
    order
        .iter()
        .take(MOVED_SHOWN)
        .map(|&k| {
            format!(
                "{} {:+.3} ({:.3}→{:.3})",
                names[idx[k]],
                cur[k] - base[k],
                base[k],
                cur[k]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `explain` weights drift by, per feature of the model: its importance share times the
/// number of explained features (equal importance weighs 1; `None` for a feature without
/// attributions), from the reference when it has attributions, else from `current` (the
/// range's mean |attribution| per feature); and which of the two it is. `None` when neither
/// side has attributions.
pub fn weights(
    reference: Option<&ReferenceProfile>,
    names: &[String],
    current: &[Option<f64>],
) -> Option<(Vec<Option<f64>>, &'static str)> {
    let base = reference_side(reference, names, &Segment::All);
    let (shares, source) = if explained(&base) {
        (shares(&means(&base)), "reference")
    } else if current.iter().any(Option::is_some) {
        (shares(current), "current range")
    } else {
        return None;
    };
    let k = shares.iter().flatten().count() as f64;
    Some((shares.iter().map(|s| s.map(|s| s * k)).collect(), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_scipy() {
        // scipy.stats.spearmanr([1, 2, 3, 4], [1, 3, 2, 4]).statistic == 0.8
        let r = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((r - 0.8).abs() < 1e-12, "{r}");
        // With ties: spearmanr([1, 2, 2, 3], [3, 2, 2, 1]).statistic == -1.0
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[3.0, 2.0, 2.0, 1.0]).unwrap();
        assert!((r + 1.0).abs() < 1e-12, "{r}");
        // spearmanr([0.5, 0.3, 0.1, 0.1], [0.1, 0.3, 0.5, 0.1]).statistic == -7/18
        let r = spearman(&[0.5, 0.3, 0.1, 0.1], &[0.1, 0.3, 0.5, 0.1]).unwrap();
        assert!((r + 7.0 / 18.0).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn shares_sum_to_one_and_skip_unexplained() {
        let s = shares(&[Some(3.0), None, Some(1.0)]);
        assert_eq!(s, vec![Some(0.75), None, Some(0.25)]);
        assert_eq!(shares(&[Some(0.0), None]), vec![None, None]);
    }

    #[test]
    fn moved_names_the_largest_changes_first() {
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let note = moved(
            &names,
            &[0, 1, 2, 3],
            &[0.1, 0.6, 0.2, 0.1],
            &[0.6, 0.1, 0.2, 0.1],
        );
        assert_eq!(
            note,
            "a -0.500 (0.600→0.100), b +0.500 (0.100→0.600), c +0.000 (0.200→0.200)"
        );
    }
}
