//! driftdb's metrics as Prometheus series: which series exist, their labels, and their
//! samples, computed on the fly from the stored window sketches; [`DriftSource`] serves them
//! to the evaluator, to remote read ([`DriftSource::read`]) and to the series and label APIs
//! ([`DriftSource::list`]).
//!
//! A series is `driftdb_<metric>{model, version, feature, <segment key>=<value>}` with one
//! sample per **closed** window, stamped at the window's **end** (the instant its value became
//! complete; a window is closed once `end + grace <= now`, grace from the model definition).
//! The overall segment has no segment label. Which metrics are exported for which series is the
//! fixed table [`EXPORTS`]; `prom/PROMETHEUS_API.md` lists it.
//!
//! **Downsampled windows.** Where storage has merged a model's 15-minute windows into hourly
//! ones (`SeriesReader::downsampled_before`), the series has one sample per hour, stamped at
//! the end of the hour and holding the whole hour — the window that exists there. The grid of
//! windows is hourly up to the first hour boundary at or after the downsampling boundary and
//! the model's own width from there on, and a 15-minute window not yet moved into its hour is
//! merged into that hour, so every datum counts once. (Stamping the hour at the end of its
//! first quarter, as an earlier version did, put the samples at `hh:15`, where an hourly
//! `query_range` grid aligned to the hour never looked.)
//!
//! Why on the fly rather than a materialised metrics family: every value is what DriftQL's
//! `METRIC(model.feature) step <window>` computes for the same window (the same
//! [`driftdb_query::metrics::evaluate`] on the same merged state), late data that updates a
//! window shows up without a rewrite, and no extra storage is spent on values nobody reads.
//! The cost is kept down by deciding from labels alone which (version, feature, metric)
//! triples a selector can match before any sketch is read — every label but the segment is
//! known from the model definition and the stored versions, so all matchers (equalities,
//! regexes, negations) prune, not only `__name__` — then scanning each selected (version,
//! feature) key range once for all its segments and metrics, segment matchers applied as the
//! scan meets each segment. Listing series reads no window at all: segments come from the
//! registry's admitted values.
//!
//! **Cost bounds.** Once the candidates are known and before anything is read, the selection
//! is estimated from the catalog — candidate series (models × versions × features × metrics ×
//! admitted segments passing the segment matchers) times windows in the range — and refused
//! with [`Error::TooLarge`] when series, series × instants, samples or windows would pass
//! their [`Limits`]; the [`Budget`] is checked per model, per pass, per (version, feature) and
//! per series met by a scan, and installed as the query crate's budget around every read, so
//! `accumulate` checks it every few hundred windows inside a series too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::time::{DurationMs, Resolution, Timestamp};
use driftdb_query::exec::{ExecStats, Intervals, accumulate, edges_of, par_chunks, reference_base};
use driftdb_query::metrics::{Metric, evaluate, lookup};
use driftdb_query::{Context, TimeRange};
use driftdb_storage::SeriesPrefix;

use crate::error::{Error, Result};
use crate::limits::{Budget, Limits};
use crate::matcher::{Matcher, all_match, check_selective};
use crate::source::{
    Labels, ReadStats, Selection, Series, SeriesSource, check_selection, too_many_samples,
    too_many_series,
};

/// Prefix of every exported metric name.
pub const NAME_PREFIX: &str = "driftdb_";

/// What a series measures, as far as choosing metrics goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// A numeric input feature.
    Numeric,
    /// A categorical input feature.
    Categorical,
    /// `$score`'s distribution (prediction drift).
    Score,
    /// `$latency`.
    Latency,
    /// `$cost`.
    Cost,
    /// Labelled performance on `$score` of a binary classifier.
    Binary,
    /// Labelled performance on `$score` of a regression model.
    Regression,
    /// Labelled performance on `$score` of a ranking model.
    Ranking,
    /// Labelled performance on `$score` of any model.
    AnyTask,
}

/// A parameter written as a label (`quantile="0.99"`, `k="10"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Param {
    /// Label name.
    pub label: &'static str,
    /// Label value.
    pub value: &'static str,
    /// The DriftQL parameter.
    pub x: f64,
}

/// One exported metric: DriftQL metric `metric` (with `param`) on the series kinds in `on`,
/// exposed as `driftdb_<metric>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Export {
    /// DriftQL metric name (also the series name after [`NAME_PREFIX`]).
    pub metric: &'static str,
    /// The parameter, for `quantile` and `ndcg`.
    pub param: Option<Param>,
    /// Which series it is computed on.
    pub on: &'static [On],
}

const fn ex(metric: &'static str, on: &'static [On]) -> Export {
    Export {
        metric,
        param: None,
        on,
    }
}

const fn exq(value: &'static str, x: f64) -> Export {
    Export {
        metric: "quantile",
        param: Some(Param {
            label: "quantile",
            value,
            x,
        }),
        on: &[On::Latency],
    }
}

use On::{AnyTask, Binary, Categorical, Cost, Latency, Numeric, Ranking, Regression, Score};

/// The exported metrics. Drift is always against the version's reference profile (DriftQL's
/// default baseline), per segment.
pub const EXPORTS: &[Export] = &[
    // Drift of inputs and of the prediction score.
    ex("psi", &[Numeric, Categorical, Score]),
    ex("js", &[Numeric, Categorical, Score]),
    ex("hellinger", &[Numeric, Categorical]),
    ex("ks", &[Numeric, Score]),
    ex("wasserstein", &[Numeric, Score]),
    ex("mean_shift", &[Numeric]),
    ex("chi2", &[Categorical]),
    ex("linf", &[Categorical]),
    ex("unseen_share", &[Categorical]),
    ex("missing_rate_change", &[Numeric, Categorical]),
    // One-sample summaries.
    ex("missing_rate", &[Numeric, Categorical, Score]),
    ex("invalid_rate", &[Score]),
    ex("mean", &[Numeric, Score, Latency]),
    ex("std", &[Numeric]),
    ex("distinct", &[Categorical]),
    ex("rows", &[Score]),
    exq("0.5", 0.5),
    exq("0.95", 0.95),
    exq("0.99", 0.99),
    ex("cost_per_1k", &[Cost]),
    // Labelled performance.
    ex("auc", &[Binary]),
    ex("ece", &[Binary]),
    ex("logloss", &[Binary]),
    ex("brier", &[Binary]),
    ex("accuracy", &[Binary]),
    ex("precision", &[Binary]),
    ex("recall", &[Binary]),
    ex("f1", &[Binary]),
    ex("positive_rate", &[Binary]),
    // Performance estimated without labels (the reference's calibration).
    ex("estimated_auc", &[Binary]),
    ex("estimated_accuracy", &[Binary]),
    ex("estimated_precision", &[Binary]),
    ex("estimated_recall", &[Binary]),
    ex("estimated_f1", &[Binary]),
    ex("rmse", &[Regression]),
    ex("mae", &[Regression]),
    ex("mape", &[Regression]),
    Export {
        metric: "ndcg",
        param: Some(Param {
            label: "k",
            value: "10",
            x: 10.0,
        }),
        on: &[Ranking],
    },
    ex("ctr", &[Ranking]),
    ex("cvr", &[Ranking]),
    ex("rpm", &[Ranking]),
    ex("label_coverage", &[AnyTask]),
];

impl Export {
    /// The series name, `driftdb_<metric>`.
    pub fn series_name(&self) -> String {
        format!("{NAME_PREFIX}{}", self.metric)
    }

    fn applies(&self, kinds: &[On]) -> bool {
        self.on.iter().any(|o| kinds.contains(o))
    }
}

/// Every exported series name, sorted, without duplicates.
pub fn series_names() -> Vec<String> {
    let set: BTreeSet<String> = EXPORTS.iter().map(Export::series_name).collect();
    set.into_iter().collect()
}

/// The help text of an exported series name (DriftQL's one-line help of the metric).
pub fn help(series_name: &str) -> Option<&'static str> {
    let metric = series_name.strip_prefix(NAME_PREFIX)?;
    EXPORTS
        .iter()
        .find(|e| e.metric == metric)
        .and_then(|e| lookup(e.metric))
        .map(|d| d.help)
}

/// Labels that are not segment keys; a segment key spelled like one of them is exported as
/// `segment_<key>`.
const RESERVED: &[&str] = &["model", "version", "feature", "quantile", "k"];

/// The label name of a segment key: characters outside `[A-Za-z0-9_]` become `_`, a leading
/// digit gets a `_` in front, and names of driftdb's own labels get a `segment_` prefix.
pub fn segment_label(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if RESERVED.contains(&s.as_str()) || s.starts_with("__") {
        s = format!("segment_{s}");
    }
    s
}

/// The kinds a stored series counts as, or `None` when nothing is exported for it (`$label`,
/// `$items`, a feature no longer in the model's schema).
fn kinds_of(def: &ModelDef, feature: &FeatureRef) -> Option<Vec<On>> {
    match feature {
        FeatureRef::Named(n) => match def.features.get(n)? {
            FeatureKind::Numeric => Some(vec![Numeric]),
            FeatureKind::Categorical => Some(vec![Categorical]),
        },
        FeatureRef::Score => {
            let task = match def.task {
                Task::Binary => Some(Binary),
                Task::Regression => Some(Regression),
                Task::Ranking => Some(Ranking),
                Task::Multiclass => None,
            };
            Some(
                [Some(Score), task, Some(AnyTask)]
                    .into_iter()
                    .flatten()
                    .collect(),
            )
        }
        FeatureRef::Latency => Some(vec![Latency]),
        FeatureRef::Cost => Some(vec![Cost]),
        // Importance is a share across features, not a per-series value.
        FeatureRef::Label | FeatureRef::Items | FeatureRef::Attribution(_) => None,
    }
}

/// The labels of one exported series, sorted.
pub fn labels_of(export: &Export, key: &SeriesKey) -> Labels {
    let mut l: Labels = vec![
        ("__name__".to_string(), export.series_name()),
        ("model".to_string(), key.model.clone()),
        ("version".to_string(), key.version.clone()),
        ("feature".to_string(), key.feature.to_string()),
    ];
    if let Segment::Value { key, value } = &key.segment {
        l.push((segment_label(key), value.clone()));
    }
    if let Some(p) = export.param {
        l.push((p.label.to_string(), p.value.to_string()));
    }
    l.sort();
    l
}

fn is_drift(e: &Export) -> bool {
    lookup(e.metric).is_some_and(|d| d.family == driftdb_query::metrics::Family::Drift)
}

/// Segment values admitted per key of a model (the registry's capped sets, with `__other__`
/// once a key reached its cap).
pub type SegmentValues = BTreeMap<String, BTreeSet<String>>;

/// One (version, feature) a selector may match: the exports whose labels, apart from the
/// segment label, pass every matcher, with those labels (for the overall segment).
#[derive(Debug)]
struct Candidate {
    version: String,
    feature: FeatureRef,
    exports: Vec<(usize, Labels)>,
}

/// What one model contributes to a selection.
#[derive(Debug)]
struct ModelWork {
    def: ModelDef,
    resolution: Resolution,
    grace_ms: i64,
    /// Segment keys and their label names.
    segment_labels: Vec<(String, String)>,
    candidates: Vec<Candidate>,
}

impl ModelWork {
    /// The labels of a candidate's export in `segment` (the overall labels plus the segment
    /// label), if every matcher passes on them.
    fn matching(&self, labels: &Labels, segment: &Segment, matchers: &[Matcher]) -> Option<Labels> {
        let labels = match segment {
            Segment::All => labels.clone(),
            Segment::Value { key, value } => {
                let name = self.label_of(key);
                let mut l = labels.clone();
                l.push((name, value.clone()));
                l.sort();
                l
            }
        };
        all_match(matchers, &labels).then_some(labels)
    }

    fn label_of(&self, key: &str) -> String {
        self.segment_labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(|| segment_label(key), |(_, l)| l.clone())
    }

    /// Whether the matchers on this model's segment labels pass for `segment` (the other
    /// matchers were applied while planning).
    fn segment_passes(&self, segment: &Segment, matchers: &[Matcher]) -> bool {
        let (label, value) = match segment {
            Segment::All => (None, ""),
            Segment::Value { key, value } => (Some(self.label_of(key)), value.as_str()),
        };
        matchers
            .iter()
            .filter(|m| self.segment_labels.iter().any(|(_, l)| *l == m.name))
            .all(|m| {
                if label.as_deref() == Some(m.name.as_str()) {
                    m.matches(value)
                } else {
                    m.matches("")
                }
            })
    }

    /// Every segment the registry admitted for this model, the overall one first.
    fn segments(&self, values: SegmentValues) -> Vec<Segment> {
        let mut all = vec![Segment::All];
        for (key, values) in values {
            all.extend(values.into_iter().map(|value| Segment::Value {
                key: key.clone(),
                value,
            }));
        }
        all
    }
}

/// The value a label is pinned to by an equality matcher.
fn pinned<'m>(matchers: &'m [Matcher], label: &str) -> Option<&'m str> {
    matchers
        .iter()
        .filter(|m| m.name == label)
        .find_map(Matcher::pinned)
}

/// Whether `value` passes every matcher on `label`.
fn passes(matchers: &[Matcher], label: &str, value: &str) -> bool {
    matchers
        .iter()
        .filter(|m| m.name == label)
        .all(|m| m.matches(value))
}

/// Decides, from labels alone, which (version, feature, metric) triples `matchers` can select;
/// segment labels are checked later, per segment found. Reads no sketch: versions come from
/// [`driftdb_storage::SeriesReader::versions`] (a few seeks per version) unless a matcher pins
/// the version, features from the model definition.
fn plan(ctx: &Context<'_>, matchers: &[Matcher], budget: &Budget) -> Result<Vec<ModelWork>> {
    let names: Vec<(usize, &Export)> = EXPORTS
        .iter()
        .enumerate()
        .filter(|(_, e)| passes(matchers, "__name__", &e.series_name()))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let model_ids: Vec<String> = match pinned(matchers, "model") {
        Some(m) => vec![m.to_string()],
        None => ctx.catalog.model_ids(),
    };
    let mut out = Vec::new();
    for id in model_ids {
        budget.check()?;
        if !passes(matchers, "model", &id) {
            continue;
        }
        let Some(def) = ctx.catalog.model(&id) else {
            continue;
        };
        let resolution = def.validate()?;
        let grace_ms = DurationMs::parse(&def.grace)?.millis();
        let segment_labels: Vec<(String, String)> = def
            .segments
            .iter()
            .map(|k| (k.clone(), segment_label(k)))
            .collect();
        // Matchers on a segment label wait for the segment; any other passes or fails here
        // (a label the series do not have is "").
        let deferred = |m: &Matcher| segment_labels.iter().any(|(_, l)| *l == m.name);
        let versions = match pinned(matchers, "version") {
            Some(v) => vec![v.to_string()],
            None => ctx.reader.versions(&id)?,
        };
        let features: Vec<FeatureRef> = def
            .features
            .keys()
            .map(|f| FeatureRef::Named(f.clone()))
            .chain([FeatureRef::Score, FeatureRef::Latency, FeatureRef::Cost])
            .filter(|f| passes(matchers, "feature", &f.to_string()))
            .collect();
        let mut candidates = Vec::new();
        for version in versions {
            budget.check()?;
            if !passes(matchers, "version", &version) {
                continue;
            }
            // Drift is against the version's reference profile: without one every value would
            // be null, so a version without a reference has no drift series at all.
            let referenced = ctx.catalog.reference(&id, &version).is_some();
            for feature in &features {
                let Some(kinds) = kinds_of(&def, feature) else {
                    continue;
                };
                let key = SeriesKey {
                    model: id.clone(),
                    version: version.clone(),
                    feature: feature.clone(),
                    segment: Segment::All,
                };
                let exports: Vec<(usize, Labels)> = names
                    .iter()
                    .filter(|(_, e)| e.applies(&kinds) && (referenced || !is_drift(e)))
                    .map(|&(i, e)| (i, labels_of(e, &key)))
                    .filter(|(_, l)| matchers.iter().all(|m| deferred(m) || m.matches_labels(l)))
                    .collect();
                if !exports.is_empty() {
                    candidates.push(Candidate {
                        version: version.clone(),
                        feature: feature.clone(),
                        exports,
                    });
                }
            }
        }
        if !candidates.is_empty() {
            out.push(ModelWork {
                def,
                resolution,
                grace_ms,
                segment_labels,
                candidates,
            });
        }
    }
    Ok(out)
}

/// Windows of one width whose ends are the multiples of `width` in `[first_end, last_end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first_end: i64,
    last_end: i64,
    width: i64,
}

impl Span {
    /// The windows of `width` (aligned to it) ending in `[lo, hi]`.
    fn new(lo: i64, hi: i64, width: i64) -> Span {
        let first_end =
            lo.div_euclid(width) * width + if lo.rem_euclid(width) == 0 { 0 } else { width };
        let last_end = hi.div_euclid(width) * width;
        Span {
            first_end,
            last_end,
            width,
        }
    }

    fn len(&self) -> u64 {
        if self.first_end > self.last_end {
            0
        } else {
            ((self.last_end - self.first_end) / self.width) as u64 + 1
        }
    }

    fn ranges(self) -> impl Iterator<Item = TimeRange> {
        (0..self.len()).map(move |i| {
            let end = self.first_end + i as i64 * self.width;
            TimeRange {
                from: Timestamp(end - self.width),
                to: Timestamp(end),
            }
        })
    }
}

/// The windows a model's series have samples for in a range: where storage has downsampled
/// (`coarse`), hourly windows; after that (`fine`), the model's own windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grid {
    coarse: Span,
    fine: Span,
}

impl Grid {
    /// The closed windows of a model (`resolution`, `grace_ms`) whose end lies in
    /// `[start_ms, end_ms]` and after the retention floor; `downsampled` is where storage has
    /// merged the model's windows into the coarser resolution up to.
    fn new(
        start_ms: i64,
        end_ms: i64,
        now: Timestamp,
        retention_floor: Timestamp,
        resolution: Resolution,
        grace_ms: i64,
        downsampled: Option<Timestamp>,
    ) -> Grid {
        // Clamp first: the series API and remote read may ask for ±9.2e18 ms.
        const LIMIT: i64 = i64::MAX / 4;
        let lo = start_ms
            .max(retention_floor.0.saturating_add(1))
            .clamp(-LIMIT, LIMIT);
        let hi = end_ms
            .min(now.0.saturating_sub(grace_ms))
            .clamp(-LIMIT, LIMIT);
        let w = resolution.width_ms();
        let empty = Span {
            first_end: 1,
            last_end: 0,
            width: w,
        };
        match (resolution.coarser(), downsampled) {
            (Some(coarse), Some(boundary)) => {
                let cw = coarse.width_ms();
                // Every hour holding downsampled data is read as a whole hour.
                let b = boundary.0.clamp(-LIMIT, LIMIT);
                let zone = b.div_euclid(cw) * cw + if b.rem_euclid(cw) == 0 { 0 } else { cw };
                Grid {
                    coarse: Span::new(lo, hi.min(zone), cw),
                    fine: Span::new(lo.max(zone + w), hi, w),
                }
            }
            _ => Grid {
                coarse: Span { width: 1, ..empty },
                fine: Span::new(lo, hi, w),
            },
        }
    }

    fn len(&self) -> u64 {
        self.coarse.len() + self.fine.len()
    }

    fn ranges(self) -> impl Iterator<Item = TimeRange> {
        self.coarse.ranges().chain(self.fine.ranges())
    }
}

/// What a selection is estimated to cost, from the catalog, before anything is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Estimate {
    series: u64,
    samples: u64,
    windows: u64,
}

/// driftdb's series, computed from stored sketches, for the evaluator, remote read and the
/// series and label APIs.
pub struct DriftSource<'a> {
    /// The query context: reader, catalog (already restricted to what the caller may see),
    /// now.
    pub ctx: &'a Context<'a>,
    /// The store's retention cutoff: nothing ends at or before it.
    pub retention_floor: Timestamp,
    /// The segment values each model has admitted (with `__other__` once a key is full).
    pub segments: &'a (dyn Fn(&str) -> SegmentValues + Sync),
    /// Bounds on each selection.
    pub limits: Limits,
}

impl std::fmt::Debug for DriftSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftSource")
            .field("retention_floor", &self.retention_floor)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SeriesSource for DriftSource<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        instants: usize,
        budget: &Budget,
    ) -> Result<Selection> {
        self.select_windows(matchers, start_ms, end_ms, instants, budget)
    }
}

impl<'a> DriftSource<'a> {
    /// Remote read of one query: every series `matchers` select, with one sample per closed
    /// window whose end lies in `[start_ms, end_ms]` (inclusive; `start_ms` is clamped to the
    /// retention floor and `end_ms` to now, so `0 ..= 2^62` is only as large as retention).
    /// Matchers need not be selective, but a set estimated (from the catalog, before any
    /// read) to pass [`Limits::max_series`], [`Limits::max_samples`] or
    /// [`Limits::max_windows`] is refused with [`Error::TooLarge`]; the read is bounded by
    /// `budget`.
    pub fn read(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        budget: &Budget,
    ) -> Result<Selection> {
        let start = start_ms.max(self.retention_floor.0.saturating_add(1));
        self.select_windows(matchers, start, end_ms, 0, budget)
    }

    /// The label sets of every series `matchers` select, sorted, without reading a sketch:
    /// the segments are the values the model has admitted, and a feature counts as present in
    /// a version when it holds any window within retention (one seek per version and
    /// feature). Time is not a filter: a series is listed when its feature holds a window
    /// anywhere in retention. A listing estimated to pass [`Limits::max_series`] is refused
    /// before any seek.
    pub fn list(&self, matchers: &[Matcher], budget: &Budget) -> Result<Vec<Labels>> {
        under_budget(budget, || self.list_under_budget(matchers, budget))
    }

    fn list_under_budget(&self, matchers: &[Matcher], budget: &Budget) -> Result<Vec<Labels>> {
        let ctx = self.ctx;
        let models = plan(ctx, matchers, budget)?;
        let mut per_model = Vec::with_capacity(models.len());
        let mut estimate = 0u64;
        for m in &models {
            let segs = m.segments((self.segments)(&m.def.id));
            let passing = segs
                .iter()
                .filter(|s| m.segment_passes(s, matchers))
                .count() as u64;
            let exports: u64 = m.candidates.iter().map(|c| c.exports.len() as u64).sum();
            estimate = estimate.saturating_add(exports.saturating_mul(passing));
            if estimate > self.limits.max_series as u64 {
                return Err(self.refuse_series(matchers, estimate));
            }
            per_model.push(segs);
        }
        let mut set = BTreeSet::new();
        for (m, all_segments) in models.iter().zip(per_model) {
            for c in &m.candidates {
                budget.check()?;
                let prefix = SeriesPrefix::Feature {
                    model: m.def.id.clone(),
                    version: c.version.clone(),
                    feature: c.feature.clone(),
                };
                let mut present = false;
                for res in [Some(m.resolution), m.resolution.coarser()]
                    .into_iter()
                    .flatten()
                {
                    let mut it =
                        ctx.reader
                            .scan(&prefix, res, Timestamp(i64::MIN), Timestamp(i64::MAX))?;
                    if it.next().is_some() {
                        present = true;
                        break;
                    }
                }
                if !present {
                    continue;
                }
                for seg in &all_segments {
                    for (_, labels) in &c.exports {
                        if let Some(l) = m.matching(labels, seg, matchers) {
                            set.insert(l);
                        }
                    }
                }
            }
        }
        Ok(set.into_iter().collect())
    }

    fn refuse_series(&self, matchers: &[Matcher], n: u64) -> Error {
        let e = too_many_series(n, self.limits.max_series);
        unselective(matchers, e)
    }

    /// The estimate of one model's part of a selection.
    fn estimate(&self, m: &ModelWork, matchers: &[Matcher], grid: &Grid) -> Estimate {
        let segs = m.segments((self.segments)(&m.def.id));
        let passing = segs
            .iter()
            .filter(|s| m.segment_passes(s, matchers))
            .count() as u64;
        let windows_per_series = grid.len();
        let mut e = Estimate::default();
        for c in &m.candidates {
            let series = (c.exports.len() as u64).saturating_mul(passing);
            e.series = e.series.saturating_add(series);
            e.samples = e
                .samples
                .saturating_add(series.saturating_mul(windows_per_series));
            e.windows = e
                .windows
                .saturating_add(passing.saturating_mul(windows_per_series));
        }
        e
    }

    fn check_estimate(&self, e: Estimate, instants: usize, matchers: &[Matcher]) -> Result<()> {
        let l = &self.limits;
        let refuse = |err: Error| Err(unselective(matchers, err));
        if e.windows > l.max_windows {
            return refuse(Error::TooLarge(format!(
                "the selection would read about {} stored windows ({} series over the time range); the limit is {} (add matchers — a metric name, model=\"…\", feature=\"…\" or a segment label — or shorten the time range)",
                e.windows, e.series, l.max_windows
            )));
        }
        match check_selection(
            l,
            usize::try_from(e.series).unwrap_or(usize::MAX),
            instants,
            e.samples,
        ) {
            Ok(()) => Ok(()),
            Err(err) => refuse(err),
        }
    }

    /// Every series `matchers` select, with one sample per closed window whose end lies in
    /// `[start_ms, end_ms]`, for `instants` instants per series (0: raw samples only).
    fn select_windows(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        instants: usize,
        budget: &Budget,
    ) -> Result<Selection> {
        under_budget(budget, || {
            self.select_under_budget(matchers, start_ms, end_ms, instants, budget)
        })
    }

    fn select_under_budget(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        instants: usize,
        budget: &Budget,
    ) -> Result<Selection> {
        let ctx = self.ctx;
        let limits = &self.limits;
        let models = plan(ctx, matchers, budget)?;
        // Estimate everything before reading anything.
        let mut grids = Vec::with_capacity(models.len());
        let mut total = Estimate::default();
        for m in &models {
            let grid = Grid::new(
                start_ms,
                end_ms,
                ctx.now,
                self.retention_floor,
                m.resolution,
                m.grace_ms,
                ctx.reader.downsampled_before(m.resolution),
            );
            let e = self.estimate(m, matchers, &grid);
            total.series = total.series.saturating_add(e.series);
            total.samples = total.samples.saturating_add(e.samples);
            total.windows = total.windows.saturating_add(e.windows);
            self.check_estimate(total, instants, matchers)?;
            grids.push(grid);
        }
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut stats = ExecStats::default();
        let mut samples = 0usize;
        for (model, grid) in models.iter().zip(grids) {
            budget.check()?;
            if grid.len() == 0 {
                continue;
            }
            // Whole profiles (with sketches) only when an export reads the reference's CDF.
            let sketches = model.candidates.iter().any(|c| {
                c.exports.iter().any(|(i, _)| {
                    EXPORTS
                        .get(*i)
                        .is_none_or(|e| driftdb_query::metrics::needs_sketch_named(e.metric))
                })
            });
            let references: BTreeMap<&str, Option<Arc<ReferenceProfile>>> = model
                .candidates
                .iter()
                .map(|c| {
                    let r = if sketches {
                        ctx.catalog
                            .reference_with_sketches(&model.def.id, &c.version)
                    } else {
                        ctx.catalog.reference(&model.def.id, &c.version)
                    };
                    (c.version.as_str(), r)
                })
                .collect();
            let per_pass = limits.windows_per_pass.max(1);
            let mut ranges = grid.ranges().peekable();
            while ranges.peek().is_some() {
                budget.check()?;
                let intervals = Intervals(ranges.by_ref().take(per_pass).collect());
                let parts = par_chunks(&model.candidates, |chunk| {
                    self.read_chunk(model, chunk, &intervals, &references, matchers, budget)
                })?;
                budget.check()?;
                for (found, st) in parts {
                    stats.add(&st);
                    for (labels, points) in found {
                        samples += points.len();
                        if samples > limits.max_samples {
                            return Err(too_many_samples(limits.max_samples));
                        }
                        out.entry(labels).or_default().extend(points);
                        if out.len() > limits.max_series {
                            return Err(too_many_series(out.len() as u64, limits.max_series));
                        }
                    }
                }
            }
        }
        Ok(Selection {
            series: out
                .into_iter()
                .map(|(labels, samples)| Series { labels, samples })
                .collect(),
            stats: ReadStats {
                windows_read: stats.windows_read,
                corrupt_skipped: stats.corrupt_skipped,
                merge_errors: stats.merge_errors,
            },
        })
    }

    /// Reads one pass of windows for a chunk of a model's candidates and computes their
    /// samples.
    #[allow(clippy::type_complexity)]
    fn read_chunk(
        &self,
        model: &ModelWork,
        chunk: &[Candidate],
        intervals: &Intervals,
        references: &BTreeMap<&str, Option<Arc<ReferenceProfile>>>,
        matchers: &[Matcher],
        budget: &Budget,
    ) -> driftdb_query::Result<(Vec<(Labels, Vec<(i64, f64)>)>, ExecStats)> {
        let mut st = ExecStats::default();
        let mut found: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
        for c in chunk {
            if budget.exhausted() {
                // The caller turns this into the budget's error.
                break;
            }
            let prefix = SeriesPrefix::Feature {
                model: model.def.id.clone(),
                version: c.version.clone(),
                feature: c.feature.clone(),
            };
            // Checked once per series the scan meets: a spent budget skips the rest.
            let keep = |_: &FeatureRef, seg: &Segment| {
                !budget.exhausted()
                    && c.exports
                        .iter()
                        .any(|(_, l)| model.matching(l, seg, matchers).is_some())
            };
            let mut acc = accumulate(
                self.ctx.reader,
                &prefix,
                model.resolution,
                intervals,
                &keep,
                &mut st,
            )?;
            let Some(by_segment) = acc.remove(&c.feature) else {
                continue;
            };
            let reference = references
                .get(c.version.as_str())
                .and_then(|r| r.as_deref());
            for (segment, slots) in by_segment {
                if budget.exhausted() {
                    break;
                }
                let edges = edges_of(reference, &c.feature, &segment);
                let base = reference_base(reference, &c.feature, &segment);
                for (i, overall) in &c.exports {
                    let Some(labels) = model.matching(overall, &segment, matchers) else {
                        continue;
                    };
                    let e = &EXPORTS[*i];
                    let Some(def) = lookup(e.metric) else {
                        continue;
                    };
                    let metric = Metric {
                        def,
                        param: e.param.map(|p| p.x),
                    };
                    let mut points = Vec::new();
                    for (slot, iv) in slots.iter().zip(&intervals.0) {
                        let Some(state) = slot else { continue };
                        if let Some(v) = evaluate(&metric, state, base, edges)?
                            && let Some(x) = v.value.filter(|x| x.is_finite())
                        {
                            points.push((iv.to.0, x));
                        }
                    }
                    if !points.is_empty() {
                        found.push((labels, points));
                    }
                }
            }
        }
        Ok((found, st))
    }
}

/// `budget` as the query crate's budget, which `driftdb_query::exec::accumulate` checks every
/// few hundred windows it scans: installed around a read, it stops a scan inside a series, not
/// only between series.
fn query_budget(budget: &Budget) -> driftdb_query::budget::Budget {
    let b = match budget.deadline() {
        Some(d) => driftdb_query::budget::Budget::with_timeout(
            d.saturating_duration_since(std::time::Instant::now()),
        ),
        None => driftdb_query::budget::Budget::default(),
    };
    b.cancelled_by(budget.cancel_flag())
}

/// Runs a read under `budget` (see [`query_budget`]); a query-crate timeout or cancellation
/// comes back as this crate's [`Error::Timeout`] or [`Error::Cancelled`].
fn under_budget<T>(budget: &Budget, read: impl FnOnce() -> Result<T>) -> Result<T> {
    query_budget(budget).run(read).map_err(|e| match e.kind() {
        driftdb_engine::ErrorKind::DeadlineExceeded | driftdb_engine::ErrorKind::Cancelled => {
            budget.check().err().unwrap_or(e)
        }
        _ => e,
    })
}

/// Adds to a too-large error, for matchers that would select every series, what makes them
/// selective.
fn unselective(matchers: &[Matcher], e: Error) -> Error {
    match (check_selective(matchers), e) {
        (Err(_), Error::TooLarge(msg)) => Error::TooLarge(format!(
            "the matchers select every series of every model ({}): {msg}",
            if matchers.is_empty() {
                "there are none".to_string()
            } else {
                matchers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )),
        (_, e) => e,
    }
}

#[cfg(test)]
mod tests;
