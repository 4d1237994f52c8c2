//! `driftdb bench ingest`: an end-to-end load generator over gRPC loopback (BENCHMARKS.md).
//!
//! It starts an embedded server on a data directory (a temp dir unless `--data`), registers a
//! model (default 500 numeric features, 2 segment keys), uploads a reference so states bin on
//! real edges, then streams pre-generated batches with unique request ids from several
//! concurrent streams, each batch acknowledged after its durable write (WAL fsync). It reports
//! feature-values/s and rows/s, the in-process fold rate on the same batches (the server's own
//! fold and encoding path on the same threads, without gRPC and RocksDB: the ceiling), their
//! ratio, the CPU time the process used during the run, and its peak RSS.
//!
//! The client shares the machine's cores with the server, so it does as little as a client
//! can: each pooled batch's columns are protobuf-encoded once, and a send encodes only its
//! own request ids, producer and sequence in front of them (protobuf fields may come in any
//! order; the server decodes the same message either way). In production the inference
//! services encode their batches on their own machines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use driftdb_engine::ingest::{
    InferenceBatch, SegmentRegistry, TimeBounds, fold_planned, plan_batch,
};
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::time::{Clock, Resolution, SystemClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_storage::StoreConfig;
use tokio_stream::StreamExt;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::output;
use crate::rng::SplitMix as Rng;
use driftdb_server::convert::{batch_from_pb, model_to_pb};
use driftdb_server::ingest::{encode_deltas, fold_threads};
use driftdb_server::node::Node;

/// Options of `driftdb bench ingest`.
#[derive(Debug, Args, Clone)]
pub struct IngestBenchArgs {
    /// Numeric features of the generated model.
    #[arg(long, default_value_t = 500)]
    pub features: usize,
    /// Of which categorical (the rest numeric).
    #[arg(long, default_value_t = 0)]
    pub categorical: usize,
    /// Segment keys.
    #[arg(long, default_value_t = 2)]
    pub segments: usize,
    /// Distinct values per segment key.
    #[arg(long, default_value_t = 8)]
    pub segment_values: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Total rows to send.
    #[arg(long, default_value_t = 200_000)]
    pub rows: usize,
    /// Concurrent gRPC streams.
    #[arg(long, default_value_t = 2)]
    pub streams: usize,
    /// Data directory (default: a fresh temp dir, removed afterwards).
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
    /// Skip the WAL fsync before each ack (not durable against power loss; for comparison).
    #[arg(long)]
    pub no_sync: bool,
    /// Merge every delta into its day's rollup on write (`rollup_after` 0, every delta
    /// written twice) instead of behind the write path; for comparison.
    #[arg(long)]
    pub rollup_on_write: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn model(a: &IngestBenchArgs) -> ModelDef {
    let mut features = BTreeMap::new();
    for i in 0..a.features {
        let kind = if i < a.categorical {
            FeatureKind::Categorical
        } else {
            FeatureKind::Numeric
        };
        features.insert(format!("f{i:03}"), kind);
    }
    ModelDef {
        id: "bench".into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: (0..a.segments).map(|i| format!("s{i}")).collect(),
        segment_cap: 64,
        features,
        sampling: 1.0,
        team: None,
    }
}

/// A batch of `n` rows with request ids `{prefix}-{i}` at `ts`.
pub(crate) fn gen_batch(
    def: &ModelDef,
    a: &IngestBenchArgs,
    rng: &mut Rng,
    prefix: &str,
    n: usize,
    ts: i64,
    with_labels: bool,
) -> pb::InferenceBatch {
    let mut b = pb::InferenceBatch {
        model_id: def.id.clone(),
        model_versions: vec!["v1".into()],
        request_ids: (0..n).map(|i| format!("{prefix}-{i}")).collect(),
        ts_ms: vec![ts; n],
        ..Default::default()
    };
    for s in &def.segments {
        b.segments.push(pb::SegmentColumn {
            key: s.clone(),
            values: (0..n)
                .map(|_| format!("v{}", rng.next_u64() % a.segment_values as u64))
                .collect(),
        });
    }
    for (j, (name, kind)) in def.features.iter().enumerate() {
        let mut col = pb::FeatureColumn {
            name: name.clone(),
            ..Default::default()
        };
        match kind {
            FeatureKind::Numeric => {
                col.numbers = (0..n)
                    .map(|_| (rng.unit() * 100.0 + j as f64).ln())
                    .collect()
            }
            FeatureKind::Categorical => {
                col.categories = (0..n)
                    .map(|_| format!("c{}", rng.next_u64() % 20))
                    .collect()
            }
        }
        b.features.push(col);
    }
    b.scores = (0..n).map(|_| rng.unit()).collect();
    b.latency_ms = (0..n).map(|_| 5.0 + 20.0 * rng.unit()).collect();
    if with_labels {
        b.labels = (0..n).map(|_| (rng.next_u64() % 2) as f64).collect();
    }
    b
}

/// `b` without its model id, producer, sequence and request ids, protobuf-encoded: the part
/// of a send the bench client encodes once.
fn encoded_columns(b: &pb::InferenceBatch) -> bytes::Bytes {
    let columns = pb::InferenceBatch {
        model_id: String::new(),
        producer_id: String::new(),
        sequence: 0,
        request_ids: Vec::new(),
        ..b.clone()
    };
    prost::Message::encode_to_vec(&columns).into()
}

/// One `InferenceBatch` on the wire: the encoded fields of this send followed by the encoded
/// columns shared by every send of the same pooled batch.
#[derive(Debug)]
struct PreEncoded {
    head: Vec<u8>,
    columns: bytes::Bytes,
}

/// The bench client's codec: writes [`PreEncoded`] bytes as they are, decodes acks with prost.
#[derive(Debug, Clone, Copy)]
struct PreEncodedCodec;

impl tonic::codec::Codec for PreEncodedCodec {
    type Encode = PreEncoded;
    type Decode = pb::BatchAck;
    type Encoder = PreEncodedCodec;
    type Decoder = tonic_prost::ProstDecoder<pb::BatchAck>;

    fn encoder(&mut self) -> Self::Encoder {
        PreEncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

impl tonic::codec::Encoder for PreEncodedCodec {
    type Item = PreEncoded;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: PreEncoded,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> std::result::Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item.head);
        buf.put_slice(&item.columns);
        Ok(())
    }
}

/// CPU time (user + system) the process has used so far, in seconds, from `/proc/self/stat`
/// (clock ticks of 10 ms); `None` where that file does not exist.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Runs the benchmark and prints its figures.
pub async fn ingest(a: IngestBenchArgs) -> Result<()> {
    ingest_measured(a).await.map(|_| ())
}

/// Runs `bench ingest`, prints its result and returns it as the JSON object `--json` prints.
pub async fn ingest_measured(a: IngestBenchArgs) -> Result<serde_json::Value> {
    if a.features == 0 || a.batch == 0 || a.streams == 0 || a.categorical > a.features {
        return Err(Error::Invalid(
            "features, batch and streams must be positive; categorical <= features".into(),
        ));
    }
    let def = model(&a);
    let tmp;
    let dir = match &a.data {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
            tmp.path().to_path_buf()
        }
    };
    let cfg = StoreConfig {
        sync_writes: !a.no_sync,
        rollup_after_ms: if a.rollup_on_write {
            0
        } else {
            StoreConfig::default().rollup_after_ms
        },
        ..StoreConfig::default()
    };
    let node = tokio::task::spawn_blocking(move || {
        Node::open(
            &dir,
            cfg,
            Arc::new(SystemClock),
            driftdb_server::auth::AuthMode::Disabled,
        )
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let running = driftdb_server::serve::start(
        node.clone(),
        "127.0.0.1:0"
            .parse()
            .map_err(|_| Error::Internal("addr".into()))?,
        "127.0.0.1:0"
            .parse()
            .map_err(|_| Error::Internal("addr".into()))?,
    )
    .await?;
    let url = format!("http://{}", running.bound.grpc);
    let mut client = Client::connect(&url).await?;
    client
        .models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&def, vec![])),
        })
        .await?;
    let now = SystemClock.now().millis();
    let mut rng = Rng(0x5eed);
    // Reference: 5,000 labelled rows.
    let reference = gen_batch(&def, &a, &mut rng, "ref", 5000, now - 86_400_000, true);
    let chunks = vec![
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
                model_id: def.id.clone(),
                model_version: "v1".into(),
                replace: false,
            })),
        },
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Rows(reference)),
        },
    ];
    client
        .models
        .upload_reference(tokio_stream::iter(chunks))
        .await?;
    // Pre-generate a pool of batches; request ids are rewritten per send.
    let pool: Vec<pb::InferenceBatch> = (0..4)
        .map(|i| gen_batch(&def, &a, &mut rng, &format!("pool{i}"), a.batch, now, false))
        .collect();
    // In-process fold ceiling: the same batches through the server's fold, no gRPC, no RocksDB.
    let engine_batches: Vec<InferenceBatch> = pool
        .iter()
        .map(|b| batch_from_pb(b.clone(), &def.features).map(|x| x.0))
        .collect::<Result<_, _>>()?;
    let fold_rows = (a.rows / 4).clamp(a.batch, 50_000);
    let bounds = TimeBounds {
        oldest: Timestamp(now - 86_400_000),
        newest: Timestamp(now + 3_600_000),
    };
    let refs = node
        .registry
        .get(&def.id)?
        .references
        .read()
        .map_err(|_| Error::Internal("lock".into()))?
        .clone();
    // The ceiling is the server's own fold path (row pass, column fold, encoding of the
    // deltas) on the same threads it uses; the one-thread figure is printed beside it.
    let threads = fold_threads();
    let fold_rate = |threads: usize| -> f64 {
        let t0 = Instant::now();
        let mut folded = 0usize;
        let mut reg = SegmentRegistry::new(64);
        while folded < fold_rows {
            for b in &engine_batches {
                let plan = plan_batch(&def, Resolution::M15, b, &mut reg, bounds, &|_, _| false);
                let out = fold_planned(&def, b, plan, &refs, threads);
                folded += out.accepted;
                let bytes: usize = encode_deltas(&out.deltas, threads)
                    .iter()
                    .map(|(p, _, v)| p.len() + v.len())
                    .sum();
                std::hint::black_box(bytes);
            }
        }
        folded as f64 / t0.elapsed().as_secs_f64()
    };
    let fold_rows_per_s = fold_rate(threads);
    let fold_1_rows_per_s = if threads > 1 {
        fold_rate(1)
    } else {
        fold_rows_per_s
    };
    // End to end.
    let per_stream = a.rows.div_ceil(a.batch).div_ceil(a.streams);
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(pool.iter().map(encoded_columns).collect());
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| Error::Internal(e.to_string()))?
        .connect()
        .await
        .map_err(|e| Error::Internal(format!("connect {url}: {e}")))?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..a.streams {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        let bodies = Arc::clone(&bodies);
        let (model_id, batch) = (def.id.clone(), a.batch);
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<PreEncoded>(2);
            grpc.ready()
                .await
                .map_err(|e| Error::Internal(format!("channel not ready: {e}")))?;
            let mut acks = grpc
                .streaming(
                    tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                    tonic::codegen::http::uri::PathAndQuery::from_static(
                        "/driftdb.v1.Ingest/IngestInferences",
                    ),
                    PreEncodedCodec,
                )
                .await?
                .into_inner();
            let sender = tokio::spawn(async move {
                for k in 0..per_stream {
                    let head = pb::InferenceBatch {
                        model_id: model_id.clone(),
                        producer_id: format!("bench-{s}"),
                        sequence: k as u64 + 1,
                        request_ids: (0..batch).map(|i| format!("s{s}-b{k}-{i}")).collect(),
                        ..Default::default()
                    };
                    let b = PreEncoded {
                        head: prost::Message::encode_to_vec(&head),
                        columns: bodies[k % bodies.len()].clone(),
                    };
                    if tx.send(b).await.is_err() {
                        break;
                    }
                }
            });
            let mut rows = 0u64;
            while let Some(ack) = acks.next().await {
                rows += ack?.accepted;
            }
            sender.await.map_err(|e| Error::Internal(e.to_string()))?;
            Ok::<u64, Error>(rows)
        }));
    }
    let mut rows = 0u64;
    for t in tasks {
        rows += t.await.map_err(|e| Error::Internal(e.to_string()))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    // Client, server and RocksDB's background threads together: how many cores the run
    // kept busy, and the feature-values each CPU-second of the process carried.
    let cpu = cpu0.zip(cpu_seconds()).map_or(0.0, |(a, b)| b - a);
    let rows_per_s = rows as f64 / secs;
    let fv = rows_per_s * a.features as f64;
    let fold_fv = fold_rows_per_s * a.features as f64;
    let fold_1_fv = fold_1_rows_per_s * a.features as f64;
    // The rollup work the write path left behind: every window written here merged into
    // its day, as the maintenance task does once they are `rollup_after` old. Counted in
    // the figure "with rollup" so deferring it is not mistaken for saving it.
    let store = Arc::clone(&node.store);
    let until = Timestamp(now + 2 * 3_600_000);
    let (rollup_secs, rolled) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        store
            .roll_up(until)
            .map(|r| (t.elapsed().as_secs_f64(), r.windows))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let fv_with_rollup = rows as f64 * a.features as f64 / (secs + rollup_secs);
    let rss = crate::rng::peak_rss_mib();
    running.shutdown().await?;
    let summary = serde_json::json!({
        "features": a.features, "segments": a.segments, "batch": a.batch, "streams": a.streams, "rows": rows,
        "seconds": secs, "rows_per_s": rows_per_s, "feature_values_per_s": fv,
        "fold_rows_per_s": fold_rows_per_s, "fold_feature_values_per_s": fold_fv,
        "fold_threads": threads, "fold_1_thread_feature_values_per_s": fold_1_fv,
        "ratio_to_fold": fv / fold_fv, "peak_rss_mib": rss, "durable": !a.no_sync,
        "rollup_on_write": a.rollup_on_write, "rollup_seconds": rollup_secs, "rollup_windows": rolled,
        "feature_values_per_s_with_rollup": fv_with_rollup, "ratio_to_fold_with_rollup": fv_with_rollup / fold_fv,
        "cpu_seconds": cpu, "cores_busy": cpu / secs,
        "feature_values_per_cpu_s": if cpu > 0.0 { rows as f64 * a.features as f64 / cpu } else { 0.0 },
    });
    if a.json {
        output::line(&summary.to_string());
    } else {
        output::line(&format!(
            "ingest over gRPC loopback ({} features, {} segment keys, batches of {}, {} streams, WAL fsync {}):",
            a.features,
            a.segments,
            a.batch,
            a.streams,
            if a.no_sync { "off" } else { "on" }
        ));
        output::line(&format!(
            "  {rows} rows in {secs:.2} s: {rows_per_s:.0} rows/s, {:.2} M feature-values/s",
            fv / 1e6
        ));
        output::line(&format!(
            "  in-process fold ({threads} threads, no gRPC/RocksDB): {fold_rows_per_s:.0} rows/s, {:.2} M feature-values/s (1 thread: {:.2} M)",
            fold_fv / 1e6,
            fold_1_fv / 1e6
        ));
        output::line(&format!(
            "  end-to-end / in-process fold: {:.2}",
            fv / fold_fv
        ));
        if !a.rollup_on_write {
            output::line(&format!(
                "  daily rollup of the {rolled} windows written, behind the write path: {rollup_secs:.2} s; counting it, {:.2} M feature-values/s ({:.2} of the fold)",
                fv_with_rollup / 1e6,
                fv_with_rollup / fold_fv
            ));
        }
        output::line(&format!(
            "  process CPU during the run: {cpu:.1} s ({:.2} cores busy)",
            cpu / secs
        ));
        output::line(&format!("  peak RSS: {:.0} MiB", rss));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the bench client puts on the wire decodes to the batch it stands for.
    #[test]
    fn pre_encoded_send_decodes_to_the_whole_batch() {
        let batch = pb::InferenceBatch {
            model_id: "m".into(),
            producer_id: "bench-1".into(),
            sequence: 7,
            request_ids: vec!["a".into(), "b".into()],
            ts_ms: vec![1, 2],
            model_versions: vec!["v1".into()],
            segments: vec![pb::SegmentColumn {
                key: "region".into(),
                values: vec!["eu".into(), "us".into()],
            }],
            features: vec![pb::FeatureColumn {
                name: "x".into(),
                numbers: vec![0.5, -1.25],
                ..Default::default()
            }],
            scores: vec![0.1, 0.9],
            ..Default::default()
        };
        let head = pb::InferenceBatch {
            model_id: batch.model_id.clone(),
            producer_id: batch.producer_id.clone(),
            sequence: batch.sequence,
            request_ids: batch.request_ids.clone(),
            ..Default::default()
        };
        let sent = PreEncoded {
            head: prost::Message::encode_to_vec(&head),
            columns: encoded_columns(&batch),
        };
        let mut wire = sent.head.clone();
        wire.extend_from_slice(&sent.columns);
        let decoded: pb::InferenceBatch = prost::Message::decode(wire.as_slice()).expect("decodes");
        assert_eq!(decoded, batch);
    }
}
