//! Arbitrary text as a PromQL query: the pre-parse scan, promql-parser, the lowering into
//! driftdb's subset, then evaluation — one instant and a short range query — against
//! synthetic series held in memory, as the query API does. Besides "never panics" (a panic in
//! promql-parser included: the scan must refuse what it would panic on), it checks that
//! parsing is deterministic, that every error is one of the crate's kinds with a message, and
//! that a range query's values at an instant equal the instant query's there.
#![no_main]

use std::sync::OnceLock;

use driftdb_prom_fuzz::eval::{Value, instant_query, range_query};
use driftdb_prom_fuzz::limits::{Budget, Limits};
use driftdb_prom_fuzz::promql::parse;
use driftdb_prom_fuzz::source::{MemorySource, Series};
use libfuzzer_sys::fuzz_target;

const M: i64 = 60_000;

fn limits() -> Limits {
    // Small enough that a hostile query is refused quickly, large enough for the synthetic
    // series to be evaluated.
    Limits {
        max_cells: 20_000,
        max_samples: 100_000,
        max_range_samples: 1_000_000,
        ..Limits::default()
    }
}

fn source() -> &'static MemorySource {
    static SRC: OnceLock<MemorySource> = OnceLock::new();
    SRC.get_or_init(|| {
        let mut series = Vec::new();
        for (n, name) in ["driftdb_psi", "driftdb_rows", "driftdb_auc", "up"]
            .into_iter()
            .enumerate()
        {
            for (f, feature) in ["amount", "country", "$score"].into_iter().enumerate() {
                for (r, region) in [None, Some("eu"), Some("us")].into_iter().enumerate() {
                    let mut labels = vec![
                        ("__name__".to_string(), name.to_string()),
                        ("model".to_string(), "fraud".to_string()),
                        ("version".to_string(), "v1".to_string()),
                        ("feature".to_string(), feature.to_string()),
                    ];
                    if let Some(region) = region {
                        labels.push(("region".to_string(), region.to_string()));
                    }
                    // One sample per 15 minutes over 6 hours, some missing, some zero or
                    // negative.
                    let samples = (1..=24)
                        .filter(|i| (i + n + f + r) % 5 != 0)
                        .map(|i| {
                            let v = ((i * 7 + n * 3 + f * 5 + r) % 11) as f64 / 4.0 - 0.5;
                            (i as i64 * 15 * M, v)
                        })
                        .collect();
                    series.push(Series { labels, samples });
                }
            }
        }
        MemorySource::new(series, limits())
    })
}

fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lim = limits();
    let first = parse(&text, &lim);
    let again = parse(&text, &lim);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a.kind(), b.kind(), "parsing is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("parsing is not deterministic: {first:?} vs {again:?}"),
    }
    for r in [&first, &again] {
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
        }
    }
    if first.is_err() {
        return;
    }
    let src = source();
    let budget = Budget::unlimited();
    let at = 3 * 60 * M;
    let instant = instant_query(src, &text, at, &lim, &budget);
    let range = range_query(src, &text, at - 30 * M, at, 15 * M, &lim, &budget);
    // The range query's last instant is the instant query's instant: same values.
    if let (Ok(i), Ok(r)) = (&instant, &range) {
        match (&i.value, &r.value) {
            (Value::Scalar(a), Value::Scalar(b)) => {
                assert!(same(a.first().copied(), b.last().copied()));
            }
            (Value::Vector(a), Value::Vector(b)) => {
                for (labels, vals) in a {
                    let at_end = b.get(labels).and_then(|v| v.last().copied()).flatten();
                    assert!(
                        same(vals.first().copied().flatten(), at_end),
                        "{text:?}: instant and range disagree for {labels:?}"
                    );
                }
            }
            _ => {}
        }
    }
});
