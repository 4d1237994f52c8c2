//! Ingest, reference profiles and label joins against a real server on 127.0.0.1:0 with a temp
//! data dir, checked against `tests/data/golden/expected.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use driftdb_cli::client::Client;
use driftdb_cli::files::{BatchBuilder, label_from_record, read_records};
use driftdb_engine::model::ModelDef;
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::AuthMode;
use driftdb_server::convert::model_to_pb;
use driftdb_server::node::Node;
use driftdb_storage::{SeriesReader, StoreConfig};
use serde_json::Value;
use tokio_stream::StreamExt;

pub fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/golden")
        .join(name)
}

pub fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(golden("expected.json")).unwrap()).unwrap()
}

pub fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-03-01T00:00:00Z").unwrap()
}

pub struct TestServer {
    pub node: Node,
    pub client: Client,
    pub clock: ManualClock,
    pub running: Option<driftdb_server::serve::Running>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        // The golden data is dated 2026-03-01; the clock stands a day later.
        let clock = ManualClock::new(Timestamp(t0().0 + 86_400_000));
        // Ingest and queries are what is tested here; auth is covered by tests/auth.rs.
        let node = Node::open(
            dir.path(),
            StoreConfig::default(),
            Arc::new(clock.clone()),
            AuthMode::Disabled,
        )
        .unwrap();
        let running = driftdb_server::serve::start(
            node.clone(),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let client = Client::connect(&format!("http://{}", running.bound.grpc))
            .await
            .unwrap();
        TestServer {
            node,
            client,
            clock,
            running: Some(running),
            _dir: dir,
        }
    }

    pub async fn create_golden_model(&mut self) -> ModelDef {
        let def: ModelDef =
            serde_json::from_slice(&std::fs::read(golden("model.json")).unwrap()).unwrap();
        self.client
            .models
            .create_model(pb::CreateModelRequest {
                model: Some(model_to_pb(&def, vec![])),
            })
            .await
            .unwrap();
        def
    }

    pub async fn load_reference(&mut self, def: &ModelDef) -> pb::ReferenceSummary {
        let mut chunks = vec![pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
                model_id: def.id.clone(),
                model_version: "v2".into(),
                replace: false,
            })),
        }];
        for b in file_batches(def, &golden("reference.jsonl"), true, 5000) {
            chunks.push(pb::ReferenceChunk {
                chunk: Some(pb::reference_chunk::Chunk::Rows(b)),
            });
        }
        self.client
            .models
            .upload_reference(tokio_stream::iter(chunks))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn ingest(
        &mut self,
        batches: Vec<pb::InferenceBatch>,
    ) -> Result<Vec<pb::BatchAck>, tonic::Status> {
        let mut acks = self
            .client
            .ingest
            .ingest_inferences(tokio_stream::iter(batches))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(a) = acks.next().await {
            out.push(a?);
        }
        Ok(out)
    }

    pub async fn labels(&mut self, batch: pb::LabelBatch) -> Result<pb::LabelAck, tonic::Status> {
        let mut acks = self
            .client
            .ingest
            .ingest_labels(tokio_stream::iter(vec![batch]))
            .await?
            .into_inner();
        acks.next().await.unwrap()
    }

    pub fn window(&self, feature: FeatureRef, segment: Segment, w: i64) -> Option<SeriesState> {
        let key = SeriesKey {
            model: "fraud".into(),
            version: "v2".into(),
            feature,
            segment,
        };
        let start = Timestamp(t0().0 + w * 900_000);
        let mut it = self
            .node
            .store
            .windows(&key, Resolution::M15, start, Timestamp(start.0 + 1))
            .unwrap();
        it.next().map(|w| w.unwrap().state)
    }
}

pub fn file_batches(
    def: &ModelDef,
    path: &Path,
    with_labels: bool,
    size: usize,
) -> Vec<pb::InferenceBatch> {
    let mut b = BatchBuilder::new(def, with_labels);
    let mut out = Vec::new();
    read_records(
        path,
        &Arc::new(AtomicU64::new(0)),
        |r| {
            b.push(&r).unwrap();
            if b.len() >= size {
                out.push(b.take());
            }
            Ok(())
        },
        |line, e| panic!("line {line}: {e}"),
    )
    .unwrap();
    if !b.is_empty() {
        out.push(b.take());
    }
    out
}

pub fn label_batch(path: &Path) -> pb::LabelBatch {
    let mut labels = Vec::new();
    read_records(
        path,
        &Arc::new(AtomicU64::new(0)),
        |r| {
            labels.push(label_from_record(&r).unwrap());
            Ok(())
        },
        |line, e| panic!("line {line}: {e}"),
    )
    .unwrap();
    pb::LabelBatch {
        model_id: "fraud".into(),
        labels,
        ..Default::default()
    }
}

fn numeric(s: SeriesState) -> driftdb_engine::sketch::NumericState {
    match s {
        SeriesState::Numeric(n) => n,
        other => panic!("expected numeric, got {}", other.kind_name()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_scenario_round_trips_through_the_server() {
    let mut s = TestServer::start().await;
    let def = s.create_golden_model().await;
    let exp = expected();
    let summary = s.load_reference(&def).await;
    assert_eq!((summary.rows, summary.rejected), (20_000, 0));
    // The stored reference has the exact golden edges.
    let m = s.node.registry.get("fraud").unwrap();
    {
        let refs = m.references.read().unwrap();
        let p = refs.get("v2").unwrap();
        let amount = p
            .series(&FeatureRef::Named("amount".into()), &Segment::All)
            .unwrap()
            .numeric()
            .unwrap();
        let want: Vec<f64> = exp["reference"]["numeric"]["amount"]["edges_q10"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(amount.edges.as_ref().unwrap().q10.edges(), want.as_slice());
        assert_eq!(
            amount.state.count(),
            exp["reference"]["numeric"]["amount"]["count"]
                .as_u64()
                .unwrap()
        );
        // In memory the profile has no sketches (reading one is an error, not an empty CDF);
        // the whole profile, read back from the store, has them and agrees on the rest.
        assert!(amount.state.cdf().is_err());
        let whole =
            driftdb_query::Catalog::reference_with_sketches(&*s.node.registry, "fraud", "v2")
                .unwrap();
        let full = whole
            .series(&FeatureRef::Named("amount".into()), &Segment::All)
            .unwrap()
            .numeric()
            .unwrap();
        assert_eq!(full.state.cdf().unwrap().total(), full.state.count());
        assert_eq!(
            full.state.bins().unwrap().counts,
            amount.state.bins().unwrap().counts
        );
        assert_eq!(full.quantiles, amount.quantiles);
        assert!(
            driftdb_query::Catalog::reference_with_sketches(&*s.node.registry, "fraud", "v9")
                .is_none()
        );
    }
    let batches = file_batches(&def, &golden("windows.jsonl"), false, 1000);
    let n_batches = batches.len();
    let acks = s.ingest(batches).await.unwrap();
    assert_eq!(acks.len(), n_batches);
    let accepted: u64 = acks.iter().map(|a| a.accepted).sum();
    assert_eq!(accepted, 16_000);
    assert!(acks.iter().all(|a| a.rejected == 0));
    for w in 0..8i64 {
        let ew = &exp["windows"][w as usize];
        for col in ["amount", "age", "session_s", "balance", "risk"] {
            let n = numeric(
                s.window(FeatureRef::Named(col.into()), Segment::All, w)
                    .unwrap(),
            );
            let e = &ew["numeric"][col];
            assert_eq!(
                n.count(),
                e["count"].as_u64().unwrap(),
                "window {w} {col} count"
            );
            assert_eq!(
                n.missing(),
                e["missing"].as_u64().unwrap(),
                "window {w} {col} missing"
            );
            assert_eq!(n.min(), e["min"].as_f64(), "window {w} {col} min");
            assert_eq!(n.max(), e["max"].as_f64(), "window {w} {col} max");
            let mean = e["mean"].as_f64().unwrap();
            assert!(
                (n.mean().unwrap() - mean).abs() <= 1e-9 * mean.abs(),
                "window {w} {col} mean"
            );
        }
        match s
            .window(FeatureRef::Named("merchant_cat".into()), Segment::All, w)
            .unwrap()
        {
            SeriesState::Categorical(c) => {
                let want: std::collections::BTreeMap<String, u64> =
                    ew["categorical"]["merchant_cat"]["counts"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                        .collect();
                assert_eq!(c.counts(), want, "window {w} merchant_cat");
                let unseen: u64 = ew["categorical"]["merchant_cat"]["unseen_categories"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| want[k.as_str().unwrap()])
                    .sum();
                assert_eq!(c.unseen(), unseen, "window {w} unseen");
            }
            other => panic!("{}", other.kind_name()),
        }
        // By segment: channel=app counts.
        let app = Segment::Value {
            key: "channel".into(),
            value: "app".into(),
        };
        let n = numeric(
            s.window(FeatureRef::Named("amount".into()), app, w)
                .unwrap(),
        );
        assert_eq!(
            n.count(),
            ew["by_segment"]["channel"]["app"]["numeric"]["amount"]["count"]
                .as_u64()
                .unwrap()
        );
    }
    // Labels: all of them, then per-window labelled counts and ECE match.
    let ack = s
        .labels(label_batch(&golden("labels.jsonl")))
        .await
        .unwrap();
    assert_eq!(ack.rejected, 0);
    assert_eq!(ack.pending, 0);
    for w in 0..8i64 {
        let ew = &exp["windows"][w as usize]["performance"];
        match s.window(FeatureRef::Score, Segment::All, w).unwrap() {
            SeriesState::Score(sc) => {
                assert_eq!(sc.predictions, 2000);
                let b = sc.performance.binary.as_ref().unwrap();
                assert_eq!(
                    b.n,
                    ew["n_labeled"].as_u64().unwrap(),
                    "window {w} n_labeled"
                );
                let conf = ew["confusion_at_0_5"].clone();
                assert_eq!(b.confusion[0], conf["tp"].as_u64().unwrap());
                assert!(
                    (sc.label_coverage().unwrap() - ew["label_coverage"].as_f64().unwrap()).abs()
                        < 1e-12
                );
            }
            other => panic!("{}", other.kind_name()),
        }
    }
    // Replaying the same labels joins nothing twice.
    let again = s
        .labels(label_batch(&golden("labels.jsonl")))
        .await
        .unwrap();
    assert_eq!((again.joined, again.duplicates), (0, ack.joined));
    s.running.take().unwrap().shutdown().await.unwrap();
}

pub fn small_batch(ids: &[&str], ts: i64, amount: Vec<f64>) -> pb::InferenceBatch {
    let n = ids.len();
    pb::InferenceBatch {
        model_id: "fraud".into(),
        request_ids: ids.iter().map(|s| s.to_string()).collect(),
        ts_ms: vec![ts; n],
        model_versions: vec!["v2".into()],
        segments: vec![pb::SegmentColumn {
            key: "channel".into(),
            values: vec!["web".into(); n],
        }],
        features: vec![pb::FeatureColumn {
            name: "amount".into(),
            numbers: amount,
            ..Default::default()
        }],
        scores: vec![0.7; n],
        ..Default::default()
    }
}

fn count_rows(s: &TestServer, w: i64) -> u64 {
    match s.window(FeatureRef::Score, Segment::All, w) {
        Some(SeriesState::Score(sc)) => sc.predictions,
        None => 0,
        Some(other) => panic!("{}", other.kind_name()),
    }
}

fn labelled(s: &TestServer, w: i64) -> u64 {
    match s.window(FeatureRef::Score, Segment::All, w) {
        Some(SeriesState::Score(sc)) => sc.performance.n_labeled(),
        _ => 0,
    }
}

fn label(id: &str, ts: i64, y: f64) -> pb::Label {
    pb::Label {
        request_id: id.into(),
        ts_ms: ts,
        label: Some(y),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_joins_in_any_order_once_and_expire() {
    let mut s = TestServer::start().await;
    s.create_golden_model().await;
    let ts = t0().0 + 60_000; // window 0
    // In order: prediction, then label.
    s.ingest(vec![small_batch(&["a1", "a2"], ts, vec![1.0, 2.0])])
        .await
        .unwrap();
    let ack = s
        .labels(pb::LabelBatch {
            model_id: "fraud".into(),
            labels: vec![label("a1", ts + 1000, 1.0)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((ack.joined, ack.pending), (1, 0));
    assert_eq!(labelled(&s, 0), 1);
    // Out of order: label first (held), then its prediction joins it.
    let ack = s
        .labels(pb::LabelBatch {
            model_id: "fraud".into(),
            labels: vec![label("b1", ts, 0.0)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((ack.joined, ack.pending), (0, 1));
    assert_eq!(labelled(&s, 0), 1);
    s.ingest(vec![small_batch(&["b1"], ts, vec![3.0])])
        .await
        .unwrap();
    assert_eq!(labelled(&s, 0), 2);
    // Duplicated: the same label again, and inside one batch, joins nothing more.
    let ack = s
        .labels(pb::LabelBatch {
            model_id: "fraud".into(),
            labels: vec![
                label("a1", ts + 2000, 1.0),
                label("a2", ts, 0.0),
                label("a2", ts, 0.0),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((ack.joined, ack.duplicates), (1, 2));
    assert_eq!(labelled(&s, 0), 3);
    // Expired: a label more than max_label_delay (30d) after its prediction's window is counted
    // as expired, not an error, and joins nothing.
    s.ingest(vec![small_batch(&["c1"], ts, vec![4.0])])
        .await
        .unwrap();
    let late = ts + 31 * 86_400_000;
    let ack = s
        .labels(pb::LabelBatch {
            model_id: "fraud".into(),
            labels: vec![label("c1", late, 1.0)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((ack.joined, ack.rejected, ack.expired), (0, 0, 1));
    assert!(ack.errors.is_empty(), "{:?}", ack.errors);
    assert_eq!(labelled(&s, 0), 3);
    // Duplicate prediction ids are skipped, and a replayed (producer, sequence) is not applied.
    let before = count_rows(&s, 0);
    let mut b = small_batch(&["a1", "d1"], ts, vec![1.0, 5.0]);
    b.producer_id = "p".into();
    b.sequence = 7;
    let ack = s.ingest(vec![b.clone()]).await.unwrap();
    assert_eq!((ack[0].accepted, ack[0].duplicates), (1, 1));
    let ack = s.ingest(vec![b]).await.unwrap();
    assert!(ack[0].replayed);
    assert_eq!(count_rows(&s, 0), before + 1);
    s.running.take().unwrap().shutdown().await.unwrap();
}

/// Sends `raw` as the only message of an `IngestInferences` stream, bytes as they are;
/// returns the acks or the stream's status.
async fn send_raw_batch(
    url: &str,
    raw: Vec<u8>,
) -> Result<Vec<pb::BatchAck>, (tonic::Code, String)> {
    #[derive(Clone, Copy)]
    struct Raw;
    impl tonic::codec::Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = pb::BatchAck;
        type Encoder = Raw;
        type Decoder = tonic_prost::ProstDecoder<pb::BatchAck>;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Self::Decoder {
            tonic_prost::ProstDecoder::default()
        }
    }
    impl tonic::codec::Encoder for Raw {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(
            &mut self,
            item: Vec<u8>,
            buf: &mut tonic::codec::EncodeBuf<'_>,
        ) -> Result<(), tonic::Status> {
            bytes::BufMut::put_slice(buf, &item);
            Ok(())
        }
    }
    let status = |e: tonic::Status| (e.code(), e.message().to_string());
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut acks = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(vec![raw])),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/driftdb.v1.Ingest/IngestInferences",
            ),
            Raw,
        )
        .await
        .map_err(status)?
        .into_inner();
    let mut out = Vec::new();
    while let Some(a) = acks.next().await {
        out.push(a.map_err(status)?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_error_and_changes_nothing() {
    let mut s = TestServer::start().await;
    s.create_golden_model().await;
    let ts = t0().0 + 60_000;
    s.ingest(vec![small_batch(&["ok1"], ts, vec![1.0])])
        .await
        .unwrap();
    let baseline = count_rows(&s, 0);
    let code = |r: Result<Vec<pb::BatchAck>, tonic::Status>| {
        r.err().map(|e| (e.code(), e.message().to_string()))
    };
    // Unknown model.
    let mut b = small_batch(&["x1"], ts, vec![1.0]);
    b.model_id = "nope".into();
    let (c, m) = code(s.ingest(vec![b]).await).unwrap();
    assert_eq!(c, tonic::Code::NotFound, "{m}");
    // Unknown feature.
    let mut b = small_batch(&["x2"], ts, vec![1.0]);
    b.features[0].name = "height".into();
    let (c, m) = code(s.ingest(vec![b]).await).unwrap();
    assert_eq!(c, tonic::Code::InvalidArgument);
    assert!(m.contains("unknown feature"), "{m}");
    // Wrong type: strings for a numeric feature.
    let mut b = small_batch(&["x3"], ts, vec![]);
    b.features[0].categories = vec!["12.5".into()];
    let (c, m) = code(s.ingest(vec![b]).await).unwrap();
    assert_eq!(c, tonic::Code::InvalidArgument);
    assert!(m.contains("numeric"), "{m}");
    // Ragged columns.
    let b = small_batch(&["x4", "x5"], ts, vec![1.0]);
    let (c, m) = code(s.ingest(vec![b]).await).unwrap();
    assert_eq!(c, tonic::Code::InvalidArgument);
    assert!(m.contains("1 values for 2 rows"), "{m}");
    // Oversized batch.
    let ids: Vec<String> = (0..100_001).map(|i| format!("big{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
    let (c, m) = code(
        s.ingest(vec![small_batch(&refs, ts, vec![1.0; 100_001])])
            .await,
    )
    .unwrap();
    // Retrying cannot help: INVALID_ARGUMENT (clients retry RESOURCE_EXHAUSTED).
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("limit of 100000; split it"), "{m}");
    // Malformed protobuf: a valid batch cut short inside its feature column, and bytes that
    // are no protobuf at all.
    let whole = prost::Message::encode_to_vec(&small_batch(&["x6"], ts, vec![1.0]));
    let url = format!("http://{}", s.running.as_ref().unwrap().bound.grpc);
    for raw in [whole[..whole.len() - 3].to_vec(), vec![0xff; 64]] {
        let (c, m) = send_raw_batch(&url, raw).await.unwrap_err();
        assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
        assert!(m.contains("malformed protobuf"), "{m}");
    }
    assert_eq!(
        count_rows(&s, 0),
        baseline,
        "rejected batches changed the store"
    );
    // Row-level: NaN is counted invalid (row accepted, value not folded); too old and too far in
    // the future are rejected with reasons.
    let mut b = small_batch(&["n1", "old", "future"], ts, vec![f64::NAN, 1.0, 1.0]);
    b.model_versions = vec!["v2".into(); 3];
    b.ts_ms = vec![
        ts,
        t0().0 - 200 * 86_400_000,
        driftdb_engine::time::Clock::now(&s.clock).0 + 2 * 3_600_000,
    ];
    let ack = s.ingest(vec![b]).await.unwrap().remove(0);
    assert_eq!((ack.accepted, ack.rejected, ack.invalid_values), (1, 2, 1));
    let reasons: Vec<&str> = ack.errors.iter().map(|e| e.reason.as_str()).collect();
    assert!(
        reasons[0].contains("older than the retention"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("future"), "{reasons:?}");
    match s
        .window(FeatureRef::Named("amount".into()), Segment::All, 0)
        .unwrap()
    {
        SeriesState::Numeric(n) => assert_eq!((n.count(), n.invalid()), (1, 1)),
        other => panic!("{}", other.kind_name()),
    }
    // A 50 MB category value is rejected by row (its neighbour is stored) and stored nowhere;
    // the error says how long it was, without echoing it.
    let mut b = small_batch(&["huge", "small"], ts, vec![1.0, 2.0]);
    b.model_versions = vec!["v2".into(); 2];
    b.features.push(pb::FeatureColumn {
        name: "browser".into(),
        categories: vec!["x".repeat(50 << 20), "safari".into()],
        ..Default::default()
    });
    let ack = s.ingest(vec![b]).await.unwrap().remove(0);
    assert_eq!((ack.accepted, ack.rejected), (1, 1));
    assert_eq!(ack.errors[0].request_id, "huge");
    assert!(
        ack.errors[0]
            .reason
            .contains("category value of 52428800 bytes is longer than 1024"),
        "{:?}",
        ack.errors[0].reason
    );
    match s
        .window(FeatureRef::Named("browser".into()), Segment::All, 0)
        .unwrap()
    {
        SeriesState::Categorical(c) => {
            assert_eq!(c.count(), 1);
            assert!(
                c.counts().keys().all(|k| k.len() <= 1024),
                "a huge value was kept"
            );
        }
        other => panic!("{}", other.kind_name()),
    }
    // A 1 MB feature name is refused with a clipped echo, not 1 MB of error text.
    let mut b = small_batch(&["long"], ts, vec![1.0]);
    b.features[0].name = "f".repeat(1 << 20);
    let (c, m) = code(s.ingest(vec![b]).await).unwrap();
    assert_eq!(c, tonic::Code::InvalidArgument);
    assert!(
        m.len() < 512 && m.contains("(1048576 bytes)"),
        "{}",
        m.len()
    );
    // Labels: unknown request id is held, a non-binary label is rejected.
    let ack = s
        .labels(pb::LabelBatch {
            model_id: "fraud".into(),
            labels: vec![label("ghost", ts, 1.0), label("ok1", ts, 2.0)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((ack.pending, ack.rejected), (1, 1));
    assert!(ack.errors[0].reason.contains("0 or 1"));
    // The server is still up and serving.
    assert_eq!(
        s.client
            .models
            .list_models(pb::ListModelsRequest {})
            .await
            .unwrap()
            .into_inner()
            .models
            .len(),
        1
    );
    s.running.take().unwrap().shutdown().await.unwrap();
}

/// Batches of one model fold concurrently (the pipeline in `server::ingest`): streams racing
/// with overlapping request ids must still count every id once, and labels racing the
/// predictions they label must join each exactly once (held or joined, never lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_count_every_request_id_once() {
    let mut s = TestServer::start().await;
    s.create_golden_model().await;
    let ts = t0().0 + 60_000; // window 0
    // 4 streams × 10 batches of 50 ids drawn from 600 distinct ids: heavy overlap.
    let mut tasks = Vec::new();
    for stream in 0..4u64 {
        let mut client = s.client.clone();
        tasks.push(tokio::spawn(async move {
            let batches: Vec<pb::InferenceBatch> = (0..10u64)
                .map(|b| {
                    let ids: Vec<String> = (0..50u64)
                        .map(|i| format!("id{}", (stream * 131 + b * 53 + i * 7) % 600))
                        .collect();
                    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    let mut batch = small_batch(&ids, ts, vec![1.5; ids.len()]);
                    batch.producer_id = format!("p{stream}");
                    batch.sequence = b + 1;
                    batch
                })
                .collect();
            let mut acks = client
                .ingest
                .ingest_inferences(tokio_stream::iter(batches))
                .await
                .unwrap()
                .into_inner();
            let (mut accepted, mut duplicates) = (0u64, 0u64);
            while let Some(a) = acks.next().await {
                let a = a.unwrap();
                accepted += a.accepted;
                duplicates += a.duplicates;
            }
            (accepted, duplicates)
        }));
    }
    // Labels for some of the ids race the predictions.
    let mut labeller = s.client.clone();
    let labels = tokio::spawn(async move {
        let mut joined_or_held = 0;
        for chunk in 0..6u64 {
            let batch = pb::LabelBatch {
                model_id: "fraud".into(),
                labels: (0..20u64)
                    .map(|i| label(&format!("id{}", chunk * 20 + i), ts + 1000, 1.0))
                    .collect(),
                ..Default::default()
            };
            let mut acks = labeller
                .ingest
                .ingest_labels(tokio_stream::iter(vec![batch]))
                .await
                .unwrap()
                .into_inner();
            let a = acks.next().await.unwrap().unwrap();
            joined_or_held += a.joined + a.pending;
        }
        joined_or_held
    });
    let mut distinct = std::collections::BTreeSet::new();
    for stream in 0..4u64 {
        for b in 0..10u64 {
            for i in 0..50u64 {
                distinct.insert((stream * 131 + b * 53 + i * 7) % 600);
            }
        }
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for t in tasks {
        let (a, d) = t.await.unwrap();
        accepted += a;
        duplicates += d;
    }
    assert_eq!(
        labels.await.unwrap(),
        120,
        "every label joins or is held once"
    );
    assert_eq!(accepted, distinct.len() as u64);
    assert_eq!(accepted + duplicates, 4 * 10 * 50);
    assert_eq!(count_rows(&s, 0), distinct.len() as u64);
    // Every label whose prediction exists has joined by now, each exactly once.
    let labelled_ids = (0..120u64).filter(|i| distinct.contains(i)).count() as u64;
    assert_eq!(labelled(&s, 0), labelled_ids);
    s.running.take().unwrap().shutdown().await.unwrap();
}

/// A batch of producer `pp` with 50 ids of its own (`b{seq}-{i}`) in window 0.
fn seq_batch(seq: u64) -> pb::InferenceBatch {
    let ids: Vec<String> = (0..50).map(|i| format!("b{seq}-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut b = small_batch(&ids, t0().0 + 60_000, vec![2.5; ids.len()]);
    b.producer_id = "pp".into();
    b.sequence = seq;
    b
}

/// One stream with every batch sent at once: the server stages the next batch while the
/// previous one writes (`server::grpc::inference_stream`). Acknowledgements come back in
/// stream order, and the first refusal ends the stream with nothing after it applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_stream_acknowledges_in_order_and_stops_at_the_first_refusal() {
    let mut s = TestServer::start().await;
    s.create_golden_model().await;
    let mut batches: Vec<pb::InferenceBatch> = (1..=12).map(seq_batch).collect();
    // Batch 7 names a feature the model does not have: refused as a whole.
    batches[6].features[0].name = "no_such_feature".into();
    let mut acks = s
        .client
        .ingest
        .ingest_inferences(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut sequences = Vec::new();
    let mut refusal = None;
    while let Some(a) = acks.next().await {
        match a {
            Ok(a) => {
                assert_eq!((a.accepted, a.duplicates, a.replayed), (50, 0, false));
                sequences.push(a.sequence);
            }
            Err(st) => {
                refusal = Some(st);
                break;
            }
        }
    }
    assert_eq!(sequences, (1..=6).collect::<Vec<u64>>());
    let st = refusal.expect("batch 7 is refused");
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("no_such_feature"), "{}", st.message());
    assert!(acks.next().await.is_none(), "the refusal ends the stream");
    assert_eq!(
        count_rows(&s, 0),
        6 * 50,
        "nothing behind the refusal applied"
    );
    // Sent again from the refused batch (fixed), the rest is applied once, none as a replay.
    let again: Vec<pb::InferenceBatch> = (7..=12).map(seq_batch).collect();
    let mut acks = s
        .client
        .ingest
        .ingest_inferences(tokio_stream::iter(again))
        .await
        .unwrap()
        .into_inner();
    let mut applied = 0;
    while let Some(a) = acks.next().await {
        let a = a.unwrap();
        assert!(!a.replayed, "batch {} taken for a replay", a.sequence);
        applied += a.accepted;
    }
    assert_eq!(applied, 6 * 50);
    assert_eq!(count_rows(&s, 0), 12 * 50);
    s.running.take().unwrap().shutdown().await.unwrap();
}

/// The chain between the batches of one stream: when an earlier batch fails after a later
/// one was staged behind it, the later one writes nothing (its producer sequence would
/// otherwise make the earlier one, sent again, look like a replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_staged_behind_a_failed_one_writes_nothing() {
    use driftdb_server::auth::Principal;
    use driftdb_server::convert::{batch_from_pb, source};
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut s = TestServer::start().await;
    s.create_golden_model().await;
    let who = Principal::unrestricted();
    let model = s.node.model(&who, "fraud").unwrap();
    let stage = |seq: u64| {
        let (batch, _) = batch_from_pb(seq_batch(seq), &model.def.features).unwrap();
        s.node
            .stage_inferences(Arc::clone(&model), batch, source("pp", seq))
    };
    let first = stage(1).await.unwrap();
    let second = stage(2).await.unwrap();
    // The first batch fails: it sets the stream's flag and gives up its turn.
    let broken = Arc::new(AtomicBool::new(true));
    drop(first);
    let err = s
        .node
        .write_staged("fraud", second, Some(Arc::clone(&broken)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("earlier batch"), "{err}");
    assert_eq!(count_rows(&s, 0), 0);
    // Both sent again, on a healthy stream: both applied, neither a replay.
    broken.store(false, Ordering::SeqCst);
    for seq in [1, 2] {
        let staged = stage(seq).await.unwrap();
        let ack = s
            .node
            .write_staged("fraud", staged, Some(Arc::clone(&broken)))
            .await
            .unwrap();
        assert_eq!((ack.accepted, ack.replayed), (50, false), "batch {seq}");
    }
    assert_eq!(count_rows(&s, 0), 100);
    s.running.take().unwrap().shutdown().await.unwrap();
}

/// What a one-batch inference stream answers: its ack, or the error it ends with.
async fn answer(s: &mut TestServer, b: pb::InferenceBatch) -> Result<pb::BatchAck, tonic::Status> {
    s.client
        .ingest
        .ingest_inferences(tokio_stream::iter(vec![b]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
}

/// A categorical column sent dictionary-encoded (`dictionary` + `codes`) folds to the same
/// state as the same values sent as one string per row; a code past the dictionary refuses
/// the batch, unless its row is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionary_coded_categories_fold_like_strings() {
    let mut s = TestServer::start().await;
    s.create_golden_model().await;
    let values = ["chrome", "safari", "", "chrome", "edge", "chrome", "safari"];
    let missing_row = 2u32;
    let send = |w: i64, col: pb::FeatureColumn| {
        let ids: Vec<String> = (0..values.len()).map(|i| format!("d{w}-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut b = small_batch(&ids, t0().0 + w * 900_000 + 1_000, vec![1.0; values.len()]);
        b.features.push(col);
        b
    };
    let strings = pb::FeatureColumn {
        name: "browser".into(),
        categories: values.iter().map(|v| v.to_string()).collect(),
        missing: vec![missing_row],
        ..Default::default()
    };
    // "chrome" twice in the dictionary: both codes count as the one value.
    let coded = pb::FeatureColumn {
        name: "browser".into(),
        dictionary: vec![
            "safari".into(),
            "chrome".into(),
            "edge".into(),
            "chrome".into(),
        ],
        codes: vec![1, 0, 99, 3, 2, 1, 0],
        missing: vec![missing_row],
        ..Default::default()
    };
    for (w, col) in [(0, strings), (1, coded)] {
        let ack = answer(&mut s, send(w, col)).await.unwrap();
        assert_eq!((ack.accepted, ack.rejected), (7, 0), "window {w}");
    }
    let state = |w: i64| match s.window(FeatureRef::Named("browser".into()), Segment::All, w) {
        Some(SeriesState::Categorical(c)) => (c.count(), c.missing(), c.counts()),
        other => panic!("window {w}: {other:?}"),
    };
    let want: std::collections::BTreeMap<String, u64> = [
        ("chrome".to_string(), 3),
        ("safari".into(), 2),
        ("edge".into(), 1),
    ]
    .into();
    assert_eq!(state(0), (6, 1, want.clone()));
    assert_eq!(state(1), state(0));

    // A code past the dictionary on a row that is not missing: the batch is refused.
    let bad = pb::FeatureColumn {
        name: "browser".into(),
        dictionary: vec!["safari".into()],
        codes: vec![0, 0, 0, 0, 0, 1, 0],
        ..Default::default()
    };
    let err = answer(&mut s, send(2, bad)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("row 5: code 1 is past the dictionary of 1 values"),
        "{}",
        err.message()
    );
    // Strings and codes together are ambiguous: refused too.
    let both = pb::FeatureColumn {
        name: "browser".into(),
        categories: values.iter().map(|v| v.to_string()).collect(),
        dictionary: vec!["safari".into()],
        codes: vec![0; values.len()],
        ..Default::default()
    };
    let err = answer(&mut s, send(3, both)).await.unwrap_err();
    assert!(
        err.message()
            .contains("both categories and dictionary codes"),
        "{}",
        err.message()
    );
    assert_eq!(count_rows(&s, 2) + count_rows(&s, 3), 0);
}
