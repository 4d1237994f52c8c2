//! The planner: resolves a parsed statement against the catalog (model, version, features,
//! segments, time range, buckets, baseline) into a [`Plan`] of operators that `exec` runs.
//!
//! Every name is checked here, so a query that plans never fails for a bad name later; errors
//! point at the part of the query they are about.

use std::sync::Arc;

use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::SeriesReader;

use crate::ast::{
    Baseline, Call, Cond, EqOp, FeatureSel, Having, ModelRef, Query, RangeSpec, Spanned, Statement,
    Target, TimeExpr, Top,
};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::metrics::{Applies, Family, Metric, lookup};

/// Most buckets (time steps) one query may produce per series.
pub const MAX_BUCKETS: usize = 20_000;
/// The range used when a query names none.
pub const DEFAULT_RANGE_MS: i64 = 3_600_000;

/// What a query runs against.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Sketch storage.
    pub reader: &'a (dyn SeriesReader + Sync),
    /// Models and references.
    pub catalog: &'a dyn Catalog,
    /// "now" for `over D` and `now-D`.
    pub now: Timestamp,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("now", &self.now).finish()
    }
}

/// A model version with what the planner resolved about it.
#[derive(Debug, Clone)]
pub struct ModelScope {
    /// The definition.
    pub def: ModelDef,
    /// Window resolution.
    pub resolution: Resolution,
    /// The version queried.
    pub version: String,
    /// Its reference profile, if one was loaded.
    pub reference: Option<Arc<ReferenceProfile>>,
}

impl ModelScope {
    /// Every input feature's series, then `$score`: what drift summaries and `explain` read.
    pub fn input_and_score_series(&self) -> Vec<FeatureRef> {
        self.def
            .features
            .keys()
            .map(|f| FeatureRef::Named(f.clone()))
            .chain([FeatureRef::Score])
            .collect()
    }
}

/// A half-open time range `[from, to)` of window starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First window start included.
    pub from: Timestamp,
    /// Window starts must be before this.
    pub to: Timestamp,
}

impl TimeRange {
    /// Width in milliseconds.
    pub fn len_ms(&self) -> i64 {
        self.to.0 - self.from.0
    }

    /// Shifted `ms` into the past.
    pub fn shifted_back(&self, ms: i64) -> TimeRange {
        TimeRange {
            from: Timestamp(self.from.0 - ms),
            to: Timestamp(self.to.0 - ms),
        }
    }

    /// Whether `t` is inside.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }
}

impl std::fmt::Display for TimeRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {})", self.from.to_rfc3339(), self.to.to_rfc3339())
    }
}

/// Which segments a query reads, and the segment columns of its result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SegmentSel {
    /// Segment keys grouped by, in column order; empty means the overall segment `all`.
    pub keys: Vec<String>,
    /// `where` conditions, each on one of `keys`.
    pub filters: Vec<(String, EqOp, String)>,
}

impl SegmentSel {
    /// Whether the query reads this segment.
    pub fn matches(&self, seg: &Segment) -> bool {
        match seg {
            Segment::All => self.keys.is_empty(),
            Segment::Value { key, value } => {
                self.keys.iter().any(|k| k == key)
                    && self.filters.iter().all(|(k, op, v)| {
                        k != key
                            || match op {
                                EqOp::Eq => v == value,
                                EqOp::Ne => v != value,
                            }
                    })
            }
        }
    }

    fn describe(&self) -> String {
        if self.keys.is_empty() {
            return "all".to_string();
        }
        let mut s = format!("by {}", self.keys.join(", "));
        for (k, op, v) in &self.filters {
            let op = if *op == EqOp::Eq { "=" } else { "!=" };
            s.push_str(&format!(" where {k} {op} {v:?}"));
        }
        s
    }
}

/// The baseline, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum BaselinePlan {
    /// The version's reference profile.
    Reference,
    /// Each bucket against the interval of equal length just before it.
    Previous,
    /// Each bucket against itself shifted this many ms into the past.
    Offset(i64),
    /// Every bucket against one fixed range.
    Range(TimeRange),
    /// Each bucket against the same bucket of another version.
    Version(String),
}

impl BaselinePlan {
    /// The baseline interval of a bucket, for window baselines of the same version.
    pub fn interval(&self, bucket: TimeRange) -> Option<TimeRange> {
        match self {
            BaselinePlan::Reference => None,
            BaselinePlan::Previous => Some(bucket.shifted_back(bucket.len_ms())),
            BaselinePlan::Offset(ms) => Some(bucket.shifted_back(*ms)),
            BaselinePlan::Range(r) => Some(*r),
            BaselinePlan::Version(_) => Some(bucket),
        }
    }
}

impl std::fmt::Display for BaselinePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaselinePlan::Reference => f.write_str("reference"),
            BaselinePlan::Previous => f.write_str("previous"),
            BaselinePlan::Offset(ms) => write!(f, "offset {}", fmt_ms(*ms)),
            BaselinePlan::Range(r) => write!(f, "range {r}"),
            BaselinePlan::Version(v) => write!(f, "version {v}"),
        }
    }
}

/// A duration in the largest unit that divides it.
pub fn fmt_ms(ms: i64) -> String {
    for (unit, w) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms != 0 && ms % w == 0 {
            return format!("{}{unit}", ms / w);
        }
    }
    format!("{ms}ms")
}

/// A metric over series, bucketed in time: the plan of every `METRIC(...)`, `quantile(...)`
/// and `ndcg(...)` query.
#[derive(Debug, Clone)]
pub struct SelectPlan {
    /// The model version.
    pub scope: ModelScope,
    /// The series measured, in output order.
    pub features: Vec<FeatureRef>,
    /// Whether the features came from a pattern (then series the metric does not apply to are
    /// skipped instead of being an error).
    pub pattern: bool,
    /// The metric.
    pub metric: Metric,
    /// Segments read and the segment columns.
    pub segments: SegmentSel,
    /// The range.
    pub range: TimeRange,
    /// Step width in ms; `None` merges the whole range.
    pub step: Option<i64>,
    /// The baseline.
    pub baseline: BaselinePlan,
    /// `having`.
    pub having: Option<Having>,
    /// `top` / `bottom`.
    pub top: Option<Top>,
}

impl SelectPlan {
    /// How many buckets [`SelectPlan::buckets`] makes, computed without making them.
    pub fn bucket_count(&self) -> u64 {
        bucket_count(self.range, self.step)
    }

    /// The buckets of the range: aligned to the step (from the epoch), clipped to the range.
    pub fn buckets(&self) -> Vec<TimeRange> {
        match self.step {
            None => vec![self.range],
            Some(step) => {
                let mut out = Vec::new();
                let mut b = self.range.from.0.div_euclid(step) * step;
                while b < self.range.to.0 {
                    out.push(TimeRange {
                        from: Timestamp(b.max(self.range.from.0)),
                        to: Timestamp((b + step).min(self.range.to.0)),
                    });
                    b += step;
                }
                out
            }
        }
    }
}

/// The number of step-aligned buckets of `range` (1 without a step), in u64 so no range
/// overflows it.
pub fn bucket_count(range: TimeRange, step: Option<i64>) -> u64 {
    match step {
        None => 1,
        Some(step) if step > 0 && range.to.0 > range.from.0 => {
            let first = i128::from(range.from.0).div_euclid(i128::from(step));
            // The last bucket starts before `to`.
            let last = (i128::from(range.to.0) - 1).div_euclid(i128::from(step));
            u64::try_from(last - first + 1).unwrap_or(u64::MAX)
        }
        Some(_) => 0,
    }
}

/// `explain(model) over ...`.
#[derive(Debug, Clone)]
pub struct ExplainPlan {
    /// The model version.
    pub scope: ModelScope,
    /// The range examined.
    pub range: TimeRange,
}

/// `uplift(metric, challenger, champion) over ... [by ...]`.
#[derive(Debug, Clone)]
pub struct UpliftPlan {
    /// The metric compared (a performance metric).
    pub metric: Metric,
    /// The challenger.
    pub challenger: ModelScope,
    /// The champion.
    pub champion: ModelScope,
    /// Segments compared.
    pub segments: SegmentSel,
    /// The range.
    pub range: TimeRange,
    /// Width of the windows whose deltas measure stability.
    pub step: i64,
}

/// A planned query.
#[derive(Debug, Clone)]
pub enum Plan {
    /// A metric over series.
    Select(SelectPlan),
    /// Root-cause ranking.
    Explain(ExplainPlan),
    /// Champion–challenger comparison.
    Uplift(UpliftPlan),
}

impl Plan {
    /// The operator tree, one operator per line, children indented.
    pub fn describe(&self) -> Vec<String> {
        let mut ops: Vec<String> = Vec::new();
        match self {
            Plan::Select(p) => {
                let mut cols = vec![
                    "time".to_string(),
                    "model".into(),
                    "version".into(),
                    "feature".into(),
                ];
                if p.step.is_none() {
                    cols.remove(0);
                }
                cols.extend(p.segments.keys.iter().cloned());
                cols.extend(["metric", "value", "n", "baseline_n"].map(String::from));
                if p.metric.def.has_p {
                    cols.push("p".into());
                }
                if crate::metrics::is_estimated(p.metric.def) {
                    cols.push("stderr".into());
                }
                ops.push(format!("ProjectionExec: columns=[{}]", cols.join(", ")));
                if let Some(t) = &p.top {
                    ops.push(format!(
                        "TopExec: {} {} by value{}",
                        if t.bottom { "bottom" } else { "top" },
                        t.n,
                        if p.step.is_some() { " per bucket" } else { "" }
                    ));
                }
                if let Some(h) = &p.having {
                    let f = match h.field {
                        crate::ast::HavingField::Value => "value",
                        crate::ast::HavingField::P => "p",
                    };
                    ops.push(format!("FilterExec: {f} {} {}", h.op.symbol(), h.threshold));
                }
                ops.push(format!(
                    "MetricExec: metric={} family={:?}",
                    p.metric.label(),
                    p.metric.def.family
                ));
                if p.metric.def.family != Family::Performance
                    || p.baseline != BaselinePlan::Reference
                {
                    let src = match &p.baseline {
                        BaselinePlan::Reference => format!(
                            "reference profile of {}@{}{}",
                            p.scope.def.id,
                            p.scope.version,
                            if p.scope.reference.is_some() {
                                ""
                            } else {
                                " (missing)"
                            }
                        ),
                        other => format!("{other}: windows merged per bucket"),
                    };
                    ops.push(format!("BaselineExec: {src}"));
                }
                let buckets = p.buckets().len();
                ops.push(format!(
                    "MergeExec: {} bucket{}{}",
                    buckets,
                    if buckets == 1 { "" } else { "s" },
                    p.step
                        .map(|s| format!(" of {}", fmt_ms(s)))
                        .unwrap_or_default()
                ));
                let names: Vec<String> =
                    p.features.iter().take(5).map(ToString::to_string).collect();
                if crate::importance::is_importance(p.metric.def) {
                    // Importance reads every feature's attributions, whatever is selected.
                    ops.push(format!(
                        "SeriesScanExec: model={} version={} features=$attr:* ({} features) segments={} resolution={} range={}",
                        p.scope.def.id,
                        p.scope.version,
                        p.scope.def.features.len(),
                        p.segments.describe(),
                        fmt_ms(p.scope.resolution.width_ms()),
                        p.range
                    ));
                    return indent(ops);
                }
                ops.push(format!(
                    "SeriesScanExec: model={} version={} features={} [{}{}] segments={} resolution={} range={}",
                    p.scope.def.id,
                    p.scope.version,
                    p.features.len(),
                    names.join(", "),
                    if p.features.len() > 5 { ", ..." } else { "" },
                    p.segments.describe(),
                    fmt_ms(p.scope.resolution.width_ms()),
                    p.range
                ));
            }
            Plan::Explain(p) => {
                ops.push("ExplainExec: rank (feature, segment) by drift contribution; segments by performance drop; silent-failure signals".into());
                ops.push(format!(
                    "BaselineExec: reference profile of {}@{}",
                    p.scope.def.id, p.scope.version
                ));
                ops.push("MergeExec: 1 bucket".into());
                ops.push(format!(
                    "SeriesScanExec: model={} version={} features=all segments=all resolution={} range={}",
                    p.scope.def.id,
                    p.scope.version,
                    fmt_ms(p.scope.resolution.width_ms()),
                    p.range
                ));
            }
            Plan::Uplift(p) => {
                ops.push(format!(
                    "UpliftExec: metric={} challenger={}@{} champion={}@{} stability windows={}",
                    p.metric.label(),
                    p.challenger.def.id,
                    p.challenger.version,
                    p.champion.def.id,
                    p.champion.version,
                    fmt_ms(p.step)
                ));
                for s in [&p.challenger, &p.champion] {
                    ops.push(format!(
                        "SeriesScanExec: model={} version={} features=[$score] segments={} range={}",
                        s.def.id,
                        s.version,
                        p.segments.describe(),
                        p.range
                    ));
                }
            }
        }
        indent(ops)
    }
}

/// One operator per line, each child indented under its parent.
fn indent(ops: Vec<String>) -> Vec<String> {
    let n = ops.len();
    ops.iter()
        .enumerate()
        .map(|(i, op)| format!("{}{op}", "  ".repeat(i.min(n))))
        .collect()
}

/// Plans a parsed statement.
pub fn plan(ctx: &Context<'_>, stmt: &Statement) -> Result<Plan> {
    let q = &stmt.query;
    match &q.call {
        Call::Metric {
            name,
            target,
            baseline,
        } => plan_select(ctx, q, name, None, target, baseline.as_ref()),
        Call::Quantile { q: level, target } => {
            let name = Spanned {
                value: "quantile".to_string(),
                pos: level.pos,
            };
            plan_select(ctx, q, &name, Some(level.value), target, None)
        }
        Call::Ndcg { k, target } => {
            if k.value == 0 || k.value > 20 {
                return Err(Error::plan(
                    k.pos,
                    format!("ndcg's K must be 1..=20, got {}", k.value),
                ));
            }
            let name = Spanned {
                value: "ndcg".to_string(),
                pos: k.pos,
            };
            plan_select(ctx, q, &name, Some(k.value as f64), target, None)
        }
        Call::Explain { model } => {
            no_clauses(q, "explain", false)?;
            let scope = resolve_model(ctx, model)?;
            let range = resolve_range(ctx, q.range.as_ref(), scope.resolution)?;
            Ok(Plan::Explain(ExplainPlan { scope, range }))
        }
        Call::Uplift {
            metric,
            challenger,
            champion,
        } => {
            no_clauses(q, "uplift", true)?;
            let def = lookup(&metric.value).ok_or_else(|| unknown_metric(metric))?;
            if def.family != Family::Performance {
                return Err(Error::plan(
                    metric.pos,
                    format!(
                        "uplift compares labelled performance; {} is a {:?} metric (try auc, ece, logloss, rmse, ndcg, ctr)",
                        def.name, def.family
                    ),
                ));
            }
            if crate::metrics::is_estimated(def) {
                return Err(Error::plan(
                    metric.pos,
                    format!(
                        "uplift compares labelled performance; {} is estimated without labels (compare {} instead)",
                        def.name,
                        &def.name["estimated_".len()..]
                    ),
                ));
            }
            if def.name == "ndcg" {
                return Err(Error::plan(
                    metric.pos,
                    "uplift of ndcg compares NDCG@10; write uplift(ndcg, ...) is not supported yet, use ctr or rpm",
                ));
            }
            let ch = resolve_model(ctx, challenger)?;
            let cp = resolve_model(ctx, champion)?;
            if ch.def.id == cp.def.id && ch.version == cp.version {
                return Err(Error::plan(
                    champion.pos,
                    "challenger and champion are the same model version",
                ));
            }
            let range = resolve_range(ctx, q.range.as_ref(), ch.resolution)?;
            let segments = resolve_segments(&ch.def, q)?;
            let res = ch.resolution.width_ms().max(cp.resolution.width_ms());
            let step = match &q.step {
                Some(s) => check_step(s, res)?,
                None if range.len_ms() >= 2 * 86_400_000 => 86_400_000,
                None => res.max(3_600_000),
            };
            let buckets = bucket_count(range, Some(step));
            if buckets > MAX_BUCKETS as u64 {
                return Err(Error::TooLarge(format!(
                    "{buckets} buckets per series (limit {MAX_BUCKETS}); use a larger step or a shorter range"
                )));
            }
            Ok(Plan::Uplift(UpliftPlan {
                metric: Metric { def, param: None },
                challenger: ch,
                champion: cp,
                segments,
                range,
                step,
            }))
        }
    }
}

fn no_clauses(q: &Query, what: &str, allow_by: bool) -> Result<()> {
    if !allow_by {
        if let Some(b) = q.by.first() {
            return Err(Error::plan(
                b.pos,
                format!("{what} examines every segment itself; drop `by`"),
            ));
        }
        if let Some(c) = q.filters.first() {
            return Err(Error::plan(
                c.key.pos,
                format!("{what} examines every segment itself; drop `where`"),
            ));
        }
        if let Some(s) = &q.step {
            return Err(Error::plan(s.pos, format!("{what} takes no `step`")));
        }
    }
    if let Some(h) = &q.having {
        return Err(Error::plan(h.pos, format!("{what} takes no `having`")));
    }
    if let Some(t) = &q.top {
        return Err(Error::plan(
            t.pos,
            format!("{what} takes no `top`/`bottom`"),
        ));
    }
    Ok(())
}

fn unknown_metric(name: &Spanned<String>) -> Error {
    let names: Vec<&str> = crate::metrics::METRICS.iter().map(|m| m.name).collect();
    Error::plan(
        name.pos,
        format!(
            "unknown metric {:?}; known: {}",
            name.value,
            names.join(", ")
        ),
    )
}

fn plan_select(
    ctx: &Context<'_>,
    q: &Query,
    name: &Spanned<String>,
    param: Option<f64>,
    target: &Target,
    baseline: Option<&Spanned<Baseline>>,
) -> Result<Plan> {
    let def = lookup(&name.value).ok_or_else(|| unknown_metric(name))?;
    if def.name == "quantile" && param.is_none() {
        return Err(Error::plan(
            name.pos,
            "write quantile(q, model.feature), e.g. quantile(0.99, ctr.$latency)",
        ));
    }
    if def.name == "ndcg" && param.is_none() {
        return Err(Error::plan(
            name.pos,
            "write ndcg(K, model), e.g. ndcg(10, recs)",
        ));
    }
    let sketches = crate::metrics::needs_sketch(&Metric { def, param });
    let scope = resolve_model_for(ctx, &target.model, sketches)?;
    let (features, pattern) = if def.name == "importance_drift" {
        if let Some(sel) = &target.feature {
            return Err(Error::plan(
                sel.pos,
                format!(
                    "importance_drift compares the whole importance vector; write importance_drift({})",
                    scope.def.id
                ),
            ));
        }
        (Vec::new(), false)
    } else {
        resolve_features(&scope, def, target)?
    };
    if crate::importance::is_importance(def)
        && let Some(b) = baseline
        && b.value != Baseline::Reference
    {
        return Err(Error::plan(
            b.pos,
            format!(
                "{} compares with the reference profile's attributions; drop `vs`",
                def.name
            ),
        ));
    }
    let range = resolve_range(ctx, q.range.as_ref(), scope.resolution)?;
    let step = q
        .step
        .as_ref()
        .map(|s| check_step(s, scope.resolution.width_ms()))
        .transpose()?;
    let segments = resolve_segments(&scope.def, q)?;
    let baseline = match baseline {
        None => BaselinePlan::Reference,
        Some(b) => {
            if def.family != Family::Drift && def.family != Family::Summary {
                // Performance metrics are absolute; a baseline only sets baseline_n.
            }
            match &b.value {
                Baseline::Reference => BaselinePlan::Reference,
                Baseline::Previous => BaselinePlan::Previous,
                Baseline::Offset(d) => BaselinePlan::Offset(d.millis()),
                Baseline::Range(a, z) => {
                    let from = scope.resolution.window_start(time(ctx, *a));
                    let to = time(ctx, *z);
                    if from >= to {
                        return Err(Error::plan(
                            b.pos,
                            "baseline range is empty: its start must be before its end",
                        ));
                    }
                    BaselinePlan::Range(TimeRange { from, to })
                }
                Baseline::Version(v) => {
                    if *v == scope.version {
                        return Err(Error::plan(
                            b.pos,
                            format!("baseline version {v} is the version being queried"),
                        ));
                    }
                    BaselinePlan::Version(v.clone())
                }
            }
        }
    };
    if let Some(h) = &q.having
        && h.field == crate::ast::HavingField::P
        && !def.has_p
    {
        return Err(Error::plan(
            h.pos,
            format!(
                "{} has no p-value; `having p` works with ks and chi2",
                def.name
            ),
        ));
    }
    let plan = SelectPlan {
        scope,
        features,
        pattern,
        metric: Metric { def, param },
        segments,
        range,
        step,
        baseline,
        having: q.having,
        top: q.top,
    };
    // Counted, not built: a range of centuries stepped by minutes must be refused before a
    // bucket is allocated.
    let buckets = plan.bucket_count();
    if buckets > MAX_BUCKETS as u64 {
        return Err(Error::TooLarge(format!(
            "{buckets} buckets per series (limit {MAX_BUCKETS}); use a larger step or a shorter range"
        )));
    }
    Ok(Plan::Select(plan))
}

fn check_step(s: &Spanned<driftdb_engine::time::DurationMs>, width: i64) -> Result<i64> {
    let ms = s.value.millis();
    if ms < width || ms % width != 0 {
        return Err(Error::plan(
            s.pos,
            format!(
                "step {} must be a multiple of the model's {} windows",
                fmt_ms(ms),
                fmt_ms(width)
            ),
        ));
    }
    Ok(ms)
}

/// Resolves `model[@version]`: an unversioned model means the version whose reference profile
/// was loaded last, or, without any reference, the greatest version name holding data.
pub fn resolve_model(ctx: &Context<'_>, m: &ModelRef) -> Result<ModelScope> {
    resolve_model_for(ctx, m, true)
}

/// [`resolve_model`], with the reference profile's sketches only when `sketches` (the
/// metric reads the reference's CDF; [`crate::metrics::needs_sketch`]).
pub fn resolve_model_for(ctx: &Context<'_>, m: &ModelRef, sketches: bool) -> Result<ModelScope> {
    let def = ctx.catalog.model(&m.id).ok_or_else(|| Error::NotFound {
        pos: Some(m.pos),
        what: "model",
        name: m.id.clone(),
        hint: hint_names(&ctx.catalog.model_ids()),
    })?;
    let resolution = def.validate()?;
    let version = match &m.version {
        Some(v) => v.clone(),
        None => {
            let refs: Vec<Arc<ReferenceProfile>> = ctx
                .catalog
                .reference_versions(&m.id)
                .iter()
                .filter_map(|v| ctx.catalog.reference(&m.id, v))
                .collect();
            match refs
                .iter()
                .max_by_key(|r| (r.created_at, r.version.clone()))
            {
                Some(r) => r.version.clone(),
                None => ctx
                    .reader
                    .series(&m.id, None)?
                    .into_iter()
                    .map(|s| s.version)
                    .max()
                    .ok_or_else(|| Error::NotFound {
                        pos: Some(m.pos),
                        what: "data for model",
                        name: m.id.clone(),
                        hint: ": no reference profile and no windows stored yet".into(),
                    })?,
            }
        }
    };
    let reference = if sketches {
        ctx.catalog.reference_with_sketches(&m.id, &version)
    } else {
        ctx.catalog.reference(&m.id, &version)
    };
    Ok(ModelScope {
        def,
        resolution,
        version,
        reference,
    })
}

fn hint_names(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = names.iter().take(20).map(String::as_str).collect();
    format!(
        "; known: {}{}",
        shown.join(", "),
        if names.len() > 20 { ", ..." } else { "" }
    )
}

/// DriftQL's feature patterns are the rules' globs (`*` any run, `?` one character).
fn glob(pattern: &str, name: &str) -> bool {
    driftdb_engine::rules::glob_match(pattern, name)
}

fn kind_applies(applies: Applies, kind: FeatureKind) -> bool {
    match applies {
        Applies::Any => true,
        Applies::Numeric => kind == FeatureKind::Numeric,
        Applies::Categorical => kind == FeatureKind::Categorical,
        Applies::Score | Applies::Cost => false,
    }
}

fn resolve_features(
    scope: &ModelScope,
    def: &crate::metrics::MetricDef,
    target: &Target,
) -> Result<(Vec<FeatureRef>, bool)> {
    let model = &scope.def;
    if def.applies == Applies::Cost {
        return match target.feature.as_ref().map(|s| (&s.value, s.pos)) {
            None | Some((FeatureSel::Cost, _)) => Ok((vec![FeatureRef::Cost], false)),
            Some((_, pos)) => Err(Error::plan(
                pos,
                format!(
                    "{} applies to the events' $cost; write {m} or {m}.$cost",
                    def.name,
                    m = model.id
                ),
            )),
        };
    }
    if def.name == "importance"
        && let Some(sel) = &target.feature
        && !matches!(sel.value, FeatureSel::All | FeatureSel::Name(_))
    {
        return Err(Error::plan(
            sel.pos,
            format!(
                "importance is an input feature's share of the attributions; write {m}.* or {m}.<feature>",
                m = model.id
            ),
        ));
    }
    let Some(sel) = &target.feature else {
        return if def.family == Family::Performance {
            Ok((vec![FeatureRef::Score], false))
        } else {
            Err(Error::plan(
                target.model.pos,
                format!(
                    "{} needs a feature: write {m}.<feature>, {m}.* or {m}.$score",
                    def.name,
                    m = model.id
                ),
            ))
        };
    };
    if def.family == Family::Performance && sel.value != FeatureSel::Score {
        return Err(Error::plan(
            sel.pos,
            format!(
                "{} is labelled performance of the prediction; write {m} or {m}.$score",
                def.name,
                m = model.id
            ),
        ));
    }
    let named = |pattern: &str| -> Vec<FeatureRef> {
        model
            .features
            .iter()
            .filter(|(n, k)| glob(pattern, n) && kind_applies(def.applies, **k))
            .map(|(n, _)| FeatureRef::Named(n.clone()))
            .collect()
    };
    match &sel.value {
        FeatureSel::Score => Ok((vec![FeatureRef::Score], false)),
        FeatureSel::Latency | FeatureSel::Label | FeatureSel::Cost
            if def.applies == Applies::Score =>
        {
            Err(Error::plan(
                sel.pos,
                format!("{} applies to $score", def.name),
            ))
        }
        FeatureSel::Latency | FeatureSel::Cost => {
            let f = if sel.value == FeatureSel::Cost {
                FeatureRef::Cost
            } else {
                FeatureRef::Latency
            };
            if def.applies == Applies::Categorical {
                return Err(Error::plan(
                    sel.pos,
                    format!("{} applies to categorical series; {f} is numeric", def.name),
                ));
            }
            Ok((vec![f], false))
        }
        FeatureSel::Label => Ok((vec![FeatureRef::Label], false)),
        FeatureSel::Items => {
            if model.task != Task::Ranking {
                return Err(Error::plan(
                    sel.pos,
                    format!(
                        "$items are the item ids a ranking model served; model {} is not a ranking model",
                        model.id
                    ),
                ));
            }
            if def.applies == Applies::Score {
                return Err(Error::plan(
                    sel.pos,
                    format!("{} applies to $score", def.name),
                ));
            }
            if def.applies == Applies::Numeric {
                return Err(Error::plan(
                    sel.pos,
                    format!(
                        "{} applies to numeric series; $items is categorical (try distinct, count, psi, chi2, unseen_share)",
                        def.name
                    ),
                ));
            }
            Ok((vec![FeatureRef::Items], false))
        }
        FeatureSel::All => {
            if def.applies == Applies::Score {
                return Err(Error::plan(
                    sel.pos,
                    format!("{} applies to $score", def.name),
                ));
            }
            let f = named("*");
            if f.is_empty() {
                return Err(Error::plan(
                    sel.pos,
                    format!("model {} has no feature {} applies to", model.id, def.name),
                ));
            }
            Ok((f, true))
        }
        FeatureSel::Name(n) if n.contains('*') => {
            let f = named(n);
            if f.is_empty() {
                return Err(Error::NotFound {
                    pos: Some(sel.pos),
                    what: "feature matching",
                    name: n.clone(),
                    hint: format!(" (among those {} applies to)", def.name),
                });
            }
            Ok((f, true))
        }
        FeatureSel::Name(n) => {
            let Some(kind) = model.features.get(n) else {
                let names: Vec<String> = model.features.keys().cloned().collect();
                return Err(Error::NotFound {
                    pos: Some(sel.pos),
                    what: "feature",
                    name: n.clone(),
                    hint: hint_names(&names),
                });
            };
            if !kind_applies(def.applies, *kind) {
                let alt = match kind {
                    FeatureKind::Categorical => "chi2, psi, js, linf",
                    FeatureKind::Numeric => "ks, psi, js, wasserstein",
                };
                let kind_name = match kind {
                    FeatureKind::Categorical => "categorical",
                    FeatureKind::Numeric => "numeric",
                };
                return Err(Error::plan(
                    sel.pos,
                    format!(
                        "{} does not apply to {kind_name} feature {n:?} (try {alt})",
                        def.name
                    ),
                ));
            }
            Ok((vec![FeatureRef::Named(n.clone())], false))
        }
    }
}

fn time(ctx: &Context<'_>, t: TimeExpr) -> Timestamp {
    match t {
        TimeExpr::At(ts) => ts,
        TimeExpr::Now { minus } => Timestamp(ctx.now.0 - minus.map_or(0, |d| d.millis())),
    }
}

/// `over D`: the last `D` of windows, the current (open) window included; `from A to B`:
/// windows starting in `[A, B)`, `A` rounded down to a window start. Default: `over 1h`.
pub fn resolve_range(
    ctx: &Context<'_>,
    spec: Option<&Spanned<RangeSpec>>,
    res: Resolution,
) -> Result<TimeRange> {
    let width = res.width_ms();
    match spec.map(|s| (&s.value, s.pos)) {
        None => {
            let to = Timestamp(res.window_start(ctx.now).0 + width);
            Ok(TimeRange {
                from: res.window_start(Timestamp(to.0 - DEFAULT_RANGE_MS)),
                to,
            })
        }
        Some((RangeSpec::Over(d), _)) => {
            let to = Timestamp(res.window_start(ctx.now).0 + width);
            Ok(TimeRange {
                from: res.window_start(Timestamp(to.0 - d.millis().max(width))),
                to,
            })
        }
        Some((RangeSpec::FromTo(a, b), pos)) => {
            let from = res.window_start(time(ctx, *a));
            let to = time(ctx, *b);
            if from >= to {
                return Err(Error::plan(pos, "empty range: `from` must be before `to`"));
            }
            Ok(TimeRange { from, to })
        }
    }
}

fn resolve_segments(model: &ModelDef, q: &Query) -> Result<SegmentSel> {
    let known = |k: &Spanned<String>| -> Result<()> {
        if model.segments.iter().any(|s| s == &k.value) {
            Ok(())
        } else {
            Err(Error::NotFound {
                pos: Some(k.pos),
                what: "segment key",
                name: k.value.clone(),
                hint: if model.segments.is_empty() {
                    format!("; model {} has no segment keys", model.id)
                } else {
                    hint_names(&model.segments)
                },
            })
        }
    };
    let mut keys: Vec<String> = Vec::new();
    for k in &q.by {
        known(k)?;
        if !keys.contains(&k.value) {
            keys.push(k.value.clone());
        }
    }
    let by_given = !keys.is_empty();
    let mut filters = Vec::new();
    for Cond { key, op, value } in &q.filters {
        known(key)?;
        if by_given && !keys.contains(&key.value) {
            return Err(Error::plan(
                key.pos,
                format!(
                    "`where {}` with `by {}` would need cross segments ({} x {}), which driftdb does not keep; add {} to `by` or drop the condition",
                    key.value,
                    keys.join(", "),
                    keys.join(" x "),
                    key.value,
                    key.value
                ),
            ));
        }
        if !keys.contains(&key.value) {
            keys.push(key.value.clone());
        }
        filters.push((key.value.clone(), *op, value.clone()));
    }
    if !by_given && keys.len() > 1 {
        return Err(Error::plan(
            q.filters.get(1).map(|c| c.key.pos),
            "conditions on two segment keys would need cross segments, which driftdb does not keep; filter on one key",
        ));
    }
    Ok(SegmentSel { keys, filters })
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("txn_*", "txn_amount"));
        assert!(!glob("txn_*", "amount"));
        assert!(glob("*_s", "session_s"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abde"));
        assert!(glob("*", "x"));
        assert!(glob("amount", "amount"));
    }
}
