//! driftdb's metrics as Prometheus series (README.md): which series exist, their labels, and
//! their samples, computed on the fly from the stored window sketches.
//!
//! A series is `driftdb_<metric>{model, version, feature, <segment key>=<value>}` with one
//! sample per **closed** window, stamped at the window's **end** (the instant its value became
//! complete; a window is closed once `end + grace <= now`, grace from the model definition).
//! The overall segment has no segment label. Which metrics are exported for which series is the
//! fixed table [`EXPORTS`]; `server/PROMETHEUS_API.md` lists it.
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
//! scan meets each segment. Listing series (the series and label APIs) reads no window at all:
//! segments come from the registry's admitted values.

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

use super::matcher::{Matcher, all_match};
use crate::error::{Error, Result};

/// A series' labels, sorted by name, names unique.
pub type Labels = Vec<(String, String)>;

/// One series with its samples (`(ms, value)`, ascending time).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels, `__name__` included, sorted by name.
    pub labels: Labels,
    /// Samples in ascending time.
    pub samples: Vec<(i64, f64)>,
}

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

use On::{AnyTask, Binary, Categorical, Latency, Numeric, Ranking, Regression, Score};

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
        FeatureRef::Label | FeatureRef::Items => None,
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
                let name = self
                    .segment_labels
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or_else(|| segment_label(key), |(_, l)| l.clone());
                let mut l = labels.clone();
                l.push((name, value.clone()));
                l.sort();
                l
            }
        };
        all_match(matchers, &labels).then_some(labels)
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
fn plan(ctx: &Context<'_>, matchers: &[Matcher]) -> Result<Vec<ModelWork>> {
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
            .chain([FeatureRef::Score, FeatureRef::Latency])
            .filter(|f| passes(matchers, "feature", &f.to_string()))
            .collect();
        let mut candidates = Vec::new();
        for version in versions {
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

/// Segment values admitted per key of a model (the registry's capped sets).
pub type SegmentValues = BTreeMap<String, BTreeSet<String>>;

/// The label sets of every series `matchers` select, sorted, without reading a sketch: the
/// segments are the values the model has admitted (`segments` gives them per model id, with
/// `__other__` once a key reached its cap), and a feature counts as present in a version when
/// it holds any window within retention (one seek per version and feature). Time is ignored:
/// a series is listed when its feature holds a window anywhere in retention.
pub fn list(
    ctx: &Context<'_>,
    matchers: &[Matcher],
    segments: &dyn Fn(&str) -> SegmentValues,
) -> Result<Vec<Labels>> {
    let mut set = BTreeSet::new();
    for m in plan(ctx, matchers)? {
        let mut all_segments = vec![Segment::All];
        for (key, values) in segments(&m.def.id) {
            all_segments.extend(values.into_iter().map(|value| Segment::Value {
                key: key.clone(),
                value,
            }));
        }
        for c in &m.candidates {
            let prefix = SeriesPrefix::Feature {
                model: m.def.id.clone(),
                version: c.version.clone(),
                feature: c.feature.clone(),
            };
            let present = [Some(m.resolution), m.resolution.coarser()]
                .into_iter()
                .flatten()
                .map(|res| -> Result<bool> {
                    let mut it =
                        ctx.reader
                            .scan(&prefix, res, Timestamp(i64::MIN), Timestamp(i64::MAX))?;
                    Ok(it.next().is_some())
                })
                .collect::<Result<Vec<bool>>>()?
                .into_iter()
                .any(|p| p);
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

/// Bounds on one selection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most samples one selection may return.
    pub max_samples: usize,
    /// Windows evaluated per pass over a feature (bounds the merged states held at once).
    pub windows_per_pass: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_samples: 20_000_000,
            windows_per_pass: 2880,
        }
    }
}

/// The samples of a selection, and what reading them met.
#[derive(Debug, Default)]
pub struct Selected {
    /// Series sorted by labels; series without a sample in the range are left out.
    pub series: Vec<Series>,
    /// Windows read, corrupt windows skipped...
    pub stats: ExecStats,
}

/// Window starts whose end lies in `[start_ms, end_ms]`, closed by `now`, not past retention:
/// the first and last start, or `None` when there are none.
fn window_starts(
    start_ms: i64,
    end_ms: i64,
    now: Timestamp,
    retention_floor: Timestamp,
    width: i64,
    grace_ms: i64,
) -> Option<(i64, i64)> {
    // Clamp first: the series API may ask for ±9.2e18 ms.
    const LIMIT: i64 = i64::MAX / 4;
    let lo = start_ms
        .max(retention_floor.0.saturating_add(1))
        .max(-LIMIT);
    let hi = end_ms.min(now.0.saturating_sub(grace_ms)).min(LIMIT);
    if lo > hi {
        return None;
    }
    // end = start + width must be in [lo, hi].
    let first = (lo - width).div_euclid(width) * width;
    let first = if first + width < lo {
        first + width
    } else {
        first
    };
    let last = (hi - width).div_euclid(width) * width;
    (first <= last).then_some((first, last))
}

/// Computes every series `matchers` select, with one sample per closed window whose end lies in
/// `[start_ms, end_ms]` (inclusive, as remote read defines ranges). `retention_floor` is the
/// store's retention cutoff (nothing ends before it). Each selected (version, feature) key
/// range is scanned once, for all its segments and metrics.
pub fn select(
    ctx: &Context<'_>,
    matchers: &[Matcher],
    start_ms: i64,
    end_ms: i64,
    retention_floor: Timestamp,
    limits: Limits,
) -> Result<Selected> {
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut stats = ExecStats::default();
    let mut samples = 0usize;
    for model in plan(ctx, matchers)? {
        let width = model.resolution.width_ms();
        let Some((first, last)) = window_starts(
            start_ms,
            end_ms,
            ctx.now,
            retention_floor,
            width,
            model.grace_ms,
        ) else {
            continue;
        };
        let references: BTreeMap<&str, Option<Arc<ReferenceProfile>>> = model
            .candidates
            .iter()
            .map(|c| {
                (
                    c.version.as_str(),
                    ctx.catalog.reference(&model.def.id, &c.version),
                )
            })
            .collect();
        let per_pass = i64::try_from(limits.windows_per_pass.max(1)).unwrap_or(i64::MAX);
        let mut pass_start = first;
        while pass_start <= last {
            let pass_last = pass_start
                .saturating_add((per_pass - 1).saturating_mul(width))
                .min(last);
            let intervals = Intervals(
                (0..=(pass_last - pass_start) / width)
                    .map(|i| {
                        let s = pass_start + i * width;
                        TimeRange {
                            from: Timestamp(s),
                            to: Timestamp(s + width),
                        }
                    })
                    .collect(),
            );
            let parts = par_chunks(&model.candidates, |chunk| {
                let mut st = ExecStats::default();
                let mut found: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
                for c in chunk {
                    let prefix = SeriesPrefix::Feature {
                        model: model.def.id.clone(),
                        version: c.version.clone(),
                        feature: c.feature.clone(),
                    };
                    let keep = |_: &FeatureRef, seg: &Segment| {
                        c.exports
                            .iter()
                            .any(|(_, l)| model.matching(l, seg, matchers).is_some())
                    };
                    let mut acc = accumulate(
                        ctx.reader,
                        &prefix,
                        model.resolution,
                        &intervals,
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
            })?;
            for (found, st) in parts {
                stats.add(&st);
                for (labels, points) in found {
                    samples += points.len();
                    if samples > limits.max_samples {
                        return Err(Error::Overloaded(format!(
                            "the selection holds more than {} samples; narrow the selector or the time range",
                            limits.max_samples
                        )));
                    }
                    out.entry(labels).or_default().extend(points);
                }
            }
            pass_start = pass_last + width;
        }
    }
    Ok(Selected {
        series: out
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples })
            .collect(),
        stats,
    })
}

#[cfg(test)]
mod tests;
