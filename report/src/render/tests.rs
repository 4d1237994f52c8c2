//! The renderer's tests: snapshots of a full and a minimal page, and checks that fail on
//! their own — no scripts or URLs, cells and bars carrying the fixture's values, escaping,
//! the size bound, determinism, and the text helpers.

use super::format::{civil_from_days, count, duration, num, pct, short, utc};
use super::html;
use crate::data::{
    Calibration, CalibrationPoint, CategoryMass, Distribution, FeatureDrift, Heatmap, NamedValue,
    Performance, Report, SCHEMA, Shape, Table, Verdict,
};
use serde_json::json;

/// 2026-03-01T00:00Z.
const T0: i64 = 1_772_323_200_000;
const HOUR: i64 = 3_600_000;

fn drift(feature: &str, kind: &str, psi: f64, p_adj: f64, drifted: bool) -> FeatureDrift {
    FeatureDrift {
        feature: feature.to_owned(),
        kind: kind.to_owned(),
        psi: Some(psi),
        statistic: Some(psi * 1000.0),
        p_adj: Some(p_adj),
        missing_change: Some(if drifted { 0.0125 } else { -0.001 }),
        n: 12_000,
        baseline_n: 50_000,
        drifted,
    }
}

fn numeric(feature: &str, edges: Vec<f64>, reference: Vec<f64>, current: Vec<f64>) -> Distribution {
    let cdf = |masses: &[f64]| -> Vec<(f64, f64)> {
        let mut total = 0.0;
        edges
            .iter()
            .zip(masses)
            .map(|(&x, &m)| {
                total += m;
                (x, total)
            })
            .collect()
    };
    Distribution {
        feature: feature.to_owned(),
        shape: Shape::Numeric {
            reference_cdf: cdf(&reference),
            current_cdf: cdf(&current),
            edges,
            reference,
            current,
            n: 12_000,
            baseline_n: 50_000,
        },
    }
}

const AMOUNT_REF: [f64; 5] = [0.2, 0.2, 0.2, 0.2, 0.2];
const AMOUNT_CUR: [f64; 5] = [0.05, 0.1, 0.15, 0.3, 0.4];

/// Two numeric features, one categorical, `$score`, a 3 × 4 heatmap, performance,
/// calibration, explain rows, segments and warnings.
fn full() -> Report {
    Report {
        schema: SCHEMA.to_owned(),
        model: "fraud".to_owned(),
        version: "v3".to_owned(),
        task: "binary".to_owned(),
        from_ms: T0,
        to_ms: T0 + 4 * HOUR,
        step_ms: HOUR,
        by: Some("region".to_owned()),
        source: "files: ref.parquet, cur.parquet".to_owned(),
        generated_at_ms: T0 + 4 * HOUR + 5 * 60_000,
        verdict: Verdict {
            features: 3,
            drifted: 2,
            test: "chi-square over the reference's 10 quantile bins or categories, \
                   Benjamini-Hochberg adjusted"
                .to_owned(),
            alpha: 0.05,
            min_effect: 0.1,
            drift: true,
        },
        features: vec![
            drift("amount", "numeric", 0.4123456, 1.5e-9, true),
            drift("merchant", "categorical", 0.1834, 0.0021, true),
            drift("age", "numeric", 0.0123, 0.64, false),
        ],
        prediction_shift: vec![
            NamedValue {
                name: "psi".to_owned(),
                value: Some(0.0912),
            },
            NamedValue {
                name: "ks".to_owned(),
                value: Some(0.0734),
            },
            NamedValue {
                name: "mean_shift".to_owned(),
                value: Some(0.021),
            },
            NamedValue {
                name: "mean".to_owned(),
                value: None,
            },
        ],
        distributions: vec![
            numeric(
                "amount",
                vec![10.0, 25.5, 120.0, 1_500.0],
                AMOUNT_REF.to_vec(),
                AMOUNT_CUR.to_vec(),
            ),
            Distribution {
                feature: "merchant".to_owned(),
                shape: Shape::Categorical {
                    categories: vec![
                        CategoryMass {
                            name: "grocery".to_owned(),
                            reference: 0.4,
                            current: 0.25,
                        },
                        CategoryMass {
                            name: "travel".to_owned(),
                            reference: 0.2,
                            current: 0.35,
                        },
                        CategoryMass {
                            name: "fuel".to_owned(),
                            reference: 0.3,
                            current: 0.2,
                        },
                    ],
                    other_reference: 0.1,
                    other_current: 0.12,
                    unseen_current: 0.08,
                    n: 12_000,
                    baseline_n: 50_000,
                },
            },
            numeric(
                "age",
                vec![25.0, 35.0, 50.0],
                vec![0.25, 0.25, 0.25, 0.25],
                vec![0.24, 0.26, 0.25, 0.25],
            ),
            numeric(
                "$score",
                vec![0.1, 0.3, 0.6],
                vec![0.4, 0.3, 0.2, 0.1],
                vec![0.35, 0.3, 0.22, 0.13],
            ),
        ],
        heatmap: Some(Heatmap {
            metric: "psi".to_owned(),
            windows: (0..4).map(|k| T0 + k * HOUR).collect(),
            features: vec!["amount".to_owned(), "merchant".to_owned(), "age".to_owned()],
            values: vec![
                vec![Some(0.31), Some(0.38), Some(0.45), Some(0.52)],
                vec![Some(0.04), Some(0.11), None, Some(0.2)],
                vec![Some(0.0), Some(0.01), Some(0.012345678901234), Some(0.009)],
            ],
        }),
        performance: Some(Performance {
            summary: Table {
                columns: ["metric", "value", "reference", "change", "labelled"]
                    .map(str::to_owned)
                    .to_vec(),
                rows: vec![vec![
                    json!("auc"),
                    json!(0.8123),
                    json!(0.8612),
                    json!(-0.0489),
                    json!(1200),
                ]],
            },
            metric: "auc".to_owned(),
            windows: (0..4).map(|k| T0 + k * HOUR).collect(),
            values: vec![Some(0.84), Some(0.82), None, Some(0.79)],
            reference: Some(0.8612),
            estimated: Vec::new(),
        }),
        calibration: Some(Calibration {
            bins: vec![
                CalibrationPoint {
                    lower: 0.0,
                    predicted: 0.04,
                    observed: 0.02,
                    n: 800,
                },
                CalibrationPoint {
                    lower: 0.2,
                    predicted: 0.27,
                    observed: 0.22,
                    n: 200,
                },
                CalibrationPoint {
                    lower: 0.5,
                    predicted: 0.55,
                    observed: 0.61,
                    n: 120,
                },
                CalibrationPoint {
                    lower: 0.9,
                    predicted: 0.93,
                    observed: 0.85,
                    n: 80,
                },
            ],
            ece: Some(0.0342),
        }),
        explain: Table {
            columns: ["rank", "kind", "target", "window", "score", "detail"]
                .map(str::to_owned)
                .to_vec(),
            rows: vec![
                vec![
                    json!(1),
                    json!("drift"),
                    json!("amount"),
                    json!("2026-03-01T02:00Z"),
                    json!(0.4123456),
                    json!("psi 0.41"),
                ],
                vec![
                    json!(2),
                    json!("missing"),
                    json!("merchant"),
                    json!(null),
                    json!(0.0125),
                    json!(true),
                ],
            ],
        },
        segments: Some(Table {
            columns: ["region", "amount", "merchant", "age"]
                .map(str::to_owned)
                .to_vec(),
            rows: vec![
                vec![json!("eu"), json!(0.52), json!(0.2), json!(0.01)],
                vec![json!("us"), json!(0.08), json!(null), json!(0.02)],
            ],
        }),
        warnings: vec![
            "no labels joined for 2026-03-01T02:00Z".to_owned(),
            "series <b>legacy</b> & 'old' skipped".to_owned(),
        ],
    }
}

/// One numeric feature, no drift, and nothing optional.
fn minimal() -> Report {
    Report {
        schema: SCHEMA.to_owned(),
        model: "m".to_owned(),
        version: "1".to_owned(),
        task: "regression".to_owned(),
        from_ms: T0,
        to_ms: T0 + 24 * HOUR,
        step_ms: 24 * HOUR,
        by: None,
        source: "127.0.0.1:7070".to_owned(),
        generated_at_ms: T0 + 25 * HOUR,
        verdict: Verdict {
            features: 1,
            drifted: 0,
            test: "chi-square".to_owned(),
            alpha: 0.05,
            min_effect: 0.1,
            drift: false,
        },
        features: vec![drift("x", "numeric", 0.002, 0.9, false)],
        prediction_shift: Vec::new(),
        distributions: vec![numeric("x", vec![0.0], vec![0.5, 0.5], vec![0.49, 0.51])],
        heatmap: None,
        performance: None,
        calibration: None,
        explain: Table {
            columns: vec!["rank".to_owned()],
            rows: Vec::new(),
        },
        segments: None,
        warnings: Vec::new(),
    }
}

/// `name="…"` attribute values in `html`, in order.
fn attr_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// The opening tags in `html` that contain every one of `parts`.
fn tags_with<'a>(html: &'a str, parts: &[&str]) -> Vec<&'a str> {
    html.split('<')
        .filter(|tag| parts.iter().all(|p| tag.contains(p)))
        .collect()
}

fn assert_self_contained(page: &str) {
    let lower = page.to_lowercase();
    for banned in [
        "<script", "http://", "https://", "//cdn", "@import", "url(", "src=", "<link",
    ] {
        assert!(!lower.contains(banned), "page contains {banned:?}");
    }
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.ends_with("</html>\n"));
}

#[test]
fn snapshot_full() {
    insta::assert_snapshot!("full", html(&full()));
}

#[test]
fn snapshot_minimal() {
    insta::assert_snapshot!("minimal", html(&minimal()));
}

#[test]
fn pages_are_self_contained() {
    for report in [full(), minimal(), hostile(), huge()] {
        assert_self_contained(&html(&report));
    }
}

#[test]
fn sections_come_in_order() {
    let page = html(&full());
    let ids = [
        "id=\"verdict\"",
        "id=\"drift-table\"",
        "id=\"prediction-shift\"",
        "id=\"heatmap\"",
        "id=\"f-0\"",
        "id=\"f-3\"",
        "id=\"performance\"",
        "id=\"calibration\"",
        "id=\"explain\"",
        "id=\"segments\"",
        "id=\"warnings\"",
        "<footer>",
    ];
    let positions: Vec<usize> = ids
        .iter()
        .map(|id| page.find(id).unwrap_or_else(|| panic!("{id} missing")))
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
    let minimal = html(&minimal());
    for absent in [
        "id=\"heatmap\"",
        "id=\"performance\"",
        "id=\"calibration\"",
        "id=\"segments\"",
        "id=\"warnings\"",
    ] {
        assert!(!minimal.contains(absent), "{absent} in the minimal page");
    }
    assert!(minimal.contains("Nothing found"));
    assert!(minimal.contains("id=\"explain\""));
}

#[test]
fn verdict_banner_carries_the_counts() {
    let page = html(&full());
    let banner = tags_with(&page, &["id=\"verdict\""]);
    assert_eq!(banner.len(), 1);
    assert!(banner[0].contains("class=\"banner drift\""));
    assert!(banner[0].contains("data-drift=\"true\""));
    assert!(banner[0].contains("data-drifted=\"2\""));
    assert!(banner[0].contains("data-features=\"3\""));
    assert!(page.contains("2 of 3 features drifted"));
    assert!(page.contains("driftdb report — fraud@v3"));
    assert!(page.contains("2026-03-01T00:00Z → 2026-03-01T04:00Z"));

    let calm = html(&minimal());
    let banner = tags_with(&calm, &["id=\"verdict\""]);
    assert!(banner[0].contains("class=\"banner ok\""));
    assert!(banner[0].contains("data-drift=\"false\""));
    assert!(calm.contains("0 of 1 features drifted"));
}

#[test]
fn drift_table_keeps_order_and_links_panels() {
    let page = html(&full());
    let table = &page[page.find("id=\"drift-table\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(
        attr_values(table, "data-feature"),
        ["amount", "merchant", "age"]
    );
    assert_eq!(tags_with(table, &["class=\"drifted\""]).len(), 2);
    // Links go by index in `distributions`, not by name.
    assert_eq!(attr_values(table, "href"), ["#f-0", "#f-1", "#f-2"]);
    for (i, feature) in ["amount", "merchant", "age", "$score"].iter().enumerate() {
        let id = format!("id=\"f-{i}\"");
        let tag = tags_with(&page, &["section class=\"feature\"", &id]);
        assert_eq!(tag.len(), 1, "{id}");
        assert!(tag[0].contains(&format!("data-feature=\"{feature}\"")));
    }
}

#[test]
fn heatmap_cells_carry_the_fixture_values() {
    let report = full();
    let page = html(&report);
    let hm = report.heatmap.as_ref().unwrap();
    let cells = tags_with(&page, &["class=\"cell\""]);
    assert_eq!(cells.len(), hm.features.len() * hm.windows.len());
    assert_eq!(page.matches("class=\"cell\"").count(), 12);
    for (i, feature) in hm.features.iter().enumerate() {
        for (j, window) in hm.windows.iter().enumerate() {
            let wanted = hm.values[i][j].map(|v| v.to_string()).unwrap_or_default();
            let f = format!("data-feature=\"{feature}\"");
            let w = format!("data-window=\"{window}\"");
            let cell = tags_with(&page, &["class=\"cell\"", &f, &w]);
            assert_eq!(cell.len(), 1, "{feature} {window}");
            assert_eq!(attr_values(cell[0], "data-value"), [wanted.as_str()]);
        }
    }
    // Full precision, not the 4 digits shown elsewhere.
    assert!(page.contains("data-value=\"0.012345678901234\""));
    // The empty cell is grey and says so.
    let none = tags_with(&page, &["class=\"cell\"", "data-value=\"\""]);
    assert_eq!(none.len(), 1);
    assert!(none[0].contains("fill=\"#cfd4da\""));
    assert!(page.contains("<title>merchant · 2026-03-01T02:00Z · no data</title>"));
    // Row labels link to panels.
    let hm_part =
        &page[page.find("id=\"heatmap\"").unwrap()..page.find("id=\"distributions\"").unwrap()];
    assert_eq!(attr_values(hm_part, "href"), ["#f-0", "#f-1", "#f-2"]);
}

#[test]
fn bars_carry_the_fixture_masses() {
    let report = full();
    let page = html(&report);
    let panel = &page[page.find("id=\"f-0\"").unwrap()..page.find("id=\"f-1\"").unwrap()];
    for (class, masses) in [("bar ref", AMOUNT_REF), ("bar cur", AMOUNT_CUR)] {
        let class = format!("class=\"{class}\"");
        let bars = tags_with(panel, &[&class]);
        assert_eq!(bars.len(), masses.len());
        for (j, (bar, mass)) in bars.iter().zip(masses).enumerate() {
            assert_eq!(attr_values(bar, "data-bin"), [j.to_string()]);
            let shown: Vec<f64> = attr_values(bar, "data-mass")
                .iter()
                .map(|v| v.parse().unwrap())
                .collect();
            assert_eq!(shown, [mass]);
        }
    }
    // Categorical: each category, then __other__ and the unseen mass.
    let panel = &page[page.find("id=\"f-1\"").unwrap()..page.find("id=\"f-2\"").unwrap()];
    let masses: Vec<&str> = attr_values(panel, "data-mass");
    assert_eq!(
        masses,
        [
            "0.4", "0.25", "0.2", "0.35", "0.3", "0.2", "0.1", "0.12", "0.08"
        ]
    );
    assert_eq!(
        attr_values(panel, "data-category"),
        [
            "grocery",
            "grocery",
            "travel",
            "travel",
            "fuel",
            "fuel",
            "__other__",
            "__other__",
            "__unseen__"
        ]
    );
}

#[test]
fn score_panel_shows_the_prediction_shift() {
    let page = html(&full());
    let panel = &page[page.find("id=\"f-3\"").unwrap()..];
    let panel = &panel[..panel.find("</section>").unwrap()];
    assert!(panel.contains("psi 0.0912 · ks 0.0734 · mean_shift 0.021 · mean —"));
    assert!(!panel.contains("tag drifted"));
}

#[test]
fn estimated_auc_is_drawn_beside_the_realised_values() {
    let mut report = full();
    let perf = report.performance.as_mut().unwrap();
    perf.estimated = vec![Some(0.85), Some(0.83), Some(0.8), None];
    let page = html(&report);
    let part =
        &page[page.find("id=\"performance\"").unwrap()..page.find("id=\"calibration\"").unwrap()];
    assert!(part.contains("class=\"key est\""));
    let est = tags_with(part, &["class=\"pt est\""]);
    assert_eq!(est.len(), 3, "{est:?}");
    assert_eq!(tags_with(part, &["class=\"pt cur\""]).len(), 3);
    assert_eq!(tags_with(part, &["class=\"line est\""]).len(), 1);
    assert!(part.contains("estimated_auc 0.8"), "{part}");
    // Without estimates nothing of them is drawn.
    let page = html(&full());
    assert!(!page.contains("pt est") && !page.contains("key est"));
    // As data, the estimates travel with the report and are left out when empty.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["performance"]["estimated"][3], serde_json::Value::Null);
    assert_eq!(json["performance"]["estimated"][0], 0.85);
    assert!(
        serde_json::to_value(full()).unwrap()["performance"]
            .get("estimated")
            .is_none()
    );
}

#[test]
fn performance_and_calibration_points() {
    let report = full();
    let page = html(&report);
    let perf = report.performance.as_ref().unwrap();
    let part =
        &page[page.find("id=\"performance\"").unwrap()..page.find("id=\"calibration\"").unwrap()];
    let windows = attr_values(part, "data-window");
    let values = attr_values(part, "data-value");
    let wanted: Vec<(String, String)> = perf
        .windows
        .iter()
        .zip(&perf.values)
        .filter_map(|(w, v)| v.map(|v| (w.to_string(), v.to_string())))
        .collect();
    let shown: Vec<(String, String)> = windows
        .iter()
        .zip(&values)
        .map(|(w, v)| (w.to_string(), v.to_string()))
        .collect();
    assert_eq!(shown, wanted);
    assert_eq!(tags_with(part, &["class=\"refline\""]).len(), 1);
    let part =
        &page[page.find("id=\"calibration\"").unwrap()..page.find("id=\"explain\"").unwrap()];
    assert_eq!(attr_values(part, "data-n"), ["800", "200", "120", "80"]);
    assert!(part.contains("ECE 0.0342"));
    assert_eq!(tags_with(part, &["class=\"diag\""]).len(), 1);
}

#[test]
fn tables_format_cells() {
    let page = html(&full());
    let part = &page[page.find("id=\"explain\"").unwrap()..page.find("id=\"segments\"").unwrap()];
    assert!(part.contains("<td class=\"n\">0.4123</td>"));
    assert!(part.contains("<td>2026-03-01T02:00Z</td>"));
    assert!(part.contains("<td class=\"n\">—</td>"));
    assert!(part.contains("<td>true</td>"));
    assert!(part.contains("<td class=\"n\">1</td>"));
}

/// A report whose every string tries to break out of its element or attribute.
fn hostile() -> Report {
    let evil = "<script>alert(1)</script>";
    let mut report = full();
    report.model = format!("{evil}\"'&");
    report.version = "\"><img onerror=x>".to_owned();
    report.source = evil.to_owned();
    report.features[0].feature = evil.to_owned();
    report.features[1].kind = evil.to_owned();
    report.distributions[0].feature = evil.to_owned();
    if let Shape::Categorical { categories, .. } = &mut report.distributions[1].shape {
        categories[0].name = format!("{evil}' onmouseover='x");
    }
    if let Some(hm) = &mut report.heatmap {
        hm.features[0] = evil.to_owned();
        hm.metric = evil.to_owned();
    }
    report.explain.rows[0][1] = json!(evil);
    report.explain.columns[0] = evil.to_owned();
    report.warnings.push(evil.to_owned());
    report.verdict.test = evil.to_owned();
    report.prediction_shift[0].name = evil.to_owned();
    report.by = Some(evil.to_owned());
    report
}

#[test]
fn every_string_is_escaped() {
    let page = html(&hostile());
    assert!(!page.contains("<script"));
    assert!(!page.contains("<img"));
    assert!(!page.contains("' onmouseover"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("data-feature=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
    assert!(page.contains("&quot;&gt;&lt;img onerror=x&gt;"));
    // The drift table still links the renamed feature to its panel.
    assert!(page.contains("<a href=\"#f-0\">&lt;script&gt;alert(1)&lt;/script&gt;</a>"));
}

/// 2,000 features with a 300-window heatmap and 2,000 distributions of 11 bins, plus long
/// tables and many warnings.
fn huge() -> Report {
    let features = 2_000;
    let windows = 300;
    let names: Vec<String> = (0..features).map(|i| format!("feature_{i:05}")).collect();
    let mut report = full();
    report.features = names
        .iter()
        .enumerate()
        .map(|(i, n)| drift(n, "numeric", 1.0 / (i + 1) as f64, 0.01, i % 3 == 0))
        .collect();
    report.verdict.features = features;
    report.distributions = names
        .iter()
        .map(|n| {
            let edges: Vec<f64> = (1..=10).map(|k| f64::from(k) * 12.345).collect();
            let mut d = numeric(n, edges, vec![1.0 / 11.0; 11], vec![0.0909; 11]);
            if let Shape::Numeric {
                reference_cdf,
                current_cdf,
                ..
            } = &mut d.shape
            {
                *reference_cdf = (0..500)
                    .map(|k| (f64::from(k), f64::from(k) / 500.0))
                    .collect();
                *current_cdf = reference_cdf.clone();
            }
            d
        })
        .chain(full().distributions.pop())
        .collect();
    report.heatmap = Some(Heatmap {
        metric: "psi".to_owned(),
        windows: (0..windows).map(|k| T0 + k * HOUR).collect(),
        features: names.clone(),
        values: (0..features)
            .map(|i| {
                (0..windows)
                    .map(|j| Some(i as f64 * j as f64 / 1e5 + 1e-9))
                    .collect()
            })
            .collect(),
    });
    if let Some(perf) = &mut report.performance {
        perf.windows = (0..5_000).map(|k| T0 + k * HOUR).collect();
        perf.values = (0..5_000)
            .map(|k| Some(0.8 + f64::from(k % 7) / 100.0))
            .collect();
    }
    let row = |i: usize| {
        vec![
            json!(i),
            json!("drift"),
            json!(format!("feature_{i:05}")),
            json!(null),
            json!(0.5),
            json!("a detail line of some length"),
        ]
    };
    report.explain.rows = (0..5_000).map(row).collect();
    report.segments = Some(Table {
        columns: report.explain.columns.clone(),
        rows: (0..5_000).map(row).collect(),
    });
    report.warnings = (0..5_000)
        .map(|i| format!("warning number {i} about something"))
        .collect();
    report
}

#[test]
fn huge_report_stays_under_a_megabyte() {
    let report = huge();
    let page = html(&report);
    assert!(page.len() < 1_000_000, "{} bytes", page.len());
    let panels = page.matches("<section class=\"feature\"").count();
    assert!((1..=60).contains(&panels), "{panels} panels");
    assert!(
        page.contains("id=\"f-2000\""),
        "the $score panel is always drawn"
    );
    let cells = page.matches("class=\"cell\"").count();
    assert!(cells >= 500, "{cells} cells");
    assert!(page.contains("Showing the first"));
    assert!(page.contains("distributions (the smallest effects) not shown"));
    assert!(page.contains("features with the smallest effects not shown"));
    assert!(page.contains("earlier windows not shown"));
    assert!(page.contains("warnings not shown"));
    assert!(page.contains("rows not shown"));
}

#[test]
fn the_same_report_gives_the_same_bytes() {
    for report in [full(), minimal(), huge()] {
        let once = html(&report);
        assert_eq!(once, html(&report.clone()));
    }
}

#[test]
fn panels_are_capped_and_keep_the_score() {
    let mut report = full();
    let extra =
        (0..100).map(|i| numeric(&format!("x{i}"), vec![1.0], vec![0.5, 0.5], vec![0.5, 0.5]));
    let score = report.distributions.pop().unwrap();
    report.distributions.extend(extra);
    report.distributions.push(score);
    let page = html(&report);
    assert_eq!(page.matches("<section class=\"feature\"").count(), 60);
    assert!(page.contains("id=\"f-103\" data-feature=\"$score\""));
    assert!(page.contains("id=\"f-58\""));
    assert!(!page.contains("id=\"f-59\""));
    assert!(page.contains("44 more distributions (the smallest effects) not shown"));
}

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(civil_from_days(11_017), (2000, 3, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    assert_eq!(civil_from_days(-25_508), (1900, 3, 1));
    assert_eq!(civil_from_days(-25_509), (1900, 2, 28));
}

#[test]
fn utc_times() {
    assert_eq!(utc(0), "1970-01-01T00:00Z");
    assert_eq!(utc(T0), "2026-03-01T00:00Z");
    assert_eq!(
        utc(1_709_164_800_000 + 13 * HOUR + 7 * 60_000),
        "2024-02-29T13:07Z"
    );
    assert_eq!(utc(T0 + 30_250), "2026-03-01T00:00:30.250Z");
    assert_eq!(utc(T0 + 5_000), "2026-03-01T00:00:05Z");
    assert_eq!(utc(-60_000), "1969-12-31T23:59Z");
}

#[test]
fn durations() {
    assert_eq!(duration(HOUR), "1h");
    assert_eq!(duration(24 * HOUR), "1d");
    assert_eq!(duration(15 * 60_000), "15m");
    assert_eq!(duration(90 * 60_000), "90m");
    assert_eq!(duration(250), "250ms");
    assert_eq!(duration(0), "—");
}

#[test]
fn numbers() {
    assert_eq!(num(0.0), "0");
    assert_eq!(num(-0.0), "0");
    assert_eq!(num(0.123456), "0.1235");
    assert_eq!(num(1234.5678), "1235");
    assert_eq!(num(0.1), "0.1");
    assert_eq!(num(-0.5), "-0.5");
    assert_eq!(num(1.5e-9), "1.5e-9");
    assert_eq!(num(12_345_678.0), "1.235e7");
    assert_eq!(num(0.00012), "0.00012");
    assert_eq!(num(f64::NAN), "—");
    assert_eq!(num(f64::INFINITY), "∞");
    assert_eq!(short(1_500.0), "1.5k");
    assert_eq!(short(25.5), "25.5");
    assert_eq!(short(0.0001234), "1.23e-4");
    assert_eq!(short(-2_000_000.0), "-2M");
    assert_eq!(pct(0.123), "12.3%");
    assert_eq!(pct(1.0), "100%");
    assert_eq!(count(1_234_567), "1,234,567");
    assert_eq!(count(999), "999");
}

#[test]
fn odd_values_still_render() {
    let mut report = full();
    report.from_ms = i64::MIN;
    report.to_ms = i64::MAX;
    report.step_ms = -5;
    report.distributions[0] = numeric("amount", vec![f64::NAN, 1e300], vec![f64::NAN], Vec::new());
    if let Shape::Numeric { reference_cdf, .. } = &mut report.distributions[0].shape {
        *reference_cdf = vec![(f64::NEG_INFINITY, 0.0), (5.0, 0.5), (5.0, 1.0)];
    }
    if let Shape::Categorical { categories, .. } = &mut report.distributions[1].shape {
        *categories = (0..100)
            .map(|i| CategoryMass {
                name: format!("c{i}"),
                reference: 0.01,
                current: f64::NAN,
            })
            .collect();
    }
    if let Some(hm) = &mut report.heatmap {
        hm.values = vec![vec![Some(f64::NAN)], Vec::new()];
        hm.windows = vec![i64::MIN, 0, i64::MAX];
    }
    if let Some(perf) = &mut report.performance {
        perf.windows = vec![i64::MIN, i64::MAX];
        perf.values = vec![Some(f64::INFINITY)];
        perf.reference = None;
    }
    if let Some(cal) = &mut report.calibration {
        cal.bins[0].predicted = f64::NAN;
        cal.ece = None;
    }
    report
        .explain
        .rows
        .push(vec![json!({"a": [1, 2]}), json!(u64::MAX), json!(-3)]);
    let page = html(&report);
    assert_self_contained(&page);
    assert_eq!(page.matches("class=\"cell\"").count(), 9);
    assert!(page.contains("60 more categories not shown"));
    assert!(page.contains("<td class=\"n\">18446744073709551615</td>"));
    assert!(page.contains("{&quot;a&quot;:[1,2]}"));
    assert_eq!(page, html(&report));
}

#[test]
fn reports_round_trip_through_json() {
    // What `--format json` writes and the CLI reads back from a server is the same report.
    for r in [full(), minimal(), hostile()] {
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(html(&back), html(&r));
    }
}
