//! The ingest batch decoder: arbitrary bytes as a protobuf `InferenceBatch` (or `LabelBatch`),
//! converted to engine rows with every positional length checked (`convert::batch_from_pb`)
//! and validated against a model (`engine::ingest::validate_batch`), as the `Ingest` service
//! does for each message of a stream. Errors are fine; panics, hangs and huge allocations
//! are findings.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use driftdb_engine::ingest::validate_batch;
use driftdb_engine::model::{FeatureKind, ModelDef};
use driftdb_proto::v1 as pb;
use driftdb_server_fuzz::batch::{batch_from_pb, label_from_pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn model() -> &'static ModelDef {
    static MODEL: OnceLock<ModelDef> = OnceLock::new();
    MODEL.get_or_init(fuzz_model)
}

/// A binary model with two numeric and two categorical features and two segment keys.
fn fuzz_model() -> ModelDef {
    let mut features = BTreeMap::new();
    features.insert("amount".to_string(), FeatureKind::Numeric);
    features.insert("age".to_string(), FeatureKind::Numeric);
    features.insert("country".to_string(), FeatureKind::Categorical);
    features.insert("channel".to_string(), FeatureKind::Categorical);
    ModelDef {
        id: "m".into(),
        task: driftdb_engine::model::Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into(), "device".into()],
        segment_cap: 64,
        features,
        sampling: 1.0,
        team: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let def = model();
    if which & 1 == 0 {
        let Ok(b) = pb::InferenceBatch::decode(bytes) else {
            return;
        };
        if let Ok((batch, labels)) = batch_from_pb(b, &def.features) {
            assert_eq!(labels.len(), batch.rows.len());
            assert_eq!(batch.columns.len(), batch.feature_names.len());
            for (_, col) in &batch.attributions {
                assert_eq!(col.len(), batch.rows.len());
            }
            let _ = validate_batch(def, &batch);
        }
    } else {
        let Ok(b) = pb::LabelBatch::decode(bytes) else {
            return;
        };
        for l in b.labels {
            let _ = label_from_pb(l);
        }
    }
});
