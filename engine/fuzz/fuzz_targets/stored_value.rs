//! The decoders of every value driftdb reads back from RocksDB: window sketch states
//! (`SeriesState`, KLL, frequent-items and performance payloads inside), alert hysteresis
//! states and reference profiles, plus the envelope itself.
//!
//! The first byte picks the decoder; the rest is a payload that gets a *valid* envelope
//! (version byte, kind and crc32) so the fuzzer reaches the payload decoders instead of
//! stopping at the checksum, which is exactly the case of a value whose bytes were wrong when
//! written, or a bit flip the crc32 missed. Every input is also fed raw to the envelope check.
//!
//! Decoding may fail but never panic; a state that decodes must survive what a query does with
//! it (merge with itself, statistics, re-encoding that decodes again).
#![no_main]

use driftdb_engine::codec::{open, seal};
use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::rules::AlertState;
use driftdb_engine::sketch::SeriesState;
use libfuzzer_sys::fuzz_target;

fn exercise(state: &SeriesState) {
    let mut merged = state.clone();
    let _ = merged.merge(state);
    match state {
        SeriesState::Numeric(n) => {
            let _ = (n.count_total(), n.mean(), n.std(), n.min(), n.max());
            let _ = n.kll_rank_error();
            let _ = n.cdf();
        }
        SeriesState::Categorical(c) => {
            let _ = (c.count_total(), c.n_distinct(), c.counts());
        }
        SeriesState::Score(s) => {
            let _ = (s.distribution.count_total(), s.performance.n_labeled());
            let _ = s.distribution.cdf();
        }
    }
    let again = SeriesState::decode(&state.encode());
    assert!(again.is_ok(), "a decoded state re-encodes to bytes that do not decode: {again:?}");
}

fuzz_target!(|data: &[u8]| {
    let _ = open(data);
    let Some((&which, payload)) = data.split_first() else {
        return;
    };
    match which % 5 {
        // Window states: tags 1 numeric, 2 categorical, 3 score.
        k @ 0..=2 => {
            if let Ok(s) = SeriesState::decode(&seal(k + 1, payload)) {
                exercise(&s);
            }
        }
        3 => {
            if let Ok(a) = AlertState::decode(&seal(driftdb_engine::rules::ALERT_STATE_KIND, payload)) {
                let again = AlertState::decode(&a.encode());
                assert_eq!(again.ok(), Some(a));
            }
        }
        _ => {
            // The profile is sealed inside its own encoding; use the input as the whole value,
            // with its crc fixed.
            if let Ok(p) = ReferenceProfile::decode(&seal_profile(payload)) {
                let _ = p.rows();
                let again = ReferenceProfile::decode(&p.encode());
                assert!(again.is_ok(), "a decoded profile re-encodes to bytes that do not decode");
            }
        }
    }
});

/// The reference profile's own sealed form, with the input as its payload.
fn seal_profile(payload: &[u8]) -> Vec<u8> {
    seal(driftdb_engine::reference::PROFILE_KIND, payload)
}
