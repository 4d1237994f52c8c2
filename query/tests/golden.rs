//! Golden tests: every file in `query/tests/golden/*.driftql` names a data set, then holds
//! queries each followed by the expected output (the aligned table and warnings, or the error
//! text). `UPDATE_GOLDEN=1 cargo test --release -p driftdb-query --test golden` rewrites them.
//!
//! File format:
//! ```text
//! # comment
//! dataset shop 8 300          (data set, windows, rows per window)
//! query psi(shop.amount) over 2h step 30m
//! tolerance 0.05              (optional: numbers may differ by this relative amount)
//! ----
//! <expected output>
//! ```
//! KLL sketches compact with random bits, so numbers read from them (KS, quantiles,
//! Wasserstein) need a tolerance: `tolerance t` accepts `|got − want| ≤ t·max(|want|, 0.1)`.
//! Bin, count and performance metrics are exact.

use crate::common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

struct Case {
    query: String,
    tolerance: Option<f64>,
    expected: String,
}

struct GoldenFile {
    header: Vec<String>,
    dataset: (String, usize, usize),
    cases: Vec<Case>,
}

fn parse_file(text: &str) -> GoldenFile {
    let mut header = Vec::new();
    let mut dataset = None;
    let mut cases: Vec<Case> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(q) = line.strip_prefix("query ") {
            let mut case = Case {
                query: q.to_string(),
                tolerance: None,
                expected: String::new(),
            };
            // Continuation lines of a multi-line query start with two spaces.
            while let Some(next) = lines.peek() {
                if let Some(cont) = next.strip_prefix("  ") {
                    case.query.push('\n');
                    case.query.push_str(cont);
                    lines.next();
                } else {
                    break;
                }
            }
            if let Some(t) = lines.peek().and_then(|l| l.strip_prefix("tolerance ")) {
                case.tolerance = Some(t.trim().parse().unwrap());
                lines.next();
            }
            assert_eq!(lines.next(), Some("----"), "expected ---- after query {q}");
            let mut exp = Vec::new();
            while let Some(next) = lines.peek() {
                if next.starts_with("query ") {
                    break;
                }
                exp.push(*next);
                lines.next();
            }
            while exp.last().is_some_and(|l| l.trim().is_empty()) {
                exp.pop();
            }
            case.expected = exp.join("\n");
            cases.push(case);
        } else if cases.is_empty() {
            if let Some(d) = line.strip_prefix("dataset ") {
                let p: Vec<&str> = d.split_whitespace().collect();
                dataset = Some((
                    p[0].to_string(),
                    p[1].parse().unwrap(),
                    p[2].parse().unwrap(),
                ));
            }
            header.push(line.to_string());
        }
    }
    GoldenFile {
        header,
        dataset: dataset.expect("a dataset line"),
        cases,
    }
}

fn output(ctx: &driftdb_query::Context<'_>, q: &str) -> String {
    match driftdb_query::run(ctx, q) {
        Ok(out) => {
            let mut s = out.table.render_text();
            for w in &out.warnings {
                let _ = writeln!(s, "warning: {w}");
            }
            s.trim_end().to_string()
        }
        Err(e) => format!("error: {e}"),
    }
}

fn close(a: &str, b: &str, tol: f64) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= tol * y.abs().max(0.1),
        _ => false,
    }
}

fn matches(actual: &str, expected: &str, tol: Option<f64>) -> bool {
    if actual == expected {
        return true;
    }
    let Some(tol) = tol else { return false };
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    a.len() == e.len()
        && a.iter().zip(&e).all(|(la, le)| {
            if la.starts_with("---") && le.starts_with("---") {
                return true; // rule widths follow the numbers' widths
            }
            let (ta, te): (Vec<&str>, Vec<&str>) = (
                la.split_whitespace().collect(),
                le.split_whitespace().collect(),
            );
            ta.len() == te.len() && ta.iter().zip(&te).all(|(x, y)| close(x, y, tol))
        })
}

#[test]
fn golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "driftql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden files in {:?}", golden_dir());
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut fixtures: std::collections::BTreeMap<(String, usize, usize), common::Fixture> =
        Default::default();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = parse_file(&text);
        let fx = fixtures.entry(file.dataset.clone()).or_insert_with(|| {
            let (name, w, r) = &file.dataset;
            assert_eq!(name, "shop", "unknown dataset {name}");
            common::shop_fixture(*w, *r)
        });
        let ctx = fx.ctx();
        let mut rewritten = file.header.join("\n");
        for case in &file.cases {
            let got = output(&ctx, &case.query);
            checked += 1;
            if !matches(&got, &case.expected, case.tolerance) {
                failures.push(format!(
                    "{}: query {}\n--- expected\n{}\n--- got\n{}\n",
                    path.display(),
                    case.query,
                    case.expected,
                    got
                ));
            }
            let _ = write!(rewritten, "\nquery {}", case.query.replace('\n', "\n  "));
            if let Some(t) = case.tolerance {
                let _ = write!(rewritten, "\ntolerance {t}");
            }
            let _ = write!(rewritten, "\n----\n{got}\n");
        }
        if update {
            std::fs::write(&path, rewritten.trim_end().to_string() + "\n").unwrap();
        }
    }
    if update {
        return;
    }
    assert!(checked > 0);
    assert!(
        failures.is_empty(),
        "{} of {checked} golden queries differ (UPDATE_GOLDEN=1 rewrites):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
