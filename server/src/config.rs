//! `driftdb serve --config FILE`: the node's settings as one JSON file. Every field is
//! optional; `config.example.json` at the repository root lists them all with their defaults.

use std::path::{Path, PathBuf};

use driftdb_engine::time::DurationMs;
use driftdb_storage::StoreConfig;

use crate::error::{Error, Result};

/// Settings of `driftdb serve --config FILE` (JSON). Every field is optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// How long windows are kept (default `90d`).
    pub retention: Option<String>,
    /// Age after which 15-minute windows are downsampled to hourly (default `30d`).
    pub downsample_after: Option<String>,
    /// fsync the WAL before every ack (default true).
    pub sync_writes: Option<bool>,
    /// Block cache in MiB (default 256).
    pub block_cache_mb: Option<usize>,
    /// Ingest batches processed at once before RESOURCE_EXHAUSTED (default 8).
    pub ingest_concurrency: Option<usize>,
    /// Keep daily rollups so whole-day queries read one window per day (default true).
    pub daily_rollups: Option<bool>,
    /// How long after a window ends it is merged into its day's rollup (default `1h`); `"0"`
    /// merges on write (every delta written twice: slower ingest, today's day readable from
    /// its rollup at once).
    pub rollup_after: Option<String>,
    /// Rule evaluation and webhook delivery: `tick`, `max_catchup_windows`, `retry_initial`,
    /// `retry_max`, `dead_letter_after`, `delivery_timeout`, `delivery_concurrency`,
    /// `deny_private_targets`.
    pub rules: Option<crate::rules::RulesConfigFile>,
    /// Bounds on what the server holds at once (every field optional; see
    /// [`crate::limits::Limits`]): `ingest_streams`, `ingest_idle_secs`, `ingest_memory_mb`, `max_message_mb`,
    /// `max_http_body_mb`, `http_concurrency`, `watchers`.
    pub limits: Option<LimitsFile>,
    /// PEM certificate chain for TLS (like `--tls-cert`, which wins).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (like `--tls-key`, which wins).
    pub tls_key: Option<PathBuf>,
    /// Consume inferences (and labels) from Kafka topics; see [`KafkaConfig`].
    pub kafka: Option<KafkaConfig>,
    /// Checkpoint the store to an object store; see [`CheckpointConfig`].
    pub checkpoint: Option<CheckpointConfig>,
    /// Run as one of N nodes of a Kafka consumer group, answering for any model; see
    /// [`ClusterConfig`].
    pub cluster: Option<ClusterConfig>,
}

/// The `"cluster"` section (or `serve --cluster`): membership on a Kafka topic and the routing
/// of model requests to the node that owns the model's partition (`crate::cluster`,
/// docs/SCALE_OUT.md). Needs the `"kafka"` section with an inference topic.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name in the membership topic (default: its advertised URL).
    pub node_id: Option<String>,
    /// The HTTP base URL the other nodes reach this one at (default: `http://` or `https://`
    /// and the bound HTTP address, which must then not be a wildcard address).
    pub advertise: Option<String>,
    /// The membership topic (default `driftdb-members`; created, compacted, when missing).
    pub topic: Option<String>,
    /// How often this node publishes its membership record (default `2s`).
    pub publish_every: Option<String>,
    /// How long a member's record counts without a newer one (default `10s`).
    pub member_ttl: Option<String>,
}

/// [`ClusterConfig`] with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// See [`ClusterConfig::node_id`].
    pub node_id: Option<String>,
    /// See [`ClusterConfig::advertise`].
    pub advertise: Option<String>,
    /// See [`ClusterConfig::topic`].
    pub topic: String,
    /// See [`ClusterConfig::publish_every`].
    pub publish_every: std::time::Duration,
    /// See [`ClusterConfig::member_ttl`].
    pub member_ttl: std::time::Duration,
}

impl ClusterConfig {
    /// The settings with defaults, checked: `publish_every` at least 100 ms, `member_ttl` at
    /// least twice `publish_every`.
    pub fn resolve(&self) -> Result<ClusterSettings> {
        let dur = |v: &Option<String>, default_ms: i64| -> Result<std::time::Duration> {
            let ms = match v {
                Some(t) => DurationMs::parse(t)?.millis(),
                None => default_ms,
            };
            Ok(std::time::Duration::from_millis(
                u64::try_from(ms).unwrap_or(0),
            ))
        };
        let publish_every = dur(&self.publish_every, 2_000)?;
        let member_ttl = dur(&self.member_ttl, 10_000)?;
        if publish_every < std::time::Duration::from_millis(100) {
            return Err(Error::Invalid(
                "cluster: publish_every must be at least 100ms".into(),
            ));
        }
        if member_ttl < publish_every * 2 {
            return Err(Error::Invalid(
                "cluster: member_ttl must be at least twice publish_every".into(),
            ));
        }
        let topic = self
            .topic
            .clone()
            .unwrap_or_else(|| "driftdb-members".to_string());
        if topic.is_empty()
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(Error::Invalid(format!(
                "cluster: topic {topic:?} is not a Kafka topic name"
            )));
        }
        if let Some(a) = &self.advertise
            && !(a.starts_with("http://") || a.starts_with("https://"))
        {
            return Err(Error::Invalid(format!(
                "cluster: advertise {a:?} must be an http:// or https:// URL"
            )));
        }
        if self.node_id.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Invalid("cluster: node_id is empty".into()));
        }
        Ok(ClusterSettings {
            node_id: self.node_id.clone(),
            advertise: self
                .advertise
                .as_ref()
                .map(|a| a.trim_end_matches('/').to_string()),
            topic,
            publish_every,
            member_ttl,
        })
    }
}

/// The `"checkpoint"` section (or `serve --checkpoint-url …`): where and how often the store
/// is checkpointed, and where an empty data directory is restored from at start
/// (`crate::checkpoint`, docs/SCALE_OUT.md).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// `file:///absolute/dir` (required).
    pub url: Option<String>,
    /// How often to save one (default `15m`, the window width); `"0"` saves only on request
    /// (`POST /admin/checkpoint`).
    pub every: Option<String>,
    /// Checkpoints kept (default 4).
    pub keep: Option<usize>,
    /// Hold each webhook delivery until a saved checkpoint holds its alert, so a node taking
    /// the state over never delivers it again (default true).
    pub hold_deliveries: Option<bool>,
    /// The longest a delivery is held when no checkpoint can be saved (default `5m`); then it
    /// is sent anyway and counted.
    pub hold_max: Option<String>,
}

impl CheckpointConfig {
    /// The checkpoint store these settings give, with scratch space under `data`. `None`
    /// when no URL is set.
    pub fn open(&self, data: &Path) -> Result<Option<crate::checkpoint::Checkpoints>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let every = match self.every.as_deref() {
            None => Some(std::time::Duration::from_secs(15 * 60)),
            Some("0") => None,
            Some(e) => Some(std::time::Duration::from_millis(
                u64::try_from(DurationMs::parse(e)?.millis()).unwrap_or(0),
            )),
        };
        let mut c = crate::checkpoint::Checkpoints::open(
            url,
            self.keep.unwrap_or(crate::checkpoint::DEFAULT_KEEP),
            every,
            data.join(".checkpoint-work"),
        )?;
        if self.hold_deliveries.unwrap_or(true) {
            let hold_max = match &self.hold_max {
                Some(h) => DurationMs::parse(h)?.millis(),
                None => 5 * 60_000,
            };
            c = c.with_delivery_gate(std::time::Duration::from_millis(
                u64::try_from(hold_max).unwrap_or(0),
            ));
        }
        Ok(Some(c))
    }
}

/// Where the Kafka consumer starts in a partition it has no checkpoint for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    /// The oldest record the broker keeps (default).
    #[default]
    Earliest,
    /// Only records produced after the consumer joins.
    Latest,
}

/// The `"kafka"` section of the config file (or `serve --kafka-brokers … --kafka-topic …`).
/// The applied offset of every partition is kept in the store with the sketches it produced;
/// Kafka's committed offsets are written after each durable write, for lag tools only.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Consumer group id (default `driftdb`).
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Topic of inference records (key: the model id; value: one JSON inference object, or a
    /// protobuf `InferenceBatch` with header `content-type: application/x-protobuf`).
    pub topic: Option<String>,
    /// Topic of label records (key: the model id; value: one JSON label object, or a protobuf
    /// `LabelBatch`).
    pub label_topic: Option<String>,
    /// Where to start in a partition never applied before: `earliest` (default) or `latest`.
    #[serde(default)]
    pub start: StartPosition,
    /// Records per partition written as one batch (default 10,000; 1..=100,000).
    #[serde(default = "default_batch_records")]
    pub max_batch_records: usize,
    /// Longest wait to fill a batch, in milliseconds (default 200; 1..=60,000).
    #[serde(default = "default_batch_ms")]
    pub max_batch_ms: u64,
    /// Batches read ahead of the write path before consumption is held back (default 4).
    #[serde(default = "default_read_ahead")]
    pub read_ahead_batches: usize,
    /// Topic for records that cannot be ingested at all (undecodable, or every row rejected),
    /// with headers `driftdb-error`, `driftdb-source-topic`, `driftdb-source-partition`,
    /// `driftdb-source-offset`. Without one they are kept in a ring at `GET /ingest/rejects`.
    pub dead_letter_topic: Option<String>,
    /// librdkafka properties passed through to the consumer and the dead-letter producer
    /// (e.g. `security.protocol`, `sasl.mechanism`); they cannot override `group.id`,
    /// `enable.auto.commit` or `enable.auto.offset.store`.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

fn default_group() -> String {
    "driftdb".into()
}
fn default_batch_records() -> usize {
    10_000
}
fn default_batch_ms() -> u64 {
    200
}
fn default_read_ahead() -> usize {
    4
}

impl KafkaConfig {
    /// A section with `brokers` and the inference `topic`, the rest defaults.
    pub fn new(brokers: &str, topic: Option<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_string(),
            group_id: default_group(),
            topic,
            label_topic: None,
            start: StartPosition::Earliest,
            max_batch_records: default_batch_records(),
            max_batch_ms: default_batch_ms(),
            read_ahead_batches: default_read_ahead(),
            dead_letter_topic: None,
            properties: Default::default(),
        }
    }

    /// Checks the section (what librdkafka would only report once running).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("kafka: {m}")));
        if self.brokers.trim().is_empty() {
            return bad("brokers is empty".into());
        }
        if self.group_id.trim().is_empty() {
            return bad("group_id is empty".into());
        }
        if self.topic.is_none() && self.label_topic.is_none() {
            return bad("set topic (inferences), label_topic, or both".into());
        }
        if self.topic.is_some() && self.topic == self.label_topic {
            return bad("topic and label_topic must differ".into());
        }
        if !(1..=100_000).contains(&self.max_batch_records) {
            return bad(format!(
                "max_batch_records {} is outside 1..=100000",
                self.max_batch_records
            ));
        }
        if !(1..=60_000).contains(&self.max_batch_ms) {
            return bad(format!(
                "max_batch_ms {} is outside 1..=60000",
                self.max_batch_ms
            ));
        }
        if !(1..=64).contains(&self.read_ahead_batches) {
            return bad(format!(
                "read_ahead_batches {} is outside 1..=64",
                self.read_ahead_batches
            ));
        }
        for k in ["group.id", "enable.auto.commit", "enable.auto.offset.store"] {
            if self.properties.contains_key(k) {
                return bad(format!(
                    "property {k} is set by driftdb and cannot be passed"
                ));
            }
        }
        Ok(())
    }
}

/// The JSON form of [`crate::limits::Limits`] (sizes in MiB).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// [`crate::limits::Limits::ingest_streams`].
    pub ingest_streams: Option<usize>,
    /// [`crate::limits::Limits::ingest_idle_timeout`], in seconds.
    pub ingest_idle_secs: Option<u64>,
    /// [`crate::limits::Limits::ingest_memory_bytes`], in MiB.
    pub ingest_memory_mb: Option<usize>,
    /// [`crate::limits::Limits::max_message_bytes`], in MiB.
    pub max_message_mb: Option<usize>,
    /// [`crate::limits::Limits::max_http_body_bytes`], in MiB.
    pub max_http_body_mb: Option<usize>,
    /// [`crate::limits::Limits::http_concurrency`].
    pub http_concurrency: Option<usize>,
    /// [`crate::limits::Limits::watchers`].
    pub watchers: Option<usize>,
    /// [`crate::limits::Limits::query_concurrency`].
    pub query_concurrency: Option<usize>,
    /// [`crate::limits::Limits::query_timeout`], in seconds.
    pub query_timeout_secs: Option<u64>,
}

impl ServeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<ServeConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// The store configuration these settings give.
    pub fn store_config(&self) -> Result<StoreConfig> {
        let mut c = StoreConfig::default();
        if let Some(r) = &self.retention {
            c.retention_ms = DurationMs::parse(r)?.millis();
        }
        if let Some(d) = &self.downsample_after {
            c.downsample_after_ms = DurationMs::parse(d)?.millis();
        }
        if let Some(s) = self.sync_writes {
            c.sync_writes = s;
        }
        if let Some(mb) = self.block_cache_mb {
            c.block_cache_bytes = mb << 20;
        }
        if let Some(r) = self.daily_rollups {
            c.daily_rollups = r;
        }
        if let Some(r) = &self.rollup_after {
            c.rollup_after_ms = if r == "0" {
                0
            } else {
                DurationMs::parse(r)?.millis()
            };
        }
        c.validate()?;
        Ok(c)
    }

    /// The limits these settings give (defaults filled in; every bound at least 1).
    pub fn limits(&self) -> crate::limits::Limits {
        let mut l = crate::limits::Limits::default();
        if let Some(n) = self.ingest_concurrency {
            l.ingest_concurrency = n.max(1);
        }
        if let Some(f) = &self.limits {
            let mib = |n: usize| n.max(1).saturating_mul(1 << 20);
            if let Some(n) = f.ingest_streams {
                l.ingest_streams = n.max(1);
            }
            if let Some(n) = f.ingest_idle_secs {
                l.ingest_idle_timeout = std::time::Duration::from_secs(n.max(1));
            }
            if let Some(n) = f.ingest_memory_mb {
                l.ingest_memory_bytes = mib(n);
            }
            if let Some(n) = f.max_message_mb {
                l.max_message_bytes = mib(n);
            }
            if let Some(n) = f.max_http_body_mb {
                l.max_http_body_bytes = mib(n);
            }
            if let Some(n) = f.http_concurrency {
                l.http_concurrency = n.max(1);
            }
            if let Some(n) = f.watchers {
                l.watchers = n.max(1);
            }
            if let Some(n) = f.query_concurrency {
                l.query_concurrency = n.max(1);
            }
            if let Some(n) = f.query_timeout_secs {
                l.query_timeout = std::time::Duration::from_secs(n.max(1));
            }
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_with_default_limits() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.json");
        let cfg = ServeConfig::load(&path).unwrap();
        assert_eq!(cfg.store_config().unwrap().rollup_after_ms, 3_600_000);
        let on_write: ServeConfig = serde_json::from_str(r#"{"rollup_after": "0"}"#).unwrap();
        assert_eq!(on_write.store_config().unwrap().rollup_after_ms, 0);
        let bad: ServeConfig = serde_json::from_str(r#"{"rollup_after": "-1h"}"#).unwrap();
        assert!(bad.store_config().is_err());
        let rules = cfg.rules.clone().unwrap().resolve().unwrap();
        assert!(!rules.deny_private_targets);
        assert_eq!(cfg.limits(), crate::limits::Limits::default());
        let cfg: ServeConfig =
            serde_json::from_str(r#"{"limits": {"ingest_memory_mb": 4, "watchers": 0}}"#).unwrap();
        let l = cfg.limits();
        assert_eq!(l.ingest_memory_bytes, 4 << 20);
        assert_eq!(l.watchers, 1, "every bound is at least 1");
        assert!(serde_json::from_str::<ServeConfig>(r#"{"limits": {"bogus": 1}}"#).is_err());
    }

    #[test]
    fn the_checkpoint_section_has_defaults_and_precise_errors() {
        use std::time::Duration;
        let data = Path::new("/tmp/driftdb-config-test");
        let parse = |json: &str| serde_json::from_str::<ServeConfig>(json).map(|c| c.checkpoint);
        let none = parse(r#"{"checkpoint": {}}"#).unwrap().unwrap();
        assert!(none.open(data).unwrap().is_none(), "no URL, no checkpoints");
        let c = parse(r#"{"checkpoint": {"url": "file:///tmp/cp"}}"#)
            .unwrap()
            .unwrap()
            .open(data)
            .unwrap()
            .unwrap();
        assert_eq!(c.every(), Some(Duration::from_secs(900)));
        assert_eq!(c.url(), "file:///tmp/cp");
        assert_eq!(c.gate().unwrap().hold_max(), Duration::from_secs(300));
        let c = parse(
            r#"{"checkpoint": {"url": "file:///tmp/cp", "every": "0", "hold_deliveries": false}}"#,
        )
        .unwrap()
        .unwrap()
        .open(data)
        .unwrap()
        .unwrap();
        assert_eq!(c.every(), None);
        assert!(c.gate().is_none());
        let c =
            parse(r#"{"checkpoint": {"url": "file:///tmp/cp", "every": "1h", "hold_max": "30s"}}"#)
                .unwrap()
                .unwrap()
                .open(data)
                .unwrap()
                .unwrap();
        assert_eq!(c.every(), Some(Duration::from_secs(3600)));
        assert_eq!(c.gate().unwrap().hold_max(), Duration::from_secs(30));
        for (json, want) in [
            (r#"{"url": "file:///tmp/cp", "every": "soon"}"#, "soon"),
            (
                r#"{"url": "file:///tmp/cp", "keep": 0}"#,
                "keep must be at least 1",
            ),
            (r#"{"url": "s3://b/p"}"#, "not supported by this build"),
        ] {
            let c: CheckpointConfig = serde_json::from_str(json).unwrap();
            let e = c.open(data).unwrap_err().to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
        assert!(parse(r#"{"checkpoint": {"url": "file:///x", "bogus": 1}}"#).is_err());
    }

    #[test]
    fn the_cluster_section_has_defaults_and_precise_errors() {
        use std::time::Duration;
        let cfg: ServeConfig = serde_json::from_str(r#"{"cluster": {}}"#).unwrap();
        let s = cfg.cluster.unwrap().resolve().unwrap();
        assert_eq!(
            s,
            ClusterSettings {
                node_id: None,
                advertise: None,
                topic: "driftdb-members".into(),
                publish_every: Duration::from_secs(2),
                member_ttl: Duration::from_secs(10),
            }
        );
        let c: ClusterConfig = serde_json::from_str(
            r#"{"node_id": "n1", "advertise": "https://10.0.0.5:9090/", "topic": "fleet.members",
                "publish_every": "500ms", "member_ttl": "1s"}"#,
        )
        .unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(s.advertise.as_deref(), Some("https://10.0.0.5:9090"));
        assert_eq!(s.member_ttl, Duration::from_secs(1));
        for (json, want) in [
            (
                r#"{"publish_every": "50ms"}"#,
                "publish_every must be at least 100ms",
            ),
            (
                r#"{"member_ttl": "3s"}"#,
                "member_ttl must be at least twice publish_every",
            ),
            (r#"{"topic": "a/b"}"#, "is not a Kafka topic name"),
            (
                r#"{"advertise": "10.0.0.5:9090"}"#,
                "must be an http:// or https:// URL",
            ),
            (r#"{"node_id": ""}"#, "node_id is empty"),
        ] {
            let c: ClusterConfig = serde_json::from_str(json).unwrap();
            let e = c.resolve().unwrap_err().to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
        assert!(serde_json::from_str::<ClusterConfig>(r#"{"ttl": "1s"}"#).is_err());
    }

    #[test]
    fn the_kafka_section_has_defaults_and_precise_errors() {
        let cfg: ServeConfig =
            serde_json::from_str(r#"{"kafka": {"brokers": "b:9092", "topic": "logs"}}"#).unwrap();
        let k = cfg.kafka.unwrap();
        assert_eq!(k, KafkaConfig::new("b:9092", Some("logs".into())));
        assert_eq!(
            (k.group_id.as_str(), k.start),
            ("driftdb", StartPosition::Earliest)
        );
        k.validate().unwrap();
        let latest: KafkaConfig =
            serde_json::from_str(r#"{"brokers": "b", "label_topic": "l", "start": "latest"}"#)
                .unwrap();
        assert_eq!(latest.start, StartPosition::Latest);
        latest.validate().unwrap();
        for (json, want) in [
            (r#"{"brokers": "b"}"#, "set topic"),
            (r#"{"brokers": " ", "topic": "t"}"#, "brokers is empty"),
            (
                r#"{"brokers": "b", "topic": "t", "label_topic": "t"}"#,
                "must differ",
            ),
            (
                r#"{"brokers": "b", "topic": "t", "max_batch_records": 0}"#,
                "max_batch_records 0",
            ),
            (
                r#"{"brokers": "b", "topic": "t", "max_batch_ms": 0}"#,
                "max_batch_ms 0",
            ),
            (
                r#"{"brokers": "b", "topic": "t", "read_ahead_batches": 99}"#,
                "read_ahead_batches 99",
            ),
            (
                r#"{"brokers": "b", "topic": "t", "properties": {"group.id": "x"}}"#,
                "group.id is set by driftdb",
            ),
        ] {
            let k: KafkaConfig = serde_json::from_str(json).unwrap();
            let e = k.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
        assert!(serde_json::from_str::<KafkaConfig>(r#"{"brokers": "b", "topik": "t"}"#).is_err());
        assert!(
            serde_json::from_str::<KafkaConfig>(r#"{"brokers": "b", "start": "now"}"#).is_err()
        );
    }
}
