//! Crash test: a child process writes acknowledged batches and is SIGKILLed at random points;
//! after each kill the parent reopens the store and checks that every acknowledged batch is
//! present exactly once.
//!
//! The child is this test binary re-invoked on [`crash_child`] with `DRIFTDB_CRASH_DIR` set.
//! Batch `s` (1, 2, 3, ...) holds three known deltas plus the dedup record "producer `p`
//! applied batch `s`", all in one `WriteSet`. After `Store::write` returns (the ack), the child
//! records `s` in a side file (write + fsync + rename). So at a kill, with `L` the recorded
//! sequence:
//! - batches `1..=L` were acknowledged and must all be present;
//! - batch `L + 1` may also be present (acknowledged or in flight, not yet recorded), but
//!   no later one: the child starts batch `L + 2` only after recording `L + 1`;
//! - the dedup record `D` says exactly which: `D ∈ {L, L + 1}`, and because the record is in
//!   the same atomic batch as the deltas, every window must equal the sum of batches `1..=D`
//!   exactly (no loss, no double count). A restarted child resumes at `D + 1`, as a producer
//!   resuming from its durable position would.
//!
//! Windows move forward in time with `s`, and after each ack the child rolls up the windows
//! ending three windows behind the newest (`Store::roll_up`), so kills also land inside
//! rollup runs and deltas land on both sides of the rollup cursor. After a kill the parent
//! finishes any interrupted run (as the server does at start) and checks that every day's
//! rollup equals the sum of its finer windows.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftdb_engine::series::SeriesKey;
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_storage::layout::{DEDUP_PRODUCER, KeyWriter};
use driftdb_storage::{Family, Store, WriteSet};

use crate::common::*;

const ENV: &str = "DRIFTDB_CRASH_DIR";
const KIND_SEQ: u8 = 1;

fn producer_key() -> Vec<u8> {
    KeyWriter::with_prefix(DEDUP_PRODUCER)
        .str("producer-1")
        .finish()
}

fn keys() -> Vec<SeriesKey> {
    vec![
        series("crash", "v1", "f0", None),
        series("crash", "v1", "f1", None),
        series("crash", "v1", "f2", Some(("region", "eu"))),
    ]
}

/// The deltas of batch `s`: (series index, window index, values).
fn batch(s: u64) -> Vec<(usize, i64, Vec<f64>)> {
    (0..3)
        .map(|j| {
            let n = (s % 5) as usize + 1 + j;
            (j, s as i64 / 2 + j as i64, vec![(s % 97) as f64; n])
        })
        .collect()
}

fn store_at(dir: &Path) -> Store {
    let clock = ManualClock::new(Timestamp(T0 + DAY));
    Store::open(dir, config(), Arc::new(clock)).unwrap()
}

fn durable_seq(store: &Store) -> u64 {
    match store.family(Family::Dedup).get(&producer_key()).unwrap() {
        None => 0,
        Some(e) => {
            assert_eq!(e.kind, KIND_SEQ);
            u64::from_be_bytes(e.payload.as_slice().try_into().unwrap())
        }
    }
}

/// The child writer; a no-op unless started by [`acknowledged_batches_survive_sigkill`].
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let store = store_at(&dir.join("db"));
    let keys = keys();
    let mut s = durable_seq(&store);
    loop {
        s += 1;
        let mut set = WriteSet::new();
        for (i, w, values) in batch(s) {
            set.merge(
                &keys[i],
                Resolution::M15,
                Timestamp(T0 + w * M15),
                &numeric(&values),
            );
        }
        set.put(Family::Dedup, producer_key(), KIND_SEQ, &s.to_be_bytes());
        store.write(&set).unwrap();
        // Acknowledged: record it durably.
        let tmp = dir.join("acked.tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(s.to_string().as_bytes()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, dir.join("acked")).unwrap();
        store
            .roll_up(Timestamp(T0 + (s as i64 / 2 - 3) * M15))
            .unwrap();
    }
}

/// A small deterministic generator for kill delays.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let started = Instant::now();
    let keys = keys();
    let mut cycles = 0;
    let mut max_seq = 0;
    let mut extra_batch_seen = 0;
    let mut interrupted_runs = 0;
    while cycles < 24 && started.elapsed() < Duration::from_secs(50) {
        cycles += 1;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill anywhere from during open to deep into writing.
        let delay = 30 + next_rand(&mut rng) % 600;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let recorded: u64 = std::fs::read_to_string(dir.path().join("acked"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0);
        let store = store_at(&dir.path().join("db"));
        // Finish a rollup run the kill interrupted, as the server's maintenance does at start.
        let rolled = store.roll_up(Timestamp(i64::MIN + 1)).unwrap();
        interrupted_runs += u64::from(rolled.batches > 0);
        let d = durable_seq(&store);
        assert!(
            d == recorded || d == recorded + 1,
            "cycle {cycles}: durable batch {d} but acknowledged {recorded}"
        );
        extra_batch_seen += u64::from(d == recorded + 1);
        max_seq = max_seq.max(d);
        // Every window holds exactly batches 1..=d.
        let mut want = std::collections::BTreeMap::<(usize, i64), (u64, f64)>::new();
        for s in 1..=d {
            for (i, w, values) in batch(s) {
                let e = want.entry((i, w)).or_default();
                e.0 += values.len() as u64;
                e.1 += values.iter().sum::<f64>();
            }
        }
        for (i, key) in keys.iter().enumerate() {
            for w in all_windows(&store, key, Resolution::M15) {
                let idx = (w.start.millis() - T0) / M15;
                let (count, sum) = want.remove(&(i, idx)).unwrap_or_default();
                assert_eq!(
                    numeric_count(&w.state),
                    count,
                    "cycle {cycles} series {i} window {idx}"
                );
                assert_eq!(
                    numeric_sum(&w.state),
                    sum,
                    "cycle {cycles} series {i} window {idx}"
                );
            }
        }
        assert!(want.is_empty(), "cycle {cycles}: missing windows {want:?}");
        for (i, key) in keys.iter().enumerate() {
            let mut fine = std::collections::BTreeMap::<i64, (u64, f64)>::new();
            for w in all_windows(&store, key, Resolution::M15) {
                let e = fine
                    .entry(Resolution::D1.window_start(w.start).millis())
                    .or_default();
                e.0 += numeric_count(&w.state);
                e.1 += numeric_sum(&w.state);
            }
            let until = store.daily_rollups_until().unwrap().millis();
            let days: std::collections::BTreeMap<i64, (u64, f64)> =
                all_windows(&store, key, Resolution::D1)
                    .iter()
                    .map(|d| {
                        let t = (numeric_count(&d.state), numeric_sum(&d.state));
                        (d.start.millis(), t)
                    })
                    .collect();
            for (day, (count, sum)) in &fine {
                let rolled = days.get(day).copied().unwrap_or_default();
                if day + DAY <= until {
                    assert_eq!(
                        rolled,
                        (*count, *sum),
                        "cycle {cycles} series {i}: day {day} is not its windows"
                    );
                } else {
                    assert!(rolled.0 <= *count, "cycle {cycles} series {i} day {day}");
                }
            }
            assert!(days.keys().all(|d| fine.contains_key(d)));
        }
        assert_eq!(store.corrupt_operands() + store.corrupt_values(), 0);
    }
    assert!(cycles >= 20, "only {cycles} cycles in the time budget");
    assert!(
        max_seq >= 20,
        "the child acknowledged only {max_seq} batches in total"
    );
    eprintln!(
        "crash test: {cycles} kills, {max_seq} batches, {extra_batch_seen} kills between \
         durable write and ack record, {interrupted_runs} rollup runs finished after a kill"
    );
}
