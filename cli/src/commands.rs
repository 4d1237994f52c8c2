//! The `driftdb` command line (README.md): `serve`, client commands against a server, and
//! `bench`. Exit status 0 on success; otherwise a one-line reason on stderr and status 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Args, Parser, Subcommand};
use driftdb_engine::model::ModelDef;
use driftdb_engine::time::SystemClock;
use driftdb_proto::v1 as pb;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::output;
use driftdb_server::convert::{model_from_pb, model_to_pb, table_from_pb};
use driftdb_server::node::Node;

mod alerting;
mod ingest;
mod keys;
mod report;
mod silence;

pub(crate) use alerting::alert_line;

/// driftdb: a time-series database for monitoring machine-learning models in production.
#[derive(Debug, Parser)]
#[command(name = "driftdb", version, about, long_about = None)]
pub struct Cli {
    /// The client flags, accepted before the subcommand too (`driftdb --server URL model list`).
    #[command(flatten)]
    server: ServerArg,
    /// Print JSON where the command has a JSON form (query, ingest/labels/reference summaries,
    /// listings); accepted before or after the subcommand.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct ServerArg {
    /// gRPC address of the server (`https://…` for a server with TLS).
    #[arg(
        long,
        env = "DRIFTDB_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub(crate) server: String,
    /// API key (`ddb_…`), sent as `authorization: Bearer …`; prefer the environment variable,
    /// which other users cannot read from the process list.
    #[arg(long, env = "DRIFTDB_API_KEY", hide_env_values = true, global = true)]
    pub(crate) api_key: Option<String>,
    /// PEM file of the CA that signed the server's certificate (`https://` servers; the
    /// system's roots otherwise).
    #[arg(long, env = "DRIFTDB_CA_CERT", global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
}

impl ServerArg {
    /// How to connect.
    pub(crate) fn config(&self) -> crate::client::ClientConfig {
        crate::client::ClientConfig {
            url: self.server.clone(),
            api_key: self.api_key.clone().filter(|k| !k.trim().is_empty()),
            ca_cert: self.ca_cert.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: gRPC and HTTP over a data directory. Prints `ready grpc=… http=…` once
    /// both listeners accept.
    Serve(ServeArgs),
    /// Create, list and show models.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Reference profiles (training/validation data, uploaded once per model version).
    #[command(subcommand)]
    Reference(ReferenceCmd),
    /// Ingest an inference file (.jsonl, .csv or .parquet); prints a summary of accepted and
    /// rejected rows.
    Ingest(ingest::IngestArgs),
    /// Ingest a label/outcome file (.jsonl, .csv or .parquet); labels join their predictions.
    Labels(ingest::LabelsArgs),
    /// A self-contained HTML report (or its content as JSON) of a model's drift, performance
    /// and `explain`: straight from a reference and a current file, no server needed.
    Report(report::ReportArgs),
    /// Run a DriftQL query on the server and print its table (warnings go to stderr).
    #[command(after_help = QUERY_EXAMPLES)]
    Query(QueryArgs),
    /// Alert rules: add from a JSON file, list, delete.
    #[command(subcommand)]
    Rules(alerting::RulesCmd),
    /// Alerts: watch them fire and resolve (resumable), or list the history.
    #[command(subcommand)]
    Alerts(alerting::AlertsCmd),
    /// Silences: mute alert deliveries by model, rule, feature, segment, version or severity
    /// for a while (alerts are still recorded, marked silenced); add, list, end early.
    #[command(subcommand)]
    Silence(silence::SilenceCmd),
    /// Announce an event for a model (a release, a catalog refresh); event rules fire on it.
    Event(alerting::EventArgs),
    /// API keys: create (the token is printed once), list, revoke. Against a running server
    /// (an admin key), or offline on a stopped server's data directory with `--data`.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// A guided tour: an embedded server on a temp dir, a fraud model whose inputs drift and
    /// whose calibration breaks in one region, rules with webhooks, the drift table, `explain`
    /// and the alerts as they fire. Takes a few seconds; removes its data at the end.
    Demo(crate::demo::DemoArgs),
    /// Load generators and measurements.
    #[command(subcommand)]
    Bench(BenchCmd),
}

const QUERY_EXAMPLES: &str = "\
Examples:
  driftdb query 'psi(fraud.*) over 24h step 1h'
  driftdb query 'auc(fraud) from 2026-03-01T00:00:00Z to 2026-03-08T00:00:00Z step 1d by region'
  driftdb query --json 'ks(fraud.amount, vs previous) over 6h step 1h having p < 0.01'

`EXPLAIN <query>` prints the plan without reading data; `explain(fraud) over 1h` ranks what
drifted. DriftQL is described in query/DRIFTQL.md.";

#[derive(Debug, Args)]
struct QueryArgs {
    /// The DriftQL statement (quote it for the shell).
    query: String,
    /// Print the rows as a JSON array of objects keyed by column name.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Debug, Args)]
#[command(after_help = SERVE_AUTH_HELP)]
struct ServeArgs {
    /// Data directory (created when missing).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc: SocketAddr,
    /// HTTP listen address (health, metrics).
    #[arg(long, default_value = "127.0.0.1:9090")]
    http: SocketAddr,
    /// JSON configuration file; see `config.example.json`: retention, downsample_after,
    /// sync_writes, block_cache_mb, ingest_concurrency, daily_rollups, rollup_after, limits,
    /// tls_cert/tls_key, rules; `kafka` (docs/KAFKA.md) and `checkpoint` (docs/SCALE_OUT.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve without API keys: every caller is an operator with every scope. For local use
    /// only; a warning is printed and logged.
    #[arg(long)]
    insecure_no_auth: bool,
    /// PEM certificate chain: serve gRPC and HTTP over TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Consume from Kafka: bootstrap brokers (host:port,…). Overrides the config's
    /// `kafka.brokers`; the other settings come from its `"kafka"` section or their defaults.
    #[arg(long, value_name = "HOST:PORT")]
    kafka_brokers: Option<String>,
    /// Kafka topic of inference records (key: model id; value: a JSON inference, or a
    /// protobuf InferenceBatch with content-type application/x-protobuf).
    #[arg(long, requires = "kafka_brokers", value_name = "TOPIC")]
    kafka_topic: Option<String>,
    /// Kafka topic of label records.
    #[arg(long, requires = "kafka_brokers", value_name = "TOPIC")]
    kafka_label_topic: Option<String>,
    /// Kafka consumer group (default: the config's, else `driftdb`).
    #[arg(long, requires = "kafka_brokers", value_name = "GROUP")]
    kafka_group: Option<String>,
    /// Checkpoint the store to this object store URL (file:///absolute/dir), and when the
    /// data directory holds no store, restore the newest checkpoint there before starting.
    /// Overrides the config's `checkpoint.url`. See docs/SCALE_OUT.md.
    #[arg(long, value_name = "URL")]
    checkpoint_url: Option<String>,
    /// How often to checkpoint (e.g. 15m, the default; 0: only on POST /admin/checkpoint).
    #[arg(long, requires = "checkpoint_url", value_name = "DURATION")]
    checkpoint_every: Option<String>,
    /// Checkpoints kept in the object store (default 4); older ones and the files only they
    /// use are deleted.
    #[arg(long, requires = "checkpoint_url", value_name = "N")]
    checkpoint_keep: Option<usize>,
    /// Run as one of several nodes in the Kafka consumer group: publish membership on a
    /// compacted topic and route each model's HTTP requests to the node owning its partition
    /// (the config's `"cluster"` section sets the rest; docs/SCALE_OUT.md). Needs Kafka with
    /// an inference topic.
    #[arg(long)]
    cluster: bool,
    /// This node's id in the cluster (default: its advertised URL). Implies --cluster.
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// The HTTP base URL other nodes reach this one at (default: the bound --http address;
    /// needed when that is 0.0.0.0 or behind NAT). Implies --cluster.
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
}

const SERVE_AUTH_HELP: &str = "\
Every gRPC method and HTTP route but /healthz needs an API key with the right scope (ingest,
read, admin). On its first start `serve` creates an operator key with every scope and writes it
to <data>/admin.key (mode 0600); clients send it with --api-key or DRIFTDB_API_KEY, e.g.
  export DRIFTDB_API_KEY=$(cat data/admin.key)
  driftdb keys create --team fraud --scopes ingest,read --name fraud-pipeline
See SECURITY.md.

Transparent huge pages are turned off for this process (with them ingest used about 15 % more CPU,
zeroing pages); set DRIFTDB_THP=1 to keep the system's setting.";

#[derive(Debug, Subcommand)]
enum ModelCmd {
    /// Register a model from its JSON definition.
    Create {
        /// Model definition JSON (docs/DATA_MODEL.md, "Models").
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List models.
    List {
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show one model's definition and reference versions as JSON.
    Show {
        /// Model id.
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

#[derive(Debug, Subcommand)]
enum ReferenceCmd {
    /// Upload a reference file for a model version; bin edges are fixed at this moment.
    Load(ingest::ReferenceLoadArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// End-to-end ingest load over gRPC loopback against an embedded server (durable, WAL
    /// fsync on); reports feature-values/s, rows/s, the in-process fold ceiling and peak RSS.
    Ingest(crate::bench::IngestBenchArgs),
    /// Rule evaluation for a fleet at one window close (default 1,000 models × 500 features =
    /// 500,000 series, one drift rule each); reports seconds, series/s, peak RSS and the
    /// restart time with the full store.
    Rules(crate::bench_alerts::RulesBenchArgs),
    /// Alert latency: from sending the batch that closes a window by event time to the webhook
    /// arriving at a receiver on loopback; reports p50/p99/max.
    Alerts(crate::bench_alerts::AlertsBenchArgs),
    /// The server time of one report page (`/ui`, `GET /models/{id}/report?format=html`) for a
    /// 500-feature model over 24 hours of 15-minute windows: build and render, median of runs.
    Report(crate::bench_report::ReportBenchArgs),
    /// The Kafka source's consumption rate of a broker's topic (protobuf records) into
    /// durable sketches, beside gRPC ingest of the same rows in the same run.
    Kafka(crate::bench_kafka::KafkaBenchArgs),
    /// Checkpoints and handover: the first checkpoint of a fleet-shaped store to an object
    /// store (a local directory), the next one after a window, the restore into an empty
    /// directory and the open of a node on it.
    Checkpoint(crate::bench_checkpoint::CheckpointBenchArgs),
    /// Several nodes in one consumer group: aggregate consumption of a broker's topic with 1,
    /// 2, 3… embedded nodes, CPU per row, and the handover time when one node leaves.
    Cluster(crate::bench_cluster::ClusterBenchArgs),
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let serve = matches!(cli.command, Command::Serve(_));
    init_tracing(serve);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("driftdb: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "driftdb: {}",
                e.to_string().lines().next().unwrap_or("error")
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(serve: bool) {
    let default = if serve { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTDB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Model(ModelCmd::Create { file, server }) => {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::File {
                path: file.display().to_string(),
                detail: e.to_string(),
            })?;
            let def: ModelDef = serde_json::from_str(&text).map_err(|e| Error::File {
                path: file.display().to_string(),
                detail: e.to_string(),
            })?;
            def.validate()?;
            let mut c = Client::connect_with(&server.config()).await?;
            let m = c
                .models
                .create_model(pb::CreateModelRequest {
                    model: Some(model_to_pb(&def, vec![])),
                })
                .await?
                .into_inner();
            output::line(&format!(
                "created model {}",
                m.model.map(|m| m.id).unwrap_or_default()
            ));
            Ok(())
        }
        Command::Model(ModelCmd::List { server }) => {
            let mut c = Client::connect_with(&server.config()).await?;
            let ms = c
                .models
                .list_models(pb::ListModelsRequest {})
                .await?
                .into_inner()
                .models;
            let rows: Vec<Vec<String>> = ms
                .into_iter()
                .filter_map(|m| {
                    let versions = m.versions.join(",");
                    let def = model_from_pb(m).ok()?;
                    Some(vec![
                        def.id,
                        format!("{:?}", def.task).to_lowercase(),
                        def.window,
                        def.features.len().to_string(),
                        def.segments.join(","),
                        versions,
                    ])
                })
                .collect();
            output::table(
                &[
                    "model", "task", "window", "features", "segments", "versions",
                ],
                &rows,
            );
            Ok(())
        }
        Command::Model(ModelCmd::Show { id, server }) => {
            let mut c = Client::connect_with(&server.config()).await?;
            let m = c.model(&id).await?;
            let versions = m.versions.clone();
            let def = model_from_pb(m)?;
            let mut v = serde_json::to_value(&def).map_err(|e| Error::Internal(e.to_string()))?;
            if let Some(o) = v.as_object_mut() {
                o.insert("versions".into(), serde_json::json!(versions));
            }
            output::line(
                &serde_json::to_string_pretty(&v).map_err(|e| Error::Internal(e.to_string()))?,
            );
            Ok(())
        }
        Command::Reference(ReferenceCmd::Load(a)) => ingest::reference_load(a, json).await,
        Command::Ingest(a) => ingest::ingest_file(a, json).await,
        Command::Labels(a) => ingest::labels_file(a, json).await,
        Command::Report(a) => report::report(a).await,
        Command::Query(a) => query(a).await,
        Command::Demo(a) => crate::demo::run(a).await,
        Command::Rules(c) => alerting::rules(c).await,
        Command::Alerts(c) => alerting::alerts(c).await,
        Command::Event(a) => alerting::announce(a).await,
        Command::Silence(c) => silence::run(c).await,
        Command::Keys(c) => keys::run(c).await,
        Command::Bench(BenchCmd::Ingest(a)) => crate::bench::ingest(a).await,
        Command::Bench(BenchCmd::Rules(a)) => crate::bench_alerts::rules(a).await,
        Command::Bench(BenchCmd::Alerts(a)) => crate::bench_alerts::alerts(a).await,
        Command::Bench(BenchCmd::Report(a)) => crate::bench_report::report(a).await,
        Command::Bench(BenchCmd::Kafka(a)) => crate::bench_kafka::kafka(a).await,
        Command::Bench(BenchCmd::Checkpoint(a)) => crate::bench_checkpoint::checkpoint(a).await,
        Command::Bench(BenchCmd::Cluster(a)) => crate::bench_cluster::cluster(a).await,
    }
}

/// `driftdb query`: the table aligned (or JSON rows with `--json`) on stdout, then each warning
/// on stderr as `warning: …`.
async fn query(a: QueryArgs) -> Result<()> {
    let mut c = Client::connect_with(&a.server.config()).await?;
    let resp = c
        .query
        .query(pb::QueryRequest { query: a.query })
        .await?
        .into_inner();
    let table = table_from_pb(resp.table.unwrap_or_default());
    if a.json {
        let rows = serde_json::to_string_pretty(&table.to_json())
            .map_err(|e| Error::Internal(e.to_string()))?;
        output::line(&rows);
    } else {
        output::text(&table.render_text());
    }
    for w in &resp.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}

async fn serve(a: ServeArgs) -> Result<()> {
    let cfg = match &a.config {
        Some(p) => driftdb_server::config::ServeConfig::load(p)?,
        None => driftdb_server::config::ServeConfig::default(),
    };
    let store_cfg = cfg.store_config()?;
    let rules_cfg = cfg.rules.clone().unwrap_or_default().resolve()?;
    let tls = match (
        a.tls_cert.as_ref().or(cfg.tls_cert.as_ref()),
        a.tls_key.as_ref().or(cfg.tls_key.as_ref()),
    ) {
        (Some(c), Some(k)) => Some(driftdb_server::serve::TlsIdentity::load(c, k)?),
        (None, None) => None,
        _ => {
            return Err(Error::Invalid(
                "TLS needs both a certificate and a key (tls_cert and tls_key)".into(),
            ));
        }
    };
    std::fs::create_dir_all(&a.data).map_err(|e| Error::File {
        path: a.data.display().to_string(),
        detail: e.to_string(),
    })?;
    let mode = if a.insecure_no_auth {
        eprintln!(
            "driftdb: WARNING: --insecure-no-auth: API keys are not checked; anyone who can reach this server's ports is an operator with every scope"
        );
        driftdb_server::auth::AuthMode::Disabled
    } else {
        driftdb_server::auth::AuthMode::Required
    };
    let mut cp_cfg = cfg.checkpoint.clone().unwrap_or_default();
    if a.checkpoint_url.is_some() {
        cp_cfg.url.clone_from(&a.checkpoint_url);
    }
    if a.checkpoint_every.is_some() {
        cp_cfg.every.clone_from(&a.checkpoint_every);
    }
    if a.checkpoint_keep.is_some() {
        cp_cfg.keep = a.checkpoint_keep;
    }
    let checkpoints = cp_cfg.open(&a.data)?;
    if let Some(c) = &checkpoints
        && !a.data.join("CURRENT").exists()
    {
        match c.restore(&a.data).await? {
            // stderr: stdout's first line is the `ready` line scripts wait for.
            Some(r) => eprintln!(
                "driftdb: restored checkpoint {} from {} ({} files, {} bytes)",
                r.seq,
                c.url(),
                r.files,
                r.bytes
            ),
            None => eprintln!(
                "driftdb: no checkpoint under {} yet: starting with an empty store",
                c.url()
            ),
        }
    }
    let data = a.data.clone();
    let mut node = tokio::task::spawn_blocking(move || {
        Node::open_with(&data, store_cfg, rules_cfg, Arc::new(SystemClock), mode)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??
    .with_limits(cfg.limits());
    if let Some(c) = checkpoints {
        node = node.with_checkpoints(c);
    }
    if mode == driftdb_server::auth::AuthMode::Required
        && let Some(path) = keys::bootstrap(&node, &a.data)?
    {
        eprintln!(
            "driftdb: created the first operator key (every scope); its token is in {} (mode 0600). \
             Use it with: export DRIFTDB_API_KEY=$(cat {})",
            path.display(),
            path.display()
        );
    }
    let kafka_cfg = kafka_config(&a, cfg.kafka.clone())?;
    let cluster_cfg = cluster_config(&a, cfg.cluster.clone(), kafka_cfg.as_ref())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some((s, topic)) = &cluster_cfg {
        node = node.with_cluster(driftdb_server::cluster::Cluster::new(
            s.node_id.clone(),
            topic,
            s.member_ttl,
        ));
    }
    let running = driftdb_server::serve::start_with(
        node.clone(),
        driftdb_server::serve::ServeOptions {
            grpc: a.grpc,
            http: a.http,
            tls,
        },
    )
    .await?;
    let membership = match (&cluster_cfg, &kafka_cfg, &node.cluster) {
        (Some((s, _)), Some(k), Some(c)) => {
            let url = s
                .advertise
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{}", running.bound.http));
            if s.advertise.is_none() && running.bound.http.ip().is_unspecified() {
                return Err(Error::Invalid(format!(
                    "cluster: the HTTP address {} is not one other nodes can reach: pass --advertise URL",
                    running.bound.http
                )));
            }
            c.set_address(&url);
            Some(crate::cluster::start(node.clone(), k, s).await?)
        }
        _ => None,
    };
    let kafka = match kafka_cfg {
        Some(k) => Some(crate::kafka::start(node, k)?),
        None => None,
    };
    output::line(&format!(
        "ready grpc={} http={}",
        running.bound.grpc, running.bound.http
    ));
    let res = running
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    if let Some(k) = kafka {
        k.stop().await;
    }
    if let Some(m) = membership {
        m.stop().await;
    }
    res?;
    Ok(())
}

/// The Kafka settings: the config's section, with the command line's flags over it.
fn kafka_config(
    a: &ServeArgs,
    file: Option<driftdb_server::config::KafkaConfig>,
) -> Result<Option<driftdb_server::config::KafkaConfig>> {
    let mut k = match (file, &a.kafka_brokers) {
        (None, None) => return Ok(None),
        (Some(mut k), Some(b)) => {
            k.brokers = b.clone();
            k
        }
        (Some(k), None) => k,
        (None, Some(b)) => driftdb_server::config::KafkaConfig::new(b, None),
    };
    if let Some(t) = &a.kafka_topic {
        k.topic = Some(t.clone());
    }
    if let Some(t) = &a.kafka_label_topic {
        k.label_topic = Some(t.clone());
    }
    if let Some(g) = &a.kafka_group {
        k.group_id = g.clone();
    }
    k.validate()?;
    Ok(Some(k))
}

/// The cluster settings (the config's section, `--cluster`, `--node-id`, `--advertise`) and the
/// inference topic whose partitions decide ownership; `None` when not in a cluster.
fn cluster_config(
    a: &ServeArgs,
    file: Option<driftdb_server::config::ClusterConfig>,
    kafka: Option<&driftdb_server::config::KafkaConfig>,
) -> Result<Option<(driftdb_server::config::ClusterSettings, String)>> {
    let on = a.cluster || a.node_id.is_some() || a.advertise.is_some();
    let mut c = match (file, on) {
        (None, false) => return Ok(None),
        (f, _) => f.unwrap_or_default(),
    };
    if a.node_id.is_some() {
        c.node_id.clone_from(&a.node_id);
    }
    if a.advertise.is_some() {
        c.advertise.clone_from(&a.advertise);
    }
    let s = c.resolve()?;
    let Some(topic) = kafka.and_then(|k| k.topic.clone()) else {
        return Err(Error::Invalid(
            "cluster: needs Kafka with an inference topic (--kafka-brokers and --kafka-topic, or the config's \"kafka\" section): the consumer group decides which node owns which models".into(),
        ));
    };
    Ok(Some((s, topic)))
}

fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{what} {{bar:40}} {{percent:>3}}% {{elapsed_precise}} eta {{eta}}"
    )) {
        pb.set_style(style);
    }
    pb
}

/// Keeps a progress bar in step with a counter until dropped.
fn track(pb: &ProgressBar, counter: &Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let pb = pb.clone();
    let c = Arc::clone(counter);
    tokio::spawn(async move {
        loop {
            pb.set_position(c.load(Ordering::Relaxed));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_help_examples_are_valid_driftql() {
        let examples: Vec<&str> = QUERY_EXAMPLES
            .lines()
            .filter_map(|l| l.trim().strip_prefix("driftdb query "))
            .map(|l| l.trim_start_matches("--json ").trim_matches('\''))
            .collect();
        assert_eq!(examples.len(), 3);
        for q in examples {
            driftdb_query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }

    #[test]
    fn query_command_parses() {
        let cli = Cli::try_parse_from(["driftdb", "query", "--json", "psi(m.*) over 1h"]).unwrap();
        match cli.command {
            Command::Query(a) => {
                assert!(a.json);
                assert_eq!(a.query, "psi(m.*) over 1h");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn client_flags_before_the_subcommand() {
        let cli = Cli::try_parse_from([
            "driftdb",
            "--server",
            "http://10.1.2.3:1",
            "--api-key",
            "ddb_x",
            "model",
            "list",
        ])
        .unwrap();
        match cli.command {
            Command::Model(ModelCmd::List { server }) => {
                assert_eq!(server.server, "http://10.1.2.3:1");
                assert_eq!(server.api_key.as_deref(), Some("ddb_x"));
            }
            other => panic!("{other:?}"),
        }
        // After the subcommand, as before.
        let cli =
            Cli::try_parse_from(["driftdb", "model", "list", "--server", "http://h:2"]).unwrap();
        match cli.command {
            Command::Model(ModelCmd::List { server }) => assert_eq!(server.server, "http://h:2"),
            other => panic!("{other:?}"),
        }
        // --json before the subcommand reaches the query.
        let cli = Cli::try_parse_from(["driftdb", "--json", "query", "psi(m.*) over 1h"]).unwrap();
        match cli.command {
            Command::Query(a) => assert!(a.json),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["driftdb", "ingest", "f.jsonl", "--json"]).unwrap();
        assert!(cli.json);
    }
}
