//! What external sources (the Kafka consumer, which lives in the binary's crate) share with
//! the node: their counters, lag and rebalances on `/metrics`, and the bounded ring of records
//! they could not ingest at all, served at `GET /ingest/rejects` when no dead-letter topic is
//! configured. The node only keeps and shows these; the source fills them.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Records kept in the rejected-records ring; older ones are dropped first.
pub const REJECT_RING: usize = 1000;
/// Bytes of a rejected record's value kept in the ring.
pub const REJECT_PREVIEW_BYTES: usize = 512;

/// What became of a consumed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordResult {
    /// Decoded and written (some rows may have been rejected, as over gRPC).
    Applied,
    /// Already applied before (a replay after a restart or rebalance): skipped.
    Replayed,
    /// Undecodable, or every row rejected: sent to the dead-letter topic or the ring.
    Rejected,
}

impl RecordResult {
    const ALL: [RecordResult; 3] = [
        RecordResult::Applied,
        RecordResult::Replayed,
        RecordResult::Rejected,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            RecordResult::Applied => "applied",
            RecordResult::Replayed => "replayed",
            RecordResult::Rejected => "rejected",
        }
    }
}

/// A record no row of which could be ingested.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RejectedRecord {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Why it was rejected.
    pub error: String,
    /// The record's key (the model id), if any and UTF-8.
    pub key: Option<String>,
    /// The start of its value (lossy UTF-8, at most [`REJECT_PREVIEW_BYTES`] bytes).
    pub value: String,
}

/// Lag of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lag {
    /// Records between the next offset to apply and the partition's high watermark.
    pub records: i64,
    /// Seconds between now and the timestamp of the last applied record (0 when caught up).
    pub seconds: f64,
}

/// Sources' state on one node.
#[derive(Debug, Default)]
pub struct Sources {
    /// Whether a source runs (its metrics are rendered only then).
    pub kafka_enabled: AtomicBool,
    records: [AtomicU64; 3],
    /// Records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Consumer-group rebalances (assignments and revocations).
    pub rebalances: AtomicU64,
    /// Times consumption was held back because the write path fell behind.
    pub pauses: AtomicU64,
    /// Times it went on.
    pub resumes: AtomicU64,
    lag: Mutex<BTreeMap<(String, i32), Lag>>,
    rejects: Mutex<VecDeque<RejectedRecord>>,
}

impl Sources {
    /// Counts `n` records with `result`.
    pub fn count(&self, result: RecordResult, n: u64) {
        self.records[result.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Records counted with `result`.
    pub fn records(&self, result: RecordResult) -> u64 {
        self.records[result.index()].load(Ordering::Relaxed)
    }

    /// Sets a partition's lag.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: Lag) {
        if let Ok(mut l) = self.lag.lock() {
            l.insert((topic.to_string(), partition), lag);
        }
    }

    /// Forgets a partition's lag (it was revoked).
    pub fn clear_lag(&self, topic: &str, partition: i32) {
        if let Ok(mut l) = self.lag.lock() {
            l.remove(&(topic.to_string(), partition));
        }
    }

    /// Every partition's lag.
    pub fn lags(&self) -> Vec<((String, i32), Lag)> {
        self.lag
            .lock()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Keeps a rejected record in the ring (the oldest goes when it is full).
    pub fn push_reject(&self, mut r: RejectedRecord) {
        if r.value.len() > REJECT_PREVIEW_BYTES {
            let mut cut = REJECT_PREVIEW_BYTES;
            while !r.value.is_char_boundary(cut) {
                cut -= 1;
            }
            r.value.truncate(cut);
        }
        if let Ok(mut q) = self.rejects.lock() {
            if q.len() >= REJECT_RING {
                q.pop_front();
            }
            q.push_back(r);
        }
    }

    /// The rejected records kept, oldest first.
    pub fn rejects(&self) -> Vec<RejectedRecord> {
        self.rejects
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The sources' series in Prometheus' text format (nothing when no source runs).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.kafka_enabled.load(Ordering::Relaxed) {
            return out;
        }
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str(
            "# HELP driftdb_kafka_records_total Kafka records consumed, by what became of them.\n\
             # TYPE driftdb_kafka_records_total counter\n",
        );
        for r in RecordResult::ALL {
            let _ = writeln!(
                out,
                "driftdb_kafka_records_total{{result=\"{}\"}} {}",
                r.name(),
                self.records(r)
            );
        }
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        counter(
            "driftdb_kafka_dead_lettered_total",
            "Kafka records sent to the dead-letter topic.",
            g(&self.dead_lettered),
        );
        counter(
            "driftdb_kafka_rebalances_total",
            "Consumer-group rebalances (assignments and revocations).",
            g(&self.rebalances),
        );
        counter(
            "driftdb_kafka_pauses_total",
            "Times the consumer held its partitions back because the write path fell behind.",
            g(&self.pauses),
        );
        counter(
            "driftdb_kafka_resumes_total",
            "Times the consumer went on after holding back.",
            g(&self.resumes),
        );
        let lags = self.lags();
        out.push_str(
            "# HELP driftdb_kafka_lag_records Records between the next offset to apply and the \
             high watermark.\n# TYPE driftdb_kafka_lag_records gauge\n",
        );
        for ((t, p), l) in &lags {
            let _ = writeln!(
                out,
                "driftdb_kafka_lag_records{{topic=\"{}\",partition=\"{p}\"}} {}",
                escape(t),
                l.records
            );
        }
        out.push_str(
            "# HELP driftdb_kafka_lag_seconds Age of the last applied record while records \
             are waiting (0 when caught up).\n# TYPE driftdb_kafka_lag_seconds gauge\n",
        );
        for ((t, p), l) in &lags {
            let _ = writeln!(
                out,
                "driftdb_kafka_lag_seconds{{topic=\"{}\",partition=\"{p}\"}} {}",
                escape(t),
                l.seconds
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, value: &str) -> RejectedRecord {
        RejectedRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            error: "bad".into(),
            key: None,
            value: value.into(),
        }
    }

    #[test]
    fn ring_is_bounded_and_keeps_the_newest() {
        let s = Sources::default();
        for i in 0..(REJECT_RING as i64 + 5) {
            s.push_reject(rec(i, "x"));
        }
        let r = s.rejects();
        assert_eq!(r.len(), REJECT_RING);
        assert_eq!(r[0].offset, 5);
        assert_eq!(r[REJECT_RING - 1].offset, REJECT_RING as i64 + 4);
    }

    #[test]
    fn previews_are_cut_on_a_char_boundary() {
        let s = Sources::default();
        s.push_reject(rec(0, &"é".repeat(400)));
        let v = &s.rejects()[0].value;
        assert!(v.len() <= REJECT_PREVIEW_BYTES && v.chars().all(|c| c == 'é'));
    }

    #[test]
    fn metrics_render_only_when_enabled_and_count_by_result() {
        let s = Sources::default();
        s.count(RecordResult::Applied, 3);
        assert_eq!(s.render(), "");
        s.kafka_enabled.store(true, Ordering::Relaxed);
        s.count(RecordResult::Rejected, 1);
        s.set_lag(
            "logs",
            2,
            Lag {
                records: 7,
                seconds: 1.5,
            },
        );
        let m = s.render();
        assert!(m.contains("driftdb_kafka_records_total{result=\"applied\"} 3\n"));
        assert!(m.contains("driftdb_kafka_records_total{result=\"rejected\"} 1\n"));
        assert!(m.contains("driftdb_kafka_lag_records{topic=\"logs\",partition=\"2\"} 7\n"));
        assert!(m.contains("driftdb_kafka_lag_seconds{topic=\"logs\",partition=\"2\"} 1.5\n"));
        s.clear_lag("logs", 2);
        assert!(!s.render().contains("partition=\"2\""));
    }
}
