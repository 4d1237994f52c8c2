//! The write order of one model's inference batches: who may write next, and which request
//! ids and producer sequences are in flight (decided but not yet durable).

use std::collections::BTreeSet;
use std::sync::Arc;

use driftdb_engine::FastSet;

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
    /// Request ids of ticketed batches not written yet, one set per ticket (a ticket's set
    /// leaves as a whole, without hashing its ids again).
    ids: Vec<(u64, Arc<FastSet<String>>)>,
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
    pub fn in_flight(&self, ids: &[&str]) -> Vec<bool> {
        let sets: Vec<Arc<FastSet<String>>> =
            self.lock().ids.iter().map(|(_, s)| Arc::clone(s)).collect();
        ids.iter()
            .map(|id| sets.iter().any(|s| s.contains(*id)))
            .collect()
    }

    /// The highest sequence of `producer` in flight.
    pub fn producer_seq(&self, producer: &str) -> Option<u64> {
        let s = self.lock();
        s.producers
            .iter()
            .filter(|(p, _)| p == producer)
            .map(|(_, q)| *q)
            .max()
    }

    /// Takes the next place in the write order; `ids` and the producer's sequence count as in
    /// flight until the ticket is dropped.
    pub fn ticket(
        pipeline: &Arc<Pipeline>,
        ids: FastSet<String>,
        producer: Option<(String, u64)>,
    ) -> Ticket {
        let n = {
            let mut s = pipeline.lock();
            let n = s.issued;
            s.issued += 1;
            if !ids.is_empty() {
                s.ids.push((n, Arc::new(ids)));
            }
            s.producers.extend(producer.iter().cloned());
            n
        };
        Ticket {
            pipeline: Arc::clone(pipeline),
            n,
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
pub struct Ticket {
    pipeline: Arc<Pipeline>,
    n: u64,
    producer: Option<(String, u64)>,
}

impl Ticket {
    /// Blocks until every earlier ticket has written (or given up).
    pub fn wait_turn(&self) {
        let p = &self.pipeline;
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
        let p = &self.pipeline;
        let mut s = p.lock();
        // Freed after the lock is released.
        let ids = s
            .ids
            .iter()
            .position(|(n, _)| *n == self.n)
            .map(|i| s.ids.swap_remove(i));
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
        drop(ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> FastSet<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn ids_are_in_flight_from_the_ticket_until_it_is_dropped() {
        let p = Arc::new(Pipeline::default());
        let a = Pipeline::ticket(&p, ids(&["r1", "r2"]), Some(("prod".into(), 4)));
        let b = Pipeline::ticket(&p, ids(&["r3"]), None);
        let empty = Pipeline::ticket(&p, ids(&[]), None);
        assert_eq!(p.in_flight(&["r1", "r3", "r9"]), [true, true, false]);
        assert_eq!(p.producer_seq("prod"), Some(4));
        // Dropped out of turn: its ids leave at once, the turn waits for `a`.
        drop(b);
        assert_eq!(p.in_flight(&["r1", "r3"]), [true, false]);
        a.wait_turn();
        drop(a);
        assert_eq!(p.in_flight(&["r1", "r2"]), [false, false]);
        assert_eq!(p.producer_seq("prod"), None);
        // `b` gave up before its turn, so the empty ticket's turn has come.
        empty.wait_turn();
        drop(empty);
        p.wait_idle();
        assert!(p.lock().ids.is_empty());
    }
}
