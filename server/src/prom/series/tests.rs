//! Unit tests of `series`.

use super::*;

#[test]
fn every_export_is_a_driftql_metric_that_fits_its_series() {
    use driftdb_query::metrics::{Applies, Family};
    for e in EXPORTS {
        let d = lookup(e.metric).unwrap_or_else(|| panic!("{} is not DriftQL", e.metric));
        for on in e.on {
            let ok = match on {
                Numeric => matches!(d.applies, Applies::Numeric | Applies::Any),
                Categorical => matches!(d.applies, Applies::Categorical | Applies::Any),
                Score | Latency => {
                    d.family != Family::Performance
                        && matches!(d.applies, Applies::Numeric | Applies::Any)
                }
                Binary | Regression | Ranking | AnyTask => d.family == Family::Performance,
            };
            assert!(ok, "{} on {on:?}", e.metric);
        }
    }
    assert!(series_names().contains(&"driftdb_psi".to_string()));
    assert_eq!(
        help("driftdb_psi").map(|h| h.contains("population")),
        Some(true)
    );
    assert_eq!(help("driftdb_nope"), None);
}

#[test]
fn segment_keys_become_valid_label_names() {
    assert_eq!(segment_label("region"), "region");
    assert_eq!(segment_label("user-type"), "user_type");
    assert_eq!(segment_label("2fa"), "_2fa");
    assert_eq!(segment_label("model"), "segment_model");
    assert_eq!(segment_label("k"), "segment_k");
    assert_eq!(segment_label("é"), "_");
}

#[test]
fn labels_are_sorted_and_carry_the_segment_and_parameter() {
    let key = SeriesKey {
        model: "ctr".into(),
        version: "v8".into(),
        feature: FeatureRef::Latency,
        segment: Segment::Value {
            key: "device".into(),
            value: "ios".into(),
        },
    };
    let q = EXPORTS
        .iter()
        .find(|e| e.param.is_some_and(|p| p.value == "0.99"))
        .unwrap();
    let l = labels_of(q, &key);
    let want: Labels = [
        ("__name__", "driftdb_quantile"),
        ("device", "ios"),
        ("feature", "$latency"),
        ("model", "ctr"),
        ("quantile", "0.99"),
        ("version", "v8"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(l, want);
}

#[test]
fn window_range_honours_inclusive_ends_closing_and_retention() {
    let w = 900_000;
    let now = Timestamp(100 * w);
    let floor = Timestamp(10 * w);
    // Ends in [20w, 30w] -> starts 19w ..= 29w.
    assert_eq!(
        window_starts(20 * w, 30 * w, now, floor, w, 0),
        Some((19 * w, 29 * w))
    );
    // Unaligned bounds round inwards.
    assert_eq!(
        window_starts(20 * w + 1, 30 * w - 1, now, floor, w, 0),
        Some((20 * w, 28 * w))
    );
    // Windows still within grace are left out: the last end is now - grace.
    assert_eq!(
        window_starts(95 * w, i64::MAX, now, floor, w, 300_000),
        Some((94 * w, 98 * w))
    );
    // The series API's ±9.2e18 bounds clamp to retention and now.
    assert_eq!(
        window_starts(i64::MIN, i64::MAX, now, floor, w, 0),
        Some((10 * w, 99 * w))
    );
    assert_eq!(window_starts(30 * w, 20 * w, now, floor, w, 0), None);
    assert_eq!(
        window_starts(20 * w + 1, 21 * w - 1, now, floor, w, 0),
        None
    );
}
