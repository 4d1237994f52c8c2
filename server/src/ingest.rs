//! The ingest path: validate a batch, drop replays and duplicate request ids, fold rows into
//! sketch deltas, and write deltas, dedup records and pending label joins as one durable
//! RocksDB batch before acknowledging (README.md; docs/DATA_MODEL.md, scale-out 4).
//!
//! Label joins: every accepted prediction leaves a `pending` record keyed by (model,
//! request id) holding what its label will need (window, segments, score). A label that finds
//! it folds a performance delta into the prediction's window and marks the record joined; a
//! label that arrives first is held in the same record until its prediction comes. The record
//! doubles as request-id dedup: a prediction whose record exists is a duplicate.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use driftdb_engine::FastSet;
use driftdb_engine::ingest::{
    InferenceBatch, LabelRow, MAX_BATCH_ROWS, PendingPrediction, RowPlan, TimeBounds, fold_planned,
    join_delta, plan_batch, sampled_in, validate_batch,
};
use driftdb_engine::model::Task;
use driftdb_engine::series::{FeatureRef, SeriesKey};
use driftdb_engine::sketch::{NumericState, ScoreState, SeriesState};
use driftdb_engine::time::Clock;
use driftdb_engine::time::Timestamp;
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, Store, WriteSet};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Ticket};
pub use crate::records::pending::{PendingEntry, PendingRecord};
use crate::records::{self, pending::ProducerSeq};
use crate::registry::{ModelEntry, Registry};

/// Errors reported per ack at most.
const MAX_ERRORS: usize = 100;
/// How far in the future an event time may be (clock skew allowance).
pub const MAX_FUTURE_MS: i64 = 60 * 60 * 1000;

/// Where a batch comes from, for exactly-once replays: a producer id and the batch's sequence
/// in it. The same `(producer, sequence)` is applied once; sequence 0 (or no producer) turns
/// the check off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The producer (a client instance, a file run).
    pub producer: String,
    /// The batch's sequence number in the producer, from 1.
    pub sequence: u64,
}

/// Why one row of a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The row's index in its batch.
    pub row: u32,
    /// Its request id.
    pub request_id: String,
    /// The reason.
    pub reason: String,
}

/// The outcome of one inference batch, after its durable write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchAck {
    /// The batch's source.
    pub source: Source,
    /// Rows folded into sketches.
    pub accepted: u64,
    /// Rows rejected (`errors` lists the first of them).
    pub rejected: u64,
    /// Rows skipped because their request id was ingested before.
    pub duplicates: u64,
    /// NaN or infinite values counted as invalid.
    pub invalid_values: u64,
    /// Rows dropped by the model's sampling rate.
    pub sampled_out: u64,
    /// The whole batch was a replay of an applied `(producer, sequence)`.
    pub replayed: bool,
    /// The first rejected rows (at most 100).
    pub errors: Vec<RowError>,
    /// The index of every rejected row, in order (sources that map rows back to their
    /// records, such as the Kafka consumer's dead-letter topic, need all of them).
    pub rejected_rows: Vec<u32>,
    /// How far the batch moved the model's event time: the newest accepted-row time and the
    /// versions with accepted rows (the rule scheduler closes windows on it).
    pub observed: Option<(Timestamp, BTreeSet<String>)>,
}

/// The outcome of one label batch, after its durable write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelAck {
    /// The batch's source.
    pub source: Source,
    /// Labels joined with their prediction now.
    pub joined: u64,
    /// Labels held until their prediction arrives (or `max_label_delay` passes).
    pub pending: u64,
    /// Labels rejected (`errors` lists the first of them).
    pub rejected: u64,
    /// Labels whose request id was seen before.
    pub duplicates: u64,
    /// The whole batch was a replay of an applied `(producer, sequence)`.
    pub replayed: bool,
    /// The first rejected labels (at most 100).
    pub errors: Vec<RowError>,
    /// The index of every rejected label, in order.
    pub rejected_rows: Vec<u32>,
    /// Labels of request ids the model's sampling drops: their predictions were never kept,
    /// so they are counted, not held.
    pub sampled_out: u64,
    /// Labels that came too late: more than `max_label_delay` after their prediction's window,
    /// after their prediction's record expired, or so late that holding them is pointless.
    pub expired: u64,
}

/// One label of a batch, with the model it names (if it names one).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelIn {
    /// The model id the label carries, for routing; a label naming another model than its
    /// batch is rejected.
    pub model_id: Option<String>,
    /// The label.
    pub label: LabelRow,
}

/// What the ingest path works with: the store, the models, the clock and the counters.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// The store.
    pub store: Arc<Store>,
    /// Models and references.
    pub registry: Arc<Registry>,
    /// Time source (the future bound, label expiry).
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

fn pending_key(model: &str, request_id: &str) -> Vec<u8> {
    // Prefix, two strings and their terminators (escapes are rare).
    KeyWriter::with_prefix_capacity(layout::PENDING_BY_ID, 5 + model.len() + request_id.len())
        .str(model)
        .str(request_id)
        .finish()
}

/// `'P' | str(model) | str(stream kind: inf|lbl) | str(producer)`.
fn producer_key(kind: &str, model: &str, producer: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::DEDUP_PRODUCER)
        .str(model)
        .str(kind)
        .str(producer)
        .finish()
}

/// The last applied sequence of a producer, if any.
fn producer_seq(cx: &Ingest, kind: &str, model: &str, producer: &str) -> Result<Option<u64>> {
    let key = producer_key(kind, model, producer);
    Ok(records::get::<ProducerSeq>(&cx.store, Family::Dedup, &key)?.map(|s| s.0))
}

/// Whether `(producer, seq)` was already applied (sequence 0 or no producer: never a replay).
fn is_replay(cx: &Ingest, kind: &str, model: &str, producer: &str, seq: u64) -> Result<bool> {
    if producer.is_empty() || seq == 0 {
        return Ok(false);
    }
    Ok(producer_seq(cx, kind, model, producer)?.is_some_and(|last| seq <= last))
}

fn record_producer(
    ws: &mut WriteSet,
    kind: &str,
    model: &str,
    producer: &str,
    seq: u64,
) -> Result<()> {
    if !producer.is_empty() && seq > 0 {
        let key = producer_key(kind, model, producer);
        records::put(ws, Family::Dedup, key, &ProducerSeq(seq))?;
    }
    Ok(())
}

/// Which stream of a model a producer writes: inferences or labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Inference batches.
    Inferences,
    /// Label batches.
    Labels,
}

impl Stream {
    fn kind(self) -> &'static str {
        match self {
            Stream::Inferences => "inf",
            Stream::Labels => "lbl",
        }
    }
}

/// The last sequence of `producer` applied to `model`'s `stream` (durable), if any.
pub fn applied_sequence(
    cx: &Ingest,
    stream: Stream,
    model: &str,
    producer: &str,
) -> Result<Option<u64>> {
    producer_seq(cx, stream.kind(), model, producer)
}

/// A source's checkpoint `name` (the Kafka consumer: the next offset of a partition all of
/// whose records before it are applied), if saved.
pub fn source_checkpoint(cx: &Ingest, name: &str) -> Result<Option<u64>> {
    producer_seq(cx, "src", "", name)
}

/// The partitions of Kafka topic `topic` each model's inferences were applied from, read from
/// the producer records (`kafka:<topic>:<partition>:<key>`) the Kafka source writes with the
/// sketches: which partition holds a model is known to the node that consumed it, across
/// restarts and restores.
pub fn kafka_partitions(
    store: &Store,
    topic: &str,
) -> Result<std::collections::BTreeMap<String, BTreeSet<i32>>> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<i32>> = Default::default();
    let want = format!("kafka:{topic}:");
    for e in store
        .family(Family::Dedup)
        .scan_prefix(&[layout::DEDUP_PRODUCER])?
    {
        let e = e?;
        let mut r = layout::KeyReader::new("dedup", &e.key);
        r.u8()?;
        let model = r.str()?;
        let kind = r.str()?;
        let producer = r.str()?;
        if kind != Stream::Inferences.kind() {
            continue;
        }
        let Some(p) = producer
            .strip_prefix(&want)
            .and_then(|rest| rest.split(':').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        out.entry(model).or_default().insert(p);
    }
    Ok(out)
}

/// Saves a source's checkpoint durably (a sequence record of the reserved stream `src`).
pub fn save_source_checkpoint(cx: &Ingest, name: &str, value: u64) -> Result<()> {
    let mut ws = WriteSet::new();
    if name.is_empty() || value == 0 {
        return Ok(());
    }
    record_producer(&mut ws, "src", "", name, value)?;
    cx.store.write(&ws)?;
    Ok(())
}

/// What a request id's pending record says now, its deadline judged against the model's expiry
/// clock (the compaction filter removes the same records later; reads must not depend on when).
#[derive(Debug)]
enum Pending {
    /// A prediction waiting for its label.
    Prediction(PendingPrediction),
    /// A label waiting for its prediction.
    Label(LabelRow),
    /// Joined, still remembered for duplicates.
    Joined,
    /// A prediction whose label did not come in time (its tombstone).
    Expired,
}

/// The model's `max_label_delay` in ms (unbounded when it does not parse, which a validated
/// model definition rules out).
fn label_delay_ms(model: &ModelEntry) -> i64 {
    driftdb_engine::time::DurationMs::parse(&model.def.max_label_delay)
        .map_or(i64::MAX / 4, |d| d.millis())
}

/// The deadline of a prediction's record: its window's end plus the label delay.
fn prediction_deadline(model: &ModelEntry, p: &PendingPrediction) -> i64 {
    p.window
        .0
        .saturating_add(model.resolution.width_ms())
        .saturating_add(label_delay_ms(model))
}

/// The pending records of `request_ids` (one batched store lookup), in their order.
fn lookup_pending_many(
    cx: &Ingest,
    model: &str,
    request_ids: &[&str],
) -> Result<Vec<Option<Pending>>> {
    let clock = cx.store.pending_clock(model).map_or(i64::MIN, |c| c.now_ms);
    let keys: Vec<Vec<u8>> = request_ids
        .iter()
        .map(|id| pending_key(model, id))
        .collect();
    records::get_many::<PendingEntry, _>(&cx.store, Family::Pending, &keys)?
        .into_iter()
        .zip(request_ids)
        .map(|(found, id)| pending_state(found, clock, id))
        .collect()
}

/// What a pending record read under expiry clock `clock` means for `request_id`.
fn pending_state(
    found: Result<Option<PendingEntry>>,
    clock: i64,
    request_id: &str,
) -> Result<Option<Pending>> {
    match found {
        Ok(Some(e)) => {
            let past = e.deadline.is_some_and(|d| clock > d);
            Ok(match e.record {
                PendingRecord::Prediction(_) if past => Some(Pending::Expired),
                PendingRecord::Prediction(p) => Some(Pending::Prediction(p)),
                PendingRecord::Label(_) | PendingRecord::Joined if past => None,
                PendingRecord::Label(mut l) => {
                    l.request_id = request_id.to_string();
                    Some(Pending::Label(l))
                }
                PendingRecord::Joined => Some(Pending::Joined),
            })
        }
        Ok(None) => Ok(None),
        // A corrupt record is reported and treated as absent rather than failing the batch.
        Err(e) if e.kind() == driftdb_engine::ErrorKind::Corruption => {
            tracing::warn!(request_id, error = %e, "corrupt pending record ignored");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Adds the deltas of a joined (prediction, label) pair to `ws`.
fn add_join(
    ws: &mut WriteSet,
    m: &ModelEntry,
    p: &PendingPrediction,
    label: &LabelRow,
) -> Result<(), String> {
    let perf = join_delta(m.def.task, p, label)?;
    let score = SeriesState::Score(ScoreState {
        performance: perf,
        ..Default::default()
    });
    let label_state = label
        .label
        .filter(|_| m.def.task != Task::Ranking)
        .map(|y| {
            let mut n = NumericState::default();
            n.observe(y, None);
            SeriesState::Numeric(n)
        });
    for seg in p.segments.iter() {
        let key = |feature| SeriesKey {
            model: m.def.id.clone(),
            version: p.version.clone(),
            feature,
            segment: seg.clone(),
        };
        ws.merge(&key(FeatureRef::Score), m.resolution, p.window, &score);
        if let Some(l) = &label_state {
            ws.merge(&key(FeatureRef::Label), m.resolution, p.window, l);
        }
    }
    Ok(())
}

/// Threads one batch's fold and encoding are spread over: the machine's cores. Feature columns
/// are independent, so one large batch keeps every core busy even when a single stream feeds
/// a single model.
pub fn fold_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Encodes every delta's series prefix and state over up to `threads` threads, keeping the
/// order: `(series prefix, window start, encoded state)`.
pub fn encode_deltas(
    deltas: &[(SeriesKey, Timestamp, SeriesState)],
    threads: usize,
) -> Vec<(Vec<u8>, Timestamp, Vec<u8>)> {
    let encode =
        |run: &[(SeriesKey, Timestamp, SeriesState)]| -> Vec<(Vec<u8>, Timestamp, Vec<u8>)> {
            run.iter()
                .map(|(k, ts, s)| (layout::series_prefix(k), *ts, s.encode()))
                .collect()
        };
    let threads = threads.clamp(1, deltas.len().max(1));
    if threads == 1 {
        return encode(deltas);
    }
    let per = deltas.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut runs = deltas.chunks(per);
        let first = runs.next().unwrap_or_default();
        let handles: Vec<_> = runs.map(|run| s.spawn(move || encode(run))).collect();
        let mut all = encode(first);
        for h in handles {
            match h.join() {
                Ok(part) => all.extend(part),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        all
    })
}

fn row_error(row: usize, request_id: &str, reason: impl Into<String>) -> RowError {
    RowError {
        row: row as u32,
        request_id: request_id.to_string(),
        reason: reason.into(),
    }
}

/// Ingests one inference batch of `model`; returns its ack after the durable write.
///
/// Three steps on the blocking pool: checking the batch against the model's schema (no
/// lock); the ordered step under the model's `ingest_lock` (replay, dedup, segment admission,
/// a [`Pipeline`] ticket); then folding, encoding and, in ticket order, the durable write.
pub async fn ingest_inferences(
    cx: &Ingest,
    model: Arc<ModelEntry>,
    batch: InferenceBatch,
    source: Source,
) -> Result<BatchAck> {
    let staged = stage_inference_batch(cx, model, batch, source).await?;
    write_staged(cx, staged, None).await
}

/// An inference batch past the ordered step ([`stage_inference_batch`]), to be folded and
/// written by [`write_staged`]. Until then it holds its place in its model's write order and
/// its request ids count as in flight.
pub struct StagedBatch(Staged);

impl std::fmt::Debug for StagedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &self.0 {
            Staged::Replayed(_) => "StagedBatch(replayed)",
            Staged::Ready(_) => "StagedBatch(ready)",
        })
    }
}

/// The first two steps of [`ingest_inferences`]: the schema check and the ordered step.
/// Batches staged one after the other are written in that order, so a stream may stage its
/// next batch while the previous one is still folding and writing.
pub async fn stage_inference_batch(
    cx: &Ingest,
    model: Arc<ModelEntry>,
    batch: InferenceBatch,
    source: Source,
) -> Result<StagedBatch> {
    let m = Arc::clone(&model);
    let decoded = tokio::task::spawn_blocking(move || -> Result<Decoded> {
        validate_batch(&m.def, &batch).map_err(Error::Invalid)?;
        Ok(Decoded { batch, source })
    })
    .await
    .map_err(|e| Error::Internal(format!("ingest task: {e}")))??;
    let _guard = model.ingest_lock.lock().await;
    let cx2 = cx.clone();
    let m = Arc::clone(&model);
    tokio::task::spawn_blocking(move || stage_inferences(&cx2, m, decoded))
        .await
        .map_err(|e| Error::Internal(format!("ingest task: {e}")))?
        .map(StagedBatch)
}

/// The last step of [`ingest_inferences`]: folds a staged batch and writes it in its turn.
///
/// `broken` chains the batches of one stream: a batch whose write fails sets it before
/// giving up its turn, and a later batch that finds it set when its turn comes writes
/// nothing and fails too. Without that, a later batch of the same producer could be written
/// after an earlier one failed, and the earlier one, sent again, would be taken for a replay.
pub async fn write_staged(
    cx: &Ingest,
    staged: StagedBatch,
    broken: Option<Arc<AtomicBool>>,
) -> Result<BatchAck> {
    match staged.0 {
        Staged::Replayed(ack) => Ok(ack),
        Staged::Ready(s) => {
            let cx2 = cx.clone();
            tokio::task::spawn_blocking(move || write_inferences(&cx2, *s, broken.as_deref()))
                .await
                .map_err(|e| Error::Internal(format!("ingest task: {e}")))?
        }
    }
}

/// A batch checked against its model's schema.
struct Decoded {
    batch: InferenceBatch,
    source: Source,
}

/// The outcome of the ordered step.
enum Staged {
    /// The whole batch was applied before: nothing to do.
    Replayed(BatchAck),
    /// Planned and ticketed: fold and write it.
    Ready(Box<Ready>),
}

struct Ready {
    model: Arc<ModelEntry>,
    ticket: Ticket,
    batch: InferenceBatch,
    plan: RowPlan,
    early_labels: Vec<(usize, LabelRow)>,
    ack: BatchAck,
}

/// The ordered step: replay check, request-id dedup (the store, then batches in flight),
/// segment admission (the row pass), and a place in the write order.
fn stage_inferences(cx: &Ingest, model: Arc<ModelEntry>, d: Decoded) -> Result<Staged> {
    let Decoded { batch, source } = d;
    let (producer, seq) = (source.producer.clone(), source.sequence);
    let mut ack = BatchAck {
        source,
        ..Default::default()
    };
    let in_flight_seq = model.pipeline.producer_seq(&producer);
    if is_replay(cx, "inf", &model.def.id, &producer, seq)?
        || (!producer.is_empty() && seq > 0 && in_flight_seq.is_some_and(|last| seq <= last))
    {
        ack.replayed = true;
        return Ok(Staged::Replayed(ack));
    }
    // Duplicates: within the batch, request ids of batches still being written, and request
    // ids already pending/joined. In-flight ids are checked first: one that is no longer in
    // flight was written before it left, so the store lookup sees it. Labels that arrived
    // before their prediction are joined right away.
    let ids: Vec<&str> = batch.rows.iter().map(|r| r.request_id.as_str()).collect();
    let flying = model.pipeline.in_flight(&ids);
    let mut seen: FastSet<&str> =
        FastSet::with_capacity_and_hasher(batch.rows.len(), Default::default());
    let mut skip = vec![false; batch.rows.len()];
    let mut early_labels: Vec<(usize, LabelRow)> = Vec::new();
    let mut ask: Vec<usize> = Vec::with_capacity(batch.rows.len());
    for (i, row) in batch.rows.iter().enumerate() {
        if !seen.insert(row.request_id.as_str()) || flying[i] {
            skip[i] = true;
        } else {
            ask.push(i);
        }
    }
    let asked: Vec<&str> = ask.iter().map(|i| ids[*i]).collect();
    for (i, found) in ask
        .into_iter()
        .zip(lookup_pending_many(cx, &model.def.id, &asked)?)
    {
        match found {
            Some(Pending::Prediction(_) | Pending::Joined | Pending::Expired) => skip[i] = true,
            Some(Pending::Label(l)) => early_labels.push((i, l)),
            None => {}
        }
    }
    ack.duplicates = skip.iter().filter(|s| **s).count() as u64;
    let now = cx.clock.now();
    let bounds = TimeBounds {
        oldest: cx.store.retention_cutoff(),
        newest: now.saturating_add_ms(MAX_FUTURE_MS),
    };
    // The row pass is the only step of the fold that needs the segment registry.
    let plan = {
        let mut segs = model
            .segments
            .lock()
            .map_err(|_| Error::Internal("segment lock poisoned".into()))?;
        plan_batch(
            &model.def,
            model.resolution,
            &batch,
            &mut segs,
            bounds,
            &|i, _| skip[i],
        )
    };
    let accepted_ids = plan
        .accepted_rows()
        .iter()
        .map(|i| batch.rows[*i].request_id.clone())
        .collect();
    let producer_in_flight = (!producer.is_empty() && seq > 0).then(|| (producer.clone(), seq));
    let ticket = Pipeline::ticket(&model.pipeline, accepted_ids, producer_in_flight);
    Ok(Staged::Ready(Box::new(Ready {
        model,
        ticket,
        batch,
        plan,
        early_labels,
        ack,
    })))
}

/// The unordered step (fold, encode) and the write in ticket order.
/// Folds, encodes and writes a staged batch in its turn (see [`write_staged`] for `broken`).
fn write_inferences(cx: &Ingest, r: Ready, broken: Option<&AtomicBool>) -> Result<BatchAck> {
    let Ready {
        model,
        ticket,
        batch,
        plan,
        early_labels,
        mut ack,
    } = r;
    // The turn is given up (the ticket dropped) only after `broken` is set on failure.
    let run = || -> Result<BatchAck> {
        let (producer, seq) = (ack.source.producer.clone(), ack.source.sequence);
        let threads = fold_threads();
        let mut out = {
            let refs = model
                .references
                .read()
                .map_err(|_| Error::Internal("reference lock poisoned".into()))?;
            fold_planned(&model.def, &batch, plan, &*refs, threads)
        };
        let mut ws = WriteSet::new();
        for (prefix, ts, value) in encode_deltas(&out.deltas, threads) {
            ws.merge_encoded(prefix, model.resolution, ts, value);
        }
        let early: std::collections::HashMap<&str, &LabelRow> = early_labels
            .iter()
            .map(|(i, l)| (batch.rows[*i].request_id.as_str(), l))
            .collect();
        // The versions seen, for the scheduler; the pending predictions then move into their
        // records.
        let versions: std::collections::BTreeSet<String> =
            out.pending.iter().map(|(_, p)| p.version.clone()).collect();
        let pending = std::mem::take(&mut out.pending);
        let mut sealer = records::pending::PredictionSealer::default();
        for (id, p) in pending {
            let deadline = prediction_deadline(&model, &p);
            let key = pending_key(&model.def.id, &id);
            let Some(label) = early.get(id.as_str()) else {
                ws.put_sealed(Family::Pending, key, sealer.seal(&p, deadline));
                continue;
            };
            if let Err(reason) = add_join(&mut ws, &model, &p, label) {
                tracing::warn!(request_id = %id, reason, "held label could not join");
            }
            let entry = PendingEntry {
                record: PendingRecord::Joined,
                deadline: Some(deadline),
            };
            records::put(&mut ws, Family::Pending, key, &entry)?;
        }
        record_producer(&mut ws, "inf", &model.def.id, &producer, seq)?;
        ticket.wait_turn();
        if broken.is_some_and(|b| b.load(Ordering::SeqCst)) {
            return Err(Error::Internal(
                "an earlier batch of this stream failed; this one was not written".into(),
            ));
        }
        {
            let mut segs = model
                .segments
                .lock()
                .map_err(|_| Error::Internal("segment lock poisoned".into()))?;
            Registry::save_segments(&model.def, &mut segs, &mut ws)?;
        }
        cx.store.write(&ws)?;
        ack.accepted = out.accepted as u64;
        ack.rejected = out.rejected.len() as u64;
        ack.invalid_values = out.invalid_values;
        ack.sampled_out = out.sampled_out as u64;
        ack.rejected_rows = out.rejected.iter().map(|r| r.row as u32).collect();
        ack.errors = out
            .rejected
            .iter()
            .take(MAX_ERRORS)
            .map(|r| row_error(r.row, &r.request_id, r.reason.clone()))
            .collect();
        let m = &cx.metrics;
        m.batches.fetch_add(1, Ordering::Relaxed);
        m.rows_accepted.fetch_add(ack.accepted, Ordering::Relaxed);
        m.rows_rejected.fetch_add(ack.rejected, Ordering::Relaxed);
        m.rows_duplicate
            .fetch_add(ack.duplicates, Ordering::Relaxed);
        m.feature_values.fetch_add(
            ack.accepted * batch.feature_names.len() as u64,
            Ordering::Relaxed,
        );
        m.invalid_values
            .fetch_add(ack.invalid_values, Ordering::Relaxed);
        if out.accepted > 0 {
            // The rule scheduler closes windows on event time: tell it how far this model got.
            // Rows dated past the future bound were rejected; the others (duplicates included,
            // whose times are as real) may move the watermark.
            let limit = cx.clock.now().saturating_add_ms(MAX_FUTURE_MS);
            let newest = batch
                .rows
                .iter()
                .map(|r| r.ts)
                .filter(|ts| *ts <= limit)
                .max();
            if let Some(n) = newest {
                // Pending records expire against the newest event time (crate docs of
                // driftdb_storage::pending).
                cx.store
                    .advance_pending_clock(&model.def.id, n.millis(), label_delay_ms(&model));
            }
            ack.observed = newest.map(|n| (n, versions));
        }
        Ok(ack)
    };
    let res = run();
    if res.is_err()
        && let Some(b) = broken
    {
        b.store(true, Ordering::SeqCst);
    }
    drop(ticket);
    res
}

/// Ingests one label batch of `model`; returns its ack after the durable write.
pub async fn ingest_labels(
    cx: &Ingest,
    model: Arc<ModelEntry>,
    labels: Vec<LabelIn>,
    source: Source,
) -> Result<LabelAck> {
    let _guard = model.ingest_lock.lock().await;
    let cx2 = cx.clone();
    let m2 = Arc::clone(&model);
    tokio::task::spawn_blocking(move || ingest_labels_blocking(&cx2, &m2, labels, source))
        .await
        .map_err(|e| Error::Internal(format!("label task: {e}")))?
}

fn ingest_labels_blocking(
    cx: &Ingest,
    model: &ModelEntry,
    labels: Vec<LabelIn>,
    source: Source,
) -> Result<LabelAck> {
    // Under `ingest_lock` no batch can take a ticket; wait for those ahead to be written so
    // every prediction they carry is visible to the lookups below.
    model.pipeline.wait_idle();
    let (producer, seq) = (source.producer.clone(), source.sequence);
    let mut ack = LabelAck {
        source,
        ..Default::default()
    };
    if labels.len() > MAX_BATCH_ROWS {
        return Err(Error::Invalid(format!(
            "batch of {} labels exceeds the limit of {MAX_BATCH_ROWS}; split it",
            labels.len(),
        )));
    }
    if is_replay(cx, "lbl", &model.def.id, &producer, seq)? {
        ack.replayed = true;
        return Ok(ack);
    }
    let mut ws = WriteSet::new();
    let mut seen = HashSet::new();
    let now = cx.clock.now();
    let clock = cx
        .store
        .pending_clock(&model.def.id)
        .map_or(i64::MIN, |c| c.now_ms);
    // Labels that pass the checks, with their row, for the join pass below.
    let mut candidates: Vec<(usize, LabelRow)> = Vec::with_capacity(labels.len());
    for (i, LabelIn { model_id, label }) in labels.into_iter().enumerate() {
        if let Some(other) = model_id.filter(|m| !m.is_empty() && *m != model.def.id) {
            reject_label(
                &mut ack,
                row_error(
                    i,
                    &label.request_id,
                    format!(
                        "label is for model {:?}, batch for {:?}",
                        driftdb_engine::model::clip(&other),
                        model.def.id
                    ),
                ),
            );
            continue;
        }
        if label.request_id.is_empty() {
            reject_label(&mut ack, row_error(i, "", "empty request_id"));
            continue;
        }
        if model.def.task != Task::Ranking {
            match label.label {
                Some(y) if y.is_finite() => {}
                Some(_) => {
                    reject_label(
                        &mut ack,
                        row_error(i, &label.request_id, "label is NaN or infinite"),
                    );
                    continue;
                }
                None => {
                    reject_label(&mut ack, row_error(i, &label.request_id, "label missing"));
                    continue;
                }
            }
            if model.def.task == Task::Binary
                && label.label != Some(0.0)
                && label.label != Some(1.0)
            {
                reject_label(
                    &mut ack,
                    row_error(i, &label.request_id, "binary label must be 0 or 1"),
                );
                continue;
            }
        }
        if !seen.insert(label.request_id.clone()) {
            ack.duplicates += 1;
            continue;
        }
        // The prediction of a sampled-out request id was dropped at ingest by the same rule:
        // its label has nothing to join, now or later.
        if !sampled_in(&label.request_id, model.def.sampling) {
            ack.sampled_out += 1;
            continue;
        }
        candidates.push((i, label));
    }
    // Every remaining label's pending record, in one batched lookup.
    let ids: Vec<&str> = candidates
        .iter()
        .map(|(_, l)| l.request_id.as_str())
        .collect();
    let found = lookup_pending_many(cx, &model.def.id, &ids)?;
    for ((i, label), found) in candidates.into_iter().zip(found) {
        let key = pending_key(&model.def.id, &label.request_id);
        match found {
            // Too late for its prediction (by the label's own time), or the prediction's
            // record has expired: counted, not an error (the label was not wrong, only late).
            Some(Pending::Prediction(p)) if label_expired(model, &p, &label, now) => {
                ack.expired += 1;
            }
            Some(Pending::Expired) => ack.expired += 1,
            Some(Pending::Prediction(p)) => match add_join(&mut ws, model, &p, &label) {
                Ok(()) => {
                    let entry = PendingEntry {
                        record: PendingRecord::Joined,
                        deadline: Some(prediction_deadline(model, &p)),
                    };
                    records::put(&mut ws, Family::Pending, key, &entry)?;
                    ack.joined += 1;
                }
                Err(reason) => {
                    reject_label(&mut ack, row_error(i, &label.request_id, reason));
                }
            },
            Some(Pending::Joined | Pending::Label(_)) => ack.duplicates += 1,
            None => {
                // Held until its prediction comes, at most `max_label_delay` past its own time;
                // a label whose hold would already be over is expired at once.
                let arrived = if label.ts.0 > 0 { label.ts.0 } else { now.0 };
                let deadline = arrived.saturating_add(label_delay_ms(model));
                if clock > deadline {
                    ack.expired += 1;
                } else {
                    let entry = PendingEntry {
                        record: PendingRecord::Label(label),
                        deadline: Some(deadline),
                    };
                    records::put(&mut ws, Family::Pending, key, &entry)?;
                    ack.pending += 1;
                }
            }
        }
    }
    record_producer(&mut ws, "lbl", &model.def.id, &producer, seq)?;
    if !ws.is_empty() {
        cx.store.write(&ws)?;
    }
    let m = &cx.metrics;
    m.labels_joined.fetch_add(ack.joined, Ordering::Relaxed);
    m.labels_pending.fetch_add(ack.pending, Ordering::Relaxed);
    m.labels_rejected.fetch_add(ack.rejected, Ordering::Relaxed);
    m.labels_expired.fetch_add(ack.expired, Ordering::Relaxed);
    Ok(ack)
}

/// Whether a label comes later than `max_label_delay` after the end of its prediction's window
/// (judged by the label's own time, or the server's clock when it has none).
fn label_expired(
    model: &ModelEntry,
    p: &PendingPrediction,
    label: &LabelRow,
    now: Timestamp,
) -> bool {
    let delay = label_delay_ms(model);
    let arrived = if label.ts.0 > 0 { label.ts } else { now };
    let window_end = p.window.0.saturating_add(model.resolution.width_ms());
    arrived.0 > window_end.saturating_add(delay)
}

fn reject_label(ack: &mut LabelAck, e: RowError) {
    ack.rejected += 1;
    ack.rejected_rows.push(e.row);
    push_err(&mut ack.errors, e);
}

fn push_err(errors: &mut Vec<RowError>, e: RowError) {
    if errors.len() < MAX_ERRORS {
        errors.push(e);
    }
}
