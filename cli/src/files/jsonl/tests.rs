//! The JSONL reader on lines as users write them.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftdb_engine::model::{FeatureKind, ModelDef, Task};

use super::*;
use crate::files::batch::FixedCatalog;

pub(crate) fn def(id: &str) -> ModelDef {
    let mut features = BTreeMap::new();
    features.insert("amount".to_string(), FeatureKind::Numeric);
    features.insert("country".to_string(), FeatureKind::Categorical);
    ModelDef {
        id: id.into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into()],
        segment_cap: 64,
        features,
        sampling: 1.0,
        team: None,
    }
}

fn ctx(kind: Kind, default: Option<&str>) -> Ctx {
    let mut c = Ctx::new(kind, Arc::new(FixedCatalog::of([def("m1"), def("m2")])));
    c.default_model = default.map(str::to_string);
    c
}

fn convert(text: &str, c: &Ctx) -> Converted {
    let mut out = Converted::default();
    convert_chunk(text.as_bytes(), 1, c, &mut JsonState::default(), &mut out);
    out
}

fn rows(out: &Converted) -> Vec<&pb::InferenceBatch> {
    out.batches
        .iter()
        .map(|o| match &o.payload {
            Payload::Rows(b) => b,
            Payload::Labels(_) => panic!("labels"),
        })
        .collect()
}

#[test]
fn nested_flat_mixed_models_and_versions() {
    let text = concat!(
        "\u{feff}",
        r#"{"request_id":"a","ts":"2026-03-01T00:00:00Z","model_version":"v1","segments":{"region":"eu"},"features":{"amount":1.5,"country":"DE"},"score":0.1}"#,
        "\r\n\n",
        r#"{"request_id":"b","ts":1772323200,"model_version":"v2","region":"us","amount":"2","country":true,"score":null}"#,
        "\n",
        r#"{"model_id":"m2","request_id":"c","ts":1772323200000,"model_version":"v1","features":{"amount":null}}"#,
        "\n",
        r#"{"request_id":"d","ts":"2026-03-01T00:00:01Z","model_version":"v1","features":{"amount":3}}"#,
    );
    // The BOM is the source's job; here it must not break the first line after trimming.
    let text = text.trim_start_matches('\u{feff}');
    let out = convert(text, &ctx(Kind::Inferences, Some("m1")));
    assert_eq!(out.rejected, 0, "{:?}", out.errors);
    assert_eq!(out.rows, 4);
    let b = rows(&out);
    assert_eq!(b.len(), 2);
    let (m1, m2) = (b[0], b[1]);
    assert_eq!(m1.model_id, "m1");
    assert_eq!(m1.request_ids, ["a", "b", "d"]);
    assert_eq!(m1.model_versions, ["v1", "v2", "v1"]);
    assert_eq!(
        m1.ts_ms,
        [1_772_323_200_000, 1_772_323_200_000, 1_772_323_201_000]
    );
    assert_eq!(m1.segments[0].values, ["eu", "us", ""]);
    assert_eq!(m1.features[0].numbers, [1.5, 2.0, 3.0]);
    assert_eq!(m1.features[1].categories, ["DE", "true", ""]);
    assert_eq!(m1.features[1].missing, [2]);
    assert_eq!(m1.score_missing, [1, 2]);
    assert_eq!(out.batches[0].lines, [1, 3, 5]);
    assert_eq!(m2.model_id, "m2");
    assert_eq!(m2.request_ids, ["c"]);
    assert_eq!(m2.model_versions, ["v1"]);
    assert_eq!(m2.features[0].missing, [0]);
}

#[test]
fn bad_rows_are_rejected_with_reasons_and_change_nothing() {
    let long = "x".repeat(1000);
    let text = [
        r#"{"request_id":"a","ts":"2026-03-01T00:00:00Z","model_version":"v1","features":{"amount":"abc"}}"#.to_string(),
        r#"{"request_id":"b","ts":"2026-03-01T00:00:00Z","model_version":"v1","features":{"colour":"red"}}"#.to_string(),
        r#"{"request_id":"c","ts":"2026-03-01T00:00:00Z","model_version":"v1","segments":{"tier":"gold"}}"#.to_string(),
        r#"{"request_id":"d","model_version":"v1"}"#.to_string(),
        r#"{"request_id":"e","ts":"2026-03-01T00:00:00Z"}"#.to_string(),
        format!(r#"{{"request_id":"f","ts":"{long}","model_version":"v1"}}"#),
        r#"{"request_id":"g","ts":"2026-03-01T00:00:00Z","model_version":"v1","model_id":"zz"}"#.to_string(),
        r#"{"request_id":"h","ts":"2026-03-01T00:00:00Z","model_version":"v1","features":{"amount":1}"#.to_string(),
        r#"[1,2]"#.to_string(),
        r#"{"request_id":"i","ts":"2026-03-01T00:00:00Z","model_version":"v1","features":{"country":3.5}}"#.to_string(),
        r#"{"request_id":"ok","ts":"2026-03-01T00:00:00Z","model_version":"v1","unknown":1}"#.to_string(),
    ]
    .join("\n");
    let c = ctx(Kind::Inferences, Some("m1"));
    let out = convert(&text, &c);
    assert_eq!(out.rows, 11);
    assert_eq!(out.rejected, 10);
    let reasons: BTreeMap<u64, &str> = out.errors.iter().map(|(l, e)| (*l, e.as_str())).collect();
    assert_eq!(reasons[&1], r#"feature "amount": "abc" is not a number"#);
    assert!(
        reasons[&2].starts_with(r#"feature "colour" is not a feature of model "m1""#),
        "{}",
        reasons[&2]
    );
    assert!(
        reasons[&3].starts_with(r#"segment key "tier" is not a segment"#),
        "{}",
        reasons[&3]
    );
    assert_eq!(reasons[&4], "missing ts");
    assert_eq!(reasons[&5], "missing model_version");
    assert!(
        reasons[&6].len() < 160 && reasons[&6].contains("(1000 bytes)"),
        "{}",
        reasons[&6]
    );
    assert_eq!(reasons[&7], r#"unknown model "zz""#);
    assert!(reasons[&8].starts_with("invalid JSON"), "{}", reasons[&8]);
    assert_eq!(reasons[&9], "line is not a JSON object");
    assert!(reasons[&10].contains("categorical"), "{}", reasons[&10]);
    let b = rows(&out);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].request_ids, ["ok"]);
    assert_eq!(out.batches[0].lines, [11]);
    assert!(c.unknown_columns.lock().unwrap().contains("unknown"));
}

#[test]
fn no_default_model() {
    let c = ctx(Kind::Inferences, None);
    let out = convert(
        r#"{"request_id":"a","ts":"2026-03-01T00:00:00Z","model_version":"v1"}"#,
        &c,
    );
    assert_eq!(out.errors[0].1, "no model_id (pass --model)");
}

#[test]
fn reference_rows_carry_labels_and_labels_parse() {
    let out = convert(
        r#"{"request_id":"a","ts":"2026-03-01T00:00:00Z","model_version":"v1","label":true}
{"request_id":"b","ts":"2026-03-01T00:00:00Z","model_version":"v1"}"#,
        &ctx(Kind::Reference, Some("m1")),
    );
    let b = rows(&out);
    assert_eq!(b[0].labels, [1.0, 0.0]);
    assert_eq!(b[0].label_missing, [1]);
    let out = convert(
        r#"{"request_id":"a","ts":"2026-03-01T00:00:00Z","label":0}
{"request_id":"b","model_id":"m2","outcomes":{"click":1,"relevance":{"x":2}}}
{"ts":"2026-03-01T00:00:00Z","label":1}"#,
        &ctx(Kind::Labels, Some("m1")),
    );
    assert_eq!(out.rejected, 1);
    assert_eq!(out.errors[0], (3, "missing request_id".to_string()));
    assert_eq!(out.batches.len(), 2);
    match &out.batches[1].payload {
        Payload::Labels(l) => {
            assert_eq!(l.model_id, "m2");
            let o = l.labels[0].outcome.as_ref().unwrap();
            assert_eq!(o.click, 1.0);
            assert_eq!(o.relevance.get("x"), Some(&2.0));
        }
        Payload::Rows(_) => panic!("rows"),
    }
}

#[test]
fn chunks_split_by_batch_size() {
    let mut c = ctx(Kind::Inferences, Some("m1"));
    c.batch_rows = 3;
    let text: String = (0..10)
        .map(|i| {
            format!(
                "{{\"request_id\":\"r{i}\",\"ts\":\"2026-03-01T00:00:00Z\",\"model_version\":\"v{}\"}}\n",
                i / 5
            )
        })
        .collect();
    let out = convert(&text, &c);
    let b = rows(&out);
    assert_eq!(
        b.iter().map(|b| b.request_ids.len()).collect::<Vec<_>>(),
        [3, 3, 3, 1]
    );
    let versions: Vec<Vec<String>> = b.iter().map(|b| b.model_versions.clone()).collect();
    assert_eq!(versions[0], ["v0"]);
    assert_eq!(versions[1], ["v0", "v0", "v1"]);
    assert_eq!(versions[2], ["v1"]);
}

#[test]
fn cost_and_attributions_become_their_columns() {
    let mut c = ctx(Kind::Inferences, Some("m1"));
    c.batch_rows = 3;
    let lines = [
        // No attributions yet: the column of `amount` starts at row 1 with row 0 missing.
        r#"{"request_id":"a","ts":"2026-03-01T00:00:00Z","model_version":"v1","cost":0.5}"#,
        r#"{"request_id":"b","ts":"2026-03-01T00:00:00Z","model_version":"v1","attributions":{"amount":-0.25},"cost":"0.75"}"#,
        r#"{"request_id":"c","ts":"2026-03-01T00:00:00Z","model_version":"v1","attributions":{"country":0.5,"amount":1}}"#,
        // The second batch: only `country` is explained, so `amount` is not sent.
        r#"{"request_id":"d","ts":"2026-03-01T00:00:00Z","model_version":"v1","attributions":{"country":2}}"#,
        r#"{"request_id":"e","ts":"2026-03-01T00:00:00Z","model_version":"v1","attributions":null}"#,
        // Refused lines: an unknown feature, a string attribution, an array.
        r#"{"request_id":"f","ts":"2026-03-01T00:00:00Z","model_version":"v1","attributions":{"colour":1}}"#,
        r#"{"request_id":"g","ts":"2026-03-01T00:00:00Z","model_version":"v1","attributions":{"amount":"big"}}"#,
        r#"{"request_id":"h","ts":"2026-03-01T00:00:00Z","model_version":"v1","attributions":[1]}"#,
        r#"{"request_id":"i","ts":"2026-03-01T00:00:00Z","model_version":"v1","cost":true}"#,
    ]
    .join("\n");
    let out = convert(&lines, &c);
    let reasons: BTreeMap<u64, &str> = out.errors.iter().map(|(l, e)| (*l, e.as_str())).collect();
    assert_eq!(out.rejected, 4, "{reasons:?}");
    assert!(
        reasons[&6].starts_with(r#"attributions: "colour" is not a feature of model "m1""#),
        "{}",
        reasons[&6]
    );
    assert_eq!(
        reasons[&7],
        r#"attribution of feature "amount": "big" is not a number"#
    );
    assert!(
        reasons[&8].starts_with("attributions: expected an object"),
        "{}",
        reasons[&8]
    );
    assert_eq!(reasons[&9], "cost: a boolean is not a number");
    let b = rows(&out);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].cost.len(), 3);
    assert_eq!(&b[0].cost[..2], [0.5, 0.75]);
    assert!(b[0].cost[2].is_nan());
    let names: Vec<&str> = b[0].attributions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["amount", "country"]);
    assert_eq!(b[0].attributions[0].numbers, [0.0, -0.25, 1.0]);
    assert_eq!(b[0].attributions[0].missing, [0]);
    assert_eq!(b[0].attributions[1].numbers, [0.0, 0.0, 0.5]);
    assert_eq!(b[0].attributions[1].missing, [0, 1]);
    // No row of the second batch reports a cost; only `country` is explained.
    assert!(b[1].cost.is_empty());
    assert_eq!(b[1].request_ids, ["d", "e"]);
    assert_eq!(b[1].attributions.len(), 1);
    assert_eq!(b[1].attributions[0].name, "country");
    assert_eq!(b[1].attributions[0].numbers, [2.0, 0.0]);
    assert_eq!(b[1].attributions[0].missing, [1]);
}
