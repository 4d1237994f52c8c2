//! Unit tests of `promql`.

use super::*;

fn err(q: &str) -> String {
    match parse(q) {
        Ok(e) => panic!("{q} parsed as {e:?}"),
        Err(e) => e.to_string(),
    }
}

fn names(s: &Selector) -> Vec<String> {
    s.matchers.iter().map(ToString::to_string).collect()
}

#[test]
fn selectors() {
    let Expr::Vector(s) =
        parse(r#"driftdb_psi{model="fraud", feature!="$score",region=~"eu|us", version!~'v1.*',}"#)
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        names(&s),
        [
            r#"__name__="driftdb_psi""#,
            r#"model="fraud""#,
            r#"feature!="$score""#,
            r#"region=~"eu|us""#,
            r#"version!~"v1.*""#
        ]
    );
    let Expr::Vector(s) = parse(r#"{__name__=~"driftdb_(psi|ks)"}"#).unwrap() else {
        panic!()
    };
    assert!(s.matchers[0].matches("driftdb_ks") && !s.matchers[0].matches("driftdb_ksx"));
    let Expr::Range(_, r) = parse("driftdb_psi[1h30m]").unwrap() else {
        panic!()
    };
    assert_eq!(r, 5_400_000);
    // Escapes and raw strings.
    let Expr::Vector(s) = parse(r#"x{a="\"q\"\n", b=`\d+`}"#).unwrap() else {
        panic!()
    };
    assert_eq!(s.matchers[1].value, "\"q\"\n");
    assert_eq!(s.matchers[2].value, "\\d+");
}

#[test]
fn aggregations_functions_and_comparisons() {
    let e = parse(r#"max by (feature) (avg_over_time(driftdb_psi{model="m"}[1h])) > 0.2"#).unwrap();
    let Expr::Binary {
        op: BinOp::Gt,
        lhs,
        rhs,
        return_bool: false,
    } = e
    else {
        panic!("{e:?}")
    };
    assert!(matches!(*rhs, Expr::Number(x) if x == 0.2));
    let Expr::Aggregate {
        op: AggOp::Max,
        grouping,
        expr,
        ..
    } = *lhs
    else {
        panic!()
    };
    assert_eq!(grouping, Grouping::By(vec!["feature".into()]));
    assert!(matches!(
        *expr,
        Expr::OverTime {
            func: OverTime::Avg,
            range_ms: 3_600_000,
            ..
        }
    ));
    // Grouping after the argument, without, topk.
    let e = parse("sum(driftdb_rows) without (region)").unwrap();
    assert!(matches!(
        e,
        Expr::Aggregate {
            grouping: Grouping::Without(_),
            ..
        }
    ));
    let e = parse("topk(5, driftdb_psi)").unwrap();
    assert!(matches!(
        e,
        Expr::Aggregate {
            op: AggOp::Topk,
            param: Some(_),
            ..
        }
    ));
    // A metric called like an aggregation is a selector.
    assert!(matches!(parse("count").unwrap(), Expr::Vector(_)));
}

#[test]
fn numbers_and_precedence() {
    let e = parse("1+1").unwrap();
    assert_eq!(e.kind(), Kind::Scalar);
    let e = parse("2 * 3 + 4 / 2 - -1").unwrap();
    fn eval(e: &Expr) -> f64 {
        match e {
            Expr::Number(n) => *n,
            Expr::Neg(e) => -eval(e),
            Expr::Binary { op, lhs, rhs, .. } => op.apply(eval(lhs), eval(rhs)),
            _ => panic!(),
        }
    }
    assert_eq!(eval(&e), 9.0);
    assert_eq!(eval(&parse("0x10 + 1e2 + .5").unwrap()), 116.5);
    assert!(eval(&parse("Inf").unwrap()).is_infinite());
    assert_eq!(eval(&parse("1 < bool 2").unwrap()), 1.0);
    assert_eq!(eval(&parse("(1 + 2) * 3").unwrap()), 9.0);
}

#[test]
fn unsupported_constructs_are_named() {
    for (q, needle) in [
        ("rate(driftdb_rows[5m])", "unsupported function \"rate\""),
        ("stddev(driftdb_psi)", "unsupported aggregation \"stddev\""),
        ("driftdb_psi / driftdb_ks", "between two vectors"),
        ("driftdb_psi offset 1h", "offset"),
        ("driftdb_psi @ 100", "@ modifier"),
        ("driftdb_psi and driftdb_ks", "the and operator"),
        ("driftdb_psi % 2", "the % operator"),
        ("driftdb_psi[5m:1m]", "subqueries"),
        ("max(driftdb_psi[5m])", "not a range vector"),
        ("driftdb_psi[5m] > 1", "only supported inside"),
        ("1 > 2", "bool"),
        ("{}", "at least one matcher"),
        ("{model=~\".*\"}", "at least one matcher"),
        ("driftdb_psi{model=\"(\"", "\"}\""),
        ("driftdb_psi{model=~\"(\"}", "invalid regular expression"),
        ("avg_over_time(driftdb_psi)", "takes a range selector"),
        ("", "empty query"),
        ("driftdb_psi{", "label name"),
        ("x{__name__=\"y\"}", "given twice"),
        ("5m", "only allowed inside"),
        ("max by (a) (x) by (b)", "given twice"),
        ("driftdb_psi > on(model) driftdb_ks", "vector matching"),
    ] {
        let e = err(q);
        assert!(e.contains(needle), "{q}: {e}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5m"), Some(300_000));
    assert_eq!(parse_duration("1h30m"), Some(5_400_000));
    assert_eq!(parse_duration("250ms"), Some(250));
    assert_eq!(parse_duration("1w"), Some(604_800_000));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("5x"), None);
    assert_eq!(parse_duration(""), None);
}

#[test]
fn selectors_are_listed_with_their_ranges() {
    let e = parse("max(driftdb_psi) + avg_over_time(driftdb_ks[10m]) * 0").unwrap_err();
    assert!(e.to_string().contains("two vectors"));
    let e = parse("topk(3, max_over_time(driftdb_ks[10m]))").unwrap();
    let s = e.selectors();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, Some(600_000));
    let e = parse("driftdb_psi * 100").unwrap();
    assert_eq!(e.selectors()[0].1, None);
}
