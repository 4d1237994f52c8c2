//! Grouped notifications: an action with `group_by` sends one request for all the alerts of a
//! group instead of one per alert (README.md, "Grouping").
//!
//! An action object may carry three more fields besides its kind's own:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `group_by` | array | labels whose values make a group: `model`, `rule`, `severity`, `version`, `feature`, `segment`, `metric` (`[]` groups everything the action receives) |
//! | `group_wait` | duration | how long a new group collects alerts before it is sent (default `0s`: the alerts one evaluation of a model decides; set a wait to gather alerts of several models or windows) |
//! | `group_interval` | duration | the least time between two notifications of the same group (default `0s`) |
//!
//! Firings and resolutions are separate groups (a Slack message says "FIRING · 12 series" or
//! "RESOLVED · 12 series"). Actions with the same target and settings share groups, so two
//! rules posting to one Slack channel with `group_by: ["model"]` send one message per model.
//!
//! This module decides the group of an alert and what the grouped request looks like; the
//! server keeps pending groups durable and sends them when due.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::def::{Action, ActionKind, RuleError, Severity, fmt_num};
use super::payload::{
    Alert, AlertStatus, Delivery, action_auth, escape_slack, fnv1a64, generic_payload,
    truncate as cut,
};
use crate::time::DurationMs;

/// Schema id of the generic webhook's grouped body.
pub const GROUP_SCHEMA: &str = "driftdb.alert_group.v1";

/// The longest `group_wait` and `group_interval`: one day.
pub const MAX_GROUP_WAIT_MS: i64 = 86_400_000;

/// Members listed one by one in a Slack message or a Jira description; the rest are counted.
const LISTED_MEMBERS: usize = 20;

/// A label alerts can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupLabel {
    /// Model id.
    Model,
    /// Rule id.
    Rule,
    /// Rule severity.
    Severity,
    /// Model version.
    Version,
    /// Series (`amount`, `$score`; `-` for model-level rules).
    Feature,
    /// Segment (`all`, `region=eu`).
    Segment,
    /// Metric label.
    Metric,
}

impl GroupLabel {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupLabel::Model => "model",
            GroupLabel::Rule => "rule",
            GroupLabel::Severity => "severity",
            GroupLabel::Version => "version",
            GroupLabel::Feature => "feature",
            GroupLabel::Segment => "segment",
            GroupLabel::Metric => "metric",
        }
    }

    fn value(self, a: &Alert) -> String {
        match self {
            GroupLabel::Model => a.model.clone(),
            GroupLabel::Rule => a.rule_id.clone(),
            GroupLabel::Severity => a.severity.as_str().to_string(),
            GroupLabel::Version => a.version.clone(),
            GroupLabel::Feature => a.feature.clone().unwrap_or_else(|| "-".into()),
            GroupLabel::Segment => a.segment.clone(),
            GroupLabel::Metric => a.metric.clone(),
        }
    }
}

/// How an action groups the alerts it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// Labels whose values make a group (deduplicated, in the order given).
    pub by: Vec<GroupLabel>,
    /// How long a new group collects alerts (ms, 0 = one evaluation's alerts).
    pub wait_ms: i64,
    /// The least time between two notifications of one group (ms).
    pub interval_ms: i64,
}

/// One action of a rule: what to call, and how its alerts are grouped (none: one request per
/// alert). Reads as the action's object with the optional `group_by`, `group_wait` and
/// `group_interval` fields; dereferences to the [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleAction {
    /// What to call.
    pub action: Action,
    /// Grouping, when `group_by` is set.
    pub group: Option<Grouping>,
}

impl std::ops::Deref for RuleAction {
    type Target = Action;

    fn deref(&self) -> &Action {
        &self.action
    }
}

impl From<Action> for RuleAction {
    fn from(action: Action) -> RuleAction {
        RuleAction {
            action,
            group: None,
        }
    }
}

fn group_duration(field: &str, v: &Value) -> Result<i64, String> {
    let Some(s) = v.as_str() else {
        return Err(format!(
            "{field}: must be a duration such as \"30s\" or \"5m\""
        ));
    };
    let ms = if s.trim_start_matches('0').is_empty()
        || s.strip_suffix(['s', 'm', 'h'])
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b == b'0'))
    {
        0
    } else {
        DurationMs::parse(s)
            .map_err(|_| format!("{field}: `{s}` is not a duration; expected e.g. 0s, 30s, 5m"))?
            .millis()
    };
    if ms > MAX_GROUP_WAIT_MS {
        return Err(format!("{field}: `{s}` is longer than 1d"));
    }
    Ok(ms)
}

impl RuleAction {
    /// Parses an action object, its grouping fields included. Errors name the field.
    pub fn from_value(v: &Value) -> Result<RuleAction, RuleError> {
        let mut obj = match v {
            Value::Object(m) => m.clone(),
            _ => return Err(RuleError::new("", "an action must be a JSON object")),
        };
        let by = obj.remove("group_by");
        let wait = obj.remove("group_wait");
        let interval = obj.remove("group_interval");
        let action = Action::deserialize(Value::Object(obj))
            .map_err(|e| RuleError::new("", e.to_string()))?;
        let group = match by {
            None | Some(Value::Null) => {
                if let Some(f) = [("group_wait", &wait), ("group_interval", &interval)]
                    .iter()
                    .find(|(_, v)| v.is_some())
                {
                    return Err(RuleError::new(f.0, "needs group_by"));
                }
                None
            }
            Some(Value::Array(items)) => {
                let mut by = Vec::new();
                for item in &items {
                    let label = GroupLabel::deserialize(item).map_err(|_| {
                        RuleError::new(
                            "group_by",
                            format!(
                                "{item} is not a label; expected model, rule, severity, version, \
                                 feature, segment or metric"
                            ),
                        )
                    })?;
                    if !by.contains(&label) {
                        by.push(label);
                    }
                }
                let wait_ms = wait
                    .as_ref()
                    .map(|v| group_duration("group_wait", v))
                    .transpose()
                    .map_err(|e| RuleError::new("group_wait", e))?
                    .unwrap_or(0);
                let interval_ms = interval
                    .as_ref()
                    .map(|v| group_duration("group_interval", v))
                    .transpose()
                    .map_err(|e| RuleError::new("group_interval", e))?
                    .unwrap_or(0);
                Some(Grouping {
                    by,
                    wait_ms,
                    interval_ms,
                })
            }
            Some(_) => {
                return Err(RuleError::new(
                    "group_by",
                    "must be an array of labels, e.g. [\"model\", \"rule\"]",
                ));
            }
        };
        Ok(RuleAction { action, group })
    }

    /// The action object as written, grouping fields included.
    pub fn to_value(&self) -> Value {
        let mut v = serde_json::to_value(&self.action).unwrap_or(Value::Null);
        if let (Some(g), Value::Object(m)) = (&self.group, &mut v) {
            m.insert(
                "group_by".into(),
                json!(g.by.iter().map(|l| l.as_str()).collect::<Vec<_>>()),
            );
            m.insert("group_wait".into(), json!(ms_text(g.wait_ms)));
            m.insert("group_interval".into(), json!(ms_text(g.interval_ms)));
        }
        v
    }

    /// The identity of the group `alert` joins under this action: the action's target and
    /// settings, the grouping labels' values, and the status. Equal for every alert (of any
    /// rule) that one notification may carry. `None` when the action is not grouped.
    pub fn group_of(&self, alert: &Alert) -> Option<GroupId> {
        let g = self.group.as_ref()?;
        let labels: Vec<(String, String)> =
            g.by.iter()
                .map(|l| (l.as_str().to_string(), l.value(alert)))
                .collect();
        let mut bytes = serde_json::to_vec(&self.action).unwrap_or_default();
        for (k, v) in &labels {
            bytes.push(0);
            bytes.extend_from_slice(k.as_bytes());
            bytes.push(1);
            bytes.extend_from_slice(v.as_bytes());
        }
        let series = format!("{:016x}", fnv1a64(&bytes));
        Some(GroupId {
            key: format!("{series}/{}", alert.status.as_str()),
            series,
            labels,
        })
    }
}

fn ms_text(ms: i64) -> String {
    if ms == 0 {
        "0s".into()
    } else {
        DurationMs::new(ms).map_or_else(|_| format!("{ms}ms"), |d| d.to_string())
    }
}

impl Serialize for RuleAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for RuleAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        RuleAction::from_value(&v).map_err(serde::de::Error::custom)
    }
}

/// Which group an alert joins under one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupId {
    /// Unique per (action target, label values, status): the pending group's key.
    pub key: String,
    /// The same without the status: names the group's firing series and, for PagerDuty,
    /// the incident.
    pub series: String,
    /// The grouping labels and their values.
    pub labels: Vec<(String, String)>,
}

/// A group about to be sent: its labels, the status its members share, and the members.
#[derive(Debug, Clone)]
pub struct AlertGroup<'a> {
    /// The group (labels and keys).
    pub id: &'a GroupId,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The alerts, in the order they were recorded.
    pub members: &'a [Alert],
    /// Series of the group still firing after these alerts (0 when a resolution closed the
    /// last one).
    pub still_firing: usize,
}

impl AlertGroup<'_> {
    fn severity(&self) -> Severity {
        self.members
            .iter()
            .map(|a| a.severity)
            .max()
            .unwrap_or(Severity::Low)
    }

    fn label_text(&self) -> String {
        if self.id.labels.is_empty() {
            return "all alerts".into();
        }
        self.id
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn rules(&self) -> BTreeSet<&str> {
        self.members.iter().map(|a| a.rule_id.as_str()).collect()
    }

    fn models(&self) -> BTreeSet<&str> {
        self.members.iter().map(|a| a.model.as_str()).collect()
    }

    /// `FIRING: 12 alerts (model=fraud, rule=drift) — rules drift on fraud`.
    pub fn summary(&self) -> String {
        let n = self.members.len();
        let noun = if n == 1 { "alert" } else { "alerts" };
        let status = match self.status {
            AlertStatus::Firing => "FIRING",
            AlertStatus::Resolved => "RESOLVED",
        };
        let rules: Vec<&str> = self.rules().into_iter().collect();
        let models: Vec<&str> = self.models().into_iter().collect();
        format!(
            "{status}: {n} {noun} ({}) · rule {} on {}",
            self.label_text(),
            list_text(&rules, 3),
            list_text(&models, 3)
        )
    }

    /// The dedup key of the group's incident (PagerDuty): the same for its trigger and its
    /// resolve.
    pub fn dedup_key(&self) -> String {
        format!("driftdb/group/{}", self.id.series)
    }

    /// The idempotency key of this notification: the group and its first member's event.
    pub fn event_id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.dedup_key(),
            self.status.as_str(),
            self.members
                .first()
                .map_or_else(String::new, Alert::event_id)
        )
    }
}

fn list_text(items: &[&str], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..max].join(", "), items.len() - max)
    }
}

/// One member as a line: `amount [all] on fraud@v1: psi 0.31 > 0.2 (rule drift)`.
fn member_line(a: &Alert) -> String {
    let value = a.value.map_or_else(|| "-".into(), fmt_num);
    let cmp = match (a.comparison, a.threshold) {
        (Some(c), Some(t)) => format!(" {} {}", c.as_str(), fmt_num(t)),
        _ => String::new(),
    };
    match a.rule_kind {
        "event" => format!(
            "event `{}` on {}@{} (rule {})",
            a.event.as_deref().unwrap_or(""),
            a.model,
            a.version,
            a.rule_id
        ),
        _ => format!(
            "{} [{}] on {}@{}: {} {value}{cmp} (rule {})",
            a.feature.as_deref().unwrap_or("-"),
            a.segment,
            a.model,
            a.version,
            a.metric,
            a.rule_id
        ),
    }
}

fn listed(members: &[Alert], bullet: &str) -> String {
    let mut s: Vec<String> = members
        .iter()
        .take(LISTED_MEMBERS)
        .map(|a| format!("{bullet}{}", member_line(a)))
        .collect();
    if members.len() > LISTED_MEMBERS {
        s.push(format!("… and {} more", members.len() - LISTED_MEMBERS));
    }
    s.join("\n")
}

/// The request one action makes for a whole group, or `None` when its kind sends nothing for
/// the group's status (Jira, retrain and route-to-backup act on firing only; PagerDuty resolves
/// the group's incident only when no series of the group still fires).
pub fn render_group(action: &Action, group: &AlertGroup<'_>) -> Option<Delivery> {
    if group.members.is_empty() {
        return None;
    }
    let firing = group.status == AlertStatus::Firing;
    let kind = action.kind();
    if !firing && !kind.sends_on_resolve() {
        return None;
    }
    let summary = group.summary();
    let body = match action {
        Action::Pagerduty { routing_key, .. } => {
            if firing {
                let details: Vec<Value> = group.members.iter().map(generic_payload).collect();
                json!({
                    "routing_key": routing_key,
                    "event_action": "trigger",
                    "dedup_key": group.dedup_key(),
                    "payload": {
                        "summary": cut(&summary, 1024),
                        "source": format!("driftdb/{}", list_text(&group.models().into_iter().collect::<Vec<_>>(), 3)),
                        "severity": group.severity().pagerduty(),
                        "timestamp": group.members[0].fired_at.to_rfc3339(),
                        "group": group.label_text(),
                        "class": "driftdb.alert_group",
                        "custom_details": {"count": group.members.len(), "alerts": details},
                    },
                    "client": "driftdb",
                })
            } else if group.still_firing == 0 {
                json!({
                    "routing_key": routing_key,
                    "event_action": "resolve",
                    "dedup_key": group.dedup_key(),
                })
            } else {
                return None;
            }
        }
        Action::Slack { .. } => {
            let header = format!(
                "{} · {} · {} series",
                if firing { "FIRING" } else { "RESOLVED" },
                group.severity().as_str(),
                group.members.len(),
            );
            let mut text = escape_slack(&summary);
            if !firing && group.still_firing > 0 {
                text.push_str(&format!(
                    " ({} series of this group still firing)",
                    group.still_firing
                ));
            }
            let list = escape_slack(&listed(group.members, "• "));
            json!({
                "text": cut(&text, 3000),
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": cut(&header, 150)}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": cut(&text, 3000)}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": cut(&list, 3000)}},
                ],
            })
        }
        Action::Jira {
            project,
            issue_type,
            ..
        } => {
            let description = format!(
                "{summary}\n\n{}\n\nGroup key: {}\n",
                listed(group.members, "- "),
                group.dedup_key()
            );
            json!({
                "fields": {
                    "project": {"key": project},
                    "summary": cut(&format!("[driftdb] {summary}"), 255),
                    "description": description,
                    "issuetype": {"name": issue_type},
                }
            })
        }
        Action::Webhook { .. } => {
            let labels: Map<String, Value> = group
                .id
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({
                "schema": GROUP_SCHEMA,
                "status": group.status.as_str(),
                "group": labels,
                "group_key": group.dedup_key(),
                "event_id": group.event_id(),
                "summary": summary,
                "count": group.members.len(),
                "still_firing": group.still_firing,
                "alerts": group.members.iter().map(generic_payload).collect::<Vec<_>>(),
            })
        }
        Action::Retrain { .. } | Action::RouteToBackup { .. } => {
            let backup = match action {
                Action::RouteToBackup { backup_version, .. } => backup_version.clone(),
                _ => None,
            };
            let name = if kind == ActionKind::Retrain {
                "retrain"
            } else {
                "route_to_backup"
            };
            let models: Vec<Value> = group
                .models()
                .into_iter()
                .map(|m| {
                    let versions: BTreeSet<&str> = group
                        .members
                        .iter()
                        .filter(|a| a.model == m)
                        .map(|a| a.version.as_str())
                        .collect();
                    json!({"model": m, "versions": versions})
                })
                .collect();
            let mut body = json!({
                "action": name,
                "models": models,
                "reason": summary,
                "rules": group.rules(),
                "severity": group.severity().as_str(),
                "event_id": group.event_id(),
                "count": group.members.len(),
            });
            if kind == ActionKind::RouteToBackup
                && let Value::Object(m) = &mut body
            {
                m.insert("backup_version".into(), json!(backup));
            }
            body
        }
    };
    Some(Delivery {
        kind,
        url: action.url().to_string(),
        body,
        auth: action_auth(action),
    })
}
