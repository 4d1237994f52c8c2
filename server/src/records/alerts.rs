//! The alert log's records (alerts, event ids, episodes, event-rule marks) and the webhook
//! outbox's deliveries.

use driftdb_engine::codec::{Reader, Writer};
use driftdb_engine::rules::{ActionKind, DeliveryAuth, Severity, redact_url};
use driftdb_engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Record, RecordKind, corrupt, from_json, to_json};
use crate::error::Result;

/// What became of one action of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    /// Position of the action in the rule.
    pub index: u8,
    /// Its kind (`pagerduty`, `slack` …).
    pub kind: String,
    /// Where it goes (Slack URLs, which carry their secret in the path, shown without it).
    pub url: String,
    /// Whether a 2xx answer came back.
    pub delivered: bool,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Given up on.
    pub dead_lettered: bool,
    /// The grouped notification this alert joined (the group's key), for grouped actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// One firing or resolution, as recorded and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Sequence number (from 1).
    pub seq: u64,
    /// `dedup key / status / window`: unique per change.
    pub event_id: String,
    /// Stable per (rule, series).
    pub dedup_key: String,
    /// The rule.
    pub rule_id: String,
    /// The rule's version when it decided.
    pub rule_version: u64,
    /// `metric`, `freshness` or `event`.
    pub rule_kind: String,
    /// Model id.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Series (DriftQL spelling); none for model-level rules.
    pub feature: Option<String>,
    /// `all` or `key=value`.
    pub segment: String,
    /// Metric label (`psi`, `quantile(0.99)`, `age_days`, `event`).
    pub metric: String,
    /// The window's value.
    pub value: Option<f64>,
    /// The bound it was compared with.
    pub threshold: Option<f64>,
    /// The reference value (relative thresholds).
    pub reference: Option<f64>,
    /// `>`, `<` …
    pub comparison: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// `firing` or `resolved`.
    pub status: String,
    /// Start of the deciding window (ms).
    pub window_ms: i64,
    /// End of the window the episode fired on (ms).
    pub fired_at_ms: i64,
    /// End of the resolving window (ms).
    pub resolved_at_ms: Option<i64>,
    /// When the record was written (the node's clock, ms).
    pub recorded_at_ms: i64,
    /// One line for people.
    pub summary: String,
    /// The rule's description.
    pub description: Option<String>,
    /// The announced event (event rules).
    pub event: Option<String>,
    /// What each action did.
    pub actions: Vec<ActionResult>,
    /// Why no action was called, when none was: `silenced by s-3`, `inhibited by rule
    /// missing-x (region=eu)`, or the reason its firing was not delivered (for a resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// Who acknowledged the alert (a firing), when and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
}

/// An acknowledgement of a firing: someone is on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Who.
    pub by: String,
    /// A note ("looking into the feed", a ticket).
    pub comment: String,
    /// When (the node's clock, ms).
    pub at_ms: i64,
}

/// One alert episode: the firing and, once resolved, the resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// End of the window it fired on (ms).
    pub fired_at_ms: i64,
    /// The firing's sequence.
    pub fire_seq: Option<u64>,
    /// The resolution's sequence.
    pub resolve_seq: Option<u64>,
}

/// One webhook request to make, as stored in the outbox: the real target and credentials
/// (the outbox is the one place besides the rule's secrets record that holds them, because it
/// must deliver); every answer about it shows `crate::rules::display_url_of` instead.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The alert's sequence number.
    pub seq: u64,
    /// The action's position in its rule.
    pub index: u8,
    /// Action kind.
    pub kind: String,
    /// Target URL.
    pub url: String,
    /// JSON body.
    pub body: Value,
    /// Credentials for the `Authorization` header (Jira), if the action has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<DeliveryAuth>,
    /// The alert's event id (sent as `Idempotency-Key`).
    pub event_id: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the first attempt failed (wall clock, ms).
    pub first_failure_ms: Option<i64>,
    /// Not before this instant (wall clock, ms; 0 = at once).
    pub next_at_ms: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// For a grouped notification: every alert (sequence, action index) it carries, whose
    /// action results follow this delivery's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<(u64, u8)>,
}

/// Alerts of one group waiting to be sent by one action as one notification (outbox
/// `'P' | str(key)`). Holds the action with its secrets, like a [`DeliveryRecord`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingGroup {
    /// The group's key (target, labels, status).
    pub key: String,
    /// The key without the status.
    pub series: String,
    /// Grouping labels and their values.
    pub labels: Vec<(String, String)>,
    /// `firing` or `resolved`.
    pub status: String,
    /// The action that sends it.
    pub action: driftdb_engine::rules::Action,
    /// When to send (wall clock, ms).
    pub due_ms: i64,
    /// The alerts (sequence, action index), in the order recorded.
    pub members: Vec<(u64, u8)>,
    /// The action's `group_interval` (ms): a send is remembered only when it is positive.
    #[serde(default)]
    pub interval_ms: i64,
}

impl std::fmt::Debug for PendingGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the action (it holds secrets).
        f.debug_struct("PendingGroup")
            .field("key", &self.key)
            .field("labels", &self.labels)
            .field("status", &self.status)
            .field("due_ms", &self.due_ms)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

/// What one group (of one action target and label values) fires and has sent (outbox
/// `'F' | str(series)`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// Dedup keys of the group's series now firing.
    pub firing: std::collections::BTreeSet<String>,
    /// When a notification of each status was last sent out (wall clock, ms).
    pub last_sent_ms: std::collections::BTreeMap<String, i64>,
}

impl std::fmt::Debug for DeliveryRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL's secret parts, the credentials or the body (a PagerDuty body holds
        // the routing key).
        f.debug_struct("DeliveryRecord")
            .field("seq", &self.seq)
            .field("index", &self.index)
            .field("kind", &self.kind)
            .field("url", &redacted_target(&self.kind, &self.url))
            .field("event_id", &self.event_id)
            .field("attempts", &self.attempts)
            .field("next_at_ms", &self.next_at_ms)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

/// A delivery target as every answer shows it: without its secret parts. An unknown action
/// kind shows as little as a Slack URL.
pub fn redacted_target(kind: &str, url: &str) -> String {
    let k = [
        ActionKind::Pagerduty,
        ActionKind::Slack,
        ActionKind::Jira,
        ActionKind::Webhook,
        ActionKind::Retrain,
        ActionKind::RouteToBackup,
    ]
    .into_iter()
    .find(|k| k.as_str() == kind)
    .unwrap_or(ActionKind::Slack);
    redact_url(k, url)
}

/// The sequence an event id was recorded as (recording it again writes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSeq(pub u64);

/// When an event rule last fired for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFired(pub Timestamp);

macro_rules! json_record {
    ($t:ty, $kind:expr, $what:expr) => {
        impl Record for $t {
            const KIND: RecordKind = $kind;
            const WHAT: &'static str = $what;

            fn encode(&self) -> Result<Vec<u8>> {
                to_json(self)
            }

            fn decode(payload: &[u8]) -> Result<Self> {
                from_json(Self::WHAT, payload)
            }
        }
    };
}

json_record!(AlertRecord, RecordKind::Alert, "alert record");
json_record!(Episode, RecordKind::Episode, "alert episode");
json_record!(DeliveryRecord, RecordKind::Delivery, "webhook delivery");
json_record!(
    PendingGroup,
    RecordKind::PendingGroup,
    "pending alert group"
);
json_record!(GroupState, RecordKind::GroupState, "alert group state");

impl Record for EventSeq {
    const KIND: RecordKind = RecordKind::EventId;
    const WHAT: &'static str = "event id";

    fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.varint(self.0);
        Ok(w.into_bytes())
    }

    fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let seq = r.varint().map_err(|e| corrupt(Self::WHAT, e))?;
        r.finish(Self::WHAT).map_err(|e| corrupt(Self::WHAT, e))?;
        Ok(EventSeq(seq))
    }
}

impl Record for EventFired {
    const KIND: RecordKind = RecordKind::EventFired;
    const WHAT: &'static str = "event rule mark";

    /// The time as an f64 of milliseconds (the layout older builds wrote).
    fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.f64(self.0.millis() as f64);
        Ok(w.into_bytes())
    }

    fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let ms = r.f64().map_err(|e| corrupt(Self::WHAT, e))?;
        r.finish(Self::WHAT).map_err(|e| corrupt(Self::WHAT, e))?;
        Ok(EventFired(Timestamp(ms as i64)))
    }
}
