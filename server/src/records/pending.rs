//! The label-join records: one per (model, request id) in the `pending` family, and the last
//! applied sequence of each producer in the `dedup` family.

use driftdb_engine::codec::{Reader, Writer};
use driftdb_engine::ingest::{LabelRow, PendingPrediction};
use driftdb_engine::series::Segment;
use driftdb_engine::time::Timestamp;

use super::{Record, RecordKind, corrupt};
use crate::error::Result;

/// The state of one request id in the `pending` family (see [`PendingEntry`] for how it is
/// stored).
#[derive(Debug, Clone, PartialEq)]
pub enum PendingRecord {
    /// A prediction waiting for its label.
    Prediction(PendingPrediction),
    /// A label waiting for its prediction.
    Label(LabelRow),
    /// Joined; kept so duplicates of either side are recognised.
    Joined,
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

fn read_opt_f64(r: &mut Reader<'_>) -> driftdb_engine::Result<Option<f64>> {
    Ok(if r.u8()? == 1 { Some(r.f64()?) } else { None })
}

/// A pending record as stored: the record and its deadline. Past the deadline (against the
/// model's expiry clock, `driftdb_storage::pending`) a held label or a joined record is gone,
/// and a prediction is an expired tombstone until the compaction filter removes it. Records
/// written before deadlines existed have none and never expire.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    /// The record.
    pub record: PendingRecord,
    /// Its deadline (ms, on the model's expiry clock).
    pub deadline: Option<i64>,
}

impl Record for PendingEntry {
    const KIND: RecordKind = RecordKind::Pending;
    const WHAT: &'static str = "pending record";

    /// The layout is in `storage/FORMAT.md` §5: tag (1 prediction, 2 label, 3 joined; with
    /// bit 0x10 when an i64le deadline follows), then the record.
    fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        let tag = |t: u8| if self.deadline.is_some() { t | 0x10 } else { t };
        let deadline = |w: &mut Writer| {
            if let Some(d) = self.deadline {
                w.i64(d);
            }
        };
        match &self.record {
            PendingRecord::Prediction(p) => {
                w.u8(tag(1));
                deadline(&mut w);
                w.str(&p.version);
                w.f64(p.window.0 as f64);
                w.varint(p.segments.len() as u64);
                for s in p.segments.iter() {
                    s.encode(&mut w);
                }
                opt_f64(&mut w, p.score);
                w.varint(p.items.len() as u64);
                for i in &p.items {
                    w.str(i);
                }
            }
            PendingRecord::Label(l) => {
                w.u8(tag(2));
                deadline(&mut w);
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
            PendingRecord::Joined => {
                w.u8(tag(3));
                deadline(&mut w);
            }
        }
        Ok(w.into_bytes())
    }

    /// Reads a record; a held label's `request_id` is left empty (it is the key's, not the
    /// value's: the reader fills it in).
    fn decode(b: &[u8]) -> Result<Self> {
        decode_pending(b).map_err(|e| corrupt(Self::WHAT, e))
    }
}

fn decode_pending(b: &[u8]) -> driftdb_engine::Result<PendingEntry> {
    {
        let mut r = Reader::new(b);
        let tag = r.u8()?;
        let deadline = if tag & 0x10 != 0 {
            Some(r.i64()?)
        } else {
            None
        };
        let rec = match tag & !0x10 {
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
                    segments: segments.into(),
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
                    request_id: String::new(),
                    ts,
                    label,
                    click,
                    purchase,
                    revenue,
                    relevance,
                })
            }
            3 => PendingRecord::Joined,
            t => {
                return Err(driftdb_engine::Error::Malformed {
                    what: "pending record",
                    detail: format!("tag {t}"),
                });
            }
        };
        r.finish("pending record")?;
        Ok(PendingEntry {
            record: rec,
            deadline,
        })
    }
}

/// Seals the pending records of a batch's predictions, each byte for byte what
/// [`PendingEntry::encode`] and the envelope give. The head of a record (tag, deadline,
/// version, window, segments) is the same for every row of a batch with the same segment
/// list, window and version (a batch has a few of those, its rows interleaved), so each head
/// is encoded once and copied.
#[derive(Debug, Default)]
pub struct PredictionSealer {
    /// Heads by what they were built for: the segment list (held, so that its address stays
    /// its own), window, deadline and version.
    heads: Vec<Head>,
}

#[derive(Debug)]
struct Head {
    segments: std::sync::Arc<[Segment]>,
    window: i64,
    deadline: i64,
    version: String,
    bytes: Vec<u8>,
}

/// Heads kept at most; past it the cache starts again (a batch rarely has this many).
const MAX_HEADS: usize = 256;

impl PredictionSealer {
    /// The sealed value of `p`'s pending record with `deadline`.
    pub fn seal(&mut self, p: &PendingPrediction, deadline: i64) -> Vec<u8> {
        let found = self.heads.iter().position(|h| {
            std::sync::Arc::ptr_eq(&h.segments, &p.segments)
                && h.window == p.window.0
                && h.deadline == deadline
                && h.version == p.version
        });
        let at = match found {
            Some(i) => i,
            None => {
                if self.heads.len() == MAX_HEADS {
                    self.heads.clear();
                }
                let mut w = Writer::new();
                w.u8(1 | 0x10);
                w.i64(deadline);
                w.str(&p.version);
                w.f64(p.window.0 as f64);
                w.varint(p.segments.len() as u64);
                for s in p.segments.iter() {
                    s.encode(&mut w);
                }
                self.heads.push(Head {
                    segments: std::sync::Arc::clone(&p.segments),
                    window: p.window.0,
                    deadline,
                    version: p.version.clone(),
                    bytes: w.into_bytes(),
                });
                self.heads.len() - 1
            }
        };
        let head = &self.heads[at].bytes;
        let items: usize = p.items.iter().map(|i| i.len() + 2).sum();
        let mut w = Writer::sealed(RecordKind::Pending.byte(), head.len() + 10 + items);
        w.raw(head);
        opt_f64(&mut w, p.score);
        w.varint(p.items.len() as u64);
        for i in &p.items {
            w.str(i);
        }
        w.finish_sealed()
    }
}

/// The last applied batch sequence of one producer (exactly-once replays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSeq(pub u64);

impl Record for ProducerSeq {
    const KIND: RecordKind = RecordKind::Producer;
    const WHAT: &'static str = "producer sequence";

    fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.varint(self.0);
        Ok(w.into_bytes())
    }

    fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let seq = r.varint().map_err(|e| corrupt(Self::WHAT, e))?;
        r.finish(Self::WHAT).map_err(|e| corrupt(Self::WHAT, e))?;
        Ok(ProducerSeq(seq))
    }
}
