//! Unit tests of `scan`.

use super::*;

fn lim() -> Limits {
    Limits::default()
}

fn too_large(text: &str) -> String {
    match check(text, &lim()) {
        Err(e @ Error::TooLarge(_)) => e.to_string(),
        other => panic!("{:.60}: {other:?}", text),
    }
}

#[test]
fn length_nesting_and_operators_are_bounded() {
    let e = too_large(&"x".repeat(70_000));
    assert!(e.contains("65536 bytes"), "{e}");
    let deep = format!("{}driftdb_rows{}", "(".repeat(65), ")".repeat(65));
    assert!(too_large(&deep).contains("more than 64 deep"));
    let ok = format!("{}driftdb_rows{}", "(".repeat(64), ")".repeat(64));
    check(&ok, &lim()).unwrap();
    let e = too_large(&format!("{}driftdb_rows", "-".repeat(257)));
    assert!(e.contains("more than 256 operators"), "{e}");
    check(&format!("{}driftdb_rows", "-".repeat(256)), &lim()).unwrap();
    let chain = vec!["1"; 258].join("+");
    assert!(too_large(&chain).contains("operators"));
    let words = vec!["x"; 258].join(" and ");
    assert!(too_large(&words).contains("operators"));
    // Comparisons count once each, `<=` included.
    let cmp = vec!["x"; 258].join(" <= ");
    assert!(too_large(&cmp).contains("operators"));
}

#[test]
fn strings_comments_matchers_and_exponents_are_not_counted() {
    let parens_in_string = format!(
        "x{{a=\"{}\", b='{}', c=`{}`}}",
        "(".repeat(500),
        "[".repeat(500),
        "{".repeat(500)
    );
    check(&parens_in_string, &lim()).unwrap();
    let escaped = format!("x{{a=\"\\\"{}\"}}", "(".repeat(500));
    check(&escaped, &lim()).unwrap();
    let comment = format!("x # {}\n+ 1", "(".repeat(500));
    check(&comment, &lim()).unwrap();
    let matchers = format!("x{{{}}}", vec!["a!=\"b\""; 400].join(","));
    check(&matchers, &lim()).unwrap();
    let exponents = vec!["1e-3"; 200].join("*");
    check(&exponents, &lim()).unwrap();
    let hex = vec!["0x1e"; 200].join("*");
    check(&hex, &lim()).unwrap();
}

#[test]
fn unbalanced_brackets_are_reported_precisely() {
    let e = check("sum(x]", &lim()).unwrap_err().to_string();
    assert!(e.contains("char 6") && e.contains("'('"), "{e}");
    let e = check("x)", &lim()).unwrap_err().to_string();
    assert!(e.contains("unexpected ')'"), "{e}");
    let e = check("driftdb_psi{model=\"(\"", &lim())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("parse error") && e.contains("unclosed '{'"),
        "{e}"
    );
    // Unterminated strings are left to the parser.
    check("x{a=\"", &lim()).unwrap_err();
}

#[test]
fn durations_the_parser_would_panic_on_are_refused() {
    for q in [
        "x[1e400]",
        "x[1e300]",
        "x[5m:1e400]",
        "max_over_time(x[1e20])",
        "x offset 1e400",
        "x offset Inf",
        "x offset -NaN",
        "x offset - inf",
        "x offset # comment\n 1e99",
    ] {
        let e = check(q, &lim()).expect_err(q);
        assert!(matches!(e, Error::Invalid(_)), "{q}: {e:?}");
        assert!(e.to_string().contains("invalid duration"), "{q}: {e}");
    }
    for q in [
        "x[300]",
        "x[1h30m]",
        "x offset 5m",
        "x offset 300",
        "x[5m:1m]",
        "1e400",
        "x + Inf",
    ] {
        check(q, &lim()).unwrap();
    }
}

#[test]
fn raw_strings_reach_the_parser_double_quoted() {
    assert_eq!(raw_strings_quoted("x{a=\"`\"}"), "x{a=\"`\"}");
    assert_eq!(
        raw_strings_quoted(r#"x{a=`\d+"`, b='`'} # `c`"#),
        r#"x{a="\\d+\"", b='`'} # `c`"#
    );
    assert_eq!(raw_strings_quoted("x{a=`a\nb`}"), "x{a=\"a\\nb\"}");
    // Unterminated: left for the parser to report.
    assert_eq!(raw_strings_quoted("x{a=`ab"), "x{a=`ab");
    // A backslash does not end or escape anything in a raw string, for the scan either.
    check(r"x{a=`\`} + (1)", &lim()).unwrap();
}

#[test]
fn regular_expressions_are_counted_and_compiled_with_the_size_limit_first() {
    let sixteen = format!(
        "x{{{}}}",
        (0..16)
            .map(|i| format!("l{i}=~\"a|b\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    check(&sixteen, &lim()).unwrap();
    let e = too_large(&format!("{} + y{{m!~\"c\"}}", sixteen));
    assert!(
        e.contains("more than 16 regular-expression matchers"),
        "{e}"
    );
    // `!=` and `=` are not regexes; a regex-looking value after `=` is not compiled.
    check(&format!("x{{{}}}", vec!["a!=\"(\""; 40].join(",")), &lim()).unwrap();
    // A pattern too large compiled is refused here, naming its label, before the parser
    // spends up to 200 ms on it.
    for q in [
        r#"x{feature=~".{65000}"}"#,
        r#"x{"feature"=~`\pL{1000}`}"#,
        r#"x{feature!~'(a|b|c|d){20000}'}"#,
    ] {
        let t = std::time::Instant::now();
        let e = check(q, &lim()).unwrap_err().to_string();
        assert!(
            e.contains("invalid regular expression") && e.contains("feature"),
            "{q}: {e}"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "{q}");
    }
    let e = check(r#"x{a=~"("}"#, &lim()).unwrap_err().to_string();
    assert!(e.contains("invalid regular expression"), "{e}");
}

/// Found by the fuzzer (`prom/fuzz`): promql-parser's `unquote_string` panics on a backslash
/// before a multi-byte character, which its lexer never lets through but the scan's regex
/// check handed it. The scan now checks escapes as the lexer does first.
#[test]
fn fuzz_regression_backslash_before_a_multibyte_character() {
    let crash: &[u8] = b"{__nameef_bt_=~\"\x0e???`?\0??0????\t? \xac\xac\xac\xac\xac\xac\xb3\xac\xac\xac5f$)T\0\0\0\0\0\0\0\\\xac\xac\xac\xffa\xac\xacsi|\0\0k\xac r/up_le^t(fea,ftdb\xdf\"}";
    let text = String::from_utf8_lossy(crash);
    assert!(check(&text, &lim()).is_ok());
    assert!(crate::promql::parse(&text, &lim()).is_err());
    for q in [
        "x{a=~\"\\é\"}",
        "x{a=~'\\é'}",
        "x{a=~\"\\xé\"}",
        "x{a=~\"\\0é\"}",
    ] {
        check(q, &lim()).unwrap();
        assert!(crate::promql::parse(q, &lim()).is_err(), "{q}");
    }
    assert!(crate::promql::parse("x{a=~\"\\\"}", &lim()).is_err());
}
