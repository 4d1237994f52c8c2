//! Rule definitions: the JSON shape, parsing with field-named errors, and validation.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::anomaly::{Anomaly, AnomalyJson};
use super::glob::{glob_match, is_pattern};
use super::group::RuleAction;
use super::state::Check;
use super::url::validate_webhook_url;
use crate::error::Error;
use crate::model::{FeatureKind, ModelDef, Task, validate_name};
use crate::time::{DurationMs, Timestamp};

/// Windows in a row needed to fire (and to resolve) when a rule does not say.
pub const DEFAULT_CONSECUTIVE: u32 = 3;
/// Largest accepted `consecutive`.
pub const MAX_CONSECUTIVE: u32 = 1000;
/// Most actions one rule may carry.
pub const MAX_ACTIONS: usize = 16;
/// Longest rule id, in bytes.
pub const MAX_RULE_ID_LEN: usize = 128;
/// Where PagerDuty actions send events unless they name another URL.
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The Jira issue type used unless an action names another.
pub const DEFAULT_JIRA_ISSUE_TYPE: &str = "Task";

const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most `inhibits` patterns on one rule.
pub const MAX_INHIBITS: usize = 16;
/// Largest `min_n`.
pub const MAX_MIN_N: u64 = 1_000_000_000_000;
const MAX_EVENT_LEN: usize = 64;
/// Longest accepted `cooldown` or `retrain_every`: ten years.
const MAX_DURATION_MS: i64 = 3650 * 86_400_000;
const DAY_MS: f64 = 86_400_000.0;

/// A rule that could not be accepted: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RuleError {
    /// The offending field, e.g. `threshold` or `actions[1].url`; `rule` for the whole object.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RuleError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RuleError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<RuleError> for Error {
    fn from(e: RuleError) -> Self {
        Error::InvalidArgument {
            what: "rule",
            detail: e.to_string(),
        }
    }
}

/// How bad a firing is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// A ticket.
    Medium,
    /// A chat message to the owning team.
    High,
    /// Page someone.
    Critical,
}

impl Severity {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// PagerDuty's severity scale: critical, error, warning, info.
    pub fn pagerduty(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low => "info",
        }
    }
}

/// How a window's value is compared with the bound; a window *breaches* when it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Comparison {
    /// `value > bound`.
    #[serde(rename = ">")]
    Gt,
    /// `value >= bound`.
    #[serde(rename = ">=")]
    Ge,
    /// `value < bound`.
    #[serde(rename = "<")]
    Lt,
    /// `value <= bound`.
    #[serde(rename = "<=")]
    Le,
}

impl Comparison {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
        }
    }

    /// Whether `value <op> bound` holds.
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Comparison::Gt => value > bound,
            Comparison::Ge => value >= bound,
            Comparison::Lt => value < bound,
            Comparison::Le => value <= bound,
        }
    }

    /// Whether the rule watches for values going up (`>`, `>=`).
    pub fn is_upward(self) -> bool {
        matches!(self, Comparison::Gt | Comparison::Ge)
    }
}

/// The bound a value is compared with.
///
/// JSON: a bare number is absolute; `{"relative": r}` is `reference + r·|reference|` (so
/// `-0.05` with `<` means "more than 5 % below the reference"); `{"delta": d}` is
/// `reference + d` (e.g. `-0.03` AUC points). Relative and delta bounds need the reference
/// value of the metric; a window without one neither breaches nor heals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A fixed bound.
    Absolute(f64),
    /// A fraction of the reference's magnitude added to the reference.
    Relative(f64),
    /// A fixed amount added to the reference.
    Delta(f64),
    /// `k` standard deviations from the mean of the metric's own baseline windows.
    Anomaly(Anomaly),
}

impl Threshold {
    /// Whether the bound depends on the reference value.
    pub fn needs_reference(&self) -> bool {
        matches!(self, Threshold::Relative(_) | Threshold::Delta(_))
    }

    /// The adaptive threshold, if this is one.
    pub fn anomaly(&self) -> Option<&Anomaly> {
        match self {
            Threshold::Anomaly(a) => Some(a),
            _ => None,
        }
    }

    /// The number written in the rule.
    pub fn raw(&self) -> f64 {
        match *self {
            Threshold::Absolute(v) | Threshold::Relative(v) | Threshold::Delta(v) => v,
            Threshold::Anomaly(a) => a.k,
        }
    }

    /// The bound for a window, or `None` when it needs a reference value that is missing or
    /// not finite (and always for an anomaly threshold, whose band comes from its baseline:
    /// [`Anomaly::judge`]).
    pub fn bound(&self, reference: Option<f64>) -> Option<f64> {
        let reference = reference.filter(|r| r.is_finite());
        let b = match *self {
            Threshold::Absolute(v) => v,
            Threshold::Relative(r) => {
                let base = reference?;
                base + r * base.abs()
            }
            Threshold::Delta(d) => reference? + d,
            Threshold::Anomaly(_) => return None,
        };
        b.is_finite().then_some(b)
    }

    /// A short human description: `0.2`, `reference -5%`, `reference -0.03`.
    pub fn describe(&self) -> String {
        match *self {
            Threshold::Absolute(v) => fmt_num(v),
            Threshold::Relative(r) => {
                let pct = r * 100.0;
                let sign = if pct < 0.0 { "-" } else { "+" };
                format!("reference {sign}{}%", fmt_num(pct.abs()))
            }
            Threshold::Delta(d) => {
                let sign = if d < 0.0 { "-" } else { "+" };
                format!("reference {sign}{}", fmt_num(d.abs()))
            }
            Threshold::Anomaly(a) => a.describe(),
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Threshold::Absolute(v) => s.serialize_f64(v),
            Threshold::Relative(r) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("relative", &r)?;
                m.end()
            }
            Threshold::Delta(d) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("delta", &d)?;
                m.end()
            }
            Threshold::Anomaly(ref a) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("anomaly", &AnomalyJson::from(a))?;
                m.end()
            }
        }
    }
}

/// The object form of a threshold: exactly one of these keys.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum TaggedThreshold {
    Absolute(f64),
    Relative(f64),
    Delta(f64),
    Anomaly(AnomalyJson),
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Threshold;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a number, or an object {\"relative\": r}, {\"delta\": d}, {\"absolute\": v} \
                     or {\"anomaly\": {\"k\": 3, \"baseline\": \"trailing 7d\"}}",
                )
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Threshold, E> {
                Ok(Threshold::Absolute(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Threshold, E> {
                Ok(Threshold::Absolute(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Threshold, E> {
                Ok(Threshold::Absolute(v as f64))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Threshold, A::Error> {
                let t = TaggedThreshold::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(match t {
                    TaggedThreshold::Absolute(v) => Threshold::Absolute(v),
                    TaggedThreshold::Relative(v) => Threshold::Relative(v),
                    TaggedThreshold::Delta(v) => Threshold::Delta(v),
                    TaggedThreshold::Anomaly(a) => {
                        Threshold::Anomaly(Anomaly::try_from(a).map_err(de::Error::custom)?)
                    }
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Which segments a metric rule watches.
///
/// JSON: `"all"` or `{"each": "region"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentScope {
    /// The overall segment only.
    #[default]
    All,
    /// Every value of this segment key (`__other__` included), each with its own state.
    Each(String),
}

impl SegmentScope {
    /// Whether a series of segment `key` (`None` for the overall segment) is in scope.
    pub fn covers(&self, key: Option<&str>) -> bool {
        match (self, key) {
            (SegmentScope::All, None) => true,
            (SegmentScope::Each(k), Some(key)) => k == key,
            _ => false,
        }
    }
}

/// What a metric rule looks at, parsed from its `selector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `*`: every named feature.
    AllFeatures,
    /// One named feature.
    Feature(String),
    /// Named features matching a glob (`*`, `?`).
    Glob(String),
    /// `$score`: the prediction score series (its distribution or its performance).
    Score,
    /// `$performance`: the model's labelled performance (performance metrics of `$score`).
    Performance,
    /// `$label`: the label distribution.
    Label,
    /// `$latency`: serving latency.
    Latency,
    /// `$cost`: the per-event cost (`cost_per_1k`, or numeric summaries).
    Cost,
}

impl Selector {
    /// Parses a selector; the error says why it is not one.
    pub fn parse(s: &str) -> Result<Selector, String> {
        match s {
            "" => Err("must not be empty".into()),
            "*" => Ok(Selector::AllFeatures),
            "$score" => Ok(Selector::Score),
            "$performance" => Ok(Selector::Performance),
            "$label" => Ok(Selector::Label),
            "$latency" => Ok(Selector::Latency),
            "$cost" => Ok(Selector::Cost),
            s if s.starts_with('$') => Err(format!(
                "unknown special series `{s}`; expected $score, $performance, $label, $latency or $cost"
            )),
            s if is_pattern(s) => {
                if s.len() > crate::model::MAX_NAME_LEN || s.chars().any(char::is_control) {
                    return Err(format!(
                        "pattern {s:?} is too long or has control characters"
                    ));
                }
                Ok(Selector::Glob(s.to_string()))
            }
            s => {
                validate_name("feature", s).map_err(detail)?;
                Ok(Selector::Feature(s.to_string()))
            }
        }
    }

    /// Whether the series named `feature` (DriftQL spelling: a name, `$score`, `$label`,
    /// `$latency`) is selected.
    pub fn matches(&self, feature: &str) -> bool {
        let named = !feature.starts_with('$');
        match self {
            Selector::AllFeatures => named,
            Selector::Feature(f) => f == feature,
            Selector::Glob(p) => named && glob_match(p, feature),
            Selector::Score | Selector::Performance => feature == "$score",
            Selector::Label => feature == "$label",
            Selector::Latency => feature == "$latency",
            Selector::Cost => feature == "$cost",
        }
    }

    fn is_named(&self) -> bool {
        matches!(
            self,
            Selector::AllFeatures | Selector::Feature(_) | Selector::Glob(_)
        )
    }
}

/// The family of a metric (the catalog's).
pub use crate::catalog::Family as MetricFamily;
use crate::catalog::{Applies, MetricDef, Param};

/// Default K of `ndcg` without an argument (the headline NDCG@10).
const DEFAULT_NDCG_K: f64 = 10.0;
const MAX_NDCG_K: f64 = 20.0;

/// A parsed `metric`: `psi`, `quantile(0.99)`, `ndcg(10)` (or `ndcg@10`, or `ndcg` for K = 10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// The metric.
    pub info: &'static MetricDef,
    /// `quantile`'s level q in [0, 1], `ndcg`'s K in 1..=20.
    pub param: Option<f64>,
}

impl MetricSpec {
    /// Parses a metric name (case-insensitive); the error says why it is not one.
    pub fn parse(s: &str) -> Result<MetricSpec, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, arg) = if let Some(open) = lower.find('(') {
            let inner = lower[open + 1..]
                .strip_suffix(')')
                .ok_or_else(|| format!("`{s}` has an unclosed argument list"))?;
            (&lower[..open], Some(inner.trim()))
        } else if let Some((n, k)) = lower.split_once('@') {
            (n, Some(k))
        } else {
            (lower.as_str(), None)
        };
        let name = name.trim();
        let info = crate::catalog::lookup(name).ok_or_else(|| {
            format!(
                "unknown metric `{s}`; expected a DriftQL metric such as psi, ks, auc, \
                 missing_rate or quantile(0.99)"
            )
        })?;
        if let Some(why) = info.not_in_rules {
            return Err(format!("{} cannot be used in a rule: {why}", info.name));
        }
        let param = match (info.param, arg) {
            (Param::Level, None) => {
                return Err("quantile needs a level, e.g. quantile(0.99)".into());
            }
            (Param::Level, Some(a)) => {
                let q = a
                    .parse::<f64>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
                    .ok_or_else(|| format!("quantile's level must be in [0, 1], got `{a}`"))?;
                Some(q)
            }
            (Param::CutOff, None) => Some(DEFAULT_NDCG_K),
            (Param::CutOff, Some(a)) => {
                let k = a
                    .parse::<u32>()
                    .ok()
                    .map(f64::from)
                    .filter(|k| (1.0..=MAX_NDCG_K).contains(k))
                    .ok_or_else(|| {
                        format!("ndcg's K must be an integer between 1 and 20, got `{a}`")
                    })?;
                Some(k)
            }
            (Param::None, Some(_)) => return Err(format!("{} takes no argument", info.name)),
            (Param::None, None) => None,
        };
        Ok(MetricSpec { info, param })
    }

    /// The DriftQL name.
    pub fn name(&self) -> &'static str {
        self.info.name
    }

    /// The family.
    pub fn family(&self) -> MetricFamily {
        self.info.family
    }

    /// Whether the reference profile has a value of this metric (summaries and performance),
    /// which relative and delta thresholds need.
    pub fn has_reference_value(&self) -> bool {
        self.info.has_reference_value()
    }

    /// The label DriftQL shows in its `metric` column: `psi`, `quantile(0.99)`, `ndcg@10`.
    pub fn label(&self) -> String {
        match (self.info.name, self.param) {
            ("quantile", Some(q)) => format!("quantile({q})"),
            ("ndcg", Some(k)) => format!("ndcg@{k}"),
            (n, _) => n.to_string(),
        }
    }
}

/// One thing to do when a rule fires or resolves. JSON objects tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// PagerDuty Events API v2: `trigger` on firing, `resolve` on resolution.
    Pagerduty {
        /// The service integration's routing key.
        routing_key: String,
        /// Events endpoint (default [`DEFAULT_PAGERDUTY_URL`]).
        #[serde(default = "default_pagerduty_url")]
        url: String,
    },
    /// A Slack incoming webhook: a message on firing and on resolution.
    Slack {
        /// The incoming-webhook URL.
        url: String,
    },
    /// Jira issue creation (REST API v2 `POST /rest/api/2/issue`): on firing only.
    Jira {
        /// The create-issue endpoint.
        url: String,
        /// Project key, e.g. `ML`.
        project: String,
        /// Issue type name (default [`DEFAULT_JIRA_ISSUE_TYPE`]).
        #[serde(default = "default_issue_type")]
        issue_type: String,
        /// The account Jira Cloud authenticates (an e-mail address): with `token`, requests
        /// carry HTTP Basic credentials.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// An API token (Jira Cloud, with `user`) or a personal access token (Jira Data
        /// Center, alone: `Authorization: Bearer`). A secret: kept apart from the rule text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// A generic JSON webhook with the whole alert: on firing and on resolution.
    Webhook {
        /// Target URL.
        url: String,
    },
    /// A retraining pipeline's trigger: on firing only.
    Retrain {
        /// Target URL.
        url: String,
    },
    /// Ask the serving layer to route the model's traffic to a backup: on firing only.
    RouteToBackup {
        /// Target URL.
        url: String,
        /// The version to route to, if the rule names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup_version: Option<String>,
    },
}

fn default_pagerduty_url() -> String {
    DEFAULT_PAGERDUTY_URL.to_string()
}

fn default_issue_type() -> String {
    DEFAULT_JIRA_ISSUE_TYPE.to_string()
}

/// The kind of an [`Action`], without its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// PagerDuty Events v2.
    Pagerduty,
    /// Slack incoming webhook.
    Slack,
    /// Jira issue creation.
    Jira,
    /// Generic JSON webhook.
    Webhook,
    /// Retraining trigger.
    Retrain,
    /// Route to a backup model.
    RouteToBackup,
}

impl ActionKind {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Pagerduty => "pagerduty",
            ActionKind::Slack => "slack",
            ActionKind::Jira => "jira",
            ActionKind::Webhook => "webhook",
            ActionKind::Retrain => "retrain",
            ActionKind::RouteToBackup => "route_to_backup",
        }
    }

    /// Whether this kind also sends something when an alert resolves.
    pub fn sends_on_resolve(self) -> bool {
        matches!(
            self,
            ActionKind::Pagerduty | ActionKind::Slack | ActionKind::Webhook
        )
    }
}

impl Action {
    /// The kind.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Pagerduty { .. } => ActionKind::Pagerduty,
            Action::Slack { .. } => ActionKind::Slack,
            Action::Jira { .. } => ActionKind::Jira,
            Action::Webhook { .. } => ActionKind::Webhook,
            Action::Retrain { .. } => ActionKind::Retrain,
            Action::RouteToBackup { .. } => ActionKind::RouteToBackup,
        }
    }

    /// The target URL.
    pub fn url(&self) -> &str {
        match self {
            Action::Pagerduty { url, .. }
            | Action::Slack { url }
            | Action::Jira { url, .. }
            | Action::Webhook { url }
            | Action::Retrain { url }
            | Action::RouteToBackup { url, .. } => url,
        }
    }

    fn validate(&self, at: &str) -> Result<(), RuleError> {
        validate_webhook_url(self.url()).map_err(|why| RuleError::new(format!("{at}.url"), why))?;
        match self {
            Action::Pagerduty { routing_key, .. }
                if routing_key.is_empty()
                    || routing_key.len() > 128
                    || !routing_key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(RuleError::new(
                    format!("{at}.routing_key"),
                    "must be 1..=128 printable ASCII characters without spaces",
                ));
            }
            Action::Jira {
                project,
                issue_type,
                user,
                token,
                ..
            } => {
                if let Some(t) = token
                    && (t.is_empty() || t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic()))
                {
                    return Err(RuleError::new(
                        format!("{at}.token"),
                        "must be 1..=1024 printable ASCII characters without spaces",
                    ));
                }
                if let Some(u) = user {
                    if token.is_none() {
                        return Err(RuleError::new(
                            format!("{at}.user"),
                            "needs a token (the user's API token)",
                        ));
                    }
                    if u.is_empty()
                        || u.len() > 256
                        || u.contains(':')
                        || u.chars().any(char::is_control)
                    {
                        return Err(RuleError::new(
                            format!("{at}.user"),
                            "must be 1..=256 characters without ':' or control characters",
                        ));
                    }
                }
                let mut chars = project.chars();
                let ok = project.len() <= 32
                    && chars.next().is_some_and(|c| c.is_ascii_uppercase())
                    && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !ok {
                    return Err(RuleError::new(
                        format!("{at}.project"),
                        format!(
                            "`{project}` is not a Jira project key (an upper-case letter, then \
                             upper-case letters, digits or _, at most 32)"
                        ),
                    ));
                }
                if issue_type.trim().is_empty()
                    || issue_type.len() > 64
                    || issue_type.chars().any(char::is_control)
                {
                    return Err(RuleError::new(
                        format!("{at}.issue_type"),
                        "must be 1..=64 characters without control characters",
                    ));
                }
            }
            Action::RouteToBackup {
                backup_version: Some(v),
                ..
            } => {
                validate_name("version", v)
                    .map_err(|e| RuleError::new(format!("{at}.backup_version"), detail(e)))?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The condition of a window-close rule.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRule {
    /// Feature name, glob, `*`, `$score`, `$performance`, `$label` or `$latency`.
    pub selector: String,
    /// DriftQL metric, e.g. `psi`, `auc`, `quantile(0.99)`.
    pub metric: String,
    /// How the value is compared with the bound.
    pub comparison: Comparison,
    /// The bound.
    pub threshold: Threshold,
    /// Breaching windows in a row to fire, healthy windows in a row to resolve.
    pub consecutive: u32,
    /// Which segments are watched.
    pub segment: SegmentScope,
    /// Windows with fewer rows than this are not judged (treated as no data).
    pub min_n: Option<u64>,
}

impl MetricRule {
    /// The parsed selector.
    pub fn selector(&self) -> Result<Selector, RuleError> {
        Selector::parse(&self.selector).map_err(|why| RuleError::new("selector", why))
    }

    /// The parsed metric.
    pub fn metric_spec(&self) -> Result<MetricSpec, RuleError> {
        MetricSpec::parse(&self.metric).map_err(|why| RuleError::new("metric", why))
    }

    /// The series (DriftQL spelling) of `model` this rule evaluates: the selected features
    /// the metric applies to, or `$score` for performance metrics the model's task has.
    /// Empty when nothing applies (the rule is then skipped for that model).
    pub fn targets(&self, model: &ModelDef) -> Result<Vec<String>, RuleError> {
        let selector = self.selector()?;
        let spec = self.metric_spec()?;
        let mut out = Vec::new();
        match spec.info.applies {
            Applies::Score => {
                if matches!(selector, Selector::Score | Selector::Performance)
                    && spec.info.fits_task(model.task)
                {
                    out.push("$score".to_string());
                }
            }
            Applies::Cost => {
                if selector == Selector::Cost {
                    out.push("$cost".to_string());
                }
            }
            applies => {
                let wants = |kind: FeatureKind| match applies {
                    Applies::Any => true,
                    Applies::Numeric => kind == FeatureKind::Numeric,
                    Applies::Categorical => kind == FeatureKind::Categorical,
                    Applies::Score | Applies::Cost => false,
                };
                if selector.is_named() {
                    for (name, kind) in &model.features {
                        if selector.matches(name) && wants(*kind) {
                            out.push(name.clone());
                        }
                    }
                } else {
                    let special = match selector {
                        Selector::Score => Some("$score"),
                        Selector::Latency => Some("$latency"),
                        Selector::Cost => Some("$cost"),
                        // Labels are numeric except for multiclass models.
                        Selector::Label => Some("$label"),
                        _ => None,
                    };
                    let kind = if selector == Selector::Label && model.task == Task::Multiclass {
                        FeatureKind::Categorical
                    } else {
                        FeatureKind::Numeric
                    };
                    if let Some(s) = special.filter(|_| wants(kind)) {
                        out.push(s.to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    fn validate(&self) -> Result<(), RuleError> {
        if let Some(n) = self.min_n
            && !(1..=MAX_MIN_N).contains(&n)
        {
            return Err(RuleError::new(
                "min_n",
                format!("must be 1..={MAX_MIN_N} rows, got {n}"),
            ));
        }
        let selector = self.selector()?;
        let spec = self.metric_spec()?;
        let perf = spec.family() == MetricFamily::Performance;
        match (&selector, perf) {
            (Selector::Score | Selector::Performance, true) => {}
            (_, true) => {
                return Err(RuleError::new(
                    "selector",
                    format!(
                        "{} is a performance metric and needs selector $score or \
                         $performance, not `{}`",
                        spec.name(),
                        self.selector
                    ),
                ));
            }
            (Selector::Performance, false) => {
                return Err(RuleError::new(
                    "metric",
                    format!(
                        "selector $performance needs a performance metric (auc, ece, rmse, \
                         ndcg …), not `{}`",
                        self.metric
                    ),
                ));
            }
            (sel, false) if spec.info.applies == Applies::Cost && *sel != Selector::Cost => {
                return Err(RuleError::new(
                    "selector",
                    format!(
                        "{} is computed on the events' cost and needs selector $cost, not `{}`",
                        spec.name(),
                        self.selector
                    ),
                ));
            }
            (Selector::Score | Selector::Latency | Selector::Cost, false)
                if spec.info.applies == Applies::Categorical =>
            {
                return Err(RuleError::new(
                    "metric",
                    format!(
                        "{} applies to categorical features, and `{}` is numeric",
                        spec.name(),
                        self.selector
                    ),
                ));
            }
            _ => {}
        }
        let t = self.threshold.raw();
        if !t.is_finite() {
            return Err(RuleError::new(
                "threshold",
                format!("must be a finite number, got {t}"),
            ));
        }
        if self.threshold.anomaly().is_some() && !self.comparison.is_upward() {
            return Err(RuleError::new(
                "comparison",
                "an anomaly threshold breaches when the deviation from the baseline exceeds the \
                 band: use \">\" (the side is the threshold's `direction`: both, up or down)",
            ));
        }
        if self.threshold.needs_reference() {
            if !spec.has_reference_value() {
                return Err(RuleError::new(
                    "threshold",
                    format!(
                        "a relative or delta threshold needs a metric with a reference value; \
                         {} already compares the window with the reference, use a number",
                        spec.name()
                    ),
                ));
            }
            let up = self.comparison.is_upward();
            if (up && t < 0.0) || (!up && t > 0.0) {
                let (word, want) = if up {
                    ("rise", "positive")
                } else {
                    ("drop", "negative")
                };
                return Err(RuleError::new(
                    "threshold",
                    format!(
                        "comparison {} watches for a {word}, so the change must be {want} or \
                         zero, got {}",
                        self.comparison.as_str(),
                        fmt_num(t)
                    ),
                ));
            }
        }
        if !(1..=MAX_CONSECUTIVE).contains(&self.consecutive) {
            return Err(RuleError::new(
                "consecutive",
                format!(
                    "must be between 1 and {MAX_CONSECUTIVE}, got {}",
                    self.consecutive
                ),
            ));
        }
        if let SegmentScope::Each(key) = &self.segment {
            validate_name("segment key", key).map_err(|e| RuleError::new("segment", detail(e)))?;
        }
        Ok(())
    }
}

/// What makes a rule fire.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// Evaluated on every closed window of the selected series.
    Metric(MetricRule),
    /// Fires when the model's current version is older than `retrain_every`.
    Freshness {
        /// A duration such as `14d`.
        retrain_every: String,
    },
    /// Fires once for each announcement of this event for the model.
    Event {
        /// Event name, e.g. `catalog_refresh` or `release`.
        event: String,
    },
}

impl RuleKind {
    /// `metric`, `freshness` or `event`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleKind::Metric(_) => "metric",
            RuleKind::Freshness { .. } => "freshness",
            RuleKind::Event { .. } => "event",
        }
    }
}

/// An alert rule (README.md, "Rules and alerts"). The JSON shape is described in the [module docs](super).
///
/// Deserializing checks the shape only (fields present for the kind, no unknown fields);
/// [`RuleDef::validate`] checks the values. [`RuleDef::from_json`] does both and names the
/// field at fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRule", into = "RawRule")]
pub struct RuleDef {
    /// Rule id, unique in the store.
    pub id: String,
    /// Model id or `*`.
    pub model: String,
    /// What makes it fire.
    pub kind: RuleKind,
    /// How bad a firing is.
    pub severity: Severity,
    /// What to call on firing (and, for some kinds, on resolution), each possibly grouped.
    pub actions: Vec<RuleAction>,
    /// Optional duration: a series that resolved does not fire again before this has passed
    /// (for event rules: the least time between two firings).
    pub cooldown: Option<String>,
    /// Optional note copied into alerts (a runbook link, an owner).
    pub description: Option<String>,
    /// Rule-id globs this rule inhibits while one of its series fires: their alerts on the same
    /// model (and segment, unless this rule's firing series is the overall segment) are recorded
    /// as inhibited and not delivered.
    pub inhibits: Vec<String>,
}

/// Every field name a rule object may have.
const RULE_FIELDS: &[&str] = &[
    "id",
    "model",
    "kind",
    "selector",
    "metric",
    "comparison",
    "threshold",
    "consecutive",
    "segment",
    "retrain_every",
    "event",
    "severity",
    "actions",
    "cooldown",
    "description",
    "min_n",
    "inhibits",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    Metric,
    Freshness,
    Event,
}

/// The flat wire form of a rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    model: String,
    #[serde(default)]
    kind: Option<RawKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comparison: Option<Comparison>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<Threshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consecutive: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segment: Option<SegmentScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retrain_every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    severity: Severity,
    #[serde(default)]
    actions: Vec<RuleAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cooldown: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_n: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inhibits: Vec<String>,
}

impl TryFrom<RawRule> for RuleDef {
    type Error = RuleError;

    fn try_from(r: RawRule) -> Result<RuleDef, RuleError> {
        let kind = r.kind.unwrap_or(RawKind::Metric);
        let metric_only = [
            ("selector", r.selector.is_some()),
            ("metric", r.metric.is_some()),
            ("comparison", r.comparison.is_some()),
            ("threshold", r.threshold.is_some()),
            ("consecutive", r.consecutive.is_some()),
            ("segment", r.segment.is_some()),
            ("min_n", r.min_n.is_some()),
        ];
        let reject = |fields: &[(&str, bool)], only: &str| -> Result<(), RuleError> {
            match fields.iter().find(|(_, present)| *present) {
                Some((f, _)) => Err(RuleError::new(*f, format!("only applies to {only} rules"))),
                None => Ok(()),
            }
        };
        let kind_name = match kind {
            RawKind::Metric => "metric",
            RawKind::Freshness => "freshness",
            RawKind::Event => "event",
        };
        let required = |f: &str| RuleError::new(f, format!("required for a {kind_name} rule"));
        let rule_kind = match kind {
            RawKind::Metric => {
                reject(&[("retrain_every", r.retrain_every.is_some())], "freshness")?;
                reject(&[("event", r.event.is_some())], "event")?;
                RuleKind::Metric(MetricRule {
                    selector: r.selector.ok_or_else(|| required("selector"))?,
                    metric: r.metric.ok_or_else(|| required("metric"))?,
                    comparison: r.comparison.ok_or_else(|| required("comparison"))?,
                    threshold: r.threshold.ok_or_else(|| required("threshold"))?,
                    consecutive: r.consecutive.unwrap_or(DEFAULT_CONSECUTIVE),
                    segment: r.segment.unwrap_or_default(),
                    min_n: r.min_n,
                })
            }
            RawKind::Freshness => {
                reject(&metric_only, "metric")?;
                reject(&[("event", r.event.is_some())], "event")?;
                RuleKind::Freshness {
                    retrain_every: r.retrain_every.ok_or_else(|| required("retrain_every"))?,
                }
            }
            RawKind::Event => {
                reject(&metric_only, "metric")?;
                reject(&[("retrain_every", r.retrain_every.is_some())], "freshness")?;
                RuleKind::Event {
                    event: r.event.ok_or_else(|| required("event"))?,
                }
            }
        };
        Ok(RuleDef {
            id: r.id,
            model: r.model,
            kind: rule_kind,
            severity: r.severity,
            actions: r.actions,
            cooldown: r.cooldown,
            description: r.description,
            inhibits: r.inhibits,
        })
    }
}

impl From<RuleDef> for RawRule {
    fn from(d: RuleDef) -> RawRule {
        let mut raw = RawRule {
            id: d.id,
            model: d.model,
            kind: None,
            selector: None,
            metric: None,
            comparison: None,
            threshold: None,
            consecutive: None,
            segment: None,
            retrain_every: None,
            event: None,
            severity: d.severity,
            actions: d.actions,
            cooldown: d.cooldown,
            description: d.description,
            min_n: None,
            inhibits: d.inhibits,
        };
        match d.kind {
            RuleKind::Metric(m) => {
                raw.kind = Some(RawKind::Metric);
                raw.selector = Some(m.selector);
                raw.metric = Some(m.metric);
                raw.comparison = Some(m.comparison);
                raw.threshold = Some(m.threshold);
                raw.consecutive = Some(m.consecutive);
                raw.segment = Some(m.segment);
                raw.min_n = m.min_n;
            }
            RuleKind::Freshness { retrain_every } => {
                raw.kind = Some(RawKind::Freshness);
                raw.retrain_every = Some(retrain_every);
            }
            RuleKind::Event { event } => {
                raw.kind = Some(RawKind::Event);
                raw.event = Some(event);
            }
        }
        raw
    }
}

/// Reads one optional field of a rule object, naming it in the error.
fn field<T: DeserializeOwned>(
    map: &Map<String, Value>,
    name: &str,
) -> Result<Option<T>, RuleError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| RuleError::new(name, e.to_string())),
    }
}

fn required_field<T: DeserializeOwned>(
    map: &Map<String, Value>,
    name: &str,
) -> Result<T, RuleError> {
    field(map, name)?.ok_or_else(|| RuleError::new(name, "is required"))
}

impl RuleDef {
    /// Parses a rule from JSON text and validates it; the error names the field at fault.
    pub fn from_json(text: &str) -> Result<RuleDef, RuleError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| RuleError::new("rule", format!("is not valid JSON: {e}")))?;
        RuleDef::from_value(&v)
    }

    /// Like [`RuleDef::from_json`], from a parsed JSON value.
    pub fn from_value(v: &Value) -> Result<RuleDef, RuleError> {
        let Value::Object(map) = v else {
            return Err(RuleError::new("rule", "must be a JSON object"));
        };
        if let Some(k) = map.keys().find(|k| !RULE_FIELDS.contains(&k.as_str())) {
            return Err(RuleError::new(
                k.as_str(),
                format!("unknown field; expected one of {}", RULE_FIELDS.join(", ")),
            ));
        }
        let actions = match map.get("actions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_ACTIONS {
                    return Err(RuleError::new(
                        "actions",
                        format!("at most {MAX_ACTIONS} actions, got {}", items.len()),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        RuleAction::from_value(a).map_err(|e| {
                            let field = if e.field.is_empty() {
                                format!("actions[{i}]")
                            } else {
                                format!("actions[{i}].{}", e.field)
                            };
                            RuleError::new(field, e.reason)
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => return Err(RuleError::new("actions", "must be an array")),
        };
        let raw = RawRule {
            id: required_field(map, "id")?,
            model: required_field(map, "model")?,
            kind: field(map, "kind")?,
            selector: field(map, "selector")?,
            metric: field(map, "metric")?,
            comparison: field(map, "comparison")?,
            threshold: field(map, "threshold")?,
            consecutive: field(map, "consecutive")?,
            segment: field(map, "segment")?,
            retrain_every: field(map, "retrain_every")?,
            event: field(map, "event")?,
            severity: required_field(map, "severity")?,
            actions,
            cooldown: field(map, "cooldown")?,
            description: field(map, "description")?,
            min_n: field(map, "min_n")?,
            inhibits: field(map, "inhibits")?.unwrap_or_default(),
        };
        let rule = RuleDef::try_from(raw)?;
        rule.validate()?;
        Ok(rule)
    }

    /// The JSON form (the flat object [`RuleDef::from_json`] reads; defaults written out).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(RawRule::from(self.clone())).unwrap_or(Value::Null)
    }

    /// Checks every value; the error names the field and says why.
    pub fn validate(&self) -> Result<(), RuleError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= MAX_RULE_ID_LEN
            && self.id.starts_with(|c: char| c.is_ascii_alphanumeric())
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !id_ok {
            return Err(RuleError::new(
                "id",
                format!(
                    "{:?} must be 1..={MAX_RULE_ID_LEN} characters of A-Z a-z 0-9 _ . - \
                     starting with a letter or digit",
                    self.id
                ),
            ));
        }
        if self.model != "*" {
            validate_name("model", &self.model).map_err(|e| RuleError::new("model", detail(e)))?;
        }
        match &self.kind {
            RuleKind::Metric(m) => m.validate()?,
            RuleKind::Freshness { retrain_every } => {
                parse_duration("retrain_every", retrain_every)?;
            }
            RuleKind::Event { event } => {
                let ok = !event.is_empty()
                    && event.len() <= MAX_EVENT_LEN
                    && event.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'_' | b'.' | b'-')
                    });
                if !ok {
                    return Err(RuleError::new(
                        "event",
                        format!(
                            "{event:?} must be 1..={MAX_EVENT_LEN} characters of a-z 0-9 _ . -, \
                             e.g. catalog_refresh or release"
                        ),
                    ));
                }
            }
        }
        if self.actions.len() > MAX_ACTIONS {
            return Err(RuleError::new(
                "actions",
                format!("at most {MAX_ACTIONS} actions, got {}", self.actions.len()),
            ));
        }
        for (i, a) in self.actions.iter().enumerate() {
            a.validate(&format!("actions[{i}]"))?;
        }
        if let Some(c) = &self.cooldown {
            parse_duration("cooldown", c)?;
        }
        if self.inhibits.len() > MAX_INHIBITS {
            return Err(RuleError::new(
                "inhibits",
                format!(
                    "at most {MAX_INHIBITS} patterns, got {}",
                    self.inhibits.len()
                ),
            ));
        }
        for (i, p) in self.inhibits.iter().enumerate() {
            let ok = !p.is_empty()
                && p.len() <= MAX_RULE_ID_LEN
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '?'));
            if !ok {
                return Err(RuleError::new(
                    format!("inhibits[{i}]"),
                    format!(
                        "{p:?} must be a rule id or a glob of one (A-Z a-z 0-9 _ . - and * ?), \
                         1..={MAX_RULE_ID_LEN} characters"
                    ),
                ));
            }
            if glob_match(p, &self.id) {
                return Err(RuleError::new(
                    format!("inhibits[{i}]"),
                    format!("{p:?} matches this rule itself"),
                ));
            }
        }
        if let Some(d) = &self.description
            && (d.len() > MAX_DESCRIPTION_LEN || d.chars().any(|c| c.is_control() && c != '\n'))
        {
            return Err(RuleError::new(
                "description",
                format!(
                    "must be at most {MAX_DESCRIPTION_LEN} bytes without control characters \
                     other than newlines"
                ),
            ));
        }
        Ok(())
    }

    /// Checks the rule against one model's definition when the rule names that model: the
    /// selected feature exists and the metric applies to it, a performance metric fits the
    /// task, the segment key exists. (Rules for `*` are checked per model at evaluation time
    /// through [`MetricRule::targets`], which skips what does not apply.)
    pub fn validate_for_model(&self, model: &ModelDef) -> Result<(), RuleError> {
        self.validate()?;
        if self.model != "*" && self.model != model.id {
            return Err(RuleError::new(
                "model",
                format!("rule is for model `{}`, not `{}`", self.model, model.id),
            ));
        }
        let RuleKind::Metric(m) = &self.kind else {
            return Ok(());
        };
        if let SegmentScope::Each(key) = &m.segment
            && !model.segments.iter().any(|k| k == key)
        {
            return Err(RuleError::new(
                "segment",
                format!("model `{}` has no segment key `{key}`", model.id),
            ));
        }
        if m.targets(model)?.is_empty() {
            let spec = m.metric_spec()?;
            let selector = m.selector()?;
            let why = match (spec.info.applies, &selector) {
                (Applies::Score, _) => {
                    format!("{} does not apply to {:?} models", spec.name(), model.task)
                        .to_lowercase()
                }
                (_, Selector::Feature(f)) if !model.features.contains_key(f) => {
                    return Err(RuleError::new(
                        "selector",
                        format!("model `{}` has no feature `{f}`", model.id),
                    ));
                }
                _ => format!(
                    "no series of model `{}` selected by `{}` is {}",
                    model.id,
                    m.selector,
                    match spec.info.applies {
                        Applies::Numeric => "numeric",
                        Applies::Categorical => "categorical",
                        _ => "known",
                    }
                ),
            };
            return Err(RuleError::new("metric", why));
        }
        Ok(())
    }

    /// Whether this rule, while it fires, inhibits rule `id` (an `inhibits` pattern matches it).
    pub fn inhibits_rule(&self, id: &str) -> bool {
        self.inhibits.iter().any(|p| glob_match(p, id))
    }

    /// Whether the rule applies to model `id` (names it, or is for every model).
    pub fn applies_to_model(&self, id: &str) -> bool {
        self.model == "*" || self.model == id
    }

    /// The cooldown in milliseconds (0 without one).
    pub fn cooldown_ms(&self) -> Result<i64, RuleError> {
        match &self.cooldown {
            None => Ok(0),
            Some(c) => parse_duration("cooldown", c).map(|d| d.millis()),
        }
    }

    /// The evaluation settings of a metric or freshness rule (`None` for event rules).
    ///
    /// A freshness rule is the check `age_days >= retrain_every_days` over one check in a row:
    /// feed [`freshness_age_days`] of the current version to the state machine.
    pub fn check(&self) -> Result<Option<Check>, RuleError> {
        let cooldown_ms = self.cooldown_ms()?;
        Ok(match &self.kind {
            RuleKind::Metric(m) => Some(Check {
                comparison: m.comparison,
                threshold: m.threshold,
                consecutive: m.consecutive.max(1),
                cooldown_ms,
            }),
            RuleKind::Freshness { retrain_every } => {
                let d = parse_duration("retrain_every", retrain_every)?;
                Some(Check {
                    comparison: Comparison::Ge,
                    threshold: Threshold::Absolute(d.millis() as f64 / DAY_MS),
                    consecutive: 1,
                    cooldown_ms,
                })
            }
            RuleKind::Event { .. } => None,
        })
    }

    /// For an event rule: whether an announcement of `event` for `model` at `at` fires it,
    /// given when it last fired for that model (the cooldown spaces firings apart).
    pub fn fires_on_event(
        &self,
        model: &str,
        event: &str,
        last_fired: Option<Timestamp>,
        at: Timestamp,
    ) -> bool {
        let RuleKind::Event { event: want } = &self.kind else {
            return false;
        };
        if want != event || !self.applies_to_model(model) {
            return false;
        }
        let cooldown = self.cooldown_ms().unwrap_or(0);
        last_fired.is_none_or(|t| at.millis().saturating_sub(t.millis()) >= cooldown)
    }

    /// The distinct action kinds, for listing.
    pub fn action_kinds(&self) -> BTreeSet<ActionKind> {
        self.actions.iter().map(|a| a.kind()).collect()
    }
}

/// Age in days of a model version trained (or loaded) at `trained_at`, at `now`: the value a
/// freshness rule compares with `retrain_every`.
pub fn freshness_age_days(trained_at: Timestamp, now: Timestamp) -> f64 {
    now.millis().saturating_sub(trained_at.millis()) as f64 / DAY_MS
}

fn parse_duration(field: &str, s: &str) -> Result<DurationMs, RuleError> {
    let d = DurationMs::parse(s).map_err(|_| {
        RuleError::new(
            field,
            format!("`{s}` is not a duration; expected e.g. 30m, 6h, 14d"),
        )
    })?;
    if d.millis() > MAX_DURATION_MS {
        return Err(RuleError::new(field, format!("`{s}` is longer than 3650d")));
    }
    Ok(d)
}

/// The reason inside an engine validation error.
fn detail(e: Error) -> String {
    match e {
        Error::InvalidArgument { detail, .. } => detail,
        other => other.to_string(),
    }
}

/// Formats a number for people: up to 4 decimals, trailing zeros trimmed; scientific for
/// very large or very small magnitudes.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e9).contains(&a) {
        return format!("{v:.3e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}
