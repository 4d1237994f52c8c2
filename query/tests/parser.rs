//! DriftQL parser tests: the query/DRIFTQL.md examples (tree assertions and insta snapshots), exact
//! error messages, the canonical printer's round trip, and property tests (no input makes the
//! parser panic; generated and mutated queries print back to themselves).

use driftdb_engine::time::{DurationMs, Timestamp};
use driftdb_query::ast::{
    Baseline, Call, CmpOp, Cond, EqOp, FeatureSel, Having, HavingField, ModelRef, Pos, Query,
    RangeSpec, Spanned, Statement, Target, TimeExpr, Top,
};
use driftdb_query::parser::{MAX_QUERY_BYTES, ParseError, parse};
use proptest::prelude::*;

/// The queries query/DRIFTQL.md says must work, in its order.
const SPEC_EXAMPLES: [&str; 11] = [
    "psi(fraud.amount) over 24h step 15m",
    "ks(fraud.*) over 1h top 5",
    "psi(fraud.*, vs offset 7d) from 2026-03-01T00:00:00Z to 2026-03-02T00:00:00Z",
    "js(fraud.merchant_category, vs previous) over 6h step 1h by region",
    "auc(fraud) over 30d step 1d by region",
    "ece(ctr.$score) over 24h step 1h where device = \"ios\"",
    "quantile(0.99, ctr.$latency) over 1h step 15m",
    "missing_rate(fraud.*) over 1h having value > 0.05",
    "ndcg(10, recs) over 7d step 1d",
    "explain(fraud) over 1h",
    "uplift(auc, ctr@v8, ctr@v7) over 7d by region",
];

/// More valid queries, covering every other form of the grammar.
const MORE_VALID: [&str; 19] = [
    "EXPLAIN psi(fraud.amount) over 1h",
    "explain explain(fraud@v2)",
    "PSI(Fraud.Amount) OVER 1h STEP 15m BY Region",
    "psi(fraud.amount, vs reference)",
    "psi(fraud.amount, vs version v7) over 1d",
    "psi(fraud.amount, vs version \"1.2\")",
    "psi(fraud.amount, vs range(2026-03-01T00:00:00Z, 2026-03-02T00:00:00.250+01:00))",
    "psi(fraud.amount, vs range(now-14d, now-7d)) from now-1h to now",
    "ks(\"fraud model\"@1.2.\"txn_*\") over 250ms",
    "mean(fraud@\"2026 q1\".$label) over 2w",
    "ks(fraud.*) over 1h by region, device where region != \"eu\" and device = \"a \\\"b\\\" \\\\ c\" having p < 0.01 bottom 3",
    "wasserstein(fraud.amount) having value >= -1e-3",
    "psi(fraud.amount) having value <= 1E2 top 1",
    "ks(m.f)\n  over 1h\n  step 15m\n  top 5",
    "quantile(0, m.x)",
    "quantile(1, m.x)",
    "distinct(recs.$items) over 1d step 1h",
    "psi(recs@v2.$Items, vs previous) over 1h by region",
    "psi(fraud.*) over 1h by \"région\" where \"région\" != \"eu\"",
];

fn ok(q: &str) -> Statement {
    parse(q).unwrap_or_else(|e| panic!("{q:?} should parse, got: {e}"))
}

fn err(q: &str) -> ParseError {
    parse(q).unwrap_err()
}

fn pos(line: u32, column: u32, offset: usize) -> Pos {
    Pos {
        line,
        column,
        offset,
    }
}

fn d(s: &str) -> DurationMs {
    DurationMs::parse(s).unwrap()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn metric(stmt: &Statement) -> (&str, &Target, Option<&Baseline>) {
    match &stmt.query.call {
        Call::Metric {
            name,
            target,
            baseline,
        } => (
            name.value.as_str(),
            target,
            baseline.as_ref().map(|b| &b.value),
        ),
        other => panic!("expected a metric call, got {other:?}"),
    }
}

fn feature(t: &Target) -> Option<&FeatureSel> {
    t.feature.as_ref().map(|f| &f.value)
}

fn range(q: &Query) -> Option<RangeSpec> {
    q.range.as_ref().map(|r| r.value)
}

fn keys(q: &Query) -> Vec<&str> {
    q.by.iter().map(|k| k.value.as_str()).collect()
}

// --- the SPEC examples ---------------------------------------------------------------------

#[test]
fn spec_examples_snapshots() {
    for (i, q) in SPEC_EXAMPLES.iter().enumerate() {
        let stmt = ok(q);
        insta::with_settings!({ description => *q, omit_expression => true }, {
            insta::assert_debug_snapshot!(format!("spec_example_{:02}", i + 1), stmt);
        });
    }
}

#[test]
fn spec_example_psi_over_step() {
    let s = ok(SPEC_EXAMPLES[0]);
    assert!(!s.explain);
    let (name, target, baseline) = metric(&s);
    assert_eq!(name, "psi");
    assert_eq!(
        target.model,
        ModelRef {
            id: "fraud".into(),
            version: None,
            pos: pos(1, 5, 4)
        }
    );
    assert_eq!(
        target.feature,
        Some(Spanned {
            value: FeatureSel::Name("amount".into()),
            pos: pos(1, 11, 10)
        })
    );
    assert_eq!(baseline, None);
    assert_eq!(
        s.query.range,
        Some(Spanned {
            value: RangeSpec::Over(d("24h")),
            pos: pos(1, 19, 18)
        })
    );
    assert_eq!(
        s.query.step,
        Some(Spanned {
            value: d("15m"),
            pos: pos(1, 28, 27)
        })
    );
    assert!(s.query.by.is_empty() && s.query.filters.is_empty());
    assert_eq!((s.query.having, s.query.top), (None, None));
}

#[test]
fn spec_example_top() {
    let s = ok(SPEC_EXAMPLES[1]);
    let (name, target, _) = metric(&s);
    assert_eq!(name, "ks");
    assert_eq!(feature(target), Some(&FeatureSel::All));
    assert_eq!(range(&s.query), Some(RangeSpec::Over(d("1h"))));
    assert_eq!(
        s.query.top,
        Some(Top {
            bottom: false,
            n: 5,
            pos: pos(1, 21, 20)
        })
    );
}

#[test]
fn spec_example_offset_baseline_and_explicit_range() {
    let s = ok(SPEC_EXAMPLES[2]);
    let (_, target, baseline) = metric(&s);
    assert_eq!(feature(target), Some(&FeatureSel::All));
    assert_eq!(baseline, Some(&Baseline::Offset(d("7d"))));
    assert_eq!(
        range(&s.query),
        Some(RangeSpec::FromTo(
            TimeExpr::At(Timestamp(1_772_323_200_000)),
            TimeExpr::At(Timestamp(1_772_409_600_000)),
        ))
    );
    assert_eq!(s.query.step, None);
}

#[test]
fn spec_example_previous_baseline_by() {
    let s = ok(SPEC_EXAMPLES[3]);
    let (name, target, baseline) = metric(&s);
    assert_eq!(name, "js");
    assert_eq!(
        feature(target),
        Some(&FeatureSel::Name("merchant_category".into()))
    );
    assert_eq!(baseline, Some(&Baseline::Previous));
    assert_eq!(keys(&s.query), ["region"]);
    assert_eq!(s.query.by[0].pos, pos(1, 61, 60));
}

#[test]
fn spec_example_model_only_target() {
    let s = ok(SPEC_EXAMPLES[4]);
    let (name, target, _) = metric(&s);
    assert_eq!(name, "auc");
    assert_eq!(target.feature, None);
    assert_eq!(s.query.step.map(|s| s.value), Some(d("1d")));
}

#[test]
fn spec_example_where() {
    let s = ok(SPEC_EXAMPLES[5]);
    let (_, target, _) = metric(&s);
    assert_eq!(feature(target), Some(&FeatureSel::Score));
    assert_eq!(
        s.query.filters,
        [Cond {
            key: Spanned {
                value: "device".into(),
                pos: pos(1, 40, 39)
            },
            op: EqOp::Eq,
            value: "ios".into(),
        }]
    );
}

#[test]
fn spec_example_quantile() {
    let s = ok(SPEC_EXAMPLES[6]);
    let Call::Quantile { q, target } = &s.query.call else {
        panic!("{:?}", s.query.call)
    };
    assert_eq!(q.value, 0.99);
    assert_eq!(q.pos, pos(1, 10, 9));
    assert_eq!(target.model.id, "ctr");
    assert_eq!(feature(target), Some(&FeatureSel::Latency));
}

#[test]
fn items_selects_the_served_items_series() {
    for (q, want) in [
        (
            "distinct(recs.$items) over 1d",
            "distinct(recs.$items) over 1d",
        ),
        ("PSI(recs@v2.$ITEMS)", "psi(recs@v2.$items)"),
    ] {
        let s = ok(q);
        let (_, target, _) = metric(&s);
        assert_eq!(feature(target), Some(&FeatureSel::Items));
        assert_eq!(s.to_string(), want);
    }
    let e = err("count(recs.$item)");
    assert_eq!(
        e.to_string(),
        "line 1, column 12: expected $score, $label, $latency, $items or $cost, found \"$item\""
    );
}

#[test]
fn spec_example_having() {
    let s = ok(SPEC_EXAMPLES[7]);
    assert_eq!(metric(&s).0, "missing_rate");
    assert_eq!(
        s.query.having,
        Some(Having {
            field: HavingField::Value,
            op: CmpOp::Gt,
            threshold: 0.05,
            pos: pos(1, 31, 30)
        })
    );
}

#[test]
fn spec_example_ndcg() {
    let s = ok(SPEC_EXAMPLES[8]);
    let Call::Ndcg { k, target } = &s.query.call else {
        panic!("{:?}", s.query.call)
    };
    assert_eq!(k.value, 10);
    assert_eq!(target.model.id, "recs");
    assert_eq!(target.feature, None);
}

#[test]
fn spec_example_explain() {
    let s = ok(SPEC_EXAMPLES[9]);
    assert!(
        !s.explain,
        "explain(...) is the call, not the EXPLAIN prefix"
    );
    let Call::Explain { model } = &s.query.call else {
        panic!("{:?}", s.query.call)
    };
    assert_eq!(
        (model.id.as_str(), model.version.as_deref()),
        ("fraud", None)
    );
}

#[test]
fn spec_example_uplift() {
    let s = ok(SPEC_EXAMPLES[10]);
    let Call::Uplift {
        metric,
        challenger,
        champion,
    } = &s.query.call
    else {
        panic!("{:?}", s.query.call)
    };
    assert_eq!(metric.value, "auc");
    assert_eq!(
        (challenger.id.as_str(), challenger.version.as_deref()),
        ("ctr", Some("v8"))
    );
    assert_eq!(
        (champion.id.as_str(), champion.version.as_deref()),
        ("ctr", Some("v7"))
    );
    assert_eq!(champion.pos, pos(1, 21, 20));
    assert_eq!(keys(&s.query), ["region"]);
}

// --- other valid forms ---------------------------------------------------------------------

#[test]
fn more_valid_queries_parse() {
    for q in MORE_VALID {
        ok(q);
    }
}

#[test]
fn explain_prefix_is_case_insensitive_and_distinct_from_the_call() {
    assert!(ok("EXPLAIN psi(fraud.amount) over 1h").explain);
    assert!(ok("Explain ks(m.*)").explain);
    let s = ok("explain explain(fraud@v2)");
    assert!(s.explain);
    assert!(matches!(s.query.call, Call::Explain { .. }));
    assert!(!ok("explain (fraud)").explain);
}

#[test]
fn keywords_are_case_insensitive_names_keep_their_case() {
    let s = ok("PSI(Fraud.Amount) OVER 1h STEP 15m BY Region");
    let (name, target, _) = metric(&s);
    assert_eq!(name, "psi");
    assert_eq!(target.model.id, "Fraud");
    assert_eq!(feature(target), Some(&FeatureSel::Name("Amount".into())));
    assert_eq!(range(&s.query), Some(RangeSpec::Over(d("1h"))));
    assert_eq!(keys(&s.query), ["Region"]);
    assert_eq!(ok("ks(m.$SCORE)").query, ok("ks(m.$score)").query);
}

#[test]
fn baselines() {
    let b = |q: &str| metric(&ok(q)).2.cloned();
    assert_eq!(b("psi(m.f)"), None);
    assert_eq!(b("psi(m.f, vs reference)"), Some(Baseline::Reference));
    assert_eq!(
        b("psi(m.f, vs version v7)"),
        Some(Baseline::Version("v7".into()))
    );
    assert_eq!(
        b("psi(m.f, vs version \"1.2\")"),
        Some(Baseline::Version("1.2".into()))
    );
    assert_eq!(
        b("psi(m.f, vs range(2026-03-01T00:00:00Z, 2026-03-02T00:00:00.250+01:00))"),
        Some(Baseline::Range(
            TimeExpr::At(ts("2026-03-01T00:00:00Z")),
            TimeExpr::At(ts("2026-03-01T23:00:00.250Z")),
        ))
    );
    assert_eq!(
        b("psi(m.f, vs range(now-14d, now))"),
        Some(Baseline::Range(
            TimeExpr::Now {
                minus: Some(d("14d"))
            },
            TimeExpr::Now { minus: None },
        ))
    );
}

#[test]
fn time_expressions_and_whitespace() {
    let s = ok("psi(m.f) from now - 1h to NOW");
    assert_eq!(
        range(&s.query),
        Some(RangeSpec::FromTo(
            TimeExpr::Now {
                minus: Some(d("1h"))
            },
            TimeExpr::Now { minus: None },
        ))
    );
    assert_eq!(
        strip_query(ok("  psi ( m . f )\n\tover\r\n 24h ").query),
        strip_query(ok("psi(m.f) over 24h").query)
    );
}

#[test]
fn models_versions_and_features_as_strings() {
    let s = ok("ks(\"fraud model\"@1.2.\"txn_*\") over 250ms");
    let (_, target, _) = metric(&s);
    assert_eq!(target.model.id, "fraud model");
    assert_eq!(target.model.version.as_deref(), Some("1.2"));
    assert_eq!(feature(target), Some(&FeatureSel::Name("txn_*".into())));
    assert_eq!(range(&s.query), Some(RangeSpec::Over(d("250ms"))));

    let s = ok("mean(fraud@\"2026 q1\".$label) over 2w");
    let (_, target, _) = metric(&s);
    assert_eq!(target.model.version.as_deref(), Some("2026 q1"));
    assert_eq!(feature(target), Some(&FeatureSel::Label));
    assert_eq!(range(&s.query), Some(RangeSpec::Over(d("14d"))));
}

#[test]
fn by_where_having_bottom() {
    let s = ok(MORE_VALID[10]);
    assert_eq!(keys(&s.query), ["region", "device"]);
    let filters: Vec<_> = s
        .query
        .filters
        .iter()
        .map(|c| (c.key.value.as_str(), c.op, c.value.as_str()))
        .collect();
    assert_eq!(
        filters,
        [
            ("region", EqOp::Ne, "eu"),
            ("device", EqOp::Eq, "a \"b\" \\ c")
        ]
    );
    let h = s.query.having.unwrap();
    assert_eq!(
        (h.field, h.op, h.threshold),
        (HavingField::P, CmpOp::Lt, 0.01)
    );
    let t = s.query.top.unwrap();
    assert_eq!((t.bottom, t.n), (true, 3));

    let h = ok("wasserstein(m.f) having value >= -1e-3")
        .query
        .having
        .unwrap();
    assert_eq!((h.op, h.threshold), (CmpOp::Ge, -0.001));
    let h = ok("psi(m.f) having value <= 1E2").query.having.unwrap();
    assert_eq!((h.op, h.threshold), (CmpOp::Le, 100.0));
}

#[test]
fn multi_line_positions() {
    let s = ok("ks(m.f)\n  over 1h\n  step 15m\n  top 5");
    assert_eq!(s.query.range.unwrap().pos, pos(2, 3, 10));
    assert_eq!(s.query.step.unwrap().pos, pos(3, 3, 20));
    assert_eq!(s.query.top.unwrap().pos, pos(4, 3, 31));
}

#[test]
fn quantile_bounds_are_inclusive() {
    for (q, level) in [("quantile(0, m.x)", 0.0), ("quantile(1, m.x)", 1.0)] {
        let Call::Quantile { q, .. } = ok(q).query.call else {
            panic!()
        };
        assert_eq!(q.value, level);
    }
}

// --- errors --------------------------------------------------------------------------------

/// Bad queries and the exact message each must produce.
const ERRORS: [(&str, &str); 33] = [
    (
        "",
        "line 1, column 1: expected a metric name, found end of input",
    ),
    (
        "   \n  ",
        "line 2, column 3: expected a metric name, found end of input",
    ),
    (
        "EXPLAIN",
        "line 1, column 8: expected a metric name, found end of input",
    ),
    (
        "psi(fraud.amount over 1h",
        "line 1, column 18: expected \")\" or \",\", found \"over\"",
    ),
    (
        "psi(fraud over 1h",
        "line 1, column 11: expected \"@\", \".\", \")\" or \",\", found \"over\"",
    ),
    (
        "psi(fraud.amount",
        "line 1, column 17: expected \")\" or \",\", found end of input",
    ),
    // Clause order.
    (
        "psi(fraud.amount) step 15m over 24h",
        "line 1, column 28: expected \"by\", \"where\", \"having\", \"top\", \"bottom\" or end of query, found \"over\"",
    ),
    (
        "psi(fraud.amount) over 24h over 1h",
        "line 1, column 28: expected \"step\", \"by\", \"where\", \"having\", \"top\", \"bottom\" or end of query, found \"over\"",
    ),
    (
        "psi(fraud.amount) top 5 by region",
        "line 1, column 25: expected end of query, found \"by\"",
    ),
    // Trailing garbage.
    (
        "ks(fraud.*) over 1h top 5 garbage",
        "line 1, column 27: expected end of query, found \"garbage\"",
    ),
    // Multi-line input.
    (
        "psi(fraud.amount)\nover 24h\nstep 15x",
        "line 3, column 6: expected a duration such as 15m, 1h or 7d (units ms, s, m, h, d, w), found \"15x\"",
    ),
    (
        "psi(fraud.amount)\n  over 24h\n  by region,\n  step 1h",
        "line 4, column 8: expected \",\", \"where\", \"having\", \"top\", \"bottom\" or end of query, found \"1h\"",
    ),
    // Durations and times.
    (
        "psi(fraud.amount) over 24x",
        "line 1, column 24: expected a duration such as 15m, 1h or 7d (units ms, s, m, h, d, w), found \"24x\"",
    ),
    (
        "psi(fraud.amount) OVER 1H",
        "line 1, column 24: expected a duration with a lower-case unit (ms, s, m, h, d, w), found \"1H\"",
    ),
    (
        "psi(fraud.amount) over 0m",
        "line 1, column 24: expected a duration greater than zero, found \"0m\"",
    ),
    (
        "psi(fraud.amount) over 24",
        "line 1, column 24: expected a duration such as 15m, 1h or 7d, found \"24\"",
    ),
    (
        "psi(fraud.amount) from 2026-13-01T00:00:00Z to now",
        "line 1, column 24: expected an RFC 3339 time such as 2026-03-01T00:00:00Z, found \"2026-13-01T00:00:00Z\"",
    ),
    (
        "psi(fraud.amount) from now-1h to",
        "line 1, column 33: expected a time such as 2026-03-01T00:00:00Z, now or now-1h, found end of input",
    ),
    // Call forms.
    (
        "quantile(1.5, m.x)",
        "line 1, column 10: expected a quantile level between 0 and 1, found \"1.5\"",
    ),
    (
        "ndcg(0, recs)",
        "line 1, column 6: expected a cut-off K (an integer >= 1), found \"0\"",
    ),
    (
        "explain(fraud.amount)",
        "line 1, column 14: expected \"@\" or \")\", found \".\"",
    ),
    (
        "uplift(auc, ctr@v8)",
        "line 1, column 19: expected \",\", found \")\"",
    ),
    (
        "psi(fraud.amount, over 1h)",
        "line 1, column 19: expected \"vs\", found \"over\"",
    ),
    (
        "psi(fraud.amount, vs yesterday)",
        "line 1, column 22: expected \"reference\", \"previous\", \"offset\", \"range\" or \"version\", found \"yesterday\"",
    ),
    // Clauses.
    (
        "ks(fraud.*) top 0",
        "line 1, column 17: expected a row count (an integer >= 1), found \"0\"",
    ),
    (
        "psi(fraud.amount) having value = 3",
        "line 1, column 32: expected \">\", \"<\", \">=\" or \"<=\", found \"=\"",
    ),
    (
        "psi(fraud.amount) where a = \"x\" or b = \"y\"",
        "line 1, column 33: expected \"and\", \"having\", \"top\", \"bottom\" or end of query, found \"or\"",
    ),
    (
        "ece(ctr.$score) where device = ios",
        "line 1, column 32: expected a quoted string such as \"eu\", found \"ios\"",
    ),
    // Lexical errors.
    (
        "ks(fraud.$foo)",
        "line 1, column 10: expected $score, $label, $latency, $items or $cost, found \"$foo\"",
    ),
    (
        "ece(ctr.$score) where device = \"ios",
        "line 1, column 32: expected a closing quote (\") for the string that starts here, found end of input",
    ),
    (
        "psi(fraud.amount) where k = \"a\\q\"",
        "line 1, column 31: expected \\\" or \\\\ (the only escapes in a string), found \"\\\\q\"",
    ),
    (
        "psi(fraud.amount) # comment",
        "line 1, column 19: expected a DriftQL token, found \"#\"",
    ),
    (
        "psi(m.\"\")",
        "line 1, column 7: expected a feature name, \"*\", $score, $label, $latency, $items or $cost, found string \"\"",
    ),
];

#[test]
fn error_messages() {
    for (q, want) in ERRORS {
        assert_eq!(err(q).to_string(), want, "query {q:?}");
    }
}

#[test]
fn error_fields() {
    let e = err("psi(m.f)\n  over 1h\n  bogus");
    assert_eq!(e.pos, pos(3, 3, 21));
    assert_eq!(e.found, "\"bogus\"");
    assert!(e.expected.ends_with("or end of query"));
    let e: Box<dyn std::error::Error> = Box::new(e);
    assert!(e.to_string().starts_with("line 3, column 3: expected "));
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = err("psi(m.f, vs version \"é\") oops");
    assert_eq!(e.pos, pos(1, 26, 26));
}

#[test]
fn long_tokens_are_shortened_in_messages() {
    let name = "x".repeat(100);
    let e = err(&format!("psi(m.f) {name}"));
    assert_eq!(e.found, format!("\"{}…\"", "x".repeat(40)));
}

#[test]
fn oversized_input_is_refused() {
    let q = format!("psi(m.f){}", " ".repeat(MAX_QUERY_BYTES));
    assert_eq!(
        err(&q).to_string(),
        format!(
            "line 1, column 1: expected a query of at most 65536 bytes, found {} bytes",
            MAX_QUERY_BYTES + 8
        )
    );
    let q = format!("psi(m.f){}", " ".repeat(MAX_QUERY_BYTES - 8));
    ok(&q);
}

// --- printing ------------------------------------------------------------------------------

fn strip_pos(p: &mut Pos) {
    *p = Pos::default();
}

fn strip_model(m: &mut ModelRef) {
    strip_pos(&mut m.pos);
}

fn strip_target(t: &mut Target) {
    strip_model(&mut t.model);
    if let Some(f) = &mut t.feature {
        strip_pos(&mut f.pos);
    }
}

/// The query with every position reset, so trees parsed from different texts compare.
fn strip_query(mut q: Query) -> Query {
    match &mut q.call {
        Call::Metric {
            name,
            target,
            baseline,
        } => {
            strip_pos(&mut name.pos);
            strip_target(target);
            if let Some(b) = baseline {
                strip_pos(&mut b.pos);
            }
        }
        Call::Quantile { q, target } => {
            strip_pos(&mut q.pos);
            strip_target(target);
        }
        Call::Ndcg { k, target } => {
            strip_pos(&mut k.pos);
            strip_target(target);
        }
        Call::Explain { model } => strip_model(model),
        Call::Uplift {
            metric,
            challenger,
            champion,
        } => {
            strip_pos(&mut metric.pos);
            strip_model(challenger);
            strip_model(champion);
        }
    }
    if let Some(r) = &mut q.range {
        strip_pos(&mut r.pos);
    }
    if let Some(s) = &mut q.step {
        strip_pos(&mut s.pos);
    }
    for k in &mut q.by {
        strip_pos(&mut k.pos);
    }
    for c in &mut q.filters {
        strip_pos(&mut c.key.pos);
    }
    if let Some(h) = &mut q.having {
        strip_pos(&mut h.pos);
    }
    if let Some(t) = &mut q.top {
        strip_pos(&mut t.pos);
    }
    q
}

fn strip(s: Statement) -> Statement {
    Statement {
        explain: s.explain,
        query: strip_query(s.query),
    }
}

/// Checks that `stmt` prints as text that parses back to the same tree, and that printing is
/// a fixed point.
fn check_round_trip(stmt: &Statement) -> Result<(), TestCaseError> {
    let printed = stmt.to_string();
    let again = parse(&printed)
        .map_err(|e| TestCaseError::fail(format!("{printed:?} does not parse back: {e}")))?;
    prop_assert_eq!(
        strip(again.clone()),
        strip(stmt.clone()),
        "printed as {:?}",
        printed
    );
    prop_assert_eq!(again.to_string(), printed);
    Ok(())
}

#[test]
fn canonical_printing() {
    let cases = [
        (
            "  PSI ( fraud . amount , VS Offset 168h )\nFROM 2026-03-01T01:00:00+01:00 TO now - 90m",
            "psi(fraud.amount, vs offset 7d) from 2026-03-01T00:00:00.000Z to now-90m",
        ),
        (
            "explain ks(\"my model\"@1.2.\"a\\\"b\") by r, s where r != \"x\" having p <= -0.5 bottom 2",
            "EXPLAIN ks(\"my model\"@\"1.2\".\"a\\\"b\") by r, s where r != \"x\" having p <= -0.5 bottom 2",
        ),
        (
            "quantile(0.50, m.$latency) over 250ms step 1w",
            "quantile(0.5, m.$latency) over 250ms step 7d",
        ),
    ];
    for (q, want) in cases {
        assert_eq!(ok(q).to_string(), want);
    }
}

#[test]
fn spec_and_other_queries_round_trip() {
    for q in SPEC_EXAMPLES.iter().chain(MORE_VALID.iter()) {
        let first = ok(q);
        check_round_trip(&first).unwrap();
    }
}

// --- properties ----------------------------------------------------------------------------

/// Fragments inserted by the mutation strategy: tokens of the language, near misses and
/// characters the lexer treats specially.
const FRAGMENTS: [&str; 35] = [
    "(",
    ")",
    ",",
    ".",
    "@",
    "*",
    "=",
    "!",
    "!=",
    ">",
    "<=",
    "-",
    "\"",
    "\\",
    "$",
    "$score",
    "$items",
    " ",
    "\n",
    "é",
    "0",
    "1.5",
    "1e-3",
    "1e",
    "15m",
    "0m",
    "2026-03-01T00:00:00Z",
    "2026-",
    "now",
    "vs",
    "over",
    "by",
    "top",
    "explain",
    "EXPLAIN",
];

/// Applies edits (delete a character, insert a fragment, truncate, duplicate a span) to `q`.
fn mutate(q: &str, edits: &[(prop::sample::Index, u8, prop::sample::Index)]) -> String {
    let mut chars: Vec<char> = q.chars().collect();
    for (at, op, arg) in edits {
        let i = at.index(chars.len() + 1);
        match op % 4 {
            0 if i < chars.len() => {
                chars.remove(i);
            }
            1 => {
                let frag = FRAGMENTS[arg.index(FRAGMENTS.len())];
                chars.splice(i..i, frag.chars());
            }
            2 => chars.truncate(i),
            _ => {
                let j = arg.index(chars.len() + 1);
                let (a, b) = (i.min(j), i.max(j));
                let span: Vec<char> = chars[a..b].to_vec();
                chars.splice(b..b, span);
            }
        }
    }
    chars.into_iter().collect()
}

/// Alternates letter case, so generated keywords test case-insensitivity.
fn with_case(word: &str, upper: bool) -> String {
    if upper {
        word.to_ascii_uppercase()
    } else {
        word.to_owned()
    }
}

/// A valid query assembled from the grammar's parts (and what its `by` list must be).
fn valid_query() -> impl Strategy<Value = (String, Vec<String>)> {
    let name = "[a-z_][a-zA-Z0-9_]{0,6}";
    let model = prop_oneof![
        name.prop_map(|s| s.to_string()),
        "[ -~é]{1,8}".prop_map(|s| format!("{s:?}")),
    ];
    let version = prop::option::of(prop_oneof![
        name.prop_map(|s| s.to_string()),
        "[0-9]{1,3}(\\.[0-9]{1,2})?".prop_map(|s| s.to_string()),
        "[ -~]{1,5}".prop_map(|s| format!("{s:?}")),
    ]);
    let feature = prop::option::of(prop_oneof![
        name.prop_map(|s| s.to_string()),
        Just("*".to_string()),
        Just("$score".to_string()),
        Just("$Label".to_string()),
        Just("$latency".to_string()),
        Just("$items".to_string()),
        "[a-z*]{1,6}".prop_map(|s| format!("{s:?}")),
    ]);
    let duration = (
        1u32..10_000,
        prop::sample::select(vec!["ms", "s", "m", "h", "d", "w"]),
    )
        .prop_map(|(n, u)| format!("{n}{u}"));
    let time = prop_oneof![
        Just("now".to_string()),
        duration.clone().prop_map(|d| format!("now-{d}")),
        (0i64..4_000_000_000_000, any::<bool>()).prop_map(|(ms, offset)| {
            let t = Timestamp(ms).to_rfc3339();
            if offset { t.replace('Z', "+02:30") } else { t }
        }),
    ];
    let baseline = prop::option::of(prop_oneof![
        Just("reference".to_string()),
        Just("previous".to_string()),
        duration.clone().prop_map(|d| format!("offset {d}")),
        (time.clone(), time.clone()).prop_map(|(a, b)| format!("range({a}, {b})")),
        name.prop_map(|v| format!("version {v}")),
    ]);
    let range = prop::option::of(prop_oneof![
        duration.clone().prop_map(|d| format!("over {d}")),
        (time.clone(), time).prop_map(|(a, b)| format!("from {a} to {b}")),
    ]);
    let step = prop::option::of(duration.prop_map(|d| format!("step {d}")));
    let by = prop::collection::vec(name.prop_map(|s| s.to_string()), 0..4);
    let filters = prop::collection::vec(
        (name, any::<bool>(), "[ -~é]{0,6}")
            .prop_map(|(k, ne, v)| format!("{k} {} {v:?}", if ne { "!=" } else { "=" })),
        0..3,
    );
    let having = prop::option::of(
        (
            prop::sample::select(vec!["value", "p"]),
            prop::sample::select(vec![">", "<", ">=", "<="]),
            -1e6f64..1e6,
        )
            .prop_map(|(f, op, x)| format!("having {f} {op} {x}")),
    );
    let top = prop::option::of(
        (any::<bool>(), 1u64..1000)
            .prop_map(|(bottom, n)| format!("{} {n}", if bottom { "bottom" } else { "top" })),
    );
    let head = (
        any::<bool>(),
        prop::sample::select(vec!["psi", "ks", "auc", "missing_rate"]),
        model,
        version,
        feature,
        baseline,
    );
    let tail = (range, step, by, filters, having, top, any::<bool>());
    (head, tail).prop_map(
        |(
            (explain, metric, model, version, feature, baseline),
            (range, step, by, filters, having, top, upper),
        )| {
            let mut q = String::new();
            if explain {
                q.push_str(&with_case("explain ", upper));
            }
            q.push_str(&with_case(metric, upper));
            q.push('(');
            q.push_str(&model);
            if let Some(v) = version {
                q.push('@');
                q.push_str(&v);
            }
            if let Some(f) = feature {
                q.push('.');
                q.push_str(&f);
            }
            if let Some(b) = baseline {
                q.push_str(", ");
                q.push_str(&with_case("vs ", upper));
                q.push_str(&b);
            }
            q.push(')');
            for clause in [range, step].into_iter().flatten() {
                q.push(' ');
                q.push_str(&clause);
            }
            if !by.is_empty() {
                q.push_str(" by ");
                q.push_str(&by.join(", "));
            }
            if !filters.is_empty() {
                q.push_str(" where ");
                q.push_str(&filters.join(" and "));
            }
            for clause in [having, top].into_iter().flatten() {
                q.push_str("\n ");
                q.push_str(&clause);
            }
            (q, by)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn token_soup_never_panics(frags in prop::collection::vec(prop::sample::select(FRAGMENTS.to_vec()), 0..40)) {
        let q = frags.concat();
        if let Ok(stmt) = parse(&q) {
            check_round_trip(&stmt)?;
        }
    }

    #[test]
    fn mutated_examples_never_panic_and_round_trip(
        example in prop::sample::select(SPEC_EXAMPLES.iter().chain(MORE_VALID.iter()).copied().collect::<Vec<_>>()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<prop::sample::Index>()), 1..6),
    ) {
        let q = mutate(example, &edits);
        match parse(&q) {
            Ok(stmt) => check_round_trip(&stmt)?,
            Err(e) => {
                // Errors point inside the text (or just past its end).
                prop_assert!(e.pos.offset <= q.len());
                prop_assert!(q.is_char_boundary(e.pos.offset));
                prop_assert!(e.pos.line >= 1 && e.pos.column >= 1);
                prop_assert!(!e.expected.is_empty() && !e.found.is_empty());
            }
        }
    }

    #[test]
    fn generated_queries_parse_and_round_trip((q, by) in valid_query()) {
        let stmt = parse(&q).map_err(|e| TestCaseError::fail(format!("{q:?}: {e}")))?;
        let keys: Vec<String> = stmt.query.by.iter().map(|k| k.value.clone()).collect();
        prop_assert_eq!(keys, by);
        check_round_trip(&stmt)?;
    }
}
