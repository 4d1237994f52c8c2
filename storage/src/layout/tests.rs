use proptest::prelude::*;

use super::*;

fn small_string() -> impl Strategy<Value = String> {
    // Short strings over a tiny alphabet that includes NUL, 0x01 and 0xFF-adjacent chars, so
    // prefixes, equal components and escapes are all common.
    proptest::collection::vec(
        prop_oneof![
            Just('\u{0}'),
            Just('\u{1}'),
            Just('a'),
            Just('b'),
            Just('ÿ'),
            Just('€')
        ],
        0..4,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn feature() -> impl Strategy<Value = FeatureRef> {
    prop_oneof![
        small_string().prop_map(FeatureRef::Named),
        Just(FeatureRef::Score),
        Just(FeatureRef::Label),
        Just(FeatureRef::Latency),
        Just(FeatureRef::Items),
        Just(FeatureRef::Cost),
        small_string().prop_map(FeatureRef::Attribution),
    ]
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        Just(Segment::All),
        (small_string(), small_string()).prop_map(|(key, value)| Segment::Value { key, value }),
    ]
}

fn series() -> impl Strategy<Value = SeriesKey> {
    (small_string(), small_string(), feature(), segment()).prop_map(
        |(model, version, feature, segment)| SeriesKey {
            model,
            version,
            feature,
            segment,
        },
    )
}

fn resolution() -> impl Strategy<Value = Resolution> {
    prop_oneof![
        Just(Resolution::M15),
        Just(Resolution::H1),
        Just(Resolution::D1)
    ]
}

fn ts() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        any::<i64>(),
        -3i64..3,
        Just(i64::MIN),
        Just(i64::MAX),
        0i64..10_000_000_000_000,
    ]
    .prop_map(Timestamp)
}

proptest! {
    #[test]
    fn window_key_round_trips(s in series(), r in resolution(), t in ts()) {
        let k = window_key(&s, r, t);
        prop_assert_eq!(decode_window_key(&k).unwrap(), (s.clone(), r, t));
        let (part, r2, t2) = split_window_key(&k).unwrap();
        prop_assert_eq!(part, &series_prefix(&s)[..]);
        prop_assert_eq!((r2, t2), (r, t));
        prop_assert_eq!(decode_series(part).unwrap(), s);
    }

    #[test]
    fn key_order_is_series_then_resolution_then_time(
        a in (series(), resolution(), ts()),
        b in (series(), resolution(), ts()),
    ) {
        let ka = window_key(&a.0, a.1, a.2);
        let kb = window_key(&b.0, b.1, b.2);
        prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
    }

    #[test]
    fn prefixes_are_contiguous_ranges(a in series(), b in series(), t in ts()) {
        // Key of b's window starts with a's prefix exactly when b matches a on those components.
        let kb = window_key(&b, Resolution::M15, t);
        prop_assert_eq!(kb.starts_with(&model_prefix(&a.model)), a.model == b.model);
        prop_assert_eq!(
            kb.starts_with(&version_prefix(&a.model, &a.version)),
            a.model == b.model && a.version == b.version
        );
        prop_assert_eq!(
            kb.starts_with(&feature_prefix(&a.model, &a.version, &a.feature)),
            a.model == b.model && a.version == b.version && a.feature == b.feature
        );
        prop_assert_eq!(kb.starts_with(&series_prefix(&a)), a == b);
        // A prefix range is [prefix, successor): b's key lies in it iff it has the prefix.
        let p = model_prefix(&a.model);
        let end = prefix_successor(&p).unwrap();
        prop_assert_eq!(kb >= p && kb < end, kb.starts_with(&p));
        // Skipping a series jumps past all of its windows and before any other series'.
        let skip = series_skip_key(&series_prefix(&a));
        if a == b {
            prop_assert!(kb < skip);
        } else {
            prop_assert_eq!(kb > skip, b > a);
        }
    }

    #[test]
    fn i64_encoding_preserves_order(a in any::<i64>(), b in any::<i64>()) {
        prop_assert_eq!(encode_i64(a).cmp(&encode_i64(b)), a.cmp(&b));
        prop_assert_eq!(decode_i64(encode_i64(a)), a);
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = decode_window_key(&bytes);
        let _ = split_window_key(&bytes);
    }
}

#[test]
fn string_escaping_examples() {
    assert_eq!(KeyWriter::new().str("a").finish(), vec![b'a', 0, 1]);
    assert_eq!(
        KeyWriter::new().str("a\0b").finish(),
        vec![b'a', 0, 0xFF, b'b', 0, 1]
    );
    assert!(KeyWriter::new().str("a").finish() < KeyWriter::new().str("a\0").finish());
    assert!(KeyWriter::new().str("a\0").finish() < KeyWriter::new().str("a\u{1}").finish());
    // Zeros first, last and in a row; and a string of zeros only.
    assert_eq!(
        KeyWriter::new().bytes(&[0, b'x', 0, 0]).finish(),
        vec![0, 0xFF, b'x', 0, 0xFF, 0, 0xFF, 0, 1]
    );
    assert_eq!(
        KeyWriter::with_prefix_capacity(7, 2).bytes(&[0]).finish(),
        vec![7, 0, 0xFF, 0, 1]
    );
    let bad = [b'a', 0, 7];
    assert!(KeyReader::new("t", &bad).str().is_err());
}

#[test]
fn prefix_successor_carries() {
    assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
    assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
    assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
}

#[test]
fn feature_tags_are_stable() {
    // Tags of stored keys never change; `$items` took the next free value.
    let tag = |f: FeatureRef| KeyWriter::new().feature(&f).finish();
    assert_eq!(tag(FeatureRef::Score), vec![2]);
    assert_eq!(tag(FeatureRef::Label), vec![3]);
    assert_eq!(tag(FeatureRef::Latency), vec![4]);
    assert_eq!(tag(FeatureRef::Items), vec![5]);
    assert_eq!(tag(FeatureRef::Named("a".into())), vec![1, b'a', 0, 1]);
    assert_eq!(
        KeyReader::new("t", &[5]).feature().unwrap(),
        FeatureRef::Items
    );
    assert_eq!(tag(FeatureRef::Cost), vec![6]);
    assert_eq!(
        tag(FeatureRef::Attribution("a".into())),
        vec![7, b'a', 0, 1]
    );
    assert_eq!(
        KeyReader::new("t", &[7, b'a', 0, 1]).feature().unwrap(),
        FeatureRef::Attribution("a".into())
    );
    assert!(KeyReader::new("t", &[8]).feature().is_err());
}
