//! Every record kind: a round trip, a checked-in fixture that must keep decoding to the same
//! value and re-encoding to the same bytes, and damaged copies that must read as corruption.
//!
//! Fixtures are the sealed values as RocksDB holds them (`server/tests/data/records/*.bin`).
//! `UPDATE_RECORD_FIXTURES=1 cargo test -p driftdb-server records` rewrites them: only do that
//! for a new record kind, never to make a changed codec pass (stored data would not read).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use driftdb_engine::codec::{open, seal};
use driftdb_engine::ingest::{
    Column, FieldValue, InferenceBatch, InferenceRow, LabelRow, PendingPrediction,
};
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::reference::{ReferenceBuilder, ReferenceProfile};
use driftdb_engine::rules::{AlertState, DeliveryAuth, Severity};
use driftdb_engine::series::Segment;
use driftdb_engine::time::Timestamp;
use driftdb_storage::Entry;
use serde_json::json;

use super::alerts::{
    ActionResult, AlertRecord, DeliveryRecord, Episode, EventFired, EventSeq, GroupState,
    PendingGroup,
};
use super::keys::{KeyRecord, Scope, Scopes, StoredKey};
use super::pending::{PendingEntry, PendingRecord, ProducerSeq};
use super::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/records")
}

fn model() -> ModelDef {
    ModelDef {
        id: "fraud".into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into()],
        segment_cap: 64,
        features: BTreeMap::from([
            ("amount".to_string(), FeatureKind::Numeric),
            ("country".to_string(), FeatureKind::Categorical),
        ]),
        sampling: 1.0,
        team: Some("risk".into()),
    }
}

fn reference() -> ReferenceProfile {
    let def = model();
    let n = 40;
    let rows = (0..n)
        .map(|i| InferenceRow {
            request_id: format!("r{i}"),
            ts: Timestamp(1_772_323_200_000 + i as i64),
            version: "v1".into(),
            segments: vec![Some(if i % 2 == 0 { "eu" } else { "us" }.into())],
            score: Some(f64::from(i) / f64::from(n)),
            prediction: None,
            items: vec![],
            latency_ms: Some(10.0 + f64::from(i % 5)),
            cost: None,
        })
        .collect();
    let batch = InferenceBatch {
        model_id: "fraud".into(),
        feature_names: vec!["amount".into(), "country".into()],
        segment_keys: vec!["region".into()],
        rows,
        columns: vec![
            Column::Numbers((0..n).map(|i| Some(f64::from(i) * 1.5)).collect()),
            Column::Values(
                (0..n)
                    .map(|i| {
                        if i % 7 == 0 {
                            FieldValue::Missing
                        } else {
                            FieldValue::Category(["de", "fr", "br"][i as usize % 3].into())
                        }
                    })
                    .collect(),
            ),
        ],
        attributions: Vec::new(),
    };
    let labels: Vec<Option<f64>> = (0..n).map(|i| Some(f64::from(i % 2))).collect();
    let mut b = ReferenceBuilder::new(&def, "v1").unwrap();
    b.add(&batch, &labels).unwrap();
    b.finish(Timestamp(1_772_323_200_000)).unwrap()
}

fn alert_record() -> AlertRecord {
    AlertRecord {
        seq: 7,
        event_id: "fraud-psi/fraud/v1/amount/all/firing/1772323200000".into(),
        dedup_key: "fraud-psi/fraud/v1/amount/all".into(),
        rule_id: "fraud-psi".into(),
        rule_version: 2,
        rule_kind: "metric".into(),
        model: "fraud".into(),
        version: "v1".into(),
        feature: Some("amount".into()),
        segment: "region=eu".into(),
        metric: "psi".into(),
        value: Some(0.31),
        threshold: Some(0.2),
        reference: None,
        comparison: Some(">".into()),
        severity: Severity::High,
        status: "firing".into(),
        window_ms: 1_772_323_200_000,
        fired_at_ms: 1_772_324_100_000,
        resolved_at_ms: None,
        recorded_at_ms: 1_772_324_400_123,
        summary: "psi of fraud.amount (region=eu) is 0.31 > 0.2".into(),
        description: Some("amount drifts".into()),
        event: None,
        actions: vec![ActionResult {
            index: 0,
            kind: "slack".into(),
            url: "https://hooks.slack.com/***".into(),
            delivered: true,
            attempts: 1,
            last_error: None,
            dead_lettered: false,
            group: None,
        }],
        suppressed: None,
        ack: None,
    }
}

fn delivery() -> DeliveryRecord {
    DeliveryRecord {
        seq: 7,
        index: 1,
        kind: "jira".into(),
        url: "https://jira.example.com/rest/api/2/issue".into(),
        body: json!({"fields": {"summary": "psi of fraud.amount is 0.31"}}),
        auth: Some(DeliveryAuth::Basic {
            user: "bot".into(),
            token: "s3cret".into(),
        }),
        event_id: "fraud-psi/fraud/v1/amount/all/firing/1772323200000".into(),
        attempts: 3,
        first_failure_ms: Some(1_772_324_401_000),
        next_at_ms: 1_772_324_409_000,
        last_error: Some("HTTP 503".into()),
        members: vec![],
    }
}

fn stored_key() -> StoredKey {
    StoredKey {
        record: KeyRecord {
            id: "0123456789abcdef".into(),
            name: "grafana".into(),
            team: Some("risk".into()),
            scopes: Scopes::of(&[Scope::Read, Scope::Ingest]),
            created_at_ms: 1_772_323_200_000,
            created_by: None,
            revoked_at_ms: Some(1_772_409_600_000),
        },
        secret_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
    }
}

/// An alert state with every optional field set, read from its documented layout.
fn alert_state() -> AlertState {
    use driftdb_engine::codec::Writer;
    let mut w = Writer::new();
    w.u8(0x0f);
    w.varint(3);
    w.varint(0);
    for ms in [1_772_323_200_000i64, 1_772_322_300_000, 1_772_300_000_000] {
        // zigzag
        w.varint(((ms << 1) ^ (ms >> 63)) as u64);
    }
    AlertState::decode(&seal(RecordKind::AlertState.byte(), &w.into_bytes())).unwrap()
}

/// A pending record as builds before deadlines wrote it.
fn old(record: PendingRecord) -> PendingEntry {
    PendingEntry {
        record,
        deadline: None,
    }
}

/// `(fixture name, kind, payload)` of one sample value per record kind.
fn samples() -> Vec<(&'static str, RecordKind, Vec<u8>)> {
    fn enc<R: Record>(r: &R) -> (RecordKind, Vec<u8>) {
        (R::KIND, r.encode().unwrap())
    }
    let items = [
        ("model", enc(&model())),
        (
            "segments",
            enc(&AdmittedSegments(BTreeMap::from([(
                "region".to_string(),
                BTreeSet::from(["eu".to_string(), "us\0x".to_string()]),
            )]))),
        ),
        ("reference", enc(&reference())),
        (
            "pending_prediction",
            enc(&old(PendingRecord::Prediction(PendingPrediction {
                version: "v1".into(),
                window: Timestamp(1_772_323_200_000),
                segments: vec![
                    Segment::All,
                    Segment::Value {
                        key: "region".into(),
                        value: "eu".into(),
                    },
                ]
                .into(),
                score: Some(0.875),
                items: vec!["i1".into(), "i2".into()],
            }))),
        ),
        (
            "pending_label",
            enc(&old(PendingRecord::Label(LabelRow {
                request_id: String::new(),
                ts: Timestamp(1_772_323_260_000),
                label: Some(1.0),
                click: Some(1.0),
                purchase: None,
                revenue: Some(12.5),
                relevance: vec![("i1".into(), 3.0)],
            }))),
        ),
        ("pending_joined", enc(&old(PendingRecord::Joined))),
        (
            "pending_prediction_deadline",
            enc(&PendingEntry {
                record: PendingRecord::Prediction(PendingPrediction {
                    version: "v1".into(),
                    window: Timestamp(1_772_323_200_000),
                    segments: vec![Segment::All].into(),
                    score: None,
                    items: vec![],
                }),
                deadline: Some(1_774_916_100_000),
            }),
        ),
        (
            "pending_label_deadline",
            enc(&PendingEntry {
                record: PendingRecord::Label(LabelRow {
                    request_id: String::new(),
                    ts: Timestamp(1_772_323_260_000),
                    label: Some(0.0),
                    click: None,
                    purchase: None,
                    revenue: None,
                    relevance: vec![],
                }),
                deadline: Some(1_774_915_260_000),
            }),
        ),
        (
            "pending_joined_deadline",
            enc(&PendingEntry {
                record: PendingRecord::Joined,
                deadline: Some(1_774_916_100_000),
            }),
        ),
        ("producer", enc(&ProducerSeq(300))),
        ("alert_state", enc(&alert_state())),
        (
            "rule",
            enc(&RuleVersion {
                version: 3,
                updated_at_ms: 1_772_323_200_000,
                deleted: false,
                rule: json!({"id": "fraud-psi", "model": "fraud", "selector": "*",
                             "metric": "psi", "comparison": ">", "threshold": 0.2,
                             "actions": [{"kind": "slack", "url": "https://hooks.slack.com/***"}]}),
            }),
        ),
        ("alert", enc(&alert_record())),
        ("event_id", enc(&EventSeq(7))),
        (
            "episode",
            enc(&Episode {
                fired_at_ms: 1_772_324_100_000,
                fire_seq: Some(7),
                resolve_seq: Some(9),
            }),
        ),
        (
            "event_fired",
            enc(&EventFired(Timestamp(1_772_324_100_000))),
        ),
        (
            "cursor",
            enc(&EvalCursor {
                next_ms: 1_772_324_100_000,
                versions: BTreeSet::from(["v1".to_string(), "v2".to_string()]),
            }),
        ),
        ("delivery", enc(&delivery())),
        (
            "rule_secrets",
            enc(&RuleSecrets {
                version: 3,
                actions: BTreeMap::from([(
                    "0".to_string(),
                    BTreeMap::from([(
                        "url".to_string(),
                        "https://hooks.slack.com/services/T/B/X".to_string(),
                    )]),
                )]),
            }),
        ),
        (
            "silence",
            enc(&SilenceVersion {
                version: 2,
                updated_at_ms: 1_772_326_800_000,
                silence: driftdb_engine::rules::Silence {
                    id: "s-7".into(),
                    matchers: BTreeMap::from([
                        ("model".to_string(), "fraud".to_string()),
                        ("rule".to_string(), "psi-*".to_string()),
                    ]),
                    starts_at_ms: 1_772_323_200_000,
                    ends_at_ms: 1_772_330_400_000,
                    created_by: "alice".into(),
                    comment: "catalog refresh".into(),
                },
            }),
        ),
        (
            "pending_group",
            enc(&PendingGroup {
                key: "0123456789abcdef/firing".into(),
                series: "0123456789abcdef".into(),
                labels: vec![("model".into(), "fraud".into())],
                status: "firing".into(),
                action: driftdb_engine::rules::Action::Webhook {
                    url: "https://hooks.example.com/driftdb".into(),
                },
                due_ms: 1_772_324_160_000,
                members: vec![(7, 0), (8, 0), (9, 1)],
                interval_ms: 300_000,
            }),
        ),
        (
            "group_state",
            enc(&GroupState {
                firing: BTreeSet::from(["driftdb/psi/fraud@v1/amount/all".to_string()]),
                last_sent_ms: BTreeMap::from([("firing".to_string(), 1_772_324_160_000)]),
            }),
        ),
        ("api_key", enc(&stored_key())),
    ];
    items
        .into_iter()
        .map(|(name, (kind, payload))| (name, kind, payload))
        .collect()
}

/// Decodes `payload` as the record its kind names and encodes it again.
fn reencode(kind: RecordKind, payload: &[u8]) -> Result<Vec<u8>> {
    fn again<R: Record>(b: &[u8]) -> Result<Vec<u8>> {
        R::decode(b)?.encode()
    }
    match kind {
        RecordKind::Model => again::<ModelDef>(payload),
        RecordKind::Segments => again::<AdmittedSegments>(payload),
        RecordKind::Reference => again::<ReferenceProfile>(payload),
        RecordKind::Pending => again::<PendingEntry>(payload),
        RecordKind::Producer => again::<ProducerSeq>(payload),
        RecordKind::AlertState => again::<AlertState>(payload),
        RecordKind::Rule => again::<RuleVersion>(payload),
        RecordKind::Alert => again::<AlertRecord>(payload),
        RecordKind::EventId => again::<EventSeq>(payload),
        RecordKind::Episode => again::<Episode>(payload),
        RecordKind::EventFired => again::<EventFired>(payload),
        RecordKind::Cursor => again::<EvalCursor>(payload),
        RecordKind::Delivery => again::<DeliveryRecord>(payload),
        RecordKind::RuleSecrets => again::<RuleSecrets>(payload),
        RecordKind::Silence => again::<SilenceVersion>(payload),
        RecordKind::PendingGroup => again::<PendingGroup>(payload),
        RecordKind::GroupState => again::<GroupState>(payload),
        RecordKind::ApiKey => again::<StoredKey>(payload),
    }
}

#[test]
fn every_kind_has_a_sample_and_distinct_bytes() {
    let kinds: BTreeSet<RecordKind> = samples().iter().map(|(_, k, _)| *k).collect();
    assert_eq!(
        kinds.len(),
        RecordKind::ALL.len(),
        "a kind without a sample"
    );
    let bytes: BTreeSet<u8> = RecordKind::ALL.iter().map(|k| k.byte()).collect();
    assert_eq!(bytes.len(), RecordKind::ALL.len(), "two kinds share a byte");
    for k in RecordKind::ALL {
        assert_eq!(RecordKind::of(k.byte()), Some(k));
    }
    assert_eq!(RecordKind::of(0x00), None);
}

#[test]
fn every_record_round_trips() {
    for (name, kind, payload) in samples() {
        let again = reencode(kind, &payload).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again, payload, "{name} does not re-encode to its bytes");
    }
    // Typed equality where the type has it.
    let rec = alert_record();
    assert_eq!(AlertRecord::decode(&rec.encode().unwrap()).unwrap(), rec);
    let muted = AlertRecord {
        suppressed: Some("silenced by s-3".into()),
        ack: Some(super::alerts::Ack {
            by: "alice".into(),
            comment: "on it".into(),
            at_ms: 1_772_324_500_000,
        }),
        actions: vec![],
        ..alert_record()
    };
    assert_eq!(
        AlertRecord::decode(&muted.encode().unwrap()).unwrap(),
        muted
    );
    let d = delivery();
    assert_eq!(DeliveryRecord::decode(&d.encode().unwrap()).unwrap(), d);
    assert_eq!(
        ModelDef::decode(&model().encode().unwrap()).unwrap(),
        model()
    );
    let st = alert_state();
    assert_eq!(
        AlertState::decode(&Record::encode(&st).unwrap()).unwrap(),
        st
    );
}

#[test]
fn checked_in_fixtures_still_decode_to_the_same_bytes() {
    let dir = fixture_dir();
    let update = std::env::var("UPDATE_RECORD_FIXTURES").is_ok_and(|v| v == "1");
    for (name, kind, payload) in samples() {
        let path = dir.join(format!("{name}.bin"));
        let sealed = seal(kind.byte(), &payload);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &sealed).unwrap();
            continue;
        }
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (a new kind needs its fixture)", path.display()));
        let (k, p) = open(&stored).unwrap();
        assert_eq!(k, kind.byte(), "{name}: kind byte");
        let again = reencode(kind, p).unwrap_or_else(|e| panic!("{name}: fixture: {e}"));
        assert_eq!(
            again, p,
            "{name}: the fixture no longer re-encodes to itself"
        );
        assert_eq!(stored, sealed, "{name}: the codec now writes other bytes");
    }
}

#[test]
fn pending_deadlines_sit_where_the_storage_filter_reads_them() {
    let e = PendingEntry {
        record: PendingRecord::Joined,
        deadline: Some(1234),
    };
    let b = e.encode().unwrap();
    assert_eq!(b[0], driftdb_storage::pending::TAG_JOINED);
    let clock = |now_ms| driftdb_storage::ExpiryClock {
        now_ms,
        delay_ms: 10,
    };
    assert!(!driftdb_storage::pending::expired(&b, clock(1234)));
    assert!(driftdb_storage::pending::expired(&b, clock(1235)));
    // Old records keep their tags and never expire.
    let old = old(PendingRecord::Joined).encode().unwrap();
    assert_eq!(old, vec![3]);
    assert!(!driftdb_storage::pending::expired(&old, clock(i64::MAX)));
}

#[test]
fn damaged_records_are_corruption() {
    for (name, kind, payload) in samples() {
        // A foreign kind.
        let other = RecordKind::ALL.into_iter().find(|k| *k != kind).unwrap();
        let e = Entry {
            key: vec![],
            kind: other.byte(),
            payload: payload.clone(),
        };
        let err = match kind {
            RecordKind::Alert => decode::<AlertRecord>(&e).unwrap_err(),
            RecordKind::Model => decode::<ModelDef>(&e).unwrap_err(),
            _ => decode::<ProducerSeq>(&Entry {
                kind: RecordKind::Model.byte(),
                ..e
            })
            .unwrap_err(),
        };
        assert!(matches!(err, Error::Corruption { .. }), "{name}: {err}");
        assert_eq!(err.kind(), driftdb_engine::ErrorKind::Corruption);
        // A truncated payload (every record but the empty-able ones fails).
        if payload.len() > 1 {
            let cut = &payload[..payload.len() / 2];
            if let Err(err) = reencode(kind, cut) {
                assert!(
                    matches!(err, Error::Corruption { .. }),
                    "{name}: truncated payload gave {err}"
                );
            }
        }
    }
    assert!(matches!(
        AlertRecord::decode(b"{not json").unwrap_err(),
        Error::Corruption { .. }
    ));
    assert!(matches!(
        PendingEntry::decode(&[9]).unwrap_err(),
        Error::Corruption { .. }
    ));
}

proptest::proptest! {
    /// The batch sealer writes what the record codec writes, for runs of rows that share
    /// their head and for rows that do not (another segment list, window, deadline, version).
    #[test]
    fn the_prediction_sealer_writes_the_codec_s_bytes(
        rows in proptest::collection::vec(
            (0u8..3, 0u8..2, 0i64..3, 0u8..2, proptest::option::of(-1e9f64..1e9), 0usize..3),
            1..40,
        )
    ) {
        use std::sync::Arc;
        let lists: [Arc<[Segment]>; 3] = [
            Arc::from(vec![Segment::All]),
            Arc::from(vec![
                Segment::All,
                Segment::Value { key: "region".into(), value: "eu".into() },
            ]),
            Arc::from(vec![
                Segment::All,
                Segment::Value { key: "region".into(), value: "eu".into() },
                Segment::Value { key: "device".into(), value: "android".into() },
            ]),
        ];
        let mut sealer = super::pending::PredictionSealer::default();
        for (list, version, window, deadline, score, items) in rows {
            let p = PendingPrediction {
                version: ["v1", "v22"][version as usize].into(),
                window: Timestamp(1_772_323_200_000 + window * 900_000),
                segments: Arc::clone(&lists[list as usize]),
                score,
                items: (0..items).map(|i| format!("item-{i}")).collect(),
            };
            let deadline = 1_800_000_000_000 + i64::from(deadline);
            let entry = PendingEntry {
                record: PendingRecord::Prediction(p.clone()),
                deadline: Some(deadline),
            };
            let want = seal(RecordKind::Pending.byte(), &entry.encode().unwrap());
            proptest::prop_assert_eq!(sealer.seal(&p, deadline), want);
        }
    }
}
