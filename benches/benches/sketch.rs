//! Sketch benches: per-value folding (numeric state, raw KLL), merging two states, and the
//! envelope codec.
#![expect(clippy::unwrap_used, reason = "benches")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use driftdb_engine::sketch::kll::{kll_update, new_kll};
use driftdb_engine::sketch::{BinEdges, NumericState, SeriesState};

/// splitmix64: deterministic values without a generator dependency.
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 100.0
        })
        .collect()
}

fn edges() -> BinEdges {
    BinEdges::new((1..50).map(|i| i as f64 * 2.0).collect()).unwrap()
}

fn state(vs: &[f64], e: &BinEdges) -> NumericState {
    let mut s = NumericState::new(Some(e));
    for v in vs {
        s.observe(*v, Some(e));
    }
    s
}

fn bench(c: &mut Criterion) {
    let e = edges();
    let mut g = c.benchmark_group("sketch");
    g.sample_size(10);
    for n in [1_000usize, 100_000] {
        let vs = values(n, 1);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("numeric_observe", n), &vs, |b, vs| {
            b.iter(|| black_box(state(vs, &e)))
        });
        g.bench_with_input(BenchmarkId::new("kll_update", n), &vs, |b, vs| {
            b.iter(|| {
                let mut k = new_kll();
                for v in vs {
                    kll_update(&mut k, *v);
                }
                black_box(k)
            })
        });
    }
    for n in [1_000usize, 100_000] {
        let a = state(&values(n, 2), &e);
        let other = state(&values(n, 3), &e);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("merge_two_states", n), &n, |b, _| {
            b.iter(|| {
                let mut x = a.clone();
                x.merge(&other).unwrap();
                black_box(x)
            })
        });
        let sv = SeriesState::Numeric(a.clone());
        let bytes = sv.encode();
        g.bench_with_input(BenchmarkId::new("encode", n), &n, |b, _| {
            b.iter(|| black_box(sv.encode()))
        });
        g.bench_with_input(BenchmarkId::new("decode", n), &n, |b, _| {
            b.iter(|| black_box(SeriesState::decode(&bytes).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
