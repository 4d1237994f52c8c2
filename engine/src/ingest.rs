//! Folding inference rows into per-(series, window) sketch deltas (docs/ARCHITECTURE.md's "engine folds rows
//! into sketch deltas"), and the pure half of the label join.
//!
//! A batch names its features and segment keys once; rows carry values positionally. Each
//! accepted row updates the overall segment `all` and one segment per segment key (values past a
//! key's cardinality cap fold into `__other__`). Rows are placed by event time only, so a replay
//! rebuilds identical windows (docs/DATA_MODEL.md, scale-out 3). Folding is column-major: rows are first mapped to
//! their (version, window, segment) groups ([`plan_batch`], the only step that needs the segment
//! registry), then each feature column is folded into one state per group ([`fold_planned`],
//! columns spread over threads). A numeric column is folded in bulk: its values are sorted once
//! and each group's state is built from its values in order ([`NumericState::from_sorted`]).
//!
//! Besides the input features, every accepted row updates `$score` (and `$latency` and
//! `$cost` when it carries them, and `$attr:<feature>` with the absolute value of each
//! attribution it carries); rows of ranking models with a non-empty served list also update
//! `$items`, one categorical value per item id among the first [`TOP_K_ITEMS`] served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::FastMap;
use crate::model::{FeatureKind, ModelDef, Task, clip};
use crate::series::{FeatureRef, OTHER_SEGMENT_VALUE, Segment, SeriesKey, TOP_K_ITEMS};
use crate::sketch::numeric::{bulk_order_key, sort_order_keys};
use crate::sketch::performance::PerformanceState;
use crate::sketch::{BinEdges, CategoricalState, NumericState, ScoreState, SeriesState};
use crate::time::{Resolution, Timestamp};

/// One feature value as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A number (numeric features).
    Number(f64),
    /// A string or boolean (categorical features; booleans arrive as `"true"`/`"false"`).
    Category(String),
    /// A boolean, before it is mapped to its category.
    Bool(bool),
    /// Null: the value is missing.
    Missing,
}

/// One served item of a ranking prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedItem {
    /// Item id.
    pub id: String,
    /// The model's score for it.
    pub score: f64,
}

/// One inference event, positional against its batch's names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferenceRow {
    /// Caller's request id; the join key for labels and the dedup key.
    pub request_id: String,
    /// Event time.
    pub ts: Timestamp,
    /// Model version.
    pub version: String,
    /// Segment values, positional over [`InferenceBatch::segment_keys`]; `None` when absent.
    pub segments: Vec<Option<String>>,
    /// Prediction score (binary / multiclass probability).
    pub score: Option<f64>,
    /// Predicted value (regression) or class.
    pub prediction: Option<f64>,
    /// Ranking: the served list in display order.
    pub items: Vec<RankedItem>,
    /// Serving latency in ms.
    pub latency_ms: Option<f64>,
    /// Cost of serving this event, in currency units (finite, ≥ 0).
    pub cost: Option<f64>,
}

/// One feature's values for every row of a batch (columnar layout: names once per batch).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers, `None` for missing: the fast path for numeric features.
    Numbers(Vec<Option<f64>>),
    /// Numbers as the wire sends them (packed doubles, a value in every row) with the rows
    /// whose value is missing flagged: what a gRPC batch becomes without copying its doubles.
    Dense {
        /// One value per row; a missing row's value is ignored.
        values: Vec<f64>,
        /// `missing[row]`; empty when no row is missing.
        missing: Vec<bool>,
    },
    /// Values of any type, for row-oriented sources (JSONL, CSV); checked against the schema.
    Values(Vec<FieldValue>),
    /// Categories, dictionary-encoded as the wire may send them: row `i` is
    /// `dictionary[codes[i]]`, or missing when flagged. Codes are checked against the
    /// dictionary when the column is built ([`Column::coded`]).
    Coded(Coded),
}

/// A dictionary-encoded categorical column (see [`Column::Coded`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Coded {
    dictionary: Vec<String>,
    codes: Vec<u32>,
    missing: Vec<bool>,
}

impl Coded {
    /// The code of `row`, `None` when the row is missing (or past the end).
    pub fn code(&self, row: usize) -> Option<u32> {
        if self.missing.get(row).copied().unwrap_or(false) {
            return None;
        }
        self.codes.get(row).copied()
    }
}

impl Column {
    /// A dictionary-encoded column; `missing` is empty or one flag per row. Every code of a
    /// row that is not missing must index `dictionary`: the first that does not is the error.
    pub fn coded(
        dictionary: Vec<String>,
        codes: Vec<u32>,
        missing: Vec<bool>,
    ) -> std::result::Result<Column, String> {
        if !missing.is_empty() && missing.len() != codes.len() {
            return Err(format!(
                "{} missing flags for {} codes",
                missing.len(),
                codes.len()
            ));
        }
        let n = dictionary.len();
        if let Some((row, code)) = codes
            .iter()
            .enumerate()
            .find(|(i, c)| (**c as usize) >= n && !missing.get(*i).copied().unwrap_or(false))
        {
            return Err(format!(
                "row {row}: code {code} is past the dictionary of {n} values"
            ));
        }
        Ok(Column::Coded(Coded {
            dictionary,
            codes,
            missing,
        }))
    }
}

impl Column {
    /// Number of rows in the column.
    pub fn len(&self) -> usize {
        match self {
            Column::Numbers(v) => v.len(),
            Column::Dense { values, .. } => values.len(),
            Column::Values(v) => v.len(),
            Column::Coded(c) => c.codes.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row` (`Missing` past the end).
    pub fn get(&self, row: usize) -> FieldRef<'_> {
        match self {
            Column::Numbers(v) => match v.get(row) {
                Some(Some(x)) => FieldRef::Number(*x),
                _ => FieldRef::Missing,
            },
            Column::Dense { values, missing } => match values.get(row) {
                Some(x) if !missing.get(row).copied().unwrap_or(false) => FieldRef::Number(*x),
                _ => FieldRef::Missing,
            },
            Column::Values(v) => match v.get(row) {
                Some(FieldValue::Number(x)) => FieldRef::Number(*x),
                Some(FieldValue::Category(c)) => FieldRef::Category(c),
                Some(FieldValue::Bool(true)) => FieldRef::Category("true"),
                Some(FieldValue::Bool(false)) => FieldRef::Category("false"),
                Some(FieldValue::Missing) | None => FieldRef::Missing,
            },
            Column::Coded(c) => match c.code(row) {
                Some(code) => c
                    .dictionary
                    .get(code as usize)
                    .map_or(FieldRef::Missing, |s| FieldRef::Category(s)),
                None => FieldRef::Missing,
            },
        }
    }
}

/// A borrowed feature value; booleans already mapped to their categories.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    /// A number.
    Number(f64),
    /// A category.
    Category(&'a str),
    /// Missing.
    Missing,
}

/// Most rows one inference or label batch may carry (larger batches are refused; split them).
pub const MAX_BATCH_ROWS: usize = 100_000;

/// A batch of inference rows for one model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferenceBatch {
    /// Model id.
    pub model_id: String,
    /// Feature names, once per batch.
    pub feature_names: Vec<String>,
    /// Segment keys, once per batch.
    pub segment_keys: Vec<String>,
    /// Per-row metadata (request id, time, version, segments, prediction).
    pub rows: Vec<InferenceRow>,
    /// One column per feature name, each with one value per row.
    pub columns: Vec<Column>,
    /// Per-feature attributions (e.g. SHAP values): a model feature's name and one number per
    /// row, missing in rows that carry none (services usually explain a sample of requests).
    pub attributions: Vec<(String, Column)>,
}

/// The reference side of folding: bin edges and known categories per series.
pub trait Baselines {
    /// PSI bin edges (the 50-bin set) for a numeric series, if a reference exists.
    fn edges(&self, version: &str, feature: &FeatureRef, segment: &Segment) -> Option<&BinEdges>;
    /// Whether the reference of a categorical series has seen `value`; `None` without reference.
    fn knows_category(
        &self,
        version: &str,
        feature: &str,
        segment: &Segment,
        value: &str,
    ) -> Option<bool>;
    /// Whether the reference's `$items` series has seen item `id`; `None` without one (the
    /// default, for baselines that keep no served items).
    fn knows_item(&self, version: &str, segment: &Segment, id: &str) -> Option<bool> {
        let _ = (version, segment, id);
        None
    }
    /// The categories the reference of categorical `feature` has seen, resolved once per
    /// (version, segment) so the fold looks the series up once per batch rather than once per
    /// value. The default defers every value to [`Baselines::knows_category`].
    fn known_categories(&self, version: &str, feature: &str, segment: &Segment) -> Known<'_> {
        let _ = (version, feature, segment);
        Known::Ask
    }
}

/// What a reference knows of one categorical series ([`Baselines::known_categories`]).
#[derive(Debug, Clone, Copy)]
pub enum Known<'a> {
    /// No reference series: no value is counted as unseen.
    NoReference,
    /// The reference's counts are past their exact cap: every value counts as seen.
    Everything,
    /// Exactly these categories were seen.
    Exactly(&'a BTreeMap<String, u64>),
    /// Ask [`Baselines::knows_category`] for each value.
    Ask,
}

/// No reference at all (states are folded without bins).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBaselines;

impl Baselines for NoBaselines {
    fn edges(&self, _: &str, _: &FeatureRef, _: &Segment) -> Option<&BinEdges> {
        None
    }
    fn knows_category(&self, _: &str, _: &str, _: &Segment, _: &str) -> Option<bool> {
        None
    }
}

/// Admitted segment values per key, capped; values past the cap fold into `__other__`.
///
/// First come, first admitted; the registry is persisted by the server so admission is stable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentRegistry {
    cap: usize,
    admitted: BTreeMap<String, BTreeSet<String>>,
    changed: bool,
}

impl SegmentRegistry {
    /// An empty registry admitting `cap` values per key.
    pub fn new(cap: usize) -> Self {
        SegmentRegistry {
            cap,
            ..Default::default()
        }
    }

    /// A registry restored from its admitted values.
    pub fn from_admitted(cap: usize, admitted: BTreeMap<String, BTreeSet<String>>) -> Self {
        SegmentRegistry {
            cap,
            admitted,
            changed: false,
        }
    }

    /// The admitted values per key.
    pub fn admitted(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.admitted
    }

    /// Whether values were admitted since the last [`SegmentRegistry::mark_saved`].
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Records that the registry was persisted.
    pub fn mark_saved(&mut self) {
        self.changed = false;
    }

    /// The stored value for `value` of `key`: itself if admitted (or admissible), else `__other__`.
    pub fn admit(&mut self, key: &str, value: &str) -> String {
        let set = self.admitted.entry(key.to_string()).or_default();
        if set.contains(value) {
            return value.to_string();
        }
        if set.len() < self.cap {
            set.insert(value.to_string());
            self.changed = true;
            return value.to_string();
        }
        OTHER_SEGMENT_VALUE.to_string()
    }
}

/// Limits the fold enforces on event time.
#[derive(Debug, Clone, Copy)]
pub struct TimeBounds {
    /// Oldest accepted event time (now − retention).
    pub oldest: Timestamp,
    /// Newest accepted event time (now + allowed clock skew).
    pub newest: Timestamp,
}

/// Why a row was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Row index in the batch.
    pub row: usize,
    /// Request id (may be empty).
    pub request_id: String,
    /// Reason, one line.
    pub reason: String,
}

/// What a label join needs to remember about a prediction until its label arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingPrediction {
    /// Model version.
    pub version: String,
    /// Window the prediction belongs to.
    pub window: Timestamp,
    /// Segments it counted in (always including `all`), shared by the rows of a batch that
    /// counted in the same ones.
    pub segments: Arc<[Segment]>,
    /// Score or predicted value.
    pub score: Option<f64>,
    /// Ranking: served item ids in display order.
    pub items: Vec<String>,
}

/// The result of folding a batch.
#[derive(Debug, Default)]
pub struct FoldOutput {
    /// One delta per (series, window start).
    pub deltas: Vec<(SeriesKey, Timestamp, SeriesState)>,
    /// Rejected rows.
    pub rejected: Vec<Rejection>,
    /// Accepted rows.
    pub accepted: usize,
    /// Rows dropped by server-side sampling (not errors).
    pub sampled_out: usize,
    /// Non-finite values counted as invalid.
    pub invalid_values: u64,
    /// Per accepted row (by request id): what the label join needs.
    pub pending: Vec<(String, PendingPrediction)>,
}

/// Whether a request id is kept by sampling at `rate`: deterministic in the id, so a replay keeps
/// the same rows.
pub fn sampled_in(request_id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let h = crc32fast::hash(request_id.as_bytes());
    (f64::from(h) / f64::from(u32::MAX)) < rate
}

/// Group index of one (version, window, segment) combination.
type GroupKey = (usize, i64, Segment);

/// Marks a segment key a row has no value for in [`RowPlan`]'s group table.
const NO_GROUP: u32 = u32::MAX;

/// The row pass of a fold: which rows are accepted and which (version, window, segment)
/// groups each one updates. It is the only part of a fold that touches the
/// [`SegmentRegistry`], so a caller can hold the registry's lock for it alone and fold the
/// columns ([`fold_planned`]) without it.
#[derive(Debug, Default)]
pub struct RowPlan {
    versions: Vec<String>,
    groups: Vec<GroupKey>,
    /// Accepted rows (indices into the batch), ascending.
    rows: Vec<usize>,
    /// Row `p` of `rows` updates groups `row_groups[p * stride..][..stride]`: its `all` group
    /// first, then one per segment key ([`NO_GROUP`] where the row has no value).
    row_groups: Vec<u32>,
    stride: usize,
    /// Per `all` group: the positions (into `rows`) of its rows, ascending. Every group is a
    /// subset of exactly one of these.
    tops: Vec<Vec<u32>>,
    /// Per accepted row, for tasks whose predictions wait for labels: the segments it counted
    /// in (shared by the rows with the same ones). The pending records are built from these
    /// when the fold finishes.
    pending_segments: Vec<Arc<[Segment]>>,
    /// Whether the caller has no use for pending records ([`RowPlan::without_pending`]).
    no_pending: bool,
    /// Everything about the batch that does not depend on the columns.
    out: FoldOutput,
}

impl RowPlan {
    /// Number of accepted rows (the columns are folded for these).
    pub fn accepted(&self) -> usize {
        self.out.accepted
    }

    /// The accepted rows, as indices into the batch, ascending.
    pub fn accepted_rows(&self) -> &[usize] {
        &self.rows
    }

    /// Number of (version, window, segment) groups the accepted rows update.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The fold of this plan will leave [`FoldOutput::pending`] empty: for a caller that has
    /// no labels to join (a file with none), which then skips a request id and version copy
    /// per row.
    pub fn without_pending(&mut self) {
        self.no_pending = true;
    }
}

/// Folds a batch. `skip(row)` returns true for rows to drop silently (duplicates).
///
/// The same as [`plan_batch`] followed by [`fold_planned`] on one thread.
pub fn fold_batch(
    model: &ModelDef,
    resolution: Resolution,
    batch: &InferenceBatch,
    baselines: &dyn Baselines,
    segments: &mut SegmentRegistry,
    bounds: TimeBounds,
    skip: &dyn Fn(usize, &InferenceRow) -> bool,
) -> FoldOutput {
    let plan = plan_batch(model, resolution, batch, segments, bounds, skip);
    let results = {
        let mut ctx = FoldCtx::new(model, batch, &plan, baselines);
        let units = ctx.units();
        ctx.fold_units(&units)
    };
    finish(model, batch, plan, baselines, results)
}

/// Folds the columns of a planned batch over up to `threads` threads (scoped threads, joined
/// before returning). `plan` must come from [`plan_batch`] on the same `batch`. The output, including the order of its deltas, does not depend on
/// `threads`: feature columns are independent, so threads take them in small runs and the
/// results are put back in column order.
pub fn fold_planned(
    model: &ModelDef,
    batch: &InferenceBatch,
    plan: RowPlan,
    baselines: &(dyn Baselines + Sync),
    threads: usize,
) -> FoldOutput {
    let results = fold_units_parallel(&FoldCtx::new(model, batch, &plan, baselines), threads);
    finish(model, batch, plan, baselines, results)
}

fn fold_units_parallel<B: Baselines + Sync + ?Sized>(
    ctx: &FoldCtx<'_, B>,
    threads: usize,
) -> Vec<UnitOut> {
    let units = ctx.units();
    let threads = threads.clamp(1, units.len().max(1));
    if threads == 1 {
        ctx.fresh().fold_units(&units)
    } else {
        // Threads take small runs of units from a shared counter rather than fixed halves, so
        // a thread whose core is busy with something else (the previous batch's write, the
        // gRPC decode of the next) simply takes fewer. The calling thread is one of them.
        // Runs of up to 8 units, fewer when there are few: a model of a dozen features would
        // otherwise leave one thread with two thirds of the work.
        let run = (units.len() / (threads * 4)).clamp(1, 8);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let mut local = ctx.fresh();
            let mut done: Vec<(usize, UnitOut)> = Vec::new();
            loop {
                let start = next.fetch_add(run, std::sync::atomic::Ordering::Relaxed);
                if start >= units.len() {
                    break done;
                }
                let end = (start + run).min(units.len());
                for (i, u) in units[start..end].iter().enumerate() {
                    done.push((start + i, local.fold_unit(*u)));
                }
            }
        };
        let mut all: Vec<(usize, UnitOut)> = on_threads(threads, work);
        // Back in unit order, so the output does not depend on who folded what.
        all.sort_unstable_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, u)| u).collect()
    }
}

/// Runs `work` on `threads` threads at once (scoped, the calling thread one of them) and puts
/// their outputs together, in no particular order. A panic in a worker is a bug: it is raised
/// again on the calling thread.
pub(crate) fn on_threads<T: Send>(threads: usize, work: impl Fn() -> Vec<T> + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads.max(1)).map(|_| s.spawn(&work)).collect();
        let mut all = work();
        for h in handles {
            match h.join() {
                Ok(part) => all.extend(part),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        all
    })
}

/// The row pass of [`fold_batch`]: rejects bad rows, drops skipped and sampled-out ones,
/// admits segment values into `segments` and assigns every accepted row its groups.
pub fn plan_batch(
    model: &ModelDef,
    resolution: Resolution,
    batch: &InferenceBatch,
    segments: &mut SegmentRegistry,
    bounds: TimeBounds,
    skip: &dyn Fn(usize, &InferenceRow) -> bool,
) -> RowPlan {
    let mut plan = RowPlan {
        stride: 1 + batch.segment_keys.len(),
        ..Default::default()
    };
    let kinds: Vec<FeatureKind> = batch
        .feature_names
        .iter()
        .filter_map(|f| model.features.get(f).copied())
        .collect();
    // Batch-level schema problems are checked by the caller (validate_batch); be defensive here.
    if kinds.len() != batch.feature_names.len() || batch.columns.len() != kinds.len() {
        return plan;
    }
    // Columns whose every value passes the row check by construction are not looked at per
    // row (a numeric column of numbers; a categorical dictionary of short enough values).
    let trusted: Vec<bool> = kinds
        .iter()
        .zip(&batch.columns)
        .map(|(k, c)| column_trusted(*k, c))
        .collect();
    let out = &mut plan.out;
    // Groups by (version, window, segment), the segment as an index into `segs_seen` (0 is
    // `all`): integer keys, so a row's groups are found without hashing or cloning strings.
    let mut groups: FastMap<(usize, i64, usize), u32> = FastMap::default();
    let mut segs_seen: Vec<Segment> = vec![Segment::All];
    let mut seg_ids: FastMap<Segment, usize> = FastMap::default();
    seg_ids.insert(Segment::All, 0);
    // Per segment key: each raw value met in this batch, to its index in `segs_seen` after
    // admission (admission is asked once per distinct value and batch, in first-seen order,
    // which admits exactly what asking for every row would).
    let mut seg_index: Vec<FastMap<&str, usize>> =
        vec![FastMap::default(); batch.segment_keys.len()];
    // Index into `tops` of each `all` group, by group id.
    let mut top_of: FastMap<usize, usize> = FastMap::default();
    // The pending records' segment lists, one per combination of segments met (by the
    // indices into `segs_seen`, `usize::MAX` for a key without a value).
    let mut combos: FastMap<Box<[usize]>, Arc<[Segment]>> = FastMap::default();
    let mut combo: Vec<usize> = Vec::with_capacity(batch.segment_keys.len());
    for (i, row) in batch.rows.iter().enumerate() {
        if skip(i, row) {
            continue;
        }
        // `versions` holds the versions of accepted rows, already found valid.
        let known_version = plan.versions.iter().position(|v| *v == row.version);
        let checks = RowChecks {
            kinds: &kinds,
            trusted: &trusted,
            version_valid: known_version.is_some(),
        };
        if let Err(reason) = check_row(model, batch, i, bounds, &checks) {
            out.rejected.push(Rejection {
                row: i,
                request_id: row.request_id.clone(),
                reason,
            });
            continue;
        }
        if !sampled_in(&row.request_id, model.sampling) {
            out.sampled_out += 1;
            continue;
        }
        let v = match known_version {
            Some(v) => v,
            None => {
                plan.versions.push(row.version.clone());
                plan.versions.len() - 1
            }
        };
        let window = resolution.window_start(row.ts).millis();
        combo.clear();
        let p = plan.rows.len() as u32;
        let base = plan.row_groups.len();
        plan.row_groups.resize(base + plan.stride, NO_GROUP);
        for (j, (k, val)) in batch.segment_keys.iter().zip(&row.segments).enumerate() {
            if let Some(val) = val {
                let s = *seg_index[j].entry(val.as_str()).or_insert_with(|| {
                    let seg = Segment::Value {
                        key: k.clone(),
                        value: segments.admit(k, val),
                    };
                    // Raw values past the cap all become `__other__`: one segment.
                    *seg_ids.entry(seg).or_insert_with_key(|seg| {
                        segs_seen.push(seg.clone());
                        segs_seen.len() - 1
                    })
                });
                plan.row_groups[base + 1 + j] =
                    group_id(&mut groups, &mut plan.groups, v, window, s, &segs_seen);
                combo.push(s);
            } else {
                combo.push(usize::MAX);
            }
        }
        let all = group_id(&mut groups, &mut plan.groups, v, window, 0, &segs_seen);
        plan.row_groups[base] = all;
        let next = plan.tops.len();
        let t = *top_of.entry(all as usize).or_insert(next);
        if t == next {
            plan.tops.push(Vec::new());
        }
        plan.tops[t].push(p);
        if matches!(
            model.task,
            Task::Binary | Task::Multiclass | Task::Regression | Task::Ranking
        ) {
            let segments = match combos.get(combo.as_slice()) {
                Some(segs) => Arc::clone(segs),
                None => {
                    let segs: Arc<[Segment]> = std::iter::once(Segment::All)
                        .chain(
                            combo
                                .iter()
                                .filter(|s| **s != usize::MAX)
                                .map(|s| segs_seen[*s].clone()),
                        )
                        .collect();
                    combos.insert(combo.clone().into_boxed_slice(), Arc::clone(&segs));
                    segs
                }
            };
            plan.pending_segments.push(segments);
        }
        plan.rows.push(i);
        out.accepted += 1;
    }
    plan
}

/// The id of group (version `v`, `window`, segment `segs[seg]`), added to `list` when new.
fn group_id(
    ids: &mut FastMap<(usize, i64, usize), u32>,
    list: &mut Vec<GroupKey>,
    v: usize,
    window: i64,
    seg: usize,
    segs: &[Segment],
) -> u32 {
    *ids.entry((v, window, seg)).or_insert_with(|| {
        list.push((v, window, segs[seg].clone()));
        // Group ids are below the row count times (1 + segment keys), far below u32::MAX.
        u32::try_from(list.len() - 1).unwrap_or(NO_GROUP - 1)
    })
}

/// One independent piece of a fold: a feature column, `$score`, `$latency`, `$cost` or one
/// feature's attributions.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Feature(usize),
    Score,
    Latency,
    Cost,
    Attribution(usize),
}

/// What folding one [`Unit`] produced: one state per group that saw the unit (by group id).
struct UnitOut {
    unit: Unit,
    states: Vec<(u32, SeriesState)>,
    invalid_values: u64,
}

/// The output of a numeric feature's column fold ([`fold_numeric`]).
fn numeric_unit(unit: Unit, (states, invalid_values): (Vec<(u32, NumericState)>, u64)) -> UnitOut {
    UnitOut {
        unit,
        states: states
            .into_iter()
            .map(|(g, s)| (g, SeriesState::Numeric(s)))
            .collect(),
        invalid_values,
    }
}

/// A numeric value as the column fold sees it.
#[derive(Clone, Copy)]
enum Num {
    /// A number (finite or not: non-finite ones are counted as invalid).
    Value(f64),
    /// Missing: counted.
    Missing,
    /// Absent and not counted (a row without a latency).
    Skip,
}

/// Reusable buffers of one fold thread.
#[derive(Default)]
struct Scratch {
    /// One `all` group's finite values as `bulk_order_key << 32 | index into values`.
    order: Vec<u64>,
    /// Scratch for sorting `order`.
    order_tmp: Vec<u64>,
    /// The same values, by index.
    values: Vec<f64>,
    /// Per group: its row positions' finite values, in key order.
    bufs: Vec<Vec<f64>>,
    /// Per `values` index: the position (into the plan's rows) it came from.
    positions: Vec<u32>,
    missing: Vec<u64>,
    invalid: Vec<u64>,
    touched: Vec<bool>,
}

/// Everything the column folds share, read-only, plus one thread's scratch.
struct FoldCtx<'a, B: Baselines + ?Sized> {
    model: &'a ModelDef,
    batch: &'a InferenceBatch,
    plan: &'a RowPlan,
    baselines: &'a B,
    kinds: Vec<FeatureKind>,
    scratch: Scratch,
}

impl<'a, B: Baselines + ?Sized> FoldCtx<'a, B> {
    fn new(
        model: &'a ModelDef,
        batch: &'a InferenceBatch,
        plan: &'a RowPlan,
        baselines: &'a B,
    ) -> Self {
        let kinds = batch
            .feature_names
            .iter()
            .filter_map(|f| model.features.get(f).copied())
            .collect();
        FoldCtx {
            model,
            batch,
            plan,
            baselines,
            kinds,
            scratch: Scratch::default(),
        }
    }

    /// The same context with its own scratch, for another thread.
    fn fresh(&self) -> Self {
        FoldCtx {
            model: self.model,
            batch: self.batch,
            plan: self.plan,
            baselines: self.baselines,
            kinds: self.kinds.clone(),
            scratch: Scratch::default(),
        }
    }

    /// Every unit of the batch, in output order (none when no row was accepted).
    fn units(&self) -> Vec<Unit> {
        if self.plan.rows.is_empty() || self.kinds.len() != self.batch.columns.len() {
            return Vec::new();
        }
        let mut u: Vec<Unit> = (0..self.kinds.len()).map(Unit::Feature).collect();
        u.push(Unit::Score);
        // A row without a latency or a cost is not counted in those series at all, so a
        // batch where no row has one skips the pass (files and services often carry neither).
        if self.batch.rows.iter().any(|r| r.latency_ms.is_some()) {
            u.push(Unit::Latency);
        }
        if self.batch.rows.iter().any(|r| r.cost.is_some()) {
            u.push(Unit::Cost);
        }
        u.extend((0..self.batch.attributions.len()).map(Unit::Attribution));
        u
    }

    fn fold_units(&mut self, units: &[Unit]) -> Vec<UnitOut> {
        units.iter().map(|u| self.fold_unit(*u)).collect()
    }

    fn edges(&self, feature: &FeatureRef) -> Vec<Option<&'a BinEdges>> {
        let baselines: &'a B = self.baselines;
        let plan: &'a RowPlan = self.plan;
        plan.groups
            .iter()
            .map(|(v, _, s)| baselines.edges(&plan.versions[*v], feature, s))
            .collect()
    }

    fn fold_unit(&mut self, unit: Unit) -> UnitOut {
        let batch = self.batch;
        let plan = self.plan;
        match unit {
            Unit::Feature(c) => {
                let fref = FeatureRef::Named(batch.feature_names[c].clone());
                match (self.kinds[c], &batch.columns[c]) {
                    (FeatureKind::Numeric, Column::Numbers(col)) => {
                        let edges = self.edges(&fref);
                        numeric_unit(
                            unit,
                            fold_numeric(plan, &edges, &mut self.scratch, |i| match col[i] {
                                Some(x) => Num::Value(x),
                                None => Num::Missing,
                            }),
                        )
                    }
                    (FeatureKind::Numeric, Column::Dense { values, missing }) => {
                        let edges = self.edges(&fref);
                        numeric_unit(
                            unit,
                            fold_numeric(plan, &edges, &mut self.scratch, |i| {
                                if missing.get(i).copied().unwrap_or(false) {
                                    Num::Missing
                                } else {
                                    Num::Value(values[i])
                                }
                            }),
                        )
                    }
                    (FeatureKind::Numeric, col) => {
                        let edges = self.edges(&fref);
                        numeric_unit(
                            unit,
                            fold_numeric(plan, &edges, &mut self.scratch, |i| match col.get(i) {
                                FieldRef::Number(x) => Num::Value(x),
                                // Other types were rejected by check_row.
                                _ => Num::Missing,
                            }),
                        )
                    }
                    (FeatureKind::Categorical, col) => UnitOut {
                        unit,
                        states: self.fold_categorical(c, col),
                        invalid_values: 0,
                    },
                }
            }
            Unit::Score => {
                let edges = self.edges(&FeatureRef::Score);
                let (states, invalid_values) = fold_numeric(plan, &edges, &mut self.scratch, |i| {
                    let row = &batch.rows[i];
                    match row.score.or(row.prediction) {
                        Some(x) => Num::Value(x),
                        None => Num::Missing,
                    }
                });
                UnitOut {
                    unit,
                    states: states
                        .into_iter()
                        .map(|(g, distribution)| {
                            (
                                g,
                                SeriesState::Score(ScoreState {
                                    // Every row of the group counts once: value, missing or invalid.
                                    predictions: distribution.count_total(),
                                    distribution,
                                    ..Default::default()
                                }),
                            )
                        })
                        .collect(),
                    invalid_values,
                }
            }
            Unit::Latency => {
                let edges = self.edges(&FeatureRef::Latency);
                let folded = fold_numeric(plan, &edges, &mut self.scratch, |i| {
                    match batch.rows[i].latency_ms {
                        Some(x) => Num::Value(x),
                        None => Num::Skip,
                    }
                });
                numeric_unit(unit, folded)
            }
            Unit::Cost => {
                let edges = self.edges(&FeatureRef::Cost);
                let folded = fold_numeric(plan, &edges, &mut self.scratch, |i| {
                    match batch.rows[i].cost {
                        Some(x) => Num::Value(x),
                        None => Num::Skip,
                    }
                });
                numeric_unit(unit, folded)
            }
            Unit::Attribution(a) => {
                let (name, col) = &batch.attributions[a];
                let edges = self.edges(&FeatureRef::Attribution(name.clone()));
                // Rows without an attribution are not counted: importance is the mean over
                // the explained rows. check_row refused non-finite ones.
                let folded = fold_numeric(plan, &edges, &mut self.scratch, |i| match col.get(i) {
                    FieldRef::Number(x) => Num::Value(x.abs()),
                    _ => Num::Skip,
                });
                numeric_unit(unit, folded)
            }
        }
    }

    /// Counts first, states after: a categorical state is a count per distinct value, so each
    /// row costs one lookup of its value (interned to a code for the batch) and one count per
    /// group of (group, code); the states, and the reference's "unseen" answer, are then
    /// touched once per distinct (group, value), in first-seen order.
    fn fold_categorical(&self, c: usize, col: &Column) -> Vec<(u32, SeriesState)> {
        let plan = self.plan;
        let name = &self.batch.feature_names[c];
        let mut codes: FastMap<&str, u32> = FastMap::default();
        let mut values: Vec<&str> = Vec::new();
        // (group << 32 | code) to its index in `counts`, which keeps first-seen order.
        let mut slot: FastMap<u64, usize> = FastMap::default();
        let mut counts: Vec<(u32, u32, u64)> = Vec::new();
        let mut missing = vec![0u64; plan.groups.len()];
        let mut touched = vec![false; plan.groups.len()];
        // A dictionary-encoded column comes with its codes.
        let coded = match col {
            Column::Coded(c) => {
                values = c.dictionary.iter().map(String::as_str).collect();
                Some(c)
            }
            _ => None,
        };
        for (p, i) in plan.rows.iter().enumerate() {
            let code = match coded {
                Some(c) => c.code(*i),
                None => match col.get(*i) {
                    FieldRef::Category(s) => Some(*codes.entry(s).or_insert_with(|| {
                        values.push(s);
                        // Distinct values are at most the row count, far below u32::MAX.
                        u32::try_from(values.len() - 1).unwrap_or(u32::MAX)
                    })),
                    _ => None,
                },
            };
            for &g in plan.row_groups[p * plan.stride..][..plan.stride].iter() {
                if g == NO_GROUP {
                    continue;
                }
                touched[g as usize] = true;
                match code {
                    Some(code) => {
                        let k = u64::from(g) << 32 | u64::from(code);
                        let at = *slot.entry(k).or_insert_with(|| {
                            counts.push((g, code, 0));
                            counts.len() - 1
                        });
                        counts[at].2 += 1;
                    }
                    None => missing[g as usize] += 1,
                }
            }
        }
        // Each group's reference series, looked up once for the batch.
        let known: Vec<Known<'_>> = plan
            .groups
            .iter()
            .map(|(v, _, seg)| {
                self.baselines
                    .known_categories(&plan.versions[*v], name, seg)
            })
            .collect();
        // A state for every group a row reached, missing values counted.
        let mut states: Vec<Option<CategoricalState>> = touched
            .iter()
            .zip(&missing)
            .map(|(t, m)| {
                t.then(|| {
                    let mut st = CategoricalState::default();
                    st.observe_missing_many(*m);
                    st
                })
            })
            .collect();
        for (g, code, n) in counts {
            let s = values[code as usize];
            let unseen = match known[g as usize] {
                Known::NoReference | Known::Everything => false,
                Known::Exactly(m) => !m.contains_key(s),
                Known::Ask => {
                    let (v, _, seg) = &plan.groups[g as usize];
                    self.baselines
                        .knows_category(&plan.versions[*v], name, seg, s)
                        == Some(false)
                }
            };
            if let Some(st) = states[g as usize].as_mut() {
                st.observe_many(s, n, if unseen { n } else { 0 });
            }
        }
        states
            .into_iter()
            .enumerate()
            .filter_map(|(g, s)| Some((g as u32, SeriesState::Categorical(s?))))
            .collect()
    }
}

/// Folds one numeric unit into a state per group, in bulk: per `all` group, its finite
/// values are sorted once by [`bulk_order_key`] (packed with an index into one `u64`, which
/// sorts faster than doubles) and handed out in that order to every group of their row, so
/// each group's values arrive in order and become a state through
/// [`NumericState::from_sorted`]. Returns the states by group id, and the number of rows whose
/// value was not finite.
fn fold_numeric(
    plan: &RowPlan,
    edges: &[Option<&BinEdges>],
    sc: &mut Scratch,
    get: impl Fn(usize) -> Num,
) -> (Vec<(u32, NumericState)>, u64) {
    let n_groups = plan.groups.len();
    sc.bufs.resize_with(n_groups.max(sc.bufs.len()), Vec::new);
    sc.missing.clear();
    sc.missing.resize(n_groups, 0);
    sc.invalid.clear();
    sc.invalid.resize(n_groups, 0);
    sc.touched.clear();
    sc.touched.resize(n_groups, false);
    let stride = plan.stride;
    let mut invalid_rows = 0u64;
    for top in &plan.tops {
        sc.order.clear();
        sc.values.clear();
        sc.positions.clear();
        for &p in top {
            let groups = &plan.row_groups[p as usize * stride..][..stride];
            match get(plan.rows[p as usize]) {
                Num::Value(x) if x.is_finite() => {
                    let at = sc.values.len() as u64;
                    sc.order.push(u64::from(bulk_order_key(x)) << 32 | at);
                    sc.values.push(x);
                    sc.positions.push(p);
                }
                Num::Value(_) => {
                    invalid_rows += 1;
                    for &g in groups.iter().filter(|g| **g != NO_GROUP) {
                        sc.invalid[g as usize] += 1;
                        sc.touched[g as usize] = true;
                    }
                }
                Num::Missing => {
                    for &g in groups.iter().filter(|g| **g != NO_GROUP) {
                        sc.missing[g as usize] += 1;
                        sc.touched[g as usize] = true;
                    }
                }
                Num::Skip => {}
            }
        }
        sort_order_keys(&mut sc.order, &mut sc.order_tmp);
        for &o in &sc.order {
            // The low half is an index below the batch's row count.
            let at = (o & u64::from(u32::MAX)) as usize;
            let x = sc.values[at];
            let p = sc.positions[at] as usize;
            for &g in &plan.row_groups[p * stride..][..stride] {
                if g != NO_GROUP {
                    sc.bufs[g as usize].push(x);
                }
            }
        }
    }
    let mut states = Vec::with_capacity(n_groups);
    for (g, buf) in sc.bufs.iter_mut().take(n_groups).enumerate() {
        if sc.touched[g] || !buf.is_empty() {
            states.push((
                g as u32,
                NumericState::from_sorted(buf, sc.missing[g], sc.invalid[g], edges[g]),
            ));
        }
        buf.clear();
    }
    (states, invalid_rows)
}

/// Puts the unit results together in output order (feature columns, `$score`, `$latency`,
/// `$cost`, attributions), folds `$items` row by row, and adds the row pass' own results.
fn finish<B: Baselines + ?Sized>(
    model: &ModelDef,
    batch: &InferenceBatch,
    plan: RowPlan,
    baselines: &B,
    results: Vec<UnitOut>,
) -> FoldOutput {
    let RowPlan {
        versions,
        groups,
        rows,
        row_groups,
        stride,
        pending_segments,
        no_pending,
        out: mut fold,
        ..
    } = plan;
    if !no_pending {
        // One per accepted row, in row order; the window is the row's `all` group's.
        fold.pending = rows
            .iter()
            .zip(&pending_segments)
            .enumerate()
            .map(|(p, (i, segments))| {
                let row = &batch.rows[*i];
                let (_, window, _) = &groups[row_groups[p * stride] as usize];
                (
                    row.request_id.clone(),
                    PendingPrediction {
                        version: row.version.clone(),
                        window: Timestamp(*window),
                        segments: Arc::clone(segments),
                        score: row.score.or(row.prediction),
                        items: row.items.iter().map(|it| it.id.clone()).collect(),
                    },
                )
            })
            .collect();
    }
    let key = |g: u32, feature: FeatureRef| -> (SeriesKey, Timestamp) {
        let (v, w, s) = &groups[g as usize];
        (
            SeriesKey {
                model: model.id.clone(),
                version: versions[*v].clone(),
                feature,
                segment: s.clone(),
            },
            Timestamp(*w),
        )
    };
    let n: usize = results.iter().map(|r| r.states.len()).sum();
    fold.deltas.reserve(n);
    for r in results {
        fold.invalid_values += r.invalid_values;
        let feature = match r.unit {
            Unit::Feature(c) => FeatureRef::Named(batch.feature_names[c].clone()),
            Unit::Score => FeatureRef::Score,
            Unit::Latency => FeatureRef::Latency,
            Unit::Cost => FeatureRef::Cost,
            Unit::Attribution(a) => FeatureRef::Attribution(batch.attributions[a].0.clone()),
        };
        for (g, s) in r.states {
            let (k, w) = key(g, feature.clone());
            fold.deltas.push((k, w, s));
        }
    }
    // $items: the ids served in the top K of ranking predictions.
    if model.task == Task::Ranking {
        let mut items: Vec<Option<CategoricalState>> = vec![None; groups.len()];
        for (p, i) in rows.iter().enumerate() {
            let served = &batch.rows[*i].items;
            if served.is_empty() {
                continue;
            }
            for &g in row_groups[p * stride..][..stride].iter() {
                if g == NO_GROUP {
                    continue;
                }
                let (v, _, seg) = &groups[g as usize];
                let st = items[g as usize].get_or_insert_with(CategoricalState::default);
                for item in served.iter().take(TOP_K_ITEMS) {
                    let unseen = baselines.knows_item(&versions[*v], seg, &item.id) == Some(false);
                    st.observe(&item.id, unseen);
                }
            }
        }
        for (g, st) in items.into_iter().enumerate() {
            if let Some(st) = st {
                let (k, w) = key(g as u32, FeatureRef::Items);
                fold.deltas.push((k, w, SeriesState::Categorical(st)));
            }
        }
    }
    fold
}

/// Batch-level validation: names known to the model, no duplicates, positional lengths.
pub fn validate_batch(model: &ModelDef, batch: &InferenceBatch) -> Result<(), String> {
    if batch.model_id != model.id {
        return Err(format!(
            "batch is for model {:?}, not {:?}",
            batch.model_id, model.id
        ));
    }
    let mut seen = BTreeSet::new();
    for f in &batch.feature_names {
        if !model.features.contains_key(f) {
            return Err(format!(
                "unknown feature {:?} for model {:?}",
                clip(f),
                model.id
            ));
        }
        if !seen.insert(f) {
            return Err(format!("feature {:?} named twice", clip(f)));
        }
    }
    if batch.columns.len() != batch.feature_names.len() {
        return Err(format!(
            "{} columns for {} feature names",
            batch.columns.len(),
            batch.feature_names.len()
        ));
    }
    for (name, col) in batch.feature_names.iter().zip(&batch.columns) {
        if col.len() != batch.rows.len() {
            return Err(format!(
                "column {name:?} has {} values for {} rows",
                col.len(),
                batch.rows.len()
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (name, col) in &batch.attributions {
        if !model.features.contains_key(name) {
            return Err(format!(
                "attributions for unknown feature {:?} of model {:?}",
                clip(name),
                model.id
            ));
        }
        if !seen.insert(name) {
            return Err(format!(
                "attributions of feature {:?} named twice",
                clip(name)
            ));
        }
        if col.len() != batch.rows.len() {
            return Err(format!(
                "attributions of {name:?} have {} values for {} rows",
                col.len(),
                batch.rows.len()
            ));
        }
    }
    for k in &batch.segment_keys {
        if !model.segments.contains(k) {
            return Err(format!(
                "unknown segment key {:?} for model {:?}",
                clip(k),
                model.id
            ));
        }
    }
    Ok(())
}

/// Row `i`'s cost and attributions: each attribution a finite number (or missing), the cost
/// a finite number ≥ 0. Shared by the fold and the reference builder.
pub(crate) fn check_cost_and_attributions(batch: &InferenceBatch, i: usize) -> Result<(), String> {
    for (name, col) in &batch.attributions {
        match col.get(i) {
            FieldRef::Missing => {}
            FieldRef::Number(x) if x.is_finite() => {}
            FieldRef::Number(x) => {
                return Err(format!(
                    "attribution of feature {}: {x} is not a finite number",
                    clip(name)
                ));
            }
            FieldRef::Category(_) => {
                return Err(format!(
                    "attribution of feature {}: expected a number",
                    clip(name)
                ));
            }
        }
    }
    if let Some(c) = batch.rows[i].cost
        && !(c.is_finite() && c >= 0.0)
    {
        return Err(format!("cost {c} is not a finite number >= 0"));
    }
    Ok(())
}

/// Whether every value of a feature column passes [`check_row`]'s type check by construction,
/// so the row pass need not look at it: numbers in a numeric column, or a categorical column
/// whose dictionary has no value longer than a category may be.
fn column_trusted(kind: FeatureKind, col: &Column) -> bool {
    match (kind, col) {
        (FeatureKind::Numeric, Column::Numbers(_) | Column::Dense { .. }) => true,
        (FeatureKind::Categorical, Column::Coded(c)) => c
            .dictionary
            .iter()
            .all(|d| d.len() <= crate::model::MAX_CATEGORY_LEN),
        _ => false,
    }
}

/// What [`check_row`] knows about a batch before looking at a row.
struct RowChecks<'a> {
    /// The model's kind of each feature column.
    kinds: &'a [FeatureKind],
    /// Per column: its values need no check ([`column_trusted`]).
    trusted: &'a [bool],
    /// The row's version is one already found valid in this batch.
    version_valid: bool,
}

fn check_row(
    model: &ModelDef,
    batch: &InferenceBatch,
    i: usize,
    bounds: TimeBounds,
    checks: &RowChecks<'_>,
) -> Result<(), String> {
    let row = &batch.rows[i];
    if row.request_id.is_empty() {
        return Err("empty request_id".into());
    }
    if row.request_id.len() > 512 {
        return Err("request_id longer than 512 bytes".into());
    }
    if !checks.version_valid {
        crate::model::validate_name("model_version", &row.version).map_err(|e| e.to_string())?;
    }
    if row.ts < bounds.oldest {
        return Err(format!(
            "timestamp {} is older than the retention window",
            row.ts.to_rfc3339()
        ));
    }
    if row.ts > bounds.newest {
        return Err(format!(
            "timestamp {} is too far in the future",
            row.ts.to_rfc3339()
        ));
    }
    if row.segments.len() != batch.segment_keys.len() {
        return Err(format!(
            "{} segment values for {} segment keys",
            row.segments.len(),
            batch.segment_keys.len()
        ));
    }
    for (k, v) in batch.segment_keys.iter().zip(&row.segments) {
        if let Some(v) = v
            && (v.is_empty() || v.len() > crate::model::MAX_NAME_LEN)
        {
            {
                return Err(format!(
                    "segment {k}: value must be 1..={} bytes",
                    crate::model::MAX_NAME_LEN
                ));
            }
        }
    }
    for (((name, kind), col), _) in batch
        .feature_names
        .iter()
        .zip(checks.kinds)
        .zip(&batch.columns)
        .zip(checks.trusted)
        .filter(|(_, trusted)| !**trusted)
    {
        match (kind, col.get(i)) {
            (FeatureKind::Categorical, FieldRef::Category(c))
                if c.len() > crate::model::MAX_CATEGORY_LEN =>
            {
                return Err(format!(
                    "feature {}: category value of {} bytes is longer than {}",
                    clip(name),
                    c.len(),
                    crate::model::MAX_CATEGORY_LEN
                ));
            }
            (_, FieldRef::Missing)
            | (FeatureKind::Numeric, FieldRef::Number(_))
            | (FeatureKind::Categorical, FieldRef::Category(_)) => {}
            (FeatureKind::Numeric, _) => {
                return Err(format!("feature {}: expected a number", clip(name)));
            }
            (FeatureKind::Categorical, FieldRef::Number(_)) => {
                return Err(format!(
                    "feature {}: expected a string or boolean (categorical)",
                    clip(name)
                ));
            }
        }
    }
    check_cost_and_attributions(batch, i)?;
    match model.task {
        Task::Binary => {
            if let Some(s) = row.score
                && s.is_finite()
                && !(0.0..=1.0).contains(&s)
            {
                {
                    return Err(format!("score {s} is not a probability in [0, 1]"));
                }
            }
        }
        Task::Ranking => {
            if row.items.len() > 1000 {
                return Err("more than 1000 ranked items".into());
            }
        }
        Task::Multiclass | Task::Regression => {}
    }
    Ok(())
}

/// One arrived label or outcome.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelRow {
    /// Request id of the prediction it labels.
    pub request_id: String,
    /// Arrival time.
    pub ts: Timestamp,
    /// The label (binary 0/1, class, or regression target).
    pub label: Option<f64>,
    /// Ranking outcome: clicks.
    pub click: Option<f64>,
    /// Ranking outcome: purchases.
    pub purchase: Option<f64>,
    /// Ranking outcome: revenue.
    pub revenue: Option<f64>,
    /// Ranking outcome: per-item relevance.
    pub relevance: Vec<(String, f64)>,
}

/// The performance delta of one joined (prediction, label) pair.
pub fn join_delta(
    task: Task,
    p: &PendingPrediction,
    label: &LabelRow,
) -> Result<PerformanceState, String> {
    let mut perf = PerformanceState::default();
    match task {
        Task::Binary => {
            let y = label.label.ok_or("binary label missing")?;
            if y != 0.0 && y != 1.0 {
                return Err(format!("binary label must be 0 or 1, got {y}"));
            }
            let s = p.score.ok_or("prediction has no score")?;
            perf.observe_binary(s, y == 1.0)
                .map_err(|e| e.to_string())?;
        }
        Task::Regression | Task::Multiclass => {
            let y = label.label.ok_or("label missing")?;
            let s = p.score.ok_or("prediction has no value")?;
            perf.observe_regression(s, y).map_err(|e| e.to_string())?;
        }
        Task::Ranking => {
            let rel: HashMap<&str, f64> = label
                .relevance
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect();
            let served: Vec<f64> = p
                .items
                .iter()
                .map(|id| rel.get(id.as_str()).copied().unwrap_or(0.0))
                .collect();
            let judged: Vec<f64> = label.relevance.iter().map(|(_, v)| *v).collect();
            let ndcg = crate::stats::performance::ndcg_all(&served, &judged);
            perf.observe_ranking(
                &ndcg,
                label.click.unwrap_or(0.0),
                label.purchase.unwrap_or(0.0),
                label.revenue.unwrap_or(0.0),
            );
        }
    }
    Ok(perf)
}
