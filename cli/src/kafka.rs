//! The Kafka source of `driftdb serve`: a consumer-group member that reads the inference topic
//! (and the label topic) and writes through the same path as gRPC ingest.
//!
//! - **Decoding.** A record's key is its model id; its value is one JSON object in the JSONL
//!   format of the README (read by the file readers' converter), or, with the header
//!   `content-type: application/x-protobuf`, an `InferenceBatch` (a `LabelBatch` on the label
//!   topic). After decoding, batches go through `Node::ingest_inferences`/`ingest_labels`, as
//!   over gRPC: same validation, same fold.
//! - **Exactly once.** Each model's batches from partition `p` of topic `t` and key `k` carry
//!   the producer `kafka:t:p:k` and, as their sequence, their last offset + 1; the node writes
//!   that sequence in the same RocksDB batch as the sketch merges and applies a sequence once.
//!   Rows at offsets the model already applied are dropped before a batch is built, so a
//!   replay that cuts the partition into other batches never double-counts. After every batch
//!   of records the partition's checkpoint (next offset, all before it applied) is saved, and
//!   on assignment the consumer seeks there (`start` where there is none), never to Kafka's
//!   committed offset; the commit to Kafka follows the durable write and only informs lag
//!   tools.
//! - **Backpressure.** The poll loop hands batches of records to writer tasks (a partition
//!   always to the same one, so its batches stay in order) through bounded channels
//!   (`read_ahead_batches`); when one is full, the partitions it writes are paused (librdkafka
//!   stops fetching them and drops what it prefetched of them) and the loop goes on with the
//!   others; once the writer has room they resume from the record after the last one taken.
//!   Memory stays bounded and nothing is dropped.
//! - **Bad records.** A record that cannot be decoded, or whose every row was rejected, goes to
//!   the dead-letter topic with headers `driftdb-error`, `driftdb-source-topic`,
//!   `driftdb-source-partition`, `driftdb-source-offset` — or, without one, to the node's ring
//!   at `GET /ingest/rejects`. Partly rejected protobuf batches are counted as over gRPC.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftdb_proto::v1 as pb;
use driftdb_server::auth::Principal;
use driftdb_server::config::{KafkaConfig, StartPosition};
use driftdb_server::convert::{batch_from_pb, labels_from_pb};
use driftdb_server::ingest::{Source, Stream};
use driftdb_server::node::Node;
use driftdb_server::registry::ModelEntry;
use driftdb_server::sources::{Lag, RecordResult, RejectedRecord};
use prost::Message as _;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::error::{Error, Result};
use crate::files::batch::{Catalog, Converted, Ctx, Kind, ModelInfo, Payload, retain_rows};
use crate::files::jsonl::{JsonState, convert_chunk};

/// The header that marks a protobuf record.
pub const PROTOBUF: &str = "application/x-protobuf";

/// The running consumer; [`KafkaSource::stop`] ends it after the batch being written.
#[derive(Debug)]
pub struct KafkaSource {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl KafkaSource {
    /// Stops polling, lets the writer finish what it holds, and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The checkpoint name of a partition.
fn checkpoint_name(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

/// The consumer's context: seeks assigned partitions to their checkpoints.
struct Context {
    node: Node,
    start: StartPosition,
    /// The inference topic: its partitions are what the node owns in a cluster.
    topic: Option<String>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let sources = &self.node.sources;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                sources.rebalances.fetch_add(1, Ordering::Relaxed);
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                for (t, p) in &parts {
                    let at = match self.node.source_checkpoint(&checkpoint_name(t, *p)) {
                        Ok(Some(next)) => Offset::Offset(next as i64),
                        Ok(None) => match self.start {
                            StartPosition::Earliest => Offset::Beginning,
                            StartPosition::Latest => Offset::End,
                        },
                        Err(e) => {
                            // Starting anywhere else could skip or repeat records; the
                            // per-model sequences still prevent double counting, so start at
                            // the beginning and let them skip what was applied.
                            tracing::error!(topic = %t, partition = p, error = %e,
                                "kafka: cannot read the partition's checkpoint; replaying it");
                            Offset::Beginning
                        }
                    };
                    if let Err(e) = tpl.set_partition_offset(t, *p, at) {
                        tracing::error!(topic = %t, partition = p, error = %e, "kafka: seek");
                    }
                }
                tracing::info!(partitions = ?parts, "kafka: partitions assigned");
                if let Some(c) = &self.node.cluster {
                    c.set_owned(
                        parts
                            .iter()
                            .filter(|(t, _)| Some(t) == self.topic.as_ref())
                            .map(|(_, p)| *p),
                    );
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "kafka: assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                sources.rebalances.fetch_add(1, Ordering::Relaxed);
                for e in tpl.elements() {
                    sources.clear_lag(e.topic(), e.partition());
                }
                if let Some(c) = &self.node.cluster {
                    c.set_owned([]);
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "kafka: unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "kafka: rebalance error");
                if let Some(c) = &self.node.cluster {
                    c.set_owned([]);
                }
                let _ = consumer.unassign();
            }
        }
    }
}

type KafkaConsumer = StreamConsumer<Context>;

/// One consumed record.
#[derive(Debug, Clone)]
struct Rec {
    offset: i64,
    key: Option<String>,
    value: Vec<u8>,
    proto: bool,
    ts_ms: Option<i64>,
}

/// Records of one partition, in offset order, written together.
#[derive(Debug)]
struct Chunk {
    topic: String,
    labels: bool,
    partition: i32,
    recs: Vec<Rec>,
}

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &cfg.brokers);
    c
}

/// Starts the consumer (and the dead-letter producer) on the current runtime.
pub fn start(node: Node, cfg: KafkaConfig) -> Result<KafkaSource> {
    cfg.validate()?;
    let kerr = |what: &str, e: KafkaError| Error::Invalid(format!("kafka: {what}: {e}"));
    let mut cc = ClientConfig::new();
    // Larger fetches than librdkafka's 1 MiB per partition: a protobuf record of a few
    // thousand rows is megabytes. The configured properties override these.
    cc.set("max.partition.fetch.bytes", "16777216")
        .set("fetch.wait.max.ms", "100")
        // What librdkafka fetches ahead while the writers are behind: the memory bound.
        .set("queued.max.messages.kbytes", "65536");
    for (k, v) in &cfg.properties {
        cc.set(k, v);
    }
    cc.set("bootstrap.servers", &cfg.brokers);
    cc.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            match cfg.start {
                StartPosition::Earliest => "earliest",
                StartPosition::Latest => "latest",
            },
        );
    let consumer: KafkaConsumer = cc
        .create_with_context(Context {
            node: node.clone(),
            start: cfg.start,
            topic: cfg.topic.clone(),
        })
        .map_err(|e| kerr("consumer", e))?;
    let topics: Vec<&str> = [cfg.topic.as_deref(), cfg.label_topic.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| kerr("subscribe", e))?;
    let dlq = match &cfg.dead_letter_topic {
        Some(t) => {
            let p: FutureProducer = client_config(&cfg)
                .set("message.timeout.ms", "30000")
                .create()
                .map_err(|e| kerr("dead-letter producer", e))?;
            Some((p, t.clone()))
        }
        None => None,
    };
    node.sources.kafka_enabled.store(true, Ordering::Relaxed);
    let consumer = Arc::new(consumer);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut txs = Vec::with_capacity(WRITERS);
    let mut rxs = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(cfg.read_ahead_batches);
        txs.push(tx);
        rxs.push(rx);
    }
    let last_ts: Arc<Mutex<HashMap<(String, i32), i64>>> = Arc::default();
    let writer = Writer {
        node: node.clone(),
        consumer: Arc::clone(&consumer),
        catalog: Arc::new(NodeCatalog {
            node: node.clone(),
            cache: Mutex::default(),
        }),
        dlq,
        batch_rows: cfg.max_batch_records,
        last_ts: Arc::clone(&last_ts),
    };
    let mut tasks = vec![tokio::spawn(poll_loop(
        Arc::clone(&consumer),
        cfg.clone(),
        txs,
        stop_rx.clone(),
        node.clone(),
    ))];
    for rx in rxs {
        tasks.push(tokio::spawn(writer.clone().run(rx)));
    }
    let topic_names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tasks.push(tokio::spawn(lag_loop(
        consumer,
        node,
        last_ts,
        stop_rx,
        cfg.topic.clone().map(|t| (t, topic_names)),
    )));
    tracing::info!(brokers = %cfg.brokers, group = %cfg.group_id, topics = ?topics,
        "kafka: consuming");
    Ok(KafkaSource { stop, tasks })
}

/// The partitions the poll loop has paused, by the writer whose full queue paused them, and
/// the batch each full writer has yet to take.
struct Held {
    chunk: Vec<Option<Chunk>>,
    paused: Vec<Vec<(String, i32)>>,
}

impl Held {
    fn new() -> Self {
        Held {
            chunk: (0..WRITERS).map(|_| None).collect(),
            paused: vec![Vec::new(); WRITERS],
        }
    }

    fn any(&self) -> bool {
        self.chunk.iter().any(Option::is_some)
    }
}

/// A topic-partition list of `parts`.
fn tpl_of(parts: &[(String, i32)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(parts.len());
    for (t, p) in parts {
        tpl.add_partition(t, *p);
    }
    tpl
}

/// Pauses fetching of `parts` (librdkafka drops what it prefetched of them; on resume it
/// fetches again from the record after the last one handed to the loop).
fn pause(consumer: &KafkaConsumer, parts: &[(String, i32)]) {
    if parts.is_empty() {
        return;
    }
    if let Err(e) = consumer.pause(&tpl_of(parts)) {
        tracing::warn!(error = %e, partitions = ?parts, "kafka: pause failed");
    }
}

/// Polls records into per-partition buffers and hands full (or old) ones to the writers.
async fn poll_loop(
    consumer: Arc<KafkaConsumer>,
    cfg: KafkaConfig,
    txs: Vec<tokio::sync::mpsc::Sender<Chunk>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    node: Node,
) {
    let max_age = Duration::from_millis(cfg.max_batch_ms);
    let label_topic = cfg.label_topic.clone();
    let mut bufs: HashMap<(String, i32), (Instant, Vec<Rec>)> = HashMap::new();
    // The next offset of each partition after what the loop has taken (to notice gaps).
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    // Each partition's writer, dealt round-robin as partitions are first seen.
    let mut writer_of: HashMap<(String, i32), usize> = HashMap::new();
    let mut held = Held::new();
    let sources = &node.sources;
    loop {
        let oldest = bufs.values().map(|(t, _)| *t).min();
        let mut wait = oldest.map_or(Duration::from_millis(100), |t| {
            max_age.saturating_sub(t.elapsed())
        });
        if held.any() {
            // A full writer is polled for room often: its partitions are paused meanwhile.
            wait = wait.min(Duration::from_millis(2));
        }
        let got = tokio::select! {
            _ = stop.changed() => break,
            r = tokio::time::timeout(wait, consumer.recv()) => r,
        };
        let mut full: Option<(String, i32)> = None;
        match got {
            Ok(Ok(m)) => {
                let k = (m.topic().to_string(), m.partition());
                let proto = m.headers().is_some_and(|h| {
                    h.iter().any(|x| {
                        x.key.eq_ignore_ascii_case("content-type")
                            && x.value.is_some_and(|v| v == PROTOBUF.as_bytes())
                    })
                });
                let rec = Rec {
                    offset: m.offset(),
                    key: m
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .filter(|k| !k.is_empty())
                        .map(str::to_string),
                    value: m.payload().unwrap_or_default().to_vec(),
                    proto,
                    ts_ms: m.timestamp().to_millis(),
                };
                let n = writer_of.len();
                let w = *writer_of.entry(k.clone()).or_insert(n % WRITERS);
                // A partition first seen while its writer is full is paused with the others.
                if held.chunk[w].is_some() && !held.paused[w].contains(&k) {
                    pause(&consumer, std::slice::from_ref(&k));
                    held.paused[w].push(k.clone());
                }
                let e = bufs
                    .entry(k.clone())
                    .or_insert_with(|| (Instant::now(), Vec::new()));
                if let Some(&want) = next.get(&k)
                    && rec.offset > want
                {
                    tracing::debug!(topic = %k.0, partition = k.1, from = want, to = rec.offset,
                        "kafka: offsets skipped (compaction or transaction markers)");
                }
                next.insert(k.clone(), rec.offset + 1);
                e.1.push(rec);
                if e.1.len() >= cfg.max_batch_records {
                    full = Some(k);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "kafka: consume error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {}
        }
        // Writers that were full and have room again take their batch; their partitions
        // resume.
        for (w, tx) in txs.iter().enumerate() {
            let Some(chunk) = held.chunk[w].take() else {
                continue;
            };
            match tx.try_send(chunk) {
                Ok(()) => {
                    let parts = std::mem::take(&mut held.paused[w]);
                    if let Err(e) = consumer.resume(&tpl_of(&parts)) {
                        tracing::warn!(error = %e, partitions = ?parts, "kafka: resume failed");
                    }
                    sources.resumes.fetch_add(1, Ordering::Relaxed);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(chunk)) => {
                    held.chunk[w] = Some(chunk);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        let due: Vec<(String, i32)> = bufs
            .iter()
            .filter(|(k, (t, _))| {
                (Some(*k) == full.as_ref() || t.elapsed() >= max_age)
                    && writer_of.get(*k).is_none_or(|w| held.chunk[*w].is_none())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let w = writer_of.get(&k).copied().unwrap_or_default();
            if held.chunk[w].is_some() {
                // An earlier partition of this round filled the writer.
                continue;
            }
            let Some((_, recs)) = bufs.remove(&k) else {
                continue;
            };
            let chunk = Chunk {
                labels: label_topic.as_deref() == Some(k.0.as_str()),
                topic: k.0,
                partition: k.1,
                recs,
            };
            match txs[w].try_send(chunk) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(chunk)) => {
                    // Overload: this writer's partitions stop fetching until it has room.
                    let parts: Vec<(String, i32)> = writer_of
                        .iter()
                        .filter(|(_, v)| **v == w)
                        .map(|(k, _)| k.clone())
                        .collect();
                    pause(&consumer, &parts);
                    held.paused[w] = parts;
                    held.chunk[w] = Some(chunk);
                    sources.pauses.fetch_add(1, Ordering::Relaxed);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
    // Stopping: what is buffered or held is not lost (the checkpoint is behind it), only not
    // written now; dropping `tx` lets the writers finish what they hold.
}

/// Writer tasks: a partition always goes to the same one (its batches stay in offset order);
/// different partitions are written concurrently.
const WRITERS: usize = 4;

/// Every second: each assigned partition's lag against its high watermark; in a cluster,
/// the orphan check ([`rejoin_if_orphaned`]). `inference` is the inference topic and every
/// subscribed topic.
async fn lag_loop(
    consumer: Arc<KafkaConsumer>,
    node: Node,
    last_ts: Arc<Mutex<HashMap<(String, i32), i64>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    inference: Option<(String, Vec<String>)>,
) {
    let mut orphans = Orphans::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let (Some(cluster), Some((topic, topics))) = (node.cluster.clone(), &inference) {
            let c = Arc::clone(&consumer);
            let (topic, topics) = (topic.clone(), topics.clone());
            let o = std::mem::take(&mut orphans);
            orphans = tokio::task::spawn_blocking(move || {
                rejoin_if_orphaned(&c, &cluster, &topic, &topics, o)
            })
            .await
            .unwrap_or_default();
        }
        let c = Arc::clone(&consumer);
        let n = node.clone();
        let ts = Arc::clone(&last_ts);
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(a) = c.assignment() else { return };
            let now = driftdb_engine::time::Clock::now(&driftdb_engine::time::SystemClock).millis();
            for e in a.elements() {
                let (t, p) = (e.topic().to_string(), e.partition());
                let Ok((_, high)) = c.fetch_watermarks(&t, p, Duration::from_secs(2)) else {
                    continue;
                };
                let next = n
                    .source_checkpoint(&checkpoint_name(&t, p))
                    .ok()
                    .flatten()
                    .map_or(0, |v| v as i64);
                let records = (high - next).max(0);
                let seconds = if records > 0 {
                    ts.lock()
                        .ok()
                        .and_then(|m| m.get(&(t.clone(), p)).copied())
                        .map_or(0.0, |last| ((now - last).max(0) as f64) / 1000.0)
                } else {
                    0.0
                };
                n.sources.set_lag(&t, p, Lag { records, seconds });
                if let Some(c) = &n.cluster
                    && c.topic() == t
                {
                    c.progress(p, next, high);
                }
            }
        })
        .await;
    }
}

/// Since when partitions of the inference topic have had no live owner, and when the group
/// was last rejoined for it.
#[derive(Debug, Default)]
struct Orphans {
    since: Option<Instant>,
    rejoined: Option<Instant>,
}

/// In a cluster: when some partitions of the inference topic have been owned by no live
/// member (this node included) for twice the member TTL, rejoins the consumer group, so the
/// group assigns them again. Kafka does so by itself when a member's session expires; a
/// broker that keeps a dead member in the group's assignment (tansu 0.6 after a `kill -9`,
/// docs/KAFKA.md) would otherwise leave those models unserved.
fn rejoin_if_orphaned(
    consumer: &KafkaConsumer,
    cluster: &driftdb_server::cluster::Cluster,
    topic: &str,
    topics: &[String],
    mut o: Orphans,
) -> Orphans {
    let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) else {
        return o;
    };
    let all: std::collections::BTreeSet<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let covered = cluster.covered_partitions();
    let orphaned: Vec<i32> = all.difference(&covered).copied().collect();
    if orphaned.is_empty() {
        o.since = None;
        return o;
    }
    let since = *o.since.get_or_insert_with(Instant::now);
    let wait = cluster.ttl() * 2;
    if since.elapsed() < wait || o.rejoined.is_some_and(|r| r.elapsed() < wait) {
        return o;
    }
    tracing::warn!(topic, partitions = ?orphaned, secs = since.elapsed().as_secs(),
        "kafka: partitions owned by no live member; rejoining the consumer group");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.unsubscribe();
    if let Err(e) = consumer.subscribe(&names) {
        tracing::error!(error = %e, "kafka: resubscribe failed");
    }
    o.rejoined = Some(Instant::now());
    o.since = None;
    o
}

/// A model's registry entry and the converter's lookups built from it.
type CachedModel = (Arc<ModelEntry>, Arc<ModelInfo>);

/// Model definitions from the node, for the JSON converter.
#[derive(Debug)]
struct NodeCatalog {
    node: Node,
    cache: Mutex<HashMap<String, CachedModel>>,
}

impl NodeCatalog {
    fn entry(&self, id: &str) -> std::result::Result<Arc<ModelEntry>, String> {
        self.node
            .model(&Principal::unrestricted(), id)
            .map_err(|e| e.to_string())
    }
}

impl Catalog for NodeCatalog {
    fn model(&self, id: &str) -> std::result::Result<Arc<ModelInfo>, String> {
        let entry = self.entry(id)?;
        let mut c = self
            .cache
            .lock()
            .map_err(|_| "model cache poisoned".to_string())?;
        if let Some((e, info)) = c.get(id)
            && Arc::ptr_eq(e, &entry)
        {
            return Ok(Arc::clone(info));
        }
        let info = Arc::new(ModelInfo::new(entry.def.clone()));
        c.insert(id.to_string(), (entry, Arc::clone(&info)));
        Ok(info)
    }
}

/// What became of each record of a group (index in the group → outcome).
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Applied,
    Replayed,
    Rejected(String),
}

#[derive(Clone)]
struct Writer {
    node: Node,
    consumer: Arc<KafkaConsumer>,
    catalog: Arc<NodeCatalog>,
    dlq: Option<(FutureProducer, String)>,
    batch_rows: usize,
    last_ts: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

impl Writer {
    async fn run(self, mut rx: tokio::sync::mpsc::Receiver<Chunk>) {
        while let Some(chunk) = rx.recv().await {
            // A failure of the write path (the store) is retried: the chunk is not given up,
            // since skipping it would lose records the checkpoint would then step over.
            let mut delay = Duration::from_millis(100);
            loop {
                match self.write_chunk(&chunk).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(topic = %chunk.topic, partition = chunk.partition,
                            error = %e, "kafka: writing records failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
    }

    async fn write_chunk(&self, chunk: &Chunk) -> Result<()> {
        let Some(last) = chunk.recs.last() else {
            return Ok(());
        };
        let next = last.offset + 1;
        // Group by key, keeping offset order; each key is its own producer.
        let mut groups: Vec<(Option<String>, Vec<&Rec>)> = Vec::new();
        for r in &chunk.recs {
            match groups.iter_mut().find(|(k, _)| *k == r.key) {
                Some((_, v)) => v.push(r),
                None => groups.push((r.key.clone(), vec![r])),
            }
        }
        let sources = &self.node.sources;
        for (key, recs) in groups {
            let producer = format!(
                "kafka:{}:{}:{}",
                chunk.topic,
                chunk.partition,
                key.as_deref().unwrap_or("")
            );
            let outcomes = self
                .write_group(chunk.labels, &producer, key.as_deref(), &recs)
                .await?;
            for (r, o) in recs.iter().zip(outcomes) {
                match o {
                    Outcome::Applied => sources.count(RecordResult::Applied, 1),
                    Outcome::Replayed => sources.count(RecordResult::Replayed, 1),
                    Outcome::Rejected(why) => {
                        sources.count(RecordResult::Rejected, 1);
                        self.dead_letter(chunk, r, &why).await;
                    }
                }
            }
        }
        let node = self.node.clone();
        let name = checkpoint_name(&chunk.topic, chunk.partition);
        tokio::task::spawn_blocking(move || node.save_source_checkpoint(&name, next as u64))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if let Some(ts) = chunk.recs.iter().rev().find_map(|r| r.ts_ms)
            && let Ok(mut m) = self.last_ts.lock()
        {
            m.insert((chunk.topic.clone(), chunk.partition), ts);
        }
        // For lag tools only: the checkpoint above is what a restart resumes from.
        if let Err(e) = self
            .consumer
            .store_offset(&chunk.topic, chunk.partition, next)
            .and_then(|()| self.consumer.commit_consumer_state(CommitMode::Async))
        {
            tracing::debug!(error = %e, "kafka: offset commit");
        }
        Ok(())
    }

    /// Writes the records of one key of a partition chunk, in offset order: runs of JSON
    /// records are converted together, protobuf records one by one.
    async fn write_group(
        &self,
        labels: bool,
        producer: &str,
        key: Option<&str>,
        recs: &[&Rec],
    ) -> Result<Vec<Outcome>> {
        let mut out = Vec::with_capacity(recs.len());
        let mut i = 0;
        while i < recs.len() {
            if recs[i].proto {
                out.push(self.write_proto(labels, producer, key, recs[i]).await?);
                i += 1;
                continue;
            }
            let j = recs[i..]
                .iter()
                .position(|r| r.proto)
                .map_or(recs.len(), |p| i + p);
            out.extend(self.write_json(labels, producer, key, &recs[i..j]).await?);
            i = j;
        }
        Ok(out)
    }

    fn model(&self, id: &str) -> std::result::Result<Arc<ModelEntry>, String> {
        self.catalog.entry(id)
    }

    async fn write_proto(
        &self,
        labels: bool,
        producer: &str,
        key: Option<&str>,
        r: &Rec,
    ) -> Result<Outcome> {
        let seq = r.offset as u64 + 1;
        let named = |m: &str| -> std::result::Result<String, String> {
            match (key, m.is_empty()) {
                (Some(k), false) if k != m => Err(format!(
                    "the batch is for model {m:?}, the record key names {k:?}"
                )),
                (Some(k), _) => Ok(k.to_string()),
                (None, false) => Ok(m.to_string()),
                (None, true) => Err("no model id (record key or model_id)".into()),
            }
        };
        if labels {
            let b = match pb::LabelBatch::decode(r.value.as_slice()) {
                Ok(b) => b,
                Err(e) => return Ok(Outcome::Rejected(format!("not a LabelBatch: {e}"))),
            };
            let model = match named(&b.model_id).and_then(|m| self.model(&m)) {
                Ok(m) => m,
                Err(e) => return Ok(Outcome::Rejected(e)),
            };
            if self.applied(Stream::Labels, &model, producer)? >= seq {
                return Ok(Outcome::Replayed);
            }
            let n = b.labels.len() as u64;
            let src = Source {
                producer: producer.to_string(),
                sequence: seq,
            };
            let ack = self
                .node
                .ingest_labels(model, labels_from_pb(b.labels), src)
                .await
                .map(|a| (a.replayed, a.rejected, a.errors.into_iter().next()));
            return proto_outcome(n, ack.map(|(p, r, e)| (p, r, e.map(|e| e.reason))));
        }
        let b = match pb::InferenceBatch::decode(r.value.as_slice()) {
            Ok(b) => b,
            Err(e) => return Ok(Outcome::Rejected(format!("not an InferenceBatch: {e}"))),
        };
        let model = match named(&b.model_id).and_then(|m| self.model(&m)) {
            Ok(m) => m,
            Err(e) => return Ok(Outcome::Rejected(e)),
        };
        if self.applied(Stream::Inferences, &model, producer)? >= seq {
            return Ok(Outcome::Replayed);
        }
        let n = b.request_ids.len() as u64;
        let m = Arc::clone(&model);
        let batch = tokio::task::spawn_blocking(move || batch_from_pb(b, &m.def.features))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let batch = match batch {
            Ok((batch, _)) => batch,
            Err(e) => return Ok(Outcome::Rejected(e.to_string())),
        };
        let src = Source {
            producer: producer.to_string(),
            sequence: seq,
        };
        let ack = self
            .node
            .ingest_inferences(model, batch, src)
            .await
            .map(|a| (a.replayed, a.rejected, a.errors.into_iter().next()));
        proto_outcome(n, ack.map(|(p, r, e)| (p, r, e.map(|e| e.reason))))
    }

    fn applied(&self, stream: Stream, model: &ModelEntry, producer: &str) -> Result<u64> {
        Ok(self
            .node
            .applied_sequence(stream, &model.def.id, producer)?
            .unwrap_or(0))
    }

    /// A run of JSON records (one object each) of one key: converted together, written as
    /// one batch per model (split at `max_batch_records`), rows already applied dropped.
    async fn write_json(
        &self,
        labels: bool,
        producer: &str,
        key: Option<&str>,
        recs: &[&Rec],
    ) -> Result<Vec<Outcome>> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; recs.len()];
        // One line per record: JSON text has no raw line breaks inside strings, so breaks
        // in a record are whitespace and become spaces.
        let mut text = Vec::with_capacity(recs.iter().map(|r| r.value.len() + 1).sum());
        for (i, r) in recs.iter().enumerate() {
            if r.value.iter().all(u8::is_ascii_whitespace) {
                outcomes[i] = Some(Outcome::Rejected("empty record".into()));
            }
            text.extend(
                r.value
                    .iter()
                    .map(|&c| if c == b'\n' || c == b'\r' { b' ' } else { c }),
            );
            text.push(b'\n');
        }
        let ctx = self.json_ctx(labels, key);
        let catalog_ctx = Arc::new(ctx);
        let conv = {
            let ctx = Arc::clone(&catalog_ctx);
            tokio::task::spawn_blocking(move || {
                let mut out = Converted::default();
                convert_chunk(&text, 0, &ctx, &mut JsonState::default(), &mut out);
                out
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
        };
        let reasons: HashMap<u64, String> = conv.errors.iter().cloned().collect();
        let stream = if labels {
            Stream::Labels
        } else {
            Stream::Inferences
        };
        for o in conv.batches {
            let entry = match self.model(&o.model) {
                Ok(e) => e,
                Err(e) => {
                    for l in &o.lines {
                        outcomes[*l as usize] = Some(Outcome::Rejected(e.clone()));
                    }
                    continue;
                }
            };
            let applied = self.applied(stream, &entry, producer)?;
            let keep: Vec<bool> = o
                .lines
                .iter()
                .map(|l| recs[*l as usize].offset as u64 + 1 > applied)
                .collect();
            let lines: Vec<u64> = o
                .lines
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(l, _)| *l)
                .collect();
            for (l, k) in o.lines.iter().zip(&keep) {
                if !k {
                    outcomes[*l as usize] = Some(Outcome::Replayed);
                }
            }
            let Some(&last) = lines.last() else {
                continue;
            };
            let src = Source {
                producer: producer.to_string(),
                sequence: recs[last as usize].offset as u64 + 1,
            };
            let res = match o.payload {
                Payload::Rows(mut b) => {
                    if lines.len() != o.lines.len() {
                        retain_rows(&mut b, &keep);
                    }
                    let m = Arc::clone(&entry);
                    let batch =
                        tokio::task::spawn_blocking(move || batch_from_pb(b, &m.def.features))
                            .await
                            .map_err(|e| Error::Internal(e.to_string()))?;
                    match batch {
                        Ok((batch, _)) => self
                            .node
                            .ingest_inferences(entry, batch, src)
                            .await
                            .map(|a| (a.replayed, a.rejected_rows, a.errors)),
                        Err(e) => Err(e),
                    }
                }
                Payload::Labels(mut b) => {
                    if lines.len() != o.lines.len() {
                        let mut it = keep.iter();
                        b.labels.retain(|_| it.next().copied().unwrap_or(false));
                    }
                    self.node
                        .ingest_labels(entry, labels_from_pb(b.labels), src)
                        .await
                        .map(|a| (a.replayed, a.rejected_rows, a.errors))
                }
            };
            match res {
                Ok((replayed, rejected, errors)) => {
                    let why: HashMap<u32, &str> =
                        errors.iter().map(|e| (e.row, e.reason.as_str())).collect();
                    for &l in &lines {
                        outcomes[l as usize] = Some(if replayed {
                            Outcome::Replayed
                        } else {
                            Outcome::Applied
                        });
                    }
                    for row in rejected {
                        if let Some(&l) = lines.get(row as usize) {
                            outcomes[l as usize] =
                                Some(Outcome::Rejected(first_error(why.get(&row).copied())));
                        }
                    }
                }
                Err(e) if is_invalid(&e) => {
                    for &l in &lines {
                        outcomes[l as usize] = Some(Outcome::Rejected(e.to_string()));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        // What the converter rejected (the first reasons are kept; the rest are converted
        // again alone to learn theirs).
        let mut result = Vec::with_capacity(recs.len());
        for (i, o) in outcomes.into_iter().enumerate() {
            result.push(match o {
                Some(o) => o,
                None => Outcome::Rejected(match reasons.get(&(i as u64)) {
                    Some(r) => r.clone(),
                    None => self.reason_alone(labels, key, recs[i]),
                }),
            });
        }
        Ok(result)
    }

    fn json_ctx(&self, labels: bool, key: Option<&str>) -> Ctx {
        let catalog: Arc<dyn Catalog> = Arc::<NodeCatalog>::clone(&self.catalog);
        let mut ctx = Ctx::new(
            if labels {
                Kind::Labels
            } else {
                Kind::Inferences
            },
            catalog,
        );
        ctx.batch_rows = self.batch_rows;
        ctx.default_model = key.map(str::to_string);
        ctx.only_model = key.map(str::to_string);
        ctx.no_default_reason = "no model id (record key or model_id)".into();
        ctx
    }

    fn reason_alone(&self, labels: bool, key: Option<&str>, r: &Rec) -> String {
        let ctx = self.json_ctx(labels, key);
        let mut out = Converted::default();
        let line: Vec<u8> = r
            .value
            .iter()
            .map(|&c| if c == b'\n' || c == b'\r' { b' ' } else { c })
            .collect();
        convert_chunk(&line, 0, &ctx, &mut JsonState::default(), &mut out);
        out.errors
            .into_iter()
            .next()
            .map_or_else(|| "rejected".to_string(), |(_, r)| r)
    }

    async fn dead_letter(&self, chunk: &Chunk, r: &Rec, why: &str) {
        let sources = &self.node.sources;
        if let Some((producer, topic)) = &self.dlq {
            let partition = chunk.partition.to_string();
            let offset = r.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "driftdb-error",
                    value: Some(why),
                })
                .insert(Header {
                    key: "driftdb-source-topic",
                    value: Some(chunk.topic.as_str()),
                })
                .insert(Header {
                    key: "driftdb-source-partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "driftdb-source-offset",
                    value: Some(offset.as_str()),
                });
            let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
                .payload(r.value.as_slice())
                .headers(headers);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_str());
            }
            match producer.send(rec, Duration::from_secs(10)).await {
                Ok(_) => {
                    sources.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, "kafka: dead-letter topic refused a record; \
                        keeping it in /ingest/rejects");
                }
            }
        }
        sources.push_reject(RejectedRecord {
            topic: chunk.topic.clone(),
            partition: chunk.partition,
            offset: r.offset,
            error: why.to_string(),
            key: r.key.clone(),
            value: String::from_utf8_lossy(&r.value[..r.value.len().min(4096)]).into_owned(),
        });
    }
}

/// What one protobuf record of `n` rows came to, from its ack (replayed, rows rejected, the
/// first rejection's reason): a record whose every row was rejected is a rejected record; an
/// invalid batch is too; any other error is the store's, and is retried.
fn proto_outcome(
    n: u64,
    ack: std::result::Result<(bool, u64, Option<String>), driftdb_server::error::Error>,
) -> Result<Outcome> {
    Ok(match ack {
        Ok((true, _, _)) => Outcome::Replayed,
        Ok((false, rejected, reason)) if n > 0 && rejected == n => {
            Outcome::Rejected(first_error(reason.as_deref()))
        }
        Ok(_) => Outcome::Applied,
        Err(e) if is_invalid(&e) => Outcome::Rejected(e.to_string()),
        Err(e) => return Err(e.into()),
    })
}

fn first_error(reason: Option<&str>) -> String {
    reason.map_or_else(|| "every row was rejected".to_string(), str::to_string)
}

/// Errors that are the record's fault (retrying cannot help): it is rejected, not retried.
fn is_invalid(e: &driftdb_server::error::Error) -> bool {
    matches!(
        e,
        driftdb_server::error::Error::Invalid(_)
            | driftdb_server::error::Error::NotFound { .. }
            | driftdb_server::error::Error::Engine(_)
    )
}

#[cfg(test)]
mod tests {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::BaseProducer;

    /// librdkafka refuses, at client creation, a property value its build does not support
    /// ("OpenSSL not available at build time"): these are what TLS and SASL deployments set,
    /// and zstd is what many producers compress with.
    #[test]
    fn tls_sasl_and_zstd_are_built_in() {
        for (k, v) in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("ssl.endpoint.identification.algorithm", "https"),
        ] {
            let r: Result<BaseConsumer, _> = ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("group.id", "g")
                .set("security.protocol", "sasl_ssl")
                // librdkafka's default mechanism is GSSAPI (see below).
                .set("sasl.mechanism", "PLAIN")
                .set("sasl.username", "u")
                .set("sasl.password", "p")
                .set(k, v)
                .create();
            assert!(r.is_ok(), "{k}={v}: {:?}", r.err());
        }
        let p: Result<BaseProducer, _> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("compression.type", "zstd")
            .create();
        assert!(p.is_ok(), "zstd: {:?}", p.err());
        // The check can fail: an unknown mechanism is refused.
        let bad: Result<BaseConsumer, _> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "g")
            .set("security.protocol", "sasl_ssl")
            .set("sasl.mechanism", "GSSAPI")
            .create();
        assert!(
            bad.is_err(),
            "GSSAPI needs cyrus-sasl, which is not built in"
        );
    }
}
