//! The alert log: every firing and resolution as a numbered record, the episode history, and
//! what `WatchAlerts` streams.
//!
//! Records live in the `alerts` family (layout in `storage/FORMAT.md` §5):
//! - `'L' | u64(seq)`: the record (JSON, [`crate::records::RecordKind::Alert`]); sequence numbers start at 1 and
//!   only grow, so a client resumes with "everything after N";
//! - `'K' | str(event id)`: the sequence recorded for an event id (rule, series, window,
//!   status): recording the same event twice writes nothing the second time;
//! - `'H' | str(model) | i64(fired at) | str(dedup key)`: one episode (the firing's sequence
//!   and, once resolved, the resolution's), which `ListAlerts` reads.
//!
//! Records and their outbox entries are written in one batch with whatever decided them (the
//! evaluator's states and cursor), under one lock that also hands out sequence numbers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use driftdb_engine::rules::{ActionKind, Alert, AlertStatus, render};
use driftdb_engine::time::Timestamp;
use driftdb_storage::layout::{self, KeyWriter, prefix_successor};
use driftdb_storage::{Family, Store, WriteSet};

use super::book::StoredRule;
use super::groups::GroupBatch;
use crate::error::{Error, Result};
pub use crate::records::alerts::{Ack, ActionResult, AlertRecord};
use crate::records::alerts::{DeliveryRecord, Episode};
use crate::records::{
    self,
    alerts::{EventFired, EventSeq},
};

/// An alert decided but not yet recorded.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// The alert.
    pub alert: Alert,
    /// The rule that decided it (its actions are rendered).
    pub rule: Arc<StoredRule>,
    /// Why it is recorded without calling its actions (a silence, an inhibiting rule).
    pub suppressed: Option<String>,
}

/// What one [`AlertLog::record`] wrote.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The new records, in sequence order.
    pub records: Vec<AlertRecord>,
    /// Their outbox entries.
    pub deliveries: Vec<DeliveryRecord>,
    /// Pending groups the records joined (grouped actions).
    pub groups: usize,
}

impl Recorded {
    /// Whether the delivery worker has something new to look at.
    pub fn needs_delivery(&self) -> bool {
        !self.deliveries.is_empty() || self.groups > 0
    }
}

/// The alert log of one node.
#[derive(Debug)]
pub struct AlertLog {
    store: Arc<Store>,
    /// The last sequence handed out; held while a batch of records is written.
    last: Mutex<u64>,
    latest: tokio::sync::watch::Sender<u64>,
}

fn log_key(seq: u64) -> Vec<u8> {
    KeyWriter::with_prefix(layout::ALERT_LOG).u64(seq).finish()
}

fn event_key(event_id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::ALERT_EVENT_ID)
        .str(event_id)
        .finish()
}

fn episode_key(model: &str, fired_at_ms: i64, dedup_key: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::ALERT_HISTORY)
        .str(model)
        .i64(fired_at_ms)
        .str(dedup_key)
        .finish()
}

/// How a target URL is shown in alert records and every answer: without its secret parts
/// (Slack webhook paths, query strings; see [`driftdb_engine::rules::redact_url`]).
pub(crate) fn display_url(kind: ActionKind, url: &str) -> String {
    driftdb_engine::rules::redact_url(kind, url)
}

impl AlertLog {
    /// Opens the log, reading the last sequence number.
    pub fn open(store: Arc<Store>) -> Result<AlertLog> {
        let mut last = 0;
        // Sequence keys are big-endian, so the last one in key order is the largest.
        for e in store
            .family(Family::Alerts)
            .scan_prefix(&[layout::ALERT_LOG])?
        {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    tracing::warn!(error = %err, "corrupt alert record skipped");
                    continue;
                }
            };
            if let Some(seq) = e.key.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                last = last.max(u64::from_be_bytes(seq));
            }
        }
        let (latest, _) = tokio::sync::watch::channel(last);
        Ok(AlertLog {
            store,
            last: Mutex::new(last),
            latest,
        })
    }

    /// The last sequence number written.
    pub fn last_seq(&self) -> u64 {
        *self.latest.borrow()
    }

    /// A receiver that changes whenever records are written.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Adds `alerts` (skipping event ids already recorded) and their outbox entries to `ws`,
    /// writes it as one durable batch, and returns what was recorded.
    pub fn record(
        &self,
        mut ws: WriteSet,
        alerts: Vec<NewAlert>,
        now: Timestamp,
    ) -> Result<Recorded> {
        if alerts.is_empty() {
            // Nothing to number: no need to queue behind other writers of the log.
            self.store.write(&ws)?;
            return Ok(Recorded::default());
        }
        let mut last = self.lock()?;
        let mut seq = *last;
        let mut out = Recorded::default();
        let mut groups = GroupBatch::new();
        let mut seen = HashSet::new();
        let alerts_family = self.store.family(Family::Alerts);
        for na in alerts {
            let a = &na.alert;
            let event_id = a.event_id();
            if !seen.insert(event_id.clone()) || alerts_family.get(&event_key(&event_id))?.is_some()
            {
                continue;
            }
            seq += 1;
            let ek = episode_key(&a.model, a.fired_at.millis(), &a.dedup_key);
            let mut ep = match records::get::<Episode>(&self.store, Family::Alerts, &ek)? {
                Some(ep) => ep,
                None => Episode {
                    fired_at_ms: a.fired_at.millis(),
                    ..Default::default()
                },
            };
            let mut suppressed = na.suppressed.clone();
            if suppressed.is_none() && a.status == AlertStatus::Resolved {
                // Receivers never heard of a firing that was not delivered: its resolution
                // is not sent either.
                if let Some(fire) = ep.fire_seq.map(|s| self.get(s)).transpose()?.flatten()
                    && let Some(why) = fire.suppressed
                {
                    suppressed = Some(format!("its firing was not delivered ({why})"));
                }
            }
            let mut actions = Vec::new();
            let calls = if suppressed.is_some() {
                &[][..]
            } else {
                &na.rule.def.actions[..]
            };
            for (i, action) in calls.iter().enumerate() {
                let index = u8::try_from(i).unwrap_or(u8::MAX);
                if action.group.is_some() {
                    if let Some(key) = groups.add(&self.store, action, a, seq, index)? {
                        actions.push(ActionResult {
                            index,
                            kind: action.kind().as_str().to_string(),
                            url: display_url(action.kind(), action.url()),
                            delivered: false,
                            attempts: 0,
                            last_error: None,
                            dead_lettered: false,
                            group: Some(key),
                        });
                    }
                    continue;
                }
                let Some(d) = render(action, a) else { continue };
                actions.push(ActionResult {
                    index,
                    kind: d.kind.as_str().to_string(),
                    url: display_url(d.kind, &d.url),
                    delivered: false,
                    attempts: 0,
                    last_error: None,
                    dead_lettered: false,
                    group: None,
                });
                out.deliveries.push(DeliveryRecord::first(
                    seq,
                    index,
                    d,
                    event_id.clone(),
                    Vec::new(),
                ));
            }
            let rec = AlertRecord {
                seq,
                event_id: event_id.clone(),
                dedup_key: a.dedup_key.clone(),
                rule_id: a.rule_id.clone(),
                rule_version: na.rule.version,
                rule_kind: a.rule_kind.to_string(),
                model: a.model.clone(),
                version: a.version.clone(),
                feature: a.feature.clone(),
                segment: a.segment.clone(),
                metric: a.metric.clone(),
                value: a.value.filter(|v| v.is_finite()),
                threshold: a.threshold.filter(|v| v.is_finite()),
                reference: a.reference.filter(|v| v.is_finite()),
                comparison: a.comparison.map(|c| c.as_str().to_string()),
                severity: a.severity,
                status: a.status.as_str().to_string(),
                window_ms: a.window.millis(),
                fired_at_ms: a.fired_at.millis(),
                resolved_at_ms: a.resolved_at.map(Timestamp::millis),
                recorded_at_ms: now.millis(),
                summary: a.summary.clone(),
                description: a.description.clone(),
                event: a.event.clone(),
                actions,
                suppressed,
                ack: None,
            };
            records::put(&mut ws, Family::Alerts, log_key(seq), &rec)?;
            records::put(
                &mut ws,
                Family::Alerts,
                event_key(&event_id),
                &EventSeq(seq),
            )?;
            if rec.status == "resolved" {
                ep.resolve_seq = Some(seq);
            } else {
                ep.fire_seq = Some(seq);
            }
            records::put(&mut ws, Family::Alerts, ek, &ep)?;
            out.records.push(rec);
        }
        for d in &out.deliveries {
            records::put(&mut ws, Family::Outbox, d.key(), d)?;
        }
        out.groups = groups.pending_len();
        if !groups.is_empty() {
            groups.write(&mut ws)?;
        }
        self.store.write(&ws)?;
        *last = seq;
        self.latest.send_replace(seq);
        Ok(out)
    }

    /// One record by sequence number.
    pub fn get(&self, seq: u64) -> Result<Option<AlertRecord>> {
        records::get(&self.store, Family::Alerts, &log_key(seq))
    }

    /// Updates what action `index` of record `seq` did (the delivery worker's report), in
    /// `ws`, which the caller writes.
    pub fn update_action(
        &self,
        ws: &mut WriteSet,
        seq: u64,
        index: u8,
        update: impl FnOnce(&mut ActionResult),
    ) -> Result<()> {
        let _guard = self.lock()?;
        self.put_action_update(ws, seq, index, update)
    }

    /// The log's lock: held while records are numbered and written.
    pub(crate) fn lock(&self) -> Result<std::sync::MutexGuard<'_, u64>> {
        self.last
            .lock()
            .map_err(|_| Error::Internal("alert log lock poisoned".into()))
    }

    /// [`AlertLog::update_action`] for a caller that holds [`AlertLog::lock`].
    pub(crate) fn put_action_update(
        &self,
        ws: &mut WriteSet,
        seq: u64,
        index: u8,
        update: impl FnOnce(&mut ActionResult),
    ) -> Result<()> {
        let Some(mut rec) = self.get(seq)? else {
            return Ok(());
        };
        if let Some(a) = rec.actions.iter_mut().find(|a| a.index == index) {
            update(a);
        }
        records::put(ws, Family::Alerts, log_key(seq), &rec)
    }

    /// Records an acknowledgement of firing `seq` (replacing an earlier one); the record as it
    /// is now. A resolution cannot be acknowledged (its firing can).
    pub fn acknowledge(&self, seq: u64, ack: Ack) -> Result<AlertRecord> {
        let _guard = self.lock()?;
        let Some(mut rec) = self.get(seq)? else {
            return Err(Error::NotFound {
                what: "alert",
                name: seq.to_string(),
            });
        };
        if rec.status == "resolved" {
            return Err(Error::Invalid(format!(
                "alert {seq} is a resolution; acknowledge the firing it resolves"
            )));
        }
        rec.ack = Some(ack);
        let mut ws = WriteSet::new();
        records::put(&mut ws, Family::Alerts, log_key(seq), &rec)?;
        self.store.write(&ws)?;
        Ok(rec)
    }

    /// Writes `ws` under the log's lock (so an action update and a new record of the same
    /// sequence never overwrite each other).
    pub fn write(&self, ws: &WriteSet) -> Result<()> {
        let _guard = self.lock()?;
        self.store.write(ws)?;
        Ok(())
    }

    /// Up to `limit` records after sequence `after`, in order. Corrupt records are skipped.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<AlertRecord>> {
        let mut out = Vec::new();
        let start = after.saturating_add(1);
        let fam = self.store.family(Family::Alerts);
        // Seek by scanning from the prefix of the first wanted key.
        let mut seq = start;
        while out.len() < limit && seq <= self.last_seq() {
            match fam.get(&log_key(seq)) {
                Ok(Some(e)) => match records::decode::<AlertRecord>(&e) {
                    Ok(r) => out.push(r),
                    Err(err) => tracing::warn!(seq, error = %err, "unreadable alert record"),
                },
                Ok(None) => {}
                Err(err) => tracing::warn!(seq, error = %err, "corrupt alert record skipped"),
            }
            seq += 1;
        }
        Ok(out)
    }

    /// Alert episodes (a firing with its resolution, if any) of `model` (every model for
    /// `None`) that fired in `[from, to)`, newest first, at most `limit`.
    pub fn history(
        &self,
        model: Option<&str>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        let prefix = match model {
            Some(m) => KeyWriter::with_prefix(layout::ALERT_HISTORY)
                .str(m)
                .finish(),
            None => vec![layout::ALERT_HISTORY],
        };
        self.history_in(&[prefix], from, to, limit)
    }

    /// Like [`AlertLog::history`], over the episodes of several models (a team's).
    pub fn history_of(
        &self,
        models: &[String],
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        let prefixes: Vec<Vec<u8>> = models
            .iter()
            .map(|m| {
                KeyWriter::with_prefix(layout::ALERT_HISTORY)
                    .str(m)
                    .finish()
            })
            .collect();
        self.history_in(&prefixes, from, to, limit)
    }

    fn history_in(
        &self,
        prefixes: &[Vec<u8>],
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        let mut eps: Vec<Episode> = Vec::new();
        for prefix in prefixes {
            for e in self.store.family(Family::Alerts).scan_prefix(prefix)? {
                let Ok(e) = e else { continue };
                let Ok(ep) = records::decode::<Episode>(&e) else {
                    continue;
                };
                if from.is_some_and(|f| ep.fired_at_ms < f.millis())
                    || to.is_some_and(|t| ep.fired_at_ms >= t.millis())
                {
                    continue;
                }
                eps.push(ep);
            }
        }
        eps.sort_by(|a, b| {
            b.fired_at_ms
                .cmp(&a.fired_at_ms)
                .then(b.fire_seq.cmp(&a.fire_seq))
        });
        let mut out = Vec::new();
        for ep in eps.into_iter().take(limit) {
            let fire = match ep.fire_seq {
                Some(s) => self.get(s)?,
                None => None,
            };
            let resolve = match ep.resolve_seq {
                Some(s) => self.get(s)?,
                None => None,
            };
            let rec = match (fire, resolve) {
                (Some(mut f), Some(r)) => {
                    f.status = r.status.clone();
                    f.resolved_at_ms = r.resolved_at_ms;
                    f.actions.extend(r.actions);
                    f
                }
                (Some(f), None) => f,
                (None, Some(r)) => r,
                (None, None) => continue,
            };
            out.push(rec);
        }
        Ok(out)
    }

    /// The episode key range of every model (for tests and tools).
    pub fn history_range() -> (Vec<u8>, Option<Vec<u8>>) {
        let p = vec![layout::ALERT_HISTORY];
        let end = prefix_successor(&p);
        (p, end)
    }

    /// When event rule `rule` last fired for `model`.
    pub fn event_last_fired(&self, model: &str, rule: &str) -> Result<Option<Timestamp>> {
        let key = event_fired_key(model, rule);
        Ok(records::get::<EventFired>(&self.store, Family::Alerts, &key)?.map(|f| f.0))
    }
}

/// `'E' | str(model) | str(rule)`: when an event rule last fired for a model.
pub(crate) fn event_fired_key(model: &str, rule: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::ALERT_EVENT_FIRED)
        .str(model)
        .str(rule)
        .finish()
}
