//! Evaluating a model's rules on one closed window, and event announcements.
//!
//! A metric rule becomes one DriftQL query per model version over exactly the window
//! (`psi(fraud@v2.*) from S to E by region`), so rules mean what the same query means at the
//! console. Each row (feature, segment) is one series with its own [`AlertState`], stored under
//! `'S' | str(model) | str(rule) | str(version) | str(feature) | str(segment)`; only states whose
//! decision-relevant fields changed are written back (a healthy series that stays healthy
//! costs no write).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::{ReferenceProfile, SeriesProfile};
use driftdb_engine::rules::{
    Alert, AlertState, AlertStatus, AlertTarget, Anomaly, BaselineStats, MetricFamily, MetricRule,
    MetricSpec, RuleKind, SegmentScope, Selector, freshness_age_days,
};
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::time::{DurationMs, Timestamp};
use driftdb_query::metrics::{BaseRef, Metric, evaluate, lookup, reference_performance};
use driftdb_query::{Cell, Context};
use driftdb_storage::layout::{self, KeyReader, KeyWriter};
use driftdb_storage::{Family, WriteSet};

use super::Rules;
use super::book::StoredRule;
use super::log::{NewAlert, event_fired_key};
use crate::error::{Error, Result};
use crate::query::{model_ref, name};
use crate::records::{self, RecordKind, alerts::EventFired};
use crate::registry::ModelEntry;

/// What one window's evaluation decided, not yet written.
#[derive(Debug, Default)]
pub(crate) struct Evaluation {
    /// Changed states.
    pub ws: WriteSet,
    /// Transitions to record.
    pub alerts: Vec<NewAlert>,
    /// Series-rule checks made.
    pub checks: u64,
    /// Rules whose query failed.
    pub errors: u64,
}

fn state_prefix(model: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::ALERT_RULE_STATE)
        .str(model)
        .finish()
}

fn state_key(model: &str, rule: &str, version: &str, feature: &str, segment: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::ALERT_RULE_STATE)
        .str(model)
        .str(rule)
        .str(version)
        .str(feature)
        .str(segment)
        .finish()
}

/// Whether two states differ in anything that decides a later transition. The healthy count
/// only matters while firing, and `last_window` is covered by the evaluation cursor.
fn material_change(a: &AlertState, b: &AlertState) -> bool {
    a.is_firing() != b.is_firing()
        || a.breaches() != b.breaches()
        || (b.is_firing() && a.healthy() != b.healthy())
        || a.fired_window() != b.fired_window()
        || a.resolved_window() != b.resolved_window()
}

/// Every stored state of `model`'s rules.
pub(crate) fn load_states(rules: &Rules, model: &str) -> Result<HashMap<Vec<u8>, AlertState>> {
    let mut out = HashMap::new();
    for e in rules
        .store
        .family(Family::Alerts)
        .scan_prefix(&state_prefix(model))?
    {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(error = %err, "corrupt rule state skipped (starts fresh)");
                continue;
            }
        };
        match records::decode::<AlertState>(&e) {
            Ok(s) => {
                out.insert(e.key, s);
            }
            Err(err) => tracing::warn!(error = %err, "unreadable rule state skipped"),
        }
    }
    Ok(out)
}

/// The DriftQL text of a metric rule on one version and window.
pub(crate) fn rule_query(
    m: &MetricRule,
    model: &str,
    version: &str,
    from: Timestamp,
    to: Timestamp,
    step_ms: Option<i64>,
) -> Result<String> {
    let spec = m.metric_spec().map_err(|e| Error::Invalid(e.to_string()))?;
    let selector = m.selector().map_err(|e| Error::Invalid(e.to_string()))?;
    let mref = model_ref(model, Some(version));
    let perf = spec.family() == MetricFamily::Performance;
    let target = match &selector {
        Selector::Performance => mref,
        Selector::Score if perf => mref,
        Selector::Score => format!("{mref}.$score"),
        Selector::Latency => format!("{mref}.$latency"),
        Selector::Cost => format!("{mref}.$cost"),
        Selector::Label => format!("{mref}.$label"),
        Selector::Feature(f) => format!("{mref}.{}", name(f)),
        Selector::AllFeatures | Selector::Glob(_) => format!("{mref}.*"),
    };
    let call = match (spec.name(), spec.param) {
        ("quantile", Some(q)) => format!("quantile({q}, {target})"),
        ("ndcg", Some(k)) => format!("ndcg({k}, {target})"),
        (n, _) => format!("{n}({target})"),
    };
    let by = match &m.segment {
        SegmentScope::All => String::new(),
        SegmentScope::Each(k) => {
            if !crate::query::is_identifier(k) {
                return Err(Error::Invalid(format!(
                    "segment key {k:?} is not a DriftQL identifier"
                )));
            }
            format!(" by {k}")
        }
    };
    let step = match step_ms.map(DurationMs::new) {
        Some(Ok(d)) => format!(" step {d}"),
        _ => String::new(),
    };
    Ok(format!(
        "{call} from {} to {}{step}{by}",
        from.to_rfc3339(),
        to.to_rfc3339()
    ))
}

/// The metric's value on the reference profile (for relative and delta thresholds).
fn reference_value(
    profile: &ReferenceProfile,
    spec: &MetricSpec,
    feature: &str,
    segment: &Segment,
) -> Option<f64> {
    let metric = Metric {
        def: lookup(spec.name())?,
        param: spec.param,
    };
    let seg = profile.segments.get(segment)?;
    match spec.family() {
        MetricFamily::Performance => reference_performance(&metric, &seg.performance, seg.rows),
        MetricFamily::Summary => {
            let state = match seg.series.get(&FeatureRef::parse(feature))? {
                SeriesProfile::Numeric(n) => SeriesState::Numeric(n.state.clone()),
                SeriesProfile::Categorical(c) => SeriesState::Categorical(c.clone()),
            };
            evaluate(&metric, &state, BaseRef::Missing, None)
                .ok()
                .flatten()
                .and_then(|v| v.value)
        }
        MetricFamily::Drift => None,
    }
}

/// The newest version with a reference profile (by its creation time): the model's "current"
/// version for freshness rules.
fn current_version(model: &ModelEntry) -> Option<(String, Timestamp)> {
    let refs = model.references.read().ok()?;
    refs.values()
        .max_by_key(|p| (p.created_at, p.version.clone()))
        .map(|p| (p.version.clone(), p.created_at))
}

struct Stepper<'a> {
    model: &'a ModelDef,
    states: HashMap<Vec<u8>, AlertState>,
    window: Timestamp,
    width_ms: i64,
    out: Evaluation,
}

impl Stepper<'_> {
    /// Feeds one series' value to its state. `state_version` names the state (empty for
    /// model-level rules, whose state outlives versions); `target` is what an alert names; the
    /// basis is the metric's reference value and, for anomaly thresholds, its baseline.
    fn step(
        &mut self,
        rule: &Arc<StoredRule>,
        check: &driftdb_engine::rules::Check,
        state_version: &str,
        target: AlertTarget,
        value: Option<f64>,
        (reference, baseline): (Option<f64>, Option<BaselineStats>),
    ) {
        let key = state_key(
            &self.model.id,
            &rule.def.id,
            state_version,
            target.feature.as_deref().unwrap_or(""),
            &target.segment,
        );
        let before = self.states.get(&key).copied().unwrap_or_default();
        let mut after = before;
        self.out.checks += 1;
        let t = after.step_with(check, self.window, value, reference, baseline);
        if material_change(&before, &after) {
            // The state's codec cannot fail; it is written as the record registry says.
            self.out.ws.put(
                Family::Alerts,
                key.clone(),
                RecordKind::AlertState.byte(),
                &after.encode(),
            );
        }
        self.states.insert(key, after);
        if let Some(t) = t {
            let alert = Alert::from_transition(&rule.def, &target, &t, self.width_ms);
            self.out.alerts.push(NewAlert {
                alert,
                rule: Arc::clone(rule),
                suppressed: None,
            });
        }
    }
}

/// Evaluates every metric and freshness rule of `model` on the window starting at `start`, for
/// each version in `versions`. Query failures are recorded on the rule (`last_error`) and
/// counted; they do not stop the other rules.
pub(crate) fn evaluate_window(
    rules: &Rules,
    model: &ModelEntry,
    start: Timestamp,
    versions: &BTreeSet<String>,
    active: &[Arc<StoredRule>],
) -> Result<Evaluation> {
    let width_ms = model.resolution.width_ms();
    let end = start.saturating_add_ms(width_ms);
    let mut st = Stepper {
        model: &model.def,
        states: load_states(rules, &model.def.id)?,
        window: start,
        width_ms,
        out: Evaluation::default(),
    };
    let ctx = Context {
        reader: &*rules.store,
        catalog: &*rules.registry,
        now: rules.clock.now(),
    };
    for rule in active {
        let check = match rule.def.check() {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                rules.book.set_error(&rule.def.id, Some(e.to_string()));
                continue;
            }
        };
        match &rule.def.kind {
            RuleKind::Metric(m) => {
                if let Err(e) = rule.def.validate_for_model(&model.def) {
                    // A `*` rule that does not fit this model is simply not about it.
                    if rule.def.model != "*" {
                        rules.book.set_error(&rule.def.id, Some(e.to_string()));
                    }
                    continue;
                }
                let mut error = None;
                for version in versions {
                    if let Err(e) = eval_metric(&ctx, &mut st, rule, &check, m, version, end) {
                        st.out.errors += 1;
                        error = Some(format!("version {version}: {e}"));
                    }
                }
                rules.book.set_error(&rule.def.id, error);
            }
            RuleKind::Freshness { .. } => {
                let Some((version, created)) = current_version(model) else {
                    rules.book.set_error(
                        &rule.def.id,
                        Some(format!(
                            "model {} has no reference profile yet",
                            model.def.id
                        )),
                    );
                    continue;
                };
                let age = freshness_age_days(created, end);
                // Model-level: one state per (rule, model), so a new version resolves it.
                let target = AlertTarget {
                    model: model.def.id.clone(),
                    version,
                    feature: None,
                    segment: "all".into(),
                };
                st.step(rule, &check, "", target, Some(age), (None, None));
                rules.book.set_error(&rule.def.id, None);
            }
            RuleKind::Event { .. } => {}
        }
    }
    mark_inhibited(&st.states, active, &mut st.out.alerts);
    Ok(st.out)
}

/// The rule id and segment label in a state key (`state_key`).
fn state_key_parts(key: &[u8]) -> Option<(String, String)> {
    let mut r = KeyReader::new("alerts", key);
    (r.u8().ok()? == layout::ALERT_RULE_STATE).then_some(())?;
    let _model = r.str().ok()?;
    let rule = r.str().ok()?;
    let _version = r.str().ok()?;
    let _feature = r.str().ok()?;
    let segment = r.str().ok()?;
    Some((rule, segment))
}

/// Marks the new firings that an inhibiting rule mutes: a rule of `active` with `inhibits`
/// that, after this window, has a firing series on the same model in the same segment (or in
/// the overall segment, which covers every segment). Resolutions follow their firing (see
/// [`super::AlertLog::record`]).
fn mark_inhibited(
    states: &HashMap<Vec<u8>, AlertState>,
    active: &[Arc<StoredRule>],
    alerts: &mut [NewAlert],
) {
    let inhibitors: Vec<&Arc<StoredRule>> = active
        .iter()
        .filter(|r| !r.def.inhibits.is_empty())
        .collect();
    if inhibitors.is_empty() || alerts.is_empty() {
        return;
    }
    let mut firing: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (key, state) in states {
        if !state.is_firing() {
            continue;
        }
        if let Some((rule, segment)) = state_key_parts(key)
            && inhibitors.iter().any(|r| r.def.id == rule)
        {
            firing.entry(rule).or_default().insert(segment);
        }
    }
    for na in alerts.iter_mut() {
        if na.alert.status != AlertStatus::Firing || na.suppressed.is_some() {
            continue;
        }
        let target = &na.rule.def.id;
        for inh in &inhibitors {
            if inh.def.id == *target || !inh.def.inhibits_rule(target) {
                continue;
            }
            let Some(segments) = firing.get(&inh.def.id) else {
                continue;
            };
            let seg = if segments.contains(&na.alert.segment) {
                Some(na.alert.segment.as_str())
            } else if segments.contains("all") {
                Some("all")
            } else {
                None
            };
            if let Some(seg) = seg {
                na.suppressed = Some(format!("inhibited by rule {} ({seg})", inh.def.id));
                break;
            }
        }
    }
}

/// One row of a rule's query: a series and its value (`None` when missing, or when the window
/// has fewer rows than the rule's `min_n`).
struct SeriesValue {
    feature: String,
    segment: Segment,
    label: String,
    value: Option<f64>,
}

/// The rows of a rule's query `text` as series values, in table order (one per window for
/// a query with a step).
fn series_values(ctx: &Context<'_>, m: &MetricRule, text: &str) -> Result<Vec<SeriesValue>> {
    let out = driftdb_query::run(ctx, text)?;
    let table = &out.table;
    let selector = m.selector().map_err(|e| Error::Invalid(e.to_string()))?;
    let (Some(fcol), Some(vcol)) = (table.column("feature"), table.column("value")) else {
        return Err(Error::Internal(format!(
            "query `{text}` returned no feature/value columns"
        )));
    };
    let ncol = table.column("n");
    let scol = match &m.segment {
        SegmentScope::All => None,
        SegmentScope::Each(k) => Some((k.clone(), table.column(k))),
    };
    let mut rows = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let feature = row.get(fcol).and_then(Cell::as_str).unwrap_or("");
        if matches!(selector, Selector::Glob(_)) && !selector.matches(feature) {
            continue;
        }
        let (segment, label) = match &scol {
            None => (Segment::All, "all".to_string()),
            Some((k, col)) => {
                let Some(v) = col.and_then(|c| row.get(c)).and_then(Cell::as_str) else {
                    continue;
                };
                (
                    Segment::Value {
                        key: k.clone(),
                        value: v.to_string(),
                    },
                    format!("{k}={v}"),
                )
            }
        };
        let mut value = row.get(vcol).and_then(Cell::as_f64);
        if let (Some(min), Some(n)) = (
            m.min_n,
            ncol.and_then(|c| row.get(c)).and_then(Cell::as_f64),
        ) && n < min as f64
        {
            // Too few rows to judge: neither a breach nor a healthy window.
            value = None;
        }
        rows.push(SeriesValue {
            feature: feature.to_string(),
            segment,
            label,
            value,
        });
    }
    Ok(rows)
}

/// The metric's statistics over an anomaly threshold's baseline windows, per (feature,
/// segment label), for the window starting at `start`.
fn baselines(
    ctx: &Context<'_>,
    st: &Stepper<'_>,
    m: &MetricRule,
    anomaly: &Anomaly,
    version: &str,
) -> Result<HashMap<(String, String), BaselineStats>> {
    let created = ctx
        .catalog
        .reference(&st.model.id, version)
        .map(|p| p.created_at.millis());
    let mut values: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for (from, to) in anomaly
        .baseline
        .spans(st.window.millis(), st.width_ms, created)
    {
        if to <= from {
            continue;
        }
        let step = (to - from > st.width_ms).then_some(st.width_ms);
        let text = rule_query(
            m,
            &st.model.id,
            version,
            Timestamp(from),
            Timestamp(to),
            step,
        )?;
        for sv in series_values(ctx, m, &text)? {
            if let Some(v) = sv.value.filter(|v| v.is_finite()) {
                values.entry((sv.feature, sv.label)).or_default().push(v);
            }
        }
    }
    Ok(values
        .into_iter()
        .map(|(k, v)| (k, BaselineStats::of(v)))
        .collect())
}

fn eval_metric(
    ctx: &Context<'_>,
    st: &mut Stepper<'_>,
    rule: &Arc<StoredRule>,
    check: &driftdb_engine::rules::Check,
    m: &MetricRule,
    version: &str,
    end: Timestamp,
) -> Result<()> {
    let text = rule_query(m, &st.model.id, version, st.window, end, None)?;
    let rows = series_values(ctx, m, &text)?;
    let spec = m.metric_spec().map_err(|e| Error::Invalid(e.to_string()))?;
    let profile = if !m.threshold.needs_reference() {
        None
    } else if driftdb_query::metrics::needs_sketch_named(spec.name()) {
        ctx.catalog.reference_with_sketches(&st.model.id, version)
    } else {
        ctx.catalog.reference(&st.model.id, version)
    };
    let baseline = match m.threshold.anomaly() {
        Some(a) => Some(baselines(ctx, st, m, a, version)?),
        None => None,
    };
    for sv in rows {
        let reference = profile
            .as_deref()
            .and_then(|p| reference_value(p, &spec, &sv.feature, &sv.segment));
        let stats = baseline
            .as_ref()
            .and_then(|b| b.get(&(sv.feature.clone(), sv.label.clone())).copied());
        let target = AlertTarget {
            model: st.model.id.clone(),
            version: version.to_string(),
            feature: (!sv.feature.is_empty()).then(|| sv.feature.clone()),
            segment: sv.label,
        };
        st.step(rule, check, version, target, sv.value, (reference, stats));
    }
    Ok(())
}

/// Records an event announcement: every event rule of `model` waiting for `event` fires once
/// (outside its cooldown). Returns what to record and the batch holding the last-fired marks.
pub(crate) fn announce(
    rules: &Rules,
    model: &ModelEntry,
    event: &str,
    version: &str,
    at: Timestamp,
) -> Result<(WriteSet, Vec<NewAlert>)> {
    let mut ws = WriteSet::new();
    let mut alerts = Vec::new();
    for rule in rules.book.list(Some(&model.def.id)) {
        let last = rules.log.event_last_fired(&model.def.id, &rule.def.id)?;
        if !rule.def.fires_on_event(&model.def.id, event, last, at) {
            continue;
        }
        records::put(
            &mut ws,
            Family::Alerts,
            event_fired_key(&model.def.id, &rule.def.id),
            &EventFired(at),
        )?;
        alerts.push(NewAlert {
            alert: Alert::for_event(&rule.def, &model.def.id, version, event, at),
            rule,
            suppressed: None,
        });
    }
    Ok((ws, alerts))
}
