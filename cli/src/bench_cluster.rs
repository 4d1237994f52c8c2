//! `driftdb bench cluster`: aggregate Kafka consumption of 1, 2, 3… nodes in one consumer
//! group, the CPU each costs per row, and the handover time when a node leaves.
//!
//! For each node count N: a fresh topic of `--partitions` partitions holds `--rows` rows of
//! `--models` models (the `bench ingest` model under ids `bench0…`), in protobuf records of
//! `--batch` rows keyed by model id, model i in partition i mod `--partitions`. N embedded
//! nodes (each its own store, WAL fsync on, in this process) join one group; the clock runs
//! from the first consumer's start (group joins included) to the last row's durable write.
//! Then one node leaves (its consumer closes, as at a graceful stop) and the handover time
//! runs until every model is served again by a remaining node: its partitions reassigned,
//! replayed from the start by their new owner (it never held them) and caught up — the
//! cluster routing's own test ([`driftdb_server::cluster::Cluster::route`]). A killed node
//! adds the group's session timeout to that.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use driftdb_engine::model::ModelDef;
use driftdb_engine::time::{Clock, SystemClock};
use driftdb_server::cluster::{Cluster, Route};
use driftdb_server::config::KafkaConfig;
use driftdb_server::node::Node;

use crate::bench::{IngestBenchArgs, gen_batch, model};
use crate::bench_kafka::{create_and_produce, fresh_node};
use crate::error::{Error, Result};
use crate::output;
use crate::rng::SplitMix as Rng;

/// Options of `driftdb bench cluster`.
#[derive(Debug, Args, Clone)]
pub struct ClusterBenchArgs {
    /// Bootstrap brokers of a running Kafka-protocol broker (fresh topics are created).
    #[arg(long)]
    pub brokers: String,
    /// Numeric features of each model.
    #[arg(long, default_value_t = 100)]
    pub features: usize,
    /// Rows per record (one InferenceBatch each).
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Total rows, over all models.
    #[arg(long, default_value_t = 240_000)]
    pub rows: usize,
    /// Models (record keys).
    #[arg(long, default_value_t = 6)]
    pub models: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: usize,
    /// Node counts to run, comma-separated.
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    pub nodes: Vec<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// This process's CPU time (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn open_node(defs: &[ModelDef], id: &str, topic: &str) -> Result<(Node, tempfile::TempDir)> {
    let (node, tmp) = fresh_node(defs).await?;
    // No membership topic here: the TTL is long so that the orphan check never rejoins.
    let node = node.with_cluster(Cluster::new(
        Some(id.to_string()),
        topic,
        Duration::from_secs(3600),
    ));
    Ok((node, tmp))
}

fn rows_of(node: &Node) -> u64 {
    node.metrics.rows_accepted.load(Ordering::Relaxed)
}

/// Whether every partition is owned by one of `nodes` that has applied it up to `ends[p]`
/// (its record count: the topic was filled before the nodes started).
fn caught_up(nodes: &[Node], topic: &str, ends: &[u64]) -> Result<bool> {
    for (p, end) in ends.iter().enumerate() {
        let p = i32::try_from(p).map_err(|e| Error::Internal(e.to_string()))?;
        let mut done = false;
        for n in nodes {
            if n.cluster.as_ref().is_some_and(|c| c.owned().contains(&p))
                && n.source_checkpoint(&format!("kafka:{topic}:{p}"))?
                    .unwrap_or(0)
                    >= *end
            {
                done = true;
            }
        }
        if !done {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether every model is answered by one of `nodes` (each node's model partitions re-read
/// from its store first).
async fn all_served(nodes: &[Node], defs: &[ModelDef], topic: &str) -> Result<bool> {
    for n in nodes {
        let (node, t) = (n.clone(), topic.to_string());
        let parts = tokio::task::spawn_blocking(move || node.kafka_partitions(&t))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if let Some(c) = &n.cluster {
            c.set_model_partitions(parts);
        }
    }
    Ok(defs.iter().all(|d| {
        nodes.iter().any(|n| {
            n.cluster
                .as_ref()
                .is_some_and(|c| c.route(&d.id, true) == Route::Local)
        })
    }))
}

/// Runs `driftdb bench cluster`.
pub async fn cluster(a: ClusterBenchArgs) -> Result<()> {
    if a.features == 0
        || a.batch == 0
        || a.partitions == 0
        || a.models == 0
        || a.rows < a.batch
        || a.nodes.is_empty()
        || a.nodes.contains(&0)
    {
        return Err(Error::Invalid(
            "features, batch, partitions, models and node counts must be positive, rows >= batch"
                .into(),
        ));
    }
    let ia = IngestBenchArgs {
        features: a.features,
        categorical: 0,
        segments: 2,
        segment_values: 8,
        batch: a.batch,
        rows: a.rows,
        streams: 1,
        data: None,
        no_sync: false,
        rollup_on_write: false,
        json: true,
    };
    let base = model(&ia);
    let defs: Vec<ModelDef> = (0..a.models)
        .map(|i| ModelDef {
            id: format!("bench{i}"),
            ..base.clone()
        })
        .collect();
    let now = SystemClock.now().millis();
    let mut rng = Rng(0x5eed);
    let pool: Vec<_> = (0..4)
        .map(|i| gen_batch(&base, &ia, &mut rng, &format!("p{i}"), a.batch, now, false))
        .collect();
    let records = a.rows / a.batch;
    let want = (records * a.batch) as u64;
    let parts = i32::try_from(a.partitions).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut runs = Vec::new();
    for &n in &a.nodes {
        let topic = format!("driftdb-bench-cluster-{}-{now}-{n}", std::process::id());
        let values = (0..records).map(|k| {
            let m = k % a.models;
            let mut b = pool[k % pool.len()].clone();
            b.model_id.clone_from(&defs[m].id);
            b.request_ids = (0..a.batch).map(|i| format!("k{k}-{i}")).collect();
            ((m % a.partitions) as i32, defs[m].id.clone(), b)
        });
        create_and_produce(&a.brokers, &topic, parts, values).await?;
        let mut ends = vec![0u64; a.partitions];
        for k in 0..records {
            ends[(k % a.models) % a.partitions] += 1;
        }
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..n {
            let (node, dir) = open_node(&defs, &format!("node{i}"), &topic).await?;
            nodes.push(node);
            dirs.push(dir);
        }
        let kafka = |group: &str| {
            let mut cfg = KafkaConfig::new(&a.brokers, Some(topic.clone()));
            cfg.group_id = group.to_string();
            cfg.max_batch_records = 4;
            cfg.max_batch_ms = 20;
            cfg.properties
                .insert("session.timeout.ms".into(), "6000".into());
            cfg.properties
                .insert("heartbeat.interval.ms".into(), "500".into());
            cfg
        };
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut sources = Vec::new();
        for node in &nodes {
            sources.push(crate::kafka::start(
                node.clone(),
                kafka(&format!("{topic}-g")),
            )?);
        }
        let deadline = t0 + Duration::from_secs(600);
        // Done when every partition's owner has applied it to its end (a partition that
        // moved in a rebalance mid-run is applied again by its new owner: that is counted).
        loop {
            if caught_up(&nodes, &topic, &ends)? {
                break;
            }
            if Instant::now() > deadline {
                let done: u64 = nodes.iter().map(rows_of).sum();
                return Err(Error::Internal(format!(
                    "cluster of {n}: {done} of {want} rows after 600 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let per_node: Vec<u64> = nodes.iter().map(rows_of).collect();
        let twice = per_node.iter().sum::<u64>().saturating_sub(want);
        let mut handover = serde_json::Value::Null;
        if n >= 2
            && let Some(lost) = sources.pop()
        {
            let gone = nodes.pop();
            let lost_rows = gone.as_ref().map_or(0, rows_of);
            let t1 = Instant::now();
            let before: u64 = nodes.iter().map(rows_of).sum();
            lost.stop().await;
            drop(gone);
            let mut caught = None;
            loop {
                if caught.is_none() && caught_up(&nodes, &topic, &ends)? {
                    caught = Some(t1.elapsed().as_secs_f64());
                }
                if caught.is_some() && all_served(&nodes, &defs, &topic).await? {
                    break;
                }
                if t1.elapsed() > Duration::from_secs(600) {
                    return Err(Error::Internal(format!(
                        "cluster of {n}: the lost node's models not served after 600 s"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            handover = serde_json::json!({
                "caught_up_seconds": caught,
                "serving_seconds": t1.elapsed().as_secs_f64(),
                "lost_node_rows": lost_rows,
                "rows_replayed": nodes.iter().map(rows_of).sum::<u64>() - before,
            });
        }
        for s in sources {
            s.stop().await;
        }
        drop(dirs);
        let rows_per_s = want as f64 / secs;
        runs.push(serde_json::json!({
            "nodes": n,
            "seconds": secs,
            "rows_per_s": rows_per_s,
            "feature_values_per_s": rows_per_s * a.features as f64,
            "rows_per_node": per_node,
            "rows_applied_twice": twice,
            "cpu_seconds": cpu,
            "cpu_us_per_row": cpu * 1e6 / want as f64,
            "handover": handover,
        }));
    }
    if a.json {
        output::line(
            &serde_json::json!({
                "features": a.features, "batch": a.batch, "rows": want, "models": a.models,
                "partitions": a.partitions, "runs": runs,
            })
            .to_string(),
        );
        return Ok(());
    }
    output::line(&format!(
        "cluster consumption ({want} rows of {} models, {} partitions, {} features, WAL fsync on):",
        a.models, a.partitions, a.features
    ));
    for r in &runs {
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        output::line(&format!(
            "  {} node(s): {:.2} s, {:.2} M feature-values/s, {:.1} CPU-µs per row, rows per node {} ({} applied twice after a mid-run rebalance)",
            r["nodes"],
            f("seconds"),
            f("feature_values_per_s") / 1e6,
            f("cpu_us_per_row"),
            r["rows_per_node"],
            r["rows_applied_twice"]
        ));
        if let Some(h) = r["handover"].as_object() {
            let g = |k: &str| h.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
            output::line(&format!(
                "    one node leaves: its partitions replayed by the others after {:.2} s, its models served again after {:.2} s ({} rows replayed)",
                g("caught_up_seconds"),
                g("serving_seconds"),
                h.get("rows_replayed").cloned().unwrap_or_default()
            ));
        }
    }
    Ok(())
}
