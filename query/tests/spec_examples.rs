//! Every example query of query/DRIFTQL.md runs against stored data and answers with rows of the
//! documented columns: models `fraud` (binary), `ctr` (binary, versions v7 and v8) and `recs`
//! (ranking), 30 days of hourly-ish windows written straight into a real store.

use crate::common;

use common::Rng;
use driftdb_engine::model::ModelDef;
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::{
    CategoricalState, NumericState, PerformanceState, ScoreState, SeriesState,
};
use driftdb_engine::stats::performance::ndcg_all;
use driftdb_engine::time::Timestamp;
use driftdb_query::MemoryCatalog;
use driftdb_storage::WriteSet;

const DAY: i64 = 86_400_000;

fn def(json: &str) -> ModelDef {
    serde_json::from_str(json).unwrap()
}

struct Writer<'a> {
    ws: WriteSet,
    store: &'a driftdb_storage::Store,
}

impl Writer<'_> {
    fn put(
        &mut self,
        model: &str,
        version: &str,
        feature: FeatureRef,
        segment: &Segment,
        start: i64,
        state: SeriesState,
    ) {
        let key = SeriesKey {
            model: model.into(),
            version: version.into(),
            feature,
            segment: segment.clone(),
        };
        self.ws.merge(
            &key,
            driftdb_engine::time::Resolution::M15,
            Timestamp(start),
            &state,
        );
        if self.ws.delta_count() > 10_000 {
            self.store.write(&self.ws).unwrap();
            self.ws.clear();
        }
    }
}

fn binary_score(rng: &mut Rng, n: usize, quality: f64) -> ScoreState {
    let mut s = ScoreState::default();
    for _ in 0..n {
        let y = rng.f() < 0.3;
        let p = (if y { 0.5 + quality } else { 0.5 - quality } + 0.25 * rng.normal())
            .clamp(0.001, 0.999);
        s.predictions += 1;
        s.distribution.observe(p, None);
        s.performance.observe_binary(p, y).unwrap();
    }
    s
}

#[test]
fn every_spec_example_answers() {
    let end = Timestamp::parse_rfc3339("2026-03-02T00:00:00Z").unwrap().0;
    let now = Timestamp(end - 60_000);
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path(), now);
    let mut catalog = MemoryCatalog::new();
    let fraud = def(
        r#"{"id":"fraud","task":"binary","window":"15m","segments":["region"],
        "features":{"amount":"numeric","merchant_category":"categorical"}}"#,
    );
    let ctr = def(
        r#"{"id":"ctr","task":"binary","window":"15m","segments":["region","device"],"features":{"pos":"numeric"}}"#,
    );
    let recs =
        def(r#"{"id":"recs","task":"ranking","window":"15m","features":{"slot":"numeric"}}"#);
    for d in [&fraud, &ctr, &recs] {
        catalog.add_model(d.clone());
    }
    // Reference profiles for fraud and ctr@v8 (built through the engine's builder).
    let mut rb = driftdb_engine::reference::ReferenceBuilder::new(&fraud, "v1").unwrap();
    let mut rng = Rng::new(1);
    let mut b = driftdb_engine::ingest::InferenceBatch {
        model_id: "fraud".into(),
        feature_names: vec!["amount".into(), "merchant_category".into()],
        segment_keys: vec!["region".into()],
        ..Default::default()
    };
    let (mut amt, mut mc) = (Vec::new(), Vec::new());
    for i in 0..2000 {
        b.rows.push(driftdb_engine::ingest::InferenceRow {
            request_id: format!("r{i}"),
            version: "v1".into(),
            segments: vec![Some(if i % 2 == 0 { "eu" } else { "us" }.into())],
            score: Some(rng.f()),
            latency_ms: Some(10.0),
            ..Default::default()
        });
        amt.push(Some(30.0 + 10.0 * rng.normal()));
        mc.push(driftdb_engine::ingest::FieldValue::Category(format!(
            "mc{}",
            i % 5
        )));
    }
    b.columns = vec![
        driftdb_engine::ingest::Column::Numbers(amt),
        driftdb_engine::ingest::Column::Values(mc),
    ];
    rb.add(&b, &vec![Some(0.0); 2000]).unwrap();
    let fraud_ref = rb.finish(Timestamp(0)).unwrap();
    let fraud_ref_map: std::collections::BTreeMap<
        String,
        driftdb_engine::reference::ReferenceProfile,
    > = [("v1".to_string(), fraud_ref.clone())]
        .into_iter()
        .collect();
    catalog.add_reference(fraud_ref.clone());

    let mut w = Writer {
        ws: WriteSet::new(),
        store: &store,
    };
    let regions = [Segment::All, seg("region", "eu"), seg("region", "us")];
    // 31 days, one window every 3 hours (enough for daily steps), plus every window of the
    // last day.
    let starts: Vec<i64> = (0..31 * 8)
        .map(|i| end - 31 * DAY + i * 3 * 3_600_000)
        .chain((0..96).map(|i| end - DAY + i * 900_000))
        .collect::<std::collections::BTreeSet<i64>>()
        .into_iter()
        .map(|t| t - t.rem_euclid(900_000))
        .collect();
    for &t in &starts {
        for s in &regions {
            let edges = fraud_ref
                .series(&FeatureRef::Named("amount".into()), s)
                .and_then(|p| p.numeric())
                .and_then(|p| p.edges.clone());
            let mut n = NumericState::new(edges.as_ref().map(|e| &e.q50));
            let mut c = CategoricalState::default();
            for i in 0..50 {
                n.observe(32.0 + 10.0 * rng.normal(), edges.as_ref().map(|e| &e.q50));
                c.observe(&format!("mc{}", i % 6), i % 6 == 5);
            }
            w.put(
                "fraud",
                "v1",
                FeatureRef::Named("amount".into()),
                s,
                t,
                SeriesState::Numeric(n),
            );
            w.put(
                "fraud",
                "v1",
                FeatureRef::Named("merchant_category".into()),
                s,
                t,
                SeriesState::Categorical(c),
            );
            w.put(
                "fraud",
                "v1",
                FeatureRef::Score,
                s,
                t,
                SeriesState::Score(binary_score(&mut rng, 50, 0.2)),
            );
        }
        for (v, q) in [("v7", 0.15), ("v8", 0.2)] {
            for s in [
                Segment::All,
                seg("region", "eu"),
                seg("region", "us"),
                seg("device", "ios"),
                seg("device", "android"),
            ] {
                w.put(
                    "ctr",
                    v,
                    FeatureRef::Score,
                    &s,
                    t,
                    SeriesState::Score(binary_score(&mut rng, 60, q)),
                );
                let mut lat = NumericState::default();
                for _ in 0..60 {
                    lat.observe(20.0 + 5.0 * rng.normal().abs(), None);
                }
                w.put(
                    "ctr",
                    v,
                    FeatureRef::Latency,
                    &s,
                    t,
                    SeriesState::Numeric(lat),
                );
            }
        }
        let mut perf = PerformanceState::default();
        for _ in 0..40 {
            let served: Vec<f64> = (0..10)
                .map(|_| if rng.f() < 0.3 { 1.0 } else { 0.0 })
                .collect();
            let mut judged = served.clone();
            judged.sort_by(|a, b| b.total_cmp(a));
            perf.observe_ranking(&ndcg_all(&served, &judged), 1.0, 0.2, 3.0);
        }
        w.put(
            "recs",
            "v1",
            FeatureRef::Score,
            &Segment::All,
            t,
            SeriesState::Score(ScoreState {
                predictions: 40,
                performance: perf,
                ..Default::default()
            }),
        );
    }
    store.write(&w.ws).unwrap();
    let _ = fraud_ref_map;

    let ctx = driftdb_query::Context {
        reader: &store,
        catalog: &catalog,
        now,
    };
    let examples: &[(&str, &[&str], usize)] = &[
        (
            "psi(fraud.amount) over 24h step 15m",
            &[
                "time",
                "model",
                "version",
                "feature",
                "metric",
                "value",
                "n",
                "baseline_n",
            ],
            96,
        ),
        (
            "ks(fraud.*) over 1h top 5",
            &[
                "model",
                "version",
                "feature",
                "metric",
                "value",
                "n",
                "baseline_n",
                "p",
            ],
            1,
        ),
        (
            "psi(fraud.*, vs offset 7d) from 2026-03-01T00:00:00Z to 2026-03-02T00:00:00Z",
            &[
                "model",
                "version",
                "feature",
                "metric",
                "value",
                "n",
                "baseline_n",
            ],
            2,
        ),
        (
            "js(fraud.merchant_category, vs previous) over 6h step 1h by region",
            &[
                "time",
                "model",
                "version",
                "feature",
                "region",
                "metric",
                "value",
                "n",
                "baseline_n",
            ],
            12,
        ),
        (
            "auc(fraud) over 30d step 1d by region",
            &[
                "time",
                "model",
                "version",
                "feature",
                "region",
                "metric",
                "value",
                "n",
                "baseline_n",
            ],
            60,
        ),
        (
            "ece(ctr.$score) over 24h step 1h where device = \"ios\"",
            &[
                "time",
                "model",
                "version",
                "feature",
                "device",
                "metric",
                "value",
                "n",
                "baseline_n",
            ],
            24,
        ),
        (
            "quantile(0.99, ctr.$latency) over 1h step 15m",
            &[
                "time",
                "model",
                "version",
                "feature",
                "metric",
                "value",
                "n",
                "baseline_n",
            ],
            4,
        ),
        (
            "missing_rate(fraud.*) over 1h having value > 0.05",
            &[
                "model",
                "version",
                "feature",
                "metric",
                "value",
                "n",
                "baseline_n",
            ],
            0,
        ),
        (
            "ndcg(10, recs) over 7d step 1d",
            &[
                "time",
                "model",
                "version",
                "feature",
                "metric",
                "value",
                "n",
                "baseline_n",
            ],
            7,
        ),
        (
            "explain(fraud) over 1h",
            &[
                "section", "feature", "segment", "metric", "value", "baseline", "n", "score",
                "p_adj", "finding",
            ],
            0,
        ),
        (
            "uplift(auc, ctr@v8, ctr@v7) over 7d by region",
            &[
                "region",
                "metric",
                "challenger",
                "champion",
                "gain",
                "lower",
                "upper",
                "n_challenger",
                "n_champion",
                "windows",
                "windows_positive",
                "verdict",
                "reason",
            ],
            3,
        ),
    ];
    for (q, columns, rows) in examples {
        let out = driftdb_query::run(&ctx, q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(&out.table.columns, columns, "{q}");
        if *rows > 0 {
            assert_eq!(
                out.table.rows.len(),
                *rows,
                "{q}\n{}",
                out.table.render_text()
            );
        }
        // Every value cell of a row that has data is a number (or null where undefined).
        let vi = out.table.column("value").unwrap_or(4);
        for r in &out.table.rows {
            assert!(!matches!(r[vi], driftdb_query::Cell::Text(_)), "{q}");
        }
        // The plan of every example prints.
        let plan = driftdb_query::run(&ctx, &format!("EXPLAIN {q}")).unwrap();
        assert!(plan.table.rows.len() >= 2, "{q}");
    }
    // The binary AUC of fraud is high (quality 0.2 separation) and the uplift verdict for a
    // clearly better challenger is not reject.
    let auc = driftdb_query::run(&ctx, "auc(fraud) over 30d").unwrap();
    let v = auc.table.get(0, "value").unwrap().as_f64().unwrap();
    assert!((0.75..0.99).contains(&v), "auc {v}");
    let up = driftdb_query::run(&ctx, "uplift(auc, ctr@v8, ctr@v7) over 7d").unwrap();
    assert_eq!(
        up.table.get(0, "verdict").unwrap().as_str(),
        Some("promote"),
        "{}",
        up.table.render_text()
    );
    let down = driftdb_query::run(&ctx, "uplift(auc, ctr@v7, ctr@v8) over 7d").unwrap();
    assert_eq!(
        down.table.get(0, "verdict").unwrap().as_str(),
        Some("reject")
    );
    // NDCG@10 of lists sorted by chance against their ideal order lies in (0, 1).
    let nd = driftdb_query::run(&ctx, "ndcg(10, recs) over 7d").unwrap();
    let v = nd.table.get(0, "value").unwrap().as_f64().unwrap();
    assert!(v > 0.2 && v < 1.0, "ndcg {v}");
    // explain names the merchant category drift (an unseen category, a sixth of the values).
    let ex = driftdb_query::run(&ctx, "explain(fraud) over 1h").unwrap();
    assert_eq!(
        ex.table.get(0, "feature").unwrap().as_str(),
        Some("merchant_category"),
        "{}",
        ex.table.render_text()
    );
}

fn seg(k: &str, v: &str) -> Segment {
    Segment::Value {
        key: k.into(),
        value: v.into(),
    }
}
