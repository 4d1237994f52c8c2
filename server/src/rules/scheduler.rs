//! The window-close scheduler: finds each model's closed windows and evaluates its rules on
//! them, in order, exactly once.
//!
//! A window `[s, s + w)` of a model with grace `g` is closed once
//! `max(event watermark, clock) ≥ s + w + g`, where the event watermark is the newest event
//! time ingest has accepted for the model. Event time alone would let a model whose traffic
//! stopped never close a window (and never alert); the clock alone would close windows of a
//! replay or simulation before their data arrived.
//!
//! Each model has a cursor in `meta` (`'C' | str(model)`: the next window to evaluate and the
//! versions seen), written in the same batch as the window's states and alerts. A new model
//! starts at its currently open window; after a long stop at most `max_catchup_windows` past
//! windows are evaluated.
//!
//! When the node is one of several (`serve --cluster`), it evaluates only the models it serves
//! ([`super::Ownership`]); a model it takes over starts where its previous owner's published
//! [`Handover`] says that owner's evaluation got to, with that owner's rule states, so no
//! window is evaluated twice across the move.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use driftdb_engine::rules::RuleKind;
use driftdb_engine::time::{DurationMs, Timestamp};
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, WriteSet};

use super::Rules;
use super::eval::evaluate_window;
use crate::error::Result;
use crate::records::{self, EvalCursor};
use crate::registry::ModelEntry;

type Cursor = EvalCursor;

fn cursor_key(model: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_RULE_CURSOR)
        .str(model)
        .finish()
}

fn load_cursor(rules: &Rules, model: &str) -> Result<Option<Cursor>> {
    records::get(&rules.store, Family::Meta, &cursor_key(model))
}

fn put_cursor(ws: &mut WriteSet, model: &str, c: &Cursor) -> Result<()> {
    records::put(ws, Family::Meta, cursor_key(model), c)
}

/// When the window starting at `start` closes: its end plus the model's grace.
pub fn close_time(model: &ModelEntry, start: Timestamp) -> Timestamp {
    let grace = DurationMs::parse(&model.def.grace)
        .map(DurationMs::millis)
        .unwrap_or(0);
    start.saturating_add_ms(model.resolution.width_ms().saturating_add(grace))
}

/// Evaluates every closed, not yet evaluated window of every model. Returns the number of
/// windows evaluated.
///
/// Models are independent (own cursor, own states, own batch), so they are spread over
/// worker threads: twice the cores, since a model's evaluation ends in a durable (fsync'd)
/// write that other models can overlap.
pub fn evaluate_due(rules: &Rules) -> Result<usize> {
    let models = rules.registry.list()?;
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_mul(2)
        .min(models.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(model) = models.get(i) else { break };
            match evaluate_model(rules, model) {
                Ok(n) => {
                    done.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(model = %model.def.id, error = %e, "rule evaluation failed");
                }
            }
        }
    };
    if workers == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    Ok(done.into_inner())
}

/// Where a model's rule evaluation stands on the node that serves it, as that node publishes it
/// in its cluster membership record: the next window to evaluate and every stored rule state of
/// the model (their keys and sealed values, base64), read together.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Handover {
    /// Start of the next window to evaluate (ms).
    pub next_ms: i64,
    /// Versions seen so far.
    #[serde(default)]
    pub versions: BTreeSet<String>,
    /// `(key, state)` of each stored rule state, base64.
    #[serde(default)]
    pub states: Vec<(String, String)>,
}

/// The [`Handover`] of each of `models` that has a cursor: its cursor and rule states read
/// together (read again when an evaluation moved the cursor in between).
pub fn handover_of(rules: &Rules, models: &[String]) -> Result<BTreeMap<String, Handover>> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = BTreeMap::new();
    for m in models {
        for _ in 0..8 {
            let Some(before) = load_cursor(rules, m)? else {
                break;
            };
            let states = super::eval::load_states(rules, m)?;
            if load_cursor(rules, m)?.as_ref() != Some(&before) {
                continue;
            }
            let mut states: Vec<(String, String)> = states
                .into_iter()
                .map(|(k, s)| (b64.encode(k), b64.encode(s.encode())))
                .collect();
            states.sort();
            out.insert(
                m.clone(),
                Handover {
                    next_ms: before.next_ms,
                    versions: before.versions,
                    states,
                },
            );
            break;
        }
    }
    Ok(out)
}

/// Takes over `h` for `model` in one batch: the cursor, and the rule states in place of this
/// node's own. Returns the cursor.
fn adopt(rules: &Rules, model: &str, h: &Handover) -> Result<Cursor> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ws = WriteSet::new();
    for k in super::eval::load_states(rules, model)?.keys() {
        ws.delete(Family::Alerts, k.clone());
    }
    let prefix = KeyWriter::with_prefix(layout::ALERT_RULE_STATE)
        .str(model)
        .finish();
    for (k, v) in &h.states {
        let (Ok(k), Ok(v)) = (b64.decode(k), b64.decode(v)) else {
            tracing::warn!(model, "a handed-over rule state is not base64; skipped");
            continue;
        };
        let Ok(state) = driftdb_engine::rules::AlertState::decode(&v) else {
            tracing::warn!(model, "a handed-over rule state does not decode; skipped");
            continue;
        };
        if !k.starts_with(&prefix) {
            tracing::warn!(model, "a handed-over rule state of another model; skipped");
            continue;
        }
        records::put(&mut ws, Family::Alerts, k, &state)?;
    }
    let c = Cursor {
        next_ms: h.next_ms,
        versions: h.versions.clone(),
    };
    put_cursor(&mut ws, model, &c)?;
    rules.store.write(&ws)?;
    tracing::info!(
        model,
        next_ms = h.next_ms,
        states = h.states.len(),
        "rule evaluation taken over from the model's previous owner"
    );
    Ok(c)
}

fn evaluate_model(rules: &Rules, model: &Arc<ModelEntry>) -> Result<usize> {
    let id = &model.def.id;
    let width = model.resolution.width_ms();
    let ownership = rules.ownership();
    if ownership.is_some_and(|o| !o.evaluates(id)) {
        // Served by another member (or moving): its windows are the owner's to evaluate.
        return Ok(0);
    }
    let progress = rules.progress(id);
    let now = rules.clock.now();
    let mark = progress.watermark.map_or(now, |w| w.max(now));
    let own = load_cursor(rules, id)?;
    let handed = ownership
        .and_then(|o| o.handed_over(id))
        .filter(|h| own.as_ref().is_none_or(|c| h.next_ms > c.next_ms));
    let mut cursor = match (own, handed) {
        (_, Some(h)) => adopt(rules, id, &h)?,
        (Some(c), None) => c,
        (None, None) => {
            // Start at the window still open at `mark`: the first one to close from now on.
            // Written at once, so the start does not move with the clock until a window closes.
            let grace = close_time(model, Timestamp(0)).millis() - width;
            let c = Cursor {
                next_ms: model
                    .resolution
                    .window_start(mark.saturating_add_ms(-grace))
                    .millis(),
                versions: BTreeSet::new(),
            };
            let mut ws = WriteSet::new();
            put_cursor(&mut ws, id, &c)?;
            rules.store.write(&ws)?;
            c
        }
    };
    rules.remember_versions(id, &cursor.versions);
    let mut versions = cursor.versions.clone();
    versions.extend(progress.versions.iter().cloned());
    if let Ok(refs) = model.references.read() {
        versions.extend(refs.keys().cloned());
    }
    // Catch up at most `max_catchup_windows` windows.
    let closed_through = {
        let mut s = Timestamp(cursor.next_ms);
        let limit = i64::from(rules.config.max_catchup_windows);
        let last_closed = {
            // Largest start whose close time is <= mark.
            let grace_plus_width = close_time(model, Timestamp(0)).millis();
            model
                .resolution
                .window_start(mark.saturating_add_ms(-grace_plus_width))
        };
        if last_closed.millis() >= s.millis() {
            let behind = (last_closed.millis() - s.millis()) / width + 1;
            if behind > limit {
                let skip_to = last_closed.millis() - (limit - 1) * width;
                tracing::warn!(
                    model = %id,
                    skipped = behind - limit,
                    "rule evaluation fell behind; skipping the oldest closed windows"
                );
                s = Timestamp(skip_to);
            }
        }
        cursor.next_ms = s.millis();
        last_closed
    };
    let active: Vec<_> = rules
        .book
        .list(Some(id))
        .into_iter()
        .filter(|r| !matches!(r.def.kind, RuleKind::Event { .. }))
        .collect();
    let mut n = 0;
    while cursor.next_ms <= closed_through.millis() {
        let start = Timestamp(cursor.next_ms);
        let t0 = Instant::now();
        let eval = if active.is_empty() {
            Default::default()
        } else {
            evaluate_window(rules, model, start, &versions, &active)?
        };
        cursor.next_ms = cursor.next_ms.saturating_add(width);
        cursor.versions = versions.clone();
        let mut ws = eval.ws;
        put_cursor(&mut ws, id, &cursor)?;
        let now = rules.clock.now();
        let mut alerts = eval.alerts;
        rules.mark_silenced(&mut alerts, now);
        let recorded = rules.log.record(ws, alerts, now)?;
        let m = &rules.metrics;
        let micros = t0.elapsed().as_micros() as u64;
        m.windows_evaluated.fetch_add(1, Ordering::Relaxed);
        m.checks.fetch_add(eval.checks, Ordering::Relaxed);
        m.eval_errors.fetch_add(eval.errors, Ordering::Relaxed);
        m.eval_micros.fetch_add(micros, Ordering::Relaxed);
        m.last_eval_micros.store(micros, Ordering::Relaxed);
        for r in &recorded.records {
            let counter = if r.status == "resolved" {
                &m.resolved
            } else {
                &m.fired
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::info!(seq = r.seq, rule = %r.rule_id, status = %r.status, "{}", r.summary);
        }
        if recorded.needs_delivery() {
            rules.outbox_wake.notify_one();
        }
        n += 1;
    }
    Ok(n)
}

/// Runs the scheduler until `shutdown` turns true: on every ingest that may close a window,
/// and every [`super::RulesConfig::tick`].
pub async fn run_scheduler(
    rules: Arc<Rules>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    loop {
        let n2 = Arc::clone(&rules);
        match tokio::task::spawn_blocking(move || evaluate_due(&n2)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "rule evaluation failed"),
            Err(e) => tracing::error!(error = %e, "rule evaluation task failed"),
        }
        tokio::select! {
            _ = rules.wake.notified() => {}
            _ = tokio::time::sleep(rules.config.tick) => {}
            () = super::outbox::stopped(&mut shutdown) => return Ok(()),
        }
    }
}

/// The start of the next window the scheduler will evaluate for `model`; `None` before the
/// scheduler has seen the model.
pub fn next_window(rules: &Rules, model: &str) -> Result<Option<Timestamp>> {
    Ok(load_cursor(rules, model)?.map(|c| Timestamp(c.next_ms)))
}

/// Windows that have started but not closed, and windows closed but not yet evaluated, summed
/// over every model this node evaluates (the `/metrics` gauges `driftdb_open_windows` and
/// `driftdb_rule_windows_pending`). Models the scheduler has not seen yet count neither.
pub fn window_backlog(rules: &Rules) -> Result<(u64, u64)> {
    let (mut open, mut pending) = (0u64, 0u64);
    let now = rules.clock.now();
    let ownership = rules.ownership();
    for model in rules.registry.list()? {
        if ownership.is_some_and(|o| !o.evaluates(&model.def.id)) {
            continue;
        }
        let Some(cursor) = load_cursor(rules, &model.def.id)? else {
            continue;
        };
        let width = model.resolution.width_ms();
        let progress = rules.progress(&model.def.id);
        let mark = progress.watermark.map_or(now, |w| w.max(now));
        let close_span = close_time(&model, Timestamp(0)).millis();
        // Closed: start + width + grace <= mark. Open: started (start <= mark) and not closed.
        let last_started = model.resolution.window_start(mark).millis();
        let last_closed = model
            .resolution
            .window_start(mark.saturating_add_ms(-close_span))
            .millis();
        let next = cursor.next_ms;
        if last_closed >= next {
            pending += ((last_closed - next) / width + 1) as u64;
        }
        let first_open = (last_closed + width).max(next);
        if last_started >= first_open {
            open += ((last_started - first_open) / width + 1) as u64;
        }
    }
    Ok((open, pending))
}

/// The window gauges of [`window_backlog`] in Prometheus' text format (empty on error).
pub fn render_window_gauges(rules: &Rules) -> String {
    let Ok((open, pending)) = window_backlog(rules) else {
        return String::new();
    };
    format!(
        "# HELP driftdb_open_windows Model windows that have started and not closed (end + grace not reached).\n\
         # TYPE driftdb_open_windows gauge\ndriftdb_open_windows {open}\n\
         # HELP driftdb_rule_windows_pending Closed model windows whose rules are not evaluated yet.\n\
         # TYPE driftdb_rule_windows_pending gauge\ndriftdb_rule_windows_pending {pending}\n"
    )
}
