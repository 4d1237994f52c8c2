//! Folding inference rows into per-(series, window) sketch deltas (SPEC §1's "engine folds rows
//! into sketch deltas"), and the pure half of the label join.
//!
//! A batch names its features and segment keys once; rows carry values positionally. Each
//! accepted row updates the overall segment `all` and one segment per segment key (values past a
//! key's cardinality cap fold into `__other__`). Rows are placed by event time only, so a replay
//! rebuilds identical windows (SPEC §10.3). Folding is column-major: rows are first mapped to
//! their (version, window, segment) groups, then each feature column is folded into one state
//! per group, so the hot loop touches one state vector at a time.
//!
//! Besides the input features, every accepted row updates `$score` (and `$latency` when it
//! carries one); rows of ranking models with a non-empty served list also update `$items`, one
//! categorical value per item id among the first [`TOP_K_ITEMS`] served.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{FeatureKind, ModelDef, Task};
use crate::series::{FeatureRef, OTHER_SEGMENT_VALUE, Segment, SeriesKey, TOP_K_ITEMS};
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
}

/// One feature's values for every row of a batch (columnar layout: names once per batch).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers, `None` for missing: the fast path for numeric features.
    Numbers(Vec<Option<f64>>),
    /// Values of any type, for row-oriented sources (JSONL, CSV); checked against the schema.
    Values(Vec<FieldValue>),
}

impl Column {
    /// Number of rows in the column.
    pub fn len(&self) -> usize {
        match self {
            Column::Numbers(v) => v.len(),
            Column::Values(v) => v.len(),
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
            Column::Values(v) => match v.get(row) {
                Some(FieldValue::Number(x)) => FieldRef::Number(*x),
                Some(FieldValue::Category(c)) => FieldRef::Category(c),
                Some(FieldValue::Bool(true)) => FieldRef::Category("true"),
                Some(FieldValue::Bool(false)) => FieldRef::Category("false"),
                Some(FieldValue::Missing) | None => FieldRef::Missing,
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
    /// Segments it counted in (always including `all`).
    pub segments: Vec<Segment>,
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

/// Folds a batch. `skip(row)` returns true for rows to drop silently (duplicates).
pub fn fold_batch(
    model: &ModelDef,
    resolution: Resolution,
    batch: &InferenceBatch,
    baselines: &dyn Baselines,
    segments: &mut SegmentRegistry,
    bounds: TimeBounds,
    skip: &dyn Fn(usize, &InferenceRow) -> bool,
) -> FoldOutput {
    let mut out = FoldOutput::default();
    let kinds: Vec<FeatureKind> = batch
        .feature_names
        .iter()
        .filter_map(|f| model.features.get(f).copied())
        .collect();
    // Batch-level schema problems are checked by the caller (validate_batch); be defensive here.
    if kinds.len() != batch.feature_names.len() {
        return out;
    }
    let mut versions: Vec<String> = Vec::new();
    let mut groups: HashMap<GroupKey, usize> = HashMap::new();
    let mut group_list: Vec<GroupKey> = Vec::new();
    // For each accepted row: its row index and the groups it updates.
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, row) in batch.rows.iter().enumerate() {
        if skip(i, row) {
            continue;
        }
        if let Err(reason) = check_row(model, batch, i, bounds, &kinds) {
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
        let v = match versions.iter().position(|v| *v == row.version) {
            Some(v) => v,
            None => {
                versions.push(row.version.clone());
                versions.len() - 1
            }
        };
        let window = resolution.window_start(row.ts).millis();
        let mut segs = Vec::with_capacity(1 + batch.segment_keys.len());
        segs.push(Segment::All);
        for (k, val) in batch.segment_keys.iter().zip(&row.segments) {
            if let Some(val) = val {
                segs.push(Segment::Value {
                    key: k.clone(),
                    value: segments.admit(k, val),
                });
            }
        }
        let mut gs = Vec::with_capacity(segs.len());
        for s in &segs {
            let key = (v, window, s.clone());
            let g = *groups.entry(key.clone()).or_insert_with(|| {
                group_list.push(key);
                group_list.len() - 1
            });
            gs.push(g);
        }
        if matches!(
            model.task,
            Task::Binary | Task::Multiclass | Task::Regression | Task::Ranking
        ) {
            out.pending.push((
                row.request_id.clone(),
                PendingPrediction {
                    version: row.version.clone(),
                    window: Timestamp(window),
                    segments: segs,
                    score: row.score.or(row.prediction),
                    items: row.items.iter().map(|it| it.id.clone()).collect(),
                },
            ));
        }
        rows.push((i, gs));
        out.accepted += 1;
    }
    let key_of = |g: usize, feature: FeatureRef| -> (SeriesKey, Timestamp) {
        let (v, w, s) = &group_list[g];
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
    // Feature columns.
    for (c, name) in batch.feature_names.iter().enumerate() {
        let fref = FeatureRef::Named(name.clone());
        match kinds[c] {
            FeatureKind::Numeric => {
                let edges: Vec<Option<&BinEdges>> = group_list
                    .iter()
                    .map(|(v, _, s)| baselines.edges(&versions[*v], &fref, s))
                    .collect();
                let mut states: Vec<Option<NumericState>> = vec![None; group_list.len()];
                for (i, gs) in &rows {
                    let value = batch.columns[c].get(*i);
                    if matches!(value, FieldRef::Number(x) if !x.is_finite()) {
                        out.invalid_values += 1;
                    }
                    for &g in gs {
                        let st = states[g].get_or_insert_with(|| NumericState::new(edges[g]));
                        match value {
                            FieldRef::Number(x) => st.observe(x, edges[g]),
                            _ => st.observe_missing(),
                        }
                    }
                }
                for (g, st) in states.into_iter().enumerate() {
                    if let Some(st) = st {
                        let (k, w) = key_of(g, fref.clone());
                        out.deltas.push((k, w, SeriesState::Numeric(st)));
                    }
                }
            }
            FeatureKind::Categorical => {
                let mut states: Vec<Option<CategoricalState>> = vec![None; group_list.len()];
                for (i, gs) in &rows {
                    let value = batch.columns[c].get(*i);
                    for &g in gs {
                        let st = states[g].get_or_insert_with(CategoricalState::default);
                        match value {
                            FieldRef::Category(s) => {
                                let (v, _, seg) = &group_list[g];
                                let unseen = baselines.knows_category(&versions[*v], name, seg, s)
                                    == Some(false);
                                st.observe(s, unseen);
                            }
                            _ => st.observe_missing(),
                        }
                    }
                }
                for (g, st) in states.into_iter().enumerate() {
                    if let Some(st) = st {
                        let (k, w) = key_of(g, fref.clone());
                        out.deltas.push((k, w, SeriesState::Categorical(st)));
                    }
                }
            }
        }
    }
    // $score (prediction distribution + prediction count) and $latency.
    let mut scores: Vec<Option<ScoreState>> = vec![None; group_list.len()];
    let mut latency: Vec<Option<NumericState>> = vec![None; group_list.len()];
    let score_edges: Vec<Option<&BinEdges>> = group_list
        .iter()
        .map(|(v, _, s)| baselines.edges(&versions[*v], &FeatureRef::Score, s))
        .collect();
    let lat_edges: Vec<Option<&BinEdges>> = group_list
        .iter()
        .map(|(v, _, s)| baselines.edges(&versions[*v], &FeatureRef::Latency, s))
        .collect();
    for (i, gs) in &rows {
        let row = &batch.rows[*i];
        let s = row.score.or(row.prediction);
        out.invalid_values += u64::from(s.is_some_and(|x| !x.is_finite()));
        out.invalid_values += u64::from(row.latency_ms.is_some_and(|x| !x.is_finite()));
        for &g in gs {
            let st = scores[g].get_or_insert_with(|| ScoreState {
                distribution: NumericState::new(score_edges[g]),
                ..Default::default()
            });
            st.predictions += 1;
            match s {
                Some(x) => st.distribution.observe(x, score_edges[g]),
                None => st.distribution.observe_missing(),
            }
            if let Some(l) = row.latency_ms {
                let lt = latency[g].get_or_insert_with(|| NumericState::new(lat_edges[g]));
                lt.observe(l, lat_edges[g]);
            }
        }
    }
    for (g, st) in scores.into_iter().enumerate() {
        if let Some(st) = st {
            let (k, w) = key_of(g, FeatureRef::Score);
            out.deltas.push((k, w, SeriesState::Score(st)));
        }
    }
    for (g, st) in latency.into_iter().enumerate() {
        if let Some(st) = st {
            let (k, w) = key_of(g, FeatureRef::Latency);
            out.deltas.push((k, w, SeriesState::Numeric(st)));
        }
    }
    // $items: the ids served in the top K of ranking predictions.
    if model.task == Task::Ranking {
        let mut items: Vec<Option<CategoricalState>> = vec![None; group_list.len()];
        for (i, gs) in &rows {
            let served = &batch.rows[*i].items;
            if served.is_empty() {
                continue;
            }
            for &g in gs {
                let (v, _, seg) = &group_list[g];
                let st = items[g].get_or_insert_with(CategoricalState::default);
                for item in served.iter().take(TOP_K_ITEMS) {
                    let unseen = baselines.knows_item(&versions[*v], seg, &item.id) == Some(false);
                    st.observe(&item.id, unseen);
                }
            }
        }
        for (g, st) in items.into_iter().enumerate() {
            if let Some(st) = st {
                let (k, w) = key_of(g, FeatureRef::Items);
                out.deltas.push((k, w, SeriesState::Categorical(st)));
            }
        }
    }
    out
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
            return Err(format!("unknown feature {f:?} for model {:?}", model.id));
        }
        if !seen.insert(f) {
            return Err(format!("feature {f:?} named twice"));
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
    for k in &batch.segment_keys {
        if !model.segments.contains(k) {
            return Err(format!(
                "unknown segment key {k:?} for model {:?}",
                model.id
            ));
        }
    }
    Ok(())
}

fn check_row(
    model: &ModelDef,
    batch: &InferenceBatch,
    i: usize,
    bounds: TimeBounds,
    kinds: &[FeatureKind],
) -> Result<(), String> {
    let row = &batch.rows[i];
    if row.request_id.is_empty() {
        return Err("empty request_id".into());
    }
    if row.request_id.len() > 512 {
        return Err("request_id longer than 512 bytes".into());
    }
    crate::model::validate_name("model_version", &row.version).map_err(|e| e.to_string())?;
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
    for ((name, kind), col) in batch.feature_names.iter().zip(kinds).zip(&batch.columns) {
        match (kind, col.get(i)) {
            (_, FieldRef::Missing)
            | (FeatureKind::Numeric, FieldRef::Number(_))
            | (FeatureKind::Categorical, FieldRef::Category(_)) => {}
            (FeatureKind::Numeric, _) => return Err(format!("feature {name}: expected a number")),
            (FeatureKind::Categorical, FieldRef::Number(_)) => {
                return Err(format!(
                    "feature {name}: expected a string or boolean (categorical)"
                ));
            }
        }
    }
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
