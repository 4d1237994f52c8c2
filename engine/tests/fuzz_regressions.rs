//! Every input the `stored_value` fuzz target (`engine/fuzz`) ever crashed on, replayed through
//! the same checks: the first byte picks a decoder, the rest gets a valid envelope, and a value
//! that decodes must re-encode to bytes that decode again. Inputs live in
//! `tests/fuzz_regressions/stored_value-*`.

#![expect(clippy::unwrap_used, reason = "tests")]

use driftdb_engine::codec::{open, seal};
use driftdb_engine::reference::{PROFILE_KIND, ReferenceProfile};
use driftdb_engine::rules::{ALERT_STATE_KIND, AlertState};
use driftdb_engine::sketch::SeriesState;

/// The fuzz target's oracle; returns whether the payload decoded.
fn replay(data: &[u8]) -> bool {
    let _ = open(data);
    let Some((&which, payload)) = data.split_first() else {
        return false;
    };
    match which % 5 {
        k @ 0..=2 => match SeriesState::decode(&seal(k + 1, payload)) {
            Ok(s) => {
                let mut m = s.clone();
                let _ = m.merge(&s);
                let again = SeriesState::decode(&s.encode());
                assert!(again.is_ok(), "re-encoded state does not decode: {again:?}");
                true
            }
            Err(_) => false,
        },
        3 => match AlertState::decode(&seal(ALERT_STATE_KIND, payload)) {
            Ok(a) => {
                assert_eq!(AlertState::decode(&a.encode()).ok(), Some(a));
                true
            }
            Err(_) => false,
        },
        _ => match ReferenceProfile::decode(&seal(PROFILE_KIND, payload)) {
            Ok(p) => {
                assert!(ReferenceProfile::decode(&p.encode()).is_ok());
                true
            }
            Err(_) => false,
        },
    }
}

fn inputs(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn stored_value_crashes_stay_fixed() {
    let found = inputs("stored_value-");
    assert!(!found.is_empty(), "the regression inputs are missing");
    for (name, data) in found {
        // Decoding may succeed or fail; it must not panic, and what decodes must hold up.
        std::panic::catch_unwind(|| replay(&data))
            .unwrap_or_else(|_| panic!("{name} panics again"));
    }
}

/// The first finding: a categorical state listing a category twice decoded, and its
/// re-encoding then failed the "counts add up" check.
#[test]
fn a_category_listed_twice_is_malformed() {
    let data = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions/stored_value-duplicate-category"),
    )
    .unwrap();
    let err = SeriesState::decode(&seal(2, &data[1..])).unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
}
