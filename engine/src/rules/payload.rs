//! Alerts and the request bodies each action kind sends.
//!
//! Field names follow the receivers' documented APIs:
//! - PagerDuty Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`): `routing_key`,
//!   `event_action` (`trigger` | `resolve`), `dedup_key` (≤ 255 characters; the same for the
//!   trigger and the resolve of one alert), `payload.summary` (≤ 1024), `payload.source`,
//!   `payload.severity` (`critical` | `error` | `warning` | `info`), `payload.timestamp`,
//!   `payload.component`, `payload.group`, `payload.class`, `payload.custom_details`, `client`.
//!   A resolve carries only `routing_key`, `event_action` and `dedup_key`.
//! - Slack incoming webhooks: `text` (the notification fallback) and Block Kit `blocks`
//!   (`header` with plain text ≤ 150 characters, `section` with mrkdwn text ≤ 3000 or up to 10
//!   `fields` ≤ 2000 each, `context`). `&`, `<` and `>` are escaped in mrkdwn.
//! - Jira REST API v2 create issue (`POST /rest/api/2/issue`): `fields.project.key`,
//!   `fields.summary` (≤ 255), `fields.description` (plain text in v2), `fields.issuetype.name`.

use serde_json::{Map, Value, json};

use super::def::{Action, ActionKind, Comparison, RuleDef, RuleKind, Severity, fmt_num};
use super::state::Transition;
use crate::time::Timestamp;

/// Identifier of the JSON document the generic webhook sends.
pub const GENERIC_SCHEMA: &str = "driftdb.alert.v1";

const PAGERDUTY_SUMMARY_MAX: usize = 1024;
const DEDUP_KEY_MAX: usize = 255;
const SLACK_HEADER_MAX: usize = 150;
const SLACK_TEXT_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;
const JIRA_SUMMARY_MAX: usize = 255;

/// Whether an alert is starting or ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertStatus {
    /// The rule fired.
    Firing,
    /// The rule resolved.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// The series an alert is about, as the server names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlertTarget {
    /// Model id.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Series in DriftQL spelling (`amount`, `$score`); `None` for model-level rules.
    pub feature: Option<String>,
    /// Segment as shown in tables: `all` or `region=eu`.
    pub segment: String,
}

/// One alert: a firing or a resolution of one rule on one series, or an event rule's firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Rule id.
    pub rule_id: String,
    /// `metric`, `freshness` or `event`.
    pub rule_kind: &'static str,
    /// Model id.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Series (`None` for freshness and event alerts).
    pub feature: Option<String>,
    /// Segment: `all` or `key=value`.
    pub segment: String,
    /// Metric label (`auc`, `quantile(0.99)`, `ndcg@10`; `age_days` for freshness, `event`).
    pub metric: String,
    /// The rule's comparison (`None` for event alerts).
    pub comparison: Option<Comparison>,
    /// The window's value (age in days for freshness; `None` for event alerts).
    pub value: Option<f64>,
    /// The bound the value was compared with.
    pub threshold: Option<f64>,
    /// The metric's reference value, when the threshold used one.
    pub reference: Option<f64>,
    /// Severity of the rule.
    pub severity: Severity,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Start of the window (or the instant of the check or event) this alert is about.
    pub window: Timestamp,
    /// When the episode fired: end of the firing window, in event time.
    pub fired_at: Timestamp,
    /// When it resolved: end of the resolving window (`None` while firing).
    pub resolved_at: Option<Timestamp>,
    /// The announced event, for event alerts.
    pub event: Option<String>,
    /// The rule's description.
    pub description: Option<String>,
    /// One human line.
    pub summary: String,
    /// Stable per (rule, series): PagerDuty's `dedup_key`, so a resolve matches its trigger.
    pub dedup_key: String,
}

/// Credentials a delivery sends in its `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP Basic: `user:token`.
    Basic {
        /// The account.
        user: String,
        /// Its API token.
        token: String,
    },
}

/// A request to make: where, the JSON body, and the credentials if the action has any.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The action's kind.
    pub kind: ActionKind,
    /// Target URL.
    pub url: String,
    /// Body, sent as `application/json`.
    pub body: Value,
    /// Credentials for the `Authorization` header (Jira).
    pub auth: Option<DeliveryAuth>,
}

impl Alert {
    /// The alert for a transition of a metric or freshness rule on `target`. `window_ms` is
    /// the width of the model's windows (0 for freshness checks, whose "window" is the check
    /// instant): `fired_at` and `resolved_at` are the ends of the firing and resolving windows.
    pub fn from_transition(
        rule: &RuleDef,
        target: &AlertTarget,
        transition: &Transition,
        window_ms: i64,
    ) -> Alert {
        let (status, window, value, bound, reference, fired_window) = match *transition {
            Transition::Fired {
                window,
                value,
                bound,
                reference,
                ..
            } => (AlertStatus::Firing, window, value, bound, reference, window),
            Transition::Resolved {
                window,
                value,
                bound,
                reference,
                fired_window,
            } => (
                AlertStatus::Resolved,
                window,
                value,
                bound,
                reference,
                fired_window,
            ),
        };
        let end = |t: Timestamp| t.saturating_add_ms(window_ms.max(0));
        let (metric, comparison, threshold_note, feature, segment, dedup_key) = match &rule.kind {
            RuleKind::Metric(m) => {
                let label = m
                    .metric_spec()
                    .map(|s| s.label())
                    .unwrap_or_else(|_| m.metric.clone());
                let note = if let Some(a) = m.threshold.anomaly() {
                    Some(format!(
                        "baseline mean {}, {}",
                        reference.map_or_else(|| "?".into(), fmt_num),
                        a.describe()
                    ))
                } else {
                    m.threshold.needs_reference().then(|| {
                        format!(
                            "reference {} {}",
                            reference.map_or_else(|| "?".into(), fmt_num),
                            m.threshold.describe().trim_start_matches("reference ")
                        )
                    })
                };
                let feature = target.feature.clone();
                let key = dedup_key(&[
                    &rule.id,
                    &format!("{}@{}", target.model, target.version),
                    feature.as_deref().unwrap_or("-"),
                    &target.segment,
                ]);
                (
                    label,
                    m.comparison,
                    note,
                    feature,
                    target.segment.clone(),
                    key,
                )
            }
            // Freshness is model-level: one state and one dedup key per (rule, model), so a
            // retrained version resolves the alert its predecessor fired.
            RuleKind::Freshness { .. } | RuleKind::Event { .. } => (
                "age_days".to_string(),
                Comparison::Ge,
                None,
                None,
                crate::series::ALL_SEGMENT.to_string(),
                dedup_key(&[&rule.id, &target.model]),
            ),
        };
        let mut alert = Alert {
            rule_id: rule.id.clone(),
            rule_kind: rule.kind.as_str(),
            model: target.model.clone(),
            version: target.version.clone(),
            feature,
            segment,
            metric,
            comparison: Some(comparison),
            value: Some(value),
            threshold: Some(bound),
            reference,
            severity: rule.severity,
            status,
            window,
            fired_at: end(fired_window),
            resolved_at: (status == AlertStatus::Resolved).then(|| end(window)),
            event: None,
            description: rule.description.clone(),
            summary: String::new(),
            dedup_key,
        };
        alert.summary = alert.describe(threshold_note.as_deref());
        alert
    }

    /// The alert of an event rule for an announcement of `event` for `model`@`version` at `at`.
    /// Each announcement is its own alert (the dedup key includes the instant); it never
    /// resolves.
    pub fn for_event(
        rule: &RuleDef,
        model: &str,
        version: &str,
        event: &str,
        at: Timestamp,
    ) -> Alert {
        let mut alert = Alert {
            rule_id: rule.id.clone(),
            rule_kind: rule.kind.as_str(),
            model: model.to_string(),
            version: version.to_string(),
            feature: None,
            segment: crate::series::ALL_SEGMENT.to_string(),
            metric: "event".to_string(),
            comparison: None,
            value: None,
            threshold: None,
            reference: None,
            severity: rule.severity,
            status: AlertStatus::Firing,
            window: at,
            fired_at: at,
            resolved_at: None,
            event: Some(event.to_string()),
            description: rule.description.clone(),
            summary: String::new(),
            dedup_key: dedup_key(&[&rule.id, model, event, &at.millis().to_string()]),
        };
        alert.summary = alert.describe(None);
        alert
    }

    /// Unique per delivery-worthy change: dedup key, status and window. Suitable as an
    /// `Idempotency-Key` header and as the outbox entry's identity.
    pub fn event_id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.dedup_key,
            self.status.as_str(),
            self.window.millis()
        )
    }

    fn model_ref(&self) -> String {
        format!("{}@{}", self.model, self.version)
    }

    fn describe(&self, threshold_note: Option<&str>) -> String {
        let resolved = self.status == AlertStatus::Resolved;
        let prefix = if resolved {
            format!("Resolved {}: ", self.rule_id)
        } else {
            format!("{}: ", self.rule_id)
        };
        let value = self.value.map_or_else(|| "null".into(), fmt_num);
        let bound = self.threshold.map_or_else(|| "null".into(), fmt_num);
        let body = match self.rule_kind {
            "event" => format!(
                "event `{}` announced for {}",
                self.event.as_deref().unwrap_or(""),
                self.model_ref()
            ),
            "freshness" => {
                if resolved {
                    format!(
                        "{} is {value} days old, retrained within {bound} days",
                        self.model_ref()
                    )
                } else {
                    format!(
                        "{} is {value} days old, due for retraining every {bound} days",
                        self.model_ref()
                    )
                }
            }
            _ => {
                let words = match self.comparison.unwrap_or(Comparison::Gt) {
                    Comparison::Gt => "above",
                    Comparison::Ge => "at or above",
                    Comparison::Lt => "below",
                    Comparison::Le => "at or below",
                };
                let note = threshold_note
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                let verdict = if resolved {
                    format!("no longer {words} {bound}{note}")
                } else {
                    format!("{words} {bound}{note}")
                };
                format!(
                    "{} of {} on {} [{}] is {value}, {verdict}",
                    self.metric,
                    self.feature.as_deref().unwrap_or("-"),
                    self.model_ref(),
                    self.segment
                )
            }
        };
        format!("{prefix}{body}")
    }

    /// The alert's fields as a JSON object (shared by the generic webhook and PagerDuty's
    /// `custom_details`).
    fn fields(&self) -> Map<String, Value> {
        let num = |v: Option<f64>| {
            v.filter(|x| x.is_finite())
                .map_or(Value::Null, |x| json!(x))
        };
        let mut m = Map::new();
        m.insert("rule_id".into(), json!(self.rule_id));
        m.insert("rule_kind".into(), json!(self.rule_kind));
        m.insert("model".into(), json!(self.model));
        m.insert("version".into(), json!(self.version));
        m.insert("feature".into(), json!(self.feature));
        m.insert("segment".into(), json!(self.segment));
        m.insert("metric".into(), json!(self.metric));
        m.insert(
            "comparison".into(),
            json!(self.comparison.map(Comparison::as_str)),
        );
        m.insert("value".into(), num(self.value));
        m.insert("threshold".into(), num(self.threshold));
        m.insert("reference".into(), num(self.reference));
        m.insert("severity".into(), json!(self.severity.as_str()));
        m.insert("window_start".into(), json!(self.window.to_rfc3339()));
        m.insert("fired_at".into(), json!(self.fired_at.to_rfc3339()));
        m.insert(
            "resolved_at".into(),
            json!(self.resolved_at.map(Timestamp::to_rfc3339)),
        );
        m.insert("event".into(), json!(self.event));
        m.insert("description".into(), json!(self.description));
        m
    }
}

/// PagerDuty Events API v2: a `trigger` event while firing, a `resolve` (routing key, action
/// and dedup key only) when resolved.
pub fn pagerduty_payload(alert: &Alert, routing_key: &str) -> Value {
    match alert.status {
        AlertStatus::Resolved => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.dedup_key,
        }),
        AlertStatus::Firing => json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": alert.dedup_key,
            "payload": {
                "summary": truncate(&alert.summary, PAGERDUTY_SUMMARY_MAX),
                "source": format!("driftdb/{}", alert.model_ref()),
                "severity": alert.severity.pagerduty(),
                "timestamp": alert.fired_at.to_rfc3339(),
                "component": alert.feature.as_deref().unwrap_or(&alert.model),
                "group": alert.model,
                "class": alert.metric,
                "custom_details": Value::Object(alert.fields()),
            },
            "client": "driftdb",
        }),
    }
}

/// A Slack incoming-webhook message (firing and resolved): `text` fallback plus blocks.
pub fn slack_payload(alert: &Alert) -> Value {
    let text = escape_slack(&alert.summary);
    let header = format!(
        "{} · {} · {}",
        alert.status.as_str().to_uppercase(),
        alert.severity.as_str(),
        alert.rule_id
    );
    let series = match &alert.feature {
        Some(f) => format!("{f} [{}]", alert.segment),
        None => alert.segment.clone(),
    };
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), fmt_num);
    let threshold = match (alert.comparison, alert.threshold) {
        (Some(c), Some(t)) => format!("{} {}", c.as_str(), fmt_num(t)),
        _ => "-".into(),
    };
    let when = match alert.resolved_at {
        Some(t) => ("Resolved at", t.to_rfc3339()),
        None => ("Fired at", alert.fired_at.to_rfc3339()),
    };
    let field = |name: &str, value: &str| {
        json!({
            "type": "mrkdwn",
            "text": truncate(&format!("*{name}*\n{}", escape_slack(value)), SLACK_FIELD_MAX),
        })
    };
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&header, SLACK_HEADER_MAX)},
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&text, SLACK_TEXT_MAX)},
        }),
        json!({
            "type": "section",
            "fields": [
                field("Model", &alert.model_ref()),
                field("Series", &series),
                field("Metric", &alert.metric),
                field("Value", &num(alert.value)),
                field("Threshold", &threshold),
                field("Reference", &num(alert.reference)),
                field("Window", &alert.window.to_rfc3339()),
                field(when.0, &when.1),
            ],
        }),
    ];
    if let Some(d) = &alert.description {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate(&escape_slack(d), SLACK_FIELD_MAX)}],
        }));
    }
    json!({ "text": truncate(&text, SLACK_TEXT_MAX), "blocks": blocks })
}

/// Jira issue creation (REST API v2) for a firing alert; `None` when resolved (closing the
/// issue needs its key from the create response, which is the server's business).
pub fn jira_payload(alert: &Alert, project: &str, issue_type: &str) -> Option<Value> {
    if alert.status != AlertStatus::Firing {
        return None;
    }
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), fmt_num);
    let mut description = format!(
        "{}\n\nRule: {}\nModel: {}\nSeries: {} [{}]\nMetric: {}\nValue: {}\nThreshold: {} {}\n\
         Reference: {}\nSeverity: {}\nWindow: {}\nFired at: {}\nDedup key: {}\n",
        alert.summary,
        alert.rule_id,
        alert.model_ref(),
        alert.feature.as_deref().unwrap_or("-"),
        alert.segment,
        alert.metric,
        num(alert.value),
        alert.comparison.map_or("", Comparison::as_str),
        num(alert.threshold),
        num(alert.reference),
        alert.severity.as_str(),
        alert.window.to_rfc3339(),
        alert.fired_at.to_rfc3339(),
        alert.dedup_key,
    );
    if let Some(d) = &alert.description {
        description.push('\n');
        description.push_str(d);
        description.push('\n');
    }
    Some(json!({
        "fields": {
            "project": {"key": project},
            "summary": truncate(&format!("[driftdb] {}", alert.summary), JIRA_SUMMARY_MAX),
            "description": description,
            "issuetype": {"name": issue_type},
        }
    }))
}

/// The generic webhook body (firing and resolved): every field of the alert plus `schema`,
/// `status`, `summary`, `dedup_key` and `event_id`.
pub fn generic_payload(alert: &Alert) -> Value {
    let mut m = Map::new();
    m.insert("schema".into(), json!(GENERIC_SCHEMA));
    m.insert("status".into(), json!(alert.status.as_str()));
    m.insert("event_id".into(), json!(alert.event_id()));
    m.insert("dedup_key".into(), json!(alert.dedup_key));
    m.insert("summary".into(), json!(alert.summary));
    m.extend(alert.fields());
    Value::Object(m)
}

/// The retraining trigger for a firing alert; `None` when resolved.
pub fn retrain_payload(alert: &Alert) -> Option<Value> {
    (alert.status == AlertStatus::Firing).then(|| {
        json!({
            "action": "retrain",
            "model": alert.model,
            "version": alert.version,
            "reason": alert.summary,
            "rule_id": alert.rule_id,
            "severity": alert.severity.as_str(),
            "fired_at": alert.fired_at.to_rfc3339(),
            "event_id": alert.event_id(),
        })
    })
}

/// The route-to-backup request for a firing alert; `None` when resolved (routing back is a
/// human decision).
pub fn route_to_backup_payload(alert: &Alert, backup_version: Option<&str>) -> Option<Value> {
    (alert.status == AlertStatus::Firing).then(|| {
        json!({
            "action": "route_to_backup",
            "model": alert.model,
            "version": alert.version,
            "backup_version": backup_version,
            "reason": alert.summary,
            "rule_id": alert.rule_id,
            "severity": alert.severity.as_str(),
            "fired_at": alert.fired_at.to_rfc3339(),
            "event_id": alert.event_id(),
        })
    })
}

/// The request an action makes for an alert, or `None` when that kind sends nothing for the
/// alert's status (Jira, retrain and route-to-backup act on firing only).
pub fn render(action: &Action, alert: &Alert) -> Option<Delivery> {
    let body = match action {
        Action::Pagerduty { routing_key, .. } => Some(pagerduty_payload(alert, routing_key)),
        Action::Slack { .. } => Some(slack_payload(alert)),
        Action::Jira {
            project,
            issue_type,
            ..
        } => jira_payload(alert, project, issue_type),
        Action::Webhook { .. } => Some(generic_payload(alert)),
        Action::Retrain { .. } => retrain_payload(alert),
        Action::RouteToBackup { backup_version, .. } => {
            route_to_backup_payload(alert, backup_version.as_deref())
        }
    }?;
    Some(Delivery {
        kind: action.kind(),
        url: action.url().to_string(),
        body,
        auth: action_auth(action),
    })
}

/// The credentials an action's requests carry (Jira's token), if any.
pub(crate) fn action_auth(action: &Action) -> Option<DeliveryAuth> {
    match action {
        Action::Jira {
            user,
            token: Some(token),
            ..
        } => Some(match user {
            Some(user) => DeliveryAuth::Basic {
                user: user.clone(),
                token: token.clone(),
            },
            None => DeliveryAuth::Bearer(token.clone()),
        }),
        _ => None,
    }
}

/// `driftdb/<parts joined by />`, kept within PagerDuty's 255 characters: a longer key is cut
/// and suffixed with `#` and a 64-bit FNV-1a hash of the whole, so it stays unique and stable.
fn dedup_key(parts: &[&str]) -> String {
    let full = format!("driftdb/{}", parts.join("/"));
    if full.len() <= DEDUP_KEY_MAX {
        return full;
    }
    let mut cut = DEDUP_KEY_MAX - 17;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}#{:016x}", &full[..cut], fnv1a64(full.as_bytes()))
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack mrkdwn treats `&`, `<` and `>` as markup (`<!channel>` pings everyone).
pub(crate) fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
