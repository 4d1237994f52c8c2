//! `driftdb bench kafka`: the Kafka source's consumption rate into durable sketches, beside
//! gRPC ingest of the same rows in the same run.
//!
//! The rows are the `bench ingest` model's (`--features`, 2 segment keys), in batches of
//! `--batch` rows; each batch is one protobuf `InferenceBatch` record (header
//! `content-type: application/x-protobuf`, key `bench`) spread round-robin over
//! `--partitions` partitions of a fresh topic on `--brokers`. Producing happens before the
//! clock starts; the figure is from the consumer's start to the last row's durable write
//! (WAL fsync on), on a fresh embedded node with the same reference as `bench ingest` uploads.
//! Then `bench ingest` runs with as many gRPC streams as there are partitions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use driftdb_engine::model::ModelDef;
use driftdb_engine::time::{Clock, SystemClock};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::{AuthMode, Principal};
use driftdb_server::config::KafkaConfig;
use driftdb_server::convert::batch_from_pb;
use driftdb_server::node::Node;
use driftdb_storage::StoreConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::bench::{IngestBenchArgs, gen_batch, ingest_measured, model};
use crate::error::{Error, Result};
use crate::output;
use crate::rng::SplitMix as Rng;

/// Options of `driftdb bench kafka`.
#[derive(Debug, Args, Clone)]
pub struct KafkaBenchArgs {
    /// Bootstrap brokers of a running Kafka-protocol broker (a fresh topic is created).
    #[arg(long)]
    pub brokers: String,
    /// Numeric features of the generated model.
    #[arg(long, default_value_t = 100)]
    pub features: usize,
    /// Rows per record (one InferenceBatch each).
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Total rows.
    #[arg(long, default_value_t = 200_000)]
    pub rows: usize,
    /// Partitions of the topic (and gRPC streams of the comparison run).
    #[arg(long, default_value_t = 2)]
    pub partitions: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Creates `topic` with `partitions` on `brokers` and produces each `(partition, key, batch)`
/// as one protobuf record; returns the bytes produced.
pub(crate) async fn create_and_produce(
    brokers: &str,
    topic: &str,
    partitions: i32,
    records: impl Iterator<Item = (i32, String, pb::InferenceBatch)>,
) -> Result<usize> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| kerr("admin", e))?;
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .map_err(|e| kerr("create topic", e))?
    {
        r.map_err(|(t, e)| kerr(&format!("create topic {t}"), e))?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "100000000")
        .set("linger.ms", "5")
        // One record per record batch: the test broker, tansu, skips the rest of a batch
        // when a fetch (a resume after a pause) starts inside it (docs/KAFKA.md).
        .set("batch.num.messages", "1")
        .create()
        .map_err(|e| kerr("producer", e))?;
    let mut bytes = 0usize;
    let mut pending = Vec::new();
    for (part, key, b) in records {
        let value = prost::Message::encode_to_vec(&b);
        bytes += value.len();
        let p = producer.clone();
        let t = topic.to_string();
        pending.push(tokio::spawn(async move {
            let rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(&t)
                .partition(part)
                .key(key.as_str())
                .payload(value.as_slice())
                .headers(OwnedHeaders::new().insert(Header {
                    key: "content-type",
                    value: Some(crate::kafka::PROTOBUF),
                }));
            p.send(rec, Duration::from_secs(60))
                .await
                .map(|_| ())
                .map_err(|(e, _)| kerr("produce", e))
        }));
        if pending.len() >= 16 {
            for t in pending.drain(..) {
                t.await.map_err(|e| Error::Internal(e.to_string()))??;
            }
        }
    }
    for t in pending {
        t.await.map_err(|e| Error::Internal(e.to_string()))??;
    }
    Ok(bytes)
}

/// A node on a fresh temporary store (default settings, WAL fsync on, no API keys) holding
/// the models `defs`; the store lives as long as the returned directory.
pub(crate) async fn fresh_node(defs: &[ModelDef]) -> Result<(Node, tempfile::TempDir)> {
    let tmp = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
    let dir = tmp.path().to_path_buf();
    let node = tokio::task::spawn_blocking(move || {
        Node::open(
            &dir,
            StoreConfig::default(),
            Arc::new(SystemClock),
            AuthMode::Disabled,
        )
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let op = Principal::unrestricted();
    for d in defs {
        node.create_model(&op, d.clone())?;
    }
    Ok((node, tmp))
}

pub(crate) fn kerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("kafka {what}: {e}"))
}

/// Runs the benchmark.
pub async fn kafka(a: KafkaBenchArgs) -> Result<()> {
    if a.features == 0 || a.batch == 0 || a.partitions == 0 || a.rows < a.batch {
        return Err(Error::Invalid(
            "features, batch and partitions must be positive, rows >= batch".into(),
        ));
    }
    let ia = IngestBenchArgs {
        features: a.features,
        categorical: 0,
        segments: 2,
        segment_values: 8,
        batch: a.batch,
        rows: a.rows,
        streams: a.partitions,
        data: None,
        no_sync: false,
        rollup_on_write: false,
        json: true,
    };
    let def = model(&ia);
    let now = SystemClock.now().millis();
    let mut rng = Rng(0x5eed);
    let reference = gen_batch(&def, &ia, &mut rng, "ref", 5000, now - 86_400_000, true);
    let pool: Vec<pb::InferenceBatch> = (0..4)
        .map(|i| {
            gen_batch(
                &def,
                &ia,
                &mut rng,
                &format!("pool{i}"),
                a.batch,
                now,
                false,
            )
        })
        .collect();

    // The topic and its records.
    let topic = format!("driftdb-bench-{}-{now}", std::process::id());
    let records = a.rows / a.batch;
    let parts = i32::try_from(a.partitions).map_err(|e| kerr("partitions", e))?;
    let values = (0..records).map(|k| {
        let mut b = pool[k % pool.len()].clone();
        b.request_ids = (0..a.batch).map(|i| format!("k{k}-{i}")).collect();
        ((k % a.partitions) as i32, "bench".to_string(), b)
    });
    let bytes = create_and_produce(&a.brokers, &topic, parts, values).await?;

    // A fresh node with the model and its reference, then the consumer.
    let (node, _tmp) = fresh_node(std::slice::from_ref(&def)).await?;
    let op = Principal::unrestricted();
    let (entry, mut builder) = node.reference_builder(&op, &def.id, "v1")?;
    let (rb, labels) = batch_from_pb(reference, &def.features)?;
    builder.add(&rb, &labels)?;
    node.finish_reference(entry, builder, false).await?;
    let mut cfg = KafkaConfig::new(&a.brokers, Some(topic.clone()));
    cfg.group_id = format!("{topic}-group");
    cfg.max_batch_records = 4;
    cfg.max_batch_ms = 20;
    let want = (records * a.batch) as u64;
    let t0 = Instant::now();
    let source = crate::kafka::start(node.clone(), cfg)?;
    let deadline = t0 + Duration::from_secs(600);
    loop {
        let done = node
            .metrics
            .rows_accepted
            .load(std::sync::atomic::Ordering::Relaxed);
        if done >= want {
            break;
        }
        if Instant::now() > deadline {
            source.stop().await;
            return Err(Error::Internal(format!(
                "kafka: {done} of {want} rows after 600 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    source.stop().await;
    let pauses = node
        .sources
        .pauses
        .load(std::sync::atomic::Ordering::Relaxed);
    let kafka_rows_per_s = want as f64 / secs;
    let kafka_fv = kafka_rows_per_s * a.features as f64;

    // gRPC ingest of the same rows, same run.
    let grpc = ingest_measured(IngestBenchArgs {
        rows: records * a.batch,
        ..ia
    })
    .await?;
    let grpc_fv = grpc["feature_values_per_s"].as_f64().unwrap_or(0.0);
    let ratio = if grpc_fv > 0.0 {
        kafka_fv / grpc_fv
    } else {
        0.0
    };
    if a.json {
        output::line(
            &serde_json::json!({
                "features": a.features, "batch": a.batch, "rows": want, "partitions": a.partitions,
                "record_bytes": bytes, "kafka_seconds": secs, "kafka_rows_per_s": kafka_rows_per_s,
                "kafka_feature_values_per_s": kafka_fv, "grpc_feature_values_per_s": grpc_fv,
                "grpc_rows_per_s": grpc["rows_per_s"], "kafka_to_grpc": ratio,
                "partition_pauses": pauses,
            })
            .to_string(),
        );
    } else {
        output::line(&format!(
            "kafka consumption ({} partitions, records of {} rows, {} features, WAL fsync on):",
            a.partitions, a.batch, a.features
        ));
        output::line(&format!(
            "  {want} rows in {secs:.2} s: {kafka_rows_per_s:.0} rows/s, {:.2} M feature-values/s \
             ({pauses} partition pauses)",
            kafka_fv / 1e6
        ));
        output::line(&format!(
            "  gRPC ingest of the same rows: {:.2} M feature-values/s; kafka / gRPC = {ratio:.2}",
            grpc_fv / 1e6
        ));
    }
    Ok(())
}
