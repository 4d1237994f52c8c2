//! Operators that run a [`SelectPlan`]: scan a feature's series, merge windows into buckets
//! (and baseline intervals), evaluate the metric, filter (`having`) and rank (`top`).
//!
//! Reads stream: each feature's windows are folded into per-(segment, bucket) accumulators as
//! the scan yields them, so memory is bounded by segments × buckets, not by windows read.

use std::collections::BTreeMap;

use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::stats::quantile::ReferenceEdges;
use driftdb_engine::time::Resolution;
use driftdb_storage::{SeriesPrefix, SeriesReader};

use crate::ast::HavingField;
use crate::error::Result;
use crate::metrics::{BaseRef, Value, evaluate};
use crate::plan::{BaselinePlan, SegmentSel, SelectPlan, TimeRange};
use crate::table::{Cell, Table};

/// Counters a query reports next to its table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Windows read from storage.
    pub windows_read: u64,
    /// Stored windows skipped because they failed their checksum.
    pub corrupt_skipped: u64,
    /// Series skipped because the metric does not apply to them.
    pub not_applicable: u64,
    /// Windows that could not be merged (e.g. different state kinds) and were left out.
    pub merge_errors: u64,
}

/// Merged states per segment, one slot per interval.
pub type Accumulators = BTreeMap<Segment, Vec<Option<SeriesState>>>;

/// Sorted, disjoint intervals and a lookup from a window start to its interval.
#[derive(Debug, Clone)]
pub struct Intervals(pub Vec<TimeRange>);

impl Intervals {
    /// The index of the interval holding `t`.
    pub fn find(&self, t: driftdb_engine::time::Timestamp) -> Option<usize> {
        let i = self.0.partition_point(|r| r.to <= t);
        self.0.get(i).filter(|r| r.contains(t)).map(|_| i)
    }

    /// The smallest range covering every interval.
    pub fn hull(&self) -> Option<TimeRange> {
        Some(TimeRange {
            from: self.0.first()?.from,
            to: self.0.iter().map(|r| r.to).max()?,
        })
    }
}

/// Scans `prefix` over the hull of `intervals` (at `resolution`, plus the coarser resolution
/// where storage has downsampled) and merges each window into its (segment, interval) slot.
/// Segments `keep` rejects are skipped without decoding work beyond the scan.
pub fn accumulate(
    reader: &dyn SeriesReader,
    prefix: &SeriesPrefix,
    resolution: Resolution,
    intervals: &Intervals,
    keep: &dyn Fn(&FeatureRef, &Segment) -> bool,
    stats: &mut ExecStats,
) -> Result<BTreeMap<FeatureRef, Accumulators>> {
    let mut out: BTreeMap<FeatureRef, Accumulators> = BTreeMap::new();
    let Some(hull) = intervals.hull() else {
        return Ok(out);
    };
    let mut reads = vec![(resolution, hull.from, hull.to)];
    if let (Some(coarse), Some(boundary)) =
        (resolution.coarser(), reader.downsampled_before(resolution))
    {
        let c_from = coarse.window_start(hull.from);
        let c_to = hull.to.min(boundary);
        if c_from < c_to {
            reads.push((coarse, c_from, c_to));
        }
    }
    for (res, from, to) in reads {
        let mut it = reader.scan(prefix, res, from, to)?;
        for w in it.by_ref() {
            let w = w?;
            if !keep(&w.series.feature, &w.series.segment) {
                continue;
            }
            // A coarse window starting before the first interval still belongs to it.
            let at = w.window.start.max(hull.from);
            let Some(i) = intervals.find(at) else {
                continue;
            };
            stats.windows_read += 1;
            let slots = out
                .entry(w.series.feature.clone())
                .or_default()
                .entry(w.series.segment.clone())
                .or_insert_with(|| vec![None; intervals.0.len()]);
            match &mut slots[i] {
                Some(acc) => {
                    if acc.merge(&w.window.state).is_err() {
                        stats.merge_errors += 1;
                    }
                }
                slot @ None => *slot = Some(w.window.state),
            }
        }
        stats.corrupt_skipped += it.corrupt();
    }
    Ok(out)
}

/// The reference quantile edges of a series, when its reference has them.
pub fn edges_of<'a>(
    reference: Option<&'a ReferenceProfile>,
    feature: &FeatureRef,
    segment: &Segment,
) -> Option<&'a ReferenceEdges> {
    reference?
        .series(feature, segment)?
        .numeric()?
        .edges
        .as_ref()
}

/// The reference of a series as a baseline.
pub fn reference_base<'a>(
    reference: Option<&'a ReferenceProfile>,
    feature: &FeatureRef,
    segment: &Segment,
) -> BaseRef<'a> {
    let Some(r) = reference else {
        return BaseRef::Missing;
    };
    let Some(seg) = r.segments.get(segment) else {
        return BaseRef::Missing;
    };
    match seg.series.get(feature) {
        Some(series) => BaseRef::Profile {
            series,
            performance: &seg.performance,
        },
        None => BaseRef::Missing,
    }
}

/// One result row before projection.
#[derive(Debug, Clone)]
pub struct Row {
    /// Bucket.
    pub bucket: TimeRange,
    /// Series measured.
    pub feature: FeatureRef,
    /// Segment.
    pub segment: Segment,
    /// The metric's result.
    pub value: Value,
}

/// The `SeriesScanExec → MergeExec → BaselineExec → MetricExec` pipeline of a select: rows for
/// every (feature, segment, bucket) holding data, in that order.
pub fn select_rows(
    reader: &dyn SeriesReader,
    plan: &SelectPlan,
    stats: &mut ExecStats,
) -> Result<Vec<Row>> {
    let scope = &plan.scope;
    let buckets = Intervals(plan.buckets());
    let reference = scope.reference.as_deref();
    let seg_sel: &SegmentSel = &plan.segments;
    let features: std::collections::BTreeSet<&FeatureRef> = plan.features.iter().collect();
    let keep = |f: &FeatureRef, s: &Segment| features.contains(f) && seg_sel.matches(s);
    let mut rows = Vec::new();

    // Scan per feature when few are asked for; the whole version in one pass when many are.
    let prefixes: Vec<SeriesPrefix> = if plan.features.len() <= 4 {
        plan.features
            .iter()
            .map(|f| SeriesPrefix::Feature {
                model: scope.def.id.clone(),
                version: scope.version.clone(),
                feature: f.clone(),
            })
            .collect()
    } else {
        vec![SeriesPrefix::Version {
            model: scope.def.id.clone(),
            version: scope.version.clone(),
        }]
    };

    // Baseline intervals, one per bucket (identical for a fixed range).
    let base_intervals: Option<Vec<TimeRange>> = match &plan.baseline {
        BaselinePlan::Reference => None,
        b => Some(buckets.0.iter().filter_map(|r| b.interval(*r)).collect()),
    };

    for prefix in &prefixes {
        let current = accumulate(reader, prefix, scope.resolution, &buckets, &keep, stats)?;
        let baseline = match (&plan.baseline, &base_intervals) {
            (BaselinePlan::Reference, _) | (_, None) => None,
            (b, Some(ivs)) => {
                let mut uniq = ivs.clone();
                uniq.sort_by_key(|r| (r.from, r.to));
                uniq.dedup();
                let base_prefix = match (b, prefix) {
                    (BaselinePlan::Version(v), SeriesPrefix::Feature { model, feature, .. }) => {
                        SeriesPrefix::Feature {
                            model: model.clone(),
                            version: v.clone(),
                            feature: feature.clone(),
                        }
                    }
                    (BaselinePlan::Version(v), _) => SeriesPrefix::Version {
                        model: scope.def.id.clone(),
                        version: v.clone(),
                    },
                    _ => prefix.clone(),
                };
                let ivs = Intervals(uniq);
                let acc = accumulate(reader, &base_prefix, scope.resolution, &ivs, &keep, stats)?;
                Some((ivs, acc))
            }
        };
        for (feature, segs) in current {
            for (segment, slots) in segs {
                let edges = edges_of(reference, &feature, &segment);
                for (bi, slot) in slots.into_iter().enumerate() {
                    let Some(state) = slot else { continue };
                    let bucket = buckets.0[bi];
                    let base = match (&baseline, &base_intervals) {
                        (Some((ivs, acc)), Some(per_bucket)) => per_bucket
                            .get(bi)
                            .and_then(|iv| ivs.0.iter().position(|r| r == iv))
                            .and_then(|j| acc.get(&feature)?.get(&segment)?.get(j)?.as_ref())
                            .map_or(BaseRef::Missing, BaseRef::State),
                        _ => reference_base(reference, &feature, &segment),
                    };
                    match evaluate(&plan.metric, &state, base, edges)? {
                        Some(value) => rows.push(Row {
                            bucket,
                            feature: feature.clone(),
                            segment: segment.clone(),
                            value,
                        }),
                        None => stats.not_applicable += 1,
                    }
                }
            }
        }
    }
    Ok(rows)
}

/// `FilterExec` (having), `TopExec` and the projection into the result table.
pub fn project(plan: &SelectPlan, mut rows: Vec<Row>) -> Table {
    if let Some(h) = &plan.having {
        rows.retain(|r| {
            let x = match h.field {
                HavingField::Value => r.value.value,
                HavingField::P => r.value.p,
            };
            x.is_some_and(|x| h.op.holds(x, h.threshold))
        });
    }
    // Output order: time, then feature order of the plan, then segment.
    let order: BTreeMap<&FeatureRef, usize> = plan
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| (f, i))
        .collect();
    rows.sort_by(|a, b| {
        (a.bucket.from, order.get(&a.feature), &a.segment).cmp(&(
            b.bucket.from,
            order.get(&b.feature),
            &b.segment,
        ))
    });
    if let Some(t) = &plan.top {
        let mut kept = Vec::with_capacity(rows.len());
        let mut i = 0;
        while i < rows.len() {
            let j = i + rows[i..]
                .iter()
                .take_while(|r| r.bucket.from == rows[i].bucket.from)
                .count();
            let mut group: Vec<Row> = rows[i..j].to_vec();
            group.sort_by(|a, b| {
                let (x, y) = (a.value.value, b.value.value);
                match (x, y) {
                    (Some(x), Some(y)) if t.bottom => x.total_cmp(&y),
                    (Some(x), Some(y)) => y.total_cmp(&x),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
            });
            group.truncate(t.n as usize);
            kept.extend(group);
            i = j;
        }
        rows = kept;
    }
    let stepped = plan.step.is_some();
    let mut columns: Vec<String> = Vec::new();
    if stepped {
        columns.push("time".into());
    }
    columns.extend(["model", "version", "feature"].map(String::from));
    columns.extend(plan.segments.keys.iter().cloned());
    columns.extend(["metric", "value", "n", "baseline_n"].map(String::from));
    if plan.metric.def.has_p {
        columns.push("p".into());
    }
    let mut table = Table::new(columns);
    let label = plan.metric.label();
    for r in rows {
        let mut cells = Vec::with_capacity(table.columns.len());
        if stepped {
            cells.push(Cell::text(r.bucket.from.to_rfc3339()));
        }
        cells.push(Cell::text(&plan.scope.def.id));
        cells.push(Cell::text(&plan.scope.version));
        cells.push(Cell::text(r.feature.to_string()));
        for k in &plan.segments.keys {
            cells.push(match &r.segment {
                Segment::Value { key, value } if key == k => Cell::text(value),
                _ => Cell::Null,
            });
        }
        cells.push(Cell::text(&label));
        cells.push(Cell::num(r.value.value));
        cells.push(Cell::count(r.value.n));
        cells.push(r.value.baseline_n.map_or(Cell::Null, Cell::count));
        if plan.metric.def.has_p {
            cells.push(Cell::num(r.value.p));
        }
        table.rows.push(cells);
    }
    table
}
