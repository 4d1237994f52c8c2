//! The Kafka side of `serve --cluster` (docs/SCALE_OUT.md): this node's membership record
//! published on a compacted topic, every member's read back into the node's
//! [`driftdb_server::cluster::Cluster`] table, which routes model requests.
//!
//! - The topic (default `driftdb-members`, one partition, `cleanup.policy=compact`) is created
//!   when missing. Records are keyed by node id; the value is the JSON of a
//!   [`Member`]; an empty value (a tombstone, written at a graceful stop) removes the member.
//! - Every `publish_every`, and at once when the consumer group changes this node's
//!   partitions, the node re-reads from its store which partitions each model's data came
//!   from and publishes its record.
//! - The record also carries, for each model the node answers for, where its rule evaluation
//!   stands (cursor and rule states): a node that takes the model over starts there. Webhook
//!   deliveries wait until a record holding their rule state was acknowledged by the broker
//!   (the node publishes at once when one waits).
//! - Every node reads the whole topic from the start with a consumer of its own (no group):
//!   members that stop publishing are dropped after `member_ttl`.

use std::sync::Arc;
use std::time::Duration;

use driftdb_server::cluster::{Cluster, Member};
use driftdb_server::config::{ClusterSettings, KafkaConfig};
use driftdb_server::node::Node;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};

/// The running membership tasks; [`Membership::stop`] publishes the tombstone and ends them.
#[derive(Debug)]
pub struct Membership {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Membership {
    /// Withdraws this node from the table (a tombstone) and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn base_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &kafka.brokers);
    c
}

/// Creates the membership topic (one partition, compacted) unless it exists.
async fn ensure_topic(kafka: &KafkaConfig, topic: &str) -> Result<()> {
    let kerr = |e: KafkaError| Error::Invalid(format!("cluster: create topic {topic}: {e}"));
    let admin: AdminClient<DefaultClientContext> = base_config(kafka).create().map_err(kerr)?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let res = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .map_err(kerr)?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Error::Invalid(format!(
                    "cluster: create topic {topic}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Starts publishing and reading membership for `node` (whose `cluster` must be set).
pub async fn start(node: Node, kafka: &KafkaConfig, s: &ClusterSettings) -> Result<Membership> {
    let Some(cluster) = node.cluster.clone() else {
        return Err(Error::Internal(
            "cluster membership without a cluster".into(),
        ));
    };
    ensure_topic(kafka, &s.topic).await?;
    let kerr = |what: &str, e: KafkaError| Error::Invalid(format!("cluster: {what}: {e}"));
    let producer: FutureProducer = base_config(kafka)
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "0")
        .create()
        .map_err(|e| kerr("producer", e))?;
    let consumer: StreamConsumer = base_config(kafka)
        // Never used for commits: the topic is read whole from the start by every node.
        .set(
            "group.id",
            format!("driftdb-members-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|e| kerr("consumer", e))?;
    let md = consumer
        .fetch_metadata(Some(&s.topic), Duration::from_secs(10))
        .map_err(|e| kerr("metadata", e))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                .map_err(|e| kerr("assign", e))?;
        }
    }
    if tpl.count() == 0 {
        return Err(Error::Invalid(format!(
            "cluster: the membership topic {} has no partitions",
            s.topic
        )));
    }
    consumer.assign(&tpl).map_err(|e| kerr("assign", e))?;
    // The end of each partition now: once read up to it, the node knows every member.
    let mut ends = std::collections::BTreeMap::new();
    for e in tpl.elements() {
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
            .map_err(|e| kerr("watermarks", e))?;
        if high > 0 {
            ends.insert(e.partition(), high - 1);
        }
    }
    if ends.is_empty() {
        cluster.mark_loaded(Cluster::LOADED_MEMBERS);
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = vec![
        tokio::spawn(publish_loop(
            node.clone(),
            Arc::clone(&cluster),
            producer,
            s.topic.clone(),
            s.publish_every,
            stop_rx.clone(),
        )),
        tokio::spawn(read_loop(node.clone(), cluster, consumer, ends, stop_rx)),
    ];
    tracing::info!(topic = %s.topic, node = %node.cluster.as_ref().map(|c| c.node_id()).unwrap_or_default(),
        "cluster: membership started");
    Ok(Membership { stop, tasks })
}

async fn publish_loop(
    node: Node,
    cluster: Arc<Cluster>,
    producer: FutureProducer,
    topic: String,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut was_trimmed = false;
    loop {
        // Which partitions each model's data came from, as the store says now.
        let n = node.clone();
        let t = cluster.topic().to_string();
        match tokio::task::spawn_blocking(move || n.kafka_partitions(&t)).await {
            Ok(Ok(parts)) => {
                cluster.set_model_partitions(parts);
                cluster.mark_loaded(Cluster::LOADED_MODELS);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster: reading model partitions"),
            Err(e) => tracing::warn!(error = %e, "cluster: reading model partitions"),
        }
        // The store sequence before the rule states are read: once this record is
        // acknowledged, every delivery found up to it may go (its window is in the record).
        let covers = node.store.latest_sequence();
        let mut rec = cluster.own_record(node.clock.now().millis());
        let served: Vec<String> = rec.models.keys().cloned().collect();
        let n = node.clone();
        match tokio::task::spawn_blocking(move || n.rule_handover(&served)).await {
            Ok(Ok(h)) => rec.handover = h,
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster: reading rule states"),
            Err(e) => tracing::warn!(error = %e, "cluster: reading rule states"),
        }
        match encode_record(&mut rec) {
            Ok((value, trimmed)) => {
                if trimmed && !was_trimmed {
                    tracing::warn!(
                        limit = MAX_RECORD_BYTES,
                        "cluster: the membership record is too large with its rule states; publishing cursors only (a model taken over starts its rule series afresh)"
                    );
                }
                was_trimmed = trimmed;
                let r = FutureRecord::to(&topic).key(&rec.node).payload(&value);
                match producer.send(r, Duration::from_secs(5)).await {
                    Ok(_) => cluster.gate().cover(covers),
                    Err((e, _)) => tracing::warn!(error = %e, "cluster: publishing membership"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster: encoding membership"),
        }
        let gate = cluster.gate();
        tokio::select! {
            _ = stop.changed() => break,
            () = cluster.changed_or(every) => {}
            // A delivery waits for a record holding its rule state: publish now.
            () = gate.wanted() => {}
        }
    }
    let id = cluster.node_id();
    let r: FutureRecord<'_, String, [u8]> = FutureRecord::to(&topic).key(&id);
    if let Err((e, _)) = producer.send(r, Duration::from_secs(5)).await {
        tracing::warn!(error = %e, "cluster: withdrawing membership");
    }
}

/// The largest membership record published with its rule states (Kafka's default
/// `message.max.bytes` is 1 MB): past it, the record carries each model's cursor only.
const MAX_RECORD_BYTES: usize = 768 * 1024;

/// `rec` as published: its JSON, without the rule states when they would make it larger than
/// [`MAX_RECORD_BYTES`] (then `true`).
fn encode_record(rec: &mut Member) -> serde_json::Result<(Vec<u8>, bool)> {
    let value = serde_json::to_vec(rec)?;
    if value.len() <= MAX_RECORD_BYTES {
        return Ok((value, false));
    }
    for h in rec.handover.values_mut() {
        h.states.clear();
    }
    Ok((serde_json::to_vec(rec)?, true))
}

/// Reads every member's record into the table; `ends` holds the last offset of each partition
/// at start, and once each is read the table is marked loaded.
async fn read_loop(
    node: Node,
    cluster: Arc<Cluster>,
    consumer: StreamConsumer,
    mut ends: std::collections::BTreeMap<i32, i64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let m = tokio::select! {
            _ = stop.changed() => return,
            m = consumer.recv() => m,
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: reading membership");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
            match m.payload() {
                None | Some([]) => cluster.remove(key),
                Some(v) => match serde_json::from_slice::<Member>(v) {
                    Ok(member) if member.node == key => {
                        cluster.upsert(member, node.clock.now().millis());
                    }
                    Ok(_) => {
                        tracing::warn!(key, "cluster: a membership record names another node")
                    }
                    Err(e) => tracing::warn!(key, error = %e, "cluster: bad membership record"),
                },
            }
        }
        if ends
            .get(&m.partition())
            .is_some_and(|last| m.offset() >= *last)
        {
            ends.remove(&m.partition());
            if ends.is_empty() {
                cluster.mark_loaded(Cluster::LOADED_MEMBERS);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftdb_server::rules::Handover;

    #[test]
    fn a_record_too_large_with_its_rule_states_carries_cursors_only() {
        let mut rec = Member {
            node: "a".into(),
            url: "http://a".into(),
            epoch: 1,
            partitions: vec![0],
            models: [("m".to_string(), vec![0])].into(),
            at_ms: 1,
            handover: [(
                "m".to_string(),
                Handover {
                    next_ms: 900_000,
                    versions: ["v1".to_string()].into(),
                    states: vec![("a2V5".into(), "c3RhdGU=".into())],
                },
            )]
            .into(),
        };
        let (small, trimmed) = encode_record(&mut rec.clone()).unwrap();
        assert!(!trimmed);
        assert_eq!(serde_json::from_slice::<Member>(&small).unwrap(), rec);
        let big = "x".repeat(1024);
        if let Some(h) = rec.handover.get_mut("m") {
            h.states = (0..MAX_RECORD_BYTES / 1024 + 1)
                .map(|i| (format!("k{i}"), big.clone()))
                .collect();
        }
        let (value, trimmed) = encode_record(&mut rec).unwrap();
        assert!(trimmed && value.len() <= MAX_RECORD_BYTES);
        let back: Member = serde_json::from_slice(&value).unwrap();
        assert_eq!(back.handover["m"].next_ms, 900_000);
        assert!(back.handover["m"].states.is_empty());
    }
}
