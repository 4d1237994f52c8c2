//! Unit tests of `eval`.

use super::*;

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
    assert_eq!(steps(0, 10, 5).unwrap(), vec![0, 5, 10]);
    assert_eq!(steps(0, 9, 5).unwrap(), vec![0, 5]);
    assert!(steps(0, 10, 0).is_err());
    assert!(steps(10, 0, 1).is_err());
    assert!(steps(0, 11_000, 1).is_err());
    assert_eq!(steps(0, 10_999, 1).unwrap().len(), 11_000);
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
    let Value::Vector(f) = binary(
        BinOp::Gt,
        false,
        Value::Vector(v.clone()),
        Value::Scalar(vec![0.2; 3]),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(f.len(), 2);
    assert_eq!(
        f[&l(&[("__name__", "driftdb_psi"), ("feature", "a")])],
        vec![None, Some(0.3), None]
    );
    // Scalar on the left: 0.2 < x.
    let Value::Vector(f2) = binary(
        BinOp::Lt,
        false,
        Value::Scalar(vec![0.2; 3]),
        Value::Vector(v.clone()),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(f, f2);
    // bool gives 0/1 and drops the name.
    let Value::Vector(b) = binary(
        BinOp::Gt,
        true,
        Value::Vector(v.clone()),
        Value::Scalar(vec![0.2; 3]),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(b[&l(&[("feature", "b")])], vec![Some(1.0), None, Some(0.0)]);
    // Arithmetic drops the name.
    let Value::Vector(m) = binary(
        BinOp::Mul,
        false,
        Value::Vector(v),
        Value::Scalar(vec![100.0; 3]),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        m[&l(&[("feature", "a")])],
        vec![Some(10.0), Some(30.0), None]
    );
    // Two names collapsing onto one label set at the same instant is an error.
    let mut two = BTreeMap::new();
    two.insert(l(&[("__name__", "a"), ("x", "1")]), vec![Some(1.0)]);
    two.insert(l(&[("__name__", "b"), ("x", "1")]), vec![Some(2.0)]);
    assert!(
        binary(
            BinOp::Add,
            false,
            Value::Vector(two),
            Value::Scalar(vec![1.0])
        )
        .is_err()
    );
}

#[test]
fn aggregations_group_per_instant() {
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
    let by = Grouping::By(vec!["feature".into()]);
    let max = aggregate(2, AggOp::Max, None, &by, v.clone());
    assert_eq!(max[&l(&[("feature", "a")])], vec![Some(0.3), Some(0.4)]);
    assert_eq!(max[&l(&[("feature", "b")])], vec![Some(0.2), Some(0.1)]);
    let avg = aggregate(2, AggOp::Avg, None, &Grouping::All, v.clone());
    let got = avg[&Vec::new()].clone();
    assert!((got[0].unwrap() - 0.2).abs() < 1e-12 && (got[1].unwrap() - 0.25).abs() < 1e-12);
    let count = aggregate(
        2,
        AggOp::Count,
        None,
        &Grouping::Without(vec!["region".into()]),
        v.clone(),
    );
    assert_eq!(count[&l(&[("feature", "a")])], vec![Some(2.0), Some(1.0)]);
    let sum = aggregate(
        2,
        AggOp::Sum,
        None,
        &Grouping::By(vec!["region".into()]),
        v.clone(),
    );
    assert_eq!(sum[&l(&[("region", "us")])], vec![Some(0.3), None]);
    let min = aggregate(2, AggOp::Min, None, &Grouping::All, v.clone());
    assert_eq!(min[&Vec::new()], vec![Some(0.1), Some(0.1)]);
    // topk keeps whole series, per instant.
    let top = aggregate(
        2,
        AggOp::Topk,
        Some(vec![1.0, 1.0]),
        &Grouping::All,
        v.clone(),
    );
    assert_eq!(top.len(), 2);
    assert_eq!(top[&b], vec![Some(0.3), None]);
    assert_eq!(top[&a], vec![None, Some(0.4)]);
    let bottom = aggregate(2, AggOp::Bottomk, Some(vec![2.0, 0.0]), &by, v);
    assert_eq!(bottom[&a], vec![Some(0.1), None]);
    assert_eq!(bottom[&b], vec![Some(0.3), None]);
    assert_eq!(bottom[&c], vec![Some(0.2), None]);
}
