//! Unit tests of `series`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use driftdb_engine::sketch::{NumericState, SeriesState};
use driftdb_query::MemoryCatalog;
use driftdb_storage::{ScanIter, SeriesReader, SeriesWindow, Window, WindowIter};

use super::*;
use crate::eval::{Value, range_query};
use crate::matcher::MatchOp;

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
                Cost => d.applies == Applies::Cost,
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

fn ends(s: Span) -> Option<(i64, i64)> {
    (s.len() > 0).then_some((s.first_end, s.last_end))
}

#[test]
fn window_range_honours_inclusive_ends_closing_and_retention() {
    let w = 900_000;
    let now = Timestamp(100 * w);
    let floor = Timestamp(10 * w);
    let g = |a, b, grace| Grid::new(a, b, now, floor, Resolution::M15, grace, None);
    // Ends in [20w, 30w]: windows starting 19w ..= 29w.
    assert_eq!(ends(g(20 * w, 30 * w, 0).fine), Some((20 * w, 30 * w)));
    // Unaligned bounds round inwards.
    assert_eq!(
        ends(g(20 * w + 1, 30 * w - 1, 0).fine),
        Some((21 * w, 29 * w))
    );
    // Windows still within grace are left out: the last end is now - grace.
    assert_eq!(
        ends(g(95 * w, i64::MAX, 300_000).fine),
        Some((95 * w, 99 * w))
    );
    // The series API's ±9.2e18 bounds clamp to retention and now.
    let all = g(i64::MIN, i64::MAX, 0);
    assert_eq!(ends(all.fine), Some((11 * w, 100 * w)));
    assert_eq!(all.len(), 90);
    assert_eq!(all.coarse.len(), 0);
    assert_eq!(g(30 * w, 20 * w, 0).len(), 0);
    assert_eq!(g(20 * w + 1, 21 * w - 1, 0).len(), 0);
}

#[test]
fn downsampled_ranges_are_hourly_windows_ending_on_the_hour() {
    let h = 3_600_000;
    let w = 900_000;
    let now = Timestamp(100 * h);
    // Downsampled before 4h: hours 0..4 are hourly windows, then 15-minute ones.
    let g = Grid::new(
        0,
        6 * h,
        now,
        Timestamp(i64::MIN),
        Resolution::M15,
        0,
        Some(Timestamp(4 * h)),
    );
    // Ends in [0, 6h]: the first hour ends at 0.
    assert_eq!(ends(g.coarse), Some((0, 4 * h)));
    assert_eq!(ends(g.fine), Some((4 * h + w, 6 * h)));
    let r: Vec<(i64, i64)> = g.ranges().map(|r| (r.from.0, r.to.0)).collect();
    assert_eq!(
        r[..6],
        [
            (-h, 0),
            (0, h),
            (h, 2 * h),
            (2 * h, 3 * h),
            (3 * h, 4 * h),
            (4 * h, 4 * h + w)
        ]
    );
    assert_eq!(r.len(), 5 + 8);
    // A boundary inside an hour reads that whole hour coarse.
    let g = Grid::new(
        0,
        6 * h,
        now,
        Timestamp(i64::MIN),
        Resolution::M15,
        0,
        Some(Timestamp(4 * h + w)),
    );
    assert_eq!(ends(g.coarse), Some((0, 5 * h)));
    assert_eq!(ends(g.fine), Some((5 * h + w, 6 * h)));
    // Hourly models are never downsampled further by storage.
    let g = Grid::new(1, 6 * h, now, Timestamp(i64::MIN), Resolution::H1, 0, None);
    assert_eq!(ends(g.fine), Some((h, 6 * h)));
}

const H: i64 = 3_600_000;
const W: i64 = 900_000;

/// Windows in memory, as storage would hold them.
#[derive(Default)]
struct Fake {
    data: BTreeMap<(SeriesKey, u8), BTreeMap<i64, SeriesState>>,
    downsampled: Option<Timestamp>,
    windows_yielded: AtomicU64,
    /// Set when a scan starts: a query cancelled while storage is being read.
    cancel_on_scan: Option<Arc<std::sync::atomic::AtomicBool>>,
}

fn res_of(tag: u8) -> Resolution {
    Resolution::ALL
        .into_iter()
        .find(|r| r.tag() == tag)
        .unwrap()
}

fn in_prefix(p: &SeriesPrefix, k: &SeriesKey) -> bool {
    match p {
        SeriesPrefix::Model(m) => k.model == *m,
        SeriesPrefix::Version { model, version } => k.model == *model && k.version == *version,
        SeriesPrefix::Feature {
            model,
            version,
            feature,
        } => k.model == *model && k.version == *version && k.feature == *feature,
        SeriesPrefix::Features {
            model,
            version,
            first,
            last,
        } => {
            k.model == *model && k.version == *version && k.feature >= *first && k.feature <= *last
        }
        SeriesPrefix::Series(s) => s == k,
    }
}

impl SeriesReader for Fake {
    fn windows(
        &self,
        series: &SeriesKey,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> driftdb_storage::Result<WindowIter<'_>> {
        let ws = self
            .data
            .get(&(series.clone(), resolution.tag()))
            .map(|m| {
                m.range(from.0..to.0)
                    .map(|(s, st)| Window {
                        start: Timestamp(*s),
                        resolution,
                        state: st.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(WindowIter::from_windows(resolution, ws))
    }

    fn scan(
        &self,
        prefix: &SeriesPrefix,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> driftdb_storage::Result<ScanIter<'_>> {
        if let Some(flag) = &self.cancel_on_scan {
            flag.store(true, Ordering::Relaxed);
        }
        let mut out = Vec::new();
        for ((key, tag), m) in &self.data {
            if res_of(*tag) != resolution || !in_prefix(prefix, key) {
                continue;
            }
            let key = Arc::new(key.clone());
            for (s, st) in m.range(from.0..to.0) {
                out.push(SeriesWindow {
                    series: Arc::clone(&key),
                    window: Window {
                        start: Timestamp(*s),
                        resolution,
                        state: st.clone(),
                    },
                });
            }
        }
        self.windows_yielded
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(ScanIter::from_windows(resolution, out))
    }

    fn series(
        &self,
        model: &str,
        version: Option<&str>,
    ) -> driftdb_storage::Result<Vec<SeriesKey>> {
        let mut v: Vec<SeriesKey> = self
            .data
            .keys()
            .map(|(k, _)| k.clone())
            .filter(|k| k.model == model && version.is_none_or(|v| k.version == v))
            .collect();
        v.dedup();
        Ok(v)
    }

    fn downsampled_before(&self, resolution: Resolution) -> Option<Timestamp> {
        (resolution == Resolution::M15).then_some(self.downsampled?)
    }
}

fn key(feature: &str, region: Option<&str>) -> SeriesKey {
    SeriesKey {
        model: "m".into(),
        version: "v1".into(),
        feature: FeatureRef::Named(feature.into()),
        segment: region.map_or(Segment::All, |r| Segment::Value {
            key: "region".into(),
            value: r.into(),
        }),
    }
}

fn state(values: &[f64]) -> SeriesState {
    let mut n = NumericState::new(None);
    for v in values {
        n.observe(*v, None);
    }
    SeriesState::Numeric(n)
}

fn model() -> ModelDef {
    serde_json::from_str(
        r#"{"id":"m","task":"binary","window":"15m","segments":["region"],"features":{"x":"numeric"}}"#,
    )
    .unwrap()
}

/// Hours 0–3 downsampled (one hourly window each, value h + 1; a 15-minute window of hour 3
/// not yet moved, value 100), then 15-minute windows from 4h to 8h (values 10, 11, …), for
/// the overall segment and `region="eu"`.
fn fixture() -> Fake {
    let mut f = Fake {
        downsampled: Some(Timestamp(4 * H)),
        ..Fake::default()
    };
    for region in [None, Some("eu")] {
        let k = key("x", region);
        let hourly = f.data.entry((k.clone(), Resolution::H1.tag())).or_default();
        for h in 0..4 {
            hourly.insert(h * H, state(&[(h + 1) as f64]));
        }
        let fine = f.data.entry((k, Resolution::M15.tag())).or_default();
        fine.insert(3 * H + 2 * W, state(&[100.0]));
        for i in 0..16 {
            fine.insert(4 * H + i * W, state(&[10.0 + i as f64]));
        }
    }
    f
}

fn no_segments(_: &str) -> SegmentValues {
    SegmentValues::new()
}

fn eu(_: &str) -> SegmentValues {
    [("region".to_string(), ["eu".to_string()].into())].into()
}

fn with_source<T>(
    f: &Fake,
    limits: Limits,
    segments: &(dyn Fn(&str) -> SegmentValues + Sync),
    run: impl FnOnce(&DriftSource<'_>) -> T,
) -> T {
    let mut catalog = MemoryCatalog::new();
    catalog.add_model(model());
    let ctx = Context {
        reader: f,
        catalog: &catalog,
        now: Timestamp(10 * H),
    };
    let src = DriftSource {
        ctx: &ctx,
        retention_floor: Timestamp(0),
        segments,
        limits,
    };
    run(&src)
}

fn m(name: &str, value: &str) -> Matcher {
    Matcher::eq(name, value)
}

#[test]
fn downsampled_samples_are_stamped_at_the_hours_end() {
    let f = fixture();
    let matchers = [
        m("__name__", "driftdb_mean"),
        m("model", "m"),
        m("region", ""),
    ];
    let got = with_source(&f, Limits::default(), &no_segments, |src| {
        src.read(&matchers, 0, 1 << 62, &Budget::unlimited())
            .unwrap()
    });
    assert_eq!(got.series.len(), 1);
    let s = &got.series[0].samples;
    assert_eq!(
        s[..6],
        [
            (H, 1.0),
            (2 * H, 2.0),
            (3 * H, 3.0),
            // The hourly window of hour 3 and its quarter not yet moved, merged.
            (4 * H, 52.0),
            (4 * H + W, 10.0),
            (4 * H + 2 * W, 11.0)
        ]
    );
    assert_eq!(s.len(), 4 + 16);
    assert_eq!(s.last(), Some(&(8 * H, 25.0)));
    // An hourly range query aligned to the hour sees every hour, downsampled or not.
    let a = with_source(&f, Limits::default(), &no_segments, |src| {
        range_query(
            src,
            r#"driftdb_mean{model="m", region=""}"#,
            H,
            8 * H,
            H,
            &Limits::default(),
            &Budget::unlimited(),
        )
        .unwrap()
    });
    let Value::Vector(v) = a.value else { panic!() };
    let vals = v.values().next().unwrap();
    assert_eq!(
        vals,
        &vec![
            Some(1.0),
            Some(2.0),
            Some(3.0),
            Some(52.0),
            Some(13.0),
            Some(17.0),
            Some(21.0),
            Some(25.0)
        ]
    );
}

#[test]
fn segments_and_listing() {
    let f = fixture();
    let got = with_source(&f, Limits::default(), &eu, |src| {
        src.read(
            &[m("__name__", "driftdb_mean"), m("region", "eu")],
            0,
            i64::MAX,
            &Budget::unlimited(),
        )
        .unwrap()
    });
    assert_eq!(got.series.len(), 1);
    assert!(
        got.series[0]
            .labels
            .contains(&("region".into(), "eu".into()))
    );
    assert!(got.stats.windows_read > 0);
    let listed = with_source(&f, Limits::default(), &eu, |src| {
        src.list(&[m("__name__", "driftdb_mean")], &Budget::unlimited())
            .unwrap()
    });
    // $score and $latency hold no window: only x, overall and eu.
    assert_eq!(listed.len(), 2, "{listed:?}");
}

#[test]
fn unselective_reads_are_refused_before_reading() {
    let f = fixture();
    let lim = Limits {
        max_windows: 100,
        ..Limits::default()
    };
    for matchers in [
        vec![],
        vec![Matcher::new(MatchOp::Re, "__name__", ".*").unwrap()],
    ] {
        let e = with_source(&f, lim, &eu, |src| {
            src.read(&matchers, 0, 1 << 62, &Budget::unlimited())
                .unwrap_err()
        });
        assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("select every series"), "{text}");
        assert!(text.contains("limit is 100 "), "{text}");
    }
    assert_eq!(f.windows_yielded.load(Ordering::Relaxed), 0);
    // The same matchers over a short range are small enough.
    let got = with_source(&f, lim, &eu, |src| {
        src.read(&[], 5 * H, 6 * H, &Budget::unlimited()).unwrap()
    });
    assert!(!got.series.is_empty());
    // Series × instants is checked against the candidates before reading.
    let tight = Limits {
        max_cells: 10,
        ..Limits::default()
    };
    let e = with_source(&f, tight, &eu, |src| {
        src.select(&[m("model", "m")], 0, 8 * H, 29, &Budget::unlimited())
            .unwrap_err()
    });
    assert!(e.to_string().contains("instants"), "{e}");
    // Listing is bounded too.
    let e = with_source(
        &f,
        Limits {
            max_series: 2,
            ..Limits::default()
        },
        &eu,
        |src| {
            src.list(&[m("model", "m")], &Budget::unlimited())
                .unwrap_err()
        },
    );
    assert!(e.to_string().contains("limit is 2"), "{e}");
}

#[test]
fn budgets_bound_reads() {
    let f = fixture();
    let e = with_source(&f, Limits::default(), &eu, |src| {
        src.read(
            &[m("model", "m")],
            0,
            i64::MAX,
            &Budget::new(Duration::ZERO),
        )
        .unwrap_err()
    });
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    let b = Budget::unlimited();
    b.cancel();
    let e = with_source(&f, Limits::default(), &eu, |src| {
        src.list(&[m("model", "m")], &b).unwrap_err()
    });
    assert!(matches!(e, Error::Cancelled), "{e:?}");
    // Cancelled while storage is being read: the scan stops, the error is the budget's.
    let b = Budget::unlimited();
    let mut f = fixture();
    f.cancel_on_scan = Some(b.cancel_flag());
    let e = with_source(&f, Limits::default(), &eu, |src| {
        src.read(&[m("model", "m")], 0, i64::MAX, &b).unwrap_err()
    });
    assert!(matches!(e, Error::Cancelled), "{e:?}");
}
