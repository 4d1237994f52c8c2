//! Writes seed inputs for the `stored_value` target (selector byte + payload, the envelope
//! stripped) from states built with the engine's own API: `cargo run --release --bin seed --
//! corpus/stored_value`. Not a fuzz target.

use driftdb_engine::codec::open;
use driftdb_engine::rules::AlertState;
use driftdb_engine::sketch::{BinEdges, CategoricalState, NumericState, ScoreState, SeriesState};

fn payload(sealed: &[u8]) -> Vec<u8> {
    let (_, p) = open(sealed).expect("a fresh encoding opens");
    p.to_vec()
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: seed DIR");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let mut seeds: Vec<(u8, Vec<u8>)> = Vec::new();
    let edges = BinEdges::new((0..=10).map(f64::from).collect()).expect("edges");
    for n in [0usize, 1, 10, 1000, 20_000] {
        let mut s = NumericState::new(Some(&edges));
        for i in 0..n {
            s.observe((i as f64 * 0.37).sin() * 7.0 + 5.0, Some(&edges));
        }
        s.observe_missing();
        seeds.push((0, payload(&SeriesState::Numeric(s.clone()).encode())));
        let mut c = CategoricalState::default();
        for i in 0..n.min(5000) {
            c.observe(&format!("v{}", i % 97), i % 13 == 0);
        }
        seeds.push((1, payload(&SeriesState::Categorical(c).encode())));
        let mut score = ScoreState {
            predictions: n as u64,
            distribution: s,
            ..Default::default()
        };
        for i in 0..n.min(500) {
            let _ = score.performance.observe_binary((i % 100) as f64 / 100.0, i % 3 == 0);
        }
        seeds.push((2, payload(&SeriesState::Score(score).encode())));
    }
    seeds.push((3, payload(&AlertState::new().encode())));
    for (i, (sel, p)) in seeds.iter().enumerate() {
        let mut bytes = vec![*sel];
        bytes.extend_from_slice(p);
        std::fs::write(format!("{dir}/seed-{i:02}"), bytes).expect("write seed");
    }
}
