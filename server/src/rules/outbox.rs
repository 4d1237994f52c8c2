//! The durable webhook outbox and its delivery worker.
//!
//! Every delivery an alert asks for is written to the `outbox` family (`'O' | u64(alert
//! sequence) | u8(action index)`) in the same batch as the alert itself. The worker posts each
//! one, and only a 2xx answer removes it. Failures are retried on the engine's
//! [`RetryPolicy`] (exponential backoff, no jitter) and moved to `'D'` (dead letters) once the
//! receiver refuses permanently (a 4xx other than 408/425/429) or the dead-letter deadline
//! passes. Delivery is at least once: a crash between the POST and the removal sends it again,
//! with the same `Idempotency-Key` header (the alert's event id) so receivers can drop it.
//!
//! With checkpoints on (`crate::checkpoint::DeliveryGate`), a new entry waits until a saved
//! checkpoint holds the store as it was when the entry was found, so a node restoring that
//! checkpoint never fires an alert already delivered (docs/SCALE_OUT.md).
//!
//! Retry times are wall-clock time, even when the node runs on a simulated clock (`demo`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use driftdb_engine::rules::{DeliveryAuth, DeliveryOutcome, classify_status};
use driftdb_engine::time::{Clock, SystemClock, Timestamp};
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, WriteSet};

use super::Rules;
use super::groups::{flush_group, pending_groups};
use crate::error::{Error, Result};
use crate::records;
pub use crate::records::alerts::DeliveryRecord;

impl DeliveryRecord {
    /// Its key in the outbox.
    pub fn key(&self) -> Vec<u8> {
        entry_key(layout::OUTBOX_DELIVERY, self.seq, self.index)
    }

    /// A delivery not yet attempted: request `d` for action `index` of alert `seq` (the first
    /// member of a grouped notification, whose `members` are listed).
    pub fn first(
        seq: u64,
        index: u8,
        d: driftdb_engine::rules::Delivery,
        event_id: String,
        members: Vec<(u64, u8)>,
    ) -> DeliveryRecord {
        DeliveryRecord {
            seq,
            index,
            kind: d.kind.as_str().to_string(),
            url: d.url,
            body: d.body,
            auth: d.auth,
            event_id,
            attempts: 0,
            first_failure_ms: None,
            next_at_ms: 0,
            last_error: None,
            members,
        }
    }

    /// The alert actions (sequence, action index) whose results follow this delivery: every
    /// member of a grouped notification, or the one alert.
    pub fn targets(&self) -> Vec<(u64, u8)> {
        if self.members.is_empty() {
            vec![(self.seq, self.index)]
        } else {
            self.members.clone()
        }
    }
}

fn entry_key(prefix: u8, seq: u64, index: u8) -> Vec<u8> {
    KeyWriter::with_prefix(prefix).u64(seq).u8(index).finish()
}

/// The dead letters, oldest alert first.
pub fn dead_letters(rules: &Rules) -> Result<Vec<DeliveryRecord>> {
    let mut out = Vec::new();
    for e in rules
        .store
        .family(Family::Outbox)
        .scan_prefix(&[layout::OUTBOX_DEAD])?
    {
        let e = e?;
        out.push(records::decode(&e)?);
    }
    Ok(out)
}

fn pending(rules: &Rules) -> Result<Vec<DeliveryRecord>> {
    let mut out = Vec::new();
    for e in rules
        .store
        .family(Family::Outbox)
        .scan_prefix(&[layout::OUTBOX_DELIVERY])?
    {
        match e {
            Ok(e) => match records::decode::<DeliveryRecord>(&e) {
                Ok(r) => out.push(r),
                Err(err) => tracing::error!(error = %err, "unreadable outbox entry left in place"),
            },
            Err(err) => tracing::error!(error = %err, "corrupt outbox entry left in place"),
        }
    }
    Ok(out)
}

/// The result of one attempt.
#[derive(Debug)]
enum Attempt {
    Ok,
    Failed {
        outcome: DeliveryOutcome,
        error: String,
    },
}

async fn send(client: &reqwest::Client, deny_private: bool, d: &DeliveryRecord) -> Attempt {
    if deny_private && let Some(host) = super::targets::private_literal(&d.url) {
        return Attempt::Failed {
            outcome: DeliveryOutcome::Permanent,
            error: format!(
                "target {host} is a private address, which this server does not call (rules.deny_private_targets)"
            ),
        };
    }
    let body = match serde_json::to_vec(&d.body) {
        Ok(b) => b,
        Err(e) => {
            return Attempt::Failed {
                outcome: DeliveryOutcome::Permanent,
                error: format!("body: {e}"),
            };
        }
    };
    let mut req = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("idempotency-key", &d.event_id)
        .header("user-agent", concat!("driftdb/", env!("CARGO_PKG_VERSION")));
    req = match &d.auth {
        None => req,
        Some(DeliveryAuth::Bearer(token)) => req.bearer_auth(token),
        Some(DeliveryAuth::Basic { user, token }) => req.basic_auth(user, Some(token)),
    };
    let res = req.body(body).send().await;
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            match classify_status(status) {
                DeliveryOutcome::Delivered => Attempt::Ok,
                outcome => Attempt::Failed {
                    outcome,
                    error: format!("HTTP {status}"),
                },
            }
        }
        // Refused, reset, timed out: the receiver may come back.
        Err(e) => Attempt::Failed {
            outcome: DeliveryOutcome::Retry,
            error: transport_error(&e),
        },
    }
}

/// A transport error without the URL (which may carry a secret).
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        // reqwest's own message names the URL; its source does not.
        let mut s = std::error::Error::source(e)
            .map_or_else(|| "request failed".to_string(), |s| s.to_string());
        s.truncate(200);
        s
    }
}

/// The HTTP client of the worker: no redirects (a webhook that moved is a failure to look at),
/// a per-request timeout, and with `deny_private` a resolver that drops private addresses.
pub(crate) fn http_client(timeout: Duration, deny_private: bool) -> Result<reqwest::Client> {
    crate::tls::install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none());
    if deny_private {
        b = b.dns_resolver(std::sync::Arc::new(super::targets::PublicOnly));
    }
    b.build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))
}

/// Writes what an attempt did: removes a delivered entry, reschedules a failed one, or moves
/// it to the dead letters. Returns the entry to keep in the queue, if any.
fn settle(
    rules: &Rules,
    mut d: DeliveryRecord,
    attempt: Attempt,
) -> Result<Option<DeliveryRecord>> {
    let now = SystemClock.now();
    d.attempts = d.attempts.saturating_add(1);
    let mut ws = WriteSet::new();
    let keep = match attempt {
        Attempt::Ok => {
            ws.delete(Family::Outbox, d.key());
            for (seq, index) in d.targets() {
                rules.log.update_action(&mut ws, seq, index, |a| {
                    a.delivered = true;
                    a.attempts = d.attempts;
                    a.last_error = None;
                })?;
            }
            rules
                .metrics
                .delivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
        Attempt::Failed { outcome, error } => {
            rules
                .metrics
                .delivery_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let first = Timestamp(*d.first_failure_ms.get_or_insert(now.millis()));
            d.last_error = Some(error.clone());
            let wait = match outcome {
                DeliveryOutcome::Retry => rules.config.retry.next_attempt(d.attempts, first, now),
                _ => None,
            };
            match wait {
                Some(w) => {
                    d.next_at_ms = now
                        .millis()
                        .saturating_add(i64::try_from(w.as_millis()).unwrap_or(i64::MAX));
                    records::put(&mut ws, Family::Outbox, d.key(), &d)?;
                    for (seq, index) in d.targets() {
                        rules.log.update_action(&mut ws, seq, index, |a| {
                            a.attempts = d.attempts;
                            a.last_error = Some(error.clone());
                        })?;
                    }
                    Some(d)
                }
                None => {
                    tracing::warn!(
                        seq = d.seq,
                        kind = %d.kind,
                        attempts = d.attempts,
                        error = %error,
                        "webhook delivery dead-lettered"
                    );
                    ws.delete(Family::Outbox, d.key());
                    records::put(
                        &mut ws,
                        Family::Outbox,
                        entry_key(layout::OUTBOX_DEAD, d.seq, d.index),
                        &d,
                    )?;
                    for (seq, index) in d.targets() {
                        rules.log.update_action(&mut ws, seq, index, |a| {
                            a.attempts = d.attempts;
                            a.last_error = Some(error.clone());
                            a.dead_lettered = true;
                        })?;
                    }
                    rules
                        .metrics
                        .dead_lettered
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    None
                }
            }
        }
    };
    rules.log.write(&ws)?;
    Ok(keep)
}

/// Delivers the outbox until `shutdown` turns true: entries written by alerts (the log wakes
/// the worker) and every entry left from before a restart.
pub async fn run_delivery(
    rules: Arc<Rules>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let cfg = rules.config.clone();
    let client = http_client(cfg.delivery_timeout, cfg.deny_private_targets)?;
    let deny_private = cfg.deny_private_targets;
    // Entries waiting, by key; the ones being sent are in `in_flight`.
    let mut queue: BTreeMap<Vec<u8>, DeliveryRecord> = BTreeMap::new();
    let mut in_flight: HashSet<Vec<u8>> = HashSet::new();
    // Pending groups by key, with when each is due.
    let mut groups: BTreeMap<String, i64> = BTreeMap::new();
    let (done_tx, mut done_rx) =
        tokio::sync::mpsc::channel::<(DeliveryRecord, Attempt)>(cfg.delivery_concurrency.max(1));
    // With gates holding deliveries (`crate::checkpoint::DeliveryGate`: checkpoints, a
    // cluster's membership record): entries found since the start wait until every gate
    // covers the store sequence read after they were found (every write up to then, their
    // alert's included), or until the gate's `hold_max` passed.
    let gates = rules.gates();
    let gated = !gates.is_empty();
    let mut covered: Vec<_> = gates.iter().map(|g| g.subscribe()).collect();
    let mut holds: HashMap<Vec<u8>, (u64, std::time::Instant)> = HashMap::new();
    let mut rescan = true;
    loop {
        if rescan {
            rescan = false;
            let n2 = Arc::clone(&rules);
            let (found, found_groups, at) = tokio::task::spawn_blocking(move || {
                let found = pending(&n2)?;
                let groups = pending_groups(&n2)?;
                Ok::<_, Error>((found, groups, n2.store.latest_sequence()))
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
            groups = found_groups.into_iter().collect();
            for d in found {
                let k = d.key();
                if !in_flight.contains(&k) && !queue.contains_key(&k) {
                    if gated {
                        holds.insert(k.clone(), (at, std::time::Instant::now()));
                    }
                    queue.insert(k, d);
                }
            }
        }
        let now = SystemClock.now().millis();
        let due_groups: Vec<String> = groups
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due_groups {
            groups.remove(&key);
            let n2 = Arc::clone(&rules);
            let k2 = key.clone();
            let flushed = tokio::task::spawn_blocking(move || flush_group(&n2, &k2))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
            match flushed {
                Ok(Some(d)) => {
                    if gated {
                        let at = rules.store.latest_sequence();
                        holds.insert(d.key(), (at, std::time::Instant::now()));
                    }
                    queue.insert(d.key(), d);
                }
                Ok(None) => {}
                Err(e) => {
                    // Not written: the group stays in the store and is found again.
                    tracing::error!(error = %e, group = %key, "could not send an alert group");
                    rescan = true;
                }
            }
        }
        // Held by a gate that does not cover it yet and has not held it for its `hold_max`.
        let holding = |need: u64, since: std::time::Instant| {
            gates
                .iter()
                .filter(move |g| need > g.covered() && since.elapsed() < g.hold_max())
        };
        let held = |k: &Vec<u8>| {
            holds
                .get(k)
                .is_some_and(|(need, since)| holding(*need, *since).next().is_some())
        };
        let due: Vec<Vec<u8>> = queue
            .iter()
            .filter(|(k, d)| d.next_at_ms <= now && !held(k))
            .map(|(k, _)| k.clone())
            .take(cfg.delivery_concurrency.saturating_sub(in_flight.len()))
            .collect();
        let waiting = queue.keys().any(held);
        if waiting {
            for (k, (need, since)) in &holds {
                if queue.contains_key(k) {
                    holding(*need, *since).for_each(|g| g.want());
                }
            }
        }
        for k in due {
            if let Some((need, _)) = holds.remove(&k) {
                for g in gates.iter().filter(|g| need > g.covered()) {
                    g.released_unsaved();
                    tracing::warn!(
                        wait = ?g.hold_max(),
                        "delivering an alert no saved checkpoint (or published membership record) holds yet: it is not answering"
                    );
                }
            }
            if let Some(d) = queue.remove(&k) {
                in_flight.insert(k);
                let client = client.clone();
                let tx = done_tx.clone();
                tokio::spawn(async move {
                    let a = send(&client, deny_private, &d).await;
                    let _ = tx.send((d, a)).await;
                });
            }
        }
        rules.metrics.outbox_depth.store(
            (queue.len() + in_flight.len()) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let next_due = queue
            .values()
            .map(|d| d.next_at_ms)
            .chain(groups.values().copied())
            .min();
        let wait = match next_due {
            Some(t) if in_flight.len() < cfg.delivery_concurrency => {
                Duration::from_millis(t.saturating_sub(now).clamp(0, 1000) as u64)
            }
            _ => Duration::from_secs(1),
        };
        // Held entries are not due: wait for the next checkpoint (or the hold's end, within
        // the one-second bound of `wait`).
        let wait = if waiting {
            wait.max(Duration::from_millis(100))
        } else {
            wait
        };
        let checkpointed = async {
            if waiting && !covered.is_empty() {
                let moved = covered.iter_mut().map(|rx| Box::pin(rx.changed()));
                if futures::future::select_all(moved).await.0.is_err() {
                    std::future::pending::<()>().await;
                }
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = rules.outbox_wake.notified() => rescan = true,
            () = checkpointed => {}
            Some((d, a)) = done_rx.recv() => {
                in_flight.remove(&d.key());
                let n2 = Arc::clone(&rules);
                let kept = tokio::task::spawn_blocking(move || settle(&n2, d, a))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?;
                match kept {
                    Ok(Some(d)) => {
                        queue.insert(d.key(), d);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // Not written: the entry stays in the store and is picked up again.
                        tracing::error!(error = %e, "could not record a webhook outcome");
                        rescan = true;
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
            () = stopped(&mut shutdown) => return Ok(()),
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|v| *v).await;
}
