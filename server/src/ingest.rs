//! The ingest path: validate a batch, drop replays and duplicate request ids, fold rows into
//! sketch deltas, and write deltas, dedup records and pending label joins as one durable
//! RocksDB batch before acknowledging (SPEC §5, §10.4).
//!
//! Label joins: every accepted prediction leaves a `pending` record keyed by (model,
//! request id) holding what its label will need (window, segments, score). A label that finds
//! it folds a performance delta into the prediction's window and marks the record joined; a
//! label that arrives first is held in the same record until its prediction comes. The record
//! doubles as request-id dedup: a prediction whose record exists is a duplicate.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use driftdb_engine::codec::{Reader, Writer};
use driftdb_engine::ingest::{
    InferenceBatch, LabelRow, PendingPrediction, RowPlan, TimeBounds, fold_planned, join_delta,
    plan_batch, validate_batch,
};
use driftdb_engine::model::Task;
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::{NumericState, ScoreState, SeriesState};
use driftdb_engine::time::Timestamp;
use driftdb_proto::v1 as pb;
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, WriteSet};

use crate::convert::{batch_from_pb, label_from_pb};
use crate::error::{Error, Result};
use crate::node::Node;
use crate::registry::{ModelEntry, Registry};

const KIND_PENDING: u8 = 0x30;
const KIND_PRODUCER: u8 = 0x31;
/// Errors reported per ack at most.
const MAX_ERRORS: usize = 100;
/// How far in the future an event time may be (clock skew allowance).
pub const MAX_FUTURE_MS: i64 = 60 * 60 * 1000;

/// The state of one request id in the `pending` family.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingRecord {
    /// A prediction waiting for its label.
    Prediction(PendingPrediction),
    /// A label waiting for its prediction.
    Label(LabelRow),
    /// Joined; kept so duplicates of either side are recognised.
    Joined,
}

fn pending_key(model: &str, request_id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::PENDING_BY_ID)
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

fn opt_f64(w: &mut Writer, v: Option<f64>) {
    match v {
        Some(x) => {
            w.u8(1);
            w.f64(x);
        }
        None => w.u8(0),
    }
}

fn read_opt_f64(r: &mut Reader<'_>) -> Result<Option<f64>> {
    Ok(if r.u8()? == 1 { Some(r.f64()?) } else { None })
}

impl PendingRecord {
    /// Encodes the record (layout in `storage/FORMAT.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            PendingRecord::Prediction(p) => {
                w.u8(1);
                w.str(&p.version);
                w.f64(p.window.0 as f64);
                w.varint(p.segments.len() as u64);
                for s in &p.segments {
                    s.encode(&mut w);
                }
                opt_f64(&mut w, p.score);
                w.varint(p.items.len() as u64);
                for i in &p.items {
                    w.str(i);
                }
            }
            PendingRecord::Label(l) => {
                w.u8(2);
                w.f64(l.ts.0 as f64);
                opt_f64(&mut w, l.label);
                opt_f64(&mut w, l.click);
                opt_f64(&mut w, l.purchase);
                opt_f64(&mut w, l.revenue);
                w.varint(l.relevance.len() as u64);
                for (k, v) in &l.relevance {
                    w.str(k);
                    w.f64(*v);
                }
            }
            PendingRecord::Joined => w.u8(3),
        }
        w.into_bytes()
    }

    /// Decodes a record for `request_id`.
    pub fn decode(request_id: &str, b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let rec = match r.u8()? {
            1 => {
                let version = r.str()?.to_string();
                let window = Timestamp(r.f64()? as i64);
                let n = r.len(1024, "segments")?;
                let mut segments = Vec::with_capacity(n);
                for _ in 0..n {
                    segments.push(Segment::decode(&mut r)?);
                }
                let score = read_opt_f64(&mut r)?;
                let m = r.len(100_000, "items")?;
                let mut items = Vec::with_capacity(m);
                for _ in 0..m {
                    items.push(r.str()?.to_string());
                }
                PendingRecord::Prediction(PendingPrediction {
                    version,
                    window,
                    segments,
                    score,
                    items,
                })
            }
            2 => {
                let ts = Timestamp(r.f64()? as i64);
                let label = read_opt_f64(&mut r)?;
                let click = read_opt_f64(&mut r)?;
                let purchase = read_opt_f64(&mut r)?;
                let revenue = read_opt_f64(&mut r)?;
                let n = r.len(100_000, "relevance")?;
                let mut relevance = Vec::with_capacity(n);
                for _ in 0..n {
                    relevance.push((r.str()?.to_string(), r.f64()?));
                }
                PendingRecord::Label(LabelRow {
                    request_id: request_id.to_string(),
                    ts,
                    label,
                    click,
                    purchase,
                    revenue,
                    relevance,
                })
            }
            3 => PendingRecord::Joined,
            t => return Err(Error::Internal(format!("pending record tag {t}"))),
        };
        r.finish("pending record")?;
        Ok(rec)
    }
}

/// The last applied sequence of a producer, if any.
fn producer_seq(node: &Node, kind: &str, model: &str, producer: &str) -> Result<Option<u64>> {
    Ok(
        match node
            .store
            .family(Family::Dedup)
            .get(&producer_key(kind, model, producer))?
        {
            Some(e) => Some(Reader::new(&e.payload).varint()?),
            None => None,
        },
    )
}

/// Whether `(producer, seq)` was already applied (sequence 0 or no producer: never a replay).
fn is_replay(node: &Node, kind: &str, model: &str, producer: &str, seq: u64) -> Result<bool> {
    if producer.is_empty() || seq == 0 {
        return Ok(false);
    }
    Ok(producer_seq(node, kind, model, producer)?.is_some_and(|last| seq <= last))
}

fn record_producer(ws: &mut WriteSet, kind: &str, model: &str, producer: &str, seq: u64) {
    if !producer.is_empty() && seq > 0 {
        let mut w = Writer::new();
        w.varint(seq);
        ws.put(
            Family::Dedup,
            producer_key(kind, model, producer),
            KIND_PRODUCER,
            &w.into_bytes(),
        );
    }
}

fn lookup_pending(node: &Node, model: &str, request_id: &str) -> Result<Option<PendingRecord>> {
    match node
        .store
        .family(Family::Pending)
        .get(&pending_key(model, request_id))
    {
        Ok(Some(e)) => Ok(Some(PendingRecord::decode(request_id, &e.payload)?)),
        Ok(None) => Ok(None),
        // A corrupt record is reported and treated as absent rather than failing the batch.
        Err(e) if e.kind() == driftdb_engine::ErrorKind::Corruption => {
            tracing::warn!(request_id, error = %e, "corrupt pending record ignored");
            Ok(None)
        }
        Err(e) => Err(e.into()),
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
    for seg in &p.segments {
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

fn row_error(row: usize, request_id: &str, reason: impl Into<String>) -> pb::RowError {
    pb::RowError {
        row: row as u32,
        request_id: request_id.to_string(),
        reason: reason.into(),
    }
}

/// The write order of one model's inference batches.
///
/// Ingest of a batch has ordered steps and an unordered one. Ordered, under the model's
/// `ingest_lock`: the replay check, request-id dedup and segment admission, after which the
/// batch takes a ticket. Unordered, without any lock: folding the columns and encoding the
/// deltas, the bulk of the work, so one batch folds while the batch before it is written.
/// Ordered again: batches write in ticket order. The request ids and producer sequence of a
/// ticketed batch stay "in flight" until its write is done, so the dedup of a later batch,
/// which cannot see them in the store yet, sees them here. Labels take `ingest_lock` and wait
/// for the pipeline to drain ([`Pipeline::wait_idle`]), so a label never races the write of its
/// prediction.
#[derive(Debug, Default)]
pub struct Pipeline {
    state: std::sync::Mutex<PipelineState>,
    turn: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct PipelineState {
    /// The next ticket to hand out.
    issued: u64,
    /// The ticket whose turn it is to write.
    writing: u64,
    /// Tickets given up (failed or cancelled) before their turn came.
    abandoned: BTreeSet<u64>,
    /// Request ids of ticketed batches not written yet.
    ids: HashSet<String>,
    /// (producer, sequence) of ticketed batches not written yet.
    producers: Vec<(String, u64)>,
}

impl Pipeline {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipelineState> {
        // The state stays consistent under a panic (every update is a single step), so a
        // poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `id` belongs to a batch that is ticketed but not written yet.
    fn in_flight(&self, ids: &[&str]) -> Vec<bool> {
        let s = self.lock();
        ids.iter().map(|id| s.ids.contains(*id)).collect()
    }

    /// The highest sequence of `producer` in flight.
    fn producer_seq(&self, producer: &str) -> Option<u64> {
        let s = self.lock();
        s.producers
            .iter()
            .filter(|(p, _)| p == producer)
            .map(|(_, q)| *q)
            .max()
    }

    /// Takes the next place in the write order; `ids` and the producer's sequence count as in
    /// flight until the ticket is dropped.
    fn ticket(model: Arc<ModelEntry>, ids: Vec<String>, producer: Option<(String, u64)>) -> Ticket {
        let n = {
            let mut s = model.pipeline.lock();
            let n = s.issued;
            s.issued += 1;
            s.ids.extend(ids.iter().cloned());
            s.producers.extend(producer.iter().cloned());
            n
        };
        Ticket {
            model,
            n,
            ids,
            producer,
        }
    }

    /// Blocks until every ticketed batch has written (or given up).
    pub fn wait_idle(&self) {
        let mut s = self.lock();
        while s.writing < s.issued {
            s = self
                .turn
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// A batch's place in its model's write order; dropping it (written, failed or cancelled)
/// passes the turn on and releases its in-flight ids.
#[derive(Debug)]
struct Ticket {
    model: Arc<ModelEntry>,
    n: u64,
    ids: Vec<String>,
    producer: Option<(String, u64)>,
}

impl Ticket {
    /// Blocks until every earlier ticket has written (or given up).
    fn wait_turn(&self) {
        let p = &self.model.pipeline;
        let mut s = p.lock();
        while s.writing != self.n {
            s = p
                .turn
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let p = &self.model.pipeline;
        let mut s = p.lock();
        for id in &self.ids {
            s.ids.remove(id);
        }
        if let Some(mine) = &self.producer
            && let Some(i) = s.producers.iter().position(|x| x == mine)
        {
            s.producers.swap_remove(i);
        }
        if s.writing == self.n {
            s.writing += 1;
            loop {
                let next = s.writing;
                if !s.abandoned.remove(&next) {
                    break;
                }
                s.writing += 1;
            }
        } else {
            s.abandoned.insert(self.n);
        }
        drop(s);
        p.turn.notify_all();
    }
}

/// Ingests one inference batch; returns its ack after the durable write.
///
/// Three steps on the blocking pool: decoding and checking the batch (no lock); the ordered
/// step under the model's `ingest_lock` (replay, dedup, segment admission, a [`Pipeline`]
/// ticket); then folding, encoding and, in ticket order, the durable write.
pub async fn ingest_inferences(node: &Node, b: pb::InferenceBatch) -> Result<pb::BatchAck> {
    let model = node.registry.get(&b.model_id)?;
    let m = Arc::clone(&model);
    let decoded = tokio::task::spawn_blocking(move || decode_inferences(&m, b))
        .await
        .map_err(|e| Error::Internal(format!("ingest task: {e}")))??;
    let staged = {
        let _guard = model.ingest_lock.lock().await;
        let node2 = node.clone();
        let m = Arc::clone(&model);
        tokio::task::spawn_blocking(move || stage_inferences(&node2, m, decoded))
            .await
            .map_err(|e| Error::Internal(format!("ingest task: {e}")))??
    };
    match staged {
        Staged::Replayed(ack) => Ok(ack),
        Staged::Ready(s) => {
            let node2 = node.clone();
            tokio::task::spawn_blocking(move || write_inferences(&node2, *s))
                .await
                .map_err(|e| Error::Internal(format!("ingest task: {e}")))?
        }
    }
}

/// A batch decoded and checked against its model's schema.
struct Decoded {
    batch: InferenceBatch,
    producer: String,
    seq: u64,
}

fn decode_inferences(model: &ModelEntry, b: pb::InferenceBatch) -> Result<Decoded> {
    let producer = b.producer_id.clone();
    let seq = b.sequence;
    let (batch, _labels) = batch_from_pb(b, &model.def.features)?;
    validate_batch(&model.def, &batch).map_err(Error::Invalid)?;
    Ok(Decoded {
        batch,
        producer,
        seq,
    })
}

/// The outcome of the ordered step.
enum Staged {
    /// The whole batch was applied before: nothing to do.
    Replayed(pb::BatchAck),
    /// Planned and ticketed: fold and write it.
    Ready(Box<Ready>),
}

struct Ready {
    ticket: Ticket,
    batch: InferenceBatch,
    plan: RowPlan,
    early_labels: Vec<(usize, LabelRow)>,
    ack: pb::BatchAck,
    producer: String,
    seq: u64,
}

/// The ordered step: replay check, request-id dedup (the store, then batches in flight),
/// segment admission (the row pass), and a place in the write order.
fn stage_inferences(node: &Node, model: Arc<ModelEntry>, d: Decoded) -> Result<Staged> {
    let Decoded {
        batch,
        producer,
        seq,
    } = d;
    let mut ack = pb::BatchAck {
        producer_id: producer.clone(),
        sequence: seq,
        ..Default::default()
    };
    let in_flight_seq = model.pipeline.producer_seq(&producer);
    if is_replay(node, "inf", &model.def.id, &producer, seq)?
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
    let mut seen = HashSet::with_capacity(batch.rows.len());
    let mut skip = vec![false; batch.rows.len()];
    let mut early_labels: Vec<(usize, LabelRow)> = Vec::new();
    for (i, row) in batch.rows.iter().enumerate() {
        if !seen.insert(row.request_id.as_str()) || flying[i] {
            skip[i] = true;
            continue;
        }
        match lookup_pending(node, &model.def.id, &row.request_id)? {
            Some(PendingRecord::Prediction(_)) | Some(PendingRecord::Joined) => skip[i] = true,
            Some(PendingRecord::Label(l)) => early_labels.push((i, l)),
            None => {}
        }
    }
    ack.duplicates = skip.iter().filter(|s| **s).count() as u64;
    let now = node.clock.now();
    let bounds = TimeBounds {
        oldest: node.store.retention_cutoff(),
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
    let ticket = Pipeline::ticket(model, accepted_ids, producer_in_flight);
    Ok(Staged::Ready(Box::new(Ready {
        ticket,
        batch,
        plan,
        early_labels,
        ack,
        producer,
        seq,
    })))
}

/// The unordered step (fold, encode) and the write in ticket order.
fn write_inferences(node: &Node, r: Ready) -> Result<pb::BatchAck> {
    let Ready {
        ticket,
        batch,
        plan,
        early_labels,
        mut ack,
        producer,
        seq,
    } = r;
    let model = Arc::clone(&ticket.model);
    let threads = fold_threads();
    let out = {
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
    for (id, p) in &out.pending {
        let rec = match early.get(id.as_str()) {
            Some(label) => match add_join(&mut ws, &model, p, label) {
                Ok(()) => PendingRecord::Joined,
                Err(reason) => {
                    tracing::warn!(request_id = %id, reason, "held label could not join");
                    PendingRecord::Joined
                }
            },
            None => PendingRecord::Prediction(p.clone()),
        };
        ws.put(
            Family::Pending,
            pending_key(&model.def.id, id),
            KIND_PENDING,
            &rec.encode(),
        );
    }
    record_producer(&mut ws, "inf", &model.def.id, &producer, seq);
    ticket.wait_turn();
    {
        let mut segs = model
            .segments
            .lock()
            .map_err(|_| Error::Internal("segment lock poisoned".into()))?;
        Registry::save_segments(&model.def, &mut segs, &mut ws);
    }
    node.store.write(&ws)?;
    drop(ticket);
    ack.accepted = out.accepted as u64;
    ack.rejected = out.rejected.len() as u64;
    ack.invalid_values = out.invalid_values;
    ack.sampled_out = out.sampled_out as u64;
    ack.errors = out
        .rejected
        .iter()
        .take(MAX_ERRORS)
        .map(|r| row_error(r.row, &r.request_id, r.reason.clone()))
        .collect();
    node.metrics.record_ingest(&ack, batch.feature_names.len());
    if out.accepted > 0 {
        // The rule scheduler closes windows on event time: tell it how far this model got.
        // Rows dated past the future bound were rejected; the others (duplicates included,
        // whose times are as real) may move the watermark.
        let limit = node.clock.now().saturating_add_ms(MAX_FUTURE_MS);
        let newest = batch
            .rows
            .iter()
            .map(|r| r.ts)
            .filter(|ts| *ts <= limit)
            .max();
        let versions: std::collections::BTreeSet<String> =
            out.pending.iter().map(|(_, p)| p.version.clone()).collect();
        if let Some(newest) = newest {
            node.rules.observe(&model.def.id, newest, versions);
        }
    }
    Ok(ack)
}

/// Ingests one label batch; returns its ack after the durable write.
pub async fn ingest_labels(node: &Node, b: pb::LabelBatch) -> Result<pb::LabelAck> {
    let model = node.registry.get(&b.model_id)?;
    let _guard = model.ingest_lock.lock().await;
    let node2 = node.clone();
    let m2 = std::sync::Arc::clone(&model);
    tokio::task::spawn_blocking(move || ingest_labels_blocking(&node2, &m2, b))
        .await
        .map_err(|e| Error::Internal(format!("label task: {e}")))?
}

fn ingest_labels_blocking(
    node: &Node,
    model: &ModelEntry,
    b: pb::LabelBatch,
) -> Result<pb::LabelAck> {
    // Under `ingest_lock` no batch can take a ticket; wait for those ahead to be written so
    // every prediction they carry is visible to the lookups below.
    model.pipeline.wait_idle();
    let mut ack = pb::LabelAck {
        producer_id: b.producer_id.clone(),
        sequence: b.sequence,
        ..Default::default()
    };
    if b.labels.len() > crate::convert::MAX_BATCH_ROWS {
        return Err(Error::Overloaded(format!(
            "batch of {} labels exceeds the limit of {}; split it",
            b.labels.len(),
            crate::convert::MAX_BATCH_ROWS
        )));
    }
    if is_replay(node, "lbl", &model.def.id, &b.producer_id, b.sequence)? {
        ack.replayed = true;
        return Ok(ack);
    }
    let mut ws = WriteSet::new();
    let mut seen = HashSet::new();
    let now = node.clock.now();
    for (i, l) in b.labels.into_iter().enumerate() {
        if !l.model_id.is_empty() && l.model_id != model.def.id {
            ack.rejected += 1;
            push_err(
                &mut ack.errors,
                row_error(
                    i,
                    &l.request_id,
                    format!(
                        "label is for model {:?}, batch for {:?}",
                        l.model_id, model.def.id
                    ),
                ),
            );
            continue;
        }
        let label = label_from_pb(l);
        if label.request_id.is_empty() {
            ack.rejected += 1;
            push_err(&mut ack.errors, row_error(i, "", "empty request_id"));
            continue;
        }
        if model.def.task != Task::Ranking {
            match label.label {
                Some(y) if y.is_finite() => {}
                Some(_) => {
                    ack.rejected += 1;
                    push_err(
                        &mut ack.errors,
                        row_error(i, &label.request_id, "label is NaN or infinite"),
                    );
                    continue;
                }
                None => {
                    ack.rejected += 1;
                    push_err(
                        &mut ack.errors,
                        row_error(i, &label.request_id, "label missing"),
                    );
                    continue;
                }
            }
            if model.def.task == Task::Binary
                && label.label != Some(0.0)
                && label.label != Some(1.0)
            {
                ack.rejected += 1;
                push_err(
                    &mut ack.errors,
                    row_error(i, &label.request_id, "binary label must be 0 or 1"),
                );
                continue;
            }
        }
        if !seen.insert(label.request_id.clone()) {
            ack.duplicates += 1;
            continue;
        }
        let key = pending_key(&model.def.id, &label.request_id);
        match lookup_pending(node, &model.def.id, &label.request_id)? {
            Some(PendingRecord::Prediction(p)) if label_expired(model, &p, &label, now) => {
                ack.rejected += 1;
                push_err(
                    &mut ack.errors,
                    row_error(
                        i,
                        &label.request_id,
                        format!(
                            "label arrived more than max_label_delay ({}) after its prediction's window",
                            model.def.max_label_delay
                        ),
                    ),
                );
            }
            Some(PendingRecord::Prediction(p)) => match add_join(&mut ws, model, &p, &label) {
                Ok(()) => {
                    ws.put(
                        Family::Pending,
                        key,
                        KIND_PENDING,
                        &PendingRecord::Joined.encode(),
                    );
                    ack.joined += 1;
                }
                Err(reason) => {
                    ack.rejected += 1;
                    push_err(&mut ack.errors, row_error(i, &label.request_id, reason));
                }
            },
            Some(PendingRecord::Joined) | Some(PendingRecord::Label(_)) => ack.duplicates += 1,
            None => {
                ws.put(
                    Family::Pending,
                    key,
                    KIND_PENDING,
                    &PendingRecord::Label(label).encode(),
                );
                ack.pending += 1;
            }
        }
    }
    record_producer(&mut ws, "lbl", &model.def.id, &b.producer_id, b.sequence);
    if !ws.is_empty() {
        node.store.write(&ws)?;
    }
    node.metrics.record_labels(&ack);
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
    let delay = driftdb_engine::time::DurationMs::parse(&model.def.max_label_delay)
        .map_or(i64::MAX, |d| d.millis());
    let arrived = if label.ts.0 > 0 { label.ts } else { now };
    let window_end = p.window.0.saturating_add(model.resolution.width_ms());
    arrived.0 > window_end.saturating_add(delay)
}

fn push_err(errors: &mut Vec<pb::RowError>, e: pb::RowError) {
    if errors.len() < MAX_ERRORS {
        errors.push(e);
    }
}
