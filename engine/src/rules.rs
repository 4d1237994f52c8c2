//! Alert rules (README.md, "Rules and alerts"): definitions and their validation, the per-series evaluation state
//! machine, alert payloads for each action kind, and the webhook retry schedule.
//!
//! Everything here is pure: time comes in as arguments, nothing is stored or sent. The server
//! owns the rule store, the window-close scheduler, the persisted [`AlertState`]s and the
//! delivery outbox; this module decides *what* happens and *what the bytes look like*.
//!
//! - [`RuleDef`]: a rule as uploaded (JSON), [`RuleDef::from_json`] parses and validates it;
//! - [`Check`] and [`AlertState`]: fire after N consecutive breaching windows, resolve after N
//!   consecutive healthy ones, ignore replays, honour the cooldown; the state round-trips
//!   through the codec envelope;
//! - [`Alert`] and [`render`]: PagerDuty Events v2, Slack, Jira, generic, retrain and
//!   route-to-backup bodies;
//! - [`RetryPolicy`]: the deterministic exponential backoff and the dead-letter deadline;
//! - [`Silence`]: matchers and a time span during which matching alerts are recorded but not
//!   delivered.
//!
//! # Rule JSON
//!
//! A rule is one flat JSON object; unknown fields are rejected. Fields common to every kind:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `id` | string | 1–128 characters of `A-Z a-z 0-9 _ . -`, starting with a letter or digit |
//! | `model` | string | a model id, or `*` for every model |
//! | `kind` | string | `metric` (default), `freshness` or `event` |
//! | `severity` | string | `critical`, `high`, `medium` or `low` |
//! | `actions` | array | what to call (below); may be empty: the alert still reaches history and `WatchAlerts` |
//! | `cooldown` | duration | optional, e.g. `1h`: no new firing of a series this long after it resolved |
//! | `description` | string | optional note (≤ 1024 bytes) copied into every alert |
//! | `inhibits` | array | optional, ≤ 16 rule ids or globs (`drift-*`): while a series of this rule fires, alerts of the matching rules on the same model — and the same segment, unless the firing series is the overall one — are recorded as inhibited and not delivered (a missing-rate alert mutes the drift alerts it causes) |
//!
//! `kind: "metric"` (a window-close rule) adds:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `selector` | string | a feature name, a glob (`txn_*`, `?` matches one character), `*` (every feature), `$score`, `$label`, `$latency`, or `$performance` (the model's labelled performance, i.e. performance metrics of `$score`) |
//! | `metric` | string | a DriftQL metric: `psi`, `ks`, `auc`, `quantile(0.99)`, `ndcg(10)` … (see [`MetricSpec`]) |
//! | `comparison` | string | `>`, `>=`, `<` or `<=`: the window *breaches* when `value comparison bound` holds |
//! | `threshold` | number or object | `0.2` (absolute bound), `{"relative": -0.05}` (bound = reference + (−0.05)·\|reference\|, a 5 % drop), `{"delta": -0.03}` (bound = reference − 0.03) |
//! | `consecutive` | integer | windows in a row to fire, and to resolve (default 3, 1–1000) |
//! | `segment` | string or object | `"all"` (default: the overall segment) or `{"each": "region"}` (every value of segment key `region`, each with its own state) |
//! | `min_n` | integer | optional: a window with fewer rows than this (the metric's `n`) is not judged — it neither breaches nor heals |
//!
//! `kind: "freshness"` adds `retrain_every` (a duration such as `14d`): the rule breaches when
//! the model's current version is older than that; it fires and resolves on one check.
//! `kind: "event"` adds `event` (e.g. `catalog_refresh`, `release`): the rule fires once for
//! each such event announced for the model; event alerts never resolve.
//!
//! Actions are objects tagged by `kind`:
//!
//! | kind | fields |
//! |---|---|
//! | `pagerduty` | `routing_key`, optional `url` (default the Events v2 endpoint) |
//! | `slack` | `url` (the incoming-webhook URL) |
//! | `jira` | `url` (the create-issue endpoint, `…/rest/api/2/issue`), `project` (key), optional `issue_type` (default `Task`), optional `token` (sent as `Authorization: Bearer`) or `user` + `token` (HTTP Basic, Jira Cloud) |
//! | `webhook` | `url` (generic JSON) |
//! | `retrain` | `url` (the retraining pipeline's trigger) |
//! | `route_to_backup` | `url`, optional `backup_version` |
//!
//! URLs must be `http` or `https`, have a host and carry no credentials; whether private
//! addresses are allowed is the server's decision.
//!
//! ```json
//! {"id": "fraud-auc-drop", "model": "fraud", "selector": "$performance", "metric": "auc",
//!  "comparison": "<", "threshold": {"relative": -0.05}, "consecutive": 3,
//!  "segment": {"each": "region"}, "severity": "critical", "cooldown": "2h",
//!  "actions": [{"kind": "pagerduty", "routing_key": "R0UT1NGKEY"}]}
//! ```

mod anomaly;
mod def;
mod glob;
mod group;
mod payload;
mod retry;
mod silence;
mod state;
mod url;

#[cfg(test)]
mod tests;

pub use anomaly::{
    Anomaly, Baseline, BaselineStats, DEFAULT_MIN_WINDOWS, Direction, MAX_SAME_TIME_DAYS,
    MAX_TRAILING_MS, REFERENCE_SPAN_MS,
};
pub use def::{
    Action, ActionKind, Comparison, DEFAULT_CONSECUTIVE, DEFAULT_JIRA_ISSUE_TYPE,
    DEFAULT_PAGERDUTY_URL, MAX_ACTIONS, MAX_CONSECUTIVE, MAX_INHIBITS, MAX_MIN_N, MAX_RULE_ID_LEN,
    MetricFamily, MetricRule, MetricSpec, RuleDef, RuleError, RuleKind, SegmentScope, Selector,
    Severity, Threshold, freshness_age_days,
};
pub use glob::glob_match;
pub use group::{
    AlertGroup, GROUP_SCHEMA, GroupId, GroupLabel, Grouping, MAX_GROUP_WAIT_MS, RuleAction,
    render_group,
};
pub use payload::{
    Alert, AlertStatus, AlertTarget, Delivery, DeliveryAuth, GENERIC_SCHEMA, generic_payload,
    jira_payload, pagerduty_payload, render, retrain_payload, route_to_backup_payload,
    slack_payload,
};
pub use retry::{DeliveryOutcome, RetryPolicy, classify_status};
pub use silence::{
    MAX_SILENCE_COMMENT_LEN, MAX_SILENCE_FIELD_LEN, MAX_SILENCE_MS, SILENCE_MATCHERS, Silence,
    SilenceState,
};
pub use state::{ALERT_STATE_KIND, AlertState, Check, Transition, Verdict};
pub use url::{MAX_URL_LEN, WebhookUrl, redact_url, validate_webhook_url};
