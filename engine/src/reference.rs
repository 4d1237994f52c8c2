//! Reference profiles (docs/DATA_MODEL.md): built once from training/validation rows, stored per model
//! version, never recomputed from raw data.
//!
//! Per series (feature, `$score`, `$latency`, `$label`) and per segment (overall and each
//! segment value, docs/STATISTICS.md §0: a segment's baseline is that segment's own reference rows,
//! including its bin edges): a [`NumericState`] binned on the exact 50-quantile edges (the
//! 10-bin edges are a subset) with the offset sums of each bin (so Wasserstein-1 against the
//! profile has exact per-bin integrals, docs/STATISTICS.md §7; a profile stored before the sums
//! existed has none and gets the previous estimator until its reference is loaded again), exact
//! type-7 quantiles p1…p99, and for categoricals the category counts. Ranking models also get
//! `$items`: the counts of the item ids the reference rows served
//! in their top [`TOP_K_ITEMS`] slots. Labelled reference rows also give reference performance.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec::{Reader, Writer, open, seal};
use crate::error::{Error, Result};
use crate::ingest::{Baselines, FieldRef, InferenceBatch, Known, Rejection, SegmentRegistry};
use crate::model::{FeatureKind, ModelDef, Task};
use crate::series::{FeatureRef, Segment, TOP_K_ITEMS};
use crate::sketch::performance::PerformanceState;
use crate::sketch::{BinEdges, CategoricalState, NumericState, SeriesState};
use crate::stats::estimate::Calibration;
use crate::stats::quantile::{ReferenceEdges, sorted_finite, type7_quantile_sorted};
use crate::time::Timestamp;

/// The quantile levels stored exactly in every numeric profile.
pub const PROFILE_QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/// Most numeric reference values one upload may hold in memory while edges are computed.
pub const MAX_REFERENCE_VALUES: usize = 100_000_000;

/// A numeric series' reference.
#[derive(Debug, Clone)]
pub struct NumericProfile {
    /// Counts, moments, KLL and counts over the 50-bin edges.
    pub state: NumericState,
    /// The exact quantile bin edges (10 and 50 bins); `None` when no finite value was seen.
    pub edges: Option<ReferenceEdges>,
    /// Exact type-7 quantiles at [`PROFILE_QUANTILES`] (NaN when empty).
    pub quantiles: [f64; 7],
}

/// One series' reference.
#[derive(Debug, Clone)]
pub enum SeriesProfile {
    /// Numeric feature, `$score`, `$latency`, numeric `$label`.
    Numeric(NumericProfile),
    /// Categorical feature, or `$items` (served item ids of ranking models).
    Categorical(CategoricalState),
}

impl SeriesProfile {
    /// The profile's state in the same shape as a window's, for two-sample statistics.
    pub fn numeric(&self) -> Option<&NumericProfile> {
        match self {
            SeriesProfile::Numeric(n) => Some(n),
            SeriesProfile::Categorical(_) => None,
        }
    }

    /// The categorical state, if categorical.
    pub fn categorical(&self) -> Option<&CategoricalState> {
        match self {
            SeriesProfile::Categorical(c) => Some(c),
            SeriesProfile::Numeric(_) => None,
        }
    }
}

/// The reference of one segment (or of all rows).
#[derive(Debug, Clone, Default)]
pub struct SegmentProfile {
    /// Rows in this segment's reference.
    pub rows: u64,
    /// Per series (features and `$score`, `$latency`, `$label`).
    pub series: BTreeMap<FeatureRef, SeriesProfile>,
    /// Performance of the labelled reference rows.
    pub performance: PerformanceState,
    /// The calibration map of those rows' binary scores, for performance estimated without
    /// labels (docs/STATISTICS.md §20): fitted once, when the profile is built or read.
    pub calibration: Option<Calibration>,
}

/// A model version's reference profile.
#[derive(Debug, Clone)]
pub struct ReferenceProfile {
    /// Model id.
    pub model: String,
    /// Model version.
    pub version: String,
    /// When it was built.
    pub created_at: Timestamp,
    /// Per segment, `Segment::All` included.
    pub segments: BTreeMap<Segment, SegmentProfile>,
}

impl ReferenceProfile {
    /// The profile of one series in one segment.
    pub fn series(&self, feature: &FeatureRef, segment: &Segment) -> Option<&SeriesProfile> {
        self.segments.get(segment)?.series.get(feature)
    }

    /// Rows in the overall reference.
    pub fn rows(&self) -> u64 {
        self.segments.get(&Segment::All).map_or(0, |s| s.rows)
    }

    /// The profile without its numeric sketches and per-bin sums
    /// ([`NumericState::drop_sketch`]): what PSI, JS, Hellinger, summaries and binning new
    /// windows read (edges, bin counts, quantiles, moments) at about a quarter of the memory.
    /// Statistics that need the reference's CDF (KS, Wasserstein, quantiles of the
    /// reference) get an error from it and must read the whole profile.
    pub fn without_sketches(&self) -> ReferenceProfile {
        let mut p = self.clone();
        for seg in p.segments.values_mut() {
            for s in seg.series.values_mut() {
                if let SeriesProfile::Numeric(n) = s {
                    n.state.drop_sketch();
                }
            }
        }
        p
    }

    /// Holds every numeric series' sketch as its compact image ([`NumericState::compact`]):
    /// how a profile is kept in memory for queries and rules, which only read it.
    pub fn compact(&mut self) {
        for seg in self.segments.values_mut() {
            for s in seg.series.values_mut() {
                if let SeriesProfile::Numeric(n) = s {
                    n.state.compact();
                }
            }
        }
    }
}

/// Accumulates reference rows, then builds the profile.
#[derive(Debug)]
pub struct ReferenceBuilder {
    model: ModelDef,
    version: String,
    registry: SegmentRegistry,
    values: usize,
    segments: BTreeMap<Segment, SegmentAcc>,
}

#[derive(Debug, Default)]
struct SegmentAcc {
    rows: u64,
    numeric: BTreeMap<FeatureRef, NumAcc>,
    categorical: BTreeMap<String, CategoricalState>,
    /// `$items`: served item ids; `None` until a ranking row with items counts here.
    items: Option<CategoricalState>,
    performance: PerformanceState,
}

#[derive(Debug, Default)]
struct NumAcc {
    values: Vec<f64>,
    missing: u64,
    invalid: u64,
}

impl NumAcc {
    fn push(&mut self, v: Option<f64>) -> usize {
        match v {
            Some(x) if x.is_finite() => {
                self.values.push(x);
                1
            }
            Some(_) => {
                self.invalid += 1;
                0
            }
            None => {
                self.missing += 1;
                0
            }
        }
    }
}

impl ReferenceBuilder {
    /// A builder for `model`'s `version`.
    pub fn new(model: &ModelDef, version: &str) -> Result<Self> {
        model.validate()?;
        crate::model::validate_name("model_version", version)?;
        Ok(ReferenceBuilder {
            model: model.clone(),
            version: version.to_string(),
            registry: SegmentRegistry::new(model.segment_cap as usize),
            values: 0,
            segments: BTreeMap::new(),
        })
    }

    /// Adds a batch; `labels[i]` is row i's inline label. Returns rejected rows.
    ///
    /// Column by column: a row pass checks the rows and finds each accepted row's segments
    /// (admitting their values in row order); then every series of every segment the batch
    /// reaches is looked up once and given its rows' values in row order, exactly what adding
    /// the rows one at a time would give it.
    pub fn add(
        &mut self,
        batch: &InferenceBatch,
        labels: &[Option<f64>],
    ) -> Result<Vec<Rejection>> {
        crate::ingest::validate_batch(&self.model, batch)
            .map_err(|e| Error::invalid("reference batch", e))?;
        let mut rejected = Vec::new();
        let kinds: Vec<FeatureKind> = batch
            .feature_names
            .iter()
            .filter_map(|f| self.model.features.get(f).copied())
            .collect();
        // The batch's segments (`all` first) and, per segment, its accepted rows in order.
        let mut segs: Vec<Segment> = vec![Segment::All];
        let mut members: Vec<Vec<usize>> = vec![Vec::new()];
        // Per segment key: each raw value met, to its index in `segs` after admission.
        let mut seg_index: Vec<BTreeMap<&str, usize>> =
            vec![BTreeMap::new(); batch.segment_keys.len()];
        let mut seg_ids: BTreeMap<Segment, usize> = BTreeMap::new();
        seg_ids.insert(Segment::All, 0);
        for (i, row) in batch.rows.iter().enumerate() {
            if row.segments.len() != batch.segment_keys.len() {
                rejected.push(Rejection {
                    row: i,
                    request_id: row.request_id.clone(),
                    reason: "segment values do not match segment keys".into(),
                });
                continue;
            }
            let mut bad = None;
            for ((name, kind), col) in batch.feature_names.iter().zip(&kinds).zip(&batch.columns) {
                match (kind, col.get(i)) {
                    (FeatureKind::Numeric, FieldRef::Category(_)) => {
                        bad = Some(format!("feature {name}: expected a number"))
                    }
                    (FeatureKind::Categorical, FieldRef::Number(_)) => {
                        bad = Some(format!(
                            "feature {name}: expected a string or boolean (categorical)"
                        ))
                    }
                    _ => {}
                }
            }
            if bad.is_none() {
                bad = crate::ingest::check_cost_and_attributions(batch, i).err();
            }
            if let Some(reason) = bad {
                rejected.push(Rejection {
                    row: i,
                    request_id: row.request_id.clone(),
                    reason,
                });
                continue;
            }
            members[0].push(i);
            for (j, (k, v)) in batch.segment_keys.iter().zip(&row.segments).enumerate() {
                let Some(v) = v else { continue };
                let s = match seg_index[j].get(v.as_str()) {
                    Some(s) => *s,
                    None => {
                        let seg = Segment::Value {
                            key: k.clone(),
                            value: self.registry.admit(k, v),
                        };
                        // Raw values past the cap all become `__other__`: one segment.
                        let s = *seg_ids.entry(seg).or_insert_with_key(|seg| {
                            segs.push(seg.clone());
                            members.push(Vec::new());
                            segs.len() - 1
                        });
                        seg_index[j].insert(v.as_str(), s);
                        s
                    }
                };
                members[s].push(i);
            }
        }
        let score = |i: usize| {
            let row = &batch.rows[i];
            row.score.or(row.prediction)
        };
        let label = |i: usize| labels.get(i).copied().flatten();
        let task = self.model.task;
        let mut values = 0usize;
        for (seg, rows) in segs.into_iter().zip(&members) {
            if rows.is_empty() {
                continue;
            }
            let acc = self.segments.entry(seg).or_default();
            acc.rows += rows.len() as u64;
            let mut numeric = |f: FeatureRef, get: &dyn Fn(usize) -> Option<Option<f64>>| {
                // `get(i)` is `None` when row i has nothing to count (no latency, cost or
                // label); a series no row counts in is not created.
                if !rows.iter().any(|&i| get(i).is_some()) {
                    return;
                }
                let na = acc.numeric.entry(f).or_default();
                for &i in rows {
                    if let Some(v) = get(i) {
                        values += na.push(v);
                    }
                }
            };
            for ((name, kind), col) in batch.feature_names.iter().zip(&kinds).zip(&batch.columns) {
                if *kind == FeatureKind::Numeric {
                    numeric(FeatureRef::Named(name.clone()), &|i| match col.get(i) {
                        FieldRef::Number(x) => Some(Some(x)),
                        _ => Some(None),
                    });
                }
            }
            numeric(FeatureRef::Score, &|i| Some(score(i)));
            numeric(FeatureRef::Latency, &|i| batch.rows[i].latency_ms.map(Some));
            numeric(FeatureRef::Cost, &|i| batch.rows[i].cost.map(Some));
            for (name, col) in &batch.attributions {
                numeric(
                    FeatureRef::Attribution(name.clone()),
                    &|i| match col.get(i) {
                        FieldRef::Number(x) => Some(Some(x.abs())),
                        _ => None,
                    },
                );
            }
            numeric(FeatureRef::Label, &|i| label(i).map(Some));
            for ((name, kind), col) in batch.feature_names.iter().zip(&kinds).zip(&batch.columns) {
                if *kind == FeatureKind::Categorical {
                    let st = acc.categorical.entry(name.clone()).or_default();
                    for &i in rows {
                        match col.get(i) {
                            FieldRef::Category(c) => st.observe(c, false),
                            _ => st.observe_missing(),
                        }
                    }
                }
            }
            for &i in rows {
                let (Some(s), Some(y)) = (score(i), label(i)) else {
                    continue;
                };
                // A pair the state refuses (a score outside [0, 1], a value not finite) does
                // not count; a refused observation changes nothing.
                let _ = match task {
                    Task::Binary if y == 0.0 || y == 1.0 => {
                        acc.performance.observe_binary(s, y == 1.0)
                    }
                    Task::Regression | Task::Multiclass => acc.performance.observe_regression(s, y),
                    Task::Binary | Task::Ranking => Ok(()),
                };
            }
            if task == Task::Ranking {
                for &i in rows {
                    let items = &batch.rows[i].items;
                    if items.is_empty() {
                        continue;
                    }
                    let st = acc.items.get_or_insert_with(CategoricalState::default);
                    for item in items.iter().take(TOP_K_ITEMS) {
                        st.observe(&item.id, false);
                    }
                }
            }
        }
        self.values += values;
        if self.values > MAX_REFERENCE_VALUES {
            return Err(Error::invalid(
                "reference",
                format!(
                    "more than {MAX_REFERENCE_VALUES} numeric values; upload a sample of the training data"
                ),
            ));
        }
        Ok(rejected)
    }

    /// Builds the profile: exact edges and quantiles, then states binned on those edges.
    pub fn finish(self, created_at: Timestamp) -> Result<ReferenceProfile> {
        // The numeric series (a sort and a bulk state each) are profiled on every core.
        let mut accs = Vec::new();
        let mut rest = Vec::new();
        for (seg, mut acc) in self.segments {
            for (f, num) in std::mem::take(&mut acc.numeric) {
                accs.push((rest.len(), f, num));
            }
            rest.push((seg, acc));
        }
        let mut profiles = accs
            .iter()
            .map(|(s, f, _)| (*s, f.clone()))
            .zip(profile_all(&accs))
            .peekable();
        let mut segments = BTreeMap::new();
        for (i, (seg, acc)) in rest.into_iter().enumerate() {
            let mut series = BTreeMap::new();
            while let Some(((_, f), p)) = profiles.next_if(|((s, _), _)| *s == i) {
                series.insert(f, SeriesProfile::Numeric(p?));
            }
            for (f, c) in acc.categorical {
                series.insert(FeatureRef::Named(f), SeriesProfile::Categorical(c));
            }
            if let Some(items) = acc.items {
                series.insert(FeatureRef::Items, SeriesProfile::Categorical(items));
            }
            let calibration = acc.performance.binary.as_ref().and_then(Calibration::fit);
            segments.insert(
                seg,
                SegmentProfile {
                    rows: acc.rows,
                    series,
                    performance: acc.performance,
                    calibration,
                },
            );
        }
        Ok(ReferenceProfile {
            model: self.model.id,
            version: self.version,
            created_at,
            segments,
        })
    }
}

/// [`numeric_profile`] of every (segment index, series, values), on up to every core; the
/// results come back in the order given.
fn profile_all(accs: &[(usize, FeatureRef, NumAcc)]) -> Vec<Result<NumericProfile>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, accs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((_, _, acc)) = accs.get(j) else {
                break done;
            };
            done.push((j, numeric_profile(acc)));
        }
    };
    let mut all = crate::ingest::on_threads(threads, work);
    all.sort_unstable_by_key(|(j, _)| *j);
    all.into_iter().map(|(_, p)| p).collect()
}

fn numeric_profile(acc: &NumAcc) -> Result<NumericProfile> {
    let sorted = sorted_finite(&acc.values);
    let edges = if sorted.is_empty() {
        None
    } else {
        Some(ReferenceEdges::from_sorted(&sorted)?)
    };
    let fine = edges.as_ref().map(|e| &e.q50);
    // The values are finite (NumAcc keeps no other), so `sorted` holds all of them.
    let state = NumericState::from_sorted(&sorted, acc.missing, acc.invalid, fine);
    let mut quantiles = [f64::NAN; 7];
    for (q, out) in PROFILE_QUANTILES.iter().zip(quantiles.iter_mut()) {
        *out = type7_quantile_sorted(&sorted, *q).unwrap_or(f64::NAN);
    }
    Ok(NumericProfile {
        state,
        edges,
        quantiles,
    })
}

/// The 50-bin PSI edges of a numeric series in `profile`.
fn profile_edges<'a>(
    profile: &'a ReferenceProfile,
    feature: &FeatureRef,
    segment: &Segment,
) -> Option<&'a BinEdges> {
    profile
        .series(feature, segment)?
        .numeric()?
        .edges
        .as_ref()
        .map(|e| &e.q50)
}

/// Whether `profile` has seen `value` for a categorical series (a feature or `$items`); `None`
/// when it has no such series. Past the exact-count cap every category counts as seen.
fn profile_knows(
    profile: &ReferenceProfile,
    feature: &FeatureRef,
    segment: &Segment,
    value: &str,
) -> Option<bool> {
    let c = profile.series(feature, segment)?.categorical()?;
    Some(c.exact_counts().is_none_or(|m| m.contains_key(value)))
}

/// [`profile_knows`] resolved once for a whole series.
fn profile_known<'a>(
    profile: Option<&'a ReferenceProfile>,
    feature: &str,
    segment: &Segment,
) -> Known<'a> {
    let feature = FeatureRef::Named(feature.to_string());
    match profile
        .and_then(|p| p.series(&feature, segment))
        .and_then(|s| s.categorical())
    {
        None => Known::NoReference,
        Some(c) => c.exact_counts().map_or(Known::Everything, Known::Exactly),
    }
}

/// Profiles by version, as the fold's [`Baselines`].
impl Baselines for BTreeMap<String, ReferenceProfile> {
    fn edges(&self, version: &str, feature: &FeatureRef, segment: &Segment) -> Option<&BinEdges> {
        profile_edges(self.get(version)?, feature, segment)
    }

    fn knows_category(
        &self,
        version: &str,
        feature: &str,
        segment: &Segment,
        value: &str,
    ) -> Option<bool> {
        let feature = FeatureRef::Named(feature.to_string());
        profile_knows(self.get(version)?, &feature, segment, value)
    }

    fn knows_item(&self, version: &str, segment: &Segment, id: &str) -> Option<bool> {
        profile_knows(self.get(version)?, &FeatureRef::Items, segment, id)
    }

    fn known_categories(&self, version: &str, feature: &str, segment: &Segment) -> Known<'_> {
        profile_known(self.get(version), feature, segment)
    }
}

/// Shared profiles by version (the server's registry holds them behind `Arc` so queries can
/// borrow them without copying), as the fold's [`Baselines`].
impl Baselines for BTreeMap<String, Arc<ReferenceProfile>> {
    fn edges(&self, version: &str, feature: &FeatureRef, segment: &Segment) -> Option<&BinEdges> {
        profile_edges(self.get(version)?, feature, segment)
    }

    fn knows_category(
        &self,
        version: &str,
        feature: &str,
        segment: &Segment,
        value: &str,
    ) -> Option<bool> {
        let feature = FeatureRef::Named(feature.to_string());
        profile_knows(self.get(version)?, &feature, segment, value)
    }

    fn knows_item(&self, version: &str, segment: &Segment, id: &str) -> Option<bool> {
        profile_knows(self.get(version)?, &FeatureRef::Items, segment, id)
    }

    fn known_categories(&self, version: &str, feature: &str, segment: &Segment) -> Known<'_> {
        profile_known(self.get(version).map(Arc::as_ref), feature, segment)
    }
}

/// Envelope kind of an encoded [`ReferenceProfile`] (`storage/FORMAT.md`, kind 20).
pub const PROFILE_KIND: u8 = 0x20;

fn encode_feature(w: &mut Writer, f: &FeatureRef) {
    match f {
        FeatureRef::Named(n) => {
            w.u8(0);
            w.str(n);
        }
        FeatureRef::Score => w.u8(1),
        FeatureRef::Label => w.u8(2),
        FeatureRef::Latency => w.u8(3),
        FeatureRef::Items => w.u8(4),
        FeatureRef::Cost => w.u8(5),
        FeatureRef::Attribution(n) => {
            w.u8(6);
            w.str(n);
        }
    }
}

fn decode_feature(r: &mut Reader<'_>) -> Result<FeatureRef> {
    match r.u8()? {
        0 => Ok(FeatureRef::Named(r.str()?.to_string())),
        1 => Ok(FeatureRef::Score),
        2 => Ok(FeatureRef::Label),
        3 => Ok(FeatureRef::Latency),
        4 => Ok(FeatureRef::Items),
        5 => Ok(FeatureRef::Cost),
        6 => Ok(FeatureRef::Attribution(r.str()?.to_string())),
        t => Err(Error::Malformed {
            what: "feature",
            detail: format!("tag {t}"),
        }),
    }
}

fn encode_edges(w: &mut Writer, e: &BinEdges) {
    w.varint(e.edges().len() as u64);
    for x in e.edges() {
        w.f64(*x);
    }
}

fn decode_edges(r: &mut Reader<'_>) -> Result<BinEdges> {
    let n = r.len(10_000, "edges")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(r.f64()?);
    }
    BinEdges::new(v)
}

impl ReferenceProfile {
    /// Encodes the profile in the checksummed envelope (layout in `storage/FORMAT.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str(&self.model);
        w.str(&self.version);
        w.f64(self.created_at.0 as f64);
        w.varint(self.segments.len() as u64);
        for (seg, p) in &self.segments {
            seg.encode(&mut w);
            w.varint(p.rows);
            w.bytes(
                &SeriesState::Score(crate::sketch::ScoreState {
                    performance: p.performance.clone(),
                    ..Default::default()
                })
                .encode(),
            );
            w.varint(p.series.len() as u64);
            for (f, s) in &p.series {
                encode_feature(&mut w, f);
                match s {
                    SeriesProfile::Numeric(n) => {
                        w.u8(0);
                        w.bytes(&SeriesState::Numeric(n.state.clone()).encode());
                        match &n.edges {
                            None => w.u8(0),
                            Some(e) => {
                                w.u8(1);
                                encode_edges(&mut w, &e.q10);
                                encode_edges(&mut w, &e.q50);
                            }
                        }
                        for q in n.quantiles {
                            w.f64(q);
                        }
                    }
                    SeriesProfile::Categorical(c) => {
                        w.u8(1);
                        w.bytes(&SeriesState::Categorical(c.clone()).encode());
                    }
                }
            }
        }
        seal(PROFILE_KIND, &w.into_bytes())
    }

    /// Decodes a profile written by [`ReferenceProfile::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (kind, payload) = open(bytes)?;
        if kind != PROFILE_KIND {
            return Err(Error::UnknownStateKind { tag: kind });
        }
        let mut r = Reader::new(payload);
        let model = r.str()?.to_string();
        let version = r.str()?.to_string();
        let created_at = Timestamp(r.f64()? as i64);
        let nseg = r.len(1_000_000, "segments")?;
        let mut segments = BTreeMap::new();
        for _ in 0..nseg {
            let seg = Segment::decode(&mut r)?;
            let rows = r.varint()?;
            let performance = match SeriesState::decode(r.bytes()?)? {
                SeriesState::Score(s) => s.performance,
                other => {
                    return Err(Error::KindMismatch {
                        left: "score",
                        right: other.kind_name(),
                    });
                }
            };
            let n = r.len(1_000_000, "series")?;
            let mut series = BTreeMap::new();
            for _ in 0..n {
                let f = decode_feature(&mut r)?;
                let p = match r.u8()? {
                    0 => {
                        let state = match SeriesState::decode(r.bytes()?)? {
                            SeriesState::Numeric(s) => s,
                            other => {
                                return Err(Error::KindMismatch {
                                    left: "numeric",
                                    right: other.kind_name(),
                                });
                            }
                        };
                        let edges = match r.u8()? {
                            0 => None,
                            _ => {
                                let q10 = decode_edges(&mut r)?;
                                let q50 = decode_edges(&mut r)?;
                                Some(ReferenceEdges::new(q10, q50)?)
                            }
                        };
                        let mut quantiles = [0.0; 7];
                        for q in quantiles.iter_mut() {
                            *q = r.f64()?;
                        }
                        SeriesProfile::Numeric(NumericProfile {
                            state,
                            edges,
                            quantiles,
                        })
                    }
                    _ => match SeriesState::decode(r.bytes()?)? {
                        SeriesState::Categorical(c) => SeriesProfile::Categorical(c),
                        other => {
                            return Err(Error::KindMismatch {
                                left: "categorical",
                                right: other.kind_name(),
                            });
                        }
                    },
                };
                series.insert(f, p);
            }
            let calibration = performance.binary.as_ref().and_then(Calibration::fit);
            segments.insert(
                seg,
                SegmentProfile {
                    rows,
                    series,
                    performance,
                    calibration,
                },
            );
        }
        r.finish("reference profile")?;
        Ok(ReferenceProfile {
            model,
            version,
            created_at,
            segments,
        })
    }
}
