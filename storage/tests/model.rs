//! Model-based test: random writes, reads, scans, flushes, compactions and reopens against a
//! `BTreeMap` of what every (series, window) must hold.

use std::collections::BTreeMap;

use driftdb_engine::sketch::SeriesState;
use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::{SeriesPrefix, SeriesReader, Store, WriteSet};
use proptest::prelude::*;

use crate::common::*;

/// What a window must hold. Values are small integers, so float sums are exact in any order.
#[derive(Debug, Clone, Default)]
struct Expected {
    count: u64,
    missing: u64,
    sum: i64,
    min: Option<i64>,
    max: Option<i64>,
    bins: [u64; 4],
    categories: BTreeMap<String, u64>,
}

impl Expected {
    fn add(&mut self, d: &Delta) {
        match d {
            Delta::Numeric(vs, missing) => {
                for &v in vs {
                    self.count += 1;
                    self.sum += v;
                    self.min = Some(self.min.map_or(v, |m| m.min(v)));
                    self.max = Some(self.max.map_or(v, |m| m.max(v)));
                    let b = [-500, 0, 500].iter().filter(|e| **e <= v).count();
                    self.bins[b] += 1;
                }
                self.missing += *missing;
            }
            Delta::Categorical(cs) => {
                for c in cs {
                    self.count += 1;
                    *self.categories.entry(c.clone()).or_default() += 1;
                }
            }
        }
    }

    fn check(&self, got: &SeriesState, ctx: &str) -> Result<(), TestCaseError> {
        match got {
            SeriesState::Numeric(n) => {
                prop_assert_eq!(n.count(), self.count, "{}", ctx);
                prop_assert_eq!(n.kll().unwrap().n(), self.count, "kll n {}", ctx);
                prop_assert_eq!(n.missing(), self.missing, "{}", ctx);
                prop_assert_eq!(n.sum(), self.sum as f64, "{}", ctx);
                prop_assert_eq!(n.min(), self.min.map(|m| m as f64), "{}", ctx);
                prop_assert_eq!(n.max(), self.max.map(|m| m as f64), "{}", ctx);
                if self.count > 0 {
                    let bins = n.bins().map(|b| b.counts.clone());
                    prop_assert_eq!(bins, Some(self.bins.to_vec()), "{}", ctx);
                }
            }
            SeriesState::Categorical(c) => {
                prop_assert_eq!(c.count(), self.count, "{}", ctx);
                prop_assert_eq!(&c.counts(), &self.categories, "{}", ctx);
            }
            SeriesState::Score(_) => prop_assert!(false, "unexpected score state"),
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Delta {
    Numeric(Vec<i64>, u64),
    Categorical(Vec<String>),
}

#[derive(Debug, Clone)]
enum Op {
    /// One atomic write set: (series, window, delta).
    Write(Vec<(usize, i64, Delta)>),
    Read {
        series: usize,
        from: i64,
        to: i64,
    },
    ScanVersion,
    Flush,
    Compact,
    Reopen,
}

/// Series 0..=2 are numeric features of model m/v1, 3 is categorical, 4 is model m/v2.
const N_SERIES: usize = 5;
const N_WINDOWS: i64 = 6;

fn all_series() -> Vec<driftdb_engine::series::SeriesKey> {
    vec![
        series("m", "v1", "amount", None),
        series("m", "v1", "amount", Some(("region", "eu"))),
        series("m", "v1", "age\0x", Some(("region", ""))),
        series("m", "v1", "browser", None),
        series("m", "v2", "amount", None),
    ]
}

fn delta_for(series: usize) -> BoxedStrategy<Delta> {
    if series == 3 {
        proptest::collection::vec(
            prop_oneof![Just("a"), Just("b"), Just("c\0"), Just("")].prop_map(String::from),
            1..5,
        )
        .prop_map(Delta::Categorical)
        .boxed()
    } else {
        (proptest::collection::vec(-1000i64..1000, 0..6), 0u64..3)
            .prop_map(|(v, m)| Delta::Numeric(v, m))
            .boxed()
    }
}

fn write_item() -> impl Strategy<Value = (usize, i64, Delta)> {
    (0..N_SERIES, 0..N_WINDOWS).prop_flat_map(|(s, w)| delta_for(s).prop_map(move |d| (s, w, d)))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(write_item(), 1..6).prop_map(Op::Write),
        3 => (0..N_SERIES, 0..N_WINDOWS + 1, 0..N_WINDOWS + 1)
            .prop_map(|(series, a, b)| Op::Read { series, from: a.min(b), to: a.max(b) }),
        1 => Just(Op::ScanVersion),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn window_ts(w: i64) -> Timestamp {
    // Offset into the window: deltas are addressed by any instant inside it.
    Timestamp(T0 + w * M15 + (w * 7_919) % M15)
}

fn to_state(d: &Delta) -> SeriesState {
    match d {
        Delta::Numeric(vs, missing) => {
            let f: Vec<f64> = vs.iter().map(|v| *v as f64).collect();
            let mut s = numeric(&f);
            if let SeriesState::Numeric(n) = &mut s {
                for _ in 0..*missing {
                    n.observe_missing();
                }
            }
            s
        }
        Delta::Categorical(cs) => {
            let r: Vec<&str> = cs.iter().map(String::as_str).collect();
            categorical(&r)
        }
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0 + DAY);
    let cfg = driftdb_storage::StoreConfig {
        sync_writes: false,
        ..config()
    };
    let mut store = Some(open(dir.path(), &clock, cfg.clone()));
    let keys = all_series();
    let mut model: BTreeMap<(usize, i64), Expected> = BTreeMap::new();
    // Always end with a reopen and a full read, so every sequence checks durability.
    let tail = [Op::Reopen, Op::ScanVersion];
    for op in ops.iter().chain(tail.iter()) {
        let st: &Store = store.as_ref().unwrap();
        match op {
            Op::Write(items) => {
                let mut set = WriteSet::new();
                for (s, w, d) in items {
                    set.merge(&keys[*s], Resolution::M15, window_ts(*w), &to_state(d));
                    model.entry((*s, *w)).or_default().add(d);
                }
                st.write(&set).unwrap();
            }
            Op::Read {
                series: s,
                from,
                to,
            } => {
                let got: Vec<_> = st
                    .windows(
                        &keys[*s],
                        Resolution::M15,
                        Timestamp(T0 + from * M15),
                        Timestamp(T0 + to * M15),
                    )
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let want: Vec<_> = model.range((*s, *from)..(*s, *to)).collect();
                let got_starts: Vec<i64> = got.iter().map(|w| w.start.millis()).collect();
                let want_starts: Vec<i64> = want.iter().map(|((_, w), _)| T0 + w * M15).collect();
                prop_assert_eq!(got_starts, want_starts);
                for (g, ((_, w), e)) in got.iter().zip(&want) {
                    e.check(&g.state, &format!("series {s} window {w}"))?;
                }
            }
            Op::ScanVersion => {
                let prefix = SeriesPrefix::Version {
                    model: "m".into(),
                    version: "v1".into(),
                };
                let got: Vec<_> = st
                    .scan(
                        &prefix,
                        Resolution::M15,
                        Timestamp(T0),
                        Timestamp(T0 + 4 * M15),
                    )
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                // Expected order: by series key, then start.
                let mut want: Vec<_> = model
                    .iter()
                    .filter(|((s, w), _)| *s != 4 && *w < 4)
                    .collect();
                want.sort_by(|a, b| (&keys[a.0.0], a.0.1).cmp(&(&keys[b.0.0], b.0.1)));
                prop_assert_eq!(got.len(), want.len());
                for (g, ((s, w), e)) in got.iter().zip(&want) {
                    prop_assert_eq!(&*g.series, &keys[*s]);
                    prop_assert_eq!(g.window.start.millis(), T0 + w * M15);
                    e.check(&g.window.state, &format!("scan series {s} window {w}"))?;
                }
                let mut want_series: Vec<_> = model
                    .keys()
                    .filter(|(s, _)| *s != 4)
                    .map(|(s, _)| keys[*s].clone())
                    .collect();
                want_series.sort();
                want_series.dedup();
                prop_assert_eq!(st.series("m", Some("v1")).unwrap(), want_series);
            }
            Op::Flush => st.flush().unwrap(),
            Op::Compact => st.compact_windows().unwrap(),
            Op::Reopen => {
                drop(store.take());
                store = Some(open(dir.path(), &clock, cfg.clone()));
            }
        }
    }
    prop_assert_eq!(store.as_ref().unwrap().corrupt_operands(), 0);
    prop_assert_eq!(store.as_ref().unwrap().corrupt_values(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_btreemap_model(ops in proptest::collection::vec(op(), 1..25)) {
        run(ops)?;
    }
}
