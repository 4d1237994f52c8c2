//! Grouped notifications at the server: alerts of a grouped action collect in a durable
//! pending group, which the delivery worker turns into one outbox entry when it is due.
//!
//! ```text
//!  AlertLog::record ── same batch as the alert ──▶ 'P' | group key   {action, due, members}
//!                                                  'F' | group series {firing dedup keys, last sends}
//!  delivery worker, when due ── one batch ──▶ delete 'P', put 'O' | first member  (members listed)
//! ```
//!
//! Both steps are single RocksDB batches under the alert log's lock, so a restart in the middle
//! of a group wait finds the group and sends it once, with every member. The outbox entry then
//! behaves like any other delivery (retries, dead letters, `Idempotency-Key`), and its outcome
//! is written to every member's action result.

use std::collections::HashMap;

use driftdb_engine::rules::{
    Alert, AlertGroup, AlertStatus, Comparison, GroupId, RuleAction, render_group,
};
use driftdb_engine::time::{Clock, SystemClock, Timestamp};
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, Store, WriteSet};

use super::Rules;
use crate::error::Result;
use crate::records::{
    self,
    alerts::{AlertRecord, DeliveryRecord, GroupState, PendingGroup},
};

fn pending_key(key: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::OUTBOX_GROUP)
        .str(key)
        .finish()
}

fn state_key(series: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::OUTBOX_GROUP_STATE)
        .str(series)
        .finish()
}

/// The groups one [`super::AlertLog::record`] call touches, read once and written with its
/// batch.
#[derive(Debug, Default)]
pub(crate) struct GroupBatch {
    pending: HashMap<String, PendingGroup>,
    states: HashMap<String, GroupState>,
    wall_ms: i64,
}

impl GroupBatch {
    pub(crate) fn new() -> GroupBatch {
        GroupBatch {
            wall_ms: SystemClock.now().millis(),
            ..GroupBatch::default()
        }
    }

    fn state<'a>(
        states: &'a mut HashMap<String, GroupState>,
        store: &Store,
        series: &str,
    ) -> Result<&'a mut GroupState> {
        if !states.contains_key(series) {
            let s = records::get::<GroupState>(store, Family::Outbox, &state_key(series))?
                .unwrap_or_default();
            states.insert(series.to_string(), s);
        }
        Ok(states.entry(series.to_string()).or_default())
    }

    /// Adds alert `seq` (action `index`) to its group under `action`. Returns the group's key
    /// when the action sends something for the alert's status (the alert joins the group),
    /// `None` when it only updated the group's firing series.
    pub(crate) fn add(
        &mut self,
        store: &Store,
        action: &RuleAction,
        alert: &Alert,
        seq: u64,
        index: u8,
    ) -> Result<Option<String>> {
        let (Some(id), Some(g)) = (action.group_of(alert), action.group.as_ref()) else {
            return Ok(None);
        };
        let state = Self::state(&mut self.states, store, &id.series)?;
        let firing = alert.status == AlertStatus::Firing;
        if firing {
            state.firing.insert(alert.dedup_key.clone());
        } else {
            state.firing.remove(&alert.dedup_key);
        }
        if !firing && !action.kind().sends_on_resolve() {
            return Ok(None);
        }
        let status = alert.status.as_str().to_string();
        let last = state.last_sent_ms.get(&status).copied();
        if !self.pending.contains_key(&id.key) {
            let found = records::get::<PendingGroup>(store, Family::Outbox, &pending_key(&id.key))?;
            let pg = found.unwrap_or_else(|| PendingGroup {
                key: id.key.clone(),
                series: id.series.clone(),
                labels: id.labels.clone(),
                status,
                action: action.action.clone(),
                due_ms: self
                    .wall_ms
                    .saturating_add(g.wait_ms)
                    .max(last.map_or(i64::MIN, |l| l.saturating_add(g.interval_ms))),
                members: Vec::new(),
                interval_ms: g.interval_ms,
            });
            self.pending.insert(id.key.clone(), pg);
        }
        if let Some(pg) = self.pending.get_mut(&id.key) {
            pg.members.push((seq, index));
        }
        Ok(Some(id.key))
    }

    /// Whether any group was touched.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.states.is_empty()
    }

    /// Pending groups touched.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Adds the touched groups to `ws`.
    pub(crate) fn write(self, ws: &mut WriteSet) -> Result<()> {
        for (key, pg) in &self.pending {
            records::put(ws, Family::Outbox, pending_key(key), pg)?;
        }
        for (series, st) in &self.states {
            put_state(ws, series, st)?;
        }
        Ok(())
    }
}

/// Writes a group's state, or deletes it when it holds nothing worth keeping.
fn put_state(ws: &mut WriteSet, series: &str, st: &GroupState) -> Result<()> {
    if st.firing.is_empty() && st.last_sent_ms.is_empty() {
        ws.delete(Family::Outbox, state_key(series));
        Ok(())
    } else {
        records::put(ws, Family::Outbox, state_key(series), st)
    }
}

/// Every pending group: its key and when it is due (wall clock, ms).
pub(crate) fn pending_groups(rules: &Rules) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for e in rules
        .store
        .family(Family::Outbox)
        .scan_prefix(&[layout::OUTBOX_GROUP])?
    {
        match e
            .map_err(crate::error::Error::from)
            .and_then(|e| records::decode::<PendingGroup>(&e))
        {
            Ok(pg) => out.push((pg.key, pg.due_ms)),
            Err(err) => {
                tracing::error!(error = %err, "unreadable pending alert group left in place")
            }
        }
    }
    Ok(out)
}

/// The engine's alert for a recorded one (what grouped payloads list).
fn alert_of(r: &AlertRecord) -> Alert {
    Alert {
        rule_id: r.rule_id.clone(),
        rule_kind: match r.rule_kind.as_str() {
            "freshness" => "freshness",
            "event" => "event",
            _ => "metric",
        },
        model: r.model.clone(),
        version: r.version.clone(),
        feature: r.feature.clone(),
        segment: r.segment.clone(),
        metric: r.metric.clone(),
        comparison: r
            .comparison
            .as_deref()
            .and_then(|c| serde_json::from_value::<Comparison>(serde_json::json!(c)).ok()),
        value: r.value,
        threshold: r.threshold,
        reference: r.reference,
        severity: r.severity,
        status: if r.status == "resolved" {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        window: Timestamp(r.window_ms),
        fired_at: Timestamp(r.fired_at_ms),
        resolved_at: r.resolved_at_ms.map(Timestamp),
        event: r.event.clone(),
        description: r.description.clone(),
        summary: r.summary.clone(),
        dedup_key: r.dedup_key.clone(),
    }
}

/// Turns pending group `key` into its outbox entry (one batch: the group is removed, the
/// delivery written, the group's last send noted). `None` when the group is gone (sent
/// already) or its action sends nothing for it (a PagerDuty resolve while series of the group
/// still fire: each member's action result says so).
pub(crate) fn flush_group(rules: &Rules, key: &str) -> Result<Option<DeliveryRecord>> {
    let log = &rules.log;
    let _guard = log.lock()?;
    let pk = pending_key(key);
    let Some(pg) = records::get::<PendingGroup>(&rules.store, Family::Outbox, &pk)? else {
        return Ok(None);
    };
    let mut ws = WriteSet::new();
    ws.delete(Family::Outbox, pk);
    let mut members = Vec::with_capacity(pg.members.len());
    let mut alerts = Vec::with_capacity(pg.members.len());
    for &(seq, index) in &pg.members {
        if let Some(rec) = log.get(seq)? {
            alerts.push(alert_of(&rec));
            members.push((seq, index));
        }
    }
    let mut state =
        records::get::<GroupState>(&rules.store, Family::Outbox, &state_key(&pg.series))?
            .unwrap_or_default();
    let now = SystemClock.now().millis();
    let id = GroupId {
        key: pg.key.clone(),
        series: pg.series.clone(),
        labels: pg.labels.clone(),
    };
    let status = if pg.status == "resolved" {
        AlertStatus::Resolved
    } else {
        AlertStatus::Firing
    };
    let group = AlertGroup {
        id: &id,
        status,
        members: &alerts,
        still_firing: state.firing.len(),
    };
    let rendered = render_group(&pg.action, &group);
    let out = match (rendered, members.first()) {
        (Some(d), Some(&(seq, index))) => {
            if pg.interval_ms > 0 {
                state.last_sent_ms.insert(pg.status.clone(), now);
            } else {
                state.last_sent_ms.remove(&pg.status);
            }
            let rec = DeliveryRecord::first(seq, index, d, group.event_id(), members.clone());
            records::put(&mut ws, Family::Outbox, rec.key(), &rec)?;
            Some(rec)
        }
        _ => {
            let why = format!(
                "not sent: {} series of this group still fire; its incident resolves with the last",
                state.firing.len()
            );
            for &(seq, index) in &members {
                log.put_action_update(&mut ws, seq, index, |a| {
                    a.last_error = Some(why.clone());
                })?;
            }
            None
        }
    };
    put_state(&mut ws, &pg.series, &state)?;
    rules.store.write(&ws)?;
    Ok(out)
}

/// Sends every pending group due by `now_ms` (wall clock) to the outbox, as the delivery worker
/// does; returns the outbox entries written. For tools and benchmarks that run no worker.
pub fn flush_due_groups(rules: &Rules, now_ms: i64) -> Result<usize> {
    let mut n = 0;
    for (key, due) in pending_groups(rules)? {
        if due <= now_ms && flush_group(rules, &key)?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}
