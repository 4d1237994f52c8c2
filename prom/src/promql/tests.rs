//! Unit tests of `promql`.

use super::*;

fn lim() -> Limits {
    Limits::default()
}

fn p(q: &str) -> Expr {
    parse(q, &lim()).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn err(q: &str) -> Error {
    match parse(q, &lim()) {
        Ok(e) => panic!("{q} parsed as {e:?}"),
        Err(e) => e,
    }
}

fn pipeline(e: Expr) -> Pipeline {
    match e {
        Expr::Vector(p) => p,
        other => panic!("not a vector: {other:?}"),
    }
}

fn sel(e: Expr) -> Selector {
    match pipeline(e) {
        Pipeline {
            source: Source::Selector(s),
            ops,
        } if ops.is_empty() => s,
        other => panic!("not a plain selector: {other:?}"),
    }
}

fn names(s: &Selector) -> Vec<String> {
    s.matchers.iter().map(ToString::to_string).collect()
}

fn number(e: Expr) -> f64 {
    match e {
        Expr::Number(n) => n,
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn selectors() {
    let s = sel(p(
        r#"driftdb_psi{model="fraud", feature!="$score",region=~"eu|us", version!~'v1.*',}"#,
    ));
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
    let s = sel(p(r#"{__name__=~"driftdb_(psi|ks)"}"#));
    assert!(s.matchers[0].matches("driftdb_ks") && !s.matchers[0].matches("driftdb_ksx"));
    let Expr::Range(_, r) = p("driftdb_psi[1h30m]") else {
        panic!()
    };
    assert_eq!(r, 5_400_000);
    // A range given in seconds, as Prometheus 3 allows.
    let Expr::Range(_, r) = p("driftdb_psi[300]") else {
        panic!()
    };
    assert_eq!(r, 300_000);
    // Escapes and raw strings (no escapes in a raw string, a quote inside one is text).
    let s = sel(p(r#"x{a="\"q\"\n", b=~`\d+`, c=`"\`}"#));
    assert_eq!(s.matchers[1].value, "\"q\"\n");
    assert_eq!(s.matchers[2].value, "\\d+");
    assert_eq!(s.matchers[3].value, "\"\\");
    assert!(s.matchers[2].matches("42") && !s.matchers[2].matches("4a"));
    // Parentheses are transparent; a bare range selector in parentheses is still one.
    assert_eq!(
        names(&sel(p("((driftdb_psi))"))),
        [r#"__name__="driftdb_psi""#]
    );
    assert!(matches!(p("(driftdb_psi[5m])"), Expr::Range(..)));
    // A metric called like an aggregation or a keyword is a selector.
    assert_eq!(names(&sel(p("count"))), [r#"__name__="count""#]);
    assert_eq!(names(&sel(p("sum"))), [r#"__name__="sum""#]);
}

#[test]
fn aggregations_functions_and_comparisons() {
    let e = pipeline(p(
        r#"max by (feature) (avg_over_time(driftdb_psi{model="m"}[1h])) > 0.2"#,
    ));
    assert!(matches!(
        e.source,
        Source::OverTime {
            func: OverTime::Avg,
            range_ms: 3_600_000,
            ..
        }
    ));
    assert_eq!(
        e.ops,
        [
            Op::Aggregate {
                op: AggOp::Max,
                k: None,
                grouping: Grouping::By(vec!["feature".into()])
            },
            Op::Scalar {
                op: BinOp::Gt,
                scalar: 0.2,
                scalar_left: false,
                return_bool: false
            }
        ]
    );
    // Grouping after the argument, without, topk with a folded k, number on the left, bool.
    assert_eq!(
        pipeline(p("sum(driftdb_rows) without (region)")).ops,
        [Op::Aggregate {
            op: AggOp::Sum,
            k: None,
            grouping: Grouping::Without(vec!["region".into()])
        }]
    );
    assert_eq!(
        pipeline(p("topk(2 + 3, driftdb_psi)")).ops,
        [Op::Aggregate {
            op: AggOp::Topk,
            k: Some(5.0),
            grouping: Grouping::All
        }]
    );
    assert_eq!(
        pipeline(p("0.5 < bool -driftdb_psi")).ops,
        [
            Op::Neg,
            Op::Scalar {
                op: BinOp::Lt,
                scalar: 0.5,
                scalar_left: true,
                return_bool: true
            }
        ]
    );
    // Every *_over_time function, its argument in parentheses or not.
    for (f, want) in [
        ("avg", OverTime::Avg),
        ("min", OverTime::Min),
        ("max", OverTime::Max),
        ("sum", OverTime::Sum),
        ("count", OverTime::Count),
        ("last", OverTime::Last),
    ] {
        let e = pipeline(p(&format!("{f}_over_time((driftdb_psi[10m]))")));
        assert!(
            matches!(e.source, Source::OverTime { func, range_ms: 600_000, .. } if func == want),
            "{f}"
        );
    }
    for op in ["sum", "avg", "min", "max", "count"] {
        p(&format!("{op} by (model) (driftdb_psi)"));
    }
    p("bottomk(1, driftdb_psi)");
}

#[test]
fn numbers_fold_with_precedence() {
    assert_eq!(p("1+1").kind(), Kind::Scalar);
    assert_eq!(number(p("2 * 3 + 4 / 2 - -1")), 9.0);
    assert_eq!(number(p("0x10 + 1e2 + .5")), 116.5);
    assert!(number(p("Inf")).is_infinite());
    assert!(number(p("NaN")).is_nan());
    assert_eq!(number(p("1 < bool 2")), 1.0);
    assert_eq!(number(p("(1 + 2) * 3")), 9.0);
    assert_eq!(number(p("---1")), -1.0);
    // A duration as a number is seconds.
    assert_eq!(number(p("5m")), 300.0);
}

#[test]
fn unsupported_constructs_are_named() {
    for (q, needle) in [
        (
            "rate(driftdb_rows[5m])",
            "unsupported PromQL: function rate()",
        ),
        (
            "histogram_quantile(0.9, x)",
            "unsupported PromQL: function histogram_quantile()",
        ),
        ("time()", "function time()"),
        ("vector(1)", "function vector()"),
        ("scalar(driftdb_psi)", "function scalar()"),
        ("abs(driftdb_psi)", "function abs()"),
        (
            "stddev(driftdb_psi)",
            "unsupported PromQL: aggregation stddev()",
        ),
        (
            "quantile(0.9, driftdb_psi)",
            "unsupported PromQL: aggregation quantile()",
        ),
        (
            "count_values(\"v\", driftdb_psi)",
            "aggregation count_values()",
        ),
        ("group(driftdb_psi)", "aggregation group()"),
        ("limitk(2, driftdb_psi)", "aggregation limitk()"),
        (
            "driftdb_psi / driftdb_ks",
            "binary operation between two vectors",
        ),
        ("sum(driftdb_psi) + sum(driftdb_ks)", "between two vectors"),
        (
            "driftdb_psi offset 1h",
            "unsupported PromQL: offset modifier",
        ),
        ("driftdb_psi offset -5m", "offset modifier"),
        (
            "max_over_time(driftdb_psi[1h] offset 1d)",
            "offset modifier",
        ),
        ("driftdb_psi @ 100", "unsupported PromQL: @ modifier"),
        ("driftdb_psi @ start()", "@ modifier"),
        ("driftdb_psi and driftdb_ks", "set operator and"),
        ("driftdb_psi or driftdb_ks", "set operator or"),
        ("driftdb_psi unless driftdb_ks", "set operator unless"),
        ("driftdb_psi % 2", "unsupported PromQL: operator %"),
        ("driftdb_psi ^ 2", "operator ^"),
        ("driftdb_psi atan2 2", "operator atan2"),
        ("driftdb_psi[5m:1m]", "unsupported PromQL: subquery"),
        ("max_over_time(driftdb_psi[1h:5m])", "subquery"),
        (
            "driftdb_psi > on(model) driftdb_ks",
            "vector matching (on/ignoring)",
        ),
        (
            "driftdb_psi > ignoring(model) driftdb_ks",
            "vector matching (on/ignoring)",
        ),
        (
            "driftdb_psi * on(model) group_left(feature) driftdb_ks",
            "vector matching (group_left/group_right)",
        ),
        ("\"text\"", "unsupported PromQL: string literal"),
        (
            r#"{__name__="a" or __name__="b"}"#,
            "\"or\" between label matchers",
        ),
    ] {
        let e = err(q);
        assert!(matches!(e, Error::Unsupported(_)), "{q}: {e:?}");
        assert!(e.to_string().contains(needle), "{q}: {e}");
        assert_eq!(e.kind(), driftdb_engine::ErrorKind::InvalidArgument);
    }
}

#[test]
fn invalid_queries_are_parse_errors() {
    for (q, needle) in [
        ("max(driftdb_psi[5m])", "parse error"),
        ("driftdb_psi[5m] > 1", "parse error"),
        ("-driftdb_psi[5m]", "parse error"),
        ("1 > 2", "BOOL modifier"),
        ("{}", "parse error"),
        ("{model=~\".*\"}", "at least one"),
        ("driftdb_psi{model=\"(\"", "parse error"),
        ("driftdb_psi{model=~\"(\"}", "invalid regular expression"),
        ("avg_over_time(driftdb_psi)", "parse error"),
        ("", "empty query"),
        ("   ", "empty query"),
        ("driftdb_psi{", "parse error"),
        ("x{__name__=\"y\"}", "set twice"),
        ("max by (a) (x) by (b)", "parse error"),
        ("driftdb_psi[0]", "at least 1ms"),
        ("sum(", "parse error"),
        ("1 +", "parse error"),
    ] {
        let e = err(q);
        assert!(matches!(e, Error::Invalid(_)), "{q}: {e:?}");
        assert!(e.to_string().contains(needle), "{q}: {e}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5m"), Some(300_000));
    assert_eq!(parse_duration("1h30m"), Some(5_400_000));
    assert_eq!(parse_duration("250ms"), Some(250));
    assert_eq!(parse_duration("1w"), Some(604_800_000));
    assert_eq!(parse_duration("1y"), Some(31_536_000_000));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("5x"), None);
    assert_eq!(parse_duration(""), None);
    // Inputs promql-parser's own duration parser panics on.
    for s in ["-1", "1e400", "NaN", "inf", "-5m", "1e30"] {
        assert_eq!(parse_duration(s), None, "{s}");
    }
}

#[test]
fn match_selectors() {
    let m = parse_selector(r#"driftdb_psi{model="m"}"#, &lim()).unwrap();
    assert_eq!(m.len(), 2);
    for q in ["sum(driftdb_psi)", "driftdb_psi[5m]", "-driftdb_psi", "1"] {
        let e = parse_selector(q, &lim()).unwrap_err().to_string();
        assert!(e.contains("match[] must be a series selector"), "{q}: {e}");
    }
    assert!(parse_selector("driftdb_psi offset 5m", &lim()).is_err());
}

#[test]
fn selectors_are_listed_with_their_ranges() {
    let e = err("max(driftdb_psi) + avg_over_time(driftdb_ks[10m]) * 0");
    assert!(e.to_string().contains("two vectors"));
    let e = p("topk(3, max_over_time(driftdb_ks[10m]))");
    let s = e.selectors();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, Some(600_000));
    let e = p("driftdb_psi * 100");
    assert_eq!(e.selectors()[0].1, None);
    assert!(p("1").selectors().is_empty());
}

/// Runs `f` on a thread with a 256 KiB stack: what a parse, lowering or evaluation of a
/// hostile query may use.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn hostile_queries_fail_cleanly_on_a_small_stack() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{}driftdb_rows{}", "(".repeat(100_000), ")".repeat(100_000)),
            "deep",
        ),
        (
            format!("{}driftdb_rows{}", "(".repeat(5_000), ")".repeat(5_000)),
            "deep",
        ),
        (
            format!(
                "{}driftdb_rows{}",
                "sum(".repeat(20_000),
                ")".repeat(20_000)
            ),
            "deep",
        ),
        (format!("{}driftdb_rows", "-".repeat(100_000)), "operators"),
        (vec!["1"; 50_000].join("+"), "operators"),
        (vec!["driftdb_rows"; 2_000].join(" > "), "operators"),
    ];
    for (q, needle) in cases {
        // With the default limits most of these are refused for their length already; with
        // the length unbounded, nesting and operators are what refuses them.
        let unbounded = Limits {
            max_query_bytes: usize::MAX,
            ..Limits::default()
        };
        for limits in [Limits::default(), unbounded] {
            let q = q.clone();
            let got = small_stack(move || parse(&q, &limits).map(|_| ()));
            let e = got.unwrap_err();
            assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
            assert_eq!(e.kind(), driftdb_engine::ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("limit is"), "{e}");
            if limits == unbounded {
                assert!(e.to_string().contains(needle), "{e}");
            }
        }
    }
}

#[test]
fn queries_at_the_limits_parse_on_a_small_stack() {
    let l = Limits::default();
    let cases = vec![
        format!(
            "{}driftdb_rows{}",
            "(".repeat(l.max_nesting),
            ")".repeat(l.max_nesting)
        ),
        format!("{}driftdb_rows", "-".repeat(l.max_operators)),
        vec!["1"; l.max_operators + 1].join("+"),
        format!("driftdb_rows{}", " * 2".repeat(l.max_operators)),
        format!("{}1", "-".repeat(l.max_operators)),
        format!(
            "{}driftdb_rows{}",
            "-(".repeat(l.max_nesting),
            ")".repeat(l.max_nesting)
        ),
        format!(
            "{}driftdb_rows{}",
            "sum(".repeat(l.max_nesting),
            ")".repeat(l.max_nesting)
        ),
        // An error path: the parser refuses after building a deep operand.
        format!("{}driftdb_rows[5m] + 1", "-".repeat(l.max_operators - 1)),
        format!(
            "{}driftdb_rows{}",
            "(".repeat(l.max_nesting),
            ")".repeat(l.max_nesting - 1)
        ),
    ];
    for (i, q) in cases.into_iter().enumerate() {
        let got = small_stack(move || parse(&q, &Limits::default()).map(|e| e.kind()));
        match got {
            Ok(_) => assert!(i < 7, "case {i} parsed"),
            Err(e) => assert!(i >= 7 && matches!(e, Error::Invalid(_)), "case {i}: {e}"),
        }
    }
}

#[test]
fn lowering_counts_depth() {
    let tight = Limits {
        max_depth: 4,
        ..Limits::default()
    };
    assert!(parse("-(-x)", &tight).is_ok());
    let e = parse("-(-(-(-x)))", &tight).unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
    assert!(e.to_string().contains("levels deep"), "{e}");
    let e = parse("max_over_time(((((x[5m])))))", &tight).unwrap_err();
    assert!(e.to_string().contains("levels deep"), "{e}");
}

#[test]
fn many_expensive_regexes_parse_in_bounded_time() {
    // Sixteen patterns just under the compiled-size limit (the most the scan lets through).
    let q = format!(
        "x{{{}}}",
        (0..16)
            .map(|i| format!("l{i}=~\"(a|bc|def){{2600}}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let t = std::time::Instant::now();
    p(&q);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    let e = err(&format!("{q} + x{{a=~\"b\"}}"));
    assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
}
