//! Multi-series reads: series listing by prefix, prefix scans with range skipping.

use driftdb_engine::series::FeatureRef;
use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::{SeriesPrefix, SeriesReader, WriteSet};

use crate::common::*;

#[test]
fn series_listing_and_prefix_scans() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0 + 10 * DAY);
    let store = open(dir.path(), &clock, config());
    let keys = [
        series("fraud", "v1", "amount", None),
        series("fraud", "v1", "amount", Some(("country", "de"))),
        series("fraud", "v1", "$score", None),
        series("fraud", "v2", "amount", None),
        series("fraud2", "v1", "amount", None),
        series("frau", "v1", "amount", None),
    ];
    let mut set = WriteSet::new();
    for (i, k) in keys.iter().enumerate() {
        for w in 0..(100 * (i as i64 + 1)) {
            set.merge(
                k,
                Resolution::M15,
                Timestamp(T0 + w * M15),
                &numeric(&[1.0]),
            );
        }
    }
    // An hourly-only series is listed too.
    let hourly = series("fraud", "v1", "latency_h", None);
    set.merge(&hourly, Resolution::H1, Timestamp(T0), &numeric(&[1.0]));
    store.write(&set).unwrap();

    let mut want: Vec<_> = keys[..4].to_vec();
    want.push(hourly.clone());
    want.sort();
    assert_eq!(store.series("fraud", None).unwrap(), want);
    let v1: Vec<_> = want.iter().filter(|k| k.version == "v1").cloned().collect();
    assert_eq!(store.series("fraud", Some("v1")).unwrap(), v1);
    assert!(store.series("fraud", Some("v3")).unwrap().is_empty());
    assert!(store.series("fra", None).unwrap().is_empty());
    // Versions by skipping whole version ranges; a model id that is a prefix of another's
    // sees only its own.
    assert_eq!(store.versions("fraud").unwrap(), ["v1", "v2"]);
    assert_eq!(store.versions("frau").unwrap(), ["v1"]);
    assert!(store.versions("fra").unwrap().is_empty());
    let hourly_only = series("hourly", "v9", "x", None);
    let mut h = WriteSet::new();
    h.merge(
        &hourly_only,
        Resolution::H1,
        Timestamp(T0),
        &numeric(&[1.0]),
    );
    store.write(&h).unwrap();
    assert_eq!(store.versions("hourly").unwrap(), ["v9"]);

    // Scan windows 10..20 of every fraud/v1 series: ordered by series then start.
    let got: Vec<_> = store
        .scan(
            &SeriesPrefix::Version {
                model: "fraud".into(),
                version: "v1".into(),
            },
            Resolution::M15,
            Timestamp(T0 + 10 * M15),
            Timestamp(T0 + 20 * M15),
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len(), 30);
    let mut sorted = got
        .iter()
        .map(|w| ((*w.series).clone(), w.window.start))
        .collect::<Vec<_>>();
    let before = sorted.clone();
    sorted.sort();
    assert_eq!(before, sorted);
    assert!(
        got.iter()
            .all(|w| w.window.start >= Timestamp(T0 + 10 * M15)
                && w.window.start < Timestamp(T0 + 20 * M15))
    );

    let feature = SeriesPrefix::Feature {
        model: "fraud".into(),
        version: "v1".into(),
        feature: FeatureRef::parse("amount"),
    };
    let n = store
        .scan(&feature, Resolution::M15, Timestamp(0), Timestamp(i64::MAX))
        .unwrap()
        .count();
    assert_eq!(n, 100 + 200);
    assert!(feature.matches(&keys[1]) && !feature.matches(&keys[2]));
}
