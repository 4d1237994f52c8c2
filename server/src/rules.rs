//! Rules and alerts at the server (README.md, "Rules and alerts"): the rule store, the window-close evaluator, the
//! alert log behind `WatchAlerts` and `ListAlerts`, and the durable webhook outbox.
//!
//! The engine (`driftdb_engine::rules`) decides *what* happens — rule validation, the
//! consecutive-window state machine, payload shapes, the retry schedule. This module decides
//! *when* and makes it durable:
//!
//! ```text
//!  ingest ack ──observe()──▶ watermark per model ──wake──▶ scheduler (one task)
//!                                                          │ a window [s, s+w) is closed when
//!                                                          │ max(event watermark, clock) ≥ s+w+grace
//!                                                          ▼
//!                               DriftQL per rule on [s, s+w) → values → AlertState::step
//!                                                          │
//!              one RocksDB batch: states, alert log, history, outbox entries, cursor
//!                                                          │
//!                 ┌────────────────────────────────────────┴──────────────┐
//!                 ▼                                                       ▼
//!   WatchAlerts streams read the log                      delivery worker POSTs each entry,
//!   (a slow client only falls behind)                     retries with backoff, dead-letters
//! ```
//!
//! Everything that decides an alert is written in the same batch as the evaluation cursor, so a
//! crash either keeps the whole window's outcome or re-evaluates it; event ids
//! (rule, series, window, status) make a second evaluation of the same window record nothing.
//! Deliveries stay in the `outbox` family until the receiver answers 2xx or they are
//! dead-lettered, so a webhook down for an hour (or a restart) loses nothing.

mod book;
mod eval;
mod groups;
mod log;
mod outbox;
mod scheduler;
mod silences;
pub mod targets;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftdb_engine::rules::RetryPolicy;
use driftdb_engine::time::{Clock, DurationMs, Timestamp};
use driftdb_storage::Store;

pub use book::{RuleBook, StoredRule, redacted_json};
pub use groups::flush_due_groups;
pub use log::{Ack, ActionResult, AlertLog, AlertRecord};
pub use outbox::{DeliveryRecord, dead_letters, run_delivery};
pub use scheduler::{
    Handover, close_time, evaluate_due, handover_of, next_window, render_window_gauges,
    run_scheduler, window_backlog,
};
pub use silences::{SilenceBook, StoredSilence};

use crate::error::{Error, Result};
use crate::registry::Registry;

/// Settings of the rule evaluator and the webhook outbox (`"rules"` in `serve --config`).
#[derive(Debug, Clone, PartialEq)]
pub struct RulesConfig {
    /// How often the scheduler looks for closed windows without being woken by ingest
    /// (default 1 s). Ingest wakes it at once when an event closes a window.
    pub tick: Duration,
    /// After a long stop, at most this many past windows per model are evaluated on restart
    /// (default 96, one day of 15-minute windows); older ones are skipped with a warning.
    pub max_catchup_windows: u32,
    /// Webhook retries: first wait, longest wait, dead-letter deadline.
    pub retry: RetryPolicy,
    /// Time allowed for one webhook request (default 10 s).
    pub delivery_timeout: Duration,
    /// Webhook requests in flight at once (default 16).
    pub delivery_concurrency: usize,
    /// Refuse webhook targets on private, loopback and link-local addresses (default false;
    /// see [`targets`]).
    pub deny_private_targets: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            tick: Duration::from_secs(1),
            max_catchup_windows: 96,
            retry: RetryPolicy::default(),
            delivery_timeout: Duration::from_secs(10),
            delivery_concurrency: 16,
            deny_private_targets: false,
        }
    }
}

/// The JSON form of [`RulesConfig`]: every field optional, durations as text (`"1s"`, `"5m"`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfigFile {
    /// [`RulesConfig::tick`].
    pub tick: Option<String>,
    /// [`RulesConfig::max_catchup_windows`].
    pub max_catchup_windows: Option<u32>,
    /// [`RetryPolicy::initial`].
    pub retry_initial: Option<String>,
    /// [`RetryPolicy::max_delay`].
    pub retry_max: Option<String>,
    /// [`RetryPolicy::dead_letter_after`].
    pub dead_letter_after: Option<String>,
    /// [`RulesConfig::delivery_timeout`].
    pub delivery_timeout: Option<String>,
    /// [`RulesConfig::delivery_concurrency`].
    pub delivery_concurrency: Option<usize>,
    /// [`RulesConfig::deny_private_targets`].
    pub deny_private_targets: Option<bool>,
}

fn duration(field: &str, s: &str) -> Result<Duration> {
    let d = DurationMs::parse(s)
        .map_err(|_| Error::Invalid(format!("rules.{field}: `{s}` is not a duration")))?;
    Ok(Duration::from_millis(d.millis().max(0) as u64))
}

impl RulesConfigFile {
    /// The settings, defaults filled in.
    pub fn resolve(&self) -> Result<RulesConfig> {
        let mut c = RulesConfig::default();
        if let Some(t) = &self.tick {
            c.tick = duration("tick", t)?.max(Duration::from_millis(10));
        }
        if let Some(n) = self.max_catchup_windows {
            c.max_catchup_windows = n.max(1);
        }
        if let Some(t) = &self.retry_initial {
            c.retry.initial = duration("retry_initial", t)?.max(Duration::from_millis(1));
        }
        if let Some(t) = &self.retry_max {
            c.retry.max_delay = duration("retry_max", t)?;
        }
        if let Some(t) = &self.dead_letter_after {
            c.retry.dead_letter_after = duration("dead_letter_after", t)?;
        }
        if let Some(t) = &self.delivery_timeout {
            c.delivery_timeout = duration("delivery_timeout", t)?.max(Duration::from_millis(1));
        }
        if let Some(n) = self.delivery_concurrency {
            c.delivery_concurrency = n.clamp(1, 1024);
        }
        if let Some(d) = self.deny_private_targets {
            c.deny_private_targets = d;
        }
        Ok(c)
    }
}

/// What ingest has shown of a model: the newest event time and the versions seen.
#[derive(Debug, Default, Clone)]
pub(crate) struct Progress {
    /// Largest event timestamp accepted.
    pub watermark: Option<Timestamp>,
    /// Versions with accepted rows.
    pub versions: BTreeSet<String>,
}

/// Counters of the evaluator and the outbox, rendered on `/metrics`.
#[derive(Debug, Default)]
pub struct RulesMetrics {
    /// Windows evaluated (one model, one window).
    pub windows_evaluated: AtomicU64,
    /// Series-rule checks made (one rule on one series and window).
    pub checks: AtomicU64,
    /// Total evaluation time, microseconds.
    pub eval_micros: AtomicU64,
    /// Duration of the last window evaluation, microseconds.
    pub last_eval_micros: AtomicU64,
    /// Alerts fired.
    pub fired: AtomicU64,
    /// Alerts resolved.
    pub resolved: AtomicU64,
    /// Rule evaluations that failed (a query error), per rule and window.
    pub eval_errors: AtomicU64,
    /// Webhook deliveries that got a 2xx.
    pub delivered: AtomicU64,
    /// Webhook attempts that failed (to be retried or dead-lettered).
    pub delivery_failures: AtomicU64,
    /// Deliveries dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Deliveries waiting in the outbox.
    pub outbox_depth: AtomicU64,
}

/// The rule store, the alert log, the evaluator's view of ingest progress and the outbox
/// queue of one node.
#[derive(Debug)]
pub struct Rules {
    /// The store the rule book, alert log, states and outbox live in.
    pub store: Arc<Store>,
    /// The models the rules watch.
    pub registry: Arc<Registry>,
    /// Time source (window closes, cooldowns, alert times).
    pub clock: Arc<dyn Clock>,
    /// Rule definitions.
    pub book: RuleBook,
    /// Alert events and history.
    pub log: AlertLog,
    /// Silences.
    pub silences: SilenceBook,
    /// Settings.
    pub config: RulesConfig,
    /// Counters.
    pub metrics: RulesMetrics,
    progress: Mutex<HashMap<String, Progress>>,
    wake: tokio::sync::Notify,
    outbox_wake: tokio::sync::Notify,
    /// Turns true when the server shuts down: alert streams end so connections can close.
    stopping: tokio::sync::watch::Sender<bool>,
    /// A delivery waits until each of these holds the alert behind it where a successor
    /// finds it (`crate::checkpoint::DeliveryGate`): a saved checkpoint, a published cluster
    /// membership record. Set before serving.
    gates: std::sync::RwLock<Vec<Arc<crate::checkpoint::DeliveryGate>>>,
    /// When the node is one of several: which models it evaluates, and where the previous
    /// owner of a model left its evaluation ([`Ownership`]).
    ownership: std::sync::OnceLock<Arc<dyn Ownership>>,
}

/// What a node of several (`serve --cluster`, the `cluster` module) tells the rule scheduler.
pub trait Ownership: Send + Sync + std::fmt::Debug {
    /// Whether this node evaluates `model`'s windows now: it serves the model (or nobody has
    /// Kafka rows of it). Windows of a model served elsewhere are its owner's to evaluate.
    fn evaluates(&self, model: &str) -> bool;
    /// Where another member's evaluation of `model` got to, with its rule states, as that
    /// member last published it; the scheduler adopts it when it is ahead of its own.
    fn handed_over(&self, model: &str) -> Option<scheduler::Handover>;
}

impl Rules {
    /// Loads rules and the alert log from `store`.
    pub fn open(
        store: Arc<Store>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        config: RulesConfig,
    ) -> Result<Rules> {
        Ok(Rules {
            book: RuleBook::load(Arc::clone(&store))?,
            log: AlertLog::open(Arc::clone(&store))?,
            silences: SilenceBook::load(Arc::clone(&store))?,
            store,
            registry,
            clock,
            config,
            metrics: RulesMetrics::default(),
            progress: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            outbox_wake: tokio::sync::Notify::new(),
            stopping: tokio::sync::watch::channel(false).0,
            gates: std::sync::RwLock::new(Vec::new()),
            ownership: std::sync::OnceLock::new(),
        })
    }

    /// From now on, deliveries also wait for `gate` to hold their alert: a checkpoint, a
    /// published membership record (call before serving).
    pub fn hold_deliveries(&self, gate: Arc<crate::checkpoint::DeliveryGate>) {
        if let Ok(mut g) = self.gates.write() {
            g.push(gate);
        }
    }

    /// The gates deliveries wait for.
    pub(crate) fn gates(&self) -> Vec<Arc<crate::checkpoint::DeliveryGate>> {
        self.gates.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Evaluates only the models `o` says this node serves, and adopts the evaluation state a
    /// model's previous owner published (call before serving; a second one is ignored).
    pub fn set_ownership(&self, o: Arc<dyn Ownership>) {
        let _ = self.ownership.set(o);
    }

    /// The ownership of a cluster, if any.
    pub(crate) fn ownership(&self) -> Option<&Arc<dyn Ownership>> {
        self.ownership.get()
    }

    /// Called by ingest after a durable write: the newest event time of the batch's accepted
    /// rows and their versions. Wakes the scheduler when a window of the model may have closed.
    pub fn observe(
        &self,
        model: &str,
        newest: Timestamp,
        versions: impl IntoIterator<Item = String>,
    ) {
        let Ok(mut p) = self.progress.lock() else {
            return;
        };
        let entry = p.entry(model.to_string()).or_default();
        let advanced = entry.watermark.is_none_or(|w| newest > w);
        if advanced {
            entry.watermark = Some(newest);
        }
        for v in versions {
            if !entry.versions.contains(&v) {
                entry.versions.insert(v);
            }
        }
        drop(p);
        if advanced {
            self.wake.notify_one();
        }
    }

    /// Marks the firings an active silence matches at `now` (the first by id names it);
    /// resolutions follow their firing.
    pub(crate) fn mark_silenced(&self, alerts: &mut [log::NewAlert], now: Timestamp) {
        for na in alerts.iter_mut() {
            if na.suppressed.is_some()
                || na.alert.status != driftdb_engine::rules::AlertStatus::Firing
            {
                continue;
            }
            if let Some(id) = self.silences.silencing(&na.alert, now) {
                na.suppressed = Some(format!("silenced by {id}"));
            }
        }
    }

    /// Ends every alert stream (the server is shutting down).
    pub fn stop_watchers(&self) {
        self.stopping.send_replace(true);
    }

    /// Wakes the scheduler (a rule was added, a test moved the clock).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn progress(&self, model: &str) -> Progress {
        self.progress
            .lock()
            .ok()
            .and_then(|p| p.get(model).cloned())
            .unwrap_or_default()
    }

    pub(crate) fn remember_versions(&self, model: &str, versions: &BTreeSet<String>) {
        if let Ok(mut p) = self.progress.lock() {
            p.entry(model.to_string())
                .or_default()
                .versions
                .extend(versions.iter().cloned());
        }
    }

    /// The evaluator and outbox counters in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, v: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        put(
            "driftdb_rule_windows_evaluated_total",
            "counter",
            "Closed model windows whose rules were evaluated.",
            g(&m.windows_evaluated).to_string(),
        );
        put(
            "driftdb_rule_checks_total",
            "counter",
            "Rule checks made (one rule on one series and window).",
            g(&m.checks).to_string(),
        );
        put(
            "driftdb_rule_evaluation_seconds_total",
            "counter",
            "Time spent evaluating rules at window close.",
            format!("{}", g(&m.eval_micros) as f64 / 1e6),
        );
        put(
            "driftdb_rule_last_evaluation_seconds",
            "gauge",
            "Duration of the last window evaluation of one model.",
            format!("{}", g(&m.last_eval_micros) as f64 / 1e6),
        );
        put(
            "driftdb_rule_evaluation_errors_total",
            "counter",
            "Rule evaluations that failed (the rule's last_error says why).",
            g(&m.eval_errors).to_string(),
        );
        put(
            "driftdb_alerts_fired_total",
            "counter",
            "Alerts fired.",
            g(&m.fired).to_string(),
        );
        put(
            "driftdb_alerts_resolved_total",
            "counter",
            "Alerts resolved.",
            g(&m.resolved).to_string(),
        );
        put(
            "driftdb_webhook_delivered_total",
            "counter",
            "Webhook deliveries answered with 2xx.",
            g(&m.delivered).to_string(),
        );
        put(
            "driftdb_webhook_failures_total",
            "counter",
            "Webhook attempts that failed (retried later or dead-lettered).",
            g(&m.delivery_failures).to_string(),
        );
        put(
            "driftdb_webhook_dead_lettered_total",
            "counter",
            "Webhook deliveries given up on.",
            g(&m.dead_lettered).to_string(),
        );
        put(
            "driftdb_webhook_outbox_depth",
            "gauge",
            "Webhook deliveries waiting in the outbox.",
            g(&m.outbox_depth).to_string(),
        );
        out
    }
}

/// How the API shows a delivery target of action kind `kind` (Slack URLs without their secret
/// path, other URLs without their query string).
pub fn display_url_of(kind: &str, url: &str) -> String {
    crate::records::alerts::redacted_target(kind, url)
}

/// Parses, validates and stores a rule given as JSON text (a new rule, or the next version of
/// the rule with its id) for `caller`. Errors name the field at fault. A team key may only
/// write rules for its own models, and only over rule ids that are not another team's;
/// `"model": "*"` needs an operator key.
pub fn create_rule(
    rules: &Rules,
    caller: &crate::auth::Principal,
    json: &str,
) -> Result<Arc<StoredRule>> {
    let def = driftdb_engine::rules::RuleDef::from_json(json)
        .map_err(|e| Error::Invalid(format!("invalid rule: {e}")))?;
    let model = if def.model == "*" {
        caller.require_operator("a rule for every model (\"model\": \"*\")")?;
        None
    } else {
        Some(crate::auth::visible_model(
            &rules.registry,
            caller,
            &def.model,
        )?)
    };
    if rules.config.deny_private_targets {
        for (i, a) in def.actions.iter().enumerate() {
            if let Some(host) = targets::private_literal(a.url()) {
                return Err(Error::Invalid(format!(
                    "invalid rule: actions[{i}].url: {host} is a private or loopback address, which this server does not call (rules.deny_private_targets)"
                )));
            }
        }
    }
    if let Some(existing) = rules.book.get(&def.id)
        && !crate::auth::sees_rule_model(&rules.registry, caller, &existing.def.model)
    {
        return Err(Error::AlreadyExists {
            what: "rule id",
            name: def.id,
        });
    }
    let stored = rules
        .book
        .put(def, model.as_ref().map(|m| &m.def), rules.clock.now())?;
    rules.wake();
    Ok(stored)
}

/// Deletes rule `id` for `caller`; NOT_FOUND when unknown or not the caller's to see.
pub fn delete_rule(rules: &Rules, caller: &crate::auth::Principal, id: &str) -> Result<()> {
    match rules.book.get(id) {
        Some(r) if crate::auth::sees_rule_model(&rules.registry, caller, &r.def.model) => {
            rules.book.delete(id, rules.clock.now())
        }
        _ => Err(Error::NotFound {
            what: "rule",
            name: id.to_string(),
        }),
    }
}

/// Longest acknowledgement `by` and comment.
pub const MAX_ACK_BY_LEN: usize = 128;
/// Longest acknowledgement comment.
pub const MAX_ACK_COMMENT_LEN: usize = 1024;

/// Acknowledges firing `seq` for `caller` (who must see its model): `by` (1–128 characters)
/// and `comment` (≤ 1024 bytes) are recorded with the node's time.
pub fn acknowledge_alert(
    rules: &Rules,
    caller: &crate::auth::Principal,
    seq: u64,
    by: &str,
    comment: &str,
) -> Result<AlertRecord> {
    let by = by.trim();
    if by.is_empty() || by.len() > MAX_ACK_BY_LEN || by.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "by: must be 1..={MAX_ACK_BY_LEN} characters without control characters"
        )));
    }
    if comment.len() > MAX_ACK_COMMENT_LEN || comment.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::Invalid(format!(
            "comment: must be at most {MAX_ACK_COMMENT_LEN} bytes without control characters other than newlines"
        )));
    }
    let visible = rules
        .log
        .get(seq)?
        .is_some_and(|r| crate::auth::sees_rule_model(&rules.registry, caller, &r.model));
    if !visible {
        return Err(Error::NotFound {
            what: "alert",
            name: seq.to_string(),
        });
    }
    rules.log.acknowledge(
        seq,
        Ack {
            by: by.to_string(),
            comment: comment.to_string(),
            at_ms: rules.clock.now().millis(),
        },
    )
}

/// Whether `caller` may see and change silence `s`: operators every one; a team key those
/// whose model matcher names one of its team's models (not a pattern).
fn owns_silence(
    rules: &Rules,
    caller: &crate::auth::Principal,
    s: &driftdb_engine::rules::Silence,
) -> bool {
    if caller.is_operator() {
        return true;
    }
    !s.model_is_pattern()
        && s.matchers
            .get("model")
            .is_some_and(|m| crate::auth::sees_rule_model(&rules.registry, caller, m))
}

/// Parses, validates and stores a silence given as JSON text for `caller`. A model pattern
/// (`*`, `fraud-*`) needs an operator key; a team key may silence only its own models. The
/// model need not exist yet (a silence may precede a deployment) for operators.
pub fn create_silence(
    rules: &Rules,
    caller: &crate::auth::Principal,
    json: &str,
) -> Result<StoredSilence> {
    let now = rules.clock.now();
    let silence = driftdb_engine::rules::Silence::from_json(json, now)
        .map_err(|e| Error::Invalid(format!("invalid silence: {e}")))?;
    if silence.model_is_pattern() {
        caller.require_operator("a silence over a model pattern")?;
    } else if !caller.is_operator() {
        let model = silence.matchers.get("model").cloned().unwrap_or_default();
        crate::auth::visible_model(&rules.registry, caller, &model)?;
    }
    let stored = rules.silences.create(silence, now)?;
    tracing::info!(id = %stored.silence.id, by = %stored.silence.created_by, "silence created");
    Ok(stored)
}

/// Ends silence `id` now for `caller`; NOT_FOUND when unknown or not the caller's.
pub fn expire_silence(
    rules: &Rules,
    caller: &crate::auth::Principal,
    id: &str,
) -> Result<StoredSilence> {
    match rules.silences.get(id) {
        Some(s) if owns_silence(rules, caller, &s.silence) => {
            rules.silences.expire(id, rules.clock.now())
        }
        _ => Err(Error::NotFound {
            what: "silence",
            name: id.to_string(),
        }),
    }
}

/// The silences `caller` may see: pending and active ones (expired ones too with `expired`).
pub fn visible_silences(
    rules: &Rules,
    caller: &crate::auth::Principal,
    expired: bool,
) -> Vec<StoredSilence> {
    rules
        .silences
        .list(expired, rules.clock.now())
        .into_iter()
        .filter(|s| owns_silence(rules, caller, &s.silence))
        .collect()
}

/// One silence and every stored version of it, if `caller` may see it.
pub fn silence_history(
    rules: &Rules,
    caller: &crate::auth::Principal,
    id: &str,
) -> Result<(StoredSilence, Vec<StoredSilence>)> {
    match rules.silences.get(id) {
        Some(s) if owns_silence(rules, caller, &s.silence) => {
            let versions = rules.silences.history(id)?;
            Ok((s, versions))
        }
        _ => Err(Error::NotFound {
            what: "silence",
            name: id.to_string(),
        }),
    }
}

/// The rules `caller` may see that apply to `model` (every one for `None`), by id.
pub fn visible_rules(
    rules: &Rules,
    caller: &crate::auth::Principal,
    model: Option<&str>,
) -> Vec<Arc<StoredRule>> {
    rules
        .book
        .list(model)
        .into_iter()
        .filter(|r| crate::auth::sees_rule_model(&rules.registry, caller, &r.def.model))
        .collect()
}

/// Alert episodes `caller` may see: of `model` (NOT_FOUND unless visible), or of every model
/// the caller sees; newest first, at most `limit`.
pub fn alert_history(
    rules: &Rules,
    caller: &crate::auth::Principal,
    model: Option<&str>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    limit: usize,
) -> Result<Vec<AlertRecord>> {
    if let Some(m) = model {
        crate::auth::visible_model(&rules.registry, caller, m)?;
        return rules.log.history(Some(m), from, to, limit);
    }
    if caller.is_operator() {
        return rules.log.history(None, from, to, limit);
    }
    let models: Vec<String> = rules
        .registry
        .list()?
        .iter()
        .filter(|m| caller.sees_model(&m.def))
        .map(|m| m.def.id.clone())
        .collect();
    rules.log.history_of(&models, from, to, limit)
}

/// The dead letters of the alerts `caller` may see.
pub fn visible_dead_letters(
    rules: &Rules,
    caller: &crate::auth::Principal,
) -> Result<Vec<DeliveryRecord>> {
    let all = dead_letters(rules)?;
    if caller.is_operator() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for d in all {
        let model = rules.log.get(d.seq)?.map(|r| r.model);
        if model.is_some_and(|m| crate::auth::sees_model_id(&rules.registry, caller, &m)) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Announces `event` for `model` (optionally naming the version it concerns): every event rule
/// waiting for it fires once, outside its cooldown. Returns the alerts recorded.
pub fn announce_event(
    rules: &Rules,
    caller: &crate::auth::Principal,
    model: &str,
    event: &str,
    version: Option<&str>,
) -> Result<Vec<AlertRecord>> {
    if event.is_empty() || event.len() > 128 || event.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "event must be 1..=128 characters without control characters".into(),
        ));
    }
    let entry = crate::auth::visible_model(&rules.registry, caller, model)?;
    let version = match version {
        Some(v) => v.to_string(),
        None => entry
            .references
            .read()
            .ok()
            .and_then(|r| {
                r.values()
                    .max_by_key(|p| (p.created_at, p.version.clone()))
                    .map(|p| p.version.clone())
            })
            .unwrap_or_default(),
    };
    let now = rules.clock.now();
    let (ws, mut alerts) = eval::announce(rules, &entry, event, &version, now)?;
    rules.mark_silenced(&mut alerts, now);
    let recorded = rules.log.record(ws, alerts, now)?;
    rules
        .metrics
        .fired
        .fetch_add(recorded.records.len() as u64, Ordering::Relaxed);
    if recorded.needs_delivery() {
        rules.outbox_wake.notify_one();
    }
    Ok(recorded.records)
}

/// Which alerts a watcher or a listing wants, and who asks.
#[derive(Debug, Clone)]
pub struct AlertFilter {
    /// Only this model.
    pub model: Option<String>,
    /// Only this severity and worse.
    pub min_severity: Option<driftdb_engine::rules::Severity>,
    /// The caller: only alerts of models it may see pass.
    pub principal: crate::auth::Principal,
}

impl AlertFilter {
    /// Whether `r` passes the model and severity filters (the caller's team is checked by
    /// [`watch`] against the registry).
    pub fn accepts(&self, r: &AlertRecord) -> bool {
        self.model.as_ref().is_none_or(|m| *m == r.model)
            && self.min_severity.is_none_or(|s| r.severity >= s)
    }
}

/// Records read from the log per step of a watcher.
const WATCH_BATCH: usize = 256;

/// Alerts a watcher holds for its client: beyond this the watcher waits for the client to read
/// (each watcher reads the durable log at its own pace, so a slow client only falls behind).
const WATCH_BUFFER: usize = 64;

/// The alerts after sequence `after` that pass `filter`, then every new one as it is recorded,
/// until the receiver is dropped or the server stops. Each watcher reads the durable log at its
/// own pace: a slow one falls behind without holding up evaluation or other watchers, and holds
/// at most [`WATCH_BUFFER`] records (plus one read batch) in memory. `slot` is the watcher's
/// place among the node's open alert streams, held until it ends.
pub fn watch(
    rules: Arc<Rules>,
    after: u64,
    filter: AlertFilter,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> tokio::sync::mpsc::Receiver<AlertRecord> {
    let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        let mut sub = rules.log.subscribe();
        let mut stopping = rules.stopping.subscribe();
        let mut cursor = after;
        loop {
            sub.borrow_and_update();
            let n2 = Arc::clone(&rules);
            let batch =
                match tokio::task::spawn_blocking(move || n2.log.read_after(cursor, WATCH_BATCH))
                    .await
                {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "alert watch read failed");
                        return;
                    }
                    Err(_) => return,
                };
            let full = batch.len() == WATCH_BATCH;
            for r in batch {
                cursor = r.seq;
                if !filter.accepts(&r)
                    || !crate::auth::sees_model_id(&rules.registry, &filter.principal, &r.model)
                {
                    continue;
                }
                // A client that stops reading must not keep the server from shutting down.
                tokio::select! {
                    sent = tx.send(r) => if sent.is_err() { return },
                    () = outbox::stopped(&mut stopping) => return,
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                r = sub.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
                () = outbox::stopped(&mut stopping) => return,
            }
        }
    });
    rx
}
