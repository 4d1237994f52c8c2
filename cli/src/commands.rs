//! The `driftdb` command line (README.md): `serve`, client commands against a server, and
//! `bench`. Exit status 0 on success; otherwise a one-line reason on stderr and status 1.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Args, Parser, Subcommand};
use driftdb_engine::model::ModelDef;
use driftdb_engine::time::SystemClock;
use driftdb_proto::v1 as pb;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_stream::StreamExt;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::files::{
    BatchBuilder, Record, label_from_record, progress_total, read_records, record_model,
};
use crate::output;
use driftdb_server::convert::{model_from_pb, model_to_pb, table_from_pb};
use driftdb_server::node::Node;

mod alerting;
mod keys;

pub(crate) use alerting::alert_line;

/// driftdb: a time-series database for monitoring machine-learning models in production.
#[derive(Debug, Parser)]
#[command(name = "driftdb", version, about, long_about = None)]
pub struct Cli {
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
    Ingest(IngestArgs),
    /// Ingest a label/outcome file (.jsonl, .csv or .parquet); labels join their predictions.
    Labels(LabelsArgs),
    /// Run a DriftQL query on the server and print its table (warnings go to stderr).
    #[command(after_help = QUERY_EXAMPLES)]
    Query(QueryArgs),
    /// Alert rules: add from a JSON file, list, delete.
    #[command(subcommand)]
    Rules(alerting::RulesCmd),
    /// Alerts: watch them fire and resolve (resumable), or list the history.
    #[command(subcommand)]
    Alerts(alerting::AlertsCmd),
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
    /// tls_cert/tls_key, rules.
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
    Load {
        /// Model id.
        #[arg(long)]
        model: String,
        /// Model version.
        #[arg(long)]
        version: String,
        /// Replace an existing profile of this version.
        #[arg(long)]
        replace: bool,
        /// Rows per uploaded chunk.
        #[arg(long, default_value_t = 2000)]
        batch_size: usize,
        /// Reference rows (.jsonl, .csv, .parquet), labels inline as `label`.
        file: PathBuf,
        #[command(flatten)]
        server: ServerArg,
    },
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// Inference file (.jsonl, .csv, .parquet).
    file: PathBuf,
    /// Model id for files without a `model_id` column.
    #[arg(long)]
    model: Option<String>,
    /// Rows per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Producer id for idempotent replays (default: derived from the file name).
    #[arg(long)]
    producer: Option<String>,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Debug, Args)]
struct LabelsArgs {
    /// Label file (.jsonl, .csv, .parquet).
    file: PathBuf,
    /// Model id for files without a `model_id` column.
    #[arg(long)]
    model: Option<String>,
    /// Labels per batch.
    #[arg(long, default_value_t = 2000)]
    batch_size: usize,
    #[command(flatten)]
    server: ServerArg,
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
        Command::Reference(ReferenceCmd::Load {
            model,
            version,
            replace,
            batch_size,
            file,
            server,
        }) => reference_load(&server, &model, &version, replace, batch_size, &file).await,
        Command::Ingest(a) => ingest_file(a).await,
        Command::Labels(a) => labels_file(a).await,
        Command::Query(a) => query(a).await,
        Command::Demo(a) => crate::demo::run(a).await,
        Command::Rules(c) => alerting::rules(c).await,
        Command::Alerts(c) => alerting::alerts(c).await,
        Command::Event(a) => alerting::announce(a).await,
        Command::Keys(c) => keys::run(c).await,
        Command::Bench(BenchCmd::Ingest(a)) => crate::bench::ingest(a).await,
        Command::Bench(BenchCmd::Rules(a)) => crate::bench_alerts::rules(a).await,
        Command::Bench(BenchCmd::Alerts(a)) => crate::bench_alerts::alerts(a).await,
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
    let data = a.data.clone();
    let node = tokio::task::spawn_blocking(move || {
        Node::open_with(&data, store_cfg, rules_cfg, Arc::new(SystemClock), mode)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??
    .with_limits(cfg.limits());
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
    let running = driftdb_server::serve::start_with(
        node,
        driftdb_server::serve::ServeOptions {
            grpc: a.grpc,
            http: a.http,
            tls,
        },
    )
    .await?;
    output::line(&format!(
        "ready grpc={} http={}",
        running.bound.grpc, running.bound.http
    ));
    running
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
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

async fn reference_load(
    server: &ServerArg,
    model: &str,
    version: &str,
    replace: bool,
    batch_size: usize,
    file: &Path,
) -> Result<()> {
    let mut c = Client::connect_with(&server.config()).await?;
    let def = model_from_pb(c.model(model).await?)?;
    let total = progress_total(file)?;
    let counter = Arc::new(AtomicU64::new(0));
    let pb = progress_bar(total, "reference");
    let ticker = track(&pb, &counter);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ReferenceChunk>(4);
    let header = pb::ReferenceChunk {
        chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
            model_id: model.into(),
            model_version: version.into(),
            replace,
        })),
    };
    tx.send(header)
        .await
        .map_err(|_| Error::Internal("upload channel closed".into()))?;
    let file_owned = file.to_path_buf();
    let model_owned = model.to_string();
    let counter2 = Arc::clone(&counter);
    let reader = tokio::task::spawn_blocking(move || -> Result<Vec<(u64, String)>> {
        let bad = std::cell::RefCell::new(Vec::new());
        let mut builder = BatchBuilder::new(&def, true);
        read_records(
            &file_owned,
            &counter2,
            |r: Record| {
                if let Some(m) = record_model(&r)
                    && m != model_owned
                {
                    bad.borrow_mut()
                        .push((r.line, format!("row is for model {m:?}")));
                    return Ok(());
                }
                if let Err(e) = builder.push(&r) {
                    bad.borrow_mut().push((r.line, e));
                }
                if builder.len() >= batch_size {
                    tx.blocking_send(pb::ReferenceChunk {
                        chunk: Some(pb::reference_chunk::Chunk::Rows(builder.take())),
                    })
                    .map_err(|_| Error::Transport("upload stream closed".into()))?;
                }
                Ok(())
            },
            |line, e| bad.borrow_mut().push((line, e)),
        )?;
        if !builder.is_empty() {
            tx.blocking_send(pb::ReferenceChunk {
                chunk: Some(pb::reference_chunk::Chunk::Rows(builder.take())),
            })
            .map_err(|_| Error::Transport("upload stream closed".into()))?;
        }
        Ok(bad.into_inner())
    });
    let resp = c
        .models
        .upload_reference(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let bad = reader.await.map_err(|e| Error::Internal(e.to_string()))??;
    ticker.abort();
    pb.finish_and_clear();
    let s = resp?.into_inner();
    output::line(&format!(
        "reference {}@{}: {} rows profiled, {} rejected by the server, {} rejected in the file",
        s.model_id,
        s.model_version,
        s.rows,
        s.rejected,
        bad.len()
    ));
    for (line, e) in bad.iter().take(10) {
        eprintln!("  line {line}: {e}");
    }
    for e in s.errors.iter().take(10) {
        eprintln!("  row {} ({}): {}", e.row, e.request_id, e.reason);
    }
    Ok(())
}

/// Totals of an ingest run, printed at the end.
#[derive(Debug, Default)]
struct IngestTotals {
    read: u64,
    accepted: u64,
    rejected: u64,
    duplicates: u64,
    invalid_values: u64,
    sampled_out: u64,
    file_rejected: u64,
    errors: Vec<(u64, String)>,
}

struct ModelStream {
    tx: tokio::sync::mpsc::Sender<pb::InferenceBatch>,
    lines: Arc<std::sync::Mutex<VecDeque<Vec<u64>>>>,
    done: tokio::task::JoinHandle<Result<()>>,
}

async fn ingest_file(a: IngestArgs) -> Result<()> {
    let mut client = Client::connect_with(&a.server.config()).await?;
    let total = progress_total(&a.file)?;
    let counter = Arc::new(AtomicU64::new(0));
    let pb = progress_bar(total, "ingest");
    let ticker = track(&pb, &counter);
    let totals = Arc::new(std::sync::Mutex::new(IngestTotals::default()));
    let producer = a
        .producer
        .clone()
        .unwrap_or_else(|| format!("file:{}", a.file.display()));
    // Records are read on a blocking thread and handed over in bounded chunks.
    let (rtx, mut rrx) = tokio::sync::mpsc::channel::<Vec<Record>>(4);
    let file = a.file.clone();
    let counter2 = Arc::clone(&counter);
    let totals2 = Arc::clone(&totals);
    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut chunk = Vec::with_capacity(1024);
        read_records(
            &file,
            &counter2,
            |r| {
                chunk.push(r);
                if chunk.len() >= 1024 {
                    rtx.blocking_send(std::mem::take(&mut chunk))
                        .map_err(|_| Error::Internal("reader channel closed".into()))?;
                }
                Ok(())
            },
            |line, e| {
                if let Ok(mut t) = totals2.lock() {
                    t.read += 1;
                    t.file_rejected += 1;
                    t.errors.push((line, e));
                }
            },
        )?;
        if !chunk.is_empty() {
            rtx.blocking_send(chunk)
                .map_err(|_| Error::Internal("reader channel closed".into()))?;
        }
        Ok(())
    });
    let mut models: HashMap<String, (BatchBuilder, Vec<u64>)> = HashMap::new();
    let mut streams: HashMap<String, ModelStream> = HashMap::new();
    let mut seq = 0u64;
    while let Some(chunk) = rrx.recv().await {
        for r in chunk {
            let reject = |totals: &Arc<std::sync::Mutex<IngestTotals>>, line: u64, e: String| {
                if let Ok(mut t) = totals.lock() {
                    t.read += 1;
                    t.file_rejected += 1;
                    t.errors.push((line, e));
                }
            };
            let Some(mid) = record_model(&r).or_else(|| a.model.clone()) else {
                reject(&totals, r.line, "no model_id (pass --model)".into());
                continue;
            };
            if !models.contains_key(&mid) {
                let def = match client.model(&mid).await {
                    Ok(m) => model_from_pb(m)?,
                    Err(e) => {
                        reject(&totals, r.line, e.to_string());
                        continue;
                    }
                };
                models.insert(mid.clone(), (BatchBuilder::new(&def, false), Vec::new()));
            }
            let Some((builder, lines)) = models.get_mut(&mid) else {
                continue;
            };
            match builder.push(&r) {
                Ok(()) => lines.push(r.line),
                Err(e) => {
                    reject(&totals, r.line, e);
                    continue;
                }
            }
            if let Ok(mut t) = totals.lock() {
                t.read += 1;
            }
            if builder.len() >= a.batch_size {
                seq += 1;
                let mut batch = builder.take();
                batch.producer_id = producer.clone();
                batch.sequence = seq;
                let ls = std::mem::take(lines);
                send_batch(&mut client, &mut streams, &mid, batch, ls, &totals).await?;
            }
        }
    }
    reader.await.map_err(|e| Error::Internal(e.to_string()))??;
    for (mid, (builder, lines)) in models.iter_mut() {
        if !builder.is_empty() {
            seq += 1;
            let mut batch = builder.take();
            batch.producer_id = producer.clone();
            batch.sequence = seq;
            send_batch(
                &mut client,
                &mut streams,
                mid,
                batch,
                std::mem::take(lines),
                &totals,
            )
            .await?;
        }
    }
    let mut first_err = None;
    for (_, s) in streams.drain() {
        drop(s.tx);
        if let Err(e) = s.done.await.map_err(|e| Error::Internal(e.to_string()))? {
            first_err.get_or_insert(e);
        }
    }
    ticker.abort();
    pb.finish_and_clear();
    let t = totals
        .lock()
        .map_err(|_| Error::Internal("totals lock".into()))?;
    output::line(&format!(
        "read {} rows: {} accepted, {} rejected ({} by the server, {} in the file), {} duplicates skipped, {} invalid values, {} sampled out",
        t.read,
        t.accepted,
        t.rejected + t.file_rejected,
        t.rejected,
        t.file_rejected,
        t.duplicates,
        t.invalid_values,
        t.sampled_out
    ));
    let mut errs = t.errors.clone();
    errs.sort();
    for (line, e) in errs.iter().take(20) {
        eprintln!("  line {line}: {e}");
    }
    if errs.len() > 20 {
        eprintln!("  … and {} more", errs.len() - 20);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn send_batch(
    client: &mut Client,
    streams: &mut HashMap<String, ModelStream>,
    model: &str,
    batch: pb::InferenceBatch,
    lines: Vec<u64>,
    totals: &Arc<std::sync::Mutex<IngestTotals>>,
) -> Result<()> {
    if !streams.contains_key(model) {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::InferenceBatch>(4);
        let mut acks = client
            .ingest
            .ingest_inferences(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let line_q: Arc<std::sync::Mutex<VecDeque<Vec<u64>>>> = Arc::default();
        let q = Arc::clone(&line_q);
        let totals = Arc::clone(totals);
        let done = tokio::spawn(async move {
            while let Some(ack) = acks.next().await {
                let ack = ack?;
                let lines = q
                    .lock()
                    .ok()
                    .and_then(|mut q| q.pop_front())
                    .unwrap_or_default();
                if let Ok(mut t) = totals.lock() {
                    t.accepted += ack.accepted;
                    t.rejected += ack.rejected;
                    t.duplicates += ack.duplicates;
                    t.invalid_values += ack.invalid_values;
                    t.sampled_out += ack.sampled_out;
                    if ack.replayed {
                        t.duplicates += lines.len() as u64;
                    }
                    for e in ack.errors {
                        let line = lines.get(e.row as usize).copied().unwrap_or(0);
                        t.errors.push((line, e.reason));
                    }
                }
            }
            Ok(())
        });
        streams.insert(
            model.to_string(),
            ModelStream {
                tx,
                lines: line_q,
                done,
            },
        );
    }
    let Some(s) = streams.get(model) else {
        return Err(Error::Internal("stream vanished".into()));
    };
    if let Ok(mut q) = s.lines.lock() {
        q.push_back(lines);
    }
    if s.tx.send(batch).await.is_err() {
        // The stream ended: surface the server's reason.
        if let Some(s) = streams.remove(model) {
            s.done.await.map_err(|e| Error::Internal(e.to_string()))??;
        }
        return Err(Error::Transport(
            "ingest stream closed by the server".into(),
        ));
    }
    Ok(())
}

async fn labels_file(a: LabelsArgs) -> Result<()> {
    let mut client = Client::connect_with(&a.server.config()).await?;
    let total = progress_total(&a.file)?;
    let counter = Arc::new(AtomicU64::new(0));
    let pb = progress_bar(total, "labels");
    let ticker = track(&pb, &counter);
    let file = a.file.clone();
    let default_model = a.model.clone();
    let batch_size = a.batch_size;
    let (tx, rx) = tokio::sync::mpsc::channel::<(String, pb::LabelBatch, Vec<u64>)>(4);
    let reader = tokio::task::spawn_blocking(move || -> Result<Vec<(u64, String)>> {
        let bad = std::cell::RefCell::new(Vec::new());
        let mut per_model: HashMap<String, (pb::LabelBatch, Vec<u64>)> = HashMap::new();
        read_records(
            &file,
            &counter,
            |r| {
                let Some(mid) = record_model(&r).or_else(|| default_model.clone()) else {
                    bad.borrow_mut()
                        .push((r.line, "no model_id (pass --model)".into()));
                    return Ok(());
                };
                match label_from_record(&r) {
                    Ok(l) => {
                        let e = per_model.entry(mid.clone()).or_insert_with(|| {
                            (
                                pb::LabelBatch {
                                    model_id: mid.clone(),
                                    ..Default::default()
                                },
                                Vec::new(),
                            )
                        });
                        e.0.labels.push(l);
                        e.1.push(r.line);
                        if e.0.labels.len() >= batch_size {
                            let (b, lines) = std::mem::take(e);
                            tx.blocking_send((mid, b, lines))
                                .map_err(|_| Error::Internal("label channel closed".into()))?;
                        }
                    }
                    Err(e) => bad.borrow_mut().push((r.line, e)),
                }
                Ok(())
            },
            |line, e| bad.borrow_mut().push((line, e)),
        )?;
        for (mid, (b, lines)) in per_model {
            if !b.labels.is_empty() {
                let b = pb::LabelBatch {
                    model_id: mid.clone(),
                    ..b
                };
                tx.blocking_send((mid, b, lines))
                    .map_err(|_| Error::Internal("label channel closed".into()))?;
            }
        }
        Ok(bad.into_inner())
    });
    let mut rx = rx;
    let (mut joined, mut pending, mut rejected, mut dups, mut read) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut errors: Vec<(u64, String)> = Vec::new();
    while let Some((mid, mut b, lines)) = rx.recv().await {
        b.model_id = mid;
        read += b.labels.len() as u64;
        let mut acks = client
            .ingest
            .ingest_labels(tokio_stream::iter(vec![b]))
            .await?
            .into_inner();
        while let Some(ack) = acks.next().await {
            let ack = ack?;
            joined += ack.joined;
            pending += ack.pending;
            rejected += ack.rejected;
            dups += ack.duplicates;
            for e in ack.errors {
                errors.push((lines.get(e.row as usize).copied().unwrap_or(0), e.reason));
            }
        }
    }
    let bad = reader.await.map_err(|e| Error::Internal(e.to_string()))??;
    ticker.abort();
    pb.finish_and_clear();
    output::line(&format!(
        "read {} labels: {} joined, {} pending (waiting for their prediction), {} rejected ({} by the server, {} in the file), {} duplicates",
        read + bad.len() as u64,
        joined,
        pending,
        rejected + bad.len() as u64,
        rejected,
        bad.len(),
        dups
    ));
    errors.extend(bad);
    errors.sort();
    for (line, e) in errors.iter().take(20) {
        eprintln!("  line {line}: {e}");
    }
    Ok(())
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
}
