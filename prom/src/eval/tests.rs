//! Unit tests of `eval`.

use std::time::Duration;

use super::*;
use crate::source::MemorySource;

fn l(pairs: &[(&str, &str)]) -> Labels {
    let mut v: Labels = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn lookback_and_windows_are_closed_intervals() {
    let s = [(100, 1.0), (200, 2.0), (400, 4.0)];
    assert_eq!(latest(&s, 150, 250), Some(2.0));
    assert_eq!(latest(&s, 200, 399), Some(2.0));
    assert_eq!(latest(&s, 201, 399), None);
    assert_eq!(latest(&s, 0, 99), None);
    assert_eq!(latest(&s, 400, 400), Some(4.0));
    assert_eq!(window(&s, 100, 200), &s[..2]);
    assert_eq!(window(&s, 101, 399), &s[1..2]);
    assert!(window(&s, 500, 600).is_empty());
    assert_eq!(over_time(OverTime::Avg, &s), Some(7.0 / 3.0));
    assert_eq!(over_time(OverTime::Max, &s), Some(4.0));
    assert_eq!(over_time(OverTime::Min, &s), Some(1.0));
    assert_eq!(over_time(OverTime::Count, &s), Some(3.0));
    assert_eq!(over_time(OverTime::Last, &s), Some(4.0));
    assert_eq!(over_time(OverTime::Sum, &s), Some(7.0));
    assert_eq!(over_time(OverTime::Sum, &[]), None);
}

#[test]
fn steps_follow_prometheus_limits() {
    assert_eq!(steps(0, 10, 5, 11_000).unwrap(), vec![0, 5, 10]);
    assert_eq!(steps(0, 9, 5, 11_000).unwrap(), vec![0, 5]);
    assert!(steps(0, 10, 0, 11_000).is_err());
    assert!(steps(10, 0, 1, 11_000).is_err());
    let e = steps(0, 11_000, 1, 11_000).unwrap_err();
    assert!(
        matches!(e, Error::Invalid(_)),
        "Prometheus answers 400 bad_data here"
    );
    assert!(e.to_string().contains("11000 points"), "{e}");
    assert_eq!(steps(0, 10_999, 1, 11_000).unwrap().len(), 11_000);
    // Extreme bounds neither overflow nor loop.
    assert!(steps(i64::MIN, i64::MAX, 1, 11_000).is_err());
    assert_eq!(
        steps(i64::MAX - 1, i64::MAX, 1, 11_000).unwrap(),
        vec![i64::MAX - 1, i64::MAX]
    );
}

#[test]
fn vector_scalar_operations() {
    let mut v = BTreeMap::new();
    v.insert(
        l(&[("__name__", "driftdb_psi"), ("feature", "a")]),
        vec![Some(0.1), Some(0.3), None],
    );
    v.insert(
        l(&[("__name__", "driftdb_psi"), ("feature", "b")]),
        vec![Some(0.5), None, Some(0.05)],
    );
    // Filtering keeps names and values.
    let f = vector_scalar(BinOp::Gt, false, v.clone(), 0.2, false).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(
        f[&l(&[("__name__", "driftdb_psi"), ("feature", "a")])],
        vec![None, Some(0.3), None]
    );
    // Scalar on the left: 0.2 < x.
    let f2 = vector_scalar(BinOp::Lt, false, v.clone(), 0.2, true).unwrap();
    assert_eq!(f, f2);
    // bool gives 0/1 and drops the name.
    let b = vector_scalar(BinOp::Gt, true, v.clone(), 0.2, false).unwrap();
    assert_eq!(b[&l(&[("feature", "b")])], vec![Some(1.0), None, Some(0.0)]);
    // Arithmetic drops the name.
    let m = vector_scalar(BinOp::Mul, false, v.clone(), 100.0, false).unwrap();
    assert_eq!(
        m[&l(&[("feature", "a")])],
        vec![Some(10.0), Some(30.0), None]
    );
    let d = vector_scalar(BinOp::Div, false, v, 0.0, true).unwrap();
    assert_eq!(d[&l(&[("feature", "a")])], vec![Some(0.0), Some(0.0), None]);
    // Two names collapsing onto one label set at the same instant is an error.
    let mut two = BTreeMap::new();
    two.insert(l(&[("__name__", "a"), ("x", "1")]), vec![Some(1.0)]);
    two.insert(l(&[("__name__", "b"), ("x", "1")]), vec![Some(2.0)]);
    assert!(vector_scalar(BinOp::Add, false, two, 1.0, false).is_err());
}

#[test]
fn aggregations_group_per_instant() {
    let budget = Budget::unlimited();
    let mut v = BTreeMap::new();
    let a = l(&[
        ("__name__", "driftdb_psi"),
        ("feature", "a"),
        ("region", "eu"),
    ]);
    let b = l(&[
        ("__name__", "driftdb_psi"),
        ("feature", "a"),
        ("region", "us"),
    ]);
    let c = l(&[
        ("__name__", "driftdb_psi"),
        ("feature", "b"),
        ("region", "eu"),
    ]);
    v.insert(a.clone(), vec![Some(0.1), Some(0.4)]);
    v.insert(b.clone(), vec![Some(0.3), None]);
    v.insert(c.clone(), vec![Some(0.2), Some(0.1)]);
    let agg = |op, k, g: &Grouping| aggregate(2, op, k, g, v.clone(), &budget).unwrap();
    let by = Grouping::By(vec!["feature".into()]);
    let max = agg(AggOp::Max, None, &by);
    assert_eq!(max[&l(&[("feature", "a")])], vec![Some(0.3), Some(0.4)]);
    assert_eq!(max[&l(&[("feature", "b")])], vec![Some(0.2), Some(0.1)]);
    let avg = agg(AggOp::Avg, None, &Grouping::All);
    let got = avg[&Vec::new()].clone();
    assert!((got[0].unwrap() - 0.2).abs() < 1e-12 && (got[1].unwrap() - 0.25).abs() < 1e-12);
    let count = agg(
        AggOp::Count,
        None,
        &Grouping::Without(vec!["region".into()]),
    );
    assert_eq!(count[&l(&[("feature", "a")])], vec![Some(2.0), Some(1.0)]);
    let sum = agg(AggOp::Sum, None, &Grouping::By(vec!["region".into()]));
    assert_eq!(sum[&l(&[("region", "us")])], vec![Some(0.3), None]);
    let min = agg(AggOp::Min, None, &Grouping::All);
    assert_eq!(min[&Vec::new()], vec![Some(0.1), Some(0.1)]);
    // topk keeps whole series, per instant.
    let top = agg(AggOp::Topk, Some(1.0), &Grouping::All);
    assert_eq!(top.len(), 2);
    assert_eq!(top[&b], vec![Some(0.3), None]);
    assert_eq!(top[&a], vec![None, Some(0.4)]);
    let bottom = agg(AggOp::Bottomk, Some(2.0), &by);
    assert_eq!(bottom[&a], vec![Some(0.1), Some(0.4)]);
    assert_eq!(bottom[&b], vec![Some(0.3), None]);
    assert_eq!(bottom[&c], vec![Some(0.2), Some(0.1)]);
    let bottom = agg(AggOp::Bottomk, Some(1.0), &by);
    assert_eq!(bottom.len(), 2);
    assert_eq!(bottom[&a], vec![Some(0.1), Some(0.4)]);
    assert_eq!(bottom[&c], vec![Some(0.2), Some(0.1)]);
    // NaN, zero and negative k select nothing.
    for k in [f64::NAN, 0.0, -1.0, 0.5] {
        assert!(agg(AggOp::Topk, Some(k), &Grouping::All).is_empty());
    }
}

fn psi(feature: &str, region: Option<&str>, samples: &[(i64, f64)]) -> Series {
    let mut labels = vec![
        ("__name__".to_string(), "driftdb_psi".to_string()),
        ("feature".to_string(), feature.to_string()),
        ("model".to_string(), "m".to_string()),
    ];
    if let Some(r) = region {
        labels.push(("region".to_string(), r.to_string()));
    }
    Series {
        labels,
        samples: samples.to_vec(),
    }
}

const M: i64 = 60_000;

fn source() -> MemorySource {
    MemorySource::new(
        vec![
            psi("a", None, &[(15 * M, 0.1), (30 * M, 0.3), (45 * M, 0.2)]),
            psi("b", None, &[(15 * M, 0.5), (45 * M, 0.05)]),
            psi("a", Some("eu"), &[(30 * M, 0.25)]),
        ],
        Limits::default(),
    )
}

fn vector(a: &Answer) -> &VectorValues {
    match &a.value {
        Value::Vector(v) => v,
        other => panic!("not a vector: {other:?}"),
    }
}

#[test]
fn queries_evaluate_end_to_end() {
    let src = source();
    let lim = Limits::default();
    let b = Budget::unlimited();
    // Instant: latest sample within 5 minutes.
    let a = instant_query(&src, r#"driftdb_psi{region=""}"#, 32 * M, &lim, &b).unwrap();
    let v = vector(&a);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v.values().next().unwrap(), &vec![Some(0.3)]);
    // Range, aggregated and scaled.
    let a = range_query(
        &src,
        r#"max by (feature) (driftdb_psi) * 100"#,
        15 * M,
        45 * M,
        15 * M,
        &lim,
        &b,
    )
    .unwrap();
    assert_eq!(a.steps, vec![15 * M, 30 * M, 45 * M]);
    let v = vector(&a);
    assert_eq!(
        v[&l(&[("feature", "a")])],
        vec![Some(10.0), Some(30.0), Some(20.0)]
    );
    assert_eq!(
        v[&l(&[("feature", "b")])],
        vec![Some(50.0), None, Some(5.0)]
    );
    // *_over_time looks back its range; last_over_time keeps the name.
    let a = instant_query(
        &src,
        r#"last_over_time(driftdb_psi{feature="b"}[1h])"#,
        40 * M,
        &lim,
        &b,
    )
    .unwrap();
    let v = vector(&a);
    assert_eq!(v.values().next().unwrap(), &vec![Some(0.5)]);
    assert!(
        v.keys()
            .next()
            .unwrap()
            .iter()
            .any(|(n, _)| n == "__name__")
    );
    let a = instant_query(
        &src,
        r#"avg_over_time(driftdb_psi{feature="a", region=""}[1h])"#,
        45 * M,
        &lim,
        &b,
    )
    .unwrap();
    let got = vector(&a).values().next().unwrap()[0].unwrap();
    assert!((got - 0.2).abs() < 1e-12, "{got}");
    // A number, a bare range selector.
    let a = instant_query(&src, "1 + 1", 0, &lim, &b).unwrap();
    assert_eq!(a.value, Value::Scalar(vec![2.0]));
    let a = instant_query(&src, r#"driftdb_psi{feature="b"}[1h]"#, 50 * M, &lim, &b).unwrap();
    let Value::Matrix(m) = a.value else { panic!() };
    assert_eq!(m[0].samples, vec![(15 * M, 0.5), (45 * M, 0.05)]);
    let e = range_query(&src, "driftdb_psi[5m]", 0, M, M, &lim, &b).unwrap_err();
    assert!(e.to_string().contains("range vector"), "{e}");
    // Comparisons filter, bool yields 0/1.
    let a = instant_query(&src, "driftdb_psi > 0.2", 30 * M, &lim, &b).unwrap();
    assert_eq!(vector(&a).len(), 2);
    let a = instant_query(&src, "topk(1, driftdb_psi)", 30 * M, &lim, &b).unwrap();
    assert_eq!(vector(&a).values().next().unwrap(), &vec![Some(0.3)]);
}

fn many(n: usize) -> MemorySource {
    MemorySource::new(
        (0..n)
            .map(|i| psi(&format!("f{i:05}"), None, &[(M, 1.0), (2 * M, 2.0)]))
            .collect(),
        Limits::default(),
    )
}

#[test]
fn cost_is_bounded_before_allocation() {
    let b = Budget::unlimited();
    // series × instants over the limit: refused by the source before it copies a sample.
    let lim = Limits {
        max_cells: 1_000,
        ..Limits::default()
    };
    let src = MemorySource::new(
        (0..600)
            .map(|i| psi(&format!("f{i:05}"), None, &[(M, 1.0)]))
            .collect(),
        lim,
    );
    let e = range_query(&src, "driftdb_psi", 0, M, M, &lim, &b).unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
    assert!(e.to_string().contains("600 series × 2 instants"), "{e}");
    assert!(range_query(&src, "driftdb_psi", 0, 0, M, &lim, &b).is_ok());
    // The evaluator holds a source to the same limit even if the source does not.
    let loose = many(600);
    let e = range_query(&loose, "driftdb_psi", 0, M, M, &lim, &b).unwrap_err();
    assert!(e.to_string().contains("values for one selector"), "{e}");
    // *_over_time work is counted before it is done.
    let lim = Limits {
        max_range_samples: 100,
        ..Limits::default()
    };
    let e = range_query(
        &many(100),
        "max_over_time(driftdb_psi[1h])",
        2 * M,
        3 * M,
        M,
        &lim,
        &b,
    )
    .unwrap_err();
    assert!(e.to_string().contains("*_over_time"), "{e}");
    // Too many points.
    let e = range_query(
        &many(1),
        "driftdb_psi",
        0,
        20_000 * M,
        M,
        &Limits::default(),
        &b,
    )
    .unwrap_err();
    assert!(e.to_string().contains("11000 points"), "{e}");
}

#[test]
fn budgets_stop_queries() {
    let src = many(2_000);
    let lim = Limits::default();
    let b = Budget::new(Duration::ZERO);
    let e = range_query(&src, "sum(driftdb_psi)", 0, 2 * M, M, &lim, &b).unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    assert_eq!(e.kind(), driftdb_engine::ErrorKind::DeadlineExceeded);
    let b = Budget::unlimited();
    b.cancel();
    let e = instant_query(&src, "driftdb_psi", M, &lim, &b).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e:?}");
    assert_eq!(e.kind(), driftdb_engine::ErrorKind::Cancelled);
}

#[test]
fn deep_pipelines_evaluate_on_a_small_stack() {
    let l = Limits::default();
    let q = format!(
        "{}driftdb_psi{}",
        "sum(".repeat(l.max_nesting),
        ")".repeat(l.max_nesting)
    );
    let q2 = format!("{}driftdb_psi", "-".repeat(l.max_operators));
    let got = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let src = source();
            let b = Budget::unlimited();
            let a = instant_query(&src, &q, 30 * M, &Limits::default(), &b)?;
            let b2 = instant_query(&src, &q2, 30 * M, &Limits::default(), &b)?;
            Ok::<_, Error>((a.value, b2.value))
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let Value::Vector(v) = got.0 else { panic!() };
    let sum = v[&Vec::new()][0].unwrap();
    assert!((sum - 0.55).abs() < 1e-12, "{sum}");
    let Value::Vector(v) = got.1 else { panic!() };
    assert_eq!(v.len(), 2);
}
