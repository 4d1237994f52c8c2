//! Operators that run a [`SelectPlan`]: scan a feature's series, merge windows into buckets
//! (and baseline intervals), evaluate the metric, filter (`having`) and rank (`top`).
//!
//! Reads stream: each feature's windows are folded into per-(segment, bucket) accumulators as
//! the scan yields them, so memory is bounded by segments × buckets, not by windows read.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::stats::quantile::ReferenceEdges;
use driftdb_engine::time::{Resolution, Timestamp};
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
    accumulate_for(reader, prefix, resolution, intervals, keep, true, stats)
}

/// [`accumulate`], merging the KLL sketches of numeric and score states only when `sketch`
/// (the metric reads them: [`crate::metrics::needs_sketch`]); otherwise a slot of several
/// windows keeps their counts, moments and bins and marks its sketch dropped.
pub fn accumulate_for(
    reader: &dyn SeriesReader,
    prefix: &SeriesPrefix,
    resolution: Resolution,
    intervals: &Intervals,
    keep: &dyn Fn(&FeatureRef, &Segment) -> bool,
    sketch: bool,
    stats: &mut ExecStats,
) -> Result<BTreeMap<FeatureRef, Accumulators>> {
    let merge = |acc: &mut SeriesState, s: &SeriesState| {
        if sketch {
            acc.merge(s)
        } else {
            acc.merge_without_sketch(s)
        }
    };
    let mut out: BTreeMap<FeatureRef, Accumulators> = BTreeMap::new();
    let Some(hull) = intervals.hull() else {
        return Ok(out);
    };
    let reads = plan_reads(reader, resolution, intervals, hull);
    // Windows arrive grouped by series (one shared `Arc` per series): keep the current
    // series' slots local and hand them to `out` when the series changes.
    struct Current {
        key: Arc<SeriesKey>,
        keep: bool,
        slots: Vec<Option<SeriesState>>,
    }
    let n = intervals.0.len();
    let flush =
        |cur: Current, out: &mut BTreeMap<FeatureRef, Accumulators>, stats: &mut ExecStats| {
            if !cur.keep || cur.slots.iter().all(Option::is_none) {
                return;
            }
            let key = Arc::unwrap_or_clone(cur.key);
            let dst = out.entry(key.feature).or_default();
            match dst.entry(key.segment) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(cur.slots);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    for (d, s) in o.get_mut().iter_mut().zip(cur.slots) {
                        match (d, s) {
                            (_, None) => {}
                            (d @ None, s) => *d = s,
                            (Some(d), Some(s)) => {
                                if merge(d, &s).is_err() {
                                    stats.merge_errors += 1;
                                }
                            }
                        }
                    }
                }
            }
        };
    let mut read = 0u64;
    crate::budget::check()?;
    for (res, from, to) in reads {
        let mut it = reader.scan(prefix, res, from, to)?;
        if !sketch {
            // Nothing will read a sketch: do not copy the images out of the stored values.
            it = it.without_sketches();
        }
        let mut cur: Option<Current> = None;
        for w in it.by_ref() {
            let w = w?;
            read += 1;
            crate::budget::check_every(read)?;
            if !cur.as_ref().is_some_and(|c| Arc::ptr_eq(&c.key, &w.series)) {
                if let Some(done) = cur.take() {
                    flush(done, &mut out, stats);
                }
                cur = Some(Current {
                    keep: keep(&w.series.feature, &w.series.segment),
                    key: Arc::clone(&w.series),
                    slots: vec![None; n],
                });
            }
            let Some(c) = cur.as_mut().filter(|c| c.keep) else {
                continue;
            };
            // A coarse window starting before the first interval still belongs to it.
            let at = w.window.start.max(hull.from);
            let Some(i) = intervals.find(at) else {
                continue;
            };
            stats.windows_read += 1;
            match &mut c.slots[i] {
                Some(acc) => {
                    if merge(acc, &w.window.state).is_err() {
                        stats.merge_errors += 1;
                    }
                }
                slot @ None => *slot = Some(w.window.state),
            }
        }
        if let Some(done) = cur.take() {
            flush(done, &mut out, stats);
        }
        stats.corrupt_skipped += it.corrupt();
    }
    Ok(out)
}

/// Which (resolution, from, to) ranges to read for `intervals`: whole UTC days inside the
/// hull come from the daily rollups when the reader keeps them, the days are rolled up
/// already and no interval boundary cuts a day; the rest from `resolution`, plus the coarser resolution where storage has
/// downsampled. Every datum is read exactly once.
pub fn plan_reads(
    reader: &dyn SeriesReader,
    resolution: Resolution,
    intervals: &Intervals,
    hull: TimeRange,
) -> Vec<(Resolution, Timestamp, Timestamp)> {
    let day = Resolution::D1.width_ms();
    let mut fine = vec![(hull.from, hull.to)];
    let mut reads = Vec::new();
    if resolution < Resolution::D1
        && let Some(rf) = reader.daily_rollups_from()
    {
        let start = hull.from.max(rf).0;
        let d0 = start.div_euclid(day) * day + if start.rem_euclid(day) == 0 { 0 } else { day };
        // Days after the rollup cursor are still being filled: read their finer windows.
        let upto = hull.to.0.min(reader.daily_rollups_until().0.max(start));
        let d1 = upto.div_euclid(day) * day;
        let aligned = intervals
            .0
            .iter()
            .flat_map(|r| [r.from.0, r.to.0])
            .filter(|t| *t > d0 && *t < d1)
            .all(|t| t.rem_euclid(day) == 0);
        if d0 < d1 && aligned {
            reads.push((Resolution::D1, Timestamp(d0), Timestamp(d1)));
            fine = vec![(hull.from, Timestamp(d0)), (Timestamp(d1), hull.to)];
        }
    }
    for (from, to) in fine {
        if from >= to {
            continue;
        }
        reads.push((resolution, from, to));
        if let (Some(coarse), Some(boundary)) =
            (resolution.coarser(), reader.downsampled_before(resolution))
        {
            let c_from = coarse.window_start(from);
            let c_to = to.min(boundary);
            if c_from < c_to {
                reads.push((coarse, c_from, c_to));
            }
        }
    }
    reads
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
            calibration: seg.calibration.as_ref(),
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
    /// A note on the value (`importance_drift`: the features whose share moved most).
    pub note: Option<String>,
}

impl ExecStats {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &ExecStats) {
        self.windows_read += o.windows_read;
        self.corrupt_skipped += o.corrupt_skipped;
        self.not_applicable += o.not_applicable;
        self.merge_errors += o.merge_errors;
    }
}

/// Runs `work` over contiguous chunks of `items` on up to `available_parallelism` threads
/// (inline when there is one chunk) and returns the chunks' results in order.
pub fn par_chunks<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&[T]) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len().div_ceil(4))
        .max(1);
    if threads == 1 {
        return Ok(vec![work(items)?]);
    }
    let chunk = items.len().div_ceil(threads);
    // Workers run under the caller's query budget (crate::budget).
    let budget = crate::budget::current();
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                let work = &work;
                let budget = budget.clone();
                scope.spawn(move || crate::budget::run_under(budget.as_ref(), || work(c)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(crate::error::Error::plan(
                        None,
                        "a query worker thread panicked",
                    ))
                })
            })
            .collect()
    })
}

/// The scan prefix of `features` of one model version: the feature's own key range for one,
/// otherwise the range from the smallest to the largest (one RocksDB iterator for a whole chunk
/// of features instead of one per feature; series of other features inside the range are
/// dropped by the caller's `keep`).
pub fn features_prefix(model: &str, version: &str, features: &[FeatureRef]) -> SeriesPrefix {
    match (features.iter().min(), features.iter().max()) {
        (Some(first), Some(last)) if first != last => SeriesPrefix::Features {
            model: model.to_string(),
            version: version.to_string(),
            first: first.clone(),
            last: last.clone(),
        },
        (Some(f), _) => SeriesPrefix::Feature {
            model: model.to_string(),
            version: version.to_string(),
            feature: f.clone(),
        },
        _ => SeriesPrefix::Version {
            model: model.to_string(),
            version: version.to_string(),
        },
    }
}

/// Whether every numeric state of `acc` (features and `$score`, every segment and slot) holds
/// counts on its reference's bins, so drift tests over them need no KLL sketch (chi-square over
/// the bins rather than KS): then `acc` may be merged without sketches.
pub fn binned_throughout(
    acc: &BTreeMap<FeatureRef, Accumulators>,
    reference: Option<&driftdb_engine::reference::ReferenceProfile>,
) -> bool {
    acc.iter().all(|(f, segs)| {
        segs.iter().all(|(seg, slots)| {
            slots.iter().flatten().all(|state| {
                let numeric = match state {
                    SeriesState::Numeric(n) => n,
                    SeriesState::Score(s) => &s.distribution,
                    _ => return true,
                };
                match edges_of(reference, f, seg) {
                    Some(e) => numeric.bins().is_some_and(|b| b.edges_id == e.q50.id()),
                    None => false,
                }
            })
        })
    })
}

/// [`accumulate`] over `features` of `scope`'s version, the features split across cores
/// (one scan per core's chunk).
pub fn accumulate_features(
    reader: &(dyn SeriesReader + Sync),
    scope: &crate::plan::ModelScope,
    features: &[FeatureRef],
    intervals: &Intervals,
    keep: &(dyn Fn(&FeatureRef, &Segment) -> bool + Sync),
    stats: &mut ExecStats,
) -> Result<BTreeMap<FeatureRef, Accumulators>> {
    accumulate_features_for(reader, scope, features, intervals, keep, true, stats)
}

/// [`accumulate_features`], merging KLL sketches only when `sketch` (see [`accumulate_for`]).
pub fn accumulate_features_for(
    reader: &(dyn SeriesReader + Sync),
    scope: &crate::plan::ModelScope,
    features: &[FeatureRef],
    intervals: &Intervals,
    keep: &(dyn Fn(&FeatureRef, &Segment) -> bool + Sync),
    sketch: bool,
    stats: &mut ExecStats,
) -> Result<BTreeMap<FeatureRef, Accumulators>> {
    let mut sorted = features.to_vec();
    sorted.sort();
    sorted.dedup();
    let parts = par_chunks(&sorted, |chunk| {
        let mut st = ExecStats::default();
        let wanted: std::collections::BTreeSet<&FeatureRef> = chunk.iter().collect();
        let keep_chunk = |f: &FeatureRef, s: &Segment| wanted.contains(f) && keep(f, s);
        let prefix = features_prefix(&scope.def.id, &scope.version, chunk);
        let out = accumulate_for(
            reader,
            &prefix,
            scope.resolution,
            intervals,
            &keep_chunk,
            sketch,
            &mut st,
        )?;
        Ok((out, st))
    })?;
    let mut out = BTreeMap::new();
    for (m, st) in parts {
        out.extend(m);
        stats.add(&st);
    }
    Ok(out)
}

/// The `SeriesScanExec → MergeExec → BaselineExec → MetricExec` pipeline of a select: rows for
/// every (feature, segment, bucket) holding data. Features are independent: each is scanned
/// (one key range per feature) and evaluated on its own, features split across cores.
pub fn select_rows(
    reader: &(dyn SeriesReader + Sync),
    plan: &SelectPlan,
    stats: &mut ExecStats,
) -> Result<Vec<Row>> {
    let buckets = Intervals(plan.buckets());
    // Baseline intervals, one per bucket (identical for a fixed range), and their sorted set.
    let base_intervals: Option<(Vec<TimeRange>, Intervals)> = match &plan.baseline {
        BaselinePlan::Reference => None,
        b => {
            let per: Vec<TimeRange> = buckets.0.iter().filter_map(|r| b.interval(*r)).collect();
            let mut uniq = per.clone();
            uniq.sort_by_key(|r| (r.from, r.to));
            uniq.dedup();
            Some((per, Intervals(uniq)))
        }
    };
    // Features in key order, so each core's chunk is one contiguous key range read by one
    // scan; rows are put back in the plan's order by `project`.
    let mut features = plan.features.clone();
    features.sort();
    features.dedup();
    let parts = par_chunks(&features, |chunk| {
        let mut st = ExecStats::default();
        let mut rows = Vec::new();
        select_features(
            reader,
            plan,
            chunk,
            &buckets,
            base_intervals.as_ref(),
            &mut rows,
            &mut st,
        )?;
        Ok((rows, st))
    })?;
    let mut rows = Vec::new();
    for (r, st) in parts {
        rows.extend(r);
        stats.add(&st);
    }
    Ok(rows)
}

/// Scans `features` (one contiguous chunk of the plan's, in key order) with one iterator for
/// the current range and one for the baseline, then evaluates each feature's segments.
fn select_features(
    reader: &dyn SeriesReader,
    plan: &SelectPlan,
    features: &[FeatureRef],
    buckets: &Intervals,
    base_intervals: Option<&(Vec<TimeRange>, Intervals)>,
    rows: &mut Vec<Row>,
    stats: &mut ExecStats,
) -> Result<()> {
    let scope = &plan.scope;
    let reference = scope.reference.as_deref();
    let seg_sel: &SegmentSel = &plan.segments;
    let wanted: std::collections::BTreeSet<&FeatureRef> = features.iter().collect();
    let keep = |f: &FeatureRef, s: &Segment| wanted.contains(f) && seg_sel.matches(s);
    let prefix = features_prefix(&scope.def.id, &scope.version, features);
    let sketch = crate::metrics::needs_sketch(&plan.metric);
    let mut current = accumulate_for(
        reader,
        &prefix,
        scope.resolution,
        buckets,
        &keep,
        sketch,
        stats,
    )?;
    let mut baseline: Option<BTreeMap<FeatureRef, Accumulators>> = match base_intervals {
        None => None,
        Some((_, ivs)) => {
            let base_prefix = match &plan.baseline {
                BaselinePlan::Version(v) => features_prefix(&scope.def.id, v, features),
                _ => prefix.clone(),
            };
            Some(accumulate_for(
                reader,
                &base_prefix,
                scope.resolution,
                ivs,
                &keep,
                sketch,
                stats,
            )?)
        }
    };
    for feature in features {
        let Some(segs) = current.remove(feature) else {
            continue;
        };
        let base: Option<Accumulators> = baseline
            .as_mut()
            .map(|b| b.remove(feature).unwrap_or_default());
        for (segment, slots) in segs {
            let edges = edges_of(reference, feature, &segment);
            let reference_base = reference_base(reference, feature, &segment);
            let base_slots = base.as_ref().and_then(|b| b.get(&segment));
            for (bi, slot) in slots.into_iter().enumerate() {
                let Some(state) = slot else { continue };
                let base = match base_intervals {
                    Some((per_bucket, ivs)) => per_bucket
                        .get(bi)
                        .and_then(|iv| {
                            ivs.0
                                .binary_search_by_key(&(iv.from, iv.to), |r| (r.from, r.to))
                                .ok()
                        })
                        .and_then(|j| base_slots?.get(j)?.as_ref())
                        .map_or(BaseRef::Missing, BaseRef::State),
                    None => reference_base,
                };
                match evaluate(&plan.metric, &state, base, edges)? {
                    Some(value) => rows.push(Row {
                        bucket: buckets.0[bi],
                        feature: feature.clone(),
                        segment: segment.clone(),
                        value,
                        note: None,
                    }),
                    None => stats.not_applicable += 1,
                }
            }
        }
    }
    Ok(())
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
    rows.sort_by_cached_key(|r| {
        (
            r.bucket.from,
            order.get(&r.feature).copied(),
            r.segment.clone(),
        )
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
    // W1 is estimated from sketches: its rows carry the bound on that estimate's error.
    let has_error = plan.metric.def.name == "wasserstein";
    if has_error {
        columns.push("error".into());
    }
    // Estimates without labels carry their standard error.
    let has_stderr = crate::metrics::is_estimated(plan.metric.def);
    if has_stderr {
        columns.push("stderr".into());
    }
    // Importance has a value on both sides: the reference's share beside the current one.
    let has_baseline = plan.metric.def.name == "importance";
    if has_baseline {
        columns.push("baseline".into());
    }
    let has_note = plan.metric.def.name == "importance_drift";
    if has_note {
        columns.push("moved".into());
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
        if has_error {
            cells.push(Cell::num(r.value.error));
        }
        if has_stderr {
            cells.push(Cell::num(r.value.stderr));
        }
        if has_baseline {
            cells.push(Cell::num(r.value.baseline));
        }
        if has_note {
            cells.push(r.note.as_deref().map_or(Cell::Null, Cell::text));
        }
        table.rows.push(cells);
    }
    table
}
